//! Bounded fuzzing of the parsers of untrusted bytes: the MP4, Matroska, Annex-B and FWHT
//! demuxers; the H.264 parameter-set and slice-header parser with the POC, DPB, reference-list
//! and V4L2-control logic it feeds; the configuration; control requests; the checks on a
//! client's dmabuf parameters.
//!
//! Each target starts from real seeds (clips encoded here by ffmpeg/x264 in several coding
//! configurations, the packaged configuration, every control request) and runs a fixed number of
//! mutated inputs (`VITRINE_FUZZ_RUNS`, 50 000 by default, a few seconds a target; `VITRINE_FUZZ_SEED` picks another
//! sequence), in a child process of its own: a panic is caught and its input kept, and an abort
//! (an allocation over the cap, a stack overflow) ends only the child, whose last input is kept.
//! Built with the test profile, so integer overflow panics rather than wraps. A counting
//! allocator holds each input's live memory under 64 MiB, whatever sizes the file claims: going
//! over it aborts the child, which is a finding. Findings go to `target/fuzz-findings/`; once
//! fixed, each becomes a regression input in `tests/fuzz/<target>/`, replayed first by every run.
//!
//! Not a libtest harness (`harness = false`): `cargo test --test fuzz` runs `main`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vitrine::video::demux;
use vitrine::video::h264::{dpb, reflist, AccessUnitParser, Dpb};
use vitrine::video::v4l2::h264_controls;

/// What one input may hold live at once, whatever the file says.
const CAP: usize = 64 << 20;
/// An input still running after this is a hang (inputs here are a few KiB and take
/// milliseconds; the slack is for a loaded machine).
const HANG: Duration = Duration::from_secs(20);

/// Panics so far, caught where they happened or not.
static PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// Inputs started so far, for the hang watchdog.
static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// ---------------------------------------------------------------------------------------------
// The counting allocator: live and peak bytes of this thread (the targets run on one thread).

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
    static CAPPED: Cell<bool> = const { Cell::new(false) };
}

fn account(grow: usize, shrink: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_sub(shrink) + grow;
        live.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        if now > CAP && CAPPED.try_with(Cell::get).unwrap_or(false) {
            let msg = b"fuzz: an input made the parser hold more than 64 MiB\n";
            // SAFETY: a write of a static buffer to stderr, then abort: nothing may allocate here.
            unsafe {
                libc::write(2, msg.as_ptr().cast(), msg.len());
                libc::abort();
            }
        }
    });
}

// SAFETY: every call is passed to the system allocator unchanged; only counters are kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        account(layout.size(), 0);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        account(layout.size(), 0);
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        account(0, layout.size());
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        account(new_size, layout.size());
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ---------------------------------------------------------------------------------------------
// Mutation.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Values that make lengths, counts and offsets interesting.
const INTERESTING: [u32; 12] =
    [0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0xffff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff];

/// One to four mutations of `input` (another seed may be spliced in).
fn mutate(rng: &mut Rng, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(9) {
            0 if len > 0 => {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                data[at] = INTERESTING[rng.below(INTERESTING.len())] as u8;
            }
            2 if len >= 4 => {
                // A big-endian (container fields) or little-endian word.
                let at = rng.below(len - 3);
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let bytes = if rng.below(2) == 0 { v.to_be_bytes() } else { v.to_le_bytes() };
                data[at..at + 4].copy_from_slice(&bytes);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let n = (1 + rng.below(64)).min(len - at);
                data.drain(at..at + n);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let n = (1 + rng.below(256)).min(len - at);
                let chunk = data[at..at + n].to_vec();
                let to = rng.below(len);
                data.splice(to..to, chunk);
            }
            5 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            6 if len > 1 => data.truncate(rng.below(len)),
            7 if !seeds.is_empty() => {
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() && len > 0 {
                    let at = rng.below(len);
                    let from = rng.below(other.len());
                    let n = (1 + rng.below(512)).min(other.len() - from);
                    data.splice(at..(at + n).min(len), other[from..from + n].iter().copied());
                }
            }
            _ if len > 0 => {
                // A run of one byte (long zero runs look like start codes and padding).
                let at = rng.below(len);
                let n = (1 + rng.below(32)).min(len - at);
                let b = [0u8, 0xff, 1][rng.below(3)];
                data[at..at + n].fill(b);
            }
            _ => data.push(rng.next() as u8),
        }
    }
    data
}

// ---------------------------------------------------------------------------------------------
// Targets.

struct Target {
    name: &'static str,
    /// The extension the input file gets (the demuxers read files).
    ext: &'static str,
    /// Runs the parser on the input; true when it accepted it (a stream with pictures, a valid
    /// configuration): every seed must be, or the target fuzzes nothing.
    run: fn(&Path, &[u8]) -> bool,
}

const TARGETS: &[Target] = &[
    Target { name: "mp4", ext: "mp4", run: run_demux },
    Target { name: "matroska", ext: "mkv", run: run_demux },
    Target { name: "annexb", ext: "h264", run: run_demux },
    Target { name: "fwht", ext: "fwht", run: run_demux },
    Target { name: "h264", ext: "h264", run: run_h264 },
    Target { name: "config", ext: "toml", run: run_config },
    Target { name: "control", ext: "json", run: run_control },
    Target { name: "dmabuf", ext: "bin", run: run_dmabuf },
];

/// Demux the file, every unit of it: errors are fine, panics and runaway memory are not.
fn run_demux(path: &Path, _: &[u8]) -> bool {
    let mut units = 0usize;
    let opened = demux::stream(path, &mut |item| {
        if let demux::Loaded::Unit(_) = item {
            units += 1;
        }
        // The player holds a bounded number of units: so does this (they are dropped here).
        units < 100_000
    });
    opened.is_ok() && units > 0
}

/// What the stateless decoder does with each access unit, without a device: parse it, let the
/// DPB take it, build every V4L2 control and the reference lists of each slice.
fn run_h264(path: &Path, _: &[u8]) -> bool {
    let Ok(d) = demux::open(path) else { return false };
    let mut parsed = 0;
    let mut parser = AccessUnitParser::new();
    let mut dpb = Dpb::new();
    for (id, unit) in d.units.iter().enumerate() {
        let Ok(pic) = parser.parse(&unit.data) else { continue };
        parsed += 1;
        let _ = dpb::dpb_size(&pic.sps);
        let (current, _) = dpb.begin(&pic, id as u64);
        std::hint::black_box(h264_controls::sps_control(&pic.sps));
        std::hint::black_box(h264_controls::pps_control(&pic.pps));
        std::hint::black_box(h264_controls::scaling_control(&pic.sps, &pic.pps));
        std::hint::black_box(h264_controls::decode_params(&pic, &dpb, &current));
        for slice in &pic.slices {
            let (l0, l1) = reflist::ref_lists(dpb.entries(), &current, slice, &pic.pps, pic.max_frame_num());
            std::hint::black_box(h264_controls::slice_params(slice, &pic.pps, &l0, &l1));
            std::hint::black_box(h264_controls::pred_weights(slice, &pic.pps));
        }
        let _ = dpb.finish(&pic, current);
    }
    let _ = dpb.flush();
    parsed > 0
}

fn run_config(_: &Path, data: &[u8]) -> bool {
    vitrine::config::Config::parse(&String::from_utf8_lossy(data), "fuzz.toml").is_ok()
}

fn run_control(_: &Path, data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    text.lines().filter(|line| vitrine::control::protocol::parse_request(line).is_ok()).count() > 0
}

/// A client's dmabuf parameters, as bytes (little-endian): the format (4 bytes), the modifier
/// (8), the width and height (4 each), then for each plane, up to four, its offset, its stride
/// and the size of the memory it names (4 each). The memory is a sparse memfd of that size (at
/// most 1 GiB), so that the check's reading of the buffer's size is real.
fn run_dmabuf(_: &Path, data: &[u8]) -> bool {
    use smithay::backend::allocator::dmabuf::{Dmabuf, DmabufFlags};
    use smithay::backend::allocator::{Fourcc, Modifier};
    let word = |i: usize| data.get(i..i + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let modifier = data.get(4..12).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let (Some(code), Some(modifier), Some(w), Some(h)) = (word(0), modifier, word(12), word(16)) else { return false };
    let Ok(fourcc) = Fourcc::try_from(code) else { return false };
    // smithay refuses a size under 1 (zwp_linux_buffer_params_v1.invalid_dimensions) before it
    // makes the buffer that reaches the check.
    let (w, h) = (w as i32, h as i32);
    if w < 1 || h < 1 {
        return false;
    }
    let mut builder = Dmabuf::builder((w, h), fourcc, Modifier::from(modifier), DmabufFlags::empty());
    let mut planes = 0;
    for plane in 0..4 {
        let at = 20 + plane * 12;
        let (Some(offset), Some(stride), Some(bytes)) = (word(at), word(at + 4), word(at + 8)) else { break };
        let Some(fd) = sparse_memfd(u64::from(bytes).min(1 << 30)) else { return false };
        builder.add_plane(fd, plane as u32, offset, stride);
        planes += 1;
    }
    let Some(dmabuf) = builder.build().filter(|_| planes > 0) else { return false };
    vitrine::wayland::dmabuf_check::check(&dmabuf, |_, m| m == 0 || m == 0x00ff_ffff_ffff_ffff).is_ok()
}

fn sparse_memfd(size: u64) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: memfd_create with a constant name; the descriptor is owned at once.
    let fd = unsafe { libc::memfd_create(c"vitrine-fuzz".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: ftruncate on the descriptor just made.
    (unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) } == 0).then_some(fd)
}

/// The bytes `run_dmabuf` reads, for a seed.
fn dmabuf_params(fourcc: &[u8; 4], (w, h): (u32, u32), planes: &[(u32, u32, u32)]) -> Vec<u8> {
    let mut out = fourcc.to_vec();
    out.extend_from_slice(&0u64.to_le_bytes());
    for word in [w, h].into_iter().chain(planes.iter().flat_map(|(o, s, b)| [*o, *s, *b])) {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Seeds.

fn ffmpeg(out: &Path, size: &str, extra: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=24"))
        .args(["-frames:v", "12", "-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .args(extra)
        .arg(out)
        .status()
        .expect("ffmpeg is not installed: run scripts/deps test");
    assert!(status.success(), "ffmpeg failed for {}", out.display());
}

/// FWHT frames as vicodec writes them (44-byte header, then the payload).
fn fwht_stream(frames: u32, (w, h): (u32, u32)) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..frames {
        let payload: Vec<u8> = (0..64 + i * 7).map(|b| (b * 31 + i) as u8).collect();
        out.extend_from_slice(&demux::FWHT_MAGIC);
        let flags = if i % 5 == 0 { 1u32 << 10 } else { 0 };
        for word in [3u32, w, h, flags, 1, 1, 1, 1, payload.len() as u32] {
            out.extend_from_slice(&word.to_be_bytes());
        }
        out.extend_from_slice(&payload);
    }
    out
}

/// The seeds of each target, made once per run in `dir`.
fn make_seeds(dir: &Path) -> Vec<(&'static str, Vec<PathBuf>)> {
    let x264 = |name: &str, size: &str, params: &str, extra: &[&str]| {
        let path = dir.join(name);
        let mut args = vec!["-x264-params", params];
        args.extend_from_slice(extra);
        ffmpeg(&path, size, &args);
        path
    };
    // Coding tools the parser and the DPB must follow: B-pyramids, weighted prediction, several
    // slices, CAVLC, 8x8 transforms with scaling matrices, many references, odd sizes (cropping).
    let annexb = vec![
        x264("bframes.h264", "96x64", "bframes=3:b-pyramid=normal:ref=4:keyint=6", &[]),
        x264("weighted.h264", "96x64", "weightp=2:weightb=1:bframes=2", &[]),
        x264("slices.h264", "128x96", "slices=4:bframes=1", &[]),
        x264("cavlc.h264", "80x48", "cabac=0:bframes=0:ref=2", &["-profile:v", "baseline"]),
        x264("cqm.h264", "96x64", "cqm=jvt:8x8dct=1:bframes=2", &["-profile:v", "high"]),
        x264("crop.h264", "90x50", "bframes=1:ref=3", &[]),
    ];
    let mp4 = vec![
        x264("main.mp4", "96x64", "bframes=2", &[]),
        x264("baseline.mov", "80x48", "bframes=0", &["-profile:v", "baseline"]),
    ];
    let mkv = vec![x264("main.mkv", "96x64", "bframes=2", &[]), x264("slices.mkv", "96x64", "slices=2", &[])];
    let fwht = {
        let path = dir.join("bars.fwht");
        std::fs::write(&path, fwht_stream(6, (64, 48))).unwrap();
        vec![path]
    };
    let config = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("resources/vitrine.toml")];
    let control = {
        let path = dir.join("requests.json");
        let lines = [
            r#"{"cmd":"version"}"#,
            r#"{"cmd":"outputs"}"#,
            r#"{"cmd":"clients"}"#,
            r#"{"cmd":"screenshot","output":"HEADLESS-1","path":"/tmp/x.png"}"#,
            r#"{"cmd":"stats"}"#,
            r#"{"cmd":"planes"}"#,
            r#"{"cmd":"reload"}"#,
            r#"{"cmd":"play","path":"/srv/a.mp4"}"#,
            r#"{"cmd":"pause"}"#,
            r#"{"cmd":"resume"}"#,
            r#"{"cmd":"next"}"#,
            r#"{"cmd":"status"}"#,
            r#"{"cmd":"quit"}"#,
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        vec![path]
    };
    let dmabuf = [
        ("xr24.bin", dmabuf_params(b"XR24", (64, 32), &[(0, 256, 8192)])),
        ("nv12.bin", dmabuf_params(b"NV12", (64, 32), &[(0, 64, 3072), (2048, 64, 3072)])),
        ("yu12.bin", dmabuf_params(b"YU12", (64, 32), &[(0, 64, 3072), (2048, 32, 3072), (2560, 32, 3072)])),
    ]
    .map(|(name, bytes)| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    })
    .to_vec();
    vec![
        ("mp4", mp4),
        ("matroska", mkv),
        ("annexb", annexb.clone()),
        ("fwht", fwht),
        ("h264", annexb),
        ("config", config),
        ("control", control),
        ("dmabuf", dmabuf),
    ]
}

// ---------------------------------------------------------------------------------------------
// The child: one target, its regression inputs then its mutated inputs.

fn regressions(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz").join(target);
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    files.sort();
    files
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

fn findings_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-findings");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn child(target: &Target, work: &Path, seeds: Vec<PathBuf>, runs: usize, seed: u64) {
    let seeds: Vec<Vec<u8>> = seeds.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let input_path = work.join(format!("{}.{}", target.name, target.ext));
    // Panics are caught and counted; their message is printed once per distinct place.
    let last_panic = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let record = last_panic.clone();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *record.lock().unwrap() = info.to_string();
    }));
    let mut rng = Rng(seed ^ fnv(target.name.as_bytes()) | 1);
    let (mut executed, mut accepted, mut crashes, mut slowest, mut peak) =
        (0usize, 0usize, Vec::new(), Duration::ZERO, 0usize);
    // Panics inside another crate's reader that vitrine caught and told as corruption.
    let mut contained = std::collections::BTreeMap::<String, usize>::new();
    let replays = regressions(target.name);
    std::thread::spawn(|| {
        let mut seen = usize::MAX;
        let mut since = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = STARTED.load(std::sync::atomic::Ordering::Relaxed);
            if now != seen {
                (seen, since) = (now, Instant::now());
            } else if since.elapsed() > HANG {
                let msg = b"fuzz: an input has run for 20 s: a hang\n";
                // SAFETY: a write of a static buffer to stderr, then abort.
                unsafe {
                    libc::write(2, msg.as_ptr().cast(), msg.len());
                    libc::abort();
                }
            }
        }
    });
    let mut one = |data: &[u8], what: &str| -> bool {
        std::fs::write(&input_path, data).unwrap();
        STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        LIVE.with(|l| l.set(0));
        PEAK.with(|p| p.set(0));
        CAPPED.with(|c| c.set(true));
        let began = Instant::now();
        let panics = PANICS.load(std::sync::atomic::Ordering::Relaxed);
        let outcome = std::panic::catch_unwind(|| (target.run)(&input_path, data));
        CAPPED.with(|c| c.set(false));
        slowest = slowest.max(began.elapsed());
        peak = peak.max(PEAK.with(Cell::get));
        executed += 1;
        if let Ok(true) = outcome {
            accepted += 1;
        }
        if outcome.is_ok() && PANICS.load(std::sync::atomic::Ordering::Relaxed) != panics {
            let message = last_panic.lock().unwrap().clone();
            let place = message.lines().next().unwrap_or("").to_string();
            let own = place.contains("panicked at src/");
            let seen = contained.entry(place).or_default();
            if *seen == 0 {
                // The first input per place is kept: a regression input once it is looked at.
                let kept = findings_dir().join(format!("{}-contained-{:016x}.{}", target.name, fnv(data), target.ext));
                std::fs::write(kept, data).unwrap();
            }
            *seen += 1;
            // vitrine's own code does not get to panic, caught or not.
            if own {
                eprintln!("fuzz {}: {what} panicked in vitrine's own code: {message}", target.name);
                crashes.push(message);
            }
        }
        if outcome.is_err() {
            let kept = findings_dir().join(format!("{}-{:016x}.{}", target.name, fnv(data), target.ext));
            std::fs::write(&kept, data).unwrap();
            let message = last_panic.lock().unwrap().clone();
            eprintln!("fuzz {}: {what} panicked: {message}\n  input kept in {}", target.name, kept.display());
            crashes.push(message);
        }
        matches!(outcome, Ok(true))
    };
    for path in &replays {
        let data = std::fs::read(path).unwrap();
        one(&data, &format!("regression input {}", path.display()));
    }
    let mut refused = 0;
    for seed_data in &seeds {
        if !one(seed_data, "a seed") {
            refused += 1;
        }
    }
    for i in 0..runs {
        let base = &seeds[i % seeds.len()];
        let data = mutate(&mut rng, base, &seeds);
        one(&data, "a mutated input");
    }
    if refused > 0 {
        eprintln!("fuzz {}: {refused} of its seeds were refused: the target would fuzz nothing", target.name);
        crashes.push(format!("{refused} seeds refused"));
    }
    for (place, n) in &contained {
        eprintln!("fuzz {}: {n} inputs made a reader panic, caught and reported as corrupt: {place}", target.name);
    }
    println!(
        "{{\"target\":\"{}\",\"contained\":{},\"executed\":{executed},\"accepted\":{accepted},\"regressions\":{},\"crashes\":{},\"peak_bytes\":{peak},\"slowest_ms\":{:.1}}}",
        target.name,
        contained.values().sum::<usize>(),
        replays.len(),
        crashes.len(),
        slowest.as_secs_f64() * 1000.0
    );
    std::process::exit(if crashes.is_empty() { 0 } else { 1 });
}

// ---------------------------------------------------------------------------------------------
// The parent: seeds, one child per target, the report.

fn main() {
    let runs: usize = std::env::var("VITRINE_FUZZ_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);
    let seed: u64 = std::env::var("VITRINE_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(20_261_201);
    if let Ok(name) = std::env::var("VITRINE_FUZZ_CHILD") {
        let target = TARGETS.iter().find(|t| t.name == name).expect("unknown fuzz target");
        let work = PathBuf::from(std::env::var("VITRINE_FUZZ_WORK").unwrap());
        let seeds: Vec<PathBuf> = std::env::var("VITRINE_FUZZ_SEEDS").unwrap().split('\n').map(PathBuf::from).collect();
        child(target, &work, seeds, runs, seed);
        return;
    }
    // `cargo test --test fuzz NAME` runs the targets whose name contains NAME (libtest's flags
    // are ignored).
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let work = tempfile::Builder::new()
        .prefix("vitrine-fuzz")
        .tempdir_in(if Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "/tmp" })
        .unwrap();
    let began = Instant::now();
    let seeds = make_seeds(work.path());
    println!(
        "fuzz: seeds made in {:.1} s; {runs} mutated inputs per target, sequence {seed}",
        began.elapsed().as_secs_f64()
    );
    let mut failed = Vec::new();
    for target in TARGETS {
        if !filters.is_empty() && !filters.iter().any(|f| target.name.contains(f.as_str())) {
            continue;
        }
        let files = &seeds.iter().find(|(n, _)| *n == target.name).unwrap().1;
        let list = files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join("\n");
        let started = Instant::now();
        let out = Command::new(std::env::current_exe().unwrap())
            .env("VITRINE_FUZZ_CHILD", target.name)
            .env("VITRINE_FUZZ_WORK", work.path())
            .env("VITRINE_FUZZ_SEEDS", list)
            .env("VITRINE_FUZZ_RUNS", runs.to_string())
            .env("VITRINE_FUZZ_SEED", seed.to_string())
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        let secs = started.elapsed().as_secs_f64();
        if out.status.success() {
            println!("fuzz {}: {} ({secs:.1} s)", target.name, report.trim());
            continue;
        }
        if out.status.code() == Some(1) && !report.trim().is_empty() {
            println!("fuzz {}: FAILED: {} ({secs:.1} s); the inputs are kept above", target.name, report.trim());
            failed.push(target.name);
            continue;
        }
        // A child that died (abort, signal): its last input is the culprit.
        let input = work.path().join(format!("{}.{}", target.name, target.ext));
        let data = std::fs::read(&input).unwrap_or_default();
        let kept = findings_dir().join(format!("{}-{:016x}.{}", target.name, fnv(&data), target.ext));
        let _ = std::fs::write(&kept, &data);
        println!(
            "fuzz {}: FAILED ({:?}) {} — last input kept in {}",
            target.name,
            out.status,
            report.trim(),
            kept.display()
        );
        failed.push(target.name);
    }
    println!("fuzz: {:.1} s in all", began.elapsed().as_secs_f64());
    if !failed.is_empty() {
        eprintln!("fuzz: findings in {}: {failed:?}", findings_dir().display());
        std::process::exit(1);
    }
}
