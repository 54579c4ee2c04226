//! k-means (Lloyd's algorithm) on 10⁶ points of 8 dimensions, k = 16, for
//! 10 iterations. Each iteration is one map-reduce job over three arrays:
//! every worker reads its rows of `points` and the whole of `centroids`,
//! writes its rows of `labels`, and returns its clusters' sums and counts;
//! the coordinator merges those partials in chunk order and, holding
//! `&mut centroids` between jobs, moves the centroids to the means.
//!
//! Checks: labels and centroids are bit-identical to the same jobs on the
//! serial backend with the same number of chunks (and on rayon threads),
//! and close to a plain serial loop, whose sums round differently.
//!
//! Run: `cargo run --release --example kmeans`

use std::process::ExitCode;
use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayView2, ArrayViewMut1, Ix1, Ix2};
use shmpar::{Backend, BackendKind, Ctx, Pool, SharedArray, WholeView, whole};
use shmpar_kernels::workloads::{KmeansPartial, kmeans_assign, kmeans_init, kmeans_points, kmeans_update};

const EXAMPLE: &str = "kmeans";
const N: usize = 1_000_000;
const D: usize = 8;
const K: usize = 16;
const ITERATIONS: usize = 10;

/// A k-means partial as a value the pool carries between processes: plain
/// data, copied as its bytes, opted in with one safe line. (The newtype is
/// needed because `Plain` is the runtime's trait and `KmeansPartial` the
/// kernels' type; the runtime could list it, as it lists the reductions'
/// partials.)
#[repr(transparent)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Partial(KmeansPartial);
impl shmpar::Plain for Partial {}

/// The job's kernel: a named `fn`, so that the pool and the other backends
/// run exactly the same code.
fn assign(
    _ctx: &Ctx<'_>,
    (points, labels, centroids): (
        ArrayView2<'_, f64>,
        ArrayViewMut1<'_, u32>,
        WholeView<'_, f64, Ix2>,
    ),
    _: &(),
) -> Partial {
    Partial(kmeans_assign(points, centroids.into_view(), labels).expect("points, labels and centroids agree"))
}

fn merge(a: Partial, b: Partial) -> Partial {
    Partial(a.0.merge(&b.0))
}

/// One backend's run of Lloyd's algorithm: how it runs a job, its own
/// labels and centroids, and its times.
struct Run<'b> {
    name: &'static str,
    job: Job<'b>,
    labels: SharedArray<u32, Ix1>,
    centroids: SharedArray<f64, Ix2>,
    moved: f64,
    /// Each iteration's time.
    times: Vec<Duration>,
}

/// One assignment job over `(points, labels, centroids)` on some backend.
type Job<'b> = Box<
    dyn Fn(
            &SharedArray<f64, Ix2>,
            &mut SharedArray<u32, Ix1>,
            &SharedArray<f64, Ix2>,
        ) -> shmpar::Result<Partial>
        + 'b,
>;

impl<'b> Run<'b> {
    /// The median iteration's time.
    fn per_iteration(&self) -> Duration {
        let mut times = self.times.clone();
        times.sort();
        times[times.len() / 2]
    }

    fn new(name: &'static str, job: Job<'b>, start: &Array2<f64>) -> shmpar::Result<Run<'b>> {
        Ok(Run {
            name,
            job,
            labels: SharedArray::create(N)?,
            centroids: SharedArray::from_array(start)?,
            moved: f64::NAN,
            times: Vec::new(),
        })
    }

    /// One iteration: the job, then the update of the centroids, timed.
    fn iterate(&mut self, points: &SharedArray<f64, Ix2>) -> Result<(), Box<dyn std::error::Error>> {
        let t = Instant::now();
        let partial = (self.job)(points, &mut self.labels, &self.centroids)?;
        self.moved = kmeans_update(&partial.0, self.centroids.view_mut())?;
        self.times.push(t.elapsed());
        if partial.0.points() != N as u64 {
            let covered = partial.0.points();
            return Err(format!("{}: the partials cover {covered} points, not {N}", self.name).into());
        }
        Ok(())
    }
}

/// The same algorithm as a plain serial loop over all points at once.
fn plain_lloyd(points: ArrayView2<'_, f64>, start: &Array2<f64>) -> (Vec<u32>, Array2<f64>, Duration) {
    let mut centroids = start.clone();
    let mut labels = vec![0u32; N];
    let t = Instant::now();
    for _ in 0..ITERATIONS {
        let mut sums = Array2::<f64>::zeros((K, D));
        let mut counts = [0u64; K];
        for (p, label) in points.rows().into_iter().zip(labels.iter_mut()) {
            let mut best = (f64::INFINITY, 0);
            for (c, centroid) in centroids.rows().into_iter().enumerate() {
                let distance: f64 = p
                    .iter()
                    .zip(centroid)
                    .map(|(x, y)| (x - y) * (x - y))
                    .fold(0.0, |s, t| s + t);
                if distance < best.0 {
                    best = (distance, c);
                }
            }
            *label = best.1 as u32;
            let mut sum = sums.row_mut(best.1);
            sum += &p;
            counts[best.1] += 1;
        }
        for ((mut centroid, sum), &count) in centroids.rows_mut().into_iter().zip(sums.rows()).zip(&counts) {
            if count > 0 {
                centroid.assign(&(&sum / count as f64));
            }
        }
    }
    (labels, centroids, t.elapsed())
}

fn same_bits(a: ArrayView2<'_, f64>, b: ArrayView2<'_, f64>) -> bool {
    a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

fn main() -> ExitCode {
    shmpar::init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{EXAMPLE} failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The example; every array and the pool are gone (and `/dev/shm` clean)
/// by the time it returns, error or not.
fn run() -> Result<(), Box<dyn std::error::Error>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(shmpar::MAX_POOL_WORKERS);
    // The pool first: it forks, which is safe only while this process has
    // one thread; the rayon threads come after it.
    let pool = Pool::builder().workers(workers).build()?;
    let serial = Backend::new(BackendKind::Serial, workers)?;
    let threads = Backend::new(BackendKind::Threads, workers)?;

    let mut points = SharedArray::<f64, _>::create((N, D))?;
    kmeans_points(points.view_mut(), 0, K, 7)?;
    let start = kmeans_init(points.view(), K)?;

    let mut runs = [
        Run::new(
            "the processes",
            Box::new(|p, l, c| pool.map_reduce_with((p, l, whole(c)), (), assign, merge)),
            &start,
        )?,
        Run::new(
            "the threads",
            Box::new(|p, l, c| threads.map_reduce_with((p, l, whole(c)), (), assign, merge)),
            &start,
        )?,
        Run::new(
            "the serial backend",
            Box::new(|p, l, c| serial.map_reduce_with((p, l, whole(c)), (), assign, merge)),
            &start,
        )?,
    ];
    // A warm-up job each (its result dropped): the workers map the arrays
    // and fault their pages in, so the timed iterations measure the work.
    for run in &mut runs {
        (run.job)(&points, &mut run.labels, &run.centroids)?;
    }
    // The backends take turns, iteration by iteration, so that a noisy
    // machine slows them alike.
    for _ in 0..ITERATIONS {
        for run in &mut runs {
            run.iterate(&points)?;
        }
    }
    let (plain_labels, plain_centroids, plain_time) = plain_lloyd(points.view(), &start);

    let [on_pool, on_threads, on_serial] = &runs;
    let (labels, centroids) = (on_pool.labels.view(), on_pool.centroids.view());
    for other in [on_serial, on_threads] {
        if let Some(i) = labels.iter().zip(other.labels.view()).position(|(a, b)| a != b) {
            let name = other.name;
            return Err(format!(
                "label of point {i}: {} on the processes, {} on {name}",
                labels[i],
                other.labels.view()[i]
            )
            .into());
        }
        if !same_bits(centroids, other.centroids.view()) {
            return Err(format!(
                "the centroids on the processes differ from those on {}:\n{centroids}\nvs\n{}",
                other.name,
                other.centroids.view()
            )
            .into());
        }
    }
    if !centroids.iter().all(|x| x.is_finite()) {
        return Err(format!("the centroids are not all finite:\n{centroids}").into());
    }
    // The plain loop adds all points of a cluster in one sum; the jobs add
    // per chunk, then the chunks' sums: the centroids agree to rounding.
    let deviation = centroids
        .iter()
        .zip(&plain_centroids)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let relabelled = labels.iter().zip(&plain_labels).filter(|(a, b)| a != b).count();
    if deviation > 1e-9 || relabelled > 0 {
        return Err(format!(
            "the jobs stray from the plain serial loop: centroids differ by up to {deviation:e}, \
             {relabelled} of {N} labels differ"
        )
        .into());
    }

    let counts = {
        let mut counts = [0u32; K];
        labels.iter().for_each(|&l| counts[l as usize] += 1);
        counts
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("k-means: {N} points × {D} dims, k = {K}, {ITERATIONS} iterations, {workers} workers");
    println!(
        "  cluster sizes {counts:?}, last centroid move {:.3e}",
        on_pool.moved
    );
    println!(
        "  per iteration (median): processes {:.2} ms, threads {:.2} ms, serial backend {:.2} ms; \
         plain loop {:.2} ms (mean)",
        ms(on_pool.per_iteration()),
        ms(on_threads.per_iteration()),
        ms(on_serial.per_iteration()),
        ms(plain_time) / ITERATIONS as f64
    );
    println!(
        "  processes / threads: {:.3}",
        on_pool.per_iteration().as_secs_f64() / on_threads.per_iteration().as_secs_f64()
    );
    println!(
        "ok: labels and centroids bit-identical on processes, threads and the serial backend; \
         within {deviation:.1e} of a plain serial loop, same labels"
    );
    Ok(())
}
