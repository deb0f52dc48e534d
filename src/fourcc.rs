//! Four-character codes (DRM formats, V4L2 pixel formats) and format modifiers: one place for
//! making them, naming them and asking what kind of pixels they describe.

/// The modifier of a plain row-major buffer.
pub const MOD_LINEAR: u64 = 0;
/// "No modifier given": the driver picks the layout.
pub const MOD_INVALID: u64 = 0x00ff_ffff_ffff_ffff;

/// The code of four ASCII characters, e.g. `fourcc(b"NV12")`.
pub const fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*code)
}

/// "NV12", "XR24", "R8" (trailing spaces dropped, bytes that are not printable shown as '?').
pub fn name(code: u32) -> String {
    let text: String =
        code.to_le_bytes().iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '?' }).collect();
    text.trim_end().to_string()
}

/// The code `name` gives back, for names of one to four printable characters.
pub fn parse(text: &str) -> Option<u32> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() > 4 || !bytes.iter().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let mut code = [b' '; 4];
    code[..bytes.len()].copy_from_slice(bytes);
    Some(fourcc(&code))
}

/// "LINEAR", "INVALID" or `0x…` hex.
pub fn modifier_name(modifier: u64) -> String {
    match modifier {
        MOD_LINEAR => "LINEAR".into(),
        MOD_INVALID => "INVALID".into(),
        m => format!("0x{m:016x}"),
    }
}

/// The modifier `modifier_name` gives back.
pub fn parse_modifier(text: &str) -> Option<u64> {
    match text {
        "LINEAR" => Some(MOD_LINEAR),
        "INVALID" => Some(MOD_INVALID),
        _ => u64::from_str_radix(text.strip_prefix("0x")?, 16).ok(),
    }
}

/// Whether a DRM RGB format carries alpha (AR24, AB24, RA24, BA24, ...).
pub fn has_alpha(code: u32) -> bool {
    matches!(&code.to_le_bytes()[..], [b'A', ..] | [_, _, b'A', _] | [b'R', b'A', ..] | [b'B', b'A', ..])
}

/// Whether a DRM format is YUV (NV12, YUYV, YU12, P010, ...).
pub fn is_yuv(code: u32) -> bool {
    matches!(&code.to_le_bytes()[..2], b"NV" | b"YU" | b"YV" | b"P0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(name(fourcc(b"NV12")), "NV12");
        assert_eq!(name(fourcc(b"R8  ")), "R8");
        assert_eq!(parse("R8"), Some(fourcc(b"R8  ")));
        assert_eq!(name(0x0000_0001), "????");
        assert_eq!(parse(""), None);
        assert_eq!(parse("TOOLONG"), None);
        assert_eq!(modifier_name(0x0800_0000_0000_0051), "0x0800000000000051");
        assert_eq!(parse_modifier("0x0800000000000051"), Some(0x0800_0000_0000_0051));
        assert_eq!(parse_modifier(&modifier_name(MOD_INVALID)), Some(MOD_INVALID));
    }

    #[test]
    fn kinds_of_pixels() {
        assert!(has_alpha(fourcc(b"AR24")) && has_alpha(fourcc(b"RA24")) && !has_alpha(fourcc(b"XR24")));
        assert!(is_yuv(fourcc(b"NV12")) && is_yuv(fourcc(b"P010")) && !is_yuv(fourcc(b"XR24")));
    }
}
