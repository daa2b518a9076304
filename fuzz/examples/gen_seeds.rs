//! Writes a seed corpus for the `open_header` fuzz target (input format in its file docs):
//! the bare template of every kind, a few templates with a field patched, and the raw bytes of a
//! freshly created segment of every kind, so that raw mode starts from valid headers too.
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds [DIR]   # default fuzz/corpus/open_header
//! ```

use std::path::PathBuf;

use mpshm::prelude::*;
use mpshm::{Array, Lock, RLock, RawArray, RawValue, Value};

/// Offset of the `ready` word and of the type tag length in the header.
const READY: u16 = 16;
const TAG_LEN: u16 = 76;
/// Offset of the lock area: the pthread mutex's lock word, then its kind at +16.
const LOCK: u16 = 256;

/// Creates a segment under the given name and returns its handle, which unlinks it on drop.
type Maker = dyn Fn(&str) -> Result<Box<dyn std::any::Any>, mpshm::Error>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/open_header"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir)?;
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();

    // Bare templates: mode byte, flags byte (array length 4).
    for mode in 1..=6u8 {
        seeds.push((format!("template-{mode}"), vec![mode, 3]));
    }
    // Templates with one patch each: ready cleared, a long tag length, a lock word that looks
    // held by a dead owner, a file cut short.
    let patch = |mode: u8, off: u16, bytes: &[u8]| {
        let mut v = vec![mode, 0];
        v.extend_from_slice(&off.to_le_bytes());
        v.push(bytes.len() as u8);
        v.extend_from_slice(bytes);
        v
    };
    seeds.push(("ready-zero".into(), patch(1, READY, &[0; 4])));
    seeds.push(("tag-len".into(), patch(2, TAG_LEN, &[200, 0, 0, 0])));
    seeds.push((
        "owner-died".into(),
        patch(3, LOCK, &0x4000_0001u32.to_le_bytes()),
    ));
    seeds.push(("held-by-1".into(), patch(1, LOCK, &1u32.to_le_bytes())));
    seeds.push(("mutex-kind".into(), patch(5, LOCK + 16, &[0xff; 4])));
    seeds.push(("truncated".into(), vec![4, 0x80, 200, 0]));

    // Raw images of real segments.
    let name = format!("fz-seed-{}", std::process::id());
    let raw = |make: &Maker| {
        let handle = make(&name)?;
        let mut v = vec![0u8];
        v.extend(std::fs::read(format!("/dev/shm/{name}"))?);
        drop(handle); // the creator unlinks the name
        Ok::<_, Box<dyn std::error::Error>>(v)
    };
    seeds.push((
        "raw-value".into(),
        raw(&|n| Ok(Box::new(Value::<u64>::create(n, 42)?)))?,
    ));
    seeds.push((
        "raw-array".into(),
        raw(&|n| Ok(Box::new(Array::<u32>::from_slice(n, &[1, 2, 3])?)))?,
    ));
    seeds.push(("raw-lock".into(), raw(&|n| Ok(Box::new(Lock::create(n, ())?)))?));
    seeds.push((
        "raw-rlock".into(),
        raw(&|n| Ok(Box::new(RLock::create(n, ())?)))?,
    ));
    seeds.push((
        "raw-rawvalue".into(),
        raw(&|n| Ok(Box::new(RawValue::<f64>::create(n, 2.5)?)))?,
    ));
    seeds.push((
        "raw-rawarray".into(),
        raw(&|n| Ok(Box::new(RawArray::<u32>::create(n, 5)?)))?,
    ));

    for (file, bytes) in &seeds {
        std::fs::write(dir.join(file), bytes)?;
    }
    println!("wrote {} seeds to {}", seeds.len(), dir.display());
    Ok(())
}
