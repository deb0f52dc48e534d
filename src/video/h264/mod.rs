//! H.264 bookkeeping for stateless decoders: the parameter sets and slice headers of each access
//! unit, picture order counts, the decoded picture buffer with its reference marking, and output
//! reordering. A stateless decoder (V4L2 `S264`) decodes one picture when told all of this; the
//! same state machine serves any such driver.

pub mod dpb;
pub mod picture;
pub mod poc;
pub mod reflist;

pub use dpb::{Dpb, DpbEntry, Output};

/// The payload of a NAL unit with its emulation-prevention bytes taken out. A unit too short to
/// hold a header and a byte is refused here: the reader underneath assumes at least that.
pub fn rbsp(nal: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, String> {
    if nal.len() < 2 {
        return Err(format!("a NAL unit of {} bytes", nal.len()));
    }
    h264_reader::rbsp::decode_nal(nal).map_err(|e| e.to_string())
}
pub use picture::{AccessUnitParser, ParseError, Picture, SliceInfo};

#[cfg(test)]
mod stream_tests {
    //! The parser, POC and DPB on real x264 streams: pictures must leave the DPB in
    //! presentation order, every one of them, whatever the GOP structure.

    use std::path::{Path, PathBuf};

    use super::*;
    use crate::video::demux;

    fn clip(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
        let path = dir.join(name);
        let status = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=24"])
            .args(["-t", "3", "-c:v", "libx264", "-pix_fmt", "yuv420p"])
            .args(args)
            .arg(&path)
            .status()
            .expect("ffmpeg is not installed: run scripts/deps test");
        assert!(status.success(), "ffmpeg failed for {name}");
        path
    }

    /// Decode order in, the pts of each picture in the order the DPB outputs it.
    fn output_order(path: &Path) -> (Vec<std::time::Duration>, usize) {
        let d = demux::open(path).unwrap();
        let mut parser = AccessUnitParser::new();
        let mut dpb = Dpb::new();
        let mut out = Vec::new();
        for (i, unit) in d.units.iter().enumerate() {
            let pic = parser.parse(&unit.data).unwrap();
            let (current, released) = dpb.begin(&pic, i as u64);
            out.extend(released);
            // References are listed with the PicNum this picture sees.
            for e in dpb.entries() {
                assert!(e.pic_num <= current.frame_num as i32, "{e:?} for {current:?}");
            }
            out.extend(dpb.finish(&pic, current));
        }
        out.extend(dpb.flush());
        let pts = out.iter().map(|o| d.units[o.id as usize].pts).collect();
        (pts, d.units.len())
    }

    fn assert_presentation_order(name: &str, args: &[&str]) {
        let dir = tempfile::tempdir().unwrap();
        let path = clip(dir.path(), name, args);
        let (pts, n) = output_order(&path);
        assert_eq!(pts.len(), n, "{name}: every picture is output once");
        for w in pts.windows(2) {
            assert!(w[0] < w[1], "{name}: output out of presentation order: {:?}", pts);
        }
    }

    #[test]
    fn main_profile_b_frames() {
        assert_presentation_order("main-b.mp4", &["-profile:v", "main", "-bf", "2"]);
    }

    #[test]
    fn high_profile_b_pyramid_and_four_references() {
        assert_presentation_order(
            "pyramid.mp4",
            &["-profile:v", "high", "-bf", "3", "-x264-params", "b-pyramid=strict:ref=4"],
        );
    }

    #[test]
    fn baseline_without_b_frames_uses_poc_type_2() {
        let dir = tempfile::tempdir().unwrap();
        let path = clip(dir.path(), "baseline.mp4", &["-profile:v", "baseline"]);
        let d = demux::open(&path).unwrap();
        let pic = AccessUnitParser::new().parse(&d.units[0].data).unwrap();
        assert!(matches!(pic.sps.pic_order_cnt, h264_reader::nal::sps::PicOrderCntType::TypeTwo));
        assert_presentation_order("baseline.mp4", &["-profile:v", "baseline"]);
    }

    #[test]
    fn several_slices_per_picture_and_short_gops() {
        let dir = tempfile::tempdir().unwrap();
        let path = clip(dir.path(), "slices.mp4", &["-bf", "2", "-g", "12", "-x264-params", "slices=3"]);
        let d = demux::open(&path).unwrap();
        let pic = AccessUnitParser::new().parse(&d.units[0].data).unwrap();
        assert_eq!(pic.slices.len(), 3);
        assert_eq!(pic.slice_data.windows(3).filter(|w| w == &[0, 0, 1]).count(), 3, "three start codes");
        assert_presentation_order("slices.mp4", &["-bf", "2", "-g", "12", "-x264-params", "slices=3"]);
    }

    /// A fade from black: x264 gives its P slices explicit weights, and for some lists the same
    /// reference twice, through reference list modifications. Every list entry must name a
    /// reference the DPB holds, and the header sizes must land inside the slice.
    #[test]
    fn weighted_fade_reference_lists() {
        use h264_reader::nal::slice::{RefPicListModifications, SliceFamily};
        let dir = tempfile::tempdir().unwrap();
        let args = ["-vf", "fade=in:0:48", "-profile:v", "main", "-bf", "2", "-x264-params", "weightp=2:ref=3"];
        let path = clip(dir.path(), "fade.mp4", &args);
        let d = demux::open(&path).unwrap();
        let mut parser = AccessUnitParser::new();
        let mut dpb = Dpb::new();
        let (mut weighted, mut modified, mut repeated, mut b_lists) = (0, 0, 0, 0);
        for (i, unit) in d.units.iter().enumerate() {
            let pic = parser.parse(&unit.data).unwrap();
            let (current, _) = dpb.begin(&pic, i as u64);
            for slice in &pic.slices {
                assert!(slice.header_bit_size > 8 && (slice.header_bit_size as usize) < slice.nal.len() * 8);
                let (l0, l1) = reflist::ref_lists(dpb.entries(), &current, slice, &pic.pps, pic.max_frame_num());
                for r in l0.iter().chain(&l1) {
                    let r = r.unwrap_or_else(|| panic!("picture {i}: a list entry names no reference"));
                    assert_ne!(dpb.entries()[r].reference, dpb::Reference::None);
                }
                let family = slice.header.slice_type.family;
                if family == SliceFamily::B {
                    b_lists += 1;
                    // Closest past picture first in list 0, closest future one first in list 1.
                    let poc = |r: &Option<usize>| dpb.entries()[r.unwrap()].poc.frame();
                    assert!(poc(&l0[0]) < current.poc.frame() && poc(&l1[0]) > current.poc.frame());
                }
                weighted += slice.header.pred_weight_table.is_some() as usize;
                if let Some(RefPicListModifications::P { ref_pic_list_modification_l0: m }) =
                    &slice.header.ref_pic_list_modification
                {
                    modified += !m.is_empty() as usize;
                }
                let mut seen = l0.clone();
                seen.sort();
                seen.dedup();
                repeated += (seen.len() < l0.len()) as usize;
            }
            dpb.finish(&pic, current);
        }
        assert!(
            weighted > 0 && modified > 0 && repeated > 0 && b_lists > 0,
            "{weighted} {modified} {repeated} {b_lists}"
        );
    }

    #[test]
    fn odd_size_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd.mp4");
        let status = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=322x182:rate=25"])
            .args(["-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-bf", "3"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        let (pts, n) = output_order(&path);
        assert_eq!(pts.len(), n);
        assert!(pts.windows(2).all(|w| w[0] < w[1]));
    }
}
