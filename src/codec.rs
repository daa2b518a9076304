//! The codecs: how a queue's messages, a container's entries and a process's arguments become
//! bytes and back. One vocabulary for the whole crate:
//!
//! - [`Plain`]: plain data ([`SharedType`], or any `Pod` for process arguments), copied as its
//!   bytes; fixed size, no serialisation, nothing can fail.
//! - [`Bytes`]: byte strings (`Vec<u8>`) as they are, up to a length fixed at creation.
//! - [`Postcard`]: any serde type, encoded with postcard (feature `serde`), up to a length
//!   fixed at creation.
//!
//! A codec is the last type parameter of [`Queue`](crate::Queue),
//! [`SharedDict`](crate::SharedDict) and [`SharedList`](crate::SharedList) (`Plain` by
//! default). `Plain` and `Postcard` also wrap a value (`Plain(x)`, `Postcard(x)`) to say how a
//! [`Process`](crate::Process) or [`Pool`](crate::Pool) sends it ([`Payload`]).
//!
//! [`Payload`]: crate::Payload

use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::AtomicU64;

use crate::error::{ContainerError, TooLarge};
#[cfg(feature = "serde")]
use crate::error::{DecodeError, EncodeError};
use crate::segment::{Identity, Options};
use crate::shared_type::SharedType;

mod sealed {
    pub trait Sealed {}
}

/// How a queue, a container or a pipe turns values of `T` into bytes and back: [`Plain`],
/// [`Bytes`] or [`Postcard`]. Sealed.
///
/// The associated types say what a handle of this codec needs and how it can fail, so that a
/// handle's methods show only the errors it can return: a `Queue<u64>` (codec `Plain`) has
/// `Infallible` for both error types, and its `put` cannot fail to encode.
pub trait Codec<T>: sealed::Sealed {
    /// What a queue or container of this codec needs at creation besides its name: its
    /// capacity (`usize`) for `Plain`, whose entries are one `T` each, and
    /// `(capacity, max_bytes)` for `Bytes` and `Postcard`, whose messages or entries have room
    /// for `max_bytes` bytes each.
    type Init;
    /// Why a value may not go into a slot or entry: [`Infallible`] for `Plain`, [`TooLarge`]
    /// for `Bytes`, [`EncodeError`](crate::EncodeError) for `Postcard`.
    type EncodeError: fmt::Debug + fmt::Display + Into<ContainerError>;
    /// Why bytes may not be a `T`: [`Infallible`] for `Plain` and `Bytes` (every bit pattern is
    /// a value), [`DecodeError`](crate::DecodeError) for `Postcard`.
    type DecodeError: fmt::Debug + fmt::Display + Into<ContainerError>;

    /// A number stored in the segment, so that two codecs never share one.
    #[doc(hidden)]
    const ID: u64;
    /// The word that starts a container's type tag (`serde dict<K, V>`).
    #[doc(hidden)]
    const PREFIX: &'static str;
    /// The bytes read back, before they are turned into a `T`.
    #[doc(hidden)]
    type Raw;
    /// `(capacity, bytes per message or entry)` of `init`.
    #[doc(hidden)]
    fn sizes(init: &Self::Init) -> (usize, usize);
    /// The encoded length of every `T`, for codecs where it is fixed.
    #[doc(hidden)]
    fn fixed_len() -> Option<usize>;
    /// The default tag, size, alignment and layout of what this codec stores.
    #[doc(hidden)]
    fn identity() -> Identity;
    /// The bytes of `v`, in `scratch` if they have to be made; at most `max` of them.
    #[doc(hidden)]
    fn encode<'a>(
        v: &'a T,
        max: usize,
        scratch: &'a mut Vec<u8>,
    ) -> Result<&'a [u8], Self::EncodeError>;
    /// Room for `len` stored bytes; `None` if no `T` has that length.
    #[doc(hidden)]
    fn raw(len: usize) -> Option<Self::Raw>;
    /// The room's bytes, to be filled.
    #[doc(hidden)]
    fn raw_bytes(raw: &mut Self::Raw) -> &mut [u8];
    /// The `T` the bytes hold.
    #[doc(hidden)]
    fn decode(raw: Self::Raw) -> Result<T, Self::DecodeError>;
    /// Reads the message of `len` bytes in a queue slot's data words into `out`, straight into
    /// place where it can (the queue's hot path).
    #[doc(hidden)]
    fn read_slot(
        data: &[AtomicU64],
        len: usize,
        out: &mut Option<T>,
    ) -> Result<(), Self::DecodeError>;
}

/// The identity of a codec's `T` with the options' tag, if any, in place of its own.
pub(crate) fn identity<T, C: Codec<T>>(opts: &Options) -> Identity {
    let own = C::identity();
    match opts.type_tag.as_deref() {
        Some(tag) => Identity::named(tag, own.size, own.align, own.layout, &own.fields),
        None => own,
    }
}

/// Plain data, as its bytes: fixed size, no serialisation.
///
/// As a type parameter (`Queue<T, Plain>`, `SharedDict<K, V, Plain>`, the default) it is the
/// codec for [`SharedType`]s; wrapping a value (`Plain(x)`) it sends any `bytemuck::Pod` as a
/// process argument or result ([`Payload`](crate::Payload)). Keys of a container compare by
/// their bytes (so `-0.0` and `0.0` are two keys, and a NaN finds itself).
///
/// ```
/// # let name = format!("doc-codec-{}", std::process::id());
/// use mpshm::prelude::*;
/// use mpshm::{Plain, SharedDict};
/// let d: SharedDict<u32, [f32; 3], Plain> = SharedDict::create(&name, 10)?;
/// # Ok::<(), mpshm::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Plain<T = ()>(pub T);

impl sealed::Sealed for Plain {}

impl<T: SharedType> Codec<T> for Plain {
    type Init = usize;
    type EncodeError = Infallible;
    type DecodeError = Infallible;
    const ID: u64 = 1;
    const PREFIX: &'static str = "";
    type Raw = T;

    fn sizes(capacity: &usize) -> (usize, usize) {
        (*capacity, std::mem::size_of::<T>())
    }

    #[inline]
    fn fixed_len() -> Option<usize> {
        Some(std::mem::size_of::<T>())
    }

    fn identity() -> Identity {
        Identity::of::<T>(&Options::new())
    }

    #[inline]
    fn encode<'a>(v: &'a T, _: usize, _: &'a mut Vec<u8>) -> Result<&'a [u8], Infallible> {
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
    fn decode(raw: T) -> Result<T, Infallible> {
        Ok(raw)
    }

    /// Reads a whole `T` out of the slot, whatever its length word says: a slot always has
    /// room for one, and any bytes are a `T` (a length other than `size_of::<T>()` is only
    /// written by a process scribbling on the segment, whose data is then its own invention).
    #[inline(always)]
    fn read_slot(data: &[AtomicU64], _len: usize, out: &mut Option<T>) -> Result<(), Infallible> {
        *out = Some(crate::ring::mpmc::read_pod(data));
        Ok(())
    }
}

/// Byte strings (`Vec<u8>`), stored as they are, each up to a length fixed at creation: the
/// codec of [`ByteQueue`](crate::ByteQueue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Bytes;

impl sealed::Sealed for Bytes {}

impl Codec<Vec<u8>> for Bytes {
    type Init = (usize, usize);
    type EncodeError = TooLarge;
    type DecodeError = Infallible;
    const ID: u64 = 3;
    const PREFIX: &'static str = "bytes ";
    type Raw = Vec<u8>;

    fn sizes(&(capacity, max): &(usize, usize)) -> (usize, usize) {
        (capacity, max)
    }

    fn fixed_len() -> Option<usize> {
        None
    }

    fn identity() -> Identity {
        Identity::named("bytes", 0, 0, 0, "")
    }

    #[inline]
    fn encode<'a>(v: &'a Vec<u8>, max: usize, _: &'a mut Vec<u8>) -> Result<&'a [u8], TooLarge> {
        if v.len() > max {
            return Err(TooLarge { len: v.len(), max });
        }
        Ok(v)
    }

    fn raw(len: usize) -> Option<Vec<u8>> {
        Some(vec![0; len])
    }

    fn raw_bytes(raw: &mut Vec<u8>) -> &mut [u8] {
        raw
    }

    fn decode(raw: Vec<u8>) -> Result<Vec<u8>, Infallible> {
        Ok(raw)
    }

    fn read_slot(
        data: &[AtomicU64],
        len: usize,
        out: &mut Option<Vec<u8>>,
    ) -> Result<(), Infallible> {
        crate::ring::mpmc::read_data(data, out.insert(vec![0; len]));
        Ok(())
    }
}

/// Any serde type, encoded with postcard (feature `serde`), each message or entry in room for
/// a number of bytes fixed at creation; container keys compare by their encoded bytes.
///
/// As a type parameter it is the codec of [`SerdeQueue`](crate::SerdeQueue),
/// [`SerdeDict`](crate::SerdeDict) and [`SerdeList`](crate::SerdeList); wrapping a value
/// (`Postcard(x)`) it sends any serde value as a process argument or result
/// ([`Payload`](crate::Payload)).
///
/// Its default type tag is `std::any::type_name::<T>()` (its first 64 bytes), which the
/// standard library promises to be neither stable nor unique. Two builds of the same type may
/// disagree on it (another compiler version, the type at another path), so that an open is
/// refused with [`Error::TypeMismatch`](crate::Error::TypeMismatch); and two types may
/// share it, so that an open is allowed. It catches a handle of another type in the same
/// program, not every mismatch: give separately built binaries the same
/// [`Options::type_tag`](crate::Options::type_tag). Nothing is checked of a serde type's shape;
/// a message of another type that reaches `get` is decoded by postcard into a
/// [`DecodeError`](crate::DecodeError), or into a `T` of other values if its bytes happen to
/// fit, never into undefined behaviour.
#[cfg(feature = "serde")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Postcard<T = ()>(pub T);

#[cfg(feature = "serde")]
impl sealed::Sealed for Postcard {}

#[cfg(feature = "serde")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> Codec<T> for Postcard {
    type Init = (usize, usize);
    type EncodeError = EncodeError;
    type DecodeError = DecodeError;
    const ID: u64 = 2;
    const PREFIX: &'static str = "serde ";
    type Raw = Vec<u8>;

    fn sizes(&(capacity, max): &(usize, usize)) -> (usize, usize) {
        (capacity, max)
    }

    fn fixed_len() -> Option<usize> {
        None
    }

    fn identity() -> Identity {
        Identity::named(std::any::type_name::<T>(), 0, 0, 0, "")
    }

    fn encode<'a>(v: &'a T, max: usize, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], EncodeError> {
        scratch.clear();
        *scratch =
            postcard::to_extend(v, std::mem::take(scratch)).map_err(|_| EncodeError::Serialize)?;
        if scratch.len() > max {
            return Err(EncodeError::TooLarge(TooLarge {
                len: scratch.len(),
                max,
            }));
        }
        Ok(scratch)
    }

    fn raw(len: usize) -> Option<Vec<u8>> {
        Some(vec![0; len])
    }

    fn raw_bytes(raw: &mut Vec<u8>) -> &mut [u8] {
        raw
    }

    fn decode(raw: Vec<u8>) -> Result<T, DecodeError> {
        postcard::from_bytes(&raw).map_err(|_| DecodeError)
    }

    fn read_slot(data: &[AtomicU64], len: usize, out: &mut Option<T>) -> Result<(), DecodeError> {
        let mut raw = vec![0; len];
        crate::ring::mpmc::read_data(data, &mut raw);
        *out = Some(Self::decode(raw)?);
        Ok(())
    }
}
