//! Client buffers on planes: which client surfaces could be scanned out, their dmabufs'
//! framebuffers (imported once per buffer), and the plane state written for them.

use std::os::fd::AsFd;

use drm::buffer::{DrmFourcc, DrmModifier, PlanarBuffer};
use drm::control::{framebuffer, Device as ControlDevice, FbCmd2Flags};
use smithay::backend::allocator::dmabuf::{Dmabuf, WeakDmabuf};
use smithay::backend::allocator::Buffer as _;
use smithay::backend::renderer::utils::{Buffer, RendererSurfaceStateUserData};
use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::utils::{Logical, Point, Rectangle};
use smithay::wayland::compositor::{with_surface_tree_upward, TraversalAction};
use smithay::wayland::dmabuf::get_dmabuf;

use super::device::{Card, MOD_INVALID, MOD_LINEAR};
use crate::scene::{LayerSource, Scene};

/// A framebuffer per client dmabuf, created on first use and destroyed with the buffer.
#[derive(Default)]
pub struct FbCache {
    entries: Vec<(WeakDmabuf, framebuffer::Handle)>,
}

struct DmabufPlanes<'a> {
    dmabuf: &'a Dmabuf,
    format: DrmFourcc,
    handles: [Option<drm::buffer::Handle>; 4],
}

impl PlanarBuffer for DmabufPlanes<'_> {
    fn size(&self) -> (u32, u32) {
        let s = self.dmabuf.size();
        (s.w as u32, s.h as u32)
    }
    fn format(&self) -> DrmFourcc {
        self.format
    }
    fn modifier(&self) -> Option<DrmModifier> {
        match u64::from(self.dmabuf.format().modifier) {
            MOD_LINEAR | MOD_INVALID => None,
            m => Some(DrmModifier::from(m)),
        }
    }
    fn pitches(&self) -> [u32; 4] {
        let mut out = [0; 4];
        for (o, s) in out.iter_mut().zip(self.dmabuf.strides()) {
            *o = s;
        }
        out
    }
    fn handles(&self) -> [Option<drm::buffer::Handle>; 4] {
        self.handles
    }
    fn offsets(&self) -> [u32; 4] {
        let mut out = [0; 4];
        for (o, s) in out.iter_mut().zip(self.dmabuf.offsets()) {
            *o = s;
        }
        out
    }
}

impl FbCache {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The framebuffer of `dmabuf`, importing it (PRIME + ADDFB2) the first time. Returns whether
    /// a framebuffer was created.
    pub fn get_or_add(&mut self, card: &Card, dmabuf: &Dmabuf) -> Result<(framebuffer::Handle, bool), String> {
        if let Some((_, fb)) = self.entries.iter().find(|(w, _)| w.upgrade().as_ref() == Some(dmabuf)) {
            return Ok((*fb, false));
        }
        let fb = add_framebuffer(card, dmabuf)?;
        self.entries.push((dmabuf.weak(), fb));
        Ok((fb, true))
    }

    /// Destroy the framebuffers of buffers that no longer exist.
    pub fn prune(&mut self, card: &Card) {
        self.entries.retain(|(weak, fb)| {
            let alive = weak.upgrade().is_some();
            if !alive {
                let _ = card.destroy_framebuffer(*fb);
            }
            alive
        });
    }
}

/// A framebuffer for a dmabuf: its planes imported as GEM handles (PRIME), ADDFB2, the handles
/// closed again (the framebuffer keeps the memory).
pub fn add_framebuffer(card: &Card, dmabuf: &Dmabuf) -> Result<framebuffer::Handle, String> {
    let code = dmabuf.format().code as u32;
    let format = DrmFourcc::try_from(code).map_err(|_| format!("unknown fourcc {code:#x}"))?;
    let mut handles = [None; 4];
    let mut gem = Vec::new();
    for (i, fd) in dmabuf.handles().enumerate().take(4) {
        let handle = card.prime_fd_to_buffer(fd.as_fd()).map_err(|e| format!("PRIME import: {e}"))?;
        handles[i] = Some(handle);
        if !gem.contains(&handle) {
            gem.push(handle);
        }
    }
    let planes = DmabufPlanes { dmabuf, format, handles };
    let flags = if planes.modifier().is_some() { FbCmd2Flags::MODIFIERS } else { FbCmd2Flags::empty() };
    let result = card.add_planar_framebuffer(&planes, flags);
    for h in gem {
        let _ = card.close_buffer(h);
    }
    result.map_err(|e| {
        format!(
            "ADDFB2 {}x{} {} pitches {:?} offsets {:?}: {e}",
            planes.size().0,
            planes.size().1,
            crate::fourcc::name(code),
            planes.pitches(),
            planes.offsets()
        )
    })
}

/// One client surface of a scene, as a candidate for a plane.
#[derive(Debug, Clone)]
pub struct SurfaceLayer {
    pub surface: WlSurface,
    /// Keeps the wl_buffer from being released while it may be on screen.
    pub buffer: Buffer,
    pub dmabuf: Option<Dmabuf>,
    /// Buffer size in pixels.
    pub buffer_size: (u32, u32),
    /// The part of the buffer shown (wp_viewport's source), in buffer pixels: x, y, w, h.
    /// `None` when the buffer is transformed (it is then composited, not scanned out).
    pub src: Option<(u32, u32, u32, u32)>,
    /// Where the surface is shown, output-local.
    pub dst: Rectangle<i32, Logical>,
    /// The colour of its YUV buffer (wp_color_representation, else BT.709 limited).
    pub colour: crate::video::colour::Colour,
}

/// Every client surface with a buffer, bottom to top, for windows and layer-shell surfaces
/// without popups (one with popups is composited whole: its popups must stay above its
/// surfaces).
pub fn surface_layers(scene: &Scene) -> Vec<(usize, SurfaceLayer)> {
    let mut out = Vec::new();
    for (index, layer) in scene.layers.iter().enumerate() {
        // A toplevel, or a layer-shell surface (a bar, an overlay): the same, surface by surface.
        let (root, origin): (&WlSurface, Point<i32, Logical>) = match &layer.source {
            LayerSource::Client(window) => {
                let Some(toplevel) = window.toplevel() else { continue };
                (toplevel.wl_surface(), layer.dst.loc - window.geometry().loc)
            }
            LayerSource::Shell(shell) => (shell.wl_surface(), layer.dst.loc - shell.bbox().loc),
            _ => continue,
        };
        if smithay::desktop::PopupManager::popups_for_surface(root).next().is_some() {
            continue;
        }
        with_surface_tree_upward(
            root,
            origin,
            |_, states, loc| {
                let mut loc = *loc;
                if let Some(data) = states.data_map.get::<RendererSurfaceStateUserData>() {
                    if let Some(view) = data.lock().ok().and_then(|d| d.view()) {
                        loc += view.offset;
                    }
                }
                TraversalAction::DoChildren(loc)
            },
            |surface, states, loc| {
                let Some(data) = states.data_map.get::<RendererSurfaceStateUserData>() else { return };
                let Ok(data) = data.lock() else { return };
                let (Some(view), Some(buffer)) = (data.view(), data.buffer()) else { return };
                let dims = data.buffer_size().unwrap_or_default();
                let scale = data.buffer_scale().max(1);
                let dmabuf = get_dmabuf(buffer).ok().cloned();
                let src = (data.buffer_transform() == smithay::utils::Transform::Normal).then(|| {
                    let s = view.src.to_f64();
                    let px = |v: f64| (v * scale as f64).round().max(0.0) as u32;
                    (px(s.loc.x), px(s.loc.y), px(s.size.w), px(s.size.h))
                });
                out.push((
                    index,
                    SurfaceLayer {
                        surface: surface.clone(),
                        buffer: buffer.clone(),
                        dmabuf,
                        buffer_size: ((dims.w * scale) as u32, (dims.h * scale) as u32),
                        src,
                        dst: Rectangle::new(*loc + view.offset, view.dst),
                        colour: crate::wayland::colour_representation::surface_colour(states),
                    },
                ));
            },
            |_, _, _| true,
        );
    }
    out
}
