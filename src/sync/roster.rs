//! The processes attached to one primitive: a bounded table of records in its segment, one per
//! open handle, and a sleep that also ends when one of those processes dies.
//!
//! A record's `owner` word is `pid << 32 | start_time as u32` (the start time tells a process
//! from a later one that reuses its pid), claimed by compare-and-swap from 0 and handed back the
//! same way; `data` is the primitive's own word for that process (the permits it holds, whether
//! it is a barrier's party). A record whose process is gone is *dead*: the primitive returns
//! what its data says (under its state lock, where it has one), then frees the record.
//!
//! **Placeholder.** This module stands in for `crate::attach` (the attachment records being
//! built on the `attach` branch), behind the four operations the primitives use: claim a record,
//! leave it, find the dead ones, and sleep on a word until it changes, a deadline passes, or a
//! recorded process dies. Its death notice is bounded polling: the sleep wakes every
//! [`DEATH_POLL`] to look for dead records (reading `/proc`). `attach` replaces that with a
//! robust mutex per record, held by the attached process, on which the sleeper waits with
//! `futex_waitv`, so that the kernel wakes it when the process dies.

use std::time::{Duration, Instant};

use crate::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use crate::sync::park::futex_wait;

/// One attached process, as stored in the segment.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Record {
    /// `pid << 32 | start time as u32` of the process holding the record; 0 when free.
    pub(crate) owner: AtomicU64,
    /// The primitive's word for that process.
    pub(crate) data: AtomicU64,
}

// SAFETY: `Record` is atomics only: every bit pattern is valid and all mutation is atomic. (Not
// under loom, whose atomics are handles into the model rather than words in memory.)
#[cfg(not(loom))]
unsafe impl crate::segment::Shared for Record {}

/// Bytes of one record.
pub(crate) const RECORD_SIZE: usize = std::mem::size_of::<Record>();

/// Records in a primitive's table: how many handles (across all processes) may have it open at
/// once. Each open handle holds one; `open` fails with `Error::InUse` when none is free.
pub(crate) const RECORDS: usize = 256;

/// How often a sleeper looks for dead records (the placeholder's death notice; see the module
/// docs).
pub(crate) const DEATH_POLL: Duration = Duration::from_millis(1);

/// The pid that the models stage as a dead process: above any pid Linux hands out.
#[cfg(loom)]
pub(crate) const MODEL_DEAD_PID: u32 = 4_000_000;

/// A record held by a handle of this process: where it is and what its owner word says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) index: usize,
    pub(crate) word: u64,
}

impl Member {
    /// The pid in the owner word.
    pub(crate) fn pid(self) -> u32 {
        (self.word >> 32) as u32
    }
}

/// Why [`Roster::sleep`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woke {
    /// The word no longer holds the expected value (or a wake came: the caller re-checks).
    Changed,
    /// The deadline passed.
    TimedOut,
    /// A recorded process is dead: the caller reclaims its record, then re-checks.
    Death,
}

/// The owner word for this process, read again after a `fork`.
#[cfg(not(loom))]
pub(crate) fn identity() -> u64 {
    use std::sync::Mutex;
    static CACHE: Mutex<Option<(u32, u64)>> = Mutex::new(None);
    // `thread_ids` registers the fork counter before `forks` is read.
    let pid = crate::sys::thread_ids().0;
    let forks = crate::sys::forks();
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match *cache {
        Some((f, word)) if f == forks && (word >> 32) as u32 == pid => word,
        _ => {
            let start = crate::sys::process_start_time(pid);
            let word = (u64::from(pid) << 32) | (start & 0xffff_ffff);
            *cache = Some((forks, word));
            word
        }
    }
}

/// Whether the process named by an owner word is still running.
#[cfg(not(loom))]
pub(crate) fn alive(word: u64) -> bool {
    crate::sys::process_alive_low((word >> 32) as u32, word as u32)
}

/// Models have no processes to ask about: every owner is alive but the staged dead pid.
#[cfg(loom)]
pub(crate) fn alive(word: u64) -> bool {
    (word >> 32) as u32 != MODEL_DEAD_PID
}

/// A primitive's table of records.
#[derive(Clone, Copy)]
pub(crate) struct Roster<'a> {
    records: &'a [Record],
}

impl<'a> Roster<'a> {
    pub(crate) fn new(records: &'a [Record]) -> Roster<'a> {
        Roster { records }
    }

    /// Record `index`, if it exists (indices read from shared memory are checked here).
    pub(crate) fn record(self, index: usize) -> Option<&'a Record> {
        self.records.get(index)
    }

    /// Takes a free record for the process `word`; `None` if every record is taken.
    pub(crate) fn claim(self, word: u64) -> Option<Member> {
        self.records.iter().enumerate().find_map(|(index, r)| {
            // Relaxed: the owner word is the whole claim; what the primitive keeps in `data`
            // is written under its own ordering (its state lock).
            r.owner
                .compare_exchange(0, word, Relaxed, Relaxed)
                .is_ok()
                .then_some(Member { index, word })
        })
    }

    /// Hands a record back. Its data must already be empty.
    pub(crate) fn leave(self, m: Member) {
        if let Some(r) = self.record(m.index) {
            let _ = r.owner.compare_exchange(m.word, 0, Relaxed, Relaxed);
        }
    }

    /// Frees the record of a dead process, if it still names it: `false` if someone else did
    /// first. Its data must already have been returned.
    pub(crate) fn free(self, m: Member) -> bool {
        self.record(m.index).is_some_and(|r| {
            r.owner
                .compare_exchange(m.word, 0, Relaxed, Relaxed)
                .is_ok()
        })
    }

    /// The records whose process is gone.
    pub(crate) fn dead(self) -> impl Iterator<Item = Member> + 'a {
        self.records.iter().enumerate().filter_map(|(index, r)| {
            let word = r.owner.load(Relaxed);
            (word != 0 && !alive(word)).then_some(Member { index, word })
        })
    }

    /// Whether any record names a process that is gone.
    pub(crate) fn any_dead(self) -> bool {
        self.dead().next().is_some()
    }

    /// Sleeps while `word` holds `expected`, until `deadline` (forever if `None`), or until a
    /// recorded process is found dead (at once if one already is).
    #[cfg(not(loom))]
    pub(crate) fn sleep(self, word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Woke {
        loop {
            // SeqCst: pairs with the waker's SeqCst change of the word before its wake.
            if word.load(SeqCst) != expected {
                return Woke::Changed;
            }
            if self.any_dead() {
                return Woke::Death;
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return Woke::TimedOut,
                },
                None => DEATH_POLL,
            };
            // PLACEHOLDER (see the module docs): wake every DEATH_POLL to look for the dead.
            futex_wait(word, expected, Some(left.min(DEATH_POLL)));
        }
    }

    /// The model's sleep: a waiter with a deadline may time out at any moment, so it does at
    /// once (which explores the timeout paths); one without sleeps until any wake.
    #[cfg(loom)]
    pub(crate) fn sleep(self, word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Woke {
        if word.load(SeqCst) != expected {
            return Woke::Changed;
        }
        if self.any_dead() {
            return Woke::Death;
        }
        if deadline.is_some() {
            return Woke::TimedOut;
        }
        futex_wait(word, expected, None);
        Woke::Changed
    }
}

/// The record a handle holds, claimed again by a child that inherited the handle through `fork`
/// (the parent's record says the parent, and must stay the parent's).
#[cfg(not(loom))]
#[derive(Debug, Default)]
pub(crate) struct Attachment {
    /// `(sys::forks() when claimed, the record)`.
    held: std::sync::Mutex<Option<(u32, Member)>>,
}

#[cfg(not(loom))]
impl Attachment {
    /// This process's record, claimed with `claim` if this process has none yet.
    pub(crate) fn get(&self, claim: impl FnOnce(u64) -> Option<Member>) -> Option<Member> {
        let word = identity();
        let forks = crate::sys::forks();
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *held {
            Some((f, m)) if f == forks && m.word == word => Some(m),
            _ => {
                let m = claim(word)?;
                *held = Some((forks, m));
                Some(m)
            }
        }
    }

    /// This process's record, if it has claimed one; a parent's record is not the child's.
    pub(crate) fn current(&self) -> Option<Member> {
        let word = identity();
        let forks = crate::sys::forks();
        let held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        held.filter(|&(f, m)| f == forks && m.word == word)
            .map(|(_, m)| m)
    }
}

/// How a constructor gets its segment.
#[cfg(not(loom))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum How {
    /// Create it exclusively.
    Create,
    /// Open an existing one.
    Open,
    /// Open it if it exists, else create it.
    OpenOrCreate,
}

/// The most records (or other table entries) an opener accepts in a header.
#[cfg(not(loom))]
pub(crate) const MAX_ENTRIES: u64 = 1 << 16;

/// Whether `n`, read from a header, is an acceptable number of table entries.
#[cfg(not(loom))]
pub(crate) fn entries_ok(n: u64) -> bool {
    (1..=MAX_ENTRIES).contains(&n)
}

/// Creates or opens (as `how` says) the segment of a primitive of `kind` whose payload is
/// `bytes(params)` bytes (`None`: parameters that make no sense), running `init` on a segment it
/// creates. An opener takes the creator's parameters from the header and checks them with the
/// same `bytes`.
#[cfg(not(loom))]
pub(crate) fn map_segment(
    name: &str,
    how: How,
    kind: crate::segment::Kind,
    params: [u64; 4],
    opts: &crate::segment::Options,
    bytes: impl Fn([u64; 4]) -> Option<usize>,
    init: impl Fn(&crate::segment::Segment),
) -> Result<crate::segment::Segment, crate::error::Error> {
    use crate::error::Error;
    use crate::segment::{Segment, Spec};
    let mut spec = Spec {
        kind,
        elem_size: 1,
        elem_align: 64,
        count: None,
        tag: kind.to_string(),
        params,
    };
    let check = |seg: Segment| {
        if bytes(seg.params()) == Some(seg.count()) {
            Ok(seg)
        } else {
            Err(Error::Corrupt {
                name: seg.name().to_owned(),
                reason: format!(
                    "{kind} parameters {:?} do not match its size {}",
                    seg.params(),
                    seg.count()
                ),
            })
        }
    };
    let open = spec.clone();
    if how != How::Open {
        spec.count = Some(bytes(params).ok_or(Error::InvalidLength {
            len: 0,
            reason: "the parameters make no sense for this kind",
        })?);
    }
    let mut last = None;
    // The name can vanish between a failed create and the open (its creator dropped it): then
    // try again, a bounded number of times.
    for _ in 0..16 {
        if how != How::Open {
            match Segment::create(name, &spec, opts, &init) {
                Err(Error::AlreadyExists { .. }) if how == How::OpenOrCreate => {}
                made => return made.and_then(check),
            }
        }
        match Segment::open(name, &open, opts) {
            Err(e @ Error::NotFound { .. }) if how == How::OpenOrCreate => last = Some(e),
            opened => return opened.and_then(check),
        }
    }
    Err(last.unwrap_or(Error::NotFound {
        name: name.to_owned(),
    }))
}

/// The error for a handle that found no free record in its primitive's table.
#[cfg(not(loom))]
pub(crate) fn table_full(seg: &crate::segment::Segment, records: usize) -> crate::error::Error {
    crate::error::Error::InUse {
        name: seg.name().to_owned(),
        reason: if records == RECORDS {
            "all 256 of its process records are taken (each open handle holds one)"
        } else {
            "all of its process records are taken (each open handle holds one)"
        },
    }
}

/// The shared structures of this module, for the pinned layout (`src/layout.rs`).
#[cfg(all(test, not(loom)))]
pub(crate) fn shared_layout() -> Vec<String> {
    vec![
        crate::layout::pin!(Record { owner, data }),
        format!("constants: {RECORDS} records"),
    ]
}
