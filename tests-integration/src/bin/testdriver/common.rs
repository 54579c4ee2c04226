//! What every scenario needs: a tally of trials, a small random number
//! generator, a system-wide clock, and the leak and zombie checks.

use std::path::Path;
use std::time::{Duration, Instant};

/// Outcomes of one scenario's trials, printed as one summary line.
pub struct Tally {
    name: String,
    trials: usize,
    ok: usize,
    leaks: usize,
    zombies: usize,
    hangs: usize,
    latencies_ms: Vec<f64>,
    failures: Vec<String>,
    extra: Vec<(String, String)>,
}

impl Tally {
    pub fn new(name: &str) -> Tally {
        Tally {
            name: name.to_owned(),
            trials: 0,
            ok: 0,
            leaks: 0,
            zombies: 0,
            hangs: 0,
            latencies_ms: Vec::new(),
            failures: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// Records one trial: `Ok(())` or what went wrong.
    pub fn trial(&mut self, label: &str, outcome: Result<(), String>) {
        self.trials += 1;
        match outcome {
            Ok(()) => self.ok += 1,
            Err(msg) => {
                if msg.contains("HANG") {
                    self.hangs += 1;
                }
                let line = format!("FAIL scenario={} trial={} {label}: {msg}", self.name, self.trials);
                eprintln!("{line}");
                self.failures.push(line);
            }
        }
    }

    /// Checks for leaked segments and zombies after a trial; each counts
    /// as a failure of the trial it follows.
    pub fn after_trial(&mut self, prefix: &str) -> Result<(), String> {
        let leaked = leaked_segments(prefix);
        let zombies = zombie_children();
        self.leaks += leaked.len();
        self.zombies += zombies.len();
        for name in &leaked {
            let _ = std::fs::remove_file(Path::new("/dev/shm").join(name));
        }
        if leaked.is_empty() && zombies.is_empty() {
            Ok(())
        } else {
            Err(format!("leaked segments {leaked:?}, zombie children {zombies:?}"))
        }
    }

    /// Adds counts reported by another process.
    pub fn add_counts(&mut self, trials: usize, ok: usize, leaks: usize, zombies: usize, hangs: usize) {
        self.trials += trials;
        self.ok += ok;
        self.leaks += leaks;
        self.zombies += zombies;
        self.hangs += hangs;
    }

    pub fn latency(&mut self, ms: f64) {
        self.latencies_ms.push(ms);
    }

    pub fn extra(&mut self, key: &str, value: impl ToString) {
        self.extra.push((key.to_owned(), value.to_string()));
    }

    pub fn all_ok(&self) -> bool {
        self.ok == self.trials && self.leaks == 0 && self.zombies == 0 && self.hangs == 0
    }

    /// The summary line.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "scenario={} trials={} ok={} leaks={} zombies={} hangs={}",
            self.name, self.trials, self.ok, self.leaks, self.zombies, self.hangs
        );
        if !self.latencies_ms.is_empty() {
            let mut sorted = self.latencies_ms.clone();
            sorted.sort_by(f64::total_cmp);
            let median = sorted[sorted.len() / 2];
            let max = sorted[sorted.len() - 1];
            line.push_str(&format!(
                " median_error_latency_ms={median:.1} max_error_latency_ms={max:.1}"
            ));
        }
        for (key, value) in &self.extra {
            line.push_str(&format!(" {key}={value}"));
        }
        line
    }
}

/// xorshift64*: reproducible trials from a seed, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process, so a
/// worker can stamp the moment it dies and the coordinator can measure.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn getpid() -> i32 {
    std::process::id() as i32
}

/// `(pid, ppid, state)` of every process.
pub fn processes() -> Vec<(i32, i32, char)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            let mut fields = rest.split(' ');
            let state = fields.next()?.chars().next()?;
            let ppid = fields.next()?.parse().ok()?;
            Some((pid, ppid, state))
        })
        .collect()
}

/// Children of this process that are zombies.
pub fn zombie_children() -> Vec<i32> {
    let me = getpid();
    processes()
        .into_iter()
        .filter(|&(_, ppid, state)| ppid == me && state == 'Z')
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Living (non-zombie) children of `parent`.
pub fn children_of(parent: i32) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|&(_, ppid, state)| ppid == parent && state != 'Z')
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Whether `pid` still runs (exists and is not a zombie).
pub fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// Segments that outlived a trial: names starting with `prefix`, and any
/// shmpar segment whose creator is this process (a pool's control segment).
pub fn leaked_segments(prefix: &str) -> Vec<String> {
    segments_of(prefix, getpid())
}

/// Segments named with `prefix` or created by `creator`.
pub fn segments_of(prefix: &str, creator: i32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !prefix.is_empty() && n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    for info in shmpar::gc::list() {
        if info.creator_pid == creator && !names.contains(&info.name) {
            names.push(info.name);
        }
    }
    names.sort();
    names
}

/// Polls `done` every millisecond until it holds or `limit` passes;
/// returns the time it took, or `None` on timeout.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if done() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Reaps any child that has exited, without blocking.
pub fn reap_exited() {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer; WNOHANG never blocks.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
    }
}

/// Waits for child `pid` up to `limit`; kills it after. Returns the raw
/// wait status, or `None` when it had to be killed (a hang).
pub fn wait_child(pid: i32, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer; WNOHANG never blocks.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc == pid {
            return Some(status);
        }
        if rc < 0 {
            return Some(-1);
        }
        if start.elapsed() > limit {
            // SAFETY: kill and a blocking waitpid of our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A description of a wait status: `exit 0`, `signal 9`.
pub fn describe_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {status}")
    }
}

/// Makes this process the reaper of its orphaned descendants, so workers
/// of a coordinator we kill are reparented to us and we can see them exit.
pub fn become_subreaper() {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
}

/// A unique prefix for this run's segment names.
pub fn prefix(scenario: &str) -> String {
    format!("shmpar_rt_{}_{}_", scenario.replace('-', ""), getpid())
}
