//! A KMS device opened by vitrine, and what it offers: connectors, CRTCs, planes and their
//! properties. Everything here is read once at start (and after hotplug), never per frame.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use drm::control::{connector, crtc, plane, property, Device as ControlDevice, ResourceHandle};
use drm::{ClientCapability, Device as BasicDevice};
use serde::Serialize;

/// An open DRM card node.
#[derive(Debug)]
pub struct Card {
    file: File,
    pub path: PathBuf,
}

impl AsFd for Card {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl BasicDevice for Card {}
impl ControlDevice for Card {}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{path}: cannot open: {source}")]
    Open { path: String, source: std::io::Error },
    #[error("{path}: the driver has no atomic modesetting (legacy-only KMS is not supported)")]
    NotAtomic { path: String },
    #[error("{path}: {what}: {source}")]
    Io { path: String, what: &'static str, source: std::io::Error },
    #[error("no DRM device: /dev/dri has no card node")]
    NoDevice,
}

impl Card {
    pub fn open(path: &Path) -> Result<Card, DeviceError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| DeviceError::Open { path: path.display().to_string(), source })?;
        Card::from_fd(file.into(), path)
    }

    /// A card opened by someone else (the seat manager) or by `open`.
    pub fn from_fd(fd: std::os::fd::OwnedFd, path: &Path) -> Result<Card, DeviceError> {
        let card = Card { file: File::from(fd), path: path.to_path_buf() };
        let name = path.display().to_string();
        card.set_client_capability(ClientCapability::UniversalPlanes, true).map_err(|source| DeviceError::Io {
            path: name.clone(),
            what: "universal planes",
            source,
        })?;
        if card.set_client_capability(ClientCapability::Atomic, true).is_err() {
            return Err(DeviceError::NotAtomic { path: name });
        }
        // Writeback connectors are optional (vkms has one; most SoCs do not).
        let _ = card.set_client_capability(ClientCapability::WritebackConnectors, true);
        Ok(card)
    }

    pub fn as_file(&self) -> &File {
        &self.file
    }

    pub fn name(&self) -> String {
        self.path.display().to_string()
    }

    pub fn io_err(&self, what: &'static str) -> impl FnOnce(std::io::Error) -> DeviceError + '_ {
        move |source| DeviceError::Io { path: self.name(), what, source }
    }
}

/// The card nodes under /dev/dri, sorted.
pub fn card_nodes() -> Vec<PathBuf> {
    let mut nodes: Vec<PathBuf> = std::fs::read_dir("/dev/dri")
        .map(|dir| {
            dir.flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("card")))
                .collect()
        })
        .unwrap_or_default();
    nodes.sort();
    nodes
}

/// Property handles and current values of one KMS object, by name.
#[derive(Debug, Default, Clone)]
pub struct Props {
    by_name: HashMap<String, (property::Handle, u64, property::Info)>,
}

impl Props {
    pub fn read<H: ResourceHandle>(card: &Card, handle: H) -> std::io::Result<Props> {
        let set = card.get_properties(handle)?;
        let (handles, values) = set.as_props_and_values();
        let mut by_name = HashMap::new();
        for (h, v) in handles.iter().zip(values) {
            if let Ok(info) = card.get_property(*h) {
                let name = info.name().to_string_lossy().into_owned();
                by_name.insert(name, (*h, *v, info));
            }
        }
        Ok(Props { by_name })
    }

    pub fn handle(&self, name: &str) -> Option<property::Handle> {
        self.by_name.get(name).map(|(h, _, _)| *h)
    }

    pub fn value(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).map(|(_, v, _)| *v)
    }

    pub fn info(&self, name: &str) -> Option<&property::Info> {
        self.by_name.get(name).map(|(_, _, i)| i)
    }

    pub fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The numeric value of an enum property's entry, e.g. ("COLOR_ENCODING", "ITU-R BT.709 YCbCr").
    pub fn enum_value(&self, name: &str, entry: &str) -> Option<u64> {
        match self.info(name)?.value_type() {
            property::ValueType::Enum(values) => {
                let (raws, entries) = values.values();
                raws.iter().zip(entries).find(|(_, e)| e.name().to_string_lossy() == entry).map(|(r, _)| *r)
            }
            _ => None,
        }
    }

    /// The entries of a bitmask property: (bit, name), e.g. (1, "rotate-90").
    pub fn bitmask_entries(&self, card: &Card, name: &str) -> Vec<(u64, String)> {
        let Some(handle) = self.handle(name) else { return Vec::new() };
        let mut values = Vec::new();
        let mut enums = Vec::new();
        if drm_ffi::mode::get_property(card.as_fd(), handle.into(), Some(&mut values), Some(&mut enums)).is_err() {
            return Vec::new();
        }
        enums
            .iter()
            .map(|e| {
                let name: Vec<u8> = e.name.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
                (e.value, String::from_utf8_lossy(&name).into_owned())
            })
            .collect()
    }

    /// Names of an enum or bitmask property's entries.
    pub fn enum_names(&self, name: &str) -> Vec<String> {
        match self.info(name).map(|i| i.value_type()) {
            Some(property::ValueType::Enum(values)) => {
                values.values().1.iter().map(|e| e.name().to_string_lossy().into_owned()).collect()
            }
            Some(property::ValueType::Bitmask) => Vec::new(),
            _ => Vec::new(),
        }
    }

    /// The [min, max] of a range property.
    pub fn range(&self, name: &str) -> Option<(u64, u64)> {
        match self.info(name)?.value_type() {
            property::ValueType::UnsignedRange(min, max) => Some((min, max)),
            property::ValueType::SignedRange(min, max) => Some((min.max(0) as u64, max.max(0) as u64)),
            _ => None,
        }
    }

    pub fn immutable(&self, name: &str) -> bool {
        self.info(name).map(|i| !i.mutable()).unwrap_or(true)
    }
}

/// One (format, modifier) pair a plane accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct FormatModifier {
    pub format: u32,
    pub modifier: u64,
}

pub use crate::fourcc::{MOD_INVALID, MOD_LINEAR};

/// Parse an IN_FORMATS blob (struct drm_format_modifier_blob).
pub fn parse_in_formats(blob: &[u8]) -> Vec<FormatModifier> {
    let u32_at =
        |off: usize| -> Option<u32> { blob.get(off..off + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]])) };
    let u64_at = |off: usize| -> Option<u64> {
        blob.get(off..off + 8).map(|b| u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    };
    let (Some(count_formats), Some(formats_offset), Some(count_modifiers), Some(modifiers_offset)) =
        (u32_at(8), u32_at(12), u32_at(16), u32_at(20))
    else {
        return Vec::new();
    };
    let formats: Vec<u32> =
        (0..count_formats as usize).filter_map(|i| u32_at(formats_offset as usize + i * 4)).collect();
    let mut out = Vec::new();
    for m in 0..count_modifiers as usize {
        // struct drm_format_modifier { u64 formats; u32 offset; u32 pad; u64 modifier; }
        let base = modifiers_offset as usize + m * 24;
        let (Some(mask), Some(offset), Some(modifier)) = (u64_at(base), u32_at(base + 8), u64_at(base + 16)) else {
            continue;
        };
        for bit in 0..64 {
            if mask & (1 << bit) != 0 {
                if let Some(format) = formats.get(offset as usize + bit) {
                    out.push(FormatModifier { format: *format, modifier });
                }
            }
        }
    }
    out
}

/// Everything vitrine reads about a plane.
#[derive(Debug, Clone)]
pub struct PlaneInfo {
    pub handle: plane::Handle,
    pub kind: String,
    pub possible_crtcs: u32,
    pub formats: Vec<FormatModifier>,
    /// DRM_MODE_ROTATE_* | DRM_MODE_REFLECT_* the "rotation" property offers (ROTATE_0 alone
    /// without the property).
    pub rotations: u32,
    pub props: Props,
}

pub fn planes(card: &Card) -> Result<Vec<PlaneInfo>, DeviceError> {
    let mut out = Vec::new();
    for handle in card.plane_handles().map_err(card.io_err("list planes"))? {
        let info = card.get_plane(handle).map_err(card.io_err("read plane"))?;
        let props = Props::read(card, handle).map_err(card.io_err("read plane properties"))?;
        let kind = props
            .info("type")
            .and_then(|i| match i.value_type() {
                property::ValueType::Enum(values) => {
                    let (raws, entries) = values.values();
                    let v = props.value("type")?;
                    raws.iter()
                        .zip(entries)
                        .find(|(r, _)| **r == v)
                        .map(|(_, e)| e.name().to_string_lossy().into_owned())
                }
                _ => None,
            })
            .unwrap_or_else(|| "Unknown".into());
        let mut formats = props
            .value("IN_FORMATS")
            .filter(|blob| *blob != 0)
            .and_then(|blob| card.get_property_blob(blob).ok())
            .map(|b| parse_in_formats(&b))
            .unwrap_or_default();
        if formats.is_empty() {
            // Without IN_FORMATS, the plane takes its formats with the implicit (linear) modifier.
            formats = info.formats().iter().map(|f| FormatModifier { format: *f, modifier: MOD_LINEAR }).collect();
        }
        let possible_crtcs: u32 = unsafe { std::mem::transmute(info.possible_crtcs()) };
        // Bit n of the mask is the entry whose value is n (rotate-0 = 0 ... reflect-y = 5).
        let rotations = props
            .bitmask_entries(card, "rotation")
            .iter()
            .filter(|(bit, _)| *bit < 32)
            .fold(0u32, |mask, (bit, _)| mask | (1 << bit))
            .max(1);
        out.push(PlaneInfo { handle, kind, possible_crtcs, formats, rotations, props });
    }
    Ok(out)
}

/// A connector with what vitrine needs to drive it.
#[derive(Debug, Clone)]
pub struct ConnectorInfo {
    pub handle: connector::Handle,
    pub name: String,
    pub connected: bool,
    pub writeback: bool,
    pub modes: Vec<drm::control::Mode>,
    pub possible_crtcs: Vec<crtc::Handle>,
    pub props: Props,
}

pub fn connectors(card: &Card) -> Result<Vec<ConnectorInfo>, DeviceError> {
    let res = card.resource_handles().map_err(card.io_err("read resources"))?;
    let mut out = Vec::new();
    for &handle in res.connectors() {
        let info = card.get_connector(handle, true).map_err(card.io_err("read connector"))?;
        let mut possible = Vec::new();
        for enc in info.encoders() {
            if let Ok(e) = card.get_encoder(*enc) {
                for c in res.filter_crtcs(e.possible_crtcs()) {
                    if !possible.contains(&c) {
                        possible.push(c);
                    }
                }
            }
        }
        let props = Props::read(card, handle).map_err(card.io_err("read connector properties"))?;
        out.push(ConnectorInfo {
            handle,
            name: format!("{}-{}", info.interface().as_str(), info.interface_id()),
            connected: info.state() == connector::State::Connected,
            writeback: info.interface() == connector::Interface::Writeback,
            modes: info.modes().to_vec(),
            possible_crtcs: possible,
            props,
        });
    }
    Ok(out)
}
