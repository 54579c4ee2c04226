//! Lloyd's k-means, split the way a pool runs it: every worker assigns its
//! rows of points to the nearest centroid and sums them per cluster
//! ([`kmeans_assign`]); the partial sums merge in chunk order
//! ([`KmeansPartial::merge`]); the coordinator moves the centroids to the
//! means ([`kmeans_update`]) before the next pass.
//!
//! ```
//! use ndarray::{Array1, Array2, s};
//! use shmpar_kernels::workloads::{KmeansPartial, kmeans_assign, kmeans_init, kmeans_points, kmeans_update};
//!
//! # fn main() -> Result<(), shmpar_kernels::Error> {
//! let mut points = Array2::zeros((1000, 2));
//! kmeans_points(points.view_mut(), 0, 3, 42)?;
//! let mut centroids = kmeans_init(points.view(), 3)?;
//! let mut labels = Array1::zeros(1000);
//! let (mut moved, mut passes) = (f64::INFINITY, 0);
//! while moved > 0.0 && passes < 100 {
//!     let mut total = KmeansPartial::EMPTY;
//!     for rows in [0..400, 400..1000] {
//!         let (points, labels) = (points.slice(s![rows.clone(), ..]), labels.slice_mut(s![rows]));
//!         let part = kmeans_assign(points, centroids.view(), labels)?;
//!         total = total.merge(&part); // in chunk order
//!     }
//!     assert_eq!(total.points(), 1000);
//!     moved = kmeans_update(&total, centroids.view_mut())?;
//!     passes += 1;
//! }
//! // Lloyd's iteration stops: once no label changes, no centroid moves.
//! assert_eq!(moved, 0.0);
//! # Ok(())
//! # }
//! ```

use ndarray::{Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, shape_mismatch};
use crate::workloads::inputs::{bits_at, noise_at};

/// The most clusters a [`KmeansPartial`] holds.
pub const KMEANS_MAX_K: usize = 16;
/// The most dimensions a point may have.
pub const KMEANS_MAX_DIM: usize = 8;

/// What one chunk of points contributes to the next centroids: per
/// cluster, the sum of the points assigned to it and their number.
///
/// Plain data of a fixed 1,152 bytes (`#[repr(C)]`, [`bytemuck::Pod`], no
/// padding), so a runtime can carry it between processes as its bytes;
/// clusters `k..` and dimensions `d..` of a smaller problem stay zero.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, bytemuck::Pod, bytemuck::Zeroable,
)]
pub struct KmeansPartial {
    /// `sums[c][j]`: the sum of coordinate `j` over the points in cluster `c`.
    pub sums: [[f64; KMEANS_MAX_DIM]; KMEANS_MAX_K],
    /// `counts[c]`: the number of points in cluster `c`.
    pub counts: [u64; KMEANS_MAX_K],
}

const _: () = assert!(size_of::<KmeansPartial>() == 8 * KMEANS_MAX_K * (KMEANS_MAX_DIM + 1));

impl KmeansPartial {
    /// The partial of no points: merging it changes nothing.
    pub const EMPTY: KmeansPartial = KmeansPartial {
        sums: [[0.0; KMEANS_MAX_DIM]; KMEANS_MAX_K],
        counts: [0; KMEANS_MAX_K],
    };

    /// The partial of `self`'s points and `other`'s: sums added
    /// (`self + other`, one rounding each), counts added. Merge chunks in
    /// a fixed order (the runtime's chunk order) for reproducible sums.
    #[must_use]
    pub fn merge(mut self, other: &KmeansPartial) -> KmeansPartial {
        for (mine, theirs) in self.sums.iter_mut().zip(&other.sums) {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a += b;
            }
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self
    }

    /// Number of points the partial covers.
    pub fn points(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Checks a problem's cluster count and dimension against the partial's room.
fn check_problem(kernel: &'static str, k: usize, d: usize) -> Result<()> {
    if k == 0 || k > KMEANS_MAX_K {
        return Err(Error::InvalidParameter {
            kernel,
            reason: format!("{k} centroids; a KmeansPartial holds 1 to {KMEANS_MAX_K}"),
        });
    }
    if d > KMEANS_MAX_DIM {
        return Err(Error::InvalidParameter {
            kernel,
            reason: format!("points of {d} dimensions; a KmeansPartial holds at most {KMEANS_MAX_DIM}"),
        });
    }
    Ok(())
}

/// Points padded with zeros to [`KMEANS_MAX_DIM`] coordinates: the
/// padding adds `(0 - 0)² = +0` to a distance, which leaves it unchanged,
/// and lets the distance loop have a length known at compile time.
type Padded = [f64; KMEANS_MAX_DIM];

/// A value aligned to a 64-byte cache line.
#[repr(C, align(64))]
struct CacheLine<T>(T);

/// The index of the first centroid at the smallest squared distance from
/// `p`, each distance summed over the coordinates in order.
#[inline(always)]
fn nearest(p: &Padded, centroids: &[Padded]) -> usize {
    let mut best = 0;
    let mut best_distance = f64::INFINITY;
    for (c, centroid) in centroids.iter().enumerate() {
        let mut distance = 0.0;
        for j in 0..KMEANS_MAX_DIM {
            let t = p[j] - centroid[j];
            distance += t * t;
        }
        if distance < best_distance {
            best_distance = distance;
            best = c;
        }
    }
    best
}

/// The assignment step of k-means for one chunk of points: writes the
/// nearest centroid's index into `labels_rows` and returns the chunk's
/// per-cluster sums and counts.
///
/// `points_rows` is `n × d` (the chunk's rows), `centroids` is `k × d` (all
/// of them), `labels_rows` has `n` entries. The nearest centroid is the
/// first at the smallest squared Euclidean distance `Σ_j (p_j - c_j)²`
/// (summed over `j` in order, no fused multiply-add), so ties go to the
/// lower index, and a point whose distances are all NaN goes to cluster 0.
/// The sums add each cluster's points in row order. Labels and counts do
/// not depend on how the rows are split; the merged sums agree to rounding.
///
/// # Errors
///
/// [`Error::InvalidParameter`] for `k` outside `1..=`[`KMEANS_MAX_K`] or `d`
/// above [`KMEANS_MAX_DIM`]; [`Error::ShapeMismatch`] if the points do not
/// have `d` columns or the labels not one entry per point. Nothing is
/// written then.
pub fn kmeans_assign(
    points_rows: ArrayView2<'_, f64>,
    centroids: ArrayView2<'_, f64>,
    mut labels_rows: ArrayViewMut1<'_, u32>,
) -> Result<KmeansPartial> {
    let (k, d) = centroids.dim();
    check_problem("kmeans_assign", k, d)?;
    let n = points_rows.nrows();
    if points_rows.ncols() != d {
        return Err(shape_mismatch(
            "kmeans_assign",
            "points_rows",
            &[n, d],
            points_rows.shape(),
        ));
    }
    if labels_rows.len() != n {
        return Err(shape_mismatch(
            "kmeans_assign",
            "labels_rows",
            &[n],
            labels_rows.shape(),
        ));
    }
    // The table, the running sums and the padded point are read and
    // written 32 bytes at a time; on the stack they inherit the caller's
    // alignment, and where that splits them across cache lines the pass
    // runs ~1.3x slower (a worker process's stack lands anywhere in a
    // 16-byte grid per run, a thread's does not). Aligned to a cache line,
    // the speed no longer depends on who calls.
    let mut table = CacheLine([[0.0; KMEANS_MAX_DIM]; KMEANS_MAX_K]);
    for (padded, centroid) in table.0.iter_mut().zip(centroids.rows()) {
        for (x, &v) in padded.iter_mut().zip(centroid.iter()) {
            *x = v;
        }
    }
    let table = &table.0[..k];
    let mut sums = CacheLine([[0.0; KMEANS_MAX_DIM]; KMEANS_MAX_K]);
    let mut counts = [0_u64; KMEANS_MAX_K];
    let mut assign = |p: &Padded, label: &mut u32| {
        let c = nearest(p, table);
        *label = c as u32; // c < KMEANS_MAX_K
        for (sum, &x) in sums.0[c].iter_mut().zip(p) {
            *sum += x;
        }
        counts[c] += 1;
    };
    let mut p = CacheLine([0.0; KMEANS_MAX_DIM]);
    match points_rows.as_slice() {
        // The common case, row-major points: no per-row iterator.
        Some(flat) if d > 0 => {
            for (point, label) in flat.chunks_exact(d).zip(labels_rows.iter_mut()) {
                p.0[..d].copy_from_slice(point);
                assign(&p.0, label);
            }
        }
        _ => {
            for (point, label) in points_rows.rows().into_iter().zip(labels_rows.iter_mut()) {
                for (x, &v) in p.0.iter_mut().zip(point.iter()) {
                    *x = v;
                }
                assign(&p.0, label);
            }
        }
    }
    Ok(KmeansPartial { sums: sums.0, counts })
}

/// The update step of k-means: moves each centroid with points to their
/// mean (`sums[c][j] / counts[c]`), leaves a centroid without points where
/// it is, and returns the largest distance a centroid moved.
///
/// # Errors
///
/// [`Error::InvalidParameter`] for `k` outside `1..=`[`KMEANS_MAX_K`] or `d`
/// above [`KMEANS_MAX_DIM`]; nothing is written then.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use shmpar_kernels::workloads::{KmeansPartial, kmeans_update};
/// # fn main() -> Result<(), shmpar_kernels::Error> {
/// let mut centroids = array![[0.0, 0.0], [5.0, 5.0]];
/// let mut partial = KmeansPartial::EMPTY;
/// partial.sums[0][..2].copy_from_slice(&[6.0, 8.0]);
/// partial.counts[0] = 2; // cluster 1 has no points: it stays
/// let moved = kmeans_update(&partial, centroids.view_mut())?;
/// assert_eq!(centroids, array![[3.0, 4.0], [5.0, 5.0]]);
/// assert_eq!(moved, 5.0);
/// # Ok(())
/// # }
/// ```
pub fn kmeans_update(partial: &KmeansPartial, mut centroids: ArrayViewMut2<'_, f64>) -> Result<f64> {
    let (k, d) = centroids.dim();
    check_problem("kmeans_update", k, d)?;
    let mut largest = 0.0_f64;
    for (c, mut centroid) in centroids.rows_mut().into_iter().enumerate() {
        let count = partial.counts[c];
        if count == 0 {
            continue;
        }
        let mut moved = 0.0;
        for (x, &sum) in centroid.iter_mut().zip(&partial.sums[c]) {
            let mean = sum / count as f64;
            let t = mean - *x;
            moved += t * t;
            *x = mean;
        }
        largest = largest.max(f64::sqrt(moved));
    }
    Ok(largest)
}

/// Fills `out` (rows `first_row..` of an `n × d` point set) with points
/// around `clusters` centres: point `i` belongs to a pseudo-random centre
/// in `[-8, 8)^d` and lies within 1 of it in every coordinate. Deterministic
/// per row, so chunks can be filled independently.
///
/// # Errors
///
/// [`Error::InvalidParameter`] for `clusters == 0`.
pub fn kmeans_points(
    mut out: ArrayViewMut2<'_, f64>,
    first_row: usize,
    clusters: usize,
    seed: u64,
) -> Result<()> {
    if clusters == 0 {
        return Err(Error::InvalidParameter {
            kernel: "kmeans_points",
            reason: "0 clusters; points need at least one centre".into(),
        });
    }
    // Independent sequences for the centres, the choice of centre and the spread.
    let (centre_seed, choice_seed) = (seed ^ 0xC3A5_C85C_97CB_3127, seed ^ 0xB492_B66F_BE98_F273);
    let d = out.ncols() as u64;
    for (i, mut point) in out.rows_mut().into_iter().enumerate() {
        let row = (first_row + i) as u64;
        let centre = bits_at(choice_seed, row) % clusters as u64;
        for (j, x) in point.iter_mut().enumerate() {
            let j = j as u64;
            *x = 8.0 * noise_at(centre_seed, centre * d + j) + noise_at(seed, row * d + j);
        }
    }
    Ok(())
}

/// Initial centroids: `k` points spread evenly through `points` (rows
/// `c · n / k`), a deterministic choice.
///
/// # Errors
///
/// [`Error::InvalidParameter`] for `k` outside `1..=`[`KMEANS_MAX_K`], `d`
/// above [`KMEANS_MAX_DIM`], or fewer than `k` points.
pub fn kmeans_init(points: ArrayView2<'_, f64>, k: usize) -> Result<Array2<f64>> {
    let (n, d) = points.dim();
    check_problem("kmeans_init", k, d)?;
    if n < k {
        return Err(Error::InvalidParameter {
            kernel: "kmeans_init",
            reason: format!("{n} points cannot seed {k} centroids"),
        });
    }
    Ok(Array2::from_shape_fn((k, d), |(c, j)| points[[c * n / k, j]]))
}
