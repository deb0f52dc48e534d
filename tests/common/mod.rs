//! Test harness: runs the real `vitrine` binary with a private runtime directory, starts real
//! clients against it, and looks at its screenshots.
#![allow(dead_code)]

pub mod wl;

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vitrine::control::client;
use vitrine::control::protocol::{Reply, Request};
use vitrine::image::RgbaImage;

/// The background every test configures: no client draws this magenta.
pub const BG: [u8; 3] = [0xff, 0x00, 0xff];
pub const BG_CONFIG: &str = "[background]\ncolor = \"#ff00ff\"\n";

/// A GTK 3 window with one focused entry at its top (python3-gi): it prints `ready`, then
/// `text=…` each time its text changes.
pub const GTK_ENTRY: &str = r#"
import gi
gi.require_version("Gtk", "3.0")
from gi.repository import Gtk
win = Gtk.Window(title="entry")
box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL)
entry = Gtk.Entry()
box.pack_start(entry, False, False, 0)
win.add(box)
entry.connect("changed", lambda e: print("text=" + e.get_text(), flush=True))
win.connect("destroy", Gtk.main_quit)
win.show_all()
entry.grab_focus()
print("ready", flush=True)
Gtk.main()
"#;

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst))
}

/// Fail (never skip) when a program the test needs is missing.
/// The executable `program` runs as (symlinks resolved, as `/proc/PID/exe` names it: what
/// `[security] privileged_clients` lists).
pub fn which(program: &str) -> String {
    require(program);
    let out = Command::new("sh").args(["-c", &format!("command -v {program}")]).output().unwrap();
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::fs::canonicalize(&path).map(|p| p.display().to_string()).unwrap_or(path)
}

pub fn require(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
        .unwrap_or(false);
    assert!(found, "{program} is not installed: run scripts/deps test");
}

/// A private XDG_RUNTIME_DIR (mode 0700).
pub fn runtime_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("vitrine-test-").tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}

/// Where tests leave screenshots and logs for a human to look at.
pub fn artifacts() -> PathBuf {
    // Inside the VM the build tree is read-only: the rig points this at its results folder.
    let dir = std::env::var_os("VITRINE_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts"));
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Encode a clip from an ffmpeg lavfi source (never kept in the repository).
pub fn encode_clip(dir: &Path, name: &str, source: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source])
        .args(args)
        .arg(&path)
        .status()
        .expect("ffmpeg is not installed: run scripts/deps test");
    assert!(status.success(), "ffmpeg failed for {name}");
    path
}

pub struct Vitrine {
    pub child: Child,
    pub runtime: PathBuf,
    _runtime_guard: Option<tempfile::TempDir>,
    pub socket: String,
    pub log_path: PathBuf,
    pub name: String,
    clients: Vec<Child>,
}

pub struct Launch<'a> {
    pub name: &'a str,
    pub args: Vec<String>,
    pub config: String,
    /// Extra environment for vitrine itself (e.g. WAYLAND_DISPLAY of a parent).
    pub env: Vec<(String, String)>,
    /// Share a runtime dir with a parent compositor.
    pub runtime: Option<PathBuf>,
    /// Run vitrine through this command (e.g. setpriv to drop privileges).
    pub wrapper: Vec<String>,
}

impl<'a> Launch<'a> {
    pub fn headless(name: &'a str) -> Self {
        Launch {
            name,
            args: vec!["--backend".into(), "headless".into(), "--output".into(), "640x480@60".into()],
            config: BG_CONFIG.into(),
            env: Vec::new(),
            runtime: None,
            wrapper: Vec::new(),
        }
    }
}

impl Vitrine {
    pub fn headless(name: &str) -> Vitrine {
        Vitrine::launch(Launch::headless(name))
    }

    pub fn launch(launch: Launch) -> Vitrine {
        let (runtime, guard) = match launch.runtime {
            Some(dir) => (dir, None),
            None => {
                let dir = runtime_dir();
                (dir.path().to_path_buf(), Some(dir))
            }
        };
        let socket = unique("vt");
        let config_path = runtime.join(format!("{socket}.toml"));
        std::fs::write(&config_path, &launch.config).expect("write config");
        let log_path = artifacts().join(format!("{}.log", launch.name));
        let log = File::create(&log_path).expect("log file");
        let mut cmd = match launch.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_vitrine"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_vitrine")),
        };
        cmd.arg("--socket")
            .arg(&socket)
            .arg("--config")
            .arg(&config_path)
            .args(&launch.args)
            .env("XDG_RUNTIME_DIR", &runtime)
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("DISPLAY")
            .env_remove("VITRINE_SOCKET")
            .env("RUST_LOG", std::env::var("VITRINE_TEST_LOG").unwrap_or_else(|_| "info,vitrine=debug".into()))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for (k, v) in &launch.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn vitrine");
        let mut vitrine = Vitrine {
            child,
            runtime,
            _runtime_guard: guard,
            socket,
            log_path,
            name: launch.name.to_string(),
            clients: Vec::new(),
        };
        // Ready when the control socket answers; a vitrine that already exited (its kiosk app
        // ended) is left to the test to judge.
        let ready = wait_until(Duration::from_secs(30), || {
            matches!(vitrine.child.try_wait(), Ok(Some(_)))
                || (vitrine.control_path().exists()
                    && client::request(&vitrine.control_path(), &Request::Version).is_ok())
        });
        if !ready {
            let status = vitrine.child.try_wait().ok().flatten();
            panic!("vitrine did not come up (exit status {status:?}); log:\n{}", vitrine.log());
        }
        vitrine
    }

    /// A Wayland connection to this vitrine.
    pub fn wayland(&self) -> wayland_client::Connection {
        let stream = std::os::unix::net::UnixStream::connect(self.runtime.join(&self.socket)).unwrap();
        wayland_client::Connection::from_socket(stream).unwrap()
    }

    pub fn control_path(&self) -> PathBuf {
        vitrine::control::socket_path(&self.runtime, &self.socket)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn request(&self, request: &Request) -> Reply {
        client::request(&self.control_path(), request)
            .unwrap_or_else(|e| panic!("control request {request:?} failed: {e}\nlog:\n{}", self.log()))
    }

    /// `msg stats` polled until vitrine is gone (a playlist played with `--exit-when-done`), or
    /// `timeout`: the last answer (the counters go with the process).
    pub fn stats_until_exit(&self, timeout: Duration) -> serde_json::Value {
        let mut stats = serde_json::Value::Null;
        wait_until(timeout, || match client::request(&self.control_path(), &Request::Stats) {
            Ok(reply) => {
                if let Some(data) = reply.data {
                    stats = data;
                }
                false
            }
            Err(_) => true,
        });
        stats
    }

    pub fn ok(&self, request: &Request) -> serde_json::Value {
        let reply = self.request(request);
        assert!(reply.ok, "{request:?} failed: {:?}", reply.error);
        reply.data.unwrap_or_default()
    }

    pub fn screenshot(&self, tag: &str) -> RgbaImage {
        // Written where vitrine can always write (it may run as another user), kept in artifacts.
        let name = format!("{}-{tag}.png", self.name);
        let path = self.runtime.join(&name);
        self.ok(&Request::Screenshot { output: None, path: path.clone() });
        let _ = std::fs::copy(&path, artifacts().join(&name));
        let image = RgbaImage::load_png(&path).expect("screenshot PNG");
        let _ = std::fs::remove_file(&path);
        image
    }

    /// Take screenshots until `check` accepts one; fail with the last one saved otherwise.
    pub fn wait_for_pixels(&self, what: &str, timeout: Duration, check: impl Fn(&RgbaImage) -> bool) -> RgbaImage {
        let deadline = Instant::now() + timeout;
        let mut n = 0;
        loop {
            let image = self.screenshot(&format!("{what}-{n}"));
            if check(&image) {
                return image;
            }
            n += 1;
            if Instant::now() > deadline {
                panic!(
                    "{what}: the screenshot never showed the expected pixels (last one: {}/{}-{what}-{}.png); log:\n{}",
                    artifacts().display(),
                    self.name,
                    n - 1,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Environment for a client of this vitrine.
    pub fn client_command(&self, program: &str, args: &[&str]) -> Command {
        require(program);
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .env("WAYLAND_DISPLAY", &self.socket)
            .env_remove("DISPLAY")
            .env("GDK_BACKEND", "wayland")
            .env("LIBGL_ALWAYS_SOFTWARE", "1")
            .stdin(Stdio::null());
        cmd
    }

    /// Start a client whose output goes to artifacts/<name>-<program>.log; it is killed at the end.
    pub fn spawn_client(&mut self, program: &str, args: &[&str]) -> PathBuf {
        let log_path = artifacts().join(format!("{}-{}.log", self.name, program));
        let log = File::create(&log_path).expect("client log");
        let child = self
            .client_command(program, args)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        self.clients.push(child);
        log_path
    }

    /// Run a client to completion (with a timeout) and return its status and output.
    pub fn run_client(&self, program: &str, args: &[&str], timeout: Duration) -> (ExitStatus, String, String) {
        // Output goes to files, not pipes: a client that forks a server (wl-copy) keeps pipes open.
        let out_path = artifacts().join(format!("{}-{}.{}.out", self.name, program, unique("run")));
        let err_path = out_path.with_extension("err");
        let mut child = self
            .client_command(program, args)
            .stdout(File::create(&out_path).expect("stdout file"))
            .stderr(File::create(&err_path).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let mut status = None;
        let finished = wait_until(timeout, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if !finished {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(finished, "{program} did not finish within {timeout:?}");
        (status.expect("status"), read(&out_path), read(&err_path))
    }

    pub fn clients_json(&self) -> serde_json::Value {
        self.ok(&Request::Clients)
    }

    /// App ids of all toplevels vitrine knows.
    pub fn app_ids(&self) -> Vec<String> {
        app_ids_of(&self.clients_json())
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait for vitrine to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status.unwrap_or_else(|| panic!("vitrine did not exit within {timeout:?}; log:\n{}", self.log()))
    }
}

impl Drop for Vitrine {
    fn drop(&mut self) {
        for c in &mut self.clients {
            let _ = c.kill();
            let _ = c.wait();
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = client::request(&self.control_path(), &Request::Quit);
            if !wait_until(Duration::from_secs(3), || matches!(self.child.try_wait(), Ok(Some(_)))) {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// Count pixels whose RGB is within `tol` of `color`.
pub fn count_near(image: &RgbaImage, color: [u8; 3], tol: u8) -> usize {
    image.data.chunks_exact(4).filter(|p| (0..3).all(|c| p[c].abs_diff(color[c]) <= tol)).count()
}

/// Fraction of the whole image that is not the test background.
pub fn covered(image: &RgbaImage) -> f64 {
    image.fraction_differing((0, 0, image.width, image.height), BG, 8)
}

/// App ids in a `clients` reply.
pub fn app_ids_of(data: &serde_json::Value) -> Vec<String> {
    data["clients"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["surfaces"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["app_id"].as_str().map(str::to_string))
        .collect()
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The main thread's voluntary context switches: how often the event loop went to sleep and was
/// woken (the kernel counts them; the main thread's id is the process id).
pub fn main_thread_wakeups(pid: u32) -> u64 {
    voluntary_switches(pid, pid)
}

/// The same for the thread of `pid` named `name` (the name vitrine gives it).
pub fn thread_wakeups(pid: u32, name: &str) -> u64 {
    let tid = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| t.file_name().to_str()?.parse::<u32>().ok())
        .find(|tid| read(Path::new(&format!("/proc/{pid}/task/{tid}/comm"))).trim() == name)
        .unwrap_or_else(|| panic!("no thread {name} in {pid}"));
    voluntary_switches(pid, tid)
}

fn voluntary_switches(pid: u32, tid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches")
}
