//! The file custodian: keys in files under `<keys>/<region>/`, the embedded default.
//!
//! ```text
//! <keys>/<region>/pseudonym.key          the region's pseudonym key
//! <keys>/<region>/kek/00000001.kek       key-encryption keys, one file per version
//! <keys>/<region>/kek/rotating           present while a rotation is unfinished
//! <keys>/<region>/subjects/<pseudonym>.dk  a subject's wrapped data key, or its tombstone
//! ```
//!
//! Every file is written to a temporary name with mode 0600, fsynced, renamed into place and its
//! directory fsynced, so a crash leaves either the old file or the new one. The formats are in
//! `docs/storage.md`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use domicile_residency::{Region, SubjectId};
use ring::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
use ring::rand::SystemRandom;

use crate::aead::{self, put_field};
use crate::custodian::{
    DataKey, DataKeyState, DestroyedKey, KekVersion, KeyCustodian, Pseudonym, PseudonymKey,
    RotationReport,
};
use crate::StoreError;

const PSEUDONYM_MAGIC: &[u8; 4] = b"DMPK";
const KEK_MAGIC: &[u8; 4] = b"DMKK";
const ROTATION_MAGIC: &[u8; 4] = b"DMRT";
const DATA_KEY_MAGIC: &[u8; 4] = b"DMDK";
const FORMAT_V1: u8 = 1;
const STATE_LIVE: u8 = 1;
const STATE_SHREDDED: u8 = 2;
const WRAP_AAD_LABEL: &[u8] = b"domicile.data-key.v1";

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

/// A data key file, parsed.
enum KeyFile {
    Live {
        version: u32,
        kek: u32,
        subject: SubjectId,
        wrapped: Vec<u8>,
    },
    Shredded {
        version: u32,
    },
}

impl std::fmt::Debug for FileCustodian {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCustodian")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl FileCustodian {
    /// A custodian keeping keys under directory `root` (created 0700 if missing).
    pub fn open(root: impl AsRef<Path>) -> Result<Self, StoreError> {
        let root = root.as_ref().to_path_buf();
        create_private_dir(&root)?;
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

    /// The directory holding `region`'s keys.
    pub fn region_dir(&self, region: &Region) -> PathBuf {
        self.root.join(region.as_str())
    }

    /// One bounded step of a KEK rotation: starts a rotation if none is unfinished, then rewraps
    /// at most `max_rewraps` data keys. Call it until the report says `complete`; spreading a
    /// rotation over many small steps keeps the custodian responsive. [`KeyCustodian::rotate_kek`]
    /// is this with no bound.
    pub fn rotate_kek_step(
        &self,
        region: &Region,
        max_rewraps: usize,
    ) -> Result<RotationReport, StoreError> {
        let mut state = self.lock();
        let dir = self.prepare_region(region)?;
        let marker = dir.join("kek").join("rotating");
        let (target, resumed) = match read_optional(&marker)? {
            Some(bytes) => (parse_rotation_marker(&marker, &bytes)?, true),
            None => {
                let current = self.current_kek(&mut state, region)?;
                let next = current + 1;
                let key = self.new_kek_file(region, next)?;
                // The marker is written after the new KEK, so a resumed rotation always finds its
                // target key on disk.
                let mut body = Vec::with_capacity(9);
                body.extend_from_slice(ROTATION_MAGIC);
                body.push(FORMAT_V1);
                body.extend_from_slice(&next.to_be_bytes());
                write_atomic(&marker, &body)?;
                state
                    .entry(region.clone())
                    .or_default()
                    .keks
                    .insert(next, Arc::new(key));
                (next, false)
            }
        };
        let target_key = self.kek(&mut state, region, target)?;
        let mut rewrapped = 0;
        for path in self.data_key_files(region)? {
            let KeyFile::Live {
                version,
                kek,
                subject,
                wrapped,
            } = read_key_file(&path)?
            else {
                continue;
            };
            if kek == target {
                continue;
            }
            if rewrapped == max_rewraps {
                return Ok(RotationReport {
                    region: region.clone(),
                    kek: KekVersion(target),
                    rewrapped,
                    resumed,
                    complete: false,
                });
            }
            let old_key = self.kek(&mut state, region, kek)?;
            let secret = unwrap_key(&path, &old_key, region, &subject, kek, version, &wrapped)?;
            let body = self.wrap(&target_key, region, &subject, target, version, &secret)?;
            write_atomic(&path, &body)?;
            rewrapped += 1;
        }
        fs::remove_file(&marker).map_err(|e| StoreError::io("remove", &marker, e))?;
        sync_dir(marker.parent().unwrap_or(&dir))?;
        // Cached keys remember the KEK they were loaded under; drop them so reports stay true.
        if let Some(region_state) = state.get_mut(region) {
            region_state.data_keys.clear();
        }
        Ok(RotationReport {
            region: region.clone(),
            kek: KekVersion(target),
            rewrapped,
            resumed,
            complete: true,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Region, RegionState>> {
        // A panic while holding the lock leaves only caches behind, which stay consistent with
        // the files (every file change happens before the cache changes).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn prepare_region(&self, region: &Region) -> Result<PathBuf, StoreError> {
        let dir = self.region_dir(region);
        create_private_dir(&dir)?;
        create_private_dir(&dir.join("kek"))?;
        create_private_dir(&dir.join("subjects"))?;
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
        let mut body = Vec::with_capacity(41);
        body.extend_from_slice(KEK_MAGIC);
        body.push(FORMAT_V1);
        body.extend_from_slice(&version.to_be_bytes());
        body.extend_from_slice(&secret);
        write_atomic(&self.kek_path(region, version), &body)?;
        aes_key(&secret)
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
        let bytes = read_optional(&path)?.ok_or_else(|| StoreError::MissingKek {
            region: region.clone(),
            version: KekVersion(version),
            path: path.clone(),
        })?;
        if bytes.len() != 41 || &bytes[..4] != KEK_MAGIC {
            return Err(StoreError::key_file(
                &path,
                "not a domicile key-encryption key file",
            ));
        }
        if bytes[4] != FORMAT_V1 {
            return Err(StoreError::key_file(
                &path,
                format!("unknown format version {}", bytes[4]),
            ));
        }
        let stored = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
        if stored != version {
            return Err(StoreError::key_file(
                &path,
                format!("it holds KEK version {stored}, not {version}"),
            ));
        }
        let mut secret = [0u8; 32];
        secret.copy_from_slice(&bytes[9..]);
        let key = Arc::new(aes_key(&secret)?);
        region_state.keks.insert(version, key.clone());
        Ok(key)
    }

    fn wrap(
        &self,
        kek: &LessSafeKey,
        region: &Region,
        subject: &SubjectId,
        kek_version: u32,
        version: u32,
        secret: &[u8; 32],
    ) -> Result<Vec<u8>, StoreError> {
        let aad = wrap_aad(region, subject, kek_version, version);
        let mut body = Vec::with_capacity(128);
        body.extend_from_slice(DATA_KEY_MAGIC);
        body.push(FORMAT_V1);
        body.push(STATE_LIVE);
        body.extend_from_slice(&version.to_be_bytes());
        body.extend_from_slice(&kek_version.to_be_bytes());
        let id = subject.as_str().as_bytes();
        body.extend_from_slice(&(id.len() as u16).to_be_bytes());
        body.extend_from_slice(id);
        aead::seal_into(kek, &self.rng, &aad, secret, &mut body)?;
        Ok(body)
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
        match parse_key_file(&path, &bytes)? {
            KeyFile::Shredded { version } => Ok(DataKeyState::Shredded { version }),
            KeyFile::Live {
                version,
                kek,
                subject,
                wrapped,
            } => {
                let pseudonyms = self.pseudonym_key_locked(state, region)?;
                if pseudonyms.pseudonym(&subject) != *pseudonym {
                    return Err(StoreError::key_file(
                        &path,
                        format!("it holds the key of subject {subject}, whose pseudonym is not this file's name"),
                    ));
                }
                let kek_key = self.kek(state, region, kek)?;
                let secret = unwrap_key(&path, &kek_key, region, &subject, kek, version, &wrapped)?;
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
        let secret = match read_optional(&path)? {
            Some(bytes) => {
                if bytes.len() != 37 || &bytes[..4] != PSEUDONYM_MAGIC || bytes[4] != FORMAT_V1 {
                    return Err(StoreError::key_file(
                        &path,
                        "not a domicile pseudonym key file (version 1)",
                    ));
                }
                let mut secret = [0u8; 32];
                secret.copy_from_slice(&bytes[5..]);
                secret
            }
            None => {
                let secret = aead::random_key(&self.rng)?;
                let mut body = Vec::with_capacity(37);
                body.extend_from_slice(PSEUDONYM_MAGIC);
                body.push(FORMAT_V1);
                body.extend_from_slice(&secret);
                write_atomic(&path, &body)?;
                secret
            }
        };
        let key = Arc::new(PseudonymKey::from_bytes(&secret));
        state.entry(region.clone()).or_default().pseudonym_key = Some(key.clone());
        Ok(key)
    }
}

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
        let mut state = self.lock();
        let pseudonym = self
            .pseudonym_key_locked(&mut state, region)?
            .pseudonym(subject);
        let version = match self.load(&mut state, region, &pseudonym)? {
            DataKeyState::Live(key) => return Ok(key),
            DataKeyState::Shredded { version } => version + 1,
            DataKeyState::Absent => 1,
        };
        let kek_version = self.current_kek(&mut state, region)?;
        let kek = self.kek(&mut state, region, kek_version)?;
        let secret = aead::random_key(&self.rng)?;
        let body = self.wrap(&kek, region, subject, kek_version, version, &secret)?;
        write_atomic(&self.data_key_path(region, &pseudonym), &body)?;
        let key = Arc::new(DataKey::from_bytes(
            subject.clone(),
            version,
            KekVersion(kek_version),
            &secret,
        )?);
        state
            .entry(region.clone())
            .or_default()
            .data_keys
            .insert(pseudonym, key.clone());
        Ok(key)
    }

    fn create_data_keys(
        &self,
        region: &Region,
        subjects: &[SubjectId],
    ) -> Result<Vec<Arc<DataKey>>, StoreError> {
        // Held throughout, as in `create_data_key`: no other caller can create a second key for
        // a subject of this batch while its file is being written.
        let mut state = self.lock();
        let pseudonym_key = self.pseudonym_key_locked(&mut state, region)?;
        let kek_version = self.current_kek(&mut state, region)?;
        let kek = self.kek(&mut state, region, kek_version)?;
        let mut out: Vec<Option<Arc<DataKey>>> = Vec::with_capacity(subjects.len());
        let mut new: HashMap<Pseudonym, (PathBuf, Vec<u8>, Arc<DataKey>)> = HashMap::new();
        for subject in subjects {
            let pseudonym = pseudonym_key.pseudonym(subject);
            if let Some((_, _, key)) = new.get(&pseudonym) {
                out.push(Some(key.clone()));
                continue;
            }
            let version = match self.load(&mut state, region, &pseudonym)? {
                DataKeyState::Live(key) => {
                    out.push(Some(key));
                    continue;
                }
                DataKeyState::Shredded { version } => version + 1,
                DataKeyState::Absent => 1,
            };
            let secret = aead::random_key(&self.rng)?;
            let body = self.wrap(&kek, region, subject, kek_version, version, &secret)?;
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
            out.push(Some(key));
        }
        if !new.is_empty() {
            write_all_synced(new.values().map(|(p, b, _)| (p, b)).collect())?;
            let cache = &mut state.entry(region.clone()).or_default().data_keys;
            for (pseudonym, (_, _, key)) in new {
                cache.insert(pseudonym, key);
            }
        }
        Ok(out
            .into_iter()
            .map(|k| k.expect("every subject got a key"))
            .collect())
    }

    fn destroy_data_key(
        &self,
        region: &Region,
        subject: &SubjectId,
    ) -> Result<DestroyedKey, StoreError> {
        let mut state = self.lock();
        let pseudonym = self
            .pseudonym_key_locked(&mut state, region)?
            .pseudonym(subject);
        let path = self.data_key_path(region, &pseudonym);
        let Some(bytes) = read_optional(&path)? else {
            return Err(StoreError::NoDataKey {
                subject: subject.clone(),
                region: region.clone(),
            });
        };
        // Drop the cached key first: from here on no record of this subject opens in this
        // process, even if writing the tombstone fails.
        if let Some(r) = state.get_mut(region) {
            r.data_keys.remove(&pseudonym);
        }
        let (version, kek) = match parse_key_file(&path, &bytes)? {
            KeyFile::Shredded { version } => (version, None),
            KeyFile::Live { version, kek, .. } => (version, Some(KekVersion(kek))),
        };
        if kek.is_some() {
            // The tombstone keeps only the version, so a re-registered subject gets a new one;
            // neither the key nor the subject id survives in it.
            let mut body = Vec::with_capacity(10);
            body.extend_from_slice(DATA_KEY_MAGIC);
            body.push(FORMAT_V1);
            body.push(STATE_SHREDDED);
            body.extend_from_slice(&version.to_be_bytes());
            write_atomic(&path, &body)?;
        }
        Ok(DestroyedKey {
            region: region.clone(),
            data_key_version: version,
            kek_version: kek,
        })
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
            // Drop the cached key first, as `destroy_data_key` does.
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
            let (version, kek) = match parse_key_file(&path, &bytes)? {
                KeyFile::Shredded { version } => (version, None),
                KeyFile::Live { version, kek, .. } => (version, Some(KekVersion(kek))),
            };
            if kek.is_some() {
                let mut body = Vec::with_capacity(10);
                body.extend_from_slice(DATA_KEY_MAGIC);
                body.push(FORMAT_V1);
                body.push(STATE_SHREDDED);
                body.extend_from_slice(&version.to_be_bytes());
                tombstones.insert(path, body);
            }
            out.push(DestroyedKey {
                region: region.clone(),
                data_key_version: version,
                kek_version: kek,
            });
        }
        write_all_synced(tombstones.iter().collect())?;
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
        let mut state = self.lock();
        let versions = self.list_keks(region)?;
        let path = self.kek_path(region, version.0);
        if !versions.contains(&version.0) {
            return Err(StoreError::MissingKek {
                region: region.clone(),
                version,
                path,
            });
        }
        let refuse = |reason: String| StoreError::KekInUse {
            region: region.clone(),
            version,
            reason,
        };
        if versions.last() == Some(&version.0) {
            return Err(refuse("it is the current version".into()));
        }
        let mut still_wrapped = 0;
        for file in self.data_key_files(region)? {
            if let KeyFile::Live { kek, .. } = read_key_file(&file)? {
                if kek == version.0 {
                    still_wrapped += 1;
                }
            }
        }
        if still_wrapped > 0 {
            return Err(refuse(format!(
                "{still_wrapped} data keys are still wrapped under it; finish rotate_kek first"
            )));
        }
        fs::remove_file(&path).map_err(|e| StoreError::io("remove", &path, e))?;
        sync_dir(path.parent().unwrap_or(&self.root))?;
        if let Some(r) = state.get_mut(region) {
            r.keks.remove(&version.0);
        }
        Ok(())
    }
}

fn wrap_aad(region: &Region, subject: &SubjectId, kek: u32, version: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64);
    put_field(&mut aad, WRAP_AAD_LABEL);
    put_field(&mut aad, region.as_str().as_bytes());
    put_field(&mut aad, subject.as_str().as_bytes());
    aad.extend_from_slice(&kek.to_be_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

fn unwrap_key(
    path: &Path,
    kek: &LessSafeKey,
    region: &Region,
    subject: &SubjectId,
    kek_version: u32,
    version: u32,
    wrapped: &[u8],
) -> Result<[u8; 32], StoreError> {
    let aad = wrap_aad(region, subject, kek_version, version);
    let secret = aead::open(kek, &aad, wrapped).ok_or_else(|| {
        StoreError::key_file(
            path,
            format!("the wrapped data key does not open under KEK v{kek_version} of region {region} (wrong key, or the file was changed or moved)"),
        )
    })?;
    secret
        .try_into()
        .map_err(|_| StoreError::key_file(path, "the wrapped data key is not 32 bytes"))
}

fn parse_rotation_marker(path: &Path, bytes: &[u8]) -> Result<u32, StoreError> {
    if bytes.len() != 9 || &bytes[..4] != ROTATION_MAGIC || bytes[4] != FORMAT_V1 {
        return Err(StoreError::key_file(
            path,
            "not a domicile rotation marker (version 1)",
        ));
    }
    Ok(u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]))
}

fn read_key_file(path: &Path) -> Result<KeyFile, StoreError> {
    let bytes = fs::read(path).map_err(|e| StoreError::io("read", path, e))?;
    parse_key_file(path, &bytes)
}

fn parse_key_file(path: &Path, bytes: &[u8]) -> Result<KeyFile, StoreError> {
    let corrupt = |reason: &str| StoreError::key_file(path, reason.to_owned());
    if bytes.len() < 10 || &bytes[..4] != DATA_KEY_MAGIC {
        return Err(corrupt("not a domicile data key file"));
    }
    if bytes[4] != FORMAT_V1 {
        return Err(corrupt(&format!("unknown format version {}", bytes[4])));
    }
    let version = u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
    match bytes[5] {
        STATE_SHREDDED if bytes.len() == 10 => Ok(KeyFile::Shredded { version }),
        STATE_LIVE => {
            let rest = &bytes[10..];
            if rest.len() < 6 {
                return Err(corrupt("it is truncated"));
            }
            let kek = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
            let id_len = u16::from_be_bytes([rest[4], rest[5]]) as usize;
            let rest = &rest[6..];
            if rest.len() != id_len + 12 + 32 + aead::TAG_LEN {
                return Err(corrupt("it is truncated or has trailing bytes"));
            }
            let id = std::str::from_utf8(&rest[..id_len])
                .ok()
                .and_then(|s| SubjectId::parse(s).ok())
                .ok_or_else(|| corrupt("its subject id is not valid"))?;
            Ok(KeyFile::Live {
                version,
                kek,
                subject: id,
                wrapped: rest[id_len..].to_vec(),
            })
        }
        _ => Err(corrupt("its state byte is unknown")),
    }
}

fn aes_key(secret: &[u8; 32]) -> Result<LessSafeKey, StoreError> {
    UnboundKey::new(&AES_256_GCM, secret)
        .map(LessSafeKey::new)
        .map_err(|_| StoreError::Crypto {
            what: "loading a key-encryption key",
        })
}

fn create_private_dir(path: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| StoreError::io("create", path, e))
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("read", path, e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("sync", dir, e))
}

/// Writes every file atomically with mode 0600 and makes them all durable. The files are
/// written and fsynced by several threads at once, so the file system commits many of them per
/// journal flush (one at a time, each would wait for its own); then each directory is synced
/// once.
fn write_all_synced(files: Vec<(&PathBuf, &Vec<u8>)>) -> Result<(), StoreError> {
    if files.is_empty() {
        return Ok(());
    }
    let workers = 32.min(files.len());
    let chunk = files.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().try_for_each(|(p, b)| write_synced(p, b))))
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join().unwrap_or(Err(StoreError::Crypto {
                what: "writing a key file (the writing thread panicked)",
            }))
        })
    })?;
    let dirs: std::collections::BTreeSet<&Path> = files
        .iter()
        .map(|(p, _)| p.parent().unwrap_or(Path::new(".")))
        .collect();
    dirs.into_iter().try_for_each(sync_dir)
}

/// Writes `bytes` to `path` atomically with mode 0600, the file's contents durable; the caller
/// syncs the directory.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| StoreError::io("create", &tmp, e))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .map_err(|e| StoreError::io("write", &tmp, e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| StoreError::io("rename", &tmp, e))
}

/// Writes `bytes` to `path` atomically and durably, with mode 0600.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_synced(path, bytes)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}
