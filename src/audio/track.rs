//! A playlist item's audio track: its packets read from the container (MP4 or Matroska) one at
//! a time and decoded (AAC-LC, with symphonia's decoder) into blocks of stereo samples, each with
//! its time relative to the item's first picture.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use symphonia_codec_aac::AacDecoder;
use symphonia_core::audio::GenericAudioBufferRef;
use symphonia_core::codecs::audio::well_known::CODEC_ID_AAC;
use symphonia_core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia_core::packet::PacketRef;

use crate::video::demux::{self, Container, DemuxError, MatroskaHead};

/// The largest audio packet read: an AAC frame is at most 768 bytes a channel; anything near
/// this is a corrupt index.
const MAX_PACKET: u32 = 1 << 20;

/// Packets in a row that fail to decode before the track is given up.
const MAX_BAD_PACKETS: u32 = 50;

/// What an item's file has for sound.
pub enum Opened {
    Track(Box<AudioTrack>),
    /// No audio track: the item plays in silence.
    NoAudio,
    /// An audio track vitrine does not decode (named): the item plays in silence.
    Unsupported(String),
}

/// Decoded samples: interleaved stereo, at `rate`, starting `at` seconds after the item's first
/// picture (negative: before it, the encoder's priming to be cut).
pub struct Block {
    pub at: f64,
    pub rate: u32,
    pub samples: Vec<f32>,
    /// The first block of its item: put exactly at its time (an item's sound may end before
    /// its pictures do; the next one starts where its first picture is).
    pub first: bool,
}

impl Block {
    pub fn frames(&self) -> usize {
        self.samples.len() / 2
    }
}

enum Packets {
    Mp4 {
        reader: Box<::mp4::Mp4Reader<BufReader<File>>>,
        track: u32,
        next: u32,
        count: u32,
        timescale: f64,
    },
    Matroska {
        mkv: Box<matroska_demuxer::MatroskaFile<BufReader<MatroskaHead>>>,
        number: u64,
        /// Nanoseconds per timestamp tick.
        tick: u64,
        frame: matroska_demuxer::Frame,
    },
}

pub struct AudioTrack {
    path: PathBuf,
    packets: Packets,
    decoder: AacDecoder,
    pub rate: u32,
    /// Seconds to take from a packet's time to make it relative to the item's first picture.
    offset: f64,
    bad_in_row: u32,
    /// Packets that failed to decode (skipped).
    pub decode_errors: u64,
    pub codec: String,
}

/// An AudioSpecificConfig for AAC of `object_type` at sampling frequency index `freq` with
/// channel configuration `channels` (ISO/IEC 14496-3 1.6.2.1, the two bytes MP4's esds carries).
fn audio_specific_config(object_type: u8, freq: u8, channels: u8) -> [u8; 2] {
    [(object_type << 3) | (freq >> 1), ((freq & 1) << 7) | (channels << 3)]
}

/// The first edit of an MP4 track that shows media: where in the track's time its
/// presentation starts (the encoder's priming before it is not shown), in seconds.
fn mp4_edit_start(track: &::mp4::Mp4Track) -> f64 {
    let timescale = track.timescale().max(1) as f64;
    let empty = |t: u64| t == u32::MAX as u64 || t == u64::MAX;
    track
        .trak
        .edts
        .as_ref()
        .and_then(|e| e.elst.as_ref())
        .and_then(|l| l.entries.iter().find(|e| !empty(e.media_time)))
        .map(|e| e.media_time as f64 / timescale)
        .unwrap_or(0.0)
}

/// Open the audio track of `path`, whose first picture's presentation time in the file is
/// `first_pts` (as the video demuxer gave it).
pub fn open(path: &Path, first_pts: Duration) -> Result<Opened, DemuxError> {
    let io = |source| DemuxError::Io { path: path.to_path_buf(), source };
    match demux::container(path).map_err(io)? {
        Container::Mp4 => demux::guarded("MP4", path, || open_mp4(path, first_pts)),
        Container::Matroska => demux::guarded("Matroska", path, || open_matroska(path, first_pts)),
        // Raw streams carry pictures only.
        Container::Fwht | Container::AnnexB | Container::Unknown => Ok(Opened::NoAudio),
    }
}

/// The track whose AAC AudioSpecificConfig is `config`, read from `packets`; unsupported with
/// the reason when symphonia does not decode it (it decodes AAC-LC in mono and stereo; HE-AAC
/// with SBR or PS, and more channels, it refuses as "too complex").
fn aac_track(path: &Path, config: &[u8], packets: Packets, offset: f64) -> Opened {
    let mut params = AudioCodecParameters::new();
    params.for_codec(CODEC_ID_AAC).with_extra_data(config.to_vec().into_boxed_slice());
    let decoder = match AacDecoder::try_new(&params, &AudioDecoderOptions::default()) {
        Ok(d) => d,
        Err(e) => return Opened::Unsupported(format!("AAC that is not AAC-LC mono or stereo ({e})")),
    };
    let p = decoder.codec_params();
    let rate = p.sample_rate.unwrap_or(0);
    let channels = p.channels.as_ref().map(|c| c.count()).unwrap_or(0);
    if rate == 0 || !(1..=2).contains(&channels) {
        return Opened::Unsupported(format!("AAC at {rate} Hz with {channels} channels"));
    }
    Opened::Track(Box::new(AudioTrack {
        path: path.to_path_buf(),
        packets,
        decoder,
        rate,
        offset,
        bad_in_row: 0,
        decode_errors: 0,
        codec: "AAC-LC".into(),
    }))
}

fn open_mp4(path: &Path, first_pts: Duration) -> Result<Opened, DemuxError> {
    let reader = demux::open_mp4(path)?;
    let mut audio = None;
    let mut video_edit = 0.0;
    for (id, track) in reader.tracks() {
        match track.track_type() {
            Ok(::mp4::TrackType::Video) => video_edit = mp4_edit_start(track),
            Ok(::mp4::TrackType::Audio) if audio.is_none() => audio = Some(*id),
            _ => {}
        }
    }
    let Some(id) = audio else { return Ok(Opened::NoAudio) };
    let track = &reader.tracks()[&id];
    let name = track.box_type().map(|b| b.to_string()).unwrap_or_else(|_| "unknown".into());
    let Some(esds) = track.trak.mdia.minf.stbl.stsd.mp4a.as_ref().and_then(|a| a.esds.as_ref()) else {
        let codec = match name.as_str() {
            "ac-3" => "AC-3".to_string(),
            "ec-3" => "E-AC-3".to_string(),
            "Opus" => "Opus".to_string(),
            "fLaC" => "FLAC".to_string(),
            other => format!("'{other}'"),
        };
        return Ok(Opened::Unsupported(format!("{codec} audio (vitrine decodes AAC-LC)")));
    };
    let config = &esds.es_desc.dec_config;
    match config.object_type_indication {
        0x40 | 0x66 | 0x67 | 0x68 => {}
        0x69 | 0x6b => return Ok(Opened::Unsupported("MP3 audio (vitrine decodes AAC-LC)".into())),
        other => {
            return Ok(Opened::Unsupported(format!(
                "audio of MPEG-4 object type 0x{other:02x} (vitrine decodes AAC-LC)"
            )))
        }
    }
    let spec = &config.dec_specific;
    let asc = audio_specific_config(spec.profile, spec.freq_index, spec.chan_conf);
    let timescale = track.timescale().max(1) as f64;
    let count = track.sample_count();
    let offset = mp4_edit_start(track) + (first_pts.as_secs_f64() - video_edit);
    let packets = Packets::Mp4 { reader: Box::new(reader), track: id, next: 1, count, timescale };
    Ok(aac_track(path, &asc, packets, offset))
}

fn open_matroska(path: &Path, first_pts: Duration) -> Result<Opened, DemuxError> {
    use matroska_demuxer::TrackType;
    let corrupt = |reason: String| DemuxError::Corrupt { path: path.to_path_buf(), reason };
    let mkv = demux::open_matroska(path)?;
    let Some(track) = mkv.tracks().iter().find(|t| t.track_type() == TrackType::Audio) else {
        return Ok(Opened::NoAudio);
    };
    let id = track.codec_id();
    if id != "A_AAC" && !id.starts_with("A_AAC/") {
        let codec = match id {
            "A_OPUS" => "Opus".to_string(),
            "A_VORBIS" => "Vorbis".to_string(),
            "A_AC3" => "AC-3".to_string(),
            "A_MPEG/L3" => "MP3".to_string(),
            "A_FLAC" => "FLAC".to_string(),
            other => format!("'{other}'"),
        };
        return Ok(Opened::Unsupported(format!("{codec} audio (vitrine decodes AAC-LC)")));
    }
    if track.content_encodings().is_some_and(|e| !e.is_empty()) {
        return Ok(Opened::Unsupported("compressed or encrypted Matroska audio track".into()));
    }
    let config = match track.codec_private() {
        Some(c) if c.len() >= 2 => c.to_vec(),
        _ => return Err(corrupt("AAC track without its AudioSpecificConfig".into())),
    };
    let number = track.track_number().get();
    let delay = track.codec_delay().unwrap_or(0) as f64 / 1e9;
    let tick = mkv.info().timestamp_scale().get();
    let packets = Packets::Matroska { mkv: Box::new(mkv), number, tick, frame: Default::default() };
    Ok(aac_track(path, &config, packets, delay + first_pts.as_secs_f64()))
}

impl AudioTrack {
    /// The next packet: its time in the file (seconds) and bytes; `None` at the end.
    fn next_packet(&mut self) -> Result<Option<(f64, Vec<u8>)>, String> {
        match &mut self.packets {
            Packets::Mp4 { reader, track, next, count, timescale } => {
                if *next > *count {
                    return Ok(None);
                }
                let id = *next;
                *next += 1;
                let sample = match reader.read_sample(*track, id) {
                    Ok(Some(s)) => s,
                    Ok(None) => return Ok(None),
                    Err(e) => return Err(format!("audio sample {id} of {count}: {e}")),
                };
                if sample.bytes.len() > MAX_PACKET as usize {
                    return Err(format!("audio sample {id} of {} bytes", sample.bytes.len()));
                }
                Ok(Some((sample.start_time as f64 / *timescale, sample.bytes.to_vec())))
            }
            Packets::Matroska { mkv, number, tick, frame } => loop {
                match mkv.next_frame(frame) {
                    Ok(true) => {}
                    Ok(false) => return Ok(None),
                    Err(e) => return Err(demux::matroska_error(e)),
                }
                if frame.track == *number {
                    let at = frame.timestamp.saturating_mul(*tick) as f64 / 1e9;
                    return Ok(Some((at, std::mem::take(&mut frame.data))));
                }
            },
        }
    }

    /// The next decoded block; `None` at the end of the track. A packet that does not decode is
    /// skipped and counted (its time passes in silence); many in a row end the track with the
    /// reason. A damaged container ends it too.
    pub fn next_block(&mut self) -> Result<Option<Block>, String> {
        loop {
            // A container reader that panics on a damaged index ends the sound, not the thread.
            let packet =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.next_packet())).unwrap_or_else(|p| {
                    Err(format!("the container reader gave up: {}", crate::process::panic_message(p.as_ref())))
                })?;
            let Some((at, data)) = packet else { return Ok(None) };
            let packet = PacketRef::new(0, 0.into(), 0u64.into(), &data);
            let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.decoder.decode_ref(&packet).map(|buf| stereo(&buf))
            }));
            match decoded {
                Ok(Ok(samples)) => {
                    self.bad_in_row = 0;
                    return Ok(Some(Block { at: at - self.offset, rate: self.rate, samples, first: false }));
                }
                Ok(Err(e)) => {
                    self.decode_errors += 1;
                    self.bad_in_row += 1;
                    tracing::debug!(target: "audio", file = %self.path.display(), at, error = %e, "audio packet skipped");
                }
                Err(_) => {
                    self.decode_errors += 1;
                    self.bad_in_row += 1;
                    self.decoder.reset();
                }
            }
            if self.bad_in_row >= MAX_BAD_PACKETS {
                return Err(format!("{MAX_BAD_PACKETS} audio packets in a row do not decode"));
            }
        }
    }
}

/// A decoded buffer as interleaved stereo (mono is put on both sides).
fn stereo(buf: &GenericAudioBufferRef<'_>) -> Vec<f32> {
    let mut interleaved: Vec<f32> = Vec::with_capacity(buf.frames() * 2);
    buf.copy_to_vec_interleaved(&mut interleaved);
    match buf.spec().channels().count() {
        1 => interleaved.iter().flat_map(|&s| [s, s]).collect(),
        _ => interleaved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_specific_config_bytes() {
        // AAC-LC (2), 48 kHz (index 3), stereo (2): 0x11 0x90, as every encoder writes it.
        assert_eq!(audio_specific_config(2, 3, 2), [0x11, 0x90]);
        // 44.1 kHz (4), mono (1): 0x12 0x08.
        assert_eq!(audio_specific_config(2, 4, 1), [0x12, 0x08]);
    }
}
