//! The process: which signals vitrine blocks (so that only its signalfd receives them), its
//! descriptor limit, and what a panic leaves behind.

/// The signals vitrine takes through a signalfd. They are blocked before any thread starts, so
/// that every thread vitrine starts inherits the mask and the kernel can only deliver them to the
/// signalfd (a decoding thread that had them unblocked would die of SIGHUP). SIGUSR1/SIGUSR2,
/// the VT's release and acquire signals, are blocked the same way, but only when vitrine runs
/// on a VT itself (see the DRM backend's direct session): libseat's built-in seat server,
/// forked from vitrine, must keep them to do VT switching for it.
pub const LOOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Block `signals` in this thread (and so in every thread it starts from now on).
pub fn block(signals: &[libc::c_int]) {
    // SAFETY: sigset manipulation on a local set, then the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in signals {
            libc::sigaddset(&mut set, *s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Block the loop's signals (before any thread starts).
pub fn block_signals() {
    block(&LOOP_SIGNALS);
}

/// Raise the soft limit on open files to the hard one: every Wayland client, control
/// connection, dmabuf and framebuffer holds descriptors, and the default soft limit (1024) is
/// what a busy kiosk reaches first. Returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// The descriptor of the VT vitrine put in graphics mode, or -1: a panic puts it back in text
/// mode with automatic switching before anything else, so that a crash never leaves the console
/// dead.
static GRAPHICS_VT: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// The VT on `fd` is in graphics mode under vitrine's control (-1: no longer).
pub fn set_graphics_vt(fd: std::os::fd::RawFd) {
    GRAPHICS_VT.store(fd, std::sync::atomic::Ordering::SeqCst);
}

/// Give the VT back to the kernel: automatic switching, text mode. Safe to call more than once.
pub fn restore_vt(fd: std::os::fd::RawFd) {
    const VT_SETMODE: libc::c_ulong = 0x5602;
    const KDSETMODE: libc::c_ulong = 0x4B3A;
    const KD_TEXT: libc::c_ulong = 0;
    // struct vt_mode with mode VT_AUTO and no signals.
    let auto = [0u8; 8];
    // SAFETY: ioctls on a descriptor vitrine holds; the argument outlives the calls.
    unsafe {
        libc::ioctl(fd, VT_SETMODE, auto.as_ptr());
        libc::ioctl(fd, KDSETMODE, KD_TEXT);
    }
}

/// What a panic said (its payload is a `&str` or a `String` unless a crate panicked with
/// something else).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// On a panic in any thread: the VT back to text mode, the panic in the log (the journal sees
/// what stderr would not), then the usual report. The main loop turns a panic into a clean stop
/// with a non-zero status (see `run::run`).
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let message = panic_message(info.payload());
        if thread == "main" {
            let fd = GRAPHICS_VT.swap(-1, std::sync::atomic::Ordering::SeqCst);
            if fd >= 0 {
                restore_vt(fd);
            }
        }
        tracing::error!(%thread, %location, %message, "panic");
        default(info);
    }));
}

/// Lower the calling thread's priority by `nice` steps. The decoding and reading threads run
/// ahead of the display by a queue of pictures; the compositor's loop has a vblank to make. When
/// they compete for a core, the loop should win.
pub fn lower_thread_priority(nice: i32) {
    // SAFETY: gettid and setpriority on the calling thread; failure leaves the priority as is.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, now + nice);
    }
}

/// How much lower than the loop the decoding and reading threads run.
pub const WORKER_NICE: i32 = 5;

/// The time a thread has spent runnable but waiting for a CPU, as the kernel's scheduler counts
/// it (`/proc/thread-self/schedstat`, second field). A picture missed while the loop thread was
/// kept off the CPU is the machine's lateness, not the scheduler's: the player tells the two
/// apart with it. Opened once by the thread it measures; `None` where the kernel does not keep
/// the figure (no `CONFIG_SCHED_INFO`).
pub struct RunDelay(Option<std::fs::File>);

impl RunDelay {
    pub fn of_this_thread() -> Self {
        Self(std::fs::File::open("/proc/thread-self/schedstat").ok())
    }

    /// The thread's total run delay so far (one `pread`).
    pub fn total(&self) -> Option<std::time::Duration> {
        use std::os::unix::fs::FileExt;
        let file = self.0.as_ref()?;
        let mut buf = [0u8; 96];
        let n = file.read_at(&mut buf, 0).ok()?;
        parse_run_delay(std::str::from_utf8(&buf[..n]).ok()?)
    }
}

/// `cpu_ns run_delay_ns timeslices` → the run delay.
fn parse_run_delay(text: &str) -> Option<std::time::Duration> {
    let ns: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(std::time::Duration::from_nanos(ns))
}

#[cfg(test)]
mod run_delay_tests {
    use super::*;

    #[test]
    fn the_second_field_of_schedstat_is_the_run_delay() {
        assert_eq!(parse_run_delay("126249 78736 2\n"), Some(std::time::Duration::from_nanos(78736)));
        assert_eq!(parse_run_delay("126249\n"), None);
        assert_eq!(parse_run_delay("a b c"), None);
    }

    #[test]
    fn this_threads_run_delay_is_read_and_never_goes_back() {
        let delay = RunDelay::of_this_thread();
        let Some(first) = delay.total() else {
            // A kernel without CONFIG_SCHED_INFO: nothing to read, and the reader says so.
            assert!(!std::path::Path::new("/proc/thread-self/schedstat").exists());
            return;
        };
        // Spin a little so the scheduler has something to count.
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(20) {
            std::hint::spin_loop();
        }
        assert!(delay.total().unwrap() >= first);
    }
}

/// What this process holds now, from /proc: resident memory, descriptors, threads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub rss_bytes: u64,
    pub fds: u64,
    pub threads: u64,
}

impl Usage {
    pub fn now() -> Usage {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Usage {
            rss_bytes: field("VmRSS:") * 1024,
            fds: std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0),
            threads: field("Threads:"),
        }
    }
}
