//! mpshm's `Pool` and `Process` beside Python's `multiprocessing`, measured in the same run
//! (when `python3` is on the path), printed with the ratios.
//!
//! ```text
//! cargo run --release --example pool_bench
//! MPSHM_PBENCH_SCALE=0.1 cargo run --release --example pool_bench   # a quick look
//! ```
//!
//! - **map**: `Pool.map` of a trivial function (`x + 1`) over 200,000 integers, default chunk
//!   size, on a pool of [`WORKERS`] workers started beforehand; items per second.
//! - **apply_async + get**: 20,000 `apply_async` calls of the same function, then `get` on
//!   each result; tasks per second.
//! - **Process start + join**: a child that runs a function returning at once, started and
//!   joined 50 times in a row; the mean time of one. Both start methods: spawn (a new run of
//!   the executable; mpshm's default) beside Python's `spawn`, and fork beside Python's `fork`
//!   (before the pool exists: mpshm refuses to fork a process that runs other threads). Python's
//!   own default is `fork` up to 3.13 and `forkserver` from 3.14.
//!
//! Each figure is the median of [`ROUNDS`] rounds; mpshm and Python take turns within a round.
//! The measuring functions take their sizes as arguments and return a [`Figure`], so that
//! they can move into a benchmark command unchanged.

use std::process::Command;
use std::time::{Duration, Instant};

use mpshm::process::{Pool, Process, StartMethod};

/// Workers of both pools.
const WORKERS: usize = 2;
/// Rounds of each case.
const ROUNDS: usize = 5;
const MAP_ITEMS: usize = 200_000;
const APPLY_TASKS: usize = 20_000;
const PROCESSES: usize = 50;

/// A measured case: how many operations in how long.
#[derive(Debug, Clone, Copy)]
pub struct Figure {
    ops: usize,
    time: Duration,
}

impl Figure {
    fn per_sec(self) -> f64 {
        self.ops as f64 / self.time.as_secs_f64()
    }

    fn mean(self) -> Duration {
        self.time / self.ops.max(1) as u32
    }
}

fn inc(x: u64) -> u64 {
    x + 1
}

fn nothing(_: ()) {}

/// `Pool.map` of `inc` over `items` integers.
pub fn map(pool: &Pool, items: usize) -> Figure {
    let start = Instant::now();
    let out = pool.map(inc, 0..items as u64).expect("map");
    let time = start.elapsed();
    assert_eq!(out.len(), items);
    assert_eq!(out[items - 1], items as u64);
    Figure { ops: items, time }
}

/// `tasks` `apply_async` calls of `inc`, then a `get` of each.
pub fn apply_async(pool: &Pool, tasks: usize) -> Figure {
    let start = Instant::now();
    let results: Vec<_> = (0..tasks as u64)
        .map(|i| pool.apply_async(inc, i))
        .collect();
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.get().expect("result"), i as u64 + 1);
    }
    Figure {
        ops: tasks,
        time: start.elapsed(),
    }
}

/// `n` processes started with `method` and joined, one after the other.
pub fn start_join(n: usize, method: StartMethod) -> Figure {
    let start = Instant::now();
    for _ in 0..n {
        let mut p = Process::new(nothing, ());
        p.set_start_method(method);
        p.start().expect("start");
        p.join().expect("join");
    }
    Figure {
        ops: n,
        time: start.elapsed(),
    }
}

/// The same cases in Python, one round: map, apply_async + get, start + join with fork and
/// with spawn; `None` without `python3`.
pub fn python(map_items: usize, apply_tasks: usize, processes: usize) -> Option<[Figure; 4]> {
    let script = format!(
        r#"
import multiprocessing as mp, time
def inc(x):
    return x + 1
def nothing():
    pass
def start_join(ctx, n):
    t = time.perf_counter()
    for _ in range(n):
        p = ctx.Process(target=nothing); p.start(); p.join()
    return time.perf_counter() - t
if __name__ == "__main__":
    with mp.Pool({WORKERS}) as pool:
        pool.map(inc, range(100))
        t = time.perf_counter(); out = pool.map(inc, range({map_items})); m = time.perf_counter() - t
        assert out[-1] == {map_items}
        t = time.perf_counter()
        rs = [pool.apply_async(inc, (i,)) for i in range({apply_tasks})]
        for i, r in enumerate(rs):
            assert r.get() == i + 1
        a = time.perf_counter() - t
    f = start_join(mp.get_context("fork"), {processes})
    s = start_join(mp.get_context("spawn"), {processes})
    print(m, a, f, s)
"#
    );
    // A file, not `-c`: Python's spawn re-imports the main module by its path.
    let path = std::env::temp_dir().join(format!("mpshm_pool_bench_{}.py", std::process::id()));
    std::fs::write(&path, script).ok()?;
    let out = Command::new("python3").arg(&path).output();
    let _ = std::fs::remove_file(&path);
    let out = out.ok()?;
    if !out.status.success() {
        eprintln!("python3 failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let secs: Vec<f64> = text
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    let [m, a, f, s] = secs[..] else { return None };
    let fig = |ops, secs| Figure {
        ops,
        time: Duration::from_secs_f64(secs),
    };
    Some([
        fig(map_items, m),
        fig(apply_tasks, a),
        fig(processes, f),
        fig(processes, s),
    ])
}

/// Python's default start method, as `multiprocessing` reports it.
fn python_default_method() -> Option<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import multiprocessing as mp; print(mp.get_start_method())",
        ])
        .output()
        .ok()?;
    Some(String::from_utf8(out.stdout).ok()?.trim().to_owned())
}

fn median(mut v: Vec<Figure>, key: impl Fn(&Figure) -> f64) -> Figure {
    v.sort_by(|a, b| key(a).total_cmp(&key(b)));
    v[v.len() / 2]
}

fn main() {
    let scale: f64 = std::env::var("MPSHM_PBENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let n = |x: usize| ((x as f64 * scale) as usize).max(1);
    let (map_items, apply_tasks, processes) = (n(MAP_ITEMS), n(APPLY_TASKS), n(PROCESSES));
    // [map, apply, fork, spawn], each a list of rounds.
    let mut ours: [Vec<Figure>; 4] = Default::default();
    let mut theirs: [Vec<Figure>; 4] = Default::default();
    // Fork first, while this process runs one thread: the pool's thread would rule it out.
    for _ in 0..ROUNDS {
        ours[2].push(start_join(processes, StartMethod::Fork));
    }
    let pool = Pool::new(WORKERS).expect("pool");
    // Warm up: the workers have started and run a task.
    pool.map(inc, 0..100).expect("warm-up");
    for _ in 0..ROUNDS {
        ours[0].push(map(&pool, map_items));
        ours[1].push(apply_async(&pool, apply_tasks));
        ours[3].push(start_join(processes, StartMethod::Spawn));
        if let Some(py) = python(map_items, apply_tasks, processes) {
            for (k, f) in py.into_iter().enumerate() {
                theirs[k].push(f);
            }
        }
    }
    println!(
        "{WORKERS} workers, median of {ROUNDS} rounds; Python's default start method: {}",
        python_default_method().unwrap_or_else(|| "(no python3)".to_owned())
    );
    println!(
        "{:<26} {:>14} {:>14} {:>8}",
        "case", "mpshm", "python", "ratio"
    );
    let rate = |f: &Figure| f.per_sec();
    for (k, name) in [(0, "map (items/s)"), (1, "apply_async+get (/s)")] {
        let us = median(ours[k].clone(), rate);
        let line = if theirs[k].is_empty() {
            format!("{:>14} {:>8}", "-", "-")
        } else {
            let py = median(theirs[k].clone(), rate);
            format!(
                "{:>14.0} {:>7.1}x",
                py.per_sec(),
                us.per_sec() / py.per_sec()
            )
        };
        println!("{name:<26} {:>14.0} {line}", us.per_sec());
    }
    let mean = |f: &Figure| f.mean().as_secs_f64();
    for (k, name) in [(3, "start+join, spawn"), (2, "start+join, fork")] {
        let us = median(ours[k].clone(), mean);
        let line = if theirs[k].is_empty() {
            format!("{:>14} {:>8}", "-", "-")
        } else {
            let py = median(theirs[k].clone(), mean);
            format!(
                "{:>12.2}ms {:>7.2}x",
                py.mean().as_secs_f64() * 1e3,
                us.mean().as_secs_f64() / py.mean().as_secs_f64()
            )
        };
        println!(
            "{name:<26} {:>12.2}ms {line}  (time: lower is better)",
            us.mean().as_secs_f64() * 1e3
        );
    }
    // The comparison of defaults: mpshm spawns, Python (up to 3.13) forks.
    if let (false, false) = (ours[3].is_empty(), theirs[2].is_empty()) {
        let us = median(ours[3].clone(), mean);
        let py = median(theirs[2].clone(), mean);
        println!(
            "{:<26} {:>12.2}ms {:>12.2}ms {:>7.2}x",
            "start+join, spawn v fork",
            us.mean().as_secs_f64() * 1e3,
            py.mean().as_secs_f64() * 1e3,
            us.mean().as_secs_f64() / py.mean().as_secs_f64()
        );
    }
}
