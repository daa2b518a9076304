//! Naming a function across a re-exec: an [`Entry`] is a function pointer and the runner that
//! calls it, each as its distance from a fixed point in this crate's code.
//!
//! A spawned child runs the same executable file as its parent (it is started as
//! `/proc/self/exe`, and checks the file's identity), so a function lies at the same distance
//! from the anchor in both, whatever address space randomisation does. The runner is an
//! instance of a generic function for the argument and result types (`run_map::<A, R>`), so
//! its own signature is fixed and the types travel with it. A function in another shared
//! library is refused: its distance changes from run to run.
//!
//! Turning a distance back into a pointer is the one unsafe step, and it is only taken for an
//! entry that came from a trusted place: the environment this process was started with, or a
//! task message whose keyed checksum ([`Entry::seal`]) matches the pool's key, which travels in
//! the environment and never in shared memory. A damaged or forged message is refused, not
//! jumped into. (A process of the same user could read the key from `/proc/<pid>/environ`; it
//! could as well attach a debugger.)

use std::hash::Hasher;
use std::panic::AssertUnwindSafe;

use crate::error::ProcessError;
use crate::process::payload::Payload;
use crate::sys;

/// The outcome of one call, as the first byte of its record in a result.
pub(crate) mod status {
    /// Returned normally; the encoded result follows.
    pub(crate) const OK: u8 = 0;
    /// Panicked; the message follows (a `String`).
    pub(crate) const PANICKED: u8 = 1;
    /// The result could not be encoded; the reason follows (a `String`).
    pub(crate) const ENCODE: u8 = 2;
    /// The result was longer than a message may be; its length follows (a `u64`).
    pub(crate) const TOO_LARGE: u8 = 3;
    /// The argument bytes were not a valid encoding; nothing follows, and the rest of the
    /// input cannot be read.
    pub(crate) const BAD_INPUT: u8 = 4;
    /// The record was too long for a message: it is in the blob segment whose name follows
    /// (a `String`).
    pub(crate) const ELSEWHERE: u8 = 5;
}

/// Where outcome records come from, to read them: the worker's pid (for a panic), the message
/// limit (for `TooLarge`), and the prefix of the blob segments it may hand records over in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin<'a> {
    pub(crate) pid: u32,
    pub(crate) max_message: usize,
    pub(crate) blobs: Option<&'a str>,
}

/// Reads one argument from the front of `input`, calls the function at `func` on it and
/// appends the outcome (a status byte, then the result or the panic message) to `out`.
/// `false` when the argument bytes are not valid (after appending `BAD_INPUT`).
type Runner = fn(func: u64, input: &mut &[u8], out: &mut Vec<u8>) -> bool;

/// A function a child can call: the runner and the function, as code offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    run: u64,
    func: u64,
}

fn offsets(run: Runner, func: usize) -> Result<Entry, ProcessError> {
    match (sys::code_offset(run as usize), sys::code_offset(func)) {
        (Some(run), Some(func)) => Ok(Entry { run, func }),
        _ => Err(ProcessError::NotInExecutable),
    }
}

impl Entry {
    /// The entry of `f`.
    pub(crate) fn of<A: Payload, R: Payload>(f: fn(A) -> R) -> Result<Entry, ProcessError> {
        offsets(run_map::<A, R>, f as usize)
    }

    /// The entry of the two-argument `f`, called on a pair.
    pub(crate) fn of_pair<A: Payload, B: Payload, R: Payload>(
        f: fn(A, B) -> R,
    ) -> Result<Entry, ProcessError> {
        offsets(run_pair::<A, B, R>, f as usize)
    }

    /// The two offsets, for the environment or a message.
    pub(crate) fn parts(self) -> (u64, u64) {
        (self.run, self.func)
    }

    /// An entry read from the environment this process was started with, which its parent set
    /// from [`parts`](Self::parts) after checking the executable (see `child`): trusted as the
    /// command line is.
    pub(crate) fn from_environment(run: u64, func: u64) -> Entry {
        Entry { run, func }
    }

    /// A keyed checksum of the entry and `extra` (what else the message says that must not
    /// be changed: a task's id and item count): a task message carries it so that the worker
    /// can tell what its pool sent from bytes that were damaged or written by someone else.
    pub(crate) fn seal(self, key: [u64; 2], extra: [u64; 2]) -> u64 {
        // SipHash over the secret key and the fields: without the key, the checksum of other
        // fields cannot be computed.
        // One `write` of all six words: a tuple's `hash` writes each word apart, and SipHash's
        // buffering per call cost as much again as the rounds (this runs twice per task).
        let words = [key[0], key[1], self.run, self.func, extra[0], extra[1]];
        let mut h = std::hash::DefaultHasher::new();
        h.write(bytemuck::bytes_of(&words));
        h.finish()
    }

    /// The entry `(run, func)` read from a message, if `mac` is its checksum (with `extra`)
    /// under `key`.
    pub(crate) fn unseal(
        (run, func): (u64, u64),
        extra: [u64; 2],
        mac: u64,
        key: [u64; 2],
    ) -> Option<Entry> {
        let e = Entry { run, func };
        (e.seal(key, extra) == mac).then_some(e)
    }

    /// Calls the function on one argument read from `input`, appending the outcome to `out`;
    /// `false` if the argument bytes were invalid.
    pub(crate) fn call(self, input: &mut &[u8], out: &mut Vec<u8>) -> bool {
        // SAFETY: an `Entry` is only made by `of`/`of_pair` (from a `Runner` in this process),
        // by `from_environment` (offsets the parent took with `of`/`of_pair` in the same
        // executable, which the child checked) or by `unseal` (offsets whose checksum only the
        // pool that made them with `of`/`of_pair` could compute). So `run` is a `Runner` here.
        let run: Runner = unsafe { sys::code_at(self.run) };
        run(self.func, input, out)
    }
}

/// A random key for [`Entry::seal`], from the OS-seeded keys of std's `RandomState`.
pub(crate) fn new_key() -> [u64; 2] {
    use std::hash::BuildHasher;
    let a = std::hash::RandomState::new().hash_one(std::process::id());
    let b = std::hash::RandomState::new().hash_one(a);
    [a, b]
}

/// Appends the record of a finished call: its status and what follows it.
fn record<R: Payload>(result: std::thread::Result<R>, out: &mut Vec<u8>) {
    let mark = out.len();
    match result {
        Ok(r) => {
            out.push(status::OK);
            if let Err(e) = r.encode(out) {
                out.truncate(mark);
                out.push(status::ENCODE);
                let _ = error_text(&e).encode(out);
            }
        }
        Err(panic) => {
            out.push(status::PANICKED);
            let _ = panic_message(&*panic).encode(out);
        }
    }
}

fn error_text(e: &ProcessError) -> String {
    match e {
        ProcessError::Encode { reason } => reason.clone(),
        other => other.to_string(),
    }
}

/// The text of a panic payload (`panic!` with a message gives a `&str` or a `String`).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "the panic payload is not a string".to_owned()
    }
}

fn run_map<A: Payload, R: Payload>(func: u64, input: &mut &[u8], out: &mut Vec<u8>) -> bool {
    // SAFETY: `func` is the offset `Entry::of::<A, R>` took of an `fn(A) -> R` (the runner is
    // this very instance, chosen by the same call), in this executable; see `Entry::call`.
    let f: fn(A) -> R = unsafe { sys::code_at(func) };
    match A::decode(input) {
        Some(a) => {
            // Unwind safety: the argument is moved into the call and nothing else is touched.
            record(
                std::panic::catch_unwind(AssertUnwindSafe(move || f(a))),
                out,
            );
            true
        }
        None => {
            out.push(status::BAD_INPUT);
            false
        }
    }
}

fn run_pair<A: Payload, B: Payload, R: Payload>(
    func: u64,
    input: &mut &[u8],
    out: &mut Vec<u8>,
) -> bool {
    // SAFETY: as in `run_map`, for the `fn(A, B) -> R` of `Entry::of_pair::<A, B, R>`.
    let f: fn(A, B) -> R = unsafe { sys::code_at(func) };
    match <(A, B)>::decode(input) {
        Some((a, b)) => {
            record(
                std::panic::catch_unwind(AssertUnwindSafe(move || f(a, b))),
                out,
            );
            true
        }
        None => {
            out.push(status::BAD_INPUT);
            false
        }
    }
}

/// Reads one outcome record written by a runner: the result, or the error it stands for.
/// `None` when the bytes are not a valid record (the rest of the input cannot be read).
pub(crate) fn read_record<R: Payload>(
    input: &mut &[u8],
    from: Origin<'_>,
) -> Option<Result<R, ProcessError>> {
    let text = |input: &mut &[u8]| String::decode(input);
    Some(match u8::decode(input)? {
        status::OK => Ok(R::decode(input)?),
        status::PANICKED => Err(ProcessError::Panicked {
            pid: from.pid,
            message: text(input)?,
        }),
        status::ENCODE => Err(ProcessError::Encode {
            reason: text(input)?,
        }),
        status::TOO_LARGE => Err(ProcessError::TooLarge {
            len: usize::decode(input)?,
            max: from.max_message,
        }),
        status::BAD_INPUT => Err(ProcessError::Decode {
            what: "an argument",
        }),
        status::ELSEWHERE => {
            let name = text(input)?;
            let bytes = from
                .blobs
                .and_then(|prefix| crate::process::channel::take_blob(&name, prefix));
            // The record in the blob is read as one, but may not point further.
            let inner = Origin {
                blobs: None,
                ..from
            };
            match bytes.and_then(|b| read_record(&mut b.as_slice(), inner)) {
                Some(r) => r,
                None => Err(ProcessError::Decode {
                    what: "a result handed over in its own segment",
                }),
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u64) -> u64 {
        x * 2
    }

    fn origin(pid: u32) -> Origin<'static> {
        Origin {
            pid,
            max_message: 0,
            blobs: None,
        }
    }

    fn boom(_: u8) -> u8 {
        panic!("boom")
    }

    #[test]
    fn an_entry_calls_its_function() {
        let e = Entry::of(double).expect("in the test binary");
        let mut input: &[u8] = &21u64.to_le_bytes();
        let mut out = Vec::new();
        assert!(e.call(&mut input, &mut out));
        let r: Result<u64, _> = read_record(&mut out.as_slice(), origin(1)).expect("record");
        assert_eq!(r.ok(), Some(42));
    }

    #[test]
    fn a_panic_is_recorded() {
        let e = Entry::of(boom).expect("in the test binary");
        let mut out = Vec::new();
        assert!(e.call(&mut [1u8].as_slice(), &mut out));
        let r: Result<u8, _> = read_record(&mut out.as_slice(), origin(7)).expect("record");
        assert!(
            matches!(r, Err(ProcessError::Panicked { pid: 7, ref message }) if message == "boom")
        );
    }

    #[test]
    fn a_record_elsewhere_is_only_taken_from_its_workers_blobs() {
        // A name outside the allowed prefix is not opened (nor removed): the item fails.
        let mut rec = vec![status::ELSEWHERE];
        "someone-elses-queue".to_owned().encode(&mut rec).unwrap();
        let from = Origin {
            pid: 1,
            max_message: 0,
            blobs: Some("mpx1-2b"),
        };
        let r: Result<u8, _> = read_record(&mut rec.as_slice(), from).expect("record");
        assert!(matches!(r, Err(ProcessError::Decode { .. })));
        let mut rec = vec![status::ELSEWHERE];
        "mpx1-2bx".to_owned().encode(&mut rec).unwrap();
        let r: Result<u8, _> = read_record(&mut rec.as_slice(), from).expect("record");
        assert!(matches!(r, Err(ProcessError::Decode { .. })));
    }

    #[test]
    fn a_seal_checks_the_entry() {
        let key = new_key();
        let e = Entry::of(double).expect("in the test binary");
        let mac = e.seal(key, [1, 2]);
        let (run, func) = e.parts();
        assert_eq!(Entry::unseal((run, func), [1, 2], mac, key), Some(e));
        assert_eq!(Entry::unseal((run, func + 1), [1, 2], mac, key), None);
        assert_eq!(Entry::unseal((run, func), [1, 3], mac, key), None);
        assert_eq!(
            Entry::unseal((run, func), [1, 2], mac, [key[0] ^ 1, key[1]]),
            None
        );
    }
}
