//! The producer half: opens the consumer's queue of sensor readings and its counter by name,
//! puts N readings, counting each, and closes the queue. See `../README.md`.
//!
//! ```text
//! producer [NAME [N]]    # NAME: two-binaries, N: 1000
//! ```

use std::error::Error;
use std::process::ExitCode;

use bytemuck::{Pod, Zeroable};
use mpshm::{Options, Queue, Value};

/// One sensor reading: the consumer's struct, defined again in this crate.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
struct Reading {
    sensor: u32,
    seq: u32,
    celsius: f64,
}

/// The name both binaries give `Reading`.
const READING_TAG: &str = "two-binaries::Reading v1";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("producer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "two-binaries".to_owned());
    let n: u32 = args.next().map_or(Ok(1000), |s| s.parse())?;
    let queue = format!("{name}.readings");

    let mut opts = Options::new();
    opts.type_tag(READING_TAG);
    let readings = Queue::<Reading>::open_with(&queue, &opts)
        .map_err(|e| format!("{e} (start the consumer first)"))?;
    // Without the shared tag, the type is named by its path in this crate, which is not the
    // consumer's, and the queue refuses to open.
    if let Err(e) = Queue::<Reading>::open(&queue) {
        println!("producer: without the type tag: {e}");
    }
    let count = Value::<u64>::open(&format!("{name}.count"))?;
    for seq in 0..n {
        let celsius = 20.0 + f64::from(seq % 10) * 0.5;
        readings.put(Reading {
            sensor: 7,
            seq,
            celsius,
        })?;
        count.update(|n| *n += 1)?;
    }
    readings.close();
    println!("producer {}: put {n} readings", std::process::id());
    Ok(())
}
