//! Bad input gets a clear error naming what was wrong, and never disturbs the running compositor.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use common::{covered, Vitrine};
use vitrine::control::protocol::Request;

fn vitrine_cmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vitrine"));
    cmd.env_remove("WAYLAND_DISPLAY").env_remove("DISPLAY");
    cmd
}

#[test]
fn malformed_config_refuses_to_start_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[kiosk]\non_app_exit = \"exit\"\nfrobnicate = true\n").unwrap();
    let out = vitrine_cmd()
        .args(["--backend", "headless", "--config"])
        .arg(&path)
        .env("XDG_RUNTIME_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:3:1:", path.display())), "{err}");
    assert!(err.contains("frobnicate"), "{err}");
}

#[test]
fn check_config_reports_errors_and_accepts_the_shipped_default() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[background]\ncolor = \"#12345\"\n").unwrap();
    let out = vitrine_cmd().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":2:9:") && err.contains("#rrggbb"), "{err}");

    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/resources/vitrine.toml");
    let out = vitrine_cmd().args(["check-config", good]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));

    let missing = dir.path().join("missing.toml");
    let out = vitrine_cmd().arg("check-config").arg(&missing).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml: cannot read"));
}

#[test]
fn unknown_option_is_a_usage_error() {
    let out = vitrine_cmd().arg("--no-such-option").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--no-such-option"), "{err}");
    let out = vitrine_cmd().args(["--output", "huge"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("WIDTHxHEIGHT"));
}

#[test]
fn help_and_version_work() {
    let out = vitrine_cmd().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = vitrine_cmd().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["--backend", "--config", "--output", "msg", "check-config"] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
}

#[test]
fn malformed_control_requests_get_errors_and_disturb_nothing() {
    let mut vitrine = Vitrine::headless("bad-control");
    vitrine.spawn_client("weston-simple-shm", &[]);
    vitrine.wait_for_pixels("before", Duration::from_secs(20), |img| covered(img) > 0.1);

    let stream = UnixStream::connect(vitrine.control_path()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    for bad in [
        "this is not json",
        "{\"cmd\": \"self-destruct\"}",
        "{\"cmd\": \"screenshot\"}",
        "{\"cmd\": \"version\", \"extra\": 1}",
        "{\"cmd\": \"screenshot\", \"path\": \"relative.png\"}",
        "{\"cmd\": \"screenshot\", \"output\": \"NOPE-9\", \"path\": \"/tmp/x.png\"}",
        "\u{0}\u{1}\u{2}",
    ] {
        writeln!(writer, "{bad}").unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let reply: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(reply["ok"], false, "{bad} was accepted: {line}");
        assert!(reply["error"].as_str().is_some_and(|e| !e.is_empty()), "{bad}: {line}");
    }
    // The same connection still works for a good request.
    writeln!(writer, "{{\"cmd\":\"version\"}}").unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("\"ok\":true"), "{line}");

    // An endless line is cut off, and the connection closed.
    let junk = vec![b'x'; 200 * 1024];
    let _ = writer.write_all(&junk);
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    assert!(line.contains("longer than"), "{line}");

    // The compositor and its client are unaffected.
    assert!(vitrine.is_running());
    assert_eq!(vitrine.app_ids(), ["org.freedesktop.weston.simple-shm"]);
    vitrine.wait_for_pixels("after", Duration::from_secs(10), |img| covered(img) > 0.1);
    let reply = vitrine.request(&Request::Version);
    assert!(reply.ok);
}

#[test]
fn msg_without_a_running_vitrine_says_so() {
    let dir = common::runtime_dir();
    let out = vitrine_cmd()
        .args(["msg", "version"])
        .env("XDG_RUNTIME_DIR", dir.path())
        .env_remove("VITRINE_SOCKET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no running vitrine"));
}

#[test]
fn msg_finds_the_socket_and_prints_for_humans_and_scripts() {
    let vitrine = Vitrine::headless("msg-cli");
    let run = |args: &[&str]| {
        let out = vitrine_cmd()
            .arg("msg")
            .args(args)
            .env("XDG_RUNTIME_DIR", &vitrine.runtime)
            .env("WAYLAND_DISPLAY", &vitrine.socket)
            .env_remove("VITRINE_SOCKET")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let human = run(&["outputs"]);
    assert!(human.contains("HEADLESS-1: 640x480 @ 60.00 Hz"), "{human}");
    let json: serde_json::Value = serde_json::from_str(&run(&["--json", "outputs"])).unwrap();
    assert_eq!(json["data"]["outputs"][0]["width"], 640);
    let shot = vitrine.runtime.join("shot.png");
    let out = run(&["screenshot", shot.to_str().unwrap()]);
    assert!(out.contains("written to"), "{out}");
    let image = vitrine::image::RgbaImage::load_png(&shot).unwrap();
    assert_eq!((image.width, image.height), (640, 480));
    assert_eq!(image.pixel(10, 10)[..3], common::BG, "an empty output shows the configured background");
}

/// `vitrine msg version`, run as a user would, and how long it took.
fn msg_version(vitrine: &Vitrine) -> Duration {
    let start = std::time::Instant::now();
    let out = vitrine_cmd()
        .args(["msg", "version"])
        .env("XDG_RUNTIME_DIR", &vitrine.runtime)
        .env("WAYLAND_DISPLAY", &vitrine.socket)
        .env_remove("VITRINE_SOCKET")
        .output()
        .unwrap();
    assert!(out.status.success(), "msg version: {}", String::from_utf8_lossy(&out.stderr));
    start.elapsed()
}

#[test]
fn control_connections_that_never_read_do_not_stall_the_others_and_are_dropped() {
    let vitrine = Vitrine::headless("control-flood");
    // How long `msg version` takes when nothing else goes on (process start included).
    let quiet = (0..5).map(|_| msg_version(&vitrine)).max().unwrap();
    // Twelve peers send request after request and never read a reply.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooders: Vec<_> = (0..12)
        .map(|_| {
            let mut stream = UnixStream::connect(vitrine.control_path()).unwrap();
            stream.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let request = b"{\"cmd\":\"stats\"}\n".repeat(64);
                // Until vitrine hangs up on it (EPIPE) or the test ends.
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match stream.write(&request) {
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => return true,
                    }
                }
                false
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        slowest = slowest.max(msg_version(&vitrine));
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every flooder is dropped once it has more unread replies than the cap.
    let dropped = common::wait_until(Duration::from_secs(30), || {
        vitrine.ok(&Request::Stats)["control"]["dropped_unread"].as_u64() >= Some(12)
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let hung_up = flooders.into_iter().map(|f| f.join().unwrap()).filter(|h| *h).count();
    eprintln!("msg version: {quiet:?} quiet, {slowest:?} at worst with 12 flooders; {hung_up} hung up on");
    assert!(
        slowest <= quiet + Duration::from_millis(100),
        "msg version took {slowest:?} with 12 flooding connections ({quiet:?} without)"
    );
    assert!(dropped, "flooders not dropped: {}", vitrine.ok(&Request::Stats)["control"]);
    assert_eq!(hung_up, 12, "every flooder finds its connection closed");
    assert!(vitrine.request(&Request::Version).ok);
}

#[test]
fn screenshots_go_only_to_regular_files_and_never_block() {
    let vitrine = Vitrine::headless("shot-targets");
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.png");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for (path, what) in [
        (fifo.clone(), "a FIFO"),
        (dir.path().to_path_buf(), "a directory"),
        ("/dev/null".into(), "a character device"),
    ] {
        let start = std::time::Instant::now();
        let reply = vitrine.request(&Request::Screenshot { output: None, path: path.clone() });
        assert!(!reply.ok, "a screenshot into {} was accepted", path.display());
        let error = reply.error.unwrap_or_default();
        assert!(error.contains(what), "{}: {error}", path.display());
        assert!(start.elapsed() < Duration::from_secs(5), "{what}: the reply took {:?}", start.elapsed());
        // The compositor keeps answering.
        assert!(msg_version(&vitrine) < Duration::from_secs(5));
    }
    // A regular file still works, and a FIFO was not written into.
    let good = dir.path().join("good.png");
    let reply = vitrine.request(&Request::Screenshot { output: None, path: good.clone() });
    assert!(reply.ok, "{:?}", reply.error);
    assert!(vitrine::image::RgbaImage::load_png(&good).is_ok());
}

/// A connection that sends a thousand requests at once is answered every one, in order, at the
/// control socket's rate (200 a second): it is slowed down, not dropped, and another connection
/// is served meanwhile.
#[test]
fn a_burst_of_control_requests_is_slowed_down_and_answered_whole() {
    let vitrine = Vitrine::headless("control-rate");
    let mut stream = UnixStream::connect(vitrine.control_path()).unwrap();
    stream.write_all(&b"{\"cmd\":\"version\"}\n".repeat(1000)).unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stream).lines();
        (0..1000).filter(|_| lines.next().and_then(|l| l.ok()).is_some_and(|l| l.contains("\"ok\":true"))).count()
    });
    // Served meanwhile.
    assert!(vitrine.request(&Request::Version).ok);
    let answered = reader.join().unwrap();
    assert_eq!(answered, 1000, "every request answered");
    let control = &vitrine.ok(&Request::Stats)["control"];
    assert!(control["rate_limited"].as_u64() >= Some(1), "the burst was not slowed down: {control}");
    assert_eq!(control["dropped_unread"], 0, "{control}");
}
