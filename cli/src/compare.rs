//! `shmpar compare`: the same kernels on worker processes, rayon threads
//! and one thread, timed in the warm steady state and verified.
//!
//! Per configuration (backend x worker count) and kernel: the input is
//! filled (untimed, by that backend), one warm-up run is timed as the cold
//! run (with the backend's start-up added to `cold_s`) and verified, then
//! `--repeat` runs are timed. Elementwise kernels keep mapping their own
//! output (sqrt of sqrt ...), which costs the same; only the first run
//! starts from the known input, so only it is compared to the reference.
//! Reductions are verified on every run.
//!
//! All process configurations run first: a pool forks its workers, and a
//! process must not fork once rayon has started threads. Serial runs once
//! per kernel, on one chunk, and is the baseline of `vs serial`; `vs
//! threads` compares with the threads backend at the same worker count.
//! Both are speed-ups: above 1 means faster than the baseline.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ndarray::Ix1;
use serde::Serialize;
use shmpar::{BackendKind, SharedArray};

use crate::bench::{self, Kernel, Sample};
use crate::catalog::ReductionValue;
use crate::segments::table;
use crate::units::{median, seconds};
use crate::{CliError, CliResult, CompareArgs, FloatType, out};

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
    /// Bytes moved per run / median: 2 x the array for in-place maps, 1 x for reductions.
    pub(crate) gb_per_s: f64,
    /// Serial median / this median.
    pub(crate) vs_serial: Option<f64>,
    /// Threads median at the same worker count / this median.
    pub(crate) vs_threads: Option<f64>,
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

/// `shmpar compare`.
pub(crate) fn compare(args: &CompareArgs) -> CliResult {
    let kernels = args
        .kernels
        .iter()
        .map(|s| Kernel::parse(s))
        .collect::<CliResult<Vec<Kernel>>>()?;
    if kernels.is_empty() {
        return Err(CliError::msg("--kernels names no kernel"));
    }
    let mut workers: Vec<usize> = Vec::new();
    for &w in &args.workers {
        bench::check_workers(w, args.len)?;
        if !workers.contains(&w) {
            workers.push(w);
        }
    }
    if args.repeat == 0 || args.repeat > 10_000 {
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
    bench::check_memory(args.len, args.dtype, pool_bytes)?;
    let configs: Vec<(BackendKind, usize)> = backends
        .iter()
        .flat_map(|&kind| match kind {
            BackendKind::Serial => vec![(kind, 1)],
            _ => workers.iter().map(|&w| (kind, w)).collect(),
        })
        .collect();
    let mut records = match args.dtype {
        FloatType::F32 => measure::<f32>(args, &kernels, &configs, partial_bytes)?,
        FloatType::F64 => measure::<f64>(args, &kernels, &configs, partial_bytes)?,
    };
    add_ratios(&mut records);
    // Measured backend-major (processes first); shown kernel by kernel.
    let order: Vec<String> = kernels.iter().map(Kernel::spec).collect();
    records.sort_by_key(|r| order.iter().position(|k| *k == r.kernel));
    let mut text = format!(
        "compare: {}, {} timed run(s) after 1 warm-up per configuration, {} CPU(s), SIMD {}\n\n",
        bench::describe(args.len, args.dtype),
        args.repeat,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        shmpar_kernels::simd::simd_level().name(),
    );
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

/// Runs every configuration and kernel over one array of `T`.
fn measure<T: Sample>(
    args: &CompareArgs,
    kernels: &[Kernel],
    configs: &[(BackendKind, usize)],
    partial_bytes: usize,
) -> CliResult<Vec<Record>> {
    let mut a: SharedArray<T, Ix1> = bench::create_array(args.len)?;
    let steps = (configs.len() * kernels.len() * (args.repeat + 1)) as u64;
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
    let mut records = Vec::new();
    let simd = shmpar_kernels::simd::simd_level().name().to_string();
    for &(kind, workers) in configs {
        bar.set_message(format!("{kind} x {workers}: starting"));
        let (backend, start_s) = bench::start_backend(kind, workers, args.start, partial_bytes)?;
        for (ki, kernel) in kernels.iter().enumerate() {
            bar.set_message(format!("{kind} x {workers}: {}", kernel.spec()));
            bench::fill(&backend, &mut a)?;
            if let Kernel::Reduce(r) = kernel {
                if references[ki].is_none() {
                    references[ki] = Some(r.reference(a.view()));
                }
            }
            let mut verdict: Result<(), String> = Ok(());
            let mut result = None;
            let mut times = Vec::with_capacity(args.repeat + 1);
            for run in 0..=args.repeat {
                let t = Instant::now();
                match kernel {
                    Kernel::Map(k) => bench::apply(&backend, &mut a, *k)?,
                    Kernel::Reduce(r) => result = Some(bench::reduce(&backend, &a, r)?),
                }
                times.push(t.elapsed().as_secs_f64());
                bar.inc(1);
                match (kernel, &result, &references[ki]) {
                    (Kernel::Map(k), _, _) if run == 0 => verdict = bench::verify_map(&a, k),
                    (Kernel::Reduce(_), Some(got), Some(want)) if verdict.is_ok() => {
                        verdict = bench::verify_reduce(got, want);
                    }
                    _ => {}
                }
            }
            let cold = times.remove(0);
            let med = median(&times);
            records.push(Record {
                kernel: kernel.spec(),
                backend: kind.name().to_string(),
                workers,
                len: args.len,
                dtype: args.dtype.name().to_string(),
                repeat: args.repeat,
                median_s: med,
                min_s: times.iter().copied().fold(f64::INFINITY, f64::min),
                max_s: times.iter().copied().fold(0.0, f64::max),
                cold_s: start_s + cold,
                start_s,
                gb_per_s: kernel.bytes_moved(args.len, args.dtype) / med / 1e9,
                vs_serial: None,
                vs_threads: None,
                verified: verdict.is_ok(),
                mismatch: verdict.err(),
                result: result.as_ref().map(bench::short_value),
                times_s: times,
                start: (kind == BackendKind::Processes).then(|| args.start.name().to_string()),
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
                format!("{:.2}", r.gb_per_s),
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
