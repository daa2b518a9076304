//! [`Queue`], [`JoinableQueue`] and [`SimpleQueue`]: Python's `multiprocessing` queues as a
//! bounded lock-free ring in one named segment (see `ring.rs` for the algorithm and its
//! guarantees under peer death).
//!
//! Messages are any `T: bytemuck::Pod`, copied by value into a slot: no serialisation, no
//! feeder thread, no syscall unless a side sleeps.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::attach::{Attachment, MAX_ATTACHED, Table, Watch, table_size};
use crate::error::{
    Error, GetError, GetTimeoutError, JoinError, PutError, PutTimeoutError, TryGetError,
    TryPutError,
};
use crate::ring::{self, CTL_SIZE, Fail, NoPeers, Peers, Ring, RingCtl, TryGet, TryPut};
use crate::segment::{Kind, Options, Segment, Spec};
use crate::sync::fence;
use crate::sys;
use crate::wait::{Bump, WaitSet};

/// The largest capacity accepted.
const MAX_CAPACITY: usize = 1 << 32;
/// The longest message slot accepted: 64 MiB.
const MAX_MESSAGE: usize = 64 << 20;
/// How many rounds a blocked `put`/`get` spins before it sleeps, unless told otherwise.
pub(crate) const DEFAULT_SPIN: u32 = ring::SPUN_AFTER;

/// The producers' table of attachment records, and the consumers'.
const PRODUCERS: usize = 0;
const CONSUMERS: usize = 1;

/// Where the attachment tables start in the payload of a ring of `cap` slots of `max_len`-byte
/// messages: after the ring, on a fresh pair of cache lines.
fn tables_offset(cap: usize, max_len: usize) -> Option<usize> {
    ring::slot_words(max_len)
        .and_then(|w| w.checked_mul(cap)?.checked_mul(8)?.checked_add(CTL_SIZE))
        .map(|b| b.next_multiple_of(128))
}

/// The segment layout of a ring of `cap` slots of `max_len`-byte messages, with tables of
/// `attached` producer and consumer records.
pub(crate) fn ring_spec(
    kind: Kind,
    cap: usize,
    max_len: usize,
    attached: usize,
    tag: String,
) -> Result<Spec, Error> {
    if cap == 0 || cap > MAX_CAPACITY {
        return Err(Error::InvalidLength {
            len: cap,
            reason: "a queue's capacity must be 1 to 2^32",
        });
    }
    if attached == 0 || attached > MAX_ATTACHED {
        return Err(Error::InvalidLength {
            len: attached,
            reason: "a queue records 1 to 1024 producers (and consumers): see Options::max_attached",
        });
    }
    let bytes = tables_offset(cap, max_len)
        .and_then(|b| b.checked_add(2 * table_size(attached)))
        .ok_or(Error::InvalidLength {
            len: cap,
            reason: "the queue would not fit in memory",
        })?;
    Ok(Spec {
        kind,
        elem_size: 1,
        elem_align: 128,
        count: Some(bytes),
        tag,
        params: [cap as u64, max_len as u64, attached as u64, 0],
    })
}

/// A mapped ring: the segment and the checked geometry, and this handle's attachments.
pub(crate) struct RingSeg {
    seg: Segment,
    cap: usize,
    max_len: usize,
    /// Records per attachment table.
    attached: usize,
    /// This handle as a producer (from its first put) and as a consumer (its first get).
    sides: [Attachment; 2],
    /// The pid this handle claims slots under, and `sys::forks()` when it was read: a handle
    /// inherited through `fork` claims under the child's pid instead (see `ring`).
    pid: u32,
    forks: u32,
    joinable: bool,
    spin: AtomicU32,
}

impl RingSeg {
    pub(crate) fn create(name: &str, spec: &Spec, opts: &Options) -> Result<RingSeg, Error> {
        let (cap, max_len) = (spec.params[0] as usize, spec.params[1] as usize);
        let attached = spec.params[2] as usize;
        let (pid, forks) = (sys::thread_ids().0, sys::forks());
        let joinable = spec.kind == Kind::JoinableQueue;
        let mut made = Ok(());
        let seg = Segment::create(name, spec, opts, |seg| {
            ring_view(seg, cap, max_len, pid, joinable).init();
            made = (0..2).try_for_each(|side| table_view(seg, cap, max_len, attached, side).init());
        })?;
        // A mutex that would not initialise: the segment is dropped (and unlinked) here.
        made?;
        Ok(RingSeg {
            seg,
            cap,
            max_len,
            attached,
            sides: Default::default(),
            pid,
            forks,
            joinable,
            spin: AtomicU32::new(DEFAULT_SPIN),
        }
        .checked_in())
    }

    /// Opens a ring segment of `kind` whose messages carry `tag`; `max_len` if the caller
    /// needs one exact message size.
    pub(crate) fn open(
        name: &str,
        kind: Kind,
        tag: String,
        max_len: Option<usize>,
        opts: &Options,
    ) -> Result<RingSeg, Error> {
        let spec = Spec {
            kind,
            elem_size: 1,
            elem_align: 128,
            count: None,
            tag,
            params: [0; 4],
        };
        let seg = Segment::open(name, &spec, opts)?;
        let (cap, len, attached) = geometry(&seg).map_err(|reason| Error::Corrupt {
            name: seg.name().to_owned(),
            reason,
        })?;
        if let Some(want) = max_len {
            if want != len {
                return Err(Error::LayoutMismatch {
                    name: seg.name().to_owned(),
                    expected: format!("{want}-byte messages"),
                    found: format!("{len}-byte messages"),
                });
            }
        }
        Ok(RingSeg {
            seg,
            cap,
            max_len: len,
            attached,
            sides: Default::default(),
            pid: sys::thread_ids().0,
            forks: sys::forks(),
            joinable: kind == Kind::JoinableQueue,
            spin: AtomicU32::new(DEFAULT_SPIN),
        }
        .checked_in())
    }

    /// Registers this process for `membarrier` before its first operation (`fence::asymmetric`
    /// does, once); a process that cannot run it says so in the ring, so that no side is handed
    /// to a single thread while it is around (see `ring/bias.rs`).
    fn checked_in(self) -> RingSeg {
        if !fence::asymmetric() {
            self.ring().forbid_bias();
        }
        self
    }

    #[inline(always)]
    pub(crate) fn ring(&self) -> Ring<'_> {
        // A child that inherited this handle through `fork` must claim slots under its own pid:
        // under its parent's, a claim it died in would look alive for as long as the parent
        // runs, and the slot would never be reclaimed.
        let pid = if sys::forks() == self.forks {
            self.pid
        } else {
            sys::thread_ids().0
        };
        ring_view(&self.seg, self.cap, self.max_len, pid, self.joinable)
    }

    #[inline]
    pub(crate) fn spin(&self) -> u32 {
        self.spin.load(Ordering::Relaxed)
    }

    pub(crate) fn set_spin(&self, rounds: u32) {
        self.spin.store(rounds, Ordering::Relaxed);
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    /// The attachment table of `side` (`PRODUCERS` or `CONSUMERS`).
    fn table(&self, side: usize) -> Table<'_> {
        table_view(&self.seg, self.cap, self.max_len, self.attached, side)
    }

    /// Attaches this handle as a producer (or consumer) if it is not yet, in this process.
    #[inline]
    fn attach(&self, side: usize) {
        if !self.sides[side].attached() {
            self.sides[side].attach_any(&self.table(side));
        }
    }

    /// Whether every producer (or consumer) that attached has detached or died.
    fn gone(&self, side: usize) -> bool {
        self.table(side).none_alive()
    }

    /// Counts the caller as a waiting consumer and adds what it sleeps on: the consumers'
    /// eventcount and the producers' liveness; `false` if something changed meanwhile.
    pub(crate) fn wait_on<'a>(&'a self, set: &mut WaitSet<'a>) -> bool {
        let (epoch, waiters) = self.ring().get_wait();
        set.count(epoch, waiters);
        self.table(PRODUCERS)
            .watch_all(set, Bump([Some(epoch), None]))
            == Watch::Sleep
    }

    /// Whether a get would not wait: a message is there, the queue is closed, or its producers
    /// are gone.
    pub(crate) fn ready(&self) -> bool {
        self.ring().readable() || self.gone(PRODUCERS)
    }
}

impl Drop for RingSeg {
    fn drop(&mut self) {
        let ring = self.ring();
        // The other side's waiters look again: they may be disconnected now.
        for (side, (epoch, waiters)) in [(PRODUCERS, ring.get_wait()), (CONSUMERS, ring.put_wait())]
        {
            if self.sides[side].detach(&self.table(side)) {
                ring::wake(epoch, waiters);
            }
        }
    }
}

/// The processes on the other side of a blocked put (the consumers) or get (the producers).
struct QueuePeers<'a> {
    seg: &'a RingSeg,
    /// The side whose departure ends the wait.
    other: usize,
}

impl Peers for QueuePeers<'_> {
    #[cold]
    #[inline(never)]
    fn gone(&self) -> bool {
        self.seg.gone(self.other)
    }

    #[cold]
    #[inline(never)]
    fn sleep(&self, epoch: &AtomicU32, seen: u32, timeout: Option<Duration>) {
        // The slow path: this handle arms its own record again if its arming thread is gone.
        let mine = 1 - self.other;
        self.seg.sides[mine].rearm(&self.seg.table(mine));
        let mut set = WaitSet::within(timeout);
        set.epoch(epoch, seen);
        if self
            .seg
            .table(self.other)
            .watch_all(&mut set, Bump([Some(epoch), None]))
            == Watch::Sleep
        {
            set.sleep(timeout);
        }
    }
}

fn table_view(
    seg: &Segment,
    cap: usize,
    max_len: usize,
    attached: usize,
    side: usize,
) -> Table<'_> {
    let off = seg.payload_offset()
        + tables_offset(cap, max_len).expect("checked geometry")
        + side * table_size(attached);
    Table::at(seg, off, attached, true)
}

#[inline(always)]
fn ring_view(seg: &Segment, cap: usize, max_len: usize, pid: u32, joinable: bool) -> Ring<'_> {
    let off = seg.payload_offset();
    let words = cap * ring::slot_words(max_len).expect("checked geometry");
    let ctl: &RingCtl = seg.shared(off);
    let slots: &[AtomicU64] = seg.shared_slice(off + CTL_SIZE, words);
    Ring::new(ctl, slots, cap, max_len, pid, joinable)
}

/// The geometry in a ring segment's header, `(capacity, max length, attachment records)`, if it
/// matches the segment's size; what does not, in words.
fn geometry(seg: &Segment) -> Result<(usize, usize, usize), String> {
    let [cap, len, attached, _] = seg.params();
    let expect = ring_spec(
        seg.kind(),
        cap as usize,
        len as usize,
        attached as usize,
        String::new(),
    )
    .ok()
    .and_then(|s| s.count);
    if cap == 0 || len > u32::MAX as u64 || expect != Some(seg.count()) {
        return Err(format!(
            "ring geometry {cap} × {len} B with {attached} attachment records does not match \
             its size {}",
            seg.count()
        ));
    }
    Ok((cap as usize, len as usize, attached as usize))
}

/// What [`inspect`](crate::inspect) shows of a queue, read without changing anything; an error
/// for a geometry that does not match the segment's size (checked as `RingSeg::open` does).
pub(crate) fn inspect(seg: &Segment) -> Result<crate::inspect::Found, String> {
    use crate::inspect::{Found, Role, State, records};
    let (cap, len, attached) = geometry(seg)?;
    let ring = ring_view(seg, cap, len, 0, seg.kind() == Kind::JoinableQueue);
    let tables = [PRODUCERS, CONSUMERS].map(|side| table_view(seg, cap, len, attached, side));
    let mut found = Found::plain(State::Queue {
        len: ring.len(),
        capacity: cap,
        max_message: len,
        closed: ring.is_closed(),
        lost: ring.lost(),
        untracked: tables.map(|t| t.untracked()),
    });
    found.attached = records(&tables[PRODUCERS], |_| Role::Producer);
    found
        .attached
        .extend(records(&tables[CONSUMERS], |_| Role::Consumer));
    Ok(found)
}

/// The deadline `timeout` from now; `None` (wait forever) for one too large to represent.
pub(crate) fn deadline(timeout: Duration) -> Option<Instant> {
    // A timeout too large to represent waits forever.
    Instant::now().checked_add(timeout)
}

/// How a blocking or non-blocking operation may wait.
#[derive(Clone, Copy)]
enum Wait {
    /// Never (the `try_` forms).
    No,
    /// Until the deadline (forever if `None`), or until the other side is gone.
    Until(Option<Instant>),
    /// Until the deadline, whether or not the other side is there (it may come later): only a
    /// close ends the wait early (the process module's channels).
    UntilClosed(Option<Instant>),
}

/// Why a put did not happen, before the message is handed back in a public error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PutFail {
    Full,
    Timeout,
    Closed,
    Disconnected,
    TooLarge,
    #[cfg_attr(
        not(feature = "serde"),
        allow(dead_code, reason = "only serde messages can fail to encode")
    )]
    Encode,
}

/// Why a get did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GetFail {
    Empty,
    Timeout,
    Closed,
    Disconnected,
    Decode,
}

impl From<Fail> for PutFail {
    fn from(f: Fail) -> PutFail {
        match f {
            Fail::Timeout => PutFail::Timeout,
            Fail::Closed => PutFail::Closed,
            Fail::Disconnected => PutFail::Disconnected,
        }
    }
}

impl From<Fail> for GetFail {
    fn from(f: Fail) -> GetFail {
        match f {
            Fail::Timeout => GetFail::Timeout,
            Fail::Closed => GetFail::Closed,
            Fail::Disconnected => GetFail::Disconnected,
        }
    }
}

impl RingSeg {
    #[inline(always)]
    fn put_bytes(&self, msg: &[u8], wait: Wait) -> Result<(), PutFail> {
        if msg.len() > self.max_len {
            return Err(PutFail::TooLarge);
        }
        self.attach(PRODUCERS);
        let ring = self.ring();
        match wait {
            Wait::Until(deadline) => {
                let peers = QueuePeers {
                    seg: self,
                    other: CONSUMERS,
                };
                Ok(ring.put_watching(msg, deadline, self.spin(), &peers)?)
            }
            Wait::UntilClosed(deadline) => {
                Ok(ring.put_watching(msg, deadline, self.spin(), &NoPeers)?)
            }
            Wait::No => {
                // Looked at only once the queue is found full, and then before one more try,
                // so that a consumer's last take before it went is seen.
                let mut gone = None;
                loop {
                    if ring.is_closed() {
                        return Err(PutFail::Closed);
                    }
                    match ring.try_put(msg) {
                        TryPut::Done => return Ok(()),
                        TryPut::Full {
                            stuck: Some((pos, w)),
                        } if ring.reclaim(pos, w) => {}
                        TryPut::Full { .. } if gone.is_none() => {
                            gone = Some(self.gone(CONSUMERS));
                        }
                        TryPut::Full { .. } if gone == Some(true) => {
                            return Err(PutFail::Disconnected);
                        }
                        // Busy: another producer, holding the producers' side, was still inside
                        // a put after a brief spin; a nonblocking put must not wait on it.
                        TryPut::Full { .. } | TryPut::Busy => return Err(PutFail::Full),
                    }
                }
            }
        }
    }

    fn get_msg<C: Codec>(&self, wait: Wait) -> Result<C::Msg, GetFail> {
        self.attach(CONSUMERS);
        let ring = self.ring();
        // The message is decoded straight into `out` rather than handed back through the
        // ring's result types: carried through those nested enums, a 64-byte message was
        // copied piecewise through unaligned stack slots, which cost the consumer a third of
        // its speed.
        let mut out = None;
        let mut read = |data: &[AtomicU64], len: usize| C::decode(data, len, &mut out);
        match wait {
            Wait::Until(deadline) => {
                let peers = QueuePeers {
                    seg: self,
                    other: PRODUCERS,
                };
                ring.get_watching(&mut read, deadline, self.spin(), &peers)?;
            }
            Wait::UntilClosed(deadline) => {
                ring.get_watching(&mut read, deadline, self.spin(), &NoPeers)?;
            }
            Wait::No => {
                // `gone` as `gone` in `put_bytes`: once empty, then one more try.
                let mut gone = None;
                loop {
                    // `closed` first, as in `Ring::get`: "closed and empty" must mean drained.
                    let closed = ring.is_closed();
                    match ring.try_get(&mut read) {
                        TryGet::Got(()) => break,
                        TryGet::Empty {
                            stuck: Some((pos, w)),
                        } if ring.reclaim(pos, w) => {}
                        TryGet::Empty { stuck: None } if closed => return Err(GetFail::Closed),
                        TryGet::Empty { stuck: None } if gone.is_none() => {
                            gone = Some(self.gone(PRODUCERS));
                        }
                        TryGet::Empty { stuck: None } if gone == Some(true) => {
                            return Err(GetFail::Disconnected);
                        }
                        // Busy: another consumer is inside a get (CPython's `get_nowait` says
                        // Empty when another process holds the read lock, too).
                        TryGet::Empty { .. } | TryGet::Busy => return Err(GetFail::Empty),
                    }
                }
            }
        }
        out.ok_or(GetFail::Decode)
    }
}

/// How a queue type turns its messages into slot bytes and back.
trait Codec {
    type Msg;
    fn seg(&self) -> &RingSeg;
    /// Calls `put` with the bytes of `v` (or fails with `Encode`).
    fn encode(v: &Self::Msg, put: impl FnOnce(&[u8]) -> Result<(), PutFail>)
    -> Result<(), PutFail>;
    /// Reads a message of `len` bytes out of a slot into `out`, which it leaves `None` if the
    /// bytes are not a valid `Msg`. (Filled in place: see `get_msg`.)
    fn decode(data: &[AtomicU64], len: usize, out: &mut Option<Self::Msg>);
}

fn put_with<C: Codec>(q: &C, v: C::Msg, wait: Wait) -> Result<(), (C::Msg, PutFail)> {
    match C::encode(&v, |bytes| q.seg().put_bytes(bytes, wait)) {
        Ok(()) => Ok(()),
        Err(f) => Err((v, f)),
    }
}

/// The put/get family and the queries, the same for every message codec.
macro_rules! queue_ops {
    (impl[$($generics:tt)*] $ty:ty, $msg:ty) => {
        impl<$($generics)*> $ty {
            /// Puts `v`, waiting while the queue is full.
            ///
            /// # Errors
            ///
            /// [`PutError::Closed`] once the queue is closed; [`PutError::Disconnected`] when
            /// it is full and every consumer that attached has detached or died;
            /// [`PutError::TooLarge`] for a message longer than the queue's slots;
            /// [`PutError::Encode`] when it cannot be serialised. The message is handed back.
            pub fn put(&self, v: $msg) -> Result<(), PutError<$msg>> {
                put_with(self, v, Wait::Until(None)).map_err(|(v, f)| match f {
                    PutFail::TooLarge => PutError::TooLarge(v),
                    PutFail::Encode => PutError::Encode(v),
                    PutFail::Disconnected => PutError::Disconnected(v),
                    // Without a deadline, closing is the only other way a blocking put ends.
                    _ => PutError::Closed(v),
                })
            }

            /// Puts `v`, waiting at most `timeout` for room.
            ///
            /// # Errors
            ///
            /// [`PutTimeoutError::Timeout`], or as [`put`](Self::put).
            pub fn put_timeout(&self, v: $msg, timeout: Duration) -> Result<(), PutTimeoutError<$msg>> {
                put_with(self, v, Wait::Until(deadline(timeout))).map_err(|(v, f)| match f {
                    PutFail::TooLarge => PutTimeoutError::TooLarge(v),
                    PutFail::Encode => PutTimeoutError::Encode(v),
                    PutFail::Closed => PutTimeoutError::Closed(v),
                    PutFail::Disconnected => PutTimeoutError::Disconnected(v),
                    _ => PutTimeoutError::Timeout(v),
                })
            }

            /// Puts `v` if there is room; never sleeps (it spins for up to tens of microseconds
            /// for another producer that is in the middle of a put while it holds the
            /// producers' side, as the crate's README describes; if that one is still there,
            /// that is `Full` too).
            ///
            /// # Errors
            ///
            /// [`TryPutError::Full`], or as [`put`](Self::put).
            pub fn try_put(&self, v: $msg) -> Result<(), TryPutError<$msg>> {
                put_with(self, v, Wait::No).map_err(|(v, f)| match f {
                    PutFail::TooLarge => TryPutError::TooLarge(v),
                    PutFail::Encode => TryPutError::Encode(v),
                    PutFail::Closed => TryPutError::Closed(v),
                    PutFail::Disconnected => TryPutError::Disconnected(v),
                    _ => TryPutError::Full(v),
                })
            }

            /// Takes the oldest message, waiting while the queue is empty.
            ///
            /// # Errors
            ///
            /// [`GetError::Closed`] once the queue is closed and drained;
            /// [`GetError::Disconnected`] when it is empty and every producer that attached has
            /// detached or died; [`GetError::Decode`] when the message is not a valid one of
            /// this type (it is consumed).
            pub fn get(&self) -> Result<$msg, GetError> {
                self.seg().get_msg::<Self>(Wait::Until(None)).map_err(|f| match f {
                    GetFail::Decode => GetError::Decode,
                    GetFail::Disconnected => GetError::Disconnected,
                    _ => GetError::Closed,
                })
            }

            /// Takes the oldest message, waiting at most `timeout`.
            ///
            /// # Errors
            ///
            /// [`GetTimeoutError::Timeout`], or as [`get`](Self::get).
            pub fn get_timeout(&self, timeout: Duration) -> Result<$msg, GetTimeoutError> {
                self.seg().get_msg::<Self>(Wait::Until(deadline(timeout))).map_err(|f| match f {
                    GetFail::Decode => GetTimeoutError::Decode,
                    GetFail::Closed => GetTimeoutError::Closed,
                    GetFail::Disconnected => GetTimeoutError::Disconnected,
                    _ => GetTimeoutError::Timeout,
                })
            }

            /// Takes the oldest message if one is ready; never sleeps (as for
            /// [`try_put`](Self::try_put), with another consumer in the middle of a get; CPython's
            /// `get_nowait` says `Empty` when another process holds the read lock).
            ///
            /// # Errors
            ///
            /// [`TryGetError::Empty`], or as [`get`](Self::get).
            pub fn try_get(&self) -> Result<$msg, TryGetError> {
                self.seg().get_msg::<Self>(Wait::No).map_err(|f| match f {
                    GetFail::Decode => TryGetError::Decode,
                    GetFail::Closed => TryGetError::Closed,
                    GetFail::Disconnected => TryGetError::Disconnected,
                    _ => TryGetError::Empty,
                })
            }

            /// The number of messages in the queue (Python's `qsize`): exact when no put or get
            /// is in flight.
            pub fn len(&self) -> usize {
                self.seg().ring().len()
            }

            /// Whether the queue holds no message.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// Whether every slot is taken.
            pub fn is_full(&self) -> bool {
                self.len() == self.capacity()
            }

            /// How many messages fit.
            pub fn capacity(&self) -> usize {
                self.seg().ring().capacity()
            }

            /// The longest message, in bytes, a slot holds.
            pub fn max_message(&self) -> usize {
                self.seg().max_len
            }

            /// Closes the queue for every process: puts fail from now on; gets drain what is
            /// left, then fail; blocked callers wake.
            pub fn close(&self) {
                self.seg().ring().close();
            }

            /// Whether the queue has been closed.
            pub fn is_closed(&self) -> bool {
                self.seg().ring().is_closed()
            }

            /// How many messages were lost because a process died while putting or taking
            /// them (or a slot held bytes no producer wrote).
            pub fn lost(&self) -> u64 {
                self.seg().ring().lost()
            }

            /// How many rounds this handle spins (then yields) before sleeping in a blocked
            /// `put` or `get`. `0` sleeps at once; `u32::MAX` busy-polls and never sleeps (it
            /// still keeps a timed call's deadline and passes a dead peer's slot). While it
            /// spins, a `put` into a full queue waits for the consumers to take half of it, as
            /// long as they keep taking (the crate's README says why).
            pub fn set_spin(&self, rounds: u32) {
                self.seg().set_spin(rounds);
            }

            /// The segment name.
            pub fn name(&self) -> &str {
                self.seg().segment().name()
            }

            /// Keeps the name when this creating handle is dropped; remove it later with
            /// [`unlink`](crate::unlink).
            pub fn persist(&self) {
                self.seg().segment().persist();
            }
        }

        impl<$($generics)*> crate::wait::sealed::WaitOn for $ty {
            fn wait_on<'a>(&'a self, set: &mut WaitSet<'a>) -> bool {
                self.seg().wait_on(set)
            }
        }

        impl<$($generics)*> crate::Waitable for $ty {
            fn is_ready(&self) -> bool {
                self.seg().ready()
            }
        }
    };
}

/// [`Waitable`](crate::Waitable) for a wrapper of a queue, through its `queue` field.
macro_rules! waitable_wrapper {
    ($ty:ident) => {
        impl<T: Pod> crate::wait::sealed::WaitOn for $ty<T> {
            fn wait_on<'a>(&'a self, set: &mut WaitSet<'a>) -> bool {
                self.queue.seg().wait_on(set)
            }
        }

        impl<T: Pod> crate::Waitable for $ty<T> {
            fn is_ready(&self) -> bool {
                self.queue.seg().ready()
            }
        }
    };
}

waitable_wrapper!(JoinableQueue);
waitable_wrapper!(SimpleQueue);

/// A bounded multi-producer, multi-consumer queue of `T` in a named segment (Python's
/// `multiprocessing.Queue(maxsize)`).
///
/// ```
/// let name = format!("doc-queue-{}", std::process::id());
/// let q = mpshm::Queue::<u64>::create(&name, 8)?;
/// q.put(1).expect("open queue");
/// q.try_put(2).expect("room");
/// assert_eq!(q.len(), 2);
/// assert_eq!(q.get(), Ok(1));
/// assert_eq!(q.try_get(), Ok(2));
/// assert_eq!(q.try_get(), Err(mpshm::TryGetError::Empty));
/// q.close();
/// assert_eq!(q.get(), Err(mpshm::GetError::Closed));
/// # Ok::<(), mpshm::Error>(())
/// ```
pub struct Queue<T> {
    ring: RingSeg,
    _t: PhantomData<T>,
}

impl<T: Pod> Queue<T> {
    /// Creates the queue `name` exclusively, with room for `capacity` messages.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidLength`] for a zero or huge capacity; [`Error::InvalidName`],
    /// [`Error::AlreadyExists`], [`Error::NoSpace`], [`Error::Io`].
    pub fn create(name: &str, capacity: usize) -> Result<Self, Error> {
        Self::create_with(name, capacity, &Options::new())
    }

    /// [`create`](Self::create) with options.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_with(name: &str, capacity: usize, opts: &Options) -> Result<Self, Error> {
        Self::make(Kind::Queue, name, capacity, opts)
    }

    fn make(kind: Kind, name: &str, capacity: usize, opts: &Options) -> Result<Self, Error> {
        let spec = ring_spec(
            kind,
            capacity,
            std::mem::size_of::<T>(),
            opts.max_attached,
            Self::tag(opts),
        )?;
        Ok(Queue {
            ring: RingSeg::create(name, &spec, opts)?,
            _t: PhantomData,
        })
    }

    fn tag(opts: &Options) -> String {
        Spec::of::<T>(Kind::Queue, None, opts.type_tag.as_deref()).tag
    }

    /// Opens the existing queue `name`, checking that it carries `T`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`]; [`Error::LayoutMismatch`] for another message type;
    /// [`Error::KindMismatch`]; [`Error::Corrupt`]; [`Error::NotReady`]; [`Error::Io`].
    pub fn open(name: &str) -> Result<Self, Error> {
        Self::open_with(name, &Options::new())
    }

    /// [`open`](Self::open) with options.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with(name: &str, opts: &Options) -> Result<Self, Error> {
        Self::open_kind(Kind::Queue, name, opts)
    }

    fn open_kind(kind: Kind, name: &str, opts: &Options) -> Result<Self, Error> {
        let ring = RingSeg::open(
            name,
            kind,
            Self::tag(opts),
            Some(std::mem::size_of::<T>()),
            opts,
        )?;
        Ok(Queue {
            ring,
            _t: PhantomData,
        })
    }

    fn ring(&self) -> Ring<'_> {
        self.ring.ring()
    }
}

impl<T: Pod> Codec for Queue<T> {
    type Msg = T;

    fn seg(&self) -> &RingSeg {
        &self.ring
    }

    fn encode(v: &T, put: impl FnOnce(&[u8]) -> Result<(), PutFail>) -> Result<(), PutFail> {
        put(bytemuck::bytes_of(v))
    }

    fn decode(data: &[AtomicU64], len: usize, out: &mut Option<T>) {
        if len == std::mem::size_of::<T>() {
            *out = Some(ring::read_pod(data));
        }
    }
}

queue_ops!(impl[T: Pod] Queue<T>, T);

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.ring.seg.name())
            .field("type", &std::any::type_name::<T>())
            .field("capacity", &self.ring.cap)
            .finish()
    }
}

/// A bounded queue of byte messages, each up to a maximum length fixed at creation.
///
/// ```
/// let name = format!("doc-bq-{}", std::process::id());
/// let q = mpshm::ByteQueue::create(&name, 4, 32)?;
/// q.put(b"hello".to_vec()).expect("room");
/// assert_eq!(q.get().expect("message"), b"hello");
/// assert!(matches!(q.put(vec![0; 33]), Err(mpshm::PutError::TooLarge(_))));
/// # Ok::<(), mpshm::Error>(())
/// ```
pub struct ByteQueue {
    ring: RingSeg,
}

const BYTES_TAG: &str = "bytes";

impl ByteQueue {
    /// Creates the queue `name` exclusively: `capacity` messages of up to `max_message` bytes.
    ///
    /// # Errors
    ///
    /// As [`Queue::create`].
    pub fn create(name: &str, capacity: usize, max_message: usize) -> Result<Self, Error> {
        Self::create_tagged(name, capacity, max_message, BYTES_TAG)
    }

    fn create_tagged(
        name: &str,
        capacity: usize,
        max_message: usize,
        tag: &str,
    ) -> Result<Self, Error> {
        if max_message > MAX_MESSAGE {
            return Err(Error::InvalidLength {
                len: max_message,
                reason: "a queue message may be at most 64 MiB",
            });
        }
        let opts = Options::new();
        let spec = ring_spec(
            Kind::Queue,
            capacity,
            max_message,
            opts.max_attached,
            tag.to_owned(),
        )?;
        Ok(ByteQueue {
            ring: RingSeg::create(name, &spec, &opts)?,
        })
    }

    /// Opens the existing byte queue `name`.
    ///
    /// # Errors
    ///
    /// As [`Queue::open`].
    pub fn open(name: &str) -> Result<Self, Error> {
        Self::open_tagged(name, BYTES_TAG)
    }

    fn open_tagged(name: &str, tag: &str) -> Result<Self, Error> {
        Ok(ByteQueue {
            ring: RingSeg::open(name, Kind::Queue, tag.to_owned(), None, &Options::new())?,
        })
    }
}

/// For the process module's channels, whose gets and puts end only at a close: Python's
/// semantics, without [`GetError::Disconnected`] (a worker or a parent may attach later).
impl ByteQueue {
    /// Takes a message, waiting at most `timeout` (forever if `None`) while the queue is empty,
    /// however many producers are attached.
    pub(crate) fn get_until_closed(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, GetTimeoutError> {
        let deadline = timeout.and_then(deadline);
        self.ring
            .get_msg::<Self>(Wait::UntilClosed(deadline))
            .map_err(|f| match f {
                GetFail::Decode => GetTimeoutError::Decode,
                GetFail::Closed => GetTimeoutError::Closed,
                _ => GetTimeoutError::Timeout,
            })
    }

    /// Puts `v`, waiting while the queue is full, however many consumers are attached.
    pub(crate) fn put_until_closed(&self, v: Vec<u8>) -> Result<(), PutError<Vec<u8>>> {
        put_with(self, v, Wait::UntilClosed(None)).map_err(|(v, f)| match f {
            PutFail::TooLarge => PutError::TooLarge(v),
            PutFail::Encode => PutError::Encode(v),
            _ => PutError::Closed(v),
        })
    }
}

impl Codec for ByteQueue {
    type Msg = Vec<u8>;

    fn seg(&self) -> &RingSeg {
        &self.ring
    }

    fn encode(v: &Vec<u8>, put: impl FnOnce(&[u8]) -> Result<(), PutFail>) -> Result<(), PutFail> {
        put(v)
    }

    fn decode(data: &[AtomicU64], len: usize, out: &mut Option<Vec<u8>>) {
        ring::read_data(data, out.insert(vec![0; len]));
    }
}

queue_ops!(impl[] ByteQueue, Vec<u8>);

impl fmt::Debug for ByteQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteQueue")
            .field("name", &self.ring.seg.name())
            .field("capacity", &self.ring.cap)
            .field("max_message", &self.ring.max_len)
            .finish()
    }
}

/// A bounded queue of any serde type, encoded with postcard into slots of a maximum length
/// fixed at creation (feature `serde`).
///
/// ```
/// # #[cfg(feature = "serde")] {
/// let name = format!("doc-sq-{}", std::process::id());
/// let q = mpshm::SerdeQueue::<(String, Vec<u32>)>::create(&name, 4, 256)?;
/// q.put(("job".to_owned(), vec![1, 2, 3])).expect("room");
/// assert_eq!(q.get().expect("message"), ("job".to_owned(), vec![1, 2, 3]));
/// # }
/// # Ok::<(), mpshm::Error>(())
/// ```
#[cfg(feature = "serde")]
pub struct SerdeQueue<T> {
    bytes: ByteQueue,
    _t: PhantomData<fn(T) -> T>,
}

#[cfg(feature = "serde")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> SerdeQueue<T> {
    fn tag() -> String {
        format!("serde:{}", std::any::type_name::<T>())
    }

    /// Creates the queue `name` exclusively: `capacity` messages of up to `max_message` encoded
    /// bytes.
    ///
    /// # Errors
    ///
    /// As [`Queue::create`].
    pub fn create(name: &str, capacity: usize, max_message: usize) -> Result<Self, Error> {
        let bytes = ByteQueue::create_tagged(name, capacity, max_message, &Self::tag())?;
        Ok(SerdeQueue {
            bytes,
            _t: PhantomData,
        })
    }

    /// Opens the existing queue `name` of `T`s.
    ///
    /// # Errors
    ///
    /// As [`Queue::open`].
    pub fn open(name: &str) -> Result<Self, Error> {
        Ok(SerdeQueue {
            bytes: ByteQueue::open_tagged(name, &Self::tag())?,
            _t: PhantomData,
        })
    }
}

#[cfg(feature = "serde")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> Codec for SerdeQueue<T> {
    type Msg = T;

    fn seg(&self) -> &RingSeg {
        &self.bytes.ring
    }

    fn encode(v: &T, put: impl FnOnce(&[u8]) -> Result<(), PutFail>) -> Result<(), PutFail> {
        let bytes = postcard::to_allocvec(v).map_err(|_| PutFail::Encode)?;
        put(&bytes)
    }

    fn decode(data: &[AtomicU64], len: usize, out: &mut Option<T>) {
        let mut bytes = None;
        ByteQueue::decode(data, len, &mut bytes);
        *out = bytes.and_then(|b| postcard::from_bytes(&b).ok());
    }
}

#[cfg(feature = "serde")]
queue_ops!(impl[T: serde::Serialize + serde::de::DeserializeOwned] SerdeQueue<T>, T);

#[cfg(feature = "serde")]
impl<T> fmt::Debug for SerdeQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SerdeQueue").field(&self.bytes).finish()
    }
}

/// A [`Queue`] that counts finished work (Python's `JoinableQueue`): every message taken is
/// marked done with [`task_done`](Self::task_done), and [`join`](Self::join) waits until all
/// are. Derefs to [`Queue`] for `put`, `get` and the rest.
///
/// ```
/// let name = format!("doc-jq-{}", std::process::id());
/// let q = mpshm::JoinableQueue::<u32>::create(&name, 4)?;
/// q.put(7).expect("open");
/// let job = q.get().expect("open");
/// q.task_done().expect("one taken");
/// q.join().expect("all done");
/// assert!(q.task_done().is_err());
/// # let _ = job;
/// # Ok::<(), mpshm::Error>(())
/// ```
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T: Pod> JoinableQueue<T> {
    /// Creates the queue `name` exclusively, with room for `capacity` messages.
    ///
    /// # Errors
    ///
    /// As [`Queue::create`].
    pub fn create(name: &str, capacity: usize) -> Result<Self, Error> {
        Ok(JoinableQueue {
            queue: Queue::make(Kind::JoinableQueue, name, capacity, &Options::new())?,
        })
    }

    /// Opens the existing joinable queue `name`.
    ///
    /// # Errors
    ///
    /// As [`Queue::open`].
    pub fn open(name: &str) -> Result<Self, Error> {
        Ok(JoinableQueue {
            queue: Queue::open_kind(Kind::JoinableQueue, name, &Options::new())?,
        })
    }

    /// Marks one taken message as finished.
    ///
    /// # Errors
    ///
    /// [`JoinError::TooManyTaskDone`] when every taken message is already marked.
    pub fn task_done(&self) -> Result<(), JoinError> {
        self.queue
            .ring()
            .task_done()
            .map_err(|()| JoinError::TooManyTaskDone)
    }

    /// Waits until every message put has been taken and marked done.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for the timeout form's errors.
    pub fn join(&self) -> Result<(), JoinError> {
        self.queue.ring().join(None).map_err(|_| JoinError::Timeout)
    }

    /// Waits at most `timeout` for every message to be taken and marked done.
    ///
    /// # Errors
    ///
    /// [`JoinError::Timeout`].
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinError> {
        self.queue
            .ring()
            .join(deadline(timeout))
            .map_err(|_| JoinError::Timeout)
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JoinableQueue").field(&self.queue).finish()
    }
}

/// The plain queue of Python's `SimpleQueue`: `put`, `get`, `is_empty`, `close` — nothing else
/// to misuse. It shares its segment format with [`Queue`]; either can open the other's.
///
/// ```
/// let name = format!("doc-sq-{}", std::process::id());
/// let q = mpshm::SimpleQueue::<i16>::create(&name, 2)?;
/// q.put(-1).expect("open");
/// assert_eq!(q.get(), Ok(-1));
/// assert!(q.is_empty());
/// # Ok::<(), mpshm::Error>(())
/// ```
pub struct SimpleQueue<T> {
    queue: Queue<T>,
}

impl<T: Pod> SimpleQueue<T> {
    /// Creates the queue `name` exclusively, with room for `capacity` messages.
    ///
    /// # Errors
    ///
    /// As [`Queue::create`].
    pub fn create(name: &str, capacity: usize) -> Result<Self, Error> {
        Ok(SimpleQueue {
            queue: Queue::create(name, capacity)?,
        })
    }

    /// Opens the existing queue `name`.
    ///
    /// # Errors
    ///
    /// As [`Queue::open`].
    pub fn open(name: &str) -> Result<Self, Error> {
        Ok(SimpleQueue {
            queue: Queue::open(name)?,
        })
    }

    /// Puts `v`, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// As [`Queue::put`].
    pub fn put(&self, v: T) -> Result<(), PutError<T>> {
        self.queue.put(v)
    }

    /// Takes the oldest message, waiting while the queue is empty.
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
    pub fn get(&self) -> Result<T, GetError> {
        self.queue.get()
    }

    /// Whether the queue holds no message.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Closes the queue (see [`Queue::close`]).
    pub fn close(&self) {
        self.queue.close();
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SimpleQueue").field(&self.queue).finish()
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    /// A forked child that uses a queue handle it inherited claims slots under its own pid.
    #[test]
    fn a_handle_inherited_through_fork_claims_as_the_child() {
        let name = format!("mpt{}-fork", std::process::id());
        let q = Queue::<u64>::create(&name, 4).expect("create");
        assert_eq!(q.ring().pid(), std::process::id());
        // In the child: no allocation (see `in_forked_child`), just the pids.
        assert!(sys::in_forked_child(|| q.ring().pid()
            == sys::current_pid()
            && q.ring().pid() != q.ring.pid));
    }
}

/// Where things sit in the payload, for the pinned layout (`src/layout.rs`).
#[cfg(test)]
pub(crate) fn shared_layout() -> Vec<String> {
    vec![format!(
        "placement: ring at 0, slots at {CTL_SIZE}, producers' and consumers' tables (of \
         `attached` records) from {:?} for 4 x 8 B; params [capacity, max length, attached, 0]",
        tables_offset(4, 8)
    )]
}
