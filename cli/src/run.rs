//! `shmpar run KERNEL`: one kernel, once or `--repeat` times, verified.
//!
//! Each line is printed (and flushed) as soon as what it reports is done,
//! so a long run shows its progress.

use std::time::Instant;

use ndarray::Ix1;
use shmpar::{BackendKind, SharedArray};

use crate::bench::{self, Kernel, Launch, Sample};
use crate::units::{median, seconds};
use crate::workload::Workload;
use crate::{CliError, CliResult, FloatType, RunArgs, out};

/// Prints one line of the report now.
fn line(text: &str) -> CliResult {
    out(&format!("{text}\n"))
}

/// `  run 3     12.40 ms  23.1 GB/s`-style rate, empty without a byte count.
fn rate(moved: Option<f64>, s: f64) -> String {
    moved.map_or_else(String::new, |b| format!("  {:.2} GB/s", b / s / 1e9))
}

/// `shmpar run`.
pub(crate) fn run(args: &RunArgs) -> CliResult {
    let kernel = Kernel::parse(&args.kernel)?;
    let backend = args.backend.kind();
    if args.timeout.is_some() && backend != BackendKind::Processes {
        return Err(CliError::msg(format!(
            "--timeout applies to the process backend only: {backend} cannot be stopped from outside \
             (no deadline there)"
        )));
    }
    let workload = kernel.workload();
    if workload.is_some() && args.dtype != FloatType::F64 {
        return Err(CliError::msg(format!(
            "{} runs on its own arrays of fixed types; leave out --dtype",
            kernel.spec()
        )));
    }
    let rows = workload.map_or(args.len, |w| w.rows());
    let workers = args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(rows)
    });
    bench::check_workers(workers, rows)?;
    // Serial is the one-thread baseline, as in `compare`: one chunk, so its
    // label and its timing mean the same in both commands.
    let workers = if backend == BackendKind::Serial {
        1
    } else {
        workers
    };
    if args.repeat == 0 || args.repeat > 1_000_000 {
        return Err(CliError::msg("--repeat must be between 1 and 1000000"));
    }
    let mut pool_bytes = 0;
    if backend == BackendKind::Processes {
        kernel.check_for_processes()?;
        pool_bytes = bench::pool_bytes(workers, kernel.partial_bytes());
    }
    let launch = Launch {
        start: args.start,
        partial_bytes: kernel.partial_bytes(),
        timeout: args.timeout,
    };
    if let Some(w) = workload {
        let need = u128::from(w.shm_bytes().unwrap_or(u64::MAX));
        bench::check_memory_for(&w.spec(), need, pool_bytes, "a smaller size in the spec")?;
        return run_workload(args, w, workers, launch);
    }
    bench::check_memory(args.len, args.dtype, pool_bytes)?;
    match args.dtype {
        FloatType::F32 => run_typed::<f32>(args, &kernel, workers, launch),
        FloatType::F64 => run_typed::<f64>(args, &kernel, workers, launch),
    }
}

/// `, fork start` for the process backend.
fn start_method(args: &RunArgs) -> String {
    match args.backend.kind() {
        BackendKind::Processes => format!(", {} start", args.start.name()),
        _ => String::new(),
    }
}

fn run_typed<T: Sample>(args: &RunArgs, kernel: &Kernel, workers: usize, launch: Launch) -> CliResult {
    let kind = args.backend.kind();
    // The pool forks before anything else of this process exists.
    let (backend, start_s) = bench::start_backend(kind, workers, launch)?;
    let what = format!("{} on {kind} x {}", kernel.spec(), backend.workers());
    let mut a: SharedArray<T, Ix1> = bench::create_array(args.len)?;
    line(&format!(
        "run {}: {} on {kind} x {}{}",
        kernel.spec(),
        bench::describe(args.len, args.dtype),
        backend.workers(),
        start_method(args),
    ))?;
    line(&format!("  start     {}", seconds(start_s)))?;
    let t = Instant::now();
    bench::fill(&backend, &mut a).map_err(|e| e.context(&what))?;
    line(&format!(
        "  fill      {}  (uniform in [0, 1), on the backend)",
        seconds(t.elapsed().as_secs_f64())
    ))?;
    let moved = kernel.bytes_moved(args.len, args.dtype);
    let mut times = Vec::with_capacity(args.repeat);
    let mut verdict: Result<(), String> = Ok(());
    let mut result = None;
    let reference = match kernel {
        Kernel::Reduce(r) => Some(r.reference(a.view())),
        _ => None,
    };
    for i in 0..args.repeat {
        let t = Instant::now();
        match kernel {
            Kernel::Map(k) => bench::apply(&backend, &mut a, *k),
            Kernel::Reduce(r) => bench::reduce(&backend, &a, r).map(|v| result = Some(v)),
            Kernel::Workload(_) => Err(CliError::msg("a workload is not a catalog kernel")),
        }
        .map_err(|e| e.context(&what))?;
        let s = t.elapsed().as_secs_f64();
        times.push(s);
        line(&format!("  run {:<5} {}{}", i + 1, seconds(s), rate(moved, s)))?;
        // Elementwise: only the first run starts from the known input.
        match (kernel, &result, &reference) {
            (Kernel::Map(k), _, _) if i == 0 => verdict = bench::verify_map(&a, k),
            (Kernel::Reduce(_), Some(got), Some(want)) if verdict.is_ok() => {
                verdict = bench::verify_reduce(got, want);
            }
            _ => {}
        }
    }
    summary(&times, moved)?;
    if let (Some(got), Some(want)) = (&result, &reference) {
        if args.all_bins {
            line(&format!("  result    {got:#}\n  reference {want:#}"))?;
        } else {
            line(&format!("  result    {got}\n  reference {want}"))?;
        }
    }
    let check = match kernel {
        Kernel::Reduce(_) => format!(
            "within {:e} of the serial reference (every run)",
            bench::REDUCTION_RTOL
        ),
        _ => "bit-identical to the serial reference (first run)".to_string(),
    };
    finish(verdict, &check, &kernel.spec())
}

/// The median line.
fn summary(times: &[f64], moved: Option<f64>) -> CliResult {
    let med = median(times);
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    let max = times.iter().copied().fold(0.0, f64::max);
    line(&format!(
        "  median    {}  (min {}, max {}){}",
        seconds(med),
        seconds(min),
        seconds(max),
        rate(moved, med)
    ))
}

/// The verdict line, or the error that makes the status 1.
fn finish(verdict: Result<(), String>, check: &str, spec: &str) -> CliResult {
    match verdict {
        Ok(()) => line(&format!("  verified  {check}")),
        Err(why) => Err(CliError::msg(format!("{spec} did not verify: {why}"))),
    }
}

/// `shmpar run` of a workload: its arrays are filled on this thread, each
/// run is one timed unit (one triad, five products, the k-means
/// iterations, one image), checked against the serial computation.
fn run_workload(args: &RunArgs, w: Workload, workers: usize, launch: Launch) -> CliResult {
    let kind = args.backend.kind();
    let (backend, start_s) = bench::start_backend(kind, workers, launch)?;
    let workers = backend.workers();
    let what = format!("{} on {kind} x {workers}", w.spec());
    line(&format!(
        "run {}: {} on {kind} x {workers}{}",
        w.spec(),
        w.describe(),
        start_method(args)
    ))?;
    line(&format!("  start     {}", seconds(start_s)))?;
    let t = Instant::now();
    let mut prepared = w.prepare()?;
    line(&format!(
        "  fill      {}  (the inputs, on one thread)",
        seconds(t.elapsed().as_secs_f64())
    ))?;
    let moved = w.bytes_moved();
    let mut times = Vec::with_capacity(args.repeat);
    let mut verdict: Result<(), String> = Ok(());
    for i in 0..args.repeat {
        prepared.reset(i == 0);
        let t = Instant::now();
        prepared
            .run(&backend)
            .map_err(|e| CliError::from(e).context(&what))?;
        let s = t.elapsed().as_secs_f64();
        times.push(s);
        line(&format!("  run {:<5} {}{}", i + 1, seconds(s), rate(moved, s)))?;
        if verdict.is_ok() {
            verdict = prepared.verify(workers);
        }
    }
    summary(&times, moved)?;
    let check = match w {
        Workload::Kmeans { .. } => format!(
            "labels and centroids bit-identical to the serial computation over the same {workers} \
             chunk(s) (every run)"
        ),
        _ => "bit-identical to the serial computation (every run)".to_string(),
    };
    finish(verdict, &check, &w.spec())
}
