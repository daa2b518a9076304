//! Every use the process module makes of the crate's queues, in one place: a [`Channel`] is a
//! [`ByteQueue`] of encoded messages. Processes and pools name their segments here, with this
//! process's pid in the name so that a stale one can be traced to its creator.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::error::{Error, GetTimeoutError, TryGetError, TryPutError};
use crate::queue::ByteQueue;
use crate::shm::Shm;

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

    /// The longest message a slot holds.
    pub(crate) fn max_message(&self) -> usize {
        self.queue.max_message()
    }

    /// Keeps the name when this creating handle is dropped.
    pub(crate) fn persist(&self) {
        self.queue.persist();
    }
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

    /// A name that another process of this pid left behind is passed over.
    #[test]
    fn a_fresh_channel_passes_over_a_stale_name() {
        let taken = fresh_name();
        let (base, n) = taken.rsplit_once('-').expect("mpx<pid>-<n>");
        let next = format!("{base}-{}", n.parse::<u32>().expect("a number") + 1);
        let stale = Channel::create(&next, 1, 8).expect("the stale one");
        let (chan, name) = Channel::create_fresh(1, 8).expect("passes over it");
        assert_ne!(name, next);
        drop((chan, stale));
    }
}
