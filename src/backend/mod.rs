//! Backends turn scenes into pixels: `headless` composites into memory, `nested` into a window of
//! another Wayland (or X11) session. The DRM backend with its plane planner comes next.

pub mod drm;
pub mod headless;
pub mod libinput;
pub mod nested;

use std::path::PathBuf;

use smithay::backend::allocator::dmabuf::Dmabuf;
use smithay::output::{Mode, Output, PhysicalProperties, Scale, Subpixel};
use smithay::reexports::wayland_server::DisplayHandle;
use smithay::utils::{Logical, Point, Transform};
use smithay::wayland::dmabuf::DmabufFeedback;

use crate::cli::{BackendChoice, OutputSpec};
use crate::render::RgbaImage;
use crate::state::State;

pub use self::drm::Drm;
pub use headless::Headless;
pub use nested::Nested;

/// Which backend runs, decided once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Drm,
    Headless,
    Nested,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Drm => "drm",
            BackendKind::Headless => "headless",
            BackendKind::Nested => "nested",
        }
    }
}

/// The backend chosen, why, and for DRM the card to drive.
#[derive(Debug)]
pub struct Choice {
    pub kind: BackendKind,
    pub reason: String,
    pub card: Option<PathBuf>,
}

/// Pick a backend for `--backend`, with the reason that is logged. `drm` finds a card vitrine
/// can drive (atomic KMS, DRM master, a connected connector) or says why there is none.
pub fn choose(
    choice: BackendChoice,
    env: &dyn Fn(&str) -> Option<String>,
    drm: &dyn Fn() -> Result<PathBuf, String>,
) -> Result<Choice, String> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    let pick = |kind, reason: String| Ok(Choice { kind, reason, card: None });
    match choice {
        BackendChoice::Headless => pick(BackendKind::Headless, "--backend headless".into()),
        BackendChoice::Nested => pick(BackendKind::Nested, "--backend nested".into()),
        BackendChoice::Drm => {
            let card = drm()?;
            Ok(Choice {
                kind: BackendKind::Drm,
                reason: format!("--backend drm: {}", card.display()),
                card: Some(card),
            })
        }
        BackendChoice::Auto => {
            // Inside a desktop session the desktop owns the display: do not touch DRM there.
            let drm_result = if set("WAYLAND_DISPLAY").is_some() || set("DISPLAY").is_some() {
                Err("a desktop session is running".to_string())
            } else {
                drm()
            };
            if let Ok(card) = drm_result {
                Ok(Choice {
                    kind: BackendKind::Drm,
                    reason: format!("{} can be driven (DRM master, connected connector)", card.display()),
                    card: Some(card),
                })
            } else if let Some(display) = set("WAYLAND_DISPLAY") {
                pick(
                    BackendKind::Nested,
                    format!("WAYLAND_DISPLAY={display} is set: running as a window in that session"),
                )
            } else if let Some(display) = set("DISPLAY") {
                pick(BackendKind::Nested, format!("DISPLAY={display} is set: running as a window in that X11 session"))
            } else {
                let why = drm_result.err().unwrap_or_default();
                pick(BackendKind::Headless, format!("no desktop session and no usable DRM device ({why})"))
            }
        }
    }
}

pub enum Backend {
    Drm(Box<Drm>),
    Headless(Box<Headless>),
    Nested(Box<Nested>),
}

impl Backend {
    /// What the display path counted for the video audit (DRM only).
    pub fn display_stats(&self) -> Option<Vec<(&'static str, u64)>> {
        match self {
            Backend::Drm(d) => Some(vec![
                ("commits", d.stats.commits),
                ("test_commits", d.stats.test_commits),
                ("framebuffers_created", d.stats.video_framebuffers_created),
                ("frames_composited", d.stats.video_frames_composited),
            ]),
            _ => None,
        }
    }

    /// The painter compositing this backend's scenes (its video copy counters).
    pub fn painter(&self) -> &crate::render::Painter {
        match self {
            Backend::Drm(d) => d.painter(),
            Backend::Headless(h) => h.painter(),
            Backend::Nested(n) => n.painter(),
        }
    }

    pub fn kind(&self) -> BackendKind {
        match self {
            Backend::Drm(_) => BackendKind::Drm,
            Backend::Headless(_) => BackendKind::Headless,
            Backend::Nested(_) => BackendKind::Nested,
        }
    }

    /// Check that a client dmabuf can be used before the client may attach it.
    pub fn import_dmabuf(&mut self, dmabuf: &Dmabuf) -> Result<(), String> {
        match self {
            Backend::Drm(d) => d.import_dmabuf(dmabuf),
            Backend::Headless(_) => Err("the headless backend has no dmabuf import".into()),
            Backend::Nested(n) => n.import_dmabuf(dmabuf),
        }
    }

    /// Whether something (renderer or a plane) takes this format with this modifier.
    pub fn knows_modifier(&self, code: u32, modifier: u64) -> bool {
        match self {
            Backend::Drm(d) => d.knows_modifier(code, modifier),
            Backend::Headless(_) => false,
            Backend::Nested(n) => n.knows_modifier(code, modifier),
        }
    }

    /// The linux-dmabuf default feedback, or why there is none.
    pub fn dmabuf_feedback(&mut self) -> Result<DmabufFeedback, String> {
        match self {
            Backend::Drm(d) => d.dmabuf_feedback(),
            Backend::Headless(_) => Err("the headless backend composites with pixman and has no DRM device".into()),
            Backend::Nested(n) => n.dmabuf_feedback(),
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
    let mode = Mode { size: (spec.width as i32, spec.height as i32).into(), refresh: spec.refresh_mhz as i32 };
    output.change_current_state(Some(mode), Some(Transform::Normal), Some(Scale::Integer(1)), Some(location));
    output.set_preferred(mode);
    let global = output.create_global::<State>(state_dh);
    output.user_data().insert_if_missing(|| OutputGlobal(global));
    output
}

/// The wl_output global of an output, kept to remove it with the output.
struct OutputGlobal(smithay::reexports::wayland_server::backend::GlobalId);

impl State {
    /// Register an output created by a backend.
    pub fn output_added(&mut self, output: Output) {
        let loc = output.current_location();
        self.space.map_output(&output, loc);
        tracing::info!(output = %output.name(), mode = ?output.current_mode().map(|m| (m.size.w, m.size.h, m.refresh)), "output added");
        self.outputs.push(output);
        self.kiosk_relayout();
    }

    /// An output went away (its display was unplugged): clients are told, its windows move to
    /// the remaining outputs, and the video to the new first one.
    pub fn output_removed(&mut self, output: &Output) {
        self.space.unmap_output(output);
        self.outputs.retain(|o| o != output);
        if let Some(global) = output.user_data().get::<OutputGlobal>() {
            // Disabled first so clients binding it right now do not fail; removed a bit later.
            self.display_handle.disable_global::<State>(global.0.clone());
            let id = global.0.clone();
            let removed = self.loop_handle.insert_source(
                smithay::reexports::calloop::timer::Timer::from_duration(std::time::Duration::from_secs(2)),
                move |_, _, state| {
                    state.display_handle.remove_global::<State>(id.clone());
                    smithay::reexports::calloop::timer::TimeoutAction::Drop
                },
            );
            if removed.is_err() {
                tracing::warn!(output = %output.name(), "cannot schedule the removal of the wl_output global");
            }
        }
        tracing::info!(output = %output.name(), remaining = self.outputs.len(), "output removed");
        self.kiosk_relayout();
    }

    /// A screenshot of the named output (default: the first).
    pub fn screenshot(&mut self, output: Option<&str>) -> Result<(Output, RgbaImage), String> {
        let output = match output {
            Some(name) => self
                .output_by_name(name)
                .cloned()
                .ok_or_else(|| format!("no output named '{name}' (outputs: {})", self.output_names().join(", ")))?,
            None => self.outputs.first().cloned().ok_or("there is no output")?,
        };
        let scene = self.scene_for_output(&output);
        let image = match &mut self.backend {
            Backend::Drm(_) => Drm::screenshot(self, &output, &scene)?,
            Backend::Headless(h) => h.screenshot(&output, &scene)?,
            Backend::Nested(n) => n.screenshot(&output, &scene)?,
        };
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
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    fn no_drm() -> Result<PathBuf, String> {
        Err("no DRM card node in /dev/dri".into())
    }

    fn a_card() -> Result<PathBuf, String> {
        Ok(PathBuf::from("/dev/dri/card0"))
    }

    #[test]
    fn auto_prefers_drm_then_a_desktop_session_then_headless() {
        let c = choose(BackendChoice::Auto, &env_of(&[]), &a_card).unwrap();
        assert_eq!(c.kind, BackendKind::Drm);
        assert_eq!(c.card, Some(PathBuf::from("/dev/dri/card0")));
        // Inside a desktop session the desktop owns the display: nested, without touching DRM.
        let c = choose(BackendChoice::Auto, &env_of(&[("WAYLAND_DISPLAY", "wayland-0")]), &a_card).unwrap();
        assert_eq!(c.kind, BackendKind::Nested);
        assert!(c.reason.contains("wayland-0"), "{}", c.reason);
        let c = choose(BackendChoice::Auto, &env_of(&[("DISPLAY", ":0")]), &no_drm).unwrap();
        assert_eq!(c.kind, BackendKind::Nested);
        let c = choose(BackendChoice::Auto, &env_of(&[("WAYLAND_DISPLAY", "")]), &no_drm).unwrap();
        assert_eq!(c.kind, BackendKind::Headless);
        assert!(c.reason.contains("no DRM card node"), "{}", c.reason);
    }

    #[test]
    fn explicit_choice_wins() {
        let env = env_of(&[("WAYLAND_DISPLAY", "wayland-0")]);
        assert_eq!(choose(BackendChoice::Headless, &env, &a_card).unwrap().kind, BackendKind::Headless);
        let err = choose(BackendChoice::Drm, &env, &no_drm).unwrap_err();
        assert!(err.contains("no DRM card node"), "{err}");
    }
}
