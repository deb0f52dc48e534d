//! The compositor's single state: Wayland globals, window layout, backend, kiosk and control.
//!
//! One `State`, owned by the calloop event loop; no locks. Backends and the control socket are
//! event sources that get `&mut State`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use smithay::desktop::{PopupManager, Space, Window};
use smithay::input::{Seat, SeatState};
use smithay::output::Output;
use smithay::reexports::calloop::{LoopHandle, LoopSignal};
use smithay::reexports::wayland_server::backend::{ClientData, ClientId, DisconnectReason};
use smithay::reexports::wayland_server::DisplayHandle;
use smithay::utils::{Clock, Monotonic};
use smithay::wayland::compositor::{CompositorClientState, CompositorState};
use smithay::wayland::content_type::ContentTypeState;
use smithay::wayland::dmabuf::{DmabufGlobal, DmabufState};
use smithay::wayland::output::OutputManagerState;
use smithay::wayland::presentation::PresentationState;
use smithay::wayland::selection::data_device::DataDeviceState;
use smithay::wayland::selection::primary_selection::PrimarySelectionState;
use smithay::wayland::shell::wlr_layer::WlrLayerShellState;
use smithay::wayland::shell::xdg::decoration::XdgDecorationState;
use smithay::wayland::shell::xdg::XdgShellState;
use smithay::wayland::shm::ShmState;
use smithay::wayland::single_pixel_buffer::SinglePixelBufferState;
use smithay::wayland::viewporter::ViewporterState;
use smithay::wayland::virtual_keyboard::VirtualKeyboardManagerState;
use smithay::wayland::xdg_activation::XdgActivationState;

use crate::backend::Backend;
use crate::config::Config;
use crate::kiosk::Kiosk;

/// Per-client data smithay needs, and who the client is (for logs).
#[derive(Default)]
pub struct ClientState {
    pub compositor_state: CompositorClientState,
    /// The client's process id (0 when unknown) and command name.
    pub pid: i32,
    pub command: String,
    /// What it holds, against `wayland::limits`.
    pub usage: crate::wayland::limits::Usage,
    /// Whether it sees the privileged globals (`wayland::privileged`).
    pub privileged: bool,
    /// The outputs it has captured (wlr-screencopy): its first copy of one is not held back
    /// until something changes.
    pub captured: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// A client disconnected since the loop last looked (see `run::trim_after_clients_left`).
pub static CLIENT_LEFT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl ClientData for ClientState {
    fn initialized(&self, client_id: ClientId) {
        tracing::debug!(client = self.pid, id = ?client_id, "client initialized");
    }

    fn disconnected(&self, client_id: ClientId, reason: DisconnectReason) {
        CLIENT_LEFT.store(true, std::sync::atomic::Ordering::Relaxed);
        let (client, command) = (self.pid, self.command.as_str());
        match reason {
            DisconnectReason::ProtocolError(err) => {
                tracing::warn!(client, command, id = ?client_id, error = %err, "client disconnected for a protocol error")
            }
            DisconnectReason::ConnectionClosed => tracing::info!(client, command, "client disconnected"),
        }
    }
}

/// The process on the other end of a client socket: its pid and command name.
pub fn peer(stream: &std::os::unix::net::UnixStream) -> (i32, String) {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED fills a ucred of the given length.
    let ok = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(stream),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut libc::ucred as *mut libc::c_void,
            &mut len,
        ) == 0
    };
    let pid = if ok { cred.pid } else { 0 };
    let command =
        std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim().to_string()).unwrap_or_default();
    (pid, command)
}

/// Everything the compositor is: its backend (how scenes become pixels) and the rest, which the
/// backend is given as `&mut Core` when it needs it. smithay's handlers are implemented on
/// `State` (they need both halves: a client dmabuf is checked against what the backend takes).
pub struct State {
    pub backend: Backend,
    pub core: Core,
}

/// The compositor without its backend: Wayland globals, window layout, kiosk, video, control.
pub struct Core {
    pub display_handle: DisplayHandle,
    pub loop_handle: LoopHandle<'static, State>,
    pub loop_signal: LoopSignal,
    pub config: Config,
    /// The file the configuration came from (`--config`), for reloads.
    pub config_path: Option<std::path::PathBuf>,
    pub socket_name: String,
    pub started: Instant,
    pub clock: Clock<Monotonic>,

    pub compositor_state: CompositorState,
    pub xdg_shell_state: XdgShellState,
    pub xdg_decoration_state: XdgDecorationState,
    pub layer_shell_state: WlrLayerShellState,
    pub shm_state: ShmState,
    pub dmabuf_state: DmabufState,
    pub dmabuf_global: Option<DmabufGlobal>,
    pub seat_state: SeatState<State>,
    pub data_device_state: DataDeviceState,
    pub primary_selection_state: PrimarySelectionState,
    pub output_manager_state: OutputManagerState,
    pub presentation_state: PresentationState,
    pub viewporter_state: ViewporterState,
    pub single_pixel_buffer_state: SinglePixelBufferState,
    pub content_type_state: ContentTypeState,
    pub activation_state: XdgActivationState,
    pub virtual_keyboard_state: VirtualKeyboardManagerState,
    pub text_input_state: smithay::wayland::text_input::TextInputManagerState,
    pub input_method_state: smithay::wayland::input_method::InputMethodManagerState,

    pub seat: Seat<State>,
    pub popups: PopupManager,
    /// Window layout: every toplevel sits fullscreen on one output.
    pub space: Space<Window>,
    /// Outputs in creation order; the first is where unplaced toplevels go.
    pub outputs: Vec<Output>,
    pub kiosk: Kiosk,
    /// The xdg_surface whose get_toplevel request is being handled (see wayland/xdg.rs).
    pub xdg_surface_in_request:
        Option<smithay::reexports::wayland_protocols::xdg::shell::server::xdg_surface::XdgSurface>,
    /// Set when the compositor should stop; the process exits with this status.
    pub exit_code: Option<i32>,
    /// The video player (`--play`), if there is a playlist.
    pub player: Option<crate::video::player::Player>,
    /// Exit once the playlist has been played (`--exit-when-done`).
    pub exit_when_done: bool,
    /// Where to write the audit as JSON at exit (`--stats`).
    pub stats_path: Option<std::path::PathBuf>,
    /// `--audit`: the video audit printed in words at the end.
    pub print_audit: bool,
    /// The background image, read from `[background] image`.
    pub background_image: Option<std::sync::Arc<crate::image::RgbaImage>>,
    /// Displays on (the schedule's opening hours), or off: nothing is presented and touch and
    /// pointer input is ignored.
    pub displays_on: bool,
    /// The video was paused because the displays went off (resumed when they come on).
    pub paused_by_schedule: bool,
    /// Every output's frame cycle: what is due, what waits for a flip (see `frames`).
    pub frames: crate::frames::Frames,
    /// The control socket's connections.
    pub control: crate::control::Connections,
    /// The Prometheus endpoint's connections (`[metrics] listen`).
    pub metrics: crate::metrics::Scrapers,
    /// The HDMI-CEC adapters switching TVs with the displays.
    pub cec: crate::cec::Cec,
    /// sd_notify, when systemd started vitrine with a notify socket.
    pub systemd: Option<crate::systemd::Systemd>,
    /// When the first frame was on screen.
    pub first_frame: Option<Instant>,
    /// `--screenshot-on-start`, until taken.
    pub screenshot_on_start: Option<std::path::PathBuf>,
    /// Hides the pointer once it has not moved for `hide_pointer_after_ms`.
    pub pointer_timer: Option<smithay::reexports::calloop::RegistrationToken>,
    /// The time of day the schedule follows, and its timer for the next switch.
    pub day_clock: crate::kiosk::schedule::DayClock,
    pub schedule_timer: Option<smithay::reexports::calloop::RegistrationToken>,
    /// Wakes the loop when the video threads deliver what the player waits for.
    pub video_waker: Option<crate::video::LoopWaker>,
    /// Work done off the loop sends its result back here, to be finished on the loop.
    pub tasks: smithay::reexports::calloop::channel::Sender<LoopTask>,
    /// Times a listening socket paused accepting (out of descriptors or memory: see `listen`).
    pub accept_pauses: u64,
    /// Clients connected now (`wayland::limits::CLIENTS`).
    pub clients_connected: Arc<std::sync::atomic::AtomicUsize>,
    /// Work for the end of this turn of the loop (`defer`).
    pub deferred: Vec<Deferred>,
    /// A trim of the allocator is armed (after clients left).
    pub trim_armed: bool,
    /// Screen copies waiting for their output to change (`wayland::screencopy`).
    pub screencopy_waiting: Vec<crate::wayland::screencopy::WaitingCopy>,
    /// Input methods' candidate popups shown now (`wayland::ime`).
    pub ime_popups: Vec<smithay::wayland::input_method::PopupSurface>,
    /// Output managers bound (`wayland::output_management`) and what they were told.
    pub output_management: crate::wayland::output_management::OutputManagement,
}

/// Work left for the end of a turn of the loop.
pub type Deferred = Box<dyn FnOnce(&mut State)>;

/// Something a thread hands back to the loop to finish (a PNG written: reply to the request).
pub type LoopTask = Box<dyn FnOnce(&mut State) + Send>;

/// Run `log` unless it ran in the last minute: a fault that repeats is said once, not per frame.
pub fn log_rarely(last: &mut Option<Instant>, log: impl FnOnce()) {
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
        *last = Some(Instant::now());
        log();
    }
}

impl Core {
    /// Choose the video picture for a repaint of `output` that will be seen at `vblank`, on an
    /// output refreshing every `period` (only the video's output paces the video).
    pub fn video_tick(&mut self, output: &Output, vblank: Instant, period: Duration) {
        if self.outputs.first() != Some(output) {
            return;
        }
        if let Some(player) = &mut self.player {
            player.frame_for(vblank, period);
        }
    }

    /// The display showed the scene with `frame` at `at`; exits when the playlist is done and
    /// `--exit-when-done` was given.
    pub fn video_presented(&mut self, frame: Option<&crate::video::VideoFrame>, at: Instant, composited: bool) {
        let Some(player) = &mut self.player else { return };
        if let Some(frame) = frame {
            if player.has_unpresented() && composited {
                player.stats.frames_composited += 1;
            }
            player.presented(frame, at);
        }
        self.check_video_done();
    }

    /// Run `f` with the whole state once the current dispatch is done (before the loop sleeps
    /// again: see `State::run_deferred`).
    pub fn defer(&mut self, f: impl FnOnce(&mut State) + 'static) {
        self.deferred.push(Box::new(f));
    }

    /// Whether work waits for the end of this turn of the loop: the loop must not sleep then.
    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty() || self.frames.repaints_pending()
    }

    /// Stop the event loop; vitrine exits with `code`.
    pub fn quit(&mut self, code: i32) {
        if self.exit_code.is_none() {
            self.exit_code = Some(code);
        }
        self.loop_signal.stop();
        self.loop_signal.wakeup();
    }

    pub fn output_by_name(&self, name: &str) -> Option<&Output> {
        self.outputs.iter().find(|o| o.name() == name)
    }

    /// Milliseconds since start, for frame callbacks.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl State {
    /// End of a turn of the loop: what was deferred, then the repaints asked for (one per
    /// output, however many times it was asked).
    pub fn run_deferred(&mut self) {
        for task in std::mem::take(&mut self.core.deferred) {
            task(self);
        }
        if self.core.frames.take_repaints_pending() {
            self.run_queued_repaints();
        }
    }

    /// The zero-copy audit: the player's counters with the display's.
    pub fn video_report(&self) -> Option<serde_json::Value> {
        let player = self.core.player.as_ref()?;
        let mut audit = player.report();
        // Pictures the compositor converted on the CPU because no plane showed them.
        let (mappings, copied) = self.backend.copies();
        audit.counters.frame_mappings += mappings;
        audit.counters.cpu_copied_bytes += copied;
        let mut report = serde_json::to_value(audit).ok()?;
        if let (Some(obj), Some(serde_json::Value::Object(audio))) =
            (report.as_object_mut(), player.audio().map(|a| a.stats()))
        {
            obj.extend(audio);
        }
        let display = self.backend.display_stats();
        if let (Some(obj), Some(display)) = (report.as_object_mut(), display) {
            for (k, v) in display {
                obj.insert(k.to_string(), serde_json::Value::from(v));
            }
        }
        Some(report)
    }

    /// The data of a new client of the display whose clients `connected` counts.
    pub fn new_client_data(
        pid: i32,
        command: String,
        privileged: bool,
        connected: &Arc<std::sync::atomic::AtomicUsize>,
    ) -> Arc<ClientState> {
        Arc::new(ClientState {
            pid,
            command,
            privileged,
            usage: crate::wayland::limits::Usage::of_client(connected),
            ..Default::default()
        })
    }
}

/// The background image of `[background] image` ("" for none); a file that cannot be read is
/// reported and the colour shows instead.
pub fn load_background(path: &str) -> Option<std::sync::Arc<crate::image::RgbaImage>> {
    if path.is_empty() {
        return None;
    }
    match crate::image::RgbaImage::load_png(std::path::Path::new(path)) {
        Ok(image) => {
            tracing::info!(file = path, size = ?(image.width, image.height), "background image loaded");
            Some(std::sync::Arc::new(image))
        }
        Err(err) => {
            tracing::error!(file = path, %err, "background image not shown");
            None
        }
    }
}

impl State {
    /// Switch the displays on or off (the schedule). Off: the backend stops presenting (DRM
    /// turns its CRTCs off), the video pauses, touch and pointer input is ignored.
    pub fn set_displays(&mut self, on: bool) {
        if self.core.displays_on == on {
            return;
        }
        self.core.displays_on = on;
        tracing::info!(on, "displays switched");
        self.core.cec.power(on);
        if let crate::backend::Backend::Drm(d) = &mut self.backend {
            d.set_power(&mut self.core, on);
        }
        if let Some(player) = &mut self.core.player {
            if !on && !player.status().paused {
                player.pause();
                self.core.paused_by_schedule = true;
            } else if on && std::mem::take(&mut self.core.paused_by_schedule) {
                player.resume();
            }
        }
        if on {
            self.core.queue_redraw_all();
        }
        self.core.schedule_video();
    }

    /// Light every DRM head at `[drm] mode` and `rotation` as the configuration has them now.
    fn apply_drm_modes(&mut self) -> Result<(), String> {
        let crate::backend::Backend::Drm(d) = &self.backend else { return Ok(()) };
        let requests = d.requests_from_config(&self.core.config.drm)?;
        if requests.iter().all(|r| r.on.is_none()) {
            return Ok(());
        }
        self.configure_outputs(&requests, false)
    }

    /// Read the configuration again and apply what can change while running; an invalid file is
    /// rejected and the running configuration kept. Returns what was applied.
    pub fn reload_config(&mut self) -> Result<String, String> {
        let (new, path) = match &self.core.config_path {
            Some(path) => (Config::load(path).map_err(|e| e.to_string())?, Some(path.clone())),
            None => crate::config::find_and_load(None).map_err(|e| e.to_string())?,
        };
        let old = std::mem::replace(&mut self.core.config, new.clone());
        let mut restart_needed = Vec::new();
        if old.outputs != new.outputs {
            restart_needed.push("outputs");
        }
        // `[drm] mode` and `rotation` apply now, through the path output management takes;
        // the rest of `[drm]` (device, connector, planes) at the next start.
        let mut rest = new.drm.clone();
        (rest.mode, rest.rotation) = (old.drm.mode.clone(), old.drm.rotation);
        if rest != old.drm {
            restart_needed.push("drm");
        }
        if (&old.drm.mode, old.drm.rotation) != (&new.drm.mode, new.drm.rotation) {
            if let Err(err) = self.apply_drm_modes() {
                (self.core.config.drm.mode, self.core.config.drm.rotation) = (old.drm.mode.clone(), old.drm.rotation);
                return Err(format!("drm.mode/drm.rotation: {err} (the running mode and rotation are kept)"));
            }
        }
        if old.compat != new.compat {
            restart_needed.push("compat");
        }
        if old.metrics != new.metrics {
            restart_needed.push("metrics");
        }
        if old.keyboard != new.keyboard {
            let kb = &new.keyboard;
            let xkb = smithay::input::keyboard::XkbConfig {
                layout: &kb.layout,
                variant: &kb.variant,
                options: if kb.options.is_empty() { None } else { Some(kb.options.clone()) },
                ..Default::default()
            };
            if let Some(keyboard) = self.core.seat.get_keyboard() {
                if let Err(err) = keyboard.set_xkb_config(self, xkb) {
                    self.core.config.keyboard = old.keyboard.clone();
                    return Err(format!("keyboard layout '{}': {err:?}", kb.layout));
                }
                keyboard.change_repeat_info(kb.repeat_rate as i32, kb.repeat_delay_ms as i32);
            }
        }
        if old.background.image != new.background.image {
            self.core.background_image = load_background(&new.background.image);
        }
        if old.audio != new.audio {
            // The sound thread starts again with the new device and settings (or stops).
            if let Some(player) = &mut self.core.player {
                player.set_audio(crate::audio::Audio::start(&new.audio));
            }
        }
        // Background, placements, the schedule and the pointer policy apply from the next
        // frame on.
        self.core.kiosk_relayout();
        self.core.queue_redraw_all();
        self.apply_schedule();
        let from = path.map(|p| p.display().to_string()).unwrap_or_else(|| "the built-in defaults".into());
        Ok(if restart_needed.is_empty() {
            format!("{from}: applied")
        } else {
            format!("{from}: applied; {} take effect at the next start", restart_needed.join(", "))
        })
    }
}
