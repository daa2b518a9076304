//! A writer process puts letters on a `Queue` while a reader process takes them, forever, until
//! the parent terminates it: seed 001 `pros_communication`.
//!
//! ```text
//! cargo run --release --example queue_writer_reader
//! ```

mod common;

use common::{random, sleep};
use mpshm::Queue;
use mpshm::prelude::*;
use mpshm::process::Process;

fn write(q: String) {
    let q = Queue::<u8>::open(&q).expect("open the queue");
    for value in [b'A', b'B', b'C'] {
        println!("Put {} to queue...", value as char);
        q.put(value).expect("the queue is open");
        sleep(random());
    }
}

fn read(q: String) {
    let q = Queue::<u8>::open(&q).expect("open the queue");
    loop {
        let value = q
            .get()
            .expect("the parent holds the queue open for writers");
        println!("Get {} from queue.", value as char);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The parent makes the queue and gives it to each child. Like Python's parent, which keeps
    // its own end of the queue, it counts as a producer for as long as its handle lives: the
    // reader's get then waits on an empty queue, as Python's does, rather than say
    // `Disconnected` once the writer is gone.
    let q = Queue::<u8>::create(&common::name("queue-writer-reader"), 16)?;
    q.attach_producer();
    let pw = Process::new(write, q.name().to_owned());
    let pr = Process::new(read, q.name().to_owned());
    pw.start()?;
    pr.start()?;
    pw.join()?;
    // The reader loops forever: it can only be ended from outside.
    pr.terminate()?;
    let _ = pr.join();
    println!("reader terminated, exit code {:?}", pr.exitcode());
    Ok(())
}
