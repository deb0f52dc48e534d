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

use super::{FormatModifier, PlaneCaps};

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

/// `Vec<FormatModifier>` <-> `{"NV12": ["LINEAR"], …}`.
pub(super) mod formats_map {
    use super::*;

    pub fn serialize<S: Serializer>(formats: &[FormatModifier], s: S) -> Result<S::Ok, S::Error> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for fm in formats {
            map.entry(crate::fourcc::name(fm.format)).or_default().push(crate::fourcc::modifier_name(fm.modifier));
        }
        map.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<FormatModifier>, D::Error> {
        use serde::de::Error;
        let map: BTreeMap<String, Vec<String>> = BTreeMap::deserialize(d)?;
        let mut out = Vec::new();
        for (name, modifiers) in map {
            let format = crate::fourcc::parse(&name).ok_or_else(|| D::Error::custom(format!("bad fourcc {name:?}")))?;
            for m in modifiers {
                let modifier = crate::fourcc::parse_modifier(&m)
                    .ok_or_else(|| D::Error::custom(format!("bad modifier {m:?} for {name}")))?;
                out.push(FormatModifier { format, modifier });
            }
        }
        Ok(out)
    }
}
