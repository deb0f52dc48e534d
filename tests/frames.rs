//! Frames on demand, on the headless backend: a static scene costs no wake-up and no frame; a
//! client animating at 30 Hz on a 60 Hz output gets 30 frames a second, not 60; frame callbacks
//! come at presentation.

mod common;

use std::time::{Duration, Instant};

use common::wl::{dispatch_until, map, setup, solid_buffer, toplevel};
use common::{Launch, Vitrine};
use vitrine::control::protocol::Request;

fn presented(vitrine: &Vitrine) -> u64 {
    let stats = vitrine.ok(&Request::Stats);
    stats["frames"]["outputs"][0]["presented"].as_u64().expect("frames presented")
}

#[test]
fn a_static_scene_costs_no_wakeups_and_no_frames() {
    let vitrine = Vitrine::launch(Launch::headless("frames-idle"));
    let conn = vitrine.wayland();
    let (g, mut queue, mut client) = setup(&conn);
    let qh = queue.handle();
    let window = toplevel(&g, &qh, "org.vitrine.Static");
    map(&g, &mut queue, &mut client, &window, [0x20, 0x80, 0x20]);
    // One more commit asking for a frame callback: it comes once, when that frame is shown.
    window.surface.frame(&qh, ());
    window.surface.commit();
    dispatch_until(&mut queue, &mut client, |c| c.frame_callbacks >= 1);
    assert_eq!(client.frame_callbacks, 1);
    // Let everything settle (the commit above, the callbacks' round trip).
    std::thread::sleep(Duration::from_millis(500));
    let frames_before = presented(&vitrine);
    let pid = vitrine.child.id();
    let wakeups_before = common::main_thread_wakeups(pid);
    // Ten seconds of nothing: no request, no commit. The control request that reads the stats
    // comes after the second reading.
    std::thread::sleep(Duration::from_secs(10));
    let wakeups = common::main_thread_wakeups(pid) - wakeups_before;
    queue.dispatch_pending(&mut client).unwrap();
    conn.flush().unwrap();
    queue.roundtrip(&mut client).unwrap();
    let frames = presented(&vitrine) - frames_before;
    assert!(wakeups <= 10, "the main thread woke {wakeups} times in 10 s of a static scene (at most 1 a second)");
    assert_eq!(frames, 0, "{frames} frames were presented for a static scene");
    assert_eq!(client.frame_callbacks, 1, "frame callbacks came without a frame asking for them");
    eprintln!("static scene: {wakeups} main-thread wake-ups and {frames} frames in 10 s");
}

#[test]
fn a_client_animating_at_30_hz_gets_30_frames_a_second_on_a_60_hz_output() {
    let vitrine = Vitrine::launch(Launch::headless("frames-30hz"));
    let conn = vitrine.wayland();
    let (g, mut queue, mut client) = setup(&conn);
    let qh = queue.handle();
    let window = toplevel(&g, &qh, "org.vitrine.Thirty");
    let (w, h) = map(&g, &mut queue, &mut client, &window, [0x20, 0x20, 0x80]);
    std::thread::sleep(Duration::from_millis(300));
    let buffers = [solid_buffer(&g, &qh, w, h, [0xff, 0, 0]), solid_buffer(&g, &qh, w, h, [0, 0xff, 0])];
    let before = presented(&vitrine);
    // A new picture every 1/30 s, on absolute deadlines (a late one does not shift the rest).
    let commits = 150;
    let start = Instant::now();
    let mut last = start;
    for i in 0..commits {
        let deadline = start + Duration::from_secs_f64(i as f64 / 30.0);
        if let Some(wait) = deadline.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        window.surface.attach(Some(&buffers[i % 2]), 0, 0);
        window.surface.damage_buffer(0, 0, w, h);
        window.surface.frame(&qh, ());
        window.surface.commit();
        conn.flush().unwrap();
        last = Instant::now();
        queue.dispatch_pending(&mut client).unwrap();
    }
    // The frames of the commits made from `start` to `last`, plus the last one's period.
    let elapsed = (last - start).as_secs_f64() + 1.0 / 30.0;
    std::thread::sleep(Duration::from_millis(100));
    let frames = presented(&vitrine) - before;
    queue.roundtrip(&mut client).unwrap();
    let rate = frames as f64 / elapsed;
    eprintln!(
        "{commits} commits in {elapsed:.2} s: {frames} frames presented ({rate:.1}/s), {} frame callbacks",
        client.frame_callbacks
    );
    // Each commit is one frame at the next vblank; two commits in one refresh period (a late
    // client thread) would be one frame, hence the small margin below the count.
    assert!(frames <= commits as u64 && frames + 5 >= commits as u64, "{frames} frames for {commits} commits");
    assert!((29.0..=31.0).contains(&rate), "{rate:.1} frames a second for a 30 Hz client");
    // Frame callbacks come with presented frames, never more often.
    assert!(client.frame_callbacks as u64 <= frames, "{} callbacks for {frames} frames", client.frame_callbacks);
    assert!(client.frame_callbacks + 5 >= frames as u32, "{} callbacks for {frames} frames", client.frame_callbacks);
}
