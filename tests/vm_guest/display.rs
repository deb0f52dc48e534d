//! VM tests of the display side that need a vkms device of their own, made through vkms's
//! configfs (kernel 7.x): several CRTCs and connectors whose status the test changes, which
//! the kernel reports to vitrine as hotplug.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::common::{self, Launch, Vitrine, BG_CONFIG};
use vitrine::control::protocol::Request;

/// A vkms device made through configfs: per CRTC a primary plane, an encoder and a connector;
/// `overlays` overlay planes every CRTC can use; a writeback connector on the first CRTC.
/// Removed again when dropped.
pub struct ConfigfsVkms {
    dir: PathBuf,
    heads: usize,
    overlays: usize,
    pub card: PathBuf,
}

fn write(path: &Path, value: &str) {
    std::fs::write(path, value).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn link(target: &Path, dir: &Path) {
    let name = target.file_name().unwrap();
    std::os::unix::fs::symlink(target, dir.join(name))
        .unwrap_or_else(|e| panic!("link {} into {}: {e}", target.display(), dir.display()));
}

impl ConfigfsVkms {
    /// `connected[i]`: whether connector i starts connected.
    pub fn new(name: &str, connected: &[bool], overlays: usize) -> ConfigfsVkms {
        let root = Path::new("/sys/kernel/config");
        if !root.join("vkms").is_dir() {
            let _ = std::process::Command::new("mount").args(["-t", "configfs", "none", "/sys/kernel/config"]).status();
        }
        let dir = root.join("vkms").join(name);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e} (vkms without configfs?)", dir.display()));
        let heads = connected.len();
        for (i, on) in connected.iter().enumerate() {
            let (plane, crtc, encoder, connector) = (
                dir.join(format!("planes/primary{i}")),
                dir.join(format!("crtcs/crtc{i}")),
                dir.join(format!("encoders/encoder{i}")),
                dir.join(format!("connectors/connector{i}")),
            );
            for d in [&plane, &crtc, &encoder, &connector] {
                std::fs::create_dir(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
            }
            write(&plane.join("type"), "1");
            link(&crtc, &plane.join("possible_crtcs"));
            link(&crtc, &encoder.join("possible_crtcs"));
            link(&encoder, &connector.join("possible_encoders"));
            write(&connector.join("status"), if *on { "1" } else { "2" });
        }
        write(&dir.join("crtcs/crtc0/writeback"), "1");
        for o in 0..overlays {
            let plane = dir.join(format!("planes/overlay{o}"));
            std::fs::create_dir(&plane).unwrap();
            for i in 0..heads {
                link(&dir.join(format!("crtcs/crtc{i}")), &plane.join("possible_crtcs"));
            }
        }
        let before = cards();
        write(&dir.join("enabled"), "1");
        let mut card = None;
        assert!(
            common::wait_until(Duration::from_secs(10), || {
                card = cards().into_iter().find(|c| !before.contains(c) && card_of_device(c, name));
                card.is_some()
            }),
            "the configfs vkms device {name} got no card node"
        );
        ConfigfsVkms { dir, heads, overlays, card: card.unwrap() }
    }

    /// Plug (`true`) or unplug connector `i`: the kernel sends a hotplug event.
    pub fn set_connected(&self, i: usize, connected: bool) {
        write(&self.dir.join(format!("connectors/connector{i}/status")), if connected { "1" } else { "2" });
    }
}

impl Drop for ConfigfsVkms {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("enabled"), "0");
        let unlink_all = |d: PathBuf| {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        };
        for o in 0..self.overlays {
            unlink_all(self.dir.join(format!("planes/overlay{o}/possible_crtcs")));
            let _ = std::fs::remove_dir(self.dir.join(format!("planes/overlay{o}")));
        }
        for i in 0..self.heads {
            unlink_all(self.dir.join(format!("connectors/connector{i}/possible_encoders")));
            unlink_all(self.dir.join(format!("encoders/encoder{i}/possible_crtcs")));
            unlink_all(self.dir.join(format!("planes/primary{i}/possible_crtcs")));
            for d in [
                format!("connectors/connector{i}"),
                format!("encoders/encoder{i}"),
                format!("planes/primary{i}"),
                format!("crtcs/crtc{i}"),
            ] {
                let _ = std::fs::remove_dir(self.dir.join(d));
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

pub fn cards() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir("/dev/dri")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("card")))
        .collect();
    out.sort();
    out
}

/// Whether /dev/dri/cardN belongs to the configfs device `name` (/sys/devices/faux/NAME/drm/cardN).
pub fn card_of_device(card: &Path, name: &str) -> bool {
    let node = card.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::canonicalize(format!("/sys/class/drm/{node}"))
        .map(|p| p.to_string_lossy().contains(&format!("/{name}/drm/")))
        .unwrap_or(false)
}

fn output_names(vitrine: &Vitrine) -> Vec<String> {
    let outputs = vitrine.ok(&Request::Outputs);
    outputs["outputs"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap().to_string()).collect()
}

/// Connectors plugged in and out while vitrine runs: outputs are added and removed, clients see
/// wl_output globals come and go, the video moves to the output that remains, and the display
/// keeps presenting frames throughout.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn hotplugged_connectors_add_and_remove_outputs() {
    use common::wl::{output_globals, setup};

    super::assert_in_vm();
    let vkms = ConfigfsVkms::new("hotplug", &[true, false], 2);
    // vkms planes do not scale: the picture is shown 1:1 so that it can go on a plane.
    let config = format!("{BG_CONFIG}[drm]\ndevice = \"{}\"\n[video]\nscale = \"none\"\n", vkms.card.display());
    let vitrine = super::play_looping("vm-hotplug", "640x480-high.mp4", config);
    assert_eq!(vitrine.ok(&Request::Version)["backend"], "drm");
    let first = output_names(&vitrine);
    assert_eq!(first.len(), 1, "one connector is connected: {first:?}");

    let stream = std::os::unix::net::UnixStream::connect(vitrine.runtime.join(&vitrine.socket)).unwrap();
    let conn = wayland_client::Connection::from_socket(stream).unwrap();
    let (_g, mut queue, mut client) = setup(&conn);
    let initial = output_globals(&conn);
    assert_eq!(initial.len(), 1, "one wl_output at start");

    // Plug the second display in.
    vkms.set_connected(1, true);
    assert!(
        common::wait_until(Duration::from_secs(20), || output_names(&vitrine).len() == 2),
        "no output added for the plugged connector; log:\n{}",
        vitrine.log()
    );
    common::wl::dispatch_until(&mut queue, &mut client, |c| !c.outputs_announced.is_empty());
    let both = output_names(&vitrine);
    let second = both.iter().find(|n| !first.contains(n)).cloned().unwrap();
    let video_output = |vitrine: &Vitrine| -> Option<(String, serde_json::Value)> {
        let planes = vitrine.ok(&Request::Planes);
        planes["outputs"].as_array().unwrap().iter().find_map(|o| {
            let video = o["layers"].as_array()?.iter().find(|l| l["source"] == "video")?.clone();
            Some((o["name"].as_str()?.to_string(), video))
        })
    };
    assert!(
        common::wait_until(Duration::from_secs(20), || video_output(&vitrine)
            .is_some_and(|(o, v)| o == first[0] && v["composited"] == false)),
        "the video is on a plane of the first output: {}",
        vitrine.ok(&Request::Planes)
    );
    // Each output is lit by its own CRTC and presents frames.
    let stats = vitrine.ok(&Request::Stats);
    assert_eq!(stats["outputs_added"], 2, "{stats}");

    // Unplug the first display: its output goes, the video moves to the one that is left.
    vkms.set_connected(0, false);
    assert!(
        common::wait_until(Duration::from_secs(20), || output_names(&vitrine) == vec![second.clone()]),
        "the unplugged connector's output is still there: {:?}; log:\n{}",
        output_names(&vitrine),
        vitrine.log()
    );
    common::wl::dispatch_until(&mut queue, &mut client, |c| c.globals_removed.contains(&initial[0]));
    assert!(
        common::wait_until(Duration::from_secs(20), || video_output(&vitrine)
            .is_some_and(|(o, v)| o == second && v["composited"] == false)),
        "the video did not move onto a plane of the remaining output: {}",
        vitrine.ok(&Request::Planes)
    );
    let before = vitrine.ok(&Request::Stats);
    std::thread::sleep(Duration::from_secs(2));
    let after = vitrine.ok(&Request::Stats);
    assert!(
        after["frames_presented"].as_u64() > before["frames_presented"].as_u64(),
        "the remaining output presents frames: {after}"
    );
    assert!(after["video"]["frames_presented"].as_u64() > before["video"]["frames_presented"].as_u64(), "{after}");
    assert_eq!(after["outputs_removed"], 1, "{after}");

    // And back: the first display is plugged in again.
    vkms.set_connected(0, true);
    assert!(
        common::wait_until(Duration::from_secs(20), || output_names(&vitrine).len() == 2),
        "the replugged connector got no output; log:\n{}",
        vitrine.log()
    );
    let mut vitrine = vitrine;
    assert!(vitrine.is_running(), "vitrine survived the hotplugs");
}

/// Where no plane takes them, the composition shows a client and the decoded video correctly
/// (position, orientation, colours), with either renderer: GLES (Mesa's softpipe here: the video
/// is converted on the CPU first, and counted) and pixman.
fn composition_shows_client_and_video(renderer: &str) {
    use common::wl::{dispatch_until, setup, solid_buffer, toplevel};
    use wayland_client::Proxy;

    super::assert_in_vm();
    let name = format!("vm-compose-{renderer}");
    let config = format!("{BG_CONFIG}[drm]\nhardware_planes = false\n");
    let vitrine = Vitrine::launch(Launch {
        name: &name,
        args: vec![
            "--renderer".into(),
            renderer.into(),
            "--play".into(),
            super::clip("640x480-high.mp4").display().to_string(),
            "--loop".into(),
        ],
        config,
        env: Vec::new(),
        runtime: None,
        wrapper: Vec::new(),
    });
    let stats = vitrine.ok(&Request::Stats);
    assert_eq!(stats["renderer"], renderer, "{stats}");

    // A client that draws less than the output: centred above the video.
    let stream = std::os::unix::net::UnixStream::connect(vitrine.runtime.join(&vitrine.socket)).unwrap();
    let conn = wayland_client::Connection::from_socket(stream).unwrap();
    let (g, mut queue, mut client) = setup(&conn);
    let qh = queue.handle();
    let w = toplevel(&g, &qh, "vitrine.test.small");
    let (id, xid) = (w.toplevel.id().protocol_id(), w.xdg.id().protocol_id());
    dispatch_until(&mut queue, &mut client, |c| c.configures.contains_key(&id) && c.pending_serial.contains_key(&xid));
    w.xdg.ack_configure(client.pending_serial[&xid]);
    let green = [20u8, 200, 40];
    let buffer = solid_buffer(&g, &qh, 200, 100, green);
    w.surface.attach(Some(&buffer), 0, 0);
    w.surface.damage_buffer(0, 0, 200, 100);
    w.surface.commit();
    queue.roundtrip(&mut client).unwrap();

    super::wait_for_pictures(&vitrine, 3);
    assert_eq!(vitrine.ok(&Request::Pause)["paused"], true);
    let image = vitrine.wait_for_pixels("composed", Duration::from_secs(30), |img| {
        common::count_near(img, green, 12) >= 200 * 100 * 9 / 10
    });
    // 640x480 fits 1024x768 exactly: the video fills the output; the client sits in the middle.
    assert_eq!((image.width, image.height), (1024, 768));
    assert!(image.fraction_differing((412, 334, 200, 100), green, 12) < 0.02, "the client is not centred");
    // visl's picture: colour bars left to right (grey, yellow, cyan, green, magenta, red, blue),
    // its text in the top left corner. Upright and unmirrored, scaled by 1.6.
    let mean_x = |rgb: [u8; 3]| {
        let (mut sum, mut n) = (0u64, 0u64);
        for y in (0..image.height).step_by(4) {
            for x in (0..image.width).step_by(4) {
                if image.pixel(x, y).iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 24) {
                    sum += x as u64;
                    n += 1;
                }
            }
        }
        assert!(n > 500, "colour {rgb:?} is (almost) missing: {n} samples");
        sum / n
    };
    let (yellow, cyan, blue) = (mean_x([191, 191, 0]), mean_x([0, 191, 191]), mean_x([0, 0, 191]));
    assert!(yellow < cyan && cyan < blue, "bars out of order (mirrored?): yellow {yellow}, cyan {cyan}, blue {blue}");
    // Scaled, not cropped: visl's blue bar (the sixth of seven, with black after it) is at about
    // 6.5/8 of the width once the picture fills the output (at 6.5/8 of 640 when it does not).
    assert!(blue > 760, "the picture does not fill the output (cropped?): blue bar at x = {blue}");
    // visl's text runs down the left; its two longest lines (the queues' formats) are at the
    // bottom and reach past x = 560, where the top lines do not.
    let dark_in = |y0: u32, y1: u32| {
        (y0..y1)
            .step_by(2)
            .flat_map(|y| (560..780).step_by(2).map(move |x| (x, y)))
            .filter(|&(x, y)| image.pixel(x, y).iter().take(3).all(|c| *c < 40))
            .count()
    };
    assert!(
        dark_in(576, 768) > 10 * dark_in(0, 192).max(1),
        "visl's long lines are not at the bottom: the picture is upside down"
    );

    let planes = vitrine.ok(&Request::Planes);
    let layers = planes["outputs"][0]["layers"].as_array().unwrap().clone();
    let video = layers.iter().find(|l| l["source"] == "video").expect("video layer");
    assert_eq!(video["composited"], true, "{planes}");
    assert!(video["reason"].as_str().unwrap().contains("hardware_planes"), "{planes}");
    let stats = vitrine.ok(&Request::Stats);
    assert!(stats["frames_composited"].as_u64().unwrap() > 0, "{stats}");
    // Neither softpipe nor pixman samples NV12: each picture was mapped and converted, counted.
    let video_stats = &stats["video"];
    assert!(video_stats["frame_mappings"].as_u64().unwrap() >= 3, "{stats}");
    assert!(video_stats["cpu_copied_bytes"].as_u64().unwrap() >= 3 * 640 * 480 * 4, "{stats}");
    assert!(video_stats["frames_composited"].as_u64().unwrap() >= 3, "{stats}");
    assert!(stats["cpu_copied_bytes"].as_u64().unwrap() > 0, "CPU composition is counted: {stats}");
}

#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn gles_composition_shows_client_and_video() {
    composition_shows_client_and_video("gles");
}

#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn pixman_composition_shows_client_and_video() {
    composition_shows_client_and_video("pixman");
}

/// An external decoder client: GStreamer's `v4l2slh264dec ! waylandsink` decodes on visl and
/// hands its NV12 dmabufs to vitrine, which scans them out on a plane without touching them.
/// (`fullscreen=true` is the next test's, without the decoder.)
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn gstreamer_waylandsink_dmabufs_go_on_a_plane() {
    super::assert_in_vm();
    common::require("gst-launch-1.0");
    // The output is the picture's size: the client's surface is shown 1:1 (vkms does not scale).
    let config = format!("{BG_CONFIG}[drm]\nmode = \"640x480\"\n");
    let mut vitrine = Vitrine::launch(Launch {
        name: "vm-waylandsink",
        args: Vec::new(),
        config,
        env: Vec::new(),
        runtime: None,
        wrapper: Vec::new(),
    });
    let clip = super::clip("640x480-10s.mp4");
    let client_log = vitrine.spawn_client(
        "gst-launch-1.0",
        &["filesrc", &format!("location={}", clip.display()), "!", "qtdemux", "!", "h264parse", "!", "v4l2slh264dec"]
            .into_iter()
            .chain(["!", "waylandsink"])
            .collect::<Vec<&str>>(),
    );
    let on_plane = |vitrine: &Vitrine| -> Option<serde_json::Value> {
        let planes = vitrine.ok(&Request::Planes);
        let layers = planes["outputs"][0]["layers"].as_array()?.clone();
        layers.into_iter().find(|l| l["source"] == "client" && l["format"] == "NV12" && l["composited"] == false)
    };
    assert!(
        common::wait_until(Duration::from_secs(60), || on_plane(&vitrine).is_some()),
        "the client's NV12 dmabuf is not on a plane: {}\nlog:\n{}",
        vitrine.ok(&Request::Planes),
        vitrine.log()
    );
    let layer = on_plane(&vitrine).unwrap();
    assert_eq!(layer["size"], serde_json::json!([640, 480]), "{layer}");
    // Steady state while it plays: frames are presented and nothing is copied.
    let before = vitrine.ok(&Request::Stats);
    std::thread::sleep(Duration::from_secs(2));
    let after = vitrine.ok(&Request::Stats);
    let delta = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    assert!(delta("frames_presented") >= 10, "{after}");
    // The client's pictures stay on the plane (what is composited, when the client's own
    // window surface around them changes, is its shared-memory frame, not its pictures).
    assert_eq!(delta("client_dmabufs_composited"), 0, "the client's pictures are not composited: {after}");
    assert!(delta("cpu_copied_bytes") <= 640 * 480 * 4, "at most one composition of the window's frame: {after}");
    assert_eq!(delta("test_commits"), 0, "steady state needs no test commits: {after}");
    // What the plane shows is visl's picture: its colour bars.
    let image = vitrine.screenshot("writeback");
    assert_eq!((image.width, image.height), (640, 480));
    assert!(common::count_near(&image, [191, 191, 0], 24) > 5_000, "yellow bar missing");
    assert!(common::count_near(&image, [0, 191, 191], 24) > 5_000, "cyan bar missing");
    assert!(vitrine.is_running());
    let client = common::read(&client_log);
    assert!(!client.contains("ERROR"), "waylandsink reported an error:\n{client}");
}

/// The usual way to run GStreamer in a kiosk, on the DRM backend: `waylandsink fullscreen=true`
/// asks for fullscreen before its first commit and gives the answer 100 ms before it stops with
/// "Window has no size set". The first configure has the output's size and is sent before the
/// turn's repaints. (The pictures come from videotestsrc: under TCG, the visl decoder's preroll
/// keeps the client's own threads too busy to read the answer within its 100 ms; the decoder's
/// dmabufs are the test above.)
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn gstreamer_waylandsink_fullscreen_gets_its_size_in_time_on_drm() {
    super::assert_in_vm();
    common::require("gst-launch-1.0");
    let config = format!("{BG_CONFIG}[drm]\nmode = \"640x480\"\n");
    let vitrine = Vitrine::launch(Launch {
        name: "vm-waylandsink-fullscreen",
        args: Vec::new(),
        config,
        env: Vec::new(),
        runtime: None,
        wrapper: Vec::new(),
    });
    let pipeline = [
        "videotestsrc",
        "num-buffers=48",
        "!",
        "video/x-raw,width=320,height=240",
        "!",
        "waylandsink",
        "fullscreen=true",
    ];
    // A first run, not judged: under TCG, code run for the first time since boot is translated
    // first, tens of milliseconds on the client's side and on vitrine's for a path none has
    // taken yet (a board runs it natively); its outcome is printed.
    let (status, _, err) = vitrine.run_client("gst-launch-1.0", &pipeline, Duration::from_secs(120));
    println!("warm-up run: {status}{}", if err.contains("no size") { " (no size in time)" } else { "" });
    let mut failures = Vec::new();
    // Then three runs: each must get its size (one lucky run proves nothing).
    for run in 0..3 {
        let (status, out, err) = vitrine.run_client("gst-launch-1.0", &pipeline, Duration::from_secs(120));
        if !status.success() || format!("{out}{err}").contains("no size") {
            failures.push(format!("run {run}: {status}\n{out}\n{err}"));
        }
    }
    assert!(failures.is_empty(), "waylandsink fullscreen=true failed on DRM:\n{}", failures.join("\n"));
    // Its window was fullscreen: the output's size.
    assert!(vitrine.log().contains("toplevel placed"), "{}", vitrine.log());
}

/// `grim` (wlr-screencopy, allowed by the config) with the video on a plane: the copy is the
/// display's writeback, so the decoder's picture is in it, the same as `msg screenshot`'s.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn grim_shows_the_video_on_a_plane() {
    super::assert_in_vm();
    let grim = common::which("grim");
    let config = format!("{BG_CONFIG}[video]\nscale = \"none\"\n[security]\nprivileged_clients = [{:?}]\n", grim);
    let vitrine = super::play_looping("vm-grim", "640x480-high.mp4", config);
    super::wait_for_pictures(&vitrine, 3);
    assert_eq!(vitrine.ok(&Request::Pause)["paused"], true);
    let planes = vitrine.ok(&Request::Planes);
    let layers = planes["outputs"][0]["layers"].as_array().unwrap().clone();
    let video = layers.iter().find(|l| l["source"] == "video").expect("video layer");
    assert_eq!((video["format"].as_str(), video["composited"].as_bool()), (Some("NV12"), Some(false)), "{planes}");
    let own = vitrine.screenshot("grim-own");
    let shot = common::artifacts().join("vm-grim.png");
    let (status, _, err) = vitrine.run_client("grim", &[&shot.display().to_string()], Duration::from_secs(60));
    assert!(status.success(), "grim failed: {err}");
    let image = vitrine::image::RgbaImage::load_png(&shot).expect("grim's PNG");
    assert_eq!((image.width, image.height), (own.width, own.height));
    // visl's colour bars, centred 640x480 on 1024x768.
    assert!(common::count_near(&image, [191, 191, 0], 24) > 5_000, "yellow bar missing from grim's picture");
    assert!(common::count_near(&image, [0, 191, 191], 24) > 5_000, "cyan bar missing from grim's picture");
    assert!(image.fraction_differing((0, 0, 150, 100), common::BG, 8) < 0.02, "the background around the video");
    // The video is paused: both copies are the same picture.
    let differing = (0..own.height)
        .flat_map(|y| (0..own.width).map(move |x| (x, y)))
        .filter(|&(x, y)| image.pixel(x, y)[..3] != own.pixel(x, y)[..3])
        .count();
    assert_eq!(differing, 0, "grim's picture differs from the screenshot");
}

/// A layer-shell overlay (a ticker, a notice) drawn into a dmabuf, above the video: both go on
/// planes, the overlay above, and nothing is composited; the writeback shows the overlay's colour
/// over the video's picture.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn a_layer_shell_overlay_goes_on_a_plane_above_the_video() {
    use common::wl::{dmabuf_buffer, setup, top_overlay, udmabuf};
    use std::io::Write;

    super::assert_in_vm();
    let vitrine =
        super::play_looping("vm-layer-plane", "640x480-high.mp4", format!("{BG_CONFIG}[video]\nscale = \"none\"\n"));
    super::wait_for_pictures(&vitrine, 3);
    let stream = std::os::unix::net::UnixStream::connect(vitrine.runtime.join(&vitrine.socket)).unwrap();
    let conn = wayland_client::Connection::from_socket(stream).unwrap();
    let (g, mut queue, mut client) = setup(&conn);
    let qh = queue.handle();
    // 256x64, centred at the top, 200 down: over the video (144..624 of 768).
    let (w, h) = (256i32, 64i32);
    let (surface, _overlay) = top_overlay(&g, &mut queue, &mut client, "vitrine.test.ticker", (w, h), 200);
    // XRGB8888, a green the video does not have.
    let mut buf = udmabuf((w * h * 4) as usize).expect("/dev/udmabuf");
    let pixel = [0x30u8, 0xc0, 0x10, 0xff]; // B, G, R, X
    buf.memfd.write_all(&pixel.repeat((w * h) as usize)).unwrap();
    let buffer = dmabuf_buffer(&g, &qh, &buf, (w, h), u32::from_le_bytes(*b"XR24"), &[(0, (w * 4) as u32)]);
    surface.attach(Some(&buffer), 0, 0);
    surface.damage_buffer(0, 0, w, h);
    surface.commit();
    queue.roundtrip(&mut client).unwrap();

    let layers = |vitrine: &Vitrine| {
        vitrine.ok(&Request::Planes)["outputs"][0]["layers"].as_array().cloned().unwrap_or_default()
    };
    let on_plane = |l: &serde_json::Value| l["composited"] == false && l["plane"].is_number();
    assert!(
        common::wait_until(Duration::from_secs(30), || {
            let layers = layers(&vitrine);
            layers.iter().any(|l| l["name"] == "vitrine.test.ticker" && l["format"] == "XR24" && on_plane(l))
        }),
        "the overlay is not on a plane: {:?}\nlog:\n{}",
        layers(&vitrine),
        vitrine.log()
    );
    assert_eq!(vitrine.ok(&Request::Pause)["paused"], true);
    let layers = layers(&vitrine);
    let video = layers.iter().position(|l| l["source"] == "video").expect("the video layer");
    let ticker = layers.iter().position(|l| l["name"] == "vitrine.test.ticker").unwrap();
    assert!(on_plane(&layers[video]), "the video is composited: {layers:?}");
    assert!(ticker > video, "the overlay is below the video: {layers:?}");
    assert!(layers.iter().all(|l| l["composited"] == false || l["source"] != "client"), "{layers:?}");
    // The writeback: the overlay's green where it is, the video's bars beside it.
    let image = vitrine.screenshot("layer-plane");
    let x0 = (1024 - w as u32) / 2;
    assert!(
        image.fraction_differing((x0, 200, w as u32, h as u32), [0x10, 0xc0, 0x30], 4) < 0.01,
        "the overlay's colour"
    );
    assert!(common::count_near(&image, [191, 191, 0], 24) > 5_000, "the video's yellow bar");
    let stats = vitrine.ok(&Request::Stats);
    assert_eq!(stats["client_dmabufs_composited"], 0, "{stats}");
    drop(buffer);
}

/// A client's NV12 buffer with its colour stated (wp-color-representation: BT.601 full range):
/// the plane is told, and the writeback shows the bytes read as BT.601 full; the statement
/// withdrawn (the object destroyed), the same bytes are read as BT.709 limited, the default.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn a_clients_stated_colour_reaches_its_plane() {
    use common::wl::{dmabuf_buffer, setup, top_overlay, udmabuf};
    use std::io::Write;
    use wayland_protocols::wp::color_representation::v1::client::wp_color_representation_surface_v1::{
        Coefficients, Range,
    };

    super::assert_in_vm();
    let vitrine = Vitrine::launch(Launch {
        name: "vm-client-colour",
        args: Vec::new(),
        config: BG_CONFIG.to_string(),
        env: Vec::new(),
        runtime: None,
        wrapper: Vec::new(),
    });
    let stream = std::os::unix::net::UnixStream::connect(vitrine.runtime.join(&vitrine.socket)).unwrap();
    let conn = wayland_client::Connection::from_socket(stream).unwrap();
    let (g, mut queue, mut client) = setup(&conn);
    let qh = queue.handle();
    let (w, h) = (256i32, 64i32);
    let (surface, _overlay) = top_overlay(&g, &mut queue, &mut client, "vitrine.test.colour", (w, h), 200);
    // NV12 of one colour: Y 100, Cb 90, Cr 200.
    let (y, cb, cr) = (100.0f64, 90.0f64, 200.0f64);
    let mut buf = udmabuf((w * h * 3 / 2) as usize).expect("/dev/udmabuf");
    buf.memfd.write_all(&vec![y as u8; (w * h) as usize]).unwrap();
    buf.memfd.write_all(&[cb as u8, cr as u8].repeat((w * h / 4) as usize)).unwrap();
    let nv12 = u32::from_le_bytes(*b"NV12");
    let buffer = dmabuf_buffer(&g, &qh, &buf, (w, h), nv12, &[(0, w as u32), ((w * h) as u32, w as u32)]);
    let rep =
        g.colour_representation.as_ref().expect("wp_color_representation_manager_v1").get_surface(&surface, &qh, ());
    rep.set_coefficients_and_range(Coefficients::Bt601, Range::Full);
    surface.attach(Some(&buffer), 0, 0);
    surface.damage_buffer(0, 0, w, h);
    surface.commit();
    queue.roundtrip(&mut client).unwrap();

    // The expected colours, from the standard's equations (Kr, Kb; limited range scaled).
    let rgb = |kr: f64, kb: f64, full: bool| -> [u8; 3] {
        let (luma, chroma) = if full { (y, 1.0) } else { ((y - 16.0) * 255.0 / 219.0, 255.0 / 224.0) };
        let (u, v) = ((cb - 128.0) * chroma, (cr - 128.0) * chroma);
        let kg = 1.0 - kr - kb;
        let r = luma + 2.0 * (1.0 - kr) * v;
        let b = luma + 2.0 * (1.0 - kb) * u;
        let g = (luma - kr * r - kb * b) / kg;
        [r, g, b].map(|c| c.round().clamp(0.0, 255.0) as u8)
    };
    let bt601_full = rgb(0.299, 0.114, true);
    let bt709_limited = rgb(0.2126, 0.0722, false);
    let layer = |vitrine: &Vitrine| {
        vitrine.ok(&Request::Planes)["outputs"][0]["layers"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["name"] == "vitrine.test.colour").cloned())
    };
    let x0 = (1024 - w as u32) / 2;
    for (what, colour, expected) in
        [("stated", "BT.601 full", bt601_full), ("withdrawn", "BT.709 limited", bt709_limited)]
    {
        if what == "withdrawn" {
            rep.destroy();
            surface.commit();
            queue.roundtrip(&mut client).unwrap();
        }
        assert!(
            common::wait_until(Duration::from_secs(30), || layer(&vitrine)
                .is_some_and(|l| l["colour"] == colour && l["composited"] == false)),
            "{what}: the layer is not on a plane as {colour}: {:?}\nlog:\n{}",
            layer(&vitrine),
            vitrine.log()
        );
        let image = vitrine.wait_for_pixels(&format!("the {what} colour"), Duration::from_secs(30), |image| {
            image.fraction_differing((x0 + 8, 208, w as u32 - 16, h as u32 - 16), expected, 4) < 0.01
        });
        let got = image.pixel(x0 + w as u32 / 2, 200 + h as u32 / 2);
        println!("{what}: expected {expected:?} as {colour}, the writeback has {:?}", &got[..3]);
    }
    assert_ne!(bt601_full, bt709_limited);
    drop(buffer);
}

/// Per-surface linux-dmabuf feedback: a fullscreen surface is told the formats of the planes that
/// could show it (a scanout tranche with NV12 and XRGB8888, linear); with hardware planes off, no
/// plane can, and the feedback says so (no scanout tranche).
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn surface_feedback_names_the_planes_that_could_show_the_surface() {
    use common::wl::{dispatch_until, map, setup, toplevel};
    use wayland_client::Proxy;

    super::assert_in_vm();
    const XR24: u32 = u32::from_le_bytes(*b"XR24");
    const NV12: u32 = u32::from_le_bytes(*b"NV12");
    for planes_on in [true, false] {
        let vitrine = Vitrine::launch(Launch {
            name: if planes_on { "vm-feedback" } else { "vm-feedback-off" },
            args: Vec::new(),
            config: format!("{BG_CONFIG}[drm]\nhardware_planes = {planes_on}\n"),
            env: Vec::new(),
            runtime: None,
            wrapper: Vec::new(),
        });
        let stream = std::os::unix::net::UnixStream::connect(vitrine.runtime.join(&vitrine.socket)).unwrap();
        let conn = wayland_client::Connection::from_socket(stream).unwrap();
        let (g, mut queue, mut client) = setup(&conn);
        let qh = queue.handle();
        let w = toplevel(&g, &qh, "vitrine.test.feedback");
        let dmabuf = g.dmabuf.as_ref().expect("zwp_linux_dmabuf_v1");
        assert!(dmabuf.version() >= 4, "linux-dmabuf v4+ (surface feedback): got v{}", dmabuf.version());
        let _feedback = dmabuf.get_surface_feedback(&w.surface, &qh, ());
        dispatch_until(&mut queue, &mut client, |c| c.feedback.is_some());
        let first = client.feedback.clone().unwrap();
        assert!(!first.tranches.is_empty(), "{first:?}");
        // Once the surface is shown, its feedback is about where it is.
        map(&g, &mut queue, &mut client, &w, [40, 80, 120]);
        let settled = |c: &common::wl::Client| {
            c.feedback.as_ref().is_some_and(|f| if planes_on { f.scanout().is_some() } else { f.scanout().is_none() })
        };
        dispatch_until(&mut queue, &mut client, settled);
        let feedback = client.feedback.clone().unwrap();
        if planes_on {
            let scanout = feedback.scanout().unwrap();
            assert!(scanout.formats.contains(&(XR24, 0)), "XRGB8888 linear for scanout: {feedback:?}");
            assert!(scanout.formats.contains(&(NV12, 0)), "NV12 linear for scanout: {feedback:?}");
        } else {
            assert!(feedback.updates >= 2, "the feedback was updated for the surface: {feedback:?}");
            let render = &feedback.tranches[0];
            assert!(render.formats.contains(&(XR24, 0)), "composition still takes XRGB8888: {feedback:?}");
        }
    }
}

/// A panel turned a quarter turn clockwise (`[drm] rotation = 90`): the output is portrait for
/// clients, the picture lands turned in the framebuffer (plane rotation, or composition when
/// planes are off), and a touch reaches the client at the upright coordinate.
fn portrait_output(planes_on: bool) {
    use super::Uinput;
    use common::wl::{dispatch_until, map, setup, toplevel};

    super::assert_in_vm();
    let name = if planes_on { "vm-rotate-planes" } else { "vm-rotate-composed" };
    let config = format!(
        "{BG_CONFIG}[drm]\nrotation = 90\nhardware_planes = {planes_on}\nrenderer = \"pixman\"\n[video]\nscale = \"none\"\n"
    );
    let vitrine = super::play_looping(name, "640x480-high.mp4", config);
    let outputs = vitrine.ok(&Request::Outputs);
    assert_eq!(outputs["outputs"][0]["rotation"], 90, "{outputs}");
    assert_eq!(outputs["outputs"][0]["logical_size"], serde_json::json!([768, 1024]), "{outputs}");
    super::wait_for_pictures(&vitrine, 3);
    assert_eq!(vitrine.ok(&Request::Pause)["paused"], true);
    let planes = vitrine.ok(&Request::Planes);
    let layers = planes["outputs"][0]["layers"].as_array().unwrap().clone();
    let video = layers.iter().find(|l| l["source"] == "video").expect("video layer");
    assert_eq!(video["composited"], !planes_on, "{planes}");

    // The 640x480 picture, centred in the 768x1024 portrait output, lands in the 1024x768
    // framebuffer at (272, 64) as 480x640, turned: visl's bars run bottom (grey) to top (blue),
    // its text sits at the bottom left.
    let image = vitrine.screenshot("turned");
    assert_eq!((image.width, image.height), (1024, 768));
    let centre = |rgb: [u8; 3]| {
        let (mut sx, mut sy, mut n) = (0u64, 0u64, 0u64);
        for y in (0..image.height).step_by(4) {
            for x in (0..image.width).step_by(4) {
                if image.pixel(x, y).iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 24) {
                    (sx, sy, n) = (sx + x as u64, sy + y as u64, n + 1);
                }
            }
        }
        assert!(n > 300, "colour {rgb:?} is (almost) missing");
        (sx / n, sy / n)
    };
    let (yellow, blue) = (centre([191, 191, 0]), centre([0, 0, 191]));
    assert!(yellow.1 > blue.1 + 100, "bars not turned: yellow at {yellow:?}, blue at {blue:?}");
    assert!((272..752).contains(&yellow.0) && (272..752).contains(&blue.0), "{yellow:?} {blue:?}");
    let dark = |x0: u32, y0: u32, x1: u32, y1: u32| {
        (y0..y1)
            .step_by(2)
            .flat_map(|y| (x0..x1).step_by(2).map(move |x| (x, y)))
            .filter(|&(x, y)| image.pixel(x, y).iter().take(3).all(|c| *c < 40))
            .count()
    };
    // Left half of the turned picture: text low down, none higher up (below the black bar).
    let (low, high) = (dark(272, 450, 512, 700), dark(272, 150, 512, 380));
    assert!(low > 10 * high.max(1), "visl's text is not at the bottom left of the turned picture: {low} vs {high}");

    // Touch 3/4 across and 1/4 down the panel: upright, that is (576, 768).
    let touch = Uinput::multitouch("vitrine test touchscreen");
    assert!(
        common::wait_until(Duration::from_secs(20), || vitrine
            .log()
            .contains("input device added device=vitrine test touchscreen")),
        "libinput did not report the touchscreen"
    );
    let stream = std::os::unix::net::UnixStream::connect(vitrine.runtime.join(&vitrine.socket)).unwrap();
    let conn = wayland_client::Connection::from_socket(stream).unwrap();
    let (g, mut queue, mut client) = setup(&conn);
    let w = toplevel(&g, &queue.handle(), "vitrine.test.portrait");
    let size = map(&g, &mut queue, &mut client, &w, [0x30, 0x60, 0x90]);
    assert_eq!(size, (768, 1024), "the client is configured portrait");
    touch.mt_tap(3071, 1024);
    dispatch_until(&mut queue, &mut client, |c| !c.touch_downs.is_empty());
    let (x, y) = client.touch_downs[0];
    assert!((x - 576.0).abs() < 2.0 && (y - 768.0).abs() < 2.0, "touch landed at ({x}, {y})");
}

#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn portrait_output_with_plane_rotation() {
    portrait_output(true);
}

#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn portrait_output_by_composition() {
    portrait_output(false);
}

/// Whether the kernel says CRTC 0 of card0 scans out (debugfs atomic state: "active=1").
fn crtc_active() -> Option<bool> {
    let state = std::fs::read_to_string("/sys/kernel/debug/dri/0/state").ok()?;
    let crtc = state.split("crtc[").nth(1)?;
    crtc.lines().find_map(|l| l.trim().strip_prefix("active=")).map(|v| v == "1")
}

/// The daily schedule with a fake clock just before closing time: the displays go off at `off`
/// (the CRTC inactive, no frames presented, a touch ignored) and come on again at `on`.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn the_schedule_turns_the_displays_off_and_on() {
    use super::Uinput;
    use common::wl::{dispatch_until, setup, solid_buffer, toplevel};
    use wayland_client::Proxy;

    super::assert_in_vm();
    let config = format!("{BG_CONFIG}[schedule]\non = \"22:00:25\"\noff = \"22:00:00\"\n[video]\nscale = \"none\"\n");
    let vitrine = Vitrine::launch(Launch {
        name: "vm-schedule",
        args: vec!["--play".into(), super::clip("640x480-high.mp4").display().to_string(), "--loop".into()],
        config,
        env: vec![("VITRINE_FAKE_TIME".into(), "21:59:55".into())],
        runtime: None,
        wrapper: Vec::new(),
    });
    let touch = Uinput::touchscreen("vitrine test touchscreen");
    let tap = || touch.tap(2048, 2048);
    let stream = std::os::unix::net::UnixStream::connect(vitrine.runtime.join(&vitrine.socket)).unwrap();
    let conn = wayland_client::Connection::from_socket(stream).unwrap();
    let (g, mut queue, mut client) = setup(&conn);
    let qh = queue.handle();
    // A small client in the middle, above the video that plays all the time.
    let w = toplevel(&g, &qh, "vitrine.test.schedule");
    let (id, xid) = (w.toplevel.id().protocol_id(), w.xdg.id().protocol_id());
    dispatch_until(&mut queue, &mut client, |c| c.configures.contains_key(&id) && c.pending_serial.contains_key(&xid));
    w.xdg.ack_configure(client.pending_serial[&xid]);
    let buffer = solid_buffer(&g, &qh, 200, 100, [0x30, 0x60, 0x90]);
    w.surface.attach(Some(&buffer), 0, 0);
    w.surface.damage_buffer(0, 0, 200, 100);
    w.surface.commit();
    queue.roundtrip(&mut client).unwrap();
    let power = |v: &Vitrine| v.ok(&Request::Outputs)["outputs"][0]["power"].as_str().unwrap_or("").to_string();
    let presented = |v: &Vitrine| v.ok(&Request::Stats)["frames_presented"].as_u64().unwrap();
    assert_eq!(power(&vitrine), "on", "opening hours at 21:59:55");
    let start = presented(&vitrine);
    assert!(common::wait_until(Duration::from_secs(10), || presented(&vitrine) > start + 5), "the video plays");

    // Closing time.
    assert!(common::wait_until(Duration::from_secs(20), || power(&vitrine) == "off"), "{}", vitrine.log());
    assert!(common::wait_until(Duration::from_secs(5), || crtc_active() == Some(false)), "the CRTC is still active");
    let before = presented(&vitrine);
    tap();
    for _ in 0..10 {
        queue.roundtrip(&mut client).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(presented(&vitrine), before, "frames presented while off");
    let status = vitrine.ok(&Request::Status);
    assert_eq!(status["paused"], true, "the video pauses while the displays are off: {status}");
    assert!(client.touch_downs.is_empty(), "a touch reached the client while the displays were off");
    assert!(vitrine.log().contains("input ignored: the displays are off"));

    // Opening time again.
    assert!(common::wait_until(Duration::from_secs(40), || power(&vitrine) == "on"), "{}", vitrine.log());
    assert!(common::wait_until(Duration::from_secs(10), || crtc_active() == Some(true)), "the CRTC is not lit again");
    assert!(common::wait_until(Duration::from_secs(10), || presented(&vitrine) > before + 5), "no frames after on");
    assert_eq!(vitrine.ok(&Request::Status)["paused"], false, "the video plays again");
    tap();
    dispatch_until(&mut queue, &mut client, |c| !c.touch_downs.is_empty());
    let (x, y) = client.touch_downs[0];
    assert!((x - 100.0).abs() < 3.0 && (y - 50.0).abs() < 3.0, "touch at ({x}, {y}): the middle of the client");
    let mut vitrine = vitrine;
    assert!(vitrine.is_running());
}

/// Under systemd, logs go to journald with their fields as journal fields, so that
/// `journalctl -u vitrine OUTPUT=… / CLIENT=… / FILE=…` answers what happened where. A datagram
/// socket in journald's place receives what vitrine sends.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn journald_entries_carry_output_client_and_file_fields() {
    super::assert_in_vm();
    let dir = Path::new("/run/systemd/journal");
    std::fs::create_dir_all(dir).unwrap();
    let socket_path = dir.join("socket");
    let _ = std::fs::remove_file(&socket_path);
    let journal = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("journald's socket path");
    journal.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    // Read all the time, as journald does: a full socket would block vitrine's logging.
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        loop {
            match journal.recv(&mut buf) {
                Ok(n) if n > 0 => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                    if tx.send(Vec::new()).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    let garbage = super::clip("garbage.mp4");
    let mut vitrine = Vitrine::launch(Launch {
        name: "vm-journald",
        args: vec![
            "--play".into(),
            garbage.display().to_string(),
            super::clip("640x480-high.mp4").display().to_string(),
        ],
        config: BG_CONFIG.into(),
        env: vec![("JOURNAL_STREAM".into(), "8:4242".into()), ("INVOCATION_ID".into(), "0123456789abcdef".into())],
        runtime: None,
        wrapper: Vec::new(),
    });
    let client = vitrine.spawn_client("weston-simple-shm", &[]);
    let _ = client;
    let mut entries: Vec<std::collections::HashMap<String, String>> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let wanted = |e: &[std::collections::HashMap<String, String>]| {
        let has = |f: &dyn Fn(&std::collections::HashMap<String, String>) -> bool| e.iter().any(f);
        has(&|m| m.get("OUTPUT").is_some_and(|o| o.starts_with("Virtual-")))
            && has(&|m| m.get("CLIENT").is_some_and(|c| c.parse::<i32>().is_ok_and(|p| p > 0)))
            && has(&|m| {
                m.get("FILE").is_some_and(|f| f.ends_with("garbage.mp4"))
                    && m.get("PRIORITY").map(String::as_str) == Some("3")
            })
    };
    while std::time::Instant::now() < deadline && !wanted(&entries) {
        if let Ok(data) = rx.recv_timeout(Duration::from_secs(1)) {
            if !data.is_empty() {
                entries.push(parse_journal_entry(&data));
            }
        }
    }
    drop(vitrine);
    drop(rx);
    let _ = reader.join();
    let _ = std::fs::remove_file(&socket_path);
    assert!(wanted(&entries), "missing fields in {} entries: {entries:#?}", entries.len());
    assert!(entries.iter().all(|e| e.get("SYSLOG_IDENTIFIER").map(String::as_str) == Some("vitrine")));
    assert!(entries.iter().all(|e| e.contains_key("MESSAGE")));
}

/// A journal native-protocol datagram: `NAME=value\n`, or `NAME\n` + little-endian u64 length +
/// value + `\n` for values that may hold newlines.
fn parse_journal_entry(mut data: &[u8]) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    while !data.is_empty() {
        let Some(eol) = data.iter().position(|b| *b == b'\n') else { break };
        let line = &data[..eol];
        if let Some(eq) = line.iter().position(|b| *b == b'=') {
            out.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            );
            data = &data[eol + 1..];
        } else {
            let name = String::from_utf8_lossy(line).into_owned();
            let rest = &data[eol + 1..];
            if rest.len() < 8 {
                break;
            }
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            let value = &rest[8..(8 + len).min(rest.len())];
            out.insert(name, String::from_utf8_lossy(value).into_owned());
            data = &rest[(8 + len + 1).min(rest.len())..];
        }
    }
    out
}

/// Without a V4L2 decoder (forced here), the software decoder writes each picture once into an
/// NV12 dmabuf made from memory, and a plane shows it: no composition, one copy per picture,
/// counted, and each buffer mapped once.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn software_decoding_feeds_nv12_dmabufs_to_a_plane() {
    super::assert_in_vm();
    let path = super::clip("640x480-high.mp4");
    let frames = super::frame_count(&path);
    let stats_path = common::artifacts().join("vm-soft-dmabuf.stats.json");
    let mut vitrine = Vitrine::launch(Launch {
        name: "vm-soft-dmabuf",
        args: super::play_once_args(&[&path], &stats_path),
        config: format!("{BG_CONFIG}[video]\nscale = \"none\"\n"),
        env: vec![("VITRINE_DECODER".into(), "software".into())],
        runtime: None,
        wrapper: Vec::new(),
    });
    super::wait_for_pictures(&vitrine, 3);
    let status = vitrine.ok(&Request::Pause);
    assert!(status["path"].as_str().unwrap().contains("NV12 dmabuf"), "{status}");
    let planes = vitrine.ok(&Request::Planes);
    let layers = planes["outputs"][0]["layers"].as_array().unwrap().clone();
    let video = layers.iter().find(|l| l["source"] == "video").expect("video layer");
    assert_eq!((video["format"].as_str(), video["composited"].as_bool()), (Some("NV12"), Some(false)), "{planes}");
    // ffmpeg's testsrc: many colours where the picture is (centred 640x480 on 1024x768).
    let image = vitrine.screenshot("soft-dmabuf");
    let region = RgbaRegion::new(&image, (192, 144, 640, 480));
    assert!(region.distinct_colours() > 100, "the picture is not on screen: {} colours", region.distinct_colours());
    assert!(image.fraction_differing((0, 0, 150, 100), common::BG, 8) < 0.01, "outside the picture: background");
    vitrine.ok(&Request::Resume);
    let exit = vitrine.wait_exit(Duration::from_secs(120));
    assert!(exit.success(), "{exit:?}\n{}", vitrine.log());
    let stats = super::read_stats(&stats_path);
    let n = |k: &str| stats[k].as_u64().unwrap_or_else(|| panic!("{k}: {stats}"));
    assert_eq!(n("frames_decoded"), frames, "{stats}");
    assert_eq!(n("frames_presented") + n("frames_dropped"), frames, "{stats}");
    assert_eq!(n("frames_composited"), 0, "{stats}");
    // One NV12 copy per picture (640x480: 460800 bytes), one mapping per buffer, never per picture.
    assert_eq!(n("cpu_copied_bytes"), frames * 460_800, "{stats}");
    assert!((1..=16).contains(&n("frame_mappings")), "{stats}");
    assert!(n("framebuffers_created") <= n("frame_mappings"), "a framebuffer per buffer: {stats}");
}

/// Distinct colours in a part of an image.
struct RgbaRegion(std::collections::HashSet<[u8; 3]>);

impl RgbaRegion {
    fn new(image: &vitrine::image::RgbaImage, (x0, y0, w, h): (u32, u32, u32, u32)) -> RgbaRegion {
        let mut set = std::collections::HashSet::new();
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                let p = image.pixel(x, y);
                set.insert([p[0], p[1], p[2]]);
            }
        }
        RgbaRegion(set)
    }

    fn distinct_colours(&self) -> usize {
        self.0.len()
    }
}

/// Encode an FWHT clip with vicodec's own stateful encoder, fed by v4l2-ctl's test pattern
/// generator (75% colour bars).
fn fwht_clip(name: &str, size: (u32, u32), frames: u32) -> std::path::PathBuf {
    common::require("v4l2-ctl");
    let encoder = std::fs::read_dir("/sys/class/video4linux")
        .unwrap()
        .flatten()
        .find(|e| std::fs::read_to_string(e.path().join("name")).is_ok_and(|n| n.trim() == "stateful-encoder"))
        .map(|e| Path::new("/dev").join(e.file_name()))
        .expect("vicodec's stateful encoder (modprobe vicodec)");
    let path = common::artifacts().join(name);
    let out = std::process::Command::new("v4l2-ctl")
        .arg("-d")
        .arg(&encoder)
        .arg(format!("--set-fmt-video-out=width={},height={},pixelformat=NV12", size.0, size.1))
        .args(["--stream-mmap", "--stream-out-mmap", &format!("--stream-count={frames}")])
        .arg(format!("--stream-to={}", path.display()))
        .output()
        .expect("v4l2-ctl");
    assert!(
        out.status.success() && path.metadata().is_ok_and(|m| m.len() > 0),
        "encoding with vicodec: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// The stateful V4L2 path, on vicodec's stateful FWHT decoder: colour bars encoded by vicodec's
/// encoder are decoded into NV12 capture buffers exported as dmabufs and shown on a plane; a
/// second clip of another size makes the driver report a source change, and the capture queue
/// is set up again. Nothing is copied, mapped or composited.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn a_stateful_decoder_plays_fwht_clips_onto_a_plane() {
    super::assert_in_vm();
    let first = fwht_clip("bars-640x480.fwht", (640, 480), 50);
    let second = fwht_clip("bars-960x544.fwht", (960, 544), 25);
    let stats_path = common::artifacts().join("vm-stateful.stats.json");
    let mut vitrine = Vitrine::launch(Launch {
        name: "vm-stateful",
        args: super::play_once_args(&[&first, &second], &stats_path),
        config: format!("{BG_CONFIG}[video]\nscale = \"none\"\n"),
        env: Vec::new(),
        runtime: None,
        wrapper: Vec::new(),
    });
    super::wait_for_pictures(&vitrine, 5);
    let status = vitrine.ok(&Request::Pause);
    assert!(status["decoder"].as_str().unwrap().starts_with("v4l2-stateful vicodec"), "{status}");
    let planes = vitrine.ok(&Request::Planes);
    let layers = planes["outputs"][0]["layers"].as_array().unwrap().clone();
    let video = layers.iter().find(|l| l["source"] == "video").expect("video layer");
    assert_eq!((video["format"].as_str(), video["composited"].as_bool()), (Some("NV12"), Some(false)), "{planes}");
    assert_eq!(video["size"], serde_json::json!([640, 480]), "{video}");
    // What vicodec decoded: colour bars (75% yellow and cyan among them).
    let image = vitrine.screenshot("stateful");
    assert!(common::count_near(&image, [191, 191, 0], 30) > 5_000, "yellow bar missing");
    assert!(common::count_near(&image, [0, 191, 191], 30) > 5_000, "cyan bar missing");
    vitrine.ok(&Request::Resume);
    let exit = vitrine.wait_exit(Duration::from_secs(120));
    let log = vitrine.log();
    assert!(exit.success(), "{exit:?}\n{log}");
    assert!(log.contains("stateful decoder configured") && log.contains("visible=(960, 544)"), "{log}");
    let stats = super::read_stats(&stats_path);
    let n = |k: &str| stats[k].as_u64().unwrap_or_else(|| panic!("{k}: {stats}"));
    assert_eq!(n("frames_decoded"), 75, "{stats}");
    assert_eq!(n("frames_presented") + n("frames_dropped"), 75, "{stats}");
    assert_eq!(n("cpu_copied_bytes"), 0, "{stats}");
    assert_eq!(n("frame_mappings"), 0, "{stats}");
    assert_eq!(n("frames_composited"), 0, "{stats}");
    assert!(n("framebuffers_created") <= n("dmabufs_exported"), "{stats}");
}

/// wlr-randr and kanshi on vkms: wlr-randr lists the connector's modes and sets another one and
/// a quarter turn, applied in place on the lit head (no restart, no hotplug) while the video
/// plays; the writeback shows the 800x600 panel with the video in it; a mode vkms does
/// not offer is refused and nothing changes; kanshi's profile puts the preferred mode back when
/// it starts; a reload of `[drm] mode` and `rotation` applies them the same way. Every commit the
/// changes made went through at the first try.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn wlr_randr_and_kanshi_change_the_mode_and_rotation_of_a_lit_head() {
    super::assert_in_vm();
    let programs = [common::which("wlr-randr"), common::which("kanshi")];
    let config = format!("{BG_CONFIG}[video]\nscale = \"none\"\n[security]\nprivileged_clients = {programs:?}\n");
    let mut vitrine = super::play_looping("vm-output-management", "640x480-high.mp4", config);
    super::wait_for_pictures(&vitrine, 3);
    let output = |v: &Vitrine| v.ok(&Request::Outputs)["outputs"][0].clone();
    let presented = |v: &Vitrine| v.ok(&Request::Stats)["frames_presented"].as_u64().unwrap_or(0);
    let name = output(&vitrine)["name"].as_str().unwrap().to_string();
    let randr = |v: &Vitrine, args: &[&str]| v.run_client("wlr-randr", args, Duration::from_secs(60));

    let (status, listed, err) = randr(&vitrine, &[]);
    assert!(status.success(), "wlr-randr failed: {err}");
    assert!(listed.contains(&name), "{listed}");
    assert!(listed.contains("1024x768 px") && listed.contains("(preferred, current)"), "{listed}");
    assert!(listed.contains("800x600 px"), "vkms's 800x600 is not listed:\n{listed}");
    assert!(listed.matches(" px, ").count() > 10, "vkms offers dozens of modes:\n{listed}");

    let (status, _, err) = randr(&vitrine, &["--output", &name, "--mode", "800x600", "--transform", "90"]);
    assert!(status.success(), "wlr-randr could not set 800x600 turned 90: {err}\n{}", vitrine.log());
    let now = output(&vitrine);
    assert_eq!(
        (now["width"].as_i64(), now["height"].as_i64(), now["rotation"].as_i64()),
        (Some(800), Some(600), Some(90)),
        "{now}"
    );
    assert_eq!(now["logical_size"], serde_json::json!([600, 800]));
    // Frames go on at the new mode: the flips of its commits come.
    let before = presented(&vitrine);
    assert!(
        common::wait_until(Duration::from_secs(60), || presented(&vitrine) > before + 10),
        "no flips after the mode change:\n{}",
        vitrine.log()
    );
    let shot = vitrine.screenshot("turned");
    // The writeback: the panel's 800x600 framebuffer, the upright 600x800 output turned in it.
    assert_eq!((shot.width, shot.height), (800, 600), "the writeback is not the panel's framebuffer");
    assert!(common::count_near(&shot, [191, 191, 0], 24) > 5_000, "the video's yellow bar is not on the turned output");
    let (_, listed, _) = randr(&vitrine, &[]);
    assert!(listed.contains("Transform: 90"), "{listed}");

    // A mode vkms does not have: refused, named, nothing changed.
    let (status, _, _) = randr(&vitrine, &["--output", &name, "--custom-mode", "1000x700"]);
    assert!(!status.success(), "a mode vkms does not offer was accepted");
    assert!(vitrine.log().contains("has no mode 1000x700"), "{}", vitrine.log());
    assert_eq!(output(&vitrine)["width"], 800);

    // kanshi's profile, at its start: the preferred mode, upright.
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("kanshi");
    std::fs::write(&profile, format!("profile signage {{\n  output {name} mode 1024x768 transform normal\n}}\n"))
        .unwrap();
    let profile = profile.display().to_string();
    vitrine.spawn_client("kanshi", &["-c", &profile]);
    let back = common::wait_until(Duration::from_secs(60), || {
        let o = output(&vitrine);
        o["width"] == 1024 && o["rotation"] == 0
    });
    assert!(back, "kanshi's profile was not applied: {}\n{}", output(&vitrine), vitrine.log());
    let before = presented(&vitrine);
    assert!(
        common::wait_until(Duration::from_secs(60), || presented(&vitrine) > before + 10),
        "no flips after kanshi:\n{}",
        vitrine.log()
    );
    let shot = vitrine.screenshot("back");
    assert_eq!((shot.width, shot.height), (1024, 768));

    // A reload of `[drm] mode` and `rotation` takes the same path, while running; a mode the
    // connector lacks is refused and the running one kept.
    let config_path = vitrine.runtime.join(format!("{}.toml", vitrine.socket));
    let base = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(&config_path, format!("{base}[drm]\nmode = \"800x600\"\nrotation = 180\n")).unwrap();
    let reply = vitrine.ok(&Request::Reload);
    assert!(!reply["report"].as_str().unwrap_or("").contains("next start"), "{reply}");
    let o = output(&vitrine);
    assert_eq!((o["width"].as_i64(), o["rotation"].as_i64()), (Some(800), Some(180)), "{o}");
    std::fs::write(&config_path, format!("{base}[drm]\nmode = \"1000x700\"\n")).unwrap();
    let reply = vitrine.request(&Request::Reload);
    assert!(!reply.ok && reply.error.as_deref().unwrap_or("").contains("no mode 1000x700"), "{reply:?}");
    assert_eq!(output(&vitrine)["width"], 800, "a refused reload changed the mode");
    let before = presented(&vitrine);
    assert!(
        common::wait_until(Duration::from_secs(60), || presented(&vitrine) > before + 10),
        "no flips after the reload"
    );

    let stats = vitrine.ok(&Request::Stats);
    assert_eq!(stats["commits_refused"], 0, "{stats}");
    assert_eq!(stats["flips_timed_out"], 0, "{stats}");
    assert!(vitrine.is_running());
}

/// The colour of each of visl's eight bars in a writeback of a 640x480 picture centred on the
/// 1024x768 output: the most common colour of the middle of each 80-pixel bar (visl's text
/// covers a little of some).
fn bar_colours(image: &vitrine::image::RgbaImage) -> Vec<[u8; 3]> {
    let (x0, y0) = ((image.width - 640) / 2, (image.height - 480) / 2);
    (0..8)
        .map(|bar| {
            let mut counts = std::collections::HashMap::<[u8; 3], u32>::new();
            for y in (y0 + 20..y0 + 460).step_by(3) {
                for x in (x0 + bar * 80 + 20..x0 + bar * 80 + 60).step_by(3) {
                    let p = image.pixel(x, y);
                    *counts.entry([p[0], p[1], p[2]]).or_default() += 1;
                }
            }
            counts.into_iter().max_by_key(|(_, n)| *n).map(|(c, _)| c).unwrap_or_default()
        })
        .collect()
}

/// Each picture's colour comes from its stream: the plane is told the matrix and range (vkms
/// converts with them) and the CPU conversion of composition uses the same, so the two paths
/// show the same bars; a BT.601 full-range stream's bars differ from a BT.709 one's (visl's
/// pictures are the same bytes whatever the stream says); `msg planes` names each colour.
#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn each_streams_colour_is_shown_the_same_on_a_plane_and_composited() {
    super::assert_in_vm();
    let clips = [
        ("colour-601-full.mp4", "BT.601 full"),
        ("colour-709.mp4", "BT.709 limited"),
        ("colour-2020.mp4", "BT.2020 limited"),
        ("640x480-high.mp4", "BT.601 limited"),
    ];
    let mut on_planes = Vec::new();
    for (clip, colour) in clips {
        let mut seen = Vec::new();
        // On a plane; composited by pixman. (GLES on softpipe converts on the CPU too, as pixman
        // does: see `gles_composition_shows_client_and_video`.)
        for (path, planes_on, renderer) in [("plane", true, "pixman"), ("pixman", false, "pixman")] {
            let name = format!("vm-colour-{}-{path}", clip.trim_end_matches(".mp4"));
            let config = format!(
                "background.color = \"#000000\"\n[drm]\nhardware_planes = {planes_on}\nrenderer = \"{renderer}\"\n[video]\nscale = \"none\"\n"
            );
            let vitrine = super::play_looping(&name, clip, config);
            super::wait_for_pictures(&vitrine, 3);
            assert_eq!(vitrine.ok(&Request::Pause)["paused"], true);
            let planes = vitrine.ok(&Request::Planes);
            let layers = planes["outputs"][0]["layers"].as_array().cloned().unwrap_or_default();
            let video = layers.iter().find(|l| l["source"] == "video").cloned().unwrap_or_default();
            assert_eq!(video["composited"], !planes_on, "{planes}");
            assert_eq!(video["colour"], colour, "{planes}");
            seen.push(bar_colours(&vitrine.screenshot("bars")));
        }
        let plane = &seen[0];
        for (path, composed) in ["pixman"].iter().zip(&seen[1..]) {
            for (bar, (p, c)) in plane.iter().zip(composed).enumerate() {
                let off = p.iter().zip(c).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
                assert!(off <= 3, "{clip}: bar {bar} is {p:?} on the plane, {c:?} composited by {path}");
            }
        }
        eprintln!("{clip} ({colour}): plane {plane:?}, pixman {:?}", seen[1]);
        on_planes.push(plane.clone());
    }
    let differ = |a: &[[u8; 3]], b: &[[u8; 3]]| {
        a.iter().zip(b).flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| p.abs_diff(*q))).max().unwrap()
    };
    // visl writes its bars as BT.709 limited-range bytes: read as such, they are the 75% bars.
    let expected = [[191, 191, 0], [0, 191, 191], [0, 191, 0], [191, 0, 191], [191, 0, 0], [0, 0, 191]];
    assert!(differ(&on_planes[1][1..7], &expected) <= 3, "BT.709 bars: {:?}", on_planes[1]);
    assert!(differ(&on_planes[0], &on_planes[1]) > 10, "BT.601 full and BT.709 limited show the same bars");
    assert!(differ(&on_planes[1], &on_planes[2]) > 3, "BT.709 and BT.2020 show the same bars");
}
