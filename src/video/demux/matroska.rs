//! Matroska/WebM: the H.264 track's frames, with the avcC record from CodecPrivate.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::Duration;

use super::{describe, length_prefixed_to_annexb, AccessUnit, DemuxError, Loaded};

/// An AVCDecoderConfigurationRecord (MP4 `avcC`, Matroska's CodecPrivate for H.264): the first
/// SPS and PPS, and the size of the NAL length prefixes.
pub(super) fn parse_avcc(record: &[u8]) -> Result<(Vec<u8>, Vec<u8>, usize), String> {
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
/// past the end of the file are renamed to an element nobody knows (and a CRC-32 first in the
/// segment is made padding: see `hide_missing_index_entries`). A file cut short (a copy
/// that stopped) keeps its clusters up to the cut, but its index entries (ffmpeg writes the Cues
/// last) lead nowhere, and the demuxer refuses such a file outright; this way its valid part
/// plays and the cut is reported where the pictures stop.
pub(crate) struct MatroskaHead {
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
    const CRC32: u32 = 0xBF;
    const VOID: u8 = 0xEC;
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
        // An EBML header of unknown or absurd size: not a file whose index needs hiding.
        let Some(at) = (n + m).checked_add(usize::try_from(header).unwrap_or(usize::MAX)) else { return };
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
        // The demuxer looks for the SeekHead from the segment's start, again and again past a
        // CRC-32 element there: it would never get past one. A CRC-32 first in the segment
        // becomes padding (Void), which the demuxer steps over.
        // (It passes over bytes that cannot start an ID first, as here.)
        let mut first = segment;
        while b.get(first).is_some_and(|x| x & 0xF0 == 0) {
            first += 1;
        }
        let crc_first = ebml_id(b, first).map(|(id, _)| id) == Some(Self::CRC32);
        for at in hide {
            self.head[at..at + 2].copy_from_slice(&Self::UNKNOWN);
        }
        if crc_first {
            self.head[first] = Self::VOID;
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
pub(crate) fn matroska_error(e: matroska_demuxer::DemuxError) -> String {
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

/// The file's header and track list (for the video here, and for the audio track in
/// `audio::track`).
pub(crate) fn open_file(path: &Path) -> Result<matroska_demuxer::MatroskaFile<BufReader<MatroskaHead>>, DemuxError> {
    let io = |source| DemuxError::Io { path: path.to_path_buf(), source };
    let corrupt = |reason: String| DemuxError::Corrupt { path: path.to_path_buf(), reason };
    let file = MatroskaHead::open(path).map_err(io)?;
    matroska_demuxer::MatroskaFile::open(BufReader::new(file))
        .map_err(|e| corrupt(format!("Matroska: {}", matroska_error(e))))
}

/// A Matroska Colour element's matrix and range, in the VUI's code points.
fn stated_colour(colour: &matroska_demuxer::Colour) -> crate::video::colour::Stated {
    use matroska_demuxer::{MatrixCoefficients as M, Range};
    crate::video::colour::Stated {
        matrix_coefficients: colour.matrix_coefficients().and_then(|m| match m {
            M::Bt709 => Some(1),
            M::Bt470bg => Some(5),
            M::Smpte170 => Some(6),
            M::Bt2020Ncl => Some(9),
            M::Bt2020Cl => Some(10),
            _ => None,
        }),
        full_range: colour.range().and_then(|r| match r {
            Range::Broadcast => Some(false),
            Range::Full => Some(true),
            _ => None,
        }),
    }
}

pub(super) fn stream(path: &Path, send: &mut dyn FnMut(Loaded) -> bool) -> Result<(), DemuxError> {
    use matroska_demuxer::{Frame, TrackType};
    let corrupt = |reason: String| DemuxError::Corrupt { path: path.to_path_buf(), reason };
    let unsupported = |reason: String| DemuxError::Unsupported { path: path.to_path_buf(), reason };
    let mut mkv = open_file(path)?;
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
    let colour = track.video().and_then(|v| v.colour()).map(stated_colour).unwrap_or_default();
    if !send(Loaded::Header(describe(path, &sps, &pps, fps, colour)?)) {
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
