//! Every seed example, run as a user runs it, with its output checked (key lines, pids that
//! differ, counts, the negated array, the dict, the timeout message...), and no segment of its
//! run left in `/dev/shm`; and the two-binaries pair (`examples/two-binaries/`), built as two
//! separate packages and run end to end.
//!
//! The examples are built first with `cargo build --examples` in the profile (and with the
//! features) of this test binary, so that `cargo test --test examples` alone runs fresh ones.
//! Examples that need the `serde` feature are skipped, and say so, in a build without it. Sleeps
//! in the examples are shortened (`MPSHM_EXAMPLE_SLEEP_SCALE`). Building the two-binaries pair
//! compiles mpshm once more, in release, into `target/two-binaries` (about half a minute the
//! first time); `MPSHM_TEST_SKIP_TWO_BINARIES=1` skips that test.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

/// Examples that need the `serde` feature.
const NEED_SERDE: &[&str] = &[
    "queue_hello",
    "queue_qsize",
    "pipe_hello",
    "pipe_duplex",
    "manager_dict_list",
];
/// How long one example may run before it is killed and the test fails.
const LIMIT: Duration = Duration::from_secs(60);

fn main() {
    common::run(
        tests![
            every_example_is_checked,
            process_hello,
            process_loop,
            process_spawn,
            queue_results,
            #[cfg(feature = "serde")]
            queue_hello,
            queue_writer_reader,
            #[cfg(feature = "serde")]
            queue_qsize,
            #[cfg(feature = "serde")]
            pipe_hello,
            #[cfg(feature = "serde")]
            pipe_duplex,
            lock_print,
            value_array,
            #[cfg(feature = "serde")]
            manager_dict_list,
            pool_map,
            pool_async,
            pool_close_join,
            thread_pool,
            seeds_compare,
            two_binaries
        ],
        routines![],
    );
}

/// This test binary's profile folder, `target/<profile>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/examples-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary lies in target/<profile>/deps")
        .to_owned()
}

fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

/// Runs a build command; panics with its output if it fails.
fn build(mut cmd: Command) {
    let out = cmd.output().expect("run cargo");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The examples folder of this profile, once `cargo build --examples` has run in it.
fn examples_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = profile_dir();
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev".to_owned(),
            Some(p) => p.to_owned(),
            None => panic!("no profile folder in {}", dir.display()),
        };
        let mut cmd = cargo();
        cmd.args(["build", "--examples", "--profile", &profile]);
        if cfg!(feature = "serde") {
            cmd.args(["--features", "serde"]);
        }
        build(cmd);
        dir.join("examples")
    })
}

/// What an example printed.
struct Run {
    pid: u32,
    out: String,
}

impl Run {
    fn lines(&self) -> Vec<&str> {
        self.out.lines().collect()
    }

    /// The lines that start with `prefix`.
    fn starting(&self, prefix: &str) -> Vec<&str> {
        self.out.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    fn has(&self, line: &str) {
        assert!(
            self.out.lines().any(|l| l == line),
            "no line {line:?} in:\n{}",
            self.out
        );
    }
}

/// A thread reading a child's standard output.
struct Output {
    /// The first line, as soon as it comes.
    first: mpsc::Receiver<String>,
    /// Everything, once the output ends.
    all: std::thread::JoinHandle<String>,
}

/// Starts `cmd` with its standard output captured.
fn start(mut cmd: Command) -> (Child, Output) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let (tx, first) = mpsc::channel();
    let all = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_line(&mut s).expect("UTF-8 output");
        let _ = tx.send(s.trim_end().to_owned());
        stdout.read_to_string(&mut s).expect("UTF-8 output");
        s
    });
    (child, Output { first, all })
}

/// Waits at most [`LIMIT`] for `child` (killing it after that) and returns what it printed;
/// panics unless it exited with status 0.
fn finish(mut child: Child, output: Output, what: &str) -> String {
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} ran longer than {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = output.all.join().expect("reader");
    assert!(
        status.success(),
        "{what} failed ({status}); it printed:\n{out}"
    );
    out
}

/// The segments in `/dev/shm` whose names hold `pid` as a number and that were changed since
/// `since`: those of a run of an example whose process id it was (the examples and mpshm's own
/// channels name their segments so). An older one is another process's that had the same pid
/// (`/dev/shm` is shared), and is left alone.
fn segments_of(pid: u32, since: std::time::SystemTime) -> Vec<String> {
    let pid = pid.to_string();
    std::fs::read_dir("/dev/shm")
        .expect("/dev/shm")
        .filter_map(|e| {
            let e = e.ok()?;
            let changed = e.metadata().ok()?.modified().ok()?;
            let name = e.file_name().into_string().ok()?;
            (changed >= since).then_some(name)
        })
        .filter(|n| n.split(|c: char| !c.is_ascii_digit()).any(|t| t == pid))
        .collect()
}

/// Runs example `name` (built beforehand), checks that it succeeded and left no segment.
/// `None` for an example that needs a feature this build lacks.
fn run(name: &str) -> Option<Run> {
    if NEED_SERDE.contains(&name) && !cfg!(feature = "serde") {
        eprintln!("{name}: skipped, it needs the serde feature");
        return None;
    }
    let mut cmd = Command::new(examples_dir().join(name));
    cmd.env("MPSHM_EXAMPLE_SLEEP_SCALE", "0.05");
    // File times are taken from a coarse clock, which may lag this one by a tick.
    let started = std::time::SystemTime::now() - Duration::from_secs(1);
    let (child, reader) = start(cmd);
    let pid = child.id();
    let out = finish(child, reader, name);
    let left = segments_of(pid, started);
    if !left.is_empty() {
        for n in &left {
            let _ = std::fs::remove_file(Path::new("/dev/shm").join(n));
        }
        panic!("{name} left segments in /dev/shm: {left:?}");
    }
    Some(Run { pid, out })
}

/// The number after `key` in `line` (up to the next space, `)` or `.`).
fn number_after(line: &str, key: &str) -> u32 {
    let rest = &line[line
        .find(key)
        .unwrap_or_else(|| panic!("{key:?} in {line:?}"))
        + key.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("a number after {key:?} in {line:?}"))
}

fn squares(n: u64) -> String {
    format!("{:?}", (0..n).map(|x| x * x).collect::<Vec<_>>())
}

fn every_example_is_checked() {
    let checked: BTreeSet<&str> = [
        "process_hello",
        "process_loop",
        "process_spawn",
        "queue_results",
        "queue_hello",
        "queue_writer_reader",
        "queue_qsize",
        "pipe_hello",
        "pipe_duplex",
        "lock_print",
        "value_array",
        "manager_dict_list",
        "pool_map",
        "pool_async",
        "pool_close_join",
        "thread_pool",
        "seeds_compare",
    ]
    .into();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for entry in std::fs::read_dir(&dir).expect("examples/") {
        let path = entry.expect("entry").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "rs") {
            assert!(
                checked.contains(stem),
                "examples/{stem}.rs is not checked by tests/examples.rs (benchmarks are not \
                 examples: they belong to `mpshm bench`, in cli/)"
            );
        }
    }
}

fn process_hello() {
    let r = run("process_hello").expect("no feature needed");
    let me = r.pid;
    r.has("aaaaaa");
    r.has(&format!("Parent process {me}."));
    let child = r.starting("Run child process test (");
    assert_eq!(child.len(), 1, "{}", r.out);
    assert_ne!(number_after(child[0], "("), me);
    r.has("Process end.");
    // info() in the parent, then in the child. The parent's "Process-N <pid>" line may come
    // anywhere among the child's.
    let spawned: Vec<&str> = r.starting("Process-");
    assert_eq!(spawned.len(), 1, "{}", r.out);
    let lines: Vec<&str> = r
        .lines()
        .into_iter()
        .filter(|l| !l.starts_with("Process-"))
        .collect();
    let main_line = lines
        .iter()
        .position(|l| *l == "main line")
        .expect("main line");
    assert_eq!(lines[main_line + 1], "process name: MainProcess");
    assert_eq!(lines[main_line + 3], format!("process id: {me}"));
    let f = lines
        .iter()
        .position(|l| *l == "function f")
        .expect("function f");
    assert!(lines[f + 1].starts_with("process name: Process-"));
    assert_eq!(lines[f + 2], format!("parent process: {me}"));
    let child = number_after(lines[f + 3], "process id: ");
    assert_ne!(child, me);
    assert_eq!(lines[f + 4], "hello bob");
    assert_eq!(
        number_after(spawned[0], " "),
        child,
        "the pid the parent saw"
    );
}

fn process_loop() {
    let r = run("process_loop").expect("no feature needed");
    for i in 0..5 {
        r.has(&format!("starting process {i}"));
    }
    let mut xs = BTreeSet::new();
    let mut pids = BTreeSet::new();
    for line in r.lines().iter().filter(|l| l.contains(" child process [")) {
        xs.insert(number_after(line, "child process ["));
        assert_eq!(number_after(line, "parent_process_id:"), r.pid, "{line}");
        pids.insert(number_after(line, " process id:"));
    }
    assert_eq!(xs, (0..5).collect(), "{}", r.out);
    assert_eq!(pids.len(), 5, "five different processes: {}", r.out);
    assert!(!pids.contains(&r.pid));
}

fn process_spawn() {
    let r = run("process_spawn").expect("no feature needed");
    r.has(&format!("main: MainProcess (pid {})", r.pid));
    let child = r.starting("process: Process-1 (pid ");
    assert_eq!(child.len(), 1, "{}", r.out);
    assert_ne!(number_after(child[0], "(pid "), r.pid);
    assert!(child[0].ends_with("parent MainProcess"), "{}", child[0]);
    r.has("exitcode Some(0)");
    assert!(r.starting("pool: ").len() == 1, "{}", r.out);
    r.has(&format!("squares {}", squares(10)));
}

fn queue_results() {
    let r = run("queue_results").expect("no feature needed");
    assert_eq!(r.lines(), ["499667166000"]);
}

#[cfg(feature = "serde")]
fn queue_hello() {
    let r = run("queue_hello").expect("built with serde");
    assert_eq!(r.lines(), [r#"(42, None, "hello")"#]);
}

fn queue_writer_reader() {
    let r = run("queue_writer_reader").expect("no feature needed");
    let lines = r.lines();
    let put: Vec<usize> = ["A", "B", "C"]
        .iter()
        .map(|v| {
            let line = format!("Put {v} to queue...");
            lines.iter().position(|l| *l == line).expect(&line)
        })
        .collect();
    assert!(put.is_sorted(), "{}", r.out);
    // The reader is terminated as soon as the writer is done, so it may not have printed
    // every letter (as in Python); those it printed come in order, each after its put.
    let got: Vec<(usize, &str)> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| Some((i, l.strip_prefix("Get ")?.strip_suffix(" from queue.")?)))
        .collect();
    for (k, (at, v)) in got.iter().enumerate() {
        assert_eq!(*v, ["A", "B", "C"][k], "{}", r.out);
        assert!(*at > put[k], "got before it was put:\n{}", r.out);
    }
    assert_eq!(
        lines.last(),
        Some(&"reader terminated, exit code Some(-15)")
    );
}

#[cfg(feature = "serde")]
fn queue_qsize() {
    let r = run("queue_qsize").expect("built with serde");
    for x in 0..5 {
        r.has(&format!(r#"({x}, "None", "test") {}"#, 4 - x));
    }
    r.has(r#"(0, "None", "test")"#);
    r.has(r#"(1, "None", "test")"#);
    assert_eq!(r.starting("all messages read").len(), 2, "{}", r.out);
    let children: Vec<&str> = r
        .lines()
        .into_iter()
        .filter(|l| l.contains(" child process ["))
        .collect();
    assert_eq!(children.len(), 8, "{}", r.out);
    // The first five run in children; the last three in the parent itself.
    for line in &children[..5] {
        assert_eq!(number_after(line, "parent_process_id:"), r.pid, "{line}");
    }
    for line in &children[5..] {
        assert!(line.contains("name:MainProcess"), "{line}");
        assert_eq!(number_after(line, " process id:"), r.pid, "{line}");
    }
}

#[cfg(feature = "serde")]
fn pipe_hello() {
    let r = run("pipe_hello").expect("built with serde");
    let lines = r.lines();
    assert_eq!(lines.len(), 2, "{}", r.out);
    assert!(lines[0].starts_with("Connection {"), "{}", lines[0]);
    assert_eq!(lines[1], r#"(42, None, "hello")"#);
}

#[cfg(feature = "serde")]
fn pipe_duplex() {
    let r = run("pipe_duplex").expect("built with serde");
    let want: Vec<String> = (0..4)
        .map(|x| format!(r#"({x}, "None", "IPC_pipe_test")"#))
        .collect();
    assert_eq!(r.lines(), want);
}

fn lock_print() {
    let r = run("lock_print").expect("no feature needed");
    let mut lines = r.lines();
    lines.sort_unstable();
    let mut want: Vec<String> = (0..10).map(|i| format!("hello world {i}")).collect();
    want.sort_unstable();
    assert_eq!(lines, want);
}

fn value_array() {
    let r = run("value_array").expect("no feature needed");
    assert_eq!(
        r.lines(),
        ["3.1415927", "[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]"]
    );
}

#[cfg(feature = "serde")]
fn manager_dict_list() {
    let r = run("manager_dict_list").expect("built with serde");
    let lines = r.lines();
    assert_eq!(lines.len(), 2, "{}", r.out);
    let dict = lines[0]
        .strip_prefix('{')
        .and_then(|d| d.strip_suffix('}'))
        .expect("a dict");
    let mut items: Vec<&str> = dict.split(", ").collect();
    items.sort_unstable();
    assert_eq!(items, ["'2': 2", "0.25: None", "1: '1'"]);
    assert_eq!(lines[1], "[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]");
}

fn pool_map() {
    let r = run("pool_map").expect("no feature needed");
    let mut want = vec![squares(10), "[25]".to_owned(), squares(10)];
    want.extend(std::iter::repeat_n("[1, 4, 9]".to_owned(), 6));
    assert_eq!(r.lines(), want);
}

fn pool_async() {
    let r = run("pool_async").expect("no feature needed");
    let lines = r.lines();
    assert_eq!(lines.len(), 17, "{}", r.out);
    assert_eq!(lines[0], squares(10));
    let mut unordered: Vec<u64> = lines[1..11]
        .iter()
        .map(|l| l.parse().expect("a number"))
        .collect();
    unordered.sort_unstable();
    assert_eq!(format!("{unordered:?}"), squares(10));
    assert_eq!(lines[11], "400");
    let worker: u32 = lines[12].parse().expect("a pid");
    assert_ne!(worker, r.pid);
    let pids: Vec<u32> = lines[13]
        .trim_matches(['[', ']'])
        .split(", ")
        .map(|p| p.parse().expect("a pid"))
        .collect();
    assert_eq!(pids.len(), 4);
    assert!(!pids.contains(&r.pid));
    assert_eq!(
        lines[14..],
        [
            "We lacked patience and got a multiprocessing.TimeoutError",
            "For the moment, the pool remains available for more work",
            "Now the pool is closed and no longer available",
        ]
    );
}

fn pool_close_join() {
    let r = run("pool_close_join").expect("no feature needed");
    let lines = r.lines();
    assert_eq!(lines.len(), 15, "{}", r.out);
    let mut xs = BTreeSet::new();
    for line in &lines[..10] {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 4, "{line}");
        xs.insert(fields[0].parse::<u32>().expect("x"));
        assert_ne!(fields[1].parse::<u32>().expect("pid"), r.pid, "{line}");
        assert_eq!(fields[2].parse::<u32>().expect("ppid"), r.pid, "{line}");
    }
    assert_eq!(xs, (0..10).collect());
    assert_eq!(lines[10..12], ["the end", "apply: 49999995000000"]);
    // The callback runs on the pool's thread, before the result is ready, and may come before
    // or after the refused join.
    let mut middle = lines[12..14].to_vec();
    middle.sort_unstable();
    assert_eq!(
        middle,
        [
            "callback: 149999985000000",
            "join before close: the pool is still running; call close or terminate before join",
        ]
    );
    assert_eq!(lines[14], "149999985000000");
}

fn thread_pool() {
    let r = run("thread_pool").expect("no feature needed");
    let lines = r.lines();
    assert_eq!(lines.len(), 13, "{}", r.out);
    assert!(lines[0].starts_with("http://www.python.org opened by ThreadPoolWorker-"));
    assert!(lines[12].starts_with("http://www.python.org/community/awards/ opened by "));
    let threads: BTreeSet<&str> = lines
        .iter()
        .map(|l| l.rsplit(' ').next().expect("a thread"))
        .collect();
    assert!(threads.len() > 1, "the work was shared:\n{}", r.out);
    assert!(threads.iter().all(|t| t.starts_with("ThreadPoolWorker-")));
}

fn seeds_compare() {
    let r = run("seeds_compare").expect("no feature needed");
    r.has("normal: 499999666667166666000000");
    r.has("multithread: 499999666667166666000000");
    r.has("multicore: 499999666667166666000000");
    r.has("149999985000000");
    for way in [
        "normal",
        "multithread",
        "multicore",
        "sequential",
        "processes",
        "pool",
    ] {
        let line = r.starting(&format!("{way} time: "));
        assert_eq!(line.len(), 1, "{}", r.out);
        let secs: f64 = line[0]
            .rsplit(' ')
            .next()
            .unwrap_or("")
            .parse()
            .expect("seconds");
        assert!(secs > 0.0, "{}", line[0]);
    }
}

fn two_binaries() {
    if std::env::var_os("MPSHM_TEST_SKIP_TWO_BINARIES").is_some() {
        eprintln!("two_binaries: skipped (MPSHM_TEST_SKIP_TWO_BINARIES)");
        return;
    }
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/two-binaries");
    let target = profile_dir()
        .parent()
        .expect("target/")
        .join("two-binaries");
    for half in ["consumer", "producer"] {
        let mut cmd = cargo();
        cmd.args(["build", "--release", "--manifest-path"])
            .arg(folder.join(half).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target);
        build(cmd);
    }
    let bin = target.join("release");
    let name = format!("twobin{}", std::process::id());
    let segments = [
        format!("{name}.readings"),
        format!("{name}.count"),
        format!("{name}.pipe"),
    ];

    // A producer without its consumer says what to do.
    let out = Command::new(bin.join("mpshm-producer"))
        .arg(&name)
        .output()
        .expect("run the producer");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("start the consumer first"), "{err}");

    let mut consumer = Command::new(bin.join("mpshm-consumer"));
    consumer.arg(&name);
    let (consumer, reader) = start(consumer);
    // The consumer's first line comes once its segments exist.
    let first = reader
        .first
        .recv_timeout(LIMIT)
        .expect("the consumer's first line");
    assert!(first.contains(": waiting for readings on "), "{first}");
    assert!(segments.iter().all(|s| common::exists(s)), "{segments:?}");
    let mut producer = Command::new(bin.join("mpshm-producer"));
    producer.args([&name, "20000"]);
    let (producer, producer_out) = start(producer);
    let produced = finish(producer, producer_out, "the producer");
    let consumed = finish(consumer, reader, "the consumer");

    // The same struct, defined in each crate under one stable name, matches; under another
    // name, or with its fields reordered under the same name, it is refused, and the error says
    // what differs.
    let line = |start: &str| {
        produced
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line {start:?}:\n{produced}"))
            .to_owned()
    };
    let renamed = line("producer: under another name: ");
    assert!(
        renamed
            .contains("holds `two-binaries::Reading@1` (16 B, align 8), not `producer::Reading`"),
        "{renamed}"
    );
    let reordered = line("producer: with reordered fields: ");
    assert!(
        reordered.contains(
            "holds `two-binaries::Reading@1` with fields sensor@0+4 seq@4+4 celsius@8+8, but \
             this build's is `two-binaries::Reading@1` with fields seq@0+4 sensor@4+4 \
             celsius@8+8"
        ),
        "{reordered}"
    );
    assert!(produced.contains(": put 20000 readings"), "{produced}");
    assert!(
        consumed.contains("consumer: got Reading { sensor: 7, seq: 0, celsius: 20.0 }"),
        "{consumed}"
    );
    assert!(
        consumed.contains("consumer: 20000 readings, mean 22.25 °C; the producer counted 20000"),
        "{consumed}"
    );
    // Through the pipe: the message sent as a `Reading` by the other binary is one here; the
    // reordered struct of the same name is not.
    assert!(
        consumed.contains("consumer: by pipe Reading { sensor: 8, seq: 20000, celsius: 19.5 }"),
        "{consumed}"
    );
    assert!(
        consumed.contains(
            "consumer: by pipe, reordered: the message is not a `two-binaries::Reading@1` (16 B): \
             it is a value of another type of 16 B"
        ),
        "{consumed}"
    );
    for s in &segments {
        assert!(!common::exists(s), "{s} left in /dev/shm");
    }
}
