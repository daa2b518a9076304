//! Arbitrary bytes as the contents of a shared-memory object, opened as every mpshm kind: each
//! open must return `Ok` or `Err`, never panic, crash, hang or raise `SIGBUS`, and a handle that
//! opens must work.
//!
//! Input format (`examples/gen_seeds.rs` writes a seed corpus in it):
//!
//! - byte 0 picks the mode, modulo 7. `0` is raw: the rest of the input is the whole file.
//!   `1..=6` start from a valid segment that mpshm itself creates (and persists) — `Value<u64>`,
//!   `Array<u32>`, `Lock`, `RawValue<f64>`, `RLock`, `RawArray<u32>` — so that the fuzzer gets
//!   past the magic and ready checks into the deep validation and the lock.
//! - byte 1 (template modes): bits 0-3 are the array length minus one; if bit 7 is set, the next
//!   two bytes (little endian) are a new file length (`ftruncate`).
//! - then patches, until the input ends: a little-endian `u16` offset (modulo the file length), a
//!   length byte (modulo 32), and that many bytes, written over the file (cut at its end).
//!
//! Every object is named `fz-<pid>` and is removed after each run; a crashed run leaves at most
//! that one name behind.

#![no_main]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mpshm::prelude::*;
use mpshm::{Array, Lock, LockError, Options, RLock, RawArray, RawValue, Value};

fn name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| format!("fz-{}", std::process::id()))
}

fn path() -> String {
    format!("/dev/shm/{}", name())
}

fuzz_target!(|data: &[u8]| {
    let _ = std::fs::remove_file(path());
    if write_object(data).is_some() {
        exercise(name());
    }
    // Listing must cope with whatever the object holds.
    if let Ok(list) = mpshm::segments() {
        for seg in list {
            let _ = format!("{seg:?}");
        }
    }
    let _ = std::fs::remove_file(path());
});

/// Writes the object the input describes; `None` if it could not be made (not a finding).
fn write_object(data: &[u8]) -> Option<()> {
    let (&mode, rest) = data.split_first()?;
    let mode = mode % 7;
    if mode == 0 {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path())
            .ok()?;
        file.write_all_at(rest, 0).ok()?;
        return Some(());
    }
    let (&flags, mut rest) = rest.split_first().unwrap_or((&0, &[]));
    let len = usize::from(flags & 0x0f) + 1;
    make_template(mode, len)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path())
        .ok()?;
    if flags & 0x80 != 0 && rest.len() >= 2 {
        file.set_len(u64::from(u16::from_le_bytes([rest[0], rest[1]])))
            .ok()?;
        rest = &rest[2..];
    }
    patch(&file, rest)
}

/// Creates a valid segment of the kind `mode` names and leaves it in place.
fn make_template(mode: u8, len: usize) -> Option<()> {
    let n = name();
    match mode {
        1 => Value::<u64>::create(n, 0x0123_4567_89ab_cdef)
            .ok()?
            .persist(),
        2 => Array::<u32>::create(n, len).ok()?.persist(),
        3 => Lock::create(n, ()).ok()?.persist(),
        4 => RawValue::<f64>::create(n, 1.5).ok()?.persist(),
        5 => RLock::create(n, ()).ok()?.persist(),
        _ => RawArray::<u32>::create(n, len).ok()?.persist(),
    }
    Some(())
}

fn patch(file: &File, mut rest: &[u8]) -> Option<()> {
    let size = file.metadata().ok()?.len();
    while rest.len() >= 3 && size > 0 {
        let off = u64::from(u16::from_le_bytes([rest[0], rest[1]])) % size;
        let want = usize::from(rest[2] % 32);
        rest = &rest[3..];
        let room = usize::try_from(size - off).unwrap_or(usize::MAX);
        let n = want.min(rest.len()).min(room);
        file.write_all_at(&rest[..n], off).ok()?;
        rest = &rest[want.min(rest.len())..];
    }
    Some(())
}

/// Opens `name` as every kind and, where that succeeds, uses the handle. A garbage mutex type
/// word must be refused by mpshm (glibc would raise SIGILL or abort on some). Blocking calls run only after a `try_` call has shown the lock free: a garbage lock
/// word may legitimately look held.
fn exercise(name: &str) {
    let mut opts = Options::new();
    opts.open_timeout(Duration::ZERO);

    match Value::<u64>::open_with(name, &opts) {
        Ok(v) => {
            let _ = format!("{v:?}");
            let free = match v.try_lock() {
                Ok(mut g) | Err(LockError::OwnerDied(mut g)) => {
                    *g = g.wrapping_add(1);
                    g.mark_consistent();
                    true
                }
                Err(e) => {
                    let _ = e.to_string();
                    false
                }
            };
            if free {
                let _ = v.get();
                let _ = v.set(7);
                let _ = v.update(|x| *x += 1);
            }
            let _ = v.is_poisoned();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }

    match Array::<u32>::open_with(name, &opts) {
        Ok(a) => {
            let len = a.len();
            let free = match a.try_lock() {
                Ok(mut g) | Err(LockError::OwnerDied(mut g)) => {
                    assert_eq!(g.len(), len);
                    if let Some(first) = g.first_mut() {
                        *first ^= 1;
                    }
                    g.mark_consistent();
                    true
                }
                Err(e) => {
                    let _ = e.to_string();
                    false
                }
            };
            if free {
                let v = a.to_vec().unwrap_or_else(|e| match e {
                    mpshm::AccessError::OwnerDied(v) => v,
                    _ => Vec::new(),
                });
                assert!(v.is_empty() || v.len() == len);
                if len > 0 {
                    let _ = a.get(len - 1);
                    let _ = a.set(0, 9);
                }
                let _ = a.get(len);
                let _ = a.copy_from_slice(&vec![3; len]);
            }
            let _ = a.is_poisoned();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }

    match Lock::open_with(name, &opts) {
        Ok(l) => {
            if let Ok(g) | Err(LockError::OwnerDied(g)) = l.try_acquire() {
                g.mark_consistent();
                drop(g);
                // Free now, so a timed acquire must not wait the whole timeout.
                let _ = l.acquire_timeout(Duration::from_millis(1));
            }
            let _ = l.is_poisoned();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }

    match RLock::open_with(name, &opts) {
        Ok(l) => {
            if let Ok(outer) | Err(LockError::OwnerDied(outer)) = l.try_acquire() {
                let inner = l.try_acquire();
                drop(inner);
                outer.mark_consistent();
            }
            let _ = l.is_poisoned();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }

    match RawValue::<f64>::open_with(name, &opts) {
        Ok(v) => {
            let x = v.get();
            v.set(x * 2.0);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }

    match RawArray::<u32>::open_with(name, &opts) {
        Ok(a) => {
            let v = a.to_vec();
            assert_eq!(v.len(), a.len());
            let _ = a.get(v.len());
            let _ = a.set(0, 1);
            let _ = a.copy_from_slice(&v);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
