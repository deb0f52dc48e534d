//! Raw H.264 Annex-B streams: NAL units behind start codes, split into access units. They carry
//! no timing, so pictures are spaced at the SPS's frame rate (25 per second without one).

use std::path::Path;
use std::time::Duration;

use super::{describe, nal_units, AccessUnit, DemuxError, Demuxed, START_CODE};

pub(super) fn open(path: &Path, data: &[u8]) -> Result<Demuxed, DemuxError> {
    let nals = nal_units(data);
    let sps = nals
        .iter()
        .find(|n| n[0] & 0x1f == 7)
        .ok_or_else(|| DemuxError::Corrupt { path: path.to_path_buf(), reason: "no sequence parameter set".into() })?;
    let pps = nals
        .iter()
        .find(|n| n[0] & 0x1f == 8)
        .ok_or_else(|| DemuxError::Corrupt { path: path.to_path_buf(), reason: "no picture parameter set".into() })?;
    let info = describe(path, sps, pps, None, Default::default())?;
    let fps = info.fps.unwrap_or(25.0);
    let mut units: Vec<AccessUnit> = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut has_vcl = false;
    let mut keyframe = false;
    let flush = |current: &mut Vec<u8>, keyframe: bool, units: &mut Vec<AccessUnit>| {
        if !current.is_empty() {
            let pts = Duration::from_secs_f64(units.len() as f64 / fps);
            units.push(AccessUnit { data: std::mem::take(current), pts, keyframe });
        }
    };
    for nal in nals {
        let kind = nal[0] & 0x1f;
        let vcl = kind == 1 || kind == 5;
        // A new picture starts at a parameter set/SEI/delimiter after a slice, or at a slice
        // whose first_mb_in_slice is 0 (ue(v) 0 is the single bit 1).
        let first_slice = vcl && nal.len() > 1 && nal[1] & 0x80 != 0;
        if has_vcl && (matches!(kind, 6..=9) || first_slice) {
            flush(&mut current, keyframe, &mut units);
            has_vcl = false;
            keyframe = false;
        }
        current.extend_from_slice(&START_CODE);
        current.extend_from_slice(nal);
        has_vcl |= vcl;
        keyframe |= kind == 5;
    }
    if has_vcl {
        flush(&mut current, keyframe, &mut units);
    }
    Ok(Demuxed { info, units, damage: None })
}
