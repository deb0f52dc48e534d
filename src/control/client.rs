//! `vitrine msg`: send one request to a running vitrine and print the reply.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::protocol::{Reply, Request};
use crate::cli::{MsgArgs, MsgCommand};

/// Find the control socket: `--socket`, `$VITRINE_SOCKET`, the one of `$WAYLAND_DISPLAY`, or the
/// only one in `$XDG_RUNTIME_DIR`.
pub fn find_socket(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os("VITRINE_SOCKET").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let dir = super::runtime_dir()?;
    if let Some(display) = std::env::var_os("WAYLAND_DISPLAY") {
        let path = super::socket_path(&dir, &display.to_string_lossy());
        if path.exists() {
            return Ok(path);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name.starts_with("vitrine-") && name.ends_with(".sock")
        })
        .collect();
    match found.len() {
        0 => Err(format!("no running vitrine: no vitrine-*.sock in {}", dir.display())),
        1 => Ok(found.remove(0)),
        _ => Err(format!(
            "several vitrine instances are running; pick one with --socket: {}",
            found.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Send a request and wait for its reply.
pub fn request(socket: &Path, request: &Request) -> Result<Reply, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    let mut line = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    line.push(b'\n');
    stream.write_all(&line).map_err(|e| format!("{}: {e}", socket.display()))?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply).map_err(|e| format!("{}: {e}", socket.display()))?;
    serde_json::from_str(&reply).map_err(|e| format!("unexpected reply from {}: {e}", socket.display()))
}

/// Run `vitrine msg`; returns the process exit code.
pub fn run(args: MsgArgs) -> i32 {
    let req = match args.request {
        MsgCommand::Version => Request::Version,
        MsgCommand::Outputs => Request::Outputs,
        MsgCommand::Clients => Request::Clients,
        MsgCommand::Quit => Request::Quit,
        MsgCommand::Stats => Request::Stats,
        MsgCommand::Planes => Request::Planes,
        MsgCommand::Reload => Request::Reload,
        MsgCommand::Pause => Request::Pause,
        MsgCommand::Resume => Request::Resume,
        MsgCommand::Next => Request::Next,
        MsgCommand::Status => Request::Status,
        MsgCommand::Display { state } => Request::Display { on: state == "on" },
        MsgCommand::Volume { level } => match level.as_str() {
            "mute" => Request::Volume { percent: None, muted: Some(true) },
            "unmute" => Request::Volume { percent: None, muted: Some(false) },
            n => match n.trim_end_matches('%').parse::<u8>() {
                Ok(p) if p <= 100 => Request::Volume { percent: Some(p), muted: None },
                _ => {
                    eprintln!("vitrine msg volume: {level:?} is neither a percentage (0 to 100), mute nor unmute");
                    return 2;
                }
            },
        },
        MsgCommand::Play { file } => Request::Play { path: std::path::absolute(&file).unwrap_or(file) },
        MsgCommand::Screenshot { output, file } => {
            let path = if file.is_absolute() {
                file
            } else {
                match std::env::current_dir() {
                    Ok(cwd) => cwd.join(file),
                    Err(e) => {
                        eprintln!("vitrine msg: {e}");
                        return 1;
                    }
                }
            };
            Request::Screenshot { output, path }
        }
    };
    let socket = match find_socket(args.socket.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vitrine msg: {e}");
            return 1;
        }
    };
    let reply = match request(&socket, &req) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vitrine msg: {e}");
            return 1;
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply).unwrap_or_default());
    } else if let Some(err) = &reply.error {
        eprintln!("vitrine msg: {err}");
    } else {
        print!("{}", human(&req, reply.data.as_ref().unwrap_or(&Value::Null)));
    }
    if reply.ok {
        0
    } else {
        1
    }
}

/// The human-readable form of a reply.
pub fn human(req: &Request, data: &Value) -> String {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let mut out = String::new();
    match req {
        Request::Version => {
            out += &format!(
                "vitrine {} ({} backend, {})\n",
                s(&data["version"]),
                s(&data["backend"]),
                s(&data["wayland_display"])
            );
        }
        Request::Outputs => {
            for o in data["outputs"].as_array().into_iter().flatten() {
                if o["enabled"] == false {
                    out += &format!("{}: off (turned off by a client)\n", s(&o["name"]));
                    continue;
                }
                let hz = o["refresh_mhz"].as_f64().unwrap_or(0.0) / 1000.0;
                let turned =
                    o["rotation"].as_u64().filter(|r| *r != 0).map(|r| format!(", turned {r}°")).unwrap_or_default();
                out += &format!(
                    "{}: {}x{} @ {:.2} Hz at {},{}{turned} ({} {})\n",
                    s(&o["name"]),
                    s(&o["width"]),
                    s(&o["height"]),
                    hz,
                    s(&o["x"]),
                    s(&o["y"]),
                    s(&o["make"]),
                    s(&o["model"])
                );
            }
        }
        Request::Clients => {
            let clients = data["clients"].as_array().cloned().unwrap_or_default();
            if clients.is_empty() {
                out += "no clients with windows\n";
            }
            for c in clients {
                out += &format!("client pid {}\n", s(&c["pid"]));
                for surf in c["surfaces"].as_array().into_iter().flatten() {
                    out += &format!(
                        "  {} app_id={} title={} output={} size={}{}\n",
                        s(&surf["surface"]),
                        s(&surf["app_id"]),
                        s(&surf["title"]),
                        s(&surf["output"]),
                        surf["size"],
                        if surf["focused"].as_bool() == Some(true) { " (focused)" } else { "" }
                    );
                }
            }
        }
        Request::Screenshot { .. } => {
            out += &format!(
                "{}: {}x{} written to {}\n",
                s(&data["output"]),
                s(&data["width"]),
                s(&data["height"]),
                s(&data["path"])
            );
        }
        Request::Stats => {
            if let Some(map) = data.as_object() {
                for (k, v) in map {
                    match v.as_object() {
                        Some(inner) => {
                            out += &format!("{k}:\n");
                            for (k, v) in inner {
                                out += &format!("  {k}: {}\n", s(v));
                            }
                        }
                        None => out += &format!("{k}: {}\n", s(v)),
                    }
                }
            }
        }
        Request::Play { .. } => out += &format!("playing {}\n", s(&data["playing"])),
        Request::Pause | Request::Resume | Request::Next | Request::Status => {
            if let Some(map) = data.as_object() {
                for (k, v) in map {
                    out += &format!("{k}: {}\n", s(v));
                }
            }
        }
        Request::Planes => {
            for o in data["outputs"].as_array().into_iter().flatten() {
                out += &format!("{}:\n", s(&o["name"]));
                for l in o["layers"].as_array().into_iter().flatten() {
                    let place = match l["plane"].as_u64() {
                        Some(p) => format!("plane {p}"),
                        None => format!("composited: {}", s(&l["reason"])),
                    };
                    out += &format!(
                        "  {} {} {} {} {}\n",
                        s(&l["source"]),
                        s(&l["name"]),
                        s(&l["format"]),
                        l["size"],
                        place
                    );
                }
            }
        }
        Request::Reload => out += &format!("{}\n", s(&data["report"])),
        Request::Display { .. } => {
            out += &format!("displays {}\n", if data["on"].as_bool() == Some(true) { "on" } else { "off" });
            for tv in data["tv"].as_array().into_iter().flatten() {
                out += &format!("  {} ({}): TV {}\n", s(&tv["output"]), s(&tv["device"]), s(&tv["tv_power"]));
            }
        }
        Request::Volume { .. } => {
            let muted = if data["muted"].as_bool() == Some(true) { " (muted)" } else { "" };
            out += &format!("volume {}%{muted} on {}\n", data["volume"], s(&data["device"]));
        }
        Request::Quit => out += "vitrine is stopping\n",
    }
    out
}
