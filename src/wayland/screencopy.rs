//! wlr-screencopy (privileged): `grim`, `wayvnc` and other tools read what an output shows. A
//! copy is the capture `vitrine msg screenshot` makes (the display's writeback on DRM, so a video
//! on a plane is in it; the composition elsewhere), written into the client's shared-memory
//! buffer. `copy` is answered as soon as the capture is there; `copy_with_damage` waits until
//! something on the output changes (a remote viewer polling a still screen costs nothing).

use std::sync::atomic::{AtomicBool, Ordering};

use smithay::output::Output;
use smithay::reexports::wayland_protocols_wlr::screencopy::v1::server::zwlr_screencopy_frame_v1::{
    self, ZwlrScreencopyFrameV1,
};
use smithay::reexports::wayland_protocols_wlr::screencopy::v1::server::zwlr_screencopy_manager_v1::{
    self, ZwlrScreencopyManagerV1,
};
use smithay::reexports::wayland_server::backend::{ClientId, GlobalId};
use smithay::reexports::wayland_server::protocol::wl_buffer::WlBuffer;
use smithay::reexports::wayland_server::protocol::wl_output::WlOutput;
use smithay::reexports::wayland_server::protocol::wl_shm;
use smithay::reexports::wayland_server::{Client, DataInit, Dispatch, DisplayHandle, GlobalDispatch, New, Resource};
use smithay::wayland::shm::{with_buffer_contents, with_buffer_contents_mut};

use crate::image::RgbaImage;
use crate::state::{Core, State};

const VERSION: u32 = 3;

/// The zwlr_screencopy_manager_v1 global, seen by privileged clients only.
pub fn create_global(dh: &DisplayHandle) -> GlobalId {
    dh.create_global::<State, ZwlrScreencopyManagerV1, ()>(VERSION, ())
}

/// What a frame captures: the output, and the part of its image (x, y, width, height).
pub struct FrameData {
    output: Option<Output>,
    region: (u32, u32, u32, u32),
    used: AtomicBool,
    /// The client's first capture of this output: copied at once even `with_damage`.
    first: bool,
}

/// A copy waiting for its output to change (`copy_with_damage`).
pub struct WaitingCopy {
    pub output: Output,
    pub start: crate::state::Deferred,
}

impl GlobalDispatch<ZwlrScreencopyManagerV1, ()> for State {
    fn bind(
        _: &mut State,
        _: &DisplayHandle,
        _: &Client,
        resource: New<ZwlrScreencopyManagerV1>,
        _: &(),
        init: &mut DataInit<'_, State>,
    ) {
        init.init(resource, ());
    }

    fn can_view(client: Client, _: &()) -> bool {
        super::privileged::is_privileged(&client)
    }
}

impl Dispatch<ZwlrScreencopyManagerV1, ()> for State {
    fn request(
        state: &mut State,
        client: &Client,
        _: &ZwlrScreencopyManagerV1,
        request: zwlr_screencopy_manager_v1::Request,
        _: &(),
        dh: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        let (frame, output, region) = match request {
            zwlr_screencopy_manager_v1::Request::CaptureOutput { frame, output, .. } => (frame, output, None),
            zwlr_screencopy_manager_v1::Request::CaptureOutputRegion { frame, output, x, y, width, height, .. } => {
                (frame, output, Some((x, y, width, height)))
            }
            _ => return,
        };
        let (output, region) = state.core.capture_area(&output, region);
        let first = match (&output, client.get_data::<crate::state::ClientState>()) {
            (Some(o), Some(d)) => d.captured.lock().unwrap_or_else(|e| e.into_inner()).insert(o.name()),
            _ => false,
        };
        let frame = init.init(frame, FrameData { output, region, used: AtomicBool::new(false), first });
        if !super::limits::screencopy_frame_created(dh, client) {
            return;
        }
        let (_, _, width, height) = region;
        if frame.data::<FrameData>().is_some_and(|d| d.output.is_none()) || width == 0 || height == 0 {
            frame.failed();
            return;
        }
        frame.buffer(wl_shm::Format::Xrgb8888, width, height, width * 4);
        if frame.version() >= 3 {
            frame.buffer_done();
        }
    }
}

impl Dispatch<ZwlrScreencopyFrameV1, FrameData> for State {
    fn request(
        state: &mut State,
        _: &Client,
        frame: &ZwlrScreencopyFrameV1,
        request: zwlr_screencopy_frame_v1::Request,
        data: &FrameData,
        _: &DisplayHandle,
        _: &mut DataInit<'_, State>,
    ) {
        let (buffer, damage) = match request {
            zwlr_screencopy_frame_v1::Request::Copy { buffer } => (buffer, false),
            zwlr_screencopy_frame_v1::Request::CopyWithDamage { buffer } => (buffer, true),
            _ => return,
        };
        if data.used.swap(true, Ordering::Relaxed) {
            frame.post_error(zwlr_screencopy_frame_v1::Error::AlreadyUsed, "vitrine: this frame was already copied");
            return;
        }
        let Some(output) = data.output.clone() else { return frame.failed() };
        let (_, _, width, height) = data.region;
        let fits = with_buffer_contents(&buffer, |_, len, b| {
            let format_ok = matches!(b.format, wl_shm::Format::Xrgb8888 | wl_shm::Format::Argb8888);
            let end = b.offset as usize + b.stride as usize * b.height.max(0) as usize;
            format_ok && (b.width, b.height) == (width as i32, height as i32) && b.stride >= b.width * 4 && end <= len
        });
        if !matches!(fits, Ok(true)) {
            frame.post_error(
                zwlr_screencopy_frame_v1::Error::InvalidBuffer,
                format!("vitrine: the buffer is not a {width}x{height} XRGB8888 or ARGB8888 shared-memory buffer"),
            );
            return;
        }
        let (frame, region) = (frame.clone(), data.region);
        let name = output.name();
        let start: crate::state::Deferred = Box::new(move |state: &mut State| {
            if !frame.is_alive() {
                return;
            }
            state.screenshot(
                Some(name.as_str()),
                Box::new(move |_: &mut State, result: Result<(Output, RgbaImage), String>| {
                    finish(&frame, &buffer, region, damage, result.map(|(_, image)| image))
                }),
            );
        });
        if damage && !data.first {
            state.core.screencopy_waiting.push(WaitingCopy { output, start });
        } else {
            start(state);
        }
    }

    fn destroyed(state: &mut State, client: ClientId, _: &ZwlrScreencopyFrameV1, _: &FrameData) {
        super::limits::screencopy_frame_destroyed(&state.core.display_handle.clone(), client);
    }
}

impl Core {
    /// The output of a capture, and the part of its image asked for (all of it by default),
    /// clipped to the image. The image is the panel's, as the display scans it out: a client
    /// turns it by the output's transform (as grim does). No output (it went away), or a region
    /// of a turned output, fails the frame.
    fn capture_area(
        &self,
        output: &WlOutput,
        region: Option<(i32, i32, i32, i32)>,
    ) -> (Option<Output>, (u32, u32, u32, u32)) {
        let output = Output::from_resource(output).filter(|o| self.outputs.contains(o));
        let Some((size, transform)) =
            output.as_ref().and_then(|o| o.current_mode().map(|m| (m.size, o.current_transform())))
        else {
            return (None, (0, 0, 0, 0));
        };
        if region.is_some() && transform != smithay::utils::Transform::Normal {
            tracing::info!("screencopy: a region of a turned output is not supported; the frame fails");
            return (None, (0, 0, 0, 0));
        }
        let (x, y, w, h) = region.unwrap_or((0, 0, size.w, size.h));
        let (x0, y0) = (x.clamp(0, size.w), y.clamp(0, size.h));
        let (x1, y1) = (x.saturating_add(w.max(0)).clamp(0, size.w), y.saturating_add(h.max(0)).clamp(0, size.h));
        (output, (x0 as u32, y0 as u32, (x1 - x0) as u32, (y1 - y0) as u32))
    }

    /// Something on `output` changed: the copies waiting for that run at the end of this turn.
    pub fn screencopy_output_changed(&mut self, output: &Output) {
        if !self.screencopy_waiting.iter().any(|w| &w.output == output) {
            return;
        }
        let (now, later): (Vec<WaitingCopy>, Vec<WaitingCopy>) =
            std::mem::take(&mut self.screencopy_waiting).into_iter().partition(|w| &w.output == output);
        self.screencopy_waiting = later;
        self.deferred.extend(now.into_iter().map(|w| w.start));
    }
}

/// Write the captured `image`'s `region` into the client's buffer, and tell it.
fn finish(
    frame: &ZwlrScreencopyFrameV1,
    buffer: &WlBuffer,
    region: (u32, u32, u32, u32),
    damage: bool,
    image: Result<RgbaImage, String>,
) {
    if !frame.is_alive() {
        return;
    }
    let (x, y, width, height) = region;
    let image = match image {
        Ok(image) if image.width >= x + width && image.height >= y + height => image,
        Ok(image) => {
            tracing::warn!(size = ?(image.width, image.height), ?region, "screencopy failed: the output changed size");
            return frame.failed();
        }
        Err(err) => {
            tracing::warn!(%err, "screencopy failed");
            return frame.failed();
        }
    };
    let written = with_buffer_contents_mut(buffer, |ptr, len, b| {
        let (offset, stride) = (b.offset as usize, b.stride as usize);
        if offset + stride * height as usize > len {
            return false;
        }
        // SAFETY: the pool is mapped for `len` bytes and every write below is within it.
        let pool = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
        for row in 0..height {
            let line = &mut pool[offset + row as usize * stride..][..width as usize * 4];
            for (col, px) in line.chunks_exact_mut(4).enumerate() {
                let [r, g, b, _] = image.pixel(x + col as u32, y + row);
                px.copy_from_slice(&[b, g, r, 0xff]);
            }
        }
        true
    });
    if !matches!(written, Ok(true)) {
        return frame.failed();
    }
    if damage && frame.version() >= 2 {
        frame.damage(0, 0, width, height);
    }
    frame.flags(zwlr_screencopy_frame_v1::Flags::empty());
    let now = crate::clock::monotonic_now();
    let secs = now.as_secs();
    frame.ready((secs >> 32) as u32, secs as u32, now.subsec_nanos());
}
