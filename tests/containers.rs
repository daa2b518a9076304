//! `SharedDict` and `SharedList` across real processes: Python's semantics, updates from
//! children, concurrent writers, readers racing a writer, writers killed at random points, and
//! damaged shared memory.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use common::{Child, Msg, name};
use mpshm::prelude::*;
use mpshm::{ContainerError, Error, Kind, SharedDict, SharedList};

fn main() {
    common::run(
        tests![
            dict_python_semantics,
            dict_matches_a_model_through_churn,
            list_python_semantics,
            list_matches_a_model,
            open_checks_kind_and_types,
            threads_share_one_handle,
            update_may_read_but_not_write,
            #[cfg(feature = "serde")]
            serde_seed_manager_example,
            #[cfg(feature = "serde")]
            serde_sizes_and_types,
            children_update_dict_and_list,
            concurrent_writers_lose_nothing,
            readers_never_see_torn_entries,
            reads_go_on_while_a_writer_holds_the_lock,
            a_write_left_half_done_is_repaired,
            killed_writers_leave_consistent_containers,
            damaged_memory_errors_never_panics
        ],
        routines![
            seed_child,
            #[cfg(feature = "serde")]
            serde_seed_child,
            count_child,
            torn_writer,
            hold_in_update,
            random_writer
        ],
    );
}

/// A xorshift generator: random operations and kill points, the same in every run.
fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

fn is_full(r: Result<impl std::fmt::Debug, ContainerError>, cap: usize) {
    match r {
        Err(ContainerError::Full { capacity }) if capacity == cap => {}
        other => panic!("expected Full {{ capacity: {cap} }}, got {other:?}"),
    }
}

fn out_of_range<T: std::fmt::Debug>(r: Result<T, ContainerError>, index: i128, len: usize) {
    match r {
        Err(ContainerError::IndexOutOfRange { index: i, len: l }) if i == index && l == len => {}
        other => panic!("expected IndexOutOfRange {{ {index}, {len} }}, got {other:?}"),
    }
}

// ---- semantics, in one process -------------------------------------------------------------

fn dict_python_semantics() {
    let d = SharedDict::<u32, u64>::create(&name("dsem"), 4).expect("create");
    assert_eq!(
        (d.len(), d.is_empty(), d.capacity(), d.entry_bytes()),
        (0, true, 4, 12)
    );
    assert_eq!(d.insert(1, 10).expect("insert"), None);
    assert_eq!(d.insert(1, 11).expect("overwrite"), Some(10));
    assert_eq!(d.get(&1).expect("get"), Some(11));
    assert_eq!(d.get(&2).expect("get missing"), None);
    assert!(d.contains_key(&1).expect("contains"));
    assert!(!d.contains_key(&2).expect("contains missing"));
    for k in 2..=4 {
        d.insert(k, u64::from(k) * 10).expect("fill");
    }
    assert_eq!(d.len(), 4);
    is_full(d.insert(5, 50), 4);
    // Replacing a value of a full dict needs no room.
    assert_eq!(d.insert(4, 44).expect("overwrite when full"), Some(40));
    assert_eq!(d.remove(&9).expect("remove missing"), None);
    assert_eq!(d.remove(&1).expect("remove"), Some(11));
    assert_eq!(d.len(), 3);
    d.insert(5, 50).expect("room again");
    // Insertion order, as Python's dicts; a replaced key keeps its place.
    assert_eq!(
        d.items().expect("items"),
        [(2, 20), (3, 30), (4, 44), (5, 50)]
    );
    assert_eq!(d.keys().expect("keys"), [2, 3, 4, 5]);
    assert_eq!(d.values().expect("values"), [20, 30, 44, 50]);
    assert_eq!(d.iter().expect("iter").map(|(k, _)| k).sum::<u32>(), 14);
    // update: change, leave absent, insert, remove.
    assert_eq!(d.update(&2, |v| v.replace(21)).expect("update"), Some(20));
    d.update(&7, |v| assert!(v.is_none()))
        .expect("update absent");
    assert!(!d.contains_key(&7).expect("contains"));
    is_full(d.update(&7, |v| *v = Some(70)), 4);
    d.update(&3, |v| *v = None).expect("update removes");
    d.update(&7, |v| *v = Some(70)).expect("update inserts");
    let want: HashMap<u32, u64> = [(2, 21), (4, 44), (5, 50), (7, 70)].into();
    assert_eq!(d.to_map().expect("to_map"), want);
    assert_eq!(
        d.to_btree_map().expect("to_btree_map"),
        want.into_iter().collect::<BTreeMap<_, _>>()
    );
    d.clear().expect("clear");
    assert!(d.is_empty());
    assert_eq!(d.items().expect("items"), []);
    for k in 0..4 {
        d.insert(k, 0).expect("refill after clear");
    }
    assert_eq!(d.repairs(), 0);
}

/// Random inserts, removals and updates on a small dict against an ordered model: tombstones,
/// emptied runs and index rebuilds all happen many times.
fn dict_matches_a_model_through_churn() {
    const CAP: usize = 20;
    let d = SharedDict::<u16, u32>::create(&name("dchurn"), CAP).expect("create");
    let mut model: Vec<(u16, u32)> = Vec::new();
    let mut next = xorshift(0x1234_5678_9abc_def1);
    for step in 0..40_000u32 {
        let r = next();
        let k = (r >> 8) as u16 % 48;
        let at = model.iter().position(|e| e.0 == k);
        match r % 16 {
            0..=6 => {
                let got = d.insert(k, step);
                match at {
                    Some(i) => assert_eq!(
                        got.expect("replace"),
                        Some(std::mem::replace(&mut model[i].1, step))
                    ),
                    None if model.len() == CAP => is_full(got, CAP),
                    None => {
                        assert_eq!(got.expect("insert"), None);
                        model.push((k, step));
                    }
                }
            }
            7..=11 => assert_eq!(d.remove(&k).expect("remove"), at.map(|i| model.remove(i).1)),
            12 => {
                let got = d.update(&k, |v| {
                    *v = v.map(|x| x + 1);
                });
                got.expect("update");
                if let Some(i) = at {
                    model[i].1 += 1;
                }
            }
            13 | 14 => assert_eq!(d.get(&k).expect("get"), at.map(|i| model[i].1)),
            _ if r % 512 == 15 => {
                d.clear().expect("clear");
                model.clear();
            }
            _ => assert_eq!(d.contains_key(&k).expect("contains"), at.is_some()),
        }
        assert_eq!(d.len(), model.len(), "step {step}");
        if step % 64 == 0 {
            assert_eq!(d.items().expect("items"), model, "step {step}");
        }
    }
    assert_eq!(d.items().expect("items"), model);
}

fn list_python_semantics() {
    let l = SharedList::<i64>::create(&name("lsem"), 5).expect("create");
    assert_eq!(
        (l.len(), l.is_empty(), l.capacity(), l.item_bytes()),
        (0, true, 5, 8)
    );
    assert_eq!(l.pop().expect("pop empty"), None);
    out_of_range(l.get(0), 0, 0);
    l.extend([1, 2, 3]).expect("extend");
    assert_eq!(
        (
            l.get(0).expect("get"),
            l.get(-1).expect("get"),
            l.get(-3).expect("get")
        ),
        (1, 3, 1)
    );
    out_of_range(l.get(3), 3, 3);
    out_of_range(l.get(-4), -4, 3);
    out_of_range(l.get(usize::MAX), usize::MAX as i128, 3);
    out_of_range(l.set(3, 0), 3, 3);
    out_of_range(l.remove(-4), -4, 3);
    l.set(-1, 30).expect("set");
    l.insert(0, 0).expect("insert at front");
    l.insert(100, 99).expect("insert past the end appends");
    assert_eq!(l.to_vec().expect("to_vec"), [0, 1, 2, 30, 99]);
    is_full(l.push(7), 5);
    is_full(l.insert(1, 7), 5);
    is_full(l.extend([7]), 5);
    l.set(2, 20).expect("set when full");
    assert_eq!(l.remove(1).expect("remove"), 1);
    assert_eq!(l.remove(-1).expect("remove last"), 99);
    assert_eq!(l.to_vec().expect("to_vec"), [0, 20, 30]);
    l.reverse().expect("reverse");
    assert_eq!(l.to_vec().expect("to_vec"), [30, 20, 0]);
    is_full(l.extend([7, 8, 9]), 5);
    assert_eq!(l.len(), 3, "a failed extend appends nothing");
    l.insert(-100, 5).expect("insert before the start");
    l.insert(-1, 6).expect("insert before the last");
    assert_eq!(
        l.iter().expect("iter").collect::<Vec<_>>(),
        [5, 30, 20, 6, 0]
    );
    assert_eq!(l.pop().expect("pop"), Some(0));
    l.clear().expect("clear");
    assert!(l.is_empty());
    assert_eq!(l.to_vec().expect("to_vec"), []);
    l.extend(0..5).expect("refill after clear");
    assert_eq!(l.to_vec().expect("to_vec"), [0, 1, 2, 3, 4]);
    assert_eq!(l.repairs(), 0);
}

/// Applies one list operation to a `Vec` model with Python's semantics (`Full` at `cap`);
/// returns what the real list must return for it (`None`: an error).
fn list_model(model: &mut Vec<u64>, cap: usize, op: &ListOp) -> Option<Option<u64>> {
    let len = model.len() as i128;
    let pos = |i: i64| {
        let at = if i < 0 {
            i128::from(i) + len
        } else {
            i128::from(i)
        };
        (0..len).contains(&at).then_some(at as usize)
    };
    Some(match *op {
        ListOp::Push(v) => {
            (model.len() < cap).then(|| model.push(v))?;
            None
        }
        ListOp::Pop => model.pop(),
        ListOp::Set(i, v) => {
            model[pos(i)?] = v;
            None
        }
        ListOp::Insert(i, v) => {
            if model.len() == cap {
                return None;
            }
            let at = if i < 0 {
                i128::from(i) + len
            } else {
                i128::from(i)
            };
            model.insert(at.clamp(0, len) as usize, v);
            None
        }
        ListOp::Remove(i) => Some(model.remove(pos(i)?)),
        ListOp::Reverse => {
            model.reverse();
            None
        }
        ListOp::Extend(n, v) => {
            if model.len() + n > cap {
                return None;
            }
            model.extend((0..n as u64).map(|k| v + k));
            None
        }
        ListOp::Clear => {
            model.clear();
            None
        }
    })
}

/// A list operation, as the kill loop's child reports it.
#[derive(Debug, Clone)]
enum ListOp {
    Push(u64),
    Pop,
    Set(i64, u64),
    Insert(i64, u64),
    Remove(i64),
    Reverse,
    Extend(usize, u64),
    Clear,
}

/// Runs `op` on the real list; what it returned, as [`list_model`] gives it.
fn list_apply(l: &SharedList<u64>, op: &ListOp) -> Option<Option<u64>> {
    let ok_or_expected = |r: Result<Option<u64>, ContainerError>| match r {
        Ok(v) => Some(v),
        Err(ContainerError::Full { .. } | ContainerError::IndexOutOfRange { .. }) => None,
        Err(e) => panic!("{op:?}: {e}"),
    };
    ok_or_expected(match *op {
        ListOp::Push(v) => l.push(v).map(|()| None),
        ListOp::Pop => l.pop(),
        ListOp::Set(i, v) => l.set(i, v).map(|()| None),
        ListOp::Insert(i, v) => l.insert(i, v).map(|()| None),
        ListOp::Remove(i) => l.remove(i).map(Some),
        ListOp::Reverse => l.reverse().map(|()| None),
        ListOp::Extend(n, v) => l.extend((0..n as u64).map(|k| v + k)).map(|()| None),
        ListOp::Clear => l.clear().map(|()| None),
    })
}

/// A random list operation; `len` (the list's length) steers the indices around the edges.
fn random_list_op(r: u64, len: usize) -> ListOp {
    let span = len as i64 + 2;
    let i = (r >> 16) as i64 % (2 * span + 1) - span;
    let v = r >> 40;
    match r % 20 {
        0..=4 => ListOp::Push(v),
        5..=7 => ListOp::Pop,
        8 | 9 => ListOp::Set(i, v),
        10..=12 => ListOp::Insert(i, v),
        13..=15 => ListOp::Remove(i),
        16 | 17 => ListOp::Reverse,
        18 => ListOp::Extend((r >> 8) as usize % 6, v),
        _ if r % 200 == 19 => ListOp::Clear,
        _ => ListOp::Push(v),
    }
}

fn list_matches_a_model() {
    const CAP: usize = 24;
    let l = SharedList::<u64>::create(&name("lmodel"), CAP).expect("create");
    let mut model = Vec::new();
    let mut next = xorshift(0xfeed_beef_1234_5678);
    for step in 0..30_000 {
        let op = random_list_op(next(), model.len());
        let want = list_model(&mut model, CAP, &op);
        assert_eq!(list_apply(&l, &op), want, "step {step}: {op:?}");
        assert_eq!(l.len(), model.len(), "step {step}: {op:?}");
        if step % 32 == 0 {
            assert_eq!(l.to_vec().expect("to_vec"), model, "step {step}");
        }
    }
}

fn open_checks_kind_and_types() {
    let n = name("open");
    assert!(matches!(
        SharedDict::<u32, u32>::open(&n),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        SharedDict::<u32, u32>::create(&n, 0),
        Err(Error::InvalidLength { .. })
    ));
    assert!(matches!(
        SharedList::<u32>::create(&n, 1 << 31),
        Err(Error::InvalidLength { .. })
    ));
    let d = SharedDict::<u32, u32>::create(&n, 8).expect("create");
    assert!(matches!(
        SharedDict::<u32, u32>::create(&n, 8),
        Err(Error::AlreadyExists { .. })
    ));
    let other = SharedDict::<u32, u32>::open(&n).expect("open");
    d.insert(1, 2).expect("insert");
    assert_eq!(other.get(&1).expect("get"), Some(2));
    assert_eq!(other.capacity(), 8);
    let same = SharedDict::<u32, u32>::open_or_create(&n, 8).expect("open_or_create opens");
    assert_eq!(same.len(), 1);
    assert!(matches!(
        SharedDict::<u32, u64>::open(&n),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        SharedDict::<u32, u32>::open_or_create(&n, 9),
        Err(Error::LayoutMismatch { .. })
    ));
    match SharedList::<u32>::open(&n) {
        Err(Error::KindMismatch {
            expected: Kind::List,
            found: Kind::Dict,
            ..
        }) => {}
        other => panic!("expected KindMismatch, got {other:?}"),
    }
    // A tag names the list for both sides; the item type's layout is still checked.
    let tagged = name("tag");
    let mut opts = mpshm::Options::new();
    opts.type_tag("pairs");
    let a = SharedList::<[u16; 2]>::create_with(&tagged, 4, &opts).expect("create");
    a.push([1, 2]).expect("push");
    assert!(matches!(
        SharedList::<[u16; 2]>::open(&tagged),
        Err(Error::TypeMismatch { .. })
    ));
    let b = SharedList::<[u16; 2]>::open_with(&tagged, &opts).expect("open with the tag");
    assert_eq!(b.get(0).expect("get"), [1, 2]);
    assert!(matches!(
        SharedList::<u32>::open_with(&tagged, &opts),
        Err(Error::TypeMismatch { .. })
    ));
    let fresh = name("ooc");
    let l = SharedList::<u8>::open_or_create(&fresh, 3).expect("open_or_create creates");
    assert_eq!(
        format!("{l:?}"),
        format!("SharedList {{ name: {fresh:?}, capacity: 3, owner: true }}")
    );
}

fn update_may_read_but_not_write() {
    let d = SharedDict::<u8, u8>::create(&name("reent"), 4).expect("create");
    d.insert(1, 1).expect("insert");
    let inner = d
        .update(&1, |v| {
            // Reads take no lock, so they work here; a write would wait for ourselves.
            assert_eq!(d.get(&1).expect("get inside update"), Some(1));
            assert_eq!(d.len(), 1);
            *v = Some(2);
            d.insert(3, 3)
        })
        .expect("update");
    assert!(matches!(inner, Err(ContainerError::Deadlock)), "{inner:?}");
    assert_eq!(d.items().expect("items"), [(1, 2)]);
    // A panic inside the closure changes nothing and leaves the lock free.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = d.update(&1, |v| {
            *v = None;
            panic!("user code panics");
        });
    }));
    std::panic::set_hook(hook);
    assert!(caught.is_err());
    assert_eq!(d.items().expect("items"), [(1, 2)]);
    d.insert(2, 2).expect("lock released");
}

/// Handles are `Send` and `Sync` (they hold no `K`, `V` or `T`), and threads of one process
/// updating through one handle lose nothing either.
fn threads_share_one_handle() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SharedDict<u32, u64>>();
    send_sync::<SharedList<[u8; 3]>>();
    #[cfg(feature = "serde")]
    send_sync::<mpshm::SerdeDict<std::rc::Rc<str>, std::cell::Cell<u8>>>();
    let d = SharedDict::<u32, u64>::create(&name("threads"), 4).expect("create");
    let l = SharedList::<u32>::create(&name("threadl"), 4 * 500).expect("create");
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let (d, l) = (&d, &l);
            s.spawn(move || {
                for i in 0..5_000u32 {
                    d.update(&(i % 4), |v| *v.get_or_insert(0) += 1)
                        .expect("update");
                    if i % 10 == 0 {
                        l.push(t).expect("push");
                    }
                    let _ = d.get(&(i % 4)).expect("get");
                }
            });
        }
    });
    assert_eq!(d.values().expect("values").iter().sum::<u64>(), 20_000);
    assert_eq!(l.len(), 2_000);
}

// ---- the seeds' Manager example ------------------------------------------------------------

/// The seeds' `f(d, l)`, with plain data: `d[1] = 1; d[2] = 2; d[3] = 0; l.reverse()`.
fn seed_child(args: &[String]) {
    let d = SharedDict::<i64, i64>::open(&args[0]).expect("open dict");
    let l = SharedList::<i64>::open(&args[1]).expect("open list");
    d.insert(1, 1).expect("d[1]");
    d.insert(2, 2).expect("d[2]");
    d.insert(3, 0).expect("d[3]");
    l.reverse().expect("reverse");
}

/// A Python value as the seeds use them: `1`, `'2'`, `0.25`, `None`.
#[cfg(feature = "serde")]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
enum Py {
    Int(i64),
    Str(String),
    Float(f64),
    None,
}

/// The seeds' `f(d, l)` as written: `d[1] = '1'; d['2'] = 2; d[0.25] = None; l.reverse()`.
#[cfg(feature = "serde")]
fn serde_seed_child(args: &[String]) {
    let d = mpshm::SerdeDict::<Py, Py>::open(&args[0]).expect("open dict");
    let l = mpshm::SerdeList::<Py>::open(&args[1]).expect("open list");
    d.insert(Py::Int(1), Py::Str("1".into())).expect("d[1]");
    d.insert(Py::Str("2".into()), Py::Int(2)).expect("d['2']");
    d.insert(Py::Float(0.25), Py::None).expect("d[0.25]");
    l.reverse().expect("reverse");
}

#[cfg(feature = "serde")]
fn serde_seed_manager_example() {
    let (dn, ln) = (name("sseedd"), name("sseedl"));
    let d = mpshm::SerdeDict::<Py, Py>::create(&dn, (16, 32)).expect("manager.dict()");
    let l = mpshm::SerdeList::<Py>::create(&ln, (16, 16)).expect("manager.list()");
    l.extend((0..10).map(Py::Int)).expect("range(10)");
    Child::spawn("serde_seed_child", &[&dn, &ln]).join();
    assert_eq!(
        d.items().expect("print(d)"),
        [
            (Py::Int(1), Py::Str("1".into())),
            (Py::Str("2".into()), Py::Int(2)),
            (Py::Float(0.25), Py::None),
        ]
    );
    assert_eq!(d.get(&Py::Float(0.25)).expect("d[0.25]"), Some(Py::None));
    assert_eq!(d.get(&Py::Int(2)).expect("d[2] is not d['2']"), None);
    assert_eq!(
        l.to_vec().expect("print(l)"),
        (0..10).rev().map(Py::Int).collect::<Vec<_>>()
    );
}

#[cfg(feature = "serde")]
fn serde_sizes_and_types() {
    let n = name("ssize");
    let d = mpshm::SerdeDict::<String, Vec<u8>>::create(&n, (4, 16)).expect("create");
    assert_eq!(d.entry_bytes(), 16);
    // postcard: a length byte and the bytes, for each.
    d.insert("k".into(), vec![1; 13])
        .expect("2 + 14 = 16 bytes fit");
    match d.insert("key".into(), vec![0; 20]) {
        Err(ContainerError::TooLarge { len, max: 16 }) if len > 16 => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Another serde type, or the plain-data form, is refused.
    assert!(matches!(
        mpshm::SerdeDict::<String, String>::open(&n),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        SharedDict::<u64, u64>::open(&n),
        Err(Error::TypeMismatch { .. })
    ));
    // The same types under another tag decode or fail to decode, never crash.
    let mut opts = mpshm::Options::new();
    opts.type_tag(format!(
        "serde dict<{}, {}>",
        std::any::type_name::<String>(),
        std::any::type_name::<Vec<u8>>()
    ));
    let as_str =
        mpshm::SerdeDict::<String, String>::open_with(&n, &opts).expect("open under the tag");
    match as_str.get(&"k".to_owned()) {
        Ok(Some(_)) | Err(ContainerError::Decode) => {}
        other => panic!("{other:?}"),
    }
    let l = mpshm::SerdeList::<String>::create(&name("slist"), (2, 8)).expect("create");
    l.push("1234567".into()).expect("8 bytes fit");
    assert!(matches!(
        l.push("12345678".into()),
        Err(ContainerError::TooLarge { len: 9, max: 8 })
    ));
    assert!(matches!(
        l.set(0, "12345678".into()),
        Err(ContainerError::TooLarge { .. })
    ));
    assert_eq!(l.to_vec().expect("to_vec"), ["1234567"]);
}

// ---- across processes ----------------------------------------------------------------------

/// The seeds' Manager example with plain data, and several children: each updates the dict and
/// the list, and the parent sees all of it.
fn children_update_dict_and_list() {
    let (dn, ln) = (name("seedd"), name("seedl"));
    let d = SharedDict::<i64, i64>::create(&dn, 16).expect("create");
    let l = SharedList::<i64>::create(&ln, 16).expect("create");
    l.extend(0..10).expect("range(10)");
    Child::spawn("seed_child", &[&dn, &ln]).join();
    assert_eq!(d.items().expect("items"), [(1, 1), (2, 2), (3, 0)]);
    assert_eq!(
        l.to_vec().expect("to_vec"),
        (0..10).rev().collect::<Vec<_>>()
    );
    // Three more children, one after another: an odd number of reversals in all.
    for _ in 0..3 {
        Child::spawn("seed_child", &[&dn, &ln]).join();
    }
    assert_eq!(l.to_vec().expect("to_vec"), (0..10).collect::<Vec<_>>());
    assert_eq!(d.len(), 3);
}

const COUNTS: u64 = 20_000;

/// Increments counters `0..8` of the dict by update, and appends its own number to the list
/// every 100 increments.
fn count_child(args: &[String]) {
    let d = SharedDict::<u32, u64>::open(&args[0]).expect("open");
    let l = SharedList::<u32>::open(&args[1]).expect("open");
    let me: u32 = args[2].parse().expect("number");
    common::ready();
    assert_eq!(common::line_from_parent(), "go");
    for i in 0..COUNTS {
        d.update(&((i % 8) as u32), |v| *v.get_or_insert(0) += 1)
            .expect("update");
        if i % 100 == 0 {
            l.push(me).expect("push");
        }
    }
}

fn concurrent_writers_lose_nothing() {
    const KIDS: u32 = 3;
    let (dn, ln) = (name("cwd"), name("cwl"));
    let d = SharedDict::<u32, u64>::create(&dn, 8).expect("create");
    let l = SharedList::<u32>::create(&ln, 1000).expect("create");
    let mut kids: Vec<Child> = (0..KIDS)
        .map(|k| Child::spawn("count_child", &[&dn, &ln, &k.to_string()]))
        .collect();
    for k in &mut kids {
        k.wait_ready();
    }
    for k in &mut kids {
        k.tell("go");
    }
    for k in kids {
        k.join();
    }
    let total: u64 = d.values().expect("values").iter().sum();
    assert_eq!(total, u64::from(KIDS) * COUNTS, "lost updates");
    assert_eq!(d.len(), 8);
    let pushed = l.to_vec().expect("to_vec");
    for k in 0..KIDS {
        assert_eq!(
            pushed.iter().filter(|&&x| x == k).count() as u64,
            COUNTS / 100
        );
    }
}

/// Writes checkable messages into the dict (keys 0..4) and the list (8 items) without end:
/// overwrites, sets, reversals, and an insert and a removal that move every item.
fn torn_writer(args: &[String]) {
    let d = SharedDict::<u32, Msg>::open(&args[0]).expect("open");
    let l = SharedList::<Msg>::open(&args[1]).expect("open");
    common::ready();
    for seq in 1.. {
        d.insert(seq % 4, Msg::new(0, seq)).expect("insert");
        l.set(seq % 8, Msg::new(1, seq)).expect("set");
        match seq % 16 {
            0 => l.reverse().expect("reverse"),
            1 => {
                l.insert(0, Msg::new(2, seq)).expect("insert");
                l.remove(-1).expect("remove").check();
            }
            _ => {}
        }
    }
}

/// A reader copies entries while another process writes them as fast as it can: every copy is
/// whole (the messages check themselves), and the reader sees the writer's progress.
fn readers_never_see_torn_entries() {
    let (dn, ln) = (name("torn-d"), name("torn-l"));
    let d = SharedDict::<u32, Msg>::create(&dn, 4).expect("create");
    let l = SharedList::<Msg>::create(&ln, 9).expect("create");
    for k in 0..4 {
        d.insert(k, Msg::new(0, 0)).expect("fill");
    }
    l.extend((0..8).map(|_| Msg::new(1, 0))).expect("fill");
    let mut writer = Child::spawn("torn_writer", &[&dn, &ln]);
    writer.wait_ready();
    // Read until the writer has been seen to change the dict many times (the reader can be
    // far faster than a writer that has to be scheduled first).
    let want = common::env_or("MPSHM_STRESS_MESSAGES", 50_000);
    let start = std::time::Instant::now();
    let mut seen = std::collections::HashSet::new();
    let mut reads = 0u32;
    while (reads < want || (seen.len() as u32) < want / 10)
        && start.elapsed() < std::time::Duration::from_secs(20)
    {
        let i = reads;
        reads += 1;
        let m = d.get(&(i % 4)).expect("get").expect("the key stays");
        m.check();
        seen.insert(m.seq);
        l.get(i % 8).expect("get").check();
        if i.is_multiple_of(64) {
            for m in d
                .values()
                .expect("values")
                .iter()
                .chain(&l.to_vec().expect("to_vec"))
            {
                m.check();
            }
        }
    }
    writer.kill();
    assert!(
        seen.len() > 100,
        "the writer hardly ran while the reader read"
    );
    eprintln!(
        "torn reads: {reads} reads, {} distinct values seen, none torn",
        seen.len()
    );
}

/// Holds the dict's lock inside `update`, forever.
fn hold_in_update(args: &[String]) {
    let d = SharedDict::<u32, u64>::open(&args[0]).expect("open");
    d.update(&1, |v| {
        *v = Some(999); // never stored: the child dies first
        common::ready();
        common::park()
    })
    .expect("update");
}

/// While a writer holds the lock, reads answer from the last state; once the writer is
/// killed, the next write repairs and goes on, and the dead writer's change never shows.
fn reads_go_on_while_a_writer_holds_the_lock() {
    let n = name("hold");
    let d = SharedDict::<u32, u64>::create(&n, 4).expect("create");
    d.insert(1, 10).expect("insert");
    let mut holder = Child::spawn("hold_in_update", &[&n]);
    holder.wait_ready();
    assert_eq!(d.get(&1).expect("get while the lock is held"), Some(10));
    assert_eq!(d.items().expect("items while the lock is held"), [(1, 10)]);
    assert_eq!(d.len(), 1);
    holder.kill();
    assert_eq!(d.repairs(), 0);
    d.insert(2, 20).expect("insert after the holder died");
    assert_eq!(d.repairs(), 1, "the dead holder was noticed");
    assert_eq!(d.items().expect("items"), [(1, 10), (2, 20)]);
}

/// The payload of segment `name` (a container): where it starts in the file.
fn payload_offset(name: &str) -> u64 {
    let info = mpshm::segments()
        .expect("segments")
        .into_iter()
        .find(|s| s.name == name)
        .expect("listed");
    info.size - info.count * 8
}

fn poke(name: &str, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .expect("open the segment's file");
    f.write_all_at(bytes, offset).expect("write");
}

/// A writer that stopped between its two sequence bumps (the sequence word odd, a count
/// wrong): readers come to the lock and the state is recomputed from the committed words.
fn a_write_left_half_done_is_repaired() {
    let n = name("half");
    let d = SharedDict::<u32, u64>::create(&n, 8).expect("create");
    for k in 0..5 {
        d.insert(k, u64::from(k)).expect("insert");
    }
    let base = payload_offset(&n);
    // Control words: seq, state, len.
    poke(&n, base, &7u64.to_ne_bytes());
    poke(&n, base + 16, &99u64.to_ne_bytes());
    assert_eq!(d.len(), 5, "the count was recomputed");
    assert_eq!(d.repairs(), 1);
    assert_eq!(d.get(&3).expect("get"), Some(3));
    d.insert(5, 5).expect("insert after the repair");
    assert_eq!(d.len(), 6);
}

// ---- the kill loop -------------------------------------------------------------------------

/// Trials of the kill loop (`MPSHM_KILL_TRIALS` raises it).
fn trials() -> u32 {
    common::env_or("MPSHM_KILL_TRIALS", 300)
}

const KILL_DICT_CAP: usize = 48;
const KILL_LIST_CAP: usize = 4000;
/// The kill loop's list is kept at least this long, so that its reorderings take long.
const KILL_LIST_MIN: usize = 1500;

/// A dict operation, as the kill loop's child reports it.
#[derive(Debug, Clone)]
enum DictOp {
    Insert(u32, u64),
    Remove(u32),
    /// Adds one, or inserts 1.
    Bump(u32),
    Clear,
}

fn dict_apply(d: &SharedDict<u32, u64>, op: &DictOp) {
    let r = match *op {
        DictOp::Insert(k, v) => d.insert(k, v).map(drop),
        DictOp::Remove(k) => d.remove(&k).map(drop),
        DictOp::Bump(k) => d.update(&k, |v| *v.get_or_insert(0) += 1),
        DictOp::Clear => d.clear(),
    };
    match r {
        Ok(()) | Err(ContainerError::Full { .. }) => {}
        Err(e) => panic!("{op:?}: {e}"),
    }
}

/// Applies a dict operation to the ordered model, with Python's semantics (`Full` at `cap`).
fn dict_model(model: &mut Vec<(u32, u64)>, op: &DictOp) {
    let at = |model: &Vec<(u32, u64)>, k: u32| model.iter().position(|e| e.0 == k);
    match *op {
        DictOp::Insert(k, v) => match at(model, k) {
            Some(i) => model[i].1 = v,
            None if model.len() < KILL_DICT_CAP => model.push((k, v)),
            None => {}
        },
        DictOp::Remove(k) => {
            if let Some(i) = at(model, k) {
                model.remove(i);
            }
        }
        DictOp::Bump(k) => match at(model, k) {
            Some(i) => model[i].1 += 1,
            None if model.len() < KILL_DICT_CAP => model.push((k, 1)),
            None => {}
        },
        DictOp::Clear => model.clear(),
    }
}

/// One operation of the kill loop, and its line: `d <op>` or `l <op>`.
#[derive(Debug, Clone)]
enum Op {
    Dict(DictOp),
    List(ListOp),
}

impl Op {
    fn line(&self) -> String {
        match self {
            Op::Dict(DictOp::Insert(k, v)) => format!("di {k} {v}"),
            Op::Dict(DictOp::Remove(k)) => format!("dr {k}"),
            Op::Dict(DictOp::Bump(k)) => format!("db {k}"),
            Op::Dict(DictOp::Clear) => "dc".into(),
            Op::List(ListOp::Push(v)) => format!("lp {v}"),
            Op::List(ListOp::Pop) => "lo".into(),
            Op::List(ListOp::Set(i, v)) => format!("ls {i} {v}"),
            Op::List(ListOp::Insert(i, v)) => format!("li {i} {v}"),
            Op::List(ListOp::Remove(i)) => format!("ld {i}"),
            Op::List(ListOp::Reverse) => "lr".into(),
            Op::List(ListOp::Extend(n, v)) => format!("lx {n} {v}"),
            Op::List(ListOp::Clear) => "lc".into(),
        }
    }

    fn parse(line: &str) -> Op {
        let w: Vec<&str> = line.split(' ').collect();
        let n = |i: usize| {
            w[i].parse::<i64>()
                .unwrap_or_else(|_| panic!("bad line {line:?}"))
        };
        match w[0] {
            "di" => Op::Dict(DictOp::Insert(n(1) as u32, n(2) as u64)),
            "dr" => Op::Dict(DictOp::Remove(n(1) as u32)),
            "db" => Op::Dict(DictOp::Bump(n(1) as u32)),
            "dc" => Op::Dict(DictOp::Clear),
            "lp" => Op::List(ListOp::Push(n(1) as u64)),
            "lo" => Op::List(ListOp::Pop),
            "ls" => Op::List(ListOp::Set(n(1), n(2) as u64)),
            "li" => Op::List(ListOp::Insert(n(1), n(2) as u64)),
            "ld" => Op::List(ListOp::Remove(n(1))),
            "lr" => Op::List(ListOp::Reverse),
            "lx" => Op::List(ListOp::Extend(n(1) as usize, n(2) as u64)),
            "lc" => Op::List(ListOp::Clear),
            _ => panic!("bad line {line:?}"),
        }
    }
}

/// Both containers' model.
#[derive(Clone, Default, PartialEq, Debug)]
struct Model {
    dict: Vec<(u32, u64)>,
    list: Vec<u64>,
}

impl Model {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Dict(op) => dict_model(&mut self.dict, op),
            Op::List(op) => {
                list_model(&mut self.list, KILL_LIST_CAP, op);
            }
        }
    }
}

/// Random operations on both containers in a hot loop, each announced on stdout before it
/// starts, until killed. Mostly ones that touch many words (list reorderings, removals that
/// empty runs of the dict's index), and clears now and then.
fn random_writer(args: &[String]) {
    let d = SharedDict::<u32, u64>::open(&args[0]).expect("open");
    let l = SharedList::<u64>::open(&args[1]).expect("open");
    let mut next = xorshift(args[2].parse().expect("seed"));
    common::ready();
    loop {
        let r = next();
        let op = if r.is_multiple_of(2) {
            let k = (r >> 8) as u32 % 64;
            Op::Dict(match (r >> 1) % 64 {
                0 => DictOp::Clear,
                1..=26 => DictOp::Insert(k, r >> 40),
                27..=50 => DictOp::Remove(k),
                _ => DictOp::Bump(k),
            })
        } else {
            let len = l.len();
            let op = random_list_op(r >> 1, len);
            Op::List(match op {
                ListOp::Clear if !r.is_multiple_of(8) => ListOp::Reverse,
                ListOp::Pop | ListOp::Remove(_) if len < KILL_LIST_MIN => {
                    ListOp::Extend(5, r >> 40)
                }
                op => op,
            })
        };
        common::say(&op.line());
        match &op {
            Op::Dict(op) => dict_apply(&d, op),
            Op::List(op) => {
                list_apply(&l, op);
            }
        }
    }
}

fn snapshot(d: &SharedDict<u32, u64>, l: &SharedList<u64>) -> Model {
    Model {
        dict: d.items().expect("items after a kill"),
        list: l.to_vec().expect("to_vec after a kill"),
    }
}

/// The kill loop: a child runs random operations on a dict and a list and is SIGKILLed at a
/// random point; every operation it announced before the last one must be there, the last one
/// done or not done, nothing torn, lost or doubled. The containers carry over from trial to
/// trial, so later children work on what killed ones left.
fn killed_writers_leave_consistent_containers() {
    let (dn, ln) = (name("kill-d"), name("kill-l"));
    let d = SharedDict::<u32, u64>::create(&dn, KILL_DICT_CAP).expect("create");
    let l = SharedList::<u64>::create(&ln, KILL_LIST_CAP).expect("create");
    let mut model = Model {
        list: (0..2 * KILL_LIST_MIN as u64).collect(),
        ..Model::default()
    };
    l.extend(model.list.iter().copied()).expect("fill");
    let mut next = xorshift(0x0dd_ba11_cafe_f00d);
    let (mut ops, mut applied, mut not_applied, mut both) = (0u64, 0u64, 0u64, 0u64);
    let mut samples = Vec::new();
    for trial in 0..trials() {
        let seed = (next() | 1).to_string();
        let mut child = Child::spawn("random_writer", &[&dn, &ln, &seed]);
        child.wait_ready();
        // Let a random number of operations by, then kill wherever the child is. Each line
        // read means the one before it is done.
        let mut announced = Vec::new();
        for _ in 0..next() % 400 {
            announced.push(Op::parse(&child.line()));
        }
        let killed = Instant::now();
        child.kill();
        // The first reads after the kill: they repair what the dead writer left, if it died
        // holding the lock. The lines it wrote before it died stay in the pipe meanwhile.
        let got = snapshot(&d, &l);
        samples.push(killed.elapsed());
        announced.extend(std::iter::from_fn(|| child.try_line()).map(|l| Op::parse(&l)));
        let last = announced.pop();
        for op in &announced {
            model.apply(op);
        }
        ops += announced.len() as u64;
        let mut done = model.clone();
        if let Some(op) = &last {
            done.apply(op);
        }
        match (got == model, got == done) {
            (true, true) => both += 1,
            (true, false) => not_applied += 1,
            (false, true) => {
                applied += 1;
                model = done;
            }
            (false, false) => panic!(
                "trial {trial}: in flight {last:?}\n got {got:?}\n not applied {model:?}\n applied {done:?}"
            ),
        }
        assert_eq!(d.len(), model.dict.len(), "trial {trial}");
        assert_eq!(l.len(), model.list.len(), "trial {trial}");
    }
    eprintln!(
        "kill loop: {} trials, {ops} operations checked, {} kills repaired (lock held), in-flight op applied {applied}, not applied {not_applied}, no-op {both}",
        trials(),
        d.repairs() + l.repairs(),
    );
    common::sync::report(
        "containers, writer killed: kill to a consistent snapshot of both",
        &mut samples,
    );
    assert!(d.len() + l.len() > 0);
}

// ---- damaged memory ------------------------------------------------------------------------

/// Garbage written over the containers' payload (not the header or lock, which their own tests
/// cover): every operation returns, `Ok` or `Err`, and `clear` makes them usable again.
fn damaged_memory_errors_never_panics() {
    let mut next = xorshift(0x5eed_0fda_3a9e_5d1b);
    for round in 0..200 {
        let (dn, ln) = (name("dmg-d"), name("dmg-l"));
        let d = SharedDict::<u16, u32>::create(&dn, 6).expect("create");
        let l = SharedList::<u32>::create(&ln, 6).expect("create");
        for k in 0..5 {
            d.insert(k, 7).expect("insert");
            l.push(7).expect("push");
        }
        d.remove(&2).expect("remove");
        for n in [&dn, &ln] {
            let base = payload_offset(n);
            let size = mpshm::segments()
                .expect("segments")
                .into_iter()
                .find(|s| &s.name == n)
                .expect("listed")
                .size;
            for _ in 0..1 + next() % 4 {
                let at = base + next() % (size - base);
                let len = 1 + next() % 8;
                let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                let end = (at + len).min(size);
                poke(n, at, &bytes[..(end - at) as usize]);
            }
        }
        let _ = d.get(&1);
        let _ = d.contains_key(&4);
        let _ = d.insert(9, 9);
        let _ = d.update(&3, |v| *v = v.map(|x| x + 1));
        let _ = d.remove(&0);
        let _ = d.items();
        let _ = (d.len(), d.is_empty());
        let _ = l.get(-1);
        let _ = l.push(1);
        let _ = l.insert(1, 2);
        let _ = l.remove(0);
        let _ = l.set(1, 3);
        let _ = l.reverse();
        let _ = l.extend([4, 5]);
        let _ = l.pop();
        let _ = l.to_vec();
        let _ = (l.len(), l.is_empty());
        d.clear()
            .unwrap_or_else(|e| panic!("round {round}: clear: {e}"));
        l.clear()
            .unwrap_or_else(|e| panic!("round {round}: clear: {e}"));
        for k in 0..6 {
            d.insert(k, 1)
                .unwrap_or_else(|e| panic!("round {round}: insert after clear: {e}"));
            l.push(1)
                .unwrap_or_else(|e| panic!("round {round}: push after clear: {e}"));
        }
        assert_eq!(
            d.items().expect("items"),
            (0..6).map(|k| (k, 1)).collect::<Vec<_>>()
        );
        assert_eq!(l.to_vec().expect("to_vec"), [1; 6]);
    }
}
