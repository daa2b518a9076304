//! Asymmetric fences, for the store-then-load handshakes (Dekker's) where one side runs on every
//! message and the other rarely: a sender that publishes and then looks for parked receivers,
//! against a receiver that counts itself parked and then looks for messages once more.
//!
//! Such a handshake needs a full fence on both sides, and on x86_64 a full fence waits for the
//! store buffer to drain, which costs a stream of small messages more than everything else a
//! send does. With Linux's `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` the frequent side
//! ([`light`]) needs only a compiler fence, and the rare side ([`heavy`]) pays instead: the kernel
//! runs a full fence on every CPU that is running a thread of a registered process at that
//! moment (a context switch is a full fence already). Folly's `asymmetricHeavyBarrier` and the
//! Linux kernel's own RCU use the same idea.
//!
//! Every process registers on its first handle ([`init`]); the registration survives `fork`. A
//! process that cannot (a kernel before 4.16, or a seccomp filter that denies `membarrier`) uses
//! a full fence on both sides, and because a registered peer's light side may then be out of its
//! reach, [`heavy`] returns `false` so that the caller bounds its sleep and looks again. Once a
//! process is registered it stays asymmetric; if a later `membarrier` fails (a filter installed
//! after start-up), [`heavy`] still fences this process's own threads through a TLB shootdown
//! (`sys::process_wide_fence`), and returns `false` for the other processes. [`fence_mode`]
//! tells a user which of these holds.
//! [`full`] is a plain full fence, for the handshakes that both sides run rarely (the
//! eventcount's sleepy mode).
//!
//! Under loom both sides are plain `SeqCst` fences, unless a model asks for the `membarrier`
//! itself ([`model_membarrier`]): then [`light`] is no fence, only the point where the
//! membarrier's fence lands in this thread (a read-modify-write of a word of this thread's), and
//! [`heavy`] is a full fence and a read-modify-write of every other thread's word, so that each
//! other thread is ordered wholly before or wholly after it at that point.

use std::time::Duration;

/// How long a sleeper waits at most, before it looks again, where this process's fences do not
/// reach the other processes' (see [`fence_mode`]).
pub const UNFENCED_POLL: Duration = Duration::from_millis(10);

/// How the rings' wake-up handshake is fenced in this process (see [`fence_mode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FenceMode {
    /// Registered for `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` (Linux 4.16 and later): a
    /// message costs no fence, a side about to sleep runs the membarrier, and a wake-up from
    /// another process reaches a sleeper at once.
    Membarrier,
    /// `membarrier` is missing or refused (an older kernel, a seccomp filter, now or since
    /// start-up): the slower mode. Every message runs a full fence, no side of a queue is handed
    /// to a single thread while this process uses it, and a sleeper looks again every
    /// [`UNFENCED_POLL`], since a wake-up from another process may not reach it.
    Full,
}

/// Which fences this process runs: whether it fell back to the slower mode because
/// `membarrier` was refused.
///
/// ```
/// match mpshm::fence_mode() {
///     mpshm::FenceMode::Membarrier => println!("asymmetric fences"),
///     mpshm::FenceMode::Full => println!("full fences; sleepers look every {:?}", mpshm::UNFENCED_POLL),
///     _ => {}
/// }
/// ```
#[cfg(not(loom))]
pub fn fence_mode() -> FenceMode {
    if asymmetric() && !REFUSED.load(Relaxed) {
        FenceMode::Membarrier
    } else {
        FenceMode::Full
    }
}

#[cfg(not(loom))]
use super::backoff::Backoff;
#[cfg(not(loom))]
use std::sync::atomic::{
    AtomicBool, AtomicU8, Ordering::Relaxed, Ordering::SeqCst, compiler_fence, fence,
};

#[cfg(not(loom))]
const UNKNOWN: u8 = 0;
#[cfg(not(loom))]
const ASYMMETRIC: u8 = 1;
#[cfg(not(loom))]
const SYMMETRIC: u8 = 2;

/// Whether this process is registered for the expedited global `membarrier`.
#[cfg(not(loom))]
static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Set once a `membarrier` failed after the registration: heavy fences reach this process only.
#[cfg(not(loom))]
static REFUSED: AtomicBool = AtomicBool::new(false);

/// Registers this process, once; called by every handle's constructor, before its first
/// [`light`] fence.
#[cfg(not(loom))]
pub(crate) fn init() {
    if MODE.load(Relaxed) == UNKNOWN {
        // Two threads may both register; registering is idempotent. The mode is set once: a
        // process that went asymmetric never goes back, or a heavy fence could miss a thread
        // that still runs the light one.
        let mode = if crate::sys::membarrier_register() {
            ASYMMETRIC
        } else {
            SYMMETRIC
        };
        let _ = MODE.compare_exchange(UNKNOWN, mode, Relaxed, Relaxed);
    }
}

/// Whether this process skips the frequent side's fence (it is registered for `membarrier`).
#[cfg(not(loom))]
pub(crate) fn asymmetric() -> bool {
    init();
    MODE.load(Relaxed) == ASYMMETRIC
}

/// The frequent side's fence: orders this thread's earlier stores before its later loads, as
/// seen by a thread that runs [`heavy`].
#[cfg(not(loom))]
#[inline]
pub(crate) fn light() {
    if MODE.load(Relaxed) == ASYMMETRIC {
        // The heavy side's membarrier puts a full fence here, or a context switch did.
        compiler_fence(SeqCst);
    } else {
        fence(SeqCst);
    }
}

/// The rare side's fence: a full fence here and in every thread that may have run [`light`].
/// `false` if that second part could not be done, so a peer's light side may have been missed
/// and the caller must not sleep for long (or rely on the handshake at all).
#[cfg(not(loom))]
pub(crate) fn heavy() -> bool {
    init();
    fence(SeqCst);
    if MODE.load(Relaxed) != ASYMMETRIC {
        // Every thread of this process runs full fences, so this one reaches them all; but a
        // registered peer process runs compiler fences only. (Under Miri there are no peers.)
        return cfg!(miri);
    }
    if crate::sys::membarrier_global() {
        return true;
    }
    // Registered, yet refused now: this process's threads still skip their fences, so they
    // must be reached some other way before anyone may go on.
    REFUSED.store(true, Relaxed);
    let mut backoff = Backoff::new();
    while !crate::sys::process_wide_fence() && !crate::sys::membarrier_global() {
        backoff.pause(Duration::from_millis(10));
    }
    false
}

/// A full fence, on the side of a handshake that both sides run rarely.
#[cfg(not(loom))]
#[inline]
pub(crate) fn full() {
    fence(SeqCst);
}

#[cfg(loom)]
pub(crate) fn init() {}

#[cfg(loom)]
pub(crate) fn asymmetric() -> bool {
    true
}

#[cfg(loom)]
pub(crate) fn full() {
    loom::sync::atomic::fence(loom::sync::atomic::Ordering::SeqCst);
}

#[cfg(loom)]
std::thread_local! {
    /// Whether the model running on this test thread models the membarrier (see the module's
    /// docs); loom's threads all run on the test's thread.
    static MEMBARRIER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(loom)]
loom::lazy_static! {
    /// One word per model thread, where a membarrier's fence lands in that thread.
    static ref CPUS: [loom::sync::atomic::AtomicU32; MODEL_THREADS] = Default::default();
}

/// loom's most threads in a model.
#[cfg(loom)]
const MODEL_THREADS: usize = 5;

/// Models the membarrier in the loom models run on this thread from now on (`true`), or plain
/// `SeqCst` fences on both sides (`false`, the default).
#[cfg(loom)]
pub(crate) fn model_membarrier(on: bool) {
    MEMBARRIER.with(|m| m.set(on));
}

/// The index of the current loom thread (its id, which loom numbers from 0 in each execution).
#[cfg(loom)]
fn model_thread() -> usize {
    let id = format!("{:?}", loom::thread::current().id());
    id.trim_start_matches("ThreadId(")
        .trim_end_matches(')')
        .parse()
        .expect("loom's ThreadId(n)")
}

#[cfg(loom)]
pub(crate) fn light() {
    use loom::sync::atomic::Ordering::{AcqRel, SeqCst};
    if MEMBARRIER.with(std::cell::Cell::get) {
        // AcqRel: pairs with the read-modify-write of this word in another thread's `heavy`:
        // whichever comes first in the word's order happens before the other.
        CPUS[model_thread()].fetch_add(1, AcqRel);
    } else {
        loom::sync::atomic::fence(SeqCst);
    }
}

#[cfg(loom)]
pub(crate) fn heavy() -> bool {
    use loom::sync::atomic::Ordering::{AcqRel, SeqCst};
    loom::sync::atomic::fence(SeqCst);
    if MEMBARRIER.with(std::cell::Cell::get) {
        let me = model_thread();
        for (i, cpu) in CPUS.iter().enumerate() {
            if i != me {
                // AcqRel: pairs with the one in `light`.
                cpu.fetch_add(1, AcqRel);
            }
        }
        loom::sync::atomic::fence(SeqCst);
    }
    true
}

#[cfg(all(test, not(loom), not(miri)))]
mod tests {
    /// The fallback fence works here (and again: the page is mapped once).
    #[test]
    fn process_wide_fence_runs() {
        assert!(crate::sys::process_wide_fence());
        assert!(crate::sys::process_wide_fence());
        super::init();
        super::light();
        let _ = super::heavy();
    }
}
