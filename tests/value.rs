//! `Value` and `RawValue` across real processes.

mod common;

use common::{Child, name};
use mpshm::bytemuck::{Pod, Zeroable};
use mpshm::prelude::*;
use mpshm::{AccessError, Difference, Error, Field, LockError, RawValue, Value};

const INCREMENTS: u64 = 100_000;

fn main() {
    common::run(
        tests![
            locked_increments_from_two_processes,
            atomic_increments_from_two_processes,
            guard_and_locked_updates_lose_nothing,
            child_sets_an_f64,
            wrong_type_is_a_type_mismatch,
            type_tag_lets_two_names_agree,
            same_name_other_fields_is_refused,
            lock_guard_writes_back,
            get_while_holding_guard_is_deadlock,
            owner_death_poisons_until_marked,
            panic_in_guard_poisons_without_writing_back,
            atomic_ops,
            raw_value_across_processes,
            zero_sized_type_is_refused,
            handles_are_send_and_sync
        ],
        routines![
            increment_locked,
            increment_atomic,
            set_pi,
            hold_value_lock,
            raw_set,
            panic_holding_value
        ],
    );
}

fn increment_locked(args: &[String]) {
    let v = Value::<u64>::open(&args[0]).expect("open");
    common::ready();
    assert_eq!(common::line_from_parent(), "go");
    for _ in 0..INCREMENTS {
        v.update(|x| *x += 1).expect("update");
    }
}

fn increment_atomic(args: &[String]) {
    let v = RawValue::<u64>::open(&args[0]).expect("open");
    common::ready();
    assert_eq!(common::line_from_parent(), "go");
    for _ in 0..INCREMENTS {
        v.fetch_add(1);
    }
}

/// Starts two children running `routine` on the segment `n`, and lets them go together.
fn two_children(routine: &str, n: &str) {
    let mut kids = [Child::spawn(routine, &[n]), Child::spawn(routine, &[n])];
    for k in &mut kids {
        k.wait_ready();
    }
    for k in &mut kids {
        k.tell("go");
    }
    for k in kids {
        k.join();
    }
}

fn locked_increments_from_two_processes() {
    let n = name("inc");
    let v = Value::<u64>::create(&n, 0).expect("create");
    two_children("increment_locked", &n);
    assert_eq!(v.get().expect("get"), 2 * INCREMENTS);
}

fn atomic_increments_from_two_processes() {
    let n = name("inc");
    let v = RawValue::<u64>::create(&n, 0).expect("create");
    two_children("increment_atomic", &n);
    assert_eq!(v.load(), 2 * INCREMENTS);
}

/// A `Value` has no lock-free writes (they live on `RawValue`), so a guard held for long, with
/// its private copy, cannot overwrite another process's update: the child's `update`s wait for
/// the guard, and every increment on both sides counts.
fn guard_and_locked_updates_lose_nothing() {
    let n = name("noloss");
    let v = Value::<u64>::create(&n, 0).expect("create");
    let mut child = Child::spawn("increment_locked", &[&n]);
    child.wait_ready();
    let mut g = v.lock().expect("lock");
    child.tell("go");
    // The child is blocked in its first update, behind our guard.
    common::wait_until_process_sleeps(child.pid());
    *g += 1_000_000;
    drop(g);
    for _ in 0..1000 {
        let mut g = v.lock().expect("lock");
        *g += 1;
    }
    child.join();
    assert_eq!(v.get().expect("get"), 1_000_000 + 1000 + INCREMENTS);
}

/// The seeds' value (Python's `num.value = 3.1415927`), not `PI`.
#[allow(clippy::approx_constant, reason = "the seeds' literal, on purpose")]
const SEED_PI: f64 = 3.1415927;

fn set_pi(args: &[String]) {
    Value::<f64>::open(&args[0])
        .expect("open")
        .set(SEED_PI)
        .expect("set");
}

fn child_sets_an_f64() {
    let n = name("pi");
    let v = Value::<f64>::create(&n, 0.0).expect("create");
    Child::spawn("set_pi", &[&n]).join();
    assert_eq!(v.get().expect("get"), SEED_PI);
}

fn wrong_type_is_a_type_mismatch() {
    let n = name("wrongt");
    let _v = Value::<f64>::create(&n, 1.0).expect("create");
    match Value::<u64>::open(&n) {
        Err(
            e @ Error::TypeMismatch {
                differs: Difference::Name,
                ..
            },
        ) => {
            let Error::TypeMismatch {
                ref expected,
                ref found,
                ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!(expected, "`u64` (8 B, align 8)");
            assert_eq!(found, "`f64` (8 B, align 8)");
            assert!(e.to_string().contains("same name on both sides"), "{e}");
        }
        other => panic!("expected TypeMismatch, got {other:?}"),
    }
    // Another name, size and alignment.
    match Value::<[u8; 8]>::open(&n) {
        Err(Error::TypeMismatch {
            differs: Difference::Name,
            ..
        }) => {}
        other => panic!("expected TypeMismatch, got {other:?}"),
    }
    // And a RawValue is another kind of object.
    match RawValue::<f64>::open(&n) {
        Err(Error::KindMismatch {
            expected: mpshm::Kind::RawValue,
            found: mpshm::Kind::Value,
            ..
        }) => {}
        other => panic!("expected KindMismatch, got {other:?}"),
    }
}

mpshm::shared_type! {
    #[name = "geometry::Point"]
    #[derive(Clone, Copy, Pod, Zeroable, Debug, PartialEq)]
    #[bytemuck(crate = "mpshm::bytemuck")]
    #[repr(C)]
    struct Point {
        x: f32,
        y: f32,
    }
}

mpshm::shared_type! {
    /// The same struct as another crate would define it, under another name.
    #[name = "drawing::Point"]
    #[derive(Clone, Copy, Pod, Zeroable, Debug, PartialEq)]
    #[bytemuck(crate = "mpshm::bytemuck")]
    #[repr(C)]
    struct TheirPoint {
        x: f32,
        y: f32,
    }
}

mpshm::shared_type! {
    /// `Point`'s name and size, with its fields the other way round.
    #[name = "geometry::Point"]
    #[derive(Clone, Copy, Pod, Zeroable, Debug, PartialEq)]
    #[bytemuck(crate = "mpshm::bytemuck")]
    #[repr(C)]
    struct Swapped {
        y: f32,
        x: f32,
    }
}

/// `Point`'s name with another size.
#[derive(Clone, Copy, Pod, Zeroable)]
#[bytemuck(crate = "mpshm::bytemuck")]
#[repr(C)]
struct Point3 {
    x: f32,
    y: f32,
    z: f32,
}

impl SharedType for Point3 {
    const NAME: &'static str = "geometry::Point";
    const FIELDS: &'static [Field] = &[
        Field::of::<f32>("x", std::mem::offset_of!(Point3, x)),
        Field::of::<f32>("y", std::mem::offset_of!(Point3, y)),
        Field::of::<f32>("z", std::mem::offset_of!(Point3, z)),
    ];
}

fn type_tag_lets_two_names_agree() {
    let n = name("tag");
    let v = Value::<Point>::create(&n, Point { x: 1.0, y: 2.0 }).expect("create");
    // Another crate's identical struct is refused by its name, and the message says so.
    match Value::<TheirPoint>::open(&n) {
        Err(Error::TypeMismatch {
            differs: Difference::Name,
            expected,
            found,
            ..
        }) => {
            assert_eq!(expected, "`drawing::Point` (8 B, align 4)");
            assert_eq!(found, "`geometry::Point` (8 B, align 4)");
        }
        other => panic!("expected TypeMismatch, got {other:?}"),
    }
    // Under the creator's name given as the type tag, it is the same type.
    let mut opts = mpshm::Options::new();
    opts.type_tag("geometry::Point");
    let other = Value::<TheirPoint>::open_with(&n, &opts).expect("open with tag");
    assert_eq!(other.get().expect("get"), TheirPoint { x: 1.0, y: 2.0 });
    // But a tag does not make another layout agree: the fields are still checked.
    assert!(matches!(
        Value::<[f32; 2]>::open_with(&n, &opts),
        Err(Error::TypeMismatch {
            differs: Difference::Fields,
            ..
        })
    ));
    drop(v);
}

fn same_name_other_fields_is_refused() {
    let n = name("fields");
    let _v = Value::<Point>::create(&n, Point { x: 1.0, y: 2.0 }).expect("create");
    match Value::<Swapped>::open(&n) {
        Err(
            e @ Error::TypeMismatch {
                differs: Difference::Fields,
                ..
            },
        ) => {
            let Error::TypeMismatch {
                ref expected,
                ref found,
                ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!(expected, "`geometry::Point` with fields y@0+4 x@4+4");
            assert_eq!(found, "`geometry::Point` with fields x@0+4 y@4+4");
            assert!(e.to_string().contains("other fields"), "{e}");
        }
        other => panic!("expected TypeMismatch of the fields, got {other:?}"),
    }
    match Value::<Point3>::open(&n) {
        Err(Error::TypeMismatch {
            differs: Difference::Size,
            expected,
            found,
            ..
        }) => {
            assert_eq!(expected, "`geometry::Point` (12 B, align 4)");
            assert_eq!(found, "`geometry::Point` (8 B, align 4)");
        }
        other => panic!("expected TypeMismatch of the size, got {other:?}"),
    }
}

fn lock_guard_writes_back() {
    let n = name("guard");
    let v = Value::<Point>::create(&n, Point { x: 0.0, y: 0.0 }).expect("create");
    {
        let mut g = v.lock().expect("lock");
        g.x = 5.0;
        assert!(matches!(v.try_lock(), Err(LockError::WouldBlock)));
    }
    assert_eq!(v.get().expect("get"), Point { x: 5.0, y: 0.0 });
}

fn get_while_holding_guard_is_deadlock() {
    let n = name("dead");
    let v = Value::<u32>::create(&n, 1).expect("create");
    let g = v.lock().expect("lock");
    assert!(matches!(v.get(), Err(AccessError::Deadlock)));
    assert!(matches!(v.lock(), Err(LockError::Deadlock)));
    drop(g);
    assert_eq!(v.get().expect("get"), 1);
}

fn hold_value_lock(args: &[String]) {
    let v = Value::<u64>::open(&args[0]).expect("open");
    let mut g = v.lock().expect("lock");
    *g = 99; // never written back: the child dies holding the guard
    common::ready();
    common::park();
}

fn owner_death_poisons_until_marked() {
    let n = name("vdie");
    let v = Value::<u64>::create(&n, 7).expect("create");
    let mut child = Child::spawn("hold_value_lock", &[&n]);
    child.wait_ready();
    child.kill();
    // The guard's copy was never written back; the value is the old one, but in doubt.
    match v.get() {
        Err(AccessError::OwnerDied(x)) => assert_eq!(x, 7),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert!(v.is_poisoned());
    // Poison stays until someone marks it consistent.
    match v.lock() {
        Err(LockError::OwnerDied(mut g)) => {
            *g = 8;
            g.mark_consistent();
        }
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert!(!v.is_poisoned());
    assert_eq!(v.get().expect("clean after repair"), 8);
}

/// Panics with the value's lock held, half-way through a change: through a guard, or inside
/// `update`'s closure; catches the panic and exits normally.
fn panic_holding_value(args: &[String]) {
    let v = Value::<[u32; 4]>::open(&args[0]).expect("open");
    common::unwinds(|| match args[1].as_str() {
        "guard" => {
            let mut g = v.lock().expect("lock");
            g[0] = 1;
            panic!("half-way through a change");
        }
        _ => {
            let _ = v.update(|x| {
                x[0] = 1;
                panic!("half-way through a change");
            });
        }
    });
    common::say("unwound");
}

/// A panic with the lock held poisons it, as std's does, for every later acquirer in any
/// process until someone marks the value consistent; the half-made change is not written back.
fn panic_in_guard_poisons_without_writing_back() {
    for how in ["guard", "update"] {
        let n = name("vpanic");
        let v = Value::<[u32; 4]>::create(&n, [0; 4]).expect("create");
        let mut child = Child::spawn("panic_holding_value", &[&n, how]);
        assert_eq!(child.line(), "unwound");
        child.join();
        assert!(v.is_poisoned(), "{how}");
        for _ in 0..2 {
            match v.get() {
                Err(AccessError::OwnerDied(x)) => assert_eq!(x, [0; 4], "{how}: written back"),
                other => panic!("{how}: expected OwnerDied, got {other:?}"),
            }
        }
        match v.lock() {
            Err(LockError::OwnerDied(g)) => {
                assert_eq!(*g, [0; 4]);
                g.mark_consistent();
            }
            other => panic!("{how}: expected OwnerDied, got {other:?}"),
        }
        assert!(!v.is_poisoned());
        assert_eq!(v.get().expect("clean after marking"), [0; 4]);
    }
}

fn atomic_ops() {
    let n = name("atom");
    let v = RawValue::<i32>::create(&n, 5).expect("create");
    assert_eq!(v.fetch_add(3), 5);
    assert_eq!(v.fetch_sub(10), 8);
    assert_eq!(v.load(), -2);
    assert_eq!(v.compare_exchange(-2, 4), Ok(-2));
    assert_eq!(v.compare_exchange(-2, 9), Err(4));
    assert_eq!(v.swap(1), 4);
    v.store(i32::MAX);
    assert_eq!(v.fetch_add(1), i32::MAX);
    assert_eq!(v.load(), i32::MIN, "wrapping, like std's atomics");
    let n = name("atom8");
    let b = RawValue::<u8>::create(&n, 255).expect("create");
    assert_eq!(b.fetch_add(1), 255);
    assert_eq!(b.get(), 0);
}

fn raw_set(args: &[String]) {
    RawValue::<[u64; 4]>::open(&args[0])
        .expect("open")
        .set([1, 2, 3, 4]);
}

fn raw_value_across_processes() {
    let n = name("raw");
    let v = RawValue::<[u64; 4]>::create(&n, [0; 4]).expect("create");
    Child::spawn("raw_set", &[&n]).join();
    assert_eq!(v.get(), [1, 2, 3, 4]);
}

/// A type of no bytes (a `Pod` struct without fields can be one).
#[derive(Clone, Copy, Pod, Zeroable)]
#[bytemuck(crate = "mpshm::bytemuck")]
#[repr(C)]
struct Nothing;

impl SharedType for Nothing {
    const NAME: &'static str = "Nothing";
}

fn zero_sized_type_is_refused() {
    assert!(matches!(
        Value::<Nothing>::create(&name("zst"), Nothing),
        Err(Error::InvalidLength { .. })
    ));
}

fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Value<u64>>();
    check::<RawValue<u64>>();
    check::<mpshm::Array<u8>>();
    check::<mpshm::Lock>();
    // And they work from several threads at once.
    let n = name("threads");
    let v = Value::<u64>::create(&n, 0).expect("create");
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..1000 {
                    v.update(|x| *x += 1).expect("update");
                }
            });
        }
    });
    assert_eq!(v.get().expect("get"), 4000);
}
