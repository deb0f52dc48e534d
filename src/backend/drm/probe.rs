//! `vitrine probe`: what this machine's display hardware offers, for a signage integrator's first
//! look at a new board and for recording plane tables.

use std::collections::BTreeMap;

use drm::control::Device as ControlDevice;
use drm::Device as BasicDevice;
use serde_json::{json, Value};

use super::device::{card_nodes, connectors, planes, Card};
use crate::fourcc::{modifier_name, name as fourcc_name};

/// Describe every DRM card node.
pub fn probe() -> Value {
    let mut devices = Vec::new();
    for path in card_nodes() {
        match Card::open(&path) {
            Ok(card) => devices.push(describe(&card)),
            Err(err) => devices.push(json!({ "path": path, "error": err.to_string() })),
        }
    }
    json!({ "drm": devices })
}

fn describe(card: &Card) -> Value {
    let driver = card.get_driver().map(|d| d.name().to_string_lossy().into_owned()).unwrap_or_default();
    let crtcs: Vec<u32> =
        card.resource_handles().map(|r| r.crtcs().iter().map(|c| u32::from(*c)).collect()).unwrap_or_default();
    let connectors: Vec<Value> = match connectors(card) {
        Ok(list) => list
            .iter()
            .map(|c| {
                json!({
                    "id": u32::from(c.handle),
                    "name": c.name,
                    "connected": c.connected,
                    "writeback": c.writeback,
                    "crtcs": c.possible_crtcs.iter().map(|h| u32::from(*h)).collect::<Vec<_>>(),
                    "modes": c.modes.iter().map(|m| json!({
                        "name": m.name().to_string_lossy(),
                        "width": m.size().0,
                        "height": m.size().1,
                        "refresh_hz": m.vrefresh(),
                        "preferred": m.mode_type().contains(drm::control::ModeTypeFlags::PREFERRED),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
        Err(err) => vec![json!({ "error": err.to_string() })],
    };
    let planes: Vec<Value> = match planes(card) {
        Ok(list) => list
            .iter()
            .map(|p| {
                let mut formats: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for fm in &p.formats {
                    formats.entry(fourcc_name(fm.format)).or_default().push(modifier_name(fm.modifier));
                }
                let zpos = p.props.has("zpos").then(|| {
                    let (min, max) = p.props.range("zpos").unwrap_or((0, 0));
                    json!({
                        "min": min,
                        "max": max,
                        "value": p.props.value("zpos"),
                        "immutable": p.props.immutable("zpos"),
                    })
                });
                json!({
                    "id": u32::from(p.handle),
                    "type": p.kind,
                    "possible_crtcs": p.possible_crtcs,
                    "zpos": zpos,
                    "rotation": p.props.has("rotation").then(|| {
                        p.props.bitmask_entries(card, "rotation").into_iter().map(|(_, n)| n).collect::<Vec<_>>()
                    }),
                    "color_encoding": p.props.enum_names("COLOR_ENCODING"),
                    "color_range": p.props.enum_names("COLOR_RANGE"),
                    "alpha": p.props.has("alpha"),
                    "pixel_blend_mode": p.props.enum_names("pixel blend mode"),
                    "formats": formats,
                })
            })
            .collect(),
        Err(err) => vec![json!({ "error": err.to_string() })],
    };
    json!({
        "path": card.path,
        "driver": driver,
        "crtcs": crtcs,
        "connectors": connectors,
        "planes": planes,
    })
}

/// The human-readable form of a probe.
pub fn human(probe: &Value) -> String {
    let mut out = String::new();
    let devices = probe["drm"].as_array().cloned().unwrap_or_default();
    if devices.is_empty() {
        out += "no DRM devices (/dev/dri has no card node)\n";
    }
    for d in devices {
        if let Some(err) = d["error"].as_str() {
            out += &format!("{}: {err}\n", d["path"].as_str().unwrap_or("?"));
            continue;
        }
        out += &format!(
            "{} ({}), CRTCs {}\n",
            d["path"].as_str().unwrap_or("?"),
            d["driver"].as_str().unwrap_or("?"),
            d["crtcs"]
        );
        for c in d["connectors"].as_array().into_iter().flatten() {
            out += &format!(
                "  connector {} {}{}{}\n",
                c["id"],
                c["name"].as_str().unwrap_or("?"),
                if c["connected"] == true { " connected" } else { " disconnected" },
                if c["writeback"] == true { " (writeback)" } else { "" }
            );
            for m in c["modes"].as_array().into_iter().flatten().take(5) {
                out += &format!(
                    "    {}x{}@{}{}\n",
                    m["width"],
                    m["height"],
                    m["refresh_hz"],
                    if m["preferred"] == true { " preferred" } else { "" }
                );
            }
        }
        for p in d["planes"].as_array().into_iter().flatten() {
            let formats: Vec<String> = p["formats"]
                .as_object()
                .map(|f| {
                    f.iter()
                        .map(|(k, v)| {
                            format!("{k}{}", if v.as_array().map(|a| a.len()).unwrap_or(0) > 1 { "+mods" } else { "" })
                        })
                        .collect()
                })
                .unwrap_or_default();
            out += &format!(
                "  plane {} {} zpos {} rotation {} colour {} | {}\n",
                p["id"],
                p["type"].as_str().unwrap_or("?"),
                if p["zpos"].is_null() {
                    "-".to_string()
                } else {
                    format!("{}..{}", p["zpos"]["min"], p["zpos"]["max"])
                },
                p["rotation"],
                if p["color_encoding"].as_array().map(|a| a.is_empty()).unwrap_or(true) { "no" } else { "yes" },
                formats.join(" ")
            );
        }
    }
    out
}
