//! Pipe costs between two processes, next to an OS pipe and a Unix-domain stream socket
//! measured in the same run.
//!
//! ```text
//! cargo bench --bench pipe
//! ```
//!
//! The child is this binary again, running one of the routines at the end of this file (the
//! child-process kit in `benches/common`); it reports `ready` on its stderr. The parent creates the mpshm pipe and gives the
//! child the other end by name; OS pipe and socket ends are the child's stdin and stdout.
//!
//! - `round_trip/*`: an 8-byte counter to an echoing child and back (plus one, checked). mpshm
//!   uses `send::<u64>` / `recv::<u64>` with both ends `set_spin(u32::MAX)` (`mpshm_spinning`) or
//!   `set_spin(0)` (`mpshm_parked`).
//! - `stream_64B/*`, `stream_1MiB/*`: the parent sends `iters` messages to a child that receives
//!   them one at a time and checks their length, sequence and last word; the last message of each
//!   batch asks the child for an 8-byte acknowledgement, and the time runs until it arrives.
//!   mpshm sends each message with `send_bytes` (default spin) and the child receives with
//!   `recv_bytes_into`. OS pipe and socket write each 64-byte message as one `write` read back
//!   exactly; a 1 MiB message is an 8-byte length and the message in one `write`, read fully.
//!
//! After Criterion's report, a summary gives each mean (over every sample, warm-up included) and
//! how many times faster than the OS pipe it is.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::Instant;

use criterion::{Criterion, Throughput};
use mpshm::prelude::*;
use mpshm::{Connection, Pipe, RecvError};

mod common;

use common::child::{self, Child};
use common::{Res, fdecho, or_exit, raw_stdio, read_record, record, spawn_role};
/// Marks the message that asks for an acknowledgement.
const ACK_ME: u64 = 1 << 63;
/// The large message size; OS pipe and socket frame it with a length.
const BIG: usize = 1 << 20;

fn main() {
    let children = routines![cecho, csink, fdecho, fdsink];
    common::run("pipe", children, benches, |id| {
        format!("{}/os_pipe", id.split('/').next().unwrap_or_default())
    });
}

// ---- the benchmarks ------------------------------------------------------------------------

fn benches(c: &mut Criterion) -> Res<()> {
    let pid = std::process::id();

    let mut g = c.benchmark_group("round_trip");
    g.throughput(Throughput::Elements(1));
    for (id, via) in [
        ("mpshm_spinning", Via::Mpshm(u32::MAX)),
        ("mpshm_parked", Via::Mpshm(0)),
        ("os_pipe", Via::Pipe),
        ("socket", Via::Socket),
    ] {
        let mut link = Link::start(via, &format!("pbb-{pid}-{id}"), None)?;
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

    for (group, size) in [("stream_64B", 64), ("stream_1MiB", BIG)] {
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Bytes(size as u64));
        if size == BIG {
            g.sample_size(10);
        }
        for (id, via) in [
            ("mpshm", Via::Mpshm(KEEP_SPIN)),
            ("os_pipe", Via::Pipe),
            ("socket", Via::Socket),
        ] {
            let mut link = Link::start(via, &format!("pbb-{pid}-{group}-{id}"), Some(size))?;
            let full = format!("{group}/{id}");
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
    }
    Ok(())
}

/// Stands for "leave the connections' spin at the default".
const KEEP_SPIN: u32 = u32::MAX - 1;

#[derive(Clone, Copy)]
enum Via {
    /// An mpshm pipe, with this spin.
    Mpshm(u32),
    Pipe,
    Socket,
}

/// The parent's end of a link to a child.
enum Ends {
    Mpshm(Connection),
    Fds(Box<dyn Write>, Box<dyn Read>),
}

struct Link {
    ends: Ends,
    child: Child,
    /// The stream's message size (`None`: an echo link).
    size: Option<usize>,
    /// The message being sent; the OS pipe and socket frame a large one with its length.
    msg: Vec<u8>,
    /// The next sequence number.
    seq: u64,
}

impl Link {
    /// Starts a child that echoes (`size == None`) or takes a stream of `size`-byte messages.
    fn start(via: Via, name: &str, size: Option<usize>) -> Res<Link> {
        let fd_role = match size {
            Some(n) => format!("fdsink {n}"),
            None => "fdecho".to_owned(),
        };
        let (ends, mut child) = match via {
            Via::Mpshm(spin) => {
                let (mine, theirs) = Pipe::create(name)?;
                theirs.release();
                set_spin(&mine, spin);
                let role = match size {
                    Some(n) => format!("csink {name} {n}"),
                    None => format!("cecho {name} {spin}"),
                };
                let child = spawn_role(&role)?
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()?;
                (Ends::Mpshm(mine), child)
            }
            Via::Pipe => {
                let mut child = spawn_role(&fd_role)?
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
                let child = spawn_role(&fd_role)?
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
        let framed = matches!(ends, Ends::Fds(..)) && size.is_some_and(|n| n >= BIG);
        let mut msg = vec![0u8; size.unwrap_or(0) + if framed { 8 } else { 0 }];
        if framed {
            msg[..8].copy_from_slice(&(BIG as u64).to_ne_bytes());
        }
        Ok(Link {
            ends,
            child,
            size,
            msg,
            seq: 0,
        })
    }

    fn round_trip(&mut self) -> Res<()> {
        let v = self.seq;
        self.seq += 1;
        let got = match &mut self.ends {
            Ends::Mpshm(conn) => {
                conn.send(&v)?;
                conn.recv::<u64>()?
            }
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
        let size = self.size.ok_or("an echo link takes no stream")?;
        let n = n.max(1);
        let last = self.seq + n - 1;
        for seq in self.seq..=last {
            let tag = if seq == last { seq | ACK_ME } else { seq };
            let body = self.msg.len() - size;
            stamp(&mut self.msg[body..], tag);
            match &mut self.ends {
                Ends::Mpshm(conn) => conn.send_bytes(&self.msg)?,
                Ends::Fds(to, _) => to.write_all(&self.msg)?,
            }
        }
        self.seq = last + 1;
        let ack = match &mut self.ends {
            Ends::Mpshm(conn) => conn.recv::<u64>()?,
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
        // The child's receive fails (Disconnected, end of file): it exits.
        drop(self.ends);
        Ok(self.child.finish()?)
    }
}

fn set_spin(conn: &Connection, spin: u32) {
    if spin != KEEP_SPIN {
        conn.set_spin(spin);
    }
}

/// Writes `tag` into the first 8 bytes of `msg` and its complement into the last 8.
fn stamp(msg: &mut [u8], tag: u64) {
    let n = msg.len();
    msg[..8].copy_from_slice(&tag.to_ne_bytes());
    msg[n - 8..].copy_from_slice(&(!tag).to_ne_bytes());
}

// ---- child processes -----------------------------------------------------------------------

/// `cecho <name> <spin>`: receives numbers on the pipe and sends each back, plus one.
fn cecho(args: &[String]) {
    or_exit((|| {
        let [name, spin] = args else {
            return Err("cecho takes a pipe name and a spin".into());
        };
        let conn = Connection::open(name)?;
        set_spin(&conn, spin.parse()?);
        child::ready();
        loop {
            match conn.recv::<u64>() {
                Ok(v) => conn.send(&(v + 1))?,
                Err(RecvError::Disconnected) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    })());
}

/// `csink <name> <size>`: receives a stream of `size`-byte messages on the pipe.
fn csink(args: &[String]) {
    or_exit((|| {
        let [name, size] = args else {
            return Err("csink takes a pipe name and a size".into());
        };
        let conn = Connection::open(name)?;
        child::ready();
        let mut sink = Sink::default();
        let mut buf = vec![0u8; size.parse()?];
        loop {
            match conn.recv_bytes_into(&mut buf) {
                Ok(n) if n == buf.len() => {
                    if let Some(ack) = sink.see(&buf)? {
                        conn.send(&ack)?;
                    }
                }
                Ok(n) => return Err(format!("a {n}-byte message").into()),
                Err(RecvError::Disconnected) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    })());
}

/// `fdsink <size>`: the same as `csink`, over stdin and stdout.
fn fdsink(args: &[String]) {
    or_exit((|| {
        let [size] = args else {
            return Err("fdsink takes a size".into());
        };
        let (mut input, mut output) = raw_stdio()?;
        child::ready();
        let size: usize = size.parse()?;
        let mut sink = Sink::default();
        let mut buf = vec![0u8; size];
        loop {
            if size >= BIG {
                let mut len = [0; 8];
                if !read_record(&mut input, &mut len)? {
                    return Ok(());
                }
                if u64::from_ne_bytes(len) != size as u64 {
                    return Err(format!("a {}-byte message", u64::from_ne_bytes(len)).into());
                }
            }
            if !read_record(&mut input, &mut buf)? {
                return Ok(());
            }
            if let Some(ack) = sink.see(&buf)? {
                output.write_all(&ack.to_ne_bytes())?;
            }
        }
    })());
}

/// The stream child's check: sequence numbers arrive in order, without gaps, and the last word
/// of each message is the complement of its tag.
#[derive(Default)]
struct Sink {
    next: u64,
}

impl Sink {
    /// Checks one message; the sequence number to acknowledge, if it asks for one.
    fn see(&mut self, msg: &[u8]) -> Res<Option<u64>> {
        let word = |at: usize| u64::from_ne_bytes(msg[at..at + 8].try_into().expect("8 bytes"));
        let (tag, tail) = (word(0), word(msg.len() - 8));
        if tail != !tag {
            return Err(format!("torn message: head {tag:#x}, tail {tail:#x}").into());
        }
        let seq = tag & !ACK_ME;
        if seq != self.next {
            return Err(format!("got sequence {seq}, expected {}", self.next).into());
        }
        self.next += 1;
        Ok((tag & ACK_ME != 0).then_some(seq))
    }
}
