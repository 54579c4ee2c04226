//! What `run` and `compare` share: kernels by spec, the deterministic input,
//! one job on a backend, verification against the serial references, and
//! the up-front memory check.
//!
//! Every kernel closure here captures nothing (the kernel travels as a
//! parameter), so process pools run it on their persistent workers and
//! never fork after rayon threads exist.

use std::ffi::CString;
use std::time::Instant;

use ndarray::{Array1, Ix1};
use shmpar::{Backend, BackendKind, Element, Pool, Serde, SharedArray};
use shmpar_kernels::Float;
use crate::catalog::{AnyPartial, BuiltinReduction, Elementwise, ReductionValue};
use shmpar_kernels::reduce::{Reduction, UnaryReduction};

use crate::units::bytes;
use crate::{CliError, CliResult, FloatType, StartMethod};

/// Relative tolerance of reductions against the serial reference: both
/// accumulate in `f64`, with pairwise and compensated sums, so they agree
/// to ~1e-13 on the uniform input; 1e-9 leaves room for `f32` `var`/`std`.
pub(crate) const REDUCTION_RTOL: f64 = 1e-9;

/// The seed of the input; the input depends on it and the index only.
pub(crate) const SEED: u64 = 0x5eed_5a9e_d00d_f00d;

/// A kernel from the catalog.
#[derive(Clone, Debug)]
pub(crate) enum Kernel {
    /// In place: reads and writes every element.
    Map(Elementwise),
    /// Reads every element, returns a value.
    Reduce(BuiltinReduction),
}

impl Kernel {
    /// Parses a spec such as `sqrt`, `scale:0.5`, `var:1`, `histogram:0:1:64`.
    pub(crate) fn parse(spec: &str) -> CliResult<Kernel> {
        use shmpar_kernels::Error as KError;
        let spec = spec.trim();
        match spec.parse::<Elementwise>() {
            Ok(k) => return Ok(Kernel::Map(k)),
            Err(KError::UnknownKernel { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        match spec.parse::<BuiltinReduction>() {
            Ok(r) => Ok(Kernel::Reduce(r)),
            Err(KError::UnknownKernel { .. }) => Err(CliError::msg(format!(
                "unknown kernel {spec:?}; elementwise: {}; reductions: {}",
                Elementwise::NAMES.join(", "),
                BuiltinReduction::NAMES.join(", ")
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// The spec that parses back to this kernel.
    pub(crate) fn spec(&self) -> String {
        match self {
            Kernel::Map(k) => k.to_string(),
            Kernel::Reduce(r) => r.to_string(),
        }
    }

    /// Bytes a run moves through memory: an in-place map reads and writes
    /// each element, a reduction only reads it.
    pub(crate) fn bytes_moved(&self, len: usize, dtype: FloatType) -> f64 {
        let passes = match self {
            Kernel::Map(_) => 2.0,
            Kernel::Reduce(_) => 1.0,
        };
        passes * len as f64 * dtype.size() as f64
    }

    /// Room a partial result needs in a result slot: a histogram's counts
    /// take at most 10 bytes each (postcard varints), plus its edges' bounds.
    pub(crate) fn partial_bytes(&self) -> u32 {
        match self {
            Kernel::Reduce(BuiltinReduction::Histogram(h)) => {
                u32::try_from(h.bins().saturating_mul(10).saturating_add(1024)).unwrap_or(u32::MAX)
            }
            _ => 4096,
        }
    }

    /// Refuses a kernel whose partial result cannot fit a process pool's
    /// result slot (histograms of more than ~100,000 bins).
    pub(crate) fn check_for_processes(&self) -> CliResult {
        const SLOT_MAX: u32 = 1 << 20;
        if self.partial_bytes() > SLOT_MAX - 64 {
            return Err(CliError::msg(format!(
                "{} has too many bins for the process backend: a worker's partial must fit a result \
                 slot of 1 MiB (at most {} bins); use fewer bins or --backend threads",
                self.spec(),
                (SLOT_MAX - 64 - 1024) / 10
            )));
        }
        Ok(())
    }
}

/// Checks the worker count against the array length.
pub(crate) fn check_workers(workers: usize, len: usize) -> CliResult {
    if workers == 0 {
        return Err(CliError::msg("--workers must be at least 1"));
    }
    if workers > shmpar::MAX_POOL_WORKERS {
        return Err(CliError::msg(format!(
            "--workers {workers} is more than the {} a pool supports",
            shmpar::MAX_POOL_WORKERS
        )));
    }
    if workers > len {
        return Err(CliError::msg(format!(
            "--workers {workers} is more than the {len} element(s) of the array: every worker needs a row"
        )));
    }
    Ok(())
}

/// Bytes free for unprivileged users on the file system holding `dir`.
fn free_bytes(dir: &str) -> Option<u64> {
    let path = CString::new(dir).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string that outlives the call and
    // `stat` points to writable memory for one `statvfs`, which the call
    // fills when it returns 0.
    let rc = unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialized `stat`.
    let stat = unsafe { stat.assume_init() };
    // The field types differ between platforms (u32 on some 32-bit ones).
    #[allow(clippy::unnecessary_cast)]
    Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// `MemAvailable` from /proc/meminfo, in bytes.
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// Refuses, with the figures, an array that /dev/shm or memory cannot hold.
pub(crate) fn check_memory(len: usize, dtype: FloatType) -> CliResult {
    let need = (len as u128) * dtype.size() as u128;
    let described = format!(
        "--len {len} {} elements need {}",
        dtype.name(),
        bytes(clamp_u64(need))
    );
    if need > isize::MAX as u128 {
        return Err(CliError::msg(format!(
            "{described}, more than this machine can address"
        )));
    }
    let need = clamp_u64(need);
    if let Some(free) = free_bytes("/dev/shm") {
        if need > free {
            return Err(CliError::msg(format!(
                "{described} of shared memory but /dev/shm has {} free; use a smaller --len",
                bytes(free)
            )));
        }
    }
    if let Some(avail) = mem_available() {
        if need > avail {
            return Err(CliError::msg(format!(
                "{described} but only {} of memory is available (MemAvailable); use a smaller --len",
                bytes(avail)
            )));
        }
    }
    Ok(())
}

fn clamp_u64(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

/// Starts a backend; returns it and the seconds it took.
pub(crate) fn start_backend(
    kind: BackendKind,
    workers: usize,
    start: StartMethod,
    partial_bytes: u32,
) -> CliResult<(Backend, f64)> {
    let t = Instant::now();
    let builder = Pool::builder().start(start.start()).partial_bytes(partial_bytes as usize);
    let backend = Backend::with_pool_builder(kind, workers, builder)?;
    Ok((backend, t.elapsed().as_secs_f64()))
}

/// The input's element `index`: uniform in [0, 1), from a counter-based
/// generator (SplitMix64 of seed + index), so it does not depend on the
/// chunking, the backend or the worker count. `f64` gets 53 random bits,
/// `f32` 24, so the value is exact in either type.
pub(crate) fn input_value<T: Float>(seed: u64, index: u64) -> T {
    let mut z = seed.wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let bits = if size_of::<T>() == 4 { 24 } else { 53 };
    T::from_f64((z >> (64 - bits)) as f64 / (1u64 << bits) as f64)
}

/// Fills the array with the input, in parallel on `backend`.
pub(crate) fn fill<T: Float + Element>(backend: &Backend, a: &mut SharedArray<T, Ix1>) -> CliResult {
    backend.for_each_chunk_with(a, SEED, |ctx, mut chunk, &seed| {
        let start = ctx.rows().start as u64;
        for (k, x) in chunk.iter_mut().enumerate() {
            *x = input_value(seed, start + k as u64);
        }
    })?;
    Ok(())
}

/// Runs an elementwise kernel in place on `backend`.
pub(crate) fn apply<T: Float + Element>(
    backend: &Backend,
    a: &mut SharedArray<T, Ix1>,
    kernel: Elementwise,
) -> CliResult {
    backend.for_each_chunk_with(a, Serde(kernel), |_ctx, chunk, kernel| {
        // The only failure of `apply` is a clamp with lo > hi, which the
        // spec parser already refused.
        let _ = kernel.0.apply(chunk);
    })?;
    Ok(())
}

/// Runs a reduction on `backend`: each worker returns its partial, the
/// coordinator combines them in chunk order.
pub(crate) fn reduce<T: Float + Element>(
    backend: &Backend,
    a: &SharedArray<T, Ix1>,
    reduction: &BuiltinReduction,
) -> CliResult<ReductionValue> {
    // The reduction travels as its spec and is parsed again in the worker.
    type Partial = Serde<Result<AnyPartial, String>>;
    let partial: Partial = backend.map_reduce_with(
        a,
        Serde(reduction.to_string()),
        |_ctx, chunk, spec| {
            Serde(
                spec.0
                    .parse::<BuiltinReduction>()
                    .map(|r| r.partial(chunk))
                    .map_err(|e| e.to_string()),
            )
        },
        |x, y| {
            Serde(match (x.0, y.0) {
                (Ok(x), Ok(y)) => Ok(reduction.combine(x, y)),
                (Err(e), _) | (_, Err(e)) => Err(e),
            })
        },
    )?;
    let partial = partial.0.map_err(CliError::msg)?;
    Ok(reduction.finish(partial)?)
}

/// Whether two elements are the same value: equal bits, or both NaN.
fn same<T: Float>(x: T, y: T) -> bool {
    x == y && (x != T::ZERO || x.to_f64().to_bits() == y.to_f64().to_bits()) || (x.is_nan() && y.is_nan())
}

/// Checks `a` against `apply_reference` on the input, block by block (no
/// copy of the whole array). Returns `Err` describing the first mismatch.
pub(crate) fn verify_map<T: Float + Element>(
    a: &SharedArray<T, Ix1>,
    kernel: &Elementwise,
) -> Result<(), String> {
    const BLOCK: usize = 1 << 16;
    let view = a.view();
    let mut expected = Array1::<T>::default(BLOCK.min(view.len()));
    let mut mismatches = 0usize;
    let mut first: Option<(usize, T, T)> = None;
    for start in (0..view.len()).step_by(BLOCK) {
        let end = (start + BLOCK).min(view.len());
        let mut block = expected.slice_mut(ndarray::s![..end - start]);
        for (k, x) in block.iter_mut().enumerate() {
            *x = input_value(SEED, (start + k) as u64);
        }
        kernel.apply_reference(block.view_mut());
        for (k, (&got, &want)) in view
            .slice(ndarray::s![start..end])
            .iter()
            .zip(block.iter())
            .enumerate()
        {
            if !same(got, want) {
                mismatches += 1;
                first.get_or_insert((start + k, got, want));
            }
        }
    }
    match first {
        None => Ok(()),
        Some((i, got, want)) => Err(format!(
            "{mismatches} element(s) differ from the serial reference; the first is [{i}] = {got}, expected {want}"
        )),
    }
}

/// Checks a reduction's value against the serial reference value.
pub(crate) fn verify_reduce(got: &ReductionValue, want: &ReductionValue) -> Result<(), String> {
    if got.close_to(want, REDUCTION_RTOL) {
        Ok(())
    } else {
        Err(format!(
            "result {got} differs from the serial reference {want} (relative tolerance {REDUCTION_RTOL:e})"
        ))
    }
}

/// A short form of a reduction value for tables: histograms as their counts' sum.
pub(crate) fn short_value(v: &ReductionValue) -> String {
    match v {
        ReductionValue::Histogram(h) => format!(
            "{} bins, {} counted",
            h.counts.len(),
            h.counts.iter().sum::<u64>()
        ),
        other => other.to_string(),
    }
}

/// Creates the benchmark array (call [`check_memory`] first, for the
/// clearer message).
pub(crate) fn create_array<T: Float + Element>(len: usize) -> CliResult<SharedArray<T, Ix1>> {
    Ok(SharedArray::<T, Ix1>::create(len)?)
}

/// `20000000 f64 elements (160.0 MB)`.
pub(crate) fn describe(len: usize, dtype: FloatType) -> String {
    format!(
        "{len} {} elements ({})",
        dtype.name(),
        bytes((len as u64).saturating_mul(dtype.size() as u64))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_uniform_in_the_unit_interval_and_exact() {
        let xs: Vec<f64> = (0..10_000).map(|i| input_value::<f64>(SEED, i)).collect();
        assert!(xs.iter().all(|&x| (0.0..1.0).contains(&x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        for i in 0..1000 {
            let (x32, x64) = (input_value::<f32>(SEED, i), input_value::<f64>(SEED, i));
            assert!((f64::from(x32) - x64).abs() < 1e-7);
        }
    }

    #[test]
    fn kernels_parse_and_bad_specs_are_refused() {
        assert!(matches!(Kernel::parse("sqrt"), Ok(Kernel::Map(_))));
        assert!(matches!(Kernel::parse("var:1"), Ok(Kernel::Reduce(_))));
        assert_eq!(
            Kernel::parse("histogram:0:1:64").unwrap().spec(),
            "histogram:0:1:64"
        );
        for bad in ["cube", "scale:x", "clamp:1:0", "var:-1", ""] {
            assert!(Kernel::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sameness_is_bitwise_but_nan_equal() {
        assert!(same(1.0f64, 1.0));
        assert!(same(f64::NAN, -f64::NAN));
        assert!(!same(0.0f64, -0.0));
        assert!(!same(1.0f32, 1.0 + f32::EPSILON));
    }
}
