//! Lock and counter costs, next to an OS pipe round trip measured in the same run.
//!
//! ```text
//! cargo bench --bench lock
//! ```
//!
//! - `uncontended/*`: one process, nobody else touching the segment.
//! - `two_processes/*`: this process and a child (this binary again, running the `contend`
//!   routine through the child-process kit in `benches/common`) each make `iters` increments of
//!   one `Value<u64>` under its lock (or, lock-free, of one `RawValue<u64>`); both start at a
//!   barrier in shared memory, and the time runs until both are done. One iteration is one
//!   increment by each process, so throughput counts 2 elements.
//! - `baseline/pipe_round_trip`: one byte to a child process through a pipe and back.
//!
//! After Criterion's report, a summary gives each mean (over every sample, warm-up included) and
//! how many of each operation fit in one pipe round trip.

use std::hint::black_box;
use std::io::{Read, Write};
use std::process::{ChildStdin, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use mpshm::prelude::*;
use mpshm::{Lock, RawValue, Value};

mod common;

use common::child::Child;
use common::{Res, or_exit, record, spawn_role};
/// The `cmd` word that tells the contending child to exit.
const QUIT: u64 = u64::MAX;
/// How long either side waits for the other before giving up.
const PATIENCE: Duration = Duration::from_secs(30);

fn main() {
    common::run("lock", routines![echo, contend], benches, |_| {
        PIPE_ID.to_owned()
    });
}

// ---- the benchmarks ------------------------------------------------------------------------

const PIPE_ID: &str = "baseline/pipe_round_trip";

fn benches(c: &mut Criterion) -> Res<()> {
    let pid = std::process::id();

    let mut g = c.benchmark_group("uncontended");
    g.throughput(Throughput::Elements(1));
    let lock = Lock::create(&format!("lb-{pid}-lock"), ())?;
    g.bench_function("lock_release", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                drop(black_box(lock.acquire().expect("uncontended acquire")));
            }
            record("uncontended/lock_release", start.elapsed(), iters)
        })
    });
    let value = Value::<u64>::create(&format!("lb-{pid}-solo"), 0)?;
    g.bench_function("value_update", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                value.update(|v| *v += 1).expect("uncontended update");
            }
            record("uncontended/value_update", start.elapsed(), iters)
        })
    });
    let raw = RawValue::<u64>::create(&format!("lb-{pid}-raw"), 0)?;
    g.bench_function("fetch_add", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(raw.fetch_add(1));
            }
            record("uncontended/fetch_add", start.elapsed(), iters)
        })
    });
    g.finish();
    drop((lock, value, raw));

    let rig = Contention::start(&format!("lb-{pid}"))?;
    let mut g = c.benchmark_group("two_processes");
    g.throughput(Throughput::Elements(2));
    for (id, routine) in [
        ("two_processes/value_update", Routine::Locked),
        ("two_processes/fetch_add", Routine::Atomic),
    ] {
        let name = id.trim_start_matches("two_processes/");
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let time = rig.round(routine, iters).expect("contended round");
                record(id, time, iters)
            })
        });
    }
    g.finish();
    rig.stop()?;

    let mut echo = Echo::start()?;
    let mut g = c.benchmark_group("baseline");
    g.throughput(Throughput::Elements(1));
    g.bench_function("pipe_round_trip", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                echo.round_trip().expect("pipe round trip");
            }
            record(PIPE_ID, start.elapsed(), iters)
        })
    });
    g.finish();
    echo.stop()
}

// ---- two processes on one counter ----------------------------------------------------------

#[derive(Clone, Copy)]
enum Routine {
    Locked = 1,
    Atomic = 2,
}

/// The segments both processes share, and their roles:
/// `cmd` round number (or [`QUIT`]), `routine`, `iters`, `arrive` barrier count (2 per round),
/// `done` the last round the child finished, `value` the locked counter, `raw` the lock-free one.
struct Control {
    cmd: RawValue<u64>,
    routine: RawValue<u32>,
    iters: RawValue<u64>,
    arrive: RawValue<u64>,
    done: RawValue<u64>,
    value: Value<u64>,
    raw: RawValue<u64>,
}

impl Control {
    fn names(prefix: &str) -> [String; 7] {
        ["cmd", "rt", "it", "arr", "done", "val", "raw"].map(|s| format!("{prefix}-{s}"))
    }

    fn create(prefix: &str) -> Res<Control> {
        let [cmd, routine, iters, arrive, done, value, raw] = Control::names(prefix);
        Ok(Control {
            cmd: RawValue::create(&cmd, 0)?,
            routine: RawValue::create(&routine, 0)?,
            iters: RawValue::create(&iters, 0)?,
            arrive: RawValue::create(&arrive, 0)?,
            done: RawValue::create(&done, 0)?,
            value: Value::create(&value, 0)?,
            raw: RawValue::create(&raw, 0)?,
        })
    }

    fn open(prefix: &str) -> Res<Control> {
        let [cmd, routine, iters, arrive, done, value, raw] = Control::names(prefix);
        Ok(Control {
            cmd: RawValue::open(&cmd)?,
            routine: RawValue::open(&routine)?,
            iters: RawValue::open(&iters)?,
            arrive: RawValue::open(&arrive)?,
            done: RawValue::open(&done)?,
            value: Value::open(&value)?,
            raw: RawValue::open(&raw)?,
        })
    }

    /// Arrives at round `round`'s barrier and spins until the other process has too.
    fn barrier(&self, round: u64) -> Res<()> {
        self.arrive.fetch_add(1);
        wait_for(|| self.arrive.load() >= 2 * round)
    }

    fn run(&self, routine: Routine, iters: u64) -> Res<()> {
        match routine {
            Routine::Locked => {
                for _ in 0..iters {
                    self.value
                        .update(|v| *v += 1)
                        .map_err(|e| format!("update: {e}"))?;
                }
            }
            Routine::Atomic => {
                for _ in 0..iters {
                    self.raw.fetch_add(1);
                }
            }
        }
        Ok(())
    }
}

/// Spins, then yields, then sleeps until `ready()`; an error after [`PATIENCE`].
fn wait_for(mut ready: impl FnMut() -> bool) -> Res<()> {
    let start = Instant::now();
    let mut spins = 0u64;
    while !ready() {
        spins += 1;
        if spins < 10_000 {
            std::hint::spin_loop();
        } else if spins < 20_000 {
            std::thread::yield_now();
        } else {
            if start.elapsed() > PATIENCE {
                return Err("the other process stopped answering".into());
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    Ok(())
}

/// The parent's side: the shared segments and the contending child.
struct Contention {
    ctl: Control,
    child: Child,
    round: std::cell::Cell<u64>,
}

impl Contention {
    fn start(prefix: &str) -> Res<Contention> {
        let ctl = Control::create(prefix)?;
        let child = spawn_role(&format!("contend {prefix}"))?.spawn()?;
        Ok(Contention {
            ctl,
            child,
            round: std::cell::Cell::new(0),
        })
    }

    /// Both processes make `iters` increments; the time from the barrier until both are done.
    fn round(&self, routine: Routine, iters: u64) -> Res<Duration> {
        let round = self.round.get() + 1;
        self.round.set(round);
        let count = || -> Res<u64> {
            Ok(match routine {
                Routine::Locked => self.ctl.value.get().map_err(|e| format!("get: {e}"))?,
                Routine::Atomic => self.ctl.raw.load(),
            })
        };
        let before = count()?;
        self.ctl.routine.set(routine as u32);
        self.ctl.iters.set(iters);
        // SeqCst store: publishes `routine` and `iters` to the child's SeqCst load of `cmd`.
        self.ctl.cmd.store(round);
        self.ctl.barrier(round)?;
        let start = Instant::now();
        self.ctl.run(routine, iters)?;
        wait_for(|| self.ctl.done.load() >= round)?;
        let time = start.elapsed();
        let after = count()?;
        if after.wrapping_sub(before) != 2 * iters {
            return Err(format!(
                "lost updates: {} increments, expected {}",
                after.wrapping_sub(before),
                2 * iters
            )
            .into());
        }
        Ok(time)
    }

    fn stop(self) -> Res<()> {
        self.ctl.cmd.store(QUIT);
        Ok(self.child.finish()?)
    }
}

fn contend_child(prefix: &str) -> Res<()> {
    let ctl = Control::open(prefix)?;
    let mut round = 0;
    loop {
        let mut cmd = 0;
        wait_for(|| {
            cmd = ctl.cmd.load();
            cmd > round
        })?;
        if cmd == QUIT {
            return Ok(());
        }
        round = cmd;
        let routine = match ctl.routine.get() {
            1 => Routine::Locked,
            2 => Routine::Atomic,
            r => return Err(format!("unknown routine {r}").into()),
        };
        let iters = ctl.iters.get();
        ctl.barrier(round)?;
        ctl.run(routine, iters)?;
        ctl.done.store(round);
    }
}

// ---- the pipe baseline ---------------------------------------------------------------------

/// A child that echoes each byte on its stdin back on its stdout.
struct Echo {
    to: Option<ChildStdin>,
    from: ChildStdout,
    child: Child,
}

impl Echo {
    fn start() -> Res<Echo> {
        let mut child = spawn_role("echo")?
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let to = child.take_stdin().ok_or("no pipe to the echo child")?;
        let from = child.take_stdout().ok_or("no pipe from the echo child")?;
        Ok(Echo {
            to: Some(to),
            from,
            child,
        })
    }

    fn round_trip(&mut self) -> Res<()> {
        let to = self.to.as_mut().ok_or("echo child already stopped")?;
        to.write_all(&[42])?;
        let mut byte = [0];
        self.from.read_exact(&mut byte)?;
        if byte != [42] {
            return Err(format!("echo child sent {byte:?}").into());
        }
        Ok(())
    }

    fn stop(mut self) -> Res<()> {
        drop(self.to.take()); // EOF: the child exits.
        Ok(self.child.finish()?)
    }
}

fn echo_child() -> Res<()> {
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut byte = [0];
    loop {
        if stdin.read(&mut byte)? == 0 {
            return Ok(());
        }
        stdout.write_all(&byte)?;
        stdout.flush()?;
    }
}

// ---- child processes -----------------------------------------------------------------------

/// `echo`: sends each byte on stdin back on stdout.
fn echo(_: &[String]) {
    or_exit(echo_child());
}

/// `contend <prefix>`: the other process of `two_processes/*`.
fn contend(args: &[String]) {
    match args {
        [prefix] => or_exit(contend_child(prefix)),
        _ => or_exit(Err(format!("contend takes a prefix, not {args:?}").into())),
    }
}
