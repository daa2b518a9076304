//! What every bench binary shares: the dispatch to a child role (a bench re-executes itself as
//! its peer process, with the child kit of the `mpshm` command, `cli/src/kit.rs`), Criterion's
//! settings, and a closing summary of mean times with the ratio against a baseline measured in
//! the same run.
#![allow(dead_code, reason = "each bench uses a different part")]

use std::cell::RefCell;
use std::time::Duration;

use criterion::Criterion;

/// The child kit, shared with `mpshm bench`: spawning this binary as a child with a role, its
/// report lines, raw stdio.
#[path = "../../cli/src/kit.rs"]
mod kit;

#[allow(unused_imports, reason = "each bench uses a different part")]
pub use kit::{Kid, Res, raw_stdin, raw_stdout, read_record, report};

/// Runs `child(role)` when this process was started as a child (it is some bench's peer);
/// otherwise runs `benches` under Criterion, then prints the summary, in which each
/// benchmark's ratio is `baseline(id)`'s mean over its own.
pub fn run(
    name: &str,
    child: fn(&str) -> Res<()>,
    benches: fn(&mut Criterion) -> Res<()>,
    baseline: fn(&str) -> String,
) {
    if let Some(role) = kit::role() {
        if let Err(e) = child(&role) {
            eprintln!("bench child ({role}): {e}");
            std::process::exit(1);
        }
        return;
    }
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
