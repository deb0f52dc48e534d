//! Start-up and the event loop: config, backend choice, globals, sockets, the kiosk app.
//!
//! The loop sleeps in epoll until something happens: a client request, a page flip, a timer that
//! something asked for (the video's next picture, a virtual vblank, the schedule's next switch,
//! the watchdog), a signal. Nothing here polls.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use smithay::desktop::{PopupManager, Space};
use smithay::input::keyboard::XkbConfig;
use smithay::input::SeatState;
use smithay::reexports::calloop::generic::Generic;
use smithay::reexports::calloop::timer::{TimeoutAction, Timer};
use smithay::reexports::calloop::{EventLoop, Interest, Mode, PostAction};
use smithay::reexports::wayland_server::Display;
use smithay::reexports::wayland_server::ListeningSocket;
use smithay::utils::Clock;
use smithay::wayland::dmabuf::DmabufState;

use crate::backend::{self, Backend, BackendKind, Drm, Headless, Nested};
use crate::cli::RunArgs;
use crate::config::{self, Config};
use crate::kiosk::app::AppSupervisor;
use crate::kiosk::Kiosk;
use crate::state::{Core, State};
use crate::wayland::Globals;

/// Load the configuration the way `vitrine` does (for `main`, which needs the log filter first).
pub fn load_config(args: &RunArgs) -> anyhow::Result<(Config, Option<PathBuf>)> {
    config::find_and_load(args.config.as_deref()).map_err(|e| anyhow!("{e}"))
}

/// Run the compositor until it is asked to stop; returns the process exit status.
pub fn run(args: RunArgs, config: Config) -> anyhow::Result<i32> {
    crate::process::block_signals();
    let fd_limit = crate::process::raise_fd_limit();
    let device = config.drm.device.clone();
    let choice =
        backend::choose(args.backend, &|k| std::env::var(k).ok(), &|| crate::backend::drm::usable_card(&device))
            .map_err(|e| anyhow!(e))?;
    let kind = choice.kind;
    tracing::info!(backend = kind.name(), reason = %choice.reason, "backend chosen");

    let socket = match &args.socket {
        Some(name) => ListeningSocket::bind(name),
        None => ListeningSocket::bind_auto("wayland", 1..33),
    }
    .context("cannot create the Wayland socket (is XDG_RUNTIME_DIR set and writable?)")?;
    let socket_name = socket.socket_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    tracing::info!(name = %socket_name, "Wayland socket created");

    let (mut event_loop, mut state) = assemble(&args, &config, kind, choice.card.clone(), socket_name.clone())?;

    crate::listen::watch(&mut state.core, "wayland", socket, ListeningSocket::accept, |state, stream| {
        let (pid, command) = crate::state::peer(&stream);
        tracing::info!(client = pid, command, "client connected");
        state.add_client(stream, pid, command);
    })
    .map_err(|e| anyhow!(e))?;

    let runtime_dir = crate::control::runtime_dir().map_err(|e| anyhow!(e))?;
    let control_path = crate::control::socket_path(&runtime_dir, &socket_name);
    let _control = crate::control::server::start(&mut state.core, &control_path).map_err(|e| anyhow!(e))?;
    let listen = state.core.config.metrics.listen.clone();
    if !listen.is_empty() {
        // The screen matters more than the metrics: a port in use is said, not fatal.
        if let Err(err) = crate::metrics::start(&mut state.core, &listen) {
            tracing::error!(%err, "metrics are not served");
        }
    }

    watch_signals(&mut state.core)?;

    tracing::info!(
        wayland_display = %socket_name,
        control = %control_path.display(),
        "vitrine is ready: clients connect with WAYLAND_DISPLAY={socket_name}"
    );

    if !args.app.is_empty() {
        let env = vec![
            ("WAYLAND_DISPLAY".to_string(), socket_name.clone()),
            ("VITRINE_SOCKET".to_string(), control_path.display().to_string()),
            ("XDG_SESSION_TYPE".to_string(), "wayland".to_string()),
        ];
        let app = AppSupervisor::new(
            args.app.clone(),
            env,
            config.kiosk.on_app_exit,
            Duration::from_millis(config.kiosk.restart_delay_ms),
            Duration::from_millis(config.kiosk.restart_delay_max_ms),
        );
        state.core.kiosk.app = Some(app);
        crate::kiosk::launch_app(&mut state.core);
    }

    start_systemd(&mut state.core)?;
    state.core.day_clock = crate::kiosk::schedule::DayClock::from_env().map_err(|e| anyhow!(e))?;
    state.apply_schedule();

    let clients_need = crate::wayland::limits::descriptors_for_clients();
    if fd_limit < clients_need {
        tracing::warn!(
            fd_limit,
            clients_need,
            "the open files limit is below what the most clients at once may hold: raise LimitNOFILE"
        );
    } else {
        tracing::debug!(fd_limit, clients_need, "open files limit");
    }
    // A panic on the loop (a bug) still ends by the way out below: the kiosk app stopped, the
    // audit written, the VT given back, and a status systemd counts as a failure.
    let turns = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_loop(&mut event_loop, &mut state)));
    if turns.is_err() {
        state.core.exit_code = Some(EXIT_PANIC);
    }
    Ok(stop(&mut state))
}

/// The compositor without its ways in (sockets, signals, systemd): the display, the globals, the
/// seat, the video, the backend of `kind` and its outputs. `run` adds the rest; `embed` runs it
/// as it is, inside another process.
pub(crate) fn assemble(
    args: &RunArgs,
    config: &Config,
    kind: BackendKind,
    card: Option<PathBuf>,
    socket_name: String,
) -> anyhow::Result<(EventLoop<'static, State>, State)> {
    let event_loop: EventLoop<'static, State> = EventLoop::try_new().context("cannot create the event loop")?;
    let display: Display<State> = Display::new().context("cannot create the Wayland display")?;
    let dh = display.handle();

    let globals = Globals::new(&dh, config);
    let mut seat_state = SeatState::new();
    let mut seat = seat_state.new_wl_seat(&dh, "seat0");
    let kb = &config.keyboard;
    seat.add_keyboard(
        XkbConfig {
            layout: &kb.layout,
            variant: &kb.variant,
            options: if kb.options.is_empty() { None } else { Some(kb.options.clone()) },
            ..Default::default()
        },
        kb.repeat_delay_ms as i32,
        kb.repeat_rate as i32,
    )
    .map_err(|e| anyhow!("keyboard layout '{}' variant '{}' options '{}': {e}", kb.layout, kb.variant, kb.options))?;
    seat.add_pointer();
    seat.add_touch();

    let player = if !args.play.is_empty() {
        Some(crate::video::player::Player::new(args.play.clone(), args.loop_playlist))
    } else if !config.video.playlist.is_empty() {
        Some(crate::video::player::Player::new(config.video.playlist.clone(), config.video.loop_playlist))
    } else {
        None
    };
    let (tasks, task_source) = smithay::reexports::calloop::channel::channel::<crate::state::LoopTask>();
    event_loop
        .handle()
        .insert_source(task_source, |event, _, state| {
            if let smithay::reexports::calloop::channel::Event::Msg(task) = event {
                task(state);
            }
        })
        .map_err(|e| anyhow!("cannot watch the worker threads: {e}"))?;
    let mut state = State {
        backend: Backend::None,
        core: Core {
            display_handle: dh.clone(),
            loop_handle: event_loop.handle(),
            loop_signal: event_loop.get_signal(),
            config: config.clone(),
            config_path: args.config.clone(),
            socket_name: socket_name.clone(),
            started: Instant::now(),
            clock: Clock::new(),
            compositor_state: globals.compositor,
            xdg_shell_state: globals.xdg_shell,
            xdg_decoration_state: globals.xdg_decoration,
            layer_shell_state: globals.layer_shell,
            shm_state: globals.shm,
            dmabuf_state: DmabufState::new(),
            dmabuf_global: None,
            seat_state,
            data_device_state: globals.data_device,
            primary_selection_state: globals.primary_selection,
            output_manager_state: globals.output_manager,
            presentation_state: globals.presentation,
            viewporter_state: globals.viewporter,
            single_pixel_buffer_state: globals.single_pixel_buffer,
            content_type_state: globals.content_type,
            activation_state: globals.activation,
            virtual_keyboard_state: globals.virtual_keyboard,
            text_input_state: globals.text_input,
            input_method_state: globals.input_method,
            seat,
            popups: PopupManager::default(),
            space: Space::default(),
            outputs: Vec::new(),
            kiosk: Kiosk::new(),
            xdg_surface_in_request: None,
            exit_code: None,
            player,
            exit_when_done: args.exit_when_done,
            stats_path: args.stats.clone(),
            print_audit: args.audit,
            background_image: crate::state::load_background(&config.background.image),
            displays_on: true,
            paused_by_schedule: false,
            frames: Default::default(),
            control: Default::default(),
            metrics: Default::default(),
            cec: Default::default(),
            systemd: None,
            first_frame: None,
            screenshot_on_start: args.screenshot_on_start.clone(),
            pointer_timer: None,
            day_clock: crate::kiosk::schedule::DayClock::Local,
            schedule_timer: None,
            video_waker: None,
            tasks,
            accept_pauses: 0,
            clients_connected: Default::default(),
            deferred: Vec::new(),
            trim_armed: false,
            screencopy_waiting: Vec::new(),
            ime_popups: Vec::new(),
            output_management: Default::default(),
        },
    };
    crate::frames::watch_player(&mut state.core).map_err(|e| anyhow!(e))?;

    match kind {
        BackendKind::Drm => {
            let card = card.ok_or_else(|| anyhow!("no DRM device"))?;
            let renderer = args.renderer.unwrap_or(config.drm.renderer);
            if let Some(player) = &mut state.core.player {
                player.set_scanout(true);
            }
            let drm = Drm::open(&mut state.core, &card, renderer).map_err(|e| anyhow!(e))?;
            state.backend = Backend::Drm(Box::new(drm));
            if let Some((d, core)) = state.drm() {
                d.light(core).map_err(|e| anyhow!(e))?;
                let connectors = d.connectors();
                crate::cec::start(core, &connectors);
            }
            if let Err(err) = crate::backend::libinput::start(&mut state) {
                tracing::warn!(%err, "no input devices: the display works, input does not");
            }
        }
        BackendKind::Headless => {
            let specs = if args.outputs.is_empty() { config.outputs.headless.clone() } else { args.outputs.clone() };
            let mut headless = Headless::new().map_err(|e| anyhow!(e))?;
            headless.create_outputs(&mut state.core, &specs).map_err(|e| anyhow!(e))?;
            state.backend = Backend::Headless(Box::new(headless));
        }
        BackendKind::Nested => {
            let spec = args.outputs.first().copied().unwrap_or(config.outputs.nested);
            let nested = Nested::start(&mut state.core, spec).map_err(|e| anyhow!(e))?;
            state.backend = Backend::Nested(Box::new(nested));
        }
    }
    // Start the video before the rest of start-up (input, the kiosk app, systemd): its file is
    // read and its decoder set up and fed on their own threads meanwhile, so the first picture
    // is ready when the event loop first paints.
    state.core.video_woken();

    match state.backend.dmabuf_feedback() {
        Ok(feedback) => {
            let global = state.core.dmabuf_state.create_global_with_default_feedback::<State>(&dh, &feedback);
            state.core.dmabuf_global = Some(global);
            tracing::info!("linux-dmabuf v5 advertised with default feedback");
        }
        Err(why) => tracing::info!(reason = %why, "linux-dmabuf not advertised"),
    }

    event_loop
        .handle()
        .insert_source(Generic::new(display, Interest::READ, Mode::Level), |_, display, state| {
            // SAFETY: the display is not dropped while the loop runs.
            if let Err(err) = unsafe { display.get_mut().dispatch_clients(state) } {
                tracing::error!(%err, "dispatching clients failed");
            }
            Ok(PostAction::Continue)
        })
        .map_err(|e| anyhow!("cannot watch the Wayland display: {e}"))?;

    Ok((event_loop, state))
}

impl State {
    /// A client on `stream` (accepted, or handed over by an embedder); one over the limit of
    /// clients at once gets its error.
    pub fn add_client(
        &mut self,
        stream: std::os::unix::net::UnixStream,
        pid: i32,
        command: String,
    ) -> Option<smithay::reexports::wayland_server::Client> {
        let app = self.core.kiosk.app.as_ref().and_then(|a| a.pid());
        let privileged = crate::wayland::privileged::decide(pid, &command, &self.core.config.security, app);
        let data = State::new_client_data(pid, command, privileged, &self.core.clients_connected);
        match self.core.display_handle.insert_client(stream, data) {
            Ok(client) => {
                crate::wayland::limits::client_connected(&self.core.display_handle, &client);
                Some(client)
            }
            Err(err) => {
                tracing::warn!(%err, "cannot accept a client");
                None
            }
        }
    }
}

/// The exit status after a panic on the loop (EX_SOFTWARE).
pub const EXIT_PANIC: i32 = 70;

/// Turn the loop until vitrine is asked to stop. An event source that reports an error does
/// not stop vitrine: the error is logged (at most once a minute) and the loop goes on.
pub(crate) fn run_loop(event_loop: &mut EventLoop<'static, State>, state: &mut State) {
    let mut last_error = None;
    while state.core.exit_code.is_none() {
        // Sleep until something happens, unless work is left for this turn.
        let timeout = state.core.has_deferred().then_some(Duration::ZERO);
        if let Err(err) = event_loop.dispatch(timeout, state) {
            crate::state::log_rarely(&mut last_error, || tracing::error!(%err, "event loop: a source failed"));
        }
        // Replies first (a configure, a roundtrip's callback), then the turn's repaints: under a
        // slow CPU a repaint takes tens of milliseconds, and clients wait for their configure
        // with a deadline (GStreamer's waylandsink gives it 100 ms, then has no size).
        let _ = state.core.display_handle.flush_clients();
        state.run_deferred();
        state.core.space.refresh();
        state.core.popups.cleanup();
        let _ = state.core.display_handle.flush_clients();
        trim_after_clients_left(&mut state.core);
    }
}

/// What a client that left made vitrine allocate (a flood up to a limit, say) goes back to the
/// system a second later, once its objects are gone: the allocator would otherwise keep it.
/// One trim per second at most, armed only when a client left.
fn trim_after_clients_left(core: &mut Core) {
    if core.trim_armed || !crate::state::CLIENT_LEFT.swap(false, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    core.trim_armed = true;
    let armed = core.loop_handle.insert_source(Timer::from_duration(Duration::from_secs(1)), |_, _, state| {
        state.core.trim_armed = false;
        // SAFETY: malloc_trim only walks the allocator's own free lists.
        unsafe { libc::malloc_trim(0) };
        TimeoutAction::Drop
    });
    if armed.is_err() {
        core.trim_armed = false;
    }
}

/// The zero-copy audit for a person: the decoder, where the pictures went, what was copied.
fn audit_in_words(state: &State, report: &serde_json::Value) -> String {
    let n = |k: &str| report[k].as_u64().unwrap_or(0);
    let status = state.core.player.as_ref().map(|p| p.status());
    let decoder = status.as_ref().and_then(|s| s.decoder.clone()).unwrap_or_else(|| "none".into());
    let path = status.map(|s| s.path).unwrap_or_default();
    let composited = n("frames_composited");
    let on_planes = n("frames_presented").saturating_sub(composited);
    let mut out = format!("\nvideo audit ({} backend)\n", state.backend.name());
    out += &format!("  decoder:   {decoder}\n  path:      {path}\n");
    out += &format!(
        "  pictures:  {} decoded, {} shown, {} dropped\n",
        n("frames_decoded"),
        n("frames_presented"),
        n("frames_dropped")
    );
    out += &format!("  shown:     {on_planes} on a hardware plane; composited in {composited} repaints\n");
    out += &format!(
        "  copies:    {} bytes by the CPU, {} pictures mapped, {} dmabufs exported\n",
        n("cpu_copied_bytes"),
        n("frame_mappings"),
        n("dmabufs_exported")
    );
    out
}

/// The way out, from any state: the audit written, the kiosk app stopped, the display given back.
fn stop(state: &mut State) -> i32 {
    if let Some(report) = state.video_report() {
        tracing::info!(target: "video", audit = %report, "video audit");
        if state.core.print_audit {
            print!("{}", audit_in_words(state, &report));
        }
        if let Some(path) = &state.core.stats_path {
            let text = serde_json::to_string_pretty(&report).unwrap_or_default();
            if let Err(err) = std::fs::write(path, text + "\n") {
                tracing::error!(path = %path.display(), %err, "cannot write the video audit");
            }
        }
    }
    if let Some(app) = state.core.kiosk.app.as_mut() {
        app.stop();
    }
    if let Backend::Drm(drm) = &mut state.backend {
        drm.stop();
    }
    let code = state.core.exit_code.unwrap_or(0);
    tracing::info!(code, "vitrine stopped");
    code
}

fn watch_signals(core: &mut Core) -> anyhow::Result<()> {
    use calloop::signals::{Signal, Signals};
    let signals = Signals::new(&[Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP])
        .context("cannot watch SIGINT/SIGTERM/SIGHUP")?;
    core.loop_handle
        .insert_source(signals, |event, _, state| {
            if event.signal() == Signal::SIGHUP {
                match state.reload_config() {
                    Ok(report) => tracing::info!(%report, "configuration reloaded (SIGHUP)"),
                    Err(err) => tracing::error!(%err, "configuration not reloaded (SIGHUP): keeping the running one"),
                }
                return;
            }
            tracing::info!(signal = ?event.signal(), "stopping on signal");
            state.core.quit(0);
        })
        .map_err(|e| anyhow!("cannot watch signals: {e}"))?;
    Ok(())
}

impl Core {
    /// The first frame is on screen (or there is nothing to show it on): systemd hears READY=1,
    /// and `--screenshot-on-start` is taken once a client has drawn.
    pub fn first_frame_shown(&mut self) {
        if self.first_frame.is_none() {
            self.first_frame = Some(Instant::now());
            if let Some(systemd) = &mut self.systemd {
                systemd.ready();
            }
        }
        if self.screenshot_on_start.is_some() {
            self.maybe_screenshot_on_start();
        }
    }

    /// `--screenshot-on-start`: half a second after a client has drawn (or 5 s after start),
    /// a PNG of the first output.
    fn maybe_screenshot_on_start(&mut self) {
        // A client's window; with a video, its first picture too (and the kiosk app's window
        // when there is one).
        let client = self.kiosk.stack.iter().any(|w| w.geometry().size.w > 0);
        let drawn = match &self.player {
            Some(p) => p.current().is_some() && (client || self.kiosk.app.is_none()),
            None => client,
        };
        if !drawn && self.started.elapsed() < Duration::from_secs(5) {
            // Asked again at the next frame; a client that never draws gets its shot at 5 s.
            if self.started.elapsed() < Duration::from_millis(100) {
                let timer = Timer::from_deadline(self.started + Duration::from_secs(5));
                let _ = self.loop_handle.insert_source(timer, |_, _, state| {
                    state.core.maybe_screenshot_on_start();
                    TimeoutAction::Drop
                });
            }
            return;
        }
        let Some(path) = self.screenshot_on_start.take() else { return };
        let settle = Timer::from_duration(Duration::from_millis(500));
        let inserted = self.loop_handle.insert_source(settle, move |_, _, state| {
            let path = path.clone();
            let file = match crate::control::server::open_image_file(&path) {
                Ok(file) => file,
                Err(err) => {
                    tracing::error!(%err, "cannot write the start-up screenshot");
                    return TimeoutAction::Drop;
                }
            };
            state.screenshot(
                None,
                Box::new(move |state, result| match result {
                    Ok((output, image)) => {
                        let name = output.name();
                        let shown = path.clone();
                        let write = move |_: &mut State, result: Result<(), String>| match result {
                            Ok(()) => tracing::info!(output = %name, path = %shown.display(), "screenshot written"),
                            Err(err) => tracing::error!(%err, "cannot write the screenshot"),
                        };
                        crate::control::server::write_png_off_thread(&mut state.core, image, file, path, write);
                    }
                    Err(err) => tracing::error!(%err, "cannot take the screenshot"),
                }),
            );
            TimeoutAction::Drop
        });
        if let Err(err) = inserted {
            tracing::error!(%err, "cannot schedule the start-up screenshot");
        }
    }
}

/// READY=1 once the first frame is on screen (at once when there is no display to show it
/// on); WATCHDOG=1 on its own timer while the display path is alive.
fn start_systemd(core: &mut Core) -> anyhow::Result<()> {
    let Some(mut systemd) = crate::systemd::Systemd::from_env() else { return Ok(()) };
    if core.first_frame.is_some() || core.outputs.is_empty() {
        systemd.ready();
    }
    let period = systemd.watchdog_period();
    core.systemd = Some(systemd);
    let Some(period) = period else { return Ok(()) };
    tracing::info!(period_ms = period.as_millis() as u64, "feeding the systemd watchdog");
    core.loop_handle
        .insert_source(Timer::from_duration(period), move |_, _, state| {
            let stalled = state.core.stalled_since();
            if let Some(s) = &mut state.core.systemd {
                s.watchdog_tick(stalled);
            }
            TimeoutAction::ToDuration(period)
        })
        .map_err(|e| anyhow!("cannot start the systemd watchdog: {e}"))?;
    Ok(())
}
