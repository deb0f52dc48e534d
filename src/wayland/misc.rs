//! The small globals: outputs, presentation time, viewporter, single-pixel buffers, content type,
//! xdg-activation, and linux-dmabuf.

use smithay::backend::allocator::dmabuf::Dmabuf;
use smithay::backend::allocator::Buffer;
use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::wayland::dmabuf::{DmabufGlobal, DmabufHandler, DmabufState, ImportNotifier};
use smithay::wayland::output::OutputHandler;
use smithay::wayland::xdg_activation::{
    XdgActivationHandler, XdgActivationState, XdgActivationToken, XdgActivationTokenData,
};
use smithay::{
    delegate_content_type, delegate_dmabuf, delegate_output, delegate_presentation, delegate_single_pixel_buffer,
    delegate_viewporter, delegate_xdg_activation,
};

use crate::state::State;

impl OutputHandler for State {}

impl XdgActivationHandler for State {
    fn activation_state(&mut self) -> &mut XdgActivationState {
        &mut self.core.activation_state
    }

    fn request_activation(
        &mut self,
        _token: XdgActivationToken,
        token_data: XdgActivationTokenData,
        surface: WlSurface,
    ) {
        // Only tokens minted in the last 10 s are honoured; an activated toplevel is raised and focused.
        if token_data.timestamp.elapsed().as_secs() < 10 {
            self.kiosk_activate(&surface);
        }
    }
}

impl DmabufHandler for State {
    fn dmabuf_state(&mut self) -> &mut DmabufState {
        &mut self.core.dmabuf_state
    }

    fn dmabuf_imported(&mut self, _global: &DmabufGlobal, dmabuf: Dmabuf, notifier: ImportNotifier) {
        let known = |code: u32, modifier: u64| self.backend.knows_modifier(code, modifier);
        if let Err(err) = super::dmabuf_check::check(&dmabuf, known) {
            tracing::warn!(%err, "malformed client dmabuf refused");
            notifier.failed();
            return;
        }
        match self.backend.import_dmabuf(&dmabuf) {
            Ok(()) => {
                let _ = notifier.successful::<State>();
            }
            Err(err) => {
                tracing::warn!(%err, format = ?dmabuf.format(), "client dmabuf rejected");
                notifier.failed();
            }
        }
    }
}

delegate_output!(State);
delegate_presentation!(State);
delegate_viewporter!(State);
delegate_single_pixel_buffer!(State);
delegate_content_type!(State);
delegate_xdg_activation!(State);
delegate_dmabuf!(State);
