//! Lighting a head: the commit that sets its mode, and the test of a mode before it is taken
//! (output management, a reload).

use drm::control::atomic::AtomicModeReq;
use drm::control::property::Value;
use drm::control::{framebuffer, AtomicCommitFlags, Device as ControlDevice};

use super::device::Card;
use super::frame::set_plane;
use super::head::Head;
use super::plane::disable_plane;
use super::{DrmError, Writeback};

/// The first commit of a head: sets the mode, shows `fb` full screen on the primary plane, turns
/// every other plane of the head off, and attaches the writeback connector when it is free.
pub(super) fn modeset(
    card: &Card,
    head: &mut Head,
    writeback: Option<&mut Writeback>,
    fb: framebuffer::Handle,
) -> Result<(), DrmError> {
    let (mut req, blob) = modeset_request(card, head, &head.mode, fb)?;
    if let Some(wb) = writeback {
        if wb.crtc.is_none_or(|c| c == head.crtc) && wb.connector.possible_crtcs.contains(&head.crtc) {
            let prop = wb.connector.props.handle("CRTC_ID").ok_or_else(|| missing(card, "CRTC_ID"))?;
            req.add_property(wb.connector.handle, prop, Value::CRTC(Some(head.crtc)));
            wb.crtc = Some(head.crtc);
        }
    }
    let flags = AtomicCommitFlags::PAGE_FLIP_EVENT | AtomicCommitFlags::NONBLOCK | AtomicCommitFlags::ALLOW_MODESET;
    let result = card
        .atomic_commit(flags, req)
        .map_err(|e| DrmError::kernel(format!("{}: modeset of {}", card.name(), head.name()), e));
    // The committed state holds its own reference to the mode's blob: vitrine's handle goes now,
    // so modes set again and again (VT switches, the display ladder, clients changing modes) do
    // not pile blobs up in the kernel.
    if let Value::Blob(id) = blob {
        let _ = card.destroy_property_blob(id);
    }
    result?;
    head.modeset_done = true;
    Ok(())
}

/// Ask the kernel whether `head` can be lit at `mode` with `fb` (of the mode's size) on its
/// primary plane, changing nothing.
pub(super) fn test_mode(
    card: &Card,
    head: &Head,
    mode: &drm::control::Mode,
    fb: framebuffer::Handle,
) -> Result<(), DrmError> {
    let (req, blob) = modeset_request(card, head, mode, fb)?;
    let flags = AtomicCommitFlags::TEST_ONLY | AtomicCommitFlags::ALLOW_MODESET;
    let result = card
        .atomic_commit(flags, req)
        .map_err(|e| DrmError::kernel(format!("{}: test of {}", card.name(), head.name()), e));
    // A client may test as often as it likes: the blobs do not pile up (see `modeset`).
    if let Value::Blob(id) = blob {
        let _ = card.destroy_property_blob(id);
    }
    result
}

fn missing(card: &Card, name: &str) -> DrmError {
    DrmError::Missing(format!("{}: property {name} missing", card.name()))
}

/// The request that lights `head` at `mode` with `fb` full screen and its other planes off, and
/// the mode's blob.
fn modeset_request(
    card: &Card,
    head: &Head,
    mode: &drm::control::Mode,
    fb: framebuffer::Handle,
) -> Result<(AtomicModeReq, Value<'static>), DrmError> {
    let prop = |props: &super::device::Props, name: &str| props.handle(name).ok_or_else(|| missing(card, name));
    let mut req = AtomicModeReq::new();
    let blob = card.create_property_blob(mode).map_err(|e| DrmError::kernel("mode blob".into(), e))?;
    req.add_property(head.connector.handle, prop(&head.connector.props, "CRTC_ID")?, Value::CRTC(Some(head.crtc)));
    req.add_property(head.crtc, prop(&head.crtc_props, "MODE_ID")?, blob);
    req.add_property(head.crtc, prop(&head.crtc_props, "ACTIVE")?, Value::Boolean(true));
    for plane in &head.others {
        disable_plane(plane, &mut req)?;
    }
    let (w, h) = mode.size();
    let (w, h) = (w as u32, h as u32);
    set_plane(head, &mut req, head.primary.handle.into(), fb, (0, 0, w, h), (0, 0, w, h), None, None, 0)?;
    Ok((req, blob))
}
