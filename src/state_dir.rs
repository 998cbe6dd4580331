//! Permissions of what gatewatch keeps on disk. Plates, QR payloads and yard lists are personal
//! data: directories gatewatch creates are 0700 and files 0600, so only gatewatch's user reads
//! them, whatever the umask (it was 0644 files in 0755 folders).

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of directories gatewatch creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of files gatewatch creates.
pub const FILE_MODE: u32 = 0o600;

/// Creates `path` and any missing parents with [`DIR_MODE`]; an existing directory is left as it
/// is (see [`open_to_others`]).
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// Creates (or truncates) a file with [`FILE_MODE`]; a file that already existed with another
/// mode gets [`FILE_MODE`] too.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    f.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(f)
}

/// The permission bits of `path` when users other than its owner may read or enter it.
pub fn open_to_others(path: &Path) -> Option<u32> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

/// The permission bits of the operator's `state_dir` when it is open beyond its owner and group:
/// others may read or enter it, or the group may write it. 0750 with gatewatch's own group (as the
/// unit and the Debian package make it) is fine: everything gatewatch creates inside is 0700/0600.
pub fn open_beyond_group(path: &Path) -> Option<u32> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o027 != 0).then_some(mode)
}

/// Gives a directory that is gatewatch's own (not the operator's `state_dir`) [`DIR_MODE`], e.g.
/// one an older version created 0755.
pub fn make_private(path: &Path) -> io::Result<()> {
    if open_to_others(path).is_some() {
        std::fs::set_permissions(path, Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// Name of the lock file in `state_dir`.
pub const LOCK_FILE: &str = "gatewatch.lock";

/// An exclusive lock on a `state_dir`, held while the value lives (the kernel releases it when
/// the process ends, however it ends).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

/// Why a `state_dir` could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "state_dir {} is in use by another gatewatch (it holds the lock {}): two processes on one \
         state_dir would store the same event seqs twice; stop the other one or give this one its \
         own state_dir",
        .dir.display(),
        .lock.display()
    )]
    Held { dir: PathBuf, lock: PathBuf },
    #[error("cannot lock state_dir {}: {source}", .dir.display())]
    Io { dir: PathBuf, source: io::Error },
}

/// Takes the exclusive advisory lock (`flock`) on `state_dir`'s lock file, or fails at once when
/// another process holds it. The outbox and the yard files are written by one process only.
pub fn lock(state_dir: &Path) -> Result<StateLock, LockError> {
    let path = state_dir.join(LOCK_FILE);
    let io_err = |source| LockError::Io {
        dir: state_dir.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&path)
        .map_err(io_err)?;
    match file.try_lock() {
        Ok(()) => Ok(StateLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held {
            dir: state_dir.to_owned(),
            lock: path,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io_err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_dir_open_to_its_group_only_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        for (mode, open) in [(0o700, false), (0o750, false), (0o770, true), (0o755, true)] {
            std::fs::set_permissions(dir.path(), Permissions::from_mode(mode)).unwrap();
            assert_eq!(open_beyond_group(dir.path()).is_some(), open, "{mode:o}");
        }
    }

    #[test]
    fn created_directories_and_files_are_private_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("state/yard");
        create_private_dir(&nested).unwrap();
        for d in [dir.path().join("state"), nested.clone()] {
            assert_eq!(open_to_others(&d), None, "{}", d.display());
        }
        let file = nested.join("a.json");
        std::fs::write(&file, b"old").unwrap();
        std::fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        create_private_file(&file).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE);
    }

    #[test]
    fn a_state_dir_is_locked_by_one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        let err = lock(dir.path()).unwrap_err();
        assert!(matches!(err, LockError::Held { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        assert!(msg.contains("another gatewatch"), "{msg}");
        drop(held);
        lock(dir.path()).unwrap();
    }
}
