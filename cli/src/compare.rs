//! `shmpar compare`: the same kernels on worker processes, rayon threads
//! and one thread, timed in the warm steady state and verified.
//!
//! Per configuration (backend x worker count) and kernel: the input is
//! filled (untimed, by that backend), one warm-up run is timed as the cold
//! run (with the backend's start-up added to `cold_s`) and verified, then
//! `--repeat` runs are timed (by default at least [`AUTO_MIN_RUNS`] and
//! [`AUTO_BUDGET_S`] of them per configuration, at most [`AUTO_MAX_RUNS`]). Elementwise kernels keep mapping their own
//! output (sqrt of sqrt ...), which costs the same; only the first run
//! starts from the known input, so only it is compared to the reference.
//! Reductions are verified on every run. Workloads (`triad`, `matvec`,
//! `kmeans`, `mandelbrot`) run over arrays of their own, filled once, and
//! are verified on every run against a serial computation (see
//! [`crate::workload`]); `mandelbrot` brings `mandelbrot-static`, the same
//! image under the static split, and `vs_static` compares the two.
//!
//! Every backend starts first, the process pools before any rayon thread
//! (a pool forks its workers, and a process must not fork once rayon has
//! started threads); then each kernel's runs alternate between the
//! configurations, round by round. Serial runs once
//! per kernel, on one chunk, and is the baseline of `vs serial`; `vs
//! threads` compares with the threads backend at the same worker count.
//! Both are speed-ups: above 1 means faster than the baseline.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ndarray::Ix1;
use serde::Serialize;
use shmpar::{BackendKind, SharedArray};

use crate::bench::{self, Kernel, Launch, Sample};
use crate::segments::table;
use crate::units::{median, seconds};
use crate::workload::{Prepared, Workload};
use crate::{CliError, CliResult, CompareArgs, FloatType, out};

/// Without `--repeat`: the fewest timed runs per configuration and kernel.
pub(crate) const AUTO_MIN_RUNS: usize = 10;
/// Without `--repeat`: the most timed runs per configuration and kernel.
pub(crate) const AUTO_MAX_RUNS: usize = 200;
/// Without `--repeat`: the timed seconds each configuration gathers per
/// kernel (within the run counts above).
pub(crate) const AUTO_BUDGET_S: f64 = 0.5;

/// How many timed runs a kernel gets per configuration.
#[derive(Clone, Copy, Debug)]
enum Runs {
    /// Exactly this many (`--repeat N`).
    Exactly(usize),
    /// Until every configuration has [`AUTO_MIN_RUNS`] and
    /// [`AUTO_BUDGET_S`], at most [`AUTO_MAX_RUNS`].
    Auto,
}

impl Runs {
    fn most(self) -> usize {
        match self {
            Runs::Exactly(n) => n,
            Runs::Auto => AUTO_MAX_RUNS,
        }
    }

    /// Whether configurations that have timed these runs (the warm-up
    /// excluded) have enough.
    fn enough<'a>(self, mut timed: impl Iterator<Item = &'a [f64]>) -> bool {
        match self {
            Runs::Exactly(n) => timed.all(|t| t.len() >= n),
            Runs::Auto => timed.all(|t| {
                t.len() >= AUTO_MAX_RUNS
                    || (t.len() >= AUTO_MIN_RUNS && t.iter().sum::<f64>() >= AUTO_BUDGET_S)
            }),
        }
    }
}
use shmpar_kernels::catalog::ReductionValue;

/// One kernel on one backend with one worker count: what `--json` writes.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Record {
    /// Kernel spec.
    pub(crate) kernel: String,
    /// `processes`, `threads` or `serial`.
    pub(crate) backend: String,
    /// Workers (chunks).
    pub(crate) workers: usize,
    /// Elements.
    pub(crate) len: usize,
    /// `f32` or `f64`.
    pub(crate) dtype: String,
    /// Timed runs.
    pub(crate) repeat: usize,
    /// Median of the timed runs, seconds.
    pub(crate) median_s: f64,
    /// Fastest timed run.
    pub(crate) min_s: f64,
    /// Slowest timed run.
    pub(crate) max_s: f64,
    /// Backend start-up (pool fork or rayon threads) plus the first run.
    pub(crate) cold_s: f64,
    /// Backend start-up alone.
    pub(crate) start_s: f64,
    /// Bytes moved per run / median: 2 x the array for in-place maps, 1 x
    /// for reductions, the arrays each job reads and writes for workloads;
    /// none for the Mandelbrot set, which is bound by arithmetic.
    pub(crate) gb_per_s: Option<f64>,
    /// Serial median / this median.
    pub(crate) vs_serial: Option<f64>,
    /// Threads median at the same worker count / this median.
    pub(crate) vs_threads: Option<f64>,
    /// For `mandelbrot` (the dynamic schedule) on processes and threads:
    /// the `mandelbrot-static` median on the same backend and worker count
    /// / this median.
    pub(crate) vs_static: Option<f64>,
    /// What a workload's run does (none for catalog kernels, whose
    /// problem is `len` and `dtype`).
    pub(crate) problem: Option<String>,
    /// Whether the result matched the serial reference.
    pub(crate) verified: bool,
    /// Why it did not, if it did not.
    pub(crate) mismatch: Option<String>,
    /// The reduction's value (none for elementwise kernels).
    pub(crate) result: Option<String>,
    /// Every timed run, seconds.
    pub(crate) times_s: Vec<f64>,
    /// How process workers started (`fork`/`spawn`), for the process backend.
    pub(crate) start: Option<String>,
    /// SIMD level of the kernels.
    pub(crate) simd: String,
}

/// The kernels of `--kernels`, each once; `mandelbrot` (the dynamic
/// schedule) brings `mandelbrot-static` right after it, for the ratio.
fn parse_kernels(specs: &[String]) -> CliResult<Vec<Kernel>> {
    let mut kernels: Vec<Kernel> = Vec::new();
    let add = |k: Kernel, kernels: &mut Vec<Kernel>| {
        if !kernels.iter().any(|o| o.spec() == k.spec()) {
            kernels.push(k);
        }
    };
    for spec in specs {
        let kernel = Kernel::parse(spec)?;
        let twin = kernel.workload().and_then(|w| w.static_twin());
        add(kernel, &mut kernels);
        if let Some(twin) = twin {
            add(Kernel::Workload(twin), &mut kernels);
        }
    }
    if kernels.is_empty() {
        return Err(CliError::msg("--kernels names no kernel"));
    }
    Ok(kernels)
}

/// `shmpar compare`.
pub(crate) fn compare(args: &CompareArgs) -> CliResult {
    if let (Some(json), Some(plot)) = (&args.json, &args.plot) {
        let same = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        if json == plot || same(json) == same(plot) {
            return Err(CliError::msg(format!(
                "--json and --plot both name {}: the chart would overwrite the records",
                json.display()
            )));
        }
    }
    let kernels = parse_kernels(&args.kernels)?;
    let catalog = kernels.iter().any(|k| k.workload().is_none());
    let workloads: Vec<Workload> = kernels.iter().filter_map(Kernel::workload).collect();
    if !workloads.is_empty() && args.dtype != FloatType::F64 {
        return Err(CliError::msg(
            "--dtype f32 applies to catalog kernels only; the workloads run on their own arrays of \
             fixed types: compare them in a run without --dtype",
        ));
    }
    // Every worker needs a row of every job.
    let rows = workloads
        .iter()
        .map(Workload::rows)
        .chain(catalog.then_some(args.len))
        .min()
        .unwrap_or(args.len);
    let mut workers: Vec<usize> = Vec::new();
    for &w in &args.workers {
        bench::check_workers(w, rows)?;
        if !workers.contains(&w) {
            workers.push(w);
        }
    }
    if matches!(args.repeat, Some(n) if n == 0 || n > 10_000) {
        return Err(CliError::msg("--repeat must be between 1 and 10000"));
    }
    let asked: Vec<BackendKind> = args.backends.iter().map(|b| b.kind()).collect();
    let backends: Vec<BackendKind> = BackendKind::ALL
        .into_iter()
        .filter(|k| asked.contains(k))
        .collect();
    if backends.is_empty() {
        return Err(CliError::msg("--backends names no backend"));
    }
    let partial_bytes = kernels
        .iter()
        .map(Kernel::partial_bytes)
        .max()
        .unwrap_or(shmpar::DEFAULT_PARTIAL_BYTES);
    let mut pool_bytes = 0;
    if backends.contains(&BackendKind::Processes) {
        for kernel in &kernels {
            kernel.check_for_processes()?;
        }
        // One pool at a time: the largest holds the most.
        let most = workers.iter().copied().max().unwrap_or(1);
        pool_bytes = bench::pool_bytes(most, partial_bytes);
    }
    if workloads.is_empty() {
        bench::check_memory(args.len, args.dtype, pool_bytes)?;
    } else {
        let mut need: u128 = workloads
            .iter()
            .map(|w| u128::from(w.shm_bytes().unwrap_or(u64::MAX)))
            .sum();
        let mut what = workloads
            .iter()
            .map(Workload::spec)
            .collect::<Vec<_>>()
            .join(", ");
        if catalog {
            need += args.len as u128 * args.dtype.size() as u128;
            what = format!("--len {} {} elements and {what}", args.len, args.dtype.name());
        }
        bench::check_memory_for(&what, need, pool_bytes, "smaller sizes")?;
    }
    let configs: Vec<(BackendKind, usize)> = backends
        .iter()
        .flat_map(|&kind| match kind {
            BackendKind::Serial => vec![(kind, 1)],
            _ => workers.iter().map(|&w| (kind, w)).collect(),
        })
        .collect();
    let launch = Launch {
        start: args.start,
        partial_bytes,
        timeout: args.timeout,
    };
    let mut records = match args.dtype {
        FloatType::F32 => measure::<f32>(args, &kernels, &configs, launch)?,
        FloatType::F64 => measure::<f64>(args, &kernels, &configs, launch)?,
    };
    add_ratios(&mut records);
    // Measured kernel by kernel, the backends taking turns run by run; shown kernel by kernel.
    let order: Vec<String> = kernels.iter().map(Kernel::spec).collect();
    records.sort_by_key(|r| order.iter().position(|k| *k == r.kernel));
    let problem = if catalog {
        bench::describe(args.len, args.dtype)
    } else {
        format!("{} workload(s)", workloads.len())
    };
    let runs = match args.repeat {
        Some(n) => format!("{n} timed run(s)"),
        None => format!("{AUTO_MIN_RUNS} to {AUTO_MAX_RUNS} timed runs (until {AUTO_BUDGET_S} s of them)"),
    };
    let mut text = format!(
        "compare: {problem}, {runs} after 1 warm-up per configuration, {} CPU(s), SIMD {}\n",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        shmpar_kernels::simd::simd_level().name(),
    );
    for w in &workloads {
        text.push_str(&format!("  {}: {}\n", w.spec(), w.describe()));
    }
    if let Some(timeout) = args.timeout {
        text.push_str(&format!(
            "  --timeout {} on every job of the process pools\n",
            seconds(timeout.as_secs_f64())
        ));
    }
    text.push('\n');
    text.push_str(&render(&records));
    for kernel in &kernels {
        let spec = kernel.spec();
        if let Some(r) = records.iter().find(|r| r.kernel == spec && r.result.is_some()) {
            text.push_str(&format!(
                "{spec} = {} on every backend\n",
                r.result.as_deref().unwrap_or("")
            ));
        }
    }
    if args.repeat.is_none() {
        let counts: Vec<String> = kernels
            .iter()
            .filter_map(|k| {
                let spec = k.spec();
                let r = records.iter().find(|r| r.kernel == spec)?;
                Some(format!("{spec} {}", r.repeat))
            })
            .collect();
        text.push_str(&format!("timed runs per configuration: {}\n", counts.join(", ")));
    }
    for r in records.iter().filter(|r| r.vs_static.is_some()) {
        text.push_str(&format!(
            "{} on {} x {}: dynamic schedule {:.2}x the static split\n",
            r.kernel,
            r.backend,
            r.workers,
            r.vs_static.unwrap_or(f64::NAN)
        ));
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&records).map_err(|e| CliError::msg(e.to_string()))?;
        std::fs::write(path, json + "\n")
            .map_err(|e| CliError::msg(format!("cannot write {}: {e}", path.display())))?;
        text.push_str(&format!("wrote {}\n", path.display()));
    }
    if let Some(path) = &args.plot {
        super::plot::svg(
            path,
            &records,
            &kernels.iter().map(Kernel::spec).collect::<Vec<_>>(),
        )?;
        text.push_str(&format!("wrote {}\n", path.display()));
    }
    out(&text)?;
    let failed: Vec<String> = records
        .iter()
        .filter(|r| !r.verified)
        .map(|r| {
            format!(
                "{} on {} x {}: {}",
                r.kernel,
                r.backend,
                r.workers,
                r.mismatch.as_deref().unwrap_or("")
            )
        })
        .collect();
    match failed.len() {
        0 => Ok(()),
        n => Err(CliError::msg(format!(
            "{n} configuration(s) did not verify; first: {}",
            failed[0]
        ))),
    }
}

/// Runs every configuration and kernel: the catalog kernels over one array
/// of `T` (created only if there is one), each workload over its own.
fn measure<T: Sample>(
    args: &CompareArgs,
    kernels: &[Kernel],
    configs: &[(BackendKind, usize)],
    launch: Launch,
) -> CliResult<Vec<Record>> {
    let mut a: Option<SharedArray<T, Ix1>> = if kernels.iter().any(|k| k.workload().is_none()) {
        Some(bench::create_array(args.len)?)
    } else {
        None
    };
    let mut prepared: Vec<Option<Prepared>> = kernels
        .iter()
        .map(|k| k.workload().map(|w| w.prepare()).transpose())
        .collect::<CliResult<_>>()?;
    let runs = args.repeat.map_or(Runs::Auto, Runs::Exactly);
    // Auto runs may stop early: the bar then skips the runs not needed.
    let steps = (configs.len() * kernels.len() * (runs.most() + 1)) as u64;
    // No steady tick: a ticking thread would forbid the pools' forks.
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template("{bar:32} {pos}/{len} {msg}") {
        bar.set_style(style);
    }
    let mut references: Vec<Option<ReductionValue>> = vec![None; kernels.len()];
    let simd = shmpar_kernels::simd::simd_level().name().to_string();
    // Every backend is started first (the process pools before any rayon
    // thread: a pool forks), then each kernel's runs alternate between the
    // backends, round by round, so that a change in the machine's speed
    // while a kernel is measured lands on every backend alike.
    let mut started = Vec::with_capacity(configs.len());
    for &(kind, workers) in configs {
        bar.set_message(format!("{kind} x {workers}: starting"));
        let (backend, start_s) = bench::start_backend(kind, workers, launch)?;
        started.push((kind, workers, backend, start_s));
    }
    // Per kernel and configuration: times, verdict, result.
    struct Tally {
        times: Vec<f64>,
        verdict: Result<(), String>,
        result: Option<ReductionValue>,
    }
    let mut tallies: Vec<Vec<Tally>> = Vec::with_capacity(kernels.len());
    for (ki, kernel) in kernels.iter().enumerate() {
        let mut row: Vec<Tally> = started
            .iter()
            .map(|_| Tally {
                times: Vec::with_capacity(runs.most().min(AUTO_MAX_RUNS) + 1),
                verdict: Ok(()),
                result: None,
            })
            .collect();
        for run in 0..=runs.most() {
            if run > 0 && runs.enough(row.iter().map(|t| &t.times[1..])) {
                bar.inc(((runs.most() + 1 - run) * started.len()) as u64);
                break;
            }
            for (ci, (kind, workers, backend, _)) in started.iter().enumerate() {
                let what = format!("{} on {kind} x {workers}", kernel.spec());
                bar.set_message(what.clone());
                let tally = &mut row[ci];
                match (&mut prepared[ki], &mut a) {
                    (Some(work), _) => {
                        work.reset(run == 0);
                        let t = Instant::now();
                        work.run(backend).map_err(|e| CliError::from(e).context(&what))?;
                        tally.times.push(t.elapsed().as_secs_f64());
                        if tally.verdict.is_ok() {
                            tally.verdict = work.verify(*workers);
                        }
                    }
                    (None, Some(a)) => {
                        if run == 0 {
                            // Untimed: this backend's first run starts from
                            // the known input, as a single-backend run would.
                            bench::fill(backend, a).map_err(|e| e.context(&what))?;
                            if let Kernel::Reduce(r) = kernel {
                                if references[ki].is_none() {
                                    references[ki] = Some(r.reference(a.view()));
                                }
                            }
                        }
                        let t = Instant::now();
                        match kernel {
                            Kernel::Map(k) => bench::apply(backend, a, *k),
                            Kernel::Reduce(r) => bench::reduce(backend, a, r).map(|v| tally.result = Some(v)),
                            Kernel::Workload(_) => Ok(()),
                        }
                        .map_err(|e| e.context(&what))?;
                        tally.times.push(t.elapsed().as_secs_f64());
                        match (kernel, &tally.result, &references[ki]) {
                            (Kernel::Map(k), _, _) if run == 0 => tally.verdict = bench::verify_map(a, k),
                            (Kernel::Reduce(_), Some(got), Some(want)) if tally.verdict.is_ok() => {
                                tally.verdict = bench::verify_reduce(got, want);
                            }
                            _ => {}
                        }
                    }
                    (None, None) => return Err(CliError::msg(format!("{what}: no array to run on"))),
                }
                bar.inc(1);
            }
        }
        tallies.push(row);
    }
    let mut records = Vec::new();
    for (ci, (kind, workers, _, start_s)) in started.iter().enumerate() {
        for (ki, kernel) in kernels.iter().enumerate() {
            let tally = &mut tallies[ki][ci];
            let mut times = std::mem::take(&mut tally.times);
            let cold = times.remove(0);
            let med = median(&times);
            let repeat = times.len();
            let workload = kernel.workload();
            let verdict = std::mem::replace(&mut tally.verdict, Ok(()));
            records.push(Record {
                kernel: kernel.spec(),
                backend: kind.name().to_string(),
                workers: *workers,
                len: workload.map_or(args.len, |w| w.len()),
                dtype: workload.map_or(args.dtype.name(), |w| w.dtype()).to_string(),
                repeat,
                median_s: med,
                min_s: times.iter().copied().fold(f64::INFINITY, f64::min),
                max_s: times.iter().copied().fold(0.0, f64::max),
                cold_s: start_s + cold,
                start_s: *start_s,
                gb_per_s: kernel.bytes_moved(args.len, args.dtype).map(|b| b / med / 1e9),
                vs_serial: None,
                vs_threads: None,
                vs_static: None,
                problem: workload.map(|w| w.describe()),
                verified: verdict.is_ok(),
                mismatch: verdict.err(),
                result: tally.result.as_ref().map(bench::short_value),
                times_s: times,
                start: (*kind == BackendKind::Processes).then(|| args.start.name().to_string()),
                simd: simd.clone(),
            });
        }
    }
    bar.finish_and_clear();
    Ok(records)
}

/// Fills in `vs_serial` and `vs_threads`.
fn add_ratios(records: &mut [Record]) {
    let snapshot = records.to_vec();
    for r in records.iter_mut() {
        let find = |backend: &str, workers: Option<usize>| {
            snapshot
                .iter()
                .find(|o| {
                    o.kernel == r.kernel && o.backend == backend && workers.is_none_or(|w| o.workers == w)
                })
                .map(|o| o.median_s / r.median_s)
        };
        r.vs_serial = find("serial", None);
        r.vs_threads = find("threads", Some(r.workers));
        // One thread runs the same chunks in the same order under either
        // schedule: serial has no dynamic-against-static ratio to show.
        let twin = Kernel::parse(&r.kernel)
            .ok()
            .and_then(|k| k.workload())
            .and_then(|w| w.static_twin())
            .filter(|_| r.backend != "serial");
        r.vs_static = twin.and_then(|twin| {
            let spec = twin.spec();
            snapshot
                .iter()
                .find(|o| o.kernel == spec && o.backend == r.backend && o.workers == r.workers)
                .map(|o| o.median_s / r.median_s)
        });
    }
}

/// The table `compare` prints.
fn render(records: &[Record]) -> String {
    let ratio = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |x| format!("{x:.2}x"));
    let rows: Vec<[String; 11]> = records
        .iter()
        .map(|r| {
            [
                r.kernel.clone(),
                r.backend.clone(),
                r.workers.to_string(),
                seconds(r.median_s),
                seconds(r.min_s),
                seconds(r.max_s),
                r.gb_per_s.map_or_else(|| "-".to_string(), |g| format!("{g:.2}")),
                ratio(r.vs_serial),
                ratio(r.vs_threads),
                seconds(r.cold_s),
                if r.verified { "yes" } else { "NO" }.to_string(),
            ]
        })
        .collect();
    let header = [
        "kernel",
        "backend",
        "workers",
        "median",
        "min",
        "max",
        "GB/s",
        "vs serial",
        "vs threads",
        "cold",
        "verified",
    ]
    .map(String::from);
    let right = [
        false, false, true, true, true, true, true, true, true, true, false,
    ];
    table(&header, &rows, &right)
}

#[cfg(test)]
mod tests {
    use super::{AUTO_MAX_RUNS, AUTO_MIN_RUNS, Runs};

    fn enough(runs: Runs, configs: &[Vec<f64>]) -> bool {
        runs.enough(configs.iter().map(Vec::as_slice))
    }

    #[test]
    fn exactly_n_runs() {
        assert!(!enough(Runs::Exactly(3), &[vec![1.0; 3], vec![1.0; 2]]));
        assert!(enough(Runs::Exactly(3), &[vec![1.0; 3], vec![1.0; 3]]));
    }

    #[test]
    fn auto_runs_until_every_configuration_has_its_minimum_and_budget() {
        // Slow kernels: the minimum count decides.
        assert!(!enough(Runs::Auto, &[vec![1.0; AUTO_MIN_RUNS - 1]]));
        assert!(enough(Runs::Auto, &[vec![1.0; AUTO_MIN_RUNS]]));
        // Fast kernels: the time budget decides, for every configuration.
        let fast = vec![0.001; AUTO_MIN_RUNS];
        let enough_time = vec![0.001; 500];
        assert!(!enough(Runs::Auto, std::slice::from_ref(&fast)));
        assert!(!enough(
            Runs::Auto,
            &[enough_time[..AUTO_MAX_RUNS - 1].to_vec(), fast]
        ));
        // The cap ends a configuration that would need more.
        assert!(enough(Runs::Auto, &[enough_time[..AUTO_MAX_RUNS].to_vec()]));
        assert!(enough(Runs::Auto, &[vec![0.01; 50]]));
    }
}
