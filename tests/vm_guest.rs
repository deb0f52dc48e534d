//! Tests that need real kernel drivers (vkms, visl, ...): they run inside the VM rig
//! (`tests/vm/run`, called by `scripts/test`), which runs this binary with `--ignored`.
//! On the host they are ignored, never passed: the rig reports them as PASS/FAIL.

#[path = "vm_guest/appliance.rs"]
mod appliance;
#[path = "vm_guest/audio.rs"]
mod audio;
#[path = "vm_guest/cec.rs"]
mod cec;
mod common;
#[path = "vm_guest/display.rs"]
mod display;
#[path = "vm_guest/faults.rs"]
mod faults;
#[path = "vm_guest/frames.rs"]
mod frames;
#[path = "vm_guest/rewrite.rs"]
mod rewrite;
#[path = "vm_guest/soak.rs"]
mod soak;
#[path = "vm_guest/vop2.rs"]
mod vop2;

use std::time::Duration;

use common::{covered, Launch, Vitrine, BG, BG_CONFIG};
use vitrine::control::protocol::Request;

const IN_VM: &str = "needs the VM rig's kernel drivers: run tests/vm/run";

fn assert_in_vm() {
    assert!(std::env::var_os("VITRINE_IN_VM").is_some(), "this test needs the VM rig (vkms, visl): run tests/vm/run");
}

/// vitrine with the backend chosen automatically, as a user on a free VT would start it.
fn auto(name: &str) -> Vitrine {
    Vitrine::launch(Launch {
        name,
        args: Vec::new(),
        config: BG_CONFIG.into(),
        env: Vec::new(),
        runtime: None,
        wrapper: Vec::new(),
    })
}

#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn probe_describes_vkms() {
    assert_in_vm();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vitrine")).args(["probe", "--json"]).output().unwrap();
    assert!(out.status.success());
    let probe: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let card = &probe["drm"][0];
    assert_eq!(card["driver"], "vkms", "{probe}");
    let planes = card["planes"].as_array().unwrap();
    let count = |kind: &str| planes.iter().filter(|p| p["type"] == kind).count();
    assert_eq!((count("Primary"), count("Overlay"), count("Cursor")), (1, 8, 1), "vkms with enable_overlay/cursor");
    for p in planes {
        assert!(p["formats"]["NV12"].as_array().is_some_and(|m| m.contains(&"LINEAR".into())), "{p}");
        assert!(!p["color_encoding"].as_array().unwrap().is_empty(), "YUV planes have COLOR_ENCODING: {p}");
    }
    let connectors = card["connectors"].as_array().unwrap();
    assert!(connectors.iter().any(|c| c["writeback"] == true), "enable_writeback gives a writeback connector");
    assert!(connectors.iter().any(|c| c["name"] == "Virtual-1" && c["connected"] == true));
}

#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn drm_backend_shows_a_client_through_the_planes() {
    assert_in_vm();
    let _ = IN_VM;
    let mut vitrine = auto("vm-drm-client");
    let version = vitrine.ok(&Request::Version);
    assert_eq!(version["backend"], "drm", "auto must pick DRM on a free VT; log:\n{}", vitrine.log());
    let outputs = vitrine.ok(&Request::Outputs);
    assert_eq!(outputs["outputs"][0]["name"], "Virtual-1");
    assert_eq!(
        (outputs["outputs"][0]["width"].as_i64(), outputs["outputs"][0]["height"].as_i64()),
        (Some(1024), Some(768))
    );

    vitrine.spawn_client("weston-simple-shm", &[]);
    // The screenshot comes from the writeback connector: what the planes really scan out.
    let image = vitrine.wait_for_pixels("writeback", Duration::from_secs(60), |img| {
        img.fraction_differing((412, 284, 200, 200), BG, 8) > 0.95
    });
    assert_eq!((image.width, image.height), (1024, 768));
    assert!(image.fraction_differing((0, 0, 100, 100), BG, 8) < 0.01, "the background is not what was configured");
    assert!(covered(&image) > 0.05);

    // Steady state: one commit per presented frame, no new framebuffers, no test commits.
    let before = vitrine.ok(&Request::Stats);
    std::thread::sleep(Duration::from_secs(2));
    let after = vitrine.ok(&Request::Stats);
    let delta = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    assert!(delta("frames_presented") >= 10, "only {} frames in 2 s: {after}", delta("frames_presented"));
    assert_eq!(delta("framebuffers_created"), 0, "framebuffers must be created once, not per frame: {after}");
    assert_eq!(delta("test_commits"), 0, "the plan is cached: no test commits in steady state: {after}");
    assert!(after["test_commits"].as_u64().unwrap() >= 1, "plans are verified with TEST_ONLY commits");
    let commits = delta("commits");
    let frames = delta("frames_presented");
    assert!(commits <= frames + 1, "{commits} commits for {frames} frames");
    // 2 composition buffers + 1 writeback buffer, for the whole run.
    assert_eq!(after["framebuffers_created"], 3, "{after}");

    // A shared-memory client cannot be scanned out: it is composited, and `planes` says why.
    let planes = vitrine.ok(&Request::Planes);
    let layers = planes["outputs"][0]["layers"].as_array().unwrap().clone();
    let client = layers.iter().find(|l| l["source"] == "client").expect("client layer");
    assert_eq!(client["name"], "org.freedesktop.weston.simple-shm");
    assert_eq!(client["composited"], true);
    assert!(client["reason"].as_str().unwrap().contains("shared memory"), "{client}");
    let composition = layers.iter().find(|l| l["source"] == "composition").expect("composition layer");
    assert!(composition["plane"].as_u64().is_some(), "{composition}");
}

/// A fullscreen client whose buffer is a dmabuf (made through /dev/udmabuf): it is scanned out
/// directly, with no composition and no CPU copy, and the writeback frame shows its pixels.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn a_client_dmabuf_is_scanned_out_on_a_plane() {
    use common::wl::{dispatch_until, dmabuf_buffer, setup, toplevel, udmabuf};
    use std::io::{Seek, Write};
    use wayland_client::Proxy;

    assert_in_vm();
    // Black background: the CRTC shows black where no plane is, so no background layer exists.
    let vitrine = Vitrine::launch(Launch {
        name: "vm-dmabuf",
        args: Vec::new(),
        config: String::new(),
        env: Vec::new(),
        runtime: None,
        wrapper: Vec::new(),
    });
    assert_eq!(vitrine.ok(&Request::Version)["backend"], "drm");
    let before = vitrine.ok(&Request::Stats);

    let stream = std::os::unix::net::UnixStream::connect(vitrine.runtime.join(&vitrine.socket)).unwrap();
    let conn = wayland_client::Connection::from_socket(stream).unwrap();
    let (g, mut queue, mut client) = setup(&conn);
    let qh = queue.handle();
    let w = toplevel(&g, &qh, "vitrine.test.dmabuf");
    let id = w.toplevel.id().protocol_id();
    let xid = w.xdg.id().protocol_id();
    dispatch_until(&mut queue, &mut client, |c| c.configures.contains_key(&id) && c.pending_serial.contains_key(&xid));
    let (width, height, _) = client.configures[&id].clone();
    assert_eq!((width, height), (1024, 768));
    w.xdg.ack_configure(client.pending_serial[&xid]);

    // Two XRGB8888 buffers in distinct colours, shown alternately (double buffering).
    let colours = [[0x20u8, 0x80, 0xc0], [0xc0, 0x40, 0x10]];
    let stride = width as u32 * 4;
    let mut buffers = Vec::new();
    for rgb in colours {
        let mut buf = udmabuf((stride * height as u32) as usize).expect("/dev/udmabuf");
        let pixel = [rgb[2], rgb[1], rgb[0], 0xff];
        let data: Vec<u8> = pixel.iter().copied().cycle().take((stride * height as u32) as usize).collect();
        buf.memfd.rewind().unwrap();
        buf.memfd.write_all(&data).unwrap();
        let wl = dmabuf_buffer(&g, &qh, &buf, (width, height), u32::from_le_bytes(*b"XR24"), &[(0, stride)]);
        buffers.push((buf, wl));
    }
    let show =
        |i: usize, queue: &mut wayland_client::EventQueue<common::wl::Client>, client: &mut common::wl::Client| {
            w.surface.attach(Some(&buffers[i].1), 0, 0);
            w.surface.damage_buffer(0, 0, width, height);
            w.surface.commit();
            queue.roundtrip(client).unwrap();
        };
    show(0, &mut queue, &mut client);
    let image =
        vitrine.wait_for_pixels("dmabuf", Duration::from_secs(30), |img| img.pixel(512, 384)[..3] == colours[0]);
    for (x, y) in [(0, 0), (1023, 0), (0, 767), (1023, 767)] {
        assert_eq!(image.pixel(x, y)[..3], colours[0], "({x},{y}) of the writeback frame");
    }

    let planes = vitrine.ok(&Request::Planes);
    let layers = planes["outputs"][0]["layers"].as_array().unwrap().clone();
    let layer = layers.iter().find(|l| l["name"] == "vitrine.test.dmabuf").expect("client layer");
    assert_eq!(layer["composited"], false, "{planes}");
    assert!(layer["plane"].as_u64().is_some(), "{planes}");
    assert_eq!(layer["format"], "XR24");
    assert!(layers.iter().all(|l| l["source"] != "composition"), "nothing to composite: {planes}");

    // Flip between the two buffers: each gets one framebuffer, and the CPU copies nothing.
    let mid = vitrine.ok(&Request::Stats);
    for i in 1..8 {
        show(i % 2, &mut queue, &mut client);
        std::thread::sleep(Duration::from_millis(100));
    }
    vitrine.wait_for_pixels("second", Duration::from_secs(10), |img| img.pixel(512, 384)[..3] == colours[1]);
    let after = vitrine.ok(&Request::Stats);
    let delta = |a: &serde_json::Value, b: &serde_json::Value, k: &str| b[k].as_u64().unwrap() - a[k].as_u64().unwrap();
    assert_eq!(delta(&mid, &after, "cpu_copied_bytes"), 0, "a scanned-out client costs no CPU copy: {after}");
    assert_eq!(delta(&mid, &after, "frames_composited"), 0, "{after}");
    // 2 client buffers + 1 writeback buffer since start (the composition buffers came before).
    assert_eq!(delta(&before, &after, "framebuffers_created"), 3, "{before} -> {after}");
    assert!(delta(&mid, &after, "commits") >= 3, "{after}");
}

/// Malformed dmabufs (stride too small, offset past the end, a modifier no plane knows, too many
/// planes) are refused with a protocol error to that client only.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn malformed_client_dmabufs_are_refused_to_that_client_only() {
    use common::wl::{setup, udmabuf};
    use wayland_client::Proxy;
    use wayland_protocols::wp::linux_dmabuf::zv1::client::zwp_linux_buffer_params_v1::Flags;

    assert_in_vm();
    let mut vitrine = auto("vm-bad-dmabuf");
    vitrine.spawn_client("weston-simple-shm", &[]);
    vitrine.wait_for_pixels("before", Duration::from_secs(60), |img| {
        img.fraction_differing((412, 284, 200, 200), BG, 8) > 0.95
    });

    let xr24 = u32::from_le_bytes(*b"XR24");
    let nv12 = u32::from_le_bytes(*b"NV12");
    // (what, fourcc, size, planes as (offset, stride), modifier)
    type Case<'a> = (&'a str, u32, (i32, i32), &'a [(u32, u32)], u64);
    let cases: [Case; 4] = [
        ("stride too small", xr24, (256, 256), &[(0, 256)], 0),
        ("offset past the end", xr24, (256, 256), &[(1 << 20, 1024)], 0),
        ("bogus modifier", xr24, (256, 256), &[(0, 1024)], 0x00de_adbe_ef00_0001),
        ("too many planes", nv12, (256, 256), &[(0, 256), (65536, 256), (98304, 256), (131072, 256)], 0),
    ];
    for (what, fourcc, size, planes, modifier) in cases {
        let stream = std::os::unix::net::UnixStream::connect(vitrine.runtime.join(&vitrine.socket)).unwrap();
        let conn = wayland_client::Connection::from_socket(stream).unwrap();
        let (g, mut queue, mut client) = setup(&conn);
        let qh = queue.handle();
        let buf = udmabuf(256 * 1024).expect("/dev/udmabuf");
        let params = g.dmabuf.as_ref().expect("linux-dmabuf").create_params(&qh, ());
        for (i, (offset, stride)) in planes.iter().enumerate() {
            params.add(
                std::os::fd::AsFd::as_fd(&buf.dmabuf),
                i as u32,
                *offset,
                *stride,
                (modifier >> 32) as u32,
                modifier as u32,
            );
        }
        let _ = params.create_immed(size.0, size.1, fourcc, Flags::empty(), &qh, ());
        let result = queue.roundtrip(&mut client);
        assert!(result.is_err(), "{what}: the client was not disconnected");
        let err = conn.protocol_error().unwrap_or_else(|| panic!("{what}: no protocol error"));
        assert!(err.object_interface.starts_with("zwp_linux_buffer_params"), "{what}: {err:?}");
        let _ = params.id();
    }
    // The compositor and its other client carry on.
    assert!(vitrine.is_running());
    vitrine.wait_for_pixels("after", Duration::from_secs(20), |img| {
        img.fraction_differing((412, 284, 200, 200), BG, 8) > 0.95
    });
    assert_eq!(vitrine.app_ids(), ["org.freedesktop.weston.simple-shm"]);
}

/// Descriptors a client makes vitrine hold through linux-dmabuf are bounded: parameter objects
/// left unused (each may hold four) stop at 64, dmabuf buffers never destroyed at 256, each with
/// the protocol error naming the limit; vitrine's descriptors come back when the client goes,
/// and its other client carries on.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn dmabuf_floods_are_stopped_at_their_limits() {
    use common::wl::{setup, udmabuf};
    use std::os::fd::AsFd;
    use wayland_protocols::wp::linux_dmabuf::zv1::client::zwp_linux_buffer_params_v1::Flags;

    assert_in_vm();
    let mut vitrine = auto("vm-dmabuf-flood");
    vitrine.spawn_client("weston-simple-shm", &[]);
    vitrine.wait_for_pixels("before", Duration::from_secs(60), |img| {
        img.fraction_differing((412, 284, 200, 200), BG, 8) > 0.95
    });
    let fds = |v: &Vitrine| std::fs::read_dir(format!("/proc/{}/fd", v.child.id())).map(|d| d.count()).unwrap_or(0);
    let baseline = fds(&vitrine);
    let xr24 = u32::from_le_bytes(*b"XR24");
    let buf = udmabuf(64 * 64 * 4).expect("/dev/udmabuf");
    let run = |what: &str, step: &dyn Fn(&common::wl::Globals, &wayland_client::QueueHandle<common::wl::Client>)| {
        let conn = vitrine.wayland();
        let (g, mut queue, mut client) = setup(&conn);
        let qh = queue.handle();
        for i in 0..400 {
            step(&g, &qh);
            if i % 16 == 15 && queue.roundtrip(&mut client).is_err() {
                break;
            }
        }
        // wl_display.no_memory reaches wayland-client as ENOMEM (or, while it still sends, as
        // a broken pipe); vitrine's log names the limit.
        let err = queue.roundtrip(&mut client).expect_err("the flooder is still connected");
        let err = format!("{err:?}");
        assert!(err.contains("Cannot allocate memory") || err.contains("BrokenPipe"), "{what}: {err}");
        let (number, name) = what.split_once(' ').unwrap();
        let said = format!("limit=\"{name}\" max={number}");
        assert!(vitrine.log().contains(&said), "the log does not name the limit ({said}):\n{}", vitrine.log());
    };
    // Parameter objects with four planes each, never used.
    run("64 dmabuf parameter objects per client", &|g, qh| {
        let params = g.dmabuf.as_ref().expect("linux-dmabuf").create_params(qh, ());
        for plane in 0..4 {
            params.add(buf.dmabuf.as_fd(), plane, 0, 256, 0, 0);
        }
    });
    // Buffers made (their parameter objects destroyed once used) and never destroyed.
    run("256 dmabuf buffers per client", &|g, qh| {
        let params = g.dmabuf.as_ref().expect("linux-dmabuf").create_params(qh, ());
        params.add(buf.dmabuf.as_fd(), 0, 0, 256, 0, 0);
        let _ = params.create_immed(64, 64, xr24, Flags::empty(), qh, ());
        params.destroy();
    });
    assert!(
        common::wait_until(Duration::from_secs(10), || fds(&vitrine) <= baseline),
        "descriptors held after the floods: {} (before: {baseline})",
        fds(&vitrine)
    );
    assert!(vitrine.is_running());
    vitrine.wait_for_pixels("after", Duration::from_secs(20), |img| {
        img.fraction_differing((412, 284, 200, 200), BG, 8) > 0.95
    });
}

/// A uinput device (a virtual keyboard or touchscreen the kernel treats as real).
struct Uinput(std::fs::File);

impl Uinput {
    /// A single-touch touchscreen (ABS_X/ABS_Y 0..4095) named `name`.
    fn touchscreen(name: &str) -> Uinput {
        Uinput::create(name, &[Self::BTN_TOUCH], &[(Self::ABS_X, 4095), (Self::ABS_Y, 4095)], true)
    }

    /// A multi-touch touchscreen (slots, ABS_MT_POSITION_X/Y 0..4095) named `name`.
    fn multitouch(name: &str) -> Uinput {
        let abs = [
            (Self::ABS_X, 4095),
            (Self::ABS_Y, 4095),
            (Self::ABS_MT_SLOT, 9),
            (Self::ABS_MT_POSITION_X, 4095),
            (Self::ABS_MT_POSITION_Y, 4095),
            (Self::ABS_MT_TRACKING_ID, 65535),
        ];
        Uinput::create(name, &[Self::BTN_TOUCH], &abs, true)
    }

    /// A one-finger tap at (x, y) of 0..4095 on a `multitouch` screen.
    fn mt_tap(&self, x: i32, y: i32) {
        self.emit(Self::EV_ABS, Self::ABS_MT_SLOT, 0);
        self.emit(Self::EV_ABS, Self::ABS_MT_TRACKING_ID, 1);
        self.emit(Self::EV_ABS, Self::ABS_MT_POSITION_X, x);
        self.emit(Self::EV_ABS, Self::ABS_MT_POSITION_Y, y);
        self.emit(Self::EV_ABS, Self::ABS_X, x);
        self.emit(Self::EV_ABS, Self::ABS_Y, y);
        self.emit(Self::EV_KEY, Self::BTN_TOUCH, 1);
        self.sync();
        self.emit(Self::EV_ABS, Self::ABS_MT_TRACKING_ID, -1);
        self.emit(Self::EV_KEY, Self::BTN_TOUCH, 0);
        self.sync();
    }

    /// A tap at (x, y) of 0..4095 on a `touchscreen`.
    fn tap(&self, x: i32, y: i32) {
        self.emit(Self::EV_ABS, Self::ABS_X, x);
        self.emit(Self::EV_ABS, Self::ABS_Y, y);
        self.emit(Self::EV_KEY, Self::BTN_TOUCH, 1);
        self.sync();
        self.emit(Self::EV_KEY, Self::BTN_TOUCH, 0);
        self.sync();
    }

    const BTN_TOUCH: u16 = 0x14a;
    const ABS_X: u16 = 0;
    const ABS_Y: u16 = 1;
    const ABS_MT_SLOT: u16 = 0x2f;
    const ABS_MT_POSITION_X: u16 = 0x35;
    const ABS_MT_POSITION_Y: u16 = 0x36;
    const ABS_MT_TRACKING_ID: u16 = 0x39;
    const EV_SYN: u16 = 0;
    const EV_KEY: u16 = 1;
    const EV_ABS: u16 = 3;

    fn ioctl(&self, request: libc::c_ulong, arg: libc::c_ulong) {
        let r = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&self.0), request, arg) };
        assert!(r >= 0, "uinput ioctl {request:#x}: {}", std::io::Error::last_os_error());
    }

    /// keys: key codes; abs: (code, max) axes; direct: a touchscreen.
    fn create(name: &str, keys: &[u16], abs: &[(u16, i32)], direct: bool) -> Uinput {
        const UI_SET_EVBIT: libc::c_ulong = 0x4004_5564;
        const UI_SET_KEYBIT: libc::c_ulong = 0x4004_5565;
        const UI_SET_ABSBIT: libc::c_ulong = 0x4004_5567;
        const UI_SET_PROPBIT: libc::c_ulong = 0x4004_556e;
        const UI_DEV_SETUP: libc::c_ulong = 0x405c_5503;
        const UI_ABS_SETUP: libc::c_ulong = 0x401c_5504;
        const UI_DEV_CREATE: libc::c_ulong = 0x5501;
        let file = std::fs::OpenOptions::new().write(true).open("/dev/uinput").expect("/dev/uinput");
        let dev = Uinput(file);
        dev.ioctl(UI_SET_EVBIT, Self::EV_KEY as _);
        for k in keys {
            dev.ioctl(UI_SET_KEYBIT, *k as _);
        }
        if !abs.is_empty() {
            dev.ioctl(UI_SET_EVBIT, Self::EV_ABS as _);
        }
        for (code, max) in abs {
            dev.ioctl(UI_SET_ABSBIT, *code as _);
            // struct uinput_abs_setup { u16 code; u16 pad; struct input_absinfo { value, min, max, fuzz, flat, resolution } }
            let mut setup = [0u8; 28];
            setup[0..2].copy_from_slice(&code.to_ne_bytes());
            setup[12..16].copy_from_slice(&max.to_ne_bytes());
            setup[24..28].copy_from_slice(&10i32.to_ne_bytes());
            dev.ioctl(UI_ABS_SETUP, setup.as_ptr() as _);
        }
        if direct {
            dev.ioctl(UI_SET_PROPBIT, 1); // INPUT_PROP_DIRECT
        }
        // struct uinput_setup { struct input_id { bustype, vendor, product, version }; char name[80]; u32 ff_effects_max; }
        let mut setup = [0u8; 92];
        setup[0..2].copy_from_slice(&0x03u16.to_ne_bytes()); // BUS_USB
        setup[2..4].copy_from_slice(&0x1234u16.to_ne_bytes());
        setup[4..6].copy_from_slice(&0x5678u16.to_ne_bytes());
        setup[8..8 + name.len()].copy_from_slice(name.as_bytes());
        dev.ioctl(UI_DEV_SETUP, setup.as_ptr() as _);
        dev.ioctl(UI_DEV_CREATE, 0);
        dev
    }

    fn emit(&self, kind: u16, code: u16, value: i32) {
        use std::io::Write;
        let mut event = [0u8; 24];
        event[16..18].copy_from_slice(&kind.to_ne_bytes());
        event[18..20].copy_from_slice(&code.to_ne_bytes());
        event[20..24].copy_from_slice(&value.to_ne_bytes());
        (&self.0).write_all(&event).expect("uinput write");
    }

    fn sync(&self) {
        self.emit(Self::EV_SYN, 0, 0);
    }
}

/// A virtual keyboard's keys and a virtual touchscreen's touches reach the focused client, the
/// touch at the surface coordinates that match the screen position.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn keyboard_and_touchscreen_input_reach_the_client() {
    use common::wl::{dispatch_until, map, setup, toplevel};
    use wayland_client::Proxy;

    assert_in_vm();
    let vitrine = auto("vm-input");
    assert_eq!(vitrine.ok(&Request::Version)["backend"], "drm");
    const KEY_A: u16 = 30;
    let keyboard = Uinput::create("vitrine test keyboard", &(1..120).collect::<Vec<u16>>(), &[], false);
    let touch = Uinput::multitouch("vitrine test touchscreen");
    let added = common::wait_until(Duration::from_secs(20), || {
        let log = vitrine.log();
        log.contains("input device added device=vitrine test keyboard")
            && log.contains("input device added device=vitrine test touchscreen")
    });
    assert!(added, "libinput did not report the uinput devices; log:\n{}", vitrine.log());

    let stream = std::os::unix::net::UnixStream::connect(vitrine.runtime.join(&vitrine.socket)).unwrap();
    let conn = wayland_client::Connection::from_socket(stream).unwrap();
    let (g, mut queue, mut client) = setup(&conn);
    let w = toplevel(&g, &queue.handle(), "vitrine.test.input");
    map(&g, &mut queue, &mut client, &w, [0x30, 0x60, 0x90]);
    let surface = w.surface.id().protocol_id();
    dispatch_until(&mut queue, &mut client, |c| c.keyboard_focus == Some(surface));

    keyboard.emit(Uinput::EV_KEY, KEY_A, 1);
    keyboard.sync();
    keyboard.emit(Uinput::EV_KEY, KEY_A, 0);
    keyboard.sync();
    // Touch at 3/4 across and 1/4 down the screen: (768, 192) on the 1024x768 output.
    touch.mt_tap(3071, 1024);

    dispatch_until(&mut queue, &mut client, |c| c.keys.len() >= 2 && !c.touch_downs.is_empty());
    assert_eq!(client.keys[..2], [(KEY_A as u32, true), (KEY_A as u32, false)]);
    let (x, y) = client.touch_downs[0];
    assert!((x - 768.0).abs() < 2.0 && (y - 192.0).abs() < 2.0, "touch landed at ({x}, {y})");
}

/// Switching VTs away releases DRM master (another program can take the display) and stops
/// commits; switching back restores the display, client and all.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn vt_switch_releases_and_restores_the_display() {
    vt_switch("vm-vt", Vec::new());
}

/// The same without a seat manager: vitrine takes the VT itself (VT_PROCESS).
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn vt_switch_in_a_direct_session() {
    vt_switch("vm-vt-direct", vec![("VITRINE_SESSION".into(), "direct".into())]);
}

fn vt_switch(name: &str, env: Vec<(String, String)>) {
    use drm::Device as _;

    assert_in_vm();
    let mut vitrine = Vitrine::launch(Launch {
        name,
        args: Vec::new(),
        config: BG_CONFIG.into(),
        env,
        runtime: None,
        wrapper: Vec::new(),
    });
    assert_eq!(vitrine.ok(&Request::Version)["backend"], "drm");
    // The VT vitrine is on: the active one (vitrine was started from no terminal of its own).
    let active = std::fs::read_to_string("/sys/class/tty/tty0/active").expect("VTs");
    let vt: u16 = active.trim().trim_start_matches("tty").parse().expect("active VT");
    vitrine.spawn_client("weston-simple-shm", &[]);
    vitrine.wait_for_pixels("before", Duration::from_secs(60), |img| {
        img.fraction_differing((412, 284, 200, 200), BG, 8) > 0.95
    });

    let other = if vt == 2 { 3 } else { 2 };
    let chvt = |n: u16| {
        let status =
            std::process::Command::new("busybox").args(["chvt", &n.to_string()]).status().expect("busybox chvt");
        assert!(status.success());
    };
    chvt(other);
    assert!(common::wait_until(Duration::from_secs(10), || vitrine.log().contains("vt released")), "{}", vitrine.log());
    // Another program can become DRM master now.
    let card = vitrine::backend::drm::device::Card::open(std::path::Path::new("/dev/dri/card0")).unwrap();
    card.acquire_master_lock().expect("DRM master while vitrine is switched away");
    card.release_master_lock().unwrap();
    drop(card);
    let paused = vitrine.ok(&Request::Stats);
    std::thread::sleep(Duration::from_secs(1));
    let still = vitrine.ok(&Request::Stats);
    assert_eq!(paused["commits"], still["commits"], "no commits while switched away");

    chvt(vt);
    assert!(common::wait_until(Duration::from_secs(10), || vitrine.log().contains("vt acquired")), "{}", vitrine.log());
    vitrine.wait_for_pixels("after", Duration::from_secs(30), |img| {
        img.fraction_differing((412, 284, 200, 200), BG, 8) > 0.95
    });
    let resumed = vitrine.ok(&Request::Stats);
    assert!(resumed["frames_presented"].as_u64() > still["frames_presented"].as_u64(), "{resumed}");
    assert!(vitrine.is_running());
}

/// The config picks the connector's mode; a mode the connector does not have is a clear error.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn the_configured_mode_is_used_and_a_missing_one_is_reported() {
    assert_in_vm();
    let config = format!("{BG_CONFIG}[drm]\nconnector = \"Virtual-1\"\nmode = \"800x600@60\"\n");
    let vitrine = Vitrine::launch(Launch {
        name: "vm-mode",
        args: Vec::new(),
        config,
        env: Vec::new(),
        runtime: None,
        wrapper: Vec::new(),
    });
    let outputs = vitrine.ok(&Request::Outputs);
    assert_eq!(
        (outputs["outputs"][0]["width"].as_i64(), outputs["outputs"][0]["height"].as_i64()),
        (Some(800), Some(600))
    );
    let image = vitrine.screenshot("800x600");
    assert_eq!((image.width, image.height), (800, 600), "the writeback frame has the mode's size");
    drop(vitrine);

    let config = format!("{BG_CONFIG}[drm]\nmode = \"123x45\"\n");
    let mut vitrine = Vitrine::launch(Launch {
        name: "vm-bad-mode",
        args: Vec::new(),
        config,
        env: Vec::new(),
        runtime: None,
        wrapper: Vec::new(),
    });
    let status = vitrine.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    let log = vitrine.log();
    assert!(log.contains("has no mode 123x45") && log.contains("1024x768@60"), "{log}");
}

/// The appliance case: vitrine as an unprivileged user gets the display and input devices from
/// seatd, and drives the display.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn an_unprivileged_vitrine_drives_the_display_through_seatd() {
    assert_in_vm();
    let mut seatd = std::process::Command::new("seatd").args(["-g", "video"]).spawn().expect("seatd");
    assert!(common::wait_until(Duration::from_secs(10), || std::path::Path::new("/run/seatd.sock").exists()));
    let runtime = common::runtime_dir();
    let nobody = 65534;
    unsafe {
        libc::chown(std::ffi::CString::new(runtime.path().to_str().unwrap()).unwrap().as_ptr(), nobody, 44);
    }
    let mut vitrine = Vitrine::launch(Launch {
        name: "vm-seatd",
        args: Vec::new(),
        config: BG_CONFIG.into(),
        env: vec![("LIBSEAT_BACKEND".into(), "seatd".into())],
        runtime: Some(runtime.path().to_path_buf()),
        wrapper: vec!["setpriv".into(), "--reuid=65534".into(), "--regid=44".into(), "--clear-groups".into()],
    });
    assert_eq!(vitrine.ok(&Request::Version)["backend"], "drm", "{}", vitrine.log());
    let status = std::fs::read_to_string(format!("/proc/{}/status", vitrine.child.id())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap().to_string();
    assert!(uid.split_whitespace().nth(1) == Some("65534"), "vitrine runs as {uid}");
    assert!(vitrine.log().contains("session: libseat"), "{}", vitrine.log());
    vitrine.spawn_client("weston-simple-shm", &[]);
    vitrine.wait_for_pixels("seatd", Duration::from_secs(60), |img| {
        img.fraction_differing((412, 284, 200, 200), BG, 8) > 0.95
    });
    assert!(vitrine.is_running());
    drop(vitrine);
    let _ = seatd.kill();
    let _ = seatd.wait();
}

/// Wait until the player has presented `n` pictures (a minute at most, under TCG).
fn wait_for_pictures(vitrine: &Vitrine, n: u64) {
    assert!(
        common::wait_until(Duration::from_secs(60), || {
            vitrine.ok(&Request::Stats)["video"]["frames_presented"].as_u64().unwrap_or(0) >= n
        }),
        "fewer than {n} pictures presented; log:\n{}",
        vitrine.log()
    );
}

/// vitrine on the DRM backend with `config`, playing the rig's `clip` in a loop.
fn play_looping(name: &str, clip: &str, config: String) -> common::Vitrine {
    common::Vitrine::launch(common::Launch {
        name,
        args: vec!["--play".into(), self::clip(clip).display().to_string(), "--loop".into()],
        config,
        env: Vec::new(),
        runtime: None,
        wrapper: Vec::new(),
    })
}

/// Arguments to play `clips` once and write the audit to `stats`.
fn play_once_args(clips: &[&std::path::Path], stats: &std::path::Path) -> Vec<String> {
    let mut args = vec!["--play".to_string()];
    args.extend(clips.iter().map(|c| c.display().to_string()));
    args.extend(["--exit-when-done".into(), "--stats".into(), stats.display().to_string()]);
    args
}

/// The audit vitrine wrote with `--stats`.
fn read_stats(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("--stats file")).expect("--stats JSON")
}

fn clip(name: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("VITRINE_TEST_CLIPS").expect("VITRINE_TEST_CLIPS (tests/vm/make-clips) is not set");
    let path = std::path::Path::new(&dir).join(name);
    assert!(path.is_file(), "{} missing: tests/vm/make-clips makes it", path.display());
    path
}

/// Pictures in an MP4, as ffprobe counts them.
fn frame_count(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries"])
        .args(["stream=nb_read_packets", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("ffprobe frame count")
}

/// The whole point of vitrine: a 1080p H.264 clip decoded by a V4L2 stateless decoder (visl)
/// into NV12 dmabufs that go straight onto a KMS plane (vkms), with no copy, no CPU mapping,
/// no composition, and framebuffers made once per decoder buffer.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn a_1080p_clip_plays_through_visl_onto_a_plane_with_zero_copies() {
    assert_in_vm();
    let path = clip("1080p-main.mp4");
    let frames = frame_count(&path);
    let stats_path = common::artifacts().join("vm-play-1080p.stats.json");
    let _ = std::fs::remove_file(&stats_path);
    // vkms does not scale: a 1920x1080 mode shows the picture 1:1.
    let config = format!("{BG_CONFIG}[drm]\nmode = \"1920x1080@60\"\n");
    let mut vitrine = Vitrine::launch(Launch {
        name: "vm-play-1080p",
        args: play_once_args(&[&path], &stats_path),
        config,
        env: vec![("RUST_LOG".into(), "info,vitrine=debug,video=debug".into())],
        runtime: None,
        wrapper: Vec::new(),
    });
    // While it plays, the planes show visl's output: 75% colour bars below its text lines.
    // (BT.709 limited range through vkms: yellow ~ (191,191,0)±, cyan ~ (0,191,191)±.)
    // A 1080p writeback screenshot stalls the loop for seconds under TCG: it is taken paused,
    // which also proves pause holds the timeline.
    wait_for_pictures(&vitrine, 3);
    let paused = vitrine.ok(&Request::Pause);
    assert_eq!(paused["paused"], true, "{paused}");
    assert!(paused["decoder"].as_str().unwrap().contains("visl"), "{paused}");
    assert_eq!(paused["path"], "zero-copy: V4L2 dmabuf on a plane", "{paused}");
    let image = vitrine.screenshot("writeback-video");
    assert_eq!(image.width, 1920);
    assert!(common::count_near(&image, [191, 191, 0], 24) > 20_000, "yellow bar missing");
    assert!(common::count_near(&image, [0, 191, 191], 24) > 20_000, "cyan bar missing");
    assert!(common::count_near(&image, BG, 8) < 1000, "the video covers the output: no background shows");
    let planes = vitrine.ok(&Request::Planes);
    let layers = planes["outputs"][0]["layers"].as_array().unwrap().clone();
    let video = layers.iter().find(|l| l["source"] == "video").expect("video layer");
    assert_eq!(video["format"], "NV12", "{video}");
    assert_eq!(video["composited"], false, "the decoded picture is on a plane: {planes}");
    assert_eq!(video["size"], serde_json::json!([1920, 1080]), "the visible rect, not the coded 1088 lines");
    let resumed = vitrine.ok(&Request::Resume);
    assert_eq!(resumed["paused"], false, "{resumed}");

    let status = vitrine.wait_exit(Duration::from_secs(120));
    let log = vitrine.log();
    assert!(status.success(), "exit {status:?}; log:\n{log}");
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats_path).expect("--stats file")).unwrap();
    let n = |k: &str| stats[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {stats}"));
    assert_eq!(n("frames_decoded"), frames, "{stats}");
    assert_eq!(n("frames_presented") + n("frames_dropped"), frames, "every picture shown or counted dropped: {stats}");
    assert_eq!(n("frames_presented"), frames, "no picture dropped at 24 fps on a 60 Hz output: {stats}");
    assert_eq!(n("cpu_copied_bytes"), 0, "{stats}");
    assert_eq!(n("frame_mappings"), 0, "{stats}");
    assert_eq!(n("frames_composited"), 0, "{stats}");
    assert!(n("framebuffers_created") <= n("dmabufs_exported"), "one framebuffer per capture buffer at most: {stats}");
    assert!(n("framebuffers_created") >= 2, "{stats}");
    assert!(n("commits") >= frames, "one commit per new picture: {stats}");
    assert!(stats["latency_p50_ms"].as_f64().is_some(), "{stats}");
    println!("audit: {stats}");
}

/// A playlist with a resolution change between good items and every kind of bad item between
/// them: the bad ones are named and skipped, the good ones play completely, and the capture
/// queue is reallocated for the new size.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn a_playlist_skips_bad_items_and_follows_a_resolution_change() {
    assert_in_vm();
    let items = ["1080p-main.mp4", "missing.mp4", "garbage.mp4", "hevc.mp4", "truncated.mp4", "640x480-high.mp4"];
    let paths: Vec<std::path::PathBuf> = items
        .iter()
        .map(|n| if *n == "missing.mp4" { clip("1080p-main.mp4").with_file_name(n) } else { clip(n) })
        .collect();
    let expected = frame_count(&paths[0]) + frame_count(&paths[5]);
    let stats_path = common::artifacts().join("vm-playlist.stats.json");
    // Unscaled, as vkms cannot scale: the 640x480 item is centred.
    let playlist: Vec<String> = paths.iter().map(|p| format!("{:?}", p.display().to_string())).collect();
    let config = format!(
        "{BG_CONFIG}[drm]\nmode = \"1920x1080@60\"\n[video]\nscale = \"none\"\nplaylist = [{}]\n",
        playlist.join(", ")
    );
    let mut vitrine = Vitrine::launch(Launch {
        name: "vm-playlist",
        args: vec!["--exit-when-done".into(), "--stats".into(), stats_path.display().to_string()],
        config,
        env: vec![("RUST_LOG".into(), "info,vitrine=debug,video=debug".into())],
        runtime: None,
        wrapper: Vec::new(),
    });
    let status = vitrine.wait_exit(Duration::from_secs(120));
    let log = vitrine.log();
    assert_eq!(status.code(), Some(1), "items failed: the exit status says so; log:\n{log}");
    for (file, why) in [
        ("missing.mp4", "cannot read"),
        ("garbage.mp4", "not a video file"),
        ("hevc.mp4", "unsupported"),
        ("truncated.mp4", "corrupt"),
    ] {
        assert!(
            log.lines().any(|l| l.contains(file) && l.contains(why) && l.contains("ERROR")),
            "no error naming {file} ({why}); log:\n{log}"
        );
    }
    assert!(log.contains("reallocating the capture queue"), "{log}");
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats_path).expect("--stats file")).unwrap();
    let n = |k: &str| stats[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {stats}"));
    assert_eq!(n("frames_decoded"), expected, "{stats}");
    assert_eq!(n("frames_presented") + n("frames_dropped"), expected, "{stats}");
    assert_eq!(n("cpu_copied_bytes") + n("frame_mappings") + n("frames_composited"), 0, "{stats}");
}

/// visl's trace events: every control payload it received, picture by picture.
mod visl_trace {
    use std::collections::BTreeMap;

    const TRACING: &str = "/sys/kernel/tracing";

    fn write(file: &str, value: &str) {
        let path = format!("{TRACING}/{file}");
        std::fs::write(&path, value).unwrap_or_else(|e| panic!("{path}: {e}"));
    }

    /// Start recording visl's H.264 control events (and drop what was recorded before).
    pub fn start() {
        write("buffer_size_kb", "16384");
        write("events/visl_h264_controls/enable", "1");
        write("trace", "");
    }

    /// What was recorded since `start`.
    pub fn take() -> String {
        let text = std::fs::read_to_string(format!("{TRACING}/trace")).expect("read the trace");
        write("events/visl_h264_controls/enable", "0");
        write("trace", "");
        text
    }

    /// One request (a picture, or in slice-based decoding a slice): every compared field by
    /// name, its active references, and (slice-based) its reference lists.
    #[derive(Debug, Default, PartialEq)]
    pub struct Picture {
        pub fields: BTreeMap<String, String>,
        pub references: Vec<String>,
        /// "L0[i] <the DPB entry it names>", for the entries the slice uses.
        pub lists: Vec<String>,
        /// DPB entries by index: reference_ts and the rest.
        dpb: BTreeMap<usize, (u64, String)>,
        list_entries: Vec<(usize, usize, String, usize)>,
    }

    /// What a trace shows, and so what is compared.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub enum View {
        /// Picture-level controls, one record per picture. Not compared: slice parameters,
        /// reference lists and prediction weights (frame-based decoding does not use them; visl
        /// traces whatever the controls last held).
        Pictures,
        /// Every control, one record per slice, reference lists resolved to the DPB entries
        /// they name, for the entries within the slice's active counts (the others are unused).
        Slices,
    }

    /// Never compared, in either view:
    /// - a DPB entry's reference_ts (each implementation has its own timestamp base) and the
    ///   entries' order (lists are compared through what their indices name);
    /// - DPB entries without ACTIVE (non-reference pictures still waiting for output: whether
    ///   they are listed is up to the implementation).
    const PER_SLICE: &[&str] = &["v4l2_ctrl_h264_slice_params", "v4l2_ctrl_h264_pred_weights"];

    fn number_after(text: &str, key: &str) -> Option<usize> {
        let rest = &text[text.find(key)? + key.len()..];
        rest.trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    }

    pub fn parse(text: &str, view: View) -> Vec<Picture> {
        let mut pictures: Vec<Picture> = Vec::new();
        let mut event = String::new();
        let mut line_no = 0;
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            if let Some(i) = line.find(": v4l2_") {
                let rest = &line[i + 2..];
                let (name, tail) = rest.split_once(':').unwrap_or((rest, ""));
                event = name.to_string();
                line_no = 0;
                if event == "v4l2_ctrl_h264_sps" {
                    pictures.push(Picture::default());
                }
                let Some(p) = pictures.last_mut() else { continue };
                let index = number_after(tail, "[");
                if event == "v4l2_h264_dpb_entry" {
                    // "[i]: reference_ts N, pic_num ..." without the index and the timestamp.
                    let entry = tail.split_once(", ").map(|(_, e)| e).unwrap_or(tail).trim().to_string();
                    if tail.contains("ACTIVE") {
                        p.references.push(entry.clone());
                    }
                    if let Some(i) = index {
                        let ts = number_after(tail, "reference_ts").unwrap_or(0) as u64;
                        p.dpb.insert(i, (ts, entry));
                    }
                }
                if let Some(list) = event.strip_prefix("v4l2_h264_ref_pic_list") {
                    // "[i]: fields FRAME_REF index N"
                    let fields = tail.split("fields ").nth(1).and_then(|f| f.split(' ').next()).unwrap_or("");
                    if let (Ok(list), Some(i), Some(target)) = (list.parse(), index, number_after(tail, "index")) {
                        p.list_entries.push((list, i, fields.to_string(), target));
                    }
                }
                continue;
            }
            let line = line.trim();
            let skipped =
                event.starts_with("v4l2_h264_") || (view == View::Pictures && PER_SLICE.contains(&event.as_str()));
            if line.is_empty() || skipped {
                continue;
            }
            let Some(p) = pictures.last_mut() else { continue };
            line_no += 1;
            let (key, value) = match line.split_once(' ') {
                Some((k, v)) if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "_[].".contains(c)) => {
                    (k.to_string(), v.to_string())
                }
                _ => (format!("line{line_no}"), line.to_string()),
            };
            p.fields.insert(format!("{event}.{key}"), value);
        }
        for p in &mut pictures {
            p.references.sort();
            if view == View::Slices {
                let field = |k: &str| p.fields.get(&format!("v4l2_ctrl_h264_slice_params.{k}")).cloned();
                let kind = field("slice_type").unwrap_or_default();
                let active = |k: &str| field(k).and_then(|v| v.parse::<usize>().ok()).map_or(0, |n| n + 1);
                let used = [
                    if kind == "P" || kind == "B" || kind == "SP" { active("num_ref_idx_l0_active_minus1") } else { 0 },
                    if kind == "B" { active("num_ref_idx_l1_active_minus1") } else { 0 },
                ];
                for (list, i, fields, target) in &p.list_entries {
                    if *i < used[*list] {
                        let named = match p.dpb.get(target) {
                            None => "no DPB entry",
                            // A frame_num gap's stand-ins have no buffer, and share a timestamp
                            // (each implementation its own). GStreamer finds list entries by
                            // timestamp, so which of them an entry names is not compared.
                            Some((ts, _))
                                if p.dpb.values().filter(|(t, e)| t == ts && e.contains("VALID")).count() > 1 =>
                            {
                                "a frame_num gap stand-in"
                            }
                            Some((_, e)) => e.as_str(),
                        };
                        p.lists.push(format!("L{list}[{i}] {fields} -> {named}"));
                    }
                }
            }
            p.dpb.clear();
            p.list_entries.clear();
        }
        if view == View::Pictures {
            // Slice-based requests of one picture carry the same picture-level controls: one
            // record per picture, whatever its slice count.
            pictures.dedup();
        }
        pictures
    }

    /// Differences between two traces, record by record.
    pub fn compare(theirs: &[Picture], ours: &[Picture]) -> Vec<String> {
        let mut mismatches = Vec::new();
        for (i, (g, o)) in theirs.iter().zip(ours).enumerate() {
            for (k, gv) in &g.fields {
                match o.fields.get(k) {
                    Some(ov) if ov == gv => {}
                    other => mismatches.push(format!("record {i} {k}: gstreamer {gv:?}, vitrine {other:?}")),
                }
            }
            for k in o.fields.keys().filter(|k| !g.fields.contains_key(*k)) {
                mismatches.push(format!("record {i} {k}: only vitrine sent it"));
            }
            if g.references != o.references {
                mismatches
                    .push(format!("record {i} references: gstreamer {:?}, vitrine {:?}", g.references, o.references));
            }
            if g.lists != o.lists {
                mismatches.push(format!("record {i} reference lists: gstreamer {:?}, vitrine {:?}", g.lists, o.lists));
            }
        }
        mismatches
    }
}

/// For each test stream, the controls vitrine sends to visl match what GStreamer's
/// v4l2slh264dec sends, field by field: picture by picture in vitrine's frame-based mode, and
/// slice by slice (slice parameters, reference lists, prediction weights too) in its slice-based
/// mode, which is GStreamer's choice on visl. See `visl_trace` for what is not compared and why.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn controls_sent_to_visl_match_gstreamer_field_by_field() {
    use h264_reader::nal::slice::{MemoryManagementControlOperation as Mmco, ModificationOfPicNums as Modify};
    use visl_trace::View;
    assert_in_vm();
    // What x264 cannot make, rewritten from its baseline stream (see `rewrite`): POC type 1 with
    // long-term references, and frame_num gaps.
    let rewritten = tempfile::tempdir().unwrap();
    let long_term = rewritten.path().join("diff-longterm.h264");
    rewrite::rewrite(
        &clip("diff-baseline.mp4"),
        &long_term,
        &rewrite::Edit {
            poc_type_one: true,
            marking: vec![
                // Frame 5 becomes long-term frame 0 (frame 2 goes to keep three references).
                (
                    5,
                    vec![
                        Mmco::ShortTermUnusedForRef { difference_of_pic_nums_minus1: 2 },
                        Mmco::MaxUsedLongTermFrameRef { max_long_term_frame_idx_plus1: 1 },
                        Mmco::CurrentUsedForLongTerm { long_term_frame_idx: 0 },
                    ],
                ),
                (8, vec![Mmco::ShortTermUnusedForRef { difference_of_pic_nums_minus1: 0 }]),
                (14, vec![Mmco::LongTermUnusedForRef { long_term_pic_num: 0 }]),
            ],
            list0: vec![(7, vec![Modify::LongTermRef(0)]), (9, vec![Modify::LongTermRef(0), Modify::Subtract(0)])],
            ..Default::default()
        },
    );
    let gaps = rewritten.path().join("diff-gaps.h264");
    rewrite::rewrite(&clip("diff-baseline.mp4"), &gaps, &rewrite::Edit { drop: vec![10, 11], ..Default::default() });
    for path in [&long_term, &gaps] {
        std::fs::copy(path, common::artifacts().join(path.file_name().unwrap())).unwrap();
        // Valid H.264 to a third decoder: FFmpeg's decodes them without a complaint.
        let out = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-xerror", "-i"])
            .arg(path)
            .args(["-f", "null", "-"])
            .output()
            .expect("ffmpeg");
        let complaints = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && complaints.trim().is_empty(), "{}: {complaints}", path.display());
    }

    let mut report = Vec::new();
    let mut failures = Vec::new();
    let clips = ["diff-main.mp4", "diff-pyramid.mp4", "diff-baseline.mp4", "diff-slices.mp4", "diff-fade.mp4"];
    for path in clips.iter().map(|n| clip(n)).chain([long_term.clone(), gaps.clone()]) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let frames = frame_count(&path) as usize;

        visl_trace::start();
        let demux: &[&str] = if name.ends_with(".mp4") { &["!", "qtdemux"] } else { &[] };
        let status = std::process::Command::new("gst-launch-1.0")
            .args(["-q", "filesrc", &format!("location={}", path.display())])
            .args(demux)
            .args(["!", "h264parse", "!", "v4l2slh264dec", "!", "fakesink", "sync=false"])
            .status()
            .expect("gst-launch-1.0");
        assert!(status.success(), "{name}: GStreamer failed to decode on visl");
        let gst_trace = visl_trace::take();

        for (mode, view) in [("frame", View::Pictures), ("slice", View::Slices)] {
            let gst = visl_trace::parse(&gst_trace, view);
            visl_trace::start();
            let mut vitrine = Vitrine::launch(Launch {
                name: "vm-differential",
                args: vec![
                    "--backend".into(),
                    "headless".into(),
                    "--output".into(),
                    "320x240@60".into(),
                    "--play".into(),
                    path.display().to_string(),
                    "--exit-when-done".into(),
                ],
                config: BG_CONFIG.into(),
                env: vec![("VITRINE_H264_DECODE_MODE".into(), mode.into())],
                runtime: None,
                wrapper: Vec::new(),
            });
            let status = vitrine.wait_exit(Duration::from_secs(60));
            let log = vitrine.log();
            assert!(status.success(), "{name} ({mode}-based): {status:?}\n{log}");
            assert!(log.contains(&format!("mode={}", if mode == "frame" { "Frame" } else { "Slice" })), "{log}");
            let ours = visl_trace::parse(&visl_trace::take(), view);

            if view == View::Pictures {
                assert_eq!(gst.len(), frames, "{name}: GStreamer's pictures in the trace");
            }
            assert!(gst.len() >= frames, "{name}: {} records for {frames} pictures", gst.len());
            assert_eq!(ours.len(), gst.len(), "{name} ({mode}-based): vitrine's records in the trace");
            let mismatches = visl_trace::compare(&gst, &ours);
            let fields: usize = gst.iter().map(|p| p.fields.len() + p.references.len() + p.lists.len()).sum();
            assert!(fields >= gst.len() * 40, "{name}: only {fields} fields traced: is visl tracing on?");
            let lists: usize = gst.iter().map(|p| p.lists.len()).sum();
            report.push(format!(
                "{name}, {mode}-based: {frames} pictures, {} requests, {fields} fields compared ({lists} reference list entries), {} differ",
                gst.len(),
                mismatches.len()
            ));
            if !mismatches.is_empty() {
                failures.push(format!(
                    "{name} ({mode}-based):\n{}",
                    mismatches.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
                ));
            }
        }
    }
    std::fs::write(common::artifacts().join("differential.txt"), report.join("\n") + "\n").unwrap();
    assert!(failures.is_empty(), "{}\n\n{}", report.join("\n"), failures.join("\n\n"));
}

/// The 1080p clip again, under strace: the ioctls vitrine makes per picture shown, by family.
/// The counts go to the artifacts (`ioctls.txt`); the bounds only catch a per-frame regression
/// (a poll loop, a framebuffer per frame), they are not the measurement.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn ioctls_per_picture_on_the_zero_copy_path() {
    assert_in_vm();
    common::require("strace");
    let path = clip("1080p-main.mp4");
    let frames = frame_count(&path);
    let trace = common::artifacts().join("vm-ioctls.strace");
    let stats_path = common::artifacts().join("vm-ioctls.stats.json");
    let mut vitrine = Vitrine::launch(Launch {
        name: "vm-ioctls",
        args: play_once_args(&[&path], &stats_path),
        config: format!("{BG_CONFIG}[drm]\nmode = \"1920x1080@60\"\n"),
        env: Vec::new(),
        runtime: None,
        wrapper: vec![
            "strace".into(),
            "-f".into(),
            "-qq".into(),
            // Only ioctls stop the traced threads; the demuxer's reads and the event loop's
            // polls run untraced, so the tracing costs less of the timing it is measuring.
            "--seccomp-bpf".into(),
            "-e".into(),
            "trace=ioctl".into(),
            "-o".into(),
            trace.display().to_string(),
        ],
    });
    let status = vitrine.wait_exit(Duration::from_secs(180));
    assert!(status.success(), "{status:?}\n{}", vitrine.log());
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats_path).unwrap()).unwrap();
    // Every picture is decoded whatever the timing; how many are shown depends on how far
    // strace under TCG slows the pipeline behind the clip's clock (late pictures are dropped, as
    // on a real screen). The counts below are per decoded and per shown picture, so a floor of
    // ten shown is all they need.
    assert_eq!(stats["frames_decoded"].as_u64(), Some(frames), "{stats}");
    assert_eq!(stats["decode_errors"].as_u64(), Some(0), "{stats}");
    let shown = stats["frames_presented"].as_u64().unwrap();
    assert!(shown >= 10, "{stats}");
    let text = std::fs::read_to_string(&trace).unwrap();
    let count = |prefixes: &[&str]| text.lines().filter(|l| prefixes.iter().any(|p| l.contains(p))).count() as f64;
    let v4l2 = count(&["VIDIOC_", "MEDIA_REQUEST_IOC", "MEDIA_IOC_"]);
    let drm = count(&["DRM_IOCTL_"]);
    // The frame path (the rest is start-up: resources, properties, master, dumb buffers).
    let drm_frames = count(&[
        "DRM_IOCTL_MODE_ATOMIC",
        "DRM_IOCTL_MODE_ADDFB2",
        "DRM_IOCTL_PRIME_FD_TO_HANDLE",
        "DRM_IOCTL_GEM_CLOSE",
    ]);
    let commits = count(&["DRM_IOCTL_MODE_ATOMIC"]);
    let fbs = count(&["DRM_IOCTL_MODE_ADDFB2"]);
    let report = format!(
        "{frames} pictures, {shown} shown\nV4L2 ioctls: {v4l2} ({:.1} per picture, start-up included)\nDRM ioctls: {drm} in all; frame path {drm_frames} ({:.2} per picture shown): {commits} atomic commits, {fbs} ADDFB2\ncpu_ms_per_frame (under strace): {}\n",
        v4l2 / frames as f64,
        drm_frames / shown as f64,
        stats["cpu_ms_per_frame"]
    );
    std::fs::write(common::artifacts().join("ioctls.txt"), &report).unwrap();
    assert!(v4l2 / (frames as f64) < 25.0, "{report}");
    assert!(drm_frames / (shown as f64) < 3.0, "{report}");
    assert!(fbs <= 12.0, "framebuffers are made once per buffer: {report}");
}
