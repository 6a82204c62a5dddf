//! `SealedStore`: a region's records, sealed, placed by the policy, shreddable.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use domicile_residency::{DataClass, Decision, Region, ResidencyPolicy, Subject, SubjectId};
use ring::rand::SystemRandom;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::aead::{self, Nonces, PublicRandom};
use crate::backend::{Backend, Batch, BatchOp};
use crate::custodian::{
    BlindIndex, BlindMap, DataKey, DataKeyState, KeyCustodian, KeyedHasher, Pseudonym,
    PseudonymKey, RotationReport,
};
use crate::read_ahead::{ReadAhead, ScanThread, SplitScan};
use crate::record::{self, layout, RawRecord, Record, RecordMeta};
use crate::{Collection, PlacementRefusal, RecordKey, SledBackend, StoreError};

/// The collection name registry entries are sealed under (reserved: `Collection::parse`
/// refuses names starting with `_`).
const REGISTRY_COLLECTION: &str = "_registry";
/// The metadata entry's prefix; the format version and a newline follow it.
const META_PREFIX: &[u8] = b"domicile-store ";
/// A record's id in an index: its collection and blind index.
type RecordId = (Collection, BlindIndex);

/// Where a sealed record names its owner: the subject's pseudonym, after the format and class
/// bytes of its header (`record::write_header`).
const OWNER: std::ops::Range<usize> = 2..18;
/// The journal is folded into subject lists once it holds this many record ids…
const FOLD_RECORDS: usize = 32_768;
/// …or this many batches.
const FOLD_BATCHES: usize = 512;
/// How many format 2 index entries one atomic step of the migration rewrites (whole subjects
/// at a time, so it may take a few more).
const MIGRATE_STEP: usize = 50_000;

/// Which embedded database a store directory uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum BackendKind {
    /// sled 0.34.7, the default.
    #[default]
    Sled,
    /// redb (cargo feature `redb`).
    #[cfg(feature = "redb")]
    Redb,
}

/// A subject in the registry, with the home region the store's policy gives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredSubject {
    /// The subject and its attributes, as registered.
    pub subject: Subject,
    /// Their home region under the store's policy.
    pub home: Region,
}

/// One record of a [`SealedStore::put_batch`].
#[derive(Debug, Clone, Copy)]
pub struct NewRecord<'a> {
    /// Whose record it is (registered in the store).
    pub subject: &'a SubjectId,
    /// How sensitive it is.
    pub class: DataClass,
    /// The collection.
    pub collection: &'a Collection,
    /// The key in the collection.
    pub key: &'a RecordKey,
    /// The plaintext value.
    pub value: &'a [u8],
}

/// What a shred does with the records of the subjects it shreds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RecordDeletion {
    /// Delete them, their index entries and registry entry in the same durable step.
    #[default]
    Now,
    /// Leave them where they are, unreadable, for one [`SealedStore::purge`] of the whole store
    /// once every subject in it is shredded: for a region a split empties, where dropping the
    /// store wholesale costs a fraction of deleting each record. Until the purge the store
    /// holds them as an interrupted shred leaves them (every read skips them).
    Deferred,
}

/// What [`SealedStore::rebuild_index`] found and wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexRebuild {
    /// Subjects the records name as their owners: one fresh list each.
    pub subjects: usize,
    /// Records indexed.
    pub records: usize,
    /// Records left out because their header names no owner or their backend key no
    /// collection (cut short or rewritten on disk; they fail to open anyway).
    pub unowned: usize,
    /// Subject lists replaced, whatever their state.
    pub lists_replaced: usize,
    /// Index journal entries dropped, whatever their state.
    pub journal_entries: usize,
}

/// What [`SealedStore::shred_subject`] destroyed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShredReceipt {
    /// The subject.
    pub subject: SubjectId,
    /// The region whose store and custodian were shredded.
    pub region: Region,
    /// The version of the destroyed data key.
    pub data_key_version: u32,
    /// Whether this call destroyed the key (false: an earlier, interrupted shred had).
    pub key_destroyed_now: bool,
    /// Every record deleted, as (collection, blind index): the keys themselves are not
    /// recoverable once the data key is gone, and a receipt names no record key.
    pub records: Vec<(Collection, BlindIndex)>,
    /// Whether the subject's registry entry was deleted.
    pub registry_entry_deleted: bool,
}

/// A region's sealed records.
///
/// Every value is sealed with AES-256-GCM under its subject's data key before it reaches the
/// [`Backend`]; data keys stay with the [`KeyCustodian`]. Every put is checked against the
/// [`ResidencyPolicy`] and is durable when it returns. See the crate docs for an example.
pub struct SealedStore {
    region: Region,
    policy: Arc<dyn ResidencyPolicy>,
    custodian: Arc<dyn KeyCustodian>,
    /// Opens the records of long scans, and reads parts of long collection scans; started by
    /// the first. Before `backend`, so that dropping the store ends the thread before the
    /// backend closes.
    scan_thread: ScanThread,
    /// Shared with the scan thread while it reads part of a scan.
    backend: Arc<dyn Backend>,
    pseudonyms: Arc<PseudonymKey>,
    /// Opens sealed records; shared with a scan's read-ahead thread.
    opener: Arc<Opener>,
    registry: RwLock<HashMap<SubjectId, (RegisteredSubject, Pseudonym)>>,
    rng: SystemRandom,
    /// Writers hold it shared, shredding holds it exclusively, so no put can slip a record in
    /// between a shred's key destruction and its record deletion.
    shred_gate: RwLock<()>,
    /// The index journal's unfolded entries (see `record::layout`).
    journal: Mutex<Journal>,
    /// The record keys this handle's writes are checking and writing (see [`KeyClaims`]).
    claims: KeyClaims,
}

/// The record keys that this handle's writes are between checking their owner and writing
/// them. A write claims all of its keys first, waiting while another write holds any of them,
/// so that two writes racing for a key as different subjects cannot both pass the check and
/// both be acknowledged (the later would overwrite the earlier's record: a write lost to its
/// subject). An embedded backend is one process's; across handles on PostgreSQL the check is
/// inside the write's own transaction ([`Backend::apply_owned`]).
#[derive(Default)]
struct KeyClaims {
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

/// This handle's part in the index journal (see `record::layout`).
#[derive(Debug, Default)]
struct Journal {
    /// This handle's part of every journal key it writes: random, so that keys written by
    /// another handle on the same database, or after a reopen, never meet it.
    writer: [u8; 8],
    next_seq: u64,
    /// Record ids and entries this handle wrote to the journal since it last folded it (at
    /// open: what the journal held).
    records: usize,
    batches: usize,
    /// Journal keys handed out whose batch has not yet been written or failed.
    in_flight: usize,
    /// Whether the journal is known to be empty: on a backend only this handle writes
    /// ([`Backend::exclusive`]), after a fold that no batch was in flight during, until the next
    /// journal key is handed out. Reads of a subject's index then skip reading the journal.
    known_empty: bool,
}

impl Journal {
    fn due(&self) -> bool {
        self.records >= FOLD_RECORDS || self.batches >= FOLD_BATCHES
    }
}

/// A subject's index as read.
#[derive(Default)]
struct SubjectIndex {
    /// Their record ids, each once, in id order.
    ids: Vec<RecordId>,
    /// The backend keys of their subject lists.
    lists: Vec<Vec<u8>>,
    /// Whether the journal held any entry (of anyone's).
    journal_pending: bool,
}

/// The journal's entries as read: their keys, and the record ids they name by subject.
#[derive(Default)]
struct JournalRead {
    keys: Vec<Vec<u8>>,
    ids: HashMap<Pseudonym, Vec<RecordId>>,
    records: usize,
}

impl fmt::Debug for SealedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedStore")
            .field("region", &self.region)
            .field("policy", &self.policy.id().to_string())
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl SealedStore {
    /// The store directory of `region` under a data root: `<data>/<region>/store`.
    pub fn store_dir(data_root: impl AsRef<Path>, region: &Region) -> PathBuf {
        data_root.as_ref().join(region.as_str()).join("store")
    }

    /// Opens (creating if needed) `region`'s store under `data_root`, on sled.
    ///
    /// The region must be one of the policy's regions. Keys come from `custodian`, which must
    /// keep them outside `data_root`.
    pub fn open(
        data_root: impl AsRef<Path>,
        region: Region,
        policy: Arc<dyn ResidencyPolicy>,
        custodian: Arc<dyn KeyCustodian>,
    ) -> Result<Self, StoreError> {
        Self::open_with(data_root, BackendKind::Sled, region, policy, custodian)
    }

    /// Like [`open`](Self::open), on the chosen backend.
    pub fn open_with(
        data_root: impl AsRef<Path>,
        kind: BackendKind,
        region: Region,
        policy: Arc<dyn ResidencyPolicy>,
        custodian: Arc<dyn KeyCustodian>,
    ) -> Result<Self, StoreError> {
        policy.check_region(&region)?;
        let dir = Self::store_dir(data_root, &region);
        let backend: Box<dyn Backend> = match kind {
            BackendKind::Sled => Box::new(SledBackend::open(&dir)?),
            #[cfg(feature = "redb")]
            BackendKind::Redb => Box::new(crate::RedbBackend::open(&dir)?),
        };
        Self::with_backend(backend, region, policy, custodian)
    }

    /// A store on any backend, such as a distributed database.
    pub fn with_backend(
        backend: Box<dyn Backend>,
        region: Region,
        policy: Arc<dyn ResidencyPolicy>,
        custodian: Arc<dyn KeyCustodian>,
    ) -> Result<Self, StoreError> {
        policy.check_region(&region)?;
        let meta = store_meta(&region);
        match backend.get(layout::META)? {
            Some(found) if found == meta => {}
            Some(found) if parse_meta(&found) == (Some(2), region.as_str().to_owned()) => {
                migrate_from_v2(backend.as_ref(), &region)?;
            }
            Some(found) => {
                let (version, found_region) = parse_meta(&found);
                if version != Some(record::STORE_FORMAT) {
                    return Err(StoreError::UnsupportedStoreFormat {
                        found: version.map_or_else(|| "unknown".to_owned(), |v| v.to_string()),
                        supported: record::STORE_FORMAT,
                    });
                }
                return Err(StoreError::RegionMismatch {
                    expected: region,
                    found: found_region,
                });
            }
            None => {
                backend.put(layout::META, &meta)?;
                backend.flush()?;
            }
        }
        let pseudonyms = custodian.pseudonym_key(&region)?;
        let rng = SystemRandom::new();
        // Counted, not parsed: a malformed entry is an error for the subject reads and shreds
        // that need the index, not for opening the store (gets and collection scans do not).
        let unfolded = count_journal(backend.as_ref())?;
        let journal = Journal {
            writer: PublicRandom::new(&rng, 1).take()?,
            next_seq: 0,
            records: unfolded.records,
            batches: unfolded.entries,
            in_flight: 0,
            known_empty: backend.exclusive() && unfolded.entries == 0,
        };
        let opener = Arc::new(Opener {
            region: region.clone(),
            custodian: custodian.clone(),
            pseudonyms: pseudonyms.clone(),
        });
        Ok(SealedStore {
            region,
            policy,
            custodian,
            backend: Arc::from(backend),
            pseudonyms,
            opener,
            scan_thread: ScanThread::default(),
            registry: RwLock::new(HashMap::new()),
            rng,
            shred_gate: RwLock::new(()),
            journal: Mutex::new(journal),
            claims: KeyClaims::default(),
        })
    }

    /// Whether `backend` holds a sealed store already (its metadata entry), read without
    /// writing anything: what a caller checks before opening a store it expects to exist, since
    /// [`with_backend`](Self::with_backend) makes an empty backend a new, empty store.
    pub fn holds_store(backend: &dyn Backend) -> Result<bool, StoreError> {
        Ok(backend.get(layout::META)?.is_some())
    }

    /// The region this store holds.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The residency policy placement is checked against.
    pub fn policy(&self) -> &Arc<dyn ResidencyPolicy> {
        &self.policy
    }

    /// The subject's pseudonym in this region: how errors and indexes name them.
    pub fn pseudonym(&self, subject: &SubjectId) -> Pseudonym {
        self.pseudonyms.pseudonym(subject)
    }

    /// The record's blind index in this region: how errors and the backend name it.
    pub fn blind_index(&self, collection: &Collection, key: &RecordKey) -> BlindIndex {
        self.pseudonyms
            .blind_index(collection.as_str(), key.as_str())
    }

    /// The key custodian.
    pub fn custodian(&self) -> &Arc<dyn KeyCustodian> {
        &self.custodian
    }

    /// The backend, which holds only ciphertext and the key layout.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// Registers (or updates) a subject: asks the policy for their home region (an unknown or
    /// contradictory residence is an error), makes sure they have a data key, and stores their
    /// attributes sealed under it. Returns the home region.
    ///
    /// The home region is recomputed by the store's policy on every use rather than stored, so a
    /// store opened under a new policy (a split) places records by the new policy's rules.
    pub fn register_subject(&self, subject: &Subject) -> Result<Region, StoreError> {
        let mut homes = self.register_subjects(std::slice::from_ref(subject))?;
        Ok(homes.remove(0))
    }

    /// Registers many subjects at once: [`register_subject`](Self::register_subject) for each,
    /// with their data keys created together and one atomic, durable write of their registry
    /// entries. Returns each one's home region, in order.
    pub fn register_subjects(&self, subjects: &[Subject]) -> Result<Vec<Region>, StoreError> {
        self.register(subjects, true)
    }

    /// Registers `subjects` and writes `records` (of these subjects or of any registered one)
    /// with one flush for both, as an ingest writes new people with their data: what
    /// [`register_subjects`](Self::register_subjects) then [`put_batch`](Self::put_batch)
    /// do, one durable flush fewer. When it returns, the registrations and the records are
    /// durable. The registrations are written first: a crash leaves the subjects registered
    /// with their records, or registered without them (as a crash between those two calls
    /// would), or neither, never records without their subject. If a record is refused, the
    /// subjects stay registered (durable) and no record is written, as with the two calls.
    pub fn register_and_put(
        &self,
        subjects: &[Subject],
        records: &[NewRecord<'_>],
    ) -> Result<(Vec<Region>, Vec<RecordMeta>), StoreError> {
        let homes = self.register(subjects, false)?;
        match self.put_batch(records) {
            Ok(metas) => Ok((homes, metas)),
            Err(refused) => {
                // The registrations are kept, and made durable, as register_subjects would
                // have; the refusal is what the caller needs to hear.
                self.backend.flush()?;
                Err(refused)
            }
        }
    }

    /// Registers `subjects`; flushes the backend after if `flush` (else the caller's next
    /// flush makes them durable, before or with what it writes after them).
    fn register(&self, subjects: &[Subject], flush: bool) -> Result<Vec<Region>, StoreError> {
        let homes = subjects
            .iter()
            .map(|s| self.policy.home_region(s))
            .collect::<Result<Vec<_>, _>>()?;
        let _gate = read_lock(&self.shred_gate);
        let ids: Vec<SubjectId> = subjects.iter().map(|s| s.id.clone()).collect();
        let keys = self.custodian.create_data_keys(&self.region, &ids)?;
        let mut batch = Batch::new();
        let mut entries = Vec::with_capacity(subjects.len());
        let mut nonces = Nonces::new(&self.rng, subjects.len());
        for ((subject, key), home) in subjects.iter().zip(&keys).zip(&homes) {
            let pseudonym = self.pseudonyms.pseudonym(&subject.id);
            let plaintext = serde_json::to_vec(subject)
                .expect("a Subject (strings and country codes) always encodes as JSON");
            let blind = self
                .pseudonyms
                .blind_index(REGISTRY_COLLECTION, subject.id.as_str());
            let sealed = self.seal(
                key,
                &pseudonym,
                DataClass::Protected,
                REGISTRY_COLLECTION,
                &blind,
                subject.id.as_str(),
                &plaintext,
                &mut nonces,
            )?;
            batch.put(layout::registry(&pseudonym), sealed);
            entries.push((
                RegisteredSubject {
                    subject: subject.clone(),
                    home: home.clone(),
                },
                pseudonym,
            ));
        }
        match batch.ops() {
            [] => {}
            // One subject (`register_subject`): a plain write costs sled half what an atomic
            // batch of one does, and one write is atomic anyway.
            [crate::BatchOp::Put { key, value }] => self.backend.put(key, value)?,
            _ => self.backend.apply(&batch)?,
        }
        if flush {
            self.backend.flush()?;
        }
        let mut registry = write_lock(&self.registry);
        for (entry, pseudonym) in entries {
            registry.insert(entry.subject.id.clone(), (entry, pseudonym));
        }
        Ok(homes)
    }

    /// The registered subject, with their home region under the store's policy; `None` if the
    /// subject is not registered (or was shredded).
    pub fn subject(&self, id: &SubjectId) -> Result<Option<RegisteredSubject>, StoreError> {
        Ok(self.registered(id)?.map(|(entry, _)| entry))
    }

    /// The registered subject's home region and pseudonym, without a copy of their entry.
    fn registered_home(&self, id: &SubjectId) -> Result<Option<(Region, Pseudonym)>, StoreError> {
        if let Some((entry, pseudonym)) = read_lock(&self.registry).get(id) {
            return Ok(Some((self.policy.home_region(&entry.subject)?, *pseudonym)));
        }
        Ok(self
            .registered(id)?
            .map(|(entry, pseudonym)| (entry.home, pseudonym)))
    }

    pub(crate) fn registered(
        &self,
        id: &SubjectId,
    ) -> Result<Option<(RegisteredSubject, Pseudonym)>, StoreError> {
        if let Some(found) = read_lock(&self.registry).get(id) {
            let mut found = found.clone();
            found.0.home = self.policy.home_region(&found.0.subject)?;
            return Ok(Some(found));
        }
        let pseudonym = self.pseudonyms.pseudonym(id);
        let Some(sealed) = self.backend.get(&layout::registry(&pseudonym))? else {
            return Ok(None);
        };
        self.open_registry_entry(id, pseudonym, sealed)
    }

    /// Opens the registry entry `sealed` of subject `id` and caches it.
    fn open_registry_entry(
        &self,
        id: &SubjectId,
        pseudonym: Pseudonym,
        sealed: Vec<u8>,
    ) -> Result<Option<(RegisteredSubject, Pseudonym)>, StoreError> {
        let collection = Collection::reserved(REGISTRY_COLLECTION);
        let blind = self
            .pseudonyms
            .blind_index(REGISTRY_COLLECTION, id.as_str());
        let opened = self
            .opener
            .open_sealed(&collection, &blind, sealed, Some(id.as_str()))?;
        let plaintext = match opened {
            Opened::Plain { plaintext, .. } => plaintext,
            // An interrupted shred leaves the entry behind its destroyed key: not registered.
            Opened::Shredded => return Ok(None),
        };
        let subject: Subject =
            serde_json::from_slice(&plaintext).map_err(|e| StoreError::Authentication {
                collection: collection.clone(),
                key: blind.to_string(),
                reason: format!("the registry entry does not decode: {e}"),
            })?;
        if &subject.id != id {
            return Err(StoreError::Authentication {
                collection,
                key: blind.to_string(),
                reason: "the registry entry names another subject".into(),
            });
        }
        let home = self.policy.home_region(&subject)?;
        let entry = RegisteredSubject { subject, home };
        write_lock(&self.registry).insert(id.clone(), (entry.clone(), pseudonym));
        Ok(Some((entry, pseudonym)))
    }

    /// Every subject registered in this store, with their home region under the store's policy,
    /// in pseudonym order (which reveals nothing about who they are). A registry entry whose
    /// data key was destroyed (an interrupted shred) is left out.
    pub fn subjects(&self) -> Result<Vec<RegisteredSubject>, StoreError> {
        /// Registry entries whose data keys are asked for at once.
        const CHUNK: usize = 4096;
        let mut out = Vec::new();
        let mut chunk: Vec<(Pseudonym, Vec<u8>)> = Vec::with_capacity(CHUNK);
        let mut entries = self.backend.scan_prefix(&[layout::REGISTRY]).peekable();
        while entries.peek().is_some() {
            chunk.clear();
            for item in entries.by_ref() {
                let (k, sealed) = item?;
                if let Ok(bytes) = <[u8; 16]>::try_from(&k[1..]) {
                    chunk.push((Pseudonym(bytes), sealed));
                    if chunk.len() == CHUNK {
                        break;
                    }
                }
            }
            // The custodian knows whose key answers to each pseudonym; a registry entry itself
            // opens only with that subject id in its AAD.
            let pseudonyms: Vec<Pseudonym> = chunk.iter().map(|(p, _)| *p).collect();
            let states = self.custodian.data_keys(&self.region, &pseudonyms)?;
            for ((pseudonym, sealed), state) in chunk.drain(..).zip(states) {
                let id = match state {
                    DataKeyState::Live(key) => key.subject().clone(),
                    _ => continue,
                };
                let cached = read_lock(&self.registry)
                    .get(&id)
                    .map(|(entry, _)| entry.clone());
                let entry = match cached {
                    Some(mut entry) => {
                        entry.home = self.policy.home_region(&entry.subject)?;
                        Some(entry)
                    }
                    // The entry is in hand: open it rather than read it again.
                    None => self
                        .open_registry_entry(&id, pseudonym, sealed)?
                        .map(|(entry, _)| entry),
                };
                out.extend(entry);
            }
        }
        Ok(out)
    }

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
        let gate = read_lock(&self.shred_gate);
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

    /// The record at (`collection`, `key`) decoded from JSON, or `None` if there is none.
    pub fn get<T: DeserializeOwned>(
        &self,
        collection: &Collection,
        key: &RecordKey,
    ) -> Result<Option<Record<T>>, StoreError> {
        let Some(raw) = self.get_raw(collection, key)? else {
            return Ok(None);
        };
        let value = raw.decode()?;
        Ok(Some(Record {
            meta: raw.meta,
            value,
        }))
    }

    /// The record at (`collection`, `key`) with its value as bytes, or `None` if there is none.
    /// A record that does not authenticate is [`StoreError::Authentication`], naming the key.
    pub fn get_raw(
        &self,
        collection: &Collection,
        key: &RecordKey,
    ) -> Result<Option<RawRecord>, StoreError> {
        let blind = self
            .pseudonyms
            .blind_index(collection.as_str(), key.as_str());
        let Some(sealed) = self
            .backend
            .get(&layout::record(collection.as_str(), &blind))?
        else {
            return Ok(None);
        };
        self.opener
            .open_record(collection, &blind, sealed, Some(key))
            .map(Some)
    }

    /// Deletes the record at (`collection`, `key`); returns whether there was one. Durable when
    /// it returns.
    pub fn delete(&self, collection: &Collection, key: &RecordKey) -> Result<bool, StoreError> {
        let _gate = read_lock(&self.shred_gate);
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

    /// Every record of the subject, ordered by collection name length, then name, then key;
    /// none once they are shredded (even before their records are deleted).
    pub fn scan_subject(&self, subject: &SubjectId) -> Result<Vec<RawRecord>, StoreError> {
        let pseudonym = self.pseudonyms.pseudonym(subject);
        let SubjectIndex {
            ids,
            journal_pending,
            ..
        } = self.subject_lists(&pseudonym)?;
        if journal_pending {
            // Fold it now, so that the next subject's read (a split or an export reads one
            // subject after another) finds an empty journal. The ids are read already: a fold
            // that fails changes nothing here.
            let _gate = read_lock(&self.shred_gate);
            let _ = self.fold_journal();
        }
        let mut out = Vec::new();
        for (collection, blind) in ids {
            let record_key = layout::record(collection.as_str(), &blind);
            // An index entry without its record is what an interrupted delete leaves, and a
            // record whose key is destroyed what a shred leaves for a purge: skip both.
            if let Some(sealed) = self.backend.get(&record_key)? {
                // An id whose record another subject now holds (its deletion was interrupted,
                // then the key reused) is not this subject's: skip it, whatever the index says.
                if sealed.get(OWNER) != Some(&pseudonym.0[..]) {
                    continue;
                }
                match self.opener.open_record(&collection, &blind, sealed, None) {
                    Err(StoreError::SubjectShredded { .. }) => {}
                    record => out.push(record?),
                }
            }
        }
        // Index order is blind-index order, which says nothing; callers get key order.
        out.sort_by(|a, b| a.meta.cmp_in_subject_order(&b.meta));
        Ok(out)
    }

    /// Every record of the collection, in blind-index order (which reveals nothing about the
    /// keys), opened as the iterator is advanced. A long scan on an embedded backend reads and
    /// opens every other part of the collection on a second thread (see `read_ahead`); the
    /// order and the errors are the same either way.
    pub fn scan_collection<'a>(
        &'a self,
        collection: &'a Collection,
    ) -> impl Iterator<Item = Result<RawRecord, StoreError>> + 'a {
        SplitScan::new(
            &self.backend,
            &self.opener,
            &self.scan_thread,
            collection.clone(),
            layout::collection_prefix(collection.as_str()),
            self.backend.exclusive(),
        )
    }

    /// Every record of the region, in key order (collection, then blind index: nothing about
    /// the keys), opened as the iterator is advanced (a long scan on an embedded backend opens
    /// records on a second thread while this one reads the backend). A record left behind an interrupted
    /// shred (its data key destroyed) is skipped, as a subject scan skips it.
    ///
    /// One sequential pass over the store: to list a whole region (an inventory), this costs a
    /// fraction of a [`scan_subject`](Self::scan_subject) per subject, which reads every record
    /// at a random place.
    pub fn scan_records(&self) -> impl Iterator<Item = Result<RawRecord, StoreError>> + '_ {
        let sealed = self
            .backend
            .scan_prefix(&[layout::RECORD])
            .map(move |item| {
                let (k, sealed) = item?;
                let (collection, blind) =
                    collection_and_blind(&k[1..]).ok_or_else(|| StoreError::Backend {
                        backend: self.backend.name(),
                        operation: "scan the records",
                        detail: format!("a malformed record key of {} bytes", k.len()),
                    })?;
                Ok((collection, blind, sealed))
            });
        ReadAhead::new(
            sealed,
            &self.opener,
            &self.scan_thread,
            self.backend.exclusive(),
        )
        .filter(|opened| !matches!(opened, Err(StoreError::SubjectShredded { .. })))
    }

    /// Crypto-shreds a subject: destroys their data key with the custodian — from then on none of
    /// their records opens, not even from a copy of the data directory taken earlier — then
    /// deletes their records and registry entry. Calling it again after an interruption finishes
    /// the job.
    pub fn shred_subject(&self, subject: &SubjectId) -> Result<ShredReceipt, StoreError> {
        let mut receipts = self.shred_subjects(std::slice::from_ref(subject))?;
        Ok(receipts.remove(0))
    }

    /// Crypto-shreds many subjects at once: [`shred_subject`](Self::shred_subject) for each,
    /// with their data keys destroyed together and one atomic, durable deletion of all their
    /// records. Returns a receipt per subject, in order.
    pub fn shred_subjects(&self, subjects: &[SubjectId]) -> Result<Vec<ShredReceipt>, StoreError> {
        self.shred_subjects_with(subjects, RecordDeletion::Now)
    }

    /// [`shred_subjects`](Self::shred_subjects), with the records deleted now or left for a
    /// wholesale [`purge`](Self::purge) ([`RecordDeletion::Deferred`]; the receipts then say
    /// the registry entries were not deleted). The keys are destroyed either way, so the
    /// records open nowhere from the moment this returns.
    pub fn shred_subjects_with(
        &self,
        subjects: &[SubjectId],
        deletion: RecordDeletion,
    ) -> Result<Vec<ShredReceipt>, StoreError> {
        self.shred_subjects_announced(subjects, deletion, |_| Ok(()))
    }

    /// [`shred_subjects_with`](Self::shred_subjects_with), telling `announce` the receipts it
    /// is about to give before the first key is destroyed: a caller that must account for
    /// every shred (a split's journal, which signs them into its report) records them there,
    /// so a crash between the keys destroyed and the receipts returned loses none. The
    /// announced receipts are what the shred then returns, but for `key_destroyed_now`, which
    /// is a prediction until the keys are destroyed. If `announce` fails, nothing is destroyed
    /// and the shred is [`StoreError::ShredNotStarted`] with its detail.
    pub fn shred_subjects_announced(
        &self,
        subjects: &[SubjectId],
        deletion: RecordDeletion,
        announce: impl FnOnce(&[ShredReceipt]) -> Result<(), String>,
    ) -> Result<Vec<ShredReceipt>, StoreError> {
        let _gate = write_lock(&self.shred_gate);
        // Every id of the subjects in their lists, none left in the journal. A corrupt index
        // does not stop a shred: the subjects' records are then found by their owner.
        let mut by_owner: Option<HashMap<Pseudonym, SubjectIndex>> = None;
        match self.fold_journal() {
            Err(StoreError::CorruptIndex { .. }) => by_owner = Some(self.index_by_owner()?),
            other => other?,
        }
        // Everything the receipts say is read before any key is destroyed, so that it can be
        // announced first.
        let mut batch = Batch::new();
        let mut receipts = Vec::with_capacity(subjects.len());
        let pseudonyms: Vec<Pseudonym> = subjects
            .iter()
            .map(|s| self.pseudonyms.pseudonym(s))
            .collect();
        let states = self.custodian.data_keys(&self.region, &pseudonyms)?;
        for ((subject, pseudonym), state) in subjects.iter().zip(pseudonyms).zip(states) {
            let (data_key_version, live) = match state {
                DataKeyState::Live(key) => (key.version(), true),
                DataKeyState::Shredded { version } => (version, false),
                DataKeyState::Absent => {
                    return Err(StoreError::NoDataKey {
                        subject: pseudonym,
                        region: self.region.clone(),
                    })
                }
            };
            let index = match &mut by_owner {
                Some(found) => found.remove(&pseudonym).unwrap_or_default(),
                None => match self.subject_lists(&pseudonym) {
                    Err(StoreError::CorruptIndex { .. }) => {
                        let mut found = self.index_by_owner()?;
                        let index = found.remove(&pseudonym).unwrap_or_default();
                        by_owner = Some(found);
                        index
                    }
                    other => other?,
                },
            };
            let SubjectIndex {
                ids: mut records,
                lists,
                ..
            } = index;
            let registry_key = layout::registry(&pseudonym);
            let registry_entry_deleted = match deletion {
                RecordDeletion::Now => {
                    // A record another subject now holds at one of the ids (see
                    // `scan_subject`) is theirs, not shredded.
                    let mut theirs = Vec::new();
                    for (i, (collection, blind)) in records.iter().enumerate() {
                        let key = layout::record(collection.as_str(), blind);
                        match self.backend.get(&key)? {
                            Some(sealed) if sealed.get(OWNER) != Some(&pseudonym.0[..]) => {
                                theirs.push(i);
                            }
                            _ => batch.delete(key),
                        }
                    }
                    for i in theirs.into_iter().rev() {
                        records.remove(i);
                    }
                    for list in lists {
                        batch.delete(list);
                    }
                    let present = self.backend.get(&registry_key)?.is_some();
                    batch.delete(registry_key);
                    present
                }
                RecordDeletion::Deferred => false,
            };
            receipts.push(ShredReceipt {
                subject: subject.clone(),
                region: self.region.clone(),
                data_key_version,
                key_destroyed_now: live,
                records,
                registry_entry_deleted,
            });
        }
        announce(&receipts).map_err(|detail| StoreError::ShredNotStarted {
            region: self.region.clone(),
            detail,
        })?;
        let destroyed = self.custodian.destroy_data_keys(&self.region, subjects)?;
        {
            let mut registry = write_lock(&self.registry);
            for subject in subjects {
                registry.remove(subject);
            }
        }
        for (receipt, destroyed) in receipts.iter_mut().zip(destroyed) {
            receipt.data_key_version = destroyed.data_key_version;
            receipt.key_destroyed_now = destroyed.kek_version.is_some();
        }
        if !batch.is_empty() {
            self.backend.apply(&batch)?;
            self.backend.flush()?;
        }
        Ok(receipts)
    }

    /// Deletes everything in the store wholesale — records, index and registry, all left behind
    /// by shreds (see [`RecordDeletion::Deferred`]) — then writes its metadata anew. Refused
    /// with [`StoreError::PurgeRefused`], deleting nothing, while any registered subject still
    /// has a live data key: a purge only ever removes what no key opens any more.
    ///
    /// Durable when it returns; calling it again after an interruption finishes the job.
    pub fn purge(&self) -> Result<(), StoreError> {
        let _gate = write_lock(&self.shred_gate);
        let live = self.subjects()?.len();
        if live > 0 {
            return Err(StoreError::PurgeRefused {
                region: self.region.clone(),
                live,
            });
        }
        write_lock(&self.registry).clear();
        let mut journal = lock(&self.journal);
        self.backend.clear()?;
        (journal.records, journal.batches) = (0, 0);
        journal.known_empty = self.backend.exclusive() && journal.in_flight == 0;
        self.backend.put(layout::META, &store_meta(&self.region))?;
        self.backend.flush()
    }

    /// Rewraps every data key of this region under a new key-encryption key, re-encrypting no
    /// record; finishes an interrupted rotation first.
    pub fn rotate_kek(&self) -> Result<RotationReport, StoreError> {
        self.custodian.rotate_kek(&self.region)
    }

    /// Makes every earlier write durable. Puts, deletes and shreds already flush before they
    /// return; this is for callers of [`backend`](Self::backend).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.backend.flush()
    }

    /// The subject's index: their record ids from the journal and their lists.
    ///
    /// The journal is read first: a fold (by any handle) that lands between the two reads
    /// moves ids from the journal, already read, into lists, not yet read.
    fn subject_lists(&self, pseudonym: &Pseudonym) -> Result<SubjectIndex, StoreError> {
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
    fn index_by_owner(&self) -> Result<HashMap<Pseudonym, SubjectIndex>, StoreError> {
        let mut found: HashMap<Pseudonym, SubjectIndex> = HashMap::new();
        for item in self.backend.scan_prefix(&[layout::RECORD]) {
            let (key, sealed) = item?;
            if let Some((owner, id)) = record_owner(&key, &sealed) {
                found.entry(owner).or_default().ids.push(id);
            }
        }
        for item in self.backend.scan_prefix(&[layout::SUBJECT_LIST]) {
            let (key, _) = item?;
            if let Some(owner) = key.get(1..17).and_then(|o| <[u8; 16]>::try_from(o).ok()) {
                found.entry(Pseudonym(owner)).or_default().lists.push(key);
            }
        }
        Ok(found)
    }

    /// Rebuilds the subject index from the records themselves: every record's header names its
    /// owner by pseudonym, so the index — journal and lists — is derived data, and this is the
    /// repair for [`StoreError::CorruptIndex`]. Every journal entry and list is replaced, in one
    /// atomic, durable batch, by one list per owner; nothing is decrypted and no key is needed.
    ///
    /// A record whose header was rewritten on disk to name another subject lands in that
    /// subject's list and fails to authenticate when read, as any record rewritten on disk
    /// does; it opens for no one. Writes and shreds through this handle wait;
    /// another handle's writes during the rebuild (PostgreSQL) keep their journal entries.
    pub fn rebuild_index(&self) -> Result<IndexRebuild, StoreError> {
        let _gate = write_lock(&self.shred_gate);
        let mut journal = lock(&self.journal);
        // The journal's keys before the records: a batch writes its records and its entry
        // atomically, so every entry read here has its records in the pass below. Values are
        // not read: they may be what is corrupt.
        let journal_keys = self
            .backend
            .scan_prefix(&[layout::JOURNAL])
            .map(|item| item.map(|(key, _)| key))
            .collect::<Result<Vec<_>, _>>()?;
        let mut owners: HashMap<Pseudonym, Vec<(Collection, BlindIndex)>> = HashMap::new();
        let mut unowned = 0;
        for item in self.backend.scan_prefix(&[layout::RECORD]) {
            let (key, sealed) = item?;
            match record_owner(&key, &sealed) {
                Some((owner, id)) => owners.entry(owner).or_default().push(id),
                None => unowned += 1,
            }
        }
        let mut batch = Batch::new();
        let mut lists_replaced = 0;
        for item in self.backend.scan_prefix(&[layout::SUBJECT_LIST]) {
            let (key, _) = item?;
            batch.delete(key);
            lists_replaced += 1;
        }
        for key in &journal_keys {
            batch.delete(key.clone());
        }
        let (subjects, mut records) = (owners.len(), 0);
        let mut tags = PublicRandom::new(&self.rng, subjects);
        for (pseudonym, ids) in owners {
            records += Self::put_subject_list(&mut batch, &pseudonym, ids, tags.take()?);
        }
        if !batch.is_empty() {
            self.backend.apply(&batch)?;
            self.backend.flush()?;
        }
        (journal.records, journal.batches) = (0, 0);
        journal.known_empty = self.backend.exclusive() && journal.in_flight == 0;
        Ok(IndexRebuild {
            subjects,
            records,
            unowned,
            lists_replaced,
            journal_entries: journal_keys.len(),
        })
    }

    /// A key for the next journal entry this handle writes.
    fn next_journal_key(&self) -> Vec<u8> {
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
    fn fold_journal(&self) -> Result<(), StoreError> {
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
            Self::put_subject_list(&mut batch, &pseudonym, ids, tags.take()?);
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

    /// Puts into `batch` a new list of the subject's record `ids` (sorted, each once) under
    /// `tag`, a fresh random one; returns how many ids it holds.
    fn put_subject_list(
        batch: &mut Batch,
        pseudonym: &Pseudonym,
        mut ids: Vec<(Collection, BlindIndex)>,
        tag: [u8; 8],
    ) -> usize {
        ids.sort_unstable();
        ids.dedup();
        let mut list = Vec::with_capacity(ids.len() * 44);
        for (collection, blind) in &ids {
            layout::push_id(&mut list, collection.as_str(), blind);
        }
        batch.put(layout::subject_list(pseudonym, tag), list);
        ids.len()
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

/// The owner a stored record's header names and the record's id from its backend key, read
/// without opening it; `None` if either no longer parses (cut short or rewritten on disk).
fn record_owner(key: &[u8], sealed: &[u8]) -> Option<(Pseudonym, (Collection, BlindIndex))> {
    let owner = <[u8; 16]>::try_from(sealed.get(OWNER)?).ok()?;
    let (collection, blind) = layout::split_collection_blind(key.get(1..)?)?;
    let collection = Collection::parse(std::str::from_utf8(collection).ok()?).ok()?;
    Some((Pseudonym(owner), (collection, blind)))
}

/// What opening a sealed record takes: the store's region, custodian and pseudonym key, in one
/// place a scan's read-ahead thread can share.
pub(crate) struct Opener {
    region: Region,
    custodian: Arc<dyn KeyCustodian>,
    pseudonyms: Arc<PseudonymKey>,
}

impl Opener {
    /// Opens the record sealed at `blind`; `requested` is the key it was looked up by, when the
    /// caller knows it (a get).
    pub(crate) fn open_record(
        &self,
        collection: &Collection,
        blind: &BlindIndex,
        sealed: Vec<u8>,
        requested: Option<&RecordKey>,
    ) -> Result<RawRecord, StoreError> {
        self.open_owned(collection.clone(), blind, sealed, requested)
    }

    /// [`open_record`](Self::open_record) for a caller that owns the collection name (a scan
    /// has one per record), which goes into the record's metadata as it is.
    pub(crate) fn open_owned(
        &self,
        collection: Collection,
        blind: &BlindIndex,
        sealed: Vec<u8>,
        requested: Option<&RecordKey>,
    ) -> Result<RawRecord, StoreError> {
        match self.open_sealed(&collection, blind, sealed, requested.map(RecordKey::as_str))? {
            Opened::Plain {
                key,
                plaintext,
                class,
                subject,
                data_key_version,
            } => {
                let key = match requested {
                    // open_sealed found the sealed key equal to it.
                    Some(requested) => requested.clone(),
                    None => {
                        RecordKey::from_string(key).map_err(|_| StoreError::Authentication {
                            collection: collection.clone(),
                            key: blind.to_string(),
                            reason: "the sealed record key is not a valid record key".into(),
                        })?
                    }
                };
                Ok(RawRecord {
                    meta: RecordMeta {
                        collection,
                        key,
                        subject,
                        class,
                        data_key_version,
                    },
                    value: plaintext,
                })
            }
            Opened::Shredded => Err(StoreError::SubjectShredded {
                collection: collection.clone(),
                key: blind.to_string(),
            }),
        }
    }

    /// Opens a sealed entry and, when the caller looked it up by a key (`requested`, from which
    /// `blind` was computed), checks that the key sealed inside is that key.
    fn open_sealed(
        &self,
        collection: &Collection,
        blind: &BlindIndex,
        mut sealed: Vec<u8>,
        requested: Option<&str>,
    ) -> Result<Opened, StoreError> {
        let refuse = |reason: String| StoreError::Authentication {
            collection: collection.clone(),
            key: blind.to_string(),
            reason,
        };
        let (header, _) = record::parse_header(&sealed).map_err(refuse)?;
        let data_key = match self.custodian.data_key(&self.region, &header.pseudonym)? {
            DataKeyState::Live(k) => k,
            DataKeyState::Shredded { .. } => return Ok(Opened::Shredded),
            _ => {
                return Err(refuse(format!(
                    "no data key in region {} matches its subject pseudonym (moved from another region or store, or changed)",
                    self.region
                )))
            }
        };
        if data_key.version() != header.data_key_version {
            return Err(refuse(format!(
                "it names data key version {} but the subject's key is version {}",
                header.data_key_version,
                data_key.version()
            )));
        }
        let plain = record::with_record_aad(
            &self.region,
            header.class,
            collection.as_str(),
            blind,
            data_key.subject(),
            data_key.version(),
            |aad| aead::open_in_buf(data_key.aead(), aad, &mut sealed, record::HEADER_LEN),
        )
        .ok_or_else(|| {
            refuse("the AES-256-GCM tag does not match (the record was changed, or moved from another key, collection, subject or region)".into())
        })?;
        let (key, plaintext) = record::decode_payload_in(sealed, plain)
            .ok_or_else(|| refuse("its sealed payload is malformed".into()))?;
        // The AAD bound the blind index and the tag both it and the key inside, under the
        // subject's data key: only this store, which computes the blind index from the key it
        // seals, can make a record that opens, and a record moved to another blind index fails
        // the tag. So a scan (no key requested) does not recompute the blind index — an HMAC that
        // was 29% of a scan's time — and checks it in debug builds only; a get compares the key it
        // asked for, which costs nothing.
        let blinds_it = match requested {
            Some(requested) => key == requested,
            None => {
                debug_assert!(self.pseudonyms.blind_index(collection.as_str(), &key) == *blind);
                true
            }
        };
        if !blinds_it {
            return Err(refuse(
                "the sealed record key is not the one it was looked up by".into(),
            ));
        }
        Ok(Opened::Plain {
            key,
            plaintext,
            class: header.class,
            subject: data_key.subject().clone(),
            data_key_version: data_key.version(),
        })
    }
}

enum Opened {
    Plain {
        key: String,
        plaintext: Vec<u8>,
        class: DataClass,
        subject: SubjectId,
        data_key_version: u32,
    },
    Shredded,
}

/// The metadata entry a store of `region` starts with: the format version, then the region.
fn store_meta(region: &Region) -> Vec<u8> {
    let mut meta = META_PREFIX.to_vec();
    meta.extend_from_slice(format!("{}\n", record::STORE_FORMAT).as_bytes());
    meta.extend_from_slice(region.as_str().as_bytes());
    meta
}

/// The store format version and region of a metadata entry (`None`: not a version number).
fn parse_meta(found: &[u8]) -> (Option<u32>, String) {
    let text = String::from_utf8_lossy(found.strip_prefix(META_PREFIX).unwrap_or(found));
    match text.split_once('\n') {
        Some((version, region)) => (version.parse().ok(), region.to_owned()),
        None => (None, String::new()),
    }
}

fn read_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // The guarded data are caches and a unit gate; a panic elsewhere leaves them consistent.
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

/// The collection and blind index at the tail of a record or index key (`u16 len ‖ collection ‖
/// blind index`), or `None` if the tail is malformed or names no valid collection.
fn collection_and_blind(tail: &[u8]) -> Option<(Collection, BlindIndex)> {
    let (collection, blind) = layout::split_collection_blind(tail)?;
    let collection = Collection::parse(std::str::from_utf8(collection).ok()?).ok()?;
    Some((collection, blind))
}

fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded counters only say when to fold; a panic elsewhere leaves them usable.
    lock.lock().unwrap_or_else(|p| p.into_inner())
}

/// The record ids of a subject list (`u16 len ‖ collection ‖ blind index`, repeated) stored
/// at `list_key`.
fn parse_ids(list_key: &[u8], mut list: &[u8]) -> Result<Vec<RecordId>, StoreError> {
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
fn count_journal(backend: &dyn Backend) -> Result<JournalCount, StoreError> {
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
struct JournalCount {
    entries: usize,
    records: usize,
}

/// Reads every entry of the index journal.
fn read_journal(backend: &dyn Backend) -> Result<JournalRead, StoreError> {
    let mut read = JournalRead::default();
    for item in backend.scan_prefix(&[layout::JOURNAL]) {
        let (key, entry) = item?;
        let malformed = || corrupt_index("journal entry", &key);
        let mut rest = &entry[..];
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
            read.ids
                .entry(Pseudonym(pseudonym))
                .or_default()
                .push((collection, blind));
            read.records += 1;
            rest = tail;
        }
        read.keys.push(key);
    }
    Ok(read)
}

/// Rewrites a format 2 store's per-record index entries into subject lists, whole subjects
/// at a time in atomic steps, then marks the store format 3. Records and registry entries are
/// the same in both formats. Interrupted, it carries on where it stopped at the next open
/// (the store says format 2 until the last step).
fn migrate_from_v2(backend: &dyn Backend, region: &Region) -> Result<(), StoreError> {
    let rng = SystemRandom::new();
    loop {
        let mut batch = Batch::new();
        // A step rewrites about MIGRATE_STEP entries, of fewer subjects.
        let mut tags = PublicRandom::new(&rng, MIGRATE_STEP);
        let mut subject: Option<(Pseudonym, Vec<u8>)> = None;
        let mut finished = true;
        for (entries, item) in backend.scan_prefix(&[layout::V2_SUBJECT_INDEX]).enumerate() {
            let (key, _) = item?;
            let parsed = key.get(1..17).and_then(|p| {
                let (collection, blind) = layout::split_collection_blind(&key[17..])?;
                Some((Pseudonym(p.try_into().ok()?), collection, blind))
            });
            let Some((pseudonym, collection, blind)) = parsed else {
                return Err(StoreError::Backend {
                    backend: backend.name(),
                    operation: "migrate the store from format 2",
                    detail: format!("a malformed index key of {} bytes", key.len()),
                });
            };
            if subject.as_ref().is_none_or(|(p, _)| *p != pseudonym) {
                if let Some((p, list)) = subject.take() {
                    batch.put(layout::subject_list(&p, tags.take()?), list);
                }
                if entries >= MIGRATE_STEP {
                    finished = false;
                    break;
                }
                subject = Some((pseudonym, Vec::new()));
            }
            if let Some((_, list)) = subject.as_mut() {
                list.extend_from_slice(&(collection.len() as u16).to_be_bytes());
                list.extend_from_slice(collection);
                list.extend_from_slice(&blind.0);
            }
            batch.delete(key);
        }
        if let Some((p, list)) = subject.take() {
            batch.put(layout::subject_list(&p, tags.take()?), list);
        }
        if !batch.is_empty() {
            backend.apply(&batch)?;
            backend.flush()?;
        }
        if finished {
            break;
        }
    }
    backend.put(layout::META, &store_meta(region))?;
    backend.flush()
}
