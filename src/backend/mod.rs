//! Backends turn scenes into pixels: `drm` drives the display controller (planes, atomic
//! commits), `headless` composites into memory, `nested` into a window of another Wayland (or
//! X11) session. The frame scheduler (`frames`) says when; a backend is given the rest of the
//! compositor as `&mut Core` and says what its repaint did.

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
use crate::frames::Repaint;
use crate::image::RgbaImage;
use crate::state::{Core, State};
use crate::wayland::output_management::{HeadInfo, HeadMode, HeadRequest, Lit};

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

/// Why a backend could not start or do what it was asked. DRM errors keep the errno, so callers
/// can tell a plan the hardware refused from a device that went away.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Drm(#[from] drm::DrmError),
    #[error("{0}")]
    Renderer(String),
    #[error("{0}")]
    Window(String),
    #[error("{0}")]
    Loop(String),
}

pub enum Backend {
    /// Before `run` has chosen and started one.
    None,
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

    /// Repaint `output` now; `at` is the (virtual) vblank it is for.
    pub fn repaint(&mut self, core: &mut Core, output: &Output, at: std::time::Instant) -> Repaint {
        match self {
            Backend::None => Repaint::Skipped,
            Backend::Drm(d) => d.repaint(core, output),
            Backend::Headless(h) => h.repaint(core, output, at),
            Backend::Nested(n) => n.repaint(core, output, at),
        }
    }

    /// The page flip of `output`'s commit never came (see `frames::FLIP_TIMEOUT`).
    pub fn flip_timed_out(&mut self, output: &Output) {
        if let Backend::Drm(d) = self {
            d.flip_timed_out(output);
        }
    }

    /// The CPU mappings and copies composition made of decoded pictures (video audit).
    pub fn copies(&self) -> (u64, u64) {
        match self {
            Backend::None => (0, 0),
            Backend::Drm(d) => d.painter().copies(),
            Backend::Headless(h) => h.painter().copies(),
            Backend::Nested(n) => n.painter().copies(),
        }
    }

    pub fn kind(&self) -> Option<BackendKind> {
        match self {
            Backend::None => None,
            Backend::Drm(_) => Some(BackendKind::Drm),
            Backend::Headless(_) => Some(BackendKind::Headless),
            Backend::Nested(_) => Some(BackendKind::Nested),
        }
    }

    pub fn name(&self) -> &'static str {
        self.kind().map(BackendKind::name).unwrap_or("none")
    }

    /// Check that a client dmabuf can be used before the client may attach it.
    pub fn import_dmabuf(&mut self, dmabuf: &Dmabuf) -> Result<(), String> {
        match self {
            Backend::Drm(d) => d.import_dmabuf(dmabuf),
            Backend::None | Backend::Headless(_) => Err("the headless backend has no dmabuf import".into()),
            Backend::Nested(n) => n.import_dmabuf(dmabuf),
        }
    }

    /// Whether something (renderer or a plane) takes this format with this modifier.
    pub fn knows_modifier(&self, code: u32, modifier: u64) -> bool {
        match self {
            Backend::Drm(d) => d.knows_modifier(code, modifier),
            Backend::None | Backend::Headless(_) => false,
            Backend::Nested(n) => n.knows_modifier(code, modifier),
        }
    }

    /// The linux-dmabuf default feedback, or why there is none.
    pub fn dmabuf_feedback(&mut self) -> Result<DmabufFeedback, String> {
        match self {
            Backend::Drm(d) => d.dmabuf_feedback(),
            Backend::None | Backend::Headless(_) => {
                Err("the headless backend composites with pixman and has no DRM device".into())
            }
            Backend::Nested(n) => n.dmabuf_feedback(),
        }
    }
}

impl Backend {
    /// The heads output management shows: every output, and the displays a client turned off.
    pub fn heads(&self, core: &Core) -> Vec<HeadInfo> {
        match self {
            Backend::None => Vec::new(),
            Backend::Drm(d) => d.output_heads(),
            Backend::Headless(h) => h.output_heads(),
            Backend::Nested(_) => core.outputs.iter().map(|o| head_of_output(o, Vec::new())).collect(),
        }
    }

    /// Apply what output management asks (with `test`, only check it). Either all of it is
    /// applied or none of it, with the reason.
    pub fn configure(&mut self, core: &mut Core, requests: &[HeadRequest], test: bool) -> Result<(), String> {
        match self {
            Backend::None => Err("no backend runs".into()),
            Backend::Drm(d) => d.configure(core, requests, test),
            Backend::Headless(h) => h.configure(core, requests, test),
            Backend::Nested(_) => {
                let heads = self.heads(core);
                // The window's size is the parent's to set; only "as it is" is taken.
                match requests.iter().find(|r| !unchanged(&heads, r)) {
                    None => Ok(()),
                    Some(r) => Err(format!("{}: the nested backend's output follows its window", r.name)),
                }
            }
        }
    }
}

/// Whether `request` leaves its head as `heads` has it.
fn unchanged(heads: &[HeadInfo], request: &HeadRequest) -> bool {
    let Some(head) = heads.iter().find(|h| h.name == request.name) else { return false };
    match (&request.on, head.lit) {
        (None, None) => true,
        (Some(s), Some(lit)) => {
            let mode = head.modes.get(lit.mode);
            s.mode.is_none_or(|(w, h, mhz)| {
                mode.is_some_and(|m| m.width == w && m.height == h && (mhz == 0 || m.refresh_mhz == mhz))
            }) && s.position.is_none_or(|p| p == lit.position)
                && s.transform.is_none_or(|t| t == lit.transform)
        }
        _ => false,
    }
}

/// How output management describes a head (smithay's words for an output's description).
pub fn head_description(make: &str, model: &str, name: &str) -> String {
    format!("{make} - {model} - {name}")
}

/// An output as output management shows it; `modes` besides its current one (which is added
/// when missing).
pub fn head_of_output(output: &Output, mut modes: Vec<HeadMode>) -> HeadInfo {
    let current = output.current_mode().map(|m| HeadMode {
        width: m.size.w.max(0) as u32,
        height: m.size.h.max(0) as u32,
        refresh_mhz: m.refresh.max(0) as u32,
        preferred: false,
    });
    let same =
        |a: &HeadMode, b: &HeadMode| a.width == b.width && a.height == b.height && a.refresh_mhz == b.refresh_mhz;
    let mut index = current.and_then(|c| modes.iter().position(|m| same(m, &c)));
    if let (None, Some(c)) = (index, current) {
        modes.push(c);
        index = Some(modes.len() - 1);
    }
    let props = output.physical_properties();
    let loc = output.current_location();
    HeadInfo {
        name: output.name(),
        description: output.description(),
        make: props.make,
        model: props.model,
        modes,
        lit: index.map(|mode| Lit { mode, position: (loc.x, loc.y), transform: output.current_transform() }),
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

/// Where a screenshot goes once it is there: at once, or when the display's writeback of the
/// next frame completes.
pub type Captured = Box<dyn FnOnce(&mut State, Result<(Output, RgbaImage), String>)>;

impl State {
    /// Capture what `output` (default: the first) shows and hand it to `done`. Nothing here
    /// waits: on DRM with a writeback connector the next frame's commit carries the capture, and
    /// `done` runs when its fence signals.
    pub fn screenshot(&mut self, output: Option<&str>, done: Captured) {
        let output = match self.core.output_or_first(output) {
            Ok(o) => o,
            Err(e) => return done(self, Err(e)),
        };
        let scene = self.core.scene_for_output(&output);
        let result = match &mut self.backend {
            Backend::None => Err("no backend runs".to_string()),
            Backend::Headless(h) => h.screenshot(&output, &scene),
            Backend::Nested(n) => n.screenshot(&output, &scene),
            Backend::Drm(d) => match d.capture(&mut self.core, &output, &scene, done) {
                Ok(()) => return,
                Err((done, result)) => return done(self, result.map(|image| (output, image))),
            },
        };
        done(self, result.map(|image| (output, image)))
    }
}

impl Core {
    /// Register an output a backend created; `real_vblank`: its frames are paced by page flips.
    pub fn output_added(&mut self, output: Output, refresh_mhz: u32, real_vblank: bool) {
        let loc = output.current_location();
        self.space.map_output(&output, loc);
        tracing::info!(output = %output.name(), mode = ?output.current_mode().map(|m| (m.size.w, m.size.h, m.refresh)), "output added");
        self.outputs.push(output.clone());
        self.frames.add(output.clone(), refresh_mhz, real_vblank);
        self.kiosk_relayout();
        self.queue_redraw(&output);
        self.defer(|state| state.refresh_output_heads());
    }

    /// An output's mode, position or rotation changed (output management, a reload, the parent
    /// resizing the nested window): the layout, the frame clock and output management follow.
    pub fn output_changed(&mut self, output: &Output) {
        self.space.map_output(output, output.current_location());
        if let Some(mode) = output.current_mode() {
            self.frames.set_refresh(output, mode.refresh.max(0) as u32);
        }
        tracing::info!(
            output = %output.name(),
            mode = ?output.current_mode().map(|m| (m.size.w, m.size.h, m.refresh)),
            transform = ?output.current_transform(),
            location = ?output.current_location(),
            "output changed"
        );
        self.kiosk_relayout();
        self.queue_redraw_all();
        self.schedule_video();
        self.defer(|state| state.refresh_output_heads());
    }

    /// An output went away (its display was unplugged): clients are told, its windows move to
    /// the remaining outputs, and the video to the new first one.
    pub fn output_removed(&mut self, output: &Output) {
        self.space.unmap_output(output);
        // Its layer surfaces have nowhere to be: they are closed (their clients may make new ones).
        let mut layers = smithay::desktop::layer_map_for_output(output);
        for layer in layers.layers().cloned().collect::<Vec<_>>() {
            layer.layer_surface().send_close();
            layers.unmap_layer(&layer);
        }
        drop(layers);
        self.outputs.retain(|o| o != output);
        self.frames_removed(output);
        if let Some(global) = output.user_data().get::<OutputGlobal>() {
            // Disabled first so clients binding it right now do not fail; removed a bit later.
            self.display_handle.disable_global::<State>(global.0.clone());
            let id = global.0.clone();
            let removed = self.loop_handle.insert_source(
                smithay::reexports::calloop::timer::Timer::from_duration(std::time::Duration::from_secs(2)),
                move |_, _, state| {
                    state.core.display_handle.remove_global::<State>(id.clone());
                    smithay::reexports::calloop::timer::TimeoutAction::Drop
                },
            );
            if removed.is_err() {
                tracing::warn!(output = %output.name(), "cannot schedule the removal of the wl_output global");
            }
        }
        tracing::info!(output = %output.name(), remaining = self.outputs.len(), "output removed");
        self.kiosk_relayout();
        self.queue_redraw_all();
        self.schedule_video();
        self.defer(|state| state.refresh_output_heads());
    }

    pub fn output_names(&self) -> Vec<String> {
        self.outputs.iter().map(|o| o.name()).collect()
    }

    /// The named output (default: the first), or why there is none.
    pub fn output_or_first(&self, name: Option<&str>) -> Result<Output, String> {
        match name {
            Some(name) => self
                .output_by_name(name)
                .cloned()
                .ok_or_else(|| format!("no output named '{name}' (outputs: {})", self.output_names().join(", "))),
            None => self.outputs.first().cloned().ok_or_else(|| "there is no output".to_string()),
        }
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
