//! wl_compositor, wl_subcompositor, wl_shm and buffer handling.

use smithay::backend::renderer::utils::on_commit_buffer_handler;
use smithay::reexports::wayland_server::protocol::wl_buffer::WlBuffer;
use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::reexports::wayland_server::Client;
use smithay::wayland::buffer::BufferHandler;
use smithay::wayland::compositor::{
    get_parent, is_sync_subsurface, CompositorClientState, CompositorHandler, CompositorState,
};
use smithay::wayland::shm::{ShmHandler, ShmState};

use crate::state::{ClientState, State};

impl CompositorHandler for State {
    fn compositor_state(&mut self) -> &mut CompositorState {
        &mut self.core.compositor_state
    }

    fn client_compositor_state<'a>(&self, client: &'a Client) -> &'a CompositorClientState {
        match client.get_data::<ClientState>() {
            Some(data) => &data.compositor_state,
            None => {
                // Every client is inserted with ClientState; anything else is a bug in vitrine.
                static FALLBACK: std::sync::OnceLock<CompositorClientState> = std::sync::OnceLock::new();
                FALLBACK.get_or_init(CompositorClientState::default)
            }
        }
    }

    fn commit(&mut self, surface: &WlSurface) {
        on_commit_buffer_handler::<Self>(surface);
        super::colour_representation::check_commit(surface);
        if !is_sync_subsurface(surface) {
            let mut root = surface.clone();
            while let Some(parent) = get_parent(&root) {
                root = parent;
            }
            if let Some(window) = self.core.window_for_surface(&root) {
                window.on_commit();
            }
        }
        self.core.popups.commit(surface);
        if !self.layer_committed(surface) {
            self.kiosk_on_commit(surface);
        }
        self.pointer_follows_surfaces();
        // Frames on demand: what shows this surface is repainted at its next vblank.
        self.core.queue_redraw_for_surface(surface);
    }

    fn new_surface(&mut self, surface: &WlSurface) {
        super::limits::surface_created(&self.core.display_handle, surface);
    }

    fn new_subsurface(&mut self, surface: &WlSurface, parent: &WlSurface) {
        super::limits::subsurface_created(&self.core.display_handle, surface, parent);
    }

    fn destroyed(&mut self, surface: &WlSurface) {
        super::limits::surface_destroyed(surface);
        // A surface gone (a subsurface, a popup, a client that left) leaves a hole to repaint.
        self.core.queue_redraw_all();
    }
}

impl BufferHandler for State {
    fn buffer_destroyed(&mut self, _buffer: &WlBuffer) {}
}

impl ShmHandler for State {
    fn shm_state(&self) -> &ShmState {
        &self.core.shm_state
    }
}

// wl_compositor and wl_shm are dispatched in `limits`, which counts what clients make.
