//! [`SpscQueue`]: the queue's explicit single-producer, single-consumer mode, for a stream from
//! one process to one other.
//!
//! It is the ring under each direction of a [`Pipe`](crate::Pipe) (`ring/spsc.rs`) carrying `T`
//! by value, one message per slot: no slot is claimed with a CAS, and neither side runs a fence
//! or any other atomic read-modify-write per message (the README's figures compare it with the
//! MPMC [`Queue`]).
//!
//! The two roles are claimed in the segment, one process each, through attachment records
//! (`attach`): a second live process that asks for a taken role gets [`Error::InUse`], and a
//! role whose process died is free to take, so a restarted producer (or consumer) carries on
//! where the dead one stopped. Once a message has been put, a `get` on the empty queue while no
//! producer holds its role (it was released, dropped, or died) fails with
//! [`GetError::Disconnected`], and likewise a `put` on the full queue once a message was taken
//! and no consumer holds its role; a blocked call learns of the peer's death at once (see
//! `wait::death_notice`). Within a process a handle may be shared between threads; they take
//! turns (`sync::owner`).
//!
//! [`Queue`]: crate::Queue

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

use crate::attach::{Attachment, DeadHolders, Holder, Table, Watch, table_size};
use crate::error::{
    Error, GetError, GetTimeoutError, PutError, PutTimeoutError, TryGetError, TryPutError,
};
use crate::ring::RingError;
use crate::ring::spsc::{self, Cache, SPSC_CTL_SIZE, Spsc, SpscCtl, Unstamped};
use crate::segment::{Identity, Kind, Options, Segment, Spec};
use crate::shared_type::SharedType;
use crate::shm::{self, How, Made, Shm};
use crate::sync::owner::BiasedLock;
use crate::wait::{Bump, DEFAULT_SPIN, Deadline, EventCount, Peers, WaitSet, deadline, fence};

/// The roles: their records in the table at the start of the payload.
const PRODUCER: usize = 0;
const CONSUMER: usize = 1;

/// Bytes of the roles' table (two records).
fn roles_size() -> usize {
    table_size(2)
}

mod sealed {
    pub trait Sealed {}
}

/// Which end of an [`SpscQueue`] an [`SpscEnd`] is: [`Producer`] or [`Consumer`]. Sealed.
pub trait Role: sealed::Sealed {
    #[doc(hidden)]
    const ROLE: usize;
}

/// The producing end's role ([`SpscProducer`]).
#[derive(Debug, Clone, Copy)]
pub enum Producer {}

/// The consuming end's role ([`SpscConsumer`]).
#[derive(Debug, Clone, Copy)]
pub enum Consumer {}

impl sealed::Sealed for Producer {}
impl sealed::Sealed for Consumer {}

impl Role for Producer {
    const ROLE: usize = PRODUCER;
}

impl Role for Consumer {
    const ROLE: usize = CONSUMER;
}

/// The pair constructors of single-producer, single-consumer queues of `T`: both ends at
/// once, attached to this process. Each end alone is created or opened through [`Shm`]
/// ([`SpscProducer::open`], [`SpscConsumer::create`], …).
///
/// ```
/// use mpshm::prelude::*;
/// use mpshm::{SpscProducer, SpscQueue};
///
/// let name = format!("doc-spsc-{}", std::process::id());
/// let (tx, rx) = SpscQueue::create::<u64>(&name, 64)?;
/// tx.put(7).expect("open queue");
/// assert_eq!(rx.get(), Ok(7));
/// // A second producer in a live process is refused until this one is released.
/// assert!(matches!(SpscProducer::<u64>::open(&name), Err(mpshm::Error::InUse { .. })));
/// tx.release();
/// let tx = SpscProducer::<u64>::open(&name)?;
/// tx.close();
/// assert_eq!(rx.get(), Err(mpshm::GetError::Closed));
/// # Ok::<(), mpshm::Error>(())
/// ```
#[derive(Debug)]
pub struct SpscQueue;

impl SpscQueue {
    /// Creates the queue `name` exclusively, with room for `capacity` messages, and returns
    /// both ends attached to this process. To give one to another process,
    /// [`release`](SpscEnd::release) it here and open it there.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidLength`] for a zero or huge capacity; [`Error::InvalidName`],
    /// [`Error::AlreadyExists`], [`Error::NoSpace`], [`Error::Io`].
    pub fn create<T: SharedType>(
        name: &str,
        capacity: usize,
    ) -> Result<(SpscProducer<T>, SpscConsumer<T>), Error> {
        Self::create_with(name, capacity, &Options::new())
    }

    /// [`create`](Self::create) with options.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_with<T: SharedType>(
        name: &str,
        capacity: usize,
        opts: &Options,
    ) -> Result<(SpscProducer<T>, SpscConsumer<T>), Error> {
        let spec = spec::<T>(Some(capacity), opts)?;
        shm::make(
            name,
            How::Create,
            &spec,
            opts,
            |seg| Ok(roles(seg).init()?),
            |seg, _| {
                let seg = Arc::new(seg);
                Ok((
                    SpscEnd::new(End::attach(Arc::clone(&seg), PRODUCER)?),
                    SpscEnd::new(End::attach(seg, CONSUMER)?),
                ))
            },
        )
    }
}

/// The segment of a queue of `capacity` messages of `T` (an opener's: `None`).
fn spec<T: SharedType>(capacity: Option<usize>, opts: &Options) -> Result<Spec, Error> {
    let size = std::mem::size_of::<T>();
    let ty = Identity::of::<T>(opts);
    let Some(capacity) = capacity else {
        return Ok(Spec::bytes(Kind::SpscQueue, ty, 0, [0; 4]));
    };
    // Below 2^32: the slot stamps keep 32 bits of the position.
    if capacity == 0 || capacity > u32::MAX as usize {
        return Err(Error::InvalidLength {
            len: capacity,
            reason: "an SPSC queue's capacity must be 1 to 2^32 - 1",
        });
    }
    let bytes = ring_bytes(capacity, size).ok_or(Error::InvalidLength {
        len: capacity,
        reason: "the queue would not fit in memory",
    })?;
    Ok(Spec::bytes(
        Kind::SpscQueue,
        ty,
        bytes,
        [capacity as u64, size as u64, 0, 0],
    ))
}

/// The payload's bytes for `capacity` slots of `size`-byte messages.
fn ring_bytes(capacity: usize, size: usize) -> Option<usize> {
    spsc::slot_words(size)
        .filter(|_| size < 1 << 32)
        .and_then(|w| w.checked_mul(capacity)?.checked_mul(8))
        .and_then(|b| b.checked_add(roles_size() + SPSC_CTL_SIZE))
}

/// What [`inspect`](crate::inspect) shows of an SPSC queue, read without changing anything; an
/// error for a geometry that does not match the segment's size (checked as `checked` does for an opener).
pub(crate) fn inspect(seg: &Segment) -> Result<crate::inspect::Found, String> {
    use crate::inspect::{Found, Role, State, records};
    let [cap, size, ..] = seg.params();
    let fits = (1..=u64::from(u32::MAX)).contains(&cap)
        && ring_bytes(cap as usize, size as usize) == Some(seg.count());
    if !fits {
        return Err(format!(
            "ring geometry {cap} × {size} B does not match its size {}",
            seg.count()
        ));
    }
    let (cap, size) = (cap as usize, size as usize);
    let off = seg.payload_offset() + roles_size();
    let words = cap * spsc::slot_words(size).expect("checked geometry");
    let ring = Spsc::new(
        seg.shared(off),
        seg.shared_slice(off + SPSC_CTL_SIZE, words),
        cap,
        size,
    );
    let mut found = Found::plain(State::SpscQueue {
        len: ring.len(),
        capacity: cap,
        message: size,
        closed: ring.is_closed(),
        lost: ring.lost(),
    });
    found.attached = records(&roles(seg), |i| {
        if i == PRODUCER {
            Role::Producer
        } else {
            Role::Consumer
        }
    });
    Ok(found)
}

/// An opened queue's geometry, checked against its size, `T` and the capacity asked for.
fn checked<T: SharedType>(seg: &Segment, asked: Option<usize>) -> Result<(), Error> {
    let [cap, size, ..] = seg.params();
    let want = std::mem::size_of::<T>();
    let mismatch = |expected: String, found: String| Error::LayoutMismatch {
        name: seg.name().to_owned(),
        expected,
        found,
    };
    if size != want as u64 {
        return Err(mismatch(
            format!("a queue of {want}-byte messages"),
            format!("a queue of {size}-byte messages"),
        ));
    }
    let expect = usize::try_from(cap)
        .ok()
        .filter(|&c| c != 0 && c <= u32::MAX as usize)
        .and_then(|c| ring_bytes(c, want));
    if expect != Some(seg.count()) {
        return Err(Error::Corrupt {
            name: seg.name().to_owned(),
            reason: format!(
                "ring geometry {cap} × {size} B does not match its size {}",
                seg.count()
            ),
        });
    }
    match asked {
        Some(asked) if asked as u64 != cap => Err(mismatch(
            format!("a queue of capacity {asked}"),
            format!("a queue of capacity {cap}"),
        )),
        _ => Ok(()),
    }
}

/// The roles' records; a dead holder's is freed by whoever finds it dead.
fn roles(seg: &Segment) -> Table<'_> {
    Table::at(seg, seg.payload_offset(), 2, DeadHolders::Free)
}

/// One end's view of the segment.
struct End {
    seg: Arc<Segment>,
    role: usize,
    /// This handle's hold of its role.
    att: Attachment,
    spin: AtomicU32,
    /// Held while putting (or getting), so that threads of this process take turns.
    lock: BiasedLock,
}

impl End {
    /// Takes `role` for this process, if nobody alive holds it.
    fn attach(seg: Arc<Segment>, role: usize) -> Result<End, Error> {
        fence::init();
        let end = End {
            seg,
            role,
            att: Attachment::default(),
            spin: AtomicU32::new(DEFAULT_SPIN),
            lock: BiasedLock::default(),
        };
        if !end.attach_here() {
            return Err(Error::InUse {
                name: end.seg.name().to_owned(),
                reason: if role == PRODUCER {
                    "another live handle holds the producing end"
                } else {
                    "another live handle holds the consuming end"
                },
            });
        }
        Ok(end)
    }

    fn roles(&self) -> Table<'_> {
        roles(&self.seg)
    }

    /// Whether this handle holds its role in this process: a handle inherited through `fork`
    /// takes the role over from the parent (or claims it, if free) at its first use in the
    /// child; `false` if another live process holds it.
    #[inline]
    fn here(&self) -> bool {
        self.att.attached() || self.attach_here()
    }

    /// Takes the role; then wakes the other end's blocked calls, so that they watch this new
    /// holder (one that slept while the role was free watches no one).
    #[cold]
    fn attach_here(&self) -> bool {
        let here = self.att.attach_at(&self.roles(), self.role);
        if here {
            let events = self.events_of(1 - self.role);
            Bump([Some(events.epoch()), None]).wake();
        }
        here
    }

    /// The ring's view, rebuilt from the validated geometry at every call (inline: every put
    /// and get starts here).
    #[inline]
    fn ring(&self) -> Spsc<'_> {
        let [cap, size, ..] = self.seg.params();
        let (cap, size) = (cap as usize, size as usize);
        let off = self.seg.payload_offset() + roles_size();
        let words = cap * spsc::slot_words(size).expect("checked geometry");
        let ctl: &SpscCtl = self.seg.shared(off);
        let slots: &[AtomicU64] = self.seg.shared_slice(off + SPSC_CTL_SIZE, words);
        Spsc::new(ctl, slots, cap, size)
    }

    fn spin(&self) -> u32 {
        self.spin.load(Relaxed)
    }

    /// Whether the other role is gone: it was used once (a message was put, or taken) and no
    /// process holds it now.
    fn peer_gone(&self) -> bool {
        let ring = self.ring();
        let (used, other) = if self.role == CONSUMER {
            (ring.pushed_ever(), PRODUCER)
        } else {
            (ring.popped_ever(), CONSUMER)
        };
        used && self.roles().holder(other) != Holder::Alive
    }

    /// The eventcount this end's blocked calls sleep on.
    fn events(&self) -> &EventCount {
        self.events_of(self.role)
    }

    /// The eventcount the blocked calls of `role` sleep on.
    fn events_of(&self, role: usize) -> &EventCount {
        if role == CONSUMER {
            self.ring().get_events()
        } else {
            self.ring().put_events()
        }
    }

    /// Adds the other role's liveness to `set`, whose sleepers wake on `epoch`.
    fn watch_peer<'a>(&'a self, set: &mut WaitSet<'a>, epoch: &'a AtomicU32) -> bool {
        roles(&self.seg).watch(1 - self.role, set, Bump([Some(epoch), None])) == Watch::Sleep
    }
}

impl Drop for End {
    fn drop(&mut self) {
        if self.att.detach(&self.roles()) {
            // The other end's waiters look again: they may be disconnected now.
            self.events_of(1 - self.role).wake();
        }
    }
}

/// The other role, for a blocked call of `end`.
struct SpscPeers<'a> {
    end: &'a End,
}

impl Peers for SpscPeers<'_> {
    #[cold]
    #[inline(never)]
    fn gone(&self) -> bool {
        self.end.peer_gone()
    }

    #[cold]
    #[inline(never)]
    fn sleep(&self, epoch: &AtomicU32, seen: u32, timeout: Option<Duration>) {
        // The slow path: this end arms its record again if its arming thread is gone.
        self.end.att.rearm(&self.end.roles());
        let mut set = WaitSet::within(timeout);
        set.epoch(epoch, seen);
        if self.end.watch_peer(&mut set, epoch) {
            set.sleep(timeout);
        }
    }
}

/// One end of an [`SpscQueue`], of the role `R`: [`SpscProducer`] puts, [`SpscConsumer`]
/// gets; both answer the queries. `Init` of its [`Shm`] constructors is the capacity: `create`
/// makes the queue and takes this end, leaving the other for a peer to open; `open` takes this
/// end of an existing queue (refused with [`Error::InUse`] while another live handle holds it).
pub struct SpscEnd<T, R: Role> {
    end: End,
    /// The other side's index as last seen (the producer's cache of the consumer's).
    cache: Cache,
    _t: PhantomData<fn(T, R) -> T>,
}

/// The producing end of an [`SpscQueue`]: puts `T`s.
///
/// ```
/// use mpshm::prelude::*;
/// use mpshm::{SpscConsumer, SpscProducer};
///
/// let name = format!("doc-spscp-{}", std::process::id());
/// let tx = SpscProducer::<u32>::create(&name, 8)?; // the consumer's end is left free
/// let rx = SpscConsumer::<u32>::open(&name)?;      // e.g. in another process
/// tx.put(5).expect("room");
/// assert_eq!(rx.get(), Ok(5));
/// # Ok::<(), mpshm::Error>(())
/// ```
pub type SpscProducer<T> = SpscEnd<T, Producer>;

/// The consuming end of an [`SpscQueue`]: gets `T`s, oldest first.
///
/// A message whose consumer died while taking it (after reading it, before freeing its slot) is
/// delivered again to the next consumer: at least once, where the MPMC
/// [`Queue`](crate::Queue) delivers at most once and counts the loss.
pub type SpscConsumer<T> = SpscEnd<T, Consumer>;

impl<T, R: Role> SpscEnd<T, R> {
    fn new(end: End) -> SpscEnd<T, R> {
        SpscEnd {
            end,
            cache: Cache::default(),
            _t: PhantomData,
        }
    }
}

/// `Init` is the capacity, 1 to 2^32 - 1 ([`Error::InvalidLength`] otherwise); `open` and
/// `open_or_create` check the message type, and `open_or_create` the capacity
/// ([`Error::LayoutMismatch`]). The options' mode, open timeout and type tag apply.
impl<T: SharedType, R: Role> Shm for SpscEnd<T, R> {
    type Init = usize;

    fn spec(capacity: Option<&usize>, opts: &Options) -> Result<Spec, Error> {
        spec::<T>(capacity.copied(), opts)
    }

    fn init(seg: &Segment, _: &usize) -> Result<(), Error> {
        // A fresh (zeroed) segment is an empty ring with both roles free.
        Ok(roles(seg).init()?)
    }

    fn wrap(seg: Segment, made: Made, asked: Option<&usize>, _: &Options) -> Result<Self, Error> {
        checked::<T>(&seg, asked.copied())?;
        let end = End::attach(Arc::new(seg), R::ROLE)?;
        if R::ROLE == PRODUCER && made == Made::Opened {
            // The previous producer may have died between publishing a message and advancing
            // `tail`.
            end.ring().recover_tail();
        }
        Ok(SpscEnd::new(end))
    }

    fn segment(&self) -> &Segment {
        &self.end.seg
    }
}

impl<T, R: Role> SpscEnd<T, R> {
    /// The number of messages in the queue: exact when no put or get is in flight.
    pub fn len(&self) -> usize {
        self.end.ring().len()
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
        self.end.seg.params()[0] as usize
    }

    /// Closes the queue for both ends: puts fail from now on; gets drain what is left, then
    /// fail; blocked callers wake.
    pub fn close(&self) {
        self.end.ring().close();
    }

    /// Whether the queue has been closed.
    pub fn is_closed(&self) -> bool {
        self.end.ring().is_closed()
    }

    /// How many messages were dropped because their slot held bytes no producer wrote.
    pub fn lost(&self) -> u64 {
        self.end.ring().lost()
    }

    /// How many rounds this handle spins (then yields) before sleeping in a blocked call. `0`
    /// sleeps at once; `u32::MAX` busy-polls and never sleeps (it still keeps a timed call's
    /// deadline). While it spins, a `put` into a full queue waits for the consumer to take half
    /// of it, as long as it keeps taking (the crate's README says why).
    pub fn set_spin(&self, rounds: u32) {
        self.end.spin.store(rounds, Relaxed);
    }

    /// Gives this end up, so that another process (or handle) can open it; the queue stays
    /// open. Dropping the handle does the same. (Once a message has been put, the other end's
    /// blocked calls then fail with `Disconnected` until a new holder opens this end.)
    pub fn release(self) {}
}

impl<T, R: Role> fmt::Debug for SpscEnd<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(if R::ROLE == PRODUCER {
            "SpscProducer"
        } else {
            "SpscConsumer"
        })
        .field("name", &self.end.seg.name())
        .field("type", &std::any::type_name::<T>())
        .field("capacity", &self.end.seg.params()[0])
        .finish()
    }
}

impl<T: SharedType> SpscEnd<T, Producer> {
    fn put_inner(&self, v: &T, deadline: Option<Instant>) -> Result<(), RingError> {
        // A deadline covers the wait for another thread of this process to finish its put.
        let _turn = self
            .end
            .lock
            .enter_until(deadline)
            .ok_or(RingError::Timeout)?;
        if !self.end.here() {
            return Err(RingError::Disconnected);
        }
        let ring = self.end.ring();
        let bytes = bytemuck::bytes_of(v);
        // The common case first, outside `push`'s waiting loop and its closures; `push` starts
        // with the same attempt, so a full ring is tried twice before the first backoff.
        if ring.is_closed() {
            return Err(RingError::Closed);
        }
        if ring.try_push(bytes, &self.cache) {
            return Ok(());
        }
        let peers = SpscPeers { end: &self.end };
        ring.push_watching(bytes, &[], &self.cache, deadline, self.end.spin(), &peers)
    }

    /// Puts `v`, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`PutError::Closed`] once the queue is closed; [`PutError::Disconnected`] when it is
    /// full, a message was taken once, and no consumer holds its role now (or a forked child
    /// finds the role held by another live process). The message is handed back.
    pub fn put(&self, v: T) -> Result<(), PutError<T>> {
        self.put_inner(&v, None).map_err(|f| match f {
            RingError::Disconnected => PutError::Disconnected(v),
            _ => PutError::Closed(v),
        })
    }

    /// Puts `v`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`PutTimeoutError::Timeout`], or as [`put`](Self::put).
    pub fn put_timeout(&self, v: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
        self.put_inner(&v, deadline(timeout)).map_err(|f| match f {
            RingError::Closed => PutTimeoutError::Closed(v),
            RingError::Timeout => PutTimeoutError::Timeout(v),
            RingError::Disconnected => PutTimeoutError::Disconnected(v),
        })
    }

    /// Puts `v` if there is room; never waits.
    ///
    /// # Errors
    ///
    /// [`TryPutError::Full`], or as [`put`](Self::put).
    pub fn try_put(&self, v: T) -> Result<(), TryPutError<T>> {
        // Another thread of this process inside a put: this one would have to wait.
        let Some(_turn) = self.end.lock.enter_within(Deadline::Now) else {
            return Err(TryPutError::Full(v));
        };
        if !self.end.here() {
            return Err(TryPutError::Disconnected(v));
        }
        let ring = self.end.ring();
        let bytes = bytemuck::bytes_of(&v);
        if ring.is_closed() {
            return Err(TryPutError::Closed(v));
        }
        if ring.try_push(bytes, &self.cache) {
            return Ok(());
        }
        // Full: the consumer's liveness, then one more try, so that its last take before it
        // went is seen.
        let gone = self.end.peer_gone();
        if ring.try_push(bytes, &self.cache) {
            Ok(())
        } else if gone && ring.is_closed() {
            // Closed, then gone, since the read of `closed` above (see `RingError::gone`).
            Err(TryPutError::Closed(v))
        } else if gone {
            Err(TryPutError::Disconnected(v))
        } else {
            Err(TryPutError::Full(v))
        }
    }
}

/// Copies a slot's bytes into `out`, straight into the caller's `T`: handed back inside nested
/// `Option`s, it would be shuffled through the stack as unaligned bytes, on the consumer's hot
/// path. A length other than `size_of::<T>()` (only a process
/// scribbling on the segment writes one) copies what fits; any bytes are a `T`.
#[inline]
fn read_into<T: SharedType>(out: &mut T, bytes: &[u8]) {
    let out = bytemuck::bytes_of_mut(out);
    let n = out.len().min(bytes.len());
    out[..n].copy_from_slice(&bytes[..n]);
}

impl<T: SharedType> SpscEnd<T, Consumer> {
    /// Takes a message into `out`.
    fn get_inner(&self, out: &mut T, deadline: Option<Instant>) -> Result<(), RingError> {
        // A deadline covers the wait for another thread of this process to finish its get.
        let _turn = self
            .end
            .lock
            .enter_until(deadline)
            .ok_or(RingError::Timeout)?;
        if !self.end.here() {
            return Err(RingError::Disconnected);
        }
        let ring = self.end.ring();
        let mut read = |bytes: &[u8]| read_into(out, bytes);
        if ring.try_pop(&mut read, Unstamped::MeansEmpty).is_some() {
            return Ok(());
        }
        let peers = SpscPeers { end: &self.end };
        ring.pop_watching(&mut read, deadline, self.end.spin(), &peers)
    }

    /// Takes the oldest message, waiting while the queue is empty.
    ///
    /// # Errors
    ///
    /// [`GetError::Closed`] once the queue is closed and drained; [`GetError::Disconnected`]
    /// when it is empty, a message was put once, and no producer holds its role now (or a
    /// forked child finds the role held by another live process).
    pub fn get(&self) -> Result<T, GetError> {
        let mut v = T::zeroed();
        match self.get_inner(&mut v, None) {
            Ok(()) => Ok(v),
            Err(RingError::Disconnected) => Err(GetError::Disconnected),
            Err(_) => Err(GetError::Closed),
        }
    }

    /// Takes the oldest message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`GetTimeoutError::Timeout`], or as [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        let mut v = T::zeroed();
        match self.get_inner(&mut v, deadline(timeout)) {
            Ok(()) => Ok(v),
            Err(RingError::Closed) => Err(GetTimeoutError::Closed),
            Err(RingError::Timeout) => Err(GetTimeoutError::Timeout),
            Err(RingError::Disconnected) => Err(GetTimeoutError::Disconnected),
        }
    }

    /// Takes the oldest message if one is ready; never waits.
    ///
    /// # Errors
    ///
    /// [`TryGetError::Empty`], or as [`get`](Self::get).
    pub fn try_get(&self) -> Result<T, TryGetError> {
        // Another thread of this process inside a get: this one would have to wait.
        let Some(_turn) = self.end.lock.enter_within(Deadline::Now) else {
            return Err(TryGetError::Empty);
        };
        if !self.end.here() {
            return Err(TryGetError::Disconnected);
        }
        let ring = self.end.ring();
        // `closed` first, so that closed-and-empty means drained; `gone` too, but only once
        // the queue is found empty (it may read `/proc`), and then before one more try.
        let closed = ring.is_closed();
        let mut v = T::zeroed();
        let mut read = |bytes: &[u8]| read_into(&mut v, bytes);
        let got = match ring.try_pop(&mut read, Unstamped::CheckTail) {
            None if !closed => {
                let gone = self.end.peer_gone();
                ring.try_pop(&mut read, Unstamped::CheckTail).ok_or(gone)
            }
            other => other.ok_or(false),
        };
        match got {
            Ok(()) => Ok(v),
            Err(_) if closed => Err(TryGetError::Closed),
            // Closed, then gone, since `closed` was read (see `RingError::gone`).
            Err(true) if ring.is_closed() => Err(TryGetError::Closed),
            Err(true) => Err(TryGetError::Disconnected),
            Err(false) => Err(TryGetError::Empty),
        }
    }

    /// An iterator that takes messages with [`get`](Self::get), waiting for each, until the
    /// queue is closed and drained or the producer is gone.
    pub fn iter(&self) -> SpscIter<'_, T> {
        SpscIter { end: self }
    }

    /// An iterator that takes the messages ready now with [`try_get`](Self::try_get).
    pub fn try_iter(&self) -> SpscTryIter<'_, T> {
        SpscTryIter { end: self }
    }
}

/// The iterator of [`SpscConsumer::iter`](SpscEnd::iter).
#[derive(Debug)]
pub struct SpscIter<'a, T> {
    end: &'a SpscConsumer<T>,
}

/// The iterator of [`SpscConsumer::try_iter`](SpscEnd::try_iter).
#[derive(Debug)]
pub struct SpscTryIter<'a, T> {
    end: &'a SpscConsumer<T>,
}

impl<T: SharedType> Iterator for SpscIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.end.get().ok()
    }
}

impl<T: SharedType> Iterator for SpscTryIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.end.try_get().ok()
    }
}

impl<'a, T: SharedType> IntoIterator for &'a SpscConsumer<T> {
    type Item = T;
    type IntoIter = SpscIter<'a, T>;

    fn into_iter(self) -> SpscIter<'a, T> {
        self.iter()
    }
}

impl<T: SharedType> crate::wait::sealed::WaitOn for SpscConsumer<T> {
    fn wait_on<'a>(&'a self, set: &mut WaitSet<'a>) -> bool {
        let events = self.end.events();
        set.count(events);
        self.end.watch_peer(set, events.epoch())
    }
}

impl<T: SharedType> crate::Waitable for SpscConsumer<T> {
    fn is_ready(&self) -> bool {
        self.end.ring().readable() || self.end.peer_gone()
    }
}

/// Where things sit in the payload, for the pinned layout (`src/layout.rs`).
#[cfg(test)]
pub(crate) fn shared_layout() -> Vec<String> {
    vec![format!(
        "placement: roles table (producer {PRODUCER}, consumer {CONSUMER}) at 0, ring at {}",
        roles_size()
    )]
}
