//! Signage operations on the headless backend: the background image.

mod common;

use std::time::Duration;

use common::{Launch, Vitrine};
use vitrine::image::RgbaImage;

/// A background image fills the output, cropped to its shape rather than stretched; a missing
/// image file is a configuration error naming it.
#[test]
fn the_background_image_covers_the_output_without_stretching() {
    // 300x100: the left third red, the rest blue.
    let mut data = Vec::new();
    for _ in 0..100 {
        for x in 0..300 {
            data.extend_from_slice(if x < 100 { &[220, 20, 20, 255] } else { &[20, 20, 220, 255] });
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("background.png");
    RgbaImage::from_raw(300, 100, data).unwrap().save_png(&png).unwrap();

    let mut launch = Launch::headless("background-image");
    launch.config = format!("[background]\ncolor = \"#00ff00\"\nimage = \"{}\"\n", png.display());
    let vitrine = Vitrine::launch(launch);
    // 640x480 (4:3) out of a 3:1 image: its middle 133x100 is shown, scaled by 4.8; the red
    // third reaches 80 pixels into the output (stretched, it would reach 213).
    let image = vitrine.wait_for_pixels("background", Duration::from_secs(10), |img| {
        img.fraction_differing((0, 0, 60, 480), [220, 20, 20], 30) < 0.01
    });
    assert!(image.fraction_differing((100, 0, 540, 480), [20, 20, 220], 30) < 0.01, "blue beyond x=100");
    assert!(common::count_near(&image, [0, 255, 0], 10) == 0, "the colour does not show under the image");

    let missing = dir.path().join("nowhere.png");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .arg("check-config")
        .arg({
            let cfg = dir.path().join("bad.toml");
            std::fs::write(&cfg, format!("[background]\nimage = \"{}\"\n", missing.display())).unwrap();
            cfg
        })
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:2:") && err.contains("nowhere.png"), "{err}");
}
