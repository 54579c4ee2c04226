//! Heat steps chunked across sequential "workers", double-buffered, equal
//! the serial driver bit for bit.

mod common;

use common::{noise, uneven_chunks};
use ndarray::{Array1, Array2, ShapeBuilder, s};
use shmpar_kernels::Error;
use shmpar_kernels::Float;
use shmpar_kernels::stencil::{heat_serial_1d, heat_serial_2d, heat_step_1d, heat_step_2d};

fn chunked_1d<T: Float>(u0: &Array1<T>, workers: usize, steps: usize, alpha: T) -> Array1<T> {
    let n = u0.len();
    let mut cur = u0.clone();
    let mut next = Array1::from_elem(n, T::NAN); // every cell must be written
    for _ in 0..steps {
        for rows in uneven_chunks(n, workers) {
            heat_step_1d(cur.view(), next.slice_mut(s![rows.clone()]), rows, alpha).expect("valid");
        }
        // Barrier, then swap.
        std::mem::swap(&mut cur, &mut next);
    }
    cur
}

fn chunked_2d<T: Float>(u0: &Array2<T>, workers: usize, steps: usize, alpha: T, fortran: bool) -> Array2<T> {
    let (r, c) = u0.dim();
    let blank = || {
        if fortran {
            Array2::from_elem((r, c).f(), T::NAN)
        } else {
            Array2::from_elem((r, c), T::NAN)
        }
    };
    let mut cur = blank();
    cur.assign(u0);
    let mut next = blank();
    for _ in 0..steps {
        for rows in uneven_chunks(r, workers) {
            heat_step_2d(cur.view(), next.slice_mut(s![rows.clone(), ..]), rows, alpha).expect("valid");
        }
        std::mem::swap(&mut cur, &mut next);
    }
    cur
}

fn check_1d<T: Float>() {
    for n in [0, 1, 2, 3, 17, 1000] {
        let u0: Array1<T> = noise(n, 7).into_iter().map(T::from_f64).collect();
        let mut serial = u0.clone();
        heat_serial_1d(serial.view_mut(), 25, T::from_f64(0.4));
        for workers in [1, 2, 3, 8, 40] {
            let got = chunked_1d(&u0, workers, 25, T::from_f64(0.4));
            assert_eq!(got, serial, "n={n} workers={workers}");
        }
        if n >= 2 {
            assert_eq!(serial[0], u0[0]);
            assert_eq!(serial[n - 1], u0[n - 1]);
        }
    }
}

fn check_2d<T: Float>() {
    for (r, c) in [(0, 4), (1, 5), (2, 2), (3, 3), (4, 1), (33, 47), (64, 130)] {
        let u0 = Array2::from_shape_vec((r, c), noise(r * c, 9).into_iter().map(T::from_f64).collect())
            .expect("shape");
        let mut serial = u0.clone();
        heat_serial_2d(serial.view_mut(), 12, T::from_f64(0.2));
        for workers in [1, 2, 5, 70] {
            assert_eq!(
                chunked_2d(&u0, workers, 12, T::from_f64(0.2), false),
                serial,
                "{r}x{c} w={workers}"
            );
            // Column-major buffers: rows are strided, the indexed path.
            assert_eq!(
                chunked_2d(&u0, workers, 12, T::from_f64(0.2), true),
                serial,
                "{r}x{c} w={workers} F"
            );
        }
    }
}

#[test]
fn heat_1d_chunked_equals_serial_f64() {
    check_1d::<f64>();
}

#[test]
fn heat_1d_chunked_equals_serial_f32() {
    check_1d::<f32>();
}

#[test]
fn heat_2d_chunked_equals_serial_f64() {
    check_2d::<f64>();
}

#[test]
fn heat_2d_chunked_equals_serial_f32() {
    check_2d::<f32>();
}

#[test]
fn heat_matches_the_formula() {
    let src = Array1::from(vec![1.0_f64, 4.0, 9.0, 16.0, 25.0]);
    let mut dst = Array1::zeros(5);
    heat_step_1d(src.view(), dst.view_mut(), 0..5, 0.1).expect("valid");
    for i in 1..4 {
        assert_eq!(dst[i], src[i] + 0.1 * (src[i - 1] - 2.0 * src[i] + src[i + 1]));
    }
    let u = Array2::from_shape_fn((4, 5), |(i, j)| (i * i + 3 * j) as f64);
    let mut v = Array2::zeros((4, 5));
    heat_step_2d(u.view(), v.view_mut(), 0..4, 0.2).expect("valid");
    for i in 0..4 {
        for j in 0..5 {
            let want = if i == 0 || i == 3 || j == 0 || j == 4 {
                u[[i, j]]
            } else {
                u[[i, j]]
                    + 0.2 * (u[[i - 1, j]] + u[[i + 1, j]] + u[[i, j - 1]] + u[[i, j + 1]] - 4.0 * u[[i, j]])
            };
            assert_eq!(v[[i, j]], want, "({i}, {j})");
        }
    }
    // Strided source (every other column): the indexed path, same formula.
    let wide = Array2::from_shape_fn((4, 10), |(i, j)| (i * i + 3 * (j / 2)) as f64);
    let mut w = Array2::zeros((4, 5));
    heat_step_2d(wide.slice(s![.., ..;2]), w.view_mut(), 0..4, 0.2).expect("valid");
    assert_eq!(w, v);
}

#[test]
fn heat_rejects_bad_rows_and_shapes_without_writing() {
    let src = Array1::<f64>::ones(10);
    let mut dst = Array1::<f64>::zeros(4);
    assert!(matches!(
        heat_step_1d(src.view(), dst.view_mut(), 8..12, 0.1),
        Err(Error::RowsOutOfBounds { .. })
    ));
    assert!(matches!(
        heat_step_1d(src.view(), dst.view_mut(), 2..5, 0.1),
        Err(Error::ShapeMismatch { .. })
    ));
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 5..2;
    assert!(heat_step_1d(src.view(), dst.view_mut(), backwards, 0.1).is_err());
    assert!(dst.iter().all(|&x| x == 0.0));

    let src2 = Array2::<f32>::ones((6, 7));
    let mut dst2 = Array2::<f32>::zeros((2, 6));
    assert!(matches!(
        heat_step_2d(src2.view(), dst2.view_mut(), 0..2, 0.1),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        heat_step_2d(src2.view(), dst2.view_mut(), 5..7, 0.1),
        Err(Error::RowsOutOfBounds { .. })
    ));
}
