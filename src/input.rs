//! Input events from any smithay input backend (winit today, libinput with DRM) to clients.

use smithay::backend::input::{
    AbsolutePositionEvent, Axis, AxisSource, ButtonState, Event, InputBackend, InputEvent, KeyboardKeyEvent,
    PointerAxisEvent, PointerButtonEvent, PointerMotionEvent, TouchEvent, TouchSlot,
};
use smithay::desktop::WindowSurfaceType;
use smithay::input::keyboard::FilterResult;
use smithay::input::pointer::{AxisFrame, ButtonEvent, MotionEvent};
use smithay::input::touch::{DownEvent, MotionEvent as TouchMotionEvent, UpEvent};
use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::reexports::wayland_server::Resource;
use smithay::utils::{Logical, Point, SERIAL_COUNTER};

use crate::state::State;

impl State {
    /// The surface under a point in the global layout, with that surface's origin.
    /// Layer-shell surfaces on the top and overlay layers come first, those on the bottom and
    /// background layers last.
    pub fn surface_under(&self, pos: Point<f64, Logical>) -> Option<(WlSurface, Point<f64, Logical>)> {
        use smithay::wayland::shell::wlr_layer::Layer;
        let shell = |layers: &[Layer]| {
            let output = self.core.space.output_under(pos).next()?;
            let out_loc = self.core.space.output_geometry(output)?.loc;
            let map = smithay::desktop::layer_map_for_output(output);
            let local = pos - out_loc.to_f64();
            layers.iter().find_map(|wanted| {
                let layer = map.layer_under(*wanted, local)?;
                let layer_loc = map.layer_geometry(layer)?.loc - layer.bbox().loc;
                let (surface, loc) = layer.surface_under(local - layer_loc.to_f64(), WindowSurfaceType::ALL)?;
                Some((surface, (loc + layer_loc + out_loc).to_f64()))
            })
        };
        if let Some(found) = shell(&[Layer::Overlay, Layer::Top]) {
            return Some(found);
        }
        let window = self.core.space.element_under(pos).and_then(|(window, render_loc)| {
            let (surface, surface_loc) = window.surface_under(pos - render_loc.to_f64(), WindowSurfaceType::ALL)?;
            Some((surface, (surface_loc + render_loc).to_f64()))
        });
        window.or_else(|| shell(&[Layer::Bottom, Layer::Background]))
    }

    /// Where an absolute event (a touch, a nested window's pointer) lands: on the output its
    /// device names (udev WL_OUTPUT), else the one `[input] touch_output` names, else the first.
    /// The device covers that output's panel: on a turned panel the point is turned back to the
    /// upright layout.
    fn absolute_position<B: InputBackend, E: AbsolutePositionEvent<B>>(
        &self,
        event: &E,
    ) -> Option<Point<f64, Logical>> {
        use smithay::backend::input::Device as _;
        let own = self.core.kiosk.device_outputs.get(&event.device().id()).and_then(|n| self.core.output_by_name(n));
        let named = &self.core.config.input.touch_output;
        let output = own.or_else(|| self.core.output_by_name(named)).or_else(|| self.core.outputs.first())?;
        let geo = self.core.space.output_geometry(output)?;
        let rotation = crate::rotation::Rotation::from_transform(output.current_transform());
        let panel = rotation.logical_size((geo.size.w.max(0) as u32, geo.size.h.max(0) as u32));
        let p = event.position_transformed((panel.0 as i32, panel.1 as i32).into());
        let (x, y) = rotation.to_upright((p.x, p.y), panel);
        Some(Point::from((x, y)) + geo.loc.to_f64())
    }

    pub(crate) fn pointer_moved(&mut self, pos: Point<f64, Logical>, time: u32) {
        self.core.kiosk.pointer_location = pos;
        self.core.kiosk.last_pointer_motion = Some(std::time::Instant::now());
        // The cursor is drawn by vitrine: where it was and where it is now change.
        self.core.queue_redraw_all();
        self.core.arm_pointer_hide();
        let under = self.surface_under(pos);
        self.core.kiosk.pointer_under = under.as_ref().map(|(s, origin)| (s.id(), *origin));
        if let Some(pointer) = self.core.seat.get_pointer() {
            pointer.motion(self, under, &MotionEvent { location: pos, serial: SERIAL_COUNTER.next_serial(), time });
            pointer.frame(self);
        }
    }

    /// After a commit: a surface that appeared, moved or went away under a pointer that did not
    /// move changes what the pointer is over, or where on it, as if the pointer had moved.
    /// Nothing is sent when nothing changed, nor before a pointer was ever used.
    pub(crate) fn pointer_follows_surfaces(&mut self) {
        if self.core.kiosk.last_pointer_motion.is_none() {
            return;
        }
        let Some(pointer) = self.core.seat.get_pointer() else { return };
        if pointer.is_grabbed() {
            return;
        }
        let pos = pointer.current_location();
        let under = self.surface_under(pos);
        let now = under.as_ref().map(|(s, origin)| (s.id(), *origin));
        if now == self.core.kiosk.pointer_under {
            return;
        }
        self.core.kiosk.pointer_under = now;
        let time = self.core.clock.now().as_millis();
        pointer.motion(self, under, &MotionEvent { location: pos, serial: SERIAL_COUNTER.next_serial(), time });
        pointer.frame(self);
    }

    pub fn handle_input<B: InputBackend>(&mut self, event: InputEvent<B>) {
        // Displays off (the schedule): a touch or a nudged mouse must not act on what no one sees.
        let pointing = !matches!(
            event,
            InputEvent::Keyboard { .. } | InputEvent::DeviceAdded { .. } | InputEvent::DeviceRemoved { .. }
        );
        if !self.core.displays_on && pointing {
            tracing::debug!("input ignored: the displays are off");
            return;
        }
        match event {
            InputEvent::Keyboard { event } => {
                let Some(keyboard) = self.core.seat.get_keyboard() else { return };
                let pressed = event.state() == smithay::backend::input::KeyState::Pressed;
                // Ctrl+Alt+Fn (XF86Switch_VT_n in the keymap) switches VTs on the DRM backend.
                let vt = keyboard.input::<u16, _>(
                    self,
                    event.key_code(),
                    event.state(),
                    SERIAL_COUNTER.next_serial(),
                    event.time_msec(),
                    |_, _, keysym| {
                        let sym = keysym.modified_sym().raw();
                        if pressed && (0x1008_FE01..=0x1008_FE0C).contains(&sym) {
                            FilterResult::Intercept((sym - 0x1008_FE00) as u16)
                        } else {
                            FilterResult::Forward
                        }
                    },
                );
                match (vt, &mut self.backend) {
                    (Some(n), crate::backend::Backend::Drm(d)) if self.core.config.input.vt_switch => d.switch_vt(n),
                    (Some(n), _) => {
                        tracing::info!(vt = n, "Ctrl+Alt+F{n} ignored: [input] vt_switch is off")
                    }
                    _ => {}
                }
            }
            InputEvent::PointerMotionAbsolute { event } => {
                if let Some(pos) = self.absolute_position(&event) {
                    self.pointer_moved(pos, event.time_msec());
                }
            }
            InputEvent::PointerMotion { event } => {
                let pos = self.core.kiosk.pointer_location + event.delta();
                let pos = self.clamp_to_outputs(pos);
                self.pointer_moved(pos, event.time_msec());
            }
            InputEvent::PointerButton { event } => {
                self.pointer_button(event.button_code(), event.state(), event.time_msec())
            }
            InputEvent::PointerAxis { event } => {
                let Some(pointer) = self.core.seat.get_pointer() else {
                    return;
                };
                let mut frame = AxisFrame::new(event.time_msec()).source(event.source());
                for axis in [Axis::Horizontal, Axis::Vertical] {
                    let amount =
                        event.amount(axis).or_else(|| event.amount_v120(axis).map(|v| v * 15.0 / 120.0)).unwrap_or(0.0);
                    if amount != 0.0 {
                        frame = frame.value(axis, amount);
                        if let Some(v120) = event.amount_v120(axis) {
                            frame = frame.v120(axis, v120 as i32);
                        }
                    } else if event.source() == AxisSource::Finger {
                        frame = frame.stop(axis);
                    }
                }
                pointer.axis(self, frame);
                pointer.frame(self);
            }
            InputEvent::TouchDown { event } => {
                if let Some(pos) = self.absolute_position(&event) {
                    self.touch_down(event.slot(), pos, event.time_msec());
                }
            }
            InputEvent::TouchMotion { event } => {
                if let Some(pos) = self.absolute_position(&event) {
                    self.touch_moved(event.slot(), pos, event.time_msec());
                }
            }
            InputEvent::TouchUp { event } => self.touch_up(event.slot(), event.time_msec()),
            InputEvent::TouchFrame { .. } => {
                if let Some(touch) = self.core.seat.get_touch() {
                    touch.frame(self);
                }
            }
            InputEvent::TouchCancel { .. } => {
                if let Some(touch) = self.core.seat.get_touch() {
                    touch.cancel(self);
                }
            }
            _ => {}
        }
    }

    /// A button pressed on a window focuses its toplevel, then goes to the client.
    pub(crate) fn pointer_button(&mut self, button: u32, state: ButtonState, time: u32) {
        let Some(pointer) = self.core.seat.get_pointer() else {
            return;
        };
        let serial = SERIAL_COUNTER.next_serial();
        if state == ButtonState::Pressed {
            if let Some((surface, _)) = self.surface_under(pointer.current_location()) {
                // A layer surface that takes the keyboard when asked (on demand) gets it on a click.
                if let Some((_, layer)) = self.core.layer_of(&surface) {
                    if layer.can_receive_keyboard_focus() {
                        if let Some(keyboard) = self.core.seat.get_keyboard() {
                            keyboard.set_focus(self, Some(surface.clone()), serial);
                        }
                    }
                }
                if let Some(window) = self.window_for_root_of(&surface) {
                    if let Some(t) = window.toplevel() {
                        let surface = t.wl_surface().clone();
                        if let Some(keyboard) = self.core.seat.get_keyboard() {
                            keyboard.set_focus(self, Some(surface), serial);
                        }
                    }
                }
            }
        }
        pointer.button(self, &ButtonEvent { button, state, serial, time });
        pointer.frame(self);
    }

    pub(crate) fn touch_down(&mut self, slot: TouchSlot, pos: Point<f64, Logical>, time: u32) {
        // Touch hides the pointer: kiosks are touch-first.
        if self.core.kiosk.last_pointer_motion.take().is_some() {
            self.core.queue_redraw_all();
        }
        let Some(touch) = self.core.seat.get_touch() else { return };
        let under = self.surface_under(pos);
        touch.down(self, under, &DownEvent { slot, location: pos, serial: SERIAL_COUNTER.next_serial(), time });
    }

    pub(crate) fn touch_moved(&mut self, slot: TouchSlot, pos: Point<f64, Logical>, time: u32) {
        let Some(touch) = self.core.seat.get_touch() else { return };
        let under = self.surface_under(pos);
        touch.motion(self, under, &TouchMotionEvent { slot, location: pos, time });
    }

    pub(crate) fn touch_up(&mut self, slot: TouchSlot, time: u32) {
        let Some(touch) = self.core.seat.get_touch() else { return };
        touch.up(self, &UpEvent { slot, serial: SERIAL_COUNTER.next_serial(), time });
    }

    fn window_for_root_of(&self, surface: &WlSurface) -> Option<smithay::desktop::Window> {
        let mut root = surface.clone();
        while let Some(parent) = smithay::wayland::compositor::get_parent(&root) {
            root = parent;
        }
        self.core.window_for_surface(&root)
    }

    pub(crate) fn clamp_to_outputs(&self, pos: Point<f64, Logical>) -> Point<f64, Logical> {
        if self.core.outputs.iter().filter_map(|o| self.core.space.output_geometry(o)).any(|g| g.to_f64().contains(pos))
        {
            return pos;
        }
        let Some(geo) = self.core.outputs.first().and_then(|o| self.core.space.output_geometry(o)) else {
            return pos;
        };
        let x = pos.x.clamp(geo.loc.x as f64, (geo.loc.x + geo.size.w - 1) as f64);
        let y = pos.y.clamp(geo.loc.y as f64, (geo.loc.y + geo.size.h - 1) as f64);
        (x, y).into()
    }
}
