//! `mpshm bench`: mpshm measured beside an OS pipe, a Unix socket, Python's `multiprocessing`
//! and the physical floor, in one run, between real processes.
//!
//! Every case is a function that measures one round of itself ([`Case`]); the run does
//! `--rounds` rounds, and in each round every case runs once, the cases of a section (a table
//! heading: "round trip, 8 B", "stream, 64 B", ...) one after the other, starting each round
//! with the next one in turn. So a burst of load on the machine lands on one round of each case
//! rather than on all the rounds of one, and every ratio is taken between figures measured side
//! by side. A row's figure is the median of its rounds; its tail is the 99th percentile of
//! every operation (or batch) of every round. Between rounds, two threads bounce one cache line
//! (the gauge), which says whether the cores were free.
//!
//! The groups (`--only`): `rt` and `stream` (`transport.rs`), `mpmc` (2→2 streams, not run by
//! default), `counter`, `pool` and `process` (`pool.rs`), `death`, `dict`.

mod counter;
mod death;
mod dict;
mod floor;
mod plot;
mod pool;
mod python;
mod report;
mod shm;
mod stats;
mod transport;

use std::io::IsTerminal;
use std::process::{ExitCode, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mpshm::process::Pool;

use crate::BenchArgs;
use crate::kit::{Child, Res, Spawn};
use stats::Hist;

/// Every group, in the order they run and print.
const GROUPS: [&str; 8] = [
    "rt", "stream", "mpmc", "counter", "pool", "process", "death", "dict",
];
/// The groups run unless `--only` says otherwise.
const DEFAULT_GROUPS: [&str; 7] = [
    "rt", "stream", "counter", "pool", "process", "death", "dict",
];
/// The message sizes of the streams unless `--sizes` says otherwise.
const DEFAULT_SIZES: [usize; 4] = [8, 64, 4096, 1 << 20];
/// Where a child learns the CPU to pin itself to.
const PIN_ENV: &str = "MPSHM_PIN";

/// What a row measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unit {
    /// A time per operation: lower is better.
    Time,
    /// Operations per second (moving `bytes` each, for a stream): higher is better.
    Rate { bytes: Option<u64> },
}

/// Whose figure a row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Mpshm,
    /// The physical floor: the same handoff with no mpshm code.
    Floor,
    /// An OS pipe or socket.
    Os,
    Python,
}

/// The rows (by id) that a row's ratios are taken against.
#[derive(Clone, Debug, Default)]
pub struct Refs {
    pub floor: Option<String>,
    pub pipe: Option<String>,
    pub socket: Option<String>,
    pub python: Option<String>,
}

/// What one case measured in one round.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Seconds per operation: the round's figure.
    pub per_op: f64,
    /// Nanoseconds of each operation (or, for a stream, of each batch, per message).
    pub hist: Hist,
}

impl Sample {
    /// `secs` for `ops` operations, and no tail.
    pub fn mean(secs: f64, ops: u64) -> Sample {
        Sample {
            per_op: secs / ops.max(1) as f64,
            hist: Hist::default(),
        }
    }

    /// Operations timed one by one: the round's figure is their median.
    pub fn timed(hist: Hist) -> Sample {
        Sample {
            per_op: hist.quantile(0.5).unwrap_or(0.0) * 1e-9,
            hist,
        }
    }

    /// Operations of `times` nanoseconds each (exact, for the median), also in `hist`.
    pub fn of_times(times: &[f64], hist: Hist) -> Sample {
        Sample {
            per_op: stats::median(times).unwrap_or(0.0) * 1e-9,
            hist,
        }
    }
}

type Run = Box<dyn FnMut(&mut Ctx) -> Res<Sample>>;

/// One row of the table: how to measure one round of it.
pub struct Case {
    pub group: &'static str,
    pub section: String,
    pub id: String,
    pub label: String,
    pub side: Side,
    pub unit: Unit,
    pub refs: Refs,
    /// The case whose measurements this row shows again (against other baselines); such a row
    /// runs nothing itself.
    pub same_as: Option<String>,
    run: Run,
}

impl Case {
    #[allow(
        clippy::too_many_arguments,
        reason = "a table row: each argument is a column, named at every call"
    )]
    pub fn new(
        group: &'static str,
        section: &str,
        id: &str,
        label: &str,
        side: Side,
        unit: Unit,
        refs: Refs,
        run: impl FnMut(&mut Ctx) -> Res<Sample> + 'static,
    ) -> Case {
        Case {
            group,
            section: section.to_owned(),
            id: id.to_owned(),
            label: label.to_owned(),
            side,
            unit,
            refs,
            same_as: None,
            run: Box::new(run),
        }
    }

    /// A row showing the measurements of the case `of` again, with its own label and
    /// baselines.
    pub fn again(of: &Case, id: &str, label: &str, refs: Refs) -> Case {
        let mut case = Case::new(
            of.group,
            &of.section,
            id,
            label,
            of.side,
            of.unit,
            refs,
            |_| Err("a row that repeats another is not run".into()),
        );
        case.same_as = Some(of.id.clone());
        case
    }

    /// A Python row: `request` with, appended, the seconds per case (`Arg::Secs`) or a count
    /// times `--scale` (`Arg::Count`).
    pub fn python(
        group: &'static str,
        section: &str,
        id: &str,
        label: &str,
        unit: Unit,
        request: String,
        arg: Arg,
    ) -> Case {
        Case::new(
            group,
            section,
            id,
            label,
            Side::Python,
            unit,
            Refs::default(),
            move |ctx| {
                let arg = match arg {
                    Arg::Secs => ctx.secs.to_string(),
                    Arg::Count(n) => ctx.count(n).to_string(),
                };
                ctx.python()?.ask(&format!("{request} {arg}"))
            },
        )
    }
}

/// What a Python row's request ends with.
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    /// The seconds per timed case.
    Secs,
    /// This count times `--scale`.
    Count(u64),
}

/// What the cases share during a run.
pub struct Ctx {
    /// Seconds per timed case per round.
    pub secs: f64,
    scale: f64,
    pin: Vec<usize>,
    /// Children started for the current case (for `--pin`).
    spawned: usize,
    names: u32,
    python: Option<python::Driver>,
    pool: Option<Pool>,
}

impl Ctx {
    /// A segment name unique to this run.
    pub fn name(&mut self) -> String {
        self.names += 1;
        format!("mb-{}-{}", std::process::id(), self.names)
    }

    /// `n` times `--scale`, at least 1.
    pub fn count(&self, n: u64) -> u64 {
        ((n as f64 * self.scale) as u64).max(1)
    }

    /// Starts the child `role` (pinned, with `--pin`, to the next CPU in turn after this
    /// process's).
    pub fn spawn(&mut self, role: String, stdin: Stdio, stdout: Stdio) -> Res<Child> {
        let mut spawn = Spawn::role(&role)?
            .control_on_stderr()
            .stdin(stdin)
            .stdout(stdout);
        if !self.pin.is_empty() {
            self.spawned += 1;
            let cpu = self.pin[self.spawned % self.pin.len()].to_string();
            spawn = spawn.env(PIN_ENV, &cpu);
        }
        Ok(spawn.spawn()?)
    }

    /// The Python side.
    fn python(&mut self) -> Res<&mut python::Driver> {
        self.python.as_mut().ok_or_else(|| "no python3".into())
    }

    /// The pool of the `pool` cases, started at its first use.
    fn pool(&mut self) -> Res<&Pool> {
        if self.pool.is_none() {
            self.pool = Some(pool::start()?);
        }
        Ok(self.pool.as_ref().expect("just made"))
    }
}

/// Pins the calling thread (and the threads it starts from now on) to `cpu`.
fn pin_to(cpu: usize) -> Res<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set)
        .map_err(|e| format!("pinning to CPU {cpu}: {e}"))?;
    Ok(())
}

/// `8`, `4K`, `4KiB`, `1M`, `1MiB` as bytes.
fn parse_size(s: &str) -> Res<usize> {
    let t = s.trim().to_ascii_uppercase();
    let t = t.trim_end_matches("IB").trim_end_matches('B');
    let (num, mult) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 1 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        _ => (t, 1),
    };
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (8, 64, 4K, 1M, ...)"))?;
    let size = n * mult;
    if !transport::TYPED_SIZES.contains(&size) {
        return Err(format!(
            "a stream's messages can be {} bytes, not {size}",
            transport::TYPED_SIZES.map(|s| s.to_string()).join(", ")
        )
        .into());
    }
    Ok(size)
}

/// The run's settings, from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub rounds: usize,
    pub secs: f64,
    pub scale: f64,
    pub sizes: Vec<usize>,
    pub groups: Vec<&'static str>,
    pub pin: Vec<usize>,
    pub python: bool,
}

impl Settings {
    fn new(args: &BenchArgs) -> Res<Settings> {
        let groups = if args.only.is_empty() {
            DEFAULT_GROUPS.to_vec()
        } else {
            let mut groups = Vec::new();
            for g in &args.only {
                let g = GROUPS
                    .iter()
                    .find(|&&known| known == g.trim())
                    .ok_or_else(|| format!("no group {g:?} (groups: {})", GROUPS.join(", ")))?;
                groups.push(*g);
            }
            GROUPS.into_iter().filter(|g| groups.contains(g)).collect()
        };
        let sizes = if args.sizes.is_empty() {
            DEFAULT_SIZES.to_vec()
        } else {
            args.sizes
                .iter()
                .map(|s| parse_size(s))
                .collect::<Res<_>>()?
        };
        let rounds = args.rounds.unwrap_or(if args.quick { 3 } else { 9 });
        let secs = args.secs.unwrap_or(if args.quick { 0.01 } else { 0.06 });
        let scale = args.scale.unwrap_or(if args.quick { 0.05 } else { 1.0 });
        if rounds == 0 || !(secs > 0.0 && secs <= 60.0) || !(scale > 0.0 && scale <= 1000.0) {
            return Err("want --rounds ≥ 1, 0 < --secs ≤ 60, 0 < --scale ≤ 1000".into());
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if let Some(&bad) = args.pin.iter().find(|&&c| c >= 1024) {
            return Err(format!("no CPU {bad} to pin to").into());
        }
        Ok(Settings {
            rounds,
            secs,
            scale,
            sizes,
            groups,
            pin: args.pin.clone(),
            python: !args.no_python && cpus > 0,
        })
    }
}

/// Every case of the groups asked for.
fn plan(s: &Settings, python: bool) -> Vec<Case> {
    let g = &s.groups;
    let mut cases = transport::cases(&s.sizes, g, python);
    if g.contains(&"counter") {
        cases.extend(counter::cases(python));
    }
    cases.extend(pool::cases(g, python));
    if g.contains(&"death") {
        cases.extend(death::cases());
    }
    if g.contains(&"dict") {
        cases.extend(dict::cases(python));
    }
    cases
}

/// What a case measured over the run.
#[derive(Clone)]
pub struct Outcome {
    pub rounds: Vec<f64>,
    pub hist: Hist,
    /// Why it stopped early (a Python case that failed; the run goes on without it).
    pub failed: Option<String>,
}

/// Nanoseconds per round trip of one cache line between two spinning threads of this process
/// (on the first two `--pin` CPUs, if given): the least any spinning handoff costs on this
/// machine right now, and so a gauge of whether the cores were free.
fn gauge(secs: f64, pin: &[usize]) -> f64 {
    #[repr(align(128))]
    struct Line(AtomicU64);
    let line = Line(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let trips = std::thread::scope(|s| {
        s.spawn(|| {
            if let Some(&cpu) = pin.get(1) {
                let _ = pin_to(cpu);
            }
            // Answers each odd value with the next even one, until told to stop (u64::MAX).
            let mut seen = 0;
            loop {
                // Acquire: pairs with the Release store of the other thread.
                let v = line.0.load(Acquire);
                if v == u64::MAX {
                    return;
                }
                if v != seen && v % 2 == 1 {
                    seen = v;
                    line.0.store(v + 1, Release);
                }
                std::hint::spin_loop();
            }
        });
        let mut trips = 0u64;
        // At least one batch: a partner thread that took longer than `secs` to start (a loaded
        // machine) would otherwise leave no trips, and the gauge infinite (`null` in JSON).
        while trips == 0 || !trips.is_multiple_of(1024) || Instant::now() < end {
            let v = 2 * trips + 1;
            // Release/Acquire: the value is all that is exchanged.
            line.0.store(v, Release);
            while line.0.load(Acquire) != v + 1 {
                std::hint::spin_loop();
            }
            trips += 1;
        }
        line.0.store(u64::MAX, Release);
        trips
    });
    start.elapsed().as_nanos() as f64 / trips as f64
}

/// `mpshm bench`.
pub fn run(args: &BenchArgs) -> Res<ExitCode> {
    let settings = Settings::new(args)?;
    if let Some(&cpu) = settings.pin.first() {
        pin_to(cpu)?;
    }
    let mut notes = Vec::new();
    let driver = if settings.python {
        match python::Driver::start() {
            Ok(Some(d)) => Some(d),
            Ok(None) => {
                notes.push("python3 not found: no Python baselines".to_owned());
                None
            }
            Err(e) => {
                notes.push(format!("python3 did not start ({e}): no Python baselines"));
                None
            }
        }
    } else {
        None
    };
    let python_about = driver.as_ref().map(|d| d.about.clone());
    let mut cases = plan(&settings, driver.is_some());
    let mut ctx = Ctx {
        secs: settings.secs,
        scale: settings.scale,
        pin: settings.pin.clone(),
        spawned: 0,
        names: 0,
        python: driver,
        pool: None,
    };
    let mut outcomes: Vec<Outcome> = cases
        .iter()
        .map(|_| Outcome {
            rounds: Vec::new(),
            hist: Hist::default(),
            failed: None,
        })
        .collect();
    // The sections in order, each with its cases' indices.
    let mut sections: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        match sections.iter_mut().find(|(s, _)| *s == c.section) {
            Some((_, v)) => v.push(i),
            None => sections.push((c.section.clone(), vec![i])),
        }
    }
    let progress = if args.json || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(
            Some((settings.rounds * cases.len()) as u64),
            ProgressDrawTarget::stderr(),
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} cases, {elapsed} ({eta} left): {msg}",
            )
            .map_err(|e| e.to_string())?,
        );
        bar
    };
    let started = Instant::now();
    let mut gauges = Vec::new();
    for round in 0..settings.rounds {
        gauges.push(gauge((settings.secs / 2.0).max(0.005), &settings.pin));
        for (_, members) in &sections {
            for k in 0..members.len() {
                let i = members[(round + k) % members.len()];
                let case = &mut cases[i];
                progress.set_message(format!(
                    "round {} of {}: {}",
                    round + 1,
                    settings.rounds,
                    case.id
                ));
                if outcomes[i].failed.is_none() && case.same_as.is_none() {
                    ctx.spawned = 0;
                    match (case.run)(&mut ctx) {
                        Ok(sample) => {
                            outcomes[i].rounds.push(sample.per_op);
                            outcomes[i].hist.merge(&sample.hist);
                        }
                        Err(e) if case.side == Side::Python => {
                            outcomes[i].failed = Some(e.to_string());
                        }
                        Err(e) => {
                            progress.finish_and_clear();
                            return Err(format!("{}: {e}", case.id).into());
                        }
                    }
                }
                progress.inc(1);
            }
        }
    }
    progress.finish_and_clear();
    for (i, case) in cases.iter().enumerate() {
        if let Some(j) = case
            .same_as
            .as_ref()
            .and_then(|of| cases.iter().position(|c| &c.id == of))
        {
            outcomes[i] = outcomes[j].clone();
        }
    }
    let elapsed = started.elapsed();
    drop(ctx);
    let report = report::Report::new(
        &settings,
        &cases,
        &outcomes,
        &gauges,
        python_about,
        notes,
        elapsed,
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        print!("{}", report.table());
    }
    if let Some(path) = &args.markdown {
        report::splice(path, &report.table())?;
    }
    if let Some(path) = &args.plot {
        plot::draw(&report, path)?;
        if !args.json {
            println!("chart: {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the child role `role` (this process was started by [`Ctx::spawn`]), on a thread with
/// room for 1 MiB messages on its stack.
pub fn child(role: &str) -> Res<()> {
    if let Ok(cpu) = std::env::var(PIN_ENV) {
        pin_to(cpu.parse()?)?;
    }
    let role = role.to_owned();
    std::thread::Builder::new()
        .name("child".into())
        .stack_size(64 << 20)
        .spawn(move || {
            let words: Vec<&str> = role.split(' ').collect();
            transport::child(&words)
                .or_else(|| floor::child(&words))
                .or_else(|| counter::child(&words))
                .or_else(|| dict::child(&words))
                .or_else(|| death::child(&words))
                .unwrap_or_else(|| Err(format!("no child role {role:?}").into()))
        })?
        .join()
        .map_err(|_| "the child's thread panicked")?
}
