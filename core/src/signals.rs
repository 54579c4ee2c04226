//! Ctrl-C and friends: a process that created segments and is stopped by
//! SIGINT, SIGTERM or SIGHUP unlinks them before it dies.
//!
//! The handler is installed once, by the first pool, and only for signals
//! whose disposition is still the default: a program with handlers of its
//! own keeps them (and can call [`cleanup_now`] from them). The handler
//! unlinks every name in the core's registry (async-signal-safe), restores
//! the default disposition and re-raises the signal, so the process still
//! dies of it and the shell sees the usual status. The workers, in the
//! same process group, get the terminal's SIGINT too; any that survive die
//! with their parent (parent-death signal).

use std::sync::Once;

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn on_signal(signal: libc::c_int) {
    crate::cleanup::unlink_registered();
    // SAFETY: signal() and raise() are async-signal-safe; restoring the
    // default action and re-raising ends the process as the signal would.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

/// Installs the cleanup handler for SIGINT, SIGTERM and SIGHUP where their
/// disposition is the default. Idempotent.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for signal in SIGNALS {
            // SAFETY: we read the current action into a zeroed sigaction and
            // install a handler that only makes async-signal-safe calls.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, std::ptr::null(), &mut old) != 0
                    || old.sa_sigaction != libc::SIG_DFL
                {
                    continue;
                }
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                libc::sigemptyset(&mut action.sa_mask);
                action.sa_flags = libc::SA_RESTART;
                libc::sigaction(signal, &action, std::ptr::null_mut());
            }
        }
    });
}

/// In a freshly forked worker: no claim on the parent's segments, and the
/// default action wherever the parent had our cleanup handler (a signal the
/// parent ignores stays ignored, so workers live and die with their
/// coordinator). Async-signal-safe.
pub fn reset_in_child() {
    crate::cleanup::forget_registered();
    let ours = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for signal in SIGNALS {
        // SAFETY: sigaction() and signal() are async-signal-safe; `old` is a
        // valid out-pointer.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == ours {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
    }
}

/// Unlinks every shared-memory segment this process created and still
/// owns, now. Async-signal-safe: for programs that install their own
/// SIGINT/SIGTERM handlers, to call from them.
pub fn cleanup_now() {
    crate::cleanup::unlink_registered();
}
