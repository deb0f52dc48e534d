//! What the DRM backend keeps about planes and what is on them: the planner's view of a plane,
//! a commit in flight, a layer's buffer on a plane, and the report `vitrine msg planes` shows.

use drm::control::atomic::AtomicModeReq;
use drm::control::framebuffer;
use drm::control::property::Value;
use serde::Serialize;

use super::device::PlaneInfo;
use super::planner::{self, PlaneCaps, PlaneKind, ScalingLimits, ZposRange};
use super::DrmError;
use crate::scene::Scene;

/// A commit waiting for its page flip, and what it put on screen.
pub struct InFlight {
    pub(super) scene: Scene,
    pub(super) buffers: Vec<smithay::backend::renderer::utils::Buffer>,
    /// When it was committed: a flip that comes later than the vblank after is logged.
    pub(super) committed: std::time::Instant,
}

impl InFlight {
    /// The video picture this commit shows, kept from reuse until the next flip.
    pub fn video(&self) -> Option<&crate::video::VideoFrame> {
        self.scene.video()
    }
}

/// One layer as `vitrine msg planes` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    pub source: &'static str,
    pub name: String,
    pub format: Option<String>,
    pub modifier: Option<String>,
    pub size: [u32; 2],
    pub plane: Option<u32>,
    pub composited: bool,
    pub reason: Option<String>,
    /// A YUV layer's colour, and how the plane showing it converts it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub colour: Option<String>,
}

/// What the planner may assume about a KMS plane.
pub fn plane_caps(p: &PlaneInfo) -> PlaneCaps {
    let kind = match p.kind.as_str() {
        "Primary" => PlaneKind::Primary,
        "Cursor" => PlaneKind::Cursor,
        _ => PlaneKind::Overlay,
    };
    let zpos = p.props.has("zpos").then(|| {
        let (min, max) = p.props.range("zpos").unwrap_or((0, 0));
        ZposRange { min, max, immutable: p.props.immutable("zpos") }
    });
    PlaneCaps {
        id: p.handle.into(),
        name: String::new(),
        kind,
        possible_crtcs: p.possible_crtcs,
        zpos,
        rotations: p.rotations,
        // KMS does not publish scaling limits: allow what most hardware does and let the
        // TEST_ONLY commit have the last word.
        scaling: Some(ScalingLimits { max_upscale: 8, max_downscale: 8 }),
        // Only a plane that can be told every matrix and range counts as one that can be told:
        // one lacking, say, BT.2020 shows other pictures than BT.709 limited wrong as well.
        color_encoding: ["ITU-R BT.601 YCbCr", "ITU-R BT.709 YCbCr", "ITU-R BT.2020 YCbCr"]
            .iter()
            .all(|e| p.props.enum_value("COLOR_ENCODING", e).is_some()),
        color_range: ["YCbCr limited range", "YCbCr full range"]
            .iter()
            .all(|e| p.props.enum_value("COLOR_RANGE", e).is_some()),
        alpha: p.props.has("alpha"),
        formats: p.formats.iter().map(|f| planner::FormatModifier { format: f.format, modifier: f.modifier }).collect(),
    }
}

/// A layer's buffer on a plane: its framebuffer, where in the buffer the shown part starts, and
/// (for YUV) the colour the plane is told.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Scanout {
    pub(super) fb: framebuffer::Handle,
    pub(super) src_pos: (u32, u32),
    pub(super) colour: crate::video::colour::Colour,
}

/// Turn a plane off in `req`.
pub(super) fn disable_plane(info: &PlaneInfo, req: &mut AtomicModeReq) -> Result<(), DrmError> {
    let missing = |name: &str| DrmError::Missing(format!("plane {} lacks {name}", u32::from(info.handle)));
    let fb_id = info.props.handle("FB_ID").ok_or_else(|| missing("FB_ID"))?;
    let crtc_id = info.props.handle("CRTC_ID").ok_or_else(|| missing("CRTC_ID"))?;
    req.add_property(info.handle, fb_id, Value::Framebuffer(None));
    req.add_property(info.handle, crtc_id, Value::CRTC(None));
    Ok(())
}
