//! How fast a blocked call learns that its peer was killed.
//!
//! - **Peer death**: a child attaches to the far side and blocks reading its stdin: it opens the
//!   far end of an mpshm `Pipe` (the end the previous child died holding: a restarted peer
//!   rejoins), or opens a `Queue` and puts one message (which attaches it as the queue's only
//!   producer), or holds the far end of an OS pipe or Unix socket as its stdout. A thread here
//!   blocks in `recv_bytes`, `get` or `read`; once it is asleep in the kernel (`/proc` says so)
//!   the child is killed with `SIGKILL`, and the time runs from just before the kill until the
//!   receive fails with `Disconnected` (end of file for the OS pipe and the socket).
//! - **Lock owner death**: a child takes a `Lock` and blocks; a thread here sleeps in
//!   `acquire`; the time runs from the kill until `acquire` returns `OwnerDied`. And the same
//!   `acquire` made only after the dead child was reaped. The floor of each, in the same run:
//!   a robust process-shared pthread mutex in plain shared memory (`c/robust_counter.c`),
//!   whose holder is killed, timed until the waiter's `pthread_mutex_lock` returns
//!   `EOWNERDEAD` (the mutex then made consistent and released, as the `Lock` row marks its
//!   guard consistent and drops it).
//! - **Semaphore holder and barrier party death**: a child holds the only permit of a
//!   `Semaphore`, or has passed a round of a `Barrier` of two; a thread here sleeps in
//!   `acquire` or in the next `wait`; the time runs from the kill until `acquire` returns the
//!   dead holder's permit, or `wait` fails with `PartyDied`. The floor is the lock's: the
//!   robust pthread mutex, blocked at the kill.
//!
//! Anything but the expected error stops the run.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mpshm::prelude::*;
use mpshm::{
    Barrier, BarrierError, BreakCause, GetError, Lock, LockError, Pipe, Queue, RecvError, Semaphore,
};

use super::floor::CCounter;
use super::stats::Hist;
use super::{Case, Ctx, Refs, Sample, Side, Unit};
use crate::kit::{Child, Res, report};

/// Kills per case and round (times `--scale`).
const KILLS: u64 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    Pipe,
    Queue,
    OsPipe,
    Socket,
}

impl Peer {
    fn arg(self) -> &'static str {
        match self {
            Peer::Pipe => "pipe",
            Peer::Queue => "queue",
            Peer::OsPipe => "os-pipe",
            Peer::Socket => "socket",
        }
    }
}

pub fn cases() -> Vec<Case> {
    let section = "peer SIGKILL → blocked receive fails".to_owned();
    let refs = || Refs {
        pipe: Some("death/os-pipe".into()),
        socket: Some("death/socket".into()),
        ..Refs::default()
    };
    let mut out = Vec::new();
    for (peer, label, side) in [
        (Peer::Pipe, "Pipe recv → Disconnected", Side::Mpshm),
        (Peer::Queue, "Queue get → Disconnected", Side::Mpshm),
        (Peer::OsPipe, "OS pipe read → end of file", Side::Os),
        (Peer::Socket, "Unix socket read → end of file", Side::Os),
    ] {
        out.push(Case::new(
            "death",
            &section,
            &format!("death/{}", peer.arg()),
            label,
            side,
            Unit::Time,
            if side == Side::Mpshm {
                refs()
            } else {
                Refs::default()
            },
            move |ctx| peer_death(ctx, peer),
        ));
    }
    let section = "Lock holder SIGKILL → acquire gets OwnerDied".to_owned();
    for (reaped, when) in [(false, "blocked"), (true, "reaped")] {
        let floor = format!("death/lock-floor-{when}");
        let (label, floor_label) = if reaped {
            (
                "acquire after the holder was reaped",
                "floor: pthread_mutex_lock after reaping (C)",
            )
        } else {
            (
                "acquire blocked at the kill",
                "floor: pthread_mutex_lock, blocked (C)",
            )
        };
        out.push(Case::new(
            "death",
            &section,
            &format!("death/lock-{when}"),
            label,
            Side::Mpshm,
            Unit::Time,
            Refs {
                floor: Some(floor.clone()),
                ..Refs::default()
            },
            move |ctx| owner_death(ctx, reaped, Holder::Mpshm),
        ));
        out.push(Case::new(
            "death",
            &section,
            &floor,
            floor_label,
            Side::Floor,
            Unit::Time,
            Refs::default(),
            move |ctx| owner_death(ctx, reaped, Holder::C),
        ));
    }
    let section = "Semaphore holder / barrier party SIGKILL → the waiter wakes".to_owned();
    for (kind, label) in [
        (
            Sync::Semaphore,
            "Semaphore acquire → the dead holder's permit",
        ),
        (Sync::Barrier, "Barrier wait → Broken(PartyDied)"),
    ] {
        out.push(Case::new(
            "death",
            &section,
            &format!("death/{}", kind.arg()),
            label,
            Side::Mpshm,
            Unit::Time,
            Refs {
                floor: Some("death/lock-floor-blocked".into()),
                ..Refs::default()
            },
            move |ctx| sync_death(ctx, kind),
        ));
    }
    out
}

/// Whether the thread at `/proc/<task>` sleeps in the kernel (state `S`; on x86_64, also in
/// one of the system calls numbered `calls`).
fn asleep_in(task: &str, calls: &[&str]) -> Res<bool> {
    let stat = std::fs::read_to_string(format!("/proc/{task}/stat"))?;
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_ascii_whitespace().next());
    if state != Some("S") {
        return Ok(false);
    }
    if !cfg!(target_arch = "x86_64") {
        return Ok(true);
    }
    let syscall = std::fs::read_to_string(format!("/proc/{task}/syscall"))?;
    let call = syscall.split_ascii_whitespace().next().unwrap_or("");
    Ok(calls.contains(&call))
}

/// The blocking calls a receiver sleeps in (x86_64 numbers): `read`, `recvfrom`, `futex`,
/// `futex_waitv`.
const SLEEPS: &[&str] = &["0", "45", "202", "449"];

/// Runs `receive` on a thread; once that thread (after it says where it is, through the sender
/// it is given) sleeps in the kernel, kills `kid`; the time from the kill until `receive`
/// returned.
fn kill_when_asleep(
    kid: &mut Child,
    receive: impl FnOnce(mpsc::Sender<String>) -> Result<(), String> + Send,
) -> Res<Duration> {
    let (task_tx, task_rx) = mpsc::channel();
    std::thread::scope(|s| {
        let waiter = s.spawn(move || -> Result<Instant, String> {
            receive(task_tx)?;
            Ok(Instant::now())
        });
        let run = || -> Res<Duration> {
            let task = task_rx.recv()?;
            let start = Instant::now();
            while !asleep_in(&task, SLEEPS)? {
                if start.elapsed() > Duration::from_secs(10) {
                    return Err(format!("{task} never slept").into());
                }
                std::thread::yield_now();
            }
            let killed = Instant::now();
            kid.try_kill()?;
            let returned = waiter.join().map_err(|_| "the receiver panicked")??;
            Ok(returned - killed)
        };
        let r = run();
        if r.is_err() {
            // The receiver may still be asleep on a live peer: kill it so the scope can end.
            let _ = kid.try_kill();
        }
        r
    })
}

/// Tells the parent which thread to watch: this one, from now on.
fn announce(tx: &mpsc::Sender<String>) {
    let task = std::fs::read_link("/proc/thread-self")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let _ = tx.send(task);
}

fn peer_death(ctx: &mut Ctx, peer: Peer) -> Res<Sample> {
    let kills = ctx.count(KILLS);
    let mut hist = Hist::default();
    let mut times = Vec::new();
    // One pipe or queue for the round: each child attaches where the last one died.
    let name = ctx.name();
    let pipe = match peer {
        Peer::Pipe => {
            let (mine, far) = Pipe::create(&name)?;
            far.release();
            Some(mine)
        }
        _ => None,
    };
    let queue = match peer {
        Peer::Queue => Some(Queue::<u64>::create(&name, 4)?),
        _ => None,
    };
    for _ in 0..kills {
        let role = format!("hold {} {name}", peer.arg());
        let t = match peer {
            Peer::Pipe | Peer::Queue => {
                let mut kid = ctx.spawn(role, Stdio::piped(), Stdio::null())?;
                kid.expect("ready")?;
                kill_when_asleep(&mut kid, |tx| {
                    if let Some(conn) = &pipe {
                        announce(&tx);
                        match conn.recv_bytes() {
                            Err(RecvError::Disconnected) => Ok(()),
                            other => Err(format!("recv_bytes: {other:?}")),
                        }
                    } else {
                        let q = queue.as_ref().ok_or("no queue")?;
                        // The child's message first, then the wait for the next.
                        match q.get() {
                            Ok(1) => {}
                            other => return Err(format!("get: {other:?}")),
                        }
                        announce(&tx);
                        match q.get() {
                            Err(GetError::Disconnected) => Ok(()),
                            other => Err(format!("get: {other:?}")),
                        }
                    }
                })?
            }
            Peer::OsPipe | Peer::Socket => {
                let (mut kid, mut from): (Child, Box<dyn Read + Send>) = if peer == Peer::OsPipe {
                    let mut kid = ctx.spawn(role, Stdio::piped(), Stdio::piped())?;
                    let from = kid.take_stdout().ok_or("no pipe from the child")?;
                    (kid, Box::new(from))
                } else {
                    let (mine, theirs) = UnixStream::pair()?;
                    let kid =
                        ctx.spawn(role, Stdio::piped(), Stdio::from(OwnedFd::from(theirs)))?;
                    (kid, Box::new(mine))
                };
                kid.expect("ready")?;
                kill_when_asleep(&mut kid, move |tx| {
                    announce(&tx);
                    let mut byte = [0];
                    loop {
                        match from.read(&mut byte) {
                            Ok(0) => return Ok(()),
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            other => return Err(format!("read: {other:?}")),
                        }
                    }
                })?
            }
        };
        let ns = t.as_nanos() as f64;
        hist.add(ns);
        times.push(ns);
    }
    Ok(Sample::of_times(&times, hist))
}

/// Whose lock the owner-death case kills the holder of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holder {
    /// An mpshm `Lock`.
    Mpshm,
    /// The floor: a robust pthread mutex in a plain shared page.
    C,
}

fn owner_death(ctx: &mut Ctx, reaped: bool, holder: Holder) -> Res<Sample> {
    let kills = ctx.count(KILLS);
    let (lock, floor, name) = match holder {
        Holder::Mpshm => {
            let name = ctx.name();
            (Some(Lock::create(&name, ())?), None, name)
        }
        Holder::C => {
            let floor = CCounter::create()?;
            let name = floor.page.name().to_owned();
            (None, Some(floor), name)
        }
    };
    let what = match holder {
        Holder::Mpshm => "lock",
        Holder::C => "c-lock",
    };
    let mut hist = Hist::default();
    let mut times = Vec::new();
    // Takes the lock whose holder was killed: `Ok` once the death was reported (and repaired).
    let take = || -> Result<(), String> {
        if let Some(floor) = &floor {
            return floor.take_from_dead();
        }
        match lock.as_ref().ok_or("no lock")?.acquire() {
            Err(LockError::OwnerDied(guard)) => {
                guard.mark_consistent();
                Ok(())
            }
            Ok(_) => Err("acquire succeeded cleanly: the owner's death went unreported".to_owned()),
            Err(e) => Err(format!("acquire failed: {e}")),
        }
    };
    for _ in 0..kills {
        let mut kid = ctx.spawn(format!("hold {what} {name}"), Stdio::piped(), Stdio::null())?;
        kid.expect("ready")?;
        let t = if reaped {
            kid.try_kill()?;
            let start = Instant::now();
            take()?;
            start.elapsed()
        } else {
            kill_when_asleep(&mut kid, |tx| {
                announce(&tx);
                take()
            })?
        };
        let ns = t.as_nanos() as f64;
        hist.add(ns);
        times.push(ns);
    }
    Ok(Sample::of_times(&times, hist))
}

/// Which primitive of the synchronisation family the death case kills a holder of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sync {
    Semaphore,
    Barrier,
}

impl Sync {
    fn arg(self) -> &'static str {
        match self {
            Sync::Semaphore => "semaphore",
            Sync::Barrier => "barrier",
        }
    }
}

fn sync_death(ctx: &mut Ctx, kind: Sync) -> Res<Sample> {
    let kills = ctx.count(KILLS);
    let name = ctx.name();
    let sem = match kind {
        Sync::Semaphore => Some(Semaphore::create(&name, 1)?),
        Sync::Barrier => None,
    };
    let barrier = match kind {
        Sync::Barrier => Some(Barrier::create(&name, 2)?),
        Sync::Semaphore => None,
    };
    let mut hist = Hist::default();
    let mut times = Vec::new();
    for _ in 0..kills {
        let role = format!("hold {} {name}", kind.arg());
        let mut kid = ctx.spawn(role, Stdio::piped(), Stdio::null())?;
        if let Some(b) = &barrier {
            // The child's first round, with this process: it is a party from now on.
            b.wait().map_err(|e| format!("first round: {e}"))?;
        }
        kid.expect("ready")?;
        let t = kill_when_asleep(&mut kid, |tx| {
            announce(&tx);
            if let Some(sem) = &sem {
                let guard = sem.acquire().map_err(|e| format!("acquire: {e}"))?;
                drop(guard);
                return Ok(());
            }
            match barrier.as_ref().ok_or("no barrier")?.wait() {
                Err(BarrierError::Broken(BreakCause::PartyDied { .. })) => Ok(()),
                other => Err(format!("wait: {other:?}")),
            }
        })?;
        if let Some(b) = &barrier {
            b.reset()?;
        }
        let ns = t.as_nanos() as f64;
        hist.add(ns);
        times.push(ns);
    }
    Ok(Sample::of_times(&times, hist))
}

/// Runs a peer child's role; `None` if `words` is none of them.
pub fn child(words: &[&str]) -> Option<Res<()>> {
    let run = |what: &str, name: &str| -> Res<()> {
        // Held until the process is killed.
        let _pipe;
        let _queue;
        let _lock;
        let _guard;
        let _floor;
        let _sem;
        let _permit;
        let _barrier;
        match what {
            "pipe" => _pipe = mpshm::Connection::open(name)?,
            "queue" => {
                let q = Queue::<u64>::open(name)?;
                q.put(1).map_err(|e| format!("put: {e}"))?;
                _queue = q;
            }
            "lock" => {
                _lock = Lock::open(name)?;
                _guard = _lock.acquire().map_err(|e| format!("acquire: {e}"))?;
            }
            "c-lock" => {
                let floor = CCounter::open(name)?;
                floor.hold()?;
                _floor = floor;
            }
            "semaphore" => {
                _sem = Semaphore::open(name)?;
                _permit = _sem.acquire().map_err(|e| format!("acquire: {e}"))?;
            }
            "barrier" => {
                _barrier = Barrier::open(name)?;
                _barrier.wait().map_err(|e| format!("wait: {e}"))?;
            }
            "os-pipe" | "socket" => {}
            other => return Err(format!("nothing to hold called {other:?}").into()),
        }
        report("ready")?;
        // Block until killed. Should the parent die first, our stdin closes and we exit: a
        // peer death like any other.
        let _ = std::io::stdin().read(&mut [0u8]);
        std::process::exit(1);
    };
    Some(match *words {
        ["hold", what, name] => run(what, name),
        _ => return None,
    })
}
