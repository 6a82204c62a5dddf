//! The file custodian: keys under `<keys>/<region>/`, the embedded default.
//!
//! ```text
//! <keys>/<region>/pseudonym.key          the region's pseudonym key
//! <keys>/<region>/kek/00000001.kek       key-encryption keys, one file per version
//! <keys>/<region>/datakeys.redb          every subject's wrapped data key, or its tombstone
//! <keys>/<region>/keys.lock              held by the one process using the data keys
//! ```
//!
//! Key files are written through `domicile_durable` (a unique temporary name with mode 0600,
//! fsynced, renamed into place, its directory fsynced), so a crash leaves either the old file or
//! the new one; data keys are written in batches, one durable redb transaction per batch
//! ([`keystore`]). KEKs stay one file each so that retiring one is deleting a file: a wrapped
//! key left in a freed page of an old key store opens under no KEK that still exists.
//!
//! One mechanism per file: this one is the custodian and its caches; [`format`](mod@format)
//! parses and encodes keys (documented in `docs/storage.md`); [`keystore`] holds the region's
//! data keys and its lock; [`rotation`] rotates, retires and finalises key-encryption keys;
//! [`migrate`] moves a key layout 2 directory (one file per data key) into the key store.

mod format;
mod keystore;
mod migrate;
mod rotation;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use domicile_durable::write_private;
use domicile_residency::{Region, SubjectId};
use ring::aead::LessSafeKey;
use ring::rand::SystemRandom;

use crate::aead::{self, Nonces};
use crate::custodian::{
    DataKey, DataKeyState, DestroyedKey, KekVersion, KeyCustodian, Pseudonym, PseudonymKey,
    PseudonymMap, RotationReport,
};
use crate::StoreError;
use format::KeyFile;
use keystore::{Change, RegionKeyStore};

/// How long a custodian waits, by default, for another process to let go of a region's keys.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(10);

/// A [`KeyCustodian`] keeping each region's keys under `<keys>/<region>/`.
///
/// Opening the same keys directory twice in one process gives two handles on one custodian
/// (one cache, one lock per region: regions never wait for one another, so one region's key
/// commit does not hold up another's lookups). Across processes, the first to use a region's data keys holds them
/// until it drops its custodian; another waits up to [`DEFAULT_LOCK_WAIT`] (see
/// [`set_lock_wait`](Self::set_lock_wait)) and then gets [`StoreError::KeysInUse`] naming the
/// holder. Key-encryption keys are stored in the clear in this directory, so the directory
/// itself must be protected like an HSM's storage (its own disk or mount, never copied along
/// with the data).
#[derive(Clone)]
pub struct FileCustodian {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    rng: SystemRandom,
    lock_wait_ms: AtomicU64,
    /// Each region's keys and caches under the region's own lock: regions are independent, so
    /// one region's key commit (an fsync) never holds up another's lookups.
    regions: RwLock<BTreeMap<Region, Arc<Mutex<RegionState>>>>,
}

#[derive(Default)]
struct RegionState {
    pseudonym_key: Option<Arc<PseudonymKey>>,
    keks: BTreeMap<u32, Arc<LessSafeKey>>,
    data_keys: PseudonymMap<Arc<DataKey>>,
    store: Option<RegionKeyStore>,
}

/// The custodians open in this process, by canonical root: a second `open` of one directory
/// shares the first's caches and lock rather than waiting for itself.
static OPEN: Mutex<Vec<(PathBuf, Weak<Inner>)>> = Mutex::new(Vec::new());

impl std::fmt::Debug for FileCustodian {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCustodian")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

/// Opening, paths and the caches of keys already read.
impl FileCustodian {
    /// A custodian keeping keys under directory `root`, created (0700) if missing. Tools that
    /// work on an existing deployment use [`open_existing`](Self::open_existing), so a
    /// mistyped path creates nothing.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, StoreError> {
        let root = root.as_ref();
        domicile_durable::create_private_dir(root)?;
        Self::attach(root)
    }

    /// A custodian over the existing keys directory `root`; a missing one is
    /// [`StoreError::NoKeysDirectory`] and nothing is created.
    pub fn open_existing(root: impl AsRef<Path>) -> Result<Self, StoreError> {
        let root = root.as_ref();
        if !root.is_dir() {
            return Err(StoreError::NoKeysDirectory {
                path: root.to_owned(),
            });
        }
        Self::attach(root)
    }

    fn attach(root: &Path) -> Result<Self, StoreError> {
        let canonical = fs::canonicalize(root).map_err(|e| StoreError::io("resolve", root, e))?;
        let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|(_, weak)| weak.strong_count() > 0);
        if let Some(inner) = open
            .iter()
            .find(|(path, _)| *path == canonical)
            .and_then(|(_, weak)| weak.upgrade())
        {
            return Ok(FileCustodian { inner });
        }
        let inner = Arc::new(Inner {
            root: root.to_path_buf(),
            rng: SystemRandom::new(),
            lock_wait_ms: AtomicU64::new(DEFAULT_LOCK_WAIT.as_millis() as u64),
            regions: RwLock::new(BTreeMap::new()),
        });
        open.push((canonical, Arc::downgrade(&inner)));
        Ok(FileCustodian { inner })
    }

    /// How long to wait for another process holding a region's keys before giving up with
    /// [`StoreError::KeysInUse`] (zero: give up at once).
    pub fn set_lock_wait(&self, wait: Duration) {
        self.inner
            .lock_wait_ms
            .store(wait.as_millis() as u64, Ordering::Relaxed);
    }

    fn lock_wait(&self) -> Duration {
        Duration::from_millis(self.inner.lock_wait_ms.load(Ordering::Relaxed))
    }

    /// The key directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The fingerprint of `region`'s index and pseudonym key under key root `root`
    /// ([`PseudonymKey::fingerprint`]), or `None` if the region has no key there. Reads, never
    /// creates: this is how a deployment checks it was handed its own keys.
    pub fn region_fingerprint(
        root: impl AsRef<Path>,
        region: &Region,
    ) -> Result<Option<String>, StoreError> {
        let path = root.as_ref().join(region.as_str()).join("pseudonym.key");
        let Some(bytes) = domicile_durable::read_secret(&path)? else {
            return Ok(None);
        };
        let secret = format::parse_pseudonym_key(&path, &bytes)?;
        Ok(Some(PseudonymKey::from_bytes(&secret).fingerprint()))
    }

    /// The directory holding `region`'s keys.
    pub fn region_dir(&self, region: &Region) -> PathBuf {
        self.inner.root.join(region.as_str())
    }

    /// Lets go of `region`'s key store and its lock (another process may take them), and
    /// forgets the keys cached for it. The next use opens it again.
    pub fn release(&self, region: &Region) {
        self.with_region(region, |state| *state = RegionState::default());
    }

    /// Runs `f` on `region`'s state under the region's lock. A process holds a handful of
    /// regions at most, so comparing their short names costs less than hashing one on every
    /// record opened.
    fn with_region<T>(&self, region: &Region, f: impl FnOnce(&mut RegionState) -> T) -> T {
        let found = self
            .inner
            .regions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(region)
            .cloned();
        // The map's locks are held only to find or make the region's entry, never while the
        // region is in use.
        let state = found.unwrap_or_else(|| {
            self.inner
                .regions
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .entry(region.clone())
                .or_default()
                .clone()
        });
        // A panic while holding a lock leaves only caches behind, which stay consistent with
        // the key store (every change is committed before the cache changes).
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state)
    }

    fn prepare_region(&self, region: &Region) -> Result<PathBuf, StoreError> {
        let dir = self.region_dir(region);
        domicile_durable::create_private_dir(&dir.join("kek"))?;
        Ok(dir)
    }

    /// The region's key store, opened (and its lock taken) on first use.
    fn store<'s>(
        &self,
        state: &'s mut RegionState,
        region: &Region,
    ) -> Result<&'s mut RegionKeyStore, StoreError> {
        if state.store.is_none() {
            let dir = self.prepare_region(region)?;
            state.store = Some(RegionKeyStore::open(
                &self.inner.root,
                &dir,
                region,
                self.lock_wait(),
                false,
            )?);
        }
        Ok(state
            .store
            .as_mut()
            .expect("the key store was opened just above"))
    }

    fn kek_path(&self, region: &Region, version: u32) -> PathBuf {
        self.region_dir(region)
            .join("kek")
            .join(format!("{version:08}.kek"))
    }

    fn list_keks(&self, region: &Region) -> Result<Vec<u32>, StoreError> {
        let dir = self.region_dir(region).join("kek");
        let mut versions = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(versions),
            Err(e) => return Err(StoreError::io("list", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("list", &dir, e))?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".kek")) else {
                continue;
            };
            if let Ok(v) = stem.parse::<u32>() {
                versions.push(v);
            }
        }
        versions.sort_unstable();
        Ok(versions)
    }

    /// The current KEK version, creating version 1 for a new region.
    fn current_kek(&self, state: &mut RegionState, region: &Region) -> Result<u32, StoreError> {
        self.prepare_region(region)?;
        match self.list_keks(region)?.last() {
            Some(v) => Ok(*v),
            None => {
                let key = self.new_kek_file(region, 1)?;
                state.keks.insert(1, Arc::new(key));
                Ok(1)
            }
        }
    }

    fn new_kek_file(&self, region: &Region, version: u32) -> Result<LessSafeKey, StoreError> {
        let secret = aead::random_key(&self.inner.rng)?;
        write_private(
            &self.kek_path(region, version),
            &format::encode_kek(version, &secret),
        )?;
        format::aes_key(&secret)
    }

    fn kek(
        &self,
        state: &mut RegionState,
        region: &Region,
        version: u32,
    ) -> Result<Arc<LessSafeKey>, StoreError> {
        if let Some(key) = state.keks.get(&version) {
            return Ok(key.clone());
        }
        let path = self.kek_path(region, version);
        // A key others can read is refused with a chmod hint, as ssh refuses one.
        let bytes =
            domicile_durable::read_secret(&path)?.ok_or_else(|| StoreError::MissingKek {
                region: region.clone(),
                version: KekVersion(version),
                path: path.clone(),
            })?;
        let secret = format::parse_kek(&path, &bytes, version)?;
        let key = Arc::new(format::aes_key(&secret)?);
        state.keks.insert(version, key.clone());
        Ok(key)
    }

    /// Unwraps the live entry `bytes` held for `pseudonym`, checking it is that pseudonym's key.
    fn unwrap_entry(
        &self,
        state: &mut RegionState,
        region: &Region,
        pseudonym: &Pseudonym,
        bytes: &[u8],
    ) -> Result<Option<DataKey>, StoreError> {
        let path = self.store(state, region)?.entry_path(pseudonym);
        let KeyFile::Live {
            version,
            kek,
            wrapped,
        } = format::parse_key_file(&path, bytes)?
        else {
            return Ok(None);
        };
        let kek_key = self.kek(state, region, kek)?;
        let (secret, subject) =
            format::unwrap_key(&path, &kek_key, region, kek, version, &wrapped)?;
        let pseudonyms = self.pseudonym_key_locked(state, region)?;
        if pseudonyms.pseudonym(&subject) != *pseudonym {
            // The message names the entry (a pseudonym), never the subject id inside it.
            return Err(StoreError::key_file(
                &path,
                "it holds the key of a subject whose pseudonym is not this entry's",
            ));
        }
        Ok(Some(DataKey::from_bytes(
            subject,
            version,
            KekVersion(kek),
            &secret,
        )?))
    }

    fn load(
        &self,
        state: &mut RegionState,
        region: &Region,
        pseudonym: &Pseudonym,
    ) -> Result<DataKeyState, StoreError> {
        if let Some(key) = state.data_keys.get(pseudonym) {
            return Ok(DataKeyState::Live(key.clone()));
        }
        let held = self.store(state, region)?.get(pseudonym)?;
        self.load_held(state, region, pseudonym, held)
    }

    /// What [`load`](Self::load) returns for each of `pseudonyms`, with the entries not cached
    /// read in one key-store transaction.
    fn load_many(
        &self,
        state: &mut RegionState,
        region: &Region,
        pseudonyms: &[Pseudonym],
    ) -> Result<Vec<DataKeyState>, StoreError> {
        let uncached: Vec<Pseudonym> = pseudonyms
            .iter()
            .filter(|p| !state.data_keys.contains_key(p))
            .copied()
            .collect();
        let held = self.store(state, region)?.get_many(&uncached)?;
        let mut held: HashMap<Pseudonym, Option<Vec<u8>>> =
            uncached.into_iter().zip(held).collect();
        pseudonyms
            .iter()
            .map(|p| match held.remove(p) {
                Some(entry) => self.load_held(state, region, p, entry),
                // Cached, or a repeat of one just read.
                None => self.load(state, region, p),
            })
            .collect()
    }

    /// What the entry `held` for `pseudonym` (read from the key store) says, caching a live
    /// key unwrapped.
    fn load_held(
        &self,
        state: &mut RegionState,
        region: &Region,
        pseudonym: &Pseudonym,
        held: Option<Vec<u8>>,
    ) -> Result<DataKeyState, StoreError> {
        let Some(bytes) = held else {
            return Ok(DataKeyState::Absent);
        };
        let path = self.store(state, region)?.entry_path(pseudonym);
        match self.unwrap_entry(state, region, pseudonym, &bytes)? {
            None => {
                let (version, _) = format::parse_key_file(&path, &bytes)?.versions();
                Ok(DataKeyState::Shredded { version })
            }
            Some(key) => {
                let key = Arc::new(key);
                state.data_keys.insert(*pseudonym, key.clone());
                Ok(DataKeyState::Live(key))
            }
        }
    }

    fn pseudonym_key_locked(
        &self,
        state: &mut RegionState,
        region: &Region,
    ) -> Result<Arc<PseudonymKey>, StoreError> {
        if let Some(key) = state.pseudonym_key.clone() {
            return Ok(key);
        }
        let dir = self.prepare_region(region)?;
        let path = dir.join("pseudonym.key");
        let secret = match domicile_durable::read_secret(&path)? {
            Some(bytes) => format::parse_pseudonym_key(&path, &bytes)?,
            None => {
                let secret = aead::random_key(&self.inner.rng)?;
                // Exclusive: a key that appeared meanwhile is never overwritten.
                domicile_durable::create_private(&path, &format::encode_pseudonym_key(&secret))?;
                secret
            }
        };
        let key = Arc::new(PseudonymKey::from_bytes(&secret));
        state.pseudonym_key = Some(key.clone());
        Ok(key)
    }
}

/// The trait, over the mechanisms above. Each single-subject call is its batch form with one
/// subject, so there is one code path to keep correct.
impl KeyCustodian for FileCustodian {
    fn pseudonym_key(&self, region: &Region) -> Result<Arc<PseudonymKey>, StoreError> {
        self.with_region(region, |state| self.pseudonym_key_locked(state, region))
    }

    fn data_key(&self, region: &Region, pseudonym: &Pseudonym) -> Result<DataKeyState, StoreError> {
        self.with_region(region, |state| self.load(state, region, pseudonym))
    }

    /// The entries not cached are read in one transaction.
    fn data_keys(
        &self,
        region: &Region,
        pseudonyms: &[Pseudonym],
    ) -> Result<Vec<DataKeyState>, StoreError> {
        self.with_region(region, |state| self.load_many(state, region, pseudonyms))
    }

    fn create_data_key(
        &self,
        region: &Region,
        subject: &SubjectId,
    ) -> Result<Arc<DataKey>, StoreError> {
        let mut keys = self.create_data_keys(region, std::slice::from_ref(subject))?;
        Ok(keys.remove(0))
    }

    fn create_data_keys(
        &self,
        region: &Region,
        subjects: &[SubjectId],
    ) -> Result<Vec<Arc<DataKey>>, StoreError> {
        // Held throughout (and the region's lock keeps other processes out): no other caller
        // can create a second key for a subject of this batch while it is being committed.
        self.with_region(region, |state| {
            let pseudonym_key = self.pseudonym_key_locked(state, region)?;
            let kek_version = self.current_kek(state, region)?;
            let kek = self.kek(state, region, kek_version)?;
            let mut out = Vec::with_capacity(subjects.len());
            let mut nonces = Nonces::new(&self.inner.rng, subjects.len());
            let mut new: HashMap<Pseudonym, (Vec<u8>, Arc<DataKey>)> = HashMap::new();
            let pseudonyms: Vec<Pseudonym> = subjects
                .iter()
                .map(|s| pseudonym_key.pseudonym(s))
                .collect();
            let loaded = self.load_many(state, region, &pseudonyms)?;
            for ((subject, pseudonym), loaded) in subjects.iter().zip(pseudonyms).zip(loaded) {
                if let Some((_, key)) = new.get(&pseudonym) {
                    out.push(key.clone());
                    continue;
                }
                let version = match loaded {
                    DataKeyState::Live(key) => {
                        out.push(key);
                        continue;
                    }
                    DataKeyState::Shredded { version } => version + 1,
                    DataKeyState::Absent => 1,
                };
                let secret = aead::random_key(&self.inner.rng)?;
                let body = format::encode_live(
                    &kek,
                    &mut nonces,
                    region,
                    subject,
                    kek_version,
                    version,
                    &secret,
                )?;
                let key = Arc::new(DataKey::from_bytes(
                    subject.clone(),
                    version,
                    KekVersion(kek_version),
                    &secret,
                )?);
                new.insert(pseudonym, (body, key.clone()));
                out.push(key);
            }
            // The whole batch is one durable commit before any key is cached or handed out: a
            // record sealed under a key a crash lost could never be opened again.
            let put = new.iter().map(|(p, (b, _))| (*p, b.clone())).collect();
            self.store(state, region)?.commit(Change {
                put,
                rotating: None,
            })?;
            let cache = &mut state.data_keys;
            for (pseudonym, (_, key)) in new {
                cache.insert(pseudonym, key);
            }
            Ok(out)
        })
    }

    fn destroy_data_key(
        &self,
        region: &Region,
        subject: &SubjectId,
    ) -> Result<DestroyedKey, StoreError> {
        let mut destroyed = self.destroy_data_keys(region, std::slice::from_ref(subject))?;
        Ok(destroyed.remove(0))
    }

    fn destroy_data_keys(
        &self,
        region: &Region,
        subjects: &[SubjectId],
    ) -> Result<Vec<DestroyedKey>, StoreError> {
        self.with_region(region, |state| {
            let pseudonym_key = self.pseudonym_key_locked(state, region)?;
            let mut out = Vec::with_capacity(subjects.len());
            let mut tombstones: HashMap<Pseudonym, Vec<u8>> = HashMap::new();
            let pseudonyms: Vec<Pseudonym> = subjects
                .iter()
                .map(|s| pseudonym_key.pseudonym(s))
                .collect();
            // Drop the cached keys first: from here on no record of these subjects opens in this
            // process, even if committing the tombstones fails.
            for pseudonym in &pseudonyms {
                state.data_keys.remove(pseudonym);
            }
            let store = self.store(state, region)?;
            // Every entry read in one transaction.
            let held = store.get_many(&pseudonyms)?;
            for (pseudonym, held) in pseudonyms.into_iter().zip(held) {
                let path = store.entry_path(&pseudonym);
                let bytes = match tombstones.get(&pseudonym) {
                    Some(t) => t.clone(),
                    None => held.ok_or_else(|| StoreError::NoDataKey {
                        subject: pseudonym,
                        region: region.clone(),
                    })?,
                };
                let (version, kek) = format::parse_key_file(&path, &bytes)?.versions();
                if kek.is_some() {
                    tombstones.insert(pseudonym, format::encode_tombstone(version));
                }
                out.push(DestroyedKey {
                    region: region.clone(),
                    data_key_version: version,
                    kek_version: kek.map(KekVersion),
                });
            }
            store.commit(Change {
                put: tombstones.into_iter().collect(),
                rotating: None,
            })?;
            Ok(out)
        })
    }

    fn kek_versions(&self, region: &Region) -> Result<Vec<KekVersion>, StoreError> {
        // Under the region's lock: not between a rotation's new KEK file and its mark.
        self.with_region(region, |_| {
            Ok(self
                .list_keks(region)?
                .into_iter()
                .map(KekVersion)
                .collect())
        })
    }

    fn rotate_kek(&self, region: &Region) -> Result<RotationReport, StoreError> {
        self.rotate_kek_step(region, usize::MAX)
    }

    fn retire_kek(&self, region: &Region, version: KekVersion) -> Result<(), StoreError> {
        self.retire(region, version)
    }

    fn finalize_shreds(&self, region: &Region) -> Result<KekVersion, StoreError> {
        self.finalize(region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file under `dir`, with its bytes.
    fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push((path.clone(), std::fs::read(&path).unwrap()));
                }
            }
        }
        out
    }

    fn holding(files: &[(PathBuf, Vec<u8>)], needle: &[u8]) -> Vec<PathBuf> {
        files
            .iter()
            .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// The pending rows a live custodian leaves on disk name no subject, and a finalised shred
    /// leaves the destroyed key's entry in no file, though it was written in a pending row.
    #[test]
    fn pending_rows_name_no_subject_and_finalising_leaves_no_shredded_entry() {
        let dir = tempfile::tempdir().unwrap();
        let region = Region::parse("us").unwrap();
        let ids = ["subject-ada-1957", "subject-ben-1961", "subject-cy-1970"]
            .map(|i| SubjectId::parse(i).unwrap());
        let custodian = FileCustodian::open(dir.path()).unwrap();
        custodian.create_data_keys(&region, &ids).unwrap();
        let pseudonyms = custodian.pseudonym_key(&region).unwrap();
        let entry = |id: &SubjectId| {
            custodian.with_region(&region, |state| {
                let store = state.store.as_ref().unwrap();
                assert!(store.pending_entries() > 0, "the entries are still pending");
                store.get(&pseudonyms.pseudonym(id)).unwrap().unwrap()
            })
        };
        let ben = entry(&ids[1]);
        let on_disk = files(dir.path());
        // The search works: the live entry is in the key store's file, as a pending row.
        assert_eq!(
            holding(&on_disk, &ben),
            vec![dir.path().join("us").join(keystore::DB_FILE)]
        );
        for id in &ids {
            assert!(holding(&on_disk, id.as_str().as_bytes()).is_empty(), "{id}");
        }

        custodian.destroy_data_key(&region, &ids[1]).unwrap();
        custodian.finalize_shreds(&region).unwrap();
        let on_disk = files(dir.path());
        assert!(holding(&on_disk, &ben).is_empty());
        for id in &ids {
            assert!(holding(&on_disk, id.as_str().as_bytes()).is_empty(), "{id}");
        }
        drop(custodian);
        // Reopened: the others' keys open, ben's is gone.
        let custodian = FileCustodian::open(dir.path()).unwrap();
        let state = |id: &SubjectId| {
            custodian
                .data_key(&region, &pseudonyms.pseudonym(id))
                .unwrap()
        };
        assert!(matches!(state(&ids[0]), DataKeyState::Live(_)));
        assert!(matches!(state(&ids[1]), DataKeyState::Shredded { .. }));
        assert!(matches!(state(&ids[2]), DataKeyState::Live(_)));
    }
}
