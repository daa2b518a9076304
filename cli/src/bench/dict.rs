//! The shared dict: set + get of small keys from two processes on one dict, beside Python's
//! `Manager().dict()` doing the same.
//!
//! Each process runs `N` rounds of `insert(k, i)` then `get(&k)`, with `k = i % 64` shared by
//! both, so writers contend for the lock while reads take the lock-free path; the figure is the
//! `4N` operations over the slower process (the two-process runner of `counter.rs`). Rows:
//! plain-data keys and values (`SharedDict<u64, u64>`) and `String` keys through postcard
//! (`SerdeDict<String, u64>`). Python's every operation is a round trip to the manager's
//! server process.

use mpshm::prelude::*;
use mpshm::{SerdeDict, SharedDict};

use super::counter::two_processes;
use super::{Arg, Case, Ctx, Refs, Sample, Side, Unit};
use crate::kit::Res;

/// Rounds per process in one run (times `--scale`).
const N: u64 = 100_000;
/// Rounds per process in one Python run.
const PY_N: u64 = 1_000;
/// Keys touched, shared by both processes.
const KEYS: u64 = 64;

pub fn cases(python: bool) -> Vec<Case> {
    let section = format!("dict, set + get of {KEYS} keys from 2 processes");
    let unit = Unit::Rate { bytes: None };
    let refs = || Refs {
        python: python.then(|| "dict/python".into()),
        ..Refs::default()
    };
    let mut out = vec![
        Case::new(
            "dict",
            &section,
            "dict/plain",
            "SharedDict<u64, u64> (operations)",
            Side::Mpshm,
            unit,
            refs(),
            |ctx| dict(ctx, "plain"),
        ),
        Case::new(
            "dict",
            &section,
            "dict/serde",
            "SerdeDict<String, u64> (operations)",
            Side::Mpshm,
            unit,
            refs(),
            |ctx| dict(ctx, "serde"),
        ),
    ];
    if python {
        out.push(Case::python(
            "dict",
            &section,
            "dict/python",
            "Python Manager().dict() (operations)",
            unit,
            "dict".into(),
            Arg::Count(PY_N),
        ));
    }
    out
}

/// The dict of one run, as created or opened by one process.
enum Dict {
    Plain(SharedDict<u64, u64>),
    Serde(SerdeDict<String, u64>),
}

impl Dict {
    fn create(row: &str, name: &str) -> Res<Dict> {
        Ok(match row {
            "plain" => Dict::Plain(SharedDict::create(name, KEYS as usize)?),
            "serde" => Dict::Serde(SerdeDict::create(name, (KEYS as usize, 24))?),
            _ => return Err(format!("no dict {row:?}").into()),
        })
    }

    fn open(row: &str, name: &str) -> Res<Dict> {
        Ok(match row {
            "plain" => Dict::Plain(SharedDict::open(name)?),
            "serde" => Dict::Serde(SerdeDict::open(name)?),
            _ => return Err(format!("no dict {row:?}").into()),
        })
    }

    /// `n` rounds of set + get.
    fn rounds(&self, n: u64) -> Res<()> {
        match self {
            Dict::Plain(d) => {
                for i in 0..n {
                    let k = i % KEYS;
                    d.insert(k, i)?;
                    d.get(&k)?.ok_or("a key went missing")?;
                }
            }
            Dict::Serde(d) => {
                let keys: Vec<String> = (0..KEYS).map(|k| format!("key{k}")).collect();
                for i in 0..n {
                    let k = &keys[(i % KEYS) as usize];
                    d.insert(k.clone(), i)?;
                    d.get(k)?.ok_or("a key went missing")?;
                }
            }
        }
        Ok(())
    }

    fn len(&self) -> usize {
        match self {
            Dict::Plain(d) => d.len(),
            Dict::Serde(d) => d.len(),
        }
    }
}

fn dict(ctx: &mut Ctx, row: &str) -> Res<Sample> {
    let n = ctx.count(N);
    let name = ctx.name();
    let d = Dict::create(row, &name)?;
    let sample = two_processes(ctx, &format!("dict {row} {n} {name}"), 4 * n, || {
        d.rounds(n)
    })?;
    if d.len() != KEYS.min(n) as usize {
        return Err(format!("the dict has {} keys, expected {}", d.len(), KEYS.min(n)).into());
    }
    Ok(sample)
}

/// Runs a dict child's role; `None` if `words` is none of them.
pub fn child(words: &[&str]) -> Option<Res<()>> {
    Some(match *words {
        ["dict", row, n, name, line] => (|| {
            let d = Dict::open(row, name)?;
            let n: u64 = n.parse()?;
            super::shm::StartLine::open(line)?.run(1, || Ok(()), || d.rounds(n))
        })(),
        _ => return None,
    })
}
