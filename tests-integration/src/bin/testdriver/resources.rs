//! Resource exhaustion (a small /dev/shm, few file descriptors, few
//! processes, little address space) and permissions between users.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use ndarray::Ix1;
use shmpar::core::Error as CoreError;
use shmpar::core::segment::{self, Location};
use shmpar::{Cause, Error, Pool, PoolHealth, Segment, SegmentOptions, SharedArray, Start};

use crate::Args;
use crate::common::{Tally, describe_status, getpid, prefix, segments_of, wait_child};

type Check = Result<String, String>;

fn exe() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/proc/self/exe".into())
}

/// Runs a helper command; returns (wait status or None on timeout, stdout, stderr).
fn run_helper(mut cmd: Command, limit: Duration) -> Result<(Option<i32>, String, String), String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    let status = wait_child(child.id() as i32, limit);
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    Ok((status, out, err))
}

/// The line a helper prints first, before it does anything that can fail.
fn started_line(name: &str) -> String {
    format!("helper={name} started")
}

/// Says that the helper runs: the wrapper (if any) got as far as it.
fn announce_start(name: &str) {
    use std::io::Write;
    println!("{}", started_line(name));
    let _ = std::io::stdout().flush();
}

/// Whether the helper runs under a wrapper (`unshare`, `setpriv`) that
/// may be unable to run it here: only then is a helper that never started
/// a skip rather than a failure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wrapped {
    Yes,
    No,
}

/// What a helper case reported: its `case=` line decides. `None` is a
/// skip: the wrapper could not start the helper here (no
/// `helper=NAME started` line). A helper that started and then printed no
/// `case=` line (it panicked, or exited early) failed.
fn judge(
    name: &str,
    wrapped: Wrapped,
    status: Option<i32>,
    out: &str,
    err: &str,
) -> Option<Result<String, String>> {
    let Some(status) = status else {
        return Some(Err(format!("HANG: case {name} ran past its time limit")));
    };
    let tail = || err.lines().rev().take(5).collect::<Vec<_>>();
    if !out.lines().any(|l| l == started_line(name)) {
        return match wrapped {
            Wrapped::Yes => None,
            Wrapped::No => Some(Err(format!(
                "the helper for case {name} never started ({}); stderr: {:?}",
                describe_status(status),
                tail()
            ))),
        };
    }
    if libc::WIFSIGNALED(status) {
        return Some(Err(format!(
            "case {name} died by {}; stderr: {err}",
            describe_status(status)
        )));
    }
    let line = out.lines().find(|l| l.starts_with("case="));
    match line {
        Some(l) if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 && l.contains(" ok") => {
            Some(Ok(l.to_owned()))
        }
        Some(l) => Some(Err(format!("{l}; {}", describe_status(status)))),
        None => Some(Err(format!(
            "case {name} started but reported nothing ({}); stderr: {:?}",
            describe_status(status),
            tail()
        ))),
    }
}

/// Issue 6.4: every limit gives a clear, typed error; never SIGBUS; never
/// a partial segment left behind; the pool works again once the limit lifts.
pub fn exhaustion(_args: &Args) -> Tally {
    let mut tally = Tally::new("exhaustion");
    let exe = exe();
    let mut skipped = Vec::new();
    for case in ["shm-small", "nofile", "nproc", "as"] {
        let cmd = match case {
            "shm-small" => {
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "sh", "-c"])
                    .arg("mount -t tmpfs -o size=1m tmpfs /dev/shm && exec \"$0\" exhaust-case shm-small")
                    .arg(&exe);
                c
            }
            "nproc" => {
                let mut c = Command::new("setpriv");
                c.args([
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    &exe,
                    "exhaust-case",
                    "nproc",
                ]);
                c
            }
            _ => {
                let mut c = Command::new(&exe);
                c.args(["exhaust-case", case]);
                c
            }
        };
        let wrapped = if matches!(case, "shm-small" | "nproc") {
            Wrapped::Yes
        } else {
            Wrapped::No
        };
        let outcome = run_helper(cmd, Duration::from_secs(60)).and_then(|(status, out, err)| {
            match judge(case, wrapped, status, &out, &err) {
                Some(r) => r.map(|line| println!("{line}")),
                None => {
                    skipped.push(format!(
                        "{case}({})",
                        err.lines().next().unwrap_or("no output").replace(' ', "_")
                    ));
                    Ok(())
                }
            }
        });
        let outcome = outcome.and_then(|()| tally.after_trial(&prefix("exhaust")));
        tally.trial(case, outcome);
    }
    if !skipped.is_empty() {
        tally.extra("skipped", skipped.join(","));
    }
    tally
}

fn opts(prefix: &str, s: &str) -> SegmentOptions {
    SegmentOptions::new().name(&format!("{prefix}{s}"))
}

fn exists(name: &str) -> bool {
    std::path::Path::new("/dev/shm").join(name).exists()
}

fn ours(prefix: &str) -> Vec<String> {
    segments_of(prefix, getpid())
}

fn small_job(pool: &Pool, a: &mut SharedArray<u32, Ix1>) -> Result<(), String> {
    pool.for_each_chunk(a, |mut c| c.mapv_inplace(|x| x + 1))
        .map_err(|e| format!("job: {e}"))
}

/// /dev/shm of 1 MiB: creating past it is `NoSpace`, nothing half-made stays.
fn case_shm_small(prefix: &str) -> Check {
    let free = {
        // SAFETY: an all-zero statvfs is a valid out-buffer.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a NUL-terminated path and a valid out-pointer.
        unsafe { libc::statvfs(c"/dev/shm".as_ptr(), &mut st) };
        st.f_blocks as u64 * st.f_frsize as u64
    };
    if free > 2 << 20 {
        return Err(format!("/dev/shm is {free} bytes: not the small private tmpfs"));
    }
    match SharedArray::<f64, Ix1>::create_with(&opts(prefix, "huge"), 1 << 20) {
        Err(CoreError::NoSpace { requested, .. }) if requested > 1 << 20 => {}
        other => return Err(format!("an 8 MiB array in 1 MiB gave {:?}", other.map(|_| ()))),
    }
    if exists(&format!("{prefix}huge")) {
        return Err("the failed array left its name".into());
    }
    let pool = Pool::builder()
        .workers(2)
        .build()
        .map_err(|e| format!("pool in 1 MiB: {e}"))?;
    let mut arrays = Vec::new();
    let mut first_error = None;
    for i in 0..100 {
        match SharedArray::<u32, Ix1>::create_with(&opts(prefix, &format!("fill{i}")), 16_384) {
            Ok(a) => arrays.push(a),
            Err(CoreError::NoSpace { .. }) => {
                if exists(&format!("{prefix}fill{i}")) {
                    return Err(format!("array {i}, refused for space, left its name"));
                }
                first_error = Some(i);
                break;
            }
            Err(e) => return Err(format!("array {i}: expected NoSpace, got {e}")),
        }
    }
    let Some(full_at) = first_error else {
        return Err("100 arrays of 64 KiB fit in 1 MiB".into());
    };
    let message = match Pool::builder().workers(2).build() {
        Err(Error::Core(e @ CoreError::NoSpace { .. })) => e.to_string(),
        other => return Err(format!("a pool in a full /dev/shm gave {:?}", other.map(|_| ()))),
    };
    for a in &mut arrays {
        small_job(&pool, a)?;
    }
    if arrays.iter().any(|a| a.view().iter().any(|&x| x != 1)) {
        return Err("jobs in a full /dev/shm gave wrong values".into());
    }
    drop(arrays);
    drop(pool);
    let left = ours(prefix);
    if !left.is_empty() {
        return Err(format!("left {left:?}"));
    }
    Ok(format!("full_after={full_at}_arrays message={:?}", message))
}

fn set_limit(resource: libc::__rlimit_resource_t, soft: u64) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer and in-pointer.
    unsafe {
        libc::getrlimit(resource, &mut old);
        let new = libc::rlimit {
            rlim_cur: soft,
            rlim_max: old.rlim_max,
        };
        libc::setrlimit(resource, &new);
    }
    old
}

fn restore_limit(resource: libc::__rlimit_resource_t, old: libc::rlimit) {
    // SAFETY: a valid in-pointer.
    unsafe { libc::setrlimit(resource, &old) };
}

/// The lowest free descriptor number: the next open returns it, so a
/// limit of this value leaves no descriptor free.
fn lowest_free_fd() -> u64 {
    // SAFETY: dup of stdin and close of the new descriptor.
    unsafe {
        let fd = libc::dup(0);
        libc::close(fd);
        fd.max(0) as u64
    }
}

/// Whether the OS error `errno` is in the chain of `err`'s sources.
fn caused_by(err: &(dyn std::error::Error + 'static), errno: i32) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            == Some(errno)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// Descriptors open in this process (reading the list takes one more,
/// the same one every time).
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(usize::MAX)
}

/// Nothing of a refused start may stay: no worker, no segment.
fn nothing_started(prefix: &str, what: &str) -> Result<(), String> {
    crate::common::reap_exited();
    let children = crate::common::children_of(getpid());
    if !children.is_empty() {
        return Err(format!("{what} left processes {children:?}"));
    }
    let left = ours(prefix);
    if !left.is_empty() {
        return Err(format!("{what} left {left:?}"));
    }
    Ok(())
}

/// RLIMIT_NOFILE: with no descriptor free, creating an array fails with
/// the OS's EMFILE and leaves no name; a fork pool refuses (it cannot read
/// its thread count, which counts as unsafe: `ForkWithThreads { threads:
/// None }`, or EMFILE itself); a spawn pool fails with EMFILE; none leaves
/// a process or a segment. With one descriptor free, a pool and 100 arrays
/// work, compute the right values, and leak no descriptor.
fn case_nofile(prefix: &str) -> Check {
    let old = set_limit(libc::RLIMIT_NOFILE, lowest_free_fd());
    let array = SharedArray::<u32, Ix1>::create_with(&opts(prefix, "nofd"), 100).map(|_| ());
    let fork_pool = Pool::builder().workers(2).build().map(|_| ());
    let spawn_pool = Pool::builder().workers(2).start(Start::Spawn).build().map(|_| ());
    restore_limit(libc::RLIMIT_NOFILE, old);
    let mut msgs = Vec::new();
    match array {
        Err(e @ CoreError::Io { .. }) if caused_by(&e, libc::EMFILE) => msgs.push(e.to_string()),
        Err(e) => {
            return Err(format!(
                "an array with no descriptor free: expected EMFILE, got {e:?}"
            ));
        }
        Ok(()) => return Err("an array was created with no descriptor free".into()),
    }
    if exists(&format!("{prefix}nofd")) {
        return Err("the refused array left its name".into());
    }
    match fork_pool {
        Err(e @ Error::ForkWithThreads { threads: None }) => msgs.push(e.to_string()),
        Err(e) if caused_by(&e, libc::EMFILE) => msgs.push(e.to_string()),
        Err(e) => {
            return Err(format!(
                "a fork pool with no descriptor free: expected ForkWithThreads {{ threads: None }} or EMFILE, got {e:?}"
            ));
        }
        Ok(()) => return Err("a fork pool started with no descriptor free".into()),
    }
    nothing_started(prefix, "the refused fork pool")?;
    match spawn_pool {
        Err(e) if caused_by(&e, libc::EMFILE) => msgs.push(e.to_string()),
        Err(e) => {
            return Err(format!(
                "a spawn pool with no descriptor free: expected EMFILE, got {e:?}"
            ));
        }
        Ok(()) => return Err("a spawn pool started with no descriptor free".into()),
    }
    nothing_started(prefix, "the refused spawn pool")?;
    // One descriptor free: everything must still work, again and again.
    let before = open_descriptors();
    let old = set_limit(libc::RLIMIT_NOFILE, lowest_free_fd() + 1);
    let result = (|| -> Result<(), String> {
        let pool = Pool::builder()
            .workers(2)
            .build()
            .map_err(|e| format!("pool with one fd free: {e}"))?;
        for i in 0..100 {
            let mut a = SharedArray::<u32, Ix1>::create_with(&opts(prefix, &format!("fd{i}")), 1000)
                .map_err(|e| format!("array {i} with one fd free: {e}"))?;
            small_job(&pool, &mut a)?;
            if a.view().iter().any(|&x| x != 1) {
                return Err(format!(
                    "the job on array {i} with one fd free computed wrong values"
                ));
            }
        }
        Ok(())
    })();
    restore_limit(libc::RLIMIT_NOFILE, old);
    result?;
    let after = open_descriptors();
    if after != before {
        return Err(format!(
            "{before} descriptors open before a pool and 100 arrays, {after} after they are gone"
        ));
    }
    nothing_started(prefix, "the pool with one descriptor free")?;
    Ok(format!("messages={msgs:?}"))
}

fn processes_of_uid(uid: u32) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_str().is_some_and(|n| n.parse::<u32>().is_ok()))
                .filter(|e| e.metadata().is_ok_and(|m| m.uid() == uid))
                .count() as u64
        })
        .unwrap_or(0)
}

/// RLIMIT_NPROC (as an unprivileged user: root ignores it): a pool that
/// cannot start all workers fails cleanly; one that cannot replace a dead
/// worker says it is broken.
fn case_nproc(prefix: &str) -> Check {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    if uid == 0 {
        return Err("runs as root, which RLIMIT_NPROC does not limit".into());
    }
    let base = processes_of_uid(uid);
    let old = set_limit(libc::RLIMIT_NPROC, base + 1);
    let refused = Pool::builder().workers(3).build();
    let msg = match refused {
        Err(e @ Error::Start(_)) => {
            e.to_string()
                + ": "
                + &std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
        }
        other => {
            restore_limit(libc::RLIMIT_NPROC, old);
            return Err(format!("3 workers with room for 1 gave {:?}", other.map(|_| ())));
        }
    };
    crate::common::reap_exited();
    if !crate::common::children_of(getpid()).is_empty() {
        return Err("a refused pool left workers running".into());
    }
    restore_limit(libc::RLIMIT_NPROC, old);
    // Room for the pool exactly: a dead worker cannot be replaced.
    let pool = Pool::builder()
        .workers(2)
        .build()
        .map_err(|e| format!("pool of 2: {e}"))?;
    let mut a =
        SharedArray::<u32, Ix1>::create_with(&opts(prefix, "nproc"), 1000).map_err(|e| e.to_string())?;
    small_job(&pool, &mut a)?;
    let old = set_limit(libc::RLIMIT_NPROC, processes_of_uid(uid) - 1);
    let failed = pool.for_each_chunk_with(&mut a, (), |ctx, _c, _: &()| {
        if ctx.rank() == 1 {
            std::process::abort();
        }
    });
    let next = small_job(&pool, &mut a);
    restore_limit(libc::RLIMIT_NPROC, old);
    match failed {
        Err(Error::WorkerFailed {
            rank: 1,
            cause: Cause::Signaled(libc::SIGABRT),
            health: PoolHealth::Broken,
            ..
        }) => {}
        other => return Err(format!("a worker that cannot be replaced gave {:?}", other)),
    }
    match next {
        Err(e) if e.contains("broken") => {}
        other => return Err(format!("the job after a broken pool gave {other:?}")),
    }
    drop(pool);
    drop(a);
    crate::common::reap_exited();
    let left = ours(prefix);
    if !left.is_empty() {
        return Err(format!("left {left:?}"));
    }
    Ok(format!("message={msg:?}"))
}

fn vm_size() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmSize:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// RLIMIT_AS: an array larger than the address space left fails with the
/// OS's ENOMEM (its mapping cannot be made), leaves no name, and smaller
/// work goes on under the same limit with the right values.
fn case_as(prefix: &str) -> Check {
    let old = set_limit(libc::RLIMIT_AS, vm_size() + (256 << 20));
    let result = (|| -> Result<String, String> {
        let msg = match SharedArray::<f64, Ix1>::create_with(&opts(prefix, "big"), 64 << 20) {
            Err(e @ CoreError::Io { .. }) if caused_by(&e, libc::ENOMEM) => format!(
                "{e}: {}",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            ),
            Err(e) => {
                return Err(format!(
                    "a 512 MiB array in 256 MiB of address space: expected ENOMEM, got {e:?}"
                ));
            }
            Ok(_) => return Err("a 512 MiB array fit in 256 MiB of address space".into()),
        };
        if exists(&format!("{prefix}big")) {
            return Err("the refused array left its name".into());
        }
        let pool = Pool::builder()
            .workers(2)
            .build()
            .map_err(|e| format!("pool under RLIMIT_AS: {e}"))?;
        let mut a = SharedArray::<u32, Ix1>::create_with(&opts(prefix, "small"), 1 << 20)
            .map_err(|e| e.to_string())?;
        small_job(&pool, &mut a)?;
        if a.view().iter().any(|&x| x != 1) {
            return Err("the job under RLIMIT_AS computed wrong values".into());
        }
        Ok(msg)
    })();
    restore_limit(libc::RLIMIT_AS, old);
    let msg = result?;
    nothing_started(prefix, "the case")?;
    Ok(format!("message={msg:?}"))
}

/// Helper process: one exhaustion case.
pub fn exhaust_case(args: &Args) -> ! {
    let case = args.positional(0).to_owned();
    announce_start(&case);
    let prefix = prefix(&format!("exhaust{}", case.replace('-', "")));
    let result = match case.as_str() {
        "shm-small" => case_shm_small(&prefix),
        "nofile" => case_nofile(&prefix),
        "nproc" => case_nproc(&prefix),
        "as" => case_as(&prefix),
        _ => Err("unknown case".into()),
    };
    match result {
        Ok(detail) => {
            println!("case={case} ok {detail}");
            std::process::exit(0)
        }
        Err(msg) => {
            println!("case={case} FAIL {msg}");
            std::process::exit(1)
        }
    }
}

/// Issue 6.8: another unprivileged user can neither open, peek at, take
/// over nor remove our segment; nor can we take over an existing name.
pub fn permissions(_args: &Args) -> Tally {
    let mut tally = Tally::new("permissions");
    let prefix = prefix("permissions");
    let name = format!("{prefix}secret");
    let outcome = (|| -> Result<(), String> {
        let mut a = SharedArray::<u64, Ix1>::create_with(&SegmentOptions::new().name(&name), 100)
            .map_err(|e| e.to_string())?;
        a.view_mut().fill(42);
        let identity = a.segment().identity();
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(format!("/dev/shm/{name}"))
                .map_err(|e| e.to_string())?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(format!("segment mode {mode:o} lets others in"));
            }
        }
        // Same user, same name: refused, the original untouched.
        match SharedArray::<u64, Ix1>::create_with(&SegmentOptions::new().name(&name), 10) {
            Err(CoreError::AlreadyExists { .. }) => {}
            other => {
                return Err(format!(
                    "re-creating an existing name gave {:?}",
                    other.map(|_| ())
                ));
            }
        }
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            &exe(),
            "perm-probe",
            "--name",
            &name,
        ]);
        let (status, out, err) = run_helper(cmd, Duration::from_secs(30))?;
        match judge("perm-probe", Wrapped::Yes, status, &out, &err) {
            Some(r) => println!("{}", r?),
            None => {
                tally.extra("skipped", "setpriv");
                return Ok(());
            }
        }
        // The name still leads to our object: its (device, inode) is the
        // one we created. (Attaching it again here is no way to check:
        // a process holds one handle per segment.)
        let on_disk = {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(format!("/dev/shm/{name}"))
                .map_err(|e| format!("the segment's name: {e}"))?;
            (m.dev(), m.ino())
        };
        if a.segment().identity() != identity || on_disk != identity || a.view().iter().any(|&x| x != 42) {
            return Err("the segment changed after the other user's attempts".into());
        }
        // One handle per segment per process: a second attach in the
        // owner's process is refused, typed, and the first handle stays.
        match Segment::open(&name) {
            Err(CoreError::AlreadyOpen { name: refused }) if refused.contains(&name) => {}
            other => {
                return Err(format!(
                    "a second handle of a segment this process holds gave {:?}",
                    other.map(|s| s.identity())
                ));
            }
        }
        match SharedArray::<u64, Ix1>::attach(&name) {
            Err(CoreError::AlreadyOpen { .. }) => {}
            other => {
                return Err(format!(
                    "a second attach of a held array gave {:?}",
                    other.map(|_| ())
                ));
            }
        }
        if a.view().iter().any(|&x| x != 42) {
            return Err("the refused second handle changed the segment".into());
        }
        Ok(())
    })();
    let outcome = outcome.and_then(|()| tally.after_trial(&prefix));
    tally.trial("another user", outcome);
    tally
}

/// Helper process, run as another user: every way in must be refused.
pub fn perm_probe(args: &Args) -> ! {
    announce_start("perm-probe");
    let name = args.get("name").unwrap_or_default().to_owned();
    let mut failures = Vec::new();
    let denied = |r: Result<(), CoreError>| matches!(r, Err(CoreError::PermissionDenied { .. }));
    if !denied(Segment::open(&name).map(|_| ())) {
        failures.push("Segment::open was not denied");
    }
    if !denied(segment::peek(&Location::Shm(name.clone())).map(|_| ())) {
        failures.push("peek was not denied");
    }
    if !denied(SharedArray::<u64, Ix1>::attach(&name).map(|_| ())) {
        failures.push("attach was not denied");
    }
    match SharedArray::<u64, Ix1>::create_with(&SegmentOptions::new().name(&name), 10) {
        Err(CoreError::AlreadyExists { .. } | CoreError::PermissionDenied { .. }) => {}
        _ => failures.push("create over the other user's name was not refused"),
    }
    if std::fs::remove_file(format!("/dev/shm/{name}")).is_ok() {
        failures.push("the other user removed the segment");
    }
    shmpar::gc::collect(false);
    if !exists(&name) {
        failures.push("gc as the other user removed a live segment");
    }
    if failures.is_empty() {
        println!("case=perm-probe ok");
        std::process::exit(0)
    }
    println!("case=perm-probe FAIL {failures:?}");
    std::process::exit(1)
}
