//! The bandwidth bound: the fastest streaming passes we can write over the
//! same memory with the same number of threads, to tell how far a kernel is
//! from what the memory system allows.
//!
//! * [`rw_pass`] reads and writes every element in place (`x = x * k` with
//!   `k = 1` hidden from the optimizer): the access pattern of an in-place
//!   elementwise kernel, 2 × `size_of::<T>()` bytes of traffic per element.
//! * [`read_pass`] sums every element with 16 independent accumulators: the
//!   access pattern of a reduction, `size_of::<T>()` bytes per element.
//!
//! Both are compiled for AVX2 when the CPU has it (runtime detection) and
//! split the slice into the same contiguous chunks as the runtime
//! ([`shmpar_core::chunk::chunk_range`]), one scoped thread per chunk. The
//! thread start-up (tens of µs) is included, so only large arrays give a
//! meaningful bound.

use shmpar_core::chunk::chunk_range;

/// Element types the passes run on.
pub trait Lane: Copy + Send + Sync + 'static {
    /// The in-place pass over one chunk, `x *= k`.
    fn scale_chunk(xs: &mut [Self], k: Self);
    /// The read-only pass over one chunk, the sum in `f64`.
    fn sum_chunk(xs: &[Self]) -> f64;
    /// The value one.
    const ONE: Self;
}

macro_rules! lane {
    ($t:ty, $scale_avx2:ident, $sum_avx2:ident) => {
        #[target_feature(enable = "avx2")]
        fn $scale_avx2(xs: &mut [$t], k: $t) {
            for x in xs {
                *x *= k;
            }
        }

        #[target_feature(enable = "avx2")]
        fn $sum_avx2(xs: &[$t]) -> f64 {
            sum_generic(xs)
        }

        impl Lane for $t {
            const ONE: $t = 1.0;

            fn scale_chunk(xs: &mut [$t], k: $t) {
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2 (checked just above).
                    unsafe { $scale_avx2(xs, k) }
                } else {
                    for x in xs {
                        *x *= k;
                    }
                }
            }

            fn sum_chunk(xs: &[$t]) -> f64 {
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2 (checked just above).
                    unsafe { $sum_avx2(xs) }
                } else {
                    sum_generic(xs)
                }
            }
        }
    };
}

/// 16 independent lanes: the additions need no reassociation to vectorize.
#[inline(always)]
fn sum_generic<T>(xs: &[T]) -> f64
where
    T: Copy + Into<f64> + std::ops::Add<Output = T> + Default,
{
    let mut acc = [T::default(); 16];
    let mut blocks = xs.chunks_exact(16);
    for block in &mut blocks {
        for (a, &x) in acc.iter_mut().zip(block) {
            *a = *a + x;
        }
    }
    let tail: f64 = blocks.remainder().iter().map(|&x| x.into()).sum();
    acc.iter().map(|&a| a.into()).sum::<f64>() + tail
}

lane!(f64, scale_f64_avx2, sum_f64_avx2);
lane!(f32, scale_f32_avx2, sum_f32_avx2);

/// The in-place read+write pass over `xs` with `threads` threads.
pub fn rw_pass<T: Lane>(xs: &mut [T], threads: usize) {
    let k = std::hint::black_box(T::ONE);
    let threads = threads.max(1);
    let len = xs.len();
    std::thread::scope(|s| {
        let mut rest = xs;
        for part in 0..threads {
            let range = chunk_range(len, threads, part);
            let (mine, tail) = rest.split_at_mut(range.len());
            rest = tail;
            s.spawn(move || T::scale_chunk(mine, k));
        }
    });
}

/// The read-only pass over `xs` with `threads` threads; returns the sum.
pub fn read_pass<T: Lane>(xs: &[T], threads: usize) -> f64 {
    let threads = threads.max(1);
    let len = xs.len();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|part| {
                let mine = &xs[chunk_range(len, threads, part)];
                s.spawn(move || T::sum_chunk(mine))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(f64::NAN)).sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_keep_values_and_sum_them() {
        let mut xs: Vec<f64> = (0..1001).map(f64::from).collect();
        rw_pass(&mut xs, 3);
        assert_eq!(xs[1000], 1000.0);
        assert_eq!(read_pass(&xs, 3), 500_500.0);
        let ys: Vec<f32> = (0..100).map(|i| i as f32).collect();
        assert_eq!(read_pass(&ys, 2), 4950.0);
    }
}
