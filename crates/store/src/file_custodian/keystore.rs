//! A region's data keys in one embedded database, `<keys>/<region>/datakeys.redb`, held by one
//! process at a time.
//!
//! redb commits a whole batch of wrapped data keys (or tombstones, or a rotation step) in one
//! copy-on-write transaction made durable with one `fsync` pair, where key layout 2 wrote one
//! file and three `fsync`s per subject. Each entry is the bytes a layout-2 key file held
//! ([`super::format`]), keyed by the subject's 16-byte pseudonym.
//!
//! **A batch is one sequential write.** A commit does not insert its entries into the table
//! keyed by pseudonym: pseudonyms are keyed hashes, so a batch of a thousand new subjects lands
//! on as many B-tree pages scattered over the file, each copied and written whole (measured: 147
//! MB written for 57 batches of 1,000 keys, 5.7 MB of entries). It writes them as one **pending**
//! row, `u64 sequence → (pseudonym ‖ u32 length ‖ entry)*`, in the same durable transaction, and
//! keeps the newest pending entry per pseudonym in memory. Once [`FOLD_ENTRIES`] entries are
//! pending, one transaction applies them, in pseudonym order, to the table and deletes the
//! pending rows; so do opening a store that a crash left with pending rows, and closing one. A
//! reader of the table alone (a test, a forensic look) therefore sees every entry whenever no
//! process holds the store and none crashed holding it.
//!
//! **One holder.** The process that opens a region's key store takes an exclusive lock on
//! `<keys>/<region>/keys.lock` (`flock`) for as long as it keeps the store open, and writes who
//! it is into that file. Another process waits a bounded time for it and then gets
//! [`StoreError::KeysInUse`] naming the holder, so rotate, shred, create and retire from two
//! processes never interleave on one region: each process's cache of unwrapped keys is always
//! the truth.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use domicile_residency::Region;
use redb::{Database, Durability, ReadableTable, TableDefinition, TableError};

use crate::custodian::Pseudonym;
use crate::StoreError;

/// The data keys: pseudonym (16 bytes) → a live wrapped key or a tombstone.
const DATA_KEYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data_keys");
/// Bookkeeping: `rotating` → the u32 KEK version an unfinished rotation rewraps to.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const ROTATING: &str = "rotating";
/// Commits not yet folded into [`DATA_KEYS`]: sequence → the commit's entries, each
/// `pseudonym (16) ‖ u32 length ‖ entry`, in the order written (a later one wins).
const PENDING: TableDefinition<u64, &[u8]> = TableDefinition::new("pending");
/// Pending entries are folded into [`DATA_KEYS`] by the commit that would hold more than this
/// many (about 7 MB of memory at most for the newest of each).
pub(super) const FOLD_ENTRIES: usize = 65_536;

/// The database file in a region's key directory.
pub(crate) const DB_FILE: &str = "datakeys.redb";
/// The lock file in a region's key directory; it names the process holding the key store.
pub(crate) const LOCK_FILE: &str = "keys.lock";

/// A region's open key store and the lock that makes this process its only writer.
pub(super) struct RegionKeyStore {
    dir: PathBuf,
    db: Database,
    /// The newest pending entry of each pseudonym that has one (newer than the table's).
    pending: HashMap<Pseudonym, Vec<u8>>,
    /// Entries in pending rows, counting one pseudonym's repeats.
    pending_entries: usize,
    /// The sequence number of the next pending row.
    next_row: u64,
    /// [`FOLD_ENTRIES`] (smaller in tests).
    fold_entries: usize,
    /// Whether dropping the store folds (tests turn it off to leave the file as a crash does).
    fold_on_drop: bool,
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
    // A FIFO or device in the file's place would block the open or the first read.
    domicile_durable::check_regular(path)?;
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
                // Who holds it, as that process wrote it: a line, read bounded.
                let mut holder = String::new();
                let _ = (&mut file).take(4096).read_to_string(&mut holder);
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
        domicile_durable::check_regular(&path)?;
        if !path.exists() {
            create_db(&path, &[])?;
        }
        let db = Database::create(&path).map_err(failed(&path, "open the key store"))?;
        let mut store = RegionKeyStore {
            dir: dir.to_owned(),
            db,
            pending: HashMap::new(),
            pending_entries: 0,
            next_row: 0,
            fold_entries: FOLD_ENTRIES,
            fold_on_drop: true,
            _lock: lock,
        };
        store.load_pending()?;
        // Rows a crash left behind go into the table now, while nothing else is waiting.
        store.fold()?;
        Ok(store)
    }

    /// Reads the pending rows into memory, oldest first, so that a later entry wins.
    fn load_pending(&mut self) -> Result<(), StoreError> {
        let path = self.path();
        let txn = self
            .db
            .begin_read()
            .map_err(failed(&path, "begin a read"))?;
        let table = match txn.open_table(PENDING) {
            Ok(table) => table,
            // A store no commit has written a pending row to since it was created.
            Err(TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(failed(&path, "open its table")(e)),
        };
        for item in table
            .iter()
            .map_err(failed(&path, "read pending entries"))?
        {
            let (row, entries) = item.map_err(failed(&path, "read pending entries"))?;
            let row = row.value();
            for (pseudonym, entry) in parse_row(entries.value()).ok_or_else(|| {
                StoreError::key_file(
                    &path,
                    format!("its pending row {row} is cut short or malformed"),
                )
            })? {
                self.pending.insert(pseudonym, entry.to_vec());
                self.pending_entries += 1;
            }
            // Rows are numbered from 0 after each fold; a number edited to the largest
            // possible is still read, and opening folds it away.
            self.next_row = row.saturating_add(1);
        }
        Ok(())
    }

    /// Moves every pending entry into the table, in pseudonym order, in one durable
    /// transaction (nothing to do when none is pending).
    pub(super) fn fold(&mut self) -> Result<(), StoreError> {
        if self.pending_entries == 0 {
            return Ok(());
        }
        self.commit_folding(Vec::new(), None)
    }

    /// How many entries are pending (tests).
    #[cfg(test)]
    pub(super) fn pending_entries(&self) -> usize {
        self.pending_entries
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
        Ok(self
            .get_many(std::slice::from_ref(pseudonym))?
            .pop()
            .flatten())
    }

    /// The entries held for `pseudonyms`, in their order, read in one transaction.
    pub(super) fn get_many(
        &self,
        pseudonyms: &[Pseudonym],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let path = self.path();
        let txn = self
            .db
            .begin_read()
            .map_err(failed(&path, "begin a read"))?;
        let table = txn
            .open_table(DATA_KEYS)
            .map_err(failed(&path, "open its table"))?;
        pseudonyms
            .iter()
            .map(|pseudonym| match self.pending.get(pseudonym) {
                Some(entry) => Ok(Some(entry.clone())),
                None => Ok(table
                    .get(pseudonym.0.as_slice())
                    .map_err(failed(&path, "read a data key"))?
                    .map(|v| v.value().to_vec())),
            })
            .collect()
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
        let mut out = BTreeMap::new();
        for item in table.iter().map_err(failed(&path, "list data keys"))? {
            let (k, v) = item.map_err(failed(&path, "list data keys"))?;
            let key: [u8; 16] = k.value().try_into().map_err(|_| {
                StoreError::key_file(&path, "it holds an entry whose key is not a pseudonym")
            })?;
            out.insert(Pseudonym(key), v.value().to_vec());
        }
        for (pseudonym, entry) in &self.pending {
            out.insert(*pseudonym, entry.clone());
        }
        Ok(out.into_iter().collect())
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
    /// for a whole batch, its entries written as one pending row (or, when that would hold
    /// more than [`FOLD_ENTRIES`] pending, folded into the table with every pending entry).
    pub(super) fn commit(&mut self, change: Change) -> Result<(), StoreError> {
        if change.put.is_empty() && change.rotating.is_none() {
            return Ok(());
        }
        if self.pending_entries + change.put.len() > self.fold_entries {
            return self.commit_folding(change.put, change.rotating);
        }
        let path = self.path();
        let mut txn = self
            .db
            .begin_write()
            .map_err(failed(&path, "begin a transaction"))?;
        txn.set_durability(Durability::Immediate);
        {
            if !change.put.is_empty() {
                let mut pending = txn
                    .open_table(PENDING)
                    .map_err(failed(&path, "open its table"))?;
                pending
                    .insert(self.next_row, encode_row(&change.put).as_slice())
                    .map_err(failed(&path, "write data keys"))?;
            }
            set_rotating(&txn, &path, change.rotating)?;
        }
        txn.commit().map_err(failed(&path, "commit"))?;
        if !change.put.is_empty() {
            self.next_row += 1;
            self.pending_entries += change.put.len();
            self.pending.extend(change.put);
        }
        Ok(())
    }

    /// Writes every pending entry and then `put` into the table, in pseudonym order, and
    /// deletes the pending rows, in one durable transaction.
    fn commit_folding(
        &mut self,
        put: Vec<(Pseudonym, Vec<u8>)>,
        rotating: Option<Option<u32>>,
    ) -> Result<(), StoreError> {
        let path = self.path();
        let mut all: BTreeMap<&Pseudonym, &[u8]> = self
            .pending
            .iter()
            .map(|(p, e)| (p, e.as_slice()))
            .collect();
        for (pseudonym, entry) in &put {
            all.insert(pseudonym, entry);
        }
        let mut txn = self
            .db
            .begin_write()
            .map_err(failed(&path, "begin a transaction"))?;
        txn.set_durability(Durability::Immediate);
        {
            let mut keys = txn
                .open_table(DATA_KEYS)
                .map_err(failed(&path, "open its table"))?;
            for (pseudonym, entry) in all {
                keys.insert(pseudonym.0.as_slice(), entry)
                    .map_err(failed(&path, "write a data key"))?;
            }
        }
        txn.delete_table(PENDING)
            .map_err(failed(&path, "clear pending entries"))?;
        set_rotating(&txn, &path, rotating)?;
        txn.commit().map_err(failed(&path, "commit"))?;
        self.pending.clear();
        self.pending_entries = 0;
        self.next_row = 0;
        Ok(())
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
        self.pending.clear();
        self.pending_entries = 0;
        self.next_row = 0;
        Ok(())
    }
}

impl Drop for RegionKeyStore {
    /// Folds what is pending, so that the table alone holds every entry once no process holds
    /// the store. A failure loses nothing: the pending rows are durable, and the next open
    /// folds them.
    fn drop(&mut self) {
        if self.fold_on_drop {
            let _ = self.fold();
        }
    }
}

/// Sets or clears the rotation mark in `txn` (`None`: leaves it).
fn set_rotating(
    txn: &redb::WriteTransaction,
    path: &Path,
    rotating: Option<Option<u32>>,
) -> Result<(), StoreError> {
    let Some(rotating) = rotating else {
        return Ok(());
    };
    let mut meta = txn
        .open_table(META)
        .map_err(failed(path, "open its table"))?;
    match rotating {
        Some(target) => meta
            .insert(ROTATING, target.to_be_bytes().as_slice())
            .map_err(failed(path, "mark a rotation"))?,
        None => meta
            .remove(ROTATING)
            .map_err(failed(path, "clear the rotation mark"))?,
    };
    Ok(())
}

/// One pending row: each entry as `pseudonym (16) ‖ u32 length ‖ entry`.
fn encode_row(entries: &[(Pseudonym, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.iter().map(|(_, e)| 20 + e.len()).sum());
    for (pseudonym, entry) in entries {
        out.extend_from_slice(&pseudonym.0);
        out.extend_from_slice(&(entry.len() as u32).to_be_bytes());
        out.extend_from_slice(entry);
    }
    out
}

/// The entries of a pending row, in order; `None` if it is cut short or malformed.
fn parse_row(mut row: &[u8]) -> Option<Vec<(Pseudonym, &[u8])>> {
    let mut out = Vec::new();
    while !row.is_empty() {
        let pseudonym: [u8; 16] = row.get(..16)?.try_into().ok()?;
        let len = u32::from_be_bytes(row.get(16..20)?.try_into().ok()?) as usize;
        let entry = row.get(20..20usize.checked_add(len)?)?;
        out.push((Pseudonym(pseudonym), entry));
        row = &row[20 + len..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableTableMetadata;

    fn region() -> Region {
        Region::parse("us").unwrap()
    }

    fn open(dir: &Path) -> RegionKeyStore {
        RegionKeyStore::open(dir, &dir.join("us"), &region(), Duration::ZERO, false).unwrap()
    }

    fn p(n: u8) -> Pseudonym {
        Pseudonym([n; 16])
    }

    fn put(entries: &[(u8, &[u8])]) -> Change {
        Change {
            put: entries.iter().map(|(n, e)| (p(*n), e.to_vec())).collect(),
            rotating: None,
        }
    }

    /// The table's (key, value) pairs, raw.
    type Table = Vec<(Vec<u8>, Vec<u8>)>;

    /// The table alone, read as a test or a forensic look would, and the pending rows.
    fn on_disk(dir: &Path) -> (Table, usize) {
        let db = Database::create(dir.join("us").join(DB_FILE)).unwrap();
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(DATA_KEYS).unwrap();
        let entries = table
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.value().to_vec(), v.value().to_vec())
            })
            .collect();
        let rows = match txn.open_table(PENDING) {
            Ok(t) => t.len().unwrap() as usize,
            Err(TableError::TableDoesNotExist(_)) => 0,
            Err(e) => panic!("{e}"),
        };
        (entries, rows)
    }

    #[test]
    fn pending_rows_survive_a_crash_the_newest_entry_wins_and_opening_folds_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.commit(put(&[(1, b"one"), (2, b"two")])).unwrap();
        store
            .commit(put(&[(2, b"two, later"), (3, b"three")]))
            .unwrap();
        assert_eq!(store.get(&p(2)).unwrap().unwrap(), b"two, later");
        assert_eq!(
            store.get_many(&[p(3), p(9), p(1)]).unwrap(),
            vec![Some(b"three".to_vec()), None, Some(b"one".to_vec())]
        );
        let expected = vec![
            (p(1), b"one".to_vec()),
            (p(2), b"two, later".to_vec()),
            (p(3), b"three".to_vec()),
        ];
        assert_eq!(store.entries().unwrap(), expected);
        // A crash: the process ends without folding. The rows are durable, the table empty.
        store.fold_on_drop = false;
        drop(store);
        let (table, rows) = on_disk(dir.path());
        assert!(table.is_empty());
        assert_eq!(rows, 2);

        let store = open(dir.path());
        assert_eq!(store.entries().unwrap(), expected);
        assert_eq!(store.pending_entries, 0, "opening folds what a crash left");
        drop(store);
        let (table, rows) = on_disk(dir.path());
        assert_eq!(rows, 0);
        let table: Vec<(Pseudonym, Vec<u8>)> = table
            .into_iter()
            .map(|(k, v)| (Pseudonym(k.try_into().unwrap()), v))
            .collect();
        assert_eq!(table, expected);
    }

    #[test]
    fn a_commit_past_the_threshold_folds_everything_pending_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.fold_entries = 3;
        store.commit(put(&[(1, b"a"), (2, b"b")])).unwrap();
        assert_eq!(store.pending_entries, 2);
        // A tombstone over a pending entry, and a new entry: 4 > 3, so all go to the table.
        store
            .commit(Change {
                put: vec![(p(1), b"gone".to_vec()), (p(4), b"d".to_vec())],
                rotating: Some(Some(7)),
            })
            .unwrap();
        assert_eq!(store.pending_entries, 0);
        assert!(store.pending.is_empty());
        assert_eq!(store.rotation_target().unwrap(), Some(7));
        store.fold_on_drop = false;
        drop(store);
        let (table, rows) = on_disk(dir.path());
        assert_eq!(rows, 0);
        assert_eq!(
            table,
            vec![
                (vec![1; 16], b"gone".to_vec()),
                (vec![2; 16], b"b".to_vec()),
                (vec![4; 16], b"d".to_vec()),
            ]
        );
        // A rotation mark set with a pending row is in the same transaction.
        let mut store = open(dir.path());
        store
            .commit(Change {
                put: vec![(p(5), b"e".to_vec())],
                rotating: Some(None),
            })
            .unwrap();
        assert_eq!(store.rotation_target().unwrap(), None);
        assert_eq!(store.get(&p(5)).unwrap().unwrap(), b"e");
    }

    #[test]
    fn a_pending_row_cut_short_on_disk_is_a_clear_error_naming_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.commit(put(&[(1, b"one")])).unwrap();
        store.fold_on_drop = false;
        drop(store);
        {
            let db = Database::create(dir.path().join("us").join(DB_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut rows = txn.open_table(PENDING).unwrap();
                let row = rows.get(0).unwrap().unwrap().value().to_vec();
                rows.insert(0, &row[..row.len() - 1]).unwrap();
            }
            txn.commit().unwrap();
        }
        let err = RegionKeyStore::open(
            dir.path(),
            &dir.path().join("us"),
            &region(),
            Duration::ZERO,
            false,
        )
        .err()
        .expect("a malformed row is refused");
        let text = err.to_string();
        assert!(text.contains("pending row 0"), "{text}");
        assert!(text.contains(DB_FILE), "{text}");
    }

    #[test]
    fn a_row_numbered_the_largest_possible_is_read_and_folded_without_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.fold_on_drop = false;
        drop(store);
        {
            let db = Database::create(dir.path().join("us").join(DB_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut rows = txn.open_table(PENDING).unwrap();
                let row = encode_row(&[(p(1), b"one".to_vec())]);
                rows.insert(u64::MAX, row.as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let mut store = open(dir.path());
        assert_eq!(store.get(&p(1)).unwrap().unwrap(), b"one");
        assert_eq!((store.pending_entries, store.next_row), (0, 0));
        store.commit(put(&[(2, b"two")])).unwrap();
        assert_eq!(
            store.entries().unwrap(),
            vec![(p(1), b"one".to_vec()), (p(2), b"two".to_vec())]
        );
    }

    #[test]
    fn rows_round_trip_and_malformed_ones_are_refused() {
        let entries = vec![(p(1), b"x".to_vec()), (p(2), Vec::new())];
        let row = encode_row(&entries);
        let parsed = parse_row(&row).unwrap();
        assert_eq!(parsed, vec![(p(1), &b"x"[..]), (p(2), &b""[..])]);
        for cut in 1..row.len() {
            if cut == 21 {
                continue; // exactly the first entry: a valid row of one
            }
            assert!(parse_row(&row[..cut]).is_none(), "cut at {cut}");
        }
        let mut huge = row.clone();
        huge[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_row(&huge).is_none());
    }
}
