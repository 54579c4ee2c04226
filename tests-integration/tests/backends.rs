//! The three backends agree on what a job means, failures included:
//! multi-phase jobs (a barrier between phases, the double buffer) give the
//! same bits on processes, threads and serial; a panicking kernel, a rank
//! that finishes while the others wait at a barrier, and a barrier under a
//! claimed schedule are the same typed errors everywhere, never a panic in
//! the caller or a hang; a reduction over no rows is the same under every
//! schedule; the limit on a job's arrays holds everywhere.
//!
//! One process, one thread at a time (`harness = false`): the process
//! backend forks its workers, which is sound only while this process runs
//! no other thread, so the three backends are built first, processes
//! before the rayon threads, and every check runs in order on them. A
//! watchdog (started after the pool) ends the run if a check hangs.

use std::process::ExitCode;
use std::time::Duration;

use ndarray::{Array1, ArrayView1, ArrayViewMut1};
use shmpar::{Backend, BackendKind, Cause, Ctx, Error, Schedule, SharedArray, locked};
use shmpar_kernels::stencil::{heat_serial_1d, heat_step_1d};

type Check = fn(&[Backend]) -> Result<(), String>;

fn main() -> ExitCode {
    shmpar::init();
    // The checks make kernels panic on purpose: one line each, no backtrace.
    std::panic::set_hook(Box::new(|info| eprintln!("(expected) {info}")));
    let backends: Vec<Backend> = match BackendKind::ALL
        .into_iter()
        .map(|kind| Backend::new(kind, 3))
        .collect::<Result<_, _>>()
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("backends: cannot build the backends: {e}");
            return ExitCode::FAILURE;
        }
    };
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(120));
        eprintln!("backends: a check has hung for 120 s");
        std::process::exit(2);
    });
    let checks: [(&str, Check); 10] = [
        (
            "the double buffer gives the same bits everywhere",
            double_buffer_agrees,
        ),
        (
            "a barrier between phases over a locked total agrees",
            phases_with_a_lock_agree,
        ),
        (
            "a panicking kernel is WorkerFailed(Panicked) everywhere",
            panics_are_typed,
        ),
        (
            "a panic while others wait at the barrier ends the job",
            panic_at_barrier_ends_the_job,
        ),
        (
            "a rank that skips the barrier is named, never a hang",
            unequal_barriers_are_named,
        ),
        (
            "a barrier under a claimed schedule is refused",
            barrier_refused_when_claimed,
        ),
        (
            "a reduction over no rows is the same on every schedule",
            zero_rows_agree,
        ),
        (
            "a job of more than six arrays is refused everywhere",
            seven_arrays_refused,
        ),
        (
            "results spilled past the slot leave no segment behind",
            spills_leave_nothing,
        ),
        (
            "parameters past param_bytes are refused on every backend",
            big_params_refused,
        ),
    ];
    let (total, mut failed) = (checks.len(), 0);
    for (name, check) in checks {
        match check(&backends) {
            Ok(()) => println!("test {name} ... ok"),
            Err(e) => {
                println!("test {name} ... FAILED: {e}");
                failed += 1;
            }
        }
    }
    println!("\ntest result: {} passed; {failed} failed", total - failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn kinds(backends: &[Backend]) -> impl Iterator<Item = (&Backend, BackendKind)> {
    backends.iter().map(|b| (b, b.kind()))
}

fn heat_start() -> Array1<f64> {
    Array1::from_shape_fn(31, |i| if i == 15 { 100.0 } else { 0.0 })
}

fn double_buffer_agrees(backends: &[Backend]) -> Result<(), String> {
    let mut expected = heat_start();
    heat_serial_1d(expected.view_mut(), 10, 0.25);
    for (b, kind) in kinds(backends) {
        let mut a = SharedArray::from_array(&heat_start()).map_err(|e| e.to_string())?;
        let mut c = SharedArray::from_array(&heat_start()).map_err(|e| e.to_string())?;
        b.double_buffer(&mut a, &mut c, 10, 0.25_f64, |ctx, src, dst, alpha| {
            heat_step_1d(src, dst, ctx.rows(), *alpha).expect("rows within the array");
        })
        .map_err(|e| format!("{kind}: {e}"))?;
        // 10 steps, an even number: the result is back in `a`.
        if a.view() != expected.view() {
            return Err(format!("{kind}: {} instead of {expected}", a.view()));
        }
    }
    Ok(())
}

/// Phase 1: add this rank's sum to the shared total; barrier; phase 2:
/// divide this rank's rows by the total, which every rank has added to.
fn normalize(
    ctx: &Ctx<'_>,
    (x, mut y, total): (
        ArrayView1<'_, f64>,
        ArrayViewMut1<'_, f64>,
        shmpar::job::LockedView<'_, f64, ndarray::Ix1>,
    ),
    _: &(),
) {
    let mine = x.sum();
    total.with_lock(|mut t| t[0] += mine);
    ctx.barrier();
    let sum = total.with_lock(|t| t[0]);
    y.zip_mut_with(&x, |y, &x| *y = x / sum);
}

fn phases_with_a_lock_agree(backends: &[Backend]) -> Result<(), String> {
    let x0 = Array1::from_shape_fn(30, |i| (i + 1) as f64);
    let sum = x0.sum();
    for (b, kind) in kinds(backends) {
        let x = SharedArray::from_array(&x0).map_err(|e| e.to_string())?;
        let mut y = SharedArray::<f64, _>::create(30).map_err(|e| e.to_string())?;
        let mut total = SharedArray::<f64, _>::create(1).map_err(|e| e.to_string())?;
        b.run((&x, &mut y, locked(&mut total)), (), normalize)
            .map_err(|e| format!("{kind}: {e}"))?;
        let want = x0.mapv(|v| v / sum);
        if y.view() != want.view() {
            return Err(format!("{kind}: {} instead of {want}", y.view()));
        }
    }
    Ok(())
}

fn expect_failed(
    kind: BackendKind,
    got: Result<(), Error>,
    want: impl Fn(usize, &Cause) -> bool,
) -> Result<(), String> {
    match got {
        Err(Error::WorkerFailed { rank, cause, .. }) if want(rank, &cause) => Ok(()),
        other => Err(format!("{kind}: {other:?}")),
    }
}

fn panics_are_typed(backends: &[Backend]) -> Result<(), String> {
    for (b, kind) in kinds(backends) {
        for schedule in [Schedule::Static, Schedule::Dynamic { rows: 4 }, Schedule::Guided] {
            let mut a = SharedArray::<f64, _>::create(60).map_err(|e| e.to_string())?;
            let got = b.run(schedule.on(&mut a), (), |ctx, _rows, _| {
                if ctx.rows().contains(&40) {
                    panic!("boom at row 40");
                }
            });
            expect_failed(
                kind,
                got,
                |_, cause| matches!(cause, Cause::Panicked(m) if m.contains("boom at row 40")),
            )
            .map_err(|e| format!("{schedule:?}: {e}"))?;
            // The backend still works.
            let sum = b
                .map_reduce(&a, |rows| rows.len() as u64, |x, y| x + y)
                .map_err(|e| format!("{kind} after a panic: {e}"))?;
            if sum != 60 {
                return Err(format!("{kind} after a panic: {sum} rows"));
            }
        }
    }
    Ok(())
}

fn panic_at_barrier_ends_the_job(backends: &[Backend]) -> Result<(), String> {
    for (b, kind) in kinds(backends) {
        let mut a = SharedArray::<f64, _>::create(60).map_err(|e| e.to_string())?;
        let got = b.run(&mut a, (), |ctx, _rows, _| {
            if ctx.rank() == 1 {
                panic!("rank 1 fails");
            }
            ctx.barrier();
        });
        expect_failed(kind, got, |rank, cause| {
            rank == 1 && matches!(cause, Cause::Panicked(m) if m.contains("rank 1 fails"))
        })?;
    }
    Ok(())
}

fn unequal_barriers_are_named(backends: &[Backend]) -> Result<(), String> {
    for (b, kind) in kinds(backends) {
        let mut a = SharedArray::<f64, _>::create(60).map_err(|e| e.to_string())?;
        let got = b.run(&mut a, (), |ctx, _rows, _| {
            if ctx.rank() != 2 {
                ctx.barrier();
            }
        });
        expect_failed(kind, got, |rank, cause| {
            rank == 2
                && matches!(cause, Cause::Failed(m) if m.contains("Ctx::barrier the same number of times"))
        })?;
    }
    Ok(())
}

fn barrier_refused_when_claimed(backends: &[Backend]) -> Result<(), String> {
    for (b, kind) in kinds(backends) {
        let mut a = SharedArray::<f64, _>::create(60).map_err(|e| e.to_string())?;
        let got = b.run(Schedule::Dynamic { rows: 5 }.on(&mut a), (), |ctx, _rows, _| {
            ctx.barrier()
        });
        expect_failed(
            kind,
            got,
            |_, cause| matches!(cause, Cause::Panicked(m) if m.contains("needs Schedule::Static")),
        )?;
    }
    Ok(())
}

fn zero_rows_agree(backends: &[Backend]) -> Result<(), String> {
    for (b, kind) in kinds(backends) {
        let z = SharedArray::<f64, _>::create((0, 3)).map_err(|e| e.to_string())?;
        for schedule in [Schedule::Static, Schedule::Dynamic { rows: 4 }, Schedule::Guided] {
            let calls = b
                .map_reduce(
                    schedule.on(&z),
                    |rows| (rows.sum(), 1_u32),
                    |x, y| (x.0 + y.0, x.1 + y.1),
                )
                .map_err(|e| format!("{kind} {schedule:?}: {e}"))?;
            if calls != (0.0, 3) {
                return Err(format!(
                    "{kind} {schedule:?}: {calls:?}, expected (0.0, 3): one empty chunk a worker"
                ));
            }
        }
    }
    Ok(())
}

fn seven_arrays_refused(backends: &[Backend]) -> Result<(), String> {
    let arrays: Vec<SharedArray<f64, ndarray::Ix1>> = (0..7)
        .map(|_| SharedArray::create(8))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let [a0, a1, a2, a3, a4, a5, a6] = &arrays[..] else {
        return Err("seven arrays".into());
    };
    for (b, kind) in kinds(backends) {
        match b.run(((a0, a1, a2, a3), (a4, a5, a6)), (), |_, _, _| {}) {
            Err(Error::Mismatch { reason }) if reason.contains("at most 6 arrays") => {}
            other => return Err(format!("{kind}: {other:?}")),
        }
    }
    Ok(())
}

fn shm_entries() -> Result<usize, String> {
    Ok(std::fs::read_dir("/dev/shm").map_err(|e| e.to_string())?.count())
}

fn spills_leave_nothing(backends: &[Backend]) -> Result<(), String> {
    let a = SharedArray::from_array(&Array1::from_elem(60, 1.0_f64)).map_err(|e| e.to_string())?;
    let before = shm_entries()?;
    for (b, kind) in kinds(backends) {
        // 20,000 partials of 8 bytes (and framing) a worker: far past the
        // default 64 KiB slot, so the workers spill them to segments.
        let sum = b
            .map_reduce(
                Schedule::Dynamic { rows: 1 }.on(&a),
                |rows| [rows.sum(); 1000],
                |x, y| std::array::from_fn(|i| x[i] + y[i]),
            )
            .map_err(|e| format!("{kind}: {e}"))?;
        if sum[999] != 60.0 {
            return Err(format!("{kind}: {}", sum[999]));
        }
    }
    let after = shm_entries()?;
    if after != before {
        return Err(format!(
            "/dev/shm held {before} entries before the jobs and {after} after"
        ));
    }
    Ok(())
}

fn big_params_refused(backends: &[Backend]) -> Result<(), String> {
    let a = SharedArray::from_array(&Array1::from_elem(10, 1.0_f64)).map_err(|e| e.to_string())?;
    for (b, kind) in kinds(backends) {
        // 100,000 bytes of parameters: past the default 64 KiB everywhere.
        let got = b.map_reduce_with(
            &a,
            shmpar::Serde(vec![1_u8; 100_000]),
            |_ctx, rows, p| rows.sum() + p.0.len() as f64,
            |x, y| x + y,
        );
        match got {
            Err(Error::TooLarge {
                setting: "PoolBuilder::param_bytes",
                ..
            }) => {}
            other => return Err(format!("{kind}: {other:?}")),
        }
    }
    Ok(())
}
