//! Where a segment's name lives, and removing it without being redirected.
//!
//! Removing a name by its path re-resolves the path: if a directory in it
//! is replaced by a symbolic link between the identity check and the
//! `unlink`, the `unlink` lands elsewhere, and root deletes someone else's
//! file. So every removal here opens the name's directory once, then asks
//! `fstatat(AT_SYMLINK_NOFOLLOW)` what the name in *that* directory is and
//! `unlinkat`s it relative to the same descriptor, only if it is the object
//! we mean (device and inode). Nothing between the check and the removal
//! resolves a path again.
//!
//! A file-backed segment's directory is opened with `O_NOFOLLOW` (its last
//! component must not be a symbolic link, at creation and at removal
//! alike); `/dev/shm` is followed, as `shm_open` follows it (it belongs to
//! root).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::os;

use super::Location;

/// The directory of shared-memory objects.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// A name and the directory that holds it.
#[derive(Debug)]
pub(crate) struct Place {
    dir: PathBuf,
    name: OsString,
    /// Refuse a symbolic link as the directory's last component.
    nofollow: bool,
}

impl Place {
    /// Splits `location` into its directory and name.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a shared-memory name that does not
    /// validate, or a file path with no last component (`/`, `a/..`).
    pub(crate) fn of(location: &Location) -> Result<Place> {
        match location {
            Location::Shm(bare) => Ok(Place {
                dir: PathBuf::from(SHM_DIR),
                name: OsString::from(crate::name::validate(bare)?),
                nofollow: false,
            }),
            Location::File(path) => {
                let name = path.file_name().ok_or_else(|| Error::InvalidName {
                    name: path.display().to_string(),
                    reason: "a file-backed segment's path must end in a file name",
                })?;
                let dir = match path.parent() {
                    Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                Ok(Place {
                    dir,
                    name: name.to_os_string(),
                    nofollow: true,
                })
            }
        }
    }

    /// The name inside the directory.
    pub(crate) fn name(&self) -> &OsStr {
        &self.name
    }

    /// Opens the directory (`O_DIRECTORY`, with `O_NOFOLLOW` for a file's).
    /// A refused symbolic link (which `open` reports as `ENOTDIR` or
    /// `ELOOP`) is an `InvalidInput` error that says so.
    pub(crate) fn open_dir(&self) -> io::Result<OwnedFd> {
        os::open_dir(&self.dir, self.nofollow).map_err(|source| {
            let link = os::stat_path(&self.dir).is_ok_and(|stat| stat.kind == "symbolic link");
            if self.nofollow && link {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "the directory {} is a symbolic link, which shmpar does not follow (pass the resolved path)",
                        self.dir.display()
                    ),
                )
            } else {
                source
            }
        })
    }

    /// Whether the name, looked up now without following it, is the object
    /// `identity`. `None` when that cannot be read for another reason than
    /// "no such name".
    pub(crate) fn names(&self, identity: (u64, u64)) -> Option<bool> {
        match os::stat_path(&self.dir.join(&self.name)) {
            Ok(stat) => Some(stat.identity == identity),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some(false),
            Err(_) => None,
        }
    }
}

/// Removes `name` from the directory `dir` if it is the object `identity`;
/// returns whether it did. Both steps are relative to `dir`: a path that
/// changes meanwhile cannot redirect the removal.
pub(crate) fn remove_at(dir: &OwnedFd, name: &OsStr, identity: (u64, u64)) -> io::Result<bool> {
    match os::stat_at(dir, name) {
        Ok(stat) if stat.identity == identity => {}
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    match os::unlink_at(dir, name) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes the name at `location` if it still names the object with
/// `identity` (from [`Segment::identity`](super::Segment::identity));
/// returns whether it did. A namesake created after the original was
/// removed is left alone, and so is whatever a path redirected by a
/// symbolic link would reach: the check and the removal are both made
/// relative to one descriptor of the name's directory (`fstatat`, then
/// `unlinkat`), and a file-backed segment's directory must not be a
/// symbolic link.
///
/// # Errors
/// [`Error::Io`] if the directory cannot be opened (a symbolic link
/// included) or the removal itself fails; [`Error::InvalidName`] for a
/// location without a name.
pub fn unlink_if(location: &Location, identity: (u64, u64)) -> Result<bool> {
    let place = Place::of(location)?;
    let dir = place.open_dir().map_err(|source| Error::Io {
        op: "open the directory",
        name: location.display_name(),
        source,
    })?;
    remove_at(&dir, place.name(), identity).map_err(|source| Error::Io {
        op: "unlink",
        name: location.display_name(),
        source,
    })
}
