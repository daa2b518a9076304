//! What the primitives of the synchronisation family share in how they get their segment
//! (through [`Shm`](crate::Shm)): their geometry in the header's parameters, checked by an
//! opener against the segment's size; how many records their table has; and the error for a
//! handle that found no free record.

use crate::attach::MAX_ATTACHED;
use crate::error::Error;
use crate::segment::{Identity, Kind, Options, Segment, Spec};

/// Attachment records in a primitive's table unless `Options::max_attached` says otherwise:
/// how many handles (across all processes) may have it open at once. Each open handle holds
/// one; `open` fails with `Error::InUse` when none is free.
pub(crate) const RECORDS: usize = 256;

/// The most entries of another table (a condition's waiter slots) an opener accepts in a header.
pub(crate) const MAX_ENTRIES: u64 = 1 << 16;

/// Whether `n`, read from a header, is an acceptable number of waiter slots.
pub(crate) fn entries_ok(n: u64) -> bool {
    (1..=MAX_ENTRIES).contains(&n)
}

/// Whether `n`, read from a header, is an acceptable number of attachment records.
pub(crate) fn records_ok(n: u64) -> bool {
    (1..=MAX_ATTACHED as u64).contains(&n)
}

/// The records a primitive created with `opts` keeps.
pub(crate) fn records(opts: &Options) -> Result<usize, Error> {
    let n = opts.max_attached.unwrap_or(RECORDS);
    if records_ok(n as u64) {
        Ok(n)
    } else {
        Err(Error::InvalidLength {
            len: n,
            reason: "a primitive records 1 to 1024 open handles: see Options::max_attached",
        })
    }
}

/// The segment of a primitive of `kind` with these parameters and a payload of `bytes` (a
/// creator's; an opener takes the creator's), on a 64-byte line.
pub(crate) fn spec(kind: Kind, params: [u64; 4], bytes: usize, opts: &Options) -> Spec {
    Spec {
        kind,
        elem_size: 1,
        elem_align: 64,
        count: bytes,
        ty: Identity::untyped(&kind.to_string(), opts),
        params,
    }
}

/// Checks that an opened segment's parameters give its size (`bytes`: `None` for parameters
/// that make no sense).
pub(crate) fn checked(
    seg: Segment,
    bytes: impl Fn([u64; 4]) -> Option<usize>,
) -> Result<Segment, Error> {
    if bytes(seg.params()) == Some(seg.count()) {
        Ok(seg)
    } else {
        Err(Error::Corrupt {
            name: seg.name().to_owned(),
            reason: format!(
                "{} parameters {:?} do not match its size {}",
                seg.kind(),
                seg.params(),
                seg.count()
            ),
        })
    }
}

/// The error for a handle that found no free record in its primitive's table.
pub(crate) fn table_full(seg: &Segment, records: usize) -> Error {
    Error::InUse {
        name: seg.name().to_owned(),
        reason: if records == RECORDS {
            "all 256 of its process records are taken (each open handle holds one)"
        } else {
            "all of its process records are taken (each open handle holds one)"
        },
    }
}
