//! FWHT streams (vicodec's test codec): frames back to back, each a 44-byte big-endian header
//! (two magic words, version, visible width and height, flags, colour description, payload size)
//! and its payload. vitrine demuxes them to drive stateful V4L2 decoders; the streams carry no
//! timing, so pictures are spaced at 25 per second.

use std::path::Path;
use std::time::Duration;

use super::{AccessUnit, Codec, DemuxError, Demuxed, StreamInfo};

pub const MAGIC: [u8; 8] = [0x4f, 0x4f, 0x4f, 0x4f, 0xff, 0xff, 0xff, 0xff];
const HEADER: usize = 44;
const FLAG_I_FRAME: u32 = 1 << 10;
const FPS: f64 = 25.0;

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Split an FWHT stream into frames; a cut or damaged tail is reported, the frames before it kept.
pub fn open(path: &Path, data: &[u8]) -> Result<Demuxed, DemuxError> {
    let corrupt = |reason: String| DemuxError::Corrupt { path: path.to_path_buf(), reason };
    let mut units = Vec::new();
    let mut damage = None;
    let mut size = None;
    let mut at = 0;
    while at < data.len() {
        let header = &data[at..];
        if header.len() < HEADER || header[..8] != MAGIC {
            damage = Some(corrupt(format!("no FWHT frame header at byte {at}")));
            break;
        }
        let (version, w, h, flags, payload) =
            (be32(header, 8), be32(header, 12), be32(header, 16), be32(header, 20), be32(header, 40) as usize);
        if !(1..=3).contains(&version) || w == 0 || h == 0 {
            damage = Some(corrupt(format!("frame {} at byte {at}: version {version}, {w}x{h}", units.len())));
            break;
        }
        if header.len() < HEADER + payload {
            damage = Some(corrupt(format!(
                "frame {} is cut short ({} of {} bytes)",
                units.len(),
                header.len(),
                HEADER + payload
            )));
            break;
        }
        size.get_or_insert((w, h));
        units.push(AccessUnit {
            data: header[..HEADER + payload].to_vec(),
            pts: Duration::from_secs_f64(units.len() as f64 / FPS),
            keyframe: flags & FLAG_I_FRAME != 0,
        });
        at += HEADER + payload;
    }
    let Some((width, height)) = size else {
        return Err(damage.unwrap_or_else(|| corrupt("no frame".into())));
    };
    let info = StreamInfo {
        codec: Codec::Fwht,
        width,
        height,
        profile_idc: 0,
        level_idc: 0,
        fps: Some(FPS),
        sps: Vec::new(),
        pps: Vec::new(),
        colour: crate::video::colour::Colour::conventional(height),
    };
    Ok(Demuxed { info, units, damage })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: u32, h: u32, i_frame: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = MAGIC.to_vec();
        for v in [3, w, h, if i_frame { 0x000A_0400 } else { 0x000A_0000 }, 3, 0, 0, 0, payload.len() as u32] {
            f.extend_from_slice(&v.to_be_bytes());
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frames_are_split_by_their_headers_and_damage_is_reported() {
        let mut stream = frame(640, 480, true, &[1, 2, 3]);
        stream.extend(frame(640, 480, false, &[4; 10]));
        let d = open(Path::new("a.fwht"), &stream).unwrap();
        assert_eq!(d.info.codec, Codec::Fwht);
        assert_eq!((d.info.width, d.info.height), (640, 480));
        assert_eq!(d.units.len(), 2);
        assert_eq!(d.units[0].data.len(), HEADER + 3);
        assert!(d.units[0].keyframe && !d.units[1].keyframe);
        assert_eq!(d.units[1].pts, Duration::from_millis(40));
        assert!(d.damage.is_none());

        // Cut inside the second frame: the first one plays, the cut is named.
        let cut = open(Path::new("b.fwht"), &stream[..stream.len() - 4]).unwrap();
        assert_eq!(cut.units.len(), 1);
        assert!(cut.damage.unwrap().to_string().contains("cut short"));
        // Nothing valid at all.
        assert!(open(Path::new("c.fwht"), &stream[..20]).is_err());
    }
}
