//! The results of a run: the table on stdout, the same as JSON (`--json`), and the numbers the
//! chart draws (`plot.rs`).
//!
//! Every ratio is a speed ratio, the baseline's time per operation over the row's: how many
//! times faster the mpshm row is than that baseline (below 1: slower). Against the floor it is
//! the fraction of the floor's speed the row reaches.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::stats::median;
use super::{Case, Outcome, Settings, Side, Unit};
use crate::kit::Res;

/// The lines between which [`splice`] puts a table.
const START: &str = "<!-- mpshm bench -->";
const END: &str = "<!-- /mpshm bench -->";

/// Replaces what stands between the lines [`START`] and [`END`] of the Markdown file `path` with
/// `table`, as a text block.
pub fn splice(path: &Path, table: &str) -> Res<()> {
    let text = std::fs::read_to_string(path)?;
    let (Some(a), Some(b)) = (text.find(START), text.find(END)) else {
        return Err(format!(
            "{}: no lines {START} and {END} to write between",
            path.display()
        )
        .into());
    };
    if b < a {
        return Err(format!("{}: {END} comes before {START}", path.display()).into());
    }
    let new = format!(
        "{}{START}\n```text\n{}\n```\n{}",
        &text[..a],
        table.trim(),
        &text[b..]
    );
    std::fs::write(path, new)?;
    Ok(())
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub group: &'static str,
    pub section: String,
    pub id: String,
    pub label: String,
    pub side: Side,
    pub unit: Unit,
    /// Seconds per operation: the median of the rounds.
    pub median: Option<f64>,
    /// Seconds per operation at the 99th percentile of every operation (or batch).
    pub p99: Option<f64>,
    pub rounds: Vec<f64>,
    pub failed: Option<String>,
    /// Speed ratios to the floor, the OS pipe, the socket and Python.
    pub vs: [Option<f64>; 4],
}

/// What the machine was like.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
    pub load: String,
    pub death_notice: String,
}

impl Machine {
    fn now() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu: read("/proc/cpuinfo")
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map_or_else(|| "?".to_owned(), |(_, m)| m.trim().to_owned()),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            load: read("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            death_notice: format!("{:?}", mpshm::death_notice()),
        }
    }
}

/// A whole run.
#[derive(Debug, Clone)]
pub struct Report {
    pub machine: Machine,
    pub settings: Settings,
    pub python: Option<String>,
    /// Nanoseconds per round trip of the gauge, one per round.
    pub gauges: Vec<f64>,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    pub elapsed: Duration,
}

impl Report {
    pub fn new(
        settings: &Settings,
        cases: &[Case],
        outcomes: &[Outcome],
        gauges: &[f64],
        python: Option<String>,
        mut notes: Vec<String>,
        elapsed: Duration,
    ) -> Report {
        let median_of = |id: &Option<String>| {
            let i = cases.iter().position(|c| Some(&c.id) == id.as_ref())?;
            median(&outcomes[i].rounds)
        };
        let rows = cases
            .iter()
            .zip(outcomes)
            .map(|(c, o)| {
                let m = median(&o.rounds);
                let ratio = |r: &Option<String>| Some(median_of(r)? / m?);
                if let Some(why) = &o.failed {
                    notes.push(format!("{} failed and was left out: {why}", c.id));
                }
                Row {
                    group: c.group,
                    section: c.section.clone(),
                    id: c.id.clone(),
                    label: c.label.clone(),
                    side: c.side,
                    unit: c.unit,
                    median: m,
                    p99: o.hist.quantile(0.99).map(|ns| ns * 1e-9),
                    rounds: o.rounds.clone(),
                    failed: o.failed.clone(),
                    vs: [
                        ratio(&c.refs.floor),
                        ratio(&c.refs.pipe),
                        ratio(&c.refs.socket),
                        ratio(&c.refs.python),
                    ],
                }
            })
            .collect();
        Report {
            machine: Machine::now(),
            settings: settings.clone(),
            python,
            gauges: gauges.to_vec(),
            rows,
            notes,
            elapsed,
        }
    }

    pub fn row(&self, id: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.id == id)
    }

    fn gauge_line(&self) -> String {
        let mut g = self.gauges.clone();
        g.sort_by(f64::total_cmp);
        match (g.first(), median(&g), g.last()) {
            (Some(lo), Some(mid), Some(hi)) => format!(
                "gauge: two threads bouncing a cache line, {mid:.0} ns per round trip (median of \
                 {} rounds, {lo:.0} to {hi:.0} ns). About 100-200 ns means two free cores; \
                 microseconds mean the cores were shared with other load, and the spinning \
                 figures measure the scheduler, not the handoff.",
                g.len()
            ),
            _ => "gauge: not measured".to_owned(),
        }
    }

    /// The table, as printed.
    pub fn table(&self) -> String {
        let m = &self.machine;
        let s = &self.settings;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nmpshm bench: {} cores ({}), Linux {}, load {} at the end; death notice {}; {}",
            m.cores,
            m.cpu,
            m.kernel,
            m.load,
            m.death_notice,
            self.python.as_deref().unwrap_or("no Python")
        );
        let _ = writeln!(
            out,
            "{} rounds, {} s per timed case per round{}; {:.1} s in all",
            s.rounds,
            s.secs,
            if s.pin.is_empty() {
                String::new()
            } else {
                format!(", pinned to CPUs {:?}", s.pin)
            },
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(out, "{}", wrap(&self.gauge_line(), 122));
        let line = "-".repeat(122);
        let _ = writeln!(out, "{line}");
        let _ = writeln!(
            out,
            "{:<42}{:>22}{:>14}{:>11}{:>11}{:>11}{:>11}",
            "", "median", "p99", "vs floor", "vs pipe", "vs socket", "vs Python"
        );
        let mut section = "";
        for r in &self.rows {
            if r.section != section {
                section = &r.section;
                let _ = writeln!(out, "{section}");
            }
            let ratio = |v: Option<f64>| v.map_or(String::new(), ratio);
            let _ = writeln!(
                out,
                "  {:<40}{:>22}{:>14}{:>11}{:>11}{:>11}{:>11}",
                r.label,
                r.median
                    .map_or_else(|| "failed".to_owned(), |m| figure(r.unit, m, true)),
                r.p99
                    .map_or_else(|| "-".to_owned(), |p| figure(r.unit, p, false)),
                ratio(r.vs[0]),
                ratio(r.vs[1]),
                ratio(r.vs[2]),
                ratio(r.vs[3]),
            );
        }
        let _ = writeln!(out, "{line}");
        for t in self.targets() {
            let _ = writeln!(out, "{t}");
        }
        let about = "Each figure is the median of the rounds; p99 is the 99th percentile of \
             every operation (streams: of every 64 KiB batch, per message), a slow tail. A ratio \
             is how many times faster the row is than that baseline, measured in the same \
             rounds (vs floor: the fraction of the floor's speed reached). Round trips: each \
             timed alone, clock reading included; spinning = set_spin(u32::MAX) on both sides, \
             parked = set_spin(0). Streams: 1 producer and 1 consumer process, every message \
             checked; Queue and SpscQueue messages are [u8; N]. The floors use no mpshm code: a \
             shared word (spinning, or futex wait/wake), a minimal shared-memory SPSC ring \
             (memcpy), a robust pthread mutex in C.";
        let _ = writeln!(out, "{}", wrap(about, 122));
        for n in &self.notes {
            let _ = writeln!(out, "{}", wrap(&format!("note: {n}"), 122));
        }
        out
    }

    /// The targets, where their rows ran: `target: ... PASS/FAIL`. Against the floor (the
    /// fraction of its speed reached) or against Python (how many times faster).
    fn targets(&self) -> Vec<String> {
        let check = |id: &str, what: &str, against: Against, want: f64| {
            let (column, whose) = match against {
                Against::Floor => (0, "of the floor's speed"),
                Against::Python => (3, "Python's speed"),
            };
            let v = self.row(id).and_then(|r| r.vs[column])?;
            let pass = if v >= want { "PASS" } else { "FAIL" };
            Some(format!(
                "target: {what}: {} {whose}, want ≥ {} ({pass})",
                ratio(v),
                ratio(want)
            ))
        };
        let mut out = Vec::new();
        out.extend(check(
            "rt/queue-parked",
            "Queue round trip, parked (time ≤ 1.2× the futex floor's)",
            Against::Floor,
            1.0 / 1.2,
        ));
        out.extend(check(
            "rt/pipe-parked",
            "Pipe round trip, parked (time ≤ 1.2× the futex floor's)",
            Against::Floor,
            1.0 / 1.2,
        ));
        out.extend(check(
            "stream-64/queue",
            "Queue 64 B stream, 1→1",
            Against::Floor,
            0.5,
        ));
        out.extend(check(
            "counter/value-update",
            "Value::update, 2 processes",
            Against::Floor,
            0.9,
        ));
        out.extend(check(
            "process/spawn",
            "Process start + join, spawn (time ≤ 0.5× Python fork's, its default)",
            Against::Python,
            2.0,
        ));
        out
    }

    pub fn json(&self) -> Value {
        let m = &self.machine;
        let s = &self.settings;
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let (unit, bytes) = match r.unit {
                    Unit::Time => ("seconds per operation", None),
                    Unit::Rate { bytes } => ("operations per second", bytes),
                };
                let value = |per_op: f64| match r.unit {
                    Unit::Time => per_op,
                    Unit::Rate { .. } => 1.0 / per_op,
                };
                json!({
                    "group": r.group,
                    "section": r.section,
                    "id": r.id,
                    "label": r.label,
                    "side": format!("{:?}", r.side).to_lowercase(),
                    "unit": unit,
                    "bytes_per_operation": bytes,
                    "median": r.median.map(value),
                    "p99": r.p99.map(value),
                    "median_seconds_per_operation": r.median,
                    "p99_seconds_per_operation": r.p99,
                    "rounds_seconds_per_operation": r.rounds,
                    "failed": r.failed,
                    "vs": {
                        "floor": r.vs[0],
                        "pipe": r.vs[1],
                        "socket": r.vs[2],
                        "python": r.vs[3],
                    },
                })
            })
            .collect();
        json!({
            "machine": {
                "cores": m.cores,
                "cpu": m.cpu,
                "kernel": m.kernel,
                "load": m.load,
                "death_notice": m.death_notice,
            },
            "settings": {
                "rounds": s.rounds,
                "secs": s.secs,
                "scale": s.scale,
                "sizes": s.sizes,
                "groups": s.groups,
                "pin": s.pin,
            },
            "python": self.python,
            "gauge_ns": self.gauges,
            "gauge_median_ns": median(&self.gauges),
            "seconds": self.elapsed.as_secs_f64(),
            "rows": rows,
            "notes": self.notes,
        })
    }
}

/// `text` broken into lines of at most `width` characters, at spaces.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split_whitespace() {
        let n = word.chars().count();
        if line > 0 && line + 1 + n > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += n;
    }
    out
}

/// What a target's ratio is taken against.
#[derive(Clone, Copy)]
enum Against {
    Floor,
    Python,
}

/// `0.83×`, `13.2×`, `130×`.
fn ratio(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}×")
    } else if v >= 10.0 {
        format!("{v:.1}×")
    } else {
        format!("{v:.2}×")
    }
}

/// A time: `352 ns`, `38.1 µs`, `12.3 ms`, `1.23 s`.
pub fn time(secs: f64) -> String {
    let ns = secs * 1e9;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// A rate: `51.2 M/s`.
fn rate(per_sec: f64) -> String {
    if per_sec >= 1e9 {
        format!("{:.2} G/s", per_sec / 1e9)
    } else if per_sec >= 1e6 {
        format!("{:.2} M/s", per_sec / 1e6)
    } else if per_sec >= 1e3 {
        format!("{:.1} k/s", per_sec / 1e3)
    } else {
        format!("{per_sec:.0} /s")
    }
}

/// Bytes per second: `3.28 GB/s`.
fn bandwidth(bytes_per_sec: f64) -> String {
    if bytes_per_sec >= 1e9 {
        format!("{:.2} GB/s", bytes_per_sec / 1e9)
    } else {
        format!("{:.0} MB/s", bytes_per_sec / 1e6)
    }
}

/// A figure of `per_op` seconds per operation in the row's unit (with the bandwidth, if `wide`).
fn figure(unit: Unit, per_op: f64, wide: bool) -> String {
    match unit {
        Unit::Time => time(per_op),
        Unit::Rate { bytes: Some(b) } if wide => {
            format!("{} {:>9}", rate(1.0 / per_op), bandwidth(b as f64 / per_op))
        }
        Unit::Rate { .. } => rate(1.0 / per_op),
    }
}
