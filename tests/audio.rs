//! Sound on the host: ALSA's `file` plugin (an asoundrc whose PCM writes the raw samples it is
//! given to a file, over the `null` PCM) stands for the device. What vitrine writes for x264+AAC
//! clips is compared with FFmpeg's decoding of the same tracks, and a playlist's seams are
//! checked for gaps and repeats: the sound of each item starts exactly where its first picture
//! is on the timeline.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Launch, Vitrine};
use vitrine::control::protocol::Request;

const RATE: usize = 48_000;

/// A clip of `seconds` of moving test pictures at 25 fps with pink noise made from `seed` (48 kHz
/// stereo: noise, so that where it is in the output can be found to the sample); `audio` picks
/// the audio codec ("aac", "libmp3lame") or none.
fn clip(dir: &Path, name: &str, seconds: u32, seed: u32, audio: Option<&str>) -> PathBuf {
    let path = dir.join(name);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y"]).args([
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=size=320x240:rate=25:duration={seconds}"),
    ]);
    if let Some(codec) = audio {
        let noise = format!("anoisesrc=color=pink:sample_rate=48000:amplitude=0.3:seed={seed}:duration={seconds}");
        cmd.args(["-f", "lavfi", "-i", &noise]).args(["-c:a", codec, "-b:a", "128k", "-ac", "2"]);
    }
    let status = cmd
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "25"])
        .args(["-t", &seconds.to_string()])
        .arg(&path)
        .status()
        .expect("ffmpeg is not installed: run scripts/deps test");
    assert!(status.success(), "ffmpeg failed for {name}");
    path
}

/// FFmpeg's decoding of a clip's sound: interleaved stereo f32 at 48 kHz.
fn ffmpeg_samples(path: &Path) -> Vec<f32> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(path)
        .args(["-vn", "-f", "s16le", "-ac", "2", "-ar", "48000", "-"])
        .output()
        .expect("ffmpeg");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    s16(&out.stdout)
}

fn s16(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0).collect()
}

/// Where (in frames) `needle`'s frames from `from` are found in `hay`, looking at the offsets
/// in `range`: the offset whose 4096 frames differ least (the sound is noise, so only one
/// offset fits).
fn find(hay: &[f32], needle: &[f32], from: usize, range: std::ops::Range<usize>) -> usize {
    const WINDOW: usize = 4096;
    let want = &needle[2 * from..2 * (from + WINDOW)];
    let mut best = (range.start, f64::MAX);
    for off in range {
        let Some(got) = hay.get(2 * off..2 * (off + WINDOW)) else { break };
        let mut err = 0.0;
        for (a, b) in got.iter().zip(want) {
            err += ((a - b) as f64).powi(2);
            if err >= best.1 {
                break;
            }
        }
        if err < best.1 {
            best = (off, err);
        }
    }
    best.0
}

/// The signal-to-noise ratio (dB) of `hay` from frame `at` against `needle`'s frames
/// `from..from+len`.
fn snr(hay: &[f32], at: usize, needle: &[f32], from: usize, len: usize) -> f64 {
    let want = &needle[2 * from..2 * (from + len)];
    let Some(got) = hay.get(2 * at..2 * (at + len)) else { return f64::NEG_INFINITY };
    let energy: f64 = want.iter().map(|&s| (s as f64).powi(2)).sum();
    let noise: f64 = got.iter().zip(want).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    10.0 * (energy / noise.max(1e-12)).log10()
}

/// An asoundrc in `home` whose PCM `vitrine_test` writes to `out`.
fn file_device(home: &Path, out: &Path) {
    let rc = format!(
        "pcm.vitrine_test {{\n  type file\n  slave.pcm \"null\"\n  file \"{}\"\n  format \"raw\"\n}}\n",
        out.display()
    );
    std::fs::write(home.join(".asoundrc"), rc).unwrap();
}

/// vitrine with sound into `device`, software decoding, `args` after it, HOME at `home` (where
/// the asoundrc is).
fn with_sound(name: &str, home: &Path, device: &str, args: Vec<String>) -> Vitrine {
    let mut launch = Launch::headless(name);
    launch.config = format!("{}\n[audio]\nenabled = true\ndevice = \"{device}\"\n", common::BG_CONFIG);
    launch.args.extend(args);
    launch.env.push(("HOME".into(), home.display().to_string()));
    launch.env.push(("VITRINE_DECODER".into(), "software".into()));
    Vitrine::launch(launch)
}

/// `items` played once into the file device; the stats as the last one played.
fn play(name: &str, home: &Path, items: &[&Path]) -> (Vitrine, serde_json::Value) {
    let mut args = vec!["--play".to_string()];
    args.extend(items.iter().map(|p| p.display().to_string()));
    args.push("--exit-when-done".into());
    let vitrine = with_sound(name, home, "vitrine_test", args);
    let stats = vitrine.stats_until_exit(Duration::from_secs(60));
    (vitrine, stats)
}

#[test]
fn the_sound_written_matches_ffmpeg_and_items_follow_each_other_without_gap_or_repeat() {
    common::require("ffmpeg");
    let dir = tempfile::tempdir().unwrap();
    let a = clip(dir.path(), "a.mp4", 3, 1, Some("aac"));
    let silent = clip(dir.path(), "silent.mp4", 1, 0, None);
    let b = clip(dir.path(), "b.mp4", 3, 2, Some("aac"));
    let out = dir.path().join("out.raw");
    file_device(dir.path(), &out);
    let (mut vitrine, stats) = play("audio-file", dir.path(), &[&a, &silent, &b]);
    let status = vitrine.wait_exit(Duration::from_secs(60));
    let log = vitrine.log();
    assert!(status.success(), "{status:?}; log:\n{log}");
    assert!(log.contains("the sound device tells no delay"), "the file device is fed at the video's pace: {log}");

    let written = s16(&std::fs::read(&out).expect("the file device's output"));
    let (ref_a, ref_b) = (ffmpeg_samples(&a), ffmpeg_samples(&b));
    // Clip a's sound: found near the start (the first picture's flip comes a little before the
    // sound thread hears of it: those first milliseconds are cut), matching FFmpeg's decoding
    // from its 50th ms to 100 ms before its end (the fades at a start and a cut stay out).
    let compare = 3 * RATE - RATE / 20 - RATE / 10;
    let at_a = find(&written, &ref_a, RATE / 20, 0..RATE / 2);
    let snr_a = snr(&written, at_a, &ref_a, RATE / 20, compare);
    assert!(snr_a >= 40.0, "clip a: {snr_a:.1} dB against FFmpeg's decoding (at frame {at_a}); log:\n{log}");
    // Where FFmpeg's first frame of a is (before the output's start when the first
    // milliseconds were cut).
    let start_a = at_a as i64 - (RATE / 20) as i64;
    // Clip b after a's 3 s and the silent item's 1 s, to the frame: no gap, no repeat, and
    // silence in between.
    let expected_b = (start_a + (4 * RATE + RATE / 20) as i64) as usize;
    let at_b = find(&written, &ref_b, RATE / 20, expected_b - RATE / 4..expected_b + RATE / 4);
    let snr_b = snr(&written, at_b, &ref_b, RATE / 20, compare);
    assert!(snr_b >= 40.0, "clip b: {snr_b:.1} dB (at frame {at_b}); log:\n{log}");
    let start_b = at_b as i64 - (RATE / 20) as i64;
    let held_ms = stats["video"]["clock_held_ms"].as_u64().unwrap_or(0) as i64;
    let seam = start_b - start_a - 4 * RATE as i64;
    // The timeline moves only if a picture came late to its start (a clock hold, counted):
    // the sound then follows the picture.
    assert!(
        seam.abs() <= 2 + held_ms * RATE as i64 / 1000,
        "b starts {seam} frames off (clock held {held_ms} ms); log:\n{log}"
    );
    let gap_from = (start_a + (3 * RATE + RATE / 50) as i64) as usize;
    let gap = &written[2 * gap_from..2 * (start_b - (RATE / 50) as i64) as usize];
    println!(
        "a's first {} ms were cut (the clock started before the sound thread heard of it)",
        -start_a * 1000 / RATE as i64
    );
    assert!(gap.iter().all(|&s| s == 0.0), "the silent item's second is silence");
    println!("sound: a {snr_a:.1} dB, b {snr_b:.1} dB against FFmpeg; b at {seam} frames from its place");

    let v = &stats["video"];
    assert_eq!(v["audio_underruns"], 0, "{stats}");
    assert_eq!(v["audio_items_silent"], 1, "{stats}");
    assert_eq!(v["audio_decode_errors"], 0, "{stats}");
    assert!(v["audio_frames_written"].as_u64().unwrap() >= 6 * RATE as u64, "{stats}");
}

#[test]
fn sound_vitrine_does_not_decode_is_named_and_the_video_plays_in_silence() {
    common::require("ffmpeg");
    let dir = tempfile::tempdir().unwrap();
    let mp3 = clip(dir.path(), "mp3.mp4", 2, 440, Some("libmp3lame"));
    let out = dir.path().join("out.raw");
    file_device(dir.path(), &out);
    let args = vec!["--play".into(), mp3.display().to_string(), "--loop".into()];
    let mut vitrine = with_sound("audio-mp3", dir.path(), "vitrine_test", args);
    let named = common::wait_until(Duration::from_secs(30), || {
        vitrine.ok(&Request::Status)["audio"]["silent_because"].as_str().is_some_and(|w| w.contains("MP3 audio"))
    });
    assert!(named, "status: {}; log:\n{}", vitrine.ok(&Request::Status), vitrine.log());
    let before = vitrine.ok(&Request::Stats)["video"]["frames_presented"].as_u64().unwrap();
    assert!(common::wait_until(Duration::from_secs(20), || {
        vitrine.ok(&Request::Stats)["video"]["frames_presented"].as_u64().unwrap() > before + 50
    }));
    // Said once per item played, at warning level, with the file.
    let log = vitrine.log();
    assert!(log.contains("this item's sound is not decoded: it plays in silence"), "{log}");
    assert!(vitrine.is_running());
    // Volume control answers with the sound's state.
    let reply = vitrine.ok(&Request::Volume { percent: Some(30), muted: None });
    assert_eq!(reply["volume"], 30, "{reply}");
    let reply = vitrine.ok(&Request::Volume { percent: None, muted: Some(true) });
    assert_eq!(reply["muted"], true, "{reply}");
    let refused = vitrine.request(&Request::Volume { percent: Some(101), muted: None });
    assert!(!refused.ok && refused.error.unwrap().contains("0 to 100"));
}

#[test]
fn a_missing_device_never_stops_the_video() {
    common::require("ffmpeg");
    let dir = tempfile::tempdir().unwrap();
    let a = clip(dir.path(), "a.mp4", 2, 440, Some("aac"));
    let args = vec!["--play".into(), a.display().to_string(), "--loop".into()];
    let mut vitrine = with_sound("audio-missing", dir.path(), "hw:CARD=NoSuchCard", args);
    // Two tries of the device (2 s apart) while pictures keep coming.
    assert!(common::wait_until(Duration::from_secs(30), || {
        vitrine.ok(&Request::Stats)["video"]["audio_device_failures"].as_u64().unwrap_or(0) >= 2
    }));
    let before = vitrine.ok(&Request::Stats)["video"]["frames_presented"].as_u64().unwrap();
    assert!(common::wait_until(Duration::from_secs(20), || {
        vitrine.ok(&Request::Stats)["video"]["frames_presented"].as_u64().unwrap() > before + 50
    }));
    let status = vitrine.ok(&Request::Status);
    assert_eq!(status["audio"]["state"], "waiting for the device", "{status}");
    let log = vitrine.log();
    assert_eq!(log.matches("no sound device: the video plays on").count(), 1, "said once: {log}");
    // alsa-lib's own complaints are in vitrine's log line, not loose on stderr.
    assert!(!log.lines().any(|l| l.starts_with("ALSA lib")), "{log}");
    assert!(vitrine.is_running());
}

/// Paused, the sound thread sleeps until told something (no polling): a paused or silent
/// vitrine costs nothing; resumed, the sound goes on.
#[test]
fn a_paused_video_keeps_the_sound_thread_asleep() {
    common::require("ffmpeg");
    let dir = tempfile::tempdir().unwrap();
    let a = clip(dir.path(), "a.mp4", 4, 3, Some("aac"));
    file_device(dir.path(), &dir.path().join("out.raw"));
    let args = vec!["--play".into(), a.display().to_string(), "--loop".into()];
    let vitrine = with_sound("audio-paused", dir.path(), "vitrine_test", args);
    let written = || vitrine.ok(&Request::Stats)["video"]["audio_frames_written"].as_u64().unwrap_or(0);
    assert!(common::wait_until(Duration::from_secs(30), || written() > 48_000), "no sound; log:\n{}", vitrine.log());
    vitrine.ok(&Request::Pause);
    std::thread::sleep(Duration::from_millis(500));
    let pid = vitrine.child.id();
    let (before, paused_at) = (common::thread_wakeups(pid, "vitrine-sound"), written());
    std::thread::sleep(Duration::from_secs(5));
    let wakeups = common::thread_wakeups(pid, "vitrine-sound") - before;
    assert!(wakeups <= 1, "the sound thread woke {wakeups} times in 5 s of pause");
    assert_eq!(written(), paused_at, "sound written while paused");
    vitrine.ok(&Request::Resume);
    assert!(
        common::wait_until(Duration::from_secs(20), || written() > paused_at + 48_000),
        "no sound after resuming; log:\n{}",
        vitrine.log()
    );
}

/// A file cut short (the last part of its sound and pictures gone): its sound ends where the file
/// does, said once however often a looping list plays it and counted every time; the video plays
/// on.
#[test]
fn a_truncated_items_sound_ends_where_the_file_does_said_once() {
    common::require("ffmpeg");
    let dir = tempfile::tempdir().unwrap();
    let whole = clip(dir.path(), "whole.mp4", 3, 5, Some("aac"));
    // The index first (faststart), so that what is cut off is samples, not the index.
    let cut = dir.path().join("cut.mp4");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(&whole)
        .args(["-c", "copy", "-movflags", "+faststart"])
        .arg(&cut)
        .status()
        .unwrap();
    assert!(status.success());
    let len = std::fs::metadata(&cut).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&cut).unwrap().set_len(len * 6 / 10).unwrap();
    file_device(dir.path(), &dir.path().join("out.raw"));
    let args = vec!["--play".into(), cut.display().to_string(), "--loop".into()];
    let mut vitrine = with_sound("audio-truncated", dir.path(), "vitrine_test", args);
    let errors = || vitrine.ok(&Request::Stats)["video"]["audio_decode_errors"].as_u64().unwrap_or(0);
    assert!(
        common::wait_until(Duration::from_secs(60), || errors() >= 3),
        "{} errors; log:\n{}",
        errors(),
        vitrine.log()
    );
    let written = vitrine.ok(&Request::Stats)["video"]["audio_frames_written"].as_u64().unwrap_or(0);
    assert!(written > 0, "the sound before the cut was not played");
    let log = vitrine.log();
    assert_eq!(log.matches("this item's sound ends here").count(), 1, "{log}");
    assert!(vitrine.is_running());
}
