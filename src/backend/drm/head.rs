//! A head: one connector driven by one CRTC at one mode, with the planes it owns, its
//! composition buffers, its plane planner and what it has on screen. The DRM backend keeps a
//! head per connected connector it drives; heads come and go with connector hotplug.

use std::time::Duration;

use drm::control::crtc;
use smithay::backend::renderer::damage::OutputDamageTracker;
use smithay::output::Output;

use super::compose::CompositionBuffer;
use super::device::{ConnectorInfo, PlaneInfo, Props};
use super::plane::{self, InFlight, LayerReport, Scanout};
use super::planner::{self, PlaneKind};

/// One composition buffer with the damage tracker that knows what it holds.
pub struct Slot {
    pub buffer: CompositionBuffer,
    pub damage: OutputDamageTracker,
}

pub struct Head {
    pub connector: ConnectorInfo,
    pub crtc: crtc::Handle,
    /// The CRTC's index in the device's resources (the bit in planes' possible_crtcs).
    pub crtc_index: usize,
    pub crtc_props: Props,
    pub mode: drm::control::Mode,
    /// How the panel is turned (`[drm] rotation`): the output is upright, the framebuffer turned.
    pub rotation: crate::rotation::Rotation,
    pub primary: PlaneInfo,
    /// Other planes this head owns (overlays, cursor); disabled at modeset.
    pub others: Vec<PlaneInfo>,
    pub slots: Vec<Slot>,
    pub back: usize,
    pub output: Output,
    /// The mode is set and the CRTC lit (cleared by VT switches and plane reassignment).
    pub modeset_done: bool,
    /// The commit waiting for its page flip.
    pub in_flight: Option<InFlight>,
    /// Client buffers on screen (released only once replaced on screen).
    pub on_screen: Vec<smithay::backend::renderer::utils::Buffer>,
    /// The decoded picture on screen: its buffer stays out of the decoder until the next flip.
    pub on_screen_video: Option<crate::video::VideoFrame>,
    pub planner: planner::Planner,
    /// Planes enabled by the last commit.
    pub active_planes: Vec<u32>,
    /// Buffers of the last commit's plane layers, to skip commits that change nothing.
    pub(super) last_fbs: Vec<Option<Scanout>>,
    pub last_plan: Option<planner::Plan>,
    /// What `vitrine msg planes` reports for this output.
    pub report: Vec<LayerReport>,
    /// The mode's exact refresh period.
    pub refresh: Duration,
    /// Screenshots waiting for this head's next commit, which carries their writeback.
    pub captures: Vec<crate::backend::Captured>,
    /// Displays off was asked for while a commit was in flight: done at its flip.
    pub power_off: bool,
    /// The connector went away: the head is turned off at its flip and dropped.
    pub removing: bool,
    /// Commits refused in a row: how far down the display ladder the head is.
    pub commit_failures: u32,
    /// Layers stay composited (the ladder's second step) for this many more commits, then
    /// planes are tried again.
    pub composited_for: u32,
    /// A mode or rotation a configuration gave, taken at the head's next frame.
    pub pending: Option<Pending>,
    /// Composition buffers of the mode before: destroyed at the flip that takes them off screen.
    pub retired: Vec<Slot>,
}

/// A new mode and rotation for a lit head, with buffers of the new size when it differs.
pub struct Pending {
    pub mode: drm::control::Mode,
    pub rotation: crate::rotation::Rotation,
    pub slots: Option<Vec<Slot>>,
}

/// The commits a head stays fully composited after the kernel refused a plane plan, before
/// planes are tried again: long enough that a plan the kernel keeps refusing costs a failed
/// commit every ten seconds or so, not every frame.
const COMPOSITED_FOR: u32 = 600;

/// What a refused commit leads to, step by step (the display ladder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LadderStep {
    /// Forget the cached plans: the next frame plans again with TEST_ONLY commits.
    Replan,
    /// Put every layer in the composition.
    Composite,
    /// Set the mode again with everything composited.
    Modeset,
    /// Still refused: keep trying, slowly (the display may come back, or a hotplug changes it).
    Wait,
}

impl LadderStep {
    pub fn what(self) -> &'static str {
        match self {
            LadderStep::Replan => "planning again with test commits",
            LadderStep::Composite => "compositing every layer",
            LadderStep::Modeset => "setting the mode again",
            LadderStep::Wait => "retrying once a second",
        }
    }
}

impl Head {
    pub fn size(&self) -> (u32, u32) {
        let (w, h) = self.mode.size();
        (w as u32, h as u32)
    }

    pub fn plane(&self, id: u32) -> Option<&PlaneInfo> {
        std::iter::once(&self.primary).chain(&self.others).find(|p| u32::from(p.handle) == id)
    }

    pub fn name(&self) -> &str {
        &self.connector.name
    }

    /// Give the head a new set of planes (after another head came or went).
    pub fn set_planes(&mut self, primary: PlaneInfo, others: Vec<PlaneInfo>, layers_on_planes: bool) {
        let caps = std::iter::once(&primary).chain(&others).map(plane::plane_caps).collect();
        self.planner = planner::Planner::new(caps, self.crtc_index);
        self.planner.set_layers_on_planes(layers_on_planes);
        self.primary = primary;
        self.others = others;
        // A commit of this head in flight still flips: its event must find it, or the frame
        // scheduler waits for it until the flip timeout (a display plugged in or out froze the
        // other one for a second).
        let in_flight = self.in_flight.take();
        self.reset();
        self.in_flight = in_flight;
    }

    /// A commit of this head was refused: the next step of the display ladder, and when to try
    /// the next frame.
    pub fn commit_refused(&mut self) -> (LadderStep, Duration) {
        self.commit_failures += 1;
        let step = match self.commit_failures {
            1 => LadderStep::Replan,
            2 => LadderStep::Composite,
            3 => LadderStep::Modeset,
            _ => LadderStep::Wait,
        };
        match step {
            LadderStep::Replan => self.planner.invalidate(),
            LadderStep::Composite => {
                self.planner.set_layers_on_planes(false);
                self.planner.invalidate();
                self.composited_for = COMPOSITED_FOR;
            }
            LadderStep::Modeset => self.reset(),
            LadderStep::Wait => {}
        }
        let retry = if step == LadderStep::Wait { Duration::from_secs(1) } else { self.refresh };
        (step, retry)
    }

    /// A commit went through: the ladder starts again from the top; after a while on the
    /// composition alone, planes are tried again (`layers_on_planes`: the configured choice).
    /// Returns the refused commits this success ends.
    pub fn commit_accepted(&mut self, layers_on_planes: bool) -> u32 {
        if self.composited_for > 0 {
            self.composited_for -= 1;
            if self.composited_for == 0 {
                self.planner.set_layers_on_planes(layers_on_planes);
                self.planner.invalidate();
            }
        }
        std::mem::take(&mut self.commit_failures)
    }

    /// Forget what is on screen: the next frame sets the mode and every plane again (VT
    /// switch back, planes moved between heads).
    pub fn reset(&mut self) {
        self.modeset_done = false;
        self.in_flight = None;
        self.active_planes.clear();
        self.last_plan = None;
        self.last_fbs.clear();
        self.planner.invalidate();
        let (size, rotation) = (self.size(), self.rotation);
        for slot in &mut self.slots {
            slot.damage = damage_tracker(size, rotation);
        }
    }
}

/// Damage tracking for a composition buffer of a panel of `size`: the scene is upright, the
/// buffer is drawn turned with the panel.
pub fn damage_tracker(size: (u32, u32), rotation: crate::rotation::Rotation) -> OutputDamageTracker {
    OutputDamageTracker::new((size.0 as i32, size.1 as i32), 1.0, rotation.transform())
}

/// A plane as the sharing rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaneSlot {
    pub id: u32,
    pub kind: PlaneKind,
    pub possible_crtcs: u32,
}

/// The planes each head gets, for heads on the CRTCs `crtcs` (indices, in head order): per head
/// its primary plane (if one is free for it) and its other planes.
///
/// Each head takes a primary plane of its CRTC, preferring one that serves only that CRTC, and
/// likewise at most one cursor plane. Overlays are dealt out in id order, each to the head that
/// can use it and has the fewest overlays so far (the first such head on ties), so two heads on
/// a display controller whose windows can go anywhere (RK3566's VOP2) share them evenly.
pub fn share_planes(planes: &[PlaneSlot], crtcs: &[usize]) -> Vec<(Option<u32>, Vec<u32>)> {
    let mut taken = vec![false; planes.len()];
    let mut out: Vec<(Option<u32>, Vec<u32>)> = vec![(None, Vec::new()); crtcs.len()];
    let serves = |p: &PlaneSlot, crtc: usize| crtc < 32 && p.possible_crtcs & (1 << crtc) != 0;
    for kind in [PlaneKind::Primary, PlaneKind::Cursor] {
        for (head, &crtc) in crtcs.iter().enumerate() {
            let mut candidates: Vec<usize> = (0..planes.len())
                .filter(|&i| !taken[i] && planes[i].kind == kind && serves(&planes[i], crtc))
                .collect();
            candidates.sort_by_key(|&i| (planes[i].possible_crtcs.count_ones(), planes[i].id));
            if let Some(&i) = candidates.first() {
                taken[i] = true;
                match kind {
                    PlaneKind::Primary => out[head].0 = Some(planes[i].id),
                    _ => out[head].1.push(planes[i].id),
                }
            }
        }
    }
    let mut overlays: Vec<usize> =
        (0..planes.len()).filter(|&i| !taken[i] && planes[i].kind == PlaneKind::Overlay).collect();
    overlays.sort_by_key(|&i| planes[i].id);
    for i in overlays {
        let head = (0..crtcs.len())
            .filter(|&h| serves(&planes[i], crtcs[h]))
            .min_by_key(|&h| (out[h].1.iter().filter(|id| is_overlay(planes, **id)).count(), h));
        if let Some(h) = head {
            out[h].1.push(planes[i].id);
        }
    }
    for entry in &mut out {
        entry.1.sort();
    }
    out
}

fn is_overlay(planes: &[PlaneSlot], id: u32) -> bool {
    planes.iter().any(|p| p.id == id && p.kind == PlaneKind::Overlay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(id: u32, kind: PlaneKind, possible_crtcs: u32) -> PlaneSlot {
        PlaneSlot { id, kind, possible_crtcs }
    }

    #[test]
    fn each_head_gets_its_own_primary_and_cursor_and_overlays_are_shared() {
        // vkms with two CRTCs made through configfs: each CRTC its primary and cursor; overlays
        // usable by both.
        let planes = [
            plane(31, PlaneKind::Primary, 0b01),
            plane(32, PlaneKind::Overlay, 0b11),
            plane(33, PlaneKind::Overlay, 0b11),
            plane(34, PlaneKind::Cursor, 0b01),
            plane(41, PlaneKind::Primary, 0b10),
            plane(42, PlaneKind::Overlay, 0b11),
            plane(44, PlaneKind::Cursor, 0b10),
        ];
        let shared = share_planes(&planes, &[0, 1]);
        assert_eq!(shared[0], (Some(31), vec![32, 34, 42]));
        assert_eq!(shared[1], (Some(41), vec![33, 44]));
        // One head alone gets every plane it can use.
        assert_eq!(share_planes(&planes, &[1]), vec![(Some(41), vec![32, 33, 42, 44])]);
    }

    #[test]
    fn windows_that_serve_every_video_port_are_dealt_out_evenly() {
        // RK3566 VOP2: every window can go to any video port; the driver makes one window per
        // port the primary. Two heads on ports 0 and 1.
        let all = 0b111;
        let planes = [
            plane(1, PlaneKind::Primary, all),
            plane(2, PlaneKind::Primary, all),
            plane(3, PlaneKind::Overlay, all),
            plane(4, PlaneKind::Overlay, all),
            plane(5, PlaneKind::Overlay, all),
            plane(6, PlaneKind::Cursor, all),
        ];
        let shared = share_planes(&planes, &[0, 1]);
        assert_eq!(shared[0], (Some(1), vec![3, 5, 6]));
        assert_eq!(shared[1], (Some(2), vec![4]));
        // A third head finds no primary left: it is reported as None and cannot start.
        let shared = share_planes(&planes, &[0, 1, 2]);
        assert_eq!(shared[2].0, None);
    }
}
