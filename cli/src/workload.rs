//! The four workloads of `run` and `compare` (`triad`, `matvec`, `kmeans`,
//! `mandelbrot`): programs over several arrays, built on the shared bodies
//! of `shmpar_kernels::workloads`, as the runnable examples drive them.
//!
//! Each workload owns its arrays for the whole command: the inputs are
//! filled once, on the coordinator, before any backend starts; a *run* is
//! the timed unit (one triad, five products, ten k-means iterations, one
//! image) and is verified against a serial computation in this process.
//! The jobs' kernels are named `fn` items registered with
//! `shmpar::register_kernel!`, so pools run them on forked and spawned
//! workers alike.

use std::fmt;
use std::ops::Range;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Ix1, Ix2};
use shmpar::{Backend, Ctx, Schedule, Serde, SharedArray, WholeView, whole};
use shmpar_kernels::workloads::{
    KmeansPartial, MandelbrotParams, fill_noise, kmeans_assign, kmeans_init, kmeans_points, kmeans_update,
    mandelbrot_rows, matvec_rows, triad,
};

use crate::units::{bytes, parse_len};
use crate::{CliError, CliResult};

/// Triad: `a = b + S·c`.
const TRIAD_S: f64 = 3.0;
/// Matrix-vector products per matvec run.
const MATVEC_PRODUCTS: usize = 5;
/// k-means: dimensions of a point and clusters.
const KMEANS_D: usize = 8;
const KMEANS_K: usize = 16;
/// Rows per chunk of the dynamic Mandelbrot schedule.
const MANDELBROT_ROWS: usize = 4;

/// One of the four workloads, with its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Workload {
    /// `a = b + 3·c` over three arrays of `n` `f64`.
    Triad { n: usize },
    /// `y = A·x`, `A` `n × n` `f64`, five products per run.
    Matvec { n: usize },
    /// Lloyd's k-means on `n` points of 8 dimensions, k = 16, `iterations`
    /// per run.
    Kmeans { n: usize, iterations: usize },
    /// Escape times of the upper half of the classic view,
    /// `width × height` pixels, under the dynamic (4 rows a chunk) or the
    /// static schedule.
    Mandelbrot {
        width: usize,
        height: usize,
        max_iter: u32,
        dynamic: bool,
    },
}

const TRIAD_N: usize = 10_000_000;
const MATVEC_N: usize = 4096;
const KMEANS_N: usize = 1_000_000;
const KMEANS_ITERATIONS: usize = 10;
/// The most k-means iterations a spec may ask for.
const KMEANS_MAX_ITERATIONS: usize = 100_000;
const MANDELBROT_WIDTH: usize = 1024;
const MANDELBROT_HEIGHT: usize = 512;
const MANDELBROT_MAX_ITER: u32 = 1000;

impl Workload {
    /// The workload names, with their parameters and defaults, for messages.
    pub(crate) const NAMES: &'static [&'static str] = &[
        "triad[:N]",
        "matvec[:N]",
        "kmeans[:N[:ITERATIONS]]",
        "mandelbrot[:WIDTH:HEIGHT[:MAX_ITER]]",
        "mandelbrot-static[:...]",
    ];

    /// Parses `triad`, `matvec:1024`, `kmeans:1e4:3`, `mandelbrot:256:128:200`,
    /// ...; `None` if the name is not a workload's.
    pub(crate) fn parse(spec: &str) -> Option<CliResult<Workload>> {
        let mut parts = spec.trim().split(':');
        let name = parts.next().unwrap_or_default().to_ascii_lowercase();
        let params: Vec<&str> = parts.collect();
        let known = ["triad", "matvec", "kmeans", "mandelbrot", "mandelbrot-static"];
        if !known.contains(&name.as_str()) {
            return None;
        }
        Some(Self::parse_params(spec, &name, &params))
    }

    fn parse_params(spec: &str, name: &str, params: &[&str]) -> CliResult<Workload> {
        let most = match name {
            "triad" | "matvec" => 1,
            "kmeans" => 2,
            _ => 3,
        };
        if params.len() > most {
            return Err(CliError::msg(format!(
                "{spec:?} takes at most {most} parameter(s), got {}",
                params.len()
            )));
        }
        let count = |i: usize, default: usize, what: &str| -> CliResult<usize> {
            params.get(i).map_or(Ok(default), |p| {
                parse_len(p).map_err(|e| CliError::msg(format!("{spec}: {what}: {e}")))
            })
        };
        let workload = match name {
            "triad" => Workload::Triad {
                n: count(0, TRIAD_N, "the length")?,
            },
            "matvec" => Workload::Matvec {
                n: count(0, MATVEC_N, "the matrix side")?,
            },
            "kmeans" => {
                let iterations = count(1, KMEANS_ITERATIONS, "the iterations")?;
                // Each iteration is a job of its own, so --timeout (a
                // deadline per job) cannot end an absurd count.
                if iterations > KMEANS_MAX_ITERATIONS {
                    return Err(CliError::msg(format!(
                        "{spec}: {iterations} iterations; k-means runs at most {KMEANS_MAX_ITERATIONS}"
                    )));
                }
                Workload::Kmeans {
                    n: count(0, KMEANS_N, "the number of points")?,
                    iterations,
                }
            }
            _ => {
                if params.len() == 1 {
                    return Err(CliError::msg(format!(
                        "{spec}: give the image as WIDTH:HEIGHT (and MAX_ITER), or no size for \
                         {MANDELBROT_WIDTH}:{MANDELBROT_HEIGHT}:{MANDELBROT_MAX_ITER}"
                    )));
                }
                let max_iter = count(2, MANDELBROT_MAX_ITER as usize, "the iterations")?;
                Workload::Mandelbrot {
                    width: count(0, MANDELBROT_WIDTH, "the width")?,
                    height: count(1, MANDELBROT_HEIGHT, "the height")?,
                    max_iter: u32::try_from(max_iter).map_err(|_| {
                        CliError::msg(format!("{spec}: at most {} iterations a pixel", u32::MAX))
                    })?,
                    dynamic: name == "mandelbrot",
                }
            }
        };
        workload.check()?;
        Ok(workload)
    }

    /// Refuses sizes the workload cannot run with.
    fn check(&self) -> CliResult {
        match *self {
            Workload::Kmeans { n, .. } if n < KMEANS_K => Err(CliError::msg(format!(
                "{}: {n} points cannot seed {KMEANS_K} clusters",
                self.spec()
            ))),
            _ if self.shm_bytes().is_none() => Err(CliError::msg(format!(
                "{} is more than this machine can address",
                self.spec()
            ))),
            _ => Ok(()),
        }
    }

    /// The spec that parses back to this workload: the bare name at the
    /// default size.
    pub(crate) fn spec(&self) -> String {
        let name = self.name();
        match *self {
            Workload::Triad { n } if n != TRIAD_N => format!("{name}:{n}"),
            Workload::Matvec { n } if n != MATVEC_N => format!("{name}:{n}"),
            Workload::Kmeans { n, iterations } if n != KMEANS_N || iterations != KMEANS_ITERATIONS => {
                format!("{name}:{n}:{iterations}")
            }
            Workload::Mandelbrot {
                width,
                height,
                max_iter,
                ..
            } if (width, height, max_iter) != (MANDELBROT_WIDTH, MANDELBROT_HEIGHT, MANDELBROT_MAX_ITER) => {
                format!("{name}:{width}:{height}:{max_iter}")
            }
            _ => name.to_string(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Workload::Triad { .. } => "triad",
            Workload::Matvec { .. } => "matvec",
            Workload::Kmeans { .. } => "kmeans",
            Workload::Mandelbrot { dynamic: true, .. } => "mandelbrot",
            Workload::Mandelbrot { dynamic: false, .. } => "mandelbrot-static",
        }
    }

    /// The same image under the static schedule, for a Mandelbrot
    /// workload under the dynamic one.
    pub(crate) fn static_twin(&self) -> Option<Workload> {
        match *self {
            Workload::Mandelbrot {
                width,
                height,
                max_iter,
                dynamic: true,
            } => Some(Workload::Mandelbrot {
                width,
                height,
                max_iter,
                dynamic: false,
            }),
            _ => None,
        }
    }

    /// Rows of the job's split (axis 0): at most this many workers.
    pub(crate) fn rows(&self) -> usize {
        match *self {
            Workload::Triad { n } | Workload::Matvec { n } | Workload::Kmeans { n, .. } => n,
            Workload::Mandelbrot { height, .. } => height,
        }
    }

    /// Elements of the largest array, for the records' `len`.
    pub(crate) fn len(&self) -> usize {
        match *self {
            Workload::Triad { n } | Workload::Kmeans { n, .. } => n,
            Workload::Matvec { n } => n.saturating_mul(n),
            Workload::Mandelbrot { width, height, .. } => width.saturating_mul(height),
        }
    }

    /// The element type of the largest array.
    pub(crate) fn dtype(&self) -> &'static str {
        match self {
            Workload::Mandelbrot { .. } => "u32",
            _ => "f64",
        }
    }

    /// Shared memory the workload's arrays take; `None` on overflow.
    pub(crate) fn shm_bytes(&self) -> Option<u64> {
        let n = |x: usize| x as u64;
        match *self {
            Workload::Triad { n: len } => n(len).checked_mul(3 * 8),
            Workload::Matvec { n: side } => n(side)
                .checked_mul(n(side))?
                .checked_add(2 * n(side))?
                .checked_mul(8),
            Workload::Kmeans { n: points, .. } => n(points)
                .checked_mul(KMEANS_D as u64 * 8 + 4)?
                .checked_add((KMEANS_K * KMEANS_D * 8) as u64),
            Workload::Mandelbrot { width, height, .. } => n(width).checked_mul(n(height))?.checked_mul(4),
        }
    }

    /// Bytes a run moves through memory, for GB/s: the arrays each job
    /// reads and writes, once per job. `None` for the Mandelbrot set,
    /// which is bound by arithmetic, not memory.
    pub(crate) fn bytes_moved(&self) -> Option<f64> {
        match *self {
            Workload::Triad { n } => Some(3.0 * 8.0 * n as f64),
            Workload::Matvec { n } => {
                Some(MATVEC_PRODUCTS as f64 * 8.0 * (n as f64 * n as f64 + 2.0 * n as f64))
            }
            Workload::Kmeans { n, iterations } => {
                Some(iterations as f64 * n as f64 * (KMEANS_D as f64 * 8.0 + 4.0))
            }
            Workload::Mandelbrot { .. } => None,
        }
    }

    /// What a run does, for headers: `a = b + 3·c over 3 x 10000000 f64 (240.0 MB)`.
    pub(crate) fn describe(&self) -> String {
        let size = bytes(self.shm_bytes().unwrap_or(u64::MAX));
        match *self {
            Workload::Triad { n } => format!("a = b + {TRIAD_S}·c over 3 x {n} f64 ({size})"),
            Workload::Matvec { n } => {
                format!("y = A·x, A {n}x{n} f64 ({size}), {MATVEC_PRODUCTS} products a run")
            }
            Workload::Kmeans { n, iterations } => format!(
                "k-means, {n} points x {KMEANS_D} f64 ({size}), k = {KMEANS_K}, {iterations} iterations a run"
            ),
            Workload::Mandelbrot {
                width,
                height,
                max_iter,
                dynamic,
            } => format!(
                "Mandelbrot [-2, 0.5] x [0, 1.25], {width}x{height} u32 ({size}), max_iter {max_iter}, {}",
                if dynamic {
                    format!("dynamic schedule ({MANDELBROT_ROWS} rows a chunk)")
                } else {
                    "static schedule".to_string()
                }
            ),
        }
    }

    /// Creates the arrays and fills the inputs (on this thread).
    pub(crate) fn prepare(&self) -> CliResult<Prepared> {
        let state = match *self {
            Workload::Triad { n } => {
                let mut b = SharedArray::<f64, Ix1>::create(n)?;
                let mut c = SharedArray::<f64, Ix1>::create(n)?;
                fill_noise(b.view_mut(), 1, 0);
                fill_noise(c.view_mut(), 2, 0);
                State::Triad {
                    a: SharedArray::create_with(&crate::bench::array_options(), n)?,
                    b,
                    c,
                }
            }
            Workload::Matvec { n } => {
                let mut a = SharedArray::<f64, Ix2>::create((n, n))?;
                let mut x = SharedArray::<f64, Ix1>::create(n)?;
                fill_noise(a.view_mut(), 1, 0);
                fill_noise(x.view_mut(), 2, 0);
                State::Matvec {
                    a,
                    x,
                    y: SharedArray::create_with(&crate::bench::array_options(), n)?,
                    expected: None,
                }
            }
            Workload::Kmeans { n, .. } => {
                let mut points = SharedArray::<f64, Ix2>::create((n, KMEANS_D))?;
                kmeans_points(points.view_mut(), 0, KMEANS_K, 7)?;
                let start = kmeans_init(points.view(), KMEANS_K)?;
                State::Kmeans {
                    labels: SharedArray::create_with(&crate::bench::array_options(), n)?,
                    centroids: SharedArray::from_array_with(&crate::bench::array_options(), &start)?,
                    points,
                    start,
                    expected: Vec::new(),
                }
            }
            Workload::Mandelbrot { width, height, .. } => State::Mandelbrot {
                image: SharedArray::create_with(&crate::bench::array_options(), (height, width))?,
                expected: None,
            },
        };
        Ok(Prepared {
            workload: *self,
            state,
        })
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec())
    }
}

/// A workload's arrays and its serial results, computed when first needed.
pub(crate) struct Prepared {
    workload: Workload,
    state: State,
}

enum State {
    Triad {
        a: SharedArray<f64, Ix1>,
        b: SharedArray<f64, Ix1>,
        c: SharedArray<f64, Ix1>,
    },
    Matvec {
        a: SharedArray<f64, Ix2>,
        x: SharedArray<f64, Ix1>,
        y: SharedArray<f64, Ix1>,
        expected: Option<Array1<f64>>,
    },
    Kmeans {
        points: SharedArray<f64, Ix2>,
        labels: SharedArray<u32, Ix1>,
        centroids: SharedArray<f64, Ix2>,
        start: Array2<f64>,
        /// Per worker count: the labels and centroids of the serial
        /// computation over the same chunks.
        expected: Vec<(usize, Array1<u32>, Array2<f64>)>,
    },
    Mandelbrot {
        image: SharedArray<u32, Ix2>,
        expected: Option<Array2<u32>>,
    },
}

// The jobs' kernels. The bodies' only errors are shapes and parameters
// that the runtime (equal split rows, a whole `x`) and `Workload::check`
// already rule out; were one to fail anyway, its rows stay as they were
// reset before the run (NaN, u32::MAX) and verification says so.

fn triad_job(
    _ctx: &Ctx<'_>,
    (a, b, c): (ArrayViewMut1<'_, f64>, ArrayView1<'_, f64>, ArrayView1<'_, f64>),
    s: &f64,
) {
    let _ = triad(a, b, c, *s);
}
shmpar::register_kernel!(triad_job: fn(&Ctx, (ArrayViewMut1<f64>, ArrayView1<f64>, ArrayView1<f64>), &f64));

fn matvec_job(
    _ctx: &Ctx<'_>,
    (a, y, x): (
        ArrayView2<'_, f64>,
        ArrayViewMut1<'_, f64>,
        WholeView<'_, f64, Ix1>,
    ),
    _: &(),
) {
    let _ = matvec_rows(a, x.into_view(), y);
}
shmpar::register_kernel!(
    matvec_job: fn(&Ctx, (ArrayView2<f64>, ArrayViewMut1<f64>, WholeView<f64, Ix1>), &())
);

/// A k-means partial as the pool carries it.
type KPartial = Serde<KmeansPartial>;

fn kmeans_job(
    _ctx: &Ctx<'_>,
    (points, labels, centroids): (
        ArrayView2<'_, f64>,
        ArrayViewMut1<'_, u32>,
        WholeView<'_, f64, Ix2>,
    ),
    _: &(),
) -> KPartial {
    Serde(kmeans_assign(points, centroids.into_view(), labels).unwrap_or(KmeansPartial::EMPTY))
}
shmpar::register_kernel!(
    kmeans_job: fn(&Ctx, (ArrayView2<f64>, ArrayViewMut1<u32>, WholeView<f64, Ix2>), &()) -> KPartial
);

fn mandelbrot_job(ctx: &Ctx<'_>, rows: ArrayViewMut2<'_, u32>, params: &Serde<MandelbrotParams>) {
    let _ = mandelbrot_rows(ctx.rows().start, rows, &params.0);
}
shmpar::register_kernel!(mandelbrot_job: fn(&Ctx, ArrayViewMut2<u32>, &Serde<MandelbrotParams>));

fn merge(a: KPartial, b: KPartial) -> KPartial {
    Serde(a.0.merge(&b.0))
}

impl Prepared {
    /// Overwrites the outputs with values no run writes (NaN, u32::MAX),
    /// so that verification catches rows a run left alone. Untimed; before
    /// every run except the triad's, whose output is as large as its
    /// inputs (it is reset before the warm-up run only).
    pub(crate) fn reset(&mut self, warm_up: bool) {
        match &mut self.state {
            State::Triad { a, .. } if warm_up => a.view_mut().fill(f64::NAN),
            State::Triad { .. } => {}
            State::Matvec { y, .. } => y.view_mut().fill(f64::NAN),
            State::Kmeans { labels, .. } => labels.view_mut().fill(u32::MAX),
            State::Mandelbrot { image, .. } => image.view_mut().fill(u32::MAX),
        }
    }

    /// One run on `backend`: the unit that `run` and `compare` time.
    ///
    /// # Errors
    /// What the backend returns for a job.
    pub(crate) fn run(&mut self, backend: &Backend) -> shmpar::Result<()> {
        match (&mut self.state, self.workload) {
            (State::Triad { a, b, c }, _) => backend.run((a, &*b, &*c), TRIAD_S, triad_job),
            (State::Matvec { a, x, y, .. }, _) => {
                for _ in 0..MATVEC_PRODUCTS {
                    backend.run((&*a, &mut *y, whole(x)), (), matvec_job)?;
                }
                Ok(())
            }
            (
                State::Kmeans {
                    points,
                    labels,
                    centroids,
                    start,
                    ..
                },
                Workload::Kmeans { iterations, .. },
            ) => {
                centroids.view_mut().assign(start);
                for _ in 0..iterations {
                    let partial = backend.map_reduce_with(
                        (&*points, &mut *labels, whole(&*centroids)),
                        (),
                        kmeans_job,
                        merge,
                    )?;
                    // The shapes are the workload's own: this cannot fail.
                    let _ = kmeans_update(&partial.0, centroids.view_mut());
                }
                Ok(())
            }
            (
                State::Mandelbrot { image, .. },
                Workload::Mandelbrot {
                    width,
                    height,
                    max_iter,
                    dynamic,
                },
            ) => {
                let params = Serde(MandelbrotParams::upper_half(width, height, max_iter));
                let schedule = if dynamic {
                    Schedule::Dynamic {
                        rows: MANDELBROT_ROWS,
                    }
                } else {
                    Schedule::Static
                };
                backend.run(schedule.on(image), params, mandelbrot_job)
            }
            _ => Err(shmpar::Error::Mismatch {
                reason: "the workload's arrays do not match it".into(),
            }),
        }
    }

    /// Compares the outputs of the last run with the serial computation,
    /// bit for bit: the same bodies over the same chunks, combined in
    /// chunk order (k-means' sums depend on the chunks, so its serial
    /// result is computed for `workers` chunks). `Err` names the first
    /// difference.
    pub(crate) fn verify(&mut self, workers: usize) -> Result<(), String> {
        let workload = self.workload;
        match &mut self.state {
            State::Triad { a, b, c } => {
                let (a, b, c) = (a.view(), b.view(), c.view());
                let wrong = a
                    .iter()
                    .zip(b.iter().zip(c.iter()))
                    .position(|(&got, (&b, &c))| got.to_bits() != (b + TRIAD_S * c).to_bits());
                match wrong {
                    None => Ok(()),
                    Some(i) => Err(format!(
                        "a[{i}] = {}, but the serial loop gives {}",
                        a[i],
                        b[i] + TRIAD_S * c[i]
                    )),
                }
            }
            State::Matvec { a, x, y, expected } => {
                let expected = match expected {
                    Some(e) => e,
                    None => {
                        let mut e = Array1::zeros(x.len());
                        matvec_rows(a.view(), x.view(), e.view_mut()).map_err(|e| e.to_string())?;
                        expected.insert(e)
                    }
                };
                first_difference("y", y.view().iter(), expected.iter(), |g, e| {
                    g.to_bits() == e.to_bits()
                })
            }
            State::Kmeans {
                points,
                labels,
                centroids,
                start,
                expected,
            } => {
                let iterations = match workload {
                    Workload::Kmeans { iterations, .. } => iterations,
                    _ => 0,
                };
                let at = match expected.iter().position(|(w, _, _)| *w == workers) {
                    Some(at) => at,
                    None => {
                        let (l, c) = serial_kmeans(points.view(), start, workers, iterations)?;
                        expected.push((workers, l, c));
                        expected.len() - 1
                    }
                };
                let (_, want_labels, want_centroids) = &expected[at];
                first_difference("label", labels.view().iter(), want_labels.iter(), |g, e| g == e)?;
                first_difference(
                    "centroid coordinate",
                    centroids.view().iter(),
                    want_centroids.iter(),
                    |g, e| g.to_bits() == e.to_bits(),
                )
            }
            State::Mandelbrot { image, expected } => {
                let expected = match expected {
                    Some(e) => e,
                    None => {
                        let (height, width) = image.view().dim();
                        let mut e = Array2::zeros((height, width));
                        let (max_iter, _) = mandelbrot_size(workload);
                        let params = MandelbrotParams::upper_half(width, height, max_iter);
                        mandelbrot_rows(0, e.view_mut(), &params).map_err(|e| e.to_string())?;
                        expected.insert(e)
                    }
                };
                first_difference("pixel", image.view().iter(), expected.iter(), |g, e| g == e)
            }
        }
    }
}

fn mandelbrot_size(w: Workload) -> (u32, bool) {
    match w {
        Workload::Mandelbrot {
            max_iter, dynamic, ..
        } => (max_iter, dynamic),
        _ => (0, false),
    }
}

/// `Err` naming the first (flat, row-major) index where `got` and
/// `expected` differ.
fn first_difference<'a, T: fmt::Display + 'a>(
    what: &str,
    got: impl Iterator<Item = &'a T>,
    expected: impl Iterator<Item = &'a T>,
    same: impl Fn(&T, &T) -> bool,
) -> Result<(), String> {
    match got.zip(expected).enumerate().find(|(_, (g, e))| !same(g, e)) {
        None => Ok(()),
        Some((i, (g, e))) => Err(format!("{what} {i} is {g}, but the serial computation gives {e}")),
    }
}

/// Lloyd's k-means in this thread over the chunks the backends use for
/// `workers` workers (the static schedule), the partials merged in chunk
/// order as `map_reduce` combines them: the labels and centroids every
/// backend must reproduce bit for bit.
fn serial_kmeans(
    points: ArrayView2<'_, f64>,
    start: &Array2<f64>,
    workers: usize,
    iterations: usize,
) -> Result<(Array1<u32>, Array2<f64>), String> {
    let n = points.nrows();
    let mut labels = Array1::<u32>::zeros(n);
    let mut centroids = start.clone();
    let chunks: Vec<Range<usize>> = shmpar::core::chunk::chunk_ranges(n, workers).collect();
    for _ in 0..iterations {
        let mut total: Option<KmeansPartial> = None;
        for rows in &chunks {
            let part = kmeans_assign(
                points.slice(ndarray::s![rows.clone(), ..]),
                centroids.view(),
                labels.slice_mut(ndarray::s![rows.clone()]),
            )
            .map_err(|e| e.to_string())?;
            total = Some(match total {
                None => part,
                Some(t) => t.merge(&part),
            });
        }
        let total = total.unwrap_or(KmeansPartial::EMPTY);
        kmeans_update(&total, centroids.view_mut()).map_err(|e| e.to_string())?;
    }
    Ok((labels, centroids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        for spec in [
            "triad",
            "matvec",
            "kmeans",
            "mandelbrot",
            "mandelbrot-static",
            "triad:1000",
            "matvec:64",
            "kmeans:1000:3",
            "mandelbrot:64:32:100",
            "mandelbrot-static:64:32:100",
        ] {
            let w = Workload::parse(spec).expect("a workload").expect("valid");
            assert_eq!(w.spec(), spec);
        }
        assert_eq!(
            Workload::parse("triad:1e5").unwrap().unwrap(),
            Workload::Triad { n: 100_000 }
        );
        assert_eq!(
            Workload::parse("kmeans:1e3").unwrap().unwrap().spec(),
            "kmeans:1000:10"
        );
        assert!(Workload::parse("sqrt").is_none());
        for bad in [
            "triad:0",
            "triad:x",
            "triad:1:2",
            "kmeans:10",
            "mandelbrot:64",
            "mandelbrot:64:32:1e10",
            "matvec:1e10",
        ] {
            assert!(Workload::parse(bad).expect("a workload").is_err(), "{bad}");
        }
    }

    #[test]
    fn mandelbrot_has_a_static_twin() {
        let w = Workload::parse("mandelbrot:8:4:10").unwrap().unwrap();
        assert_eq!(w.static_twin().unwrap().spec(), "mandelbrot-static:8:4:10");
        assert!(w.static_twin().unwrap().static_twin().is_none());
    }

    #[test]
    fn serial_kmeans_labels_do_not_depend_on_the_chunks() {
        let mut points = Array2::zeros((500, KMEANS_D));
        kmeans_points(points.view_mut(), 0, KMEANS_K, 7).unwrap();
        let start = kmeans_init(points.view(), KMEANS_K).unwrap();
        let (one, c1) = serial_kmeans(points.view(), &start, 1, 3).unwrap();
        let (three, c3) = serial_kmeans(points.view(), &start, 3, 3).unwrap();
        assert_eq!(one, three);
        let deviation = c1.iter().zip(&c3).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(deviation < 1e-9, "{deviation}");
    }
}
