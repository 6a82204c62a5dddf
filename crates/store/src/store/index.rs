//! The per-subject index: subject lists, the journal that batches write instead, its folding,
//! and rebuilding the index from the records.

use std::collections::HashMap;

use crate::aead::PublicRandom;
use crate::backend::{Backend, Batch};
use crate::custodian::{BlindIndex, DataKeyState, Pseudonym};
use crate::record::layout;
use crate::{Collection, StoreError};

use super::{lock, IndexRebuild, RecordId, SealedStore, OWNER};

/// The journal is folded into subject lists once it holds this many record ids…
const FOLD_RECORDS: usize = 32_768;
/// …or this many batches.
const FOLD_BATCHES: usize = 512;

/// A subject read that finds at least this many lists of theirs merges them into one
/// ([`SealedStore::merge_lists`]).
pub(super) const MERGE_LISTS: usize = 16;

/// A rebuild writes the new subject lists in durable steps of about this many ids and deleted
/// lists ([`SealedStore::rebuild_index`]).
pub const REBUILD_STEP: usize = 50_000;

/// This handle's part in the index journal (see `record::layout`).
#[derive(Debug, Default)]
pub(super) struct Journal {
    /// This handle's part of every journal key it writes: random, so that keys written by
    /// another handle on the same database, or after a reopen, never meet it.
    pub(super) writer: [u8; 8],
    pub(super) next_seq: u64,
    /// Record ids and entries this handle wrote to the journal since it last folded it (at
    /// open: what the journal held).
    pub(super) records: usize,
    pub(super) batches: usize,
    /// Journal keys handed out whose batch has not yet been written or failed.
    pub(super) in_flight: usize,
    /// Whether the journal is known to be empty: on a backend only this handle writes
    /// ([`Backend::exclusive`]), after a fold that no batch was in flight during, until the next
    /// journal key is handed out. Reads of a subject's index then skip reading the journal.
    pub(super) known_empty: bool,
}

/// A store's collection names, numbered as they are met: what holds the ids of every record
/// of a store (a rebuild, a check) keeps a 4-byte number with each id instead of its own copy
/// of the name.
#[derive(Default)]
pub(super) struct CollectionNumbers {
    numbers: HashMap<Collection, u32>,
    names: Vec<Collection>,
}

impl CollectionNumbers {
    /// The number of `collection`, given it now if it has none.
    pub(super) fn number(&mut self, collection: Collection) -> u32 {
        if let Some(n) = self.numbers.get(&collection) {
            return *n;
        }
        let n = u32::try_from(self.names.len()).expect("fewer than 2^32 collection names");
        self.names.push(collection.clone());
        self.numbers.insert(collection, n);
        n
    }

    /// The number of `collection`, if it has one.
    pub(super) fn get(&self, collection: &Collection) -> Option<u32> {
        self.numbers.get(collection).copied()
    }

    /// The name numbered `n`.
    fn name(&self, n: u32) -> &str {
        self.names[n as usize].as_str()
    }
}

/// Record ids by owner, each with its collection's number.
type NumberedIds = HashMap<Pseudonym, Vec<(u32, BlindIndex)>>;

impl Journal {
    pub(super) fn due(&self) -> bool {
        self.records >= FOLD_RECORDS || self.batches >= FOLD_BATCHES
    }
}

/// A subject's index as read.
#[derive(Default)]
pub(super) struct SubjectIndex {
    /// Their record ids, each once, in id order.
    pub(super) ids: Vec<RecordId>,
    /// The backend keys of their subject lists.
    pub(super) lists: Vec<Vec<u8>>,
    /// Whether the journal held any entry (of anyone's).
    pub(super) journal_pending: bool,
}

/// The journal's entries as read: their keys, and the record ids they name by subject.
#[derive(Default)]
struct JournalRead {
    keys: Vec<Vec<u8>>,
    ids: HashMap<Pseudonym, Vec<RecordId>>,
    records: usize,
}

/// The subject index: reading a subject's record ids, folding the journal into lists, and
/// rebuilding it all from the records.
impl SealedStore {
    /// The subject's index: their record ids from the journal and their lists.
    ///
    /// The journal is read first: a fold (by any handle) that lands between the two reads
    /// moves ids from the journal, already read, into lists, not yet read.
    pub(super) fn subject_lists(&self, pseudonym: &Pseudonym) -> Result<SubjectIndex, StoreError> {
        let journal = if lock(&self.journal).known_empty {
            JournalRead::default()
        } else {
            read_journal(self.backend.as_ref())?
        };
        let pending = !journal.keys.is_empty();
        let mut ids = journal.ids.get(pseudonym).cloned().unwrap_or_default();
        let mut lists = Vec::new();
        for item in self.backend.scan_prefix(&layout::subject_prefix(pseudonym)) {
            let (key, list) = item?;
            ids.extend(parse_ids(&key, &list)?);
            lists.push(key);
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(SubjectIndex {
            ids,
            lists,
            journal_pending: pending,
        })
    }

    /// Every subject's record ids and lists found without reading the index: a pass over
    /// every record, by the owner its header names, and over every list key (a list's value
    /// may be the corrupt part; its key names its subject). What a shred uses when the index
    /// cannot be read.
    pub(super) fn index_by_owner(&self) -> Result<HashMap<Pseudonym, SubjectIndex>, StoreError> {
        let mut found: HashMap<Pseudonym, SubjectIndex> = HashMap::new();
        for item in self.backend.scan_prefix(&[layout::RECORD]) {
            let (key, sealed) = item?;
            if let Some((owner, id)) = record_owner(&key, &sealed) {
                found.entry(owner).or_default().ids.push(id);
            }
        }
        for item in self.backend.scan_prefix(&[layout::SUBJECT_LIST]) {
            let (key, _) = item?;
            if let Some(owner) = layout::list_owner(&key) {
                found.entry(owner).or_default().lists.push(key);
            }
        }
        Ok(found)
    }

    /// Rebuilds the subject index from the records themselves: every record's header names its
    /// owner by pseudonym, so the index — journal and lists — is derived data, and this is the
    /// repair for [`StoreError::CorruptIndex`]. Every journal entry and list is replaced by one
    /// list per owner; nothing is decrypted and no key is needed.
    ///
    /// It goes in durable steps of about 50,000 entries, whole subjects at a time: a subject's
    /// new list and the deletion of their old ones are in the same step, so a subject's lists
    /// are the old ones or the new one at every moment; the journal entries go in the last
    /// step (until then they name ids the new lists name too, and reads take each id once).
    /// A rebuild interrupted between steps leaves a store that reads as before, and running it
    /// again finishes the job. What it holds in memory is every record's id (36 bytes each)
    /// and one step's lists and deletions, not every list of the store at once.
    ///
    /// A record whose header was rewritten on disk to name another subject lands in that
    /// subject's list and fails to authenticate when read, as any record rewritten on disk
    /// does; it opens for no one. Writes and shreds through this handle wait;
    /// another handle's writes during the rebuild (PostgreSQL) keep their journal entries.
    pub fn rebuild_index(&self) -> Result<IndexRebuild, StoreError> {
        self.rebuild_index_in_steps(REBUILD_STEP)
    }

    /// [`rebuild_index`](Self::rebuild_index) in durable steps of about `step` ids and deleted
    /// lists each (at least one subject a step, whatever `step` says). Smaller steps hold
    /// less in memory and in each backend transaction, and cost more flushes; the default,
    /// [`REBUILD_STEP`], took a 1,000,000-record store's first rebuild from 5.6–6.7 s in one
    /// step to about 3 s (`docs/performance.md`).
    pub fn rebuild_index_in_steps(&self, step: usize) -> Result<IndexRebuild, StoreError> {
        let _gate = self.gate.exclusive();
        let mut journal = lock(&self.journal);
        // The journal's keys before the records: a batch writes its records and its entry
        // atomically, so every entry read here has its records in the pass below. Values are
        // not read: they may be what is corrupt.
        let journal_keys = self
            .backend
            .scan_prefix(&[layout::JOURNAL])
            .map(|item| item.map(|(key, _)| key))
            .collect::<Result<Vec<_>, _>>()?;
        // Every record's id is held until the lists are written: 36 bytes each, the
        // collection by number.
        let mut names = CollectionNumbers::default();
        let mut owners = NumberedIds::new();
        let mut unowned = 0;
        for item in self.backend.scan_prefix(&[layout::RECORD]) {
            let (key, sealed) = item?;
            match record_owner(&key, &sealed) {
                Some((owner, (collection, blind))) => owners
                    .entry(owner)
                    .or_default()
                    .push((names.number(collection), blind)),
                None => unowned += 1,
            }
        }
        // The old lists' keys by subject, before any new list is written (a new list's key has
        // a fresh random tag of its own). Values are not read: they may be what is corrupt.
        let mut old_lists: HashMap<Pseudonym, Vec<Vec<u8>>> = HashMap::new();
        // Keys too short to name their subject, deleted in the last step.
        let mut unnamed = Vec::new();
        let mut lists_replaced = 0;
        for item in self.backend.scan_prefix(&[layout::SUBJECT_LIST]) {
            let (key, _) = item?;
            lists_replaced += 1;
            match layout::list_owner(&key) {
                Some(owner) => old_lists.entry(owner).or_default().push(key),
                None => unnamed.push(key),
            }
        }
        let (subjects, mut records) = (owners.len(), 0);
        let mut tags = PublicRandom::new(&self.rng, subjects);
        let mut batch = Batch::new();
        let (mut in_step, mut steps) = (0, 0);
        for (pseudonym, ids) in owners {
            let named = |list: &mut Vec<u8>, n: &u32, blind: &BlindIndex| {
                layout::push_id(list, names.name(*n), blind)
            };
            let listed = Self::put_subject_list(&mut batch, &pseudonym, ids, named, tags.take()?);
            let old = old_lists.remove(&pseudonym).unwrap_or_default();
            (records, in_step) = (records + listed, in_step + listed + old.len());
            for key in old {
                batch.delete(key);
            }
            if in_step >= step {
                self.backend.apply(&batch)?;
                self.backend.flush()?;
                (batch, in_step, steps) = (Batch::new(), 0, steps + 1);
            }
        }
        // Lists of subjects with no record left (all deleted or shredded), and the journal.
        for key in old_lists.into_values().flatten().chain(unnamed) {
            batch.delete(key);
        }
        for key in journal_keys.iter().cloned() {
            batch.delete(key);
        }
        if !batch.is_empty() {
            self.backend.apply(&batch)?;
            self.backend.flush()?;
            steps += 1;
        }
        (journal.records, journal.batches) = (0, 0);
        journal.known_empty = self.backend.exclusive() && journal.in_flight == 0;
        Ok(IndexRebuild {
            subjects,
            records,
            unowned,
            lists_replaced,
            journal_entries: journal_keys.len(),
            steps,
        })
    }

    /// A key for the next journal entry this handle writes.
    pub(super) fn next_journal_key(&self) -> Vec<u8> {
        let mut journal = lock(&self.journal);
        journal.next_seq += 1;
        journal.in_flight += 1;
        journal.known_empty = false;
        layout::journal(journal.writer, journal.next_seq)
    }

    /// Folds the journal — every entry in it, whichever handle wrote it — into subject lists:
    /// one list per subject it names, and the entries deleted, in one atomic, durable batch.
    /// Two handles folding the same entries at once write the same ids twice, which reads
    /// count once.
    pub(super) fn fold_journal(&self) -> Result<(), StoreError> {
        let mut journal = lock(&self.journal);
        // No key is handed out while the fold holds the journal; a batch already holding one
        // may write its entry after the read below, so the journal is known empty only if none
        // does.
        let settled = self.backend.exclusive() && journal.in_flight == 0;
        let read = read_journal(self.backend.as_ref())?;
        if read.keys.is_empty() {
            (journal.records, journal.batches) = (0, 0);
            journal.known_empty = settled;
            return Ok(());
        }
        let mut batch = Batch::new();
        let mut tags = PublicRandom::new(&self.rng, read.ids.len());
        for (pseudonym, ids) in read.ids {
            let named = |list: &mut Vec<u8>, c: &Collection, blind: &BlindIndex| {
                layout::push_id(list, c.as_str(), blind)
            };
            Self::put_subject_list(&mut batch, &pseudonym, ids, named, tags.take()?);
        }
        for key in read.keys {
            batch.delete(key);
        }
        self.backend.apply(&batch)?;
        self.backend.flush()?;
        (journal.records, journal.batches) = (0, 0);
        journal.known_empty = settled;
        Ok(())
    }

    /// Replaces the subject's lists `old`, as a read of them found them, by one list of `live`,
    /// the ids of the records that read found (ids whose record was gone are dropped): every
    /// fold writes a new list for each subject it names, and without this a subject written
    /// to over months would be read through hundreds of lists. One atomic batch, not flushed:
    /// lost in a crash, it leaves the old lists, which read the same.
    ///
    /// Only on a backend this process has to itself, holding the store as a shred does, and
    /// skipped when anything else holds it (a write, a shred, a rebuild or a check in
    /// progress: a check reading the lists while they were swapped could miss ids and report
    /// records unindexed) or once the subject is shredded (a merge must not write a list for a
    /// subject whose lists a shred deleted). A record written since the read is in the
    /// journal or a list a fold wrote, which this leaves alone, and one deleted since leaves a
    /// stale id that reads skip.
    pub(super) fn merge_lists(
        &self,
        pseudonym: &Pseudonym,
        old: &[Vec<u8>],
        live: Vec<RecordId>,
    ) -> Result<bool, StoreError> {
        if !self.backend.exclusive() {
            return Ok(false);
        }
        let Some(_gate) = self.gate.try_exclusive() else {
            return Ok(false);
        };
        if !matches!(
            self.custodian.data_key(&self.region, pseudonym)?,
            DataKeyState::Live(_)
        ) {
            return Ok(false);
        }
        let mut batch = Batch::with_capacity(old.len() + 1);
        if !live.is_empty() {
            let named = |list: &mut Vec<u8>, c: &Collection, blind: &BlindIndex| {
                layout::push_id(list, c.as_str(), blind)
            };
            let tag = PublicRandom::new(&self.rng, 1).take()?;
            Self::put_subject_list(&mut batch, pseudonym, live, named, tag);
        }
        for key in old {
            batch.delete(key.clone());
        }
        self.backend.apply(&batch)?;
        Ok(true)
    }

    /// Puts into `batch` a new list of the subject's record `ids` (each once; readers sort
    /// what they read, so the order is any) under `tag`, a fresh random one; returns how many
    /// ids it holds. A collection is given as a name or as a rebuild's number for one, and
    /// `push_id` writes an id with its collection's name.
    fn put_subject_list<C: Ord>(
        batch: &mut Batch,
        pseudonym: &Pseudonym,
        mut ids: Vec<(C, BlindIndex)>,
        push_id: impl Fn(&mut Vec<u8>, &C, &BlindIndex),
        tag: [u8; 8],
    ) -> usize {
        ids.sort_unstable();
        ids.dedup();
        let mut list = Vec::with_capacity(ids.len() * 44);
        for (collection, blind) in &ids {
            push_id(&mut list, collection, blind);
        }
        batch.put(layout::subject_list(pseudonym, tag), list);
        ids.len()
    }
}

/// The owner a stored record's header names and the record's id from its backend key, read
/// without opening it; `None` if either no longer parses (cut short or rewritten on disk).
pub(super) fn record_owner(
    key: &[u8],
    sealed: &[u8],
) -> Option<(Pseudonym, (Collection, BlindIndex))> {
    let owner = <[u8; 16]>::try_from(sealed.get(OWNER)?).ok()?;
    let (collection, blind) = layout::split_collection_blind(key.get(1..)?)?;
    let collection = Collection::parse(std::str::from_utf8(collection).ok()?).ok()?;
    Some((Pseudonym(owner), (collection, blind)))
}

/// The collection and blind index at the tail of a record or index key (`u16 len ‖ collection ‖
/// blind index`), or `None` if the tail is malformed or names no valid collection.
pub(super) fn collection_and_blind(tail: &[u8]) -> Option<(Collection, BlindIndex)> {
    let (collection, blind) = layout::split_collection_blind(tail)?;
    let collection = Collection::parse(std::str::from_utf8(collection).ok()?).ok()?;
    Some((collection, blind))
}

/// The record ids of a subject list (`u16 len ‖ collection ‖ blind index`, repeated) stored
/// at `list_key`.
pub(super) fn parse_ids(list_key: &[u8], mut list: &[u8]) -> Result<Vec<RecordId>, StoreError> {
    let mut ids = Vec::with_capacity(list.len() / 40);
    while !list.is_empty() {
        let parsed = layout::next_id(list).and_then(|(collection, blind, rest)| {
            let collection = Collection::parse(std::str::from_utf8(collection).ok()?).ok()?;
            Some((collection, blind, rest))
        });
        let Some((collection, blind, rest)) = parsed else {
            return Err(corrupt_index("index list", list_key));
        };
        ids.push((collection, blind));
        list = rest;
    }
    Ok(ids)
}

fn corrupt_index(what: &'static str, key: &[u8]) -> StoreError {
    StoreError::CorruptIndex {
        what,
        key: crate::custodian::hex(key),
    }
}

/// The index journal's entries and the record ids they hold (each id is at least
/// `JOURNAL_ID_MIN` bytes, so the count errs high, which only folds sooner), without parsing.
pub(super) fn count_journal(backend: &dyn Backend) -> Result<JournalCount, StoreError> {
    let mut count = JournalCount::default();
    for item in backend.scan_prefix(&[layout::JOURNAL]) {
        let (_, entry) = item?;
        count.entries += 1;
        count.records += entry.len() / JOURNAL_ID_MIN;
    }
    Ok(count)
}

/// The least size of one record id in a journal entry: pseudonym (16), u16 length, a
/// one-byte collection, blind index (32).
const JOURNAL_ID_MIN: usize = 16 + 2 + 1 + 32;

#[derive(Default)]
pub(super) struct JournalCount {
    pub(super) entries: usize,
    pub(super) records: usize,
}

/// Reads every entry of the index journal.
fn read_journal(backend: &dyn Backend) -> Result<JournalRead, StoreError> {
    let mut read = JournalRead::default();
    for item in backend.scan_prefix(&[layout::JOURNAL]) {
        let (key, entry) = item?;
        for (pseudonym, id) in parse_journal_entry(&key, &entry)? {
            read.ids.entry(pseudonym).or_default().push(id);
            read.records += 1;
        }
        read.keys.push(key);
    }
    Ok(read)
}

/// The (subject, record id) pairs of the journal entry `entry` stored at `key`.
pub(super) fn parse_journal_entry(
    key: &[u8],
    entry: &[u8],
) -> Result<Vec<(Pseudonym, RecordId)>, StoreError> {
    let malformed = || corrupt_index("journal entry", key);
    let mut ids = Vec::with_capacity(entry.len() / JOURNAL_ID_MIN);
    let mut rest = entry;
    while !rest.is_empty() {
        let pseudonym = rest
            .get(..16)
            .and_then(|p| <[u8; 16]>::try_from(p).ok())
            .ok_or_else(malformed)?;
        let (collection, blind, tail) = layout::next_id(&rest[16..]).ok_or_else(malformed)?;
        let collection = std::str::from_utf8(collection)
            .ok()
            .and_then(|c| Collection::parse(c).ok())
            .ok_or_else(malformed)?;
        ids.push((Pseudonym(pseudonym), (collection, blind)));
        rest = tail;
    }
    Ok(ids)
}
