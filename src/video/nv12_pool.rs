//! NV12 pictures in dmabufs made from memory (/dev/udmabuf), for the software decoder: the CPU
//! writes each decoded picture once into a buffer a display plane can scan out, instead of
//! converting it to RGB for composition. Buffers are made (and mapped) once and reused when no
//! frame refers to them any more.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use smithay::backend::allocator::dmabuf::{Dmabuf, DmabufFlags};
use smithay::backend::allocator::{Fourcc, Modifier};

use super::{DMA_BUF_SYNC_END, DMA_BUF_SYNC_START, DMA_BUF_SYNC_WRITE};

/// Row pitch alignment: display controllers commonly need 64-byte aligned pitches.
const PITCH_ALIGN: u32 = 64;
/// Buffers at most (pictures queued ahead, on screen and leaving it).
const MAX_BUFFERS: usize = 16;

struct Buffer {
    dmabuf: Dmabuf,
    map: *mut u8,
    len: usize,
    /// Held by every frame made from this buffer.
    token: Arc<()>,
    _memfd: File,
}

// SAFETY: the mapping is only written by the pool's owner (the decoding thread).
unsafe impl Send for Buffer {}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: unmapping what `Nv12Pool::make` mapped.
        unsafe { libc::munmap(self.map as *mut libc::c_void, self.len) };
    }
}

pub struct Nv12Pool {
    udmabuf: File,
    size: (u32, u32),
    buffers: Vec<Buffer>,
}

/// A written picture: its dmabuf, and the token that keeps the buffer from being reused.
pub struct Written {
    pub dmabuf: Dmabuf,
    pub token: Arc<()>,
    /// A buffer was made (and mapped) for it.
    pub new_buffer: bool,
}

impl Nv12Pool {
    pub fn open() -> Result<Nv12Pool, String> {
        let udmabuf = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/udmabuf")
            .map_err(|e| format!("/dev/udmabuf: {e}"))?;
        Ok(Nv12Pool { udmabuf, size: (0, 0), buffers: Vec::new() })
    }

    fn pitch(width: u32) -> u32 {
        width.div_ceil(PITCH_ALIGN) * PITCH_ALIGN
    }

    /// A new buffer for pictures of `size`: a sealed memfd turned into a dmabuf, mapped for
    /// writing for as long as the buffer lives.
    fn make(&self, size: (u32, u32)) -> Result<Buffer, String> {
        let pitch = Self::pitch(size.0) as usize;
        let (w, h) = (size.0 as usize, size.1.div_ceil(2) as usize * 2);
        let len = (pitch * h * 3 / 2).div_ceil(4096) * 4096;
        // SAFETY: plain syscalls; every fd made is owned right away.
        unsafe {
            let fd = libc::memfd_create(c"vitrine-nv12".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING);
            if fd < 0 {
                return Err(format!("memfd: {}", std::io::Error::last_os_error()));
            }
            let memfd = File::from_raw_fd(fd);
            memfd.set_len(len as u64).map_err(|e| format!("memfd size: {e}"))?;
            if libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) < 0 {
                return Err(format!("memfd seal: {}", std::io::Error::last_os_error()));
            }
            #[repr(C)]
            struct Create {
                memfd: u32,
                flags: u32,
                offset: u64,
                size: u64,
            }
            const UDMABUF_CREATE: libc::c_ulong = 0x4018_7542;
            const UDMABUF_FLAGS_CLOEXEC: u32 = 1;
            let create = Create { memfd: fd as u32, flags: UDMABUF_FLAGS_CLOEXEC, offset: 0, size: len as u64 };
            let dmabuf_fd = libc::ioctl(self.udmabuf.as_raw_fd(), UDMABUF_CREATE, &create);
            if dmabuf_fd < 0 {
                return Err(format!("UDMABUF_CREATE: {}", std::io::Error::last_os_error()));
            }
            let dmabuf_fd = OwnedFd::from_raw_fd(dmabuf_fd);
            let map =
                libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0);
            if map == libc::MAP_FAILED {
                return Err(format!("mapping the picture buffer: {}", std::io::Error::last_os_error()));
            }
            let second = dmabuf_fd.try_clone().map_err(|e| format!("dup: {e}"))?;
            let mut builder =
                Dmabuf::builder((w as i32, size.1 as i32), Fourcc::Nv12, Modifier::Linear, DmabufFlags::empty());
            builder.add_plane(dmabuf_fd, 0, 0, pitch as u32);
            builder.add_plane(second, 1, (pitch * h) as u32, pitch as u32);
            let Some(dmabuf) = builder.build() else {
                libc::munmap(map, len);
                return Err("cannot describe the NV12 dmabuf".into());
            };
            Ok(Buffer { dmabuf, map: map as *mut u8, len, token: Arc::new(()), _memfd: memfd })
        }
    }

    /// Write a picture (I420 planes: Y, U, V with their strides) as NV12 into a free buffer.
    pub fn write(
        &mut self,
        size: (u32, u32),
        planes: [&[u8]; 3],
        strides: (usize, usize, usize),
    ) -> Result<Written, String> {
        if self.size != size {
            // A new picture size: buffers of the old one go as their frames go.
            self.buffers.clear();
            self.size = size;
        }
        let free = self.buffers.iter().position(|b| Arc::strong_count(&b.token) == 1);
        let (index, new_buffer) = match free {
            Some(i) => (i, false),
            None if self.buffers.len() < MAX_BUFFERS => {
                let buffer = self.make(size)?;
                self.buffers.push(buffer);
                (self.buffers.len() - 1, true)
            }
            None => return Err(format!("all {MAX_BUFFERS} picture buffers are in use")),
        };
        let buffer = &self.buffers[index];
        // CPU access brackets: caches are flushed towards the device at the end (non-coherent
        // SoCs); a no-op where caches are coherent.
        let sync_fd = buffer.dmabuf.handles().next().map(|fd| fd.as_raw_fd());
        let sync = |flags: u64| {
            if let Some(fd) = sync_fd {
                super::dmabuf_sync(fd, flags);
            }
        };
        sync(DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE);
        let pitch = Self::pitch(size.0) as usize;
        let (w, h) = (size.0 as usize, size.1 as usize);
        let uv_offset = pitch * h.div_ceil(2) * 2;
        // SAFETY: the mapping is `len` bytes, written only here, and outlives this call.
        let out = unsafe { std::slice::from_raw_parts_mut(buffer.map, buffer.len) };
        let (y, u, v) = (planes[0], planes[1], planes[2]);
        for row in 0..h {
            out[row * pitch..][..w].copy_from_slice(&y[row * strides.0..][..w]);
        }
        let cw = w.div_ceil(2);
        for row in 0..h.div_ceil(2) {
            let dst = &mut out[uv_offset + row * pitch..][..cw * 2];
            let (us, vs) = (&u[row * strides.1..][..cw], &v[row * strides.2..][..cw]);
            for x in 0..cw {
                dst[2 * x] = us[x];
                dst[2 * x + 1] = vs[x];
            }
        }
        sync(DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE);
        Ok(Written { dmabuf: buffer.dmabuf.clone(), token: buffer.token.clone(), new_buffer })
    }

    /// Bytes the CPU writes per picture of `size`.
    pub fn picture_bytes(size: (u32, u32)) -> u64 {
        let (w, h) = (size.0 as u64, size.1 as u64);
        w * h + w.div_ceil(2) * h.div_ceil(2) * 2
    }
}
