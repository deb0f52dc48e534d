//! HDMI-CEC with vivid's emulated adapters: `cec-follower` (v4l-utils) plays the TV on the
//! adapter of vivid's HDMI input, vitrine is the playback device on its HDMI output's, and the
//! daily schedule (on a fake clock) switches the TV.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::common::{self, Launch, Vitrine, BG_CONFIG};
use vitrine::control::protocol::Request;

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{program} {args:?}: {text}");
    text
}

/// The device node whose sysfs name is `name` (video4linux or cec).
fn node_named(class: &str, name: &str) -> Option<PathBuf> {
    std::fs::read_dir(format!("/sys/class/{class}")).ok()?.flatten().find_map(|e| {
        let text = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
        (text.trim() == name).then(|| Path::new("/dev").join(e.file_name()))
    })
}

/// The CEC adapter whose name (from `cec-ctl`) contains `part`.
fn cec_adapter(part: &str) -> PathBuf {
    for n in 0..8 {
        let dev = format!("/dev/cec{n}");
        if !Path::new(&dev).exists() {
            continue;
        }
        let out = Command::new("cec-ctl").args(["-d", &dev]).output().unwrap();
        if String::from_utf8_lossy(&out.stdout).lines().any(|l| l.contains("Name") && l.contains(part)) {
            return PathBuf::from(dev);
        }
    }
    panic!("no CEC adapter named *{part}*: {}", run("ls", &["-l", "/dev"]));
}

/// vivid with one HDMI input (the TV's side) wired to one HDMI output (vitrine's), and
/// cec-follower playing the TV. Dropping it puts the default vivid back.
struct Tv {
    follower: Option<Child>,
    tv: PathBuf,
    pub source: PathBuf,
    pub log: PathBuf,
}

impl Tv {
    fn new() -> Tv {
        let _ = Command::new("rmmod").arg("vivid").status();
        run("modprobe", &["vivid", "num_inputs=1", "input_types=0x3", "num_outputs=1", "output_types=0x1"]);
        assert!(
            common::wait_until(Duration::from_secs(10), || node_named("video4linux", "vivid-000-vid-cap").is_some())
        );
        let cap = node_named("video4linux", "vivid-000-vid-cap").unwrap();
        let cap = cap.to_str().unwrap();
        run("v4l2-ctl", &["-d", cap, "--set-ctrl=hdmi_000_0_is_connected_to=2"]);
        run("v4l2-ctl", &["-d", cap, "--set-edid=type=hdmi"]);
        let (tv, source) = (cec_adapter("vid-cap"), cec_adapter("vid-out"));
        run("cec-ctl", &["-d", tv.to_str().unwrap(), "--tv"]);
        let log = common::artifacts().join("vm-cec-follower.log");
        let out = std::fs::File::create(&log).unwrap();
        let follower = Command::new("cec-follower")
            .args(["-d", tv.to_str().unwrap(), "-m", "-s", "-w"])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("cec-follower (v4l-utils)");
        Tv { follower: Some(follower), tv, source, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The TV goes away: nobody answers on the bus.
    fn unplug(&mut self) {
        if let Some(mut f) = self.follower.take() {
            let _ = f.kill();
            let _ = f.wait();
        }
        run("cec-ctl", &["-d", self.tv.to_str().unwrap(), "--clear"]);
    }
}

impl Drop for Tv {
    fn drop(&mut self) {
        self.unplug();
        let _ = Command::new("rmmod").arg("vivid").status();
        let _ = Command::new("modprobe").arg("vivid").status();
    }
}

/// What `msg outputs` says of the TV behind the first output.
fn tv(vitrine: &Vitrine) -> serde_json::Value {
    vitrine.ok(&Request::Outputs)["outputs"][0]["cec"].clone()
}

fn tv_power(vitrine: &Vitrine) -> String {
    tv(vitrine)["tv_power"].as_str().unwrap_or("unknown").to_string()
}

#[test]
#[ignore = "needs the VM rig's kernel drivers: run tests/vm/run"]
fn the_schedule_switches_the_tv_through_cec() {
    super::assert_in_vm();
    common::require("cec-follower");
    let mut tv_side = Tv::new();
    let config = format!(
        "{BG_CONFIG}[schedule]\non = \"22:00:25\"\noff = \"22:00:00\"\n[cec]\nosd_name = \"shop window\"\ndevices = {{ \"Virtual-1\" = {:?} }}\n",
        tv_side.source.display().to_string()
    );
    let vitrine = Vitrine::launch(Launch {
        name: "vm-cec",
        args: Vec::new(),
        config,
        env: vec![("VITRINE_FAKE_TIME".into(), "21:59:55".into())],
        runtime: None,
        wrapper: Vec::new(),
    });
    let power = |v: &Vitrine| v.ok(&Request::Outputs)["outputs"][0]["power"].as_str().unwrap_or("").to_string();
    let follower_log = tv_side.log.clone();
    let seen = |what: &str| {
        let follower = std::fs::read_to_string(&follower_log).unwrap_or_default();
        format!("{what}\nTV: {}\nfollower:\n{follower}\nvitrine:\n{}", tv(&vitrine), vitrine.log())
    };

    // At start (opening hours): the TV is woken and vitrine is its active source.
    let woken = common::wait_until(Duration::from_secs(20), || {
        tv(&vitrine)["active_source"] == true && ["on", "to-on"].contains(&tv_power(&vitrine).as_str())
    });
    assert!(woken, "{}", seen("the TV was not woken at start"));
    let state = tv(&vitrine);
    assert_eq!(state["physical_address"], "1.1.0.0", "{state}");
    assert_eq!(state["logical_address"], 4, "the first playback device address: {state}");
    // Seen from the TV: the messages, and vitrine's name.
    let log = tv_side.log();
    for message in ["IMAGE_VIEW_ON", "ACTIVE_SOURCE"] {
        assert!(log.contains(message), "{}", seen(&format!("the TV never got {message}")));
    }
    let name = run("cec-ctl", &["-d", tv_side.tv.to_str().unwrap(), "--to", "4", "--give-osd-name"]);
    assert!(name.contains("shop window"), "the TV asked vitrine's name: {name}");

    // Closing time: the displays go off and the TV to standby.
    assert!(common::wait_until(Duration::from_secs(30), || power(&vitrine) == "off"), "{}", seen("no closing"));
    let standby = common::wait_until(Duration::from_secs(20), || {
        ["standby", "to-standby"].contains(&tv_power(&vitrine).as_str())
    });
    assert!(standby, "{}", seen("the TV did not go to standby at closing"));
    assert!(tv_side.log().contains("STANDBY"), "{}", seen("the TV never got STANDBY"));
    // Opening time: on again, and vitrine the source again.
    assert!(common::wait_until(Duration::from_secs(40), || power(&vitrine) == "on"), "{}", seen("no opening"));
    let on = common::wait_until(Duration::from_secs(20), || ["on", "to-on"].contains(&tv_power(&vitrine).as_str()));
    assert!(on, "{}", seen("the TV did not come on at opening"));

    // A TV that does not answer: the displays still switch at once, the tries are counted.
    tv_side.unplug();
    let before = tv(&vitrine)["unanswered"].as_u64().unwrap_or(0);
    let reply = vitrine.ok(&Request::Display { on: false });
    assert_eq!(reply["on"], false, "{reply}");
    assert_eq!(power(&vitrine), "off");
    let counted =
        common::wait_until(Duration::from_secs(30), || tv(&vitrine)["unanswered"].as_u64().unwrap_or(0) > before);
    assert!(counted, "{}", seen("the unanswered standby was not counted"));
    let reply = vitrine.ok(&Request::Display { on: true });
    assert_eq!(reply["on"], true, "{reply}");
    assert_eq!(power(&vitrine), "on");
    let mut vitrine = vitrine;
    assert!(vitrine.is_running());
}
