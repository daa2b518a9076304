//! The child kit: how this program runs a part of itself in another process, for every case of
//! `mpshm bench` (and, included by path, for the Criterion benches in `benches/`).
//!
//! A child is this executable started again with [`CHILD_ENV`] naming its role (a line of
//! space-separated words). It talks back one line at a time on its **stderr** ([`report`]:
//! `ready`, `sent <n>`, ..., or `error: <why>`), which leaves its stdin and stdout free to be the
//! ends of an OS pipe or socket under test; where they are not, the parent holds the child's
//! stdin and writes one start byte to it ([`Kid::go`], [`wait_go`]). A [`Kid`] dropped before
//! [`Kid::finish`] is killed and reaped, so an error anywhere leaves no process behind.
//!
//! Only `std` here: the benches include this file as a module of their own.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::process::{Child, ChildStderr, ChildStdin, Command, Stdio};

/// The environment variable that makes this executable a child: its role.
pub const CHILD_ENV: &str = "MPSHM_CHILD";

/// Errors: what failed, in words.
pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// This process's role, if it is a child.
pub fn role() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// A child process and its report channel; killed and reaped if dropped before
/// [`finish`](Self::finish).
#[derive(Debug)]
pub struct Kid {
    role: String,
    /// The process.
    pub child: Child,
    ctl: BufReader<ChildStderr>,
    /// The child's stdin, when the parent holds it (the start byte goes there).
    pub go: Option<ChildStdin>,
    waited: bool,
}

impl Kid {
    /// Starts this executable as the child `role`, with `stdin` and `stdout` as given and
    /// `env` added to its environment.
    pub fn spawn_with(role: String, stdin: Stdio, stdout: Stdio, env: &[(&str, &str)]) -> Res<Kid> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.env(CHILD_ENV, &role)
            .envs(env.iter().copied())
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let ctl = BufReader::new(child.stderr.take().ok_or("no report pipe")?);
        let go = child.stdin.take();
        Ok(Kid {
            role,
            child,
            ctl,
            go,
            waited: false,
        })
    }

    /// [`spawn_with`](Self::spawn_with) and nothing added to the environment.
    pub fn spawn(role: String, stdin: Stdio, stdout: Stdio) -> Res<Kid> {
        Kid::spawn_with(role, stdin, stdout, &[])
    }

    /// Reads one report line, which must start with `word`; the numbers after it.
    pub fn expect(&mut self, word: &str) -> Res<Vec<u64>> {
        let line = self.expect_line(word)?;
        Ok(line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?)
    }

    /// Reads one report line, which must start with `word`; the rest of it.
    pub fn expect_line(&mut self, word: &str) -> Res<String> {
        let mut line = String::new();
        self.ctl.read_line(&mut line)?;
        let mut parts = line.trim_end().splitn(2, ' ');
        if parts.next() != Some(word) {
            let status = if line.is_empty() {
                format!("exited ({})", self.child.wait()?)
            } else {
                line.trim_end().to_owned()
            };
            return Err(format!("child `{}` (expected `{word}`): {status}", self.role).into());
        }
        Ok(parts.next().unwrap_or("").to_owned())
    }

    /// Sends the start byte. The pipe stays open until [`finish`](Self::finish) (a child may
    /// wait for its end: [`wait_eof`]).
    pub fn go(&mut self) -> Res<()> {
        self.go.as_mut().ok_or("no start pipe")?.write_all(b"g")?;
        Ok(())
    }

    /// Sends `SIGKILL`, and reaps the child.
    pub fn kill(&mut self) -> Res<()> {
        self.child.kill()?;
        self.child.wait()?;
        self.waited = true;
        Ok(())
    }

    /// Closes the child's stdin, if this holds it, and waits for the child to exit; an error
    /// unless it succeeded.
    pub fn finish(mut self) -> Res<()> {
        drop(self.go.take());
        let status = self.child.wait()?;
        self.waited = true;
        if !status.success() {
            return Err(format!("child `{}` failed: {status}", self.role).into());
        }
        Ok(())
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if !self.waited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// In a child: one line to the parent.
pub fn report(line: &str) -> Res<()> {
    let mut err = std::io::stderr().lock();
    writeln!(err, "{line}")?;
    err.flush()?;
    Ok(())
}

/// In a child: waits for the start byte on stdin.
pub fn wait_go() -> Res<()> {
    let mut byte = [0];
    raw_stdin()?.read_exact(&mut byte)?;
    Ok(())
}

/// In a child: waits for the end of stdin (the parent's [`Kid::finish`]).
pub fn wait_eof() -> Res<()> {
    let mut stdin = raw_stdin()?;
    loop {
        match stdin.read(&mut [0]) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Our stdin as an unbuffered file (std's `Stdin` would read ahead 8 KiB at a time).
pub fn raw_stdin() -> Res<File> {
    Ok(File::from(std::io::stdin().as_fd().try_clone_to_owned()?))
}

/// Our stdout as an unbuffered file (std's `Stdout` buffers lines).
pub fn raw_stdout() -> Res<File> {
    Ok(File::from(std::io::stdout().as_fd().try_clone_to_owned()?))
}

/// Fills `buf` with exactly one record: `false` at a clean end of file.
pub fn read_record(input: &mut impl Read, buf: &mut [u8]) -> Res<bool> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err("end of file inside a record".into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}
