//! Many phases separated by a barrier: 2-D heat diffusion on a grid, with
//! two shared arrays swapping roles each step (`double_buffer`). In every
//! step each worker reads the whole current grid and writes its own rows of
//! the next one; the barrier at the end of the step makes all writes
//! visible before anyone reads them.
//!
//! Run: `cargo run --release --example heat_diffusion`

use ndarray::Array2;
use shmpar::{Pool, SharedArray};
use shmpar_kernels::stencil::{heat_serial_2d, heat_step_2d};

fn main() -> Result<(), shmpar::Error> {
    shmpar::init();
    let pool = Pool::new()?;
    let (rows, cols, steps, alpha) = (1000, 1000, 200, 0.2f64);

    // A hot square in a cold plate; the border stays at 0.
    let mut start = Array2::<f64>::zeros((rows, cols));
    start.slice_mut(ndarray::s![400..600, 400..600]).fill(100.0);
    let mut a = SharedArray::from_array(&start)?;
    let mut b = SharedArray::<f64, _>::create((rows, cols))?;

    let t = std::time::Instant::now();
    pool.double_buffer(&mut a, &mut b, steps, alpha, |ctx, src, dst, &alpha| {
        heat_step_2d(src, dst, ctx.rows(), alpha).expect("the chunk lies within the grid");
    })?;
    let parallel_time = t.elapsed();
    // Step 0 writes `b`, step 1 writes `a`, ...: after an even count the result is in `a`.
    let result = if steps % 2 == 0 { a.view() } else { b.view() };

    let mut serial = start.clone();
    let t = std::time::Instant::now();
    heat_serial_2d(serial.view_mut(), steps, alpha);
    let serial_time = t.elapsed();

    let heat = |g: ndarray::ArrayView2<'_, f64>| g.sum();
    println!(
        "{steps} steps on {rows}x{cols}: {} workers {parallel_time:?}, serial {serial_time:?}",
        pool.workers()
    );
    println!(
        "total heat: start {}, end {}",
        heat(start.view()),
        heat(result.view())
    );
    assert!(
        result == serial.view(),
        "the parallel grid differs from the serial one"
    );
    println!("ok: bit-identical to heat_serial_2d");
    Ok(())
}
