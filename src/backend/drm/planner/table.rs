//! Plane tables as JSON: how `PlaneCaps` is written to and read from `resources/planes/*.json`.
//!
//! Schema (stable; extra fields are ignored so a probe may add some):
//!
//! ```json
//! {
//!   "source": "where the table comes from (kernel version, file or probe)",
//!   "notes": ["free text, one string per remark"],
//!   "planes": [{
//!     "id": 35,                      // KMS object id
//!     "name": "plane-0",             // for humans and logs
//!     "kind": "primary",             // "primary" | "overlay" | "cursor"
//!     "possible_crtcs": 1,           // bitmask of CRTC indices
//!     "zpos": {"min": 0, "max": 5, "immutable": false},   // or null: no zpos property
//!     "rotations": 63,               // DRM_MODE_ROTATE_0/90/180/270 = 1/2/4/8, REFLECT_X/Y = 16/32
//!     "scaling": {"max_upscale": 8, "max_downscale": 8},  // or null: cannot scale
//!     "color_encoding": true,        // has COLOR_ENCODING
//!     "color_range": true,           // has COLOR_RANGE
//!     "alpha": false,                // has "alpha"
//!     "formats": {"NV12": ["LINEAR"], "AR24": ["LINEAR", "0x0800000000000051"]}
//!   }]
//! }
//! ```
//!
//! Formats are DRM fourcc codes written as their (up to) four characters, trailing spaces
//! dropped ("XR24" is XRGB8888, "R8" is `R8  `); modifiers are "LINEAR", "INVALID" or a
//! `0x`-prefixed hex value. This is the same `formats` map `vitrine probe` writes.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{FormatModifier, PlaneCaps, DRM_FORMAT_MOD_INVALID, DRM_FORMAT_MOD_LINEAR};

/// A recorded set of planes with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaneTable {
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub notes: Vec<String>,
    pub planes: Vec<PlaneCaps>,
}

impl PlaneTable {
    pub fn from_json(text: &str) -> Result<PlaneTable, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// The fourcc code of four ASCII characters, e.g. `fourcc(b"NV12")`.
pub const fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*code)
}

/// "NV12", "XR24", "R8" (trailing spaces dropped).
pub fn fourcc_name(format: u32) -> String {
    let text: String =
        format.to_le_bytes().iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '?' }).collect();
    text.trim_end().to_string()
}

/// "LINEAR", "INVALID" or `0x…` hex.
pub fn modifier_name(modifier: u64) -> String {
    match modifier {
        DRM_FORMAT_MOD_LINEAR => "LINEAR".into(),
        DRM_FORMAT_MOD_INVALID => "INVALID".into(),
        m => format!("0x{m:016x}"),
    }
}

fn parse_fourcc(name: &str) -> Option<u32> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > 4 || !bytes.iter().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let mut code = [b' '; 4];
    code[..bytes.len()].copy_from_slice(bytes);
    Some(fourcc(&code))
}

fn parse_modifier(name: &str) -> Option<u64> {
    match name {
        "LINEAR" => Some(DRM_FORMAT_MOD_LINEAR),
        "INVALID" => Some(DRM_FORMAT_MOD_INVALID),
        _ => u64::from_str_radix(name.strip_prefix("0x")?, 16).ok(),
    }
}

/// `Vec<FormatModifier>` <-> `{"NV12": ["LINEAR"], …}`.
pub(super) mod formats_map {
    use super::*;

    pub fn serialize<S: Serializer>(formats: &[FormatModifier], s: S) -> Result<S::Ok, S::Error> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for fm in formats {
            map.entry(fourcc_name(fm.format)).or_default().push(modifier_name(fm.modifier));
        }
        map.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<FormatModifier>, D::Error> {
        use serde::de::Error;
        let map: BTreeMap<String, Vec<String>> = BTreeMap::deserialize(d)?;
        let mut out = Vec::new();
        for (name, modifiers) in map {
            let format = parse_fourcc(&name).ok_or_else(|| D::Error::custom(format!("bad fourcc {name:?}")))?;
            for m in modifiers {
                let modifier =
                    parse_modifier(&m).ok_or_else(|| D::Error::custom(format!("bad modifier {m:?} for {name}")))?;
                out.push(FormatModifier { format, modifier });
            }
        }
        Ok(out)
    }
}
