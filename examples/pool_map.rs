//! A pool of worker processes squaring numbers with `map`, `map_async` and `apply_async`: seed
//! 000 "进程池 pool" (its last program, which contains the two before it), seed 001
//! `create_pro_pool` (`map` five times, then `close` and `join`) and seed 002's first program
//! (`Pool(5)`; seed 003's commented-out `with Pool(5)` is the same).
//!
//! ```text
//! cargo run --release --example pool_map
//! ```

use mpshm::process::{AsyncResult, Pool};

fn job(x: u64) -> u64 {
    x * x
}

/// Seed 000.
fn multicore() -> Result<(), mpshm::ProcessError> {
    let pool = Pool::new(2)?;
    let res = pool.map(job, 0..10)?;
    println!("{res:?}");
    let res = pool.map_async(job, [5]);
    println!("{:?}", res.get()?);
    let multi_res: Vec<_> = (0..10).map(|i| pool.apply_async(job, i)).collect();
    let res: Result<Vec<_>, _> = multi_res.iter().map(AsyncResult::get).collect();
    println!("{:?}", res?);
    Ok(())
}

/// Seed 001: a pool of one worker per CPU.
fn create_pro_pool() -> Result<(), mpshm::ProcessError> {
    let p = Pool::new(None)?;
    for _ in 0..5 {
        println!("{:?}", p.map(job, [1, 2, 3])?);
    }
    p.close();
    p.join()
}

fn main() -> Result<(), mpshm::ProcessError> {
    multicore()?;
    create_pro_pool()?;
    // Seed 002.
    let p = Pool::new(5)?;
    println!("{:?}", p.map(job, [1, 2, 3])?);
    Ok(())
}
