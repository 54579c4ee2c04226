//! Job dispatch overhead on 1,000-element arrays with a near-empty kernel:
//! a persistent process pool over one array and over three
//! (`(&mut a, &b, whole(&c))`), a map-reduce, a fork per job (a capturing
//! closure), rayon's `broadcast` and `install`, and the threads backend.

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use ndarray::Ix1;
use shmpar::{Backend, BackendKind, Pool, SharedArray, whole};

fn main() {
    shmpar::init();
    // Process pool first (it forks); rayon pools after.
    let pool = Pool::builder().workers(2).build().expect("build the pool");
    let mut a = SharedArray::<f64, Ix1>::create(1000).expect("create");
    let b = SharedArray::<f64, Ix1>::create(1000).expect("create");
    let c = SharedArray::<f64, Ix1>::create(1000).expect("create");
    let mut cr = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    let mut g = cr.benchmark_group("dispatch");
    g.bench_function("pool-persistent", |bench| {
        bench.iter(|| pool.run(&mut a, 1.0, |_, mut a, k| a[0] += *k).expect("job"))
    });
    g.bench_function("pool-three-arrays", |bench| {
        bench.iter(|| {
            pool.run((&mut a, &b, whole(&c)), 1.0, |_, (mut a, b, c), k| {
                a[0] += b[0] * *k + c[999]
            })
            .expect("job")
        })
    });
    g.bench_function("pool-map-reduce", |bench| {
        bench.iter(|| {
            black_box(
                pool.map_reduce_with(&a, (), |_, a, _| a[0], |x, y| x + y)
                    .expect("job"),
            )
        })
    });
    let k = black_box(1.0);
    g.sample_size(10);
    g.bench_function("pool-fork-per-job", |bench| {
        bench.iter(|| {
            pool.run_forked(&mut a, (), move |_, mut a, _| a[0] += k)
                .expect("job")
        })
    });
    g.sample_size(20);
    let rayon_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("rayon");
    g.bench_function("rayon-broadcast", |bench| {
        bench.iter(|| black_box(rayon_pool.broadcast(|c| c.index())))
    });
    g.bench_function("rayon-install", |bench| {
        bench.iter(|| rayon_pool.install(|| black_box(0)))
    });
    let threads = Backend::new(BackendKind::Threads, 2).expect("threads");
    g.bench_function("backend-threads", |bench| {
        bench.iter(|| threads.run(&mut a, 1.0, |_, mut a, k| a[0] += *k).expect("job"))
    });
    g.bench_function("backend-threads-three-arrays", |bench| {
        bench.iter(|| {
            threads
                .run((&mut a, &b, whole(&c)), 1.0, |_, (mut a, b, c), k| {
                    a[0] += b[0] * *k + c[999]
                })
                .expect("job")
        })
    });
    g.finish();
    cr.final_summary();
}
