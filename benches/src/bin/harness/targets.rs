//! The targets table: each target met, missed, or *not judged* — when the
//! machine was busy while its figures were measured, or when the figure's
//! confidence interval spans the limit, so that the data cannot tell.

use std::fmt::Write as _;

use shmpar_benches::load::Section;
use shmpar_benches::stats::Summary;

use crate::measure::{DISPATCH_ONE, DISPATCH_THREE};
use crate::report::{MIB, fmt_bytes, fmt_len};
use crate::results::Results;

/// Which side of the limit passes.
#[derive(Clone, Copy)]
enum Limit {
    AtMost(f64),
    AtLeast(f64),
}

/// A figure: its value and the 95% confidence interval of that value
/// (equal ends for a single sample).
#[derive(Clone, Copy)]
struct Figure {
    value: f64,
    lo: f64,
    hi: f64,
}

impl Figure {
    /// The median of `s` and its interval.
    fn of(s: &Summary) -> Figure {
        let (lo, hi) = s.ci();
        Figure {
            value: s.median,
            lo,
            hi,
        }
    }

    /// One measurement: no interval to speak of.
    fn one(x: f64) -> Figure {
        Figure {
            value: x,
            lo: x,
            hi: x,
        }
    }

    /// The ratio of two independently measured medians; its interval takes
    /// the ends of theirs against each other (conservative).
    fn ratio(a: &Summary, b: &Summary) -> Figure {
        let ((alo, ahi), (blo, bhi)) = (a.ci(), b.ci());
        Figure {
            value: a.median / b.median,
            lo: alo / bhi,
            hi: ahi / blo,
        }
    }

    /// Whether the interval is a real one (more than one sample).
    fn has_interval(&self) -> bool {
        self.lo != self.hi
    }

    /// ` (95% CI lo–hi)` with `digits` decimals, or nothing.
    fn ci(&self, digits: usize) -> String {
        if self.has_interval() {
            format!(" (CI {:.d$}–{:.d$})", self.lo, self.hi, d = digits)
        } else {
            String::new()
        }
    }
}

/// The verdict on `f` against `limit`, given the sections that measured it.
fn verdict(f: Figure, limit: Limit, sections: &[Option<&Section>]) -> String {
    if !f.value.is_finite() {
        return "not measured".into();
    }
    if let Some(s) = sections.iter().flatten().find(|s| s.busy) {
        return format!(
            "not judged: busy (others kept {:.2} CPUs busy during \"{}\")",
            s.others_cpus, s.label
        );
    }
    let unrecorded = if sections.iter().any(Option::is_none) {
        " (load not recorded)"
    } else {
        ""
    };
    let bound = match limit {
        Limit::AtMost(x) | Limit::AtLeast(x) => x,
    };
    if f.has_interval() && f.lo <= bound && bound <= f.hi {
        return format!(
            "not judged: the 95% CI ({:.3}–{:.3}) spans the limit {bound}",
            f.lo, f.hi
        );
    }
    let judged = match limit {
        Limit::AtMost(limit) => {
            let r = f.value / limit;
            if r <= 1.0 {
                format!("met ({:.0}% under the limit)", (1.0 - r) * 100.0)
            } else {
                format!("**missed** by {:.1}% ({r:.3}× the limit)", (r - 1.0) * 100.0)
            }
        }
        Limit::AtLeast(limit) => {
            let r = f.value / limit;
            if r >= 1.0 {
                format!("met ({r:.1}× the required factor)")
            } else {
                format!("**missed**: {:.0}% short", (1.0 - r) * 100.0)
            }
        }
    };
    judged + unrecorded
}

/// The targets table of one machine's results.
pub fn table(r: &Results) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "\n## Targets\n");
    let cpus = r.machine.cpus;
    let _ = writeln!(
        md,
        "Headline: sqrt(abs(x)) in place, then the mean, over {} {} ({:.0} MB) with {} workers, on {} ({} CPUs). \
         Each figure is a median with its 95% confidence interval (CI; distribution-free, from order statistics); \
         a target is *not judged* when the machine was busy while its figures were measured, or when the CI spans \
         the limit (see [Load while measuring](#load-while-measuring)).\n",
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
    let kernels = r.section(&format!("kernels/{}/{}", r.headline_len, r.headline_workers));
    if let Some(h) = r.headline() {
        let (p, t, b) = (&h.processes, &h.threads, &h.bound);
        // Paired ratios where the run recorded them; older results only
        // have the two medians.
        let paired = |pairs: &Summary, a: &Summary, b: &Summary| {
            if pairs.n > 0 {
                Figure::of(pairs)
            } else {
                Figure::ratio(a, b)
            }
        };
        for (what, pairs, pm, tm) in [
            ("sqrt", &h.sqrt_vs_threads, &p.warm_sqrt_ms, &t.warm_sqrt_ms),
            ("mean", &h.mean_vs_threads, &p.warm_mean_ms, &t.warm_mean_ms),
        ] {
            let f = paired(pairs, pm, tm);
            row(
                &format!("warm {what}: processes ≤ 1.03 × threads (harness)"),
                format!(
                    "{:.3}×{} (medians {:.1} vs {:.1} ms)",
                    f.value,
                    f.ci(3),
                    pm.median,
                    tm.median
                ),
                verdict(f, Limit::AtMost(1.03), &[kernels]),
            );
        }
        if let Some(c) = &r.compare {
            let section = r.section("compare");
            for (what, kernel) in [("sqrt", "sqrt_abs"), ("mean", "mean")] {
                if let (Some(cp), Some(ct)) = (c.row(kernel, "processes"), c.row(kernel, "threads")) {
                    let f = Figure::ratio(&cp.ms, &ct.ms);
                    row(
                        &format!("warm {what}: processes ≤ 1.03 × threads (`shmpar compare`)"),
                        format!(
                            "{:.3}×{} (medians {:.1} vs {:.1} ms)",
                            f.value,
                            f.ci(3),
                            cp.ms.median,
                            ct.ms.median
                        ),
                        verdict(f, Limit::AtMost(1.03), &[section]),
                    );
                }
            }
        }
        // The sqrt is bound by whichever is slower on this machine: memory
        // (the in-place pass) or the vector square-root unit (the C
        // reference, which the compiler vectorizes for this very CPU).
        let c_ref = r
            .c_reference
            .as_ref()
            .filter(|c| c.sqrt_ms > b.warm_sqrt_ms.median);
        let (f, bound_ms, what, sections) = match c_ref {
            Some(c) => {
                let cs = if c.sqrt.n > 0 {
                    c.sqrt.clone()
                } else {
                    Summary::one(c.sqrt_ms)
                };
                (
                    Figure::ratio(&p.warm_sqrt_ms, &cs),
                    c.sqrt_ms,
                    "the C reference: the vector sqrt unit",
                    vec![kernels, r.section("c-reference")],
                )
            }
            None => (
                paired(&h.sqrt_vs_bound, &p.warm_sqrt_ms, &b.warm_sqrt_ms),
                b.warm_sqrt_ms.median,
                "the in-place memory pass",
                vec![kernels],
            ),
        };
        row(
            "warm sqrt: processes ≤ 1.10 × the machine's bound (slower of the in-place pass and the vector sqrt unit)",
            format!(
                "{:.2}×{} ({:.1} ms vs {bound_ms:.1} ms, {what}; in-place pass {:.1} ms{})",
                f.value,
                f.ci(2),
                p.warm_sqrt_ms.median,
                b.warm_sqrt_ms.median,
                match &r.c_reference {
                    Some(c) => format!(", C reference {:.1} ms", c.sqrt_ms),
                    None => String::new(),
                }
            ),
            verdict(f, Limit::AtMost(1.10), &sections),
        );
        let f = paired(&h.mean_vs_bound, &p.warm_mean_ms, &b.warm_mean_ms);
        row(
            "warm mean: processes ≤ 1.10 × bandwidth bound (read pass)",
            format!(
                "{:.2}×{} ({:.1} vs {:.1} ms)",
                f.value,
                f.ci(2),
                p.warm_mean_ms.median,
                b.warm_mean_ms.median
            ),
            verdict(f, Limit::AtMost(1.10), &[kernels]),
        );
        let x = p.cold_ms() / t.cold_ms();
        row(
            "cold (pool start + first sqrt + first mean): processes ≤ 1.20 × threads",
            format!(
                "{x:.2}× ({:.1} vs {:.1} ms; one run each)",
                p.cold_ms(),
                t.cold_ms()
            ),
            verdict(Figure::one(x), Limit::AtMost(1.20), &[kernels]),
        );
        for (method, need) in [("fork", 2.5), ("spawn", 5.0)] {
            let target = format!("cold: Python {method} ≥ {need}× slower than shmpar");
            match r.python(method, r.headline_workers) {
                Some(py) => {
                    let x = py.cold_total_ms / p.cold_ms();
                    row(
                        &target,
                        format!(
                            "{x:.2}× ({:.1} vs {:.1} ms; one run each)",
                            py.cold_total_ms,
                            p.cold_ms()
                        ),
                        verdict(
                            Figure::one(x),
                            Limit::AtLeast(need),
                            &[
                                kernels,
                                r.section(&format!("python/{method}/{}", r.headline_workers)),
                            ],
                        ),
                    );
                }
                None => row(
                    &target,
                    "not measured".into(),
                    r.python_skipped.clone().unwrap_or_else(|| "not measured".into()),
                ),
            }
        }
    }
    let barrier_section = |kind: &str, p: usize| r.section(&format!("barrier/{kind}/{p}"));
    if let Some(b) = r.barrier("shmpar", cpus) {
        let f = Figure::of(&b.phase_us);
        row(
            &format!("barrier, {cpus} processes ({cpus} CPUs): median < 2 µs"),
            format!("{:.2} µs{}", f.value, f.ci(2)),
            verdict(f, Limit::AtMost(2.0), &[barrier_section("shmpar", cpus)]),
        );
        match r.barrier("python", cpus) {
            Some(py) => {
                let f = Figure::ratio(&py.phase_us, &b.phase_us);
                row(
                    "barrier: ≥ 50× faster than multiprocessing.Barrier",
                    format!(
                        "{:.0}× ({:.1} vs {:.2} µs)",
                        f.value, py.phase_us.median, b.phase_us.median
                    ),
                    verdict(
                        f,
                        Limit::AtLeast(50.0),
                        &[barrier_section("shmpar", cpus), barrier_section("python", cpus)],
                    ),
                );
            }
            None => row(
                "barrier: ≥ 50× faster than multiprocessing.Barrier",
                "not measured".into(),
                "Python skipped".into(),
            ),
        }
    }
    // Issue 14's bar on a machine with 16 cores, with libgomp's barrier
    // (the reference to beat) beside it.
    if cpus >= 16 {
        if let Some(b) = r.barrier("shmpar", 16) {
            let f = Figure::of(&b.phase_us);
            let omp = r.barrier("openmp", 16).map_or(String::new(), |o| {
                format!("; libgomp {:.2} µs", o.phase_us.median)
            });
            row(
                &format!("barrier, 16 processes ({cpus} CPUs): median ≤ 1 µs"),
                format!("{:.2} µs{}{omp}", f.value, f.ci(2)),
                verdict(f, Limit::AtMost(1.0), &[barrier_section("shmpar", 16)]),
            );
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
            let x = Figure::ratio(&s.phase_us, &f.phase_us);
            row(
                &format!("barrier, {n} processes on {cpus} CPUs: ≤ 2 × pure futex"),
                format!(
                    "{:.2}×{} ({:.1} vs {:.1} µs)",
                    x.value,
                    x.ci(2),
                    s.phase_us.median,
                    f.phase_us.median
                ),
                verdict(
                    x,
                    Limit::AtMost(2.0),
                    &[barrier_section("shmpar", n), barrier_section("futex", n)],
                ),
            );
        }
    }
    let segments = r.section("segments");
    let attached: Vec<_> = r.segments.iter().filter(|s| s.skipped.is_none()).collect();
    if let (Some(small), Some(big)) = (attached.first(), attached.last()) {
        let f = Figure::of(&big.attach_us);
        row(
            &format!("attach to a {} segment < 100 µs", fmt_bytes(big.bytes)),
            format!("{:.1} µs{}", f.value, f.ci(1)),
            verdict(f, Limit::AtMost(100.0), &[segments]),
        );
        let f = Figure::ratio(&big.attach_us, &small.attach_us);
        row(
            &format!(
                "attach independent of size ({} vs {}; ≤ 1.5×)",
                fmt_bytes(big.bytes),
                fmt_bytes(small.bytes)
            ),
            format!("{:.2}×{}", f.value, f.ci(2)),
            verdict(f, Limit::AtMost(1.5), &[segments]),
        );
    }
    if let Some(pss) = r.headline().and_then(|h| h.pss.as_ref()) {
        let limit = 1.05 * pss.array_bytes as f64 + 20.0 * MIB;
        row(
            "PSS of coordinator + workers ≤ 1.05 × array + 20 MB",
            format!(
                "{:.0} MiB for a {:.0} MiB array (largest of {} samples)",
                pss.total_bytes as f64 / MIB,
                pss.array_bytes as f64 / MIB,
                pss.samples
            ),
            verdict(
                Figure::one(pss.total_bytes as f64 / limit),
                Limit::AtMost(1.0),
                &[kernels],
            ),
        );
    }
    let dispatch = r.section("dispatch");
    for (target, names) in [
        (
            "dispatch of a 1,000-element job < 20 µs",
            &[DISPATCH_ONE, "pool: for_each_chunk_with (persistent workers)"][..],
        ),
        (
            "dispatch of a 1,000-row job over three arrays `(&mut a, &b, whole(&c))` < 20 µs",
            &[DISPATCH_THREE][..],
        ),
    ] {
        if let Some(d) = r.dispatch(names) {
            let f = Figure::of(&d.us);
            row(
                target,
                format!(
                    "{:.1} µs{} (IQR {:.1}–{:.1})",
                    f.value,
                    f.ci(1),
                    d.us.p25,
                    d.us.p75
                ),
                verdict(f, Limit::AtMost(20.0), &[dispatch]),
            );
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(busy: bool) -> Section {
        Section {
            label: "s".into(),
            busy,
            others_cpus: if busy { 1.5 } else { 0.0 },
            ..Section::default()
        }
    }

    #[test]
    fn busy_or_straddling_figures_are_not_judged() {
        let quiet = section(false);
        let busy = section(true);
        let f = Figure {
            value: 1.0,
            lo: 0.99,
            hi: 1.01,
        };
        assert!(verdict(f, Limit::AtMost(1.03), &[Some(&quiet)]).starts_with("met"));
        assert!(verdict(f, Limit::AtMost(1.03), &[Some(&busy)]).starts_with("not judged: busy"));
        let wide = Figure { hi: 1.05, ..f };
        assert!(verdict(wide, Limit::AtMost(1.03), &[Some(&quiet)]).starts_with("not judged: the 95% CI"));
        let high = Figure {
            value: 1.1,
            lo: 1.05,
            hi: 1.2,
        };
        assert!(verdict(high, Limit::AtMost(1.03), &[Some(&quiet)]).starts_with("**missed**"));
        assert!(verdict(Figure::one(3.0), Limit::AtLeast(2.5), &[None]).ends_with("(load not recorded)"));
    }
}
