//! Hostile Wayland clients against headless vitrine, one abuse per test: resource floods,
//! protocol-order abuse, clients that never ack or never read, shm pools truncated under their
//! buffers, viewport and subsurface abuse, popup trees with the wrong parents, focus stealing,
//! garbage on the wire. Each test asserts what the abuser got (its protocol error, naming the
//! limit where one applies, or its disconnection), that a well-behaved client kept getting frame
//! callbacks throughout, and that vitrine's descriptors and memory came back once the abuser
//! left. (linux-dmabuf abuse needs a DRM device: the VM tests have it.)

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{wait_until, Vitrine};
use wayland_client::backend::protocol::ProtocolError;
use wayland_client::globals::{registry_queue_init, GlobalList, GlobalListContents};
use wayland_client::protocol::{
    wl_buffer::WlBuffer,
    wl_callback::WlCallback,
    wl_compositor::WlCompositor,
    wl_data_device::{self, WlDataDevice},
    wl_data_device_manager::WlDataDeviceManager,
    wl_data_offer::WlDataOffer,
    wl_data_source::WlDataSource,
    wl_region::WlRegion,
    wl_registry::WlRegistry,
    wl_seat::WlSeat,
    wl_shm,
    wl_shm::WlShm,
    wl_shm_pool::WlShmPool,
    wl_subcompositor::WlSubcompositor,
    wl_subsurface::WlSubsurface,
    wl_surface::WlSurface,
};
use wayland_client::{delegate_noop, Connection, Dispatch, EventQueue, Proxy, QueueHandle};
use wayland_protocols::wp::color_representation::v1::client::{
    wp_color_representation_manager_v1::{self, WpColorRepresentationManagerV1},
    wp_color_representation_surface_v1::{AlphaMode, Coefficients, Range, WpColorRepresentationSurfaceV1},
};
use wayland_protocols::wp::primary_selection::zv1::client::{
    zwp_primary_selection_device_manager_v1::ZwpPrimarySelectionDeviceManagerV1,
    zwp_primary_selection_source_v1::ZwpPrimarySelectionSourceV1,
};
use wayland_protocols::wp::single_pixel_buffer::v1::client::wp_single_pixel_buffer_manager_v1::WpSinglePixelBufferManagerV1;
use wayland_protocols::wp::viewporter::client::{wp_viewport::WpViewport, wp_viewporter::WpViewporter};
use wayland_protocols::xdg::activation::v1::client::{
    xdg_activation_token_v1::{self, XdgActivationTokenV1},
    xdg_activation_v1::XdgActivationV1,
};
use wayland_protocols::xdg::shell::client::{
    xdg_popup::{self, XdgPopup},
    xdg_positioner::XdgPositioner,
    xdg_surface::{self, XdgSurface},
    xdg_toplevel::XdgToplevel,
    xdg_wm_base::{self, XdgWmBase},
};
use wayland_protocols_misc::zwp_virtual_keyboard_v1::client::{
    zwp_virtual_keyboard_manager_v1::ZwpVirtualKeyboardManagerV1, zwp_virtual_keyboard_v1::ZwpVirtualKeyboardV1,
};

// ---------------------------------------------------------------------------------------------
// The well-behaved client: a mapped toplevel asking for a frame callback at every frame, on a
// thread of its own, counting the callbacks done.

struct Witness {
    frames: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Witness {
    fn start(vitrine: &Vitrine) -> Witness {
        let conn = vitrine.wayland();
        let frames = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (frames.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            use common::wl::{map, setup, toplevel};
            let (g, mut queue, mut client) = setup(&conn);
            let qh = queue.handle();
            let w = toplevel(&g, &qh, "vitrine.test.witness");
            map(&g, &mut queue, &mut client, &w, [0x20, 0x80, 0x20]);
            while !s.load(Ordering::Relaxed) {
                let before = client.frame_callbacks;
                w.surface.frame(&qh, ());
                w.surface.damage_buffer(0, 0, 16, 16);
                w.surface.commit();
                while client.frame_callbacks == before {
                    if queue.blocking_dispatch(&mut client).is_err() {
                        return;
                    }
                }
                f.fetch_add(1, Ordering::Relaxed);
            }
        });
        let witness = Witness { frames, stop, thread: Some(thread) };
        assert!(
            wait_until(Duration::from_secs(20), || witness.frames() >= 5),
            "the witness got no frame callbacks; log:\n{}",
            vitrine.log()
        );
        witness
    }

    fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// The witness gets more frame callbacks from now on.
    fn still_served(&self, vitrine: &Vitrine, what: &str) {
        let from = self.frames();
        assert!(
            wait_until(Duration::from_secs(20), || self.frames() >= from + 5),
            "{what}: the well-behaved client stopped getting frame callbacks; log:\n{}",
            vitrine.log()
        );
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The thread wakes at its next frame callback (vitrine is still running here).
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What vitrine holds: descriptors and resident memory, from /proc.

#[derive(Debug, Clone, Copy)]
struct Held {
    fds: usize,
    rss_kib: u64,
}

fn held(vitrine: &Vitrine) -> Held {
    let pid = vitrine.child.id();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Held { fds, rss_kib }
}

/// Resident memory an abuse may leave behind once its client is gone and vitrine has trimmed its
/// allocator (a second after a client leaves): pages the allocator cannot give back (the limits
/// bound what a client can make vitrine hold; this bounds what stays).
const RSS_SLACK_KIB: u64 = 2 * 1024;

// ---------------------------------------------------------------------------------------------
// The abuser: its own connection, globals bound as needed, events mostly ignored.

/// How an abuser's connection ended.
#[derive(Debug)]
enum Died {
    /// A protocol error on one of its objects.
    Protocol(ProtocolError),
    /// wl_display.no_memory: what vitrine's limits send.
    NoMemory,
    /// Anything else, as the client library said it.
    Other(String),
}

/// How `conn` died, from the error its last call returned.
fn died(conn: &Connection, err: String) -> Died {
    match conn.protocol_error() {
        Some(e) => Died::Protocol(e),
        // wayland-client turns wl_display's own errors into errno values: no_memory is ENOMEM
        // (its message is printed by the client library, not kept).
        None if err.contains("Cannot allocate memory") => Died::NoMemory,
        None => Died::Other(err),
    }
}

#[derive(Default)]
struct Abuser {
    /// xdg_surface.configure serials, in order.
    serials: Vec<u32>,
    popups_done: u32,
    token: Option<String>,
    /// wl_keyboard.enter serials.
    enter_serial: Option<u32>,
    keyboard_focus: Option<u32>,
    /// The clipboard's content as last offered (wl_data_device.selection).
    selection: Option<WlDataOffer>,
    /// wp_color_representation_manager_v1's offer: (coefficients, range) pairs, alpha modes,
    /// and whether its done came.
    colour_pairs: Vec<(u32, u32)>,
    alpha_modes: Vec<u32>,
    colour_done: bool,
}

struct Session {
    conn: Connection,
    queue: EventQueue<Abuser>,
    qh: QueueHandle<Abuser>,
    globals: GlobalList,
    state: Abuser,
}

impl Session {
    fn open(vitrine: &Vitrine) -> Session {
        Session::try_open(vitrine).unwrap()
    }

    /// A connection whose registry was read; how it died if it did.
    fn try_open(vitrine: &Vitrine) -> Result<Session, Died> {
        let conn = vitrine.wayland();
        let (globals, queue) = registry_queue_init::<Abuser>(&conn).map_err(|err| died(&conn, format!("{err:?}")))?;
        let qh = queue.handle();
        Ok(Session { conn, queue, qh, globals, state: Abuser::default() })
    }

    fn bind<I: Proxy + 'static>(&self, version: u32) -> I
    where
        Abuser: Dispatch<I, ()>,
    {
        self.globals.bind(&self.qh, 1..=version, ()).unwrap_or_else(|e| panic!("{}: {e}", I::interface().name))
    }

    /// A roundtrip; how the connection died if it did.
    fn roundtrip(&mut self) -> Result<(), Died> {
        match self.queue.roundtrip(&mut self.state) {
            Ok(_) => Ok(()),
            Err(err) => Err(died(&self.conn, format!("{err:?}"))),
        }
    }

    /// Run `step` up to `n` times, with a roundtrip every `every` steps (so that the requests
    /// reach vitrine and its answer is seen), until the connection dies: how it died.
    fn flood(&mut self, n: usize, every: usize, mut step: impl FnMut(&mut Session, usize)) -> Option<Died> {
        for i in 0..n {
            step(self, i);
            if (i + 1) % every == 0 {
                if let Err(e) = self.roundtrip() {
                    return Some(e);
                }
            }
        }
        self.roundtrip().err()
    }

    /// How this connection dies (after a roundtrip).
    fn expect_death(&mut self, what: &str) -> Died {
        match self.roundtrip() {
            Err(e) => e,
            Ok(()) => panic!("{what}: no protocol error"),
        }
    }

    /// The protocol error that ends this connection (after a roundtrip).
    fn expect_error(&mut self, what: &str) -> ProtocolError {
        match self.expect_death(what) {
            Died::Protocol(e) => e,
            other => panic!("{what}: disconnected without a protocol error of an object: {other:?}"),
        }
    }

    fn toplevel(&mut self, app_id: &str) -> (WlSurface, XdgSurface, XdgToplevel) {
        let compositor: WlCompositor = self.bind(6);
        let wm: XdgWmBase = self.bind(6);
        let surface = compositor.create_surface(&self.qh, ());
        let xdg = wm.get_xdg_surface(&surface, &self.qh, ());
        let toplevel = xdg.get_toplevel(&self.qh, ());
        toplevel.set_app_id(app_id.into());
        surface.commit();
        self.roundtrip().unwrap();
        (surface, xdg, toplevel)
    }

    /// A toplevel mapped with a small buffer, its first configure acknowledged.
    fn mapped_toplevel(&mut self, app_id: &str) -> (WlSurface, XdgSurface, XdgToplevel) {
        let (surface, xdg, toplevel) = self.toplevel(app_id);
        let serial = *self.state.serials.last().expect("a configure");
        xdg.ack_configure(serial);
        let buffer = self.buffer(32, 32);
        surface.attach(Some(&buffer), 0, 0);
        surface.commit();
        self.roundtrip().unwrap();
        (surface, xdg, toplevel)
    }

    fn buffer(&self, w: i32, h: i32) -> WlBuffer {
        let shm: WlShm = self.bind(1);
        let file = memfd((w * h * 4) as u64);
        let pool = shm.create_pool(file.as_fd(), w * h * 4, &self.qh, ());
        let buffer = pool.create_buffer(0, w, h, w * 4, wl_shm::Format::Xrgb8888, &self.qh, ());
        pool.destroy();
        buffer
    }
}

fn memfd(size: u64) -> std::fs::File {
    // SAFETY: memfd_create with a constant name; the descriptor is owned by the File.
    let fd = unsafe { libc::memfd_create(c"vitrine-hostile".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.set_len(size).unwrap();
    file
}

impl Dispatch<WlRegistry, GlobalListContents> for Abuser {
    fn event(
        _: &mut Self,
        _: &WlRegistry,
        _: wayland_client::protocol::wl_registry::Event,
        _: &GlobalListContents,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
    }
}

impl Dispatch<XdgWmBase, ()> for Abuser {
    fn event(_: &mut Self, wm: &XdgWmBase, event: xdg_wm_base::Event, _: &(), _: &Connection, _: &QueueHandle<Self>) {
        if let xdg_wm_base::Event::Ping { serial } = event {
            wm.pong(serial);
        }
    }
}

impl Dispatch<XdgSurface, ()> for Abuser {
    fn event(s: &mut Self, _: &XdgSurface, event: xdg_surface::Event, _: &(), _: &Connection, _: &QueueHandle<Self>) {
        if let xdg_surface::Event::Configure { serial } = event {
            s.serials.push(serial);
        }
    }
}

delegate_noop!(Abuser: ignore XdgToplevel);

impl Dispatch<XdgPopup, ()> for Abuser {
    fn event(s: &mut Self, _: &XdgPopup, event: xdg_popup::Event, _: &(), _: &Connection, _: &QueueHandle<Self>) {
        if let xdg_popup::Event::PopupDone = event {
            s.popups_done += 1;
        }
    }
}

impl Dispatch<XdgActivationTokenV1, ()> for Abuser {
    fn event(
        s: &mut Self,
        _: &XdgActivationTokenV1,
        event: xdg_activation_token_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_activation_token_v1::Event::Done { token } = event {
            s.token = Some(token);
        }
    }
}

impl Dispatch<wayland_client::protocol::wl_keyboard::WlKeyboard, ()> for Abuser {
    fn event(
        s: &mut Self,
        _: &wayland_client::protocol::wl_keyboard::WlKeyboard,
        event: wayland_client::protocol::wl_keyboard::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        use wayland_client::protocol::wl_keyboard::Event;
        match event {
            Event::Enter { serial, surface, .. } => {
                s.enter_serial = Some(serial);
                s.keyboard_focus = Some(surface.id().protocol_id());
            }
            Event::Leave { .. } => s.keyboard_focus = None,
            _ => {}
        }
    }
}

delegate_noop!(Abuser: WlCompositor);
delegate_noop!(Abuser: ZwpPrimarySelectionDeviceManagerV1);
delegate_noop!(Abuser: ignore ZwpPrimarySelectionSourceV1);
delegate_noop!(Abuser: ZwpVirtualKeyboardManagerV1);
delegate_noop!(Abuser: ZwpVirtualKeyboardV1);
delegate_noop!(Abuser: WlSubcompositor);
delegate_noop!(Abuser: WlSubsurface);
delegate_noop!(Abuser: WlRegion);
delegate_noop!(Abuser: WlShmPool);
delegate_noop!(Abuser: XdgPositioner);
delegate_noop!(Abuser: WpViewporter);
delegate_noop!(Abuser: WpViewport);
delegate_noop!(Abuser: WpSinglePixelBufferManagerV1);
delegate_noop!(Abuser: XdgActivationV1);
delegate_noop!(Abuser: ignore WlSurface);
delegate_noop!(Abuser: ignore WlBuffer);
delegate_noop!(Abuser: ignore WlShm);
delegate_noop!(Abuser: ignore WlCallback);
delegate_noop!(Abuser: ignore WlSeat);
delegate_noop!(Abuser: WlDataDeviceManager);
delegate_noop!(Abuser: ignore WlDataOffer);

impl Dispatch<WlDataDevice, ()> for Abuser {
    fn event(
        s: &mut Self,
        _: &WlDataDevice,
        event: wl_data_device::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wl_data_device::Event::Selection { id } = event {
            s.selection = id;
        }
    }

    wayland_client::event_created_child!(Abuser, WlDataDevice, [
        wl_data_device::EVT_DATA_OFFER_OPCODE => (WlDataOffer, ()),
    ]);
}
delegate_noop!(Abuser: ignore WlDataSource);
delegate_noop!(Abuser: WpColorRepresentationSurfaceV1);

impl Dispatch<WpColorRepresentationManagerV1, ()> for Abuser {
    fn event(
        state: &mut Self,
        _: &WpColorRepresentationManagerV1,
        event: wp_color_representation_manager_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        use wp_color_representation_manager_v1::Event;
        match event {
            Event::SupportedCoefficientsAndRanges { coefficients, range } => {
                state.colour_pairs.push((u32::from(coefficients), u32::from(range)))
            }
            Event::SupportedAlphaMode { alpha_mode } => state.alpha_modes.push(u32::from(alpha_mode)),
            Event::Done => state.colour_done = true,
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The frame of every test.

/// Start vitrine and the witness, take what vitrine holds, run `abuse` on its own connection
/// (it returns once the abuser is done: errored, or left), then check that the witness was
/// served throughout and that vitrine gave back what the abuser made it hold.
fn hostile(name: &str, abuse: impl FnOnce(&Vitrine, Session)) {
    hostile_with(common::Launch::headless(name), abuse)
}

/// `hostile`, with vitrine launched as `launch` says (a configuration of its own).
fn hostile_with(launch: common::Launch, abuse: impl FnOnce(&Vitrine, Session)) {
    let name = launch.name.to_string();
    let name = name.as_str();
    let mut vitrine = Vitrine::launch(launch);
    let witness = Witness::start(&vitrine);
    // Settled: what vitrine holds with one client connected.
    std::thread::sleep(Duration::from_millis(300));
    let before = held(&vitrine);
    let session = Session::open(&vitrine);
    let started = Instant::now();
    abuse(&vitrine, session);
    witness.still_served(&vitrine, name);
    let fds_back = wait_until(Duration::from_secs(10), || held(&vitrine).fds <= before.fds);
    wait_until(Duration::from_secs(10), || held(&vitrine).rss_kib <= before.rss_kib + RSS_SLACK_KIB);
    let after = held(&vitrine);
    println!(
        "{name}: {:?}; descriptors {} -> {}, RSS {} -> {} KiB; the witness got {} frames",
        started.elapsed(),
        before.fds,
        after.fds,
        before.rss_kib,
        after.rss_kib,
        witness.frames()
    );
    assert!(fds_back, "{name}: descriptors did not come back: {before:?} -> {after:?}");
    assert!(
        after.rss_kib <= before.rss_kib + RSS_SLACK_KIB,
        "{name}: resident memory did not come back: {before:?} -> {after:?}"
    );
    assert!(vitrine.is_running(), "{name}: vitrine exited; log:\n{}", vitrine.log());
    drop(witness);
}

/// The abuser died of wl_display.no_memory, and vitrine's log names the limit (the error's
/// message, which names it too, is printed by the client library and not kept).
fn assert_limit(vitrine: &Vitrine, died: Option<Died>, what: &str, max: usize) {
    // A client still sending when vitrine closes the connection may see the broken pipe before
    // it reads the error: the log then says what it was.
    let broken_pipe = matches!(&died, Some(Died::Other(e)) if e.contains("BrokenPipe"));
    assert!(matches!(died, Some(Died::NoMemory)) || broken_pipe, "{what}: {died:?}, not wl_display.no_memory");
    let said = format!("limit=\"{what}\" max={max}");
    assert!(
        wait_until(Duration::from_secs(5), || vitrine.log().contains(&said)),
        "the log does not name the limit ({said}):\n{}",
        vitrine.log()
    );
}

/// The error is on one of `interfaces` (each protocol names the object that is wrong).
fn assert_error_on(error: &ProtocolError, interfaces: &[&str]) {
    assert!(interfaces.contains(&error.object_interface.as_str()), "{error:?}, not on one of {interfaces:?}");
}

// ---------------------------------------------------------------------------------------------
// Resource floods: each over its limit gets the protocol error naming it.

#[test]
fn a_flood_of_surfaces_is_stopped_at_the_limit() {
    hostile("hostile-surfaces", |vitrine, mut s| {
        let compositor: WlCompositor = s.bind(6);
        let error = s.flood(5000, 500, |s, _| {
            compositor.create_surface(&s.qh, ());
        });
        assert_limit(vitrine, error, "surfaces per client", 4096);
    });
}

#[test]
fn deeply_nested_subsurfaces_are_stopped() {
    hostile("hostile-subsurface-depth", |vitrine, mut s| {
        let compositor: WlCompositor = s.bind(6);
        let sub: WlSubcompositor = s.bind(1);
        let mut parent = compositor.create_surface(&s.qh, ());
        let mut keep = Vec::new();
        let error = s.flood(64, 8, |s, _| {
            let child = compositor.create_surface(&s.qh, ());
            keep.push(sub.get_subsurface(&child, &parent, &s.qh, ()));
            parent = child;
        });
        assert_limit(vitrine, error, "levels of nested subsurfaces", 32);
    });
}

#[test]
fn a_subsurface_made_its_own_ancestor_is_refused() {
    hostile("hostile-subsurface-cycle", |_, mut s| {
        let compositor: WlCompositor = s.bind(6);
        let sub: WlSubcompositor = s.bind(1);
        let (a, b) = (compositor.create_surface(&s.qh, ()), compositor.create_surface(&s.qh, ()));
        let _ab = sub.get_subsurface(&b, &a, &s.qh, ());
        let _ba = sub.get_subsurface(&a, &b, &s.qh, ());
        assert_error_on(&s.expect_error("a subsurface cycle"), &["wl_subcompositor"]);
    });
}

/// An xdg_positioner with a size and an anchor rectangle.
fn positioner(s: &Session, wm: &XdgWmBase) -> XdgPositioner {
    let p = wm.create_positioner(&s.qh, ());
    p.set_size(10, 10);
    p.set_anchor_rect(0, 0, 1, 1);
    p
}

#[test]
fn a_flood_of_popups_is_stopped_at_the_limit() {
    hostile("hostile-popups", |vitrine, mut s| {
        let (_surface, parent, _toplevel) = s.mapped_toplevel("vitrine.test.popups");
        let compositor: WlCompositor = s.bind(6);
        let wm: XdgWmBase = s.bind(6);
        let p = positioner(&s, &wm);
        let mut keep = Vec::new();
        let error = s.flood(300, 25, |s, _| {
            let surface = compositor.create_surface(&s.qh, ());
            let xdg = wm.get_xdg_surface(&surface, &s.qh, ());
            keep.push((xdg.get_popup(Some(&parent), &p, &s.qh, ()), xdg, surface));
        });
        assert_limit(vitrine, error, "popups per client", 128);
    });
}

#[test]
fn deeply_nested_popups_are_stopped() {
    hostile("hostile-popup-depth", |vitrine, mut s| {
        let (_surface, top, _toplevel) = s.mapped_toplevel("vitrine.test.popup-depth");
        let compositor: WlCompositor = s.bind(6);
        let wm: XdgWmBase = s.bind(6);
        let p = positioner(&s, &wm);
        let mut parent = top;
        let mut keep = Vec::new();
        let error = s.flood(40, 4, |s, _| {
            let surface = compositor.create_surface(&s.qh, ());
            let xdg = wm.get_xdg_surface(&surface, &s.qh, ());
            let popup = xdg.get_popup(Some(&parent), &p, &s.qh, ());
            surface.commit();
            keep.push((popup, surface));
            parent = xdg;
        });
        assert_limit(vitrine, error, "levels of nested popups", 16);
    });
}

#[test]
fn a_popup_whose_parent_is_gone_or_foreign_is_refused() {
    hostile("hostile-popup-parent", |vitrine, mut s| {
        // A popup of an xdg_surface that has no role yet: the protocol says invalid_popup_parent
        // (or smithay's own refusal); either way an error for this client only.
        let compositor: WlCompositor = s.bind(6);
        let wm: XdgWmBase = s.bind(6);
        let p = positioner(&s, &wm);
        let roleless = wm.get_xdg_surface(&compositor.create_surface(&s.qh, ()), &s.qh, ());
        let surface = compositor.create_surface(&s.qh, ());
        let xdg = wm.get_xdg_surface(&surface, &s.qh, ());
        let _popup = xdg.get_popup(Some(&roleless), &p, &s.qh, ());
        surface.commit();
        let error = s.expect_error("a popup of a role-less parent");
        assert!(error.object_interface.starts_with("xdg_"), "{error:?}");
        // A second abuser: a popup whose positioner is incomplete (no size).
        let mut s = Session::open(vitrine);
        let compositor: WlCompositor = s.bind(6);
        let wm: XdgWmBase = s.bind(6);
        let (_t, parent, _tl) = s.mapped_toplevel("vitrine.test.popup-positioner");
        let empty = wm.create_positioner(&s.qh, ());
        let surface = compositor.create_surface(&s.qh, ());
        let xdg = wm.get_xdg_surface(&surface, &s.qh, ());
        let _popup = xdg.get_popup(Some(&parent), &empty, &s.qh, ());
        let error = s.expect_error("an incomplete positioner");
        assert_error_on(&error, &["xdg_wm_base", "xdg_surface", "xdg_positioner"]);
    });
}

#[test]
fn configures_never_acknowledged_are_stopped_at_the_limit() {
    hostile("hostile-configures", |vitrine, mut s| {
        let (_surface, _xdg, toplevel) = s.toplevel("vitrine.test.no-ack");
        // Each request is answered with a configure the client never acknowledges.
        let error =
            s.flood(200, 10, |_, i| if i % 2 == 0 { toplevel.set_fullscreen(None) } else { toplevel.set_maximized() });
        assert_limit(vitrine, error, "unacknowledged configures per toplevel", 64);
    });
}

#[test]
fn a_flood_of_shm_pools_is_stopped_at_the_limit() {
    hostile("hostile-shm-pools", |vitrine, mut s| {
        let shm: WlShm = s.bind(1);
        let file = memfd(4096);
        let mut keep = Vec::new();
        let error = s.flood(1200, 100, |s, _| keep.push(shm.create_pool(file.as_fd(), 4096, &s.qh, ())));
        assert_limit(vitrine, error, "shm pools per client", 1024);
    });
}

#[test]
fn shm_pools_destroyed_under_their_buffers_still_count() {
    hostile("hostile-shm-orphans", |vitrine, mut s| {
        let shm: WlShm = s.bind(1);
        let file = memfd(4096);
        let mut keep = Vec::new();
        // Each pool is destroyed at once and its buffer kept: vitrine still holds the pool's
        // file and mapping, one per buffer (fewer than the buffer limit).
        let error = s.flood(1200, 100, |s, _| {
            let pool = shm.create_pool(file.as_fd(), 4096, &s.qh, ());
            keep.push(pool.create_buffer(0, 16, 16, 64, wl_shm::Format::Xrgb8888, &s.qh, ()));
            pool.destroy();
        });
        assert_limit(vitrine, error, "shm pools per client", 1024);
    });
}

#[test]
fn shm_pools_destroyed_under_their_buffers_still_count_their_size() {
    hostile("hostile-shm-orphans-size", |vitrine, mut s| {
        let shm: WlShm = s.bind(1);
        let file = memfd(300 << 20);
        let mut keep = Vec::new();
        let error = s.flood(16, 1, |s, _| {
            let pool = shm.create_pool(file.as_fd(), 300 << 20, &s.qh, ());
            keep.push(pool.create_buffer(0, 16, 16, 64, wl_shm::Format::Xrgb8888, &s.qh, ()));
            pool.destroy();
        });
        assert_limit(vitrine, error, "MiB of shm pools per client", 4096);
    });
}

#[test]
fn shm_pools_and_buffers_made_and_destroyed_over_and_over_are_not_limited() {
    hostile("hostile-shm-churn", |_, mut s| {
        let shm: WlShm = s.bind(1);
        let file = memfd(4096);
        // Three times the pool limit, each pool and buffer destroyed after use (the order a
        // toolkit uses): vitrine closes each file, and none is counted once closed.
        let error = s.flood(3072, 128, |s, _| {
            let pool = shm.create_pool(file.as_fd(), 4096, &s.qh, ());
            let buffer = pool.create_buffer(0, 16, 16, 64, wl_shm::Format::Xrgb8888, &s.qh, ());
            pool.destroy();
            buffer.destroy();
        });
        assert!(error.is_none(), "a client that destroys its pools and buffers was stopped: {error:?}");
    });
}

#[test]
fn clients_over_the_limit_at_once_are_refused_until_one_leaves() {
    hostile("hostile-clients", |vitrine, s| {
        // The witness and `s` are two of the 16.
        let mut others: Vec<Session> = (0..14).map(|_| Session::open(vitrine)).collect();
        for other in &mut others {
            other.roundtrip().expect("a client within the limit is served");
        }
        let refused = Session::try_open(vitrine).err();
        assert_limit(vitrine, refused, "clients at once", 16);
        drop(others.pop());
        // The place is free once vitrine has let go of the client that left.
        let served =
            wait_until(Duration::from_secs(10), || Session::try_open(vitrine).is_ok_and(|mut c| c.roundtrip().is_ok()));
        assert!(served, "no client served after one of 16 left; log:\n{}", vitrine.log());
        drop((others, s));
    });
}

#[test]
fn shm_pools_too_large_in_all_are_stopped() {
    hostile("hostile-shm-size", |vitrine, mut s| {
        let shm: WlShm = s.bind(1);
        // Sparse files: nothing is written, the pools are only mapped.
        let file = memfd(300 << 20);
        let mut keep = Vec::new();
        let error = s.flood(16, 1, |s, _| keep.push(shm.create_pool(file.as_fd(), 300 << 20, &s.qh, ())));
        assert_limit(vitrine, error, "MiB of shm pools per client", 4096);
    });
}

#[test]
fn an_shm_pool_resized_past_the_limit_is_stopped() {
    hostile("hostile-shm-resize", |vitrine, mut s| {
        let shm: WlShm = s.bind(1);
        // Two pools of 2000 MiB (a pool is at most 2 GiB: its size is an int32), then a small
        // one grown by 200 MiB: 4200 MiB in all.
        let file = memfd(2000 << 20);
        let _big: Vec<_> = (0..2).map(|_| shm.create_pool(file.as_fd(), 2000 << 20, &s.qh, ())).collect();
        let pool = shm.create_pool(file.as_fd(), 4096, &s.qh, ());
        s.roundtrip().unwrap();
        pool.resize(200 << 20);
        assert_limit(vitrine, Some(s.expect_death("a resize to 4200 MiB in all")), "MiB of shm pools per client", 4096);
    });
}

#[test]
fn a_flood_of_buffers_is_stopped_at_the_limit() {
    hostile("hostile-buffers", |vitrine, mut s| {
        let shm: WlShm = s.bind(1);
        let file = memfd(64 * 64 * 4);
        let pool = shm.create_pool(file.as_fd(), 64 * 64 * 4, &s.qh, ());
        let mut keep = Vec::new();
        let error = s.flood(5000, 500, |s, _| {
            keep.push(pool.create_buffer(0, 64, 64, 256, wl_shm::Format::Xrgb8888, &s.qh, ()));
        });
        assert_limit(vitrine, error, "buffers per client", 4096);
    });
}

#[test]
fn a_flood_of_single_pixel_buffers_is_stopped_at_the_limit() {
    hostile("hostile-single-pixel", |vitrine, mut s| {
        let spb: WpSinglePixelBufferManagerV1 = s.bind(1);
        let mut keep = Vec::new();
        let error = s.flood(5000, 500, |s, i| {
            keep.push(spb.create_u32_rgba_buffer(i as u32, 0, 0, u32::MAX, &s.qh, ()));
        });
        assert_limit(vitrine, error, "buffers per client", 4096);
    });
}

#[test]
fn buffers_committed_and_never_released_are_stopped_at_the_limit() {
    hostile("hostile-never-release", |vitrine, mut s| {
        let (surface, _xdg, _toplevel) = s.mapped_toplevel("vitrine.test.never-release");
        let shm: WlShm = s.bind(1);
        let file = memfd(16 * 16 * 4);
        let pool = shm.create_pool(file.as_fd(), 16 * 16 * 4, &s.qh, ());
        let mut keep = Vec::new();
        // A new buffer at every commit, none ever destroyed.
        let error = s.flood(4200, 200, |s, _| {
            let b = pool.create_buffer(0, 16, 16, 64, wl_shm::Format::Xrgb8888, &s.qh, ());
            surface.attach(Some(&b), 0, 0);
            surface.damage_buffer(0, 0, 16, 16);
            surface.commit();
            keep.push(b);
        });
        assert_limit(vitrine, error, "buffers per client", 4096);
    });
}

#[test]
fn frame_callbacks_never_committed_are_stopped_at_the_limit() {
    hostile("hostile-frame-callbacks", |vitrine, mut s| {
        let compositor: WlCompositor = s.bind(6);
        let surface = compositor.create_surface(&s.qh, ());
        let error = s.flood(400, 50, |s, _| {
            surface.frame(&s.qh, ());
        });
        assert_limit(vitrine, error, "frame callbacks per surface between commits", 256);
    });
}

#[test]
fn damage_never_committed_is_stopped_at_the_limit() {
    hostile("hostile-damage", |vitrine, mut s| {
        let compositor: WlCompositor = s.bind(6);
        let surface = compositor.create_surface(&s.qh, ());
        let error = s.flood(2000, 200, |_, i| surface.damage_buffer(i as i32, 0, 1, 1));
        assert_limit(vitrine, error, "damage rectangles per surface between commits", 1024);
    });
}

#[test]
fn a_region_of_too_many_rectangles_is_stopped() {
    hostile("hostile-region", |vitrine, mut s| {
        let compositor: WlCompositor = s.bind(6);
        let region = compositor.create_region(&s.qh, ());
        let error = s.flood(2000, 200, |_, i| region.add(i as i32 * 2, 0, 1, 1));
        assert_limit(vitrine, error, "rectangles per region", 1024);
    });
}

#[test]
fn a_flood_of_clipboard_sources_is_stopped_at_the_limit() {
    hostile("hostile-data-sources", |vitrine, mut s| {
        let manager: WlDataDeviceManager = s.bind(3);
        let mut sources = Vec::new();
        let error = s.flood(200, 20, |s, _| sources.push(manager.create_data_source(&s.qh, ())));
        assert_limit(vitrine, error, "clipboard and drag sources per client", 64);
    });
}

#[test]
fn clipboard_sources_made_and_destroyed_over_and_over_are_not_limited() {
    hostile("hostile-data-sources-churn", |_, mut s| {
        let manager: WlDataDeviceManager = s.bind(3);
        // Ten times the limit, each source destroyed after use: none is held, none is counted.
        let error = s.flood(640, 64, |s, i| {
            let source = manager.create_data_source(&s.qh, ());
            source.offer(format!("text/x-vitrine-{i}"));
            source.destroy();
        });
        assert!(error.is_none(), "a client that destroys its sources was stopped: {error:?}");
    });
}

#[test]
fn a_clipboard_source_that_never_reads_is_cut_off_and_the_reader_carries_on() {
    hostile("hostile-clipboard-never-reads", |vitrine, mut s| {
        // The source takes the clipboard (its window is focused), then never reads its socket.
        let mut source_client = Session::open(vitrine);
        let seat: WlSeat = source_client.bind(7);
        seat.get_keyboard(&source_client.qh, ());
        let manager: WlDataDeviceManager = source_client.bind(3);
        let _device = manager.get_data_device(&seat, &source_client.qh, ());
        let _window = source_client.mapped_toplevel("vitrine.test.clipboard-source");
        let focused = wait_until(Duration::from_secs(10), || {
            let _ = source_client.roundtrip();
            source_client.state.enter_serial.is_some()
        });
        assert!(focused, "the source's window did not get the keyboard focus");
        let source = manager.create_data_source(&source_client.qh, ());
        source.offer("text/plain".into());
        let serial = source_client.state.enter_serial.unwrap();
        _device.set_selection(Some(&source), serial);
        source_client.roundtrip().unwrap();

        // The reader's window, the newest, takes the focus and is offered the clipboard.
        let seat: WlSeat = s.bind(7);
        seat.get_keyboard(&s.qh, ());
        let manager: WlDataDeviceManager = s.bind(3);
        let _reader_device = manager.get_data_device(&seat, &s.qh, ());
        let _reader_window = s.mapped_toplevel("vitrine.test.clipboard-reader");
        let offered = wait_until(Duration::from_secs(10), || {
            let _ = s.roundtrip();
            s.state.selection.is_some()
        });
        assert!(offered, "the reader was not offered the clipboard; log:\n{}", vitrine.log());
        let offer = s.state.selection.clone().unwrap();

        // Each receive sends the source a descriptor it never reads: vitrine's buffer for it
        // fills, and it is cut off rather than buffered for (with descriptors held) without end.
        let (_read, write) = std::io::pipe().unwrap();
        let error = s.flood(20_000, 500, |_, _| offer.receive("text/plain".into(), write.as_fd()));
        assert!(error.is_none(), "the reader was stopped: {error:?}");
        let died = source_client.roundtrip();
        assert!(died.is_err(), "a source that never read was still connected after 20000 requests to send");
        s.roundtrip().expect("the reader is still served");
        println!("clipboard-never-reads: the source ended with {died:?}");
    });
}

#[test]
fn a_source_offering_too_many_mime_types_is_stopped() {
    hostile("hostile-mime-types", |vitrine, mut s| {
        let manager: WlDataDeviceManager = s.bind(3);
        let source = manager.create_data_source(&s.qh, ());
        let error = s.flood(1000, 50, |_, i| source.offer(format!("text/x-vitrine-{i}")));
        assert_limit(vitrine, error, "MIME types per clipboard or drag source", 128);
    });
}

#[test]
fn an_overlong_mime_type_is_refused() {
    hostile("hostile-mime-length", |vitrine, mut s| {
        let manager: WlDataDeviceManager = s.bind(3);
        let source = manager.create_data_source(&s.qh, ());
        // A type of the longest a real one may be is taken, one past the limit is not.
        source.offer(format!("text/{}", "x".repeat(507)));
        s.roundtrip().expect("a 512-byte MIME type was refused");
        source.offer(format!("text/{}", "x".repeat(508)));
        let error = s.roundtrip().err();
        assert_limit(vitrine, error, "bytes per MIME type", 512);
    });
}

#[test]
fn a_primary_selection_source_offering_too_many_mime_types_is_stopped() {
    hostile("hostile-primary-mime-types", |vitrine, mut s| {
        let manager: ZwpPrimarySelectionDeviceManagerV1 = s.bind(1);
        let source = manager.create_source(&s.qh, ());
        let error = s.flood(1000, 50, |_, i| source.offer(format!("text/x-vitrine-{i}")));
        assert_limit(vitrine, error, "MIME types per clipboard or drag source", 128);
    });
}

#[test]
fn primary_selection_sources_count_with_the_clipboards() {
    hostile("hostile-primary-sources", |vitrine, mut s| {
        let manager: ZwpPrimarySelectionDeviceManagerV1 = s.bind(1);
        let clipboard: WlDataDeviceManager = s.bind(3);
        // Half and half: the 65th source of either kind is over the one limit.
        let _clipboard: Vec<WlDataSource> = (0..32).map(|_| clipboard.create_data_source(&s.qh, ())).collect();
        s.roundtrip().expect("32 clipboard sources were refused");
        let error = s.flood(200, 10, |s, _| {
            manager.create_source(&s.qh, ());
        });
        assert_limit(vitrine, error, "clipboard and drag sources per client", 64);
    });
}

/// A virtual keyboard (from a client allowed it) whose keymap file is shorter than the size it
/// announces: mapping it would kill vitrine with SIGBUS. The keyboard gets an error naming the
/// keymap; vitrine and the other clients carry on.
#[test]
fn a_virtual_keyboard_keymap_shorter_than_announced_is_refused() {
    let exe = std::fs::read_link("/proc/self/exe").unwrap();
    let mut launch = common::Launch::headless("hostile-short-keymap");
    launch.config =
        format!("{}[security]\nprivileged_clients = [{:?}]\n", common::BG_CONFIG, exe.display().to_string());
    hostile_with(launch, |vitrine, mut s| {
        let manager: ZwpVirtualKeyboardManagerV1 = s.bind(1);
        let seat: WlSeat = s.bind(7);
        let keyboard = manager.create_virtual_keyboard(&seat, &s.qh, ());
        let file = memfd(100);
        keyboard.keymap(1, file.as_fd(), 1 << 16);
        match s.roundtrip() {
            Err(Died::Protocol(e)) => {
                assert_eq!((e.object_interface.as_str(), e.code), ("zwp_virtual_keyboard_v1", 0), "{e:?}");
                let said = wait_until(Duration::from_secs(5), || {
                    vitrine
                        .log()
                        .lines()
                        .any(|l| l.contains("virtual keyboard refused") && l.contains("cannot be read"))
                });
                assert!(said, "the log does not say why:\n{}", vitrine.log());
            }
            other => panic!("a keymap shorter than announced was taken: {other:?}; log:\n{}", vitrine.log()),
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Shared memory that lies.

#[test]
fn an_shm_pool_truncated_under_its_buffer_does_not_crash_vitrine() {
    hostile("hostile-shm-truncated", |vitrine, mut s| {
        let (surface, _xdg, _toplevel) = s.mapped_toplevel("vitrine.test.truncated");
        let shm: WlShm = s.bind(1);
        let file = memfd(256 * 256 * 4);
        let pool = shm.create_pool(file.as_fd(), 256 * 256 * 4, &s.qh, ());
        let buffer = pool.create_buffer(0, 256, 256, 1024, wl_shm::Format::Xrgb8888, &s.qh, ());
        s.roundtrip().unwrap();
        // The memory goes away under the buffer, then the buffer is shown: reading it would
        // be a SIGBUS in vitrine.
        file.set_len(0).unwrap();
        surface.attach(Some(&buffer), 0, 0);
        surface.damage_buffer(0, 0, 256, 256);
        surface.commit();
        // The frame that cannot read it fails (smithay catches the SIGBUS); the buffer's client is
        // told and disconnected.
        let dead = wait_until(Duration::from_secs(10), || s.roundtrip().is_err());
        assert!(dead, "the client of the truncated pool is still connected; log:\n{}", vitrine.log());
        match s.roundtrip() {
            Err(Died::Protocol(e)) => {
                assert_eq!((e.object_interface.as_str(), e.code), ("wl_buffer", 2), "wl_shm.invalid_fd: {e:?}")
            }
            other => panic!("not a wl_shm error: {other:?}"),
        }
        // The next frames (and a screenshot) render without it.
        let image = vitrine.screenshot("truncated");
        assert!(image.width > 0);
    });
}

#[test]
fn a_buffer_outside_its_pool_is_refused() {
    hostile("hostile-shm-outside", |_, mut s| {
        let shm: WlShm = s.bind(1);
        let file = memfd(4096);
        let pool = shm.create_pool(file.as_fd(), 4096, &s.qh, ());
        let _b = pool.create_buffer(0, 64, 64, 256, wl_shm::Format::Xrgb8888, &s.qh, ());
        assert_error_on(&s.expect_error("a buffer larger than its pool"), &["wl_shm_pool", "wl_shm"]);
    });
}

#[test]
fn a_pool_shrunk_by_resize_is_refused() {
    hostile("hostile-shm-shrink", |_, mut s| {
        let shm: WlShm = s.bind(1);
        let file = memfd(8192);
        let pool = shm.create_pool(file.as_fd(), 8192, &s.qh, ());
        pool.resize(4096);
        assert_error_on(&s.expect_error("a pool shrunk"), &["wl_shm_pool", "wl_shm"]);
    });
}

// ---------------------------------------------------------------------------------------------
// Protocol order and values.

#[test]
fn viewport_abuse_gets_viewport_errors() {
    hostile("hostile-viewport", |vitrine, mut s| {
        let compositor: WlCompositor = s.bind(6);
        let viewporter: WpViewporter = s.bind(1);
        let surface = compositor.create_surface(&s.qh, ());
        let viewport = viewporter.get_viewport(&surface, &s.qh, ());
        viewport.set_destination(0, -5);
        assert_error_on(&s.expect_error("a negative destination"), &["wp_viewport"]);
        // A second viewport for the same surface.
        let mut s = Session::open(vitrine);
        let compositor: WlCompositor = s.bind(6);
        let viewporter: WpViewporter = s.bind(1);
        let surface = compositor.create_surface(&s.qh, ());
        let _a = viewporter.get_viewport(&surface, &s.qh, ());
        let _b = viewporter.get_viewport(&surface, &s.qh, ());
        assert_error_on(&s.expect_error("two viewports"), &["wp_viewporter", "wl_surface"]);
        // A viewport whose surface is gone, then used.
        let mut s = Session::open(vitrine);
        let compositor: WlCompositor = s.bind(6);
        let viewporter: WpViewporter = s.bind(1);
        let surface = compositor.create_surface(&s.qh, ());
        let viewport = viewporter.get_viewport(&surface, &s.qh, ());
        surface.destroy();
        viewport.set_source(0.0, 0.0, 10.0, 10.0);
        assert_error_on(&s.expect_error("a viewport of a destroyed surface"), &["wp_viewport"]);
    });
}

/// wp-color-representation: what is offered (BT.601, BT.709, BT.2020 in both ranges,
/// pre-multiplied alpha), and each misuse gets the protocol's own error: a second object for a
/// surface, a matrix or an alpha mode not offered, a YCbCr colour on an RGB buffer, an object
/// used after its surface is gone.
#[test]
fn colour_representation_misuse_gets_its_errors() {
    hostile("hostile-colour-representation", |vitrine, mut s| {
        let manager: WpColorRepresentationManagerV1 = s.bind(1);
        s.roundtrip().unwrap();
        let (c, r) = (|c: Coefficients| u32::from(c), |r: Range| u32::from(r));
        let mut offered = s.state.colour_pairs.clone();
        offered.sort();
        let mut expected = Vec::new();
        for coefficients in [Coefficients::Bt709, Coefficients::Bt601, Coefficients::Bt2020] {
            for range in [Range::Full, Range::Limited] {
                expected.push((c(coefficients), r(range)));
            }
        }
        expected.sort();
        assert_eq!(offered, expected);
        assert_eq!(s.state.alpha_modes, [u32::from(AlphaMode::PremultipliedElectrical)]);
        assert!(s.state.colour_done);
        // Stating a colour that is offered, on a surface without a buffer yet: fine.
        let compositor: WlCompositor = s.bind(6);
        let surface = compositor.create_surface(&s.qh, ());
        let rep = manager.get_surface(&surface, &s.qh, ());
        rep.set_coefficients_and_range(Coefficients::Bt601, Range::Full);
        surface.commit();
        s.roundtrip().unwrap();
        // Destroyed, the surface may have another.
        rep.destroy();
        let _again = manager.get_surface(&surface, &s.qh, ());
        s.roundtrip().unwrap();
        // Two at once.
        let _twice = manager.get_surface(&surface, &s.qh, ());
        assert_error_on(&s.expect_error("two objects for a surface"), &["wp_color_representation_manager_v1"]);

        let mut s = Session::open(vitrine);
        let manager: WpColorRepresentationManagerV1 = s.bind(1);
        let compositor: WlCompositor = s.bind(6);
        let rep = manager.get_surface(&compositor.create_surface(&s.qh, ()), &s.qh, ());
        rep.set_coefficients_and_range(Coefficients::Identity, Range::Full);
        assert_error_on(&s.expect_error("identity coefficients"), &["wp_color_representation_surface_v1"]);

        let mut s = Session::open(vitrine);
        let manager: WpColorRepresentationManagerV1 = s.bind(1);
        let compositor: WlCompositor = s.bind(6);
        let rep = manager.get_surface(&compositor.create_surface(&s.qh, ()), &s.qh, ());
        rep.set_alpha_mode(AlphaMode::Straight);
        assert_error_on(&s.expect_error("straight alpha"), &["wp_color_representation_surface_v1"]);

        // BT.601 stated for an XRGB8888 buffer: refused at the commit.
        let mut s = Session::open(vitrine);
        let (surface, _xdg, _toplevel) = s.mapped_toplevel("vitrine.test.colour");
        let manager: WpColorRepresentationManagerV1 = s.bind(1);
        let rep = manager.get_surface(&surface, &s.qh, ());
        rep.set_coefficients_and_range(Coefficients::Bt601, Range::Limited);
        surface.commit();
        let error = s.expect_error("BT.601 on an RGB buffer");
        assert_error_on(&error, &["wp_color_representation_surface_v1"]);
        assert_eq!(error.code, 3, "the pixel_format error: {error:?}");

        // Used after its surface was destroyed.
        let mut s = Session::open(vitrine);
        let manager: WpColorRepresentationManagerV1 = s.bind(1);
        let compositor: WlCompositor = s.bind(6);
        let surface = compositor.create_surface(&s.qh, ());
        let rep = manager.get_surface(&surface, &s.qh, ());
        surface.destroy();
        rep.set_coefficients_and_range(Coefficients::Bt709, Range::Limited);
        assert_error_on(&s.expect_error("an inert object"), &["wp_color_representation_surface_v1"]);
    });
}

#[test]
fn a_viewport_source_outside_the_buffer_is_refused_at_commit() {
    hostile("hostile-viewport-source", |_, mut s| {
        let (surface, _xdg, _toplevel) = s.mapped_toplevel("vitrine.test.viewport");
        let viewporter: WpViewporter = s.bind(1);
        let viewport = viewporter.get_viewport(&surface, &s.qh, ());
        // The buffer is 32x32: a source reaching to 1000 is outside it.
        viewport.set_source(0.0, 0.0, 1000.0, 1000.0);
        surface.commit();
        assert_error_on(&s.expect_error("a source outside the buffer"), &["wp_viewport"]);
    });
}

#[test]
fn xdg_protocol_order_abuse_gets_xdg_errors() {
    hostile("hostile-xdg-order", |vitrine, mut s| {
        // A second role for the same xdg_surface.
        let (_surface, xdg, _toplevel) = s.toplevel("vitrine.test.order");
        let _again = xdg.get_toplevel(&s.qh, ());
        assert_error_on(&s.expect_error("a second toplevel role"), &["xdg_surface", "xdg_wm_base"]);
        // An ack of a serial never sent.
        let mut s = Session::open(vitrine);
        let (_surface, xdg, _toplevel) = s.toplevel("vitrine.test.order");
        xdg.ack_configure(0xdead_beef);
        assert_error_on(&s.expect_error("an ack of a serial never sent"), &["xdg_surface", "xdg_wm_base"]);
        // A buffer before the first configure is acknowledged.
        let mut s = Session::open(vitrine);
        let (surface, _xdg, _toplevel) = s.toplevel("vitrine.test.order");
        let buffer = s.buffer(8, 8);
        surface.attach(Some(&buffer), 0, 0);
        surface.commit();
        assert_error_on(&s.expect_error("a buffer before the configure"), &["xdg_surface"]);
        // An xdg_surface for a surface that already has a buffer.
        let mut s = Session::open(vitrine);
        let compositor: WlCompositor = s.bind(6);
        let wm: XdgWmBase = s.bind(6);
        let surface = compositor.create_surface(&s.qh, ());
        let buffer = s.buffer(8, 8);
        surface.attach(Some(&buffer), 0, 0);
        surface.commit();
        let _xdg = wm.get_xdg_surface(&surface, &s.qh, ());
        assert_error_on(&s.expect_error("an xdg_surface over a buffer"), &["xdg_wm_base", "xdg_surface"]);
    });
}

#[test]
fn a_wm_base_destroyed_before_its_surfaces_is_refused() {
    hostile("hostile-wm-base", |_, mut s| {
        let (_surface, _xdg, _toplevel) = s.toplevel("vitrine.test.defunct");
        let wm: XdgWmBase = s.bind(6);
        let compositor: WlCompositor = s.bind(6);
        let _x = wm.get_xdg_surface(&compositor.create_surface(&s.qh, ()), &s.qh, ());
        wm.destroy();
        // xdg_wm_base.defunct_surfaces (1), on the object the client just destroyed (so the
        // client library names no interface).
        let error = s.expect_error("xdg_wm_base destroyed with live surfaces");
        assert_eq!(error.code, 1, "{error:?}");
        assert_error_on(&error, &["xdg_wm_base", ""]);
    });
}

// ---------------------------------------------------------------------------------------------
// Focus stealing: a second client cannot take the keyboard from the kiosk app.

#[test]
fn an_activation_without_an_input_serial_does_not_steal_the_focus() {
    hostile("hostile-focus", |vitrine, mut s| {
        // The thief maps a window first; then the kiosk app (this session) maps its own, the
        // newest, which gets the keyboard focus. The thief then asks, with a token made without
        // an input serial, for its older window to be activated: the focus stays.
        let mut thief = Session::open(vitrine);
        let activation: XdgActivationV1 = thief.bind(1);
        let (thief_surface, _txdg, _ttoplevel) = thief.mapped_toplevel("vitrine.test.thief");

        let seat: WlSeat = s.bind(7);
        seat.get_keyboard(&s.qh, ());
        let (surface, _xdg, _toplevel) = s.mapped_toplevel("vitrine.test.kiosk-app");
        let ours = surface.id().protocol_id();
        let focused = wait_until(Duration::from_secs(10), || {
            let _ = s.roundtrip();
            s.state.keyboard_focus == Some(ours)
        });
        assert!(focused, "the newest window did not get the keyboard focus");

        let token = activation.get_activation_token(&thief.qh, ());
        token.set_surface(&thief_surface);
        token.set_app_id("vitrine.test.thief".into());
        token.commit();
        let _ = thief.roundtrip();
        let token_string = thief.state.token.clone().unwrap_or_else(|| "no-token-given".into());
        activation.activate(token_string, &thief_surface);
        let _ = thief.roundtrip();
        std::thread::sleep(Duration::from_millis(300));
        let _ = s.roundtrip();
        assert_eq!(s.state.keyboard_focus, Some(ours), "the thief took the keyboard focus");
        assert!(vitrine.log().contains("activation token refused: no input serial"), "{}", vitrine.log());
        drop(thief);
    });
}

// ---------------------------------------------------------------------------------------------
// Clients that do not read, and bytes that are not the protocol.

/// A raw connection: bytes as the abuser wants them.
fn raw(vitrine: &Vitrine) -> UnixStream {
    UnixStream::connect(vitrine.runtime.join(&vitrine.socket)).unwrap()
}

/// A request header: object, opcode, size of the whole message.
fn message(object: u32, opcode: u16, args: &[u32]) -> Vec<u8> {
    let size = 8 + 4 * args.len() as u32;
    let mut out = Vec::new();
    out.extend_from_slice(&object.to_ne_bytes());
    out.extend_from_slice(&((size << 16) | opcode as u32).to_ne_bytes());
    for a in args {
        out.extend_from_slice(&a.to_ne_bytes());
    }
    out
}

/// Whether the peer closed the connection (read returns 0 or an error) within `timeout`,
/// reading and throwing away whatever comes first.
fn closed_by_vitrine(stream: &mut UnixStream, timeout: Duration) -> bool {
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 65536];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn garbage_bytes_on_the_socket_disconnect_only_that_client() {
    hostile("hostile-garbage", |vitrine, _| {
        let mut stream = raw(vitrine);
        let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let _ = stream.write_all(&garbage);
        assert!(closed_by_vitrine(&mut stream, Duration::from_secs(10)), "vitrine kept a client sending garbage");
    });
}

#[test]
fn a_request_on_an_object_that_does_not_exist_is_an_error() {
    hostile("hostile-invalid-object", |vitrine, _| {
        let mut stream = raw(vitrine);
        // wl_display.sync (id 2), then a request on object 77, which was never made.
        let mut bytes = message(1, 0, &[2]);
        bytes.extend(message(77, 0, &[]));
        stream.write_all(&bytes).unwrap();
        assert!(closed_by_vitrine(&mut stream, Duration::from_secs(10)), "a request on a missing object was accepted");
    });
}

#[test]
fn a_message_claiming_a_huge_size_disconnects_that_client() {
    hostile("hostile-huge-message", |vitrine, _| {
        let mut stream = raw(vitrine);
        // A header saying 65532 bytes follow, then far fewer, then nothing: vitrine must not
        // wait for the rest with its loop, nor take the size as an allocation to make.
        let mut header = Vec::new();
        header.extend_from_slice(&1u32.to_ne_bytes());
        header.extend_from_slice(&((0xfffcu32 << 16) | 1).to_ne_bytes());
        header.extend_from_slice(&[0u8; 64]);
        stream.write_all(&header).unwrap();
        // The rest never comes; the witness must go on meanwhile (checked by the frame), and
        // the connection closing is judged when the abuser leaves.
        std::thread::sleep(Duration::from_millis(500));
        drop(stream);
    });
}

#[test]
fn a_client_that_never_reads_its_events_is_disconnected() {
    hostile("hostile-never-reads", |vitrine, _| {
        let mut stream = raw(vitrine);
        // wl_display.sync makes an event (wl_callback.done) and a delete_id each time: sent a
        // hundred thousand times and never read, they fill the socket and then vitrine's buffer
        // for it, and the client is cut off rather than buffered for without end.
        stream.set_nonblocking(true).unwrap();
        let mut sent = 0u32;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut id = 2u32;
        let mut cut_off = false;
        while Instant::now() < deadline && sent < 200_000 {
            let bytes = message(1, 0, &[id]);
            match stream.write(&bytes) {
                Ok(_) => {
                    sent += 1;
                    id = if id >= 0xfeff_ffff { 2 } else { id + 1 };
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => {
                    cut_off = true;
                    break;
                }
            }
        }
        println!("never-reads: {sent} requests written before vitrine closed the connection");
        assert!(cut_off, "a client that never reads was not cut off after {sent} requests; log:\n{}", vitrine.log());
    });
}

#[test]
fn a_hundred_clients_connecting_and_vanishing_leave_nothing_behind() {
    hostile("hostile-churn", |vitrine, _| {
        for _ in 0..100 {
            let mut s = Session::open(vitrine);
            let (_surface, _xdg, _toplevel) = s.mapped_toplevel("vitrine.test.churn");
            drop(s);
        }
    });
}
