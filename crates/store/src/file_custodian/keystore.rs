//! A region's data keys in one embedded database, `<keys>/<region>/datakeys.redb`, held by one
//! process at a time.
//!
//! redb commits a whole batch of wrapped data keys (or tombstones, or a rotation step) in one
//! copy-on-write transaction made durable with one `fsync` pair, where key layout 2 wrote one
//! file and three `fsync`s per subject. Each entry is the bytes a layout-2 key file held
//! ([`super::format`]), keyed by the subject's 16-byte pseudonym.
//!
//! **One holder.** The process that opens a region's key store takes an exclusive lock on
//! `<keys>/<region>/keys.lock` (`flock`) for as long as it keeps the store open, and writes who
//! it is into that file. Another process waits a bounded time for it and then gets
//! [`StoreError::KeysInUse`] naming the holder, so rotate, shred, create and retire from two
//! processes never interleave on one region: each process's cache of unwrapped keys is always
//! the truth.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use domicile_residency::Region;
use redb::{Database, Durability, ReadableTable, TableDefinition};

use crate::custodian::Pseudonym;
use crate::StoreError;

/// The data keys: pseudonym (16 bytes) → a live wrapped key or a tombstone.
const DATA_KEYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data_keys");
/// Bookkeeping: `rotating` → the u32 KEK version an unfinished rotation rewraps to.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const ROTATING: &str = "rotating";

/// The database file in a region's key directory.
pub(crate) const DB_FILE: &str = "datakeys.redb";
/// The lock file in a region's key directory; it names the process holding the key store.
pub(crate) const LOCK_FILE: &str = "keys.lock";

/// A region's open key store and the lock that makes this process its only writer.
pub(super) struct RegionKeyStore {
    dir: PathBuf,
    db: Database,
    /// Held (flock) for as long as the store is open; closing the file releases it.
    _lock: File,
}

fn failed<E: std::fmt::Display>(path: &Path, operation: &'static str) -> impl Fn(E) -> StoreError {
    let path = path.to_owned();
    move |e| StoreError::KeyStore {
        path: path.clone(),
        operation,
        detail: e.to_string(),
    }
}

/// A writable private file (0600): the lock file and new databases are created this way, since
/// redb itself creates files with the process's umask.
fn open_private(path: &Path, truncate: bool) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::io("open", path, e))
}

/// Who this process is, for the lock file: pid, program and subcommand, and when it took the
/// lock. No argument beyond the subcommand is written (arguments may be paths or ids).
fn holder_text() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|p| {
            Path::new(&p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or(p)
        })
        .unwrap_or_else(|| "?".into());
    let sub: Vec<String> = args.take(2).take_while(|a| !a.starts_with('-')).collect();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let command = std::iter::once(program)
        .chain(sub)
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "pid {} ({command}) since unix time {since}\n",
        std::process::id()
    )
}

/// Takes the region's lock, waiting up to `wait` for another holder to let go.
fn lock(dir: &Path, region: &Region, wait: Duration) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let mut file = open_private(&path, false)?;
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if start.elapsed() < wait => {
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(StoreError::KeysInUse {
                    region: region.clone(),
                    path,
                    holder: if holder.is_empty() {
                        "another process".into()
                    } else {
                        holder.to_owned()
                    },
                    waited: wait,
                });
            }
            Err(TryLockError::Error(e)) => return Err(StoreError::io("lock", &path, e)),
        }
    }
    let text = holder_text();
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(text.as_bytes()))
        .map_err(|e| StoreError::io("write", &path, e))?;
    Ok(file)
}

/// Creates an empty key store at `path` (under a temporary name, renamed into place once it
/// holds its tables: a process killed inside redb's creation leaves a file redb refuses to
/// open), filled with `entries`.
fn create_db(path: &Path, entries: &[(Pseudonym, Vec<u8>)]) -> Result<(), StoreError> {
    let creating = path.with_extension("redb.creating");
    match std::fs::remove_file(&creating) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io("remove", &creating, e)),
    }
    let file = open_private(&creating, true)?;
    let db = Database::builder()
        .create_file(file)
        .map_err(failed(&creating, "create the key store"))?;
    let mut txn = db
        .begin_write()
        .map_err(failed(&creating, "begin a transaction"))?;
    txn.set_durability(Durability::Immediate);
    {
        let mut keys = txn
            .open_table(DATA_KEYS)
            .map_err(failed(&creating, "create its table"))?;
        for (pseudonym, entry) in entries {
            keys.insert(pseudonym.0.as_slice(), entry.as_slice())
                .map_err(failed(&creating, "write a data key"))?;
        }
        txn.open_table(META)
            .map_err(failed(&creating, "create its table"))?;
    }
    txn.commit().map_err(failed(&creating, "commit"))?;
    drop(db);
    domicile_durable::rename_synced(&creating, path)?;
    Ok(())
}

/// Whether `dir/subjects/` holds layout-2 key files (one per subject).
pub(super) fn has_file_keys(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("subjects")).is_ok_and(|mut entries| {
        entries.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "dk")))
    })
}

/// What one write transaction changes.
#[derive(Default)]
pub(super) struct Change {
    /// Entries to write (replacing any held for the same pseudonym).
    pub(super) put: Vec<(Pseudonym, Vec<u8>)>,
    /// `Some(Some(v))` marks a rotation to `v` as unfinished, `Some(None)` clears the mark.
    pub(super) rotating: Option<Option<u32>>,
}

impl RegionKeyStore {
    /// Opens (creating if needed) the key store in region directory `dir`, after taking its
    /// lock. A directory still in key layout 2 (a `subjects/` directory of key files) is
    /// [`StoreError::OldKeyLayout`] unless `migrating`.
    pub(super) fn open(
        root: &Path,
        dir: &Path,
        region: &Region,
        wait: Duration,
        migrating: bool,
    ) -> Result<Self, StoreError> {
        domicile_durable::create_private_dir(dir)?;
        let lock = lock(dir, region, wait)?;
        let path = dir.join(DB_FILE);
        if !migrating && has_file_keys(dir) {
            return Err(StoreError::OldKeyLayout {
                region: region.clone(),
                keys: root.to_owned(),
            });
        }
        if !path.exists() {
            create_db(&path, &[])?;
        }
        let db = Database::create(&path).map_err(failed(&path, "open the key store"))?;
        Ok(RegionKeyStore {
            dir: dir.to_owned(),
            db,
            _lock: lock,
        })
    }

    /// The database file.
    pub(super) fn path(&self) -> PathBuf {
        self.dir.join(DB_FILE)
    }

    /// How an error names one entry: the database file and the pseudonym (never a subject id).
    pub(super) fn entry_path(&self, pseudonym: &Pseudonym) -> PathBuf {
        self.dir.join(format!("{DB_FILE}#{}", pseudonym.to_hex()))
    }

    /// The entry held for `pseudonym`.
    pub(super) fn get(&self, pseudonym: &Pseudonym) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path();
        let txn = self
            .db
            .begin_read()
            .map_err(failed(&path, "begin a read"))?;
        let table = txn
            .open_table(DATA_KEYS)
            .map_err(failed(&path, "open its table"))?;
        let got = table
            .get(pseudonym.0.as_slice())
            .map_err(failed(&path, "read a data key"))?;
        Ok(got.map(|v| v.value().to_vec()))
    }

    /// Every entry, in pseudonym order.
    pub(super) fn entries(&self) -> Result<Vec<(Pseudonym, Vec<u8>)>, StoreError> {
        let path = self.path();
        let txn = self
            .db
            .begin_read()
            .map_err(failed(&path, "begin a read"))?;
        let table = txn
            .open_table(DATA_KEYS)
            .map_err(failed(&path, "open its table"))?;
        let mut out = Vec::new();
        for item in table.iter().map_err(failed(&path, "list data keys"))? {
            let (k, v) = item.map_err(failed(&path, "list data keys"))?;
            let key: [u8; 16] = k.value().try_into().map_err(|_| {
                StoreError::key_file(&path, "it holds an entry whose key is not a pseudonym")
            })?;
            out.push((Pseudonym(key), v.value().to_vec()));
        }
        Ok(out)
    }

    /// The KEK version an unfinished rotation rewraps to.
    pub(super) fn rotation_target(&self) -> Result<Option<u32>, StoreError> {
        let path = self.path();
        let txn = self
            .db
            .begin_read()
            .map_err(failed(&path, "begin a read"))?;
        let table = txn
            .open_table(META)
            .map_err(failed(&path, "open its table"))?;
        let got = table
            .get(ROTATING)
            .map_err(failed(&path, "read the rotation mark"))?;
        match got.map(|v| v.value().to_vec()) {
            None => Ok(None),
            Some(bytes) => {
                let bytes: [u8; 4] = bytes.as_slice().try_into().map_err(|_| {
                    StoreError::key_file(&path, "its rotation mark is not a KEK version")
                })?;
                Ok(Some(u32::from_be_bytes(bytes)))
            }
        }
    }

    /// Applies `change` in one transaction and makes it durable before returning: one commit
    /// for a whole batch.
    pub(super) fn commit(&self, change: Change) -> Result<(), StoreError> {
        if change.put.is_empty() && change.rotating.is_none() {
            return Ok(());
        }
        let path = self.path();
        let mut txn = self
            .db
            .begin_write()
            .map_err(failed(&path, "begin a transaction"))?;
        txn.set_durability(Durability::Immediate);
        {
            let mut keys = txn
                .open_table(DATA_KEYS)
                .map_err(failed(&path, "open its table"))?;
            for (pseudonym, entry) in &change.put {
                keys.insert(pseudonym.0.as_slice(), entry.as_slice())
                    .map_err(failed(&path, "write a data key"))?;
            }
            let mut meta = txn
                .open_table(META)
                .map_err(failed(&path, "open its table"))?;
            match change.rotating {
                Some(Some(target)) => {
                    meta.insert(ROTATING, target.to_be_bytes().as_slice())
                        .map_err(failed(&path, "mark a rotation"))?;
                }
                Some(None) => {
                    meta.remove(ROTATING)
                        .map_err(failed(&path, "clear the rotation mark"))?;
                }
                None => {}
            }
        }
        txn.commit().map_err(failed(&path, "commit"))
    }

    /// Replaces the whole key store with a fresh file holding exactly `entries` (and no
    /// rotation mark): the old file, whose free pages may still hold the bytes of destroyed
    /// entries, is unlinked. The swap is one durable rename; a crash leaves the old store or
    /// the new one.
    pub(super) fn rewrite(&mut self, entries: &[(Pseudonym, Vec<u8>)]) -> Result<(), StoreError> {
        let path = self.path();
        let fresh = self.dir.join(format!("{DB_FILE}.fresh"));
        create_db(&fresh, entries)?;
        domicile_durable::rename_synced(&fresh, &path)?;
        // redb locks the file it opened, not the name: the new inode opens while the old handle
        // is still held, and the old one is closed (and its blocks freed) right after.
        let db = Database::create(&path).map_err(failed(&path, "open the key store"))?;
        drop(std::mem::replace(&mut self.db, db));
        Ok(())
    }
}
