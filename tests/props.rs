//! Property tests: names, values and arrays surviving the trip through a segment, and the
//! containers' operations against a model (the `container_ops` fuzz target's check, run here on
//! proptest's inputs so that a machine without a nightly toolchain runs it too).

use std::sync::atomic::{AtomicU32, Ordering};

use mpshm::prelude::*;
use mpshm::{Array, Error, RawArray, Value};
use proptest::prelude::*;

#[path = "../fuzz/container_model.rs"]
mod container_model;

fn name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "mpt{}-p{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn valid_names_are_accepted(tail in "[A-Za-z0-9_.-]{0,12}") {
        let n = format!("{}{}", name(), tail);
        prop_assume!(n.len() <= 30);
        let v = Value::<u8>::create(&n, 1).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(v.name(), n.as_str());
    }

    #[test]
    fn names_with_a_bad_byte_are_refused(
        head in "[a-z]{1,5}",
        bad in "[^A-Za-z0-9_.-]",
        tail in "[a-z]{0,5}",
    ) {
        let n = format!("{head}{bad}{tail}");
        let refused = matches!(Value::<u8>::create(&n, 0), Err(Error::InvalidName { .. }));
        prop_assert!(refused, "{:?}", n);
    }

    #[test]
    fn long_names_are_refused(n in "[a-z]{31,64}") {
        let refused = matches!(Value::<u8>::open(&n), Err(Error::InvalidName { .. }));
        prop_assert!(refused);
    }

    #[test]
    fn values_round_trip(x in any::<[u64; 3]>(), y in any::<f64>()) {
        let n = name();
        let v = Value::<[u64; 3]>::create(&n, x).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(Value::<[u64; 3]>::open(&n).expect("open").get().expect("get"), x);
        drop(v);
        let w = Value::<f64>::create(&n, y).expect("create");
        prop_assert_eq!(w.get().expect("get").to_bits(), y.to_bits());
    }

    #[test]
    fn arrays_round_trip(xs in prop::collection::vec(any::<u16>(), 1..3000), i in any::<prop::sample::Index>()) {
        let n = name();
        let a = Array::from_slice(&n, &xs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let b = Array::<u16>::open(&n).expect("open");
        prop_assert_eq!(b.to_vec().expect("to_vec"), xs.clone());
        let k = i.index(xs.len());
        prop_assert_eq!(b.get(k).expect("get"), xs[k]);
        prop_assert_eq!(&*a.lock().expect("lock"), xs.as_slice());
    }

    #[test]
    fn unaligned_raw_array_copies(xs in prop::collection::vec(any::<[u8; 3]>(), 1..500)) {
        let n = name();
        let a = RawArray::<[u8; 3]>::from_slice(&n, &xs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(a.to_vec(), xs.clone());
        for (k, x) in xs.iter().enumerate() {
            prop_assert_eq!(a.get(k), Ok(*x));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Byte 0 picks the mode (bit 0: model or damaged memory) and the capacities; the rest are
    /// operations, or patches (the format is in `fuzz/container_model.rs`).
    #[test]
    fn container_operations_match_a_model(data in prop::collection::vec(any::<u8>(), 0..400)) {
        container_model::run(&data, &name(), &name());
    }

    /// The model mode alone, with longer runs of operations on containers of every capacity.
    #[test]
    fn container_operations_match_a_model_at_length(
        head in any::<u8>(),
        ops in prop::collection::vec(any::<u8>(), 200..2000),
    ) {
        let mut data = vec![head & !1];
        data.extend(ops);
        container_model::run(&data, &name(), &name());
    }
}
