//! Every system call of `shmpar-core` but the futex (which lives in
//! `sync/futex.rs` beside its loom emulation), as memmap2 keeps its own in
//! `mod os`: shared-memory objects, files and directories, open-file-
//! description locks, mappings, space reservation, randomness, signals and
//! process facts.
//!
//! Three helpers are public, so that the CLI, the runtime and the benches
//! do not each parse `/proc` or call `statvfs` again:
//!
//! - [`free_bytes`]: bytes an unprivileged writer may still use on a file
//!   system (`statvfs`);
//! - [`ProcStat`]: the fields of `/proc/PID/stat` shmpar needs, parsed once;
//! - [`thread_count`]: how many threads this process runs, or `None` when
//!   that cannot be read (a caller must then assume "not safe to fork").
//!
//! Everything else here is crate-private and returns `io::Error`; callers
//! turn it into typed [`Error`](crate::Error)s that name the segment.

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;

/// Permission bits of every segment and file we create: owner only.
const MODE: libc::mode_t = 0o600;

/// Bytes available to an unprivileged writer on the file system that holds
/// `path` (`statvfs`: free blocks for non-root times the fragment size).
///
/// # Errors
/// The OS error of `statvfs` (`ENOENT` for a missing path, ...), or
/// `EINVAL` for a path with a NUL byte inside.
///
/// # Examples
/// ```
/// let free = shmpar_core::os::free_bytes(std::path::Path::new("/tmp"))?;
/// println!("{free} bytes free in /tmp");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is NUL-terminated and `st` is valid for writes of one `statvfs`.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs succeeded, so it initialized `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// The fields of `/proc/PID/stat` that shmpar uses, parsed once.
///
/// Field numbers are those of `proc(5)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcStat {
    /// Minor page faults so far (field 10).
    pub minor_faults: u64,
    /// Major page faults so far (field 12).
    pub major_faults: u64,
    /// Threads in the process (field 20).
    pub threads: u64,
    /// Start time in clock ticks since boot (field 22): with the pid, it
    /// tells a process from a later one that reused its pid.
    pub start_time: u64,
}

impl ProcStat {
    /// Parses one `/proc/PID/stat` line.
    ///
    /// The command name (field 2) is in parentheses and may itself hold
    /// spaces and parentheses, so fields are counted from the *last* `)`.
    /// Returns `None` for a line that is cut short or not numeric where
    /// numbers belong.
    ///
    /// # Examples
    /// ```
    /// use shmpar_core::os::ProcStat;
    /// let line = "42 (a) b) S 1 42 42 0 -1 4194560 130 0 2 0 5 1 0 0 20 0 3 0 98765 0 0";
    /// let stat = ProcStat::parse(line).unwrap();
    /// assert_eq!((stat.minor_faults, stat.major_faults), (130, 2));
    /// assert_eq!((stat.threads, stat.start_time), (3, 98765));
    /// ```
    pub fn parse(line: &str) -> Option<ProcStat> {
        let rest = &line[line.rfind(')')? + 1..];
        // After the `)` come fields 3, 4, ...: field N is at index N - 3.
        let fields: Vec<&str> = rest.split_ascii_whitespace().take(20).collect();
        let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
        Some(ProcStat {
            minor_faults: field(10)?,
            major_faults: field(12)?,
            threads: field(20)?,
            start_time: field(22)?,
        })
    }

    /// Reads and parses `/proc/PID/stat`.
    ///
    /// # Errors
    /// [`io::ErrorKind::NotFound`] when no process `pid` exists (or `pid` is
    /// not positive); [`io::ErrorKind::InvalidData`] when the line does not
    /// parse; any other error when `/proc` cannot be read, in which case the
    /// caller cannot tell whether the process lives and must assume it does.
    pub fn of(pid: i32) -> io::Result<ProcStat> {
        if pid <= 0 {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        Self::read(&format!("/proc/{pid}/stat"))
    }

    /// Reads and parses `/proc/self/stat`, the calling process's line.
    ///
    /// # Errors
    /// As [`of`](Self::of).
    pub fn current() -> io::Result<ProcStat> {
        Self::read("/proc/self/stat")
    }

    fn read(path: &str) -> io::Result<ProcStat> {
        let line = std::fs::read_to_string(path)?;
        Self::parse(&line).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{path} does not parse: {line:?}"),
            )
        })
    }
}

/// How many threads the calling process runs, from `/proc/self/stat`;
/// `None` when that cannot be read. A caller deciding whether `fork` is
/// safe must treat `None` as "not safe": only a single-threaded process may
/// fork and then run arbitrary code in the child.
pub fn thread_count() -> Option<usize> {
    ProcStat::current()
        .ok()
        .and_then(|stat| usize::try_from(stat.threads).ok())
        .filter(|&n| n > 0)
}

/// Flags of every open of an object that may be someone else's (CERT
/// POS35-C): never follow a symbolic link in the last component, never
/// block (a FIFO planted in `/dev/shm` must not hang `shmpar ls`, `gc` or a
/// pool start), never leak into an `exec`ed program. The caller then
/// `fstat`s the descriptor and refuses anything but a regular file.
const HOSTILE_OPEN: libc::c_int = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;

/// Opens `path` read-only with [`HOSTILE_OPEN`]'s flags.
pub(crate) fn open_readonly(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(HOSTILE_OPEN)
        .open(path)
}

fn c_name(name: &OsStr) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn c_path(path: &Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Opens the directory `path` (`O_DIRECTORY`, read-only, close-on-exec),
/// for operations relative to it that cannot be redirected by a later
/// change of the path. With `nofollow`, a symbolic link as the last
/// component is refused (`ELOOP`).
pub(crate) fn open_dir(path: &Path, nofollow: bool) -> io::Result<OwnedFd> {
    let c = c_path(path)?;
    let flags =
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | if nofollow { libc::O_NOFOLLOW } else { 0 };
    // SAFETY: `c` is NUL-terminated; the returned fd, if any, is fresh.
    owned_fd(unsafe { libc::open(c.as_ptr(), flags) })
}

/// Opens `name` inside the directory `dir` with [`HOSTILE_OPEN`]'s flags,
/// read-only or read-write.
pub(crate) fn open_at(dir: &impl AsRawFd, name: &OsStr, write: bool) -> io::Result<File> {
    let c = c_name(name)?;
    let access = if write { libc::O_RDWR } else { libc::O_RDONLY };
    // SAFETY: `c` is NUL-terminated and `dir` a descriptor we hold; the
    // returned fd, if any, is fresh.
    owned_fd(unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), access | HOSTILE_OPEN) }).map(File::from)
}

/// Creates the regular file `name` inside `dir`, owner-only; fails with
/// `EEXIST` if the name exists in any form (a symbolic link included).
pub(crate) fn create_at(dir: &impl AsRawFd, name: &OsStr) -> io::Result<File> {
    let c = c_name(name)?;
    let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | HOSTILE_OPEN;
    // SAFETY: as in `open_at`; the mode is passed as the variadic argument
    // `open` expects with O_CREAT.
    owned_fd(unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, MODE as libc::c_uint) })
        .map(File::from)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`: what the name in `dir` is
/// now, without following it.
pub(crate) fn stat_at(dir: &impl AsRawFd, name: &OsStr) -> io::Result<ObjectStat> {
    let c = c_name(name)?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `c` is NUL-terminated, `st` is valid for writes of one `stat`.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatat succeeded, so it initialized `st`.
    Ok(ObjectStat::from(unsafe { st.assume_init() }))
}

/// `lstat(path)`: what `path` names now, without following a symbolic link
/// in its last component.
pub(crate) fn stat_path(path: &Path) -> io::Result<ObjectStat> {
    let c = c_path(path)?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `c` is NUL-terminated, `st` is valid for writes of one `stat`.
    if unsafe { libc::lstat(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: lstat succeeded, so it initialized `st`.
    Ok(ObjectStat::from(unsafe { st.assume_init() }))
}

/// Renames `from` to `to` unless `to` exists (`EEXIST` then): one
/// `renameat2(RENAME_NOREPLACE)`, or, where the file system or kernel lacks
/// it, `link` then `unlink` (also atomic about the new name; the object
/// has both names for a moment).
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let (f, t) = (c_path(from)?, c_path(to)?);
    // SAFETY: both strings are NUL-terminated and live for the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if !matches!(err.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
        return Err(err);
    }
    // SAFETY: as above.
    if unsafe { libc::link(f.as_ptr(), t.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    unsafe { libc::unlink(f.as_ptr()) };
    Ok(())
}

/// Removes the name `name` from the directory `dir` (a file, not a directory).
pub(crate) fn unlink_at(dir: &impl AsRawFd, name: &OsStr) -> io::Result<()> {
    let c = c_name(name)?;
    // SAFETY: `c` is NUL-terminated and `dir` a descriptor we hold.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// An open-file-description lock request (`struct flock` with `l_pid` 0,
/// as `F_OFD_*` require) for `len` bytes from `start` (`len` 0: to the end
/// of the file and beyond).
fn ofd_lock(kind: libc::c_int, start: u64, len: u64) -> io::Result<libc::flock> {
    let overflow = || io::Error::from_raw_os_error(libc::EOVERFLOW);
    // SAFETY: `flock` is plain integers, for which zero is valid.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = libc::off_t::try_from(start).map_err(|_| overflow())?;
    lock.l_len = libc::off_t::try_from(len).map_err(|_| overflow())?;
    Ok(lock)
}

/// `fcntl(fd, cmd, lock)`, retried on `EINTR`.
fn fcntl_lock(fd: &impl AsRawFd, cmd: libc::c_int, lock: &mut libc::flock) -> io::Result<()> {
    loop {
        // SAFETY: `lock` is a valid, exclusively borrowed `flock` for the
        // duration of the call, as the OFD lock commands require.
        if unsafe { libc::fcntl(fd.as_raw_fd(), cmd, lock as *mut libc::flock) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Whether a lock request failed because another lock conflicts.
fn is_conflict(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EACCES))
}

/// Takes a shared (read) open-file-description lock on the byte at
/// `offset`, without waiting: `Ok(false)` when a write lock conflicts.
/// The lock belongs to the open file description, not to the process:
/// it lasts until the description's last reference goes (the last
/// descriptor *and* the last mapping of it, in this process or a forked
/// child), so closing one descriptor does not drop it.
pub(crate) fn try_lock_shared(fd: &impl AsRawFd, offset: u64) -> io::Result<bool> {
    let mut lock = ofd_lock(libc::F_RDLCK, offset, 1)?;
    match fcntl_lock(fd, libc::F_OFD_SETLK, &mut lock) {
        Ok(()) => Ok(true),
        Err(e) if is_conflict(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Takes an exclusive (write) open-file-description lock on the whole
/// file, without waiting: `Ok(false)` when any other lock is held. `fd`
/// must be open for writing.
pub(crate) fn try_lock_exclusive(fd: &impl AsRawFd) -> io::Result<bool> {
    let mut lock = ofd_lock(libc::F_WRLCK, 0, 0)?;
    match fcntl_lock(fd, libc::F_OFD_SETLK, &mut lock) {
        Ok(()) => Ok(true),
        Err(e) if is_conflict(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether any process (through another open file description) holds a
/// lock of any kind anywhere in the file: `F_OFD_GETLK` with a write-lock
/// probe over the whole file. Works on a read-only descriptor.
pub(crate) fn any_lock_held(fd: &impl AsRawFd) -> io::Result<bool> {
    let mut lock = ofd_lock(libc::F_WRLCK, 0, 0)?;
    fcntl_lock(fd, libc::F_OFD_GETLK, &mut lock)?;
    Ok(lock.l_type != libc::F_UNLCK as libc::c_short)
}

/// Creates a new shared-memory object; fails with `EEXIST` if the name exists.
pub(crate) fn shm_create(name: &CStr) -> io::Result<File> {
    // SAFETY: `name` is a valid NUL-terminated string; the returned fd, if
    // any, is fresh and owned by nobody else.
    let fd = unsafe {
        libc::shm_open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            MODE,
        )
    };
    owned_fd(fd).map(File::from)
}

/// Opens an existing shared-memory object for reading and writing, without
/// blocking (glibc adds `O_NOFOLLOW` itself).
pub(crate) fn shm_open_existing(name: &CStr) -> io::Result<File> {
    // SAFETY: as in `shm_create`.
    let fd = unsafe {
        libc::shm_open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
            0,
        )
    };
    owned_fd(fd).map(File::from)
}

/// `shm_unlink` for a signal handler: async-signal-safe, no allocation,
/// errors ignored.
///
/// # Safety
/// - `name` must point to a NUL-terminated string that stays valid and
///   unchanged for the duration of the call.
pub(crate) unsafe fn shm_unlink_raw(name: *const u8) {
    // SAFETY: the caller guarantees a valid NUL-terminated string.
    unsafe { libc::shm_unlink(name.cast::<libc::c_char>()) };
}

/// Removes `name` from the directory at the absolute path `dir` if it
/// still names the object `identity`: opens the directory (not following
/// a symbolic link in its last component), `fstatat` without following,
/// `unlinkat`, `close`. For signal handlers: async-signal-safe, allocates
/// nothing.
///
/// # Safety
/// `dir` and `name` point to NUL-terminated strings.
pub(crate) unsafe fn unlink_in_dir_if_raw(dir: *const u8, name: *const u8, identity: (u64, u64)) {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: both strings are NUL-terminated (the caller); `st` is valid
    // for writes of one `stat`; open, fstatat, unlinkat and close are
    // async-signal-safe.
    unsafe {
        let fd = libc::open(dir.cast::<libc::c_char>(), flags);
        if fd < 0 {
            return;
        }
        let c = name.cast::<libc::c_char>();
        let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
        if libc::fstatat(fd, c, st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) == 0 {
            let st = st.assume_init();
            #[allow(clippy::unnecessary_cast)] // the field types differ between targets
            let found = (st.st_dev as u64, st.st_ino as u64);
            if found == identity {
                libc::unlinkat(fd, c, 0);
            }
        }
        libc::close(fd);
    }
}

fn owned_fd(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by a successful open call, so it is a
    // valid descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens an existing file for reading and writing with [`HOSTILE_OPEN`]'s
/// flags (so a FIFO given as a segment's path is refused by the `stat`
/// check, not waited on, and a symbolic link is refused with `ELOOP`).
pub(crate) fn file_open(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(HOSTILE_OPEN)
        .open(path)
}

/// Reserves `len` bytes of backing store, so later page faults cannot fail
/// with SIGBUS for lack of space.
pub(crate) fn reserve(fd: &impl AsRawFd, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    loop {
        // SAFETY: plain system call on a descriptor we own.
        let rc = unsafe { libc::posix_fallocate(fd.as_raw_fd(), 0, len) };
        match rc {
            0 => return Ok(()),
            libc::EINTR => continue,
            errno => return Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

/// Sets the size of the object behind `fd` to `len` bytes without
/// allocating anything (`ftruncate`): for a segment whose pages are
/// allocated by populating a mapping instead (see `segment/huge.rs`).
pub(crate) fn truncate(fd: &impl AsRawFd, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    loop {
        // SAFETY: plain system call on a descriptor we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Whether a failed reservation means "the file system is full".
pub(crate) fn is_out_of_space(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOSPC | libc::ENOMEM | libc::EDQUOT | libc::EFBIG)
    )
}

/// `statfs`'s `f_type` of a tmpfs (`/dev/shm` and every other tmpfs).
pub(crate) const TMPFS_MAGIC: u32 = 0x0102_1994;
/// `statfs`'s `f_type` of a hugetlbfs.
pub(crate) const HUGETLBFS_MAGIC: u32 = 0x9584_58f6;

/// What `statfs` says about the file system that holds a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FsStat {
    /// The file system's magic number ([`TMPFS_MAGIC`], [`HUGETLBFS_MAGIC`], ...).
    pub(crate) magic: u32,
    /// Its block size: the huge page size on a hugetlbfs.
    pub(crate) block_size: u64,
    /// Its size in blocks; 0 when it has no limit (a hugetlbfs mounted
    /// without `size=`).
    pub(crate) blocks: u64,
    /// Blocks still free to an unprivileged writer.
    pub(crate) available: u64,
}

/// `statfs(path)`: the type and block size of the file system holding `path`.
pub(crate) fn statfs(path: &Path) -> io::Result<FsStat> {
    let c = c_path(path)?;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `c` is NUL-terminated and `st` is valid for writes of one `statfs`.
    if unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statfs succeeded, so it initialized `st`.
    let st = unsafe { st.assume_init() };
    // The field types differ between targets; the magic is 32 bits wide
    // wherever it is stored in a wider word.
    #[allow(clippy::unnecessary_cast)]
    Ok(FsStat {
        magic: st.f_type as u64 as u32,
        block_size: st.f_bsize as u64,
        blocks: st.f_blocks as u64,
        available: st.f_bavail as u64,
    })
}

/// The device number (`st_dev`, as `(major, minor)`) of the file system
/// holding `path`, following symbolic links: what `/proc/self/mountinfo`
/// lists each mount under.
pub(crate) fn device_of(path: &Path) -> io::Result<(u32, u32)> {
    let c = c_path(path)?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `c` is NUL-terminated, `st` is valid for writes of one `stat`.
    if unsafe { libc::stat(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: stat succeeded, so it initialized `st`.
    let dev = unsafe { st.assume_init() }.st_dev;
    Ok((libc::major(dev), libc::minor(dev)))
}

/// Whether this process may create files in the directory `path`
/// (`faccessat(W_OK | X_OK, AT_EACCESS)`: with its effective ids).
pub(crate) fn may_create_in(path: &Path) -> bool {
    let Ok(c) = c_path(path) else {
        return false;
    };
    // SAFETY: `c` is NUL-terminated; faccessat only reads it.
    unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        ) == 0
    }
}

/// What `fstat` says about an open object.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ObjectStat {
    /// Size in bytes.
    pub(crate) size: u64,
    /// (device, inode): two descriptors with the same identity are one object.
    pub(crate) identity: (u64, u64),
    /// Whether it is a regular file (every shm object is).
    pub(crate) regular: bool,
    /// What kind of file it is, in words: "regular file", "FIFO", ...
    pub(crate) kind: &'static str,
}

impl From<libc::stat> for ObjectStat {
    fn from(st: libc::stat) -> ObjectStat {
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => "regular file",
            libc::S_IFIFO => "FIFO",
            libc::S_IFLNK => "symbolic link",
            libc::S_IFDIR => "directory",
            libc::S_IFCHR => "character device",
            libc::S_IFBLK => "block device",
            libc::S_IFSOCK => "socket",
            _ => "file of unknown type",
        };
        #[allow(clippy::unnecessary_cast)] // the field types differ between targets
        ObjectStat {
            size: st.st_size as u64,
            identity: (st.st_dev as u64, st.st_ino as u64),
            regular: st.st_mode & libc::S_IFMT == libc::S_IFREG,
            kind,
        }
    }
}

/// `fstat` of `fd`.
pub(crate) fn stat(fd: &impl AsRawFd) -> io::Result<ObjectStat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is valid for writes of one `stat`.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so it initialized `st`.
    Ok(ObjectStat::from(unsafe { st.assume_init() }))
}

/// A shared, read-write mapping of a whole object, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Mapping` is an address range; sending it to another thread
// moves no thread-bound state. Accesses to its bytes are governed by the
// types built on top of it.
unsafe impl Send for Mapping {}
// SAFETY: `&Mapping` only hands out the base pointer and length; every read
// or write through them is the business of the types built on top.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` from offset 0, shared and read-write.
    pub(crate) fn map(fd: &impl AsRawFd, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: we ask the kernel for a fresh mapping anywhere; no existing
        // memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        Ok(Mapping { ptr, len })
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Asks for transparent huge pages in the whole mapping
    /// (`MADV_HUGEPAGE`): on a tmpfs mounted `huge=advise`, the pages that
    /// faults allocate from then on are huge. It changes nothing that is
    /// already allocated, and nothing on a tmpfs mounted without `huge=`.
    pub(crate) fn advise_huge(&self) -> io::Result<()> {
        // SAFETY: the range is exactly our mapping; the advice changes how
        // future faults allocate, never the contents.
        let rc = unsafe { libc::madvise(self.ptr.as_ptr().cast(), self.len, libc::MADV_HUGEPAGE) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Populates the page tables of `[offset, offset + len)`, so the first
    /// touch of each page costs no fault: `write` allocates every page as
    /// a write would (`MADV_POPULATE_WRITE`); otherwise the pages are mapped
    /// as a read would (`MADV_POPULATE_READ`), which maps pages that exist
    /// many at a time (fault-around) and, on shared memory, leaves them
    /// writable — measured here 1.6× faster for a worker's first job over
    /// 400 MB. Best effort: kernels older than 5.14 lack both and this
    /// returns their error.
    pub(crate) fn populate(&self, offset: usize, len: usize, write: bool) -> io::Result<()> {
        const MADV_POPULATE_READ: libc::c_int = 22;
        const MADV_POPULATE_WRITE: libc::c_int = 23;
        let page = page_size();
        let start = offset / page * page;
        let end = offset.saturating_add(len).min(self.len);
        if end <= start {
            return Ok(());
        }
        // SAFETY: `[start, end)` lies inside our mapping and `start` is page
        // aligned; populating changes no contents.
        let rc = unsafe {
            libc::madvise(
                self.ptr.as_ptr().add(start).cast(),
                end - start,
                if write {
                    MADV_POPULATE_WRITE
                } else {
                    MADV_POPULATE_READ
                },
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping we created and still own;
        // every borrow of it is tied to a borrow of this `Mapping`, so none
        // outlives it.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// The system page size.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096)
}

/// Fills `buf` from the kernel's random source.
pub(crate) fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled rest of `buf`.
        let n = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        filled += n as usize;
    }
    Ok(())
}

/// The calling process's id. Async-signal-safe.
pub(crate) fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

/// A signal number.
pub(crate) type Signal = libc::c_int;

/// The signals on which a process that created segments removes them.
pub(crate) const CLEANUP_SIGNALS: [Signal; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// A signal handler as the kernel calls it.
pub(crate) type Handler = extern "C" fn(Signal);

fn handler_address(handler: Handler) -> libc::sighandler_t {
    handler as libc::sighandler_t
}

/// The current disposition of `signal`, or `None` if it cannot be read.
fn disposition(signal: Signal) -> Option<libc::sighandler_t> {
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only reads the current one into `old`,
    // which is valid for writes of one `sigaction`. Async-signal-safe.
    if unsafe { libc::sigaction(signal, std::ptr::null(), old.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: sigaction succeeded, so it initialized `old` (and zeroed
    // bytes are a valid `sigaction` anyway).
    Some(unsafe { old.assume_init() }.sa_sigaction)
}

/// Installs `handler` for `signal` if its disposition is still the default;
/// returns whether it did.
pub(crate) fn install_if_default(signal: Signal, handler: Handler) -> bool {
    if disposition(signal) != Some(libc::SIG_DFL) {
        return false;
    }
    let mut action = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: `action` is a zeroed (valid) sigaction we own; we fill its
    // handler, mask and flags, then install it. The handler only makes
    // async-signal-safe calls (its caller's contract).
    unsafe {
        let action = action.as_mut_ptr();
        (*action).sa_sigaction = handler_address(handler);
        libc::sigemptyset(&raw mut (*action).sa_mask);
        (*action).sa_flags = libc::SA_RESTART;
        libc::sigaction(signal, action, std::ptr::null_mut()) == 0
    }
}

/// Restores the default disposition of `signal` where it is `handler`.
/// Async-signal-safe.
pub(crate) fn reset_if(signal: Signal, handler: Handler) {
    if disposition(signal) == Some(handler_address(handler)) {
        // SAFETY: signal() is async-signal-safe and takes no memory.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
}

/// Restores the default disposition of `signal` and raises it, so the
/// process ends as the signal would have ended it. Async-signal-safe.
pub(crate) fn reraise_default(signal: Signal) {
    // SAFETY: signal() and raise() are async-signal-safe and take no memory.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

/// Blocks `signals` in the calling thread; returns the mask to restore.
/// Async-signal-safe.
pub(crate) fn block_signals(signals: &[Signal]) -> io::Result<libc::sigset_t> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    let mut old = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `set` is initialized by sigemptyset before sigaddset and
    // pthread_sigmask read it; `old` is valid for writes of one sigset_t and
    // initialized by a successful pthread_sigmask.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for &signal in signals {
            libc::sigaddset(set.as_mut_ptr(), signal);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), old.as_mut_ptr());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(old.assume_init())
    }
}

/// Restores a signal mask from [`block_signals`]; a signal that arrived
/// while blocked is delivered now. Async-signal-safe.
pub(crate) fn restore_signal_mask(old: &libc::sigset_t) {
    // SAFETY: `old` is a valid mask from a successful pthread_sigmask.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_whatever_the_command_name_holds() {
        // Fields 3.. after the name: state, ppid, pgrp, session, tty,
        // tpgid, flags, minflt (10), cminflt, majflt (12), cmajflt, utime,
        // stime, cutime, cutime, priority, nice, num_threads (20),
        // itrealvalue, starttime (22), vsize.
        let tail = "S 1 2 3 4 5 6 700 8 900 10 11 12 13 14 15 16 4 18 987654 20 21";
        for comm in ["a", "a b", "a) b", "(x) (y)", ") S 9 9 9", ""] {
            let line = format!("1234 ({comm}) {tail}");
            let stat = ProcStat::parse(&line).unwrap_or_else(|| panic!("{line}"));
            assert_eq!(
                stat,
                ProcStat {
                    minor_faults: 700,
                    major_faults: 900,
                    threads: 4,
                    start_time: 987654,
                },
                "{line}"
            );
        }
    }

    #[test]
    fn malformed_stat_lines_are_refused() {
        assert_eq!(ProcStat::parse("garbage"), None);
        assert_eq!(ProcStat::parse("1 (x) S 1 2"), None);
        assert_eq!(ProcStat::parse(""), None);
        let not_numeric = "1 (x) S 1 2 3 4 5 6 a 8 9 10 11 12 13 14 15 16 4 18 987654";
        assert_eq!(ProcStat::parse(not_numeric), None);
    }

    #[test]
    fn own_stat_is_known_and_the_start_time_stable() {
        let me = ProcStat::of(getpid()).expect("own stat");
        assert_eq!(ProcStat::current().unwrap().start_time, me.start_time);
        assert!(me.threads >= 1);
        assert_eq!(ProcStat::of(-1).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(
            ProcStat::of(i32::MAX).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn thread_count_counts_a_new_thread() {
        let before = thread_count().expect("/proc is readable here");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            ready_tx.send(()).unwrap();
            rx.recv().ok();
        });
        ready_rx.recv().unwrap();
        // Other tests start and end threads too, so only a lower bound holds.
        assert!(before >= 1);
        assert!(thread_count().unwrap() >= 2);
        tx.send(()).unwrap();
        t.join().unwrap();
    }

    #[test]
    fn free_bytes_of_a_real_and_a_missing_directory() {
        assert!(free_bytes(Path::new("/dev/shm")).is_ok());
        assert!(free_bytes(Path::new("/no/such/dir")).is_err());
        assert!(free_bytes(Path::new("a\0b")).is_err());
    }
}
