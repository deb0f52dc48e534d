use super::*;

const VKMS: &str = include_str!("../../../../resources/planes/vkms.json");
const RK3566: &str = include_str!("../../../../resources/planes/rk3566-vop2.json");

// vkms (from the 7.3.4 probe): primary 35, overlays 40..=75, cursor 80.
const VKMS_PRIMARY: u32 = 35;
const VKMS_CURSOR: u32 = 80;
// RK3566 (placeholder ids in registration order).
const ESMART0: u32 = 32;
const CLUSTER0: u32 = 38;
const SMART0: u32 = 44;

fn vkms() -> Vec<PlaneCaps> {
    PlaneTable::from_json(VKMS).expect("vkms.json").planes
}

fn rk3566() -> Vec<PlaneCaps> {
    PlaneTable::from_json(RK3566).expect("rk3566-vop2.json").planes
}

fn layer(kind: LayerKind, format: u32, src: (u32, u32), dst: (i32, i32, u32, u32)) -> LayerDesc {
    LayerDesc {
        kind,
        format,
        modifier: DRM_FORMAT_MOD_LINEAR,
        src_size: src,
        dst,
        rotation: DRM_MODE_ROTATE_0,
        needs_color: false,
        opaque: kind != LayerKind::Client,
    }
}

fn video(src: (u32, u32), dst: (i32, i32, u32, u32)) -> LayerDesc {
    layer(LayerKind::Video, DRM_FORMAT_NV12, src, dst)
}

fn client(dst: (i32, i32, u32, u32)) -> LayerDesc {
    layer(LayerKind::Client, DRM_FORMAT_ARGB8888, (dst.2, dst.3), dst)
}

fn solid(dst: (i32, i32, u32, u32)) -> LayerDesc {
    layer(LayerKind::Solid, 0, (dst.2, dst.3), dst)
}

fn cursor(x: i32, y: i32) -> LayerDesc {
    layer(LayerKind::Cursor, DRM_FORMAT_ARGB8888, (64, 64), (x, y, 64, 64))
}

const FULL: (i32, i32, u32, u32) = (0, 0, 1920, 1080);

fn on(plane: u32, zpos: Option<u64>) -> Placement {
    Placement::Plane { plane, zpos }
}

fn reason(plan: &Plan, i: usize) -> &Rejection {
    match &plan.layers[i] {
        Placement::Composited { reason } => reason,
        p => panic!("layer {i} is not composited: {p:?}"),
    }
}

/// A model of a driver: accepts what the plane constraints allow, plus configured refusals.
struct FakeDriver {
    planes: Vec<PlaneCaps>,
    primary_required: bool,
    reject_planes: Vec<u32>,
    reject_all: bool,
    calls: u32,
    /// Plans refused by the model itself (not by a configured refusal).
    invalid: Vec<String>,
}

impl FakeDriver {
    fn new(planes: Vec<PlaneCaps>) -> FakeDriver {
        FakeDriver {
            planes,
            primary_required: true,
            reject_planes: Vec::new(),
            reject_all: false,
            calls: 0,
            invalid: Vec::new(),
        }
    }
}

impl CommitTester for FakeDriver {
    fn test(&mut self, plan: &Plan, layers: &[LayerDesc]) -> Result<(), String> {
        self.calls += 1;
        if self.reject_all || plan.planes().iter().any(|p| self.reject_planes.contains(p)) {
            return Err("EINVAL".into());
        }
        validate(&self.planes, self.primary_required, plan, layers).inspect_err(|e| self.invalid.push(e.clone()))
    }
}

fn on_plane(p: &Placement) -> bool {
    matches!(p, Placement::Plane { .. })
}

/// Every rule a plan must follow, checked from the outside.
fn validate(planes: &[PlaneCaps], primary_required: bool, plan: &Plan, layers: &[LayerDesc]) -> Result<(), String> {
    let mut order: Vec<&PlaneCaps> = planes.iter().collect();
    order.sort_by_key(|p| (kind_rank(p.kind), p.id));
    let caps = |id: u32| order.iter().position(|p| p.id == id).map(|i| (i, order[i])).ok_or("unknown plane");
    let used = plan.planes();
    if (1..used.len()).any(|i| used[..i].contains(&used[i])) {
        return Err("a plane is used twice".into());
    }
    if primary_required && planes.iter().any(|p| p.kind == PlaneKind::Primary) {
        let primary = planes.iter().find(|p| p.kind == PlaneKind::Primary).map(|p| p.id);
        if !used.iter().any(|id| Some(*id) == primary) {
            return Err("primary plane off".into());
        }
    }
    let composited: Vec<usize> = plan.composited().collect();
    for (i, l) in layers.iter().enumerate() {
        if l.kind == LayerKind::Solid && !composited.contains(&i) {
            return Err("a solid layer is on a plane".into());
        }
    }
    if !composited.is_empty() && plan.composition.is_none() {
        return Err("composited layers but no composition plane".into());
    }
    // The effective z of a plane with the zpos the plan writes.
    let z_of = |plane: u32, zpos: Option<u64>| -> Result<u64, String> {
        let (rank, caps) = caps(plane)?;
        match (caps.zpos, zpos) {
            (None, None) => Ok(rank as u64),
            (Some(r), None) if r.immutable => Ok(r.min),
            (Some(r), Some(v)) if !r.immutable && (r.min..=r.max).contains(&v) => Ok(v),
            _ => Err(format!("bad zpos for plane {plane}")),
        }
    };
    let composition_z = match plan.composition {
        Some(c) => {
            let (_, caps) = caps(c.plane)?;
            check_composition(caps, c.format).map_err(|e| e.to_string())?;
            Some(z_of(c.plane, c.zpos)?)
        }
        None => None,
    };
    // Each layer's z: its plane's, or the composition's.
    let mut z = Vec::with_capacity(layers.len());
    for (i, p) in plan.layers.iter().enumerate() {
        match p {
            Placement::Plane { plane, zpos } => {
                let (_, caps) = caps(*plane)?;
                check_layer(caps, &layers[i]).map_err(|e| e.to_string())?;
                z.push(z_of(*plane, *zpos)?);
            }
            Placement::Composited { .. } => z.push(composition_z.ok_or("no composition")?),
        }
    }
    let mut plane_zs: Vec<u64> = plan.layers.iter().zip(&z).filter(|(p, _)| on_plane(p)).map(|(_, z)| *z).collect();
    plane_zs.extend(composition_z);
    plane_zs.sort_unstable();
    if plane_zs.windows(2).any(|w| w[0] == w[1]) {
        return Err("two planes at the same z".into());
    }
    if let (Some(c), Some(cz)) = (plan.composition, composition_z) {
        if c.format != DRM_FORMAT_ARGB8888 && z.iter().zip(&plan.layers).any(|(z, p)| on_plane(p) && *z < cz) {
            return Err("composition above other planes without alpha".into());
        }
    }
    // What the screen shows: every two layers that overlap keep their order (composited ones
    // among themselves in the composition).
    let overlaps = |a: &LayerDesc, b: &LayerDesc| {
        let (ax, ay, bx, by) = (a.dst.0 as i64, a.dst.1 as i64, b.dst.0 as i64, b.dst.1 as i64);
        ax < bx + b.dst.2 as i64 && bx < ax + a.dst.2 as i64 && ay < by + b.dst.3 as i64 && by < ay + a.dst.3 as i64
    };
    for i in 0..layers.len() {
        for j in i + 1..layers.len() {
            let both_composited = !on_plane(&plan.layers[i]) && !on_plane(&plan.layers[j]);
            if overlaps(&layers[i], &layers[j]) && !both_composited && z[i] >= z[j] {
                return Err(format!("layer {j} overlaps layer {i} but is not above it"));
            }
        }
    }
    Ok(())
}

#[test]
fn tables_load_and_round_trip() {
    let planes = vkms();
    let kinds = |k: PlaneKind| planes.iter().filter(|p| p.kind == k).count();
    assert_eq!((kinds(PlaneKind::Primary), kinds(PlaneKind::Overlay), kinds(PlaneKind::Cursor)), (1, 8, 1));
    assert!(planes.iter().all(|p| p.has_pair(DRM_FORMAT_NV12, DRM_FORMAT_MOD_LINEAR) && p.zpos.is_none()));
    assert!(planes.iter().any(|p| p.has_format(fourcc(b"R8  "))));
    let rk = rk3566();
    assert_eq!(rk.iter().map(|p| p.id).collect::<Vec<_>>(), [ESMART0, CLUSTER0, SMART0]);
    let cluster = &rk[1];
    assert!(cluster.has_format(DRM_FORMAT_ARGB8888));
    assert!(!cluster.formats.iter().any(|f| f.modifier == DRM_FORMAT_MOD_LINEAR));
    for text in [VKMS, RK3566] {
        let table = PlaneTable::from_json(text).unwrap();
        assert_eq!(PlaneTable::from_json(&table.to_json()).unwrap(), table);
    }
    assert_eq!(fourcc_name(fourcc(b"R8  ")), "R8");
    assert_eq!(modifier_name(0x0800_0000_0000_0051), "0x0800000000000051");
}

#[test]
fn vkms_video_and_ui_each_get_a_plane() {
    let mut planner = Planner::new(vkms(), 0);
    let mut driver = FakeDriver::new(vkms());
    let mut v = video((1920, 1080), FULL);
    v.needs_color = true;
    let plan = planner.plan(&[v, client(FULL)], &mut driver);
    assert_eq!(plan.layers, [on(VKMS_PRIMARY, None), on(40, None)]);
    assert_eq!(plan.composition, None);
    assert_eq!(plan.test_error, None);
    assert_eq!(driver.calls, 1);
}

#[test]
fn with_planes_off_everything_is_composited_onto_the_primary() {
    let mut planner = Planner::new(vkms(), 0);
    planner.set_layers_on_planes(false);
    let mut driver = FakeDriver::new(vkms());
    let plan = planner.plan(&[video((1920, 1080), FULL), client(FULL)], &mut driver);
    assert_eq!(reason(&plan, 0), &Rejection::PlanesOff);
    assert_eq!(reason(&plan, 1), &Rejection::PlanesOff);
    assert_eq!(plan.composition.map(|c| c.plane), Some(VKMS_PRIMARY));
    assert!(reason(&plan, 0).to_string().contains("hardware_planes = false"));
    // Back on: the same scene gets its planes again (the cached plan is forgotten).
    planner.set_layers_on_planes(true);
    let plan = planner.plan(&[video((1920, 1080), FULL), client(FULL)], &mut driver);
    assert_eq!(plan.layers, [on(VKMS_PRIMARY, None), on(40, None)]);
}

#[test]
fn vkms_excess_layers_are_composited_at_their_z_position() {
    // A video and ten widgets; widgets 5..=7 are tiny, so compositing them costs least.
    let mut layers = vec![video((1920, 1080), FULL)];
    for i in 1..=10 {
        let size = if (5..=7).contains(&i) { 64 } else { 400 };
        layers.push(client((i * 10, i * 10, size, size)));
    }
    let mut planner = Planner::new(vkms(), 0);
    let mut driver = FakeDriver::new(vkms());
    let plan = planner.plan(&layers, &mut driver);
    let expected: Vec<Placement> = [35, 40, 45, 50, 55]
        .into_iter()
        .map(|id| on(id, None))
        .chain((5..=7).map(|_| Placement::Composited { reason: Rejection::NoFreePlane }))
        .chain([65, 70, 75].into_iter().map(|id| on(id, None)))
        .collect();
    assert_eq!(plan.layers, expected);
    assert_eq!(plan.composition, Some(CompositionPlacement { plane: 60, zpos: None, format: DRM_FORMAT_ARGB8888 }));
    assert!(!plan.planes().contains(&VKMS_CURSOR), "the cursor plane takes only cursors");
    assert_eq!((driver.calls, driver.invalid.len()), (1, 0));
}

#[test]
fn vkms_solid_layer_is_composited_with_no_buffer() {
    let mut planner = Planner::new(vkms(), 0);
    let mut driver = FakeDriver::new(vkms());
    let plan = planner.plan(&[solid(FULL), video((1920, 1080), FULL), client(FULL)], &mut driver);
    assert_eq!(reason(&plan, 0), &Rejection::NoBuffer);
    assert_eq!(plan.layers[1..], [on(40, None), on(45, None)]);
    assert_eq!(
        plan.composition,
        Some(CompositionPlacement { plane: VKMS_PRIMARY, zpos: None, format: DRM_FORMAT_XRGB8888 })
    );
    assert_eq!(planner.rejections()[0], [Rejection::NoBuffer]);
}

#[test]
fn rk3566_fullscreen_video_goes_on_esmart0_and_ui_on_smart0_above() {
    let mut planner = Planner::new(rk3566(), 0);
    let mut driver = FakeDriver::new(rk3566());
    // 1920x1080 crop of a 1920x1088 decoder buffer.
    let plan = planner.plan(&[video((1920, 1080), FULL), client(FULL)], &mut driver);
    assert_eq!(plan.layers, [on(ESMART0, Some(0)), on(SMART0, Some(1))]);
    assert_eq!(plan.composition, None);
    let rejections = planner.rejections();
    assert!(rejections[0].contains(&Rejection::Format {
        plane: PlaneRef { id: SMART0, name: "Smart0-win0".into() },
        format: DRM_FORMAT_NV12
    }));
    assert!(rejections[1].iter().any(|r| matches!(r, Rejection::Modifier { plane, .. } if plane.id == CLUSTER0)));
    assert_eq!(rejections[0][0].to_string(), "plane 38 (Cluster0-win0) has no NV12");
}

#[test]
fn rk3566_scaled_video_in_a_zone_keeps_its_plane() {
    let mut planner = Planner::new(rk3566(), 0);
    let mut driver = FakeDriver::new(rk3566());
    let plan = planner.plan(&[video((1920, 1080), (100, 100, 960, 540)), client(FULL)], &mut driver);
    assert_eq!(plan.layers, [on(ESMART0, Some(0)), on(SMART0, Some(1))]);
    assert_eq!(plan.composition, None);
    assert_eq!(driver.calls, 1);
}

#[test]
fn rk3566_ui_and_cursor_are_composited_onto_smart0_above_the_video() {
    let mut planner = Planner::new(rk3566(), 0);
    let mut driver = FakeDriver::new(rk3566());
    let plan = planner.plan(&[video((1920, 1080), FULL), client(FULL), cursor(500, 300)], &mut driver);
    assert_eq!(plan.layers[0], on(ESMART0, Some(0)));
    assert_eq!((reason(&plan, 1), reason(&plan, 2)), (&Rejection::NoFreePlane, &Rejection::NoFreePlane));
    assert_eq!(
        plan.composition,
        Some(CompositionPlacement { plane: SMART0, zpos: Some(1), format: DRM_FORMAT_ARGB8888 })
    );
}

#[test]
fn rk3566_video_needing_colour_properties_is_composited() {
    let mut planner = Planner::new(rk3566(), 0);
    let mut driver = FakeDriver::new(rk3566());
    let mut v = video((1920, 1080), FULL);
    v.needs_color = true;
    let plan = planner.plan(&[v, client(FULL)], &mut driver);
    assert!(matches!(reason(&plan, 0), Rejection::ColorProps { plane } if plane.id == ESMART0));
    assert_eq!(plan.layers[1], on(SMART0, Some(1)));
    assert_eq!(plan.composition.map(|c| (c.plane, c.zpos, c.format)), Some((ESMART0, Some(0), DRM_FORMAT_XRGB8888)));
}

#[test]
fn unsupported_rotation_and_scaling_are_reported() {
    let mut rotated = video((1080, 1920), FULL);
    rotated.rotation = DRM_MODE_ROTATE_90;
    let too_small = video((1920, 1080), (0, 0, 200, 100));
    let mut planner = Planner::new(rk3566(), 0);
    let mut driver = FakeDriver::new(rk3566());
    let plan = planner.plan(&[rotated], &mut driver);
    assert!(matches!(reason(&plan, 0), Rejection::Rotation { plane, .. } if plane.id == ESMART0));
    let plan = planner.plan(&[too_small], &mut driver);
    let r = reason(&plan, 0);
    assert!(matches!(r, Rejection::Scaling { plane, limits: Some(_), .. } if plane.id == ESMART0), "{r}");
    assert_eq!(r.to_string(), "plane 32 (Esmart0-win0) cannot scale 1920x1080 to 200x100 (limits 1/8..8x)");

    let mut planner = Planner::new(vkms(), 0);
    let mut driver = FakeDriver::new(vkms());
    let plan = planner.plan(&[video((1280, 720), FULL)], &mut driver);
    assert!(matches!(reason(&plan, 0), Rejection::Scaling { plane, limits: None, .. } if plane.id == VKMS_PRIMARY));
}

#[test]
fn a_plane_layer_never_sits_between_composited_layers_it_overlaps() {
    let mut planner = Planner::new(vkms(), 0);
    let mut driver = FakeDriver::new(vkms());
    let small = (100, 100, 200, 200);
    let plan = planner.plan(&[solid(FULL), client(small), solid(small), client(FULL)], &mut driver);
    assert_eq!(plan.composited().collect::<Vec<_>>(), [0, 1, 2]);
    assert!(matches!(reason(&plan, 1), Rejection::Zpos { plane } if plane.id == 45));
    assert_eq!(plan.layers[3], on(40, None));
    assert_eq!(plan.composition.map(|c| c.plane), Some(VKMS_PRIMARY));
}

/// The soak's scene on vkms (whose overlays cannot go under the primary): the background, the
/// video in the top left corner and a client in shared memory in the middle, above the video in
/// the scene but not touching it. The video rises above the composition onto an overlay; once
/// the client overlaps it, it cannot.
#[test]
fn a_plane_layer_beside_the_composited_ones_rises_above_them() {
    let screen = (0, 0, 1024, 768);
    let shm = |dst| layer(LayerKind::Memory, DRM_FORMAT_XRGB8888, (250, 250), dst);
    let mut planner = Planner::new(vkms(), 0);
    let mut driver = FakeDriver::new(vkms());
    let beside = [solid(screen), video((384, 288), (0, 0, 384, 288)), shm((387, 259, 250, 250))];
    let plan = planner.plan(&beside, &mut driver);
    assert_eq!(plan.layers[1], on(40, None), "{plan}");
    assert_eq!(plan.composited().collect::<Vec<_>>(), [0, 2]);
    assert_eq!(
        plan.composition,
        Some(CompositionPlacement { plane: VKMS_PRIMARY, zpos: None, format: DRM_FORMAT_XRGB8888 })
    );
    // The scene's order first (everything composited), then the lifted one.
    assert_eq!((driver.calls, driver.invalid.len()), (2, 0));
    // The tester was shown the plans in the scene's order.
    validate(&vkms(), true, &plan, &beside).unwrap();

    let over = [solid(screen), video((384, 288), (0, 0, 384, 288)), shm((300, 200, 250, 250))];
    let plan = planner.plan(&over, &mut driver);
    assert_eq!(plan.composited().collect::<Vec<_>>(), [0, 1, 2], "{plan}");
    assert!(matches!(reason(&plan, 1), Rejection::Zpos { .. }), "{plan}");
    assert_eq!(driver.invalid.len(), 0);
}

/// Lifting is tried, not imposed: where only the primary plane (at the bottom) takes NV12, the
/// video beside a shared-memory client stays below the composition, on the primary.
#[test]
fn a_layer_is_not_lifted_where_only_the_bottom_plane_takes_it() {
    let mut table = vkms();
    for p in table.iter_mut().filter(|p| p.kind != PlaneKind::Primary) {
        p.formats.retain(|f| f.format != DRM_FORMAT_NV12);
    }
    let shm = layer(LayerKind::Memory, DRM_FORMAT_XRGB8888, (250, 250), (387, 259, 250, 250));
    let scene = [video((384, 288), (0, 0, 384, 288)), shm];
    let mut planner = Planner::new(table.clone(), 0);
    let mut driver = FakeDriver::new(table.clone());
    let plan = planner.plan(&scene, &mut driver);
    assert_eq!(plan.layers[0], on(VKMS_PRIMARY, None), "{plan}");
    assert_eq!(plan.composition.map(|c| c.format), Some(DRM_FORMAT_ARGB8888), "{plan}");
    validate(&table, true, &plan, &scene).unwrap();
    assert_eq!(driver.invalid.len(), 0);
}

/// Random scenes on several tables: every plan follows the rules, and the planner never sends
/// the driver a plan that breaks them.
#[test]
fn random_scenes_always_give_valid_plans() {
    let mut mixed = vkms()[..4].to_vec();
    mixed[0].zpos = Some(ZposRange { min: 0, max: 0, immutable: true });
    mixed[1].zpos = Some(ZposRange { min: 1, max: 3, immutable: false });
    mixed[2].zpos = Some(ZposRange { min: 1, max: 3, immutable: false });
    mixed[3].formats.retain(|f| f.format != DRM_FORMAT_NV12);
    mixed[3].scaling = Some(ScalingLimits { max_upscale: 2, max_downscale: 2 });
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rand = move |n: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for table in [vkms(), rk3566(), mixed] {
        let mut planner = Planner::new(table.clone(), 0);
        for _ in 0..300 {
            let layers: Vec<LayerDesc> = (0..rand(7))
                .map(|_| {
                    let dst = (rand(800) as i32, rand(600) as i32, 16 + rand(1000) as u32, 16 + rand(800) as u32);
                    let mut l = match rand(5) {
                        0 => solid(dst),
                        4 => layer(LayerKind::Memory, DRM_FORMAT_ARGB8888, (dst.2, dst.3), dst),
                        1 => cursor(dst.0, dst.1),
                        2 => video((dst.2 * (1 + rand(3) as u32), dst.3), dst),
                        _ => client(dst),
                    };
                    if rand(5) == 0 {
                        l.rotation = 1 << rand(6);
                    }
                    l.needs_color = l.kind == LayerKind::Video && rand(2) == 0;
                    l
                })
                .collect();
            let mut driver = FakeDriver::new(table.clone());
            if rand(4) == 0 {
                driver.reject_planes.push(table[rand(table.len() as u64) as usize].id);
            }
            let plan = planner.plan(&layers, &mut driver);
            assert!(driver.invalid.is_empty(), "planner sent invalid plans: {:?}", driver.invalid);
            assert!(driver.calls <= DEFAULT_MAX_TESTS);
            if plan.test_error.is_none() {
                validate(&table, true, &plan, &layers).unwrap_or_else(|e| panic!("{e}: {plan}"));
            }
        }
    }
}

#[test]
fn same_shape_is_served_from_the_cache() {
    let mut planner = Planner::new(rk3566(), 0);
    let mut driver = FakeDriver::new(rk3566());
    let mut layers = [video((1920, 1080), (100, 100, 960, 540)), client(FULL)];
    let first = planner.plan(&layers, &mut driver);
    assert_eq!(driver.calls, 1);
    for _ in 0..100 {
        assert_eq!(planner.plan(&layers, &mut driver), first);
    }
    assert_eq!((driver.calls, planner.test_commits(), planner.stats().cache_hits), (1, 1, 100));

    layers[0].dst = (120, 100, 960, 540);
    planner.plan(&layers, &mut driver);
    assert_eq!(driver.calls, 2, "a moved video is a new shape");
    planner.plan(&layers, &mut driver);
    assert_eq!(driver.calls, 2);
    planner.invalidate();
    planner.plan(&layers, &mut driver);
    assert_eq!((driver.calls, planner.stats().searches), (3, 3));
}

#[test]
fn a_refused_plan_gives_way_to_the_next_best() {
    let mut planner = Planner::new(vkms(), 0);
    let mut driver = FakeDriver::new(vkms());
    driver.reject_planes = vec![40];
    let plan = planner.plan(&[video((1920, 1080), FULL), client(FULL)], &mut driver);
    assert_eq!(plan.layers, [on(VKMS_PRIMARY, None), on(45, None)]);
    assert_eq!(driver.calls, 2);
    let failed =
        Rejection::TestFailed { plane: Some(PlaneRef { id: 40, name: "plane-1".into() }), error: "EINVAL".into() };
    assert!(planner.rejections()[1].contains(&failed));
    assert_eq!(failed.to_string(), "test commit with it on plane 40 (plane-1) failed: EINVAL");

    // Only the primary works: everything ends up composited there, and says why.
    let mut driver = FakeDriver::new(vkms());
    driver.reject_planes = (40..=80).step_by(5).collect();
    planner.invalidate();
    let plan = planner.plan(&[video((1920, 1080), FULL), client(FULL)], &mut driver);
    assert_eq!(plan.composition.map(|c| c.plane), Some(VKMS_PRIMARY));
    assert!(matches!(reason(&plan, 0), Rejection::TestFailed { .. }));
    assert_eq!(plan.test_error, None);
}

#[test]
fn the_test_budget_is_honoured() {
    let layers = [video((1920, 1080), FULL), client((0, 0, 800, 600)), cursor(10, 10)];
    let mut planner = Planner::new(vkms(), 0);
    let mut driver = FakeDriver::new(vkms());
    driver.reject_all = true;
    let plan = planner.plan(&layers, &mut driver);
    assert_eq!(driver.calls, DEFAULT_MAX_TESTS);
    assert_eq!(plan.composited().count(), 3);
    assert_eq!(plan.composition.map(|c| c.plane), Some(VKMS_PRIMARY));
    assert_eq!(plan.test_error.as_deref(), Some("EINVAL"));
    assert_eq!(planner.stats().fallbacks, 1);
    // Cached too: a broken driver costs one bounded search per shape.
    planner.plan(&layers, &mut driver);
    assert_eq!(driver.calls, DEFAULT_MAX_TESTS);

    planner.set_max_tests(5);
    planner.invalidate();
    let mut driver = FakeDriver::new(vkms());
    driver.reject_all = true;
    planner.plan(&layers, &mut driver);
    assert_eq!(driver.calls, 5);
}

#[test]
fn the_primary_plane_is_kept_on() {
    // A primary that only takes XRGB8888 and an overlay for ARGB8888.
    let mut planes = vkms()[..2].to_vec();
    planes[0].formats = vec![FormatModifier { format: DRM_FORMAT_XRGB8888, modifier: DRM_FORMAT_MOD_LINEAR }];
    let mut planner = Planner::new(planes.clone(), 0);
    let mut driver = FakeDriver::new(planes.clone());
    let plan = planner.plan(&[client(FULL)], &mut driver);
    assert_eq!(plan.layers, [on(40, None)]);
    assert_eq!(
        plan.composition,
        Some(CompositionPlacement { plane: VKMS_PRIMARY, zpos: None, format: DRM_FORMAT_XRGB8888 })
    );
    assert_eq!((driver.calls, driver.invalid.len()), (1, 0), "no plan without the primary is tried");
    assert_eq!(planner.plan(&[], &mut driver).composition.map(|c| c.plane), Some(VKMS_PRIMARY));

    planner.set_primary_required(false);
    driver.primary_required = false;
    let plan = planner.plan(&[client(FULL)], &mut driver);
    assert_eq!((plan.layers[0].clone(), plan.composition), (on(40, None), None));
}

#[test]
fn planes_of_other_crtcs_are_ignored() {
    let mut planes = rk3566();
    planes[2].possible_crtcs = 0b10;
    let planner = Planner::new(planes, 0);
    assert_eq!(planner.planes().iter().map(|p| p.id).collect::<Vec<_>>(), [ESMART0, CLUSTER0]);
}

#[test]
fn a_primary_no_layer_can_use_does_not_stall_the_search() {
    // Ten planes with mutable zpos: plane permutations are plentiful, none may be tried in vain.
    let mut planes = vkms();
    for p in &mut planes {
        p.zpos = Some(ZposRange { min: 0, max: 9, immutable: false });
    }
    planes[0].formats.retain(|f| f.format == DRM_FORMAT_XRGB8888);
    let layers: Vec<LayerDesc> = (0..6).map(|i| client((i * 50, 0, 300, 300))).collect();
    let mut planner = Planner::new(planes.clone(), 0);
    let mut driver = FakeDriver::new(planes);
    let plan = planner.plan(&layers, &mut driver);
    assert_eq!(plan.composition.map(|c| (c.plane, c.zpos)), Some((VKMS_PRIMARY, Some(0))));
    let expected: Vec<Placement> = (0..6).map(|i| on(40 + 5 * i as u32, Some(i + 1))).collect();
    assert_eq!(plan.layers, expected);
    assert_eq!(driver.calls, 1);
}
