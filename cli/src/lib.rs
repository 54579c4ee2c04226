//! # shmpar-cli
//!
//! The `shmpar` command (`ls | gc | inspect | run | compare`, see
//! `docs/cli.md`), running kernels by name from `shmpar_kernels::catalog`.
//!
//! The command line: argument parsing, one error type, output.
//!
//! Every failure ends as one line on stderr, `shmpar: error: ...`, and a
//! non-zero exit status (1 for errors, 2 for malformed arguments); nothing
//! here panics on bad input. Everything a command creates is owned by a
//! value that unlinks it on drop, and `main` exits only after `run`
//! returned, so an error leaves `/dev/shm` as it was.

mod bench;
mod compare;
mod os;
mod plot;
mod run;
mod segments;
mod units;
mod workload;

use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use shmpar::{BackendKind, Start};

/// List, inspect and clean up shared arrays in /dev/shm; run and compare
/// kernels on worker processes, rayon threads and a single thread.
#[derive(Parser, Debug)]
#[command(name = "shmpar", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List shmpar segments in /dev/shm, with their creator and whether any
    /// process holds them (maps them now).
    Ls {
        /// Print one JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove segments no process holds (never one that a process maps,
    /// creator or attacher).
    Gc {
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Also remove segments their creator persisted on purpose
        /// (`SegmentOptions::persist`), which gc otherwise keeps.
        #[arg(long)]
        include_persistent: bool,
    },
    /// Print a segment's header and summary statistics of its data.
    Inspect {
        /// The segment's name (`shmpar_...`, also accepted with `/` or `/dev/shm/` before it).
        name: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run one kernel over a fresh array and verify the result.
    Run(RunArgs),
    /// Time kernels on each backend and worker count; verify every result.
    Compare(CompareArgs),
}

/// Element types the benchmarks run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FloatType {
    /// 32-bit floats.
    F32,
    /// 64-bit floats.
    F64,
}

impl FloatType {
    fn name(self) -> &'static str {
        match self {
            FloatType::F32 => "f32",
            FloatType::F64 => "f64",
        }
    }

    fn size(self) -> usize {
        match self {
            FloatType::F32 => 4,
            FloatType::F64 => 8,
        }
    }
}

/// Where kernels run: the command line's names for [`BackendKind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    /// Worker processes of a shmpar pool, over shared memory.
    Processes,
    /// A rayon pool of threads, over the same memory.
    Threads,
    /// One thread, one chunk: the baseline.
    Serial,
}

impl BackendArg {
    fn kind(self) -> BackendKind {
        match self {
            BackendArg::Processes => BackendKind::Processes,
            BackendArg::Threads => BackendKind::Threads,
            BackendArg::Serial => BackendKind::Serial,
        }
    }
}

/// How process-pool workers start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StartMethod {
    /// fork() the coordinator (default).
    Fork,
    /// Start new processes of this program; they run the command's
    /// registered kernels.
    Spawn,
}

impl StartMethod {
    fn start(self) -> Start {
        match self {
            StartMethod::Fork => Start::Fork,
            StartMethod::Spawn => Start::Spawn,
        }
    }

    fn name(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
        }
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Kernel spec: elementwise (sqrt, abs, sqrt_abs, exp, ln, scale:K, offset:K,
    /// clamp:LO:HI, fill:V), reduction (sum, mean, min, max, min_max, var:DDOF,
    /// std:DDOF, norm, histogram:LO:HI:BINS) or workload over several arrays
    /// (triad[:N], matvec[:N], kmeans[:N[:ITERATIONS]],
    /// mandelbrot[:WIDTH:HEIGHT[:MAX_ITER]], mandelbrot-static[:...]).
    kernel: String,
    /// Number of elements of a catalog kernel's array (`20000000`, `2e7` and
    /// `20_000_000` all work); workloads take their size from the spec.
    #[arg(long, default_value = "1e7", value_parser = units::parse_len, allow_negative_numbers = true)]
    len: usize,
    /// Element type.
    #[arg(long, value_enum, default_value_t = FloatType::F64)]
    dtype: FloatType,
    /// Number of workers (chunks) of processes and threads; default: the
    /// CPUs this process may use. Serial always runs on 1 worker.
    #[arg(long, allow_negative_numbers = true)]
    workers: Option<usize>,
    /// Where the kernel runs.
    #[arg(long, value_enum, default_value_t = BackendArg::Processes)]
    backend: BackendArg,
    /// How process workers start.
    #[arg(long, value_enum, default_value_t = StartMethod::Fork)]
    start: StartMethod,
    /// How many times to run the kernel (each run is timed).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Stop a job of the process pool that runs longer than SECS (`0.5`,
    /// `10`): the command then fails, naming the workers that had not
    /// finished, which are killed.
    #[arg(long, value_name = "SECS", value_parser = units::parse_timeout)]
    timeout: Option<Duration>,
    /// Print every bin of a histogram (by default at most 16 bins are
    /// shown, with the totals).
    #[arg(long)]
    all_bins: bool,
    /// Huge pages for the arrays: `off` (4 KiB pages), `try` (huge pages
    /// where the system offers them, else 4 KiB) or `on` (fail, saying what
    /// to configure, where it offers none). See docs/huge-pages.md.
    #[arg(long, value_name = "MODE", default_value = "off", value_parser = ["off", "try", "on"])]
    huge_pages: String,
}

#[derive(Args, Debug)]
struct CompareArgs {
    /// Kernel specs, comma-separated (see `shmpar run --help`); `mandelbrot`
    /// also runs `mandelbrot-static`, the same image under the static split.
    #[arg(long, value_delimiter = ',', default_value = "sqrt,mean")]
    kernels: Vec<String>,
    /// Number of elements of the catalog kernels' array (`2e7` works);
    /// workloads take their size from the spec.
    #[arg(long, default_value = "2e7", value_parser = units::parse_len, allow_negative_numbers = true)]
    len: usize,
    /// Element type.
    #[arg(long, value_enum, default_value_t = FloatType::F64)]
    dtype: FloatType,
    /// Backends, comma-separated; they always run in the order processes,
    /// threads, serial (process pools must fork before any thread exists).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "processes,threads,serial"
    )]
    backends: Vec<BackendArg>,
    /// Worker counts, comma-separated (serial always runs once, on 1 worker).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,2",
        allow_negative_numbers = true
    )]
    workers: Vec<usize>,
    /// Timed runs per configuration, after one untimed warm-up run. By
    /// default each kernel runs until every configuration has at least 10
    /// timed runs and 0.5 s of them (at most 200): short kernels get more
    /// runs, so a drift of the machine's speed weighs less in the median.
    #[arg(long)]
    repeat: Option<usize>,
    /// How process workers start.
    #[arg(long, value_enum, default_value_t = StartMethod::Fork)]
    start: StartMethod,
    /// Stop a job of a process pool that runs longer than SECS: the command
    /// then fails, naming the workers that had not finished (threads and
    /// serial runs cannot be stopped and have no deadline).
    #[arg(long, value_name = "SECS", value_parser = units::parse_timeout)]
    timeout: Option<Duration>,
    /// Huge pages for the arrays: `off` (4 KiB pages), `try` (huge pages
    /// where the system offers them, else 4 KiB) or `on` (fail, saying what
    /// to configure, where it offers none). See docs/huge-pages.md.
    #[arg(long, value_name = "MODE", default_value = "off", value_parser = ["off", "try", "on"])]
    huge_pages: String,
    /// Also write one JSON record per kernel x backend x workers to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also draw GB/s by backend and worker count, per kernel, as SVG to FILE.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
}

/// A failure of a command: the one line printed after `shmpar: error: `.
#[derive(Debug)]
pub(crate) enum CliError {
    /// A message for the user.
    Message(String),
    /// Stdout was closed (`shmpar ls | head`): stop quietly.
    Quiet,
}

impl CliError {
    pub(crate) fn msg(text: impl Into<String>) -> CliError {
        CliError::Message(text.into())
    }

    /// Says where the failure happened: `sqrt on processes x 2: ...`.
    pub(crate) fn context(self, what: &str) -> CliError {
        match self {
            CliError::Message(text) => CliError::Message(format!("{what}: {text}")),
            CliError::Quiet => CliError::Quiet,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Message(text) => f.write_str(text),
            CliError::Quiet => f.write_str("stdout closed"),
        }
    }
}

impl From<shmpar::Error> for CliError {
    fn from(e: shmpar::Error) -> CliError {
        match e {
            // The runtime's words name the setting (`job_timeout`); the
            // command's name the flag and the workers.
            // What became of the pool is left out: the command ends with it.
            shmpar::Error::JobTimeout {
                elapsed, unfinished, ..
            } => {
                let ranks: Vec<String> = unfinished.iter().map(usize::to_string).collect();
                let workers = match ranks.len() {
                    1 => format!("worker {} had not finished and was killed", ranks[0]),
                    _ => format!("workers {} had not finished and were killed", ranks.join(", ")),
                };
                CliError::Message(format!(
                    "the job ran past --timeout and was stopped after {}: {workers}",
                    units::seconds(elapsed.as_secs_f64())
                ))
            }
            e => CliError::Message(e.to_string()),
        }
    }
}

impl From<shmpar::core::Error> for CliError {
    fn from(e: shmpar::core::Error) -> CliError {
        CliError::Message(e.to_string())
    }
}

impl From<shmpar_kernels::Error> for CliError {
    fn from(e: shmpar_kernels::Error) -> CliError {
        CliError::Message(e.to_string())
    }
}

pub(crate) type CliResult<T = ()> = Result<T, CliError>;

/// Writes to stdout; a closed stdout becomes [`CliError::Quiet`].
pub(crate) fn out(text: &str) -> CliResult {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => CliError::Quiet,
            _ => CliError::msg(format!("cannot write to stdout: {e}")),
        })
}

/// Applies `--huge-pages MODE` to the arrays the command creates.
fn huge_pages(mode: &str) -> CliResult {
    let mode: shmpar::HugePages = mode
        .parse()
        .map_err(|e: shmpar::core::Error| CliError::msg(e.to_string()))?;
    bench::set_huge_pages(mode);
    Ok(())
}

/// Runs the command line and returns the process exit status.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let result = match cli.command {
        Command::Ls { json } => segments::ls(json),
        Command::Gc {
            dry_run,
            include_persistent,
        } => segments::gc(dry_run, include_persistent),
        Command::Inspect { name, json } => segments::inspect(&name, json),
        Command::Run(args) => huge_pages(&args.huge_pages).and_then(|()| run::run(&args)),
        Command::Compare(args) => huge_pages(&args.huge_pages).and_then(|()| compare::compare(&args)),
    };
    match result {
        Ok(()) | Err(CliError::Quiet) => 0,
        Err(CliError::Message(text)) => {
            let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let _ = writeln!(io::stderr(), "shmpar: error: {line}");
            1
        }
    }
}

/// Help and version go to stdout as clap prints them; a malformed command
/// line becomes one line on stderr and status 2.
fn usage_error(e: &clap::Error) -> i32 {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            2
        } else {
            0
        };
    }
    // The first paragraph of clap's message, on one line.
    let rendered = e.render().to_string();
    let paragraph: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect();
    let text = paragraph.join(" ");
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    let text = if text.is_empty() {
        "invalid arguments"
    } else {
        text
    };
    let _ = writeln!(io::stderr(), "shmpar: error: {text} (see shmpar --help)");
    2
}
