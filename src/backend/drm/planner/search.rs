//! The search behind [`Planner::plan`]: the composited run is chosen best first (it alone fixes
//! the objective), then planes are assigned to the resulting z-ordered items by backtracking,
//! and every statically valid assignment goes to the tester until one is accepted.
//!
//! Only layers that overlap must keep their stacking order: when the scene's order leaves a
//! layer composited that a plane could take, the search runs again with such layers moved above
//! the composited layers they do not touch (a video beside the kiosk app's window goes on an
//! overlay above the composition, though the app is above it in the scene), and the better plan
//! wins.

use std::cmp::Reverse;
use std::collections::HashMap;

use super::{
    check_composition, check_layer, CommitTester, CompositionPlacement, LayerDesc, LayerKind, Placement, Plan,
    PlaneCaps, PlaneKind, Planner, Rejection, DRM_FORMAT_ARGB8888, DRM_FORMAT_XRGB8888,
};

/// Backtracking steps allowed per search, so a pathological table cannot stall a frame.
const MAX_NODES: u64 = 200_000;

pub(super) struct SearchResult {
    pub plan: Plan,
    pub rejections: Vec<Vec<Rejection>>,
    pub tests: u32,
    pub fallback: bool,
}

/// Something that needs a plane, in bottom-to-top order.
#[derive(Debug, Clone, Copy)]
enum Item {
    Layer(usize),
    /// The composition buffer; `bottom` when nothing lies below it (XRGB8888 is then fine).
    Composition {
        bottom: bool,
    },
    /// The composition buffer holding only the background, on the primary plane.
    Background,
}

#[derive(Debug, Clone, Copy)]
struct Choice {
    item: Item,
    plane: usize,
    zpos: Option<u64>,
}

/// Which layers are composited: none, or the run `first..=last`.
struct Variant {
    run: Option<(usize, usize)>,
    background: bool,
    /// (layers on planes, composited area, planes used, run): smaller is better.
    rank: (Reverse<usize>, u64, usize, usize, usize),
}

type Key = (Vec<Option<(u32, Option<u64>)>>, Option<CompositionPlacement>);

fn key_of(plan: &Plan) -> Key {
    let layers = plan
        .layers
        .iter()
        .map(|p| match p {
            Placement::Plane { plane, zpos } => Some((*plane, *zpos)),
            Placement::Composited { .. } => None,
        })
        .collect();
    (layers, plan.composition)
}

struct Search<'a> {
    planes: &'a [PlaneCaps],
    layers: &'a [LayerDesc],
    tester: &'a mut dyn CommitTester,
    /// Per layer: the planes that pass the static checks, in the order to try them.
    compat: Vec<Vec<usize>>,
    /// Per plane: the composition format it takes with something below / at the bottom.
    comp_top: Vec<Option<u32>>,
    comp_bottom: Vec<Option<u32>>,
    rejections: Vec<Vec<Rejection>>,
    primary: Option<usize>,
    primary_required: bool,
    max_tests: u32,
    tests: u32,
    nodes: u64,
    out_of_budget: bool,
    tested: HashMap<Key, Result<(), String>>,
    /// For the items being assigned: can any item from this depth on take the primary plane?
    primary_reachable: Vec<bool>,
}

pub(super) fn run(planner: &Planner, layers: &[LayerDesc], tester: &mut dyn CommitTester) -> SearchResult {
    let budget = planner.max_tests.max(1);
    let plain = run_ordered(planner, layers, tester, budget);
    let order = lifted_order(planner, layers);
    // Only a lifted layer that the scene's order left composited can gain.
    let mut moved = order.iter().enumerate().filter(|(k, i)| k != *i).map(|(_, &i)| i);
    if !moved.any(|i| matches!(plain.plan.layers[i], Placement::Composited { .. })) {
        return plain;
    }
    // The second search gets what the first left of the test budget.
    let Some(budget) = budget.checked_sub(plain.tests).filter(|b| *b >= 2) else { return plain };
    let lifted_layers: Vec<LayerDesc> = order.iter().map(|&i| layers[i]).collect();
    let mut in_scene = InSceneOrder { inner: tester, order: &order, layers };
    let mut lifted = run_ordered(planner, &lifted_layers, &mut in_scene, budget);
    lifted.plan.layers = in_scene_order(&order, std::mem::take(&mut lifted.plan.layers));
    lifted.rejections = in_scene_order(&order, std::mem::take(&mut lifted.rejections));
    // The lifted order can also lose: a plane that could take the layer only at the bottom.
    let tests = plain.tests + lifted.tests;
    let mut best = if score(&lifted, layers) > score(&plain, layers) { lifted } else { plain };
    best.tests = tests;
    best
}

/// How good a search's plan is: accepted, then layers on planes, then less area composited.
fn score(result: &SearchResult, layers: &[LayerDesc]) -> (bool, usize, Reverse<u64>) {
    let plan = &result.plan;
    let on_planes = plan.layers.iter().filter(|p| matches!(p, Placement::Plane { .. })).count();
    let composited = plan.composited().map(|i| layers[i].dst.2 as u64 * layers[i].dst.3 as u64).sum();
    (plan.test_error.is_none(), on_planes, Reverse(composited))
}

/// The layers' order for the search (bottom to top, as indices into `layers`): each layer some
/// plane could take moves up past the layers above it that no plane takes and that it does not
/// overlap. Overlapping layers never swap, so every pair that overlaps keeps its order and the
/// screen shows the same picture.
fn lifted_order(planner: &Planner, layers: &[LayerDesc]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..layers.len()).collect();
    if !planner.layers_on_planes {
        return order;
    }
    let plane_takes = |l: &LayerDesc| l.kind.scanoutable() && planner.planes.iter().any(|p| check_layer(p, l).is_ok());
    let takes: Vec<bool> = layers.iter().map(plane_takes).collect();
    // Bubbling: each swap moves a plane layer above a composited one, so it ends.
    let mut swapped = true;
    while swapped {
        swapped = false;
        for k in 0..order.len().saturating_sub(1) {
            let (below, above) = (order[k], order[k + 1]);
            if takes[below] && !takes[above] && !overlap(&layers[below], &layers[above]) {
                order.swap(k, k + 1);
                swapped = true;
            }
        }
    }
    order
}

/// Whether two layers' destinations share a pixel.
fn overlap(a: &LayerDesc, b: &LayerDesc) -> bool {
    let span = |l: &LayerDesc| {
        (l.dst.0 as i64, l.dst.1 as i64, l.dst.0 as i64 + l.dst.2 as i64, l.dst.1 as i64 + l.dst.3 as i64)
    };
    let (a, b) = (span(a), span(b));
    a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
}

/// Per-layer values of the lifted order, back in the scene's order.
fn in_scene_order<T>(order: &[usize], lifted: Vec<T>) -> Vec<T> {
    let mut out: Vec<Option<T>> = (0..lifted.len()).map(|_| None).collect();
    for (value, &i) in lifted.into_iter().zip(order) {
        out[i] = Some(value);
    }
    out.into_iter().flatten().collect()
}

/// The tester sees plans in the scene's order of layers, whatever order the search used.
struct InSceneOrder<'a> {
    inner: &'a mut dyn CommitTester,
    order: &'a [usize],
    layers: &'a [LayerDesc],
}

impl CommitTester for InSceneOrder<'_> {
    fn test(&mut self, plan: &Plan, _lifted: &[LayerDesc]) -> Result<(), String> {
        let plan = Plan { layers: in_scene_order(self.order, plan.layers.clone()), ..plan.clone() };
        self.inner.test(&plan, self.layers)
    }
}

fn run_ordered(planner: &Planner, layers: &[LayerDesc], tester: &mut dyn CommitTester, max_tests: u32) -> SearchResult {
    let planes = &planner.planes[..];
    let mut compat = Vec::new();
    let mut rejections = Vec::new();
    for layer in layers {
        let mut ok = Vec::new();
        let mut rejected = Vec::new();
        if !layer.kind.scanoutable() {
            rejected.push(Rejection::NoBuffer);
        } else if !planner.layers_on_planes {
            rejected.push(Rejection::PlanesOff);
        } else {
            for (j, plane) in planes.iter().enumerate() {
                match check_layer(plane, layer) {
                    Ok(()) => ok.push(j),
                    Err(e) => rejected.push(e),
                }
            }
            if layer.kind == LayerKind::Cursor {
                // Keep the overlays for the others.
                ok.sort_by_key(|&j| planes[j].kind != PlaneKind::Cursor);
            }
        }
        compat.push(ok);
        rejections.push(rejected);
    }
    let takes = |p: &PlaneCaps, f: u32| check_composition(p, f).is_ok().then_some(f);
    let mut search = Search {
        planes,
        layers,
        tester,
        compat,
        comp_top: planes.iter().map(|p| takes(p, DRM_FORMAT_ARGB8888)).collect(),
        comp_bottom: planes.iter().map(|p| takes(p, DRM_FORMAT_XRGB8888).or(takes(p, DRM_FORMAT_ARGB8888))).collect(),
        rejections,
        primary: planes.iter().position(|p| p.kind == PlaneKind::Primary),
        primary_required: planner.primary_required,
        max_tests,
        tests: 0,
        nodes: 0,
        out_of_budget: false,
        tested: HashMap::new(),
        primary_reachable: Vec::new(),
    };
    for variant in search.variants() {
        let items = search.items(&variant);
        search.primary_reachable = search.primary_reachable(&items);
        let mut chosen = Vec::with_capacity(items.len());
        let mut used = vec![false; planes.len()];
        if search.assign(&items, &mut chosen, &mut used, None) {
            return search.finish(&chosen, &used);
        }
        if search.out_of_budget {
            break;
        }
    }
    search.fallback()
}

impl Search<'_> {
    /// Every admissible composited run, best first.
    fn variants(&self) -> Vec<Variant> {
        let n = self.layers.len();
        let m = self.planes.len();
        let solid = |i: usize| !self.layers[i].kind.scanoutable();
        let area = |i: usize| self.layers[i].dst.2 as u64 * self.layers[i].dst.3 as u64;
        let non_solid = (0..n).filter(|&i| !solid(i)).count();
        // Layers no plane can take must be in the run.
        let must: Vec<usize> = (0..n).filter(|&i| self.compat[i].is_empty()).collect();
        let mut out = Vec::new();
        if must.is_empty() {
            if n <= m {
                out.push(Variant { run: None, background: false, rank: (Reverse(non_solid), 0, n, 0, 0) });
            }
            if self.primary_required && self.primary.is_some() && n < m {
                out.push(Variant { run: None, background: true, rank: (Reverse(non_solid), 0, n + 1, 0, 0) });
            }
        }
        let (first_max, last_min) = match (must.first(), must.last()) {
            (Some(&lo), Some(&hi)) => (lo, hi),
            _ => (n.saturating_sub(1), 0),
        };
        for first in 0..n.min(first_max + 1) {
            for last in first.max(last_min)..n {
                let planes_used = n - (last - first + 1) + 1;
                if planes_used > m {
                    continue;
                }
                let composited_non_solid = (first..=last).filter(|&i| !solid(i)).count();
                let composited_area = (first..=last).map(area).sum();
                out.push(Variant {
                    run: Some((first, last)),
                    background: false,
                    rank: (Reverse(non_solid - composited_non_solid), composited_area, planes_used, first, last),
                });
            }
        }
        out.sort_by_key(|v| v.rank);
        out
    }

    fn items(&self, variant: &Variant) -> Vec<Item> {
        let n = self.layers.len();
        let mut items = Vec::with_capacity(n + 1);
        if variant.background {
            items.push(Item::Background);
        }
        match variant.run {
            None => items.extend((0..n).map(Item::Layer)),
            Some((first, last)) => {
                items.extend((0..first).map(Item::Layer));
                items.push(Item::Composition { bottom: first == 0 });
                items.extend((last + 1..n).map(Item::Layer));
            }
        }
        items
    }

    /// The z value plane `p` takes above `last`, and the zpos to write, if it fits.
    fn z_step(&self, p: usize, last: Option<u64>) -> Option<(u64, Option<u64>)> {
        let above = |v: u64| last.is_none_or(|l| v > l);
        match self.planes[p].zpos {
            // No property: implicit order (planes are sorted by kind, then id).
            None => above(p as u64).then_some((p as u64, None)),
            Some(r) if r.immutable => above(r.min).then_some((r.min, None)),
            Some(r) => {
                let v = last.map_or(r.min, |l| r.min.max(l + 1));
                (v <= r.max).then_some((v, Some(v)))
            }
        }
    }

    fn candidates(&self, item: Item) -> Vec<usize> {
        match item {
            Item::Layer(i) => self.compat[i].clone(),
            Item::Composition { bottom } => {
                let table = if bottom { &self.comp_bottom } else { &self.comp_top };
                (0..self.planes.len()).filter(|&p| table[p].is_some()).collect()
            }
            Item::Background => self.primary.filter(|&p| self.comp_bottom[p].is_some()).into_iter().collect(),
        }
    }

    fn primary_reachable(&self, items: &[Item]) -> Vec<bool> {
        let mut out = vec![false; items.len() + 1];
        if let Some(p) = self.primary {
            for d in (0..items.len()).rev() {
                out[d] = out[d + 1] || self.candidates(items[d]).contains(&p);
            }
        }
        out
    }

    /// Depth-first over plane choices; true when the tester accepted `chosen`.
    fn assign(&mut self, items: &[Item], chosen: &mut Vec<Choice>, used: &mut [bool], last: Option<u64>) -> bool {
        let depth = chosen.len();
        if depth == items.len() {
            return self.leaf(chosen, used);
        }
        if items.len() - depth > used.iter().filter(|u| !**u).count() {
            return false;
        }
        // The primary must end up used: give up when no remaining item can take it.
        if self.primary_required && self.primary.is_some_and(|p| !used[p]) && !self.primary_reachable[depth] {
            return false;
        }
        let item = items[depth];
        for p in self.candidates(item) {
            if used[p] {
                continue;
            }
            self.nodes += 1;
            if self.nodes > MAX_NODES {
                self.out_of_budget = true;
            }
            if self.out_of_budget {
                return false;
            }
            let Some((z, zpos)) = self.z_step(p, last) else { continue };
            used[p] = true;
            chosen.push(Choice { item, plane: p, zpos });
            if self.assign(items, chosen, used, Some(z)) {
                return true;
            }
            chosen.pop();
            used[p] = false;
        }
        false
    }

    fn leaf(&mut self, chosen: &[Choice], used: &[bool]) -> bool {
        if self.primary_required && self.primary.is_some_and(|p| !used[p]) {
            return false;
        }
        let plan = self.build(chosen, used);
        let key = key_of(&plan);
        if self.tested.contains_key(&key) {
            return false;
        }
        // The last call is kept for the fallback.
        if self.tests + 1 >= self.max_tests {
            self.out_of_budget = true;
            return false;
        }
        self.tests += 1;
        let verdict = self.tester.test(&plan, self.layers);
        self.tested.insert(key, verdict.clone());
        match verdict {
            Ok(()) => true,
            Err(error) => {
                for c in chosen {
                    if let Item::Layer(i) = c.item {
                        let r = Rejection::TestFailed {
                            plane: Some(self.planes[c.plane].reference()),
                            error: error.clone(),
                        };
                        if !self.rejections[i].contains(&r) {
                            self.rejections[i].push(r);
                        }
                    }
                }
                false
            }
        }
    }

    fn build(&self, chosen: &[Choice], used: &[bool]) -> Plan {
        let mut placed: Vec<Option<Placement>> = vec![None; self.layers.len()];
        let mut composition = None;
        for c in chosen {
            let plane = self.planes[c.plane].id;
            let format = |table: &[Option<u32>]| table[c.plane].unwrap_or(DRM_FORMAT_ARGB8888);
            match c.item {
                Item::Layer(i) => placed[i] = Some(Placement::Plane { plane, zpos: c.zpos }),
                Item::Composition { bottom: false } => {
                    composition = Some(CompositionPlacement { plane, zpos: c.zpos, format: format(&self.comp_top) })
                }
                Item::Composition { bottom: true } | Item::Background => {
                    composition = Some(CompositionPlacement { plane, zpos: c.zpos, format: format(&self.comp_bottom) })
                }
            }
        }
        let layers = placed
            .into_iter()
            .enumerate()
            .map(|(i, p)| p.unwrap_or_else(|| Placement::Composited { reason: self.reason(i, used) }))
            .collect();
        Plan { layers, composition, test_error: None }
    }

    /// Why layer `i` is composited when the planes `used` are taken.
    fn reason(&self, i: usize, used: &[bool]) -> Rejection {
        if !self.layers[i].kind.scanoutable() {
            return Rejection::NoBuffer;
        }
        if self.compat[i].is_empty() {
            // The plane that got furthest through the checks; the first one among equals.
            return self.rejections[i]
                .iter()
                .rev()
                .max_by_key(|r| r.stage())
                .cloned()
                .unwrap_or(Rejection::NoFreePlane);
        }
        if let Some(failed) = self.rejections[i].iter().rev().find(|r| matches!(r, Rejection::TestFailed { .. })) {
            return failed.clone();
        }
        if self.out_of_budget {
            return Rejection::TestBudget { tests: self.max_tests };
        }
        match self.compat[i].iter().find(|&&p| !used[p]) {
            Some(&p) => Rejection::Zpos { plane: self.planes[p].reference() },
            None => Rejection::NoFreePlane,
        }
    }

    /// The final rejection lists: the composited layers' reasons are added.
    fn rejections_for(&mut self, plan: &Plan) -> Vec<Vec<Rejection>> {
        for (i, placement) in plan.layers.iter().enumerate() {
            if let Placement::Composited { reason } = placement {
                if !self.rejections[i].contains(reason) {
                    self.rejections[i].push(reason.clone());
                }
            }
        }
        std::mem::take(&mut self.rejections)
    }

    fn finish(mut self, chosen: &[Choice], used: &[bool]) -> SearchResult {
        let plan = self.build(chosen, used);
        SearchResult { rejections: self.rejections_for(&plan), plan, tests: self.tests, fallback: false }
    }

    /// Everything composited onto the primary plane (or the first plane that can show it).
    fn fallback(mut self) -> SearchResult {
        let target = self
            .primary
            .filter(|&p| self.comp_bottom[p].is_some())
            .or_else(|| (0..self.planes.len()).find(|&p| self.comp_bottom[p].is_some()));
        let mut used = vec![false; self.planes.len()];
        let composition = target.map(|p| {
            used[p] = true;
            CompositionPlacement {
                plane: self.planes[p].id,
                zpos: self.z_step(p, None).and_then(|(_, zpos)| zpos),
                format: self.comp_bottom[p].unwrap_or(DRM_FORMAT_XRGB8888),
            }
        });
        let layers = (0..self.layers.len()).map(|i| Placement::Composited { reason: self.reason(i, &used) }).collect();
        let mut plan = Plan { layers, composition, test_error: None };
        let verdict = if plan.composition.is_none() {
            Err("no plane can show the composition buffer".to_string())
        } else if let Some(known) = self.tested.get(&key_of(&plan)) {
            known.clone()
        } else {
            self.tests += 1;
            self.tester.test(&plan, self.layers)
        };
        plan.test_error = verdict.err();
        SearchResult { rejections: self.rejections_for(&plan), plan, tests: self.tests, fallback: true }
    }
}
