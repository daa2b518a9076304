//! The official docs' pool tour: `map`, `imap_unordered`, `apply_async` and a `get` with a
//! timeout, one that runs out: seed 002 "Using a pool of workers" and seed 003 "五、工作进程池pool"
//! (its first program).
//!
//! ```text
//! cargo run --release --example pool_async
//! ```
//!
//! Python's `with Pool(...) as pool:` block is a Rust block: the pool is terminated when it is
//! dropped at its end, as Python terminates it when the block exits.

use std::time::Duration;

use mpshm::ProcessError;
use mpshm::process::Pool;

fn f(x: u64) -> u64 {
    x * x
}

fn getpid(_: ()) -> u32 {
    std::process::id()
}

fn sleep(secs: u64) {
    std::thread::sleep(Duration::from_secs(secs));
}

fn main() -> Result<(), ProcessError> {
    let timeout = Duration::from_secs(1);
    {
        // start 4 worker processes
        let pool = Pool::new(4)?;

        // prints "[0, 1, 4,..., 81]"
        println!("{:?}", pool.map(f, 0..10)?);

        // prints the same numbers in any order
        for i in pool.imap_unordered(f, 0..10) {
            println!("{}", i?);
        }

        // evaluates "f(20)" asynchronously, in only one process
        let res = pool.apply_async(f, 20);
        println!("{}", res.get_timeout(timeout)?); // prints "400"

        // evaluates "getpid()" asynchronously, in only one process
        let res = pool.apply_async(getpid, ());
        println!("{}", res.get_timeout(timeout)?); // prints the pid of that process

        // launching several evaluations asynchronously *may* use more processes
        let multiple_results: Vec<_> = (0..4).map(|_| pool.apply_async(getpid, ())).collect();
        let pids: Result<Vec<_>, _> = multiple_results
            .iter()
            .map(|res| res.get_timeout(timeout))
            .collect();
        println!("{:?}", pids?);

        // makes a single worker sleep for 10 s
        let res = pool.apply_async(sleep, 10);
        match res.get_timeout(timeout) {
            Err(ProcessError::Timeout) => {
                println!("We lacked patience and got a multiprocessing.TimeoutError");
            }
            other => println!("{other:?}"),
        }

        println!("For the moment, the pool remains available for more work");
    }
    // leaving the block has stopped the pool
    println!("Now the pool is closed and no longer available");
    Ok(())
}
