//! wlr-virtual-pointer (privileged): a remote viewer (`wayvnc`) moves the pointer, clicks and
//! scrolls as a mouse plugged into the kiosk would, through the same paths (focus on click,
//! the drawn cursor, nothing while the displays are off).

use std::sync::Mutex;

use smithay::backend::input::{Axis, AxisSource, ButtonState};
use smithay::input::pointer::AxisFrame;
use smithay::output::Output;
use smithay::reexports::wayland_protocols_wlr::virtual_pointer::v1::server::zwlr_virtual_pointer_manager_v1::{
    self, ZwlrVirtualPointerManagerV1,
};
use smithay::reexports::wayland_protocols_wlr::virtual_pointer::v1::server::zwlr_virtual_pointer_v1::{
    self, ZwlrVirtualPointerV1,
};
use smithay::reexports::wayland_server::backend::GlobalId;
use smithay::reexports::wayland_server::protocol::wl_pointer;
use smithay::reexports::wayland_server::{
    Client, DataInit, Dispatch, DisplayHandle, GlobalDispatch, New, Resource, WEnum,
};
use smithay::utils::{Logical, Point, Rectangle};

use crate::state::State;

const VERSION: u32 = 2;

/// The zwlr_virtual_pointer_manager_v1 global, seen by privileged clients only.
pub fn create_global(dh: &DisplayHandle) -> GlobalId {
    dh.create_global::<State, ZwlrVirtualPointerManagerV1, ()>(VERSION, ())
}

/// A virtual pointer: the output its absolute motion covers (else the whole layout), and the
/// scroll it is gathering until its frame.
pub struct PointerData {
    output: Option<Output>,
    axis: Mutex<Option<AxisFrame>>,
}

impl GlobalDispatch<ZwlrVirtualPointerManagerV1, ()> for State {
    fn bind(
        _: &mut State,
        _: &DisplayHandle,
        _: &Client,
        resource: New<ZwlrVirtualPointerManagerV1>,
        _: &(),
        init: &mut DataInit<'_, State>,
    ) {
        init.init(resource, ());
    }

    fn can_view(client: Client, _: &()) -> bool {
        super::privileged::is_privileged(&client)
    }
}

impl Dispatch<ZwlrVirtualPointerManagerV1, ()> for State {
    fn request(
        _: &mut State,
        _: &Client,
        _: &ZwlrVirtualPointerManagerV1,
        request: zwlr_virtual_pointer_manager_v1::Request,
        _: &(),
        _: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        let (id, output) = match request {
            zwlr_virtual_pointer_manager_v1::Request::CreateVirtualPointer { id, .. } => (id, None),
            zwlr_virtual_pointer_manager_v1::Request::CreateVirtualPointerWithOutput { id, output, .. } => {
                (id, output.as_ref().and_then(Output::from_resource))
            }
            _ => return,
        };
        init.init(id, PointerData { output, axis: Mutex::new(None) });
    }
}

fn axis(axis: WEnum<wl_pointer::Axis>) -> Option<Axis> {
    match axis {
        WEnum::Value(wl_pointer::Axis::VerticalScroll) => Some(Axis::Vertical),
        WEnum::Value(wl_pointer::Axis::HorizontalScroll) => Some(Axis::Horizontal),
        _ => None,
    }
}

impl Dispatch<ZwlrVirtualPointerV1, PointerData> for State {
    fn request(
        state: &mut State,
        _: &Client,
        pointer: &ZwlrVirtualPointerV1,
        request: zwlr_virtual_pointer_v1::Request,
        data: &PointerData,
        _: &DisplayHandle,
        _: &mut DataInit<'_, State>,
    ) {
        use zwlr_virtual_pointer_v1::Request;
        // Displays off (the schedule): a remote click must not act on what no one sees.
        if !state.core.displays_on {
            return;
        }
        let mut gathered = data.axis.lock().unwrap_or_else(|e| e.into_inner());
        let bad_axis = || pointer.post_error(zwlr_virtual_pointer_v1::Error::InvalidAxis, "vitrine: no such axis");
        match request {
            Request::Motion { time, dx, dy } => {
                drop(gathered);
                let pos = state.core.kiosk.pointer_location + Point::from((dx, dy));
                let pos = state.clamp_to_outputs(pos);
                state.pointer_moved(pos, time);
            }
            Request::MotionAbsolute { time, x, y, x_extent, y_extent } => {
                drop(gathered);
                if x_extent == 0 || y_extent == 0 {
                    return;
                }
                let Some(area) = state.core.pointer_area(data.output.as_ref()) else { return };
                let fx = f64::from(x.min(x_extent)) / f64::from(x_extent);
                let fy = f64::from(y.min(y_extent)) / f64::from(y_extent);
                let pos = area.loc.to_f64() + Point::from((fx * f64::from(area.size.w), fy * f64::from(area.size.h)));
                state.pointer_moved(pos, time);
            }
            Request::Button { time, button, state: pressed } => {
                drop(gathered);
                let pressed = match pressed {
                    WEnum::Value(wl_pointer::ButtonState::Pressed) => ButtonState::Pressed,
                    _ => ButtonState::Released,
                };
                state.pointer_button(button, pressed, time);
            }
            Request::Axis { time, axis: a, value } => match axis(a) {
                Some(a) => *gathered = Some(gathered.unwrap_or(AxisFrame::new(time)).value(a, value)),
                None => bad_axis(),
            },
            Request::AxisDiscrete { time, axis: a, value, discrete } => match axis(a) {
                Some(a) => {
                    let frame = gathered.unwrap_or(AxisFrame::new(time)).value(a, value);
                    *gathered = Some(frame.v120(a, discrete.saturating_mul(120)));
                }
                None => bad_axis(),
            },
            Request::AxisStop { time, axis: a } => match axis(a) {
                Some(a) => *gathered = Some(gathered.unwrap_or(AxisFrame::new(time)).stop(a)),
                None => bad_axis(),
            },
            Request::AxisSource { axis_source } => {
                let source = match axis_source {
                    WEnum::Value(wl_pointer::AxisSource::Wheel) => AxisSource::Wheel,
                    WEnum::Value(wl_pointer::AxisSource::Finger) => AxisSource::Finger,
                    WEnum::Value(wl_pointer::AxisSource::Continuous) => AxisSource::Continuous,
                    WEnum::Value(wl_pointer::AxisSource::WheelTilt) => AxisSource::WheelTilt,
                    _ => {
                        return pointer.post_error(
                            zwlr_virtual_pointer_v1::Error::InvalidAxisSource,
                            "vitrine: no such axis source",
                        )
                    }
                };
                let time = state.core.clock.now().as_millis();
                *gathered = Some(gathered.unwrap_or(AxisFrame::new(time)).source(source));
            }
            Request::Frame => {
                let frame = gathered.take();
                drop(gathered);
                if let (Some(frame), Some(seat_pointer)) = (frame, state.core.seat.get_pointer()) {
                    seat_pointer.axis(state, frame);
                    seat_pointer.frame(state);
                }
            }
            _ => {}
        }
    }
}

impl crate::state::Core {
    /// What an absolute position covers: `output`, or the bounding box of every output.
    fn pointer_area(&self, output: Option<&Output>) -> Option<Rectangle<i32, Logical>> {
        match output {
            Some(o) => self.space.output_geometry(o),
            None => self.outputs.iter().filter_map(|o| self.space.output_geometry(o)).reduce(|a, b| a.merge(b)),
        }
    }
}
