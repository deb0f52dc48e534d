//! smithay protocol handlers, one file per protocol group, and the globals vitrine advertises.

pub mod colour_representation;
mod compositor;
pub mod dmabuf_check;
mod ime;
mod layer;
pub mod limits;
mod misc;
pub mod output_management;
pub mod privileged;
pub mod screencopy;
mod seat;
mod virtual_pointer;
mod xdg;

pub use xdg::allow_buffer_before_configure;

use smithay::reexports::wayland_server::DisplayHandle;
use smithay::wayland::compositor::CompositorState;
use smithay::wayland::content_type::ContentTypeState;
use smithay::wayland::input_method::InputMethodManagerState;
use smithay::wayland::output::OutputManagerState;
use smithay::wayland::presentation::PresentationState;
use smithay::wayland::selection::data_device::DataDeviceState;
use smithay::wayland::selection::primary_selection::PrimarySelectionState;
use smithay::wayland::shell::wlr_layer::WlrLayerShellState;
use smithay::wayland::shell::xdg::decoration::XdgDecorationState;
use smithay::wayland::shell::xdg::XdgShellState;
use smithay::wayland::shm::ShmState;
use smithay::wayland::single_pixel_buffer::SinglePixelBufferState;
use smithay::wayland::text_input::TextInputManagerState;
use smithay::wayland::viewporter::ViewporterState;
use smithay::wayland::virtual_keyboard::VirtualKeyboardManagerState;
use smithay::wayland::xdg_activation::XdgActivationState;

use smithay::reexports::wayland_protocols::xdg::shell::server::xdg_wm_base::XdgWmBase;

use crate::config::Config;
use crate::state::State;

/// Every global vitrine advertises on every backend (linux-dmabuf comes with the renderer).
/// The privileged ones are seen only by the clients `privileged` allows.
pub struct Globals {
    pub compositor: CompositorState,
    pub xdg_shell: XdgShellState,
    pub xdg_decoration: XdgDecorationState,
    pub layer_shell: WlrLayerShellState,
    pub shm: ShmState,
    pub data_device: DataDeviceState,
    pub primary_selection: PrimarySelectionState,
    pub output_manager: OutputManagerState,
    pub presentation: PresentationState,
    pub viewporter: ViewporterState,
    pub single_pixel_buffer: SinglePixelBufferState,
    pub content_type: ContentTypeState,
    pub activation: XdgActivationState,
    pub virtual_keyboard: VirtualKeyboardManagerState,
    pub text_input: TextInputManagerState,
    pub input_method: InputMethodManagerState,
}

impl Globals {
    pub fn new(dh: &DisplayHandle, config: &Config) -> Self {
        let xdg_shell = XdgShellState::new::<State>(dh);
        let version = config.compat.xdg_wm_base_version;
        if version < 6 {
            // smithay advertises version 6; replace its global with one of the configured version.
            dh.remove_global::<State>(xdg_shell.global());
            dh.create_global::<State, XdgWmBase, ()>(version, ());
            tracing::info!(version, "xdg_wm_base advertised at a lower version (compat.xdg_wm_base_version)");
        }
        screencopy::create_global(dh);
        colour_representation::create_global(dh);
        output_management::create_global(dh);
        virtual_pointer::create_global(dh);
        Globals {
            compositor: CompositorState::new_v6::<State>(dh),
            xdg_shell,
            xdg_decoration: XdgDecorationState::new::<State>(dh),
            layer_shell: WlrLayerShellState::new::<State>(dh),
            // NV12 is listed because GStreamer's waylandsink (1.22) negotiates a decoder's NV12
            // output against the wl_shm formats even though it then sends the decoder's
            // dmabufs, which go onto planes. An NV12 buffer in shared memory itself cannot be
            // composited by pixman: it is reported and not shown.
            shm: ShmState::new::<State>(dh, vec![smithay::reexports::wayland_server::protocol::wl_shm::Format::Nv12]),
            data_device: DataDeviceState::new::<State>(dh),
            primary_selection: PrimarySelectionState::new::<State>(dh),
            output_manager: OutputManagerState::new_with_xdg_output::<State>(dh),
            presentation: PresentationState::new::<State>(dh, libc::CLOCK_MONOTONIC as u32),
            viewporter: ViewporterState::new::<State>(dh),
            single_pixel_buffer: SinglePixelBufferState::new::<State>(dh),
            content_type: ContentTypeState::new::<State>(dh),
            activation: XdgActivationState::new::<State>(dh),
            virtual_keyboard: VirtualKeyboardManagerState::new::<State, _>(dh, privileged::is_privileged),
            text_input: TextInputManagerState::new::<State>(dh),
            input_method: InputMethodManagerState::new::<State, _>(dh, privileged::is_privileged),
        }
    }
}
