//! What `run` and `compare` share: kernels by spec, the deterministic input,
//! one job on a backend, verification against the serial references, and
//! the up-front memory check.
//!
//! Every kernel here is a named `fn` registered with
//! `shmpar::register_kernel!` (the catalog kernel travels as a parameter),
//! so process pools run it on their persistent workers whether they were
//! forked or spawned, and never fork after rayon threads exist.

use std::time::{Duration, Instant};

use ndarray::{Array1, ArrayView1, ArrayViewMut1, Ix1};
use shmpar::{Backend, BackendKind, Ctx, Element, HugePages, Pool, SegmentOptions, Serde, SharedArray};
use shmpar_kernels::Float;
use shmpar_kernels::reduce::{Reduction, UnaryReduction};

use crate::os;
use crate::units::bytes;
use crate::workload::Workload;
use crate::{CliError, CliResult, FloatType, StartMethod};
use shmpar_kernels::catalog::{AnyPartial, BuiltinReduction, Elementwise, ReductionValue};

/// Relative tolerance of reductions against the serial reference: both
/// accumulate in `f64`, with pairwise and compensated sums, so they agree
/// to ~1e-13 on the uniform input; 1e-9 leaves room for `f32` `var`/`std`.
pub(crate) const REDUCTION_RTOL: f64 = 1e-9;

/// The seed of the input; the input depends on it and the index only.
pub(crate) const SEED: u64 = 0x5eed_5a9e_d00d_f00d;

/// A kernel from the catalog, or a workload over several arrays.
#[derive(Clone, Debug)]
pub(crate) enum Kernel {
    /// In place: reads and writes every element.
    Map(Elementwise),
    /// Reads every element, returns a value.
    Reduce(BuiltinReduction),
    /// A program over several arrays of its own (`triad`, `matvec`,
    /// `kmeans`, `mandelbrot`), sized by its spec, not by `--len`.
    Workload(Workload),
}

impl Kernel {
    /// Parses a spec such as `sqrt`, `scale:0.5`, `var:1`, `histogram:0:1:64`.
    pub(crate) fn parse(spec: &str) -> CliResult<Kernel> {
        use shmpar_kernels::Error as KError;
        let spec = spec.trim();
        if let Some(workload) = Workload::parse(spec) {
            return workload.map(Kernel::Workload);
        }
        match spec.parse::<Elementwise>() {
            Ok(k) => return Ok(Kernel::Map(k)),
            Err(KError::UnknownKernel { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        match spec.parse::<BuiltinReduction>() {
            Ok(r) => Ok(Kernel::Reduce(r)),
            Err(KError::UnknownKernel { .. }) => Err(CliError::msg(format!(
                "unknown kernel {spec:?}; elementwise: {}; reductions: {}; workloads: {}",
                Elementwise::NAMES.join(", "),
                BuiltinReduction::NAMES.join(", "),
                Workload::NAMES.join(", ")
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// The spec that parses back to this kernel.
    pub(crate) fn spec(&self) -> String {
        match self {
            Kernel::Map(k) => k.to_string(),
            Kernel::Reduce(r) => r.to_string(),
            Kernel::Workload(w) => w.spec(),
        }
    }

    /// The workload, if this is one.
    pub(crate) fn workload(&self) -> Option<Workload> {
        match self {
            Kernel::Workload(w) => Some(*w),
            _ => None,
        }
    }

    /// Bytes a run moves through memory: an in-place map reads and writes
    /// each element, a reduction only reads it; a workload says its own
    /// (none for the Mandelbrot set, which is bound by arithmetic).
    pub(crate) fn bytes_moved(&self, len: usize, dtype: FloatType) -> Option<f64> {
        let passes = match self {
            Kernel::Map(_) => 2.0,
            Kernel::Reduce(_) => 1.0,
            Kernel::Workload(w) => return w.bytes_moved(),
        };
        Some(passes * len as f64 * dtype.size() as f64)
    }

    /// Room one worker's partial result needs in the pool's partial-result
    /// area ([`shmpar::PoolBuilder::partial_bytes`]): a histogram's counts
    /// take at most 10 bytes each (postcard varints), plus 1 KiB for its
    /// other fields and the framing; anything else fits the default.
    pub(crate) fn partial_bytes(&self) -> usize {
        match self {
            Kernel::Reduce(BuiltinReduction::Histogram(h)) => {
                h.bins().saturating_mul(10).saturating_add(1024)
            }
            _ => shmpar::DEFAULT_PARTIAL_BYTES,
        }
    }

    /// Refuses a kernel whose partial result is too large for the room a
    /// process pool reserves per worker ([`MAX_PARTIAL_BYTES`]): histograms
    /// of more than ~6.7 million bins.
    pub(crate) fn check_for_processes(&self) -> CliResult {
        if self.partial_bytes() > MAX_PARTIAL_BYTES {
            return Err(CliError::msg(format!(
                "{} has too many bins for the process backend: each worker hands its counts to the \
                 coordinator through at most {} of shared memory (10 bytes a bin, at most {} bins); \
                 use fewer bins or --backend threads",
                self.spec(),
                bytes(MAX_PARTIAL_BYTES as u64),
                (MAX_PARTIAL_BYTES - 1024) / 10
            )));
        }
        Ok(())
    }
}

/// The most room `run` and `compare` reserve for one worker's partial
/// result: the pool reserves it once per worker in its control segment, so
/// 64 MiB x 64 workers is already 4 GiB of `/dev/shm`.
pub(crate) const MAX_PARTIAL_BYTES: usize = 64 << 20;

/// Shared memory a process pool of `workers` reserves for partial results
/// of `partial_bytes` each (a little more: the control block and the
/// parameter area, which are small).
pub(crate) fn pool_bytes(workers: usize, partial_bytes: usize) -> u64 {
    let per_worker = partial_bytes.saturating_add(64) as u64;
    (workers as u64)
        .saturating_mul(per_worker)
        .saturating_add(shmpar::DEFAULT_PARAM_BYTES as u64 + 4096)
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

/// Refuses, with the figures, an array (and a process pool's partial-result
/// area of `pool_bytes`, 0 without processes) that /dev/shm or memory
/// cannot hold.
pub(crate) fn check_memory(len: usize, dtype: FloatType, pool_bytes: u64) -> CliResult {
    let need = (len as u128) * dtype.size() as u128;
    let what = format!("--len {len} {} elements", dtype.name());
    check_memory_for(&what, need, pool_bytes, "a smaller --len")
}

/// [`check_memory`] for arrays described as `what` (`triad and kmeans`),
/// of `need` bytes in all; `smaller` says how to need less.
pub(crate) fn check_memory_for(what: &str, need: u128, pool_bytes: u64, smaller: &str) -> CliResult {
    let described = format!("{what} need {}", bytes(clamp_u64(need)));
    if need > isize::MAX as u128 {
        return Err(CliError::msg(format!(
            "{described}, more than this machine can address"
        )));
    }
    let need = clamp_u64(need);
    let shm_need = need.saturating_add(pool_bytes);
    if let Some(free) = os::shm_free_bytes() {
        if shm_need > free {
            // Name the pool's area only where it is what does not fit.
            let (pool, hint) = if need <= free {
                (
                    format!(
                        ", and the process pool {} for partial results,",
                        bytes(pool_bytes)
                    ),
                    "fewer --workers or histogram bins",
                )
            } else {
                (String::new(), smaller)
            };
            return Err(CliError::msg(format!(
                "{described} of shared memory{pool} but /dev/shm has {} free; use {hint}",
                bytes(free)
            )));
        }
    }
    if let Some(avail) = os::mem_available() {
        if need > avail {
            return Err(CliError::msg(format!(
                "{described} but only {} of memory is available (MemAvailable); use {smaller}",
                bytes(avail)
            )));
        }
    }
    Ok(())
}

fn clamp_u64(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

/// How to start a backend: what `run` and `compare` take from their flags.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Launch {
    /// How process workers start.
    pub(crate) start: StartMethod,
    /// Room for one worker's partial result.
    pub(crate) partial_bytes: usize,
    /// `--timeout`: the deadline of every job of a process pool.
    pub(crate) timeout: Option<Duration>,
}

/// Starts a backend; returns it and the seconds it took.
pub(crate) fn start_backend(kind: BackendKind, workers: usize, launch: Launch) -> CliResult<(Backend, f64)> {
    let t = Instant::now();
    let mut builder = Pool::builder()
        .start(launch.start.start())
        .partial_bytes(launch.partial_bytes);
    if let Some(timeout) = launch.timeout {
        builder = builder.job_timeout(timeout);
    }
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

/// A worker's partial result of a catalog reduction, or why the reduction
/// spec did not parse in the worker.
type Partial = Serde<Result<AnyPartial, String>>;

/// An element type of `run` and `compare`, with its three kernels.
///
/// The kernels are named `fn` items registered with
/// [`shmpar::register_kernel!`], one per element type (a generic `fn`
/// cannot be registered, only its instances): a pool started with
/// `--start spawn` runs new processes of this executable, which find a
/// kernel by its registered name, not by an address in our process.
pub(crate) trait Sample: Float + Element {
    /// Writes the input into the worker's rows; the parameter is the seed.
    const FILL: fn(&Ctx<'_>, ArrayViewMut1<'_, Self>, &u64);
    /// Runs an elementwise catalog kernel in place.
    const APPLY: fn(&Ctx<'_>, ArrayViewMut1<'_, Self>, &Serde<Elementwise>);
    /// A catalog reduction's partial over the worker's rows; the parameter
    /// is the reduction's spec.
    const PARTIAL: fn(&Ctx<'_>, ArrayView1<'_, Self>, &Serde<String>) -> Partial;
}

fn fill_rows<T: Float>(ctx: &Ctx<'_>, mut rows: ArrayViewMut1<'_, T>, seed: u64) {
    let start = ctx.rows().start as u64;
    for (k, x) in rows.iter_mut().enumerate() {
        *x = input_value(seed, start + k as u64);
    }
}

fn apply_rows<T: Float>(rows: ArrayViewMut1<'_, T>, kernel: &Elementwise) {
    // The only failure of `apply` is a clamp with lo > hi, which the spec
    // parser already refused.
    let _ = kernel.apply(rows);
}

fn partial_of_rows<T: Float>(rows: ArrayView1<'_, T>, spec: &str) -> Partial {
    Serde(
        spec.parse::<BuiltinReduction>()
            .map(|r| r.partial(rows))
            .map_err(|e| e.to_string()),
    )
}

/// Defines and registers the kernels of one element type.
macro_rules! sample_kernels {
    ($t:ty, $fill:ident, $apply:ident, $partial:ident) => {
        fn $fill(ctx: &Ctx<'_>, rows: ArrayViewMut1<'_, $t>, seed: &u64) {
            fill_rows(ctx, rows, *seed);
        }
        fn $apply(_ctx: &Ctx<'_>, rows: ArrayViewMut1<'_, $t>, kernel: &Serde<Elementwise>) {
            apply_rows(rows, &kernel.0);
        }
        fn $partial(_ctx: &Ctx<'_>, rows: ArrayView1<'_, $t>, spec: &Serde<String>) -> Partial {
            partial_of_rows(rows, &spec.0)
        }
        shmpar::register_kernel!($fill: fn(&Ctx, ArrayViewMut1<$t>, &u64));
        shmpar::register_kernel!($apply: fn(&Ctx, ArrayViewMut1<$t>, &Serde<Elementwise>));
        shmpar::register_kernel!($partial: fn(&Ctx, ArrayView1<$t>, &Serde<String>) -> Partial);
        impl Sample for $t {
            const FILL: fn(&Ctx<'_>, ArrayViewMut1<'_, $t>, &u64) = $fill;
            const APPLY: fn(&Ctx<'_>, ArrayViewMut1<'_, $t>, &Serde<Elementwise>) = $apply;
            const PARTIAL: fn(&Ctx<'_>, ArrayView1<'_, $t>, &Serde<String>) -> Partial = $partial;
        }
    };
}
sample_kernels!(f32, fill_f32, apply_f32, partial_f32);
sample_kernels!(f64, fill_f64, apply_f64, partial_f64);

/// Fills the array with the input, in parallel on `backend`.
pub(crate) fn fill<T: Sample>(backend: &Backend, a: &mut SharedArray<T, Ix1>) -> CliResult {
    backend.run(a, SEED, T::FILL)?;
    Ok(())
}

/// Runs an elementwise kernel in place on `backend`.
pub(crate) fn apply<T: Sample>(
    backend: &Backend,
    a: &mut SharedArray<T, Ix1>,
    kernel: Elementwise,
) -> CliResult {
    backend.run(a, Serde(kernel), T::APPLY)?;
    Ok(())
}

/// Runs a reduction on `backend`: each worker returns its partial, the
/// coordinator combines them in chunk order. The reduction travels as its
/// spec and is parsed again in the worker.
pub(crate) fn reduce<T: Sample>(
    backend: &Backend,
    a: &SharedArray<T, Ix1>,
    reduction: &BuiltinReduction,
) -> CliResult<ReductionValue> {
    let partial: Partial = backend.map_reduce_with(a, Serde(reduction.to_string()), T::PARTIAL, |x, y| {
        Serde(match (x.0, y.0) {
            (Ok(x), Ok(y)) => Ok(reduction.combine(x, y)),
            (Err(e), _) | (_, Err(e)) => Err(e),
        })
    })?;
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
        return Ok(());
    }
    // A histogram's difference is named by its first bin, not by millions of counts.
    if let (ReductionValue::Histogram(g), ReductionValue::Histogram(w)) = (got, want) {
        if let Some(i) = (0..g.counts.len().min(w.counts.len())).find(|&i| g.counts[i] != w.counts[i]) {
            return Err(format!(
                "bin {i} counts {}, the serial reference {}; result {got}, reference {want}",
                g.counts[i], w.counts[i]
            ));
        }
    }
    Err(format!(
        "result {got} differs from the serial reference {want} (relative tolerance {REDUCTION_RTOL:e})"
    ))
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

/// The `--huge-pages` mode of this command, set once by `run`/`compare`.
static HUGE_PAGES: std::sync::OnceLock<HugePages> = std::sync::OnceLock::new();

/// Sets the `--huge-pages` mode for every array this command creates.
pub(crate) fn set_huge_pages(mode: HugePages) {
    let _ = HUGE_PAGES.set(mode);
}

/// Options for the arrays this command creates: `--huge-pages`.
pub(crate) fn array_options() -> SegmentOptions {
    SegmentOptions::new().huge_pages(HUGE_PAGES.get().copied().unwrap_or_default())
}

/// Creates the benchmark array (call [`check_memory`] first, for the
/// clearer message).
pub(crate) fn create_array<T: Float + Element>(len: usize) -> CliResult<SharedArray<T, Ix1>> {
    Ok(SharedArray::<T, Ix1>::create_with(&array_options(), len)?)
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
