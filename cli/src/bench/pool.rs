//! `Pool` and `Process` beside Python's `multiprocessing`.
//!
//! - **map**: `Pool.map` of a trivial function (`x + 1`) over [`MAP_ITEMS`] integers, default
//!   chunk size, on a pool of [`WORKERS`] workers started once for the whole run; items per
//!   second.
//! - **apply_async + get**: [`APPLY_TASKS`] `apply_async` calls of the same function, then `get`
//!   on each result; tasks per second.
//! - **Process start + join**: a child that runs a function returning at once, started and
//!   joined, [`PROCESSES`] times in a row, each timed. mpshm's default (spawn: a new run of
//!   this executable) against Python's default (`fork` up to 3.13, its fastest method): the
//!   issue's target, time ≤ 0.5× Python's, printed as a `target:` line; the same figures again
//!   against Python's `spawn`, the same kind of start. mpshm's fork server
//!   (`StartMethod::ForkServer`: each child forked from a server started once, as fresh as a
//!   spawned one) against Python's `fork` too, rather than its slower `forkserver`, which has a
//!   row of its own. mpshm's fork is left out: it refuses to fork a process that runs other
//!   threads, and the pool's run here. The exec floor is this executable started and reaped,
//!   exiting before `main` with no mpshm work: what a spawn cannot go below on this machine.

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
            "process/exec-floor",
            "Exec floor (this binary, exits at once)",
            Side::Floor,
            Unit::Time,
            Refs::default(),
            exec_floor,
        ));
        let spawn = Case::new(
            "process",
            &section,
            "process/spawn",
            "Process, spawn (vs Python fork)",
            Side::Mpshm,
            Unit::Time,
            Refs {
                floor: Some("process/exec-floor".to_owned()),
                python: py("process/python-fork"),
                ..Refs::default()
            },
            |ctx| start_join(ctx, StartMethod::Spawn),
        );
        let again = Case::again(
            &spawn,
            "process/spawn-vs-spawn",
            "Process, spawn (vs Python spawn)",
            Refs {
                floor: Some("process/exec-floor".to_owned()),
                python: py("process/python-spawn"),
                ..Refs::default()
            },
        );
        out.push(spawn);
        if python {
            out.push(again);
        }
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

/// The environment variable that makes this executable exit at once, from a start-up hook
/// that runs before `main` (and before mpshm's own hook has anything to do), with
/// [`FLOOR_EXIT`]: the exec floor's child.
const FLOOR_ENV: &str = "MPSHM_BENCH_EXEC_FLOOR";
/// The exec floor child's exit status, which says that the hook ran.
const FLOOR_EXIT: i32 = 42;

extern "C" fn exec_floor_hook() {
    if std::env::var_os(FLOOR_ENV).is_some() {
        std::process::exit(FLOOR_EXIT);
    }
}

// SAFETY: the dynamic loader calls every function in `.init_array` once, before `main`; one
// that takes no arguments may ignore the `(argc, argv, envp)` it is given. By then libc and
// std's argument capture are set up (as for mpshm's own hook, `process/process.rs`), and the
// hook reads the environment and exits, nothing more. `#[used]` keeps the entry.
#[used]
#[unsafe(link_section = ".init_array")]
static EXEC_FLOOR_HOOK: extern "C" fn() = exec_floor_hook;

/// The least a spawned child can cost: this executable started (`/proc/self/exe`, as a
/// spawned `Process` is) and reaped, exiting from a start-up hook before `main` with no mpshm
/// work, [`PROCESSES`] times in a row, each timed. What is left is the kernel's `exec`, the
/// dynamic loader and libc's start-up (which, in a virtual machine where each `cpuid` traps to
/// the hypervisor, is most of it), and the exit. (Should the hook not run, the child prints
/// the version and exits 0, and the case fails rather than measure that.)
fn exec_floor(ctx: &mut Ctx) -> Res<Sample> {
    use std::process::{Command, Stdio};
    let n = ctx.count(PROCESSES);
    let mut hist = Hist::default();
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let status = Command::new("/proc/self/exe")
            .arg("--version")
            .env(FLOOR_ENV, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()?;
        hist.add(t.elapsed().as_nanos() as f64);
        if status.code() != Some(FLOOR_EXIT) {
            return Err(format!("the exec floor's start-up hook did not run ({status})").into());
        }
    }
    let mut s = Sample::mean(start.elapsed().as_secs_f64(), n);
    s.hist = hist;
    Ok(s)
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
