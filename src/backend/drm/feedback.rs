//! linux-dmabuf feedback per surface: the scanout tranche a client gets lists the formats and
//! modifiers of exactly the planes that could show that surface where it is (its size, scaling
//! and rotation), so a client allocates buffers a plane can take — or, when no plane can, is told
//! to allocate for composition.

use std::collections::HashMap;

use smithay::backend::allocator::{Format, Fourcc, Modifier};
use smithay::reexports::wayland_protocols::wp::linux_dmabuf::zv1::server::zwp_linux_dmabuf_feedback_v1::TrancheFlags;
use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::wayland::compositor::with_states;
use smithay::wayland::dmabuf::{DmabufFeedback, DmabufFeedbackBuilder, SurfaceDmabufFeedbackState};

use super::planner::{self, LayerDesc, PlaneCaps};

pub struct SurfaceFeedback {
    /// The display device (dev_t): the main device and the scanout tranche's target.
    dev: u64,
    /// What the compositing renderer imports.
    render: Vec<Format>,
    /// Built feedbacks by the set of planes they advertise.
    built: HashMap<Vec<u32>, DmabufFeedback>,
}

impl SurfaceFeedback {
    pub fn new(dev: u64, render: Vec<Format>) -> SurfaceFeedback {
        SurfaceFeedback { dev, render, built: HashMap::new() }
    }

    /// The feedback for a surface that `planes` could show (none: composition only).
    pub fn for_planes(&mut self, planes: &[&PlaneCaps]) -> Option<DmabufFeedback> {
        let key: Vec<u32> = planes.iter().map(|p| p.id).collect();
        if let Some(f) = self.built.get(&key) {
            return Some(f.clone());
        }
        let mut scanout: Vec<Format> = Vec::new();
        for p in planes {
            for f in &p.formats {
                let Ok(code) = Fourcc::try_from(f.format) else { continue };
                let format = Format { code, modifier: Modifier::from(f.modifier) };
                if !scanout.contains(&format) {
                    scanout.push(format);
                }
            }
        }
        let mut all = self.render.clone();
        all.extend(scanout.iter().filter(|f| !self.render.contains(f)).copied());
        let mut builder = DmabufFeedbackBuilder::new(self.dev, all);
        if !scanout.is_empty() {
            builder = builder.add_preference_tranche(self.dev, Some(TrancheFlags::Scanout), scanout);
        }
        match builder.build() {
            Ok(feedback) => {
                self.built.insert(key, feedback.clone());
                Some(feedback)
            }
            Err(err) => {
                tracing::warn!(%err, "cannot build a surface's dmabuf feedback");
                None
            }
        }
    }

    /// Tell `surface` (if it asked for feedback) which planes could show it as `layer`.
    pub fn update(&mut self, surface: &WlSurface, planes: &[PlaneCaps], layer: &LayerDesc) {
        let asked = with_states(surface, |states| SurfaceDmabufFeedbackState::from_states(states).is_some());
        if !asked {
            return;
        }
        let fitting: Vec<&PlaneCaps> = planes.iter().filter(|p| planner::geometry_fits(p, layer)).collect();
        let Some(feedback) = self.for_planes(&fitting) else { return };
        with_states(surface, |states| {
            if let Some(state) = SurfaceDmabufFeedbackState::from_states(states) {
                state.set_feedback(&feedback);
            }
        });
    }
}
