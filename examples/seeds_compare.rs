//! The seeds' comparison, in Rust: the same CPU-bound job run one after the other, on threads,
//! in processes, and on a pool of processes (and of threads), with the time each took.
//!
//! ```text
//! cargo run --release --example seeds_compare            # JOBS jobs of SIZE steps each
//! MPSHM_SEEDS_SIZE=5000000 cargo run --release --example seeds_compare
//! ```
//!
//! The job is the seeds' `res += i + i**2 + i**3` over a range (wrapping, as Python's big
//! integers are not). Unlike Python's, Rust threads run in parallel, so threads and processes
//! take about the same time here; a process costs its start-up besides. Every way must give
//! the same total.

use std::hint::black_box;
use std::time::Instant;

use mpshm::process::{Pool, Process, ThreadPool, current_process};

/// How many jobs.
const JOBS: usize = 4;
/// Steps of each job (default).
const SIZE: u64 = 50_000_000;

fn job(n: u64) -> u64 {
    let mut res = 0u64;
    for i in 0..n {
        // `black_box` keeps the compiler from replacing the loop by its closed form.
        let i = black_box(i);
        res = res.wrapping_add(
            i.wrapping_add(i.wrapping_mul(i))
                .wrapping_add(i.wrapping_mul(i).wrapping_mul(i)),
        );
    }
    res
}

fn total(parts: impl IntoIterator<Item = u64>) -> u64 {
    parts.into_iter().fold(0, u64::wrapping_add)
}

fn main() -> Result<(), mpshm::ProcessError> {
    let size = std::env::var("MPSHM_SEEDS_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SIZE);
    println!(
        "{} (pid {}): {JOBS} jobs of {size} steps, {} CPUs",
        current_process().name,
        std::process::id(),
        mpshm::process::cpu_count()
    );
    let mut rows = Vec::new();

    let t = Instant::now();
    let sequential = total((0..JOBS).map(|_| job(size)));
    rows.push(("sequential", t.elapsed(), sequential));

    let t = Instant::now();
    let threads: Vec<_> = (0..JOBS)
        .map(|_| std::thread::spawn(move || job(size)))
        .collect();
    let sum = total(threads.into_iter().map(|h| h.join().expect("thread")));
    rows.push(("threads", t.elapsed(), sum));

    let t = Instant::now();
    let processes: Vec<Process<u64>> = (0..JOBS).map(|_| Process::new(job, size)).collect();
    // All starts first, then the joins, as the seed advises.
    for p in &processes {
        p.start()?;
    }
    let mut parts = Vec::new();
    for p in &processes {
        parts.push(p.join()?);
    }
    rows.push(("processes", t.elapsed(), total(parts)));

    // As the seed times it: start the pool, map, close and join.
    let t = Instant::now();
    let pool = Pool::new(JOBS)?;
    let started = t.elapsed();
    let sum = total(pool.map(job, vec![size; JOBS])?);
    let mapped = t.elapsed();
    pool.close();
    pool.join()?;
    rows.push(("process pool", t.elapsed(), sum));

    let t = Instant::now();
    let pool = ThreadPool::new(JOBS)?;
    let sum = total(pool.map(job, vec![size; JOBS])?);
    rows.push(("thread pool", t.elapsed(), sum));

    println!("{:<14} {:>10}  total", "way", "time");
    for (name, time, sum) in &rows {
        println!("{name:<14} {:>8.1}ms  {sum}", time.as_secs_f64() * 1e3);
        assert_eq!(*sum, sequential, "{name} got another total");
    }
    println!(
        "(the process pool's workers started in {:.1}ms, the map was done at {:.1}ms)",
        started.as_secs_f64() * 1e3,
        mapped.as_secs_f64() * 1e3
    );
    Ok(())
}
