//! The counter benchmark: how fast a shared `Value<u64>` counts under its lock (and a lock-free
//! `RawValue<u64>` with `fetch_add`), alone and with two processes contending, next to Python's
//! `multiprocessing.Value` doing the same in the same run.
//!
//! ```text
//! cargo run --release --example counter [-- N]
//! ```
//!
//! `N` is the number of increments each of the two processes makes (default 5,000,000). The
//! cross-process rows re-execute this binary (`current_exe`) as the second process with
//! `--child <routine> <n> <names..>`; both processes meet at a barrier counter in shared memory
//! and only then start their clocks, so the whole timed window is contended. Each measures its
//! own elapsed and CPU time; throughput is `2N / slower`, and "cores" is the CPU time of both
//! over that window (2.0: both ran all the time; 1.0: they took turns on one core). Every
//! contended run checks that the counter ends at exactly `2N` and fails otherwise.
//!
//! The Python row runs `examples/py/value_lock.py`, which does the same with
//! `with v.get_lock(): v.value += 1`. The trials of each row are interleaved (mpshm, Python,
//! mpshm, ...) and the ratio is taken per trial, so a burst of load on the machine hits both
//! sides of a ratio alike.

use std::error::Error;
use std::hint::black_box;
use std::path::Path;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use mpshm::prelude::*;
use mpshm::{Lock, RawArray, RawValue, Value};

type Res<T> = Result<T, Box<dyn Error>>;

/// Increments per process in the contended rows, unless given on the command line.
const DEFAULT_N: u64 = 5_000_000;
/// Increments per process in the Python row (Python is ~30x slower).
const PY_N: u64 = 200_000;
/// Iterations of the uncontended loops.
const SOLO_ITERS: u64 = 2_000_000;
/// Each row runs this many times; the table shows the median and the range.
const TRIALS: usize = 5;
/// How long a process waits at the start barrier before giving up.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(20);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = if args.get(1).map(String::as_str) == Some("--child") {
        child(&args[2..])
    } else {
        parent(args.get(1).map(String::as_str))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("counter: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the two processes do in the timed window.
#[derive(Clone, Copy)]
enum Routine {
    /// `update(|v| *v += 1)`: the lock, a copy out and a copy in.
    Locked,
    /// `fetch_add(1)` on a `RawValue`: one atomic instruction.
    Atomic,
}

impl Routine {
    fn as_str(self) -> &'static str {
        match self {
            Routine::Locked => "locked",
            Routine::Atomic => "atomic",
        }
    }

    fn parse(s: &str) -> Res<Routine> {
        match s {
            "locked" => Ok(Routine::Locked),
            "atomic" => Ok(Routine::Atomic),
            _ => Err(format!("unknown routine {s:?}").into()),
        }
    }
}

/// The segment names one contended run uses: `ctr-<pid>-<run>-<what>` (at most 24 characters),
/// unique per process and run.
struct Names {
    value: String,
    raw: String,
    barrier: String,
    times: String,
}

impl Names {
    fn new(run: usize) -> Names {
        let pid = std::process::id();
        Names {
            value: format!("ctr-{pid}-{run}-v"),
            raw: format!("ctr-{pid}-{run}-r"),
            barrier: format!("ctr-{pid}-{run}-b"),
            times: format!("ctr-{pid}-{run}-t"),
        }
    }
}

/// The segments of one contended run, as created (parent) or opened (child) by one process.
struct Shared {
    /// What the locked routine counts.
    value: Value<u64>,
    /// What the lock-free routine counts.
    raw: RawValue<u64>,
    /// How many of the two processes have reached the start line.
    barrier: RawValue<u32>,
    /// Nanoseconds: wall time of process 0 and 1, then CPU time of process 0 and 1.
    times: RawArray<u64>,
}

impl Shared {
    fn create(names: &Names) -> Res<Shared> {
        Ok(Shared {
            value: Value::create(&names.value, 0)?,
            raw: RawValue::create(&names.raw, 0)?,
            barrier: RawValue::create(&names.barrier, 0)?,
            times: RawArray::create(&names.times, 4)?,
        })
    }

    fn open(names: &Names) -> Res<Shared> {
        Ok(Shared {
            value: Value::open(&names.value)?,
            raw: RawValue::open(&names.raw)?,
            barrier: RawValue::open(&names.barrier)?,
            times: RawArray::open(&names.times)?,
        })
    }

    /// Waits until both processes have arrived, runs `routine` `n` times, and stores this
    /// process's times under `slot` (0 or 1). `other_failed` is polled while waiting.
    fn work(
        &self,
        routine: Routine,
        n: u64,
        slot: usize,
        mut other_failed: impl FnMut() -> Res<()>,
    ) -> Res<()> {
        self.barrier.fetch_add(1);
        let deadline = Instant::now() + BARRIER_TIMEOUT;
        let mut spins = 0u32;
        while self.barrier.load() < 2 {
            spins = spins.wrapping_add(1);
            if spins % 1024 == 0 {
                other_failed()?;
                if Instant::now() > deadline {
                    return Err("the other process never reached the start barrier".into());
                }
                std::thread::yield_now();
            }
            std::hint::spin_loop();
        }
        let start = Instant::now();
        let cpu_start = cpu_ns();
        match routine {
            Routine::Locked => {
                for _ in 0..n {
                    self.value
                        .update(|v| *v += 1)
                        .map_err(|e| format!("update: {e}"))?;
                }
            }
            Routine::Atomic => {
                for _ in 0..n {
                    self.raw.fetch_add(1);
                }
            }
        }
        let cpu = cpu_ns() - cpu_start;
        let wall = u64::try_from(start.elapsed().as_nanos()).expect("run shorter than 584 years");
        for (i, t) in [(slot, wall), (2 + slot, cpu)] {
            self.times
                .set(i, t)
                .map_err(|e| format!("storing the times: {e}"))?;
        }
        Ok(())
    }
}

/// CPU time of this thread, in nanoseconds.
fn cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The child side: `--child <routine> <n> <value> <raw> <barrier> <times>`.
fn child(args: &[String]) -> Res<()> {
    let [routine, n, value, raw, barrier, times] = args else {
        return Err("usage: counter --child <routine> <n> <value> <raw> <barrier> <times>".into());
    };
    let names = Names {
        value: value.clone(),
        raw: raw.clone(),
        barrier: barrier.clone(),
        times: times.clone(),
    };
    let shared = Shared::open(&names)?;
    shared.work(Routine::parse(routine)?, n.parse()?, 1, || Ok(()))
}

/// A child process that is killed and reaped if it is dropped before [`ChildGuard::wait`].
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn wait(mut self) -> Res<()> {
        let mut child = self.0.take().expect("waited once");
        let status = child.wait()?;
        if !status.success() {
            return Err(format!("child process failed: {status}").into());
        }
        Ok(())
    }

    /// An error if the child has already exited (it can only exit early by failing).
    fn check(&mut self) -> Res<()> {
        let child = self.0.as_mut().expect("not yet waited");
        match child.try_wait()? {
            Some(status) => Err(format!("child process exited early: {status}").into()),
            None => Ok(()),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What one contended run measured.
struct Sample {
    ops_per_sec: f64,
    /// CPU time of both processes over the slower one's wall time.
    cores: f64,
}

/// One contended run: this process and one child each run `routine` `n` times.
fn contended(routine: Routine, n: u64, run: usize) -> Res<Sample> {
    let names = Names::new(run);
    // Dropping `shared` (also on every error path below) unlinks the segments.
    let shared = Shared::create(&names)?;
    let exe = std::env::current_exe()?;
    let mut child = ChildGuard(Some(
        Command::new(exe)
            .arg("--child")
            .arg(routine.as_str())
            .arg(n.to_string())
            .args([&names.value, &names.raw, &names.barrier, &names.times])
            .spawn()?,
    ));
    shared.work(routine, n, 0, || child.check())?;
    child.wait()?;

    let total = match routine {
        Routine::Locked => shared.value.get().map_err(|e| format!("get: {e}"))?,
        Routine::Atomic => shared.raw.load(),
    };
    if total != 2 * n {
        return Err(format!(
            "{} run lost updates: counter is {total}, expected {}",
            routine.as_str(),
            2 * n
        )
        .into());
    }
    let t = shared.times.to_vec();
    let wall = t[0].max(t[1]);
    if t[0] == 0 || t[1] == 0 {
        return Err("a process did not report its times".into());
    }
    Ok(Sample {
        ops_per_sec: 2.0 * n as f64 / (wall as f64 * 1e-9),
        cores: (t[2] + t[3]) as f64 / wall as f64,
    })
}

/// Nanoseconds per call of `f`, over `iters` calls.
fn ns_per_op(iters: u64, mut f: impl FnMut() -> Res<()>) -> Res<f64> {
    let start = Instant::now();
    for _ in 0..iters {
        f()?;
    }
    Ok(start.elapsed().as_nanos() as f64 / iters as f64)
}

/// Runs the Python baseline; `None` (with the reason printed) if python3 is not available.
fn python(n: u64) -> Res<Option<f64>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/py/value_lock.py");
    let out = match Command::new("python3")
        .arg(&script)
        .arg(n.to_string())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("python3 not found; skipping the Python baseline");
            return Ok(None);
        }
        Err(e) => return Err(format!("running python3: {e}").into()),
    };
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    let stdout = String::from_utf8(out.stdout)?;
    let ops = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ops_per_sec="))
        .ok_or_else(|| format!("no ops_per_sec= line in the Python output: {stdout:?}"))?;
    Ok(Some(ops.trim().parse()?))
}

/// Median, min and max.
fn spread(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    (xs[xs.len() / 2], xs[0], xs[xs.len() - 1])
}

/// Runs `trial` [`TRIALS`] times; median, min and max.
fn trials(mut trial: impl FnMut() -> Res<f64>) -> Res<(f64, f64, f64)> {
    let xs = (0..TRIALS).map(|_| trial()).collect::<Res<Vec<f64>>>()?;
    Ok(spread(xs))
}

fn parent(n_arg: Option<&str>) -> Res<()> {
    let n: u64 = match n_arg {
        Some(s) => s
            .parse()
            .map_err(|e| format!("N must be a count of increments, not {s:?}: {e}"))?,
        None => DEFAULT_N,
    };
    let pid = std::process::id();
    let started = Instant::now();
    // Other work on the machine shows in the contended rows; say how much there was.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned());

    // Uncontended: one process, nobody else touching the segments.
    let lock = Lock::create(&format!("ctr-{pid}-lock"), ())?;
    let lock_ns = trials(|| {
        ns_per_op(SOLO_ITERS, || {
            let guard = lock.acquire().map_err(|e| format!("acquire: {e}"))?;
            drop(black_box(guard));
            Ok(())
        })
    })?;
    drop(lock);
    let value = Value::<u64>::create(&format!("ctr-{pid}-solo"), 0)?;
    let update_ns = trials(|| {
        ns_per_op(SOLO_ITERS, || {
            value
                .update(|v| *v += 1)
                .map_err(|e| format!("update: {e}"))?;
            Ok(())
        })
    })?;
    let raw = RawValue::<u64>::create(&format!("ctr-{pid}-solo-raw"), 0)?;
    let add_ns = trials(|| {
        ns_per_op(SOLO_ITERS, || {
            black_box(raw.fetch_add(1));
            Ok(())
        })
    })?;
    let expected = TRIALS as u64 * SOLO_ITERS;
    for (what, total) in [
        ("locked", value.get().map_err(|e| format!("get: {e}"))?),
        ("lock-free", raw.load()),
    ] {
        if total != expected {
            return Err(format!("solo {what} counter is {total}, expected {expected}").into());
        }
    }
    drop((value, raw));

    // Contended, interleaved: locked, atomic, Python; TRIALS times.
    let mut locked = Vec::new();
    let mut atomic = Vec::new();
    let mut py = Vec::new();
    let mut has_python = true;
    for trial in 0..TRIALS {
        locked.push(contended(Routine::Locked, n, 2 * trial)?);
        atomic.push(contended(Routine::Atomic, n, 2 * trial + 1)?);
        if has_python {
            match python(PY_N)? {
                Some(ops) => py.push(ops),
                None => has_python = false,
            }
        }
    }
    let ratios: Vec<f64> = locked
        .iter()
        .zip(&py)
        .map(|(l, p)| l.ops_per_sec / p)
        .collect();

    println!();
    println!(
        "mpshm counter: {} cores, load {load} before, N = {n} per process, median of {TRIALS} [min - max]",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    let line = || println!("{:-<100}", "");
    line();
    println!("{:<48} {:>14}  spread", "measurement", "result");
    line();
    let ns_row = |label: &str, (med, lo, hi): (f64, f64, f64)| {
        println!("{label:<48} {med:>11.1} ns  [{lo:.1} - {hi:.1}]");
    };
    ns_row("Lock acquire+release, uncontended", lock_ns);
    ns_row("Value::update(+1), uncontended", update_ns);
    ns_row("RawValue::fetch_add(1), uncontended", add_ns);
    let ops_row = |label: &str, ops: Vec<f64>, cores: Option<f64>| {
        let (med, lo, hi) = spread(ops);
        let cores = cores.map_or(String::new(), |c| format!("  cores {c:.2}"));
        println!(
            "{label:<48} {:>9.2} M/s  [{:.2} - {:.2}]{cores}",
            med / 1e6,
            lo / 1e6,
            hi / 1e6
        );
    };
    for (label, samples) in [
        ("Value::update(+1), 2 processes contending", &locked),
        ("RawValue::fetch_add(1), 2 processes contending", &atomic),
    ] {
        let ops = samples.iter().map(|s| s.ops_per_sec).collect();
        let cores = spread(samples.iter().map(|s| s.cores).collect()).0;
        ops_row(label, ops, Some(cores));
    }
    if has_python {
        ops_row("Python Value('L') + get_lock(), 2 processes", py, None);
        let (med, lo, hi) = spread(ratios);
        println!(
            "{:<48} {med:>11.1} x   [{lo:.1} - {hi:.1}]  target >= 20x",
            "ratio: mpshm update / Python, per trial"
        );
    } else {
        println!("{:<48} {:>14}", "Python Value('L') + get_lock()", "skipped");
    }
    line();
    println!(
        "all counts exact; {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
