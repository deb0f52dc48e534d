//! One access unit parsed into what a stateless decoder needs: the active SPS and PPS, and for
//! each slice its header, its position in the access unit and the bit sizes some drivers need.

use std::sync::Arc;

use h264_reader::nal::pps::PicParameterSet;
use h264_reader::nal::slice::{DecRefPicMarking, MemoryManagementControlOperation, PicOrderCountLsb, SliceHeader};
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::nal::{NalHeader, UnitType};
use h264_reader::rbsp::{BitRead, BitReader};
use h264_reader::Context;

use crate::video::demux::nal_units;

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("access unit {index}: {what}")]
    Invalid { index: u64, what: String },
    #[error("access unit {index}: no slice of a picture")]
    NoSlice { index: u64 },
}

/// One slice of a picture.
#[derive(Debug)]
pub struct SliceInfo {
    pub nal_ref_idc: u8,
    pub nal_unit_type: u8,
    pub header: SliceHeader,
    /// Bits of `pic_order_cnt_lsb` and `delta_pic_order_cnt_bottom`/`delta_pic_order_cnt[]` in
    /// the slice header (drivers such as hantro skip them).
    pub pic_order_cnt_bit_size: u32,
    /// Bits of `dec_ref_pic_marking()` in the slice header.
    pub dec_ref_pic_marking_bit_size: u32,
    /// Bits from the start of the NAL unit (its header byte included) to `slice_data()`, counted
    /// without emulation prevention bytes (slice-based drivers skip them).
    pub header_bit_size: u32,
    /// Where the NAL unit (without its start code) is in the picture's `slice_data`.
    pub nal: std::ops::Range<usize>,
}

/// A coded picture: every slice of one access unit, with its parameter sets.
#[derive(Debug)]
pub struct Picture {
    pub sps: Arc<SeqParameterSet>,
    pub pps: Arc<PicParameterSet>,
    pub slices: Vec<SliceInfo>,
    /// The access unit's NAL units that carry slices, in Annex-B form (start code + NAL).
    pub slice_data: Vec<u8>,
}

impl Picture {
    pub fn first(&self) -> &SliceInfo {
        &self.slices[0]
    }

    pub fn is_idr(&self) -> bool {
        self.first().nal_unit_type == 5
    }

    pub fn nal_ref_idc(&self) -> u8 {
        self.first().nal_ref_idc
    }

    pub fn is_reference(&self) -> bool {
        self.nal_ref_idc() != 0
    }

    pub fn max_frame_num(&self) -> u32 {
        1 << (self.sps.log2_max_frame_num_minus4 + 4)
    }
}

/// Parses access units in decode order, keeping the parameter sets seen so far.
#[derive(Default)]
pub struct AccessUnitParser {
    ctx: Context,
    sps: Vec<Arc<SeqParameterSet>>,
    pps: Vec<Arc<PicParameterSet>>,
    index: u64,
}

/// Bits of an unsigned Exp-Golomb code for `v`.
pub fn ue_bits(v: u32) -> u32 {
    let v = v as u64 + 1;
    2 * (63 - v.leading_zeros()) + 1
}

/// Bits of a signed Exp-Golomb code for `v`.
pub fn se_bits(v: i32) -> u32 {
    let code = if v > 0 { 2 * v as i64 - 1 } else { -2 * v as i64 };
    ue_bits(code as u32)
}

fn poc_bits(sps: &SeqParameterSet, pps: &PicParameterSet, lsb: &Option<PicOrderCountLsb>) -> u32 {
    use h264_reader::nal::sps::PicOrderCntType;
    match (&sps.pic_order_cnt, lsb) {
        (PicOrderCntType::TypeZero { log2_max_pic_order_cnt_lsb_minus4 }, Some(PicOrderCountLsb::Frame(_))) => {
            *log2_max_pic_order_cnt_lsb_minus4 as u32 + 4
        }
        (
            PicOrderCntType::TypeZero { log2_max_pic_order_cnt_lsb_minus4 },
            Some(PicOrderCountLsb::FieldsAbsolute { delta_pic_order_cnt_bottom, .. }),
        ) => *log2_max_pic_order_cnt_lsb_minus4 as u32 + 4 + se_bits(*delta_pic_order_cnt_bottom),
        (
            PicOrderCntType::TypeOne { delta_pic_order_always_zero_flag: false, .. },
            Some(PicOrderCountLsb::FieldsDelta(d)),
        ) => {
            // delta_pic_order_cnt[1] is coded only for frames with bottom_field_pic_order_in_frame_present.
            se_bits(d[0]) + if pps.bottom_field_pic_order_in_frame_present_flag { se_bits(d[1]) } else { 0 }
        }
        _ => 0,
    }
}

fn marking_bits(marking: &Option<DecRefPicMarking>) -> u32 {
    use MemoryManagementControlOperation as Op;
    match marking {
        None => 0,
        Some(DecRefPicMarking::Idr { .. }) => 2,
        Some(DecRefPicMarking::SlidingWindow) => 1,
        Some(DecRefPicMarking::Adaptive(ops)) => {
            let mut bits = 1 + ue_bits(0);
            for op in ops {
                bits += match op {
                    Op::ShortTermUnusedForRef { difference_of_pic_nums_minus1 } => {
                        ue_bits(1) + ue_bits(*difference_of_pic_nums_minus1)
                    }
                    Op::LongTermUnusedForRef { long_term_pic_num } => ue_bits(2) + ue_bits(*long_term_pic_num),
                    Op::ShortTermUsedForLongTerm { difference_of_pic_nums_minus1, long_term_frame_idx } => {
                        ue_bits(3) + ue_bits(*difference_of_pic_nums_minus1) + ue_bits(*long_term_frame_idx)
                    }
                    Op::MaxUsedLongTermFrameRef { max_long_term_frame_idx_plus1 } => {
                        ue_bits(4) + ue_bits(*max_long_term_frame_idx_plus1)
                    }
                    Op::AllRefPicturesUnused => ue_bits(5),
                    Op::CurrentUsedForLongTerm { long_term_frame_idx } => ue_bits(6) + ue_bits(*long_term_frame_idx),
                };
            }
            bits
        }
    }
}

/// How many bits of an RBSP of `len` bytes a reader has consumed (it reads on to the next byte
/// boundary to find out).
fn bits_read(mut r: BitReader<&[u8]>, len: usize) -> u32 {
    let mut to_boundary = 0;
    while !r.byte_aligned() && r.read_bit("alignment").is_ok() {
        to_boundary += 1;
    }
    let rest = r.into_reader().len();
    ((len - rest) * 8) as u32 - to_boundary
}

impl AccessUnitParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse one access unit (Annex-B). Parameter sets in it are stored before its slices are
    /// read.
    pub fn parse(&mut self, au: &[u8]) -> Result<Picture, ParseError> {
        let index = self.index;
        self.index += 1;
        let invalid = |what: String| ParseError::Invalid { index, what };
        let mut slices = Vec::new();
        let mut slice_data = Vec::new();
        let mut active: Option<(Arc<SeqParameterSet>, Arc<PicParameterSet>)> = None;
        for nal in nal_units(au) {
            let Some(&first) = nal.first() else { continue };
            let header = NalHeader::new(first).map_err(|e| invalid(format!("NAL header: {e:?}")))?;
            match header.nal_unit_type() {
                UnitType::SeqParameterSet => {
                    let rbsp = super::rbsp(nal).map_err(|e| invalid(format!("SPS: {e}")))?;
                    let sps = SeqParameterSet::from_bits(BitReader::new(&rbsp[..]))
                        .map_err(|e| invalid(format!("SPS: {e:?}")))?;
                    self.sps.retain(|s| s.seq_parameter_set_id != sps.seq_parameter_set_id);
                    self.sps.push(Arc::new(sps.clone()));
                    self.ctx.put_seq_param_set(sps);
                }
                UnitType::PicParameterSet => {
                    let rbsp = super::rbsp(nal).map_err(|e| invalid(format!("PPS: {e}")))?;
                    let pps = PicParameterSet::from_bits(&self.ctx, BitReader::new(&rbsp[..]))
                        .map_err(|e| invalid(format!("PPS: {e:?}")))?;
                    self.pps.retain(|p| p.pic_parameter_set_id != pps.pic_parameter_set_id);
                    self.pps.push(Arc::new(pps.clone()));
                    self.ctx.put_pic_param_set(pps);
                }
                UnitType::SliceLayerWithoutPartitioningIdr | UnitType::SliceLayerWithoutPartitioningNonIdr => {
                    let rbsp = super::rbsp(nal).map_err(|e| invalid(format!("slice: {e}")))?;
                    let mut r = BitReader::new(&rbsp[..]);
                    let (slice, sps, pps) = SliceHeader::from_bits(&self.ctx, &mut r, header, None)
                        .map_err(|e| invalid(format!("slice header: {e:?}")))?;
                    let header_bit_size = 8 + bits_read(r, rbsp.len());
                    if active.is_none() {
                        let s = self.sps.iter().find(|s| s.seq_parameter_set_id == sps.seq_parameter_set_id);
                        let p = self.pps.iter().find(|p| p.pic_parameter_set_id == pps.pic_parameter_set_id);
                        if let (Some(s), Some(p)) = (s, p) {
                            active = Some((s.clone(), p.clone()));
                        }
                    }
                    let pic_order_cnt_bit_size = poc_bits(sps, pps, &slice.pic_order_cnt_lsb);
                    let dec_ref_pic_marking_bit_size = marking_bits(&slice.dec_ref_pic_marking);
                    slices.push(SliceInfo {
                        nal_ref_idc: header.nal_ref_idc(),
                        nal_unit_type: header.nal_unit_type().id(),
                        header: slice,
                        pic_order_cnt_bit_size,
                        dec_ref_pic_marking_bit_size,
                        header_bit_size,
                        nal: slice_data.len() + 3..slice_data.len() + 3 + nal.len(),
                    });
                    slice_data.extend_from_slice(&[0, 0, 1]);
                    slice_data.extend_from_slice(nal);
                }
                UnitType::SliceDataPartitionALayer
                | UnitType::SliceDataPartitionBLayer
                | UnitType::SliceDataPartitionCLayer => {
                    return Err(invalid("data-partitioned slices (extended profile) are not decoded".into()));
                }
                _ => {}
            }
        }
        let Some((sps, pps)) = active else { return Err(ParseError::NoSlice { index }) };
        Ok(Picture { sps, pps, slices, slice_data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_sizes() {
        assert_eq!(ue_bits(0), 1);
        assert_eq!(ue_bits(1), 3);
        assert_eq!(ue_bits(2), 3);
        assert_eq!(ue_bits(3), 5);
        assert_eq!(ue_bits(6), 5);
        assert_eq!(ue_bits(7), 7);
        assert_eq!(se_bits(0), 1);
        assert_eq!(se_bits(1), 3);
        assert_eq!(se_bits(-1), 3);
        assert_eq!(se_bits(2), 5);
        assert_eq!(se_bits(-2), 5);
    }
}
