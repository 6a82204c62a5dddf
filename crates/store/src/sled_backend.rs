//! The sled backend: the embedded default.

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use crate::backend::{Backend, Batch, NetEffect, ScanIter};
use crate::StoreError;

/// How long [`SledBackend::open`] waits for a just-closed handle to release the lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// From this many owned keys on, [`Backend::apply_owned`] checks them on two threads.
const PARALLEL_CHECK: usize = 256;

/// Whether sled failed to open because another handle holds the database's file lock (sled
/// 0.34 reports it as an I/O error of kind `Other` whose message names the lock).
fn lock_held(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock")
}

/// The sled tree a store keeps its entries in. A tree of its own, not sled's default one, so
/// that [`Backend::clear`] can drop it whole.
const TREE: &[u8] = b"domicile";

/// A [`Backend`] on sled 0.34.7, in one directory.
///
/// sled acknowledges writes before they reach the disk. Its own `Db::flush` writes its log and
/// waits with `sync_file_range`, which neither flushes the device's volatile write cache nor
/// commits the log file's new size (sled issue 1452; sled calls a full `fsync` only from its
/// background thread, every half second), and it never syncs the blob files it writes for
/// nodes too large for its log. So [`Backend::flush`] follows `Db::flush` with an `fdatasync`
/// of the log file and of every blob file not synced before (then of the blob directory), and
/// [`SledBackend::open`] syncs the directory sled created its files in: a write followed by a
/// flush survives a power cut or a kernel crash, not only its process dying.
///
/// Entries live in the tree `domicile`; a store written before that (its entries in sled's
/// default tree) is read and written where it is.
#[derive(Debug)]
pub struct SledBackend {
    db: sled::Db,
    /// Swapped for a new empty tree by [`Backend::clear`].
    tree: RwLock<sled::Tree>,
    path: PathBuf,
    /// sled's log file, opened again to `fdatasync` it after sled's own flush.
    log: std::fs::File,
    /// The blob files already synced, by name, so that each is synced once.
    synced_blobs: Mutex<HashSet<std::ffi::OsString>>,
}

fn failed(operation: &'static str) -> impl Fn(sled::Error) -> StoreError {
    move |e| StoreError::Backend {
        backend: "sled",
        operation,
        detail: e.to_string(),
    }
}

/// sled 0.34 takes a snapshot it was still writing when its process died
/// (`snap.<lsn>.generating`, renamed into place only once complete and synced) for the newest
/// one, and then refuses to open the database ("Read corrupted data at file offset None"; sled
/// issues 1509, 1527, 1533). An unfinished snapshot holds nothing the log does not, so it is
/// removed and sled recovers from the snapshot before it and the log. Only under the database's
/// lock (sled's own: an exclusive `flock` on `db`): a process using the database may be writing
/// that file right now. Returns false, touching nothing, while the lock is held elsewhere (by a
/// handle that is still closing, or another process).
fn remove_unfinished_snapshots(path: &Path) -> Result<bool, StoreError> {
    let db = path.join("db");
    let Ok(file) = std::fs::File::open(&db) else {
        return Ok(true); // a new database
    };
    match file.try_lock() {
        Ok(()) => {}
        // In use, perhaps by a handle of this process that is closing: the caller waits.
        Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
        Err(std::fs::TryLockError::Error(e)) => return Err(StoreError::io("lock", &db, e)),
    }
    let mut removed = false;
    for entry in std::fs::read_dir(path).map_err(|e| StoreError::io("list", path, e))? {
        let entry = entry.map_err(|e| StoreError::io("list", path, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            let unfinished = entry.path();
            std::fs::remove_file(&unfinished)
                .map_err(|e| StoreError::io("remove", &unfinished, e))?;
            removed = true;
        }
    }
    if removed {
        domicile_durable::sync_dir(path)?;
    }
    // The lock goes with `file`.
    Ok(true)
}

impl SledBackend {
    /// Opens (creating if needed) a sled database in directory `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path).map_err(|e| StoreError::io("create", &path, e))?;
        if path.join("records.redb").exists() {
            return Err(StoreError::StoreMismatch {
                path,
                reason: "it holds a redb store, not a sled one".into(),
            });
        }
        // sled releases its file lock from a background thread after the last handle is
        // dropped, so reopening right after closing can find it still held for a moment: wait
        // a little (bounded) before calling the store busy. Unfinished snapshots are looked for
        // once the lock is free (a store still held when the wait ends is refused by sled's
        // open below, as busy).
        // A FIFO or device in place of sled's files would block its open or its first read.
        for file in ["db", "conf"] {
            domicile_durable::check_regular(&path.join(file))?;
        }
        let mut waited = std::time::Duration::ZERO;
        let mut checked = false;
        let db = loop {
            if !checked {
                checked = remove_unfinished_snapshots(&path)?;
                if !checked && waited < LOCK_WAIT {
                    std::thread::sleep(LOCK_POLL);
                    waited += LOCK_POLL;
                    continue;
                }
            }
            match sled::Config::new().path(&path).open() {
                Err(sled::Error::Io(e)) if lock_held(&e) && waited < LOCK_WAIT => {
                    std::thread::sleep(LOCK_POLL);
                    waited += LOCK_POLL;
                }
                Err(sled::Error::Io(e)) if lock_held(&e) => {
                    return Err(StoreError::InUse {
                        backend: "sled",
                        path: path.clone(),
                        waited_secs: LOCK_WAIT.as_secs(),
                    })
                }
                other => break other.map_err(failed("open the database"))?,
            }
        };
        // A store from before the named tree keeps its entries in the default one.
        let tree = if db.is_empty() {
            db.open_tree(TREE).map_err(failed("open the tree"))?
        } else {
            sled::Tree::clone(&db)
        };
        let log_path = path.join("db");
        let log =
            std::fs::File::open(&log_path).map_err(|e| StoreError::io("open", &log_path, e))?;
        // sled creates its files (and the directory may be new) without syncing a directory:
        // their names are made durable here, once, so a power cut cannot lose the whole log.
        domicile_durable::sync_dir(&path)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            domicile_durable::sync_dir(parent)?;
        }
        Ok(SledBackend {
            db,
            tree: RwLock::new(tree),
            path,
            log,
            synced_blobs: Mutex::new(HashSet::new()),
        })
    }

    /// Makes what sled's flush wrote durable (see the type's documentation): `fdatasync` of
    /// the log, then of each blob file not synced yet and of the blob directory.
    fn sync_files(&self) -> Result<(), StoreError> {
        let log_path = || self.path.join("db");
        self.log
            .sync_data()
            .map_err(|e| StoreError::io("sync", log_path(), e))?;
        let blobs = self.path.join("blobs");
        let entries = match std::fs::read_dir(&blobs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io("list", &blobs, e)),
        };
        let mut synced = self.synced_blobs.lock().unwrap_or_else(|p| p.into_inner());
        let mut present = HashSet::new();
        let mut new = false;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("list", &blobs, e))?;
            let name = entry.file_name();
            if !synced.contains(&name) {
                let path = entry.path();
                match std::fs::File::open(&path) {
                    Ok(file) => file
                        .sync_data()
                        .map_err(|e| StoreError::io("sync", &path, e))?,
                    // Collected by sled since it was listed: nothing to keep.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StoreError::io("open", &path, e)),
                }
                new = true;
            }
            present.insert(name);
        }
        if new {
            domicile_durable::sync_dir(&blobs)?;
        }
        // Names sled has collected are forgotten.
        *synced = present;
        Ok(())
    }

    /// How many blob files [`Backend::flush`] has synced and still exist (for tests).
    #[doc(hidden)]
    pub fn synced_blob_count(&self) -> usize {
        self.synced_blobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Applies a batch's net effect in key order: consecutive operations then land in the
    /// same or neighbouring leaves (blind-indexed keys are otherwise scattered over the whole
    /// tree), which is what makes a large shred or ingest batch cheap for sled.
    fn apply_net(&self, net: NetEffect<'_>) -> Result<(), StoreError> {
        let mut sled_batch = sled::Batch::default();
        for (key, value) in net {
            match value {
                Some(value) => sled_batch.insert(key, value),
                None => sled_batch.remove(key),
            }
        }
        self.tree()
            .apply_batch(sled_batch)
            .map_err(failed("apply a batch"))
    }

    fn tree(&self) -> RwLockReadGuard<'_, sled::Tree> {
        // A panic while swapping leaves either tree in place, both usable.
        self.tree.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The directory the database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Backend for SledBackend {
    fn name(&self) -> &'static str {
        "sled"
    }

    /// sled locks its directory to one handle.
    fn exclusive(&self) -> bool {
        true
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree()
            .get(key)
            .map_err(failed("read a key"))?
            .map(|v| v.to_vec()))
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree()
            .insert(key, value)
            .map_err(failed("write a key"))?;
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self
            .tree()
            .remove(key)
            .map_err(failed("delete a key"))?
            .is_some())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> ScanIter<'_> {
        Box::new(self.tree().scan_prefix(prefix).map(|item| {
            item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(failed("scan a prefix"))
        }))
    }

    fn scan_range(&self, from: &[u8], until: &[u8]) -> ScanIter<'_> {
        if from >= until {
            return Box::new(std::iter::empty());
        }
        Box::new(
            self.tree()
                .range(from.to_vec()..until.to_vec())
                .map(|item| {
                    item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                        .map_err(failed("scan a range"))
                }),
        )
    }

    fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        self.apply_net(batch.net_effect())
    }

    /// The owner check reads each key in place (no copy of its value), on two threads when
    /// the batch is large: for a batch of new records it is a tree lookup per key, as costly
    /// as the batch's own inserts, and the lookups need nothing from each other.
    fn apply_owned(
        &self,
        batch: &Batch,
        owned: &[&[u8]],
        owner: Range<usize>,
    ) -> Result<Option<usize>, StoreError> {
        let puts = batch.net_effect();
        let tree = self.tree();
        let held_by_other = |(i, key): (usize, &&[u8])| -> Result<Option<usize>, StoreError> {
            let Some(current) = tree.get(key).map_err(failed("read a key"))? else {
                return Ok(None);
            };
            let new = puts.get(key).flatten().and_then(|v| v.get(owner.clone()));
            Ok(current
                .get(owner.clone())
                .is_some_and(|held| Some(held) != new)
                .then_some(i))
        };
        let first_held = |from: usize, keys: &[&[u8]]| -> Result<Option<usize>, StoreError> {
            for item in keys.iter().enumerate() {
                if let Some(i) = held_by_other(item)? {
                    return Ok(Some(from + i));
                }
            }
            Ok(None)
        };
        let held = if owned.len() >= PARALLEL_CHECK {
            let (front, back) = owned.split_at(owned.len() / 2);
            let (front, back) = std::thread::scope(|scope| {
                let back = scope.spawn(|| first_held(front.len(), back));
                let front = first_held(0, front);
                (front, back.join())
            });
            let back = back.map_err(|_| StoreError::WorkerPanicked {
                what: "checking a batch's owners",
            })?;
            // The first such key in `owned`, as a one-thread check would name it.
            front?.or(back?)
        } else {
            first_held(0, owned)?
        };
        drop(tree);
        if held.is_some() {
            return Ok(held);
        }
        self.apply_net(puts)?;
        Ok(None)
    }

    fn clear(&self) -> Result<(), StoreError> {
        let mut tree = self.tree.write().unwrap_or_else(|p| p.into_inner());
        if *tree.name() != *TREE {
            // sled cannot drop its default tree: an old store's entries go one by one.
            drop(tree);
            return crate::backend::delete_every_key(self);
        }
        // Dropping frees the tree's pages, a cost per page rather than per key. Not atomic
        // with the next line; a crash between them leaves no tree, which opens empty.
        self.db.drop_tree(TREE).map_err(failed("drop the tree"))?;
        *tree = self.db.open_tree(TREE).map_err(failed("open the tree"))?;
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(failed("flush"))?;
        self.sync_files()
    }
}
