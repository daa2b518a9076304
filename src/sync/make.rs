//! The one way a primitive of the synchronisation family gets its segment: created, opened or
//! either (`map_segment`), with its geometry in the header's parameters, checked by an opener
//! against the segment's size; and the error for a handle that found no free record.

use crate::attach::MAX_ATTACHED;
use crate::error::Error;
use crate::segment::{Kind, Options, Segment, Spec};

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

/// Attachment records in a primitive's table: how many handles (across all processes) may have
/// it open at once. Each open handle holds one; `open` fails with `Error::InUse` when none is
/// free.
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

/// Creates or opens (as `how` says) the segment of a primitive of `kind` whose payload is
/// `bytes(params)` bytes (`None`: parameters that make no sense), running `init` on a segment it
/// creates (before it is published; an error there drops and unlinks it). An opener takes the
/// creator's parameters from the header and checks them with the same `bytes`.
pub(crate) fn map_segment(
    name: &str,
    how: How,
    kind: Kind,
    params: [u64; 4],
    opts: &Options,
    bytes: impl Fn([u64; 4]) -> Option<usize>,
    init: impl Fn(&Segment) -> std::io::Result<()>,
) -> Result<Segment, Error> {
    let mut spec = Spec {
        kind,
        elem_size: 1,
        elem_align: 64,
        count: None,
        tag: kind.to_string(),
        params,
    };
    let check = |seg: Segment| {
        if bytes(seg.params()) == Some(seg.count()) {
            Ok(seg)
        } else {
            Err(Error::Corrupt {
                name: seg.name().to_owned(),
                reason: format!(
                    "{kind} parameters {:?} do not match its size {}",
                    seg.params(),
                    seg.count()
                ),
            })
        }
    };
    let open = spec.clone();
    if how != How::Open {
        spec.count = Some(bytes(params).ok_or(Error::InvalidLength {
            len: 0,
            reason: "the parameters make no sense for this kind",
        })?);
    }
    let mut last = None;
    // The name can vanish between a failed create and the open (its creator dropped it): then
    // try again, a bounded number of times.
    for _ in 0..16 {
        if how != How::Open {
            let mut made = Ok(());
            match Segment::create(name, &spec, opts, |seg| made = init(seg)) {
                Err(Error::AlreadyExists { .. }) if how == How::OpenOrCreate => {}
                // A mutex that would not initialise: the segment is dropped (and unlinked).
                created => {
                    return created.and_then(|seg| {
                        made.map_err(Error::Io)?;
                        check(seg)
                    });
                }
            }
        }
        match Segment::open(name, &open, opts) {
            Err(e @ Error::NotFound { .. }) if how == How::OpenOrCreate => last = Some(e),
            opened => return opened.and_then(check),
        }
    }
    Err(last.unwrap_or(Error::NotFound {
        name: name.to_owned(),
    }))
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
