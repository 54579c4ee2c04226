//! Segment create and attach cost against size (1 MiB .. 4 GiB). Sizes that
//! do not fit in /dev/shm (with 256 MiB to spare) are skipped; create is
//! benched up to 256 MiB (it zero-fills through `posix_fallocate`), attach
//! at every size.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use ndarray::Ix1;
use shmpar::SharedArray;
use shmpar_core::Scope;

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    let mut g = c.benchmark_group("segment");
    for mib in [1u64, 16, 256, 1024, 4096] {
        let bytes = mib << 20;
        let free = shmpar_core::os::free_bytes(Path::new("/dev/shm")).unwrap_or(0);
        if free < bytes + (256 << 20) {
            eprintln!(
                "segment: skipping {mib} MiB: /dev/shm has {} MiB free",
                free >> 20
            );
            continue;
        }
        let len = (bytes / 8) as usize;
        if mib <= 256 {
            g.bench_function(BenchmarkId::new("create", format!("{mib}MiB")), |b| {
                b.iter(|| black_box(SharedArray::<f64, Ix1>::create(len).expect("create")))
            });
        }
        // A process holds one handle per segment: the scope keeps (and at
        // its end removes) the name, so that attach makes the only handle.
        let scope = Scope::new();
        let mut a = scope.create::<f64, Ix1>(len).expect("create");
        let name = a.name();
        a.segment_mut().persist();
        drop(a);
        g.bench_function(BenchmarkId::new("attach", format!("{mib}MiB")), |b| {
            b.iter(|| black_box(SharedArray::<f64, Ix1>::attach(&name).expect("attach")))
        });
    }
    g.finish();
    c.final_summary();
}
