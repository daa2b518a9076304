//! The producer half: opens the consumer's queue of sensor readings and its counter by name,
//! puts N readings, counting each, and closes the queue; then sends two readings through the
//! consumer's pipe. See `../README.md`.
//!
//! ```text
//! producer [NAME [N]]    # NAME: two-binaries, N: 1000
//! ```

use std::error::Error;
use std::process::ExitCode;

use mpshm::bytemuck::{Pod, Zeroable};
use mpshm::prelude::*;
use mpshm::{PipeWriter, Queue, Value};

mpshm::shared_type! {
    /// One sensor reading: the consumer's struct, defined again in this crate under the same
    /// stable name.
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

mpshm::shared_type! {
    /// The same name and size with two fields the other way round: what an out-of-date build
    /// might have. Its bytes would read as garbage; the queue and the pipe refuse it.
    #[name = "two-binaries::Reading@1"]
    #[derive(Clone, Copy, Debug, Pod, Zeroable)]
    #[bytemuck(crate = "mpshm::bytemuck")]
    #[repr(C)]
    struct Reordered {
        seq: u32,
        sensor: u32,
        celsius: f64,
    }
}

mpshm::shared_type! {
    /// The same struct under a name of this crate's own.
    #[name = "producer::Reading"]
    #[derive(Clone, Copy, Debug, Pod, Zeroable)]
    #[bytemuck(crate = "mpshm::bytemuck")]
    #[repr(C)]
    struct Renamed {
        sensor: u32,
        seq: u32,
        celsius: f64,
    }
}

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

    let readings =
        Queue::<Reading>::open(&queue).map_err(|e| format!("{e} (start the consumer first)"))?;
    // The refusals a type of another name, or of other fields under the same name, meets.
    if let Err(e) = Queue::<Renamed>::open(&queue) {
        println!("producer: under another name: {e}");
    }
    if let Err(e) = Queue::<Reordered>::open(&queue) {
        println!("producer: with reordered fields: {e}");
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

    let pipe = PipeWriter::open(&format!("{name}.pipe"))?;
    pipe.send(&Reading {
        sensor: 8,
        seq: n,
        celsius: 19.5,
    })?;
    pipe.send(&Reordered {
        seq: n + 1,
        sensor: 8,
        celsius: 19.0,
    })?;
    Ok(())
}
