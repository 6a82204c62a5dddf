//! The `Backend` trait: the ordered key-value store sealed records rest in.
//!
//! A backend sees only ciphertext and the store's own key layout. Sealing happens above it, so
//! whoever runs the database — the embedded one here, or a distributed one later — never sees
//! plaintext or keys.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use crate::StoreError;

/// How many keys the default [`Backend::clear`] deletes per batch.
pub const CLEAR_BATCH: usize = 10_000;

/// The items of a prefix scan, in ascending key order.
pub type ScanIter<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + 'a>;

/// One write of an atomic [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove `key` if present.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
}

/// Writes applied all together or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<BatchOp>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Adds a put.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Put {
            key: key.into(),
            value: value.into(),
        });
    }

    /// Adds a delete.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Delete { key: key.into() });
    }

    /// The writes, in the order they were added (a later write to the same key wins).
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    /// Whether the batch holds no writes.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// How many writes the batch holds.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The batch's net effect, in key order: for each key it writes, the value its last write
    /// leaves there (`None` for a delete).
    pub(crate) fn net_effect(&self) -> BTreeMap<&[u8], Option<&[u8]>> {
        let mut last = BTreeMap::new();
        for op in &self.ops {
            match op {
                BatchOp::Put { key, value } => last.insert(key.as_slice(), Some(value.as_slice())),
                BatchOp::Delete { key } => last.insert(key.as_slice(), None),
            };
        }
        last
    }
}

/// An ordered key-value store with atomic batches and an explicit durability point.
///
/// Writes (`put`, `delete`, `apply`) are visible to reads as soon as they return, and **durable
/// once a later [`flush`](Backend::flush) returns**. A write acknowledged to a caller must be
/// followed by a flush first: the sealed store does this on every write it acknowledges. This
/// split lets several writes share one flush, which is what makes batches cheap.
///
/// Every implementation runs the same suite, [`crate::conformance::run`].
pub trait Backend: Send + Sync + fmt::Debug {
    /// The backend's name, for error messages (`sled`, `redb`).
    fn name(&self) -> &'static str;

    /// Whether this handle is the only one that can write its data while it is open, as an
    /// embedded database's file lock makes it. The default, `false`, is right for a database
    /// that several handles share; the sealed store then rereads what another could change.
    fn exclusive(&self) -> bool {
        false
    }

    /// The value at `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// The values at each of `keys`, in the same order: what `get` of each would return.
    ///
    /// The default asks [`get`](Backend::get) key by key; a networked backend overrides it to
    /// fetch them all in one round trip (the sealed store reads every key a batch overwrites).
    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    /// Sets `key` to `value`.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// Removes `key`; returns whether it was present.
    fn delete(&self, key: &[u8]) -> Result<bool, StoreError>;

    /// Every entry whose key starts with `prefix`, in ascending key order.
    fn scan_prefix(&self, prefix: &[u8]) -> ScanIter<'_>;

    /// Applies every write of `batch`, atomically: after a crash either all or none are present.
    fn apply(&self, batch: &Batch) -> Result<(), StoreError>;

    /// Makes every write that returned before this call durable.
    fn flush(&self) -> Result<(), StoreError>;

    /// Removes every entry. Durable once a later [`flush`](Backend::flush) returns; not atomic
    /// (after a crash some entries may remain, and clearing again removes them).
    ///
    /// The default deletes every key in batches of [`CLEAR_BATCH`]; an engine that can drop a
    /// whole table or tree at once overrides it (sled drops its tree: a cost per page, not per
    /// key). The sealed store uses it to purge a region a split emptied.
    fn clear(&self) -> Result<(), StoreError> {
        delete_every_key(self)
    }

    /// Applies `batch` like [`apply`](Backend::apply) unless one of the `owned` keys belongs
    /// to another owner; then writes nothing and returns the index in `owned` of such a key.
    ///
    /// A value names its owner in the bytes `owner` (the sealed store keeps the subject's
    /// pseudonym there). Each key of `owned` must be put by `batch`; it belongs to another
    /// owner when its current value is at least `owner.end` bytes long and differs from the
    /// value `batch` puts there in those bytes. A shorter or absent value has no owner.
    ///
    /// The default reads the keys with [`get_many`](Backend::get_many), then applies the batch
    /// (what the sealed store did itself before this method): the check and the write are two
    /// steps, so a writer taking one of the keys in between is not seen. The sealed store
    /// claims its keys around the call, so that no other write of the same handle comes in
    /// between, which is all an embedded backend (one process's) needs. A networked backend
    /// overrides it to check inside the write's own transaction — atomic with the write, in no
    /// extra round trip, without sending the current values back (PostgreSQL does).
    fn apply_owned(
        &self,
        batch: &Batch,
        owned: &[&[u8]],
        owner: Range<usize>,
    ) -> Result<Option<usize>, StoreError> {
        let puts = batch.net_effect();
        let current = self.get_many(owned)?;
        for (i, (key, current)) in owned.iter().zip(current).enumerate() {
            let held = current.as_deref().and_then(|v| v.get(owner.clone()));
            let new = puts
                .get(key)
                .copied()
                .flatten()
                .and_then(|v| v.get(owner.clone()));
            if held.is_some_and(|held| Some(held) != new) {
                return Ok(Some(i));
            }
        }
        self.apply(batch)?;
        Ok(None)
    }
}

/// [`Backend::clear`]'s default: deletes every key, [`CLEAR_BATCH`] at a time.
pub(crate) fn delete_every_key<B: Backend + ?Sized>(backend: &B) -> Result<(), StoreError> {
    loop {
        let mut batch = Batch::new();
        for item in backend.scan_prefix(&[]).take(CLEAR_BATCH) {
            batch.delete(item?.0);
        }
        if batch.is_empty() {
            return Ok(());
        }
        backend.apply(&batch)?;
    }
}
