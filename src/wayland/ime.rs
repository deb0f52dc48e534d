//! On-screen keyboards and input methods: text-input v3 lets the kiosk app's entries say when
//! they want text (a GTK entry, foot, a browser's field), and input-method v2 (privileged) lets
//! the keyboard client write it: its commits arrive in the focused entry. The text-input focus
//! follows the keyboard focus. An input method's candidate popup is not shown yet.

use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::utils::{Logical, Rectangle};
use smithay::wayland::input_method::{InputMethodHandler, PopupSurface};
use smithay::{delegate_input_method_manager, delegate_text_input_manager};

use crate::state::State;

impl InputMethodHandler for State {
    fn new_popup(&mut self, _surface: PopupSurface) {}

    fn dismiss_popup(&mut self, _surface: PopupSurface) {}

    fn popup_repositioned(&mut self, _surface: PopupSurface) {}

    fn parent_geometry(&self, parent: &WlSurface) -> Rectangle<i32, Logical> {
        self.core.window_for_surface(parent).and_then(|w| self.core.space.element_geometry(&w)).unwrap_or_default()
    }
}

delegate_input_method_manager!(State);
delegate_text_input_manager!(State);
