//! [`Payload`]: how arguments and results cross to another process, as bytes in a segment.
//!
//! A small self-delimiting encoding, little-endian and length-prefixed, so that values compose
//! (tuples, vectors, a chunk of many arguments one after another) and a reader can tell where
//! each ends. The bytes come from another process and are read as untrusted input: every length
//! is checked against what is left, and a bad encoding decodes to `None`, never a panic.
//! Plain-data types go by value wrapped in [`Plain`]; any serde type wrapped in [`Postcard`] (postcard,
//! feature `serde`).

use crate::codec::Plain;
#[cfg(feature = "serde")]
use crate::codec::Postcard;
use crate::error::ProcessError;

/// A value that can be sent to another process as an argument or a result.
///
/// Implemented for the integers, floats, `bool`, `char`, `()`, `String`, `Vec<T>`, `Option<T>`,
/// `Result<T, E>`, `Box<T>`, arrays and tuples (up to eight) of payloads; for any
/// [`bytemuck::Pod`] type wrapped in [`Plain`], and any serde type wrapped in `Postcard`
/// (feature `serde`): the crate's codecs, as queues and containers use them. Implement it
/// for a type of your own by encoding its fields in order.
///
/// ```
/// use mpshm::process::Payload;
///
/// struct Point { x: i32, y: i32 }
///
/// impl Payload for Point {
///     fn encode(&self, out: &mut Vec<u8>) -> Result<(), mpshm::ProcessError> {
///         self.x.encode(out)?;
///         self.y.encode(out)
///     }
///     fn decode(input: &mut &[u8]) -> Option<Self> {
///         Some(Point { x: i32::decode(input)?, y: i32::decode(input)? })
///     }
/// }
///
/// let mut bytes = Vec::new();
/// Point { x: 1, y: -2 }.encode(&mut bytes)?;
/// let p = Point::decode(&mut bytes.as_slice()).expect("valid");
/// assert_eq!((p.x, p.y), (1, -2));
/// # Ok::<(), mpshm::ProcessError>(())
/// ```
pub trait Payload: Sized {
    /// Appends the encoding of `self` to `out`.
    ///
    /// # Errors
    ///
    /// [`ProcessError::Encode`] when the value cannot be encoded (a serde error).
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProcessError>;

    /// Reads one value from the front of `input` and advances `input` past it; `None` if the
    /// bytes are not a valid encoding.
    fn decode(input: &mut &[u8]) -> Option<Self>;
}

/// Takes `n` bytes off the front of `input`.
fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, tail) = input.split_at(n);
    *input = tail;
    Some(head)
}

/// Takes a length prefix written by [`put_len`].
fn take_len(input: &mut &[u8]) -> Option<usize> {
    usize::try_from(u64::decode(input)?).ok()
}

fn put_len(len: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&(len as u64).to_le_bytes());
}

macro_rules! number_payload {
    ($($t:ty),*) => {$(
        impl Payload for $t {
            #[inline]
            fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProcessError> {
                out.extend_from_slice(&self.to_le_bytes());
                Ok(())
            }
            #[inline]
            fn decode(input: &mut &[u8]) -> Option<Self> {
                let (head, tail) = input.split_first_chunk()?;
                *input = tail;
                Some(<$t>::from_le_bytes(*head))
            }
        }
    )*};
}

number_payload!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128, f32, f64);

impl Payload for usize {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProcessError> {
        (*self as u64).encode(out)
    }
    #[inline]
    fn decode(input: &mut &[u8]) -> Option<Self> {
        usize::try_from(u64::decode(input)?).ok()
    }
}

impl Payload for isize {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProcessError> {
        (*self as i64).encode(out)
    }
    #[inline]
    fn decode(input: &mut &[u8]) -> Option<Self> {
        isize::try_from(i64::decode(input)?).ok()
    }
}

impl Payload for bool {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProcessError> {
        out.push(u8::from(*self));
        Ok(())
    }
    #[inline]
    fn decode(input: &mut &[u8]) -> Option<Self> {
        match u8::decode(input)? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
}

impl Payload for char {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProcessError> {
        u32::from(*self).encode(out)
    }
    fn decode(input: &mut &[u8]) -> Option<Self> {
        char::from_u32(u32::decode(input)?)
    }
}

impl Payload for () {
    #[inline]
    fn encode(&self, _out: &mut Vec<u8>) -> Result<(), ProcessError> {
        Ok(())
    }
    #[inline]
    fn decode(_input: &mut &[u8]) -> Option<Self> {
        Some(())
    }
}

impl Payload for String {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProcessError> {
        put_len(self.len(), out);
        out.extend_from_slice(self.as_bytes());
        Ok(())
    }
    fn decode(input: &mut &[u8]) -> Option<Self> {
        let len = take_len(input)?;
        String::from_utf8(take(input, len)?.to_vec()).ok()
    }
}

/// The most elements a vector of values that encode to no bytes at all (`Vec<()>`) may claim:
/// such a length cannot be checked against the bytes left, so it is capped to bound the work.
const MAX_EMPTY_ELEMENTS: usize = 1 << 20;

impl<T: Payload> Payload for Vec<T> {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProcessError> {
        put_len(self.len(), out);
        self.iter().try_for_each(|v| v.encode(out))
    }
    fn decode(input: &mut &[u8]) -> Option<Self> {
        let len = take_len(input)?;
        // Every element but a zero-byte one takes at least a byte, so a longer claim is a lie.
        if len > input.len().max(MAX_EMPTY_ELEMENTS) {
            return None;
        }
        let mut v = Vec::with_capacity(len.min(input.len()));
        for _ in 0..len {
            v.push(T::decode(input)?);
        }
        Some(v)
    }
}

impl<T: Payload> Payload for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProcessError> {
        match self {
            None => {
                out.push(0);
                Ok(())
            }
            Some(v) => {
                out.push(1);
                v.encode(out)
            }
        }
    }
    fn decode(input: &mut &[u8]) -> Option<Self> {
        match u8::decode(input)? {
            0 => Some(None),
            1 => Some(Some(T::decode(input)?)),
            _ => None,
        }
    }
}

impl<T: Payload, E: Payload> Payload for Result<T, E> {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProcessError> {
        match self {
            Ok(v) => {
                out.push(0);
                v.encode(out)
            }
            Err(e) => {
                out.push(1);
                e.encode(out)
            }
        }
    }
    fn decode(input: &mut &[u8]) -> Option<Self> {
        match u8::decode(input)? {
            0 => Some(Ok(T::decode(input)?)),
            1 => Some(Err(E::decode(input)?)),
            _ => None,
        }
    }
}

impl<T: Payload> Payload for Box<T> {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProcessError> {
        (**self).encode(out)
    }
    fn decode(input: &mut &[u8]) -> Option<Self> {
        T::decode(input).map(Box::new)
    }
}

impl<T: Payload, const N: usize> Payload for [T; N] {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProcessError> {
        self.iter().try_for_each(|v| v.encode(out))
    }
    fn decode(input: &mut &[u8]) -> Option<Self> {
        let mut v = Vec::with_capacity(N.min(input.len()));
        for _ in 0..N {
            v.push(T::decode(input)?);
        }
        v.try_into().ok()
    }
}

macro_rules! tuple_payload {
    ($(($($t:ident $i:tt),+))*) => {$(
        impl<$($t: Payload),+> Payload for ($($t,)+) {
            #[inline]
            fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProcessError> {
                $(self.$i.encode(out)?;)+
                Ok(())
            }
            #[inline]
            fn decode(input: &mut &[u8]) -> Option<Self> {
                Some(($($t::decode(input)?,)+))
            }
        }
    )*};
}

tuple_payload! {
    (A 0)
    (A 0, B 1)
    (A 0, B 1, C 2)
    (A 0, B 1, C 2, D 3)
    (A 0, B 1, C 2, D 3, E 4)
    (A 0, B 1, C 2, D 3, E 4, F 5)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7)
}

/// Any plain-data type ([`bytemuck::Pod`]), sent as its bytes.
///
/// ```
/// use mpshm::Plain;
/// use mpshm::process::Payload;
///
/// #[derive(Clone, Copy, Debug, PartialEq, mpshm::bytemuck::Pod, mpshm::bytemuck::Zeroable)]
/// #[bytemuck(crate = "mpshm::bytemuck")]
/// #[repr(C)]
/// struct Pixel { r: u8, g: u8, b: u8, a: u8 }
///
/// let mut bytes = Vec::new();
/// Plain(Pixel { r: 1, g: 2, b: 3, a: 4 }).encode(&mut bytes)?;
/// assert_eq!(bytes.len(), 4);
/// let back = Plain::<Pixel>::decode(&mut bytes.as_slice()).expect("four bytes");
/// assert_eq!(back.0, Pixel { r: 1, g: 2, b: 3, a: 4 });
/// # Ok::<(), mpshm::ProcessError>(())
/// ```
impl<T: bytemuck::Pod> Payload for Plain<T> {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProcessError> {
        out.extend_from_slice(bytemuck::bytes_of(&self.0));
        Ok(())
    }
    #[inline]
    fn decode(input: &mut &[u8]) -> Option<Self> {
        take(input, std::mem::size_of::<T>()).map(|b| Plain(bytemuck::pod_read_unaligned(b)))
    }
}

/// Any serde type, encoded with postcard (feature `serde`).
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use mpshm::Postcard;
/// use mpshm::process::Payload;
/// use std::collections::BTreeMap;
///
/// let map = BTreeMap::from([("a".to_owned(), 1u32), ("b".to_owned(), 2)]);
/// let mut bytes = Vec::new();
/// Postcard(map.clone()).encode(&mut bytes)?;
/// let back = Postcard::<BTreeMap<String, u32>>::decode(&mut bytes.as_slice()).expect("valid");
/// assert_eq!(back.0, map);
/// # }
/// # Ok::<(), mpshm::ProcessError>(())
/// ```
#[cfg(feature = "serde")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> Payload for Postcard<T> {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProcessError> {
        let bytes = postcard::to_allocvec(&self.0).map_err(|e| ProcessError::Encode {
            reason: e.to_string(),
        })?;
        put_len(bytes.len(), out);
        out.extend_from_slice(&bytes);
        Ok(())
    }
    fn decode(input: &mut &[u8]) -> Option<Self> {
        let len = take_len(input)?;
        postcard::from_bytes(take(input, len)?).ok().map(Postcard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Payload + PartialEq + std::fmt::Debug>(v: T) {
        let mut bytes = Vec::new();
        v.encode(&mut bytes).expect("encode");
        bytes.push(0xEE);
        let mut input = bytes.as_slice();
        assert_eq!(T::decode(&mut input), Some(v));
        assert_eq!(input, [0xEE], "decode must take exactly its own bytes");
    }

    #[test]
    fn values_round_trip() {
        round_trip(7u8);
        round_trip(-7i64);
        round_trip(u128::MAX);
        round_trip(1.5f64);
        round_trip(usize::MAX);
        round_trip(true);
        round_trip('é');
        round_trip(());
        round_trip("héllo".to_owned());
        round_trip(vec![1u32, 2, 3]);
        round_trip(vec![(); 5]);
        round_trip(Some(vec!["a".to_owned()]));
        round_trip(None::<u8>);
        round_trip(Ok::<u8, String>(1));
        round_trip(Err::<u8, String>("no".into()));
        round_trip(Box::new(3u16));
        round_trip([1u64, 2, 3]);
        round_trip((1u8, "x".to_owned(), (2i32, 3.0f32)));
        round_trip(Plain([1u32, 2]));
    }

    #[test]
    fn bad_bytes_decode_to_none() {
        assert_eq!(u64::decode(&mut [1u8, 2, 3].as_slice()), None);
        assert_eq!(bool::decode(&mut [2u8].as_slice()), None);
        assert_eq!(char::decode(&mut 0xD800u32.to_le_bytes().as_slice()), None);
        // A length longer than what is left.
        let mut lie = u64::MAX.to_le_bytes().to_vec();
        lie.push(1);
        assert_eq!(Vec::<u8>::decode(&mut lie.as_slice()), None);
        assert_eq!(String::decode(&mut lie.as_slice()), None);
        assert_eq!(Vec::<()>::decode(&mut lie.as_slice()), None);
        // Invalid UTF-8.
        let mut s = 1u64.to_le_bytes().to_vec();
        s.push(0xFF);
        assert_eq!(String::decode(&mut s.as_slice()), None);
        assert_eq!(Option::<u8>::decode(&mut [7u8].as_slice()), None);
    }
}
