//! `Process` across real processes: Python's exit codes, joins, liveness and daemons; results of
//! every size; fork; launched commands; the fallback line and the error when a child is not
//! taken over. Every test ends with no child process of this one left (reaped or not) and no
//! segment of this process in `/dev/shm`.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Child;
use common::process::{checked, ends_within, pidfd};
use mpshm::prelude::*;
use mpshm::process::{
    Exit, Payload, Pool, Process, StartMethod, active_children, current_process, parent_process,
    stop_fork_server,
};
use mpshm::{Lock, ProcessError, Queue};

fn main() {
    // Only for `child_main_takes_over_when_the_hook_is_off` and the not-intercepted test: the
    // start-up hook normally takes children over before this line.
    if std::env::var_os("MPSHM_TEST_SKIP_CHILD_MAIN").is_none() {
        mpshm::process::child_main();
    }
    common::run(
        tests![
            exit_codes_are_pythons,
            join_timeout_on_a_live_child,
            is_alive_before_during_after,
            results_of_every_size,
            who_am_i,
            fork_server_children_are_ours,
            a_dead_fork_server_is_replaced,
            #[cfg(feature = "serde")]
            serde_payloads,
            handles_are_send_and_sync,
            misuse_is_refused,
            stdin_is_not_shared,
            fork_needs_a_single_thread,
            daemons_die_with_their_parent,
            commands_get_segment_names,
            child_main_takes_over_when_the_hook_is_off,
            a_child_running_main_is_reported,
            a_job_for_another_executable_is_ignored,
            parent_process_outlives_the_parent,
            active_children_are_pythons,
            close_is_pythons,
            daemons_may_not_start_children,
            default_names_nest
        ],
        routines![
            start_daemon_and_park,
            start_orphan_and_park,
            fork_and_report,
            start_and_report,
            command_child,
            read_stdin_in_a_child,
            fork_and_look_around
        ],
    );
}

fn double(x: u64) -> u64 {
    x * 2
}

fn boom(_: ()) -> u32 {
    panic!("boom from the child")
}

fn exit_0(_: ()) {
    std::process::exit(0)
}

fn exit_0_u64(_: ()) -> u64 {
    std::process::exit(0)
}

fn exit_3(_: ()) {
    std::process::exit(3)
}

fn wait_forever(_: ()) {
    loop {
        std::thread::park();
    }
}

/// Waits for a message on the queue `name`, then returns it.
fn wait_for(name: String) -> u32 {
    Queue::<u32>::open(&name)
        .expect("open")
        .get()
        .expect("message")
}

/// The start methods whose children are fresh runs of this executable.
const METHODS: [StartMethod; 2] = [StartMethod::Spawn, StartMethod::ForkServer];

fn exit_codes_are_pythons() {
    checked(|| {
        for method in METHODS {
            exit_codes_under(method);
        }
        stop_fork_server();
    });
}

/// `f(arg)` in a process started by `method`.
fn started_under<A: Payload, R: Payload>(method: StartMethod, f: fn(A) -> R, arg: A) -> Process<R> {
    let mut p = Process::new(f, arg);
    p.set_start_method(method);
    p.start().expect("start");
    p
}

fn exit_codes_under(method: StartMethod) {
    {
        let mut p = Process::new(double, 21);
        p.set_start_method(method);
        assert_eq!(p.exitcode(), None);
        p.start().expect("start");
        assert_eq!(p.join().expect("result"), 42);
        assert_eq!(p.exitcode(), Some(0));
        assert!(matches!(p.join(), Err(ProcessError::ResultTaken)));

        let p = started_under(method, boom, ());
        match p.join() {
            Err(ProcessError::Panicked { pid, message }) => {
                assert_eq!(Some(pid), p.pid());
                assert_eq!(message, "boom from the child");
            }
            other => panic!("expected a panic, got {other:?}"),
        }
        assert_eq!(p.exitcode(), Some(1));

        let p = started_under(method, exit_3, ());
        assert!(matches!(
            p.join(),
            Err(ProcessError::Exited {
                exit: Exit::Code(3),
                ..
            })
        ));
        assert_eq!(p.exitcode(), Some(3));

        // Python's `sys.exit(0)` (or `False`): exit code 0, a success where there is no
        // result to lose, and `Exited` where there is one.
        let p = started_under(method, exit_0, ());
        p.join().expect("exit status 0 is a success");
        assert_eq!(p.exitcode(), Some(0));
        let p = started_under(method, exit_0_u64, ());
        assert!(matches!(
            p.join(),
            Err(ProcessError::Exited {
                exit: Exit::Code(0),
                ..
            })
        ));

        for (terminate, signal) in [(true, 15), (false, 9)] {
            let p = started_under(method, wait_forever, ());
            if terminate {
                p.terminate().expect("terminate");
            } else {
                p.kill().expect("kill");
            }
            match p.join() {
                Err(ProcessError::Exited {
                    exit: Exit::Signal(s),
                    ..
                }) => assert_eq!(s, signal),
                other => panic!("expected a signal, got {other:?}"),
            }
            assert_eq!(p.exitcode(), Some(-signal));
            // Signalling an ended child does nothing.
            p.kill().expect("kill after the end");
        }
    }
}

fn join_timeout_on_a_live_child() {
    checked(|| {
        let mut p = Process::new(wait_forever, ());
        p.set_daemon(true);
        p.start().expect("start");
        let asked = Duration::from_millis(200);
        let r = common::timed(asked, || p.join_timeout(asked));
        assert!(r.is_none(), "the child still runs");
        assert!(p.is_alive());
        assert_eq!(p.exitcode(), None);
        p.kill().expect("kill");
        let r = p.join_timeout(Duration::from_secs(30)).expect("ended");
        assert!(matches!(
            r,
            Err(ProcessError::Exited {
                exit: Exit::Signal(9),
                ..
            })
        ));
    });
}

fn is_alive_before_during_after() {
    checked(|| {
        let q = Queue::<u32>::create(&common::name("alive"), 1).expect("queue");
        let p = Process::new(wait_for, q.name().to_owned());
        assert!(!p.is_alive());
        assert_eq!(p.pid(), None);
        p.start().expect("start");
        // It cannot end before the message comes.
        assert!(p.is_alive());
        assert!(p.pid().is_some());
        q.put(7).expect("put");
        assert_eq!(p.join().expect("result"), 7);
        assert!(!p.is_alive());
    });
}

fn text(n: usize) -> String {
    "x".repeat(n)
}

fn lengths(v: Vec<String>) -> Vec<usize> {
    v.iter().map(String::len).collect()
}

fn nothing(_: ()) {}

fn results_of_every_size() {
    checked(|| {
        // Small results come back in the process's channel, large ones through a segment
        // of their own.
        for n in [0, 10, 4000, 5000, 1 << 20] {
            let p = Process::new(text, n);
            p.start().expect("start");
            assert_eq!(p.join().expect("result").len(), n);
        }
        let big = vec![text(3), text(100_000), String::new()];
        let p = Process::new(lengths, big);
        p.start().expect("start");
        assert_eq!(p.join().expect("result"), [3, 100_000, 0]);
        let p = Process::new(nothing, ());
        p.start().expect("start");
        p.join().expect("unit result");
    });
}

#[cfg(feature = "serde")]
fn count_words(
    text: mpshm::Postcard<Vec<String>>,
) -> mpshm::Postcard<std::collections::BTreeMap<String, u32>> {
    let mut counts = std::collections::BTreeMap::new();
    for w in text.0 {
        *counts.entry(w).or_insert(0) += 1;
    }
    mpshm::Postcard(counts)
}

#[cfg(feature = "serde")]
fn serde_payloads() {
    checked(|| {
        use mpshm::Postcard;
        let words = ["a", "b", "a"].map(String::from).to_vec();
        let p = Process::new(count_words, Postcard(words));
        p.start().expect("start");
        let counts = p.join().expect("result").0;
        assert_eq!(counts.get("a"), Some(&2));
        assert_eq!(counts.get("b"), Some(&1));
    });
}

/// Handles move between threads and are shared by them.
fn handles_are_send_and_sync() {
    fn both<T: Send + Sync>() {}
    both::<Process<u64>>();
    both::<mpshm::process::Pool>();
    both::<mpshm::process::ThreadPool>();
    both::<mpshm::process::AsyncResult<Vec<u64>>>();
}

fn names(_: ()) -> (String, u32, u32, Option<(String, u32)>) {
    let me = current_process();
    (
        me.name,
        me.pid,
        me.ppid,
        parent_process().map(|p| (p.name, p.pid)),
    )
}

fn who_am_i() {
    checked(|| {
        for method in METHODS {
            let mut p = Process::new(names, ());
            p.set_name("worker-7").set_start_method(method);
            p.start().expect("start");
            let (name, pid, ppid, parent) = p.join().expect("result");
            assert_eq!(name, "worker-7");
            assert_eq!(Some(pid), p.pid());
            assert_eq!(ppid, std::process::id());
            assert_eq!(parent, Some(("MainProcess".to_owned(), std::process::id())));
            assert_eq!(current_process().name, "MainProcess");
            assert!(parent_process().is_none());
        }
        stop_fork_server();
    });
}

/// What a child finds of its parent's setting up: the segment name handed under `KEY`, its
/// working directory.
fn surroundings(_: ()) -> (Option<String>, String) {
    (
        mpshm::process::segment_name("KEY"),
        std::env::current_dir()
            .expect("cwd")
            .to_string_lossy()
            .into_owned(),
    )
}

/// Locks the lock `names.0`, says so on the queue `names.1`, and waits to be killed.
fn hold_lock((lock, queue): (String, String)) {
    let lock = Lock::open(&lock).expect("open the lock");
    let _held = lock.acquire().expect("lock");
    Queue::<u32>::open(&queue)
        .expect("open the queue")
        .put(1)
        .expect("put");
    loop {
        std::thread::park();
    }
}

/// A fork server's child is this process's child, takes the environment and working directory
/// of this process at `start`, and holds robust locks as its own: killed while it holds one,
/// the next acquirer gets it with `OwnerDied` (with glibc's idea of the thread's id left at
/// the server's, the lock word would name the live server and the acquirer would wait).
fn fork_server_children_are_ours() {
    checked(|| {
        let mut p = Process::new(surroundings, ());
        p.set_start_method(StartMethod::ForkServer)
            .set_segment("KEY", "a-segment");
        p.start().expect("start");
        let here = std::env::current_dir().expect("cwd");
        assert_eq!(
            p.join().expect("result"),
            (
                Some("a-segment".to_owned()),
                here.to_string_lossy().into_owned()
            )
        );
        let server = mpshm::process::fork_server_pid().expect("a fork server runs");
        assert_ne!(Some(server), p.pid());

        let lock = Lock::create(&common::name("fs-lock"), ()).expect("lock");
        let q = Queue::<u32>::create(&common::name("fs-held"), 1).expect("queue");
        let mut p = Process::new(hold_lock, (lock.name().to_owned(), q.name().to_owned()));
        p.set_start_method(StartMethod::ForkServer);
        p.start().expect("start");
        let held = q.get_timeout(Duration::from_secs(30));
        assert!(
            matches!(held, Ok(1)),
            "the child did not say it holds the lock ({held:?}); it ended with {:?}",
            p.join_timeout(Duration::ZERO)
        );
        p.kill().expect("kill");
        assert!(matches!(
            p.join(),
            Err(ProcessError::Exited {
                exit: Exit::Signal(9),
                ..
            })
        ));
        match lock.acquire_timeout(Duration::from_secs(10)) {
            Err(mpshm::LockError::OwnerDied(_)) => {}
            Err(e) => panic!("expected OwnerDied, got {e:?}"),
            Ok(_) => panic!("expected OwnerDied, got the lock clean"),
        }
        stop_fork_server();
        assert_eq!(mpshm::process::fork_server_pid(), None);
    });
}

/// Kills the process when dropped (a no-op once it ended).
struct KillOnDrop<'a>(&'a Process<u32>);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

/// A fork server that dies is replaced at the next start, and its children are not touched.
fn a_dead_fork_server_is_replaced() {
    checked(|| {
        let start = || {
            let mut p = Process::new(double, 21);
            p.set_start_method(StartMethod::ForkServer);
            p.start().expect("start");
            p
        };
        let q = Queue::<u32>::create(&common::name("fs-alive"), 1).expect("queue");
        let mut waiting = Process::new(wait_for, q.name().to_owned());
        waiting.set_start_method(StartMethod::ForkServer);
        waiting.start().expect("start");
        // If the test fails before the message, the child must not hold the handle's drop.
        let _end = KillOnDrop(&waiting);
        let first = mpshm::process::fork_server_pid().expect("a fork server runs");
        let server = pidfd(first);
        rustix::process::pidfd_send_signal(&server.0, rustix::process::Signal::KILL).expect("kill");
        // Dead (not reaped: it is ours, and the next start reaps it), as after its starting
        // thread ended. A server killed between a request and its answer fails that start
        // instead, since it may have forked the child.
        assert!(ends_within(&server, Duration::from_secs(30)));
        assert_eq!(start().join().expect("result"), 42);
        let second = mpshm::process::fork_server_pid().expect("a fork server runs");
        assert_ne!(first, second);
        // The child started by the first server is still there, and still ours.
        assert!(waiting.is_alive());
        q.put(5).expect("put");
        assert_eq!(waiting.join().expect("result"), 5);
        stop_fork_server();
    });
}

fn read_stdin(_: ()) -> usize {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap_or(0)
}

/// In a child whose standard input is a pipe from the test (which never writes to it): a
/// grandchild reading its standard input must see the end of it at once.
fn read_stdin_in_a_child(_: &[String]) {
    let mut p = Process::new(read_stdin, ());
    p.set_daemon(true);
    p.start().expect("start");
    match p.join_timeout(Duration::from_secs(20)) {
        Some(r) => common::say(&format!("read {}", r.expect("result"))),
        None => common::say("blocked"),
    }
}

fn stdin_is_not_shared() {
    checked(|| {
        let mut child = Child::spawn("read_stdin_in_a_child", &[]);
        assert_eq!(child.line(), "read 0");
        child.join();
    });
}

fn misuse_is_refused() {
    checked(|| {
        let p = Process::new(double, 1);
        assert!(matches!(p.join(), Err(ProcessError::NotStarted)));
        assert!(matches!(p.kill(), Err(ProcessError::NotStarted)));
        p.start().expect("start");
        assert!(matches!(p.start(), Err(ProcessError::AlreadyStarted)));
        assert_eq!(p.join().expect("result"), 2);
    });
}

fn fork_needs_a_single_thread() {
    checked(|| {
        // The test harness runs threads: refused.
        let mut p = Process::new(double, 1);
        p.set_start_method(StartMethod::Fork);
        match p.start() {
            Err(ProcessError::ForkWithThreads { threads }) => assert!(threads > 1),
            other => panic!("expected a refusal, got {other:?}"),
        }
        // A single-threaded process forks.
        let mut child = Child::spawn("fork_and_report", &[]);
        assert_eq!(child.line(), "42 0 fork-child 1");
        child.join();
    });
}

fn fork_and_report(_: &[String]) {
    let mut p = Process::new(double, 21);
    p.set_start_method(StartMethod::Fork).set_name("fork-child");
    p.start().expect("fork");
    let r = p.join().expect("result");
    let mut q = Process::new(names, ());
    q.set_start_method(StartMethod::Fork).set_name("fork-child");
    q.start().expect("fork");
    let (name, ..) = q.join().expect("result");
    let mut b = Process::new(boom, ());
    b.set_start_method(StartMethod::Fork);
    b.start().expect("fork");
    let panicked = matches!(b.join(), Err(ProcessError::Panicked { .. }));
    common::say(&format!(
        "{r} {} {name} {}",
        p.exitcode().unwrap_or(-100),
        u8::from(panicked)
    ));
}

/// Tells the queue `name` this process's pid, then waits forever. The handle stays open while
/// it waits: a producer that put and went away would leave the queue `Disconnected` until the
/// other grandchild attached, and the test's `get` could see that.
fn report_and_wait(name: String) {
    let q = Queue::<u32>::open(&name).expect("open");
    q.put(std::process::id()).expect("put");
    loop {
        std::thread::park();
    }
}

/// In a child: starts a daemon and a non-daemon grandchild that say their pids on the queue
/// `args[0]` and wait forever, then parks until killed.
fn start_daemon_and_park(args: &[String]) {
    let mut daemon = Process::new(report_and_wait, args[0].clone());
    daemon.set_daemon(true);
    daemon.start().expect("start");
    let plain = Process::new(report_and_wait, args[0].clone());
    plain.start().expect("start");
    common::say(&format!(
        "{} {}",
        daemon.pid().expect("pid"),
        plain.pid().expect("pid")
    ));
    common::park();
}

fn daemons_die_with_their_parent() {
    checked(|| {
        let q = Queue::<u32>::create(&common::name("daemons"), 2).expect("queue");
        let mut parent = Child::spawn("start_daemon_and_park", &[q.name()]);
        let line = parent.line();
        let (daemon, plain) = line.split_once(' ').expect("two pids");
        // Pidfds taken while the parent lives, so a reused pid cannot fool the checks.
        let daemon = pidfd(daemon.parse().expect("pid"));
        let plain = pidfd(plain.parse().expect("pid"));
        // Both run their function (so both took their argument from their channel).
        for _ in 0..2 {
            q.get_timeout(Duration::from_secs(30))
                .expect("a grandchild reports");
        }
        assert!(!ends_within(&daemon, Duration::ZERO));
        let parent_pid = parent.pid();
        parent.kill();
        assert!(
            ends_within(&daemon, Duration::from_secs(30)),
            "the daemon outlived its parent"
        );
        // Python's non-daemon children outlive a killed parent.
        assert!(!ends_within(&plain, Duration::from_millis(100)));
        rustix::process::pidfd_send_signal(&plain.0, rustix::process::Signal::KILL).expect("kill");
        assert!(ends_within(&plain, Duration::from_secs(30)));
        // The killed parent's channels lost their names once the children took their
        // arguments, so they did not outlive everyone.
        common::process::assert_no_segments_of(parent_pid);
    });
}

fn command_child(_: &[String]) {
    let name = mpshm::process::segment_name("NUMBERS").expect("segment name");
    let q = Queue::<u32>::open(&name).expect("open");
    q.put(current_process().name.len() as u32).expect("put");
    let parent = parent_process().expect("a parent");
    assert_eq!(parent.pid, current_process().ppid);
    assert_eq!(parent.name, "MainProcess");
    std::process::exit(if current_process().name == "cmd-ok" {
        0
    } else {
        4
    });
}

fn commands_get_segment_names() {
    checked(|| {
        let q = Queue::<u32>::create(&common::name("cmd"), 4).expect("queue");
        for (name, code) in [("cmd-ok", 0), ("cmd-fails", 4)] {
            let cmd = common::child::command("command_child", &[]).expect("command");
            let mut p = Process::command(cmd);
            p.set_segment("NUMBERS", q.name())
                .set_name(name)
                .set_daemon(true);
            p.start().expect("start");
            let r = p.join();
            assert_eq!(p.exitcode(), Some(code));
            if code == 0 {
                r.expect("exit status 0");
            } else {
                assert!(matches!(
                    r,
                    Err(ProcessError::Exited {
                        exit: Exit::Code(4),
                        ..
                    })
                ));
            }
            assert_eq!(q.get().expect("message"), name.len() as u32);
        }
    });
}

/// In a child: starts a process running `double(21)` and says how it went.
fn start_and_report(_: &[String]) {
    let p = Process::new(double, 21);
    match p.start().map(|()| p.join()) {
        Ok(Ok(r)) => common::say(&format!("ok {r}")),
        Ok(Err(e)) | Err(e) => common::say(&format!("err {e:?} | {e}")),
    }
}

/// Runs this test binary as `start_and_report` with `env`, and returns the lines it and its
/// children said.
fn report_with(env: &[(&str, &str)]) -> Vec<String> {
    let mut cmd = common::child::command("start_and_report", &[]).expect("command");
    cmd.envs(env.iter().copied()).stdout(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let out = BufReader::new(child.stdout.take().expect("stdout"));
    let lines = out.lines().map(|l| l.expect("line")).collect();
    assert!(child.wait().expect("wait").success());
    lines
}

fn child_main_takes_over_when_the_hook_is_off() {
    checked(|| {
        assert_eq!(report_with(&[]), ["ok 42"]);
        // The start-up hook alone takes the child over, before `main`.
        assert_eq!(
            report_with(&[("MPSHM_TEST_SKIP_CHILD_MAIN", "1")]),
            ["ok 42"]
        );
        // The hook leaves the child alone; `child_main` at the top of `main` takes it over.
        assert_eq!(report_with(&[("MPSHM_PROCESS_HOOK", "main")]), ["ok 42"]);
    });
}

fn a_job_for_another_executable_is_ignored() {
    checked(|| {
        // A spawn job whose executable identity is not this binary's, as a program that
        // inherited the variable from an mpshm child would see: it runs as usual.
        let foreign = job_for("1:2");
        assert_eq!(report_with(&[("MPSHM_PROCESS", &foreign)]), ["ok 42"]);
    });
}

/// A spawn job (`MPSHM_PROCESS`) for the executable whose identity is `exe` (`device:inode`),
/// naming a function and a channel that do not exist.
fn job_for(exe: &str) -> String {
    [
        "mpshm2",
        exe,
        "1",
        "MainProcess",
        "0",
        "0:0",
        "no-such-seg",
        "x",
        "1",
    ]
    .join("\x1f")
}

fn a_child_running_main_is_reported() {
    checked(|| {
        // Neither the hook nor `child_main`: the grandchild runs this binary's `main`, where the
        // kit refuses the routine it inherited (it was not started by the kit: exit status 2),
        // and its parent reports the error that says which line to add.
        let lines = report_with(&[
            ("MPSHM_PROCESS_HOOK", "main"),
            ("MPSHM_TEST_SKIP_CHILD_MAIN", "1"),
        ]);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("err NotIntercepted { pid: "),
            "{lines:?}"
        );
        assert!(!lines[0].starts_with("err NotIntercepted { pid: 0 }"));
        assert!(
            lines[0].contains("add `mpshm::process::child_main();` as the first line of `main`"),
            "{lines:?}"
        );
        // A process that holds a job for this executable but was not taken over refuses to
        // start children of its own (they would run `main` too, over and over).
        let exe = std::fs::metadata(std::env::current_exe().expect("exe")).expect("stat");
        let job = job_for(&format!("{}:{}", exe.dev(), exe.ino()));
        let lines = report_with(&[
            ("MPSHM_PROCESS", &job),
            ("MPSHM_PROCESS_HOOK", "main"),
            ("MPSHM_TEST_SKIP_CHILD_MAIN", "1"),
        ]);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("err NotIntercepted { pid: 0 }"),
            "{lines:?}"
        );
    });
}

/// Says on the queue `name` its own pid, then its parent's pid and whether it lives (`pid * 2 +
/// alive`), once now and once more after the parent ended.
fn report_parent(name: String) {
    let q = Queue::<u64>::open(&name).expect("open");
    let say = |p: mpshm::process::ProcessInfo| {
        q.put(u64::from(p.pid) * 2 + u64::from(p.is_alive()))
            .expect("put")
    };
    q.put(u64::from(std::process::id())).expect("put");
    say(parent_process().expect("a parent"));
    let start = Instant::now();
    while parent_process().expect("a parent").is_alive() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the parent lives on"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    say(parent_process().expect("a parent"));
}

/// In a child: starts a (non-daemon) grandchild running `report_parent`, then parks until
/// killed.
fn start_orphan_and_park(args: &[String]) {
    let p = Process::new(report_parent, args[0].clone());
    p.start().expect("start");
    common::say("started");
    common::park();
}

/// Python's `test_parent_process`: a grandchild sees its parent alive, then, after the parent
/// was killed, not alive, under the same pid (not the pid of whoever adopted it).
fn parent_process_outlives_the_parent() {
    checked(|| {
        let q = Queue::<u64>::create(&common::name("orphan"), 4).expect("queue");
        let mut parent = Child::spawn("start_orphan_and_park", &[q.name()]);
        assert_eq!(parent.line(), "started");
        let get = || q.get_timeout(Duration::from_secs(30)).expect("a report");
        let grandchild = pidfd(u32::try_from(get()).expect("pid"));
        let parent_pid = u64::from(parent.pid());
        assert_eq!(get(), parent_pid * 2 + 1, "the parent, alive");
        parent.kill();
        assert_eq!(get(), parent_pid * 2, "the parent, ended");
        assert!(ends_within(&grandchild, Duration::from_secs(30)));
        common::process::assert_no_segments_of(parent.pid());
    });
}

/// The pids of [`active_children`], in order.
fn active_pids() -> Vec<u32> {
    active_children().iter().map(|c| c.pid).collect()
}

/// Python's `test_active_children`, and more: children started from any thread count, pool
/// workers count, a child that ended leaves the list without being reaped (its handle keeps
/// its exit code), and a forked child lists none of its parent's children.
fn active_children_are_pythons() {
    checked(|| {
        assert_eq!(active_pids(), []);
        let q = Queue::<u32>::create(&common::name("active"), 2).expect("queue");
        let p = Process::new(wait_for, q.name().to_owned());
        assert_eq!(active_pids(), [], "not started yet");
        p.start().expect("start");
        let pid = p.pid().expect("started");
        let listed = active_children();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].pid, listed[0].name.as_str()), (pid, p.name()));
        assert_eq!(listed[0].ppid, std::process::id());
        assert!(listed[0].is_alive());

        // Started from another thread, which has ended since.
        let name = q.name().to_owned();
        let other = std::thread::spawn(move || {
            let p = Process::new(wait_for, name);
            p.start().expect("start");
            p
        })
        .join()
        .expect("thread");
        let other_pid = other.pid().expect("started");
        assert_eq!(active_pids(), [pid, other_pid]);

        q.put(1).expect("put");
        q.put(2).expect("put");
        let mut got = [p.join().expect("result"), other.join().expect("result")];
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
        assert_eq!(active_pids(), []);
        assert!(!listed[0].is_alive(), "asked again, the info sees the end");

        // Ended but not reaped: not listed, and the handle still reaps it and has its code.
        let p = Process::new(exit_3, ());
        p.start().expect("start");
        let fd = pidfd(p.pid().expect("started"));
        assert!(ends_within(&fd, Duration::from_secs(30)));
        assert_eq!(active_pids(), []);
        assert_eq!(p.exitcode(), Some(3));

        // Python's pool workers are processes of this process, and count.
        let pool = Pool::new(2).expect("pool");
        let listed = active_children();
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(listed.iter().all(|c| c.name.starts_with("PoolWorker-")));
        drop(pool);
        assert_eq!(active_pids(), []);

        let mut child = Child::spawn("fork_and_look_around", &[]);
        assert_eq!(child.line(), "forked child sees 0, parent sees 1");
        child.join();
    });
}

fn count_children(_: ()) -> (u32, Vec<String>) {
    let names = [Process::new(double, 1), Process::new(double, 2)];
    (
        active_children().len() as u32,
        names.iter().map(|p| p.name().to_owned()).collect(),
    )
}

/// In a single-threaded child: starts a child, then forks one that counts its own active
/// children and names two processes; says what each side saw.
fn fork_and_look_around(_: &[String]) {
    let mut waiting = Process::new(wait_forever, ());
    waiting.set_daemon(true);
    waiting.start().expect("start");
    let mut forked = Process::new(count_children, ());
    forked.set_start_method(StartMethod::Fork);
    forked.start().expect("fork");
    let (seen, names) = forked.join().expect("result");
    let me = forked.name().trim_start_matches("Process-");
    assert_eq!(
        names,
        [format!("Process-{me}:1"), format!("Process-{me}:2")],
        "a forked child counts its own children from 1"
    );
    let parent_sees = active_children().len();
    waiting.kill().expect("kill");
    let _ = waiting.join();
    common::say(&format!(
        "forked child sees {seen}, parent sees {parent_sees}"
    ));
}

/// Python's `test_close`: refused while the child runs; afterwards every method that needs
/// the child fails with `ProcessClosed`, and closing again is fine. A child that ended is
/// reaped by `close`, and a result never taken (here one in a segment of its own) is removed
/// (`checked` finds no child and no segment left).
fn close_is_pythons() {
    checked(|| {
        let q = Queue::<u32>::create(&common::name("close"), 1).expect("queue");
        let mut p = Process::new(wait_for, q.name().to_owned());
        p.set_daemon(true);
        p.start().expect("start");
        let pid = p.pid().expect("started");
        match p.close() {
            Err(ProcessError::StillRunning { pid: running }) => assert_eq!(running, pid),
            other => panic!("expected StillRunning, got {other:?}"),
        }
        assert!(p.is_alive());
        q.put(5).expect("put");
        assert_eq!(p.join().expect("result"), 5);
        assert!(!p.is_alive());
        assert_eq!(p.exitcode(), Some(0));
        p.close().expect("close");
        let closed = |r: Result<(), ProcessError>| matches!(r, Err(ProcessError::ProcessClosed));
        // Plain values where Python raises: no pid that may name another process by now.
        assert_eq!(
            (p.pid(), p.is_alive(), p.exitcode()),
            (None, false, Some(0))
        );
        assert!(closed(p.join().map(drop)));
        assert!(closed(
            p.join_timeout(Duration::ZERO).expect("no wait").map(drop)
        ));
        assert!(closed(p.terminate()));
        assert!(closed(p.kill()));
        assert!(closed(p.start()));
        assert!(!active_pids().contains(&pid));
        p.close().expect("close twice");
        assert!(p.name().starts_with("Process-"));

        let never = Process::new(double, 1);
        never.close().expect("close unstarted");
        assert!(closed(never.start()));

        let big = Process::new(text, 1 << 20);
        big.start().expect("start");
        let fd = pidfd(big.pid().expect("started"));
        assert!(ends_within(&fd, Duration::from_secs(30)));
        big.close().expect("close an ended child");
        assert!(closed(big.join().map(drop)));
    });
}

/// What happens when this process tries to start a child: `started`, or the error.
fn try_to_start(_: ()) -> String {
    let p = Process::new(double, 1);
    let process = match p.start() {
        Ok(()) => p.join().map(|_| "started".to_owned()),
        Err(e) => Err(e),
    };
    let pool = Pool::new(1).map(|_| "started".to_owned());
    let say = |r: Result<String, ProcessError>| match r {
        Ok(s) => s,
        Err(ProcessError::StartInDaemon) => "refused".to_owned(),
        Err(e) => format!("error: {e}"),
    };
    format!("process {}, pool {}", say(process), say(pool))
}

/// Python's `daemonic processes are not allowed to have children`, for processes and pools;
/// a non-daemon child may start them.
fn daemons_may_not_start_children() {
    checked(|| {
        for method in METHODS {
            for daemon in [true, false] {
                let mut p = Process::new(try_to_start, ());
                p.set_daemon(daemon).set_start_method(method);
                p.start().expect("start");
                let expected = if daemon {
                    "process refused, pool refused"
                } else {
                    "process started, pool started"
                };
                assert_eq!(p.join().expect("result"), expected, "{method:?}");
            }
        }
        stop_fork_server();
    });
}

/// This process's name, and the default name of a process made in it.
fn name_below(_: ()) -> (String, String) {
    (
        current_process().name,
        Process::new(double, 1).name().to_owned(),
    )
}

/// The default names of two processes made here, and what the second says when started.
fn names_below(_: ()) -> (String, String, (String, String)) {
    let first = Process::new(double, 1);
    let second = Process::new(name_below, ());
    second.start().expect("start");
    (
        first.name().to_owned(),
        second.name().to_owned(),
        second.join().expect("result"),
    )
}

/// Python's default names: `Process-3:2` for the second process made in `Process-3`, whatever
/// name that one was given.
fn default_names_nest() {
    checked(|| {
        for method in METHODS {
            for rename in [false, true] {
                let mut p = Process::new(names_below, ());
                let id = p.name().trim_start_matches("Process-").to_owned();
                assert!(id.parse::<u32>().is_ok(), "{id}");
                if rename {
                    p.set_name("renamed");
                }
                p.set_start_method(method);
                p.start().expect("start");
                let (first, second, (second_sees, third)) = p.join().expect("result");
                assert_eq!(first, format!("Process-{id}:1"));
                assert_eq!(second, format!("Process-{id}:2"));
                assert_eq!(second_sees, second);
                assert_eq!(third, format!("Process-{id}:2:1"));
            }
        }
        stop_fork_server();
    });
}
