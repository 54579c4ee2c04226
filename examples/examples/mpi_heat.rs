//! 2-D heat diffusion across the ranks of an MPI job, with the kernel of
//! the `heat_diffusion` example unchanged. Two distributed grids with one
//! ghost row on either side of each node's rows swap roles every step
//! (`World::double_buffer`); before each step the ranks at the edges of a
//! node exchange their boundary rows with the neighbouring nodes, and inside
//! a node the ranks read each other's rows in the node's segment. Rank 0
//! gathers the result and checks it bit for bit against `heat_serial_2d`.
//!
//! ```text
//! cargo build --release -p shmpar-examples --features mpi --example mpi_heat
//! mpirun -n 4 --oversubscribe target/release/examples/mpi_heat --steps 300
//! ```
//!
//! Options: `--steps N` (300), `--rows R` (600), `--cols C` (400).

use std::process::ExitCode;
use std::time::Instant;

use ndarray::{Array2, s};
use shmpar::mpi::{DistArray, World};
use shmpar_kernels::stencil::{heat_serial_2d, heat_step_2d};

struct Options {
    steps: usize,
    rows: usize,
    cols: usize,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        steps: 300,
        rows: 600,
        cols: 400,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a number"))?;
        let number: usize = value
            .parse()
            .map_err(|_| format!("{arg} {value}: not a number"))?;
        match arg.as_str() {
            "--steps" => options.steps = number,
            "--rows" => options.rows = number,
            "--cols" => options.cols = number,
            _ => {
                return Err(format!(
                    "unknown argument {arg}; expected --steps N, --rows R, --cols C"
                ));
            }
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("mpi_heat: {message}");
            return ExitCode::FAILURE;
        }
    };
    let world = match World::init() {
        Ok(world) => world,
        Err(e) => {
            eprintln!("mpi_heat: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Every rank runs the same collective calls, so a failure is the same
    // on every rank and all of them return together.
    match run(&world, &options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mpi_heat: rank {}: {message}", world.rank());
            ExitCode::FAILURE
        }
    }
}

fn run(world: &World, options: &Options) -> Result<(), String> {
    let Options { steps, rows, cols } = *options;
    let alpha = 0.2f64;
    // A hot rectangle in a cold plate; the border stays at 0.
    let mut start = Array2::<f64>::zeros((rows, cols));
    start
        .slice_mut(s![rows * 2 / 5..rows * 3 / 5, cols * 2 / 5..cols * 3 / 5])
        .fill(100.0);

    let e = |e: shmpar::Error| e.to_string();
    let mut a = DistArray::scatter_with_halo(world, (world.rank() == 0).then_some(&start), 1).map_err(e)?;
    let mut b = DistArray::<f64, _>::create_with_halo(world, (rows, cols), 1).map_err(e)?;

    let t = Instant::now();
    // The kernel of the `heat_diffusion` example, character for character.
    world
        .double_buffer(&mut a, &mut b, steps, alpha, |ctx, src, dst, &alpha| {
            heat_step_2d(src, dst, ctx.rows(), alpha).expect("the chunk lies within the grid");
        })
        .map_err(e)?;
    let parallel_time = t.elapsed();
    // Step 0 writes `b`, step 1 writes `a`, ...: after an even count the result is in `a`.
    let result = if steps % 2 == 0 { &a } else { &b };
    let Some(result) = result.gather(world).map_err(e)? else {
        return Ok(()); // the other ranks are done
    };

    let mut serial = start.clone();
    let t = Instant::now();
    heat_serial_2d(serial.view_mut(), steps, alpha);
    let serial_time = t.elapsed();
    println!(
        "{steps} steps on {rows}x{cols}: {} ranks on {} node(s) {parallel_time:?}, serial {serial_time:?}",
        world.size(),
        world.nodes()
    );
    println!("total heat: start {}, end {}", start.sum(), result.sum());
    if result != serial {
        let differ = result
            .iter()
            .zip(&serial)
            .filter(|(x, y)| x.to_bits() != y.to_bits())
            .count();
        return Err(format!("{differ} cells differ from heat_serial_2d"));
    }
    println!(
        "ok: {steps} steps across {} ranks, bit-identical to heat_serial_2d",
        world.size()
    );
    Ok(())
}
