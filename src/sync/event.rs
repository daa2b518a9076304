//! [`Event`]: Python's `Event` in a named segment — a flag that processes set, clear and wait for.
//!
//! One futex word holds the flag (bit 0) and a count of the sets that raised it (the other
//! bits). A waiter returns once the flag is up, or once the count has moved since it began to
//! wait: a set followed at once by a clear still releases everyone who was waiting (as
//! `threading.Event` does). `set` raises the flag and bumps the count in one compare-and-swap,
//! then wakes every sleeper if any is counted in `waiters`. No lock is involved.
//!
//! A setter killed between its compare-and-swap and its wake would leave sleepers asleep with the
//! flag up; so each handle holds an attachment record, and the kernel also wakes a sleeper when a
//! recorded process dies (see `records`), which then finds the flag.

use std::time::Instant;

use crate::sync::atomic::{AtomicU32, Ordering::SeqCst};
use crate::sync::park::fence;
use crate::sync::records::{Records, Woke};
use crate::wait::futex::futex_wake;

/// The words of an event, as stored at the start of its payload.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct EventCtl {
    /// Bit 0: the flag. Bits 1..: how many times `set` raised it (wrapping). The futex word.
    pub(crate) state: AtomicU32,
    /// Threads asleep in `wait` (an overcount left by a dead waiter costs wake calls only).
    pub(crate) waiters: AtomicU32,
    /// The records' eventcount: bumped when a recorded process dies or attaches (`records`).
    pub(crate) deaths: AtomicU32,
}

// SAFETY: `EventCtl` is atomics only: every bit pattern is valid and all mutation is atomic.
// (Not under loom, whose atomics are handles into the model rather than words in memory.)
#[cfg(not(loom))]
unsafe impl crate::segment::Shared for EventCtl {}

/// Bytes of the event's words, padded to a cache line before the records.
pub(crate) const CTL_SIZE: usize = 64;
#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<EventCtl>() <= CTL_SIZE);

const FLAG: u32 = 1;

/// The event algorithm over its words and its records.
pub(crate) struct EventCore<'a> {
    pub(crate) ctl: &'a EventCtl,
    pub(crate) records: Records<'a>,
}

impl EventCore<'_> {
    pub(crate) fn is_set(&self) -> bool {
        // SeqCst here and below: the flag and `waiters` form a Dekker pair between `set` and
        // `wait` (each writes one and reads the other), which needs a single total order.
        self.ctl.state.load(SeqCst) & FLAG != 0
    }

    pub(crate) fn set(&self) {
        let mut s = self.ctl.state.load(SeqCst);
        loop {
            if s & FLAG != 0 {
                return; // Already up: the set that raised it woke the sleepers.
            }
            let raised = (s & !FLAG).wrapping_add(2) | FLAG;
            match self.ctl.state.compare_exchange(s, raised, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        // Pairs with the fence in `wait`: either that waiter's load sees the flag, or this load
        // sees it counted.
        fence(SeqCst);
        if self.ctl.waiters.load(SeqCst) > 0 {
            futex_wake(&self.ctl.state, i32::MAX as u32);
        }
    }

    pub(crate) fn clear(&self) {
        self.ctl.state.fetch_and(!FLAG, SeqCst);
    }

    /// Waits until the flag is up or a set happened since the call began, or until `deadline`;
    /// whether it was set.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> bool {
        let start = self.ctl.state.load(SeqCst);
        if start & FLAG != 0 {
            return true;
        }
        let was_set = |s: u32| s & FLAG != 0 || s != start;
        self.ctl.waiters.fetch_add(1, SeqCst);
        // Pairs with the fence in `set`.
        fence(SeqCst);
        let set = loop {
            let now = self.ctl.state.load(SeqCst);
            if was_set(now) {
                break true;
            }
            // A death only wakes: the event keeps nothing of a process's, and its table
            // frees dead records as it finds them.
            if self.records.sleep(&self.ctl.state, now, deadline) == Woke::TimedOut {
                break was_set(self.ctl.state.load(SeqCst));
            }
        };
        self.ctl.waiters.fetch_sub(1, SeqCst);
        set
    }
}

#[cfg(not(loom))]
pub use handle::Event;
#[cfg(not(loom))]
pub(crate) use handle::inspect;

#[cfg(not(loom))]
mod handle {
    use std::fmt;
    use std::time::Duration;

    use super::*;
    use crate::attach::Attachment;
    use crate::error::Error;
    use crate::segment::{Kind, Options, Segment, Spec};
    use crate::shm::{Made, Shm};
    use crate::sync::atomic::Ordering::Relaxed;
    use crate::sync::make::{self, records_ok, table_full};
    use crate::sync::records::{self, Claim, RecordData};

    fn payload_bytes(n: usize) -> usize {
        CTL_SIZE + records::bytes(n, RecordData::Nothing)
    }

    /// What [`inspect`](crate::inspect) shows of an event, read without changing anything; an
    /// error for parameters that do not match its size (checked as the opener does).
    pub(crate) fn inspect(seg: &Segment) -> Result<crate::inspect::Found, String> {
        use crate::inspect::{Found, Role, State, records};
        let n = seg.params()[1];
        if !(records_ok(n) && payload_bytes(n as usize) == seg.count()) {
            return Err(format!(
                "event parameters {:?} do not match its size",
                seg.params()
            ));
        }
        let off = seg.payload_offset();
        let ctl: &EventCtl = seg.shared(off);
        let table = records::table(seg, off + CTL_SIZE, n as usize, RecordData::Nothing);
        // Relaxed, both: a snapshot for people, ordered with nothing else.
        let mut found = Found::plain(State::Event {
            set: ctl.state.load(Relaxed) & FLAG != 0,
            waiters: ctl.waiters.load(Relaxed),
        });
        found.attached = records(&table, |_| Role::Handle);
        Ok(found)
    }

    /// A flag in a named segment that processes set, clear and wait for (Python's
    /// `multiprocessing.Event`).
    ///
    /// Waiters sleep in the kernel. A set that happens while they wait releases them even if
    /// the flag is cleared again at once, as with `threading.Event` (`multiprocessing.Event`
    /// would return `False` to them). A setter killed inside `set` does not leave them asleep.
    ///
    /// ```
    /// use mpshm::prelude::*;
    ///
    /// let name = format!("doc-event-{}", std::process::id());
    /// let ev = mpshm::Event::create(&name, ())?;
    /// assert!(!ev.wait_timeout(std::time::Duration::from_millis(1)));
    /// ev.set();
    /// assert!(ev.is_set());
    /// ev.wait(); // returns at once
    /// # Ok::<(), mpshm::Error>(())
    /// ```
    pub struct Event {
        seg: Segment,
        attach: Attachment,
        records: usize,
    }

    /// `Init` is `()`: an event starts cleared. The options' mode, open timeout, type tag and
    /// `max_attached` (the records, default 256) apply.
    impl Shm for Event {
        type Init = ();

        fn spec(_: Option<&()>, opts: &Options) -> Result<Spec, Error> {
            let records = make::records(opts)?;
            let params = [0, records as u64, 0, 0];
            Ok(make::spec(
                Kind::Event,
                params,
                payload_bytes(records),
                opts,
            ))
        }

        fn init(seg: &Segment, _: &()) -> Result<(), Error> {
            let off = seg.payload_offset() + CTL_SIZE;
            Records::init(seg, off, seg.params()[1] as usize, RecordData::Nothing)?;
            Ok(())
        }

        fn wrap(seg: Segment, _: Made, _: Option<&()>, _: &Options) -> Result<Self, Error> {
            let seg = make::checked(seg, |[_, records, ..]| {
                records_ok(records).then(|| payload_bytes(records as usize))
            })?;
            let records = seg.params()[1] as usize;
            let ev = Event {
                seg,
                attach: Attachment::default(),
                records,
            };
            if !ev.member() {
                return Err(table_full(&ev.seg, ev.records));
            }
            Ok(ev)
        }

        fn segment(&self) -> &Segment {
            &self.seg
        }
    }

    impl Event {
        fn core(&self) -> EventCore<'_> {
            let off = self.seg.payload_offset();
            let ctl: &EventCtl = self.seg.shared(off);
            EventCore {
                ctl,
                records: Records::at(
                    &self.seg,
                    off + CTL_SIZE,
                    self.records,
                    RecordData::Nothing,
                    &ctl.deaths,
                    &self.attach,
                ),
            }
        }

        /// This process's record (claimed again after `fork`): it makes this process's death
        /// wake the sleepers. A child that finds the table full goes on without one (its death
        /// inside `set` then wakes no one: the sleepers find the flag at their timeout).
        fn member(&self) -> bool {
            !matches!(self.core().records.claim(), Claim::Full)
        }

        /// Whether the flag is up.
        pub fn is_set(&self) -> bool {
            self.core().is_set()
        }

        /// Raises the flag and wakes every waiter.
        pub fn set(&self) {
            let _ = self.member();
            self.core().set();
        }

        /// Lowers the flag.
        pub fn clear(&self) {
            self.core().clear();
        }

        /// Sleeps until the flag is up (at once if it is).
        pub fn wait(&self) {
            let _ = self.member();
            self.core().wait(None);
        }

        /// Sleeps until the flag is up or `timeout` has passed (on the monotonic clock); whether
        /// it was set. A set during the wait counts even if the flag was cleared again since.
        pub fn wait_timeout(&self, timeout: Duration) -> bool {
            let _ = self.member();
            self.core().wait(Instant::now().checked_add(timeout))
        }
    }

    impl Drop for Event {
        fn drop(&mut self) {
            self.core().records.leave();
        }
    }

    impl fmt::Debug for Event {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Event")
                .field("name", &self.seg.name())
                .field("set", &self.is_set())
                .field("owner", &self.seg.is_owner())
                .finish()
        }
    }
}

/// The shared structures of this module, for the pinned layout (`src/layout.rs`).
#[cfg(all(test, not(loom)))]
pub(crate) fn shared_layout() -> Vec<String> {
    vec![
        crate::layout::pin!(EventCtl {
            state,
            waiters,
            deaths
        }),
        format!("constants: FLAG {FLAG}; the table at {CTL_SIZE}"),
    ]
}
