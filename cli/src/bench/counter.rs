//! The locked counter: two processes adding 1 to one shared `u64` as fast as they can, beside
//! the floor (two processes around a robust process-shared pthread mutex, in C) and Python's
//! `multiprocessing.Value` with `get_lock()`. A second floor takes the same C mutex the way
//! mpshm's locks do (`trylock`, then sleeps of at most 10 ms, so that a waiter killed after its
//! wake-up strands nobody): the cost of that guarantee, apart from mpshm's code.
//!
//! Both processes meet at a start line in shared memory (`shm::StartLine`) and only then start
//! their clocks, so the whole timed window is contended; each measures its own elapsed and CPU
//! time, and the figure is the `2N` additions over the slower one. Every run checks that the
//! counter ends at exactly `2N`. Rows: `Value::update(|v| *v += 1)` (the lock, a copy out, a copy
//! in) and `RawValue::fetch_add(1)` (one atomic instruction, no lock). The same two-process
//! runner serves the dict (`dict.rs`).

use std::process::Stdio;

use mpshm::prelude::*;
use mpshm::{RawValue, Value};

use super::floor::CCounter;
use super::shm::StartLine;
use super::{Arg, Case, Ctx, PIN_ENV, Refs, Sample, Side, Unit};
use crate::kit::{Child, Res, Spawn};

/// Additions per process in one run (times `--scale`).
const N: u64 = 1_000_000;
/// Additions per process in one Python run.
const PY_N: u64 = 20_000;

pub fn cases(python: bool) -> Vec<Case> {
    let section = "locked counter, 2 processes adding 1".to_owned();
    let unit = Unit::Rate { bytes: None };
    let mut out = vec![
        Case::new(
            "counter",
            &section,
            "counter/value-update",
            "Value::update(+1)",
            Side::Mpshm,
            unit,
            Refs {
                floor: Some("counter/floor".into()),
                python: python.then(|| "counter/python".into()),
                ..Refs::default()
            },
            |ctx| counter(ctx, "value"),
        ),
        Case::new(
            "counter",
            &section,
            "counter/rawvalue-fetch-add",
            "RawValue::fetch_add(1), no lock",
            Side::Mpshm,
            unit,
            Refs {
                python: python.then(|| "counter/python".into()),
                ..Refs::default()
            },
            |ctx| counter(ctx, "raw"),
        ),
        Case::new(
            "counter",
            &section,
            "counter/floor",
            "floor: robust pthread mutex + ++ (C)",
            Side::Floor,
            unit,
            Refs::default(),
            |ctx| counter(ctx, "c"),
        ),
    ];
    if python {
        out.push(Case::python(
            "counter",
            &section,
            "counter/python",
            "Python Value('L') + get_lock()",
            unit,
            "value".into(),
            Arg::Count(PY_N),
        ));
    }
    out
}

/// The payload of one counter run, as created or opened by one process.
enum Counter {
    Value(Value<u64>),
    Raw(RawValue<u64>),
    /// The C floor.
    C(CCounter),
}

impl Counter {
    fn create(routine: &str, name: &str) -> Res<(Counter, String)> {
        Ok(match routine {
            "value" => (Counter::Value(Value::create(name, 0)?), name.to_owned()),
            "raw" => (Counter::Raw(RawValue::create(name, 0)?), name.to_owned()),
            "c" => {
                let c = CCounter::create()?;
                let page = c.page.name().to_owned();
                (Counter::C(c), page)
            }
            _ => return Err(format!("no counter {routine:?}").into()),
        })
    }

    fn open(routine: &str, name: &str) -> Res<Counter> {
        Ok(match routine {
            "value" => Counter::Value(Value::open(name)?),
            "raw" => Counter::Raw(RawValue::open(name)?),
            "c" => Counter::C(CCounter::open(name)?),
            _ => return Err(format!("no counter {routine:?}").into()),
        })
    }

    fn count(&self, n: u64) -> Res<()> {
        match self {
            Counter::Value(v) => {
                for _ in 0..n {
                    v.update(|x| *x += 1).map_err(|e| format!("update: {e}"))?;
                }
            }
            Counter::Raw(r) => {
                for _ in 0..n {
                    r.fetch_add(1);
                }
            }
            Counter::C(c) => c.count(n)?,
        }
        Ok(())
    }

    fn total(&self) -> Res<u64> {
        Ok(match self {
            Counter::Value(v) => v.get().map_err(|e| format!("get: {e}"))?,
            Counter::Raw(r) => r.load(),
            Counter::C(c) => c.total(),
        })
    }
}

/// One run of `routine` (`value`, `raw` or `c`) from two processes.
fn counter(ctx: &mut Ctx, routine: &str) -> Res<Sample> {
    let n = ctx.count(N);
    let name = ctx.name();
    // Dropped (and unlinked) on every path out.
    let (counter, shared) = Counter::create(routine, &name)?;
    let role = format!("count {routine} {n} {shared}");
    let sample = two_processes_on(ctx, &role, 2 * n, || counter.count(n), apart(ctx))?;
    let total = counter.total()?;
    if total != 2 * n {
        return Err(format!("{routine}: the counter is {total}, expected {}", 2 * n).into());
    }
    Ok(sample)
}

/// Runs `work` here and the child `role` (whose last two words the child gets after the start
/// line's name) at once from a common start line; `ops` operations in all, over the slower
/// one's time.
pub fn two_processes(
    ctx: &mut Ctx,
    role: &str,
    ops: u64,
    work: impl FnOnce() -> Res<()>,
) -> Res<Sample> {
    two_processes_on(ctx, role, ops, work, None)
}

/// The two CPUs a locked counter's processes are pinned to, one each, unless `--pin` places
/// them: the first two this process may run on. Left to the scheduler, two processes contending
/// for one lock on a machine with other work are sometimes put on one CPU, where the lock
/// changes hands only when a time slice ends and each runs almost alone, and sometimes on two,
/// where it changes hands between the cores; the two give rates a factor of two or more apart,
/// and a round of the floor and a round of ours would each get one or the other at random.
/// Pinned apart, every round measures the contention between two cores that the floor stands
/// for. `None` with fewer than two CPUs.
fn apart(ctx: &Ctx) -> Option<(usize, usize)> {
    if !ctx.pin.is_empty() {
        return None;
    }
    let set = rustix::thread::sched_getaffinity(None).ok()?;
    let mut cpus = (0..rustix::thread::CpuSet::MAX_CPU).filter(|&cpu| set.is_set(cpu));
    Some((cpus.next()?, cpus.next()?))
}

/// This thread's CPUs as they were before [`two_processes_on`] pinned it, put back on drop.
struct Unpin(rustix::thread::CpuSet);

impl Drop for Unpin {
    fn drop(&mut self) {
        let _ = rustix::thread::sched_setaffinity(None, &self.0);
    }
}

/// [`two_processes`], with this thread on the first CPU of `cpus` and the child on the second
/// while it runs (see [`apart`]).
fn two_processes_on(
    ctx: &mut Ctx,
    role: &str,
    ops: u64,
    work: impl FnOnce() -> Res<()>,
    cpus: Option<(usize, usize)>,
) -> Res<Sample> {
    let line = StartLine::create()?;
    let role = format!("{role} {}", line.page.name());
    let (mut kid, _unpin): (Child, _) = match cpus {
        Some((here, there)) => {
            let before = rustix::thread::sched_getaffinity(None)?;
            super::pin_to(here)?;
            let unpin = Unpin(before);
            let kid = Spawn::role(&role)?
                .control_on_stderr()
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .env(PIN_ENV, &there.to_string())
                .spawn()?;
            (kid, Some(unpin))
        }
        None => (ctx.spawn(role, Stdio::null(), Stdio::null())?, None),
    };
    line.run(
        0,
        || match kid.try_wait()? {
            Some(status) => Err(format!("the other process exited early: {status}").into()),
            None => Ok(()),
        },
        work,
    )?;
    kid.finish()?;
    let [(w0, _), (w1, _)] = line.times()?;
    Ok(Sample::mean(w0.max(w1) as f64 * 1e-9, ops))
}

/// Runs a counter child's role; `None` if `words` is none of them.
pub fn child(words: &[&str]) -> Option<Res<()>> {
    Some(match *words {
        ["count", routine, n, name, line] => (|| {
            let counter = Counter::open(routine, name)?;
            let n: u64 = n.parse()?;
            StartLine::open(line)?.run(1, || Ok(()), || counter.count(n))
        })(),
        _ => return None,
    })
}
