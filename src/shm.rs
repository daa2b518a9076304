//! [`Shm`]: the one way every handle is created and opened, and the one path its segment takes
//! (`make`): create exclusively, open, or either; a uniquely named creation; the retry when a
//! name vanishes between a failed create and the open.
//!
//! A handle type implements four hidden methods in terms of crate-internal types (what its
//! segment looks like, how a fresh one is initialised, how a mapped one becomes the handle,
//! and where its segment is) and gets the whole public API from the provided methods. The
//! internal types are public inside private modules, so no one outside the crate can name
//! them: the trait is sealed in effect.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::Error;
use crate::segment::{Options, Segment, Spec};

/// How a constructor gets its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum How {
    /// Create it exclusively.
    Create,
    /// Open an existing one.
    Open,
    /// Open it if it exists, else create it.
    OpenOrCreate,
}

/// Whether a handle's segment was just created by this call or opened. Public inside a private
/// module: only [`Shm`]'s hidden methods name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Made {
    /// This call created it (and its handle removes the name when dropped).
    Created,
    /// It existed; this call opened it.
    Opened,
}

/// A handle on a named shared-memory object: every handle type creates and opens its segment
/// through this trait. Bring it into scope with `use mpshm::prelude::*;` (or `use mpshm::Shm;`).
///
/// `Init` is what creation needs besides the name, and each handle documents its own: the
/// initial value of a [`Value`](crate::Value), the length of an [`Array`](crate::Array), the
/// capacity of a [`Queue`](crate::Queue), the permits of a [`Semaphore`](crate::Semaphore),
/// `()` for a [`Lock`](crate::Lock). Every constructor has a `_with` form that takes
/// [`Options`] (permission bits, how long `open` waits for a creator, the type tag, how many
/// processes a queue or the synchronisation family records).
///
/// ```
/// use mpshm::prelude::*;
///
/// let name = format!("doc-shm-{}", std::process::id());
/// let counter = mpshm::Value::<u64>::create(&name, 0)?;           // exclusively
/// let other = mpshm::Value::<u64>::open(&name)?;                   // it must exist
/// let third = mpshm::Value::<u64>::open_or_create(&name, 7)?;      // exists: opened as is
/// assert_eq!(third.get().expect("lock"), 0);
/// let scratch = mpshm::Value::<u64>::create_unique(1)?;            // a fresh name
/// assert!(scratch.name().starts_with("mpu"));
/// # drop((counter, other));
/// # Ok::<(), mpshm::Error>(())
/// ```
///
/// The handle that created a segment removes its name when dropped (mappings elsewhere stay
/// valid) unless [`persist`](Self::persist) was called; only that handle, and only in the
/// process that created it.
pub trait Shm: Sized {
    /// What creation needs besides the name (see each implementation).
    type Init;

    /// The segment this handle asks for: created with `init`, or opened (`None`).
    #[doc(hidden)]
    fn spec(init: Option<&Self::Init>, opts: &Options) -> Result<Spec, Error>;

    /// Writes the initial contents of a segment this call created, before it is published.
    #[doc(hidden)]
    fn init(seg: &Segment, init: &Self::Init) -> Result<(), Error> {
        let _ = (seg, init);
        Ok(())
    }

    /// The handle on a mapped segment, after checking what the header's checks cannot know
    /// (the kind's parameters against the size; against `init` when the caller gave one).
    #[doc(hidden)]
    fn wrap(
        seg: Segment,
        made: Made,
        init: Option<&Self::Init>,
        opts: &Options,
    ) -> Result<Self, Error>;

    /// The handle's segment.
    #[doc(hidden)]
    fn segment(&self) -> &Segment;

    /// Creates the object `name` exclusively, holding `init`.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] when the name is taken; [`Error::InvalidName`];
    /// [`Error::InvalidLength`] for an `Init` the handle refuses (each says which);
    /// [`Error::InvalidMode`]; [`Error::NoSpace`]; [`Error::Io`].
    fn create(name: &str, init: Self::Init) -> Result<Self, Error> {
        Self::create_with(name, init, &Options::new())
    }

    /// [`create`](Self::create) with options.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    fn create_with(name: &str, init: Self::Init, opts: &Options) -> Result<Self, Error> {
        attach(name, How::Create, Some(init), opts)
    }

    /// Opens the existing object `name`, checking that it is what this handle holds.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`]; [`Error::KindMismatch`] when it is another kind of object;
    /// [`Error::TypeMismatch`] when it holds another type (another name, size or field
    /// layout); [`Error::LayoutMismatch`] when its shape does not fit this handle;
    /// [`Error::InUse`] when its records or ends are all taken; [`Error::NotReady`] when its
    /// creator did not finish in time; [`Error::IncompatibleVersion`]; [`Error::Corrupt`];
    /// [`Error::NotRegular`]; [`Error::InvalidName`]; [`Error::Io`].
    fn open(name: &str) -> Result<Self, Error> {
        Self::open_with(name, &Options::new())
    }

    /// [`open`](Self::open) with options.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    fn open_with(name: &str, opts: &Options) -> Result<Self, Error> {
        attach(name, How::Open, None, opts)
    }

    /// Opens `name` if it exists, or creates it holding `init`. An existing object must have
    /// the shape `init` asks for where the handle says so (an array's length, a queue's
    /// capacity), not its contents.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create) and [`open`](Self::open).
    fn open_or_create(name: &str, init: Self::Init) -> Result<Self, Error> {
        Self::open_or_create_with(name, init, &Options::new())
    }

    /// [`open_or_create`](Self::open_or_create) with options.
    ///
    /// # Errors
    ///
    /// As [`open_or_create`](Self::open_or_create).
    fn open_or_create_with(name: &str, init: Self::Init, opts: &Options) -> Result<Self, Error> {
        attach(name, How::OpenOrCreate, Some(init), opts)
    }

    /// Creates the object under a fresh name made for it (Python's `SharedMemory()` without a
    /// name): `mpu`, this process's id and a counter and random number, 30 bytes at most.
    /// [`name`](Self::name) tells it, for handing to other processes.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    fn create_unique(init: Self::Init) -> Result<Self, Error> {
        Self::create_unique_with(init, &Options::new())
    }

    /// [`create_unique`](Self::create_unique) with options.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    fn create_unique_with(init: Self::Init, opts: &Options) -> Result<Self, Error> {
        let spec = Self::spec(Some(&init), opts)?;
        unique(|name| {
            make(
                name,
                How::Create,
                &spec,
                opts,
                |seg| Self::init(seg, &init),
                |seg, made| Self::wrap(seg, made, Some(&init), opts),
            )
        })
    }

    /// The object's name, without a leading `/`.
    fn name(&self) -> &str {
        self.segment().name()
    }

    /// Keeps the name when this creating handle is dropped, so that others can still open it;
    /// remove it later with [`unlink`](crate::unlink).
    fn persist(&self) {
        self.segment().persist();
    }
}

/// The one constructor path of the handles: `H`'s spec, initialisation and wrapping through
/// [`make`].
fn attach<H: Shm>(name: &str, how: How, init: Option<H::Init>, opts: &Options) -> Result<H, Error> {
    let spec = H::spec(init.as_ref(), opts)?;
    make(
        name,
        how,
        &spec,
        opts,
        |seg| init.as_ref().map_or(Ok(()), |init| H::init(seg, init)),
        |seg, made| H::wrap(seg, made, init.as_ref(), opts),
    )
}

/// Creates or opens (as `how` says) the segment `spec` describes, running `init` on one it
/// creates (before it is published; an error there removes it) and `wrap` on the result.
pub(crate) fn make<R>(
    name: &str,
    how: How,
    spec: &Spec,
    opts: &Options,
    init: impl Fn(&Segment) -> Result<(), Error>,
    mut wrap: impl FnMut(Segment, Made) -> Result<R, Error>,
) -> Result<R, Error> {
    let mut last = None;
    // The name can vanish between a failed create and the open (its creator dropped it): then
    // try again, a bounded number of times.
    for _ in 0..16 {
        if how != How::Open {
            match Segment::create(name, spec, opts, &init) {
                Err(Error::AlreadyExists { .. }) if how == How::OpenOrCreate => {}
                created => return wrap(created?, Made::Created),
            }
        }
        match Segment::open(name, spec, opts) {
            Err(e @ Error::NotFound { .. }) if how == How::OpenOrCreate => last = Some(e),
            opened => return wrap(opened?, Made::Opened),
        }
    }
    Err(last.unwrap_or(Error::NotFound {
        name: name.to_owned(),
    }))
}

/// Runs `create` under fresh names until one is not taken (64 tries).
pub(crate) fn unique<R>(mut create: impl FnMut(&str) -> Result<R, Error>) -> Result<R, Error> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let pid = std::process::id();
    let mut last = None;
    for _ in 0..64 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let random = std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            (pid, n, std::time::Instant::now()),
        ) as u32;
        // At most 3 + 10 + 1 + 8 + 1 + 8 = 31 bytes for a pid of ten digits; pids are at
        // most 2^22 (seven digits) on Linux, which makes it 28.
        let name = format!("mpu{pid}-{n:x}-{random:x}");
        match create(&name) {
            Err(e @ Error::AlreadyExists { .. }) => last = Some(e),
            other => return other,
        }
    }
    Err(last.expect("64 tries"))
}

/// The traits a user of mpshm needs in scope: `use mpshm::prelude::*;`.
pub mod prelude {
    pub use crate::SharedType;
    pub use crate::shm::Shm;
    #[cfg(not(loom))]
    pub use crate::wait::Waitable;
}
