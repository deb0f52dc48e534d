//! Files to H.264 access units: MP4/MOV (ISO-BMFF) and raw Annex-B streams. Each access unit
//! comes in Annex-B form (start codes; SPS and PPS in front of every keyframe of an MP4), with its
//! presentation time and whether it is a keyframe. What vitrine cannot decode is refused up front
//! with the reason: other codecs, 10-bit, 4:2:2/4:4:4, interlaced streams.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use h264_reader::nal::sps::{ChromaFormat, FrameMbsFlags, SeqParameterSet};
use h264_reader::rbsp::{decode_nal, BitReader};

#[derive(Debug, thiserror::Error)]
pub enum DemuxError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a video file vitrine knows (neither MP4/MOV, an H.264 Annex-B stream nor FWHT)")]
    UnknownFormat { path: PathBuf },
    #[error("{path}: unsupported: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("{path}: corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// The coding of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    #[default]
    H264,
    /// vicodec's FWHT (Fast Walsh-Hadamard Transform) test codec: decoded by stateful V4L2
    /// decoders only; what vitrine's stateful path is tested with.
    Fwht,
}

impl Codec {
    pub fn name(self) -> &'static str {
        match self {
            Codec::H264 => "H.264",
            Codec::Fwht => "FWHT",
        }
    }
}

/// What a stream is, from its sequence parameter set (or frame header).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    pub codec: Codec,
    pub width: u32,
    pub height: u32,
    pub profile_idc: u8,
    pub level_idc: u8,
    /// Frames per second, from the container or the SPS timing info (`None`: not known).
    pub fps: Option<f64>,
    /// The raw SPS and PPS NAL units (without start codes).
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
}

/// One access unit (a coded picture) in Annex-B form.
#[derive(Debug, Clone)]
pub struct AccessUnit {
    pub data: Vec<u8>,
    /// Presentation time; for Annex-B streams (which carry none) the decode-order time at `fps`.
    pub pts: Duration,
    pub keyframe: bool,
}

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Check a SPS against what vitrine decodes, and describe the stream.
fn describe(path: &Path, sps_nal: &[u8], pps_nal: &[u8], fps: Option<f64>) -> Result<StreamInfo, DemuxError> {
    let corrupt = |reason: String| DemuxError::Corrupt { path: path.to_path_buf(), reason };
    let rbsp = decode_nal(sps_nal).map_err(|e| corrupt(format!("SPS: {e}")))?;
    let sps = SeqParameterSet::from_bits(BitReader::new(&rbsp[..])).map_err(|e| corrupt(format!("SPS: {e:?}")))?;
    let unsupported = |reason: String| DemuxError::Unsupported { path: path.to_path_buf(), reason };
    let chroma = &sps.chroma_info;
    if chroma.bit_depth_luma_minus8 > 0 || chroma.bit_depth_chroma_minus8 > 0 {
        return Err(unsupported(format!("{}-bit H.264 (only 8-bit is decoded)", chroma.bit_depth_luma_minus8 + 8)));
    }
    match chroma.chroma_format {
        ChromaFormat::YUV420 => {}
        other => return Err(unsupported(format!("{other:?} chroma (only 4:2:0 is decoded)"))),
    }
    if let FrameMbsFlags::Fields { .. } = sps.frame_mbs_flags {
        return Err(unsupported("interlaced H.264 (field coding is not decoded)".into()));
    }
    let (width, height) = sps.pixel_dimensions().map_err(|e| corrupt(format!("SPS dimensions: {e:?}")))?;
    Ok(StreamInfo {
        codec: Codec::H264,
        width,
        height,
        profile_idc: sps.profile_idc.into(),
        level_idc: sps.level_idc,
        fps: fps.or_else(|| sps.fps()).filter(|f| f.is_finite() && *f > 0.0),
        sps: sps_nal.to_vec(),
        pps: pps_nal.to_vec(),
    })
}

/// A demuxed file: its stream and its access units in decode order.
#[derive(Debug)]
pub struct Demuxed {
    pub info: StreamInfo,
    pub units: Vec<AccessUnit>,
    /// What was wrong with the part of the file that could not be read, if anything: the units
    /// before it are valid and playable.
    pub damage: Option<DemuxError>,
}

/// What reading a file yields, in order: the stream's description, its access units in decode
/// order, and what was wrong with the rest of the file if it could not all be read.
#[derive(Debug)]
pub enum Loaded {
    Header(StreamInfo),
    Unit(AccessUnit),
    /// The file is cut or corrupt from here on; the units before are valid.
    Damage(DemuxError),
}

/// Read `path`, handing each part to `send` as soon as it is read (`send` returns false to stop
/// early). MP4 samples are read one by one from the index, so playback can start long before a
/// large file is read and memory stays bounded by what the receiver holds; raw Annex-B and FWHT
/// streams are split in memory first. An error means the file cannot be played at all.
pub fn stream(path: &Path, send: &mut dyn FnMut(Loaded) -> bool) -> Result<(), DemuxError> {
    let io = |source| DemuxError::Io { path: path.to_path_buf(), source };
    let mut head = [0u8; 12];
    let mut file = File::open(path).map_err(io)?;
    let n = file.read(&mut head).map_err(io)?;
    let whole = |parse: fn(&Path, &[u8]) -> Result<Demuxed, DemuxError>, send: &mut dyn FnMut(Loaded) -> bool| {
        let mut data = Vec::new();
        File::open(path).and_then(|mut f| f.read_to_end(&mut data)).map_err(io)?;
        let d = parse(path, &data)?;
        if send(Loaded::Header(d.info)) {
            for unit in d.units {
                if !send(Loaded::Unit(unit)) {
                    return Ok(());
                }
            }
            if let Some(damage) = d.damage {
                send(Loaded::Damage(damage));
            }
        }
        Ok(())
    };
    if n >= 8 && &head[4..8] == b"ftyp" {
        stream_mp4(path, send)
    } else if n >= 8 && head[..8] == super::fwht::MAGIC {
        whole(super::fwht::open, send)
    } else if n >= 4 && (head[..4] == START_CODE || head[..3] == START_CODE[1..]) {
        whole(open_annexb, send)
    } else {
        Err(DemuxError::UnknownFormat { path: path.to_path_buf() })
    }
}

/// Read a whole file into memory (tests, benchmarks; the player streams instead).
pub fn open(path: &Path) -> Result<Demuxed, DemuxError> {
    let (mut info, mut units, mut damage) = (None, Vec::new(), None);
    stream(path, &mut |item| {
        match item {
            Loaded::Header(i) => info = Some(i),
            Loaded::Unit(u) => units.push(u),
            Loaded::Damage(d) => damage = Some(d),
        }
        true
    })?;
    let info = info.ok_or_else(|| DemuxError::Corrupt { path: path.to_path_buf(), reason: "no stream".into() })?;
    Ok(Demuxed { info, units, damage })
}

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

/// NAL units of an Annex-B byte stream (without start codes).
pub fn nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map(|&n| n - 3).unwrap_or(data.len());
        // A 4-byte start code leaves a zero byte at the end of the previous unit.
        while end > s && data[end - 1] == 0 && k + 1 < starts.len() {
            end -= 1;
        }
        if end > s {
            out.push(&data[s..end]);
        }
    }
    out
}

fn open_annexb(path: &Path, data: &[u8]) -> Result<Demuxed, DemuxError> {
    let nals = nal_units(data);
    let sps = nals
        .iter()
        .find(|n| n[0] & 0x1f == 7)
        .ok_or_else(|| DemuxError::Corrupt { path: path.to_path_buf(), reason: "no sequence parameter set".into() })?;
    let pps = nals
        .iter()
        .find(|n| n[0] & 0x1f == 8)
        .ok_or_else(|| DemuxError::Corrupt { path: path.to_path_buf(), reason: "no picture parameter set".into() })?;
    let info = describe(path, sps, pps, None)?;
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

fn stream_mp4(path: &Path, send: &mut dyn FnMut(Loaded) -> bool) -> Result<(), DemuxError> {
    let io = |source| DemuxError::Io { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io)?;
    let size = declared_size(path).map_err(io)?;
    let corrupt = |reason: String| DemuxError::Corrupt { path: path.to_path_buf(), reason };
    let mut reader = mp4::Mp4Reader::read_header(BufReader::new(file), size).map_err(|e| corrupt(e.to_string()))?;
    let mut video = None;
    for (id, track) in reader.tracks() {
        if track.track_type().ok() != Some(mp4::TrackType::Video) {
            continue;
        }
        match track.media_type() {
            Ok(mp4::MediaType::H264) => video = Some(*id),
            Ok(other) => {
                let name = match other {
                    mp4::MediaType::H265 => "HEVC".to_string(),
                    mp4::MediaType::VP9 => "VP9".to_string(),
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
        let mut data = Vec::with_capacity(sample.bytes.len() + 64);
        if sample.is_sync {
            for ps in [&sps, &pps] {
                data.extend_from_slice(&START_CODE);
                data.extend_from_slice(ps);
            }
        }
        // AVCC: 4-byte big-endian lengths (what every muxer vitrine meets writes).
        let bytes = &sample.bytes[..];
        let mut i = 0;
        let mut bad = None;
        while i + 4 <= bytes.len() {
            let len = u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize;
            i += 4;
            if len == 0 || i + len > bytes.len() {
                bad = Some(format!("sample {sample_id}: NAL length {len} runs past the sample"));
                break;
            }
            data.extend_from_slice(&START_CODE);
            data.extend_from_slice(&bytes[i..i + len]);
            i += len;
        }
        if let Some(reason) = bad {
            send(Loaded::Damage(corrupt(reason)));
            break;
        }
        let pts_ticks = (sample.start_time as i64 + sample.rendering_offset as i64).max(0) as u64;
        let pts = Duration::from_secs_f64(pts_ticks as f64 / timescale as f64);
        if !send(Loaded::Unit(AccessUnit { data, pts, keyframe: sample.is_sync })) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Make a clip with ffmpeg/x264 (never kept in the repository).
    fn clip(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
        let path = dir.join(name);
        let status = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
            .args(args)
            .arg(&path)
            .status()
            .expect("ffmpeg is not installed: run scripts/deps test");
        assert!(status.success(), "ffmpeg failed for {name}");
        path
    }

    const SRC: &str = "testsrc2=size=320x240:rate=24";

    #[test]
    fn mp4_main_profile_with_b_frames() {
        let dir = tempfile::tempdir().unwrap();
        let path = clip(dir.path(), "main.mp4", &[SRC, "-t", "2", "-c:v", "libx264", "-profile:v", "main", "-bf", "2"]);
        let d = open(&path).unwrap();
        assert_eq!((d.info.width, d.info.height, d.info.profile_idc), (320, 240, 77));
        assert_eq!(d.units.len(), 48);
        assert!(d.units[0].keyframe);
        assert!(d.units[0].data.starts_with(&[0, 0, 0, 1, 0x67]), "SPS in front of the keyframe");
        assert!(d.damage.is_none());
        // With B-frames the presentation order differs from the decode order; all 48 times exist.
        let mut pts: Vec<u128> = d.units.iter().map(|u| u.pts.as_millis()).collect();
        assert_ne!(pts, {
            let mut s = pts.clone();
            s.sort();
            s
        });
        pts.sort();
        assert_eq!(pts.last().map(|p| (p + 20) / 1000), Some(2), "the last frame is due near 2 s");
        assert_eq!(d.info.fps.map(|f| f.round()), Some(24.0));
    }

    #[test]
    fn mp4_streams_its_header_then_units_and_stops_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = clip(dir.path(), "s.mp4", &[SRC, "-t", "2", "-c:v", "libx264", "-bf", "2"]);
        let whole = open(&path).unwrap();
        let mut parts = Vec::new();
        stream(&path, &mut |part| {
            parts.push(part);
            parts.len() < 6
        })
        .unwrap();
        assert!(matches!(parts[0], Loaded::Header(_)), "{:?}", parts[0]);
        assert_eq!(parts.len(), 6, "nothing is read after the receiver says stop");
        for (part, unit) in parts[1..].iter().zip(&whole.units) {
            let Loaded::Unit(u) = part else { panic!("{part:?}") };
            assert_eq!((&u.data, u.pts, u.keyframe), (&unit.data, unit.pts, unit.keyframe));
        }
    }

    #[test]
    fn annexb_odd_size_high_profile() {
        let dir = tempfile::tempdir().unwrap();
        let path = clip(
            dir.path(),
            "odd.h264",
            &["testsrc2=size=322x182:rate=24", "-t", "1", "-c:v", "libx264", "-profile:v", "high", "-slices", "3"],
        );
        let d = open(&path).unwrap();
        assert_eq!((d.info.width, d.info.height, d.info.profile_idc), (322, 182, 100));
        assert_eq!(d.units.len(), 24, "three slices per picture are one access unit");
        assert_eq!(d.units.iter().filter(|u| u.keyframe).count(), 1);
        assert_eq!(d.units[12].pts, Duration::from_millis(500));
    }

    #[test]
    fn unsupported_streams_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("hevc.mp4", vec![SRC, "-t", "1", "-c:v", "libx265", "-x265-params", "log-level=error"], "HEVC"),
            ("ten.mp4", vec![SRC, "-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p10le"], "10-bit"),
            ("444.mp4", vec![SRC, "-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv444p"], "YUV444"),
            ("tff.mp4", vec![SRC, "-t", "1", "-c:v", "libx264", "-flags", "+ilme+ildct"], "interlaced"),
        ];
        for (name, args, why) in cases {
            let path = clip(dir.path(), name, &args);
            match open(&path) {
                Err(DemuxError::Unsupported { path: p, reason }) => {
                    assert!(reason.contains(why), "{name}: {reason}");
                    assert_eq!(p, path);
                }
                Err(other) => panic!("{name}: {other}"),
                Ok(_) => panic!("{name} was accepted"),
            }
        }
    }

    #[test]
    fn garbage_missing_and_truncated_files() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.mp4");
        std::fs::write(&garbage, b"this is not a video at all").unwrap();
        assert!(matches!(open(&garbage), Err(DemuxError::UnknownFormat { .. })));
        let missing = dir.path().join("missing.mp4");
        let err = open(&missing).unwrap_err().to_string();
        assert!(err.contains("missing.mp4") && err.contains("cannot read"), "{err}");

        // moov at the end: cut the file and the index is gone.
        let full = clip(dir.path(), "full.mp4", &[SRC, "-t", "2", "-c:v", "libx264"]);
        let bytes = std::fs::read(&full).unwrap();
        let cut = dir.path().join("cut.mp4");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(open(&cut), Err(DemuxError::Corrupt { .. })), "a truncated index is an error");

        // moov at the front: the first half of the samples still plays, and the damage is named.
        let fast = clip(dir.path(), "fast.mp4", &[SRC, "-t", "2", "-c:v", "libx264", "-movflags", "+faststart"]);
        let bytes = std::fs::read(&fast).unwrap();
        let cut = dir.path().join("fastcut.mp4");
        std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let d = open(&cut).expect("the valid part plays");
        assert!(!d.units.is_empty() && d.units.len() < 48, "{} units", d.units.len());
        let damage = d.damage.expect("the damage is reported").to_string();
        assert!(damage.contains("fastcut.mp4"), "{damage}");

        // A truncated Annex-B stream yields its complete access units.
        let raw = clip(dir.path(), "raw.h264", &[SRC, "-t", "1", "-c:v", "libx264"]);
        let bytes = std::fs::read(&raw).unwrap();
        let cut = dir.path().join("rawcut.h264");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let d = open(&cut).unwrap();
        assert!(d.units.len() > 1 && d.units.len() < 24, "{} units", d.units.len());
    }
}
