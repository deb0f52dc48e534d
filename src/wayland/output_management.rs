//! wlr-output-management (privileged): `wlr-randr` and `kanshi` list the heads (every display
//! vitrine lights, and those a client turned off), their modes, and change the mode, position and
//! rotation of each and which are on. A configuration is checked whole before anything changes
//! (on DRM the kernel tests the new mode), then applied by the backend through the same path as a
//! reload of `[drm] mode` and `rotation`; refused, nothing changes and the reason is logged.
//!
//! What clients see is the backend's own account of its heads (`Backend::heads`), sent again to
//! every manager with a new serial whenever it changes: a configuration applied, a display
//! plugged in or out, a reload.

use std::sync::Mutex;

use smithay::reexports::wayland_protocols_wlr::output_management::v1::server::{
    zwlr_output_configuration_head_v1::{self, ZwlrOutputConfigurationHeadV1},
    zwlr_output_configuration_v1::{self, ZwlrOutputConfigurationV1},
    zwlr_output_head_v1::{self, ZwlrOutputHeadV1},
    zwlr_output_manager_v1::{self, ZwlrOutputManagerV1},
    zwlr_output_mode_v1::{self, ZwlrOutputModeV1},
};
use smithay::reexports::wayland_server::backend::ClientId;
use smithay::reexports::wayland_server::protocol::wl_output;
use smithay::reexports::wayland_server::WEnum;
use smithay::reexports::wayland_server::{Client, DataInit, Dispatch, DisplayHandle, GlobalDispatch, New, Resource};
use smithay::utils::Transform;

use crate::state::State;

const VERSION: u32 = 4;
/// zwlr_output_mode_v1 stops at version 3 in the protocol.
const MODE_VERSION: u32 = 3;

/// The zwlr_output_manager_v1 global, seen by privileged clients only.
pub fn create_global(dh: &DisplayHandle) {
    dh.create_global::<State, ZwlrOutputManagerV1, ()>(VERSION, ());
}

/// A mode a head offers: its size in pixels and refresh rate in mHz.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadMode {
    pub width: u32,
    pub height: u32,
    pub refresh_mhz: u32,
    pub preferred: bool,
}

impl HeadMode {
    pub fn describe(&self) -> String {
        format!("{}x{}@{:.3}", self.width, self.height, self.refresh_mhz as f64 / 1000.0)
    }
}

/// A lit head's state: its mode (an index into the head's modes), where it is in the layout and
/// how its panel is turned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lit {
    pub mode: usize,
    pub position: (i32, i32),
    pub transform: Transform,
}

/// A display as output management shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadInfo {
    pub name: String,
    pub description: String,
    pub make: String,
    pub model: String,
    pub modes: Vec<HeadMode>,
    /// None: turned off by a client.
    pub lit: Option<Lit>,
}

/// What a configuration asks of a head that is to be on; None: as it is now.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HeadSettings {
    /// Width, height and refresh in mHz (0: any refresh).
    pub mode: Option<(u32, u32, u32)>,
    /// The mode was given as numbers (set_custom_mode), not picked from the head's list.
    pub custom: bool,
    pub position: Option<(i32, i32)>,
    pub transform: Option<Transform>,
    pub scale: Option<f64>,
    pub adaptive_sync: Option<bool>,
}

/// A configuration's word on one head: off (None), or on with these settings.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadRequest {
    pub name: String,
    pub on: Option<HeadSettings>,
}

/// The settings vitrine cannot honour on any backend, or None.
pub fn unsupported(requests: &[HeadRequest]) -> Option<String> {
    if !requests.iter().any(|r| r.on.is_some()) {
        return Some(
            "every display would be off: at least one stays on (`vitrine msg displays off` blanks them for a while)"
                .into(),
        );
    }
    for (name, s) in requests.iter().filter_map(|r| r.on.as_ref().map(|s| (&r.name, s))) {
        if let Some(scale) = s.scale.filter(|s| (*s - 1.0).abs() > 1e-6) {
            return Some(format!("{name}: scale {scale}: vitrine draws every output at scale 1"));
        }
        if s.adaptive_sync == Some(true) {
            return Some(format!("{name}: adaptive sync is not offered"));
        }
        if let Some(t) = s.transform.filter(|t| crate::rotation::Rotation::from_transform(*t).transform() != *t) {
            return Some(format!("{name}: transform {t:?}: vitrine turns outputs, it does not mirror them"));
        }
    }
    None
}

/// A head as one manager was told about it.
struct SentHead {
    name: String,
    resource: ZwlrOutputHeadV1,
    modes: Vec<ZwlrOutputModeV1>,
}

struct Manager {
    resource: ZwlrOutputManagerV1,
    heads: Vec<SentHead>,
}

/// The managers bound and what they were told.
pub struct OutputManagement {
    /// The serial of the state last sent; starts at 1 (wlr-randr waits while it is 0).
    serial: u32,
    heads: Vec<HeadInfo>,
    managers: Vec<Manager>,
    /// Configurations applied and refused (`stats`).
    pub applied: u64,
    pub refused: u64,
}

impl Default for OutputManagement {
    fn default() -> Self {
        OutputManagement { serial: 1, heads: Vec::new(), managers: Vec::new(), applied: 0, refused: 0 }
    }
}

impl OutputManagement {
    /// The backend's heads are now `heads`: every manager is told what changed, with a new serial.
    pub fn update(&mut self, dh: &DisplayHandle, heads: Vec<HeadInfo>) {
        if heads == self.heads {
            return;
        }
        self.serial = self.serial.wrapping_add(1).max(1);
        let old = std::mem::replace(&mut self.heads, heads);
        for manager in &mut self.managers {
            send_changes(dh, manager, &old, &self.heads);
            manager.resource.done(self.serial);
        }
    }

    fn forget(&mut self, manager: &ZwlrOutputManagerV1) {
        self.managers.retain(|m| &m.resource != manager);
    }
}

/// Tell one manager the difference between `old` and `new`.
fn send_changes(dh: &DisplayHandle, manager: &mut Manager, old: &[HeadInfo], new: &[HeadInfo]) {
    // Heads gone, or whose modes changed (mode objects cannot be edited): finished; the latter
    // come back as new heads below.
    manager.heads.retain(|sent| {
        let now = new.iter().find(|h| h.name == sent.name);
        let before = old.iter().find(|h| h.name == sent.name);
        let keep = matches!((now, before), (Some(n), Some(b)) if n.modes == b.modes);
        if !keep {
            for mode in &sent.modes {
                mode.finished();
            }
            sent.resource.finished();
        }
        keep
    });
    for head in new {
        match manager.heads.iter().find(|s| s.name == head.name) {
            Some(sent) => send_state(sent, head, old.iter().find(|h| h.name == head.name)),
            None => {
                if let Some(sent) = introduce(dh, &manager.resource, head) {
                    manager.heads.push(sent);
                }
            }
        }
    }
}

/// A new head object for `manager`, with everything about the head.
fn introduce(dh: &DisplayHandle, manager: &ZwlrOutputManagerV1, head: &HeadInfo) -> Option<SentHead> {
    let client = manager.client()?;
    let version = manager.version();
    let data = HeadData { name: head.name.clone() };
    let resource = client.create_resource::<ZwlrOutputHeadV1, HeadData, State>(dh, version, data).ok()?;
    manager.head(&resource);
    resource.name(head.name.clone());
    resource.description(head.description.clone());
    let mut modes = Vec::new();
    for mode in &head.modes {
        let data = ModeData { head: head.name.clone(), mode: *mode };
        let Ok(m) = client.create_resource::<ZwlrOutputModeV1, ModeData, State>(dh, version.min(MODE_VERSION), data)
        else {
            continue;
        };
        resource.mode(&m);
        m.size(mode.width as i32, mode.height as i32);
        if mode.refresh_mhz > 0 {
            m.refresh(mode.refresh_mhz as i32);
        }
        if mode.preferred {
            m.preferred();
        }
        modes.push(m);
    }
    if version >= 2 {
        resource.make(head.make.clone());
        resource.model(head.model.clone());
    }
    let sent = SentHead { name: head.name.clone(), resource, modes };
    send_state(&sent, head, None);
    if version >= 4 {
        sent.resource.adaptive_sync(zwlr_output_head_v1::AdaptiveSyncState::Disabled);
    }
    Some(sent)
}

/// The head's on/off state, mode, position and transform: all of it for a head just introduced
/// (`before` None), else what differs from `before`.
fn send_state(sent: &SentHead, head: &HeadInfo, before: Option<&HeadInfo>) {
    let was = before.and_then(|b| b.lit);
    let Some(lit) = head.lit else {
        if before.is_none() || was.is_some() {
            sent.resource.enabled(0);
        }
        return;
    };
    let lit_now = was.is_none();
    if lit_now {
        sent.resource.enabled(1);
    }
    if lit_now || was.is_some_and(|w| w.mode != lit.mode) {
        if let Some(mode) = sent.modes.get(lit.mode) {
            sent.resource.current_mode(mode);
        }
    }
    if lit_now || was.is_some_and(|w| w.position != lit.position) {
        sent.resource.position(lit.position.0, lit.position.1);
    }
    if lit_now || was.is_some_and(|w| w.transform != lit.transform) {
        sent.resource.transform(wl_output::Transform::from(lit.transform));
    }
    if lit_now {
        sent.resource.scale(1.0);
    }
}

/// A head object's head.
pub struct HeadData {
    name: String,
}

/// A mode object's head and mode.
pub struct ModeData {
    head: String,
    mode: HeadMode,
}

/// A configuration being put together.
#[derive(Default)]
pub struct ConfigData {
    inner: Mutex<ConfigInner>,
}

#[derive(Default)]
struct ConfigInner {
    serial: u32,
    /// Each head named, with its configuration object when it is to be on.
    heads: Vec<(String, Option<ZwlrOutputConfigurationHeadV1>)>,
    /// Applied or tested: no more requests.
    used: bool,
}

/// One head's settings in a configuration.
pub struct ConfigHeadData {
    head: String,
    settings: Mutex<HeadSettings>,
}

impl GlobalDispatch<ZwlrOutputManagerV1, ()> for State {
    fn bind(
        state: &mut State,
        dh: &DisplayHandle,
        _: &Client,
        resource: New<ZwlrOutputManagerV1>,
        _: &(),
        init: &mut DataInit<'_, State>,
    ) {
        let resource = init.init(resource, ());
        state.refresh_output_heads();
        let om = &mut state.core.output_management;
        let heads = om.heads.iter().filter_map(|h| introduce(dh, &resource, h)).collect();
        resource.done(om.serial);
        om.managers.push(Manager { resource, heads });
    }

    fn can_view(client: Client, _: &()) -> bool {
        super::privileged::is_privileged(&client)
    }
}

impl Dispatch<ZwlrOutputManagerV1, ()> for State {
    fn request(
        state: &mut State,
        _: &Client,
        manager: &ZwlrOutputManagerV1,
        request: zwlr_output_manager_v1::Request,
        _: &(),
        _: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        match request {
            zwlr_output_manager_v1::Request::CreateConfiguration { id, serial } => {
                let data = ConfigData::default();
                data.inner.lock().unwrap_or_else(|e| e.into_inner()).serial = serial;
                init.init(id, data);
            }
            zwlr_output_manager_v1::Request::Stop => {
                state.core.output_management.forget(manager);
                manager.finished();
            }
            _ => {}
        }
    }

    fn destroyed(state: &mut State, _: ClientId, manager: &ZwlrOutputManagerV1, _: &()) {
        state.core.output_management.forget(manager);
    }
}

impl Dispatch<ZwlrOutputHeadV1, HeadData> for State {
    fn request(
        _: &mut State,
        _: &Client,
        _: &ZwlrOutputHeadV1,
        _: zwlr_output_head_v1::Request,
        _: &HeadData,
        _: &DisplayHandle,
        _: &mut DataInit<'_, State>,
    ) {
        // Only `release`, a destructor.
    }

    fn destroyed(state: &mut State, _: ClientId, head: &ZwlrOutputHeadV1, _: &HeadData) {
        for manager in &mut state.core.output_management.managers {
            manager.heads.retain(|s| &s.resource != head);
        }
    }
}

impl Dispatch<ZwlrOutputModeV1, ModeData> for State {
    fn request(
        _: &mut State,
        _: &Client,
        _: &ZwlrOutputModeV1,
        _: zwlr_output_mode_v1::Request,
        _: &ModeData,
        _: &DisplayHandle,
        _: &mut DataInit<'_, State>,
    ) {
        // Only `release`, a destructor.
    }
}

impl Dispatch<ZwlrOutputConfigurationV1, ConfigData> for State {
    fn request(
        state: &mut State,
        client: &Client,
        config: &ZwlrOutputConfigurationV1,
        request: zwlr_output_configuration_v1::Request,
        data: &ConfigData,
        _: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        use zwlr_output_configuration_v1::{Error, Request};
        let mut inner = data.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.used && !matches!(request, Request::Destroy) {
            config.post_error(Error::AlreadyUsed, "this configuration was already applied or tested");
            return;
        }
        let (head, id) = match request {
            Request::EnableHead { id, head } => (head, Some(id)),
            Request::DisableHead { head } => (head, None),
            Request::Apply | Request::Test => {
                inner.used = true;
                let test = matches!(request, Request::Test);
                let serial = inner.serial;
                let requests: Vec<HeadRequest> = inner
                    .heads
                    .iter()
                    .map(|(name, head)| HeadRequest {
                        name: name.clone(),
                        on: head.as_ref().map(|h| {
                            h.data::<ConfigHeadData>()
                                .map(|d| d.settings.lock().unwrap_or_else(|e| e.into_inner()).clone())
                                .unwrap_or_default()
                        }),
                    })
                    .collect();
                drop(inner);
                state.output_configuration(client, config, serial, requests, test);
                return;
            }
            _ => return,
        };
        // A head to enable gets its configuration object, a head to disable none.
        let name = head.data::<HeadData>().map(|d| d.name.clone()).unwrap_or_default();
        let config_head = id.map(|id| init.init(id, ConfigHeadData { head: name.clone(), settings: Mutex::default() }));
        if inner.heads.iter().any(|(n, _)| *n == name) {
            config.post_error(Error::AlreadyConfiguredHead, format!("head {name} is configured twice"));
            return;
        }
        inner.heads.push((name, config_head));
    }
}

impl Dispatch<ZwlrOutputConfigurationHeadV1, ConfigHeadData> for State {
    fn request(
        _: &mut State,
        _: &Client,
        resource: &ZwlrOutputConfigurationHeadV1,
        request: zwlr_output_configuration_head_v1::Request,
        data: &ConfigHeadData,
        _: &DisplayHandle,
        _: &mut DataInit<'_, State>,
    ) {
        use zwlr_output_configuration_head_v1::{Error, Request};
        let mut s = data.settings.lock().unwrap_or_else(|e| e.into_inner());
        let already = |set: bool, what: &str| {
            if set {
                resource.post_error(Error::AlreadySet, format!("{what} is already set"));
            }
            set
        };
        match request {
            Request::SetMode { mode } => {
                if already(s.mode.is_some(), "the mode") {
                    return;
                }
                let Some(m) = mode.data::<ModeData>() else { return };
                if m.head != data.head {
                    resource.post_error(
                        Error::InvalidMode,
                        format!("mode {} belongs to {}, not {}", m.mode.describe(), m.head, data.head),
                    );
                    return;
                }
                s.mode = Some((m.mode.width, m.mode.height, m.mode.refresh_mhz));
                s.custom = false;
            }
            Request::SetCustomMode { width, height, refresh } => {
                if already(s.mode.is_some(), "the mode") {
                    return;
                }
                if width <= 0 || height <= 0 || refresh < 0 {
                    resource.post_error(Error::InvalidCustomMode, format!("custom mode {width}x{height}@{refresh}"));
                    return;
                }
                s.mode = Some((width as u32, height as u32, refresh as u32));
                s.custom = true;
            }
            Request::SetPosition { x, y } => {
                if already(s.position.is_some(), "the position") {
                    return;
                }
                s.position = Some((x, y));
            }
            Request::SetTransform { transform } => {
                if already(s.transform.is_some(), "the transform") {
                    return;
                }
                match transform {
                    WEnum::Value(t) => s.transform = Some(Transform::from(t)),
                    WEnum::Unknown(v) => resource.post_error(Error::InvalidTransform, format!("transform {v}")),
                }
            }
            Request::SetScale { scale } => {
                if already(s.scale.is_some(), "the scale") {
                    return;
                }
                if scale <= 0.0 {
                    resource.post_error(Error::InvalidScale, format!("scale {scale}"));
                    return;
                }
                s.scale = Some(scale);
            }
            Request::SetAdaptiveSync { state } => {
                if already(s.adaptive_sync.is_some(), "adaptive sync") {
                    return;
                }
                match state {
                    WEnum::Value(v) => s.adaptive_sync = Some(v == zwlr_output_head_v1::AdaptiveSyncState::Enabled),
                    WEnum::Unknown(v) => {
                        resource.post_error(Error::InvalidAdaptiveSyncState, format!("adaptive sync state {v}"))
                    }
                }
            }
            _ => {}
        }
    }
}

impl State {
    /// Tell every output manager the heads as the backend has them now.
    pub fn refresh_output_heads(&mut self) {
        let heads = self.backend.heads(&self.core);
        self.core.output_management.update(&self.core.display_handle, heads);
    }

    /// A client applies or tests a configuration made against `serial`.
    fn output_configuration(
        &mut self,
        client: &Client,
        config: &ZwlrOutputConfigurationV1,
        serial: u32,
        requests: Vec<HeadRequest>,
        test: bool,
    ) {
        self.refresh_output_heads();
        let om = &self.core.output_management;
        if serial != om.serial {
            // The heads changed since the client looked: it looks again and decides again.
            config.cancelled();
            return;
        }
        if let Some(head) = om.heads.iter().find(|h| !requests.iter().any(|r| r.name == h.name)) {
            config.post_error(
                zwlr_output_configuration_v1::Error::UnconfiguredHead,
                format!("head {} is not in the configuration", head.name),
            );
            return;
        }
        let pid = client.get_credentials(&self.core.display_handle).map(|c| c.pid).unwrap_or(0);
        let what = describe(&requests);
        match self.configure_outputs(&requests, test) {
            Ok(()) => {
                if !test {
                    tracing::info!(client = pid, %what, "outputs configured by a client");
                }
                config.succeeded();
            }
            Err(why) => {
                tracing::warn!(client = pid, %what, %why, test, "output configuration refused: nothing changed");
                config.failed();
            }
        }
        self.refresh_output_heads();
    }

    /// Apply (or with `test`, only check) `requests` on the backend: all of them or, with the
    /// reason, none. Counted for `stats` (tests are not).
    pub fn configure_outputs(&mut self, requests: &[HeadRequest], test: bool) -> Result<(), String> {
        let result = match unsupported(requests) {
            Some(why) => Err(why),
            None => self.backend.configure(&mut self.core, requests, test),
        };
        let om = &mut self.core.output_management;
        match (&result, test) {
            (Ok(()), false) => {
                om.applied += 1;
                self.refresh_output_heads();
            }
            (Err(_), false) => om.refused += 1,
            _ => {}
        }
        result
    }
}

/// A configuration in a few words, for the log.
fn describe(requests: &[HeadRequest]) -> String {
    requests
        .iter()
        .map(|r| match &r.on {
            None => format!("{} off", r.name),
            Some(s) => {
                let mut parts = vec![format!("{} on", r.name)];
                if let Some((w, h, mhz)) = s.mode {
                    parts.push(format!(
                        "{w}x{h}@{:.3}{}",
                        mhz as f64 / 1000.0,
                        if s.custom { " (custom)" } else { "" }
                    ));
                }
                if let Some((x, y)) = s.position {
                    parts.push(format!("at {x},{y}"));
                }
                if let Some(t) = s.transform {
                    parts.push(format!("{t:?}"));
                }
                parts.join(" ")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(name: &str, s: HeadSettings) -> HeadRequest {
        HeadRequest { name: name.into(), on: Some(s) }
    }

    #[test]
    fn what_no_backend_can_do_is_refused_with_the_reason() {
        let off = HeadRequest { name: "A".into(), on: None };
        assert!(unsupported(std::slice::from_ref(&off)).unwrap().contains("at least one stays on"));
        assert_eq!(unsupported(&[off.clone(), on("B", HeadSettings::default())]), None);
        let scaled = on("B", HeadSettings { scale: Some(2.0), ..Default::default() });
        assert!(unsupported(&[scaled]).unwrap().contains("scale 2"));
        let flipped = on("B", HeadSettings { transform: Some(Transform::Flipped90), ..Default::default() });
        assert!(unsupported(&[flipped]).unwrap().contains("does not mirror"));
        let turned = on("B", HeadSettings { transform: Some(Transform::_270), ..Default::default() });
        assert_eq!(unsupported(&[turned]), None);
        let vrr = on("B", HeadSettings { adaptive_sync: Some(true), ..Default::default() });
        assert!(unsupported(&[vrr]).unwrap().contains("adaptive sync"));
    }
}
