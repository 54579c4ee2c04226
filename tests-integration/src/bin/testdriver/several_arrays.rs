//! A job over three arrays of different element types and shapes: one
//! split and read, one split and written, one read whole by every worker;
//! and the arguments a job refuses.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, Ix1, Ix2};
use shmpar::{Ctx, Error, Pool, SharedArray, WholeView, whole};

use crate::functional::{Check, e, opts};

/// Split columns of the job: rows of `samples` weighted by the whole
/// `weights`, plus `offset`.
const COLUMNS: usize = 5;

/// The value of one row: the dot product of the row with the weights,
/// plus the offset. Small integers, so every sum is exact in `f64`.
fn weigh(row: ArrayView1<i32>, weights: ArrayView1<u16>, offset: f64) -> f64 {
    row.iter()
        .zip(weights.iter())
        .map(|(&x, &w)| f64::from(x) * f64::from(w))
        .sum::<f64>()
        + offset
}

/// Each worker writes its rows of `out` from its rows of `samples` and all
/// of `weights`.
fn weighted_rows(
    ctx: &Ctx,
    (samples, mut out, weights): (ArrayView2<i32>, ArrayViewMut1<f64>, WholeView<u16, Ix1>),
    offset: &f64,
) {
    assert_eq!(
        samples.nrows(),
        ctx.rows().len(),
        "split read rows are the worker's rows"
    );
    assert_eq!(
        out.len(),
        ctx.rows().len(),
        "split write rows are the worker's rows"
    );
    for (row, value) in samples.rows().into_iter().zip(out.iter_mut()) {
        *value = weigh(row, weights.view(), *offset);
    }
}
shmpar::register_kernel!(
    weighted_rows: fn(&Ctx, (ArrayView2<i32>, ArrayViewMut1<f64>, WholeView<u16, Ix1>), &f64)
);

/// The reduction over the same three kinds of arguments: how many of the
/// worker's rows of `out` disagree with their recomputation.
fn disagreeing_rows(
    _ctx: &Ctx,
    (samples, out, weights): (ArrayView2<i32>, ArrayView1<f64>, WholeView<u16, Ix1>),
    offset: &f64,
) -> u64 {
    samples
        .rows()
        .into_iter()
        .zip(out.iter())
        .filter(|(row, value)| weigh(row.view(), weights.view(), *offset) != **value)
        .count() as u64
}
shmpar::register_kernel!(
    disagreeing_rows: fn(&Ctx, (ArrayView2<i32>, ArrayView1<f64>, WholeView<u16, Ix1>), &f64) -> u64
);

/// The same array split and whole in one job: refused before any kernel.
fn split_and_whole(_ctx: &Ctx, _views: (ArrayView2<i32>, WholeView<i32, Ix2>), _: &()) {}
shmpar::register_kernel!(split_and_whole: fn(&Ctx, (ArrayView2<i32>, WholeView<i32, Ix2>), &()));

/// Three arrays (i32 rows × 5 split read, f64 rows split written, u16 × 5
/// whole) against the serial computation, bit for bit; a reduction over
/// them; split arguments with different row counts, and one array twice,
/// refused with `Mismatch` and nothing written.
pub(crate) fn three_arrays(pool: &Pool, prefix: &str) -> Check {
    let rows = 1009;
    let offset = 0.5f64;
    let samples_src = Array2::from_shape_fn((rows, COLUMNS), |(i, j)| ((i * 7 + j * 13) % 201) as i32 - 100);
    let weights_src = Array1::from_shape_fn(COLUMNS, |j| (j * j + 1) as u16);
    let samples = SharedArray::from_array_with(&opts(prefix, "samples"), &samples_src).map_err(e)?;
    let weights = SharedArray::from_array_with(&opts(prefix, "weights"), &weights_src).map_err(e)?;
    let mut out = SharedArray::<f64, Ix1>::create_with(&opts(prefix, "weighted"), rows).map_err(e)?;
    pool.run((&samples, &mut out, whole(&weights)), offset, weighted_rows)
        .map_err(e)?;
    let serial: Vec<f64> = samples_src
        .rows()
        .into_iter()
        .map(|row| weigh(row, weights_src.view(), offset))
        .collect();
    if let Some((i, (got, want))) = out
        .view()
        .iter()
        .zip(&serial)
        .enumerate()
        .find(|(_, (g, w))| g != w)
    {
        return Err(format!(
            "row {i}: the job wrote {got}, the serial computation {want}"
        ));
    }
    let disagreeing = pool
        .map_reduce_with(
            (&samples, &out, whole(&weights)),
            offset,
            disagreeing_rows,
            |x, y| x + y,
        )
        .map_err(e)?;
    if disagreeing != 0 {
        return Err(format!(
            "the reduction over three arrays found {disagreeing} rows that disagree"
        ));
    }

    // Split arguments must share their row count; a whole one need not.
    let mut longer = SharedArray::<f64, Ix1>::create_with(&opts(prefix, "longer"), rows + 1).map_err(e)?;
    match pool.run((&samples, &mut longer, whole(&weights)), offset, weighted_rows) {
        Err(Error::Mismatch { reason }) if reason.contains("same number of rows") => {}
        other => {
            return Err(format!(
                "split arguments of {rows} and {} rows gave {other:?}",
                rows + 1
            ));
        }
    }
    if longer.view().iter().any(|&x| x != 0.0) {
        return Err("a refused job wrote to its arguments".into());
    }
    match pool.run((&samples, whole(&samples)), (), split_and_whole) {
        Err(Error::Mismatch { reason }) if reason.contains("twice") => {}
        other => return Err(format!("one array split and whole in one job gave {other:?}")),
    }
    // The pool is not hurt by the refusals.
    let disagreeing = pool
        .map_reduce_with(
            (&samples, &out, whole(&weights)),
            offset,
            disagreeing_rows,
            |x, y| x + y,
        )
        .map_err(e)?;
    if disagreeing != 0 {
        return Err(format!("after the refusals, {disagreeing} rows disagree"));
    }
    Ok(())
}
