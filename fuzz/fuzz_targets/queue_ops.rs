//! Arbitrary operation sequences on a real `Queue` in `/dev/shm`, against a `VecDeque` model,
//! checking Python's `multiprocessing.Queue` semantics: FIFO order, `Full` at capacity, `Empty`
//! when empty, and after `close` every put fails (handing the value back) while gets drain what
//! is left and then fail.
//!
//! Input format:
//!
//! - byte 0: bit 0 picks the message type (`[u8; 16]` or `u64`); bits 1-3 are the capacity minus
//!   one (1 to 8).
//! - then one byte per operation, modulo 12 (see `step`); operations that would block forever
//!   (a blocking `put` on a full open queue, a blocking `get` on an empty open one) become their
//!   `try_` forms.
//!
//! The queue is named `fq-<pid>`, created fresh each run and removed when its handles drop; a
//! crashed run leaves at most that one name behind.

#![no_main]

use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mpshm::prelude::*;
use mpshm::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, Queue, TryGetError, TryPutError,
};

fn name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| format!("fq-{}", std::process::id()))
}

/// Runs `ops` on a fresh `Queue<$t>` of `cap` slots; `msg` makes the n-th message. (A macro, not a
/// generic function, so that this crate needs no `bytemuck` for the `Pod` bound.)
macro_rules! run {
    ($t:ty, $cap:expr, $ops:expr, $msg:expr) => {{
        let (cap, ops, msg): (usize, &[u8], fn(u64) -> $t) = ($cap, $ops, $msg);
        type T = $t;
        let creator = Queue::<T>::create(name(), cap).expect("create");
        assert_eq!(creator.capacity(), cap);
        // Operations go through either the creating handle or one opened by name.
        let opened = Queue::<T>::open(name()).expect("open");
        let mut model: VecDeque<T> = VecDeque::new();
        let mut closed = false;
        let mut next = 0u64;
        let mut via_opened = false;
        for &op in ops {
            let q = if via_opened { &opened } else { &creator };
            let v = msg(next);
            let full = model.len() == cap;
            match op % 12 {
                // put: blocks only on a full open queue, so only then does it become try_put.
                0 if closed || !full => match q.put(v) {
                    Ok(()) => {
                        assert!(!closed && !full);
                        model.push_back(v);
                    }
                    Err(PutError::Closed(back)) => assert!(closed && back == v),
                    Err(e) => panic!("put: {e:?}"),
                },
                0 | 1 => match q.try_put(v) {
                    Ok(()) => {
                        assert!(!closed && !full);
                        model.push_back(v);
                    }
                    Err(TryPutError::Full(back)) => assert!(!closed && full && back == v),
                    Err(TryPutError::Closed(back)) => assert!(closed && back == v),
                    Err(e) => panic!("try_put: {e:?}"),
                },
                2 => match q.put_timeout(v, Duration::ZERO) {
                    Ok(()) => {
                        assert!(!closed && !full);
                        model.push_back(v);
                    }
                    Err(PutTimeoutError::Timeout(back)) => assert!(!closed && full && back == v),
                    Err(PutTimeoutError::Closed(back)) => assert!(closed && back == v),
                    Err(e) => panic!("put_timeout: {e:?}"),
                },
                // get: blocks only on an empty open queue.
                3 if closed || !model.is_empty() => match q.get() {
                    Ok(got) => assert_eq!(Some(got), model.pop_front()),
                    Err(GetError::Closed) => assert!(closed && model.is_empty()),
                    Err(e) => panic!("get: {e:?}"),
                },
                3 | 4 => match q.try_get() {
                    Ok(got) => assert_eq!(Some(got), model.pop_front()),
                    Err(TryGetError::Empty) => assert!(!closed && model.is_empty()),
                    Err(TryGetError::Closed) => assert!(closed && model.is_empty()),
                    Err(e) => panic!("try_get: {e:?}"),
                },
                5 => match q.get_timeout(Duration::ZERO) {
                    Ok(got) => assert_eq!(Some(got), model.pop_front()),
                    Err(GetTimeoutError::Timeout) => assert!(!closed && model.is_empty()),
                    Err(GetTimeoutError::Closed) => assert!(closed && model.is_empty()),
                    Err(e) => panic!("get_timeout: {e:?}"),
                },
                6 => {
                    q.close();
                    closed = true;
                }
                7 => via_opened = !via_opened,
                8 => q.set_spin(u32::from(op >> 4)),
                // 9..=11: queries only (checked below after every step).
                _ => {}
            }
            next += 1;
            for q in [&creator, &opened] {
                assert_eq!(q.len(), model.len());
                assert_eq!(q.is_empty(), model.is_empty());
                assert_eq!(q.is_full(), model.len() == cap);
                assert_eq!(q.is_closed(), closed);
                assert_eq!(q.lost(), 0);
            }
        }
        // Python drains a closed queue: whatever is left comes out in order, then Closed.
        creator.close();
        for want in model {
            assert_eq!(opened.try_get(), Ok(want));
        }
        assert_eq!(opened.try_get(), Err(TryGetError::Closed));
        assert_eq!(opened.get(), Err(GetError::Closed));
    }};
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, ops)) = data.split_first() else {
        return;
    };
    let cap = usize::from(head >> 1 & 7) + 1;
    // A name left by a crashed earlier run with our pid.
    let _ = std::fs::remove_file(format!("/dev/shm/{}", name()));
    if head & 1 == 0 {
        run!([u8; 16], cap, ops, |n: u64| {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&n.to_le_bytes());
            b[8..].copy_from_slice(&(!n).to_le_bytes());
            b
        });
    } else {
        run!(u64, cap, ops, |n: u64| n
            .wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
    assert!(
        !std::path::Path::new(&format!("/dev/shm/{}", name())).exists(),
        "the queue's name outlived its handles"
    );
});
