//! The Prometheus endpoint (`[metrics] listen`): scraped with curl while a video plays, judged
//! by Debian's promtool, and scrapers that misbehave are closed without holding up the loop.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{encode_clip, require, wait_until, Launch, Vitrine, BG_CONFIG};
use vitrine::control::protocol::Request;

/// vitrine on the headless backend playing a looped clip in software, its metrics on a port the
/// kernel picks.
fn playing(name: &str, dir: &std::path::Path) -> Vitrine {
    let clip = encode_clip(
        dir,
        "count.mp4",
        "testsrc=size=320x240:rate=24",
        &["-t", "4", "-c:v", "libx264", "-pix_fmt", "yuv420p"],
    );
    let mut launch = Launch::headless(name);
    launch.config = format!(
        "{BG_CONFIG}[metrics]\nlisten = \"127.0.0.1:0\"\n[video]\nplaylist = [{:?}]\nloop = true\n",
        clip.display().to_string()
    );
    // The host may have V4L2 devices of its own: the software path is the same everywhere.
    launch.env.push(("VITRINE_DECODER".into(), "software".into()));
    Vitrine::launch(launch)
}

/// Where vitrine says it serves its metrics.
fn address(vitrine: &Vitrine) -> String {
    let mut found = None;
    wait_until(Duration::from_secs(10), || {
        found = vitrine.log().lines().find_map(|l| {
            let rest = l.split("serving Prometheus metrics at http://").nth(1)?;
            Some(rest.split('/').next()?.to_string())
        });
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no metrics address in the log:\n{}", vitrine.log()))
}

/// `curl` the URL: (HTTP status, body).
fn curl(url: &str, extra: &[&str]) -> (u32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The value of the sample whose name and labels start with `prefix`.
fn sample(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn curl_scrapes_metrics_promtool_accepts_and_they_follow_the_video() {
    require("curl");
    require("promtool");
    let dir = tempfile::tempdir().unwrap();
    let vitrine = playing("metrics-scrape", dir.path());
    let url = format!("http://{}/metrics", address(&vitrine));

    // Pictures are being shown: the counter is there and above 0.
    let mut body = String::new();
    let shown = wait_until(Duration::from_secs(30), || {
        let (code, b) = curl(&url, &[]);
        body = b;
        code == 200 && sample(&body, "vitrine_video_frames_presented_total").is_some_and(|v| v > 0.0)
    });
    assert!(shown, "no pictures counted; last scrape:\n{body}\nlog:\n{}", vitrine.log());
    let first = sample(&body, "vitrine_video_frames_presented_total").unwrap();

    // Debian's promtool lints the exposition: names, types, help texts, counters' suffixes.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {:?}\n{}{}\n{body}",
        checked.status,
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // What `stats` and `status` know is there.
    for name in [
        "vitrine_video_frames_decoded_total",
        "vitrine_video_frames_dropped_total",
        "vitrine_video_cpu_copied_bytes_total",
        "vitrine_repaints_total",
        "vitrine_output_frames_presented_total{output=",
        "vitrine_clients",
        "vitrine_control_connections",
        "vitrine_video_paused",
        "vitrine_video_position_seconds",
    ] {
        assert!(sample(&body, name).is_some(), "{name} missing:\n{body}");
    }
    assert_eq!(sample(&body, "vitrine_outputs"), Some(1.0), "{body}");
    assert!(sample(&body, "vitrine_output_on{output=").is_some_and(|v| v == 1.0), "{body}");
    let item = body.lines().find(|l| l.starts_with("vitrine_video_item_info{")).unwrap_or_default();
    assert!(item.contains("count.mp4") && item.contains("decoder=\"software"), "{body}");
    assert!(sample(&body, "process_resident_memory_bytes").is_some_and(|v| v > 1e6), "{body}");
    assert!(sample(&body, "process_open_fds").is_some_and(|v| v > 3.0), "{body}");
    // Copies are counted: software decoding converts every picture.
    assert!(sample(&body, "vitrine_video_cpu_copied_bytes_total").is_some_and(|v| v > 0.0), "{body}");

    // The counters move as pictures are shown, and agree with `stats`.
    let moved = wait_until(Duration::from_secs(30), || {
        body = curl(&url, &[]).1;
        sample(&body, "vitrine_video_frames_presented_total").is_some_and(|v| v > first)
    });
    assert!(moved, "the counter did not move from {first}:\n{body}");
    let stats = vitrine.ok(&Request::Stats);
    let now = stats["video"]["frames_presented"].as_f64().unwrap();
    let scraped = sample(&body, "vitrine_video_frames_presented_total").unwrap();
    assert!(scraped <= now && scraped > first, "scraped {scraped}, stats then {now}");

    // Only GET /metrics is served.
    assert_eq!(curl(&url.replace("/metrics", "/other"), &[]).0, 404);
    assert_eq!(curl(&url, &["-X", "POST"]).0, 405);
}

#[test]
fn scrapers_that_misbehave_are_closed_and_the_loop_goes_on() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let vitrine = playing("metrics-hostile", dir.path());
    let addr = address(&vitrine);
    let url = format!("http://{addr}/metrics");
    assert_eq!(curl(&url, &[]).0, 200);

    // Eight connections that never send a request take every place.
    let idle: Vec<TcpStream> =
        (0..vitrine::metrics::MAX_SCRAPERS).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(500));
    // A ninth is closed unanswered at once.
    let mut ninth = TcpStream::connect(&addr).unwrap();
    ninth.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    ninth.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok();
    let mut answer = Vec::new();
    let _ = ninth.read_to_end(&mut answer);
    assert!(answer.is_empty(), "a ninth scraper was served: {}", String::from_utf8_lossy(&answer));

    // The loop is not held: the control socket answers and pictures are still shown.
    let before = vitrine.ok(&Request::Stats)["video"]["frames_presented"].as_u64().unwrap();
    let moving = wait_until(Duration::from_secs(20), || {
        vitrine.ok(&Request::Stats)["video"]["frames_presented"].as_u64().unwrap() > before
    });
    assert!(moving, "pictures stopped while the scrapers idled");

    // Each idle connection is closed at its deadline (5 s; the bound is generous because
    // only the order matters: closed by vitrine, not by the test giving up).
    let started = Instant::now();
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf);
        assert!(matches!(n, Ok(0)), "an idle scraper was not closed after {:?}: {n:?}", started.elapsed());
    }

    // A request that never ends its headers: refused once past 8 KiB, answered 431. (One byte
    // past the limit, so all of it is read by then: a peer closed with data unread would see a
    // reset rather than the answer.)
    let mut long = TcpStream::connect(&addr).unwrap();
    long.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let start = "GET /metrics HTTP/1.1\r\nX-Junk: ";
    let header = format!("{start}{}", "a".repeat(vitrine::metrics::MAX_REQUEST + 1 - start.len()));
    let _ = long.write_all(header.as_bytes());
    let mut answer = Vec::new();
    let _ = long.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    // A well-behaved scraper is served again, and the refusals were counted.
    let (code, body) = curl(&url, &[]);
    assert_eq!(code, 200, "{body}");
    let refused = sample(&body, "vitrine_metrics_refused_total").unwrap_or(0.0);
    assert!(refused >= 1.0 + vitrine::metrics::MAX_SCRAPERS as f64, "{body}");
    let log = vitrine.log();
    assert!(log.contains("metrics: too many scrapers at once: closed unanswered"), "{log}");
}
