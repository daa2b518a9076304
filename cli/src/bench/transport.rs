//! Round trips and streams between processes: mpshm's [`Queue`], [`SpscQueue`] and [`Pipe`]
//! beside an OS pipe, a Unix-domain stream socket and the floor (`floor.rs`).
//!
//! - **Round trip**: the parent sends an 8-byte counter, an echoing child sends back the counter
//!   plus one, the parent checks it. mpshm uses two queues (there and back), two SPSC queues, or
//!   one pipe, every handle `set_spin(u32::MAX)` (spinning) or `set_spin(0)` (parked: the
//!   receiver sleeps in the kernel each time); the OS pipe case uses the child's stdin and
//!   stdout, the socket case one `UnixStream::pair()`. Every round trip is timed on its own;
//!   a round's figure is their median.
//! - **Stream**: one producer child sends for a fixed time, then stops (a queue's producer
//!   leaves only once the parent has heard from every producer, so that none detaches before
//!   all have attached); one consumer child takes until the queue is closed or the pipe reports
//!   the end. The time runs from the start
//!   byte until the consumer has reported, so it includes draining what was still queued. Each
//!   message carries `producer << 48 | sequence` in its first 8 bytes and the complement in its
//!   last 8 (messages of 256 B and more also a pattern over their body: every 8th message word
//!   by word, the others at every 64th word); the consumer checks all of it, checks that each
//!   producer's sequence rises without a gap (without a duplicate, with two consumers), and
//!   reports a count and a sum that the parent matches against what the producers sent. It also
//!   times each batch of 64 KiB of messages, for the tail. An OS pipe or socket message is one
//!   `write` of the whole message, read back with reads of exactly its remaining bytes. A
//!   `Queue` or `SpscQueue` is created for 1 MiB of messages (16 to 1024 of them); the mpshm
//!   `Pipe` is 512 chunks of up to 1008 B each way, whatever the size.
//! - **2→2** (`--only mpmc`): two producers and two consumers on one `Queue`, beside two
//!   independent OS pipes (sockets) at once.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use mpshm::prelude::*;
use mpshm::{Pipe, Queue, RecvError, SpscQueue};

use super::floor;
use super::stats::Hist;
use super::{Arg, Case, Ctx, Refs, Sample, Side, Unit};
use crate::kit::{Child, Res, raw_stdin, raw_stdout, read_record, report, wait_eof, wait_go};

/// The message sizes a `Queue` or `SpscQueue` stream can use (their messages are `[u8; N]`).
pub const TYPED_SIZES: [usize; 9] = [8, 64, 256, 1024, 4096, 16384, 65536, 262_144, 1 << 20];
/// At most this many producers (their id is the top 16 bits of the tag).
const MAX_PRODUCERS: usize = 4;
const SEQ_MASK: u64 = (1 << 48) - 1;
/// Bytes of messages per timed batch of a consumer.
const BATCH_BYTES: usize = 64 << 10;

/// Runs `$f::<N>(args)` for the message size `$size`, one of [`TYPED_SIZES`].
macro_rules! sized {
    ($size:expr, $f:ident($($arg:expr),*)) => {
        match $size {
            8 => $f::<8>($($arg),*),
            64 => $f::<64>($($arg),*),
            256 => $f::<256>($($arg),*),
            1024 => $f::<1024>($($arg),*),
            4096 => $f::<4096>($($arg),*),
            16384 => $f::<16384>($($arg),*),
            65536 => $f::<65536>($($arg),*),
            262_144 => $f::<262_144>($($arg),*),
            1_048_576 => $f::<1_048_576>($($arg),*),
            n => Err(format!("no typed queue of {n}-byte messages here (sizes: {TYPED_SIZES:?})").into()),
        }
    };
}

/// How a case's messages travel.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Via {
    Queue,
    Spsc,
    /// An mpshm [`Pipe`]: a `Connection` at each end.
    Conn,
    /// An OS pipe.
    OsPipe,
    Socket,
    /// The floor: a minimal shared-memory SPSC ring (streams), or a ping-pong on one shared word
    /// (round trips).
    Floor,
}

/// `8 B`, `4 KiB`, `1 MiB`.
pub fn size_name(size: usize) -> String {
    if size >= 1 << 20 && size.is_multiple_of(1 << 20) {
        format!("{} MiB", size >> 20)
    } else if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// The queue capacity for `size`-byte messages: 1 MiB of messages, 16 to 1024 of them.
pub fn capacity(size: usize) -> usize {
    ((1 << 20) / size.max(1)).clamp(16, 1024)
}

/// The round-trip and stream cases, with the Python rows when `python` says so.
pub fn cases(sizes: &[usize], groups: &[&str], python: bool) -> Vec<Case> {
    let mut out = Vec::new();
    if groups.contains(&"rt") {
        let section = "round trip, 8 B".to_owned();
        let refs = |floor: &str, py: &str| Refs {
            floor: Some(format!("rt/floor-{floor}")),
            pipe: Some("rt/os-pipe".into()),
            socket: Some("rt/socket".into()),
            python: python.then(|| format!("rt/python-{py}")),
        };
        for (via, name, py) in [
            (Via::Queue, "Queue", "queue"),
            (Via::Spsc, "SpscQueue", "queue"),
            (Via::Conn, "Pipe", "pipe"),
        ] {
            for (spin, mode, floor) in [(u32::MAX, "spinning", "spin"), (0, "parked", "futex")] {
                out.push(Case::new(
                    "rt",
                    &section,
                    &format!("rt/{}-{mode}", name.to_lowercase()),
                    &format!("{name}, {mode}"),
                    Side::Mpshm,
                    Unit::Time,
                    refs(floor, py),
                    move |ctx| round_trip(ctx, via, spin),
                ));
            }
        }
        for (mode, label) in [
            (floor::PingPong::Spin, "floor: a shared word, both spinning"),
            (
                floor::PingPong::Futex,
                "floor: a shared word, futex wait/wake",
            ),
        ] {
            out.push(Case::new(
                "rt",
                &section,
                &format!("rt/floor-{}", mode.arg()),
                label,
                Side::Floor,
                Unit::Time,
                Refs::default(),
                move |ctx| floor::ping_pong(ctx, mode),
            ));
        }
        for (via, id, label) in [
            (Via::OsPipe, "os-pipe", "OS pipe"),
            (Via::Socket, "socket", "Unix socket"),
        ] {
            out.push(Case::new(
                "rt",
                &section,
                &format!("rt/{id}"),
                label,
                Side::Os,
                Unit::Time,
                Refs::default(),
                move |ctx| round_trip(ctx, via, 0),
            ));
        }
        if python {
            for (what, label) in [("queue", "Python mp.Queue"), ("pipe", "Python mp.Pipe")] {
                out.push(Case::python(
                    "rt",
                    &section,
                    &format!("rt/python-{what}"),
                    label,
                    Unit::Time,
                    format!("{what}_rt"),
                    Arg::Secs,
                ));
            }
        }
    }
    if groups.contains(&"stream") {
        for &size in sizes {
            let section = format!("stream, {}", size_name(size));
            let unit = Unit::Rate {
                bytes: Some(size as u64),
            };
            let id = |what: &str| format!("stream-{size}/{what}");
            let refs = |py: &str| Refs {
                floor: Some(id("floor")),
                pipe: Some(id("os-pipe")),
                socket: Some(id("socket")),
                python: python.then(|| id(&format!("python-{py}"))),
            };
            for (via, name, py) in [
                (Via::Queue, "Queue", "queue"),
                (Via::Spsc, "SpscQueue", "queue"),
                (Via::Conn, "Pipe", "pipe"),
            ] {
                out.push(Case::new(
                    "stream",
                    &section,
                    &id(&name.to_lowercase()),
                    name,
                    Side::Mpshm,
                    unit,
                    refs(py),
                    move |ctx| stream(ctx, via, size, 1),
                ));
            }
            for (via, what, label, side) in [
                (
                    Via::Floor,
                    "floor",
                    "floor: a minimal SPSC ring",
                    Side::Floor,
                ),
                (Via::OsPipe, "os-pipe", "OS pipe", Side::Os),
                (Via::Socket, "socket", "Unix socket", Side::Os),
            ] {
                out.push(Case::new(
                    "stream",
                    &section,
                    &id(what),
                    label,
                    side,
                    unit,
                    Refs::default(),
                    move |ctx| stream(ctx, via, size, 1),
                ));
            }
            if python {
                for (what, label) in [
                    ("queue", "Python mp.Queue"),
                    ("pipe", "Python mp.Pipe (send_bytes)"),
                ] {
                    out.push(Case::python(
                        "stream",
                        &section,
                        &id(&format!("python-{what}")),
                        label,
                        unit,
                        format!("{what}_stream {size}"),
                        Arg::Secs,
                    ));
                }
            }
        }
    }
    if groups.contains(&"mpmc") {
        let section = "stream, 64 B, 2 producers → 2 consumers".to_owned();
        let unit = Unit::Rate { bytes: Some(64) };
        out.push(Case::new(
            "mpmc",
            &section,
            "mpmc/queue",
            "Queue",
            Side::Mpshm,
            unit,
            Refs {
                pipe: Some("mpmc/os-pipe".into()),
                socket: Some("mpmc/socket".into()),
                ..Refs::default()
            },
            |ctx| stream(ctx, Via::Queue, 64, 2),
        ));
        for (via, what, label) in [
            (Via::OsPipe, "os-pipe", "two OS pipes"),
            (Via::Socket, "socket", "two Unix sockets"),
        ] {
            out.push(Case::new(
                "mpmc",
                &section,
                &format!("mpmc/{what}"),
                label,
                Side::Os,
                unit,
                Refs::default(),
                move |ctx| stream(ctx, via, 64, 2),
            ));
        }
    }
    out
}

// ---- round trips ---------------------------------------------------------------------------

/// Times `op` (given a running counter) call by call for `secs`, after a warm-up of a tenth of
/// that: the round's median, and every call in the histogram.
pub fn time_ops(secs: f64, mut op: impl FnMut(u64) -> Res<()>) -> Res<Sample> {
    let mut i = 0u64;
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs * 0.1 || i < 10 {
        op(i)?;
        i += 1;
    }
    let mut hist = Hist::default();
    let end = Instant::now() + Duration::from_secs_f64(secs * 0.9);
    let mut t0 = Instant::now();
    loop {
        op(i)?;
        i += 1;
        let t1 = Instant::now();
        hist.add((t1 - t0).as_nanos() as f64);
        t0 = t1;
        if t1 >= end {
            break;
        }
    }
    Ok(Sample::timed(hist))
}

/// One round of 8-byte round trips to an echoing child over `via`.
fn round_trip(ctx: &mut Ctx, via: Via, spin: u32) -> Res<Sample> {
    let secs = ctx.secs;
    match via {
        Via::Queue => {
            let (a, b) = (ctx.name(), ctx.name());
            let there = Queue::<u64>::create(&a, 8)?;
            let back = Queue::<u64>::create(&b, 8)?;
            there.set_spin(spin);
            back.set_spin(spin);
            let kid = ctx.spawn(
                format!("qecho {a} {b} {spin}"),
                Stdio::null(),
                Stdio::null(),
            )?;
            echo(
                secs,
                kid,
                |i| {
                    there.put(i).map_err(|e| e.to_string())?;
                    // A failing child closes the queue: no timeout needed.
                    Ok(back.get()?)
                },
                || there.close(),
            )
        }
        Via::Spsc => {
            let (a, b) = (ctx.name(), ctx.name());
            let (there, far) = SpscQueue::create::<u64>(&a, 8)?;
            far.release();
            let (far, back) = SpscQueue::create::<u64>(&b, 8)?;
            far.release();
            there.set_spin(spin);
            back.set_spin(spin);
            let kid = ctx.spawn(
                format!("secho {a} {b} {spin}"),
                Stdio::null(),
                Stdio::null(),
            )?;
            echo(
                secs,
                kid,
                |i| {
                    there.put(i).map_err(|e| e.to_string())?;
                    Ok(back.get()?)
                },
                || there.close(),
            )
        }
        Via::Conn => {
            let name = ctx.name();
            let (mine, theirs) = Pipe::create(&name)?;
            theirs.release();
            mine.set_spin(spin);
            let kid = ctx.spawn(format!("cecho {name} {spin}"), Stdio::null(), Stdio::null())?;
            // `trip` owns `mine`: dropping it at the end makes the child's recv fail, and it
            // exits.
            echo(
                secs,
                kid,
                move |i| {
                    mine.send(&i)?;
                    Ok(mine.recv::<u64>()?)
                },
                || {},
            )
        }
        Via::OsPipe | Via::Socket => {
            let (kid, mut to, mut from): (Child, Box<dyn Write>, Box<dyn Read>) =
                if via == Via::OsPipe {
                    let mut kid = ctx.spawn("fdecho".into(), Stdio::piped(), Stdio::piped())?;
                    let to = kid.take_stdin().ok_or("no pipe to the child")?;
                    let from = kid.take_stdout().ok_or("no pipe from the child")?;
                    (kid, Box::new(to), Box::new(from))
                } else {
                    let (mine, theirs) = UnixStream::pair()?;
                    let out = OwnedFd::from(theirs.try_clone()?);
                    let kid = ctx.spawn(
                        "fdecho".into(),
                        Stdio::from(OwnedFd::from(theirs)),
                        Stdio::from(out),
                    )?;
                    (kid, Box::new(mine.try_clone()?), Box::new(mine))
                };
            // `trip` owns the ends: dropping them at the end is the child's end of file, and it
            // exits.
            echo(
                secs,
                kid,
                move |i| {
                    to.write_all(&i.to_ne_bytes())?;
                    let mut buf = [0; 8];
                    from.read_exact(&mut buf)?;
                    Ok(u64::from_ne_bytes(buf))
                },
                || {},
            )
        }
        Via::Floor => Err("the floor's round trip is floor::ping_pong".into()),
    }
}

/// Waits for the echoing child `kid`, times round trips through `trip` (which sends its counter
/// and returns the echo, checked here) for `secs`, then calls `stop` and drops `trip` (either
/// of which makes the child exit: a closed queue, or the ends `trip` owns) and waits for the
/// child.
fn echo(
    secs: f64,
    mut kid: Child,
    mut trip: impl FnMut(u64) -> Res<u64>,
    stop: impl FnOnce(),
) -> Res<Sample> {
    kid.expect("ready")?;
    let sample = time_ops(secs, |i| {
        let got = trip(i).map_err(|e| format!("no echo: {e}"))?;
        if got != i.wrapping_add(1) {
            return Err(format!("sent {i}, the echo came back as {got}").into());
        }
        Ok(())
    });
    stop();
    drop(trip);
    let sample = sample?;
    kid.finish()?;
    Ok(sample)
}

// ---- streams -------------------------------------------------------------------------------

/// One round of a stream of `size`-byte messages from `procs` producers to `procs` consumers.
fn stream(ctx: &mut Ctx, via: Via, size: usize, procs: usize) -> Res<Sample> {
    let secs = ctx.secs;
    match via {
        Via::Queue => {
            let name = ctx.name();
            sized!(size, stream_queue(ctx, &name, procs, secs))
        }
        // The consumer creates the queue or pipe and gives away the other end, which the
        // producer opens by name; when the producer is done it closes the queue (or its end
        // closes): the consumer drains and stops.
        Via::Conn | Via::Spsc | Via::Floor if procs == 1 => {
            let tag = match via {
                Via::Conn => 'c',
                Via::Spsc => 's',
                _ => 'r',
            };
            // The floor's ring is made here: the children share it by the page's name.
            let page = match via {
                Via::Floor => Some(floor::Ring::create(size)?),
                _ => None,
            };
            let name = match &page {
                Some(ring) => ring.name().to_owned(),
                None => ctx.name(),
            };
            let mut cons = ctx.spawn(
                format!("{tag}cons {size} {name}"),
                Stdio::null(),
                Stdio::null(),
            )?;
            cons.expect("made")?;
            let prod = ctx.spawn(
                format!("{tag}prod {size} 0 {secs} {name}"),
                Stdio::piped(),
                Stdio::null(),
            )?;
            drive(vec![prod], vec![cons], size, || {})
        }
        Via::Conn | Via::Spsc | Via::Floor => {
            Err("a pipe, SpscQueue or ring connects one producer to one consumer".into())
        }
        Via::OsPipe | Via::Socket => {
            let mut producers = Vec::new();
            let mut consumers = Vec::new();
            for id in 0..procs {
                let prod = format!("fdprod {size} {id} {secs}");
                let cons = format!("fdcons {size} 1");
                if via == Via::OsPipe {
                    let mut p = ctx.spawn(prod, Stdio::piped(), Stdio::piped())?;
                    let out = p.take_stdout().ok_or("no pipe from the producer")?;
                    producers.push(p);
                    consumers.push(ctx.spawn(cons, Stdio::from(out), Stdio::null())?);
                } else {
                    let (a, b) = UnixStream::pair()?;
                    producers.push(ctx.spawn(
                        prod,
                        Stdio::piped(),
                        Stdio::from(OwnedFd::from(a)),
                    )?);
                    consumers.push(ctx.spawn(
                        cons,
                        Stdio::from(OwnedFd::from(b)),
                        Stdio::null(),
                    )?);
                }
            }
            drive(producers, consumers, size, || {})
        }
    }
}

fn stream_queue<const N: usize>(ctx: &mut Ctx, name: &str, procs: usize, secs: f64) -> Res<Sample> {
    let q = Queue::<[u8; N]>::create(name, capacity(N))?;
    let single = u8::from(procs == 1);
    let mut producers = Vec::new();
    let mut consumers = Vec::new();
    for id in 0..procs {
        producers.push(ctx.spawn(
            format!("qprod {N} {id} {secs} {name}"),
            Stdio::piped(),
            Stdio::null(),
        )?);
        consumers.push(ctx.spawn(
            format!("qcons {N} {single} {name}"),
            Stdio::null(),
            Stdio::null(),
        )?);
    }
    let out = drive(producers, consumers, N, || q.close())?;
    if q.lost() != 0 {
        return Err(format!("the queue counted {} lost messages", q.lost()).into());
    }
    Ok(out)
}

/// Waits for every child to be ready, starts the producers, waits for them to finish, calls
/// `producers_done`, and collects the consumers' reports; checks that what arrived is exactly
/// what was sent.
fn drive(
    mut producers: Vec<Child>,
    mut consumers: Vec<Child>,
    size: usize,
    producers_done: impl FnOnce(),
) -> Res<Sample> {
    for kid in producers.iter_mut().chain(&mut consumers) {
        kid.expect("ready")?;
    }
    let start = Instant::now();
    for p in &mut producers {
        p.go()?;
    }
    let mut want = (0u64, 0u64);
    for (id, p) in producers.iter_mut().enumerate() {
        let n = p.expect("sent")?[0];
        want.0 += n;
        want.1 = want.1.wrapping_add(tag_sum(id as u64, n));
    }
    // Only now, with every producer done, may one leave (see `queue_producer`).
    for p in producers {
        p.finish()?;
    }
    producers_done();
    let mut got = (0u64, 0u64);
    let mut hist = Hist::default();
    let batch = batch_len(size) as f64;
    for c in &mut consumers {
        let r = c.expect("got")?;
        got.0 += r[0];
        got.1 = got.1.wrapping_add(r[1]);
        for ns in c.expect("batches")? {
            hist.add(ns as f64 / batch);
        }
    }
    let time = start.elapsed();
    for c in consumers {
        c.finish()?;
    }
    if got != want {
        return Err(format!(
            "producers sent {} messages (tag sum {:#x}), consumers got {} (tag sum {:#x})",
            want.0, want.1, got.0, got.1
        )
        .into());
    }
    if got.0 == 0 {
        return Err("no message went through".into());
    }
    Ok(Sample {
        per_op: time.as_secs_f64() / got.0 as f64,
        hist,
    })
}

/// The sum of the tags of producer `id`'s first `n` messages.
fn tag_sum(id: u64, n: u64) -> u64 {
    n.wrapping_mul(id << 48)
        .wrapping_add(n.wrapping_mul(n.wrapping_sub(1)) / 2)
}

/// Messages per timed batch of `size`-byte messages.
fn batch_len(size: usize) -> usize {
    (BATCH_BYTES / size.max(1)).max(1)
}

// ---- children ------------------------------------------------------------------------------

/// Runs a transport child's role; `None` if `words` is none of them.
pub fn child(words: &[&str]) -> Option<Res<()>> {
    let num = |s: &str| s.parse::<usize>().map_err(|e| format!("{s:?}: {e}"));
    Some(match *words {
        ["qecho", a, b, spin] => queue_echo(a, b, spin),
        ["secho", a, b, spin] => spsc_echo(a, b, spin),
        ["cecho", name, spin] => conn_echo(name, spin),
        ["fdecho"] => fd_echo(),
        ["qprod", size, id, secs, name] => (|| {
            let p = Producer::new(id, secs)?;
            sized!(num(size)?, queue_producer(name, p))
        })(),
        ["qcons", size, single, name] => {
            (|| sized!(num(size)?, queue_consumer(name, single == "1")))()
        }
        ["sprod", size, id, secs, name] => (|| {
            let p = Producer::new(id, secs)?;
            sized!(num(size)?, spsc_producer(name, p))
        })(),
        ["scons", size, name] => (|| sized!(num(size)?, spsc_consumer(name)))(),
        ["cprod", size, id, secs, name] => (|| {
            let p = Producer::new(id, secs)?;
            conn_producer(name, num(size)?, p)
        })(),
        ["ccons", size, name] => (|| conn_consumer(name, num(size)?))(),
        ["fdprod", size, id, secs] => (|| {
            let p = Producer::new(id, secs)?;
            fd_producer(num(size)?, p)
        })(),
        ["fdcons", size, single] => (|| fd_consumer(num(size)?, single == "1"))(),
        ["rprod", size, id, secs, name] => (|| {
            let p = Producer::new(id, secs)?;
            floor::ring_producer(name, num(size)?, p)
        })(),
        ["rcons", size, name] => (|| floor::ring_consumer(name, num(size)?))(),
        _ => return None,
    })
}

fn spin_arg(s: &str) -> Res<u32> {
    Ok(s.parse()?)
}

fn queue_echo(a: &str, b: &str, spin: &str) -> Res<()> {
    let there = Queue::<u64>::open(a)?;
    let back = Queue::<u64>::open(b)?;
    there.set_spin(spin_arg(spin)?);
    back.set_spin(spin_arg(spin)?);
    report("ready")?;
    while let Ok(v) = there.get() {
        back.put(v.wrapping_add(1)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn spsc_echo(a: &str, b: &str, spin: &str) -> Res<()> {
    let there = mpshm::SpscConsumer::<u64>::open(a)?;
    let back = mpshm::SpscProducer::<u64>::open(b)?;
    there.set_spin(spin_arg(spin)?);
    back.set_spin(spin_arg(spin)?);
    report("ready")?;
    while let Ok(v) = there.get() {
        back.put(v.wrapping_add(1)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn conn_echo(name: &str, spin: &str) -> Res<()> {
    let conn = mpshm::Connection::open(name)?;
    conn.set_spin(spin_arg(spin)?);
    report("ready")?;
    loop {
        match conn.recv::<u64>() {
            Ok(v) => conn.send(&v.wrapping_add(1))?,
            Err(RecvError::Disconnected) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

fn fd_echo() -> Res<()> {
    let (mut input, mut output) = (raw_stdin()?, raw_stdout()?);
    report("ready")?;
    let mut buf = [0; 8];
    while read_record(&mut input, &mut buf)? {
        output.write_all(&(u64::from_ne_bytes(buf).wrapping_add(1)).to_ne_bytes())?;
    }
    Ok(())
}

/// Every this many large messages, one is written and checked word by word ...
const FULL_EVERY: u64 = 8;
/// ... and the others at every this many words.
const SAMPLE_WORDS: usize = 64;
/// Messages this long and longer carry a pattern over their body.
const PATTERNED: usize = 256;

fn word_step(tag: u64) -> usize {
    if (tag & SEQ_MASK).is_multiple_of(FULL_EVERY) {
        1
    } else {
        SAMPLE_WORDS
    }
}

/// Word `i` of the body of the message tagged `tag`.
fn body_word(tag: u64, i: usize) -> u64 {
    tag ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Writes message `tag`: the tag first, its complement last, a pattern between for long ones.
pub fn fill(msg: &mut [u8], tag: u64) {
    if msg.len() >= PATTERNED {
        for (i, w) in msg.chunks_exact_mut(8).enumerate().step_by(word_step(tag)) {
            w.copy_from_slice(&body_word(tag, i).to_ne_bytes());
        }
    }
    msg[..8].copy_from_slice(&tag.to_ne_bytes());
    let n = msg.len();
    if n >= 16 {
        msg[n - 8..].copy_from_slice(&(!tag).to_ne_bytes());
    }
}

/// A producer child's settings: its id and how long it sends.
#[derive(Clone, Copy, Debug)]
pub struct Producer {
    id: u64,
    secs: f64,
}

impl Producer {
    fn new(id: &str, secs: &str) -> Res<Producer> {
        Ok(Producer {
            id: id.parse()?,
            secs: secs.parse()?,
        })
    }

    /// Says `ready`, waits for the start line, fills `msg` and hands it to `send` again and
    /// again for the time given, and reports how many it sent.
    pub fn run<B: AsMut<[u8]> + ?Sized>(
        self,
        msg: &mut B,
        mut send: impl FnMut(&B) -> Res<()>,
    ) -> Res<()> {
        report("ready")?;
        wait_go()?;
        let end = Instant::now() + Duration::from_secs_f64(self.secs);
        let mut seq = 0;
        loop {
            for _ in 0..16 {
                fill(msg.as_mut(), self.id << 48 | seq);
                send(msg)?;
                seq += 1;
            }
            if Instant::now() >= end {
                return report(&format!("sent {seq}"));
            }
        }
    }
}

/// Checks what one consumer receives, and times its batches.
pub struct Check {
    /// One consumer takes everything: sequences must have no gaps.
    single: bool,
    next: [u64; MAX_PRODUCERS],
    count: u64,
    sum: u64,
    batch: u64,
    last: Option<Instant>,
    batches: Vec<u64>,
}

impl Check {
    pub fn new(single: bool, size: usize) -> Check {
        Check {
            single,
            next: [0; MAX_PRODUCERS],
            count: 0,
            sum: 0,
            batch: batch_len(size) as u64,
            last: None,
            batches: Vec::new(),
        }
    }

    pub fn see(&mut self, msg: &[u8]) -> Res<()> {
        let word = |at: usize| u64::from_ne_bytes(msg[at..at + 8].try_into().expect("8 bytes"));
        let tag = word(0);
        let last = msg.len() - 8;
        if msg.len() >= 16 && word(last) != !tag {
            return Err(format!("torn message: head {tag:#x}, tail {:#x}", word(last)).into());
        }
        if msg.len() >= PATTERNED {
            for (i, w) in msg.chunks_exact(8).enumerate().step_by(word_step(tag)) {
                if i != 0 && i != last / 8 && word(i * 8) != body_word(tag, i) {
                    return Err(format!(
                        "message {tag:#x}: word {i} is {:#x}, expected {:#x}",
                        u64::from_ne_bytes(w.try_into().expect("8 bytes")),
                        body_word(tag, i)
                    )
                    .into());
                }
            }
        }
        let (id, seq) = ((tag >> 48) as usize, tag & SEQ_MASK);
        let next = self
            .next
            .get_mut(id)
            .ok_or_else(|| format!("message from unknown producer {id}"))?;
        if seq < *next || (self.single && seq != *next) {
            return Err(format!("producer {id}: got sequence {seq}, expected {}", *next).into());
        }
        *next = seq + 1;
        if self.count.is_multiple_of(self.batch) {
            let now = Instant::now();
            if let Some(t) = self.last.replace(now) {
                self.batches.push((now - t).as_nanos() as u64);
            }
        }
        self.count += 1;
        self.sum = self.sum.wrapping_add(tag);
        Ok(())
    }

    pub fn report(&self) -> Res<()> {
        report(&format!("got {} {}", self.count, self.sum))?;
        let batches: Vec<String> = self.batches.iter().map(u64::to_string).collect();
        report(format!("batches {}", batches.join(" ")).trim_end())
    }
}

fn queue_producer<const N: usize>(name: &str, p: Producer) -> Res<()> {
    let q = Queue::<[u8; N]>::open(name)?;
    let mut msg = Box::new([0u8; N]);
    // A consumer that fails closes the queue (see `queue_consumer`).
    p.run(&mut *msg, |m| {
        q.put(*m).map_err(|e| format!("put: {e}").into())
    })?;
    // The handle stays, and with it this producer's place on the queue, until the parent has
    // heard from every producer (it then closes our stdin): a consumer's get says
    // `Disconnected` once every producer that attached has gone, so one that left before
    // another began would end the consumers early.
    wait_eof()
}

fn queue_consumer<const N: usize>(name: &str, single: bool) -> Res<()> {
    let q = Queue::<[u8; N]>::open(name)?;
    report("ready")?;
    let mut check = Check::new(single, N);
    // A blocking get ends with `Closed` (the parent closes the queue once the producers are
    // done), or with `Disconnected` once every producer has left and the queue is drained: no
    // producer leaves before every one has put all it puts (see `queue_producer`).
    while let Ok(msg) = q.get() {
        if let Err(e) = check.see(&msg) {
            q.close(); // so that the producers stop too
            return Err(e);
        }
    }
    check.report()
}

fn spsc_producer<const N: usize>(name: &str, p: Producer) -> Res<()> {
    let tx = mpshm::SpscProducer::<[u8; N]>::open(name)?;
    let mut msg = Box::new([0u8; N]);
    p.run(&mut *msg, |m| {
        tx.put(*m).map_err(|e| format!("put: {e}").into())
    })?;
    tx.close();
    Ok(())
}

/// Creates the queue `name`, keeps the consumer and leaves the producer to be opened.
fn spsc_consumer<const N: usize>(name: &str) -> Res<()> {
    let (tx, rx) = SpscQueue::create::<[u8; N]>(name, capacity(N))?;
    tx.release();
    report("made")?;
    report("ready")?;
    let mut check = Check::new(true, N);
    while let Ok(msg) = rx.get() {
        if let Err(e) = check.see(&msg) {
            rx.close();
            return Err(e);
        }
    }
    check.report()
}

fn conn_producer(name: &str, size: usize, p: Producer) -> Res<()> {
    let conn = mpshm::Connection::open(name)?;
    let mut msg = vec![0u8; size];
    p.run(&mut msg[..], |m| Ok(conn.send_bytes(m)?))
}

/// Creates the pipe `name`, keeps one end, leaves the other for the producer, and receives.
fn conn_consumer(name: &str, size: usize) -> Res<()> {
    let (conn, theirs) = Pipe::create(name)?;
    theirs.release();
    report("made")?;
    report("ready")?;
    let mut check = Check::new(true, size);
    let mut buf = vec![0u8; size];
    loop {
        match conn.recv_bytes_into(&mut buf) {
            Ok(n) if n == size => check.see(&buf)?,
            Ok(n) => return Err(format!("a {n}-byte message, expected {size}").into()),
            Err(RecvError::Disconnected) => return check.report(),
            Err(e) => return Err(e.into()),
        }
    }
}

fn fd_producer(size: usize, p: Producer) -> Res<()> {
    let mut out: File = raw_stdout()?;
    let mut msg = vec![0u8; size];
    p.run(&mut msg[..], |m| Ok(out.write_all(m)?))
}

fn fd_consumer(size: usize, single: bool) -> Res<()> {
    let mut input = raw_stdin()?;
    report("ready")?;
    let mut check = Check::new(single, size);
    let mut buf = vec![0u8; size];
    while read_record(&mut input, &mut buf)? {
        check.see(&buf)?;
    }
    check.report()
}
