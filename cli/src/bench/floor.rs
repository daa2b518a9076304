//! The physical floor: what two processes pay for the same handoffs with nothing but shared
//! memory and the kernel, and no mpshm code — the limit every mpshm row is a ratio to.
//!
//! - **Ping-pong** (round trips): one 32-bit word in a shared page; the parent writes an odd
//!   value, the child answers with the next even one. Spinning: both sides spin on the word (a
//!   cache line crossing cores and back). Futex: each side writes, calls `FUTEX_WAKE`, and waits
//!   with `FUTEX_WAIT` until the answer comes: a bare futex ping-pong, both sides asleep in the
//!   kernel at every turn, with no check of whether anyone sleeps.
//! - **SPSC ring** (streams): about fifty lines of the textbook single-producer,
//!   single-consumer ring (Lamport's, with each side caching the other's index): head and tail
//!   on their own cache lines, messages copied in and out with `memcpy`, each side spinning
//!   while it must wait (with the backoff every spinner on a shared machine needs, [`Backoff`]).
//!   Slots of the message size up to 16 KiB, about 1 MiB of them (a longer message takes
//!   several slots), so that the ring stays in cache as mpshm's `Pipe` does.
//! - **Locked counter**: two processes running `c/robust_counter.c`, a robust process-shared
//!   pthread mutex around `++` (see `counter.rs`).
//! - **Lock owner death**: the same mutex; a child takes it and is killed, and the time runs
//!   until a waiter's `pthread_mutex_lock` returns `EOWNERDEAD` (see `death.rs`).
//!
//! The pages are plain POSIX shared memory (`shm.rs`); the only unsafe code is the ring's copy
//! into and out of its slots, ordered by the Release store and Acquire load of the index that
//! publishes the slot.

use std::process::Stdio;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::{Duration, Instant};

use rustix::thread::futex;

use super::shm::Page;
use super::transport::{Check, Producer, capacity, time_ops};
use super::{Ctx, Sample};
use crate::kit::{Res, report};

/// How a ping-pong side waits for the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PingPong {
    Spin,
    Futex,
}

impl PingPong {
    pub fn arg(self) -> &'static str {
        match self {
            PingPong::Spin => "spin",
            PingPong::Futex => "futex",
        }
    }

    fn parse(s: &str) -> Res<PingPong> {
        match s {
            "spin" => Ok(PingPong::Spin),
            "futex" => Ok(PingPong::Futex),
            _ => Err(format!("no ping-pong mode {s:?}").into()),
        }
    }
}

/// Waiting the way a spinner on a shared machine must: a few growing spins (127 pauses in all,
/// a few microseconds), then `sched_yield` each round, so that a peer sharing this core runs.
/// mpshm's own waits back off the same way before they park.
#[derive(Default)]
struct Backoff(u32);

impl Backoff {
    fn snooze(&mut self) {
        if self.0 <= 6 {
            for _ in 0..(1u32 << self.0) {
                std::hint::spin_loop();
            }
            self.0 += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

/// The value that tells the child to stop.
const STOP: u32 = u32::MAX;
/// How long a side waits for the other before it gives up (the other died).
const GIVE_UP: Duration = Duration::from_secs(10);

/// Waits until `word` holds `want` (or, for the child, anything but `seen`), as `mode` says.
fn wait_while(word: &AtomicU32, mode: PingPong, done: impl Fn(u32) -> bool) -> Res<u32> {
    let start = Instant::now();
    let mut spins = 0u32;
    let mut backoff = Backoff::default();
    loop {
        // Acquire: pairs with the other side's Release store of its answer.
        let w = word.load(Acquire);
        if done(w) {
            return Ok(w);
        }
        match mode {
            PingPong::Spin => {
                backoff.snooze();
                spins = spins.wrapping_add(1);
                if !spins.is_multiple_of(4096) {
                    continue;
                }
            }
            PingPong::Futex => {
                // A shared (not private) futex: the other side is another process. EAGAIN (the
                // word moved already) and EINTR just mean: look again.
                let timeout = rustix::time::Timespec {
                    tv_sec: 1,
                    tv_nsec: 0,
                };
                let _ = futex::wait(word, futex::Flags::empty(), w, Some(&timeout));
            }
        }
        if start.elapsed() > GIVE_UP {
            return Err("the other side of the ping-pong stopped answering".into());
        }
    }
}

fn wake(word: &AtomicU32, mode: PingPong) {
    if mode == PingPong::Futex {
        let _ = futex::wake(word, futex::Flags::empty(), 1);
    }
}

/// One round of round trips over a shared word.
pub fn ping_pong(ctx: &mut Ctx, mode: PingPong) -> Res<Sample> {
    let page = Page::create(4096)?;
    let word = page.u32_at(0);
    let mut kid = ctx.spawn(
        format!("ppecho {} {}", page.name(), mode.arg()),
        Stdio::null(),
        Stdio::null(),
    )?;
    kid.expect("ready")?;
    let sample = time_ops(ctx.secs, |i| {
        let v = (2 * i + 1) as u32;
        // Release: pairs with the child's Acquire load.
        word.store(v, Release);
        wake(word, mode);
        wait_while(word, mode, |w| w == v.wrapping_add(1)).map(drop)
    });
    word.store(STOP, Release);
    wake(word, mode);
    let sample = sample?;
    kid.finish()?;
    Ok(sample)
}

/// The child of [`ping_pong`]: answers every odd value with the next one, until [`STOP`].
fn ping_pong_echo(name: &str, mode: &str) -> Res<()> {
    let mode = PingPong::parse(mode)?;
    let page = Page::open(name)?;
    let word = page.u32_at(0);
    report("ready")?;
    let mut answered = 0;
    loop {
        let w = wait_while(word, mode, |w| w == STOP || (w % 2 == 1 && w != answered))?;
        if w == STOP {
            return Ok(());
        }
        answered = w;
        // Release: pairs with the parent's Acquire load.
        word.store(w.wrapping_add(1), Release);
        wake(word, mode);
    }
}

/// Where the ring's words are: head, tail and the producer's "done" flag on cache lines of
/// their own, then the slots.
const HEAD: usize = 0;
const TAIL: usize = 128;
const DONE: usize = 256;
const SLOTS: usize = 384;
/// The largest slot: a longer message travels as several slots' worth, so that the ring stays
/// about 1 MiB (in cache) whatever the message size.
const MAX_SLOT: usize = 16 << 10;

/// A minimal SPSC ring in a shared page: `capacity(slot)` slots of `slot` bytes, where `slot`
/// is the message size up to [`MAX_SLOT`]; a message fills `size / slot` consecutive slots.
pub struct Ring {
    page: Page,
    slot: usize,
    cap: u64,
}

impl Ring {
    /// The slot size and count for `size`-byte messages.
    fn geometry(size: usize) -> (usize, usize) {
        let slot = size.min(MAX_SLOT);
        (slot, capacity(slot))
    }

    /// Makes the ring for `size`-byte messages, for children to open by [`name`](Self::name).
    pub fn create(size: usize) -> Res<Ring> {
        let (slot, cap) = Ring::geometry(size);
        Ok(Ring {
            page: Page::create(SLOTS + cap * slot)?,
            slot,
            cap: cap as u64,
        })
    }

    fn open(name: &str, size: usize) -> Res<Ring> {
        let (slot, cap) = Ring::geometry(size);
        let page = Page::open(name)?;
        if page.len() != SLOTS + cap * slot {
            return Err(format!(
                "the ring is {} bytes, not {}",
                page.len(),
                SLOTS + cap * slot
            )
            .into());
        }
        Ok(Ring {
            page,
            slot,
            cap: cap as u64,
        })
    }

    pub fn name(&self) -> &str {
        self.page.name()
    }

    fn slot(&self, pos: u64) -> *mut u8 {
        let i = (pos % self.cap) as usize;
        // In bounds: `i < cap`, and the page holds `cap` slots after `SLOTS` (checked at open).
        self.page.base().wrapping_add(SLOTS + i * self.slot)
    }
}

/// The producer child: sends for the time given, then marks the ring done.
pub fn ring_producer(name: &str, size: usize, p: Producer) -> Res<()> {
    let ring = Ring::open(name, size)?;
    let (head, tail) = (ring.page.u64_at(HEAD), ring.page.u64_at(TAIL));
    let mut msg = vec![0u8; size];
    let mut pos = 0u64;
    let mut head_seen = 0u64;
    p.run(&mut msg[..], |m| {
        for chunk in m.chunks(ring.slot) {
            if pos - head_seen == ring.cap {
                let start = Instant::now();
                let mut backoff = Backoff::default();
                loop {
                    // Acquire: pairs with the consumer's Release store of `head`: it has copied
                    // the slot out before we overwrite it.
                    head_seen = head.load(Acquire);
                    if pos - head_seen < ring.cap {
                        break;
                    }
                    backoff.snooze();
                    if start.elapsed() > GIVE_UP {
                        return Err("the ring's consumer stopped taking".into());
                    }
                }
            }
            // SAFETY: the slot lies in the mapping (`Ring::slot`) and `chunk` is at most a slot
            // long; the consumer does not read it until the Release store of `tail` below
            // publishes it, and has finished with its previous contents (the Acquire load of
            // `head` above).
            unsafe { std::ptr::copy_nonoverlapping(chunk.as_ptr(), ring.slot(pos), chunk.len()) };
            pos += 1;
            // Release: pairs with the consumer's Acquire load of `tail`.
            tail.store(pos, Release);
        }
        Ok(())
    })?;
    // Release: after the last message's `tail`.
    ring.page.u64_at(DONE).store(1, Release);
    Ok(())
}

/// The consumer child: takes and checks messages until the producer is done and the ring empty.
pub fn ring_consumer(name: &str, size: usize) -> Res<()> {
    let ring = Ring::open(name, size)?;
    let (head, tail) = (ring.page.u64_at(HEAD), ring.page.u64_at(TAIL));
    report("made")?;
    report("ready")?;
    let mut check = Check::new(true, size);
    let mut buf = vec![0u8; size];
    let mut pos = 0u64;
    let mut tail_seen = 0u64;
    loop {
        for (k, chunk) in buf.chunks_mut(ring.slot).enumerate() {
            let mut idle: Option<(Instant, Backoff)> = None;
            while pos == tail_seen {
                // Acquire: pairs with the producer's Release store of `tail`.
                tail_seen = tail.load(Acquire);
                if pos != tail_seen {
                    break;
                }
                // Acquire: pairs with the Release store of `DONE`, after the last `tail`.
                if ring.page.u64_at(DONE).load(Acquire) == 1 && tail.load(Relaxed) == pos {
                    if k != 0 {
                        return Err("the ring ended inside a message".into());
                    }
                    return check.report();
                }
                let (since, backoff) = idle.get_or_insert_with(|| (Instant::now(), Backoff(0)));
                if since.elapsed() > GIVE_UP && ring.page.u64_at(DONE).load(Relaxed) == 0 {
                    // The producer never started (it waits for the start line), or died.
                    return Err("the ring's producer stopped sending".into());
                }
                backoff.snooze();
            }
            // SAFETY: the slot lies in the mapping and `chunk` is at most a slot long; the
            // producer published it (the Acquire load of `tail` above) and does not write it
            // again until the Release store of `head` below.
            unsafe {
                std::ptr::copy_nonoverlapping(ring.slot(pos), chunk.as_mut_ptr(), chunk.len())
            };
            pos += 1;
            // Release: pairs with the producer's Acquire load of `head`.
            head.store(pos, Release);
        }
        check.see(&buf)?;
    }
}

unsafe extern "C" {
    fn mpshm_floor_mutex_size() -> usize;
    fn mpshm_floor_mutex_init(m: *mut u8) -> i32;
    fn mpshm_floor_count(m: *mut u8, counter: *mut u64, n: u64) -> i32;
    fn mpshm_floor_hold(m: *mut u8) -> i32;
    fn mpshm_floor_take_from_dead(m: *mut u8) -> i32;
}

/// The locked counter of `c/robust_counter.c` in a shared page: the mutex, then the counter.
pub struct CCounter {
    pub page: Page,
}

/// Where the counter lies after the mutex.
fn counter_offset() -> usize {
    // SAFETY: a plain C function returning `sizeof(pthread_mutex_t)`.
    unsafe { mpshm_floor_mutex_size() }.next_multiple_of(64)
}

impl CCounter {
    pub fn create() -> Res<CCounter> {
        let page = Page::create(4096)?;
        assert!(counter_offset() + 8 <= page.len());
        // SAFETY: the page is fresh, page-aligned and only ours until a child is told its name;
        // the mutex fits before the counter (checked above).
        let r = unsafe { mpshm_floor_mutex_init(page.base()) };
        if r != 0 {
            return Err(std::io::Error::from_raw_os_error(r).into());
        }
        Ok(CCounter { page })
    }

    pub fn open(name: &str) -> Res<CCounter> {
        let page = Page::open(name)?;
        if counter_offset() + 8 > page.len() {
            return Err("the counter's page is too short".into());
        }
        Ok(CCounter { page })
    }

    /// `n` rounds of lock, `++`, unlock, in C.
    pub fn count(&self, n: u64) -> Res<()> {
        // SAFETY: the mutex was initialised by the creator before any child learnt the page's
        // name; the counter is 8-aligned inside the page and only touched under the mutex.
        let r = unsafe {
            mpshm_floor_count(
                self.page.base(),
                self.page.base().add(counter_offset()).cast(),
                n,
            )
        };
        if r != 0 {
            return Err(std::io::Error::from_raw_os_error(r).into());
        }
        Ok(())
    }

    /// Takes the mutex and keeps it (a holder about to be killed).
    pub fn hold(&self) -> Res<()> {
        // SAFETY: the mutex was initialised by the creator before any child learnt the page's
        // name, and lies at the start of the page.
        match unsafe { mpshm_floor_hold(self.page.base()) } {
            0 => Ok(()),
            r => Err(std::io::Error::from_raw_os_error(r).into()),
        }
    }

    /// Takes the mutex, whose holder was killed, and releases it again: `Ok` if
    /// `pthread_mutex_lock` reported the death (`EOWNERDEAD`), an error otherwise.
    pub fn take_from_dead(&self) -> Result<(), String> {
        // SAFETY: as in `hold`.
        match unsafe { mpshm_floor_take_from_dead(self.page.base()) } {
            r if r == rustix::io::Errno::OWNERDEAD.raw_os_error() => Ok(()),
            0 => Err("the lock was taken cleanly: the owner's death went unreported".to_owned()),
            r => Err(format!(
                "pthread_mutex_lock: {}",
                std::io::Error::from_raw_os_error(r)
            )),
        }
    }

    pub fn total(&self) -> u64 {
        self.page.u64_at(counter_offset()).load(Acquire)
    }
}

/// Runs a floor child's role; `None` if `words` is none of them.
pub fn child(words: &[&str]) -> Option<Res<()>> {
    Some(match *words {
        ["ppecho", name, mode] => ping_pong_echo(name, mode),
        _ => return None,
    })
}
