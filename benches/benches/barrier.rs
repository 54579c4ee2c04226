//! Barrier latency across processes: the in-segment `shmpar_core::Barrier`
//! (adaptive spin, and a few fixed spin budgets), the same code as a pure
//! futex barrier, a process-shared `pthread_barrier_t`, and
//! `std::sync::Barrier` between threads. One iteration = one phase.
//!
//! All participant processes are forked before criterion starts (a fork
//! needs a single-threaded process).

use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use shmpar_benches::barriers::{ProcessBarrier, ProcessGroup, ThreadGroup};

fn main() {
    let cpus = shmpar_benches::os::cpus();
    let mut parties = vec![2, cpus, 2 * cpus];
    parties.sort_unstable();
    parties.dedup();
    let groups: Vec<ProcessGroup> = parties
        .iter()
        .flat_map(|&p| ProcessBarrier::ALL.map(move |k| (k, p)))
        .map(|(k, p)| ProcessGroup::start(k, p).expect("fork the participants"))
        .collect();
    let kinds: Vec<ProcessBarrier> = parties.iter().flat_map(|_| ProcessBarrier::ALL).collect();
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    let mut g = c.benchmark_group("barrier");
    for (group, kind) in groups.iter().zip(&kinds) {
        g.bench_function(BenchmarkId::new(kind.name(), group.parties()), |b| {
            b.iter_custom(|iters| group.round(iters))
        });
    }
    for &p in &parties {
        let threads = ThreadGroup::start(p);
        g.bench_function(BenchmarkId::new("std-threads", p), |b| {
            b.iter_custom(|iters| threads.round(iters))
        });
    }
    g.finish();
    drop(groups);
    c.final_summary();
}
