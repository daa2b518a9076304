//! The child-process kit of mpshm's tests, benches and command: one protocol for a binary that
//! re-executes itself as its own child. The tests (`tests/common`, as `common::child`), the
//! Criterion benches (`benches/common`, the same) and the `mpshm` command (`cli/`, for every
//! case of `mpshm bench`) all use this crate; it depends on `std` alone, so whatever uses it
//! still sees one mpshm library, its own.
//!
//! The protocol:
//! - The parent starts its own executable ([`Spawn`], or [`command`] for a `Command` to start
//!   some other way) with [`ROUTINE_ENV`] naming a routine, [`PARENT_ENV`] its own pid, and the
//!   routine's arguments as the command line. The child's `main` calls [`dispatch`] first (or
//!   [`started`], where the program picks the routine itself), which runs that routine and
//!   exits: 0 when it returns, 101 when it panics, 1 with an `error: <why>` line when it fails
//!   through [`fail`].
//! - **The guard against re-executing forever**: a process runs a routine only if
//!   [`PARENT_ENV`] names its own parent. A process that merely inherited the variables (a
//!   grandchild started by a child, by any means but this kit) refuses with exit status 2
//!   before it does anything: no chain of processes can grow from one inherited variable.
//! - The child talks back one line at a time on its control stream ([`say`], [`ready`],
//!   [`report`]): its stdout, or its stderr when the parent keeps the child's stdin and stdout
//!   for data ([`Spawn::control_on_stderr`], which the child learns from [`CONTROL_ENV`]). The
//!   parent reads them ([`Child::line`], [`Child::expect_line`]) and writes lines to the
//!   child's stdin ([`Child::tell`], [`Child::go`]), which the child reads unbuffered
//!   ([`line_from_parent`], [`wait_go`]), so that lines and data can share a stream. That is how
//!   events are ordered between the two: never by sleeping.
//! - A [`Child`] dropped while still running is killed (`SIGKILL`) and reaped, so a failing
//!   parent leaves no process behind.
//!
//! Routines are registered by their own function names (`routines![echo, sink]`), so a name is
//! never written twice by hand. Two forms of most calls: one that panics (for tests, whose
//! failures are panics) and one that returns the error (for benches and the command).

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::process::{ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::OnceLock;

/// The environment variable that names the routine a re-executed binary runs.
pub const ROUTINE_ENV: &str = "MPSHM_KIT_ROUTINE";

/// The environment variable that holds the pid of the process that set [`ROUTINE_ENV`]: a
/// child runs its routine only if this is its parent.
pub const PARENT_ENV: &str = "MPSHM_KIT_PARENT";

/// The environment variable that tells a child which stream to talk back on: `stderr`, or
/// (unset) stdout.
pub const CONTROL_ENV: &str = "MPSHM_KIT_CONTROL";

/// A routine a child process can run: its name and its body, given the spawn arguments. A body
/// fails by panicking (or through [`fail`]).
#[derive(Clone, Copy, Debug)]
pub struct Routine {
    /// The name [`ROUTINE_ENV`] holds.
    pub name: &'static str,
    /// What the child runs, given its command line's arguments.
    pub body: fn(&[String]),
}

/// `routines![f, g, #[cfg(feature = "serde")] h]`: the routines `f`, `g` and `h` (functions
/// taking `&[String]`), each named by its own identifier; `h` only where its `cfg` holds (in
/// the crate that invokes the macro).
#[macro_export]
macro_rules! routines {
    ($($(#[cfg($cfg:meta)])? $f:ident),* $(,)?) => {{
        let all: &[Option<$crate::Routine>] = &[$({
            $(#[cfg(not($cfg))]
            let entry = None;
            #[cfg($cfg)])?
            let entry = Some($crate::Routine { name: stringify!($f), body: $f });
            entry
        }),*];
        all.iter().flatten().copied().collect::<Vec<_>>()
    }};
}

/// What this process was started to run, as a child: the routine and its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Started {
    /// The routine's name ([`ROUTINE_ENV`]).
    pub routine: String,
    /// The command line's arguments.
    pub args: Vec<String>,
}

impl Started {
    /// The routine and its arguments as one line of words, `"name arg1 arg2"` (the form
    /// [`Spawn::role`] takes).
    pub fn role(&self) -> String {
        std::iter::once(self.routine.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// If this process was started as a child (by [`Spawn`] or [`command`]), what it is to run;
/// otherwise `None`.
///
/// A process that inherited [`ROUTINE_ENV`] rather than being given it by its parent (its
/// parent is not the process [`PARENT_ENV`] names) does not return: it says why on stderr and
/// exits with status 2.
pub fn started() -> Option<Started> {
    let routine = std::env::var(ROUTINE_ENV).ok()?;
    let parent = std::os::unix::process::parent_id();
    let set_by = std::env::var(PARENT_ENV).ok();
    if set_by.as_deref().and_then(|p| p.parse::<u32>().ok()) != Some(parent) {
        eprintln!(
            "{ROUTINE_ENV}={routine:?} was set for a child of pid {set_by:?}, but this process's \
             parent is {parent}: inherited, so not run (the kit's guard against a chain of \
             re-executions)"
        );
        std::process::exit(2);
    }
    Some(Started {
        routine,
        args: std::env::args().skip(1).collect(),
    })
}

/// In `main`, before anything else: if this process was started as a child, runs the routine
/// [`started`] names with the command line's arguments, and exits (0 when it returns);
/// otherwise returns.
pub fn dispatch(routines: &[Routine]) {
    let Some(started) = started() else {
        return;
    };
    match routines.iter().find(|r| r.name == started.routine) {
        Some(r) => {
            (r.body)(&started.args);
            std::process::exit(0);
        }
        None => {
            eprintln!("no child routine named {:?}", started.routine);
            std::process::exit(2);
        }
    }
}

/// Whether this process was started as a child (it has [`ROUTINE_ENV`], whether or not the
/// guard in [`started`] would let it run).
pub fn is_child() -> bool {
    std::env::var_os(ROUTINE_ENV).is_some()
}

/// A command that starts this executable as the child `routine` with `args`, talking back on
/// its stdout: what [`Spawn`] starts, for a caller that starts it some other way (through
/// `mpshm::process::Process::command`, say). It must be started by this process, for the guard
/// in [`started`] to let it run.
pub fn command(routine: &str, args: &[&str]) -> io::Result<Command> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(args)
        .env(ROUTINE_ENV, routine)
        .env(PARENT_ENV, std::process::id().to_string())
        .env_remove(CONTROL_ENV);
    Ok(cmd)
}

fn control_on_stderr() -> bool {
    static ON_STDERR: OnceLock<bool> = OnceLock::new();
    *ON_STDERR.get_or_init(|| std::env::var(CONTROL_ENV).is_ok_and(|v| v == "stderr"))
}

/// In a child: tells the parent something, one line on the control stream; an error if the
/// stream is gone.
pub fn report(line: &str) -> io::Result<()> {
    // One write of the line and its newline (stderr is unbuffered).
    let line = format!("{line}\n");
    if control_on_stderr() {
        let mut out = io::stderr().lock();
        out.write_all(line.as_bytes()).and_then(|()| out.flush())
    } else {
        let mut out = io::stdout().lock();
        out.write_all(line.as_bytes()).and_then(|()| out.flush())
    }
}

/// In a child: [`report`], panicking if the parent's end is gone.
pub fn say(line: &str) {
    report(line).expect("write to the parent");
}

/// In a child: tells the parent it reached the point the parent waits for.
pub fn ready() {
    say("ready");
}

/// In a child: ends the process with status 1 after telling the parent `error: <why>` (which
/// the parent's [`Child::expect_line`] shows it).
pub fn fail(why: impl fmt::Display) -> ! {
    let _ = report(&format!("error: {why}"));
    std::process::exit(1);
}

/// In a child: the next line the parent tells it ([`Child::tell`]), without its newline; empty
/// at the end of stdin. Read a byte at a time, so that whatever follows the line on stdin is
/// left there.
///
/// # Panics
///
/// If stdin cannot be read.
pub fn line_from_parent() -> String {
    read_line_unbuffered().expect("read from the parent")
}

fn read_line_unbuffered() -> io::Result<String> {
    let mut stdin = raw_stdin()?;
    let mut line = Vec::new();
    let mut byte = [0];
    loop {
        match stdin.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(line).map_err(|e| io::Error::new(ErrorKind::InvalidData, e))
}

/// In a child: waits for the parent's start signal ([`Child::go`]).
pub fn wait_go() -> io::Result<()> {
    match read_line_unbuffered()?.as_str() {
        "go" => Ok(()),
        other => Err(io::Error::new(
            ErrorKind::InvalidData,
            format!("expected `go` from the parent, got {other:?}"),
        )),
    }
}

/// In a child: waits for the end of stdin (the parent's [`Child::finish`]).
pub fn wait_eof() -> io::Result<()> {
    let mut stdin = raw_stdin()?;
    loop {
        match stdin.read(&mut [0]) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// In a child: blocks until the parent kills it.
pub fn park() -> ! {
    loop {
        std::thread::park();
    }
}

/// Our stdin as an unbuffered file (std's `Stdin` would read ahead 8 KiB at a time).
pub fn raw_stdin() -> io::Result<File> {
    Ok(File::from(io::stdin().as_fd().try_clone_to_owned()?))
}

/// Our stdout as an unbuffered file (std's `Stdout` buffers lines).
pub fn raw_stdout() -> io::Result<File> {
    Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?))
}

/// Fills `buf` with exactly one record from `input`: `false` at a clean end of file.
pub fn read_record(input: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "end of file inside a record",
                ));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// How to start a child: this executable, running one routine.
#[derive(Debug)]
pub struct Spawn {
    cmd: Command,
    role: String,
    control_on_stderr: bool,
    stdin_set: bool,
    stdout_set: bool,
}

impl Spawn {
    /// This executable again, running `routine` with `args`; by default it talks back on its
    /// stdout and reads lines from its stdin, and its stderr is ours.
    pub fn new(routine: &str, args: &[&str]) -> io::Result<Spawn> {
        Ok(Spawn {
            cmd: command(routine, args)?,
            role: std::iter::once(routine)
                .chain(args.iter().copied())
                .collect::<Vec<_>>()
                .join(" "),
            control_on_stderr: false,
            stdin_set: false,
            stdout_set: false,
        })
    }

    /// The child for a role written as words, `"name arg1 arg2"`: routine `name` with the rest
    /// as its arguments (what [`Started::role`] gives back in the child).
    pub fn role(role: &str) -> io::Result<Spawn> {
        let mut words = role.split(' ');
        let name = words.next().unwrap_or_default();
        Spawn::new(name, &words.collect::<Vec<_>>())
    }

    /// The child talks back on its stderr, so that its stdin and stdout can carry data (set
    /// them with [`stdin`](Self::stdin), [`stdout`](Self::stdout); by default they are ours).
    pub fn control_on_stderr(mut self) -> Spawn {
        self.control_on_stderr = true;
        self.cmd.env(CONTROL_ENV, "stderr");
        self
    }

    /// The child's stdin (piped by default when it talks back on stdout: the line channel).
    pub fn stdin(mut self, s: impl Into<Stdio>) -> Spawn {
        self.cmd.stdin(s);
        self.stdin_set = true;
        self
    }

    /// The child's stdout, when it talks back on stderr.
    pub fn stdout(mut self, s: impl Into<Stdio>) -> Spawn {
        self.cmd.stdout(s);
        self.stdout_set = true;
        self
    }

    /// Adds `key=value` to the child's environment.
    pub fn env(mut self, key: &str, value: &str) -> Spawn {
        self.cmd.env(key, value);
        self
    }

    /// Starts the child.
    pub fn spawn(mut self) -> io::Result<Child> {
        if self.control_on_stderr {
            self.cmd.stderr(Stdio::piped());
        } else {
            self.cmd.stdout(Stdio::piped());
            if !self.stdin_set {
                self.cmd.stdin(Stdio::piped());
            }
        }
        let mut process = self.cmd.spawn()?;
        let control: Box<dyn Read + Send> = if self.control_on_stderr {
            Box::new(process.stderr.take().ok_or(ErrorKind::BrokenPipe)?)
        } else {
            Box::new(process.stdout.take().ok_or(ErrorKind::BrokenPipe)?)
        };
        let stdin = process.stdin.take();
        Ok(Child {
            process,
            role: self.role,
            control: BufReader::new(control),
            stdin,
            reaped: false,
        })
    }
}

/// A child process running one routine of this executable. Killed (`SIGKILL`) and reaped on
/// drop if still running.
pub struct Child {
    process: std::process::Child,
    /// The routine and its arguments, for error messages.
    role: String,
    control: BufReader<Box<dyn Read + Send>>,
    /// The child's stdin, when piped: the line channel, or data.
    stdin: Option<ChildStdin>,
    reaped: bool,
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.process.id())
            .field("role", &self.role)
            .field("reaped", &self.reaped)
            .finish_non_exhaustive()
    }
}

impl Child {
    /// Starts `routine` in a new process with `args`, talking back on its stdout.
    ///
    /// # Panics
    ///
    /// If the process cannot be started.
    pub fn spawn(routine: &str, args: &[&str]) -> Child {
        Spawn::new(routine, args)
            .and_then(Spawn::spawn)
            .expect("spawn this executable as a child")
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// The child's stdin, when piped, for data: the line channel ([`tell`](Self::tell),
    /// [`go`](Self::go)) goes with it.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// The child's stdout, when it talks back on stderr and [`Spawn::stdout`] piped it.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.process.stdout.take()
    }

    /// The next line the child says.
    ///
    /// # Panics
    ///
    /// If the child exits first.
    pub fn line(&mut self) -> String {
        self.try_line()
            .expect("the child exited before saying anything")
    }

    /// The next line the child says, or `None` once it has exited and everything it said has
    /// been read (e.g. to drain what a killed child said before it died).
    ///
    /// # Panics
    ///
    /// If the control stream cannot be read.
    pub fn try_line(&mut self) -> Option<String> {
        let mut s = String::new();
        let n = self.control.read_line(&mut s).expect("read from the child");
        (n > 0).then(|| s.trim_end().to_owned())
    }

    /// Reads one line, which must start with the word `word`; the rest of it. An error names
    /// the child and what it said instead (its `error: <why>`, say), or how it ended.
    pub fn expect_line(&mut self, word: &str) -> Result<String, String> {
        let mut line = String::new();
        let read = self.control.read_line(&mut line);
        let mut parts = line.trim_end().splitn(2, ' ');
        if read.is_ok() && parts.next() == Some(word) {
            return Ok(parts.next().unwrap_or("").to_owned());
        }
        let instead = match read {
            Err(e) => format!("reading its report: {e}"),
            Ok(0) => match self.wait_checked() {
                Ok(status) => format!("exited ({status})"),
                Err(e) => format!("exited (wait: {e})"),
            },
            Ok(_) => line.trim_end().to_owned(),
        };
        Err(format!(
            "child `{}` (expected `{word}`): {instead}",
            self.role
        ))
    }

    /// Reads one line, which must start with the word `word`; the numbers after it.
    pub fn expect(&mut self, word: &str) -> Result<Vec<u64>, String> {
        let rest = self.expect_line(word)?;
        rest.split_whitespace()
            .map(|n| {
                n.parse()
                    .map_err(|e| format!("child `{}`: `{word} {rest}`: {e}", self.role))
            })
            .collect()
    }

    /// Waits for the child's `ready`; an error says what it said instead.
    pub fn expect_ready(&mut self) -> Result<(), String> {
        self.expect_line("ready").map(drop)
    }

    /// Waits for the child's `ready`.
    ///
    /// # Panics
    ///
    /// If it says anything else, or exits.
    pub fn wait_ready(&mut self) {
        if let Err(e) = self.expect_ready() {
            panic!("{e}");
        }
    }

    fn send_line(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or_else(|| {
            format!(
                "child `{}`: no line channel (its stdin is not piped, or was taken)",
                self.role
            )
        })?;
        // One write: the line and its newline reach the child together.
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("child `{}`: writing to it: {e}", self.role))
    }

    /// Tells the child one line (read with [`line_from_parent`]).
    ///
    /// # Panics
    ///
    /// If the child has no line channel, or its end is closed.
    pub fn tell(&mut self, line: &str) {
        if let Err(e) = self.send_line(line) {
            panic!("{e}");
        }
    }

    /// Sends the start signal ([`wait_go`] in the child). Its stdin stays open until
    /// [`finish`](Self::finish) (the child may wait for its end: [`wait_eof`]).
    pub fn go(&mut self) -> Result<(), String> {
        self.send_line("go")
    }

    /// Sends `SIGKILL`, and reaps the child.
    pub fn try_kill(&mut self) -> io::Result<()> {
        self.process.kill()?;
        self.wait_checked()?;
        Ok(())
    }

    /// Sends `SIGKILL`, and reaps the child.
    ///
    /// # Panics
    ///
    /// If it cannot be killed or reaped.
    pub fn kill(&mut self) {
        self.try_kill().expect("SIGKILL and reap the child");
    }

    /// The child's exit status if it has exited (it is then reaped), or `None`.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        let status = self.process.try_wait()?;
        self.reaped |= status.is_some();
        Ok(status)
    }

    fn wait_checked(&mut self) -> io::Result<ExitStatus> {
        let status = self.process.wait()?;
        self.reaped = true;
        Ok(status)
    }

    /// Waits for the child to exit.
    ///
    /// # Panics
    ///
    /// If it cannot be waited for.
    pub fn wait(&mut self) -> ExitStatus {
        self.wait_checked().expect("wait for the child")
    }

    /// Closes the child's stdin, if this holds it, and waits for the child; an error names how
    /// it ended if that was not a success.
    pub fn finish(mut self) -> Result<(), String> {
        drop(self.stdin.take());
        let status = self
            .wait_checked()
            .map_err(|e| format!("child `{}`: wait: {e}", self.role))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("child `{}` failed: {status}", self.role))
        }
    }

    /// [`finish`](Self::finish), and checks that the child succeeded.
    ///
    /// # Panics
    ///
    /// If it did not.
    pub fn join(self) {
        if let Err(e) = self.finish() {
            panic!("{e}");
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}
