//! Memory vitrine scans out itself: CPU-mapped dumb buffers for the composition layer and for
//! writeback captures, each with its framebuffer.

use std::os::fd::AsFd;

use drm::buffer::DrmFourcc;
use drm::control::{dumbbuffer::DumbBuffer, framebuffer, Device as ControlDevice};
use smithay::reexports::pixman;

use super::device::Card;

/// A dumb buffer, mapped for the life of the object, with a framebuffer.
pub struct MappedBuffer {
    pub dumb: DumbBuffer,
    pub fb: framebuffer::Handle,
    ptr: *mut u8,
    len: usize,
    pub alpha: bool,
    pub width: u32,
    pub height: u32,
    pub pitch: u32,
}

impl MappedBuffer {
    /// An ARGB8888 (`alpha`) or XRGB8888 buffer of `size`.
    pub fn new(card: &Card, size: (u32, u32), alpha: bool) -> std::io::Result<MappedBuffer> {
        use drm::buffer::Buffer;
        let format = if alpha { DrmFourcc::Argb8888 } else { DrmFourcc::Xrgb8888 };
        let dumb = card.create_dumb_buffer(size, format, 32)?;
        let fb = match card.add_framebuffer(&dumb, if alpha { 32 } else { 24 }, 32) {
            Ok(fb) => fb,
            Err(err) => {
                let _ = card.destroy_dumb_buffer(dumb);
                return Err(err);
            }
        };
        let handle: u32 = dumb.handle().into();
        let map = drm_ffi::mode::dumbbuffer::map(card.as_fd(), handle, 0, 0)?;
        let len = (dumb.pitch() * dumb.size().1) as usize;
        // SAFETY: mapping a dumb buffer of this device at the offset the kernel gave us.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&card.as_fd()),
                map.offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            let err = std::io::Error::last_os_error();
            let _ = card.destroy_framebuffer(fb);
            let _ = card.destroy_dumb_buffer(dumb);
            return Err(err);
        }
        Ok(MappedBuffer {
            alpha,
            width: size.0,
            height: size.1,
            pitch: dumb.pitch(),
            dumb,
            fb,
            ptr: ptr as *mut u8,
            len,
        })
    }

    /// A pixman image over the mapping (valid while `self` lives).
    pub fn image(&self) -> Result<pixman::Image<'static, 'static>, String> {
        // SAFETY: the mapping outlives every use of the image: images are rebuilt per frame.
        unsafe {
            pixman::Image::from_raw_mut(
                if self.alpha { pixman::FormatCode::A8R8G8B8 } else { pixman::FormatCode::X8R8G8B8 },
                self.width as usize,
                self.height as usize,
                self.ptr as *mut u32,
                self.pitch as usize,
                false,
            )
        }
        .map_err(|_| "cannot wrap the composition buffer".to_string())
    }

    /// The pixels as RGBA rows.
    pub fn to_rgba(&self) -> Vec<u8> {
        // SAFETY: reading our own mapping.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr, self.len) };
        let mut out = Vec::with_capacity((self.width * self.height * 4) as usize);
        for y in 0..self.height as usize {
            let row = &bytes[y * self.pitch as usize..][..self.width as usize * 4];
            for px in row.chunks_exact(4) {
                out.extend_from_slice(&[px[2], px[1], px[0], 255]);
            }
        }
        out
    }

    pub fn destroy(self, card: &Card) {
        // SAFETY: unmapping what `new` mapped.
        unsafe {
            libc::munmap(self.ptr as *mut libc::c_void, self.len);
        }
        let _ = card.destroy_framebuffer(self.fb);
        let _ = card.destroy_dumb_buffer(self.dumb);
    }
}
