//! Shared containers: [`SharedDict`] and [`SharedList`], the role of Python's
//! `Manager().dict()` and `Manager().list()` without a server process. Each lives in one named
//! segment that any process opens by name.
//!
//! Both rest on the same storage ([`store`]): a pool of fixed-size entries, an index into it
//! (a hash table with linear probing and tombstones for the dict, the order of the items for
//! the list) kept in two copies of which one is live, and a control block. Writers serialise
//! on the segment's robust lock; readers copy what they need under a sequence lock
//! ([`seqlock`]) and take the lock only when writers keep them out. Every change becomes
//! visible through one aligned word store (an index word, or the word that names the live
//! index copy and the list's length); what a writer touches before that store is unreachable
//! and what it updates after is bookkeeping that can be recomputed. So a writer killed at any
//! instruction leaves the container with its operation either done or not, and the next
//! holder of the lock, told that the owner died, recomputes the bookkeeping. DESIGN.md
//! ("Shared containers") gives the layout and the argument.
//!
//! Keys, values and items are bytes to the storage; a [`Codec`] turns them into bytes:
//! [`Plain`] copies plain-data types as they are (fixed size), `Postcard` serialises any
//! serde type (feature `serde`) into entries of a maximum length fixed at creation.

// Under `--cfg loom` only the sequence lock is built, for its model.
#[cfg(not(loom))]
mod dict;
#[cfg(not(loom))]
mod list;
#[cfg(all(test, loom))]
mod loom_model;
pub(crate) mod seqlock;
#[cfg(not(loom))]
pub(crate) mod store;

use bytemuck::Pod;

use crate::error::ContainerError;

#[cfg(not(loom))]
pub use dict::SharedDict;
#[cfg(not(loom))]
pub use list::SharedList;

#[cfg(all(feature = "serde", not(loom)))]
/// A [`SharedDict`] of any serde keys and values, encoded with postcard (feature `serde`).
pub type SerdeDict<K, V> = SharedDict<K, V, Postcard>;

#[cfg(all(feature = "serde", not(loom)))]
/// A [`SharedList`] of any serde items, encoded with postcard (feature `serde`).
pub type SerdeList<T> = SharedList<T, Postcard>;

mod sealed {
    pub trait Sealed {}
}

/// How a shared container stores its keys, values or items as bytes: [`Plain`] or
/// `Postcard` (feature `serde`). Sealed. It is the containers' last type parameter, `Plain`
/// by default:
///
/// ```
/// # let name = format!("doc-codec-{}", std::process::id());
/// use mpshm::{Plain, SharedDict};
/// let d: SharedDict<u32, [f32; 3], Plain> = SharedDict::create(&name, 10)?;
/// # #[cfg(feature = "serde")] {
/// # let name = format!("doc-codec2-{}", std::process::id());
/// // The serde form: any serde types, at most 64 bytes per entry.
/// let s = mpshm::SerdeDict::<String, Vec<String>>::create_sized(&name, 10, 64)?;
/// # }
/// # Ok::<(), mpshm::Error>(())
/// ```
pub trait Codec<T>: sealed::Sealed {
    /// The bytes read back, before they are turned into a `T`.
    #[doc(hidden)]
    type Raw;
    /// A number stored in the segment, so that two codecs never share one.
    #[doc(hidden)]
    const ID: u64;
    /// The word that starts the segment's type tag.
    #[doc(hidden)]
    const NAME: &'static str;
    /// The encoded length of every `T`, for codecs where it is fixed.
    #[doc(hidden)]
    fn fixed_len() -> Option<usize>;
    /// The bytes of `v`, in `scratch` if they have to be made.
    #[doc(hidden)]
    fn encode<'a>(v: &'a T, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], ContainerError>;
    /// Room for `len` stored bytes; `None` if no `T` has that length.
    #[doc(hidden)]
    fn raw(len: usize) -> Option<Self::Raw>;
    /// The room's bytes, to be filled.
    #[doc(hidden)]
    fn raw_bytes(raw: &mut Self::Raw) -> &mut [u8];
    /// The `T` the bytes hold; `None` if they hold none.
    #[doc(hidden)]
    fn decode(raw: Self::Raw) -> Option<T>;
}

/// Plain-data keys, values and items ([`bytemuck::Pod`]), stored as their bytes: fixed size,
/// no serialisation. Keys compare by their bytes (so `-0.0` and `0.0` are two keys, and a NaN
/// finds itself).
#[derive(Debug, Clone, Copy)]
pub struct Plain;

impl sealed::Sealed for Plain {}

impl<T: Pod> Codec<T> for Plain {
    type Raw = T;
    const ID: u64 = 1;
    const NAME: &'static str = "";

    #[inline]
    fn fixed_len() -> Option<usize> {
        Some(std::mem::size_of::<T>())
    }

    #[inline]
    fn encode<'a>(v: &'a T, _: &'a mut Vec<u8>) -> Result<&'a [u8], ContainerError> {
        Ok(bytemuck::bytes_of(v))
    }

    #[inline]
    fn raw(len: usize) -> Option<T> {
        (len == std::mem::size_of::<T>()).then(T::zeroed)
    }

    #[inline]
    fn raw_bytes(raw: &mut T) -> &mut [u8] {
        bytemuck::bytes_of_mut(raw)
    }

    #[inline]
    fn decode(raw: T) -> Option<T> {
        Some(raw)
    }
}

/// Any serde type, encoded with postcard (feature `serde`). Each entry has room for a number
/// of bytes fixed at creation; keys compare by their encoded bytes.
#[cfg(feature = "serde")]
#[derive(Debug, Clone, Copy)]
pub struct Postcard;

#[cfg(feature = "serde")]
impl sealed::Sealed for Postcard {}

#[cfg(feature = "serde")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> Codec<T> for Postcard {
    type Raw = Vec<u8>;
    const ID: u64 = 2;
    const NAME: &'static str = "serde ";

    fn fixed_len() -> Option<usize> {
        None
    }

    fn encode<'a>(v: &'a T, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], ContainerError> {
        *scratch =
            postcard::to_extend(v, std::mem::take(scratch)).map_err(|_| ContainerError::Encode)?;
        Ok(scratch)
    }

    fn raw(len: usize) -> Option<Vec<u8>> {
        Some(vec![0; len])
    }

    fn raw_bytes(raw: &mut Vec<u8>) -> &mut [u8] {
        raw
    }

    fn decode(raw: Vec<u8>) -> Option<T> {
        postcard::from_bytes(&raw).ok()
    }
}

/// An index into a [`SharedList`]: any integer type. Negative indices count from the end, as
/// in Python (`-1` is the last item). Sealed.
///
/// ```
/// # let name = format!("doc-index-{}", std::process::id());
/// let l = mpshm::SharedList::<u8>::create(&name, 4)?;
/// l.extend([10, 20, 30])?;
/// let i: usize = 1;
/// assert_eq!((l.get(i)?, l.get(-1)?, l.get(0u64)?), (20, 30, 10));
/// assert!(matches!(l.get(-4), Err(mpshm::ContainerError::IndexOutOfRange { index: -4, len: 3 })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait ListIndex: Copy + sealed::Sealed {
    /// The index as a wide integer, exact for every implementing type.
    #[doc(hidden)]
    fn wide(self) -> i128;
}

macro_rules! list_index {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl ListIndex for $t {
            #[inline]
            fn wide(self) -> i128 {
                self as i128
            }
        }
    )*};
}

list_index!(usize, isize, u32, i32, u64, i64);

/// The position `index` names in a list of `len` items, or the error Python would raise.
#[inline]
fn position(index: impl ListIndex, len: usize) -> Result<usize, ContainerError> {
    let wide = index.wide();
    let at = if wide < 0 { wide + len as i128 } else { wide };
    if (0..len as i128).contains(&at) {
        Ok(at as usize)
    } else {
        Err(ContainerError::IndexOutOfRange { index: wide, len })
    }
}

/// Where Python's `list.insert(index, x)` puts `x` in a list of `len` items: the index clamped
/// to `0..=len`, counting from the end if negative.
#[inline]
fn insert_position(index: impl ListIndex, len: usize) -> usize {
    let wide = index.wide();
    let at = if wide < 0 { wide + len as i128 } else { wide };
    at.clamp(0, len as i128) as usize
}
