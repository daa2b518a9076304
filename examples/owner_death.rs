//! How fast a waiter learns that a [`Lock`]'s holder died.
//!
//! The parent creates a lock; each trial starts a child (this binary again, with `--child`) that
//! opens the lock, takes it, says so with one byte on its stdout, and blocks. The parent then
//! kills the child with `SIGKILL` and times the `acquire` that returns
//! [`LockError::OwnerDied`]:
//!
//! - **blocked**: a waiter thread is already asleep in `acquire` (in `futex(2)`, checked through
//!   `/proc`) when the kill is sent; timed from just before the kill to the return. This is the
//!   kernel's robust-list walk at the child's exit plus the wake-up of the waiter.
//! - **after reap**: the child is killed and reaped first, then `acquire` is timed on its own.
//!
//! Every trial must end in `OwnerDied`; anything else stops the run with an error.
//!
//! ```text
//! cargo run --release --example owner_death [TRIALS]    # default 100
//! ```

use std::error::Error;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mpshm::prelude::*;
use mpshm::{Lock, LockError};

mod common;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// The byte a child writes once it holds the lock.
const HOLDING: u8 = b'H';

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let trials = match args.next() {
        Some(flag) if flag == "--child" => {
            let name = args.next().ok_or("--child needs the lock name")?;
            return child(&name);
        }
        Some(n) => n.parse::<usize>()?,
        None => 100,
    };
    if trials == 0 {
        return Err("at least one trial".into());
    }

    let name = format!("owner-death-{}", std::process::id());
    let lock = Lock::create(&name, ())?;
    let blocked = (0..trials)
        .map(|_| blocked_trial(&lock, &name))
        .collect::<Result<Vec<_>>>()?;
    let reaped = (0..trials)
        .map(|_| reaped_trial(&lock, &name))
        .collect::<Result<Vec<_>>>()?;

    println!("owner-death detection, {trials} trials each, every one OwnerDied (µs)");
    common::header("variant");
    common::report("blocked waiter (kill→return)", blocked);
    common::report("after reap (acquire only)", reaped);
    Ok(())
}

/// The child: take the lock, tell the parent, and hold it until killed.
fn child(name: &str) -> Result<()> {
    let lock = Lock::open(name)?;
    let _guard = match lock.acquire() {
        Ok(guard) => guard,
        Err(e) => return Err(format!("child: acquire: {e}").into()),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&[HOLDING])?;
    out.flush()?;
    // Block until killed. Should the parent die first, its end of our stdin closes, the read
    // returns, and we exit still holding the lock (an owner death like any other).
    let _ = std::io::stdin().read(&mut [0u8]);
    std::process::exit(1);
}

/// Starts a child and waits for its word that it holds the lock.
fn spawn_holder(name: &str) -> Result<Child> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--child", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut byte = [0u8];
    let said = child.stdout.as_mut().map(|out| out.read_exact(&mut byte));
    if !matches!(said, Some(Ok(()))) || byte[0] != HOLDING {
        let _ = child.kill();
        let status = child.wait()?;
        return Err(format!("child did not take the lock ({status})").into());
    }
    Ok(child)
}

/// Takes the verdict of an `acquire` that should report the holder's death, and repairs the lock
/// for the next trial.
fn expect_owner_died(
    r: std::result::Result<mpshm::LockGuard<'_>, LockError<mpshm::LockGuard<'_>>>,
) -> Result<()> {
    match r {
        Err(LockError::OwnerDied(guard)) => {
            guard.mark_consistent();
            Ok(())
        }
        Ok(_) => Err("acquire succeeded cleanly: the owner's death went unreported".into()),
        Err(e) => Err(format!("acquire failed: {e}").into()),
    }
}

/// Kills the holder while a waiter thread sleeps in `acquire`; times kill → return.
fn blocked_trial(lock: &Lock, name: &str) -> Result<Duration> {
    let mut child = spawn_holder(name)?;
    let (task_tx, task_rx) = mpsc::channel();
    let timing = std::thread::scope(|s| {
        let waiter = s.spawn(move || -> std::result::Result<Instant, String> {
            // "<pid>/task/<tid>": where /proc shows this thread.
            let task = std::fs::read_link("/proc/thread-self").map_err(|e| e.to_string())?;
            task_tx
                .send(task.to_string_lossy().into_owned())
                .map_err(|e| e.to_string())?;
            let r = lock.acquire();
            let returned = Instant::now();
            expect_owner_died(r).map_err(|e| e.to_string())?;
            Ok(returned)
        });
        let run = || -> Result<Duration> {
            let task = task_rx.recv()?;
            // Asleep in `futex` (202).
            common::kill_when_asleep(&mut child, &task, &["202"], || {
                Ok(waiter.join().map_err(|_| "waiter panicked")??)
            })
        };
        let r = run();
        if r.is_err() {
            // The waiter may still be asleep on a live holder: kill it so the scope can end.
            let _ = child.kill();
        }
        r
    });
    child.wait()?;
    timing
}

/// Kills and reaps the holder, then times an `acquire` on the abandoned lock.
fn reaped_trial(lock: &Lock, name: &str) -> Result<Duration> {
    let mut child = spawn_holder(name)?;
    child.kill()?;
    child.wait()?;
    let start = Instant::now();
    let r = lock.acquire();
    let took = start.elapsed();
    expect_owner_died(r)?;
    Ok(took)
}
