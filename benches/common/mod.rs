//! What every bench binary shares: the child-process kit (a bench re-executes itself as its
//! peer process: the workspace's `mpshm-kit`, the tests' own, here as `child`), Criterion's
//! settings, and a closing summary of mean times with the ratio against a baseline measured in
//! the same run; and the small stdio helpers the benches' children use.
//!
//! A bench's children talk back on their stderr (`Spawn::control_on_stderr`): their stdin and
//! stdout are the OS pipe or socket that the baselines measure.
#![allow(dead_code, reason = "each bench uses a different part")]

pub use mpshm_kit as child;
pub use mpshm_kit::read_record;

/// `routines![a, b]`: the kit's [`mpshm_kit::routines!`], at the bench binary's root.
#[macro_export]
macro_rules! routines {
    ($($routines:tt)*) => {
        ::mpshm_kit::routines!($($routines)*)
    };
}

use std::cell::RefCell;
use std::error::Error;
use std::fs::File;
use std::io::Write;
use std::time::Duration;

use criterion::Criterion;

pub type Res<T> = Result<T, Box<dyn Error>>;

/// Runs the child routine this process was started for (it is some bench's peer), if any;
/// otherwise runs `benches` under Criterion, then prints the summary, in which each
/// benchmark's ratio is `baseline(id)`'s mean over its own.
pub fn run(
    name: &str,
    routines: Vec<child::Routine>,
    benches: fn(&mut Criterion) -> Res<()>,
    baseline: fn(&str) -> String,
) {
    child::dispatch(&routines);
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    if let Err(e) = benches(&mut c) {
        eprintln!("bench {name}: {e}");
        std::process::exit(1);
    }
    c.final_summary();
    summary(baseline);
}

thread_local! {
    /// Per benchmark: total time and iterations over every `iter_custom` call.
    static TOTALS: RefCell<Vec<(String, Duration, u64)>> = const { RefCell::new(Vec::new()) };
}

/// Adds one `iter_custom` call's time to benchmark `id`'s total; returns `time`.
pub fn record(id: &str, time: Duration, iters: u64) -> Duration {
    TOTALS.with_borrow_mut(|totals| match totals.iter_mut().find(|t| t.0 == id) {
        Some(t) => {
            t.1 += time;
            t.2 += iters;
        }
        None => totals.push((id.to_owned(), time, iters)),
    });
    time
}

fn summary(baseline: fn(&str) -> String) {
    TOTALS.with_borrow(|totals| {
        if totals.is_empty() {
            return;
        }
        let mean = |t: &(String, Duration, u64)| t.1.as_nanos() as f64 / t.2.max(1) as f64;
        println!("\nsummary (mean over all samples; × = the baseline's mean / this)");
        println!("{:-<78}", "");
        for t in totals {
            let base = baseline(&t.0);
            let ratio = totals
                .iter()
                .find(|b| b.0 == base)
                .map_or("-".to_owned(), |b| {
                    format!("{:.1}× {base}", mean(b) / mean(t))
                });
            println!("{:<36} {:>12.1} ns/iter  {ratio}", t.0, mean(t));
        }
        println!("{:-<78}", "");
    });
}

/// The child for a role written as words, `"name arg1 arg2"`: routine `name` with the rest as
/// its arguments, talking back on its stderr.
pub fn spawn_role(role: &str) -> Res<child::Spawn> {
    Ok(child::Spawn::role(role)?.control_on_stderr())
}

/// In a child routine: its outcome; an error ends the process with status 1 after an
/// `error: <why>` line to the parent (`child::fail`), which the parent's `Child::finish`
/// reports.
pub fn or_exit(outcome: Res<()>) {
    if let Err(e) = outcome {
        child::fail(e);
    }
}

/// `fdecho`, the OS pipe's and the socket's echo child of the benches: echoes 8-byte records
/// from stdin to stdout, plus one.
pub fn fdecho(_: &[String]) {
    or_exit((|| {
        let (mut input, mut output) = raw_stdio()?;
        child::ready();
        let mut buf = [0; 8];
        while read_record(&mut input, &mut buf)? {
            output.write_all(&(u64::from_ne_bytes(buf) + 1).to_ne_bytes())?;
        }
        Ok(())
    })());
}

/// Our stdin and stdout as unbuffered files.
pub fn raw_stdio() -> Res<(File, File)> {
    Ok((child::raw_stdin()?, child::raw_stdout()?))
}
