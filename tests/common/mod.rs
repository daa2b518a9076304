//! The cross-process test harness.
//!
//! Each test binary has `harness = false` and calls [`run`] from `main`. In the parent, `run`
//! runs the tests (libtest-compatible output and flags, through libtest-mimic). A test spawns a
//! child with [`Child::spawn`]: the binary re-executes itself with `MPSHM_TEST_CHILD` naming the
//! routine, so the child runs real code in a real, separate process. The child talks back on its
//! stdout, one line at a time ([`ready`] / [`Child::line`]), which is how tests order events
//! without sleeping. After the tests, `run` fails the binary if any segment made with [`name`]
//! is still in `/dev/shm`.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use libtest_mimic::{Arguments, Failed, Trial};

const CHILD_ENV: &str = "MPSHM_TEST_CHILD";

/// A test: its name and body (which panics to fail).
pub type Test = (&'static str, fn());
/// A child routine: its name and body, given the spawn arguments.
pub type Routine = (&'static str, fn(&[String]));

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

/// Runs the tests, or the child routine named by the environment.
pub fn run(tests: &[Test], routines: &[Routine]) {
    if let Ok(routine) = std::env::var(CHILD_ENV) {
        let args: Vec<String> = std::env::args().skip(1).collect();
        match routines.iter().find(|(n, _)| *n == routine) {
            Some((_, body)) => {
                body(&args);
                std::process::exit(0);
            }
            None => {
                eprintln!("no child routine named {routine:?}");
                std::process::exit(2);
            }
        }
    }
    let args = Arguments::from_args();
    let trials = tests
        .iter()
        .map(|&(name, body)| {
            Trial::test(name, move || {
                std::panic::catch_unwind(body).map_err(|e| {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panicked".into());
                    Failed::from(msg)
                })
            })
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

/// In a child: tells the parent something, one line on stdout.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("write to parent");
    out.flush().expect("flush to parent");
}

/// In a child: tells the parent it reached the point it waits for.
pub fn ready() {
    say("ready");
}

/// In a child: the next line the parent tells it ([`Child::tell`]).
pub fn line_from_parent() -> String {
    let mut s = String::new();
    std::io::stdin()
        .read_line(&mut s)
        .expect("read from parent");
    s.trim_end().to_owned()
}

/// In a child: blocks until the parent kills it.
pub fn park() -> ! {
    loop {
        std::thread::park();
    }
}

/// A child process running one routine of this test binary. Killed (`SIGKILL`) and reaped on
/// drop if still running, so a failing test leaves no process behind.
pub struct Child {
    child: std::process::Child,
    stdout: BufReader<ChildStdout>,
    stdin: ChildStdin,
    reaped: bool,
}

impl Child {
    /// Starts `routine` in a new process with `args`.
    pub fn spawn(routine: &str, args: &[&str]) -> Child {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .args(args)
            .env(CHILD_ENV, routine)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the test binary as a child");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let stdin = child.stdin.take().expect("piped stdin");
        Child {
            child,
            stdout,
            stdin,
            reaped: false,
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the child says.
    ///
    /// # Panics
    ///
    /// If the child exits first.
    pub fn line(&mut self) -> String {
        let mut s = String::new();
        let n = self.stdout.read_line(&mut s).expect("read from child");
        assert!(n > 0, "child exited before saying anything");
        s.trim_end().to_owned()
    }

    /// The next line the child says, or `None` once it has exited and everything it said has
    /// been read (e.g. to drain what a killed child said before it died).
    pub fn try_line(&mut self) -> Option<String> {
        let mut s = String::new();
        let n = self.stdout.read_line(&mut s).expect("read from child");
        (n > 0).then(|| s.trim_end().to_owned())
    }

    /// Tells the child one line (read with [`line_from_parent`]).
    pub fn tell(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to child");
        self.stdin.flush().expect("flush to child");
    }

    /// Waits for the child's `ready`.
    pub fn wait_ready(&mut self) {
        assert_eq!(self.line(), "ready");
    }

    /// Sends `SIGKILL` and reaps the child.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the child");
        self.wait();
    }

    /// Waits for the child to exit.
    pub fn wait(&mut self) -> ExitStatus {
        let status = self.child.wait().expect("wait for the child");
        self.reaped = true;
        status
    }

    /// Waits for the child and checks that it succeeded.
    pub fn join(mut self) {
        let status = self.wait();
        assert!(status.success(), "child failed: {status}");
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
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
