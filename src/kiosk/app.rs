//! The kiosk app started with `vitrine -- APP ARGS`: its launch, its exit, its restarts.
//!
//! The app runs in a process group of its own (so stopping it stops what it started, a browser
//! behind a wrapper script included), dies with vitrine (`PR_SET_PDEATHSIG`), and does not see
//! vitrine's systemd variables. Its exit is noticed through a pidfd in the event loop, never by
//! polling.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::config::AppExitPolicy;

/// What happened to the app, and what to do about it.
#[derive(Debug, PartialEq, Eq)]
pub enum AppEvent {
    /// Still running (or nothing to do).
    Nothing,
    /// The app exited and the policy says vitrine exits with this status.
    ExitWith(i32),
    /// The app exited and is started again after this delay.
    RestartIn(Duration),
}

/// Environment vitrine got from systemd that is vitrine's alone: an app that inherited
/// NOTIFY_SOCKET could tell systemd vitrine is ready, or feed its watchdog.
const PRIVATE_ENV: [&str; 7] =
    ["NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WAYLAND_SOCKET"];

pub struct AppSupervisor {
    command: Vec<String>,
    env: Vec<(String, String)>,
    policy: AppExitPolicy,
    min_delay: Duration,
    max_delay: Duration,
    delay: Duration,
    child: Option<Child>,
    started_at: Instant,
    pub restarts: u32,
}

/// An exit status as a shell reports it: the code, or 128 + the signal number.
pub fn status_code(status: ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// A pidfd for `pid` (Linux 5.3): readable once the process has exited.
pub fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor is new and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl AppSupervisor {
    pub fn new(
        command: Vec<String>,
        env: Vec<(String, String)>,
        policy: AppExitPolicy,
        min_delay: Duration,
        max_delay: Duration,
    ) -> Self {
        AppSupervisor {
            command,
            env,
            policy,
            min_delay,
            max_delay,
            delay: min_delay,
            child: None,
            started_at: Instant::now(),
            restarts: 0,
        }
    }

    pub fn command_line(&self) -> String {
        self.command.join(" ")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Start the app. A program that cannot be started counts as an exit with status 127.
    pub fn start(&mut self) -> AppEvent {
        let Some((program, args)) = self.command.split_first() else {
            return AppEvent::Nothing;
        };
        let mut cmd = Command::new(program);
        cmd.args(args).env_remove("DISPLAY");
        for name in PRIVATE_ENV {
            cmd.env_remove(name);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        // A group of its own: stopping the app reaches everything it started.
        cmd.process_group(0);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // vitrine blocks its signals to receive them through a signalfd; the app must
                // not inherit that mask, or it could never be stopped with SIGTERM.
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                if libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // If vitrine dies, so does the app (no orphan holding the seat).
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.started_at = Instant::now();
        match cmd.spawn() {
            Ok(child) => {
                tracing::info!(app = %self.command_line(), pid = child.id(), "kiosk app started");
                self.child = Some(child);
                AppEvent::Nothing
            }
            Err(err) => {
                tracing::error!(app = %self.command_line(), %err, "cannot start the kiosk app");
                self.exited(127)
            }
        }
    }

    /// Collect the app's exit status if it has exited (never waits).
    pub fn reap(&mut self) -> AppEvent {
        let Some(child) = self.child.as_mut() else {
            return AppEvent::Nothing;
        };
        match child.try_wait() {
            Ok(Some(status)) => {
                let pid = child.id();
                self.child = None;
                // Whatever it left behind in its group goes with it.
                kill_group(pid, libc::SIGTERM);
                let code = status_code(status);
                tracing::info!(app = %self.command_line(), code, "kiosk app exited");
                self.exited(code)
            }
            Ok(None) => AppEvent::Nothing,
            Err(err) => {
                tracing::error!(%err, "cannot wait for the kiosk app");
                AppEvent::Nothing
            }
        }
    }

    fn exited(&mut self, code: i32) -> AppEvent {
        match self.policy {
            AppExitPolicy::Exit => AppEvent::ExitWith(code),
            AppExitPolicy::Restart => {
                // An app that ran for a while gets the short delay again.
                if self.started_at.elapsed() > self.max_delay * 2 {
                    self.delay = self.min_delay;
                }
                let delay = self.delay;
                tracing::warn!(app = %self.command_line(), code, delay_ms = delay.as_millis() as u64, "restarting the kiosk app");
                self.delay = (self.delay * 2).min(self.max_delay);
                AppEvent::RestartIn(delay)
            }
        }
    }

    /// Stop the app and its process group: SIGTERM, a moment, then SIGKILL (vitrine is exiting).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id();
            kill_group(pid, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    kill_group(pid, libc::SIGKILL);
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            kill_group(pid, libc::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// Signal the process group led by `pid` (the app's own).
fn kill_group(pid: u32, signal: libc::c_int) {
    // SAFETY: kill with a negative pid signals that process group.
    unsafe { libc::kill(-(pid as libc::pid_t), signal) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reap until the app exits, starting it again when the policy says so, up to `restarts`.
    fn run_until(sup: &mut AppSupervisor, restarts: u32) -> AppEvent {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match sup.reap() {
                AppEvent::Nothing if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                AppEvent::RestartIn(delay) if sup.restarts < restarts => {
                    std::thread::sleep(delay);
                    sup.restarts += 1;
                    if let event @ AppEvent::ExitWith(_) = sup.start() {
                        return event;
                    }
                }
                other => return other,
            }
        }
    }

    #[test]
    fn exit_policy_passes_the_status_on() {
        let mut sup = AppSupervisor::new(
            vec!["sh".into(), "-c".into(), "exit 7".into()],
            vec![],
            AppExitPolicy::Exit,
            Duration::from_millis(10),
            Duration::from_millis(40),
        );
        assert_eq!(sup.start(), AppEvent::Nothing);
        assert_eq!(run_until(&mut sup, 0), AppEvent::ExitWith(7));
    }

    #[test]
    fn a_missing_program_exits_with_127() {
        let mut sup = AppSupervisor::new(
            vec!["/nonexistent/kiosk-app".into()],
            vec![],
            AppExitPolicy::Exit,
            Duration::from_millis(10),
            Duration::from_millis(40),
        );
        assert_eq!(sup.start(), AppEvent::ExitWith(127));
    }

    #[test]
    fn restart_policy_restarts_with_growing_delay() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let script = format!("echo x >> {}; exit 3", count.display());
        let mut sup = AppSupervisor::new(
            vec!["sh".into(), "-c".into(), script],
            vec![],
            AppExitPolicy::Restart,
            Duration::from_millis(20),
            Duration::from_millis(80),
        );
        sup.start();
        let last = run_until(&mut sup, 3);
        assert_eq!(sup.restarts, 3);
        assert_eq!(last, AppEvent::RestartIn(Duration::from_millis(80)), "the delay doubles up to the maximum");
        sup.stop();
        let runs = std::fs::read_to_string(&count).unwrap().lines().count();
        assert_eq!(runs, 4, "the app ran once and was restarted three times");
    }

    #[test]
    fn the_app_does_not_see_vitrines_systemd_variables_and_leads_its_own_group() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env");
        let script = format!("env > {0}; cut -d' ' -f5 /proc/$$/stat >> {0}; echo pid $$ >> {0}", out.display());
        let mut sup = AppSupervisor::new(
            vec!["sh".into(), "-c".into(), script],
            vec![],
            AppExitPolicy::Exit,
            Duration::from_millis(10),
            Duration::from_millis(40),
        );
        // What systemd gives vitrine (no other test of this crate reads these).
        std::env::set_var("WATCHDOG_USEC", "10000000");
        std::env::set_var("NOTIFY_SOCKET", "/run/systemd/notify");
        sup.start();
        assert_eq!(run_until(&mut sup, 0), AppEvent::ExitWith(0));
        let text = std::fs::read_to_string(&out).unwrap();
        for name in ["WATCHDOG_USEC=", "NOTIFY_SOCKET="] {
            assert!(!text.lines().any(|l| l.starts_with(name)), "{name} reached the app:\n{text}");
        }
        let pid = text.lines().find_map(|l| l.strip_prefix("pid ")).unwrap().trim().to_string();
        let pgid = text.lines().rev().nth(1).unwrap().trim().to_string();
        assert_eq!(pgid, pid, "the app leads a process group of its own");
    }
}
