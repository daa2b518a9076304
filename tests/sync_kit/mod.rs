//! What the synchronisation family's tests share: kill-loop trial counts, a small random
//! source for kill points, and the latency report.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the kit"
)]

use std::time::{Duration, Instant};

/// Kill-loop trials: `MPSHM_KILL_TRIALS` (e.g. 300 for the figures), or `default` (CI).
pub fn trials(default: u32) -> u32 {
    crate::common::env_or("MPSHM_KILL_TRIALS", default)
}

/// A xorshift generator seeded from the clock and the pid: kill points differ between runs.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        let t = Instant::now().elapsed().as_nanos() as u64
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
        Rng((t ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A duration in `0..max`.
    pub fn duration(&mut self, max: Duration) -> Duration {
        Duration::from_nanos(self.below(max.as_nanos() as u64))
    }
}

/// Busy-waits for `d` (the hot loops must not sleep: a kill should land anywhere in them).
pub fn spin_for(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Prints the median, 90th percentile and worst of `samples` for the kill-loop figures.
pub fn report(what: &str, samples: &mut [Duration]) {
    if samples.is_empty() {
        println!("{what}: no samples");
        return;
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "{what}: {} trials, kill to wake-up: median {:?}, p90 {:?}, worst {:?}",
        samples.len(),
        at(0.5),
        at(0.9),
        samples[samples.len() - 1]
    );
}
