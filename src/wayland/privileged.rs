//! Privileged protocols: the ones that let a client act as the person at the kiosk (type keys
//! into any window; read the screen, change the outputs). Their globals are seen only by
//! the kiosk app vitrine launched (and what it starts in its own process group) and by clients
//! whose executable `[security] privileged_clients` lists. Decided once, when a client connects:
//! a reloaded list applies to clients that connect after it.

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use smithay::reexports::wayland_protocols_misc::zwp_virtual_keyboard_v1::server::zwp_virtual_keyboard_manager_v1::ZwpVirtualKeyboardManagerV1;
use smithay::reexports::wayland_protocols_misc::zwp_virtual_keyboard_v1::server::zwp_virtual_keyboard_v1::{
    self, ZwpVirtualKeyboardV1,
};
use smithay::reexports::wayland_server::backend::ClientId;
use smithay::reexports::wayland_server::{delegate_dispatch, delegate_global_dispatch, Client, DataInit, Dispatch};
use smithay::reexports::wayland_server::{DisplayHandle, Resource};
use smithay::wayland::virtual_keyboard::{
    VirtualKeyboardManagerGlobalData, VirtualKeyboardManagerState, VirtualKeyboardUserData,
};

use crate::config::SecurityConfig;
use crate::state::{ClientState, State};

/// The protocols only privileged clients see (the README lists them).
pub const PROTOCOLS: &[&str] = &[
    "zwp_virtual_keyboard_manager_v1",
    "zwp_input_method_manager_v2",
    "zwlr_virtual_pointer_manager_v1",
    "zwlr_screencopy_manager_v1",
    "zwlr_output_manager_v1",
];

/// The largest keymap a virtual keyboard may upload (a full XKB keymap is about 60 KiB).
pub const KEYMAP_BYTES: usize = 1 << 20;

/// Whether the client with process `pid` (`command` for the log) is privileged: it is in the
/// process group of the kiosk app (`app`, which leads its group), or its executable is listed.
pub fn decide(pid: i32, command: &str, security: &SecurityConfig, app: Option<u32>) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: getpgid only reads the process table.
    let group = unsafe { libc::getpgid(pid) };
    let in_app = app.is_some_and(|app| group > 0 && group as u32 == app);
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let listed = exe.as_deref().is_some_and(|exe| listed(exe, &security.privileged_clients));
    if in_app || listed {
        let why = if in_app { "the kiosk app's process group" } else { "security.privileged_clients" };
        tracing::info!(client = pid, command, exe = ?exe, why, "privileged client: it sees the privileged protocols");
    }
    in_app || listed
}

/// Whether `exe` is one of `paths`, directly or through a symbolic link.
fn listed(exe: &Path, paths: &[String]) -> bool {
    paths.iter().any(|p| {
        let p = Path::new(p);
        p == exe || std::fs::canonicalize(p).is_ok_and(|real| real == exe)
    })
}

/// The filter of every privileged global.
pub fn is_privileged(client: &Client) -> bool {
    client.get_data::<ClientState>().is_some_and(|d| d.privileged)
}

/// A copy of a client's keymap in a file of vitrine's own, at most `KEYMAP_BYTES`, and its size.
/// The keymap is read, not mapped: a file shorter than the size it was sent with, or one the
/// client shrinks afterwards, would kill a process that maps it (SIGBUS) when it reads past the
/// end. The copy ends with exactly one NUL, which smithay's keymap reader takes for granted: wvkbd
/// sends its keymap without one (its last brace was cut off), and a size of 0 would underflow.
fn copy_keymap(fd: OwnedFd, size: u32) -> Result<(OwnedFd, u32), String> {
    let size = size as usize;
    if size > KEYMAP_BYTES {
        return Err(format!("a keymap of {size} bytes (at most {KEYMAP_BYTES})"));
    }
    let mut text = vec![0u8; size];
    std::fs::File::from(fd)
        .read_exact_at(&mut text, 0)
        .map_err(|e| format!("a keymap of {size} bytes that cannot be read: {e}"))?;
    // SAFETY: memfd_create takes a NUL-terminated name and returns a new descriptor or -1.
    let raw = unsafe { libc::memfd_create(c"vitrine-virtual-keymap".as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(format!("cannot copy the keymap: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `raw` was just created and is owned by nothing else.
    let mut copy = unsafe { std::fs::File::from_raw_fd(raw) };
    let end = text.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    text.truncate(end);
    text.push(0);
    copy.write_all(&text).map_err(|e| format!("cannot copy the keymap: {e}"))?;
    Ok((copy.into(), text.len() as u32))
}

// zwp_virtual_keyboard_v1: its keymap is copied (see `copy_keymap`), then smithay handles it.
impl Dispatch<ZwpVirtualKeyboardV1, VirtualKeyboardUserData<State>> for State {
    fn request(
        state: &mut State,
        client: &Client,
        resource: &ZwpVirtualKeyboardV1,
        request: zwp_virtual_keyboard_v1::Request,
        data: &VirtualKeyboardUserData<State>,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        let request = match request {
            zwp_virtual_keyboard_v1::Request::Keymap { format, fd, size } => match copy_keymap(fd, size) {
                Ok((fd, size)) => zwp_virtual_keyboard_v1::Request::Keymap { format, fd, size },
                Err(err) => {
                    let pid = client.get_data::<ClientState>().map_or(0, |d| d.pid);
                    tracing::warn!(client = pid, %err, "virtual keyboard refused");
                    resource.post_error(zwp_virtual_keyboard_v1::Error::NoKeymap, format!("vitrine: {err}"));
                    return;
                }
            },
            other => other,
        };
        <VirtualKeyboardManagerState as Dispatch<ZwpVirtualKeyboardV1, VirtualKeyboardUserData<State>, State>>::request(
            state, client, resource, request, data, dh, init,
        );
    }

    fn destroyed(
        state: &mut State,
        client: ClientId,
        resource: &ZwpVirtualKeyboardV1,
        data: &VirtualKeyboardUserData<State>,
    ) {
        <VirtualKeyboardManagerState as Dispatch<ZwpVirtualKeyboardV1, VirtualKeyboardUserData<State>, State>>::destroyed(
            state, client, resource, data,
        )
    }
}

delegate_global_dispatch!(State: [ZwpVirtualKeyboardManagerV1: VirtualKeyboardManagerGlobalData] => VirtualKeyboardManagerState);
delegate_dispatch!(State: [ZwpVirtualKeyboardManagerV1: ()] => VirtualKeyboardManagerState);

#[cfg(test)]
mod tests {
    use super::*;

    fn memfd(bytes: &[u8]) -> OwnedFd {
        let raw = unsafe { libc::memfd_create(c"keymap-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(raw >= 0);
        let mut f = unsafe { std::fs::File::from_raw_fd(raw) };
        f.write_all(bytes).unwrap();
        f.into()
    }

    #[test]
    fn a_keymap_is_copied_whole_with_one_nul_and_a_short_or_huge_one_refused() {
        for sent in [&b"xkb_keymap {};"[..], b"xkb_keymap {};\0", b"xkb_keymap {};\0\0"] {
            let (copy, size) = copy_keymap(memfd(sent), sent.len() as u32).expect("copied");
            assert_eq!(size, 15);
            let mut back = vec![0u8; 15];
            std::fs::File::from(copy).read_exact_at(&mut back, 0).unwrap();
            assert_eq!(back, b"xkb_keymap {};\0");
        }
        assert_eq!(copy_keymap(memfd(b""), 0).unwrap().1, 1, "an empty keymap is one NUL");
        // Sent with a size past its end: refused, not mapped.
        let err = copy_keymap(memfd(b"short"), 4096).unwrap_err();
        assert!(err.contains("4096 bytes that cannot be read"), "{err}");
        let err = copy_keymap(memfd(b"x"), (KEYMAP_BYTES + 1) as u32).unwrap_err();
        assert!(err.contains("at most"), "{err}");
    }

    #[test]
    fn an_executable_is_listed_by_its_path_or_a_link_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, b"").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let real = std::fs::canonicalize(&real).unwrap();
        assert!(listed(&real, &[real.display().to_string()]));
        assert!(listed(&real, &[link.display().to_string()]));
        assert!(!listed(&real, &["/usr/bin/other".into()]));
        assert!(!listed(&real, &[]));
    }

    #[test]
    fn only_the_apps_group_or_a_listed_executable_is_privileged() {
        let me = std::process::id() as i32;
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let none = SecurityConfig::default();
        assert!(!decide(me, "test", &none, None));
        let group = unsafe { libc::getpgid(0) } as u32;
        assert!(decide(me, "test", &none, Some(group)), "in the app's process group");
        assert!(!decide(me, "test", &none, Some(group + 1)), "another group");
        let listing = SecurityConfig { privileged_clients: vec![exe.display().to_string()] };
        assert!(decide(me, "test", &listing, None));
        assert!(!decide(0, "unknown", &listing, Some(group)), "no pid: never");
    }
}
