//! xdg-shell with kiosk policy (every toplevel fullscreen, no decorations) and its rule checks.

use smithay::backend::renderer::utils::with_renderer_surface_state;
use smithay::delegate_xdg_decoration;
use smithay::desktop::{PopupKind, Window};
use smithay::reexports::wayland_protocols::xdg::decoration::zv1::server::zxdg_toplevel_decoration_v1::Mode as DecorationMode;
use smithay::reexports::wayland_protocols::xdg::shell::server::xdg_popup::XdgPopup;
use smithay::reexports::wayland_protocols::xdg::shell::server::xdg_positioner::XdgPositioner;
use smithay::reexports::wayland_protocols::xdg::shell::server::xdg_surface::{self, XdgSurface};
use smithay::reexports::wayland_protocols::xdg::shell::server::xdg_toplevel::XdgToplevel;
use smithay::reexports::wayland_protocols::xdg::shell::server::xdg_wm_base::{self, XdgWmBase};
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
    XdgShellSurfaceUserData, XdgSurfaceUserData, XdgToplevelSurfaceData, XdgWmBaseUserData, XDG_POPUP_ROLE,
    XDG_TOPLEVEL_ROLE,
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
        if let Some(xdg) = self.core.xdg_surface_in_request.take() {
            compositor::with_states(surface.wl_surface(), |states| {
                states.data_map.insert_if_missing_threadsafe(|| XdgSurfaceOf(xdg));
            });
        }
        if let Some(refusal) = refuse_popup(&surface, &positioner) {
            return refusal();
        }
        surface.with_pending_state(|state| {
            state.geometry = positioner.get_geometry();
            state.positioner = positioner;
        });
        super::limits::popup_created(&self.core.display_handle, &surface);
        if let Err(err) = self.core.popups.track_popup(PopupKind::Xdg(surface)) {
            tracing::warn!(?err, "cannot track popup");
        }
    }

    fn popup_destroyed(&mut self, surface: PopupSurface) {
        super::limits::popup_destroyed(&surface);
    }

    fn reposition_request(&mut self, surface: PopupSurface, positioner: PositionerState, token: u32) {
        surface.with_pending_state(|state| {
            state.geometry = positioner.get_geometry();
            state.positioner = positioner;
        });
        surface.send_repositioned(token);
    }

    /// A popup that grabs (a menu, a browser's drop-down list) takes the keyboard and the
    /// pointer until it is dismissed: a click outside the client's surfaces, or a new toplevel,
    /// closes it (`popup_done`), and its keys go to it. Refused when the serial is not that of
    /// the input that opened it.
    fn grab(&mut self, surface: PopupSurface, seat: WlSeat, serial: Serial) {
        use smithay::desktop::{find_popup_root_surface, PopupKeyboardGrab, PopupPointerGrab, PopupUngrabStrategy};
        use smithay::input::pointer::Focus;
        let Some(seat) = smithay::input::Seat::<State>::from_resource(&seat) else { return };
        let popup = PopupKind::Xdg(surface);
        let Ok(root) = find_popup_root_surface(&popup) else { return };
        let Ok(mut grab) = self.core.popups.grab_popup(root, popup, &seat, serial) else { return };
        if let Some(keyboard) = seat.get_keyboard() {
            let previous = grab.previous_serial().unwrap_or(serial);
            if keyboard.is_grabbed() && !(keyboard.has_grab(serial) || keyboard.has_grab(previous)) {
                grab.ungrab(PopupUngrabStrategy::All);
                return;
            }
            keyboard.set_focus(self, grab.current_grab(), serial);
            keyboard.set_grab(self, PopupKeyboardGrab::new(&grab), serial);
        }
        if let Some(pointer) = seat.get_pointer() {
            let previous = grab.previous_serial().unwrap_or_else(|| grab.serial());
            if pointer.is_grabbed() && !(pointer.has_grab(serial) || pointer.has_grab(previous)) {
                grab.ungrab(PopupUngrabStrategy::All);
                return;
            }
            pointer.set_grab(self, PopupPointerGrab::new(&grab), serial, Focus::Keep);
        }
    }

    // A kiosk decides sizes itself: requests to move, resize, maximize, minimize or leave
    // fullscreen are answered with the same fullscreen configure (a client asking again and
    // again without acknowledging them is stopped by `limits::CONFIGURES`).
    fn fullscreen_request(&mut self, surface: ToplevelSurface, _output: Option<WlOutput>) {
        self.reconfigure(&surface);
    }

    fn unfullscreen_request(&mut self, surface: ToplevelSurface) {
        self.reconfigure(&surface);
    }

    fn maximize_request(&mut self, surface: ToplevelSurface) {
        self.reconfigure(&surface);
    }

    fn unmaximize_request(&mut self, surface: ToplevelSurface) {
        self.reconfigure(&surface);
    }

    fn app_id_changed(&mut self, surface: ToplevelSurface) {
        self.core.kiosk_place_toplevel(surface.wl_surface());
    }
}

impl State {
    /// Send `toplevel` the configure it has (fullscreen at its output's size), counting the ones
    /// it has not acknowledged. Before its initial commit nothing is sent: that commit is
    /// answered with the first configure, which already has the size.
    pub fn reconfigure(&mut self, toplevel: &ToplevelSurface) {
        self.core.kiosk_place_toplevel(toplevel.wl_surface());
        if !toplevel.is_initial_configure_sent() {
            return;
        }
        toplevel.send_configure();
        super::limits::configure_sent(&self.core.display_handle, toplevel);
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

/// The xdg_wm_base an xdg_surface was made from, kept in the wl_surface's data: errors about
/// popups (their positioner, their parent) are posted on it.
struct WmBaseOf(XdgWmBase);

/// What smithay does not check of a new popup: its positioner must have a size and an anchor
/// rectangle, its parent must be a toplevel or a popup. The refusal (a protocol error on the
/// client's xdg_wm_base) is returned to be posted.
fn refuse_popup(popup: &PopupSurface, positioner: &PositionerState) -> Option<impl FnOnce()> {
    let complete = positioner.rect_size.w > 0
        && positioner.rect_size.h > 0
        && positioner.anchor_rect.size.w > 0
        && positioner.anchor_rect.size.h > 0;
    let parent_ok = popup.get_parent_surface().is_none_or(|parent| {
        matches!(compositor::get_role(&parent), Some(role) if role == XDG_TOPLEVEL_ROLE || role == XDG_POPUP_ROLE)
    });
    let (code, message) = match (complete, parent_ok) {
        (false, _) => (xdg_wm_base::Error::InvalidPositioner, "the popup's positioner has no size or anchor rectangle"),
        (_, false) => (xdg_wm_base::Error::InvalidPopupParent, "the popup's parent is neither a toplevel nor a popup"),
        _ => return None,
    };
    let wm_base =
        compositor::with_states(popup.wl_surface(), |states| states.data_map.get::<WmBaseOf>().map(|w| w.0.clone()))?;
    tracing::warn!(surface = %popup.wl_surface().id(), message, "popup refused");
    Some(move || wm_base.post_error(code, message))
}

/// Whether a buffer committed before the first configure is acknowledged is let through: only
/// an embedder sets it (`embed::Options`), for a host whose clients break the rule.
static BUFFER_BEFORE_ACK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn allow_buffer_before_configure(allow: bool) {
    BUFFER_BEFORE_ACK.store(allow, std::sync::atomic::Ordering::Relaxed);
}

/// xdg-shell forbids attaching a buffer before the first configure is acknowledged; smithay does
/// not check it for toplevels, so vitrine does, and disconnects only the offending client.
fn reject_unconfigured_buffer(_state: &mut State, _dh: &DisplayHandle, surface: &WlSurface) {
    let before_ack_allowed = BUFFER_BEFORE_ACK.load(std::sync::atomic::Ordering::Relaxed);
    let violation = compositor::with_states(surface, |states| {
        let configured = states
            .data_map
            .get::<XdgToplevelSurfaceData>()
            .and_then(|data| data.lock().ok().map(|d| d.configured || before_ack_allowed))
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
        if matches!(request, xdg_surface::Request::GetToplevel { .. } | xdg_surface::Request::GetPopup { .. })
            && has_live_role_object(state, resource)
        {
            // smithay lets a second role object through when the role is the same.
            resource.post_error(xdg_surface::Error::AlreadyConstructed, "the xdg_surface already has a role object");
            return;
        }
        let creating =
            matches!(request, xdg_surface::Request::GetToplevel { .. } | xdg_surface::Request::GetPopup { .. });
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

// smithay's xdg_wm_base dispatch, with two checks added: an xdg_surface is not made for a
// wl_surface that already has another role or a buffer (attached or committed), and the wm_base
// is remembered in the surface's data (see `WmBaseOf`).
impl Dispatch<XdgWmBase, XdgWmBaseUserData> for State {
    fn request(
        state: &mut State,
        client: &Client,
        resource: &XdgWmBase,
        request: xdg_wm_base::Request,
        data: &XdgWmBaseUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        if let xdg_wm_base::Request::GetXdgSurface { surface, .. } = &request {
            // A surface with another role (a subsurface, a cursor) cannot become an xdg_surface;
            // one whose xdg_surface was destroyed may get its role again.
            let role = compositor::get_role(surface).filter(|r| {
                *r != smithay::wayland::shell::xdg::XDG_TOPLEVEL_ROLE
                    && *r != smithay::wayland::shell::xdg::XDG_POPUP_ROLE
            });
            if let Some(role) = role {
                tracing::warn!(surface = %surface.id(), role, "client made an xdg_surface for a surface with another role");
                resource.post_error(
                    xdg_wm_base::Error::Role,
                    format!("{} has the role {role}: no xdg_surface can be made for it", surface.id()),
                );
                return;
            }
            let committed = with_renderer_surface_state(surface, |s| s.buffer().is_some()).unwrap_or(false);
            let attached = compositor::with_states(surface, |states| {
                states.data_map.insert_if_missing_threadsafe(|| WmBaseOf(resource.clone()));
                matches!(
                    states.cached_state.get::<SurfaceAttributes>().pending().buffer,
                    Some(BufferAssignment::NewBuffer(_))
                )
            });
            if committed || attached {
                tracing::warn!(surface = %surface.id(), "client made an xdg_surface for a surface that has a buffer");
                resource.post_error(
                    xdg_wm_base::Error::InvalidSurfaceState,
                    format!("{} already has a buffer: no xdg_surface can be made for it", surface.id()),
                );
                return;
            }
        }
        <XdgShellState as Dispatch<XdgWmBase, XdgWmBaseUserData, State>>::request(
            state, client, resource, request, data, dh, init,
        );
    }

    fn destroyed(state: &mut State, client: ClientId, resource: &XdgWmBase, data: &XdgWmBaseUserData) {
        <XdgShellState as Dispatch<XdgWmBase, XdgWmBaseUserData, State>>::destroyed(state, client, resource, data)
    }
}

/// Whether `xdg` already has a live xdg_toplevel or xdg_popup.
fn has_live_role_object(state: &State, xdg: &XdgSurface) -> bool {
    let shell = &state.core.xdg_shell_state;
    shell
        .toplevel_surfaces()
        .iter()
        .any(|t| t.xdg_toplevel().is_alive() && xdg_surface_of(t.wl_surface()).as_ref() == Some(xdg))
        || shell
            .popup_surfaces()
            .iter()
            .any(|p| p.xdg_popup().is_alive() && xdg_surface_of(p.wl_surface()).as_ref() == Some(xdg))
}

/// The xdg_surface made for `surface`, as remembered when it asked for its role.
fn xdg_surface_of(surface: &WlSurface) -> Option<XdgSurface> {
    compositor::with_states(surface, |states| states.data_map.get::<XdgSurfaceOf>().map(|x| x.0.clone()))
}

delegate_global_dispatch!(State: [XdgWmBase: ()] => XdgShellState);
delegate_dispatch!(State: [XdgPositioner: XdgPositionerUserData] => XdgShellState);
delegate_dispatch!(State: [XdgPopup: XdgShellSurfaceUserData] => XdgShellState);
delegate_dispatch!(State: [XdgToplevel: XdgShellSurfaceUserData] => XdgShellState);
delegate_xdg_decoration!(State);
