//! Reference picture lists of a slice (H.264 8.2.4.2 and 8.2.4.3), for frame pictures: the
//! initial order of the references in the DPB, cut to the slice's active count, then the slice
//! header's modifications. Slice-based stateless decoders (cedrus) take the final lists; frame-
//! based ones (hantro, rkvdec) build them in the kernel.

use h264_reader::nal::pps::PicParameterSet;
use h264_reader::nal::slice::{ModificationOfPicNums, NumRefIdxActive, RefPicListModifications, SliceFamily};

use super::dpb::{Current, DpbEntry, Reference};
use super::picture::SliceInfo;

/// The active reference counts of a slice: the override in its header, else the PPS defaults
/// (also for I slices, whose lists are empty).
pub fn active_counts(slice: &SliceInfo, pps: &PicParameterSet) -> (usize, usize) {
    let (l0, l1) = match slice.header.num_ref_idx_active {
        Some(NumRefIdxActive::P { num_ref_idx_l0_active_minus1 }) => {
            (num_ref_idx_l0_active_minus1, pps.num_ref_idx_l1_default_active_minus1)
        }
        Some(NumRefIdxActive::B { num_ref_idx_l0_active_minus1, num_ref_idx_l1_active_minus1 }) => {
            (num_ref_idx_l0_active_minus1, num_ref_idx_l1_active_minus1)
        }
        None => (pps.num_ref_idx_l0_default_active_minus1, pps.num_ref_idx_l1_default_active_minus1),
    };
    (l0 as usize + 1, l1 as usize + 1)
}

/// The two lists of a slice as indices into `entries` (the DPB before the picture is decoded);
/// `None` where the stream names no picture. Both are empty for I and SI slices, list 1 for P.
pub fn ref_lists(
    entries: &[DpbEntry],
    current: &Current,
    slice: &SliceInfo,
    pps: &PicParameterSet,
    max_frame_num: u32,
) -> (Vec<Option<usize>>, Vec<Option<usize>>) {
    let family = slice.header.slice_type.family;
    let (n0, n1) = active_counts(slice, pps);
    let short = |i: &usize| entries[*i].reference == Reference::Short;
    let long = |i: &usize| matches!(entries[*i].reference, Reference::Long { .. });
    let refs: Vec<usize> = (0..entries.len()).filter(|i| short(i) || long(i)).collect();
    let mut long_terms: Vec<usize> = refs.iter().copied().filter(long).collect();
    long_terms.sort_by_key(|i| entries[*i].pic_num);

    let (l0, l1) = match family {
        SliceFamily::P | SliceFamily::SP => {
            // Short-term by descending PicNum, then long-term by ascending LongTermPicNum.
            let mut l0: Vec<usize> = refs.iter().copied().filter(short).collect();
            l0.sort_by_key(|i| std::cmp::Reverse(entries[*i].pic_num));
            l0.extend(&long_terms);
            (l0, Vec::new())
        }
        SliceFamily::B => {
            // Short-term before the picture (closest first), then after it (closest first);
            // list 1 the other way round; long-term ones last in both.
            let poc = current.poc.frame();
            let mut before: Vec<usize> =
                refs.iter().copied().filter(|i| short(i) && entries[*i].poc.frame() <= poc).collect();
            before.sort_by_key(|i| std::cmp::Reverse(entries[*i].poc.frame()));
            let mut after: Vec<usize> =
                refs.iter().copied().filter(|i| short(i) && entries[*i].poc.frame() > poc).collect();
            after.sort_by_key(|i| entries[*i].poc.frame());
            let l0: Vec<usize> = before.iter().chain(&after).chain(&long_terms).copied().collect();
            let mut l1: Vec<usize> = after.iter().chain(&before).chain(&long_terms).copied().collect();
            // A list 1 equal to list 0 (of more than one entry) has its first two swapped.
            if l1.len() > 1 && l1 == l0 {
                l1.swap(0, 1);
            }
            (l0, l1)
        }
        SliceFamily::I | SliceFamily::SI => return (Vec::new(), Vec::new()),
    };
    // Cut to the active count, or padded with "no picture" up to it.
    let fit = |list: Vec<usize>, n: usize| -> Vec<Option<usize>> {
        list.into_iter().map(Some).chain(std::iter::repeat(None)).take(n).collect()
    };
    let mut list0 = fit(l0, n0);
    let mut list1 = if family == SliceFamily::B { fit(l1, n1) } else { Vec::new() };
    let (mods0, mods1) = match &slice.header.ref_pic_list_modification {
        Some(RefPicListModifications::P { ref_pic_list_modification_l0 }) => {
            (&ref_pic_list_modification_l0[..], &[][..])
        }
        Some(RefPicListModifications::B { ref_pic_list_modification_l0, ref_pic_list_modification_l1 }) => {
            (&ref_pic_list_modification_l0[..], &ref_pic_list_modification_l1[..])
        }
        _ => (&[][..], &[][..]),
    };
    modify(&mut list0, mods0, entries, current.frame_num, max_frame_num);
    modify(&mut list1, mods1, entries, current.frame_num, max_frame_num);
    (list0, list1)
}

/// 8.2.4.3: each operation puts one picture at the next index and removes its later duplicate.
fn modify(
    list: &mut Vec<Option<usize>>,
    ops: &[ModificationOfPicNums],
    entries: &[DpbEntry],
    curr_pic_num: u32,
    max_pic_num: u32,
) {
    let n = list.len();
    let (curr, max) = (curr_pic_num as i64, max_pic_num as i64);
    let mut pred = curr;
    for (ref_idx, op) in ops.iter().enumerate() {
        if ref_idx >= n {
            break;
        }
        let target = match *op {
            ModificationOfPicNums::Subtract(abs_diff_minus1) | ModificationOfPicNums::Add(abs_diff_minus1) => {
                let diff = abs_diff_minus1 as i64 + 1;
                let mut no_wrap =
                    if matches!(op, ModificationOfPicNums::Subtract(_)) { pred - diff } else { pred + diff };
                if no_wrap < 0 {
                    no_wrap += max;
                } else if no_wrap >= max {
                    no_wrap -= max;
                }
                pred = no_wrap;
                let pic_num = if no_wrap > curr { no_wrap - max } else { no_wrap };
                entries.iter().position(|e| e.reference == Reference::Short && e.pic_num as i64 == pic_num)
            }
            ModificationOfPicNums::LongTermRef(long_term_pic_num) => entries.iter().position(|e| {
                matches!(e.reference, Reference::Long { .. }) && e.pic_num as i64 == long_term_pic_num as i64
            }),
            // Multiview operations do not occur in the streams taken here.
            ModificationOfPicNums::SubtractViewIdx(_) | ModificationOfPicNums::AddViewIdx(_) => continue,
        };
        list.insert(ref_idx, target);
        // Remove the same picture further down (it was at most once in the list before).
        if let Some(t) = target {
            if let Some(dup) = (ref_idx + 1..list.len()).find(|&j| list[j] == Some(t)) {
                list.remove(dup);
            }
        }
        list.truncate(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::h264::poc::Poc;

    fn entry(id: u64, frame_num: u32, pic_num: i32, poc: i32, reference: Reference) -> DpbEntry {
        DpbEntry {
            id,
            frame_num,
            pic_num,
            poc: Poc { top: poc, bottom: poc },
            reference,
            needed_for_output: false,
            non_existing: false,
        }
    }

    fn current(frame_num: u32, poc: i32) -> Current {
        Current { id: 99, frame_num, poc: Poc { top: poc, bottom: poc }, idr: false, reference: true }
    }

    #[test]
    fn modifications_move_a_picture_forward_and_drop_its_duplicate() {
        // Short-term references with PicNum 1..=3, initial P order 3, 2, 1.
        let e = [
            entry(1, 1, 1, 2, Reference::Short),
            entry(2, 2, 2, 4, Reference::Short),
            entry(3, 3, 3, 6, Reference::Short),
        ];
        let mut list = vec![Some(2), Some(1), Some(0)];
        // CurrPicNum 4: "subtract 3" names PicNum 1 (entry 0), then "add 1" PicNum 2 (entry 1).
        modify(
            &mut list,
            &[ModificationOfPicNums::Subtract(2), ModificationOfPicNums::Add(0)],
            &e,
            current(4, 8).frame_num,
            16,
        );
        assert_eq!(list, vec![Some(0), Some(1), Some(2)]);
        // The same picture twice (x264 does it for weighted prediction): the second operation
        // goes round MaxPicNum to name PicNum 3 again; the list keeps its length.
        let mut list = vec![Some(2), Some(1), None];
        modify(&mut list, &[ModificationOfPicNums::Subtract(0), ModificationOfPicNums::Subtract(15)], &e, 4, 16);
        assert_eq!(list, vec![Some(2), Some(2), Some(1)]);
    }

    #[test]
    fn pic_nums_wrap_below_zero() {
        // frame_num wrapped: CurrPicNum 1, a reference with frame_num 15 has PicNum -1.
        let e = [entry(1, 15, -1, 0, Reference::Short), entry(2, 0, 0, 2, Reference::Short)];
        let mut list = vec![Some(1), Some(0)];
        // "subtract 2" from 1: picNumNoWrap 15 (wrapped), PicNum 15 - 16 = -1.
        modify(&mut list, &[ModificationOfPicNums::Subtract(1)], &e, 1, 16);
        assert_eq!(list, vec![Some(0), Some(1)]);
    }

    #[test]
    fn long_term_references_come_last_and_are_named_by_long_term_pic_num() {
        let e = [
            entry(1, 1, 0, 2, Reference::Long { frame_idx: 0 }),
            entry(2, 2, 2, 4, Reference::Short),
            entry(3, 3, 3, 6, Reference::Short),
        ];
        let mut list = vec![Some(2), Some(1), Some(0)];
        modify(&mut list, &[ModificationOfPicNums::LongTermRef(0)], &e, 4, 16);
        assert_eq!(list, vec![Some(0), Some(2), Some(1)]);
    }
}
