//! A small wayland-client for tests: globals, xdg toplevels, shm and dmabuf buffers.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use wayland_client::globals::{registry_queue_init, GlobalListContents};
use wayland_client::protocol::{
    wl_buffer::WlBuffer, wl_callback, wl_callback::WlCallback, wl_compositor::WlCompositor, wl_keyboard,
    wl_keyboard::WlKeyboard, wl_pointer, wl_pointer::WlPointer, wl_registry::WlRegistry, wl_seat::WlSeat, wl_shm,
    wl_shm::WlShm, wl_shm_pool::WlShmPool, wl_surface::WlSurface, wl_touch, wl_touch::WlTouch,
};
use wayland_client::{delegate_noop, Connection, Dispatch, EventQueue, Proxy, QueueHandle, WEnum};
use wayland_protocols::wp::color_representation::v1::client::{
    wp_color_representation_manager_v1::WpColorRepresentationManagerV1,
    wp_color_representation_surface_v1::WpColorRepresentationSurfaceV1,
};
use wayland_protocols::wp::linux_dmabuf::zv1::client::{
    zwp_linux_buffer_params_v1::{self, ZwpLinuxBufferParamsV1},
    zwp_linux_dmabuf_feedback_v1::{self, ZwpLinuxDmabufFeedbackV1},
    zwp_linux_dmabuf_v1::ZwpLinuxDmabufV1,
};
use wayland_protocols::xdg::decoration::zv1::client::{
    zxdg_decoration_manager_v1::ZxdgDecorationManagerV1,
    zxdg_toplevel_decoration_v1::{self, ZxdgToplevelDecorationV1},
};
use wayland_protocols::xdg::shell::client::{
    xdg_surface::{self, XdgSurface},
    xdg_toplevel::{self, XdgToplevel},
    xdg_wm_base::{self, XdgWmBase},
};
use wayland_protocols_wlr::layer_shell::v1::client::{
    zwlr_layer_shell_v1::{self, ZwlrLayerShellV1},
    zwlr_layer_surface_v1::{self, ZwlrLayerSurfaceV1},
};
use wayland_protocols_wlr::virtual_pointer::v1::client::{
    zwlr_virtual_pointer_manager_v1::ZwlrVirtualPointerManagerV1, zwlr_virtual_pointer_v1::ZwlrVirtualPointerV1,
};

#[derive(Default)]
pub struct Client {
    pub configures: HashMap<u32, (i32, i32, Vec<u32>)>,
    /// Every toplevel configure in the order it came: (toplevel id, width, height).
    pub configure_log: Vec<(u32, i32, i32)>,
    /// Layer surface configures in order: (layer surface id, serial, width, height).
    pub layer_configures: Vec<(u32, u32, u32, u32)>,
    /// Layer surfaces the compositor closed.
    pub layers_closed: Vec<u32>,
    pub pending_serial: HashMap<u32, u32>,
    pub decoration_mode: Option<zxdg_toplevel_decoration_v1::Mode>,
    pub keyboard_focus: Option<u32>,
    /// wl_keyboard.key events: (key, pressed).
    pub keys: Vec<(u32, bool)>,
    /// wl_touch.down positions in surface coordinates.
    pub touch_downs: Vec<(f64, f64)>,
    /// wl_pointer: where it entered or last moved (surface coordinates), and its buttons
    /// (button, pressed).
    pub pointer_at: Option<(f64, f64)>,
    pub buttons: Vec<(u32, bool)>,
    /// wl_output globals announced after start-up, and global names removed (any interface).
    pub outputs_announced: Vec<u32>,
    pub globals_removed: Vec<u32>,
    /// wl_surface.frame callbacks done.
    pub frame_callbacks: u32,
    /// linux-dmabuf feedback received, as of its last `done`.
    pub feedback: Option<Feedback>,
    pending_feedback: Feedback,
    pending_tranche: Tranche,
    feedback_table: Vec<(u32, u64)>,
}

/// A linux-dmabuf feedback as a client sees it.
#[derive(Debug, Default, Clone)]
pub struct Feedback {
    pub tranches: Vec<Tranche>,
    /// How many `done` events came so far.
    pub updates: u32,
}

#[derive(Debug, Default, Clone)]
pub struct Tranche {
    pub scanout: bool,
    /// (fourcc, modifier) pairs.
    pub formats: Vec<(u32, u64)>,
}

impl Feedback {
    pub fn scanout(&self) -> Option<&Tranche> {
        self.tranches.iter().find(|t| t.scanout)
    }
}

pub struct Globals {
    pub compositor: WlCompositor,
    pub shm: WlShm,
    pub wm_base: XdgWmBase,
    pub decoration: ZxdgDecorationManagerV1,
    pub _seat: WlSeat,
    pub dmabuf: Option<ZwpLinuxDmabufV1>,
    pub layer_shell: Option<ZwlrLayerShellV1>,
    /// Seen only by privileged clients.
    pub virtual_pointer: Option<ZwlrVirtualPointerManagerV1>,
    pub colour_representation: Option<WpColorRepresentationManagerV1>,
}

pub struct Window {
    pub surface: WlSurface,
    pub xdg: XdgSurface,
    pub toplevel: XdgToplevel,
}

pub fn setup(conn: &Connection) -> (Globals, EventQueue<Client>, Client) {
    let (globals, mut queue) = registry_queue_init::<Client>(conn).unwrap();
    let qh = queue.handle();
    let seat: WlSeat = globals.bind(&qh, 1..=7, ()).unwrap();
    seat.get_keyboard(&qh, ());
    seat.get_touch(&qh, ());
    seat.get_pointer(&qh, ());
    let g = Globals {
        compositor: globals.bind(&qh, 4..=6, ()).unwrap(),
        shm: globals.bind(&qh, 1..=1, ()).unwrap(),
        wm_base: globals.bind(&qh, 1..=6, ()).unwrap(),
        decoration: globals.bind(&qh, 1..=1, ()).unwrap(),
        _seat: seat,
        dmabuf: globals.bind(&qh, 3..=5, ()).ok(),
        layer_shell: globals.bind(&qh, 1..=4, ()).ok(),
        virtual_pointer: globals.bind(&qh, 1..=2, ()).ok(),
        colour_representation: globals.bind(&qh, 1..=1, ()).ok(),
    };
    let mut client = Client::default();
    queue.roundtrip(&mut client).unwrap();
    (g, queue, client)
}

pub fn toplevel(g: &Globals, qh: &QueueHandle<Client>, app_id: &str) -> Window {
    let surface = g.compositor.create_surface(qh, ());
    let xdg = g.wm_base.get_xdg_surface(&surface, qh, ());
    let toplevel = xdg.get_toplevel(qh, ());
    toplevel.set_app_id(app_id.into());
    surface.commit();
    Window { surface, xdg, toplevel }
}

/// A solid XRGB8888 buffer.
pub fn solid_buffer(g: &Globals, qh: &QueueHandle<Client>, w: i32, h: i32, rgb: [u8; 3]) -> WlBuffer {
    let size = (w * h * 4) as usize;
    let fd = unsafe { libc::memfd_create(c"vitrine-test".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    let mut file = unsafe { File::from_raw_fd(fd) };
    let pixel = [rgb[2], rgb[1], rgb[0], 0xff];
    let data: Vec<u8> = pixel.iter().copied().cycle().take(size).collect();
    file.write_all(&data).unwrap();
    let pool = g.shm.create_pool(file.as_fd(), size as i32, qh, ());
    let buffer = pool.create_buffer(0, w, h, w * 4, wl_shm::Format::Xrgb8888, qh, ());
    pool.destroy();
    buffer
}

pub fn dispatch_until(queue: &mut EventQueue<Client>, client: &mut Client, mut done: impl FnMut(&Client) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(client) {
        assert!(Instant::now() < deadline, "timed out waiting for the compositor");
        queue.roundtrip(client).unwrap();
    }
}

/// Wait for the first configure, ack it, and draw a full-size buffer of `rgb`.
pub fn map(g: &Globals, queue: &mut EventQueue<Client>, client: &mut Client, w: &Window, rgb: [u8; 3]) -> (i32, i32) {
    let id = w.toplevel.id().protocol_id();
    let xid = w.xdg.id().protocol_id();
    dispatch_until(queue, client, |c| c.configures.contains_key(&id) && c.pending_serial.contains_key(&xid));
    let (width, height, _) = client.configures[&id].clone();
    w.xdg.ack_configure(client.pending_serial[&xid]);
    let buffer = solid_buffer(g, &queue.handle(), width, height, rgb);
    w.surface.attach(Some(&buffer), 0, 0);
    w.surface.damage_buffer(0, 0, width, height);
    w.surface.commit();
    queue.roundtrip(client).unwrap();
    (width, height)
}

impl Dispatch<WlRegistry, GlobalListContents> for Client {
    fn event(
        state: &mut Self,
        _: &WlRegistry,
        event: <WlRegistry as Proxy>::Event,
        _: &GlobalListContents,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match event {
            wayland_client::protocol::wl_registry::Event::Global { name, interface, .. }
                if interface == "wl_output" =>
            {
                state.outputs_announced.push(name)
            }
            wayland_client::protocol::wl_registry::Event::GlobalRemove { name } => state.globals_removed.push(name),
            _ => {}
        }
    }
}

/// The names of the wl_output globals advertised when the client connected.
pub fn output_globals(conn: &Connection) -> Vec<u32> {
    let (globals, _queue) = registry_queue_init::<Client>(conn).unwrap();
    globals.contents().with_list(|list| list.iter().filter(|g| g.interface == "wl_output").map(|g| g.name).collect())
}

impl Dispatch<XdgWmBase, ()> for Client {
    fn event(_: &mut Self, wm: &XdgWmBase, event: xdg_wm_base::Event, _: &(), _: &Connection, _: &QueueHandle<Self>) {
        if let xdg_wm_base::Event::Ping { serial } = event {
            wm.pong(serial);
        }
    }
}

impl Dispatch<XdgSurface, ()> for Client {
    fn event(
        state: &mut Self,
        xdg: &XdgSurface,
        event: xdg_surface::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_surface::Event::Configure { serial } = event {
            state.pending_serial.insert(xdg.id().protocol_id(), serial);
        }
    }
}

impl Dispatch<XdgToplevel, ()> for Client {
    fn event(
        state: &mut Self,
        t: &XdgToplevel,
        event: xdg_toplevel::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_toplevel::Event::Configure { width, height, states } = event {
            let states = states.chunks_exact(4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]])).collect();
            state.configures.insert(t.id().protocol_id(), (width, height, states));
            state.configure_log.push((t.id().protocol_id(), width, height));
        }
    }
}

impl Dispatch<ZxdgToplevelDecorationV1, ()> for Client {
    fn event(
        state: &mut Self,
        _: &ZxdgToplevelDecorationV1,
        event: zxdg_toplevel_decoration_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let zxdg_toplevel_decoration_v1::Event::Configure { mode: WEnum::Value(mode) } = event {
            state.decoration_mode = Some(mode);
        }
    }
}

impl Dispatch<WlKeyboard, ()> for Client {
    fn event(
        state: &mut Self,
        _: &WlKeyboard,
        event: wl_keyboard::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match event {
            wl_keyboard::Event::Enter { surface, .. } => state.keyboard_focus = Some(surface.id().protocol_id()),
            wl_keyboard::Event::Leave { .. } => state.keyboard_focus = None,
            wl_keyboard::Event::Key { key, state: WEnum::Value(key_state), .. } => {
                state.keys.push((key, key_state == wl_keyboard::KeyState::Pressed))
            }
            _ => {}
        }
    }
}

delegate_noop!(Client: WlCompositor);
delegate_noop!(Client: ZwlrLayerShellV1);
delegate_noop!(Client: ZwlrVirtualPointerManagerV1);
delegate_noop!(Client: ZwlrVirtualPointerV1);

impl Dispatch<ZwlrLayerSurfaceV1, ()> for Client {
    fn event(
        state: &mut Self,
        layer: &ZwlrLayerSurfaceV1,
        event: zwlr_layer_surface_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        let id = layer.id().protocol_id();
        match event {
            zwlr_layer_surface_v1::Event::Configure { serial, width, height } => {
                state.layer_configures.push((id, serial, width, height))
            }
            zwlr_layer_surface_v1::Event::Closed => state.layers_closed.push(id),
            _ => {}
        }
    }
}
delegate_noop!(Client: WlShmPool);
delegate_noop!(Client: ZxdgDecorationManagerV1);
delegate_noop!(Client: ignore WlShm);
delegate_noop!(Client: ignore WpColorRepresentationManagerV1);
delegate_noop!(Client: WpColorRepresentationSurfaceV1);
delegate_noop!(Client: ignore WlBuffer);
delegate_noop!(Client: ignore WlSurface);
delegate_noop!(Client: ignore WlSeat);

impl Dispatch<WlPointer, ()> for Client {
    fn event(state: &mut Self, _: &WlPointer, event: wl_pointer::Event, _: &(), _: &Connection, _: &QueueHandle<Self>) {
        match event {
            wl_pointer::Event::Enter { surface_x, surface_y, .. }
            | wl_pointer::Event::Motion { surface_x, surface_y, .. } => state.pointer_at = Some((surface_x, surface_y)),
            wl_pointer::Event::Button { button, state: WEnum::Value(button_state), .. } => {
                state.buttons.push((button, button_state == wl_pointer::ButtonState::Pressed))
            }
            _ => {}
        }
    }
}

impl Dispatch<WlTouch, ()> for Client {
    fn event(state: &mut Self, _: &WlTouch, event: wl_touch::Event, _: &(), _: &Connection, _: &QueueHandle<Self>) {
        if let wl_touch::Event::Down { x, y, .. } = event {
            state.touch_downs.push((x, y));
        }
    }
}
delegate_noop!(Client: ignore ZwpLinuxDmabufV1);

impl Dispatch<ZwpLinuxDmabufFeedbackV1, ()> for Client {
    fn event(
        state: &mut Self,
        _: &ZwpLinuxDmabufFeedbackV1,
        event: zwp_linux_dmabuf_feedback_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        use zwp_linux_dmabuf_feedback_v1::Event;
        match event {
            Event::FormatTable { fd, size } => {
                // 16 bytes an entry: u32 format, u32 padding, u64 modifier.
                let ptr = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        size as usize,
                        libc::PROT_READ,
                        libc::MAP_PRIVATE,
                        fd.as_raw_fd(),
                        0,
                    )
                };
                assert_ne!(ptr, libc::MAP_FAILED, "cannot map the format table");
                let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, size as usize) };
                state.feedback_table = bytes
                    .chunks_exact(16)
                    .map(|e| {
                        (
                            u32::from_ne_bytes(e[0..4].try_into().unwrap()),
                            u64::from_ne_bytes(e[8..16].try_into().unwrap()),
                        )
                    })
                    .collect();
                unsafe { libc::munmap(ptr, size as usize) };
            }
            Event::TrancheFormats { indices } => {
                let table = &state.feedback_table;
                state.pending_tranche.formats.extend(
                    indices
                        .chunks_exact(2)
                        .filter_map(|i| table.get(u16::from_ne_bytes([i[0], i[1]]) as usize).copied()),
                );
            }
            Event::TrancheFlags { flags: WEnum::Value(flags) } => {
                state.pending_tranche.scanout = flags.contains(zwp_linux_dmabuf_feedback_v1::TrancheFlags::Scanout);
            }
            Event::TrancheDone => {
                let tranche = std::mem::take(&mut state.pending_tranche);
                state.pending_feedback.tranches.push(tranche);
            }
            Event::Done => {
                let mut done = std::mem::take(&mut state.pending_feedback);
                done.updates = state.feedback.as_ref().map(|f| f.updates).unwrap_or(0) + 1;
                state.feedback = Some(done);
            }
            _ => {}
        }
    }
}

delegate_noop!(Client: ignore ZwpLinuxBufferParamsV1);

/// A dmabuf made from memory through /dev/udmabuf, with its memfd to write pixels through.
pub struct Udmabuf {
    pub dmabuf: OwnedFd,
    pub memfd: File,
}

/// Allocate `size` bytes (rounded up to pages) as a dmabuf via /dev/udmabuf.
pub fn udmabuf(size: usize) -> std::io::Result<Udmabuf> {
    #[repr(C)]
    struct UdmabufCreate {
        memfd: u32,
        flags: u32,
        offset: u64,
        size: u64,
    }
    const UDMABUF_CREATE: libc::c_ulong = 0x4018_7542; // _IOW('u', 0x42, struct udmabuf_create)
    let size = size.div_ceil(4096) * 4096;
    let memfd = unsafe { libc::memfd_create(c"vitrine-udmabuf".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if memfd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let memfd = unsafe { File::from_raw_fd(memfd) };
    memfd.set_len(size as u64)?;
    if unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&memfd), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let dev = std::fs::OpenOptions::new().read(true).write(true).open("/dev/udmabuf")?;
    let create = UdmabufCreate {
        memfd: std::os::fd::AsRawFd::as_raw_fd(&memfd) as u32,
        flags: 1, // UDMABUF_FLAGS_CLOEXEC
        offset: 0,
        size: size as u64,
    };
    let fd = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&dev), UDMABUF_CREATE, &create) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Udmabuf { dmabuf: unsafe { OwnedFd::from_raw_fd(fd) }, memfd })
}

/// A layer-shell surface named `namespace` on the overlay layer, `size` pixels, centred at the
/// top `top` pixels down, its first configure acknowledged (nothing attached yet).
pub fn top_overlay(
    g: &Globals,
    queue: &mut EventQueue<Client>,
    client: &mut Client,
    namespace: &str,
    size: (i32, i32),
    top: i32,
) -> (WlSurface, ZwlrLayerSurfaceV1) {
    let qh = queue.handle();
    let surface = g.compositor.create_surface(&qh, ());
    let shell = g.layer_shell.as_ref().expect("zwlr_layer_shell_v1 is advertised");
    let overlay =
        shell.get_layer_surface(&surface, None, zwlr_layer_shell_v1::Layer::Overlay, namespace.into(), &qh, ());
    overlay.set_anchor(zwlr_layer_surface_v1::Anchor::Top);
    overlay.set_size(size.0 as u32, size.1 as u32);
    overlay.set_margin(top, 0, 0, 0);
    surface.commit();
    let id = overlay.id().protocol_id();
    dispatch_until(queue, client, |c| c.layer_configures.iter().any(|l| l.0 == id));
    let (_, serial, ..) = *client.layer_configures.iter().find(|l| l.0 == id).unwrap();
    overlay.ack_configure(serial);
    (surface, overlay)
}

/// A linux-dmabuf wl_buffer over `planes` = [(offset, stride)] of one dmabuf, LINEAR.
pub fn dmabuf_buffer(
    g: &Globals,
    qh: &QueueHandle<Client>,
    buf: &Udmabuf,
    size: (i32, i32),
    fourcc: u32,
    planes: &[(u32, u32)],
) -> WlBuffer {
    let dmabuf = g.dmabuf.as_ref().expect("the compositor advertises zwp_linux_dmabuf_v1");
    let params = dmabuf.create_params(qh, ());
    for (i, (offset, stride)) in planes.iter().enumerate() {
        params.add(buf.dmabuf.as_fd(), i as u32, *offset, *stride, 0, 0);
    }
    params.create_immed(size.0, size.1, fourcc, zwp_linux_buffer_params_v1::Flags::empty(), qh, ())
}

/// Frame callbacks done, counted.
impl Dispatch<WlCallback, ()> for Client {
    fn event(
        state: &mut Self,
        _: &WlCallback,
        event: wl_callback::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wl_callback::Event::Done { .. } = event {
            state.frame_callbacks += 1;
        }
    }
}
