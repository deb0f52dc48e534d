//! vitrine as a window inside another Wayland (or X11) session, through smithay's winit backend:
//! resizable, input forwarded, composited with GLES.

use std::time::{Duration, Instant};

use smithay::backend::allocator::dmabuf::Dmabuf;
use smithay::backend::egl::EGLDevice;
use smithay::backend::renderer::damage::OutputDamageTracker;
use smithay::backend::renderer::gles::{GlesRenderer, GlesTexture};
use smithay::backend::renderer::{Color32F, ImportDma};
use smithay::backend::winit::{self, WinitEvent, WinitGraphicsBackend};
use smithay::output::{Mode, Output};
use smithay::reexports::calloop::timer::{TimeoutAction, Timer};
use smithay::reexports::winit::dpi::PhysicalSize;
use smithay::reexports::winit::window::Window as WinitWindow;
use smithay::utils::{Physical, Size, Transform};
use smithay::wayland::dmabuf::{DmabufFeedback, DmabufFeedbackBuilder};

use crate::cli::OutputSpec;
use crate::render::{capture, post_repaint, Painter, RgbaImage};
use crate::scene::Scene;
use crate::state::State;

pub struct Nested {
    window: WinitGraphicsBackend<GlesRenderer>,
    output: Option<Output>,
    damage: OutputDamageTracker,
    painter: Painter,
    refresh: Duration,
    seq: u64,
    /// (fourcc, modifier) pairs the GLES renderer imports.
    dmabuf_formats: Vec<(u32, u64)>,
}

impl Nested {
    /// Open the window and hook its events into the loop. The output is created here too.
    pub fn start(state: &mut State, spec: OutputSpec) -> Result<(), String> {
        // smithay's winit backend prefers a 10-bit EGL config; parents that composite in
        // software (weston's pixman renderer, KWin's virtual backend) show such a window as
        // blank. Mesa's driconf switch keeps it to 8 bits unless the user decided otherwise.
        if std::env::var_os("allow_rgb10_configs").is_none() {
            std::env::set_var("allow_rgb10_configs", "false");
            tracing::debug!("nested: 10-bit EGL configs disabled (allow_rgb10_configs=false)");
        }
        let attributes = WinitWindow::default_attributes()
            .with_inner_size(PhysicalSize::new(spec.width, spec.height))
            .with_title(format!("vitrine ({})", state.socket_name))
            .with_resizable(true)
            .with_visible(true);
        let (window, events) = winit::init_from_attributes::<GlesRenderer>(attributes)
            .map_err(|e| format!("cannot open a window in the parent session: {e}"))?;
        let size = window.window_size();
        let mut window = window;
        let dmabuf_formats =
            window.renderer().dmabuf_formats().iter().map(|f| (f.code as u32, u64::from(f.modifier))).collect();
        let refresh = Duration::from_secs_f64(1000.0 / spec.refresh_mhz as f64);
        let gl = crate::backend::drm::compose::gl_renderer_name(window.renderer());
        let software = ["softpipe", "llvmpipe", "swrast"].iter().any(|s| gl.contains(s));
        let painter = Painter::default();
        // A GPU samples decoded NV12 pictures itself; a software rasterizer gets them converted.
        painter.set_yuv_on_cpu(software);
        tracing::info!(gl_renderer = %gl, "nested: compositing with GLES");
        state.backend = crate::backend::Backend::Nested(Box::new(Nested {
            window,
            output: None,
            // GL's origin is bottom left: the damage tracker renders flipped for the window.
            damage: OutputDamageTracker::new(size, 1.0, Transform::Flipped180),
            painter,
            refresh,
            seq: 0,
            dmabuf_formats,
        }));
        let actual =
            OutputSpec { width: size.w.max(1) as u32, height: size.h.max(1) as u32, refresh_mhz: spec.refresh_mhz };
        let output = super::add_output(&state.display_handle, "WINIT-1", "nested window", actual, (0, 0).into());
        if let crate::backend::Backend::Nested(n) = &mut state.backend {
            n.output = Some(output.clone());
        }
        state.output_added(output);

        state
            .loop_handle
            .insert_source(events, |event, _, state| match event {
                WinitEvent::Resized { size, .. } => resized(state, size),
                WinitEvent::Input(event) => state.handle_input(event),
                WinitEvent::CloseRequested => {
                    tracing::info!("window closed by the parent session");
                    state.quit(0);
                }
                WinitEvent::Redraw | WinitEvent::Focus(_) => {}
            })
            .map_err(|e| format!("cannot watch the window's events: {e}"))?;
        state
            .loop_handle
            .insert_source(Timer::immediate(), move |deadline, _, state| {
                repaint(state);
                TimeoutAction::ToInstant((deadline + refresh).max(Instant::now()))
            })
            .map_err(|e| format!("cannot start the repaint timer: {e}"))?;
        Ok(())
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
        capture::<_, GlesTexture>(renderer, size, &elements, scene.background)
    }
}

fn resized(state: &mut State, size: Size<i32, Physical>) {
    let crate::backend::Backend::Nested(n) = &mut state.backend else {
        return;
    };
    let Some(output) = n.output.clone() else {
        return;
    };
    n.damage = OutputDamageTracker::new(size, 1.0, Transform::Flipped180);
    let refresh = output.current_mode().map(|m| m.refresh).unwrap_or(60_000);
    let mode = Mode { size, refresh };
    output.change_current_state(Some(mode), None, None, None);
    output.set_preferred(mode);
    tracing::info!(width = size.w, height = size.h, "window resized by the parent session");
    state.kiosk_relayout();
}

fn repaint(state: &mut State) {
    let crate::backend::Backend::Nested(n) = &state.backend else {
        return;
    };
    let Some(output) = n.output.clone() else {
        return;
    };
    let refresh = n.refresh;
    if !state.displays_on {
        return;
    }
    state.video_tick(Duration::ZERO, refresh);
    let scene = state.scene_for_output(&output);
    let now = state.clock.now();
    let crate::backend::Backend::Nested(n) = &mut state.backend else {
        return;
    };
    let age = n.window.buffer_age().unwrap_or(0);
    let damage = {
        let (renderer, mut framebuffer) = match n.window.bind() {
            Ok(bound) => bound,
            Err(err) => {
                tracing::error!(?err, "cannot bind the window");
                return;
            }
        };
        let elements = n.painter.elements(renderer, &scene, 1.0);
        match n.damage.render_output(renderer, &mut framebuffer, age, &elements, Color32F::from(scene.background)) {
            Ok(result) => result.damage.cloned(),
            Err(err) => {
                tracing::error!(?err, "repaint failed");
                None
            }
        }
    };
    if let Some(damage) = damage {
        if let Err(err) = n.window.submit(Some(&damage)) {
            tracing::error!(?err, "cannot present the window");
        }
    }
    n.seq += 1;
    post_repaint(&output, &scene, now, n.refresh, n.seq);
    state.display_heartbeat = Some(Instant::now());
    state.video_presented(scene.video(), Instant::now(), true);
}
