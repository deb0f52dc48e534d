//! In-process fixture: vitrine's headless server runs on a thread of this test process and a
//! wayland-client connection in the test drives it, checking protocol behaviour exactly.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use wayland_client::{Connection, Proxy};
use wayland_protocols::xdg::decoration::zv1::client::zxdg_toplevel_decoration_v1;
use wayland_protocols::xdg::shell::client::{xdg_surface, xdg_toplevel};

mod common;
use common::wl::{dispatch_until, map, setup, solid_buffer, toplevel};

use vitrine::cli::{BackendChoice, OutputSpec, RunArgs};
use vitrine::config::{Color, Config};
use vitrine::control::client::request;
use vitrine::control::protocol::Request;
use vitrine::image::RgbaImage;

const BG: [u8; 3] = [0xff, 0x00, 0xff];

/// All servers of this process share one runtime dir, set before any thread starts.
fn wait_for_pixel(server: &Server, x: u32, y: u32, rgb: [u8; 3]) -> RgbaImage {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let image = server.screenshot();
        if image.pixel(x, y)[..3] == rgb {
            return image;
        }
        assert!(Instant::now() < deadline, "({x},{y}) is {:?}, not {rgb:?}", image.pixel(x, y));
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn runtime() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("vitrine-fixture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
        dir
    })
}

struct Server {
    socket: String,
    control: PathBuf,
    thread: Option<std::thread::JoinHandle<anyhow::Result<i32>>>,
}

impl Server {
    fn start(name: &str) -> Server {
        Server::start_with(name, |_| {})
    }

    /// A server whose configuration `configure` changes first.
    fn start_with(name: &str, configure: impl FnOnce(&mut Config)) -> Server {
        let dir = runtime();
        let socket = format!("fixture-{name}-{}", std::process::id());
        let args = RunArgs {
            backend: BackendChoice::Headless,
            outputs: vec![OutputSpec { width: 640, height: 480, refresh_mhz: 60_000 }],
            socket: Some(socket.clone()),
            ..Default::default()
        };
        let mut config = Config::default();
        config.background.color = Color::rgb(BG[0], BG[1], BG[2]);
        configure(&mut config);
        let thread = std::thread::spawn(move || vitrine::run::run(args, config));
        let control = vitrine::control::socket_path(dir, &socket);
        let deadline = Instant::now() + Duration::from_secs(20);
        while request(&control, &Request::Version).is_err() {
            assert!(Instant::now() < deadline, "the in-process server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { socket, control, thread: Some(thread) }
    }

    fn connect(&self) -> Connection {
        let stream = UnixStream::connect(runtime().join(&self.socket)).unwrap();
        Connection::from_socket(stream).unwrap()
    }

    fn screenshot(&self) -> RgbaImage {
        let path = runtime().join(format!("{}.png", self.socket));
        let reply = request(&self.control, &Request::Screenshot { output: None, path: path.clone() }).unwrap();
        assert!(reply.ok, "{:?}", reply.error);
        RgbaImage::load_png(&path).unwrap()
    }

    fn app_ids(&self) -> Vec<String> {
        let reply = request(&self.control, &Request::Clients).unwrap();
        common::app_ids_of(&reply.data.unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = request(&self.control, &Request::Quit);
        if let Some(t) = self.thread.take() {
            let code = t.join().expect("server thread panicked").expect("server failed");
            assert_eq!(code, 0);
        }
    }
}

#[test]
fn a_toplevel_is_configured_fullscreen_and_shown_on_the_whole_output() {
    let server = Server::start("fullscreen");
    let conn = server.connect();
    let (g, mut queue, mut client) = setup(&conn);
    let qh = queue.handle();
    let w = toplevel(&g, &qh, "fixture.fullscreen");
    let (width, height) = map(&g, &mut queue, &mut client, &w, [0x11, 0x88, 0x22]);
    assert_eq!((width, height), (640, 480), "configured to the output size");
    let states = &client.configures[&w.toplevel.id().protocol_id()].2;
    assert!(states.contains(&(xdg_toplevel::State::Fullscreen as u32)), "{states:?}");
    assert!(states.contains(&(xdg_toplevel::State::Activated as u32)), "{states:?}");
    let image = wait_for_pixel(&server, 320, 240, [0x11, 0x88, 0x22]);
    for (x, y) in [(0, 0), (639, 0), (0, 479), (639, 479)] {
        assert_eq!(image.pixel(x, y)[..3], [0x11, 0x88, 0x22], "({x},{y}) is not covered");
    }
    assert_eq!(server.app_ids(), ["fixture.fullscreen"]);
}

/// GStreamer's `waylandsink fullscreen=true` asks for fullscreen before its initial commit, and
/// gives up ("Window has no size set") if the configure it gets is 0×0. Nothing is sent before
/// the initial commit, and the first configure already has the output's size.
#[test]
fn set_fullscreen_before_the_initial_commit_gets_the_output_size_first() {
    let server = Server::start("fullscreen-first");
    let conn = server.connect();
    let (g, mut queue, mut client) = setup(&conn);
    let qh = queue.handle();
    let surface = g.compositor.create_surface(&qh, ());
    let xdg = g.wm_base.get_xdg_surface(&surface, &qh, ());
    let toplevel = xdg.get_toplevel(&qh, ());
    toplevel.set_fullscreen(None);
    toplevel.set_maximized();
    queue.roundtrip(&mut client).unwrap();
    let id = toplevel.id().protocol_id();
    let sizes = |c: &common::wl::Client| -> Vec<(i32, i32)> {
        c.configure_log.iter().filter(|(t, ..)| *t == id).map(|(_, w, h)| (*w, *h)).collect()
    };
    assert_eq!(sizes(&client), [], "configured before the initial commit");
    surface.commit();
    dispatch_until(&mut queue, &mut client, |c| !sizes(c).is_empty());
    assert_eq!(sizes(&client)[0], (640, 480), "the first configure is at the output's size");
    // Asking again once configured is answered, at the same size.
    toplevel.set_fullscreen(None);
    let before = sizes(&client).len();
    dispatch_until(&mut queue, &mut client, |c| sizes(c).len() > before);
    assert!(sizes(&client).iter().all(|s| *s == (640, 480)), "{:?}", sizes(&client));
}

/// A bar on the top layer with an exclusive zone (wlr-layer-shell): the kiosk app's fullscreen
/// area shrinks by its height, the bar is drawn above it, and once the bar is gone the app has
/// the whole output again.
#[test]
fn an_exclusive_zone_bar_shrinks_the_kiosk_app_and_shows_above_it() {
    use wayland_protocols_wlr::layer_shell::v1::client::{zwlr_layer_shell_v1, zwlr_layer_surface_v1::Anchor};
    const APP: [u8; 3] = [0x11, 0x88, 0x22];
    const BAR: [u8; 3] = [0xee, 0xee, 0x00];
    let server = Server::start("layer-bar");
    let conn = server.connect();
    let (g, mut queue, mut client) = setup(&conn);
    let qh = queue.handle();
    let w = toplevel(&g, &qh, "fixture.layer-app");
    assert_eq!(map(&g, &mut queue, &mut client, &w, APP), (640, 480));
    let id = w.toplevel.id().protocol_id();
    let xid = w.xdg.id().protocol_id();

    let shell = g.layer_shell.as_ref().expect("zwlr_layer_shell_v1 is advertised");
    let bar_surface = g.compositor.create_surface(&qh, ());
    let bar =
        shell.get_layer_surface(&bar_surface, None, zwlr_layer_shell_v1::Layer::Top, "fixture.bar".into(), &qh, ());
    bar.set_anchor(Anchor::Top | Anchor::Left | Anchor::Right);
    bar.set_size(0, 40);
    bar.set_exclusive_zone(40);
    bar_surface.commit();
    let bar_id = bar.id().protocol_id();
    dispatch_until(&mut queue, &mut client, |c| c.layer_configures.iter().any(|l| l.0 == bar_id));
    let (_, serial, width, height) = *client.layer_configures.iter().find(|l| l.0 == bar_id).unwrap();
    assert_eq!((width, height), (640, 40), "the bar spans the output's width");
    bar.ack_configure(serial);
    let buffer = solid_buffer(&g, &qh, 640, 40, BAR);
    bar_surface.attach(Some(&buffer), 0, 0);
    bar_surface.damage_buffer(0, 0, 640, 40);
    bar_surface.commit();

    // The app is configured to what the bar leaves, and draws at that size below it.
    dispatch_until(&mut queue, &mut client, |c| (c.configures[&id].0, c.configures[&id].1) == (640, 440));
    w.xdg.ack_configure(client.pending_serial[&xid]);
    let buffer = solid_buffer(&g, &qh, 640, 440, APP);
    w.surface.attach(Some(&buffer), 0, 0);
    w.surface.damage_buffer(0, 0, 640, 440);
    w.surface.commit();
    queue.roundtrip(&mut client).unwrap();
    let image = wait_for_pixel(&server, 320, 20, BAR);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut image = image;
    while image.pixel(320, 470)[..3] != APP {
        assert!(Instant::now() < deadline, "the app is not below the bar: (320,470) is {:?}", image.pixel(320, 470));
        std::thread::sleep(Duration::from_millis(50));
        image = server.screenshot();
    }
    assert_eq!(image.pixel(0, 0)[..3], BAR);
    assert_eq!(image.pixel(320, 45)[..3], APP, "the app starts below the bar");

    // Without the bar, the app gets the whole output back.
    bar.destroy();
    bar_surface.destroy();
    dispatch_until(&mut queue, &mut client, |c| (c.configures[&id].0, c.configures[&id].1) == (640, 480));
    assert!(client.layers_closed.is_empty());

    // A zone that would leave nothing of the output is not honoured: the app keeps it all.
    let greedy_surface = g.compositor.create_surface(&qh, ());
    let greedy = shell.get_layer_surface(
        &greedy_surface,
        None,
        zwlr_layer_shell_v1::Layer::Top,
        "fixture.greedy".into(),
        &qh,
        (),
    );
    greedy.set_anchor(Anchor::Top | Anchor::Left | Anchor::Right);
    greedy.set_size(0, 10);
    greedy.set_exclusive_zone(100_000);
    greedy_surface.commit();
    let greedy_id = greedy.id().protocol_id();
    dispatch_until(&mut queue, &mut client, |c| c.layer_configures.iter().any(|l| l.0 == greedy_id));
    let (_, serial, _, _) = *client.layer_configures.iter().rev().find(|l| l.0 == greedy_id).unwrap();
    greedy.ack_configure(serial);
    let buffer = solid_buffer(&g, &qh, 640, 10, BAR);
    greedy_surface.attach(Some(&buffer), 0, 0);
    greedy_surface.commit();
    for _ in 0..3 {
        queue.roundtrip(&mut client).unwrap();
    }
    assert_eq!((client.configures[&id].0, client.configures[&id].1), (640, 480));
    assert!(client.configure_log.iter().all(|&(_, w, h)| w > 0 && h > 0), "{:?}", client.configure_log);
}

/// A virtual pointer (wlr-virtual-pointer), from a client the configuration allows, moves the
/// pointer to an absolute position and clicks: the window under it gets the pointer there and
/// both button events. A client not allowed does not see the global.
#[test]
fn a_virtual_pointer_moves_and_clicks_on_the_window_under_it() {
    use wayland_client::protocol::wl_pointer::ButtonState;
    const BTN_LEFT: u32 = 0x110;
    let plain = Server::start("virtual-pointer-refused");
    let (g, _queue, _client) = setup(&plain.connect());
    assert!(g.virtual_pointer.is_none(), "an unlisted client sees zwlr_virtual_pointer_manager_v1");

    let exe = std::fs::read_link("/proc/self/exe").unwrap().display().to_string();
    let server = Server::start_with("virtual-pointer", |c| c.security.privileged_clients = vec![exe]);
    let conn = server.connect();
    let (g, mut queue, mut client) = setup(&conn);
    let qh = queue.handle();
    let w = toplevel(&g, &qh, "fixture.pointer");
    map(&g, &mut queue, &mut client, &w, [0x11, 0x88, 0x22]);
    let manager = g.virtual_pointer.as_ref().expect("a listed client sees the virtual pointer");
    let pointer = manager.create_virtual_pointer(None, &qh, ());
    pointer.motion_absolute(0, 320, 120, 640, 480);
    pointer.frame();
    pointer.button(1, BTN_LEFT, ButtonState::Pressed);
    pointer.button(2, BTN_LEFT, ButtonState::Released);
    pointer.frame();
    dispatch_until(&mut queue, &mut client, |c| c.buttons.len() >= 2);
    assert_eq!(client.pointer_at, Some((320.0, 120.0)));
    assert_eq!(client.buttons, [(BTN_LEFT, true), (BTN_LEFT, false)]);
    // Relative motion from there.
    pointer.motion(3, 10.0, -20.0);
    pointer.frame();
    dispatch_until(&mut queue, &mut client, |c| c.pointer_at == Some((330.0, 100.0)));
}

#[test]
fn a_buffer_before_the_first_ack_disconnects_only_that_client() {
    let server = Server::start("violation");
    let good_conn = server.connect();
    let (good, mut good_queue, mut good_client) = setup(&good_conn);
    let good_window = toplevel(&good, &good_queue.handle(), "fixture.good");
    map(&good, &mut good_queue, &mut good_client, &good_window, [0x20, 0x40, 0xa0]);
    wait_for_pixel(&server, 320, 240, [0x20, 0x40, 0xa0]);

    let bad_conn = server.connect();
    let (bad, mut bad_queue, mut bad_client) = setup(&bad_conn);
    let qh = bad_queue.handle();
    let w = toplevel(&bad, &qh, "fixture.bad");
    bad_queue.roundtrip(&mut bad_client).unwrap();
    // Configured, but not acknowledged: attaching a buffer now breaks the xdg-shell rules.
    let buffer = solid_buffer(&bad, &qh, 64, 64, [0xff, 0xff, 0xff]);
    w.surface.attach(Some(&buffer), 0, 0);
    w.surface.commit();
    let result = bad_queue.roundtrip(&mut bad_client);
    assert!(result.is_err(), "the violating client was not disconnected");
    let err = bad_conn.protocol_error().expect("a protocol error");
    assert_eq!(err.code, xdg_surface::Error::UnconfiguredBuffer as u32, "{err:?}");
    assert_eq!(err.object_interface, "xdg_surface");

    // The well-behaved client and the compositor carry on.
    good_queue.roundtrip(&mut good_client).unwrap();
    wait_for_pixel(&server, 320, 240, [0x20, 0x40, 0xa0]);
    assert_eq!(server.app_ids(), ["fixture.good"]);
}

#[test]
fn decorations_are_server_side_and_focus_follows_the_newest_mapped_toplevel() {
    let server = Server::start("policy");
    let conn = server.connect();
    let (g, mut queue, mut client) = setup(&conn);
    let qh = queue.handle();

    let first = toplevel(&g, &qh, "fixture.first");
    let decoration = g.decoration.get_toplevel_decoration(&first.toplevel, &qh, ());
    decoration.set_mode(zxdg_toplevel_decoration_v1::Mode::ClientSide);
    first.surface.commit();
    map(&g, &mut queue, &mut client, &first, [0x10, 0x10, 0x10]);
    assert_eq!(client.decoration_mode, Some(zxdg_toplevel_decoration_v1::Mode::ServerSide));
    dispatch_until(&mut queue, &mut client, |c| c.keyboard_focus == Some(first.surface.id().protocol_id()));

    // A second toplevel: created but not yet drawn, it does not take focus...
    let second = toplevel(&g, &qh, "fixture.second");
    queue.roundtrip(&mut client).unwrap();
    assert_eq!(client.keyboard_focus, Some(first.surface.id().protocol_id()));
    // ...once it has drawn, it has focus and is what the output shows.
    map(&g, &mut queue, &mut client, &second, [0x90, 0x30, 0x30]);
    dispatch_until(&mut queue, &mut client, |c| c.keyboard_focus == Some(second.surface.id().protocol_id()));
    wait_for_pixel(&server, 320, 240, [0x90, 0x30, 0x30]);
    // The activated state goes with the focus: the second is told it is, the first that it
    // no longer is.
    let activated = |c: &common::wl::Client, w: &common::wl::Window| {
        c.configures[&w.toplevel.id().protocol_id()].2.contains(&(xdg_toplevel::State::Activated as u32))
    };
    dispatch_until(&mut queue, &mut client, |c| activated(c, &second) && !activated(c, &first));

    // Closing it returns focus, and the screen, to the first.
    second.toplevel.destroy();
    second.xdg.destroy();
    second.surface.destroy();
    dispatch_until(&mut queue, &mut client, |c| c.keyboard_focus == Some(first.surface.id().protocol_id()));
    wait_for_pixel(&server, 320, 240, [0x10, 0x10, 0x10]);
    dispatch_until(&mut queue, &mut client, |c| activated(c, &first));
}
