//! Tests that need real kernel drivers (vkms, visl, ...): they run inside the VM rig
//! (`tests/vm/run`, called by `scripts/test`), which runs this binary with `--ignored`.
//! On the host they are ignored, never passed: the rig reports them as PASS/FAIL.

mod common;

use std::time::Duration;

use common::{covered, Launch, Vitrine, BG, BG_CONFIG};
use vitrine::control::protocol::Request;

const IN_VM: &str = "needs the VM rig's kernel drivers: run tests/vm/run";

fn assert_in_vm() {
    assert!(std::env::var_os("VITRINE_IN_VM").is_some(), "this test needs the VM rig (vkms, visl): run tests/vm/run");
}

/// vitrine with the backend chosen automatically, as a user on a free VT would start it.
fn auto(name: &str) -> Vitrine {
    Vitrine::launch(Launch { name, args: Vec::new(), config: BG_CONFIG.into(), env: Vec::new(), runtime: None })
}

#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn probe_describes_vkms() {
    assert_in_vm();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vitrine")).args(["probe", "--json"]).output().unwrap();
    assert!(out.status.success());
    let probe: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let card = &probe["drm"][0];
    assert_eq!(card["driver"], "vkms", "{probe}");
    let planes = card["planes"].as_array().unwrap();
    let count = |kind: &str| planes.iter().filter(|p| p["type"] == kind).count();
    assert_eq!((count("Primary"), count("Overlay"), count("Cursor")), (1, 8, 1), "vkms with enable_overlay/cursor");
    for p in planes {
        assert!(p["formats"]["NV12"].as_array().is_some_and(|m| m.contains(&"LINEAR".into())), "{p}");
        assert!(!p["color_encoding"].as_array().unwrap().is_empty(), "YUV planes have COLOR_ENCODING: {p}");
    }
    let connectors = card["connectors"].as_array().unwrap();
    assert!(connectors.iter().any(|c| c["writeback"] == true), "enable_writeback gives a writeback connector");
    assert!(connectors.iter().any(|c| c["name"] == "Virtual-1" && c["connected"] == true));
}

#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn drm_backend_shows_a_client_through_the_planes() {
    assert_in_vm();
    let _ = IN_VM;
    let mut vitrine = auto("vm-drm-client");
    let version = vitrine.ok(&Request::Version);
    assert_eq!(version["backend"], "drm", "auto must pick DRM on a free VT; log:\n{}", vitrine.log());
    let outputs = vitrine.ok(&Request::Outputs);
    assert_eq!(outputs["outputs"][0]["name"], "Virtual-1");
    assert_eq!(
        (outputs["outputs"][0]["width"].as_i64(), outputs["outputs"][0]["height"].as_i64()),
        (Some(1024), Some(768))
    );

    vitrine.spawn_client("weston-simple-shm", &[]);
    // The screenshot comes from the writeback connector: what the planes really scan out.
    let image = vitrine.wait_for_pixels("writeback", Duration::from_secs(60), |img| {
        img.fraction_differing((412, 284, 200, 200), BG, 8) > 0.95
    });
    assert_eq!((image.width, image.height), (1024, 768));
    assert!(image.fraction_differing((0, 0, 100, 100), BG, 8) < 0.01, "the background is not what was configured");
    assert!(covered(&image) > 0.05);

    // Steady state: one commit per presented frame, no new framebuffers, no test commits.
    let before = vitrine.ok(&Request::Stats);
    std::thread::sleep(Duration::from_secs(2));
    let after = vitrine.ok(&Request::Stats);
    let delta = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    assert!(delta("frames_presented") >= 10, "only {} frames in 2 s: {after}", delta("frames_presented"));
    assert_eq!(delta("framebuffers_created"), 0, "framebuffers must be created once, not per frame: {after}");
    assert_eq!(delta("test_commits"), 0, "the plan is cached: no test commits in steady state: {after}");
    assert!(after["test_commits"].as_u64().unwrap() >= 1, "plans are verified with TEST_ONLY commits");
    let commits = delta("commits");
    let frames = delta("frames_presented");
    assert!(commits <= frames + 1, "{commits} commits for {frames} frames");
    // 2 composition buffers + 1 writeback buffer, for the whole run.
    assert_eq!(after["framebuffers_created"], 3, "{after}");

    // A shared-memory client cannot be scanned out: it is composited, and `planes` says why.
    let planes = vitrine.ok(&Request::Planes);
    let layers = planes["outputs"][0]["layers"].as_array().unwrap().clone();
    let client = layers.iter().find(|l| l["source"] == "client").expect("client layer");
    assert_eq!(client["name"], "org.freedesktop.weston.simple-shm");
    assert_eq!(client["composited"], true);
    assert!(client["reason"].as_str().unwrap().contains("shared memory"), "{client}");
    let composition = layers.iter().find(|l| l["source"] == "composition").expect("composition layer");
    assert!(composition["plane"].as_u64().is_some(), "{composition}");
}
