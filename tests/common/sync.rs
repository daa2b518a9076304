//! What the synchronisation family's tests share (`common::sync`): kill-loop trial counts, a
//! small random source for kill points, and the latency report.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the kit"
)]

use std::time::{Duration, Instant};

/// Kill-loop trials: `MPSHM_KILL_TRIALS` (e.g. 300 for the figures), or `default` (CI).
pub fn trials(default: u32) -> u32 {
    super::env_or("MPSHM_KILL_TRIALS", default)
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

/// Starts a thread that runs `prepare` (opening handles, taking a lock), then `wait`; returns
/// once that thread sleeps in the kernel (inside `wait`, since `prepare` does not sleep). The
/// receiver gets what `wait` returned and when.
pub fn sleeper<'s, T, R: Send + 's>(
    scope: &'s std::thread::Scope<'s, '_>,
    prepare: impl FnOnce() -> T + Send + 's,
    wait: impl FnOnce(T) -> R + Send + 's,
) -> std::sync::mpsc::Receiver<(R, Instant)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    scope.spawn(move || {
        let prepared = prepare();
        tid_tx.send(super::thread_id()).expect("send");
        let r = wait(prepared);
        tx.send((r, Instant::now())).expect("send");
    });
    super::wait_until_sleeping(tid_rx.recv().expect("the sleeper started"));
    rx
}

/// The 4-byte word at `offset` of segment `name`, read through the file.
pub fn peek(name: &str, offset: u64) -> u32 {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(format!("/dev/shm/{name}")).expect("open the segment file");
    let mut word = [0u8; 4];
    file.read_exact_at(&mut word, offset).expect("read");
    u32::from_ne_bytes(word)
}

/// Overwrites the 4-byte word at `offset` of segment `name` through the file, bypassing the
/// primitive: how a test stages what a process killed between two of its steps leaves behind.
pub fn poke(name: &str, offset: u64, value: u32) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .expect("open the segment file");
    file.write_all_at(&value.to_ne_bytes(), offset)
        .expect("write");
}

/// The waiters bit of a robust mutex's lock word (glibc's `__lock`).
pub const FUTEX_WAITERS: u32 = 0x8000_0000;

/// A waiter for [`lost_wake_up_strands_no_waiters`]: takes the lock (with a timeout of the
/// duration it is handed, or without one) and lets go of it.
pub type Waiter<E> = Box<dyn FnOnce(Duration) -> Result<(), E> + Send>;

/// Stages a robust mutex's lost wake-up on the lock word at `word` of segment `name` and
/// checks that the waiter is not stranded by it: [`lost_wake_up_strands_no_waiters`] with one.
pub fn lost_wake_up_strands_no_waiter<E: std::fmt::Debug + Send + 'static>(
    name: &str,
    word: u64,
    timeout: Duration,
    acquire: impl FnOnce(Duration) -> Result<(), E> + Send + 'static,
) {
    lost_wake_up_strands_no_waiters(name, word, timeout, vec![Box::new(acquire)]);
}

/// Stages a robust mutex's lost wake-up on the lock word at `word` of segment `name` and
/// checks that no waiter is stranded by it. An unlock clears the waiters bit and wakes one
/// sleeper; if that one is killed before it takes the lock, and another thread takes it first
/// without contention (so without the bit), nobody wakes the other sleepers. Staged: the word
/// names this live thread, which does not hold the lock; each waiter runs (handed `timeout`)
/// on a thread of its own that must go to sleep on the word (setting the bit), one after the
/// other; then the word goes back to 0 with no wake. Every waiter must still take the lock,
/// long before `timeout`. The threads are detached, so that a waiter stranded without a
/// timeout fails the test instead of hanging it.
pub fn lost_wake_up_strands_no_waiters<E: std::fmt::Debug + Send + 'static>(
    name: &str,
    word: u64,
    timeout: Duration,
    waiters: Vec<Waiter<E>>,
) {
    let me = super::thread_id();
    poke(name, word, me);
    let (tx, rx) = std::sync::mpsc::channel();
    let count = waiters.len();
    for acquire in waiters {
        let tx = tx.clone();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            tid_tx.send(super::thread_id()).expect("send");
            let began = Instant::now();
            let r = acquire(timeout);
            let _ = tx.send((r, began.elapsed()));
        });
        super::wait_until_sleeping(tid_rx.recv().expect("the waiter started"));
    }
    assert_eq!(
        peek(name, word),
        me | FUTEX_WAITERS,
        "the waiter does not sleep on the lock (the test's idea of the layout is wrong)"
    );
    poke(name, word, 0);
    for i in 0..count {
        // A second more than the timeout: a timed waiter then answers with its error.
        match rx.recv_timeout(timeout + Duration::from_secs(1)) {
            Ok((r, took)) => {
                assert!(
                    r.is_ok(),
                    "stranded by a lost wake-up: {r:?} after {took:?}"
                );
                assert!(took < timeout, "{took:?}");
            }
            Err(_) => panic!(
                "stranded by a lost wake-up: {i} of {count} waiters took the lock within {timeout:?}"
            ),
        }
    }
}
