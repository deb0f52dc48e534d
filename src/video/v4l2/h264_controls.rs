//! The H.264 controls of the V4L2 stateless uAPI, built from parsed parameter sets, slice
//! headers and the DPB: SPS, PPS, scaling matrix and decode parameters for every picture, and
//! for slice-based drivers the slice parameters (with the reference lists) and prediction
//! weights of each slice.

use h264_reader::nal::pps::PicParameterSet;
use h264_reader::nal::slice::{FieldPic, PicOrderCountLsb, SliceFamily};
use h264_reader::nal::sps::{FrameMbsFlags, PicOrderCntType, SeqParameterSet};
use v4l2r::bindings;

use crate::video::h264::reflist::active_counts;
use crate::video::h264::{Dpb, Picture, SliceInfo};

/// 4x4 and 8x8 zig-zag scans (frame macroblocks): index in scan order → raster position.
const ZIGZAG_4X4: [usize; 16] = [0, 1, 4, 8, 5, 2, 3, 6, 9, 12, 13, 10, 7, 11, 14, 15];
const ZIGZAG_8X8: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
    28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54,
    47, 55, 62, 63,
];

/// The SPS control for a parsed SPS.
pub fn sps_control(sps: &SeqParameterSet) -> bindings::v4l2_ctrl_h264_sps {
    let mut c = bindings::v4l2_ctrl_h264_sps {
        profile_idc: sps.profile_idc.into(),
        constraint_set_flags: {
            let f = sps.constraint_flags;
            (f.flag0() as u8)
                | (f.flag1() as u8) << 1
                | (f.flag2() as u8) << 2
                | (f.flag3() as u8) << 3
                | (f.flag4() as u8) << 4
                | (f.flag5() as u8) << 5
        },
        level_idc: sps.level_idc,
        seq_parameter_set_id: sps.seq_parameter_set_id.id(),
        chroma_format_idc: sps.chroma_info.chroma_format.to_u32() as u8,
        bit_depth_luma_minus8: sps.chroma_info.bit_depth_luma_minus8,
        bit_depth_chroma_minus8: sps.chroma_info.bit_depth_chroma_minus8,
        log2_max_frame_num_minus4: sps.log2_max_frame_num_minus4,
        max_num_ref_frames: sps.max_num_ref_frames as u8,
        pic_width_in_mbs_minus1: sps.pic_width_in_mbs_minus1 as u16,
        pic_height_in_map_units_minus1: sps.pic_height_in_map_units_minus1 as u16,
        ..Default::default()
    };
    let mut flags = 0;
    if sps.chroma_info.separate_colour_plane_flag {
        flags |= bindings::V4L2_H264_SPS_FLAG_SEPARATE_COLOUR_PLANE;
    }
    if sps.chroma_info.qpprime_y_zero_transform_bypass_flag {
        flags |= bindings::V4L2_H264_SPS_FLAG_QPPRIME_Y_ZERO_TRANSFORM_BYPASS;
    }
    match &sps.pic_order_cnt {
        PicOrderCntType::TypeZero { log2_max_pic_order_cnt_lsb_minus4 } => {
            c.pic_order_cnt_type = 0;
            c.log2_max_pic_order_cnt_lsb_minus4 = *log2_max_pic_order_cnt_lsb_minus4;
        }
        PicOrderCntType::TypeOne {
            delta_pic_order_always_zero_flag,
            offset_for_non_ref_pic,
            offset_for_top_to_bottom_field,
            offsets_for_ref_frame,
        } => {
            c.pic_order_cnt_type = 1;
            if *delta_pic_order_always_zero_flag {
                flags |= bindings::V4L2_H264_SPS_FLAG_DELTA_PIC_ORDER_ALWAYS_ZERO;
            }
            c.offset_for_non_ref_pic = *offset_for_non_ref_pic;
            c.offset_for_top_to_bottom_field = *offset_for_top_to_bottom_field;
            c.num_ref_frames_in_pic_order_cnt_cycle = offsets_for_ref_frame.len().min(255) as u8;
            for (o, v) in c.offset_for_ref_frame.iter_mut().zip(offsets_for_ref_frame) {
                *o = *v;
            }
        }
        PicOrderCntType::TypeTwo => c.pic_order_cnt_type = 2,
    }
    if sps.gaps_in_frame_num_value_allowed_flag {
        flags |= bindings::V4L2_H264_SPS_FLAG_GAPS_IN_FRAME_NUM_VALUE_ALLOWED;
    }
    match sps.frame_mbs_flags {
        FrameMbsFlags::Frames => flags |= bindings::V4L2_H264_SPS_FLAG_FRAME_MBS_ONLY,
        FrameMbsFlags::Fields { mb_adaptive_frame_field_flag: true } => {
            flags |= bindings::V4L2_H264_SPS_FLAG_MB_ADAPTIVE_FRAME_FIELD
        }
        FrameMbsFlags::Fields { .. } => {}
    }
    if sps.direct_8x8_inference_flag {
        flags |= bindings::V4L2_H264_SPS_FLAG_DIRECT_8X8_INFERENCE;
    }
    c.flags = flags;
    c
}

/// The PPS control for a parsed PPS.
pub fn pps_control(pps: &PicParameterSet) -> bindings::v4l2_ctrl_h264_pps {
    let ext = pps.extension.as_ref();
    let mut flags = 0;
    let mut set = |cond: bool, flag: u32| {
        if cond {
            flags |= flag;
        }
    };
    set(pps.entropy_coding_mode_flag, bindings::V4L2_H264_PPS_FLAG_ENTROPY_CODING_MODE);
    set(
        pps.bottom_field_pic_order_in_frame_present_flag,
        bindings::V4L2_H264_PPS_FLAG_BOTTOM_FIELD_PIC_ORDER_IN_FRAME_PRESENT,
    );
    set(pps.weighted_pred_flag, bindings::V4L2_H264_PPS_FLAG_WEIGHTED_PRED);
    set(pps.deblocking_filter_control_present_flag, bindings::V4L2_H264_PPS_FLAG_DEBLOCKING_FILTER_CONTROL_PRESENT);
    set(pps.constrained_intra_pred_flag, bindings::V4L2_H264_PPS_FLAG_CONSTRAINED_INTRA_PRED);
    set(pps.redundant_pic_cnt_present_flag, bindings::V4L2_H264_PPS_FLAG_REDUNDANT_PIC_CNT_PRESENT);
    set(ext.is_some_and(|e| e.transform_8x8_mode_flag), bindings::V4L2_H264_PPS_FLAG_TRANSFORM_8X8_MODE);
    set(ext.is_some_and(|e| e.pic_scaling_matrix.is_some()), bindings::V4L2_H264_PPS_FLAG_SCALING_MATRIX_PRESENT);
    bindings::v4l2_ctrl_h264_pps {
        pic_parameter_set_id: pps.pic_parameter_set_id.id(),
        seq_parameter_set_id: pps.seq_parameter_set_id.id(),
        num_slice_groups_minus1: pps.slice_groups.as_ref().map_or(0, |_| 1),
        num_ref_idx_l0_default_active_minus1: pps.num_ref_idx_l0_default_active_minus1 as u8,
        num_ref_idx_l1_default_active_minus1: pps.num_ref_idx_l1_default_active_minus1 as u8,
        weighted_bipred_idc: pps.weighted_bipred_idc,
        pic_init_qp_minus26: pps.pic_init_qp_minus26 as i8,
        pic_init_qs_minus26: pps.pic_init_qs_minus26 as i8,
        chroma_qp_index_offset: pps.chroma_qp_index_offset as i8,
        second_chroma_qp_index_offset: ext.map_or(pps.chroma_qp_index_offset, |e| e.second_chroma_qp_index_offset)
            as i8,
        flags: flags as u16,
    }
}

/// The scaling matrix in raster order: the PPS lists (fall-back rule B), else the SPS lists
/// (rule A), else flat.
pub fn scaling_control(sps: &SeqParameterSet, pps: &PicParameterSet) -> bindings::v4l2_ctrl_h264_scaling_matrix {
    let chroma = &sps.chroma_info;
    let pic = pps.extension.as_ref().and_then(|e| e.pic_scaling_matrix.as_deref());
    let lists4 = match pic {
        Some(m) => m.scaling_lists_4x4(chroma),
        None => chroma.scaling_lists_4x4(),
    };
    let lists8 = pic.and_then(|m| m.scaling_lists_8x8(chroma)).unwrap_or_else(|| chroma.scaling_lists_8x8());
    let mut c =
        bindings::v4l2_ctrl_h264_scaling_matrix { scaling_list_4x4: [[16; 16]; 6], scaling_list_8x8: [[16; 64]; 6] };
    for (dst, src) in c.scaling_list_4x4.iter_mut().zip(lists4.iter()) {
        for (i, v) in src.iter().enumerate() {
            dst[ZIGZAG_4X4[i]] = *v;
        }
    }
    for (dst, src) in c.scaling_list_8x8.iter_mut().zip(lists8.as_slice()) {
        for (i, v) in src.iter().enumerate() {
            dst[ZIGZAG_8X8[i]] = *v;
        }
    }
    c
}

/// Decode parameters for a picture, with the DPB as it stands before the picture is decoded.
pub fn decode_params(
    pic: &Picture,
    dpb: &Dpb,
    current: &crate::video::h264::dpb::Current,
) -> bindings::v4l2_ctrl_h264_decode_params {
    use crate::video::h264::dpb::Reference;
    let first = pic.first();
    let h = &first.header;
    let mut c = bindings::v4l2_ctrl_h264_decode_params {
        nal_ref_idc: first.nal_ref_idc as u16,
        frame_num: h.frame_num,
        top_field_order_cnt: current.poc.top,
        bottom_field_order_cnt: current.poc.bottom,
        idr_pic_id: h.idr_pic_id.unwrap_or(0) as u16,
        dec_ref_pic_marking_bit_size: first.dec_ref_pic_marking_bit_size,
        pic_order_cnt_bit_size: first.pic_order_cnt_bit_size,
        slice_group_change_cycle: h.slice_group_change_cycle.unwrap_or(0),
        ..Default::default()
    };
    match &h.pic_order_cnt_lsb {
        Some(PicOrderCountLsb::Frame(l)) => c.pic_order_cnt_lsb = *l as u16,
        Some(PicOrderCountLsb::FieldsAbsolute { pic_order_cnt_lsb, delta_pic_order_cnt_bottom }) => {
            c.pic_order_cnt_lsb = *pic_order_cnt_lsb as u16;
            c.delta_pic_order_cnt_bottom = *delta_pic_order_cnt_bottom;
        }
        Some(PicOrderCountLsb::FieldsDelta(d)) => {
            c.delta_pic_order_cnt0 = d[0];
            c.delta_pic_order_cnt1 = d[1];
        }
        None => {}
    }
    let mut flags = 0;
    if pic.is_idr() {
        flags |= bindings::V4L2_H264_DECODE_PARAM_FLAG_IDR_PIC;
    }
    if let FieldPic::Field(field) = &h.field_pic {
        flags |= bindings::V4L2_H264_DECODE_PARAM_FLAG_FIELD_PIC;
        if *field == h264_reader::nal::slice::Field::Bottom {
            flags |= bindings::V4L2_H264_DECODE_PARAM_FLAG_BOTTOM_FIELD;
        }
    }
    match h.slice_type.family {
        SliceFamily::P | SliceFamily::SP => flags |= bindings::V4L2_H264_DECODE_PARAM_FLAG_PFRAME,
        SliceFamily::B => flags |= bindings::V4L2_H264_DECODE_PARAM_FLAG_BFRAME,
        _ => {}
    }
    c.flags = flags;
    // Every entry, a frame_num gap's stand-ins included: they hold places in the reference lists
    // a frame-based driver builds from this array. Their timestamp names no buffer.
    for (slot, e) in c.dpb.iter_mut().zip(dpb.entries()) {
        let mut f = bindings::V4L2_H264_DPB_ENTRY_FLAG_VALID;
        // A long-term reference is named by its LongTermFrameIdx rather than its frame_num.
        let mut frame_num = e.frame_num;
        match e.reference {
            Reference::Short => f |= bindings::V4L2_H264_DPB_ENTRY_FLAG_ACTIVE,
            Reference::Long { frame_idx } => {
                f |= bindings::V4L2_H264_DPB_ENTRY_FLAG_ACTIVE | bindings::V4L2_H264_DPB_ENTRY_FLAG_LONG_TERM;
                frame_num = frame_idx;
            }
            Reference::None => {}
        }
        *slot = bindings::v4l2_h264_dpb_entry {
            reference_ts: if e.non_existing { 0 } else { e.id * 1000 },
            pic_num: e.pic_num as u32,
            frame_num: frame_num as u16,
            fields: bindings::V4L2_H264_FRAME_REF as u8,
            top_field_order_cnt: e.poc.top,
            bottom_field_order_cnt: e.poc.bottom,
            flags: f,
            ..Default::default()
        };
    }
    c
}

/// The slice parameters of one slice, with its reference lists (indices into the DPB entries,
/// which `decode_params` lists in the same order). Unused list entries have index 0xff.
pub fn slice_params(
    slice: &SliceInfo,
    pps: &PicParameterSet,
    l0: &[Option<usize>],
    l1: &[Option<usize>],
) -> bindings::v4l2_ctrl_h264_slice_params {
    use h264_reader::nal::slice::ColourPlane;
    let h = &slice.header;
    let (n0, n1) = active_counts(slice, pps);
    let slice_type = match h.slice_type.family {
        SliceFamily::P => bindings::V4L2_H264_SLICE_TYPE_P,
        SliceFamily::B => bindings::V4L2_H264_SLICE_TYPE_B,
        SliceFamily::I => bindings::V4L2_H264_SLICE_TYPE_I,
        SliceFamily::SP => bindings::V4L2_H264_SLICE_TYPE_SP,
        SliceFamily::SI => bindings::V4L2_H264_SLICE_TYPE_SI,
    };
    let mut flags = 0;
    if h.direct_spatial_mv_pred_flag == Some(true) {
        flags |= bindings::V4L2_H264_SLICE_FLAG_DIRECT_SPATIAL_MV_PRED;
    }
    if h.sp_for_switch_flag == Some(true) {
        flags |= bindings::V4L2_H264_SLICE_FLAG_SP_FOR_SWITCH;
    }
    let unused = bindings::v4l2_h264_reference { fields: 0, index: 0xff };
    let mut c = bindings::v4l2_ctrl_h264_slice_params {
        header_bit_size: slice.header_bit_size,
        first_mb_in_slice: h.first_mb_in_slice,
        slice_type: slice_type as u8,
        colour_plane_id: match h.colour_plane {
            None | Some(ColourPlane::Y) => 0,
            Some(ColourPlane::Cb) => 1,
            Some(ColourPlane::Cr) => 2,
        },
        redundant_pic_cnt: h.redundant_pic_cnt.unwrap_or(0) as u8,
        cabac_init_idc: h.cabac_init_idc.unwrap_or(0) as u8,
        slice_qp_delta: h.slice_qp_delta as i8,
        // h264-reader keeps QSY = 26 + pic_init_qs_minus26 + slice_qs_delta.
        slice_qs_delta: h.slice_qs.map_or(0, |qs| qs as i32 - 26 - pps.pic_init_qs_minus26) as i8,
        disable_deblocking_filter_idc: h.disable_deblocking_filter_idc,
        slice_alpha_c0_offset_div2: h.slice_alpha_c0_offset_div2.unwrap_or(0) as i8,
        slice_beta_offset_div2: h.slice_beta_offset_div2.unwrap_or(0) as i8,
        num_ref_idx_l0_active_minus1: (n0 - 1) as u8,
        num_ref_idx_l1_active_minus1: (n1 - 1) as u8,
        ref_pic_list0: [unused; 32],
        ref_pic_list1: [unused; 32],
        flags,
        ..Default::default()
    };
    for (list, refs) in [(&mut c.ref_pic_list0, l0), (&mut c.ref_pic_list1, l1)] {
        for (dst, r) in list.iter_mut().zip(refs) {
            if let Some(i) = r.filter(|&i| i < bindings::V4L2_H264_NUM_DPB_ENTRIES as usize) {
                *dst = bindings::v4l2_h264_reference { fields: bindings::V4L2_H264_FRAME_REF as u8, index: i as u8 };
            }
        }
    }
    c
}

/// The prediction weight table of a slice, weights inferred where the table leaves them out
/// (2^denominator, offset 0); all zero for a slice without explicit weighted prediction.
pub fn pred_weights(slice: &SliceInfo, pps: &PicParameterSet) -> bindings::v4l2_ctrl_h264_pred_weights {
    let mut c = bindings::v4l2_ctrl_h264_pred_weights::default();
    let Some(t) = &slice.header.pred_weight_table else { return c };
    let (n0, n1) = active_counts(slice, pps);
    c.luma_log2_weight_denom = t.luma_log2_weight_denom as u16;
    c.chroma_log2_weight_denom = t.chroma_log2_weight_denom.unwrap_or(0) as u16;
    let luma_default = 1i32 << t.luma_log2_weight_denom.min(7);
    let chroma_default = t.chroma_log2_weight_denom.map(|d| 1i32 << d.min(7));
    let b = slice.header.slice_type.family == SliceFamily::B;
    let lists =
        [(&t.luma_weights, &t.chroma_weights, n0), (&t.luma_weights_l1, &t.chroma_weights_l1, if b { n1 } else { 0 })];
    for (f, (luma, chroma, n)) in c.weight_factors.iter_mut().zip(lists) {
        for i in 0..n.min(32) {
            let (w, o) = luma.get(i).and_then(|w| w.as_ref()).map_or((luma_default, 0), |w| (w.weight, w.offset));
            f.luma_weight[i] = w as i16;
            f.luma_offset[i] = o as i16;
            if let Some(chroma_default) = chroma_default {
                for j in 0..2 {
                    let (w, o) =
                        chroma.get(i).and_then(|c| c.get(j)).map_or((chroma_default, 0), |w| (w.weight, w.offset));
                    f.chroma_weight[i][j] = w as i16;
                    f.chroma_offset[i][j] = o as i16;
                }
            }
        }
    }
    c
}
