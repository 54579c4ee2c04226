//! `benchmarks.md`: targets (met or missed, by how much), tables, charts.

use std::fmt::Write as _;
use std::path::Path;

use crate::charts::{self, Series};
use shmpar_benches::load;
use shmpar_benches::stats::Summary;

use crate::results::{Config, Results};
use crate::targets;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

pub const MIB: f64 = 1024.0 * 1024.0;

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

fn gbps(bytes: f64, ms: f64) -> f64 {
    bytes / (ms * 1e-3) / 1e9
}

/// A ratio with the interquartile range of its per-round values, or the
/// ratio of medians alone for results that did not record them.
fn ratio_cell(pairs: &Summary, of_medians: f64) -> String {
    if pairs.n > 0 {
        pairs.show(2)
    } else {
        format!("{of_medians:.2}")
    }
}

/// `3%, 2% / 4%, 1%`: the relative interquartile ranges of two pairs.
fn spread_cell(s: &[&Summary; 4]) -> String {
    let pct = |x: &Summary| {
        if x.has_spread() {
            format!("{:.0}%", x.rel_iqr() * 100.0)
        } else {
            "–".into()
        }
    };
    format!("{}, {} / {}, {}", pct(s[0]), pct(s[1]), pct(s[2]), pct(s[3]))
}

/// Bytes a configuration moves: sqrt reads and writes, the mean reads.
fn traffic(c: &Config) -> (f64, f64) {
    let b = (c.len * c.elem_bytes) as f64;
    (2.0 * b, b)
}

pub fn fmt_len(n: usize) -> String {
    let e = (n as f64).log10();
    if n >= 1000 && (e - e.round()).abs() < 1e-9 {
        format!("10^{}", e.round())
    } else {
        n.to_string()
    }
}

pub fn fmt_bytes(b: u64) -> String {
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
         (`benches/src/bin/harness/`; {:.0} s on {}{}). The machine is shared and noisy: \
         times are medians with their spread, comparisons are ratios within the same run, and every \
         measurement records how busy the machine was ([Load while measuring](#load-while-measuring)). \
         Raw numbers: [`results.json`](results.json).\n",
        res.wall_s,
        res.machine.label,
        res.commit
            .as_ref()
            .map_or(String::new(), |c| format!(", source at `{c}`"))
    )?;
    md.push_str(&targets::table(res));
    md.push_str(&machine_section(out, res, "local")?);
    for d in devices {
        writeln!(
            md,
            "\n---\n\n# On {}\n\nMerged from `results-device-*.json`, measured there with\n\n```sh\n{}\n```\n",
            d.machine.label, d.command
        )?;
        md.push_str(&targets::table(d).replace("## Targets", "## Targets there"));
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
            "Warm = median of {} repeats (the backends take turns), with the interquartile range (25th–75th percentile) in brackets; cold = pool start + first sqrt + first mean in a fresh process, one run each. GB/s count 2 × {} B per element for sqrt (read + write) and {} B for the mean.\n",
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
                "| {name} | {:.1} ({:.1} + {:.1} + {:.1}) | {} | {} | {:.1} | {:.1} | {:.2} | {:.2} |",
                t.cold_ms(),
                t.cold_build_ms,
                t.cold_sqrt_ms,
                t.cold_mean_ms,
                t.warm_sqrt_ms.show(1),
                t.warm_mean_ms.show(1),
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
                        "| Python seed pattern, {method} | {:.1} | (processes {}) | {} | | | {:.2} | {:.2} |",
                        py.cold_total_ms,
                        py.warm_processes_ms.show(1),
                        py.warm_mean_ms.show(1),
                        py.warm_total_ms.median / tw,
                        py.warm_total_ms.median / bw
                    )?;
                }
            }
        }
        if let Some(c) = &r.c_reference {
            writeln!(
                md,
                "| C reference, {} OpenMP threads | | {} | {} | {:.1} | {:.1} | {:.2} | {:.2} |",
                c.threads,
                if c.sqrt.n > 0 {
                    c.sqrt.show(1)
                } else {
                    format!("{:.1}", c.sqrt_ms)
                },
                if c.sum.n > 0 {
                    c.sum.show(1)
                } else {
                    format!("{:.1}", c.sum_ms)
                },
                gbps(sq, c.sqrt_ms),
                gbps(me, c.sum_ms),
                (c.sqrt_ms + c.sum_ms) / tw,
                (c.sqrt_ms + c.sum_ms) / bw
            )?;
        }
        match (&r.c_reference, &r.c_reference_skipped) {
            (Some(c), _) => writeln!(
                md,
                "\nC reference: `benches/c/seed_reference.c`, the same sqrt(|x|) in place and sum over {} f64, built in this run with `{}`{} (the compiler may use every vector instruction of this CPU; shmpar is built for generic x86-64 and picks AVX2 at run time), median of {} repeats after one warm-up. It is the bound of the sqrt on a CPU whose vector square-root unit is slower than memory.",
                fmt_len(c.len),
                c.build,
                if c.compiler.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", c.compiler)
                },
                c.sqrt.n
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
            "Where the cold time goes: the workers took {} minor page faults in their first job ({} per MiB of the array; one per 4 KiB page would be 256) and {} in their second. A worker prefaults its own rows (`madvise(MADV_POPULATE_…)`) when it first sees an array, and the kernel may count the pages that call maps in as minor faults, so the count says how much page-table work the first job did, not whether it was paid up front or fault by fault; threads share the coordinator's page tables and do not pay it.\n",
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
            "Medians with the interquartile range in brackets; processes ÷ threads is the median of the per-round ratios (each round runs both backends moments apart), per kernel.\n\n| workers | processes sqrt / mean ms | threads sqrt / mean ms | serial sqrt / mean ms | bound rw / read ms | processes ÷ threads, sqrt / mean | processes ÷ bound | Python fork / spawn ms (warm) |\n|---|---|---|---|---|---|---|---|"
        )?;
        for c in &by_workers {
            let py = |m: &str| {
                r.python(m, c.workers)
                    .map_or("–".into(), |p| format!("{:.0}", p.warm_total_ms.median))
            };
            writeln!(
                md,
                "| {} | {} / {} | {} / {} | {} / {} | {} / {} | {} / {} | {:.2} | {} / {} |",
                c.workers,
                c.processes.warm_sqrt_ms.show(1),
                c.processes.warm_mean_ms.show(1),
                c.threads.warm_sqrt_ms.show(1),
                c.threads.warm_mean_ms.show(1),
                c.serial.warm_sqrt_ms.show(1),
                c.serial.warm_mean_ms.show(1),
                c.bound.warm_sqrt_ms.show(1),
                c.bound.warm_mean_ms.show(1),
                ratio_cell(
                    &c.sqrt_vs_threads,
                    c.processes.warm_sqrt_ms.median / c.threads.warm_sqrt_ms.median
                ),
                ratio_cell(
                    &c.mean_vs_threads,
                    c.processes.warm_mean_ms.median / c.threads.warm_mean_ms.median
                ),
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
            "| elements | processes µs | threads µs | serial µs | bound µs | processes ÷ threads | processes GB/s | threads GB/s | spread: IQR ÷ median, processes sqrt, mean / threads sqrt, mean |\n|---|---|---|---|---|---|---|---|---|"
        )?;
        for c in &by_size {
            let bytes = 3.0 * (c.len * c.elem_bytes) as f64;
            writeln!(
                md,
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {} |",
                fmt_len(c.len),
                c.processes.warm_ms() * 1e3,
                c.threads.warm_ms() * 1e3,
                c.serial.warm_ms() * 1e3,
                c.bound.warm_ms() * 1e3,
                c.processes.warm_ms() / c.threads.warm_ms(),
                gbps(bytes, c.processes.warm_ms()),
                gbps(bytes, c.threads.warm_ms()),
                spread_cell(&[
                    &c.processes.warm_sqrt_ms,
                    &c.processes.warm_mean_ms,
                    &c.threads.warm_sqrt_ms,
                    &c.threads.warm_mean_ms
                ])
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
            "Median time per phase (µs) of `parties` participants meeting over and over, with the interquartile range of the rounds in brackets; {} CPUs. shmpar = the barrier in a segment's header with its adaptive spin (what `Ctx::barrier` uses); futex = the same code with `SpinPolicy::Never`; pthread = `pthread_barrier_t` with `PTHREAD_PROCESS_SHARED` in a `MAP_SHARED` page; threads = `std::sync::Barrier` between threads; openmp = libgomp's `#pragma omp barrier` between as many OpenMP threads (`benches/c/omp_barrier.c`, {}; libgomp's default waiting: spin, then futex), the reference to beat; python = `multiprocessing.Barrier` across forked processes.\n",
            r.machine.cpus,
            match (&r.openmp_build, &r.openmp_skipped) {
                (Some(b), None) => format!("built with `{b}`"),
                (_, Some(why)) => format!("not measured: {why}"),
                (None, None) => "not measured".into(),
            }
        )?;
        let mut parties: Vec<usize> = r.barriers.iter().map(|b| b.parties).collect();
        parties.sort_unstable();
        parties.dedup();
        let kinds = ["shmpar", "futex", "pthread", "threads", "openmp", "python"];
        writeln!(
            md,
            "| parties | {} |\n|---|{}",
            kinds.join(" | "),
            "---|".repeat(kinds.len())
        )?;
        for &p in &parties {
            let cells: Vec<String> = kinds
                .iter()
                .map(|k| r.barrier(k, p).map_or("–".into(), |b| b.phase_us.show(2)))
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
            "## Job dispatch ({} workers, 1,000-element f64 arrays, near-empty kernel)\n\nOne array: `run(&mut a, ..)`; three arrays: `run((&mut a, &b, whole(&c)), ..)`, `a` and `b` split by rows, `c` read whole by every worker.\n\n| path | median µs (IQR) | p90 µs | max µs | jobs |\n|---|---|---|---|---|",
            r.headline_workers
        )?;
        for d in &r.dispatch {
            writeln!(
                md,
                "| {} | {} | {:.1} | {:.1} | {} |",
                d.name,
                d.us.show(1),
                d.us.p90,
                d.us.max,
                d.us.n
            )?;
        }
        md.push('\n');
    }

    if !r.segments.is_empty() {
        writeln!(
            md,
            "## Segment create and attach against size\n\ncreate = `SharedArray::create` (shm_open, `posix_fallocate`, mmap, header); attach = `SharedArray::attach` (shm_open, fstat, mmap, header check), both without touching the data; prefault = `Segment::prefault` (`MADV_POPULATE_READ`) of a fresh attachment: the page-table cost every new mapping pays, up front or as page faults during its first pass.\n\n| size | create ms | attach µs (median (IQR) / p90) | prefault ms |\n|---|---|---|---|"
        )?;
        for s in &r.segments {
            match &s.skipped {
                Some(why) => writeln!(md, "| {} | skipped: {why} | | |", fmt_bytes(s.bytes))?,
                None => writeln!(
                    md,
                    "| {} | {} | {} / {:.1} | {} |",
                    fmt_bytes(s.bytes),
                    s.create_ms.show(2),
                    s.attach_us.show(1),
                    s.attach_us.p90,
                    s.prefault_ms.show(2)
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
    md.push_str(&compare_section(r));
    md.push_str(&load_section(r));
    Ok(md)
}

/// The harness's processes ÷ threads beside `shmpar compare`'s, run on the
/// same configuration in the same harness run.
fn compare_section(r: &Results) -> String {
    let mut md = String::new();
    let Some(h) = r.headline() else {
        return md;
    };
    let _ = writeln!(
        md,
        "## The harness and `shmpar compare`\n\nProcesses ÷ threads at {} workers over {} {}, measured by both in this run (see [How it is measured](#how-it-is-measured) for how each measures). The harness's ratio is the median of its per-round ratios; compare's is the ratio of its two medians, its interval the ends of the two medians' intervals against each other. They agree when the two 95% intervals overlap.\n",
        h.workers,
        fmt_len(h.len),
        h.dtype
    );
    let Some(c) = &r.compare else {
        let _ = writeln!(
            md,
            "`shmpar compare` not run: {}.\n",
            r.compare_skipped.as_deref().unwrap_or("not asked for")
        );
        return md;
    };
    let _ = writeln!(
        md,
        "`{}`\n\n| kernel | harness: processes / threads ms | harness ratio (CI) | compare: processes / threads ms | compare ratio (CI) | agree |\n|---|---|---|---|---|---|",
        c.command
    );
    for (what, kernel, pairs, p, t) in [
        (
            "sqrt",
            "sqrt_abs",
            &h.sqrt_vs_threads,
            &h.processes.warm_sqrt_ms,
            &h.threads.warm_sqrt_ms,
        ),
        (
            "mean",
            "mean",
            &h.mean_vs_threads,
            &h.processes.warm_mean_ms,
            &h.threads.warm_mean_ms,
        ),
    ] {
        let (Some(cp), Some(ct)) = (c.row(kernel, "processes"), c.row(kernel, "threads")) else {
            continue;
        };
        let (hlo, hhi) = pairs.ci();
        let (plo, phi) = cp.ms.ci();
        let (tlo, thi) = ct.ms.ci();
        let (clo, chi) = (plo / thi, phi / tlo);
        let agree = hlo <= chi && clo <= hhi;
        let _ = writeln!(
            md,
            "| {what} | {} / {} | {:.3} ({hlo:.3}–{hhi:.3}) | {} / {} | {:.3} ({clo:.3}–{chi:.3}) | {} |",
            p.show(1),
            t.show(1),
            pairs.median,
            cp.ms.show(1),
            ct.ms.show(1),
            cp.ms.median / ct.ms.median,
            if agree { "yes" } else { "**no**" }
        );
    }
    md.push('\n');
    md
}

/// Every section of the run with the load around it.
fn load_section(r: &Results) -> String {
    let mut md = String::new();
    if r.sections.is_empty() {
        return md;
    }
    let _ = writeln!(
        md,
        "## Load while measuring\n\nThe rule: {}. The load average (1-minute, from `/proc/loadavg`, before → after) is shown for context: it counts the harness's own processes, and for a minute after each section those of the one before, so it cannot tell other programs from the harness; the rule therefore uses CPU time — all programs' (`/proc/stat`) minus the harness's and its children's (`getrusage`) — over the section's wall time.\n",
        load::rule(r.machine.cpus)
    );
    let busy = r.sections.iter().filter(|s| s.busy).count();
    let _ = writeln!(
        md,
        "{} of {} sections ran on a busy machine.\n\n| section | s | CPUs it needs | load avg before → after | others' CPUs | waited s | busy |\n|---|---|---|---|---|---|---|",
        busy,
        r.sections.len()
    );
    for s in &r.sections {
        let _ = writeln!(
            md,
            "| {} | {:.1} | {} | {:.2} → {:.2} | {:.2} | {:.0} | {} |",
            s.label,
            s.wall_s,
            s.occupies,
            s.load_before[0],
            s.load_after[0],
            s.others_cpus,
            s.waited_s,
            if s.busy { "**busy**" } else { "no" }
        );
    }
    md.push('\n');
    md
}

const METHOD: &str = "
## How it is measured

* **One run, child processes.** The harness runs each configuration in a fresh child process
  (itself, with a hidden subcommand). In it, the array is created and filled by the coordinator,
  then: the process pool is built and runs its first sqrt and mean jobs (cold), then the rayon
  pool (`Backend::Threads`, same chunking) does the same, then serial, then the bandwidth passes;
  then the warm repeats. At 10^6 elements and more the backends take turns: each round runs
  every backend's sqrt then mean, with 2 ms of sleep before each job (so the previous backend's
  spinning workers are asleep), and round r starts with backend r mod 4, so no backend always
  runs first. Smaller arrays run each backend's repeats back to back. Process pools are built
  before any thread exists, as the fork rule requires.
* **Kernels.** sqrt = `run(&mut a, (), |_, c, _| shmpar_kernels::sqrt_abs(c))`;
  mean = `map_reduce_with(&a, (), |_, c, _| shmpar_kernels::sum(c), |x, y| x + y) / len`. Both
  closures capture nothing, so the process backend runs them on its persistent workers.
* **Spreads.** Every figure of repeated runs is a median with its interquartile range
  (25th–75th percentile, linear between order statistics). Targets judge the median with its 95%
  confidence interval, distribution-free (the k-th smallest and k-th largest sample, k from the
  binomial distribution: 8th and 18th of 25). Processes ÷ threads is the median of per-round
  ratios (both jobs of a round ran moments apart, so a slow spell of the machine hits both); a
  ratio of two separately measured figures takes the ends of their intervals against each other.
  Cold figures, Python's cold runs and the PSS are one run each: no interval.
* **Load.** Every measurement is a section with the load average before and after it and the CPU
  time other programs used while it ran (the table under *Load while measuring* gives the rule).
  A target is **not judged** — neither met nor missed — when a section that measured it ran on a
  busy machine, or when its confidence interval spans the limit. `--quiet-wait S` makes the
  harness wait up to S seconds before each section for the machine to quieten. What no figure
  inside a virtual machine shows is the host: on the 2-vCPU development VM the same 800 MB mean
  read in 10.5 ms and in 17 ms a few minutes apart, both times with the VM's own CPUs idle, so
  absolute times differ between runs and only ratios within a run compare.
* **The harness and `shmpar compare`.** Both time the same vectorized kernels
  (`shmpar_kernels::sqrt_abs` and the sum) through `Backend` on the same worker counts; both
  report the median of warm runs. Where they differ:

  | | harness | `shmpar compare` |
  |---|---|---|
  | input | signed values, filled once by the coordinator | uniform in [0, 1), refilled by each backend before each kernel |
  | warm-up | a cold sqrt and mean per backend (and one more sqrt on the processes) | one untimed run per backend and kernel |
  | order | backends take turns, round by round, each round starting with the next backend; 2 ms of sleep before each job | backends take turns run by run, always in the order processes, threads, serial, back to back without pauses |
  | backends alive | all of them (idle ones asleep) | all of them (idle ones asleep) |
  | kernel call | `fn` pointer, no parameters; the mean's partial is a plain `f64` | `fn` pointer with the kernel spec as a serde parameter; the mean's partial travels serialized |
  | ratio | median of per-round ratios | ratio of the two medians |
  | repeats | `--repeat` (51) at 10^8, more at smaller sizes | `--repeat` (by default at least 10 runs and 0.5 s of them per configuration, at most 200; the harness passes its own) |

  Both alternate the backends, so a change of the machine's speed while a kernel is measured
  lands on every backend alike (compare ran each backend's repeats back to back until this
  session, which let such a change land on one backend only). The harness runs `shmpar compare` itself on the
  headline configuration (the `shmpar` binary beside it; `--shmpar PATH`, `--no-compare`) and
  shows both ratios side by side.
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
  latency = round time / `iters`; median of the rounds. libgomp's barrier
  (`benches/c/omp_barrier.c`, built by the harness with `gcc -O3 -fopenmp` where gcc is
  available) is timed the same way by OpenMP thread 0, with as many threads as parties.
* **Dispatch.** A pool of the headline's workers runs near-empty kernels on 1,000-element arrays:
  4,000 jobs after 400 untimed ones, each timed alone.
* **Memory.** PSS summed over the coordinator and its workers (`/proc/PID/task/PID/children`),
  sampled by a thread of the coordinator while the workers run jobs.
* **Other machines.** `harness --out DIR --no-python` runs from a prebuilt binary (no cargo, no
  network); `harness --merge-device DIR/results.json --device-label \"...\"` adds its results to
  this page.
* **Criterion benches.** `cargo bench -p shmpar-benches` runs the finer-grained benches
  (`kernels`, `barrier`, `segment`, `dispatch`; `SHMPAR_BENCH_LARGE=1` adds 10^7 and 10^8
  elements); they are not part of this page.
";
