//! Kiosk policy on the compositor: toplevels placed fullscreen, focus, the scene each output
//! shows, the pointer's visibility, the display schedule, the kiosk app's supervision.

use std::time::Duration;

use smithay::backend::renderer::utils::with_renderer_surface_state;
use smithay::desktop::{PopupKind, Window};
use smithay::input::pointer::{CursorImageStatus, CursorImageSurfaceData};
use smithay::output::Output;
use smithay::reexports::wayland_protocols::xdg::shell::server::xdg_toplevel;
use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::reexports::wayland_server::Resource;
use smithay::utils::{Logical, Point, Rectangle, SERIAL_COUNTER};
use smithay::wayland::compositor::with_states;
use smithay::wayland::shell::wlr_layer::Layer as WlrLayer;
use smithay::wayland::shell::xdg::ToplevelSurface;

use crate::scene::{CursorSource, Layer, LayerSource, Scene};
use crate::state::{Core, State};
use smithay::reexports::calloop::generic::Generic;
use smithay::reexports::calloop::timer::{TimeoutAction, Timer};
use smithay::reexports::calloop::{Interest, Mode, PostAction};

use super::{app_id, is_mapped, video_rect, window_output, WindowKiosk};

impl Core {
    pub fn window_for_surface(&self, surface: &WlSurface) -> Option<Window> {
        self.kiosk.stack.iter().find(|w| w.toplevel().map(|t| t.wl_surface() == surface).unwrap_or(false)).cloned()
    }

    pub fn kiosk_new_toplevel(&mut self, window: Window) {
        let Some(toplevel) = window.toplevel().cloned() else {
            return;
        };
        // Activated comes with the keyboard focus (`kiosk_focus_changed`), when it maps.
        toplevel.with_pending_state(|state| {
            state.states.set(xdg_toplevel::State::Fullscreen);
        });
        window.user_data().insert_if_missing(WindowKiosk::default);
        self.kiosk.stack.push(window.clone());
        self.space.map_element(window, (0, 0), false);
        // Its size is known from now on: whatever configure comes first (the initial commit's,
        // or the answer to a set_fullscreen made before it) is at its output's size.
        self.kiosk_place_toplevel(toplevel.wl_surface());
        // Keyboard focus comes when the toplevel maps (first buffer), see `kiosk_on_commit`:
        // some clients crash when focused before they have drawn.
    }

    /// Raise a toplevel and give it keyboard focus (xdg-activation).
    /// Send initial configures and keep every toplevel fullscreen and centred on its output.
    /// Choose the output of a toplevel (config placement by app id, else the first output), size
    /// it to that output and centre it there.
    pub fn kiosk_place_toplevel(&mut self, surface: &WlSurface) {
        let Some(window) = self.window_for_surface(surface) else {
            return;
        };
        let Some(toplevel) = window.toplevel().cloned() else {
            return;
        };
        let wanted = app_id(surface).and_then(|id| self.config.output_for_app(&id).map(str::to_string));
        let output =
            wanted.as_deref().and_then(|name| self.output_by_name(name)).or_else(|| self.outputs.first()).cloned();
        let Some((output, out_geo)) = output.and_then(|o| self.space.output_geometry(&o).map(|g| (o, g))) else {
            return;
        };
        // What layer surfaces' exclusive zones (a bar, a ticker) leave of the output; zones that
        // leave nothing are not honoured (the app would get a size of zero or less).
        let zone = smithay::desktop::layer_map_for_output(&output).non_exclusive_zone();
        let out_geo = match zone.size.w > 0 && zone.size.h > 0 {
            true => Rectangle::new(out_geo.loc + zone.loc, zone.size),
            false => out_geo,
        };

        if let Some(kiosk) = window.user_data().get::<WindowKiosk>() {
            let mut current = kiosk.output.borrow_mut();
            if current.as_deref() != Some(output.name().as_str()) {
                let client = self
                    .display_handle
                    .get_client(surface.id())
                    .ok()
                    .and_then(|c| c.get_data::<crate::state::ClientState>().map(|d| d.pid))
                    .unwrap_or(0);
                tracing::info!(client, app_id = ?app_id(surface), output = %output.name(), "toplevel placed");
                *current = Some(output.name());
            }
        }
        let wl_output =
            self.display_handle.get_client(surface.id()).ok().and_then(|client| output.client_outputs(&client).next());
        toplevel.with_pending_state(|state| {
            state.states.set(xdg_toplevel::State::Fullscreen);
            state.size = Some(out_geo.size);
            state.fullscreen_output = wl_output;
        });
        let waited = window.user_data().get::<WindowKiosk>().is_some_and(|k| k.awaiting_output.replace(false));
        if waited {
            tracing::info!(app_id = ?app_id(surface), output = %output.name(), "a display came: first configure sent");
            toplevel.send_configure();
        } else if toplevel.is_initial_configure_sent() {
            toplevel.send_pending_configure();
        }

        // Centre what the client drew (a client may ignore the configured size), unless an
        // embedder put it somewhere.
        let geo = window.geometry();
        let offset = ((out_geo.size.w - geo.size.w).max(0) / 2, (out_geo.size.h - geo.size.h).max(0) / 2);
        let placed = window.user_data().get::<WindowKiosk>().and_then(|k| k.placed.get());
        let loc = placed.unwrap_or(out_geo.loc + Point::from(offset));
        if self.space.element_location(&window) != Some(loc) {
            self.space.map_element(window.clone(), loc, false);
            // map_element raises; restore the kiosk's stacking above this window.
            if let Some(pos) = self.kiosk.stack.iter().position(|w| w == &window) {
                for above in &self.kiosk.stack[pos + 1..] {
                    self.space.raise_element(above, false);
                }
            }
        }
    }

    /// Put `window` at `at` of the layout from now on (an embedder's request).
    pub fn kiosk_place_at(&mut self, window: &Window, at: Point<i32, Logical>) {
        if let Some(kiosk) = window.user_data().get::<WindowKiosk>() {
            kiosk.placed.set(Some(at));
        }
        if let Some(toplevel) = window.toplevel() {
            let surface = toplevel.wl_surface().clone();
            self.kiosk_place_toplevel(&surface);
        }
    }

    /// The keyboard focus went to `focused` (a toplevel, one of its popups, or nothing): that
    /// toplevel is the activated one, and each toplevel whose state changed is told.
    pub fn kiosk_focus_changed(&mut self, focused: Option<&WlSurface>) {
        let root = focused.map(|s| match self.popups.find_popup(s) {
            Some(popup) => smithay::desktop::find_popup_root_surface(&popup).unwrap_or_else(|_| s.clone()),
            None => s.clone(),
        });
        for window in &self.kiosk.stack {
            let Some(toplevel) = window.toplevel() else { continue };
            let active = root.as_ref() == Some(toplevel.wl_surface());
            toplevel.with_pending_state(|state| {
                if active {
                    state.states.set(xdg_toplevel::State::Activated);
                } else {
                    state.states.unset(xdg_toplevel::State::Activated);
                }
            });
            if toplevel.is_initial_configure_sent() {
                toplevel.send_pending_configure();
            }
        }
    }

    /// Re-place every toplevel, e.g. after an output changed size.
    pub fn kiosk_relayout(&mut self) {
        // Layer surfaces first: their exclusive zones bound the toplevels' area.
        for output in &self.outputs {
            smithay::desktop::layer_map_for_output(output).arrange();
        }
        let surfaces: Vec<WlSurface> =
            self.kiosk.stack.iter().filter_map(|w| w.toplevel().map(|t| t.wl_surface().clone())).collect();
        for s in surfaces {
            self.kiosk_place_toplevel(&s);
        }
    }

    /// Whether the pointer should be drawn: only after a pointer device moved, and not after
    /// `hide_pointer_after_ms` without motion.
    pub fn pointer_visible(&self) -> bool {
        let Some(at) = self.kiosk.last_pointer_motion else {
            return false;
        };
        let hide_after = self.config.input.hide_pointer_after_ms;
        hide_after == 0 || at.elapsed().as_millis() < hide_after as u128
    }

    /// What `output` should show now.
    pub fn scene_for_output(&self, output: &Output) -> Scene {
        let mut scene = Scene {
            background: self.config.background.color.to_f32(),
            layers: Vec::new(),
            colour: self.config.video.colour,
        };
        let Some(out_geo) = self.space.output_geometry(output) else {
            return scene;
        };
        if let Some(image) = &self.background_image {
            scene.layers.push(Layer {
                source: LayerSource::Image(image.clone()),
                dst: Rectangle::from_size(out_geo.size),
                alpha: 1.0,
            });
        }
        let shell = |scene: &mut Scene, layers: &[WlrLayer]| {
            let map = smithay::desktop::layer_map_for_output(output);
            for wanted in layers {
                for layer in map.layers_on(*wanted) {
                    let Some(geo) = map.layer_geometry(layer) else { continue };
                    if geo.size.w > 0 && geo.size.h > 0 {
                        scene.layers.push(Layer { source: LayerSource::Shell(layer.clone()), dst: geo, alpha: 1.0 });
                    }
                }
            }
        };
        shell(&mut scene, &[WlrLayer::Background, WlrLayer::Bottom]);
        let first_output = self.outputs.first() == Some(output);
        if let (true, Some(frame)) = (first_output, self.player.as_ref().and_then(|p| p.current())) {
            // The video goes into its zone (the whole output by default), below the app.
            let video = &self.config.video;
            let zone = match video.zone[..] {
                [x, y, w, h] => Rectangle::new((x, y).into(), (w, h).into()),
                _ => Rectangle::from_size(out_geo.size),
            };
            scene.layers.push(Layer {
                source: LayerSource::Video(frame.clone()),
                dst: video_rect(zone, frame.visible, video.scale),
                alpha: 1.0,
            });
        }
        for window in &self.kiosk.stack {
            if window_output(window).as_deref() != Some(output.name().as_str()) {
                continue;
            }
            let Some(loc) = self.space.element_location(window) else {
                continue;
            };
            let size = window.geometry().size;
            if size.w <= 0 || size.h <= 0 {
                continue;
            }
            scene.layers.push(Layer {
                source: LayerSource::Client(window.clone()),
                dst: Rectangle::new(loc - out_geo.loc, size),
                alpha: 1.0,
            });
        }
        shell(&mut scene, &[WlrLayer::Top, WlrLayer::Overlay]);
        // Input methods' candidate popups, next to the entries they are for.
        let popups: Vec<Layer> =
            self.ime_popups.iter().filter_map(|p| ime_popup_layer(&scene, p, out_geo.size)).collect();
        scene.layers.extend(popups);
        let pointer = self.kiosk.pointer_location.to_i32_round();
        if self.pointer_visible() && out_geo.contains(pointer) {
            let local = pointer - out_geo.loc;
            let source = match &self.kiosk.cursor_image {
                CursorImageStatus::Hidden => None,
                CursorImageStatus::Named(_) => Some(CursorSource::Default),
                CursorImageStatus::Surface(surface) => {
                    let hotspot = with_states(surface, |states| {
                        states
                            .data_map
                            .get::<CursorImageSurfaceData>()
                            .and_then(|d| d.lock().ok().map(|d| d.hotspot))
                            .unwrap_or_default()
                    });
                    Some(CursorSource::Surface { surface: surface.clone(), hotspot })
                }
            };
            if let Some(source) = source {
                scene.layers.push(Layer {
                    source: LayerSource::Cursor(source),
                    dst: Rectangle::new(local, (16, 16).into()),
                    alpha: 1.0,
                });
            }
        }
        scene
    }
}

/// Where an input method's popup goes in `scene`: below the text cursor rectangle its entry gave
/// (in the coordinates of the entry's window surface), above it when there is no room below,
/// kept on the output. `None` while it has no buffer or its entry's window is not in the scene.
fn ime_popup_layer(
    scene: &Scene,
    popup: &smithay::wayland::input_method::PopupSurface,
    output: smithay::utils::Size<i32, Logical>,
) -> Option<Layer> {
    if !popup.alive() {
        return None;
    }
    let parent = popup.get_parent()?;
    let size = with_renderer_surface_state(popup.wl_surface(), |s| s.surface_size()).flatten()?;
    if size.w <= 0 || size.h <= 0 {
        return None;
    }
    let origin = scene.layers.iter().find_map(|l| match &l.source {
        LayerSource::Client(w) if w.toplevel().is_some_and(|t| t.wl_surface() == &parent.surface) => {
            Some(l.dst.loc - w.geometry().loc)
        }
        _ => None,
    })?;
    let cursor = popup.text_input_rectangle();
    let mut loc = origin + cursor.loc + Point::from((0, cursor.size.h));
    if loc.y + size.h > output.h {
        loc.y = origin.y + cursor.loc.y - size.h;
    }
    loc.x = loc.x.min(output.w - size.w).max(0);
    loc.y = loc.y.max(0);
    Some(Layer {
        source: LayerSource::ImePopup(popup.wl_surface().clone()),
        dst: Rectangle::new(loc, size),
        alpha: 1.0,
    })
}

impl Core {
    /// Repaint what shows `surface`: the output of its window (popups and subsurfaces included),
    /// or every output for a surface that is on none of them yet (a cursor, a new toplevel).
    pub fn queue_redraw_for_surface(&mut self, surface: &WlSurface) {
        let mut root = surface.clone();
        while let Some(parent) = smithay::wayland::compositor::get_parent(&root) {
            root = parent;
        }
        if let Some(popup) = self.popups.find_popup(&root) {
            if let Ok(parent) = smithay::desktop::find_popup_root_surface(&popup) {
                root = parent;
            }
        }
        let output = self
            .window_for_surface(&root)
            .and_then(|w| window_output(&w))
            .and_then(|name| self.output_by_name(&name).cloned())
            .or_else(|| self.layer_output(&root));
        match output {
            Some(output) => self.queue_redraw(&output),
            None => self.queue_redraw_all(),
        }
    }

    /// The pointer moved: it hides again after `hide_pointer_after_ms` without motion (a timer,
    /// re-armed as it keeps moving).
    pub fn arm_pointer_hide(&mut self) {
        let after = self.config.input.hide_pointer_after_ms;
        if after == 0 || self.pointer_timer.is_some() {
            return;
        }
        let timer = smithay::reexports::calloop::timer::Timer::from_duration(std::time::Duration::from_millis(after));
        let token = self.loop_handle.insert_source(timer, move |_, _, state| {
            use smithay::reexports::calloop::timer::TimeoutAction;
            let since = state.core.kiosk.last_pointer_motion.map(|t| t.elapsed());
            match since {
                Some(since) if since < std::time::Duration::from_millis(after) => {
                    TimeoutAction::ToDuration(std::time::Duration::from_millis(after) - since)
                }
                _ => {
                    state.core.pointer_timer = None;
                    state.core.queue_redraw_all();
                    TimeoutAction::Drop
                }
            }
        });
        self.pointer_timer = token.ok();
    }
}

impl State {
    pub fn kiosk_toplevel_destroyed(&mut self, surface: &ToplevelSurface) {
        let Some(window) = self.core.window_for_surface(surface.wl_surface()) else {
            return;
        };
        self.core.kiosk.stack.retain(|w| w != &window);
        self.core.space.unmap_elem(&window);
        let focus = self.core.seat.get_keyboard().map(|k| k.current_focus());
        if let Some(focus) = focus {
            if focus.as_ref() == Some(surface.wl_surface()) || focus.is_none() {
                self.focus_top_window();
            }
        }
    }

    /// Give the keyboard to the topmost mapped toplevel (or nothing).
    pub fn focus_top_window(&mut self) {
        let next = self
            .core
            .kiosk
            .stack
            .iter()
            .rev()
            .find(|w| is_mapped(w))
            .and_then(|w| w.toplevel().map(|t| t.wl_surface().clone()));
        if let Some(keyboard) = self.core.seat.get_keyboard() {
            keyboard.set_focus(self, next, SERIAL_COUNTER.next_serial());
        }
    }

    pub fn kiosk_activate(&mut self, surface: &WlSurface) {
        let Some(window) = self.core.window_for_surface(surface) else {
            return;
        };
        self.core.kiosk.stack.retain(|w| w != &window);
        self.core.kiosk.stack.push(window.clone());
        self.core.space.raise_element(&window, true);
        if let Some(keyboard) = self.core.seat.get_keyboard() {
            keyboard.set_focus(self, Some(surface.clone()), SERIAL_COUNTER.next_serial());
        }
    }

    pub fn kiosk_on_commit(&mut self, surface: &WlSurface) {
        if let Some(window) = self.core.window_for_surface(surface) {
            let initial = window.toplevel().map(|t| !t.is_initial_configure_sent()).unwrap_or(false);
            self.core.kiosk_place_toplevel(surface);
            if initial {
                let size = window.toplevel().and_then(|t| t.with_pending_state(|s| s.size));
                match (window.toplevel(), window.user_data().get::<WindowKiosk>()) {
                    // No output yet (a display not connected): the configure waits for one.
                    (Some(_), Some(kiosk)) if size.is_none() => {
                        tracing::info!(app_id = ?app_id(surface), "no display yet: the toplevel's first configure waits for one");
                        kiosk.awaiting_output.set(true);
                    }
                    (Some(t), _) => {
                        t.send_configure();
                    }
                    _ => {}
                }
            }
            let has_buffer = with_renderer_surface_state(surface, |s| s.buffer().is_some()).unwrap_or(false);
            if let Some(kiosk) = window.user_data().get::<WindowKiosk>() {
                if has_buffer && !kiosk.mapped.replace(true) {
                    // Keyboard focus follows the newest mapped toplevel.
                    if let Some(keyboard) = self.core.seat.get_keyboard() {
                        keyboard.set_focus(self, Some(surface.clone()), SERIAL_COUNTER.next_serial());
                    }
                } else if !has_buffer {
                    kiosk.mapped.set(false);
                }
            }
            return;
        }
        if let Some(PopupKind::Xdg(popup)) = self.core.popups.find_popup(surface) {
            if !popup.is_initial_configure_sent() {
                if let Err(err) = popup.send_configure() {
                    tracing::warn!(?err, "cannot configure popup");
                }
            }
        }
    }
}

impl State {
    /// Switch the displays to what the schedule says now, and arm a timer for its next switch
    /// (at most a minute ahead, so a wall clock stepped by NTP is followed). Called at start, by
    /// that timer and after a reload.
    pub fn apply_schedule(&mut self) {
        use smithay::reexports::calloop::timer::{TimeoutAction, Timer};
        let now = self.core.day_clock.now();
        let hours = self.core.config.schedule.hours();
        self.set_displays(hours.is_none_or(|h| h.is_on(now)));
        if let Some(token) = self.core.schedule_timer.take() {
            self.core.loop_handle.remove(token);
        }
        let Some(secs) = hours.and_then(|h| h.until_next_change(now)) else { return };
        let timer = Timer::from_duration(Duration::from_secs(secs.clamp(1, 60) as u64));
        match self.core.loop_handle.insert_source(timer, |_, _, state| {
            state.core.schedule_timer = None;
            state.apply_schedule();
            TimeoutAction::Drop
        }) {
            Ok(token) => self.core.schedule_timer = Some(token),
            Err(err) => tracing::error!(%err, "cannot arm the display schedule"),
        }
    }
}

/// Start the kiosk app and watch it: its exit is a pidfd becoming readable; a restart is a timer.
pub fn launch_app(core: &mut Core) {
    let Some(app) = core.kiosk.app.as_mut() else { return };
    let event = app.start();
    let pid = app.pid();
    follow(core, event, pid);
}

fn follow(core: &mut Core, event: super::app::AppEvent, pid: Option<u32>) {
    match event {
        super::app::AppEvent::ExitWith(code) => core.quit(code),
        super::app::AppEvent::RestartIn(delay) => {
            let timer = core.loop_handle.insert_source(Timer::from_duration(delay), |_, _, state| {
                if let Some(app) = state.core.kiosk.app.as_mut() {
                    app.restarts += 1;
                }
                launch_app(&mut state.core);
                TimeoutAction::Drop
            });
            if let Err(err) = timer {
                tracing::error!(%err, "cannot schedule the kiosk app's restart");
            }
        }
        super::app::AppEvent::Nothing => {
            let Some(pid) = pid else { return };
            let watched = super::app::pidfd_open(pid).map_err(|e| e.to_string()).and_then(|fd| {
                core.loop_handle
                    .insert_source(Generic::new(fd, Interest::READ, Mode::Level), |_, _, state| {
                        let Some(app) = state.core.kiosk.app.as_mut() else { return Ok(PostAction::Remove) };
                        let event = app.reap();
                        if app.pid().is_some() {
                            return Ok(PostAction::Continue);
                        }
                        let pid = app.pid();
                        follow(&mut state.core, event, pid);
                        Ok(PostAction::Remove)
                    })
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
            if let Err(err) = watched {
                // Old kernels have no pidfd: look once a second instead.
                tracing::warn!(%err, "no pidfd for the kiosk app: checking on it every second");
                let _ = core.loop_handle.insert_source(Timer::from_duration(Duration::from_secs(1)), |_, _, state| {
                    let Some(app) = state.core.kiosk.app.as_mut() else { return TimeoutAction::Drop };
                    let event = app.reap();
                    if app.pid().is_some() {
                        return TimeoutAction::ToDuration(Duration::from_secs(1));
                    }
                    follow(&mut state.core, event, None);
                    TimeoutAction::Drop
                });
            }
        }
    }
}
