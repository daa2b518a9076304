//! [`Process`]: a function run in a child process (Python's `multiprocessing.Process`), or a
//! cooperating program launched from a `std::process::Command`, behind one handle.
//!
//! A child is an ordinary OS process. With [`StartMethod::Spawn`] (the default) it is this
//! executable started again; it is taken over before `main` by the constructor below (see
//! `child.rs`), finds its function by its distance from a fixed point in the code (`entry.rs`),
//! and takes its argument from, and puts its result into, a mailbox segment made for it. With
//! [`StartMethod::Fork`] it is a `fork` of this process, refused while this process runs more
//! than one thread. The parent holds a pidfd for the child from the moment it starts, so every
//! signal and wait reaches that child and no other process that might reuse its pid; `start`
//! also lists the child for [`active_children`](crate::process::active_children) (`children.rs`)
//! by a weak reference to that pidfd. [`Process::close`] and `Drop` let go of the pidfd, the
//! mailbox and the result through one function (`release`), `close` only once the child has
//! ended, `Drop` after waiting for it (or killing a daemon).

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Exit, ProcessError};
use crate::process::channel::{self, Mailbox};
use crate::process::child::{self, Spec, tag};
use crate::process::children;
use crate::process::entry::{Entry, Origin, read_record};
use crate::process::forkserver;
use crate::process::payload::Payload;
use crate::sys;

/// Runs [`child::intercept`] before `main`, so that a spawned child never reaches the
/// program's own logic.
extern "C" fn on_load() {
    // An unwinding panic must not cross the C frame of the dynamic loader; `intercept` does
    // not panic, and if it did, `extern "C"` turns the unwind into an abort.
    if !child::hook_disabled() {
        child::intercept();
    }
}

// SAFETY: the dynamic loader calls every function in `.init_array` once, before `main`, with
// `(argc, argv, envp)`; under the C calling convention a function that takes no arguments may
// ignore them. By then libc is initialised (glibc runs the executable's constructors at the end
// of its own start-up), and std's argument capture has run (it sits in `.init_array.00099`,
// which runs before the unnumbered entries). What `intercept` uses of std needs nothing from
// `main`'s start-up: the environment, files, allocation, `exit`. `#[used]` keeps the entry even
// though nothing refers to it; `tests/process.rs` checks that it runs in a test binary, and
// `examples/process_spawn.rs` in a binary that never calls `child_main`.
#[used]
#[unsafe(link_section = ".init_array")]
static ON_LOAD: extern "C" fn() = on_load;

/// How a child process is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartMethod {
    /// This executable is started again and runs only the function (Python's `spawn`).
    #[default]
    Spawn,
    /// This process is forked and the child runs the function at once (Python's `fork`).
    /// Refused with [`ProcessError::ForkWithThreads`] while this process runs more than one
    /// thread: a lock that another thread held at the fork stays held forever in the child.
    Fork,
    /// The child is forked from a fork server (Python's `forkserver`): a process started once,
    /// like a spawned child, that waits before `main` and forks a child per start. The child
    /// is in the state of a spawned one (nothing of `main` has run), takes this process's
    /// environment and working directory at `start`, and is this process's own child, so
    /// that joins, exit codes and signals are as with `Spawn`; starting it costs a fork
    /// instead of an `exec`. It inherits the descriptors without close-on-exec that this
    /// process had when the server started, not those opened since.
    ///
    /// The server is a child of this process that lives until this process ends or
    /// [`stop_fork_server`](crate::process::stop_fork_server) is called; it is killed when
    /// the thread that started it ends, and started again at the next start. Daemons, and
    /// every child where the server cannot run (it needs x86_64 with glibc and `clone3`), are
    /// spawned.
    ForkServer,
}

enum Target {
    Function {
        entry: Result<Entry, ProcessError>,
        /// The argument, tagged `ARG`, or why it could not be encoded.
        arg: Result<Vec<u8>, ProcessError>,
    },
    Command(Box<Command>),
}

struct Running {
    pid: u32,
    pidfd: Arc<OwnedFd>,
    /// The mailbox of a function process, and its name.
    mailbox: Option<(Mailbox, String)>,
}

struct Inner<R> {
    target: Target,
    run: Option<Running>,
    exit: Option<Exit>,
    /// The outcome, from when the child has been reaped until it is taken.
    result: Option<Result<R, ProcessError>>,
    /// Set by [`Process::close`]: the handle refers to no process any more.
    closed: bool,
}

/// A child process running a function of this program, or a launched command (Python's
/// `multiprocessing.Process`).
///
/// ```
/// use mpshm::process::Process;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let p = Process::new(square, 12);
/// p.start()?;
/// assert_eq!(p.join()?, 144);
/// assert_eq!(p.exitcode(), Some(0));
/// # Ok::<(), mpshm::ProcessError>(())
/// ```
///
/// The function is a plain `fn` (a non-capturing closure coerces to one); the argument and the
/// result are [`Payload`]s, copied through a shared-memory segment. A panic in the child comes
/// back from [`join`](Self::join) as [`ProcessError::Panicked`] with its message.
///
/// Dropping a started handle waits for the child to end, as Python joins its non-daemon
/// children at exit; a [daemon](Self::set_daemon) child is killed instead. A handle whose
/// child has ended can be [closed](Self::close) before it is dropped, which lets go of what
/// it holds (the pidfd, the result not taken) at once.
pub struct Process<R = ()> {
    name: String,
    /// Its place in the tree of processes (`child::next_identity`).
    identity: String,
    daemon: bool,
    method: StartMethod,
    env: Vec<(String, String)>,
    inner: Mutex<Inner<R>>,
    _r: PhantomData<fn() -> R>,
}

impl<R: Payload> Process<R> {
    /// A process that will run `f(arg)` once started. Nothing runs until [`start`](Self::start).
    pub fn new<A: Payload>(f: fn(A) -> R, arg: A) -> Process<R> {
        let mut bytes = vec![tag::ARG];
        let arg = arg.encode(&mut bytes).map(|()| bytes);
        Process::with_target(Target::Function {
            entry: Entry::of(f),
            arg,
        })
    }

    fn with_target(target: Target) -> Process<R> {
        let identity = child::next_identity();
        Process {
            name: format!("Process-{identity}"),
            identity,
            daemon: false,
            method: StartMethod::Spawn,
            env: Vec::new(),
            inner: Mutex::new(Inner {
                target,
                run: None,
                exit: None,
                result: None,
                closed: false,
            }),
            _r: PhantomData,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<R>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the name, which the child sees in
    /// [`current_process`](crate::process::current_process). Takes effect at `start`.
    ///
    /// The default is Python's: `Process-<n>` for the `n`th process made in a main process,
    /// and in a child that process's own place followed by its count: `Process-3:1` for the
    /// first process made in the child `Process-3` (whatever name that child was given).
    pub fn set_name(&mut self, name: impl Into<String>) -> &mut Self {
        self.name = name.into();
        self
    }

    /// Makes the child a daemon: it is killed when this process ends, even by `SIGKILL`
    /// (`PR_SET_PDEATHSIG`), and when this handle is dropped. The kernel sends the signal when
    /// the *thread* that started the child ends, so start daemons from a thread that outlives
    /// them. Takes effect at `start`.
    pub fn set_daemon(&mut self, daemon: bool) -> &mut Self {
        self.daemon = daemon;
        self
    }

    /// Chooses how the child is started (default [`StartMethod::Spawn`]); a command is always
    /// spawned. Takes effect at `start`.
    pub fn set_start_method(&mut self, method: StartMethod) -> &mut Self {
        self.method = method;
        self
    }

    /// Hands the segment name `segment` to the child in the environment variable
    /// `MPSHM_SEGMENT_<key>`, where [`segment_name`](crate::process::segment_name) finds it
    /// (spawned children and commands; a forked child has the parent's variables).
    pub fn set_segment(&mut self, key: &str, segment: &str) -> &mut Self {
        self.env.push((
            format!("{}{key}", child::SEGMENT_ENV_PREFIX),
            segment.to_owned(),
        ));
        self
    }

    /// Sets an environment variable for a spawned child or a command.
    pub(crate) fn set_env(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the child is a daemon.
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// Starts the child.
    ///
    /// # Errors
    ///
    /// [`ProcessError::ProcessClosed`] after [`close`](Self::close);
    /// [`ProcessError::AlreadyStarted`]; [`ProcessError::StartInDaemon`] when this process is
    /// a daemon child; [`ProcessError::ForkWithThreads`] for a fork from a
    /// multi-threaded process; [`ProcessError::NotInExecutable`]; [`ProcessError::Encode`] if
    /// the argument could not be encoded; [`ProcessError::NotIntercepted`] when called in a
    /// spawned child that is running `main`; [`ProcessError::Segment`] and
    /// [`ProcessError::Io`] when the mailbox or the process cannot be made.
    pub fn start(&self) -> Result<(), ProcessError> {
        child::refuse_if_not_intercepted()?;
        let mut g = self.lock();
        if g.closed {
            return Err(ProcessError::ProcessClosed);
        }
        if g.run.is_some() {
            return Err(ProcessError::AlreadyStarted);
        }
        if child::is_daemon() {
            return Err(ProcessError::StartInDaemon);
        }
        let run = match &mut g.target {
            Target::Function { entry, arg } => {
                let entry = *entry.as_ref().map_err(ProcessError::duplicate)?;
                let arg = arg.as_ref().map_err(ProcessError::duplicate)?;
                self.start_function(entry, arg)?
            }
            Target::Command(cmd) => self.start_command(cmd)?,
        };
        let (pid, pidfd) = (run.pid, Arc::clone(&run.pidfd));
        g.run = Some(run);
        // After the handle's lock is let go: `active_children` takes the list's lock first.
        drop(g);
        children::register(pid, &self.name, &pidfd);
        Ok(())
    }

    fn start_function(&self, entry: Entry, arg: &[u8]) -> Result<Running, ProcessError> {
        let (chan, name) = Mailbox::create_fresh(arg.len().max(child::INLINE_RESULT + 1))?;
        if !chan.put(arg) {
            return Err(ProcessError::Io(std::io::Error::other(
                "cannot put the argument into the new process's mailbox",
            )));
        }
        let spec = Spec {
            exe: sys::exe_identity()?,
            parent: std::process::id(),
            parent_name: crate::process::current_process().name,
            daemon: self.daemon,
            entry,
            mailbox: name.clone(),
            name: self.name.clone(),
            identity: self.identity.clone(),
        };
        let served = match self.method {
            StartMethod::ForkServer if !self.daemon => forkserver::launch(&spec, &self.env)?,
            _ => None,
        };
        let (pid, pidfd) = match (served, self.method) {
            (Some(child), _) => child,
            (None, StartMethod::Fork) => fork(&spec)?,
            (None, _) => {
                let mut cmd = Command::new("/proc/self/exe");
                // The child sees the parent's arguments, as Python's spawn passes `sys.argv`.
                let mut args = std::env::args_os();
                if let Some(arg0) = args.next() {
                    cmd.arg0(arg0);
                }
                // As Python's children, it does not share the parent's standard input.
                cmd.args(args)
                    .env(child::SPAWN_ENV, spec.encode())
                    .stdin(std::process::Stdio::null());
                cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
                adopt(cmd.spawn()?)?
            }
        };
        Ok(Running {
            pid,
            pidfd: Arc::new(pidfd),
            mailbox: Some((chan, name)),
        })
    }

    fn start_command(&self, cmd: &mut Command) -> Result<Running, ProcessError> {
        cmd.env(child::COMMAND_ENV, child::command_env(&self.name));
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if self.daemon {
            sys::die_with_parent_after_fork(cmd, std::process::id());
        }
        let (pid, pidfd) = adopt(cmd.spawn()?)?;
        Ok(Running {
            pid,
            pidfd: Arc::new(pidfd),
            mailbox: None,
        })
    }

    /// The child's pid once started (Python's `pid`); `None` before, and after
    /// [`close`](Self::close), when the pid may name another process (Python raises there).
    pub fn pid(&self) -> Option<u32> {
        self.lock().run.as_ref().map(|r| r.pid)
    }

    /// Waits for the child to end and returns what its function returned (for a command:
    /// `Ok(())` after exit status 0). The result is handed out once; later calls return
    /// [`ProcessError::ResultTaken`].
    ///
    /// # Errors
    ///
    /// [`ProcessError::Panicked`] with the panic message; [`ProcessError::Exited`] when the
    /// child was killed or exited without returning (a command: with a non-zero status; a
    /// function whose result is `()`: with a non-zero status, since exit status 0 is then
    /// `Ok(())` as Python's `exitcode` 0 is a success);
    /// [`ProcessError::NotIntercepted`] when the child ran `main` instead of the function;
    /// [`ProcessError::NotStarted`]; [`ProcessError::ProcessClosed`] after
    /// [`close`](Self::close); [`ProcessError::Decode`] for a result that is not a valid `R`;
    /// [`ProcessError::Io`].
    pub fn join(&self) -> Result<R, ProcessError> {
        self.join_until(None).unwrap_or(Err(ProcessError::Timeout))
    }

    /// [`join`](Self::join), waiting at most `timeout`; `None` if the child still runs then.
    pub fn join_timeout(&self, timeout: Duration) -> Option<Result<R, ProcessError>> {
        self.join_until(Instant::now().checked_add(timeout))
    }

    fn join_until(&self, deadline: Option<Instant>) -> Option<Result<R, ProcessError>> {
        let pidfd = {
            let mut g = self.lock();
            match &g.run {
                _ if g.closed => return Some(Err(ProcessError::ProcessClosed)),
                None => return Some(Err(ProcessError::NotStarted)),
                Some(_) if g.exit.is_some() => return Some(take(&mut g)),
                Some(run) => Arc::clone(&run.pidfd),
            }
        };
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            // A pidfd becomes readable when its process exits; the wait reaps nothing, so
            // another thread joining or polling the same handle is no trouble.
            if let Err(e) = sys::poll_readable(&[&pidfd], left) {
                return Some(Err(e.into()));
            }
            let mut g = self.lock();
            match reap(&mut g) {
                Ok(true) => return Some(take(&mut g)),
                Ok(false) => {}
                Err(e) => return Some(Err(e)),
            }
            if left == Some(Duration::ZERO) {
                return None;
            }
        }
    }

    /// Whether the child has been started and has not ended (reaps it if it has); `false`
    /// after [`close`](Self::close), which only a child that ended allows (Python raises
    /// there).
    pub fn is_alive(&self) -> bool {
        let mut g = self.lock();
        g.run.is_some() && g.exit.is_none() && matches!(reap(&mut g), Ok(false))
    }

    /// Python's `exitcode`: `None` until the child has ended, then its exit status, or minus
    /// the number of the signal that killed it (`-9` after [`kill`](Self::kill)). After
    /// [`close`](Self::close) (where Python raises), the status it found.
    pub fn exitcode(&self) -> Option<i32> {
        let mut g = self.lock();
        if g.run.is_some() && g.exit.is_none() {
            let _ = reap(&mut g);
        }
        g.exit.map(Exit::exitcode)
    }

    /// Lets go of the child (Python's `close`): its pidfd is closed, and a result not taken
    /// yet is dropped. Afterwards every method that needs the child (`start`, `join`,
    /// `join_timeout`, `terminate`, `kill`) returns [`ProcessError::ProcessClosed`]; `pid` says
    /// `None`, `is_alive` `false` and `exitcode` the status found (Python raises from those
    /// three: a Rust caller gets plain values); the name stays. Closing again, or closing a handle
    /// never started, is fine. Dropping the handle does the same, after waiting for the child
    /// (or killing a daemon).
    ///
    /// ```
    /// use mpshm::ProcessError;
    /// use mpshm::process::Process;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let p = Process::new(square, 3);
    /// p.start()?;
    /// assert_eq!(p.join()?, 9);
    /// p.close()?;
    /// assert!(matches!(p.join(), Err(ProcessError::ProcessClosed)));
    /// assert_eq!((p.pid(), p.is_alive(), p.exitcode()), (None, false, Some(0)));
    /// # Ok::<(), ProcessError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ProcessError::StillRunning`] while the child runs: [`join`](Self::join) or
    /// [`terminate`](Self::terminate) it first (the handle stays open);
    /// [`ProcessError::Io`] if it cannot be asked whether it has ended.
    pub fn close(&self) -> Result<(), ProcessError> {
        let mut g = self.lock();
        if g.closed {
            return Ok(());
        }
        if let Some(run) = &g.run {
            let pid = run.pid;
            if !reap(&mut g)? {
                return Err(ProcessError::StillRunning { pid });
            }
        }
        release(&mut g);
        Ok(())
    }

    /// Sends `SIGTERM` (Python's `terminate`). Nothing happens if the child has ended.
    ///
    /// # Errors
    ///
    /// [`ProcessError::NotStarted`]; [`ProcessError::ProcessClosed`] after
    /// [`close`](Self::close); [`ProcessError::Io`].
    pub fn terminate(&self) -> Result<(), ProcessError> {
        self.signal(sys::Signal::Term)
    }

    /// Sends `SIGKILL` (Python's `kill`). Nothing happens if the child has ended.
    ///
    /// # Errors
    ///
    /// As [`terminate`](Self::terminate).
    pub fn kill(&self) -> Result<(), ProcessError> {
        self.signal(sys::Signal::Kill)
    }

    fn signal(&self, sig: sys::Signal) -> Result<(), ProcessError> {
        let g = self.lock();
        match &g.run {
            _ if g.closed => Err(ProcessError::ProcessClosed),
            None => Err(ProcessError::NotStarted),
            Some(_) if g.exit.is_some() => Ok(()),
            Some(run) => Ok(sys::pidfd_signal(&run.pidfd, sig)?),
        }
    }
}

impl Process<()> {
    /// A handle for the program `cmd` will launch: a cooperating binary, which finds segment
    /// names given with [`set_segment`](Self::set_segment) through
    /// [`segment_name`](crate::process::segment_name), and its name through
    /// [`current_process`](crate::process::current_process). [`join`](Self::join) returns
    /// `Ok(())` for exit status 0.
    ///
    /// ```no_run
    /// use mpshm::prelude::*;
    /// use mpshm::process::Process;
    /// use std::process::Command;
    ///
    /// let queue = mpshm::Queue::<u64>::create("jobs-1", 64)?;
    /// let mut worker = Process::command(Command::new("./my-worker"));
    /// worker.set_segment("JOBS", queue.name()).set_daemon(true);
    /// worker.start()?;
    /// queue.put(42).expect("open queue");
    /// worker.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn command(cmd: Command) -> Process<()> {
        Process::with_target(Target::Command(Box::new(cmd)))
    }
}

/// Takes a pidfd for the child std just started, which is not reaped yet, so its pid is still
/// its own.
fn adopt(mut child: std::process::Child) -> Result<(u32, OwnedFd), ProcessError> {
    let pid = child.id();
    match sys::pidfd_open(pid) {
        Ok(fd) => Ok((pid, fd)),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e.into())
        }
    }
}

fn fork(spec: &Spec) -> Result<(u32, OwnedFd), ProcessError> {
    use std::io::Write;
    // What is buffered now would be written twice: by the parent, and by the child on exit.
    let _ = std::io::stdout().flush();
    match sys::fork_single_threaded()? {
        sys::Forked::Threads(threads) => Err(ProcessError::ForkWithThreads { threads }),
        sys::Forked::Child => child::run_forked(spec),
        sys::Forked::Parent(pid) => match sys::pidfd_open(pid) {
            Ok(fd) => Ok((pid, fd)),
            Err(e) => {
                sys::kill_and_reap_child(pid);
                Err(e.into())
            }
        },
    }
}

/// Reaps the child if it has ended and collects its outcome; whether it has ended.
fn reap<R: Payload>(g: &mut Inner<R>) -> Result<bool, ProcessError> {
    if g.exit.is_some() {
        return Ok(true);
    }
    let Some(run) = &mut g.run else {
        return Err(ProcessError::NotStarted);
    };
    let Some(code) = sys::pidfd_try_reap(&run.pidfd)? else {
        return Ok(false);
    };
    let exit = Exit::from_exitcode(code);
    let pid = run.pid;
    let result = match run.mailbox.take() {
        Some((chan, name)) => collect(&chan, &name, pid, exit),
        // A command has no result but its status; `()` decodes from no bytes.
        None if exit == Exit::Code(0) => {
            R::decode(&mut &[][..]).ok_or(ProcessError::Decode { what: "the result" })
        }
        None => Err(ProcessError::Exited { pid, exit }),
    };
    g.exit = Some(exit);
    g.result = Some(result);
    Ok(true)
}

/// Reads the outcome a function process left in its mailbox (the mailbox is then dropped and
/// so unlinked).
fn collect<R: Payload>(
    chan: &Mailbox,
    name: &str,
    pid: u32,
    exit: Exit,
) -> Result<R, ProcessError> {
    let elsewhere = format!("{name}r");
    let msg = chan.take();
    let msg = match msg.as_deref() {
        Some([tag::RESULT_ELSEWHERE]) => {
            let big = Mailbox::open(&elsewhere).ok().and_then(|c| c.take());
            channel::remove(&elsewhere);
            big
        }
        _ => msg,
    };
    match msg.as_deref() {
        Some([tag::RESULT, record @ ..]) => {
            let from = Origin {
                pid,
                max_message: child::INLINE_RESULT,
                blobs: None,
            };
            read_record(&mut &record[..], from)
                .unwrap_or(Err(ProcessError::Decode { what: "the result" }))
        }
        // The argument is still there: the child never took it. Unless it was killed first or
        // failed to set itself up (and said why on stderr), it ran `main` instead.
        Some([tag::ARG, ..]) => match exit {
            Exit::Code(c) if c != child::EXIT_SETUP => Err(ProcessError::NotIntercepted { pid }),
            _ => Err(ProcessError::Exited { pid, exit }),
        },
        // It exited with status 0 before returning (`std::process::exit(0)`): a success, as
        // for a command and in Python, where the result holds nothing (`()`) to lose.
        None if exit == Exit::Code(0) => {
            R::decode(&mut &[][..]).ok_or(ProcessError::Exited { pid, exit })
        }
        _ => Err(ProcessError::Exited { pid, exit }),
    }
}

fn take<R>(g: &mut Inner<R>) -> Result<R, ProcessError> {
    g.result.take().unwrap_or(Err(ProcessError::ResultTaken))
}

/// Lets go of what a handle holds once its child has ended (or been reaped): the pidfd (so
/// the child leaves [`active_children`](crate::process::active_children)), the mailbox and a
/// result segment it may have made, the result not taken. The handle is closed.
fn release<R>(g: &mut Inner<R>) {
    if let Some(run) = g.run.take()
        && let Some((_, name)) = &run.mailbox
    {
        channel::remove(&format!("{name}r"));
    }
    g.result = None;
    g.closed = true;
}

impl<R> Drop for Process<R> {
    fn drop(&mut self) {
        let g = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(run) = &g.run
            && g.exit.is_none()
        {
            if self.daemon {
                let _ = sys::pidfd_signal(&run.pidfd, sys::Signal::Kill);
            }
            let _ = sys::pidfd_reap(&run.pidfd);
        }
        release(g);
    }
}

impl<R> fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("pid", &g.run.as_ref().map(|r| r.pid))
            .field("exitcode", &g.exit.map(Exit::exitcode))
            .field("closed", &g.closed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triple(x: u32) -> u32 {
        x * 3
    }

    /// The crate's own unit tests run under libtest's default harness, whose `main` is not
    /// ours: the start-up hook must take the child over before it.
    #[test]
    fn spawn_from_a_libtest_binary() {
        let p = Process::new(triple, 14);
        p.start().expect("start");
        assert_eq!(p.join().expect("result"), 42);
        assert_eq!(p.exitcode(), Some(0));
    }
}
