//! systemd integration: READY=1 once the first frame is on screen, and WATCHDOG=1 only while the
//! display path is alive, so systemd restarts a vitrine whose display hung.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where sd_notify messages go ($NOTIFY_SOCKET), if systemd asked for them.
pub struct Notifier {
    socket: UnixDatagram,
    target: NotifyTarget,
}

enum NotifyTarget {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

impl Notifier {
    pub fn from_env() -> Option<Notifier> {
        let value = std::env::var_os("NOTIFY_SOCKET")?;
        let value = value.to_string_lossy().into_owned();
        let target = match value.strip_prefix('@') {
            Some(name) => NotifyTarget::Abstract(name.as_bytes().to_vec()),
            None => NotifyTarget::Path(PathBuf::from(value)),
        };
        Some(Notifier { socket: UnixDatagram::unbound().ok()?, target })
    }

    pub fn notify(&self, message: &str) {
        let result = match &self.target {
            NotifyTarget::Path(path) => self.socket.send_to(message.as_bytes(), path),
            NotifyTarget::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name)
                    .and_then(|addr| self.socket.send_to_addr(message.as_bytes(), &addr))
            }
        };
        if let Err(err) = result {
            tracing::warn!(%err, message, "sd_notify failed");
        }
    }
}

/// The watchdog interval systemd expects ($WATCHDOG_USEC, for this process).
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Feeds the watchdog only while the display path shows signs of life: a frame presented, or a
/// repaint that found nothing to change. A commit that never completes stops the heartbeat.
pub struct Watchdog {
    interval: Duration,
}

impl Watchdog {
    pub fn new(interval: Duration) -> Watchdog {
        Watchdog { interval }
    }

    /// How often to check (twice per interval, as systemd recommends).
    pub fn period(&self) -> Duration {
        self.interval / 2
    }

    /// Whether to send WATCHDOG=1 now, given the last sign of life of the display path.
    pub fn should_feed(&self, now: Instant, heartbeat: Option<Instant>) -> bool {
        match heartbeat {
            Some(beat) => now.saturating_duration_since(beat) < self.interval / 2,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_starves_when_presentation_stalls() {
        let w = Watchdog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(!w.should_feed(t0, None), "nothing shown yet: no feeding");
        assert!(w.should_feed(t0 + Duration::from_secs(1), Some(t0)));
        assert!(w.should_feed(t0 + Duration::from_millis(4900), Some(t0)));
        assert!(!w.should_feed(t0 + Duration::from_secs(5), Some(t0)), "a stalled display is not fed");
        assert_eq!(w.period(), Duration::from_secs(5));
    }

    #[test]
    fn messages_reach_the_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier { socket: UnixDatagram::unbound().unwrap(), target: NotifyTarget::Path(path) };
        notifier.notify("READY=1");
        notifier.notify("WATCHDOG=1");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }
}
