//! Video on the host, where there is no V4L2 decoder: the software fallback plays clips made by
//! ffmpeg/x264 into the headless backend, says plainly that it copies, and bad playlist items
//! are reported by name and skipped.

mod common;

use std::time::Duration;

use common::{count_near, encode_clip as clip, Launch, Vitrine};
use vitrine::control::protocol::Request;

fn headless(name: &str, args: Vec<String>, config: String) -> Vitrine {
    let mut launch = Launch::headless(name);
    launch.args = [vec!["--backend".into(), "headless".into(), "--output".into(), "320x240@60".into()], args].concat();
    launch.config = config;
    // The host may have V4L2 devices of its own; this test is about the software path.
    launch.env.push(("VITRINE_DECODER".into(), "software".into()));
    Vitrine::launch(launch)
}

#[test]
fn software_decoding_shows_the_video_and_counts_its_copies() {
    let dir = tempfile::tempdir().unwrap();
    // SMPTE bars with B-frames: 48 pictures.
    let path =
        clip(dir.path(), "bars.mp4", "smptebars=size=320x240:rate=24", &["-t", "2", "-c:v", "libx264", "-bf", "2"]);
    let stats = dir.path().join("stats.json");
    let mut vitrine = headless(
        "video-software",
        vec![
            "--play".into(),
            path.display().to_string(),
            "--exit-when-done".into(),
            "--stats".into(),
            stats.display().to_string(),
        ],
        "[background]\ncolor = \"#ff00ff\"\n".into(),
    );
    // The bars, composited: yellow (191,191,0) and cyan (0,191,191), and no background left.
    let image = vitrine.wait_for_pixels("bars", Duration::from_secs(20), |img| {
        count_near(img, [191, 191, 0], 30) > 2000 && count_near(img, [0, 191, 191], 30) > 2000
    });
    assert!(count_near(&image, [255, 0, 255], 8) < 100, "the picture covers the output");
    let status = vitrine.ok(&Request::Status);
    assert!(status["decoder"].as_str().unwrap().starts_with("software"), "{status}");
    assert!(status["path"].as_str().unwrap().starts_with("copies"), "{status}");
    let code = vitrine.wait_exit(Duration::from_secs(30));
    assert!(code.success(), "{code:?}\n{}", vitrine.log());
    let log = vitrine.log();
    assert!(log.contains("decoding in software, every picture is copied"), "{log}");
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k}: {s}"));
    assert_eq!(n("frames_decoded"), 48, "{s}");
    assert_eq!(n("frames_presented") + n("frames_dropped"), 48, "{s}");
    assert_eq!(n("cpu_copied_bytes"), 48 * 320 * 240 * 4, "every picture converted once: {s}");
    assert!(n("frames_composited") >= n("frames_presented"), "{s}");
}

#[test]
fn bad_playlist_items_are_named_and_skipped_and_the_good_ones_play() {
    let dir = tempfile::tempdir().unwrap();
    let good = clip(
        dir.path(),
        "good.mp4",
        "testsrc=size=320x240:rate=25",
        &["-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p"],
    );
    let hevc = clip(dir.path(), "hevc.mp4", "testsrc=size=320x240:rate=25", &["-t", "1", "-c:v", "libx265"]);
    let garbage = dir.path().join("garbage.mp4");
    std::fs::write(&garbage, (0..50_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect::<Vec<u8>>())
        .unwrap();
    let whole = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.mp4");
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    // With its index first, a cut file still plays up to the cut.
    let fast = clip(
        dir.path(),
        "fast.mp4",
        "testsrc=size=320x240:rate=25",
        &["-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart"],
    );
    let whole = std::fs::read(&fast).unwrap();
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &whole[..whole.len() * 3 / 5]).unwrap();
    // Matroska, and a WebM file in a codec nothing here decodes.
    let mkv = clip(
        dir.path(),
        "good.mkv",
        "testsrc=size=320x240:rate=25",
        &["-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p"],
    );
    let webm = clip(dir.path(), "vp9.webm", "testsrc=size=320x240:rate=25", &["-t", "1", "-c:v", "libvpx-vp9"]);
    let missing = dir.path().join("missing.mp4");
    let stats = dir.path().join("stats.json");
    let items = [&missing, &garbage, &hevc, &truncated, &cut, &webm, &mkv, &good];
    let playlist: Vec<String> = items.iter().map(|p| format!("{:?}", p.display().to_string())).collect();
    let config = format!("[video]\nplaylist = [{}]\n", playlist.join(", "));
    let mut vitrine = headless(
        "video-bad-items",
        vec!["--exit-when-done".into(), "--stats".into(), stats.display().to_string()],
        config,
    );
    let code = vitrine.wait_exit(Duration::from_secs(30));
    let log = vitrine.log();
    assert_eq!(code.code(), Some(1), "items failed, and the exit status says so\n{log}");
    for (file, why) in [
        ("missing.mp4", "cannot read"),
        ("garbage.mp4", "not a video file"),
        ("hevc.mp4", "HEVC"),
        ("truncated.mp4", "corrupt"),
        ("cut.mp4", "valid pictures"),
        ("vp9.webm", "VP9"),
    ] {
        assert!(
            log.lines().any(|l| l.contains("ERROR") && l.contains(file) && l.contains(why)),
            "{file}: {why}\n{log}"
        );
    }
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let decoded = s["frames_decoded"].as_u64().unwrap();
    // The cut item's valid pictures (the log says how many), then the good items whole.
    let valid: u64 = log
        .lines()
        .find(|l| l.contains("cut.mp4") && l.contains("valid pictures"))
        .and_then(|l| l.split("playing the ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the cut item says how many pictures it plays\n{log}"));
    assert!((1..25).contains(&valid), "part of the cut item is valid: {valid}");
    assert_eq!(decoded, valid + 50, "the cut item's valid part and the good items played: {s}");
}

/// A configuration reload while the video plays applies the change and keeps the video going:
/// the picture stays, and the presented-frame counter keeps increasing across it.
#[test]
fn reloading_the_configuration_does_not_drop_the_video() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), "bars.mp4", "smptebars=size=320x240:rate=24", &["-t", "2", "-c:v", "libx264"]);
    let vitrine = headless(
        "video-reload",
        vec!["--play".into(), path.display().to_string(), "--loop".into()],
        "[background]\ncolor = \"#ff00ff\"\n".into(),
    );
    let presented = || vitrine.ok(&Request::Stats)["video"]["frames_presented"].as_u64().unwrap_or(0);
    assert!(common::wait_until(Duration::from_secs(20), || presented() >= 10), "the video does not play");
    let config = vitrine.runtime.join(format!("{}.toml", vitrine.socket));
    // Only the zone's top half shows the video after the change; the rest shows the background.
    std::fs::write(&config, "[background]\ncolor = \"#00ff00\"\n[video]\nzone = [0, 0, 320, 120]\n").unwrap();
    let before = presented();
    let reply = vitrine.ok(&Request::Reload);
    assert!(reply["report"].as_str().unwrap().contains("applied"), "{reply}");
    let image = vitrine.wait_for_pixels("reloaded", Duration::from_secs(10), |img| {
        count_near(img, [0, 255, 0], 8) > 320 * 100 && count_near(img, [191, 191, 0], 30) > 500
    });
    assert!(count_near(&image, [255, 0, 255], 8) == 0, "the old background is gone");
    assert!(
        common::wait_until(Duration::from_secs(10), || presented() >= before + 10),
        "the video stopped with the reload"
    );
    assert_eq!(vitrine.ok(&Request::Status)["finished"], false);
}

/// A file whose timing jumps three years ahead after its twelfth picture: the jump is logged
/// and re-based, the clip plays through at its own rate instead of waiting it out.
#[test]
fn a_timestamp_jump_is_rebased_not_waited_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(
        dir.path(),
        "jump.mkv",
        "testsrc2=size=160x120:rate=24",
        &["-frames:v", "24", "-vf", "setpts=PTS+if(gte(N\\,12)\\,100000000/TB\\,0)", "-c:v", "libx264", "-bf", "0"],
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .args(["decode", "--json"])
        .arg(&path)
        .env("VITRINE_DECODER", "software")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // One second of pictures; a player that waits for the jumped timestamp never ends.
    let done = common::wait_until(Duration::from_secs(60), || child.try_wait().unwrap().is_some());
    if !done {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(done, "still waiting after 60 s: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["timestamps_rebased"], 1, "{report}");
    assert_eq!(report["frames_presented"], 24, "{report}");
    assert_eq!(report["frames_dropped"], 0, "{report}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("a timestamp jumps ahead"), "{stderr}");
}

/// `swaybg -c '#ff0000'` (wlr-layer-shell, background layer) under a video in a zone: red all
/// around the zone, the picture inside it (the video is above the background layer).
#[test]
fn swaybg_shows_around_the_video_zone() {
    common::require("swaybg");
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), "bars.mp4", "smptebars=size=160x120:rate=24", &["-t", "10", "-c:v", "libx264"]);
    let mut vitrine = headless(
        "video-swaybg",
        vec!["--play".into(), path.display().to_string(), "--loop".into()],
        "[background]\ncolor = \"#ff00ff\"\n[video]\nzone = [80, 60, 160, 120]\n".into(),
    );
    vitrine.spawn_client("swaybg", &["-c", "#ff0000"]);
    let image = vitrine.wait_for_pixels("swaybg around the video", Duration::from_secs(30), |img| {
        img.pixel(10, 10)[..3] == [255, 0, 0] && count_near(img, [191, 191, 0], 30) > 500
    });
    // Outside the zone: swaybg's red everywhere, no background colour left.
    for (x, y) in [(10, 10), (310, 10), (10, 230), (310, 230), (40, 120), (280, 120)] {
        assert_eq!(image.pixel(x, y)[..3], [255, 0, 0], "({x},{y})");
    }
    assert!(count_near(&image, [255, 0, 255], 8) == 0, "the background colour shows");
    // Inside: the bars, not red.
    assert!(count_near(&image, [0, 191, 191], 30) > 500, "no cyan bar in the zone");
    assert_ne!(image.pixel(160, 100)[..3], [255, 0, 0], "the zone is covered by swaybg");
    assert!(vitrine.is_running());
}

/// The matrix and range a stream states in its SPS (x264 writes what ffmpeg is told), and the
/// convention for streams that say nothing: BT.601 below 720 lines, BT.709 from 720, limited;
/// what their container says where the stream is silent.
#[test]
fn streams_say_their_colour_and_silent_ones_get_the_convention() {
    use vitrine::video::colour::{Colour, Matrix};
    let dir = tempfile::tempdir().unwrap();
    let encode = |name: &str, size: &str, args: &[&str]| {
        let mut all = vec!["-t", "0.2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"];
        all.extend_from_slice(args);
        clip(dir.path(), name, &format!("testsrc=size={size}:rate=10"), &all)
    };
    let cases = [
        (encode("601-full.mp4", "640x480", &["-colorspace", "bt470bg", "-color_range", "pc"]), Matrix::Bt601, true),
        (encode("709.mp4", "640x480", &["-colorspace", "bt709", "-color_range", "tv"]), Matrix::Bt709, false),
        (encode("2020.mp4", "640x480", &["-colorspace", "bt2020nc", "-color_range", "tv"]), Matrix::Bt2020, false),
        (encode("sd.mp4", "640x480", &[]), Matrix::Bt601, false),
        (encode("hd.mp4", "1280x720", &[]), Matrix::Bt709, false),
    ];
    // Where the stream is silent the container speaks: an untagged SD stream (BT.601 limited by
    // the convention) put into MP4 (a 'colr' box) and Matroska (a Colour element) that say
    // BT.709 full range; and a BT.2020 stream in a container that says BT.709: the stream wins.
    // (ffmpeg 5.1 writes a container's colour only with primaries and transfer given too.)
    let remux_as_709_full = |from: &std::path::Path, name: &str| {
        let out = dir.path().join(name);
        let status = std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-fflags", "+genpts", "-r", "10", "-i"])
            .arg(from)
            .args(["-c", "copy", "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709"])
            .args(["-color_range", "pc"])
            .arg(&out)
            .status()
            .expect("ffmpeg");
        assert!(status.success(), "ffmpeg remux to {name}");
        out
    };
    let silent = encode("silent.h264", "640x480", &[]);
    let tagged_2020 = encode("2020.h264", "640x480", &["-colorspace", "bt2020nc", "-color_range", "tv"]);
    let container_cases = [
        (silent.clone(), Matrix::Bt601, false),
        (remux_as_709_full(&silent, "colr.mp4"), Matrix::Bt709, true),
        (remux_as_709_full(&silent, "colour.mkv"), Matrix::Bt709, true),
        (remux_as_709_full(&tagged_2020, "2020-in-709.mp4"), Matrix::Bt2020, false),
    ];
    for (path, matrix, full_range) in cases.into_iter().chain(container_cases) {
        let info = vitrine::video::demux::open(&path).expect("demux").info;
        assert_eq!(info.colour, Colour { matrix, full_range }, "{}", path.display());
    }
}
