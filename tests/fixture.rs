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
