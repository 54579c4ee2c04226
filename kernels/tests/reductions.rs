//! Reductions against serial references: accuracy, chunk-combine
//! invariance, special values, layouts, f32 and f64.

mod common;

use common::{naive, neumaier, noise, uneven_chunks};
use ndarray::{Array1, Array2, ArrayView1, ShapeBuilder, s};
use proptest::prelude::*;
use shmpar_kernels::reduce::{
    BinaryReduction, Dot, ExtremaPartial, Histogram, Max, Mean, MeanPartial, Min, MinMax, MomentsPartial,
    Norm, NormPartial, PlainPartial, Reduction, Std, Sum, SumPartial, UnaryReduction, Variance,
};
use shmpar_kernels::{Error, Float};

/// NumPy's `pairwise_sum` (numpy/core/src/umath/loops_utils.h.src), in `T`.
fn numpy_pairwise<T: Float>(a: &[T]) -> T {
    let n = a.len();
    if n < 8 {
        let mut res = T::ZERO;
        for &x in a {
            res = res + x;
        }
        res
    } else if n <= 128 {
        let mut r = [T::ZERO; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for j in 0..8 {
                r[j] = r[j] + a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &a[i..] {
            res = res + x;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        numpy_pairwise(&a[..n2]) + numpy_pairwise(&a[n2..])
    }
}

fn chunked<R, T>(r: &R, a: ArrayView1<'_, T>, k: usize) -> R::Output
where
    R: UnaryReduction<T>,
    T: Float,
{
    let partials = uneven_chunks(a.len(), k)
        .into_iter()
        .map(|rows| r.partial(a.slice(s![rows])));
    r.finish(r.combine_all(partials))
}

fn adversarial() -> Vec<(&'static str, Vec<f64>)> {
    let n = 1_000_003;
    let mut large_tiny = noise(n, 11);
    for (i, x) in large_tiny.iter_mut().enumerate() {
        *x *= [1e12, 1e-4, 1.0, 1e8][i % 4];
    }
    let mut wide = noise(n, 12);
    for (i, x) in wide.iter_mut().enumerate() {
        *x *= 10f64.powi((i % 33) as i32 - 16);
    }
    let ramp: Vec<f64> = (0..n).map(|i| 1.0 + i as f64 * 1e-7).collect();
    vec![
        ("tenths", vec![0.1; 10_000_000]),
        ("large+tiny", large_tiny),
        ("wide magnitudes", wide),
        ("positive ramp", ramp),
        ("noise", noise(n, 13)),
    ]
}

#[test]
fn sum_is_at_least_as_accurate_as_numpy_pairwise() {
    let eps = f64::EPSILON;
    for (name, xs) in adversarial() {
        let exact = neumaier(xs.iter().copied());
        let abs_sum = neumaier(xs.iter().map(|x| x.abs()));
        let ours = shmpar_kernels::sum(ArrayView1::from(&xs));
        let numpy = numpy_pairwise(&xs);
        let err = (ours - exact).abs();
        let numpy_err = (numpy - exact).abs();
        // The worst-case bound for our scheme: 16 lane adds + 4 fold + 15
        // tail + 2 per pairwise level, times eps, times sum |x|.
        let levels = 16.0 + 4.0 + 15.0 + 2.0 * (xs.len() as f64 / 256.0).log2().ceil();
        assert!(err <= levels * eps * abs_sum, "{name}: error {err:e} over bound");
        // Empirically no worse than NumPy (up to an ulp of slack).
        let ulp = exact.abs() * eps;
        assert!(
            err <= numpy_err.max(ulp) * 2.0,
            "{name}: error {err:e}, numpy {numpy_err:e}"
        );
        // And far better than a naive loop on the long inputs.
        let naive_err = (naive(xs.iter().copied()) - exact).abs();
        eprintln!("{name}: ours {err:e}, numpy {numpy_err:e}, naive {naive_err:e}");
    }
}

#[test]
fn sum_of_ten_million_tenths() {
    let xs = Array1::from_elem(10_000_000, 0.1_f64);
    let exact = 10_000_000.0 * 0.1_f64; // 1e6 up to 5.6e-11; Neumaier agrees
    let s = shmpar_kernels::sum(xs.view());
    assert!((s - exact).abs() <= 1e6 * 4.0 * f64::EPSILON, "{s}");
    // f32 input is accumulated in f64: essentially exact.
    let xs32 = Array1::from_elem(10_000_000, 0.1_f32);
    let exact32 = 10_000_000.0 * f64::from(0.1_f32);
    let s32 = shmpar_kernels::sum(xs32.view());
    assert!((s32 - exact32).abs() <= exact32 * 1e-15, "{s32} vs {exact32}");
    let numpy32 = numpy_pairwise(xs32.as_slice().expect("contiguous"));
    assert!((s32 - exact32).abs() < (f64::from(numpy32) - exact32).abs());
}

#[test]
fn chunked_sum_mean_var_match_whole_array_tightly() {
    let n = 100_003;
    let xs: Array1<f64> = noise(n, 21).into_iter().map(|x| 1e3 + x).collect();
    let abs_sum = neumaier(xs.iter().map(|x| x.abs()));
    let whole_sum = Sum.reduce(xs.view());
    let ref_mean = neumaier(xs.iter().copied()) / n as f64;
    let ref_var = neumaier(xs.iter().map(|x| (x - ref_mean) * (x - ref_mean))) / (n - 1) as f64;
    for k in [1, 2, 3, 7, 16, 64] {
        let s = chunked(&Sum, xs.view(), k);
        assert!((s - whole_sum).abs() <= 4.0 * f64::EPSILON * abs_sum, "k={k}");
        let m = chunked(&Mean, xs.view(), k);
        assert!(
            (m - ref_mean).abs() <= 4.0 * f64::EPSILON * ref_mean.abs(),
            "k={k}"
        );
        let v = chunked(&Variance { ddof: 1 }, xs.view(), k);
        assert!((v - ref_var).abs() <= 1e-12 * ref_var, "k={k}: {v} vs {ref_var}");
        let sd = chunked(&Std { ddof: 1 }, xs.view(), k);
        assert!((sd - ref_var.sqrt()).abs() <= 1e-12 * ref_var.sqrt());
        assert_eq!(chunked(&MinMax, xs.view(), k), MinMax.reduce(xs.view()));
    }
}

#[test]
fn variance_is_stable_with_a_large_offset() {
    // Naive E[x²] - E[x]² loses everything here; two-pass + Chan does not.
    let n = 10_000;
    let xs: Array1<f64> = (0..n).map(|i| 1e9 + (i % 10) as f64).collect();
    let want = 8.25 * n as f64 / (n - 1) as f64; // var of 0..10 is 8.25
    for k in [1, 3, 10] {
        let v = chunked(&Variance { ddof: 1 }, xs.view(), k);
        assert!((v - want).abs() <= 1e-9 * want, "k={k}: {v}");
    }
    let xs32: Array1<f32> = (0..n).map(|i| 1e4 + (i % 10) as f32).collect();
    let v32 = chunked(&Variance { ddof: 1 }, xs32.view(), 5);
    assert!((v32 - want).abs() <= 1e-9 * want, "{v32}");
}

#[test]
fn dot_and_norm_match_references() {
    let n = 50_001;
    let x: Array1<f64> = noise(n, 31).into();
    let y: Array1<f64> = noise(n, 32).into();
    let want = neumaier(x.iter().zip(&y).map(|(a, b)| a * b));
    let scale = neumaier(x.iter().zip(&y).map(|(a, b)| (a * b).abs()));
    let d = shmpar_kernels::dot(x.view(), y.view()).expect("same shape");
    assert!((d - want).abs() <= 8.0 * f64::EPSILON * scale);
    // Chunked.
    let parts = uneven_chunks(n, 5).into_iter().map(|r| {
        Dot.partial(x.slice(s![r.clone()]), y.slice(s![r]))
            .expect("same shape")
    });
    let dc = Dot.finish(Dot.combine_all(parts));
    assert!((dc - want).abs() <= 8.0 * f64::EPSILON * scale);
    // Mismatched layouts take the gather path and agree.
    let a = Array2::from_shape_vec((200, 250), x.slice(s![..50_000]).to_vec()).expect("shape");
    let mut b = Array2::zeros((200, 250).f());
    b.assign(&Array2::from_shape_vec((200, 250), y.slice(s![..50_000]).to_vec()).expect("shape"));
    let want2 = neumaier(a.iter().zip(b.iter()).map(|(p, q)| p * q));
    let d2 = Dot.reduce(a.view(), b.view()).expect("same shape");
    assert!((d2 - want2).abs() <= 8.0 * f64::EPSILON * scale);
    assert!(matches!(
        Dot.reduce(x.view(), y.slice(s![1..])),
        Err(Error::ShapeMismatch { .. })
    ));

    let want_norm = neumaier(x.iter().map(|v| v * v)).sqrt();
    let nrm = chunked(&Norm, x.view(), 7);
    assert!((nrm - want_norm).abs() <= 4.0 * f64::EPSILON * want_norm);
    // Overflow- and underflow-safe, also across chunks of different scale.
    for scale in [1e200, 1e-200, 1e-310] {
        let z = x.mapv(|v| v * scale);
        let got = chunked(&Norm, z.view(), 4);
        assert!(
            (got / scale - want_norm).abs() <= 1e-13 * want_norm,
            "scale {scale}: {got}"
        );
    }
    let mixed = Array1::from(vec![1e-300, 3e200, 4e200, 0.0, 1e-300]);
    let got = chunked(&Norm, mixed.view(), 5);
    assert!((got - 5e200).abs() <= 5e200 * 1e-15);
    assert_eq!(Norm.reduce(Array1::<f64>::zeros(7).view()), 0.0);
    assert_eq!(Norm.reduce(Array1::<f32>::zeros(0).view()), 0.0);
}

#[test]
fn special_values_follow_the_documented_rules() {
    let nan = f64::NAN;
    let inf = f64::INFINITY;
    let with = |v: f64| {
        let mut a = Array1::from(noise(1000, 41));
        a[517] = v;
        a
    };
    for k in [1, 4] {
        let a = with(nan);
        assert!(chunked(&Sum, a.view(), k).is_nan());
        assert!(chunked(&Mean, a.view(), k).is_nan());
        assert!(chunked(&Min, a.view(), k).expect("non-empty").is_nan());
        assert!(chunked(&Max, a.view(), k).expect("non-empty").is_nan());
        assert!(chunked(&Variance::default(), a.view(), k).is_nan());
        assert!(chunked(&Norm, a.view(), k).is_nan());
        let h = Histogram::new(-1.0, 1.0, 8).expect("valid");
        let out = chunked(&h, a.view(), k);
        assert_eq!(out.nan, 1);
        assert_eq!(out.counts.iter().sum::<u64>(), 999);

        let b = with(inf);
        assert_eq!(chunked(&Sum, b.view(), k), inf);
        assert_eq!(chunked(&Mean, b.view(), k), inf);
        assert_eq!(chunked(&Max, b.view(), k), Some(inf));
        assert!(chunked(&Variance::default(), b.view(), k).is_nan());
        assert_eq!(chunked(&Norm, b.view(), k), inf);
        assert_eq!(chunked(&h, b.view(), k).above, 1);
        let mut c = b.clone();
        c[3] = -inf;
        assert!(chunked(&Sum, c.view(), k).is_nan());
        assert_eq!(chunked(&Min, c.view(), k), Some(-inf));
        assert_eq!(chunked(&h, c.view(), k).below, 1);
    }
    // Overflow of a finite sum is +inf, and stays inf across the combine.
    let big = Array1::from_elem(10, f64::MAX);
    assert_eq!(chunked(&Sum, big.view(), 3), inf);
}

#[test]
fn empty_inputs() {
    let e = Array1::<f64>::zeros(0);
    assert_eq!(Sum.reduce(e.view()), 0.0);
    assert!(Mean.reduce(e.view()).is_nan());
    assert_eq!(Min.reduce(e.view()), None);
    assert_eq!(MinMax.reduce(e.view()), None);
    assert!(Variance::default().reduce(e.view()).is_nan());
    assert!(
        Variance { ddof: 1 }
            .reduce(Array1::from(vec![3.0]).view())
            .is_nan()
    );
    assert_eq!(Variance::default().reduce(Array1::from(vec![3.0]).view()), 0.0);
    assert_eq!(Dot.reduce(e.view(), e.view()), Ok(0.0));
    // Empty chunks are identities.
    assert_eq!(Sum.partial(e.view()), Sum.identity());
    assert_eq!(Mean.partial(e.view()), Mean.identity());
    assert_eq!(MinMax.partial(e.view()), MinMax.identity());
    assert_eq!(
        Variance::default().partial(e.view()),
        Variance::default().identity()
    );
    assert_eq!(Norm.partial(e.view()), Norm.identity());
    let h = Histogram::new(0.0, 1.0, 3).expect("valid");
    assert_eq!(h.partial(e.view()), h.identity());
    // More chunks than elements.
    let a = Array1::from(vec![1.0_f64, 2.0, 4.0]);
    assert_eq!(chunked(&Sum, a.view(), 10), 7.0);
    assert_eq!(chunked(&MinMax, a.view(), 10), Some((1.0, 4.0)));
}

#[test]
fn non_contiguous_views_take_the_gather_path_correctly() {
    let (r, c) = (301, 97);
    let a = Array2::from_shape_vec((r, c), noise(r * c, 51)).expect("shape");
    let views = [
        a.slice(s![.., 5]).into_dyn(),
        a.slice(s![..;3, 1..90;2]).into_dyn(),
        a.t().into_dyn(),
        a.slice(s![7..200, ..]).reversed_axes().into_dyn(),
    ];
    for v in views {
        let owned = v.to_owned();
        let want = neumaier(owned.iter().copied());
        let scale = neumaier(owned.iter().map(|x| x.abs()));
        assert!((Sum.reduce(v.view()) - want).abs() <= 4.0 * f64::EPSILON * scale);
        assert_eq!(MinMax.reduce(v.view()), MinMax.reduce(owned.view()));
        let m = want / v.len() as f64;
        let var = neumaier(owned.iter().map(|x| (x - m) * (x - m))) / v.len() as f64;
        assert!((Variance::default().reduce(v.view()) - var).abs() <= 1e-12 * var);
        let h = Histogram::new(-0.5, 0.5, 13).expect("valid");
        assert_eq!(h.reduce(v.view()), h.reduce(owned.view()));
    }
}

#[test]
fn f32_reductions_accumulate_in_f64() {
    let xs: Array1<f32> = noise(30_001, 61).into_iter().map(|x| x as f32).collect();
    let wide: Vec<f64> = xs.iter().map(|&x| f64::from(x)).collect();
    let want = neumaier(wide.iter().copied());
    let scale = neumaier(wide.iter().map(|x| x.abs()));
    assert!((chunked(&Sum, xs.view(), 3) - want).abs() <= 4.0 * f64::EPSILON * scale);
    assert_eq!(
        shmpar_kernels::min(xs.view()),
        xs.iter().copied().reduce(f32::min)
    );
    assert_eq!(
        shmpar_kernels::max(xs.view()),
        xs.iter().copied().reduce(f32::max)
    );
    let d = shmpar_kernels::dot(xs.view(), xs.view()).expect("same shape");
    let want_d = neumaier(wide.iter().map(|x| x * x));
    assert!((d - want_d).abs() <= 4.0 * f64::EPSILON * want_d);
}

#[test]
fn histogram_matches_linear_search_reference() {
    let xs: Array1<f64> = noise(20_000, 71).into_iter().map(|x| x * 1.2).collect();
    for (lo, hi, bins) in [
        (-1.0, 1.0, 1),
        (-1.0, 1.0, 7),
        (-0.3, 0.9, 100),
        (0.1, 0.1 + 1e-9, 3),
    ] {
        let h = Histogram::new(lo, hi, bins).expect("valid");
        let e = h.edges().to_vec();
        let mut want = vec![0_u64; bins];
        let (mut below, mut above) = (0, 0);
        for &x in &xs {
            if x < lo {
                below += 1;
            } else if x > hi {
                above += 1;
            } else {
                let i = (0..bins).rev().find(|&i| e[i] <= x).expect("x >= lo");
                want[i] += 1;
            }
        }
        for k in [1, 5] {
            let out = chunked(&h, xs.view(), k);
            assert_eq!(out.counts, want, "{lo} {hi} {bins}");
            assert_eq!((out.below, out.above, out.nan), (below, above, 0));
        }
    }
    // Edges themselves land in the bin they open; hi in the last one.
    let h = Histogram::new(0.0, 1.0, 4).expect("valid");
    let out = h.reduce(Array1::from(vec![0.0, 0.25, 0.5, 0.75, 1.0]).view());
    assert_eq!(out.counts, vec![1, 1, 1, 2]);
    for bad in [
        (1.0, 0.0, 3),
        (0.0, f64::NAN, 3),
        (0.0, f64::INFINITY, 3),
        (0.0, 1.0, 0),
    ] {
        assert!(Histogram::new(bad.0, bad.1, bad.2).is_err(), "{bad:?}");
    }
    assert!(Histogram::new(-f64::MAX, f64::MAX, 3).is_err());
}

#[test]
fn plain_partials_round_trip_through_bytes_and_serde() {
    fn both<
        P: PlainPartial + PartialEq + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
    >(
        p: P,
    ) {
        let mut slot = vec![0xAA_u8; P::SIZE + 3];
        p.write_bytes(&mut slot).expect("large enough");
        assert_eq!(P::read_bytes(&slot).expect("large enough"), p);
        assert!(p.write_bytes(&mut slot[..P::SIZE - 1]).is_err());
        assert!(P::read_bytes(&slot[..P::SIZE - 1]).is_err());
        let json = serde_json::to_string(&p).expect("serializable");
        assert_eq!(serde_json::from_str::<P>(&json).expect("deserializable"), p);
    }
    both(SumPartial {
        sum: 1.5,
        compensation: -1e-17,
    });
    both(MeanPartial {
        sum: 3.0,
        compensation: 0.0,
        count: 7,
    });
    both(ExtremaPartial {
        min: -2.0,
        max: 9.0,
        count: 3,
    });
    both(MomentsPartial {
        count: 5,
        mean: 2.0,
        m2: 0.5,
    });
    both(NormPartial {
        scale: 1e200,
        ssq: 2.0,
    });
    assert_eq!(SumPartial::SIZE, 16);
    assert_eq!(MomentsPartial::SIZE, 24);
}

proptest! {
    #[test]
    fn combining_chunks_equals_the_whole(
        xs in proptest::collection::vec(-1e6_f64..1e6, 0..3000),
        cuts in proptest::collection::vec(0_usize..3000, 0..8),
    ) {
        let a = Array1::from(xs);
        let n = a.len();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(n)).collect();
        cuts.push(0);
        cuts.push(n);
        cuts.sort_unstable();
        let chunks: Vec<_> = cuts.windows(2).map(|w| a.slice(s![w[0]..w[1]])).collect();

        let abs_sum = neumaier(a.iter().map(|x| x.abs()));
        let tol = 8.0 * f64::EPSILON * abs_sum;
        let s = Sum.finish(Sum.combine_all(chunks.iter().map(|c| Sum.partial(c.view()))));
        prop_assert!((s - neumaier(a.iter().copied())).abs() <= tol);

        let mm = MinMax.finish(MinMax.combine_all(chunks.iter().map(|c| MinMax.partial(c.view()))));
        prop_assert_eq!(mm, MinMax.reduce(a.view()));

        let v = Variance::default();
        let var = v.finish(v.combine_all(chunks.iter().map(|c| v.partial(c.view()))));
        let whole = v.reduce(a.view());
        if n == 0 {
            prop_assert!(var.is_nan() && whole.is_nan());
        } else {
            prop_assert!((var - whole).abs() <= 1e-9 * whole.max(1e-300) + 1e-9);
        }

        let h = Histogram::new(-1e6, 1e6, 17).expect("valid");
        let hist = h.finish(h.combine_all(chunks.iter().map(|c| h.partial(c.view()))));
        prop_assert_eq!(hist, h.reduce(a.view()));
    }

    #[test]
    fn sum_is_order_free_up_to_rounding(xs in proptest::collection::vec(-1e3_f32..1e3, 0..2000)) {
        let a = Array1::from(xs);
        let mut rev = a.clone();
        rev.invert_axis(ndarray::Axis(0));
        let wide = a.iter().map(|&x| f64::from(x));
        let want = neumaier(wide);
        let got = Sum.reduce(rev.view());
        // f32 values accumulated in f64: within a few f64 ulps of Σ|x|.
        let scale = neumaier(a.iter().map(|&x| f64::from(x).abs()));
        prop_assert!((got - want).abs() <= 8.0 * f64::EPSILON * scale);
    }
}
