//! `Pool` and `Process` beside Python's `multiprocessing`.
//!
//! - **map**: `Pool.map` of a trivial function (`x + 1`) over [`MAP_ITEMS`] integers, default
//!   chunk size, on a pool of [`WORKERS`] workers started once for the whole run; items per
//!   second.
//! - **apply_async + get**: [`APPLY_TASKS`] `apply_async` calls of the same function, then `get`
//!   on each result; tasks per second.
//! - **Process start + join**: a child that runs a function returning at once, started and
//!   joined, [`PROCESSES`] times in a row, each timed; each of mpshm's rows beside the Python
//!   row of the same kind of start. mpshm's spawn (its default: a new run of this executable)
//!   against Python's `spawn`; mpshm's fork server (`StartMethod::ForkServer`: each child
//!   forked from a server started once, as fresh as a spawned one) against Python's `fork`,
//!   its default up to 3.13 and its fastest method, rather than its slower `forkserver`, which
//!   has a row of its own. mpshm's fork is left out: it refuses to fork a process that runs
//!   other threads, and the pool's run here.

use std::time::Instant;

use mpshm::process::{Pool, Process, StartMethod};

use super::stats::Hist;
use super::{Arg, Case, Ctx, Refs, Sample, Side, Unit};
use crate::kit::Res;

/// Workers of both pools.
pub const WORKERS: usize = 2;
const MAP_ITEMS: u64 = 200_000;
const APPLY_TASKS: u64 = 5_000;
const PROCESSES: u64 = 10;
/// Python's spawn starts an interpreter and imports: fewer of them.
const PY_SPAWNS: u64 = 3;

fn inc(x: u64) -> u64 {
    x + 1
}

fn nothing(_: ()) {}

pub fn cases(groups: &[&str], python: bool) -> Vec<Case> {
    let mut out = Vec::new();
    let py = |id: &str| python.then(|| id.to_owned());
    if groups.contains(&"pool") {
        let section = format!("pool of {WORKERS} workers, x + 1");
        let unit = Unit::Rate { bytes: None };
        out.push(Case::new(
            "pool",
            &section,
            "pool/map",
            "Pool.map (items)",
            Side::Mpshm,
            unit,
            Refs {
                python: py("pool/python-map"),
                ..Refs::default()
            },
            map,
        ));
        out.push(Case::new(
            "pool",
            &section,
            "pool/apply-async",
            "Pool.apply_async + get (tasks)",
            Side::Mpshm,
            unit,
            Refs {
                python: py("pool/python-apply-async"),
                ..Refs::default()
            },
            apply_async,
        ));
        if python {
            out.push(Case::python(
                "pool",
                &section,
                "pool/python-map",
                "Python Pool.map (items)",
                unit,
                "pool_map".into(),
                Arg::Count(MAP_ITEMS),
            ));
            out.push(Case::python(
                "pool",
                &section,
                "pool/python-apply-async",
                "Python Pool.apply_async + get (tasks)",
                unit,
                "apply_async".into(),
                Arg::Count(APPLY_TASKS),
            ));
        }
    }
    if groups.contains(&"process") {
        let section = "Process start + join".to_owned();
        out.push(Case::new(
            "process",
            &section,
            "process/spawn",
            "Process, spawn",
            Side::Mpshm,
            Unit::Time,
            Refs {
                python: py("process/python-spawn"),
                ..Refs::default()
            },
            |ctx| start_join(ctx, StartMethod::Spawn),
        ));
        out.push(Case::new(
            "process",
            &section,
            "process/forkserver",
            "Process, fork server (vs Python fork)",
            Side::Mpshm,
            Unit::Time,
            Refs {
                python: py("process/python-fork"),
                ..Refs::default()
            },
            |ctx| start_join(ctx, StartMethod::ForkServer),
        ));
        if python {
            out.push(Case::python(
                "process",
                &section,
                "process/python-spawn",
                "Python Process, spawn",
                Unit::Time,
                "process spawn".into(),
                Arg::Count(PY_SPAWNS),
            ));
            out.push(Case::python(
                "process",
                &section,
                "process/python-fork",
                "Python Process, fork",
                Unit::Time,
                "process fork".into(),
                Arg::Count(PROCESSES),
            ));
            out.push(Case::python(
                "process",
                &section,
                "process/python-forkserver",
                "Python Process, forkserver",
                Unit::Time,
                "process forkserver".into(),
                Arg::Count(PROCESSES),
            ));
        }
    }
    out
}

/// A pool of [`WORKERS`] workers that have started and run a task.
pub fn start() -> Res<Pool> {
    let pool = Pool::new(WORKERS)?;
    pool.map(inc, 0..100)?;
    Ok(pool)
}

fn map(ctx: &mut Ctx) -> Res<Sample> {
    let items = ctx.count(MAP_ITEMS);
    let pool = ctx.pool()?;
    let start = Instant::now();
    let out = pool.map(inc, 0..items)?;
    let time = start.elapsed();
    if out.len() as u64 != items || out.last() != Some(&items) {
        return Err("Pool.map returned the wrong results".into());
    }
    Ok(Sample::mean(time.as_secs_f64(), items))
}

fn apply_async(ctx: &mut Ctx) -> Res<Sample> {
    let tasks = ctx.count(APPLY_TASKS);
    let pool = ctx.pool()?;
    let start = Instant::now();
    let results: Vec<_> = (0..tasks).map(|i| pool.apply_async(inc, i)).collect();
    for (i, r) in results.into_iter().enumerate() {
        if r.get()? != i as u64 + 1 {
            return Err("apply_async returned the wrong result".into());
        }
    }
    Ok(Sample::mean(start.elapsed().as_secs_f64(), tasks))
}

fn start_join(ctx: &mut Ctx, method: StartMethod) -> Res<Sample> {
    let n = ctx.count(PROCESSES);
    let mut hist = Hist::default();
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let mut p = Process::new(nothing, ());
        p.set_start_method(method);
        p.start()?;
        p.join()?;
        hist.add(t.elapsed().as_nanos() as f64);
    }
    let mut s = Sample::mean(start.elapsed().as_secs_f64(), n);
    s.hist = hist;
    Ok(s)
}
