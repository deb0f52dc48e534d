//! systemd integration: READY=1 once the first frame is on screen, and WATCHDOG=1 only while the
//! loop runs and the display path is alive, so systemd restarts a vitrine whose display hung.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where sd_notify messages go ($NOTIFY_SOCKET), if systemd asked for them.
pub struct Notifier {
    socket: UnixDatagram,
    target: NotifyTarget,
    /// The last message could not be sent (said once until one is sent again).
    failing: std::cell::Cell<bool>,
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
        Notifier::to(target)
    }

    /// A non-blocking socket: a listener that stops reading (its queue full) must never stop
    /// the loop; the message is then dropped, as a watchdog ping missed would be.
    fn to(target: NotifyTarget) -> Option<Notifier> {
        let socket = UnixDatagram::unbound().ok()?;
        socket.set_nonblocking(true).ok()?;
        Some(Notifier { socket, target, failing: std::cell::Cell::new(false) })
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
        match result {
            Ok(_) => self.failing.set(false),
            Err(err) => {
                if !self.failing.replace(true) {
                    tracing::warn!(%err, message, "sd_notify failed: the message is dropped (said again only after one got through)");
                }
            }
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

/// Feeds the watchdog on liveness: the loop runs (its own timer fired), no output has waited
/// too long for a repaint or a page flip, and the video is not frozen with its ladder run out.
/// An output with nothing to show is idle, not stuck: no display connected, the schedule's
/// closing hours and a VT switched away all keep the watchdog fed; a commit whose flip never
/// comes does not, nor a playlist whose every item failed in every decoder.
pub struct Watchdog {
    interval: Duration,
}

impl Watchdog {
    pub fn new(interval: Duration) -> Watchdog {
        Watchdog { interval }
    }

    /// How often to feed (twice per interval, as systemd recommends).
    pub fn period(&self) -> Duration {
        self.interval / 2
    }

    /// Whether to send WATCHDOG=1 now, given since when the display path has waited for
    /// something (`None`: it waits for nothing).
    pub fn should_feed(&self, now: Instant, stalled_since: Option<Instant>) -> bool {
        match stalled_since {
            Some(since) => now.saturating_duration_since(since) < self.interval / 2,
            None => true,
        }
    }
}

/// vitrine's conversation with systemd.
pub struct Systemd {
    notifier: Notifier,
    watchdog: Option<Watchdog>,
    ready: bool,
    /// The watchdog was last not fed (said once per stall).
    starving: bool,
}

impl Systemd {
    /// When systemd started vitrine with a notify socket.
    pub fn from_env() -> Option<Systemd> {
        let notifier = Notifier::from_env()?;
        Some(Systemd { notifier, watchdog: watchdog_interval().map(Watchdog::new), ready: false, starving: false })
    }

    /// How often the watchdog wants to hear from vitrine, if it is on.
    pub fn watchdog_period(&self) -> Option<Duration> {
        self.watchdog.as_ref().map(Watchdog::period)
    }

    /// READY=1, once.
    pub fn ready(&mut self) {
        if !std::mem::replace(&mut self.ready, true) {
            self.notifier.notify("READY=1");
            tracing::info!("told systemd READY=1");
        }
    }

    /// The watchdog's turn (the loop runs, or this would not be called): WATCHDOG=1 unless the
    /// display path has waited too long, since `stalled_since`, for a repaint or a flip.
    pub fn watchdog_tick(&mut self, stalled_since: Option<Instant>) {
        let Some(watchdog) = &self.watchdog else { return };
        if watchdog.should_feed(Instant::now(), stalled_since) {
            self.notifier.notify("WATCHDOG=1");
            if std::mem::take(&mut self.starving) {
                tracing::info!("display and video alive again: feeding the systemd watchdog");
            }
        } else if !std::mem::replace(&mut self.starving, true) {
            tracing::warn!(
                stalled_ms = stalled_since.map(|t| t.elapsed().as_millis() as u64),
                "display path or video stalled: the systemd watchdog is not fed"
            );
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
        assert!(w.should_feed(t0, None), "nothing waited for (idle, no display, displays off): fed");
        assert!(w.should_feed(t0 + Duration::from_secs(1), Some(t0)), "a repaint or flip just asked for");
        assert!(w.should_feed(t0 + Duration::from_millis(4900), Some(t0)));
        assert!(!w.should_feed(t0 + Duration::from_secs(5), Some(t0)), "a flip that never comes starves it");
        assert_eq!(w.period(), Duration::from_secs(5));
    }

    #[test]
    fn messages_reach_the_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::to(NotifyTarget::Path(path)).unwrap();
        notifier.notify("READY=1");
        notifier.notify("WATCHDOG=1");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }

    /// A listener that stops reading fills its queue (a few datagrams): the next messages are
    /// dropped, and sending never blocks the loop.
    #[test]
    fn a_listener_that_stops_reading_never_blocks_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let _server = UnixDatagram::bind(&path).unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let notifier = Notifier::to(NotifyTarget::Path(path)).unwrap();
            for _ in 0..1000 {
                notifier.notify("WATCHDOG=1");
            }
            let _ = done.send(notifier.failing.get());
        });
        let failing = finished.recv_timeout(Duration::from_secs(30)).expect("notify blocked on a full queue");
        assert!(failing, "a full queue is seen as a failure");
    }
}
