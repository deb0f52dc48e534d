//! Hard limits per Wayland client: how much one client can make the compositor hold for it.
//! A client over a limit gets a protocol error naming the limit (`wl_display.no_memory`) and is
//! disconnected; every other client carries on. The limits are listed in the README.
//!
//! Most are counted in vitrine's own dispatch of the requests that create what they count,
//! which then hands each request to smithay unchanged: the request is carried out first (a new
//! object must be initialised), then the count is checked.

use std::ffi::CString;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use smithay::backend::allocator::dmabuf::Dmabuf;
use smithay::reexports::wayland_protocols::wp::linux_dmabuf::zv1::server::zwp_linux_buffer_params_v1::{
    self, ZwpLinuxBufferParamsV1,
};
use smithay::reexports::wayland_protocols::wp::linux_dmabuf::zv1::server::zwp_linux_dmabuf_feedback_v1::ZwpLinuxDmabufFeedbackV1;
use smithay::reexports::wayland_protocols::wp::linux_dmabuf::zv1::server::zwp_linux_dmabuf_v1::{
    self, ZwpLinuxDmabufV1,
};
use smithay::reexports::wayland_protocols::wp::single_pixel_buffer::v1::server::wp_single_pixel_buffer_manager_v1::{
    self, WpSinglePixelBufferManagerV1,
};
use smithay::reexports::wayland_server::backend::protocol::ProtocolError;
use smithay::reexports::wayland_server::backend::ClientId;
use smithay::reexports::wayland_server::protocol::__interfaces::WL_DISPLAY_INTERFACE;
use smithay::reexports::wayland_server::protocol::wl_buffer::WlBuffer;
use smithay::reexports::wayland_server::protocol::wl_callback::WlCallback;
use smithay::reexports::wayland_server::protocol::wl_compositor::WlCompositor;
use smithay::reexports::wayland_server::protocol::wl_data_device::WlDataDevice;
use smithay::reexports::wayland_server::protocol::wl_data_device_manager::{self, WlDataDeviceManager};
use smithay::reexports::wayland_server::protocol::wl_data_source::{self, WlDataSource};
use smithay::reexports::wayland_server::protocol::wl_region::{self, WlRegion};
use smithay::reexports::wayland_server::protocol::wl_shm::WlShm;
use smithay::reexports::wayland_server::protocol::wl_subcompositor::WlSubcompositor;
use smithay::reexports::wayland_server::protocol::wl_subsurface::WlSubsurface;
use smithay::reexports::wayland_server::protocol::wl_surface::{self, WlSurface};
use smithay::reexports::wayland_server::{
    delegate_dispatch, delegate_global_dispatch, Client, DataInit, Dispatch, DisplayHandle, Resource,
};
use smithay::wayland::compositor::{
    self, CompositorState, RegionUserData, SubsurfaceUserData, SurfaceAttributes, SurfaceUserData,
};
use smithay::wayland::dmabuf::{DmabufData, DmabufFeedbackData, DmabufGlobalData, DmabufParamsData, DmabufState};
use smithay::wayland::selection::data_device::{
    with_source_metadata, DataDeviceState, DataDeviceUserData, DataSourceUserData,
};
use smithay::wayland::shell::xdg::{PopupSurface, ToplevelSurface, XdgPopupSurfaceData, XdgToplevelSurfaceData};
use smithay::wayland::shm::ShmState;
use smithay::wayland::single_pixel_buffer::{SinglePixelBufferState, SinglePixelBufferUserData};

use crate::state::{ClientState, State};

mod primary;
mod shm;

/// A limit: at most `max` of `what`.
#[derive(Debug)]
pub struct Limit {
    pub what: &'static str,
    pub max: usize,
}

pub const SURFACES: Limit = Limit { what: "surfaces per client", max: 4096 };
pub const SUBSURFACE_DEPTH: Limit = Limit { what: "levels of nested subsurfaces", max: 32 };
pub const POPUPS: Limit = Limit { what: "popups per client", max: 128 };
pub const POPUP_DEPTH: Limit = Limit { what: "levels of nested popups", max: 16 };
pub const CONFIGURES: Limit = Limit { what: "unacknowledged configures per toplevel", max: 64 };
/// A pool counts from its creation until vitrine closes its file, which is after the client
/// destroyed it if a buffer made from it still lives (`shm.rs`).
pub const SHM_POOLS: Limit = Limit { what: "shm pools per client", max: 1024 };
/// Address space, not memory: pools are mapped, and only their written pages are resident.
/// foot maps 512 MiB pools (it scrolls by moving its buffers inside them), two or three of them
/// alive across a resize.
pub const SHM_MIB: Limit = Limit { what: "MiB of shm pools per client", max: 4096 };
pub const BUFFERS: Limit = Limit { what: "buffers per client", max: 4096 };
pub const DMABUF_BUFFERS: Limit = Limit { what: "dmabuf buffers per client", max: 256 };
pub const DMABUF_PARAMS: Limit = Limit { what: "dmabuf parameter objects per client", max: 64 };
pub const FRAME_CALLBACKS: Limit = Limit { what: "frame callbacks per surface between commits", max: 256 };
pub const DAMAGE: Limit = Limit { what: "damage rectangles per surface between commits", max: 1024 };
pub const REGION_RECTS: Limit = Limit { what: "rectangles per region", max: 1024 };
/// wl_data_source and primary selection sources together.
pub const DATA_SOURCES: Limit = Limit { what: "clipboard and drag sources per client", max: 64 };
pub const MIME_TYPES: Limit = Limit { what: "MIME types per clipboard or drag source", max: 128 };
/// A MIME type is a type, a subtype and a few parameters (RFC 6838 allows 127 bytes each for
/// the first two).
pub const MIME_TYPE_BYTES: Limit = Limit { what: "bytes per MIME type", max: 512 };
/// Clients connected at once: with what each may hold (`DESCRIPTORS_PER_CLIENT`), what keeps
/// all of them under the unit's descriptor limit.
pub const CLIENTS: Limit = Limit { what: "clients at once", max: 16 };
/// The most descriptors one client can make vitrine hold: its connection, its shm pools, up to
/// four planes per dmabuf buffer and per dmabuf parameter object, and those in events queued for
/// it (wayland-server queues at most 4096 bytes per client, and an event carrying a descriptor
/// is at least 8).
pub const DESCRIPTORS_PER_CLIENT: usize = 1 + SHM_POOLS.max + 4 * DMABUF_BUFFERS.max + 4 * DMABUF_PARAMS.max + 4096 / 8;
/// The descriptors vitrine keeps for itself beside its clients' (outputs, decoders, framebuffers,
/// control connections, logs), a generous bound on what it opens.
pub const DESCRIPTORS_OWN: usize = 4096;

/// The open files limit vitrine needs for its clients at their limits, and its own.
pub fn descriptors_for_clients() -> u64 {
    (CLIENTS.max * DESCRIPTORS_PER_CLIENT + DESCRIPTORS_OWN) as u64
}

/// Screen capture frames (wlr-screencopy) a client has at once: each may hold a capture of a
/// whole output until it is copied.
pub const SCREENCOPY_FRAMES: Limit = Limit { what: "screen capture frames per client", max: 16 };

/// Activation tokens are not a protocol error: one over this is not honoured.
pub const ACTIVATION_TOKENS: Limit = Limit { what: "live activation tokens per client", max: 16 };

/// What one client holds, as counted here (in its `ClientState`: gone with the client).
#[derive(Default)]
pub struct Usage {
    surfaces: AtomicUsize,
    popups: AtomicUsize,
    buffers: AtomicUsize,
    dmabuf_buffers: AtomicUsize,
    dmabuf_params: AtomicUsize,
    data_sources: AtomicUsize,
    screencopy_frames: AtomicUsize,
    /// MIME types offered so far by each of its primary selection sources, by protocol id
    /// (smithay keeps them, but does not say how many).
    primary_offers: Mutex<std::collections::HashMap<u32, usize>>,
    /// The shm pools vitrine holds for the client (`shm.rs`).
    pools: Mutex<Vec<shm::PoolFile>>,
    slot: Slot,
}

impl Usage {
    /// The usage of a new client of a display whose clients `connected` counts: one more there,
    /// until this is dropped with the client's data.
    pub fn of_client(connected: &Arc<AtomicUsize>) -> Usage {
        up(connected);
        Usage { slot: Slot(Some(connected.clone())), ..Default::default() }
    }
}

/// A client's place among its display's clients (`CLIENTS`), given back when it is dropped.
#[derive(Default)]
struct Slot(Option<Arc<AtomicUsize>>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(connected) = &self.0 {
            down(connected);
        }
    }
}

/// A client was accepted: one over `CLIENTS` is refused (its wl_display gets the error).
pub fn client_connected(dh: &DisplayHandle, client: &Client) {
    let connected = usage(client).and_then(|u| u.slot.0.as_ref()).map_or(0, |c| c.load(Ordering::Relaxed));
    if connected > CLIENTS.max {
        refuse(dh, client, &CLIENTS);
    }
}

/// One more; returns the new count.
fn up(counter: &AtomicUsize) -> usize {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

fn down(counter: &AtomicUsize) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(1)));
}

fn usage(client: &Client) -> Option<&Usage> {
    client.get_data::<ClientState>().map(|d| &d.usage)
}

/// The usage of a client known by its id, if it is still connected.
fn with_usage(dh: &DisplayHandle, id: ClientId, f: impl FnOnce(&Usage)) {
    if let Ok(data) = dh.backend_handle().get_client_data(id) {
        if let Some(state) = data.downcast_ref::<ClientState>() {
            f(&state.usage);
        }
    }
}

/// `client` went over `limit`: a protocol error naming it on its wl_display (`no_memory`),
/// which disconnects it.
pub fn refuse(dh: &DisplayHandle, client: &Client, limit: &Limit) {
    const NO_MEMORY: u32 = 2;
    let message = format!("vitrine: limit reached: at most {} {}", limit.max, limit.what);
    let (pid, command) = client.get_data::<ClientState>().map(|d| (d.pid, d.command.clone())).unwrap_or_default();
    tracing::warn!(client = pid, command, limit = limit.what, max = limit.max, "client over a limit: disconnected");
    let handle = dh.backend_handle();
    match handle.object_for_protocol_id(client.id(), &WL_DISPLAY_INTERFACE, 1) {
        Ok(display) => handle.post_error(display, NO_MEMORY, CString::new(message).unwrap_or_default()),
        Err(_) => client
            .kill(dh, ProtocolError { code: NO_MEMORY, object_id: 1, object_interface: "wl_display".into(), message }),
    }
}

/// Count `counter` up for `client`, refusing it over `limit`.
fn count(dh: &DisplayHandle, client: &Client, counter: impl Fn(&Usage) -> &AtomicUsize, limit: &Limit) -> bool {
    let Some(u) = usage(client) else { return true };
    if up(counter(u)) > limit.max {
        refuse(dh, client, limit);
        return false;
    }
    true
}

/// A new screen capture frame; false when the client is over `SCREENCOPY_FRAMES` (refused).
pub fn screencopy_frame_created(dh: &DisplayHandle, client: &Client) -> bool {
    count(dh, client, |u| &u.screencopy_frames, &SCREENCOPY_FRAMES)
}

pub fn screencopy_frame_destroyed(dh: &DisplayHandle, client: ClientId) {
    with_usage(dh, client, |u| down(&u.screencopy_frames));
}

/// A new surface (`CompositorHandler::new_surface`).
pub fn surface_created(dh: &DisplayHandle, surface: &WlSurface) {
    if let Some(client) = surface.client() {
        count(dh, &client, |u| &u.surfaces, &SURFACES);
    }
}

pub fn surface_destroyed(surface: &WlSurface) {
    if let Some(u) = surface.client().as_ref().and_then(usage) {
        down(&u.surfaces);
    }
}

/// A new subsurface of `parent`: its depth (the parent's chain of parents) is bounded, so that
/// nothing walking the tree goes deep.
pub fn subsurface_created(dh: &DisplayHandle, surface: &WlSurface, parent: &WlSurface) {
    let mut depth = 1;
    let mut up_to = parent.clone();
    while let Some(p) = compositor::get_parent(&up_to) {
        depth += 1;
        if depth > SUBSURFACE_DEPTH.max {
            if let Some(client) = surface.client() {
                refuse(dh, &client, &SUBSURFACE_DEPTH);
            }
            return;
        }
        up_to = p;
    }
}

/// A new popup: counted, and its chain of parent popups bounded.
pub fn popup_created(dh: &DisplayHandle, popup: &PopupSurface) {
    let Some(client) = popup.wl_surface().client() else { return };
    if !count(dh, &client, |u| &u.popups, &POPUPS) {
        return;
    }
    let mut depth = 1;
    let mut parent = popup.get_parent_surface();
    while let Some(p) = parent {
        let next = compositor::with_states(&p, |states| {
            states.data_map.get::<XdgPopupSurfaceData>().and_then(|d| d.lock().ok().and_then(|d| d.parent.clone()))
        });
        let Some(next) = next else { break };
        depth += 1;
        if depth > POPUP_DEPTH.max {
            refuse(dh, &client, &POPUP_DEPTH);
            return;
        }
        parent = Some(next);
    }
}

pub fn popup_destroyed(popup: &PopupSurface) {
    if let Some(u) = popup.wl_surface().client().as_ref().and_then(usage) {
        down(&u.popups);
    }
}

/// After a configure was sent to `toplevel`: a client that does not acknowledge them is not
/// sent them forever.
pub fn configure_sent(dh: &DisplayHandle, toplevel: &ToplevelSurface) {
    let pending = compositor::with_states(toplevel.wl_surface(), |states| {
        states
            .data_map
            .get::<XdgToplevelSurfaceData>()
            .and_then(|d| d.lock().ok().map(|d| d.pending_configures().len()))
    });
    if pending.is_some_and(|n| n > CONFIGURES.max) {
        if let Some(client) = toplevel.wl_surface().client() {
            refuse(dh, &client, &CONFIGURES);
        }
    }
}

/// A dmabuf buffer was made for `client` (the import succeeded).
pub fn dmabuf_buffer_created(dh: &DisplayHandle, client: &Client) {
    if count(dh, client, |u| &u.dmabuf_buffers, &DMABUF_BUFFERS) {
        count(dh, client, |u| &u.buffers, &BUFFERS);
    }
}

/// Whether a new activation token of `client` may be kept: tokens older than `lifetime` are
/// forgotten first, then at most ACTIVATION_TOKENS per client.
pub fn activation_token_allowed(
    state: &mut smithay::wayland::xdg_activation::XdgActivationState,
    client: &ClientId,
    lifetime: std::time::Duration,
) -> bool {
    state.retain_tokens(|_, data| data.timestamp.elapsed() < lifetime);
    let held = state.tokens().filter(|(_, data)| data.client_id.as_ref() == Some(client)).count();
    held < ACTIVATION_TOKENS.max
}

// wl_surface: pending frame callbacks and damage are bounded between commits.
impl Dispatch<WlSurface, SurfaceUserData> for State {
    fn request(
        state: &mut State,
        client: &Client,
        resource: &WlSurface,
        request: wl_surface::Request,
        data: &SurfaceUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        let callbacks = matches!(request, wl_surface::Request::Frame { .. });
        let damage = matches!(request, wl_surface::Request::Damage { .. } | wl_surface::Request::DamageBuffer { .. });
        <CompositorState as Dispatch<WlSurface, SurfaceUserData, State>>::request(
            state, client, resource, request, data, dh, init,
        );
        if !callbacks && !damage {
            return;
        }
        let (limit, pending) = compositor::with_states(resource, |states| {
            let mut attributes = states.cached_state.get::<SurfaceAttributes>();
            let pending = attributes.pending();
            if callbacks {
                (&FRAME_CALLBACKS, pending.frame_callbacks.len())
            } else {
                (&DAMAGE, pending.damage.len())
            }
        });
        if pending > limit.max {
            refuse(dh, client, limit);
        }
    }

    fn destroyed(state: &mut State, client: ClientId, resource: &WlSurface, data: &SurfaceUserData) {
        <CompositorState as Dispatch<WlSurface, SurfaceUserData, State>>::destroyed(state, client, resource, data)
    }
}

// wl_region: its rectangles are bounded.
impl Dispatch<WlRegion, RegionUserData> for State {
    fn request(
        state: &mut State,
        client: &Client,
        resource: &WlRegion,
        request: wl_region::Request,
        data: &RegionUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        let grows = matches!(request, wl_region::Request::Add { .. } | wl_region::Request::Subtract { .. });
        <CompositorState as Dispatch<WlRegion, RegionUserData, State>>::request(
            state, client, resource, request, data, dh, init,
        );
        if grows && compositor::get_region_attributes(resource).rects.len() > REGION_RECTS.max {
            refuse(dh, client, &REGION_RECTS);
        }
    }

    fn destroyed(state: &mut State, client: ClientId, resource: &WlRegion, data: &RegionUserData) {
        <CompositorState as Dispatch<WlRegion, RegionUserData, State>>::destroyed(state, client, resource, data)
    }
}

// Single-pixel buffers count as buffers.
impl Dispatch<WpSinglePixelBufferManagerV1, ()> for State {
    fn request(
        state: &mut State,
        client: &Client,
        resource: &WpSinglePixelBufferManagerV1,
        request: wp_single_pixel_buffer_manager_v1::Request,
        data: &(),
        dh: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        let buffer = matches!(request, wp_single_pixel_buffer_manager_v1::Request::CreateU32RgbaBuffer { .. });
        <SinglePixelBufferState as Dispatch<WpSinglePixelBufferManagerV1, (), State>>::request(
            state, client, resource, request, data, dh, init,
        );
        if buffer {
            count(dh, client, |u| &u.buffers, &BUFFERS);
        }
    }

    fn destroyed(state: &mut State, client: ClientId, resource: &WpSinglePixelBufferManagerV1, data: &()) {
        <SinglePixelBufferState as Dispatch<WpSinglePixelBufferManagerV1, (), State>>::destroyed(
            state, client, resource, data,
        )
    }
}

impl Dispatch<WlBuffer, SinglePixelBufferUserData> for State {
    fn request(
        state: &mut State,
        client: &Client,
        resource: &WlBuffer,
        request: <WlBuffer as Resource>::Request,
        data: &SinglePixelBufferUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        <SinglePixelBufferState as Dispatch<WlBuffer, SinglePixelBufferUserData, State>>::request(
            state, client, resource, request, data, dh, init,
        );
    }

    fn destroyed(state: &mut State, client: ClientId, resource: &WlBuffer, data: &SinglePixelBufferUserData) {
        with_usage(&state.core.display_handle.clone(), client.clone(), |u| down(&u.buffers));
        <SinglePixelBufferState as Dispatch<WlBuffer, SinglePixelBufferUserData, State>>::destroyed(
            state, client, resource, data,
        )
    }
}

// linux-dmabuf: parameter objects (each holds up to four descriptors until it is used) and
// dmabuf buffers (each holds its planes' descriptors) are counted.
impl Dispatch<ZwpLinuxDmabufV1, DmabufData> for State {
    fn request(
        state: &mut State,
        client: &Client,
        resource: &ZwpLinuxDmabufV1,
        request: zwp_linux_dmabuf_v1::Request,
        data: &DmabufData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        let params = matches!(request, zwp_linux_dmabuf_v1::Request::CreateParams { .. });
        <DmabufState as Dispatch<ZwpLinuxDmabufV1, DmabufData, State>>::request(
            state, client, resource, request, data, dh, init,
        );
        if params {
            count(dh, client, |u| &u.dmabuf_params, &DMABUF_PARAMS);
        }
    }

    fn destroyed(state: &mut State, client: ClientId, resource: &ZwpLinuxDmabufV1, data: &DmabufData) {
        <DmabufState as Dispatch<ZwpLinuxDmabufV1, DmabufData, State>>::destroyed(state, client, resource, data)
    }
}

impl Dispatch<ZwpLinuxBufferParamsV1, DmabufParamsData> for State {
    fn request(
        state: &mut State,
        client: &Client,
        resource: &ZwpLinuxBufferParamsV1,
        request: zwp_linux_buffer_params_v1::Request,
        data: &DmabufParamsData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        <DmabufState as Dispatch<ZwpLinuxBufferParamsV1, DmabufParamsData, State>>::request(
            state, client, resource, request, data, dh, init,
        );
    }

    fn destroyed(state: &mut State, client: ClientId, resource: &ZwpLinuxBufferParamsV1, data: &DmabufParamsData) {
        with_usage(&state.core.display_handle.clone(), client.clone(), |u| down(&u.dmabuf_params));
        <DmabufState as Dispatch<ZwpLinuxBufferParamsV1, DmabufParamsData, State>>::destroyed(
            state, client, resource, data,
        )
    }
}

impl Dispatch<WlBuffer, Dmabuf> for State {
    fn request(
        state: &mut State,
        client: &Client,
        resource: &WlBuffer,
        request: <WlBuffer as Resource>::Request,
        data: &Dmabuf,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        <DmabufState as Dispatch<WlBuffer, Dmabuf, State>>::request(state, client, resource, request, data, dh, init);
    }

    fn destroyed(state: &mut State, client: ClientId, resource: &WlBuffer, data: &Dmabuf) {
        with_usage(&state.core.display_handle.clone(), client.clone(), |u| {
            down(&u.dmabuf_buffers);
            down(&u.buffers);
        });
        <DmabufState as Dispatch<WlBuffer, Dmabuf, State>>::destroyed(state, client, resource, data)
    }
}

// wl_data_device_manager: clipboard and drag sources are counted.
impl Dispatch<WlDataDeviceManager, ()> for State {
    fn request(
        state: &mut State,
        client: &Client,
        resource: &WlDataDeviceManager,
        request: wl_data_device_manager::Request,
        data: &(),
        dh: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        let source = matches!(request, wl_data_device_manager::Request::CreateDataSource { .. });
        <DataDeviceState as Dispatch<WlDataDeviceManager, (), State>>::request(
            state, client, resource, request, data, dh, init,
        );
        if source {
            count(dh, client, |u| &u.data_sources, &DATA_SOURCES);
        }
    }

    fn destroyed(state: &mut State, client: ClientId, resource: &WlDataDeviceManager, data: &()) {
        <DataDeviceState as Dispatch<WlDataDeviceManager, (), State>>::destroyed(state, client, resource, data)
    }
}

// wl_data_source: the MIME types it offers are bounded in number and length (each is kept for
// as long as the source lives, and sent to every client the selection is offered to).
impl Dispatch<WlDataSource, DataSourceUserData> for State {
    fn request(
        state: &mut State,
        client: &Client,
        resource: &WlDataSource,
        request: wl_data_source::Request,
        data: &DataSourceUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        if let wl_data_source::Request::Offer { mime_type } = &request {
            if mime_type.len() > MIME_TYPE_BYTES.max {
                return refuse(dh, client, &MIME_TYPE_BYTES);
            }
            let offered = with_source_metadata(resource, |m| m.mime_types.len()).unwrap_or(0);
            if offered >= MIME_TYPES.max {
                return refuse(dh, client, &MIME_TYPES);
            }
        }
        <DataDeviceState as Dispatch<WlDataSource, DataSourceUserData, State>>::request(
            state, client, resource, request, data, dh, init,
        );
    }

    fn destroyed(state: &mut State, client: ClientId, resource: &WlDataSource, data: &DataSourceUserData) {
        with_usage(&state.core.display_handle.clone(), client.clone(), |u| down(&u.data_sources));
        <DataDeviceState as Dispatch<WlDataSource, DataSourceUserData, State>>::destroyed(state, client, resource, data)
    }
}

// What the limits leave to smithay as it is.
delegate_global_dispatch!(State: [WlCompositor: ()] => CompositorState);
delegate_global_dispatch!(State: [WlSubcompositor: ()] => CompositorState);
delegate_dispatch!(State: [WlCompositor: ()] => CompositorState);
delegate_dispatch!(State: [WlCallback: ()] => CompositorState);
delegate_dispatch!(State: [WlSubcompositor: ()] => CompositorState);
delegate_dispatch!(State: [WlSubsurface: SubsurfaceUserData] => CompositorState);
delegate_global_dispatch!(State: [WlShm: ()] => ShmState);
delegate_global_dispatch!(State: [ZwpLinuxDmabufV1: DmabufGlobalData] => DmabufState);
delegate_dispatch!(State: [ZwpLinuxDmabufFeedbackV1: DmabufFeedbackData] => DmabufState);
delegate_global_dispatch!(State: [WpSinglePixelBufferManagerV1: ()] => SinglePixelBufferState);
delegate_global_dispatch!(State: [WlDataDeviceManager: ()] => DataDeviceState);
delegate_dispatch!(State: [WlDataDevice: DataDeviceUserData] => DataDeviceState);

#[cfg(test)]
mod tests {
    use super::*;

    /// The unit's `LimitNOFILE` covers every client at its limits (a limit raised, or more
    /// clients allowed, must raise it too).
    #[test]
    fn the_units_descriptor_limit_covers_the_clients_at_their_limits() {
        for unit in [include_str!("../../systemd/vitrine.service"), include_str!("../../systemd/vitrine@.service")] {
            let limit: u64 = unit
                .lines()
                .find_map(|l| l.strip_prefix("LimitNOFILE="))
                .and_then(|v| v.trim().parse().ok())
                .expect("the unit sets LimitNOFILE");
            assert!(
                descriptors_for_clients() <= limit,
                "{} descriptors needed, LimitNOFILE={limit}",
                descriptors_for_clients()
            );
        }
    }
}
