//! The DRM/KMS backend: vitrine drives the display controller itself with atomic commits,
//! putting layers on hardware planes where it can (see `planner`).

pub mod device;
mod frame;
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
use smithay::backend::renderer::damage::OutputDamageTracker;
use smithay::backend::renderer::pixman::PixmanRenderer;
use smithay::backend::renderer::ImportDma;
use smithay::output::Output;
use smithay::reexports::calloop::generic::Generic;
use smithay::reexports::calloop::timer::{TimeoutAction, Timer};
use smithay::reexports::calloop::{Interest, Mode as LoopMode, PostAction};
use smithay::reexports::wayland_protocols::wp::linux_dmabuf::zv1::server::zwp_linux_dmabuf_feedback_v1::TrancheFlags;
use smithay::utils::Transform;
use smithay::wayland::dmabuf::{DmabufFeedback, DmabufFeedbackBuilder};

use crate::cli::OutputSpec;
use crate::render::{capture, Painter, RgbaImage};
use crate::scene::Scene;
use crate::state::State;
use device::{Card, ConnectorInfo, PlaneInfo, Props};
use kms::MappedBuffer;

/// Counters of what the display path did, for `vitrine msg stats`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct KmsStats {
    pub commits: u64,
    pub test_commits: u64,
    pub framebuffers_created: u64,
    pub frames_presented: u64,
    pub frames_composited: u64,
    /// Bytes the CPU wrote into scanout buffers by composition.
    pub cpu_copied_bytes: u64,
    /// Framebuffers made for decoded video pictures (once per decoder buffer).
    pub video_framebuffers_created: u64,
    /// Repaints where the video picture was not on a plane.
    pub video_frames_composited: u64,
}

struct Writeback {
    connector: ConnectorInfo,
    buffer: Option<MappedBuffer>,
}

/// One composition buffer with the damage tracker that knows what it holds.
struct Slot {
    buffer: MappedBuffer,
    damage: OutputDamageTracker,
}

pub struct Drm {
    card: Card,
    crtc: crtc::Handle,
    crtc_props: Props,
    connector: ConnectorInfo,
    mode: drm::control::Mode,
    primary: PlaneInfo,
    /// Other planes this CRTC can use; disabled at modeset.
    others: Vec<PlaneInfo>,
    slots: Vec<Slot>,
    back: usize,
    renderer: PixmanRenderer,
    painter: Painter,
    output: Option<Output>,
    modeset_done: bool,
    /// Switched away from our VT: no DRM master, no commits.
    paused: bool,
    vt: Option<vt::Vt>,
    session: session::Session,
    /// The input context, suspended while the seat is away.
    pub libinput: Option<smithay::reexports::input::Libinput>,
    /// The commit waiting for its page flip.
    in_flight: Option<frame::InFlight>,
    /// Client buffers on screen (released only once replaced on screen).
    on_screen: Vec<smithay::backend::renderer::utils::Buffer>,
    /// The decoded picture on screen: its buffer stays out of the decoder until the next flip.
    on_screen_video: Option<crate::video::VideoFrame>,
    planner: planner::Planner,
    fb_cache: scanout::FbCache,
    /// Planes enabled by the last commit.
    active_planes: Vec<u32>,
    /// Framebuffers of the last commit's plane layers, to skip commits that change nothing.
    last_fbs: Vec<Option<drm::control::framebuffer::Handle>>,
    last_plan: Option<planner::Plan>,
    /// What `vitrine msg planes` reports.
    pub report: Vec<frame::LayerReport>,
    writeback: Option<Writeback>,
    refresh: Duration,
    last_error: Option<Instant>,
    pub stats: KmsStats,
}

/// Find a card vitrine can drive: it opens, does atomic KMS, becomes DRM master and has a
/// connected connector. Used by `--backend auto`.
pub fn usable_card() -> Result<PathBuf, String> {
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
    let connected = device::connectors(&card).map_err(|e| e.to_string())?.iter().any(|c| c.connected && !c.writeback);
    let _ = card.release_master_lock();
    if connected {
        Ok(())
    } else {
        Err(format!("{}: no connected connector", path.display()))
    }
}

impl Drm {
    /// Open the device, pick a connector, CRTC and mode, create the output and start painting.
    pub fn start(state: &mut State, path: &Path) -> Result<(), String> {
        let (mut session, notifier) = session::Session::open();
        let card = session.open_card(path).map_err(|e| e.to_string())?;
        if !session.is_seat() {
            card.acquire_master_lock().map_err(|e| format!("{}: cannot become DRM master: {e}", card.name()))?;
        }
        let connectors = device::connectors(&card).map_err(|e| e.to_string())?;
        let connector =
            pick_connector(&connectors, &state.config.drm.connector).map_err(|e| format!("{}: {e}", card.name()))?;
        let mode = pick_mode(&connector, &state.config.drm.mode).map_err(|e| format!("{}: {e}", card.name()))?;
        let res = card.resource_handles().map_err(|e| e.to_string())?;
        let crtc = *connector
            .possible_crtcs
            .first()
            .ok_or_else(|| format!("{}: no CRTC for {}", card.name(), connector.name))?;
        let crtc_index = res.crtcs().iter().position(|c| *c == crtc).unwrap_or(0);
        let crtc_props = Props::read(&card, crtc).map_err(|e| e.to_string())?;
        let planes: Vec<PlaneInfo> = device::planes(&card)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|p| p.possible_crtcs & (1 << crtc_index) != 0)
            .collect();
        let primary = planes
            .iter()
            .find(|p| p.kind == "Primary")
            .cloned()
            .ok_or_else(|| format!("{}: no primary plane for CRTC {crtc:?}", card.name()))?;
        let caps: Vec<planner::PlaneCaps> = planes.iter().map(frame::plane_caps).collect();
        let others = planes.into_iter().filter(|p| p.handle != primary.handle).collect();
        let writeback = connectors
            .iter()
            .find(|c| c.writeback && c.possible_crtcs.contains(&crtc))
            .cloned()
            .map(|connector| Writeback { connector, buffer: None });

        let (w, h) = mode.size();
        let size = (w as u32, h as u32);
        let mut stats = KmsStats::default();
        let mut slots = Vec::new();
        for _ in 0..2 {
            let buffer = MappedBuffer::new(&card, size, true)
                .map_err(|e| format!("{}: composition buffer: {e}", card.name()))?;
            stats.framebuffers_created += 1;
            slots.push(Slot { buffer, damage: OutputDamageTracker::new((w as i32, h as i32), 1.0, Transform::Normal) });
        }
        let refresh_mhz = mode.vrefresh().max(1) * 1000;
        let refresh = Duration::from_secs_f64(1000.0 / refresh_mhz as f64);
        tracing::info!(
            device = %card.name(),
            connector = %connector.name,
            mode = %format!("{w}x{h}@{}", mode.vrefresh()),
            writeback = writeback.is_some(),
            "drm: driving the display"
        );
        let drm_fd = card.as_file().try_clone().map_err(|e| format!("{}: {e}", card.name()))?;
        let output_name = connector.name.clone();
        let drm = Drm {
            card,
            crtc,
            crtc_props,
            connector,
            mode,
            primary,
            others,
            slots,
            back: 0,
            renderer: PixmanRenderer::new().map_err(|e| e.to_string())?,
            painter: Painter::default(),
            output: None,
            modeset_done: false,
            paused: false,
            vt: None,
            session,
            libinput: None,
            in_flight: None,
            on_screen: Vec::new(),
            on_screen_video: None,
            planner: planner::Planner::new(caps, crtc_index),
            fb_cache: scanout::FbCache::default(),
            active_planes: Vec::new(),
            last_fbs: Vec::new(),
            last_plan: None,
            report: Vec::new(),
            writeback,
            refresh,
            last_error: None,
            stats,
        };
        state.backend = crate::backend::Backend::Drm(Box::new(drm));
        match notifier {
            Some(notifier) => watch_seat(state, notifier)?,
            None => start_vt(state),
        }
        let spec = OutputSpec { width: size.0, height: size.1, refresh_mhz };
        let output = crate::backend::add_output(&state.display_handle, &output_name, "drm", spec, (0, 0).into());
        if let crate::backend::Backend::Drm(d) = &mut state.backend {
            d.output = Some(output.clone());
        }
        state.output_added(output);

        state
            .loop_handle
            .insert_source(Generic::new(drm_fd, Interest::READ, LoopMode::Level), |_, _, state| {
                frame::drm_events(state);
                Ok(PostAction::Continue)
            })
            .map_err(|e| format!("cannot watch the DRM device: {e}"))?;
        state
            .loop_handle
            .insert_source(Timer::immediate(), move |deadline, _, state| {
                frame::repaint(state);
                TimeoutAction::ToInstant((deadline + refresh).max(Instant::now()))
            })
            .map_err(|e| format!("cannot start the repaint timer: {e}"))?;
        Ok(())
    }

    fn prop(&self, props: &Props, name: &str) -> Result<drm::control::property::Handle, String> {
        props.handle(name).ok_or_else(|| format!("{}: property {name} missing", self.card.name()))
    }

    /// The first commit: sets the mode, shows `fb` full screen on the primary plane and turns every
    /// other plane of the CRTC off.
    fn modeset(&mut self, fb: drm::control::framebuffer::Handle) -> Result<(), String> {
        let mut req = AtomicModeReq::new();
        let blob = self.card.create_property_blob(&self.mode).map_err(|e| format!("mode blob: {e}"))?;
        req.add_property(
            self.connector.handle,
            self.prop(&self.connector.props, "CRTC_ID")?,
            Value::CRTC(Some(self.crtc)),
        );
        req.add_property(self.crtc, self.prop(&self.crtc_props, "MODE_ID")?, blob);
        req.add_property(self.crtc, self.prop(&self.crtc_props, "ACTIVE")?, Value::Boolean(true));
        if let Some(wb) = &self.writeback {
            req.add_property(
                wb.connector.handle,
                self.prop(&wb.connector.props, "CRTC_ID")?,
                Value::CRTC(Some(self.crtc)),
            );
        }
        for plane in &self.others {
            req.add_property(plane.handle, self.prop(&plane.props, "FB_ID")?, Value::Framebuffer(None));
            req.add_property(plane.handle, self.prop(&plane.props, "CRTC_ID")?, Value::CRTC(None));
        }
        let (w, h) = (self.mode.size().0 as u32, self.mode.size().1 as u32);
        frame::set_plane(self, &mut req, self.primary.handle.into(), fb, (w, h), (0, 0, w, h), None, false)?;
        let flags = AtomicCommitFlags::PAGE_FLIP_EVENT | AtomicCommitFlags::NONBLOCK | AtomicCommitFlags::ALLOW_MODESET;
        self.card.atomic_commit(flags, req).map_err(|e| format!("{}: modeset failed: {e}", self.card.name()))?;
        self.stats.commits += 1;
        self.modeset_done = true;
        Ok(())
    }

    /// Wait (up to a second) for the commit in flight to complete, handling its page flip.
    fn wait_idle(state: &mut State) {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let crate::backend::Backend::Drm(d) = &state.backend else { return };
            if d.in_flight.is_none() || Instant::now() > deadline {
                return;
            }
            if d.readable(100) {
                frame::drm_events(state);
            }
        }
    }

    /// What the planes show, read back through the writeback connector.
    fn capture_writeback(&mut self) -> Result<RgbaImage, String> {
        let size = (self.mode.size().0 as u32, self.mode.size().1 as u32);
        let Some(wb) = self.writeback.as_mut() else { return Err("no writeback connector".into()) };
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
        if d.writeback.is_some() && d.modeset_done {
            return d.capture_writeback();
        }
        tracing::info!(output = %output.name(), "no writeback connector: the screenshot is vitrine's composition");
        let size = (d.mode.size().0 as i32, d.mode.size().1 as i32).into();
        let elements = d.painter.elements(&mut d.renderer, scene, 1.0);
        capture::<_, smithay::reexports::pixman::Image<'static, 'static>>(
            &mut d.renderer,
            size,
            &elements,
            scene.background,
        )
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

    fn plane(&self, id: u32) -> Option<&PlaneInfo> {
        std::iter::once(&self.primary).chain(&self.others).find(|p| u32::from(p.handle) == id)
    }

    fn log_error(&mut self, err: &str) {
        let quiet = self.last_error.map(|t| t.elapsed() < Duration::from_secs(5)).unwrap_or(false);
        if !quiet {
            tracing::error!(%err, "drm: frame not shown");
            self.last_error = Some(Instant::now());
        }
    }

    /// linux-dmabuf feedback: what vitrine can composite (pixman) or scan out, and a scanout
    /// tranche with the formats of this CRTC's planes.
    pub fn dmabuf_feedback(&mut self) -> Result<DmabufFeedback, String> {
        use std::os::unix::fs::MetadataExt;
        let dev = std::fs::metadata(&self.card.path).map_err(|e| format!("{}: {e}", self.card.name()))?.rdev();
        let to_format = |f: &device::FormatModifier| {
            Fourcc::try_from(f.format).ok().map(|code| Format { code, modifier: Modifier::from(f.modifier) })
        };
        let scanout: Vec<Format> = std::iter::once(&self.primary)
            .chain(&self.others)
            .filter(|p| p.kind != "Cursor")
            .flat_map(|p| p.formats.iter().filter_map(to_format))
            .collect::<std::collections::HashSet<_>>()
            .into_iter()
            .collect();
        let mut all: Vec<Format> = self.renderer.dmabuf_formats().iter().copied().collect();
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
        let in_planes = std::iter::once(&self.primary)
            .chain(&self.others)
            .any(|p| p.formats.iter().any(|f| f.format == code && f.modifier == modifier));
        in_planes
            || self.renderer.dmabuf_formats().iter().any(|f| f.code as u32 == code && u64::from(f.modifier) == modifier)
    }

    /// A client dmabuf is usable if vitrine can composite it or make it a framebuffer.
    pub fn import_dmabuf(&mut self, dmabuf: &Dmabuf) -> Result<(), String> {
        if self.renderer.import_dmabuf(dmabuf, None).is_ok() {
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

    /// Switched away from our VT: stop committing and let the next user have DRM master (a seat
    /// manager takes it back itself).
    fn pause(&mut self) {
        self.paused = true;
        self.in_flight = None;
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
    fn resume(&mut self) {
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
        self.modeset_done = false;
        self.active_planes.clear();
        self.last_plan = None;
        self.last_fbs.clear();
        self.planner.invalidate();
        let (w, h) = self.mode.size();
        for slot in &mut self.slots {
            slot.damage = OutputDamageTracker::new((w as i32, h as i32), 1.0, Transform::Normal);
        }
        tracing::info!("vt acquired: display restored");
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
                d.resume();
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

/// The connector named in the config, or the first connected one.
fn pick_connector(connectors: &[ConnectorInfo], wanted: &str) -> Result<ConnectorInfo, String> {
    let usable = |c: &&ConnectorInfo| c.connected && !c.writeback && !c.modes.is_empty();
    let found = if wanted.is_empty() {
        connectors.iter().find(usable)
    } else {
        connectors.iter().find(|c| c.name == wanted).filter(usable)
    };
    found.cloned().ok_or_else(|| {
        let names: Vec<String> = connectors
            .iter()
            .filter(|c| !c.writeback)
            .map(|c| format!("{} ({})", c.name, if c.connected { "connected" } else { "disconnected" }))
            .collect();
        if wanted.is_empty() {
            format!("no connected connector with modes (connectors: {})", names.join(", "))
        } else {
            format!("drm.connector {wanted:?} is not a connected connector (connectors: {})", names.join(", "))
        }
    })
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
                SessionEvent::ActivateSession => d.resume(),
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot watch the seat: {e}"))
}
