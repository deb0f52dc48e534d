//! vitrine as a window inside another compositor: headless weston (judged by weston's own
//! screenshot of its screen) and a real KWin (which resizes vitrine's window).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{covered, Launch, Vitrine, BG, BG_CONFIG};
use vitrine::control::protocol::Request;
use vitrine::image::RgbaImage;

/// A parent compositor process, killed when dropped.
struct Parent {
    child: Child,
    socket: String,
    log: PathBuf,
}

impl Drop for Parent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Parent {
    fn start(mut cmd: Command, runtime: &Path, socket: String, name: &str) -> Parent {
        let log = common::artifacts().join(format!("{name}-parent.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .env("XDG_RUNTIME_DIR", runtime)
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("DISPLAY")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start the parent compositor");
        let mut parent = Parent { child, socket, log };
        let up = common::wait_until(Duration::from_secs(60), || runtime.join(&parent.socket).exists());
        let alive = matches!(parent.child.try_wait(), Ok(None));
        assert!(up && alive, "the parent compositor did not start:\n{}", common::read(&parent.log));
        parent
    }
}

fn nested_vitrine(name: &str, runtime: &Path, parent: &Parent, window: &str) -> Vitrine {
    nested_vitrine_with(name, runtime, parent, window, BG_CONFIG)
}

fn nested_vitrine_with(name: &str, runtime: &Path, parent: &Parent, window: &str, config: &str) -> Vitrine {
    Vitrine::launch(Launch {
        name,
        // No --backend: auto must pick nested because WAYLAND_DISPLAY is set.
        args: vec!["--output".into(), window.into()],
        config: config.into(),
        env: vec![("WAYLAND_DISPLAY".into(), parent.socket.clone())],
        runtime: Some(runtime.to_path_buf()),
        wrapper: Vec::new(),
    })
}

/// Bounding box (x, y, w, h) of the pixels near `color`.
fn bbox_of(image: &RgbaImage, color: [u8; 3]) -> Option<(u32, u32, u32, u32)> {
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for y in 0..image.height {
        for x in 0..image.width {
            let p = image.pixel(x, y);
            if (0..3).all(|c| p[c].abs_diff(color[c]) <= 8) {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x);
                y1 = y1.max(y);
            }
        }
    }
    (x0 <= x1).then(|| (x0, y0, x1 - x0 + 1, y1 - y0 + 1))
}

#[test]
fn nested_in_weston_the_parent_shows_the_client() {
    common::require("weston");
    common::require("weston-screenshooter");
    let runtime = common::runtime_dir();
    let socket = common::unique("weston");
    let mut cmd = Command::new("weston");
    cmd.args([
        "--backend=headless-backend.so",
        "--use-pixman",
        "--debug",
        "--width=1024",
        "--height=768",
        "--idle-time=0",
    ])
    .arg(format!("--socket={socket}"));
    let parent = Parent::start(cmd, runtime.path(), socket, "nested-weston");

    // The background has a red square in its top-left corner (transparent elsewhere, so the
    // magenta colour shows): it says which way up each screenshot is.
    let marker = runtime.path().join("marker.png");
    let mut pixels = vec![0u8; 800 * 600 * 4];
    for y in 0..100 {
        for x in 0..100 {
            pixels[(y * 800 + x) * 4..][..4].copy_from_slice(&[255, 0, 0, 255]);
        }
    }
    RgbaImage::from_raw(800, 600, pixels).unwrap().save_png(&marker).unwrap();
    let mut vitrine = nested_vitrine_with(
        "nested-weston",
        runtime.path(),
        &parent,
        "800x600",
        &format!("{BG_CONFIG}image = {:?}\n", marker.display().to_string()),
    );
    let version = vitrine.ok(&Request::Version);
    assert_eq!(version["backend"], "nested");
    assert!(vitrine.log().contains("running as a window in that session"));
    vitrine.spawn_client("weston-simple-shm", &[]);
    vitrine.wait_for_pixels("own", Duration::from_secs(30), |img| covered(img) > 0.05);

    // What the parent shows: vitrine's magenta window with simple-shm's pattern in its middle.
    let shots = tempfile::tempdir().unwrap();
    let mut last = None;
    let seen = common::wait_until(Duration::from_secs(40), || {
        for entry in std::fs::read_dir(shots.path()).unwrap().flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        let status = Command::new("weston-screenshooter")
            .current_dir(shots.path())
            .env("XDG_RUNTIME_DIR", runtime.path())
            .env("WAYLAND_DISPLAY", &parent.socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !status.map(|s| s.success()).unwrap_or(false) {
            return false;
        }
        let Some(png) = std::fs::read_dir(shots.path()).unwrap().flatten().map(|e| e.path()).next() else {
            return false;
        };
        let Ok(image) = RgbaImage::load_png(&png) else {
            return false;
        };
        let _ = std::fs::copy(&png, common::artifacts().join("nested-weston-parent.png"));
        let ok = match bbox_of(&image, BG) {
            Some((x, y, w, h)) if w >= 780 && h >= 580 => {
                // simple-shm's 250x250 pattern sits in the centre of vitrine's window, the red
                // marker in its top-left corner.
                let centre = (x + w / 2 - 100, y + h / 2 - 100, 200, 200);
                image.fraction_differing(centre, BG, 8) > 0.95
                    && image.distinct_colors() > 50
                    && image.pixel(x + 50, y + 50)[..3] == [255, 0, 0]
            }
            _ => false,
        };
        last = Some(image);
        ok
    });
    assert!(
        seen,
        "weston's screenshot never showed vitrine's window with the client (see {}/nested-weston-parent.png; last one {:?})",
        common::artifacts().display(),
        last.map(|i| (i.width, i.height))
    );
    // vitrine's own screenshot is the right way up too: what the parent shows.
    let own = vitrine.screenshot("nested-weston-own");
    assert_eq!(own.pixel(50, 50)[..3], [255, 0, 0], "the marker is not top-left in vitrine's screenshot");
    assert_eq!(own.pixel(50, 550)[..3], BG, "the marker is at the bottom of vitrine's screenshot");
    assert!(vitrine.is_running());
}

#[test]
fn nested_in_kwin_the_window_is_resized_and_the_client_renders() {
    common::require("kwin_wayland");
    let runtime = common::runtime_dir();
    // The installed kwin_wayland carries file capabilities that cannot be used here; a plain copy
    // runs, and it must keep its name for KWin to find its own Qt platform plugin.
    let bin_dir = tempfile::tempdir().unwrap();
    let kwin = bin_dir.path().join("kwin_wayland");
    std::fs::copy("/usr/bin/kwin_wayland", &kwin).expect("copy kwin_wayland");
    let socket = common::unique("kwin");
    let mut cmd = Command::new(&kwin);
    cmd.args(["--virtual", "--width", "1024", "--height", "768", "--no-lockscreen", "--no-global-shortcuts"])
        .args(["--socket", &socket])
        .env("XDG_CONFIG_HOME", runtime.path().join("config"))
        .env("QT_QPA_PLATFORM", "wayland");
    let parent = Parent::start(cmd, runtime.path(), socket, "nested-kwin");

    // Ask for a window larger than KWin's screen: KWin constrains it, and vitrine follows.
    let mut vitrine = nested_vitrine("nested-kwin", runtime.path(), &parent, "1600x1200");
    assert_eq!(vitrine.ok(&Request::Version)["backend"], "nested");
    let mut size = (0, 0);
    let resized = common::wait_until(Duration::from_secs(30), || {
        let outputs = vitrine.ok(&Request::Outputs);
        let o = &outputs["outputs"][0];
        size = (o["width"].as_i64().unwrap_or(0), o["height"].as_i64().unwrap_or(0));
        size.0 > 0 && size.0 <= 1024 && size.1 <= 768
    });
    assert!(resized, "KWin did not resize vitrine's 1600x1200 window (output is {size:?}); log:\n{}", vitrine.log());
    assert!(vitrine.log().contains("window resized by the parent session"));

    vitrine.spawn_client("weston-simple-shm", &[]);
    let image = vitrine.wait_for_pixels("client", Duration::from_secs(30), |img| {
        let (w, h) = (img.width, img.height);
        img.fraction_differing((w / 2 - 100, h / 2 - 100, 200, 200), BG, 8) > 0.95
    });
    assert_eq!((image.width as i64, image.height as i64), size, "the screenshot has the window's new size");
    assert!(image.fraction_differing((0, 0, 50, 50), BG, 8) < 0.01, "vitrine's background fills the window");
}
