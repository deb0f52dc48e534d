//! Faults vitrine lives through on the host (see docs/faults.md): signals during playback,
//! running out of descriptors, a flood of idle connections, kiosk apps that leave children
//! behind or crash in a loop. Each test checks that vitrine is still there and still serves.

mod common;

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Launch, Vitrine, BG, BG_CONFIG};
use vitrine::control::protocol::Request;

fn clip(dir: &Path) -> PathBuf {
    let path = dir.join("bars.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "smptebars=size=320x240:rate=24"])
        .args(["-t", "2", "-c:v", "libx264", "-g", "12"])
        .arg(&path)
        .status()
        .expect("ffmpeg is not installed: run scripts/deps test");
    assert!(status.success(), "ffmpeg failed");
    path
}

fn signal(vitrine: &Vitrine, signal: libc::c_int) {
    // SAFETY: kill on the child's pid.
    unsafe { libc::kill(vitrine.child.id() as i32, signal) };
}

/// Connect to a Unix socket without blocking (a full backlog is EAGAIN, not a hang).
fn connect(path: &Path) -> Option<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: a fresh socket, a zeroed sockaddr_un filled with a path shorter than sun_path.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let fd = OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (dst, src) in addr.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
            *dst = *src as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        let r = libc::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr as *const _ as *const libc::sockaddr, len);
        (r == 0).then_some(fd)
    }
}

/// This test process holds thousands of sockets: its own soft limit goes up to the hard one.
fn raise_own_fd_limit() -> u64 {
    vitrine::process::raise_fd_limit()
}

/// SIGHUP 20 times while a video plays: 20 reloads, no death, the video goes on. Then SIGTERM:
/// a clean stop (the audit written, status 0), as systemd stops the unit.
#[test]
fn signals_during_playback_reload_twenty_times_then_stop_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path());
    let stats = dir.path().join("stats.json");
    let mut launch = Launch::headless("signals-playback");
    launch.args.extend([
        "--play".into(),
        path.display().to_string(),
        "--loop".into(),
        "--stats".into(),
        stats.display().to_string(),
    ]);
    launch.env.push(("VITRINE_DECODER".into(), "software".into()));
    let mut vitrine = Vitrine::launch(launch);
    let playing = common::wait_until(Duration::from_secs(30), || {
        vitrine.ok(&Request::Stats)["video"]["frames_presented"].as_u64().unwrap_or(0) > 5
    });
    assert!(playing, "the video did not start; log:\n{}", vitrine.log());

    for _ in 0..20 {
        signal(&vitrine, libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(150));
    }
    let reloaded = common::wait_until(Duration::from_secs(20), || {
        vitrine.log().matches("configuration reloaded (SIGHUP)").count() == 20
    });
    let log = vitrine.log();
    assert!(reloaded, "{} reloads; log:\n{log}", log.matches("configuration reloaded (SIGHUP)").count());
    assert!(vitrine.is_running(), "vitrine died of SIGHUP; log:\n{log}");
    let before = vitrine.ok(&Request::Stats)["video"]["frames_presented"].as_u64().unwrap();
    let advancing = common::wait_until(Duration::from_secs(20), || {
        vitrine.ok(&Request::Stats)["video"]["frames_presented"].as_u64().unwrap_or(0) > before + 10
    });
    assert!(advancing, "the video stopped after the reloads; log:\n{}", vitrine.log());

    signal(&vitrine, libc::SIGTERM);
    let status = vitrine.wait_exit(Duration::from_secs(20));
    let log = vitrine.log();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("stopping on signal signal=SIGTERM") && log.contains("vitrine stopped"), "{log}");
    let audit: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats).expect("stats file")).unwrap();
    assert!(audit["frames_presented"].as_u64().unwrap() > before, "{audit}");
}

/// 1000 Wayland connections and 1000 control connections held open: vitrine accepts every
/// Wayland connection and refuses those past its 16 clients at once with the limit's error,
/// refuses control connections past their cap, and serves a new client once they are gone.
#[test]
fn a_thousand_idle_connections_of_each_kind_do_not_stop_vitrine() {
    raise_own_fd_limit();
    let mut vitrine = Vitrine::headless("thousand-connections");
    let wayland = vitrine.runtime.join(&vitrine.socket);
    let mut held = Vec::new();
    for _ in 0..1000 {
        let fd = connect(&wayland);
        held.push(fd.expect("the Wayland socket took a connection"));
        // The backlog is drained by the loop: let it run now and then.
        if held.len() % 100 == 0 {
            vitrine.ok(&Request::Version);
        }
    }
    let control = vitrine.control_path();
    let mut control_held = Vec::new();
    for _ in 0..1000 {
        if let Some(fd) = connect(&control) {
            control_held.push(fd);
        }
        if control_held.len() % 100 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let log = vitrine.log();
    assert!(vitrine.is_running(), "{log}");
    // Every Wayland connection was accepted (each says hello in the log), and all but 16 were
    // refused, each with the limit named.
    let seen =
        common::wait_until(Duration::from_secs(30), || vitrine.log().matches("client connected").count() >= 1000);
    assert!(seen, "{} clients accepted", vitrine.log().matches("client connected").count());
    let refused = || vitrine.log().matches("limit=\"clients at once\" max=16").count();
    assert!(common::wait_until(Duration::from_secs(30), || refused() >= 984), "{} refused, not 984", refused());
    assert_eq!(refused(), 984, "more refused than over the limit");
    drop(held);
    drop(control_held);
    let stats = {
        let mut stats = None;
        common::wait_until(Duration::from_secs(20), || {
            stats = vitrine.request(&Request::Stats).ok.then(|| vitrine.ok(&Request::Stats));
            stats.is_some()
        });
        stats.expect("vitrine answers again once the connections are gone")
    };
    assert!(stats["control"]["refused"].as_u64().unwrap() > 0, "the control cap refused some: {stats}");
    vitrine.spawn_client("weston-simple-shm", &[]);
    vitrine.wait_for_pixels("a new client", Duration::from_secs(30), |img| common::covered(img) > 0.1);
    assert!(vitrine.is_running());
}

/// With a descriptor limit it cannot raise (a hard limit of 32), vitrine runs out while
/// accepting: it pauses accepting, says so, keeps running, and serves again once descriptors
/// are free.
#[test]
fn out_of_descriptors_pauses_accepting_and_serves_again() {
    common::require("prlimit");
    raise_own_fd_limit();
    let mut launch = Launch::headless("out-of-fds");
    // Low enough that 16 clients (the most vitrine keeps at once) exhaust it.
    launch.wrapper = vec!["prlimit".into(), "--nofile=32:32".into(), "--".into()];
    let mut vitrine = Vitrine::launch(launch);
    let wayland = vitrine.runtime.join(&vitrine.socket);
    let mut held = Vec::new();
    for _ in 0..200 {
        match connect(&wayland) {
            Some(fd) => held.push(fd),
            // The backlog is full: vitrine is not accepting (it is out of descriptors).
            None => break,
        }
    }
    let paused =
        common::wait_until(Duration::from_secs(20), || vitrine.log().contains("cannot accept connections: paused"));
    assert!(paused, "no pause logged with {} connections; log:\n{}", held.len(), vitrine.log());
    assert!(vitrine.is_running(), "{}", vitrine.log());
    // Logged once per socket, however many times it paused.
    let log = vitrine.log();
    let pauses: Vec<&str> = log.lines().filter(|l| l.contains("cannot accept connections: paused")).collect();
    for socket in ["\"wayland\"", "\"control\""] {
        assert!(pauses.iter().filter(|l| l.contains(socket)).count() <= 1, "{pauses:#?}");
    }
    drop(held);
    // The clients that were accepted hang up, descriptors come back, new clients are served.
    let answered = common::wait_until(Duration::from_secs(20), || vitrine.request(&Request::Stats).ok);
    assert!(answered, "{}", vitrine.log());
    let stats = vitrine.ok(&Request::Stats);
    assert!(stats["process"]["accept_pauses"].as_u64().unwrap() >= 1, "{stats}");
    vitrine.spawn_client("weston-simple-shm", &[]);
    vitrine.wait_for_pixels("a new client", Duration::from_secs(30), |img| common::covered(img) > 0.1);
    assert!(vitrine.is_running());
}

/// Process ids whose command line holds `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
        })
        .collect()
}

/// A kiosk app that starts a grandchild and exits: the grandchild goes with it (the app's
/// process group is killed), restart after restart, and nothing is left once vitrine stops.
#[test]
fn a_kiosk_app_that_leaves_a_grandchild_leaves_no_orphans() {
    let marker = common::unique("orphan-marker");
    let mut launch = Launch::headless("app-grandchild");
    launch.config =
        format!("{BG_CONFIG}[kiosk]\non_app_exit = \"restart\"\nrestart_delay_ms = 200\nrestart_delay_max_ms = 400\n");
    // The grandchild: a sleep whose command line carries ORPHAN-marker, in the background (the
    // scripts' own command lines never hold that string whole).
    let script = format!("m=ORPHAN; sh -c \"exec sleep 1000 $m-{marker}\" & sleep 0.3; exit 0");
    launch.args.extend(["--".into(), "sh".into(), "-c".into(), script]);
    let mut vitrine = Vitrine::launch(launch);
    let restarted =
        common::wait_until(Duration::from_secs(30), || vitrine.log().matches("kiosk app exited").count() >= 3);
    assert!(restarted, "{}", vitrine.log());
    // At most the grandchild of the run in progress is alive; the earlier ones were killed.
    let grandchild = format!("ORPHAN-{marker}");
    let alive = processes_with(&grandchild);
    assert!(alive.len() <= 1, "grandchildren left behind: {alive:?}");
    assert!(vitrine.is_running());
    let image = vitrine.screenshot("background");
    assert_eq!(common::count_near(&image, BG, 8), (640 * 480) as usize, "the background shows");
    vitrine.ok(&Request::Quit);
    vitrine.wait_exit(Duration::from_secs(20));
    let gone = common::wait_until(Duration::from_secs(10), || processes_with(&grandchild).is_empty());
    assert!(gone, "grandchildren alive after vitrine stopped: {:?}", processes_with(&grandchild));
}

/// A kiosk app that crashes (SIGSEGV) again and again: vitrine restarts it with a growing delay,
/// keeps the background on screen and keeps answering.
#[test]
fn a_kiosk_app_crashing_in_a_loop_does_not_take_vitrine_down() {
    let mut launch = Launch::headless("app-crash-loop");
    launch.config =
        format!("{BG_CONFIG}[kiosk]\non_app_exit = \"restart\"\nrestart_delay_ms = 50\nrestart_delay_max_ms = 400\n");
    launch.args.extend(["--".into(), "sh".into(), "-c".into(), "kill -SEGV $$".into()]);
    let mut vitrine = Vitrine::launch(launch);
    let crashed =
        common::wait_until(Duration::from_secs(30), || vitrine.log().matches("kiosk app exited").count() >= 5);
    assert!(crashed, "{}", vitrine.log());
    let log = vitrine.log();
    assert!(log.contains(&format!("code={}", 128 + libc::SIGSEGV)), "the crash is named: {log}");
    assert!(vitrine.is_running());
    let image = vitrine.screenshot("background");
    assert_eq!(common::count_near(&image, BG, 8), (640 * 480) as usize, "the background shows");
    assert_eq!(vitrine.ok(&Request::Version)["backend"], "headless");
}
