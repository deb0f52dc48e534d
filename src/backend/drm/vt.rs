//! The VT vitrine runs on, in a direct session (root on a VT, no seatd/logind): graphics mode,
//! and process-controlled switching so vitrine drops DRM master when the user switches away and
//! restores the display when they come back.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;

const VT_GETSTATE: libc::c_ulong = 0x5603;
const VT_ACTIVATE: libc::c_ulong = 0x5606;
const VT_SETMODE: libc::c_ulong = 0x5602;
const VT_RELDISP: libc::c_ulong = 0x5605;
const KDSETMODE: libc::c_ulong = 0x4B3A;
const KD_TEXT: libc::c_ulong = 0;
const KD_GRAPHICS: libc::c_ulong = 1;
const VT_PROCESS: u8 = 1;
const VT_ACKACQ: libc::c_ulong = 2;

#[repr(C)]
struct VtMode {
    mode: u8,
    waitv: u8,
    relsig: i16,
    acqsig: i16,
    frsig: i16,
}

#[repr(C)]
#[derive(Default)]
struct VtStat {
    v_active: u16,
    v_signal: u16,
    v_state: u16,
}

/// The VT vitrine took over.
pub struct Vt {
    tty: File,
    pub number: u16,
}

impl Vt {
    /// Take the active VT: graphics mode, switching signalled with SIGUSR1 (release) and
    /// SIGUSR2 (acquire).
    pub fn take() -> Result<Vt, String> {
        let tty0 =
            OpenOptions::new().read(true).write(true).open("/dev/tty0").map_err(|e| format!("/dev/tty0: {e}"))?;
        let mut stat = VtStat::default();
        if unsafe { libc::ioctl(tty0.as_raw_fd(), VT_GETSTATE, &mut stat) } < 0 {
            return Err(format!("VT_GETSTATE: {}", std::io::Error::last_os_error()));
        }
        let path = format!("/dev/tty{}", stat.v_active);
        let tty = OpenOptions::new().read(true).write(true).open(&path).map_err(|e| format!("{path}: {e}"))?;
        let fd = tty.as_raw_fd();
        let mode =
            VtMode { mode: VT_PROCESS, waitv: 0, relsig: libc::SIGUSR1 as i16, acqsig: libc::SIGUSR2 as i16, frsig: 0 };
        unsafe {
            if libc::ioctl(fd, KDSETMODE, KD_GRAPHICS) < 0 {
                return Err(format!("{path}: KDSETMODE: {}", std::io::Error::last_os_error()));
            }
            if libc::ioctl(fd, VT_SETMODE, &mode) < 0 {
                libc::ioctl(fd, KDSETMODE, KD_TEXT);
                return Err(format!("{path}: VT_SETMODE: {}", std::io::Error::last_os_error()));
            }
        }
        crate::process::set_graphics_vt(fd);
        Ok(Vt { tty, number: stat.v_active })
    }

    /// Allow the pending switch away (after DRM master was dropped).
    pub fn release(&self) {
        unsafe { libc::ioctl(self.tty.as_raw_fd(), VT_RELDISP, 1 as libc::c_ulong) };
    }

    /// Acknowledge the switch back.
    pub fn acquire(&self) {
        unsafe { libc::ioctl(self.tty.as_raw_fd(), VT_RELDISP, VT_ACKACQ) };
    }

    /// Switch to VT `n` (Ctrl+Alt+Fn).
    pub fn activate(&self, n: u16) {
        unsafe { libc::ioctl(self.tty.as_raw_fd(), VT_ACTIVATE, n as libc::c_ulong) };
    }
}

impl Drop for Vt {
    fn drop(&mut self) {
        crate::process::set_graphics_vt(-1);
        crate::process::restore_vt(self.tty.as_raw_fd());
    }
}
