//! How vitrine gets the display and input devices: through a seat manager (seatd or logind, via
//! libseat) when one runs, which lets vitrine run unprivileged and handles VT switching; else
//! directly, as root on a VT.

use std::os::fd::OwnedFd;
use std::path::Path;

use smithay::backend::session::libseat::{LibSeatSession, LibSeatSessionNotifier};
use smithay::backend::session::Session as _;
use smithay::reexports::rustix::fs::OFlags;

use super::device::{Card, DeviceError};

pub enum Session {
    /// Devices come from seatd or logind.
    Seat(LibSeatSession),
    /// vitrine opens devices itself.
    Direct,
}

impl Session {
    /// A seat session if a seat manager answers (unless `VITRINE_SESSION=direct`), else direct.
    pub fn open() -> (Session, Option<LibSeatSessionNotifier>) {
        if std::env::var("VITRINE_SESSION").as_deref() == Ok("direct") {
            return (Session::Direct, None);
        }
        match LibSeatSession::new() {
            Ok((session, notifier)) => {
                tracing::info!(seat = %session.seat(), "session: libseat");
                (Session::Seat(session), Some(notifier))
            }
            Err(err) => {
                tracing::info!(?err, "session: direct (no seat manager answered)");
                (Session::Direct, None)
            }
        }
    }

    pub fn is_seat(&self) -> bool {
        matches!(self, Session::Seat(_))
    }

    /// Open a DRM card through the session.
    pub fn open_card(&mut self, path: &Path) -> Result<Card, DeviceError> {
        match self {
            Session::Direct => Card::open(path),
            Session::Seat(session) => {
                let flags = OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
                let fd: OwnedFd = session.open(path, flags).map_err(|e| DeviceError::Open {
                    path: path.display().to_string(),
                    source: std::io::Error::other(format!("seat manager: {e}")),
                })?;
                Card::from_fd(fd, path)
            }
        }
    }

    /// Switch VTs through the seat manager.
    pub fn change_vt(&mut self, vt: i32) {
        if let Session::Seat(session) = self {
            if let Err(err) = session.change_vt(vt) {
                tracing::warn!(?err, vt, "cannot switch VT");
            }
        }
    }
}
