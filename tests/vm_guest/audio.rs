//! Sound in step with the picture, on real kernel drivers: vitrine plays a clip whose picture
//! flashes white and whose sound beeps at the same presentation times, once a second, on vkms
//! and into ALSA's loopback card (snd-aloop). A recorder on the loopback's capture side stamps
//! each beep's onset (CLOCK_MONOTONIC); vitrine's page-flip timestamps give each flash.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alsa::pcm::{Access, Format, HwParams, PCM};
use alsa::{Direction, ValueOr};

use super::common::{self, Launch, Vitrine, BG_CONFIG};
use super::{assert_in_vm, clip};
use vitrine::control::protocol::Request;

const RATE: u32 = 48_000;

/// Records the loopback's capture side and stamps where each beep starts.
struct Recorder {
    stop: Arc<AtomicBool>,
    onsets: Arc<Mutex<Vec<Duration>>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Recorder {
    fn start(device: &str) -> Recorder {
        let stop = Arc::new(AtomicBool::new(false));
        let onsets = Arc::new(Mutex::new(Vec::new()));
        let (s, o, device) = (stop.clone(), onsets.clone(), device.to_string());
        let thread = std::thread::spawn(move || record(&device, &s, &o));
        Recorder { stop, onsets, thread: Some(thread) }
    }

    fn onsets(&self) -> Vec<Duration> {
        self.onsets.lock().unwrap().clone()
    }

    fn finish(mut self) -> Vec<Duration> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap().expect("the recorder");
        }
        self.onsets()
    }
}

/// A beep's onset: the first sample louder than this after at least `QUIET` of quiet.
const LOUD: i16 = 3000;
const QUIET: Duration = Duration::from_millis(300);

fn record(device: &str, stop: &AtomicBool, onsets: &Mutex<Vec<Duration>>) -> Result<(), String> {
    let pcm = PCM::new(device, Direction::Capture, false).map_err(|e| format!("{device}: {e}"))?;
    {
        let hwp = HwParams::any(&pcm).map_err(|e| e.to_string())?;
        hwp.set_access(Access::RWInterleaved).map_err(|e| e.to_string())?;
        hwp.set_format(Format::s16()).map_err(|e| e.to_string())?;
        hwp.set_channels(2).map_err(|e| e.to_string())?;
        hwp.set_rate(RATE, ValueOr::Nearest).map_err(|e| e.to_string())?;
        hwp.set_period_time_near(5_000, ValueOr::Nearest).map_err(|e| e.to_string())?;
        hwp.set_buffer_time_near(200_000, ValueOr::Nearest).map_err(|e| e.to_string())?;
        pcm.hw_params(&hwp).map_err(|e| e.to_string())?;
    }
    let io = pcm.io_i16().map_err(|e| e.to_string())?;
    pcm.start().map_err(|e| e.to_string())?;
    let mut buf = vec![0i16; 2 * 240];
    let mut quiet_since: Option<Duration> = Some(Duration::ZERO);
    while !stop.load(Ordering::SeqCst) {
        let frames = match io.readi(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                pcm.try_recover(e, true).map_err(|e| e.to_string())?;
                continue;
            }
        };
        // The last frame read was captured `delay` frames before now.
        let now = vitrine::clock::monotonic_now();
        let delay = pcm.delay().unwrap_or(0).max(0) as u64;
        for k in 0..frames {
            let loud = buf[2 * k].unsigned_abs() > LOUD as u16;
            let back = Duration::from_micros((delay + (frames - 1 - k) as u64) * 1_000_000 / RATE as u64);
            let at = now.saturating_sub(back);
            if loud {
                if quiet_since.is_some_and(|q| at.saturating_sub(q) >= QUIET || q.is_zero()) {
                    onsets.lock().unwrap().push(at);
                }
                quiet_since = None;
            } else if quiet_since.is_none() {
                quiet_since = Some(at);
            }
        }
    }
    Ok(())
}

/// The loopback card's platform device, unbound and bound again by the unplug test.
const ALOOP_DRIVER: &str = "/sys/bus/platform/drivers/snd_aloop";

fn loopback_ready() {
    let _ = std::process::Command::new("modprobe").args(["snd-aloop", "pcm_substreams=1"]).status();
    assert!(
        common::wait_until(Duration::from_secs(10), || std::fs::read_to_string("/proc/asound/cards")
            .is_ok_and(|c| c.contains("Loopback"))),
        "no Loopback card: {:?}",
        std::fs::read_to_string("/proc/asound/cards")
    );
}

/// Sound into `device`; the picture at its own size, so that it goes on a plane (vkms does not
/// scale, and TCG cannot composite at the video's rate).
fn config(device: &str) -> String {
    format!(
        "{BG_CONFIG}\n[video]\nscale = \"none\"\n[audio]\nenabled = true\ndevice = \"{device}\"\nlatency_ms = 100\n"
    )
}

/// Each flash's page-flip time (CLOCK_MONOTONIC), by presentation time in whole seconds, from
/// vitrine's pacing trace.
fn flashes(log: &str) -> std::collections::BTreeMap<u64, Duration> {
    let field = |line: &str, key: &str| -> Option<u64> {
        let at = line.find(&format!("{key}="))? + key.len() + 1;
        line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    log.lines()
        .filter(|l| l.contains("picture presented"))
        .filter_map(|l| Some((field(l, "pts_us")?, field(l, "flip_us")?)))
        // Whole seconds, give or take the timescale's rounding.
        .filter(|(pts, _)| (pts + 2_000) % 1_000_000 < 4_000)
        .map(|(pts, flip)| ((pts + 2_000) / 1_000_000, Duration::from_micros(flip)))
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p / 100.0).round() as usize]
}

/// vitrine playing the flash-and-beep clip into the loopback card, its flips traced.
fn play_flash_beep(name: &'static str) -> Vitrine {
    Vitrine::launch(Launch {
        name,
        args: vec!["--play".into(), clip("flash-beep.mp4").display().to_string(), "--exit-when-done".into()],
        config: config("hw:Loopback,0,0"),
        env: vec![("RUST_LOG".into(), "info,vitrine=debug,audio=debug,pacing=trace".into())],
        runtime: None,
        wrapper: Vec::new(),
    })
}

/// Each flash (by its second) with the beep nearest it, sound minus picture in ms (within half a
/// second: beeps are a second apart).
fn offsets(flashes: &std::collections::BTreeMap<u64, Duration>, onsets: &[Duration]) -> Vec<(u64, f64)> {
    let mut offsets = Vec::new();
    for (second, flip) in flashes {
        let nearest = onsets.iter().min_by_key(|o| (o.as_micros() as i64 - flip.as_micros() as i64).abs());
        if let Some(o) = nearest {
            let ms = (o.as_micros() as i64 - flip.as_micros() as i64) as f64 / 1000.0;
            if ms.abs() < 500.0 {
                offsets.push((*second, ms));
            }
        }
    }
    offsets
}

/// 60 s of flashes and beeps: each beep within 20 ms of its flash (p99), no drift over the
/// minute (≤ 5 ms between its first and last ten seconds), no underrun.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn sound_and_picture_stay_together_for_a_minute() {
    assert_in_vm();
    loopback_ready();
    let recorder = Recorder::start("hw:Loopback,1,0");
    let mut vitrine = play_flash_beep("vm-audio-sync");
    let stats = vitrine.stats_until_exit(Duration::from_secs(240));
    let status = vitrine.wait_exit(Duration::from_secs(30));
    let onsets = recorder.finish();
    let log = vitrine.log();
    assert!(status.success(), "{status:?}; log:\n{log}");
    let flashes = flashes(&log);
    assert!(flashes.len() >= 55, "{} flashes presented of 60; log:\n{log}", flashes.len());
    let offsets = offsets(&flashes, &onsets);
    assert!(
        offsets.len() >= 55,
        "{} of {} flashes have their beep: {:?}; onsets {:?}",
        offsets.len(),
        flashes.len(),
        offsets,
        onsets
    );
    let mut abs: Vec<f64> = offsets.iter().map(|(_, ms)| ms.abs()).collect();
    abs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (p50, p99) = (percentile(&abs, 50.0), percentile(&abs, 99.0));
    let mean = |range: std::ops::Range<u64>| {
        let v: Vec<f64> = offsets.iter().filter(|(s, _)| range.contains(s)).map(|(_, ms)| *ms).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let drift = mean(50..61) - mean(1..11);
    let v = &stats["video"];
    println!(
        "A/V offset |p50| {p50:.1} ms, |p99| {p99:.1} ms, drift {drift:+.1} ms over the minute, {} underruns, resampling {} ppm, {} jumps; vitrine's own p50/p99 {} / {}",
        v["audio_underruns"], v["audio_resample_ppm"], v["audio_jumps"], v["av_offset_ms_p50"], v["av_offset_ms_p99"]
    );
    println!("offsets (s, ms): {offsets:?}");
    assert!(p99 <= 20.0, "A/V offset p99 {p99:.1} ms: {offsets:?}");
    assert!(drift.abs() <= 5.0, "drift {drift:.1} ms: {offsets:?}");
    assert_eq!(v["audio_underruns"], 0, "{stats}");
}

/// Paused for two seconds after the clip's fourth second, then resumed: the sound holds where it
/// is and goes on with the picture. The beeps on both sides of the pause are each within 20 ms of
/// their flash, and no beep is heard away from a flash (while paused, or twice).
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn a_pause_keeps_sound_and_picture_together() {
    const PAUSE_AFTER: u64 = 4;
    assert_in_vm();
    loopback_ready();
    let recorder = Recorder::start("hw:Loopback,1,0");
    let mut vitrine = play_flash_beep("vm-audio-pause");
    let presented =
        || vitrine.request(&Request::Stats).data.map_or(0, |s| s["video"]["frames_presented"].as_u64().unwrap_or(0));
    // A quarter of a second past the flash: paused between two.
    assert!(
        common::wait_until(Duration::from_secs(120), || presented() >= 24 * PAUSE_AFTER + 6),
        "never reached {PAUSE_AFTER} s; log:\n{}",
        vitrine.log()
    );
    vitrine.ok(&Request::Pause);
    std::thread::sleep(Duration::from_secs(2));
    vitrine.ok(&Request::Resume);
    assert!(common::wait_until(Duration::from_secs(60), || presented() >= 24 * (PAUSE_AFTER + 5)));
    vitrine.ok(&Request::Quit);
    vitrine.wait_exit(Duration::from_secs(30));
    let onsets = recorder.finish();
    let log = vitrine.log();
    let flashes = flashes(&log);
    let offsets = offsets(&flashes, &onsets);
    println!("offsets around the pause (s, ms): {offsets:?}");
    let resumed = flashes.keys().find(|s| flashes[s] > flashes[&PAUSE_AFTER] + Duration::from_millis(1_500)).copied();
    for second in [Some(PAUSE_AFTER), resumed, resumed.map(|s| s + 1)] {
        let second = second.expect("flashes after the pause");
        assert!(
            offsets.iter().any(|(s, ms)| *s == second && ms.abs() <= 20.0),
            "second {second} (paused after {PAUSE_AFTER}): {offsets:?}"
        );
    }
    let stray: Vec<_> = onsets
        .iter()
        .filter(|o| flashes.values().all(|f| (o.as_micros() as i64 - f.as_micros() as i64).abs() > 100_000))
        .collect();
    assert!(stray.is_empty(), "beeps heard with no flash: {stray:?}; flashes {flashes:?}");
}

/// The loopback card unbound while a clip plays (the device vanishes, as an HDMI sink does):
/// the video goes on; bound again, the sound comes back by itself.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn the_sound_device_vanishing_never_stops_the_video_and_sound_comes_back() {
    assert_in_vm();
    loopback_ready();
    let mut vitrine = Vitrine::launch(Launch {
        name: "vm-audio-unplug",
        args: vec!["--play".into(), clip("flash-beep.mp4").display().to_string(), "--loop".into()],
        config: config("hw:Loopback,0,0"),
        env: Vec::new(),
        runtime: None,
        wrapper: Vec::new(),
    });
    let stat = |key: &str| vitrine.ok(&Request::Stats)["video"][key].as_u64().unwrap_or(0);
    assert!(
        common::wait_until(Duration::from_secs(60), || stat("audio_frames_written") > RATE as u64),
        "no sound written; log:\n{}",
        vitrine.log()
    );
    let device = std::fs::read_dir(ALOOP_DRIVER)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("snd_aloop"))
        .expect("the bound loopback device");
    std::fs::write(format!("{ALOOP_DRIVER}/unbind"), &device).unwrap();
    let gone = Instant::now();
    assert!(
        common::wait_until(Duration::from_secs(20), || stat("audio_device_failures") >= 1),
        "the vanished device was not noticed; log:\n{}",
        vitrine.log()
    );
    // The pictures go on while the sound is gone.
    let before = stat("frames_presented");
    assert!(
        common::wait_until(Duration::from_secs(30), || stat("frames_presented") > before + 50),
        "the video stopped with the sound device; log:\n{}",
        vitrine.log()
    );
    let opens = stat("audio_device_opens");
    std::fs::write(format!("{ALOOP_DRIVER}/bind"), &device).unwrap();
    let written = stat("audio_frames_written");
    assert!(
        common::wait_until(Duration::from_secs(30), || stat("audio_device_opens") > opens
            && stat("audio_frames_written") > written + RATE as u64),
        "the sound did not come back; log:\n{}",
        vitrine.log()
    );
    println!("sound device gone for {:?} in all; {} failures counted", gone.elapsed(), stat("audio_device_failures"));
    let log = vitrine.log();
    assert!(log.contains("the sound device failed: the video plays on"), "{log}");
    assert!(vitrine.is_running());
}
