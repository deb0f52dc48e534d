//! Virtual outputs composited with pixman into memory. They have no vblank of their own: the
//! frame scheduler gives them a virtual one, armed only while a repaint waits (see `frames`).
//! This is what CI and screenshots use.

use std::time::Instant;

use smithay::backend::allocator::Fourcc;
use smithay::backend::renderer::damage::OutputDamageTracker;
use smithay::backend::renderer::pixman::PixmanRenderer;
use smithay::backend::renderer::{Bind, Color32F, Offscreen};
use smithay::output::Output;
use smithay::reexports::pixman::Image;
use smithay::utils::{Physical, Size, Transform};

use super::BackendError;
use crate::cli::OutputSpec;
use crate::frames::Repaint;
use crate::image::RgbaImage;
use crate::render::{capture, post_repaint, Painter};
use crate::scene::Scene;
use crate::state::Core;

struct HeadlessOutput {
    output: Output,
    target: Image<'static, 'static>,
    damage: OutputDamageTracker,
    size: Size<i32, Physical>,
}

pub struct Headless {
    renderer: PixmanRenderer,
    painter: Painter,
    outputs: Vec<HeadlessOutput>,
}

impl Headless {
    pub fn new() -> Result<Self, BackendError> {
        let renderer = PixmanRenderer::new().map_err(|e| BackendError::Renderer(format!("pixman: {e}")))?;
        Ok(Headless { renderer, painter: Painter::default(), outputs: Vec::new() })
    }

    pub fn painter(&self) -> &Painter {
        &self.painter
    }

    /// Create the virtual outputs, side by side.
    pub fn create_outputs(&mut self, core: &mut Core, specs: &[OutputSpec]) -> Result<(), BackendError> {
        let mut x = 0;
        for (i, spec) in specs.iter().enumerate() {
            let name = format!("HEADLESS-{}", i + 1);
            let output = super::add_output(&core.display_handle, &name, "headless", *spec, (x, 0).into());
            x += spec.width as i32;
            let size: Size<i32, Physical> = (spec.width as i32, spec.height as i32).into();
            let target = self
                .renderer
                .create_buffer(Fourcc::Argb8888, (size.w, size.h).into())
                .map_err(|e| BackendError::Renderer(format!("cannot allocate {name}: {e}")))?;
            self.outputs.push(HeadlessOutput {
                output: output.clone(),
                target,
                damage: OutputDamageTracker::new(size, 1.0, Transform::Normal),
                size,
            });
            core.output_added(output, spec.refresh_mhz, false);
        }
        Ok(())
    }

    pub fn screenshot(&mut self, output: &Output, scene: &Scene) -> Result<RgbaImage, String> {
        let slot = self.outputs.iter().find(|o| &o.output == output).ok_or("unknown output")?;
        let size = slot.size;
        let elements = self.painter.elements(&mut self.renderer, scene, 1.0);
        capture::<_, Image<'static, 'static>>(&mut self.renderer, size, &elements, scene.background)
    }

    /// Composite `output` for its virtual vblank at `at`.
    pub fn repaint(&mut self, core: &mut Core, output: &Output, at: Instant) -> Repaint {
        if !core.displays_on {
            return Repaint::Skipped;
        }
        let Some(clock) = core.frames.clock(output) else { return Repaint::Skipped };
        core.video_tick(output, at, clock.period());
        let scene = core.scene_for_output(output);
        let Some(slot) = self.outputs.iter_mut().find(|o| &o.output == output) else { return Repaint::Skipped };
        let elements = self.painter.elements(&mut self.renderer, &scene, 1.0);
        let mut framebuffer = match self.renderer.bind(&mut slot.target) {
            Ok(fb) => fb,
            Err(err) => {
                tracing::error!(output = %output.name(), %err, "cannot bind the output buffer");
                return Repaint::Skipped;
            }
        };
        // The same buffer is reused every frame, so its age is always 1.
        let damaged = match slot.damage.render_output(
            &mut self.renderer,
            &mut framebuffer,
            1,
            &elements,
            Color32F::from(scene.background),
        ) {
            Ok(result) => result.damage.is_some_and(|d| !d.is_empty()),
            Err(err) => {
                tracing::error!(output = %output.name(), ?err, "repaint failed");
                return Repaint::Skipped;
            }
        };
        if !damaged {
            return Repaint::Unchanged;
        }
        let seq = core.frames.get(output).map(|o| o.presented).unwrap_or(0);
        post_repaint(output, &scene, at, clock.period(), seq);
        // Everything here is composited, pictures included.
        core.video_presented(scene.video(), at, true);
        Repaint::Presented
    }
}
