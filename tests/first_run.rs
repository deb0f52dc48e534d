//! The first run (`scripts/run` with no arguments): vitrine makes its own sample clip with the
//! H.264 encoder it links, plays it once under a kiosk app, writes a first look, and prints the
//! zero-copy audit at the end.

mod common;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vitrine::image::RgbaImage;

fn vitrine() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vitrine"))
}

#[test]
fn sample_clip_is_made_and_bad_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("sample.h264");
    let out = vitrine().args(["sample-clip", "--seconds", "2"]).arg(&clip).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("50 pictures, 640x360, H.264"));
    // ffprobe, a decoder that is not vitrine's, agrees.
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries", "stream=codec_name,width,height,nb_read_frames"])
        .args(["-of", "csv=p=0"])
        .arg(&clip)
        .output()
        .expect("ffprobe (ffmpeg): run scripts/deps test");
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "h264,640,360,50");

    let out = vitrine().args(["sample-clip", "--size", "63x64"]).arg(dir.path().join("bad.h264")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("63x64: the size must be even"), "{out:?}");
}

#[test]
fn the_first_run_plays_the_sample_under_the_app_and_prints_the_audit() {
    common::require("weston-simple-shm");
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("sample.h264");
    let made = vitrine().args(["sample-clip", "--seconds", "4"]).arg(&clip).output().unwrap();
    assert!(made.status.success());
    let shot = dir.path().join("first-look.png");
    let runtime = common::runtime_dir();
    // What scripts/run does, on the headless backend and with software decoding (the host may
    // have V4L2 devices of its own).
    let child = vitrine()
        .args(["--backend", "headless", "--output", "1280x720@60", "--socket", &common::unique("vt")])
        .arg("--play")
        .arg(&clip)
        .args(["--exit-when-done", "--audit", "--screenshot-on-start"])
        .arg(&shot)
        .args(["--", "weston-simple-shm"])
        .env("XDG_RUNTIME_DIR", runtime.path())
        .env("VITRINE_DECODER", "software")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("DISPLAY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // 100 pictures at 25 a second; the bound only catches a demo that never ends.
    assert!(started.elapsed() < Duration::from_secs(60));

    // The audit, in words.
    assert!(stdout.contains("video audit (headless backend)"), "{stdout}");
    assert!(stdout.contains("decoder:   software (OpenH264"), "{stdout}");
    assert!(stdout.contains("pictures:  100 decoded"), "{stdout}");
    assert!(stdout.contains("copies:    "), "{stdout}");

    // The first look: the bars across the whole output (the 640x360 clip scaled to 1280x720)...
    let image = RgbaImage::load_png(&shot).unwrap();
    assert_eq!((image.width, image.height), (1280, 720));
    let near = |p: [u8; 4], c: [u8; 3]| (0..3).all(|i| p[i].abs_diff(c[i]) <= 40);
    assert!(near(image.pixel(240, 100), [191, 191, 0]), "no yellow bar at x=240: {:?}", image.pixel(240, 100));
    assert!(near(image.pixel(1040, 100), [0, 0, 191]), "no blue bar at x=1040: {:?}", image.pixel(1040, 100));
    // ...and the kiosk app's pattern over the middle of it (the bars and the square have a
    // handful of colours; simple-shm's rings have many).
    let mut colours = HashSet::new();
    for y in 300..420 {
        for x in 580..700 {
            colours.insert(image.pixel(x, y));
        }
    }
    assert!(colours.len() > 200, "the app is not over the video: {} colours in the middle", colours.len());
}
