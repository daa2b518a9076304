//! The processes attached to a primitive of the synchronisation family, and the one sleep of the
//! family: a sleep on a futex word that also ends when one of those processes dies.
//!
//! Every open handle holds an attachment record (`attach`) in its primitive's table, claimed at
//! `open` (and again by a child that inherited the handle through `fork`, on first use) and
//! released on drop. A semaphore and a barrier keep a *data* word per record beside the table
//! (the permits a process holds and its sleeping threads; whether it is a barrier's party): their
//! table keeps a dead holder's word (`reap = false`) until the primitive, holding its state
//! lock, has returned what the data word says and freed the record (`free_dead`). An event and a
//! condition keep nothing per process, and their table frees dead records as it finds them.
//!
//! **The sleep** ([`Records::sleep`]) waits with `futex_waitv` on the primitive's futex word,
//! on the primitive's `deaths` eventcount, and on the liveness mutex of every other attached
//! process (`Table::watch_all`), so that the kernel wakes it when one of them dies (see
//! `attach`). The kernel wakes one sleeper per death; that one bumps `deaths`, which wakes all
//! the others. `deaths` is also bumped when a process attaches, so that every sleeper watches
//! it too from then on. The sleeper then says why it woke ([`Woke`]): its word changed, its
//! deadline passed, or a recorded process may have died, which the caller reclaims.
//!
//! Under `--cfg loom` the records are a heap model behind the same interface: their owners are
//! given, and `MODEL_DEAD_PID` stands for a dead process.

#[cfg(not(loom))]
pub(crate) use real::{Claim, RecordData, Records, bytes, table};

#[cfg(loom)]
pub(crate) use model::Records;
#[cfg(all(test, loom))]
pub(crate) use model::{MODEL_DEAD_PID, ModelRecord};

/// A record held by a process: where it is and its holder's word (`pid << 32 | start time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) index: usize,
    pub(crate) word: u64,
}

impl Member {
    /// The pid in the holder's word.
    pub(crate) fn pid(self) -> u32 {
        (self.word >> 32) as u32
    }
}

/// Why [`Records::sleep`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woke {
    /// The word no longer holds the expected value (or a wake came: the caller re-checks).
    Changed,
    /// The deadline passed.
    TimedOut,
    /// A recorded process may have died (or detached, or attached, or its liveness is looked
    /// at by polling): the caller reclaims dead records, then re-checks.
    Death,
}

#[cfg(not(loom))]
mod real {
    use std::sync::atomic::Ordering::{Relaxed, SeqCst};
    use std::sync::atomic::{AtomicU32, AtomicU64};
    use std::time::{Duration, Instant};

    use super::{Member, Woke};
    use crate::attach::{
        Attached, Attachment, DeadHolders, Holder, Table, Watch, my_word, table_size,
    };
    use crate::segment::Segment;
    use crate::wait::{Bump, WaitSet};

    /// The deadline's time left; `None` if it has passed (`Some(None)`: no deadline).
    fn left(deadline: Option<Instant>) -> Option<Option<Duration>> {
        match deadline {
            None => Some(None),
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(Some(left)),
                _ => None,
            },
        }
    }

    /// Whether a table keeps a data word per record.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum RecordData {
        /// A `u64` per record, before the table; dead holders' words stay until freed.
        Words,
        /// None; dead holders' records are freed as they are found.
        Nothing,
    }

    /// Bytes of the data words (if any) and the table of `n` records, from a 64-aligned offset.
    pub(crate) fn bytes(n: usize, data: RecordData) -> usize {
        data_bytes(n, data) + table_size(n)
    }

    /// Bytes of the data words, rounded up so that the table after them is 128-aligned.
    fn data_bytes(n: usize, data: RecordData) -> usize {
        match data {
            RecordData::Words => (8 * n).next_multiple_of(128),
            RecordData::Nothing => 0,
        }
    }

    /// A record with a data word keeps its dead holder's word until the primitive has returned
    /// what the word says it held.
    fn dead_holders(data: RecordData) -> DeadHolders {
        match data {
            RecordData::Words => DeadHolders::Keep,
            RecordData::Nothing => DeadHolders::Free,
        }
    }

    /// The table of attachment records of [`Records::at`]'s `seg`, `off`, `n` and `data`.
    pub(crate) fn table(seg: &Segment, off: usize, n: usize, data: RecordData) -> Table<'_> {
        Table::at(seg, off + data_bytes(n, data), n, dead_holders(data))
    }

    /// What [`Records::claim`] found.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Claim {
        /// This process held the record already.
        Held(Member),
        /// It claimed the record now; `prev` is the word of the dead holder it was taken from
        /// (0: it was free), whose data, if any, is still in the record's data word.
        New { me: Member, prev: u64 },
        /// Every record is held by a live process.
        Full,
    }

    /// A primitive's table of attachment records, its data words, its `deaths` eventcount, and
    /// the handle whose view this is.
    #[derive(Clone, Copy)]
    pub(crate) struct Records<'a> {
        table: Table<'a>,
        data: &'a [AtomicU64],
        deaths: &'a AtomicU32,
        mine: &'a Attachment,
    }

    impl<'a> Records<'a> {
        /// The `n` records (with their data words, as `data` says) at `off` in `seg`, whose
        /// sleepers wake each other through `deaths`, as seen by the handle attached through
        /// `mine`.
        pub(crate) fn at(
            seg: &'a Segment,
            off: usize,
            n: usize,
            data: RecordData,
            deaths: &'a AtomicU32,
            mine: &'a Attachment,
        ) -> Records<'a> {
            let skip = data_bytes(n, data);
            Records {
                table: table(seg, off, n, data),
                data: if skip == 0 {
                    &[]
                } else {
                    seg.shared_slice(off, n)
                },
                deaths,
                mine,
            }
        }

        /// Initialises the table of [`at`](Self::at)'s `seg`, `off`, `n` and `data`; by the
        /// creator, before it publishes the segment.
        pub(crate) fn init(
            seg: &Segment,
            off: usize,
            n: usize,
            data: RecordData,
        ) -> std::io::Result<()> {
            table(seg, off, n, data).init()
        }

        pub(crate) fn len(&self) -> usize {
            self.table.len()
        }

        /// Record `index`'s data word, if it has one.
        pub(crate) fn data(&self, index: usize) -> Option<&'a AtomicU64> {
            self.data.get(index)
        }

        /// The record this process holds through this handle, if it has claimed one here.
        #[inline]
        pub(crate) fn held(&self) -> Option<Member> {
            self.mine.record().map(|index| Member {
                index,
                word: my_word(),
            })
        }

        /// Claims a record for this process, unless it holds one here already (a handle
        /// inherited through `fork` claims its own). A semaphore or a barrier calls this with
        /// its state lock held, and returns the data a `New` record still holds first. Wakes
        /// every sleeper, so that it watches the new holder.
        pub(crate) fn claim(&self) -> Claim {
            if let Some(me) = self.held() {
                return Claim::Held(me);
            }
            match self.mine.attach_any(&self.table) {
                Attached::Record { index, prev } => {
                    self.wake_sleepers();
                    Claim::New {
                        me: Member {
                            index,
                            word: my_word(),
                        },
                        prev,
                    }
                }
                Attached::Already => self.held().map_or(Claim::Full, Claim::Held),
                Attached::Untracked => {
                    // A handle that cannot be found dead is no member: refused instead.
                    self.mine.detach(&self.table);
                    Claim::Full
                }
            }
        }

        /// [`held`](Self::held), or else [`claim`](Self::claim) with the state lock that
        /// `enter` takes held throughout, handing a new record and the word it held to
        /// `take_over` first (a semaphore's or a barrier's claim); `None` when the table is full
        /// or the lock could not be taken.
        pub(crate) fn claim_locked<G>(
            &self,
            enter: impl FnOnce() -> Option<G>,
            take_over: impl FnOnce(Member, u64),
        ) -> Option<Member> {
            if let Some(me) = self.held() {
                return Some(me);
            }
            let _inside = enter()?;
            match self.claim() {
                Claim::Held(me) => Some(me),
                Claim::New { me, prev } => {
                    take_over(me, prev);
                    Some(me)
                }
                Claim::Full => None,
            }
        }

        /// Releases this handle's record (its data word must be empty by now); wakes whoever
        /// watched it.
        pub(crate) fn leave(&self) {
            self.mine.detach(&self.table);
        }

        /// The records whose holder is provably dead.
        pub(crate) fn dead(&self) -> impl Iterator<Item = Member> + 'a {
            let table = self.table;
            (0..table.len()).filter_map(move |index| match table.holder(index) {
                Holder::Dead(word) => Some(Member { index, word }),
                Holder::Free | Holder::Alive => None,
            })
        }

        /// Frees the record of the dead `m`, unless someone took it over meanwhile. Its data
        /// must have been returned.
        pub(crate) fn free_dead(&self, m: Member) {
            if m.index < self.len() {
                self.table.free_dead(m.index, m.word);
            }
        }

        /// Whether record `index` is held by `word`, alive (false for an index out of range).
        pub(crate) fn holds_alive(&self, index: usize, word: u64) -> bool {
            index < self.len() && self.table.holds_alive(index, word)
        }

        /// Moves `deaths` on and wakes every sleeper.
        fn wake_sleepers(&self) {
            Bump([Some(self.deaths), None]).wake();
        }

        /// Sleeps while `word` holds `expected`, until `deadline` (forever if `None`), or until
        /// a recorded process dies (at once if one is found dead), and says which.
        pub(crate) fn sleep(
            &self,
            word: &'a AtomicU32,
            expected: u32,
            deadline: Option<Instant>,
        ) -> Woke {
            // A blocking call's slow path: the record is armed again if its thread is gone.
            self.mine.rearm(&self.table);
            // SeqCst: pairs with the SeqCst bump in `Bump::wake`; read before the records are
            // watched, so that a bump for a change the watch misses wakes the sleep below.
            let seen = self.deaths.load(SeqCst);
            // SeqCst: pairs with the waker's SeqCst change of the word before its wake.
            if word.load(SeqCst) != expected {
                return Woke::Changed;
            }
            let Some(left) = left(deadline) else {
                return Woke::TimedOut;
            };
            let mut set = WaitSet::within(left);
            set.epoch(word, expected);
            if set.kernel() {
                set.epoch(self.deaths, seen);
            } else {
                // Nothing wakes this sleeper for a death or a new holder: it looks again.
                set.poll_within(crate::PEER_POLL);
            }
            if self
                .table
                .watch_all(&mut set, Bump([Some(self.deaths), None]))
                == Watch::Changed
            {
                return Woke::Death;
            }
            set.sleep(left);
            // Relaxed: the caller looks again under its own orderings.
            if self.deaths.load(Relaxed) != seen {
                return Woke::Death;
            }
            // SeqCst: as above.
            if word.load(SeqCst) != expected {
                return Woke::Changed;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Woke::TimedOut;
            }
            // A poll's time came (an unarmed holder, no `futex_waitv`), or a signal: look.
            Woke::Death
        }
    }
}

#[cfg(loom)]
mod model {
    use std::time::Instant;

    use super::{Member, Woke};
    use crate::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
    use crate::wait::futex::futex_wait;

    /// The pid that the models stage as a dead process: above any pid Linux hands out.
    pub(crate) const MODEL_DEAD_PID: u32 = 4_000_000;

    /// A record on the heap: its holder's word (0: free) and its data word.
    #[derive(Debug, Default)]
    pub(crate) struct ModelRecord {
        pub(crate) owner: AtomicU64,
        pub(crate) data: AtomicU64,
    }

    /// The model's records: every holder is alive but `MODEL_DEAD_PID`.
    #[derive(Clone, Copy)]
    pub(crate) struct Records<'a> {
        records: &'a [ModelRecord],
    }

    fn dead_word(word: u64) -> bool {
        word != 0 && (word >> 32) as u32 == MODEL_DEAD_PID
    }

    impl<'a> Records<'a> {
        pub(crate) fn new(records: &'a [ModelRecord]) -> Records<'a> {
            Records { records }
        }

        pub(crate) fn data(&self, index: usize) -> Option<&'a AtomicU64> {
            self.records.get(index).map(|r| &r.data)
        }

        pub(crate) fn dead(&self) -> impl Iterator<Item = Member> + 'a {
            self.records.iter().enumerate().filter_map(|(index, r)| {
                let word = r.owner.load(Relaxed);
                dead_word(word).then_some(Member { index, word })
            })
        }

        pub(crate) fn free_dead(&self, m: Member) {
            if let Some(r) = self.records.get(m.index) {
                let _ = r.owner.compare_exchange(m.word, 0, Relaxed, Relaxed);
            }
        }

        pub(crate) fn holds_alive(&self, index: usize, word: u64) -> bool {
            self.records
                .get(index)
                .is_some_and(|r| r.owner.load(Relaxed) == word && !dead_word(word))
        }

        /// The model's sleep: a waiter with a deadline may time out at any moment, so it does
        /// at once (which explores the timeout paths); one without sleeps until any wake.
        pub(crate) fn sleep(
            &self,
            word: &AtomicU32,
            expected: u32,
            deadline: Option<Instant>,
        ) -> Woke {
            if word.load(SeqCst) != expected {
                return Woke::Changed;
            }
            if self.dead().next().is_some() {
                return Woke::Death;
            }
            if deadline.is_some() {
                return Woke::TimedOut;
            }
            futex_wait(word, expected, None);
            Woke::Changed
        }
    }
}
