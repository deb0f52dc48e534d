//! Heads changed while they run (output management, a reload of `[drm] mode` or `rotation`):
//! another of the connector's modes, a rotation, a place in the layout, a display turned off or
//! on again. Everything asked is checked before anything changes: the modes are the connector's,
//! the kernel tests each new mode with a framebuffer of its size, a CRTC is free for each display
//! turned on. A lit head then takes its new mode at its next frame, once no commit of it is in
//! flight; the buffers of the old size leave at the flip that replaces them.

use drm::control::ModeTypeFlags;

use super::device::ConnectorInfo;
use super::head::{damage_tracker, Pending, Slot};
use super::hotplug::{find_mode, pick_mode};
use super::{refresh_mhz, Drm};
use crate::rotation::Rotation;
use crate::state::Core;
use crate::wayland::output_management::{HeadInfo, HeadMode, HeadRequest};

/// What one lit head becomes.
struct Change {
    index: usize,
    mode: drm::control::Mode,
    rotation: Rotation,
    position: Option<(i32, i32)>,
}

/// A display turned on again.
struct Light {
    connector: ConnectorInfo,
    mode: drm::control::Mode,
    rotation: Rotation,
    position: Option<(i32, i32)>,
}

impl Drm {
    /// The lit heads and the displays a client turned off, as output management shows them.
    pub fn output_heads(&self) -> Vec<HeadInfo> {
        let modes = |c: &ConnectorInfo| -> Vec<HeadMode> { c.modes.iter().map(head_mode).collect() };
        let mut heads: Vec<HeadInfo> = self
            .heads
            .iter()
            .filter(|h| !h.removing)
            .map(|h| crate::backend::head_of_output(&h.output, modes(&h.connector)))
            .collect();
        for c in &self.off {
            heads.push(HeadInfo {
                name: c.name.clone(),
                description: crate::backend::head_description("vitrine", "drm", &c.name),
                make: "vitrine".into(),
                model: "drm".into(),
                modes: modes(c),
                lit: None,
            });
        }
        heads.sort_by(|a, b| a.name.cmp(&b.name));
        heads
    }

    /// Apply `requests` (with `test`, only check them): all of them, or none with the reason.
    pub fn configure(&mut self, core: &mut Core, requests: &[HeadRequest], test: bool) -> Result<(), String> {
        if self.paused {
            return Err("vitrine's session is switched away (another VT): nothing can be set now".into());
        }
        let mut changes = Vec::new();
        let mut lights = Vec::new();
        let mut offs = Vec::new();
        for r in requests {
            let lit = self.heads.iter().position(|h| h.name() == r.name && !h.removing);
            let connector = match lit {
                Some(i) => self.heads[i].connector.clone(),
                None => self
                    .off
                    .iter()
                    .find(|c| c.name == r.name)
                    .cloned()
                    .ok_or_else(|| format!("{}: no such display (unplugged?)", r.name))?,
            };
            let Some(s) = &r.on else {
                offs.extend(lit);
                continue;
            };
            let mode = match (s.mode, lit) {
                (Some((w, h, mhz)), _) => find_mode(&connector, w, h, mhz)?,
                (None, Some(i)) => self.heads[i].mode,
                (None, None) => pick_mode(&connector, &core.config.drm.mode)?,
            };
            let rotation = match (s.transform, lit) {
                (Some(t), _) => Rotation::from_transform(t),
                (None, Some(i)) => self.heads[i].rotation,
                (None, None) => core.config.drm.rotation,
            };
            match lit {
                Some(index) => changes.push(Change { index, mode, rotation, position: s.position }),
                None => lights.push(Light { connector, mode, rotation, position: s.position }),
            }
        }
        // A CRTC for each display turned on, from those no head keeps.
        let kept: Vec<_> = self
            .heads
            .iter()
            .enumerate()
            .filter(|(i, h)| !h.removing && !offs.contains(i))
            .map(|(_, h)| h.crtc)
            .collect();
        let mut taken = kept.clone();
        for light in &lights {
            let free = light.connector.possible_crtcs.iter().copied().find(|c| !taken.contains(c));
            let crtc =
                free.ok_or_else(|| format!("{}: no display controller (CRTC) is free for it", light.connector.name))?;
            taken.push(crtc);
        }
        // The kernel tests each new mode, with buffers of its size made for it now.
        let mut pending: Vec<(usize, Pending)> = Vec::new();
        for change in &changes {
            let head = &self.heads[change.index];
            if change.mode == head.mode && change.rotation == head.rotation {
                continue;
            }
            let (name, count) = (head.name().to_string(), head.slots.len().max(1));
            let slots = if change.mode.size() == head.mode.size() {
                None
            } else {
                match self.new_slots(change.mode.size(), change.rotation, count) {
                    Ok(slots) => Some(slots),
                    Err(err) => {
                        self.discard(pending.into_iter().map(|(_, p)| p).collect());
                        return Err(format!("{name}: no buffers for {}: {err}", describe(&change.mode)));
                    }
                }
            };
            let head = &self.heads[change.index];
            let tested = if change.mode == head.mode {
                Ok(())
            } else {
                let fb = slots.as_ref().map(|s| s[0].buffer.fb()).unwrap_or_else(|| head.slots[0].buffer.fb());
                super::modeset::test_mode(&self.card, head, &change.mode, fb)
            };
            let p = Pending { mode: change.mode, rotation: change.rotation, slots };
            if let Err(err) = tested {
                self.discard(pending.into_iter().map(|(_, p)| p).chain([p]).collect());
                return Err(format!("{name}: the display controller refuses {}: {err}", describe(&change.mode)));
            }
            pending.push((change.index, p));
        }
        if test {
            self.discard(pending.into_iter().map(|(_, p)| p).collect());
            return Ok(());
        }

        // Apply: the new modes first (indices still hold), then what goes off, then what comes on.
        let mut changed = Vec::new();
        for (index, p) in pending {
            let head = &mut self.heads[index];
            tracing::info!(
                connector = %head.name(),
                mode = %describe(&p.mode),
                rotation = u32::from(p.rotation),
                "drm: the head changes mode or rotation at its next frame"
            );
            let output = head.output.clone();
            let (w, h) = p.mode.size();
            let mode =
                smithay::output::Mode { size: (w as i32, h as i32).into(), refresh: refresh_mhz(&p.mode) as i32 };
            output.change_current_state(Some(mode), Some(p.rotation.transform()), None, None);
            if let Some(old) = head.pending.replace(p) {
                self.discard(vec![old]);
            }
            changed.push(output);
        }
        for change in &changes {
            if let Some(position) = change.position {
                let output = self.heads[change.index].output.clone();
                if output.current_location() != position.into() {
                    output.change_current_state(None, None, None, Some(position.into()));
                    changed.push(output);
                }
            }
        }
        changed.dedup();
        for output in &changed {
            core.output_changed(output);
        }
        let crtcs: Vec<_> = offs.iter().map(|&i| self.heads[i].crtc).collect();
        for crtc in crtcs {
            if let Some(head) = self.heads.iter().find(|h| h.crtc == crtc) {
                self.off.push(head.connector.clone());
            }
            self.remove_head(core, crtc, "turned off by a client");
        }
        for light in lights {
            let name = light.connector.name.clone();
            self.off.retain(|c| c.name != name);
            if let Err(err) = self.add_head(core, light.connector.clone(), light.mode, light.rotation) {
                self.off.push(light.connector);
                return Err(format!("{name}: cannot light it: {err}"));
            }
            if let (Some(position), Some(head)) = (light.position, self.heads.iter().find(|h| h.name() == name)) {
                let output = head.output.clone();
                output.change_current_state(None, None, None, Some(position.into()));
                core.output_changed(&output);
            }
        }
        Ok(())
    }

    /// `count` composition buffers of a mode's `size` for a panel turned `rotation`.
    fn new_slots(&mut self, size: (u16, u16), rotation: Rotation, count: usize) -> Result<Vec<Slot>, String> {
        let size = (size.0 as u32, size.1 as u32);
        let mut slots = Vec::new();
        for _ in 0..count {
            match self.compositor.new_buffer(&self.card, size) {
                Ok(buffer) => {
                    self.stats.framebuffers_created += 1;
                    slots.push(Slot { buffer, damage: damage_tracker(size, rotation) });
                }
                Err(err) => {
                    for slot in slots {
                        slot.buffer.destroy(&self.card);
                    }
                    return Err(err);
                }
            }
        }
        Ok(slots)
    }

    /// Buffers made for changes that will not happen.
    fn discard(&mut self, pending: Vec<Pending>) {
        for slot in pending.into_iter().flat_map(|p| p.slots.unwrap_or_default()) {
            slot.buffer.destroy(&self.card);
        }
    }

    /// What `[drm] mode` and `rotation` ask of every lit head, as a configuration (a reload
    /// applies them like a client's configuration).
    pub fn requests_from_config(&self, drm: &crate::config::DrmConfig) -> Result<Vec<HeadRequest>, String> {
        let mut requests = Vec::new();
        for head in self.heads.iter().filter(|h| !h.removing) {
            let mode = pick_mode(&head.connector, &drm.mode)?;
            let settings = crate::wayland::output_management::HeadSettings {
                mode: Some((mode.size().0 as u32, mode.size().1 as u32, refresh_mhz(&mode))),
                transform: Some(drm.rotation.transform()),
                ..Default::default()
            };
            requests.push(HeadRequest { name: head.name().to_string(), on: Some(settings) });
        }
        requests.extend(self.off.iter().map(|c| HeadRequest { name: c.name.clone(), on: None }));
        Ok(requests)
    }
}

impl super::head::Head {
    /// Take the mode and rotation a configuration gave (the frame scheduler calls the repaint
    /// only with no commit of the head in flight, so the buffers on screen are the last flip's):
    /// the next commit sets the mode; buffers of the old size go at the flip that replaces them.
    pub(super) fn take_pending(&mut self) {
        let Some(p) = self.pending.take() else { return };
        if let Some(slots) = p.slots {
            let old = std::mem::replace(&mut self.slots, slots);
            self.retired.extend(old);
            self.back = 0;
        }
        self.mode = p.mode;
        self.refresh = crate::frames::FrameClock::new(refresh_mhz(&p.mode)).period();
        self.rotation = p.rotation;
        self.reset();
    }
}

/// A connector's mode as output management shows it.
fn head_mode(mode: &drm::control::Mode) -> HeadMode {
    HeadMode {
        width: mode.size().0 as u32,
        height: mode.size().1 as u32,
        refresh_mhz: refresh_mhz(mode),
        preferred: mode.mode_type().contains(ModeTypeFlags::PREFERRED),
    }
}

/// A mode in words.
pub fn describe(mode: &drm::control::Mode) -> String {
    head_mode(mode).describe()
}
