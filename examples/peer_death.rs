//! How fast a blocked receiver learns that its only peer was killed: an mpshm [`Pipe`]'s
//! `recv`, a [`Queue`]'s `get`, and, as the baseline, an OS pipe's `read` reaching end of
//! file, taking turns in the same run.
//!
//! Each trial starts a child (this binary again, with `--child <case> <name>`) that attaches to
//! the far side and says so with one byte on its stdout: for the pipe it opens the far end
//! (the end the previous child died holding: a restarted peer rejoins); for the queue it opens
//! it and puts one message, which attaches it as the queue's only producer; for the OS pipe its
//! stdout is the pipe. It then blocks reading its stdin. A parent thread blocks in `recv`, `get`
//! or `read` (asleep in the kernel, checked through `/proc`), the parent kills the child with
//! `SIGKILL`, and the time runs from just before the kill until the receive fails with
//! `Disconnected` (end of file). Anything else stops the run with an error.
//!
//! ```text
//! cargo run --release --example peer_death [TRIALS]    # default 100 of each
//! ```

use std::error::Error;
use std::io::{Read, Write};
use std::process::{ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mpshm::prelude::*;
use mpshm::{GetError, Pipe, Queue, RecvError};

mod common;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// The byte a child writes once it is attached.
const READY: u8 = b'R';

#[derive(Clone, Copy, Debug, PartialEq)]
enum Case {
    Pipe,
    Queue,
    OsPipe,
}

impl Case {
    fn arg(self) -> &'static str {
        match self {
            Case::Pipe => "pipe",
            Case::Queue => "queue",
            Case::OsPipe => "os-pipe",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Case::Pipe => "mpshm Pipe recv",
            Case::Queue => "mpshm Queue get",
            Case::OsPipe => "OS pipe read (EOF)",
        }
    }
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let trials = match args.next() {
        Some(flag) if flag == "--child" => {
            let case = args.next().ok_or("--child needs a case")?;
            let name = args.next().ok_or("--child needs a name")?;
            return child(&case, &name);
        }
        Some(n) => n.parse::<usize>()?,
        None => 100,
    };
    if trials == 0 {
        return Err("at least one trial".into());
    }

    let pipe_name = format!("peer-death-p{}", std::process::id());
    let queue_name = format!("peer-death-q{}", std::process::id());
    let (conn, far) = Pipe::create(&pipe_name)?;
    far.release();
    let queue = Queue::<u64>::create(&queue_name, 4)?;

    let cases = [Case::Pipe, Case::Queue, Case::OsPipe];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    for _ in 0..trials {
        for (i, &case) in cases.iter().enumerate() {
            let t = match case {
                Case::Pipe => trial(case, &pipe_name, |_| match conn.recv_bytes() {
                    Err(RecvError::Disconnected) => Ok(()),
                    other => Err(format!("recv: {other:?}")),
                })?,
                Case::Queue => trial(case, &queue_name, |_| {
                    // The child's message first, then the wait for the next.
                    match queue.get() {
                        Ok(1) => {}
                        other => return Err(format!("get: {other:?}")),
                    }
                    announce();
                    match queue.get() {
                        Err(GetError::Disconnected) => Ok(()),
                        other => Err(format!("get: {other:?}")),
                    }
                })?,
                Case::OsPipe => trial(case, "", |out| {
                    let mut rest = Vec::new();
                    match out.read_to_end(&mut rest) {
                        Ok(0) => Ok(()),
                        other => Err(format!("read: {other:?}")),
                    }
                })?,
            };
            times[i].push(t);
        }
    }

    println!(
        "peer SIGKILL → blocked receive fails, {trials} trials each, taking turns (µs); \
         death notice: {:?}",
        mpshm::death_notice()
    );
    common::header("receiver");
    for (case, t) in cases.iter().zip(times) {
        common::report(case.label(), t);
    }
    Ok(())
}

/// The child: attach to the far side, say so, and block until killed.
fn child(case: &str, name: &str) -> Result<()> {
    // Held until the process dies.
    let _conn;
    let _queue;
    match case {
        "pipe" => _conn = mpshm::Connection::open(name)?,
        "queue" => {
            let q = Queue::<u64>::open(name)?;
            q.put(1).map_err(|e| format!("put: {e}"))?;
            _queue = q;
        }
        "os-pipe" => {}
        other => return Err(format!("no case {other:?}").into()),
    }
    let mut out = std::io::stdout().lock();
    out.write_all(&[READY])?;
    out.flush()?;
    // Block until killed. Should the parent die first, its end of our stdin closes and we
    // exit: a peer death like any other.
    let _ = std::io::stdin().read(&mut [0u8]);
    std::process::exit(1);
}

thread_local! {
    /// Where the receiving thread tells the parent which task to watch for sleep.
    static ANNOUNCE: std::cell::RefCell<Option<mpsc::Sender<String>>> =
        const { std::cell::RefCell::new(None) };
}

/// In the receiving thread: tells the parent that the blocking receive starts now.
fn announce() {
    ANNOUNCE.with(|a| {
        if let Some(tx) = a.borrow_mut().take() {
            let task = std::fs::read_link("/proc/thread-self")
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let _ = tx.send(task);
        }
    });
}

/// One trial: starts the child, runs `receive` (which must fail because the peer died) on a
/// thread, kills the child once that thread sleeps, and times kill → return.
fn trial(
    case: Case,
    name: &str,
    receive: impl FnOnce(&mut ChildStdout) -> std::result::Result<(), String> + Send,
) -> Result<Duration> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--child", case.arg(), name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = child.stdout.take().ok_or("no stdout")?;
    let mut byte = [0u8];
    if out.read_exact(&mut byte).is_err() || byte[0] != READY {
        let _ = child.kill();
        let status = child.wait()?;
        return Err(format!("{case:?} child did not attach ({status})").into());
    }
    let (task_tx, task_rx) = mpsc::channel();
    let timing = std::thread::scope(|s| {
        let waiter = s.spawn(move || -> std::result::Result<Instant, String> {
            ANNOUNCE.with(|a| *a.borrow_mut() = Some(task_tx));
            if case != Case::Queue {
                announce();
            }
            receive(&mut out)?;
            Ok(Instant::now())
        });
        let run = || -> Result<Duration> {
            let task = task_rx.recv()?;
            // Asleep in `read` (0), `futex` (202) or `futex_waitv` (449).
            common::kill_when_asleep(&mut child, &task, &["0", "202", "449"], || {
                Ok(waiter.join().map_err(|_| "receiver panicked")??)
            })
        };
        let r = run();
        if r.is_err() {
            let _ = child.kill();
        }
        r
    });
    child.wait()?;
    timing
}
