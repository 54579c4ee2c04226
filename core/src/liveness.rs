//! Who created a segment, and whether that process still lives.

use std::io;

use crate::os::{self, ProcStat};

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
        ProcessId {
            pid: os::getpid(),
            start_time: ProcStat::current().map_or(0, |stat| stat.start_time),
        }
    }

    /// Whether this process is still running. A process with the same pid
    /// but a different start time is another process, so this says `false`.
    /// A zombie (exited, not yet reaped) counts as alive until it is reaped.
    /// When `/proc` cannot be read for another reason than "no such
    /// process", this fails closed: it cannot tell, so it says `true`.
    pub fn is_alive(&self) -> bool {
        match ProcStat::of(self.pid) {
            Ok(stat) => self.start_time == 0 || stat.start_time == self.start_time,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(_) => true,
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
        let nonsense = ProcessId {
            pid: -5,
            start_time: 1,
        };
        assert!(!nonsense.is_alive());
    }
}
