//! The `Backend` trait: the ordered key-value store sealed records rest in.
//!
//! A backend sees only ciphertext and the store's own key layout. Sealing happens above it, so
//! whoever runs the database — the embedded one here, or a distributed one later — never sees
//! plaintext or keys.

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

impl BatchOp {
    /// The key it writes.
    pub fn key(&self) -> &[u8] {
        match self {
            BatchOp::Put { key, .. } | BatchOp::Delete { key } => key,
        }
    }
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

    /// An empty batch with room for `ops` writes.
    pub fn with_capacity(ops: usize) -> Self {
        Batch {
            ops: Vec::with_capacity(ops),
        }
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
    pub(crate) fn net_effect(&self) -> NetEffect<'_> {
        let mut writes: Vec<(&[u8], Option<&[u8]>)> = self
            .ops
            .iter()
            .map(|op| match op {
                BatchOp::Put { key, value } => (key.as_slice(), Some(value.as_slice())),
                BatchOp::Delete { key } => (key.as_slice(), None),
            })
            .collect();
        // A stable sort keeps each key's writes in batch order, so the last of a run of equal
        // keys is the one that counts. (Sorting a vector is a fraction of building a tree map
        // of the same keys: a batch of records is 1,000 or more scattered keys.)
        writes.sort_by(|a, b| a.0.cmp(b.0));
        writes.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                *kept = *later;
            }
            same
        });
        NetEffect(writes)
    }
}

/// A [`Batch`]'s net effect ([`Batch::net_effect`]): each key it writes once, in key order,
/// with the value its last write leaves there (`None` for a delete).
#[derive(Debug)]
pub(crate) struct NetEffect<'a>(Vec<(&'a [u8], Option<&'a [u8]>)>);

impl<'a> NetEffect<'a> {
    /// What the batch leaves at `key`: `None` if it does not write it, `Some(None)` if it
    /// deletes it.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Option<&'a [u8]>> {
        self.0
            .binary_search_by(|(k, _)| (*k).cmp(key))
            .ok()
            .map(|i| self.0[i].1)
    }
}

impl<'a> IntoIterator for NetEffect<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);
    type IntoIter = std::vec::IntoIter<(&'a [u8], Option<&'a [u8]>)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// The least key greater than every key starting with `prefix`, if there is one (there is not
/// when the prefix is empty or all `0xff`).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
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

    /// Every entry with `from <= key < until`, in ascending key order; none if `from` is not
    /// below `until`.
    ///
    /// The default scans the longest prefix the two bounds share and skips what falls outside
    /// them; an engine with ordered range reads overrides it. A long scan of a collection on an
    /// embedded backend reads its parts on two threads this way.
    fn scan_range(&self, from: &[u8], until: &[u8]) -> ScanIter<'_> {
        if from >= until {
            return Box::new(std::iter::empty());
        }
        let shared = from.iter().zip(until).take_while(|(a, b)| a == b).count();
        let (from, until) = (from.to_vec(), until.to_vec());
        Box::new(
            self.scan_prefix(&from[..shared])
                .skip_while(move |item| matches!(item, Ok((k, _)) if *k < from))
                .take_while(move |item| !matches!(item, Ok((k, _)) if *k >= until)),
        )
    }

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
            let new = puts.get(key).flatten().and_then(|v| v.get(owner.clone()));
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn prefix_end_is_the_least_key_past_the_prefix() {
        assert_eq!(prefix_end(b"a"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(b"ab\x00"), Some(b"ab\x01".to_vec()));
    }

    /// A batch's writes over a few short keys, so that keys repeat.
    fn ops() -> impl Strategy<Value = Vec<(Vec<u8>, Option<Vec<u8>>)>> {
        let key = prop::collection::vec(0u8..3, 0..3);
        let value = prop::option::of(prop::collection::vec(any::<u8>(), 0..3));
        prop::collection::vec((key, value), 0..40)
    }

    proptest! {
        /// The net effect is what applying the writes one by one to a map leaves.
        #[test]
        fn net_effect_is_the_last_write_of_each_key(ops in ops()) {
            let mut batch = Batch::new();
            let mut model: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
            for (key, value) in &ops {
                match value {
                    Some(value) => batch.put(key.clone(), value.clone()),
                    None => batch.delete(key.clone()),
                }
                model.insert(key.clone(), value.clone());
            }
            let net = batch.net_effect();
            for (key, value) in &model {
                prop_assert_eq!(net.get(key), Some(value.as_deref()));
            }
            prop_assert_eq!(net.get(b"absent"), None);
            let net: Vec<(Vec<u8>, Option<Vec<u8>>)> = net
                .into_iter()
                .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                .collect();
            prop_assert_eq!(net, model.into_iter().collect::<Vec<_>>());
        }
    }
}
