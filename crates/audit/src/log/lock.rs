//! One writer per log directory: two writers would interleave their sequence numbers.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::lock;
use crate::AuditError;

/// The directories open as logs in this process. Two writers on one directory would interleave
/// their sequence numbers: within a process this list refuses the second, and across processes
/// an exclusive lock on `<dir>/LOCK` does (released by the kernel if the process dies).
static OPEN_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// This process's claim on a log directory: its place in the in-process list and the
/// exclusive lock on `<dir>/LOCK`, both released on drop.
#[derive(Debug)]
pub(super) struct DirClaim {
    path: PathBuf,
    /// Held open for its exclusive lock.
    _lock: File,
}

/// Taking a claim.
impl DirClaim {
    /// Claims `dir`, or says who holds it.
    pub(super) fn take(dir: &Path) -> Result<DirClaim, AuditError> {
        let path = dir
            .canonicalize()
            .map_err(|e| AuditError::io("resolving", dir, e))?;
        let mut open = lock(&OPEN_DIRS);
        if open.contains(&path) {
            return Err(AuditError::AlreadyOpen { path });
        }
        let lock_path = path.join("LOCK");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| AuditError::io("opening", &lock_path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(AuditError::LockedByAnotherProcess { path })
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(AuditError::io("locking", &lock_path, e))
            }
        }
        open.push(path.clone());
        Ok(DirClaim { path, _lock: file })
    }
}

impl Drop for DirClaim {
    fn drop(&mut self) {
        lock(&OPEN_DIRS).retain(|p| p != &self.path);
        // The lock on the file goes with the file handle.
    }
}
