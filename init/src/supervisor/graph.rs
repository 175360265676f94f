//! The `keel.after` graph between services: resolving names, and the problems reported at boot — names that
//! are not services, and cycles (each reported once, with the path: "cycle: a -> b -> a").
//!
//! An edge a -> b means "a starts after b is ready". Only services take part; a name that is not a service is
//! dropped from the graph (and reported). Cycles are found as strongly connected components (reachability
//! both ways; service counts are small, so the simple quadratic method is fine and has no recursion).

use super::{Kind, UnitConfig, UnitId, UnitState};

/// A problem found at boot: the line to log, the services it makes Failed, and their `reason`.
pub(super) struct Problem {
    pub units: Vec<UnitId>,
    pub line: String,
    pub reason: String,
}

/// Resolved dependencies per unit (same order as `configs`; empty for non-services and unknown names).
pub(super) fn resolve(configs: &[UnitConfig]) -> Vec<Vec<UnitId>> {
    configs
        .iter()
        .map(|c| {
            if c.kind != Kind::Service {
                return Vec::new();
            }
            let mut deps: Vec<UnitId> = c
                .after
                .iter()
                .filter_map(|name| configs.iter().position(|o| o.kind == Kind::Service && &o.name == name))
                .collect();
            deps.dedup();
            deps
        })
        .collect()
}

/// Unknown names (one line per service) and cycles (one line per cycle), in unit order.
pub(super) fn problems(units: &[UnitState]) -> Vec<Problem> {
    let mut out = Vec::new();
    for (id, u) in units.iter().enumerate() {
        if u.config.kind != Kind::Service {
            continue;
        }
        let unknown: Vec<String> = u
            .config
            .after
            .iter()
            .filter(|name| !units.iter().any(|o| o.config.kind == Kind::Service && &o.config.name == *name))
            .map(|name| match units.iter().find(|o| &o.config.name == name).map(|o| o.config.kind) {
                Some(Kind::Onboot) => format!("'{name}' (an onboot step, not a service)"),
                Some(Kind::Onshutdown) => format!("'{name}' (an onshutdown step, not a service)"),
                _ => format!("'{name}'"),
            })
            .collect();
        if !unknown.is_empty() {
            let s = if unknown.len() == 1 { "" } else { "s" };
            let reason = format!("keel.after names unknown service{s} {}", unknown.join(", "));
            out.push(Problem { units: vec![id], line: format!("{}: {reason}", u.config.name), reason });
        }
    }
    let deps: Vec<&[UnitId]> = units.iter().map(|u| u.rt.deps.as_slice()).collect();
    let reach: Vec<Vec<bool>> = (0..units.len()).map(|id| reachable(&deps, id)).collect();
    let mut done = vec![false; units.len()];
    for id in 0..units.len() {
        let on_cycle = reach.get(id).and_then(|r| r.get(id)).copied().unwrap_or(false);
        if !on_cycle || done.get(id).copied().unwrap_or(true) {
            continue;
        }
        // The strongly connected component of `id`: reachable from it and reaching it.
        let scc: Vec<UnitId> = (0..units.len())
            .filter(|&w| {
                let there = reach.get(id).and_then(|r| r.get(w)).copied().unwrap_or(false);
                let back = reach.get(w).and_then(|r| r.get(id)).copied().unwrap_or(false);
                there && back
            })
            .collect();
        for &w in &scc {
            if let Some(d) = done.get_mut(w) {
                *d = true;
            }
        }
        let name = |w: UnitId| units.get(w).map(|u| u.config.name.as_str()).unwrap_or("?");
        let path = shortest_cycle(&deps, &scc, id);
        let mut text: Vec<&str> = path.iter().map(|&w| name(w)).collect();
        text.push(name(id));
        let cycle = text.join(" -> ");
        let others: Vec<&str> = scc.iter().filter(|w| !path.contains(w)).map(|&w| name(w)).collect();
        let line = if others.is_empty() {
            format!("cycle: {cycle} (keel.after); these services are not started")
        } else {
            format!(
                "cycle: {cycle} (keel.after; also caught in it: {}); these services are not started",
                others.join(", ")
            )
        };
        out.push(Problem { units: scc, line, reason: format!("in a keel.after cycle: {cycle}") });
    }
    out
}

/// Which units `from` reaches by one or more edges.
fn reachable(deps: &[&[UnitId]], from: UnitId) -> Vec<bool> {
    let mut seen = vec![false; deps.len()];
    let mut stack: Vec<UnitId> = deps.get(from).map(|d| d.to_vec()).unwrap_or_default();
    while let Some(v) = stack.pop() {
        match seen.get_mut(v) {
            Some(s) if !*s => *s = true,
            _ => continue,
        }
        if let Some(d) = deps.get(v) {
            stack.extend_from_slice(d);
        }
    }
    seen
}

/// The shortest path start -> ... -> (back to start) inside `scc`, as the list of nodes from `start` (the
/// closing `start` not repeated). Breadth-first over the component's edges.
fn shortest_cycle(deps: &[&[UnitId]], scc: &[UnitId], start: UnitId) -> Vec<UnitId> {
    let mut parent: Vec<Option<UnitId>> = vec![None; deps.len()];
    let mut queue = std::collections::VecDeque::from([start]);
    let mut last = None;
    'bfs: while let Some(v) = queue.pop_front() {
        for &w in deps.get(v).copied().unwrap_or_default() {
            if w == start {
                last = Some(v);
                break 'bfs;
            }
            if scc.contains(&w) && parent.get(w).is_some_and(|p| p.is_none()) {
                if let Some(p) = parent.get_mut(w) {
                    *p = Some(v);
                }
                queue.push_back(w);
            }
        }
    }
    let mut path = Vec::new();
    let mut cur = last;
    while let Some(v) = cur {
        path.push(v);
        if v == start || path.len() > deps.len() {
            break;
        }
        cur = parent.get(v).copied().flatten();
    }
    path.reverse();
    path
}
