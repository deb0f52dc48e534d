//! vitrine inside another process: the headless compositor on a thread of its own, with no
//! socket, signal handler or systemd link. The host hands it connected client sockets, places
//! windows and drives the pointer and touch through [`Embedded`]; each call returns once the
//! compositor has acted on it and flushed its clients, so that what the host does next (a
//! client's roundtrip, say) sees the result. The conformance suite's module (`wlcs/`) is the
//! host this is for.

use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread::JoinHandle;

use smithay::backend::input::ButtonState;
use smithay::reexports::calloop::channel::{self, Event as ChannelEvent};
use smithay::reexports::wayland_server::{Client, Resource};
use smithay::utils::{Logical, Point};

use crate::backend::BackendKind;
use crate::cli::{OutputSpec, RunArgs};
use crate::config::Config;
use crate::state::State;

/// What the host asks of the compositor.
#[derive(Debug, Clone, Copy)]
pub enum Input {
    /// The pointer to a point of the layout.
    PointerTo(f64, f64),
    /// The pointer moved by this much.
    PointerBy(f64, f64),
    /// A button (an evdev code) pressed or released.
    Button(u32, bool),
    /// A touch point (by id) down at, or moved to, a point of the layout; or lifted.
    TouchDown(i32, f64, f64),
    TouchMove(i32, f64, f64),
    TouchUp(i32),
}

enum Command {
    /// A client on this socket, known to the host by `key`.
    Client(UnixStream, i32),
    /// The toplevel of client `key` whose wl_surface has this protocol id, at (x, y).
    Place {
        key: i32,
        surface: u32,
        at: Point<i32, Logical>,
    },
    Input(Input),
}

/// The compositor running on its own thread; stopped (and joined) when dropped.
pub struct Embedded {
    commands: Option<channel::Sender<(Command, mpsc::SyncSender<()>)>>,
    thread: Option<JoinHandle<()>>,
}

/// How the embedded compositor behaves where the host needs it to differ.
#[derive(Debug, Clone)]
pub struct Options {
    /// Its one virtual output.
    pub output: OutputSpec,
    /// Accept a buffer committed before the client acknowledged its first configure (xdg-shell
    /// forbids it; the conformance suite's 1.5.0 helpers do it, with or without a first commit).
    pub buffer_before_configure: bool,
}

impl Embedded {
    /// Start the compositor; calls made at once are queued until it runs.
    pub fn start(options: Options) -> std::io::Result<Embedded> {
        let (commands, received) = channel::channel::<(Command, mpsc::SyncSender<()>)>();
        let thread = std::thread::Builder::new().name("vitrine".into()).spawn(move || {
            if let Err(err) = serve(options, received) {
                tracing::error!(%err, "the embedded compositor did not start");
            }
        })?;
        Ok(Embedded { commands: Some(commands), thread: Some(thread) })
    }

    /// Send `command` and wait until the compositor has acted on it (at once if it is gone).
    fn call(&self, command: Command) {
        let (done, wait) = mpsc::sync_channel(1);
        if self.commands.as_ref().is_some_and(|c| c.send((command, done)).is_ok()) {
            let _ = wait.recv();
        }
    }

    /// A connected client socket, known from now on by `key` (unique among live clients).
    pub fn add_client(&self, stream: UnixStream, key: i32) {
        self.call(Command::Client(stream, key));
    }

    /// Put the toplevel of client `key` whose wl_surface has protocol id `surface` at `(x, y)`
    /// of the layout, instead of where the kiosk layout puts it.
    pub fn place(&self, key: i32, surface: u32, x: i32, y: i32) {
        self.call(Command::Place { key, surface, at: (x, y).into() });
    }

    pub fn input(&self, input: Input) {
        self.call(Command::Input(input));
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        // Closing the channel stops the loop.
        self.commands.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(options: Options, received: channel::Channel<(Command, mpsc::SyncSender<()>)>) -> anyhow::Result<()> {
    crate::wayland::allow_buffer_before_configure(options.buffer_before_configure);
    let args = RunArgs { outputs: vec![options.output], ..Default::default() };
    let config = Config::default();
    let (mut event_loop, mut state) =
        crate::run::assemble(&args, &config, BackendKind::Headless, None, "embedded".into())?;
    let mut clients: std::collections::HashMap<i32, Client> = Default::default();
    event_loop
        .handle()
        .insert_source(received, move |event, _, state| match event {
            ChannelEvent::Msg((command, done)) => {
                act(state, &mut clients, command);
                let _ = state.core.display_handle.flush_clients();
                let _ = done.send(());
            }
            ChannelEvent::Closed => state.core.quit(0),
        })
        .map_err(|e| anyhow::anyhow!("cannot watch the host's calls: {e}"))?;
    crate::run::run_loop(&mut event_loop, &mut state);
    Ok(())
}

fn act(state: &mut State, clients: &mut std::collections::HashMap<i32, Client>, command: Command) {
    match command {
        Command::Client(stream, key) => {
            clients.retain(|_, c| state.core.display_handle.backend_handle().get_client_data(c.id()).is_ok());
            if let Some(client) = state.add_client(stream, 0, "embedded".into()) {
                clients.insert(key, client);
            }
        }
        Command::Place { key, surface, at } => {
            let Some(client) = clients.get(&key) else { return };
            let dh = state.core.display_handle.clone();
            let window = state.core.kiosk.stack.iter().find(|w| {
                w.toplevel().is_some_and(|t| {
                    let s = t.wl_surface();
                    s.id().protocol_id() == surface && dh.get_client(s.id()).is_ok_and(|c| &c == client)
                })
            });
            if let Some(window) = window.cloned() {
                state.core.kiosk_place_at(&window, at);
            }
        }
        Command::Input(input) => state.inject(input),
    }
}

impl State {
    /// Input from an embedder, as a device would send it.
    fn inject(&mut self, input: Input) {
        let time = self.core.clock.now().as_millis();
        match input {
            Input::PointerTo(x, y) => self.pointer_moved((x, y).into(), time),
            Input::PointerBy(dx, dy) => {
                let pos = self.core.kiosk.pointer_location + Point::from((dx, dy));
                self.pointer_moved(pos, time);
            }
            Input::Button(button, pressed) => {
                let state = if pressed { ButtonState::Pressed } else { ButtonState::Released };
                self.pointer_button(button, state, time);
            }
            Input::TouchDown(id, x, y) => self.touch_down(Some(id as u32).into(), (x, y).into(), time),
            Input::TouchMove(id, x, y) => self.touch_moved(Some(id as u32).into(), (x, y).into(), time),
            Input::TouchUp(id) => self.touch_up(Some(id as u32).into(), time),
        }
        // Each touch event is a frame of its own.
        if let (Input::TouchDown(..) | Input::TouchMove(..) | Input::TouchUp(..), Some(touch)) =
            (input, self.core.seat.get_touch())
        {
            touch.frame(self);
        }
    }
}
