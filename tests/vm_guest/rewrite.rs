//! Streams x264 cannot make, rewritten from one it can: x264 codes POC types 0 and 2, sliding-
//! window marking only and no long-term references. This rewrites a baseline (CAVLC, P-only)
//! stream's SPS and slice headers, keeping every slice's macroblock data bit for bit, into
//! streams with POC type 1, long-term references (memory management operations 1, 2, 4 and 6,
//! long-term list modifications) and frame_num gaps. Nothing decodes the pixels here (visl does
//! not); what matters is that the syntax is valid, so that both decoders under comparison
//! follow the same rules.

use h264_reader::nal::slice::{
    DecRefPicMarking, MemoryManagementControlOperation as Mmco, ModificationOfPicNums, NumRefIdxActive,
    PicOrderCountLsb, RefPicListModifications, SliceExclusive, SliceFamily, SliceHeader,
};
use h264_reader::rbsp::{decode_nal, BitWrite, BitWriter};
use vitrine::video::demux;
use vitrine::video::h264::AccessUnitParser;

/// What to change in a stream.
#[derive(Default)]
pub struct Edit {
    /// POC type 1 (a cycle of one reference frame, offset 2) instead of the source's type 2.
    pub poc_type_one: bool,
    /// Set gaps_in_frame_num_value_allowed_flag and drop these pictures (decode order).
    pub drop: Vec<usize>,
    /// Per picture (decode order): its memory management operations.
    pub marking: Vec<(usize, Vec<Mmco>)>,
    /// Per picture: list 0 modifications.
    pub list0: Vec<(usize, Vec<ModificationOfPicNums>)>,
}

/// An RBSP read bit by bit, with its position.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> bool {
        let b = self.data[self.pos / 8] >> (7 - self.pos % 8) & 1 == 1;
        self.pos += 1;
        b
    }
    fn u(&mut self, n: u32) -> u32 {
        (0..n).fold(0, |v, _| v << 1 | self.bit() as u32)
    }
    fn ue(&mut self) -> u32 {
        let mut zeros = 0;
        while !self.bit() {
            zeros += 1;
        }
        (1 << zeros) - 1 + self.u(zeros)
    }
}

/// Bits of an RBSP before its stop bit.
fn payload_bits(rbsp: &[u8]) -> usize {
    let last = rbsp.iter().rposition(|b| *b != 0).expect("an empty RBSP");
    last * 8 + 7 - rbsp[last].trailing_zeros() as usize
}

type Writer = BitWriter<Vec<u8>>;

fn copy_bits(w: &mut Writer, rbsp: &[u8], from: usize, to: usize) {
    for i in from..to {
        w.write_bit(rbsp[i / 8] >> (7 - i % 8) & 1 == 1).unwrap();
    }
}

/// A NAL unit with its start code: header byte, then the RBSP with emulation prevention.
fn nal(header: u8, mut w: Writer) -> Vec<u8> {
    w.write_rbsp_trailing_bits().unwrap();
    let rbsp = w.into_writer();
    let mut out = vec![0, 0, 0, 1, header];
    let mut zeros = 0;
    for b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// The SPS with the POC type and the gaps flag changed (everything after them copied).
fn rewrite_sps(raw: &[u8], edit: &Edit) -> Vec<u8> {
    let rbsp = decode_nal(raw).unwrap();
    let mut r = Bits { data: &rbsp, pos: 0 };
    let mut w = BitWriter::new(Vec::new());
    let profile = r.u(8);
    assert_eq!(profile, 66, "the source must be baseline (no chroma format fields in its SPS)");
    w.write::<8, u32>(profile).unwrap();
    w.write::<16, u32>(r.u(16)).unwrap(); // constraint flags, level
    w.write_ue(r.ue()).unwrap(); // seq_parameter_set_id
    w.write_ue(r.ue()).unwrap(); // log2_max_frame_num_minus4
    let poc_type = r.ue();
    match poc_type {
        0 => {
            let lsb = r.ue();
            assert!(!edit.poc_type_one, "the source must use POC type 2");
            w.write_ue(0).unwrap();
            w.write_ue(lsb).unwrap();
        }
        2 if edit.poc_type_one => {
            w.write_ue(1).unwrap();
            w.write_bit(false).unwrap(); // delta_pic_order_always_zero_flag
            w.write_se(0).unwrap(); // offset_for_non_ref_pic
            w.write_se(0).unwrap(); // offset_for_top_to_bottom_field
            w.write_ue(1).unwrap(); // num_ref_frames_in_pic_order_cnt_cycle
            w.write_se(2).unwrap(); // offset_for_ref_frame[0]
        }
        2 => w.write_ue(2).unwrap(),
        t => panic!("POC type {t} in the source"),
    }
    w.write_ue(r.ue()).unwrap(); // max_num_ref_frames
    let gaps = r.bit();
    w.write_bit(gaps || !edit.drop.is_empty()).unwrap();
    copy_bits(&mut w, &rbsp, r.pos, payload_bits(&rbsp));
    nal(raw[0], w)
}

/// A slice header written back from its parsed form (for the syntax a baseline stream uses),
/// with the edited POC, marking and list 0 modifications.
fn write_slice_header(w: &mut Writer, h: &SliceHeader, sps: &Sps, idr: bool, nal_ref_idc: u8, edit: &SliceEdit) {
    let family = h.slice_type.family;
    let type_id = match family {
        SliceFamily::P => 0,
        SliceFamily::B => 1,
        SliceFamily::I => 2,
        SliceFamily::SP => 3,
        SliceFamily::SI => 4,
    };
    assert!(family == SliceFamily::P || family == SliceFamily::I, "baseline sources have I and P slices");
    w.write_ue(h.first_mb_in_slice).unwrap();
    w.write_ue(type_id + 5 * (h.slice_type.exclusive == SliceExclusive::Exclusive) as u32).unwrap();
    w.write_ue(0).unwrap(); // pic_parameter_set_id
    w.write_var(sps.log2_max_frame_num, h.frame_num as u32).unwrap();
    if idr {
        w.write_ue(h.idr_pic_id.unwrap()).unwrap();
    }
    match (&h.pic_order_cnt_lsb, edit.poc_type_one) {
        (_, true) => w.write_se(0).unwrap(), // delta_pic_order_cnt[0]
        (Some(PicOrderCountLsb::Frame(lsb)), false) => w.write_var(sps.log2_max_poc_lsb, *lsb).unwrap(),
        (None, false) => {}
        (other, _) => panic!("POC syntax {other:?} in the source"),
    }
    if family == SliceFamily::P {
        match &h.num_ref_idx_active {
            Some(NumRefIdxActive::P { num_ref_idx_l0_active_minus1 }) => {
                w.write_bit(true).unwrap();
                w.write_ue(*num_ref_idx_l0_active_minus1).unwrap();
            }
            _ => w.write_bit(false).unwrap(),
        }
        let source: &[ModificationOfPicNums] = match &h.ref_pic_list_modification {
            Some(RefPicListModifications::P { ref_pic_list_modification_l0 }) => ref_pic_list_modification_l0,
            _ => &[],
        };
        let ops = edit.list0.unwrap_or(source);
        w.write_bit(!ops.is_empty()).unwrap();
        if !ops.is_empty() {
            for op in ops {
                let (idc, v) = match *op {
                    ModificationOfPicNums::Subtract(v) => (0, v),
                    ModificationOfPicNums::Add(v) => (1, v),
                    ModificationOfPicNums::LongTermRef(v) => (2, v),
                    _ => panic!("multiview modification in the source"),
                };
                w.write_ue(idc).unwrap();
                w.write_ue(v).unwrap();
            }
            w.write_ue(3).unwrap();
        }
    }
    if nal_ref_idc != 0 {
        match (&h.dec_ref_pic_marking, edit.marking) {
            (Some(DecRefPicMarking::Idr { no_output_of_prior_pics_flag, long_term_reference_flag }), _) => {
                w.write_bit(*no_output_of_prior_pics_flag).unwrap();
                w.write_bit(*long_term_reference_flag).unwrap();
            }
            (_, Some(ops)) => {
                w.write_bit(true).unwrap();
                for op in ops {
                    match *op {
                        Mmco::ShortTermUnusedForRef { difference_of_pic_nums_minus1: d } => {
                            w.write_ue(1).unwrap();
                            w.write_ue(d).unwrap();
                        }
                        Mmco::LongTermUnusedForRef { long_term_pic_num: n } => {
                            w.write_ue(2).unwrap();
                            w.write_ue(n).unwrap();
                        }
                        Mmco::ShortTermUsedForLongTerm { difference_of_pic_nums_minus1: d, long_term_frame_idx: i } => {
                            w.write_ue(3).unwrap();
                            w.write_ue(d).unwrap();
                            w.write_ue(i).unwrap();
                        }
                        Mmco::MaxUsedLongTermFrameRef { max_long_term_frame_idx_plus1: m } => {
                            w.write_ue(4).unwrap();
                            w.write_ue(m).unwrap();
                        }
                        Mmco::AllRefPicturesUnused => w.write_ue(5).unwrap(),
                        Mmco::CurrentUsedForLongTerm { long_term_frame_idx: i } => {
                            w.write_ue(6).unwrap();
                            w.write_ue(i).unwrap();
                        }
                    }
                }
                w.write_ue(0).unwrap();
            }
            (Some(DecRefPicMarking::SlidingWindow) | None, None) => w.write_bit(false).unwrap(),
            (Some(DecRefPicMarking::Adaptive(_)), None) => panic!("adaptive marking in the source"),
        }
    }
    w.write_se(h.slice_qp_delta).unwrap();
    if sps.deblocking_control {
        w.write_ue(h.disable_deblocking_filter_idc as u32).unwrap();
        if h.disable_deblocking_filter_idc != 1 {
            w.write_se(h.slice_alpha_c0_offset_div2.unwrap_or(0)).unwrap();
            w.write_se(h.slice_beta_offset_div2.unwrap_or(0)).unwrap();
        }
    }
}

/// What the slice header writer needs from the parameter sets.
struct Sps {
    log2_max_frame_num: u32,
    log2_max_poc_lsb: u32,
    deblocking_control: bool,
}

struct SliceEdit<'a> {
    poc_type_one: bool,
    marking: Option<&'a [Mmco]>,
    list0: Option<&'a [ModificationOfPicNums]>,
}

fn for_picture<T>(list: &[(usize, Vec<T>)], index: usize) -> Option<&[T]> {
    list.iter().find(|(i, _)| *i == index).map(|(_, v)| v.as_slice())
}

/// Rewrite `source` (an x264 baseline stream, one slice per picture or more) into `out` as
/// Annex-B.
pub fn rewrite(source: &std::path::Path, out: &std::path::Path, edit: &Edit) {
    use h264_reader::nal::sps::PicOrderCntType;
    let d = demux::open(source).unwrap();
    let mut parser = AccessUnitParser::new();
    let mut stream = Vec::new();
    for (index, unit) in d.units.iter().enumerate() {
        let pic = parser.parse(&unit.data).unwrap();
        if edit.drop.contains(&index) {
            continue;
        }
        let sps = Sps {
            log2_max_frame_num: pic.sps.log2_max_frame_num_minus4 as u32 + 4,
            log2_max_poc_lsb: match pic.sps.pic_order_cnt {
                PicOrderCntType::TypeZero { log2_max_pic_order_cnt_lsb_minus4 } => {
                    log2_max_pic_order_cnt_lsb_minus4 as u32 + 4
                }
                _ => 0,
            },
            deblocking_control: pic.pps.deblocking_filter_control_present_flag,
        };
        let slice_edit = SliceEdit {
            poc_type_one: edit.poc_type_one,
            marking: for_picture(&edit.marking, index),
            list0: for_picture(&edit.list0, index),
        };
        let mut slices = pic.slices.iter();
        for raw in demux::nal_units(&unit.data) {
            match raw[0] & 0x1f {
                7 => stream.extend(rewrite_sps(raw, edit)),
                1 | 5 => {
                    let slice = slices.next().unwrap();
                    let rbsp = decode_nal(raw).unwrap();
                    let mut w = BitWriter::new(Vec::new());
                    write_slice_header(&mut w, &slice.header, &sps, raw[0] & 0x1f == 5, raw[0] >> 5 & 3, &slice_edit);
                    // CAVLC slice data follows the header directly: copied bit for bit.
                    copy_bits(&mut w, &rbsp, slice.header_bit_size as usize - 8, payload_bits(&rbsp));
                    stream.extend(nal(raw[0], w));
                }
                _ => {
                    stream.extend([0, 0, 0, 1]);
                    stream.extend(raw);
                }
            }
        }
    }
    std::fs::write(out, stream).unwrap();
}
