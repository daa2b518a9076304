//! What the seed programs take from Python's standard library and Rust's lacks: `time.sleep`
//! (that the examples' test can shorten), `random.random`, `time.ctime`; and a segment name
//! that is unique to this run.
#![allow(dead_code, reason = "each example uses a part of it")]

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
