//! Backends turn scenes into pixels: `headless` composites into memory, `nested` into a window of
//! another Wayland (or X11) session. The DRM backend with its plane planner comes next.

pub mod headless;
pub mod nested;

use smithay::backend::allocator::dmabuf::Dmabuf;
use smithay::output::{Mode, Output, PhysicalProperties, Scale, Subpixel};
use smithay::reexports::wayland_server::DisplayHandle;
use smithay::utils::{Logical, Point, Transform};
use smithay::wayland::dmabuf::DmabufFeedback;

use crate::cli::{BackendChoice, OutputSpec};
use crate::render::RgbaImage;
use crate::scene::Scene;
use crate::state::State;

pub use headless::Headless;
pub use nested::Nested;

/// Which backend runs, decided once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Headless,
    Nested,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Headless => "headless",
            BackendKind::Nested => "nested",
        }
    }
}

/// Pick a backend for `--backend`, with the reason that is logged.
pub fn choose(
    choice: BackendChoice,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(BackendKind, String), String> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    match choice {
        BackendChoice::Headless => Ok((BackendKind::Headless, "--backend headless".into())),
        BackendChoice::Nested => Ok((BackendKind::Nested, "--backend nested".into())),
        BackendChoice::Drm => Err(
            "the DRM backend is not part of this build yet; use --backend headless or nested"
                .into(),
        ),
        BackendChoice::Auto => {
            if let Some(display) = set("WAYLAND_DISPLAY") {
                Ok((
                    BackendKind::Nested,
                    format!(
                        "WAYLAND_DISPLAY={display} is set: running as a window in that session"
                    ),
                ))
            } else if let Some(display) = set("DISPLAY") {
                Ok((
                    BackendKind::Nested,
                    format!("DISPLAY={display} is set: running as a window in that X11 session"),
                ))
            } else {
                Ok((
                    BackendKind::Headless,
                    "no desktop session (WAYLAND_DISPLAY and DISPLAY unset) and no DRM backend in this build".into(),
                ))
            }
        }
    }
}

pub enum Backend {
    Headless(Headless),
    Nested(Box<Nested>),
}

impl Backend {
    pub fn kind(&self) -> BackendKind {
        match self {
            Backend::Headless(_) => BackendKind::Headless,
            Backend::Nested(_) => BackendKind::Nested,
        }
    }

    /// Check that a client dmabuf can be used before the client may attach it.
    pub fn import_dmabuf(&mut self, dmabuf: &Dmabuf) -> Result<(), String> {
        match self {
            Backend::Headless(_) => Err("the headless backend has no dmabuf import".into()),
            Backend::Nested(n) => n.import_dmabuf(dmabuf),
        }
    }

    /// The linux-dmabuf default feedback, or why there is none.
    pub fn dmabuf_feedback(&mut self) -> Result<DmabufFeedback, String> {
        match self {
            Backend::Headless(_) => {
                Err("the headless backend composites with pixman and has no DRM device".into())
            }
            Backend::Nested(n) => n.dmabuf_feedback(),
        }
    }

    /// What `output` shows, composited by vitrine.
    pub fn screenshot(&mut self, output: &Output, scene: &Scene) -> Result<RgbaImage, String> {
        match self {
            Backend::Headless(h) => h.screenshot(output, scene),
            Backend::Nested(n) => n.screenshot(output, scene),
        }
    }
}

/// Create an output, advertise it as wl_output and put it into the layout.
pub fn add_output(
    state_dh: &DisplayHandle,
    name: &str,
    model: &str,
    spec: OutputSpec,
    location: Point<i32, Logical>,
) -> Output {
    let output = Output::new(
        name.to_string(),
        PhysicalProperties {
            size: (0, 0).into(),
            subpixel: Subpixel::Unknown,
            make: "vitrine".into(),
            model: model.into(),
        },
    );
    let mode = Mode {
        size: (spec.width as i32, spec.height as i32).into(),
        refresh: spec.refresh_mhz as i32,
    };
    output.change_current_state(
        Some(mode),
        Some(Transform::Normal),
        Some(Scale::Integer(1)),
        Some(location),
    );
    output.set_preferred(mode);
    output.create_global::<State>(state_dh);
    output
}

impl State {
    /// Register an output created by a backend.
    pub fn output_added(&mut self, output: Output) {
        let loc = output.current_location();
        self.space.map_output(&output, loc);
        tracing::info!(output = %output.name(), mode = ?output.current_mode().map(|m| (m.size.w, m.size.h, m.refresh)), "output added");
        self.outputs.push(output);
        self.kiosk_relayout();
    }

    /// A screenshot of the named output (default: the first).
    pub fn screenshot(&mut self, output: Option<&str>) -> Result<(Output, RgbaImage), String> {
        let output = match output {
            Some(name) => self.output_by_name(name).cloned().ok_or_else(|| {
                format!(
                    "no output named '{name}' (outputs: {})",
                    self.output_names().join(", ")
                )
            })?,
            None => self.outputs.first().cloned().ok_or("there is no output")?,
        };
        let scene = self.scene_for_output(&output);
        let image = self.backend.screenshot(&output, &scene)?;
        Ok((output, image))
    }

    pub fn output_names(&self) -> Vec<String> {
        self.outputs.iter().map(|o| o.name()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn auto_prefers_a_desktop_session_then_headless() {
        let (kind, why) = choose(
            BackendChoice::Auto,
            &env_of(&[("WAYLAND_DISPLAY", "wayland-0")]),
        )
        .unwrap();
        assert_eq!(kind, BackendKind::Nested);
        assert!(why.contains("wayland-0"), "{why}");
        let (kind, _) = choose(BackendChoice::Auto, &env_of(&[("DISPLAY", ":0")])).unwrap();
        assert_eq!(kind, BackendKind::Nested);
        let (kind, why) = choose(BackendChoice::Auto, &env_of(&[("WAYLAND_DISPLAY", "")])).unwrap();
        assert_eq!(kind, BackendKind::Headless);
        assert!(why.contains("WAYLAND_DISPLAY"), "{why}");
    }

    #[test]
    fn explicit_choice_wins() {
        let env = env_of(&[("WAYLAND_DISPLAY", "wayland-0")]);
        assert_eq!(
            choose(BackendChoice::Headless, &env).unwrap().0,
            BackendKind::Headless
        );
        assert!(choose(BackendChoice::Drm, &env).is_err());
    }
}
