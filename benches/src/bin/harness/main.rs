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
mod external;
mod measure;
mod report;
mod results;
mod targets;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use serde::de::DeserializeOwned;

use results::{BarrierRow, Config, DispatchRow, Machine, Results};
use shmpar_benches::load::Recorder;
use shmpar_benches::os;

pub(crate) type Res<T> = Result<T, Box<dyn std::error::Error>>;

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
pub(crate) struct RunArgs {
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
    /// Warm repeats per configuration at the headline size (more at small
    /// sizes): 51 puts the median's 95% interval between the 19th and 33rd
    /// of them, narrow enough to judge a 3% target on a quiet machine.
    #[arg(long, default_value_t = 51)]
    repeat: usize,
    /// Element type: f64 or f32.
    #[arg(long, default_value = "f64")]
    dtype: String,
    /// Small sizes and few repeats: a smoke test of the whole pipeline.
    #[arg(long)]
    quick: bool,
    /// Skip the Python measurements.
    #[arg(long)]
    pub(crate) no_python: bool,
    /// The Python interpreter (default: `scripts/setup-python.sh`'s, or
    /// `.venv/bin/python` if it exists; Python parts are skipped if it has no NumPy).
    #[arg(long)]
    pub(crate) python: Option<PathBuf>,
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
    /// Rewrite the report at --out from its results.json (and merged
    /// results) without measuring: for a change to the report's text.
    #[arg(long)]
    render_only: bool,
    /// The label of the merged machine.
    #[arg(long, default_value = "device")]
    device_label: String,
    /// Skip the segment sizes above this many MiB (default 4096).
    #[arg(long, default_value_t = 4096)]
    max_segment_mib: u64,
    /// Before each section, wait up to this many seconds for other programs
    /// to leave the CPUs it needs (0: do not wait; every section still
    /// records how busy the machine was).
    #[arg(long, default_value_t = 0)]
    quiet_wait: u64,
    /// The `shmpar` tool whose `compare` runs beside the harness's headline
    /// (default: the one beside this executable).
    #[arg(long)]
    pub(crate) shmpar: Option<PathBuf>,
    /// Do not run `shmpar compare`.
    #[arg(long)]
    pub(crate) no_compare: bool,
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
            None if cli.run.render_only => render(&cli.run.out),
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

pub(crate) fn strings(args: &[&dyn std::fmt::Display]) -> Vec<String> {
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
        commit: external::commit(),
        headline_len: run.len,
        headline_workers: hw,
        dtype: run.dtype.clone(),
        workers: run.workers.clone(),
        sizes: sizes.clone(),
        ..Results::default()
    };
    // Every measurement below is a section: how busy the machine was
    // around it decides whether its targets are judged.
    let mut rec = Recorder::new(cpus, Duration::from_secs(run.quiet_wait));

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
        let c: Config = rec.section(
            &format!("kernels/{len}/{w}"),
            &format!("kernels, {len} × {w} workers"),
            w,
            || {
                run_child(&strings(&[
                    &"config",
                    &"--len",
                    &len,
                    &"--workers",
                    &w,
                    &"--repeat",
                    &repeat,
                    &"--dtype",
                    &run.dtype,
                ]))
            },
        )?;
        res.configs.push(c);
    }

    // `shmpar compare` on the headline configuration: its processes ÷
    // threads beside the harness's.
    match external::shmpar_cli(&run) {
        Ok(cli) if run.dtype == "f64" => {
            eprintln!("harness: shmpar compare, {} x {hw} workers", run.len);
            let label = format!("shmpar compare, {} × {hw} workers", run.len);
            let repeat = repeats_for(run.len, run.repeat);
            match rec.section("compare", &label, hw, || {
                external::shmpar_compare(&cli, run.len, hw, repeat)
            }) {
                Ok(c) => res.compare = Some(c),
                Err(e) => {
                    eprintln!("harness: shmpar compare failed: {e}");
                    res.compare_skipped = Some(e.to_string());
                }
            }
        }
        Ok(_) => res.compare_skipped = Some("the harness ran f32; compare is run for f64".into()),
        Err(why) => {
            eprintln!("harness: skipping shmpar compare: {why}");
            res.compare_skipped = Some(why);
        }
    }

    // The C reference: what the vector units do with -O3 -march=native.
    if let Some(headline) = res.headline() {
        let (len, workers) = (headline.len, headline.workers);
        eprintln!("harness: C reference, {workers} threads");
        match rec.section("c-reference", "C reference (OpenMP)", workers, || {
            external::c_reference(len, workers, run.repeat.clamp(5, 25))
        }) {
            Ok(c) => res.c_reference = Some(c),
            Err(why) => {
                eprintln!("harness: skipping the C reference: {why}");
                res.c_reference_skipped = Some(why);
            }
        }
    }

    // Python seed pattern.
    match external::python(&run) {
        Ok(py) => {
            for &w in &run.workers {
                for method in ["fork", "spawn"] {
                    eprintln!("harness: Python seed pattern, {method}, {w} workers");
                    let r = rec.section(
                        &format!("python/{method}/{w}"),
                        &format!("Python seed pattern, {method}, {w} workers"),
                        w,
                        || external::python_run(&py, method, w, run.len, run.repeat.clamp(3, 7), &run.dtype),
                    );
                    match r {
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

    // Barriers: one per core, then oversubscribed; libgomp's beside them.
    let mut parties = vec![2, cpus, 2 * cpus, (4 * cpus).min(64)];
    if run.quick {
        parties = vec![2, 2 * cpus];
    }
    parties.sort_unstable();
    parties.dedup();
    let rounds = if run.quick { 3 } else { 11 };
    let omp = external::build_omp_barrier();
    match &omp {
        Ok(b) => res.openmp_build = Some(b.build.clone()),
        Err(why) => {
            eprintln!("harness: skipping libgomp's barrier: {why}");
            res.openmp_skipped = Some(why.clone());
        }
    }
    let py = res
        .python_skipped
        .is_none()
        .then(|| external::python(&run).ok())
        .flatten();
    for &p in &parties {
        let iters: u64 = if p <= cpus { 5000 } else { 500 };
        let iters = if run.quick { iters / 5 } else { iters };
        for kind in ["shmpar", "futex", "pthread", "threads"] {
            eprintln!("harness: barrier {kind}, {p} parties");
            let r: BarrierRow = rec.section(
                &format!("barrier/{kind}/{p}"),
                &format!("barrier {kind}, {p} parties"),
                p,
                || {
                    run_child(&strings(&[
                        &"barrier",
                        &"--kind",
                        &kind,
                        &"--parties",
                        &p,
                        &"--rounds",
                        &rounds,
                        &"--iters",
                        &iters,
                    ]))
                },
            )?;
            res.barriers.push(r);
        }
        if let Ok(binary) = &omp {
            eprintln!("harness: barrier openmp, {p} threads");
            let r = rec.section(
                &format!("barrier/openmp/{p}"),
                &format!("barrier openmp, {p} threads"),
                p,
                || external::omp_barrier(binary, p, rounds, iters),
            );
            match r {
                Ok(r) => res.barriers.push(r),
                Err(why) => {
                    eprintln!("harness: libgomp's barrier failed: {why}");
                    res.openmp_skipped = Some(why);
                }
            }
        }
        if let Some(py) = &py {
            let r = rec.section(
                &format!("barrier/python/{p}"),
                &format!("barrier python, {p} parties"),
                p,
                || {
                    external::python_barrier(
                        py,
                        p,
                        if run.quick { 2 } else { 5 },
                        if p <= cpus { 500 } else { 100 },
                    )
                },
            );
            match r {
                Ok(r) => res.barriers.push(r),
                Err(e) => eprintln!("harness: Python barrier failed: {e}"),
            }
        }
    }
    drop(omp);

    eprintln!("harness: dispatch");
    // The coordinator works too (it posts and spins for the answer).
    let d: Vec<DispatchRow> = rec.section("dispatch", "dispatch", hw + 1, || {
        run_child(&strings(&[
            &"dispatch",
            &"--workers",
            &hw,
            &"--jobs",
            &if run.quick { 400 } else { 4000 },
        ]))
    })?;
    res.dispatch = d;

    eprintln!("harness: segments");
    let mut seg_sizes: Vec<u64> = vec![1 << 20, 16 << 20, 256 << 20, 1 << 30, 4 << 30];
    if run.quick {
        seg_sizes = vec![1 << 20, 64 << 20];
    }
    seg_sizes.retain(|&b| b <= run.max_segment_mib << 20);
    res.segments = rec.section("segments", "segment create / attach", 1, || {
        measure::segments(&seg_sizes, if run.quick { 20 } else { 100 })
    })?;

    res.sections = rec.sections;
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

/// Rewrites the report at `out` from the results stored there.
fn render(out: &Path) -> Res<()> {
    let mine: Results = serde_json::from_str(&std::fs::read_to_string(out.join("results.json"))?)?;
    report::write(out, &mine, &load_devices(out))?;
    eprintln!("harness: rewrote {}", out.join("benchmarks.md").display());
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
