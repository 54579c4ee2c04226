//! Huge pages end to end (issue 14, item 1): segments created with
//! `HugePages::On` and `Try` on a tmpfs mounted `huge=within_size` (as
//! `/dev/shm` itself and as a `huge_dir`), on a `huge=advise` tmpfs, and on
//! a hugetlbfs with a small reserved pool; the page size in the header, the
//! data seen by a second process, `On` without huge pages as a typed error,
//! `Try` falling back, full file systems as typed errors (never SIGBUS).
//!
//! Mounting needs root and a mount namespace of our own: the test runs its
//! body (`inside_the_namespace`) in a child under `unshare -m
//! --propagation private`, which mounts a plain tmpfs over `/dev/shm` and
//! tmpfs and hugetlbfs mounts over directories of a scratch directory.
//! Every mount disappears with the namespace, so nothing is left mounted or
//! in the real `/dev/shm`. Where that cannot be done (no root, no
//! `unshare`, no transparent huge pages, a hugetlb pool that cannot grow),
//! the test says so on stderr, past the harness's capture: it never passes
//! silently. The hugetlb pool is global: the test raises
//! `/proc/sys/vm/nr_hugepages` by a few pages and restores it.
#![cfg(not(loom))]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::{Array1, Ix1};
use shmpar_core::gc;
use shmpar_core::segment::{HugePageSupport, Location, probe_huge_pages};
use shmpar_core::{Error, HugePages, Segment, SegmentOptions, SharedArray};

/// Set in the namespaced child: the scratch directory.
const SCRATCH: &str = "SHMPAR_HUGE_SCRATCH";
/// Set in the namespaced child: the mount namespace of the test that
/// started it, which the child must not be in.
const OUTER_NS: &str = "SHMPAR_HUGE_OUTER_NS";
/// Set in the attaching child: the location to attach to.
const ATTACH: &str = "SHMPAR_HUGE_ATTACH";

const MIB: usize = 1 << 20;

/// Says something on the real stderr, past the test harness's capture.
fn tell(line: &str) {
    let _ = writeln!(std::io::stderr(), "huge_pages: {line}");
}

fn mount_namespace() -> String {
    std::fs::read_link("/proc/self/ns/mnt")
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Why this machine cannot run the test, if it cannot.
fn cannot_run() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("mounting needs root (run the suite as root, e.g. in a container)".into());
    }
    match Command::new("unshare")
        .args(["-m", "--propagation", "private", "true"])
        .status()
    {
        Ok(status) if status.success() => {}
        Ok(status) => {
            return Some(format!(
                "`unshare -m` failed ({status}): no mount namespaces here"
            ));
        }
        Err(e) => return Some(format!("`unshare` cannot be run ({e})")),
    }
    if !Path::new("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size").exists() {
        return Some("the kernel has no transparent huge pages".into());
    }
    None
}

#[test]
fn huge_pages_in_a_private_mount_namespace() {
    if let Some(why) = cannot_run() {
        tell(&format!("SKIPPED: {why}"));
        return;
    }
    let scratch = std::env::temp_dir().join(format!("shmpar-huge-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "inside_the_namespace",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SCRATCH, &scratch)
        .env(OUTER_NS, mount_namespace())
        .output()
        .expect("run the test binary under unshare");
    // The namespace is gone with its last process, and its mounts with it.
    let _ = std::fs::remove_dir_all(&scratch);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stdout.lines().chain(stderr.lines()) {
        if line.starts_with("SKIPPED") || line.starts_with("NOTE") {
            tell(line);
        }
    }
    assert!(
        out.status.success() && stdout.contains("every huge-page case passed"),
        "the namespaced run failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

/// Runs `command` with `sh -c`, failing the test if it fails.
fn sh(command: &str) {
    let status = Command::new("sh").args(["-c", command]).status().unwrap();
    assert!(status.success(), "`{command}` failed: {status}");
}

fn huge_page_size() -> usize {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// What `/dev/shm` holds (the namespace's own tmpfs).
fn shm_entries() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Kibibytes of the mapping at `address` mapped by PMD entries (huge
/// pages in the page tables), from `/proc/self/smaps`.
fn pmd_mapped_kib(address: *const u8) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let start = format!("{:x}-", address as usize);
    let mut inside = false;
    let mut kib = 0;
    for line in smaps.lines() {
        if line.starts_with(&start) {
            inside = true;
        } else if inside && line.starts_with("VmFlags") {
            break;
        } else if inside {
            for field in ["ShmemPmdMapped:", "FilePmdMapped:"] {
                if let Some(value) = line.strip_prefix(field) {
                    kib += value.trim().trim_end_matches(" kB").parse::<u64>().unwrap_or(0);
                }
            }
        }
    }
    kib
}

/// Creates a u64 array of `len` elements holding `i * 3 + 1`, checks its
/// layout for `page` bytes, has a second process attach to it, check the
/// values and write 7 into element 0, and sees that write.
fn create_and_share(options: &SegmentOptions, len: usize, page: usize, what: &str) -> SharedArray<u64, Ix1> {
    let values = Array1::from_iter((0..len as u64).map(|i| i * 3 + 1));
    let array = SharedArray::from_array_with(options, &values).unwrap_or_else(|e| panic!("{what}: {e}"));
    let layout = array.segment().layout();
    assert_eq!(array.segment().page_size(), page, "{what}");
    assert_eq!(layout.total_len % page, 0, "{what}: {layout:?}");
    assert_eq!(layout.header_offset, layout.total_len - 4096, "{what}");
    assert!(
        layout.total_len - page < layout.data_len + 4096,
        "{what}: more than one page of padding"
    );
    if page > 4096 {
        let kib = pmd_mapped_kib(array.segment().data_ptr());
        if kib == 0 && layout.total_len >= 4 * page {
            println!(
                "NOTE: {what}: no huge page mapped (memory too fragmented for the kernel to find them?)"
            );
        }
    }
    let spec = match array.segment().location() {
        Location::Shm(name) => format!("shm:{name}"),
        Location::File(path) => format!("file:{}", path.display()),
    };
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "attach_and_check", "--ignored", "--test-threads=1"])
        .env(ATTACH, &spec)
        .env("SHMPAR_HUGE_LEN", len.to_string())
        .env("SHMPAR_HUGE_PAGE", page.to_string())
        .env_remove(SCRATCH)
        .status()
        .unwrap();
    assert!(status.success(), "{what}: the attaching process failed: {status}");
    assert_eq!(
        array.view()[0],
        7,
        "{what}: the other process's write is not visible"
    );
    assert!(
        array
            .view()
            .iter()
            .skip(1)
            .zip(1u64..)
            .all(|(&x, i)| x == i * 3 + 1),
        "{what}"
    );
    array
}

#[test]
#[ignore = "the second process of huge_pages_in_a_private_mount_namespace"]
fn attach_and_check() {
    let Ok(spec) = std::env::var(ATTACH) else {
        return;
    };
    let len: usize = std::env::var("SHMPAR_HUGE_LEN").unwrap().parse().unwrap();
    let page: usize = std::env::var("SHMPAR_HUGE_PAGE").unwrap().parse().unwrap();
    let mut array = match spec.split_once(':').unwrap() {
        ("shm", name) => SharedArray::<u64, Ix1>::attach(name).unwrap(),
        (_, path) => SharedArray::<u64, Ix1>::attach_file(path).unwrap(),
    };
    assert_eq!(array.segment().page_size(), page);
    assert_eq!(array.len(), len);
    assert!(array.view().iter().zip(0u64..).all(|(&x, i)| x == i * 3 + 1));
    // A worker-style prefault of a range that starts and ends mid-page.
    array.segment().prefault_range(4096 + 8, page + 100).unwrap();
    array.view_mut()[0] = 7;
}

/// Restores `/proc/sys/vm/nr_hugepages` when dropped.
/// Restores `/proc/sys/vm/nr_hugepages` when dropped. The pool is the
/// whole machine's: while one run of this test has grown it, another (a
/// second checkout's suite) waits on a file lock instead of growing and
/// shrinking it under the first.
struct Pool {
    original: u64,
    _lock: std::fs::File,
}

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

fn read_u64(path: &str) -> u64 {
    std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

impl Pool {
    /// Grows the pool of default-size huge pages until `pages` are free;
    /// `Err` says why it could not.
    fn reserve(pages: u64) -> Result<Pool, String> {
        use std::os::fd::AsRawFd;
        let lock = std::fs::File::create("/tmp/shmpar-test-nr-hugepages.lock").map_err(|e| e.to_string())?;
        // SAFETY: flock on a descriptor we own; it waits for another run.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(format!(
                "cannot lock the pool ({})",
                std::io::Error::last_os_error()
            ));
        }
        let original = read_u64(NR_HUGEPAGES);
        let pool = Pool {
            original,
            _lock: lock,
        };
        let target = original + pages.saturating_sub(free_pages());
        std::fs::write(NR_HUGEPAGES, target.to_string())
            .map_err(|e| format!("{NR_HUGEPAGES} cannot be written ({e})"))?;
        if free_pages() < pages {
            return Err(format!(
                "the kernel reserved {} of the {target} huge pages asked for (memory too fragmented?)",
                read_u64(NR_HUGEPAGES)
            ));
        }
        Ok(pool)
    }
}

fn free_pages() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

impl Drop for Pool {
    fn drop(&mut self) {
        let _ = std::fs::write(NR_HUGEPAGES, self.original.to_string());
    }
}

#[test]
#[ignore = "run by huge_pages_in_a_private_mount_namespace inside `unshare -m`"]
fn inside_the_namespace() {
    let Some(scratch) = std::env::var_os(SCRATCH).map(PathBuf::from) else {
        println!("SKIPPED: inside_the_namespace runs only under huge_pages_in_a_private_mount_namespace");
        return;
    };
    // Never mount over the real /dev/shm.
    let outer = std::env::var(OUTER_NS).unwrap();
    assert_ne!(mount_namespace(), outer, "not in a mount namespace of its own");
    let page = huge_page_size();
    let dir = |name: &str| {
        let path = scratch.join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    };
    let (within, advise, small, tlb) = (dir("within"), dir("advise"), dir("small"), dir("tlb"));
    // A /dev/shm of 4 KiB pages, and no hugetlbfs this test did not mount.
    sh("mount -t tmpfs -o size=1g,mode=1777 shmpar-test /dev/shm");
    sh("umount -a -t hugetlbfs 2>/dev/null; true");
    sh(&format!(
        "mount -t tmpfs -o size=256m,huge=within_size shmpar-test {}",
        within.display()
    ));
    sh(&format!(
        "mount -t tmpfs -o size=64m,huge=advise shmpar-test {}",
        advise.display()
    ));
    sh(&format!(
        "mount -t tmpfs -o size=8m,huge=within_size shmpar-test {}",
        small.display()
    ));

    no_huge_pages_anywhere(page);
    huge_dir_within_size(&within, page);
    advise_mount(&advise, page);
    full_file_systems(&advise, &small, page);
    dev_shm_within_size(page);
    hugetlbfs(&tlb, page);
    assert!(shm_entries().is_empty(), "left in /dev/shm: {:?}", shm_entries());
    println!("every huge-page case passed");
}

/// `/dev/shm` without `huge=` and no hugetlbfs: `On` is a typed error that
/// says what to configure, `Try` gives 4 KiB pages, nothing is left behind.
fn no_huge_pages_anywhere(page: usize) {
    assert!(matches!(
        probe_huge_pages(Path::new("/dev/shm")),
        HugePageSupport::Unavailable { .. }
    ));
    for options in [
        SegmentOptions::new().huge_pages(HugePages::On),
        SegmentOptions::new()
            .huge_pages(HugePages::On)
            .name("hp_on_named"),
    ] {
        match SharedArray::<f64, Ix1>::create_with(&options, 1000) {
            Err(e @ Error::HugePagesUnavailable { .. }) => {
                let message = e.to_string();
                for needle in ["huge=within_size", "nr_hugepages", "hugetlbfs", "/dev/shm"] {
                    assert!(message.contains(needle), "{needle} missing from: {message}");
                }
            }
            other => panic!("On without huge pages: {other:?}"),
        }
    }
    assert!(shm_entries().is_empty(), "a failed On left {:?}", shm_entries());
    let fallback = create_and_share(
        &SegmentOptions::new().huge_pages(HugePages::Try),
        3 * page / 8,
        4096,
        "Try without huge pages",
    );
    assert!(matches!(fallback.segment().location(), Location::Shm(_)));
    // Off on any mount: 4 KiB recorded, the object a multiple of 4 KiB only.
    let off = Segment::create(&SegmentOptions::new(), shmpar_core::DType::U8, &[10]).unwrap();
    assert_eq!((off.page_size(), off.layout().total_len), (4096, 8192));
}

/// A `huge=within_size` tmpfs given as `huge_dir`: the segment is the file
/// `DIR/NAME`, attached by path.
fn huge_dir_within_size(within: &Path, page: usize) {
    assert_eq!(
        probe_huge_pages(within),
        HugePageSupport::Transparent { page_size: page }
    );
    let named = SegmentOptions::new()
        .huge_pages(HugePages::On)
        .huge_dir(within)
        .name("hp_named");
    let array = create_and_share(&named, (5 * MIB + 24) / 8, page, "On, huge_dir, named");
    let path = within.join("hp_named");
    assert_eq!(array.segment().location(), &Location::File(path.clone()));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * page as u64);
    drop(array);
    assert!(
        !path.exists(),
        "the creator's drop did not remove {}",
        path.display()
    );
    let random = SegmentOptions::new().huge_pages(HugePages::Try).huge_dir(within);
    let array = create_and_share(&random, 16 * MIB / 8, page, "Try, huge_dir, random name");
    match array.segment().location() {
        Location::File(path) => {
            assert_eq!(path.parent(), Some(within));
            assert!(path.file_name().unwrap().to_string_lossy().starts_with("shmpar_"));
        }
        other => panic!("{other:?}"),
    }
    // Off ignores the huge directory.
    let off = SegmentOptions::new().huge_dir(within);
    let off = SharedArray::<u8, Ix1>::create_with(&off, 10).unwrap();
    assert!(matches!(off.segment().location(), Location::Shm(_)));
}

/// A `huge=advise` tmpfs: populated after `MADV_HUGEPAGE`, not reserved
/// with `posix_fallocate` (which would lock in 4 KiB pages).
fn advise_mount(advise: &Path, page: usize) {
    assert_eq!(
        probe_huge_pages(advise),
        HugePageSupport::Advise { page_size: page }
    );
    let options = SegmentOptions::new().huge_pages(HugePages::On).huge_dir(advise);
    let array = create_and_share(&options, 8 * page / 8, page, "On, huge=advise");
    let kib = pmd_mapped_kib(array.segment().data_ptr());
    println!(
        "NOTE: huge=advise: {kib} KiB of {} mapped by huge pages",
        array.segment().layout().total_len / 1024
    );
}

/// A full tmpfs is `NoSpace` (never SIGBUS), and `Try` then falls back to
/// `/dev/shm`.
fn full_file_systems(advise: &Path, small: &Path, page: usize) {
    // 8 MiB and 64 MiB mounts; 16 MiB and 96 MiB segments.
    for (dir, len) in [(small, 16 * MIB / 8), (advise, 96 * MIB / 8)] {
        let on = SegmentOptions::new().huge_pages(HugePages::On).huge_dir(dir);
        match SharedArray::<u64, Ix1>::create_with(&on, len) {
            Err(Error::NoSpace { .. }) => {}
            other => panic!("On in a full {}: {other:?}", dir.display()),
        }
        assert_eq!(
            std::fs::read_dir(dir).unwrap().count(),
            0,
            "left in {}",
            dir.display()
        );
        let try_ = SegmentOptions::new()
            .huge_pages(HugePages::Try)
            .huge_dir(dir)
            .name("hp_full");
        let array = SharedArray::<u64, Ix1>::create_with(&try_, len).unwrap();
        assert_eq!(array.segment().location(), &Location::Shm("hp_full".into()));
        assert_eq!(array.segment().page_size(), 4096);
    }
    let _ = page;
}

/// `/dev/shm` itself remounted `huge=within_size`: segments stay named
/// shared-memory objects, attached by name, and `ls` shows the page size.
fn dev_shm_within_size(page: usize) {
    sh("mount -o remount,huge=within_size /dev/shm");
    assert_eq!(
        probe_huge_pages(Path::new("/dev/shm")),
        HugePageSupport::Transparent { page_size: page }
    );
    let options = SegmentOptions::new().huge_pages(HugePages::On).name("hp_shm");
    // Data and header fill 40 pages exactly.
    let array = create_and_share(
        &options,
        (40 * page - 4096) / 8,
        page,
        "On, /dev/shm huge=within_size",
    );
    assert_eq!(array.segment().location(), &Location::Shm("hp_shm".into()));
    let listed = gc::list().into_iter().find(|info| info.name == "hp_shm").unwrap();
    assert_eq!(listed.page_size, Some(page));
    assert_eq!(listed.bytes, 40 * page as u64);
    // Off records 4 KiB even here (the kernel may still use huge pages).
    let off = SharedArray::<u64, Ix1>::create_with(&SegmentOptions::new().name("hp_off"), 1000).unwrap();
    assert_eq!(off.segment().page_size(), 4096);
    assert_eq!(gc::info("hp_off").unwrap().page_size, Some(4096));
    drop((array, off));
    sh("mount -o remount,huge=never /dev/shm");
}

/// A hugetlbfs: with too small a pool `On` is a typed error and `Try`
/// falls back; with pages reserved, segments go there, by `huge_dir` or,
/// without a name, found among the mounts.
fn hugetlbfs(tlb: &Path, page: usize) {
    sh(&format!(
        "mount -t hugetlbfs -o pagesize={}k shmpar-test {}",
        page / 1024,
        tlb.display()
    ));
    let HugePageSupport::Hugetlbfs { free_pages, .. } = probe_huge_pages(tlb) else {
        panic!(
            "{} is not a hugetlbfs: {:?}",
            tlb.display(),
            probe_huge_pages(tlb)
        );
    };
    let in_tlb = SegmentOptions::new().huge_pages(HugePages::On).huge_dir(tlb);
    // More pages than the pool has free: refused before anything is made.
    let too_many = free_pages.unwrap_or(0) as usize + 1;
    match SharedArray::<u8, Ix1>::create_with(&in_tlb, too_many * page) {
        Err(e @ Error::HugePagesUnavailable { .. }) => {
            assert!(e.to_string().contains("hugetlbfs at"), "{e}");
        }
        other => panic!("On with a short pool: {other:?}"),
    }
    let fallback = SegmentOptions::new().huge_pages(HugePages::Try).huge_dir(tlb);
    let array = SharedArray::<u8, Ix1>::create_with(&fallback, too_many * page).unwrap();
    assert_eq!(
        (
            array.segment().page_size(),
            matches!(array.segment().location(), Location::Shm(_))
        ),
        (4096, true)
    );
    drop(array);

    let pool = match Pool::reserve(6) {
        Ok(pool) => pool,
        Err(why) => {
            println!("SKIPPED: hugetlbfs with free pages: {why}");
            return;
        }
    };
    let named = in_tlb.clone().name("hp_tlb");
    let array = create_and_share(&named, 3 * MIB / 8, page, "On, hugetlbfs");
    assert_eq!(array.segment().location(), &Location::File(tlb.join("hp_tlb")));
    assert_eq!(array.segment().layout().total_len, 2 * page);
    drop(array);
    assert!(!tlb.join("hp_tlb").exists());
    // Without a name and without huge_dir: found among the mounts, since
    // /dev/shm offers none.
    let found = create_and_share(
        &SegmentOptions::new().huge_pages(HugePages::On),
        page / 8,
        page,
        "On, found",
    );
    match found.segment().location() {
        Location::File(path) => assert_eq!(path.parent(), Some(tlb)),
        other => panic!("{other:?}"),
    }
    drop(found);
    // With a name of its own, a segment stays where that name means
    // something: /dev/shm, which has no huge pages.
    let named = SegmentOptions::new()
        .huge_pages(HugePages::On)
        .name("hp_named_nowhere");
    assert!(matches!(
        SharedArray::<u8, Ix1>::create_with(&named, 10),
        Err(Error::HugePagesUnavailable { .. })
    ));
    drop(pool);
}
