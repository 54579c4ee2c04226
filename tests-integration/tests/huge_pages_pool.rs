//! A pool over huge-page arrays (issue 14, item 1): workers attach to
//! arrays of 2 MiB pages, each gets whole pages under the static schedule,
//! every backend splits the rows the same way, and results are right.
//!
//! Runs in a mount namespace of its own with a `huge=within_size` tmpfs
//! over `/dev/shm` (`unshare -m`, as root), so nothing is left mounted or
//! in the real `/dev/shm`; without root or `unshare` it says on stderr that
//! it is skipped. The binary holds this one test on purpose: the pool
//! forks, and a fork is sound only while no other thread holds a lock the
//! child needs (see the `SAFETY` comment below).

use std::io::Write;
use std::path::Path;
use std::process::Command;

use ndarray::{Array1, ArrayViewMut1, Ix1};
use shmpar::{Backend, BackendKind, Ctx, Pool, SharedArray};
use shmpar_core::{HugePages, SegmentOptions};

const INNER: &str = "SHMPAR_HUGE_POOL_INNER";

fn tell(line: &str) {
    let _ = writeln!(std::io::stderr(), "huge_pages_pool: {line}");
}

fn mount_namespace() -> String {
    std::fs::read_link("/proc/self/ns/mnt")
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

#[test]
fn a_pool_splits_huge_page_arrays_on_whole_pages() {
    match std::env::var(INNER) {
        Ok(outer) => {
            assert_ne!(mount_namespace(), outer, "not in a mount namespace of its own");
            inside();
        }
        Err(_) => outside(),
    }
}

fn outside() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        tell("SKIPPED: mounting a huge=within_size tmpfs over /dev/shm needs root");
        return;
    }
    if !Path::new("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size").exists() {
        tell("SKIPPED: the kernel has no transparent huge pages");
        return;
    }
    let script =
        "mount -t tmpfs -o size=1g,mode=1777,huge=within_size shmpar-test /dev/shm && exec \"$0\" \"$@\"";
    let out = match Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_pool_splits_huge_page_arrays_on_whole_pages",
            "--nocapture",
        ])
        .env(INNER, mount_namespace())
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            tell(&format!("SKIPPED: `unshare` cannot be run ({e})"));
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("unshare failed") {
        tell(&format!("SKIPPED: no mount namespaces here: {}", stderr.trim()));
        return;
    }
    assert!(
        out.status.success() && stdout.contains("pool over huge pages: boundary"),
        "the namespaced run failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

/// 16 pages and 1000 rows of f64: 8 whole pages a worker.
const PAGE_ROWS: usize = (2 << 20) / 8;
const ROWS: usize = 16 * PAGE_ROWS + 1000;

fn start(ctx: &Ctx<'_>, _rows: ndarray::ArrayView1<'_, f64>, _: &()) -> u64 {
    ctx.rows().start as u64
}

fn sqrt(mut rows: ArrayViewMut1<'_, f64>) {
    rows.mapv_inplace(f64::sqrt);
}

fn inside() {
    let page = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size").unwrap();
    assert_eq!(
        page.trim(),
        (2 << 20).to_string(),
        "this test assumes 2 MiB huge pages"
    );
    // SAFETY: this binary holds one test, so besides this thread there is
    // only the harness's main thread, blocked waiting for this test to end;
    // it holds no lock that a worker or a kernel takes in the child.
    let pool = unsafe { Pool::builder().workers(2).allow_threads() }
        .build()
        .unwrap();
    let on = SegmentOptions::new().huge_pages(HugePages::On);
    let values = Array1::from_iter((0..ROWS).map(|i| (i * i) as f64));
    let mut a = SharedArray::from_array_with(&on, &values).unwrap();
    assert_eq!(a.segment().page_size(), 2 << 20);
    assert!(matches!(a.segment().location(), shmpar_core::Location::Shm(_)));

    // The second worker's rows start on a page: 8 pages each, the last
    // worker also the 1000 rows past the last whole page.
    let boundary = pool.map_reduce_with(&a, (), start, u64::max).unwrap();
    assert_eq!(boundary, (8 * PAGE_ROWS) as u64);
    pool.for_each_chunk(&mut a, sqrt).unwrap();
    assert!(a.view().iter().enumerate().all(|(i, &x)| x == i as f64));

    // Every backend splits the same way.
    for kind in [BackendKind::Threads, BackendKind::Serial] {
        let backend = Backend::new(kind, 2).unwrap();
        assert_eq!(
            backend.map_reduce_with(&a, (), start, u64::max).unwrap(),
            boundary,
            "{kind}"
        );
    }

    // A 4 KiB-page array of the same rows splits balanced to the row.
    let plain = SharedArray::from_array(&values).unwrap();
    assert_eq!(
        pool.map_reduce_with(&plain, (), start, u64::max).unwrap(),
        (ROWS / 2) as u64
    );
    // Split together with the huge one: the huge one's pages decide.
    let both = pool
        .map_reduce_with((&a, &plain), (), |ctx, _, _| ctx.rows().start as u64, u64::max)
        .unwrap();
    assert_eq!(both, boundary);

    // A double buffer writes each worker's aligned rows: b = a + 1, a = b + 1.
    let mut b = SharedArray::<f64, Ix1>::create_with(&on, ROWS).unwrap();
    pool.double_buffer(&mut a, &mut b, 2, (), |ctx, src, mut dst, _| {
        let start = ctx.rows().start;
        for (k, x) in dst.iter_mut().enumerate() {
            *x = src[start + k] + 1.0;
        }
    })
    .unwrap();
    assert!(a.view().iter().enumerate().all(|(i, &x)| x == i as f64 + 2.0));
    println!(
        "pool over huge pages: boundary at row {boundary} ({} pages)",
        boundary as usize / PAGE_ROWS
    );
}
