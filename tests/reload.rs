//! Reloading the configuration while running: a valid change applies without disturbing the
//! clients, an invalid file is rejected with its error and the running configuration kept.

mod common;

use std::time::Duration;

use common::{covered, Vitrine};
use vitrine::control::protocol::Request;

#[test]
fn reload_applies_valid_changes_and_keeps_the_running_config_on_errors() {
    let mut vitrine = Vitrine::headless("reload");
    vitrine.spawn_client("weston-simple-shm", &[]);
    vitrine.wait_for_pixels("client", Duration::from_secs(20), |img| covered(img) > 0.1);
    let config = vitrine.runtime.join(format!("{}.toml", vitrine.socket));
    let corner = |img: &vitrine::image::RgbaImage| [img.pixel(5, 5)[0], img.pixel(5, 5)[1], img.pixel(5, 5)[2]];

    // A valid change: over the control socket.
    std::fs::write(&config, "[background]\ncolor = \"#00ff00\"\n").unwrap();
    let reply = vitrine.ok(&Request::Reload);
    assert!(reply["report"].as_str().unwrap().contains("applied"), "{reply}");
    vitrine.wait_for_pixels("green", Duration::from_secs(10), |img| corner(img) == [0, 255, 0]);

    // An invalid file: rejected with its position, the running configuration kept.
    std::fs::write(&config, "[background]\ncolor = \"green\"\n").unwrap();
    let reply = vitrine.request(&Request::Reload);
    assert!(!reply.ok);
    let err = reply.error.unwrap();
    assert!(err.contains(":2:9:") && err.contains("kept"), "{err}");
    let image = vitrine.screenshot("kept");
    assert_eq!(corner(&image), [0, 255, 0]);

    // SIGHUP does the same.
    std::fs::write(&config, "[background]\ncolor = \"#0000ff\"\n").unwrap();
    unsafe {
        libc::kill(vitrine.child.id() as i32, libc::SIGHUP);
    }
    vitrine.wait_for_pixels("blue", Duration::from_secs(10), |img| corner(img) == [0, 0, 255]);

    // The client was never disturbed.
    assert_eq!(vitrine.app_ids(), ["org.freedesktop.weston.simple-shm"]);
    assert!(vitrine.is_running());
    let log = vitrine.log();
    assert!(log.contains("configuration reloaded (SIGHUP)"), "{log}");
}
