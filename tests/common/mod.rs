//! The cross-process test harness.
//!
//! Each test binary has `harness = false` and calls [`run`] from `main`, with its tests and its
//! child routines registered by their own function names:
//!
//! ```ignore
//! fn main() {
//!     common::run(
//!         tests![puts_and_gets, #[cfg(feature = "serde")] serde_messages],
//!         routines![echo_child],
//!     );
//! }
//! ```
//!
//! In the parent, `run` runs the tests (libtest-compatible output and flags, through
//! libtest-mimic); a test whose `#[cfg(..)]` does not hold in this build (a serde-only test
//! without the `serde` feature) is reported as ignored, never run as an empty pass. A test
//! spawns a child with [`Child::spawn`]: the binary re-executes itself, so the child runs real
//! code in a real, separate process, and talks back one line at a time ([`ready`] /
//! [`Child::line`]), which is how tests order events without sleeping. That protocol is the
//! workspace's child-process kit (`kit/`, the `mpshm-kit` crate), here as [`child`]; the
//! benches and the `mpshm` command use it too. After the tests, `run` fails the
//! binary if any segment made with [`name`] is still in `/dev/shm`. What the process and pool
//! tests need besides is in [`process`], and what the synchronisation family's need in [`sync`].
#![allow(
    dead_code,
    unused_imports,
    unused_macros,
    reason = "each test binary uses a different part of the harness"
)]

pub use mpshm_kit as child;
pub mod process;
pub mod sync;

use std::sync::atomic::{AtomicU32, Ordering};

use libtest_mimic::{Arguments, Failed, Trial};

pub use child::{Child, Routine, Spawn, line_from_parent, park, ready, say};

/// One registered test: its name and body (which panics to fail), or why this build leaves it
/// out. Made by [`tests!`].
pub struct Test {
    name: &'static str,
    body: Result<fn(), &'static str>,
}

impl Test {
    /// A test that runs `body`.
    pub fn new(name: &'static str, body: fn()) -> Test {
        Test {
            name,
            body: Ok(body),
        }
    }

    /// A test this build leaves out, reported as ignored with `why`.
    pub fn left_out(name: &'static str, why: &'static str) -> Test {
        Test {
            name,
            body: Err(why),
        }
    }
}

/// `tests![f, g, #[cfg(feature = "serde")] h]`: the tests `f`, `g` and `h`, each named by its
/// own identifier; `h` only where its `cfg` holds, and reported as ignored elsewhere.
#[macro_export]
macro_rules! tests {
    ($($(#[cfg($cfg:meta)])? $f:ident),* $(,)?) => {
        vec![$($crate::test_entry!($(#[cfg($cfg)])? $f)),*]
    };
}

/// `routines![f, g, #[cfg(feature = "serde")] h]`: the kit's [`mpshm_kit::routines!`], at the
/// binary's root beside [`tests!`].
#[macro_export]
macro_rules! routines {
    ($($routines:tt)*) => {
        ::mpshm_kit::routines!($($routines)*)
    };
}

/// One entry of [`tests!`].
#[macro_export]
macro_rules! test_entry {
    (#[cfg($cfg:meta)] $f:ident) => {{
        #[cfg($cfg)]
        fn entry() -> $crate::common::Test {
            $crate::common::Test::new(stringify!($f), $f)
        }
        #[cfg(not($cfg))]
        fn entry() -> $crate::common::Test {
            $crate::common::Test::left_out(
                stringify!($f),
                concat!("not built here: needs ", stringify!($cfg)),
            )
        }
        entry()
    }};
    ($f:ident) => {
        $crate::common::Test::new(stringify!($f), $f)
    };
}

fn prefix() -> String {
    format!("mpt{}-", std::process::id())
}

/// A segment name unique to this test process: the pid, a counter and `tag` (cut to fit).
pub fn name(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut s = format!("{}{}-{tag}", prefix(), NEXT.fetch_add(1, Ordering::Relaxed));
    s.truncate(30);
    s
}

/// Whether a segment with this name exists in `/dev/shm`.
pub fn exists(name: &str) -> bool {
    std::path::Path::new("/dev/shm").join(name).exists()
}

/// Runs the tests, or the child routine this process was started for.
pub fn run(tests: Vec<Test>, routines: Vec<Routine>) {
    child::dispatch(&routines);
    let args = Arguments::from_args();
    let trials = tests
        .into_iter()
        .map(|t| match t.body {
            Ok(body) => Trial::test(t.name, move || {
                std::panic::catch_unwind(body).map_err(|e| {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panicked".into());
                    Failed::from(msg)
                })
            }),
            Err(why) => Trial::test(t.name, move || Err(Failed::from(why))).with_ignored_flag(true),
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    let leaked: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix()))
                .collect()
        })
        .unwrap_or_default();
    if !leaked.is_empty() {
        eprintln!("FAILED: segments left in /dev/shm: {leaked:?}");
        for n in &leaked {
            let _ = std::fs::remove_file(std::path::Path::new("/dev/shm").join(n));
        }
        std::process::exit(1);
    }
    conclusion.exit();
}

/// The calling thread's kernel id.
pub fn thread_id() -> u32 {
    rustix::thread::gettid().as_raw_nonzero().get() as u32
}

/// Runs `f` on a thread of its own and hands back, once it sleeps in the kernel (a blocking
/// call waiting), a handle to join it with.
pub fn blocked<'s, R: Send + 's>(
    s: &'s std::thread::Scope<'s, '_>,
    f: impl FnOnce() -> R + Send + 's,
) -> std::thread::ScopedJoinHandle<'s, R> {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = s.spawn(move || {
        tx.send(thread_id()).expect("send");
        f()
    });
    wait_until_sleeping(rx.recv().expect("tid"));
    h
}

/// Waits (at most 10 s) until thread `tid` of this process is asleep in the kernel (state `S`),
/// e.g. blocked on a futex.
pub fn wait_until_sleeping(tid: u32) {
    wait_until_asleep(&format!("/proc/self/task/{tid}/stat"));
}

/// [`wait_until_sleeping`] for the main thread of process `pid` (a child's).
pub fn wait_until_process_sleeps(pid: u32) {
    wait_until_asleep(&format!("/proc/{pid}/stat"));
}

fn wait_until_asleep(path: &str) {
    let start = std::time::Instant::now();
    loop {
        let stat = std::fs::read_to_string(path).expect("read stat");
        let state = stat[stat.rfind(')').expect("stat format") + 1..]
            .trim_start()
            .chars()
            .next();
        if state == Some('S') {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "{path}: never slept"
        );
        std::thread::yield_now();
    }
}

mpshm::shared_type! {
    /// A 64-byte message whose body is derived from (producer, seq): a torn copy cannot pass
    /// [`Msg::check`].
    #[name = "mpshm_tests::Msg"]
    #[derive(Clone, Copy, mpshm::bytemuck::Pod, mpshm::bytemuck::Zeroable, Debug, PartialEq)]
    #[bytemuck(crate = "mpshm::bytemuck")]
    #[repr(C)]
    pub struct Msg {
        pub producer: u32,
        pub seq: u32,
        pub body: [u64; 7],
    }
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^ (x >> 33)
}

impl Msg {
    pub fn new(producer: u32, seq: u32) -> Msg {
        let base = (u64::from(producer) << 32) | u64::from(seq);
        let mut body = [0; 7];
        for (i, b) in body.iter_mut().enumerate() {
            *b = mix(base + i as u64);
        }
        Msg {
            producer,
            seq,
            body,
        }
    }

    pub fn check(&self) {
        assert_eq!(
            *self,
            Msg::new(self.producer, self.seq),
            "torn or corrupt message"
        );
    }
}

/// The number in the environment variable `var`, or `default` (how the stress tests are raised).
pub fn env_or(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Runs `f`, a call told to give up after `asked`, and checks that it waited at least that long
/// (and, generously, not much longer); hands back what it returned.
pub fn timed<R>(asked: std::time::Duration, f: impl FnOnce() -> R) -> R {
    let start = std::time::Instant::now();
    let r = f();
    let waited = start.elapsed();
    assert!(
        waited >= asked && waited < asked + std::time::Duration::from_secs(2),
        "asked {asked:?}, waited {waited:?}"
    );
    r
}

/// Runs `f`, which must panic, and catches the panic, keeping its message off the output (the
/// panic hook is process-wide: meant for child processes, or tests that tolerate a moment
/// without panic messages).
pub fn unwinds(f: impl FnOnce()) {
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    drop(std::panic::take_hook());
    assert!(r.is_err(), "it did not panic");
}
