//! The control socket: `$XDG_RUNTIME_DIR/vitrine-<WAYLAND_DISPLAY>.sock`, mode 0600, one JSON
//! request per line, one JSON reply per line.

pub mod client;
pub mod protocol;
pub mod server;

use std::path::{Path, PathBuf};

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
