//! What the seed programs take from Python's standard library and Rust's lacks: `time.sleep`
//! (that the examples' test can shorten), `random.random`, `time.ctime`; and a segment name
//! that is unique to this run. And what the death-latency examples (`owner_death`,
//! `peer_death`) share: whether a thread sleeps in the kernel, a kill timed from there, and a
//! table row of timings.
#![allow(dead_code, reason = "each example uses a part of it")]

use std::error::Error;
use std::hash::{BuildHasher, RandomState};
use std::process::Child;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A segment name for this run: `tag` and this process's id (a child opens it by name).
pub fn name(tag: &str) -> String {
    format!("{tag}-{}", std::process::id())
}

/// Python's `time.sleep(secs)`. Every sleep is multiplied by `MPSHM_EXAMPLE_SLEEP_SCALE` (a
/// number, 1 by default), which the examples' test sets to keep its runs short.
pub fn sleep(secs: f64) {
    let scale = std::env::var("MPSHM_EXAMPLE_SLEEP_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(1.0);
    std::thread::sleep(Duration::from_secs_f64(secs * scale));
}

/// Python's `random.random()`: a number in `[0, 1)` (from std's randomly keyed hasher).
pub fn random() -> f64 {
    (RandomState::new().hash_one(0u8) >> 11) as f64 / (1u64 << 53) as f64
}

/// Python's `time.ctime()`, in UTC: `Tue Nov 19 12:18:15 2019`.
pub fn ctime() -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, time) = (secs / 86_400, secs % 86_400);
    // The civil date of a day count (Howard Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{} {} {day:2} {:02}:{:02}:{:02} {year}",
        DAYS[(days % 7) as usize],
        MONTHS[month as usize - 1],
        time / 3600,
        time / 60 % 60,
        time % 60
    )
}

/// Whether the thread at `/proc/<task>` is asleep (state `S`) in one of the system calls
/// numbered `calls` (as `/proc/<task>/syscall` shows them; x86_64 numbers).
pub fn asleep_in(task: &str, calls: &[&str]) -> std::io::Result<bool> {
    let stat = std::fs::read_to_string(format!("/proc/{task}/stat"))?;
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_ascii_whitespace().next());
    let syscall = std::fs::read_to_string(format!("/proc/{task}/syscall"))?;
    let call = syscall.split_ascii_whitespace().next().unwrap_or("");
    Ok(state == Some("S") && calls.contains(&call))
}

/// Waits (at most 10 s) until the thread at `/proc/<task>` sleeps in one of `calls`, kills
/// `child` with `SIGKILL`, and returns the time from the kill until the moment `returned` (which
/// joins the sleeping thread) reports.
pub fn kill_when_asleep(
    child: &mut Child,
    task: &str,
    calls: &[&str],
    returned: impl FnOnce() -> Result<Instant, Box<dyn Error>>,
) -> Result<Duration, Box<dyn Error>> {
    let start = Instant::now();
    while !asleep_in(task, calls)? {
        if start.elapsed() > Duration::from_secs(10) {
            return Err(format!("{task} never slept").into());
        }
        std::thread::yield_now();
    }
    let killed = Instant::now();
    child.kill()?;
    Ok(returned()? - killed)
}

/// The header of [`report`]'s rows.
pub fn header(first: &str) {
    println!(
        "{first:<28} {:>9} {:>9} {:>9} {:>9}",
        "median", "p90", "p99", "max"
    );
}

/// Prints `label` and the median, 90th and 99th percentiles and the worst of `times`, in µs.
pub fn report(label: &str, mut times: Vec<Duration>) {
    times.sort_unstable();
    let at = |q: usize| times[(times.len() * q / 100).min(times.len() - 1)];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{label:<28} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
        us(at(50)),
        us(at(90)),
        us(at(99)),
        us(times[times.len() - 1]),
    );
}
