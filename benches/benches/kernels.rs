//! Kernel throughput per backend, size and element type: sqrt(abs(x)) in
//! place and the mean, on shmpar processes, rayon threads and serially, plus
//! the bandwidth-bound passes over the same memory.
//!
//! Sizes 10^3 .. 10^6 by default; `SHMPAR_BENCH_LARGE=1` adds 10^7 and 10^8
//! (800 MB of f64). Workers: `SHMPAR_BENCH_WORKERS` (default 2).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use ndarray::Ix1;
use shmpar::{Backend, BackendKind, Element, SharedArray};
use shmpar_benches::bandwidth::{self, Lane};
use shmpar_kernels::Float;

fn sizes() -> Vec<usize> {
    let mut s = vec![1_000, 10_000, 100_000, 1_000_000];
    if std::env::var_os("SHMPAR_BENCH_LARGE").is_some() {
        s.extend([10_000_000, 100_000_000]);
    }
    s
}

fn bench_type<T: Float + Element + Lane>(c: &mut Criterion, backends: &[Backend], workers: usize) {
    let dtype = T::DTYPE.name();
    for len in sizes() {
        let mut a = SharedArray::<T, Ix1>::create(len).expect("create the array");
        shmpar_benches::fill_signed(a.view_mut().into_slice().expect("contiguous"));
        let bytes = (len * size_of::<T>()) as u64;
        let mut g = c.benchmark_group(format!("sqrt_abs/{dtype}"));
        g.throughput(Throughput::Bytes(2 * bytes));
        for b in backends {
            g.bench_function(BenchmarkId::new(b.kind().name(), len), |bench| {
                bench.iter(|| {
                    b.for_each_chunk_with(&mut a, (), |_, c, _| shmpar_kernels::sqrt_abs(c))
                        .expect("sqrt job")
                })
            });
        }
        g.bench_function(BenchmarkId::new("bound-rw", len), |bench| {
            bench.iter(|| bandwidth::rw_pass(a.view_mut().into_slice().expect("contiguous"), workers))
        });
        g.finish();
        let mut g = c.benchmark_group(format!("mean/{dtype}"));
        g.throughput(Throughput::Bytes(bytes));
        for b in backends {
            g.bench_function(BenchmarkId::new(b.kind().name(), len), |bench| {
                bench.iter(|| {
                    black_box(
                        b.map_reduce_with(&a, (), |_, c, _| shmpar_kernels::sum(c), |x, y| x + y)
                            .expect("mean job"),
                    )
                })
            });
        }
        g.bench_function(BenchmarkId::new("bound-read", len), |bench| {
            bench.iter(|| {
                black_box(bandwidth::read_pass(
                    a.view().to_slice().expect("contiguous"),
                    workers,
                ))
            })
        });
        g.finish();
    }
}

fn main() {
    shmpar::init();
    let workers = std::env::var("SHMPAR_BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    // The process pool first: it forks, which needs a single-threaded process.
    let backends: Vec<Backend> = [BackendKind::Processes, BackendKind::Threads, BackendKind::Serial]
        .into_iter()
        .map(|k| Backend::new(k, workers).expect("start the backend"))
        .collect();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    bench_type::<f64>(&mut c, &backends, workers);
    bench_type::<f32>(&mut c, &backends, workers);
    c.final_summary();
}
