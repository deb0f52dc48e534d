//! One frame on the DRM backend: the scene becomes layer descriptions, the planner places them
//! (verified by TEST_ONLY commits, cached by scene shape), only the composited layers are drawn,
//! and one atomic commit shows the result.

use drm::control::atomic::AtomicModeReq;
use drm::control::property::Value;
use drm::control::{framebuffer, AtomicCommitFlags, Device as ControlDevice, Event};
use smithay::backend::allocator::Buffer as _;
use smithay::reexports::wayland_server::Resource;

use super::device::Card;
use super::head::Head;
use super::plane::{disable_plane, InFlight, LayerReport, Scanout};
use super::planner::{self, CommitTester, LayerDesc, LayerKind, Placement, Plan};
use super::scanout::{surface_layers, FbCache, SurfaceLayer};
use super::{Drm, DrmError, KmsStats};
use crate::fourcc::{modifier_name, name as fourcc_name};
use crate::frames::Repaint;
use crate::render::{post_repaint, OnPlanes};
use crate::scene::{LayerSource, Scene};
use crate::state::Core;
use crate::video::colour::Colour;
use smithay::output::Output;
use std::time::{Duration, Instant};

/// Where a layer description came from.
enum Origin {
    Background,
    Window(String),
    Surface(SurfaceLayer, Option<framebuffer::Handle>, String),
    Video(Option<framebuffer::Handle>, Colour),
    Cursor,
}

/// The scene as the planner sees it, with each layer's origin.
fn describe(
    card: &Card,
    fb_cache: &mut FbCache,
    stats: &mut KmsStats,
    scene: &Scene,
    panel: (u32, u32),
    rotation: crate::rotation::Rotation,
    colour_policy: crate::config::ColourPolicy,
) -> (Vec<LayerDesc>, Vec<Origin>) {
    let mut descs = Vec::new();
    let mut origins = Vec::new();
    let solid = |dst: (i32, i32, u32, u32)| LayerDesc {
        kind: LayerKind::Solid,
        format: 0,
        modifier: 0,
        src_size: (dst.2, dst.3),
        dst,
        rotation: 0,
        needs_color: false,
        opaque: true,
    };
    // Pixels in memory (shared memory, an image, a popup): composited.
    let memory = |dst: (i32, i32, u32, u32)| LayerDesc { kind: LayerKind::Memory, ..solid(dst) };
    let full = (0, 0, panel.0, panel.1);
    // Buffers turn with the panel (the rotation of a plane that shows them).
    let turn = rotation.drm_bits();
    // Where no plane shows anything, the CRTC shows black: a black background needs no layer.
    if scene.background[..3] != [0.0, 0.0, 0.0] {
        descs.push(solid(full));
        origins.push(Origin::Background);
    }
    let surfaces = surface_layers(scene);
    for (index, layer) in scene.layers.iter().enumerate() {
        // Layer rectangles are upright (output-logical); planes are in panel pixels.
        let rect = |r: smithay::utils::Rectangle<i32, smithay::utils::Logical>| {
            rotation.to_panel((r.loc.x, r.loc.y, r.size.w.max(0) as u32, r.size.h.max(0) as u32), panel)
        };
        match &layer.source {
            // A toplevel or a layer-shell surface: each of its surfaces is a candidate for a plane.
            LayerSource::Client(_) | LayerSource::Shell(_) => {
                let name = match &layer.source {
                    LayerSource::Client(w) => w.toplevel().and_then(|t| crate::kiosk::app_id(t.wl_surface())),
                    LayerSource::Shell(shell) => Some(shell.namespace().to_string()),
                    _ => None,
                }
                .unwrap_or_default();
                let mine: Vec<&SurfaceLayer> = surfaces.iter().filter(|(i, _)| *i == index).map(|(_, s)| s).collect();
                if mine.is_empty() {
                    descs.push(memory(rect(layer.dst)));
                    origins.push(Origin::Window(name));
                    continue;
                }
                for s in mine {
                    let fb = s.dmabuf.as_ref().and_then(|dmabuf| match fb_cache.get_or_add(card, dmabuf) {
                        Ok((fb, created)) => {
                            if created {
                                stats.framebuffers_created += 1;
                            }
                            Some(fb)
                        }
                        Err(err) => {
                            tracing::debug!(target: "planes", %err, surface = %s.surface.id(), "client dmabuf cannot be a framebuffer");
                            None
                        }
                    });
                    let desc = match (&s.dmabuf, fb, s.src) {
                        (Some(dmabuf), Some(_), Some(src)) => {
                            let format = dmabuf.format();
                            LayerDesc {
                                kind: LayerKind::Client,
                                format: format.code as u32,
                                modifier: u64::from(format.modifier),
                                src_size: (src.2, src.3),
                                dst: rect(s.dst),
                                rotation: turn,
                                needs_color: crate::fourcc::is_yuv(format.code as u32)
                                    && s.colour.plane_must_be_told(colour_policy),
                                opaque: !crate::fourcc::has_alpha(format.code as u32),
                            }
                        }
                        _ => memory(rect(s.dst)),
                    };
                    descs.push(desc);
                    origins.push(Origin::Surface(s.clone(), fb, name.clone()));
                }
            }
            LayerSource::Solid(_) => {
                descs.push(solid(rect(layer.dst)));
                origins.push(Origin::Background);
            }
            // Composited (a popup's few frames do not need a plane).
            LayerSource::ImePopup(_) => {
                descs.push(memory(rect(layer.dst)));
                origins.push(Origin::Window("input method popup".into()));
            }
            LayerSource::Image(_) => {
                descs.push(memory(rect(layer.dst)));
                origins.push(Origin::Background);
            }
            LayerSource::Cursor(_) => {
                descs.push(solid(rect(layer.dst)));
                origins.push(Origin::Cursor);
            }
            LayerSource::Video(frame) => {
                let fb = frame.dmabuf.as_ref().and_then(|dmabuf| match fb_cache.get_or_add(card, dmabuf) {
                    Ok((fb, created)) => {
                        if created {
                            stats.framebuffers_created += 1;
                            stats.video_framebuffers_created += 1;
                        }
                        Some(fb)
                    }
                    Err(err) => {
                        tracing::warn!(target: "planes", %err, "decoded picture cannot be a framebuffer");
                        None
                    }
                });
                let desc = match (&frame.dmabuf, fb) {
                    (Some(dmabuf), Some(_)) => LayerDesc {
                        kind: LayerKind::Video,
                        format: dmabuf.format().code as u32,
                        modifier: u64::from(dmabuf.format().modifier),
                        src_size: frame.visible,
                        dst: rect(layer.dst),
                        rotation: turn,
                        // A plane that cannot be told the colour converts as BT.709 limited:
                        // right for such pictures; for others only when fast is chosen.
                        needs_color: frame.colour.plane_must_be_told(colour_policy),
                        opaque: true,
                    },
                    _ => memory(rect(layer.dst)),
                };
                descs.push(desc);
                origins.push(Origin::Video(fb, frame.colour));
            }
        }
    }
    (descs, origins)
}

/// Plane state for one layer (or the composition buffer); `src` is the part of the buffer shown
/// (x, y, w, h in pixels).
#[allow(clippy::too_many_arguments)]
pub(super) fn set_plane(
    head: &Head,
    req: &mut AtomicModeReq,
    plane: u32,
    fb: framebuffer::Handle,
    src: (u32, u32, u32, u32),
    dst: (i32, i32, u32, u32),
    zpos: Option<u64>,
    yuv: Option<Colour>,
    rotation: u32,
) -> Result<(), DrmError> {
    let info = head
        .plane(plane)
        .ok_or_else(|| DrmError::Missing(format!("plane {plane} does not belong to {}", head.name())))?;
    let h = info.handle;
    let p = &info.props;
    let prop = |name: &str| p.handle(name).ok_or_else(|| DrmError::Missing(format!("plane {plane} lacks {name}")));
    req.add_property(h, prop("FB_ID")?, Value::Framebuffer(Some(fb)));
    req.add_property(h, prop("CRTC_ID")?, Value::CRTC(Some(head.crtc)));
    req.add_property(h, prop("SRC_X")?, Value::UnsignedRange((src.0 as u64) << 16));
    req.add_property(h, prop("SRC_Y")?, Value::UnsignedRange((src.1 as u64) << 16));
    req.add_property(h, prop("SRC_W")?, Value::UnsignedRange((src.2 as u64) << 16));
    req.add_property(h, prop("SRC_H")?, Value::UnsignedRange((src.3 as u64) << 16));
    req.add_property(h, prop("CRTC_X")?, Value::SignedRange(dst.0 as i64));
    req.add_property(h, prop("CRTC_Y")?, Value::SignedRange(dst.1 as i64));
    req.add_property(h, prop("CRTC_W")?, Value::UnsignedRange(dst.2 as u64));
    req.add_property(h, prop("CRTC_H")?, Value::UnsignedRange(dst.3 as u64));
    if let Some(z) = zpos {
        req.add_property(h, prop("zpos")?, Value::UnsignedRange(z));
    }
    // Written every time: the plane may have shown a turned buffer before.
    if let Some(r) = p.handle("rotation") {
        req.add_property(
            h,
            r,
            Value::Bitmask(if rotation == 0 { planner::DRM_MODE_ROTATE_0 } else { rotation } as u64),
        );
    }
    if let Some(colour) = yuv {
        if let (Some(enc), Some(v)) =
            (p.handle("COLOR_ENCODING"), p.enum_value("COLOR_ENCODING", colour.drm_encoding()))
        {
            req.add_property(h, enc, Value::UnsignedRange(v));
        }
        if let (Some(range), Some(v)) = (p.handle("COLOR_RANGE"), p.enum_value("COLOR_RANGE", colour.drm_range())) {
            req.add_property(h, range, Value::UnsignedRange(v));
        }
    }
    Ok(())
}

/// The atomic request for a plan: its planes on, every other plane of the head that was on, off.
fn plan_request(
    head: &Head,
    plan: &Plan,
    descs: &[LayerDesc],
    buffers: &[Option<Scanout>],
    composition_fb: framebuffer::Handle,
) -> Result<AtomicModeReq, DrmError> {
    let mut req = AtomicModeReq::new();
    for (i, placement) in plan.layers.iter().enumerate() {
        if let Placement::Plane { plane, zpos } = placement {
            let b = buffers[i]
                .ok_or_else(|| DrmError::Missing("a layer without framebuffer was placed on a plane".into()))?;
            let desc = &descs[i];
            let src = (b.src_pos.0, b.src_pos.1, desc.src_size.0, desc.src_size.1);
            set_plane(
                head,
                &mut req,
                *plane,
                b.fb,
                src,
                desc.dst,
                *zpos,
                crate::fourcc::is_yuv(desc.format).then_some(b.colour),
                desc.rotation,
            )?;
        }
    }
    let (w, h) = head.size();
    if let Some(c) = plan.composition {
        set_plane(head, &mut req, c.plane, composition_fb, (0, 0, w, h), (0, 0, w, h), c.zpos, None, 0)?;
    }
    let used = plan.planes();
    for plane in &head.active_planes {
        if !used.contains(plane) {
            let info = head.plane(*plane).ok_or_else(|| DrmError::Missing(format!("unknown plane {plane}")))?;
            disable_plane(info, &mut req)?;
        }
    }
    Ok(req)
}

/// TEST_ONLY commits of candidate plans with this frame's buffers.
struct Tester<'a> {
    card: &'a Card,
    head: &'a Head,
    buffers: &'a [Option<Scanout>],
    composition_fb: framebuffer::Handle,
}

impl CommitTester for Tester<'_> {
    fn test(&mut self, plan: &Plan, layers: &[LayerDesc]) -> Result<(), String> {
        let req =
            plan_request(self.head, plan, layers, self.buffers, self.composition_fb).map_err(|e| e.to_string())?;
        self.card
            .atomic_commit(AtomicCommitFlags::TEST_ONLY | AtomicCommitFlags::NONBLOCK, req)
            .map_err(|e| e.to_string())
    }
}

/// Where a repaint's time went, step by step (each the time since the one before).
#[derive(Debug, Default, Clone, Copy)]
pub struct Phases {
    began: Option<Instant>,
    last: Option<Instant>,
    /// Framebuffers for new decoder buffers, the video's pick of its picture.
    prepare: Duration,
    /// The scene, the layers described, the plan.
    plan: Duration,
    /// The composition of what no plane shows.
    compose: Duration,
    /// The atomic commit and its bookkeeping.
    commit: Duration,
}

impl Phases {
    fn start(&mut self) {
        let now = Some(Instant::now());
        *self = Phases { began: now, last: now, ..Default::default() };
    }

    /// The time since the last mark, added to `phase`.
    fn mark(&mut self, phase: fn(&mut Phases) -> &mut Duration) {
        let now = Instant::now();
        let since = now.saturating_duration_since(self.last.unwrap_or(now));
        *phase(self) += since;
        self.last = Some(now);
    }

    /// Said at debug level when the repaint took `refresh` or more (the soak reads it).
    fn said_if_slow(&self, output: &Output, refresh: Duration) {
        let Some(began) = self.began else { return };
        if began.elapsed() >= refresh {
            tracing::debug!(
                target: "frames",
                output = %output.name(),
                prepare_us = self.prepare.as_micros() as u64,
                plan_us = self.plan.as_micros() as u64,
                compose_us = self.compose.as_micros() as u64,
                commit_us = self.commit.as_micros() as u64,
                "where a slow repaint's time went"
            );
        }
    }
}

impl Drm {
    /// Paint and commit the next frame of `output`'s head. The frame scheduler calls this only
    /// when something is due and no commit of the head is in flight.
    pub fn repaint(&mut self, core: &mut Core, output: &Output) -> Repaint {
        self.phases.start();
        let result = self.repaint_head(core, output);
        if let Some(head) = self.heads.iter().find(|h| &h.output == output) {
            self.phases.said_if_slow(output, head.refresh);
        }
        result
    }

    fn repaint_head(&mut self, core: &mut Core, output: &Output) -> Repaint {
        if !core.displays_on || self.paused {
            return Repaint::Skipped;
        }
        let Some(index) = self.heads.iter().position(|h| &h.output == output && !h.removing) else {
            return Repaint::Skipped;
        };
        if self.heads[index].in_flight.is_some() {
            return Repaint::Skipped;
        }
        self.heads[index].take_pending();
        // Framebuffers of buffers that are gone (a client destroyed them, a decoder was reset)
        // go now, flip or not: what is on screen or in flight is held by the head.
        self.fb_cache.prune(&self.card);
        // Decoder buffers become framebuffers once, when the decoder makes them, not when first
        // shown.
        let fresh = core.player.as_mut().map(|p| p.take_new_buffers()).unwrap_or_default();
        for dmabuf in &fresh {
            match self.fb_cache.get_or_add(&self.card, dmabuf) {
                Ok((_, true)) => {
                    self.stats.framebuffers_created += 1;
                    self.stats.video_framebuffers_created += 1;
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(target: "planes", %err, "decoder buffer cannot be a framebuffer"),
            }
        }
        // What is committed now is seen at the next vblank. The frame that sets the mode shows
        // no picture (below): the video waits for the next one.
        if let (true, Some(clock)) = (self.heads[index].modeset_done, core.frames.clock(output)) {
            core.video_tick(output, clock.next_vblank(Instant::now()), clock.period());
        }
        self.phases.mark(|p| &mut p.prepare);
        let mut scene = core.scene_for_output(output);
        let head = &self.heads[index];
        if !head.modeset_done {
            // The frame that sets the mode is composited whole: a decoded picture in it would be
            // converted on the CPU. The picture waits for the next frame, on its plane.
            scene.layers.retain(|l| !matches!(l.source, LayerSource::Video(_)));
        }
        match self.commit_frame(core, index, scene) {
            Ok(true) => {
                let refused = self.heads[index].commit_accepted(self.hardware_planes);
                if refused > 0 {
                    tracing::info!(output = %output.name(), refused, "display recovered: a commit went through again");
                }
                Repaint::Committed
            }
            Ok(false) => Repaint::Unchanged,
            Err(err) => {
                self.stats.commits_refused += 1;
                let head = &mut self.heads[index];
                let (step, retry) = match err.recovery() {
                    // Busy with the last commit: the same frame at the next vblank.
                    super::error::Recovery::NextVblank => return Repaint::Failed(head.refresh),
                    // No device or no master: nothing to change here until they come back.
                    super::error::Recovery::DeviceGone | super::error::Recovery::NoMaster => {
                        (super::head::LadderStep::Wait, Duration::from_secs(1))
                    }
                    super::error::Recovery::Replan | super::error::Recovery::GiveUp => head.commit_refused(),
                };
                // Each step is logged once; waiting for the display is logged as errors are.
                if step == super::head::LadderStep::Wait {
                    super::log_error(&mut self.last_error, &err);
                } else {
                    tracing::warn!(output = %output.name(), %err, next = step.what(), "drm: commit refused");
                }
                Repaint::Failed(retry)
            }
        }
    }

    /// Plan, composite and commit `scene` on head `index`. Ok(false): nothing changed on screen,
    /// nothing was committed.
    fn commit_frame(&mut self, core: &mut Core, index: usize, scene: Scene) -> Result<bool, DrmError> {
        let Drm {
            card,
            heads,
            compositor,
            painter,
            fb_cache,
            stats,
            feedback,
            writeback,
            fence_waited,
            refuse_plane_commits,
            phases,
            ..
        } = self;
        let head = &mut heads[index];
        let output = head.output.clone();
        let (w, h) = head.size();
        let back = head.back;
        let composition_fb = head.slots[back].buffer.fb();

        // The first frame sets the mode, with everything composited on the primary plane.
        let (descs, origins, plan, fbs) = if head.modeset_done {
            let (descs, origins) =
                describe(card, fb_cache, stats, &scene, (w, h), head.rotation, core.config.video.colour);
            let fbs: Vec<Option<Scanout>> = origins
                .iter()
                .map(|o| match o {
                    Origin::Surface(s, fb, _) => {
                        let src_pos = s.src.map(|r| (r.0, r.1)).unwrap_or((0, 0));
                        fb.map(|fb| Scanout { fb, src_pos, colour: s.colour })
                    }
                    Origin::Video(fb, colour) => fb.map(|fb| Scanout { fb, src_pos: (0, 0), colour: *colour }),
                    _ => None,
                })
                .collect();
            let searches = head.planner.stats().searches;
            let tests_before = head.planner.test_commits();
            let plan = {
                let mut planner = std::mem::replace(&mut head.planner, planner::Planner::new(Vec::new(), 0));
                let plan = planner.plan(&descs, &mut Tester { card, head, buffers: &fbs, composition_fb });
                head.planner = planner;
                plan
            };
            stats.test_commits += head.planner.test_commits() - tests_before;
            if head.planner.stats().searches != searches {
                // A new scene shape: tell each client surface which planes could take it.
                let planes = if head.planner.layers_on_planes() { head.planner.planes() } else { &[] };
                for (desc, origin) in descs.iter().zip(&origins) {
                    if let Origin::Surface(s, _, _) = origin {
                        feedback.update(&s.surface, planes, desc);
                    }
                }
                tracing::debug!(target: "planes", output = %output.name(), plan = %plan, "new plan");
                for (i, rejections) in head.planner.rejections().iter().enumerate() {
                    for r in rejections {
                        tracing::debug!(target: "planes", output = %output.name(), layer = i, reason = %r, "not on that plane");
                    }
                }
            }
            (descs, origins, Some(plan), fbs)
        } else {
            (Vec::new(), Vec::new(), None, Vec::new())
        };

        phases.mark(|p| &mut p.plan);
        // Composition: every layer the plan did not put on a plane.
        let mut on_planes = OnPlanes::default();
        if let Some(plan) = &plan {
            for (o, p) in origins.iter().zip(&plan.layers) {
                match (o, p) {
                    (Origin::Surface(s, _, _), Placement::Plane { .. }) => on_planes.surfaces.push(s.surface.clone()),
                    (Origin::Video(..), Placement::Plane { .. }) => on_planes.video = true,
                    _ => {}
                }
            }
        }
        let composition = plan.as_ref().map(|p| p.composition).unwrap_or(Some(planner::CompositionPlacement {
            plane: head.primary.handle.into(),
            zpos: None,
            format: planner::DRM_FORMAT_XRGB8888,
        }));
        let mut composited = None;
        if let Some(c) = composition {
            // At the bottom the composition shows the background; above a plane it is transparent.
            let bottom = c.format == planner::DRM_FORMAT_XRGB8888;
            let clear = if bottom { scene.background } else { [0.0, 0.0, 0.0, 0.0] };
            let slot = &mut head.slots[back];
            match compositor.render(painter, &mut slot.buffer, &mut slot.damage, &scene, &on_planes, clear) {
                Ok(drawn) => composited = drawn,
                Err(err) => tracing::error!(output = %output.name(), %err, "composition failed"),
            }
        }
        let composited = composited.filter(|(d, _)| !d.is_empty());
        phases.mark(|p| &mut p.compose);
        let plane_fbs: Vec<Option<Scanout>> = match &plan {
            Some(plan) => plan
                .layers
                .iter()
                .zip(&fbs)
                .map(|(p, fb)| matches!(p, Placement::Plane { .. }).then_some(*fb).flatten())
                .collect(),
            None => Vec::new(),
        };
        let changed = !head.modeset_done
            || composited.is_some()
            || plan != head.last_plan
            || plane_fbs != head.last_fbs
            || !head.captures.is_empty();
        if !changed {
            return Ok(false);
        }

        // The composition's GPU work: KMS waits for its fence (IN_FENCE_FD), the loop does not.
        let mut in_fence = None;
        if let (Some(c), Some((_, sync))) = (composition, &composited) {
            if !sync.is_reached() {
                let plane = head.plane(c.plane).and_then(|p| p.props.handle("IN_FENCE_FD").map(|h| (p.handle, h)));
                match (plane, sync.export()) {
                    (Some(target), Some(fd)) => in_fence = Some((target, fd)),
                    _ => {
                        if !std::mem::replace(fence_waited, true) {
                            tracing::warn!("the composition's fence cannot go to KMS: waiting for the GPU on the CPU");
                        }
                        let _ = sync.wait();
                    }
                }
            }
        }
        let mut fence: i32 = -1;
        let mut with_writeback = false;
        let result = match &plan {
            None => super::modeset::modeset(card, head, writeback.as_mut(), composition_fb)
                .map(|()| vec![head.primary.handle.into()]),
            Some(plan) => plan_request(head, plan, &descs, &fbs, composition_fb).and_then(|mut req| {
                if let Some(((plane, prop), fd)) = &in_fence {
                    req.add_property(*plane, *prop, Value::SignedRange(std::os::fd::AsRawFd::as_raw_fd(fd) as i64));
                }
                with_writeback =
                    super::writeback::writeback_request(writeback, head, card, stats, &mut req, &mut fence)?;
                let on_a_plane = plan.layers.iter().any(|p| matches!(p, Placement::Plane { .. }));
                if on_a_plane && *refuse_plane_commits > 0 {
                    *refuse_plane_commits -= 1;
                    return Err(DrmError::kernel(
                        format!("{}: atomic commit on {} (refused by fault injection)", card.name(), head.name()),
                        std::io::Error::from_raw_os_error(libc::EINVAL),
                    ));
                }
                card.atomic_commit(AtomicCommitFlags::NONBLOCK | AtomicCommitFlags::PAGE_FLIP_EVENT, req).map_err(
                    |source| DrmError::kernel(format!("{}: atomic commit on {}", card.name(), head.name()), source),
                )?;
                Ok(plan.planes())
            }),
        };
        let active = result?;
        stats.commits += 1;
        if in_fence.is_some() {
            stats.in_fences += 1;
        }
        if let Some(area) =
            composited.as_ref().map(|(r, _)| r.iter().map(|r| r.size.w as u64 * r.size.h as u64).sum::<u64>())
        {
            stats.frames_composited += 1;
            if compositor.copies() {
                stats.cpu_copied_bytes += area * 4;
            }
        }
        head.report = match &plan {
            Some(plan) => {
                let video_composited = origins
                    .iter()
                    .zip(&plan.layers)
                    .any(|(o, p)| matches!((o, p), (Origin::Video(..), Placement::Composited { .. })));
                if video_composited {
                    stats.video_frames_composited += 1;
                }
                // A client dmabuf no plane took: composited, which costs a copy (pixman) or a
                // GPU pass per frame it changes.
                let client_composited = origins.iter().zip(&plan.layers).any(|(o, p)| {
                    matches!((o, p), (Origin::Surface(s, _, _), Placement::Composited { .. }) if s.dmabuf.is_some())
                });
                if client_composited && composited.is_some() {
                    stats.client_dmabufs_composited += 1;
                }
                report(head, &descs, &origins, plan, None)
            }
            None => vec![LayerReport {
                source: "composition",
                name: "vitrine".into(),
                format: Some("AR24".into()),
                modifier: Some("LINEAR".into()),
                size: [w, h],
                plane: Some(head.primary.handle.into()),
                composited: false,
                reason: None,
                colour: None,
            }],
        };
        let buffers = origins
            .iter()
            .filter_map(|o| match o {
                Origin::Surface(s, Some(_), _) => Some(s.buffer.clone()),
                _ => None,
            })
            .collect();
        head.in_flight = Some(InFlight { scene, buffers, committed: Instant::now() });
        head.active_planes = active;
        head.last_plan = plan;
        head.last_fbs = plane_fbs;
        if composition.is_some() {
            head.back = (back + 1) % head.slots.len();
        }
        if with_writeback {
            self.writeback_committed(core, index, fence);
        }
        self.phases.mark(|p| &mut p.commit);
        Ok(true)
    }

    /// The flip of the commit in flight on `output` never came: the commit is given up (its
    /// buffers stay held until the next flip, in case the display still shows them) and the
    /// head goes down the display ladder as for a refused commit.
    pub fn flip_timed_out(&mut self, output: &Output) {
        let Some(head) = self.heads.iter_mut().find(|h| &h.output == output) else { return };
        if let Some(lost) = head.in_flight.take() {
            head.on_screen.extend(lost.buffers);
        }
        let (step, _) = head.commit_refused();
        self.stats.flips_timed_out += 1;
        tracing::warn!(output = %output.name(), next = step.what(), "drm: page flip never came");
    }

    /// Page flips: what was committed is on screen; release what left it and tell the frame
    /// scheduler, which runs the next repaint if one is due.
    pub fn drm_events(&mut self, core: &mut Core) {
        let events = match self.card.receive_events() {
            Ok(events) => events.collect::<Vec<_>>(),
            Err(err) => {
                tracing::warn!(%err, "cannot read DRM events");
                return;
            }
        };
        for event in events {
            let Event::PageFlip(flip) = event else { continue };
            let Some(index) = self.heads.iter().position(|h| h.crtc == flip.crtc) else { continue };
            let head = &mut self.heads[index];
            let Some(done) = head.in_flight.take() else { continue };
            // Buffers of a mode left behind are off screen now.
            for slot in std::mem::take(&mut head.retired) {
                slot.buffer.destroy(&self.card);
            }
            self.stats.frames_presented += 1;
            let video = done.video().cloned();
            // The picture shown before this flip may go back to the decoder now.
            head.on_screen_video = video.clone();
            // The previous buffers left the screen with this flip: they may be released now.
            head.on_screen = done.buffers;
            let output = head.output.clone();
            let refresh = head.refresh;
            let at = crate::clock::instant_at(flip.duration);
            slow_flip(&output, done.committed, at, refresh);
            let (removing, power_off) = (head.removing, head.power_off);
            self.fb_cache.prune(&self.card);
            if removing {
                self.finish_removal(index);
                continue;
            }
            if power_off {
                self.power_off(index);
            }
            post_repaint(&output, &done.scene, at, refresh, flip.frame as u64);
            // Whether the picture was on a plane is counted by the DRM backend itself.
            core.video_presented(video.as_ref(), at, false);
            if self
                .writeback
                .as_ref()
                .is_some_and(|wb| wb.crtc == Some(flip.crtc) && !wb.in_flight.is_empty() && !wb.fenced)
            {
                self.writeback_done(core);
            }
            core.frame_done(&output, at);
        }
    }
}

/// A flip the kernel stamped later than the vblank after its commit, or whose event reached
/// the loop a refresh or more after that stamp: said at debug level, for the pictures it may
/// have made late (the soak reads it). Nothing is logged while flips keep their time.
fn slow_flip(output: &Output, committed: Instant, at: Instant, refresh: Duration) {
    let now = Instant::now();
    let commit_to_flip = at.saturating_duration_since(committed);
    let flip_to_loop = now.saturating_duration_since(at);
    if commit_to_flip > refresh + refresh / 2 || flip_to_loop >= refresh {
        tracing::debug!(
            target: "frames",
            output = %output.name(),
            commit_to_flip_us = commit_to_flip.as_micros() as u64,
            flip_to_loop_us = flip_to_loop.as_micros() as u64,
            "a flip came late"
        );
    }
}

fn report(
    head: &Head,
    descs: &[LayerDesc],
    origins: &[Origin],
    plan: &Plan,
    composition: Option<u32>,
) -> Vec<LayerReport> {
    let mut out: Vec<LayerReport> = descs
        .iter()
        .zip(origins)
        .zip(&plan.layers)
        .map(|((desc, origin), placement)| {
            let (source, name) = match origin {
                Origin::Background => ("solid", "background".to_string()),
                Origin::Window(n) | Origin::Surface(_, _, n) => ("client", n.clone()),
                Origin::Cursor => ("cursor", "pointer".to_string()),
                Origin::Video(..) => ("video", "video".to_string()),
            };
            let (plane, reason) = match placement {
                Placement::Plane { plane, .. } => (Some(*plane), None),
                Placement::Composited { reason } => (None, Some(reason.to_string())),
            };
            let has_buffer = desc.kind.scanoutable();
            let colour = match origin {
                Origin::Video(_, colour) => Some(*colour),
                Origin::Surface(s, ..) if has_buffer && crate::fourcc::is_yuv(desc.format) => Some(s.colour),
                _ => None,
            }
            .map(|colour| {
                let told = plane.and_then(|id| head.plane(id)).map(|p| p.props.has("COLOR_ENCODING"));
                match told {
                    Some(false) if colour != Colour::default() => {
                        static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
                        if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                            tracing::warn!(
                                target: "planes",
                                colour = %colour.describe(),
                                "a picture on a plane that converts as BT.709 limited (video.colour = \"fast\"): its colours are the driver's"
                            );
                        }
                        format!(
                        "{}, shown as BT.709 limited: the plane converts its own way (video.colour = \"fast\")",
                        colour.describe()
                    )
                    }
                    _ => colour.describe(),
                }
            });
            LayerReport {
                source,
                name,
                format: has_buffer.then(|| fourcc_name(desc.format)),
                modifier: has_buffer.then(|| modifier_name(desc.modifier)),
                size: [desc.src_size.0, desc.src_size.1],
                plane,
                composited: plane.is_none(),
                reason,
                colour,
            }
        })
        .collect();
    if let Some(c) = plan.composition {
        out.push(LayerReport {
            source: "composition",
            name: "vitrine".into(),
            format: Some(fourcc_name(c.format)),
            modifier: Some("LINEAR".into()),
            size: [0, 0],
            plane: Some(composition.unwrap_or(c.plane)),
            composited: false,
            reason: None,
            colour: None,
        });
    }
    out
}
