//! mpshm's [`Queue`] and [`Pipe`] beside an OS pipe and a Unix-domain stream socket, all measured
//! in the same run between real processes, printed as one table with the ratios.
//!
//! ```text
//! cargo run --release --example queue_bench                          # about 35 s
//! MPSHM_QBENCH_SECS=0.05 cargo run --release --example queue_bench   # a quick look
//! ```
//!
//! Every child is this binary again, told its role by the `MPSHM_QBENCH_CHILD` environment
//! variable. A child reports to the parent on its stderr, one line at a time (`ready`,
//! `sent <n>`, `got <count> <sum>`, or an error), takes a start byte on stdin when stdin is not
//! its data channel, and gets its end of a pipe or socket as its stdin or stdout, so no file
//! descriptor has to be passed by number.
//!
//! - **Round trip**: the parent sends an 8-byte counter, the child sends back the counter plus
//!   one, the parent checks it. mpshm uses two queues (there and back) with `set_spin` on every
//!   handle; the pipe case uses the child's stdin and stdout; the socket case one
//!   `UnixStream::pair()`. Each round's figure is the median of 11 batches; the four cases take
//!   turns for five rounds (a fresh child each time), and the table gives the median round.
//!   Beside them, two threads bounce one cache line: the floor of any spinning handoff, and a
//!   gauge of whether the cores were free.
//! - **Stream**: producers send for a fixed time, then exit (a queue producer once the parent
//!   has heard from every producer, so that none detaches before all have attached); consumers
//!   take until the queue is closed (by the parent, once every producer is done) or until end
//!   of file. The time runs
//!   from the start byte until every consumer has reported, so it includes draining what was
//!   still queued. One pipe or socket message is one `write` of the whole record and reads of
//!   exactly the record's remaining bytes. Each message carries `producer << 48 | sequence` in
//!   its first 8 bytes and the complement in its last 8; consumers check both, check that each
//!   producer's sequence only rises (and has no gap when there is one consumer), and report a
//!   count and sum that the parent matches against what the producers sent. Queue, pipe and
//!   socket take turns for five rounds; each figure is the median of its five.
//! - **SpscQueue**: the 64 B stream over the queue's explicit single-producer, single-consumer
//!   mode, in the same rounds; its consumer child creates the queue, its producer child opens
//!   the producing end and closes the queue when it is done.
//! - **Pipe**: the same cases over an mpshm [`Pipe`], a [`Connection`](mpshm::Connection) at each
//!   end, taking turns with the queue, the OS pipe and the socket in the same rounds (their
//!   figures are shared by both sections). The round trip is `send::<u64>` / `recv::<u64>` to an
//!   echoing child. A stream's consumer child creates the pipe and receives with
//!   `recv_bytes_into` until `Disconnected`; its producer child opens it by name. The **1 MiB**
//!   case sends one 1 MiB message per `send_bytes`; the OS pipe and socket write an 8-byte length
//!   and then the message in one `write` and read the length and then exactly that many bytes.
//!   Every 8th 1 MiB message is checked word by word (each word depends on its position and the
//!   message's tag), the others at every 64th word, besides the tag checks of every stream.
//! - **Peer death**: a child holds the far end and blocks reading its stdin; a parent thread
//!   blocks in `recv_bytes` (a `read` for the OS pipe and the socket); the child is `SIGKILL`ed
//!   and the time runs from the kill until the receive fails with `Disconnected` (end of file).
//!   The three take turns for [`DEATH_TRIALS`] trials each, killed at delays spread over 20 ms
//!   (once a polling period, kept so that figures compare with older runs); the table gives the
//!   median (and the worst). `examples/peer_death.rs` measures the same with 100 kills, the
//!   receiver asleep in the kernel at each.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, ChildStderr, ChildStdin, Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mpshm::prelude::*;
use mpshm::{Pipe, Queue, RecvError, SpscQueue};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Tells a re-executed binary which child it is: the role and its arguments, space-separated.
const CHILD_ENV: &str = "MPSHM_QBENCH_CHILD";
/// Seconds per measured case (default [`DEFAULT_SECS`]).
const SECS_ENV: &str = "MPSHM_QBENCH_SECS";
const DEFAULT_SECS: f64 = 0.2;
/// Rounds of each case; the transports take turns within a round.
const ROUNDS: usize = 5;
/// Batches of each round trip case.
const BATCHES: usize = 11;
/// Message sizes of the stream sweep.
const SIZES: [usize; 5] = [8, 64, 1024, 4096, 65536];
/// At most this many producers (their id is the top 16 bits of the tag).
const MAX_PRODUCERS: usize = 4;
const SEQ_MASK: u64 = (1 << 48) - 1;
/// The size of the large-message case (pipe section only).
const BIG: usize = 1 << 20;
/// Peer-death trials of each transport.
const DEATH_TRIALS: usize = 21;
/// How long a peer-death trial may wait for the receive to fail before the run gives up.
const DEATH_GIVE_UP: Duration = Duration::from_secs(5);

/// Runs `$f::<N>(args)` for the message size `$size`.
macro_rules! sized {
    ($size:expr, $f:ident($($arg:expr),*)) => {
        match $size {
            8 => $f::<8>($($arg),*),
            64 => $f::<64>($($arg),*),
            1024 => $f::<1024>($($arg),*),
            4096 => $f::<4096>($($arg),*),
            65536 => $f::<65536>($($arg),*),
            n => Err(format!("unsupported message size {n}").into()),
        }
    };
}

fn main() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        if let Err(e) = child(&role) {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Err(e) = run() {
        eprintln!("queue_bench: {e}");
        std::process::exit(1);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Via {
    Queue,
    /// An OS pipe.
    Pipe,
    Socket,
    /// An mpshm [`Pipe`]: a `Connection` at each end.
    Conn,
    /// An mpshm [`SpscQueue`]: one producer, one consumer.
    Spsc,
}

// ---- the parent ----------------------------------------------------------------------------

/// What a row measures: nanoseconds per round trip, messages per second of `size` bytes, or
/// nanoseconds from a peer's death to the receiver's error.
#[derive(Clone, Copy)]
enum Unit {
    RoundTrip,
    Rate { size: usize },
    Latency,
}

/// What the project asks of a row.
#[derive(Clone, Copy)]
enum Target {
    /// At least this many times faster than the OS pipe.
    Speedup(f64),
    /// mpshm's figure at most this many milliseconds.
    AtMostMs(f64),
}

struct Row {
    case: String,
    unit: Unit,
    /// mpshm, pipe, socket.
    vals: [f64; 3],
    target: Option<Target>,
    /// Said after the figures (e.g. the worst trial).
    note: String,
}

impl Row {
    /// How many times faster than baseline `i` (1 = pipe, 2 = socket) mpshm is.
    fn speedup(&self, i: usize) -> f64 {
        match self.unit {
            Unit::RoundTrip | Unit::Latency => self.vals[i] / self.vals[0],
            Unit::Rate { .. } => self.vals[0] / self.vals[i],
        }
    }

    fn verdict(&self) -> String {
        let pass = |ok: bool| if ok { "PASS" } else { "FAIL" };
        match self.target {
            Some(Target::Speedup(t)) => format!("≥ {t}×  {}", pass(self.speedup(1) >= t)),
            Some(Target::AtMostMs(t)) => format!("< {t} ms  {}", pass(self.vals[0] < t * 1e6)),
            None => String::new(),
        }
    }
}

/// Unique segment names: `qb-<pid>-<n>`.
struct Names {
    n: u32,
}

impl Names {
    fn next(&mut self) -> String {
        self.n += 1;
        format!("qb-{}-{}", std::process::id(), self.n)
    }
}

fn run() -> Res<()> {
    let secs = match std::env::var(SECS_ENV) {
        Ok(s) => s
            .parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0 && *s < 60.0)
            .ok_or_else(|| format!("{SECS_ENV}={s}: want seconds, 0 < s < 60"))?,
        Err(_) => DEFAULT_SECS,
    };
    let started = Instant::now();
    let mut names = Names { n: 0 };
    let mut rows = Vec::new();
    let mut pipe_rows = Vec::new();
    let mut spsc_rows = Vec::new();
    let mut verified = 0u64;
    eprintln!("queue_bench: {secs} s per case; round trips ...");

    // Fresh children each round; the cases take turns, so a burst of load from elsewhere lands
    // on one round of each rather than on all of one case.
    let cases = [
        (Via::Queue, u32::MAX),
        (Via::Queue, 0),
        (Via::Conn, u32::MAX),
        (Via::Conn, 0),
        (Via::Pipe, 0),
        (Via::Socket, 0),
    ];
    let mut rt: [Vec<f64>; 6] = Default::default();
    let mut floor = Vec::new();
    for _ in 0..ROUNDS {
        floor.push(line_ping_pong(secs / 4.0));
        for (i, (via, spin)) in cases.into_iter().enumerate() {
            rt[i].push(
                round_trip(via, spin, secs, &mut names)
                    .map_err(|e| format!("round trip over {via:?}: {e}"))?,
            );
        }
    }
    let [q_spin, q_park, c_spin, c_park, pipe_rt, sock_rt] = rt.map(median);
    for (section, spinning, parked) in [
        (&mut rows, q_spin, q_park),
        (&mut pipe_rows, c_spin, c_park),
    ] {
        for (case, ns, target) in [
            ("round trip 8 B, spinning", spinning, 100.0),
            ("round trip 8 B, parked", parked, 1.0),
        ] {
            section.push(Row {
                case: case.into(),
                unit: Unit::RoundTrip,
                vals: [ns, pipe_rt, sock_rt],
                target: Some(Target::Speedup(target)),
                note: String::new(),
            });
        }
    }

    // (size, processes each side, the mpshm transports and their targets); the OS pipe and the
    // socket run every case.
    let mut streams = vec![(64, 2, vec![(Via::Queue, None)])];
    for size in SIZES {
        // The 64 B target holds for the queue, in its MPMC and its explicit SPSC mode alike.
        let target = (size == 64).then_some(Target::Speedup(15.0));
        let mut mine = vec![(Via::Queue, target)];
        if size == 64 {
            mine.push((Via::Spsc, target));
        }
        if size == 64 || size == 4096 {
            mine.push((Via::Conn, target));
        }
        streams.push((size, 1, mine));
    }
    streams.push((BIG, 1, vec![(Via::Conn, Some(Target::Speedup(2.0)))]));
    for (size, procs, mine) in streams {
        let case = format!("stream {} {procs}→{procs}", bytes(size));
        eprintln!("queue_bench: {case} ...");
        let vias: Vec<Via> = mine
            .iter()
            .map(|m| m.0)
            .chain([Via::Pipe, Via::Socket])
            .collect();
        let mut got = vec![Vec::new(); vias.len()];
        for _ in 0..ROUNDS {
            for (i, &via) in vias.iter().enumerate() {
                let (msgs, time) = stream(via, size, procs, secs, &mut names)
                    .map_err(|e| format!("{case} over {via:?}: {e}"))?;
                verified += msgs;
                got[i].push(msgs as f64 / time.as_secs_f64());
            }
        }
        let got: Vec<f64> = got.into_iter().map(median).collect();
        let (pipe, sock) = (got[got.len() - 2], got[got.len() - 1]);
        for (i, (via, target)) in mine.into_iter().enumerate() {
            let section = match via {
                Via::Conn => &mut pipe_rows,
                Via::Spsc => &mut spsc_rows,
                _ => &mut rows,
            };
            section.push(Row {
                case: case.clone(),
                unit: Unit::Rate { size },
                vals: [got[i], pipe, sock],
                target,
                note: String::new(),
            });
        }
    }

    eprintln!("queue_bench: peer death ...");
    let mut death: [Vec<f64>; 3] = Default::default();
    for trial in 0..DEATH_TRIALS {
        // Kill at delays spread over 20 ms (a peer was once polled for every 20 ms).
        let delay = Duration::from_millis(3 + (trial as u64 * 7) % 20);
        for (i, via) in [Via::Conn, Via::Pipe, Via::Socket].into_iter().enumerate() {
            death[i].push(
                peer_death(via, delay, &mut names)
                    .map_err(|e| format!("peer death over {via:?}: {e}"))?,
            );
        }
    }
    let worst = death[0].iter().copied().fold(0.0, f64::max);
    pipe_rows.push(Row {
        case: "peer SIGKILL → recv error".into(),
        unit: Unit::Latency,
        vals: death.map(median),
        target: Some(Target::AtMostMs(100.0)),
        note: format!("mpshm worst {}", latency(worst)),
    });

    print_table(&[
        ("mpshm::Queue (MPMC)", &rows),
        ("mpshm::SpscQueue (the queue's SPSC mode)", &spsc_rows),
        ("mpshm::Pipe", &pipe_rows),
    ]);
    println!(
        "two threads of this process bouncing one cache line: {:.0} ns per round trip (median of \
         {ROUNDS}). About 100-200 ns means two free cores; microseconds or more mean the cores are \
         shared with other load, and the spinning figures above measure the scheduler, not the queue.",
        median(floor)
    );
    println!(
        "verified {verified} streamed messages (order, no loss, no duplicate, untorn); \
         {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn print_table(sections: &[(&str, &[Row])]) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let line = "-".repeat(124);
    println!(
        "\nmpshm vs OS pipe vs Unix stream socket, cross-process ({cores} cores); \
         ×pipe, ×sock = how many times faster mpshm is"
    );
    println!("{line}");
    println!(
        "{:<26}{:>22}{:>22}{:>22}{:>9}{:>9}  target (×pipe)",
        "case", "mpshm", "pipe", "socket", "×pipe", "×sock"
    );
    for (title, rows) in sections {
        println!("{line}");
        println!("{title}");
        for r in rows.iter() {
            let cell = |v: f64| match r.unit {
                Unit::RoundTrip => format!("{v:.0} ns/rt"),
                Unit::Latency => latency(v),
                Unit::Rate { size } => {
                    format!(
                        "{}/s {:>8}",
                        si(v),
                        format!("{:.0} MB/s", v * size as f64 / 1e6)
                    )
                }
            };
            println!(
                "{:<26}{:>22}{:>22}{:>22}{:>8.1}×{:>8.1}×  {}{}",
                r.case,
                cell(r.vals[0]),
                cell(r.vals[1]),
                cell(r.vals[2]),
                r.speedup(1),
                r.speedup(2),
                r.verdict(),
                if r.note.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", r.note)
                }
            );
        }
    }
    println!("{line}");
    println!(
        "round trips: median of {ROUNDS} rounds, each the median of {BATCHES} batches; \
         spinning = set_spin(u32::MAX) on both sides, parked = set_spin(0); the pipe and socket \
         figures are shared by both sections (measured in the same rounds).\n\
         streams: median of {ROUNDS} rounds; queues and pipes use the default spin; queue capacity \
         {} messages ({} for 4 KiB, {} for 64 KiB); a Pipe holds 512 chunks of up to 1008 B each \
         way.\n\
         2→2: two producer and two consumer processes on one queue; the baselines are two \
         independent 1→1 pipes (sockets) at once.\n\
         With 2 cores, 2→2 puts 4 busy processes on 2 cores: they time-share, and a \
         spinning waiter burns the slice its peer needs.\n\
         1 MiB: one message per send_bytes / recv_bytes_into; the pipe and socket write a length \
         prefix and the message in one write and read them fully.\n\
         peer SIGKILL: median of {DEATH_TRIALS} trials from the kill until the blocked receive \
         fails (mpshm: Disconnected; pipe, socket: end of file); mpshm's death notice: {:?}.",
        capacity(64),
        capacity(4096),
        capacity(65536),
        mpshm::death_notice()
    );
}

/// Nanoseconds as milliseconds, or microseconds when short.
fn latency(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.0} µs", ns / 1e3)
    }
}

/// The queue capacity for `size`-byte messages: 1024, or 1 MiB of payload for big ones.
fn capacity(size: usize) -> usize {
    ((1 << 20) / size.max(1)).clamp(16, 1024)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn bytes(size: usize) -> String {
    if size >= 1 << 20 {
        format!("{} MiB", size >> 20)
    } else if size >= 1024 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

// ---- round trips ---------------------------------------------------------------------------

/// Median nanoseconds per 8-byte round trip to an echoing child.
fn round_trip(via: Via, spin: u32, secs: f64, names: &mut Names) -> Res<f64> {
    match via {
        Via::Spsc => Err("no round trip over an SpscQueue in this table".into()),
        Via::Queue => {
            let (a, b) = (names.next(), names.next());
            let there = Queue::<u64>::create(&a, 8)?;
            let back = Queue::<u64>::create(&b, 8)?;
            there.set_spin(spin);
            back.set_spin(spin);
            let mut kid = Kid::spawn(
                format!("qecho {a} {b} {spin}"),
                Stdio::null(),
                Stdio::null(),
            )?;
            kid.expect("ready")?;
            let ns = batches(secs, |i| {
                there.put(i).map_err(|e| e.to_string())?;
                // The timeout forms would read the clock on every call; a failing child closes
                // the queue instead.
                let r = back.get().map_err(|e| format!("no echo: {e}"))?;
                check_echo(i, r)
            })?;
            there.close();
            kid.finish()?;
            Ok(ns)
        }
        Via::Conn => {
            let name = names.next();
            let (mine, theirs) = Pipe::create(&name)?;
            theirs.release();
            mine.set_spin(spin);
            let mut kid = Kid::spawn(format!("cecho {name} {spin}"), Stdio::null(), Stdio::null())?;
            kid.expect("ready")?;
            let ns = batches(secs, |i| {
                mine.send(&i).map_err(|e| format!("send: {e}"))?;
                let r = mine.recv::<u64>().map_err(|e| format!("no echo: {e}"))?;
                check_echo(i, r)
            })?;
            drop(mine); // the child's recv fails: it exits
            kid.finish()?;
            Ok(ns)
        }
        Via::Pipe | Via::Socket => {
            let (mut kid, mut to, mut from): (Kid, Box<dyn Write>, Box<dyn Read>) =
                if via == Via::Pipe {
                    let mut kid = Kid::spawn("fdecho".into(), Stdio::piped(), Stdio::piped())?;
                    let to = kid.go.take().ok_or("no pipe to the child")?;
                    let from = kid.child.stdout.take().ok_or("no pipe from the child")?;
                    (kid, Box::new(to), Box::new(from))
                } else {
                    let (mine, theirs) = UnixStream::pair()?;
                    let out = OwnedFd::from(theirs.try_clone()?);
                    let kid = Kid::spawn(
                        "fdecho".into(),
                        Stdio::from(OwnedFd::from(theirs)),
                        Stdio::from(out),
                    )?;
                    (kid, Box::new(mine.try_clone()?), Box::new(mine))
                };
            kid.expect("ready")?;
            let ns = batches(secs, |i| {
                to.write_all(&i.to_ne_bytes())?;
                let mut buf = [0; 8];
                from.read_exact(&mut buf)?;
                check_echo(i, u64::from_ne_bytes(buf))
            })?;
            drop((to, from)); // end of file: the child exits
            kid.finish()?;
            Ok(ns)
        }
    }
}

/// Nanoseconds from `SIGKILL` of a child that holds the far end (and blocks reading its stdin)
/// until a receive blocked in a thread of ours fails: `Disconnected`, or end of file. The kill
/// comes `delay` after the receiving thread starts.
fn peer_death(via: Via, delay: Duration, names: &mut Names) -> Res<f64> {
    let (done_tx, done) = mpsc::channel::<Result<Instant, String>>();
    let (kid, name) = match via {
        Via::Conn => {
            let name = names.next();
            let (mine, theirs) = Pipe::create(&name)?;
            theirs.release();
            let mut kid = Kid::spawn(format!("chold {name}"), Stdio::piped(), Stdio::null())?;
            kid.expect("ready")?;
            std::thread::spawn(move || {
                let r = match mine.recv_bytes() {
                    Err(RecvError::Disconnected) => Ok(Instant::now()),
                    other => Err(format!("the blocked recv_bytes returned {other:?}")),
                };
                let _ = done_tx.send(r);
            });
            (kid, Some(name))
        }
        Via::Pipe | Via::Socket => {
            let (mut kid, mut from): (Kid, Box<dyn Read + Send>) = if via == Via::Pipe {
                let mut kid = Kid::spawn("fdhold".into(), Stdio::piped(), Stdio::piped())?;
                let from = kid.child.stdout.take().ok_or("no pipe from the child")?;
                (kid, Box::new(from))
            } else {
                let (mine, theirs) = UnixStream::pair()?;
                let kid = Kid::spawn(
                    "fdhold".into(),
                    Stdio::piped(),
                    Stdio::from(OwnedFd::from(theirs)),
                )?;
                (kid, Box::new(mine))
            };
            kid.expect("ready")?;
            std::thread::spawn(move || {
                let mut byte = [0];
                let r = loop {
                    match from.read(&mut byte) {
                        Ok(0) => break Ok(Instant::now()),
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        other => break Err(format!("the blocked read returned {other:?}")),
                    }
                };
                let _ = done_tx.send(r);
            });
            (kid, None)
        }
        Via::Queue | Via::Spsc => return Err("no peer-death case for a queue".into()),
    };
    let mut kid = kid;
    std::thread::sleep(delay);
    let killed = Instant::now();
    kid.child.kill()?;
    let ended = match done.recv_timeout(DEATH_GIVE_UP) {
        Ok(r) => r?,
        Err(_) => {
            // The receiver is stuck in a thread we cannot stop; the process is about to exit
            // with this error, so remove the segment its handle would have removed.
            if let Some(name) = name {
                let _ = mpshm::unlink(&name);
            }
            return Err(format!("no error {DEATH_GIVE_UP:?} after the kill").into());
        }
    };
    if ended < killed {
        return Err("the receive failed before the kill".into());
    }
    Ok((ended - killed).as_nanos() as f64)
}

/// Nanoseconds per round trip of one cache line between two spinning threads: the least any
/// spinning cross-core handoff can cost on this machine right now.
fn line_ping_pong(secs: f64) -> f64 {
    #[repr(align(128))]
    struct Line(AtomicU64);
    let line = Line(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let trips = std::thread::scope(|s| {
        s.spawn(|| {
            // Answers each odd value with the next even one, until told to stop (u64::MAX).
            let mut seen = 0;
            loop {
                let v = line.0.load(Acquire);
                if v == u64::MAX {
                    return;
                }
                if v != seen && v % 2 == 1 {
                    seen = v;
                    line.0.store(v + 1, Release);
                }
                std::hint::spin_loop();
            }
        });
        let mut trips = 0u64;
        while trips % 1024 != 0 || Instant::now() < end {
            let v = 2 * trips + 1;
            // Release/Acquire: the value is all that is exchanged.
            line.0.store(v, Release);
            while line.0.load(Acquire) != v + 1 {
                std::hint::spin_loop();
            }
            trips += 1;
        }
        line.0.store(u64::MAX, Release);
        trips
    });
    start.elapsed().as_nanos() as f64 / trips as f64
}

fn check_echo(sent: u64, got: u64) -> Res<()> {
    if got != sent.wrapping_add(1) {
        return Err(format!("sent {sent}, the echo came back as {got}").into());
    }
    Ok(())
}

/// Warms up for a tenth of `secs`, then runs [`BATCHES`] batches over the rest; the median
/// nanoseconds per call of `op` (which gets a running counter).
fn batches(secs: f64, mut op: impl FnMut(u64) -> Res<()>) -> Res<f64> {
    let mut i = 0u64;
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs * 0.1 || i < 10 {
        op(i)?;
        i += 1;
    }
    let each = start.elapsed().as_secs_f64() / i as f64;
    let n = ((secs * 0.9 / BATCHES as f64) / each).max(10.0) as u64;
    let mut per = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        let t = Instant::now();
        for _ in 0..n {
            op(i)?;
            i += 1;
        }
        per.push(t.elapsed().as_nanos() as f64 / n as f64);
    }
    Ok(median(per))
}

// ---- streams -------------------------------------------------------------------------------

/// Streams `size`-byte messages from `procs` producers to `procs` consumers for `secs`; the
/// messages delivered and the time from start until the last consumer was done.
fn stream(
    via: Via,
    size: usize,
    procs: usize,
    secs: f64,
    names: &mut Names,
) -> Res<(u64, Duration)> {
    match via {
        Via::Queue => sized!(size, stream_queue(procs, secs, names)),
        // The consumer creates the pipe (or queue) and gives away the other end, which the
        // producer opens by name. When the producer is done, its end closes (the pipe) or it
        // closes the queue: the consumer drains and stops.
        Via::Conn | Via::Spsc if procs == 1 => {
            let tag = if via == Via::Conn { 'c' } else { 's' };
            let name = names.next();
            let mut cons = Kid::spawn(
                format!("{tag}cons {size} {name}"),
                Stdio::null(),
                Stdio::null(),
            )?;
            cons.expect("made")?;
            let prod = Kid::spawn(
                format!("{tag}prod {size} 0 {secs} {name}"),
                Stdio::piped(),
                Stdio::null(),
            )?;
            drive(vec![prod], vec![cons], || {})
        }
        Via::Conn | Via::Spsc => {
            Err("a pipe or SpscQueue connects one producer to one consumer".into())
        }
        Via::Pipe | Via::Socket => {
            let mut producers = Vec::new();
            let mut consumers = Vec::new();
            for id in 0..procs {
                let prod = format!("fdprod {size} {id} {secs}");
                let cons = format!("fdcons {size} 1");
                if via == Via::Pipe {
                    let mut p = Kid::spawn(prod, Stdio::piped(), Stdio::piped())?;
                    let out = p.child.stdout.take().ok_or("no pipe from the producer")?;
                    producers.push(p);
                    consumers.push(Kid::spawn(cons, Stdio::from(out), Stdio::null())?);
                } else {
                    let (a, b) = UnixStream::pair()?;
                    producers.push(Kid::spawn(
                        prod,
                        Stdio::piped(),
                        Stdio::from(OwnedFd::from(a)),
                    )?);
                    consumers.push(Kid::spawn(
                        cons,
                        Stdio::from(OwnedFd::from(b)),
                        Stdio::null(),
                    )?);
                }
            }
            drive(producers, consumers, || {})
        }
    }
}

fn stream_queue<const N: usize>(
    procs: usize,
    secs: f64,
    names: &mut Names,
) -> Res<(u64, Duration)> {
    let name = names.next();
    let q = Queue::<[u8; N]>::create(&name, capacity(N))?;
    let single = u8::from(procs == 1);
    let mut producers = Vec::new();
    let mut consumers = Vec::new();
    for id in 0..procs {
        producers.push(Kid::spawn(
            format!("qprod {N} {id} {secs} {name}"),
            Stdio::piped(),
            Stdio::null(),
        )?);
        consumers.push(Kid::spawn(
            format!("qcons {N} {single} {name}"),
            Stdio::null(),
            Stdio::null(),
        )?);
    }
    let out = drive(producers, consumers, || q.close())?;
    if q.lost() != 0 {
        return Err(format!("the queue counted {} lost messages", q.lost()).into());
    }
    Ok(out)
}

/// Waits for every child to be ready, starts the producers, waits for them to finish, calls
/// `producers_done`, and collects the consumers' reports; checks that what arrived is exactly
/// what was sent.
fn drive(
    mut producers: Vec<Kid>,
    mut consumers: Vec<Kid>,
    producers_done: impl FnOnce(),
) -> Res<(u64, Duration)> {
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
    for c in &mut consumers {
        let r = c.expect("got")?;
        got.0 += r[0];
        got.1 = got.1.wrapping_add(r[1]);
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
    Ok((got.0, time))
}

/// The sum of the tags of producer `id`'s first `n` messages.
fn tag_sum(id: u64, n: u64) -> u64 {
    n.wrapping_mul(id << 48)
        .wrapping_add(n.wrapping_mul(n.wrapping_sub(1)) / 2)
}

// ---- children ------------------------------------------------------------------------------

/// A child process and its report channel; killed if dropped before [`finish`](Self::finish).
struct Kid {
    role: String,
    child: Child,
    ctl: BufReader<ChildStderr>,
    /// The child's stdin, when the parent holds it.
    go: Option<ChildStdin>,
    waited: bool,
}

impl Kid {
    fn spawn(role: String, stdin: Stdio, stdout: Stdio) -> Res<Kid> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(CHILD_ENV, &role)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()?;
        let ctl = BufReader::new(child.stderr.take().ok_or("no report pipe")?);
        let go = child.stdin.take();
        Ok(Kid {
            role,
            child,
            ctl,
            go,
            waited: false,
        })
    }

    /// Reads one report line, which must start with `word`; the numbers after it.
    fn expect(&mut self, word: &str) -> Res<Vec<u64>> {
        let mut line = String::new();
        self.ctl.read_line(&mut line)?;
        let mut words = line.split_whitespace();
        if words.next() != Some(word) {
            let status = if line.is_empty() {
                format!("exited ({:?})", self.child.wait()?)
            } else {
                line.trim_end().to_owned()
            };
            return Err(format!("child `{}` (expected `{word}`): {status}", self.role).into());
        }
        Ok(words.map(str::parse).collect::<Result<_, _>>()?)
    }

    /// Sends the start byte. The pipe stays open until [`finish`](Self::finish).
    fn go(&mut self) -> Res<()> {
        self.go.as_mut().ok_or("no start pipe")?.write_all(b"g")?;
        Ok(())
    }

    /// Closes the child's stdin (a producer waits for that to leave) and waits for its exit.
    fn finish(mut self) -> Res<()> {
        drop(self.go.take());
        let status = self.child.wait()?;
        self.waited = true;
        if !status.success() {
            return Err(format!("child `{}` failed: {status}", self.role).into());
        }
        Ok(())
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if !self.waited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn child(role: &str) -> Res<()> {
    let words: Vec<&str> = role.split(' ').collect();
    match words[..] {
        ["qecho", a, b, spin] => queue_echo(a, b, spin.parse()?),
        ["fdecho"] => fd_echo(),
        ["qprod", size, id, secs, name] => {
            let (id, secs) = (id.parse()?, secs.parse()?);
            sized!(size.parse::<usize>()?, queue_producer(name, id, secs))
        }
        ["sprod", size, id, secs, name] => {
            let (id, secs) = (id.parse()?, secs.parse()?);
            sized!(size.parse::<usize>()?, spsc_producer(name, id, secs))
        }
        ["scons", size, name] => sized!(size.parse::<usize>()?, spsc_consumer(name)),
        ["qcons", size, single, name] => {
            let single = single == "1";
            sized!(size.parse::<usize>()?, queue_consumer(name, single))
        }
        ["fdprod", size, id, secs] => {
            let (id, secs) = (id.parse()?, secs.parse()?);
            match size.parse::<usize>()? {
                BIG => fd_big_producer(id, secs),
                size => sized!(size, fd_producer(id, secs)),
            }
        }
        ["fdcons", size, single] => {
            let single = single == "1";
            match size.parse::<usize>()? {
                BIG => fd_big_consumer(),
                size => sized!(size, fd_consumer(single)),
            }
        }
        ["cecho", name, spin] => conn_echo(name, spin.parse()?),
        ["cprod", size, id, secs, name] => {
            let (id, secs) = (id.parse()?, secs.parse()?);
            match size.parse::<usize>()? {
                BIG => conn_big_producer(name, id, secs),
                size => sized!(size, conn_producer(name, id, secs)),
            }
        }
        ["ccons", size, name] => match size.parse::<usize>()? {
            BIG => conn_big_consumer(name),
            size => sized!(size, conn_consumer(name)),
        },
        ["chold", name] => {
            let _held = mpshm::Connection::open(name)?;
            report("ready")?;
            wait_go() // never comes: the parent kills us
        }
        ["fdhold"] => {
            report("ready")?;
            wait_go()
        }
        _ => Err("unknown role".into()),
    }
}

/// A line to the parent.
fn report(line: &str) -> Res<()> {
    let mut err = std::io::stderr().lock();
    writeln!(err, "{line}")?;
    err.flush()?;
    Ok(())
}

/// Our stdin as an unbuffered file (std's `Stdin` would read ahead 8 KiB at a time).
fn raw_stdin() -> Res<File> {
    Ok(File::from(std::io::stdin().as_fd().try_clone_to_owned()?))
}

/// Our stdout as an unbuffered file (std's `Stdout` buffers lines).
fn raw_stdout() -> Res<File> {
    Ok(File::from(std::io::stdout().as_fd().try_clone_to_owned()?))
}

/// Fills `buf` with exactly one record: `false` at a clean end of file.
fn read_record(input: &mut File, buf: &mut [u8]) -> Res<bool> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err("end of file inside a record".into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

fn queue_echo(a: &str, b: &str, spin: u32) -> Res<()> {
    let there = Queue::<u64>::open(a)?;
    let back = Queue::<u64>::open(b)?;
    there.set_spin(spin);
    back.set_spin(spin);
    report("ready")?;
    while let Ok(v) = there.get() {
        back.put(v.wrapping_add(1)).map_err(|e| e.to_string())?;
    }
    Ok(())
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

/// Waits for the end of stdin.
fn wait_eof() -> Res<()> {
    let mut stdin = raw_stdin()?;
    loop {
        match stdin.read(&mut [0]) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits for the start byte on stdin.
fn wait_go() -> Res<()> {
    let mut byte = [0];
    raw_stdin()?.read_exact(&mut byte)?;
    Ok(())
}

/// Writes `tag` into the first 8 bytes of `msg` and its complement into the last 8.
fn stamp(msg: &mut [u8], tag: u64) {
    msg[..8].copy_from_slice(&tag.to_ne_bytes());
    let n = msg.len();
    if n >= 16 {
        msg[n - 8..].copy_from_slice(&(!tag).to_ne_bytes());
    }
}

/// Sends messages from producer `id` through `send` for `secs`; how many.
fn produce<const N: usize>(
    id: u64,
    secs: f64,
    mut send: impl FnMut(&[u8; N]) -> Res<()>,
) -> Res<u64> {
    let mut msg = [0u8; N];
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut seq = 0;
    loop {
        for _ in 0..16 {
            stamp(&mut msg, id << 48 | seq);
            send(&msg)?;
            seq += 1;
        }
        if Instant::now() >= end {
            return Ok(seq);
        }
    }
}

fn queue_producer<const N: usize>(name: &str, id: u64, secs: f64) -> Res<()> {
    let q = Queue::<[u8; N]>::open(name)?;
    report("ready")?;
    wait_go()?;
    let n = produce(id, secs, |m: &[u8; N]| {
        // A consumer that fails closes the queue (see `queue_consumer`).
        q.put(*m).map_err(|e| format!("put: {e}").into())
    })?;
    report(&format!("sent {n}"))?;
    // The handle stays, and with it this producer's place on the queue, until the parent has
    // heard from every producer (it then closes our stdin): a consumer's get says
    // `Disconnected` once every producer that attached has gone, so one that left before
    // another began would end the consumers early.
    wait_eof()
}

fn spsc_producer<const N: usize>(name: &str, id: u64, secs: f64) -> Res<()> {
    let tx = mpshm::SpscProducer::<[u8; N]>::open(name)?;
    report("ready")?;
    wait_go()?;
    let n = produce(id, secs, |m: &[u8; N]| {
        tx.put(*m).map_err(|e| format!("put: {e}").into())
    })?;
    tx.close();
    report(&format!("sent {n}"))
}

fn fd_producer<const N: usize>(id: u64, secs: f64) -> Res<()> {
    let mut out = raw_stdout()?;
    report("ready")?;
    wait_go()?;
    let n = produce(id, secs, |m: &[u8; N]| Ok(out.write_all(m)?))?;
    report(&format!("sent {n}"))
}

/// Checks what one consumer receives.
struct Check {
    /// One consumer takes everything: sequences must have no gaps.
    single: bool,
    next: [u64; MAX_PRODUCERS],
    count: u64,
    sum: u64,
}

impl Check {
    fn new(single: bool) -> Check {
        Check {
            single,
            next: [0; MAX_PRODUCERS],
            count: 0,
            sum: 0,
        }
    }

    fn see(&mut self, msg: &[u8]) -> Res<()> {
        let word = |at: usize| u64::from_ne_bytes(msg[at..at + 8].try_into().expect("8 bytes"));
        let tag = word(0);
        if msg.len() >= 16 && word(msg.len() - 8) != !tag {
            return Err(format!(
                "torn message: head {tag:#x}, tail {:#x}",
                word(msg.len() - 8)
            )
            .into());
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
        self.count += 1;
        self.sum = self.sum.wrapping_add(tag);
        Ok(())
    }

    fn report(&self) -> Res<()> {
        report(&format!("got {} {}", self.count, self.sum))
    }
}

fn queue_consumer<const N: usize>(name: &str, single: bool) -> Res<()> {
    let q = Queue::<[u8; N]>::open(name)?;
    report("ready")?;
    let mut check = Check::new(single);
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

/// Creates the queue `name`, keeps the consumer and leaves the producer to be opened.
fn spsc_consumer<const N: usize>(name: &str) -> Res<()> {
    let (tx, rx) = SpscQueue::create::<[u8; N]>(name, capacity(N))?;
    tx.release();
    report("made")?;
    report("ready")?;
    let mut check = Check::new(true);
    while let Ok(msg) = rx.get() {
        if let Err(e) = check.see(&msg) {
            rx.close();
            return Err(e);
        }
    }
    check.report()
}

fn fd_consumer<const N: usize>(single: bool) -> Res<()> {
    let mut input = raw_stdin()?;
    report("ready")?;
    let mut check = Check::new(single);
    let mut buf = [0u8; N];
    while read_record(&mut input, &mut buf)? {
        check.see(&buf)?;
    }
    check.report()
}

// ---- pipe children -------------------------------------------------------------------------

fn conn_echo(name: &str, spin: u32) -> Res<()> {
    let conn = mpshm::Connection::open(name)?;
    conn.set_spin(spin);
    report("ready")?;
    loop {
        match conn.recv::<u64>() {
            Ok(v) => conn.send(&v.wrapping_add(1))?,
            Err(RecvError::Disconnected) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Creates the pipe `name`, keeps one end and leaves the other for the producer to open.
fn conn_create(name: &str) -> Res<mpshm::Connection> {
    let (mine, theirs) = Pipe::create(name)?;
    theirs.release();
    report("made")?;
    report("ready")?;
    Ok(mine)
}

fn conn_producer<const N: usize>(name: &str, id: u64, secs: f64) -> Res<()> {
    let conn = mpshm::Connection::open(name)?;
    report("ready")?;
    wait_go()?;
    let n = produce(id, secs, |m: &[u8; N]| Ok(conn.send_bytes(m)?))?;
    report(&format!("sent {n}"))
}

fn conn_consumer<const N: usize>(name: &str) -> Res<()> {
    let conn = conn_create(name)?;
    let mut check = Check::new(true);
    let mut buf = [0u8; N];
    loop {
        match conn.recv_bytes_into(&mut buf) {
            Ok(n) if n == N => check.see(&buf)?,
            Ok(n) => return Err(format!("a {n}-byte message, expected {N}").into()),
            Err(RecvError::Disconnected) => return check.report(),
            Err(e) => return Err(e.into()),
        }
    }
}

// ---- 1 MiB messages ------------------------------------------------------------------------

/// Every this many 1 MiB messages, one is written and checked word by word ...
const BIG_FULL_EVERY: u64 = 8;
/// ... and the others at every this many words.
const BIG_SAMPLE: usize = 64;

fn big_step(tag: u64) -> usize {
    if (tag & SEQ_MASK) % BIG_FULL_EVERY == 0 {
        1
    } else {
        BIG_SAMPLE
    }
}

/// Word `i` of the message tagged `tag` (but for the first and last words: see [`stamp`]).
fn big_word(tag: u64, i: usize) -> u64 {
    tag ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn big_fill(msg: &mut [u8], tag: u64) {
    for (i, w) in msg.chunks_exact_mut(8).enumerate().step_by(big_step(tag)) {
        w.copy_from_slice(&big_word(tag, i).to_ne_bytes());
    }
    stamp(msg, tag);
}

/// Checks the words [`big_fill`] wrote (the tag and its complement are [`Check::see`]'s).
fn big_check(msg: &[u8]) -> Res<()> {
    let word = |w: &[u8]| u64::from_ne_bytes(w.try_into().expect("8 bytes"));
    let tag = word(&msg[..8]);
    let last = msg.len() / 8 - 1;
    for (i, w) in msg.chunks_exact(8).enumerate().step_by(big_step(tag)) {
        if i != 0 && i != last && word(w) != big_word(tag, i) {
            return Err(format!(
                "message {tag:#x}: word {i} is {:#x}, expected {:#x}",
                word(w),
                big_word(tag, i)
            )
            .into());
        }
    }
    Ok(())
}

/// Sends [`BIG`]-byte messages from producer `id` for `secs`; how many. `send` gets each message
/// with its length (8 bytes) in front.
fn produce_big(id: u64, secs: f64, mut send: impl FnMut(&[u8]) -> Res<()>) -> Res<u64> {
    let mut buf = vec![0u8; 8 + BIG];
    buf[..8].copy_from_slice(&(BIG as u64).to_ne_bytes());
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut seq = 0;
    loop {
        big_fill(&mut buf[8..], id << 48 | seq);
        send(&buf)?;
        seq += 1;
        if Instant::now() >= end {
            return Ok(seq);
        }
    }
}

/// Checks every [`BIG`]-byte message `recv` puts into its buffer, until it returns `false`.
fn consume_big(mut recv: impl FnMut(&mut [u8]) -> Res<bool>) -> Res<()> {
    let mut check = Check::new(true);
    let mut buf = vec![0u8; BIG];
    while recv(&mut buf)? {
        check.see(&buf)?;
        big_check(&buf)?;
    }
    check.report()
}

fn fd_big_producer(id: u64, secs: f64) -> Res<()> {
    let mut out = raw_stdout()?;
    report("ready")?;
    wait_go()?;
    let n = produce_big(id, secs, |m| Ok(out.write_all(m)?))?;
    report(&format!("sent {n}"))
}

fn fd_big_consumer() -> Res<()> {
    let mut input = raw_stdin()?;
    report("ready")?;
    consume_big(|buf| {
        let mut len = [0u8; 8];
        if !read_record(&mut input, &mut len)? {
            return Ok(false);
        }
        let len = u64::from_ne_bytes(len);
        if len != buf.len() as u64 {
            return Err(format!("a {len}-byte message, expected {}", buf.len()).into());
        }
        if !read_record(&mut input, buf)? {
            return Err("end of file inside a message".into());
        }
        Ok(true)
    })
}

fn conn_big_producer(name: &str, id: u64, secs: f64) -> Res<()> {
    let conn = mpshm::Connection::open(name)?;
    report("ready")?;
    wait_go()?;
    let n = produce_big(id, secs, |m| Ok(conn.send_bytes(&m[8..])?))?;
    report(&format!("sent {n}"))
}

fn conn_big_consumer(name: &str) -> Res<()> {
    let conn = conn_create(name)?;
    consume_big(|buf| match conn.recv_bytes_into(buf) {
        Ok(n) if n == buf.len() => Ok(true),
        Ok(n) => Err(format!("a {n}-byte message, expected {}", buf.len()).into()),
        Err(RecvError::Disconnected) => Ok(false),
        Err(e) => Err(e.into()),
    })
}
