//! Every SIMD level gives bit-identical results. One test function: the
//! level is process-wide, so nothing else in this binary may change it.

mod common;

use ndarray::{Array1, ArrayView1};
use shmpar_kernels::catalog::Elementwise;
use shmpar_kernels::simd::{self, SimdLevel};
use shmpar_kernels::{Error, Float};

fn run<T: Float>(xs: &[T]) -> Vec<u64> {
    let a = ArrayView1::from(xs);
    let mut out = vec![
        shmpar_kernels::sum(a).to_bits(),
        shmpar_kernels::mean(a).to_bits(),
        shmpar_kernels::var(a, 1).to_bits(),
        shmpar_kernels::norm(a).to_bits(),
        shmpar_kernels::dot(a, a).expect("same shape").to_bits(),
        shmpar_kernels::min(a).map_or(0, |x| x.to_f64().to_bits()),
        shmpar_kernels::max(a).map_or(0, |x| x.to_f64().to_bits()),
    ];
    for k in [
        Elementwise::Sqrt,
        Elementwise::Abs,
        Elementwise::SqrtAbs,
        Elementwise::Scale(1.5),
        Elementwise::Offset(-0.25),
        Elementwise::Clamp { lo: -0.5, hi: 0.5 },
    ] {
        let mut b = Array1::from(xs.to_vec());
        k.apply(b.view_mut()).expect("valid");
        out.extend(b.iter().map(|x| x.to_f64().to_bits()));
    }
    let x = Array1::from(xs.to_vec());
    let mut y = x.mapv(|v| v * T::from_f64(0.5));
    shmpar_kernels::axpy(T::from_f64(3.0), x.view(), y.view_mut()).expect("same shape");
    out.extend(y.iter().map(|v| v.to_f64().to_bits()));
    out
}

#[test]
fn all_levels_agree_bit_for_bit() {
    let best = simd::detected_simd_level();
    let levels: Vec<SimdLevel> = [SimdLevel::Baseline, SimdLevel::Avx2]
        .into_iter()
        .filter(|&l| l <= best)
        .collect();
    for n in [0, 1, 15, 16, 17, 255, 256, 257, 4096, 100_003] {
        let x64: Vec<f64> = common::noise(n, n as u64)
            .into_iter()
            .enumerate()
            .map(|(i, x)| x * 10f64.powi((i % 9) as i32 - 4))
            .collect();
        let x32: Vec<f32> = x64.iter().map(|&x| x as f32).collect();
        let mut results = Vec::new();
        for &l in &levels {
            simd::set_simd_level(l).expect("supported");
            assert_eq!(simd::simd_level(), l);
            results.push((run(&x64), run(&x32)));
        }
        for r in &results[1..] {
            assert!(*r == results[0], "n = {n}: levels disagree");
        }
    }
    simd::set_simd_level(best).expect("supported");
    if best == SimdLevel::Baseline {
        assert!(matches!(
            simd::set_simd_level(SimdLevel::Avx2),
            Err(Error::UnsupportedSimdLevel { .. })
        ));
    }
}
