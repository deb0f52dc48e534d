//! The compositor side of the control socket, as calloop sources. Nothing here waits for a
//! peer: requests are read as they come and answered in order, replies are buffered per
//! connection and written as the peer takes them, a connection whose unread replies pass a cap is
//! dropped, and replies that take time (screenshots: the next frame's writeback, PNG encoding,
//! the file write) are made off the loop and sent when ready.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use smithay::reexports::calloop::generic::Generic;
use smithay::reexports::calloop::timer::{TimeoutAction, Timer};
use smithay::reexports::calloop::{Interest, Mode, PostAction};
use smithay::reexports::wayland_server::Resource;
use smithay::wayland::compositor::with_states;
use smithay::wayland::shell::xdg::XdgToplevelSurfaceData;

use super::protocol::{parse_request, Reply, Request};
use super::Connection;
use crate::image::RgbaImage;
use crate::state::{Core, State};

/// Longest request line accepted.
pub const MAX_LINE: usize = 64 * 1024;
/// Replies a peer has not read, beyond what its socket holds, before it is dropped.
pub const MAX_UNREAD: usize = 256 * 1024;
/// Requests answered per connection per turn of the loop: a flood on one connection does not
/// hold up the others.
const BATCH: usize = 16;
/// Connections served at once; more are refused (closed) and logged once in a while.
pub const MAX_CONNECTIONS: usize = 64;
/// Requests answered per connection per second: more wait for the next second, and the socket
/// is not read meanwhile (the peer's writes wait in the kernel).
pub const RATE: u32 = 200;

/// Removes the socket file when vitrine stops.
pub struct ControlSocket {
    pub path: PathBuf,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Bind the control socket (mode 0600) and serve it from the event loop.
pub fn start(core: &mut Core, path: &Path) -> Result<ControlSocket, String> {
    if path.exists() {
        // A live vitrine answers; a stale file from a crash does not.
        if UnixStream::connect(path).is_ok() {
            return Err(format!("{} is in use by another vitrine", path.display()));
        }
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    listener.set_nonblocking(true).map_err(|e| format!("{}: {e}", path.display()))?;
    crate::listen::watch(
        core,
        "control",
        listener,
        |l: &UnixListener| match l.accept() {
            Ok((stream, _)) => Ok(Some(stream)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        },
        |state, stream| accept(&mut state.core, stream),
    )?;
    Ok(ControlSocket { path: path.to_path_buf() })
}

fn accept(core: &mut Core, stream: UnixStream) {
    if core.control.open.len() >= MAX_CONNECTIONS {
        core.control.refused += 1;
        if core.control.refused % 100 == 1 {
            tracing::warn!(
                limit = MAX_CONNECTIONS,
                refused = core.control.refused,
                "control socket: too many connections, refusing"
            );
        }
        return;
    }
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let id = core.control.next_id;
    core.control.next_id += 1;
    let stream = Rc::new(stream);
    let source = Generic::new(stream.clone(), Interest::READ, Mode::Level);
    let token = core.loop_handle.insert_source(source, move |_, _, state| {
        readable(state, id);
        Ok(PostAction::Continue)
    });
    match token {
        Ok(read) => {
            let conn = Connection {
                stream,
                read,
                write: None,
                input: Vec::new(),
                output: Vec::new(),
                waiting: false,
                resume_scheduled: false,
                reading: true,
                window: Instant::now(),
                answered: 0,
                rate_paused: false,
            };
            core.control.open.insert(id, conn);
        }
        Err(err) => tracing::warn!(%err, "cannot serve a control connection"),
    }
}

fn close(core: &mut Core, id: u64) {
    if let Some(conn) = core.control.open.remove(&id) {
        core.loop_handle.remove(conn.read);
        if let Some(w) = conn.write {
            core.loop_handle.remove(w);
        }
    }
}

/// The peer sent something (or hung up).
fn readable(state: &mut State, id: u64) {
    let Some(conn) = state.core.control.open.get_mut(&id) else { return };
    let mut buf = [0u8; 4096];
    let mut reader: &UnixStream = &conn.stream;
    match reader.read(&mut buf) {
        Ok(0) => return close(&mut state.core, id),
        Ok(n) => conn.input.extend_from_slice(&buf[..n]),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
        Err(_) => return close(&mut state.core, id),
    }
    answer(state, id);
    // A backlog of complete requests not yet answered: nothing more is read until it is (it
    // stays under a request line's length).
    if state.core.control.open.get(&id).is_some_and(|c| c.input.len() >= MAX_LINE && c.input.contains(&b'\n')) {
        set_reading(&mut state.core, id, false);
    }
}

/// Read the connection's socket, or stop reading it for now.
fn set_reading(core: &mut Core, id: u64, on: bool) {
    let Some(conn) = core.control.open.get_mut(&id) else { return };
    if conn.reading == on {
        return;
    }
    conn.reading = on;
    let done = if on { core.loop_handle.enable(&conn.read) } else { core.loop_handle.disable(&conn.read) };
    if let Err(err) = done {
        tracing::warn!(%err, "control connection: cannot change its reading; closing it");
        close(core, id);
    }
}

/// Whether connection `id` may have another request answered in this second; if not, it waits
/// for the next one (once per second at most, and said once per connection).
fn within_rate(core: &mut Core, id: u64) -> bool {
    let Some(conn) = core.control.open.get_mut(&id) else { return false };
    let now = Instant::now();
    if now.saturating_duration_since(conn.window) >= Duration::from_secs(1) {
        conn.window = now;
        conn.answered = 0;
    }
    if conn.answered < RATE {
        conn.answered += 1;
        return true;
    }
    if conn.rate_paused {
        return false;
    }
    conn.rate_paused = true;
    let resume_at = conn.window + Duration::from_secs(1);
    core.control.rate_limited += 1;
    if core.control.rate_limited == 1 || core.control.rate_limited % 100 == 0 {
        tracing::warn!(
            limit = RATE,
            times = core.control.rate_limited,
            "control connection over its request rate: slowed down"
        );
    }
    set_reading(core, id, false);
    let armed = core.loop_handle.insert_source(Timer::from_deadline(resume_at), move |_, _, state| {
        if let Some(conn) = state.core.control.open.get_mut(&id) {
            conn.rate_paused = false;
            answer(state, id);
        }
        TimeoutAction::Drop
    });
    if armed.is_err() {
        close(core, id);
    }
    false
}

/// Answer up to a batch of the connection's complete lines; the rest wait for the next turn.
fn answer(state: &mut State, id: u64) {
    for _ in 0..BATCH {
        let Some(conn) = state.core.control.open.get_mut(&id) else { return };
        if conn.waiting {
            return;
        }
        let Some(end) = conn.input.iter().position(|&b| b == b'\n') else {
            if conn.input.len() > MAX_LINE {
                let reply = Reply::err(format!("malformed request: longer than {MAX_LINE} bytes"));
                queue_reply(&mut state.core, id, &reply);
                flush(&mut state.core, id);
                close(&mut state.core, id);
            }
            return;
        };
        if !within_rate(&mut state.core, id) {
            return;
        }
        let Some(conn) = state.core.control.open.get_mut(&id) else { return };
        let line: Vec<u8> = conn.input.drain(..=end).collect();
        let reply = match std::str::from_utf8(&line[..line.len() - 1]) {
            Ok(text) => handle_line(state, id, text.trim()),
            Err(_) => Some(Reply::err("malformed request: not UTF-8")),
        };
        match reply {
            Some(reply) => {
                queue_reply(&mut state.core, id, &reply);
                if !flush(&mut state.core, id) {
                    return;
                }
            }
            // Answered later (see `deliver`); nothing after it is answered before.
            None => return,
        }
    }
    resume_later(&mut state.core, id);
    // The backlog answered down to half a line's worth: read again.
    if state.core.control.open.get(&id).is_some_and(|c| !c.rate_paused && c.input.len() < MAX_LINE / 2) {
        set_reading(&mut state.core, id, true);
    }
}

/// Answer the connection's remaining complete lines at the next turn of the loop.
fn resume_later(core: &mut Core, id: u64) {
    let Some(conn) = core.control.open.get_mut(&id) else { return };
    if conn.input.contains(&b'\n') && !conn.resume_scheduled {
        conn.resume_scheduled = true;
        core.defer(move |state| {
            if let Some(conn) = state.core.control.open.get_mut(&id) {
                conn.resume_scheduled = false;
            }
            answer(state, id);
        });
    }
}

fn queue_reply(core: &mut Core, id: u64, reply: &Reply) {
    let Some(conn) = core.control.open.get_mut(&id) else { return };
    let mut line = serde_json::to_vec(reply).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    line.push(b'\n');
    conn.output.extend_from_slice(&line);
}

/// Write what the peer will take now. Returns false when the connection was dropped (its peer
/// left, or does not read its replies).
fn flush(core: &mut Core, id: u64) -> bool {
    let Some(conn) = core.control.open.get_mut(&id) else { return false };
    let mut writer: &UnixStream = &conn.stream;
    while !conn.output.is_empty() {
        match writer.write(&conn.output) {
            Ok(0) => break,
            Ok(n) => {
                conn.output.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => {
                close(core, id);
                return false;
            }
        }
    }
    if conn.output.len() > MAX_UNREAD {
        core.control.dropped_unread += 1;
        tracing::warn!(
            unread = conn.output.len(),
            limit = MAX_UNREAD,
            "control connection dropped: it does not read its replies"
        );
        close(core, id);
        return false;
    }
    match (conn.output.is_empty(), conn.write) {
        (true, Some(token)) => {
            conn.write = None;
            core.loop_handle.remove(token);
        }
        (false, None) => {
            // The peer reads slowly: wait for its socket to take more (a duplicate descriptor,
            // as epoll takes each descriptor once).
            let Ok(dup) = conn.stream.try_clone() else {
                close(core, id);
                return false;
            };
            let token =
                core.loop_handle.insert_source(Generic::new(dup, Interest::WRITE, Mode::Level), move |_, _, state| {
                    flush(&mut state.core, id);
                    Ok(PostAction::Continue)
                });
            match token {
                Ok(token) => {
                    if let Some(conn) = core.control.open.get_mut(&id) {
                        conn.write = Some(token);
                    }
                }
                Err(_) => {
                    close(core, id);
                    return false;
                }
            }
        }
        _ => {}
    }
    true
}

/// A reply made off the loop arrived: send it, then go on with the connection's requests.
pub fn deliver(state: &mut State, id: u64, reply: Reply) {
    let Some(conn) = state.core.control.open.get_mut(&id) else { return };
    conn.waiting = false;
    queue_reply(&mut state.core, id, &reply);
    if flush(&mut state.core, id) {
        resume_later(&mut state.core, id);
    }
}

/// Answer one request line of connection `id`; `None`: the reply comes later (`deliver`).
pub fn handle_line(state: &mut State, id: u64, line: &str) -> Option<Reply> {
    match parse_request(line) {
        Ok(request) => {
            tracing::debug!(?request, "control request");
            handle(state, id, request)
        }
        Err(err) => {
            tracing::warn!(%err, "control socket");
            Some(Reply::err(err))
        }
    }
}

/// Open the file a screenshot goes to: only a regular file (created if missing). A FIFO, a
/// device or a directory is refused without blocking (a FIFO opened for writing would wait for a
/// reader).
pub fn open_image_file(path: &Path) -> Result<std::fs::File, String> {
    if !path.is_absolute() {
        return Err(format!("{}: the path must be absolute", path.display()));
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENXIO) => format!("{}: is a FIFO, not a regular file", path.display()),
            Some(libc::EISDIR) => format!("{}: is a directory, not a regular file", path.display()),
            _ => format!("{}: {e}", path.display()),
        })?;
    let meta = file.metadata().map_err(|e| format!("{}: {e}", path.display()))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_dir() {
            "a directory"
        } else {
            "not a plain file"
        };
        return Err(format!("{}: is {what}, not a regular file", path.display()));
    }
    // Back to blocking for the writer thread; the file is emptied only now that it is known to
    // be a regular file.
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, 0) };
    file.set_len(0).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(file)
}

/// Encode `image` as PNG and write it to `file` on a thread of its own; `done` runs on the loop
/// with the outcome.
pub fn write_png_off_thread(
    core: &mut Core,
    image: RgbaImage,
    file: std::fs::File,
    path: PathBuf,
    done: impl FnOnce(&mut State, Result<(), String>) + Send + 'static,
) {
    let tasks = core.tasks.clone();
    let spawned = std::thread::Builder::new().name("vitrine-png".into()).spawn(move || {
        let result = image.write_png(file).map_err(|e| format!("{}: {e}", path.display()));
        let _ = tasks.send(Box::new(move |state: &mut State| done(state, result)));
    });
    if let Err(err) = spawned {
        tracing::error!(%err, "cannot start a thread to write a PNG");
    }
}

fn handle(state: &mut State, id: u64, request: Request) -> Option<Reply> {
    Some(match request {
        Request::Version => Reply::ok(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "backend": state.backend.name(),
            "wayland_display": state.core.socket_name,
        })),
        Request::Outputs => Reply::ok(json!({ "outputs": outputs(state) })),
        Request::Clients => Reply::ok(json!({ "clients": clients(state) })),
        Request::Screenshot { output, path } => {
            let file = match open_image_file(&path) {
                Ok(file) => file,
                Err(err) => return Some(Reply::err(err)),
            };
            // Replies stay in order: the connection's next requests wait for this one.
            if let Some(conn) = state.core.control.open.get_mut(&id) {
                conn.waiting = true;
            }
            state.screenshot(
                output.as_deref(),
                Box::new(move |state, result| {
                    let (output, image) = match result {
                        Ok(shot) => shot,
                        Err(err) => return deliver(state, id, Reply::err(err)),
                    };
                    let data = json!({
                        "output": output.name(),
                        "path": path,
                        "width": image.width,
                        "height": image.height,
                    });
                    write_png_off_thread(&mut state.core, image, file, path.clone(), move |state, result| {
                        let reply = match result {
                            Ok(()) => Reply::ok(data),
                            Err(err) => Reply::err(err),
                        };
                        deliver(state, id, reply);
                    });
                }),
            );
            return None;
        }
        Request::Stats => Reply::ok(stats(state)),
        Request::Planes => Reply::ok(planes(state)),
        Request::Reload => match state.reload_config() {
            Ok(report) => {
                tracing::info!(%report, "configuration reloaded");
                Reply::ok(json!({ "report": report }))
            }
            Err(err) => {
                tracing::error!(%err, "configuration not reloaded: keeping the running one");
                Reply::err(format!("configuration not reloaded, the running one is kept: {err}"))
            }
        },
        Request::Play { path } => {
            let path = if path.is_relative() { std::env::current_dir().unwrap_or_default().join(path) } else { path };
            if !path.is_file() {
                return Some(Reply::err(format!("{}: no such file", path.display())));
            }
            let waker = state.core.video_waker.clone();
            let player = state.core.player.get_or_insert_with(|| {
                let mut p = crate::video::player::Player::new(Vec::new(), false);
                if let Some(w) = waker {
                    p.set_waker(w);
                }
                p
            });
            if !player.has_audio() {
                player.set_audio(crate::audio::Audio::start(&state.core.config.audio));
            }
            player.play_now(path.clone());
            state.core.video_woken();
            Reply::ok(json!({ "playing": path }))
        }
        Request::Pause | Request::Resume | Request::Next | Request::Status => {
            let Some(player) = state.core.player.as_mut() else {
                return Some(Reply::err("no video is playing (start one with --play or `vitrine msg play FILE`)"));
            };
            match request {
                Request::Pause => player.pause(),
                Request::Resume => player.resume(),
                Request::Next => player.next(),
                _ => {}
            }
            let mut status = serde_json::to_value(player.status()).unwrap_or_default();
            status["audio"] = player.audio().map(|a| a.status()).unwrap_or(Value::Null);
            state.core.video_woken();
            status["tv"] = json!(state.core.cec.states());
            Reply::ok(status)
        }
        Request::Volume { percent, muted } => {
            let Some(audio) = state.core.player.as_mut().and_then(|p| p.audio_mut()) else {
                return Some(Reply::err("sound is off: set [audio] enabled = true in the configuration"));
            };
            if let Some(p) = percent {
                if p > 100 {
                    return Some(Reply::err(format!("volume {p}: it is a percentage, 0 to 100")));
                }
                audio.set_volume(p);
            }
            if let Some(m) = muted {
                audio.set_muted(m);
            }
            Reply::ok(audio.status())
        }
        Request::Display { on } => {
            state.set_displays(on);
            Reply::ok(json!({ "on": state.core.displays_on, "tv": state.core.cec.states() }))
        }
        Request::Quit => {
            tracing::info!("quit requested over the control socket");
            state.core.quit(0);
            Reply::ok(json!({}))
        }
    })
}

/// The lit outputs, then the displays a client turned off (output management).
fn outputs(state: &State) -> Vec<Value> {
    let off = state.backend.heads(&state.core).into_iter().filter(|h| h.lit.is_none()).map(|h| {
        json!({ "name": h.name, "enabled": false, "modes": h.modes.iter().map(|m| m.describe()).collect::<Vec<_>>() })
    });
    state
        .core
        .outputs
        .iter()
        .map(|o| {
            let mode = o.current_mode();
            let loc = o.current_location();
            let logical = state.core.space.output_geometry(o).map(|g| [g.size.w, g.size.h]);
            let rotation = u32::from(crate::rotation::Rotation::from_transform(o.current_transform()));
            json!({
                "name": o.name(),
                "make": o.physical_properties().make,
                "model": o.physical_properties().model,
                "width": mode.map(|m| m.size.w),
                "height": mode.map(|m| m.size.h),
                "refresh_mhz": mode.map(|m| m.refresh),
                "x": loc.x,
                "y": loc.y,
                "scale": o.current_scale().fractional_scale(),
                // How the panel is turned, and the upright size clients see.
                "rotation": rotation,
                "logical_size": logical,
                "power": if state.core.displays_on { "on" } else { "off" },
                // The TV behind the output, as HDMI-CEC reports it.
                "cec": state.core.cec.states().into_iter().find(|a| a.output.as_deref() == Some(o.name().as_str())),
                "enabled": true,
            })
        })
        .chain(off)
        .collect()
}

fn clients(state: &State) -> Vec<Value> {
    let mut by_client: Vec<(Option<i32>, String, Vec<Value>)> = Vec::new();
    for window in &state.core.kiosk.stack {
        let Some(toplevel) = window.toplevel() else {
            continue;
        };
        let surface = toplevel.wl_surface();
        let (app_id, title) = with_states(surface, |states| {
            states
                .data_map
                .get::<XdgToplevelSurfaceData>()
                .and_then(|d| d.lock().ok().map(|d| (d.app_id.clone(), d.title.clone())))
                .unwrap_or_default()
        });
        let client = state.core.display_handle.get_client(surface.id()).ok();
        let pid = client.as_ref().and_then(|c| c.get_credentials(&state.core.display_handle).ok()).map(|c| c.pid);
        let key = client.map(|c| format!("{:?}", c.id())).unwrap_or_default();
        let geo = window.geometry();
        let entry = json!({
            "surface": surface.id().to_string(),
            "app_id": app_id,
            "title": title,
            "output": crate::kiosk::window_output(window),
            "size": [geo.size.w, geo.size.h],
            "focused": state.core.seat.get_keyboard().and_then(|k| k.current_focus()).as_ref() == Some(surface),
        });
        match by_client.iter_mut().find(|(_, k, _)| *k == key) {
            Some((_, _, surfaces)) => surfaces.push(entry),
            None => by_client.push((pid, key, vec![entry])),
        }
    }
    by_client.into_iter().map(|(pid, _, surfaces)| json!({ "pid": pid, "surfaces": surfaces })).collect()
}

/// Display-path counters since start (DRM backend); other backends report what they have. Every
/// backend reports its frame cycle: repaints run, and frames presented per output.
/// The `stats` document (also what the metrics endpoint exposes).
pub fn stats(state: &State) -> Value {
    let mut v = match &state.backend {
        crate::backend::Backend::Drm(d) => {
            let mut v = serde_json::to_value(&d.stats).unwrap_or_default();
            v["renderer"] = json!(d.renderer_name());
            v["held"] = d.held();
            v
        }
        _ => json!({}),
    };
    v["backend"] = json!(state.backend.name());
    let outputs: Vec<Value> = state
        .core
        .outputs
        .iter()
        .map(|o| json!({ "name": o.name(), "presented": state.core.frames.get(o).map(|f| f.presented) }))
        .collect();
    v["frames"] = json!({ "repaints": state.core.frames.repaints, "outputs": outputs });
    // Output management: configurations applied and refused (by clients and reloads alike).
    v["output_configurations"] = json!({
        "applied": state.core.output_management.applied,
        "refused": state.core.output_management.refused,
    });
    v["control"] = json!({
        "connections": state.core.control.len(),
        "refused": state.core.control.refused,
        "dropped_unread": state.core.control.dropped_unread,
        "rate_limited": state.core.control.rate_limited,
    });
    v["process"] = json!({
        "accept_pauses": state.core.accept_pauses,
    });
    if let Some(video) = state.video_report() {
        v["video"] = video;
    }
    v
}

/// Per output, each layer with the plane it is on, or composited and why.
fn planes(state: &State) -> Value {
    let outputs: Vec<Value> = state
        .core
        .outputs
        .iter()
        .map(|o| {
            let layers = match &state.backend {
                crate::backend::Backend::Drm(d) => d
                    .heads()
                    .iter()
                    .find(|h| &h.output == o)
                    .map(|h| serde_json::to_value(&h.report).unwrap_or_default())
                    .unwrap_or_default(),
                other => {
                    let why = format!("the {} backend has no hardware planes", other.name());
                    let scene = state.core.scene_for_output(o);
                    Value::Array(
                        scene
                            .windows()
                            .map(|w| {
                                let size = w.geometry().size;
                                json!({
                                    "source": "client",
                                    "name": w.toplevel().and_then(|t| crate::kiosk::app_id(t.wl_surface())),
                                    "format": null, "modifier": null,
                                    "size": [size.w, size.h],
                                    "plane": null, "composited": true, "reason": why,
                                })
                            })
                            .collect(),
                    )
                }
            };
            json!({ "name": o.name(), "layers": layers })
        })
        .collect();
    json!({ "outputs": outputs })
}
