//! The small globals: outputs, presentation time, viewporter, single-pixel buffers, content type,
//! xdg-activation, and linux-dmabuf.

use smithay::backend::allocator::dmabuf::Dmabuf;
use smithay::backend::allocator::Buffer;
use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::reexports::wayland_server::Resource;
use smithay::wayland::dmabuf::{DmabufGlobal, DmabufHandler, DmabufState, ImportNotifier};
use smithay::wayland::output::OutputHandler;
use smithay::wayland::xdg_activation::{
    XdgActivationHandler, XdgActivationState, XdgActivationToken, XdgActivationTokenData,
};
use smithay::{
    delegate_content_type, delegate_output, delegate_presentation, delegate_viewporter, delegate_xdg_activation,
};

use crate::state::State;

impl OutputHandler for State {}

/// How long an activation token lasts.
const TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(10);

impl XdgActivationHandler for State {
    fn activation_state(&mut self) -> &mut XdgActivationState {
        &mut self.core.activation_state
    }

    /// A token is kept only when its client asked with a recent input serial while it had the
    /// keyboard focus (no window takes the focus from the kiosk app by itself), for 10 s, and
    /// at most `limits::ACTIVATION_TOKENS` per client.
    fn token_created(&mut self, _token: XdgActivationToken, data: XdgActivationTokenData) -> bool {
        let Some(client) = data.client_id.clone() else { return false };
        if !super::limits::activation_token_allowed(&mut self.core.activation_state, &client, TOKEN_LIFETIME) {
            tracing::debug!("activation token refused: its client holds too many");
            return false;
        }
        let Some((serial, _seat)) = data.serial else {
            tracing::debug!("activation token refused: no input serial");
            return false;
        };
        let Some(keyboard) = self.core.seat.get_keyboard() else { return false };
        let focused = keyboard.current_focus().and_then(|s| s.client()).map(|c| c.id());
        let recent = keyboard.last_enter().is_some_and(|enter| serial.is_no_older_than(&enter));
        if focused.as_ref() != Some(&client) || !recent {
            tracing::debug!("activation token refused: not from the focused client, or an old serial");
            return false;
        }
        true
    }

    fn request_activation(
        &mut self,
        _token: XdgActivationToken,
        token_data: XdgActivationTokenData,
        surface: WlSurface,
    ) {
        // Only tokens minted in the last 10 s are honoured; an activated toplevel is raised and focused.
        if token_data.timestamp.elapsed() < TOKEN_LIFETIME {
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
                let client = notifier.client();
                if notifier.successful::<State>().is_ok() {
                    if let Some(client) = client {
                        super::limits::dmabuf_buffer_created(&self.core.display_handle, &client);
                    }
                }
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
delegate_content_type!(State);
delegate_xdg_activation!(State);
// linux-dmabuf and single-pixel buffers are dispatched in `limits`, which counts them.
