//! What one output should show in one frame, independent of how a backend shows it.
//!
//! A [`Scene`] is an ordered list of [`Layer`]s, bottom to top. The kiosk builds it from the
//! window layout; each backend turns it into pixels (today by composition; planes come with the
//! DRM backend).

use smithay::desktop::Window;
use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::utils::{Logical, Point, Rectangle};

/// Where a layer's pixels come from.
#[derive(Debug, Clone)]
pub enum LayerSource {
    /// A client's toplevel with its subsurfaces and popups.
    Client(Window),
    /// A client's layer-shell surface (wallpaper, bar, overlay) with its subsurfaces and popups.
    Shell(smithay::desktop::LayerSurface),
    /// A flat colour (RGBA, 0..1), e.g. the background.
    Solid([f32; 4]),
    /// The pointer.
    Cursor(CursorSource),
    /// A decoded video picture.
    Video(crate::video::VideoFrame),
    /// The background image (`[background] image`), filling the layer's rectangle.
    Image(std::sync::Arc<crate::image::RgbaImage>),
    /// An input method's candidate popup (a surface and its subsurfaces), next to the text it is
    /// for.
    ImePopup(WlSurface),
}

#[derive(Debug, Clone)]
pub enum CursorSource {
    /// vitrine's own cursor (the client asked for the default one).
    Default,
    /// A client's cursor surface; the hotspot is subtracted from the layer's position.
    Surface { surface: WlSurface, hotspot: Point<i32, Logical> },
}

#[derive(Debug, Clone)]
pub struct Layer {
    pub source: LayerSource,
    /// Destination rectangle in output-local logical coordinates.
    pub dst: Rectangle<i32, Logical>,
    pub alpha: f32,
}

#[derive(Debug, Clone, Default)]
pub struct Scene {
    /// What shows where no layer covers the output (RGBA, 0..1).
    pub background: [f32; 4],
    /// Bottom to top.
    pub layers: Vec<Layer>,
    /// `[video] colour`: whether composition must get every picture's colours right, at the
    /// cost of a CPU conversion where the GPU's sampling would not.
    pub colour: crate::config::ColourPolicy,
}

impl Scene {
    /// The video picture in this scene, if any.
    pub fn video(&self) -> Option<&crate::video::VideoFrame> {
        self.layers.iter().find_map(|l| match &l.source {
            LayerSource::Video(f) => Some(f),
            _ => None,
        })
    }

    /// Layer-shell surfaces in this scene, bottom to top.
    pub fn shell_surfaces(&self) -> impl Iterator<Item = &smithay::desktop::LayerSurface> {
        self.layers.iter().filter_map(|l| match &l.source {
            LayerSource::Shell(s) => Some(s),
            _ => None,
        })
    }

    /// Client windows in this scene, bottom to top.
    pub fn windows(&self) -> impl Iterator<Item = &Window> {
        self.layers.iter().filter_map(|l| match &l.source {
            LayerSource::Client(w) => Some(w),
            _ => None,
        })
    }
}
