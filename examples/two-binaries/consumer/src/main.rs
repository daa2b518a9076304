//! The consumer half: creates a queue of sensor readings, a counter and a one-way pipe, takes
//! readings until the producer closes the queue, checks the count, then receives the readings
//! the producer sent through the pipe. See `../README.md`.
//!
//! ```text
//! consumer [NAME]    # segments NAME.readings, NAME.count and NAME.pipe (NAME: two-binaries)
//! ```

use std::error::Error;
use std::process::ExitCode;

use mpshm::bytemuck::{Pod, Zeroable};
use mpshm::prelude::*;
use mpshm::{GetError, PipeReader, Queue, Value};

mpshm::shared_type! {
    /// One sensor reading. The producer defines the same struct in its own crate; both give it
    /// the same stable name, which `open` checks, with its fields, against what the queue was
    /// created with.
    #[name = "two-binaries::Reading@1"]
    #[derive(Clone, Copy, Debug, Pod, Zeroable)]
    #[bytemuck(crate = "mpshm::bytemuck")]
    #[repr(C)]
    struct Reading {
        sensor: u32,
        seq: u32,
        celsius: f64,
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consumer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "two-binaries".to_owned());
    let readings = Queue::<Reading>::create(&format!("{name}.readings"), 64)?;
    let count = Value::<u64>::create(&format!("{name}.count"), 0)?;
    // The reading end; the writing end is left for the producer to open.
    let pipe = PipeReader::create(&format!("{name}.pipe"), ())?;
    println!(
        "consumer {}: waiting for readings on {}",
        std::process::id(),
        readings.name()
    );

    let (mut got, mut sum) = (0u64, 0.0);
    loop {
        match readings.get() {
            Ok(r) => {
                if got < 3 {
                    println!("consumer: got {r:?}");
                }
                got += 1;
                sum += r.celsius;
            }
            // The producer closed the queue and everything it put has been taken.
            Err(GetError::Closed) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let counted = count.get()?;
    println!(
        "consumer: {got} readings, mean {:.2} °C; the producer counted {counted}",
        sum / got.max(1) as f64
    );
    if got != counted {
        return Err(format!("took {got} readings but the producer counted {counted}").into());
    }
    // The producer sends a `Reading`, then a struct of the same name with its fields the other
    // way round: the pipe takes the first as a `Reading` and refuses the second.
    println!("consumer: by pipe {:?}", pipe.recv::<Reading>()?);
    match pipe.recv::<Reading>() {
        Ok(r) => return Err(format!("a reordered struct was taken as {r:?}").into()),
        Err(e) => println!("consumer: by pipe, reordered: {e}"),
    }
    Ok(())
}
