//! The writeback connector: screenshots of what the planes show, carried by a head's next
//! commit and read back when the kernel's out-fence signals.

use drm::control::atomic::AtomicModeReq;
use drm::control::crtc;
use drm::control::property::Value;
use smithay::output::Output;
use smithay::reexports::calloop::generic::Generic;
use smithay::reexports::calloop::{Interest, Mode as LoopMode, PostAction};

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
}

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
    let Some(wb) = writeback.as_mut().filter(|wb| wb.crtc == Some(head.crtc)) else { return Ok(false) };
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
        let writeback_here = self.writeback.as_ref().is_some_and(|wb| wb.crtc == Some(head.crtc));
        if writeback_here && head.modeset_done && !self.paused && core.displays_on {
            tracing::debug!(output = %output.name(), "screenshot: the next commit carries a writeback");
            head.captures.push(done);
            core.queue_redraw(output);
            return Ok(());
        }
        tracing::info!(output = %output.name(), "no writeback connector on this output: the screenshot is vitrine's composition");
        let size = head.rotation.logical_size(head.size());
        Err((done, self.compositor.capture(&self.painter, scene, size)))
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
        let inserted =
            core.loop_handle.insert_source(Generic::new(fence, Interest::READ, LoopMode::Level), |_, _, state| {
                if let Some((d, core)) = state.drm() {
                    d.writeback_done(core);
                }
                Ok(PostAction::Remove)
            });
        if let Err(err) = inserted {
            tracing::error!(%err, "cannot watch the writeback fence");
        }
    }

    /// The writeback fence signalled (or the flip of a commit without one came): the buffer
    /// holds the frame.
    pub(super) fn writeback_done(&mut self, core: &mut Core) {
        let Some(wb) = self.writeback.as_mut() else { return };
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
