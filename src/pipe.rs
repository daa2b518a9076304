//! [`Pipe`]: Python's `multiprocessing.Pipe` — a duplex connection between two processes — as two
//! single-producer, single-consumer rings (`spsc.rs`) in one named segment.
//!
//! Messages keep their boundaries and may be far larger than a ring: a message travels as chunks
//! of the slot size, every chunk but the last exactly full, the last one shorter (possibly empty,
//! which is also how a zero-length message travels). A receiver reassembles them.
//!
//! Each end records the process attached to it. Dropping a [`Connection`] closes both directions
//! for that end, so the peer's `recv` drains what was sent and then reports
//! [`RecvError::Disconnected`], and its `send` fails at once. A peer that died without closing
//! (`SIGKILL`) is noticed the same way: a blocked receiver re-checks its peer every
//! [`PEER_POLL`], and a sender checks it at most that often.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::error::{Error, RecvError, SendError};
use crate::queue::{DEFAULT_SPIN, deadline};
use crate::ring::Fail;
use crate::segment::{Kind, Options, Segment, Shared, Spec};
use crate::spsc::{self, Cache, SPSC_CTL_SIZE, Spsc, SpscCtl};
use crate::sync::fence;
use crate::sync::owner::{OwnerLock, Patience};
use crate::sys;

/// How often a blocked receiver (or a sender) checks that its peer process is still alive.
pub const PEER_POLL: Duration = Duration::from_millis(20);
/// Bytes per chunk: one ring slot is 1 KiB with its header words. Small slots keep many small
/// messages in flight; large messages pay a slot per KiB, a fraction of the copy itself.
const CHUNK: usize = 1024 - 16;
/// Slots per direction (512 KiB of ring each way).
const SLOTS: usize = 512;
/// The largest message `send_bytes` accepts: 1 GiB.
pub const MAX_MESSAGE: usize = 1 << 30;

/// The state of one end, shared: who holds it and whether it was closed.
#[repr(C)]
struct EndState {
    pid: AtomicU32,
    closed: AtomicU32,
    start: AtomicU64,
}

#[repr(C, align(128))]
struct PipeCtl {
    ends: [EndState; 2],
}

// SAFETY: atomics only: every bit pattern is valid and all mutation is atomic.
unsafe impl Shared for PipeCtl {}

fn ring_bytes() -> usize {
    let slots = SLOTS * spsc::slot_words(CHUNK).expect("constant") * 8;
    (SPSC_CTL_SIZE + slots).next_multiple_of(128)
}

fn spec(oneway: bool) -> Spec {
    let bytes = std::mem::size_of::<PipeCtl>() + 2 * ring_bytes();
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

/// One end's view of the segment.
struct End {
    seg: Arc<Segment>,
    side: usize,
    spin: AtomicU32,
    /// When this handle was made, and how long after that the peer was last seen alive.
    born: Instant,
    peer_seen: AtomicU64,
    /// Held while receiving, so two threads cannot interleave a message's chunks (see
    /// `sync::owner` for why not a `Mutex`).
    recv: OwnerLock,
    /// A message already taken off the ring (by `poll`, or by `recv_bytes_into` with a buffer
    /// too short), which the next receive returns; touched with `recv` held.
    pending: Mutex<Option<Vec<u8>>>,
    /// Whether `pending` holds a message, so that receives need not lock it.
    has_pending: AtomicBool,
    /// Held while sending, for the same reason as `recv`.
    send: OwnerLock,
    released: AtomicBool,
    /// Sends so far (under the send lock), to space out the peer's liveness checks.
    sends: AtomicU32,
    /// This end's caches of the other side's ring indices.
    send_cache: Cache,
}

/// Locks in-process state; a panic in another thread leaves nothing half-done there.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl End {
    fn ctl(&self) -> &PipeCtl {
        self.seg.shared(self.seg.payload_offset())
    }

    /// The ring carrying messages from end `from` to the other end.
    fn ring(&self, from: usize) -> Spsc<'_> {
        let off = self.seg.payload_offset() + std::mem::size_of::<PipeCtl>() + from * ring_bytes();
        let words = SLOTS * spsc::slot_words(CHUNK).expect("constant");
        let ctl: &SpscCtl = self.seg.shared(off);
        let slots: &[AtomicU64] = self.seg.shared_slice(off + SPSC_CTL_SIZE, words);
        Spsc::new(ctl, slots, SLOTS, CHUNK)
    }

    fn attach(seg: Arc<Segment>, side: usize) -> End {
        fence::init();
        End {
            seg,
            side,
            spin: AtomicU32::new(DEFAULT_SPIN),
            born: Instant::now(),
            peer_seen: AtomicU64::new(0),
            recv: OwnerLock::default(),
            pending: Mutex::new(None),
            has_pending: AtomicBool::new(false),
            send: OwnerLock::default(),
            released: AtomicBool::new(false),
            sends: AtomicU32::new(0),
            send_cache: Cache::default(),
        }
    }

    /// Claims end `side` of `seg` for this process, if no live process holds it.
    fn claim(seg: &Arc<Segment>, side: usize) -> bool {
        let state = &seg.shared::<PipeCtl>(seg.payload_offset()).ends[side];
        let pid = sys::current_pid();
        // Relaxed: the segment handshake already published the rings; the pid is a claim only.
        if state.closed.load(Ordering::Relaxed) != 0
            || state
                .pid
                .compare_exchange(0, pid, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        state
            .start
            .store(sys::process_start_time(pid), Ordering::Relaxed);
        true
    }

    fn peer(&self) -> &EndState {
        &self.ctl().ends[1 - self.side]
    }

    /// Takes the pending message, if any; `recv` must be held.
    fn take_pending(&self) -> Option<Vec<u8>> {
        if !self.has_pending.load(Ordering::Relaxed) {
            return None;
        }
        self.has_pending.store(false, Ordering::Relaxed);
        lock(&self.pending).take()
    }

    /// Keeps `v` for the next receive; `recv` must be held.
    fn set_pending(&self, v: Vec<u8>) {
        *lock(&self.pending) = Some(v);
        // Release: pairs with the Acquire load in `ready`.
        self.has_pending.store(true, Ordering::Release);
    }

    /// Whether the peer closed its end.
    fn peer_closed(&self) -> bool {
        // Acquire: pairs with the Release store in `close`.
        self.peer().closed.load(Ordering::Acquire) != 0
    }

    /// Whether the peer closed its end, or its process is gone. Checks the process at most
    /// every [`PEER_POLL`] unless `now`.
    fn peer_gone(&self, now: bool) -> bool {
        if self.peer_closed() {
            return true;
        }
        let peer = self.peer();
        let since_born = || self.born.elapsed().as_nanos() as u64;
        if !now
            && since_born() - self.peer_seen.load(Ordering::Relaxed) < PEER_POLL.as_nanos() as u64
        {
            return false;
        }
        let pid = peer.pid.load(Ordering::Relaxed);
        // pid 0: the end is not attached yet (or was handed over); its future holder may still
        // come.
        let alive = pid == 0 || sys::process_alive(pid, peer.start.load(Ordering::Relaxed));
        if alive {
            self.peer_seen.store(since_born(), Ordering::Relaxed);
        }
        !alive
    }

    fn send_bytes(&self, msg: &[u8]) -> Result<(), SendError> {
        if msg.len() > MAX_MESSAGE {
            return Err(SendError::TooLarge {
                len: msg.len(),
                max: MAX_MESSAGE,
            });
        }
        let _sending = self.send.lock();
        // The peer's closed flag is one load; its liveness costs a clock read, so it is looked
        // at once every 64 sends (and whenever a send has to wait).
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
        let mut chunks = msg.chunks(CHUNK);
        // Every chunk but the last is full; a message of whole chunks ends with an empty one.
        let last_full = msg.len() % CHUNK == 0;
        let mut next = chunks.next().unwrap_or(&[]);
        loop {
            self.put_chunk(&ring, next)?;
            match chunks.next() {
                Some(c) => next = c,
                None if last_full && !msg.is_empty() => {
                    self.put_chunk(&ring, &[])?;
                    return Ok(());
                }
                None => return Ok(()),
            }
        }
    }

    fn put_chunk(&self, ring: &Spsc<'_>, chunk: &[u8]) -> Result<(), SendError> {
        if !ring.is_closed() && ring.try_push(chunk, &self.send_cache) {
            return Ok(());
        }
        loop {
            match ring.push(
                chunk,
                &self.send_cache,
                Some(Instant::now() + PEER_POLL),
                self.spin.load(Ordering::Relaxed),
            ) {
                Ok(()) => return Ok(()),
                Err(Fail::Closed) => return Err(SendError::Disconnected),
                Err(Fail::Timeout) if self.peer_gone(true) => return Err(SendError::Disconnected),
                Err(Fail::Timeout) => {}
            }
        }
    }

    /// Takes the next whole message into `out`; waits until `deadline` for its first chunk,
    /// and that long at most for another thread of this process to finish its receive.
    fn recv_into_vec(&self, out: &mut Vec<u8>, deadline: Option<Instant>) -> Result<(), RecvError> {
        let _receiving = self.recv.lock_until(deadline).ok_or(RecvError::Timeout)?;
        self.recv_held(out, deadline)
    }

    /// The pending message, or else the next one off the ring, with `recv` held.
    fn recv_held(&self, out: &mut Vec<u8>, deadline: Option<Instant>) -> Result<(), RecvError> {
        match self.take_pending() {
            Some(p) => {
                *out = p;
                Ok(())
            }
            None => self.recv_locked(out, deadline),
        }
    }

    /// [`recv_into_vec`](Self::recv_into_vec) with the receive lock held and nothing pending.
    fn recv_locked(&self, out: &mut Vec<u8>, deadline: Option<Instant>) -> Result<(), RecvError> {
        out.clear();
        self.recv_chunks(deadline, &mut |bytes| out.extend_from_slice(bytes))
    }

    /// Receives the next message chunk by chunk into `sink`, with the receive lock held and
    /// nothing pending; waits until `deadline` for its first chunk.
    fn recv_chunks(
        &self,
        deadline: Option<Instant>,
        sink: &mut impl FnMut(&[u8]),
    ) -> Result<(), RecvError> {
        let ring = self.ring(1 - self.side);
        let mut first = true;
        loop {
            let mut read = |bytes: &[u8]| {
                sink(bytes);
                bytes.len()
            };
            // The fast path: a chunk is there (no clock read, no deadline).
            if let Some(len) = ring.try_pop(&mut read, false) {
                if len < CHUNK {
                    return Ok(());
                }
                first = false;
                continue;
            }
            let poll = Instant::now() + PEER_POLL;
            let wait = match deadline {
                Some(d) if first => d.min(poll),
                _ => poll,
            };
            match ring.pop(&mut read, Some(wait), self.spin.load(Ordering::Relaxed)) {
                Ok(len) if len < CHUNK => return Ok(()),
                Ok(_) => first = false,
                // Closed and drained (mid-message, the rest of it is lost with the peer).
                Err(Fail::Closed) => return Err(RecvError::Disconnected),
                Err(Fail::Timeout) => {
                    if self.peer_gone(true) && !ring.readable() {
                        return Err(RecvError::Disconnected);
                    }
                    if first && deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(RecvError::Timeout);
                    }
                }
            }
        }
    }

    /// Receives the next message into `buf` without an intermediate copy; a message longer
    /// than `buf` is kept whole for the next receive and reported as `BufferTooShort`.
    fn recv_into_slice(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let _receiving = self.recv.lock();
        if let Some(v) = self.take_pending() {
            if v.len() > buf.len() {
                let needed = v.len();
                self.set_pending(v);
                return Err(RecvError::BufferTooShort { needed });
            }
            buf[..v.len()].copy_from_slice(&v);
            return Ok(v.len());
        }
        let (mut n, mut spill) = (0, None::<Vec<u8>>);
        self.recv_chunks(None, &mut |bytes| match &mut spill {
            Some(v) => v.extend_from_slice(bytes),
            None if n + bytes.len() <= buf.len() => {
                buf[n..n + bytes.len()].copy_from_slice(bytes);
                n += bytes.len();
            }
            None => {
                let mut v = Vec::with_capacity(n + bytes.len());
                v.extend_from_slice(&buf[..n]);
                v.extend_from_slice(bytes);
                spill = Some(v);
            }
        })?;
        match spill {
            Some(v) => {
                let needed = v.len();
                self.set_pending(v);
                Err(RecvError::BufferTooShort { needed })
            }
            None => Ok(n),
        }
    }

    /// Receives a `T` straight into place.
    fn recv_pod<T: Pod>(&self) -> Result<T, RecvError> {
        let mut v = T::zeroed();
        let expected = std::mem::size_of::<T>();
        match self.recv_into_slice(bytemuck::bytes_of_mut(&mut v)) {
            Ok(n) if n == expected => Ok(v),
            Ok(found) => Err(RecvError::WrongSize { expected, found }),
            Err(RecvError::BufferTooShort { needed }) => {
                // Too long for a `T`: consume it, as a wrong size always is.
                let _receiving = self.recv.lock();
                self.take_pending();
                Err(RecvError::WrongSize {
                    expected,
                    found: needed,
                })
            }
            Err(e) => Err(e),
        }
    }

    fn try_recv_vec(&self) -> Result<Vec<u8>, RecvError> {
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
        let mut v = Vec::new();
        // Ready: a chunk is published (or the peer is gone), so this does not wait for long.
        self.recv_held(&mut v, None)?;
        Ok(v)
    }

    /// Whether a receive would not block: a message (or its first chunk) is there, or the peer
    /// is gone.
    fn ready(&self) -> bool {
        // Acquire: pairs with the Release store in `set_pending`.
        if self.has_pending.load(Ordering::Acquire) {
            return true;
        }
        let ring = self.ring(1 - self.side);
        ring.readable() || self.peer_gone(false)
    }

    fn poll(&self, timeout: Duration) -> bool {
        if self.ready() {
            return true;
        }
        let deadline = deadline(timeout);
        // Another thread receiving longer than `timeout`: nothing for this one.
        let Some(_receiving) = self.recv.lock_until(deadline) else {
            return false;
        };
        if self.has_pending.load(Ordering::Relaxed) {
            return true;
        }
        let mut v = Vec::new();
        match self.recv_locked(&mut v, deadline) {
            Ok(()) => {
                self.set_pending(v);
                true
            }
            Err(RecvError::Timeout) => false,
            Err(_) => true,
        }
    }

    fn close(&self) {
        let me = &self.ctl().ends[self.side];
        // Release: pairs with the Acquire load in `peer_gone`.
        me.closed.store(1, Ordering::Release);
        self.ring(0).close();
        self.ring(1).close();
    }
}

impl Drop for End {
    fn drop(&mut self) {
        if !self.released.load(Ordering::Relaxed) {
            self.close();
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
/// creates or opens it, and one end can be held by one process at a time.
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

    /// Opens the duplex pipe `name` and attaches to whichever end is free.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`]; [`Error::InUse`] when both ends are held (or closed);
    /// [`Error::LayoutMismatch`] for a one-way pipe; [`Error::KindMismatch`]; [`Error::Io`].
    pub fn open(name: &str) -> Result<Connection, Error> {
        let seg = open_seg(name, false)?;
        let side = (0..2)
            .find(|&s| End::claim(&seg, s))
            .ok_or_else(|| in_use(name))?;
        Ok(Connection::from(End::attach(seg, side)))
    }

    /// Opens the reading end of the one-way pipe `name`.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_reader(name: &str) -> Result<PipeReader, Error> {
        let seg = open_seg(name, true)?;
        if !End::claim(&seg, 0) {
            return Err(in_use(name));
        }
        Ok(PipeReader {
            end: End::attach(seg, 0),
        })
    }

    /// Opens the writing end of the one-way pipe `name`.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_writer(name: &str) -> Result<PipeWriter, Error> {
        let seg = open_seg(name, true)?;
        if !End::claim(&seg, 1) {
            return Err(in_use(name));
        }
        Ok(PipeWriter {
            end: End::attach(seg, 1),
        })
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
    // A fresh (zeroed) segment is two empty rings: both indices 0.
    let seg = Segment::create(name, &spec, &Options::new(), |_| {})?;
    let seg = Arc::new(seg);
    for side in 0..2 {
        End::claim(&seg, side);
    }
    Ok([End::attach(Arc::clone(&seg), 0), End::attach(seg, 1)])
}

fn open_seg(name: &str, oneway: bool) -> Result<Arc<Segment>, Error> {
    let mut want = spec(oneway);
    want.count = None;
    let seg = Segment::open(name, &want, &Options::new())?;
    if seg.count() != spec(oneway).count.unwrap_or(0) || seg.params() != spec(oneway).params {
        return Err(Error::Corrupt {
            name: seg.name().to_owned(),
            reason: "pipe geometry does not match this build".to_owned(),
        });
    }
    Ok(Arc::new(seg))
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
                self.end.recv_pod()
            }

            /// Receives a `T` if a message is ready; never waits for one.
            ///
            /// # Errors
            ///
            /// [`RecvError::Empty`], or as [`recv`](Self::recv).
            pub fn try_recv<T: Pod>(&self) -> Result<T, RecvError> {
                decode(self.end.try_recv_vec()?)
            }

            /// Receives a `T`, waiting at most `timeout` for it to start arriving.
            ///
            /// # Errors
            ///
            /// [`RecvError::Timeout`], or as [`recv`](Self::recv).
            pub fn recv_timeout<T: Pod>(&self, timeout: Duration) -> Result<T, RecvError> {
                let mut v = Vec::new();
                self.end.recv_into_vec(&mut v, deadline(timeout))?;
                decode(v)
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

            /// Whether a message (or the end of the stream) is ready, waiting at most `timeout`.
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

        impl Waitable for $ty {
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

fn decode<T: Pod>(v: Vec<u8>) -> Result<T, RecvError> {
    if v.len() != std::mem::size_of::<T>() {
        return Err(RecvError::WrongSize {
            expected: std::mem::size_of::<T>(),
            found: v.len(),
        });
    }
    Ok(bytemuck::pod_read_unaligned(&v))
}

receiving!(Connection);
sending!(Connection);
receiving!(PipeReader);
sending!(PipeWriter);

macro_rules! end_common {
    ($ty:ident) => {
        impl $ty {
            /// Leaves this end attached to no process, without closing it, so that another
            /// process can open it by name ([`Pipe::open`]).
            pub fn release(self) {
                let state = &self.end.ctl().ends[self.end.side];
                state.pid.store(0, Ordering::Relaxed);
                self.end.released.store(true, Ordering::Relaxed);
            }

            /// Closes this end: the peer drains what was sent, then sees `Disconnected`. The
            /// same as dropping it.
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

/// Something [`wait`] can wait on: a connection, a pipe reader or a queue.
pub trait Waitable {
    /// Whether a receive would not block now.
    fn is_ready(&self) -> bool;
}

impl<T: Pod> Waitable for crate::Queue<T> {
    fn is_ready(&self) -> bool {
        !self.is_empty() || self.is_closed()
    }
}

/// Waits until at least one of `objects` is ready to receive from, or `timeout` passes (forever
/// if `None`); returns the indices of the ready ones, like `multiprocessing.connection.wait`.
/// It polls with growing pauses (spinning, then up to 1 ms), not a single kernel wait.
///
/// ```
/// let name = format!("doc-wait-{}", std::process::id());
/// let (a, b) = mpshm::Pipe::create(&name)?;
/// let q = mpshm::Queue::<u8>::create(&format!("{name}q"), 1)?;
/// b.send(&1u8).expect("open");
/// let ready = mpshm::wait(&[&a, &q], Some(std::time::Duration::from_secs(1)));
/// assert_eq!(ready, [0]);
/// # Ok::<(), mpshm::Error>(())
/// ```
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Vec<usize> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut pause = Duration::from_micros(1);
    loop {
        let ready: Vec<usize> = (0..objects.len())
            .filter(|&i| objects[i].is_ready())
            .collect();
        if !ready.is_empty() || deadline.is_some_and(|d| Instant::now() >= d) {
            return ready;
        }
        if pause < Duration::from_micros(20) {
            std::hint::spin_loop();
        } else {
            std::thread::sleep(pause);
        }
        pause = (pause * 2).min(Duration::from_millis(1));
    }
}

/// The shared structures of this module, for the pinned layout (`src/layout.rs`).
#[cfg(test)]
pub(crate) fn shared_layout() -> Vec<String> {
    vec![
        crate::layout::pin!(PipeCtl { ends }),
        crate::layout::pin!(EndState { pid, closed, start }),
        format!("constants: {SLOTS} slots of {CHUNK} B per direction"),
    ]
}
