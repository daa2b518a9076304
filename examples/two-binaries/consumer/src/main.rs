//! The consumer half: creates a queue of sensor readings and a counter, takes readings until
//! the producer closes the queue, and checks the count. See `../README.md`.
//!
//! ```text
//! consumer [NAME]    # segments NAME.readings and NAME.count (NAME: two-binaries)
//! ```

use std::error::Error;
use std::process::ExitCode;

use bytemuck::{Pod, Zeroable};
use mpshm::{GetError, Options, Queue, Value};

/// One sensor reading. The producer defines the same struct in its own crate; both give it the
/// same type tag, which `open` checks against the one the queue was created with.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
struct Reading {
    sensor: u32,
    seq: u32,
    celsius: f64,
}

/// The name both binaries give `Reading` (by default each would use its own path,
/// `mpshm_consumer::Reading` here, `mpshm_producer::Reading` there).
const READING_TAG: &str = "two-binaries::Reading v1";

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
    let mut opts = Options::new();
    opts.type_tag(READING_TAG);
    let readings = Queue::<Reading>::create_with(&format!("{name}.readings"), 64, &opts)?;
    let count = Value::<u64>::create(&format!("{name}.count"), 0)?;
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
    Ok(())
}
