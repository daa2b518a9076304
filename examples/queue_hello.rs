//! A child puts a Python-style list on a `Queue`, the parent gets it: seed 002 "Queues".
//!
//! ```text
//! cargo run --release --features serde --example queue_hello
//! ```
//!
//! Python's `[42, None, 'hello']` is a tuple here, sent through a `SerdeQueue` (feature
//! `serde`); a queue of a plain-data struct (`Queue<T>`) needs no feature.

mod common;

use mpshm::SerdeQueue;
use mpshm::prelude::*;
use mpshm::process::Process;

type Message = (i32, Option<i32>, String);

fn f(q: String) {
    let q = SerdeQueue::<Message>::open(&q).expect("open the queue");
    q.put((42, None, "hello".to_owned()))
        .expect("the queue is open");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let q = SerdeQueue::<Message>::create(&common::name("queue-hello"), (4, 64))?;
    let p = Process::new(f, q.name().to_owned());
    p.start()?;
    println!("{:?}", q.get()?); // prints "(42, None, "hello")"
    p.join()?;
    Ok(())
}
