//! The shared-dict benchmark: set + get of small keys from two processes on one `SharedDict`,
//! next to Python's `Manager().dict()` doing the same in the same run.
//!
//! ```text
//! cargo run --release --example dict_bench [--features serde] [-- N]
//! ```
//!
//! Two processes each run `N` rounds (default 500,000) of `insert(k, i)` then `get(&k)`, with
//! `k = i % 64` shared by both, so writers contend for the lock while reads go through the
//! lock-free path. The second process is this binary again (`--child <row> <n> <names..>`);
//! both meet at a barrier counter in shared memory before their clocks start. Throughput is the
//! `4N` operations over the slower process's time. Rows: plain-data keys and values
//! (`SharedDict<u64, u64>`), and with the `serde` feature `String` keys through postcard
//! (`SerdeDict<String, u64>`). The Python row runs `examples/py/manager_dict.py` (when python3
//! is there), whose every operation is a round trip to the manager's server process. Trials
//! are interleaved (mpshm, Python, ...) and the ratio is taken per trial, so a burst of load on
//! the machine hits both sides of a ratio alike.
//!
//! The measuring lives in [`measure`] and [`python`], ready to move into a `bench` command.

use std::error::Error;
use std::path::Path;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use mpshm::prelude::*;
use mpshm::{RawArray, RawValue, SharedDict};

type Res<T> = Result<T, Box<dyn Error>>;

/// Rounds per process, unless given on the command line.
const DEFAULT_N: u64 = 500_000;
/// Rounds per process in the Python row (each operation is a round trip to a server).
const PY_N: u64 = 5_000;
/// Keys touched, shared by both processes.
const KEYS: u64 = 64;
/// Each row runs this many times; the table shows the median and the range.
const TRIALS: usize = 3;
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
            eprintln!("dict_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the two processes share.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Row {
    /// `SharedDict<u64, u64>`.
    Plain,
    /// `SerdeDict<String, u64>` (feature `serde`).
    Serde,
}

impl Row {
    fn as_str(self) -> &'static str {
        match self {
            Row::Plain => "plain",
            Row::Serde => "serde",
        }
    }

    fn parse(s: &str) -> Res<Row> {
        match s {
            "plain" => Ok(Row::Plain),
            "serde" => Ok(Row::Serde),
            _ => Err(format!("unknown row {s:?}").into()),
        }
    }
}

/// The dict of one row, as created or opened by one process.
enum Dict {
    Plain(SharedDict<u64, u64>),
    #[cfg(feature = "serde")]
    Serde(mpshm::SerdeDict<String, u64>),
}

impl Dict {
    fn create(row: Row, name: &str) -> Res<Dict> {
        Ok(match row {
            Row::Plain => Dict::Plain(SharedDict::create(name, KEYS as usize)?),
            #[cfg(feature = "serde")]
            Row::Serde => Dict::Serde(mpshm::SerdeDict::create(name, (KEYS as usize, 24))?),
            #[cfg(not(feature = "serde"))]
            Row::Serde => return Err("the serde row needs --features serde".into()),
        })
    }

    fn open(row: Row, name: &str) -> Res<Dict> {
        Ok(match row {
            Row::Plain => Dict::Plain(SharedDict::open(name)?),
            #[cfg(feature = "serde")]
            Row::Serde => Dict::Serde(mpshm::SerdeDict::open(name)?),
            #[cfg(not(feature = "serde"))]
            Row::Serde => return Err("the serde row needs --features serde".into()),
        })
    }

    /// `n` rounds of set + get.
    fn rounds(&self, n: u64) -> Res<()> {
        match self {
            Dict::Plain(d) => {
                for i in 0..n {
                    let k = i % KEYS;
                    d.insert(k, i)?;
                    d.get(&k)?.ok_or("a key went missing")?;
                }
            }
            #[cfg(feature = "serde")]
            Dict::Serde(d) => {
                let keys: Vec<String> = (0..KEYS).map(|k| format!("key{k}")).collect();
                for i in 0..n {
                    let k = &keys[(i % KEYS) as usize];
                    d.insert(k.clone(), i)?;
                    d.get(k)?.ok_or("a key went missing")?;
                }
            }
        }
        Ok(())
    }

    fn len(&self) -> usize {
        match self {
            Dict::Plain(d) => d.len(),
            #[cfg(feature = "serde")]
            Dict::Serde(d) => d.len(),
        }
    }
}

/// The segments of one run: the dict, the start barrier, and each process's time.
struct Shared {
    dict: Dict,
    barrier: RawValue<u32>,
    times: RawArray<u64>,
}

/// Names of one run's segments, unique per process and run.
fn names(run: usize) -> [String; 3] {
    let pid = std::process::id();
    ["d", "b", "t"].map(|what| format!("dbench-{pid}-{run}-{what}"))
}

impl Shared {
    /// Waits for both processes, runs `n` rounds, and stores this process's time in `slot`.
    fn work(&self, n: u64, slot: usize, mut other_failed: impl FnMut() -> Res<()>) -> Res<()> {
        self.barrier.fetch_add(1);
        let deadline = Instant::now() + BARRIER_TIMEOUT;
        while self.barrier.load() < 2 {
            other_failed()?;
            if Instant::now() > deadline {
                return Err("the other process never reached the start barrier".into());
            }
            std::thread::yield_now();
        }
        let start = Instant::now();
        self.dict.rounds(n)?;
        let wall = u64::try_from(start.elapsed().as_nanos())?;
        self.times.set(slot, wall)?;
        Ok(())
    }
}

/// The child side: `--child <row> <n> <dict> <barrier> <times>`.
fn child(args: &[String]) -> Res<()> {
    let [row, n, dict, barrier, times] = args else {
        return Err("usage: dict_bench --child <row> <n> <dict> <barrier> <times>".into());
    };
    let shared = Shared {
        dict: Dict::open(Row::parse(row)?, dict)?,
        barrier: RawValue::open(barrier)?,
        times: RawArray::open(times)?,
    };
    shared.work(n.parse()?, 1, || Ok(()))
}

/// Kills and reaps the child if it is dropped before `wait`.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn wait(mut self) -> Res<()> {
        let status = self.0.take().expect("waited once").wait()?;
        if !status.success() {
            return Err(format!("child process failed: {status}").into());
        }
        Ok(())
    }

    fn check(&mut self) -> Res<()> {
        match self.0.as_mut().expect("not yet waited").try_wait()? {
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

/// One two-process run of `row`: operations per second (sets and gets of both processes over
/// the slower one's time).
fn measure(row: Row, n: u64, run: usize) -> Res<f64> {
    let [dict, barrier, times] = names(run);
    // Dropping `shared` (also on every error path) unlinks the segments.
    let shared = Shared {
        dict: Dict::create(row, &dict)?,
        barrier: RawValue::create(&barrier, 0)?,
        times: RawArray::create(&times, 2)?,
    };
    let mut child = ChildGuard(Some(
        Command::new(std::env::current_exe()?)
            .args([
                "--child",
                row.as_str(),
                &n.to_string(),
                &dict,
                &barrier,
                &times,
            ])
            .spawn()?,
    ));
    shared.work(n, 0, || child.check())?;
    child.wait()?;
    if shared.dict.len() != KEYS.min(n) as usize {
        return Err(format!(
            "the dict has {} keys, expected {}",
            shared.dict.len(),
            KEYS.min(n)
        )
        .into());
    }
    let t = shared.times.to_vec();
    if t.contains(&0) {
        return Err("a process did not report its time".into());
    }
    Ok(4.0 * n as f64 / (t[0].max(t[1]) as f64 * 1e-9))
}

/// Runs the Python baseline; `None` (with the reason printed) if python3 is not there.
fn python(n: u64) -> Res<Option<f64>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/py/manager_dict.py");
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

fn parent(n_arg: Option<&str>) -> Res<()> {
    let n: u64 = match n_arg {
        Some(s) => s
            .parse()
            .map_err(|e| format!("N must be a count of rounds, not {s:?}: {e}"))?,
        None => DEFAULT_N,
    };
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned());
    let rows: &[Row] = if cfg!(feature = "serde") {
        &[Row::Plain, Row::Serde]
    } else {
        &[Row::Plain]
    };
    let mut got: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
    let mut py = Vec::new();
    let mut has_python = true;
    for trial in 0..TRIALS {
        for (i, &row) in rows.iter().enumerate() {
            got[i].push(measure(row, n, trial * rows.len() + i)?);
        }
        if has_python {
            match python(PY_N)? {
                Some(ops) => py.push(ops),
                None => has_python = false,
            }
        }
    }
    println!();
    println!(
        "shared dict, set + get of {KEYS} small keys from 2 processes: {} cores, load {load} before, median of {TRIALS} [min - max]",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    println!("{:-<96}", "");
    for (row, xs) in rows.iter().zip(&got) {
        let (med, lo, hi) = spread(xs.clone());
        let what = match row {
            Row::Plain => "mpshm SharedDict<u64, u64>",
            Row::Serde => "mpshm SerdeDict<String, u64>",
        };
        print!(
            "{what:<32} {:>8.2} M ops/s [{:.2} - {:.2}]",
            med / 1e6,
            lo / 1e6,
            hi / 1e6
        );
        if py.len() == xs.len() {
            let ratios: Vec<f64> = xs.iter().zip(&py).map(|(x, p)| x / p).collect();
            let (r, rlo, rhi) = spread(ratios);
            print!("   {r:.0}× Python [{rlo:.0} - {rhi:.0}]");
        }
        println!();
    }
    if !py.is_empty() {
        let (med, lo, hi) = spread(py);
        println!(
            "{:<32} {:>8.3} M ops/s [{:.3} - {:.3}]",
            "Python Manager().dict()",
            med / 1e6,
            lo / 1e6,
            hi / 1e6
        );
    }
    Ok(())
}
