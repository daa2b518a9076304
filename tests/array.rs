//! `Array` and `RawArray` across real processes.

mod common;

use std::time::Duration;

use common::{Child, name};
use mpshm::prelude::*;
use mpshm::{AccessError, Array, Error, LockError, RawArray};

fn main() {
    common::run(
        tests![
            child_negates_an_array,
            open_learns_the_length,
            bad_lengths_are_refused,
            index_and_length_errors,
            wrong_element_type_is_refused,
            guard_is_exclusive_across_processes,
            killed_holder_poisons_the_array,
            panic_in_guard_poisons_the_array,
            raw_array_across_processes,
            open_or_create_checks_length
        ],
        routines![negate, hold_guard, raw_fill, panic_holding_guard],
    );
}

/// The seeds' example: a child negates every element of a shared array.
fn negate(args: &[String]) {
    let a = Array::<i32>::open(&args[0]).expect("open");
    for x in a.lock().expect("lock").iter_mut() {
        *x = -*x;
    }
}

fn child_negates_an_array() {
    let n = name("neg");
    let init: Vec<i32> = (0..10).collect();
    let a = Array::from_slice(&n, &init).expect("create");
    Child::spawn("negate", &[&n]).join();
    assert_eq!(
        a.to_vec().expect("to_vec"),
        [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]
    );
    assert_eq!(a.get(9).expect("get"), -9);
}

fn open_learns_the_length() {
    let n = name("len");
    let a = Array::<u16>::create(&n, 1000).expect("create");
    assert_eq!(a.len(), 1000);
    assert!(!a.is_empty());
    assert!(a.to_vec().expect("zeroed").iter().all(|&x| x == 0));
    let b = Array::<u16>::open(&n).expect("open");
    assert_eq!(b.len(), 1000);
    b.set(999, 7).expect("set");
    assert_eq!(a.get(999).expect("get"), 7);
}

fn bad_lengths_are_refused() {
    let n = name("badlen");
    assert!(matches!(
        Array::<u8>::create(&n, 0),
        Err(Error::InvalidLength { len: 0, .. })
    ));
    assert!(matches!(
        Array::<u8>::from_slice(&n, &[]),
        Err(Error::InvalidLength { .. })
    ));
    assert!(matches!(
        RawArray::<u8>::create(&n, 0),
        Err(Error::InvalidLength { .. })
    ));
    for len in [usize::MAX, usize::MAX / 8, 1 << 41] {
        match Array::<u64>::create(&n, len) {
            Err(Error::InvalidLength { len: l, reason }) => {
                assert_eq!(l, len);
                assert!(!reason.is_empty());
            }
            other => panic!("{len}: expected InvalidLength, got {other:?}"),
        }
    }
    assert!(
        !common::exists(&n),
        "a refused create leaves nothing behind"
    );
}

fn index_and_length_errors() {
    let n = name("idx");
    let a = Array::<f32>::create(&n, 3).expect("create");
    assert!(matches!(
        a.get(3),
        Err(AccessError::OutOfBounds { index: 3, len: 3 })
    ));
    assert!(matches!(
        a.set(usize::MAX, 1.0),
        Err(AccessError::OutOfBounds { .. })
    ));
    assert!(matches!(
        a.copy_from_slice(&[1.0; 4]),
        Err(AccessError::LengthMismatch {
            expected: 3,
            found: 4
        })
    ));
    a.copy_from_slice(&[1.0, 2.0, 3.0]).expect("copy");
    assert_eq!(a.to_vec().expect("to_vec"), [1.0, 2.0, 3.0]);
    let g = a.lock().expect("lock");
    assert!(matches!(a.get(0), Err(AccessError::Deadlock)));
    assert_eq!(&*g, &[1.0, 2.0, 3.0]);
}

fn wrong_element_type_is_refused() {
    let n = name("wrongel");
    let _a = Array::<i32>::create(&n, 4).expect("create");
    match Array::<u32>::open(&n) {
        Err(Error::TypeMismatch {
            expected, found, ..
        }) => {
            assert_eq!(expected, "`u32` (4 B, align 4)");
            assert_eq!(found, "`i32` (4 B, align 4)");
        }
        other => panic!("expected TypeMismatch, got {other:?}"),
    }
    assert!(matches!(
        RawArray::<i32>::open(&n),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        mpshm::Value::<i32>::open(&n),
        Err(Error::KindMismatch { .. })
    ));
}

fn hold_guard(args: &[String]) {
    let a = Array::<u8>::open(&args[0]).expect("open");
    let mut g = a.lock().expect("lock");
    g[0] = 1; // a half-done update, in place
    common::ready();
    if common::line_from_parent() == "finish" {
        g[1] = 1;
        drop(g);
        return;
    }
    common::park();
}

fn guard_is_exclusive_across_processes() {
    let n = name("excl");
    let a = Array::<u8>::create(&n, 2).expect("create");
    let mut child = Child::spawn("hold_guard", &[&n]);
    child.wait_ready();
    assert!(matches!(a.try_lock(), Err(LockError::WouldBlock)));
    assert!(matches!(
        a.lock_timeout(Duration::from_millis(20)),
        Err(LockError::Timeout)
    ));
    child.tell("finish");
    child.join();
    assert_eq!(a.to_vec().expect("to_vec"), [1, 1]);
}

fn killed_holder_poisons_the_array() {
    let n = name("apoison");
    let a = Array::<u8>::create(&n, 2).expect("create");
    let mut child = Child::spawn("hold_guard", &[&n]);
    child.wait_ready();
    child.kill();
    // The half-done update is visible, flagged.
    match a.to_vec() {
        Err(AccessError::OwnerDied(v)) => assert_eq!(v, [1, 0]),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert!(a.is_poisoned());
    match a.lock() {
        Err(LockError::OwnerDied(mut g)) => {
            g[1] = 1; // finish the update
            g.mark_consistent();
        }
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert_eq!(a.to_vec().expect("clean"), [1, 1]);
}

/// Panics half-way through a change made through the guard; catches it and exits normally.
fn panic_holding_guard(args: &[String]) {
    let a = Array::<u32>::open(&args[0]).expect("open");
    common::unwinds(|| {
        let mut g = a.lock().expect("lock");
        g[0] = 1;
        panic!("half-way through a change");
    });
    common::say("unwound");
}

/// The guard changes the array in place, so the half-made change is there; the poison says so
/// to every later acquirer in any process until someone marks the array consistent.
fn panic_in_guard_poisons_the_array() {
    let n = name("apanic");
    let a = Array::<u32>::create(&n, 4).expect("create");
    let mut child = Child::spawn("panic_holding_guard", &[&n]);
    assert_eq!(child.line(), "unwound");
    child.join();
    assert!(a.is_poisoned());
    for _ in 0..2 {
        match a.to_vec() {
            Err(AccessError::OwnerDied(v)) => assert_eq!(v, [1, 0, 0, 0]),
            other => panic!("expected OwnerDied, got {other:?}"),
        }
    }
    match a.lock_timeout(Duration::from_secs(5)) {
        Err(LockError::OwnerDied(mut g)) => {
            g[0] = 0;
            g.mark_consistent();
        }
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert!(!a.is_poisoned());
    assert_eq!(a.to_vec().expect("clean"), [0; 4]);
}

fn raw_fill(args: &[String]) {
    let a = RawArray::<u64>::open(&args[0]).expect("open");
    let v: Vec<u64> = (0..a.len() as u64).map(|i| i * i).collect();
    a.copy_from_slice(&v).expect("copy");
}

fn raw_array_across_processes() {
    let n = name("rawa");
    let a = RawArray::<u64>::create(&n, 4097).expect("create");
    Child::spawn("raw_fill", &[&n]).join();
    let v = a.to_vec();
    assert!(v.iter().enumerate().all(|(i, &x)| x == (i * i) as u64));
    assert_eq!(a.get(4096), Ok(4096 * 4096));
    let past = mpshm::OutOfBounds {
        index: 4097,
        len: 4097,
    };
    assert_eq!(a.get(4097), Err(past));
    assert_eq!(a.set(4097, 0), Err(past));
}

fn open_or_create_checks_length() {
    let n = name("oocl");
    let a = Array::<u32>::open_or_create(&n, 8).expect("create");
    let b = Array::<u32>::open_or_create(&n, 8).expect("open");
    b.set(0, 5).expect("set");
    assert_eq!(a.get(0).expect("get"), 5);
    match Array::<u32>::open_or_create(&n, 9) {
        Err(e @ Error::LayoutMismatch { .. }) => assert_eq!(
            e.to_string(),
            format!(
                "segment {n:?} holds an array of 8 elements, but an array of 9 elements was \
                 asked for; open it as its creator made it"
            )
        ),
        other => panic!("expected LayoutMismatch, got {other:?}"),
    }
}
