//! Lock-free integer operations on a value in shared memory.
//!
//! These are the counters "shared between cooperating binaries": one `lock`-prefixed instruction
//! on x86_64, no syscall, no lock. Every operation is `SeqCst`, the order users of Python's and
//! C's shared counters expect; it pairs with itself in every process that touches the counter.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{
    AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicU8, AtomicU16, AtomicU32, AtomicU64,
};

use crate::segment::Shared;

mod sealed {
    pub trait Sealed {}
}

/// Integer types that [`Value`](crate::Value) and [`RawValue`](crate::RawValue) can update
/// atomically: `u8`–`u64` and `i8`–`i64` (fixed widths only: `usize` differs between binaries).
pub trait AtomicInt: bytemuck::Pod + sealed::Sealed {
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
    u8 => AtomicU8, u16 => AtomicU16, u32 => AtomicU32, u64 => AtomicU64,
    i8 => AtomicI8, i16 => AtomicI16, i32 => AtomicI32, i64 => AtomicI64,
}
