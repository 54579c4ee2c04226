//! `benchmarks.md`: targets (met or missed, by how much), tables, charts.

use std::fmt::Write as _;
use std::path::Path;

use crate::charts::{self, Series};
use crate::results::{Config, Results};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const MIB: f64 = 1024.0 * 1024.0;

fn slug(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s.trim_matches('-').to_owned()
}

/// `value` against an upper `limit`: "met (0.97×, 3% under)" / "**missed** by 25% (1.25×)".
fn at_most(value: f64, limit: f64) -> String {
    if !value.is_finite() || !limit.is_finite() {
        return "not measured".into();
    }
    let r = value / limit;
    if r <= 1.0 {
        format!("met ({:.0}% under the limit)", (1.0 - r) * 100.0)
    } else {
        format!("**missed** by {:.1}% ({r:.3}× the limit)", (r - 1.0) * 100.0)
    }
}

/// `value` against a lower `limit` (bigger is better).
fn at_least(value: f64, limit: f64) -> String {
    if !value.is_finite() || !limit.is_finite() {
        return "not measured".into();
    }
    let r = value / limit;
    if r >= 1.0 {
        format!("met ({r:.1}× the required factor)")
    } else {
        format!("**missed**: {:.0}% short", (1.0 - r) * 100.0)
    }
}

fn gbps(bytes: f64, ms: f64) -> f64 {
    bytes / (ms * 1e-3) / 1e9
}

/// Bytes a configuration moves: sqrt reads and writes, the mean reads.
fn traffic(c: &Config) -> (f64, f64) {
    let b = (c.len * c.elem_bytes) as f64;
    (2.0 * b, b)
}

fn fmt_len(n: usize) -> String {
    let e = (n as f64).log10();
    if n >= 1000 && (e - e.round()).abs() < 1e-9 {
        format!("10^{}", e.round())
    } else {
        n.to_string()
    }
}

fn fmt_bytes(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{} GiB", b >> 30)
    } else {
        format!("{} MiB", b >> 20)
    }
}

/// Writes `benchmarks.md` and its charts under `out`.
/// Said when no larger machine's results are merged: the scaling to 16
/// workers the issue asks for needs a machine with 16 cores.
const NO_DEVICE: &str = "\n## Beyond 2 cores\n\nNot measured yet: scaling to 4, 8 and 16 workers needs a machine with that many cores, and none was available when this page was generated. On one, build `cargo build --release -p shmpar-benches --bin harness` here, run `benches/harness/device.sh OUT` there (a prebuilt binary, no cargo, no network), and merge with `harness --merge-device OUT/results.json --device-label \"16-core ...\"`: the results appear on this page with their own targets table and charts.\n";

pub fn write(out: &Path, res: &Results, devices: &[Results]) -> Res<()> {
    std::fs::create_dir_all(out.join("img"))?;
    let mut md = String::new();
    let cmd = &res.command;
    writeln!(
        md,
        "# Benchmarks\n\n\
         shmpar worker processes against the same kernels on rayon threads (`Backend::Threads`), \
         serially, against the Python pattern shmpar replaces (NumPy + `multiprocessing.shared_memory` \
         + one `Process` per chunk, fork and spawn), and against the bandwidth bound of the machine. \
         Written by the comparison harness; every figure on this page comes from one run of\n\n\
         ```sh\n{cmd}\n```\n\n\
         (`benches/src/bin/harness/`; {:.0} s on {}). The machine is shared and noisy: \
         times are medians, and comparisons are ratios within the same run. \
         Raw numbers: [`results.json`](results.json).\n",
        res.wall_s, res.machine.label
    )?;
    md.push_str(&targets(res));
    md.push_str(&machine_section(out, res, "local")?);
    for d in devices {
        writeln!(
            md,
            "\n---\n\n# On {}\n\nMerged from `results-device-*.json`, measured there with\n\n```sh\n{}\n```\n",
            d.machine.label, d.command
        )?;
        md.push_str(&targets(d).replace("## Targets", "## Targets there"));
        md.push_str(&machine_section(out, d, &slug(&d.machine.label))?);
    }
    if devices.is_empty() {
        md.push_str(NO_DEVICE);
    }
    md.push_str("\nWhere the time went on the way to these figures, and what fixed it: [performance.md](performance.md).\n");
    md.push_str(METHOD);
    std::fs::write(out.join("benchmarks.md"), md)?;
    Ok(())
}

fn targets(r: &Results) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "\n## Targets\n");
    let cpus = r.machine.cpus;
    let _ = writeln!(
        md,
        "Headline: sqrt(abs(x)) in place, then the mean, over {} {} ({:.0} MB) with {} workers, on {} ({} CPUs).\n",
        fmt_len(r.headline_len),
        r.dtype,
        r.headline().map_or(0.0, |c| (c.len * c.elem_bytes) as f64 / 1e6),
        r.headline_workers,
        r.machine.cpu,
        cpus
    );
    let _ = writeln!(md, "| Target | Measured | Verdict |\n|---|---|---|");
    let mut row = |t: &str, m: String, v: String| {
        let _ = writeln!(md, "| {t} | {m} | {v} |");
    };
    if let Some(h) = r.headline() {
        let (p, t, b) = (&h.processes, &h.threads, &h.bound);
        let x = p.warm_sqrt_ms.median / t.warm_sqrt_ms.median;
        row(
            "warm sqrt: processes ≤ 1.03 × threads",
            format!(
                "{x:.3}× ({:.1} vs {:.1} ms)",
                p.warm_sqrt_ms.median, t.warm_sqrt_ms.median
            ),
            at_most(x, 1.03),
        );
        let x = p.warm_mean_ms.median / t.warm_mean_ms.median;
        row(
            "warm mean: processes ≤ 1.03 × threads",
            format!(
                "{x:.3}× ({:.1} vs {:.1} ms)",
                p.warm_mean_ms.median, t.warm_mean_ms.median
            ),
            at_most(x, 1.03),
        );
        // The sqrt is bound by whichever is slower on this machine: memory
        // (the in-place pass) or the vector square-root unit (the C
        // reference, which the compiler vectorizes for this very CPU).
        let (bound_ms, bound_what) = match &r.c_reference {
            Some(c) if c.sqrt_ms > b.warm_sqrt_ms.median => {
                (c.sqrt_ms, "the C reference: the vector sqrt unit")
            }
            _ => (b.warm_sqrt_ms.median, "the in-place memory pass"),
        };
        let x = p.warm_sqrt_ms.median / bound_ms;
        row(
            "warm sqrt: processes ≤ 1.10 × the machine's bound (slower of the in-place pass and the vector sqrt unit)",
            format!(
                "{x:.2}× ({:.1} ms vs {bound_ms:.1} ms, {bound_what}; in-place pass {:.1} ms{})",
                p.warm_sqrt_ms.median,
                b.warm_sqrt_ms.median,
                match &r.c_reference {
                    Some(c) => format!(", C reference {:.1} ms", c.sqrt_ms),
                    None => String::new(),
                }
            ),
            at_most(x, 1.10),
        );
        let x = p.warm_mean_ms.median / b.warm_mean_ms.median;
        row(
            "warm mean: processes ≤ 1.10 × bandwidth bound (read pass)",
            format!(
                "{x:.2}× ({:.1} vs {:.1} ms)",
                p.warm_mean_ms.median, b.warm_mean_ms.median
            ),
            at_most(x, 1.10),
        );
        let x = p.cold_ms() / t.cold_ms();
        row(
            "cold (pool start + first sqrt + first mean): processes ≤ 1.20 × threads",
            format!("{x:.2}× ({:.1} vs {:.1} ms)", p.cold_ms(), t.cold_ms()),
            at_most(x, 1.20),
        );
        for (method, need) in [("fork", 2.5), ("spawn", 5.0)] {
            match r.python(method, r.headline_workers) {
                Some(py) => {
                    let x = py.cold_total_ms / p.cold_ms();
                    row(
                        &format!("cold: Python {method} ≥ {need}× slower than shmpar"),
                        format!("{x:.2}× ({:.1} vs {:.1} ms)", py.cold_total_ms, p.cold_ms()),
                        at_least(x, need),
                    );
                }
                None => row(
                    &format!("cold: Python {method} ≥ {need}× slower than shmpar"),
                    "not measured".into(),
                    r.python_skipped.clone().unwrap_or_else(|| "not measured".into()),
                ),
            }
        }
    }
    let one_per_core = r.barrier("shmpar", cpus);
    if let Some(b) = one_per_core {
        row(
            &format!("barrier, {cpus} processes ({cpus} CPUs): median < 2 µs"),
            format!("{:.2} µs", b.phase_us.median),
            at_most(b.phase_us.median, 2.0),
        );
        match r.barrier("python", cpus) {
            Some(py) => {
                let x = py.phase_us.median / b.phase_us.median;
                row(
                    "barrier: ≥ 50× faster than multiprocessing.Barrier",
                    format!(
                        "{x:.0}× ({:.1} vs {:.2} µs)",
                        py.phase_us.median, b.phase_us.median
                    ),
                    at_least(x, 50.0),
                );
            }
            None => row(
                "barrier: ≥ 50× faster than multiprocessing.Barrier",
                "not measured".into(),
                "Python skipped".into(),
            ),
        }
    }
    let over = r
        .barriers
        .iter()
        .filter(|b| b.kind == "shmpar" && b.parties > cpus)
        .map(|b| b.parties)
        .max();
    if let Some(n) = over {
        if let (Some(s), Some(f)) = (r.barrier("shmpar", n), r.barrier("futex", n)) {
            let x = s.phase_us.median / f.phase_us.median;
            row(
                &format!("barrier, {n} processes on {cpus} CPUs: ≤ 2 × pure futex"),
                format!(
                    "{x:.2}× ({:.1} vs {:.1} µs)",
                    s.phase_us.median, f.phase_us.median
                ),
                at_most(x, 2.0),
            );
        }
    }
    let attached: Vec<_> = r.segments.iter().filter(|s| s.skipped.is_none()).collect();
    if let (Some(small), Some(big)) = (attached.first(), attached.last()) {
        row(
            &format!("attach to a {} segment < 100 µs", fmt_bytes(big.bytes)),
            format!("{:.1} µs", big.attach_us.median),
            at_most(big.attach_us.median, 100.0),
        );
        let x = big.attach_us.median / small.attach_us.median;
        row(
            &format!(
                "attach independent of size ({} vs {}; ≤ 1.5×)",
                fmt_bytes(big.bytes),
                fmt_bytes(small.bytes)
            ),
            format!("{x:.2}×"),
            at_most(x, 1.5),
        );
    }
    if let Some(pss) = r.headline().and_then(|h| h.pss.as_ref()) {
        let limit = 1.05 * pss.array_bytes as f64 + 20.0 * MIB;
        row(
            "PSS of coordinator + workers ≤ 1.05 × array + 20 MB",
            format!(
                "{:.0} MiB for a {:.0} MiB array",
                pss.total_bytes as f64 / MIB,
                pss.array_bytes as f64 / MIB
            ),
            at_most(pss.total_bytes as f64, limit),
        );
    }
    if let Some(d) = r.dispatch("pool: for_each_chunk_with (persistent workers)") {
        row(
            "dispatch of a 1,000-element job < 20 µs",
            format!("{:.1} µs", d.us.median),
            at_most(d.us.median, 20.0),
        );
    }
    md
}

fn machine_section(out: &Path, r: &Results, tag: &str) -> Res<String> {
    let mut md = String::new();
    let m = &r.machine;
    writeln!(
        md,
        "\n## Machine: {}\n\n{}, {} CPUs, {:.0} GiB memory, Linux {}, AVX2: {}, /dev/shm free: {:.0} GiB.\n",
        m.label,
        m.cpu,
        m.cpus,
        m.memory_gib,
        m.kernel,
        if m.avx2 { "yes" } else { "no" },
        m.shm_free_gib
    )?;

    if let Some(h) = r.headline() {
        let (sq, me) = traffic(h);
        writeln!(
            md,
            "## Headline: {} {}, {} workers\n",
            fmt_len(h.len),
            h.dtype,
            h.workers
        )?;
        writeln!(
            md,
            "Warm = median of {} repeats (the backends take turns); cold = pool start + first sqrt + first mean in a fresh process. GB/s count 2 × {} B per element for sqrt (read + write) and {} B for the mean.\n",
            h.repeat, h.elem_bytes, h.elem_bytes
        )?;
        writeln!(
            md,
            "| Backend | cold ms (start + sqrt + mean) | warm sqrt ms | warm mean ms | sqrt GB/s | mean GB/s | warm ÷ threads | warm ÷ bound |\n|---|---|---|---|---|---|---|---|"
        )?;
        let tw = h.threads.warm_ms();
        let bw = h.bound.warm_ms();
        for (name, t) in [
            ("shmpar processes", &h.processes),
            ("shmpar threads (rayon)", &h.threads),
            ("serial", &h.serial),
            ("bandwidth bound", &h.bound),
        ] {
            writeln!(
                md,
                "| {name} | {:.1} ({:.1} + {:.1} + {:.1}) | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
                t.cold_ms(),
                t.cold_build_ms,
                t.cold_sqrt_ms,
                t.cold_mean_ms,
                t.warm_sqrt_ms.median,
                t.warm_mean_ms.median,
                gbps(sq, t.warm_sqrt_ms.median),
                gbps(me, t.warm_mean_ms.median),
                t.warm_ms() / tw,
                t.warm_ms() / bw
            )?;
        }
        for w in [r.headline_workers] {
            for method in ["fork", "spawn"] {
                if let Some(py) = r.python(method, w) {
                    writeln!(
                        md,
                        "| Python seed pattern, {method} | {:.1} | (processes {:.1}) | {:.1} | | | {:.2} | {:.2} |",
                        py.cold_total_ms,
                        py.warm_processes_ms.median,
                        py.warm_mean_ms.median,
                        py.warm_total_ms.median / tw,
                        py.warm_total_ms.median / bw
                    )?;
                }
            }
        }
        if let Some(c) = &r.c_reference {
            writeln!(
                md,
                "| C reference, {} OpenMP threads | | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
                c.threads,
                c.sqrt_ms,
                c.sum_ms,
                gbps(sq, c.sqrt_ms),
                gbps(me, c.sum_ms),
                (c.sqrt_ms + c.sum_ms) / tw,
                (c.sqrt_ms + c.sum_ms) / bw
            )?;
        }
        match (&r.c_reference, &r.c_reference_skipped) {
            (Some(c), _) => writeln!(
                md,
                "\nC reference: `benches/c/seed_reference.c`, the same sqrt(|x|) in place and sum over {} f64, built in this run with `{}` (the compiler may use every vector instruction of this CPU; shmpar is built for generic x86-64 and picks AVX2 at run time). It is the bound of the sqrt on a CPU whose vector square-root unit is slower than memory.",
                fmt_len(c.len),
                c.build
            )?,
            (None, Some(why)) => writeln!(md, "\nC reference not measured: {why}.")?,
            (None, None) => {}
        }
        writeln!(
            md,
            "\nThe means agree across backends: {} (processes {:.17}, threads {:.17}, serial {:.17}).\n",
            if h.means[0] == h.means[1] && h.means[1] == h.means[2] {
                "bit for bit"
            } else {
                "**NOT bit for bit**"
            },
            h.means[0],
            h.means[1],
            h.means[2]
        )?;
        writeln!(
            md,
            "Where the cold time goes: the workers took {} minor page faults in their first job ({} per worker per MiB of their chunk; a fresh mapping faults once per 4 KiB page) and {} in their second.\n",
            h.worker_first_job_faults,
            format_args!(
                "{:.0}",
                h.worker_first_job_faults as f64 / ((h.len * h.elem_bytes) as f64 / MIB)
            ),
            h.worker_second_job_faults
        )?;
        if !r.python.is_empty() {
            writeln!(
                md,
                "### Python seed pattern\n\nEach run starts one `Process` per chunk (`arr[a:b] = np.sqrt(np.abs(arr[a:b]))` in the worker), joins them, then takes `shared.mean()` in the parent. Cold = the first run in a fresh interpreter; warm = median of the later runs (each still starts its processes: that is the pattern). Start-up = start and join of processes that do nothing. Python {}, NumPy {}.\n",
                r.python[0].python, r.python[0].numpy
            )?;
            writeln!(
                md,
                "| Start method | workers | cold ms | warm ms | processes part | mean part | start-up alone | cold ÷ shmpar cold | warm ÷ shmpar warm |\n|---|---|---|---|---|---|---|---|---|"
            )?;
            for py in &r.python {
                let c = r.config(py.len, py.workers);
                writeln!(
                    md,
                    "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
                    py.method,
                    py.workers,
                    py.cold_total_ms,
                    py.warm_total_ms.median,
                    py.warm_processes_ms.median,
                    py.warm_mean_ms.median,
                    py.startup_ms,
                    c.map_or("".into(), |c| format!(
                        "{:.1}×",
                        py.cold_total_ms / c.processes.cold_ms()
                    )),
                    c.map_or("".into(), |c| format!(
                        "{:.1}×",
                        py.warm_total_ms.median / c.processes.warm_ms()
                    ))
                )?;
            }
            md.push('\n');
        } else if let Some(why) = &r.python_skipped {
            writeln!(md, "Python seed pattern: skipped ({why}).\n")?;
        }
    }

    // Scaling by workers.
    let by_workers: Vec<&Config> = r
        .workers
        .iter()
        .filter_map(|&w| r.config(r.headline_len, w))
        .collect();
    if !by_workers.is_empty() {
        let img = format!("img/{tag}-workers.svg");
        writeln!(
            md,
            "## Scaling by workers ({} {})\n\n![scaling by workers]({img})\n",
            fmt_len(r.headline_len),
            r.dtype
        )?;
        writeln!(
            md,
            "| workers | processes sqrt / mean ms | threads sqrt / mean ms | serial sqrt / mean ms | bound rw / read ms | processes ÷ threads | processes ÷ bound | Python fork / spawn ms (warm) |\n|---|---|---|---|---|---|---|---|"
        )?;
        for c in &by_workers {
            let py = |m: &str| {
                r.python(m, c.workers)
                    .map_or("–".into(), |p| format!("{:.0}", p.warm_total_ms.median))
            };
            writeln!(
                md,
                "| {} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {:.2} | {:.2} | {} / {} |",
                c.workers,
                c.processes.warm_sqrt_ms.median,
                c.processes.warm_mean_ms.median,
                c.threads.warm_sqrt_ms.median,
                c.threads.warm_mean_ms.median,
                c.serial.warm_sqrt_ms.median,
                c.serial.warm_mean_ms.median,
                c.bound.warm_sqrt_ms.median,
                c.bound.warm_mean_ms.median,
                c.processes.warm_ms() / c.threads.warm_ms(),
                c.processes.warm_ms() / c.bound.warm_ms(),
                py("fork"),
                py("spawn")
            )?;
        }
        md.push('\n');
        let pts = |f: &dyn Fn(&Config) -> f64| {
            by_workers
                .iter()
                .map(|c| (c.workers as f64, f(c)))
                .collect::<Vec<_>>()
        };
        let mut series = vec![
            Series {
                name: "shmpar processes".into(),
                points: pts(&|c| c.processes.warm_ms()),
            },
            Series {
                name: "shmpar threads".into(),
                points: pts(&|c| c.threads.warm_ms()),
            },
            Series {
                name: "serial".into(),
                points: pts(&|c| c.serial.warm_ms()),
            },
            Series {
                name: "bandwidth bound".into(),
                points: pts(&|c| c.bound.warm_ms()),
            },
        ];
        for m in ["fork", "spawn"] {
            let p: Vec<(f64, f64)> = by_workers
                .iter()
                .filter_map(|c| {
                    r.python(m, c.workers)
                        .map(|p| (c.workers as f64, p.warm_total_ms.median))
                })
                .collect();
            if !p.is_empty() {
                series.push(Series {
                    name: format!("Python {m}"),
                    points: p,
                });
            }
        }
        charts::lines(
            &out.join(&img),
            &format!(
                "sqrt(abs) + mean, {} {}, warm (lower is better)",
                fmt_len(r.headline_len),
                r.dtype
            ),
            "workers",
            "ms",
            true,
            true,
            &series,
        )?;
    }

    // Scaling by size.
    let by_size: Vec<&Config> = r
        .sizes
        .iter()
        .filter_map(|&s| r.config(s, r.headline_workers))
        .collect();
    if !by_size.is_empty() {
        let img = format!("img/{tag}-sizes.svg");
        writeln!(
            md,
            "## Scaling by size ({} workers)\n\n![scaling by size]({img})\n",
            r.headline_workers
        )?;
        writeln!(
            md,
            "Throughput of sqrt + mean in GB/s (3 × element size per element). The bound's thread start-up (tens of µs) makes it meaningless below ~10^6 elements.\n"
        )?;
        writeln!(
            md,
            "| elements | processes µs | threads µs | serial µs | bound µs | processes ÷ threads | processes GB/s | threads GB/s |\n|---|---|---|---|---|---|---|---|"
        )?;
        for c in &by_size {
            let bytes = 3.0 * (c.len * c.elem_bytes) as f64;
            writeln!(
                md,
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} |",
                fmt_len(c.len),
                c.processes.warm_ms() * 1e3,
                c.threads.warm_ms() * 1e3,
                c.serial.warm_ms() * 1e3,
                c.bound.warm_ms() * 1e3,
                c.processes.warm_ms() / c.threads.warm_ms(),
                gbps(bytes, c.processes.warm_ms()),
                gbps(bytes, c.threads.warm_ms())
            )?;
        }
        md.push('\n');
        let pts = |f: &dyn Fn(&Config) -> f64| {
            by_size
                .iter()
                .map(|c| {
                    (
                        c.len as f64,
                        3.0 * (c.len * c.elem_bytes) as f64 / (f(c) * 1e-3) / 1e9,
                    )
                })
                .collect::<Vec<_>>()
        };
        charts::lines(
            &out.join(&img),
            &format!(
                "sqrt(abs) + mean throughput, {} workers (higher is better)",
                r.headline_workers
            ),
            "elements",
            "GB/s",
            true,
            true,
            &[
                Series {
                    name: "shmpar processes".into(),
                    points: pts(&|c| c.processes.warm_ms()),
                },
                Series {
                    name: "shmpar threads".into(),
                    points: pts(&|c| c.threads.warm_ms()),
                },
                Series {
                    name: "serial".into(),
                    points: pts(&|c| c.serial.warm_ms()),
                },
                Series {
                    name: "bandwidth bound".into(),
                    points: pts(&|c| c.bound.warm_ms()),
                },
            ],
        )?;
    }

    // Cold versus warm.
    if let Some(h) = r.headline() {
        let img = format!("img/{tag}-cold-warm.svg");
        writeln!(
            md,
            "## Cold first job versus warm steady state\n\n![cold versus warm]({img})\n"
        )?;
        let mut cats = vec!["processes".to_string(), "threads".into(), "serial".into()];
        let mut cold = vec![h.processes.cold_ms(), h.threads.cold_ms(), h.serial.cold_ms()];
        let mut warm = vec![h.processes.warm_ms(), h.threads.warm_ms(), h.serial.warm_ms()];
        for m in ["fork", "spawn"] {
            if let Some(p) = r.python(m, r.headline_workers) {
                cats.push(format!("Python {m}"));
                cold.push(p.cold_total_ms);
                warm.push(p.warm_total_ms.median);
            }
        }
        charts::bars(
            &out.join(&img),
            &format!(
                "sqrt(abs) + mean, {} {}, {} workers",
                fmt_len(h.len),
                h.dtype,
                h.workers
            ),
            "ms (log)",
            &cats,
            &[("cold".into(), cold), ("warm".into(), warm)],
        )?;
        writeln!(
            md,
            "Cold shmpar processes: pool start {:.1} ms, first sqrt {:.1} ms (warm {:.1}), first mean {:.1} ms (warm {:.1}). Threads: pool start {:.2} ms, first sqrt {:.1} ms, first mean {:.1} ms.\n",
            h.processes.cold_build_ms,
            h.processes.cold_sqrt_ms,
            h.processes.warm_sqrt_ms.median,
            h.processes.cold_mean_ms,
            h.processes.warm_mean_ms.median,
            h.threads.cold_build_ms,
            h.threads.cold_sqrt_ms,
            h.threads.cold_mean_ms
        )?;
    }

    // Barriers.
    if !r.barriers.is_empty() {
        let img = format!("img/{tag}-barrier.svg");
        writeln!(md, "## Barrier latency\n\n![barrier latency]({img})\n")?;
        writeln!(
            md,
            "Median time per phase (µs) of `parties` participants meeting over and over; {} CPUs. shmpar = the barrier in a segment's header with its adaptive spin (what `Ctx::barrier` uses); futex = the same code with `SpinPolicy::Never`; pthread = `pthread_barrier_t` with `PTHREAD_PROCESS_SHARED` in a `MAP_SHARED` page; threads = `std::sync::Barrier` between threads; python = `multiprocessing.Barrier` across forked processes.\n",
            r.machine.cpus
        )?;
        let mut parties: Vec<usize> = r.barriers.iter().map(|b| b.parties).collect();
        parties.sort_unstable();
        parties.dedup();
        let kinds = ["shmpar", "futex", "pthread", "threads", "python"];
        writeln!(
            md,
            "| parties | {} |\n|---|{}",
            kinds.join(" | "),
            "---|".repeat(kinds.len())
        )?;
        for &p in &parties {
            let cells: Vec<String> = kinds
                .iter()
                .map(|k| {
                    r.barrier(k, p)
                        .map_or("–".into(), |b| format!("{:.2}", b.phase_us.median))
                })
                .collect();
            writeln!(md, "| {p} | {} |", cells.join(" | "))?;
        }
        md.push('\n');
        let series: Vec<(String, Vec<f64>)> = kinds
            .iter()
            .map(|k| {
                (
                    k.to_string(),
                    parties
                        .iter()
                        .map(|&p| r.barrier(k, p).map_or(f64::NAN, |b| b.phase_us.median))
                        .collect(),
                )
            })
            .collect();
        let cats: Vec<String> = parties.iter().map(|p| format!("{p} parties")).collect();
        charts::bars(
            &out.join(&img),
            &format!("Barrier: µs per phase ({} CPUs)", r.machine.cpus),
            "µs (log)",
            &cats,
            &series,
        )?;
    }

    if !r.dispatch.is_empty() {
        writeln!(
            md,
            "## Job dispatch ({} workers, 1,000-element f64 array, near-empty kernel)\n\n| path | median µs | p90 µs | jobs |\n|---|---|---|---|",
            r.headline_workers
        )?;
        for d in &r.dispatch {
            writeln!(
                md,
                "| {} | {:.1} | {:.1} | {} |",
                d.name, d.us.median, d.us.p90, d.us.n
            )?;
        }
        md.push('\n');
    }

    if !r.segments.is_empty() {
        writeln!(
            md,
            "## Segment create and attach against size\n\ncreate = `SharedArray::create` (shm_open, `posix_fallocate`, mmap, header); attach = `SharedArray::attach` (shm_open, fstat, mmap, header check), both without touching the data; prefault = `Segment::prefault` (`MADV_POPULATE_WRITE`) of a fresh attachment: the page-table cost every new mapping pays, up front or as page faults during its first pass.\n\n| size | create ms | attach µs (median / p90) | prefault ms |\n|---|---|---|---|"
        )?;
        for s in &r.segments {
            match &s.skipped {
                Some(why) => writeln!(md, "| {} | skipped: {why} | | |", fmt_bytes(s.bytes))?,
                None => writeln!(
                    md,
                    "| {} | {:.2} | {:.1} / {:.1} | {:.2} |",
                    fmt_bytes(s.bytes),
                    s.create_ms.median,
                    s.attach_us.median,
                    s.attach_us.p90,
                    s.prefault_ms.median
                )?,
            }
        }
        md.push('\n');
    }

    if let Some(pss) = r.headline().and_then(|h| h.pss.as_ref()) {
        writeln!(
            md,
            "## Memory\n\nProportional set size (`Pss:` of `/proc/PID/smaps_rollup`; a page shared by k processes counts 1/k to each) of the coordinator and its workers, the largest total of {} samples taken every millisecond while the workers ran sqrt jobs on the headline array:\n\n| | MiB |\n|---|---|\n| array | {:.1} |\n| total PSS | {:.1} ({:.3}× the array) |\n| coordinator | {:.1} |\n| workers | {} |\n",
            pss.samples,
            pss.array_bytes as f64 / MIB,
            pss.total_bytes as f64 / MIB,
            pss.total_bytes as f64 / pss.array_bytes as f64,
            pss.coordinator_bytes as f64 / MIB,
            pss.worker_bytes
                .iter()
                .map(|b| format!("{:.1}", *b as f64 / MIB))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    Ok(md)
}

const METHOD: &str = "
## How it is measured

* **One run, child processes.** The harness runs each configuration in a fresh child process
  (itself, with a hidden subcommand). In it, the array is created and filled by the coordinator,
  then: the process pool is built and runs its first sqrt and mean jobs (cold), then the rayon
  pool (`Backend::Threads`, same chunking) does the same, then serial, then the bandwidth passes;
  then the warm repeats, in which the backends take turns. Process pools are built before any
  thread exists, as the fork rule requires.
* **Kernels.** sqrt = `for_each_chunk_with(&mut a, (), |_, c, _| shmpar_kernels::sqrt_abs(c))`;
  mean = `map_reduce_with(&a, (), |_, c, _| shmpar_kernels::sum(c), |x, y| x + y) / len`. Both
  closures capture nothing, so the process backend runs them on its persistent workers.
* **Bandwidth bound.** `shmpar_benches::bandwidth`: over the same shared memory, with as many
  scoped threads as workers and the same contiguous chunks, an AVX2 `x *= k` pass with `k = 1`
  hidden from the optimizer (reads and writes every byte in place: the sqrt's access pattern) and
  an AVX2 sum with 16 independent accumulators (the mean's). Thread start-up is included.
* **Python.** `benches/python/seed_pattern.py` is the seed article's pattern verbatim (one
  `Process` per chunk, attach by name, `np.sqrt(np.abs(...))` into the slice, `close`, `join`),
  followed by `shared.mean()`; the interpreter is `scripts/setup-python.sh`'s `.venv`.
  `benches/python/barrier.py` times `multiprocessing.Barrier`.
* **Barrier.** `shmpar_benches::barriers`: participants forked once; each round, all meet once to
  read the round's count, then meet `iters` times; the first participant times those. Per-phase
  latency = round time / `iters`; median of the rounds.
* **Memory.** PSS summed over the coordinator and its workers (`/proc/PID/task/PID/children`),
  sampled by a thread of the coordinator while the workers run jobs.
* **Other machines.** `harness --out DIR --no-python` runs from a prebuilt binary (no cargo, no
  network); `harness --merge-device DIR/results.json --device-label \"...\"` adds its results to
  this page.
* **Criterion benches.** `cargo bench -p shmpar-benches` runs the finer-grained benches
  (`kernels`, `barrier`, `segment`, `dispatch`; `SHMPAR_BENCH_LARGE=1` adds 10^7 and 10^8
  elements); they are not part of this page.
";
