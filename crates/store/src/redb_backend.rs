//! The redb backend (cargo feature `redb`, on by default).

use std::fmt;
use std::path::{Path, PathBuf};

use redb::{Database, Durability, TableDefinition};

use crate::backend::{prefix_end, Backend, Batch, BatchOp, ScanIter};
use crate::StoreError;

const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");

/// The file name of the redb database inside the store directory.
pub(crate) const FILE_NAME: &str = "records.redb";

/// A [`Backend`] on redb: one copy-on-write B-tree file, `records.redb`, in the store directory.
///
/// Writes commit with `Durability::None` and [`Backend::flush`] commits an empty transaction with
/// `Durability::Immediate`, which by redb's contract makes every earlier commit durable. That
/// mirrors sled's write-then-flush model, so several writes can share one fsync.
pub struct RedbBackend {
    db: Database,
    path: PathBuf,
}

impl fmt::Debug for RedbBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbBackend")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn failed<E: fmt::Display>(operation: &'static str) -> impl Fn(E) -> StoreError {
    move |e| StoreError::Backend {
        backend: "redb",
        operation,
        detail: e.to_string(),
    }
}

impl RedbBackend {
    /// The entries with keys in `range`, in key order, read in one read transaction.
    fn entries<'r>(
        &self,
        range: impl std::ops::RangeBounds<&'r [u8]> + 'r,
        operation: &'static str,
    ) -> ScanIter<'_> {
        let range = self
            .read_table()
            .and_then(|table| table.range(range).map_err(failed(operation)));
        match range {
            Err(e) => Box::new(std::iter::once(Err(e))),
            Ok(range) => Box::new(range.map(move |item| {
                item.map(|(k, v)| (k.value().to_vec(), v.value().to_vec()))
                    .map_err(failed(operation))
            })),
        }
    }

    /// The name of the database file inside the store directory: a store directory that holds
    /// it is a redb store.
    pub const FILE_NAME: &'static str = FILE_NAME;

    /// Opens (creating if needed) a redb database in directory `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io("create", &dir, e))?;
        if dir.join("db").exists() || dir.join("conf").exists() {
            return Err(StoreError::StoreMismatch {
                path: dir,
                reason: "it holds a sled store, not a redb one".into(),
            });
        }
        let path = dir.join(FILE_NAME);
        // A FIFO or device in the database's place would block redb's open or first read.
        domicile_durable::check_regular(&path)?;
        if !path.exists() {
            // A process killed inside `Database::create` leaves a file redb refuses to open
            // ever after (the crash test found this), so a new database is created under a
            // temporary name, with its table, and renamed into place only once complete.
            let creating = dir.join(format!("{FILE_NAME}.creating"));
            // What an earlier, interrupted creation left behind holds nothing acknowledged.
            match std::fs::remove_file(&creating) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", &creating, e)),
            }
            let db = Database::create(&creating).map_err(failed("create the database"))?;
            let fresh = RedbBackend {
                db,
                path: creating.clone(),
            };
            // A read transaction cannot open a table that was never created, so create it now.
            fresh.write(|_| Ok(()))?;
            fresh.flush()?;
            drop(fresh);
            domicile_durable::rename_synced(&creating, &path)?;
        }
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse {
                backend: "redb",
                path: path.clone(),
                waited_secs: 0,
            },
            other => failed("open the database")(other),
        })?;
        Ok(RedbBackend { db, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write<R>(
        &self,
        body: impl FnOnce(&mut redb::Table<'_, &'static [u8], &'static [u8]>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut txn = self.db.begin_write().map_err(failed("begin a write"))?;
        txn.set_durability(Durability::None);
        let result = {
            let mut table = txn.open_table(RECORDS).map_err(failed("open the table"))?;
            body(&mut table)?
        };
        txn.commit().map_err(failed("commit"))?;
        Ok(result)
    }

    fn read_table(&self) -> Result<redb::ReadOnlyTable<&'static [u8], &'static [u8]>, StoreError> {
        let txn = self.db.begin_read().map_err(failed("begin a read"))?;
        txn.open_table(RECORDS).map_err(failed("open the table"))
    }
}

impl Backend for RedbBackend {
    fn name(&self) -> &'static str {
        "redb"
    }

    /// redb locks its file to one handle.
    fn exclusive(&self) -> bool {
        true
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let table = self.read_table()?;
        let value = table.get(key).map_err(failed("read a key"))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.write(|table| {
            table.insert(key, value).map_err(failed("write a key"))?;
            Ok(())
        })
    }

    fn delete(&self, key: &[u8]) -> Result<bool, StoreError> {
        self.write(|table| {
            let old = table.remove(key).map_err(failed("delete a key"))?;
            Ok(old.is_some())
        })
    }

    fn scan_prefix(&self, prefix: &[u8]) -> ScanIter<'_> {
        match prefix_end(prefix) {
            Some(end) => self.entries(prefix..end.as_slice(), "scan a prefix"),
            // An empty or all-0xff prefix: every key from it on starts with it.
            None => self.entries(prefix.., "scan a prefix"),
        }
    }

    fn scan_range(&self, from: &[u8], until: &[u8]) -> ScanIter<'_> {
        if from >= until {
            return Box::new(std::iter::empty());
        }
        self.entries(from..until, "scan a range")
    }

    fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        self.write(|table| {
            for op in batch.ops() {
                match op {
                    BatchOp::Put { key, value } => {
                        table
                            .insert(key.as_slice(), value.as_slice())
                            .map_err(failed("apply a batch"))?;
                    }
                    BatchOp::Delete { key } => {
                        table
                            .remove(key.as_slice())
                            .map_err(failed("apply a batch"))?;
                    }
                }
            }
            Ok(())
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(failed("begin a flush"))?;
        txn.set_durability(Durability::Immediate);
        txn.commit().map_err(failed("flush"))
    }
}
