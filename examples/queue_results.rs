//! Two processes compute and send their results back through a `Queue`; the parent adds them
//! up: seed 000 "queue进程输出".
//!
//! ```text
//! cargo run --release --example queue_results
//! ```
//!
//! Python hands the queue object to each child; here the child gets the queue's name and opens
//! it.

mod common;

use mpshm::Queue;
use mpshm::prelude::*;
use mpshm::process::Process;

fn job(q: String) {
    let mut res = 0u64;
    for i in 0..1000u64 {
        res += i + i.pow(2) + i.pow(3);
    }
    let q = Queue::<u64>::open(&q).expect("open the queue");
    q.put(res).expect("the queue is open");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let q = Queue::<u64>::create(&common::name("queue-results"), 8)?;
    let p1 = Process::new(job, q.name().to_owned());
    let p2 = Process::new(job, q.name().to_owned());
    p1.start()?;
    p2.start()?;
    p1.join()?;
    p2.join()?;
    let res1 = q.get()?;
    let res2 = q.get()?;
    println!("{}", res1 + res2);
    Ok(())
}
