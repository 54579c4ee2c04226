//! Job dispatch overhead on a 1,000-element array with a near-empty kernel:
//! a persistent process pool, a fork per job (a capturing closure), rayon's
//! `broadcast` and `install`, and the threads backend.

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use ndarray::Ix1;
use shmpar::{Backend, BackendKind, Pool, SharedArray};

fn main() {
    shmpar::init();
    // Process pool first (it forks); rayon pools after.
    let pool = Pool::builder().workers(2).build().expect("build the pool");
    let mut a = SharedArray::<f64, Ix1>::create(1000).expect("create");
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    let mut g = c.benchmark_group("dispatch");
    g.bench_function("pool-persistent", |b| {
        b.iter(|| {
            pool.for_each_chunk_with(&mut a, 1.0, |_, mut c, k| c[0] += *k)
                .expect("job")
        })
    });
    g.bench_function("pool-map-reduce", |b| {
        b.iter(|| {
            black_box(
                pool.map_reduce_with(&a, (), |_, c, _| c[0], |x, y| x + y)
                    .expect("job"),
            )
        })
    });
    let k = black_box(1.0);
    g.sample_size(10);
    g.bench_function("pool-fork-per-job", |b| {
        b.iter(|| {
            pool.run_forked(&mut a, (), move |_, mut c, _| c[0] += k)
                .expect("job")
        })
    });
    g.sample_size(20);
    let rayon_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("rayon");
    g.bench_function("rayon-broadcast", |b| {
        b.iter(|| black_box(rayon_pool.broadcast(|c| c.index())))
    });
    g.bench_function("rayon-install", |b| {
        b.iter(|| rayon_pool.install(|| black_box(0)))
    });
    let threads = Backend::new(BackendKind::Threads, 2).expect("threads");
    g.bench_function("backend-threads", |b| {
        b.iter(|| {
            threads
                .for_each_chunk_with(&mut a, 1.0, |_, mut c, k| c[0] += *k)
                .expect("job")
        })
    });
    g.finish();
    c.final_summary();
}
