//! The TOML configuration: schema, defaults, lookup and validation.
//!
//! The documented default configuration is `resources/vitrine.toml`; a test proves it parses to
//! exactly [`Config::default`]. Every error names the file, line and column.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The shipped, documented default configuration.
pub const DEFAULT_CONFIG: &str = include_str!("../resources/vitrine.toml");

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub outputs: OutputsConfig,
    pub background: BackgroundConfig,
    pub kiosk: KioskConfig,
    pub input: InputConfig,
    pub keyboard: KeyboardConfig,
    pub compat: CompatConfig,
    pub drm: DrmConfig,
    pub video: VideoConfig,
    pub schedule: ScheduleConfig,
    pub security: SecurityConfig,
    pub metrics: MetricsConfig,
    pub cec: CecConfig,
    pub audio: AudioConfig,
    pub log: LogConfig,
}

/// Sound: the playlist items' audio tracks, played through ALSA in step with the pictures (see
/// `audio`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioConfig {
    pub enabled: bool,
    /// The ALSA PCM, e.g. "default" (PipeWire or PulseAudio on a desktop, through their ALSA
    /// plugins) or "hdmi:CARD=0" on a board.
    pub device: String,
    /// Volume in percent (0 to 100).
    pub volume: u8,
    /// The device's buffer: what sound holds ahead (20 to 1000 ms).
    pub latency_ms: u32,
}

impl Default for AudioConfig {
    fn default() -> Self {
        AudioConfig { enabled: true, device: "default".into(), volume: 100, latency_ms: 100 }
    }
}

/// HDMI-CEC: the TV on each HDMI output woken (Image View On, Active Source) when the displays
/// come on and put in standby when they go off (see `cec`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CecConfig {
    pub enable: bool,
    /// The name the TV shows for vitrine's input (at most 14 ASCII characters).
    pub osd_name: String,
    /// Output name to adapter, e.g. { "HDMI-A-1" = "/dev/cec0" }, for adapters whose driver
    /// does not say which connector they serve. Empty: found by the adapters' connector info.
    pub devices: std::collections::BTreeMap<String, String>,
}

impl Default for CecConfig {
    fn default() -> Self {
        CecConfig { enable: true, osd_name: "vitrine".into(), devices: Default::default() }
    }
}

/// The Prometheus endpoint: the counters of `vitrine msg stats` and `status` as the text
/// exposition format, at `http://LISTEN/metrics`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// "ADDRESS:PORT" to listen on, e.g. "127.0.0.1:9102"; empty: off.
    pub listen: String,
}

/// Who may use the privileged protocols (virtual input, and later screen capture and output
/// management): the kiosk app vitrine launches (with everything in its process group), and
/// the clients whose executable is listed here. Decided when a client connects.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Absolute paths of executables, e.g. "/usr/bin/wayvnc".
    pub privileged_clients: Vec<String>,
}

/// The daily display schedule (local time): displays on from `on` until `off`, off (DPMS)
/// otherwise, touch and pointer input ignored while off. Both empty: always on.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// "HH:MM" or "HH:MM:SS".
    pub on: String,
    pub off: String,
}

impl ScheduleConfig {
    /// The opening hours, if any (the values are checked when the file is read).
    pub fn hours(&self) -> Option<crate::kiosk::schedule::Hours> {
        use crate::kiosk::schedule::{Hours, TimeOfDay};
        let on = TimeOfDay::try_from(self.on.clone()).ok()?;
        let off = TimeOfDay::try_from(self.off.clone()).ok()?;
        Some(Hours { on, off })
    }
}

/// How a picture is sized into its zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum VideoScale {
    /// As large as fits, keeping the aspect ratio (letterboxed).
    #[default]
    Fit,
    /// Pixel for pixel, centred (no scaling: any plane can show it).
    None,
}

/// What a plane that cannot be told a picture's colour (no COLOR_ENCODING/COLOR_RANGE: the
/// RK3566's VOP2, which converts every YUV window as BT.709 limited range) may show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ColourPolicy {
    /// Only pictures the plane converts right (BT.709 limited); others are composited.
    #[default]
    Exact,
    /// Every picture: zero copy, with the driver's conversion (said once, shown in `msg planes`).
    Fast,
}

/// The playlist and where video is shown.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct VideoConfig {
    /// Files played at start when no `--play` is given.
    pub playlist: Vec<std::path::PathBuf>,
    /// Start over after the last item.
    #[serde(rename = "loop")]
    pub loop_playlist: bool,
    pub scale: VideoScale,
    /// Where on the first output the video goes, as [x, y, width, height]; empty: the whole
    /// output.
    pub zone: Vec<i32>,
    /// Exact colours, or zero copy where a plane converts colours its own way.
    pub colour: ColourPolicy,
}

/// The DRM backend: which connectors and modes, how the rest is composited.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrmConfig {
    /// The card to drive (e.g. "/dev/dri/card1"); empty: the first one vitrine can drive.
    pub device: String,
    /// Connector name as `vitrine probe` shows it (e.g. "HDMI-A-1"); empty: every connected one.
    pub connector: String,
    /// WIDTHxHEIGHT[@HZ]; empty: the connector's preferred mode.
    pub mode: String,
    /// What composites the layers no plane takes (`--renderer` overrides).
    pub renderer: RendererChoice,
    /// Put layers on hardware planes; false composites everything onto the primary plane (for
    /// boards whose planes misbehave, and for testing composition).
    pub hardware_planes: bool,
    /// How the screens are mounted: turned this many degrees clockwise (portrait: 90 or 270).
    pub rotation: crate::rotation::Rotation,
}

impl Default for DrmConfig {
    fn default() -> Self {
        DrmConfig {
            device: String::new(),
            connector: String::new(),
            mode: String::new(),
            renderer: Default::default(),
            hardware_planes: true,
            rotation: Default::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputsConfig {
    /// Virtual outputs of the headless backend (`--output` overrides).
    pub headless: Vec<OutputSpec>,
    /// Initial window size of the nested backend (`--output` overrides).
    pub nested: OutputSpec,
}

impl Default for OutputsConfig {
    fn default() -> Self {
        OutputsConfig {
            headless: vec![OutputSpec::DEFAULT],
            nested: OutputSpec { width: 1280, height: 720, refresh_mhz: 60_000 },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackgroundConfig {
    /// Shown wherever no client and no video covers the output.
    pub color: Color,
    /// A PNG shown over the colour, filling each output (cropped to its shape); empty: none.
    pub image: String,
}

impl Default for BackgroundConfig {
    fn default() -> Self {
        BackgroundConfig { color: Color::rgb(0, 0, 0), image: String::new() }
    }
}

/// What happens when the kiosk app started with `-- APP` exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AppExitPolicy {
    /// vitrine exits too, with the app's exit status (like cage).
    #[default]
    Exit,
    /// vitrine starts the app again after a delay that doubles up to a maximum.
    Restart,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KioskConfig {
    pub on_app_exit: AppExitPolicy,
    pub restart_delay_ms: u64,
    pub restart_delay_max_ms: u64,
    /// Which output a toplevel goes to, by app id; unmatched toplevels go to the first output.
    pub placement: Vec<Placement>,
}

impl Default for KioskConfig {
    fn default() -> Self {
        KioskConfig {
            on_app_exit: AppExitPolicy::Exit,
            restart_delay_ms: 1000,
            restart_delay_max_ms: 30_000,
            placement: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    pub app_id: String,
    pub output: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// The pointer is hidden until a pointer device moves, and again after this long without motion
    /// (0: never hide it again once shown).
    pub hide_pointer_after_ms: u64,
    /// The output touchscreens are on, by name (e.g. "HDMI-A-1"); empty: the first output.
    pub touch_output: String,
    /// Ctrl+Alt+Fn switches VTs (DRM backend). Off by default: on a public kiosk, any keyboard
    /// plugged in would otherwise reach a login prompt.
    pub vt_switch: bool,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig { hide_pointer_after_ms: 5000, touch_output: String::new(), vt_switch: false }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyboardConfig {
    pub layout: String,
    pub variant: String,
    pub options: String,
    pub repeat_delay_ms: u32,
    pub repeat_rate: u32,
}

impl Default for KeyboardConfig {
    fn default() -> Self {
        KeyboardConfig {
            layout: "us".into(),
            variant: String::new(),
            options: String::new(),
            repeat_delay_ms: 600,
            repeat_rate: 25,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompatConfig {
    /// The xdg_wm_base version advertised (1 to 6). Some older clients bind whatever version is
    /// advertised yet cannot handle its newer events (Debian 12's weston-presentation-shm aborts
    /// on configure_bounds, version 4); 3 suits them.
    pub xdg_wm_base_version: u32,
}

impl Default for CompatConfig {
    fn default() -> Self {
        CompatConfig { xdg_wm_base_version: 6 }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter (`RUST_LOG` syntax); `RUST_LOG` itself overrides it.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { filter: "info".into() }
    }
}

/// An opaque sRGB colour written `#rrggbb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Color {
    pub r: u8,
    pub g: u8,
    pub b: u8,
}

impl Color {
    pub const fn rgb(r: u8, g: u8, b: u8) -> Self {
        Color { r, g, b }
    }

    pub fn to_f32(self) -> [f32; 4] {
        [self.r as f32 / 255.0, self.g as f32 / 255.0, self.b as f32 / 255.0, 1.0]
    }
}

impl FromStr for Color {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s
            .strip_prefix('#')
            .filter(|h| h.len() == 6 && h.chars().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| format!("'{s}' is not a colour: write #rrggbb"))?;
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0);
        Ok(Color::rgb(byte(0), byte(2), byte(4)))
    }
}

impl TryFrom<String> for Color {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Color> for String {
    fn from(c: Color) -> String {
        format!("#{:02x}{:02x}{:02x}", c.r, c.g, c.b)
    }
}

impl<'de> Deserialize<'de> for OutputSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which renderer composites (`--renderer`, `[drm] renderer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RendererChoice {
    /// GLES where EGL works on the device, pixman otherwise.
    #[default]
    Auto,
    Gles,
    Pixman,
}

/// `WIDTHxHEIGHT@HZ`, e.g. `1920x1080@60` (the refresh rate is optional and defaults to 60).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct OutputSpec {
    pub width: u32,
    pub height: u32,
    /// Refresh rate in millihertz.
    pub refresh_mhz: u32,
}

impl OutputSpec {
    pub const DEFAULT: OutputSpec = OutputSpec { width: 1920, height: 1080, refresh_mhz: 60_000 };
}

impl FromStr for OutputSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}' is not WIDTHxHEIGHT[@HZ] (e.g. 1920x1080@60)");
        let (size, hz) = match s.split_once('@') {
            Some((size, hz)) => (size, Some(hz)),
            None => (s, None),
        };
        let (w, h) = size.split_once('x').ok_or_else(bad)?;
        let width: u32 = w.trim().parse().map_err(|_| bad())?;
        let height: u32 = h.trim().parse().map_err(|_| bad())?;
        let refresh_hz: f64 = match hz {
            Some(hz) => hz.trim().parse().map_err(|_| bad())?,
            None => 60.0,
        };
        if !(1..=16384).contains(&width) || !(1..=16384).contains(&height) {
            return Err(format!("'{s}': width and height must be between 1 and 16384"));
        }
        if !(1.0..=1000.0).contains(&refresh_hz) {
            return Err(format!("'{s}': refresh rate must be between 1 and 1000 Hz"));
        }
        Ok(OutputSpec { width, height, refresh_mhz: (refresh_hz * 1000.0).round() as u32 })
    }
}

impl std::fmt::Display for OutputSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hz = self.refresh_mhz as f64 / 1000.0;
        write!(f, "{}x{}@{}", self.width, self.height, hz)
    }
}

/// A configuration error with its position in the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid { path: String, line: usize, column: usize, message: String },
}

impl Config {
    /// Parse a configuration from text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|err| {
            let (line, column) = err.span().map(|s| line_column(text, s.start)).unwrap_or((1, 1));
            ConfigError::Invalid { path: origin.to_string(), line, column, message: err.message().trim().to_string() }
        })?;
        config.validate(text, origin)?;
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: origin.clone(), source })?;
        Config::parse(&text, &origin)
    }

    /// Checks that serde cannot express: relations between fields.
    fn validate(&self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let at = |needle: &str, message: String| {
            let (line, column) = text.find(needle).map(|i| line_column(text, i)).unwrap_or((1, 1));
            ConfigError::Invalid { path: origin.to_string(), line, column, message }
        };
        if self.outputs.headless.is_empty() {
            return Err(at("headless", "outputs.headless must list at least one output".into()));
        }
        if self.kiosk.restart_delay_max_ms < self.kiosk.restart_delay_ms {
            return Err(at(
                "restart_delay_max_ms",
                "kiosk.restart_delay_max_ms must not be smaller than kiosk.restart_delay_ms".into(),
            ));
        }
        for p in &self.kiosk.placement {
            if p.app_id.is_empty() || p.output.is_empty() {
                return Err(at("placement", "kiosk.placement needs a non-empty app_id and output".into()));
            }
        }
        if !self.drm.mode.is_empty() {
            if let Err(err) = self.drm.mode.parse::<OutputSpec>() {
                return Err(at("mode", format!("drm.mode: {err}")));
            }
        }
        if let Some(path) = self.security.privileged_clients.iter().find(|p| !p.starts_with('/')) {
            return Err(at(
                "privileged_clients",
                format!("security.privileged_clients: {path:?} is not an absolute path to an executable"),
            ));
        }
        if self.cec.osd_name.is_empty() || self.cec.osd_name.len() > 14 || !self.cec.osd_name.is_ascii() {
            return Err(at("osd_name", "cec.osd_name must be 1 to 14 ASCII characters".into()));
        }
        if let Some((output, dev)) = self.cec.devices.iter().find(|(_, d)| !d.starts_with("/dev/")) {
            return Err(at(
                "devices",
                format!("cec.devices: {output:?} = {dev:?} is not a device path like \"/dev/cec0\""),
            ));
        }
        if self.audio.volume > 100 {
            return Err(at("volume", format!("audio.volume is {}: it is a percentage, 0 to 100", self.audio.volume)));
        }
        if !(20..=1000).contains(&self.audio.latency_ms) {
            return Err(at(
                "latency_ms",
                format!("audio.latency_ms is {}: it must be 20 to 1000", self.audio.latency_ms),
            ));
        }
        if self.audio.device.is_empty() {
            return Err(at("[audio]", "audio.device must name an ALSA PCM, e.g. \"default\"".into()));
        }
        if !self.metrics.listen.is_empty() && self.metrics.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(at(
                "listen",
                format!("metrics.listen: {:?} is not ADDRESS:PORT (e.g. \"127.0.0.1:9102\")", self.metrics.listen),
            ));
        }
        if !(1..=6).contains(&self.compat.xdg_wm_base_version) {
            return Err(at("xdg_wm_base_version", "compat.xdg_wm_base_version must be between 1 and 6".into()));
        }
        let zone = &self.video.zone;
        if !zone.is_empty() && (zone.len() != 4 || zone[2] <= 0 || zone[3] <= 0) {
            return Err(at("zone", "video.zone must be [x, y, width, height] with a positive size".into()));
        }
        if self.keyboard.repeat_rate > 1000 {
            return Err(at("repeat_rate", "keyboard.repeat_rate must be at most 1000".into()));
        }
        let schedule = &self.schedule;
        for (key, value) in [("on", &schedule.on), ("off", &schedule.off)] {
            if !value.is_empty() {
                if let Err(err) = crate::kiosk::schedule::TimeOfDay::try_from(value.clone()) {
                    return Err(at(&format!("{key} = {value:?}"), format!("schedule.{key}: {err}")));
                }
            }
        }
        if schedule.on.is_empty() != schedule.off.is_empty() {
            return Err(at("[schedule]", "schedule needs both on and off (or neither)".into()));
        }
        if !self.background.image.is_empty() {
            if let Err(err) = crate::image::RgbaImage::load_png(Path::new(&self.background.image)) {
                return Err(at("image", format!("background.image: {err}")));
            }
        }
        Ok(())
    }

    /// The output a toplevel with this app id should go to, if the config names one.
    pub fn output_for_app(&self, app_id: &str) -> Option<&str> {
        self.kiosk.placement.iter().find(|p| p.app_id == app_id).map(|p| p.output.as_str())
    }
}

/// Where the configuration is looked up when `--config` is not given.
pub fn default_paths() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        paths.push(PathBuf::from(dir).join("vitrine/vitrine.toml"));
    } else if let Some(home) = std::env::var_os("HOME") {
        paths.push(PathBuf::from(home).join(".config/vitrine/vitrine.toml"));
    }
    paths.push(PathBuf::from("/etc/vitrine/vitrine.toml"));
    paths
}

/// Load the configuration from `explicit`, else from the first default path that exists, else the
/// built-in defaults. Returns the path it came from, if any.
pub fn find_and_load(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>), ConfigError> {
    if let Some(path) = explicit {
        return Ok((Config::load(path)?, Some(path.to_path_buf())));
    }
    for path in default_paths() {
        if path.exists() {
            return Ok((Config::load(&path)?, Some(path)));
        }
    }
    Ok((Config::default(), None))
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_spec_parses_with_and_without_rate() {
        assert_eq!(
            "1280x720@30".parse::<OutputSpec>().unwrap(),
            OutputSpec { width: 1280, height: 720, refresh_mhz: 30_000 }
        );
        assert_eq!("640x480".parse::<OutputSpec>().unwrap().refresh_mhz, 60_000);
        assert_eq!("1920x1080@59.94".parse::<OutputSpec>().unwrap().refresh_mhz, 59_940);
    }

    #[test]
    fn output_spec_rejects_nonsense() {
        for bad in ["", "1920", "0x10", "10x10@0", "axb@60", "99999x10"] {
            assert!(bad.parse::<OutputSpec>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn shipped_default_matches_builtin_defaults() {
        let parsed = Config::parse(DEFAULT_CONFIG, "resources/vitrine.toml").unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn the_schedule_needs_valid_times_on_both_ends() {
        let ok = Config::parse("[schedule]\non = \"07:30\"\noff = \"22:00\"\n", "s.toml").unwrap();
        let hours = ok.schedule.hours().unwrap();
        assert!(hours.is_on(12 * 3600) && !hours.is_on(23 * 3600));
        let err = Config::parse("[schedule]\non = \"7:30\"\noff = \"22:00\"\n", "s.toml").unwrap_err().to_string();
        assert!(err.starts_with("s.toml:2:1:") && err.contains("schedule.on"), "{err}");
        let err = Config::parse("[schedule]\non = \"07:30\"\n", "s.toml").unwrap_err().to_string();
        assert!(err.contains("both on and off"), "{err}");
        assert!(Config::default().schedule.hours().is_none());
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(Config::parse("", "empty").unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_is_reported_with_position() {
        let text = "[kiosk]\non_app_exit = \"restart\"\nbogus = 1\n";
        let err = Config::parse(text, "x.toml").unwrap_err().to_string();
        assert!(err.starts_with("x.toml:3:1:"), "{err}");
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn bad_value_is_reported_at_the_value() {
        let text = "[background]\ncolor = \"red\"\n";
        let err = Config::parse(text, "x.toml").unwrap_err().to_string();
        assert!(err.starts_with("x.toml:2:9:"), "{err}");
        assert!(err.contains("#rrggbb"), "{err}");

        let text = "[outputs]\nheadless = [\"1920x1080@60\", \"wide\"]\n";
        let err = Config::parse(text, "y.toml").unwrap_err().to_string();
        assert!(err.starts_with("y.toml:2:"), "{err}");
        assert!(err.contains("'wide'"), "{err}");
    }

    #[test]
    fn relations_are_validated() {
        let text = "[kiosk]\nrestart_delay_ms = 5000\nrestart_delay_max_ms = 10\n";
        let err = Config::parse(text, "z.toml").unwrap_err().to_string();
        assert!(err.starts_with("z.toml:3:1:"), "{err}");
    }

    #[test]
    fn placement_and_policy_parse() {
        let text = r#"
[kiosk]
on_app_exit = "restart"
[[kiosk.placement]]
app_id = "org.example.Menu"
output = "HEADLESS-2"
"#;
        let config = Config::parse(text, "p.toml").unwrap();
        assert_eq!(config.kiosk.on_app_exit, AppExitPolicy::Restart);
        assert_eq!(config.output_for_app("org.example.Menu"), Some("HEADLESS-2"));
        assert_eq!(config.output_for_app("other"), None);
    }

    #[test]
    fn colour_round_trips() {
        let c: Color = "#10a0ff".parse().unwrap();
        assert_eq!(c, Color::rgb(0x10, 0xa0, 0xff));
        assert_eq!(String::from(c), "#10a0ff");
    }
}
