//! The four workloads (`triad`, `matvec`, `kmeans`, `mandelbrot`) in
//! `shmpar run` and `shmpar compare`, at small sizes, on every backend and
//! both start methods, and `--timeout` stopping a job that cannot finish.
//! Every command must leave nothing in /dev/shm: neither its own segments
//! nor its workers'.

use std::collections::HashSet;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Small sizes of the four: every spec is the workload's own size.
const SMALL: &str = "triad:2e4,matvec:96,kmeans:3000:4,mandelbrot:96:48:200";

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Names of the shmpar segments in /dev/shm now.
fn segments() -> HashSet<String> {
    shmpar::gc::list().into_iter().map(|s| s.name).collect()
}

/// Runs `shmpar ARGS`; then checks that no segment of the command is left:
/// none whose creator is the command, and no new one whose creator is dead
/// (a worker's, since the command's workers die with it).
fn shmpar(args: &[&str]) -> Output {
    let before = segments();
    let child = Command::new(env!("CARGO_BIN_EXE_shmpar"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shmpar");
    let pid = child.id() as i32;
    let out = child.wait_with_output().expect("wait for shmpar");
    let left: Vec<String> = shmpar::gc::list()
        .into_iter()
        .filter(|s| s.creator_pid == pid || (!s.alive && !before.contains(&s.name)))
        .map(|s| s.name)
        .collect();
    assert!(left.is_empty(), "shmpar {args:?} left segments behind: {left:?}");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(args: &[&str]) -> String {
    let out = shmpar(args);
    assert_eq!(
        out.code, 0,
        "shmpar {args:?} failed:\n{}\n{}",
        out.stdout, out.stderr
    );
    out.stdout
}

/// A failure: one line on stderr, `shmpar: error: ...`, status 1.
fn fails(args: &[&str]) -> String {
    let out = shmpar(args);
    assert_eq!(out.code, 1, "shmpar {args:?}:\n{}\n{}", out.stdout, out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "shmpar {args:?}: not one line:\n{}", out.stderr);
    assert!(lines[0].starts_with("shmpar: error: "), "{}", lines[0]);
    lines[0].to_string()
}

#[test]
fn run_verifies_each_workload_on_every_backend() {
    for spec in SMALL.split(',').chain(["mandelbrot-static:96:48:200"]) {
        for backend in ["processes", "threads", "serial"] {
            let text = ok(&[
                "run",
                spec,
                "--workers",
                "3",
                "--repeat",
                "2",
                "--backend",
                backend,
            ]);
            let name = spec.split(':').next().unwrap();
            assert!(
                text.starts_with(&format!("run {name}:")) && text.contains("  verified  "),
                "{spec} on {backend}:\n{text}"
            );
            let expected_workers = if backend == "serial" { 1 } else { 3 };
            assert!(
                text.contains(&format!("on {backend} x {expected_workers}")),
                "{text}"
            );
        }
    }
}

#[test]
fn compare_runs_the_workloads_and_reports_dynamic_against_static() {
    let dir = std::env::temp_dir().join(format!("shmpar-workloads-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json_path = dir.join("workloads.json");
    let table = ok(&[
        "compare",
        "--kernels",
        SMALL,
        "--workers",
        "2",
        "--repeat",
        "2",
        "--json",
        json_path.to_str().unwrap(),
    ]);
    let records: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let records = records.as_array().unwrap();
    let kernels = [
        "triad:20000",
        "matvec:96",
        "kmeans:3000:4",
        "mandelbrot:96:48:200",
        "mandelbrot-static:96:48:200",
    ];
    // Five kernels (mandelbrot brings its static twin) x processes, threads, serial.
    assert_eq!(records.len(), 15, "{table}");
    for r in records {
        for field in ["kernel", "backend", "workers", "median_s", "cold_s", "problem"] {
            assert!(!r[field].is_null(), "{field} missing in {r}");
        }
        assert_eq!(r["verified"], true, "{r}");
        assert!(kernels.contains(&r["kernel"].as_str().unwrap()), "{r}");
        let mandelbrot = r["kernel"].as_str().unwrap().starts_with("mandelbrot");
        assert_eq!(r["gb_per_s"].is_null(), mandelbrot, "{r}");
        assert_eq!(r["dtype"], if mandelbrot { "u32" } else { "f64" });
        let dynamic = r["kernel"] == "mandelbrot:96:48:200" && r["backend"] != "serial";
        assert_eq!(r["vs_static"].is_f64(), dynamic, "{r}");
        if r["backend"] != "threads" {
            continue;
        }
        assert_eq!(r["vs_threads"].as_f64(), Some(1.0));
    }
    assert_eq!(records.iter().filter(|r| r["kernel"] == "matvec:96").count(), 3);
    for kernel in kernels {
        let rows: Vec<&str> = table
            .lines()
            .filter(|l| l.starts_with(&format!("{kernel} ")) && !l.contains("dynamic schedule"))
            .collect();
        assert_eq!(rows.len(), 3, "{kernel}:\n{table}");
        assert!(rows.iter().all(|r| r.ends_with("yes")), "{table}");
    }
    for backend in ["processes", "threads"] {
        assert!(
            table.contains(&format!(
                "mandelbrot:96:48:200 on {backend} x 2: dynamic schedule "
            )),
            "{table}"
        );
    }
    assert!(!table.contains("on serial x 1: dynamic"), "{table}");
}

/// Spawned workers find the workloads' kernels by their registered names.
#[test]
fn compare_runs_the_workloads_on_spawned_workers() {
    let table = ok(&[
        "compare",
        "--kernels",
        SMALL,
        "--workers",
        "2",
        "--repeat",
        "1",
        "--backends",
        "processes",
        "--start",
        "spawn",
    ]);
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.contains(" processes ") && !l.contains("dynamic schedule"))
        .collect();
    assert_eq!(rows.len(), 5, "{table}");
    assert!(rows.iter().all(|r| r.ends_with("yes")), "{table}");
}

#[test]
fn catalog_kernels_and_workloads_share_a_comparison() {
    let table = ok(&[
        "compare",
        "--kernels",
        "sqrt,triad:1e4,mean",
        "--len",
        "5000",
        "--workers",
        "1,2",
        "--repeat",
        "1",
    ]);
    assert!(table.starts_with("compare: 5000 f64 elements"), "{table}");
    assert!(
        table.contains("  triad:10000: a = b + 3·c over 3 x 10000 f64"),
        "{table}"
    );
    assert!(table.contains("mean = "), "{table}");
}

#[test]
fn bad_workload_specs_are_one_line_errors() {
    for args in [
        &["run", "triad:0"][..],
        &["run", "triad:1:2"],
        &["run", "kmeans:10"],
        &["run", "mandelbrot:64"],
        &["run", "mandelbrot:64:32:1e10"],
        &["run", "matvec:1e10"],
        &["run", "triad:1e4", "--dtype", "f32"],
        &["run", "mandelbrot:64:8:10", "--workers", "9"],
        &["compare", "--kernels", "triad:1e4", "--dtype", "f32"],
        &["compare", "--kernels", "matvec:1e6"],
        &["run", "sqrt", "--timeout", "1", "--backend", "threads"],
        &["run", "sqrt", "--timeout", "1", "--backend", "serial"],
    ] {
        fails(args);
    }
    for bad in ["0", "-1", "x"] {
        let out = shmpar(&["run", "sqrt", "--timeout", bad]);
        assert_eq!(out.code, 2, "--timeout {bad}: {}", out.stderr);
    }
}

/// An image whose pixels inside the set take 4·10^9 iterations each
/// cannot be computed in a fraction of a second on any machine: the job
/// runs past `--timeout`, the command says which workers had not finished,
/// fails, and leaves no segment (its own or its workers').
#[test]
fn timeout_stops_a_job_that_cannot_finish() {
    let endless = "mandelbrot:64:32:4000000000";
    for start in ["fork", "spawn"] {
        let line = fails(&[
            "run",
            endless,
            "--workers",
            "2",
            "--timeout",
            "0.3",
            "--start",
            start,
        ]);
        assert!(
            line.contains(&format!("{endless} on processes x 2: the job ran past --timeout"))
                && line.contains("had not finished and w"),
            "{line}"
        );
        assert!(line.contains("worker 0") || line.contains("worker 1") || line.contains("workers 0, 1"));
    }
    let line = fails(&[
        "compare",
        "--kernels",
        &format!("sqrt,{endless}"),
        "--len",
        "1000",
        "--workers",
        "2",
        "--timeout",
        "0.3",
    ]);
    assert!(
        line.contains(&format!("{endless} on processes x 2: the job ran past --timeout")),
        "{line}"
    );
    // A deadline that the jobs meet changes nothing.
    let text = ok(&["run", "mandelbrot:64:32:100", "--workers", "2", "--timeout", "60"]);
    assert!(text.contains("verified"), "{text}");
}
