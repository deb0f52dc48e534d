//! Picture order counts (H.264 8.2.1), for frames, in all three `pic_order_cnt_type`s.

use h264_reader::nal::slice::PicOrderCountLsb;
use h264_reader::nal::sps::PicOrderCntType;

/// What one picture contributes to the POC of the pictures after it.
#[derive(Debug, Clone, Copy, Default)]
pub struct PocState {
    /// Type 0: PicOrderCntMsb and pic_order_cnt_lsb of the previous reference picture.
    prev_msb: i32,
    prev_lsb: i32,
    /// Types 1 and 2: FrameNumOffset and frame_num of the previous picture.
    prev_frame_num_offset: i32,
    prev_frame_num: u32,
}

/// The inputs of the POC computation for one frame.
#[derive(Debug, Clone, Copy)]
pub struct PocInput<'a> {
    pub pic_order_cnt: &'a PicOrderCntType,
    pub lsb: Option<&'a PicOrderCountLsb>,
    pub max_frame_num: u32,
    pub frame_num: u32,
    pub idr: bool,
    pub nal_ref_idc: u8,
    /// The picture has memory_management_control_operation 5.
    pub mmco5: bool,
}

/// Top and bottom field order counts of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Poc {
    pub top: i32,
    pub bottom: i32,
}

impl Poc {
    pub fn frame(&self) -> i32 {
        self.top.min(self.bottom)
    }
}

impl PocState {
    /// The POC of a frame, updating the state for the next picture.
    pub fn compute(&mut self, i: &PocInput) -> Poc {
        let poc = match i.pic_order_cnt {
            PicOrderCntType::TypeZero { log2_max_pic_order_cnt_lsb_minus4 } => {
                let max_lsb = 1i32 << (log2_max_pic_order_cnt_lsb_minus4 + 4);
                let (lsb, delta_bottom) = match i.lsb {
                    Some(PicOrderCountLsb::Frame(l)) => (*l as i32, 0),
                    Some(PicOrderCountLsb::FieldsAbsolute { pic_order_cnt_lsb, delta_pic_order_cnt_bottom }) => {
                        (*pic_order_cnt_lsb as i32, *delta_pic_order_cnt_bottom)
                    }
                    _ => (0, 0),
                };
                let (prev_msb, prev_lsb) = if i.idr { (0, 0) } else { (self.prev_msb, self.prev_lsb) };
                let msb = if lsb < prev_lsb && prev_lsb - lsb >= max_lsb / 2 {
                    prev_msb + max_lsb
                } else if lsb > prev_lsb && lsb - prev_lsb > max_lsb / 2 {
                    prev_msb - max_lsb
                } else {
                    prev_msb
                };
                let top = msb + lsb;
                let poc = Poc { top, bottom: top + delta_bottom };
                if i.nal_ref_idc != 0 {
                    if i.mmco5 {
                        // After mmco 5 the picture's POC counts as its top POC minus the frame POC.
                        self.prev_msb = 0;
                        self.prev_lsb = top - poc.frame();
                    } else {
                        self.prev_msb = msb;
                        self.prev_lsb = lsb;
                    }
                }
                poc
            }
            PicOrderCntType::TypeOne {
                delta_pic_order_always_zero_flag: _,
                offset_for_non_ref_pic,
                offset_for_top_to_bottom_field,
                offsets_for_ref_frame,
            } => {
                let offset = self.frame_num_offset(i);
                let n = offsets_for_ref_frame.len() as i32;
                let mut abs = if n != 0 { offset + i.frame_num as i32 } else { 0 };
                if i.nal_ref_idc == 0 && abs > 0 {
                    abs -= 1;
                }
                let mut expected = 0i32;
                if abs > 0 {
                    let per_cycle: i32 = offsets_for_ref_frame.iter().sum();
                    let cycle = (abs - 1) / n;
                    let in_cycle = ((abs - 1) % n) as usize;
                    expected = cycle * per_cycle + offsets_for_ref_frame[..=in_cycle].iter().sum::<i32>();
                }
                if i.nal_ref_idc == 0 {
                    expected += offset_for_non_ref_pic;
                }
                let d = match i.lsb {
                    Some(PicOrderCountLsb::FieldsDelta(d)) => *d,
                    _ => [0, 0],
                };
                let top = expected + d[0];
                let poc = Poc { top, bottom: top + offset_for_top_to_bottom_field + d[1] };
                self.remember_frame_num(i, offset);
                poc
            }
            PicOrderCntType::TypeTwo => {
                let offset = self.frame_num_offset(i);
                let temp = if i.idr {
                    0
                } else if i.nal_ref_idc == 0 {
                    2 * (offset + i.frame_num as i32) - 1
                } else {
                    2 * (offset + i.frame_num as i32)
                };
                self.remember_frame_num(i, offset);
                Poc { top: temp, bottom: temp }
            }
        };
        poc
    }

    fn frame_num_offset(&self, i: &PocInput) -> i32 {
        if i.idr {
            0
        } else if self.prev_frame_num > i.frame_num {
            self.prev_frame_num_offset + i.max_frame_num as i32
        } else {
            self.prev_frame_num_offset
        }
    }

    fn remember_frame_num(&mut self, i: &PocInput, offset: i32) {
        if i.mmco5 {
            self.prev_frame_num_offset = 0;
            self.prev_frame_num = 0;
        } else {
            self.prev_frame_num_offset = offset;
            self.prev_frame_num = i.frame_num;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(
        t: &'a PicOrderCntType,
        lsb: Option<&'a PicOrderCountLsb>,
        frame_num: u32,
        idr: bool,
        r: u8,
    ) -> PocInput<'a> {
        PocInput { pic_order_cnt: t, lsb, max_frame_num: 16, frame_num, idr, nal_ref_idc: r, mmco5: false }
    }

    #[test]
    fn type_zero_wraps_the_lsb() {
        let t = PicOrderCntType::TypeZero { log2_max_pic_order_cnt_lsb_minus4: 0 };
        let mut s = PocState::default();
        let lsbs = [0u32, 4, 8, 12, 0, 4];
        let pocs: Vec<i32> = lsbs
            .iter()
            .enumerate()
            .map(|(n, l)| {
                let lsb = PicOrderCountLsb::Frame(*l);
                s.compute(&input(&t, Some(&lsb), n as u32, n == 0, 1)).top
            })
            .collect();
        assert_eq!(pocs, [0, 4, 8, 12, 16, 20]);
    }

    #[test]
    fn type_zero_non_reference_pictures_do_not_move_the_msb_base() {
        let t = PicOrderCntType::TypeZero { log2_max_pic_order_cnt_lsb_minus4: 0 };
        let mut s = PocState::default();
        let l = |v| PicOrderCountLsb::Frame(v);
        assert_eq!(s.compute(&input(&t, Some(&l(0)), 0, true, 1)).top, 0);
        assert_eq!(s.compute(&input(&t, Some(&l(6)), 1, false, 1)).top, 6);
        // A B-frame (non-reference) before it in output order.
        assert_eq!(s.compute(&input(&t, Some(&l(2)), 2, false, 0)).top, 2);
        assert_eq!(s.compute(&input(&t, Some(&l(12)), 2, false, 1)).top, 12);
        assert_eq!(s.compute(&input(&t, Some(&l(2)), 3, false, 1)).top, 18);
    }

    #[test]
    fn type_one_follows_the_reference_cycle() {
        // I P b P b: offsets of 2 per reference frame, non-reference pictures one before.
        let t = PicOrderCntType::TypeOne {
            delta_pic_order_always_zero_flag: true,
            offset_for_non_ref_pic: -2,
            offset_for_top_to_bottom_field: 0,
            offsets_for_ref_frame: vec![4],
        };
        let mut s = PocState::default();
        let got: Vec<i32> = [(0, true, 1), (1, false, 1), (2, false, 0), (2, false, 1), (3, false, 0)]
            .iter()
            .map(|(f, idr, r)| s.compute(&input(&t, None, *f, *idr, *r)).top)
            .collect();
        assert_eq!(got, [0, 4, 2, 8, 6]);
    }

    #[test]
    fn type_two_is_twice_the_frame_number_across_wraps() {
        let t = PicOrderCntType::TypeTwo;
        let mut s = PocState::default();
        let got: Vec<i32> = (0..20u32).map(|n| s.compute(&input(&t, None, n % 16, n == 0, 1)).top).collect();
        assert_eq!(got, (0..20).map(|n| 2 * n).collect::<Vec<i32>>());
        // A non-reference picture sits one before the reference picture with its frame_num.
        assert_eq!(s.compute(&input(&t, None, 4, false, 0)).top, 2 * (16 + 4) - 1);
    }
}
