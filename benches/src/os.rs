//! Every system call and `/proc` read of the benches, in one place (as
//! memmap2 keeps its own in `mod os`). What `shmpar_core::os` already
//! offers is used from there and not repeated here: free space
//! (`free_bytes`), `/proc/PID/stat` (`ProcStat`: page faults, threads) and
//! the thread count. What is left is bench-specific:
//!
//! - what the harness measures and reports: proportional set sizes
//!   (`/proc/PID/smaps_rollup`), the pool's worker processes
//!   (`/proc/self/task/TID/children`), the machine (`/proc/cpuinfo`,
//!   `/proc/meminfo`, the kernel release);
//! - how busy the machine was while it measured: the load average
//!   (`/proc/loadavg`), the CPU time all programs used (`/proc/stat`) and
//!   the CPU time of this process and its reaped children (`getrusage`);
//! - what the barrier groups need to compare barriers across processes:
//!   an anonymous shared page, a process-shared `pthread_barrier_t` in it,
//!   and forked participants.

use std::cell::UnsafeCell;
use std::io;
use std::ptr::NonNull;

/// The proportional set size of process `pid` in bytes, from
/// `/proc/PID/smaps_rollup` (pages shared by k processes count 1/k to each,
/// so the PSS of all processes that share an array adds up to its size once).
pub fn pss_bytes(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    kib_field(&text, "Pss")
}

/// The children of this process's main thread (the pool forks its workers
/// from the thread that builds it), from `/proc/self/task/PID/children`.
pub fn children() -> Vec<i32> {
    let me = std::process::id();
    std::fs::read_to_string(format!("/proc/self/task/{me}/children"))
        .map(|s| s.split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// Number of CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The CPU's model name (`/proc/cpuinfo`), or `unknown`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("model name"))?;
            Some(line.split(':').nth(1)?.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The machine's memory in bytes (`MemTotal` of `/proc/meminfo`), or 0.
pub fn mem_total_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| kib_field(&text, "MemTotal"))
        .unwrap_or(0)
}

/// The kernel's release (`/proc/sys/kernel/osrelease`), or empty.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The 1-, 5- and 15-minute load averages (`/proc/loadavg`): runnable and
/// uninterruptible tasks, this process and its children included.
pub fn loadavg() -> Option<[f64; 3]> {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

/// Seconds of CPU time every program on the machine has used since boot,
/// summed over all CPUs (`/proc/stat`'s `cpu` line: user, nice, system,
/// irq, softirq and steal; not idle or iowait; guest time is already in
/// user).
pub fn machine_cpu_s() -> Option<f64> {
    parse_machine_cpu_s(&std::fs::read_to_string("/proc/stat").ok()?, clock_ticks()?)
}

fn parse_machine_cpu_s(text: &str, ticks_per_s: f64) -> Option<f64> {
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some("cpu"))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum::<u64>();
    Some(busy as f64 / ticks_per_s)
}

/// The unit of `/proc/stat` (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
fn clock_ticks() -> Option<f64> {
    // SAFETY: sysconf has no memory arguments.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (t > 0).then_some(t as f64)
}

/// Seconds of CPU time (user + system) of this process and of every
/// descendant it has reaped (whose own reaped descendants count in turn:
/// pool workers, forked barrier participants, Python's processes).
pub fn own_cpu_s() -> f64 {
    let of = |who| {
        // SAFETY: all zeros is a valid rusage (integers and timevals).
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `usage` is a writable rusage; `who` is a valid selector.
        if unsafe { libc::getrusage(who, &mut usage) } != 0 {
            return 0.0;
        }
        let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        s(usage.ru_utime) + s(usage.ru_stime)
    };
    of(libc::RUSAGE_SELF) + of(libc::RUSAGE_CHILDREN)
}

/// The value of a `Name:   123 kB` line of `/proc` text, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.split(':').next() == Some(name))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// An anonymous `MAP_SHARED` mapping of whole pages, zero-filled: forked
/// children share it with their parent. Unmapped on drop.
pub struct SharedPages {
    ptr: NonNull<u8>,
    len: usize,
}

impl SharedPages {
    /// Maps at least `len` bytes (rounded up to whole pages).
    ///
    /// # Errors
    /// The OS error of `mmap`.
    pub fn new(len: usize) -> io::Result<SharedPages> {
        let len = len.max(1).next_multiple_of(4096);
        // SAFETY: a fresh anonymous mapping at an address of the kernel's
        // choosing; no existing memory changes.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(SharedPages { ptr, len })
    }

    /// The first byte: page aligned, `len` bytes, zero until written.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The mapping's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never: it holds at least one page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for SharedPages {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of `len` bytes; whoever holds
        // pointers into it (a barrier group) drops before it.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A `pthread_barrier_t` set up with `PTHREAD_PROCESS_SHARED`, to live in
/// [`SharedPages`] and be waited on by several processes (glibc's
/// implementation: futex based, no spinning).
///
/// Safe code gets a `&PthreadBarrier` only from [`init`](Self::init), so
/// every barrier it waits on is set up; unsafe code that makes a reference
/// from a pointer into the pages must make it only after `init`.
#[repr(transparent)]
pub struct PthreadBarrier(UnsafeCell<libc::pthread_barrier_t>);

impl PthreadBarrier {
    /// Sets up the barrier at `this` for `parties` participants.
    ///
    /// # Errors
    /// The error number `pthread_barrier_init` returns (`EINVAL` for 0 parties).
    ///
    /// # Safety
    /// - `this` points to memory valid for reads and writes of a
    ///   `PthreadBarrier` that stays mapped for `'a`.
    /// - Nobody waits on it while it is set up.
    pub unsafe fn init<'a>(this: *mut PthreadBarrier, parties: u32) -> io::Result<&'a PthreadBarrier> {
        // SAFETY: `attr` lives on this stack for the calls that use it;
        // `this` is valid for writes (the caller's promise) and
        // `PthreadBarrier` is a transparent wrapper of the barrier.
        // PTHREAD_PROCESS_SHARED is what a barrier in MAP_SHARED memory used
        // by several processes needs.
        let rc = unsafe {
            let mut attr: libc::pthread_barrierattr_t = std::mem::zeroed();
            libc::pthread_barrierattr_init(&mut attr);
            libc::pthread_barrierattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            let rc = libc::pthread_barrier_init(this.cast::<libc::pthread_barrier_t>(), &attr, parties);
            libc::pthread_barrierattr_destroy(&mut attr);
            rc
        };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: set up just now, valid for `'a` (the caller's promise).
        Ok(unsafe { &*this })
    }

    /// Waits for the other participants; `false` if the wait failed.
    pub fn wait(&self) -> bool {
        // SAFETY: the barrier was set up by `init` (the type's contract
        // above) in memory that stays mapped while participants wait.
        let rc = unsafe { libc::pthread_barrier_wait(self.0.get()) };
        rc == 0 || rc == libc::PTHREAD_BARRIER_SERIAL_THREAD
    }
}

// SAFETY: a process-shared pthread barrier is made to be waited on by many
// threads and processes at once; its state changes only inside pthread calls.
unsafe impl Sync for PthreadBarrier {}

/// Forks. Returns 0 in the child and the child's pid in the parent.
///
/// # Errors
/// The OS error of `fork`.
///
/// # Safety
/// - The process is single-threaded, or the child calls only
///   async-signal-safe functions until it exits (another thread may hold a
///   lock at the moment of the fork, which stays held in the child).
/// - The child never returns into code that would run the parent's
///   destructors twice: it ends with [`exit_now`].
pub unsafe fn fork() -> io::Result<i32> {
    // SAFETY: the caller's promise above.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        pid => Ok(pid),
    }
}

/// In a forked child: asks for SIGKILL when the parent dies, and exits at
/// once if `parent` is already gone. Async-signal-safe.
pub fn die_with_parent(parent: i32) {
    // SAFETY: prctl and getppid have no memory arguments; both are
    // async-signal-safe.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
        if libc::getppid() != parent {
            libc::_exit(0);
        }
    }
}

/// Ends this process now with `code`, running no destructor and no atexit
/// handler (what a forked child must do). Async-signal-safe.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Waits for child `pid` to exit and reaps it.
pub fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: `status` is a writable int; waiting on our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

/// Kills child `pid` with SIGKILL and reaps it.
pub fn kill_and_reap(pid: i32) {
    // SAFETY: kill has no memory arguments; `pid` is our own child, not yet
    // reaped, so the pid cannot have been reused.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    reap(pid);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kib_fields_are_read_in_bytes() {
        let text = "Rss:  2048 kB\nPss:  1024 kB\nPss_Anon: 1 kB\n";
        assert_eq!(kib_field(text, "Pss"), Some(1 << 20));
        assert_eq!(kib_field(text, "Pss_Anon"), Some(1024));
        assert_eq!(kib_field(text, "Shared"), None);
    }

    #[test]
    fn load_and_cpu_time_are_read() {
        assert_eq!(
            parse_loadavg("0.50 1.25 2.00 3/110 17313\n"),
            Some([0.5, 1.25, 2.0])
        );
        assert_eq!(parse_loadavg("0.50 x"), None);
        let stat = "cpu  100 2 30 900 7 1 1 4 50 0\ncpu0 50 1 15 450 3 0 0 2 25 0\n";
        assert_eq!(parse_machine_cpu_s(stat, 100.0), Some(1.38));
        assert!(loadavg().is_some());
        assert!(machine_cpu_s().is_some_and(|s| s > 0.0));
        let before = own_cpu_s();
        let mut x = 0u64;
        for i in 0..10_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        assert!(own_cpu_s() >= before);
    }

    #[test]
    fn this_process_has_a_pss_and_the_machine_memory() {
        assert!(pss_bytes(std::process::id() as i32).is_some_and(|b| b > 0));
        assert!(mem_total_bytes() > 0);
        assert!(cpus() >= 1);
    }

    #[test]
    fn shared_pages_are_whole_zeroed_pages() {
        let pages = SharedPages::new(100).unwrap();
        assert_eq!(pages.len(), 4096);
        assert_eq!(pages.as_ptr() as usize % 4096, 0);
        // SAFETY: the mapping is 4096 readable bytes, and ours alone.
        let bytes = unsafe { std::slice::from_raw_parts(pages.as_ptr(), pages.len()) };
        assert!(bytes.iter().all(|&b| b == 0));
    }
}
