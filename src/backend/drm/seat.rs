//! The seat: VT switches (through the seat manager, or VT_PROCESS signals when vitrine owns
//! the VT itself) pause and resume the display; the schedule turns the displays off and on.

use drm::control::atomic::AtomicModeReq;
use drm::control::property::Value;
use drm::control::{AtomicCommitFlags, Device as ControlDevice};
use drm::Device as BasicDevice;
use smithay::reexports::calloop;

use super::{vt, Drm, DrmError};
use crate::state::Core;

impl Drm {
    /// Ctrl+Alt+Fn.
    pub fn switch_vt(&mut self, n: u16) {
        if self.session.is_seat() {
            self.session.change_vt(n as i32);
            return;
        }
        match &self.vt {
            Some(vt) if vt.number != n => vt.activate(n),
            Some(_) => {}
            None => tracing::info!(vt = n, "no VT switching: vitrine does not own a VT"),
        }
    }

    /// Give the display back (on exit).
    pub fn stop(&mut self) {
        let _ = self.card.release_master_lock();
    }

    /// Switched away from our VT: stop committing and let the next user have DRM master (a seat
    /// manager takes it back itself).
    pub(super) fn pause(&mut self, core: &mut Core) {
        self.paused = true;
        for head in &mut self.heads {
            head.in_flight = None;
            core.frame_lost(&head.output);
        }
        if let Some(libinput) = self.libinput.as_mut() {
            libinput.suspend();
        }
        if !self.session.is_seat() {
            if let Err(err) = self.card.release_master_lock() {
                tracing::warn!(%err, "cannot drop DRM master");
            }
        }
        tracing::info!("vt released: display paused");
    }

    /// Back on our VT: DRM master again, and the whole display state rebuilt by a modeset.
    pub(super) fn resume(&mut self, core: &mut Core) {
        if !self.session.is_seat() {
            if let Err(err) = self.card.acquire_master_lock() {
                tracing::error!(%err, "cannot become DRM master again");
            }
        }
        if let Some(libinput) = self.libinput.as_mut() {
            if libinput.resume().is_err() {
                tracing::warn!("cannot resume input devices");
            }
        }
        self.paused = false;
        for head in &mut self.heads {
            head.reset();
            core.frame_lost(&head.output);
        }
        tracing::info!("vt acquired: display restored");
        if std::mem::take(&mut self.rescan_on_resume) {
            self.update_heads(core);
        }
        core.queue_redraw_all();
    }

    /// Displays off: every CRTC goes inactive (DPMS off; modes and planes are kept), each once
    /// its commit in flight (if any) has flipped. On: each head sets its mode and planes again
    /// at its next frame.
    pub fn set_power(&mut self, core: &mut Core, on: bool) {
        if self.paused {
            // Away from our VT: the resume rebuilds everything anyway.
            return;
        }
        for i in 0..self.heads.len() {
            let head = &mut self.heads[i];
            if on {
                head.power_off = false;
                head.reset();
                core.frame_lost(&head.output);
                continue;
            }
            if head.in_flight.is_some() {
                head.power_off = true;
                continue;
            }
            self.power_off(i);
        }
        if on {
            core.queue_redraw_all();
        }
    }

    pub(super) fn power_off(&mut self, index: usize) {
        let head = &mut self.heads[index];
        head.power_off = false;
        let Some(active) = head.crtc_props.handle("ACTIVE") else { return };
        let mut req = AtomicModeReq::new();
        req.add_property(head.crtc, active, Value::Boolean(false));
        match self.card.atomic_commit(AtomicCommitFlags::ALLOW_MODESET | AtomicCommitFlags::NONBLOCK, req) {
            Ok(()) => {
                self.stats.commits += 1;
                tracing::info!(output = %head.output.name(), "display off");
            }
            Err(err) => tracing::error!(output = %head.output.name(), %err, "cannot turn the display off"),
        }
    }
}

/// Take the VT when running directly on one (root, no seat manager), with the release/acquire
/// signals routed into the event loop.
pub(super) fn start_vt(core: &mut Core) -> Option<vt::Vt> {
    use calloop::signals::{Signal, Signals};
    let vt = match vt::Vt::take() {
        Ok(vt) => vt,
        Err(err) => {
            tracing::info!(%err, "no VT to manage: VT switching is off");
            return None;
        }
    };
    tracing::info!(vt = vt.number, "running on a VT: switching away releases the display");
    let signals = match Signals::new(&[Signal::SIGUSR1, Signal::SIGUSR2]) {
        Ok(s) => s,
        Err(err) => {
            tracing::warn!(%err, "cannot watch VT signals: VT switching is off");
            return None;
        }
    };
    let inserted = core.loop_handle.insert_source(signals, |event, _, state| {
        let Some((d, core)) = state.drm() else { return };
        match event.signal() {
            Signal::SIGUSR1 => {
                d.pause(core);
                if let Some(vt) = &d.vt {
                    vt.release();
                }
            }
            Signal::SIGUSR2 => {
                if let Some(vt) = &d.vt {
                    vt.acquire();
                }
                d.resume(core);
            }
            _ => {}
        }
    });
    if let Err(err) = inserted {
        tracing::warn!(%err, "cannot watch VT signals: VT switching is off");
        return None;
    }
    Some(vt)
}

/// Pause and resume with the seat manager (VT switches, another session taking the seat).
pub(super) fn watch_seat(
    core: &mut Core,
    notifier: smithay::backend::session::libseat::LibSeatSessionNotifier,
) -> Result<(), DrmError> {
    use smithay::backend::session::Event as SessionEvent;
    core.loop_handle
        .insert_source(notifier, |event, _, state| {
            let Some((d, core)) = state.drm() else { return };
            match event {
                SessionEvent::PauseSession => d.pause(core),
                SessionEvent::ActivateSession => d.resume(core),
            }
        })
        .map(|_| ())
        .map_err(|e| DrmError::Loop(format!("cannot watch the seat: {e}")))
}
