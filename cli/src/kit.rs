//! The child-process kit, as the command uses it: every case of `mpshm bench` runs its other
//! processes as this executable again, through the workspace's one kit (`kit/`, the
//! `mpshm-kit` crate, which the tests and the Criterion benches use too). A bench child talks
//! back on its stderr ([`Spawn::control_on_stderr`]), which leaves its stdin and stdout free to
//! be the ends of an OS pipe or socket under test; where they are not, the parent holds the
//! child's stdin and sends the start line on it ([`Child::go`], [`wait_go`]).

pub use mpshm_kit::{Child, Spawn, fail, raw_stdin, raw_stdout, read_record, started, wait_go};

/// Errors: what failed, in words.
pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// In a child: one line to the parent ([`mpshm_kit::report`]).
pub fn report(line: &str) -> Res<()> {
    Ok(mpshm_kit::report(line)?)
}

/// In a child: waits for the end of stdin, the parent's [`Child::finish`]
/// ([`mpshm_kit::wait_eof`]).
pub fn wait_eof() -> Res<()> {
    Ok(mpshm_kit::wait_eof()?)
}
