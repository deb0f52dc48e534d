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
