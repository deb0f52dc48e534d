//! Files to H.264 access units: MP4/MOV (ISO-BMFF), Matroska/WebM and raw Annex-B streams. Each
//! access unit comes in Annex-B form (start codes; SPS and PPS in front of every keyframe of a
//! container's stream), with its
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
/// The first bytes of a Matroska or WebM file (the EBML header's ID).
const EBML_MAGIC: [u8; 4] = [0x1a, 0x45, 0xdf, 0xa3];

/// A container's sample (NAL units each behind a big-endian length of `len_size` bytes) in
/// Annex-B form, with the parameter sets in front of a keyframe. Errors say what is malformed.
fn length_prefixed_to_annexb(
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

/// An AVCDecoderConfigurationRecord (MP4 `avcC`, Matroska's CodecPrivate for H.264): the first
/// SPS and PPS, and the size of the NAL length prefixes.
fn parse_avcc(record: &[u8]) -> Result<(Vec<u8>, Vec<u8>, usize), String> {
    let short = || format!("avcC record cut short ({} bytes)", record.len());
    if record.len() < 7 || record[0] != 1 {
        return Err(format!("not an avcC record (version {:?}, {} bytes)", record.first(), record.len()));
    }
    let len_size = (record[4] & 3) as usize + 1;
    let mut at = 5;
    let read_sets = |at: &mut usize, count_mask: u8| -> Result<Vec<u8>, String> {
        let count = record.get(*at).ok_or_else(short)? & count_mask;
        *at += 1;
        let mut first = None;
        for _ in 0..count {
            let len = record.get(*at..*at + 2).ok_or_else(short)?;
            let len = u16::from_be_bytes([len[0], len[1]]) as usize;
            let set = record.get(*at + 2..*at + 2 + len).ok_or_else(short)?;
            first.get_or_insert_with(|| set.to_vec());
            *at += 2 + len;
        }
        first.ok_or_else(|| "avcC record without a parameter set".to_string())
    };
    let sps = read_sets(&mut at, 0x1f)?;
    let pps = read_sets(&mut at, 0xff)?;
    Ok((sps, pps, len_size))
}

/// The name of a video codec vitrine does not decode, from a Matroska codec ID.
fn matroska_codec_name(id: &str) -> String {
    match id {
        "V_MPEGH/ISO/HEVC" => "HEVC".into(),
        "V_VP8" => "VP8".into(),
        "V_VP9" => "VP9".into(),
        "V_AV1" => "AV1".into(),
        other => format!("'{other}'"),
    }
}

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
    } else if n >= 4 && head[..4] == EBML_MAGIC {
        stream_matroska(path, send)
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

/// An EBML element ID at `at` (with its length marker, as IDs are written) and its length.
fn ebml_id(b: &[u8], at: usize) -> Option<(u32, usize)> {
    let len = b.get(at)?.leading_zeros() as usize + 1;
    let bytes = b.get(at..at + len).filter(|_| len <= 4)?;
    Some((bytes.iter().fold(0u32, |n, &x| n << 8 | x as u32), len))
}

/// An EBML data size at `at` and its length; `u64::MAX` for "unknown" (all value bits set).
fn ebml_size(b: &[u8], at: usize) -> Option<(u64, usize)> {
    let len = b.get(at)?.leading_zeros() as usize + 1;
    let bytes = b.get(at..at + len).filter(|_| len <= 8)?;
    let value = bytes.iter().fold(0u64, |n, &x| n << 8 | x as u64) & (u64::MAX >> (64 - 7 * len));
    Some((if value == u64::MAX >> (64 - 7 * len) { u64::MAX } else { value }, len))
}

/// An EBML element: where it starts, its ID, where its data starts and the data's size.
struct Element {
    start: usize,
    id: u32,
    data: usize,
    size: u64,
}

/// The children of the EBML element whose data is `b[from..to]`.
fn ebml_children(b: &[u8], from: usize, to: usize) -> Vec<Element> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to.min(b.len()) {
        let Some((id, n)) = ebml_id(b, at) else { break };
        let Some((size, m)) = ebml_size(b, at + n) else { break };
        out.push(Element { start: at, id, data: at + n + m, size });
        if size == u64::MAX {
            break;
        }
        at = (at + n + m).saturating_add(size as usize);
    }
    out
}

/// A Matroska file served with its first bytes from memory, where SeekHead entries that point
/// past the end of the file are renamed to an element nobody knows. A file cut short (a copy
/// that stopped) keeps its clusters up to the cut, but its index entries (ffmpeg writes the Cues
/// last) lead nowhere, and the demuxer refuses such a file outright; this way its valid part
/// plays and the cut is reported where the pictures stop.
struct MatroskaHead {
    file: File,
    head: Vec<u8>,
    len: u64,
    pos: u64,
    file_pos: u64,
}

impl MatroskaHead {
    const SEGMENT: u32 = 0x1853_8067;
    const SEEK_HEAD: u32 = 0x114D_9B74;
    const SEEK: u32 = 0x4DBB;
    const SEEK_POSITION: u32 = 0x53AC;
    const CLUSTER: u32 = 0x1F43_B675;
    /// An element ID no Matroska reader knows (it is skipped).
    const UNKNOWN: [u8; 2] = [0x4D, 0xBC];

    fn open(path: &Path) -> std::io::Result<Self> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut head = Vec::new();
        (&mut file).take(64 * 1024).read_to_end(&mut head)?;
        let mut me = Self { file, head, len, pos: 0, file_pos: 0 };
        me.hide_missing_index_entries();
        Ok(me)
    }

    fn hide_missing_index_entries(&mut self) {
        let b = &self.head;
        let Some((_, n)) = ebml_id(b, 0) else { return };
        let Some((header, m)) = ebml_size(b, n) else { return };
        let at = n + m + header as usize;
        if ebml_id(b, at).map(|(id, _)| id) != Some(Self::SEGMENT) {
            return;
        }
        let Some((_, m)) = ebml_size(b, at + 4) else { return };
        let segment = at + 4 + m;
        let mut hide = Vec::new();
        for top in ebml_children(b, segment, b.len()) {
            if top.id == Self::CLUSTER {
                break;
            }
            if top.id != Self::SEEK_HEAD || top.size == u64::MAX {
                continue;
            }
            for seek in ebml_children(b, top.data, top.data.saturating_add(top.size as usize)) {
                if seek.id != Self::SEEK || seek.size == u64::MAX {
                    continue;
                }
                let fields = ebml_children(b, seek.data, seek.data.saturating_add(seek.size as usize));
                let position = fields.iter().find(|f| f.id == Self::SEEK_POSITION);
                let Some(target) = position.and_then(|f| b.get(f.data..f.data.saturating_add(f.size as usize))) else {
                    continue;
                };
                let target = target.iter().fold(0u64, |n, &x| n << 8 | x as u64);
                if (segment as u64).saturating_add(target) >= self.len {
                    hide.push(seek.start);
                }
            }
        }
        for at in hide {
            self.head[at..at + 2].copy_from_slice(&Self::UNKNOWN);
        }
    }
}

impl Read for MatroskaHead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = if let Some(rest) = self.head.get(self.pos as usize..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            n
        } else {
            if self.file_pos != self.pos {
                use std::io::Seek;
                self.file_pos = self.file.seek(std::io::SeekFrom::Start(self.pos))?;
            }
            let n = self.file.read(buf)?;
            self.file_pos += n as u64;
            n
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for MatroskaHead {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            std::io::SeekFrom::Start(n) => Some(n),
            std::io::SeekFrom::End(d) => self.len.checked_add_signed(d),
            std::io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos =
            target.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

/// The Matroska reader's errors, said plainly (its own wording of I/O errors is unhelpful).
fn matroska_error(e: matroska_demuxer::DemuxError) -> String {
    match e {
        matroska_demuxer::DemuxError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the file ends in the middle of an element (cut short?)".into()
        }
        matroska_demuxer::DemuxError::IoError(e) => e.to_string(),
        matroska_demuxer::DemuxError::ElementSizeExceedsStream { declared, available } => {
            format!("an element of {declared} bytes has only {available} left in the file (cut short?)")
        }
        other => other.to_string(),
    }
}

fn stream_matroska(path: &Path, send: &mut dyn FnMut(Loaded) -> bool) -> Result<(), DemuxError> {
    use matroska_demuxer::{Frame, MatroskaFile, TrackType};
    let io = |source| DemuxError::Io { path: path.to_path_buf(), source };
    let corrupt = |reason: String| DemuxError::Corrupt { path: path.to_path_buf(), reason };
    let unsupported = |reason: String| DemuxError::Unsupported { path: path.to_path_buf(), reason };
    let file = MatroskaHead::open(path).map_err(io)?;
    let mut mkv =
        MatroskaFile::open(BufReader::new(file)).map_err(|e| corrupt(format!("Matroska: {}", matroska_error(e))))?;
    let track = mkv
        .tracks()
        .iter()
        .find(|t| t.track_type() == TrackType::Video)
        .ok_or_else(|| unsupported("no video track".into()))?;
    if track.codec_id() != "V_MPEG4/ISO/AVC" {
        let name = matroska_codec_name(track.codec_id());
        return Err(unsupported(format!("{name} video: vitrine decodes H.264 only")));
    }
    if track.content_encodings().is_some_and(|e| !e.is_empty()) {
        return Err(unsupported("compressed or encrypted Matroska track".into()));
    }
    let record = track.codec_private().ok_or_else(|| corrupt("H.264 track without its avcC record".into()))?;
    let (sps, pps, len_size) = parse_avcc(record).map_err(corrupt)?;
    let fps = track.default_duration().map(|ns| 1e9 / ns.get() as f64);
    let number = track.track_number().get();
    let tick = mkv.info().timestamp_scale().get();
    if !send(Loaded::Header(describe(path, &sps, &pps, fps)?)) {
        return Ok(());
    }
    let mut frame = Frame::default();
    let mut read = 0usize;
    loop {
        match mkv.next_frame(&mut frame) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                send(Loaded::Damage(corrupt(format!("after picture {read}: {}", matroska_error(e)))));
                break;
            }
        }
        if frame.track != number {
            continue;
        }
        // SimpleBlocks carry a keyframe flag; for BlockGroups an IDR slice says it.
        let idr = || {
            let mut i = 0;
            while let Some(prefix) = frame.data.get(i..i + len_size) {
                let len = prefix.iter().fold(0usize, |n, &b| n << 8 | b as usize);
                if frame.data.get(i + len_size).is_some_and(|h| h & 0x1f == 5) {
                    return true;
                }
                i += len_size + len;
            }
            false
        };
        let keyframe = frame.is_keyframe.unwrap_or_else(idr);
        let sets = keyframe.then_some([&sps[..], &pps[..]]);
        let data = match length_prefixed_to_annexb(&frame.data, len_size, sets) {
            Ok(data) => data,
            Err(reason) => {
                send(Loaded::Damage(corrupt(format!("picture {}: {reason}", read + 1))));
                break;
            }
        };
        read += 1;
        let pts = Duration::from_nanos(frame.timestamp.saturating_mul(tick));
        if !send(Loaded::Unit(AccessUnit { data, pts, keyframe })) {
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
