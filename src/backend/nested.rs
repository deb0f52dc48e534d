//! vitrine as a window inside another Wayland (or X11) session, through smithay's winit backend:
//! resizable, input forwarded, composited with GLES.

use std::time::Instant;

use smithay::backend::allocator::dmabuf::Dmabuf;
use smithay::backend::egl::EGLDevice;
use smithay::backend::renderer::damage::OutputDamageTracker;
use smithay::backend::renderer::gles::{GlesRenderer, GlesTexture};
use smithay::backend::renderer::{Color32F, ImportDma};
use smithay::backend::winit::{self, WinitEvent, WinitGraphicsBackend};
use smithay::output::{Mode, Output};
use smithay::reexports::winit::dpi::PhysicalSize;
use smithay::reexports::winit::window::Window as WinitWindow;
use smithay::utils::{Physical, Size, Transform};
use smithay::wayland::dmabuf::{DmabufFeedback, DmabufFeedbackBuilder};

use super::BackendError;
use crate::cli::OutputSpec;
use crate::frames::Repaint;
use crate::image::RgbaImage;
use crate::render::{capture, post_repaint, Painter};
use crate::scene::Scene;
use crate::state::Core;

pub struct Nested {
    window: WinitGraphicsBackend<GlesRenderer>,
    output: Option<Output>,
    damage: OutputDamageTracker,
    painter: Painter,
    /// (fourcc, modifier) pairs the GLES renderer imports.
    dmabuf_formats: Vec<(u32, u64)>,
}

impl Nested {
    /// Open the window and hook its events into the loop. The output is created here too.
    pub fn start(core: &mut Core, spec: OutputSpec) -> Result<Nested, BackendError> {
        // smithay's winit backend prefers a 10-bit EGL config; parents that composite in
        // software (weston's pixman renderer, KWin's virtual backend) show such a window as
        // blank. Mesa's driconf switch keeps it to 8 bits unless the user decided otherwise.
        if std::env::var_os("allow_rgb10_configs").is_none() {
            std::env::set_var("allow_rgb10_configs", "false");
            tracing::debug!("nested: 10-bit EGL configs disabled (allow_rgb10_configs=false)");
        }
        let attributes = WinitWindow::default_attributes()
            .with_inner_size(PhysicalSize::new(spec.width, spec.height))
            .with_title(format!("vitrine ({})", core.socket_name))
            .with_resizable(true)
            .with_visible(true);
        let (window, events) = winit::init_from_attributes::<GlesRenderer>(attributes)
            .map_err(|e| BackendError::Window(format!("cannot open a window in the parent session: {e}")))?;
        let size = window.window_size();
        let mut window = window;
        let dmabuf_formats =
            window.renderer().dmabuf_formats().iter().map(|f| (f.code as u32, u64::from(f.modifier))).collect();
        let gl = crate::backend::drm::compose::gl_renderer_name(window.renderer());
        let software = ["softpipe", "llvmpipe", "swrast"].iter().any(|s| gl.contains(s));
        let painter = Painter::default();
        // A GPU samples decoded NV12 pictures itself; a software rasterizer gets them converted.
        painter.set_yuv_on_cpu(software);
        tracing::info!(gl_renderer = %gl, "nested: compositing with GLES");
        let actual =
            OutputSpec { width: size.w.max(1) as u32, height: size.h.max(1) as u32, refresh_mhz: spec.refresh_mhz };
        let output = super::add_output(&core.display_handle, "WINIT-1", "nested window", actual, (0, 0).into());
        core.loop_handle
            .insert_source(events, |event, _, state| match event {
                WinitEvent::Input(event) => state.handle_input(event),
                WinitEvent::Resized { size, .. } => {
                    if let crate::backend::Backend::Nested(n) = &mut state.backend {
                        n.resized(&mut state.core, size);
                    }
                }
                WinitEvent::CloseRequested => {
                    tracing::info!("window closed by the parent session");
                    state.core.quit(0);
                }
                WinitEvent::Redraw | WinitEvent::Focus(_) => {}
            })
            .map_err(|e| BackendError::Loop(format!("cannot watch the window's events: {e}")))?;
        let nested = Nested {
            window,
            output: Some(output.clone()),
            // GL's origin is bottom left: the damage tracker renders flipped for the window.
            damage: OutputDamageTracker::new(size, 1.0, Transform::Flipped180),
            painter,
            dmabuf_formats,
        };
        core.output_added(output, spec.refresh_mhz, false);
        Ok(nested)
    }

    pub fn painter(&self) -> &Painter {
        &self.painter
    }

    pub fn import_dmabuf(&mut self, dmabuf: &Dmabuf) -> Result<(), String> {
        self.window.renderer().import_dmabuf(dmabuf, None).map(|_| ()).map_err(|e| e.to_string())
    }

    pub fn knows_modifier(&self, code: u32, modifier: u64) -> bool {
        self.dmabuf_formats.iter().any(|(c, m)| *c == code && *m == modifier)
    }

    pub fn dmabuf_feedback(&mut self) -> Result<DmabufFeedback, String> {
        let renderer = self.window.renderer();
        let formats = renderer.dmabuf_formats();
        let device = EGLDevice::device_for_display(renderer.egl_context().display())
            .map_err(|e| format!("the parent's EGL display has no device: {e}"))?;
        let node = device
            .try_get_render_node()
            .ok()
            .flatten()
            .ok_or("the parent's EGL device has no DRM render node (software rendering)")?;
        DmabufFeedbackBuilder::new(node.dev_id(), formats)
            .build()
            .map_err(|e| format!("cannot build dmabuf feedback: {e}"))
    }

    pub fn screenshot(&mut self, _output: &Output, scene: &Scene) -> Result<RgbaImage, String> {
        let size = self.window.window_size();
        let renderer = self.window.renderer();
        let elements = self.painter.elements(renderer, scene, 1.0);
        capture::<_, GlesTexture>(renderer, size, Transform::Normal, &elements, scene.background)
    }
}

impl Nested {
    /// The parent resized the window: the output follows.
    fn resized(&mut self, core: &mut Core, size: Size<i32, Physical>) {
        let Some(output) = self.output.clone() else { return };
        self.damage = OutputDamageTracker::new(size, 1.0, Transform::Flipped180);
        let refresh = output.current_mode().map(|m| m.refresh).unwrap_or(60_000);
        let mode = Mode { size, refresh };
        output.change_current_state(Some(mode), None, None, None);
        output.set_preferred(mode);
        tracing::info!(width = size.w, height = size.h, "window resized by the parent session");
        core.output_changed(&output);
    }

    /// Composite the window for its virtual vblank at `at` and hand it to the parent.
    pub fn repaint(&mut self, core: &mut Core, output: &Output, at: Instant) -> Repaint {
        if !core.displays_on {
            return Repaint::Skipped;
        }
        let Some(clock) = core.frames.clock(output) else { return Repaint::Skipped };
        core.video_tick(output, at, clock.period());
        let scene = core.scene_for_output(output);
        let age = self.window.buffer_age().unwrap_or(0);
        let damage = {
            let (renderer, mut framebuffer) = match self.window.bind() {
                Ok(bound) => bound,
                Err(err) => {
                    tracing::error!(?err, "cannot bind the window");
                    return Repaint::Skipped;
                }
            };
            let elements = self.painter.elements(renderer, &scene, 1.0);
            match self.damage.render_output(
                renderer,
                &mut framebuffer,
                age,
                &elements,
                Color32F::from(scene.background),
            ) {
                Ok(result) => result.damage.cloned(),
                Err(err) => {
                    tracing::error!(?err, "repaint failed");
                    return Repaint::Skipped;
                }
            }
        };
        let Some(damage) = damage.filter(|d| !d.is_empty()) else { return Repaint::Unchanged };
        if let Err(err) = self.window.submit(Some(&damage)) {
            tracing::error!(?err, "cannot present the window");
            return Repaint::Skipped;
        }
        let seq = core.frames.get(output).map(|o| o.presented).unwrap_or(0);
        post_repaint(output, &scene, at, clock.period(), seq);
        core.video_presented(scene.video(), at, true);
        Repaint::Presented
    }
}
