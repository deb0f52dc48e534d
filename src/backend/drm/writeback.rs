//! The writeback connector: screenshots of what the planes show, carried by a head's next
//! commit and read back when the kernel's out-fence signals.

use drm::control::atomic::AtomicModeReq;
use drm::control::crtc;
use drm::control::property::Value;
use smithay::output::Output;
use std::time::Duration;

use smithay::reexports::calloop::generic::Generic;
use smithay::reexports::calloop::timer::{TimeoutAction, Timer};
use smithay::reexports::calloop::{Interest, Mode as LoopMode, PostAction, RegistrationToken};

use super::device::{Card, ConnectorInfo};
use super::head::Head;
use super::kms::MappedBuffer;
use super::{Drm, DrmError, KmsStats};
use crate::image::RgbaImage;
use crate::scene::Scene;
use crate::state::Core;

/// The writeback connector (vkms has one; most SoCs do not): screenshots of what the planes
/// show. It is attached to one head's CRTC at that head's modeset; a capture rides on that
/// head's next commit and is read back when its out-fence signals.
pub struct Writeback {
    pub(super) connector: ConnectorInfo,
    pub(super) buffer: Option<MappedBuffer>,
    pub(super) crtc: Option<crtc::Handle>,
    /// Captures whose commit went out and whose fence has not signalled yet.
    pub(super) in_flight: Vec<crate::backend::Captured>,
    /// That commit has an out-fence (else the flip says the frame is written).
    pub(super) fenced: bool,
    /// The fence's event source (none when it was lost on purpose) and the timer that gives up
    /// on it.
    pub(super) waiting: Option<(Option<RegistrationToken>, RegistrationToken)>,
    /// A fence never signalled: the connector is not used again.
    pub(super) lost: bool,
}

/// How long a writeback may take: one frame, composed by the kernel on the CPU where the device
/// is virtual (a few hundred milliseconds under TCG at 1024x768; a 1080p frame beside a 1080p
/// decode took over 3 s on a loaded host), with a wide margin, and still well inside a control
/// client's patience. A fence not signalled by then will not be: the screenshot fails with a
/// reason rather than never being answered.
const WRITEBACK_DEADLINE: Duration = Duration::from_secs(10);

/// The writeback part of head `head`'s next commit, when captures wait for it: the buffer to
/// write into and where the kernel puts the out-fence. Returns whether it was added.
pub(super) fn writeback_request(
    writeback: &mut Option<Writeback>,
    head: &Head,
    card: &Card,
    stats: &mut KmsStats,
    req: &mut AtomicModeReq,
    fence: &mut i32,
) -> Result<bool, DrmError> {
    if head.captures.is_empty() {
        return Ok(false);
    }
    let size = head.size();
    let Some(wb) = writeback.as_mut().filter(|wb| wb.crtc == Some(head.crtc) && !wb.lost) else { return Ok(false) };
    if !wb.in_flight.is_empty() {
        // One capture at a time in the buffer: these ride on a later commit.
        return Ok(false);
    }
    if wb.buffer.as_ref().is_some_and(|b| (b.width, b.height) != size) {
        if let Some(old) = wb.buffer.take() {
            old.destroy(card);
        }
    }
    if wb.buffer.is_none() {
        wb.buffer = Some(
            MappedBuffer::new(card, size, false)
                .map_err(|source| DrmError::kernel("writeback buffer".into(), source))?,
        );
        stats.framebuffers_created += 1;
    }
    let (Some(fb_prop), Some(fence_prop)) =
        (wb.connector.props.handle("WRITEBACK_FB_ID"), wb.connector.props.handle("WRITEBACK_OUT_FENCE_PTR"))
    else {
        return Err(DrmError::Missing("the writeback connector lacks WRITEBACK_FB_ID/WRITEBACK_OUT_FENCE_PTR".into()));
    };
    let fb = wb.buffer.as_ref().map(|b| b.fb).ok_or_else(|| DrmError::Missing("no writeback buffer".into()))?;
    req.add_property(wb.connector.handle, fb_prop, Value::Framebuffer(Some(fb)));
    req.add_property(wb.connector.handle, fence_prop, Value::UnsignedRange(fence as *mut i32 as u64));
    Ok(true)
}

impl Drm {
    /// A screenshot of `output`: what its planes show, read back through the writeback connector
    /// from the head's next commit (`done` runs when its fence signals), or vitrine's own
    /// composition of `scene` where the head has no writeback (returned at once).
    #[allow(clippy::type_complexity)]
    pub fn capture(
        &mut self,
        core: &mut Core,
        output: &Output,
        scene: &Scene,
        done: crate::backend::Captured,
    ) -> Result<(), (crate::backend::Captured, Result<RgbaImage, String>)> {
        let Some(index) = self.head_of(output) else { return Err((done, Err("the output has no head".into()))) };
        let head = &mut self.heads[index];
        let writeback_here = self.writeback.as_ref().is_some_and(|wb| wb.crtc == Some(head.crtc) && !wb.lost);
        if writeback_here && head.modeset_done && !self.paused && core.displays_on {
            tracing::debug!(output = %output.name(), "screenshot: the next commit carries a writeback");
            head.captures.push(done);
            core.queue_redraw(output);
            return Ok(());
        }
        if self.writeback.as_ref().is_some_and(|wb| wb.lost) {
            tracing::info!(output = %output.name(), "the writeback connector was given up: the screenshot is vitrine's composition");
        } else {
            tracing::info!(output = %output.name(), "no writeback connector on this output: the screenshot is vitrine's composition");
        }
        let (size, rotation) = (head.size(), head.rotation);
        Err((done, self.compositor.capture(&self.painter, scene, size, rotation)))
    }

    /// The commit carrying captures went out: they wait for its out-fence, an event source.
    pub(super) fn writeback_committed(&mut self, core: &mut Core, index: usize, fence: i32) {
        let captures = std::mem::take(&mut self.heads[index].captures);
        tracing::debug!(fence, captures = captures.len(), "writeback committed");
        let Some(wb) = self.writeback.as_mut() else { return };
        wb.in_flight = captures;
        wb.fenced = fence >= 0;
        if fence < 0 {
            // No fence: the frame is written by the time the flip completes.
            return;
        }
        // SAFETY: the kernel gave us this descriptor.
        let fence = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fence) };
        let inserted = if self.lose_writeback_fences > 0 {
            self.lose_writeback_fences -= 1;
            tracing::warn!("fault injection: this writeback's fence is closed unwatched");
            drop(fence);
            Ok(None)
        } else {
            core.loop_handle
                .insert_source(Generic::new(fence, Interest::READ, LoopMode::Level), |_, _, state| {
                    if let Some((d, core)) = state.drm() {
                        d.writeback_done(core);
                    }
                    Ok(PostAction::Remove)
                })
                .map(Some)
        };
        let Some(wb) = self.writeback.as_mut() else { return };
        let watched = inserted.map_err(|e| e.to_string()).and_then(|fence_source| {
            let timer = core.loop_handle.insert_source(Timer::from_duration(WRITEBACK_DEADLINE), |_, _, state| {
                if let Some((d, core)) = state.drm() {
                    // This timer drops itself; the fence's source goes.
                    if let Some((Some(fence_source), _)) = d.writeback.as_mut().and_then(|wb| wb.waiting.take()) {
                        core.loop_handle.remove(fence_source);
                    }
                    d.writeback_lost(core);
                }
                TimeoutAction::Drop
            });
            match timer {
                Ok(timer) => Ok((fence_source, timer)),
                Err(err) => {
                    if let Some(source) = fence_source {
                        core.loop_handle.remove(source);
                    }
                    Err(err.to_string())
                }
            }
        });
        match watched {
            Ok(tokens) => wb.waiting = Some(tokens),
            Err(err) => {
                tracing::error!(%err, "cannot watch the writeback fence: the screenshot fails");
                self.writeback_lost(core);
            }
        }
    }

    /// The writeback's fence was not signalled in time (or cannot be watched): its screenshots
    /// fail with the reason, and later ones are vitrine's composition.
    pub(super) fn writeback_lost(&mut self, core: &mut Core) {
        let Some(wb) = self.writeback.as_mut() else { return };
        if let Some((fence_source, timer)) = wb.waiting.take() {
            if let Some(source) = fence_source {
                core.loop_handle.remove(source);
            }
            core.loop_handle.remove(timer);
        }
        let mut captures = std::mem::take(&mut wb.in_flight);
        // Those waiting for the next commit go too: nothing will carry them now.
        for head in self.heads.iter_mut().filter(|h| Some(h.crtc) == wb.crtc) {
            captures.append(&mut head.captures);
        }
        wb.lost = true;
        self.stats.writeback_timeouts += 1;
        let output = self.heads.iter().find(|h| Some(h.crtc) == wb.crtc).map(|h| h.output.name()).unwrap_or_default();
        tracing::warn!(
            output,
            deadline_ms = WRITEBACK_DEADLINE.as_millis() as u64,
            captures = captures.len(),
            "the writeback connector's fence was not signalled: screenshots of this output are vitrine's composition from now on"
        );
        let reason = format!(
            "the display's writeback of {output} did not complete within {} s (the kernel never signalled it); \
             ask again: screenshots are vitrine's own composition from now on",
            WRITEBACK_DEADLINE.as_secs()
        );
        for done in captures {
            let reason = reason.clone();
            core.defer(move |state| done(state, Err(reason)));
        }
    }

    /// The writeback fence signalled (or the flip of a commit without one came): the buffer
    /// holds the frame.
    pub(super) fn writeback_done(&mut self, core: &mut Core) {
        let Some(wb) = self.writeback.as_mut() else { return };
        if let Some((_, timer)) = wb.waiting.take() {
            // The fence's source removes itself.
            core.loop_handle.remove(timer);
        }
        let captures = std::mem::take(&mut wb.in_flight);
        tracing::debug!(captures = captures.len(), "writeback done");
        if captures.is_empty() {
            return;
        }
        let image = match wb.buffer.as_ref() {
            Some(b) => {
                RgbaImage::from_raw(b.width, b.height, b.to_rgba()).ok_or_else(|| "bad writeback size".to_string())
            }
            None => Err("no writeback buffer".to_string()),
        };
        self.stats.writeback_captures += 1;
        let output = self.heads.iter().find(|h| Some(h.crtc) == wb.crtc).map(|h| h.output.clone());
        for done in captures {
            let result = match (&image, &output) {
                (Ok(image), Some(output)) => Ok((output.clone(), image.clone())),
                (Err(e), _) => Err(e.clone()),
                (_, None) => Err("the output went away".to_string()),
            };
            core.defer(move |state| done(state, result));
        }
        // Captures asked for meanwhile ride on the next commit.
        let waiting: Vec<Output> =
            self.heads.iter().filter(|h| !h.captures.is_empty()).map(|h| h.output.clone()).collect();
        for output in waiting {
            core.queue_redraw(&output);
        }
    }
}
