//! Input devices through libinput (keyboards, touchscreens, pointers) for the DRM backend.
//! Devices are opened directly, as the direct session does; hot-plugged devices come and go
//! with udev.

use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use smithay::backend::input::InputEvent;
use smithay::backend::libinput::{LibinputInputBackend, LibinputSessionInterface};
use smithay::reexports::input::{Libinput, LibinputInterface};

use crate::state::State;

/// Opens input devices with vitrine's own rights (root, or a user in the `input` group).
struct DirectInterface;

impl LibinputInterface for DirectInterface {
    fn open_restricted(&mut self, path: &Path, flags: i32) -> Result<OwnedFd, i32> {
        let access = flags & libc::O_ACCMODE;
        std::fs::OpenOptions::new()
            .custom_flags(flags & !libc::O_ACCMODE)
            .read(access == libc::O_RDONLY || access == libc::O_RDWR)
            .write(access == libc::O_WRONLY || access == libc::O_RDWR)
            .open(path)
            .map(OwnedFd::from)
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
    }

    fn close_restricted(&mut self, fd: OwnedFd) {
        drop(fd);
    }
}

/// Watch seat0's input devices; events go to `State::handle_input`.
pub fn start(state: &mut State) -> Result<(), String> {
    let seat = match &state.backend {
        crate::backend::Backend::Drm(d) => d.seat_session(),
        _ => None,
    };
    let (mut libinput, seat_name) = match seat {
        Some(session) => {
            let name = smithay::backend::session::Session::seat(&session);
            (Libinput::new_with_udev(LibinputSessionInterface::from(session)), name)
        }
        None => (Libinput::new_with_udev(DirectInterface), "seat0".to_string()),
    };
    libinput.udev_assign_seat(&seat_name).map_err(|()| format!("libinput cannot use udev {seat_name}"))?;
    if let crate::backend::Backend::Drm(d) = &mut state.backend {
        d.libinput = Some(libinput.clone());
    }
    let backend = LibinputInputBackend::new(libinput);
    state
        .core
        .loop_handle
        .insert_source(backend, |event, _, state| match event {
            InputEvent::DeviceAdded { device } => {
                use smithay::backend::input::Device as _;
                // SAFETY: the udev context is libinput's own (new_with_udev).
                let output = unsafe { device.udev_device() }
                    .and_then(|d| d.property_value("WL_OUTPUT").map(|v| v.to_string_lossy().into_owned()));
                tracing::info!(device = %device.name(), output = ?output, "input device added");
                if let Some(output) = output {
                    state.core.kiosk.device_outputs.insert(device.id(), output);
                }
            }
            InputEvent::DeviceRemoved { device } => {
                use smithay::backend::input::Device as _;
                state.core.kiosk.device_outputs.remove(&device.id());
                tracing::info!(device = %device.name(), "input device removed")
            }
            other => state.handle_input(other),
        })
        .map_err(|e| format!("cannot watch input devices: {e}"))?;
    Ok(())
}
