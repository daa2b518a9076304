//! The Linux back end: POSIX shared memory through `rustix`, liveness through `/proc`, and the
//! robust process-shared pthread mutex through `libc`.
//!
//! glibc's robust mutex is what makes a dead holder recoverable: the kernel walks the dying
//! thread's robust list, marks every mutex it held with `FUTEX_OWNER_DIED` and wakes one waiter,
//! whose lock call then returns `EOWNERDEAD` (see `futex(2)`, "robust futexes").

use std::cell::UnsafeCell;
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::fs::{AtFlags, FallocateFlags, FileType, Mode, OFlags};

/// The directory where the kernel exposes POSIX shared-memory objects.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// The longest name (without the leading `/`) that every supported platform accepts. macOS limits
/// the whole name, slash included, to 31 bytes (`PSHMNAMLEN`).
pub(crate) const MAX_NAME_LEN: usize = 30;

/// The shared-memory directory, opened for the `*at` calls below. Opened per call: segments are
/// created and opened rarely, and a descriptor kept for the process would be one more thing a
/// program that closes its descriptors (a daemon) could pull from under us.
fn shm_dir() -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        SHM_DIR,
        OFlags::DIRECTORY | OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The flags every open of a segment carries, as glibc's `shm_open` does and more: never follow
/// a symbolic link planted at the name (`O_NOFOLLOW`: `ELOOP` instead), never leak the descriptor
/// into a program this one executes (`O_CLOEXEC`), and never block opening a FIFO planted there
/// (`O_NONBLOCK`, which changes nothing for a regular file). The caller checks that what it got
/// is a regular file ([`file_stat`]).
const OPEN_FLAGS: OFlags = OFlags::NOFOLLOW
    .union(OFlags::CLOEXEC)
    .union(OFlags::NONBLOCK);

/// Creates `name` exclusively (`O_CREAT | O_EXCL`, which never follows a link either) with
/// permission bits `mode`.
pub(crate) fn shm_create(name: &str, mode: u32) -> io::Result<File> {
    let fd = rustix::fs::openat(
        shm_dir()?,
        name,
        OPEN_FLAGS | OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
        Mode::from_raw_mode(mode),
    )?;
    Ok(File::from(fd))
}

/// Opens an existing `name`, read-write or read-only, without following a link (see
/// [`OPEN_FLAGS`]); the caller checks that it is a regular file.
pub(crate) fn shm_open(name: &str, write: bool) -> io::Result<File> {
    let access = if write { OFlags::RDWR } else { OFlags::RDONLY };
    let fd: OwnedFd = rustix::fs::openat(shm_dir()?, name, OPEN_FLAGS | access, Mode::empty())?;
    Ok(File::from(fd))
}

/// What `name` is, without opening it or following a link: for checking what sits at a name
/// without the side effects of an open (a FIFO, a device).
pub(crate) fn shm_stat(name: &str) -> io::Result<FileStat> {
    let st = rustix::fs::statat(shm_dir()?, name, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(FileStat::of(&st))
}

/// Removes `name` (whatever it is: a link is removed, not followed); mappings that are open
/// elsewhere stay valid.
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(shm_dir()?, name, AtFlags::empty())?)
}

/// Reserves `len` bytes of backing store so that a full `/dev/shm` fails here, with `ENOSPC`,
/// rather than with `SIGBUS` at the first touch of a page. Also sets the file's length.
pub(crate) fn reserve(file: &File, len: u64) -> io::Result<()> {
    Ok(rustix::fs::fallocate(
        file,
        FallocateFlags::empty(),
        0,
        len,
    )?)
}

/// The identity of an open file: `(device, inode)`.
pub(crate) type FileId = (u64, u64);

/// What `fstat` says of a file, as far as segments care.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileStat {
    pub len: u64,
    pub id: FileId,
    /// `None` for a regular file; otherwise what it is, in words ("symbolic link").
    pub irregular: Option<&'static str>,
    /// The last change of the file's status (`st_ctime`): for a segment, when it was created
    /// and sized, which mpshm does once.
    pub changed: Option<std::time::SystemTime>,
}

impl FileStat {
    fn of(st: &rustix::fs::Stat) -> FileStat {
        let irregular = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => None,
            FileType::Directory => Some("directory"),
            FileType::Symlink => Some("symbolic link"),
            FileType::Fifo => Some("FIFO"),
            FileType::Socket => Some("socket"),
            FileType::CharacterDevice => Some("character device"),
            FileType::BlockDevice => Some("block device"),
            _ => Some("file of unknown type"),
        };
        let changed = u64::try_from(st.st_ctime).ok().and_then(|secs| {
            let nanos = u32::try_from(st.st_ctime_nsec).unwrap_or(0);
            std::time::UNIX_EPOCH.checked_add(Duration::new(secs, nanos.min(999_999_999)))
        });
        FileStat {
            len: st.st_size as u64,
            id: (st.st_dev, st.st_ino),
            irregular,
            changed,
        }
    }
}

/// Length, identity and type of an open file.
pub(crate) fn file_stat(file: &File) -> io::Result<FileStat> {
    Ok(FileStat::of(&rustix::fs::fstat(file.as_fd())?))
}

/// Whether an open file has lost its last name (it was unlinked after we opened it).
pub(crate) fn is_unlinked(file: &File) -> io::Result<bool> {
    Ok(rustix::fs::fstat(file.as_fd())?.st_nlink == 0)
}

/// Reads up to `buf.len()` bytes at `offset` without mapping the file, so that a file truncated
/// under us yields a short read instead of `SIGBUS`.
pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    Ok(rustix::io::pread(file, buf, offset)?)
}

/// Names of every entry in the shared-memory directory.
pub(crate) fn shm_names() -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(SHM_DIR)? {
        let entry = entry?;
        if entry.file_type()?.is_file()
            && let Some(name) = entry.file_name().to_str()
        {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// This process's id.
pub(crate) fn current_pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// What `/proc/<pid>/stat` says of a process: its state letter and start time (clock ticks after
/// boot, field 22), which together with the pid identify it even after the pid is reused.
fn proc_stat(pid: u32) -> Option<(u8, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields after it follow the
    // last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.bytes().next()?;
    // `state` is field 3; start time is field 22, i.e. 19 further on.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The start time of `pid`, or 0 when it cannot be read. This process's own is read once and
/// remembered (every segment it creates records it), and read again after a `fork`.
pub(crate) fn process_start_time(pid: u32) -> u64 {
    use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
    use std::sync::atomic::{AtomicU32, AtomicU64};
    static OWN_START: AtomicU64 = AtomicU64::new(0);
    /// `forks() + 1` when `OWN_START` was read; 0 before.
    static AT: AtomicU32 = AtomicU32::new(0);
    let own = pid == thread_ids().0;
    let at = forks().wrapping_add(1);
    // Acquire: pairs with the Release store below, after `OWN_START`.
    if own && AT.load(Acquire) == at {
        return OWN_START.load(Relaxed);
    }
    let start = proc_stat(pid).map_or(0, |(_, start)| start);
    if own && start != 0 {
        // Threads that race here store the same values.
        OWN_START.store(start, Relaxed);
        // Release: pairs with the Acquire load above.
        AT.store(at, Release);
    }
    start
}

/// Whether the process `pid` that started at `start_time` (0: unknown) is still running. A zombie
/// (killed, not yet reaped) counts as dead; so does a new process that reused the pid.
pub(crate) fn process_alive(pid: u32, start_time: u64) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    match proc_stat(pid) {
        Some((state, start)) => {
            !matches!(state, b'Z' | b'X' | b'x') && (start_time == 0 || start == start_time)
        }
        None => {
            // No /proc entry (or no /proc at all): ask the kernel directly.
            let Some(p) = rustix::process::Pid::from_raw(pid as i32) else {
                return false;
            };
            match rustix::process::test_kill_process(p) {
                Ok(()) => true,
                Err(e) => e == rustix::io::Errno::PERM,
            }
        }
    }
}

/// Forks since start-up, counted in each child by a `pthread_atfork` handler: a thread's cached
/// ids are stale once this moves.
static FORKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn count_fork() {
    FORKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

std::thread_local! {
    /// This thread's `(forks, pid, tid)` as last read.
    static IDS: std::cell::Cell<(u32, u32, u32)> = const { std::cell::Cell::new((u32::MAX, 0, 0)) };
}

/// Counts a fork in a child made without glibc's `fork` (which would run [`count_fork`]).
pub(crate) fn count_fork_in_child() {
    count_fork();
}

/// Registers [`count_fork`] once per process.
#[inline]
fn count_forks() {
    static AT_FORK: std::sync::Once = std::sync::Once::new();
    AT_FORK.call_once(|| {
        // SAFETY: registers a handler that only bumps an atomic counter, which is
        // async-signal-safe as a handler run in a forked child must be. If registration fails
        // (ENOMEM), a forked child would keep its parent's ids; nothing else changes.
        let _ = unsafe { libc::pthread_atfork(None, None, Some(count_fork)) };
    });
}

/// This thread's process id and thread id, cached per thread (a system call each would cost a
/// queue operation more than the operation itself) and read again after a `fork`. Read by
/// system calls where the cache is gone: drops run by thread-local destructors at a thread's
/// exit (guards, handles) call this too. (With the compiler's native thread-locals, a cache
/// without a destructor is never torn down; with others, it is.)
#[inline]
pub(crate) fn thread_ids() -> (u32, u32) {
    count_forks();
    let forks = FORKS.load(std::sync::atomic::Ordering::Relaxed);
    IDS.try_with(|ids| {
        let (seen, pid, tid) = ids.get();
        if seen == forks {
            return (pid, tid);
        }
        let (pid, tid) = uncached_thread_ids();
        ids.set((forks, pid, tid));
        (pid, tid)
    })
    .unwrap_or_else(|_| uncached_thread_ids())
}

/// This thread's process id and thread id, by system calls.
#[cold]
fn uncached_thread_ids() -> (u32, u32) {
    (
        current_pid(),
        rustix::thread::gettid().as_raw_nonzero().get() as u32,
    )
}

/// How many times this process was forked from its parent and theirs, as counted in each child:
/// a value read before a `fork` differs in the child.
#[inline]
pub(crate) fn forks() -> u32 {
    count_forks();
    FORKS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Forks, runs `f` in the child and exits there at once (no destructors, no exit handlers),
/// with status 0 if `f` returned `true`; whether the child did. For tests: `f` must not allocate
/// or take a lock, since another thread of the test binary may hold one across the `fork`.
#[cfg(test)]
pub(crate) fn in_forked_child(f: impl FnOnce() -> bool) -> bool {
    // SAFETY: the child runs only `f`, which its callers keep free of allocation and locks, and
    // then `_exit`; the parent only waits for it.
    match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", io::Error::last_os_error()),
        0 => {
            let ok = f();
            // SAFETY: ends the child without running anything of the parent's state.
            unsafe { libc::_exit(i32::from(!ok)) }
        }
        child => {
            let mut status = 0;
            // SAFETY: waits for our own child, writing its status into a local.
            let r = unsafe { libc::waitpid(child, &mut status, 0) };
            r == child && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
        }
    }
}

/// Whether `tid` names a live thread of this process.
pub(crate) fn thread_of_this_process(tid: u32) -> bool {
    std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
}

/// This thread's kernel id (cached, as [`thread_ids`]).
#[inline]
pub(crate) fn current_tid() -> u32 {
    thread_ids().1
}

/// Whether thread `tid` of the process `pid` that started at `start_time` is still running.
pub(crate) fn thread_alive(pid: u32, tid: u32, start_time: u64) -> bool {
    process_alive(pid, start_time) && std::fs::metadata(format!("/proc/{pid}/task/{tid}")).is_ok()
}

/// The process (thread group) that thread `tid` belongs to, from `/proc/<tid>/status`; `None`
/// if no such thread runs (or it is a zombie), as far as this pid namespace shows.
pub(crate) fn process_of_thread(tid: u32) -> Option<u32> {
    if tid == 0 || tid > i32::MAX as u32 {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
    };
    if field("State:").is_some_and(|s| s.starts_with('Z') || s.starts_with('X')) {
        return None;
    }
    field("Tgid:")?.parse().ok()
}

/// The monotonic clock as a `libc::timespec`, `after` from now, with nanoseconds normalised.
fn monotonic_deadline(after: Duration) -> libc::timespec {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let mut sec = now
        .tv_sec
        .saturating_add(after.as_secs().min(i64::MAX as u64) as i64);
    let mut nsec = now.tv_nsec as i64 + i64::from(after.subsec_nanos());
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec = sec.saturating_add(1);
    }
    libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as _,
    }
}

/// The longest one sleep for a robust mutex lasts before the waiter tries again, where the lock
/// watch cannot run (see [`RobustMutex::lock_in_slices`]); a wait this long happens only while
/// a holder was stopped, preempted or killed inside.
const LOST_WAKE_SLICE: Duration = Duration::from_millis(10);

unsafe extern "C" {
    // glibc ≥ 2.30; the `libc` crate does not bind it yet. Same as `pthread_mutex_timedlock`
    // but on the clock we name, so a wall-clock jump cannot stretch or cut a timeout.
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

/// Why a mutex whose type word is `kind` (not one `init` writes) is refused.
#[cold]
#[inline(never)]
fn refused(kind: i32) -> LockFail {
    if expected_kinds() == [0, 0] {
        LockFail::Os(unsupported_layout())
    } else {
        corrupt_kind(kind)
    }
}

#[cold]
fn corrupt_kind(kind: i32) -> LockFail {
    LockFail::Os(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the mutex type word is {kind:#x}, not one mpshm writes: the segment is corrupt"),
    ))
}

/// What a successful lock call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locked {
    /// The mutex was free or released normally.
    Clean,
    /// The previous owner died holding it; it has already been made consistent again.
    OwnerDied,
}

/// Why a lock call did not take the mutex.
#[derive(Debug)]
pub(crate) enum LockFail {
    /// Held by someone else (try) or still held at the deadline (timed).
    Busy,
    /// This thread already holds this non-recursive mutex.
    Deadlock,
    /// Any other error: the mutex bytes are not a valid mutex (corrupted segment).
    Os(io::Error),
}

/// What a [`RobustMutex::lock_clean`] that did not take the mutex cleanly found.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Unsettled {
    /// The type word (this) is not one `init` writes: glibc was not called.
    Refused(i32),
    /// `pthread_mutex_lock` returned this: taken from a dead owner, a deadlock, or an error.
    Failed(libc::c_int),
}

/// A robust, process-shared pthread mutex, laid out in shared memory.
///
/// Every method is safe: the mutex is robust, so glibc checks ownership on unlock (a non-owner
/// gets `EPERM`), and an owner-died state is made consistent before it is reported.
#[repr(C)]
pub(crate) struct RobustMutex {
    inner: UnsafeCell<libc::pthread_mutex_t>,
}

// SAFETY: a process-shared pthread mutex is designed to be operated on concurrently from any
// thread of any process through a shared pointer; it holds no thread-affine state of ours.
unsafe impl Sync for RobustMutex {}

// SAFETY: `RobustMutex` is plain bytes (`pthread_mutex_t` is a C union of integers). glibc
// does NOT validate its type word (garbage there can select lock elision, which raises SIGILL
// on CPUs without TSX, or priority protection, which aborts); so every lock call first checks
// that word against what `init` writes (`kind_ok`), and refuses the mutex otherwise.
unsafe impl crate::segment::Shared for RobustMutex {}

/// The owner's thread id in a robust futex word (`futex(2)`).
pub(crate) const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
/// Set in a robust futex word by a thread that sleeps waiting for it: the owner's unlock, and the
/// kernel's walk of a dying owner's robust list, then wake one sleeper.
pub(crate) const FUTEX_WAITERS: u32 = 0x8000_0000;
/// Set in a robust futex word by the kernel when its owner thread died holding it (the owner's
/// thread id is cleared at the same time).
pub(crate) const FUTEX_OWNER_DIED: u32 = 0x4000_0000;

/// Byte offset of `__kind` in glibc's `pthread_mutex_t` (`struct __pthread_mutex_s`) on 64-bit
/// Linux: after `__lock`, `__count`, `__owner` and `__nusers`, four 4-byte fields.
const KIND_OFFSET: usize = 16;
const _: () = assert!(KIND_OFFSET + 4 <= std::mem::size_of::<libc::pthread_mutex_t>());

/// The `__kind` words that `init` writes, `[error-checking, recursive]`, read off mutexes
/// initialised here; 0 if initialisation failed, or if the C library's mutex is not laid out as
/// this module reads it (see [`layout_holds`]): no real mutex has kind 0 with these attributes.
#[inline]
fn expected_kinds() -> [i32; 2] {
    static KINDS: std::sync::OnceLock<[i32; 2]> = std::sync::OnceLock::new();
    match KINDS.get() {
        Some(kinds) => *kinds,
        None => *KINDS.get_or_init(read_kinds),
    }
}

/// Whether `kind` is a type word that `init` writes (either kind).
#[inline]
fn written_by_init(kind: i32) -> bool {
    let [exclusive, recursive] = expected_kinds();
    kind != 0 && (kind == exclusive || kind == recursive)
}

/// What [`expected_kinds`] keeps: the type words of two mutexes initialised here.
#[cold]
fn read_kinds() -> [i32; 2] {
    [false, true].map(|recursive| {
        let m = RobustMutex {
            inner: UnsafeCell::new(zeroed_mutex()),
        };
        // SAFETY: `m` is a local no one else can see.
        match unsafe { m.init_unchecked(recursive) } {
            Ok(()) if layout_holds(&m, recursive) => m.kind_word(),
            _ => 0,
        }
    })
}

/// Whether the C library's `pthread_mutex_t` keeps what this module reads where it reads it,
/// tried on `m`, a fresh mutex of this thread's own: locked, its lock word (offset 0) names this
/// thread and its type word (offset [`KIND_OFFSET`]) is set; a recursive one locked twice counts
/// 2 at [`COUNT_OFFSET`]. glibc on 64-bit Linux passes; another layout fails here rather than
/// have a segment's mutex misread.
fn layout_holds(m: &RobustMutex, recursive: bool) -> bool {
    let base = m.inner.get().cast::<u8>();
    let word = |offset: usize| {
        // SAFETY: both offsets lie inside the mutex (the const assertions on them) and are
        // 4-aligned; `m` is this thread's own.
        unsafe { std::sync::atomic::AtomicU32::from_ptr(base.wrapping_add(offset).cast()) }
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    // SAFETY: `m` was initialised by `init` and is used by this thread alone; every lock below is
    // undone before returning.
    unsafe {
        if libc::pthread_mutex_lock(m.inner.get()) != 0 {
            return false;
        }
        let mut holds = word(0) & FUTEX_TID_MASK == current_tid() && m.kind_word() != 0;
        // Locked again only if it proved to be the mutex it was made as: a mutex of another
        // kind would deadlock here.
        if recursive && holds {
            if libc::pthread_mutex_lock(m.inner.get()) != 0 {
                libc::pthread_mutex_unlock(m.inner.get());
                return false;
            }
            holds &= word(COUNT_OFFSET) == 2;
            libc::pthread_mutex_unlock(m.inner.get());
        }
        libc::pthread_mutex_unlock(m.inner.get());
        holds && word(0) & FUTEX_TID_MASK == 0
    }
}

/// What a lock call on a platform whose mutex layout is not the expected one gets.
#[cold]
fn unsupported_layout() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "this C library's pthread_mutex_t is not laid out as mpshm reads it: mpshm needs glibc \
         on a 64-bit Linux target",
    )
}

fn zeroed_mutex() -> libc::pthread_mutex_t {
    // SAFETY: `pthread_mutex_t` is a C union of integers, for which all-zero bytes are valid
    // (it is what `PTHREAD_MUTEX_INITIALIZER` is on glibc).
    unsafe { std::mem::zeroed() }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

impl RobustMutex {
    /// Initialises the mutex: robust, process-shared, error-checking or recursive. Fails with
    /// `ErrorKind::Unsupported` where the C library's mutex is not laid out as this module
    /// reads it.
    ///
    /// # Safety
    ///
    /// No other thread or process may use the mutex while it is initialised: the caller has just
    /// created the memory and has not yet published it.
    pub(crate) unsafe fn init(&self, recursive: bool) -> io::Result<()> {
        if expected_kinds() == [0, 0] {
            return Err(unsupported_layout());
        }
        // SAFETY: the caller's promise, passed on.
        unsafe { self.init_unchecked(recursive) }
    }

    /// [`init`](Self::init) without the layout check (which runs it on a mutex of its own).
    ///
    /// # Safety
    ///
    /// As for [`init`](Self::init).
    unsafe fn init_unchecked(&self, recursive: bool) -> io::Result<()> {
        let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        let kind = if recursive {
            libc::PTHREAD_MUTEX_RECURSIVE
        } else {
            libc::PTHREAD_MUTEX_ERRORCHECK
        };
        // SAFETY: `attr` is initialised by `pthread_mutexattr_init` before any other use and
        // destroyed after; `self.inner` is exclusively ours per this function's contract.
        unsafe {
            check(libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
            let result = (|| {
                check(libc::pthread_mutexattr_setpshared(
                    attr.as_mut_ptr(),
                    libc::PTHREAD_PROCESS_SHARED,
                ))?;
                check(libc::pthread_mutexattr_setrobust(
                    attr.as_mut_ptr(),
                    libc::PTHREAD_MUTEX_ROBUST,
                ))?;
                check(libc::pthread_mutexattr_settype(attr.as_mut_ptr(), kind))?;
                check(libc::pthread_mutex_init(self.inner.get(), attr.as_ptr()))
            })();
            libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
            result
        }
    }

    #[inline]
    fn kind_word(&self) -> i32 {
        let ptr = self
            .inner
            .get()
            .cast::<u8>()
            .wrapping_add(KIND_OFFSET)
            .cast::<i32>();
        // SAFETY: `ptr` is inside the mutex (checked by the const assertion on KIND_OFFSET) and
        // 4-aligned (the mutex is 8-aligned); an atomic read is sound even if another process
        // scribbles on the word concurrently.
        unsafe { std::sync::atomic::AtomicI32::from_ptr(ptr) }
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the mutex's type word is the one `init(recursive)` writes. A mutex that fails
    /// this must not be handed to glibc.
    pub(crate) fn kind_ok(&self, recursive: bool) -> bool {
        let want = expected_kinds()[usize::from(recursive)];
        want != 0 && self.kind_word() == want
    }

    /// Refuses a mutex whose type word is not one `init` writes (a corrupted segment), and every
    /// mutex where the C library's layout is not the expected one.
    #[inline]
    fn checked(&self) -> Result<(), LockFail> {
        let kind = self.kind_word();
        if written_by_init(kind) {
            Ok(())
        } else {
            Err(refused(kind))
        }
    }

    /// What a lock call returned: the clean take inline, the rest out of line.
    #[inline]
    fn finish(&self, rc: libc::c_int) -> Result<Locked, LockFail> {
        if rc == 0 {
            Ok(Locked::Clean)
        } else {
            self.finish_unclean(rc)
        }
    }

    #[cold]
    #[inline(never)]
    fn finish_unclean(&self, rc: libc::c_int) -> Result<Locked, LockFail> {
        self.outcome(rc)
    }

    /// What a lock call's result `rc` means; a mutex taken from a dead owner is made consistent
    /// here. Inlined into its two cold callers, so that each is one piece of code (see
    /// [`settle`](Self::settle)).
    #[inline(always)]
    fn outcome(&self, rc: libc::c_int) -> Result<Locked, LockFail> {
        match rc {
            0 => Ok(Locked::Clean),
            libc::EOWNERDEAD => {
                // SAFETY: EOWNERDEAD means this thread now owns the mutex, which is what
                // `pthread_mutex_consistent` requires. Without it, the next unlock would make
                // the mutex ENOTRECOVERABLE for every process forever.
                match check(unsafe { libc::pthread_mutex_consistent(self.inner.get()) }) {
                    Ok(()) => Ok(Locked::OwnerDied),
                    Err(e) => Err(LockFail::Os(e)),
                }
            }
            libc::EBUSY | libc::ETIMEDOUT => Err(LockFail::Busy),
            libc::EDEADLK => Err(LockFail::Deadlock),
            rc => Err(LockFail::Os(io::Error::from_raw_os_error(rc))),
        }
    }

    /// Blocks until the mutex is taken, kept small enough to inline: `Ok` when the mutex is
    /// now this thread's, cleanly; otherwise what [`settle`](Self::settle) sorts out (an
    /// owner's death, a refused mutex, an error).
    ///
    /// One `pthread_mutex_lock`, as a C program takes the mutex, with no `trylock` before it:
    /// under contention that one pulls the mutex's line away from its holder once more. The
    /// call runs under the lock watch (`sys/linux_watch.rs`), which wakes a waiter stranded by
    /// the robust mutex's lost wake-up (see [`lock_waiting`](Self::lock_waiting)).
    #[inline]
    pub(crate) fn lock_clean(&self) -> Result<(), Unsettled> {
        let kind = self.kind_word();
        if !written_by_init(kind) {
            return Err(Unsettled::Refused(kind));
        }
        match self.lock_waiting(None) {
            0 => Ok(()),
            rc => Err(Unsettled::Failed(rc)),
        }
    }

    /// Takes the mutex, waiting until `until` (the monotonic clock; `None`: never); what the C
    /// library's lock call said (`ETIMEDOUT` only at `until`).
    ///
    /// A robust mutex can lose a wake-up: an unlock clears the waiters bit and wakes one
    /// sleeper; if that one is killed before it takes the mutex, and another thread takes it
    /// first without contention (so without the bit), the kernel's exit handling wakes nobody
    /// (the dead thread held nothing) and the new owner's unlock wakes nobody (no bit). The
    /// other sleepers would sleep until some later contended unlock, or for ever. The wait runs
    /// under the lock watch, which wakes such a sleeper within two of its ticks; where the watch
    /// cannot run, it sleeps in slices of [`LOST_WAKE_SLICE`] instead. Until this process has
    /// found a lock busy, a `trylock` comes first, so that a process that never waits never
    /// starts the watch's thread.
    #[inline]
    fn lock_waiting(&self, until: Option<std::time::Instant>) -> i32 {
        let mutex = self.inner.get();
        // SAFETY: `inner` points to a mutex in memory that stays mapped for `&self`'s lifetime,
        // initialised by `init` (its type word was checked by the caller).
        let take = || match unsafe { libc::pthread_mutex_trylock(mutex) } {
            libc::EBUSY => None,
            rc => Some(rc),
        };
        let watched = super::watch::watched(self.word().as_ptr(), take, || match until {
            // SAFETY: as for `take`.
            None => unsafe { libc::pthread_mutex_lock(mutex) },
            Some(t) => {
                let deadline =
                    monotonic_deadline(t.saturating_duration_since(std::time::Instant::now()));
                // SAFETY: as above; `deadline` is a valid, normalised timespec on the stack.
                unsafe { pthread_mutex_clocklock(mutex, libc::CLOCK_MONOTONIC, &deadline) }
            }
        });
        match watched {
            Some(rc) => rc,
            None => self.lock_in_slices(until),
        }
    }

    /// Sleeps for the mutex in slices of at most [`LOST_WAKE_SLICE`], trying again after
    /// each, until it is taken, an error comes back or `until` (the monotonic clock; `None`:
    /// never) has passed; `pthread_mutex_clocklock`'s result (`ETIMEDOUT` only at `until`).
    /// What a wait does where the lock watch cannot run (see
    /// [`lock_waiting`](Self::lock_waiting)): a lost wake-up then costs one slice.
    #[cold]
    fn lock_in_slices(&self, until: Option<std::time::Instant>) -> i32 {
        loop {
            let slice = until.map_or(LOST_WAKE_SLICE, |t| {
                t.saturating_duration_since(std::time::Instant::now())
                    .min(LOST_WAKE_SLICE)
            });
            let deadline = monotonic_deadline(slice);
            // SAFETY: as in `lock_waiting`; `deadline` is a valid, normalised timespec on the
            // stack.
            let rc = unsafe {
                pthread_mutex_clocklock(self.inner.get(), libc::CLOCK_MONOTONIC, &deadline)
            };
            let gave_up = until.is_some_and(|t| std::time::Instant::now() >= t);
            if rc != libc::ETIMEDOUT || gave_up {
                return rc;
            }
        }
    }

    /// What [`lock_clean`](Self::lock_clean) found, as a lock's outcome. Inlined, with the
    /// `pthread_mutex_consistent` call, into the one out-of-line function its caller keeps for
    /// this path (`RawLock::acquire_unclean`): a dead owner's lock is taken just after a
    /// process died, with the caches and TLB cold, where every further function on a code page
    /// of its own adds misses to the `OwnerDied` notice.
    #[inline(always)]
    pub(crate) fn settle(&self, how: Unsettled) -> Result<Locked, LockFail> {
        match how {
            Unsettled::Refused(kind) => Err(refused(kind)),
            Unsettled::Failed(rc) => self.outcome(rc),
        }
    }

    /// Takes the mutex if it is free.
    #[inline]
    pub(crate) fn try_lock(&self) -> Result<Locked, LockFail> {
        self.checked()?;
        // SAFETY: as in `lock_clean`.
        self.finish(unsafe { libc::pthread_mutex_trylock(self.inner.get()) })
    }

    /// Blocks until the mutex is taken or `timeout` (on the monotonic clock) has passed, under
    /// the lock watch as [`lock_clean`](Self::lock_clean) is, so a lost wake-up costs two of
    /// its ticks at most, not the whole timeout.
    pub(crate) fn lock_timeout(&self, timeout: Duration) -> Result<Locked, LockFail> {
        self.lock_until(std::time::Instant::now().checked_add(timeout))
    }

    /// Blocks until the mutex is taken or `until` (`None`: never) has passed, as
    /// [`lock_timeout`](Self::lock_timeout) does.
    pub(crate) fn lock_until(&self, until: Option<std::time::Instant>) -> Result<Locked, LockFail> {
        self.checked()?;
        self.finish(self.lock_waiting(until))
    }

    /// The lock word (glibc's `__lock`, the futex the kernel's robust-list walk updates): the
    /// owner's thread id in [`FUTEX_TID_MASK`], with [`FUTEX_WAITERS`] and [`FUTEX_OWNER_DIED`].
    /// Sleeping on it with the shared futex calls, after setting `FUTEX_WAITERS` the way a
    /// contending `pthread_mutex_lock` does, is how a waiter learns of the owner's unlock or
    /// death.
    #[inline]
    pub(crate) fn word(&self) -> &std::sync::atomic::AtomicU32 {
        // SAFETY: `__lock` is the first `int` of glibc's mutex: in bounds and 4-aligned (the
        // mutex is 8-aligned); it lives as long as `self`, and an atomic view is sound while
        // other threads and processes write it.
        unsafe { std::sync::atomic::AtomicU32::from_ptr(self.inner.get().cast()) }
    }

    /// Whether a live thread of this process holds the mutex (its lock word names the thread).
    /// In a forked child, the parent's threads are not this process's.
    pub(crate) fn held_by_this_process(&self) -> bool {
        let tid = self.word().load(std::sync::atomic::Ordering::Relaxed) & FUTEX_TID_MASK;
        tid != 0 && thread_of_this_process(tid)
    }

    /// Releases the mutex. Fails with `EPERM` when this thread does not hold it.
    #[inline]
    pub(crate) fn unlock(&self) -> io::Result<()> {
        // SAFETY: as in `lock_clean`; robust mutexes check the owner, so a wrong caller gets EPERM.
        check(unsafe { libc::pthread_mutex_unlock(self.inner.get()) })
    }
}

/// Sleeps while `word` holds `expected`, at most `timeout` (forever if `None`). A shared (not
/// process-private) futex, so a wake from any process that maps the word reaches us. Returns
/// early, without error, on a wake, a value change, a signal or the timeout; callers re-check.
pub(crate) fn futex_wait(
    word: &std::sync::atomic::AtomicU32,
    expected: u32,
    timeout: Option<Duration>,
) {
    use rustix::thread::futex;
    let ts = timeout.map(|t| futex::Timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    // Errors are all "return and re-check": EAGAIN (value changed), ETIMEDOUT, EINTR.
    let _ = futex::wait(word, futex::Flags::empty(), expected, ts.as_ref());
}

/// Wakes one sleeper on the futex word at `word`, an address that may no longer be mapped (the
/// lock watch's; see `sys/linux_watch.rs`): the kernel then says `EFAULT`, which is ignored, as
/// is a wake of a word mapped there since (futex sleepers tolerate spurious wakes).
pub(crate) fn futex_wake_one_at(word: *mut u32) {
    // SAFETY: FUTEX_WAKE does not read or write the word: the kernel only looks its address up
    // to find the sleepers, and fails with EFAULT where nothing is mapped. No reference to the
    // word is made here.
    let _ = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word,
            libc::FUTEX_WAKE,
            1 as libc::c_int,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
}

/// Wakes up to `n` sleepers on `word`, in any process.
pub(crate) fn futex_wake(word: &std::sync::atomic::AtomicU32, n: u32) {
    let _ = rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), n);
}

/// Registers this process for `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` and tries one;
/// `false` where the kernel or a seccomp filter does not allow it.
pub(crate) fn membarrier_register() -> bool {
    use rustix::thread::{MembarrierCommand, membarrier, membarrier_query};
    // Miri runs no system calls; the symmetric fences it gets instead are checked there.
    !cfg!(miri)
        && membarrier_query().contains_command(MembarrierCommand::GlobalExpedited)
        && membarrier(MembarrierCommand::RegisterGlobalExpedited).is_ok()
        && membarrier(MembarrierCommand::GlobalExpedited).is_ok()
}

/// Runs a full memory fence on every CPU running a thread of a registered process (and here).
pub(crate) fn membarrier_global() -> bool {
    use rustix::thread::{MembarrierCommand, membarrier};
    membarrier(MembarrierCommand::GlobalExpedited).is_ok()
}

/// A full memory fence on every CPU running a thread of this process, without `membarrier`:
/// taking write access away from a page this process has touched makes the kernel shoot down
/// the stale TLB entries on those CPUs with an interrupt, and taking an interrupt is a full
/// fence (folly's fallback for the same job). `false` if the page cannot be had.
pub(crate) fn process_wide_fence() -> bool {
    use rustix::mm::{MapFlags, MprotectFlags, ProtFlags, mmap_anonymous, mprotect};
    use std::sync::{Mutex, PoisonError};

    /// The page's address; 0 until mapped.
    static PAGE: Mutex<usize> = Mutex::new(0);
    let mut page = PAGE.lock().unwrap_or_else(PoisonError::into_inner);
    let len = rustix::param::page_size();
    if *page == 0 {
        // SAFETY: a fresh anonymous private mapping at an address the kernel picks overlaps
        // nothing; it is never unmapped, so the address stays valid for the process.
        match unsafe {
            mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        } {
            Ok(p) => *page = p as usize,
            Err(_) => return false,
        }
    }
    let ptr = *page as *mut std::ffi::c_void;
    // SAFETY: `ptr` is the page mapped above, owned by this function and only touched under
    // `PAGE`; changing its protection affects no other memory.
    unsafe {
        if mprotect(ptr, len, MprotectFlags::READ | MprotectFlags::WRITE).is_err() {
            return false;
        }
        // A write makes the page present and writable in this CPU's TLB...
        ptr.cast::<u8>().write_volatile(0);
        // ...so taking write access away must shoot the entry down everywhere.
        mprotect(ptr, len, MprotectFlags::READ).is_ok()
    }
}

// ---------------------------------------------------------------------------------------------
// The synchronisation family (Semaphore, Event, Condition, Barrier): what a `Condition` needs to
// release a reentrant lock at its full depth and take it back.
// ---------------------------------------------------------------------------------------------

/// Byte offset of `__count` in glibc's `pthread_mutex_t`: the recursion depth of a recursive
/// mutex, written by its owner only (set to 1 by the first lock, bumped by each re-lock, lowered
/// by each unlock).
const COUNT_OFFSET: usize = 4;
const _: () = assert!(COUNT_OFFSET + 4 <= KIND_OFFSET);

impl RobustMutex {
    /// How many times the calling thread holds the mutex: 0 when another thread (or nobody)
    /// holds it, 1 for an error-checking mutex it holds, the recursion depth for a recursive one.
    pub(crate) fn held_depth(&self) -> u32 {
        let base = self.inner.get().cast::<u8>();
        // SAFETY: `__lock` is the first `int` of the mutex: in bounds and 4-aligned; an atomic
        // read is sound while other processes write the word.
        let word = unsafe { std::sync::atomic::AtomicU32::from_ptr(base.cast()) }
            .load(std::sync::atomic::Ordering::Relaxed);
        if word & FUTEX_TID_MASK != thread_ids().1 {
            return 0;
        }
        if self.kind_word() != expected_kinds()[1] {
            return 1;
        }
        // SAFETY: `__count` lies inside the mutex (const assertion above) and is 4-aligned; this
        // thread owns the mutex (checked above), and only the owner writes the count.
        let count = unsafe {
            std::sync::atomic::AtomicU32::from_ptr(base.wrapping_add(COUNT_OFFSET).cast())
        }
        .load(std::sync::atomic::Ordering::Relaxed);
        count.max(1)
    }
}

// ---------------------------------------------------------------------------------------------
// Processes: pidfds, waitid, fork, prctl, the environment and code addresses, for
// `crate::process`. Everything below serves `Process` and `Pool`.
// ---------------------------------------------------------------------------------------------

/// How a reaped child ended, Python style: the exit code, or minus the signal that killed it.
pub(crate) type RawExit = i32;

/// A pidfd for the child `pid` (`pidfd_open(2)`, Linux 5.3). Signals and waits through it can
/// never reach another process that reuses the pid. Only sound for a child not yet reaped.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid as i32)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    Ok(rustix::process::pidfd_open(
        pid,
        rustix::process::PidfdFlags::empty(),
    )?)
}

/// A signal that ends a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// `SIGTERM`: asks it to end.
    Term,
    /// `SIGKILL`: ends it.
    Kill,
}

/// Sends `sig` through a pidfd; a process that has already exited is not an error.
pub(crate) fn pidfd_signal(pidfd: &OwnedFd, sig: Signal) -> io::Result<()> {
    let sig = match sig {
        Signal::Term => rustix::process::Signal::TERM,
        Signal::Kill => rustix::process::Signal::KILL,
    };
    match rustix::process::pidfd_send_signal(pidfd, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reaps the child behind `pidfd` if it has ended (`waitid(P_PIDFD, WNOHANG)`); `None` while it
/// runs.
pub(crate) fn pidfd_try_reap(pidfd: &OwnedFd) -> io::Result<Option<RawExit>> {
    pidfd_waitid(pidfd, rustix::process::WaitIdOptions::NOHANG)
}

/// Waits for the child behind `pidfd` to end and reaps it.
pub(crate) fn pidfd_reap(pidfd: &OwnedFd) -> io::Result<RawExit> {
    loop {
        if let Some(code) = pidfd_waitid(pidfd, rustix::process::WaitIdOptions::empty())? {
            return Ok(code);
        }
    }
}

fn pidfd_waitid(
    pidfd: &OwnedFd,
    extra: rustix::process::WaitIdOptions,
) -> io::Result<Option<RawExit>> {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    loop {
        match waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED | extra) {
            Ok(Some(status)) => {
                if let Some(code) = status.exit_status() {
                    return Ok(Some(code));
                }
                if let Some(sig) = status.terminating_signal() {
                    return Ok(Some(-sig));
                }
                // Only `EXITED` was asked for; anything else is not an end.
                return Ok(None);
            }
            Ok(None) => return Ok(None),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until one of `fds` is readable (a pidfd is, once its process has exited), at most
/// `timeout` (`None`: forever); which ones are.
pub(crate) fn poll_readable(fds: &[&OwnedFd], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    use std::os::fd::AsRawFd;
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.map_or(-1, |t| {
        // Round up, so that a short timeout still waits.
        t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int
    });
    // SAFETY: `pfds` is a live, exclusively borrowed array of `pfds.len()` pollfd structs.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(pfds.iter().map(|p| p.revents != 0).collect())
}

/// Asks the kernel to `SIGKILL` this process when the thread that created it ends
/// (`PR_SET_PDEATHSIG`), then checks that the parent is still `parent`: if it died before the
/// request took effect, the child was already re-parented and no signal will come, so it ends.
pub(crate) fn die_with_parent(parent: u32) -> io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    if parent_pid() != parent {
        // SAFETY: `_exit` ends the process at once; nothing of this process's state is used.
        unsafe { libc::_exit(1) }
    }
    Ok(())
}

/// Makes the program `cmd` launches die with this process's launching thread, as
/// [`die_with_parent`] does, from between its `fork` and its `exec`.
pub(crate) fn die_with_parent_after_fork(cmd: &mut std::process::Command, parent: u32) {
    use std::os::unix::process::CommandExt;
    let hook = move || {
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
        if parent_pid() != parent {
            // The parent died before the request took effect (no allocation here).
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    };
    // SAFETY: the hook runs in the forked child before `exec`, where only async-signal-safe
    // calls are allowed: it makes two raw system calls (`prctl`, `getppid`) through rustix,
    // and its errors are raw OS error codes, which allocate nothing.
    unsafe { cmd.pre_exec(hook) };
}

/// Kills and reaps our child `pid`, which has not been reaped (so the pid is still its own).
pub(crate) fn kill_and_reap_child(pid: u32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
    }
}

/// This process's parent's id (0 if it has none).
pub(crate) fn parent_pid() -> u32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32)
}

/// The parent of process `pid`, from `/proc/<pid>/stat` (field 4).
pub(crate) fn parent_of(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text[text.rfind(')')? + 1..]
        .split_ascii_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// How many threads this process runs.
pub(crate) fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// What `fork_single_threaded` did.
pub(crate) enum Forked {
    /// This is the new child.
    Child,
    /// This is the parent; the child's pid.
    Parent(u32),
    /// Refused: the process runs this many threads.
    Threads(usize),
}

/// Forks, but only while this process runs one thread. A fork copies just the calling thread;
/// a lock another thread held (the allocator's, stdout's) would stay locked forever in the child,
/// so that running ordinary Rust code there is only sound when there is no other thread. With a
/// single thread, nothing else can start one between the count and the fork.
pub(crate) fn fork_single_threaded() -> io::Result<Forked> {
    let mut threads = thread_count()?;
    if threads == 2 && super::watch::stop() {
        // This thread and the lock watch's, which stopped for the fork (and starts again at the
        // next busy lock, in each process). Joined, a thread may still be listed for a moment
        // while the kernel finishes its exit.
        let since = std::time::Instant::now();
        threads = thread_count()?;
        while threads != 1 && since.elapsed() < Duration::from_millis(100) {
            std::thread::yield_now();
            threads = thread_count()?;
        }
    }
    if threads != 1 {
        return Ok(Forked::Threads(threads));
    }
    // SAFETY: this process runs only the calling thread (counted above, and only this thread
    // could start another), so the child is a complete copy with no lock held by a thread that
    // does not exist there; it may run any code, as a single-threaded program may after fork.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as u32)),
    }
}

/// Ends the process at once with `code`: no exit handlers, no destructors, no flushing (what a
/// forked child must do, so as not to run its parent's clean-up a second time).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` takes any status and does not return; it touches no memory of ours.
    unsafe { libc::_exit(code) }
}

/// Makes a write to a closed pipe fail with `EPIPE` instead of killing the process, as Rust's
/// runtime arranges before `main` (a spawned child is set up before `main` runs).
pub(crate) fn ignore_sigpipe() {
    // SAFETY: installs the standard `SIG_IGN` disposition; no handler code of ours runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// The identity `(device, inode)` of this process's executable.
pub(crate) fn exe_identity() -> io::Result<FileId> {
    let st = rustix::fs::stat("/proc/self/exe")?;
    Ok((st.st_dev, st.st_ino))
}

/// Whether glibc knows this process to be single-threaded: its `__libc_single_threaded` (glibc
/// 2.32 and later), which it clears before it starts a second thread and never sets again.
/// `false` where the symbol is missing. (A thread started by a raw `clone`, behind glibc's
/// back, would break glibc's own use of the word, its unlocked stdio.) One look-up and one
/// read, where counting the threads
/// in `/proc` costs a process that has not opened its `/proc` entry yet tens of microseconds
/// (a spawned child, which asks this first thing).
fn libc_single_threaded() -> bool {
    // SAFETY: `dlsym` with `RTLD_DEFAULT` only searches the loaded objects; the name is a
    // NUL-terminated literal.
    let flag = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__libc_single_threaded".as_ptr()) };
    if flag.is_null() {
        return false;
    }
    // SAFETY: glibc defines the symbol as a `char` that lives as long as the process. glibc
    // writes it (to 0) only in a thread that starts another; if one does so now, there is a
    // second thread already, the value is 0 before and after, and a torn byte is impossible.
    // The volatile read keeps the compiler from assuming anything about it.
    unsafe { std::ptr::read_volatile(flag.cast::<u8>()) != 0 }
}

/// Removes `name` from this process's environment, if only one thread runs (else leaves it;
/// `setenv`/`unsetenv` race with `getenv` in other threads). Whether it was removed.
pub(crate) fn env_remove(name: &str) -> bool {
    if !libc_single_threaded() && thread_count().ok() != Some(1) {
        return false;
    }
    // SAFETY: the process runs this thread only (checked above, by glibc's word or by the
    // count; only this thread could start another), so no other thread reads the environment
    // while it changes.
    unsafe { std::env::remove_var(name) };
    true
}

/// The number of CPUs online (`sysconf(_SC_NPROCESSORS_ONLN)`), at least 1.
pub(crate) fn online_cpus() -> usize {
    // SAFETY: `sysconf` only reads a system setting.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// A fixed point in this crate's code. Functions are sent to a child of the same executable as
/// their distance from it: the distance is the same in every run of one executable, whatever
/// address space layout randomisation does, since the whole image moves as one.
#[inline(never)]
fn code_anchor() {}

/// The loaded ranges `[start, end)` of the object (executable or shared library) that holds
/// this crate's code.
fn own_object_ranges() -> &'static [(usize, usize)] {
    static RANGES: std::sync::OnceLock<Vec<(usize, usize)>> = std::sync::OnceLock::new();
    RANGES.get_or_init(|| {
        struct Search {
            anchor: usize,
            found: Vec<(usize, usize)>,
        }
        unsafe extern "C" fn visit(
            info: *mut libc::dl_phdr_info,
            _size: libc::size_t,
            data: *mut libc::c_void,
        ) -> libc::c_int {
            // SAFETY: `data` is the `Search` passed to `dl_iterate_phdr` below, alive and
            // exclusively ours for the call; `info` and its program headers are valid for
            // this callback, as `dl_iterate_phdr(3)` promises.
            let (search, info) = unsafe { (&mut *data.cast::<Search>(), &*info) };
            let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
                &[]
            } else {
                // SAFETY: as above: `dlpi_phdr` points to `dlpi_phnum` headers.
                unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
            };
            let ranges: Vec<(usize, usize)> = phdrs
                .iter()
                .filter(|p| p.p_type == libc::PT_LOAD)
                .map(|p| {
                    let start = (info.dlpi_addr as usize).wrapping_add(p.p_vaddr as usize);
                    (start, start.wrapping_add(p.p_memsz as usize))
                })
                .collect();
            if ranges.iter().any(|&(s, e)| (s..e).contains(&search.anchor)) {
                search.found = ranges;
                1
            } else {
                0
            }
        }
        let mut search = Search {
            anchor: code_anchor as fn() as usize,
            found: Vec::new(),
        };
        // SAFETY: `visit` matches the callback type and only touches `search` through `data`,
        // which outlives the call.
        unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut search).cast()) };
        search.found
    })
}

/// The distance of the code address `addr` from this crate's anchor, if `addr` lies in the
/// same loaded object (the executable, normally); `None` for code in another shared library,
/// whose distance would differ from run to run.
pub(crate) fn code_offset(addr: usize) -> Option<u64> {
    own_object_ranges()
        .iter()
        .any(|&(s, e)| (s..e).contains(&addr))
        .then(|| addr.wrapping_sub(code_anchor as fn() as usize) as u64)
}

/// The function pointer of type `F` at `offset` from this crate's anchor: the inverse of
/// [`code_offset`].
///
/// # Safety
///
/// `offset` must have come from `code_offset` of a value of type `F` in a process running the
/// same executable file (the same loaded image), and `F` must be a function pointer type.
pub(crate) unsafe fn code_at<F: Copy>(offset: u64) -> F {
    const {
        assert!(std::mem::size_of::<F>() == std::mem::size_of::<usize>());
    }
    let addr = (code_anchor as fn() as usize).wrapping_add(offset as usize);
    // SAFETY: per the contract, `addr` is the address of a function of type `F` in this
    // image, so reading it back as `F` gives that same function pointer.
    unsafe { std::mem::transmute_copy::<usize, F>(&addr) }
}

/// The most words one `futex_waitv` call sleeps on (the kernel's `FUTEX_WAITV_MAX`).
pub(crate) const WAITV_MAX: usize = 128;

/// How a [`futex_waitv`] call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waitv {
    /// Woken through the word at this index.
    Woken(usize),
    /// A word did not hold its expected value, the timeout passed, or a signal came: look again.
    Returned,
    /// The kernel has no `futex_waitv` (before Linux 5.16), or a filter refuses it.
    Unsupported,
}

/// Sleeps until any of `words` is woken or does not hold its expected value, at most `timeout`
/// (forever if `None`): `futex_waitv(2)` with shared 32-bit futexes (no `FUTEX2_PRIVATE`), so a
/// wake from any process that maps a word, and the kernel's wake of a robust futex whose owner
/// died, reach us. `words` yields `count` pairs of a word and its expected value, at most
/// [`WAITV_MAX`]; more is a bug in mpshm.
pub(crate) fn futex_waitv<'w>(
    words: impl Iterator<Item = (&'w std::sync::atomic::AtomicU32, u32)>,
    count: usize,
    timeout: Option<Duration>,
) -> Waitv {
    use rustix::thread::futex::{self, Wait, WaitFlags, WaitPtr, WaitvFlags};
    assert!(count <= WAITV_MAX, "too many futex words");
    // A sleep on a few words (the usual: an eventcount and a peer or two) allocates nothing.
    let mut few = [Wait::new(); 8];
    let mut many = Vec::new();
    let waiters: &mut [Wait] = if count <= few.len() {
        &mut few[..count]
    } else {
        many.resize(count, Wait::new());
        &mut many
    };
    let mut filled = 0;
    for (w, (word, expected)) in waiters.iter_mut().zip(words) {
        w.val = u64::from(expected);
        w.uaddr = WaitPtr::new(word.as_ptr().cast());
        w.flags = WaitFlags::SIZE_U32;
        filled += 1;
    }
    let waiters = &waiters[..filled];
    // The timeout is absolute, on the clock named: the monotonic one, as `Instant` uses.
    let deadline = timeout.map(|t| {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let nsec = now.tv_nsec + i64::from(t.subsec_nanos());
        rustix::time::Timespec {
            tv_sec: now
                .tv_sec
                .saturating_add(t.as_secs().min(i64::MAX as u64) as i64)
                .saturating_add(nsec / 1_000_000_000),
            tv_nsec: nsec % 1_000_000_000,
        }
    });
    match futex::waitv(
        waiters,
        WaitvFlags::empty(),
        deadline.as_ref(),
        rustix::time::ClockId::Monotonic,
    ) {
        Ok(i) => Waitv::Woken(i),
        Err(e)
            if e == rustix::io::Errno::AGAIN
                || e == rustix::io::Errno::TIMEDOUT
                || e == rustix::io::Errno::INTR =>
        {
            Waitv::Returned
        }
        // ENOSYS: an older kernel; EPERM: a seccomp filter; EINVAL: no use of ours is invalid on
        // a kernel that has the call, so one that says so does not have it as we know it.
        Err(_) => Waitv::Unsupported,
    }
}

/// Whether `futex_waitv` works here, asked once per process.
pub(crate) fn futex_waitv_works() -> bool {
    static WORKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WORKS.get_or_init(|| {
        // A word that does not hold the expected value: a kernel with the call says so at once.
        let word = std::sync::atomic::AtomicU32::new(0);
        !cfg!(miri)
            && futex_waitv([(&word, 1)].into_iter(), 1, Some(Duration::ZERO)) == Waitv::Returned
    })
}

/// Waits at most `timeout` for the process `pid` that started at `start_time` (0: unknown) to
/// end; whether it has. A pidfd becomes readable once every thread of its process has exited,
/// so the wait ends then; without pidfds (before Linux 5.3, or filtered), `/proc` is looked at
/// every 100 µs.
pub(crate) fn wait_for_exit(pid: u32, start_time: u64, timeout: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags};
    if !process_alive(pid, start_time) {
        return true;
    }
    let Some(p) = rustix::process::Pid::from_raw(pid as i32) else {
        return true;
    };
    match rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => {
            // The pid may have been reused between the look above and the open: the pidfd must
            // name the process we mean.
            if !process_alive(pid, start_time) {
                return true;
            }
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            let ts = rustix::event::Timespec {
                tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
                tv_nsec: i64::from(timeout.subsec_nanos()),
            };
            // Readable: it exited; anything else: look at /proc below.
            let _ = rustix::event::poll(&mut fds, Some(&ts));
            !process_alive(pid, start_time)
        }
        Err(e) if e == rustix::io::Errno::SRCH => true,
        Err(_) => {
            let start = std::time::Instant::now();
            while process_alive(pid, start_time) {
                if start.elapsed() >= timeout {
                    return false;
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            true
        }
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    /// glibc on this machine keeps the lock word, the count and the type word where this module
    /// reads them; a mutex with other bytes there fails the same check.
    #[test]
    fn the_mutex_layout_is_checked() {
        assert!(
            expected_kinds().iter().all(|&k| k != 0),
            "{:?}",
            expected_kinds()
        );
        for recursive in [false, true] {
            let m = RobustMutex {
                inner: UnsafeCell::new(zeroed_mutex()),
            };
            // SAFETY: `m` is a local no one else can see.
            unsafe { m.init(recursive) }.expect("init");
            assert!(layout_holds(&m, recursive));
            assert!(m.kind_ok(recursive));
        }
        // A "mutex" whose type word names no robust kind: the lock word is never set to this
        // thread, as a C library with another layout would leave it.
        let plain = RobustMutex {
            inner: UnsafeCell::new(zeroed_mutex()),
        };
        assert!(!layout_holds(&plain, true));
    }

    /// The system calls that stand in for the cache where it is gone read what the cache
    /// holds, on the main thread, on another, and in a forked child.
    #[test]
    fn uncached_thread_ids_match_the_cache() {
        assert_eq!(thread_ids(), uncached_thread_ids());
        let (there, cached) = std::thread::spawn(|| (uncached_thread_ids(), thread_ids()))
            .join()
            .expect("join");
        assert_eq!(there, cached);
        assert_ne!(there.1, thread_ids().1);
        assert!(in_forked_child(|| thread_ids() == uncached_thread_ids()));
    }
}
