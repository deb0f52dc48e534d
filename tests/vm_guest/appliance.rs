//! VM tests of vitrine as an appliance: started the way its systemd unit starts it, with the
//! project's udev rules applied, and touchscreens tied to outputs by udev.

use std::path::Path;
use std::time::Duration;

use super::common::{self, Launch, Vitrine, BG_CONFIG};
use vitrine::control::protocol::Request;

/// Install the project's udev rules at run time and apply them to the devices there are.
fn apply_udev_rules(extra: &str) {
    let rules = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/udev/70-vitrine.rules")).unwrap();
    std::fs::create_dir_all("/run/udev/rules.d").unwrap();
    std::fs::write("/run/udev/rules.d/70-vitrine.rules", format!("{rules}{extra}")).unwrap();
    let udevadm = |args: &[&str]| {
        let status = std::process::Command::new("udevadm").args(args).status().expect("udevadm");
        assert!(status.success(), "udevadm {args:?}");
    };
    udevadm(&["control", "--reload-rules"]);
    udevadm(&["trigger", "--action=change"]);
    udevadm(&["settle", "--timeout=30"]);
}

/// A group's id from /etc/group.
fn gid(name: &str) -> u32 {
    let groups = std::fs::read_to_string("/etc/group").unwrap();
    groups
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no group {name}"))
}

/// The value of `key=` in the [Service] section of a unit file (the first one, or every one).
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines().filter_map(|l| l.strip_prefix(&format!("{key}="))).map(str::to_string).collect()
}

/// vitrine as `systemd/vitrine.service` runs it: an unprivileged user with the unit's
/// supplementary groups and environment, devices from seatd, the unit's command line, the
/// project's udev rules giving the groups the devices. It reaches its first frame (READY=1 on
/// the notify socket) and feeds the watchdog.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn started_as_the_unit_starts_it_vitrine_reaches_its_first_frame() {
    use std::os::unix::fs::MetadataExt;

    super::assert_in_vm();
    // A sound card, as a board has one (the [audio] device is "default": card 0); udev gives
    // it to the audio group.
    let _ = std::process::Command::new("modprobe").args(["snd-aloop", "pcm_substreams=1"]).status();
    apply_udev_rules("");
    // The rules gave the kiosk groups the decoder and the buffer heaps (udmabuf is root-only
    // without them).
    for (path, group) in [("/dev/udmabuf", "video"), ("/dev/video0", "video"), ("/dev/dri/card0", "video")] {
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!(meta.gid(), gid(group), "{path} group");
        assert_eq!(meta.mode() & 0o060, 0o060, "{path} is read-write for its group");
    }

    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/vitrine.service")).unwrap();
    let groups: Vec<u32> = unit_values(&unit, "SupplementaryGroups")
        .iter()
        .flat_map(|g| g.split_whitespace().map(gid).collect::<Vec<_>>())
        .collect();
    let exec = unit_values(&unit, "ExecStart").first().cloned().unwrap();
    let args: Vec<String> = exec.split_whitespace().skip(1).map(str::to_string).collect();
    assert_eq!(args, ["--backend", "drm"], "the unit's command line changed: update this test");
    let mut env: Vec<(String, String)> = unit_values(&unit, "Environment")
        .iter()
        .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .filter(|(k, _)| k != "XDG_RUNTIME_DIR")
        .collect();

    let mut seatd = std::process::Command::new("seatd").args(["-g", "video"]).spawn().expect("seatd");
    assert!(common::wait_until(Duration::from_secs(10), || Path::new("/run/seatd.sock").exists()));
    let runtime = common::runtime_dir();
    let (uid, group) = (999u32, 999u32);
    let dir = std::ffi::CString::new(runtime.path().to_str().unwrap()).unwrap();
    // SAFETY: plain chown of a directory the test made.
    unsafe { libc::chown(dir.as_ptr(), uid, group) };
    let notify = runtime.path().join("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let path = std::ffi::CString::new(notify.to_str().unwrap()).unwrap();
    // SAFETY: as above.
    unsafe { libc::chown(path.as_ptr(), uid, group) };
    env.push(("NOTIFY_SOCKET".into(), notify.display().to_string()));
    env.push(("WATCHDOG_USEC".into(), "2000000".into()));
    let groups_arg = groups.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let mut vitrine = Vitrine::launch(Launch {
        name: "vm-unit",
        args,
        config: BG_CONFIG.into(),
        env,
        runtime: Some(runtime.path().to_path_buf()),
        wrapper: vec![
            "setpriv".into(),
            format!("--reuid={uid}"),
            format!("--regid={group}"),
            format!("--groups={groups_arg}"),
            "--no-new-privs".into(),
        ],
    });
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !(seen.iter().any(|m: &String| m == "READY=1") && seen.iter().any(|m| m == "WATCHDOG=1")) {
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no sd_notify ({e}), got {seen:?}; log:\n{}", vitrine.log()));
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", vitrine.child.id())).unwrap();
    let line = |key: &str| status.lines().find(|l| l.starts_with(key)).unwrap().to_string();
    assert_eq!(line("Uid:").split_whitespace().nth(1), Some("999"), "{status}");
    assert!(line("Groups:").contains(&gid("input").to_string()), "{}", line("Groups:"));
    assert_eq!(vitrine.ok(&Request::Version)["backend"], "drm");
    assert!(vitrine.log().contains("session: libseat"), "{}", vitrine.log());
    vitrine.spawn_client("weston-simple-shm", &[]);
    vitrine.wait_for_pixels("unit", Duration::from_secs(60), |img| {
        img.fraction_differing((412, 284, 200, 200), common::BG, 8) > 0.95
    });
    // Sound, on by default: the unit's groups open the sound card (/dev/snd is the audio
    // group's), and a clip with sound is heard.
    let sound = |k: &str| vitrine.ok(&Request::Stats)["video"][k].as_u64().unwrap_or(0);
    vitrine.ok(&Request::Play { path: super::clip("flash-beep.mp4") });
    assert!(
        common::wait_until(Duration::from_secs(60), || sound("audio_frames_written") > 48_000),
        "no sound as the unit's user: {}; log:\n{}",
        vitrine.ok(&Request::Stats),
        vitrine.log()
    );
    assert_eq!(sound("audio_device_failures"), 0, "{}", vitrine.log());
    assert!(vitrine.is_running());
    drop(vitrine);
    let _ = seatd.kill();
    let _ = seatd.wait();
}

/// A touchscreen whose udev rule names an output (ENV{WL_OUTPUT}) sends its touches there, not
/// to the first output.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn a_touchscreen_goes_to_the_output_udev_names() {
    use super::display::ConfigfsVkms;
    use super::Uinput;
    use common::wl::{dispatch_until, map, setup, toplevel};

    super::assert_in_vm();
    let vkms = ConfigfsVkms::new("touchpair", &[true, true], 0);
    // The connectors' names, as vitrine will call the outputs.
    let probe = std::process::Command::new(env!("CARGO_BIN_EXE_vitrine")).args(["probe", "--json"]).output().unwrap();
    let probe: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    let card = probe["drm"].as_array().unwrap().iter().find(|c| c["path"] == vkms.card.display().to_string()).unwrap();
    let names: Vec<String> = card["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["writeback"] == false)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 2, "{card}");
    let second = &names[1];
    apply_udev_rules(&format!(
        "SUBSYSTEM==\"input\", KERNEL==\"event*\", ATTRS{{name}}==\"vitrine test right touch\", ENV{{WL_OUTPUT}}=\"{second}\"\n"
    ));
    let config = format!(
        "{BG_CONFIG}[drm]\ndevice = \"{}\"\n[[kiosk.placement]]\napp_id = \"vitrine.test.right\"\noutput = \"{second}\"\n",
        vkms.card.display()
    );
    let vitrine = Vitrine::launch(Launch {
        name: "vm-touch-output",
        args: Vec::new(),
        config,
        env: Vec::new(),
        runtime: None,
        wrapper: Vec::new(),
    });
    let touch = Uinput::touchscreen("vitrine test right touch");
    assert!(
        common::wait_until(Duration::from_secs(20), || vitrine
            .log()
            .contains(&format!("input device added device=vitrine test right touch output=Some(\"{second}\")"))),
        "the touchscreen's WL_OUTPUT was not seen; log:\n{}",
        vitrine.log()
    );
    let stream = std::os::unix::net::UnixStream::connect(vitrine.runtime.join(&vitrine.socket)).unwrap();
    let conn = wayland_client::Connection::from_socket(stream).unwrap();
    let (g, mut queue, mut client) = setup(&conn);
    let w = toplevel(&g, &queue.handle(), "vitrine.test.right");
    let size = map(&g, &mut queue, &mut client, &w, [0x30, 0x60, 0x90]);
    assert_eq!(size, (1024, 768));
    let clients = vitrine.ok(&Request::Clients);
    assert!(clients.to_string().contains(second.as_str()), "the client is on {second}: {clients}");
    // A quarter across, half down: on the second output, which is where the client is.
    touch.tap(1024, 2048);
    dispatch_until(&mut queue, &mut client, |c| !c.touch_downs.is_empty());
    let (x, y) = client.touch_downs[0];
    assert!((x - 256.0).abs() < 2.0 && (y - 384.0).abs() < 2.0, "touch landed at ({x}, {y})");
    drop(vitrine);
    let _ = std::fs::remove_file("/run/udev/rules.d/70-vitrine.rules");
}

/// A touch kiosk's on-screen keyboard, end to end on real drivers: `wvkbd` (a layer surface with
/// an exclusive zone, and a virtual keyboard) over a GTK entry, keys tapped on a uinput
/// touchscreen; the text arrives in the entry.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn wvkbd_tapped_on_a_touchscreen_types_into_a_gtk_entry() {
    use super::Uinput;

    super::assert_in_vm();
    let wvkbd = common::which("wvkbd-mobintl");
    common::require("/usr/bin/python3");
    let mut vitrine = Vitrine::launch(Launch {
        name: "vm-wvkbd",
        args: Vec::new(),
        config: format!("{BG_CONFIG}[security]\nprivileged_clients = [{:?}]\n", wvkbd),
        env: Vec::new(),
        runtime: None,
        wrapper: Vec::new(),
    });
    let touch = Uinput::touchscreen("vitrine test kiosk touch");
    assert!(
        common::wait_until(Duration::from_secs(20), || vitrine
            .log()
            .contains("input device added device=vitrine test kiosk touch")),
        "the touchscreen was not seen; log:\n{}",
        vitrine.log()
    );
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("entry.py");
    std::fs::write(&script, common::GTK_ENTRY).unwrap();
    let out = dir.path().join("entry.out");
    let mut entry = vitrine.client_command("/usr/bin/python3", &[&script.display().to_string()]);
    entry
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(dir.path().join("entry.err")).unwrap());
    let mut entry = entry.spawn().expect("python3");
    assert!(
        common::wait_until(Duration::from_secs(120), || common::read(&out).contains("ready")),
        "the GTK entry did not start: {}",
        common::read(&dir.path().join("entry.err"))
    );
    let before = vitrine.wait_for_pixels("wvkbd-before", Duration::from_secs(60), |img| common::covered(img) > 0.99);
    // 240 pixels high: the bottom 240 rows of the 1024x768 output are the keyboard's.
    const KEYBOARD: i32 = 240;
    let (width, height) = (1024i32, 768i32);
    let pressed = vitrine.spawn_client("wvkbd-mobintl", &["-L", "240", "-H", "240", "-o"]);
    let drawn = common::wait_until(Duration::from_secs(60), || {
        let now = vitrine.screenshot("wvkbd");
        now.fraction_differing((0, (height - KEYBOARD) as u32, width as u32, KEYBOARD as u32), common::BG, 8) > 0.9
            && now.pixel(512, 760) != before.pixel(512, 760)
    });
    assert!(drawn, "wvkbd did not show at the bottom; log:\n{}", vitrine.log());
    // Tap along the middle of the keyboard's letter rows (it has six rows; the third and fourth
    // hold letters) until a key types (a modifier or layout key types nothing).
    let mut tapped = 0;
    'rows: for row in [2, 3] {
        let y = height - KEYBOARD + KEYBOARD * (2 * row + 1) / 12;
        for x in (100..width).step_by(90) {
            touch.tap(x * 4095 / (width - 1), y * 4095 / (height - 1));
            tapped += 1;
            if common::wait_until(Duration::from_secs(5), || common::read(&out).contains("text=")) {
                break 'rows;
            }
        }
    }
    let text = common::read(&out);
    let typed = text.lines().find_map(|l| l.strip_prefix("text=")).unwrap_or_default().to_string();
    let _ = entry.kill();
    let _ = entry.wait();
    assert!(
        typed.chars().count() == 1 && typed.chars().all(|c| !c.is_control()),
        "after {tapped} taps the entry has {typed:?}; keys wvkbd saw pressed: {:?}; log:\n{}",
        common::read(&pressed),
        vitrine.log()
    );
    println!("wvkbd: {tapped} taps; the entry got {typed:?}");
}
