//! The compositor side of the control socket, as calloop sources.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use smithay::reexports::calloop::generic::Generic;
use smithay::reexports::calloop::{Interest, Mode, PostAction};
use smithay::reexports::wayland_server::Resource;
use smithay::wayland::compositor::with_states;
use smithay::wayland::shell::xdg::XdgToplevelSurfaceData;

use super::protocol::{parse_request, Reply, Request};
use crate::state::State;

/// Longest request line accepted.
const MAX_LINE: usize = 64 * 1024;

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
pub fn start(state: &mut State, path: &Path) -> Result<ControlSocket, String> {
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
    state
        .loop_handle
        .insert_source(Generic::new(listener, Interest::READ, Mode::Level), |_, listener, state| {
            loop {
                match listener.accept() {
                    Ok((stream, _)) => serve_connection(state, stream),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => {
                        tracing::warn!(err = %e, "control socket accept failed");
                        break;
                    }
                }
            }
            Ok(PostAction::Continue)
        })
        .map_err(|e| format!("cannot watch the control socket: {e}"))?;
    Ok(ControlSocket { path: path.to_path_buf() })
}

fn serve_connection(state: &mut State, stream: UnixStream) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let mut pending: Vec<u8> = Vec::new();
    let result =
        state.loop_handle.insert_source(Generic::new(stream, Interest::READ, Mode::Level), move |_, stream, state| {
            let mut buf = [0u8; 4096];
            loop {
                let mut reader: &UnixStream = stream;
                match reader.read(&mut buf) {
                    Ok(0) => return Ok(PostAction::Remove),
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => return Ok(PostAction::Remove),
                }
            }
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let reply = match std::str::from_utf8(&line[..line.len() - 1]) {
                    Ok(text) => handle_line(state, text.trim()),
                    Err(_) => Reply::err("malformed request: not UTF-8"),
                };
                if send(stream, &reply).is_err() {
                    return Ok(PostAction::Remove);
                }
            }
            if pending.len() > MAX_LINE {
                let _ = send(stream, &Reply::err(format!("malformed request: longer than {MAX_LINE} bytes")));
                return Ok(PostAction::Remove);
            }
            Ok(PostAction::Continue)
        });
    if let Err(err) = result {
        tracing::warn!(%err, "cannot serve a control connection");
    }
}

fn send(stream: &UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    line.push(b'\n');
    // Replies are small; a client that does not read them within a second is dropped.
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    let mut writer: &UnixStream = stream;
    let result = writer.write_all(&line);
    stream.set_nonblocking(true)?;
    result
}

/// Answer one request line.
pub fn handle_line(state: &mut State, line: &str) -> Reply {
    match parse_request(line) {
        Ok(request) => {
            tracing::debug!(?request, "control request");
            handle(state, request)
        }
        Err(err) => {
            tracing::warn!(%err, "control socket");
            Reply::err(err)
        }
    }
}

fn handle(state: &mut State, request: Request) -> Reply {
    match request {
        Request::Version => Reply::ok(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "backend": state.backend.kind().name(),
            "wayland_display": state.socket_name,
        })),
        Request::Outputs => Reply::ok(json!({ "outputs": outputs(state) })),
        Request::Clients => Reply::ok(json!({ "clients": clients(state) })),
        Request::Screenshot { output, path } => {
            if !path.is_absolute() {
                return Reply::err(format!("{}: the path must be absolute", path.display()));
            }
            match state.screenshot(output.as_deref()) {
                Ok((output, image)) => match image.save_png(&path) {
                    Ok(()) => Reply::ok(json!({
                        "output": output.name(),
                        "path": path,
                        "width": image.width,
                        "height": image.height,
                    })),
                    Err(err) => Reply::err(err),
                },
                Err(err) => Reply::err(err),
            }
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
            let player = state.player.get_or_insert_with(|| crate::video::player::Player::new(Vec::new(), false));
            let path = if path.is_relative() { std::env::current_dir().unwrap_or_default().join(path) } else { path };
            if !path.is_file() {
                return Reply::err(format!("{}: no such file", path.display()));
            }
            player.play_now(path.clone());
            Reply::ok(json!({ "playing": path }))
        }
        Request::Pause | Request::Resume | Request::Next | Request::Status => {
            let Some(player) = state.player.as_mut() else {
                return Reply::err("no video is playing (start one with --play or `vitrine msg play FILE`)");
            };
            match request {
                Request::Pause => player.pause(),
                Request::Resume => player.resume(),
                Request::Next => player.next(),
                _ => {}
            }
            Reply::ok(serde_json::to_value(player.status()).unwrap_or_default())
        }
        Request::Quit => {
            tracing::info!("quit requested over the control socket");
            state.quit(0);
            Reply::ok(json!({}))
        }
    }
}

fn outputs(state: &State) -> Vec<Value> {
    state
        .outputs
        .iter()
        .map(|o| {
            let mode = o.current_mode();
            let loc = o.current_location();
            let logical = state.space.output_geometry(o).map(|g| [g.size.w, g.size.h]);
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
                "power": if state.displays_on { "on" } else { "off" },
            })
        })
        .collect()
}

fn clients(state: &State) -> Vec<Value> {
    let mut by_client: Vec<(Option<i32>, String, Vec<Value>)> = Vec::new();
    for window in &state.kiosk.stack {
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
        let client = state.display_handle.get_client(surface.id()).ok();
        let pid = client.as_ref().and_then(|c| c.get_credentials(&state.display_handle).ok()).map(|c| c.pid);
        let key = client.map(|c| format!("{:?}", c.id())).unwrap_or_default();
        let geo = window.geometry();
        let entry = json!({
            "surface": surface.id().to_string(),
            "app_id": app_id,
            "title": title,
            "output": crate::kiosk::window_output(window),
            "size": [geo.size.w, geo.size.h],
            "focused": state.seat.get_keyboard().and_then(|k| k.current_focus()).as_ref() == Some(surface),
        });
        match by_client.iter_mut().find(|(_, k, _)| *k == key) {
            Some((_, _, surfaces)) => surfaces.push(entry),
            None => by_client.push((pid, key, vec![entry])),
        }
    }
    by_client.into_iter().map(|(pid, _, surfaces)| json!({ "pid": pid, "surfaces": surfaces })).collect()
}

/// Display-path counters since start (DRM backend); other backends report what they have.
fn stats(state: &State) -> Value {
    match &state.backend {
        crate::backend::Backend::Drm(d) => {
            let mut v = serde_json::to_value(&d.stats).unwrap_or_default();
            v["backend"] = json!("drm");
            v["renderer"] = json!(d.renderer_name());
            if let Some(video) = state.video_report() {
                v["video"] = video;
            }
            v
        }
        other => {
            let mut v = json!({ "backend": other.kind().name() });
            if let Some(video) = state.video_report() {
                v["video"] = video;
            }
            v
        }
    }
}

/// Per output, each layer with the plane it is on, or composited and why.
fn planes(state: &State) -> Value {
    let outputs: Vec<Value> = state
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
                    let why = format!("the {} backend has no hardware planes", other.kind().name());
                    let scene = state.scene_for_output(o);
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
