//! vitrine's KMS plane planner: which layer of a scene goes on which hardware plane.
//!
//! Pure logic, no I/O. The scene is described by [`LayerDesc`]s (bottom to top, no buffers);
//! the hardware by [`PlaneCaps`] (read from the device or from a recorded [`PlaneTable`]). The
//! driver's verdict comes from a [`CommitTester`] (a TEST_ONLY atomic commit in the backend, a
//! model in the tests). [`Planner::plan`] returns a [`Plan`]: per layer a plane or
//! "composited" with the reason, and the plane of the composition layer.
//!
//! Rules and choices:
//! * A plane takes a layer only if the (format, modifier) pair is listed, the rotation bits are
//!   supported, the scale factor (dst / src, per axis; src is swapped for 90/270) is within
//!   [1/max_downscale, max_upscale] (exactly 1 for planes that cannot scale), the plane is not a
//!   cursor plane (cursor planes take only cursor layers; cursor layers may go anywhere) and, for
//!   layers with `needs_color`, the plane has COLOR_ENCODING and COLOR_RANGE. `needs_color`
//!   means "this YUV layer must program its encoding/range": a plane without the properties
//!   applies the driver's fixed conversion (VOP2: BT.709 limited) and the colours would be
//!   wrong, so it is rejected ([`Rejection::ColorProps`]). A YUV layer whose encoding/range is
//!   the driver default may set `needs_color = false`. Solid layers are always composited.
//! * Layers without a plane are drawn into ONE composition buffer (ARGB8888 LINEAR,
//!   output-sized, unscaled, unrotated; XRGB8888 is accepted when nothing lies below it). So the
//!   composited layers form one contiguous run of the bottom-to-top order, and the composition
//!   buffer takes that run's place in the z order. It may use any plane that can show it. Only
//!   layers that overlap must keep their order: the search first lifts a layer a plane could
//!   take above composited layers it does not touch, which can make the run contiguous.
//! * Along the final bottom-to-top order the planes' zpos must strictly increase. Mutable zpos
//!   gets the smallest value above the previous one ([`Placement::Plane::zpos`] is then the
//!   value to set); an immutable zpos must already fit; a plane without a zpos property is
//!   ordered by kind (primary, overlays by id, cursors by id) and treated as immutable (its
//!   implicit value is its index in that order; tables normally have zpos on all planes or on
//!   none). `zpos` in a placement is `Some` only when the property must be written.
//! * With `primary_required` (the default: many drivers refuse a CRTC whose primary plane is
//!   off) every plan uses the primary plane. If no layer and no composition lands on it, the
//!   composition buffer, then holding only the background, is put on the primary at the
//!   bottom.
//! * Objective: most non-solid layers on planes, then the smallest composited area (sum of
//!   the composited layers' destination areas), then the fewest planes. Candidates are tried
//!   best first; only plans that pass the static checks reach the tester; the first accepted
//!   plan wins. At most `max_tests` (default 32) tests per search; when none is accepted, the
//!   fallback "everything composited onto the primary" is tested with the last call and
//!   returned even if refused, with the error in [`Plan::test_error`].
//! * Plans are cached by the scene's shape (the `LayerDesc`s, which hold no buffers): the same
//!   shape again costs no test commit. The cache also keeps refused fallbacks, so a broken
//!   driver costs one bounded search per shape; [`Planner::invalidate`] clears it (VT switch,
//!   hotplug, mode change). The cache holds at most 64 shapes and is emptied when full.
//!
//! The caller logs reasons on the `planes` target and must disable the CRTC's planes that the
//! plan does not use.

mod search;
mod table;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::fourcc::{fourcc, modifier_name, name as fourcc_name};
pub use table::PlaneTable;

pub const DRM_MODE_ROTATE_0: u32 = 1 << 0;
pub const DRM_MODE_ROTATE_90: u32 = 1 << 1;
pub const DRM_MODE_ROTATE_180: u32 = 1 << 2;
pub const DRM_MODE_ROTATE_270: u32 = 1 << 3;
pub const DRM_MODE_REFLECT_X: u32 = 1 << 4;
pub const DRM_MODE_REFLECT_Y: u32 = 1 << 5;

pub const DRM_FORMAT_MOD_LINEAR: u64 = crate::fourcc::MOD_LINEAR;
pub const DRM_FORMAT_MOD_INVALID: u64 = crate::fourcc::MOD_INVALID;

pub const DRM_FORMAT_ARGB8888: u32 = fourcc(b"AR24");
pub const DRM_FORMAT_XRGB8888: u32 = fourcc(b"XR24");
pub const DRM_FORMAT_ABGR8888: u32 = fourcc(b"AB24");
pub const DRM_FORMAT_XBGR8888: u32 = fourcc(b"XB24");
pub const DRM_FORMAT_RGB565: u32 = fourcc(b"RG16");
pub const DRM_FORMAT_NV12: u32 = fourcc(b"NV12");

/// Tester calls allowed per search, fallback included.
pub const DEFAULT_MAX_TESTS: u32 = 32;
const CACHE_CAPACITY: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlaneKind {
    Primary,
    Overlay,
    Cursor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FormatModifier {
    pub format: u32,
    pub modifier: u64,
}

/// The zpos property of a plane. Immutable ones have `min == max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ZposRange {
    pub min: u64,
    pub max: u64,
    #[serde(default)]
    pub immutable: bool,
}

/// How far a plane scales: dst/src between 1/`max_downscale` and `max_upscale` on each axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ScalingLimits {
    pub max_upscale: u32,
    pub max_downscale: u32,
}

/// What a plane can do, as far as planning is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaneCaps {
    pub id: u32,
    #[serde(default)]
    pub name: String,
    pub kind: PlaneKind,
    pub possible_crtcs: u32,
    #[serde(default)]
    pub zpos: Option<ZposRange>,
    /// DRM_MODE_ROTATE_* | DRM_MODE_REFLECT_* the plane accepts (ROTATE_0 without a property).
    #[serde(default = "rotate_0")]
    pub rotations: u32,
    /// `None`: cannot scale.
    #[serde(default)]
    pub scaling: Option<ScalingLimits>,
    #[serde(default)]
    pub color_encoding: bool,
    #[serde(default)]
    pub color_range: bool,
    /// Has the "alpha" property (informational: layers carry no global alpha yet).
    #[serde(default)]
    pub alpha: bool,
    #[serde(with = "table::formats_map")]
    pub formats: Vec<FormatModifier>,
}

fn rotate_0() -> u32 {
    DRM_MODE_ROTATE_0
}

impl PlaneCaps {
    pub fn reference(&self) -> PlaneRef {
        PlaneRef { id: self.id, name: self.name.clone() }
    }

    fn has_format(&self, format: u32) -> bool {
        self.formats.iter().any(|f| f.format == format)
    }

    fn has_pair(&self, format: u32, modifier: u64) -> bool {
        self.formats.iter().any(|f| f.format == format && f.modifier == modifier)
    }
}

/// What a layer of the scene is (see `crate::scene::LayerSource`; video frames come from the
/// decoder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerKind {
    Video,
    Client,
    Solid,
    /// A client buffer in shared memory (or a dmabuf the device could not import): composited.
    Memory,
    Cursor,
}

impl LayerKind {
    /// Whether the layer has a buffer a plane could scan out.
    pub fn scanoutable(self) -> bool {
        !matches!(self, LayerKind::Solid | LayerKind::Memory)
    }
}

/// A layer as the planner sees it: its shape, no buffer. Two frames with equal `LayerDesc`s
/// get the same plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LayerDesc {
    pub kind: LayerKind,
    /// Fourcc of the buffer (ignored for Solid).
    pub format: u32,
    pub modifier: u64,
    /// Buffer crop size in pixels.
    pub src_size: (u32, u32),
    /// Destination (x, y, w, h) on the output.
    pub dst: (i32, i32, u32, u32),
    /// DRM_MODE_ROTATE_* | DRM_MODE_REFLECT_* (0 means ROTATE_0).
    pub rotation: u32,
    /// A YUV layer that must set COLOR_ENCODING/COLOR_RANGE (see the module docs).
    pub needs_color: bool,
    /// Part of the shape only: blending follows the format's alpha, no check depends on it.
    pub opaque: bool,
}

/// A plane for messages: "plane 40 (Smart0-win0)".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlaneRef {
    pub id: u32,
    pub name: String,
}

impl fmt::Display for PlaneRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(f, "plane {}", self.id)
        } else {
            write!(f, "plane {} ({})", self.id, self.name)
        }
    }
}

/// Why a layer is not (or not on a given plane) scanned out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// A solid colour has no buffer.
    NoBuffer,
    CursorOnly {
        plane: PlaneRef,
    },
    Format {
        plane: PlaneRef,
        format: u32,
    },
    Modifier {
        plane: PlaneRef,
        format: u32,
        modifier: u64,
    },
    Rotation {
        plane: PlaneRef,
        rotation: u32,
        supported: u32,
    },
    Scaling {
        plane: PlaneRef,
        src: (u32, u32),
        dst: (u32, u32),
        limits: Option<ScalingLimits>,
    },
    ColorProps {
        plane: PlaneRef,
    },
    /// The plane is free and could take the layer, but not at the layer's z position.
    Zpos {
        plane: PlaneRef,
    },
    /// Every plane that could take the layer holds another one.
    NoFreePlane,
    /// The driver refused a plan with the layer on `plane`.
    TestFailed {
        plane: Option<PlaneRef>,
        error: String,
    },
    /// The test budget ran out before a plan with the layer on a plane was accepted.
    TestBudget {
        tests: u32,
    },
    /// Layers stay off planes by configuration (`[drm] hardware_planes = false`).
    PlanesOff,
}

impl Rejection {
    /// The plane this rejection is about, if any.
    pub fn plane(&self) -> Option<u32> {
        match self {
            Rejection::CursorOnly { plane }
            | Rejection::Format { plane, .. }
            | Rejection::Modifier { plane, .. }
            | Rejection::Rotation { plane, .. }
            | Rejection::Scaling { plane, .. }
            | Rejection::ColorProps { plane }
            | Rejection::Zpos { plane } => Some(plane.id),
            Rejection::TestFailed { plane, .. } => plane.as_ref().map(|p| p.id),
            Rejection::NoBuffer | Rejection::NoFreePlane | Rejection::TestBudget { .. } | Rejection::PlanesOff => None,
        }
    }

    /// How far a layer got through the static checks: the latest stage is the most telling
    /// reason ("Esmart0 cannot rotate" beats "Smart0 has no NV12").
    fn stage(&self) -> u8 {
        match self {
            Rejection::NoBuffer | Rejection::PlanesOff => 0,
            Rejection::CursorOnly { .. } => 1,
            Rejection::Format { .. } => 2,
            Rejection::Modifier { .. } => 3,
            Rejection::Rotation { .. } => 4,
            Rejection::Scaling { .. } => 5,
            Rejection::ColorProps { .. } => 6,
            _ => 7,
        }
    }
}

fn rotation_names(bits: u32) -> String {
    const NAMES: [&str; 6] = ["rotate-0", "rotate-90", "rotate-180", "rotate-270", "reflect-x", "reflect-y"];
    let names: Vec<&str> = (0..6).filter(|i| bits & (1 << i) != 0).map(|i| NAMES[i]).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join("|")
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::NoBuffer => write!(f, "no scanout buffer (a solid colour, or a client buffer in shared memory)"),
            Rejection::CursorOnly { plane } => write!(f, "{plane} is a cursor plane: cursor layers only"),
            Rejection::Format { plane, format } => write!(f, "{plane} has no {}", fourcc_name(*format)),
            Rejection::Modifier { plane, format, modifier } => {
                write!(f, "{plane} has {} but not with modifier {}", fourcc_name(*format), modifier_name(*modifier))
            }
            Rejection::Rotation { plane, rotation, supported } => {
                write!(f, "{plane} cannot do {} (supports {})", rotation_names(*rotation), rotation_names(*supported))
            }
            Rejection::Scaling { plane, src, dst, limits: None } => {
                write!(f, "{plane} cannot scale ({}x{} to {}x{})", src.0, src.1, dst.0, dst.1)
            }
            Rejection::Scaling { plane, src, dst, limits: Some(l) } => write!(
                f,
                "{plane} cannot scale {}x{} to {}x{} (limits 1/{}..{}x)",
                src.0, src.1, dst.0, dst.1, l.max_downscale, l.max_upscale
            ),
            Rejection::ColorProps { plane } => {
                write!(
                    f,
                    "{plane} cannot be told this YUV layer's colour (COLOR_ENCODING/COLOR_RANGE missing or partial): it would show it wrong"
                )
            }
            Rejection::Zpos { plane } => write!(f, "{plane} is free but cannot sit at this layer's z position"),
            Rejection::NoFreePlane => write!(f, "every plane that could take it holds another layer"),
            Rejection::TestFailed { plane: Some(p), error } => write!(f, "test commit with it on {p} failed: {error}"),
            Rejection::TestFailed { plane: None, error } => write!(f, "test commit failed: {error}"),
            Rejection::TestBudget { tests } => write!(f, "no plan accepted within {tests} test commits"),
            Rejection::PlanesOff => write!(f, "hardware planes are off ([drm] hardware_planes = false)"),
        }
    }
}

/// Can `plane` show `layer` by itself? (CRTC usability is checked by [`Planner::new`].)
pub fn check_layer(plane: &PlaneCaps, layer: &LayerDesc) -> Result<(), Rejection> {
    let r = || plane.reference();
    if !layer.kind.scanoutable() {
        return Err(Rejection::NoBuffer);
    }
    if plane.kind == PlaneKind::Cursor && layer.kind != LayerKind::Cursor {
        return Err(Rejection::CursorOnly { plane: r() });
    }
    if !plane.has_format(layer.format) {
        return Err(Rejection::Format { plane: r(), format: layer.format });
    }
    if !plane.has_pair(layer.format, layer.modifier) {
        return Err(Rejection::Modifier { plane: r(), format: layer.format, modifier: layer.modifier });
    }
    let rotation = if layer.rotation == 0 { DRM_MODE_ROTATE_0 } else { layer.rotation };
    if rotation & !plane.rotations != 0 {
        return Err(Rejection::Rotation { plane: r(), rotation, supported: plane.rotations });
    }
    let (sw, sh) = if rotation & (DRM_MODE_ROTATE_90 | DRM_MODE_ROTATE_270) != 0 {
        (layer.src_size.1, layer.src_size.0)
    } else {
        layer.src_size
    };
    let (dw, dh) = (layer.dst.2, layer.dst.3);
    let scaling_ok = match plane.scaling {
        _ if (sw, sh) == (dw, dh) => true,
        None => false,
        Some(l) => {
            let fits = |s: u32, d: u32| {
                let (s, d) = (s as u64, d as u64);
                s > 0 && d > 0 && d <= s * l.max_upscale as u64 && s <= d * l.max_downscale as u64
            };
            fits(sw, dw) && fits(sh, dh)
        }
    };
    if !scaling_ok {
        return Err(Rejection::Scaling { plane: r(), src: (sw, sh), dst: (dw, dh), limits: plane.scaling });
    }
    if layer.needs_color && !(plane.color_encoding && plane.color_range) {
        return Err(Rejection::ColorProps { plane: r() });
    }
    Ok(())
}

/// Could `plane` show a layer of this geometry (size, scaling, rotation, placement) if its buffer
/// had a format the plane takes? What a client is told to allocate for (dmabuf feedback).
pub fn geometry_fits(plane: &PlaneCaps, layer: &LayerDesc) -> bool {
    let Some(f) = plane.formats.first() else { return false };
    let probe = LayerDesc {
        kind: if layer.kind == LayerKind::Cursor { LayerKind::Cursor } else { LayerKind::Client },
        format: f.format,
        modifier: f.modifier,
        needs_color: false,
        ..*layer
    };
    check_layer(plane, &probe).is_ok()
}

/// Can `plane` show the composition buffer in `format` (output-sized, LINEAR, unscaled)?
pub fn check_composition(plane: &PlaneCaps, format: u32) -> Result<(), Rejection> {
    if plane.kind == PlaneKind::Cursor {
        return Err(Rejection::CursorOnly { plane: plane.reference() });
    }
    if !plane.has_format(format) {
        return Err(Rejection::Format { plane: plane.reference(), format });
    }
    if !plane.has_pair(format, DRM_FORMAT_MOD_LINEAR) {
        return Err(Rejection::Modifier { plane: plane.reference(), format, modifier: DRM_FORMAT_MOD_LINEAR });
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Placement {
    /// Scanned out by `plane`; write `zpos` when it is `Some`.
    Plane { plane: u32, zpos: Option<u64> },
    /// Drawn into the composition buffer.
    Composited { reason: Rejection },
}

/// Where the composition buffer goes. It sits in the z order where the composited layers are
/// (at the bottom when it only holds the background).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CompositionPlacement {
    pub plane: u32,
    pub zpos: Option<u64>,
    /// ARGB8888, or XRGB8888 when nothing is below it.
    pub format: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Plan {
    /// One per layer, same order as the input.
    pub layers: Vec<Placement>,
    /// `None` when nothing is composited and the primary plane holds a layer (or is not needed).
    pub composition: Option<CompositionPlacement>,
    /// `None` when the tester accepted the plan; else the driver's error for this last-resort
    /// fallback.
    pub test_error: Option<String>,
}

impl Plan {
    /// The planes this plan enables.
    pub fn planes(&self) -> Vec<u32> {
        let mut out: Vec<u32> = self
            .layers
            .iter()
            .filter_map(|p| match p {
                Placement::Plane { plane, .. } => Some(*plane),
                Placement::Composited { .. } => None,
            })
            .collect();
        out.extend(self.composition.map(|c| c.plane));
        out
    }

    pub fn composited(&self) -> impl Iterator<Item = usize> + '_ {
        self.layers.iter().enumerate().filter(|(_, p)| matches!(p, Placement::Composited { .. })).map(|(i, _)| i)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.layers.iter().enumerate() {
            match p {
                Placement::Plane { plane, zpos: Some(z) } => write!(f, "layer {i}: plane {plane} zpos {z}; ")?,
                Placement::Plane { plane, zpos: None } => write!(f, "layer {i}: plane {plane}; ")?,
                Placement::Composited { reason } => write!(f, "layer {i}: composited ({reason}); ")?,
            }
        }
        match self.composition {
            Some(c) => write!(f, "composition: plane {} {}", c.plane, fourcc_name(c.format))?,
            None => write!(f, "composition: none")?,
        }
        if let Some(e) = &self.test_error {
            write!(f, "; refused by the driver: {e}")?;
        }
        Ok(())
    }
}

/// Asks the driver whether a plan works (a TEST_ONLY atomic commit with the current buffers).
pub trait CommitTester {
    fn test(&mut self, plan: &Plan, layers: &[LayerDesc]) -> Result<(), String>;
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PlannerStats {
    /// `CommitTester::test` calls, in total.
    pub test_commits: u64,
    pub searches: u64,
    pub cache_hits: u64,
    /// Searches that ended in "everything composited onto the primary".
    pub fallbacks: u64,
}

#[derive(Debug, Clone)]
struct Outcome {
    plan: Plan,
    rejections: Vec<Vec<Rejection>>,
}

/// Plans scenes for one CRTC and remembers the plans by scene shape.
#[derive(Debug)]
pub struct Planner {
    /// Usable by the CRTC, in implicit z order: primary, overlays by id, cursors by id.
    planes: Vec<PlaneCaps>,
    crtc_index: u32,
    primary_required: bool,
    /// Layers may go on planes (else everything is composited onto the primary plane).
    layers_on_planes: bool,
    max_tests: u32,
    cache: HashMap<Vec<LayerDesc>, Outcome>,
    last_rejections: Vec<Vec<Rejection>>,
    stats: PlannerStats,
}

impl Planner {
    /// Keeps the planes usable by CRTC `crtc_index`.
    pub fn new(planes: Vec<PlaneCaps>, crtc_index: usize) -> Planner {
        let crtc_index = crtc_index as u32;
        let mut planes: Vec<PlaneCaps> =
            planes.into_iter().filter(|p| crtc_index < 32 && p.possible_crtcs & (1 << crtc_index) != 0).collect();
        planes.sort_by_key(|p| (kind_rank(p.kind), p.id));
        Planner {
            planes,
            crtc_index,
            primary_required: true,
            layers_on_planes: true,
            max_tests: DEFAULT_MAX_TESTS,
            cache: HashMap::new(),
            last_rejections: Vec::new(),
            stats: PlannerStats::default(),
        }
    }

    /// Whether every plan must enable the primary plane (default true).
    pub fn set_primary_required(&mut self, required: bool) {
        self.primary_required = required;
        self.invalidate();
    }

    /// Whether layers may go on planes; false composites every layer (`[drm] hardware_planes`).
    pub fn set_layers_on_planes(&mut self, on: bool) {
        self.layers_on_planes = on;
        self.invalidate();
    }

    pub fn layers_on_planes(&self) -> bool {
        self.layers_on_planes
    }

    /// Tester calls allowed per search, fallback included (at least 1).
    pub fn set_max_tests(&mut self, max: u32) {
        self.max_tests = max.max(1);
    }

    pub fn planes(&self) -> &[PlaneCaps] {
        &self.planes
    }

    pub fn crtc_index(&self) -> u32 {
        self.crtc_index
    }

    /// The plan for this scene: from the cache (no test) or from a search.
    pub fn plan(&mut self, layers: &[LayerDesc], tester: &mut dyn CommitTester) -> Plan {
        if let Some(hit) = self.cache.get(layers) {
            self.stats.cache_hits += 1;
            self.last_rejections = hit.rejections.clone();
            return hit.plan.clone();
        }
        self.stats.searches += 1;
        let result = search::run(self, layers, tester);
        self.stats.test_commits += result.tests as u64;
        if result.fallback {
            self.stats.fallbacks += 1;
        }
        if self.cache.len() >= CACHE_CAPACITY {
            self.cache.clear();
        }
        let outcome = Outcome { plan: result.plan, rejections: result.rejections };
        self.last_rejections = outcome.rejections.clone();
        let plan = outcome.plan.clone();
        self.cache.insert(layers.to_vec(), outcome);
        plan
    }

    /// For each layer of the last planned scene, every (plane, reason) rejection considered:
    /// static checks, refused test commits, and the final reason of composited layers.
    pub fn rejections(&self) -> &[Vec<Rejection>] {
        &self.last_rejections
    }

    /// Tester calls so far, in total.
    pub fn test_commits(&self) -> u64 {
        self.stats.test_commits
    }

    pub fn stats(&self) -> PlannerStats {
        self.stats
    }

    /// Forget every cached plan (VT switch, hotplug, mode change…).
    pub fn invalidate(&mut self) {
        self.cache.clear();
    }

    /// Scene shapes whose plans are cached (at most 64).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

fn kind_rank(kind: PlaneKind) -> u8 {
    match kind {
        PlaneKind::Primary => 0,
        PlaneKind::Overlay => 1,
        PlaneKind::Cursor => 2,
    }
}
