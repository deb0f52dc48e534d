//! Faults on a real kernel (see docs/faults.md): the decoder's device unbound while a video
//! plays, and keyboard combinations that would leave the kiosk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::common::{Launch, Vitrine, BG_CONFIG};
use super::{assert_in_vm, clip, Uinput};
use vitrine::control::protocol::Request;

/// The device bound to the visl driver (its name in /sys/bus/platform/drivers/visl).
pub(super) fn visl_device() -> (PathBuf, String) {
    let driver = PathBuf::from("/sys/bus/platform/drivers/visl");
    let name = std::fs::read_dir(&driver)
        .expect("visl driver in sysfs")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("driver").exists() || e.file_name().to_string_lossy().starts_with("visl"))
        .map(|e| e.file_name().to_string_lossy().to_string())
        .find(|n| !["bind", "unbind", "uevent", "module", "new_id", "remove_id"].contains(&n.as_str()))
        .expect("a device bound to visl");
    (driver, name)
}

pub(super) fn write_sysfs(path: &Path, value: &str) {
    std::fs::write(path, value).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn presented(vitrine: &Vitrine) -> u64 {
    vitrine.ok(&Request::Stats)["video"]["frames_presented"].as_u64().unwrap_or(0)
}

/// visl unbound through sysfs while a looped playlist plays: the decoder fails, the ladder
/// opens a decoder again (software: the device is gone) and the video goes on; bound again,
/// the next item is decoded on visl again. A client keeps getting frames throughout.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn a_decoder_unbound_during_playback_hands_over_to_software_and_comes_back() {
    assert_in_vm();
    let mut vitrine = Vitrine::launch(Launch {
        name: "vm-decoder-unbound",
        args: vec!["--play".into(), clip("ladder.mp4").display().to_string(), "--loop".into()],
        config: BG_CONFIG.into(),
        env: Vec::new(),
        runtime: None,
        wrapper: Vec::new(),
    });
    vitrine.spawn_client("weston-simple-shm", &[]);
    let on_visl = super::common::wait_until(Duration::from_secs(60), || {
        let status = vitrine.ok(&Request::Status);
        status["decoder"].as_str().is_some_and(|d| d.contains("visl")) && presented(&vitrine) > 12
    });
    assert!(on_visl, "not playing on visl; log:\n{}", vitrine.log());

    let (driver, device) = visl_device();
    write_sysfs(&driver.join("unbind"), &device);
    let handed_over = super::common::wait_until(Duration::from_secs(60), || {
        vitrine.ok(&Request::Status)["decoder"].as_str().is_some_and(|d| d.starts_with("software"))
    });
    let log = vitrine.log();
    assert!(handed_over, "no software decoding after the unbind; log:\n{log}");
    assert!(log.contains("video decoder failed: opening it again"), "{log}");
    let before = presented(&vitrine);
    let frames_before = vitrine.ok(&Request::Stats)["frames_presented"].as_u64().unwrap();
    let playing = super::common::wait_until(Duration::from_secs(60), || presented(&vitrine) > before + 24);
    assert!(playing, "the video did not go on in software; log:\n{}", vitrine.log());

    write_sysfs(&driver.join("bind"), &device);
    let back = super::common::wait_until(Duration::from_secs(90), || {
        vitrine.ok(&Request::Status)["decoder"].as_str().is_some_and(|d| d.contains("visl"))
    });
    assert!(back, "visl not used again after it was bound; log:\n{}", vitrine.log());
    let after = presented(&vitrine);
    let playing = super::common::wait_until(Duration::from_secs(60), || presented(&vitrine) > after + 12);
    assert!(playing, "the video did not go on on visl; log:\n{}", vitrine.log());

    let stats = vitrine.ok(&Request::Stats);
    assert!(stats["video"]["decoder_failures"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["video"]["decoder_resets"].as_u64().unwrap() >= 1, "{stats}");
    // The display kept presenting (the client's frames and the pictures) through all of it.
    assert!(stats["frames_presented"].as_u64().unwrap() > frames_before, "{stats}");
    assert!(vitrine.is_running());
    assert_eq!(vitrine.app_ids(), ["org.freedesktop.weston.simple-shm"], "the client is still there");
}

/// Ctrl+Alt+F2 on a keyboard plugged into the kiosk: with `[input] vt_switch = false` (the
/// default) nothing happens; with it on, the VT switches.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn ctrl_alt_fn_leaves_the_kiosk_only_when_vt_switch_is_on() {
    const KEY_LEFTCTRL: u16 = 29;
    const KEY_LEFTALT: u16 = 56;
    const KEY_F2: u16 = 60;
    const KEY_F3: u16 = 61;
    assert_in_vm();
    let active = || std::fs::read_to_string("/sys/class/tty/tty0/active").expect("VTs").trim().to_string();
    let mut vitrine = Vitrine::launch(Launch {
        name: "vm-vt-keys",
        args: Vec::new(),
        config: BG_CONFIG.into(),
        env: Vec::new(),
        runtime: None,
        wrapper: Vec::new(),
    });
    assert_eq!(vitrine.ok(&Request::Version)["backend"], "drm");
    let keyboard = Uinput::create("vitrine test vt keyboard", &(1..120).collect::<Vec<u16>>(), &[], false);
    let added = super::common::wait_until(Duration::from_secs(20), || {
        vitrine.log().contains("input device added device=vitrine test vt keyboard")
    });
    assert!(added, "{}", vitrine.log());
    let home = active();
    let (target, key) = if home == "tty2" { ("tty3", KEY_F3) } else { ("tty2", KEY_F2) };
    let combo = |keyboard: &Uinput| {
        for (code, value) in
            [(KEY_LEFTCTRL, 1), (KEY_LEFTALT, 1), (key, 1), (key, 0), (KEY_LEFTALT, 0), (KEY_LEFTCTRL, 0)]
        {
            keyboard.emit(Uinput::EV_KEY, code, value);
            keyboard.sync();
        }
    };

    combo(&keyboard);
    let ignored = super::common::wait_until(Duration::from_secs(10), || vitrine.log().contains("vt_switch is off"));
    assert!(ignored, "{}", vitrine.log());
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(active(), home, "the VT switched with vt_switch off");
    assert!(!vitrine.log().contains("vt released"), "{}", vitrine.log());

    let config = vitrine.runtime.join(format!("{}.toml", vitrine.socket));
    std::fs::write(&config, format!("{BG_CONFIG}[input]\nvt_switch = true\n")).unwrap();
    assert!(vitrine.request(&Request::Reload).ok);
    combo(&keyboard);
    let switched = super::common::wait_until(Duration::from_secs(10), || active() == target);
    assert!(switched, "no switch to {target} with vt_switch on (on {}); log:\n{}", active(), vitrine.log());
    let status = std::process::Command::new("busybox")
        .args(["chvt", home.trim_start_matches("tty")])
        .status()
        .expect("busybox chvt");
    assert!(status.success());
    assert!(super::common::wait_until(Duration::from_secs(10), || vitrine.log().contains("vt acquired")));
    assert!(vitrine.is_running());
}
