//! The soak: vitrine on vkms plays a looped playlist of three items of different sizes beside an
//! animating client, for `VITRINE_SOAK_MINUTES` (3 in the test command; `scripts/soak MINUTES`
//! runs it longer), with a reload every minute, a screenshot every 30 s, a second display
//! plugged in or out every 5 minutes (in once and out again in runs shorter than 10 minutes) and
//! the decoder unbound and bound again every 10 minutes (once, at half time, in runs shorter
//! than that). Every 30 s
//! it samples what could leak: resident memory, descriptors, threads, framebuffers, cached plans,
//! and the counters. Pass: no restart, memory flat after warm-up, descriptors and threads back
//! to their level, no picture dropped outside the injected faults. Each drop is judged from
//! vitrine's log, where it is named with its time: drops during a fault or a screenshot belong
//! to them, and drops while vitrine's loop waited for a CPU (the kernel's run delay) or while a
//! CPU of the guest stood still (TCG on a busy host: a sleeper pinned to each CPU woke 50 ms
//! late or more) are the machine's, reported apart. The report goes to
//! artifacts/soak/report.{md,json}.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::common::{self, Launch, Vitrine, BG_CONFIG};
use super::display::ConfigfsVkms;
use super::{assert_in_vm, clip, faults};
use vitrine::control::protocol::Request;

const SAMPLE_EVERY: Duration = Duration::from_secs(30);
const WARM_UP: Duration = Duration::from_secs(60);

#[derive(serde::Serialize, Clone, Debug)]
struct Sample {
    t_s: f64,
    rss_kib: u64,
    fds: usize,
    threads: usize,
    framebuffers: u64,
    plans_cached: u64,
    video_presented: u64,
    video_dropped: u64,
    /// Of those, dropped while vitrine's loop waited for a CPU (the kernel's run delay).
    video_dropped_starved: u64,
    commits: u64,
    decoder_failures: u64,
    /// Pictures no plane showed (composited, converted on the CPU).
    video_composited: u64,
    /// Page flips that never came (each one a second of a frozen display).
    flips_timed_out: u64,
}

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn count_dir(path: String) -> usize {
    std::fs::read_dir(path).map(|d| d.count()).unwrap_or(0)
}

fn sample(vitrine: &Vitrine, start: Instant) -> Sample {
    let pid = vitrine.child.id();
    let stats = vitrine.ok(&Request::Stats);
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    Sample {
        t_s: start.elapsed().as_secs_f64(),
        rss_kib: proc_status_kib(pid, "VmRSS:"),
        fds: count_dir(format!("/proc/{pid}/fd")),
        threads: count_dir(format!("/proc/{pid}/task")),
        framebuffers: n(&stats["held"]["framebuffers"]),
        plans_cached: n(&stats["held"]["plans_cached"]),
        video_presented: n(&stats["video"]["frames_presented"]),
        video_dropped: n(&stats["video"]["frames_dropped"]),
        video_dropped_starved: n(&stats["video"]["frames_dropped_starved"]),
        commits: n(&stats["commits"]),
        decoder_failures: n(&stats["video"]["decoder_failures"]),
        video_composited: n(&stats["video"]["frames_composited"]),
        flips_timed_out: n(&stats["flips_timed_out"]),
    }
}

/// Least-squares slope of `y` over `t` (per second).
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mt, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let cov: f64 = points.iter().map(|p| (p.0 - mt) * (p.1 - my)).sum();
    let var: f64 = points.iter().map(|p| (p.0 - mt).powi(2)).sum();
    if var == 0.0 {
        0.0
    } else {
        cov / var
    }
}

/// Seconds since the epoch, now.
fn epoch_now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
fn days_since_epoch(year: i64, month: i64, day: i64) -> i64 {
    // Counted in eras of 400 years from 0000-03-01, so that the leap day ends a year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The time of a log line (`2026-12-02T14:55:06.884461Z LEVEL ...`), in seconds since the epoch.
fn log_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|v| v.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':');
    let (h, mi, sec) = (t.next()?.parse::<f64>().ok()?, t.next()?.parse::<f64>().ok()?, t.next()?.parse::<f64>().ok()?);
    Some(days_since_epoch(y, mo, da) as f64 * 86_400.0 + h * 3600.0 + mi * 60.0 + sec)
}

/// Moments a CPU of the guest stood still: a thread pinned to each CPU sleeps 5 ms at a time and
/// notes each wake-up 20 ms late or more, and a stall of 50 ms or more explains a drop (nothing
/// on that CPU ran meanwhile: under TCG the host did not run the virtual CPU). A loop of vitrine's that blocks is on its own CPU time and
/// does not show here.
struct Stalls {
    found: Arc<Mutex<Vec<(f64, f64)>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

const STALL: f64 = 0.050;
/// Shorter stalls are noted too, for the report's account of each unexplained drop.
const STALL_NOTED: f64 = 0.020;

impl Stalls {
    fn watch() -> Stalls {
        let found = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (0..cpus)
            .map(|cpu| {
                let (found, stop) = (found.clone(), stop.clone());
                std::thread::spawn(move || {
                    // SAFETY: a CPU set on the stack, applied to this thread.
                    unsafe {
                        let mut set: libc::cpu_set_t = std::mem::zeroed();
                        libc::CPU_SET(cpu, &mut set);
                        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
                    }
                    let mut last = epoch_now();
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(5));
                        let now = epoch_now();
                        if now - last >= STALL_NOTED {
                            found.lock().unwrap().push((last, now));
                        }
                        last = now;
                    }
                })
            })
            .collect();
        Stalls { found, stop, threads }
    }

    fn stop(mut self) -> Vec<(f64, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        std::mem::take(&mut *self.found.lock().unwrap())
    }
}

/// What each dropped picture is put down to, from vitrine's log.
#[derive(Debug, Default)]
struct Drops {
    warm_up: u64,
    faults: u64,
    screenshots: u64,
    starved: u64,
    stalled: u64,
    /// The log lines of drops none of the above explains.
    unexplained: Vec<String>,
    /// For each of those, what came in the half second before it: the display's and the
    /// loop's lateness as vitrine logged it, and the shorter stalls of the CPUs.
    context: Vec<Vec<String>>,
}

/// What vitrine says, at debug level, when something came late on the display path.
const LATENESS: [&str; 4] = [
    "a flip came late",
    "the video's wake-up came late",
    "a repaint took a refresh or more",
    "the loop waited for a CPU",
];

/// The lateness logged and the stalls seen in the half second up to the drop at `t`.
fn context(log: &str, t: f64, stalls: &[(f64, f64)]) -> Vec<String> {
    let near = |at: f64| at >= t - 0.5 && at <= t + 0.01;
    let mut lines: Vec<String> = log
        .lines()
        .filter(|l| LATENESS.iter().any(|w| l.contains(w)))
        .filter(|l| log_time(l).is_some_and(near))
        .map(str::to_string)
        .collect();
    for (a, b) in stalls.iter().filter(|(a, b)| near(*a) || near(*b)) {
        lines.push(format!(
            "a CPU stood still for {:.0} ms, {:.0} ms before the drop",
            (b - a) * 1000.0,
            (t - b) * 1000.0
        ));
    }
    lines
}

impl Drops {
    fn total(&self) -> u64 {
        self.warm_up + self.faults + self.screenshots + self.starved + self.stalled + self.unexplained.len() as u64
    }
}

/// Put each "late picture dropped" of `log` down to what explains it. Windows are in epoch
/// seconds; `settled` is when warm-up ended.
fn judge_drops(log: &str, settled: f64, faults: &[(f64, f64)], shots: &[(f64, f64)], stalls: &[(f64, f64)]) -> Drops {
    let timed = |what: &str| -> Vec<(f64, &str)> {
        log.lines().filter(|l| l.contains(what)).filter_map(|l| Some((log_time(l)?, l))).collect()
    };
    // The loop says so right after the drops of a pick it made late for want of a CPU.
    let starved: Vec<f64> = timed("the loop waited for a CPU: pictures dropped").into_iter().map(|(t, _)| t).collect();
    let within = |t: f64, windows: &[(f64, f64)], before: f64, after: f64| {
        windows.iter().any(|(a, b)| t >= a - before && t <= b + after)
    };
    let long_stalls: Vec<(f64, f64)> = stalls.iter().copied().filter(|(a, b)| b - a >= STALL).collect();
    let mut drops = Drops::default();
    for (t, line) in timed("late picture dropped") {
        if t < settled {
            drops.warm_up += 1;
        } else if within(t, faults, 0.0, 0.0) {
            drops.faults += 1;
        } else if within(t, shots, 0.0, 0.0) {
            drops.screenshots += 1;
        } else if starved.iter().any(|s| t <= *s && t >= s - 0.05) {
            drops.starved += 1;
        } else if within(t, &long_stalls, 0.0, 0.25) {
            // The pick that drops comes at the first vblank after the CPU ran again.
            drops.stalled += 1;
        } else {
            drops.unexplained.push(line.to_string());
            drops.context.push(context(log, t, stalls));
        }
    }
    drops
}

#[test]
fn log_times_are_read_as_utc() {
    assert_eq!(days_since_epoch(1970, 1, 1), 0);
    assert_eq!(days_since_epoch(2000, 3, 1), 11_017);
    assert_eq!(days_since_epoch(2026, 12, 2), 20_789);
    let t = log_time("2026-12-02T14:55:06.884461Z DEBUG video: late picture dropped").unwrap();
    assert!((t - (20_789.0 * 86_400.0 + 14.0 * 3600.0 + 55.0 * 60.0 + 6.884461)).abs() < 1e-6);
    assert_eq!(log_time("not a log line"), None);
}

#[test]
fn drops_are_put_down_to_what_explains_them() {
    let at = |t: f64| {
        let secs = t - 20_789.0 * 86_400.0;
        format!("2026-12-02T{:02}:{:02}:{:09.6}Z", (secs / 3600.0) as u32, (secs % 3600.0 / 60.0) as u32, secs % 60.0)
    };
    let day = 20_789.0 * 86_400.0 + 12.0 * 3600.0;
    let drop = |t: f64| format!("{} DEBUG video: late picture dropped pts_ms=1\n", at(day + t));
    let log = [
        drop(1.0),
        drop(100.0),
        drop(200.5),
        drop(300.0),
        format!("{} DEBUG video: the loop waited for a CPU: pictures dropped dropped=1\n", at(day + 300.01)),
        drop(400.1),
        format!("{} DEBUG frames: a flip came late commit_to_flip_us=50000\n", at(day + 499.9)),
        drop(500.0),
        drop(600.0),
    ]
    .concat();
    let drops = judge_drops(
        &log,
        day + 60.0,
        &[(day + 99.0, day + 110.0)],
        &[(day + 200.0, day + 201.0)],
        // A stall of 100 ms explains the drop after it; one of 30 ms does not.
        &[(day + 399.9, day + 400.0), (day + 599.95, day + 599.98)],
    );
    assert_eq!((drops.warm_up, drops.faults, drops.screenshots, drops.starved, drops.stalled), (1, 1, 1, 1, 1));
    assert_eq!(drops.unexplained.len(), 2, "{drops:?}");
    assert!(drops.unexplained[0].contains("12:08:20"), "{drops:?}");
    assert!(drops.unexplained[1].contains("12:10:00"), "{drops:?}");
    // Each comes with what was late before it.
    assert_eq!(drops.context[0].len(), 1, "{drops:?}");
    assert!(drops.context[0][0].contains("a flip came late"), "{drops:?}");
    assert_eq!(drops.context[1], ["a CPU stood still for 30 ms, 20 ms before the drop"], "{drops:?}");
}

#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn soak() {
    assert_in_vm();
    let minutes: f64 = std::env::var("VITRINE_SOAK_MINUTES").ok().and_then(|m| m.parse().ok()).unwrap_or(3.0);
    let length = Duration::from_secs_f64(minutes * 60.0);
    let items = ["ladder.mp4", "soak-256.mp4", "soak-384.mp4"].map(|n| format!("{:?}", clip(n).display().to_string()));
    // Unscaled in the top left corner, beside the client (centred, 250x250): on an overlay above
    // the composition, which the client, above the video in the scene but not touching it, is
    // in. vkms' planes do not scale and cannot go under the composition; a picture composited by pixman
    // under TCG is slower than the video, and its drops would be the rig's, not vitrine's.
    // A vkms device of its own, whose second connector the soak plugs in and out; two overlay
    // planes, as many as the rig's default vkms has.
    let vkms = ConfigfsVkms::new("soak", &[true, false], 2);
    let config = format!(
        "{BG_CONFIG}[drm]\ndevice = \"{}\"\n[video]\nplaylist = [{}]\nloop = true\nscale = \"none\"\nzone = [0, 0, 384, 288]\n",
        vkms.card.display(),
        items.join(", ")
    );
    let mut vitrine = Vitrine::launch(Launch {
        name: "vm-soak",
        args: Vec::new(),
        config: config.clone(),
        // Each dropped picture logged with its time, to be judged (`judge_drops`).
        // The display path's lateness, said only when it happens, under its own target.
        env: vec![("RUST_LOG".into(), "info,vitrine=debug,video=debug,frames=debug,planes=debug".into())],
        runtime: None,
        wrapper: Vec::new(),
    });
    let pid = vitrine.child.id();
    let stalls = Stalls::watch();
    let start_epoch = epoch_now();
    vitrine.spawn_client("weston-simple-shm", &[]);
    let start = Instant::now();
    // The decoder fault: every 10 minutes from minute 5, or once at half time.
    let faults_at: Vec<Duration> = if minutes >= 10.0 {
        (0..).map(|k| Duration::from_secs(300 + 600 * k)).take_while(|t| *t < length).collect()
    } else {
        vec![length / 2]
    };
    // The hotplug toggles: every 5 minutes from minute 2.5 (between the decoder faults), an even
    // number of them so that the run ends as it began; or in once and out again.
    let mut hotplugs_at: Vec<Duration> = if minutes >= 10.0 {
        (0..)
            .map(|k| Duration::from_secs(150 + 300 * k))
            .take_while(|t| *t + Duration::from_secs(60) < length)
            .collect()
    } else {
        vec![length.mul_f64(0.35), length.mul_f64(0.75)]
    };
    hotplugs_at.truncate(hotplugs_at.len() / 2 * 2);
    let mut next_hotplug = 0;
    let outputs = |v: &Vitrine| v.ok(&Request::Outputs)["outputs"].as_array().map_or(0, |o| o.len());
    let mut fault_windows: Vec<(f64, f64)> = Vec::new();
    let mut next_fault = 0;
    let (mut next_sample, mut next_reload, mut next_shot) = (Duration::ZERO, Duration::from_secs(60), SAMPLE_EVERY);
    let mut samples = Vec::new();
    let mut reloads = 0;
    // From the request to a second after the answer, in epoch seconds, for each screenshot.
    let mut shot_windows: Vec<(f64, f64)> = Vec::new();
    let mut lost_writebacks = 0u32;
    while start.elapsed() < length {
        let now = start.elapsed();
        if now >= next_sample {
            samples.push(sample(&vitrine, start));
            next_sample += SAMPLE_EVERY;
        }
        if now >= next_reload {
            // SAFETY: kill on the child's pid.
            unsafe { libc::kill(pid as i32, libc::SIGHUP) };
            reloads += 1;
            next_reload += Duration::from_secs(60);
        }
        if now >= next_shot {
            // Never just the background: the video (256x144 to 384x288) and the client's window
            // (250x250) cover more than 1/16 of the 1024x768 output.
            // A screenshot on vkms is a writeback the kernel composes on the CPU: under TCG the
            // frame carrying it takes a few hundred milliseconds, and pictures due meanwhile are
            // dropped. Those are counted apart (an injected operation, like the faults).
            // A writeback the kernel never completes (vkms under TCG, rarely) is answered with
            // the reason after vitrine's deadline: counted, and the next screenshot is composed.
            let from = epoch_now();
            let path = vitrine.runtime.join("soak-shot.png");
            let reply = vitrine.request(&Request::Screenshot { output: None, path: path.clone() });
            if reply.ok {
                let image = vitrine::image::RgbaImage::load_png(&path).expect("screenshot PNG");
                let _ = std::fs::remove_file(&path);
                assert!(common::covered(&image) > 1.0 / 16.0, "the screen went dark at {now:?}");
            } else {
                let error = reply.error.unwrap_or_default();
                assert!(error.contains("did not complete"), "screenshot at {now:?} failed: {error}");
                lost_writebacks += 1;
            }
            shot_windows.push((from, epoch_now() + 1.0));
            next_shot += SAMPLE_EVERY;
        }
        if hotplugs_at.get(next_hotplug).is_some_and(|t| now >= *t) {
            // Plugged in at even turns, out at odd ones. A modeset on vkms under TCG may cost
            // the other head a frame or two: the pictures dropped meanwhile belong to the fault.
            let plug = next_hotplug % 2 == 0;
            next_hotplug += 1;
            let from = start.elapsed().as_secs_f64();
            vkms.set_connected(1, plug);
            let want = if plug { 2 } else { 1 };
            assert!(
                common::wait_until(Duration::from_secs(30), || outputs(&vitrine) == want),
                "{} outputs after the hotplug at {now:?}, not {want}; log:\n{}",
                outputs(&vitrine),
                vitrine.log()
            );
            fault_windows.push((from - 1.0, start.elapsed().as_secs_f64() + 10.0));
        }
        if faults_at.get(next_fault).is_some_and(|t| now >= *t) {
            next_fault += 1;
            let from = start.elapsed().as_secs_f64();
            let unbound = faults::VislUnbound::new();
            std::thread::sleep(Duration::from_secs(20));
            unbound.bind();
            // Back on visl at the next item; pictures dropped until then belong to the fault.
            let back = common::wait_until(Duration::from_secs(120), || {
                vitrine.ok(&Request::Status)["decoder"].as_str().is_some_and(|d| d.contains("visl"))
            });
            assert!(back, "visl not used again after the fault; log:\n{}", vitrine.log());
            fault_windows.push((from, start.elapsed().as_secs_f64() + 10.0));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    samples.push(sample(&vitrine, start));
    assert!(vitrine.is_running(), "vitrine exited; log:\n{}", vitrine.log());
    assert_eq!(vitrine.child.id(), pid);

    // Judged after warm-up.
    let settled: Vec<&Sample> = samples.iter().filter(|s| s.t_s >= WARM_UP.as_secs_f64()).collect();
    assert!(settled.len() >= 3, "too few samples: {samples:?}");
    let in_fault = |a: f64, b: f64| fault_windows.iter().any(|(from, to)| a < *to && b > *from);
    // Memory is judged between faults: a fault makes the decoder's buffers again (and software
    // decoding has buffers of its own), a one-off step that is reported, not a leak. A leak
    // shows as growth while nothing is injected.
    let rss: Vec<(f64, f64)> = settled.iter().map(|s| (s.t_s, s.rss_kib as f64)).collect();
    let kib_per_hour = slope(&rss) * 3600.0;
    let (mut growth_kib, mut fault_steps_kib) = (0i64, Vec::new());
    for w in settled.windows(2) {
        let delta = w[1].rss_kib as i64 - w[0].rss_kib as i64;
        if in_fault(w[0].t_s, w[1].t_s) {
            fault_steps_kib.push(delta);
        } else {
            growth_kib += delta;
        }
    }
    let hours = length.as_secs_f64() / 3600.0;
    // 1 MiB an hour, plus 4 MiB of slack: a run of minutes cannot resolve a slope that small
    // (the allocator keeps freed memory, the decoder's buffers are made again after a fault).
    let allowed_kib = 1024.0 * hours + 4096.0;
    let early = |f: fn(&Sample) -> u64| settled.iter().take(3).map(|s| f(s)).max().unwrap();
    let late = |f: fn(&Sample) -> u64| settled.iter().rev().take(2).map(|s| f(s)).min().unwrap();
    let (fds_early, fds_late) = (early(|s| s.fds as u64), late(|s| s.fds as u64));
    let (threads_early, threads_late) = (early(|s| s.threads as u64), late(|s| s.threads as u64));
    // Framebuffers follow the item playing (each size has its own capture buffers): the end must
    // not reach a new high.
    let fbs_early = settled[..settled.len() - 2].iter().map(|s| s.framebuffers).max().unwrap_or(0);
    let fbs_late = late(|s| s.framebuffers);
    // Each drop, from the log: the faults' and screenshots' own, the machine's (the loop waited
    // for a CPU, or a CPU stood still: reported, not judged), and any other.
    let stall_windows = stalls.stop();
    let last = samples.last().unwrap().clone();
    let faults_epoch: Vec<(f64, f64)> = fault_windows.iter().map(|(a, b)| (start_epoch + a, start_epoch + b)).collect();
    let log = vitrine.log();
    let drops = judge_drops(&log, start_epoch + WARM_UP.as_secs_f64(), &faults_epoch, &shot_windows, &stall_windows);
    let dropped_outside = drops.unexplained.len() as u64;
    let long: Vec<(f64, f64)> = stall_windows.iter().copied().filter(|(a, b)| b - a >= STALL).collect();
    // Folded from +0.0: an empty f64 sum is -0.0, which the report would print.
    let stalled_s: f64 = long.iter().fold(0.0, |sum, (a, b)| sum + (b - a));
    let longest_stall_ms = stall_windows.iter().map(|(a, b)| b - a).fold(0.0, f64::max) * 1000.0;

    let report = serde_json::json!({
        "minutes": minutes,
        "restarts": 0,
        "reloads": reloads,
        "faults": fault_windows,
        "decoder_faults": faults_at.len(),
        "hotplugs": next_hotplug,
        "rss_growth_between_faults_kib": growth_kib,
        "rss_steps_across_faults_kib": fault_steps_kib,
        "rss_slope_kib_per_hour": kib_per_hour,
        "fds": [fds_early, fds_late],
        "threads": [threads_early, threads_late],
        "framebuffers": [fbs_early, fbs_late],
        "dropped_outside_faults": dropped_outside,
        "dropped_unexplained": drops.unexplained,
        "dropped_unexplained_context": drops.context,
        "dropped_during_faults": drops.faults,
        "dropped_while_starved": drops.starved,
        "dropped_while_a_cpu_stood_still": drops.stalled,
        "dropped_during_screenshots": drops.screenshots,
        "dropped_during_warm_up": drops.warm_up,
        "writebacks_the_kernel_lost": lost_writebacks,
        "cpu_stalls": long.len(),
        "cpu_stalls_of_20ms_or_more": stall_windows.len(),
        "cpu_stalled_s": stalled_s,
        "longest_cpu_stall_ms": longest_stall_ms,
        "samples": samples,
    });
    let dir = common::artifacts().join("soak");
    std::fs::create_dir_all(&dir).unwrap();
    // The whole log and every stall, to judge the run again by hand.
    std::fs::write(dir.join("vitrine.log"), &log).unwrap();
    std::fs::write(dir.join("stalls.json"), serde_json::to_string(&stall_windows).unwrap()).unwrap();
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(&report).unwrap()).unwrap();
    let mut md = format!(
        "# Soak: {minutes} minutes\n\n{reloads} reloads, {} decoder faults, {next_hotplug} hotplugs, 0 restarts.\n\n\
         | | after warm-up | at the end |\n|---|---|---|\n\
         | RSS (KiB) | {} | {} (between faults {growth_kib:+} KiB; across faults {fault_steps_kib:?} KiB) |\n| descriptors | {fds_early} | {fds_late} |\n\
         | threads | {threads_early} | {threads_late} |\n| framebuffers | {fbs_early} | {fbs_late} |\n\n\
         Pictures presented: {}; dropped outside the faults and screenshots: {dropped_outside} \
         (during the faults: {}; during the {} screenshots: {}; while the loop waited for a CPU: {}; \
         while a CPU of the guest stood still: {} (it did {} times, {stalled_s:.1} s in all, at most \
         {longest_stall_ms:.0} ms)); commits: {}; decoder failures: {}; screenshots whose writeback \
         the kernel lost: {lost_writebacks}; frames that composited the picture: {}; page flips that never came: {}.\n\n\
         | t (s) | RSS KiB | fds | threads | fbs | plans | presented | dropped |\n|---|---|---|---|---|---|---|---|\n",
        faults_at.len(),
        settled[0].rss_kib,
        last.rss_kib,
        last.video_presented,
        drops.faults,
        shot_windows.len(),
        drops.screenshots,
        drops.starved,
        drops.stalled,
        long.len(),
        last.commits,
        last.decoder_failures,
        last.video_composited,
        last.flips_timed_out,
    );
    for s in &samples {
        md += &format!(
            "| {:.0} | {} | {} | {} | {} | {} | {} | {} |\n",
            s.t_s, s.rss_kib, s.fds, s.threads, s.framebuffers, s.plans_cached, s.video_presented, s.video_dropped
        );
    }
    for (line, context) in drops.unexplained.iter().zip(&drops.context) {
        md += &format!("\nUnexplained: `{line}`\n");
        for c in context {
            md += &format!("  - before it: `{c}`\n");
        }
    }
    std::fs::write(dir.join("report.md"), &md).unwrap();
    println!("{md}");

    assert!(
        (growth_kib as f64) <= allowed_kib,
        "RSS grew {growth_kib} KiB between faults (allowed {allowed_kib:.0}):\n{md}"
    );
    assert!(fds_late <= fds_early, "descriptors did not come back:\n{md}");
    assert!(threads_late <= threads_early, "threads did not come back:\n{md}");
    assert!(fbs_late <= fbs_early.max(1), "framebuffers pile up:\n{md}");
    assert!(last.plans_cached <= 64, "{md}");
    assert!(drops.total() >= last.video_dropped, "the log names fewer drops than the stats count:\n{drops:?}\n{md}");
    assert_eq!(dropped_outside, 0, "pictures dropped outside the injected faults:\n{md}");
    // The scene's premise: the picture stays on its plane (beside the client, above the
    // composition). A picture converted and composited on the CPU under TCG takes the loop more
    // than a refresh, and its drops would be the rig's. A frame composited while a plan changes
    // is allowed, not a habit.
    assert!(last.video_composited * 100 <= last.video_presented, "the picture left its plane:\n{md}");
    // A display plugged in or out must not cost the other one a page flip (a second frozen).
    assert_eq!(last.flips_timed_out, 0, "page flips never came:\n{md}");
    assert!(last.decoder_failures >= faults_at.len() as u64, "the faults were not seen:\n{md}");
    assert_eq!(next_hotplug, hotplugs_at.len(), "hotplugs not made:\n{md}");
    assert_eq!(outputs(&vitrine), 1, "the run ends with the second display unplugged");
}
