//! The protocols kiosk integrators plug tools into, with Debian's own clients: the primary
//! selection (wl-clipboard), a virtual keyboard (wtype typing into foot), and who may see the
//! privileged globals (wayland-info).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Launch, Vitrine, BG_CONFIG};
use vitrine::wayland::privileged::PROTOCOLS;

const SECS: fn(u64) -> Duration = Duration::from_secs;

const VIRTUAL_KEYBOARD: &str = "zwp_virtual_keyboard_manager_v1";

/// The interfaces wayland-info lists for a client of `vitrine`.
fn interfaces(vitrine: &Vitrine) -> String {
    let (status, out, err) = vitrine.run_client("wayland-info", &[], SECS(30));
    assert!(status.success(), "wayland-info failed: {err}");
    out
}

fn privileged<'a>(name: &'a str, programs: &[&str]) -> Launch<'a> {
    let list: Vec<String> = programs.iter().map(|p| format!("{:?}", common::which(p))).collect();
    let mut launch = Launch::headless(name);
    launch.config = format!("{BG_CONFIG}[security]\nprivileged_clients = [{}]\n", list.join(", "));
    launch
}

#[test]
fn primary_selection_round_trip_with_wl_copy_and_wl_paste() {
    let vitrine = Vitrine::headless("primary-selection");
    let text = format!("vitrine primary {}", std::process::id());
    let (status, _, err) = vitrine.run_client("wl-copy", &["--primary", &text], SECS(20));
    assert!(status.success(), "wl-copy --primary failed: {err}");
    let (status, out, err) = vitrine.run_client("wl-paste", &["--primary", "--no-newline"], SECS(20));
    assert!(status.success(), "wl-paste --primary failed: {err}");
    assert_eq!(out, text);
    // The primary selection is its own: the clipboard did not get it.
    let (_, clipboard, _) = vitrine.run_client("wl-paste", &["--no-newline"], SECS(20));
    assert_ne!(clipboard, text, "the clipboard holds the primary selection");
    let (status, _, _) = vitrine.run_client("wl-copy", &["--primary", "--clear"], SECS(20));
    assert!(status.success());
}

/// Without `privileged_clients`, a client does not see the virtual keyboard; listed by its
/// executable, it does; the kiosk app always does.
#[test]
fn only_privileged_clients_see_the_privileged_globals() {
    let plain = Vitrine::headless("privileged-none");
    let seen = interfaces(&plain);
    assert!(seen.contains("wl_compositor"), "{seen}");
    assert!(seen.contains("zwp_primary_selection_device_manager_v1"), "{seen}");
    assert!(seen.contains("zwlr_layer_shell_v1"), "{seen}");
    for protocol in PROTOCOLS {
        assert!(!seen.contains(protocol), "an unlisted client sees {protocol}:\n{seen}");
    }

    let listed = Vitrine::launch(privileged("privileged-listed", &["wayland-info"]));
    let seen = interfaces(&listed);
    for protocol in PROTOCOLS {
        assert!(seen.contains(protocol), "a listed client does not see {protocol}:\n{seen}");
    }
    assert!(listed.log().contains("privileged client"), "{}", listed.log());

    // The kiosk app: a shell that starts wayland-info (a child in the app's process group).
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("info");
    let mut launch = Launch::headless("privileged-app");
    let script = format!("wayland-info > {}; sleep 60", out.display());
    launch.args.extend(["--".into(), "sh".into(), "-c".into(), script]);
    let app = Vitrine::launch(launch);
    assert!(common::wait_until(SECS(30), || common::read(&out).contains("wl_seat")), "{}", app.log());
    for protocol in PROTOCOLS {
        assert!(common::read(&out).contains(protocol), "the kiosk app does not see {protocol}");
    }
    // A client beside the app is not in its group: not privileged.
    assert!(!interfaces(&app).contains(VIRTUAL_KEYBOARD));
}

/// `wtype` types into foot, the kiosk app's window, when the config allows it; refused
/// otherwise, and nothing is typed.
#[test]
fn wtype_types_into_foot_only_when_allowed() {
    for allowed in [false, true] {
        let name = if allowed { "wtype-allowed" } else { "wtype-refused" };
        let launch = if allowed { privileged(name, &["wtype"]) } else { Launch::headless(name) };
        let mut vitrine = Vitrine::launch(launch);
        let dir = tempfile::tempdir().unwrap();
        let typed = dir.path().join("typed");
        let script = format!("read line; printf %s \"$line\" > {}; sleep 60", typed.display());
        vitrine.spawn_client("foot", &["-e", "sh", "-c", &script]);
        vitrine.wait_for_pixels("foot", SECS(30), |img| common::covered(img) > 0.99);
        let (status, _, err) = vitrine.run_client("wtype", &["vitrine-typed", "-k", "Return"], SECS(30));
        if !allowed {
            assert!(!status.success(), "wtype ran without the virtual keyboard allowed");
            assert!(err.contains("virtual keyboard"), "{err}");
            std::thread::sleep(SECS(1));
            assert!(!Path::new(&typed).exists(), "text arrived: {}", common::read(&typed));
            continue;
        }
        assert!(status.success(), "wtype failed: {err}");
        let arrived = common::wait_until(SECS(20), || common::read(&typed) == "vitrine-typed");
        assert!(arrived, "foot read {:?}; log:\n{}", common::read(&typed), vitrine.log());
        assert!(vitrine.is_running());
    }
}

/// mako (wlr-layer-shell, overlay layer) shows a `notify-send` notification above the kiosk app,
/// in the output's top-right corner where mako anchors it.
#[test]
fn mako_shows_a_notification_above_the_kiosk_app() {
    common::require("mako");
    common::require("notify-send");
    let mut vitrine = Vitrine::headless("mako");
    vitrine.spawn_client("foot", &["-e", "sh", "-c", "sleep 120"]);
    vitrine.wait_for_pixels("foot", SECS(30), |img| common::covered(img) > 0.99);
    let config = tempfile::tempdir().unwrap();
    let script = "mako & sleep 2; notify-send -t 0 'vitrine notice'; sleep 120";
    let mut notifier = vitrine.client_command("dbus-run-session", &["--", "sh", "-c", script]);
    notifier.env("XDG_CONFIG_HOME", config.path()).stdout(std::process::Stdio::null());
    // Its own process group: the session's dbus-daemon goes with it (killed alone,
    // dbus-run-session leaves the daemon running, holding the test's output open).
    std::os::unix::process::CommandExt::process_group(&mut notifier, 0);
    let mut notifier = notifier.spawn().expect("dbus-run-session");
    // mako's notification: its default background colour (#285577), in a box 300 wide.
    const MAKO: [u8; 3] = [0x28, 0x55, 0x77];
    let image = vitrine.wait_for_pixels("notification", SECS(40), |img| common::count_near(img, MAKO, 4) > 5000);
    let group = format!("-{}", notifier.id());
    let _ = std::process::Command::new("kill").args(["--", &group]).status();
    let _ = notifier.wait();
    let (mut left, mut bottom) = (u32::MAX, 0);
    for y in 0..image.height {
        for x in 0..image.width {
            let p = image.pixel(x, y);
            if p[..3].iter().zip(MAKO).all(|(a, b)| a.abs_diff(b) <= 4) {
                left = left.min(x);
                bottom = bottom.max(y);
            }
        }
    }
    assert!(left >= image.width / 2, "the notification is not in the right half (from x={left})");
    assert!(bottom < image.height / 2, "the notification is not in the top half (to y={bottom})");
}

/// `grim` (wlr-screencopy), allowed by the config, takes the same picture as
/// `vitrine msg screenshot`, pixel for pixel; a region of it too.
#[test]
fn grim_matches_the_screenshot_pixel_for_pixel() {
    let grim = common::which("grim");
    let dir = tempfile::tempdir().unwrap();
    // A still, asymmetric scene: a red square top-left over the background colour.
    let marker = dir.path().join("marker.png");
    let mut pixels = vec![0u8; 640 * 480 * 4];
    for y in 0..100 {
        for x in 0..150 {
            pixels[(y * 640 + x) * 4..][..4].copy_from_slice(&[255, 0, 0, 255]);
        }
    }
    vitrine::image::RgbaImage::from_raw(640, 480, pixels).unwrap().save_png(&marker).unwrap();
    let mut launch = Launch::headless("grim");
    launch.config =
        format!("{BG_CONFIG}image = {:?}\n[security]\nprivileged_clients = [{grim:?}]\n", marker.display().to_string());
    let vitrine = Vitrine::launch(launch);
    let own = vitrine.screenshot("grim-own");
    let shot = dir.path().join("grim.png");
    let (status, _, err) = vitrine.run_client("grim", &[&shot.display().to_string()], SECS(30));
    assert!(status.success(), "grim failed: {err}");
    let image = vitrine::image::RgbaImage::load_png(&shot).expect("grim's PNG");
    assert_eq!((image.width, image.height), (own.width, own.height));
    let differing = (0..own.height)
        .flat_map(|y| (0..own.width).map(move |x| (x, y)))
        .filter(|&(x, y)| image.pixel(x, y)[..3] != own.pixel(x, y)[..3])
        .count();
    assert_eq!(differing, 0, "grim's picture differs from the screenshot");
    assert_eq!(image.pixel(10, 10)[..3], [255, 0, 0]);
    // A region: 100x50 from (100, 80), across the square's corner.
    let part = dir.path().join("part.png");
    let (status, _, err) = vitrine.run_client("grim", &["-g", "100,80 100x50", &part.display().to_string()], SECS(30));
    assert!(status.success(), "grim -g failed: {err}");
    let part = vitrine::image::RgbaImage::load_png(&part).unwrap();
    assert_eq!((part.width, part.height), (100, 50));
    assert_eq!(part.pixel(10, 10)[..3], [255, 0, 0], "inside the square");
    assert_eq!(part.pixel(90, 40)[..3], own.pixel(190, 120)[..3], "outside it");

    // Not listed: grim does not see the global and fails.
    let plain = Vitrine::headless("grim-refused");
    let (status, _, err) = plain.run_client("grim", &[&dir.path().join("no.png").display().to_string()], SECS(30));
    assert!(!status.success(), "grim worked without being allowed");
    assert!(err.contains("screencopy"), "{err}");
}

/// An input method (this test, allowed by the config) writes into a GTK entry: focused, the
/// entry asks for text through text-input v3, the input method is activated, and the string it
/// commits arrives in the entry; its candidate popup is shown below the entry's text cursor.
#[test]
fn an_input_method_types_into_a_gtk_entry() {
    use wayland_client::globals::registry_queue_init;
    use wayland_client::protocol::wl_seat::WlSeat;
    use wayland_protocols_misc::zwp_input_method_v2::client::zwp_input_method_manager_v2::ZwpInputMethodManagerV2;

    common::require("/usr/bin/python3");
    let exe = std::fs::read_link("/proc/self/exe").unwrap().display().to_string();
    let mut launch = Launch::headless("input-method");
    launch.config = format!("{BG_CONFIG}[security]\nprivileged_clients = [{exe:?}]\n");
    let vitrine = Vitrine::launch(launch);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("entry.py");
    std::fs::write(&script, common::GTK_ENTRY).unwrap();
    let out = dir.path().join("entry.out");
    let mut entry = vitrine.client_command("/usr/bin/python3", &[&script.display().to_string()]);
    entry.env("GTK_IM_MODULE", "wayland").stdout(std::fs::File::create(&out).unwrap());
    let mut entry = entry.spawn().expect("/usr/bin/python3");
    assert!(common::wait_until(SECS(30), || common::read(&out).contains("ready")), "the GTK entry did not start");

    let conn = vitrine.wayland();
    let (globals, mut queue) = registry_queue_init::<Ime>(&conn).unwrap();
    let qh = queue.handle();
    let seat: WlSeat = globals.bind(&qh, 1..=7, ()).unwrap();
    let manager: ZwpInputMethodManagerV2 = globals.bind(&qh, 1..=1, ()).expect("zwp_input_method_manager_v2");
    let method = manager.get_input_method(&seat, &qh, ());
    let mut ime = Ime::default();
    let activated = common::wait_until(SECS(30), || {
        queue.roundtrip(&mut ime).unwrap();
        ime.active
    });
    assert!(activated, "the input method was never activated; log:\n{}", vitrine.log());
    method.commit_string("vitrine-ime".into());
    method.commit(ime.done);
    queue.roundtrip(&mut ime).unwrap();
    let typed = common::wait_until(SECS(20), || common::read(&out).contains("text=vitrine-ime"));
    assert!(typed, "the entry has: {}", common::read(&out));

    // The input method's candidate popup: shown below the entry's text cursor.
    use std::io::Write;
    use wayland_client::protocol::{wl_compositor::WlCompositor, wl_shm};
    let compositor: WlCompositor = globals.bind(&qh, 1..=4, ()).unwrap();
    let shm: wl_shm::WlShm = globals.bind(&qh, 1..=1, ()).unwrap();
    let (w, h) = (120i32, 40i32);
    let colour = [0x20u8, 0x60, 0xe0];
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&[colour[2], colour[1], colour[0], 0xff].repeat((w * h) as usize)).unwrap();
    let pool = shm.create_pool(std::os::fd::AsFd::as_fd(&file), w * h * 4, &qh, ());
    let buffer = pool.create_buffer(0, w, h, w * 4, wl_shm::Format::Xrgb8888, &qh, ());
    let surface = compositor.create_surface(&qh, ());
    let _popup = method.get_input_popup_surface(&surface, &qh, ());
    surface.attach(Some(&buffer), 0, 0);
    surface.damage_buffer(0, 0, w, h);
    surface.commit();
    let rect = common::wait_until(SECS(20), || {
        queue.roundtrip(&mut ime).unwrap();
        ime.cursor.is_some_and(|r| r.3 > 0)
    });
    assert!(rect, "no text cursor rectangle for the popup: {:?}", ime.cursor);
    let (cx, cy, _, ch) = ime.cursor.unwrap();
    let image = vitrine
        .wait_for_pixels("ime-popup", SECS(20), |img| common::count_near(img, colour, 4) >= (w * h) as usize * 9 / 10);
    let at = (0..image.height)
        .flat_map(|y| (0..image.width).map(move |x| (x, y)))
        .find(|&(x, y)| image.pixel(x, y)[..3] == colour)
        .unwrap();
    // The kiosk app is fullscreen at the origin: surface coordinates are the output's. The entry
    // is at the top: there is room below its text cursor.
    assert!(cy + ch + h <= 480, "the text cursor ({cx}, {cy}, h {ch}) leaves no room below");
    assert_eq!(at, (cx.max(0) as u32, (cy + ch) as u32), "the popup is not below the text cursor ({cx}, {cy}, h {ch})");
    let _ = entry.kill();
    let _ = entry.wait();
}

/// The input method's side of the protocol: activated once a `done` says so; where its popup's
/// entry has its text cursor.
#[derive(Default)]
struct Ime {
    pending: bool,
    active: bool,
    done: u32,
    cursor: Option<(i32, i32, i32, i32)>,
}

impl
    wayland_client::Dispatch<
        wayland_protocols_misc::zwp_input_method_v2::client::zwp_input_popup_surface_v2::ZwpInputPopupSurfaceV2,
        (),
    > for Ime
{
    fn event(
        state: &mut Self,
        _: &wayland_protocols_misc::zwp_input_method_v2::client::zwp_input_popup_surface_v2::ZwpInputPopupSurfaceV2,
        event: wayland_protocols_misc::zwp_input_method_v2::client::zwp_input_popup_surface_v2::Event,
        _: &(),
        _: &wayland_client::Connection,
        _: &wayland_client::QueueHandle<Self>,
    ) {
        use wayland_protocols_misc::zwp_input_method_v2::client::zwp_input_popup_surface_v2::Event;
        if let Event::TextInputRectangle { x, y, width, height } = event {
            state.cursor = Some((x, y, width, height));
        }
    }
}

wayland_client::delegate_noop!(Ime: wayland_client::protocol::wl_compositor::WlCompositor);
wayland_client::delegate_noop!(Ime: ignore wayland_client::protocol::wl_surface::WlSurface);
wayland_client::delegate_noop!(Ime: ignore wayland_client::protocol::wl_shm::WlShm);
wayland_client::delegate_noop!(Ime: wayland_client::protocol::wl_shm_pool::WlShmPool);
wayland_client::delegate_noop!(Ime: ignore wayland_client::protocol::wl_buffer::WlBuffer);

impl
    wayland_client::Dispatch<
        wayland_protocols_misc::zwp_input_method_v2::client::zwp_input_method_v2::ZwpInputMethodV2,
        (),
    > for Ime
{
    fn event(
        state: &mut Self,
        _: &wayland_protocols_misc::zwp_input_method_v2::client::zwp_input_method_v2::ZwpInputMethodV2,
        event: wayland_protocols_misc::zwp_input_method_v2::client::zwp_input_method_v2::Event,
        _: &(),
        _: &wayland_client::Connection,
        _: &wayland_client::QueueHandle<Self>,
    ) {
        use wayland_protocols_misc::zwp_input_method_v2::client::zwp_input_method_v2::Event;
        match event {
            Event::Activate => state.pending = true,
            Event::Deactivate => state.pending = false,
            Event::Done => {
                state.done += 1;
                state.active = state.pending;
            }
            Event::Unavailable => panic!("another input method is bound"),
            _ => {}
        }
    }
}

impl
    wayland_client::Dispatch<
        wayland_client::protocol::wl_registry::WlRegistry,
        wayland_client::globals::GlobalListContents,
    > for Ime
{
    fn event(
        _: &mut Self,
        _: &wayland_client::protocol::wl_registry::WlRegistry,
        _: wayland_client::protocol::wl_registry::Event,
        _: &wayland_client::globals::GlobalListContents,
        _: &wayland_client::Connection,
        _: &wayland_client::QueueHandle<Self>,
    ) {
    }
}

wayland_client::delegate_noop!(Ime: ignore wayland_client::protocol::wl_seat::WlSeat);
wayland_client::delegate_noop!(Ime: wayland_protocols_misc::zwp_input_method_v2::client::zwp_input_method_manager_v2::ZwpInputMethodManagerV2);

/// A window that prints where it is clicked (the wayvnc test's kiosk app).
const GTK_CLICKS: &str = r#"
import gi
gi.require_version("Gtk", "3.0")
from gi.repository import Gtk, Gdk
win = Gtk.Window(title="clicks")
win.add_events(Gdk.EventMask.BUTTON_PRESS_MASK)
win.connect("button-press-event", lambda w, e: print("click %d %d" % (e.x, e.y), flush=True))
win.connect("destroy", Gtk.main_quit)
win.show_all()
print("ready", flush=True)
Gtk.main()
"#;

/// vncdotool, from the venv `scripts/deps test` installs it into.
fn vncdotool() -> std::path::PathBuf {
    let venv = std::env::var_os("VITRINE_VENV").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/vitrine/venv")
    });
    let path = venv.join("bin/vncdotool");
    assert!(path.exists(), "{} is missing: run scripts/deps test", path.display());
    path
}

/// `wayvnc` (allowed by the config: screencopy, virtual pointer and keyboard) serves the screen:
/// a VNC client's capture is what `vitrine msg screenshot` shows, and its click reaches the
/// kiosk app's window where it clicked.
#[test]
fn wayvnc_shows_the_screen_and_takes_a_click() {
    let vncdo = vncdotool();
    let mut vitrine = Vitrine::launch(privileged("wayvnc", &["wayvnc"]));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("clicks.py");
    std::fs::write(&script, GTK_CLICKS).unwrap();
    let out = dir.path().join("clicks.out");
    let mut app = vitrine.client_command("/usr/bin/python3", &[&script.display().to_string()]);
    app.stdout(std::fs::File::create(&out).unwrap());
    let mut app = app.spawn().expect("/usr/bin/python3");
    assert!(common::wait_until(SECS(30), || common::read(&out).contains("ready")), "the window did not start");
    vitrine.wait_for_pixels("window", SECS(30), |img| common::covered(img) > 0.99);

    let port = 20000 + std::process::id() % 20000;
    vitrine.spawn_client("wayvnc", &["127.0.0.1", &port.to_string()]);
    let listening = common::wait_until(SECS(30), || std::net::TcpStream::connect(("127.0.0.1", port as u16)).is_ok());
    assert!(listening, "wayvnc is not listening; log:\n{}", vitrine.log());
    let server = format!("127.0.0.1::{port}");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&vncdo).args(["-s", &server]).args(args).output().expect("vncdotool");
        assert!(out.status.success(), "vncdotool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let shot = dir.path().join("vnc.png");
    run(&["capture", &shot.display().to_string()]);
    let own = vitrine.screenshot("wayvnc-own");
    let seen = vitrine::image::RgbaImage::load_png(&shot).expect("vncdotool's PNG");
    assert_eq!((seen.width, seen.height), (own.width, own.height));
    let differing = (0..own.height)
        .flat_map(|y| (0..own.width).map(move |x| (x, y)))
        .filter(|&(x, y)| seen.pixel(x, y)[..3].iter().zip(&own.pixel(x, y)[..3]).any(|(a, b)| a.abs_diff(*b) > 4))
        .count();
    assert_eq!(
        differing,
        0,
        "the VNC picture differs from the screenshot in {differing} pixels: at (10, 10) {:?}, not {:?}",
        seen.pixel(10, 10),
        own.pixel(10, 10)
    );

    run(&["move", "320", "120", "click", "1"]);
    let clicked = common::wait_until(SECS(20), || common::read(&out).contains("click 320 120"));
    let _ = app.kill();
    let _ = app.wait();
    assert!(clicked, "the window got: {}", common::read(&out));
}

/// `wvkbd` (an on-screen keyboard: a layer surface at the bottom with an exclusive zone, and a
/// virtual keyboard) with foot as the app: a tap on a key (a virtual pointer's click, from this
/// test) types into foot.
#[test]
fn wvkbd_taps_type_into_foot() {
    use wayland_client::protocol::wl_pointer::ButtonState;
    let exe = std::fs::read_link("/proc/self/exe").unwrap().display().to_string();
    let wvkbd = common::which("wvkbd-mobintl");
    let mut launch = Launch::headless("wvkbd");
    launch.config = format!("{BG_CONFIG}[security]\nprivileged_clients = [{exe:?}, {wvkbd:?}]\n");
    let mut vitrine = Vitrine::launch(launch);
    let dir = tempfile::tempdir().unwrap();
    let typed = dir.path().join("typed");
    // One character, read raw: any key typed ends it.
    let script = format!("stty raw -echo; dd bs=1 count=1 of={} 2>/dev/null; sleep 60", typed.display());
    vitrine.spawn_client("foot", &["-e", "sh", "-c", &script]);
    vitrine.wait_for_pixels("foot", SECS(30), |img| common::covered(img) > 0.99);
    let before = vitrine.screenshot("wvkbd-before");
    vitrine.spawn_client("wvkbd-mobintl", &[]);
    // The keyboard is drawn over the bottom of the output (foot gives it the room).
    let drawn = common::wait_until(SECS(30), || {
        let now = vitrine.screenshot("wvkbd");
        (now.height - 40..now.height).any(|y| now.pixel(320, y) != before.pixel(320, y))
    });
    assert!(drawn, "wvkbd did not show; log:\n{}", vitrine.log());

    let conn = vitrine.wayland();
    let (g, mut queue, mut client) = common::wl::setup(&conn);
    let pointer =
        g.virtual_pointer.as_ref().expect("virtual pointer").create_virtual_pointer(None, &queue.handle(), ());
    // Tap along the keyboard's middle rows until a key types (a modifier types nothing).
    let mut tapped = 0;
    'rows: for y in [420u32, 400, 440, 380] {
        for x in (40..640u32).step_by(60) {
            pointer.motion_absolute(0, x, y, 640, 480);
            pointer.frame();
            pointer.button(0, 0x110, ButtonState::Pressed);
            pointer.frame();
            pointer.button(0, 0x110, ButtonState::Released);
            pointer.frame();
            queue.roundtrip(&mut client).unwrap();
            tapped += 1;
            if common::wait_until(SECS(2), || !common::read(&typed).is_empty()) {
                break 'rows;
            }
        }
    }
    let text = common::read(&typed);
    assert!(
        text.chars().count() == 1 && text.chars().all(|c| !c.is_control()),
        "after {tapped} taps foot read {text:?}; log:\n{}",
        vitrine.log()
    );
}

/// The outputs as `msg outputs` reports them, by name.
fn output_named(vitrine: &Vitrine, name: &str) -> serde_json::Value {
    let data = vitrine.ok(&vitrine::control::protocol::Request::Outputs);
    let outputs = data["outputs"].as_array().cloned().unwrap_or_default();
    outputs.into_iter().find(|o| o["name"] == name).unwrap_or_else(|| panic!("no output {name} in {data}"))
}

/// wlr-randr lists the heads and changes them (a custom mode and a quarter turn, one output
/// off); the kiosk app's window follows; what cannot be done is refused whole; kanshi applies its
/// profile when it starts; a client not allowed does not get to change anything.
#[test]
fn wlr_randr_and_kanshi_set_modes_rotation_and_which_outputs_are_on() {
    let mut launch = privileged("output-management", &["wlr-randr", "kanshi"]);
    launch.args =
        ["--backend", "headless", "--output", "1280x720@60", "--output", "640x480@60"].map(String::from).to_vec();
    let mut vitrine = Vitrine::launch(launch);
    vitrine.spawn_client("foot", &["-e", "sleep", "120"]);
    let sized = |v: &Vitrine, size: [i64; 2]| {
        let data = v.clients_json();
        data["clients"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["surfaces"].as_array().cloned().unwrap_or_default())
            .any(|s| s["output"] == "HEADLESS-1" && s["size"] == serde_json::json!(size))
    };
    assert!(common::wait_until(SECS(30), || sized(&vitrine, [1280, 720])), "{}", vitrine.clients_json());

    let randr = |v: &Vitrine, args: &[&str]| v.run_client("wlr-randr", args, SECS(30));
    let (status, listed, err) = randr(&vitrine, &[]);
    assert!(status.success(), "wlr-randr failed: {err}");
    assert!(listed.contains("HEADLESS-1") && listed.contains("HEADLESS-2"), "{listed}");
    assert!(listed.contains("1280x720 px, 60.000000 Hz (preferred, current)"), "{listed}");

    // A custom mode, turned a quarter; the second output off.
    let (status, _, err) = randr(
        &vitrine,
        &[
            "--output",
            "HEADLESS-1",
            "--custom-mode",
            "1024x768",
            "--transform",
            "90",
            "--output",
            "HEADLESS-2",
            "--off",
        ],
    );
    assert!(status.success(), "wlr-randr could not set the mode: {err}\n{}", vitrine.log());
    let first = output_named(&vitrine, "HEADLESS-1");
    assert_eq!(
        (first["width"].as_i64(), first["height"].as_i64(), first["rotation"].as_i64()),
        (Some(1024), Some(768), Some(90))
    );
    assert_eq!(first["logical_size"], serde_json::json!([768, 1024]));
    assert_eq!(output_named(&vitrine, "HEADLESS-2")["enabled"], false);
    assert!(
        common::wait_until(SECS(30), || sized(&vitrine, [768, 1024])),
        "the app kept its size: {}",
        vitrine.clients_json()
    );
    let shot = vitrine.screenshot("turned");
    // What the (virtual) panel shows: its mode's size, the picture turned in it.
    assert_eq!((shot.width, shot.height), (1024, 768), "the screenshot is not the panel's picture");
    let (_, listed, _) = randr(&vitrine, &[]);
    assert!(listed.contains("1024x768 px, 60.000000 Hz (current)") && listed.contains("Transform: 90"), "{listed}");
    assert!(listed.contains("Enabled: no"), "{listed}");

    // Refused whole, with the reason in the log: every output off, a scale, a mirror.
    for (args, why) in [
        (&["--output", "HEADLESS-1", "--off"][..], "at least one stays on"),
        (&["--output", "HEADLESS-1", "--scale", "2"][..], "scale 2"),
        (&["--output", "HEADLESS-1", "--transform", "flipped-90"][..], "does not mirror"),
    ] {
        let (status, _, _) = randr(&vitrine, args);
        assert!(!status.success(), "wlr-randr {args:?} was accepted");
        assert!(vitrine.log().contains(why), "no reason {why:?} in the log:\n{}", vitrine.log());
    }
    assert_eq!(output_named(&vitrine, "HEADLESS-1")["rotation"], 90, "a refused configuration changed something");

    // kanshi's profile, applied when it starts: the first upside down at its own mode, the
    // second on again beside it.
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("kanshi");
    std::fs::write(
        &profile,
        "profile wall {\n  output HEADLESS-1 mode 1280x720@60Hz position 0,0 transform 180\n  output HEADLESS-2 enable position 1280,0\n}\n",
    )
    .unwrap();
    vitrine.spawn_client("kanshi", &["-c", &profile.display().to_string()]);
    let applied = common::wait_until(SECS(30), || {
        let (a, b) = (output_named(&vitrine, "HEADLESS-1"), output_named(&vitrine, "HEADLESS-2"));
        a["rotation"] == 180 && a["width"] == 1280 && b["enabled"] == true && b["x"] == 1280
    });
    assert!(
        applied,
        "kanshi's profile was not applied: {}\n{}",
        vitrine.ok(&vitrine::control::protocol::Request::Outputs),
        vitrine.log()
    );
    assert!(common::wait_until(SECS(30), || sized(&vitrine, [1280, 720])), "{}", vitrine.clients_json());
    let counted = vitrine.ok(&vitrine::control::protocol::Request::Stats)["output_configurations"].clone();
    assert_eq!(counted["refused"], 3, "{counted}");
    assert!(counted["applied"].as_u64() >= Some(2), "{counted}");
    assert!(vitrine.is_running());

    // Not listed: wlr-randr finds no output manager.
    let plain = Vitrine::headless("output-management-refused");
    let (status, _, err) = plain.run_client("wlr-randr", &[], SECS(30));
    assert!(!status.success(), "wlr-randr worked without being allowed");
    assert!(err.contains("wlr-output-management"), "{err}");
}
