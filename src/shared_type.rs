//! [`SharedType`]: a name that every build agrees on, and a checked field layout, for the
//! plain-data types that cross between processes.
//!
//! A segment's header records the tag of the type it holds, the type's size and alignment, a
//! hash of its field layout and a short description of its fields; every opener compares them
//! with its own (`segment::validate`). `std::any::type_name` would be no such name: it changes
//! with the module path and may change with the compiler, so the same `#[repr(C)]` struct
//! defined in two crates would not match, and two structs of one size with their fields in
//! another order would. A `SharedType` names itself (`NAME`, chosen by the user, like a
//! protocol's message name) and lists its fields (`FIELDS`: name, offset, size and the field
//! type's own identity), which the [`shared_type!`](crate::shared_type) macro fills in from
//! the struct definition.
//!
//! The hashes are FNV-1a (64-bit) over the bytes of the names and the numbers, computed at
//! compile time; they only need to be the same in every build, not secret.

use std::borrow::Cow;
use std::fmt::Write;

use bytemuck::Pod;

/// A plain-data type with a stable name and, optionally, a described field layout: what
/// [`Value`](crate::Value), [`Array`](crate::Array), [`Queue`](crate::Queue),
/// [`SpscQueue`](crate::SpscQueue), the plain-data containers and typed pipe messages hold.
///
/// Two processes share a segment only when the type each asks for has the same
/// [`NAME`](Self::NAME) (or both give the same [`Options::type_tag`](crate::Options::type_tag)),
/// the same size and alignment, and, when the type lists its [`FIELDS`](Self::FIELDS), the
/// same fields at the same offsets with the same types; otherwise `open` fails with
/// [`Error::TypeMismatch`](crate::Error::TypeMismatch), which says which of the three differs.
/// The crate implements it for the integer and float types (named `u8`, `i64`, `f32`, …) and
/// for arrays of shared types (`[T; N]`, named after `T`).
///
/// Implement it with [`shared_type!`](crate::shared_type) around the struct definition, which
/// lists the fields for you:
///
/// ```
/// use mpshm::bytemuck::{Pod, Zeroable};
///
/// mpshm::shared_type! {
///     #[name = "my_app::Sample"]
///     #[derive(Clone, Copy, Debug, Pod, Zeroable)]
///     #[bytemuck(crate = "mpshm::bytemuck")]
///     #[repr(C)]
///     pub struct Sample {
///         pub seq: u64,
///         pub value: f64,
///     }
/// }
///
/// use mpshm::SharedType;
/// assert_eq!(Sample::NAME, "my_app::Sample");
/// assert_eq!(Sample::FIELDS.len(), 2);
/// ```
///
/// or by hand, with [`Field::of`] for each field (or no `FIELDS` at all: then only the name,
/// size and alignment are checked):
///
/// ```
/// use mpshm::{Field, SharedType};
/// use mpshm::bytemuck::{Pod, Zeroable};
/// use std::mem::offset_of;
///
/// #[derive(Clone, Copy, Pod, Zeroable)]
/// #[bytemuck(crate = "mpshm::bytemuck")]
/// #[repr(C)]
/// struct Point {
///     x: f32,
///     y: f32,
/// }
///
/// impl SharedType for Point {
///     const NAME: &'static str = "geometry::Point";
///     const FIELDS: &'static [Field] = &[
///         Field::of::<f32>("x", offset_of!(Point, x)),
///         Field::of::<f32>("y", offset_of!(Point, y)),
///     ];
/// }
/// ```
///
/// `Pod` comes from the `bytemuck` this crate re-exports ([`mpshm::bytemuck`](crate::bytemuck)),
/// so that the derive and the trait are one version: the derive then needs
/// `#[bytemuck(crate = "mpshm::bytemuck")]` (or a `bytemuck` dependency of the same version in
/// your own manifest).
pub trait SharedType: Pod {
    /// The type's name, the same in every build that shares it: a path of your own choosing
    /// (`"my_app::Sample"`), with a version in it if the type may change (`"Sample@2"`).
    /// Cut to 64 bytes.
    const NAME: &'static str;

    /// The fields in declaration order, each with its offset, size and type; empty when the
    /// type does not describe them (then only its name, size and alignment are checked).
    const FIELDS: &'static [Field] = &[];

    /// A hash of the size, alignment and fields: what an opener compares besides the name.
    #[doc(hidden)]
    const LAYOUT: u64 = layout_hash(
        std::mem::size_of::<Self>(),
        std::mem::align_of::<Self>(),
        Self::FIELDS,
    );

    /// A hash of the name and the layout: what a field of this type, or a typed pipe message,
    /// contributes.
    #[doc(hidden)]
    const IDENTITY: u64 = mix(str_hash(Self::NAME), Self::LAYOUT);

    /// The tag written into a segment: the name (an array's is built from its element's).
    #[doc(hidden)]
    fn tag() -> Cow<'static, str> {
        Cow::Borrowed(Self::NAME)
    }

    /// The fields as error messages show them: `name@offset+size`, in order.
    #[doc(hidden)]
    fn fields() -> String {
        describe(Self::FIELDS)
    }
}

/// One field of a [`SharedType`]: its name, byte offset and size, and the identity of its
/// type. Made with [`Field::of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    name: &'static str,
    offset: usize,
    size: usize,
    ty: u64,
}

impl Field {
    /// The field `name` of type `F` at byte `offset` (`std::mem::offset_of!`).
    pub const fn of<F: SharedType>(name: &'static str, offset: usize) -> Field {
        Field {
            name,
            offset,
            size: std::mem::size_of::<F>(),
            ty: F::IDENTITY,
        }
    }

    /// The field's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Its byte offset in the type.
    pub const fn offset(&self) -> usize {
        self.offset
    }

    /// Its size in bytes.
    pub const fn size(&self) -> usize {
        self.size
    }
}

/// Implements [`SharedType`] for the `#[repr(C)]` struct it wraps, naming it with the
/// attribute `#[name = ".."]` (anywhere among its attributes) and listing every field (name,
/// offset, size and type) in [`FIELDS`](SharedType::FIELDS). The struct is emitted as written,
/// with its other attributes; each field's type must itself be a [`SharedType`] (the numbers,
/// arrays of them, or another such struct). Derive `Pod` and `Zeroable` yourself, as the
/// example on [`SharedType`] does. A plain `macro_rules!` macro: it implements a trait, it adds
/// no methods.
///
/// ```
/// use mpshm::bytemuck::{Pod, Zeroable};
///
/// mpshm::shared_type! {
///     #[name = "telemetry::Reading@1"]
///     #[derive(Clone, Copy, Pod, Zeroable)]
///     #[bytemuck(crate = "mpshm::bytemuck")]
///     #[repr(C)]
///     struct Reading {
///         at_ns: u64,
///         channel: [u8; 4],
///         value: f32,
///     }
/// }
/// ```
#[macro_export]
macro_rules! shared_type {
    // Takes the attributes one by one, keeping all but `#[name = ".."]`.
    (@attrs [$($attrs:tt)*] [] #[name = $tag:literal] $($rest:tt)*) => {
        $crate::shared_type!(@attrs [$($attrs)*] [$tag] $($rest)*);
    };
    (@attrs [$($attrs:tt)*] [$($tag:tt)*] #[$attr:meta] $($rest:tt)*) => {
        $crate::shared_type!(@attrs [$($attrs)* #[$attr]] [$($tag)*] $($rest)*);
    };
    (
        @attrs [$($attrs:tt)*] [$tag:literal]
        $vis:vis struct $ty:ident {
            $($(#[$fattr:meta])* $fvis:vis $field:ident : $fty:ty),* $(,)?
        }
    ) => {
        $($attrs)*
        $vis struct $ty {
            $($(#[$fattr])* $fvis $field: $fty),*
        }

        impl $crate::SharedType for $ty {
            const NAME: &'static str = $tag;
            const FIELDS: &'static [$crate::Field] = &[
                $($crate::Field::of::<$fty>(
                    ::core::stringify!($field),
                    ::core::mem::offset_of!($ty, $field),
                )),*
            ];
        }
    };
    (@attrs [$($attrs:tt)*] [] $($rest:tt)*) => {
        ::core::compile_error!(
            "shared_type! needs the type's name: #[name = \"my_app::Type\"] among its attributes"
        );
    };
    ($($input:tt)*) => {
        $crate::shared_type!(@attrs [] [] $($input)*);
    };
}

macro_rules! numbers {
    ($($t:ty),*) => {$(
        impl SharedType for $t {
            const NAME: &'static str = stringify!($t);
        }
    )*};
}

numbers!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64
);

/// An array of a shared type: named `[T; N]` after its element, whose identity its own
/// includes.
impl<T: SharedType, const N: usize> SharedType for [T; N] {
    const NAME: &'static str = "array";
    const LAYOUT: u64 = mix(mix(str_hash("array"), T::IDENTITY), N as u64);
    const IDENTITY: u64 = Self::LAYOUT;

    fn tag() -> Cow<'static, str> {
        Cow::Owned(format!("[{}; {N}]", T::tag()))
    }

    fn fields() -> String {
        T::fields()
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

const fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    h
}

const fn str_hash(s: &str) -> u64 {
    fnv(FNV_OFFSET, s.as_bytes())
}

/// Folds `v` into the hash `h`.
pub(crate) const fn mix(h: u64, v: u64) -> u64 {
    fnv(h, &v.to_le_bytes())
}

const fn layout_hash(size: usize, align: usize, fields: &[Field]) -> u64 {
    let mut h = mix(mix(FNV_OFFSET, size as u64), align as u64);
    let mut i = 0;
    while i < fields.len() {
        let f = &fields[i];
        h = fnv(h, f.name.as_bytes());
        h = mix(mix(mix(h, f.offset as u64), f.size as u64), f.ty);
        i += 1;
    }
    h
}

fn describe(fields: &[Field]) -> String {
    let mut s = String::new();
    for (i, f) in fields.iter().enumerate() {
        let sep = if i == 0 { "" } else { " " };
        let _ = write!(s, "{sep}{}@{}+{}", f.name, f.offset, f.size);
    }
    s
}

/// The identity of a pipe message of type `T`, in the 32 bits a chunk header has room for;
/// never 0 (which marks an untyped message).
pub(crate) const fn message_id<T: SharedType>() -> u32 {
    let h = T::IDENTITY;
    let folded = (h ^ (h >> 32)) as u32;
    if folded == 0 { 1 } else { folded }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct A {
        x: u32,
        y: u32,
    }

    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct B {
        y: u32,
        x: u32,
    }

    impl SharedType for A {
        const NAME: &'static str = "t::S";
        const FIELDS: &'static [Field] = &[
            Field::of::<u32>("x", std::mem::offset_of!(A, x)),
            Field::of::<u32>("y", std::mem::offset_of!(A, y)),
        ];
    }

    impl SharedType for B {
        const NAME: &'static str = "t::S";
        const FIELDS: &'static [Field] = &[
            Field::of::<u32>("y", std::mem::offset_of!(B, y)),
            Field::of::<u32>("x", std::mem::offset_of!(B, x)),
        ];
    }

    #[test]
    fn reordered_fields_have_another_layout() {
        assert_ne!(A::LAYOUT, B::LAYOUT);
        assert_eq!(A::fields(), "x@0+4 y@4+4");
        assert_eq!(B::fields(), "y@0+4 x@4+4");
    }

    #[test]
    fn numbers_of_one_size_differ_by_name_only() {
        assert_eq!(u32::LAYOUT, i32::LAYOUT);
        assert_ne!(u32::IDENTITY, i32::IDENTITY);
        assert_ne!(message_id::<u32>(), message_id::<i32>());
    }

    #[test]
    fn arrays_are_named_after_their_elements() {
        assert_eq!(<[u8; 4]>::tag(), "[u8; 4]");
        assert_ne!(<[u8; 4]>::LAYOUT, <[i8; 4]>::LAYOUT);
        assert_ne!(<[u8; 4]>::LAYOUT, <[u8; 5]>::LAYOUT);
        assert_eq!(<[A; 2]>::fields(), "x@0+4 y@4+4");
    }
}
