//! How to create a segment: [`SegmentOptions`].

use std::path::PathBuf;

use crate::error::Error;
use crate::name;

#[cfg(doc)]
use super::Segment;
use super::{HugePages, Location};

/// How to create a segment: where, whether it outlives its creator, and
/// whether it is made of huge pages.
#[derive(Clone, Debug, Default)]
pub struct SegmentOptions {
    pub(super) location: Option<Location>,
    pub(super) name_error: Option<BadName>,
    pub(super) persist: bool,
    pub(super) huge_pages: HugePages,
    pub(super) huge_dir: Option<PathBuf>,
}

/// A deferred name error (the builder methods do not return `Result`).
#[derive(Clone, Debug)]
pub(super) struct BadName {
    pub(super) name: String,
    pub(super) reason: &'static str,
}

impl SegmentOptions {
    /// Defaults: an unguessable shared-memory name, unlinked when the
    /// creating handle drops.
    pub fn new() -> Self {
        Self::default()
    }

    /// Use this shared-memory name instead of a random one. An invalid name
    /// is reported by the create call.
    pub fn name(mut self, name: &str) -> Self {
        match name::validate(name) {
            Ok(bare) => {
                self.location = Some(Location::Shm(bare));
                self.name_error = None;
            }
            Err(Error::InvalidName { name, reason }) => self.name_error = Some(BadName { name, reason }),
            Err(_) => unreachable!("validate only returns InvalidName"),
        }
        self
    }

    /// Back the segment with a memory-mapped file at `path` (created; it must
    /// not exist) instead of shared memory.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.location = Some(Location::File(path.into()));
        self.name_error = None;
        self
    }

    /// Keep the segment when the creating handle drops (default: unlink it).
    pub fn persist(mut self, persist: bool) -> Self {
        self.persist = persist;
        self
    }

    /// Make the segment of huge pages ([`HugePages::Try`] or
    /// [`HugePages::On`]; default [`HugePages::Off`]), so that each process
    /// that maps it fills its page tables with one entry per huge page
    /// instead of one per 4 KiB, and the TLB covers 512 times more of it.
    ///
    /// The segment is then rounded up to a whole number of huge pages (the
    /// header stays in its last 4096 bytes, so every reader works as
    /// before), and its header records the page size
    /// ([`Layout::page_size`](crate::header::Layout::page_size)). Huge
    /// pages are looked for, in this order:
    ///
    /// 1. with [`file`](Self::file), in the file's directory only;
    /// 2. in the [`huge_dir`](Self::huge_dir), if one is set;
    /// 3. in `/dev/shm`, if it is a tmpfs mounted `huge=always`,
    ///    `huge=within_size` or `huge=advise` (then the segment is advised
    ///    `MADV_HUGEPAGE` and populated instead of reserved), or a hugetlbfs;
    /// 4. for a segment without a [`name`](Self::name), in a hugetlbfs
    ///    mount (such as `/dev/hugepages`) whose pool has enough free
    ///    pages; the segment is then the file `MOUNT/shmpar_...`.
    ///
    /// A segment placed in a directory (2 and 4) is file-backed: its
    /// [`location`](Segment::location) is [`Location::File`], other
    /// processes attach by that path ([`Segment::open_file`],
    /// [`Segment::open_location`]; a pool passes locations to its workers
    /// itself), and `shmpar ls`/`gc`, which look only in `/dev/shm`, do not
    /// see it. Its creating handle removes it when it drops, as any
    /// segment's; a process killed before that leaves the file behind.
    ///
    /// With [`HugePages::Try`], a segment that gets no huge pages (none
    /// offered, or the huge-page place is full) is created with 4 KiB
    /// pages where it would have been without this option. With
    /// [`HugePages::On`] it is [`Error::HugePagesUnavailable`] instead,
    /// which says what was found and what to configure. Space is reserved
    /// up front in every case, so a later page fault never fails (no
    /// SIGBUS). `docs/huge-pages.md` says how to enable huge pages and what
    /// they buy.
    ///
    /// ```
    /// # fn main() -> Result<(), shmpar_core::Error> {
    /// use shmpar_core::{DType, HugePages, Segment, SegmentOptions};
    /// let options = SegmentOptions::new().huge_pages(HugePages::Try);
    /// let segment = Segment::create(&options, DType::F64, &[1000])?;
    /// // 4096 without huge pages here, 2 MiB (on x86-64) with them.
    /// let page = segment.page_size();
    /// assert!(page.is_power_of_two() && segment.layout().total_len % page == 0);
    /// # Ok(()) }
    /// ```
    pub fn huge_pages(mut self, mode: HugePages) -> Self {
        self.huge_pages = mode;
        self
    }

    /// Look for huge pages in `dir` before `/dev/shm` (see
    /// [`huge_pages`](Self::huge_pages); without [`HugePages::Try`] or
    /// [`HugePages::On`] this changes nothing): a hugetlbfs mount, or a
    /// tmpfs mounted `huge=within_size`, when `/dev/shm` cannot be
    /// remounted. A segment placed there is the file `dir/NAME`, NAME
    /// being its [`name`](Self::name) or a random `shmpar_...` one, and is
    /// attached by that path, not by name.
    pub fn huge_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.huge_dir = Some(dir.into());
        self
    }
}
