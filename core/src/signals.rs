//! Ctrl-C and friends: a process that created segments and is stopped by
//! SIGINT, SIGTERM or SIGHUP unlinks them before it dies.
//!
//! The handler is installed once per process, by the first segment it
//! creates (so plain programs and the threads and serial backends clean up
//! too, not only process pools), and only for signals whose disposition is
//! still the default: a program with handlers of its own keeps them (and
//! can call [`cleanup_now`] from them). The handler unlinks every name the
//! process registered in the core's registry (async-signal-safe), restores
//! the default disposition and re-raises the signal, so the process still
//! dies of it and the shell sees the usual status. The workers, in the
//! same process group, get the terminal's SIGINT too; any that survive die
//! with their parent (parent-death signal).
//!
//! A forked child inherits the handler and a copy of the registry, but the
//! registry records which process registered each name, so a signal in the
//! child never unlinks its parent's segments (see [`crate::cleanup`]).

use std::sync::Once;

use crate::os::{self, CLEANUP_SIGNALS, Signal};

extern "C" fn on_signal(signal: Signal) {
    crate::cleanup::unlink_registered();
    os::reraise_default(signal);
}

/// Installs the cleanup handler for SIGINT, SIGTERM and SIGHUP where their
/// disposition is the default. Idempotent; segment creation calls it.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for signal in CLEANUP_SIGNALS {
            os::install_if_default(signal, on_signal);
        }
    });
}

/// In a freshly forked worker: no claim on the parent's segments, and the
/// default action wherever the parent had our cleanup handler (a signal the
/// parent ignores stays ignored, so workers live and die with their
/// coordinator). Async-signal-safe.
pub fn reset_in_child() {
    crate::cleanup::forget_registered();
    for signal in CLEANUP_SIGNALS {
        os::reset_if(signal, on_signal);
    }
}

/// Unlinks every shared-memory segment this process created and still
/// owns, now. Async-signal-safe: for programs that install their own
/// SIGINT/SIGTERM handlers, to call from them. In a forked child it leaves
/// the parent's segments alone.
pub fn cleanup_now() {
    crate::cleanup::unlink_registered();
}

/// The cleanup signals held back in the calling thread while it lives: a
/// signal that arrives meanwhile is delivered when it drops. Segment
/// creation holds one from `shm_open(O_CREAT)` until the new name is in the
/// cleanup registry, so no signal can end the process in between and
/// leave a name nobody removes.
pub(crate) struct Deferred {
    old: Option<libc::sigset_t>,
}

/// Defers the cleanup signals until the returned guard drops. Should the
/// mask not be settable (it always is on Linux), nothing is deferred: the
/// window it would close stays open, and `gc` collects what it leaves.
pub(crate) fn defer() -> Deferred {
    Deferred {
        old: os::block_signals(&CLEANUP_SIGNALS).ok(),
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        if let Some(old) = &self.old {
            os::restore_signal_mask(old);
        }
    }
}
