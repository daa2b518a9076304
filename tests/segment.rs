//! Segment names, the header handshake, damaged segments, ownership and the listing API.

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use common::{Child, name};
use mpshm::prelude::*;
use mpshm::{Error, Kind, Options, Value};

fn main() {
    common::run(
        tests![
            bad_names_are_refused,
            leading_slash_is_accepted,
            missing_name_is_not_found,
            create_twice_is_already_exists,
            creator_unlinks_opener_does_not,
            persist_keeps_the_name,
            garbage_header_fails_cleanly,
            scribbled_fields_fail_cleanly,
            scribbled_mutex_type_is_refused,
            short_file_fails_after_the_timeout,
            unready_segment_is_not_ready,
            open_waits_for_a_slow_creator,
            listing_shows_kind_payload_and_creator,
            killed_creator_leaves_a_visible_orphan,
            mode_is_applied
        ],
        routines![create_persisted_and_wait],
    );
}

fn shm_path(n: &str) -> std::path::PathBuf {
    std::path::Path::new("/dev/shm").join(n)
}

fn quick() -> Options {
    let mut o = Options::new();
    o.open_timeout(Duration::from_millis(50));
    o
}

/// Writes `bytes` as the whole content of a new shm object `n`.
fn write_raw(n: &str, bytes: &[u8]) {
    std::fs::write(shm_path(n), bytes).expect("write raw shm file");
}

fn bad_names_are_refused() {
    let long = "a".repeat(31);
    for bad in [
        "",
        "/",
        "a/b",
        "//a",
        ".hidden",
        "sp ace",
        "ü",
        "a\0b",
        long.as_str(),
        "tab\t",
    ] {
        match Value::<u8>::create(bad, 0) {
            Err(Error::InvalidName { name, reason }) => {
                assert_eq!(name, bad);
                assert!(!reason.is_empty());
            }
            other => panic!("{bad:?}: expected InvalidName, got {other:?}"),
        }
        assert!(matches!(
            Value::<u8>::open(bad),
            Err(Error::InvalidName { .. })
        ));
    }
    let msg = Value::<u8>::create("a/b", 0).expect_err("bad").to_string();
    assert!(msg.contains("letters, digits"), "{msg}");
    // 30 bytes is the longest accepted.
    let n = format!("{}{}", name("m"), "x".repeat(30))
        .chars()
        .take(30)
        .collect::<String>();
    drop(Value::<u8>::create(&n, 0).expect("30 bytes is fine"));
}

fn leading_slash_is_accepted() {
    let n = name("slash");
    let v = Value::<u8>::create(&format!("/{n}"), 3).expect("create with slash");
    assert_eq!(
        Value::<u8>::open(&n)
            .expect("open without")
            .get()
            .expect("get"),
        3
    );
    assert_eq!(v.name(), n);
}

fn missing_name_is_not_found() {
    let n = name("none");
    match Value::<u64>::open(&n) {
        Err(Error::NotFound { name }) => assert_eq!(name, n),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(matches!(mpshm::unlink(&n), Err(Error::NotFound { .. })));
}

fn create_twice_is_already_exists() {
    let n = name("twice");
    let _a = Value::<u64>::create(&n, 1).expect("create");
    assert!(matches!(
        Value::<u64>::create(&n, 2),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        mpshm::Array::<u8>::create(&n, 4),
        Err(Error::AlreadyExists { .. })
    ));
    // The failed create did not disturb the first.
    assert_eq!(Value::<u64>::open(&n).expect("open").get().expect("get"), 1);
}

fn creator_unlinks_opener_does_not() {
    let n = name("own");
    let creator = Value::<u64>::create(&n, 5).expect("create");
    let opener = Value::<u64>::open(&n).expect("open");
    drop(Value::<u64>::open(&n).expect("open"));
    assert!(common::exists(&n), "an opener's drop must not unlink");
    drop(creator);
    assert!(!common::exists(&n), "the creator's drop unlinks");
    // The opener's mapping stays valid.
    assert_eq!(opener.get().expect("get"), 5);
    opener.set(6).expect("set");
    assert!(matches!(
        Value::<u64>::open(&n),
        Err(Error::NotFound { .. })
    ));
}

fn persist_keeps_the_name() {
    let n = name("keep");
    let v = Value::<u32>::create(&n, 9).expect("create");
    v.persist();
    drop(v);
    assert_eq!(
        Value::<u32>::open(&n)
            .expect("still there")
            .get()
            .expect("get"),
        9
    );
    mpshm::unlink(&n).expect("unlink");
    assert!(!common::exists(&n));
}

fn expect_corrupt<T: std::fmt::Debug>(r: Result<T, Error>, what: &str) {
    match r {
        Err(Error::Corrupt { reason, .. }) => assert!(!reason.is_empty()),
        Err(
            Error::IncompatibleVersion { .. }
            | Error::KindMismatch { .. }
            | Error::TypeMismatch { .. }
            | Error::LayoutMismatch { .. },
        ) => {}
        other => panic!("{what}: expected a clean refusal, got {other:?}"),
    }
}

fn garbage_header_fails_cleanly() {
    let n = name("junk");
    let mut state = 0x1234_5678_9abc_def0u64;
    for len in [0usize, 1, 7, 64, 255, 256, 300, 4096] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        write_raw(&n, &bytes);
        let start = Instant::now();
        let r = Value::<u64>::open_with(&n, &quick());
        assert!(r.is_err(), "garbage of {len} bytes opened");
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(mpshm::Array::<u8>::open_with(&n, &quick()).is_err());
        mpshm::segments().expect("listing survives garbage");
        std::fs::remove_file(shm_path(&n)).expect("remove");
    }
}

/// Offsets of header fields (see `segment.rs`): a valid header with one field overwritten must
/// be refused, never trusted.
fn scribbled_fields_fail_cleanly() {
    let newer = (mpshm::LAYOUT_VERSION + 1).to_le_bytes();
    let fields: &[(u64, &[u8])] = &[
        (0, b"NOTMPSHM"),                                        // magic
        (8, &newer),                                             // version
        (12, &[77, 0, 0, 0]),                                    // kind
        (16, &[1, 2, 3, 4]),                                     // ready
        (20, &[0, 2, 0, 0]),                                     // header size
        (24, &[0xff; 8]),                                        // total size
        (40, &[0x80, 0x01, 0, 0, 0, 0, 0, 0]),                   // payload offset
        (48, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]), // element size
        (56, &[3, 0, 0, 0, 0, 0, 0, 0]),                         // alignment (not a power of two)
        (64, &[0xff; 8]),                                        // count
        (76, &[200, 0, 0, 0]),                                   // tag length
        (120, &[0xff, 0xfe]),                                    // tag bytes (not UTF-8)
        (184, &[9, 0, 0, 0]),                                    // the type's size
        (192, &[0xff; 8]),                                       // its layout hash
        (200, &[0xff, 0xfe]),                                    // its fields (not UTF-8)
    ];
    for &(offset, bytes) in fields {
        let n = name("scrib");
        let v = Value::<u64>::create(&n, 1).expect("create");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(shm_path(&n))
            .expect("open file");
        f.seek(SeekFrom::Start(offset)).expect("seek");
        f.write_all(bytes).expect("scribble");
        let r = Value::<u64>::open_with(&n, &quick());
        match offset {
            16 => assert!(matches!(r, Err(Error::Corrupt { .. })), "ready: {r:?}"),
            _ => expect_corrupt(r, &format!("field at {offset}")),
        }
        drop(v);
    }
}

/// The fuzzer's finds: glibc trusts a mutex's type word, and some values make it execute TSX
/// instructions (SIGILL without TSX) or take the priority-protect path (abort). Such words must
/// be refused at open, and by every lock call if they change after open.
fn scribbled_mutex_type_is_refused() {
    const KIND: u64 = 256 + 16; // lock area + offset of glibc's `__kind`
    for kind in [[0u8, 1, 0, 0], [0x43, 0, 0, 0], [0, 0, 0, 0], [0xff; 4]] {
        let n = name("mkind");
        let lock = mpshm::Lock::create(&n, ()).expect("create");
        let arr = mpshm::Array::<u32>::create(&name("akind"), 2).expect("create");
        for path in [n.clone(), arr.name().to_owned()] {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(shm_path(&path))
                .expect("open");
            f.seek(SeekFrom::Start(KIND)).expect("seek");
            f.write_all(&kind).expect("scribble");
        }
        let r = mpshm::Lock::open(&n);
        assert!(matches!(r, Err(Error::Corrupt { .. })), "{kind:?}: {r:?}");
        assert!(matches!(
            mpshm::Array::<u32>::open(arr.name()),
            Err(Error::Corrupt { .. })
        ));
        // Handles opened before the damage refuse to lock rather than crash.
        assert!(
            matches!(lock.try_acquire(), Err(mpshm::LockError::Os(_))),
            "{kind:?}"
        );
        assert!(matches!(lock.acquire(), Err(mpshm::LockError::Os(_))));
        assert!(matches!(
            lock.acquire_timeout(Duration::from_millis(1)),
            Err(mpshm::LockError::Os(_))
        ));
        assert!(matches!(arr.get(0), Err(mpshm::AccessError::Os(_))));
    }
}

fn short_file_fails_after_the_timeout() {
    let n = name("short");
    write_raw(&n, &[0; 100]);
    let start = Instant::now();
    let r = Value::<u64>::open_with(&n, &quick());
    assert!(matches!(r, Err(Error::Corrupt { .. })), "{r:?}");
    assert!(start.elapsed() >= Duration::from_millis(50));
    std::fs::remove_file(shm_path(&n)).expect("remove");
}

fn unready_segment_is_not_ready() {
    // A creator that died before publishing: a valid header whose ready word is 0.
    let n = name("unready");
    let v = Value::<u64>::create(&n, 1).expect("create");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(&n))
        .expect("open file");
    f.seek(SeekFrom::Start(16)).expect("seek");
    f.write_all(&[0; 4]).expect("clear ready");
    let start = Instant::now();
    match Value::<u64>::open_with(&n, &quick()) {
        Err(Error::NotReady { waited, .. }) => assert_eq!(waited, Duration::from_millis(50)),
        other => panic!("expected NotReady, got {other:?}"),
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(50) && took < Duration::from_secs(3),
        "{took:?}"
    );
    drop(v);
}

fn open_waits_for_a_slow_creator() {
    // The opener arrives while the object exists but is empty (a creator between `shm_open` and
    // initialisation). It must wait; when that object is replaced under the same name (the first
    // creator failed and another created it), it must follow the name and see the new one.
    let n = name("slow");
    write_raw(&n, &[]);
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        let n2 = n.clone();
        let opener = s.spawn(move || {
            tx.send(common::thread_id()).expect("send");
            let mut o = Options::new();
            o.open_timeout(Duration::from_secs(10));
            Value::<u64>::open_with(&n2, &o).map(|v| v.get().expect("get"))
        });
        common::wait_until_sleeping(rx.recv().expect("opener started"));
        std::fs::remove_file(shm_path(&n)).expect("remove");
        // The name stays missing for a while (many of the opener's 2 ms pauses): it must wait
        // for the next creator, not report the name gone.
        std::thread::sleep(Duration::from_millis(50));
        let v = Value::<u64>::create(&n, 42).expect("create");
        assert_eq!(opener.join().expect("join").expect("open"), 42);
        drop(v);
    });
}

fn listing_shows_kind_payload_and_creator() {
    let n = name("list");
    let a = mpshm::Array::<u32>::create(&n, 10).expect("create");
    let info = mpshm::segments()
        .expect("list")
        .into_iter()
        .find(|s| s.name == n)
        .expect("listed");
    assert_eq!(info.kind, Some(Kind::Array));
    assert_eq!(info.type_tag, "u32");
    assert_eq!((info.elem_size, info.count), (4, 10));
    assert_eq!(info.creator_pid, std::process::id());
    assert!(info.creator_alive && info.ready);
    assert!(info.size >= 40);
    drop(a);
    assert!(mpshm::segments().expect("list").iter().all(|s| s.name != n));
}

fn create_persisted_and_wait(args: &[String]) {
    let l = mpshm::Lock::create(&args[0], ()).expect("create");
    l.persist();
    common::ready();
    common::park();
}

fn killed_creator_leaves_a_visible_orphan() {
    let n = name("orphan");
    let mut child = Child::spawn("create_persisted_and_wait", &[&n]);
    child.wait_ready();
    let pid = child.pid();
    let alive = |n: &str| {
        mpshm::segments()
            .expect("list")
            .into_iter()
            .find(|s| s.name == n)
            .map(|s| s.creator_alive)
    };
    assert_eq!(alive(&n), Some(true));
    child.kill();
    assert_eq!(alive(&n), Some(false), "creator {pid} is dead: orphan");
    // Reclaim it.
    mpshm::unlink(&n).expect("unlink orphan");
    assert_eq!(alive(&n), None);
}

fn mode_is_applied() {
    use std::os::unix::fs::PermissionsExt;
    let n = name("mode");
    let v = Value::<u8>::create(&n, 0).expect("create");
    let mode = std::fs::metadata(shm_path(&n))
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    drop(v);
    let mut o = Options::new();
    o.mode(0o640);
    let v = Value::<u8>::create_with(&n, 0, &o).expect("create");
    let mode = std::fs::metadata(shm_path(&n))
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode & 0o600, 0o600);
    drop(v);
}
