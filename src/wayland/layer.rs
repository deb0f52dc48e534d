//! wlr-layer-shell: surfaces a client puts on an output's background, bottom, top or overlay
//! layer (a wallpaper, a bar, a ticker, a clock, a notice). Each output keeps its layer map
//! (smithay's `LayerMap`): placed by anchors and margins, and whose exclusive zones shrink the
//! area the kiosk app is made fullscreen in. In the scene, background and bottom are below the
//! video, top and overlay above the kiosk app.

use smithay::delegate_layer_shell;
use smithay::desktop::{layer_map_for_output, LayerSurface, WindowSurfaceType};
use smithay::output::Output;
use smithay::reexports::wayland_server::protocol::wl_output::WlOutput;
use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::utils::SERIAL_COUNTER;
use smithay::wayland::compositor::with_states;
use smithay::wayland::shell::wlr_layer::{
    KeyboardInteractivity, Layer, LayerSurface as WlrLayerSurface, LayerSurfaceData, WlrLayerShellHandler,
    WlrLayerShellState,
};

use crate::state::{Core, State};

impl WlrLayerShellHandler for State {
    fn shell_state(&mut self) -> &mut WlrLayerShellState {
        &mut self.core.layer_shell_state
    }

    fn new_layer_surface(
        &mut self,
        surface: WlrLayerSurface,
        output: Option<WlOutput>,
        layer: Layer,
        namespace: String,
    ) {
        let output = output.as_ref().and_then(Output::from_resource).or_else(|| self.core.outputs.first().cloned());
        let Some(output) = output else {
            // Nowhere to show it: the protocol's answer is to close it.
            tracing::info!(namespace = %namespace, "layer surface closed: no output");
            surface.send_close();
            return;
        };
        tracing::info!(namespace = %namespace, ?layer, output = %output.name(), "layer surface");
        let mut map = layer_map_for_output(&output);
        if let Err(err) = map.map_layer(&LayerSurface::new(surface, namespace)) {
            tracing::warn!(%err, "cannot map a layer surface");
        }
    }

    fn layer_destroyed(&mut self, surface: WlrLayerSurface) {
        let Some((output, layer)) = self.core.layer_of(surface.wl_surface()) else { return };
        layer_map_for_output(&output).unmap_layer(&layer);
        self.layers_changed(&output);
        // The keyboard goes back to the kiosk app.
        if let Some(keyboard) = self.core.seat.get_keyboard() {
            if keyboard.current_focus().as_ref() == Some(surface.wl_surface()) {
                self.focus_top_window();
            }
        }
    }
}

delegate_layer_shell!(State);

impl Core {
    /// The output and layer surface whose root is `surface`.
    pub fn layer_of(&self, surface: &WlSurface) -> Option<(Output, LayerSurface)> {
        self.outputs.iter().find_map(|o| {
            let map = layer_map_for_output(o);
            map.layer_for_surface(surface, WindowSurfaceType::TOPLEVEL).map(|l| (o.clone(), l.clone()))
        })
    }

    /// The output showing `surface`, a layer surface or one of its subsurfaces or popups.
    pub fn layer_output(&self, surface: &WlSurface) -> Option<Output> {
        self.outputs
            .iter()
            .find(|o| layer_map_for_output(o).layer_for_surface(surface, WindowSurfaceType::ALL).is_some())
            .cloned()
    }
}

impl State {
    /// A commit on a layer surface: the first is answered with its configure (its size from the
    /// layer map); then the map is arranged again (its size, anchors or exclusive zone may have
    /// changed). Returns false when `surface` is no layer surface.
    pub fn layer_committed(&mut self, surface: &WlSurface) -> bool {
        let Some((output, layer)) = self.core.layer_of(surface) else { return false };
        let initial = with_states(surface, |states| {
            states.data_map.get::<LayerSurfaceData>().is_some_and(|d| !d.lock().is_ok_and(|d| d.initial_configure_sent))
        });
        // The kiosk app is placed again only when the zone it is given changed: an overlay that
        // animates (a ticker, a clock) costs an arrange per commit, not a relayout. (The commit
        // itself queues the output's redraw.)
        let zone_changed = {
            let mut map = layer_map_for_output(&output);
            let before = map.non_exclusive_zone();
            map.arrange();
            map.non_exclusive_zone() != before
        };
        if initial {
            layer.layer_surface().send_configure();
        }
        if zone_changed {
            self.core.kiosk_relayout();
        }
        let exclusive = layer.cached_state().keyboard_interactivity == KeyboardInteractivity::Exclusive;
        let mapped = smithay::backend::renderer::utils::with_renderer_surface_state(surface, |s| s.buffer().is_some())
            .unwrap_or(false);
        if exclusive && mapped && layer.can_receive_keyboard_focus() {
            if let Some(keyboard) = self.core.seat.get_keyboard() {
                if keyboard.current_focus().as_ref() != Some(surface) {
                    keyboard.set_focus(self, Some(surface.clone()), SERIAL_COUNTER.next_serial());
                }
            }
        }
        true
    }

    /// The layers of `output` changed: the kiosk app's area may have, and the output is redrawn.
    fn layers_changed(&mut self, output: &Output) {
        self.core.kiosk_relayout();
        self.core.queue_redraw(output);
    }
}
