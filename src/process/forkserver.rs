//! The fork server behind [`StartMethod::ForkServer`](crate::process::StartMethod): Python's
//! `forkserver`, made so that its children are still this process's own.
//!
//! Starting a child by running this executable again costs an `exec`: a new address space, the
//! dynamic loader, the C library's start-up, page faults on every page touched. On a virtual
//! machine that is most of a millisecond even for an empty C program. A fork of a small process
//! costs a fifth of that. So the first `ForkServer` start spawns this executable once more, as
//! a *server*: it is taken over before `main`, as a spawned child is (`child.rs`), and waits on
//! a socket (its standard input) for jobs. For each job it forks, and the fork, still in the
//! state of a process before `main`, takes the job's environment and working directory and
//! runs it exactly as a spawned child would (`child::take_over`).
//!
//! Unlike Python's server, it forks with `CLONE_PARENT` (`sys::sibling_fork`): the child is a
//! child of *this* process, not of the server. So everything about a child stays as with spawn:
//! this process takes a pidfd for it (its own unreaped child, so the pid cannot have been
//! reused), waits for it with `waitid`, reads its exact exit status, and the child's
//! `getppid()` is this process. Daemons are not started here (their `PR_SET_PDEATHSIG` would
//! follow the thread that started the server, not the one that starts them): they are spawned.
//!
//! Protocol, on a stream socket: a request is a `u32` length and that many bytes: the job
//! ([`child::SPAWN_ENV`]'s value), the working directory, and the environment, each item a
//! `u32` length and its bytes, the environment's pairs after their `u32` count. The answer is
//! an `i32`: the child's pid, or minus the error number of a failed fork. The server exits when
//! the socket is closed, and is killed when the thread that started it ends (`PR_SET_PDEATHSIG`,
//! checked against the race with the parent's death as for daemons); the next start then
//! starts a new one. A server that dies between a request and its answer fails that start
//! with an I/O error (a child it forked runs, unknown to the handle, and is left unreaped until
//! this process ends). If the server cannot run here (it exits before its first answer), every
//! later `ForkServer` start spawns.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};

use crate::error::ProcessError;
use crate::process::child::{self, Spec};
use crate::sys;

/// The environment variable that makes a process the fork server: the format version, the
/// executable's identity and the parent's pid.
pub(crate) const SERVER_ENV: &str = "MPSHM_FORKSERVER";
const SERVER_VERSION: &str = "mpshm1";
/// The longest request the server takes (the environment is in it).
const MAX_REQUEST: usize = 16 << 20;

struct Server {
    stream: UnixStream,
    child: Child,
    /// The process that started it: a forked child of that process inherits this value, and
    /// must neither use nor reap it.
    owner: u32,
    /// Whether it has answered a request.
    answered: bool,
}

enum State {
    Off,
    On(Server),
    /// A server exited before its first answer: it cannot run here.
    Unsupported,
}

static SERVER: Mutex<State> = Mutex::new(State::Off);

fn put(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), ProcessError> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| ProcessError::Io(std::io::Error::other("a fork server request too long")))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// The request for `spec`, with this process's environment and `env` added.
fn request(spec: &Spec, env: &[(String, String)]) -> Result<Vec<u8>, ProcessError> {
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    vars.push((child::SPAWN_ENV.into(), spec.encode().into()));
    vars.extend(env.iter().map(|(k, v)| (k.into(), v.into())));
    let cwd = std::env::current_dir()
        .map(OsString::from)
        .unwrap_or_default();
    let mut body = vec![0; 4];
    put(&mut body, spec.encode().as_bytes())?;
    put(&mut body, cwd.as_bytes())?;
    put(&mut body, &(vars.len() as u32).to_le_bytes())?;
    for (k, v) in &vars {
        put(&mut body, k.as_bytes())?;
        put(&mut body, v.as_bytes())?;
    }
    let len = u32::try_from(body.len() - 4)
        .ok()
        .filter(|&n| n as usize <= MAX_REQUEST)
        .ok_or_else(|| ProcessError::Io(std::io::Error::other("a fork server request too long")))?;
    body[..4].copy_from_slice(&len.to_le_bytes());
    Ok(body)
}

/// A decoded request: the job, the working directory, the environment.
type Job = (String, OsString, Vec<(OsString, OsString)>);

fn decode(body: &[u8]) -> Option<Job> {
    let mut rest = body;
    let mut item = || -> Option<&[u8]> {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let bytes = rest.get(4..4 + len)?;
        rest = &rest[4 + len..];
        Some(bytes)
    };
    let spec = String::from_utf8(item()?.to_vec()).ok()?;
    let cwd = OsString::from_vec(item()?.to_vec());
    let count = u32::from_le_bytes(item()?.try_into().ok()?) as usize;
    let mut vars = Vec::with_capacity(count.min(4096));
    for _ in 0..count {
        let k = OsString::from_vec(item()?.to_vec());
        let v = OsString::from_vec(item()?.to_vec());
        vars.push((k, v));
    }
    Some((spec, cwd, vars))
}

impl Server {
    fn start() -> Result<Server, ProcessError> {
        let (mine, theirs) = UnixStream::pair()?;
        let exe = sys::exe_identity()?;
        let mut cmd = Command::new("/proc/self/exe");
        let mut args = std::env::args_os();
        if let Some(arg0) = args.next() {
            cmd.arg0(arg0);
        }
        let me = std::process::id();
        cmd.args(args)
            .env(
                SERVER_ENV,
                format!("{SERVER_VERSION}\x1f{}:{}\x1f{me}", exe.0, exe.1),
            )
            .stdin(Stdio::from(OwnedFd::from(theirs)));
        let child = cmd.spawn()?;
        Ok(Server {
            stream: mine,
            child,
            owner: me,
            answered: false,
        })
    }

    /// Sends `req`; the server's answer, or why there is none and whether the request went
    /// out (if it did, the server may have forked the child before it died).
    fn ask(&mut self, req: &[u8]) -> Result<i32, (std::io::Error, bool)> {
        self.stream.write_all(req).map_err(|e| (e, false))?;
        let mut answer = [0; 4];
        self.stream.read_exact(&mut answer).map_err(|e| (e, true))?;
        self.answered = true;
        Ok(i32::from_le_bytes(answer))
    }

    /// Closes the socket (the server exits) and reaps the server.
    fn stop(mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        let _ = self.child.wait();
    }

    /// Kills and reaps a server that did not answer.
    fn bury(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lock() -> std::sync::MutexGuard<'static, State> {
    let mut g = SERVER.lock().unwrap_or_else(PoisonError::into_inner);
    if let State::On(s) = &*g
        && s.owner != std::process::id()
    {
        // Inherited through a fork: the server is the parent's. Leave its socket and its
        // handle alone (closing our copy of the socket is harmless, reaping is not ours).
        if let State::On(s) = std::mem::replace(&mut *g, State::Off) {
            std::mem::forget(s);
        }
    }
    g
}

/// Starts the job `spec` in a child forked by the fork server, with this process's environment
/// and `env` added: its pid and a pidfd. `None` if no fork server can run here: the caller
/// spawns the child instead.
pub(crate) fn launch(
    spec: &Spec,
    env: &[(String, String)],
) -> Result<Option<(u32, OwnedFd)>, ProcessError> {
    let req = request(spec, env)?;
    let mut g = lock();
    // A server that died (killed with the thread that started it, or by hand) is replaced
    // once.
    for _ in 0..2 {
        // A server seen dead is replaced before any request: its socket may still take one
        // (a child it forked holds a copy for a moment), and then fail it.
        if let State::On(s) = &mut *g
            && !matches!(s.child.try_wait(), Ok(None))
        {
            let first = !s.answered;
            if let State::On(s) = std::mem::replace(&mut *g, State::Off) {
                s.bury();
            }
            if first {
                *g = State::Unsupported;
            }
        }
        let server = match &mut *g {
            State::Unsupported => return Ok(None),
            State::Off => {
                *g = State::On(Server::start()?);
                match &mut *g {
                    State::On(s) => s,
                    _ => unreachable!("just set"),
                }
            }
            State::On(s) => s,
        };
        let first = !server.answered;
        let answer = server.ask(&req);
        match answer {
            Ok(pid) if pid > 0 => {
                let pid = pid as u32;
                return match sys::pidfd_open(pid) {
                    Ok(fd) => Ok(Some((pid, fd))),
                    Err(e) => {
                        sys::kill_and_reap_child(pid);
                        Err(e.into())
                    }
                };
            }
            // The fork failed (out of processes or memory, or `clone3` refused).
            Ok(errno) => {
                let err = std::io::Error::from_raw_os_error(errno.saturating_neg());
                if err.raw_os_error() == Some(libc::ENOSYS) || first {
                    *g = State::Unsupported;
                    return Ok(None);
                }
                return Err(err.into());
            }
            Err((e, sent)) => {
                if let State::On(s) = std::mem::replace(&mut *g, State::Off) {
                    s.bury();
                }
                if first {
                    // It ended before any answer: it exits before forking where it cannot
                    // run.
                    *g = State::Unsupported;
                    return Ok(None);
                }
                if sent {
                    // It died between the request and the answer: a child may have been
                    // forked, and starting another would run the job twice.
                    return Err(ProcessError::Io(std::io::Error::new(
                        e.kind(),
                        format!("the fork server ended during the start: {e}"),
                    )));
                }
                // It was gone before the request: start another.
            }
        }
    }
    Ok(None)
}

/// Stops the fork server, if this process runs one, and waits for it to exit. Children it
/// started are not touched; the next [`StartMethod::ForkServer`](crate::process::StartMethod)
/// start starts a new server.
pub fn stop_fork_server() {
    let mut g = lock();
    if let State::On(s) = std::mem::replace(&mut *g, State::Off) {
        s.stop();
    }
}

/// The fork server's pid, if this process runs one.
#[doc(hidden)]
pub fn fork_server_pid() -> Option<u32> {
    match &*lock() {
        State::On(s) => Some(s.child.id()),
        _ => None,
    }
}

/// The parent's pid, if [`SERVER_ENV`] is set and names this executable. Removes the variable.
pub(crate) fn server_request() -> Option<u32> {
    let raw = std::env::var(SERVER_ENV).ok()?;
    sys::env_remove(SERVER_ENV);
    let mut f = raw.split('\x1f');
    let (Some(SERVER_VERSION), Some(exe), Some(parent), None) =
        (f.next(), f.next(), f.next(), f.next())
    else {
        return None;
    };
    let (dev, ino) = exe.split_once(':')?;
    let exe = (dev.parse().ok()?, ino.parse().ok()?);
    (sys::exe_identity().ok() == Some(exe)).then_some(())?;
    parent.parse().ok()
}

/// The server's loop: forks a child for each request until the socket closes.
pub(crate) fn serve(parent: u32) -> ! {
    if let Err(e) = sys::die_with_parent(parent) {
        eprintln!("mpshm: the fork server cannot ask to die with its parent: {e}");
        sys::exit_now(child::EXIT_SETUP);
    }
    // Where sibling forks cannot be made, exit before the first answer: the parent spawns.
    let Ok(fork) = sys::sibling_fork_setup() else {
        sys::exit_now(child::EXIT_SETUP)
    };
    let Ok(sock) = sys::take_stdin() else {
        sys::exit_now(child::EXIT_SETUP)
    };
    let mut stream = UnixStream::from(sock);
    loop {
        let mut len = [0; 4];
        if stream.read_exact(&mut len).is_err() {
            sys::exit_now(0);
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_REQUEST {
            sys::exit_now(child::EXIT_SETUP);
        }
        let mut body = vec![0; len];
        if stream.read_exact(&mut body).is_err() {
            sys::exit_now(0);
        }
        let answer = match decode(&body) {
            None => -libc::EINVAL,
            Some((spec, cwd, vars)) => match sys::sibling_fork(&fork) {
                Ok(None) => {
                    drop(stream);
                    run_child(&spec, &cwd, &vars)
                }
                Ok(Some(pid)) => pid as i32,
                Err(e) => -e.raw_os_error().unwrap_or(libc::EIO),
            },
        };
        if stream.write_all(&answer.to_le_bytes()).is_err() {
            sys::exit_now(0);
        }
    }
}

/// In a forked child: takes the job's environment and working directory, then runs it as a
/// spawned child runs its job.
fn run_child(spec: &str, cwd: &OsString, vars: &[(OsString, OsString)]) -> ! {
    sys::env_replace(vars);
    if !cwd.is_empty()
        && let Err(e) = std::env::set_current_dir(cwd)
    {
        eprintln!(
            "mpshm: this child process cannot enter its parent's directory {}: {e}",
            std::path::Path::new(cwd).display()
        );
    }
    debug_assert_eq!(std::env::var(child::SPAWN_ENV).ok().as_deref(), Some(spec));
    child::take_over()
}
