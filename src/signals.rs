//! Which signals vitrine blocks, so that only its signalfd receives them.

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
