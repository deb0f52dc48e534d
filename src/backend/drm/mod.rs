//! The DRM/KMS backend: vitrine drives the display controller itself with atomic commits,
//! putting layers on hardware planes where it can (see `planner`) and compositing the rest
//! (see `compose`). Every connected connector gets a head (see `head`); heads follow connector
//! hotplug. The frame scheduler (`crate::frames`) says when a head repaints; a head's page flip
//! says when its frame is on screen. Nothing here waits for the kernel: a head busy with a flip
//! defers what needs it idle (turning off, a capture) until that flip.

pub mod compose;
mod configure;
pub mod device;
mod error;
mod feedback;
mod frame;
pub mod head;
mod hotplug;
pub mod kms;
mod modeset;
mod plane;
pub mod planner;
pub mod probe;
pub mod scanout;
mod seat;
pub mod session;
pub mod vt;
mod writeback;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drm::control::{crtc, Device as ControlDevice};
use drm::Device as BasicDevice;
use smithay::backend::allocator::dmabuf::Dmabuf;
use smithay::backend::allocator::{Format, Fourcc, Modifier};
use smithay::output::Output;
use smithay::reexports::calloop::generic::Generic;
use smithay::reexports::calloop::{Interest, Mode as LoopMode, PostAction};
use smithay::reexports::wayland_protocols::wp::linux_dmabuf::zv1::server::zwp_linux_dmabuf_feedback_v1::TrancheFlags;
use smithay::wayland::dmabuf::{DmabufFeedback, DmabufFeedbackBuilder};

use crate::render::Painter;
use crate::state::{Core, State};
use compose::Compositor;
use device::{Card, PlaneInfo};
pub use error::{DrmError, Recovery};
use head::{Head, PlaneSlot, Slot};
pub use writeback::Writeback;

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
    /// Writebacks whose fence the kernel did not signal in time (the connector is then left
    /// alone: screenshots are vitrine's composition).
    pub writeback_timeouts: u64,
}

pub struct Drm {
    card: Card,
    /// Every plane of the device; heads own a share of them.
    planes: Vec<PlaneInfo>,
    /// The device's CRTCs, in resource order (a CRTC's index is its bit in possible_crtcs).
    crtcs: Vec<crtc::Handle>,
    heads: Vec<Head>,
    /// Connected displays a client turned off (output management): not lit until turned on.
    off: Vec<device::ConnectorInfo>,
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
    /// Fault injection: this many writeback fences are closed unwatched, as if the kernel never
    /// signalled them (`VITRINE_FAULT_LOSE_WRITEBACK_FENCES`).
    pub(super) lose_writeback_fences: u32,
    pub stats: KmsStats,
    /// Where the current repaint's time went (said when a repaint takes a refresh or more).
    phases: frame::Phases,
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

/// A count of faults to inject from the environment variable `name` (0 when unset), said once.
fn fault_injected(name: &str, what: &str) -> u32 {
    let n = std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    if n > 0 {
        tracing::warn!(n, "fault injection ({name}): {what}");
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
            waiting: None,
            lost: false,
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
            off: Vec::new(),
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
            refuse_plane_commits: fault_injected(
                "VITRINE_FAULT_REFUSE_PLANE_COMMITS",
                "the next commits putting a layer on a plane will be refused",
            ),
            lose_writeback_fences: fault_injected(
                "VITRINE_FAULT_LOSE_WRITEBACK_FENCES",
                "writeback fences will be lost",
            ),
            stats: KmsStats::default(),
            phases: frame::Phases::default(),
        };
        match notifier {
            Some(notifier) => seat::watch_seat(core, notifier)?,
            None => drm.vt = seat::start_vt(core),
        }
        core.loop_handle
            .insert_source(Generic::new(drm_fd, Interest::READ, LoopMode::Level), |_, _, state| {
                if let Some((d, core)) = state.drm() {
                    d.drm_events(core);
                }
                Ok(PostAction::Continue)
            })
            .map_err(|e| DrmError::Loop(format!("cannot watch the DRM device: {e}")))?;
        hotplug::watch_hotplug(core, &drm, path);
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

    /// Each head's output with its DRM card number and connector id (what a CEC adapter's
    /// connector info names).
    pub fn connectors(&self) -> Vec<(String, Option<(u32, u32)>)> {
        let name = self.card.name();
        let card_no = name.rsplit("card").next().and_then(|n| n.parse::<u32>().ok());
        self.heads.iter().map(|h| (h.output.name(), card_no.map(|c| (c, u32::from(h.connector.handle))))).collect()
    }

    /// What the display path holds right now: framebuffers imported, plans cached (for the
    /// soak, which checks that neither grows).
    pub fn held(&self) -> serde_json::Value {
        let plans: usize = self.heads.iter().map(|h| h.planner.cached()).sum();
        serde_json::json!({ "framebuffers": self.fb_cache.len(), "plans_cached": plans })
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
}
