//! The comparison harness: shmpar worker processes, shmpar on rayon threads,
//! serial, the Python seed pattern (fork and spawn) and the machine's
//! bandwidth bound, measured side by side in one run, reported as ratios in
//! `docs/benchmarks.md` with SVG charts.
//!
//! ```text
//! cargo run --release -p shmpar-benches --bin harness            # full run, ~5 min on 2 cores
//! cargo run --release -p shmpar-benches --bin harness -- --quick # smoke test, < 30 s
//! harness --workers 1,2,4,8,16 --out DIR --no-python             # another machine, prebuilt binary
//! harness --merge-device DIR/results.json --device-label "..."   # add it to docs/benchmarks.md
//! ```
//!
//! Every measurement runs in a child process (this executable with a
//! subcommand), so each pool is built in a single-threaded process and each
//! cold run is really cold.

mod charts;
mod measure;
mod report;
mod results;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use serde::de::DeserializeOwned;

use results::{BarrierRow, CReference, Config, DispatchRow, Machine, Python, Results};
use shmpar_benches::os;
use shmpar_benches::stats::Summary;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(Parser, Debug)]
#[command(
    name = "harness",
    about = "shmpar versus threads, serial, Python and the bandwidth bound, in one run"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug, Clone)]
struct RunArgs {
    /// Elements of the headline array.
    #[arg(long, default_value_t = 100_000_000)]
    len: usize,
    /// Worker counts for the scaling-by-workers runs (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    workers: Vec<usize>,
    /// Workers of the headline and of the scaling-by-size runs.
    #[arg(long, default_value_t = 2)]
    headline_workers: usize,
    /// Array lengths for the scaling-by-size runs (default: 10^3 .. len by tens).
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Warm repeats per configuration at the headline size (more at small sizes).
    #[arg(long, default_value_t = 25)]
    repeat: usize,
    /// Element type: f64 or f32.
    #[arg(long, default_value = "f64")]
    dtype: String,
    /// Small sizes and few repeats: a smoke test of the whole pipeline.
    #[arg(long)]
    quick: bool,
    /// Skip the Python measurements.
    #[arg(long)]
    no_python: bool,
    /// The Python interpreter (default: `scripts/setup-python.sh`'s, or
    /// `.venv/bin/python` if it exists; Python parts are skipped if it has no NumPy).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Where to write benchmarks.md, img/*.svg and results.json.
    #[arg(long, default_value = "docs")]
    out: PathBuf,
    /// Label of this machine in the report.
    #[arg(long, default_value = "this machine")]
    label: String,
    /// Merge a results.json from another machine into the report at --out
    /// (whose own results.json is kept), instead of measuring.
    #[arg(long)]
    merge_device: Option<PathBuf>,
    /// The label of the merged machine.
    #[arg(long, default_value = "device")]
    device_label: String,
    /// Skip the segment sizes above this many MiB (default 4096).
    #[arg(long, default_value_t = 4096)]
    max_segment_mib: u64,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// (internal) One configuration; prints JSON.
    #[command(hide = true)]
    Config {
        #[arg(long)]
        len: usize,
        #[arg(long)]
        workers: usize,
        #[arg(long)]
        repeat: usize,
        #[arg(long, default_value = "f64")]
        dtype: String,
    },
    /// (internal) Barrier latency; prints JSON.
    #[command(hide = true)]
    Barrier {
        #[arg(long)]
        kind: String,
        #[arg(long)]
        parties: usize,
        #[arg(long)]
        rounds: usize,
        #[arg(long)]
        iters: u64,
    },
    /// (internal) Dispatch latency; prints JSON.
    #[command(hide = true)]
    Dispatch {
        #[arg(long)]
        workers: usize,
        #[arg(long)]
        jobs: usize,
    },
}

fn main() {
    shmpar::init();
    let cli = Cli::parse();
    let outcome = match cli.cmd {
        Some(cmd) => child(cmd),
        None => match &cli.run.merge_device {
            Some(file) => merge(&cli.run, file),
            None => orchestrate(cli.run),
        },
    };
    if let Err(e) = outcome {
        eprintln!("harness: {e}");
        std::process::exit(1);
    }
}

fn child(cmd: Cmd) -> Res<()> {
    let json = match cmd {
        Cmd::Config {
            len,
            workers,
            repeat,
            dtype,
        } => match dtype.as_str() {
            "f64" => serde_json::to_string(&measure::config::<f64>(len, workers, repeat)?)?,
            "f32" => serde_json::to_string(&measure::config::<f32>(len, workers, repeat)?)?,
            other => return Err(format!("unsupported dtype {other}; use f64 or f32").into()),
        },
        Cmd::Barrier {
            kind,
            parties,
            rounds,
            iters,
        } => serde_json::to_string(&measure::barrier(&kind, parties, rounds, iters)?)?,
        Cmd::Dispatch { workers, jobs } => serde_json::to_string(&measure::dispatch(workers, jobs)?)?,
    };
    println!("{json}");
    Ok(())
}

/// Runs this executable with `args` and parses its JSON output.
fn run_child<T: DeserializeOwned>(args: &[String]) -> Res<T> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("`harness {}` failed: {}", args.join(" "), out.status).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn strings(args: &[&dyn std::fmt::Display]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn orchestrate(mut run: RunArgs) -> Res<()> {
    let start = Instant::now();
    let cpus = os::cpus();
    if run.quick {
        run.len = run.len.min(1_000_000);
        run.repeat = run.repeat.min(5);
        run.workers.retain(|&w| w <= 2);
        if run.workers.is_empty() {
            run.workers = vec![1, 2];
        }
    }
    run.workers.sort_unstable();
    run.workers.dedup();
    run.workers.retain(|&w| w > 0);
    let hw = run.headline_workers.max(1);
    let mut sizes = if run.sizes.is_empty() {
        std::iter::successors(Some(1000usize), |&s| (s < run.len / 10).then_some(s * 10))
            .chain([run.len])
            .collect()
    } else {
        run.sizes.clone()
    };
    if run.quick {
        sizes = vec![1000, run.len];
    }
    sizes.sort_unstable();
    sizes.dedup();
    let mut res = Results {
        machine: machine(&run.label),
        command: command_line(),
        headline_len: run.len,
        headline_workers: hw,
        dtype: run.dtype.clone(),
        workers: run.workers.clone(),
        sizes: sizes.clone(),
        ..Results::default()
    };

    // Kernels: scaling by workers at the headline size, then by size.
    let mut plan: Vec<(usize, usize)> = run.workers.iter().map(|&w| (run.len, w)).collect();
    if !run.workers.contains(&hw) {
        plan.push((run.len, hw));
    }
    plan.extend(sizes.iter().filter(|&&s| s != run.len).map(|&s| (s, hw)));
    for (len, w) in plan {
        let repeat = repeats_for(len, run.repeat);
        eprintln!(
            "harness: kernels, {len} x {} with {w} workers, {repeat} repeats",
            run.dtype
        );
        let c: Config = run_child(&strings(&[
            &"config",
            &"--len",
            &len,
            &"--workers",
            &w,
            &"--repeat",
            &repeat,
            &"--dtype",
            &run.dtype,
        ]))?;
        res.configs.push(c);
    }

    // The C reference: what the vector units do with -O3 -march=native.
    if let Some(headline) = res.headline() {
        let (len, workers) = (headline.len, headline.workers);
        eprintln!("harness: C reference, {workers} threads");
        match c_reference(len, workers, run.repeat.clamp(5, 11)) {
            Ok(c) => res.c_reference = Some(c),
            Err(why) => {
                eprintln!("harness: skipping the C reference: {why}");
                res.c_reference_skipped = Some(why);
            }
        }
    }

    // Python seed pattern.
    match python(&run) {
        Ok(py) => {
            for &w in &run.workers {
                for method in ["fork", "spawn"] {
                    eprintln!("harness: Python seed pattern, {method}, {w} workers");
                    match python_run(&py, method, w, run.len, run.repeat.clamp(3, 7), &run.dtype) {
                        Ok(p) => res.python.push(p),
                        Err(e) => eprintln!("harness: Python {method} failed: {e}"),
                    }
                }
            }
        }
        Err(why) => {
            eprintln!("harness: skipping Python: {why}");
            res.python_skipped = Some(why);
        }
    }

    // Barriers: one per core, then oversubscribed.
    let mut parties = vec![2, cpus, 2 * cpus, (4 * cpus).min(64)];
    if run.quick {
        parties = vec![2, 2 * cpus];
    }
    parties.sort_unstable();
    parties.dedup();
    let rounds = if run.quick { 3 } else { 11 };
    for &p in &parties {
        let iters: u64 = if p <= cpus { 5000 } else { 500 };
        let iters = if run.quick { iters / 5 } else { iters };
        for kind in ["shmpar", "futex", "pthread", "threads"] {
            eprintln!("harness: barrier {kind}, {p} parties");
            let r: BarrierRow = run_child(&strings(&[
                &"barrier",
                &"--kind",
                &kind,
                &"--parties",
                &p,
                &"--rounds",
                &rounds,
                &"--iters",
                &iters,
            ]))?;
            res.barriers.push(r);
        }
        if let Some(py) = res.python_skipped.is_none().then(|| python(&run).ok()).flatten() {
            match python_barrier(
                &py,
                p,
                if run.quick { 2 } else { 5 },
                if p <= cpus { 500 } else { 100 },
            ) {
                Ok(r) => res.barriers.push(r),
                Err(e) => eprintln!("harness: Python barrier failed: {e}"),
            }
        }
    }

    eprintln!("harness: dispatch");
    let d: Vec<DispatchRow> = run_child(&strings(&[
        &"dispatch",
        &"--workers",
        &hw,
        &"--jobs",
        &if run.quick { 400 } else { 4000 },
    ]))?;
    res.dispatch = d;

    eprintln!("harness: segments");
    let mut seg_sizes: Vec<u64> = vec![1 << 20, 16 << 20, 256 << 20, 1 << 30, 4 << 30];
    if run.quick {
        seg_sizes = vec![1 << 20, 64 << 20];
    }
    seg_sizes.retain(|&b| b <= run.max_segment_mib << 20);
    res.segments = measure::segments(&seg_sizes, if run.quick { 20 } else { 100 })?;

    res.wall_s = start.elapsed().as_secs_f64();
    std::fs::create_dir_all(&run.out)?;
    let json_path = run.out.join("results.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&res)?)?;
    let devices = load_devices(&run.out);
    report::write(&run.out, &res, &devices)?;
    eprintln!(
        "harness: wrote {} and {} in {:.0} s",
        json_path.display(),
        run.out.join("benchmarks.md").display(),
        res.wall_s
    );
    Ok(())
}

/// More repeats for small arrays: they cost little and are noisier.
fn repeats_for(len: usize, repeat: usize) -> usize {
    let scale = match len {
        0..=100_000 => 20,
        100_001..=1_000_000 => 5,
        1_000_001..=10_000_000 => 2,
        _ => 1,
    };
    (repeat * scale).clamp(1, 201)
}

/// Re-renders the report at --out with another machine's results.
fn merge(run: &RunArgs, file: &Path) -> Res<()> {
    let mine: Results = serde_json::from_str(&std::fs::read_to_string(run.out.join("results.json"))?)?;
    let mut theirs: Results = serde_json::from_str(&std::fs::read_to_string(file)?)?;
    theirs.machine.label = run.device_label.clone();
    let slug: String = run
        .device_label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    std::fs::write(
        run.out.join(format!("results-device-{slug}.json")),
        serde_json::to_string_pretty(&theirs)?,
    )?;
    let devices = load_devices(&run.out);
    report::write(&run.out, &mine, &devices)?;
    eprintln!(
        "harness: merged {} as {:?} into {}",
        file.display(),
        run.device_label,
        run.out.display()
    );
    Ok(())
}

/// Results merged earlier from other machines (`results-device-*.json`).
fn load_devices(out: &Path) -> Vec<Results> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(out)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("results-device-") && n.ends_with(".json"))
        })
        .filter_map(|p| serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok())
        .collect()
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!(
        "cargo run --release -p shmpar-benches --bin harness -- {}",
        args.join(" ")
    )
    .trim_end()
    .trim_end_matches(" --")
    .to_owned()
}

fn machine(label: &str) -> Machine {
    let gib = |bytes: u64| bytes as f64 / (1u64 << 30) as f64;
    Machine {
        label: label.to_owned(),
        cpu: os::cpu_model(),
        cpus: os::cpus(),
        memory_gib: gib(os::mem_total_bytes()),
        kernel: os::kernel_release(),
        shm_free_gib: gib(shmpar_core::os::free_bytes(Path::new("/dev/shm")).unwrap_or(0)),
        avx2: std::is_x86_feature_detected!("avx2"),
    }
}

/// Builds `benches/c/seed_reference.c` with the machine's C compiler and
/// runs it with `threads` OpenMP threads over `len` f64.
fn c_reference(len: usize, threads: usize, repeat: usize) -> Result<CReference, String> {
    let source = workspace_root().join("benches/c/seed_reference.c");
    if !source.exists() {
        return Err(format!("{} is missing", source.display()));
    }
    let binary = std::env::temp_dir().join(format!("shmpar-seed-reference-{}", std::process::id()));
    let flags = [
        "-O3",
        "-march=native",
        "-fno-math-errno",
        "-ffast-math",
        "-fopenmp",
    ];
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let built = Command::new(&cc)
        .args(flags)
        .arg(&source)
        .arg("-o")
        .arg(&binary)
        .arg("-lm")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cc}: {e}"))?;
    if !built.status.success() {
        return Err(format!(
            "{cc} failed: {}",
            String::from_utf8_lossy(&built.stderr).trim()
        ));
    }
    let out = Command::new(&binary)
        .args([len.to_string(), repeat.to_string()])
        .env("OMP_NUM_THREADS", threads.to_string())
        .stdin(Stdio::null())
        .output();
    let _ = std::fs::remove_file(&binary);
    let out = out.map_err(|e| format!("running the C reference: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| -> Option<f64> {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
    };
    match (
        out.status.success(),
        field("sqrt_ms"),
        field("sum_ms"),
        field("threads"),
    ) {
        (true, Some(sqrt_ms), Some(sum_ms), Some(t)) => Ok(CReference {
            build: format!("{cc} {}", flags.join(" ")),
            threads: t as usize,
            len,
            sqrt_ms,
            sum_ms,
        }),
        _ => Err(format!("the C reference printed {:?}", text.trim())),
    }
}

/// The Python interpreter with NumPy, or why there is none.
fn python(run: &RunArgs) -> Result<PathBuf, String> {
    if run.no_python {
        return Err("--no-python".into());
    }
    let root = workspace_root();
    let candidate = match &run.python {
        Some(p) => p.clone(),
        None => {
            let venv = root.join(".venv/bin/python");
            let script = root.join("scripts/setup-python.sh");
            if venv.exists() {
                venv
            } else if script.exists() {
                let out = Command::new(&script)
                    .stderr(Stdio::inherit())
                    .output()
                    .map_err(|e| format!("scripts/setup-python.sh: {e}"))?;
                if !out.status.success() {
                    return Err("scripts/setup-python.sh failed (no network?)".into());
                }
                PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
            } else {
                return Err("no .venv and no scripts/setup-python.sh".into());
            }
        }
    };
    let ok = Command::new(&candidate)
        .args(["-c", "import numpy"])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Ok(candidate)
    } else {
        Err(format!("{} cannot import numpy", candidate.display()))
    }
}

/// The workspace root: where `benches/python` is, looked for from the
/// current directory upwards (falls back to the current directory).
fn workspace_root() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    cwd.ancestors()
        .find(|d| d.join("benches/python/seed_pattern.py").exists())
        .map(Path::to_path_buf)
        .unwrap_or(cwd)
}

fn python_json(py: &Path, script: &str, args: &[String]) -> Res<serde_json::Value> {
    let path = workspace_root().join("benches/python").join(script);
    let out = Command::new(py)
        .arg(&path)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("{} failed: {}", path.display(), out.status).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn floats(v: &serde_json::Value, key: &str) -> Vec<f64> {
    v[key]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
        .unwrap_or_default()
}

fn python_run(
    py: &Path,
    method: &str,
    workers: usize,
    len: usize,
    repeat: usize,
    dtype: &str,
) -> Res<Python> {
    let np_dtype = if dtype == "f32" { "float32" } else { "float64" };
    let v = python_json(
        py,
        "seed_pattern.py",
        &strings(&[
            &"--len",
            &len,
            &"--workers",
            &workers,
            &"--method",
            &method,
            &"--repeat",
            &repeat,
            &"--dtype",
            &np_dtype,
        ]),
    )?;
    let total = floats(&v, "total_ms");
    let warm = |k: &str| Summary::of(floats(&v, k).get(1..).unwrap_or(&[]));
    Ok(Python {
        method: method.to_owned(),
        workers,
        len,
        python: v["python"].as_str().unwrap_or("").to_owned(),
        numpy: v["numpy"].as_str().unwrap_or("").to_owned(),
        cold_total_ms: total.first().copied().unwrap_or(f64::NAN),
        warm_total_ms: warm("total_ms"),
        warm_processes_ms: warm("processes_ms"),
        warm_mean_ms: warm("mean_ms"),
        startup_ms: v["startup_ms"].as_f64().unwrap_or(f64::NAN),
        mean: v["mean"].as_f64().unwrap_or(f64::NAN),
    })
}

fn python_barrier(py: &Path, parties: usize, rounds: usize, iters: usize) -> Res<BarrierRow> {
    eprintln!("harness: barrier multiprocessing.Barrier, {parties} parties");
    let v = python_json(
        py,
        "barrier.py",
        &strings(&[&"--parties", &parties, &"--rounds", &rounds, &"--iters", &iters]),
    )?;
    Ok(BarrierRow {
        kind: "python".into(),
        parties,
        phase_us: Summary::of(&floats(&v, "phase_us")),
    })
}
