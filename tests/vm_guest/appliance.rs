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
