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
//! Keys, values and items are bytes to the storage; a [`Codec`](crate::Codec) turns them into
//! bytes: [`Plain`](crate::Plain) copies plain-data types as they are (fixed size), `Postcard`
//! serialises any serde type (feature `serde`) into entries of a maximum length fixed at
//! creation.

// Under `--cfg loom` only the sequence lock and the words' algorithm are built, for their
// models.
#[cfg(not(loom))]
mod dict;
#[cfg(not(loom))]
mod list;
#[cfg(all(test, loom))]
mod loom_model;
pub(crate) mod seqlock;
#[cfg(not(loom))]
pub(crate) mod store;
pub(crate) mod words;

use crate::error::ContainerError;
#[cfg(not(loom))]
use crate::segment::{Identity, Options};
#[cfg(not(loom))]
use crate::shared_type::mix;

#[cfg(not(loom))]
pub use dict::SharedDict;
#[cfg(not(loom))]
pub use list::SharedList;

#[cfg(all(feature = "serde", not(loom)))]
/// A [`SharedDict`] of any serde keys and values, encoded with postcard (feature `serde`).
pub type SerdeDict<K, V> = SharedDict<K, V, crate::Postcard>;

#[cfg(all(feature = "serde", not(loom)))]
/// A [`SharedList`] of any serde items, encoded with postcard (feature `serde`).
pub type SerdeList<T> = SharedList<T, crate::Postcard>;

mod sealed {
    pub trait Sealed {}
}

/// The identity a container records: named `{noun}<{parts' tags}>` (or the options' tag), its
/// layout hash made of its parts'.
#[cfg(not(loom))]
fn identity(noun: &str, parts: &[Identity], opts: &Options) -> Identity {
    let tags: Vec<&str> = parts.iter().map(|p| p.tag.as_str()).collect();
    let tag = format!("{noun}<{}>", tags.join(", "));
    let layout = parts.iter().fold(0, |h, p| {
        mix(mix(mix(h, p.layout), u64::from(p.size)), u64::from(p.align))
    });
    let fields: Vec<&str> = parts.iter().map(|p| p.fields.as_str()).collect();
    Identity::named(
        opts.type_tag.as_deref().unwrap_or(&tag),
        0,
        0,
        layout,
        &fields.join("; "),
    )
}

/// An index into a [`SharedList`]: any integer type. Negative indices count from the end, as
/// in Python (`-1` is the last item). Sealed.
///
/// ```
/// use mpshm::prelude::*;
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
