//! Checks on a client's dmabuf before vitrine lets any importer (pixman, GL, KMS) near it:
//! a hostile or buggy client must not make vitrine read outside its buffer.

use std::os::fd::AsRawFd;

use smithay::backend::allocator::dmabuf::Dmabuf;
use smithay::backend::allocator::Buffer;

/// Bytes per pixel of each plane and the plane's vertical subsampling, for the formats vitrine
/// composites or scans out.
fn layout(fourcc: &[u8; 4]) -> Option<&'static [(u32, u32, u32)]> {
    // (bytes per pixel, horizontal subsampling, vertical subsampling) per plane
    Some(match fourcc {
        b"XR24" | b"AR24" | b"XB24" | b"AB24" | b"RX24" | b"RA24" | b"BX24" | b"BA24" | b"XR30" | b"AR30" | b"XB30"
        | b"AB30" => &[(4, 1, 1)],
        b"RG16" | b"BG16" => &[(2, 1, 1)],
        b"RG24" | b"BG24" => &[(3, 1, 1)],
        b"XR48" | b"AR48" | b"XB48" | b"AB48" => &[(8, 1, 1)],
        b"NV12" | b"NV21" => &[(1, 1, 1), (2, 2, 2)],
        b"NV16" | b"NV61" => &[(1, 1, 1), (2, 2, 1)],
        b"NV24" | b"NV42" => &[(1, 1, 1), (2, 1, 1)],
        b"P010" | b"P012" | b"P016" => &[(2, 1, 1), (4, 2, 2)],
        b"YU12" | b"YV12" => &[(1, 1, 1), (1, 2, 2), (1, 2, 2)],
        b"YU16" | b"YV16" => &[(1, 1, 1), (1, 2, 1), (1, 2, 1)],
        b"YU24" | b"YV24" => &[(1, 1, 1), (1, 1, 1), (1, 1, 1)],
        _ => return None,
    })
}

/// Why a dmabuf must be refused, or `Ok` if its planes are consistent with its format and
/// lie within its memory. `known_modifier` says whether some consumer takes that modifier.
pub fn check(dmabuf: &Dmabuf, known_modifier: impl Fn(u32, u64) -> bool) -> Result<(), String> {
    let format = dmabuf.format();
    let code = format.code as u32;
    let name = code.to_le_bytes();
    let printable = String::from_utf8_lossy(&name).into_owned();
    let planes = layout(&name).ok_or_else(|| format!("format {printable} is not supported"))?;
    let modifier = u64::from(format.modifier);
    if !known_modifier(code, modifier) {
        return Err(format!("modifier {modifier:#x} is not supported for {printable}"));
    }
    let linear = modifier == 0 || modifier == 0x00ff_ffff_ffff_ffff;
    if dmabuf.num_planes() != planes.len() {
        return Err(format!("{printable} has {} planes, not {}", planes.len(), dmabuf.num_planes()));
    }
    let size = dmabuf.size();
    let (w, h) = (size.w as u64, size.h as u64);
    if w == 0 || h == 0 || w > 16384 || h > 16384 {
        return Err(format!("size {w}x{h} is out of range"));
    }
    for (i, ((fd, (offset, stride)), (bpp, hsub, vsub))) in
        dmabuf.handles().zip(dmabuf.offsets().zip(dmabuf.strides())).zip(planes.iter()).enumerate()
    {
        let (offset, stride) = (offset as u64, stride as u64);
        let row = w.div_ceil(*hsub as u64) * *bpp as u64;
        let rows = h.div_ceil(*vsub as u64);
        if linear && stride < row {
            return Err(format!("plane {i}: stride {stride} is smaller than a row ({row} bytes)"));
        }
        // The dmabuf's size: seeking to its end is how the kernel reports it.
        let end = unsafe { libc::lseek(fd.as_raw_fd(), 0, libc::SEEK_END) };
        if end < 0 {
            return Err(format!("plane {i}: the fd is not a dmabuf"));
        }
        let needed = offset + stride * (rows - 1) + row;
        if linear && needed > end as u64 {
            return Err(format!(
                "plane {i}: offset {offset} + {rows} rows of {stride} bytes exceed the buffer ({end} bytes)"
            ));
        }
        if offset >= end as u64 {
            return Err(format!("plane {i}: offset {offset} is past the end of the buffer ({end} bytes)"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::{FromRawFd, OwnedFd};

    use smithay::backend::allocator::dmabuf::{Dmabuf, DmabufFlags};
    use smithay::backend::allocator::{Fourcc, Modifier};

    use super::check;

    fn memfd(size: u64) -> OwnedFd {
        let fd = unsafe { libc::memfd_create(c"dmabuf-check".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        assert_eq!(unsafe { libc::ftruncate(std::os::fd::AsRawFd::as_raw_fd(&fd), size as libc::off_t) }, 0);
        fd
    }

    fn dmabuf(code: Fourcc, size: (i32, i32), planes: &[(u32, u32)], bytes: u64, modifier: Modifier) -> Dmabuf {
        let mut builder = Dmabuf::builder(size, code, modifier, DmabufFlags::empty());
        for (i, (offset, stride)) in planes.iter().enumerate() {
            builder.add_plane(memfd(bytes), i as u32, *offset, *stride);
        }
        builder.build().expect("dmabuf")
    }

    fn any(_: u32, m: u64) -> bool {
        m == 0
    }

    #[test]
    fn consistent_buffers_pass() {
        assert_eq!(check(&dmabuf(Fourcc::Xrgb8888, (64, 32), &[(0, 256)], 8192, Modifier::Linear), any), Ok(()));
        let nv12 = dmabuf(Fourcc::Nv12, (64, 32), &[(0, 64), (2048, 64)], 3072, Modifier::Linear);
        assert_eq!(check(&nv12, any), Ok(()));
    }

    #[test]
    fn hostile_buffers_are_refused_with_a_reason() {
        let short_stride = dmabuf(Fourcc::Xrgb8888, (64, 32), &[(0, 64)], 8192, Modifier::Linear);
        assert!(check(&short_stride, any).unwrap_err().contains("stride 64 is smaller than a row (256 bytes)"));
        let too_small = dmabuf(Fourcc::Xrgb8888, (64, 32), &[(0, 256)], 4096, Modifier::Linear);
        assert!(check(&too_small, any).unwrap_err().contains("exceed the buffer (4096 bytes)"));
        let missing_uv = dmabuf(Fourcc::Nv12, (64, 32), &[(0, 64)], 3072, Modifier::Linear);
        assert!(check(&missing_uv, any).unwrap_err().contains("NV12 has 2 planes, not 1"));
        let uv_past_end = dmabuf(Fourcc::Nv12, (64, 32), &[(0, 64), (3000, 64)], 3072, Modifier::Linear);
        assert!(check(&uv_past_end, any).unwrap_err().contains("plane 1"));
        let bogus_modifier = dmabuf(Fourcc::Xrgb8888, (64, 32), &[(0, 256)], 8192, Modifier::from(0xdead_u64));
        assert!(check(&bogus_modifier, any).unwrap_err().contains("modifier 0xdead"));
        let unknown = dmabuf(Fourcc::Yuyv, (64, 32), &[(0, 128)], 8192, Modifier::Linear);
        assert!(check(&unknown, any).unwrap_err().contains("YUYV is not supported"));
    }
}
