//! Elementwise kernels against a per-element serial reference, on every
//! layout path (contiguous, contiguous rows, strided) and for f32 and f64.

mod common;

use ndarray::{Array1, Array2, ArrayViewMut, Dimension, ShapeBuilder, s};
use shmpar_kernels::catalog::Elementwise;
use shmpar_kernels::{Error, Float};

const KERNELS: [Elementwise; 9] = [
    Elementwise::Sqrt,
    Elementwise::Abs,
    Elementwise::SqrtAbs,
    Elementwise::Exp,
    Elementwise::Ln,
    Elementwise::Scale(-2.5),
    Elementwise::Offset(0.75),
    Elementwise::Clamp { lo: -0.5, hi: 0.25 },
    Elementwise::Fill(3.0),
];

fn special<T: Float>() -> Vec<T> {
    [
        0.0,
        -0.0,
        1.0,
        -1.0,
        4.0,
        -9.0,
        1e300,
        -1e-300,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ]
    .into_iter()
    .map(T::from_f64)
    .collect()
}

fn input<T: Float>(n: usize, seed: u64) -> Vec<T> {
    let mut v: Vec<T> = common::noise(n, seed)
        .into_iter()
        .map(|x| T::from_f64(x * 100.0))
        .collect();
    for (slot, x) in v.iter_mut().zip(special::<T>()) {
        *slot = x;
    }
    v
}

/// Bitwise equality, NaN included.
fn same<T: Float>(a: T, b: T) -> bool {
    a.to_f64().to_bits() == b.to_f64().to_bits() || (a.is_nan() && b.is_nan())
}

fn check_view<T: Float, D: Dimension>(
    k: Elementwise,
    make: impl Fn() -> ndarray::Array<T, D>,
    view: impl for<'a> Fn(&'a mut ndarray::Array<T, D>) -> ArrayViewMut<'a, T, D>,
) {
    let mut got = make();
    let mut want = make();
    k.apply(view(&mut got)).expect("valid kernel");
    k.apply_reference(view(&mut want));
    for (g, w) in got.iter().zip(&want) {
        assert!(same(*g, *w), "{k} on {}: got {g}, want {w}", T::NAME);
    }
}

fn all_paths<T: Float>() {
    for k in KERNELS {
        for n in [0, 1, 3, 15, 16, 17, 255, 256, 257, 1000, 4099] {
            // Contiguous 1-D.
            check_view(k, || Array1::from(input::<T>(n, 1)), |a| a.view_mut());
            // Strided 1-D: fallback map.
            check_view(
                k,
                || Array1::from(input::<T>(3 * n, 2)),
                |a| a.slice_mut(s![..;3]),
            );
        }
        for (r, c) in [(0, 5), (5, 0), (1, 1), (7, 40), (33, 17), (64, 3)] {
            let make = || Array2::from_shape_vec((r, c), input::<T>(r * c, 3)).expect("shape");
            check_view(k, make, |a| a.view_mut());
            // Transposed: contiguous in memory order.
            check_view(k, make, |a| a.view_mut().reversed_axes());
            // Column range: rows contiguous, or fallback for short rows.
            check_view(k, make, |a| {
                let c = a.ncols();
                a.slice_mut(s![.., c / 4..c])
            });
            // Column-major storage, column range.
            let make_f = || Array2::from_shape_vec((r, c).f(), input::<T>(r * c, 4)).expect("shape");
            check_view(k, make_f, |a| {
                let n = a.nrows();
                a.slice_mut(s![n / 3..n, ..])
            });
        }
    }
}

#[test]
fn elementwise_f64_matches_reference_on_every_layout() {
    all_paths::<f64>();
}

#[test]
fn elementwise_f32_matches_reference_on_every_layout() {
    all_paths::<f32>();
}

#[test]
fn ieee_special_values() {
    let mut a = Array1::from(vec![-4.0_f64, -0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY]);
    shmpar_kernels::sqrt(a.view_mut());
    assert!(a[0].is_nan());
    assert!(a[1] == 0.0 && a[1].is_sign_negative());
    assert!(a[2].is_nan());
    assert_eq!(a[3], f64::INFINITY);
    assert!(a[4].is_nan());

    let mut b = Array1::from(vec![-4.0_f32, f32::NEG_INFINITY, f32::NAN]);
    shmpar_kernels::sqrt_abs(b.view_mut());
    assert_eq!(b[0], 2.0);
    assert_eq!(b[1], f32::INFINITY);
    assert!(b[2].is_nan());

    let mut c = Array1::from(vec![0.0_f64, -1.0, 1000.0]);
    shmpar_kernels::ln(c.view_mut());
    assert_eq!(c[0], f64::NEG_INFINITY);
    assert!(c[1].is_nan());
    let mut d = Array1::from(vec![1000.0_f64, f64::NAN]);
    shmpar_kernels::exp(d.view_mut());
    assert_eq!(d[0], f64::INFINITY);
    assert!(d[1].is_nan());
}

#[test]
fn clamp_rejects_bad_bounds_and_keeps_nan() {
    let mut a = Array1::from(vec![1.0_f64, f64::NAN, -3.0]);
    assert!(matches!(
        shmpar_kernels::clamp(a.view_mut(), 1.0, 0.0),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(shmpar_kernels::clamp(a.view_mut(), f64::NAN, 0.0).is_err());
    assert_eq!(a[0], 1.0, "untouched after an error");
    shmpar_kernels::clamp(a.view_mut(), -1.0, 0.5).expect("valid bounds");
    assert_eq!(a[0], 0.5);
    assert!(a[1].is_nan());
    assert_eq!(a[2], -1.0);
    // Infinite bounds are fine.
    shmpar_kernels::clamp(a.view_mut(), f64::NEG_INFINITY, f64::INFINITY).expect("valid");
}

#[test]
fn axpy_matches_reference_across_layouts() {
    let (r, c) = (37, 29);
    let x = Array2::from_shape_vec((r, c), common::noise(r * c, 5)).expect("shape");
    let y0 = Array2::from_shape_vec((r, c), common::noise(r * c, 6)).expect("shape");
    let want = Array2::from_shape_fn((r, c), |(i, j)| 0.5 * x[[i, j]] + y0[[i, j]]);
    // Same layout: the slice path.
    let mut y = y0.clone();
    shmpar_kernels::axpy(0.5, x.view(), y.view_mut()).expect("same shape");
    assert_eq!(y, want);
    // y column-major, x row-major: the Zip path, same values.
    let mut yf = Array2::zeros((r, c).f());
    yf.assign(&y0);
    shmpar_kernels::axpy(0.5, x.view(), yf.view_mut()).expect("same shape");
    assert_eq!(yf, want);
    // Strided views.
    let mut y = y0.clone();
    shmpar_kernels::axpy(0.5, x.slice(s![..;2, ..]), y.slice_mut(s![..;2, ..])).expect("same shape");
    for i in 0..r {
        let expect = if i % 2 == 0 { want.row(i) } else { y0.row(i) };
        assert_eq!(y.row(i), expect);
    }
}

#[test]
fn axpy_rejects_mismatched_shapes_without_writing() {
    let x = Array1::<f32>::ones(5);
    let mut y = Array1::<f32>::zeros(4);
    let err = shmpar_kernels::axpy(1.0, x.view(), y.view_mut()).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }));
    assert!(err.to_string().contains("[4]"), "{err}");
    assert!(y.iter().all(|&v| v == 0.0));
}

#[test]
fn fill_works_for_integers_and_floats() {
    let mut a = Array2::<u8>::zeros((3, 4));
    shmpar_kernels::fill(a.slice_mut(s![.., 1..3]), 9);
    assert_eq!(a.iter().filter(|&&v| v == 9).count(), 6);
    let mut b = Array1::<f64>::zeros(100);
    shmpar_kernels::fill(b.view_mut(), f64::NAN);
    assert!(b.iter().all(|v| v.is_nan()));
}
