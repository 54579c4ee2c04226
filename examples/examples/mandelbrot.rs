//! Rows of very uneven cost: the Mandelbrot set's escape times, with the
//! rows handed out by three schedules.
//!
//! The image is the upper half of the classic view, `[-2, 0.5] × [0, 1.25]`:
//! a row near the real axis crosses the set, where every pixel costs the
//! full `MAX_ITER` iterations, while a row near the top costs a few per
//! pixel. (The whole classic view is symmetric about the real axis, so two
//! workers with a half each would be balanced by luck.) Under
//! `Schedule::Static` each worker takes one contiguous block of rows and the
//! worker with the bottom block does most of the work; under
//! `Schedule::Dynamic` idle workers claim small blocks of rows as they go,
//! and `Schedule::Guided` claims blocks that shrink as the rows run out.
//!
//! For reference, the same rows also run as rayon's own work stealing
//! (`par_chunks_mut`, one row a task, on a rayon pool of as many threads).
//! Every image must equal the serial one; the times are printed, not
//! checked (timing belongs in benchmarks).
//!
//! Run: `cargo run --release --example mandelbrot`

use std::process::ExitCode;
use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayViewMut2};
use rayon::prelude::*;
use shmpar::{Backend, BackendKind, Pool, Schedule, SharedArray};
use shmpar_kernels::workloads::{MandelbrotParams, mandelbrot_rows};

const EXAMPLE: &str = "mandelbrot";
const WIDTH: usize = 1024;
const HEIGHT: usize = 512;
const MAX_ITER: u32 = 1000;
const DYNAMIC_ROWS: usize = 4;
const RUNS: usize = 3;

/// The image's parameters as a value the pool carries to its workers: plain
/// data, copied as its bytes. (The newtype is needed because `Plain` is the
/// runtime's trait and `MandelbrotParams` the kernels' type.)
#[repr(transparent)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params(MandelbrotParams);
impl shmpar::Plain for Params {}

/// `Err` naming the first pixel where `got` differs from `expected`.
fn check(what: &str, got: &SharedArray<u32, ndarray::Ix2>, expected: &Array2<u32>) -> Result<(), String> {
    let got = got.view();
    match got.indexed_iter().find(|&(at, n)| *n != expected[at]) {
        None => Ok(()),
        Some(((row, col), n)) => Err(format!(
            "{what}: pixel ({row}, {col}) took {n} iterations, but {} serially",
            expected[[row, col]]
        )),
    }
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
    let threads = Backend::new(BackendKind::Threads, workers)?;
    let stealing = rayon::ThreadPoolBuilder::new().num_threads(workers).build()?;
    let params = MandelbrotParams::upper_half(WIDTH, HEIGHT, MAX_ITER);

    let mut expected = Array2::zeros((HEIGHT, WIDTH));
    let t = Instant::now();
    mandelbrot_rows(0, expected.view_mut(), &params)?;
    let serial = t.elapsed();

    let mut image = SharedArray::<u32, _>::create((HEIGHT, WIDTH))?;
    let schedules = [
        ("static", Schedule::Static),
        ("dynamic", Schedule::Dynamic { rows: DYNAMIC_ROWS }),
        ("guided", Schedule::Guided),
    ];
    // times[s] = (processes, threads) for schedule s: the best of `RUNS`,
    // the least disturbed by whatever else the machine runs. The backends
    // and schedules take turns, so that a noisy spell slows them alike.
    let mut times = [(Duration::MAX, Duration::MAX); 3];
    let mut rayon_time = Duration::MAX;
    for _ in 0..RUNS {
        image.view_mut().fill(u32::MAX);
        let t = Instant::now();
        stealing.install(|| -> Result<(), shmpar_kernels::Error> {
            let mut view = image.view_mut();
            let pixels = view.as_slice_mut().expect("a new array is contiguous");
            pixels
                .par_chunks_mut(WIDTH)
                .enumerate()
                .try_for_each(|(row, pixels)| {
                    let row_view = ArrayViewMut2::from_shape((1, WIDTH), pixels).expect("one row");
                    mandelbrot_rows(row, row_view, &params)
                })
        })?;
        rayon_time = rayon_time.min(t.elapsed());
        check("rayon's work stealing", &image, &expected)?;

        for ((name, schedule), time) in schedules.iter().zip(&mut times) {
            image.view_mut().fill(u32::MAX);
            let t = Instant::now();
            pool.run(schedule.on(&mut image), Params(params), |ctx, rows, params| {
                mandelbrot_rows(ctx.rows().start, rows, &params.0).expect("the rows lie within the image");
            })?;
            time.0 = time.0.min(t.elapsed());
            check(&format!("{name} on the processes"), &image, &expected)?;

            image.view_mut().fill(u32::MAX);
            let t = Instant::now();
            threads.run(schedule.on(&mut image), Params(params), |ctx, rows, params| {
                mandelbrot_rows(ctx.rows().start, rows, &params.0).expect("the rows lie within the image");
            })?;
            time.1 = time.1.min(t.elapsed());
            check(&format!("{name} on the threads"), &image, &expected)?;
        }
    }

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "mandelbrot [-2, 0.5] × [0, 1.25], {WIDTH}×{HEIGHT}, max_iter {MAX_ITER}, {workers} workers, \
         best of {RUNS}; serial {:.1} ms",
        ms(serial)
    );
    println!("  {:<12} {:>12} {:>12}", "schedule", "processes", "threads");
    for ((name, schedule), (on_pool, on_threads)) in schedules.iter().zip(times) {
        let label = match schedule {
            Schedule::Dynamic { rows } => format!("{name} ({rows})"),
            _ => (*name).to_string(),
        };
        println!("  {label:<12} {:>9.1} ms {:>9.1} ms", ms(on_pool), ms(on_threads));
    }
    println!(
        "  {:<12} {:>9.1} ms (rayon par_chunks_mut, a row a task)",
        "stealing",
        ms(rayon_time)
    );
    let speedup = |d: Duration| times[0].0.as_secs_f64() / d.as_secs_f64();
    println!(
        "  on the processes, static / dynamic: {:.2}, static / guided: {:.2}",
        speedup(times[1].0),
        speedup(times[2].0)
    );
    println!(
        "  dynamic / rayon's work stealing: processes {:.2}, threads {:.2}",
        times[1].0.as_secs_f64() / rayon_time.as_secs_f64(),
        times[1].1.as_secs_f64() / rayon_time.as_secs_f64()
    );
    println!(
        "ok: every schedule on {workers} worker processes and on {workers} threads gives the serial image"
    );
    Ok(())
}
