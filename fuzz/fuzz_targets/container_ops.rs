//! Arbitrary operation sequences on a real `SharedDict` and `SharedList` in `/dev/shm`, against
//! a model, and arbitrary bytes written over their shared memory: the input format and the
//! checks are in `../container_model.rs`, which `tests/props.rs` runs too.
//!
//! The segments are named `fc-<pid>-d` and `fc-<pid>-l`, created fresh each run and removed
//! when their handles drop.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[path = "../container_model.rs"]
mod container_model;

fn names() -> &'static (String, String) {
    static NAMES: OnceLock<(String, String)> = OnceLock::new();
    NAMES.get_or_init(|| {
        let pid = std::process::id();
        (format!("fc-{pid}-d"), format!("fc-{pid}-l"))
    })
}

fuzz_target!(|data: &[u8]| {
    let (dn, ln) = names();
    container_model::run(data, dn, ln);
});
