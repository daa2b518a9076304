//! Every use the process module makes of the crate's segments, in one place: a [`Channel`] is a
//! [`ByteQueue`] of encoded messages, for a pool's stream of tasks and results; a [`Mailbox`]
//! holds one message at a time, for a process's argument and then its result. Processes and
//! pools name their segments here, with this process's pid in the name so that a stale one can
//! be traced to its creator.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::error::{Error, GetTimeoutError, TryGetError, TryPutError};
use crate::queue::ByteQueue;
use crate::segment::{Identity, Kind, Options, Segment, Spec};
use crate::shm::{self, How, Shm};

/// The prefix of every segment the process module creates: `mpx<pid>-`.
pub(crate) fn prefix() -> String {
    format!("mpx{}-", std::process::id())
}

/// A segment name unused in this process: `mpx<pid>-<n>` (at most 21 characters, so a suffix
/// fits the 30-character limit).
fn fresh_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{}{}", prefix(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A non-blocking put did not go in (no room, closed, or longer than a slot); the message is
/// handed back.
#[derive(Debug)]
pub(crate) struct PutFail(pub(crate) Vec<u8>);

/// Why a get gave nothing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum GetFail {
    /// Nothing yet (or not within the timeout).
    Empty,
    /// Closed and drained.
    Closed,
}

/// A bounded queue of byte messages in a named segment.
#[derive(Debug)]
pub(crate) struct Channel {
    queue: ByteQueue,
}

impl Channel {
    /// Creates a channel under a fresh name ([`fresh_name`]) for `capacity` messages of up to
    /// `max_message` bytes, and returns it with its name. A name another process of this pid
    /// left behind (a parent killed by `SIGKILL` leaves its pools' result channels) is passed
    /// over.
    pub(crate) fn create_fresh(
        capacity: usize,
        max_message: usize,
    ) -> Result<(Self, String), Error> {
        let mut last = None;
        for _ in 0..64 {
            let name = fresh_name();
            match Self::create(&name, capacity, max_message) {
                Ok(chan) => return Ok((chan, name)),
                Err(e @ Error::AlreadyExists { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("64 tries"))
    }

    /// Creates `name` for `capacity` messages of up to `max_message` bytes; the handle unlinks
    /// it on drop unless [`persist`](Self::persist) is called.
    pub(crate) fn create(name: &str, capacity: usize, max_message: usize) -> Result<Self, Error> {
        let queue = ByteQueue::create(name, (capacity, max_message.max(1)))?;
        // Each role of a channel changes hands by design (the pool's caller and its manager
        // thread both hand out tasks and take outcomes; workers take turns putting outcomes),
        // and the ring's bias would charge a `membarrier` at every change: run the shared
        // protocol throughout.
        queue.forbid_bias();
        Ok(Channel { queue })
    }

    /// Opens the existing channel `name`.
    pub(crate) fn open(name: &str) -> Result<Self, Error> {
        Ok(Channel {
            queue: ByteQueue::open(name)?,
        })
    }

    /// Puts `msg` if there is room.
    pub(crate) fn try_put(&self, msg: Vec<u8>) -> Result<(), PutFail> {
        self.queue.try_put(msg).map_err(|e| {
            PutFail(match e {
                TryPutError::Full(m)
                | TryPutError::Closed(m)
                | TryPutError::Disconnected(m)
                | TryPutError::Encode(m, _) => m,
            })
        })
    }

    /// Puts `msg`, waiting for room; `false` if the channel is closed or the message too long.
    /// (It waits even when no process is attached to take messages: one may come later.)
    pub(crate) fn put(&self, msg: Vec<u8>) -> bool {
        self.queue.put_until_closed(msg).is_ok()
    }

    /// Takes a message, waiting while there is none; `None` once closed and drained. (It waits
    /// even when no process is attached to put messages: one may come later.)
    pub(crate) fn get(&self) -> Option<Vec<u8>> {
        self.queue.get_until_closed(None).ok()
    }

    /// Takes a message, waiting at most `timeout`.
    pub(crate) fn get_timeout(&self, timeout: Duration) -> Result<Vec<u8>, GetFail> {
        match self.queue.get_until_closed(Some(timeout)) {
            Ok(m) => Ok(m),
            Err(GetTimeoutError::Closed) => Err(GetFail::Closed),
            Err(_) => Err(GetFail::Empty),
        }
    }

    /// Takes a message if one is ready.
    pub(crate) fn try_get(&self) -> Result<Vec<u8>, GetFail> {
        match self.queue.try_get() {
            Ok(m) => Ok(m),
            Err(TryGetError::Closed) => Err(GetFail::Closed),
            Err(_) => Err(GetFail::Empty),
        }
    }

    /// How many messages wait.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Closes the channel for every process: puts fail, gets drain what is left.
    pub(crate) fn close(&self) {
        self.queue.close();
    }

    /// Keeps the name when this creating handle is dropped.
    pub(crate) fn persist(&self) {
        self.queue.persist();
    }
}

/// The type tag of a mailbox's segment: to a listing, a `RawArray` of bytes with this tag.
const MAILBOX_TAG: &str = "mpshm::process::Mailbox";
/// Where a mailbox's words sit in its payload: the state (`u32`), the message's length (`u64`),
/// then the message.
const STATE_AT: usize = 0;
const LEN_AT: usize = 8;
const BODY_AT: usize = 16;
/// The state word of an empty mailbox, and of one holding a message.
const EMPTY: u32 = 0;
const FULL: u32 = 0x4D41_494C;

/// One message at a time in a segment of its own: a process's argument, then its result.
///
/// A process's two sides never use it at once: the parent puts the argument before the child
/// starts, the child takes it and puts the outcome, and the parent takes that after the child
/// has exited. So it needs no ring, no attachment records and no wake-ups, only a state word
/// that says whether a message is there (written last, with a Release store, when one is put).
/// Its bytes are still untrusted: a length past the end is refused, never followed.
#[derive(Debug)]
pub(crate) struct Mailbox {
    seg: Segment,
}

impl Mailbox {
    /// What a mailbox for messages of up to `max_message` bytes asks of its segment (an
    /// opener: `None`, any size).
    fn spec(max_message: Option<usize>) -> Spec {
        Spec::elements(
            Kind::RawArray,
            Identity::named(MAILBOX_TAG, 1, 1, 0, ""),
            max_message.map_or(0, |m| BODY_AT + m.max(1)),
        )
    }

    /// Creates a mailbox under a fresh name ([`fresh_name`]) for a message of up to
    /// `max_message` bytes, and returns it with its name; a stale name is passed over, as
    /// [`Channel::create_fresh`] does.
    pub(crate) fn create_fresh(max_message: usize) -> Result<(Self, String), Error> {
        let mut last = None;
        for _ in 0..64 {
            let name = fresh_name();
            match Self::create(&name, max_message) {
                Ok(mailbox) => return Ok((mailbox, name)),
                Err(e @ Error::AlreadyExists { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("64 tries"))
    }

    /// Creates the empty mailbox `name` for a message of up to `max_message` bytes; the handle
    /// unlinks it on drop unless [`persist`](Self::persist) is called.
    pub(crate) fn create(name: &str, max_message: usize) -> Result<Self, Error> {
        let spec = Self::spec(Some(max_message));
        // A fresh segment is zero-filled: the state word reads `EMPTY`.
        shm::make(
            name,
            How::Create,
            &spec,
            &Options::new(),
            |_| Ok(()),
            |seg, _| Ok(Mailbox { seg }),
        )
    }

    /// Opens the existing mailbox `name`.
    pub(crate) fn open(name: &str) -> Result<Self, Error> {
        let spec = Self::spec(None);
        shm::make(
            name,
            How::Open,
            &spec,
            &Options::new(),
            |_| Ok(()),
            |seg, _| {
                if seg.count() <= BODY_AT {
                    return Err(Error::Corrupt {
                        name: seg.name().to_owned(),
                        reason: "a mailbox too small for its own words".to_owned(),
                    });
                }
                Ok(Mailbox { seg })
            },
        )
    }

    /// The longest message it holds.
    fn max_message(&self) -> usize {
        self.seg.count() - BODY_AT
    }

    fn state(&self) -> &AtomicU32 {
        self.seg.shared(self.seg.payload_offset() + STATE_AT)
    }

    /// Puts `msg` if the mailbox is empty and `msg` fits; whether it did.
    pub(crate) fn put(&self, msg: &[u8]) -> bool {
        if msg.len() > self.max_message() || self.state().load(Ordering::Relaxed) != EMPTY {
            return false;
        }
        let base = self.seg.payload_offset();
        self.seg
            .copy_in(base + LEN_AT, &(msg.len() as u64).to_ne_bytes());
        self.seg.copy_in(base + BODY_AT, msg);
        // Release: pairs with the Acquire load in `take`; the length and the bytes written
        // above are there for whoever sees `FULL`.
        self.state().store(FULL, Ordering::Release);
        true
    }

    /// Takes the message out, if there is one (and its length is one a mailbox can hold).
    pub(crate) fn take(&self) -> Option<Vec<u8>> {
        // Acquire: pairs with the Release store in `put`.
        if self.state().load(Ordering::Acquire) != FULL {
            return None;
        }
        let base = self.seg.payload_offset();
        let mut len = [0u8; 8];
        self.seg.copy_out(base + LEN_AT, &mut len);
        let len = usize::try_from(u64::from_ne_bytes(len))
            .ok()
            .filter(|&n| n <= self.max_message())?;
        let mut msg = vec![0; len];
        self.seg.copy_out(base + BODY_AT, &mut msg);
        // Relaxed: the other side looks again only after an event that orders it after this
        // (the child's exit before the parent's reaping), and puts only into an empty box.
        self.state().store(EMPTY, Ordering::Relaxed);
        Some(msg)
    }

    /// Keeps the name when this creating handle is dropped.
    pub(crate) fn persist(&self) {
        self.seg.persist();
    }
}

/// The mailbox's words and constants, for the pinned layout (`src/layout.rs`).
#[cfg(all(test, not(loom)))]
pub(crate) fn shared_layout() -> Vec<String> {
    vec![format!(
        "mailbox: RawArray of bytes tagged {MAILBOX_TAG}; state u32 at {STATE_AT} (EMPTY \
         {EMPTY:#x}, FULL {FULL:#x}), length u64 at {LEN_AT}, message at {BODY_AT}"
    )]
}

/// Removes the segment `name`, if it is there.
pub(crate) fn remove(name: &str) {
    let _ = crate::segment::unlink(name);
}

/// A message too long for a channel's slots, in a segment of its own: `<prefix><n>`, created
/// by the side that has it and removed by the side that takes it (or by its creator's handle,
/// dropped unread).
#[derive(Debug)]
pub struct Blob {
    pub(crate) name: String,
    /// The creating handle, which removes the name when dropped (a taker removes it first).
    _chan: Channel,
}

impl Blob {
    /// Puts `bytes` into the new segment `name`.
    pub(crate) fn create(name: String, bytes: Vec<u8>) -> Result<Blob, Error> {
        let chan = Channel::create(&name, 1, bytes.len())?;
        if chan.try_put(bytes).is_err() {
            return Err(Error::Io(std::io::Error::other(
                "cannot put a message into its own new segment",
            )));
        }
        Ok(Blob { name, _chan: chan })
    }

    /// Leaves the segment for the taker when this handle is dropped; its name.
    pub(crate) fn hand_over(self) -> String {
        self._chan.persist();
        self.name
    }
}

/// Takes the message out of the blob segment `name` and removes the segment, if `name` is
/// `prefix` followed by digits (so that damaged bytes naming another segment touch nothing).
pub(crate) fn take_blob(name: &str, prefix: &str) -> Option<Vec<u8>> {
    let n = name.strip_prefix(prefix)?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bytes = Channel::open(name).ok().and_then(|c| c.try_get().ok());
    remove(name);
    bytes
}

/// Removes every segment whose name starts with `prefix` (blobs nobody took).
pub(crate) fn remove_all(prefix: &str) {
    for name in crate::sys::shm_names().unwrap_or_default() {
        if name.starts_with(prefix) {
            remove(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Held by every test here that draws fresh names: they share one counter, and the test of
    /// a stale name needs to know the next name drawn (the lib's tests run in parallel threads).
    static FRESH: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn fresh_names() -> std::sync::MutexGuard<'static, ()> {
        FRESH
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A name that another process of this pid left behind is passed over.
    #[test]
    fn a_fresh_channel_passes_over_a_stale_name() {
        let _fresh = fresh_names();
        let taken = fresh_name();
        let (base, n) = taken.rsplit_once('-').expect("mpx<pid>-<n>");
        let next = format!("{base}-{}", n.parse::<u32>().expect("a number") + 1);
        let stale = Channel::create(&next, 1, 8).expect("the stale one");
        let (chan, name) = Channel::create_fresh(1, 8).expect("passes over it");
        assert_ne!(name, next);
        drop((chan, stale));
    }

    /// One message at a time, none longer than the mailbox holds, each taken once; another
    /// handle on the same name sees what one put.
    #[test]
    fn a_mailbox_holds_one_message() {
        let _fresh = fresh_names();
        let (mailbox, name) = Mailbox::create_fresh(8).expect("created");
        assert_eq!(mailbox.take(), None);
        assert!(!mailbox.put(&[0; 9]), "longer than it holds");
        assert!(mailbox.put(b"abc"));
        assert!(!mailbox.put(b"d"), "full");
        let other = Mailbox::open(&name).expect("opened");
        assert_eq!(other.take().as_deref(), Some(&b"abc"[..]));
        assert_eq!(mailbox.take(), None, "taken once");
        assert!(other.put(&[7; 8]));
        assert_eq!(mailbox.take(), Some(vec![7; 8]));
    }

    /// A length word past the end (another process scribbled on it) is refused, not followed.
    #[test]
    fn a_mailbox_refuses_a_length_past_its_end() {
        let _fresh = fresh_names();
        let (mailbox, _name) = Mailbox::create_fresh(8).expect("created");
        assert!(mailbox.put(b"abc"));
        let base = mailbox.seg.payload_offset();
        for bad in [9, 4096, u64::MAX] {
            mailbox.seg.copy_in(base + LEN_AT, &bad.to_ne_bytes());
            assert_eq!(mailbox.take(), None, "length {bad}");
        }
        mailbox.seg.copy_in(base + LEN_AT, &3u64.to_ne_bytes());
        assert_eq!(mailbox.take().as_deref(), Some(&b"abc"[..]));
    }

    /// A segment of the right kind and tag but too small for a mailbox's words is refused.
    #[test]
    fn a_mailbox_too_small_is_refused() {
        let _fresh = fresh_names();
        let name = fresh_name();
        let spec = Spec::elements(
            Kind::RawArray,
            Identity::named(MAILBOX_TAG, 1, 1, 0, ""),
            BODY_AT,
        );
        let _seg = shm::make(
            &name,
            How::Create,
            &spec,
            &Options::new(),
            |_| Ok(()),
            |seg, _| Ok(seg),
        )
        .expect("created");
        assert!(matches!(Mailbox::open(&name), Err(Error::Corrupt { .. })));
    }
}
