//! vitrine on a vkms device shaped like the RK3566's display controller (VOP2) as Linux 7.3
//! registers it, made through configfs with the knobs tests/vm/vkms-planes.patch gives vkms:
//! per-plane formats and modifiers (the kernel refuses anything else), zpos, and no colour
//! properties (the VOP2 converts YUV as BT.709 limited and cannot be told otherwise).
//!
//! One display (video port 0): Smart0 is the primary (RGB only, linear), Esmart0 an overlay (RGB
//! and YUV, linear: the only plane for a decoder's NV12), Cluster0 an overlay whose every format
//! needs AFBC (no linear buffer can go there). Two displays: Esmart0 becomes the second port's
//! primary, and the first port is left without a plane for linear NV12.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::common::{self, BG_CONFIG};
use vitrine::control::protocol::Request;

const SMART: &str = "XR24 AR24 XB24 AB24 RG24 BG24 RG16 BG16";
const ESMART: &str = "XR24 AR24 XB24 AB24 RG24 BG24 RG16 BG16 NV12 NV21 NV15 NV16 NV61 NV20 NV24 NV42 NV30 YVYU VYUY";
const CLUSTER: &str = "XR30 XB30 XR24 AR24 XB24 AB24 RG24 BG24 RG16 BG16 YU08 YU10 YUYV Y210";
/// The VOP2's AFBC modifiers: ARM AFBC 16x16 with none, SPARSE, YTR, CBR, SPLIT combinations.
const AFBC: [u64; 9] = [0x01, 0x41, 0x11, 0x81, 0x51, 0xc1, 0x91, 0xd1, 0x71];

/// The emulated VOP2 with one or two displays; removed again when dropped.
pub struct Vop2 {
    dir: PathBuf,
    heads: usize,
    pub card: PathBuf,
}

fn write(path: &Path, value: &str) {
    std::fs::write(path, value)
        .unwrap_or_else(|e| panic!("{}: {e} (vkms without tests/vm/vkms-planes.patch?)", path.display()));
}

fn link(target: &Path, dir: &Path) {
    let name = target.file_name().unwrap();
    std::os::unix::fs::symlink(target, dir.join(name))
        .unwrap_or_else(|e| panic!("link {} into {}: {e}", target.display(), dir.display()));
}

const PLANES: [&str; 3] = ["smart0", "esmart0", "cluster0"];

impl Vop2 {
    pub fn new(name: &str, heads: usize) -> Vop2 {
        let root = Path::new("/sys/kernel/config");
        if !root.join("vkms").is_dir() {
            let _ = std::process::Command::new("mount").args(["-t", "configfs", "none", "/sys/kernel/config"]).status();
        }
        let dir = root.join("vkms").join(name);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e} (vkms without configfs?)", dir.display()));
        for i in 0..heads {
            let (crtc, encoder, connector) = (
                dir.join(format!("crtcs/crtc{i}")),
                dir.join(format!("encoders/encoder{i}")),
                dir.join(format!("connectors/connector{i}")),
            );
            for d in [&crtc, &encoder, &connector] {
                std::fs::create_dir(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
            }
            link(&crtc, &encoder.join("possible_crtcs"));
            link(&encoder, &connector.join("possible_encoders"));
            write(&connector.join("status"), "1");
        }
        write(&dir.join("crtcs/crtc0/writeback"), "1");
        let crtc = |i: usize| dir.join(format!("crtcs/crtc{i}"));
        let afbc: Vec<String> = CLUSTER
            .split(' ')
            .flat_map(|f| AFBC.iter().map(move |m| format!("{f}:0x{:016x}", 0x0800_0000_0000_0000u64 | m)))
            .collect();
        // (name, type: 1 primary 0 overlay, formats, zpos, rotations, CRTCs) in registration
        // order. Rotations: Smart and Esmart windows only reflect (ROTATE_0 | REFLECT_Y), the
        // Cluster turns by 90 and 270 and reflects both ways.
        let esmart_crtcs: Vec<usize> = if heads == 2 { vec![1] } else { vec![0] };
        let specs = [
            ("smart0", "1", SMART.to_string(), 0, 33, vec![0]),
            ("esmart0", if heads == 2 { "1" } else { "0" }, ESMART.to_string(), 3, 33, esmart_crtcs),
            ("cluster0", "0", afbc.join(" "), 4, 59, (0..heads).collect()),
        ];
        for (plane, kind, formats, zpos, rotations, crtcs) in specs {
            let p = dir.join("planes").join(plane);
            std::fs::create_dir(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            write(&p.join("type"), kind);
            write(&p.join("formats"), &formats);
            write(&p.join("zpos_min"), "0");
            write(&p.join("zpos_max"), "5");
            write(&p.join("zpos"), &zpos.to_string());
            write(&p.join("color_properties"), "0");
            write(&p.join("rotations"), &rotations.to_string());
            for c in crtcs {
                link(&crtc(c), &p.join("possible_crtcs"));
            }
        }
        let before = super::display::cards();
        write(&dir.join("enabled"), "1");
        let mut card = None;
        assert!(
            common::wait_until(Duration::from_secs(10), || {
                card = super::display::cards()
                    .into_iter()
                    .find(|c| !before.contains(c) && super::display::card_of_device(c, name));
                card.is_some()
            }),
            "the configfs device {name} got no card node"
        );
        Vop2 { dir, heads, card: card.unwrap() }
    }

    /// The planes as `vitrine probe` reads them from the kernel, by window name (registration
    /// order: the kernel numbers them in the order they were made).
    pub fn planes(&self) -> Vec<(&'static str, serde_json::Value)> {
        let probe =
            std::process::Command::new(env!("CARGO_BIN_EXE_vitrine")).args(["probe", "--json"]).output().unwrap();
        let probe: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
        let card = probe["drm"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["path"] == self.card.display().to_string())
            .unwrap_or_else(|| panic!("{} not probed: {probe}", self.card.display()))
            .clone();
        let mut planes = card["planes"].as_array().unwrap().clone();
        planes.sort_by_key(|p| p["id"].as_u64());
        assert_eq!(planes.len(), 3, "the VOP2 has three planes: {card}");
        PLANES.into_iter().zip(planes).collect()
    }

    /// The kernel's id of window `name`.
    pub fn id(&self, name: &str) -> u64 {
        self.planes().into_iter().find(|(n, _)| *n == name).and_then(|(_, p)| p["id"].as_u64()).unwrap()
    }
}

impl Drop for Vop2 {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("enabled"), "0");
        let unlink_all = |d: PathBuf| {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        };
        for plane in PLANES {
            unlink_all(self.dir.join(format!("planes/{plane}/possible_crtcs")));
            let _ = std::fs::remove_dir(self.dir.join(format!("planes/{plane}")));
        }
        for i in 0..self.heads {
            unlink_all(self.dir.join(format!("connectors/connector{i}/possible_encoders")));
            unlink_all(self.dir.join(format!("encoders/encoder{i}/possible_crtcs")));
            for d in [format!("connectors/connector{i}"), format!("encoders/encoder{i}"), format!("crtcs/crtc{i}")] {
                let _ = std::fs::remove_dir(self.dir.join(d));
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The kernel describes the planes as the VOP2's: exactly the formats and modifiers given (IN_FORMATS),
/// zpos 0..5, the rotations each window has, no colour properties.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn the_emulated_vop2_has_the_rk3566_planes() {
    super::assert_in_vm();
    let vop2 = Vop2::new("vop2-shape", 1);
    for (name, plane) in vop2.planes() {
        let formats = plane["formats"].as_object().unwrap();
        let mut fourccs: Vec<&str> = formats.keys().map(|k| k.as_str()).collect();
        fourccs.sort();
        let mut expected: Vec<&str> = match name {
            "smart0" => SMART,
            "esmart0" => ESMART,
            _ => CLUSTER,
        }
        .split(' ')
        .collect();
        expected.sort();
        assert_eq!(fourccs, expected, "{name}: {plane}");
        let linear = formats.values().all(|m| m.as_array().unwrap().iter().all(|m| m == "LINEAR"));
        assert_eq!(linear, name != "cluster0", "{name}: {plane}");
        if name == "cluster0" {
            assert!(formats.values().all(|m| m.as_array().unwrap().len() == AFBC.len()), "{plane}");
        }
        assert_eq!(plane["type"], if name == "smart0" { "Primary" } else { "Overlay" }, "{plane}");
        assert_eq!((plane["zpos"]["min"].as_u64(), plane["zpos"]["max"].as_u64()), (Some(0), Some(5)), "{plane}");
        assert!(plane["color_encoding"].as_array().is_none_or(|e| e.is_empty()), "{name} has COLOR_ENCODING: {plane}");
        let mut rotations: Vec<&str> =
            plane["rotation"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
        rotations.sort();
        let expected = if name == "cluster0" {
            vec!["reflect-x", "reflect-y", "rotate-0", "rotate-270", "rotate-90"]
        } else {
            vec!["reflect-y", "rotate-0"]
        };
        assert_eq!(rotations, expected, "{name}: {plane}");
    }
}

/// Video (BT.709 limited: the colour the VOP2 converts right) with a client's XRGB8888 dmabuf
/// over it, centred and in a zone: the video goes on Esmart0 (the only plane with linear NV12),
/// the overlay on Smart0 raised above it, nothing is composited; over a coloured background the
/// video is composited with it (see below). The kernel accepts every plan vitrine commits, and the writeback
/// shows the overlay over the video each time.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn on_the_vop2_video_takes_esmart0_under_a_client_on_smart0() {
    use common::wl::{dmabuf_buffer, setup, top_overlay, udmabuf};
    use std::io::Write;

    super::assert_in_vm();
    let vop2 = Vop2::new("vop2-video", 1);
    let (esmart0, smart0) = (vop2.id("esmart0"), vop2.id("smart0"));
    // A coloured background needs a composition below the video, on Smart0 (the only other plane
    // that takes a linear buffer: Cluster0 takes none); no plane is then left above Esmart0 but
    // Esmart0 itself, so one of video and overlay is composited: the planner keeps the overlay
    // on Esmart0 and composites the video with the background. Black needs no layer.
    const BLACK: &str = "[background]\ncolor = \"#000000\"\n";
    for (case, background, zone) in
        [("centred", BLACK, ""), ("zone", BLACK, "zone = [64, 96, 640, 480]\n"), ("background", BG_CONFIG, "")]
    {
        let config =
            format!("{background}[drm]\ndevice = \"{}\"\n[video]\nscale = \"none\"\n{zone}", vop2.card.display());
        let vitrine = super::play_looping(&format!("vm-vop2-{case}"), "colour-709.mp4", config);
        super::wait_for_pictures(&vitrine, 3);
        let stream = std::os::unix::net::UnixStream::connect(vitrine.runtime.join(&vitrine.socket)).unwrap();
        let conn = wayland_client::Connection::from_socket(stream).unwrap();
        let (g, mut queue, mut client) = setup(&conn);
        let qh = queue.handle();
        let (w, h) = (256i32, 64i32);
        let (surface, _overlay) = top_overlay(&g, &mut queue, &mut client, "vitrine.test.ticker", (w, h), 200);
        let mut buf = udmabuf((w * h * 4) as usize).expect("/dev/udmabuf");
        buf.memfd.write_all(&[0x30u8, 0xc0, 0x10, 0xff].repeat((w * h) as usize)).unwrap();
        let buffer = dmabuf_buffer(&g, &qh, &buf, (w, h), u32::from_le_bytes(*b"XR24"), &[(0, (w * 4) as u32)]);
        surface.attach(Some(&buffer), 0, 0);
        surface.damage_buffer(0, 0, w, h);
        surface.commit();
        queue.roundtrip(&mut client).unwrap();

        let layers = |vitrine: &common::Vitrine| {
            vitrine.ok(&Request::Planes)["outputs"][0]["layers"].as_array().cloned().unwrap_or_default()
        };
        let placed = |layers: &[serde_json::Value], source: &str, plane: u64| {
            layers.iter().any(|l| l["source"] == source && l["plane"] == plane && l["composited"] == false)
        };
        let composited = |layers: &[serde_json::Value], source: &str| {
            layers.iter().any(|l| l["source"] == source && l["composited"] == true)
        };
        assert!(
            common::wait_until(Duration::from_secs(30), || {
                let l = layers(&vitrine);
                let ticker = l.iter().any(|l| l["name"] == "vitrine.test.ticker");
                if case == "background" {
                    ticker && composited(&l, "video") && placed(&l, "client", esmart0)
                } else {
                    placed(&l, "video", esmart0) && placed(&l, "client", smart0)
                }
            }),
            "{case}: not the expected plan (video on Esmart0 {esmart0} and the overlay on Smart0 {smart0}; over a background, the overlay on Esmart0): {:?}\nlog:\n{}",
            layers(&vitrine),
            vitrine.log()
        );
        assert_eq!(vitrine.ok(&Request::Pause)["paused"], true);
        let layers = layers(&vitrine);
        if case == "background" {
            let video = layers.iter().find(|l| l["source"] == "video").unwrap();
            assert!(video["reason"].as_str().unwrap_or_default().contains("holds another layer"), "{video}");
        } else {
            assert!(layers.iter().all(|l| l["composited"] == false), "{case}: {layers:?}");
        }
        if case == "background" {
            assert!(common::count_near(&vitrine.screenshot("vop2-bg"), common::BG, 8) > 100_000, "the background");
        }
        let stats = vitrine.ok(&Request::Stats);
        assert_eq!(stats["commits_refused"], 0, "{case}: the kernel refused a commit: {stats}");
        // The writeback: the overlay's green where it is, the video's bars under and beside it.
        let image = vitrine.screenshot(&format!("vop2-{case}"));
        let x0 = (1024 - w as u32) / 2;
        assert!(
            image.fraction_differing((x0, 200, w as u32, h as u32), [0x10, 0xc0, 0x30], 4) < 0.01,
            "{case}: the overlay's colour"
        );
        assert!(common::count_near(&image, [189, 191, 0], 24) > 5_000, "{case}: the video's yellow bar");
        if !zone.is_empty() {
            // In the zone: nothing of the video right of x = 704 or below y = 576.
            assert!(
                image.fraction_differing((720, 0, 304, 768), [0, 0, 0], 8) < 0.01,
                "{case}: the video is outside its zone"
            );
        }
        println!("{case}: {layers:?}; {} commits, none refused", stats["commits"]);
        drop(buffer);
    }
}

/// Two displays: Esmart0 is the second port's primary, so the first port has no plane for the
/// decoder's linear NV12. The planner says why for each plane (Smart0 has no NV12, Cluster0 needs
/// AFBC) without asking the kernel, composites the video, and the writeback shows it.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn with_two_vop2_displays_the_first_composites_its_video() {
    super::assert_in_vm();
    let vop2 = Vop2::new("vop2-two", 2);
    let planes = vop2.planes();
    assert_eq!(planes[1].1["possible_crtcs"], 2, "Esmart0 belongs to the second port: {:?}", planes[1]);
    let config = format!("{BG_CONFIG}[drm]\ndevice = \"{}\"\n[video]\nscale = \"none\"\n", vop2.card.display());
    let vitrine = super::play_looping("vm-vop2-two", "colour-709.mp4", config);
    super::wait_for_pictures(&vitrine, 3);
    assert_eq!(vitrine.ok(&Request::Outputs)["outputs"].as_array().map(|o| o.len()), Some(2));
    assert_eq!(vitrine.ok(&Request::Pause)["paused"], true);
    let report = vitrine.ok(&Request::Planes);
    let video = report["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|o| o["layers"].as_array().cloned().unwrap_or_default())
        .find(|l| l["source"] == "video")
        .unwrap_or_else(|| panic!("no video layer: {report}"));
    assert_eq!(video["composited"], true, "{report}");
    let reason = video["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("no NV12"), "the planner's reason: {reason}");
    let stats = vitrine.ok(&Request::Stats);
    assert_eq!(stats["commits_refused"], 0, "{stats}");
    assert!(stats["frames_composited"].as_u64().unwrap() > 0, "{stats}");
    let image = vitrine.screenshot("vop2-two");
    assert!(common::count_near(&image, [189, 191, 0], 24) > 5_000, "the composited video's yellow bar");
    println!("two displays: video composited on the first ({reason})");
}

/// A panel turned 90°: Esmart0 only reflects, so the planner composites the video (its reason:
/// the plane cannot rotate, as the kernel refuses ROTATE_90 there, see tests/vm/check-vkms), the
/// composition on Smart0 is drawn turned, no commit is refused, and the writeback shows the bars
/// running top to bottom.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn on_a_turned_vop2_panel_the_video_is_composited_turned() {
    super::assert_in_vm();
    let vop2 = Vop2::new("vop2-turned", 1);
    let config = format!(
        "[background]\ncolor = \"#000000\"\n[drm]\ndevice = \"{}\"\nrotation = 90\n[video]\nscale = \"none\"\n",
        vop2.card.display()
    );
    let vitrine = super::play_looping("vm-vop2-turned", "colour-709.mp4", config);
    super::wait_for_pictures(&vitrine, 3);
    assert_eq!(vitrine.ok(&Request::Pause)["paused"], true);
    let report = vitrine.ok(&Request::Planes);
    let video = report["outputs"][0]["layers"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["source"] == "video").cloned())
        .unwrap_or_else(|| panic!("no video layer: {report}"));
    assert_eq!(video["composited"], true, "{report}");
    let reason = video["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("rotat"), "the planner's reason is not the rotation: {reason}");
    let stats = vitrine.ok(&Request::Stats);
    assert_eq!(stats["commits_refused"], 0, "{stats}");
    // visl's bars run left to right in the picture: on the panel turned 90°, top to bottom (the
    // writeback is the panel's picture, 1024x768, with the 480x640 turned video in its middle).
    let image = vitrine.screenshot("vop2-turned");
    let mean_y = |rgb: [u8; 3]| {
        let (mut sum, mut n) = (0u64, 0u64);
        for y in (0..image.height).step_by(4) {
            for x in (0..image.width).step_by(4) {
                if image.pixel(x, y).iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 24) {
                    sum += y as u64;
                    n += 1;
                }
            }
        }
        assert!(n > 200, "colour {rgb:?} is (almost) missing: {n} samples");
        sum / n
    };
    let (yellow, blue) = (mean_y([189, 191, 0]), mean_y([0, 0, 189]));
    assert!(yellow.abs_diff(blue) > 200, "the bars do not run top to bottom: yellow at y {yellow}, blue at y {blue}");
    println!("turned 90: video composited ({reason}); bars at y {yellow} (yellow) and {blue} (blue)");
}
