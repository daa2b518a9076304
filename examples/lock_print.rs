//! Ten processes print one line each while holding a shared `Lock`: seed 001 "進程間鎖機制",
//! seed 002 "进程间同步" and seed 003 "三、进程同步".
//!
//! ```text
//! cargo run --release --example lock_print
//! ```
//!
//! The lock lives in shared memory under a name; each child opens it by that name. Its lines
//! come in whatever order the children get the lock.

mod common;

use mpshm::Lock;
use mpshm::prelude::*;
use mpshm::process::Process;

fn f((l, i): (String, u32)) {
    let l = Lock::open(&l).expect("open the lock");
    let _held = l.acquire().expect("the lock");
    println!("hello world {i}");
    // Released when `_held` goes, even if the print panicked.
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lock = Lock::create(&common::name("lock-print"), ())?;
    let mut processes = Vec::new();
    for num in 0..10 {
        let p = Process::new(f, (lock.name().to_owned(), num));
        p.start()?;
        processes.push(p);
    }
    // Python waits for its children at exit; here, before the lock goes.
    for p in processes {
        p.join()?;
    }
    Ok(())
}
