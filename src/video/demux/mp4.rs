//! MP4/MOV (ISO-BMFF): the H.264 track's samples, read one by one from the index.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::Duration;

use super::{describe, length_prefixed_to_annexb, AccessUnit, DemuxError, Loaded};
use crate::video::colour::Stated;

/// The box at `offset`: its size (0: to the end of the file), type and header length (8, or 16
/// with a 64-bit size); `None` past the end.
fn box_header(f: &mut File, offset: u64, len: u64) -> std::io::Result<Option<(u64, [u8; 4], u64)>> {
    use std::io::{Seek, SeekFrom};
    if offset.saturating_add(8) > len {
        return Ok(None);
    }
    f.seek(SeekFrom::Start(offset))?;
    let mut head = [0u8; 16];
    let n = f.read(&mut head)?;
    let kind = [head[4], head[5], head[6], head[7]];
    Ok(match u32::from_be_bytes([head[0], head[1], head[2], head[3]]) {
        1 if n >= 16 => Some((
            u64::from_be_bytes([head[8], head[9], head[10], head[11], head[12], head[13], head[14], head[15]]),
            kind,
            16,
        )),
        1 => None,
        s => Some((s as u64, kind, 8)),
    })
}

/// Boxes made of boxes (after so many bytes of their own fields), which the index reader walks.
fn children_at(kind: &[u8; 4]) -> Option<u64> {
    match kind {
        b"moov" | b"trak" | b"mdia" | b"minf" | b"stbl" | b"dinf" | b"edts" | b"udta" | b"mvex" | b"moof" | b"traf"
        | b"mfra" | b"ilst" => Some(0),
        b"stsd" => Some(8),
        // A full box (version and flags first) in ISO files; QuickTime's starts with its boxes.
        b"meta" => Some(4),
        b"avc1" | b"avc3" | b"hvc1" | b"hev1" | b"vp09" | b"av01" | b"encv" => Some(78),
        _ => None,
    }
}

/// Check the box tree the index reader will walk: every box inside another is at least its own
/// header long and ends inside its parent. A box that declares 0 or a few bytes would make the
/// reader go round forever (it steps back to the same header); one that runs past its parent
/// would make it read its neighbour. Returns the size the top-level boxes declare: larger than
/// the file when it was cut short, so the index (if it came first) still opens and the missing
/// samples are reported one by one.
fn check_boxes(f: &mut File, len: u64) -> Result<u64, String> {
    use std::io::{Seek, SeekFrom};
    let name = |k: &[u8; 4]| String::from_utf8_lossy(k).into_owned();
    // (from, to, depth): the ranges still to walk.
    let mut ranges = vec![(0u64, len, 0usize)];
    let (mut boxes, mut declared) = (0usize, len);
    while let Some((mut at, end, depth)) = ranges.pop() {
        // Fewer than 8 bytes left in a box are padding (QuickTime ends some lists with a zero
        // word), not a box.
        while at < end && (depth == 0 || end - at >= 8) {
            let Some((size, kind, header)) = box_header(f, at, len).map_err(|e| e.to_string())? else {
                if depth == 0 {
                    break;
                }
                return Err(format!("box at byte {at} is cut short"));
            };
            boxes += 1;
            if boxes > 1_000_000 {
                return Err("more than a million boxes".into());
            }
            let size = match size {
                // To the end of the file: only for a top-level box.
                0 if depth == 0 => len - at,
                s if s < header => return Err(format!("box '{}' at byte {at} declares {s} bytes", name(&kind))),
                s => s,
            };
            let box_end = at.saturating_add(size);
            if depth > 0 && box_end > end {
                return Err(format!("box '{}' at byte {at} ({size} bytes) runs past its parent", name(&kind)));
            }
            if let Some(mut skip) = children_at(&kind) {
                if depth >= 16 {
                    return Err(format!("box '{}' at byte {at}: boxes nested more than 16 deep", name(&kind)));
                }
                if kind == *b"meta" {
                    let mut head = [0u8; 12];
                    f.seek(SeekFrom::Start(at + header)).map_err(|e| e.to_string())?;
                    let n = f.read(&mut head).map_err(|e| e.to_string())?;
                    if n == 12 && head[..4] != [0; 4] && &head[8..12] == b"hdlr" {
                        skip = 0;
                    }
                }
                let from = at + header + skip;
                if from <= box_end.min(len) {
                    ranges.push((from, box_end.min(len), depth + 1));
                } else {
                    return Err(format!("box '{}' at byte {at} is too short for its fields", name(&kind)));
                }
            }
            at = box_end;
        }
        if depth == 0 {
            declared = at.max(len);
        }
    }
    Ok(declared)
}

/// What each track's H.264 sample entry says of its colour in a `colr` box, by track id: ISO's
/// 'nclx' gives the matrix and range, QuickTime's 'nclc' the matrix. Walks a box tree
/// `check_boxes` accepted (sizes inside their parents, 16 deep at most).
fn stated_colours(f: &mut File, len: u64) -> std::io::Result<HashMap<u32, Stated>> {
    use std::io::{Seek, SeekFrom};
    struct Walk<'a> {
        f: &'a mut File,
        len: u64,
        track: Option<u32>,
        found: HashMap<u32, Stated>,
    }
    impl Walk<'_> {
        fn fields<const N: usize>(&mut self, at: u64) -> std::io::Result<Option<[u8; N]>> {
            let mut bytes = [0u8; N];
            self.f.seek(SeekFrom::Start(at))?;
            Ok(self.f.read_exact(&mut bytes).ok().map(|_| bytes))
        }
        fn boxes(&mut self, mut at: u64, end: u64, parent: [u8; 4], depth: usize) -> std::io::Result<()> {
            while end.saturating_sub(at) >= 8 {
                let Some((size, kind, header)) = box_header(self.f, at, self.len)? else { break };
                let size = if size == 0 { self.len - at } else { size };
                if size < header {
                    break;
                }
                let box_end = at.saturating_add(size).min(end);
                match &kind {
                    b"trak" => {
                        self.track = None;
                        self.boxes(at + header, box_end, kind, depth + 1)?;
                    }
                    b"tkhd" => {
                        // Version 1 has 64-bit times before the track id, version 0 32-bit ones.
                        if let Some(head) = self.fields::<24>(at + header)? {
                            let id = if head[0] == 1 { &head[20..24] } else { &head[12..16] };
                            self.track = Some(u32::from_be_bytes([id[0], id[1], id[2], id[3]]));
                        }
                    }
                    b"colr" if matches!(&parent, b"avc1" | b"avc3") => {
                        if let (Some(track), Some(c)) = (self.track, self.fields::<11>(at + header)?) {
                            // 'nclx': primaries, transfer, matrix (16 bits each), then the range
                            // in the top bit; 'nclc' the same without it; 'rICC'/'prof' (an ICC
                            // profile) state neither.
                            let full_range = (&c[..4] == b"nclx").then_some(c[10] & 0x80 != 0);
                            if matches!(&c[..4], b"nclx" | b"nclc") {
                                let matrix = u16::from_be_bytes([c[8], c[9]]);
                                let matrix_coefficients = u8::try_from(matrix).ok().filter(|&m| m != 2);
                                self.found.insert(track, Stated { matrix_coefficients, full_range });
                            }
                        }
                    }
                    b"meta" => {}
                    _ => {
                        if let Some(skip) = children_at(&kind).filter(|_| depth < 16) {
                            self.boxes(at + header + skip, box_end, kind, depth + 1)?;
                        }
                    }
                }
                at = at.saturating_add(size);
            }
            Ok(())
        }
    }
    let mut walk = Walk { f, len, track: None, found: HashMap::new() };
    walk.boxes(0, len, *b"    ", 0)?;
    Ok(walk.found)
}

/// The largest sample vitrine reads: a coded picture is a few MiB at most (a 4K intra picture
/// at a high rate), and the demuxer holds it twice (as read, and in Annex-B form).
const MAX_SAMPLE: u32 = 16 << 20;

/// The size the index gives sample `id` (from 1), where it says without a search: `None` for
/// fragmented files (their largest sample is checked once, at open).
fn indexed_sample_size(track: &::mp4::Mp4Track, id: u32) -> Option<u32> {
    if !track.trafs.is_empty() {
        return None;
    }
    let stsz = &track.trak.mdia.minf.stbl.stsz;
    if stsz.sample_size != 0 {
        return Some(stsz.sample_size);
    }
    stsz.sample_sizes.get(id.checked_sub(1)? as usize).copied()
}

/// The file, its length and the size its top-level boxes declare, once its box tree was checked
/// (see `check_boxes`); rewound.
fn checked_file(path: &Path) -> Result<(File, u64, u64), DemuxError> {
    let io = |source| DemuxError::Io { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(io)?;
    let corrupt = |reason: String| DemuxError::Corrupt { path: path.to_path_buf(), reason };
    let len = file.metadata().map_err(io)?.len();
    let size = check_boxes(&mut file, len).map_err(corrupt)?;
    std::io::Seek::rewind(&mut file).map_err(io)?;
    Ok((file, len, size))
}

/// The file's index, read once its box tree was checked: for the video here, and for the audio
/// track (`audio::track`).
pub(crate) fn open_reader(path: &Path) -> Result<::mp4::Mp4Reader<BufReader<File>>, DemuxError> {
    let (file, _, size) = checked_file(path)?;
    read_index(path, file, size)
}

fn read_index(path: &Path, file: File, size: u64) -> Result<::mp4::Mp4Reader<BufReader<File>>, DemuxError> {
    let corrupt = |reason: String| DemuxError::Corrupt { path: path.to_path_buf(), reason };
    ::mp4::Mp4Reader::read_header(BufReader::new(file), size).map_err(|e| corrupt(e.to_string()))
}

pub(super) fn stream(path: &Path, send: &mut dyn FnMut(Loaded) -> bool) -> Result<(), DemuxError> {
    let corrupt = |reason: String| DemuxError::Corrupt { path: path.to_path_buf(), reason };
    let io = |source| DemuxError::Io { path: path.to_path_buf(), source };
    let (mut file, len, size) = checked_file(path)?;
    let colours = stated_colours(&mut file, len).map_err(io)?;
    std::io::Seek::rewind(&mut file).map_err(io)?;
    let mut reader = read_index(path, file, size)?;
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
        let colour = colours.get(&track_id).copied().unwrap_or_default();
        (describe(path, &sps, &pps, fps, colour)?, track.timescale().max(1), track.sample_count())
    };
    let (sps, pps) = (info.sps.clone(), info.pps.clone());
    if !send(Loaded::Header(info)) {
        return Ok(());
    }
    let largest_fragment_sample = reader.tracks()[&track_id]
        .trafs
        .iter()
        .filter_map(|t| t.trun.as_ref())
        .flat_map(|t| t.sample_sizes.iter().copied())
        .max()
        .unwrap_or(0);
    if largest_fragment_sample > MAX_SAMPLE {
        return Err(corrupt(format!(
            "a sample of {largest_fragment_sample} bytes (vitrine reads at most {MAX_SAMPLE})"
        )));
    }
    for sample_id in 1..=count {
        let size = indexed_sample_size(&reader.tracks()[&track_id], sample_id).unwrap_or(0);
        if size > MAX_SAMPLE {
            send(Loaded::Damage(corrupt(format!(
                "sample {sample_id} of {count} declares {size} bytes (vitrine reads at most {MAX_SAMPLE})"
            ))));
            break;
        }
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
