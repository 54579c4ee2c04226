//! The `shmpar` command line, run as a separate process: listing, inspecting
//! and collecting segments this test creates, running and comparing
//! kernels, and refusing bad input with one line and a non-zero status,
//! leaving nothing behind in /dev/shm.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use ndarray::{Array1, Array2, Ix1, Ix2};
use serde_json::Value;
use shmpar::{SegmentOptions, SharedArray};

/// Every pool start collects orphans, so the test that makes one runs
/// alone (write lock); the others share (read lock).
static GC: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    GC.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    GC.write().unwrap_or_else(|e| e.into_inner())
}

/// A segment name of this test process.
fn name(what: &str) -> String {
    format!("shmpar_clitest_{what}_{}", std::process::id())
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `shmpar ARGS`, then checks that the child left no segment behind.
fn shmpar(args: &[&str]) -> Output {
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
        .filter(|s| s.creator_pid == pid)
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

fn json(args: &[&str]) -> Value {
    let text = ok(args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("shmpar {args:?} printed no JSON ({e}):\n{text}"))
}

#[test]
fn ls_lists_a_segment_of_this_process() {
    let _g = shared();
    let a = SharedArray::<f32, Ix2>::create_with(&SegmentOptions::new().name(&name("ls")), (3, 4)).unwrap();
    let table = ok(&["ls"]);
    let line = table
        .lines()
        .find(|l| l.starts_with(&a.name()))
        .unwrap_or_else(|| panic!("{} not listed:\n{table}", a.name()));
    assert!(
        line.contains("f32") && line.contains("[3, 4]") && line.contains("yes"),
        "{line}"
    );

    let list = json(&["ls", "--json"]);
    let me = list
        .as_array()
        .expect("one JSON array")
        .iter()
        .find(|s| s["name"] == a.name())
        .expect("listed in JSON");
    assert_eq!(me["dtype"], "f32");
    assert_eq!(me["shape"], serde_json::json!([3, 4]));
    assert!(me["bytes"].as_u64().unwrap() >= 48);
    assert_eq!(me["creator_pid"], std::process::id());
    assert_eq!(me["alive"], true);
}

#[test]
fn inspect_prints_header_and_statistics() {
    let _g = shared();
    let data = Array1::from_vec(vec![1.0f64, 2.0, f64::NAN, 4.0]);
    let a = SharedArray::<f64, Ix1>::from_array_with(&SegmentOptions::new().name(&name("inspect")), &data)
        .unwrap();
    let text = ok(&["inspect", &a.name()]);
    for expected in [
        "dtype        f64",
        "shape        [4]",
        "bytes        8192 (32 of data at offset 0, header page at 4096)",
        "(alive)",
        "in use       yes",
        "count        3",
        "nan          1",
        "min          1",
        "max          4",
    ] {
        assert!(text.contains(expected), "{expected:?} missing:\n{text}");
    }
    let report = json(&["inspect", "--json", &format!("/dev/shm/{}", a.name())]);
    assert_eq!(report["creator_pid"], std::process::id());
    assert_eq!(report["alive"], true);
    assert_eq!(report["in_use"], true);
    assert_eq!(report["data_offset"], 0);
    assert_eq!(report["header_offset"], 4096);
    assert_eq!(report["stats"]["count"], 3);
    assert_eq!(report["stats"]["nan"], 1);
    let mean = report["stats"]["mean"].as_f64().unwrap();
    assert!((mean - 7.0 / 3.0).abs() < 1e-12, "{mean}");

    let ints = Array2::from_shape_fn((2, 3), |(i, j)| (i * 3 + j) as i32 - 2);
    let b = SharedArray::from_array_with(&SegmentOptions::new().name(&name("inspect_i32")), &ints).unwrap();
    let report = json(&["inspect", "--json", &b.name()]);
    assert_eq!(report["dtype"], "i32");
    assert_eq!(report["shape"], serde_json::json!([2, 3]));
    assert_eq!(report["stats"]["min"], -2.0);
    assert_eq!(report["stats"]["max"], 3.0);
    assert_eq!(report["stats"]["mean"], 0.5);
}

/// Removes a file when dropped, so a failing test leaves `/dev/shm` clean.
struct Remove(PathBuf);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The offset of header field `name` in a segment of `object_size` bytes
/// (the header page is the object's last page; docs/segment-layout.md).
fn header_field(object_size: u64, name: &str) -> u64 {
    let field = shmpar_core::header::FIELDS
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no header field {name}"));
    object_size - shmpar_core::header::HEADER_PAGE_SIZE as u64 + field.offset as u64
}

/// Makes an orphan named `name`: a segment that no process holds open (a
/// handle keeps its segment in use while it lives), whose header names a
/// dead creator (`creator_pid` and `creator_start_time` forged) and, unless
/// `persist`, does not ask to be kept (`FLAG_PERSISTENT` cleared).
fn orphan(name: &str, persist: bool) -> Remove {
    // A persisted handle keeps the name when it drops.
    let a =
        SharedArray::<f64, Ix1>::create_with(&SegmentOptions::new().name(name).persist(true), 16).unwrap();
    drop(a);
    let path = PathBuf::from("/dev/shm").join(name);
    let guard = Remove(path.clone());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let size = file.metadata().unwrap().len();
    file.write_all_at(&(i32::MAX - 1).to_le_bytes(), header_field(size, "creator_pid"))
        .unwrap();
    file.write_all_at(&1u64.to_le_bytes(), header_field(size, "creator_start_time"))
        .unwrap();
    if !persist {
        let mut flags = [0u8; 4];
        file.read_exact_at(&mut flags, header_field(size, "flags"))
            .unwrap();
        let flags = u32::from_le_bytes(flags) & !shmpar_core::header::FLAG_PERSISTENT;
        file.write_all_at(&flags.to_le_bytes(), header_field(size, "flags"))
            .unwrap();
    }
    guard
}

#[test]
fn gc_removes_orphans_and_never_a_live_segment() {
    let _g = exclusive();
    let live = SharedArray::<f64, Ix1>::create_with(&SegmentOptions::new().name(&name("live")), 16).unwrap();
    let live_path = PathBuf::from("/dev/shm").join(live.name());
    let (plain_name, kept_name) = (name("orphan"), name("orphan_persisted"));
    let plain = orphan(&plain_name, false);
    let kept = orphan(&kept_name, true);
    let (plain, kept) = (&plain.0, &kept.0);

    let listed = json(&["ls", "--json"]);
    let entry = |n: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == n)
            .unwrap_or_else(|| panic!("{n} not listed"))
            .clone()
    };
    assert_eq!(entry(&plain_name)["alive"], false);
    assert_eq!(entry(&kept_name)["alive"], false);
    assert_eq!(entry(&kept_name)["persistent"], true);
    assert_eq!(entry(&live.name())["alive"], true);

    let dry = ok(&["gc", "--dry-run"]);
    assert!(dry.contains(&format!("would remove {plain_name}")), "{dry}");
    assert!(!dry.contains(&kept_name) && !dry.contains(&live.name()), "{dry}");
    assert!(plain.exists(), "--dry-run removed the orphan");

    let done = ok(&["gc"]);
    assert!(done.contains(&format!("removed {plain_name}")), "{done}");
    assert!(!plain.exists(), "gc left the orphan");
    assert!(
        kept.exists(),
        "gc removed a persisted segment without --include-persistent"
    );
    assert!(live_path.exists(), "gc removed a live segment");

    // Only a dry run here: a real `--include-persistent` would also remove
    // segments other programs on this machine persisted on purpose.
    let dry = ok(&["gc", "--dry-run", "--include-persistent"]);
    assert!(dry.contains(&format!("would remove {kept_name}")), "{dry}");
    assert!(!dry.contains(&live.name()), "{dry}");
}

#[test]
fn run_verifies_kernels_on_every_backend() {
    let _g = shared();
    for backend in ["processes", "threads", "serial"] {
        for kernel in ["sqrt", "sqrt_abs", "scale:2", "mean", "var:1", "histogram:0:1:64"] {
            let text = ok(&[
                "run",
                kernel,
                "--len",
                "10_000",
                "--workers",
                "2",
                "--repeat",
                "2",
                "--backend",
                backend,
            ]);
            assert!(text.contains("verified"), "{kernel} on {backend}:\n{text}");
        }
    }
    let text = ok(&[
        "run", "sqrt_abs", "--len", "5e3", "--dtype", "f32", "--start", "spawn",
    ]);
    assert!(
        text.contains("spawn start") && text.contains("verified"),
        "{text}"
    );
    let text = ok(&["run", "std:1", "--len", "5e3", "--dtype", "f32", "--workers", "3"]);
    assert!(text.contains("result") && text.contains("verified"), "{text}");
}

/// A pool started with `--start spawn` runs new processes of `shmpar`,
/// which find the command's kernels (fill, the elementwise map, the
/// reduction's map) by their registered names.
#[test]
fn run_and_compare_on_spawned_workers() {
    let _g = shared();
    for (kernel, dtype) in [("scale:2", "f64"), ("clamp:0.25:0.75", "f32")] {
        let text = ok(&[
            "run",
            kernel,
            "--len",
            "10_000",
            "--dtype",
            dtype,
            "--workers",
            "2",
            "--start",
            "spawn",
            "--repeat",
            "2",
        ]);
        assert!(
            text.starts_with(&format!("run {kernel}: 10000 {dtype} elements"))
                && text.contains("on processes x 2, spawn start")
                && text.contains("verified  bit-identical to the serial reference"),
            "{text}"
        );
    }
    for (kernel, dtype) in [("mean", "f64"), ("var:1", "f32"), ("histogram:0:1:8", "f64")] {
        let text = ok(&[
            "run",
            kernel,
            "--len",
            "10_000",
            "--dtype",
            dtype,
            "--workers",
            "3",
            "--start",
            "spawn",
            "--repeat",
            "2",
        ]);
        assert!(
            text.contains("on processes x 3, spawn start")
                && text.contains("  result    ")
                && text.contains("verified  within 1e-9 of the serial reference (every run)"),
            "{kernel}:\n{text}"
        );
    }
    // The histogram's counts add up to the array, whoever counted them.
    let text = ok(&[
        "run",
        "histogram:0:1:4",
        "--len",
        "1000",
        "--workers",
        "2",
        "--start",
        "spawn",
    ]);
    let counts: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("  result    ["))
        .and_then(|l| l.split(']').next())
        .expect("a histogram result")
        .split(", ")
        .map(|c| c.parse::<u64>().expect("a count"))
        .sum();
    assert_eq!(counts, 1000, "{text}");

    let table = ok(&[
        "compare",
        "--start",
        "spawn",
        "--len",
        "5000",
        "--workers",
        "2",
        "--repeat",
        "1",
        "--backends",
        "processes,serial",
        "--kernels",
        "sqrt,mean",
    ]);
    let rows: Vec<&str> = table.lines().filter(|l| l.contains(" processes ")).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(rows.iter().all(|r| r.trim_end().ends_with("yes")), "{table}");
    assert!(table.contains("mean = "), "{table}");
}

#[test]
fn serial_runs_on_one_worker() {
    let _g = shared();
    let text = ok(&[
        "run",
        "sqrt",
        "--len",
        "1000",
        "--workers",
        "4",
        "--backend",
        "serial",
    ]);
    assert!(text.contains("on serial x 1\n"), "{text}");
}

#[test]
fn compare_writes_json_and_svg() {
    let _g = shared();
    let dir = std::env::temp_dir().join(format!("shmpar-clitest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json_path, svg_path) = (dir.join("compare.json"), dir.join("compare.svg"));
    let table = ok(&[
        "compare",
        "--len",
        "20000",
        "--workers",
        "1,2",
        "--repeat",
        "2",
        "--kernels",
        "sqrt,mean,histogram:0:1:16",
        "--json",
        json_path.to_str().unwrap(),
        "--plot",
        svg_path.to_str().unwrap(),
    ]);
    assert!(
        table.contains("vs serial") && table.contains("vs threads"),
        "{table}"
    );
    let records: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let records = records.as_array().unwrap();
    // 3 kernels x (processes 1, 2 + threads 1, 2 + serial once).
    assert_eq!(records.len(), 15, "{records:?}");
    for r in records {
        for field in [
            "kernel", "backend", "workers", "len", "dtype", "median_s", "min_s", "max_s", "cold_s",
            "gb_per_s",
        ] {
            assert!(!r[field].is_null(), "{field} missing in {r}");
        }
        assert_eq!(r["verified"], true, "{r}");
        assert_eq!(r["len"], 20000);
        assert_eq!(r["dtype"], "f64");
        assert!(r["min_s"].as_f64() <= r["median_s"].as_f64());
    }
    for backend in ["processes", "threads", "serial"] {
        assert!(
            records.iter().any(|r| r["backend"] == backend),
            "no {backend} records"
        );
    }
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("processes"),
        "not an SVG chart"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_is_one_line_and_a_failure() {
    let _g = shared();
    let cases: &[&[&str]] = &[
        &["run", "cube"],
        &["run", "scale:x"],
        &["run", "clamp:1:0"],
        &["run", "histogram:0:1:0"],
        &["run", "histogram:0:1:10000000", "--len", "100"],
        &["run", "sqrt", "--len", "0"],
        &["run", "sqrt", "--len", "-5"],
        &["run", "sqrt", "--len", "abc"],
        &["run", "sqrt", "--len", "1.5"],
        &["run", "sqrt", "--len", "1e40"],
        &["run", "sqrt", "--len", "1e13"],
        &["run", "sqrt", "--len", "1e18"],
        &["run", "sqrt", "--workers", "0"],
        &["run", "sqrt", "--workers", "2000"],
        &["run", "sqrt", "--len", "3", "--workers", "4"],
        &["run", "sqrt", "--backend", "gpu"],
        &["run", "sqrt", "--dtype", "f16"],
        &["run", "sqrt", "--repeat", "0"],
        &["run"],
        &["compare", "--kernels", "sqrt,cube"],
        &["compare", "--workers", "1,0"],
        &["compare", "--workers", "1,1025"],
        &["compare", "--len", "10", "--workers", "11"],
        &["compare", "--len", "1e12"],
        &["compare", "--backends", "gpu"],
        &["compare", "--len", "100", "--json", "/nonexistent/dir/x.json"],
        &["inspect", "shmpar_clitest_no_such_segment"],
        &["inspect", "../etc/passwd"],
        &["frobnicate"],
    ];
    for args in cases {
        let out = shmpar(args);
        assert_ne!(out.code, 0, "shmpar {args:?} succeeded:\n{}", out.stdout);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "shmpar {args:?}: not one line:\n{}", out.stderr);
        assert!(
            lines[0].starts_with("shmpar: error: "),
            "shmpar {args:?}: {}",
            lines[0]
        );
        assert!(!out.stderr.contains("panicked"), "shmpar {args:?} panicked");
    }
}

#[test]
fn inspect_refuses_a_file_that_is_not_shmpar() {
    let _g = shared();
    let path = PathBuf::from("/dev/shm").join(name("not_shmpar"));
    std::fs::write(&path, vec![7u8; 4096]).unwrap();
    let out = shmpar(&["inspect", path.file_name().unwrap().to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.code, 1);
    assert!(out.stderr.starts_with("shmpar: error: ") && out.stderr.contains("not a shmpar segment"));
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

#[test]
fn help_and_version_succeed() {
    let _g = shared();
    for sub in ["ls", "gc", "inspect", "run", "compare"] {
        assert!(ok(&[sub, "--help"]).contains("Usage"));
    }
    assert!(ok(&["--version"]).starts_with("shmpar "));
    for sub in ["run", "compare"] {
        let help = ok(&[sub, "--help"]);
        for value in ["processes:", "threads:", "serial:", "fork:", "spawn:"] {
            assert!(
                help.contains(value),
                "`{sub} --help` does not list {value}\n{help}"
            );
        }
    }
}

/// Names with control characters (ESC starts colour sequences, CR and LF
/// start lines) are listed quoted, as GNU `ls` quotes them, so no name can
/// forge a row of the table; JSON keeps them exact.
#[test]
fn ls_quotes_names_with_control_characters() {
    let _g = shared();
    let pid = std::process::id();
    let names = [
        format!("shmpar_clitest_esc\x1b[31m_{pid}"),
        format!("shmpar_clitest_cr\rshmpar_forged_{pid}"),
        format!("shmpar_clitest_lf\nshmpar_forged  f64  [1]  8 B  1  yes  no  ready_{pid}"),
    ];
    let quoted = [
        format!("$'shmpar_clitest_esc\\033[31m_{pid}'"),
        format!("$'shmpar_clitest_cr\\rshmpar_forged_{pid}'"),
        format!("$'shmpar_clitest_lf\\nshmpar_forged  f64  [1]  8 B  1  yes  no  ready_{pid}'"),
    ];
    let arrays: Vec<SharedArray<f64, Ix1>> = names
        .iter()
        .map(|n| SharedArray::create_with(&SegmentOptions::new().name(n), 4).expect("create"))
        .collect();
    let table = ok(&["ls"]);
    assert!(
        !table.contains('\x1b') && !table.contains('\r'),
        "raw control characters in the table:\n{table:?}"
    );
    assert!(
        !table.lines().any(|l| l.starts_with("shmpar_forged")),
        "a name forged a row:\n{table}"
    );
    for q in &quoted {
        let line = table
            .lines()
            .find(|l| l.starts_with(q.as_str()))
            .unwrap_or_else(|| panic!("{q} not listed:\n{table}"));
        assert!(line.contains("f64") && line.contains("[4]"), "{line}");
    }
    let list = json(&["ls", "--json"]);
    for n in &names {
        assert!(
            list.as_array().unwrap().iter().any(|s| s["name"] == n.as_str()),
            "{n:?} not exact in JSON"
        );
    }
    let report = ok(&["inspect", &names[0]]);
    assert!(
        report.starts_with(&format!("name         {}\n", quoted[0])),
        "{report:?}"
    );
    drop(arrays);
}

/// `inspect` reads a segment with `pread`, never mapping it: a segment
/// that its owner shrinks while it is read is an error (or a consistent
/// read), never SIGBUS. The truncating thread cuts the object to one page
/// and grows it back, header restored, as fast as it can, while
/// `shmpar inspect` runs again and again in child processes.
#[test]
fn inspect_survives_a_segment_shrinking_under_it() {
    use std::os::unix::process::ExitStatusExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    // No pool of another test may collect the file while its header is cut.
    let _g = exclusive();
    let seg = name("shrinking");
    let a = SharedArray::<f64, Ix1>::create_with(&SegmentOptions::new().name(&seg).persist(true), 1 << 20)
        .unwrap();
    drop(a);
    let path = PathBuf::from("/dev/shm").join(&seg);
    let _remove = Remove(path.clone());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let size = file.metadata().unwrap().len();
    let page = shmpar_core::header::HEADER_PAGE_SIZE as u64;
    let mut header = vec![0u8; page as usize];
    file.read_exact_at(&mut header, size - page).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let cutter = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut cuts = 0u64;
            while !stop.load(Ordering::Relaxed) {
                file.set_len(4096).unwrap();
                std::thread::sleep(std::time::Duration::from_micros(300));
                file.set_len(size).unwrap();
                file.write_all_at(&header, size - page).unwrap();
                // Whole for 1 to 15 ms: some reads start and end in one
                // whole spell, some start in one and meet the next cut.
                std::thread::sleep(std::time::Duration::from_micros(1000 + cuts * 7919 % 14_000));
                cuts += 1;
            }
            cuts
        })
    };
    let trials = 200;
    let (mut read, mut cut_while_read, mut refused) = (0, 0, 0);
    for _ in 0..trials {
        let child = Command::new(env!("CARGO_BIN_EXE_shmpar"))
            .args(["inspect", &seg])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("run shmpar inspect");
        let stderr = String::from_utf8_lossy(&child.stderr);
        assert_eq!(
            child.status.signal(),
            None,
            "inspect was killed by signal {:?}; stderr: {stderr}",
            child.status.signal()
        );
        match child.status.code() {
            Some(0) => read += 1,
            Some(1) => {
                assert!(
                    stderr.starts_with("shmpar: error: ") && stderr.lines().count() == 1,
                    "{stderr}"
                );
                if stderr.contains("is truncated") {
                    cut_while_read += 1;
                } else {
                    refused += 1;
                }
            }
            other => panic!("inspect exited with {other:?}: {stderr}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let cuts = cutter.join().unwrap();
    assert!(cuts > 0, "the segment was never cut");
    eprintln!(
        "inspect vs. truncation: {trials} trials: {read} read whole, {cut_while_read} cut while read, \
         {refused} refused at the header; {cuts} cuts"
    );
}

/// `run` prints each line when what it reports is done: the first of a
/// hundred runs over 10^7 elements shows while the others still run.
/// SIGTERM then ends the command, and it removes its segments on the way
/// out.
#[test]
fn run_prints_each_run_as_it_completes() {
    use std::io::{BufRead, BufReader};
    let _g = shared();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmpar"))
        .args(["run", "exp", "--len", "1e7", "--workers", "2", "--repeat", "100"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start shmpar");
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while let Some(Ok(line)) = lines.next() {
        let done = line.starts_with("  run 1 ");
        seen.push(line);
        if done {
            break;
        }
    }
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    // Whatever it printed before SIGTERM: a command that prints only when
    // it finishes would have written its median line with the run lines.
    seen.extend(lines.map_while(Result::ok));
    let status = child.wait().expect("wait for shmpar");
    assert!(
        seen.iter().any(|l| l.starts_with("  run 1 ")),
        "no run lines: {seen:?}"
    );
    assert!(
        !seen.iter().any(|l| l.starts_with("  median")),
        "the run lines came only with the end of the command: {:?}",
        &seen[seen.len().saturating_sub(3)..]
    );
    assert!(!status.success(), "{status:?}");
    let left: Vec<String> = shmpar::gc::list()
        .into_iter()
        .filter(|s| s.creator_pid == pid as i32)
        .map(|s| s.name)
        .collect();
    assert!(left.is_empty(), "SIGTERM left {left:?}");
}

/// A histogram of many bins shows 16 of them and its totals; `--all-bins`
/// lists every one.
#[test]
fn large_histograms_are_summarized() {
    let _g = shared();
    let text = ok(&["run", "histogram:0:1:100", "--len", "1000", "--workers", "2"]);
    let result = text
        .lines()
        .find(|l| l.starts_with("  result    "))
        .expect("a result line");
    assert!(
        result.contains(", ... 84 more ..., ") && result.contains("(100 bins, 1000 counted; below 0"),
        "{result}"
    );
    let full = ok(&[
        "run",
        "histogram:0:1:100",
        "--len",
        "1000",
        "--workers",
        "2",
        "--all-bins",
    ]);
    for prefix in ["  result    [", "  reference ["] {
        let counts: Vec<u64> = full
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|l| l.split(']').next())
            .expect("a histogram")
            .split(", ")
            .map(|c| c.parse().expect("a count"))
            .collect();
        assert_eq!(counts.len(), 100);
        assert_eq!(counts.iter().sum::<u64>(), 1000);
    }
}

/// `--huge-pages on` where /dev/shm offers none is one error line that says
/// what to configure, and leaves nothing; `try` falls back and verifies.
#[test]
fn huge_pages_on_without_huge_pages_says_what_to_configure() {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let huge_shm = mounts
        .lines()
        .any(|l| l.split(' ').nth(1) == Some("/dev/shm") && (l.contains("huge=") || l.contains("hugetlbfs")));
    if huge_shm {
        eprintln!("SKIPPED: /dev/shm is mounted with huge pages here");
        return;
    }
    let out = shmpar(&[
        "run",
        "sqrt_abs",
        "--len",
        "1e5",
        "--workers",
        "2",
        "--huge-pages",
        "on",
    ]);
    let stderr = &out.stderr;
    assert_eq!(out.code, 1, "{stderr}");
    assert!(
        stderr.contains("huge=within_size") && stderr.contains("nr_hugepages"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let out = shmpar(&[
        "run",
        "sqrt_abs",
        "--len",
        "1e5",
        "--workers",
        "2",
        "--huge-pages",
        "try",
    ]);
    let stdout = &out.stdout;
    assert!(out.code == 0 && stdout.contains("verified"), "{stdout}");
}
