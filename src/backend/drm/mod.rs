//! The DRM/KMS backend: vitrine drives the display controller itself with atomic commits,
//! putting layers on hardware planes where it can (see `planner`) and compositing the rest
//! (see `compose`). Every connected connector gets a head (see `head`); heads follow connector
//! hotplug.

pub mod compose;
pub mod device;
mod feedback;
mod frame;
pub mod head;
pub mod kms;
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
use smithay::reexports::calloop::timer::{TimeoutAction, Timer};
use smithay::reexports::calloop::{Interest, Mode as LoopMode, PostAction};
use smithay::reexports::wayland_protocols::wp::linux_dmabuf::zv1::server::zwp_linux_dmabuf_feedback_v1::TrancheFlags;
use smithay::wayland::dmabuf::{DmabufFeedback, DmabufFeedbackBuilder};

use crate::cli::OutputSpec;
use crate::render::{Painter, RgbaImage};
use crate::scene::Scene;
use crate::state::State;
use compose::Compositor;
use device::{Card, ConnectorInfo, PlaneInfo, Props};
use head::{Head, PlaneSlot, Slot};
use kms::MappedBuffer;

/// Counters of what the display path did, for `vitrine msg stats`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct KmsStats {
    pub commits: u64,
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
    /// Outputs added and removed at run time (connector hotplug).
    pub outputs_added: u64,
    pub outputs_removed: u64,
}

/// The writeback connector (vkms has one; most SoCs do not): screenshots of what the planes
/// show. It is attached to one head's CRTC at that head's modeset.
pub struct Writeback {
    connector: ConnectorInfo,
    buffer: Option<MappedBuffer>,
    crtc: Option<crtc::Handle>,
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
    pub stats: KmsStats,
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

pub(crate) fn log_error(last: &mut Option<Instant>, err: &str) {
    let quiet = last.map(|t| t.elapsed() < Duration::from_secs(5)).unwrap_or(false);
    if !quiet {
        tracing::error!(%err, "drm: frame not shown");
        *last = Some(Instant::now());
    }
}

impl Drm {
    /// Open the device, light every connected connector it should drive, and watch for page flips
    /// and hotplug.
    pub fn start(state: &mut State, path: &Path, renderer: compose::RendererChoice) -> Result<(), String> {
        let (mut session, notifier) = session::Session::open();
        let card = session.open_card(path).map_err(|e| e.to_string())?;
        if !session.is_seat() {
            card.acquire_master_lock().map_err(|e| format!("{}: cannot become DRM master: {e}", card.name()))?;
        }
        let compositor = Compositor::new(&card, renderer)?;
        let crtcs = card.resource_handles().map_err(|e| format!("{}: {e}", card.name()))?.crtcs().to_vec();
        let planes = device::planes(&card).map_err(|e| e.to_string())?;
        let connectors = device::connectors(&card).map_err(|e| e.to_string())?;
        let writeback = connectors.iter().find(|c| c.writeback).cloned().map(|connector| Writeback {
            connector,
            buffer: None,
            crtc: None,
        });
        let drm_fd = card.as_file().try_clone().map_err(|e| format!("{}: {e}", card.name()))?;
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
            std::fs::metadata(path).map(|m| m.rdev()).map_err(|e| format!("{}: {e}", path.display()))?
        };
        let feedback = feedback::SurfaceFeedback::new(dev, compositor.dmabuf_formats());
        let drm = Drm {
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
            hardware_planes: state.config.drm.hardware_planes,
            feedback,
            last_error: None,
            stats: KmsStats::default(),
        };
        state.backend = crate::backend::Backend::Drm(Box::new(drm));
        match notifier {
            Some(notifier) => watch_seat(state, notifier)?,
            None => start_vt(state),
        }
        state
            .loop_handle
            .insert_source(Generic::new(drm_fd, Interest::READ, LoopMode::Level), |_, _, state| {
                frame::drm_events(state);
                Ok(PostAction::Continue)
            })
            .map_err(|e| format!("cannot watch the DRM device: {e}"))?;

        let (lit, errors) = Drm::update_heads(state);
        if lit == 0 && !errors.is_empty() {
            return Err(errors.join("; "));
        }
        if lit == 0 {
            tracing::warn!("no display is connected: waiting for one to be plugged in");
        }
        watch_hotplug(state, path);
        Ok(())
    }

    fn head(&self, crtc: crtc::Handle) -> Option<&Head> {
        self.heads.iter().find(|h| h.crtc == crtc)
    }

    /// The heads, in the order they were lit.
    pub fn heads(&self) -> &[Head] {
        &self.heads
    }

    /// Read the connectors again: heads of connectors that went away are removed, connected
    /// connectors without a head get one. Returns how many heads there are, and what could not
    /// be lit.
    fn update_heads(state: &mut State) -> (usize, Vec<String>) {
        let crate::backend::Backend::Drm(d) = &mut state.backend else { return (0, Vec::new()) };
        if d.paused {
            d.rescan_on_resume = true;
            return (d.heads.len(), Vec::new());
        }
        let connectors = match device::connectors(&d.card) {
            Ok(c) => c,
            Err(err) => return (d.heads.len(), vec![err.to_string()]),
        };
        let gone: Vec<crtc::Handle> = d
            .heads
            .iter()
            .filter(|h| {
                !connectors.iter().any(|c| c.handle == h.connector.handle && c.connected && !c.modes.is_empty())
            })
            .map(|h| h.crtc)
            .collect();
        for crtc in gone {
            Drm::remove_head(state, crtc);
        }
        let wanted = state.config.drm.connector.clone();
        let mut errors = Vec::new();
        for connector in connectors.iter().filter(|c| !c.writeback) {
            let crate::backend::Backend::Drm(d) = &state.backend else { break };
            let named = wanted.is_empty() || connector.name == wanted;
            if !named || d.heads.iter().any(|h| h.connector.handle == connector.handle) {
                continue;
            }
            if !connector.connected || connector.modes.is_empty() {
                if !wanted.is_empty() {
                    tracing::warn!(connector = %connector.name, "drm.connector is not connected: waiting for it");
                }
                continue;
            }
            if let Err(err) = Drm::add_head(state, connector.clone()) {
                tracing::error!(connector = %connector.name, %err, "cannot light the connector");
                errors.push(err);
            }
        }
        let crate::backend::Backend::Drm(d) = &state.backend else { return (0, errors) };
        if !wanted.is_empty() && !connectors.iter().any(|c| c.name == wanted && !c.writeback) {
            let names: Vec<&str> = connectors.iter().filter(|c| !c.writeback).map(|c| c.name.as_str()).collect();
            errors.push(format!("drm.connector {wanted:?} does not exist (connectors: {})", names.join(", ")));
        }
        (d.heads.len(), errors)
    }

    /// Light `connector`: a free CRTC, the mode, a share of the planes, composition buffers, an
    /// output for clients and a repaint timer.
    fn add_head(state: &mut State, connector: ConnectorInfo) -> Result<(), String> {
        let mode_wanted = state.config.drm.mode.clone();
        let rotation = state.config.drm.rotation;
        let crate::backend::Backend::Drm(d) = &mut state.backend else { return Err("not the DRM backend".into()) };
        let name = d.card.name();
        let mode = pick_mode(&connector, &mode_wanted).map_err(|e| format!("{name}: {e}"))?;
        let crtc = connector
            .possible_crtcs
            .iter()
            .copied()
            .find(|c| !d.heads.iter().any(|h| h.crtc == *c))
            .ok_or_else(|| format!("{name}: no free CRTC for {}", connector.name))?;
        let crtc_index = d.crtcs.iter().position(|c| *c == crtc).unwrap_or(0);
        let crtc_props = Props::read(&d.card, crtc).map_err(|e| format!("{name}: {e}"))?;
        let mut crtc_indices: Vec<usize> = d.heads.iter().map(|h| h.crtc_index).collect();
        crtc_indices.push(crtc_index);
        let shares = d.share_planes(&crtc_indices);
        let (primary, others) = shares.last().cloned().ok_or_else(|| format!("{name}: no planes for CRTC {crtc:?}"))?;
        let primary = primary.ok_or_else(|| format!("{name}: no primary plane left for {}", connector.name))?;

        let (w, h) = mode.size();
        let size = (w as u32, h as u32);
        let mut slots = Vec::new();
        for _ in 0..2 {
            let buffer = d.compositor.new_buffer(&d.card, size)?;
            d.stats.framebuffers_created += 1;
            slots.push(Slot { buffer, damage: head::damage_tracker(size, rotation) });
        }
        let refresh_mhz = mode.vrefresh().max(1) * 1000;
        let refresh = Duration::from_secs_f64(1000.0 / refresh_mhz as f64);
        // New outputs go to the right of the others.
        let x = d
            .heads
            .iter()
            .map(|h| h.output.current_location().x + h.rotation.logical_size(h.size()).0 as i32)
            .max()
            .unwrap_or(0);
        let spec = OutputSpec { width: size.0, height: size.1, refresh_mhz };
        let output = crate::backend::add_output(&state.display_handle, &connector.name, "drm", spec, (x, 0).into());
        output.change_current_state(None, Some(rotation.transform()), None, None);
        let caps = std::iter::once(&primary).chain(&others).map(frame::plane_caps).collect();
        let crate::backend::Backend::Drm(d) = &mut state.backend else { return Err("not the DRM backend".into()) };
        tracing::info!(
            device = %d.card.name(),
            connector = %connector.name,
            crtc = u32::from(crtc),
            mode = %format!("{w}x{h}@{}", mode.vrefresh()),
            rotation = u32::from(rotation),
            primary = u32::from(primary.handle),
            planes = 1 + others.len(),
            "drm: lighting the connector"
        );
        d.heads.push(Head {
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
                p.set_layers_on_planes(d.hardware_planes);
                p
            },
            active_planes: Vec::new(),
            last_fbs: Vec::new(),
            last_plan: None,
            report: Vec::new(),
            refresh,
            timer: None,
        });
        d.stats.outputs_added += 1;
        d.reshare_planes();
        state.output_added(output);
        let timer = state
            .loop_handle
            .insert_source(Timer::immediate(), move |deadline, _, state| {
                frame::repaint(state, crtc);
                TimeoutAction::ToInstant((deadline + refresh).max(Instant::now()))
            })
            .map_err(|e| format!("cannot start the repaint timer: {e}"))?;
        if let crate::backend::Backend::Drm(d) = &mut state.backend {
            if let Some(head) = d.heads.iter_mut().find(|h| h.crtc == crtc) {
                head.timer = Some(timer);
            }
        }
        Ok(())
    }

    /// Turn the head on `crtc` off and remove its output (its connector went away).
    fn remove_head(state: &mut State, crtc: crtc::Handle) {
        Drm::wait_idle(state);
        let crate::backend::Backend::Drm(d) = &mut state.backend else { return };
        let Some(index) = d.heads.iter().position(|h| h.crtc == crtc) else { return };
        let head = d.heads.remove(index);
        if let Err(err) = d.disable_head(&head) {
            tracing::warn!(connector = %head.name(), %err, "cannot turn the CRTC off");
        }
        if let Some(timer) = head.timer {
            state.loop_handle.remove(timer);
        }
        let crate::backend::Backend::Drm(d) = &mut state.backend else { return };
        tracing::info!(connector = %head.connector.name, "drm: connector gone, output removed");
        d.stats.outputs_removed += 1;
        for slot in head.slots {
            slot.buffer.destroy(&d.card);
        }
        d.reshare_planes();
        state.output_removed(&head.output);
    }

    /// One commit that takes a head's connector, CRTC and planes off the display.
    fn disable_head(&mut self, head: &Head) -> Result<(), String> {
        let prop = |props: &Props, name: &str| props.handle(name).ok_or_else(|| format!("property {name} missing"));
        let mut req = AtomicModeReq::new();
        req.add_property(head.connector.handle, prop(&head.connector.props, "CRTC_ID")?, Value::CRTC(None));
        req.add_property(head.crtc, prop(&head.crtc_props, "ACTIVE")?, Value::Boolean(false));
        req.add_property(head.crtc, prop(&head.crtc_props, "MODE_ID")?, Value::Unknown(0));
        for plane in std::iter::once(&head.primary).chain(&head.others) {
            frame::disable_plane(plane, &mut req)?;
        }
        if let Some(wb) = self.writeback.as_mut().filter(|wb| wb.crtc == Some(head.crtc)) {
            req.add_property(wb.connector.handle, prop(&wb.connector.props, "CRTC_ID")?, Value::CRTC(None));
            wb.crtc = None;
        }
        self.card.atomic_commit(AtomicCommitFlags::ALLOW_MODESET, req).map_err(|e| e.to_string())?;
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
                kind: frame::plane_caps(p).kind,
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
                    if frame::disable_plane(info, &mut req).is_ok() {
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

    /// Wait (up to a second) for the commits in flight to complete, handling their page flips.
    fn wait_idle(state: &mut State) {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let crate::backend::Backend::Drm(d) = &state.backend else { return };
            if d.heads.iter().all(|h| h.in_flight.is_none()) || d.paused || Instant::now() > deadline {
                return;
            }
            if d.readable(100) {
                frame::drm_events(state);
            }
        }
    }

    /// What the planes of `head` show, read back through the writeback connector.
    fn capture_writeback(&mut self, index: usize) -> Result<RgbaImage, String> {
        let head = &self.heads[index];
        let size = head.size();
        let Some(wb) = self.writeback.as_mut() else { return Err("no writeback connector".into()) };
        if wb.crtc != Some(head.crtc) {
            return Err(format!("the writeback connector is not on {}", head.name()));
        }
        if wb.buffer.as_ref().is_some_and(|b| (b.width, b.height) != size) {
            if let Some(old) = wb.buffer.take() {
                old.destroy(&self.card);
            }
        }
        if wb.buffer.is_none() {
            wb.buffer = Some(MappedBuffer::new(&self.card, size, false).map_err(|e| format!("writeback buffer: {e}"))?);
            self.stats.framebuffers_created += 1;
        }
        let (Some(fb_prop), Some(fence_prop)) =
            (wb.connector.props.handle("WRITEBACK_FB_ID"), wb.connector.props.handle("WRITEBACK_OUT_FENCE_PTR"))
        else {
            return Err("the writeback connector lacks WRITEBACK_FB_ID/WRITEBACK_OUT_FENCE_PTR".into());
        };
        let fb = wb.buffer.as_ref().map(|b| b.fb).ok_or("no writeback buffer")?;
        let mut fence: i32 = -1;
        let mut req = AtomicModeReq::new();
        req.add_property(wb.connector.handle, fb_prop, Value::Framebuffer(Some(fb)));
        req.add_property(wb.connector.handle, fence_prop, Value::UnsignedRange(&mut fence as *mut i32 as u64));
        self.card
            .atomic_commit(AtomicCommitFlags::empty(), req)
            .map_err(|e| format!("writeback commit failed: {e}"))?;
        self.stats.commits += 1;
        if fence >= 0 {
            let mut fds = [libc::pollfd { fd: fence, events: libc::POLLIN, revents: 0 }];
            // SAFETY: the fence fd is ours until closed here.
            unsafe {
                libc::poll(fds.as_mut_ptr(), 1, 2000);
                libc::close(fence);
            }
        }
        let buffer = wb.buffer.as_ref().ok_or("no writeback buffer")?;
        RgbaImage::from_raw(buffer.width, buffer.height, buffer.to_rgba()).ok_or_else(|| "bad writeback size".into())
    }

    pub fn screenshot(state: &mut State, output: &Output, scene: &Scene) -> Result<RgbaImage, String> {
        Drm::wait_idle(state);
        let crate::backend::Backend::Drm(d) = &mut state.backend else { return Err("not the DRM backend".into()) };
        let index = d.heads.iter().position(|h| &h.output == output).ok_or("the output has no head")?;
        let head = &d.heads[index];
        if head.modeset_done && d.writeback.as_ref().is_some_and(|wb| wb.crtc == Some(head.crtc)) {
            return d.capture_writeback(index);
        }
        tracing::info!(output = %output.name(), "no writeback connector on this output: the screenshot is vitrine's composition");
        let size = head.rotation.logical_size(head.size());
        d.compositor.capture(&d.painter, scene, size)
    }

    /// Whether a DRM event can be read within `timeout_ms`.
    fn readable(&self, timeout_ms: i32) -> bool {
        let mut fds = [libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(self.card.as_file()),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: polling our own fd.
        unsafe { libc::poll(fds.as_mut_ptr(), 1, timeout_ms) > 0 }
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

    /// Switched away from our VT: stop committing and let the next user have DRM master (a seat
    /// manager takes it back itself).
    fn pause(&mut self) {
        self.paused = true;
        for head in &mut self.heads {
            head.in_flight = None;
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
    fn resume(state: &mut State) {
        let crate::backend::Backend::Drm(d) = &mut state.backend else { return };
        if !d.session.is_seat() {
            if let Err(err) = d.card.acquire_master_lock() {
                tracing::error!(%err, "cannot become DRM master again");
            }
        }
        if let Some(libinput) = d.libinput.as_mut() {
            if libinput.resume().is_err() {
                tracing::warn!("cannot resume input devices");
            }
        }
        d.paused = false;
        for head in &mut d.heads {
            head.reset();
        }
        tracing::info!("vt acquired: display restored");
        if std::mem::take(&mut d.rescan_on_resume) {
            Drm::update_heads(state);
        }
    }

    /// Displays off: every CRTC goes inactive (DPMS off; modes and planes are kept). On: each
    /// head sets its mode and planes again at its next frame.
    pub fn set_power(state: &mut State, on: bool) {
        if !on {
            Drm::wait_idle(state);
        }
        let crate::backend::Backend::Drm(d) = &mut state.backend else { return };
        if d.paused {
            // Away from our VT: the resume rebuilds everything anyway.
            return;
        }
        for i in 0..d.heads.len() {
            let head = &mut d.heads[i];
            if on {
                head.reset();
                continue;
            }
            head.in_flight = None;
            let Some(active) = head.crtc_props.handle("ACTIVE") else { continue };
            let mut req = AtomicModeReq::new();
            req.add_property(head.crtc, active, Value::Boolean(false));
            match d.card.atomic_commit(AtomicCommitFlags::ALLOW_MODESET, req) {
                Ok(()) => {
                    d.stats.commits += 1;
                    tracing::info!(output = %head.output.name(), "display off");
                }
                Err(err) => tracing::error!(output = %head.output.name(), %err, "cannot turn the display off"),
            }
        }
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
}

/// Connector hotplug: the kernel reports a change of the card through udev; vitrine reads its
/// connectors again.
fn watch_hotplug(state: &mut State, path: &Path) {
    use smithay::backend::udev::{UdevBackend, UdevEvent};
    use std::os::unix::fs::MetadataExt;
    let Ok(ours) = std::fs::metadata(path).map(|m| m.rdev()) else { return };
    let seat = match &state.backend {
        crate::backend::Backend::Drm(d) => d.seat_session().map(|s| smithay::backend::session::Session::seat(&s)),
        _ => None,
    }
    .unwrap_or_else(|| "seat0".to_string());
    let udev = match UdevBackend::new(&seat) {
        Ok(u) => u,
        Err(err) => {
            tracing::warn!(%err, "no udev: displays plugged in or out are not noticed");
            return;
        }
    };
    let inserted = state.loop_handle.insert_source(udev, move |event, _, state| match event {
        UdevEvent::Changed { device_id } if device_id == ours => {
            tracing::info!("drm: connectors changed");
            let (heads, errors) = Drm::update_heads(state);
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
fn start_vt(state: &mut State) {
    use calloop::signals::{Signal, Signals};
    let vt = match vt::Vt::take() {
        Ok(vt) => vt,
        Err(err) => {
            tracing::info!(%err, "no VT to manage: VT switching is off");
            return;
        }
    };
    tracing::info!(vt = vt.number, "running on a VT: switching away releases the display");
    let signals = match Signals::new(&[Signal::SIGUSR1, Signal::SIGUSR2]) {
        Ok(s) => s,
        Err(err) => {
            tracing::warn!(%err, "cannot watch VT signals: VT switching is off");
            return;
        }
    };
    let inserted = state.loop_handle.insert_source(signals, |event, _, state| {
        let crate::backend::Backend::Drm(d) = &mut state.backend else { return };
        match event.signal() {
            Signal::SIGUSR1 => {
                d.pause();
                if let Some(vt) = &d.vt {
                    vt.release();
                }
            }
            Signal::SIGUSR2 => {
                if let Some(vt) = &d.vt {
                    vt.acquire();
                }
                Drm::resume(state);
            }
            _ => {}
        }
    });
    if let Err(err) = inserted {
        tracing::warn!(%err, "cannot watch VT signals: VT switching is off");
        return;
    }
    if let crate::backend::Backend::Drm(d) = &mut state.backend {
        d.vt = Some(vt);
    }
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
    state: &mut State,
    notifier: smithay::backend::session::libseat::LibSeatSessionNotifier,
) -> Result<(), String> {
    use smithay::backend::session::Event as SessionEvent;
    state
        .loop_handle
        .insert_source(notifier, |event, _, state| {
            let crate::backend::Backend::Drm(d) = &mut state.backend else { return };
            match event {
                SessionEvent::PauseSession => d.pause(),
                SessionEvent::ActivateSession => Drm::resume(state),
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot watch the seat: {e}"))
}
