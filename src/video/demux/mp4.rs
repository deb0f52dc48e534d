//! MP4/MOV (ISO-BMFF): the H.264 track's samples, read one by one from the index.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::Duration;

use super::{describe, length_prefixed_to_annexb, AccessUnit, DemuxError, Loaded};

/// The size the file's top-level boxes declare: larger than the file when it was cut short, so
/// the index (if it came first) still opens and the missing samples are reported one by one.
fn declared_size(path: &Path) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let mut offset = 0u64;
    while offset + 8 <= len {
        f.seek(SeekFrom::Start(offset))?;
        let mut head = [0u8; 16];
        let n = f.read(&mut head)?;
        let size = match u32::from_be_bytes([head[0], head[1], head[2], head[3]]) {
            0 => return Ok(len),
            1 if n >= 16 => {
                u64::from_be_bytes([head[8], head[9], head[10], head[11], head[12], head[13], head[14], head[15]])
            }
            s => s as u64,
        };
        if size < 8 {
            return Ok(len);
        }
        offset += size;
    }
    Ok(offset.max(len))
}

pub(super) fn stream(path: &Path, send: &mut dyn FnMut(Loaded) -> bool) -> Result<(), DemuxError> {
    let io = |source| DemuxError::Io { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io)?;
    let size = declared_size(path).map_err(io)?;
    let corrupt = |reason: String| DemuxError::Corrupt { path: path.to_path_buf(), reason };
    let mut reader = ::mp4::Mp4Reader::read_header(BufReader::new(file), size).map_err(|e| corrupt(e.to_string()))?;
    let mut video = None;
    for (id, track) in reader.tracks() {
        if track.track_type().ok() != Some(::mp4::TrackType::Video) {
            continue;
        }
        match track.media_type() {
            Ok(::mp4::MediaType::H264) => video = Some(*id),
            Ok(other) => {
                let name = match other {
                    ::mp4::MediaType::H265 => "HEVC".to_string(),
                    ::mp4::MediaType::VP9 => "VP9".to_string(),
                    other => other.to_string(),
                };
                return Err(DemuxError::Unsupported {
                    path: path.to_path_buf(),
                    reason: format!("{name} video: vitrine decodes H.264 only"),
                });
            }
            Err(_) => {
                let kind = track.box_type().map(|b| b.to_string()).unwrap_or_else(|_| "unknown".into());
                let name = match kind.as_str() {
                    "hvc1" | "hev1" => "HEVC".to_string(),
                    "av01" => "AV1".to_string(),
                    "vp09" => "VP9".to_string(),
                    other => format!("'{other}'"),
                };
                return Err(DemuxError::Unsupported {
                    path: path.to_path_buf(),
                    reason: format!("{name} video: vitrine decodes H.264 only"),
                });
            }
        }
    }
    let track_id =
        video.ok_or_else(|| DemuxError::Unsupported { path: path.to_path_buf(), reason: "no video track".into() })?;
    let (info, timescale, count) = {
        let track = &reader.tracks()[&track_id];
        let sps = track.sequence_parameter_set().map_err(|e| corrupt(format!("avcC: {e}")))?.to_vec();
        let pps = track.picture_parameter_set().map_err(|e| corrupt(format!("avcC: {e}")))?.to_vec();
        let fps = Some(track.frame_rate()).filter(|f| *f > 0.0);
        (describe(path, &sps, &pps, fps)?, track.timescale().max(1), track.sample_count())
    };
    let (sps, pps) = (info.sps.clone(), info.pps.clone());
    if !send(Loaded::Header(info)) {
        return Ok(());
    }
    for sample_id in 1..=count {
        let sample = match reader.read_sample(track_id, sample_id) {
            Ok(Some(s)) => s,
            Ok(None) => break,
            Err(e) => {
                send(Loaded::Damage(corrupt(format!("sample {sample_id} of {count}: {e}"))));
                break;
            }
        };
        // 4-byte big-endian lengths (the mp4 crate does not expose the avcC's size field; every
        // muxer vitrine meets writes 4).
        let sets = sample.is_sync.then_some([&sps[..], &pps[..]]);
        let data = match length_prefixed_to_annexb(&sample.bytes, 4, sets) {
            Ok(data) => data,
            Err(reason) => {
                send(Loaded::Damage(corrupt(format!("sample {sample_id}: {reason}"))));
                break;
            }
        };
        let pts_ticks = (sample.start_time as i64 + sample.rendering_offset as i64).max(0) as u64;
        let pts = Duration::from_secs_f64(pts_ticks as f64 / timescale as f64);
        if !send(Loaded::Unit(AccessUnit { data, pts, keyframe: sample.is_sync })) {
            break;
        }
    }
    Ok(())
}
