//! xdg-shell with kiosk policy (every toplevel fullscreen, no decorations) and its rule checks.

use smithay::delegate_xdg_decoration;
use smithay::desktop::{PopupKind, Window};
use smithay::reexports::wayland_protocols::xdg::decoration::zv1::server::zxdg_toplevel_decoration_v1::Mode as DecorationMode;
use smithay::reexports::wayland_protocols::xdg::shell::server::xdg_popup::XdgPopup;
use smithay::reexports::wayland_protocols::xdg::shell::server::xdg_positioner::XdgPositioner;
use smithay::reexports::wayland_protocols::xdg::shell::server::xdg_surface::{self, XdgSurface};
use smithay::reexports::wayland_protocols::xdg::shell::server::xdg_toplevel::XdgToplevel;
use smithay::reexports::wayland_protocols::xdg::shell::server::xdg_wm_base::XdgWmBase;
use smithay::reexports::wayland_server::backend::ClientId;
use smithay::reexports::wayland_server::protocol::wl_surface::{self, WlSurface};
use smithay::reexports::wayland_server::protocol::{wl_output::WlOutput, wl_seat::WlSeat};
use smithay::reexports::wayland_server::{delegate_dispatch, delegate_global_dispatch, Client, DataInit, Dispatch};
use smithay::reexports::wayland_server::{DisplayHandle, Resource};
use smithay::utils::Serial;
use smithay::wayland::compositor::{self, BufferAssignment, SurfaceAttributes};
use smithay::wayland::shell::xdg::decoration::XdgDecorationHandler;
use smithay::wayland::shell::xdg::{
    PopupSurface, PositionerState, ToplevelSurface, XdgPositionerUserData, XdgShellHandler, XdgShellState,
    XdgShellSurfaceUserData, XdgSurfaceUserData, XdgToplevelSurfaceData, XdgWmBaseUserData,
};

use crate::state::State;

impl XdgShellHandler for State {
    fn xdg_shell_state(&mut self) -> &mut XdgShellState {
        &mut self.core.xdg_shell_state
    }

    fn new_toplevel(&mut self, surface: ToplevelSurface) {
        if let Some(xdg) = self.core.xdg_surface_in_request.take() {
            compositor::with_states(surface.wl_surface(), |states| {
                states.data_map.insert_if_missing_threadsafe(|| XdgSurfaceOf(xdg));
            });
        }
        compositor::add_pre_commit_hook::<State, _>(surface.wl_surface(), reject_unconfigured_buffer);
        let window = Window::new_wayland_window(surface);
        self.core.kiosk_new_toplevel(window);
    }

    fn toplevel_destroyed(&mut self, surface: ToplevelSurface) {
        self.kiosk_toplevel_destroyed(&surface);
    }

    fn new_popup(&mut self, surface: PopupSurface, positioner: PositionerState) {
        surface.with_pending_state(|state| {
            state.geometry = positioner.get_geometry();
            state.positioner = positioner;
        });
        if let Err(err) = self.core.popups.track_popup(PopupKind::Xdg(surface)) {
            tracing::warn!(?err, "cannot track popup");
        }
    }

    fn reposition_request(&mut self, surface: PopupSurface, positioner: PositionerState, token: u32) {
        surface.with_pending_state(|state| {
            state.geometry = positioner.get_geometry();
            state.positioner = positioner;
        });
        surface.send_repositioned(token);
    }

    fn grab(&mut self, _surface: PopupSurface, _seat: WlSeat, _serial: Serial) {
        // Popups stay until their client dismisses them: a kiosk has no other windows to click.
    }

    // A kiosk decides sizes itself: requests to move, resize, maximize, minimize or leave
    // fullscreen are answered with the same fullscreen configure.
    fn fullscreen_request(&mut self, surface: ToplevelSurface, _output: Option<WlOutput>) {
        surface.send_configure();
    }

    fn unfullscreen_request(&mut self, surface: ToplevelSurface) {
        surface.send_configure();
    }

    fn maximize_request(&mut self, surface: ToplevelSurface) {
        surface.send_configure();
    }

    fn unmaximize_request(&mut self, surface: ToplevelSurface) {
        surface.send_configure();
    }

    fn app_id_changed(&mut self, surface: ToplevelSurface) {
        self.core.kiosk_place_toplevel(surface.wl_surface());
    }
}

impl XdgDecorationHandler for State {
    fn new_decoration(&mut self, toplevel: ToplevelSurface) {
        toplevel.with_pending_state(|state| state.decoration_mode = Some(DecorationMode::ServerSide));
    }

    fn request_mode(&mut self, toplevel: ToplevelSurface, _mode: DecorationMode) {
        // "Server side", and the server draws none: a kiosk window has no frame.
        toplevel.with_pending_state(|state| state.decoration_mode = Some(DecorationMode::ServerSide));
        if toplevel.is_initial_configure_sent() {
            toplevel.send_pending_configure();
        }
    }

    fn unset_mode(&mut self, toplevel: ToplevelSurface) {
        self.request_mode(toplevel, DecorationMode::ServerSide);
    }
}

/// The xdg_surface a toplevel was made from, kept in the wl_surface's data: smithay does not
/// expose it, and protocol errors about the xdg_surface must be posted on it.
struct XdgSurfaceOf(XdgSurface);

/// xdg-shell forbids attaching a buffer before the first configure is acknowledged; smithay does
/// not check it for toplevels, so vitrine does, and disconnects only the offending client.
fn reject_unconfigured_buffer(_state: &mut State, _dh: &DisplayHandle, surface: &WlSurface) {
    let violation = compositor::with_states(surface, |states| {
        let configured = states
            .data_map
            .get::<XdgToplevelSurfaceData>()
            .and_then(|data| data.lock().ok().map(|d| d.configured))
            .unwrap_or(true);
        let new_buffer = matches!(
            states.cached_state.get::<SurfaceAttributes>().pending().buffer,
            Some(BufferAssignment::NewBuffer(_))
        );
        (new_buffer && !configured).then(|| states.data_map.get::<XdgSurfaceOf>().map(|x| x.0.clone()))
    });
    if let Some(xdg_surface) = violation {
        tracing::warn!(surface = %surface.id(), "client attached a buffer before acknowledging the first configure");
        let message = format!("{} attached a buffer before acknowledging the first configure", surface.id());
        match xdg_surface {
            Some(xdg) => xdg.post_error(xdg_surface::Error::UnconfiguredBuffer, message),
            None => surface.post_error(wl_surface::Error::InvalidSize, message),
        }
    }
}

// smithay's xdg-shell dispatch, with one addition: the xdg_surface that asks for a toplevel is
// remembered for the duration of the request, so `new_toplevel` can keep it.
impl Dispatch<XdgSurface, XdgSurfaceUserData> for State {
    fn request(
        state: &mut State,
        client: &Client,
        resource: &XdgSurface,
        request: xdg_surface::Request,
        data: &XdgSurfaceUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        let creating = matches!(request, xdg_surface::Request::GetToplevel { .. });
        if creating {
            state.core.xdg_surface_in_request = Some(resource.clone());
        }
        <XdgShellState as Dispatch<XdgSurface, XdgSurfaceUserData, State>>::request(
            state, client, resource, request, data, dh, init,
        );
        if creating {
            state.core.xdg_surface_in_request = None;
        }
    }

    fn destroyed(state: &mut State, client: ClientId, resource: &XdgSurface, data: &XdgSurfaceUserData) {
        <XdgShellState as Dispatch<XdgSurface, XdgSurfaceUserData, State>>::destroyed(state, client, resource, data)
    }
}

delegate_global_dispatch!(State: [XdgWmBase: ()] => XdgShellState);
delegate_dispatch!(State: [XdgWmBase: XdgWmBaseUserData] => XdgShellState);
delegate_dispatch!(State: [XdgPositioner: XdgPositionerUserData] => XdgShellState);
delegate_dispatch!(State: [XdgPopup: XdgShellSurfaceUserData] => XdgShellState);
delegate_dispatch!(State: [XdgToplevel: XdgShellSurfaceUserData] => XdgShellState);
delegate_xdg_decoration!(State);
