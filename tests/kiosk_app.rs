//! The kiosk app started with `vitrine -- APP`: environment, exit status, restart policy.

mod common;

use std::time::Duration;

use common::{Launch, Vitrine, BG_CONFIG};

#[test]
fn app_exit_status_is_passed_on() {
    let mut launch = Launch::headless("app-exit");
    launch.args.extend(["--".into(), "sh".into(), "-c".into(), "sleep 1; exit 7".into()]);
    let mut vitrine = Vitrine::launch(launch);
    let status = vitrine.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(7), "log:\n{}", vitrine.log());
}

#[test]
fn app_sees_vitrine_and_a_real_client_app_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env");
    let script = format!(
        "echo \"$WAYLAND_DISPLAY $VITRINE_SOCKET ${{DISPLAY:-nodisplay}}\" > {}; exec weston-simple-shm",
        env_file.display()
    );
    let mut launch = Launch::headless("app-client");
    launch.args.extend(["--".into(), "sh".into(), "-c".into(), script]);
    common::require("weston-simple-shm");
    let mut vitrine = Vitrine::launch(launch);
    vitrine.wait_for_pixels("app drawn", Duration::from_secs(20), |img| common::covered(img) > 0.1);
    let seen = common::read(&env_file);
    let parts: Vec<&str> = seen.split_whitespace().collect();
    assert_eq!(parts.first(), Some(&vitrine.socket.as_str()), "{seen}");
    assert_eq!(parts.get(1).map(std::path::PathBuf::from), Some(vitrine.control_path()));
    assert_eq!(parts.get(2), Some(&"nodisplay"));

    // Killing the app ends vitrine with the app's status (128 + SIGTERM).
    let pid = vitrine.clients_json()["clients"][0]["pid"].as_i64().expect("pid") as i32;
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let status = vitrine.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
}

#[test]
fn restart_policy_keeps_the_app_running() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let mut launch = Launch::headless("app-restart");
    launch.config =
        format!("{BG_CONFIG}[kiosk]\non_app_exit = \"restart\"\nrestart_delay_ms = 100\nrestart_delay_max_ms = 400\n");
    launch.args.extend(["--".into(), "sh".into(), "-c".into(), format!("echo run >> {}; exit 3", runs.display())]);
    let mut vitrine = Vitrine::launch(launch);
    let restarted = common::wait_until(Duration::from_secs(20), || common::read(&runs).lines().count() >= 4);
    assert!(restarted, "the app ran {} times", common::read(&runs).lines().count());
    assert!(vitrine.is_running(), "vitrine must keep running under the restart policy");
    assert!(vitrine.log().contains("restarting the kiosk app"));
}

#[test]
fn a_missing_app_is_reported_and_ends_vitrine_with_127() {
    let mut launch = Launch::headless("app-missing");
    launch.args.extend(["--".into(), "/nonexistent/signage-app".into()]);
    let mut vitrine = Vitrine::launch(launch);
    let status = vitrine.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(127));
    let log = vitrine.log();
    assert!(log.contains("cannot start the kiosk app") && log.contains("/nonexistent/signage-app"), "{log}");
}
