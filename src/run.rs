//! Start-up and the event loop: config, backend choice, globals, sockets, the kiosk app.

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
use smithay::utils::Clock;
use smithay::wayland::dmabuf::DmabufState;
use smithay::wayland::socket::ListeningSocketSource;

use crate::backend::{self, Backend, BackendKind, Drm, Headless, Nested};
use crate::cli::RunArgs;
use crate::config::{self, Config};
use crate::kiosk::app::{AppEvent, AppSupervisor};
use crate::kiosk::Kiosk;
use crate::state::State;
use crate::wayland::Globals;

/// Load the configuration the way `vitrine` does (for `main`, which needs the log filter first).
pub fn load_config(args: &RunArgs) -> anyhow::Result<(Config, Option<PathBuf>)> {
    config::find_and_load(args.config.as_deref()).map_err(|e| anyhow!("{e}"))
}

/// Run the compositor until it is asked to stop; returns the process exit status.
pub fn run(args: RunArgs, config: Config) -> anyhow::Result<i32> {
    let device = config.drm.device.clone();
    let choice =
        backend::choose(args.backend, &|k| std::env::var(k).ok(), &|| crate::backend::drm::usable_card(&device))
            .map_err(|e| anyhow!(e))?;
    let kind = choice.kind;
    tracing::info!(backend = kind.name(), reason = %choice.reason, "backend chosen");

    let mut event_loop: EventLoop<'static, State> = EventLoop::try_new().context("cannot create the event loop")?;
    let display: Display<State> = Display::new().context("cannot create the Wayland display")?;
    let dh = display.handle();

    let socket = match &args.socket {
        Some(name) => ListeningSocketSource::with_name(name),
        None => ListeningSocketSource::new_auto(),
    }
    .context("cannot create the Wayland socket (is XDG_RUNTIME_DIR set and writable?)")?;
    let socket_name = socket.socket_name().to_string_lossy().into_owned();

    let globals = Globals::new(&dh, &config);
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

    let mut state = State {
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
        shm_state: globals.shm,
        dmabuf_state: DmabufState::new(),
        dmabuf_global: None,
        seat_state,
        data_device_state: globals.data_device,
        output_manager_state: globals.output_manager,
        presentation_state: globals.presentation,
        viewporter_state: globals.viewporter,
        single_pixel_buffer_state: globals.single_pixel_buffer,
        content_type_state: globals.content_type,
        activation_state: globals.activation,
        seat,
        popups: PopupManager::default(),
        space: Space::default(),
        outputs: Vec::new(),
        backend: Backend::Headless(Box::new(Headless::new().map_err(|e| anyhow!(e))?)),
        kiosk: Kiosk::new(),
        xdg_surface_in_request: None,
        display_heartbeat: None,
        exit_code: None,
        player: if !args.play.is_empty() {
            Some(crate::video::player::Player::new(args.play.clone(), args.loop_playlist))
        } else if !config.video.playlist.is_empty() {
            Some(crate::video::player::Player::new(config.video.playlist.clone(), config.video.loop_playlist))
        } else {
            None
        },
        exit_when_done: args.exit_when_done,
        stats_path: args.stats.clone(),
        background_image: crate::state::load_background(&config.background.image),
        displays_on: true,
        paused_by_schedule: false,
    };

    match kind {
        BackendKind::Drm => {
            let card = choice.card.clone().ok_or_else(|| anyhow!("no DRM device"))?;
            let renderer = args.renderer.unwrap_or(config.drm.renderer);
            Drm::start(&mut state, &card, renderer).map_err(|e| anyhow!(e))?;
            if let Some(player) = &mut state.player {
                player.set_scanout(true);
                // The first item's reading thread starts now (see below).
                player.pump();
            }
            if let Err(err) = crate::backend::libinput::start(&mut state) {
                tracing::warn!(%err, "no input devices: the display works, input does not");
            }
        }
        BackendKind::Headless => {
            let specs = if args.outputs.is_empty() { config.outputs.headless.clone() } else { args.outputs.clone() };
            Headless::create_outputs(&mut state, &specs).map_err(|e| anyhow!(e))?;
        }
        BackendKind::Nested => {
            let spec = args.outputs.first().copied().unwrap_or(config.outputs.nested);
            Nested::start(&mut state, spec).map_err(|e| anyhow!(e))?;
        }
    }
    // Start the video before the rest of start-up (input, the kiosk app, systemd): its file is
    // read and its decoder set up and fed on their own threads meanwhile, so the first picture
    // is ready when the event loop first paints.
    if let Some(player) = &mut state.player {
        player.pump();
    }

    match state.backend.dmabuf_feedback() {
        Ok(feedback) => {
            let global = state.dmabuf_state.create_global_with_default_feedback::<State>(&dh, &feedback);
            state.dmabuf_global = Some(global);
            tracing::info!("linux-dmabuf v5 advertised with default feedback");
        }
        Err(why) => tracing::info!(reason = %why, "linux-dmabuf not advertised"),
    }

    event_loop
        .handle()
        .insert_source(socket, |stream, _, state| {
            let (pid, command) = crate::state::peer(&stream);
            tracing::info!(client = pid, command, "client connected");
            if let Err(err) = state.display_handle.insert_client(stream, State::new_client_data(pid, command)) {
                tracing::warn!(%err, "cannot accept a client");
            }
        })
        .map_err(|e| anyhow!("cannot watch the Wayland socket: {e}"))?;
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

    let runtime_dir = crate::control::runtime_dir().map_err(|e| anyhow!(e))?;
    let control_path = crate::control::socket_path(&runtime_dir, &socket_name);
    let _control = crate::control::server::start(&mut state, &control_path).map_err(|e| anyhow!(e))?;

    watch_signals(&mut state)?;
    if let Some(path) = &args.screenshot_on_start {
        screenshot_on_start(&mut state, path.clone());
    }

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
        let mut app = AppSupervisor::new(
            args.app.clone(),
            env,
            config.kiosk.on_app_exit,
            Duration::from_millis(config.kiosk.restart_delay_ms),
            Duration::from_millis(config.kiosk.restart_delay_max_ms),
        );
        if let AppEvent::ExitWith(code) = app.start() {
            state.quit(code);
        }
        state.kiosk.app = Some(app);
        event_loop
            .handle()
            .insert_source(Timer::from_duration(Duration::from_millis(50)), |_, _, state| {
                if let Some(AppEvent::ExitWith(code)) = state.kiosk.app.as_mut().map(|a| a.poll()) {
                    state.quit(code);
                }
                TimeoutAction::ToDuration(Duration::from_millis(50))
            })
            .map_err(|e| anyhow!("cannot watch the kiosk app: {e}"))?;
    }

    start_systemd(&mut state)?;
    start_schedule(&mut state)?;

    while state.exit_code.is_none() {
        event_loop.dispatch(Some(Duration::from_millis(100)), &mut state).context("event loop failed")?;
        state.space.refresh();
        state.popups.cleanup();
        let _ = state.display_handle.flush_clients();
    }

    if let Some(report) = state.video_report() {
        tracing::info!(target: "video", audit = %report, "video audit");
        if let Some(path) = &state.stats_path {
            let text = serde_json::to_string_pretty(&report).unwrap_or_default();
            if let Err(err) = std::fs::write(path, text + "\n") {
                tracing::error!(path = %path.display(), %err, "cannot write the video audit");
            }
        }
    }
    if let Some(app) = state.kiosk.app.as_mut() {
        app.stop();
    }
    if let Backend::Drm(drm) = &mut state.backend {
        drm.stop();
    }
    let code = state.exit_code.unwrap_or(0);
    tracing::info!(code, "vitrine stopped");
    Ok(code)
}

fn watch_signals(state: &mut State) -> anyhow::Result<()> {
    use calloop::signals::{Signal, Signals};
    let signals = Signals::new(&[Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP])
        .context("cannot watch SIGINT/SIGTERM/SIGHUP")?;
    state
        .loop_handle
        .insert_source(signals, |event, _, state| {
            if event.signal() == Signal::SIGHUP {
                match state.reload_config() {
                    Ok(report) => tracing::info!(%report, "configuration reloaded (SIGHUP)"),
                    Err(err) => tracing::error!(%err, "configuration not reloaded (SIGHUP): keeping the running one"),
                }
                return;
            }
            tracing::info!(signal = ?event.signal(), "stopping on signal");
            state.quit(0);
        })
        .map_err(|e| anyhow!("cannot watch signals: {e}"))?;
    Ok(())
}

/// `--screenshot-on-start`: once a client has drawn (or after 5 s), write a PNG of the first output.
fn screenshot_on_start(state: &mut State, path: PathBuf) {
    let started = Instant::now();
    let mut drawn_since: Option<Instant> = None;
    let result =
        state.loop_handle.insert_source(Timer::from_duration(Duration::from_millis(200)), move |_, _, state| {
            let drawn = state.kiosk.stack.iter().any(|w| w.geometry().size.w > 0);
            if drawn && drawn_since.is_none() {
                drawn_since = Some(Instant::now());
            }
            // Give a client half a second to settle after its first frame.
            let ready = drawn_since.map(|t| t.elapsed() > Duration::from_millis(500)).unwrap_or(false);
            if !ready && started.elapsed() < Duration::from_secs(5) {
                return TimeoutAction::ToDuration(Duration::from_millis(200));
            }
            match state.screenshot(None) {
                Ok((output, image)) => match image.save_png(&path) {
                    Ok(()) => tracing::info!(output = %output.name(), path = %path.display(), "screenshot written"),
                    Err(err) => tracing::error!(%err, "cannot write the screenshot"),
                },
                Err(err) => tracing::error!(%err, "cannot take the screenshot"),
            }
            TimeoutAction::Drop
        });
    if let Err(err) = result {
        tracing::error!(%err, "cannot schedule the start-up screenshot");
    }
}

/// The daily schedule: checked every second against local time (or VITRINE_FAKE_TIME).
fn start_schedule(state: &mut State) -> anyhow::Result<()> {
    let clock = crate::kiosk::schedule::DayClock::from_env().map_err(|e| anyhow!(e))?;
    state
        .loop_handle
        .insert_source(Timer::immediate(), move |_, _, state| {
            let on = state.config.schedule.hours().is_none_or(|h| h.is_on(clock.now()));
            state.set_displays(on);
            if !state.displays_on {
                // Dark by design: the display path is not stalled, the watchdog stays fed.
                state.display_heartbeat = Some(Instant::now());
            }
            TimeoutAction::ToDuration(Duration::from_secs(1))
        })
        .map_err(|e| anyhow!("cannot start the display schedule: {e}"))?;
    Ok(())
}

/// READY=1 once the first frame is on screen; WATCHDOG=1 while the display path is alive.
fn start_systemd(state: &mut State) -> anyhow::Result<()> {
    let Some(notifier) = crate::systemd::Notifier::from_env() else { return Ok(()) };
    let watchdog = crate::systemd::watchdog_interval().map(crate::systemd::Watchdog::new);
    let period =
        watchdog.as_ref().map(|w| w.period()).unwrap_or(Duration::from_millis(100)).min(Duration::from_millis(100));
    let mut ready = false;
    let mut last_feed = Instant::now();
    state
        .loop_handle
        .insert_source(Timer::from_duration(period), move |_, _, state| {
            let now = Instant::now();
            if !ready && state.display_heartbeat.is_some() {
                notifier.notify("READY=1");
                tracing::info!("first frame on screen: told systemd READY=1");
                ready = true;
            }
            if let Some(w) = &watchdog {
                if now.duration_since(last_feed) >= w.period() {
                    if w.should_feed(now, state.display_heartbeat) {
                        notifier.notify("WATCHDOG=1");
                        last_feed = now;
                    } else {
                        tracing::warn!("display path stalled: the systemd watchdog is not fed");
                        last_feed = now;
                    }
                }
            }
            TimeoutAction::ToDuration(period)
        })
        .map_err(|e| anyhow!("cannot start the systemd notifier: {e}"))?;
    Ok(())
}
