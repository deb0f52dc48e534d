//! On-screen keyboards and input methods: text-input v3 lets the kiosk app's entries say when
//! they want text (a GTK entry, foot, a browser's field), and input-method v2 (privileged) lets
//! the keyboard client write it: its commits arrive in the focused entry. The text-input focus
//! follows the keyboard focus. An input method's candidate popup (its list of words) is shown
//! below the entry's text cursor, above the app and the layer-shell surfaces.

use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::utils::{Logical, Rectangle};
use smithay::wayland::input_method::{InputMethodHandler, PopupSurface};
use smithay::{delegate_input_method_manager, delegate_text_input_manager};

use crate::state::State;

/// Popups shown at most: one per input method (and input methods are privileged clients).
const MAX_POPUPS: usize = 8;

impl InputMethodHandler for State {
    fn new_popup(&mut self, surface: PopupSurface) {
        // The entry's text cursor as known now (smithay tells it only when the entry moves it).
        let r = surface.text_input_rectangle();
        surface.surface_role.text_input_rectangle(r.loc.x, r.loc.y, r.size.w, r.size.h);
        let popups = &mut self.core.ime_popups;
        popups.retain(|p| p.alive() && p.wl_surface() != surface.wl_surface());
        if popups.len() >= MAX_POPUPS {
            popups.remove(0);
        }
        popups.push(surface);
        self.core.queue_redraw_all();
    }

    fn dismiss_popup(&mut self, surface: PopupSurface) {
        self.core.ime_popups.retain(|p| p.alive() && p.wl_surface() != surface.wl_surface());
        self.core.queue_redraw_all();
    }

    fn popup_repositioned(&mut self, _surface: PopupSurface) {
        self.core.queue_redraw_all();
    }

    fn parent_geometry(&self, parent: &WlSurface) -> Rectangle<i32, Logical> {
        self.core.window_for_surface(parent).and_then(|w| self.core.space.element_geometry(&w)).unwrap_or_default()
    }
}

delegate_input_method_manager!(State);
delegate_text_input_manager!(State);
