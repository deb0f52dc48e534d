//! systemd integration: the units verify, and vitrine tells a notify socket READY=1 and feeds
//! the watchdog while it presents frames.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::{Launch, Vitrine};

#[test]
fn vitrine_reports_ready_and_feeds_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut launch = Launch::headless("sd-notify");
    launch.env.push(("NOTIFY_SOCKET".into(), path.display().to_string()));
    launch.env.push(("WATCHDOG_USEC".into(), "1000000".into()));
    let vitrine = Vitrine::launch(launch);
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !(seen.iter().any(|m: &String| m == "READY=1") && seen.iter().filter(|m| *m == "WATCHDOG=1").count() >= 2) {
        let n = socket.recv(&mut buf).unwrap_or_else(|e| panic!("no sd_notify message ({e}); got {seen:?}"));
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(seen.first().map(String::as_str), Some("READY=1"), "READY=1 comes first: {seen:?}");
    assert!(vitrine.log().contains("told systemd READY=1"));
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    common::require("systemd-analyze");
    // Verify against a root that has the binary where the units expect it.
    let root = tempfile::tempdir().unwrap();
    let bin = root.path().join("usr/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_vitrine"), bin.join("vitrine")).unwrap();
    for unit in ["vitrine.service", "vitrine@tty1.service"] {
        let source = unit.replace("@tty1", "@");
        let dest = root.path().join("etc/systemd/system");
        std::fs::create_dir_all(&dest).unwrap();
        let text = std::fs::read_to_string(format!("{}/systemd/{source}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        // The test root is not /: point ExecStart at the copied binary.
        let text = text.replace("/usr/bin/vitrine", &bin.join("vitrine").display().to_string());
        std::fs::write(dest.join(&source), text).unwrap();
        let out = std::process::Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(dest.join(unit))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Only findings about our unit count (the host's other units are not ours to judge).
        let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("vitrine")).collect();
        assert!(out.status.success() && ours.is_empty(), "{unit}: {}\n{stderr}", out.status);
    }
}
