//! Virtual outputs composited with pixman into memory. They have no vblank of their own: the
//! frame scheduler gives them a virtual one, armed only while a repaint waits (see `frames`).
//! This is what CI and screenshots use.

use std::time::Instant;

use smithay::backend::allocator::Fourcc;
use smithay::backend::renderer::damage::OutputDamageTracker;
use smithay::backend::renderer::pixman::PixmanRenderer;
use smithay::backend::renderer::{Bind, Color32F, Offscreen};
use smithay::output::{Mode, Output};
use smithay::reexports::pixman::Image;
use smithay::utils::{Physical, Point, Size, Transform};

use super::BackendError;
use crate::cli::OutputSpec;
use crate::frames::Repaint;
use crate::image::RgbaImage;
use crate::render::{capture, post_repaint, Painter};
use crate::scene::Scene;
use crate::state::Core;
use crate::wayland::output_management::{HeadInfo, HeadMode, HeadRequest};

struct HeadlessOutput {
    output: Output,
    target: Image<'static, 'static>,
    damage: OutputDamageTracker,
    /// The buffer's size (the mode's; a turned output is upright in the layout only).
    size: Size<i32, Physical>,
    /// The mode it was started with (`--output`), offered as its preferred mode.
    spec: OutputSpec,
}

pub struct Headless {
    renderer: PixmanRenderer,
    painter: Painter,
    outputs: Vec<HeadlessOutput>,
    /// Outputs a client turned off (output management), by name, with their starting mode.
    off: Vec<(String, OutputSpec)>,
}

/// The largest virtual output a client may ask for (a 16384x16384 buffer is 1 GiB).
const LARGEST: u32 = 8192;

impl Headless {
    pub fn new() -> Result<Self, BackendError> {
        let renderer = PixmanRenderer::new().map_err(|e| BackendError::Renderer(format!("pixman: {e}")))?;
        Ok(Headless { renderer, painter: Painter::default(), outputs: Vec::new(), off: Vec::new() })
    }

    pub fn painter(&self) -> &Painter {
        &self.painter
    }

    /// Create the virtual outputs, side by side.
    pub fn create_outputs(&mut self, core: &mut Core, specs: &[OutputSpec]) -> Result<(), BackendError> {
        for (i, spec) in specs.iter().enumerate() {
            let name = format!("HEADLESS-{}", i + 1);
            self.light(core, &name, *spec, None).map_err(BackendError::Renderer)?;
        }
        Ok(())
    }

    /// Create the output `name` at `spec`'s mode, at `at` (default: right of the others).
    fn light(&mut self, core: &mut Core, name: &str, spec: OutputSpec, at: Option<(i32, i32)>) -> Result<(), String> {
        let x = self
            .outputs
            .iter()
            .filter_map(|o| core.space.output_geometry(&o.output))
            .map(|g| g.loc.x + g.size.w)
            .max()
            .unwrap_or(0);
        let size: Size<i32, Physical> = (spec.width as i32, spec.height as i32).into();
        let target = self
            .renderer
            .create_buffer(Fourcc::Argb8888, (size.w, size.h).into())
            .map_err(|e| format!("cannot allocate {name}: {e}"))?;
        let output = super::add_output(&core.display_handle, name, "headless", spec, at.unwrap_or((x, 0)).into());
        self.outputs.push(HeadlessOutput {
            output: output.clone(),
            target,
            damage: OutputDamageTracker::new(size, 1.0, Transform::Normal),
            size,
            spec,
        });
        core.output_added(output, spec.refresh_mhz, false);
        Ok(())
    }

    /// The outputs and those turned off, as output management shows them.
    pub fn output_heads(&self) -> Vec<HeadInfo> {
        let preferred = |spec: &OutputSpec| HeadMode {
            width: spec.width,
            height: spec.height,
            refresh_mhz: spec.refresh_mhz,
            preferred: true,
        };
        let mut heads: Vec<HeadInfo> =
            self.outputs.iter().map(|o| super::head_of_output(&o.output, vec![preferred(&o.spec)])).collect();
        for (name, spec) in &self.off {
            heads.push(HeadInfo {
                name: name.clone(),
                description: super::head_description("vitrine", "headless", name),
                make: "vitrine".into(),
                model: "headless".into(),
                modes: vec![preferred(spec)],
                lit: None,
            });
        }
        heads.sort_by(|a, b| a.name.cmp(&b.name));
        heads
    }

    /// Turn virtual outputs on and off, give them any mode (they have no list of their own
    /// beyond the one they started with), place and turn them.
    pub fn configure(&mut self, core: &mut Core, requests: &[HeadRequest], test: bool) -> Result<(), String> {
        for r in requests {
            let known =
                self.outputs.iter().any(|o| o.output.name() == r.name) || self.off.iter().any(|o| o.0 == r.name);
            if !known {
                return Err(format!("{}: no such output", r.name));
            }
            if let Some((w, h, _)) = r.on.as_ref().and_then(|s| s.mode) {
                if w > LARGEST || h > LARGEST {
                    return Err(format!("{}: {w}x{h} is larger than {LARGEST}x{LARGEST}", r.name));
                }
            }
        }
        if test {
            return Ok(());
        }
        // Off first, so that what is turned on may take their place.
        for r in requests.iter().filter(|r| r.on.is_none()) {
            if let Some(i) = self.outputs.iter().position(|o| o.output.name() == r.name) {
                let gone = self.outputs.remove(i);
                core.output_removed(&gone.output);
                self.off.push((r.name.clone(), gone.spec));
            }
        }
        for r in requests {
            let Some(settings) = &r.on else { continue };
            if let Some(i) = self.off.iter().position(|o| o.0 == r.name) {
                let (name, spec) = self.off.remove(i);
                self.light(core, &name, spec, settings.position)?;
            }
            let Some(slot) = self.outputs.iter_mut().find(|o| o.output.name() == r.name) else { continue };
            let output = slot.output.clone();
            let mode = settings.mode.map(|(w, h, mhz)| Mode {
                size: (w as i32, h as i32).into(),
                refresh: if mhz == 0 { slot.spec.refresh_mhz as i32 } else { mhz as i32 },
            });
            if let Some(mode) = mode.filter(|m| Some(*m) != output.current_mode()) {
                slot.target = self
                    .renderer
                    .create_buffer(Fourcc::Argb8888, (mode.size.w, mode.size.h).into())
                    .map_err(|e| format!("cannot allocate {}: {e}", r.name))?;
                slot.size = (mode.size.w, mode.size.h).into();
            }
            let location = settings.position.map(Point::from);
            output.change_current_state(mode, settings.transform, None, location);
            slot.damage = OutputDamageTracker::from_output(&output);
            core.output_changed(&output);
        }
        Ok(())
    }

    pub fn screenshot(&mut self, output: &Output, scene: &Scene) -> Result<RgbaImage, String> {
        let slot = self.outputs.iter().find(|o| &o.output == output).ok_or("unknown output")?;
        let size = slot.size;
        let elements = self.painter.elements(&mut self.renderer, scene, 1.0);
        let transform = output.current_transform();
        capture::<_, Image<'static, 'static>>(&mut self.renderer, size, transform, &elements, scene.background)
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
