//! `shmpar run KERNEL`: one kernel, once or `--repeat` times, verified.

use std::time::Instant;

use ndarray::Ix1;
use shmpar::{BackendKind, SharedArray};

use crate::bench::{self, Kernel, Sample};
use crate::units::{median, seconds};
use crate::{CliError, CliResult, FloatType, RunArgs, out};

/// `shmpar run`.
pub(crate) fn run(args: &RunArgs) -> CliResult {
    let kernel = Kernel::parse(&args.kernel)?;
    let backend = args.backend.kind();
    let workers = args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(args.len)
    });
    bench::check_workers(workers, args.len)?;
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
    bench::check_memory(args.len, args.dtype, pool_bytes)?;
    match args.dtype {
        FloatType::F32 => run_typed::<f32>(args, &kernel, workers),
        FloatType::F64 => run_typed::<f64>(args, &kernel, workers),
    }
}

fn run_typed<T: Sample>(args: &RunArgs, kernel: &Kernel, workers: usize) -> CliResult {
    let kind = args.backend.kind();
    // The pool forks before anything else of this process exists.
    let (backend, start_s) = bench::start_backend(kind, workers, args.start, kernel.partial_bytes())?;
    let mut a: SharedArray<T, Ix1> = bench::create_array(args.len)?;
    let start_method = match kind {
        BackendKind::Processes => format!(", {} start", args.start.name()),
        _ => String::new(),
    };
    let mut text = format!(
        "run {}: {} on {kind} x {}{start_method}\n",
        kernel.spec(),
        bench::describe(args.len, args.dtype),
        backend.workers(),
    );
    text.push_str(&format!("  start     {}\n", seconds(start_s)));
    let t = Instant::now();
    bench::fill(&backend, &mut a)?;
    text.push_str(&format!(
        "  fill      {}  (uniform in [0, 1), on the backend)\n",
        seconds(t.elapsed().as_secs_f64())
    ));
    let moved = kernel.bytes_moved(args.len, args.dtype);
    let mut times = Vec::with_capacity(args.repeat);
    let mut verdict: Result<(), String> = Ok(());
    let mut result = None;
    let reference = match kernel {
        Kernel::Reduce(r) => Some(r.reference(a.view())),
        Kernel::Map(_) => None,
    };
    for i in 0..args.repeat {
        let t = Instant::now();
        match kernel {
            Kernel::Map(k) => bench::apply(&backend, &mut a, *k)?,
            Kernel::Reduce(r) => result = Some(bench::reduce(&backend, &a, r)?),
        }
        let s = t.elapsed().as_secs_f64();
        times.push(s);
        text.push_str(&format!(
            "  run {:<5} {}  {:.2} GB/s\n",
            i + 1,
            seconds(s),
            moved / s / 1e9
        ));
        // Elementwise: only the first run starts from the known input.
        match (kernel, &result, &reference) {
            (Kernel::Map(k), _, _) if i == 0 => verdict = bench::verify_map(&a, k),
            (Kernel::Reduce(_), Some(got), Some(want)) if verdict.is_ok() => {
                verdict = bench::verify_reduce(got, want);
            }
            _ => {}
        }
    }
    let med = median(&times);
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    let max = times.iter().copied().fold(0.0, f64::max);
    text.push_str(&format!(
        "  median    {}  (min {}, max {})  {:.2} GB/s\n",
        seconds(med),
        seconds(min),
        seconds(max),
        moved / med / 1e9
    ));
    if let (Some(got), Some(want)) = (&result, &reference) {
        text.push_str(&format!("  result    {got}\n  reference {want}\n"));
    }
    let check = match kernel {
        Kernel::Map(_) => "bit-identical to the serial reference (first run)".to_string(),
        Kernel::Reduce(_) => format!(
            "within {:e} of the serial reference (every run)",
            bench::REDUCTION_RTOL
        ),
    };
    match verdict {
        Ok(()) => {
            text.push_str(&format!("  verified  {check}\n"));
            drop(a);
            drop(backend);
            out(&text)
        }
        Err(why) => {
            out(&text)?;
            Err(CliError::msg(format!("{} did not verify: {why}", kernel.spec())))
        }
    }
}
