//! The control socket: `$XDG_RUNTIME_DIR/vitrine-<WAYLAND_DISPLAY>.sock`, mode 0600, one JSON
//! request per line, one JSON reply per line.

pub mod client;
pub mod protocol;
pub mod server;

use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use smithay::reexports::calloop::RegistrationToken;

/// The control socket path for a Wayland socket name.
pub fn socket_path(runtime_dir: &Path, wayland_display: &str) -> PathBuf {
    runtime_dir.join(format!("vitrine-{wayland_display}.sock"))
}

pub fn runtime_dir() -> Result<PathBuf, String> {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| "XDG_RUNTIME_DIR is not set".to_string())
}

/// One control connection (served by `server`).
struct Connection {
    stream: Rc<UnixStream>,
    read: RegistrationToken,
    /// Registered while replies wait for the peer to read.
    write: Option<RegistrationToken>,
    input: Vec<u8>,
    output: Vec<u8>,
    /// A reply is being made off the loop; the requests after it wait (replies stay in order).
    waiting: bool,
    /// Lines are left to answer at the next turn of the loop.
    resume_scheduled: bool,
    /// The socket is being read (not while a backlog of requests waits, or over the rate).
    reading: bool,
    /// The second being counted for the request rate, and the requests answered in it.
    window: std::time::Instant,
    answered: u32,
    /// Over the rate: reading and answering wait for the next second.
    rate_paused: bool,
}

/// The open control connections.
#[derive(Default)]
pub struct Connections {
    open: HashMap<u64, Connection>,
    next_id: u64,
    /// Connections refused for being over `MAX_CONNECTIONS` (logged once per 100).
    pub refused: u64,
    /// Connections dropped because they did not read their replies.
    pub dropped_unread: u64,
    /// Times a connection went over `RATE` requests in a second and was made to wait.
    pub rate_limited: u64,
}

impl Connections {
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}
