//! The seeds' timing comparisons of CPU-bound work: one after another, on threads, in processes
//! and on a pool. Seed 000 "效率比较 multithreading multiprocessing" (`normal`, `multithread`,
//! `multicore`: two jobs whose results come back through a `Queue`) and seed 004 "多进程" 2 and 3
//! (three jobs in a row, then in three processes started before any is joined, then on a pool of
//! three with `apply_async`, `close` and `join`).
//!
//! ```text
//! cargo run --release --example seeds_compare [-- SCALE]
//! ```
//!
//! The jobs have the seeds' sizes times SCALE (1 by default, at most 1000). At the seeds' sizes
//! Rust takes milliseconds, about what starting a process costs; from a SCALE of 100 or so the
//! work dominates, and jobs in threads or processes run side by side as far as free cores
//! allow. Rust threads, unlike Python's, run in parallel, so threads do as well as processes.
//! The pool runs seed 004's one `apply_async` (three jobs in a row) in one worker, so it takes
//! about as long as the sequential run, as the seed's did. Seed 000's sums are `u128`, so the
//! totals are Python's exact ones.

mod common;

use std::hint::black_box;
use std::time::Instant;

use mpshm::Queue;
use mpshm::prelude::*;
use mpshm::process::{Pool, Process};

type Res = Result<(), Box<dyn std::error::Error>>;

/// Seed 000's job: `res += i + i**2 + i**3` over `range(n)`, the result put on the queue.
fn job((q, n): (String, u64)) {
    let mut res = 0u128;
    for i in 0..n {
        // `black_box` keeps the compiler from replacing the loop by its closed form.
        let i = u128::from(black_box(i));
        res += i + i.pow(2) + i.pow(3);
    }
    let q = Queue::<u128>::open(&q).expect("open the queue");
    q.put(res).expect("the queue is open");
}

fn multicore(q: &Queue<u128>, n: u64) -> Res {
    let p1 = Process::new(job, (q.name().to_owned(), n));
    let p2 = Process::new(job, (q.name().to_owned(), n));
    p1.start()?;
    p2.start()?;
    p1.join()?;
    p2.join()?;
    let res1 = q.get()?;
    let res2 = q.get()?;
    println!("multicore: {}", res1 + res2);
    Ok(())
}

fn normal(n: u64) {
    let mut res = 0u128;
    for _ in 0..2 {
        for i in 0..n {
            let i = u128::from(black_box(i));
            res += i + i.pow(2) + i.pow(3);
        }
    }
    println!("normal: {res}");
}

fn multithread(q: &Queue<u128>, n: u64) -> Res {
    let (name1, name2) = (q.name().to_owned(), q.name().to_owned());
    let t1 = std::thread::spawn(move || job((name1, n)));
    let t2 = std::thread::spawn(move || job((name2, n)));
    t1.join().expect("no panic");
    t2.join().expect("no panic");
    let res1 = q.get()?;
    let res2 = q.get()?;
    println!("multithread: {}", res1 + res2);
    Ok(())
}

/// Seed 004's job: the sum of `range(num)`.
fn test(num: u64) -> u64 {
    (0..num).map(black_box).sum()
}

fn test_test(num: u64) -> u64 {
    test(num) + test(num) + test(num)
}

fn main() -> Res {
    let scale: u64 = match std::env::args().nth(1) {
        Some(s) => s
            .parse()
            .ok()
            .filter(|s| (1..=1000).contains(s))
            .ok_or("SCALE is 1 to 1000")?,
        None => 1,
    };

    // Seed 000.
    let q = Queue::<u128>::create(&common::name("seeds-compare"), 4)?;
    let n = 1_000_000 * scale;
    let st = Instant::now();
    normal(n);
    let st1 = Instant::now();
    println!("normal time: {}", (st1 - st).as_secs_f64());
    multithread(&q, n)?;
    let st2 = Instant::now();
    println!("multithread time: {}", (st2 - st1).as_secs_f64());
    multicore(&q, n)?;
    println!("multicore time: {}", st2.elapsed().as_secs_f64());

    // Seed 004.
    let num = 10_000_000 * scale;
    let start_time = Instant::now();
    black_box((test(num), test(num), test(num)));
    println!("sequential time: {}", start_time.elapsed().as_secs_f64());

    let start_time = Instant::now();
    let p1 = Process::new(test, num);
    let p2 = Process::new(test, num);
    let p3 = Process::new(test, num);
    p1.start()?;
    p2.start()?;
    p3.start()?;
    p1.join()?;
    p2.join()?;
    p3.join()?;
    println!("processes time: {}", start_time.elapsed().as_secs_f64());

    let start_time = Instant::now();
    let pool = Pool::new(3)?;
    let result = pool.apply_async(test_test, num);
    pool.close();
    pool.join()?;
    println!("{}", result.get()?);
    println!("pool time: {}", start_time.elapsed().as_secs_f64());
    Ok(())
}
