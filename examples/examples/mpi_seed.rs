//! The seed article's job across the ranks of an MPI job: `sqrt(|x|)` in
//! place on a distributed array of 1e7 f64, then its mean. Every rank runs
//! the same kernels a pool runs, on its own rows (`chunk_range(n, ranks,
//! rank)`, the rows worker `rank` of a pool would get); the ranks of a node
//! share one segment. Rank 0 then runs the same kernels on the processes
//! backend with as many workers as there are ranks, and checks that the
//! mean has the same bits and every element the same value.
//!
//! ```text
//! cargo build --release -p shmpar-examples --features mpi --example mpi_seed
//! mpirun -n 2 target/release/examples/mpi_seed            # as root: --allow-run-as-root
//! mpirun -n 2 target/release/examples/mpi_seed --n 1e8 --bench 10
//! ```
//!
//! `--bench REPS` also times the warm job (sqrt, then mean) on both
//! backends, and a barrier across the ranks.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use ndarray::{Array1, ArrayView1, ArrayViewMut1};
use shmpar::mpi::rsmpi::traits::*;
use shmpar::mpi::{DistArray, World};
use shmpar::{Backend, BackendKind, Pool, SharedArray, Start};
use shmpar_kernels::reduce::{Mean, MeanPartial, Reduction, UnaryReduction};

fn sqrt_rows(rows: ArrayViewMut1<'_, f64>) {
    shmpar_kernels::sqrt_abs(rows);
}

fn mean_rows(rows: ArrayView1<'_, f64>) -> MeanPartial {
    Mean.partial(rows)
}

// Rank 0's pool starts its workers by running this program again (MPI
// threads make forking unsafe), so they find the kernels by name.
shmpar::register_kernel!(sqrt_rows: fn(ArrayViewMut1<f64>));
shmpar::register_kernel!(mean_rows: fn(ArrayView1<f64>) -> MeanPartial);

fn combine(x: MeanPartial, y: MeanPartial) -> MeanPartial {
    Mean.combine(x, y)
}

/// Element `i` of the input: deterministic, so every check is exact.
fn value(i: usize) -> f64 {
    ((i * 7919) % 20_001) as f64 / 1000.0 - 10.0
}

struct Options {
    n: usize,
    bench: Option<usize>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        n: 10_000_000,
        bench: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<usize, String> {
            let text = args.next().ok_or(format!("{name} needs a number"))?;
            let x: f64 = text.parse().map_err(|_| format!("{name} {text}: not a number"))?;
            Ok(x as usize)
        };
        match arg.as_str() {
            "--n" => options.n = number("--n")?,
            "--bench" => options.bench = Some(number("--bench")?.max(1)),
            _ => return Err(format!("unknown argument {arg}; expected --n N, --bench REPS")),
        }
    }
    Ok(options)
}

/// Waits for every rank without spinning (Open MPI's barrier polls),
/// leaving the cores to the rank that is working.
fn idle_barrier(world: &World) {
    let mut request = world.comm().immediate_barrier();
    loop {
        match request.test() {
            Ok(_) => return,
            Err(pending) => request = pending,
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() -> ExitCode {
    shmpar::init();
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("mpi_seed: {message}");
            return ExitCode::FAILURE;
        }
    };
    let world = match World::init() {
        Ok(world) => world,
        Err(e) => {
            eprintln!("mpi_seed: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Every rank reaches the last barrier whatever happens before it, so
    // MPI_Finalize never waits for a rank that has left.
    let verdict = run(&world, &options);
    idle_barrier(&world);
    match verdict {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mpi_seed: rank {}: {message}", world.rank());
            ExitCode::FAILURE
        }
    }
}

fn run(world: &World, options: &Options) -> Result<(), String> {
    let n = options.n;
    let ranks = world.size();
    let e = |e: shmpar::Error| e.to_string();
    // Each rank writes its own rows: no 800 MB detour through rank 0.
    let mut a = DistArray::<f64, _>::create(world, n).map_err(e)?;
    let first = a.own_rows().start;
    a.local_mut()
        .iter_mut()
        .enumerate()
        .for_each(|(k, x)| *x = value(first + k));

    // The seed job, as on the pool.
    world.for_each_chunk(&mut a, sqrt_rows).map_err(e)?;
    let mean = Mean.finish(world.map_reduce(&a, mean_rows, combine).map_err(e)?);
    let gathered = if options.bench.is_none() {
        a.gather(world).map_err(e)?
    } else {
        None
    };

    // Rank 0 checks against the processes backend; the others wait
    // without spinning, leaving it the cores.
    let reference = (world.rank() == 0).then(|| Reference::check(ranks, n, mean, gathered.as_ref()));
    idle_barrier(world);
    let checked = world.comm().process_at_rank(0);
    let mut passed = reference.as_ref().is_none_or(|r| r.is_ok());
    checked.broadcast_into(&mut passed);
    let mut reference = reference.transpose()?;
    if !passed {
        return Err("rank 0's check failed".into());
    }

    if let Some(reps) = options.bench {
        bench(world, &mut a, reference.as_mut(), reps)?;
    }
    if world.rank() == 0 {
        println!(
            "ok: {ranks} rank(s) on {} node(s): mean of sqrt(|x|) over {n} f64 = {mean}, bit-identical to the \
             processes backend with {ranks} workers{}",
            world.nodes(),
            if gathered.is_some() {
                "; every element gathered on rank 0 matches"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// The same job on the processes backend, on rank 0.
struct Reference {
    backend: Backend,
    array: SharedArray<f64, ndarray::Ix1>,
}

impl Reference {
    /// Runs the job on `workers` worker processes and compares.
    fn check(
        workers: usize,
        n: usize,
        mean: f64,
        gathered: Option<&Array1<f64>>,
    ) -> Result<Reference, String> {
        let e = |e: shmpar::Error| e.to_string();
        let pool = Pool::builder().start(Start::Spawn);
        let backend = Backend::with_pool_builder(BackendKind::Processes, workers, pool).map_err(e)?;
        let mut array =
            SharedArray::from_array(&Array1::from_iter((0..n).map(value))).map_err(|e| e.to_string())?;
        backend.for_each_chunk(&mut array, sqrt_rows).map_err(e)?;
        let expected = Mean.finish(backend.map_reduce(&array, mean_rows, combine).map_err(e)?);
        if mean.to_bits() != expected.to_bits() {
            return Err(format!(
                "the MPI mean {mean:e} differs from the processes backend's {expected:e}"
            ));
        }
        if gathered.is_some_and(|g| g.view() != array.view()) {
            return Err("the array gathered on rank 0 differs from the processes backend's".into());
        }
        Ok(Reference { backend, array })
    }

    /// One timed job.
    fn time(&mut self) -> Result<Duration, String> {
        let e = |e: shmpar::Error| e.to_string();
        let t = Instant::now();
        self.backend
            .for_each_chunk(&mut self.array, sqrt_rows)
            .map_err(e)?;
        let mean = Mean.finish(
            self.backend
                .map_reduce(&self.array, mean_rows, combine)
                .map_err(e)?,
        );
        let elapsed = t.elapsed();
        std::hint::black_box(mean);
        Ok(elapsed)
    }
}

/// Times `reps` warm jobs (sqrt in place, then the mean) on both backends,
/// alternately, so that a change in the machine's load touches both; then
/// barriers. Prints on rank 0.
fn bench(
    world: &World,
    a: &mut DistArray<f64, ndarray::Ix1>,
    mut reference: Option<&mut Reference>,
    reps: usize,
) -> Result<(), String> {
    let e = |e: shmpar::Error| e.to_string();
    let (mut mpi, mut processes) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
    for _ in 0..reps {
        world.barrier();
        let t = Instant::now();
        world.for_each_chunk(&mut *a, sqrt_rows).map_err(e)?;
        let mean = Mean.finish(world.map_reduce(&*a, mean_rows, combine).map_err(e)?);
        mpi.push(t.elapsed());
        std::hint::black_box(mean);
        // The processes backend on rank 0, while the other ranks sleep.
        if let Some(reference) = reference.as_deref_mut() {
            processes.push(reference.time()?);
        }
        idle_barrier(world);
    }
    let barrier = time_barrier(|| world.barrier());
    let mpi_barrier = time_barrier(|| world.comm().barrier());
    if world.rank() == 0 {
        let ranks = world.size();
        let (mpi_median, processes_median) = (median(mpi.clone()), median(processes.clone()));
        let min = |t: &[Duration]| t.iter().min().copied().unwrap_or_default();
        println!(
            "warm sqrt+mean over {} f64, {reps} runs of each, alternating (median, min):",
            a.len()
        );
        println!(
            "  mpi       {ranks} ranks    {mpi_median:>10.2?} {:>10.2?}",
            min(&mpi)
        );
        println!(
            "  processes {ranks} workers  {processes_median:>10.2?} {:>10.2?}",
            min(&processes)
        );
        println!(
            "  ratio mpi/processes: median {:.3}, min {:.3}",
            mpi_median.as_secs_f64() / processes_median.as_secs_f64(),
            min(&mpi).as_secs_f64() / min(&processes).as_secs_f64()
        );
        println!(
            "  barrier across {ranks} ranks: World::barrier {:.2} µs, MPI_Barrier {:.2} µs",
            barrier.as_secs_f64() * 1e6,
            mpi_barrier.as_secs_f64() * 1e6
        );
    }
    Ok(())
}

/// The mean time of a barrier across every rank, over many.
fn time_barrier(barrier: impl Fn()) -> Duration {
    const ROUNDS: u32 = 100_000;
    for _ in 0..1000 {
        barrier();
    }
    let t = Instant::now();
    for _ in 0..ROUNDS {
        barrier();
    }
    t.elapsed() / ROUNDS
}
