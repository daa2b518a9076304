//! Segments attacked by a same-user process: links, FIFOs and directories planted at a name,
//! forbidden mode bits, scribbled control words, truncation. Each case must end in a typed error
//! or a bounded outcome that the threat model in `DESIGN.md` describes: never a panic, a hang or
//! a crash of the process under attack.

mod common;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use common::name;
use mpshm::prelude::*;
use mpshm::{Error, Options, Value};

fn main() {
    common::run(
        tests![
            symlink_is_never_followed,
            fifo_at_the_name_blocks_nothing,
            directory_is_refused,
            mode_takes_permission_bits_only,
            queue_bias_words_naming_no_seat,
            queue_indices_scribbled_keep_deadlines,
            queue_slot_words_scribbled,
            spsc_indices_scribbled_keep_deadlines,
            lock_words_scribbled,
            truncated_segment_is_refused_and_reported,
            truncation_under_a_mapping_is_sigbus,
            shm_objects_cannot_be_sealed
        ],
        routines![map_then_read],
    );
}

// Offsets in the files, from the layout pinned for version 5 (`src/layout.rs`); each test
// checks the words it uses before it scribbles on them.

/// A `Queue<u64>`: the ring's control block at 256, its slots after it.
mod queue_at {
    pub const HEAD: u64 = 256;
    pub const TAIL: u64 = 256 + 128;
    pub const LOST: u64 = 256 + 256 + 32;
    pub const PUT_BIAS: u64 = 256 + 384;
    pub const GET_BIAS: u64 = 256 + 2688;
    /// Slot `i`'s state word; its length word follows it.
    pub const fn slot(i: u64) -> u64 {
        256 + 4992 + 64 * i
    }
}

/// An `SpscQueue<u64>`: the roles' table at 256 (256 B), the control block after it, then the
/// slots.
mod spsc_at {
    pub const HEAD: u64 = 256 + 256;
    pub const TAIL: u64 = 256 + 256 + 128;
    /// Slot `i`'s stamp word.
    pub const fn slot(i: u64) -> u64 {
        256 + 256 + 384 + 64 * i
    }
}

/// A `Lock`: the lock area at 256; the mutex's lock word first, the poison word at 48.
mod lock_at {
    pub const WORD: u64 = 256;
    pub const POISON: u64 = 256 + 48;
}

/// The file behind segment `n`, for scribbling on.
fn file(n: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(shm_path(n))
        .expect("open the segment's file")
}

fn peek(f: &std::fs::File, at: u64) -> u64 {
    let mut b = [0; 8];
    std::os::unix::fs::FileExt::read_exact_at(f, &mut b, at).expect("read");
    u64::from_ne_bytes(b)
}

fn poke(f: &std::fs::File, at: u64, v: u64) {
    std::os::unix::fs::FileExt::write_all_at(f, &v.to_ne_bytes(), at).expect("write");
}

fn poke32(f: &std::fs::File, at: u64, v: u32) {
    std::os::unix::fs::FileExt::write_all_at(f, &v.to_ne_bytes(), at).expect("write");
}

/// `HELD | seat` in a side's `bias` word (`ring/bias.rs`).
const HELD: u64 = 2 << 32;

/// Checks that a timed call waited what it was asked and not much longer (a scribbled index
/// once made a 100 ms `get_timeout` run for minutes).
fn timed<R>(asked: Duration, f: impl FnOnce() -> R) -> R {
    common::timed(asked, f)
}

fn shm_path(n: &str) -> PathBuf {
    Path::new("/dev/shm").join(n)
}

/// Runs `f` on another thread and fails the test if it does not finish within 10 s (a call that
/// blocks for ever would otherwise hang the suite).
fn finishes<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what} blocked"))
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.to_str().expect("utf-8 path")).expect("no NUL");
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// A link at the name is not followed: `open` names it, `create` finds the name taken, the file
/// it points to is never opened, mapped or written, and `unlink` removes the link only.
fn symlink_is_never_followed() {
    // A real segment elsewhere to point at, so that a followed link would open cleanly.
    let target_name = name("target");
    let target = Value::<u64>::create(&target_name, 5).expect("create target");
    let before = std::fs::read(shm_path(&target_name)).expect("read target");
    let link = name("link");
    std::os::unix::fs::symlink(shm_path(&target_name), shm_path(&link)).expect("symlink");

    match Value::<u64>::open(&link) {
        Err(Error::NotRegular { name, found }) => {
            assert_eq!(name, link);
            assert_eq!(found, "symbolic link");
        }
        other => panic!("expected NotRegular, got {other:?}"),
    }
    assert!(matches!(
        Value::<u64>::create(&link, 1),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        Value::<u64>::open_or_create(&link, 1),
        Err(Error::NotRegular { .. })
    ));
    let msg = Value::<u64>::open(&link).expect_err("link").to_string();
    assert!(
        msg.contains("symbolic link") && msg.contains("unlink"),
        "{msg}"
    );
    assert!(
        mpshm::segments()
            .expect("list")
            .iter()
            .all(|s| s.name != link),
        "the listing followed the link"
    );
    assert_eq!(std::fs::read(shm_path(&target_name)).expect("read"), before);
    mpshm::unlink(&link).expect("unlink the link");
    assert!(!shm_path(&link).exists());
    assert_eq!(target.get().expect("target still there"), 5);
}

/// A FIFO planted at a name: `open` refuses it at once, and a creator whose segment was
/// unlinked and replaced by one drops its handle without blocking (and leaves the FIFO).
fn fifo_at_the_name_blocks_nothing() {
    let n = name("fifo");
    mkfifo(&shm_path(&n));
    let opened = {
        let n = n.clone();
        finishes("open of a FIFO", move || Value::<u64>::open(&n).map(drop))
    };
    assert!(
        matches!(opened, Err(Error::NotRegular { found: "FIFO", .. })),
        "{opened:?}"
    );
    assert!(mpshm::segments().is_ok());
    std::fs::remove_file(shm_path(&n)).expect("remove fifo");

    // The creator's name is taken away and a FIFO put in its place.
    let n = name("fifo2");
    let v = Value::<u64>::create(&n, 1).expect("create");
    mpshm::unlink(&n).expect("unlink");
    mkfifo(&shm_path(&n));
    finishes("drop of a creator whose name is a FIFO", move || drop(v));
    assert!(
        shm_path(&n).exists(),
        "the creator removed what it did not create"
    );
    std::fs::remove_file(shm_path(&n)).expect("remove fifo");
}

fn directory_is_refused() {
    let n = name("dir");
    std::fs::create_dir(shm_path(&n)).expect("mkdir");
    assert!(matches!(
        Value::<u64>::open(&n),
        Err(Error::NotRegular {
            found: "directory",
            ..
        })
    ));
    assert!(matches!(
        Value::<u64>::create(&n, 0),
        Err(Error::AlreadyExists { .. })
    ));
    std::fs::remove_dir(shm_path(&n)).expect("rmdir");
}

/// Setuid, setgid, sticky and file-type bits are refused; the permission bits are applied.
fn mode_takes_permission_bits_only() {
    for mode in [0o6777, 0o4600, 0o2600, 0o1600, 0o10600, 0o100600, u32::MAX] {
        let mut opts = Options::new();
        opts.mode(mode);
        let n = name("mode");
        match Value::<u64>::create_with(&n, 0, &opts) {
            Err(Error::InvalidMode { mode: m }) => assert_eq!(m, mode),
            other => panic!("mode {mode:#o}: expected InvalidMode, got {other:?}"),
        }
        assert!(!shm_path(&n).exists(), "mode {mode:#o} left a file");
    }
    let msg = Value::<u64>::create_with(&name("mode"), 0, Options::new().mode(0o4600))
        .expect_err("setuid")
        .to_string();
    assert!(msg.contains("0o4600") && msg.contains("0o777"), "{msg}");
    let n = name("mode");
    let _v = Value::<u64>::create_with(&n, 0, Options::new().mode(0o600)).expect("0o600");
    let mode = std::fs::metadata(shm_path(&n)).expect("stat").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o7777,
        0o600
    );
}

/// A `bias` word that names no seat (16 seats; seat 20, stray bits, all ones): every user goes
/// on, through the shared protocol, instead of panicking on the index.
fn queue_bias_words_naming_no_seat() {
    let n = name("qbias");
    let q = mpshm::Queue::<u64>::create(&n, 8).expect("create");
    let f = file(&n);
    // A lone thread is handed both sides after a run of operations.
    for i in 0..200 {
        q.put(i).expect("put");
        assert_eq!(q.get(), Ok(i));
    }
    for at in [queue_at::PUT_BIAS, queue_at::GET_BIAS] {
        assert_eq!(
            peek(&f, at) >> 32,
            2,
            "the side is held: the offset is right"
        );
    }
    for (i, word) in [
        HELD | 20,
        3 << 32 | 20,
        1 << 32 | 20,
        HELD | 1 << 40,
        u64::MAX,
    ]
    .into_iter()
    .enumerate()
    {
        let i = i as u64;
        poke(&f, queue_at::PUT_BIAS, word);
        poke(&f, queue_at::GET_BIAS, word);
        q.try_put(i).expect("try_put");
        assert_eq!(q.try_get(), Ok(i), "{word:#x}");
        poke(&f, queue_at::PUT_BIAS, word);
        poke(&f, queue_at::GET_BIAS, word);
        q.put_timeout(i, Duration::from_secs(5))
            .expect("put_timeout");
        assert_eq!(q.get_timeout(Duration::from_secs(5)), Ok(i), "{word:#x}");
    }
    // And through another handle, opened with the word scribbled.
    poke(&f, queue_at::GET_BIAS, HELD | 20);
    q.put(7).expect("put");
    let o = mpshm::Queue::<u64>::open(&n).expect("open");
    assert_eq!(o.get_timeout(Duration::from_secs(5)), Ok(7));
}

/// A head or tail scribbled far behind (2^36) or ahead: a timed call keeps its deadline, and
/// an index behind catches up without losing what is queued.
fn queue_indices_scribbled_keep_deadlines() {
    let n = name("qidx");
    let q = mpshm::Queue::<u64>::create(&n, 4).expect("create");
    let f = file(&n);
    for i in 0..3 {
        q.put(i).expect("put");
    }
    assert_eq!(q.get(), Ok(0));
    assert_eq!((peek(&f, queue_at::HEAD), peek(&f, queue_at::TAIL)), (1, 3));
    let short = Duration::from_millis(100);

    poke(&f, queue_at::HEAD, 1u64.wrapping_sub(1 << 36));
    assert_eq!(q.get_timeout(short), Ok(1));
    poke(&f, queue_at::TAIL, 3u64.wrapping_sub(1 << 36));
    q.put_timeout(3, short)
        .expect("put after the tail caught up");
    assert_eq!(q.get_timeout(short), Ok(2));
    assert_eq!(q.get_timeout(short), Ok(3));
    timed(short, || {
        assert_eq!(q.get_timeout(short), Err(mpshm::GetTimeoutError::Timeout))
    });

    // Ahead: the ring looks empty (or full) from there on; timed calls say so in time.
    let (head, tail) = (peek(&f, queue_at::HEAD), peek(&f, queue_at::TAIL));
    poke(&f, queue_at::HEAD, head + (1 << 36));
    q.put(9).expect("put");
    timed(short, || {
        assert_eq!(q.get_timeout(short), Err(mpshm::GetTimeoutError::Timeout))
    });
    poke(&f, queue_at::TAIL, tail + (1 << 36));
    for _ in 0..4 {
        let _ = q.try_put(1);
    }
    timed(short, || assert!(q.put_timeout(1, short).is_err()));
    assert!(q.len() <= q.capacity());
}

/// A slot's length or state word scribbled: a length no producer wrote drops that message
/// (counted in `lost`); garbage in a state word is waited out only until the deadline.
fn queue_slot_words_scribbled() {
    let n = name("qslot");
    let q = mpshm::Queue::<u64>::create(&n, 4).expect("create");
    let f = file(&n);
    q.put(1).expect("put");
    q.put(2).expect("put");
    assert_eq!(peek(&f, queue_at::slot(0) + 8), 8, "slot 0 holds 8 bytes");
    poke(&f, queue_at::slot(0) + 8, u64::MAX);
    assert_eq!(q.get(), Ok(2));
    assert_eq!(q.lost(), 1);
    assert_eq!(peek(&f, queue_at::LOST), 1);

    // Garbage in the state word of the slot at the head: nothing is published there.
    let short = Duration::from_millis(100);
    for garbage in [u64::MAX, 0xdead_beef_dead_beef, 1 << 63] {
        poke(&f, queue_at::slot(2), garbage);
        let r = timed(short, || q.get_timeout(short));
        assert_eq!(r, Err(mpshm::GetTimeoutError::Timeout), "{garbage:#x}");
        assert!(q.try_get().is_err());
    }
}

/// The SPSC ring's indices scribbled far behind or ahead: timed calls keep their deadlines,
/// nothing panics, and the ring goes on.
fn spsc_indices_scribbled_keep_deadlines() {
    let n = name("sidx");
    let (tx, rx) = mpshm::SpscQueue::create::<u64>(&n, 4).expect("create");
    let f = file(&n);
    for i in 0..3 {
        tx.put(i).expect("put");
    }
    assert_eq!(rx.get(), Ok(0));
    assert_eq!((peek(&f, spsc_at::HEAD), peek(&f, spsc_at::TAIL)), (1, 3));
    assert_eq!(
        peek(&f, spsc_at::slot(1)) >> 32,
        2,
        "slot 1's stamp is its position plus one"
    );
    let short = Duration::from_millis(100);
    for (at, by) in [
        (spsc_at::HEAD, (1u64 << 36).wrapping_neg()),
        (spsc_at::TAIL, (1u64 << 36).wrapping_neg()),
        (spsc_at::HEAD, 1 << 36),
        (spsc_at::TAIL, 1 << 36),
        (spsc_at::HEAD, 5),
    ] {
        poke(&f, at, peek(&f, at).wrapping_add(by));
        for _ in 0..6 {
            let _ = tx.put_timeout(7, short);
        }
        let mut got = 0;
        while rx.try_get().is_ok() {
            got += 1;
            assert!(got < 100, "try_get never ran dry");
        }
        timed(short, || assert!(rx.get_timeout(short).is_err()));
        tx.put(8).expect("the ring goes on");
        assert_eq!(rx.get_timeout(Duration::from_secs(5)), Ok(8));
    }
}

/// The lock word scribbled to name a thread that does not exist: it looks held, so a timed
/// acquire times out in time (an untimed one waits, as for any holder that never lets go);
/// put back, the lock works. A scribbled poison word reads as a dead holder's.
fn lock_words_scribbled() {
    let n = name("lword");
    let lock = mpshm::Lock::create(&n, ()).expect("create");
    let f = file(&n);
    drop(lock.acquire().expect("acquire"));
    assert_eq!(
        peek(&f, lock_at::WORD) as u32,
        0,
        "the free mutex's word is 0"
    );
    poke32(&f, lock_at::WORD, 0x3fff_fff0);
    assert!(matches!(
        lock.try_acquire(),
        Err(mpshm::LockError::WouldBlock)
    ));
    let short = Duration::from_millis(100);
    timed(short, || {
        assert!(matches!(
            lock.acquire_timeout(short),
            Err(mpshm::LockError::Timeout)
        ))
    });
    poke32(&f, lock_at::WORD, 0);
    drop(lock.acquire().expect("acquire"));

    poke32(&f, lock_at::POISON, 0xffff_ffff);
    assert!(lock.is_poisoned());
    match lock.acquire() {
        Err(mpshm::LockError::OwnerDied(g)) => g.mark_consistent(),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    drop(lock.acquire().expect("clean"));
}

/// A segment truncated by another process: `open` refuses it with a typed error, and the
/// listing says it is not intact.
fn truncated_segment_is_refused_and_reported() {
    let n = name("trunc");
    let v = Value::<u64>::create(&n, 1).expect("create");
    v.persist();
    drop(v);
    let f = file(&n);
    let full = f.metadata().expect("stat").len();
    for len in [full - 8, 300, 100, 0] {
        f.set_len(len).expect("truncate");
        match Value::<u64>::open(&n) {
            Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("bytes"), "{reason}"),
            other => panic!("{len} bytes: expected Corrupt, got {other:?}"),
        }
        let listed = mpshm::segments()
            .expect("list")
            .into_iter()
            .find(|s| s.name == n);
        if let Some(seg) = listed {
            assert!(!seg.intact, "{len} bytes listed as intact");
            assert_eq!(seg.size, len);
        } else {
            assert!(len < 256, "a segment with its header is listed");
        }
    }
    mpshm::unlink(&n).expect("unlink");
}

/// In a child: opens the value, says so, waits for the go, and reads it.
fn map_then_read(args: &[String]) {
    let v = Value::<u64>::open(&args[0]).expect("open");
    common::ready();
    assert_eq!(common::line_from_parent(), "go");
    let _ = v.get();
    common::say("read");
}

/// What remains (see the threat model in `DESIGN.md`): a process that maps a segment when
/// another truncates it dies with `SIGBUS` at its next touch of a page past the new end. Linux
/// offers no way to stop a writer of a POSIX shm object from truncating it (see
/// `shm_objects_cannot_be_sealed`).
fn truncation_under_a_mapping_is_sigbus() {
    let n = name("sigbus");
    let v = Value::<u64>::create(&n, 1).expect("create");
    v.persist();
    drop(v);
    let mut child = common::Child::spawn("map_then_read", &[&n]);
    child.wait_ready();
    file(&n).set_len(0).expect("truncate");
    child.tell("go");
    let status = child.wait();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGBUS),
        "{status}"
    );
    mpshm::unlink(&n).expect("unlink");
}

/// Why truncation cannot be prevented: the seal that would stop it (`F_SEAL_SHRINK`) is refused
/// on POSIX shm objects; only `memfd_create(MFD_ALLOW_SEALING)` files take seals, and those
/// cannot be given a name in `/dev/shm`. If a kernel ever accepts the seal, this fails: then
/// mpshm should seal every segment it creates.
fn shm_objects_cannot_be_sealed() {
    let n = name("seal");
    let v = Value::<u64>::create(&n, 1).expect("create");
    let f = file(&n);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    // SAFETY: `fd` is open for the duration of the call; F_ADD_SEALS takes an int argument.
    let r = unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) };
    let e = std::io::Error::last_os_error();
    assert_eq!(r, -1, "the kernel sealed a POSIX shm object");
    assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
    drop(v);
}
