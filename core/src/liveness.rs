//! Who created a segment, and whether that process still lives.

use crate::sys;

/// A process, identified so that pid reuse cannot fool a liveness check:
/// its pid *and* its start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcessId {
    /// The process id.
    pub pid: i32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22);
    /// 0 when unknown.
    pub start_time: u64,
}

impl ProcessId {
    /// The calling process.
    pub fn current() -> ProcessId {
        let pid = sys::getpid();
        ProcessId {
            pid,
            start_time: sys::process_start_time(pid).unwrap_or(0),
        }
    }

    /// Whether this process is still running. A process with the same pid
    /// but a different start time is another process, so this says `false`.
    /// A zombie (exited, not yet reaped) counts as alive until it is reaped.
    pub fn is_alive(&self) -> bool {
        match sys::process_start_time(self.pid) {
            Some(start) => self.start_time == 0 || start == self.start_time,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_process_is_alive_and_a_forged_start_time_is_not() {
        let me = ProcessId::current();
        assert!(me.start_time > 0);
        assert!(me.is_alive());
        let reused = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!reused.is_alive());
        let gone = ProcessId {
            pid: i32::MAX,
            start_time: 1,
        };
        assert!(!gone.is_alive());
    }
}
