//! Real Debian clients against headless vitrine, each judged by what vitrine's screenshot shows
//! (or, for clients that draw nothing, by what they report).

mod common;

use std::time::Duration;

use common::{count_near, covered, Launch, Vitrine, BG_CONFIG};

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn wayland_info_lists_every_global() {
    let vitrine = Vitrine::headless("wayland-info");
    let (status, out, err) = vitrine.run_client("wayland-info", &[], SECS(20));
    assert!(status.success(), "wayland-info failed: {err}");
    for (interface, version) in [
        ("wl_compositor", Some(6)),
        ("wl_subcompositor", None),
        ("wl_shm", None),
        ("xdg_wm_base", Some(6)),
        ("wl_seat", None),
        ("wl_data_device_manager", None),
        ("wl_output", None),
        ("zxdg_output_manager_v1", None),
        ("wp_presentation", None),
        ("wp_viewporter", None),
        ("wp_single_pixel_buffer_manager_v1", None),
        ("wp_content_type_manager_v1", None),
        ("wp_color_representation_manager_v1", Some(1)),
        ("xdg_activation_v1", None),
        ("zxdg_decoration_manager_v1", None),
        ("zwp_primary_selection_device_manager_v1", None),
        ("zwlr_layer_shell_v1", Some(4)),
        ("zwp_text_input_manager_v3", None),
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("'{interface}'")))
            .unwrap_or_else(|| panic!("{interface} not advertised:\n{out}"));
        if let Some(v) = version {
            let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(line.contains(&format!("version: {v},")), "{interface} at the wrong version: {line}");
        }
    }
    // The seat has all three capabilities.
    assert!(out.contains("keyboard") && out.contains("pointer") && out.contains("touch"), "{out}");
    // No DRM device on the headless backend: no linux-dmabuf, and the log says why.
    assert!(!out.contains("zwp_linux_dmabuf_v1"), "{out}");
    let log = vitrine.log();
    assert!(
        log.contains("linux-dmabuf not advertised") && log.contains("no DRM device"),
        "the log does not say why linux-dmabuf is absent:\n{log}"
    );
}

#[test]
fn weston_simple_shm_is_shown_centred() {
    let mut vitrine = Vitrine::headless("simple-shm");
    vitrine.spawn_client("weston-simple-shm", &[]);
    // simple-shm draws a 250x250 pattern and ignores the fullscreen size: vitrine centres it.
    let image = vitrine
        .wait_for_pixels("drawn", SECS(20), |img| img.fraction_differing((220, 140, 200, 200), common::BG, 8) > 0.95);
    assert!(image.fraction_differing((0, 0, 100, 100), common::BG, 8) < 0.01, "corner is not background");
    assert!(image.distinct_colors() > 50, "the pattern has too few colours");
    assert_eq!(vitrine.app_ids(), ["org.freedesktop.weston.simple-shm"]);
    let clients = vitrine.clients_json();
    let surface = &clients["clients"][0]["surfaces"][0];
    assert_eq!(surface["output"], "HEADLESS-1");
    assert_eq!(surface["focused"], true, "the newest toplevel has keyboard focus");
}

#[test]
fn weston_simple_egl_renders_through_llvmpipe() {
    let mut vitrine = Vitrine::headless("simple-egl");
    vitrine.spawn_client("weston-simple-egl", &["-f"]);
    // The rotating triangle: its red, green and blue corners must all be on screen.
    vitrine.wait_for_pixels("triangle", SECS(30), |img| {
        let red = img.data.chunks_exact(4).filter(|p| p[0] > 180 && p[1] < 70 && p[2] < 70).count();
        let green = img.data.chunks_exact(4).filter(|p| p[1] > 180 && p[0] < 70 && p[2] < 70).count();
        let blue = img.data.chunks_exact(4).filter(|p| p[2] > 180 && p[0] < 70 && p[1] < 70).count();
        red > 50 && green > 50 && blue > 50
    });
}

#[test]
fn weston_presentation_shm_receives_feedback_at_the_refresh_rate() {
    let mut launch = Launch::headless("presentation-shm");
    // Debian 12's weston-presentation-shm cannot handle xdg_wm_base 4+ events (see compat docs).
    launch.config = format!("{BG_CONFIG}[compat]\nxdg_wm_base_version = 3\n");
    let vitrine = Vitrine::launch(launch);
    let mut cmd = vitrine.client_command("weston-presentation-shm", &[]);
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("weston-presentation-shm");
    let pid = child.id();
    std::thread::sleep(SECS(3));
    let image = vitrine.screenshot("running");
    unsafe {
        libc::kill(pid as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Lines look like: "  12: f2c  0 ms, c2p 16 ms, f2p 16 ms, p2p 16664 us, t2p ..., seq 92"
    let p2p: Vec<f64> = stdout
        .lines()
        .filter_map(|l| l.split("p2p ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(p2p.len() >= 60, "only {} presentation feedbacks in 3 s:\n{stdout}", p2p.len());
    let mut sorted = p2p[5..].to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median_us = sorted[sorted.len() / 2];
    assert!(
        (15_000.0..18_500.0).contains(&median_us),
        "presentation-to-presentation median {median_us} us is not 60 Hz"
    );
    assert!(covered(&image) > 0.05, "nothing drawn");
}

#[test]
fn weston_subsurfaces_are_composited() {
    let mut vitrine = Vitrine::headless("subsurfaces");
    vitrine.spawn_client("weston-subsurfaces", &[]);
    let image = vitrine.wait_for_pixels("drawn", SECS(30), |img| covered(img) > 0.1 && img.distinct_colors() > 10);
    assert!(image.distinct_colors() > 10);
}

#[test]
fn foot_terminal_fills_the_output() {
    let mut vitrine = Vitrine::headless("foot");
    vitrine.spawn_client("foot", &["-e", "sh", "-c", "echo vitrine-foot-test; sleep 60"]);
    vitrine.wait_for_pixels("fullscreen", SECS(30), |img| covered(img) > 0.99);
    assert_eq!(vitrine.app_ids(), ["foot"]);
}

#[test]
fn gtk3_demo_fills_the_output() {
    let mut vitrine = Vitrine::headless("gtk3-demo");
    vitrine.spawn_client("gtk3-demo", &[]);
    vitrine.wait_for_pixels("fullscreen", SECS(40), |img| covered(img) > 0.99 && img.distinct_colors() > 20);
    assert!(vitrine.app_ids().iter().any(|id| id.contains("gtk3-demo")), "{:?}", vitrine.app_ids());
}

#[test]
fn gstreamer_waylandsink_shows_colour_bars() {
    let mut vitrine = Vitrine::headless("waylandsink");
    vitrine.spawn_client("gst-launch-1.0", &["videotestsrc", "!", "waylandsink"]);
    // SMPTE bars (320x240, centred): yellow, cyan and green bars, each about 45x160.
    vitrine.wait_for_pixels("bars", SECS(30), |img| {
        count_near(img, [255, 255, 0], 40) > 5000
            && count_near(img, [0, 255, 255], 40) > 5000
            && count_near(img, [0, 255, 0], 40) > 5000
    });
}

/// The usual way to run GStreamer in a kiosk: `waylandsink fullscreen=true`, which asks for
/// fullscreen before its first commit and stops with "Window has no size set" when the answer
/// has no size. It plays its 60 buffers to the end and exits cleanly.
#[test]
fn gstreamer_waylandsink_fullscreen_plays_to_the_end() {
    let vitrine = Vitrine::headless("waylandsink-fullscreen");
    let (status, out, err) = vitrine.run_client(
        "gst-launch-1.0",
        &["videotestsrc", "num-buffers=60", "!", "waylandsink", "fullscreen=true"],
        SECS(60),
    );
    assert!(status.success(), "waylandsink fullscreen=true failed ({status}):\n{out}\n{err}");
    assert!(!format!("{out}{err}").contains("no size"), "{out}\n{err}");
}

#[test]
fn clipboard_round_trip_with_wl_copy_and_wl_paste() {
    let vitrine = Vitrine::headless("clipboard");
    let text = format!("vitrine clipboard {}", std::process::id());
    // wl-copy forks a server that keeps the selection; it exits when the selection is replaced.
    let (status, _, err) = vitrine.run_client("wl-copy", &[&text], SECS(20));
    assert!(status.success(), "wl-copy failed: {err}");
    let (status, out, err) = vitrine.run_client("wl-paste", &["--no-newline"], SECS(20));
    assert!(status.success(), "wl-paste failed: {err}");
    assert_eq!(out, text);
    let (status, _, _) = vitrine.run_client("wl-copy", &["--clear"], SECS(20));
    assert!(status.success());
}
