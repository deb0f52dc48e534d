//! The kiosk app started with `vitrine -- APP ARGS`: its launch, its exit, its restarts.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::config::AppExitPolicy;

/// What [`AppSupervisor::poll`] saw.
#[derive(Debug, PartialEq, Eq)]
pub enum AppEvent {
    Nothing,
    /// The app exited and the policy says vitrine exits with this status.
    ExitWith(i32),
}

pub struct AppSupervisor {
    command: Vec<String>,
    env: Vec<(String, String)>,
    policy: AppExitPolicy,
    min_delay: Duration,
    max_delay: Duration,
    delay: Duration,
    child: Option<Child>,
    started_at: Instant,
    restart_at: Option<Instant>,
    pub restarts: u32,
}

/// An exit status as a shell reports it: the code, or 128 + the signal number.
pub fn status_code(status: ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
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
            restart_at: None,
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
        cmd.args(args).env_remove("DISPLAY").env_remove("WAYLAND_SOCKET");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        // vitrine blocks SIGINT/SIGTERM to receive them through a signalfd; the app must not
        // inherit that mask, or it could never be stopped with SIGTERM.
        unsafe {
            cmd.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                if libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
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

    /// Check on the app; call it periodically.
    pub fn poll(&mut self) -> AppEvent {
        if let Some(at) = self.restart_at {
            if Instant::now() >= at {
                self.restart_at = None;
                self.restarts += 1;
                return self.start();
            }
            return AppEvent::Nothing;
        }
        let Some(child) = self.child.as_mut() else {
            return AppEvent::Nothing;
        };
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
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
                tracing::warn!(app = %self.command_line(), code, delay_ms = self.delay.as_millis() as u64, "restarting the kiosk app");
                self.restart_at = Some(Instant::now() + self.delay);
                self.delay = (self.delay * 2).min(self.max_delay);
                AppEvent::Nothing
            }
        }
    }

    /// Ask the app to stop (SIGTERM), give it a moment, then kill it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(sup: &mut AppSupervisor) -> AppEvent {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match sup.poll() {
                AppEvent::Nothing if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
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
        assert_eq!(wait_for(&mut sup), AppEvent::ExitWith(7));
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
        let deadline = Instant::now() + Duration::from_secs(5);
        while sup.restarts < 3 && Instant::now() < deadline {
            assert_eq!(sup.poll(), AppEvent::Nothing);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(sup.restarts >= 3, "restarted {} times", sup.restarts);
        assert_eq!(sup.delay, Duration::from_millis(80), "delay doubles up to the maximum");
        sup.stop();
        let runs = std::fs::read_to_string(&count).unwrap().lines().count();
        assert!(runs >= 3, "the app ran {runs} times");
    }
}
