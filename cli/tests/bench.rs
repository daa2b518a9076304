//! `mpshm bench` runs: a short run of most groups prints JSON that parses, with a figure in
//! every row and the ratios where their baselines ran; the chart is drawn; bad options are
//! refused; nothing is left in `/dev/shm`.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};

use serde_json::Value;

fn main() {
    common::run(
        tests![
            a_short_run_prints_json,
            streams_and_the_chart,
            the_pool_process_and_dict_groups_run,
            bad_options_are_refused
        ],
        routines![],
    );
}

/// Runs `mpshm bench ARGS`, which must succeed and leave no segment behind; its stdout as JSON.
fn bench(args: &[&str]) -> Value {
    let child = Command::new(env!("CARGO_BIN_EXE_mpshm"))
        .arg("bench")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mpshm bench");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "mpshm bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .expect("/dev/shm")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            n.starts_with(&format!("mb-{pid}-")) || n.starts_with(&format!("mpshm-floor-{pid}-"))
        })
        .collect();
    assert!(left.is_empty(), "the bench left {left:?}");
    serde_json::from_slice(&out.stdout).expect("the output is JSON")
}

fn row<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no row {id}"))
}

fn a_short_run_prints_json() {
    let report = bench(&[
        "--quick",
        "--rounds",
        "2",
        "--secs",
        "0.005",
        "--only",
        "rt,counter,death",
        "--json",
    ]);
    assert_eq!(report["settings"]["rounds"], 2);
    assert!(report["gauge_median_ns"].as_f64().expect("a gauge") > 0.0);
    let rows = report["rows"].as_array().expect("rows");
    for r in rows {
        if r["side"] != "python" {
            assert!(r["median"].as_f64().is_some_and(|m| m > 0.0), "{r}");
            assert_eq!(
                r["rounds_seconds_per_operation"].as_array().map(Vec::len),
                Some(2),
                "{r}"
            );
        }
    }
    for id in [
        "rt/queue-spinning",
        "rt/queue-parked",
        "rt/spscqueue-parked",
        "rt/pipe-parked",
        "rt/floor-futex",
        "rt/os-pipe",
        "counter/value-update",
        "counter/floor",
        "death/pipe",
        "death/lock-blocked",
        "death/lock-floor-blocked",
        "death/lock-reaped",
        "death/lock-floor-reaped",
        "death/semaphore",
        "death/barrier",
    ] {
        row(&report, id);
    }
    // Ratios where the baselines ran: the parked round trip beside the futex floor and the
    // pipe; the counter and the lock owner's death beside the C mutex.
    let parked = row(&report, "rt/queue-parked");
    assert!(
        parked["vs"]["floor"].as_f64().is_some_and(|r| r > 0.0),
        "{parked}"
    );
    assert!(
        parked["vs"]["pipe"].as_f64().is_some_and(|r| r > 0.0),
        "{parked}"
    );
    let counter = row(&report, "counter/value-update");
    assert!(
        counter["vs"]["floor"].as_f64().is_some_and(|r| r > 0.0),
        "{counter}"
    );
    for id in [
        "death/lock-blocked",
        "death/lock-reaped",
        "death/semaphore",
        "death/barrier",
    ] {
        let dead = row(&report, id);
        assert!(
            dead["vs"]["floor"].as_f64().is_some_and(|r| r > 0.0),
            "{dead}"
        );
    }
    // Python's rows, where python3 is here (a failure would be noted and left out).
    if report["python"].is_string() {
        let py = row(&report, "rt/python-queue");
        assert!(
            py["median"].as_f64().is_some() || py["failed"].is_string(),
            "{py}"
        );
    }
}

/// The groups that time the pool, process start and the shared dict: each row has a figure,
/// and Python's rows, where python3 is here, are there as baselines (or noted as failed).
fn the_pool_process_and_dict_groups_run() {
    let report = bench(&[
        "--quick",
        "--rounds",
        "1",
        "--secs",
        "0.005",
        "--only",
        "pool,process,dict",
        "--json",
    ]);
    for id in [
        "pool/map",
        "pool/apply-async",
        "process/spawn",
        "process/forkserver",
        "dict/plain",
        "dict/serde",
    ] {
        let r = row(&report, id);
        assert!(r["median"].as_f64().is_some_and(|m| m > 0.0), "{r}");
    }
    if report["python"].is_string() {
        for id in [
            "pool/python-map",
            "pool/python-apply-async",
            "process/python-spawn",
            "process/python-fork",
            "process/python-forkserver",
            "dict/python",
        ] {
            let py = row(&report, id);
            assert!(
                py["median"].as_f64().is_some() || py["failed"].is_string(),
                "{py}"
            );
        }
    }
}

fn streams_and_the_chart() {
    let svg = std::env::temp_dir().join(format!("mpshm-bench-test-{}.svg", std::process::id()));
    let svg_arg = svg.to_str().expect("a UTF-8 path");
    let report = bench(&[
        "--rounds",
        "1",
        "--secs",
        "0.005",
        "--only",
        "stream",
        "--sizes",
        "64,1M",
        "--no-python",
        "--json",
        "--plot",
        svg_arg,
    ]);
    for size in [64, 1 << 20] {
        for what in ["queue", "spscqueue", "pipe", "floor", "os-pipe", "socket"] {
            let r = row(&report, &format!("stream-{size}/{what}"));
            assert!(r["median"].as_f64().is_some_and(|m| m > 0.0), "{r}");
        }
        let q = row(&report, &format!("stream-{size}/queue"));
        assert_eq!(q["bytes_per_operation"], size);
        assert!(q["vs"]["floor"].as_f64().is_some(), "{q}");
    }
    let drawn = std::fs::read_to_string(&svg).expect("the chart");
    std::fs::remove_file(&svg).expect("remove the chart");
    assert!(
        drawn.contains("<svg") && drawn.contains("mpshm Queue"),
        "{drawn:.200}"
    );
}

fn bad_options_are_refused() {
    for args in [
        &["--only", "nonsense"][..],
        &["--sizes", "100"][..],
        &["--rounds", "0"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_mpshm"))
            .arg("bench")
            .args(args)
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(!out.stderr.is_empty());
    }
}
