//! The file custodian: keys in files under `<keys>/<region>/`, the embedded default.
//!
//! ```text
//! <keys>/<region>/pseudonym.key          the region's pseudonym key
//! <keys>/<region>/kek/00000001.kek       key-encryption keys, one file per version
//! <keys>/<region>/kek/rotating           present while a rotation is unfinished
//! <keys>/<region>/subjects/<pseudonym>.dk  a subject's wrapped data key, or its tombstone
//! ```
//!
//! Every file is written through `domicile_durable` (a unique temporary name with mode 0600,
//! fsynced, renamed into place, its directory fsynced), so a crash leaves either the old file or
//! the new one. One mechanism per file: this one is the custodian and its caches; [`format`]
//! parses and encodes the key files (documented in `docs/storage.md`); [`rotation`] rotates and
//! retires key-encryption keys.

mod format;
mod rotation;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use domicile_durable::{read_optional, write_private, write_private_unsynced_dir};
use domicile_residency::{Region, SubjectId};
use ring::aead::LessSafeKey;
use ring::rand::SystemRandom;

use crate::aead;
use crate::custodian::{
    DataKey, DataKeyState, DestroyedKey, KekVersion, KeyCustodian, Pseudonym, PseudonymKey,
    RotationReport,
};
use crate::StoreError;
use format::KeyFile;

/// A [`KeyCustodian`] keeping each region's keys in files under `<keys>/<region>/`.
///
/// Use one `FileCustodian` per key directory per process: it caches unwrapped data keys, and
/// that cache is what makes `get` cost no file read. Key-encryption keys are stored in the clear
/// in this directory, so the directory itself must be protected like an HSM's storage (its own
/// disk or mount, never copied along with the data).
pub struct FileCustodian {
    root: PathBuf,
    rng: SystemRandom,
    state: Mutex<HashMap<Region, RegionState>>,
}

#[derive(Default)]
struct RegionState {
    pseudonym_key: Option<Arc<PseudonymKey>>,
    keks: BTreeMap<u32, Arc<LessSafeKey>>,
    data_keys: HashMap<Pseudonym, Arc<DataKey>>,
}

impl std::fmt::Debug for FileCustodian {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCustodian")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// Opening, paths and the caches of keys already read.
impl FileCustodian {
    /// A custodian keeping keys under directory `root` (created 0700 if missing).
    pub fn open(root: impl AsRef<Path>) -> Result<Self, StoreError> {
        let root = root.as_ref().to_path_buf();
        domicile_durable::create_private_dir(&root)?;
        Ok(FileCustodian {
            root,
            rng: SystemRandom::new(),
            state: Mutex::new(HashMap::new()),
        })
    }

    /// The key directory.
    pub fn root(&self) -> &Path {
        &self.root
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
        self.root.join(region.as_str())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Region, RegionState>> {
        // A panic while holding the lock leaves only caches behind, which stay consistent with
        // the files (every file change happens before the cache changes).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn prepare_region(&self, region: &Region) -> Result<PathBuf, StoreError> {
        let dir = self.region_dir(region);
        domicile_durable::create_private_dir(&dir.join("kek"))?;
        domicile_durable::create_private_dir(&dir.join("subjects"))?;
        Ok(dir)
    }

    fn kek_path(&self, region: &Region, version: u32) -> PathBuf {
        self.region_dir(region)
            .join("kek")
            .join(format!("{version:08}.kek"))
    }

    fn data_key_path(&self, region: &Region, pseudonym: &Pseudonym) -> PathBuf {
        self.region_dir(region)
            .join("subjects")
            .join(format!("{}.dk", pseudonym.to_hex()))
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
    fn current_kek(
        &self,
        state: &mut HashMap<Region, RegionState>,
        region: &Region,
    ) -> Result<u32, StoreError> {
        self.prepare_region(region)?;
        match self.list_keks(region)?.last() {
            Some(v) => Ok(*v),
            None => {
                let key = self.new_kek_file(region, 1)?;
                state
                    .entry(region.clone())
                    .or_default()
                    .keks
                    .insert(1, Arc::new(key));
                Ok(1)
            }
        }
    }

    fn new_kek_file(&self, region: &Region, version: u32) -> Result<LessSafeKey, StoreError> {
        let secret = aead::random_key(&self.rng)?;
        write_private(
            &self.kek_path(region, version),
            &format::encode_kek(version, &secret),
        )?;
        format::aes_key(&secret)
    }

    fn kek(
        &self,
        state: &mut HashMap<Region, RegionState>,
        region: &Region,
        version: u32,
    ) -> Result<Arc<LessSafeKey>, StoreError> {
        let region_state = state.entry(region.clone()).or_default();
        if let Some(key) = region_state.keks.get(&version) {
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
        region_state.keks.insert(version, key.clone());
        Ok(key)
    }

    fn data_key_files(&self, region: &Region) -> Result<Vec<PathBuf>, StoreError> {
        let dir = self.region_dir(region).join("subjects");
        let mut files = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| StoreError::io("list", &dir, e))? {
            let entry = entry.map_err(|e| StoreError::io("list", &dir, e))?;
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "dk") {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }

    fn load(
        &self,
        state: &mut HashMap<Region, RegionState>,
        region: &Region,
        pseudonym: &Pseudonym,
    ) -> Result<DataKeyState, StoreError> {
        if let Some(key) = state.get(region).and_then(|r| r.data_keys.get(pseudonym)) {
            return Ok(DataKeyState::Live(key.clone()));
        }
        let path = self.data_key_path(region, pseudonym);
        let Some(bytes) = read_optional(&path)? else {
            return Ok(DataKeyState::Absent);
        };
        match format::parse_key_file(&path, &bytes)? {
            KeyFile::Shredded { version } => Ok(DataKeyState::Shredded { version }),
            KeyFile::Live {
                version,
                kek,
                wrapped,
            } => {
                let kek_key = self.kek(state, region, kek)?;
                let (secret, subject) =
                    format::unwrap_key(&path, &kek_key, region, kek, version, &wrapped)?;
                let pseudonyms = self.pseudonym_key_locked(state, region)?;
                if pseudonyms.pseudonym(&subject) != *pseudonym {
                    // The message names the file (a pseudonym), never the subject id inside it.
                    return Err(StoreError::key_file(
                        &path,
                        "it holds the key of a subject whose pseudonym is not this file's name",
                    ));
                }
                let key = Arc::new(DataKey::from_bytes(
                    subject,
                    version,
                    KekVersion(kek),
                    &secret,
                )?);
                state
                    .entry(region.clone())
                    .or_default()
                    .data_keys
                    .insert(*pseudonym, key.clone());
                Ok(DataKeyState::Live(key))
            }
        }
    }

    fn pseudonym_key_locked(
        &self,
        state: &mut HashMap<Region, RegionState>,
        region: &Region,
    ) -> Result<Arc<PseudonymKey>, StoreError> {
        if let Some(key) = state.get(region).and_then(|r| r.pseudonym_key.clone()) {
            return Ok(key);
        }
        let dir = self.prepare_region(region)?;
        let path = dir.join("pseudonym.key");
        let secret = match domicile_durable::read_secret(&path)? {
            Some(bytes) => format::parse_pseudonym_key(&path, &bytes)?,
            None => {
                let secret = aead::random_key(&self.rng)?;
                // Exclusive: a key that appeared meanwhile is never overwritten.
                domicile_durable::create_private(&path, &format::encode_pseudonym_key(&secret))?;
                secret
            }
        };
        let key = Arc::new(PseudonymKey::from_bytes(&secret));
        state.entry(region.clone()).or_default().pseudonym_key = Some(key.clone());
        Ok(key)
    }
}

/// The trait, over the mechanisms above. Each single-subject call is its batch form with one
/// subject, so there is one code path to keep correct.
impl KeyCustodian for FileCustodian {
    fn pseudonym_key(&self, region: &Region) -> Result<Arc<PseudonymKey>, StoreError> {
        let mut state = self.lock();
        self.pseudonym_key_locked(&mut state, region)
    }

    fn data_key(&self, region: &Region, pseudonym: &Pseudonym) -> Result<DataKeyState, StoreError> {
        let mut state = self.lock();
        self.load(&mut state, region, pseudonym)
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
        // Held throughout: no other caller can create a second key for a subject of this batch
        // while its file is being written.
        let mut state = self.lock();
        let pseudonym_key = self.pseudonym_key_locked(&mut state, region)?;
        let kek_version = self.current_kek(&mut state, region)?;
        let kek = self.kek(&mut state, region, kek_version)?;
        let mut out = Vec::with_capacity(subjects.len());
        let mut new: HashMap<Pseudonym, (PathBuf, Vec<u8>, Arc<DataKey>)> = HashMap::new();
        for subject in subjects {
            let pseudonym = pseudonym_key.pseudonym(subject);
            if let Some((_, _, key)) = new.get(&pseudonym) {
                out.push(key.clone());
                continue;
            }
            let version = match self.load(&mut state, region, &pseudonym)? {
                DataKeyState::Live(key) => {
                    out.push(key);
                    continue;
                }
                DataKeyState::Shredded { version } => version + 1,
                DataKeyState::Absent => 1,
            };
            let secret = aead::random_key(&self.rng)?;
            let body = format::encode_live(
                &kek,
                &self.rng,
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
            new.insert(
                pseudonym,
                (self.data_key_path(region, &pseudonym), body, key.clone()),
            );
            out.push(key);
        }
        // Every file is durable before any key is cached or handed out: a record sealed under a
        // key whose file a crash lost could never be opened again.
        write_all_durably(new.values().map(|(p, b, _)| (p.as_path(), b.as_slice())))?;
        let cache = &mut state.entry(region.clone()).or_default().data_keys;
        for (pseudonym, (_, _, key)) in new {
            cache.insert(pseudonym, key);
        }
        Ok(out)
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
        let mut state = self.lock();
        let pseudonym_key = self.pseudonym_key_locked(&mut state, region)?;
        let mut out = Vec::with_capacity(subjects.len());
        let mut tombstones: HashMap<PathBuf, Vec<u8>> = HashMap::new();
        for subject in subjects {
            let pseudonym = pseudonym_key.pseudonym(subject);
            let path = self.data_key_path(region, &pseudonym);
            // Drop the cached key first: from here on no record of this subject opens in this
            // process, even if writing the tombstone fails.
            if let Some(r) = state.get_mut(region) {
                r.data_keys.remove(&pseudonym);
            }
            let bytes = match tombstones.get(&path) {
                Some(t) => t.clone(),
                None => read_optional(&path)?.ok_or_else(|| StoreError::NoDataKey {
                    subject: subject.clone(),
                    region: region.clone(),
                })?,
            };
            let (version, kek) = format::parse_key_file(&path, &bytes)?.versions();
            if kek.is_some() {
                tombstones.insert(path, format::encode_tombstone(version));
            }
            out.push(DestroyedKey {
                region: region.clone(),
                data_key_version: version,
                kek_version: kek.map(KekVersion),
            });
        }
        write_all_durably(tombstones.iter().map(|(p, b)| (p.as_path(), b.as_slice())))?;
        Ok(out)
    }

    fn kek_versions(&self, region: &Region) -> Result<Vec<KekVersion>, StoreError> {
        let _state = self.lock();
        Ok(self
            .list_keks(region)?
            .into_iter()
            .map(KekVersion)
            .collect())
    }

    fn rotate_kek(&self, region: &Region) -> Result<RotationReport, StoreError> {
        self.rotate_kek_step(region, usize::MAX)
    }

    fn retire_kek(&self, region: &Region, version: KekVersion) -> Result<(), StoreError> {
        self.retire(region, version)
    }
}

fn read_key_file(path: &Path) -> Result<KeyFile, StoreError> {
    let bytes = fs::read(path).map_err(|e| StoreError::io("read", path, e))?;
    format::parse_key_file(path, &bytes)
}

/// Writes every file atomically with mode 0600 and makes them all durable.
///
/// One file is written as `write_private` writes it. Many are written and fsynced by several
/// threads at once, so the file system commits many of them per journal flush (one at a time,
/// each would wait for its own); then each directory is synced once.
fn write_all_durably<'a>(
    files: impl Iterator<Item = (&'a Path, &'a [u8])>,
) -> Result<(), StoreError> {
    let files: Vec<(&Path, &[u8])> = files.collect();
    match files.as_slice() {
        [] => return Ok(()),
        [(path, bytes)] => return Ok(write_private(path, bytes)?),
        _ => {}
    }
    let workers = 32.min(files.len());
    let chunk = files.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .try_for_each(|(p, b)| write_private_unsynced_dir(p, b))
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| match h.join() {
            Ok(written) => written.map_err(StoreError::from),
            Err(_) => Err(StoreError::WorkerPanicked {
                what: "writing key files",
            }),
        })
    })?;
    let dirs: std::collections::BTreeSet<&Path> = files
        .iter()
        .map(|(p, _)| p.parent().unwrap_or(Path::new(".")))
        .collect();
    for dir in dirs {
        domicile_durable::sync_dir(dir)?;
    }
    Ok(())
}
