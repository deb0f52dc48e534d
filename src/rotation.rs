//! Output rotation for screens mounted on their side or upside down (portrait signage).
//!
//! `rotation = 90` says the panel is turned a quarter turn clockwise (its top edge on the
//! viewer's right). Clients and the layout see an upright output of the turned size (portrait);
//! vitrine draws the picture into the panel's framebuffer turned a quarter turn counter-clockwise,
//! with hardware plane rotation where the plane can, by composition otherwise. Touchscreens are
//! mounted with their panel: touch points are turned back to the upright layout.

use serde::{Deserialize, Serialize};
use smithay::utils::Transform;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub enum Rotation {
    #[default]
    R0,
    R90,
    R180,
    R270,
}

impl TryFrom<u32> for Rotation {
    type Error = String;
    fn try_from(degrees: u32) -> Result<Self, String> {
        match degrees {
            0 => Ok(Rotation::R0),
            90 => Ok(Rotation::R90),
            180 => Ok(Rotation::R180),
            270 => Ok(Rotation::R270),
            other => Err(format!("rotation must be 0, 90, 180 or 270 (degrees), not {other}")),
        }
    }
}

impl From<Rotation> for u32 {
    fn from(r: Rotation) -> u32 {
        match r {
            Rotation::R0 => 0,
            Rotation::R90 => 90,
            Rotation::R180 => 180,
            Rotation::R270 => 270,
        }
    }
}

/// A rectangle (x, y, width, height).
pub type Rect = (i32, i32, u32, u32);

impl Rotation {
    pub fn quarter_turns(self) -> bool {
        matches!(self, Rotation::R90 | Rotation::R270)
    }

    /// The upright (logical) size of a panel of `size` pixels.
    pub fn logical_size(self, size: (u32, u32)) -> (u32, u32) {
        if self.quarter_turns() {
            (size.1, size.0)
        } else {
            size
        }
    }

    /// Where a rectangle of the upright layout lands in the framebuffer of a panel of `panel`
    /// pixels.
    pub fn to_panel(self, r: Rect, panel: (u32, u32)) -> Rect {
        let (pw, ph) = (panel.0 as i32, panel.1 as i32);
        let (x, y, w, h) = r;
        match self {
            Rotation::R0 => r,
            Rotation::R90 => (y, ph - x - w as i32, h, w),
            Rotation::R180 => (pw - x - w as i32, ph - y - h as i32, w, h),
            Rotation::R270 => (pw - y - h as i32, x, h, w),
        }
    }

    /// The upright-layout point under panel point `p` (a touch on a panel of `panel` pixels).
    pub fn to_upright(self, p: (f64, f64), panel: (u32, u32)) -> (f64, f64) {
        let (pw, ph) = (panel.0 as f64, panel.1 as f64);
        match self {
            Rotation::R0 => p,
            Rotation::R90 => (ph - p.1, p.0),
            Rotation::R180 => (pw - p.0, ph - p.1),
            Rotation::R270 => (p.1, pw - p.0),
        }
    }

    /// The KMS plane rotation that turns a buffer the way the picture is turned in the panel
    /// (DRM_MODE_ROTATE_* turn counter-clockwise).
    pub fn drm_bits(self) -> u32 {
        match self {
            Rotation::R0 => 1,
            Rotation::R90 => 1 << 1,
            Rotation::R180 => 1 << 2,
            Rotation::R270 => 1 << 3,
        }
    }

    /// The same turn as smithay's output transform (wl_output.transform, for clients and for
    /// rendering the composition).
    pub fn transform(self) -> Transform {
        match self {
            Rotation::R0 => Transform::Normal,
            Rotation::R90 => Transform::_90,
            Rotation::R180 => Transform::_180,
            Rotation::R270 => Transform::_270,
        }
    }

    pub fn from_transform(t: Transform) -> Rotation {
        match t {
            Transform::_90 => Rotation::R90,
            Transform::_180 => Rotation::R180,
            Transform::_270 => Rotation::R270,
            _ => Rotation::R0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PANEL: (u32, u32) = (1024, 768);

    #[test]
    fn the_upright_top_left_goes_where_the_turned_panel_has_it() {
        // Panel turned clockwise: the viewer's top-left corner is the panel's bottom-left.
        assert_eq!(Rotation::R90.logical_size(PANEL), (768, 1024));
        assert_eq!(Rotation::R90.to_panel((0, 0, 10, 20), PANEL), (0, 758, 20, 10));
        // Upside down: top-left is bottom-right.
        assert_eq!(Rotation::R180.to_panel((0, 0, 10, 20), PANEL), (1014, 748, 10, 20));
        // Turned counter-clockwise: top-left is the panel's top-right.
        assert_eq!(Rotation::R270.to_panel((0, 0, 10, 20), PANEL), (1004, 0, 20, 10));
        assert_eq!(Rotation::R0.to_panel((5, 6, 7, 8), PANEL), (5, 6, 7, 8));
    }

    #[test]
    fn touch_points_turn_back_to_the_upright_layout() {
        for r in [Rotation::R0, Rotation::R90, Rotation::R180, Rotation::R270] {
            // A 1x1 rectangle's panel position is where a touch on it must land.
            for (x, y) in [(0, 0), (100, 37), (700, 1000)] {
                let size = r.logical_size(PANEL);
                if x >= size.0 as i32 || y >= size.1 as i32 {
                    continue;
                }
                let p = r.to_panel((x, y, 1, 1), PANEL);
                let (ux, uy) = r.to_upright((p.0 as f64 + 0.5, p.1 as f64 + 0.5), PANEL);
                assert_eq!((ux.floor() as i32, uy.floor() as i32), (x, y), "{r:?}");
            }
        }
        // Touching 3/4 across, 1/4 down the panel turned clockwise.
        assert_eq!(Rotation::R90.to_upright((768.0, 192.0), PANEL), (576.0, 768.0));
    }

    #[test]
    fn degrees_parse_and_other_values_are_refused() {
        assert_eq!(Rotation::try_from(270), Ok(Rotation::R270));
        assert!(Rotation::try_from(45).unwrap_err().contains("0, 90, 180 or 270"));
    }
}
