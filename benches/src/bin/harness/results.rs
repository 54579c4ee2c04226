//! What the harness measures, as it is stored in `results.json` and merged
//! from other machines.

use serde::{Deserialize, Serialize};
use shmpar_benches::load::Section;
use shmpar_benches::stats::Summary;

/// The machine a run happened on.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Machine {
    pub label: String,
    pub cpu: String,
    pub cpus: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub shm_free_gib: f64,
    pub avx2: bool,
}

/// One backend's times in one configuration, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BackendTimes {
    /// Pool (or rayon pool) construction; 0 for serial and the bound.
    pub cold_build_ms: f64,
    /// The first sqrt(abs) job after construction.
    pub cold_sqrt_ms: f64,
    /// The first mean job.
    pub cold_mean_ms: f64,
    /// Steady state.
    pub warm_sqrt_ms: Summary,
    pub warm_mean_ms: Summary,
}

impl BackendTimes {
    pub fn cold_ms(&self) -> f64 {
        self.cold_build_ms + self.cold_sqrt_ms + self.cold_mean_ms
    }
    pub fn warm_ms(&self) -> f64 {
        self.warm_sqrt_ms.median + self.warm_mean_ms.median
    }
}

/// The memory of the processes backend during a job.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Pss {
    pub array_bytes: u64,
    /// Largest total (coordinator + workers) seen while jobs ran.
    pub total_bytes: u64,
    pub coordinator_bytes: u64,
    pub worker_bytes: Vec<u64>,
    pub samples: usize,
}

/// One (length, workers, dtype) configuration.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Config {
    pub len: usize,
    pub workers: usize,
    pub dtype: String,
    pub elem_bytes: usize,
    pub repeat: usize,
    pub processes: BackendTimes,
    pub threads: BackendTimes,
    pub serial: BackendTimes,
    /// rw pass as "sqrt", read pass as "mean"; cold = first pass.
    pub bound: BackendTimes,
    /// Minor page faults taken by the workers in their first job.
    pub worker_first_job_faults: u64,
    /// Minor page faults taken by the workers in their second job.
    pub worker_second_job_faults: u64,
    pub pss: Option<Pss>,
    /// The means each backend computed (processes, threads, serial).
    pub means: [f64; 3],
    /// Warm processes ÷ threads, one ratio per round of the warm phase
    /// (both jobs of a pair ran in the same round, moments apart).
    #[serde(default)]
    pub sqrt_vs_threads: Summary,
    #[serde(default)]
    pub mean_vs_threads: Summary,
    /// Warm processes ÷ the bandwidth passes, paired the same way.
    #[serde(default)]
    pub sqrt_vs_bound: Summary,
    #[serde(default)]
    pub mean_vs_bound: Summary,
}

/// One run of the Python seed pattern script.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Python {
    pub method: String,
    pub workers: usize,
    pub len: usize,
    pub python: String,
    pub numpy: String,
    pub cold_total_ms: f64,
    pub warm_total_ms: Summary,
    pub warm_processes_ms: Summary,
    pub warm_mean_ms: Summary,
    pub startup_ms: f64,
    pub mean: f64,
}

/// Per-phase latency of one barrier with some parties.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BarrierRow {
    pub kind: String,
    pub parties: usize,
    pub phase_us: Summary,
}

/// Per-job latency of one dispatch path.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DispatchRow {
    pub name: String,
    pub us: Summary,
}

/// Create and attach cost of one segment size.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SegmentRow {
    pub bytes: u64,
    pub create_ms: Summary,
    pub attach_us: Summary,
    pub prefault_ms: Summary,
    pub skipped: Option<String>,
}

/// The C reference (`benches/c/seed_reference.c`), built with the
/// machine's C compiler and run in the same harness run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CReference {
    /// The compiler command and flags.
    pub build: String,
    /// The compiler's version line.
    #[serde(default)]
    pub compiler: String,
    pub threads: usize,
    pub len: usize,
    /// Medians.
    pub sqrt_ms: f64,
    pub sum_ms: f64,
    /// Every timed repeat.
    #[serde(default)]
    pub sqrt: Summary,
    #[serde(default)]
    pub sum: Summary,
}

/// One kernel on one backend, as `shmpar compare --json` reported it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CompareRow {
    pub kernel: String,
    pub backend: String,
    pub workers: usize,
    /// Its timed runs, in milliseconds.
    pub ms: Summary,
}

/// `shmpar compare` run by the harness on the headline configuration, to
/// show its processes ÷ threads ratio beside the harness's own.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CompareRun {
    pub command: String,
    pub rows: Vec<CompareRow>,
}

impl CompareRun {
    pub fn row(&self, kernel: &str, backend: &str) -> Option<&CompareRow> {
        self.rows
            .iter()
            .find(|r| r.kernel == kernel && r.backend == backend)
    }
}

/// Everything one run measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    pub command: String,
    /// The source measured: `git describe --always --dirty` of the
    /// workspace, if it is a git checkout.
    #[serde(default)]
    pub commit: Option<String>,
    pub headline_len: usize,
    pub headline_workers: usize,
    pub dtype: String,
    pub workers: Vec<usize>,
    pub sizes: Vec<usize>,
    pub configs: Vec<Config>,
    pub python: Vec<Python>,
    pub python_skipped: Option<String>,
    #[serde(default)]
    pub c_reference: Option<CReference>,
    #[serde(default)]
    pub c_reference_skipped: Option<String>,
    pub barriers: Vec<BarrierRow>,
    /// Why libgomp's barrier is missing from the barrier table, if it is.
    #[serde(default)]
    pub openmp_skipped: Option<String>,
    /// How `benches/c/omp_barrier.c` was built.
    #[serde(default)]
    pub openmp_build: Option<String>,
    pub dispatch: Vec<DispatchRow>,
    pub segments: Vec<SegmentRow>,
    #[serde(default)]
    pub compare: Option<CompareRun>,
    #[serde(default)]
    pub compare_skipped: Option<String>,
    /// Every measurement, with how busy the machine was around it.
    #[serde(default)]
    pub sections: Vec<Section>,
    pub wall_s: f64,
}

impl Results {
    pub fn config(&self, len: usize, workers: usize) -> Option<&Config> {
        self.configs.iter().find(|c| c.len == len && c.workers == workers)
    }
    pub fn headline(&self) -> Option<&Config> {
        self.config(self.headline_len, self.headline_workers)
    }
    pub fn python(&self, method: &str, workers: usize) -> Option<&Python> {
        self.python
            .iter()
            .find(|p| p.method == method && p.workers == workers)
    }
    pub fn barrier(&self, kind: &str, parties: usize) -> Option<&BarrierRow> {
        self.barriers
            .iter()
            .find(|b| b.kind == kind && b.parties == parties)
    }
    /// The first dispatch row called one of `names` (rows were renamed
    /// with the API; merged results may use an older name).
    pub fn dispatch(&self, names: &[&str]) -> Option<&DispatchRow> {
        self.dispatch.iter().find(|d| names.contains(&d.name.as_str()))
    }
    /// The section `key`, if it was recorded.
    pub fn section(&self, key: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.key == key)
    }
}
