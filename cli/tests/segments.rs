//! `mpshm ls`, `inspect`, `rm` and `gc`, run as a user runs them, on real segments: orphans
//! of a `SIGKILL`ed creator found and collected, live ones kept, files without an mpshm header
//! left alone, other layout versions shown as such.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::{Seek, SeekFrom, Write};
use std::process::{Command, Output};

use common::{Child, name};
use mpshm::prelude::*;
use serde_json::Value;

fn main() {
    common::run(
        tests![
            ls_and_inspect_show_who_is_attached,
            gc_collects_orphans_and_keeps_the_used,
            a_read_only_mapping_is_no_user,
            rm_refuses_a_file_without_a_header,
            other_layout_versions_are_shown_as_such,
            every_kind_is_listed_and_inspected,
            damaged_and_foreign_files_are_refused_not_panicked_on
        ],
        routines![make_and_wait, map_read_only],
    );
}

/// Runs `mpshm ARGS`.
fn mpshm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mpshm"))
        .args(args)
        .output()
        .expect("run mpshm")
}

/// Runs `mpshm ARGS`, which must succeed; its stdout.
fn ok(args: &[&str]) -> String {
    let out = mpshm(args);
    assert!(
        out.status.success(),
        "mpshm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&ok(args)).expect("json")
}

/// The `ls --json` entry of segment `n`.
fn listed(n: &str) -> Option<Value> {
    json(&["ls", "--json"])
        .as_array()
        .expect("a list")
        .iter()
        .find(|s| s["name"] == n)
        .cloned()
}

fn exists(n: &str) -> bool {
    common::exists(n)
}

fn me() -> u64 {
    u64::from(std::process::id())
}

fn ls_and_inspect_show_who_is_attached() {
    let q = name("q");
    let queue = mpshm::Queue::<u64>::create(&q, 8).expect("create");
    queue.put(5).expect("put");
    let l = name("lock");
    let lock = mpshm::Lock::create(&l, ()).expect("create");
    let guard = lock.acquire().expect("acquire");
    let v = name("value");
    let _value = mpshm::Value::<u32>::create(&v, 3).expect("create");

    let entry = listed(&q).expect("the queue is listed");
    assert_eq!(entry["kind"], "queue");
    assert_eq!(entry["type_tag"], "u64");
    assert_eq!(entry["creator_pid"], me());
    assert_eq!(entry["creator_alive"], true);
    assert_eq!(entry["version"], mpshm::LAYOUT_VERSION);
    assert_eq!(entry["state"]["len"], 1);
    assert_eq!(entry["state"]["capacity"], 8);
    assert_eq!(entry["attached"][0]["role"], "producer");
    assert_eq!(entry["attached"][0]["pid"], me());
    assert!(
        entry["mapped_by"]
            .as_array()
            .expect("pids")
            .contains(&me().into())
    );

    let lock_entry = json(&["inspect", &l, "--json"]);
    assert_eq!(lock_entry["kind"], "lock");
    assert_eq!(lock_entry["lock"]["owner_pid"], me());
    drop(guard);
    let lock_entry = json(&["inspect", &l, "--json"]);
    assert_eq!(lock_entry["lock"]["owner_pid"], Value::Null);

    // The tables, for people.
    let table = ok(&["ls"]);
    let row = table
        .lines()
        .find(|line| line.starts_with(&q))
        .expect("a row for the queue");
    assert!(
        row.contains("queue") && row.contains(&me().to_string()),
        "{row}"
    );
    let text = ok(&["inspect", &v]);
    assert!(text.contains("value") && text.contains("u32"), "{text}");
    let text = ok(&["inspect", &q]);
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).filter(|rest| rest.starts_with(' ')))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {k} in {text}"))
            .to_owned()
    };
    assert_eq!((field("len"), field("capacity")), ("1".into(), "8".into()));
    assert!(text.contains("producer"), "{text}");

    // A name that is not there.
    let out = mpshm(&["inspect", &name("none")]);
    assert!(!out.status.success());
}

/// An inspection elsewhere (another `mpshm ls`, `inspect` or `gc`, which map a segment
/// read-only for a moment) does not make an orphan look used: `ls` lists no user and `gc`
/// removes it.
fn a_read_only_mapping_is_no_user() {
    let prefix = name("ro");
    let orphan = format!("{prefix}-orphan");
    let mut creator = Child::spawn("make_and_wait", &[&format!("queue:{orphan}")]);
    creator.wait_ready();
    creator.kill();
    let mut reader = Child::spawn("map_read_only", &[&orphan]);
    reader.wait_ready();

    let entry = listed(&orphan).expect("the orphan is listed");
    assert_eq!(entry["creator_alive"], false);
    assert_eq!(entry["users"], Value::Array(vec![]), "{entry}");
    let removed = json(&["gc", "--json", "--prefix", &prefix]);
    assert_eq!(removed[0]["name"], orphan.as_str(), "{removed}");
    assert_eq!(removed[0]["action"], "removed", "{removed}");
    assert!(!exists(&orphan));
    reader.kill();
}

/// In a child: maps segment `args[0]` read-only, as an inspection does, then waits to be killed.
fn map_read_only(args: &[String]) {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(format!("/dev/shm/{}", args[0])).expect("open");
    let len = file.metadata().expect("metadata").len() as usize;
    // SAFETY: a fresh read-only shared mapping of a file we hold open; nothing reads through
    // it, and it stays until the process is killed.
    let at = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(at, libc::MAP_FAILED, "mmap");
    common::ready();
    common::park();
}

/// In a child: makes the segments named by the arguments (`kind:name`), then waits to be killed.
fn make_and_wait(args: &[String]) {
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    for a in args {
        let (kind, n) = a.split_once(':').expect("kind:name");
        keep.push(match kind {
            "queue" => Box::new(mpshm::Queue::<u64>::create(n, 4).expect("create")),
            "value" => Box::new(mpshm::Value::<u64>::create(n, 0).expect("create")),
            _ => panic!("no kind {kind}"),
        });
    }
    common::ready();
    common::park();
}

fn gc_collects_orphans_and_keeps_the_used() {
    let prefix = name("gc");
    let orphan = format!("{prefix}-orphan");
    let mapped = format!("{prefix}-mapped");
    let attached = format!("{prefix}-attached");
    let live = format!("{prefix}-live");
    let mut child = Child::spawn(
        "make_and_wait",
        &[
            &format!("queue:{orphan}"),
            &format!("value:{mapped}"),
            &format!("queue:{attached}"),
        ],
    );
    child.wait_ready();
    let _live = mpshm::Value::<u64>::create(&live, 1).expect("create");
    // Used by this process once its creator is gone: mapped (a value keeps no records), and
    // attached as a producer.
    let value = mpshm::Value::<u64>::open(&mapped).expect("open");
    let queue = mpshm::Queue::<u64>::open(&attached).expect("open");
    queue.put(1).expect("put");
    child.kill();

    let entry = listed(&orphan).expect("the orphan is listed");
    assert_eq!(entry["creator_alive"], false);
    assert_eq!(entry["users"], Value::Array(vec![]));

    let actions = |dry: bool| -> Vec<(String, String)> {
        let mut args = vec!["gc", "--json", "--prefix", &prefix];
        if dry {
            args.push("--dry-run");
        }
        json(&args)
            .as_array()
            .expect("a list")
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().expect("name").to_owned(),
                    r["action"].as_str().expect("action").to_owned(),
                )
            })
            .collect()
    };
    let mut want = vec![
        (attached.clone(), "kept".to_owned()),
        (live.clone(), "kept".to_owned()),
        (mapped.clone(), "kept".to_owned()),
        (orphan.clone(), "would remove".to_owned()),
    ];
    assert_eq!(actions(true), want);
    assert!(exists(&orphan), "a dry run removes nothing");
    want[3].1 = "removed".to_owned();
    assert_eq!(actions(false), want);
    assert!(!exists(&orphan));
    assert!(exists(&mapped) && exists(&attached) && exists(&live));

    // Once this process lets go, the other two are orphans too; the live one stays.
    drop((value, queue));
    assert_eq!(
        actions(false),
        [
            (attached.clone(), "removed".to_owned()),
            (live.clone(), "kept".to_owned()),
            (mapped.clone(), "removed".to_owned()),
        ]
    );
    assert!(!exists(&mapped) && !exists(&attached) && exists(&live));
}

fn rm_refuses_a_file_without_a_header() {
    let foreign = name("foreign");
    let path = std::path::Path::new("/dev/shm").join(&foreign);
    std::fs::write(&path, b"not a segment").expect("write");
    let out = mpshm(&["rm", &foreign]);
    assert!(
        !out.status.success(),
        "rm must refuse a file without a header"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not an mpshm segment"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(exists(&foreign));
    ok(&["rm", "--force", &foreign]);
    assert!(!exists(&foreign));

    let seg = name("rm");
    let v = mpshm::RawValue::<u64>::create(&seg, 1).expect("create");
    v.persist();
    drop(v);
    ok(&["rm", &seg]);
    assert!(!exists(&seg));
    assert!(!mpshm(&["rm", &seg]).status.success(), "gone already");
}

fn other_layout_versions_are_shown_as_such() {
    let n = name("ver");
    let v = mpshm::Value::<u64>::create(&n, 1).expect("create");
    let set_version = |version: u32| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(std::path::Path::new("/dev/shm").join(&n))
            .expect("open");
        f.seek(SeekFrom::Start(8)).expect("seek");
        f.write_all(&version.to_le_bytes()).expect("write");
    };
    let newer = mpshm::LAYOUT_VERSION + 1;
    set_version(newer);
    let entry = listed(&n).expect("listed");
    assert_eq!(entry["version"], newer);
    assert_eq!(entry["kind"], Value::Null);
    let row = ok(&["ls"]);
    let row = row.lines().find(|l| l.starts_with(&n)).expect("a row");
    assert!(row.contains(&format!("layout v{newer} (newer)")), "{row}");
    let text = ok(&["inspect", &n]);
    assert!(text.contains("newer than this build's"), "{text}");
    let kept = json(&["gc", "--json", "--dry-run", "--prefix", &n]);
    assert_eq!(kept[0]["action"], "kept", "{kept}");

    let older = mpshm::LAYOUT_VERSION - 1;
    set_version(older);
    let row = ok(&["ls"]);
    let row = row.lines().find(|l| l.starts_with(&n)).expect("a row");
    assert!(row.contains(&format!("value (layout v{older})")), "{row}");
    let text = ok(&["inspect", &n]);
    assert!(text.contains("older than this build's"), "{text}");
    set_version(mpshm::LAYOUT_VERSION);
    drop(v);
}

/// A segment of some kind under a name; the handle keeps it.
type Maker = fn(&str) -> Box<dyn std::any::Any>;

/// One segment of every kind, made by this process: each listed by `ls` and inspected by
/// `inspect` under its kind, its state read (no error), this process named as its creator.
fn every_kind_is_listed_and_inspected() {
    let kinds: [(&str, Maker); 17] = [
        ("value", |n| {
            Box::new(mpshm::Value::<u64>::create(n, 1).expect("create"))
        }),
        ("raw value", |n| {
            Box::new(mpshm::RawValue::<u64>::create(n, 1).expect("create"))
        }),
        ("array", |n| {
            Box::new(mpshm::Array::<u32>::create(n, 3).expect("create"))
        }),
        ("raw array", |n| {
            Box::new(mpshm::RawArray::<u16>::create(n, 3).expect("create"))
        }),
        ("lock", |n| {
            Box::new(mpshm::Lock::create(n, ()).expect("create"))
        }),
        ("rlock", |n| {
            Box::new(mpshm::RLock::create(n, ()).expect("create"))
        }),
        ("queue", |n| {
            Box::new(mpshm::Queue::<u64>::create(n, 4).expect("create"))
        }),
        ("joinable queue", |n| {
            Box::new(mpshm::JoinableQueue::<u64>::create(n, 4).expect("create"))
        }),
        ("spsc queue", |n| {
            Box::new(mpshm::SpscQueue::create::<u64>(n, 4).expect("create"))
        }),
        ("pipe", |n| {
            Box::new(mpshm::Pipe::create(n).expect("create"))
        }),
        ("dict", |n| {
            Box::new(mpshm::SharedDict::<u64, u64>::create(n, 4).expect("create"))
        }),
        ("list", |n| {
            Box::new(mpshm::SharedList::<u64>::create(n, 4).expect("create"))
        }),
        ("semaphore", |n| {
            Box::new(mpshm::Semaphore::create(n, 2).expect("create"))
        }),
        ("bounded semaphore", |n| {
            Box::new(mpshm::BoundedSemaphore::create(n, 2).expect("create"))
        }),
        ("event", |n| {
            Box::new(mpshm::Event::create(n, ()).expect("create"))
        }),
        ("condition", |n| {
            Box::new(mpshm::Condition::create(n, mpshm::ConditionLock::Own).expect("create"))
        }),
        ("barrier", |n| {
            Box::new(mpshm::Barrier::create(n, 2).expect("create"))
        }),
    ];
    let prefix = name("kind");
    let mut keep = Vec::new();
    for (i, (kind, make)) in kinds.iter().enumerate() {
        let n = format!("{prefix}-{i}");
        keep.push(make(&n));
        let entry = json(&["inspect", &n, "--json"]);
        assert_eq!(entry["kind"], *kind, "{entry}");
        assert_eq!(entry["creator_pid"], me(), "{entry}");
        assert!(entry.get("error").is_none(), "{kind}: {entry}");
        assert!(entry["state"].is_object(), "{kind}: {entry}");
        let listed = listed(&n).unwrap_or_else(|| panic!("{kind} not listed"));
        assert_eq!(listed["kind"], *kind);
        let text = ok(&["inspect", &n]);
        assert!(!text.contains("not read"), "{kind}: {text}");
    }
    let table = ok(&["ls"]);
    for (i, (kind, _)) in kinds.iter().enumerate() {
        let n = format!("{prefix}-{i}");
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("{n} ")))
            .unwrap_or_else(|| panic!("no row for {n} in {table}"));
        assert!(row.contains(kind) && !row.contains("damaged"), "{row}");
    }
    // Every one has a live creator (this process): gc keeps them all.
    let kept = json(&["gc", "--json", "--prefix", &prefix]);
    let kept = kept.as_array().expect("a list");
    assert_eq!(kept.len(), kinds.len());
    assert!(kept.iter().all(|r| r["action"] == "kept"), "{kept:?}");
    drop(keep);
}

/// Runs `mpshm ARGS`, which may fail but must not panic or die by a signal; whether it
/// succeeded, and its stdout.
fn no_panic(args: &[&str]) -> (bool, String) {
    let out = mpshm(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0 | 1)) && !stderr.contains("panicked"),
        "mpshm {args:?}: {:?}, {stderr}",
        out.status
    );
    (
        out.status.success(),
        String::from_utf8(out.stdout).expect("utf-8"),
    )
}

/// Overwrites `bytes` at `offset` of the file `n` in /dev/shm.
fn scribble(n: &str, offset: u64, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(std::path::Path::new("/dev/shm").join(n))
        .expect("open");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    f.write_all(bytes).expect("write");
}

/// A segment whose geometry no opener would accept is shown as damaged with the library's
/// reason; a file without a header is refused by `inspect` with an error, and left out of
/// `ls`; a header of random bytes behind a valid magic and version makes no command panic.
fn damaged_and_foreign_files_are_refused_not_panicked_on() {
    // The queue's capacity (the header's first parameter, at 88) made absurd.
    let q = name("dmg");
    let queue = mpshm::Queue::<u64>::create(&q, 4).expect("create");
    scribble(&q, 88, &u64::MAX.to_le_bytes());
    let entry = json(&["inspect", &q, "--json"]);
    assert!(
        entry["error"]
            .as_str()
            .is_some_and(|e| e.contains("corrupt") || e.contains("damaged")),
        "{entry}"
    );
    let row = ok(&["ls"]);
    let row = row.lines().find(|l| l.starts_with(&q)).expect("a row");
    assert!(row.contains("queue (damaged)"), "{row}");
    let text = ok(&["inspect", &q]);
    assert!(text.contains("not read:"), "{text}");
    drop(queue);

    // A header that names no creator (its pid, at 72, zeroed): nothing shows the creator
    // dead, so gc keeps it; rm removes it.
    let z = name("nopid");
    let value = mpshm::Value::<u64>::create(&z, 1).expect("create");
    value.persist();
    drop(value);
    scribble(&z, 72, &0u32.to_le_bytes());
    let kept = json(&["gc", "--json", "--prefix", &z]);
    assert_eq!(kept[0]["action"], "kept", "{kept}");
    assert!(exists(&z));
    ok(&["rm", &z]);

    // A file without an mpshm header.
    let f = name("fgn");
    std::fs::write(std::path::Path::new("/dev/shm").join(&f), vec![7u8; 4096]).expect("write");
    let (ok_, _) = no_panic(&["inspect", &f]);
    assert!(!ok_, "inspect must refuse a file without a header");
    assert!(listed(&f).is_none(), "ls lists only mpshm segments");
    let (_, out) = no_panic(&["gc", "--json", "--prefix", &f]);
    assert_eq!(out.trim(), "[]", "gc never looks at a foreign file");
    std::fs::remove_file(std::path::Path::new("/dev/shm").join(&f)).expect("remove");

    // Random header words behind a valid magic and version, then random bytes after them.
    let mut seed = u64::from(std::process::id()) | 1;
    let mut next = || {
        // xorshift64
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..24 {
        let n = name("fuzz");
        let value = mpshm::Value::<u64>::create(&n, 1).expect("create");
        value.persist();
        drop(value);
        let (from, to) = if round % 2 == 0 {
            (12, 128)
        } else {
            (16, 4096)
        };
        let mut bytes = Vec::new();
        while bytes.len() < to - from {
            bytes.extend(next().to_le_bytes());
        }
        bytes.truncate(to - from);
        // Keep a few fields as they were, so that some cases get past the first checks.
        if round % 3 == 0 {
            bytes[..4].fill(0);
        }
        std::fs::OpenOptions::new()
            .write(true)
            .open(std::path::Path::new("/dev/shm").join(&n))
            .and_then(|f| f.set_len(4096))
            .expect("extend");
        scribble(&n, from as u64, &bytes);
        no_panic(&["ls"]);
        no_panic(&["ls", "--json"]);
        no_panic(&["inspect", &n]);
        no_panic(&["inspect", &n, "--json"]);
        no_panic(&["gc", "--dry-run", "--prefix", &n]);
        no_panic(&["rm", &n]);
        if exists(&n) {
            no_panic(&["rm", "--force", &n]);
        }
        assert!(!exists(&n));
    }
}
