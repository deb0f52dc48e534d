//! Virtual outputs composited with pixman into memory, repainted by a timer at each output's
//! refresh rate. This is what CI and screenshots use.

use std::time::{Duration, Instant};

use smithay::backend::allocator::Fourcc;
use smithay::backend::renderer::damage::OutputDamageTracker;
use smithay::backend::renderer::pixman::PixmanRenderer;
use smithay::backend::renderer::{Bind, Color32F, Offscreen};
use smithay::output::Output;
use smithay::reexports::calloop::timer::{TimeoutAction, Timer};
use smithay::reexports::calloop::LoopHandle;
use smithay::reexports::pixman::Image;
use smithay::utils::{Physical, Size, Transform};

use crate::cli::OutputSpec;
use crate::render::{capture, post_repaint, Painter, RgbaImage};
use crate::scene::Scene;
use crate::state::State;

struct HeadlessOutput {
    output: Output,
    target: Image<'static, 'static>,
    damage: OutputDamageTracker,
    size: Size<i32, Physical>,
    refresh: Duration,
    seq: u64,
}

pub struct Headless {
    renderer: PixmanRenderer,
    painter: Painter,
    outputs: Vec<HeadlessOutput>,
}

impl Headless {
    pub fn new() -> Result<Self, String> {
        let renderer = PixmanRenderer::new().map_err(|e| format!("cannot create the pixman renderer: {e}"))?;
        Ok(Headless { renderer, painter: Painter::default(), outputs: Vec::new() })
    }

    pub fn painter(&self) -> &Painter {
        &self.painter
    }

    /// Create the virtual outputs and their repaint timers.
    pub fn create_outputs(state: &mut State, specs: &[OutputSpec]) -> Result<(), String> {
        let mut x = 0;
        for (i, spec) in specs.iter().enumerate() {
            let name = format!("HEADLESS-{}", i + 1);
            let output = super::add_output(&state.display_handle, &name, "headless", *spec, (x, 0).into());
            x += spec.width as i32;
            let crate::backend::Backend::Headless(h) = &mut state.backend else {
                return Err("not the headless backend".into());
            };
            let size: Size<i32, Physical> = (spec.width as i32, spec.height as i32).into();
            let target = h
                .renderer
                .create_buffer(Fourcc::Argb8888, (size.w, size.h).into())
                .map_err(|e| format!("cannot allocate {name}: {e}"))?;
            let refresh = Duration::from_secs_f64(1000.0 / spec.refresh_mhz as f64);
            h.outputs.push(HeadlessOutput {
                output: output.clone(),
                target,
                damage: OutputDamageTracker::new(size, 1.0, Transform::Normal),
                size,
                refresh,
                seq: 0,
            });
            state.output_added(output);
            start_repaint_timer(&state.loop_handle, name, refresh);
        }
        Ok(())
    }

    pub fn screenshot(&mut self, output: &Output, scene: &Scene) -> Result<RgbaImage, String> {
        let slot = self.outputs.iter().find(|o| &o.output == output).ok_or("unknown output")?;
        let size = slot.size;
        let elements = self.painter.elements(&mut self.renderer, scene, 1.0);
        capture::<_, Image<'static, 'static>>(&mut self.renderer, size, &elements, scene.background)
    }
}

fn start_repaint_timer(handle: &LoopHandle<'static, State>, name: String, refresh: Duration) {
    let result = handle.insert_source(Timer::immediate(), move |deadline, _, state| {
        repaint(state, &name);
        // Keep the cadence, but never try to catch up on missed ticks.
        let next = (deadline + refresh).max(Instant::now());
        TimeoutAction::ToInstant(next)
    });
    if let Err(err) = result {
        tracing::error!(%err, "cannot start the repaint timer");
    }
}

fn repaint(state: &mut State, name: &str) {
    let Some(output) = state.output_by_name(name).cloned() else {
        return;
    };
    if !state.displays_on {
        return;
    }
    let refresh = match &state.backend {
        crate::backend::Backend::Headless(h) => h.outputs.iter().find(|o| o.output == output).map(|o| o.refresh),
        _ => None,
    };
    state.video_tick(Duration::ZERO, refresh.unwrap_or(Duration::from_millis(16)));
    let scene = state.scene_for_output(&output);
    let now = state.clock.now();
    let crate::backend::Backend::Headless(h) = &mut state.backend else {
        return;
    };
    let Some(slot) = h.outputs.iter_mut().find(|o| o.output == output) else {
        return;
    };
    let elements = h.painter.elements(&mut h.renderer, &scene, 1.0);
    let mut framebuffer = match h.renderer.bind(&mut slot.target) {
        Ok(fb) => fb,
        Err(err) => {
            tracing::error!(output = name, %err, "cannot bind the output buffer");
            return;
        }
    };
    // The same buffer is reused every frame, so its age is always 1.
    if let Err(err) =
        slot.damage.render_output(&mut h.renderer, &mut framebuffer, 1, &elements, Color32F::from(scene.background))
    {
        tracing::error!(output = name, ?err, "repaint failed");
    }
    slot.seq += 1;
    post_repaint(&output, &scene, now, slot.refresh, slot.seq);
    state.display_heartbeat = Some(Instant::now());
    // Everything here is composited, pictures included.
    state.video_presented(scene.video(), Instant::now(), true);
}
