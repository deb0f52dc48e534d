//! vitrine as a WLCS module: the suite's runner (`wlcs`, Debian's package) loads this library,
//! finds `wlcs_server_integration`, and for each test makes a server, starts it, connects its
//! clients through `create_client_socket`, places their windows and drives the pointer and
//! touch. The server is vitrine's headless compositor running on its own thread
//! (`vitrine::embed`); every hook returns once vitrine has acted on it.
//!
//! The C interface is WLCS 1.5's (`wlcs/display_server.h`, `pointer.h`, `touch.h`): display
//! server version 3 with `start` (so every hook is called on the suite's own thread), pointer
//! and touch version 1. Touch coordinates come as plain integers, pointer coordinates as
//! `wl_fixed_t`.

use std::ffi::{c_char, c_int, c_void};
use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};

use vitrine::embed::{Embedded, Input, Options};

type Fixed = i32;

fn from_fixed(v: Fixed) -> f64 {
    v as f64 / 256.0
}

#[repr(C)]
pub struct WlcsServerIntegration {
    version: u32,
    create_server: Option<unsafe extern "C" fn(c_int, *const *const c_char) -> *mut WlcsDisplayServer>,
    destroy_server: Option<unsafe extern "C" fn(*mut WlcsDisplayServer)>,
}

#[repr(C)]
pub struct WlcsDisplayServer {
    version: u32,
    start: Option<unsafe extern "C" fn(*mut WlcsDisplayServer)>,
    stop: Option<unsafe extern "C" fn(*mut WlcsDisplayServer)>,
    create_client_socket: Option<unsafe extern "C" fn(*mut WlcsDisplayServer) -> c_int>,
    position_window_absolute:
        Option<unsafe extern "C" fn(*mut WlcsDisplayServer, *mut c_void, *mut c_void, c_int, c_int)>,
    create_pointer: Option<unsafe extern "C" fn(*mut WlcsDisplayServer) -> *mut WlcsPointer>,
    create_touch: Option<unsafe extern "C" fn(*mut WlcsDisplayServer) -> *mut WlcsTouch>,
    get_descriptor: Option<unsafe extern "C" fn(*const WlcsDisplayServer) -> *const WlcsIntegrationDescriptor>,
    start_on_this_thread: Option<unsafe extern "C" fn(*mut WlcsDisplayServer, *mut c_void)>,
}

#[repr(C)]
pub struct WlcsPointer {
    version: u32,
    move_absolute: Option<unsafe extern "C" fn(*mut WlcsPointer, Fixed, Fixed)>,
    move_relative: Option<unsafe extern "C" fn(*mut WlcsPointer, Fixed, Fixed)>,
    button_up: Option<unsafe extern "C" fn(*mut WlcsPointer, c_int)>,
    button_down: Option<unsafe extern "C" fn(*mut WlcsPointer, c_int)>,
    destroy: Option<unsafe extern "C" fn(*mut WlcsPointer)>,
}

#[repr(C)]
pub struct WlcsTouch {
    version: u32,
    touch_down: Option<unsafe extern "C" fn(*mut WlcsTouch, c_int, c_int)>,
    touch_move: Option<unsafe extern "C" fn(*mut WlcsTouch, c_int, c_int)>,
    touch_up: Option<unsafe extern "C" fn(*mut WlcsTouch)>,
    destroy: Option<unsafe extern "C" fn(*mut WlcsTouch)>,
}

#[repr(C)]
pub struct WlcsExtensionDescriptor {
    name: *const c_char,
    version: u32,
}

#[repr(C)]
pub struct WlcsIntegrationDescriptor {
    version: u32,
    num_extensions: usize,
    supported_extensions: *const WlcsExtensionDescriptor,
}

// The descriptor is constant data; its pointers name statics.
unsafe impl Sync for WlcsIntegrationDescriptor {}
unsafe impl Sync for WlcsExtensionDescriptor {}

macro_rules! extension {
    ($name:literal, $version:literal) => {
        WlcsExtensionDescriptor { name: concat!($name, "\0").as_ptr() as *const c_char, version: $version }
    };
}

/// The globals vitrine advertises headless, at their versions (linux-dmabuf needs a DRM
/// device, so it is not among them). A test needing another is skipped, not failed.
static EXTENSIONS: [WlcsExtensionDescriptor; 14] = [
    extension!("wl_compositor", 6),
    extension!("wl_subcompositor", 1),
    extension!("wl_shm", 2),
    extension!("wl_seat", 9),
    extension!("wl_output", 4),
    extension!("wl_data_device_manager", 3),
    extension!("xdg_wm_base", 6),
    extension!("zxdg_output_manager_v1", 3),
    extension!("zxdg_decoration_manager_v1", 1),
    extension!("wp_presentation", 2),
    extension!("wp_viewporter", 1),
    extension!("wp_single_pixel_buffer_manager_v1", 1),
    extension!("wp_content_type_manager_v1", 1),
    extension!("xdg_activation_v1", 1),
];

static DESCRIPTOR: WlcsIntegrationDescriptor = WlcsIntegrationDescriptor {
    version: 1,
    num_extensions: EXTENSIONS.len(),
    supported_extensions: &EXTENSIONS as *const _ as *const WlcsExtensionDescriptor,
};

/// What the suite looks up in this library (its C name).
#[allow(non_upper_case_globals)]
#[no_mangle]
pub static wlcs_server_integration: WlcsServerIntegration =
    WlcsServerIntegration { version: 1, create_server: Some(create_server), destroy_server: Some(destroy_server) };

#[link(name = "wayland-client")]
extern "C" {
    fn wl_display_get_fd(display: *mut c_void) -> c_int;
    fn wl_proxy_get_id(proxy: *mut c_void) -> u32;
}

/// A server: the suite's struct first (it is handed back as a pointer to it), then vitrine.
#[repr(C)]
struct Server {
    base: WlcsDisplayServer,
    vitrine: Option<Embedded>,
}

#[repr(C)]
struct Pointer {
    base: WlcsPointer,
    server: *const Server,
}

#[repr(C)]
struct Touch {
    base: WlcsTouch,
    server: *const Server,
}

/// Run `f`, or give `fallback` if it panicked: a panic must not unwind into the suite.
fn guarded<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

unsafe fn server<'a>(s: *const WlcsDisplayServer) -> &'a Server {
    &*(s as *const Server)
}

unsafe fn server_mut<'a>(s: *mut WlcsDisplayServer) -> &'a mut Server {
    &mut *(s as *mut Server)
}

unsafe fn with_vitrine(s: *const Server, f: impl FnOnce(&Embedded)) {
    if let Some(vitrine) = (*s).vitrine.as_ref() {
        guarded((), || f(vitrine));
    }
}

unsafe extern "C" fn create_server(_argc: c_int, _argv: *const *const c_char) -> *mut WlcsDisplayServer {
    guarded(std::ptr::null_mut(), || {
        // A write to a client that is gone must be an error, not the end of the suite's process.
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        vitrine::logging::init(&std::env::var("VITRINE_WLCS_LOG").unwrap_or_else(|_| "warn".into()));
        let server = Box::new(Server {
            base: WlcsDisplayServer {
                version: 3,
                start: Some(start),
                stop: Some(stop),
                create_client_socket: Some(create_client_socket),
                position_window_absolute: Some(position_window_absolute),
                create_pointer: Some(create_pointer),
                create_touch: Some(create_touch),
                get_descriptor: Some(get_descriptor),
                start_on_this_thread: None,
            },
            vitrine: None,
        });
        Box::into_raw(server) as *mut WlcsDisplayServer
    })
}

unsafe extern "C" fn destroy_server(s: *mut WlcsDisplayServer) {
    if !s.is_null() {
        guarded((), || drop(Box::from_raw(s as *mut Server)));
    }
}

unsafe extern "C" fn start(s: *mut WlcsDisplayServer) {
    let server = server_mut(s);
    guarded((), || {
        let options = Options { output: "1024x768@60".parse().expect("an output"), buffer_before_configure: true };
        match Embedded::start(options) {
            Ok(vitrine) => server.vitrine = Some(vitrine),
            Err(err) => eprintln!("vitrine-wlcs: cannot start vitrine: {err}"),
        }
    });
}

unsafe extern "C" fn stop(s: *mut WlcsDisplayServer) {
    let server = server_mut(s);
    // Dropping it stops the loop and joins its thread.
    guarded((), || drop(server.vitrine.take()));
}

unsafe extern "C" fn create_client_socket(s: *mut WlcsDisplayServer) -> c_int {
    let server = server(s);
    guarded(-1, || {
        let Some(vitrine) = server.vitrine.as_ref() else { return -1 };
        let Ok((ours, theirs)) = UnixStream::pair() else { return -1 };
        let fd = theirs.into_raw_fd();
        // The suite connects libwayland-client to this descriptor: its number is the client's key.
        vitrine.add_client(ours, fd);
        fd
    })
}

unsafe extern "C" fn position_window_absolute(
    s: *mut WlcsDisplayServer,
    display: *mut c_void,
    surface: *mut c_void,
    x: c_int,
    y: c_int,
) {
    let (key, id) = (wl_display_get_fd(display), wl_proxy_get_id(surface));
    with_vitrine(server(s), |v| v.place(key, id, x, y));
}

unsafe extern "C" fn get_descriptor(_s: *const WlcsDisplayServer) -> *const WlcsIntegrationDescriptor {
    &DESCRIPTOR
}

unsafe extern "C" fn create_pointer(s: *mut WlcsDisplayServer) -> *mut WlcsPointer {
    let pointer = Box::new(Pointer {
        base: WlcsPointer {
            version: 1,
            move_absolute: Some(pointer_move_absolute),
            move_relative: Some(pointer_move_relative),
            button_up: Some(pointer_button_up),
            button_down: Some(pointer_button_down),
            destroy: Some(pointer_destroy),
        },
        server: s as *const Server,
    });
    Box::into_raw(pointer) as *mut WlcsPointer
}

unsafe fn pointer_input(p: *mut WlcsPointer, input: Input) {
    with_vitrine((*(p as *const Pointer)).server, |v| v.input(input));
}

unsafe extern "C" fn pointer_move_absolute(p: *mut WlcsPointer, x: Fixed, y: Fixed) {
    pointer_input(p, Input::PointerTo(from_fixed(x), from_fixed(y)));
}

unsafe extern "C" fn pointer_move_relative(p: *mut WlcsPointer, dx: Fixed, dy: Fixed) {
    pointer_input(p, Input::PointerBy(from_fixed(dx), from_fixed(dy)));
}

unsafe extern "C" fn pointer_button_up(p: *mut WlcsPointer, button: c_int) {
    pointer_input(p, Input::Button(button as u32, false));
}

unsafe extern "C" fn pointer_button_down(p: *mut WlcsPointer, button: c_int) {
    pointer_input(p, Input::Button(button as u32, true));
}

unsafe extern "C" fn pointer_destroy(p: *mut WlcsPointer) {
    if !p.is_null() {
        drop(Box::from_raw(p as *mut Pointer));
    }
}

unsafe extern "C" fn create_touch(s: *mut WlcsDisplayServer) -> *mut WlcsTouch {
    let touch = Box::new(Touch {
        base: WlcsTouch {
            version: 1,
            touch_down: Some(touch_down),
            touch_move: Some(touch_move),
            touch_up: Some(touch_up),
            destroy: Some(touch_destroy),
        },
        server: s as *const Server,
    });
    Box::into_raw(touch) as *mut WlcsTouch
}

unsafe fn touch_input(t: *mut WlcsTouch, input: Input) {
    with_vitrine((*(t as *const Touch)).server, |v| v.input(input));
}

// One touch point per WlcsTouch: the suite makes another WlcsTouch for a second finger.
unsafe extern "C" fn touch_down(t: *mut WlcsTouch, x: c_int, y: c_int) {
    touch_input(t, Input::TouchDown(touch_id(t), x as f64, y as f64));
}

unsafe extern "C" fn touch_move(t: *mut WlcsTouch, x: c_int, y: c_int) {
    touch_input(t, Input::TouchMove(touch_id(t), x as f64, y as f64));
}

unsafe extern "C" fn touch_up(t: *mut WlcsTouch) {
    touch_input(t, Input::TouchUp(touch_id(t)));
}

/// A touch point's id: its WlcsTouch, told apart by address.
fn touch_id(t: *mut WlcsTouch) -> i32 {
    (t as usize >> 4) as i32 & 0x7fff_ffff
}

unsafe extern "C" fn touch_destroy(t: *mut WlcsTouch) {
    if !t.is_null() {
        drop(Box::from_raw(t as *mut Touch));
    }
}
