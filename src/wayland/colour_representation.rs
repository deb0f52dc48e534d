//! wp-color-representation-v1: a client states which matrix and range its YUV buffers use (a
//! player showing a BT.601 SD stream, a full-range screen recording). A plane that can be told
//! is told; under `video.colour = "exact"` a picture a plane would show wrongly is composited,
//! as for vitrine's own video. Surfaces that state nothing are BT.709 limited.
//!
//! Offered: BT.601, BT.709 and BT.2020 (non-constant luminance), each full and limited; alpha
//! pre-multiplied electrically (wl_surface's own convention). A chroma location is accepted and
//! not used: planes and EGL site chroma their own way.

use std::sync::Mutex;

use smithay::reexports::wayland_protocols::wp::color_representation::v1::server::wp_color_representation_manager_v1::{
    self as manager, WpColorRepresentationManagerV1,
};
use smithay::reexports::wayland_protocols::wp::color_representation::v1::server::wp_color_representation_surface_v1::{
    self as representation, AlphaMode, Coefficients, Range, WpColorRepresentationSurfaceV1,
};
use smithay::reexports::wayland_server::backend::GlobalId;
use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::reexports::wayland_server::{
    Client, DataInit, Dispatch, DisplayHandle, GlobalDispatch, New, Resource, WEnum, Weak,
};
use smithay::wayland::compositor::{with_states, Cacheable, SurfaceData};

use crate::state::State;
use crate::video::colour::{Colour, Matrix};

const VERSION: u32 = 1;

/// The matrices and ranges offered, as the protocol names them.
const OFFERED: [(Coefficients, Matrix); 3] = [
    (Coefficients::Bt601, Matrix::Bt601),
    (Coefficients::Bt709, Matrix::Bt709),
    (Coefficients::Bt2020, Matrix::Bt2020),
];

pub fn create_global(dh: &DisplayHandle) -> GlobalId {
    dh.create_global::<State, WpColorRepresentationManagerV1, ()>(VERSION, ())
}

/// A surface's stated colour, double-buffered: it takes effect with the surface's commit and
/// stays until changed or the object is destroyed.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatedColour(Option<Colour>);

impl Cacheable for StatedColour {
    fn commit(&mut self, _: &DisplayHandle) -> Self {
        *self
    }
    fn merge_into(self, into: &mut Self, _: &DisplayHandle) {
        *into = self;
    }
}

/// The representation object a surface has (one at most), kept with the surface.
#[derive(Default)]
struct Holder(Mutex<Option<Weak<WpColorRepresentationSurfaceV1>>>);

/// The colour of a surface's current buffer: what its client stated, else BT.709 limited.
pub fn surface_colour(states: &SurfaceData) -> Colour {
    states.cached_state.get::<StatedColour>().current().0.unwrap_or_default()
}

/// At a commit: a colour stated for a buffer that is not YCbCr is a protocol error (the
/// `pixel_format` error); the client is told which format it sent.
pub fn check_commit(surface: &WlSurface) {
    use smithay::backend::allocator::Buffer;
    use smithay::backend::renderer::utils::RendererSurfaceStateUserData;
    let (stated, object, buffer) = with_states(surface, |states| {
        let stated = states.cached_state.get::<StatedColour>().current().0;
        let object = states.data_map.get::<Holder>().and_then(|h| h.0.lock().ok()?.as_ref()?.upgrade().ok());
        let buffer = states
            .data_map
            .get::<RendererSurfaceStateUserData>()
            .and_then(|d| d.lock().ok()?.buffer().map(|b| (**b).clone()));
        (stated, object, buffer)
    });
    let (Some(colour), Some(object), Some(buffer)) = (stated, object, buffer) else { return };
    let format = match smithay::wayland::dmabuf::get_dmabuf(&buffer) {
        Ok(dmabuf) => Some(dmabuf.format().code as u32),
        Err(_) => smithay::wayland::shm::with_buffer_contents(&buffer, |_, _, data| match data.format {
            // wl_shm's two formats numbered apart from their fourcc codes.
            smithay::reexports::wayland_server::protocol::wl_shm::Format::Argb8888 => crate::fourcc::parse("AR24"),
            smithay::reexports::wayland_server::protocol::wl_shm::Format::Xrgb8888 => crate::fourcc::parse("XR24"),
            other => Some(other as u32),
        })
        .ok()
        .flatten(),
    };
    if let Some(format) = format {
        if !crate::fourcc::is_yuv(format) {
            object.post_error(
                representation::Error::PixelFormat,
                format!(
                    "{} stated for a buffer of format {} (not YCbCr)",
                    colour.describe(),
                    crate::fourcc::name(format)
                ),
            );
        }
    }
}

impl GlobalDispatch<WpColorRepresentationManagerV1, ()> for State {
    fn bind(
        _: &mut State,
        _: &DisplayHandle,
        _: &Client,
        resource: New<WpColorRepresentationManagerV1>,
        _: &(),
        init: &mut DataInit<'_, State>,
    ) {
        let manager = init.init(resource, ());
        manager.supported_alpha_mode(AlphaMode::PremultipliedElectrical);
        for (coefficients, _) in OFFERED {
            for range in [Range::Full, Range::Limited] {
                manager.supported_coefficients_and_ranges(coefficients, range);
            }
        }
        manager.done();
    }
}

impl Dispatch<WpColorRepresentationManagerV1, ()> for State {
    fn request(
        _: &mut State,
        _: &Client,
        manager: &WpColorRepresentationManagerV1,
        request: manager::Request,
        _: &(),
        _: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        let manager::Request::GetSurface { id, surface } = request else { return };
        let taken = with_states(&surface, |states| {
            let holder = states.data_map.get_or_insert_threadsafe(Holder::default);
            let held = holder.0.lock().unwrap_or_else(|e| e.into_inner());
            held.as_ref().is_some_and(|w| w.upgrade().is_ok())
        });
        if taken {
            manager.post_error(
                manager::Error::SurfaceExists,
                format!("{} already has a colour representation object", surface.id()),
            );
            return;
        }
        let object = init.init(id, surface.downgrade());
        with_states(&surface, |states| {
            if let Some(holder) = states.data_map.get::<Holder>() {
                *holder.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(object.downgrade());
            }
        });
    }
}

impl Dispatch<WpColorRepresentationSurfaceV1, Weak<WlSurface>> for State {
    fn request(
        _: &mut State,
        _: &Client,
        object: &WpColorRepresentationSurfaceV1,
        request: representation::Request,
        surface: &Weak<WlSurface>,
        _: &DisplayHandle,
        _: &mut DataInit<'_, State>,
    ) {
        let Ok(surface) = surface.upgrade() else {
            if !matches!(request, representation::Request::Destroy) {
                object.post_error(representation::Error::Inert, "its wl_surface was destroyed");
            }
            return;
        };
        let set = |colour: Option<Colour>| {
            with_states(&surface, |states| states.cached_state.get::<StatedColour>().pending().0 = colour)
        };
        match request {
            // The surface goes back to saying nothing, at its next commit.
            representation::Request::Destroy => {
                set(None);
                with_states(&surface, |states| {
                    if let Some(holder) = states.data_map.get::<Holder>() {
                        *holder.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    }
                });
            }
            representation::Request::SetAlphaMode { alpha_mode }
                if alpha_mode != WEnum::Value(AlphaMode::PremultipliedElectrical) =>
            {
                object.post_error(
                    representation::Error::AlphaMode,
                    format!("alpha mode {} is not offered (pre-multiplied electrical only)", named(alpha_mode)),
                );
            }
            representation::Request::SetCoefficientsAndRange { coefficients, range } => {
                let matrix = OFFERED.iter().find(|(c, _)| WEnum::Value(*c) == coefficients).map(|(_, m)| *m);
                let full_range = match range {
                    WEnum::Value(Range::Full) => Some(true),
                    WEnum::Value(Range::Limited) => Some(false),
                    _ => None,
                };
                match (matrix, full_range) {
                    (Some(matrix), Some(full_range)) => set(Some(Colour { matrix, full_range })),
                    _ => object.post_error(
                        representation::Error::Coefficients,
                        format!("coefficients {} with range {} are not offered", named(coefficients), named(range)),
                    ),
                }
            }
            representation::Request::SetChromaLocation { chroma_location: WEnum::Unknown(v) } => {
                object.post_error(representation::Error::ChromaLocation, format!("unknown chroma location {v}"));
            }
            _ => {}
        }
    }
}

/// An enum argument as the client sent it: its name, or the unknown number.
fn named<T: std::fmt::Debug>(value: WEnum<T>) -> String {
    match value {
        WEnum::Value(v) => format!("{v:?}"),
        WEnum::Unknown(n) => format!("{n} (unknown)"),
    }
}
