//! A writer process puts letters on a `Queue` while a reader process takes them, forever, until
//! the parent terminates it: seed 001 `pros_communication`.
//!
//! ```text
//! cargo run --release --example queue_writer_reader
//! ```

mod common;

use common::{random, sleep};
use mpshm::prelude::*;
use mpshm::process::Process;
use mpshm::{GetError, Queue};

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
        match q.get() {
            Ok(value) => println!("Get {} from queue.", value as char),
            // The writer has put its last and gone, and the queue is empty. Python's reader
            // never learns that and waits on; so does this one, for a writer that may come.
            Err(GetError::Disconnected) => sleep(0.01),
            Err(e) => panic!("{e}"),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The parent makes the queue and gives it to each child.
    let q = Queue::<u8>::create(&common::name("queue-writer-reader"), 16)?;
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
