//! The child's side of a process: how a spawned child finds out, before `main`, that it is one,
//! and runs its function instead; and who this process is (its name and its parent's).
//!
//! The parent starts the child as `/proc/self/exe` (the very file it runs) with one environment
//! variable, [`SPAWN_ENV`], describing the job: the executable's identity, the parent's pid and
//! name, whether the child is a daemon (a daemon may not start children), the function
//! ([`Entry`]), the mailbox holding the argument, the child's name, and its place in the tree
//! of processes, from which its children's default names are made ([`next_identity`]).
//! [`intercept`] runs from an ELF constructor (see `process.rs`) or from
//! [`child_main`](crate::process::child_main) at the top of `main`: it checks the executable,
//! takes the argument from the mailbox (that is the handshake: an argument still there when the
//! child has exited means it never got this far), calls the function and puts the outcome
//! back, then exits without returning to `main`.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::error::ProcessError;
use crate::process::channel::{self, Mailbox};
use crate::process::entry::{Entry, status};
use crate::process::forkserver;
use crate::sys;

/// The environment variable that makes a process a spawned child.
pub(crate) const SPAWN_ENV: &str = "MPSHM_PROCESS";
/// The environment variable that tells a launched command its name and its parent's.
pub(crate) const COMMAND_ENV: &str = "MPSHM_COMMAND";
/// The prefix of the environment variables that hand segment names to a launched command.
pub(crate) const SEGMENT_ENV_PREFIX: &str = "MPSHM_SEGMENT_";

/// The environment variable that, set to `main`, leaves the take-over of spawned children to
/// [`child_main`](crate::process::child_main) (for a program whose other start-up code must
/// run first).
pub(crate) const HOOK_ENV: &str = "MPSHM_PROCESS_HOOK";

/// Whether the start-up hook is to leave spawned children alone ([`HOOK_ENV`] is `main`).
pub(crate) fn hook_disabled() -> bool {
    std::env::var_os(HOOK_ENV).is_some_and(|v| v == "main")
}

/// The exit status of a child that could not set itself up (it says why on stderr).
pub(crate) const EXIT_SETUP: i32 = 121;

/// The first byte of each message in a process's mailbox.
pub(crate) mod tag {
    /// The argument, from the parent.
    pub(crate) const ARG: u8 = 0xA0;
    /// The outcome record, from the child.
    pub(crate) const RESULT: u8 = 0xB0;
    /// The outcome was too long for the mailbox; it is in the segment named after the mailbox
    /// with an `r` added.
    pub(crate) const RESULT_ELSEWHERE: u8 = 0xB1;
}

/// The longest outcome that travels back in the process's own mailbox.
pub(crate) const INLINE_RESULT: usize = 4096;

/// The version of the [`SPAWN_ENV`] format.
const SPEC_VERSION: &str = "mpshm2";
/// The version of the [`COMMAND_ENV`] format, which a launched program built against another
/// version of mpshm reads.
const COMMAND_VERSION: &str = "mpshm1";
/// Separates the fields: the ASCII unit separator, which no name may contain.
const SEP: char = '\x1f';

/// What a spawned or forked child is to do.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) exe: sys::FileId,
    pub(crate) parent: u32,
    pub(crate) parent_name: String,
    pub(crate) daemon: bool,
    pub(crate) entry: Entry,
    pub(crate) mailbox: String,
    pub(crate) name: String,
    /// Its place in the tree of processes: see [`next_identity`].
    pub(crate) identity: String,
}

/// `name` without the separator, so that it fits in one field.
pub(crate) fn field(name: &str) -> String {
    name.replace(SEP, "?")
}

impl Spec {
    pub(crate) fn encode(&self) -> String {
        let (run, func) = self.entry.parts();
        [
            SPEC_VERSION.to_owned(),
            format!("{}:{}", self.exe.0, self.exe.1),
            self.parent.to_string(),
            field(&self.parent_name),
            u8::from(self.daemon).to_string(),
            format!("{run}:{func}"),
            field(&self.mailbox),
            field(&self.name),
            field(&self.identity),
        ]
        .join(&SEP.to_string())
    }

    fn decode(s: &str) -> Option<Spec> {
        let f: Vec<&str> = s.split(SEP).collect();
        let [
            version,
            exe,
            parent,
            parent_name,
            daemon,
            entry,
            mailbox,
            name,
            identity,
        ] = f[..]
        else {
            return None;
        };
        if version != SPEC_VERSION {
            return None;
        }
        let pair = |s: &str| -> Option<(u64, u64)> {
            let (a, b) = s.split_once(':')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        };
        let (run, func) = pair(entry)?;
        Some(Spec {
            exe: pair(exe)?,
            parent: parent.parse().ok()?,
            parent_name: parent_name.to_owned(),
            daemon: match daemon {
                "0" => false,
                "1" => true,
                _ => return None,
            },
            entry: Entry::from_environment(run, func),
            mailbox: mailbox.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
        })
    }
}

/// This process's name and its parent's, once it knows it is a child.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) name: String,
    /// The parent's pid when it started this process (it stays so after the parent's end,
    /// when `getppid` turns to whoever adopted this process).
    pub(crate) parent: u32,
    pub(crate) parent_name: String,
    /// Its place in the tree of processes (empty for a launched command).
    pub(crate) identity: String,
    /// Whether it runs as a daemon (false for a launched command, which is not told).
    pub(crate) daemon: bool,
}

/// Set when this process runs as a spawned or forked child (overwritten in a forked child).
static IDENTITY: Mutex<Option<Identity>> = Mutex::new(None);
/// Set once a spawned child has been taken over by [`intercept`].
static INTERCEPTED: AtomicBool = AtomicBool::new(false);

/// The number the next `Process` made in this process takes.
static NEXT_CHILD: AtomicU32 = AtomicU32::new(1);

/// A new process's place in the tree of processes, as Python's `_identity`: this process's
/// own, then the count of processes made here (`"3"` for the third made by a main process,
/// `"3:1"` for the first made by that one). The default name is `Process-` and this.
pub(crate) fn next_identity() -> String {
    let n = NEXT_CHILD.fetch_add(1, Ordering::Relaxed);
    match identity() {
        Some(me) if !me.identity.is_empty() => format!("{}:{n}", me.identity),
        _ => n.to_string(),
    }
}

/// Whether this process runs as a daemon child, which may not start children.
pub(crate) fn is_daemon() -> bool {
    identity().is_some_and(|me| me.daemon)
}

/// This process's identity as a child: from a spawn or fork, else from a launching parent's
/// [`COMMAND_ENV`]; `None` in a main process.
pub(crate) fn identity() -> Option<Identity> {
    let set = IDENTITY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    set.or_else(|| {
        let raw = std::env::var(COMMAND_ENV).ok()?;
        let f: Vec<&str> = raw.split(SEP).collect();
        match f[..] {
            [COMMAND_VERSION, parent, parent_name, name] => Some(Identity {
                name: name.to_owned(),
                parent: parent.parse().ok()?,
                parent_name: parent_name.to_owned(),
                identity: String::new(),
                daemon: false,
            }),
            _ => None,
        }
    })
}

/// The [`COMMAND_ENV`] value for a command launched by this process as `name`.
pub(crate) fn command_env(name: &str) -> String {
    let me = crate::process::current_process();
    [
        COMMAND_VERSION.to_owned(),
        std::process::id().to_string(),
        field(&me.name),
        field(name),
    ]
    .join(&SEP.to_string())
}

/// The job in [`SPAWN_ENV`], if there is one and it was meant for this executable (a different
/// program that inherited the variable leaves it alone).
fn job_for_this_executable() -> Option<Spec> {
    let spec = std::env::var(SPAWN_ENV)
        .ok()
        .and_then(|s| Spec::decode(&s))?;
    (sys::exe_identity().ok() == Some(spec.exe)).then_some(spec)
}

/// Fails when this process is a spawned child that was not taken over (the start-up hook did
/// not run and `main` does not call `child_main`): starting children from here would start
/// them over and over, each running `main` again.
pub(crate) fn refuse_if_not_intercepted() -> Result<(), ProcessError> {
    if !INTERCEPTED.load(Ordering::Relaxed) && job_for_this_executable().is_some() {
        return Err(ProcessError::NotIntercepted { pid: 0 });
    }
    Ok(())
}

/// Takes this process over if it is a spawned child: runs its function and exits. Returns at
/// once otherwise, and on every call after the first.
pub(crate) fn intercept() {
    static ONCE: AtomicBool = AtomicBool::new(false);
    if ONCE.swap(true, Ordering::Relaxed) {
        return;
    }
    if let Some(parent) = forkserver::server_request() {
        sys::ignore_sigpipe();
        forkserver::serve(parent);
    }
    if std::env::var_os(SPAWN_ENV).is_none() {
        return;
    }
    let job = job_for_this_executable();
    // Children it starts get their own; a program it runs must not see this one. (A variable
    // meant for another executable, inherited by this one, goes too.)
    sys::env_remove(SPAWN_ENV);
    let Some(spec) = job else { return };
    sys::ignore_sigpipe();
    let code = run(&spec);
    std::process::exit(code)
}

/// Runs the job in [`SPAWN_ENV`] as a spawned child does, in a child the fork server forked
/// (which is in the state of a process before `main`, the job's environment already in place).
pub(crate) fn take_over() -> ! {
    let job = job_for_this_executable();
    sys::env_remove(SPAWN_ENV);
    let Some(spec) = job else {
        eprintln!("mpshm: the fork server's child found no job for this executable");
        std::process::exit(EXIT_SETUP)
    };
    let code = run(&spec);
    std::process::exit(code)
}

/// Runs a forked child's job (the fork happened in `Process::start`) and ends the process
/// without running its parent's exit handlers or destructors a second time.
pub(crate) fn run_forked(spec: &Spec) -> ! {
    let code = run(spec);
    let _ = std::io::stdout().flush();
    sys::exit_now(code)
}

/// Does the child's job; its exit status: 0 when the function returned, 1 when it panicked
/// (as Python's 1 for an exception), [`EXIT_SETUP`] when the job could not be read.
fn run(spec: &Spec) -> i32 {
    INTERCEPTED.store(true, Ordering::Relaxed);
    *IDENTITY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Identity {
        name: spec.name.clone(),
        parent: spec.parent,
        parent_name: spec.parent_name.clone(),
        identity: spec.identity.clone(),
        daemon: spec.daemon,
    });
    // A forked child has its parent's count; its own children count from 1 again.
    NEXT_CHILD.store(1, Ordering::Relaxed);
    if spec.daemon
        && let Err(e) = sys::die_with_parent(spec.parent)
    {
        eprintln!("mpshm: cannot ask to die with the parent: {e}");
        return EXIT_SETUP;
    }
    let chan = match Mailbox::open(&spec.mailbox) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mpshm: this child process cannot open its mailbox: {e}");
            return EXIT_SETUP;
        }
    };
    let arg = match chan.take() {
        Some(m) if m.first() == Some(&tag::ARG) => m,
        _ => {
            eprintln!("mpshm: this child process found no argument in its mailbox");
            return EXIT_SETUP;
        }
    };
    // Both sides have the mailbox mapped now, and nobody opens it again: without its name it
    // cannot outlive them, even if the parent is killed.
    channel::remove(&spec.mailbox);
    let mut out = vec![tag::RESULT];
    spec.entry.call(&mut &arg[1..], &mut out);
    let code = if out.get(1) == Some(&status::OK) {
        0
    } else {
        1
    };
    hand_back(&chan, &spec.mailbox, out);
    code
}

/// Puts the outcome `out` (tagged `RESULT`) where the parent will look.
fn hand_back(chan: &Mailbox, name: &str, out: Vec<u8>) {
    if chan.put(&out) {
        return;
    }
    let elsewhere = format!("{name}r");
    match Mailbox::create(&elsewhere, out.len()) {
        Ok(big) => {
            big.persist();
            big.put(&out);
            chan.put(&[tag::RESULT_ELSEWHERE]);
        }
        Err(e) => {
            eprintln!(
                "mpshm: cannot hand back a result of {} bytes: {e}",
                out.len()
            );
            let mut too_large = vec![tag::RESULT, status::TOO_LARGE];
            too_large.extend_from_slice(&(out.len() as u64).to_le_bytes());
            chan.put(&too_large);
        }
    }
}
