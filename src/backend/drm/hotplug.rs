//! Connectors coming and going: heads added for connected connectors (a mode picked, planes
//! shared out between the CRTCs), removed at their next flip when unplugged, and the udev
//! watch that notices.

use std::path::Path;

use drm::control::atomic::AtomicModeReq;
use drm::control::property::Value;
use drm::control::{crtc, AtomicCommitFlags, Device as ControlDevice};

use super::device::{self, ConnectorInfo, PlaneInfo, Props};
use super::{head, plane, planner, refresh_mhz, Drm, DrmError, Head, PlaneSlot, Slot};
use crate::cli::OutputSpec;
use crate::state::Core;

impl Drm {
    /// Read the connectors again: heads of connectors that went away are removed, connected
    /// connectors without a head get one. Returns how many heads there are, and what could not
    /// be lit.
    pub(super) fn update_heads(&mut self, core: &mut Core) -> (usize, Vec<String>) {
        if self.paused {
            self.rescan_on_resume = true;
            return (self.heads.len(), Vec::new());
        }
        let connectors = match device::connectors(&self.card) {
            Ok(c) => c,
            Err(err) => return (self.heads.len(), vec![err.to_string()]),
        };
        // A display a client turned off that is unplugged is forgotten (plugged in again, it
        // lights as any display does).
        self.off.retain(|c| connectors.iter().any(|n| n.handle == c.handle && n.connected && !n.modes.is_empty()));
        let gone: Vec<crtc::Handle> = self
            .heads
            .iter()
            .filter(|h| !h.removing)
            .filter(|h| {
                !connectors.iter().any(|c| c.handle == h.connector.handle && c.connected && !c.modes.is_empty())
            })
            .map(|h| h.crtc)
            .collect();
        for crtc in gone {
            self.remove_head(core, crtc, "connector gone");
        }
        let wanted = core.config.drm.connector.clone();
        let mut errors = Vec::new();
        for connector in connectors.iter().filter(|c| !c.writeback) {
            let named = wanted.is_empty() || connector.name == wanted;
            let off = self.off.iter().any(|c| c.handle == connector.handle);
            if !named || off || self.heads.iter().any(|h| h.connector.handle == connector.handle) {
                continue;
            }
            if !connector.connected || connector.modes.is_empty() {
                if !wanted.is_empty() {
                    tracing::warn!(connector = %connector.name, "drm.connector is not connected: waiting for it");
                }
                continue;
            }
            let rotation = core.config.drm.rotation;
            let lit = match pick_mode(connector, &core.config.drm.mode) {
                Ok(mode) => self.add_head(core, connector.clone(), mode, rotation),
                Err(e) => Err(DrmError::Missing(format!("{}: {e}", self.card.name()))),
            };
            if let Err(err) = lit {
                tracing::error!(connector = %connector.name, %err, "cannot light the connector");
                errors.push(err.to_string());
            }
        }
        if !wanted.is_empty() && !connectors.iter().any(|c| c.name == wanted && !c.writeback) {
            let names: Vec<&str> = connectors.iter().filter(|c| !c.writeback).map(|c| c.name.as_str()).collect();
            errors.push(format!("drm.connector {wanted:?} does not exist (connectors: {})", names.join(", ")));
        }
        (self.heads.iter().filter(|h| !h.removing).count(), errors)
    }

    /// Light `connector` at `mode`, its panel turned `rotation`: a free CRTC, a share of the
    /// planes, composition buffers and an output for clients.
    pub(super) fn add_head(
        &mut self,
        core: &mut Core,
        connector: ConnectorInfo,
        mode: drm::control::Mode,
        rotation: crate::rotation::Rotation,
    ) -> Result<(), DrmError> {
        let name = self.card.name();
        let crtc = connector
            .possible_crtcs
            .iter()
            .copied()
            .find(|c| !self.heads.iter().any(|h| h.crtc == *c))
            .ok_or_else(|| DrmError::Missing(format!("{name}: no free CRTC for {}", connector.name)))?;
        let crtc_index = self.crtcs.iter().position(|c| *c == crtc).unwrap_or(0);
        let crtc_props = Props::read(&self.card, crtc)
            .map_err(|source| DrmError::kernel(format!("{name}: CRTC properties"), source))?;
        let mut crtc_indices: Vec<usize> = self.heads.iter().map(|h| h.crtc_index).collect();
        crtc_indices.push(crtc_index);
        let shares = self.share_planes(&crtc_indices);
        let (primary, others) =
            shares.last().cloned().ok_or_else(|| DrmError::Missing(format!("{name}: no planes for CRTC {crtc:?}")))?;
        let primary = primary
            .ok_or_else(|| DrmError::Missing(format!("{name}: no primary plane left for {}", connector.name)))?;

        let (w, h) = mode.size();
        let size = (w as u32, h as u32);
        let mut slots = Vec::new();
        for _ in 0..2 {
            let buffer = self.compositor.new_buffer(&self.card, size).map_err(DrmError::Renderer)?;
            self.stats.framebuffers_created += 1;
            slots.push(Slot { buffer, damage: head::damage_tracker(size, rotation) });
        }
        let refresh_mhz = refresh_mhz(&mode);
        let refresh = crate::frames::FrameClock::new(refresh_mhz).period();
        // New outputs go to the right of the others.
        let x = self
            .heads
            .iter()
            .map(|h| h.output.current_location().x + h.rotation.logical_size(h.size()).0 as i32)
            .max()
            .unwrap_or(0);
        let spec = OutputSpec { width: size.0, height: size.1, refresh_mhz };
        let output = crate::backend::add_output(&core.display_handle, &connector.name, "drm", spec, (x, 0).into());
        output.change_current_state(None, Some(rotation.transform()), None, None);
        let caps = std::iter::once(&primary).chain(&others).map(plane::plane_caps).collect();
        tracing::info!(
            device = %self.card.name(),
            connector = %connector.name,
            crtc = u32::from(crtc),
            mode = %format!("{w}x{h}@{:.3}", refresh_mhz as f64 / 1000.0),
            rotation = u32::from(rotation),
            primary = u32::from(primary.handle),
            planes = 1 + others.len(),
            "drm: lighting the connector"
        );
        self.heads.push(Head {
            connector,
            crtc,
            crtc_index,
            crtc_props,
            mode,
            rotation,
            primary,
            others,
            slots,
            back: 0,
            output: output.clone(),
            modeset_done: false,
            in_flight: None,
            on_screen: Vec::new(),
            on_screen_video: None,
            planner: {
                let mut p = planner::Planner::new(caps, crtc_index);
                p.set_layers_on_planes(self.hardware_planes);
                p
            },
            active_planes: Vec::new(),
            last_fbs: Vec::new(),
            last_plan: None,
            report: Vec::new(),
            refresh,
            captures: Vec::new(),
            power_off: false,
            removing: false,
            commit_failures: 0,
            composited_for: 0,
            pending: None,
            retired: Vec::new(),
        });
        self.stats.outputs_added += 1;
        self.reshare_planes();
        core.output_added(output, refresh_mhz, true);
        Ok(())
    }

    /// The head on `crtc` goes (`why`: its connector went away, a client turned it off): clients
    /// lose its output now; its CRTC and planes are turned off once no commit of it is in flight
    /// (at its flip, if one is).
    pub(super) fn remove_head(&mut self, core: &mut Core, crtc: crtc::Handle, why: &str) {
        let Some(index) = self.heads.iter().position(|h| h.crtc == crtc) else { return };
        let head = &mut self.heads[index];
        if head.removing {
            return;
        }
        head.removing = true;
        tracing::info!(connector = %head.connector.name, why, "drm: output removed");
        self.stats.outputs_removed += 1;
        let output = head.output.clone();
        let captures = std::mem::take(&mut head.captures);
        core.output_removed(&output);
        for done in captures {
            core.defer(move |state| done(state, Err("the output went away".into())));
        }
        if self.heads[index].in_flight.is_none() {
            self.finish_removal(index);
        }
    }

    /// Turn a removed head off and give its planes to the others.
    pub(super) fn finish_removal(&mut self, index: usize) {
        let head = self.heads.remove(index);
        if let Err(err) = self.disable_head(&head) {
            tracing::warn!(connector = %head.name(), %err, "cannot turn the CRTC off");
        }
        let pending = head.pending.and_then(|p| p.slots).unwrap_or_default();
        for slot in head.slots.into_iter().chain(head.retired).chain(pending) {
            slot.buffer.destroy(&self.card);
        }
        self.reshare_planes();
    }

    /// One commit that takes a head's connector, CRTC and planes off the display.
    fn disable_head(&mut self, head: &Head) -> Result<(), DrmError> {
        let prop = |props: &Props, name: &str| {
            props.handle(name).ok_or_else(|| DrmError::Missing(format!("property {name} missing")))
        };
        let mut req = AtomicModeReq::new();
        req.add_property(head.connector.handle, prop(&head.connector.props, "CRTC_ID")?, Value::CRTC(None));
        req.add_property(head.crtc, prop(&head.crtc_props, "ACTIVE")?, Value::Boolean(false));
        req.add_property(head.crtc, prop(&head.crtc_props, "MODE_ID")?, Value::Unknown(0));
        for plane in std::iter::once(&head.primary).chain(&head.others) {
            plane::disable_plane(plane, &mut req)?;
        }
        if let Some(wb) = self.writeback.as_mut().filter(|wb| wb.crtc == Some(head.crtc)) {
            req.add_property(wb.connector.handle, prop(&wb.connector.props, "CRTC_ID")?, Value::CRTC(None));
            wb.crtc = None;
        }
        self.card
            .atomic_commit(AtomicCommitFlags::ALLOW_MODESET | AtomicCommitFlags::NONBLOCK, req)
            .map_err(|source| DrmError::kernel(format!("turning {} off", head.name()), source))?;
        self.stats.commits += 1;
        Ok(())
    }

    /// The planes each head gets for the heads on `crtc_indices`.
    fn share_planes(&self, crtc_indices: &[usize]) -> Vec<(Option<PlaneInfo>, Vec<PlaneInfo>)> {
        let slots: Vec<PlaneSlot> = self
            .planes
            .iter()
            .map(|p| PlaneSlot {
                id: p.handle.into(),
                kind: plane::plane_caps(p).kind,
                possible_crtcs: p.possible_crtcs,
            })
            .collect();
        let by_id = |id: u32| self.planes.iter().find(|p| u32::from(p.handle) == id).cloned();
        head::share_planes(&slots, crtc_indices)
            .into_iter()
            .map(|(primary, others)| (primary.and_then(by_id), others.into_iter().filter_map(by_id).collect()))
            .collect()
    }

    /// Deal the planes out again after a head came or went; heads whose planes changed set every
    /// plane again at their next frame (planes they lost are turned off first).
    fn reshare_planes(&mut self) {
        let indices: Vec<usize> = self.heads.iter().map(|h| h.crtc_index).collect();
        let shares = self.share_planes(&indices);
        let mut req = AtomicModeReq::new();
        let mut lost = 0;
        for (head, (primary, others)) in self.heads.iter_mut().zip(shares) {
            let Some(primary) = primary else { continue };
            let same = primary.handle == head.primary.handle
                && others.iter().map(|p| p.handle).eq(head.others.iter().map(|p| p.handle));
            if same {
                continue;
            }
            for id in &head.active_planes {
                let kept = u32::from(primary.handle) == *id || others.iter().any(|p| u32::from(p.handle) == *id);
                if let (false, Some(info)) = (kept, head.plane(*id)) {
                    if plane::disable_plane(info, &mut req).is_ok() {
                        lost += 1;
                    }
                }
            }
            tracing::info!(connector = %head.name(), planes = 1 + others.len(), "drm: planes dealt out again");
            head.set_planes(primary, others, self.hardware_planes);
        }
        if lost > 0 {
            match self.card.atomic_commit(AtomicCommitFlags::empty(), req) {
                Ok(()) => self.stats.commits += 1,
                Err(err) => tracing::warn!(%err, "cannot turn off planes moving to another head"),
            }
        }
    }
}

/// The mode named in the config (`WxH` or `WxH@HZ`), or the preferred one.
pub(super) fn pick_mode(connector: &ConnectorInfo, wanted: &str) -> Result<drm::control::Mode, String> {
    if wanted.is_empty() {
        return connector
            .modes
            .iter()
            .find(|m| m.mode_type().contains(drm::control::ModeTypeFlags::PREFERRED))
            .or(connector.modes.first())
            .copied()
            .ok_or_else(|| format!("{} has no modes", connector.name));
    }
    let spec: OutputSpec = wanted.parse().map_err(|e| format!("drm.mode: {e}"))?;
    let rate_given = wanted.contains('@');
    connector
        .modes
        .iter()
        .find(|m| {
            let (w, h) = m.size();
            w as u32 == spec.width
                && h as u32 == spec.height
                && (!rate_given || (m.vrefresh() as i64 * 1000 - spec.refresh_mhz as i64).abs() <= 1000)
        })
        .copied()
        .ok_or_else(|| {
            let modes: Vec<String> =
                connector.modes.iter().map(|m| format!("{}x{}@{}", m.size().0, m.size().1, m.vrefresh())).collect();
            format!("{} has no mode {wanted} (modes: {})", connector.name, modes.join(", "))
        })
}

/// The connector's mode of `width`x`height` at `refresh_mhz` (within 1 Hz; 0: its first mode of
/// that size), or why there is none.
pub(super) fn find_mode(
    connector: &ConnectorInfo,
    width: u32,
    height: u32,
    refresh_mhz: u32,
) -> Result<drm::control::Mode, String> {
    connector
        .modes
        .iter()
        .filter(|m| m.size().0 as u32 == width && m.size().1 as u32 == height)
        .min_by_key(|m| (super::refresh_mhz(m) as i64 - refresh_mhz as i64).abs())
        .filter(|m| refresh_mhz == 0 || (super::refresh_mhz(m) as i64 - refresh_mhz as i64).abs() <= 1000)
        .copied()
        .ok_or_else(|| {
            let modes: Vec<String> = connector.modes.iter().map(super::configure::describe).collect();
            let rate = if refresh_mhz == 0 { String::new() } else { format!("@{:.3}", refresh_mhz as f64 / 1000.0) };
            format!("{} has no mode {width}x{height}{rate} (modes: {})", connector.name, modes.join(", "))
        })
}

/// Connector hotplug: the kernel reports a change of the card through udev; vitrine reads its
/// connectors again.
pub(super) fn watch_hotplug(core: &mut Core, drm: &Drm, path: &Path) {
    use smithay::backend::udev::{UdevBackend, UdevEvent};
    use std::os::unix::fs::MetadataExt;
    let Ok(ours) = std::fs::metadata(path).map(|m| m.rdev()) else { return };
    let seat =
        drm.seat_session().map(|s| smithay::backend::session::Session::seat(&s)).unwrap_or_else(|| "seat0".to_string());
    let udev = match UdevBackend::new(&seat) {
        Ok(u) => u,
        Err(err) => {
            tracing::warn!(%err, "no udev: displays plugged in or out are not noticed");
            return;
        }
    };
    let inserted = core.loop_handle.insert_source(udev, move |event, _, state| match event {
        UdevEvent::Changed { device_id } if device_id == ours => {
            tracing::info!("drm: connectors changed");
            let Some((d, core)) = state.drm() else { return };
            let (heads, errors) = d.update_heads(core);
            for err in &errors {
                tracing::error!(%err, "drm: after the connector change");
            }
            if heads == 0 && errors.is_empty() {
                tracing::warn!("no display is connected: waiting for one to be plugged in");
            }
        }
        UdevEvent::Removed { device_id } if device_id == ours => {
            tracing::error!("drm: the display device was removed");
        }
        _ => {}
    });
    if let Err(err) = inserted {
        tracing::warn!(%err, "cannot watch udev: displays plugged in or out are not noticed");
    }
}
