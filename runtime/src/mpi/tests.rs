//! The MPI backend's tests: real MPI jobs of this test binary.
//!
//! `mpi_jobs` starts `mpirun` on this binary (1, 2 and 4 ranks on one
//! node, and 4 and 3 ranks split into several nodes with
//! `SHMPAR_MPI_NODE_SIZE`), which runs `suite` on every rank; `panicking_kernel`
//! checks that a kernel's panic ends the job instead of hanging it. A rank
//! knows it is one by `SHMPAR_MPI_TEST`, set by the parent.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};
use shmpar_core::chunk::chunk_range;
use shmpar_kernels::stencil::{heat_serial_1d, heat_serial_2d, heat_step_1d, heat_step_2d};

use super::{DistArray, NODE_SIZE_VAR, Replicated, World, whole};
use crate::{Backend, BackendKind, Ctx, Error, Serde, SharedArray};

/// Set in the ranks' environment: which check they run.
const MODE_VAR: &str = "SHMPAR_MPI_TEST";
/// The longest a job may take before the parent calls it hung.
const DEADLINE: Duration = Duration::from_secs(300);

/// Runs this test binary's test `test` under `mpirun -n ranks`; returns
/// whether it succeeded and what it printed.
fn mpirun(test: &str, mode: &str, ranks: usize, node_size: Option<usize>) -> (bool, String) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = Command::new("mpirun");
    command
        .args(["--oversubscribe", "-n", &ranks.to_string(), "-x", MODE_VAR])
        .env(MODE_VAR, mode)
        // Open MPI refuses root without these; they change nothing else.
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    if let Some(size) = node_size {
        command
            .args(["-x", NODE_SIZE_VAR])
            .env(NODE_SIZE_VAR, size.to_string());
    } else {
        command.env_remove(NODE_SIZE_VAR);
    }
    let mut child = command
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun starts (the mpi feature needs Open MPI's mpirun on PATH)");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for mpirun") {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mpirun -n {ranks} ({mode}) hung for {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    (status.success(), text)
}

#[test]
fn mpi_jobs() {
    if std::env::var_os(MODE_VAR).is_some() {
        return suite();
    }
    for (ranks, node_size) in [(1, None), (2, None), (4, None), (4, Some(2)), (3, Some(1))] {
        let (ok, text) = mpirun("mpi::tests::mpi_jobs", "suite", ranks, node_size);
        assert!(
            ok,
            "mpirun -n {ranks} (nodes of {node_size:?} ranks) failed:\n{text}"
        );
        assert!(
            text.contains(&format!("suite passed on {ranks} ranks")),
            "no rank 0 report:\n{text}"
        );
    }
}

#[test]
fn panicking_kernel() {
    if std::env::var_os(MODE_VAR).is_some() {
        let world = World::init().expect("MPI starts");
        let mut a = DistArray::<f64, _>::create(&world, 100).expect("an array");
        if world.is_leader() {
            println!("segments: {} {}", a.name(), world.rendezvous.node.name());
        }
        world.barrier();
        // Rank 1 panics; rank 0 waits in the kernel's barrier for it.
        let _ = world.run(&mut a, (), |ctx, _rows, _| {
            if ctx.rank() == 1 {
                panic!("kernel panic on purpose");
            }
            ctx.barrier();
        });
        unreachable!("the job was aborted");
    }
    let start = Instant::now();
    let (ok, text) = mpirun("mpi::tests::panicking_kernel", "panic", 2, None);
    assert!(!ok, "the job succeeded:\n{text}");
    assert!(text.contains("kernel panic on purpose"), "{text}");
    assert!(text.contains("aborting the MPI job"), "{text}");
    assert!(start.elapsed() < DEADLINE);
    // The launcher stopped rank 0 with SIGTERM, and its handler removed the
    // segments it had created.
    let names: Vec<&str> = text
        .lines()
        .filter_map(|line| line.split_once("segments: ").map(|(_, names)| names))
        .flat_map(|names| names.split(' '))
        .collect();
    assert_eq!(names.len(), 2, "{text}");
    for name in names {
        assert!(
            !std::path::Path::new("/dev/shm").join(name).exists(),
            "{name} was left behind"
        );
    }
}

/// Every check, on every rank of one job.
fn suite() {
    let world = World::init().expect("MPI starts");
    let (rank, size) = (world.rank(), world.size());
    let mut names = Vec::new();
    check_world(&world);
    names.extend(jobs_match_the_serial_backend(&world));
    names.extend(arguments(&world));
    names.extend(scatter_gather(&world));
    names.extend(stencils(&world));
    errors(&world);
    // Every segment is gone once its arrays are dropped (each leader
    // removed its own, after the barrier that ends every rank's use).
    world.barrier();
    for name in &names {
        assert!(
            !std::path::Path::new("/dev/shm").join(name).exists(),
            "rank {rank}: {name} was left in /dev/shm"
        );
    }
    if rank == 0 {
        println!("suite passed on {size} ranks, {} nodes", world.nodes());
    }
}

fn check_world(world: &World) {
    assert!(world.rank() < world.size());
    let expected_nodes = match std::env::var(NODE_SIZE_VAR)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(k) => world.size().div_ceil(k),
        None => 1, // one machine
    };
    assert_eq!(world.nodes(), expected_nodes);
    let ranks = world.node_ranks(world.node());
    assert!(ranks.contains(&world.rank()));
    assert_eq!(world.is_leader(), world.rank() == ranks.start);
    let all: usize = (0..world.nodes()).map(|n| world.node_ranks(n).len()).sum();
    assert_eq!(all, world.size());
    for _ in 0..100 {
        world.barrier();
    }
}

fn value(i: usize) -> f64 {
    // Magnitudes that make a sum depend on its order.
    let x = ((i * 7919) % 10_007) as f64;
    if i.is_multiple_of(3) { x * 1e10 } else { x / 7.0 }
}

/// The same kernels on the serial backend with as many chunks as ranks give
/// the same bits; the kernels see global ranks and rows.
fn jobs_match_the_serial_backend(world: &World) -> Vec<String> {
    let n = 10_001;
    let mut a = DistArray::<f64, _>::create(world, n).unwrap();
    assert_eq!(a.own_rows(), chunk_range(n, world.size(), world.rank()));
    world
        .run(&mut a, 7u64, |ctx, mut rows, &salt| {
            assert_eq!(rows.len(), ctx.rows().len());
            for (k, x) in rows.iter_mut().enumerate() {
                *x = value(ctx.rows().start + k) + salt as f64;
            }
            // Phases: every rank meets every other, as often as it likes.
            ctx.barrier();
            ctx.barrier();
        })
        .unwrap();
    world
        .for_each_chunk(&mut a, |rows| shmpar_kernels::sqrt_abs(rows))
        .unwrap();
    let sum = world.map_reduce(&a, |rows| rows.sum(), |x, y| x + y).unwrap();
    let ranks = world.map_reduce_with(
        &a,
        (),
        |ctx, _, _| [ctx.rank() as u64, ctx.workers() as u64],
        |x, y| [x[0] * 10 + y[0], y[1]],
    );
    let expected_ranks = (0..world.size() as u64).fold(0, |acc, r| acc * 10 + r);
    assert_eq!(ranks.unwrap(), [expected_ranks, world.size() as u64]);
    // Partials of different lengths, combined in rank order.
    let lists = world
        .map_reduce_with(
            &a,
            (),
            |ctx, _, _| Serde(vec![ctx.rank() as u64; ctx.rank() + 1]),
            |mut x, y| {
                x.0.extend(y.0);
                x
            },
        )
        .unwrap();
    let expected: Vec<u64> = (0..world.size() as u64)
        .flat_map(|r| std::iter::repeat_n(r, r as usize + 1))
        .collect();
    assert_eq!(lists.0, expected);

    let serial = Backend::new(BackendKind::Serial, world.size()).unwrap();
    let mut reference = SharedArray::from_array(&Array1::from_iter((0..n).map(|i| value(i) + 7.0))).unwrap();
    serial
        .for_each_chunk(&mut reference, |rows| shmpar_kernels::sqrt_abs(rows))
        .unwrap();
    let expected = serial
        .map_reduce(&reference, |rows| rows.sum(), |x, y| x + y)
        .unwrap();
    assert_eq!(
        sum.to_bits(),
        expected.to_bits(),
        "rank {}: {sum} vs {expected}",
        world.rank()
    );
    let gathered = a.gather(world).unwrap();
    if let Some(gathered) = gathered {
        assert_eq!(gathered, reference.view());
    }
    vec![a.name()]
}

/// Split, whole (replicated and gathered) and tuple arguments: y = A·x.
fn arguments(world: &World) -> Vec<String> {
    let (rows, cols) = (37, 5);
    let matrix = Array2::from_shape_fn((rows, cols), |(i, j)| (i * cols + j) as f64 * 0.5 - 3.0);
    let x = Array1::from_shape_fn(cols, |j| j as f64 + 1.0);
    let root = world.rank() == 0;
    let a = DistArray::scatter(world, root.then_some(&matrix)).unwrap();
    let x_copy = Replicated::broadcast(world, root.then_some(&x)).unwrap();
    assert_eq!(x_copy.view(), x.view());
    let x_split = DistArray::scatter(world, root.then_some(&x)).unwrap();
    let mut y = DistArray::<f64, _>::create(world, rows).unwrap();
    let expected = matrix.dot(&x);

    fn matvec(
        _: &Ctx<'_>,
        (a, mut y, x): (
            ArrayView2<'_, f64>,
            ArrayViewMut1<'_, f64>,
            crate::WholeView<'_, f64, ndarray::Ix1>,
        ),
        _: &(),
    ) {
        for (row, out) in a.rows().into_iter().zip(y.iter_mut()) {
            *out = row.dot(&*x);
        }
    }
    world.run((&a, &mut y, whole(&x_copy)), (), matvec).unwrap();
    assert_eq!(
        y.gather(world).unwrap().unwrap_or_else(|| expected.clone()),
        expected
    );
    y.local_mut().fill(0.0);
    world.run((&a, &mut y, whole(&x_split)), (), matvec).unwrap();
    assert_eq!(
        y.gather(world).unwrap().unwrap_or_else(|| expected.clone()),
        expected
    );

    // A replicated array passed split: its own rows, as for a DistArray.
    let own = world.map_reduce_with(
        (&y, &x_copy),
        (),
        |_, (y, x), _| [y.len(), x.len()],
        |p, q| [p[0] + q[0], p[1] + q[1]],
    );
    assert!(
        matches!(own, Err(Error::Mismatch { .. })),
        "split arrays of different rows"
    );
    let counts = world
        .map_reduce(&x_copy, |x: ArrayView1<'_, f64>| x.len(), |p, q| p + q)
        .unwrap();
    assert_eq!(counts, cols);

    let all = a.allgather(world).unwrap();
    assert_eq!(all.view(), matrix.view());
    vec![a.name(), x_copy.name(), x_split.name(), y.name(), all.name()]
}

/// Scatter and gather of shapes that leave some ranks without rows.
fn scatter_gather(world: &World) -> Vec<String> {
    let mut names = Vec::new();
    for rows in [0, 1, 3, 8, 101] {
        let source = Array2::from_shape_fn((rows, 3), |(i, j)| (i * 3 + j) as i32 - 40);
        let a = DistArray::scatter(world, (world.rank() == 0).then_some(&source)).unwrap();
        assert_eq!(a.shape(), [rows, 3]);
        let mine = source.slice_axis(Axis(0), a.own_rows().into());
        assert_eq!(a.local(), mine);
        if let Some(back) = a.gather(world).unwrap() {
            assert_eq!(back, source);
        }
        names.push(a.name());
    }
    names
}

/// The heat kernels of shmpar-kernels, unchanged, against the serial
/// references: 1-D and 2-D, halos of 1 and 2 (with ranks that own fewer
/// rows than the halo).
fn stencils(world: &World) -> Vec<String> {
    let mut names = Vec::new();
    for (n, steps) in [(64, 33), (5, 4)] {
        let start = Array1::from_shape_fn(n, |i| if i == n / 2 { 100.0 } else { (i % 7) as f64 });
        let mut a = DistArray::scatter_with_halo(world, (world.rank() == 0).then_some(&start), 1).unwrap();
        let mut b = DistArray::<f64, _>::create_with_halo(world, n, 1).unwrap();
        world
            .double_buffer(&mut a, &mut b, steps, 0.25, |ctx, src, dst, &alpha| {
                heat_step_1d(src, dst, ctx.rows(), alpha).unwrap();
            })
            .unwrap();
        let result = if steps % 2 == 0 { &a } else { &b };
        if let Some(result) = result.gather(world).unwrap() {
            let mut serial = start.clone();
            heat_serial_1d(serial.view_mut(), steps, 0.25);
            assert_eq!(result, serial, "1-D heat on {n} cells");
        }
        names.extend([a.name(), b.name()]);
    }
    for (rows, halo, steps) in [(40, 1, 20), (7, 2, 9), (9, 2, 10), (5, 2, 6)] {
        if world.nodes() > 1 && (0..world.nodes()).any(|node| world.node_rows(rows, node).len() < halo) {
            let made = DistArray::<f64, _>::create_with_halo(world, (rows, 6), halo);
            assert!(
                matches!(made, Err(Error::Mismatch { .. })),
                "a node with fewer rows than the halo"
            );
            continue;
        }
        let start = Array2::from_shape_fn((rows, 6), |(i, j)| ((i * 6 + j) % 11) as f64);
        let mut a = DistArray::scatter_with_halo(world, (world.rank() == 0).then_some(&start), halo).unwrap();
        let mut b = DistArray::<f64, _>::create_with_halo(world, (rows, 6), halo).unwrap();
        fn step(ctx: &Ctx<'_>, src: ArrayView2<'_, f64>, dst: ArrayViewMut2<'_, f64>, alpha: &f64) {
            heat_step_2d(src, dst, ctx.rows(), *alpha).unwrap();
        }
        world.double_buffer(&mut a, &mut b, steps, 0.2, step).unwrap();
        let result = if steps % 2 == 0 { &a } else { &b };
        if let Some(result) = result.gather(world).unwrap() {
            let mut serial = start.clone();
            heat_serial_2d(serial.view_mut(), steps, 0.2);
            assert_eq!(result, serial, "2-D heat on {rows} rows, halo {halo}");
        }
        names.extend([a.name(), b.name()]);
    }
    names
}

/// Arguments that cannot form a job fail on every rank, alike, and the
/// world goes on.
fn errors(world: &World) {
    let mut a = DistArray::<f64, _>::create(world, 10).unwrap();
    let b = DistArray::<f64, _>::create(world, 11).unwrap();
    let mismatch = |r: crate::Result<()>| matches!(r, Err(Error::Mismatch { .. }));
    assert!(mismatch(world.run((&mut a, &b), (), |_, _, _| {})));
    let mut c = DistArray::<f64, _>::create(world, 10).unwrap();
    assert!(
        mismatch(world.double_buffer(&mut a, &mut c, 1, (), |_, _, _, _| {})),
        "no halo"
    );
    // Another shape on one rank: every rank refuses.
    if world.size() > 1 {
        let rows = if world.rank() + 1 == world.size() { 12 } else { 10 };
        assert!(matches!(
            DistArray::<u8, _>::create(world, rows),
            Err(Error::Mismatch { .. })
        ));
    }
    // Rank 0 passes nothing to scatter: every rank refuses.
    assert!(matches!(
        DistArray::<f64, ndarray::Ix1>::scatter(world, None::<&Array1<f64>>),
        Err(Error::Mismatch { .. })
    ));
    world.for_each_chunk(&mut a, |mut rows| rows.fill(1.0)).unwrap();
    assert_eq!(
        world.map_reduce(&a, |rows| rows.sum(), |x, y| x + y).unwrap(),
        10.0
    );
}
