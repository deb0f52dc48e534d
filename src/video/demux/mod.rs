//! Files to H.264 access units: MP4/MOV (ISO-BMFF, `mp4.rs`), Matroska/WebM (`matroska.rs`), raw
//! Annex-B streams (`annexb.rs`) and vicodec's FWHT (`fwht.rs`). Each
//! access unit comes in Annex-B form (start codes; SPS and PPS in front of every keyframe of a
//! container's stream), with its
//! presentation time and whether it is a keyframe. What vitrine cannot decode is refused up front
//! with the reason: other codecs, 10-bit, 4:2:2/4:4:4, interlaced streams.

mod annexb;
mod fwht;
mod matroska;
mod mp4;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use fwht::MAGIC as FWHT_MAGIC;
pub(crate) use matroska::{matroska_error, open_file as open_matroska, MatroskaHead};
pub(crate) use mp4::open_reader as open_mp4;

/// What a file is, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Container {
    Mp4,
    Matroska,
    Fwht,
    AnnexB,
    Unknown,
}

impl Container {
    /// The kind of the file whose first bytes are `head`.
    fn sniff(head: &[u8]) -> Container {
        if head.get(4..8) == Some(b"ftyp".as_slice()) {
            Container::Mp4
        } else if head.get(..4) == Some(EBML_MAGIC.as_slice()) {
            Container::Matroska
        } else if head.get(..8) == Some(fwht::MAGIC.as_slice()) {
            Container::Fwht
        } else if head.get(..4) == Some(START_CODE.as_slice()) || head.get(..3) == Some(&START_CODE[1..]) {
            Container::AnnexB
        } else {
            Container::Unknown
        }
    }
}

/// What kind of file `path` is (for its other tracks: sound).
pub(crate) fn container(path: &Path) -> std::io::Result<Container> {
    let mut head = [0u8; 8];
    let n = File::open(path)?.read(&mut head)?;
    Ok(Container::sniff(&head[..n]))
}

/// Run a container reader built on another crate, whose checks vitrine does not own: a panic in
/// it (an index that does not add up, arithmetic that overflows) is this file's corruption, told
/// as such, not the end of the thread reading it. What vitrine checks itself before (box sizes,
/// sample sizes) never gets that far.
pub(crate) fn guarded<T>(
    format: &str,
    path: &Path,
    read: impl FnOnce() -> Result<T, DemuxError>,
) -> Result<T, DemuxError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|payload| {
        let message = crate::process::panic_message(payload.as_ref());
        Err(DemuxError::Corrupt { path: path.to_path_buf(), reason: format!("the {format} reader gave up: {message}") })
    })
}

use h264_reader::nal::sps::{ChromaFormat, FrameMbsFlags, SeqParameterSet};
use h264_reader::rbsp::BitReader;

#[derive(Debug, thiserror::Error)]
pub enum DemuxError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "{path}: not a video file vitrine knows (neither MP4/MOV, Matroska/WebM, an H.264 Annex-B stream nor FWHT)"
    )]
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
    /// The pictures' matrix and range (the SPS's VUI, or the convention for the height).
    pub colour: crate::video::colour::Colour,
}

/// One access unit (a coded picture) in Annex-B form.
#[derive(Debug, Clone)]
pub struct AccessUnit {
    pub data: Vec<u8>,
    /// Presentation time; for Annex-B streams (which carry none) the decode-order time at `fps`.
    pub pts: Duration,
    pub keyframe: bool,
}

pub(super) const START_CODE: [u8; 4] = [0, 0, 0, 1];
/// The largest raw Annex-B or FWHT stream read (into memory, whole): containers are streamed.
const MAX_RAW_STREAM: u64 = 32 << 20;
/// The first bytes of a Matroska or WebM file (the EBML header's ID).
const EBML_MAGIC: [u8; 4] = [0x1a, 0x45, 0xdf, 0xa3];

/// A container's sample (NAL units each behind a big-endian length of `len_size` bytes) in
/// Annex-B form, with the parameter sets in front of a keyframe. Errors say what is malformed.
pub(super) fn length_prefixed_to_annexb(
    bytes: &[u8],
    len_size: usize,
    parameter_sets: Option<[&[u8]; 2]>,
) -> Result<Vec<u8>, String> {
    let mut data = Vec::with_capacity(bytes.len() + 64);
    for ps in parameter_sets.into_iter().flatten() {
        data.extend_from_slice(&START_CODE);
        data.extend_from_slice(ps);
    }
    let mut i = 0;
    while i < bytes.len() {
        let Some(prefix) = bytes.get(i..i + len_size) else {
            return Err(format!("{} stray bytes after the last NAL unit", bytes.len() - i));
        };
        let len = prefix.iter().fold(0usize, |n, &b| n << 8 | b as usize);
        i += len_size;
        if len == 0 || i + len > bytes.len() {
            return Err(format!("NAL length {len} runs past the sample"));
        }
        data.extend_from_slice(&START_CODE);
        data.extend_from_slice(&bytes[i..i + len]);
        i += len;
    }
    Ok(data)
}

/// Check a SPS against what vitrine decodes, and describe the stream (`container`: what the
/// container says of its colour).
pub(super) fn describe(
    path: &Path,
    sps_nal: &[u8],
    pps_nal: &[u8],
    fps: Option<f64>,
    container: crate::video::colour::Stated,
) -> Result<StreamInfo, DemuxError> {
    let corrupt = |reason: String| DemuxError::Corrupt { path: path.to_path_buf(), reason };
    let rbsp = crate::video::h264::rbsp(sps_nal).map_err(|e| corrupt(format!("SPS: {e}")))?;
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
        colour: crate::video::colour::Colour::of_stream(
            sps.vui_parameters.as_ref().and_then(|v| v.video_signal_type.as_ref()),
            container,
            height,
        ),
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
    // Looked at before opening: opening a FIFO waits for a writer, a device may do anything.
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        let kind = if meta.is_dir() { "a directory" } else { "not a regular file (a FIFO, socket or device)" };
        return Err(DemuxError::Unsupported { path: path.to_path_buf(), reason: kind.into() });
    }
    let mut head = [0u8; 12];
    let mut file = File::open(path).map_err(io)?;
    let n = file.read(&mut head).map_err(io)?;
    let whole = |parse: fn(&Path, &[u8]) -> Result<Demuxed, DemuxError>, send: &mut dyn FnMut(Loaded) -> bool| {
        // Raw streams are split in memory: bounded, whatever their size.
        if meta.len() > MAX_RAW_STREAM {
            return Err(DemuxError::Unsupported {
                path: path.to_path_buf(),
                reason: format!(
                    "a raw stream of {} MiB (vitrine reads raw streams up to {} MiB: put it in a container, \
                     `ffmpeg -i IN -c copy OUT.mkv`)",
                    meta.len() >> 20,
                    MAX_RAW_STREAM >> 20
                ),
            });
        }
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
    match Container::sniff(&head[..n]) {
        Container::Mp4 => guarded("MP4", path, || mp4::stream(path, send)),
        Container::Matroska => guarded("Matroska", path, || matroska::stream(path, send)),
        Container::Fwht => guarded("FWHT", path, || whole(fwht::open, send)),
        Container::AnnexB => guarded("Annex-B", path, || whole(annexb::open, send)),
        Container::Unknown => Err(DemuxError::UnknownFormat { path: path.to_path_buf() }),
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

#[cfg(test)]
mod tests {
    use super::matroska::parse_avcc;
    use super::*;

    #[test]
    fn only_regular_files_are_read_and_raw_streams_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.h264");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Refused without opening it (opening would wait for a writer forever).
        let err = open(&fifo).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        let err = open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("a directory"), "{err}");
        let err = open(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        // A raw stream over the bound: refused from its size, not read.
        let big = dir.path().join("big.h264");
        let f = File::create(&big).unwrap();
        std::io::Write::write_all(&mut &f, &START_CODE).unwrap();
        f.set_len(MAX_RAW_STREAM + 1).unwrap();
        let err = open(&big).unwrap_err().to_string();
        assert!(err.contains("raw stream of 32 MiB"), "{err}");
    }

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

        // A cut Matroska file plays its complete blocks and names the damage.
        let mkv = clip(dir.path(), "full.mkv", &[SRC, "-t", "2", "-c:v", "libx264"]);
        let bytes = std::fs::read(&mkv).unwrap();
        let cut = dir.path().join("cut.mkv");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let d = open(&cut).expect("the valid part plays");
        assert!(!d.units.is_empty() && d.units.len() < 48, "{} units", d.units.len());
        let damage = d.damage.expect("the damage is reported").to_string();
        assert!(damage.contains("cut.mkv"), "{damage}");
    }

    /// Remux one x264 stream (`-c copy`) into `name`.
    fn remux(dir: &Path, from: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        let status = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
            .arg(from)
            .args(["-c", "copy"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "ffmpeg failed for {name}");
        path
    }

    #[test]
    fn matroska_yields_the_same_access_units_as_mp4() {
        let dir = tempfile::tempdir().unwrap();
        let mp4 = clip(dir.path(), "b.mp4", &[SRC, "-t", "2", "-c:v", "libx264", "-profile:v", "main", "-bf", "2"]);
        let mkv = remux(dir.path(), &mp4, "b.mkv");
        let (a, b) = (open(&mp4).unwrap(), open(&mkv).unwrap());
        assert_eq!(b.info.fps.map(|f| (f * 1000.0).round()), Some(24000.0));
        assert_eq!(StreamInfo { fps: None, ..b.info }, StreamInfo { fps: None, ..a.info }, "the same stream");
        assert!(b.damage.is_none(), "{:?}", b.damage);
        assert_eq!(b.units.len(), 48);
        // Matroska keeps the B-frame delay in its timestamps; the player counts from the first.
        let zero = |units: &[AccessUnit]| units.iter().map(|u| u.pts).min().unwrap();
        let (za, zb) = (zero(&a.units), zero(&b.units));
        for (i, (x, y)) in a.units.iter().zip(&b.units).enumerate() {
            assert!(x.data == y.data, "unit {i}: the bytes differ");
            // Matroska's timestamps are in milliseconds.
            let (px, py) = ((x.pts - za).as_secs_f64(), (y.pts - zb).as_secs_f64());
            assert!((px - py).abs() <= 0.001, "unit {i}: pts {px} and {py}");
            assert_eq!(y.keyframe, x.keyframe, "unit {i}");
        }
    }

    #[test]
    fn matroska_codecs_other_than_h264_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let vp9 = clip(dir.path(), "v.webm", &[SRC, "-t", "1", "-c:v", "libvpx-vp9", "-deadline", "realtime"]);
        let err = open(&vp9).unwrap_err().to_string();
        assert!(err.contains("v.webm") && err.contains("VP9 video"), "{err}");
        let bytes = [EBML_MAGIC.as_slice(), b"but nothing Matroska after it"].concat();
        let fake = dir.path().join("fake.mkv");
        std::fs::write(&fake, bytes).unwrap();
        let err = open(&fake).unwrap_err().to_string();
        assert!(err.contains("fake.mkv") && err.contains("corrupt"), "{err}");
    }

    #[test]
    fn avcc_records_and_length_prefixes() {
        let record = [1, 77, 0, 30, 0xfd, 0xe1, 0, 2, 0x67, 1, 1, 0, 1, 0x68];
        assert_eq!(parse_avcc(&record), Ok((vec![0x67, 1], vec![0x68], 2)));
        assert!(parse_avcc(&record[..9]).unwrap_err().contains("cut short"));
        assert!(parse_avcc(&[0, 1, 2, 3, 4, 5, 6]).unwrap_err().contains("not an avcC"));
        let sample = [0, 2, 0x65, 9, 0, 1, 0x41];
        let annexb = length_prefixed_to_annexb(&sample, 2, Some([&[0x67], &[0x68]])).unwrap();
        assert_eq!(annexb, [0, 0, 0, 1, 0x67, 0, 0, 0, 1, 0x68, 0, 0, 0, 1, 0x65, 9, 0, 0, 0, 1, 0x41]);
        assert!(length_prefixed_to_annexb(&sample[..5], 2, None).unwrap_err().contains("stray"));
        assert!(length_prefixed_to_annexb(&sample[..6], 2, None).unwrap_err().contains("runs past"));
    }
}
