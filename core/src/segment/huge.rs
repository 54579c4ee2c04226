//! Huge pages: where the system offers them, and where a segment that
//! asks for them ([`HugePages::Try`], [`HugePages::On`]) is placed.
//!
//! Three kinds of place give huge pages to a file that several processes
//! map by name:
//!
//! - a **tmpfs mounted `huge=always` or `huge=within_size`** (or any tmpfs
//!   while `/sys/kernel/mm/transparent_hugepage/shmem_enabled` is `force`):
//!   the reservation (`posix_fallocate`) itself allocates huge pages;
//! - a **tmpfs mounted `huge=advise`**: only faults in a mapping advised
//!   `MADV_HUGEPAGE` allocate huge pages, and `posix_fallocate`, which has
//!   no mapping, allocates 4 KiB pages for good. So the segment is sized
//!   with `ftruncate`, mapped, advised, and populated
//!   (`MADV_POPULATE_WRITE`) instead of reserved; a full tmpfs makes the
//!   populate fail with `EFAULT`, never a later fault with SIGBUS;
//! - a **hugetlbfs** with free pages in the kernel's pool
//!   (`/proc/sys/vm/nr_hugepages`): the reservation fails with `ENOSPC`
//!   when the pool is short, never a later fault.
//!
//! `shmem_enabled` itself (`advise` included) governs only the kernel's
//! internal tmpfs (`memfd_create`, `MAP_SHARED | MAP_ANONYMOUS`), whose
//! objects have no name another process could attach by; on `/dev/shm` it
//! changes nothing but through `deny` and `force` (measured: advised
//! mappings of a `/dev/shm` object without `huge=` stay on 4 KiB pages).
//! So shmpar never uses memfd for huge pages.
//!
//! A tmpfs gives huge pages as best it can: when memory is too fragmented
//! for a 2 MiB page (and compaction, which can take seconds on the first
//! allocations, does not help) it falls back to smaller pages silently.
//! Only a hugetlbfs guarantees them. `docs/huge-pages.md` says how to set
//! each place up and what it buys.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result, human_bytes};
use crate::header::{MAX_PAGE_SIZE, PAGE_SIZE};
use crate::name;
use crate::os;

use super::Location;
use super::place::SHM_DIR;

/// Whether a segment is made of huge pages, as PostgreSQL's `huge_pages`
/// setting says: `off`, `try` or `on`. Set with
/// [`SegmentOptions::huge_pages`](crate::SegmentOptions::huge_pages);
/// parsed from those words by [`FromStr`].
///
/// ```
/// use shmpar_core::HugePages;
/// assert_eq!("try".parse::<HugePages>()?, HugePages::Try);
/// assert_eq!(HugePages::On.to_string(), "on");
/// assert!("sometimes".parse::<HugePages>().is_err());
/// # Ok::<(), shmpar_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum HugePages {
    /// 4 KiB pages (the default): shmpar neither looks for huge pages nor
    /// rounds the segment, and records a page size of 4096. (A `/dev/shm`
    /// mounted `huge=always` still hands out huge pages; shmpar cannot
    /// refuse them there.)
    #[default]
    Off,
    /// Huge pages where the system offers them (see
    /// [`SegmentOptions::huge_pages`](crate::SegmentOptions::huge_pages)),
    /// else 4 KiB pages where the segment would have been without them.
    Try,
    /// Huge pages, or [`Error::HugePagesUnavailable`] saying what to
    /// configure.
    On,
}

impl HugePages {
    /// The word [`FromStr`] reads: `off`, `try` or `on`.
    pub fn as_str(self) -> &'static str {
        match self {
            HugePages::Off => "off",
            HugePages::Try => "try",
            HugePages::On => "on",
        }
    }
}

impl fmt::Display for HugePages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HugePages {
    type Err = Error;

    /// `off`, `try` or `on`, in any case.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for anything else.
    fn from_str(word: &str) -> Result<HugePages> {
        [HugePages::Off, HugePages::Try, HugePages::On]
            .into_iter()
            .find(|mode| word.eq_ignore_ascii_case(mode.as_str()))
            .ok_or_else(|| Error::InvalidOption {
                option: "huge_pages",
                reason: format!("{word:?}; expected off, try or on"),
            })
    }
}

/// What the file system holding a directory offers in huge pages: see
/// [`probe`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HugePageSupport {
    /// A tmpfs mounted `huge=always` or `huge=within_size` (or any tmpfs
    /// while `shmem_enabled` is `force`): reserving a file's space
    /// allocates huge pages, as far as memory is not too fragmented.
    Transparent {
        /// The huge page size (`hpage_pmd_size`: 2 MiB on x86-64).
        page_size: usize,
    },
    /// A tmpfs mounted `huge=advise`: pages are huge where a mapping was
    /// advised `MADV_HUGEPAGE` before they were allocated.
    Advise {
        /// The huge page size.
        page_size: usize,
    },
    /// A hugetlbfs: pages from the kernel's reserved pool, guaranteed once
    /// reserved.
    Hugetlbfs {
        /// The mount's page size (2 MiB or 1 GiB on x86-64).
        page_size: usize,
        /// Pages of that size free in the pool (and within the mount's
        /// `size=` limit), `None` when that cannot be read.
        free_pages: Option<u64>,
    },
    /// No huge pages there.
    Unavailable {
        /// Why, in words.
        reason: String,
    },
}

impl HugePageSupport {
    /// The huge page size, unless [`Unavailable`](Self::Unavailable).
    pub fn page_size(&self) -> Option<usize> {
        match self {
            HugePageSupport::Transparent { page_size }
            | HugePageSupport::Advise { page_size }
            | HugePageSupport::Hugetlbfs { page_size, .. } => Some(*page_size),
            HugePageSupport::Unavailable { .. } => None,
        }
    }
}

/// What the file system holding `dir` offers in huge pages, from
/// `statfs`, `/proc/self/mountinfo` (a tmpfs's `huge=` option) and
/// `/sys/kernel/mm` (the huge page size, `shmem_enabled`, a hugetlbfs
/// pool's free pages). Facts that cannot be read count as "no huge pages".
///
/// ```
/// use shmpar_core::segment::{HugePageSupport, probe_huge_pages};
/// match probe_huge_pages(std::path::Path::new("/dev/shm")) {
///     HugePageSupport::Unavailable { reason } => println!("4 KiB pages: {reason}"),
///     support => println!("huge pages of {:?} bytes", support.page_size()),
/// }
/// ```
pub fn probe(dir: &Path) -> HugePageSupport {
    let unavailable = |reason: String| HugePageSupport::Unavailable { reason };
    let fs = match os::statfs(dir) {
        Ok(fs) => fs,
        Err(e) => return unavailable(format!("{} cannot be examined ({e})", dir.display())),
    };
    match fs.magic {
        os::HUGETLBFS_MAGIC => {
            let Some(page_size) = usize::try_from(fs.block_size).ok().filter(|&p| valid_page(p)) else {
                return unavailable(format!(
                    "{} is a hugetlbfs of {}-byte pages, which shmpar does not support",
                    dir.display(),
                    fs.block_size
                ));
            };
            let mut free_pages = pool_free(page_size);
            if fs.blocks > 0 {
                free_pages = free_pages.map(|free| free.min(fs.available));
            }
            HugePageSupport::Hugetlbfs {
                page_size,
                free_pages,
            }
        }
        os::TMPFS_MAGIC => {
            let Some(page_size) = pmd_size() else {
                return unavailable(format!(
                    "{} is a tmpfs, and this kernel has no transparent huge pages \
                     ({THP}/hpage_pmd_size is unreadable)",
                    dir.display()
                ));
            };
            match shmem_enabled().as_deref() {
                Some("deny") => {
                    return unavailable(format!(
                        "{THP}/shmem_enabled is deny, which keeps every tmpfs on 4 KiB pages"
                    ));
                }
                Some("force") => return HugePageSupport::Transparent { page_size },
                _ => {}
            }
            match tmpfs_huge(dir) {
                Ok(Some(huge)) if huge == "always" || huge == "within_size" => {
                    HugePageSupport::Transparent { page_size }
                }
                Ok(Some(huge)) if huge == "advise" => HugePageSupport::Advise { page_size },
                Ok(None) => unavailable(format!(
                    "{} is a tmpfs mounted without huge= (so its pages are 4 KiB)",
                    dir.display()
                )),
                Ok(Some(huge)) => unavailable(format!("{} is a tmpfs mounted huge={huge}", dir.display())),
                Err(reason) => unavailable(reason),
            }
        }
        _ => unavailable(format!("{} is neither a tmpfs nor a hugetlbfs", dir.display())),
    }
}

const THP: &str = "/sys/kernel/mm/transparent_hugepage";

fn valid_page(page: usize) -> bool {
    page.is_power_of_two() && page > PAGE_SIZE && page <= MAX_PAGE_SIZE
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

/// The transparent huge page size, if the kernel has them.
fn pmd_size() -> Option<usize> {
    read_trimmed(&format!("{THP}/hpage_pmd_size"))?
        .parse()
        .ok()
        .filter(|&p| valid_page(p))
}

/// The selected word of `shmem_enabled` (`always within_size advise
/// [never] deny force`).
fn shmem_enabled() -> Option<String> {
    parse_selected(&read_trimmed(&format!("{THP}/shmem_enabled"))?)
}

fn parse_selected(line: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix('[')?.strip_suffix(']'))
        .map(str::to_owned)
}

/// Free pages of `page_size` in the kernel's hugetlb pool: free minus
/// those reserved for mappings that have not faulted them in yet.
fn pool_free(page_size: usize) -> Option<u64> {
    let dir = format!("/sys/kernel/mm/hugepages/hugepages-{}kB", page_size / 1024);
    let read = |file: &str| read_trimmed(&format!("{dir}/{file}"))?.parse::<u64>().ok();
    Some(read("free_hugepages")?.saturating_sub(read("resv_hugepages").unwrap_or(0)))
}

/// How many huge pages the kernel's pool of `page_size` holds now
/// (`nr_hugepages` for that size), for the remedy of an error.
fn pool_total(page_size: usize) -> Option<u64> {
    read_trimmed(&format!(
        "/sys/kernel/mm/hugepages/hugepages-{}kB/nr_hugepages",
        page_size / 1024
    ))?
    .parse()
    .ok()
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, PartialEq, Eq)]
struct Mount {
    /// `major:minor` of the mounted file system.
    device: (u32, u32),
    mount_point: PathBuf,
    fs_type: String,
    /// The file system's own options (`rw,size=...,huge=within_size`).
    super_options: String,
}

/// Parses one mountinfo line (`proc(5)`): `id parent major:minor root
/// mount-point options [optional fields...] - type source super-options`.
fn parse_mount(line: &str) -> Option<Mount> {
    let (head, tail) = line.split_once(" - ")?;
    let head: Vec<&str> = head.split(' ').collect();
    let (major, minor) = head.get(2)?.split_once(':')?;
    let mut tail = tail.split(' ');
    let fs_type = tail.next()?.to_owned();
    let _source = tail.next()?;
    Some(Mount {
        device: (major.parse().ok()?, minor.parse().ok()?),
        mount_point: PathBuf::from(unescape(head.get(4)?)),
        fs_type,
        super_options: tail.next().unwrap_or("").to_owned(),
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(field: &str) -> String {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out).to_string_lossy().into_owned()
}

fn mounts() -> std::result::Result<Vec<Mount>, String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| {
        format!("/proc/self/mountinfo is unreadable ({e}), so a tmpfs's huge= option is unknown")
    })?;
    Ok(text.lines().filter_map(parse_mount).collect())
}

/// The `huge=` option of the tmpfs holding `dir` (`None`: not given, so
/// never), found by the device number in `/proc/self/mountinfo`.
fn tmpfs_huge(dir: &Path) -> std::result::Result<Option<String>, String> {
    let device = os::device_of(dir).map_err(|e| format!("{} cannot be examined ({e})", dir.display()))?;
    let mount = mounts()?
        .into_iter()
        .rfind(|m| m.device == device)
        .ok_or_else(|| {
            format!(
                "the mount holding {} is not in /proc/self/mountinfo",
                dir.display()
            )
        })?;
    Ok(mount
        .super_options
        .split(',')
        .find_map(|option| option.strip_prefix("huge="))
        .map(str::to_owned))
}

/// Where a new segment goes and how its pages are allocated.
#[derive(Clone, Debug)]
pub(crate) struct Placement {
    /// `None`: a shared-memory object with a random name.
    pub(crate) location: Option<Location>,
    /// The page size the object is rounded to and its header records.
    pub(crate) page_size: usize,
    /// Allocate by `ftruncate`, `MADV_HUGEPAGE` and `MADV_POPULATE_WRITE`
    /// (a `huge=advise` tmpfs) instead of `posix_fallocate`.
    pub(crate) populate: bool,
    /// The hugetlbfs directory the segment is placed in, if it is one: a
    /// failed reservation there means its pool is short.
    pub(crate) hugetlbfs: Option<PathBuf>,
}

impl Placement {
    /// 4 KiB pages at `location`, reserved as always.
    pub(crate) fn plain(location: Option<Location>) -> Placement {
        Placement {
            location,
            page_size: PAGE_SIZE,
            populate: false,
            hugetlbfs: None,
        }
    }

    fn at(location: Option<Location>, support: &HugePageSupport, dir: &Path) -> Option<Placement> {
        Some(Placement {
            location,
            page_size: support.page_size()?,
            populate: matches!(support, HugePageSupport::Advise { .. }),
            hugetlbfs: matches!(support, HugePageSupport::Hugetlbfs { .. }).then(|| dir.to_path_buf()),
        })
    }
}

/// Why no place offers huge pages to a segment: one line per place looked
/// at.
#[derive(Debug, Default)]
pub(crate) struct Unavailable {
    reasons: Vec<String>,
    /// The most pages any kind of place would have needed, at 2 MiB, for
    /// the remedy.
    pages_needed: u64,
}

impl Unavailable {
    /// The error [`HugePages::On`] reports for the segment `name`.
    pub(crate) fn into_error(self, name: String) -> Error {
        Error::HugePagesUnavailable {
            name,
            reason: self.reasons.join("; "),
            remedy: remedy(self.pages_needed),
            source: None,
        }
    }
}

/// What to configure for huge pages, for a segment of `pages` 2 MiB pages.
pub(crate) fn remedy(pages: u64) -> String {
    format!(
        "To get them, as root either `mount -o remount,huge=within_size {SHM_DIR}` (or mount a tmpfs \
         with -o huge=within_size elsewhere and pass it as SegmentOptions::huge_dir), or reserve pages \
         with `echo {pages} > /proc/sys/vm/nr_hugepages` (more if other programs use them) and mount \
         a hugetlbfs (`mount -t hugetlbfs none /dev/hugepages`); see docs/huge-pages.md"
    )
}

/// Pages of `page_size` that an object of `bytes` bytes (a multiple of
/// 4096) takes once rounded up.
fn pages(bytes: usize, page_size: usize) -> u64 {
    bytes.div_ceil(page_size) as u64
}

/// Checks whether `support` can hold an object of `bytes` (as planned
/// with 4 KiB pages); if not, says why.
fn holds(support: &HugePageSupport, dir: &Path, bytes: usize) -> std::result::Result<(), String> {
    match support {
        HugePageSupport::Unavailable { reason } => Err(reason.clone()),
        HugePageSupport::Hugetlbfs {
            page_size,
            free_pages: Some(free),
        } if *free < pages(bytes, *page_size) => Err(format!(
            "the hugetlbfs at {} has {free} free pages of {}, the segment needs {}",
            dir.display(),
            human_bytes(*page_size as u64),
            pages(bytes, *page_size)
        )),
        _ => Ok(()),
    }
}

/// Where a segment of `bytes` bytes (as planned with 4 KiB pages) that
/// wants huge pages goes, in this order:
///
/// 1. at the file path asked for ([`SegmentOptions::file`]), if its
///    directory offers huge pages (and nowhere else: the caller chose);
/// 2. in the huge-page directory ([`SegmentOptions::huge_dir`]), as a file
///    named after the segment's name (or a random one);
/// 3. in `/dev/shm`, if it offers them (mounted `huge=`, or a hugetlbfs);
/// 4. for a segment without a name of the caller's choosing, in the first
///    hugetlbfs mount (smallest pages first) whose pool has enough free
///    pages and where this process may create files.
///
/// [`SegmentOptions::file`]: crate::SegmentOptions::file
/// [`SegmentOptions::huge_dir`]: crate::SegmentOptions::huge_dir
///
/// # Errors
/// Why no place offers them; only a random name that cannot be drawn is
/// an [`Error`].
pub(crate) fn place(
    location: Option<&Location>,
    huge_dir: Option<&Path>,
    bytes: usize,
) -> Result<std::result::Result<Placement, Unavailable>> {
    let mut unavailable = Unavailable {
        reasons: Vec::new(),
        pages_needed: pages(bytes, 2 << 20),
    };
    let mut consider = |location: Option<Location>, dir: &Path, support: HugePageSupport| match holds(
        &support, dir, bytes,
    ) {
        Ok(()) => Placement::at(location, &support, dir),
        Err(reason) => {
            unavailable.reasons.push(reason);
            None
        }
    };
    if let Some(Location::File(path)) = location {
        let dir = Location::File(path.clone()).filesystem();
        let placed = consider(location.cloned(), &dir, probe(&dir));
        return Ok(placed.ok_or(unavailable));
    }
    let wanted = match location {
        Some(Location::Shm(name)) => Some(name.clone()),
        _ => None,
    };
    if let Some(dir) = huge_dir {
        let file = dir.join(match &wanted {
            Some(name) => name.clone(),
            None => name::random()?,
        });
        if let Some(placement) = consider(Some(Location::File(file)), dir, probe(dir)) {
            return Ok(Ok(placement));
        }
    }
    let shm = Path::new(SHM_DIR);
    if let Some(placement) = consider(location.cloned(), shm, probe(shm)) {
        return Ok(Ok(placement));
    }
    if wanted.is_none() {
        let mut pools: Vec<(PathBuf, HugePageSupport)> = mounts()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.fs_type == "hugetlbfs" && m.mount_point != shm)
            .map(|m| {
                let support = probe(&m.mount_point);
                (m.mount_point, support)
            })
            .collect();
        pools.sort_by_key(|(_, support)| support.page_size());
        for (dir, support) in pools {
            let support = if os::may_create_in(&dir) {
                support
            } else {
                HugePageSupport::Unavailable {
                    reason: format!(
                        "this process may not create files in the hugetlbfs at {}",
                        dir.display()
                    ),
                }
            };
            let file = dir.join(name::random()?);
            if let Some(placement) = consider(Some(Location::File(file)), &dir, support) {
                return Ok(Ok(placement));
            }
        }
    }
    Ok(Err(unavailable))
}

/// The error for a reservation that failed in the hugetlbfs `dir`: its
/// pool is short of pages of `page_size` for an object of `bytes`.
pub(crate) fn pool_short(
    name: String,
    dir: &Path,
    page_size: usize,
    bytes: usize,
    source: std::io::Error,
) -> Error {
    let needed = pages(bytes, page_size);
    let free = pool_free(page_size).map_or_else(|| "too few".to_owned(), |free| free.to_string());
    let target = pool_total(page_size).map_or(needed, |total| total + needed);
    Error::HugePagesUnavailable {
        name,
        reason: format!(
            "the hugetlbfs at {} could not reserve {needed} pages of {} ({free} free)",
            dir.display(),
            human_bytes(page_size as u64)
        ),
        remedy: format!(
            "Reserve more, as root: `echo {target} > /sys/kernel/mm/hugepages/hugepages-{}kB/nr_hugepages` \
             (see docs/huge-pages.md)",
            page_size / 1024
        ),
        source: Some(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        for mode in [HugePages::Off, HugePages::Try, HugePages::On] {
            assert_eq!(mode.to_string().parse::<HugePages>().unwrap(), mode);
            assert_eq!(mode.as_str().to_uppercase().parse::<HugePages>().unwrap(), mode);
        }
        assert_eq!(HugePages::default(), HugePages::Off);
        assert!(matches!(
            "yes".parse::<HugePages>(),
            Err(Error::InvalidOption {
                option: "huge_pages",
                ..
            })
        ));
    }

    #[test]
    fn mountinfo_lines_parse() {
        let line = "1234 25 0:123 / /tmp/a\\040dir rw,relatime shared:5 master:1 - tmpfs none \
                    rw,size=2097152k,huge=within_size";
        assert_eq!(
            parse_mount(line),
            Some(Mount {
                device: (0, 123),
                mount_point: PathBuf::from("/tmp/a dir"),
                fs_type: "tmpfs".into(),
                super_options: "rw,size=2097152k,huge=within_size".into(),
            })
        );
        let no_optional = "40 1 0:50 / /dev/hugepages rw,relatime - hugetlbfs hugetlbfs rw,pagesize=2M";
        let mount = parse_mount(no_optional).unwrap();
        assert_eq!((mount.device, mount.fs_type.as_str()), ((0, 50), "hugetlbfs"));
        assert_eq!(parse_mount("garbage"), None);
        assert_eq!(unescape("a\\011b\\134c\\0"), "a\tb\\c\\0");
    }

    #[test]
    fn the_selected_word_is_the_bracketed_one() {
        assert_eq!(
            parse_selected("always within_size advise [never] deny force").as_deref(),
            Some("never")
        );
        assert_eq!(parse_selected("[force]").as_deref(), Some("force"));
        assert_eq!(parse_selected("always"), None);
    }

    #[test]
    fn probing_says_something_for_every_directory() {
        // Whatever this machine offers, a directory that is no tmpfs or
        // hugetlbfs offers nothing, and a missing one says why.
        assert!(matches!(
            probe(Path::new("/no/such/dir")),
            HugePageSupport::Unavailable { .. }
        ));
        if let HugePageSupport::Unavailable { reason } = probe(Path::new("/proc")) {
            assert!(reason.contains("neither a tmpfs nor a hugetlbfs"), "{reason}");
        } else {
            panic!("/proc offers huge pages");
        }
        if let Some(page) = probe(Path::new(SHM_DIR)).page_size() {
            assert!(valid_page(page));
        }
    }

    #[test]
    fn a_short_pool_is_refused_before_reserving() {
        let support = HugePageSupport::Hugetlbfs {
            page_size: 2 << 20,
            free_pages: Some(3),
        };
        assert!(holds(&support, Path::new("/h"), 6 << 20).is_ok());
        let reason = holds(&support, Path::new("/h"), (6 << 20) + 4096).unwrap_err();
        assert_eq!(
            reason,
            "the hugetlbfs at /h has 3 free pages of 2.0 MiB, the segment needs 4"
        );
        assert_eq!(pages(4096, 2 << 20), 1);
    }
}
