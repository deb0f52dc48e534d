//! The decoded picture buffer of a frame decoder (H.264 8.2.4, 8.2.5, C.4): which decoded
//! frames are references (short or long term), frame_num gaps, and output in POC order by
//! bumping.
//!
//! Pictures are named by an `id` the caller chooses (the V4L2 decoder uses its buffer timestamp),
//! so the caller can tell which decoded buffers the DPB still needs.

use h264_reader::nal::slice::{DecRefPicMarking, MemoryManagementControlOperation};
use h264_reader::nal::sps::SeqParameterSet;

use super::picture::Picture;
use super::poc::{Poc, PocInput, PocState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    None,
    Short,
    Long { frame_idx: u32 },
}

#[derive(Debug, Clone)]
pub struct DpbEntry {
    pub id: u64,
    pub frame_num: u32,
    /// FrameNumWrap for short-term references, LongTermFrameIdx for long-term ones (the PicNum
    /// a frame decoder uses).
    pub pic_num: i32,
    pub poc: Poc,
    pub reference: Reference,
    pub needed_for_output: bool,
    /// Inserted for a frame_num gap: a reference without a decoded buffer.
    pub non_existing: bool,
}

/// A picture leaving the DPB for display, in output order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    pub id: u64,
    pub poc: i32,
}

/// The picture being decoded, as the DPB sees it.
#[derive(Debug, Clone)]
pub struct Current {
    pub id: u64,
    pub frame_num: u32,
    pub poc: Poc,
    pub idr: bool,
    pub reference: bool,
}

#[derive(Debug, Default)]
pub struct Dpb {
    entries: Vec<DpbEntry>,
    poc: PocState,
    /// frame_num of the previous reference picture (for gap detection).
    prev_ref_frame_num: Option<u32>,
    max_long_term_frame_idx: Option<u32>,
    /// Frames the DPB holds (C.4), and how many may wait for output before one is bumped.
    size: usize,
    max_reorder: usize,
    max_refs: usize,
    next_gap_id: u64,
}

/// MaxDpbMbs of Table A-1 for a level_idc (level 1b uses level_idc 11 with constraint_set3 or 9).
fn max_dpb_mbs(level_idc: u8) -> u32 {
    match level_idc {
        0..=10 => 396,
        11 => 900,
        12 | 13 | 20 => 2376,
        21 => 4752,
        22 | 30 => 8100,
        31 => 18000,
        32 => 20480,
        40 | 41 => 32768,
        42 => 34816,
        50 => 110400,
        51 | 52 => 184320,
        _ => 696320,
    }
}

/// How many frames the DPB of a stream holds and how many may wait for output.
pub fn dpb_size(sps: &SeqParameterSet) -> (usize, usize) {
    let mbs = (sps.pic_width_in_mbs_minus1 + 1) * (sps.pic_height_in_map_units_minus1 + 1);
    let from_level = (max_dpb_mbs(sps.level_idc) / mbs.max(1)).clamp(1, 16) as usize;
    let restrictions = sps.vui_parameters.as_ref().and_then(|v| v.bitstream_restrictions.as_ref());
    let size = restrictions
        .map(|r| r.max_dec_frame_buffering as usize)
        .unwrap_or(from_level)
        .max(sps.max_num_ref_frames as usize)
        .clamp(1, 16);
    let reorder = restrictions.map(|r| r.max_num_reorder_frames as usize).unwrap_or(size).min(size);
    (size, reorder)
}

impl Dpb {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn entries(&self) -> &[DpbEntry] {
        &self.entries
    }

    /// Whether the DPB still holds the picture `id` (as a reference or waiting for output).
    pub fn holds(&self, id: u64) -> bool {
        self.entries.iter().any(|e| e.id == id)
    }

    /// The number of frames this DPB holds at most.
    pub fn capacity(&self) -> usize {
        self.size
    }

    /// Everything still waiting, in output order; the DPB is left empty (end of stream).
    pub fn flush(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        while let Some(o) = self.bump() {
            out.push(o);
        }
        self.entries.clear();
        out
    }

    /// Start a picture: handle an IDR or a frame_num gap, compute its POC and the PicNums of the
    /// references. Returns the picture and what had to be output to make room.
    pub fn begin(&mut self, pic: &Picture, id: u64) -> (Current, Vec<Output>) {
        let first = pic.first();
        let h = &first.header;
        let frame_num = h.frame_num as u32;
        let max_frame_num = pic.max_frame_num();
        let idr = pic.is_idr();
        let (size, reorder) = dpb_size(&pic.sps);
        self.size = size;
        self.max_reorder = reorder;
        self.max_refs = pic.sps.max_num_ref_frames.max(1) as usize;
        let mut out = Vec::new();
        if idr {
            let no_output =
                matches!(h.dec_ref_pic_marking, Some(DecRefPicMarking::Idr { no_output_of_prior_pics_flag: true, .. }));
            if no_output {
                self.entries.clear();
            } else {
                out.extend(self.flush());
            }
            self.prev_ref_frame_num = None;
            self.max_long_term_frame_idx = None;
        } else if let Some(prev) = self.prev_ref_frame_num {
            // A gap in frame_num: "non-existing" frames take the missing numbers (8.2.5.2).
            let expected = (prev + 1) % max_frame_num;
            if frame_num != prev && frame_num != expected {
                let mut missing = expected;
                let mut guard = 0;
                while missing != frame_num && guard < max_frame_num {
                    // Each stand-in is decoded in turn: the oldest reference is the one with
                    // the lowest PicNum as seen from it.
                    self.set_pic_nums(missing, max_frame_num);
                    self.sliding_window(&mut out);
                    self.next_gap_id += 1;
                    self.entries.push(DpbEntry {
                        id: u64::MAX - self.next_gap_id,
                        frame_num: missing,
                        pic_num: 0,
                        poc: Poc { top: 0, bottom: 0 },
                        reference: Reference::Short,
                        needed_for_output: false,
                        non_existing: true,
                    });
                    missing = (missing + 1) % max_frame_num;
                    guard += 1;
                }
                self.prev_ref_frame_num = Some((frame_num + max_frame_num - 1) % max_frame_num);
            }
        }
        let mmco5 = matches!(&h.dec_ref_pic_marking, Some(DecRefPicMarking::Adaptive(ops))
            if ops.iter().any(|o| matches!(o, MemoryManagementControlOperation::AllRefPicturesUnused)));
        let poc = self.poc.compute(&PocInput {
            pic_order_cnt: &pic.sps.pic_order_cnt,
            lsb: h.pic_order_cnt_lsb.as_ref(),
            max_frame_num,
            frame_num,
            idr,
            nal_ref_idc: pic.nal_ref_idc(),
            mmco5,
        });
        self.set_pic_nums(frame_num, max_frame_num);
        (Current { id, frame_num, poc, idr, reference: pic.is_reference() }, out)
    }

    /// PicNum of each reference as the picture with `frame_num` sees it (8.2.4.1).
    fn set_pic_nums(&mut self, frame_num: u32, max_frame_num: u32) {
        for e in &mut self.entries {
            e.pic_num = match e.reference {
                Reference::Short if e.frame_num > frame_num => e.frame_num as i32 - max_frame_num as i32,
                Reference::Short => e.frame_num as i32,
                Reference::Long { frame_idx } => frame_idx as i32,
                Reference::None => 0,
            };
        }
    }

    /// Finish a decoded picture: mark references, store it, and output what the DPB must let
    /// go (in POC order).
    pub fn finish(&mut self, pic: &Picture, mut current: Current) -> Vec<Output> {
        let mut out = Vec::new();
        let h = &pic.first().header;
        let mut reference = if current.reference { Reference::Short } else { Reference::None };
        if current.reference {
            match &h.dec_ref_pic_marking {
                Some(DecRefPicMarking::Idr { long_term_reference_flag, .. }) => {
                    for e in &mut self.entries {
                        e.reference = Reference::None;
                    }
                    if *long_term_reference_flag {
                        reference = Reference::Long { frame_idx: 0 };
                        self.max_long_term_frame_idx = Some(0);
                    }
                }
                Some(DecRefPicMarking::Adaptive(ops)) => {
                    for op in ops {
                        if let Some(r) = self.mmco(op, &mut current, &mut out) {
                            reference = r;
                        }
                    }
                }
                _ => self.sliding_window(&mut out),
            }
            self.prev_ref_frame_num = Some(current.frame_num);
        }
        self.entries.retain(|e| e.reference != Reference::None || e.needed_for_output);
        // Bump until the new picture fits and no more than max_reorder wait for output.
        while self.entries.len() >= self.size.max(1) {
            match self.bump() {
                Some(o) => out.push(o),
                None => break,
            }
        }
        self.entries.push(DpbEntry {
            id: current.id,
            frame_num: current.frame_num,
            pic_num: current.frame_num as i32,
            poc: current.poc,
            reference,
            needed_for_output: true,
            non_existing: false,
        });
        while self.entries.iter().filter(|e| e.needed_for_output).count() > self.max_reorder {
            match self.bump() {
                Some(o) => out.push(o),
                None => break,
            }
        }
        out
    }

    /// Output the waiting picture with the smallest POC; drop it if nothing references it.
    fn bump(&mut self) -> Option<Output> {
        let (i, e) =
            self.entries.iter().enumerate().filter(|(_, e)| e.needed_for_output).min_by_key(|(_, e)| e.poc.frame())?;
        let out = Output { id: e.id, poc: e.poc.frame() };
        if e.reference == Reference::None {
            self.entries.remove(i);
        } else {
            self.entries[i].needed_for_output = false;
        }
        Some(out)
    }

    /// 8.2.5.3: when the references fill max_num_ref_frames, the oldest short-term one goes.
    fn sliding_window(&mut self, _out: &mut Vec<Output>) {
        let refs = self.entries.iter().filter(|e| e.reference != Reference::None).count();
        if refs >= self.max_refs.max(1) {
            if let Some(oldest) =
                self.entries.iter_mut().filter(|e| e.reference == Reference::Short).min_by_key(|e| e.pic_num)
            {
                oldest.reference = Reference::None;
            }
        }
        self.entries.retain(|e| e.reference != Reference::None || e.needed_for_output);
    }

    /// One memory_management_control_operation (8.2.5.4). Returns the marking of the current
    /// picture when the operation sets it.
    fn mmco(
        &mut self,
        op: &MemoryManagementControlOperation,
        current: &mut Current,
        out: &mut Vec<Output>,
    ) -> Option<Reference> {
        use MemoryManagementControlOperation as Op;
        let cur_pic_num = current.frame_num as i32;
        match *op {
            Op::ShortTermUnusedForRef { difference_of_pic_nums_minus1 } => {
                let pic_num = cur_pic_num - (difference_of_pic_nums_minus1 as i32 + 1);
                for e in &mut self.entries {
                    if e.reference == Reference::Short && e.pic_num == pic_num {
                        e.reference = Reference::None;
                    }
                }
            }
            Op::LongTermUnusedForRef { long_term_pic_num } => {
                for e in &mut self.entries {
                    if e.reference == (Reference::Long { frame_idx: long_term_pic_num }) {
                        e.reference = Reference::None;
                    }
                }
            }
            Op::ShortTermUsedForLongTerm { difference_of_pic_nums_minus1, long_term_frame_idx } => {
                let pic_num = cur_pic_num - (difference_of_pic_nums_minus1 as i32 + 1);
                for e in &mut self.entries {
                    if e.reference == (Reference::Long { frame_idx: long_term_frame_idx }) {
                        e.reference = Reference::None;
                    }
                }
                for e in &mut self.entries {
                    if e.reference == Reference::Short && e.pic_num == pic_num {
                        e.reference = Reference::Long { frame_idx: long_term_frame_idx };
                        e.pic_num = long_term_frame_idx as i32;
                    }
                }
            }
            Op::MaxUsedLongTermFrameRef { max_long_term_frame_idx_plus1 } => {
                self.max_long_term_frame_idx = max_long_term_frame_idx_plus1.checked_sub(1);
                for e in &mut self.entries {
                    if let Reference::Long { frame_idx } = e.reference {
                        if max_long_term_frame_idx_plus1 == 0 || frame_idx >= max_long_term_frame_idx_plus1 {
                            e.reference = Reference::None;
                        }
                    }
                }
            }
            Op::AllRefPicturesUnused => {
                for e in &mut self.entries {
                    e.reference = Reference::None;
                }
                self.max_long_term_frame_idx = None;
                // The picture now counts as frame_num 0 with POC relative to itself (8.2.1):
                // what waits for output comes first.
                while let Some(o) = self.bump() {
                    out.push(o);
                }
                let f = current.poc.frame();
                current.poc = Poc { top: current.poc.top - f, bottom: current.poc.bottom - f };
                current.frame_num = 0;
            }
            Op::CurrentUsedForLongTerm { long_term_frame_idx } => {
                for e in &mut self.entries {
                    if e.reference == (Reference::Long { frame_idx: long_term_frame_idx }) {
                        e.reference = Reference::None;
                    }
                }
                return Some(Reference::Long { frame_idx: long_term_frame_idx });
            }
        }
        None
    }
}
