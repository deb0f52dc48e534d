//! Kiosk policy: every toplevel fullscreen on its output (by app id, else the first output),
//! newest on top with keyboard focus, no decorations, a pointer that shows only while it moves.

pub mod app;
mod policy;
pub use policy::launch_app;
pub mod schedule;

use std::cell::{Cell, RefCell};
use std::time::Instant;

use smithay::desktop::Window;
use smithay::input::pointer::CursorImageStatus;
use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::utils::{Logical, Point, Rectangle};
use smithay::wayland::compositor::with_states;
use smithay::wayland::shell::xdg::XdgToplevelSurfaceData;

use app::AppSupervisor;

/// Kiosk bookkeeping kept in a window's user data.
#[derive(Default)]
struct WindowKiosk {
    /// The output the window was put on.
    output: RefCell<Option<String>>,
    /// Whether the toplevel has committed a buffer yet.
    mapped: Cell<bool>,
    /// Where an embedder put it (`embed`), instead of centred on its output.
    placed: Cell<Option<Point<i32, Logical>>>,
    /// Its initial commit came while there was no output: its first configure waits for one,
    /// so that it carries a real size (a 0×0 fullscreen configure makes some clients give up).
    awaiting_output: Cell<bool>,
}

pub struct Kiosk {
    /// Toplevels bottom to top (newest last).
    pub stack: Vec<Window>,
    pub cursor_image: CursorImageStatus,
    pub pointer_location: Point<f64, Logical>,
    pub last_pointer_motion: Option<Instant>,
    /// The surface the pointer was last sent over, and that surface's origin then.
    pub pointer_under: Option<(smithay::reexports::wayland_server::backend::ObjectId, Point<f64, Logical>)>,
    pub app: Option<AppSupervisor>,
    /// Touchscreens that name their output (udev property WL_OUTPUT), by input device id.
    pub device_outputs: std::collections::HashMap<String, String>,
}

impl Kiosk {
    pub fn new() -> Self {
        Kiosk {
            stack: Vec::new(),
            cursor_image: CursorImageStatus::default_named(),
            pointer_location: (0.0, 0.0).into(),
            last_pointer_motion: None,
            pointer_under: None,
            app: None,
            device_outputs: Default::default(),
        }
    }
}

impl Default for Kiosk {
    fn default() -> Self {
        Kiosk::new()
    }
}

/// The app id of a toplevel, if it set one.
pub fn app_id(surface: &WlSurface) -> Option<String> {
    with_states(surface, |states| {
        states.data_map.get::<XdgToplevelSurfaceData>().and_then(|d| d.lock().ok().and_then(|d| d.app_id.clone()))
    })
}

/// The output name a window was placed on.
pub fn window_output(window: &Window) -> Option<String> {
    window.user_data().get::<WindowKiosk>().and_then(|k| k.output.borrow().clone())
}

fn is_mapped(window: &Window) -> bool {
    window.user_data().get::<WindowKiosk>().map(|k| k.mapped.get()).unwrap_or(false)
}

/// Where a picture of `size` goes in `zone`.
pub fn video_rect(
    zone: Rectangle<i32, Logical>,
    size: (u32, u32),
    scale: crate::config::VideoScale,
) -> Rectangle<i32, Logical> {
    let (zw, zh) = (zone.size.w.max(1) as i64, zone.size.h.max(1) as i64);
    let (vw, vh) = (size.0.max(1) as i64, size.1.max(1) as i64);
    let (w, h) = match scale {
        crate::config::VideoScale::None => (vw, vh),
        crate::config::VideoScale::Fit if zw * vh <= zh * vw => (zw, zw * vh / vw),
        crate::config::VideoScale::Fit => (zh * vw / vh, zh),
    };
    let loc = (zone.loc.x + ((zw - w) / 2) as i32, zone.loc.y + ((zh - h) / 2) as i32);
    Rectangle::new(loc.into(), (w as i32, h as i32).into())
}

#[cfg(test)]
mod video_rect_tests {
    use super::*;
    use crate::config::VideoScale;

    #[test]
    fn pictures_are_letterboxed_or_centred_in_their_zone() {
        let out = Rectangle::from_size((1920, 1080).into());
        assert_eq!(video_rect(out, (1920, 1080), VideoScale::Fit), out);
        // 4:3 into 16:9: pillarboxed.
        assert_eq!(video_rect(out, (640, 480), VideoScale::Fit), Rectangle::new((240, 0).into(), (1440, 1080).into()));
        assert_eq!(video_rect(out, (640, 480), VideoScale::None), Rectangle::new((640, 300).into(), (640, 480).into()));
        let zone = Rectangle::new((100, 50).into(), (800, 800).into());
        assert_eq!(
            video_rect(zone, (1920, 1080), VideoScale::Fit),
            Rectangle::new((100, 225).into(), (800, 450).into())
        );
    }
}
