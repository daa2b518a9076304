//! The child-process kit: one protocol for a binary that re-executes itself as its own child,
//! shared by the tests (`tests/common`), the benches (`benches/common` includes this file by
//! path) and any other binary of the project that wants it (include it the same way:
//! `#[path = ".../tests/common/child.rs"] mod child;`, at `crate::common::child` for the
//! [`routines!`] macro).
//!
//! The protocol:
//! - The parent starts its own executable ([`Spawn`]) with [`ROUTINE_ENV`] naming a routine and
//!   the routine's arguments as the command line. The child's `main` calls [`dispatch`] first,
//!   which runs that routine and exits (0 when it returns; a panic exits 101).
//! - The child talks back one line at a time on its control stream ([`say`], [`ready`]): its
//!   stdout, or its stderr when the parent keeps stdout for data ([`Spawn::control_on_stderr`],
//!   which the child learns from [`CONTROL_ENV`]). The parent reads them with [`Child::line`] and
//!   writes lines to the child's stdin with [`Child::tell`] ([`line_from_parent`] in the child).
//!   That is how events are ordered between the two: never by sleeping.
//! - A [`Child`] that is dropped while still running is killed (`SIGKILL`) and reaped, so a
//!   failing parent leaves no process behind.
//!
//! Routines are registered by their own function names (`routines![echo, sink]`), so a name is
//! never written twice by hand.
#![allow(dead_code, reason = "each binary uses a different part of the kit")]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{ChildStdin, ChildStdout, Command, ExitStatus, Stdio};

/// The environment variable that names the routine a re-executed binary runs.
pub const ROUTINE_ENV: &str = "MPSHM_KIT_ROUTINE";

/// The environment variable that tells a child which stream to talk back on: `stderr`, or
/// (unset) stdout.
pub const CONTROL_ENV: &str = "MPSHM_KIT_CONTROL";

/// A routine a child process can run: its name and its body, given the spawn arguments. A body
/// fails by panicking.
#[derive(Clone, Copy)]
pub struct Routine {
    pub name: &'static str,
    pub body: fn(&[String]),
}

/// `routines![f, g, #[cfg(feature = "serde")] h]`: the routines `f`, `g` and `h` (functions
/// taking `&[String]`), each named by its own identifier; `h` only where its `cfg` holds.
#[macro_export]
macro_rules! routines {
    ($($(#[cfg($cfg:meta)])? $f:ident),* $(,)?) => {{
        let all: &[Option<$crate::common::child::Routine>] = &[$({
            $(#[cfg(not($cfg))]
            let entry = None;
            #[cfg($cfg)])?
            let entry = Some($crate::common::child::Routine { name: stringify!($f), body: $f });
            entry
        }),*];
        all.iter().flatten().copied().collect::<Vec<_>>()
    }};
}

/// In `main`, before anything else: if this process was started as a child, runs the routine
/// that [`ROUTINE_ENV`] names with the command line's arguments, and exits; otherwise returns.
pub fn dispatch(routines: &[Routine]) {
    let Ok(name) = std::env::var(ROUTINE_ENV) else {
        return;
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    match routines.iter().find(|r| r.name == name) {
        Some(r) => {
            (r.body)(&args);
            std::process::exit(0);
        }
        None => {
            eprintln!("no child routine named {name:?}");
            std::process::exit(2);
        }
    }
}

/// Whether this process is a child started by [`Spawn`].
pub fn is_child() -> bool {
    std::env::var_os(ROUTINE_ENV).is_some()
}

/// In a child: tells the parent something, one line on the control stream.
pub fn say(line: &str) {
    let to_stderr = std::env::var(CONTROL_ENV).is_ok_and(|v| v == "stderr");
    let written = if to_stderr {
        let mut out = io::stderr().lock();
        writeln!(out, "{line}").and_then(|()| out.flush())
    } else {
        let mut out = io::stdout().lock();
        writeln!(out, "{line}").and_then(|()| out.flush())
    };
    written.expect("write to the parent");
}

/// In a child: tells the parent it reached the point the parent waits for.
pub fn ready() {
    say("ready");
}

/// In a child: the next line the parent tells it ([`Child::tell`]).
pub fn line_from_parent() -> String {
    let mut s = String::new();
    io::stdin().read_line(&mut s).expect("read from the parent");
    s.trim_end().to_owned()
}

/// In a child: blocks until the parent kills it.
pub fn park() -> ! {
    loop {
        std::thread::park();
    }
}

/// How to start a child: this executable, running one routine.
pub struct Spawn {
    cmd: Command,
    control_on_stderr: bool,
    stdin_set: bool,
    stdout_set: bool,
}

impl Spawn {
    /// This executable again, running `routine` with `args`; by default it talks back on its
    /// stdout and reads lines from its stdin, and its stderr is ours.
    pub fn new(routine: &str, args: &[&str]) -> io::Result<Spawn> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(args)
            .env(ROUTINE_ENV, routine)
            .env_remove(CONTROL_ENV);
        Ok(Spawn {
            cmd,
            control_on_stderr: false,
            stdin_set: false,
            stdout_set: false,
        })
    }

    /// The child talks back on its stderr, so that its stdin and stdout can carry data (set
    /// them with [`stdin`](Self::stdin), [`stdout`](Self::stdout); by default they are ours).
    pub fn control_on_stderr(mut self) -> Spawn {
        self.control_on_stderr = true;
        self.cmd.env(CONTROL_ENV, "stderr");
        self
    }

    pub fn stdin(mut self, s: impl Into<Stdio>) -> Spawn {
        self.cmd.stdin(s);
        self.stdin_set = true;
        self
    }

    pub fn stdout(mut self, s: impl Into<Stdio>) -> Spawn {
        self.cmd.stdout(s);
        self.stdout_set = true;
        self
    }

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
        let mut child = self.cmd.spawn()?;
        let control: Box<dyn Read + Send> = if self.control_on_stderr {
            Box::new(child.stderr.take().ok_or(io::ErrorKind::BrokenPipe)?)
        } else {
            Box::new(child.stdout.take().ok_or(io::ErrorKind::BrokenPipe)?)
        };
        let stdin = if self.control_on_stderr {
            None
        } else {
            child.stdin.take()
        };
        Ok(Child {
            child,
            control: BufReader::new(control),
            stdin,
            reaped: false,
        })
    }
}

/// A child process running one routine of this executable. Killed (`SIGKILL`) and reaped on
/// drop if still running.
pub struct Child {
    child: std::process::Child,
    control: BufReader<Box<dyn Read + Send>>,
    /// The line channel to the child, when it talks back on stdout.
    stdin: Option<ChildStdin>,
    reaped: bool,
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
        self.child.id()
    }

    /// The child's stdin, when [`Spawn::stdin`] piped it.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take().or_else(|| self.child.stdin.take())
    }

    /// The child's stdout, when it talks back on stderr and [`Spawn::stdout`] piped it.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
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
    pub fn try_line(&mut self) -> Option<String> {
        let mut s = String::new();
        let n = self.control.read_line(&mut s).expect("read from the child");
        (n > 0).then(|| s.trim_end().to_owned())
    }

    /// Waits for the child's `ready`; an error says what it said instead.
    pub fn expect_ready(&mut self) -> Result<(), String> {
        match self.try_line() {
            Some(line) if line == "ready" => Ok(()),
            Some(line) => Err(format!("the child said {line:?} instead of ready")),
            None => Err("the child exited before it was ready".into()),
        }
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

    /// Tells the child one line (read with [`line_from_parent`]).
    pub fn tell(&mut self, line: &str) {
        let stdin = self
            .stdin
            .as_mut()
            .expect("this child talks back on stderr: it has no line channel");
        writeln!(stdin, "{line}").expect("write to the child");
        stdin.flush().expect("flush to the child");
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

    /// Waits for the child; an error names how it ended if that was not a success.
    pub fn finish(&mut self) -> Result<(), String> {
        let status = self.wait();
        if status.success() {
            Ok(())
        } else {
            Err(format!("child failed: {status}"))
        }
    }

    /// Waits for the child and checks that it succeeded.
    ///
    /// # Panics
    ///
    /// If it did not.
    pub fn join(mut self) {
        if let Err(e) = self.finish() {
            panic!("{e}");
        }
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
