//! [`Pipe`]: Python's `multiprocessing.Pipe` — a duplex connection between two processes — as two
//! single-producer, single-consumer rings (`spsc.rs`) in one named segment.
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

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::attach::{Attachment, Holder, Table, Watch, table_size};
use crate::error::{Error, RecvError, SendError};
use crate::queue::{DEFAULT_SPIN, deadline};
use crate::ring::{Fail, Peers};
use crate::segment::{Kind, Options, Segment, Shared, Spec};
use crate::spsc::{self, Cache, SPSC_CTL_SIZE, Spsc, SpscCtl};
use crate::sync::fence;
use crate::sync::owner::{OwnerLock, Patience};
use crate::wait::{Bump, WaitSet};

/// Bytes per chunk, its header included: one ring slot is 1 KiB with its header words. Small
/// slots keep many small messages in flight; large messages pay a slot per KiB, a fraction of
/// the copy itself.
const CHUNK: usize = 1024 - 16;
/// A chunk's header: [`FIRST`] and the message's length, or the chunk's offset in its message.
const HEADER: usize = 8;
/// Message bytes per chunk.
const BODY: usize = CHUNK - HEADER;
/// Set in the header of a message's first chunk.
const FIRST: u64 = 1 << 63;
/// Slots per direction (512 KiB of ring each way).
const SLOTS: usize = 512;
/// The largest message `send_bytes` accepts: 1 GiB.
pub const MAX_MESSAGE: usize = 1 << 30;

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

fn spec(oneway: bool) -> Spec {
    let bytes = CTL_SIZE + table_size(2) + 2 * ring_bytes();
    Spec {
        kind: Kind::Pipe,
        elem_size: 1,
        elem_align: 128,
        count: Some(bytes),
        tag: if oneway {
            "one-way pipe"
        } else {
            "duplex pipe"
        }
        .to_owned(),
        params: [SLOTS as u64, CHUNK as u64, u64::from(oneway), 0],
    }
}

/// The ends' records (end 0 and end 1); a dead holder's word stays until a new process takes
/// the end, so that its peer keeps seeing it dead.
fn ends(seg: &Segment) -> Table<'_> {
    Table::at(seg, seg.payload_offset() + CTL_SIZE, 2, false)
}

/// A chunk's header and body; `None` for one too short to have a header.
fn parse(chunk: &[u8]) -> Option<(u64, &[u8])> {
    let (head, body) = chunk.split_at_checked(HEADER)?;
    Some((u64::from_ne_bytes(head.try_into().ok()?), body))
}

/// The length of the message `header` begins, if it is a first chunk's header that fits `body`.
fn first(header: u64, body: &[u8]) -> Option<usize> {
    let len = usize::try_from(header & !FIRST).ok()?;
    (header & FIRST != 0 && len <= MAX_MESSAGE && body.len() <= len).then_some(len)
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
    recv: OwnerLock,
    /// Held while sending, for the same reason as `recv`.
    send: OwnerLock,
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
            recv: OwnerLock::default(),
            send: OwnerLock::default(),
            sends: AtomicU32::new(0),
            send_cache: Cache::default(),
        };
        if end.closed(side) || !end.att.attach_at(&end.ends(), side) {
            return None;
        }
        end.wake_peer();
        Some(end)
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
            Some(self.ring(self.side).get_wait().0),
            Some(self.ring(self.peer()).put_wait().0),
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
        let here = !self.closed(self.side) && self.att.attach_at(&self.ends(), self.side);
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
    /// every [`PEER_POLL`](crate::PEER_POLL) unless `fresh`.
    fn peer_gone(&self, fresh: bool) -> bool {
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
        if !fresh
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
        let from_peer = self.ring(self.peer()).get_wait().0;
        let to_peer = self.ring(self.side).put_wait().0;
        self.ends()
            .watch(self.peer(), set, Bump([Some(from_peer), Some(to_peer)]))
            == Watch::Sleep
    }

    fn send_bytes(&self, msg: &[u8]) -> Result<(), SendError> {
        if msg.len() > MAX_MESSAGE {
            return Err(SendError::TooLarge {
                len: msg.len(),
                max: MAX_MESSAGE,
            });
        }
        let _sending = self.send.lock();
        if !self.here() {
            return Err(SendError::Disconnected);
        }
        // The peer's closed flag is one load; its liveness may cost a `/proc` read, so it is
        // looked at once every 64 sends (and whenever a send has to wait).
        let n = self.sends.load(Ordering::Relaxed).wrapping_add(1);
        self.sends.store(n, Ordering::Relaxed);
        let gone = if n % 64 == 0 {
            self.peer_gone(false)
        } else {
            self.peer_closed()
        };
        if gone {
            return Err(SendError::Disconnected);
        }
        let ring = self.ring(self.side);
        let mut at = 0;
        loop {
            let body = &msg[at..(at + BODY).min(msg.len())];
            let header = if at == 0 {
                FIRST | msg.len() as u64
            } else {
                at as u64
            };
            self.put_chunk(&ring, &header.to_ne_bytes(), body)?;
            at += body.len();
            if at >= msg.len() {
                return Ok(());
            }
        }
    }

    fn put_chunk(&self, ring: &Spsc<'_>, head: &[u8], body: &[u8]) -> Result<(), SendError> {
        if !ring.is_closed() && ring.try_push_parts(head, body, &self.send_cache) {
            return Ok(());
        }
        let spin = self.spin.load(Ordering::Relaxed);
        ring.push_watching(
            head,
            body,
            &self.send_cache,
            None,
            spin,
            &PipePeers { end: self },
        )
        .map_err(|_| SendError::Disconnected)
    }

    /// Takes the next whole message into `out`; waits until `deadline` for its first chunk,
    /// and that long at most for another thread of this process to finish its receive.
    fn recv_into_vec(&self, out: &mut Vec<u8>, deadline: Option<Instant>) -> Result<(), RecvError> {
        let _receiving = self.recv.lock_until(deadline).ok_or(RecvError::Timeout)?;
        self.recv_message(deadline, out).map(|_| ())
    }

    /// Receives the next message chunk by chunk into `sink`, with the receive lock held; waits
    /// until `deadline` for its first chunk, and for the rest as long as the peer is there.
    /// Returns its length.
    fn recv_message(
        &self,
        deadline: Option<Instant>,
        sink: &mut impl Sink,
    ) -> Result<usize, RecvError> {
        if !self.here() {
            return Err(RecvError::Disconnected);
        }
        let ring = self.ring(self.peer());
        // The message being received: its length and the bytes so far.
        let mut got: Option<(usize, usize)> = None;
        loop {
            let started = got.is_some();
            let mut take = |chunk: &[u8]| {
                let Some((header, body)) = parse(chunk) else {
                    return;
                };
                if let Some(len) = first(header, body) {
                    sink.start(len);
                    sink.extend(body);
                    got = Some((len, body.len()));
                } else if let Some((len, n)) = got {
                    // The next piece of this message, or else a stray one: dropped.
                    if header == n as u64 && n + body.len() <= len {
                        sink.extend(body);
                        got = Some((len, n + body.len()));
                    }
                }
            };
            // The fast path: a chunk is there (no clock read, no deadline).
            if ring.try_pop(&mut take, false).is_none() {
                let wait = if started { None } else { deadline };
                let spin = self.spin.load(Ordering::Relaxed);
                match ring.pop_watching(&mut take, wait, spin, &PipePeers { end: self }) {
                    Ok(()) => {}
                    Err(Fail::Timeout) => return Err(RecvError::Timeout),
                    // Closed or gone, and drained (mid-message, the rest of it is lost with
                    // the peer).
                    Err(Fail::Closed | Fail::Disconnected) => {
                        return Err(RecvError::Disconnected);
                    }
                }
            }
            if let Some((len, n)) = got {
                if n == len {
                    return Ok(len);
                }
            }
        }
    }

    /// Waits until the first chunk of a message is there and returns the message's length,
    /// taking nothing; chunks that begin no message are dropped on the way.
    fn next_len(&self, deadline: Option<Instant>) -> Result<usize, RecvError> {
        if !self.here() {
            return Err(RecvError::Disconnected);
        }
        let ring = self.ring(self.peer());
        loop {
            match ring.peek(|chunk| parse(chunk).and_then(|(h, body)| first(h, body))) {
                Some(Some(len)) => return Ok(len),
                // A stray chunk at the head: dropped.
                Some(None) => {
                    ring.try_pop(&mut |_| (), false);
                }
                None => {
                    let spin = self.spin.load(Ordering::Relaxed);
                    match ring.wait_readable(deadline, spin, &PipePeers { end: self }) {
                        // Readable: a chunk, or closed (and then drained, if nothing is there).
                        Ok(()) if ring.is_closed() && ring.peek(|_| ()).is_none() => {
                            return Err(RecvError::Disconnected);
                        }
                        Ok(()) => {}
                        Err(Fail::Timeout) => return Err(RecvError::Timeout),
                        Err(Fail::Closed | Fail::Disconnected) => {
                            return Err(RecvError::Disconnected);
                        }
                    }
                }
            }
        }
    }

    /// Receives the next message into `buf` without an intermediate copy; a message longer
    /// than `buf` stays in the ring and is reported as `BufferTooShort`.
    fn recv_into_slice(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let _receiving = self.recv.lock();
        let needed = self.next_len(None)?;
        if needed > buf.len() {
            return Err(RecvError::BufferTooShort { needed });
        }
        let mut sink = Slice {
            buf,
            len: 0,
            overflow: None,
        };
        let len = self.recv_message(None, &mut sink)?;
        match sink.overflow {
            Some(needed) => Err(RecvError::BufferTooShort { needed }),
            None => Ok(len),
        }
    }

    /// Receives a `T` straight into place; a message of another size is consumed.
    fn recv_pod<T: Pod>(&self, deadline: Option<Instant>) -> Result<T, RecvError> {
        let _receiving = self.recv.lock_until(deadline).ok_or(RecvError::Timeout)?;
        self.recv_pod_held(deadline)
    }

    /// [`recv_pod`](Self::recv_pod) with the receive lock held.
    fn recv_pod_held<T: Pod>(&self, deadline: Option<Instant>) -> Result<T, RecvError> {
        let mut v = T::zeroed();
        let expected = std::mem::size_of::<T>();
        let mut sink = Slice {
            buf: bytemuck::bytes_of_mut(&mut v),
            len: 0,
            overflow: None,
        };
        match self.recv_message(deadline, &mut sink)? {
            found if found != expected => Err(RecvError::WrongSize { expected, found }),
            _ => Ok(v),
        }
    }

    fn try_recv_pod<T: Pod>(&self) -> Result<T, RecvError> {
        if !self.ready() {
            return Err(RecvError::Empty);
        }
        // Another thread of this process is receiving: this one would have to wait.
        let Some(_receiving) = self.recv.lock_within(Patience::None) else {
            return Err(RecvError::Empty);
        };
        // Look again under the lock: that other thread may have taken the message we saw.
        if !self.ready() {
            return Err(RecvError::Empty);
        }
        // Ready: a chunk is published (or the peer is gone), so this does not wait for long.
        self.recv_pod_held(None)
    }

    /// Whether a receive would not block: a message (or its first chunk) is there, or the peer
    /// is gone.
    fn ready(&self) -> bool {
        self.ring(self.peer()).readable() || self.peer_gone(false)
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
            Err(Fail::Timeout)
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

/// The peer, for a blocked call of `end`.
struct PipePeers<'a> {
    end: &'a End,
}

impl Peers for PipePeers<'_> {
    #[cold]
    #[inline(never)]
    fn gone(&self) -> bool {
        self.end.peer_gone(true)
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

/// One end of a [`Pipe`]: send and receive messages (Python's `Connection`).
///
/// ```
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
pub struct Connection {
    end: End,
}

/// The receiving end of a one-way pipe ([`Pipe::create_oneway`]). It has no way to send:
///
/// ```compile_fail
/// # let name = format!("doc-ro-{}", std::process::id());
/// let (reader, _writer) = mpshm::Pipe::create_oneway(&name).expect("create");
/// reader.send_bytes(b"no"); // a reader cannot send
/// ```
pub struct PipeReader {
    end: End,
}

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
pub struct PipeWriter {
    end: End,
}

/// Constructors for pipes. A pipe has two ends, 0 and 1; a process attaches to an end when it
/// creates or opens it, and one end can be held by one process at a time. An end whose process
/// died can be opened again; a closed one cannot.
#[derive(Debug)]
pub struct Pipe;

impl Pipe {
    /// Creates the duplex pipe `name` and returns both ends, attached to this process. To give
    /// one to another process, [`release`](Connection::release) it here and
    /// [`open`](Pipe::open) it there.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`], [`Error::AlreadyExists`], [`Error::NoSpace`], [`Error::Io`].
    pub fn create(name: &str) -> Result<(Connection, Connection), Error> {
        let [a, b] = create_ends(name, false)?;
        Ok((Connection::from(a), Connection::from(b)))
    }

    /// Creates the one-way pipe `name` (Python's `Pipe(duplex=False)`): a reader and a writer.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_oneway(name: &str) -> Result<(PipeReader, PipeWriter), Error> {
        let [r, w] = create_ends(name, true)?;
        Ok((PipeReader { end: r }, PipeWriter { end: w }))
    }

    /// Opens the duplex pipe `name` and attaches to whichever end is free (released, or held
    /// by a process that died).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`]; [`Error::InUse`] when both ends are held (or closed);
    /// [`Error::LayoutMismatch`] for a one-way pipe; [`Error::KindMismatch`]; [`Error::Io`].
    pub fn open(name: &str) -> Result<Connection, Error> {
        let seg = open_seg(name, false)?;
        let end = (0..2)
            .find_map(|s| End::attach(Arc::clone(&seg), s))
            .ok_or_else(|| in_use(name))?;
        Ok(Connection::from(end.taken_over()))
    }

    /// Opens the reading end of the one-way pipe `name`.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_reader(name: &str) -> Result<PipeReader, Error> {
        let end = End::attach(open_seg(name, true)?, 0).ok_or_else(|| in_use(name))?;
        Ok(PipeReader {
            end: end.taken_over(),
        })
    }

    /// Opens the writing end of the one-way pipe `name`.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_writer(name: &str) -> Result<PipeWriter, Error> {
        let end = End::attach(open_seg(name, true)?, 1).ok_or_else(|| in_use(name))?;
        Ok(PipeWriter {
            end: end.taken_over(),
        })
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

fn in_use(name: &str) -> Error {
    Error::InUse {
        name: name.to_owned(),
        reason: "both ends of the pipe are taken or closed",
    }
}

fn create_ends(name: &str, oneway: bool) -> Result<[End; 2], Error> {
    let spec = spec(oneway);
    // A fresh (zeroed) segment is two empty rings (both indices 0) and two free ends.
    let mut made = Ok(());
    let seg = Segment::create(name, &spec, &Options::new(), |seg| made = ends(seg).init())?;
    made?;
    let seg = Arc::new(seg);
    let mut pair = (0..2).map(|side| End::attach(Arc::clone(&seg), side));
    match (pair.next().flatten(), pair.next().flatten()) {
        (Some(a), Some(b)) => Ok([a, b]),
        // Someone scribbled on the records between our create and our claim.
        _ => Err(in_use(name)),
    }
}

fn open_seg(name: &str, oneway: bool) -> Result<Arc<Segment>, Error> {
    let mut want = spec(oneway);
    want.count = None;
    let seg = Segment::open(name, &want, &Options::new())?;
    if !geometry_ok(&seg, oneway) {
        return Err(Error::Corrupt {
            name: seg.name().to_owned(),
            reason: "pipe geometry does not match this build".to_owned(),
        });
    }
    Ok(Arc::new(seg))
}

/// Whether a pipe segment's size and parameters are this build's (for a one-way pipe or not).
fn geometry_ok(seg: &Segment, oneway: bool) -> bool {
    let want = spec(oneway);
    seg.count() == want.count.unwrap_or(0) && seg.params() == want.params
}

/// What [`inspect`](crate::inspect) shows of a pipe, read without changing anything; an error
/// for a geometry other than this build's (checked as `open_seg` does).
pub(crate) fn inspect(seg: &Segment) -> Result<crate::inspect::Found, String> {
    use crate::inspect::{Found, Role, State, records};
    let one_way = seg.params()[2] == 1;
    if !geometry_ok(seg, one_way) {
        return Err("pipe geometry does not match this build".to_owned());
    }
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

impl From<End> for Connection {
    fn from(end: End) -> Connection {
        Connection { end }
    }
}

/// Receiving, shared by `Connection` and `PipeReader`.
macro_rules! receiving {
    ($ty:ident) => {
        impl $ty {
            /// Receives the next message as bytes, waiting for it.
            ///
            /// # Errors
            ///
            /// [`RecvError::Disconnected`] once the peer closed (or died) and everything it sent
            /// has been read.
            pub fn recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
                let mut v = Vec::new();
                self.end.recv_into_vec(&mut v, None)?;
                Ok(v)
            }

            /// Receives the next message into `buf`, returning its length. When `buf` is too
            /// short, fails with [`RecvError::BufferTooShort`] and keeps the message for the
            /// next receive.
            ///
            /// # Errors
            ///
            /// [`RecvError::BufferTooShort`], or as [`recv_bytes`](Self::recv_bytes).
            pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
                self.end.recv_into_slice(buf)
            }

            /// Receives the next message as a `T` sent with `send`.
            ///
            /// # Errors
            ///
            /// [`RecvError::WrongSize`] when the message is not `size_of::<T>()` bytes (it is
            /// consumed), or as [`recv_bytes`](Self::recv_bytes).
            pub fn recv<T: Pod>(&self) -> Result<T, RecvError> {
                self.end.recv_pod(None)
            }

            /// Receives a `T` if a message is ready; never waits for one.
            ///
            /// # Errors
            ///
            /// [`RecvError::Empty`], or as [`recv`](Self::recv).
            pub fn try_recv<T: Pod>(&self) -> Result<T, RecvError> {
                self.end.try_recv_pod()
            }

            /// Receives a `T`, waiting at most `timeout` for it to start arriving.
            ///
            /// # Errors
            ///
            /// [`RecvError::Timeout`], or as [`recv`](Self::recv).
            pub fn recv_timeout<T: Pod>(&self, timeout: Duration) -> Result<T, RecvError> {
                self.end.recv_pod(deadline(timeout))
            }

            /// Receives a message sent with `send_serde` as a `T` (feature `serde`, postcard).
            ///
            /// # Errors
            ///
            /// [`RecvError::Decode`] when it is not a valid `T` (it is consumed), or as
            /// [`recv_bytes`](Self::recv_bytes).
            #[cfg(feature = "serde")]
            pub fn recv_serde<T: serde::de::DeserializeOwned>(&self) -> Result<T, RecvError> {
                postcard::from_bytes(&self.recv_bytes()?).map_err(|_| RecvError::Decode)
            }

            /// Whether a message (or the end of the stream: the peer closed or died) is ready,
            /// waiting at most `timeout`. It takes nothing: the message stays for the next
            /// receive, by this handle or, after [`release`](Self::release), by the next
            /// process to open this end.
            pub fn poll(&self, timeout: Duration) -> bool {
                self.end.poll(timeout)
            }

            /// How many rounds a blocked receive (or send) spins before it sleeps: `0` sleeps at
            /// once, `u32::MAX` busy-polls (and still keeps a timed call's deadline). While it
            /// spins, a send into a full pipe waits for the receiver to take half of it, as long
            /// as it keeps taking (the crate's README says why).
            pub fn set_spin(&self, rounds: u32) {
                self.end.spin.store(rounds, Ordering::Relaxed);
            }
        }

        impl crate::wait::sealed::WaitOn for $ty {
            fn wait_on<'a>(&'a self, set: &mut WaitSet<'a>) -> bool {
                let (epoch, waiters) = self.end.ring(self.end.peer()).get_wait();
                set.count(epoch, waiters);
                self.end.watch_peer(set)
            }
        }

        impl crate::Waitable for $ty {
            fn is_ready(&self) -> bool {
                self.end.ready()
            }
        }
    };
}

/// Sending, shared by `Connection` and `PipeWriter`.
macro_rules! sending {
    ($ty:ident) => {
        impl $ty {
            /// Sends `msg` as one message (of any length up to [`MAX_MESSAGE`]), waiting while
            /// the ring is full.
            ///
            /// # Errors
            ///
            /// [`SendError::Disconnected`] when the peer closed or died;
            /// [`SendError::TooLarge`].
            pub fn send_bytes(&self, msg: &[u8]) -> Result<(), SendError> {
                self.end.send_bytes(msg)
            }

            /// Sends `msg[offset..offset + size]` as one message (Python's
            /// `send_bytes(buf, offset, size)`).
            ///
            /// # Errors
            ///
            /// [`SendError::OutOfRange`] when the range is not inside `msg`, or as
            /// [`send_bytes`](Self::send_bytes).
            pub fn send_bytes_range(
                &self,
                msg: &[u8],
                offset: usize,
                size: usize,
            ) -> Result<(), SendError> {
                let end = offset.checked_add(size).filter(|&e| e <= msg.len());
                match end {
                    Some(end) => self.end.send_bytes(&msg[offset..end]),
                    None => Err(SendError::OutOfRange {
                        offset,
                        size,
                        len: msg.len(),
                    }),
                }
            }

            /// Sends any serde value, encoded with postcard (feature `serde`).
            ///
            /// # Errors
            ///
            /// [`SendError::Encode`] when it cannot be serialised, or as
            /// [`send_bytes`](Self::send_bytes).
            #[cfg(feature = "serde")]
            pub fn send_serde<T: serde::Serialize>(&self, v: &T) -> Result<(), SendError> {
                let bytes = postcard::to_allocvec(v).map_err(|_| SendError::Encode)?;
                self.end.send_bytes(&bytes)
            }

            /// Sends `v` by value (its bytes; no serialisation).
            ///
            /// # Errors
            ///
            /// As [`send_bytes`](Self::send_bytes).
            pub fn send<T: Pod>(&self, v: &T) -> Result<(), SendError> {
                self.end.send_bytes(bytemuck::bytes_of(v))
            }
        }
    };
}

receiving!(Connection);
sending!(Connection);
receiving!(PipeReader);
sending!(PipeWriter);

macro_rules! end_common {
    ($ty:ident) => {
        impl $ty {
            /// Leaves this end attached to no process, without closing it, so that another
            /// process can open it by name ([`Pipe::open`]); it gets everything sent to this
            /// end and not yet received. In a process that forked a child which is to use this
            /// end, release it here rather than drop it: a drop closes the end unless the child
            /// has already taken it over.
            pub fn release(self) {
                self.end.release();
            }

            /// Closes this end for good: the peer drains what was sent, then sees
            /// `Disconnected`, and what the peer sent to this end is dropped with it. The same
            /// as dropping it.
            pub fn close(self) {}

            /// Keeps the pipe's name when the creating process has dropped or released both
            /// ends, so that it can hand both to other processes and open one again later;
            /// remove it with [`unlink`](crate::unlink) when done. (Without this, the name
            /// goes when the creator's last end does.)
            ///
            /// ```
            /// let name = format!("doc-persist-{}", std::process::id());
            /// let (a, b) = mpshm::Pipe::create(&name)?;
            /// a.persist();
            /// a.release();
            /// b.release();
            /// let a = mpshm::Pipe::open(&name)?; // e.g. in another process
            /// # drop(a);
            /// mpshm::unlink(&name)?;
            /// # Ok::<(), mpshm::Error>(())
            /// ```
            pub fn persist(&self) {
                self.end.seg.persist();
            }

            /// The pipe's segment name.
            pub fn name(&self) -> &str {
                self.end.seg.name()
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("name", &self.end.seg.name())
                    .field("end", &self.end.side)
                    .finish()
            }
        }
    };
}

end_common!(Connection);
end_common!(PipeReader);
end_common!(PipeWriter);

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
            "chunk header: {HEADER} B, FIRST {FIRST:#x} | length in a message's first, its \
             offset in the others"
        ),
    ]
}
