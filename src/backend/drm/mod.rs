//! The DRM/KMS backend: vitrine drives the display controller itself with atomic commits,
//! putting layers on hardware planes where it can (see `planner`) and compositing the rest
//! (see `compose`). Every connected connector gets a head (see `head`); heads follow connector
//! hotplug. The frame scheduler (`crate::frames`) says when a head repaints; a head's page flip
//! says when its frame is on screen. Nothing here waits for the kernel: a head busy with a flip
//! defers what needs it idle (turning off, a capture) until that flip.

pub mod compose;
pub mod device;
mod error;
mod feedback;
mod frame;
pub mod head;
pub mod kms;
mod plane;
pub mod planner;
pub mod probe;
pub mod scanout;
pub mod session;
pub mod vt;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drm::control::atomic::AtomicModeReq;
use drm::control::property::Value;
use drm::control::{crtc, AtomicCommitFlags, Device as ControlDevice};
use drm::Device as BasicDevice;
use smithay::backend::allocator::dmabuf::Dmabuf;
use smithay::backend::allocator::{Format, Fourcc, Modifier};
use smithay::output::Output;
use smithay::reexports::calloop::generic::Generic;
use smithay::reexports::calloop::{Interest, Mode as LoopMode, PostAction};
use smithay::reexports::wayland_protocols::wp::linux_dmabuf::zv1::server::zwp_linux_dmabuf_feedback_v1::TrancheFlags;
use smithay::wayland::dmabuf::{DmabufFeedback, DmabufFeedbackBuilder};

use crate::cli::OutputSpec;
use crate::image::RgbaImage;
use crate::render::Painter;
use crate::scene::Scene;
use crate::state::{Core, State};
use compose::Compositor;
use device::{Card, ConnectorInfo, PlaneInfo, Props};
pub use error::{DrmError, Recovery};
use head::{Head, PlaneSlot, Slot};
use kms::MappedBuffer;

/// Counters of what the display path did, for `vitrine msg stats`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct KmsStats {
    pub commits: u64,
    /// Commits the kernel refused (each one a step down the display ladder).
    pub commits_refused: u64,
    /// Commits whose page flip never came within a second (recovered the same way).
    pub flips_timed_out: u64,
    pub test_commits: u64,
    pub framebuffers_created: u64,
    pub frames_presented: u64,
    pub frames_composited: u64,
    /// Bytes the CPU wrote into scanout buffers by composition (pixman; GLES draws on the GPU).
    pub cpu_copied_bytes: u64,
    /// Framebuffers made for decoded video pictures (once per decoder buffer).
    pub video_framebuffers_created: u64,
    /// Repaints where the video picture was not on a plane.
    pub video_frames_composited: u64,
    /// Repaints that composited a client's dmabuf because no plane took it.
    pub client_dmabufs_composited: u64,
    /// Outputs added and removed at run time (connector hotplug).
    pub outputs_added: u64,
    pub outputs_removed: u64,
    /// Compositions whose GPU fence went to KMS (IN_FENCE_FD) instead of being waited for.
    pub in_fences: u64,
    /// Screenshots read back from the writeback connector.
    pub writeback_captures: u64,
}

/// The writeback connector (vkms has one; most SoCs do not): screenshots of what the planes
/// show. It is attached to one head's CRTC at that head's modeset; a capture rides on that
/// head's next commit and is read back when its out-fence signals.
pub struct Writeback {
    connector: ConnectorInfo,
    buffer: Option<MappedBuffer>,
    crtc: Option<crtc::Handle>,
    /// Captures whose commit went out and whose fence has not signalled yet.
    in_flight: Vec<crate::backend::Captured>,
    /// That commit has an out-fence (else the flip says the frame is written).
    fenced: bool,
}

/// The writeback part of head `head`'s next commit, when captures wait for it: the buffer to
/// write into and where the kernel puts the out-fence. Returns whether it was added.
fn writeback_request(
    writeback: &mut Option<Writeback>,
    head: &Head,
    card: &Card,
    stats: &mut KmsStats,
    req: &mut AtomicModeReq,
    fence: &mut i32,
) -> Result<bool, DrmError> {
    if head.captures.is_empty() {
        return Ok(false);
    }
    let size = head.size();
    let Some(wb) = writeback.as_mut().filter(|wb| wb.crtc == Some(head.crtc)) else { return Ok(false) };
    if !wb.in_flight.is_empty() {
        // One capture at a time in the buffer: these ride on a later commit.
        return Ok(false);
    }
    if wb.buffer.as_ref().is_some_and(|b| (b.width, b.height) != size) {
        if let Some(old) = wb.buffer.take() {
            old.destroy(card);
        }
    }
    if wb.buffer.is_none() {
        wb.buffer = Some(
            MappedBuffer::new(card, size, false)
                .map_err(|source| DrmError::kernel("writeback buffer".into(), source))?,
        );
        stats.framebuffers_created += 1;
    }
    let (Some(fb_prop), Some(fence_prop)) =
        (wb.connector.props.handle("WRITEBACK_FB_ID"), wb.connector.props.handle("WRITEBACK_OUT_FENCE_PTR"))
    else {
        return Err(DrmError::Missing("the writeback connector lacks WRITEBACK_FB_ID/WRITEBACK_OUT_FENCE_PTR".into()));
    };
    let fb = wb.buffer.as_ref().map(|b| b.fb).ok_or_else(|| DrmError::Missing("no writeback buffer".into()))?;
    req.add_property(wb.connector.handle, fb_prop, Value::Framebuffer(Some(fb)));
    req.add_property(wb.connector.handle, fence_prop, Value::UnsignedRange(fence as *mut i32 as u64));
    Ok(true)
}

pub struct Drm {
    card: Card,
    /// Every plane of the device; heads own a share of them.
    planes: Vec<PlaneInfo>,
    /// The device's CRTCs, in resource order (a CRTC's index is its bit in possible_crtcs).
    crtcs: Vec<crtc::Handle>,
    heads: Vec<Head>,
    compositor: Compositor,
    painter: Painter,
    /// Switched away from our VT: no DRM master, no commits.
    paused: bool,
    /// A hotplug came while paused: look at the connectors again on resume.
    rescan_on_resume: bool,
    vt: Option<vt::Vt>,
    session: session::Session,
    /// The input context, suspended while the seat is away.
    pub libinput: Option<smithay::reexports::input::Libinput>,
    fb_cache: scanout::FbCache,
    writeback: Option<Writeback>,
    /// Only layers on hardware planes when true (`[drm] hardware_planes`).
    hardware_planes: bool,
    /// Per-surface linux-dmabuf feedback.
    feedback: feedback::SurfaceFeedback,
    last_error: Option<Instant>,
    /// A composition fence could not go to KMS and was waited for (said once).
    fence_waited: bool,
    /// Fault injection for the display ladder's tests: this many commits that put a layer on a
    /// plane are refused as the kernel refuses them (EINVAL) before they reach it
    /// (`VITRINE_FAULT_REFUSE_PLANE_COMMITS`; no driver in the rig refuses a real commit that
    /// passed TEST_ONLY).
    refuse_plane_commits: u32,
    pub stats: KmsStats,
}

impl State {
    /// The DRM backend and the rest of the compositor, for the callbacks of DRM event sources.
    pub fn drm(&mut self) -> Option<(&mut Drm, &mut Core)> {
        match &mut self.backend {
            crate::backend::Backend::Drm(d) => Some((d, &mut self.core)),
            _ => None,
        }
    }
}

/// Find a card vitrine can drive: it opens, does atomic KMS, becomes DRM master and has a
/// connector for a display. `wanted` (`[drm] device`) names the one to check; empty: the
/// first that works.
pub fn usable_card(wanted: &str) -> Result<PathBuf, String> {
    if !wanted.is_empty() {
        let path = PathBuf::from(wanted);
        return check_card(&path).map(|()| path).map_err(|e| format!("drm.device: {e}"));
    }
    let nodes = device::card_nodes();
    if nodes.is_empty() {
        return Err("no DRM card node in /dev/dri".into());
    }
    let mut why = Vec::new();
    for path in nodes {
        match check_card(&path) {
            Ok(()) => return Ok(path),
            Err(e) => why.push(e),
        }
    }
    Err(why.join("; "))
}

/// `VITRINE_FAULT_REFUSE_PLANE_COMMITS=N`: the display ladder's fault injection (see
/// `Drm::refuse_plane_commits`).
fn refused_plane_commits_injected() -> u32 {
    let n = std::env::var("VITRINE_FAULT_REFUSE_PLANE_COMMITS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    if n > 0 {
        tracing::warn!(n, "fault injection: the next commits putting a layer on a plane will be refused");
    }
    n
}

fn check_card(path: &Path) -> Result<(), String> {
    let (mut session, _notifier) = session::Session::open();
    let card = session.open_card(path).map_err(|e| e.to_string())?;
    // A seat manager hands out master with the device; directly, vitrine must take it.
    if !session.is_seat() {
        card.acquire_master_lock()
            .map_err(|e| format!("{}: cannot become DRM master ({e}): another display server runs", path.display()))?;
    }
    // A display may be plugged in later (a signage screen switched on after the board): a card
    // with display connectors is usable even when none is connected yet.
    let displays = device::connectors(&card).map_err(|e| e.to_string())?.iter().filter(|c| !c.writeback).count();
    let _ = card.release_master_lock();
    if displays > 0 {
        Ok(())
    } else {
        Err(format!("{}: no display connector", path.display()))
    }
}

pub(crate) fn log_error(last: &mut Option<Instant>, err: &dyn std::fmt::Display) {
    let quiet = last.map(|t| t.elapsed() < Duration::from_secs(5)).unwrap_or(false);
    if !quiet {
        tracing::error!(%err, "drm: frame not shown");
        *last = Some(Instant::now());
    }
}

/// A mode's refresh rate in millihertz, from its timings (60.004 Hz is not 60).
pub fn refresh_mhz(mode: &drm::control::Mode) -> u32 {
    let (htotal, vtotal) = (mode.hsync().2 as u64, mode.vsync().2 as u64);
    if htotal == 0 || vtotal == 0 {
        return mode.vrefresh().max(1) * 1000;
    }
    let mut mhz = mode.clock() as u64 * 1_000_000 / (htotal * vtotal);
    let flags = mode.flags();
    if flags.contains(drm::control::ModeFlags::INTERLACE) {
        mhz *= 2;
    }
    if flags.contains(drm::control::ModeFlags::DBLSCAN) {
        mhz /= 2;
    }
    mhz.max(1000) as u32
}

impl Drm {
    /// Open the device and watch it (page flips, hotplug, the seat or VT). The connectors are
    /// lit by `light`, once the backend is in place.
    pub fn open(core: &mut Core, path: &Path, renderer: compose::RendererChoice) -> Result<Drm, DrmError> {
        let (mut session, notifier) = session::Session::open();
        if !session.is_seat() {
            // On a VT of its own, vitrine gets the VT's signals: blocked before the renderer
            // (Mesa) may start threads, so only the signalfd receives them.
            crate::process::block(&[libc::SIGUSR1, libc::SIGUSR2]);
        }
        let card = session.open_card(path)?;
        if !session.is_seat() {
            card.acquire_master_lock()
                .map_err(|source| DrmError::kernel(format!("{}: cannot become DRM master", card.name()), source))?;
        }
        let compositor = Compositor::new(&card, renderer).map_err(DrmError::Renderer)?;
        let crtcs = card
            .resource_handles()
            .map_err(|source| DrmError::kernel(format!("{}: resources", card.name()), source))?
            .crtcs()
            .to_vec();
        let planes = device::planes(&card)?;
        let connectors = device::connectors(&card)?;
        let writeback = connectors.iter().find(|c| c.writeback).cloned().map(|connector| Writeback {
            connector,
            buffer: None,
            crtc: None,
            in_flight: Vec::new(),
            fenced: false,
        });
        let drm_fd =
            card.as_file().try_clone().map_err(|source| DrmError::kernel(format!("{}: dup", card.name()), source))?;
        tracing::info!(
            device = %card.name(),
            renderer = compositor.name(),
            planes = planes.len(),
            crtcs = crtcs.len(),
            writeback = writeback.is_some(),
            "drm: device opened"
        );
        let painter = Painter::default();
        painter.set_yuv_on_cpu(!compose::samples_yuv(&compositor));
        let dev = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(path)
                .map(|m| m.rdev())
                .map_err(|source| DrmError::kernel(path.display().to_string(), source))?
        };
        let feedback = feedback::SurfaceFeedback::new(dev, compositor.dmabuf_formats());
        let mut drm = Drm {
            card,
            planes,
            crtcs,
            heads: Vec::new(),
            compositor,
            painter,
            paused: false,
            rescan_on_resume: false,
            vt: None,
            session,
            libinput: None,
            fb_cache: scanout::FbCache::default(),
            writeback,
            hardware_planes: core.config.drm.hardware_planes,
            feedback,
            last_error: None,
            fence_waited: false,
            refuse_plane_commits: refused_plane_commits_injected(),
            stats: KmsStats::default(),
        };
        match notifier {
            Some(notifier) => watch_seat(core, notifier)?,
            None => drm.vt = start_vt(core),
        }
        core.loop_handle
            .insert_source(Generic::new(drm_fd, Interest::READ, LoopMode::Level), |_, _, state| {
                if let Some((d, core)) = state.drm() {
                    d.drm_events(core);
                }
                Ok(PostAction::Continue)
            })
            .map_err(|e| DrmError::Loop(format!("cannot watch the DRM device: {e}")))?;
        watch_hotplug(core, &drm, path);
        Ok(drm)
    }

    /// Light every connected connector vitrine should drive. An error only when none could be
    /// lit although some were connected.
    pub fn light(&mut self, core: &mut Core) -> Result<(), DrmError> {
        let (lit, errors) = self.update_heads(core);
        if lit == 0 && !errors.is_empty() {
            return Err(DrmError::Missing(errors.join("; ")));
        }
        if lit == 0 {
            tracing::warn!("no display is connected: waiting for one to be plugged in");
        }
        Ok(())
    }

    fn head_of(&self, output: &Output) -> Option<usize> {
        self.heads.iter().position(|h| &h.output == output)
    }

    /// The heads, in the order they were lit.
    pub fn heads(&self) -> &[Head] {
        &self.heads
    }

    /// What the display path holds right now: framebuffers imported, plans cached (for the
    /// soak, which checks that neither grows).
    pub fn held(&self) -> serde_json::Value {
        let plans: usize = self.heads.iter().map(|h| h.planner.cached()).sum();
        serde_json::json!({ "framebuffers": self.fb_cache.len(), "plans_cached": plans })
    }

    /// Read the connectors again: heads of connectors that went away are removed, connected
    /// connectors without a head get one. Returns how many heads there are, and what could not
    /// be lit.
    fn update_heads(&mut self, core: &mut Core) -> (usize, Vec<String>) {
        if self.paused {
            self.rescan_on_resume = true;
            return (self.heads.len(), Vec::new());
        }
        let connectors = match device::connectors(&self.card) {
            Ok(c) => c,
            Err(err) => return (self.heads.len(), vec![err.to_string()]),
        };
        let gone: Vec<crtc::Handle> = self
            .heads
            .iter()
            .filter(|h| !h.removing)
            .filter(|h| {
                !connectors.iter().any(|c| c.handle == h.connector.handle && c.connected && !c.modes.is_empty())
            })
            .map(|h| h.crtc)
            .collect();
        for crtc in gone {
            self.remove_head(core, crtc);
        }
        let wanted = core.config.drm.connector.clone();
        let mut errors = Vec::new();
        for connector in connectors.iter().filter(|c| !c.writeback) {
            let named = wanted.is_empty() || connector.name == wanted;
            if !named || self.heads.iter().any(|h| h.connector.handle == connector.handle) {
                continue;
            }
            if !connector.connected || connector.modes.is_empty() {
                if !wanted.is_empty() {
                    tracing::warn!(connector = %connector.name, "drm.connector is not connected: waiting for it");
                }
                continue;
            }
            if let Err(err) = self.add_head(core, connector.clone()) {
                tracing::error!(connector = %connector.name, %err, "cannot light the connector");
                errors.push(err.to_string());
            }
        }
        if !wanted.is_empty() && !connectors.iter().any(|c| c.name == wanted && !c.writeback) {
            let names: Vec<&str> = connectors.iter().filter(|c| !c.writeback).map(|c| c.name.as_str()).collect();
            errors.push(format!("drm.connector {wanted:?} does not exist (connectors: {})", names.join(", ")));
        }
        (self.heads.iter().filter(|h| !h.removing).count(), errors)
    }

    /// Light `connector`: a free CRTC, the mode, a share of the planes, composition buffers and
    /// an output for clients.
    fn add_head(&mut self, core: &mut Core, connector: ConnectorInfo) -> Result<(), DrmError> {
        let mode_wanted = core.config.drm.mode.clone();
        let rotation = core.config.drm.rotation;
        let name = self.card.name();
        let mode = pick_mode(&connector, &mode_wanted).map_err(|e| DrmError::Missing(format!("{name}: {e}")))?;
        let crtc = connector
            .possible_crtcs
            .iter()
            .copied()
            .find(|c| !self.heads.iter().any(|h| h.crtc == *c))
            .ok_or_else(|| DrmError::Missing(format!("{name}: no free CRTC for {}", connector.name)))?;
        let crtc_index = self.crtcs.iter().position(|c| *c == crtc).unwrap_or(0);
        let crtc_props = Props::read(&self.card, crtc)
            .map_err(|source| DrmError::kernel(format!("{name}: CRTC properties"), source))?;
        let mut crtc_indices: Vec<usize> = self.heads.iter().map(|h| h.crtc_index).collect();
        crtc_indices.push(crtc_index);
        let shares = self.share_planes(&crtc_indices);
        let (primary, others) =
            shares.last().cloned().ok_or_else(|| DrmError::Missing(format!("{name}: no planes for CRTC {crtc:?}")))?;
        let primary = primary
            .ok_or_else(|| DrmError::Missing(format!("{name}: no primary plane left for {}", connector.name)))?;

        let (w, h) = mode.size();
        let size = (w as u32, h as u32);
        let mut slots = Vec::new();
        for _ in 0..2 {
            let buffer = self.compositor.new_buffer(&self.card, size).map_err(DrmError::Renderer)?;
            self.stats.framebuffers_created += 1;
            slots.push(Slot { buffer, damage: head::damage_tracker(size, rotation) });
        }
        let refresh_mhz = refresh_mhz(&mode);
        let refresh = Duration::from_nanos(1_000_000_000_000 / refresh_mhz as u64);
        // New outputs go to the right of the others.
        let x = self
            .heads
            .iter()
            .map(|h| h.output.current_location().x + h.rotation.logical_size(h.size()).0 as i32)
            .max()
            .unwrap_or(0);
        let spec = OutputSpec { width: size.0, height: size.1, refresh_mhz };
        let output = crate::backend::add_output(&core.display_handle, &connector.name, "drm", spec, (x, 0).into());
        output.change_current_state(None, Some(rotation.transform()), None, None);
        let caps = std::iter::once(&primary).chain(&others).map(plane::plane_caps).collect();
        tracing::info!(
            device = %self.card.name(),
            connector = %connector.name,
            crtc = u32::from(crtc),
            mode = %format!("{w}x{h}@{:.3}", refresh_mhz as f64 / 1000.0),
            rotation = u32::from(rotation),
            primary = u32::from(primary.handle),
            planes = 1 + others.len(),
            "drm: lighting the connector"
        );
        self.heads.push(Head {
            connector,
            crtc,
            crtc_index,
            crtc_props,
            mode,
            rotation,
            primary,
            others,
            slots,
            back: 0,
            output: output.clone(),
            modeset_done: false,
            in_flight: None,
            on_screen: Vec::new(),
            on_screen_video: None,
            planner: {
                let mut p = planner::Planner::new(caps, crtc_index);
                p.set_layers_on_planes(self.hardware_planes);
                p
            },
            active_planes: Vec::new(),
            last_fbs: Vec::new(),
            last_plan: None,
            report: Vec::new(),
            refresh,
            captures: Vec::new(),
            power_off: false,
            removing: false,
            commit_failures: 0,
            composited_for: 0,
        });
        self.stats.outputs_added += 1;
        self.reshare_planes();
        core.output_added(output, refresh_mhz, true);
        Ok(())
    }

    /// The connector of the head on `crtc` went away: clients lose its output now; its CRTC and
    /// planes are turned off once no commit of it is in flight (at its flip, if one is).
    fn remove_head(&mut self, core: &mut Core, crtc: crtc::Handle) {
        let Some(index) = self.heads.iter().position(|h| h.crtc == crtc) else { return };
        let head = &mut self.heads[index];
        if head.removing {
            return;
        }
        head.removing = true;
        tracing::info!(connector = %head.connector.name, "drm: connector gone, output removed");
        self.stats.outputs_removed += 1;
        let output = head.output.clone();
        let captures = std::mem::take(&mut head.captures);
        core.output_removed(&output);
        for done in captures {
            core.defer(move |state| done(state, Err("the output went away".into())));
        }
        if self.heads[index].in_flight.is_none() {
            self.finish_removal(index);
        }
    }

    /// Turn a removed head off and give its planes to the others.
    fn finish_removal(&mut self, index: usize) {
        let head = self.heads.remove(index);
        if let Err(err) = self.disable_head(&head) {
            tracing::warn!(connector = %head.name(), %err, "cannot turn the CRTC off");
        }
        for slot in head.slots {
            slot.buffer.destroy(&self.card);
        }
        self.reshare_planes();
    }

    /// One commit that takes a head's connector, CRTC and planes off the display.
    fn disable_head(&mut self, head: &Head) -> Result<(), DrmError> {
        let prop = |props: &Props, name: &str| {
            props.handle(name).ok_or_else(|| DrmError::Missing(format!("property {name} missing")))
        };
        let mut req = AtomicModeReq::new();
        req.add_property(head.connector.handle, prop(&head.connector.props, "CRTC_ID")?, Value::CRTC(None));
        req.add_property(head.crtc, prop(&head.crtc_props, "ACTIVE")?, Value::Boolean(false));
        req.add_property(head.crtc, prop(&head.crtc_props, "MODE_ID")?, Value::Unknown(0));
        for plane in std::iter::once(&head.primary).chain(&head.others) {
            plane::disable_plane(plane, &mut req)?;
        }
        if let Some(wb) = self.writeback.as_mut().filter(|wb| wb.crtc == Some(head.crtc)) {
            req.add_property(wb.connector.handle, prop(&wb.connector.props, "CRTC_ID")?, Value::CRTC(None));
            wb.crtc = None;
        }
        self.card
            .atomic_commit(AtomicCommitFlags::ALLOW_MODESET | AtomicCommitFlags::NONBLOCK, req)
            .map_err(|source| DrmError::kernel(format!("turning {} off", head.name()), source))?;
        self.stats.commits += 1;
        Ok(())
    }

    /// The planes each head gets for the heads on `crtc_indices`.
    fn share_planes(&self, crtc_indices: &[usize]) -> Vec<(Option<PlaneInfo>, Vec<PlaneInfo>)> {
        let slots: Vec<PlaneSlot> = self
            .planes
            .iter()
            .map(|p| PlaneSlot {
                id: p.handle.into(),
                kind: plane::plane_caps(p).kind,
                possible_crtcs: p.possible_crtcs,
            })
            .collect();
        let by_id = |id: u32| self.planes.iter().find(|p| u32::from(p.handle) == id).cloned();
        head::share_planes(&slots, crtc_indices)
            .into_iter()
            .map(|(primary, others)| (primary.and_then(by_id), others.into_iter().filter_map(by_id).collect()))
            .collect()
    }

    /// Deal the planes out again after a head came or went; heads whose planes changed set every
    /// plane again at their next frame (planes they lost are turned off first).
    fn reshare_planes(&mut self) {
        let indices: Vec<usize> = self.heads.iter().map(|h| h.crtc_index).collect();
        let shares = self.share_planes(&indices);
        let mut req = AtomicModeReq::new();
        let mut lost = 0;
        for (head, (primary, others)) in self.heads.iter_mut().zip(shares) {
            let Some(primary) = primary else { continue };
            let same = primary.handle == head.primary.handle
                && others.iter().map(|p| p.handle).eq(head.others.iter().map(|p| p.handle));
            if same {
                continue;
            }
            for id in &head.active_planes {
                let kept = u32::from(primary.handle) == *id || others.iter().any(|p| u32::from(p.handle) == *id);
                if let (false, Some(info)) = (kept, head.plane(*id)) {
                    if plane::disable_plane(info, &mut req).is_ok() {
                        lost += 1;
                    }
                }
            }
            tracing::info!(connector = %head.name(), planes = 1 + others.len(), "drm: planes dealt out again");
            head.set_planes(primary, others, self.hardware_planes);
        }
        if lost > 0 {
            match self.card.atomic_commit(AtomicCommitFlags::empty(), req) {
                Ok(()) => self.stats.commits += 1,
                Err(err) => tracing::warn!(%err, "cannot turn off planes moving to another head"),
            }
        }
    }

    /// A screenshot of `output`: what its planes show, read back through the writeback connector
    /// from the head's next commit (`done` runs when its fence signals), or vitrine's own
    /// composition of `scene` where the head has no writeback (returned at once).
    #[allow(clippy::type_complexity)]
    pub fn capture(
        &mut self,
        core: &mut Core,
        output: &Output,
        scene: &Scene,
        done: crate::backend::Captured,
    ) -> Result<(), (crate::backend::Captured, Result<RgbaImage, String>)> {
        let Some(index) = self.head_of(output) else { return Err((done, Err("the output has no head".into()))) };
        let head = &mut self.heads[index];
        let writeback_here = self.writeback.as_ref().is_some_and(|wb| wb.crtc == Some(head.crtc));
        if writeback_here && head.modeset_done && !self.paused && core.displays_on {
            tracing::debug!(output = %output.name(), "screenshot: the next commit carries a writeback");
            head.captures.push(done);
            core.queue_redraw(output);
            return Ok(());
        }
        tracing::info!(output = %output.name(), "no writeback connector on this output: the screenshot is vitrine's composition");
        let size = head.rotation.logical_size(head.size());
        Err((done, self.compositor.capture(&self.painter, scene, size)))
    }

    /// The commit carrying captures went out: they wait for its out-fence, an event source.
    fn writeback_committed(&mut self, core: &mut Core, index: usize, fence: i32) {
        let captures = std::mem::take(&mut self.heads[index].captures);
        tracing::debug!(fence, captures = captures.len(), "writeback committed");
        let Some(wb) = self.writeback.as_mut() else { return };
        wb.in_flight = captures;
        wb.fenced = fence >= 0;
        if fence < 0 {
            // No fence: the frame is written by the time the flip completes.
            return;
        }
        // SAFETY: the kernel gave us this descriptor.
        let fence = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fence) };
        let inserted =
            core.loop_handle.insert_source(Generic::new(fence, Interest::READ, LoopMode::Level), |_, _, state| {
                if let Some((d, core)) = state.drm() {
                    d.writeback_done(core);
                }
                Ok(PostAction::Remove)
            });
        if let Err(err) = inserted {
            tracing::error!(%err, "cannot watch the writeback fence");
        }
    }

    /// The writeback fence signalled (or the flip of a commit without one came): the buffer
    /// holds the frame.
    fn writeback_done(&mut self, core: &mut Core) {
        let Some(wb) = self.writeback.as_mut() else { return };
        let captures = std::mem::take(&mut wb.in_flight);
        tracing::debug!(captures = captures.len(), "writeback done");
        if captures.is_empty() {
            return;
        }
        let image = match wb.buffer.as_ref() {
            Some(b) => {
                RgbaImage::from_raw(b.width, b.height, b.to_rgba()).ok_or_else(|| "bad writeback size".to_string())
            }
            None => Err("no writeback buffer".to_string()),
        };
        self.stats.writeback_captures += 1;
        let output = self.heads.iter().find(|h| Some(h.crtc) == wb.crtc).map(|h| h.output.clone());
        for done in captures {
            let result = match (&image, &output) {
                (Ok(image), Some(output)) => Ok((output.clone(), image.clone())),
                (Err(e), _) => Err(e.clone()),
                (_, None) => Err("the output went away".to_string()),
            };
            core.defer(move |state| done(state, result));
        }
        // Captures asked for meanwhile ride on the next commit.
        let waiting: Vec<Output> =
            self.heads.iter().filter(|h| !h.captures.is_empty()).map(|h| h.output.clone()).collect();
        for output in waiting {
            core.queue_redraw(&output);
        }
    }
    /// The (format, modifier) pairs of the planes that can show client buffers.
    fn scanout_formats(&self) -> Vec<Format> {
        let to_format = |f: &device::FormatModifier| {
            Fourcc::try_from(f.format).ok().map(|code| Format { code, modifier: Modifier::from(f.modifier) })
        };
        let mut out: Vec<Format> = Vec::new();
        for head in &self.heads {
            for p in std::iter::once(&head.primary).chain(&head.others).filter(|p| p.kind != "Cursor") {
                for f in p.formats.iter().filter_map(to_format) {
                    if !out.contains(&f) {
                        out.push(f);
                    }
                }
            }
        }
        out
    }

    /// linux-dmabuf feedback: what vitrine can composite or scan out, and a scanout tranche with
    /// the formats of the planes.
    pub fn dmabuf_feedback(&mut self) -> Result<DmabufFeedback, String> {
        use std::os::unix::fs::MetadataExt;
        let dev = std::fs::metadata(&self.card.path).map_err(|e| format!("{}: {e}", self.card.name()))?.rdev();
        let scanout = self.scanout_formats();
        let mut all = self.compositor.dmabuf_formats();
        for f in &scanout {
            if !all.contains(f) {
                all.push(*f);
            }
        }
        DmabufFeedbackBuilder::new(dev, all)
            .add_preference_tranche(dev, Some(TrancheFlags::Scanout), scanout)
            .build()
            .map_err(|e| format!("cannot build dmabuf feedback: {e}"))
    }

    pub fn knows_modifier(&self, code: u32, modifier: u64) -> bool {
        let in_planes =
            self.planes.iter().any(|p| p.formats.iter().any(|f| f.format == code && f.modifier == modifier));
        in_planes
            || self
                .compositor
                .dmabuf_formats()
                .iter()
                .any(|f| f.code as u32 == code && u64::from(f.modifier) == modifier)
    }

    /// A client dmabuf is usable if vitrine can composite it or make it a framebuffer.
    pub fn import_dmabuf(&mut self, dmabuf: &Dmabuf) -> Result<(), String> {
        if self.compositor.import_dmabuf(dmabuf).is_ok() {
            return Ok(());
        }
        match self.fb_cache.get_or_add(&self.card, dmabuf) {
            Ok((_, created)) => {
                if created {
                    self.stats.framebuffers_created += 1;
                }
                Ok(())
            }
            Err(err) => Err(format!("neither composited nor scanned out: {err}")),
        }
    }

    /// The seat session, for opening input devices through it.
    pub fn seat_session(&self) -> Option<smithay::backend::session::libseat::LibSeatSession> {
        match &self.session {
            session::Session::Seat(s) => Some(s.clone()),
            session::Session::Direct => None,
        }
    }

    /// The renderer compositing what no plane takes ("gles" or "pixman").
    pub fn renderer_name(&self) -> &'static str {
        self.compositor.name()
    }

    pub fn painter(&self) -> &Painter {
        &self.painter
    }

    /// Ctrl+Alt+Fn.
    pub fn switch_vt(&mut self, n: u16) {
        if self.session.is_seat() {
            self.session.change_vt(n as i32);
            return;
        }
        match &self.vt {
            Some(vt) if vt.number != n => vt.activate(n),
            Some(_) => {}
            None => tracing::info!(vt = n, "no VT switching: vitrine does not own a VT"),
        }
    }

    /// Give the display back (on exit).
    pub fn stop(&mut self) {
        let _ = self.card.release_master_lock();
    }

    /// Switched away from our VT: stop committing and let the next user have DRM master (a seat
    /// manager takes it back itself).
    fn pause(&mut self, core: &mut Core) {
        self.paused = true;
        for head in &mut self.heads {
            head.in_flight = None;
            core.frame_lost(&head.output);
        }
        if let Some(libinput) = self.libinput.as_mut() {
            libinput.suspend();
        }
        if !self.session.is_seat() {
            if let Err(err) = self.card.release_master_lock() {
                tracing::warn!(%err, "cannot drop DRM master");
            }
        }
        tracing::info!("vt released: display paused");
    }

    /// Back on our VT: DRM master again, and the whole display state rebuilt by a modeset.
    fn resume(&mut self, core: &mut Core) {
        if !self.session.is_seat() {
            if let Err(err) = self.card.acquire_master_lock() {
                tracing::error!(%err, "cannot become DRM master again");
            }
        }
        if let Some(libinput) = self.libinput.as_mut() {
            if libinput.resume().is_err() {
                tracing::warn!("cannot resume input devices");
            }
        }
        self.paused = false;
        for head in &mut self.heads {
            head.reset();
            core.frame_lost(&head.output);
        }
        tracing::info!("vt acquired: display restored");
        if std::mem::take(&mut self.rescan_on_resume) {
            self.update_heads(core);
        }
        core.queue_redraw_all();
    }

    /// Displays off: every CRTC goes inactive (DPMS off; modes and planes are kept), each once
    /// its commit in flight (if any) has flipped. On: each head sets its mode and planes again
    /// at its next frame.
    pub fn set_power(&mut self, core: &mut Core, on: bool) {
        if self.paused {
            // Away from our VT: the resume rebuilds everything anyway.
            return;
        }
        for i in 0..self.heads.len() {
            let head = &mut self.heads[i];
            if on {
                head.power_off = false;
                head.reset();
                core.frame_lost(&head.output);
                continue;
            }
            if head.in_flight.is_some() {
                head.power_off = true;
                continue;
            }
            self.power_off(i);
        }
        if on {
            core.queue_redraw_all();
        }
    }

    fn power_off(&mut self, index: usize) {
        let head = &mut self.heads[index];
        head.power_off = false;
        let Some(active) = head.crtc_props.handle("ACTIVE") else { return };
        let mut req = AtomicModeReq::new();
        req.add_property(head.crtc, active, Value::Boolean(false));
        match self.card.atomic_commit(AtomicCommitFlags::ALLOW_MODESET | AtomicCommitFlags::NONBLOCK, req) {
            Ok(()) => {
                self.stats.commits += 1;
                tracing::info!(output = %head.output.name(), "display off");
            }
            Err(err) => tracing::error!(output = %head.output.name(), %err, "cannot turn the display off"),
        }
    }
}

/// Connector hotplug: the kernel reports a change of the card through udev; vitrine reads its
/// connectors again.
fn watch_hotplug(core: &mut Core, drm: &Drm, path: &Path) {
    use smithay::backend::udev::{UdevBackend, UdevEvent};
    use std::os::unix::fs::MetadataExt;
    let Ok(ours) = std::fs::metadata(path).map(|m| m.rdev()) else { return };
    let seat =
        drm.seat_session().map(|s| smithay::backend::session::Session::seat(&s)).unwrap_or_else(|| "seat0".to_string());
    let udev = match UdevBackend::new(&seat) {
        Ok(u) => u,
        Err(err) => {
            tracing::warn!(%err, "no udev: displays plugged in or out are not noticed");
            return;
        }
    };
    let inserted = core.loop_handle.insert_source(udev, move |event, _, state| match event {
        UdevEvent::Changed { device_id } if device_id == ours => {
            tracing::info!("drm: connectors changed");
            let Some((d, core)) = state.drm() else { return };
            let (heads, errors) = d.update_heads(core);
            for err in &errors {
                tracing::error!(%err, "drm: after the connector change");
            }
            if heads == 0 && errors.is_empty() {
                tracing::warn!("no display is connected: waiting for one to be plugged in");
            }
        }
        UdevEvent::Removed { device_id } if device_id == ours => {
            tracing::error!("drm: the display device was removed");
        }
        _ => {}
    });
    if let Err(err) = inserted {
        tracing::warn!(%err, "cannot watch udev: displays plugged in or out are not noticed");
    }
}

/// Take the VT when running directly on one (root, no seat manager), with the release/acquire
/// signals routed into the event loop.
fn start_vt(core: &mut Core) -> Option<vt::Vt> {
    use calloop::signals::{Signal, Signals};
    let vt = match vt::Vt::take() {
        Ok(vt) => vt,
        Err(err) => {
            tracing::info!(%err, "no VT to manage: VT switching is off");
            return None;
        }
    };
    tracing::info!(vt = vt.number, "running on a VT: switching away releases the display");
    let signals = match Signals::new(&[Signal::SIGUSR1, Signal::SIGUSR2]) {
        Ok(s) => s,
        Err(err) => {
            tracing::warn!(%err, "cannot watch VT signals: VT switching is off");
            return None;
        }
    };
    let inserted = core.loop_handle.insert_source(signals, |event, _, state| {
        let Some((d, core)) = state.drm() else { return };
        match event.signal() {
            Signal::SIGUSR1 => {
                d.pause(core);
                if let Some(vt) = &d.vt {
                    vt.release();
                }
            }
            Signal::SIGUSR2 => {
                if let Some(vt) = &d.vt {
                    vt.acquire();
                }
                d.resume(core);
            }
            _ => {}
        }
    });
    if let Err(err) = inserted {
        tracing::warn!(%err, "cannot watch VT signals: VT switching is off");
        return None;
    }
    Some(vt)
}

/// The mode named in the config (`WxH` or `WxH@HZ`), or the preferred one.
fn pick_mode(connector: &ConnectorInfo, wanted: &str) -> Result<drm::control::Mode, String> {
    if wanted.is_empty() {
        return connector
            .modes
            .iter()
            .find(|m| m.mode_type().contains(drm::control::ModeTypeFlags::PREFERRED))
            .or(connector.modes.first())
            .copied()
            .ok_or_else(|| format!("{} has no modes", connector.name));
    }
    let spec: OutputSpec = wanted.parse().map_err(|e| format!("drm.mode: {e}"))?;
    let rate_given = wanted.contains('@');
    connector
        .modes
        .iter()
        .find(|m| {
            let (w, h) = m.size();
            w as u32 == spec.width
                && h as u32 == spec.height
                && (!rate_given || (m.vrefresh() as i64 * 1000 - spec.refresh_mhz as i64).abs() <= 1000)
        })
        .copied()
        .ok_or_else(|| {
            let modes: Vec<String> =
                connector.modes.iter().map(|m| format!("{}x{}@{}", m.size().0, m.size().1, m.vrefresh())).collect();
            format!("{} has no mode {wanted} (modes: {})", connector.name, modes.join(", "))
        })
}

/// Pause and resume with the seat manager (VT switches, another session taking the seat).
fn watch_seat(
    core: &mut Core,
    notifier: smithay::backend::session::libseat::LibSeatSessionNotifier,
) -> Result<(), DrmError> {
    use smithay::backend::session::Event as SessionEvent;
    core.loop_handle
        .insert_source(notifier, |event, _, state| {
            let Some((d, core)) = state.drm() else { return };
            match event {
                SessionEvent::PauseSession => d.pause(core),
                SessionEvent::ActivateSession => d.resume(core),
            }
        })
        .map(|_| ())
        .map_err(|e| DrmError::Loop(format!("cannot watch the seat: {e}")))
}
