//! [`Pipe`]: Python's `multiprocessing.Pipe` — a duplex connection between two processes — as two
//! single-producer, single-consumer rings (`ring/spsc.rs`) in one named segment.
//!
//! Messages keep their boundaries and may be far larger than a ring: a message travels as chunks
//! of up to a slot, each led by an 8-byte header. The first chunk's header holds [`FIRST`] and
//! the message's length, every later chunk's its offset in the message; a receiver reassembles
//! them, and drops chunks that begin no message it saw start (the rest of a message whose
//! receiver died halfway, or whose sender died halfway and was replaced). So a receiver knows a
//! message's length from its first chunk, which it can look at without taking it: a message too
//! long for `recv_bytes_into`'s buffer, and a message `poll` found, stay in the ring.
//!
//! Each end is held by one process through an attachment record (`attach`). Dropping a
//! [`Connection`] closes both directions for that end, so the peer's `recv` drains what was sent
//! and then reports [`RecvError::Disconnected`], and its `send` fails at once. A peer that died
//! without closing (`SIGKILL`) is noticed the same way, at once (see
//! [`death_notice`](crate::death_notice)); its end may then be opened again by a new process
//! (a restarted peer rejoins), which gets everything sent to that end and not yet received.
//! [`release`](Connection::release) hands an end on without closing it.

use std::convert::Infallible;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::attach::{Attachment, DeadHolders, Holder, Table, Watch, table_size};
use crate::error::{
    BufferTooShort, Error, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TooLarge,
    TryRecvError, TrySendError, WrongType,
};
#[cfg(feature = "serde")]
use crate::error::{DecodeError, EncodeError};
use crate::ring::RingError;
use crate::ring::spsc::{self, Cache, SPSC_CTL_SIZE, Spsc, SpscCtl, Unstamped};
use crate::segment::{Identity, Kind, Options, Segment, Shared, Spec};
use crate::shared_type::{SharedType, message_id};
use crate::shm::{self, How, Made, Shm};
use crate::sync::owner::{BiasedLock, Entry};
use crate::wait::{Bump, DEFAULT_SPIN, Deadline, Peers, WaitSet, deadline, fence};

/// Bytes per chunk, its header included: one ring slot is 1 KiB with its header words. Small
/// slots keep many small messages in flight; large messages pay a slot per KiB, a fraction of
/// the copy itself.
const CHUNK: usize = 1024 - 16;
/// A chunk's header: for a message's first chunk, [`FIRST`], the message's type id (bits 31 to
/// 62: `shared_type::message_id` of the type it was sent as, 0 for bytes) and its length
/// (bits 0 to 30); for the others, the chunk's offset in its message.
const HEADER: usize = 8;
/// Bits of a first chunk's header that hold the message's length.
const LEN_BITS: u32 = 31;
const LEN_MASK: u64 = (1 << LEN_BITS) - 1;
/// Message bytes per chunk.
const BODY: usize = CHUNK - HEADER;
/// Set in the header of a message's first chunk.
const FIRST: u64 = 1 << 63;
/// Slots per direction (512 KiB of ring each way).
const SLOTS: usize = 512;
/// The longest message a pipe carries: 1 GiB.
pub const MAX_MESSAGE: usize = 1 << 30;
const _: () = assert!(MAX_MESSAGE as u64 <= LEN_MASK);

/// The shared state of the ends besides their records: whether each was closed.
#[repr(C, align(128))]
struct PipeCtl {
    closed: [AtomicU32; 2],
}

// SAFETY: atomics only: every bit pattern is valid and all mutation is atomic.
unsafe impl Shared for PipeCtl {}

const CTL_SIZE: usize = std::mem::size_of::<PipeCtl>();

fn ring_bytes() -> usize {
    let slots = SLOTS * spsc::slot_words(CHUNK).expect("constant") * 8;
    (SPSC_CTL_SIZE + slots).next_multiple_of(128)
}

/// The parameters of a pipe of this build: slots and chunk size per ring, one-way or not.
fn params(oneway: bool) -> [u64; 4] {
    [SLOTS as u64, CHUNK as u64, u64::from(oneway), 0]
}

fn spec(oneway: bool, opts: &Options) -> Spec {
    let bytes = CTL_SIZE + table_size(2) + 2 * ring_bytes();
    // One tag for both: an opener of the other direction learns which it found from the
    // parameters (a `LayoutMismatch` naming both), not from a tag.
    let ty = Identity::untyped("pipe", opts);
    Spec::bytes(Kind::Pipe, ty, bytes, params(oneway))
}

/// An opened pipe, checked against this build's geometry and the direction asked for.
fn checked(seg: &Segment, oneway: bool) -> Result<(), Error> {
    let [slots, chunk, found_oneway, rest] = seg.params();
    let this = params(oneway);
    if [slots, chunk, rest] != [this[0], this[1], this[3]]
        || seg.count() != spec(oneway, &Options::new()).count
    {
        return Err(Error::Corrupt {
            name: seg.name().to_owned(),
            reason: "pipe geometry does not match this build".to_owned(),
        });
    }
    if found_oneway != this[2] {
        let kind = |oneway| {
            if oneway {
                "a one-way pipe"
            } else {
                "a duplex pipe"
            }
        };
        return Err(Error::LayoutMismatch {
            name: seg.name().to_owned(),
            expected: kind(oneway).to_owned(),
            found: kind(found_oneway != 0).to_owned(),
        });
    }
    Ok(())
}

/// What [`inspect`](crate::inspect) shows of a pipe, read without changing anything; an error
/// for a geometry other than this build's (checked as `checked` does for an opener).
pub(crate) fn inspect(seg: &Segment) -> Result<crate::inspect::Found, String> {
    use crate::inspect::{Found, Role, State, records};
    let one_way = seg.params()[2] == 1;
    checked(seg, one_way).map_err(|_| "pipe geometry does not match this build".to_owned())?;
    let ctl: &PipeCtl = seg.shared(seg.payload_offset());
    let words = SLOTS * spsc::slot_words(CHUNK).expect("constant");
    let queued = [0, 1].map(|from| {
        let off = seg.payload_offset() + CTL_SIZE + table_size(2) + from * ring_bytes();
        Spsc::new(
            seg.shared(off),
            seg.shared_slice(off + SPSC_CTL_SIZE, words),
            SLOTS,
            CHUNK,
        )
        .len()
    });
    let mut found = Found::plain(State::Pipe {
        one_way,
        // Relaxed: a snapshot.
        closed: [0, 1].map(|side| ctl.closed[side].load(Ordering::Relaxed) != 0),
        queued,
    });
    found.attached = records(&ends(seg), |i| Role::End(i as u8));
    Ok(found)
}

/// The ends' records (end 0 and end 1); a dead holder's word stays until a new process takes
/// the end, so that its peer keeps seeing it dead.
fn ends(seg: &Segment) -> Table<'_> {
    Table::at(seg, seg.payload_offset() + CTL_SIZE, 2, DeadHolders::Keep)
}

/// A chunk's header and body; `None` for one too short to have a header.
fn parse(chunk: &[u8]) -> Option<(u64, &[u8])> {
    let (head, body) = chunk.split_at_checked(HEADER)?;
    Some((u64::from_ne_bytes(head.try_into().ok()?), body))
}

/// The length and type id of the message `header` begins, if it is a first chunk's header
/// that fits `body`.
fn first(header: u64, body: &[u8]) -> Option<(usize, u32)> {
    let len = usize::try_from(header & LEN_MASK).ok()?;
    let id = ((header & !FIRST) >> LEN_BITS) as u32;
    (header & FIRST != 0 && len <= MAX_MESSAGE && body.len() <= len).then_some((len, id))
}

/// Where a received message goes.
trait Sink {
    /// A message of `len` bytes begins (anything of an earlier one is dropped).
    fn start(&mut self, len: usize);
    /// Its next bytes.
    fn extend(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn start(&mut self, len: usize) {
        self.clear();
        self.reserve(len);
    }

    fn extend(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A caller's buffer, for a message its receiver has seen fits.
struct Slice<'b> {
    buf: &'b mut [u8],
    len: usize,
    /// The message did not fit after all (it was not the one looked at: never, in practice).
    overflow: Option<usize>,
}

impl Sink for Slice<'_> {
    fn start(&mut self, len: usize) {
        self.len = 0;
        self.overflow = (len > self.buf.len()).then_some(len);
    }

    fn extend(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.buf.get_mut(self.len..self.len + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }
}

/// One end's view of the segment.
struct End {
    seg: Arc<Segment>,
    side: usize,
    /// This handle's hold of its end.
    att: Attachment,
    spin: AtomicU32,
    /// When this handle was made, and how long after that the peer was last found alive in
    /// `/proc` (an unarmed peer is looked up there at most every [`PEER_POLL`](crate::PEER_POLL)
    /// by the calls that must not wait).
    born: Instant,
    peer_seen: AtomicU64,
    /// Held while receiving, so two threads cannot interleave a message's chunks (see
    /// `sync::owner` for why not a `Mutex`).
    recv: BiasedLock,
    /// Held while sending, for the same reason as `recv`.
    send: BiasedLock,
    /// Sends so far (under the send lock), to space out the peer's liveness checks.
    sends: AtomicU32,
    /// This end's caches of the other side's ring indices.
    send_cache: Cache,
}

impl End {
    fn ctl(&self) -> &PipeCtl {
        self.seg.shared(self.seg.payload_offset())
    }

    fn ends(&self) -> Table<'_> {
        ends(&self.seg)
    }

    /// The ring carrying messages from end `from` to the other end.
    fn ring(&self, from: usize) -> Spsc<'_> {
        let off = self.seg.payload_offset() + CTL_SIZE + table_size(2) + from * ring_bytes();
        let words = SLOTS * spsc::slot_words(CHUNK).expect("constant");
        let ctl: &SpscCtl = self.seg.shared(off);
        let slots: &[AtomicU64] = self.seg.shared_slice(off + SPSC_CTL_SIZE, words);
        Spsc::new(ctl, slots, SLOTS, CHUNK)
    }

    /// Takes end `side` of `seg` for this process, if it is not closed and no live process
    /// holds it.
    fn attach(seg: Arc<Segment>, side: usize) -> Option<End> {
        fence::init();
        let end = End {
            seg,
            side,
            att: Attachment::default(),
            spin: AtomicU32::new(DEFAULT_SPIN),
            born: Instant::now(),
            peer_seen: AtomicU64::new(0),
            recv: BiasedLock::default(),
            send: BiasedLock::default(),
            sends: AtomicU32::new(0),
            send_cache: Cache::default(),
        };
        if !end.attach_open() {
            return None;
        }
        end.wake_peer();
        Some(end)
    }

    /// Attaches this handle to its end, unless the end is closed: looked at before the claim,
    /// and again after it, since the last holder may close the end and release it in between
    /// (it stores `closed` before it frees the record, and the claim reads the freed record).
    /// Without the second look, a process opening a pipe just as its peer closed took the
    /// closed end, with nothing to receive (`examples/pipe_duplex.rs` failed 6 runs in 40).
    fn attach_open(&self) -> bool {
        if self.closed(self.side) || !self.att.attach_at(&self.ends(), self.side) {
            return false;
        }
        if self.closed(self.side) {
            self.att.detach(&self.ends());
            return false;
        }
        true
    }

    /// Wakes the peer's blocked calls (and `wait`s), so that they watch this end's new holder:
    /// one that slept while the end was free watches no one, and would not learn of its death.
    fn wake_peer(&self) {
        self.bump().wake();
    }

    /// The eventcounts of whoever watches this end's holder: the peer's receives from it and
    /// sends to it.
    fn bump(&self) -> Bump<'_> {
        Bump([
            Some(self.ring(self.side).get_events().epoch()),
            Some(self.ring(self.peer()).put_events().epoch()),
        ])
    }

    /// Whether this handle holds its end in this process: a handle inherited through `fork`
    /// takes the end over from the parent (or claims it, if free) at its first use in the
    /// child; `false` if another live process holds it, or it is closed.
    #[inline]
    fn here(&self) -> bool {
        self.att.attached() || self.attach_here()
    }

    #[cold]
    fn attach_here(&self) -> bool {
        let here = self.attach_open();
        if here {
            self.wake_peer();
        }
        here
    }

    fn closed(&self, side: usize) -> bool {
        // Acquire: pairs with the Release store in `close`.
        self.ctl().closed[side].load(Ordering::Acquire) != 0
    }

    fn peer(&self) -> usize {
        1 - self.side
    }

    /// Whether the peer closed its end.
    fn peer_closed(&self) -> bool {
        self.closed(self.peer())
    }

    /// Whether the peer closed its end, or its process died. A released end (no holder) is
    /// not gone: its next holder may come. An armed peer is seen alive at once; one whose
    /// arming thread died is looked up in `/proc`, and so is an unarmed one, but that at most
    /// every [`PEER_POLL`](crate::PEER_POLL) unless the look is [`Look::Fresh`].
    fn peer_gone(&self, look: Look) -> bool {
        if self.peer_closed() {
            return true;
        }
        let ends = self.ends();
        if ends.armed(self.peer()) {
            return false;
        }
        // Nanoseconds since this handle was made, plus one: 0 in `peer_seen` is "never".
        let now = || self.born.elapsed().as_nanos() as u64 + 1;
        let seen = self.peer_seen.load(Ordering::Relaxed);
        if look == Look::Cached
            && seen != 0
            && now().saturating_sub(seen) < crate::PEER_POLL.as_nanos() as u64
            && !ends.abandoned(self.peer())
        {
            return false;
        }
        let dead = matches!(ends.holder(self.peer()), Holder::Dead(_));
        if !dead {
            self.peer_seen.store(now(), Ordering::Relaxed);
        }
        dead
    }

    /// Adds the peer's liveness to `set`: its death wakes whoever waits to receive from it or
    /// to send to it.
    fn watch_peer<'a>(&'a self, set: &mut WaitSet<'a>) -> bool {
        let from_peer = self.ring(self.peer()).get_events().epoch();
        let to_peer = self.ring(self.side).put_events().epoch();
        self.ends()
            .watch(self.peer(), set, Bump([Some(from_peer), Some(to_peer)]))
            == Watch::Sleep
    }

    /// Sends `msg` as one message marked `id` (a [`SharedType`]'s message id, or 0 for bytes),
    /// waiting as `wait` says for room for its first chunk; once that is in, the rest follows as
    /// long as the peer is there (a receiver waits for the end of a message it has begun, so a
    /// message is never cut short by a timeout).
    fn send_message(&self, msg: &[u8], id: u32, wait: SendWait) -> Result<(), Unsent> {
        debug_assert!(msg.len() <= MAX_MESSAGE, "checked by the callers");
        let _sending = match wait {
            SendWait::Block => Some(self.send.enter()),
            SendWait::Until(deadline) => self.send.enter_until(Some(deadline)),
            SendWait::Try => self.send.enter_within(Deadline::Now),
        }
        .ok_or(Unsent::WouldBlock)?;
        if !self.here() {
            return Err(Unsent::Disconnected);
        }
        // The peer's closed flag is one load; its liveness may cost a `/proc` read, so it is
        // looked at once every 64 sends (and whenever a send has to wait).
        let n = self.sends.load(Ordering::Relaxed).wrapping_add(1);
        self.sends.store(n, Ordering::Relaxed);
        let gone = if n.is_multiple_of(64) {
            self.peer_gone(Look::Cached)
        } else {
            self.peer_closed()
        };
        if gone {
            return Err(Unsent::Disconnected);
        }
        let ring = self.ring(self.side);
        if let SendWait::Try = wait {
            // Never waits: the whole message must fit in the free slots now. Only this thread
            // (holding the send lock) fills them, so they stay free until it has.
            let chunks = msg.len().div_ceil(BODY).max(1);
            if ring.is_closed() || SLOTS - ring.len().min(SLOTS) < chunks {
                return Err(if ring.is_closed() {
                    Unsent::Disconnected
                } else {
                    Unsent::WouldBlock
                });
            }
        }
        let mut at = 0;
        loop {
            let body = &msg[at..(at + BODY).min(msg.len())];
            let header = if at == 0 {
                FIRST | u64::from(id) << LEN_BITS | msg.len() as u64
            } else {
                at as u64
            };
            let deadline = match wait {
                SendWait::Until(deadline) if at == 0 => Some(deadline),
                _ => None,
            };
            self.put_chunk(&ring, &header.to_ne_bytes(), body, deadline)?;
            at += body.len();
            if at >= msg.len() {
                return Ok(());
            }
        }
    }

    fn put_chunk(
        &self,
        ring: &Spsc<'_>,
        head: &[u8],
        body: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), Unsent> {
        if !ring.is_closed() && ring.try_push_parts(head, body, &self.send_cache) {
            return Ok(());
        }
        let spin = self.spin.load(Ordering::Relaxed);
        ring.push_watching(
            head,
            body,
            &self.send_cache,
            deadline,
            spin,
            &PipePeers { end: self },
        )
        .map_err(|f| match f {
            RingError::Timeout => Unsent::WouldBlock,
            RingError::Closed | RingError::Disconnected => Unsent::Disconnected,
        })
    }

    /// Takes the next whole message into `out`; waits until `deadline` for its first chunk,
    /// and that long at most for another thread of this process to finish its receive.
    fn recv_into_vec(&self, out: &mut Vec<u8>, wait: RecvWait) -> Result<(), Unreceived> {
        let _receiving = self.recv_lock(wait)?;
        self.recv_message(wait.deadline(), out).map(|_| ())
    }

    /// Takes the receive lock as `wait` allows; a `try_` receive first looks whether a message
    /// (or the end) is there, and again under the lock, since another thread may have taken it.
    fn recv_lock(&self, wait: RecvWait) -> Result<Entry<'_>, Unreceived> {
        match wait {
            RecvWait::Block => Ok(self.recv.enter()),
            RecvWait::Until(deadline) => self
                .recv
                .enter_until(Some(deadline))
                .ok_or(Unreceived::WouldBlock),
            RecvWait::Try => {
                if !self.ready() {
                    return Err(Unreceived::WouldBlock);
                }
                // Another thread of this process is receiving: this one would have to wait.
                let held = self
                    .recv
                    .enter_within(Deadline::Now)
                    .ok_or(Unreceived::WouldBlock)?;
                if !self.ready() {
                    return Err(Unreceived::WouldBlock);
                }
                // Ready: a chunk is published (or the peer is gone), so the receive does not
                // wait for long.
                Ok(held)
            }
        }
    }

    /// Receives the next message chunk by chunk into `sink`, with the receive lock held; waits
    /// until `deadline` for its first chunk, and for the rest as long as the peer is there.
    /// Returns its length and type id.
    fn recv_message(
        &self,
        deadline: Option<Instant>,
        sink: &mut impl Sink,
    ) -> Result<(usize, u32), Unreceived> {
        if !self.here() {
            return Err(Unreceived::Disconnected);
        }
        let ring = self.ring(self.peer());
        // The message being received: its length, type id and the bytes so far.
        let mut got: Option<(usize, u32, usize)> = None;
        loop {
            let started = got.is_some();
            let mut take = |chunk: &[u8]| {
                let Some((header, body)) = parse(chunk) else {
                    return;
                };
                if let Some((len, id)) = first(header, body) {
                    sink.start(len);
                    sink.extend(body);
                    got = Some((len, id, body.len()));
                } else if let Some((len, id, n)) = got {
                    // The next piece of this message, or else a stray one: dropped.
                    if header == n as u64 && n + body.len() <= len {
                        sink.extend(body);
                        got = Some((len, id, n + body.len()));
                    }
                }
            };
            // The fast path: a chunk is there (no clock read, no deadline).
            if ring.try_pop(&mut take, Unstamped::MeansEmpty).is_none() {
                let wait = if started { None } else { deadline };
                let spin = self.spin.load(Ordering::Relaxed);
                match ring.pop_watching(&mut take, wait, spin, &PipePeers { end: self }) {
                    Ok(()) => {}
                    Err(RingError::Timeout) => return Err(Unreceived::WouldBlock),
                    // Closed or gone, and drained (mid-message, the rest of it is lost with
                    // the peer).
                    Err(RingError::Closed | RingError::Disconnected) => {
                        return Err(Unreceived::Disconnected);
                    }
                }
            }
            if let Some((len, id, n)) = got
                && n == len
            {
                return Ok((len, id));
            }
        }
    }

    /// Waits until the first chunk of a message is there and returns the message's length,
    /// taking nothing; chunks that begin no message are dropped on the way.
    fn next_len(&self, deadline: Option<Instant>) -> Result<usize, Unreceived> {
        if !self.here() {
            return Err(Unreceived::Disconnected);
        }
        let ring = self.ring(self.peer());
        loop {
            match ring.peek(|chunk| parse(chunk).and_then(|(h, body)| first(h, body))) {
                Some(Some((len, _))) => return Ok(len),
                // A stray chunk at the head: dropped.
                Some(None) => {
                    ring.try_pop(&mut |_| (), Unstamped::MeansEmpty);
                }
                None => {
                    let spin = self.spin.load(Ordering::Relaxed);
                    match ring.wait_readable(deadline, spin, &PipePeers { end: self }) {
                        // Readable: a chunk, or closed (and then drained, if nothing is there).
                        Ok(()) if ring.is_closed() && ring.peek(|_| ()).is_none() => {
                            return Err(Unreceived::Disconnected);
                        }
                        Ok(()) => {}
                        Err(RingError::Timeout) => return Err(Unreceived::WouldBlock),
                        Err(RingError::Closed | RingError::Disconnected) => {
                            return Err(Unreceived::Disconnected);
                        }
                    }
                }
            }
        }
    }

    /// Receives the next message into `buf` without an intermediate copy; a message longer
    /// than `buf` stays in the ring and is reported as `BufferTooShort`.
    fn recv_into_slice(&self, buf: &mut [u8]) -> Result<usize, RecvError<BufferTooShort>> {
        let _receiving = self.recv.enter();
        let needed = self.next_len(None).map_err(|_| RecvError::Disconnected)?;
        if needed > buf.len() {
            return Err(RecvError::Decode(BufferTooShort { needed }));
        }
        let mut sink = Slice {
            buf,
            len: 0,
            overflow: None,
        };
        let (len, _) = self
            .recv_message(None, &mut sink)
            .map_err(|_| RecvError::Disconnected)?;
        match sink.overflow {
            Some(needed) => Err(RecvError::Decode(BufferTooShort { needed })),
            None => Ok(len),
        }
    }

    /// Receives a `T` straight into place; a message of another type (or of bytes) is
    /// consumed and reported.
    fn recv_typed<T: SharedType>(&self, wait: RecvWait) -> Result<T, Unreceived<WrongType>> {
        let _receiving = self.recv_lock(wait).map_err(Unreceived::cast)?;
        let mut v = T::zeroed();
        let size = std::mem::size_of::<T>();
        let mut sink = Slice {
            buf: bytemuck::bytes_of_mut(&mut v),
            len: 0,
            overflow: None,
        };
        let (found_size, id) = self
            .recv_message(wait.deadline(), &mut sink)
            .map_err(Unreceived::cast)?;
        if id != message_id::<T>() || found_size != size {
            return Err(Unreceived::Decode(WrongType {
                expected: T::tag().into_owned(),
                size,
                found_size,
                typed: id != 0,
            }));
        }
        Ok(v)
    }

    /// Whether a receive would not block: a message (or its first chunk) is there, or the peer
    /// is gone.
    fn ready(&self) -> bool {
        self.ring(self.peer()).readable() || self.peer_gone(Look::Cached)
    }

    /// Waits until a receive would not block (see `ready`), taking nothing.
    fn poll(&self, timeout: Duration) -> bool {
        if self.ready() {
            return true;
        }
        let spin = self.spin.load(Ordering::Relaxed);
        let ring = self.ring(self.peer());
        !matches!(
            ring.wait_readable(deadline(timeout), spin, &PipePeers { end: self }),
            Err(RingError::Timeout)
        )
    }

    /// Closes this end: both rings, so that the peer drains what is left and then sees the end.
    fn close(&self) {
        // Release: pairs with the Acquire load in `closed`.
        self.ctl().closed[self.side].store(1, Ordering::Release);
        self.ring(0).close();
        self.ring(1).close();
    }

    /// Gives the end up without closing it (a later process may open it). A peer waiting on
    /// this end's liveness is woken by the unlock and sleeps again: a released end is not gone.
    fn release(&self) {
        self.att.detach(&self.ends());
    }
}

impl Drop for End {
    fn drop(&mut self) {
        // Only an end this process holds is closed: an inherited handle whose end a forked
        // child (or its parent) holds is left alone.
        if self.att.holds(&self.ends()) {
            self.close();
        }
        self.release();
    }
}

/// How recent a look at the peer's liveness must be ([`End::peer_gone`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    /// A liveness read within the last [`PEER_POLL`](crate::PEER_POLL) will do: the send and
    /// `poll` paths, which run often.
    Cached,
    /// Read it now: a blocked call deciding whether to give up.
    Fresh,
}

/// The peer, for a blocked call of `end`.
struct PipePeers<'a> {
    end: &'a End,
}

impl Peers for PipePeers<'_> {
    #[cold]
    #[inline(never)]
    fn gone(&self) -> bool {
        self.end.peer_gone(Look::Fresh)
    }

    #[cold]
    #[inline(never)]
    fn sleep(&self, epoch: &AtomicU32, seen: u32, timeout: Option<Duration>) {
        // The slow path: this end arms its record again if its arming thread is gone.
        self.end.att.rearm(&self.end.ends());
        let mut set = WaitSet::within(timeout);
        set.epoch(epoch, seen);
        if self.end.watch_peer(&mut set) {
            set.sleep(timeout);
        }
    }
}

/// How long a send may wait for room for its message's first chunk.
#[derive(Clone, Copy)]
enum SendWait {
    /// As long as the peer is there.
    Block,
    /// Until then.
    Until(Instant),
    /// Not at all: the whole message must fit now.
    Try,
}

/// How long a receive may wait for a message to begin.
#[derive(Clone, Copy)]
enum RecvWait {
    Block,
    Until(Instant),
    Try,
}

impl RecvWait {
    /// The deadline for the first chunk (a `try_` receive has found one ready).
    fn deadline(self) -> Option<Instant> {
        match self {
            RecvWait::Until(deadline) => Some(deadline),
            RecvWait::Block | RecvWait::Try => None,
        }
    }

    fn of(timeout: Duration) -> RecvWait {
        deadline(timeout).map_or(RecvWait::Block, RecvWait::Until)
    }
}

/// Why a send did not happen, before the public error is made.
enum Unsent {
    /// No room in time (full for `try_send`, the timeout for `send_timeout`).
    WouldBlock,
    Disconnected,
}

/// Why a receive did not happen, before the public error is made.
enum Unreceived<E = Infallible> {
    /// Nothing in time (empty for `try_recv`, the timeout for `recv_timeout`).
    WouldBlock,
    Disconnected,
    Decode(E),
}

impl Unreceived {
    fn cast<E>(self) -> Unreceived<E> {
        match self {
            Unreceived::WouldBlock => Unreceived::WouldBlock,
            Unreceived::Disconnected => Unreceived::Disconnected,
            Unreceived::Decode(never) => match never {},
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// Which way a [`PipeEnd`] carries messages: [`Duplex`] ([`Connection`]), [`ReadOnly`]
/// ([`PipeReader`]) or [`WriteOnly`] ([`PipeWriter`]). Sealed.
pub trait Direction: sealed::Sealed {
    /// The end of a one-way pipe this direction takes (the reader 0, the writer 1); `None` for
    /// a duplex pipe, whose ends are alike.
    #[doc(hidden)]
    const END: Option<usize>;
}

/// A direction that receives: [`Duplex`] and [`ReadOnly`].
pub trait Receives: Direction {}

/// A direction that sends: [`Duplex`] and [`WriteOnly`].
pub trait Sends: Direction {}

/// Both ways: an end of a duplex pipe ([`Connection`]).
#[derive(Debug, Clone, Copy)]
pub enum Duplex {}

/// The receiving end of a one-way pipe ([`PipeReader`]).
#[derive(Debug, Clone, Copy)]
pub enum ReadOnly {}

/// The sending end of a one-way pipe ([`PipeWriter`]).
#[derive(Debug, Clone, Copy)]
pub enum WriteOnly {}

impl sealed::Sealed for Duplex {}
impl sealed::Sealed for ReadOnly {}
impl sealed::Sealed for WriteOnly {}

impl Direction for Duplex {
    const END: Option<usize> = None;
}

impl Direction for ReadOnly {
    const END: Option<usize> = Some(0);
}

impl Direction for WriteOnly {
    const END: Option<usize> = Some(1);
}

impl Receives for Duplex {}
impl Receives for ReadOnly {}
impl Sends for Duplex {}
impl Sends for WriteOnly {}

/// One end of a [`Pipe`], of the direction `D`: [`Connection`] (both ways), [`PipeReader`] or
/// [`PipeWriter`]. The receiving methods are on the ends whose direction [`Receives`], the
/// sending ones on those that [`Sends`].
///
/// A pipe has two ends, 0 and 1; a process attaches to an end when it creates or opens it, and
/// one end is held by one process at a time. Through [`Shm`] (`Init` is `()`), `create` makes
/// the pipe and attaches this end (a [`Connection`] end 0), leaving the other for a peer;
/// `open` attaches a free end (any for a [`Connection`], the reading or writing end for the
/// one-way ends): a released one, or one whose process died ([`Error::InUse`] when there is
/// none). An end whose process died can be opened again; a closed one cannot.
pub struct PipeEnd<D: Direction> {
    end: End,
    _d: PhantomData<D>,
}

/// One end of a duplex [`Pipe`]: send and receive messages (Python's `Connection`).
///
/// ```
/// use mpshm::prelude::*;
///
/// let name = format!("doc-pipe-{}", std::process::id());
/// let (a, b) = mpshm::Pipe::create(&name)?;
/// a.send(&42u64).expect("peer open");
/// assert_eq!(b.recv::<u64>(), Ok(42));
/// b.send_bytes(b"hello").expect("peer open");
/// assert!(a.poll(std::time::Duration::ZERO));
/// assert_eq!(a.recv_bytes().expect("message"), b"hello");
/// drop(b);
/// assert_eq!(a.recv_bytes(), Err(mpshm::RecvError::Disconnected));
/// # Ok::<(), mpshm::Error>(())
/// ```
///
/// A message is received as the type it was sent as: `recv::<u32>` of an `i32` is refused.
///
/// ```
/// let name = format!("doc-ptype-{}", std::process::id());
/// let (a, b) = mpshm::Pipe::create(&name)?;
/// a.send(&-1i32).expect("peer open");
/// assert!(matches!(b.recv::<u32>(), Err(mpshm::RecvError::Decode(mpshm::WrongType { .. }))));
/// # Ok::<(), mpshm::Error>(())
/// ```
pub type Connection = PipeEnd<Duplex>;

/// The receiving end of a one-way pipe ([`Pipe::create_oneway`]). It has no way to send:
///
/// ```compile_fail
/// # let name = format!("doc-ro-{}", std::process::id());
/// let (reader, _writer) = mpshm::Pipe::create_oneway(&name).expect("create");
/// reader.send_bytes(b"no"); // a reader cannot send
/// ```
pub type PipeReader = PipeEnd<ReadOnly>;

/// The sending end of a one-way pipe ([`Pipe::create_oneway`]). It has no way to receive:
///
/// ```compile_fail
/// # let name = format!("doc-wo-{}", std::process::id());
/// let (_reader, writer) = mpshm::Pipe::create_oneway(&name).expect("create");
/// let _ = writer.recv_bytes(); // a writer cannot receive
/// ```
///
/// ```
/// # let name = format!("doc-ow-{}", std::process::id());
/// let (reader, writer) = mpshm::Pipe::create_oneway(&name)?;
/// writer.send(&7u32).expect("reader open");
/// assert_eq!(reader.recv::<u32>(), Ok(7));
/// # Ok::<(), mpshm::Error>(())
/// ```
pub type PipeWriter = PipeEnd<WriteOnly>;

/// The pair constructors of pipes: both ends at once, attached to this process. Each end alone
/// is created or opened through [`Shm`] ([`Connection::open`](PipeEnd), …).
#[derive(Debug)]
pub struct Pipe;

impl Pipe {
    /// Creates the duplex pipe `name` and returns both ends, attached to this process. To give
    /// one to another process, [`release`](PipeEnd::release) it here and open it there
    /// (`Connection::open`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`], [`Error::AlreadyExists`], [`Error::NoSpace`],
    /// [`Error::InvalidMode`], [`Error::Io`].
    pub fn create(name: &str) -> Result<(Connection, Connection), Error> {
        Self::create_with(name, &Options::new())
    }

    /// [`create`](Self::create) with options.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_with(name: &str, opts: &Options) -> Result<(Connection, Connection), Error> {
        create_pair(name, false, opts)
    }

    /// Creates the one-way pipe `name` (Python's `Pipe(duplex=False)`): a reader and a writer.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_oneway(name: &str) -> Result<(PipeReader, PipeWriter), Error> {
        Self::create_oneway_with(name, &Options::new())
    }

    /// [`create_oneway`](Self::create_oneway) with options.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_oneway_with(
        name: &str,
        opts: &Options,
    ) -> Result<(PipeReader, PipeWriter), Error> {
        create_pair(name, true, opts)
    }
}

fn create_pair<A: Direction, B: Direction>(
    name: &str,
    oneway: bool,
    opts: &Options,
) -> Result<(PipeEnd<A>, PipeEnd<B>), Error> {
    let spec = spec(oneway, opts);
    // A fresh (zeroed) segment is two empty rings (both indices 0) and two free ends.
    shm::make(
        name,
        How::Create,
        &spec,
        opts,
        |seg| Ok(ends(seg).init()?),
        |seg, _| {
            let seg = Arc::new(seg);
            match (End::attach(Arc::clone(&seg), 0), End::attach(seg, 1)) {
                (Some(a), Some(b)) => Ok((PipeEnd::new(a), PipeEnd::new(b))),
                // Someone scribbled on the records between our create and our claim.
                _ => Err(in_use(name)),
            }
        },
    )
}

fn in_use(name: &str) -> Error {
    Error::InUse {
        name: name.to_owned(),
        reason: "both ends of the pipe are taken or closed",
    }
}

impl End {
    /// An end just opened: its previous holder may have died between publishing a chunk and
    /// advancing `tail`, and that chunk must not be overwritten.
    fn taken_over(self) -> End {
        self.ring(self.side).recover_tail();
        self
    }
}

impl<D: Direction> PipeEnd<D> {
    fn new(end: End) -> PipeEnd<D> {
        PipeEnd {
            end,
            _d: PhantomData,
        }
    }
}

/// `Init` is `()`. `create` attaches this end (a [`Connection`]'s end 0); `open` a free one
/// ([`Error::InUse`] when there is none; [`Error::LayoutMismatch`] for a one-way pipe opened as
/// a duplex end, or the other way round). The options' mode, open timeout and type tag apply.
impl<D: Direction> Shm for PipeEnd<D> {
    type Init = ();

    fn spec(_: Option<&()>, opts: &Options) -> Result<Spec, Error> {
        Ok(spec(D::END.is_some(), opts))
    }

    fn init(seg: &Segment, _: &()) -> Result<(), Error> {
        Ok(ends(seg).init()?)
    }

    fn wrap(seg: Segment, made: Made, _: Option<&()>, _: &Options) -> Result<Self, Error> {
        checked(&seg, D::END.is_some())?;
        let name = seg.name().to_owned();
        let seg = Arc::new(seg);
        let end = match (made, D::END) {
            (_, Some(side)) => End::attach(seg, side),
            (Made::Created, None) => End::attach(seg, 0),
            (Made::Opened, None) => (0..2).find_map(|side| End::attach(Arc::clone(&seg), side)),
        }
        .ok_or_else(|| in_use(&name))?;
        Ok(PipeEnd::new(match made {
            Made::Created => end,
            Made::Opened => end.taken_over(),
        }))
    }

    fn segment(&self) -> &Segment {
        &self.end.seg
    }
}

impl<D: Direction> PipeEnd<D> {
    /// How many rounds a blocked receive (or send) spins before it sleeps: `0` sleeps at once,
    /// `u32::MAX` busy-polls (and still keeps a timed call's deadline). While it spins, a send
    /// into a full pipe waits for the receiver to take half of it, as long as it keeps taking
    /// (the crate's README says why).
    pub fn set_spin(&self, rounds: u32) {
        self.end.spin.store(rounds, Ordering::Relaxed);
    }

    /// Leaves this end attached to no process, without closing it, so that another process can
    /// open it by name; it gets everything sent to this end and not yet received. In a process
    /// that forked a child which is to use this end, release it here rather than drop it: a
    /// drop closes the end unless the child has already taken it over.
    pub fn release(self) {
        self.end.release();
    }

    /// Closes this end for good: the peer drains what was sent, then sees `Disconnected`, and
    /// what the peer sent to this end is dropped with it. The same as dropping it.
    pub fn close(self) {}
}

impl<D: Receives> PipeEnd<D> {
    /// Receives the next message as bytes, waiting for it (whatever it was sent as).
    ///
    /// # Errors
    ///
    /// [`RecvError::Disconnected`] once the peer closed (or died) and everything it sent has
    /// been read.
    pub fn recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        let mut v = Vec::new();
        match self.end.recv_into_vec(&mut v, RecvWait::Block) {
            Ok(()) => Ok(v),
            Err(_) => Err(RecvError::Disconnected),
        }
    }

    /// Receives the next message into `buf`, returning its length. When `buf` is too short,
    /// fails with [`BufferTooShort`] and keeps the message for the next receive.
    ///
    /// # Errors
    ///
    /// [`RecvError::Decode`] with [`BufferTooShort`], or as [`recv_bytes`](Self::recv_bytes).
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, RecvError<BufferTooShort>> {
        self.end.recv_into_slice(buf)
    }

    /// Receives the next message as a `T` sent with [`send`](PipeEnd::send) as a `T` (the same
    /// [`SharedType`] name and layout).
    ///
    /// # Errors
    ///
    /// [`RecvError::Decode`] with [`WrongType`] when the message was sent as another type or as
    /// bytes (it is consumed), or as [`recv_bytes`](Self::recv_bytes).
    pub fn recv<T: SharedType>(&self) -> Result<T, RecvError<WrongType>> {
        self.end.recv_typed(RecvWait::Block).map_err(|e| match e {
            Unreceived::Decode(e) => RecvError::Decode(e),
            _ => RecvError::Disconnected,
        })
    }

    /// Receives a `T` if a message is ready; never waits for one (no allocation).
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`], or as [`recv`](Self::recv).
    pub fn try_recv<T: SharedType>(&self) -> Result<T, TryRecvError<WrongType>> {
        self.end.recv_typed(RecvWait::Try).map_err(|e| match e {
            Unreceived::WouldBlock => TryRecvError::Empty,
            Unreceived::Disconnected => TryRecvError::Disconnected,
            Unreceived::Decode(e) => TryRecvError::Decode(e),
        })
    }

    /// Receives a `T`, waiting at most `timeout` for it to start arriving (no allocation).
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`], or as [`recv`](Self::recv).
    pub fn recv_timeout<T: SharedType>(
        &self,
        timeout: Duration,
    ) -> Result<T, RecvTimeoutError<WrongType>> {
        self.end
            .recv_typed(RecvWait::of(timeout))
            .map_err(|e| match e {
                Unreceived::WouldBlock => RecvTimeoutError::Timeout,
                Unreceived::Disconnected => RecvTimeoutError::Disconnected,
                Unreceived::Decode(e) => RecvTimeoutError::Decode(e),
            })
    }

    /// Receives a message sent with `send_serde` as a `T` (feature `serde`, postcard).
    ///
    /// # Errors
    ///
    /// [`RecvError::Decode`] with [`DecodeError`] when it is not a valid `T` (it is
    /// consumed), or as [`recv_bytes`](Self::recv_bytes).
    #[cfg(feature = "serde")]
    pub fn recv_serde<T: serde::de::DeserializeOwned>(&self) -> Result<T, RecvError<DecodeError>> {
        let bytes = self.recv_bytes().map_err(|_| RecvError::Disconnected)?;
        postcard::from_bytes(&bytes).map_err(|_| RecvError::Decode(DecodeError))
    }

    /// Whether a message (or the end of the stream: the peer closed or died) is ready, waiting
    /// at most `timeout`. It takes nothing: the message stays for the next receive, by this
    /// handle or, after [`release`](Self::release), by the next process to open this end.
    pub fn poll(&self, timeout: Duration) -> bool {
        self.end.poll(timeout)
    }

    /// An iterator that receives messages as bytes with [`recv_bytes`](Self::recv_bytes),
    /// waiting for each, until the peer has closed (or died) and everything it sent was read.
    ///
    /// ```
    /// let name = format!("doc-piter-{}", std::process::id());
    /// let (a, b) = mpshm::Pipe::create(&name)?;
    /// a.send_bytes(b"one").expect("open");
    /// a.send_bytes(b"two").expect("open");
    /// drop(a);
    /// assert_eq!(b.iter().collect::<Vec<_>>(), [b"one".to_vec(), b"two".to_vec()]);
    /// # Ok::<(), mpshm::Error>(())
    /// ```
    pub fn iter(&self) -> PipeIter<'_, D> {
        PipeIter { end: self }
    }

    /// An iterator that receives the messages ready now, as bytes.
    pub fn try_iter(&self) -> PipeTryIter<'_, D> {
        PipeTryIter { end: self }
    }
}

impl<D: Sends> PipeEnd<D> {
    /// Sends `msg` as one message of bytes (of any length up to [`MAX_MESSAGE`]), waiting while
    /// the pipe is full.
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] when the peer closed or died; [`SendError::Encode`] with
    /// [`TooLarge`] for a message longer than [`MAX_MESSAGE`].
    pub fn send_bytes(&self, msg: &[u8]) -> Result<(), SendError<TooLarge>> {
        if msg.len() > MAX_MESSAGE {
            return Err(SendError::Encode(TooLarge {
                len: msg.len(),
                max: MAX_MESSAGE,
            }));
        }
        self.end
            .send_message(msg, 0, SendWait::Block)
            .map_err(|_| SendError::Disconnected)
    }

    /// Sends `v` by value (its bytes; no serialisation), marked as a `T`, so that only a
    /// `recv::<T>` of the same [`SharedType`] takes it; waits while the pipe is full.
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] when the peer closed or died.
    pub fn send<T: SharedType>(&self, v: &T) -> Result<(), SendError> {
        self.send_typed(v, SendWait::Block)
            .map_err(|_| SendError::Disconnected)
    }

    /// Sends `v` if the pipe has room for it now; never waits.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`], or as [`send`](Self::send).
    pub fn try_send<T: SharedType>(&self, v: &T) -> Result<(), TrySendError> {
        self.send_typed(v, SendWait::Try).map_err(|e| match e {
            Unsent::WouldBlock => TrySendError::Full,
            Unsent::Disconnected => TrySendError::Disconnected,
        })
    }

    /// Sends `v`, waiting at most `timeout` for room for it (for its first chunk, for a value
    /// larger than a chunk: once a message has begun it is finished, since the receiver waits
    /// for its end).
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] (nothing was sent), or as [`send`](Self::send).
    pub fn send_timeout<T: SharedType>(
        &self,
        v: &T,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError> {
        let wait = deadline(timeout).map_or(SendWait::Block, SendWait::Until);
        self.send_typed(v, wait).map_err(|e| match e {
            Unsent::WouldBlock => SendTimeoutError::Timeout,
            Unsent::Disconnected => SendTimeoutError::Disconnected,
        })
    }

    fn send_typed<T: SharedType>(&self, v: &T, wait: SendWait) -> Result<(), Unsent> {
        const { assert!(std::mem::size_of::<T>() <= MAX_MESSAGE) };
        self.end
            .send_message(bytemuck::bytes_of(v), message_id::<T>(), wait)
    }

    /// Sends any serde value, encoded with postcard (feature `serde`), as a message of bytes.
    ///
    /// # Errors
    ///
    /// [`SendError::Encode`] with [`EncodeError`] when it cannot be serialised or is longer
    /// than [`MAX_MESSAGE`] encoded, or as [`send`](Self::send).
    #[cfg(feature = "serde")]
    pub fn send_serde<T: serde::Serialize>(&self, v: &T) -> Result<(), SendError<EncodeError>> {
        let bytes =
            postcard::to_allocvec(v).map_err(|_| SendError::Encode(EncodeError::Serialize))?;
        self.send_bytes(&bytes).map_err(|e| match e {
            SendError::Encode(t) => SendError::Encode(EncodeError::TooLarge(t)),
            _ => SendError::Disconnected,
        })
    }
}

impl<D: Direction> fmt::Debug for PipeEnd<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ty = match D::END {
            None => "Connection",
            Some(0) => "PipeReader",
            Some(_) => "PipeWriter",
        };
        f.debug_struct(ty)
            .field("name", &self.end.seg.name())
            .field("end", &self.end.side)
            .finish()
    }
}

impl<D: Receives> crate::wait::sealed::WaitOn for PipeEnd<D> {
    fn wait_on<'a>(&'a self, set: &mut WaitSet<'a>) -> bool {
        set.count(self.end.ring(self.end.peer()).get_events());
        self.end.watch_peer(set)
    }
}

impl<D: Receives> crate::Waitable for PipeEnd<D> {
    fn is_ready(&self) -> bool {
        self.end.ready()
    }
}

/// The iterator of [`PipeEnd::iter`]: messages as bytes, until the peer is done.
#[derive(Debug)]
pub struct PipeIter<'a, D: Direction> {
    end: &'a PipeEnd<D>,
}

/// The iterator of [`PipeEnd::try_iter`]: the messages ready now, as bytes.
#[derive(Debug)]
pub struct PipeTryIter<'a, D: Direction> {
    end: &'a PipeEnd<D>,
}

impl<D: Receives> Iterator for PipeIter<'_, D> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        self.end.recv_bytes().ok()
    }
}

impl<D: Receives> Iterator for PipeTryIter<'_, D> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let mut v = Vec::new();
        self.end
            .end
            .recv_into_vec(&mut v, RecvWait::Try)
            .ok()
            .map(|()| v)
    }
}

impl<'a, D: Receives> IntoIterator for &'a PipeEnd<D> {
    type Item = Vec<u8>;
    type IntoIter = PipeIter<'a, D>;

    fn into_iter(self) -> PipeIter<'a, D> {
        self.iter()
    }
}

/// The shared structures of this module, for the pinned layout (`src/layout.rs`).
#[cfg(test)]
pub(crate) fn shared_layout() -> Vec<String> {
    vec![
        crate::layout::pin!(PipeCtl { closed }),
        format!(
            "placement: ends table at {CTL_SIZE}, rings at {} and {}; {SLOTS} slots of {CHUNK} B",
            CTL_SIZE + table_size(2),
            CTL_SIZE + table_size(2) + ring_bytes()
        ),
        format!(
            "chunk header: {HEADER} B, FIRST {FIRST:#x} | type id << {LEN_BITS} | length in a \
             message's first (type id 0: bytes), its offset in the others"
        ),
    ]
}
