//! The workload bodies against naive loops, chunked the way workers run
//! them, and their inputs' generators.

mod common;

use common::uneven_chunks;
use ndarray::{Array1, Array2, ArrayView2, ShapeBuilder, s};
use shmpar_kernels::Error;
use shmpar_kernels::workloads::{
    KMEANS_MAX_DIM, KMEANS_MAX_K, KmeansPartial, MandelbrotParams, fill_noise, kmeans_assign, kmeans_init,
    kmeans_points, kmeans_update, mandelbrot_rows, matvec_rows, noise_at, triad,
};

fn noise1(n: usize, seed: u64) -> Array1<f64> {
    let mut a = Array1::zeros(n);
    fill_noise(a.view_mut(), seed, 0);
    a
}

fn noise2(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
    let mut a = Array2::zeros((rows, cols));
    fill_noise(a.view_mut(), seed, 0);
    a
}

// ---- inputs ----

#[test]
fn noise_is_in_range_deterministic_and_fills_by_chunks() {
    let whole = noise2(37, 11, 3);
    assert!(whole.iter().all(|x| (-1.0..1.0).contains(x)));
    let mean = whole.sum() / whole.len() as f64;
    assert!(mean.abs() < 0.1, "mean {mean}");
    assert_eq!(whole, noise2(37, 11, 3));
    assert_ne!(whole, noise2(37, 11, 4));
    for workers in [1, 2, 5, 40] {
        let mut chunked = Array2::from_elem((37, 11), f64::NAN);
        for rows in uneven_chunks(37, workers) {
            let first = (rows.start * 11) as u64;
            fill_noise(chunked.slice_mut(s![rows, ..]), 3, first);
        }
        assert_eq!(chunked, whole, "workers={workers}");
    }
    // Logical order, whatever the memory order.
    let mut fortran = Array2::zeros((37, 11).f());
    fill_noise(fortran.view_mut(), 3, 0);
    assert_eq!(fortran, whole);
    assert_eq!(whole[[2, 5]], noise_at(3, 2 * 11 + 5));
}

#[test]
fn kmeans_points_fill_by_chunks_and_cluster() {
    let (n, d, clusters) = (500, 3, 4);
    let mut whole = Array2::zeros((n, d));
    kmeans_points(whole.view_mut(), 0, clusters, 9).expect("valid");
    let mut chunked = Array2::from_elem((n, d), f64::NAN);
    for rows in uneven_chunks(n, 3) {
        let first = rows.start;
        kmeans_points(chunked.slice_mut(s![rows, ..]), first, clusters, 9).expect("valid");
    }
    assert_eq!(chunked, whole);
    assert!(whole.iter().all(|x| x.abs() <= 9.0));
    // Each point lies within 1 of its centre in every coordinate, so
    // grouping points that are within 2 of a group's first point finds at
    // most one group per centre.
    let mut groups: Vec<ndarray::ArrayView1<'_, f64>> = Vec::new();
    for p in whole.rows() {
        let near =
            |g: &ndarray::ArrayView1<'_, f64>| g.iter().zip(p.iter()).all(|(a, b)| (a - b).abs() < 2.0);
        if !groups.iter().any(near) {
            groups.push(p);
        }
    }
    assert!(groups.len() <= clusters, "{} groups", groups.len());
    assert!(matches!(
        kmeans_points(whole.view_mut(), 0, 0, 1),
        Err(Error::InvalidParameter { .. })
    ));
}

// ---- triad ----

#[test]
fn triad_equals_the_plain_loop_for_any_chunking() {
    for n in [0, 1, 7, 1000, 4099] {
        let (b, c) = (noise1(n, 1), noise1(n, 2));
        let s = 3.25;
        let expected = Array1::from_shape_fn(n, |i| b[i] + s * c[i]);
        for workers in [1, 2, 3, 16] {
            let mut a = Array1::from_elem(n, f64::NAN);
            for rows in uneven_chunks(n, workers) {
                let r = s![rows];
                triad(a.slice_mut(r), b.slice(r), c.slice(r), s).expect("same lengths");
            }
            assert_eq!(a, expected, "n={n} workers={workers}");
        }
    }
}

#[test]
fn triad_takes_strided_views_and_refuses_other_lengths() {
    let (b, c) = (noise1(200, 1), noise1(200, 2));
    let mut a = Array1::zeros(100);
    triad(a.view_mut(), b.slice(s![..;2]), c.slice(s![1..;2]), -0.5).expect("same lengths");
    let expected = Array1::from_shape_fn(100, |i| b[2 * i] + -0.5 * c[2 * i + 1]);
    assert_eq!(a, expected);

    let before = a.clone();
    let err = triad(a.view_mut(), b.slice(s![..100]), c.view(), 1.0).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { what: "c", .. }), "{err}");
    let err = triad(a.view_mut(), b.view(), c.slice(s![..100]), 1.0).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { what: "b", .. }), "{err}");
    assert_eq!(a, before, "an error writes nothing");
}

// ---- matvec ----

fn naive_matvec(a: ArrayView2<'_, f64>, x: &Array1<f64>) -> Array1<f64> {
    Array1::from_shape_fn(a.nrows(), |i| {
        (0..a.ncols()).fold(0.0, |acc, j| acc + a[[i, j]] * x[j])
    })
}

#[test]
fn matvec_rows_is_chunk_invariant_and_close_to_the_naive_loop() {
    for (rows, cols) in [(0, 5), (1, 1), (17, 300), (64, 1000), (5, 0)] {
        let a = noise2(rows, cols, 11);
        let x = noise1(cols, 12);
        let mut whole = Array1::from_elem(rows, f64::NAN);
        matvec_rows(a.view(), x.view(), whole.view_mut()).expect("shapes agree");
        let naive = naive_matvec(a.view(), &x);
        for i in 0..rows {
            let scale: f64 = (0..cols).map(|j| (a[[i, j]] * x[j]).abs()).sum();
            let err = (whole[i] - naive[i]).abs();
            assert!(
                err <= 1e-14 * scale.max(1e-300),
                "row {i}: {} vs {}",
                whole[i],
                naive[i]
            );
        }
        for workers in [2, 3, 9] {
            let mut y = Array1::from_elem(rows, f64::NAN);
            for chunk in uneven_chunks(rows, workers) {
                let r = chunk.clone();
                matvec_rows(a.slice(s![r, ..]), x.view(), y.slice_mut(s![chunk])).expect("shapes agree");
            }
            assert_eq!(y, whole, "{rows}x{cols} workers={workers}");
        }
    }
}

#[test]
fn matvec_rows_takes_column_major_matrices_and_refuses_bad_shapes() {
    let a = noise2(30, 40, 5);
    let mut f = Array2::zeros((30, 40).f());
    f.assign(&a);
    let x = noise1(40, 6);
    let (mut y1, mut y2) = (Array1::zeros(30), Array1::zeros(30));
    matvec_rows(a.view(), x.view(), y1.view_mut()).expect("shapes agree");
    matvec_rows(f.view(), x.view(), y2.view_mut()).expect("shapes agree");
    assert_eq!(y1, y2);

    let err = matvec_rows(a.view(), x.slice(s![..39]), y1.view_mut()).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { what: "x", .. }), "{err}");
    let err = matvec_rows(a.view(), x.view(), y1.slice_mut(s![..29])).unwrap_err();
    assert!(
        matches!(err, Error::ShapeMismatch { what: "y_rows", .. }),
        "{err}"
    );
}

// ---- k-means ----

/// One assignment pass over all points, written as plainly as possible.
fn naive_assign(points: &Array2<f64>, centroids: &Array2<f64>) -> (Vec<u32>, Vec<Vec<f64>>, Vec<u64>) {
    let (k, d) = centroids.dim();
    let mut labels = Vec::new();
    let mut sums = vec![vec![0.0; d]; k];
    let mut counts = vec![0u64; k];
    for p in points.rows() {
        let mut best = 0;
        let mut best_distance = f64::INFINITY;
        for c in 0..k {
            let mut distance = 0.0;
            for j in 0..d {
                distance += (p[j] - centroids[[c, j]]) * (p[j] - centroids[[c, j]]);
            }
            if distance < best_distance {
                best = c;
                best_distance = distance;
            }
        }
        labels.push(best as u32);
        for j in 0..d {
            sums[best][j] += p[j];
        }
        counts[best] += 1;
    }
    (labels, sums, counts)
}

fn problem(n: usize, d: usize, k: usize, seed: u64) -> (Array2<f64>, Array2<f64>) {
    let mut points = Array2::zeros((n, d));
    kmeans_points(points.view_mut(), 0, k + 1, seed).expect("valid");
    let centroids = if n >= k {
        kmeans_init(points.view(), k).expect("valid")
    } else {
        let mut centroids = Array2::zeros((k, d));
        fill_noise(centroids.view_mut(), seed, 0);
        centroids
    };
    (points, centroids)
}

#[test]
fn kmeans_assign_equals_the_naive_loop() {
    for (n, d, k) in [
        (0, 8, 16),
        (1, 1, 1),
        (1000, 8, 16),
        (777, 3, 5),
        (300, 2, 16),
        (50, 8, 1),
        (20, 0, 2),
    ] {
        let (points, centroids) = problem(n, d, k, n as u64);
        let (labels, sums, counts) = naive_assign(&points, &centroids);
        let mut got = Array1::from_elem(n, u32::MAX);
        let partial = kmeans_assign(points.view(), centroids.view(), got.view_mut()).expect("valid");
        assert_eq!(got.to_vec(), labels, "n={n} d={d} k={k}");
        for (c, (row, &count)) in partial.sums.iter().zip(&partial.counts).enumerate() {
            assert_eq!(count, counts.get(c).copied().unwrap_or(0));
            for (j, &sum) in row.iter().enumerate() {
                let expected = sums.get(c).and_then(|s| s.get(j)).copied().unwrap_or(0.0);
                // One chunk adds in row order, as the naive loop: exact.
                assert_eq!(sum, expected, "cluster {c} dim {j}");
            }
        }
        assert_eq!(partial.points(), n as u64);
    }
}

#[test]
fn kmeans_chunks_merge_to_the_whole() {
    let (n, d, k) = (5000, 8, 16);
    let (points, centroids) = problem(n, d, k, 1);
    let mut whole_labels = Array1::zeros(n);
    let whole = kmeans_assign(points.view(), centroids.view(), whole_labels.view_mut()).expect("valid");
    for workers in [2, 3, 7] {
        let mut labels = Array1::from_elem(n, u32::MAX);
        let mut merged = KmeansPartial::EMPTY;
        for rows in uneven_chunks(n, workers) {
            let part = kmeans_assign(
                points.slice(s![rows.clone(), ..]),
                centroids.view(),
                labels.slice_mut(s![rows]),
            )
            .expect("valid");
            merged = merged.merge(&part);
        }
        assert_eq!(labels, whole_labels);
        assert_eq!(merged.counts, whole.counts);
        for c in 0..k {
            for j in 0..d {
                let (a, b) = (merged.sums[c][j], whole.sums[c][j]);
                assert!(
                    (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
                    "cluster {c} dim {j}: {a} vs {b}"
                );
            }
        }
    }
    assert_eq!(KmeansPartial::EMPTY.merge(&whole), whole);
    assert_eq!(whole.merge(&KmeansPartial::EMPTY), whole);
}

#[test]
fn kmeans_assign_breaks_ties_to_the_lower_index_and_works_on_strided_points() {
    let centroids = ndarray::arr2(&[[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]]);
    let points = ndarray::arr2(&[[0.0, 5.0], [2.0, 0.0], [-1.0, 0.0], [f64::NAN, 0.0]]);
    let mut labels = Array1::zeros(4);
    let partial = kmeans_assign(points.view(), centroids.view(), labels.view_mut()).expect("valid");
    // (0, 5) is equally far from all three: the first wins. NaN goes to 0.
    assert_eq!(labels.to_vec(), [0, 0, 2, 0]);
    assert_eq!(&partial.counts[..3], &[3, 0, 1]);
    assert!(partial.sums[0][0].is_nan());

    let mut f = Array2::zeros((4, 2).f());
    f.assign(&points);
    let mut labels_f = Array1::zeros(4);
    let partial_f = kmeans_assign(f.view(), centroids.view(), labels_f.view_mut()).expect("valid");
    assert_eq!(labels_f, labels);
    assert_eq!(partial_f.counts, partial.counts);
}

#[test]
fn kmeans_refuses_problems_that_do_not_fit() {
    let points = Array2::zeros((10, 9));
    let mut labels = Array1::zeros(10);
    let too_wide = Array2::zeros((2, 9));
    let err = kmeans_assign(points.view(), too_wide.view(), labels.view_mut()).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { .. }), "{err}");
    let too_many = Array2::zeros((17, 2));
    let points2 = Array2::zeros((10, 2));
    let err = kmeans_assign(points2.view(), too_many.view(), labels.view_mut()).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { .. }), "{err}");
    let none = Array2::zeros((0, 2));
    assert!(kmeans_assign(points2.view(), none.view(), labels.view_mut()).is_err());
    let centroids = Array2::zeros((3, 2));
    let err = kmeans_assign(points.view(), centroids.view(), labels.view_mut()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ShapeMismatch {
                what: "points_rows",
                ..
            }
        ),
        "{err}"
    );
    let err = kmeans_assign(points2.view(), centroids.view(), labels.slice_mut(s![..9])).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ShapeMismatch {
                what: "labels_rows",
                ..
            }
        ),
        "{err}"
    );
    let mut too_many = too_many;
    assert!(kmeans_update(&KmeansPartial::EMPTY, too_many.view_mut()).is_err());
    assert!(kmeans_init(points2.view(), 11).is_err());
    assert!(kmeans_init(points.view(), 2).is_err());
}

#[test]
fn kmeans_update_moves_to_the_means_and_reports_the_largest_move() {
    let (points, mut centroids) = problem(2000, 4, 6, 3);
    let mut labels = Array1::zeros(2000);
    let partial = kmeans_assign(points.view(), centroids.view(), labels.view_mut()).expect("valid");
    let (_, sums, counts) = naive_assign(&points, &centroids);
    let before = centroids.clone();
    let moved = kmeans_update(&partial, centroids.view_mut()).expect("valid");
    let mut largest = 0.0_f64;
    for c in 0..6 {
        let mut distance = 0.0;
        for j in 0..4 {
            let expected = if counts[c] == 0 {
                before[[c, j]]
            } else {
                sums[c][j] / counts[c] as f64
            };
            assert_eq!(centroids[[c, j]], expected);
            distance += (expected - before[[c, j]]).powi(2);
        }
        largest = largest.max(distance.sqrt());
    }
    assert_eq!(moved, largest);
}

#[test]
fn kmeans_iterations_converge_on_separated_clusters() {
    let (points, mut centroids) = problem(3000, 8, 16, 4);
    let mut labels = Array1::zeros(3000);
    let mut moved = f64::INFINITY;
    for _ in 0..100 {
        let mut merged = KmeansPartial::EMPTY;
        for rows in uneven_chunks(3000, 4) {
            let part = kmeans_assign(
                points.slice(s![rows.clone(), ..]),
                centroids.view(),
                labels.slice_mut(s![rows]),
            )
            .expect("valid");
            merged = merged.merge(&part);
        }
        moved = kmeans_update(&merged, centroids.view_mut()).expect("valid");
        if moved == 0.0 {
            break;
        }
    }
    assert_eq!(moved, 0.0, "Lloyd's iteration stops once no label changes");
}

#[test]
fn kmeans_partial_is_plain_data_and_serializable() {
    assert_eq!((KMEANS_MAX_K, KMEANS_MAX_DIM), (16, 8));
    assert_eq!(
        size_of::<KmeansPartial>(),
        8 * KMEANS_MAX_K * (KMEANS_MAX_DIM + 1)
    );
    let (points, centroids) = problem(100, 8, 16, 8);
    let mut labels = Array1::zeros(100);
    let partial = kmeans_assign(points.view(), centroids.view(), labels.view_mut()).expect("valid");
    let bytes = bytemuck::bytes_of(&partial).to_vec();
    assert_eq!(bytemuck::pod_read_unaligned::<KmeansPartial>(&bytes), partial);
    // serde_json's default float parsing may be off by an ulp: compare loosely.
    let json = serde_json::to_string(&partial).expect("serializes");
    let back: KmeansPartial = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back.counts, partial.counts);
    for (a, b) in back.sums.iter().flatten().zip(partial.sums.iter().flatten()) {
        assert!((a - b).abs() <= 1e-15 * b.abs(), "{a} vs {b}");
    }
}

// ---- Mandelbrot ----

fn naive_mandelbrot(p: &MandelbrotParams) -> Array2<u32> {
    let (w, h) = (p.width as usize, p.height as usize);
    Array2::from_shape_fn((h, w), |(row, col)| {
        let cx = p.re_min + (col as f64 + 0.5) * ((p.re_max - p.re_min) / w as f64);
        let cy = p.im_max - (row as f64 + 0.5) * ((p.im_max - p.im_min) / h as f64);
        let (mut x, mut y) = (0.0_f64, 0.0_f64);
        let mut n = 0;
        while n < p.max_iter && x * x + y * y <= 4.0 {
            let t = x * x - y * y + cx;
            y = 2.0 * x * y + cy;
            x = t;
            n += 1;
        }
        n as u32
    })
}

#[test]
fn mandelbrot_equals_the_naive_loop_for_any_chunking() {
    for params in [
        MandelbrotParams::classic(61, 40, 200),
        MandelbrotParams::upper_half(33, 17, 500),
        MandelbrotParams::classic(1, 1, 0),
    ] {
        let expected = naive_mandelbrot(&params);
        let h = params.height as usize;
        for workers in [1, 2, 3, 13] {
            let mut image = Array2::from_elem((h, params.width as usize), u32::MAX);
            for rows in uneven_chunks(h, workers) {
                let first = rows.start;
                mandelbrot_rows(first, image.slice_mut(s![rows, ..]), &params).expect("valid");
            }
            assert_eq!(image, expected, "{params:?} workers={workers}");
        }
    }
}

#[test]
fn mandelbrot_rows_cost_unevenly() {
    // The work of a row is its iteration count: rows near the real axis
    // (the bottom of the upper half) cost far more than the top rows.
    let params = MandelbrotParams::upper_half(200, 100, 1000);
    let image = naive_mandelbrot(&params);
    let cost = |rows: std::ops::Range<usize>| -> u64 {
        image.slice(s![rows, ..]).iter().map(|&n| u64::from(n)).sum()
    };
    let (top, bottom) = (cost(0..50), cost(50..100));
    assert!(bottom > 4 * top, "top half {top}, bottom half {bottom}");
    // The classic view is symmetric: its two halves cost the same.
    let classic = naive_mandelbrot(&MandelbrotParams::classic(200, 100, 1000));
    let half = |rows: std::ops::Range<usize>| -> u64 {
        classic.slice(s![rows, ..]).iter().map(|&n| u64::from(n)).sum()
    };
    assert_eq!(half(0..50), half(50..100));
}

#[test]
fn mandelbrot_refuses_bad_parameters() {
    let params = MandelbrotParams::classic(10, 10, 100);
    let mut image = Array2::zeros((10, 10));
    let err = mandelbrot_rows(5, image.view_mut(), &params).unwrap_err();
    assert!(matches!(err, Error::RowsOutOfBounds { .. }), "{err}");
    assert!(mandelbrot_rows(usize::MAX, image.slice_mut(s![..1, ..]), &params).is_err());
    let mut narrow = Array2::zeros((10, 9));
    let err = mandelbrot_rows(0, narrow.view_mut(), &params).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    for bad in [
        MandelbrotParams {
            re_min: 1.0,
            ..params
        },
        MandelbrotParams {
            im_max: f64::NAN,
            ..params
        },
        MandelbrotParams {
            max_iter: u64::from(u32::MAX) + 1,
            ..params
        },
    ] {
        let err = mandelbrot_rows(0, image.view_mut(), &bad).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { .. }), "{err}");
    }
    assert!(image.iter().all(|&n| n == 0), "an error writes nothing");
}
