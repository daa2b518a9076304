//! Lock-free integer operations on a value in shared memory, and the atomics the lock-free
//! algorithms are written against.
//!
//! [`AtomicInt`] gives the counters "shared between cooperating binaries": one `lock`-prefixed
//! instruction on x86_64, no syscall, no lock. Every operation is `SeqCst`, the order users of
//! Python's and C's shared counters expect; it pairs with itself in every process that touches
//! the counter.
//!
//! `AtomicU32`, `AtomicU64` and `Ordering` re-exported here are std's, or loom's under
//! `--cfg loom`, so that the rings (`ring/`) can be model checked on heap memory (as crossbeam
//! does with its `primitive` module). Code that maps these types onto shared memory must use
//! std's directly: loom's atomics are handles into the model, not words in memory.

use std::sync::atomic as std_atomic;
use std_atomic::Ordering::SeqCst;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::segment::Shared;

mod sealed {
    pub trait Sealed {}
}

/// Integer types that a [`RawValue`](crate::RawValue) can update atomically, without a lock:
/// `u8`–`u64` and `i8`–`i64` (fixed widths only: `usize` differs between binaries). A
/// [`Value`](crate::Value) has no lock-free operations: every write to it takes its lock.
pub trait AtomicInt: crate::SharedType + sealed::Sealed {
    #[doc(hidden)]
    type Atomic: Shared;
    #[doc(hidden)]
    fn load(a: &Self::Atomic) -> Self;
    #[doc(hidden)]
    fn store(a: &Self::Atomic, v: Self);
    #[doc(hidden)]
    fn swap(a: &Self::Atomic, v: Self) -> Self;
    #[doc(hidden)]
    fn fetch_add(a: &Self::Atomic, v: Self) -> Self;
    #[doc(hidden)]
    fn fetch_sub(a: &Self::Atomic, v: Self) -> Self;
    #[doc(hidden)]
    fn compare_exchange(a: &Self::Atomic, current: Self, new: Self) -> Result<Self, Self>;
}

macro_rules! atomic_int {
    ($($int:ty => $atomic:ty),* $(,)?) => {$(
        // SAFETY: an atomic integer accepts every bit pattern and is made for concurrent access.
        unsafe impl Shared for $atomic {}
        impl sealed::Sealed for $int {}
        impl AtomicInt for $int {
            type Atomic = $atomic;
            #[inline]
            fn load(a: &$atomic) -> Self { a.load(SeqCst) }
            #[inline]
            fn store(a: &$atomic, v: Self) { a.store(v, SeqCst) }
            #[inline]
            fn swap(a: &$atomic, v: Self) -> Self { a.swap(v, SeqCst) }
            #[inline]
            fn fetch_add(a: &$atomic, v: Self) -> Self { a.fetch_add(v, SeqCst) }
            #[inline]
            fn fetch_sub(a: &$atomic, v: Self) -> Self { a.fetch_sub(v, SeqCst) }
            #[inline]
            fn compare_exchange(a: &$atomic, current: Self, new: Self) -> Result<Self, Self> {
                a.compare_exchange(current, new, SeqCst, SeqCst)
            }
        }
    )*};
}

atomic_int! {
    u8 => std_atomic::AtomicU8, u16 => std_atomic::AtomicU16,
    u32 => std_atomic::AtomicU32, u64 => std_atomic::AtomicU64,
    i8 => std_atomic::AtomicI8, i16 => std_atomic::AtomicI16,
    i32 => std_atomic::AtomicI32, i64 => std_atomic::AtomicI64,
}
