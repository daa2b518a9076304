//! [`Queue`], [`JoinableQueue`] and [`SimpleQueue`]: Python's `multiprocessing` queues as a
//! bounded lock-free ring in one named segment (see `ring/mpmc.rs` for the algorithm and its
//! guarantees under peer death).
//!
//! One generic queue over a codec (`codec.rs`): plain data ([`SharedType`]s copied by value
//! into a slot: no serialisation, no feeder thread, no syscall unless a side sleeps), byte
//! strings ([`ByteQueue`]) or serde values ([`SerdeQueue`]).
//!
//! [`SharedType`]: crate::SharedType

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::attach::{Attached, Attachment, DeadHolders, MAX_ATTACHED, Table, Watch, table_size};
use crate::codec::{self, Bytes, Codec, Plain};
use crate::error::{
    Error, GetError, GetTimeoutError, JoinError, PutError, PutTimeoutError, TooLarge, TryGetError,
    TryPutError,
};
use crate::ring::mpmc::{CTL_SIZE, Memory, Ring, RingCtl};
use crate::ring::{self, RingError, TryRingError};
use crate::segment::{Identity, Kind, Options, Segment, Spec};
use crate::shm::{Made, Shm};
use crate::sys;
use crate::wait::{Bump, DEFAULT_SPIN, NoPeers, Peers, WaitSet, deadline, fence};

/// The largest capacity accepted.
const MAX_CAPACITY: usize = 1 << 32;
/// The longest message slot accepted: 64 MiB.
const MAX_MESSAGE: usize = 64 << 20;
/// How many producers (and consumers) a queue records unless `Options::max_attached` says
/// otherwise.
const DEFAULT_MAX_ATTACHED: usize = 32;

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

/// The bytes of a ring of `cap` slots of `max_len`-byte messages with tables of `attached`
/// producer and consumer records.
fn ring_bytes(cap: usize, max_len: usize, attached: usize) -> Option<usize> {
    tables_offset(cap, max_len)?.checked_add(2 * table_size(attached))
}

/// The segment of a queue of `kind`: a ring of `cap` slots of `max_len`-byte messages of the
/// type `ty`, encoded by the codec numbered `codec`, with tables of `attached` producer and
/// consumer records.
pub(crate) fn ring_spec(
    kind: Kind,
    (cap, max_len): (usize, usize),
    attached: usize,
    ty: Identity,
    codec: u64,
) -> Result<Spec, Error> {
    if cap == 0 || cap > MAX_CAPACITY {
        return Err(Error::InvalidLength {
            len: cap,
            reason: "a queue's capacity must be 1 to 2^32",
        });
    }
    if max_len > MAX_MESSAGE {
        return Err(Error::InvalidLength {
            len: max_len,
            reason: "a queue message may be at most 64 MiB",
        });
    }
    if attached == 0 || attached > MAX_ATTACHED {
        return Err(Error::InvalidLength {
            len: attached,
            reason: "a queue records 1 to 1024 producers (and consumers): see Options::max_attached",
        });
    }
    let bytes = ring_bytes(cap, max_len, attached).ok_or(Error::InvalidLength {
        len: cap,
        reason: "the queue would not fit in memory",
    })?;
    let params = [cap as u64, max_len as u64, attached as u64, codec];
    Ok(Spec::bytes(kind, ty, bytes, params))
}

/// What each codec is called in an error.
fn codec_name(id: u64) -> &'static str {
    match id {
        1 => "plain-data messages",
        2 => "serde (postcard) messages",
        3 => "byte messages",
        _ => "messages of an unknown codec",
    }
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
    /// What this handle's operations remember between them (see `ring::mpmc::Memory`).
    memory: Memory,
}

impl RingSeg {
    /// Writes a fresh ring and its tables into a segment being created.
    pub(crate) fn init(seg: &Segment) -> Result<(), Error> {
        let [cap, max_len, attached, _] = seg.params().map(|p| p as usize);
        let joinable = seg.kind() == Kind::JoinableQueue;
        ring_view(seg, cap, max_len, sys::thread_ids().0, joinable).init();
        for side in [PRODUCERS, CONSUMERS] {
            table_view(seg, cap, max_len, attached, side).init()?;
        }
        Ok(())
    }

    /// The ring in `seg`, after checking its geometry against its size, its codec against
    /// `codec`, its messages against `fixed` (a codec whose messages have one size) and against
    /// `asked` (`(capacity, max_len)` of an `open_or_create` that found it).
    pub(crate) fn wrap(
        seg: Segment,
        codec: u64,
        fixed: Option<usize>,
        asked: Option<(usize, usize)>,
    ) -> Result<RingSeg, Error> {
        let (cap, len, attached) = geometry(&seg).map_err(|reason| Error::Corrupt {
            name: seg.name().to_owned(),
            reason,
        })?;
        let found_codec = seg.params()[3];
        let mismatch = |expected: String, found: String| Error::LayoutMismatch {
            name: seg.name().to_owned(),
            expected,
            found,
        };
        if found_codec != codec {
            return Err(mismatch(
                format!("a queue of {}", codec_name(codec)),
                format!("a queue of {}", codec_name(found_codec)),
            ));
        }
        if let Some(want) = fixed.filter(|&want| want != len) {
            return Err(mismatch(
                format!("a queue of {want}-byte messages"),
                format!("a queue of {len}-byte messages"),
            ));
        }
        if let Some((want_cap, want_len)) = asked {
            if want_cap != cap {
                return Err(mismatch(
                    format!("a queue of capacity {want_cap}"),
                    format!("a queue of capacity {cap}"),
                ));
            }
            if want_len != len {
                return Err(mismatch(
                    format!("a queue of messages of up to {want_len} bytes"),
                    format!("a queue of messages of up to {len} bytes"),
                ));
            }
        }
        let joinable = seg.kind() == Kind::JoinableQueue;
        Ok(RingSeg {
            seg,
            cap,
            max_len: len,
            attached,
            sides: Default::default(),
            pid: sys::thread_ids().0,
            forks: sys::forks(),
            joinable,
            spin: AtomicU32::new(DEFAULT_SPIN),
            memory: Memory::default(),
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
        ring_view(&self.seg, self.cap, self.max_len, pid, self.joinable).with_memory(&self.memory)
    }

    #[inline]
    pub(crate) fn spin(&self) -> u32 {
        self.spin.load(Ordering::Relaxed)
    }

    pub(crate) fn set_spin(&self, rounds: u32) {
        self.spin.store(rounds, Ordering::Relaxed);
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

    /// Attaches as [`attach`](Self::attach) does (an explicit `attach_producer` or
    /// `attach_consumer`), then wakes the other side's sleepers: a sleeper watches only the
    /// records held when it went to sleep, and an explicit attach puts or takes nothing that
    /// would wake it, so without this one a death of this process would go unseen by it.
    fn attach_and_wake(&self, side: usize) {
        if !self.sides[side].attached()
            && self.sides[side].attach_any(&self.table(side)) != Attached::Already
        {
            self.wake_other(side);
        }
    }

    /// Detaches this handle from `side` if it is attached in this process, and wakes the other
    /// side's sleepers: they may be disconnected now.
    fn detach(&self, side: usize) {
        if self.sides[side].detach(&self.table(side)) {
            self.wake_other(side);
        }
    }

    /// Wakes whoever sleeps on the side opposite `side`: the consumers for `PRODUCERS`.
    fn wake_other(&self, side: usize) {
        let ring = self.ring();
        let events = if side == PRODUCERS {
            ring.get_events()
        } else {
            ring.put_events()
        };
        events.wake();
    }

    /// Whether every producer (or consumer) that attached has detached or died.
    fn gone(&self, side: usize) -> bool {
        self.table(side).none_alive()
    }

    /// Counts the caller as a waiting consumer and adds what it sleeps on: the consumers'
    /// eventcount and the producers' liveness; `false` if something changed meanwhile.
    pub(crate) fn wait_on<'a>(&'a self, set: &mut WaitSet<'a>) -> bool {
        let events = self.ring().get_events();
        set.count(events);
        self.table(PRODUCERS)
            .watch_all(set, Bump([Some(events.epoch()), None]))
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
        self.detach(PRODUCERS);
        self.detach(CONSUMERS);
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
    Table::at(seg, off, attached, DeadHolders::Free)
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
/// is within bounds and matches the segment's size; what does not, in words.
fn geometry(seg: &Segment) -> Result<(usize, usize, usize), String> {
    let [cap, len, attached, _] = seg.params();
    let fits = usize::try_from(cap).ok().zip(usize::try_from(len).ok());
    let expect = fits
        .zip(usize::try_from(attached).ok())
        .filter(|_| cap != 0 && cap <= MAX_CAPACITY as u64 && len <= MAX_MESSAGE as u64)
        .filter(|_| (1..=MAX_ATTACHED as u64).contains(&attached))
        .and_then(|((cap, len), attached)| ring_bytes(cap, len, attached));
    if expect != Some(seg.count()) {
        return Err(format!(
            "ring geometry {cap} × {len} B with {attached} attachment records does not match \
             its size {}",
            seg.count()
        ));
    }
    Ok((cap as usize, len as usize, attached as usize))
}

/// What [`inspect`](crate::inspect) shows of a queue, read without changing anything; an error
/// for a geometry that does not match the segment's size (checked as `RingSeg::wrap` does).
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

/// Why a put or get did not happen, before the public error is made (with the message handed
/// back, for a put): the ring's reasons, or the codec's `E`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failed<E> {
    /// Full (a put), empty (a get).
    WouldBlock,
    Timeout,
    Closed,
    Disconnected,
    Codec(E),
}

impl<E> From<RingError> for Failed<E> {
    fn from(f: RingError) -> Failed<E> {
        match f {
            RingError::Timeout => Failed::Timeout,
            RingError::Closed => Failed::Closed,
            RingError::Disconnected => Failed::Disconnected,
        }
    }
}

impl<E> From<TryRingError> for Failed<E> {
    fn from(f: TryRingError) -> Failed<E> {
        match f {
            TryRingError::WouldBlock => Failed::WouldBlock,
            TryRingError::Closed => Failed::Closed,
            TryRingError::Disconnected => Failed::Disconnected,
        }
    }
}

impl RingSeg {
    /// Puts the bytes of one message, which its codec has made at most `max_len` long.
    #[inline(always)]
    fn put_bytes<E>(&self, msg: &[u8], wait: Wait) -> Result<(), Failed<E>> {
        debug_assert!(msg.len() <= self.max_len, "the codec checks the length");
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
                let peers = QueuePeers {
                    seg: self,
                    other: CONSUMERS,
                };
                Ok(ring.put_nowait(msg, &peers)?)
            }
        }
    }

    /// Takes one message, decoded by `C`.
    #[inline(always)]
    fn get_msg<T, C: Codec<T>>(&self, wait: Wait) -> Result<T, Failed<C::DecodeError>> {
        self.attach(CONSUMERS);
        let ring = self.ring();
        // The message is decoded straight into `out` rather than handed back through the
        // ring's result types: carried through those nested enums, a message would be copied
        // piecewise through unaligned stack slots, on the consumer's hot path.
        let mut out = None;
        let mut bad = None;
        let mut read = |data: &[AtomicU64], len: usize| {
            if let Err(e) = C::read_slot(data, len, &mut out) {
                bad = Some(e);
            }
        };
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
                let peers = QueuePeers {
                    seg: self,
                    other: PRODUCERS,
                };
                ring.get_nowait(&mut read, &peers)?;
            }
        }
        match (out, bad) {
            (Some(v), _) => Ok(v),
            (None, Some(e)) => Err(Failed::Codec(e)),
            // `read` runs for every message taken.
            (None, None) => unreachable!("a message was taken without being read"),
        }
    }
}

/// A bounded multi-producer, multi-consumer queue in a named segment (Python's
/// `multiprocessing.Queue(maxsize)`), of `T` encoded by the codec `C`: plain data by default
/// ([`Plain`], any [`SharedType`](crate::SharedType), copied into a slot as it is), byte strings
/// ([`Bytes`]: [`ByteQueue`]) or any serde type ([`Postcard`](crate::Postcard):
/// [`SerdeQueue`]). Create and open it through [`Shm`]; `Init` is `C::Init`: the capacity for
/// plain data, `(capacity, max_message)` for bytes and serde.
///
/// ```
/// use mpshm::prelude::*;
///
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
///
/// Its errors hold only what its codec can fail with: a plain-data queue's `put` returns
/// `PutError<T, Infallible>`, which has no `Encode` case to match.
pub struct Queue<T, C = Plain> {
    ring: RingSeg,
    _t: PhantomData<fn(T, C) -> T>,
}

/// A bounded queue of byte messages, each up to a length fixed at creation; `Init` is
/// `(capacity, max_message)`.
///
/// ```
/// use mpshm::prelude::*;
///
/// let name = format!("doc-bq-{}", std::process::id());
/// let q = mpshm::ByteQueue::create(&name, (4, 32))?;
/// q.put(b"hello".to_vec()).expect("room");
/// assert_eq!(q.get().expect("message"), b"hello");
/// assert!(matches!(q.put(vec![0; 33]), Err(mpshm::PutError::Encode(_, mpshm::TooLarge { len: 33, max: 32 }))));
/// # Ok::<(), mpshm::Error>(())
/// ```
pub type ByteQueue = Queue<Vec<u8>, Bytes>;

/// A bounded queue of any serde type, encoded with postcard into slots of a length fixed at
/// creation (feature `serde`); `Init` is `(capacity, max_message)`. Its default type tag is
/// [`std::any::type_name`], which is neither stable across builds nor unique (see
/// [`Postcard`](crate::Postcard)): give separately built binaries the same
/// [`Options::type_tag`](crate::Options::type_tag).
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use mpshm::prelude::*;
///
/// let name = format!("doc-serq-{}", std::process::id());
/// let q = mpshm::SerdeQueue::<(String, Vec<u32>)>::create(&name, (4, 256))?;
/// q.put(("job".to_owned(), vec![1, 2, 3])).expect("room");
/// assert_eq!(q.get().expect("message"), ("job".to_owned(), vec![1, 2, 3]));
/// # }
/// # Ok::<(), mpshm::Error>(())
/// ```
#[cfg(feature = "serde")]
pub type SerdeQueue<T> = Queue<T, crate::Postcard>;

/// What every queue handle of kind `kind` asks of its segment.
fn queue_spec<T, C: Codec<T>>(
    kind: Kind,
    init: Option<&C::Init>,
    opts: &Options,
) -> Result<Spec, Error> {
    let (cap, max_len) = init.map_or((1, 0), C::sizes);
    let max_len = C::fixed_len().unwrap_or(max_len);
    let attached = opts.max_attached.unwrap_or(DEFAULT_MAX_ATTACHED);
    ring_spec(
        kind,
        (cap, max_len),
        attached,
        codec::identity::<T, C>(opts),
        C::ID,
    )
}

/// The ring of a queue handle of codec `C`, checked against what an `open_or_create` asked.
fn queue_wrap<T, C: Codec<T>>(seg: Segment, init: Option<&C::Init>) -> Result<RingSeg, Error> {
    let asked = init.map(|init| {
        let (cap, len) = C::sizes(init);
        (cap, C::fixed_len().unwrap_or(len))
    });
    RingSeg::wrap(seg, C::ID, C::fixed_len(), asked)
}

/// `Init` is the codec's: the capacity (`usize`) for plain data, `(capacity, max_message)`
/// for [`Bytes`] and [`Postcard`](crate::Postcard), whose messages may be up to 64 MiB.
/// [`Error::InvalidLength`] for a capacity of 0 or over 2^32, a longer message, or a ring
/// too large to map; `open_or_create` fails with [`Error::LayoutMismatch`] on an existing
/// queue of another capacity or message length. The options' mode, open timeout, type tag
/// and `max_attached` (producers and consumers recorded, default 32 each) apply.
impl<T, C: Codec<T>> Shm for Queue<T, C> {
    type Init = C::Init;

    fn spec(init: Option<&C::Init>, opts: &Options) -> Result<Spec, Error> {
        queue_spec::<T, C>(Kind::Queue, init, opts)
    }

    fn init(seg: &Segment, _: &C::Init) -> Result<(), Error> {
        RingSeg::init(seg)
    }

    fn wrap(seg: Segment, _: Made, init: Option<&C::Init>, _: &Options) -> Result<Self, Error> {
        Ok(Queue {
            ring: queue_wrap::<T, C>(seg, init)?,
            _t: PhantomData,
        })
    }

    fn segment(&self) -> &Segment {
        &self.ring.seg
    }
}

impl<T, C: Codec<T>> Queue<T, C> {
    /// Encodes `v` and puts it as `wait` says; hands it back on failure.
    #[inline(always)]
    fn put_with(&self, v: T, wait: Wait) -> Result<(), (T, Failed<C::EncodeError>)> {
        let mut scratch = Vec::new();
        let done = match C::encode(&v, self.ring.max_len, &mut scratch) {
            Ok(bytes) => self.ring.put_bytes(bytes, wait),
            Err(e) => Err(Failed::Codec(e)),
        };
        done.map_err(|f| (v, f))
    }

    /// Puts `v`, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`PutError::Closed`] once the queue is closed; [`PutError::Disconnected`] when it is
    /// full and every consumer that attached has detached or died. The message is handed back.
    /// That is all for a queue of plain data (`Queue<u64>`): its error is `PutError<T>`, whose
    /// `Encode` variant cannot be made. A byte or serde queue also fails with
    /// [`PutError::Encode`] when its codec refuses the message ([`TooLarge`] for bytes longer
    /// than a slot; [`EncodeError`](crate::EncodeError) for serde).
    pub fn put(&self, v: T) -> Result<(), PutError<T, C::EncodeError>> {
        self.put_with(v, Wait::Until(None))
            .map_err(|(v, f)| match f {
                Failed::Codec(e) => PutError::Encode(v, e),
                Failed::Disconnected => PutError::Disconnected(v),
                // Without a deadline, closing is the only other way a blocking put ends.
                _ => PutError::Closed(v),
            })
    }

    /// Puts `v`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`PutTimeoutError::Timeout`], or as [`put`](Self::put).
    pub fn put_timeout(
        &self,
        v: T,
        timeout: Duration,
    ) -> Result<(), PutTimeoutError<T, C::EncodeError>> {
        self.put_with(v, Wait::Until(deadline(timeout)))
            .map_err(|(v, f)| match f {
                Failed::Codec(e) => PutTimeoutError::Encode(v, e),
                Failed::Closed => PutTimeoutError::Closed(v),
                Failed::Disconnected => PutTimeoutError::Disconnected(v),
                _ => PutTimeoutError::Timeout(v),
            })
    }

    /// Puts `v` if there is room; never sleeps (it spins for up to tens of microseconds for
    /// another producer that is in the middle of a put while it holds the producers' side, as
    /// the crate's README describes; if that one is still there, that is `Full` too).
    ///
    /// # Errors
    ///
    /// [`TryPutError::Full`], or as [`put`](Self::put).
    pub fn try_put(&self, v: T) -> Result<(), TryPutError<T, C::EncodeError>> {
        self.put_with(v, Wait::No).map_err(|(v, f)| match f {
            Failed::Codec(e) => TryPutError::Encode(v, e),
            Failed::Closed => TryPutError::Closed(v),
            Failed::Disconnected => TryPutError::Disconnected(v),
            _ => TryPutError::Full(v),
        })
    }

    /// Takes the oldest message, waiting while the queue is empty.
    ///
    /// # Errors
    ///
    /// [`GetError::Closed`] once the queue is closed and drained; [`GetError::Disconnected`]
    /// when it is empty and every producer that attached has detached or died;
    /// [`GetError::Decode`] when the message is not a valid `T` (it is consumed; never for
    /// plain data or bytes: see [`Codec::DecodeError`]).
    pub fn get(&self) -> Result<T, GetError<C::DecodeError>> {
        self.ring
            .get_msg::<T, C>(Wait::Until(None))
            .map_err(|f| match f {
                Failed::Codec(e) => GetError::Decode(e),
                Failed::Disconnected => GetError::Disconnected,
                _ => GetError::Closed,
            })
    }

    /// Takes the oldest message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`GetTimeoutError::Timeout`], or as [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError<C::DecodeError>> {
        self.ring
            .get_msg::<T, C>(Wait::Until(deadline(timeout)))
            .map_err(|f| match f {
                Failed::Codec(e) => GetTimeoutError::Decode(e),
                Failed::Closed => GetTimeoutError::Closed,
                Failed::Disconnected => GetTimeoutError::Disconnected,
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
    pub fn try_get(&self) -> Result<T, TryGetError<C::DecodeError>> {
        self.ring.get_msg::<T, C>(Wait::No).map_err(|f| match f {
            Failed::Codec(e) => TryGetError::Decode(e),
            Failed::Closed => TryGetError::Closed,
            Failed::Disconnected => TryGetError::Disconnected,
            _ => TryGetError::Empty,
        })
    }

    /// An iterator that takes messages with [`get`](Self::get), waiting for each, until the
    /// queue is closed and drained, its producers are gone, or a message does not decode
    /// (`get` says which).
    ///
    /// ```
    /// use mpshm::prelude::*;
    ///
    /// let name = format!("doc-qiter-{}", std::process::id());
    /// let q = mpshm::Queue::<u32>::create(&name, 4)?;
    /// for i in 0..3 {
    ///     q.put(i).expect("room");
    /// }
    /// q.close();
    /// assert_eq!(q.iter().collect::<Vec<_>>(), [0, 1, 2]);
    /// # Ok::<(), mpshm::Error>(())
    /// ```
    pub fn iter(&self) -> Iter<'_, T, C> {
        Iter { queue: self }
    }

    /// An iterator that takes the messages ready now with [`try_get`](Self::try_get), and
    /// ends at the first that is not.
    pub fn try_iter(&self) -> TryIter<'_, T, C> {
        TryIter { queue: self }
    }

    /// Makes this handle count as a producer from now on, as its first put would, until
    /// [`detach_producer`](Self::detach_producer) or its drop (or its process's death): while
    /// it does, a get on the empty queue waits rather than say `Disconnected`. Crossbeam's
    /// parent keeps a `Sender` until it has handed one to every thread; across processes a
    /// worker attaches only when it runs, so the parent holds until it no longer expects any
    /// (it has its results, or has joined the workers). Does nothing if attached already.
    ///
    /// ```
    /// use mpshm::prelude::*;
    /// use mpshm::{GetError, Queue};
    ///
    /// let name = format!("doc-qhold-{}", std::process::id());
    /// let q = Queue::<u32>::create(&name, 4)?;
    /// q.attach_producer();
    /// std::thread::scope(|s| {
    ///     // Workers (processes, usually) that each put once and go: however early the first
    ///     // goes, the parent's gets wait for the others.
    ///     for i in 0..3 {
    ///         let name = &name;
    ///         s.spawn(move || Queue::<u32>::open(name).expect("open").put(i).expect("room"));
    ///     }
    ///     let mut got: Vec<u32> = (0..3).map(|_| q.get().expect("held")).collect();
    ///     got.sort_unstable();
    ///     assert_eq!(got, [0, 1, 2]);
    /// });
    /// q.detach_producer();
    /// // No producer left: once drained, a get says so instead of waiting.
    /// assert_eq!(q.get(), Err(GetError::Disconnected));
    /// # Ok::<(), mpshm::Error>(())
    /// ```
    pub fn attach_producer(&self) {
        self.ring.attach_and_wake(PRODUCERS);
    }

    /// Stops this handle counting as a producer (as its drop does): if it was the last, gets
    /// on the empty queue say `Disconnected`, and blocked ones wake to say so. A later put
    /// through it attaches it again. Does nothing if it is not attached in this process.
    pub fn detach_producer(&self) {
        self.ring.detach(PRODUCERS);
    }

    /// Makes this handle count as a consumer, as its first get would, until
    /// [`detach_consumer`](Self::detach_consumer) or its drop: while it does, a put on the full
    /// queue waits rather than say `Disconnected` (a parent that fills a queue for workers
    /// that each take a little and go). See [`attach_producer`](Self::attach_producer).
    pub fn attach_consumer(&self) {
        self.ring.attach_and_wake(CONSUMERS);
    }

    /// Stops this handle counting as a consumer (as its drop does): if it was the last, puts
    /// on the full queue say `Disconnected`. A later get through it attaches it again.
    pub fn detach_consumer(&self) {
        self.ring.detach(CONSUMERS);
    }

    /// The number of messages in the queue (Python's `qsize`): exact when no put or get is in
    /// flight.
    pub fn len(&self) -> usize {
        self.ring.ring().len()
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
        self.ring.ring().capacity()
    }

    /// The longest message, in bytes, a slot holds.
    pub fn max_message(&self) -> usize {
        self.ring.max_len
    }

    /// Closes the queue for every process: puts fail from now on; gets drain what is left,
    /// then fail; blocked callers wake.
    pub fn close(&self) {
        self.ring.ring().close();
    }

    /// Whether the queue has been closed.
    pub fn is_closed(&self) -> bool {
        self.ring.ring().is_closed()
    }

    /// How many messages were lost because a process died while putting or taking them (or a
    /// slot held bytes no producer wrote).
    pub fn lost(&self) -> u64 {
        self.ring.ring().lost()
    }

    /// How many rounds this handle spins (then yields) before sleeping in a blocked `put` or
    /// `get`. `0` sleeps at once; `u32::MAX` busy-polls and never sleeps (it still keeps a
    /// timed call's deadline and passes a dead peer's slot). While it spins, a `put` into a
    /// full queue waits for the consumers to take half of it, as long as they keep taking (the
    /// crate's README says why).
    pub fn set_spin(&self, rounds: u32) {
        self.ring.set_spin(rounds);
    }

    fn ring(&self) -> Ring<'_> {
        self.ring.ring()
    }

    /// Hands neither role to a single thread, for every process that uses this queue.
    pub(crate) fn forbid_bias(&self) {
        self.ring.ring().forbid_bias();
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
            .get_msg::<Vec<u8>, Bytes>(Wait::UntilClosed(deadline))
            .map_err(|f| match f {
                Failed::Closed => GetTimeoutError::Closed,
                _ => GetTimeoutError::Timeout,
            })
    }

    /// Puts `v`, waiting while the queue is full, however many consumers are attached.
    pub(crate) fn put_until_closed(&self, v: Vec<u8>) -> Result<(), PutError<Vec<u8>, TooLarge>> {
        self.put_with(v, Wait::UntilClosed(None))
            .map_err(|(v, f)| match f {
                Failed::Codec(e) => PutError::Encode(v, e),
                _ => PutError::Closed(v),
            })
    }
}

impl<T, C> fmt::Debug for Queue<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.ring.seg.name())
            .field("type", &std::any::type_name::<T>())
            .field("capacity", &self.ring.cap)
            .field("max_message", &self.ring.max_len)
            .finish()
    }
}

impl<T, C: Codec<T>> crate::wait::sealed::WaitOn for Queue<T, C> {
    fn wait_on<'a>(&'a self, set: &mut WaitSet<'a>) -> bool {
        self.ring.wait_on(set)
    }
}

impl<T, C: Codec<T>> crate::Waitable for Queue<T, C> {
    fn is_ready(&self) -> bool {
        self.ring.ready()
    }
}

/// The iterator of [`Queue::iter`]: a blocking `get` per item, until the queue ends.
pub struct Iter<'a, T, C = Plain> {
    queue: &'a Queue<T, C>,
}

/// The iterator of [`Queue::try_iter`]: the messages ready now.
pub struct TryIter<'a, T, C = Plain> {
    queue: &'a Queue<T, C>,
}

impl<T, C: Codec<T>> Iterator for Iter<'_, T, C> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.queue.get().ok()
    }
}

impl<T, C: Codec<T>> Iterator for TryIter<'_, T, C> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.queue.try_get().ok()
    }
}

impl<'a, T, C: Codec<T>> IntoIterator for &'a Queue<T, C> {
    type Item = T;
    type IntoIter = Iter<'a, T, C>;

    fn into_iter(self) -> Iter<'a, T, C> {
        self.iter()
    }
}

impl<T, C> fmt::Debug for Iter<'_, T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Iter").field(self.queue).finish()
    }
}

impl<T, C> fmt::Debug for TryIter<'_, T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TryIter").field(self.queue).finish()
    }
}

/// A [`Queue`] that counts finished work (Python's `JoinableQueue`): every message taken is
/// marked done with [`task_done`](Self::task_done), and [`join`](Self::join) waits until all
/// are. Derefs to [`Queue`] for `put`, `get` and the rest; `Init` as for [`Queue`]. A segment
/// of its own kind: a `Queue` cannot open it, nor it a `Queue`'s.
///
/// ```
/// use mpshm::prelude::*;
///
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
pub struct JoinableQueue<T, C = Plain> {
    queue: Queue<T, C>,
}

/// `Init` as for [`Queue`].
impl<T, C: Codec<T>> Shm for JoinableQueue<T, C> {
    type Init = C::Init;

    fn spec(init: Option<&C::Init>, opts: &Options) -> Result<Spec, Error> {
        queue_spec::<T, C>(Kind::JoinableQueue, init, opts)
    }

    fn init(seg: &Segment, init: &C::Init) -> Result<(), Error> {
        Queue::<T, C>::init(seg, init)
    }

    fn wrap(
        seg: Segment,
        made: Made,
        init: Option<&C::Init>,
        opts: &Options,
    ) -> Result<Self, Error> {
        Ok(JoinableQueue {
            queue: Queue::wrap(seg, made, init, opts)?,
        })
    }

    fn segment(&self) -> &Segment {
        self.queue.segment()
    }
}

impl<T, C: Codec<T>> JoinableQueue<T, C> {
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

impl<T, C> Deref for JoinableQueue<T, C> {
    type Target = Queue<T, C>;
    fn deref(&self) -> &Queue<T, C> {
        &self.queue
    }
}

impl<'a, T, C: Codec<T>> IntoIterator for &'a JoinableQueue<T, C> {
    type Item = T;
    type IntoIter = Iter<'a, T, C>;

    fn into_iter(self) -> Iter<'a, T, C> {
        self.queue.iter()
    }
}

impl<T, C> fmt::Debug for JoinableQueue<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JoinableQueue").field(&self.queue).finish()
    }
}

/// The plain queue of Python's `SimpleQueue`: `put`, `get` (and `try_get`), `is_empty`,
/// `close`, and the producer and consumer holds of [`Queue::attach_producer`] — nothing else
/// to misuse. It shares its segment format with [`Queue`]; either can open the other's.
/// `Init` as for [`Queue`].
///
/// ```
/// use mpshm::prelude::*;
///
/// let name = format!("doc-simq-{}", std::process::id());
/// let q = mpshm::SimpleQueue::<i16>::create(&name, 2)?;
/// q.put(-1).expect("open");
/// assert_eq!(q.get(), Ok(-1));
/// assert!(q.is_empty());
/// # Ok::<(), mpshm::Error>(())
/// ```
pub struct SimpleQueue<T, C = Plain> {
    queue: Queue<T, C>,
}

/// `Init` as for [`Queue`], whose segment it is.
impl<T, C: Codec<T>> Shm for SimpleQueue<T, C> {
    type Init = C::Init;

    fn spec(init: Option<&C::Init>, opts: &Options) -> Result<Spec, Error> {
        Queue::<T, C>::spec(init, opts)
    }

    fn init(seg: &Segment, init: &C::Init) -> Result<(), Error> {
        Queue::<T, C>::init(seg, init)
    }

    fn wrap(
        seg: Segment,
        made: Made,
        init: Option<&C::Init>,
        opts: &Options,
    ) -> Result<Self, Error> {
        Ok(SimpleQueue {
            queue: Queue::wrap(seg, made, init, opts)?,
        })
    }

    fn segment(&self) -> &Segment {
        self.queue.segment()
    }
}

impl<T, C: Codec<T>> SimpleQueue<T, C> {
    /// Puts `v`, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// As [`Queue::put`].
    pub fn put(&self, v: T) -> Result<(), PutError<T, C::EncodeError>> {
        self.queue.put(v)
    }

    /// Takes the oldest message, waiting while the queue is empty.
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
    pub fn get(&self) -> Result<T, GetError<C::DecodeError>> {
        self.queue.get()
    }

    /// Takes the oldest message if one is ready; never sleeps.
    ///
    /// # Errors
    ///
    /// As [`Queue::try_get`].
    pub fn try_get(&self) -> Result<T, TryGetError<C::DecodeError>> {
        self.queue.try_get()
    }

    /// The messages, each taken with [`get`](Self::get), as [`Queue::iter`].
    pub fn iter(&self) -> Iter<'_, T, C> {
        self.queue.iter()
    }

    /// The messages ready now, each taken with [`try_get`](Self::try_get), as
    /// [`Queue::try_iter`].
    pub fn try_iter(&self) -> TryIter<'_, T, C> {
        self.queue.try_iter()
    }

    /// Counts this handle as a producer until [`detach_producer`](Self::detach_producer), as
    /// [`Queue::attach_producer`].
    pub fn attach_producer(&self) {
        self.queue.attach_producer();
    }

    /// As [`Queue::detach_producer`].
    pub fn detach_producer(&self) {
        self.queue.detach_producer();
    }

    /// Counts this handle as a consumer until [`detach_consumer`](Self::detach_consumer), as
    /// [`Queue::attach_consumer`].
    pub fn attach_consumer(&self) {
        self.queue.attach_consumer();
    }

    /// As [`Queue::detach_consumer`].
    pub fn detach_consumer(&self) {
        self.queue.detach_consumer();
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

impl<'a, T, C: Codec<T>> IntoIterator for &'a SimpleQueue<T, C> {
    type Item = T;
    type IntoIter = Iter<'a, T, C>;

    fn into_iter(self) -> Iter<'a, T, C> {
        self.queue.iter()
    }
}

impl<T, C> fmt::Debug for SimpleQueue<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SimpleQueue").field(&self.queue).finish()
    }
}

/// [`Waitable`](crate::Waitable) for a wrapper of a queue, through its `queue` field.
impl<T, C: Codec<T>> crate::wait::sealed::WaitOn for JoinableQueue<T, C> {
    fn wait_on<'a>(&'a self, set: &mut WaitSet<'a>) -> bool {
        self.queue.ring.wait_on(set)
    }
}

impl<T, C: Codec<T>> crate::Waitable for JoinableQueue<T, C> {
    fn is_ready(&self) -> bool {
        self.queue.ring.ready()
    }
}

impl<T, C: Codec<T>> crate::wait::sealed::WaitOn for SimpleQueue<T, C> {
    fn wait_on<'a>(&'a self, set: &mut WaitSet<'a>) -> bool {
        self.queue.ring.wait_on(set)
    }
}

impl<T, C: Codec<T>> crate::Waitable for SimpleQueue<T, C> {
    fn is_ready(&self) -> bool {
        self.queue.ring.ready()
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
         `attached` records) from {:?} for 4 x 8 B; params [capacity, max length, attached, codec]",
        tables_offset(4, 8)
    )]
}
