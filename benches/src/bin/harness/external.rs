//! The programs the harness runs besides itself: the C references (the
//! seed's sqrt and sum with OpenMP, and libgomp's barrier), the Python seed
//! pattern and `multiprocessing.Barrier`, and `shmpar compare`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use shmpar_benches::stats::Summary;

use crate::results::{BarrierRow, CReference, CompareRow, CompareRun, Python};
use crate::{Res, RunArgs, strings};

/// `git describe --always --dirty` of the workspace the harness runs in.
pub fn commit() -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(workspace_root())
        .args(["describe", "--always", "--dirty"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// A C program built for this run, removed when dropped.
pub struct CBinary {
    path: PathBuf,
    /// The compiler command and flags.
    pub build: String,
    /// The first line of the compiler's `--version`.
    pub compiler: String,
}

impl Drop for CBinary {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The C compiler: `$CC`, else `gcc` if there is one, else `cc`.
fn compiler() -> String {
    std::env::var("CC")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| {
            let gcc = Command::new("gcc")
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if gcc { "gcc" } else { "cc" }.to_owned()
        })
}

/// Builds `benches/c/NAME.c` with `flags` (and `-lm`).
pub fn build_c(name: &str, flags: &[&str]) -> Result<CBinary, String> {
    let source = workspace_root().join(format!("benches/c/{name}.c"));
    if !source.exists() {
        return Err(format!("{} is missing", source.display()));
    }
    let path = std::env::temp_dir().join(format!("shmpar-{name}-{}", std::process::id()));
    let cc = compiler();
    let version = Command::new(&cc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let built = Command::new(&cc)
        .args(flags)
        .arg(&source)
        .arg("-o")
        .arg(&path)
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
    Ok(CBinary {
        path,
        build: format!("{cc} {}", flags.join(" ")),
        compiler: version,
    })
}

/// The numbers of a `key=A,B,C` field of a C program's output.
fn list(text: &str, key: &str) -> Vec<f64> {
    text.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default()
}

/// Runs `binary` with `args` and the environment `env`; its stdout.
fn run_c(binary: &CBinary, args: &[String], env: &[(&str, String)]) -> Result<String, String> {
    let out = Command::new(&binary.path)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", binary.path.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{} exited with {} and printed {:?}",
            binary.path.display(),
            out.status,
            text.trim()
        ));
    }
    Ok(text)
}

/// Builds `benches/c/seed_reference.c` for this very CPU and runs it with
/// `threads` OpenMP threads over `len` f64.
pub fn c_reference(len: usize, threads: usize, repeat: usize) -> Result<CReference, String> {
    let binary = build_c(
        "seed_reference",
        &[
            "-O3",
            "-march=native",
            "-fno-math-errno",
            "-ffast-math",
            "-fopenmp",
        ],
    )?;
    let text = run_c(
        &binary,
        &strings(&[&len, &repeat]),
        &[("OMP_NUM_THREADS", threads.to_string())],
    )?;
    let (sqrt, sum) = (list(&text, "sqrt_ms"), list(&text, "sum_ms"));
    let t = list(&text, "threads");
    if sqrt.is_empty() || sum.is_empty() || t.is_empty() {
        return Err(format!("the C reference printed {:?}", text.trim()));
    }
    let (sqrt, sum) = (Summary::of(&sqrt), Summary::of(&sum));
    Ok(CReference {
        build: binary.build.clone(),
        compiler: binary.compiler.clone(),
        threads: t[0] as usize,
        len,
        sqrt_ms: sqrt.median,
        sum_ms: sum.median,
        sqrt,
        sum,
    })
}

/// Builds `benches/c/omp_barrier.c` (libgomp's barrier) once for the run.
pub fn build_omp_barrier() -> Result<CBinary, String> {
    build_c("omp_barrier", &["-O3", "-fopenmp"])
}

/// Per-phase latency of libgomp's `#pragma omp barrier` with `threads`
/// threads.
pub fn omp_barrier(
    binary: &CBinary,
    threads: usize,
    rounds: usize,
    iters: u64,
) -> Result<BarrierRow, String> {
    let text = run_c(
        binary,
        &strings(&[&threads, &rounds, &iters]),
        &[("OMP_DYNAMIC", "false".to_owned())],
    )?;
    let phase = list(&text, "phase_us");
    if phase.is_empty() {
        return Err(format!("omp_barrier printed {:?}", text.trim()));
    }
    Ok(BarrierRow {
        kind: "openmp".into(),
        parties: threads,
        phase_us: Summary::of(&phase),
    })
}

/// The `shmpar` command-line tool: `--shmpar`, else the one beside this
/// executable (`cargo build --release -p shmpar-cli` puts it there).
pub fn shmpar_cli(run: &RunArgs) -> Result<PathBuf, String> {
    if run.no_compare {
        return Err("--no-compare".into());
    }
    let path = match &run.shmpar {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("shmpar"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "no {} (build it with `cargo build --release -p shmpar-cli`, or pass --shmpar)",
            path.display()
        ))
    }
}

/// Runs `shmpar compare` on `len` f64 with `workers` processes and threads,
/// `repeat` timed runs, sqrt_abs and mean: the harness's own kernels.
pub fn shmpar_compare(cli: &Path, len: usize, workers: usize, repeat: usize) -> Res<CompareRun> {
    let json = std::env::temp_dir().join(format!("shmpar-compare-{}.json", std::process::id()));
    let args = strings(&[
        &"compare",
        &"--kernels",
        &"sqrt_abs,mean",
        &"--backends",
        &"processes,threads",
        &"--len",
        &len,
        &"--workers",
        &workers,
        &"--repeat",
        &repeat,
        &"--json",
        &json.display(),
    ]);
    let out = Command::new(cli)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status();
    let text = std::fs::read_to_string(&json);
    let _ = std::fs::remove_file(&json);
    let status = out?;
    if !status.success() {
        return Err(format!("`shmpar {}` failed: {status}", args.join(" ")).into());
    }
    let records: Vec<serde_json::Value> = serde_json::from_str(&text?)?;
    let rows = records
        .iter()
        .map(|r| CompareRow {
            kernel: r["kernel"].as_str().unwrap_or("").to_owned(),
            backend: r["backend"].as_str().unwrap_or("").to_owned(),
            workers: r["workers"].as_u64().unwrap_or(0) as usize,
            ms: Summary::of(&floats(r, "times_s").iter().map(|s| s * 1e3).collect::<Vec<_>>()),
        })
        .collect();
    let shown: Vec<String> = args.iter().take_while(|a| *a != "--json").cloned().collect();
    Ok(CompareRun {
        command: format!("shmpar {}", shown.join(" ")),
        rows,
    })
}

/// The Python interpreter with NumPy, or why there is none.
pub fn python(run: &RunArgs) -> Result<PathBuf, String> {
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
pub fn workspace_root() -> PathBuf {
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

pub fn python_run(
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

pub fn python_barrier(py: &Path, parties: usize, rounds: usize, iters: usize) -> Res<BarrierRow> {
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
