//! Queue costs between two processes, next to an OS pipe and a Unix-domain stream socket
//! measured in the same run.
//!
//! ```text
//! cargo bench --bench queue
//! ```
//!
//! The child is this binary again, running one of the routines at the end of this file (the
//! child-process kit in `benches/common`); it reports `ready` on its stderr, and pipe and socket
//! ends are its stdin and stdout.
//!
//! - `round_trip/*`: an 8-byte counter to an echoing child and back (plus one, checked). mpshm
//!   uses a queue each way, every handle `set_spin(u32::MAX)` (`queue_spinning`) or
//!   `set_spin(0)` (`queue_parked`).
//! - `stream_64B/*`: the parent sends `iters` 64-byte messages (one `write` each for pipe and
//!   socket) to a child that reads them one at a time (exactly 64 bytes per read) and checks
//!   their sequence; the last message of each batch asks the child for an 8-byte
//!   acknowledgement, and the time runs until it arrives. Queues use the default spin.
//!
//! After Criterion's report, a summary gives each mean (over every sample, warm-up included) and
//! how many times faster than the pipe it is.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::Instant;

use criterion::{Criterion, Throughput};
use mpshm::prelude::*;
use mpshm::{Queue, SharedType};

mod common;

use common::child::{self, Child, Spawn};
use common::{Res, fdecho, or_exit, raw_stdio, read_record, record};

/// Marks the message that asks for an acknowledgement.
const ACK_ME: u64 = 1 << 63;
/// A 64-byte message: a tag (sequence, maybe [`ACK_ME`]), then filler.
type Msg = [u64; 8];

fn main() {
    let children = routines![qecho, qsink, fdecho, fdsink];
    common::run("queue", children, benches, |id| {
        format!("{}/pipe", id.split('/').next().unwrap_or_default())
    });
}

// ---- the benchmarks ------------------------------------------------------------------------

fn benches(c: &mut Criterion) -> Res<()> {
    let pid = std::process::id();

    let mut g = c.benchmark_group("round_trip");
    g.throughput(Throughput::Elements(1));
    for (id, via) in [
        ("queue_spinning", Via::Queue(u32::MAX)),
        ("queue_parked", Via::Queue(0)),
        ("pipe", Via::Pipe),
        ("socket", Via::Socket),
    ] {
        let mut link = Link::start(via, &format!("qbb-{pid}-{id}"), false)?;
        let full = format!("round_trip/{id}");
        g.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    link.round_trip().expect("round trip");
                }
                record(&full, start.elapsed(), iters)
            })
        });
        link.stop()?;
    }
    g.finish();

    let mut g = c.benchmark_group("stream_64B");
    g.throughput(Throughput::Bytes(64));
    for (id, via) in [
        ("queue", Via::Queue(KEEP_SPIN)),
        ("pipe", Via::Pipe),
        ("socket", Via::Socket),
    ] {
        let mut link = Link::start(via, &format!("qbb-{pid}-s{id}"), true)?;
        let full = format!("stream_64B/{id}");
        g.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                link.stream(iters).expect("stream");
                record(&full, start.elapsed(), iters)
            })
        });
        link.stop()?;
    }
    g.finish();
    Ok(())
}

/// Stands for "leave the handles' spin at the default".
const KEEP_SPIN: u32 = u32::MAX - 1;

#[derive(Clone, Copy)]
enum Via {
    /// A queue each way, with this spin.
    Queue(u32),
    Pipe,
    Socket,
}

/// The parent's end of a link to a child: a queue each way (8-byte messages to an echo child,
/// 64-byte ones to a sink), or a writer and a reader.
enum Ends {
    Echo(Queue<u64>, Queue<u64>),
    Sink(Queue<Msg>, Queue<u64>),
    Fds(Box<dyn Write>, Box<dyn Read>),
}

struct Link {
    ends: Ends,
    child: Child,
    /// The next sequence number.
    seq: u64,
}

impl Link {
    /// Starts a child that echoes (`sink == false`) or takes a stream (`sink == true`).
    fn start(via: Via, prefix: &str, sink: bool) -> Res<Link> {
        let fd_role = if sink { "fdsink" } else { "fdecho" };
        let (ends, mut child) = match via {
            Via::Queue(spin) => {
                let (a, b) = (format!("{prefix}-a"), format!("{prefix}-b"));
                let back = Queue::create(&b, 8)?;
                set_spin(&back, spin);
                let (ends, role) = if sink {
                    let there = Queue::create(&a, 1024)?;
                    set_spin(&there, spin);
                    (Ends::Sink(there, back), "qsink")
                } else {
                    let there = Queue::create(&a, 8)?;
                    set_spin(&there, spin);
                    (Ends::Echo(there, back), "qecho")
                };
                let child = Spawn::new(role, &[&a, &b, &spin.to_string()])?
                    .control_on_stderr()
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()?;
                (ends, child)
            }
            Via::Pipe => {
                let mut child = Spawn::new(fd_role, &[])?
                    .control_on_stderr()
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()?;
                let to = child.take_stdin().ok_or("no pipe to the child")?;
                let from = child.take_stdout().ok_or("no pipe from the child")?;
                (Ends::Fds(Box::new(to), Box::new(from)), child)
            }
            Via::Socket => {
                let (mine, theirs) = UnixStream::pair()?;
                let out = OwnedFd::from(theirs.try_clone()?);
                // The spawn takes the parent's copies of the child's socket ends with it.
                let child = Spawn::new(fd_role, &[])?
                    .control_on_stderr()
                    .stdin(OwnedFd::from(theirs))
                    .stdout(out)
                    .spawn()?;
                (
                    Ends::Fds(Box::new(mine.try_clone()?), Box::new(mine)),
                    child,
                )
            }
        };
        child.expect_ready()?;
        Ok(Link {
            ends,
            child,
            seq: 0,
        })
    }

    fn round_trip(&mut self) -> Res<()> {
        let v = self.seq;
        self.seq += 1;
        let got = match &mut self.ends {
            Ends::Echo(there, back) => {
                there.put(v).map_err(|e| e.to_string())?;
                back.get()?
            }
            Ends::Sink(..) => return Err("a stream link does not echo".into()),
            Ends::Fds(to, from) => {
                to.write_all(&v.to_ne_bytes())?;
                let mut buf = [0; 8];
                from.read_exact(&mut buf)?;
                u64::from_ne_bytes(buf)
            }
        };
        if got != v + 1 {
            return Err(format!("sent {v}, the echo came back as {got}").into());
        }
        Ok(())
    }

    /// Sends `n` messages, the last asking for an acknowledgement, and waits for it.
    fn stream(&mut self, n: u64) -> Res<()> {
        let n = n.max(1);
        let mut msg: Msg = [0; 8];
        let last = self.seq + n - 1;
        for seq in self.seq..=last {
            msg[0] = if seq == last { seq | ACK_ME } else { seq };
            match &mut self.ends {
                Ends::Sink(there, _) => there.put(msg).map_err(|e| e.to_string())?,
                Ends::Fds(to, _) => to.write_all(bytemuck::bytes_of(&msg))?,
                Ends::Echo(..) => return Err("an echo link takes no stream".into()),
            }
        }
        self.seq = last + 1;
        let ack = match &mut self.ends {
            Ends::Sink(_, back) | Ends::Echo(_, back) => back.get()?,
            Ends::Fds(_, from) => {
                let mut buf = [0; 8];
                from.read_exact(&mut buf)?;
                u64::from_ne_bytes(buf)
            }
        };
        if ack != last {
            return Err(format!("acknowledged {ack}, the last sent was {last}").into());
        }
        Ok(())
    }

    fn stop(self) -> Res<()> {
        match self.ends {
            // The child's get fails: it exits.
            Ends::Echo(there, _) => there.close(),
            Ends::Sink(there, _) => there.close(),
            Ends::Fds(to, from) => drop((to, from)), // end of file: the child exits
        }
        Ok(self.child.finish()?)
    }
}

fn set_spin<T: SharedType>(q: &Queue<T>, spin: u32) {
    if spin != KEEP_SPIN {
        q.set_spin(spin);
    }
}

// ---- child processes -----------------------------------------------------------------------

/// `qecho <there> <back> <spin>`: sends each number back, plus one.
fn qecho(args: &[String]) {
    or_exit((|| {
        let [a, b, spin] = args else {
            return Err("qecho takes three arguments".into());
        };
        let (there, back) = open_queues::<u64>(a, b, spin.parse()?)?;
        while let Ok(v) = there.get() {
            back.put(v + 1).map_err(|e| e.to_string())?;
        }
        Ok(())
    })());
}

/// `qsink <data> <ack> <spin>`: takes a stream, acknowledging where asked.
fn qsink(args: &[String]) {
    or_exit((|| {
        let [a, b, spin] = args else {
            return Err("qsink takes three arguments".into());
        };
        let (there, back) = open_queues::<Msg>(a, b, spin.parse()?)?;
        let mut sink = Sink::default();
        while let Ok(m) = there.get() {
            if let Some(ack) = sink.see(m[0])? {
                back.put(ack).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    })());
}

/// Takes a stream of 64-byte records from stdin, acknowledging on stdout where asked.
fn fdsink(_: &[String]) {
    or_exit((|| {
        let (mut input, mut output) = raw_stdio()?;
        child::ready();
        let mut sink = Sink::default();
        let mut msg: Msg = [0; 8];
        while read_record(&mut input, bytemuck::bytes_of_mut(&mut msg))? {
            if let Some(ack) = sink.see(msg[0])? {
                output.write_all(&ack.to_ne_bytes())?;
            }
        }
        Ok(())
    })());
}

fn open_queues<T: SharedType>(a: &str, b: &str, spin: u32) -> Res<(Queue<T>, Queue<u64>)> {
    let (there, back) = (Queue::open(a)?, Queue::open(b)?);
    set_spin(&there, spin);
    set_spin(&back, spin);
    child::ready();
    Ok((there, back))
}

/// The stream child's check: sequence numbers arrive in order, without gaps.
#[derive(Default)]
struct Sink {
    next: u64,
}

impl Sink {
    /// Checks one tag; the sequence number to acknowledge, if it asks for one.
    fn see(&mut self, tag: u64) -> Res<Option<u64>> {
        let seq = tag & !ACK_ME;
        if seq != self.next {
            return Err(format!("got sequence {seq}, expected {}", self.next).into());
        }
        self.next += 1;
        Ok((tag & ACK_ME != 0).then_some(seq))
    }
}
