//! NV12 → RGBA on the CPU: the fallback for compositing a decoded picture that no plane shows,
//! where the renderer cannot sample YUV itself (pixman, or a software GL rasterizer: Mesa 22's
//! softpipe crashes sampling NV12 external images). Each use maps the picture and copies it, and
//! is counted as such.

use std::os::fd::{AsFd, AsRawFd};

use smithay::backend::allocator::dmabuf::Dmabuf;
use smithay::backend::allocator::Buffer as _;

use super::{DMA_BUF_SYNC_END, DMA_BUF_SYNC_READ, DMA_BUF_SYNC_START};

use super::colour::Colour;

/// Convert `size` pixels of an NV12 picture (a Y plane and an interleaved CbCr plane at half
/// resolution) of `colour` into RGBA rows of `size.0 * 4` bytes.
pub fn nv12_to_rgba(
    y: &[u8],
    y_stride: usize,
    uv: &[u8],
    uv_stride: usize,
    size: (u32, u32),
    colour: Colour,
    out: &mut [u8],
) {
    let (w, h) = (size.0 as usize, size.1 as usize);
    let m = colour.coefficients();
    let clamp = |v: i32| (v >> 8).clamp(0, 255) as u8;
    for row in 0..h {
        let y_row = &y[row * y_stride..][..w];
        let uv_row = &uv[(row / 2) * uv_stride..][..w.div_ceil(2) * 2];
        let out_row = &mut out[row * w * 4..][..w * 4];
        for x in 0..w {
            let luma = (y_row[x] as i32 - m.y_offset) * m.y;
            let (u, v) = (uv_row[x & !1] as i32 - 128, uv_row[x | 1] as i32 - 128);
            let px = &mut out_row[x * 4..][..4];
            px[0] = clamp(luma + m.rv * v + 128);
            px[1] = clamp(luma + m.gu * u + m.gv * v + 128);
            px[2] = clamp(luma + m.bu * u + 128);
            px[3] = 255;
        }
    }
}

/// A read-only CPU mapping of a whole dmabuf fd, synchronised for reading while it lives.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
    fd: i32,
}

impl Mapping {
    fn new(fd: std::os::fd::BorrowedFd<'_>) -> Result<Mapping, String> {
        let fd = fd.as_raw_fd();
        // SAFETY: plain syscalls on a dmabuf fd we hold; the mapping is unmapped on drop.
        unsafe {
            let len = libc::lseek(fd, 0, libc::SEEK_END);
            if len <= 0 {
                return Err(format!("dmabuf size: {}", std::io::Error::last_os_error()));
            }
            let len = len as usize;
            let ptr = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, fd, 0);
            if ptr == libc::MAP_FAILED {
                return Err(format!("mapping the picture: {}", std::io::Error::last_os_error()));
            }
            super::dmabuf_sync(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ);
            Ok(Mapping { ptr, len, fd })
        }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        super::dmabuf_sync(self.fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ);
        // SAFETY: unmaps what `new` mapped.
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}

/// The visible `size` of an NV12 dmabuf of `colour` as RGBA rows, through a CPU mapping of the
/// buffer.
pub fn dmabuf_nv12_to_rgba(dmabuf: &Dmabuf, size: (u32, u32), colour: Colour) -> Result<Vec<u8>, String> {
    let format = dmabuf.format().code as u32;
    if format != crate::video::v4l2::PIX_FMT_NV12 {
        return Err(format!("cannot convert {} pictures on the CPU (NV12 only)", crate::fourcc::name(format)));
    }
    let handles: Vec<_> = dmabuf.handles().collect();
    let offsets: Vec<u32> = dmabuf.offsets().collect();
    let strides: Vec<u32> = dmabuf.strides().collect();
    if handles.len() != 2 || offsets.len() != 2 || strides.len() != 2 {
        return Err(format!("an NV12 picture needs 2 planes, this one has {}", handles.len()));
    }
    let first = Mapping::new(handles[0].as_fd())?;
    let second =
        if handles[1].as_raw_fd() == handles[0].as_raw_fd() { None } else { Some(Mapping::new(handles[1].as_fd())?) };
    let y_bytes = first.bytes();
    let uv_bytes = second.as_ref().map(|m| m.bytes()).unwrap_or(y_bytes);
    let (w, h) = (size.0 as usize, size.1 as usize);
    let (y_off, uv_off) = (offsets[0] as usize, offsets[1] as usize);
    let (y_stride, uv_stride) = (strides[0] as usize, strides[1] as usize);
    let y_end = y_off + y_stride * h.saturating_sub(1) + w;
    let uv_end = uv_off + uv_stride * (h.div_ceil(2)).saturating_sub(1) + w.div_ceil(2) * 2;
    if y_stride < w || uv_stride < w || y_end > y_bytes.len() || uv_end > uv_bytes.len() {
        return Err(format!(
            "the NV12 planes (strides {y_stride}/{uv_stride}, offsets {y_off}/{uv_off}) do not hold {w}x{h} pixels"
        ));
    }
    let mut out = vec![0u8; w * h * 4];
    nv12_to_rgba(&y_bytes[y_off..], y_stride, &uv_bytes[uv_off..], uv_stride, size, colour, &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limited_range_nv12_converts_to_the_expected_colours() {
        // 4x2 pixels: black, white, 75% yellow, 75% cyan (BT.709 limited range values), each a
        // 2x2 block (chroma is per 2x2).
        let y_plane = [16, 16, 235, 235, 16, 16, 235, 235];
        // Black and white share a chroma sample (neutral), one row of chroma for both rows.
        let uv_plane = [128, 128, 128, 128];
        let mut out = vec![0; 4 * 2 * 4];
        let bt709 = Colour::default();
        nv12_to_rgba(&y_plane, 4, &uv_plane, 4, (4, 2), bt709, &mut out);
        assert_eq!(&out[0..4], &[0, 0, 0, 255]);
        assert_eq!(&out[8..12], &[255, 255, 255, 255]);

        let (yy, yc) = (168u8, 145u8); // Y of 75% yellow and of 75% cyan (BT.709)
        let y_plane = [yy, yy, yc, yc, yy, yy, yc, yc];
        let uv_plane = [44, 136, 147, 44]; // (Cb, Cr) of yellow, then of cyan
        nv12_to_rgba(&y_plane, 4, &uv_plane, 4, (4, 2), bt709, &mut out);
        let near = |px: &[u8], rgb: [u8; 3]| px.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 4);
        assert!(near(&out[0..3], [191, 191, 0]), "yellow: {:?}", &out[0..4]);
        assert!(near(&out[8..11], [0, 191, 191]), "cyan: {:?}", &out[8..12]);
        // Odd widths use the last chroma sample of the row.
        let mut small = vec![0; 3 * 4];
        nv12_to_rgba(&[235, 235, 235], 3, &[128, 128, 128, 128], 4, (3, 1), bt709, &mut small);
        assert_eq!(&small[8..12], &[255, 255, 255, 255]);
    }

    #[test]
    fn each_matrix_and_range_gives_back_the_colours_it_encoded() {
        use crate::video::colour::Matrix;
        // 75% yellow, green and magenta encoded with each matrix and range, as an encoder does.
        let colours: [[f64; 3]; 3] = [[191.0, 191.0, 0.0], [0.0, 191.0, 0.0], [191.0, 0.0, 191.0]];
        for matrix in [Matrix::Bt601, Matrix::Bt709, Matrix::Bt2020] {
            for full_range in [false, true] {
                let colour = Colour { matrix, full_range };
                let (kr, kb) = match matrix {
                    Matrix::Bt601 => (0.299, 0.114),
                    Matrix::Bt709 => (0.2126, 0.0722),
                    Matrix::Bt2020 => (0.2627, 0.0593),
                };
                let mut off_as_bt709 = 0;
                for [r, g, b] in colours {
                    let y = kr * r + (1.0 - kr - kb) * g + kb * b;
                    let (cb, cr) = ((b - y) / (2.0 * (1.0 - kb)), (r - y) / (2.0 * (1.0 - kr)));
                    let (ys, cs, yo) = if full_range { (1.0, 1.0, 0.0) } else { (219.0 / 255.0, 224.0 / 255.0, 16.0) };
                    let code = |v: f64| v.round().clamp(0.0, 255.0) as u8;
                    let (yy, u, v) = (code(y * ys + yo), code(cb * cs + 128.0), code(cr * cs + 128.0));
                    let want = [r as u8, g as u8, b as u8];
                    let off = |out: &[u8]| out[0..3].iter().zip(want).map(|(a, b)| a.abs_diff(b)).max().unwrap();
                    let mut out = vec![0; 4 * 2 * 4];
                    nv12_to_rgba(&[yy; 8], 4, &[u, v, u, v], 4, (4, 2), colour, &mut out);
                    assert!(off(&out) <= 2, "{} of {want:?}: {:?}", colour.describe(), &out[0..3]);
                    // The same bytes read as BT.709 limited range.
                    nv12_to_rgba(&[yy; 8], 4, &[u, v, u, v], 4, (4, 2), Colour::default(), &mut out);
                    off_as_bt709 = off_as_bt709.max(off(&out));
                }
                // Read the wrong way, the colours are visibly off (but for BT.709 limited itself).
                assert!(colour == Colour::default() || off_as_bt709 > 6, "{}: {off_as_bt709}", colour.describe());
            }
        }
    }
}
