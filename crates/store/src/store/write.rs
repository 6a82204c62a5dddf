//! Writing records: placement by the policy, sealing, the owner check and its key claims,
//! and deleting a record.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

use domicile_residency::{DataClass, Decision, Region, SubjectId};

use serde::Serialize;

use crate::aead::{self, Nonces};
use crate::backend::{Batch, BatchOp};
use crate::custodian::{BlindIndex, BlindMap, DataKey, DataKeyState, KeyedHasher, Pseudonym};
use crate::record::{self, layout, RecordMeta};
use crate::{Collection, PlacementRefusal, RecordKey, StoreError};

use super::index::parse_ids;
use super::{lock, NewRecord, SealedStore, OWNER};

/// The record keys that this handle's writes are between checking their owner and writing
/// them. A write claims all of its keys first, waiting while another write holds any of them,
/// so that two writes racing for a key as different subjects cannot both pass the check and
/// both be acknowledged (the later would overwrite the earlier's record: a write lost to its
/// subject). An embedded backend is one process's; across handles on PostgreSQL the check is
/// inside the write's own transaction ([`Backend::apply_owned`](crate::Backend::apply_owned)).
#[derive(Default)]
pub(super) struct KeyClaims {
    /// The blind index of each claimed record (one per collection and key, so it stands for
    /// the record's key).
    held: Mutex<std::collections::HashSet<BlindIndex, std::hash::BuildHasherDefault<KeyedHasher>>>,
    released: std::sync::Condvar,
}

impl KeyClaims {
    /// Claims the records of `blinds` (all or none, so that two writes never hold part of
    /// each other's keys), waiting until no other write holds any of them; the claim ends when
    /// the guard drops.
    fn claim<'k>(&self, blinds: impl Iterator<Item = &'k BlindIndex>) -> KeyClaim<'_> {
        let mut blinds: Vec<BlindIndex> = blinds.copied().collect();
        blinds.sort_unstable();
        blinds.dedup();
        let mut held = lock(&self.held);
        while blinds.iter().any(|b| held.contains(b)) {
            held = self
                .released
                .wait(held)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        held.extend(blinds.iter().copied());
        KeyClaim {
            claims: self,
            blinds,
        }
    }
}

/// A write's claim on its keys ([`KeyClaims::claim`]).
struct KeyClaim<'a> {
    claims: &'a KeyClaims,
    blinds: Vec<BlindIndex>,
}

impl Drop for KeyClaim<'_> {
    fn drop(&mut self) {
        let mut held = lock(&self.claims.held);
        for b in &self.blinds {
            held.remove(b);
        }
        drop(held);
        self.claims.released.notify_all();
    }
}

/// Writes: placed by the policy, sealed, owner-checked, durable when they return.
impl SealedStore {
    /// Seals `value` (as JSON) as the subject's record at (`collection`, `key`). Durable when it
    /// returns. Refused, with nothing written, if the subject is not registered, if the policy
    /// forbids `class` of this subject to rest in this region ([`StoreError::PlacementRefused`]
    /// names the rule), or if the key holds another subject's record.
    pub fn put<T: Serialize + ?Sized>(
        &self,
        subject: &SubjectId,
        class: DataClass,
        collection: &Collection,
        key: &RecordKey,
        value: &T,
    ) -> Result<RecordMeta, StoreError> {
        let _ = key; // a key is not named in the error: keys often embed subject ids
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Serialization {
            collection: collection.clone(),
            detail: format!("cannot encode the value ({:?} error)", e.classify()),
        })?;
        self.put_raw(subject, class, collection, key, &bytes)
    }

    /// Like [`put`](Self::put), with the value as bytes.
    pub fn put_raw(
        &self,
        subject: &SubjectId,
        class: DataClass,
        collection: &Collection,
        key: &RecordKey,
        value: &[u8],
    ) -> Result<RecordMeta, StoreError> {
        let mut metas = self.put_batch(&[NewRecord {
            subject,
            class,
            collection,
            key,
            value,
        }])?;
        Ok(metas.remove(0))
    }

    /// Seals and writes several records atomically, with one flush: all are durable when it
    /// returns, or none is written. Every record is checked as [`put`](Self::put) checks one,
    /// before anything is written.
    pub fn put_batch(&self, records: &[NewRecord<'_>]) -> Result<Vec<RecordMeta>, StoreError> {
        let gate = self.gate.shared();
        // One more for the journal entry.
        let mut batch = Batch::with_capacity(records.len() + 1);
        let mut nonces = Nonces::new(&self.rng, records.len());
        let mut metas = Vec::with_capacity(records.len());
        // The batch's journal entry: each new record's (pseudonym ‖ record id).
        let mut journal_entry = Vec::with_capacity(records.len() * 60);
        let mut journal_records = 0;
        // Each record's owner, by blind index (which names one collection and key).
        let mut owners: BlindMap<Pseudonym> =
            BlindMap::with_capacity_and_hasher(records.len(), Default::default());
        // The records' blind indexes in order, for the claims and the errors.
        let mut blinds: Vec<BlindIndex> = Vec::with_capacity(records.len());
        // A batch names few subjects many times: look each up once.
        let mut subjects: HashMap<&SubjectId, (Region, Pseudonym, Arc<DataKey>)> = HashMap::new();
        // And asks the policy the same few questions (a class, a home) many times: ask each
        // once. Placement depends on nothing else.
        let mut placements: Vec<(DataClass, Region, Decision)> = Vec::new();
        for r in records {
            let (home, pseudonym, data_key) = match subjects.get(r.subject) {
                Some(found) => found,
                None => {
                    let (home, pseudonym) = self.registered_home(r.subject)?.ok_or_else(|| {
                        StoreError::SubjectNotRegistered {
                            subject: self.pseudonyms.pseudonym(r.subject),
                            region: self.region.clone(),
                        }
                    })?;
                    let data_key = self.live_key(&pseudonym)?;
                    subjects
                        .entry(r.subject)
                        .or_insert((home, pseudonym, data_key))
                }
            };
            let pseudonym = *pseudonym;
            let blind = self
                .pseudonyms
                .blind_index(r.collection.as_str(), r.key.as_str());
            let asked = placements
                .iter()
                .position(|(class, asked, _)| *class == r.class && asked == home);
            let decision = match asked {
                Some(i) => &placements[i].2,
                None => {
                    let decision = self.policy.may_rest_in(r.class, home, &self.region)?;
                    placements.push((r.class, home.clone(), decision));
                    &placements[placements.len() - 1].2
                }
            };
            if !decision.allowed {
                return Err(StoreError::PlacementRefused(Box::new(PlacementRefusal {
                    collection: r.collection.clone(),
                    key: blind,
                    subject: pseudonym,
                    class: r.class,
                    home: home.clone(),
                    region: self.region.clone(),
                    rule: decision.rule.clone(),
                })));
            }
            // A key belongs to one subject; overwriting another's record would orphan it in
            // that subject's index and escape their shred. Here within the batch; against the
            // stored records below, by the backend.
            match owners.insert(blind, pseudonym) {
                Some(earlier) if earlier != pseudonym => {
                    return Err(StoreError::KeyHeldByOtherSubject {
                        collection: r.collection.clone(),
                        key: blind,
                    });
                }
                // The same key twice in one batch: the last value wins, one journal entry.
                Some(_) => {}
                None => {
                    journal_entry.extend_from_slice(&pseudonym.0);
                    layout::push_id(&mut journal_entry, r.collection.as_str(), &blind);
                    journal_records += 1;
                }
            }
            let sealed = self.seal(
                data_key,
                &pseudonym,
                r.class,
                r.collection.as_str(),
                &blind,
                r.key.as_str(),
                r.value,
                &mut nonces,
            )?;
            debug_assert_eq!(sealed.get(OWNER), Some(&pseudonym.0[..]));
            batch.put(layout::record(r.collection.as_str(), &blind), sealed);
            blinds.push(blind);
            metas.push(RecordMeta {
                collection: r.collection.clone(),
                key: r.key.clone(),
                subject: r.subject.clone(),
                class: r.class,
                data_key_version: data_key.version(),
            });
        }
        let held = |i: usize| StoreError::KeyHeldByOtherSubject {
            collection: records[i].collection.clone(),
            key: blinds[i],
        };
        if batch.is_empty() {
            return Ok(metas);
        }
        let claim = self.claims.claim(blinds.iter());
        let journal_key = self.next_journal_key();
        let written = self.write_records(batch, journal_key, journal_entry);
        drop(claim);
        let due = {
            let mut journal = lock(&self.journal);
            journal.in_flight -= 1;
            if written.as_ref().is_ok_and(Option::is_none) {
                journal.records += journal_records;
                journal.batches += 1;
            }
            journal.due()
        };
        if let Some(i) = written? {
            return Err(held(i));
        }
        if due {
            // The batch is durable and indexed (by the journal) whatever the fold does: a fold
            // that fails leaves the journal as it was, for the next batch or shred to fold.
            let _ = self.fold_journal();
        }
        drop(gate);
        Ok(metas)
    }

    /// Writes a batch of sealed records (puts only, one per record) and its journal entry
    /// (atomically, or journal entry first for one record) and flushes; `Some(i)` if the `i`th
    /// record's key is another subject's, with nothing written.
    fn write_records(
        &self,
        mut batch: Batch,
        journal_key: Vec<u8>,
        journal_entry: Vec<u8>,
    ) -> Result<Option<usize>, StoreError> {
        let one = match batch.ops() {
            [BatchOp::Put { key, value }] => Some((key, value)),
            _ => None,
        };
        // On a backend other processes write too (PostgreSQL), the owner check must be inside
        // the write's own transaction even for one record: a read, then two writes, would let
        // another process take the key in between, and both puts would be acknowledged.
        if let Some((key, value)) = one.filter(|_| self.backend.exclusive()) {
            // One record: two plain writes cost sled half what a two-write atomic batch does.
            // The journal entry goes first, so a crash between the two leaves at worst an index
            // entry without its record (skipped by reads, left alone by a shred), never a
            // record that its subject's index misses — and even such a record would be sealed
            // under a key the subject's shred destroys.
            let current = self.backend.get(key)?;
            if current
                .as_deref()
                .and_then(|old| old.get(OWNER))
                .is_some_and(|old| Some(old) != value.get(OWNER))
            {
                return Ok(Some(0));
            }
            self.backend.put(&journal_key, &journal_entry)?;
            self.backend.put(key, value)?;
        } else {
            // Several, or one on a shared backend: one atomic batch, refused whole if any key is
            // another subject's.
            let records = batch.len();
            batch.put(journal_key, journal_entry);
            let keys: Vec<&[u8]> = batch.ops()[..records].iter().map(BatchOp::key).collect();
            if let Some(i) = self.backend.apply_owned(&batch, &keys, OWNER)? {
                return Ok(Some(i));
            }
        }
        self.backend.flush()?;
        Ok(None)
    }

    /// Deletes the record at (`collection`, `key`); returns whether there was one. Durable when
    /// it returns.
    pub fn delete(&self, collection: &Collection, key: &RecordKey) -> Result<bool, StoreError> {
        let _gate = self.gate.shared();
        let blind = self
            .pseudonyms
            .blind_index(collection.as_str(), key.as_str());
        let record_key = layout::record(collection.as_str(), &blind);
        // No put of this handle writes the key between the read of its owner and the delete.
        let _claim = self.claims.claim(std::iter::once(&blind));
        let Some(sealed) = self.backend.get(&record_key)? else {
            return Ok(false);
        };
        let mut batch = Batch::new();
        batch.delete(record_key.clone());
        // No fold of this handle while the owner's lists change. The journal may keep naming the
        // record until its next fold; reads skip an id without its record.
        let _journal = lock(&self.journal);
        let owner = record::parse_header(&sealed).ok().map(|(h, _)| h.pseudonym);
        if let Some(owner) = &owner {
            let prefix = layout::subject_prefix(owner);
            for item in self.backend.scan_prefix(&prefix) {
                let (list_key, list) = item?;
                let ids = parse_ids(&list_key, &list)?;
                if ids.iter().any(|(c, b)| c == collection && *b == blind) {
                    let mut kept = Vec::with_capacity(list.len());
                    for (c, b) in ids.iter().filter(|(c, b)| c != collection || *b != blind) {
                        layout::push_id(&mut kept, c.as_str(), b);
                    }
                    if kept.is_empty() {
                        batch.delete(list_key);
                    } else {
                        batch.put(list_key, kept);
                    }
                }
            }
        }
        self.backend.apply(&batch)?;
        self.backend.flush()?;
        Ok(true)
    }

    fn live_key(&self, pseudonym: &Pseudonym) -> Result<Arc<DataKey>, StoreError> {
        match self.custodian.data_key(&self.region, pseudonym)? {
            DataKeyState::Live(key) => Ok(key),
            _ => Err(StoreError::NoDataKey {
                subject: *pseudonym,
                region: self.region.clone(),
            }),
        }
    }

    /// Seals `plaintext` as the record `record_key` of `collection` (found under `blind`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn seal(
        &self,
        key: &DataKey,
        pseudonym: &Pseudonym,
        class: DataClass,
        collection: &str,
        blind: &BlindIndex,
        record_key: &str,
        plaintext: &[u8],
        nonces: &mut Nonces<'_>,
    ) -> Result<Vec<u8>, StoreError> {
        let mut key_len = [0; 2];
        let payload = record::payload_parts(&mut key_len, record_key, plaintext);
        let payload_len = 2 + record_key.len() + plaintext.len();
        let mut out = Vec::with_capacity(record::HEADER_LEN + 12 + payload_len + aead::TAG_LEN);
        record::write_header(&mut out, class, pseudonym, key.version());
        record::with_record_aad(
            &self.region,
            class,
            collection,
            blind,
            key.subject(),
            key.version(),
            |aad| aead::seal_parts_into(key.aead(), nonces, aad, &payload, &mut out),
        )?;
        debug_assert_eq!(
            out.len(),
            record::HEADER_LEN + 12 + payload_len + aead::TAG_LEN
        );
        Ok(out)
    }
}
