//! How busy the machine was while the harness measured: a [`Section`] per
//! measurement (the harness's kernels, barrier, dispatch, ... runs), with the load average before and after it and the CPU time
//! that *other* programs used meanwhile.
//!
//! The load average counts this harness's own processes (the workers it
//! measures, and for a minute after, those of the section before), so it
//! cannot tell other programs from the harness. The rule therefore uses CPU
//! time: all programs' (`/proc/stat`) minus the harness's and its reaped
//! children's (`getrusage`), over the section's wall time, is how many CPUs
//! other programs kept busy on average. A section is *busy* when that
//! exceeds the CPUs the measurement leaves free by more than
//! [`TOLERANCE_CPUS`]; a target measured in a busy section is "not judged".

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::os;

/// One measurement of the harness and how busy the machine was around it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Section {
    /// What targets look it up by (`kernels/LEN/WORKERS`, `barrier/PARTIES`, ...).
    pub key: String,
    /// What the report calls it.
    pub label: String,
    /// CPUs the measurement keeps busy (at most the machine's).
    pub occupies: usize,
    /// 1-, 5- and 15-minute load averages just before it started.
    pub load_before: [f64; 3],
    /// The same just after it ended.
    pub load_after: [f64; 3],
    /// Its wall time in seconds.
    pub wall_s: f64,
    /// CPUs other programs kept busy on average while it ran.
    pub others_cpus: f64,
    /// Seconds spent waiting for a quiet machine before it (`--quiet-wait`).
    pub waited_s: f64,
    /// Whether it ran on a busy machine (see [`busy`]).
    pub busy: bool,
}

/// How much CPU other programs may use beyond what a measurement leaves
/// free before its section counts as busy (a quarter of a CPU: a
/// daemon's blips pass, another build or test run does not).
pub const TOLERANCE_CPUS: f64 = 0.25;

/// The shortest window over which other programs' CPU time is measured.
const MIN_WINDOW: Duration = Duration::from_secs(1);

/// The rule, in words, for the report.
pub fn rule(cpus: usize) -> String {
    format!(
        "a section is **busy** when other programs kept more than (CPUs the measurement leaves free) + {TOLERANCE_CPUS} CPUs busy on average while it ran; on this {cpus}-CPU machine a 2-worker measurement leaves {} free, so more than {:.2} CPUs of others' work makes it busy",
        cpus.saturating_sub(2),
        cpus.saturating_sub(2) as f64 + TOLERANCE_CPUS
    )
}

/// Whether other programs' `others_cpus` disturbed a measurement that keeps
/// `occupies` of `cpus` CPUs busy.
pub fn busy(cpus: usize, occupies: usize, others_cpus: f64) -> bool {
    others_cpus > cpus.saturating_sub(occupies) as f64 + TOLERANCE_CPUS
}

/// A snapshot of the CPU time counters.
#[derive(Clone, Copy)]
struct Counters {
    at: Instant,
    machine_s: Option<f64>,
    own_s: f64,
}

impl Counters {
    fn now() -> Counters {
        Counters {
            at: Instant::now(),
            machine_s: os::machine_cpu_s(),
            own_s: os::own_cpu_s(),
        }
    }

    /// Average CPUs other programs used since `self` (NaN if `/proc/stat`
    /// is unreadable).
    fn others_since(&self) -> f64 {
        let now = Counters::now();
        let wall = now.at.duration_since(self.at).as_secs_f64().max(1e-3);
        match (self.machine_s, now.machine_s) {
            (Some(a), Some(b)) => ((b - a) - (now.own_s - self.own_s)).max(0.0) / wall,
            _ => f64::NAN,
        }
    }
}

/// Records how busy the machine was around each measurement.
pub struct Recorder {
    cpus: usize,
    /// Longest wait for a quiet machine before each section.
    quiet_wait: Duration,
    /// The sections so far, in order.
    pub sections: Vec<Section>,
}

impl Recorder {
    /// A recorder for a machine of `cpus` CPUs that waits up to
    /// `quiet_wait` for a quiet machine before each section.
    pub fn new(cpus: usize, quiet_wait: Duration) -> Recorder {
        Recorder {
            cpus,
            quiet_wait,
            sections: Vec::new(),
        }
    }

    /// Runs `f` as the section `key` (`label` in the report), which keeps
    /// `occupies` CPUs busy; first waits up to `--quiet-wait` for the other
    /// programs to leave those CPUs alone.
    pub fn section<T>(&mut self, key: &str, label: &str, occupies: usize, f: impl FnOnce() -> T) -> T {
        let occupies = occupies.clamp(1, self.cpus.max(1));
        let waited_s = self.wait_for_quiet(occupies);
        let load_before = os::loadavg().unwrap_or([f64::NAN; 3]);
        let start = Counters::now();
        let out = f();
        let wall_s = start.at.elapsed().as_secs_f64();
        // `/proc/stat` counts in ticks of 10 ms per CPU: over a short
        // section that is too coarse, so the window is at least
        // `MIN_WINDOW` (the harness idles for the rest of it).
        if let Some(rest) = MIN_WINDOW.checked_sub(start.at.elapsed()) {
            std::thread::sleep(rest);
        }
        let others_cpus = start.others_since().min(self.cpus as f64);
        let load_after = os::loadavg().unwrap_or([f64::NAN; 3]);
        self.sections.push(Section {
            key: key.to_owned(),
            label: label.to_owned(),
            occupies,
            load_before,
            load_after,
            wall_s,
            others_cpus,
            waited_s,
            busy: busy(self.cpus, occupies, others_cpus),
        });
        out
    }

    /// Probes the others' CPU use over a second at a time until it is under
    /// the rule's limit for `occupies` CPUs or the wait budget is spent;
    /// returns the seconds waited.
    fn wait_for_quiet(&self, occupies: usize) -> f64 {
        if self.quiet_wait.is_zero() {
            return 0.0;
        }
        let t = Instant::now();
        loop {
            let probe = Counters::now();
            std::thread::sleep(Duration::from_secs(1));
            let others = probe.others_since();
            if !busy(self.cpus, occupies, others) || t.elapsed() >= self.quiet_wait {
                if busy(self.cpus, occupies, others) {
                    eprintln!(
                        "harness: still busy after {:.0} s (others use {others:.2} CPUs); measuring anyway",
                        t.elapsed().as_secs_f64()
                    );
                }
                return t.elapsed().as_secs_f64();
            }
            eprintln!("harness: waiting for a quiet machine (others use {others:.2} CPUs)");
            std::thread::sleep(Duration::from_secs(4));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_counts_only_the_cpus_a_measurement_leaves_free() {
        // 2 workers on 2 CPUs: any real other work disturbs them.
        assert!(!busy(2, 2, 0.1));
        assert!(busy(2, 2, 0.3));
        // 2 workers on 16 CPUs: 14 are free for others.
        assert!(!busy(16, 2, 10.0));
        assert!(busy(16, 16, 0.5));
    }

    #[test]
    fn a_section_records_load_and_others_cpu() {
        let mut r = Recorder::new(os::cpus(), Duration::ZERO);
        let x = r.section("k", "label", 1, || 7);
        assert_eq!(x, 7);
        let s = &r.sections[0];
        assert_eq!((s.key.as_str(), s.occupies), ("k", 1));
        assert!(s.others_cpus.is_nan() || s.others_cpus >= 0.0);
    }
}
