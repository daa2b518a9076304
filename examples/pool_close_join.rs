//! Work handed to a pool without waiting for it, then `close` and `join` to see it done; a
//! callback; and `join` refused before `close`: seed 003 "五、工作进程池pool" (its second
//! program, `run_time`) and seed 004 "多进程" 3 (`apply_async`, close before join, `apply`
//! against `apply_async`).
//!
//! ```text
//! cargo run --release --example pool_close_join
//! ```

mod common;

use std::hint::black_box;
use std::time::Instant;

use common::{random, sleep};
use mpshm::process::{Pool, current_process};

fn run_time(x: u32) {
    let start_time = Instant::now();
    sleep(random());
    let me = current_process();
    println!("{x} {} {} {:?}", me.pid, me.ppid, start_time.elapsed());
}

fn test(num: u64) -> u64 {
    // `black_box` keeps the compiler from replacing the loop by its closed form.
    (0..num).map(black_box).sum()
}

fn test_test(num: u64) -> u64 {
    test(num) + test(num) + test(num)
}

fn main() -> Result<(), mpshm::ProcessError> {
    // Seed 003: ten tasks for four workers; nobody asks for their results.
    let pool = Pool::new(4)?;
    for i in 0..10 {
        pool.apply_async(run_time, i);
    }
    pool.close();
    pool.join()?; // waits for all ten
    println!("the end");

    // Seed 004: `apply` waits for its result, `apply_async` returns at once and can call back.
    let pool = Pool::new(3)?;
    println!("apply: {}", pool.apply(test, 10_000_000)?);
    let result = pool
        .apply_async(test_test, 10_000_000)
        .callback(|r| println!("callback: {r}"));
    // `join` comes after `close` (or `terminate`), as in Python.
    if let Err(e) = pool.join() {
        println!("join before close: {e}");
    }
    pool.close();
    pool.join()?;
    println!("{}", result.get()?);
    Ok(())
}
