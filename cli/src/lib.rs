//! `mpshm`: benchmark mpshm against pipe-based IPC, Python's `multiprocessing` and the physical
//! floor (`mpshm bench`), and list, inspect and reclaim the segments on this machine (`mpshm ls`,
//! `inspect`, `rm`, `gc`).
//!
//! The command lives in this library (`src/main.rs` only calls [`main`]), so that its docs are
//! built and checked. The benchmark's child processes are this executable again ([`kit`]):
//! [`main`] hands over to the child's role before it parses any argument.

mod bench;
pub mod kit;
mod segments;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Python's multiprocessing for Rust, on shared memory: measure it, and look after its segments.
#[derive(Debug, Parser)]
#[command(name = "mpshm", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure mpshm beside an OS pipe, a Unix socket, Python's multiprocessing and the
    /// physical floor, all in one interleaved run.
    Bench(BenchArgs),
    /// List the mpshm segments in /dev/shm, who made them and who is attached.
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show everything a segment's header and state say.
    Inspect {
        /// The segment's name (as in `mpshm ls`).
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove segments by name (processes that map one keep their mapping).
    Rm {
        /// The segments' names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Remove a file even if it has no mpshm header.
        #[arg(long)]
        force: bool,
    },
    /// Remove the segments whose creator is dead and that no live process uses.
    Gc {
        /// Say what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Look only at segments whose name starts with this.
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// The options of `mpshm bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A short run (3 rounds, short cases, small counts): checks that everything runs.
    #[arg(long)]
    quick: bool,
    /// Print the results as JSON on stdout instead of the table (no progress bar).
    #[arg(long)]
    json: bool,
    /// Also draw time per message and throughput against message size into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Also write this run's table into this Markdown file, in place of what stands between
    /// the lines `<!-- mpshm bench -->` and `<!-- /mpshm bench -->` (how the README's figures
    /// are made).
    #[arg(long, value_name = "FILE.md")]
    markdown: Option<PathBuf>,
    /// Run only these groups (comma-separated): rt, stream, mpmc, counter, pool, process,
    /// death, dict. Default: all but mpmc.
    #[arg(long, value_delimiter = ',', value_name = "GROUPS")]
    only: Vec<String>,
    /// Message sizes of the streams, comma-separated, each one of 8, 64, 256, 1K, 4K, 16K, 64K,
    /// 256K, 1M. Default: 8,64,4K,1M.
    #[arg(long, value_delimiter = ',', value_name = "SIZES")]
    sizes: Vec<String>,
    /// Rounds: every case runs once per round, the cases taking turns. Default 9 (3 with
    /// --quick).
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds each timed case (round trips, streams) runs per round. Default 0.06 (0.01
    /// with --quick).
    #[arg(long)]
    secs: Option<f64>,
    /// Multiply the counted cases' counts (increments, pool items, processes, kills) by this.
    /// Default 1 (0.05 with --quick).
    #[arg(long)]
    scale: Option<f64>,
    /// Pin the processes to these CPUs (comma-separated): this one to the first, its children
    /// to the others in turn (and the gauge's two threads to the first two).
    #[arg(long, value_delimiter = ',', value_name = "CPUS")]
    pin: Vec<usize>,
    /// Leave out the Python baselines even where python3 is present.
    #[arg(long)]
    no_python: bool,
}

/// The `mpshm` command: runs a child's role if this process is one, or else the subcommand on
/// the command line.
pub fn main() -> ExitCode {
    if let Some(started) = kit::started() {
        return match bench::child(&started.role()) {
            Ok(()) => ExitCode::SUCCESS,
            // The parent reads the `error: ..` line as the child's report.
            Err(e) => kit::fail(e),
        };
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(&args),
        Command::Ls { json } => segments::ls(json),
        Command::Inspect { name, json } => segments::inspect(&name, json),
        Command::Rm { names, force } => segments::rm(&names, force),
        Command::Gc {
            dry_run,
            prefix,
            json,
        } => segments::gc(dry_run, prefix.as_deref(), json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mpshm: {e}");
            ExitCode::FAILURE
        }
    }
}
