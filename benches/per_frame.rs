//! Per-frame userspace work that needs no kernel: planning a scene (cache hit, cache miss) on
//! recorded plane tables, demuxing a clip into access units, and the stateless decoder's
//! per-picture bookkeeping (parsing, DPB update, the control set). `cargo bench` prints the numbers;
//! compare them with the ~41.7 ms a 24 fps frame has.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use vitrine::backend::drm::planner::{
    CommitTester, LayerDesc, LayerKind, Plan, PlaneTable, Planner, DRM_FORMAT_ARGB8888, DRM_FORMAT_MOD_LINEAR,
    DRM_FORMAT_NV12,
};

/// A driver that accepts every plan that reaches it (the static checks already ran).
struct AcceptAll;

impl CommitTester for AcceptAll {
    fn test(&mut self, _plan: &Plan, _layers: &[LayerDesc]) -> Result<(), String> {
        Ok(())
    }
}

/// Fullscreen NV12 video (1920x1080 from a 1920x1088 buffer) with an ARGB UI on top.
fn video_and_ui() -> Vec<LayerDesc> {
    let video = LayerDesc {
        kind: LayerKind::Video,
        format: DRM_FORMAT_NV12,
        modifier: DRM_FORMAT_MOD_LINEAR,
        src_size: (1920, 1080),
        dst: (0, 0, 1920, 1080),
        rotation: 0,
        needs_color: false,
        opaque: true,
    };
    let ui = LayerDesc { kind: LayerKind::Client, format: DRM_FORMAT_ARGB8888, opaque: false, ..video };
    vec![video, ui]
}

fn planning(c: &mut Criterion) {
    for (name, json) in [
        ("vkms", include_str!("../resources/planes/vkms.json")),
        ("rk3566", include_str!("../resources/planes/rk3566-vop2.json")),
    ] {
        let table = PlaneTable::from_json(json).expect("plane table");
        let layers = video_and_ui();
        let mut planner = Planner::new(table.planes.clone(), 0);
        c.bench_function(&format!("plan {name}: video + UI, cache hit"), |b| {
            b.iter(|| black_box(planner.plan(black_box(&layers), &mut AcceptAll)))
        });
        c.bench_function(&format!("plan {name}: video + UI, cache miss"), |b| {
            b.iter(|| {
                planner.invalidate();
                black_box(planner.plan(black_box(&layers), &mut AcceptAll))
            })
        });
    }
}

fn demuxing(c: &mut Criterion) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-clips");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let clip = dir.join("1080p24-2s.mp4");
    if !clip.exists() {
        let status = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=24"])
            .args(["-t", "2", "-c:v", "libx264", "-profile:v", "main", "-preset", "veryfast"])
            .arg(&clip)
            .status()
            .expect("ffmpeg is needed for the demux benchmark: run scripts/deps test");
        assert!(status.success());
    }
    let units = vitrine::video::demux::open(&clip).expect("clip").units.len() as u64;
    c.bench_function(&format!("demux 1080p MP4 ({units} access units)"), |b| {
        b.iter(|| black_box(vitrine::video::demux::open(black_box(&clip)).expect("clip")))
    });
}

/// What the V4L2 stateless decoder does for each picture before the ioctls: parse the access
/// unit, update the DPB, fill SPS/PPS/scaling matrix/decode parameters.
fn controls(c: &mut Criterion) {
    use vitrine::video::h264::{AccessUnitParser, Dpb};
    use vitrine::video::v4l2::h264_controls::{decode_params, pps_control, scaling_control, sps_control};
    let clip = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-clips").join("1080p24-2s.mp4");
    let units = vitrine::video::demux::open(&clip).expect("clip (made by the demux benchmark)").units;
    c.bench_function(&format!("parse + DPB + controls, 1080p B-frames ({} pictures)", units.len()), |b| {
        b.iter(|| {
            let mut parser = AccessUnitParser::new();
            let mut dpb = Dpb::new();
            for (i, u) in units.iter().enumerate() {
                let pic = parser.parse(&u.data).expect("picture");
                let (current, _) = dpb.begin(&pic, i as u64);
                black_box((
                    sps_control(&pic.sps),
                    pps_control(&pic.pps),
                    scaling_control(&pic.sps, &pic.pps),
                    decode_params(&pic, &dpb, &current),
                ));
                black_box(dpb.finish(&pic, current));
            }
        })
    });
}

criterion_group!(benches, planning, demuxing, controls);
criterion_main!(benches);
