//! `SealedStore`: a region's records, sealed, placed by the policy, shreddable.
//!
//! One mechanism per file, all on the one type:
//!
//! - this file: the store's parts, opening a store, and its accessors;
//! - `registry`: registering subjects, and reading their registry entries;
//! - `write`: sealing and writing records (with the owner check's key claims), and deleting one;
//! - `read`: gets and the three scans (a subject's, a collection's, the whole region's);
//! - `shred`: crypto-shredding subjects, purging an emptied store, retiring the KEK;
//! - `check`: reading a store end to end and reporting what is wrong with it;
//! - `index`: the per-subject index, its journal and its folding, and rebuilding it;
//! - `open`: opening a sealed record, shared with the scan thread ([`Opener`]);
//! - `read_ahead`: long scans, opened ahead of their caller or split over the scan thread;
//! - `migrate`: rewriting a format 2 store's index.

mod check;
mod gate;
mod index;
mod migrate;
mod open;
mod read;
mod read_ahead;
mod registry;
mod shred;
mod write;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use domicile_residency::{DataClass, Region, ResidencyPolicy, Subject, SubjectId};
use ring::rand::SystemRandom;
use serde::{Deserialize, Serialize};

use crate::aead::PublicRandom;
use crate::backend::Backend;
use crate::custodian::{BlindIndex, KeyCustodian, Pseudonym, PseudonymKey};
use crate::record::{self, layout};
use crate::{Collection, RecordKey, SledBackend, StoreError};

pub use check::{Finding, StoreCheck};
use gate::StoreGate;
pub use index::REBUILD_STEP;
use index::{count_journal, Journal};
use migrate::migrate_from_v2;
use open::Opener;
use read_ahead::ScanThread;
use write::KeyClaims;

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
    /// Durable steps the rebuild wrote in (each a backend transaction and a flush).
    pub steps: usize,
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
    /// Writes hold it shared; shreds, purges, rebuilds and merges exclusively; checks keep
    /// exclusive operations out without holding writes back (see [`gate`]).
    gate: StoreGate,
    /// The index journal's unfolded entries (see `record::layout`).
    journal: Mutex<Journal>,
    /// The record keys this handle's writes are checking and writing (see [`KeyClaims`]).
    claims: KeyClaims,
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

/// Opening a store, and what it is made of.
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
        let opener = Arc::new(Opener::new(
            region.clone(),
            custodian.clone(),
            pseudonyms.clone(),
        ));
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
            gate: StoreGate::default(),
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

    /// Makes every earlier write durable. Puts, deletes and shreds already flush before they
    /// return; this is for callers of [`backend`](Self::backend).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.backend.flush()
    }
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

fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded counters only say when to fold; a panic elsewhere leaves them usable.
    lock.lock().unwrap_or_else(|p| p.into_inner())
}
