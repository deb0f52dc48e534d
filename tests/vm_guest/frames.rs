//! Frames on demand on a real kernel (vkms, visl): a static scene commits nothing and lets the
//! loop sleep; a 30 Hz client makes one commit per frame on a 60 Hz output, not the output's 60; 24 fps video makes 24,
//! each picture on the vblank nearest its time (the kernel's page-flip timestamps say so).

use std::time::{Duration, Instant};

use super::common::wl::{dispatch_until, map, setup, solid_buffer, toplevel};
use super::common::{Launch, Vitrine, BG_CONFIG};
use super::{assert_in_vm, clip, frame_count, play_once_args, read_stats, wait_for_pictures};
use vitrine::control::protocol::Request;

fn commits(vitrine: &Vitrine) -> u64 {
    vitrine.ok(&Request::Stats)["commits"].as_u64().expect("commits")
}

fn drm(name: &str, config: &str) -> Vitrine {
    Vitrine::launch(Launch {
        name,
        args: vec!["--backend".into(), "drm".into()],
        config: format!("{BG_CONFIG}{config}"),
        env: Vec::new(),
        runtime: None,
        wrapper: Vec::new(),
    })
}

#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn a_static_scene_on_vkms_commits_nothing_and_the_loop_sleeps() {
    assert_in_vm();
    let vitrine = drm("vm-frames-idle", "");
    let conn = vitrine.wayland();
    let (g, mut queue, mut client) = setup(&conn);
    let qh = queue.handle();
    let window = toplevel(&g, &qh, "org.vitrine.Static");
    map(&g, &mut queue, &mut client, &window, [0x20, 0x80, 0x20]);
    window.surface.frame(&qh, ());
    window.surface.commit();
    dispatch_until(&mut queue, &mut client, |c| c.frame_callbacks >= 1);
    std::thread::sleep(Duration::from_secs(1));
    let before = commits(&vitrine);
    let pid = vitrine.child.id();
    let woken = super::common::main_thread_wakeups(pid);
    std::thread::sleep(Duration::from_secs(10));
    let wakeups = super::common::main_thread_wakeups(pid) - woken;
    queue.roundtrip(&mut client).unwrap();
    let committed = commits(&vitrine) - before;
    println!("static scene on vkms: {wakeups} main-thread wake-ups, {committed} commits in 10 s");
    assert!(wakeups <= 10, "{wakeups} wake-ups of the main thread in 10 s (at most 1 a second)");
    assert_eq!(committed, 0, "atomic commits for a scene that did not change");
    assert_eq!(client.frame_callbacks, 1, "frame callbacks without a frame asking for them");
}

#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn a_30_hz_client_on_a_60_hz_vkms_output_makes_one_commit_per_frame() {
    assert_in_vm();
    let vitrine = drm("vm-frames-30hz", "");
    let conn = vitrine.wayland();
    let (g, mut queue, mut client) = setup(&conn);
    let qh = queue.handle();
    let window = toplevel(&g, &qh, "org.vitrine.Thirty");
    // A small window: the frame's cost under TCG is pixman's, not the schedule's.
    let (w, h) = map(&g, &mut queue, &mut client, &window, [0x20, 0x20, 0x80]);
    std::thread::sleep(Duration::from_millis(500));
    let buffers = [solid_buffer(&g, &qh, w, h, [0xff, 0, 0]), solid_buffer(&g, &qh, w, h, [0, 0xff, 0])];
    let before = commits(&vitrine);
    let answered = client.frame_callbacks;
    let count = 150u32;
    let start = Instant::now();
    let mut last = start;
    for i in 0..count {
        // Like a real client: the next frame waits for the last one's callback, then for its
        // 30 Hz time. Each frame then lands in a vblank of its own however slow TCG is, and
        // the count of atomic commits is the schedule's doing, not the wall clock's.
        while client.frame_callbacks < answered + i {
            assert!(start.elapsed() < Duration::from_secs(60), "frame callback {i} never came");
            queue.blocking_dispatch(&mut client).unwrap();
        }
        let deadline = start + Duration::from_secs_f64(f64::from(i) / 30.0);
        if let Some(wait) = deadline.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        window.surface.attach(Some(&buffers[i as usize % 2]), 0, 0);
        window.surface.damage_buffer(0, 0, w, h);
        window.surface.frame(&qh, ());
        window.surface.commit();
        conn.flush().unwrap();
        last = Instant::now();
    }
    dispatch_until(&mut queue, &mut client, |c| c.frame_callbacks >= answered + count);
    std::thread::sleep(Duration::from_millis(200));
    let committed = commits(&vitrine) - before;
    let elapsed = (last - start).as_secs_f64() + 1.0 / 30.0;
    let rate = committed as f64 / elapsed;
    println!("{count} client frames in {elapsed:.2} s: {committed} atomic commits ({rate:.1}/s)");
    // One atomic commit per client frame: a compositor repainting at the output's 60 Hz would
    // make twice as many, one dropping frames fewer. The one spare is a cursor or focus change.
    assert!(
        committed.abs_diff(u64::from(count)) <= 1,
        "{committed} atomic commits for {count} client frames, each in a vblank of its own"
    );
    assert_eq!(client.frame_callbacks, answered + count, "frame callbacks answered");
}

#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn video_at_24_fps_on_60_hz_vkms_goes_to_the_vblank_nearest_each_picture() {
    assert_in_vm();
    let path = clip("640x480-10s.mp4");
    let total = frame_count(&path);
    let stats_path = super::common::artifacts().join("vm-frames-24fps.stats.json");
    let _ = std::fs::remove_file(&stats_path);
    // Pixel for pixel on an overlay plane (vkms planes do not scale).
    let mut vitrine = Vitrine::launch(Launch {
        name: "vm-frames-24fps",
        args: play_once_args(&[&path], &stats_path),
        config: format!("{BG_CONFIG}[video]\nscale = \"none\"\n"),
        env: Vec::new(),
        runtime: None,
        wrapper: Vec::new(),
    });
    // Steady playback, measured over five seconds in the middle of the clip.
    wait_for_pictures(&vitrine, 48);
    let sample = |v: &Vitrine| {
        let s = v.ok(&Request::Stats);
        (Instant::now(), s["commits"].as_u64().unwrap(), s["video"]["frames_presented"].as_u64().unwrap())
    };
    let (t0, c0, p0) = sample(&vitrine);
    std::thread::sleep(Duration::from_secs(5));
    let (t1, c1, p1) = sample(&vitrine);
    let (commits, pictures, secs) = (c1 - c0, p1 - p0, (t1 - t0).as_secs_f64());
    let status = vitrine.wait_exit(Duration::from_secs(120));
    assert!(status.success(), "exit {status:?}; log:\n{}", vitrine.log());
    let stats = read_stats(&stats_path);
    let n = |k: &str| stats[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {stats}"));
    let ms = |k: &str| stats[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {stats}"));
    println!(
        "24 fps on vkms: {commits} commits and {pictures} pictures in {secs:.2} s ({:.2} commits/s); \
         presentation error p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} vblanks missed, error of the \
         others p99 {:.2} ms, max {:.2} ms",
        commits as f64 / secs,
        ms("present_error_p50_ms"),
        ms("present_error_p99_ms"),
        ms("present_error_max_ms"),
        n("vblanks_missed"),
        ms("on_target_error_p99_ms"),
        ms("on_target_error_max_ms"),
    );
    // One commit per picture and none in between: 24 a second, not the output's 60.
    assert!(commits.abs_diff(pictures) <= 2, "{commits} commits for {pictures} new pictures");
    // The stats requests themselves take time under TCG: a generous band on the wall clock.
    let rate = commits as f64 / secs;
    assert!((22.0..=26.0).contains(&rate), "{rate:.2} commits a second for 24 fps video");
    // Every picture shown once; none dropped but while the guest kept vitrine's loop off its
    // CPUs (the kernel's run delay: TCG on a busy host).
    assert_eq!(n("frames_presented") + n("frames_dropped"), total, "every picture shown once: {stats}");
    assert_eq!(n("frames_dropped"), n("frames_dropped_starved"), "{stats}");
    // The vblank nearest each picture's time: at most half a 60 Hz period away (8.33 ms) for 99 %
    // of the pictures whose frame made the vblank it was made for (the error is the kernel's flip
    // timestamp against the picture's due time, on a clock started by the first flip).
    let half = 1000.0 / 60.0 / 2.0 + 0.05;
    assert!(ms("on_target_error_p99_ms") <= half, "{stats}");
    assert!(ms("present_error_p50_ms") <= half, "{stats}");
    // A frame that misses its vblank shows a period late. Under TCG the first repaints after the
    // video gets its plane run cold and can overrun the ¾ period they have (seen: one or two of
    // 240); a scheduler that aims at the wrong vblank, or too late, misses most of them.
    assert!(n("vblanks_missed") <= 4, "{} of {total} pictures missed their vblank: {stats}", n("vblanks_missed"));
}
