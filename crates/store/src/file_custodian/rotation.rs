//! Key-encryption key rotation, retirement and finalisation for the file custodian.
//!
//! A rotation writes the new KEK file, then marks the rotation in the key store, then rewraps
//! data keys in batches (one transaction each; the last one also clears the mark). An
//! interrupted rotation is resumed (the mark says to which KEK) and no data key is ever
//! unreadable: until its entry is rewritten it opens under its old KEK, which is kept.
//!
//! Finalisation is the same rewrap into a brand-new key store file under a brand-new KEK,
//! followed by the destruction of every older KEK: the bytes of destroyed data keys survive in
//! no file of the keys directory, and wherever else they survive (freed disk blocks, backups)
//! they are wrapped under a key that no longer exists.

use std::path::Path;
use std::sync::Arc;

use domicile_residency::Region;
use ring::aead::LessSafeKey;

use super::format::{self, KeyFile};
use super::keystore::Change;
use super::{FileCustodian, RegionState};
use crate::aead::Nonces;
use crate::custodian::{KekVersion, Pseudonym, RotationReport};
use crate::StoreError;

/// Rotation and retirement: the KEK's life after its creation.
impl FileCustodian {
    /// One bounded step of a KEK rotation: starts a rotation if none is unfinished, then rewraps
    /// at most `max_rewraps` data keys in one transaction. Call it until the report says
    /// `complete`; spreading a rotation over many small steps keeps the custodian responsive.
    /// [`KeyCustodian::rotate_kek`](crate::KeyCustodian::rotate_kek) is this with no bound.
    pub fn rotate_kek_step(
        &self,
        region: &Region,
        max_rewraps: usize,
    ) -> Result<RotationReport, StoreError> {
        self.with_region(region, |state| {
            self.prepare_region(region)?;
            let (target, resumed) = match self.store(state, region)?.rotation_target()? {
                Some(target) => (target, true),
                None => {
                    let current = self.current_kek(state, region)?;
                    let next = current + 1;
                    let key = self.new_kek_file(region, next)?;
                    // The mark is committed after the new KEK is durable, so a resumed rotation
                    // always finds its target key on disk.
                    self.store(state, region)?.commit(Change {
                        put: Vec::new(),
                        rotating: Some(Some(next)),
                    })?;
                    state.keks.insert(next, Arc::new(key));
                    (next, false)
                }
            };
            let target_key = self.kek(state, region, target)?;
            let mut put: Vec<(Pseudonym, Vec<u8>)> = Vec::new();
            let mut complete = true;
            let entries = self.store(state, region)?.entries()?;
            let mut nonces = Nonces::new(&self.inner.rng, entries.len().min(max_rewraps));
            for (pseudonym, bytes) in entries {
                let path = self.store(state, region)?.entry_path(&pseudonym);
                let KeyFile::Live {
                    version,
                    kek,
                    wrapped,
                } = format::parse_key_file(&path, &bytes)?
                else {
                    continue;
                };
                if kek == target {
                    continue;
                }
                if put.len() == max_rewraps {
                    complete = false;
                    break;
                }
                let body = self.rewrap(
                    state,
                    region,
                    &path,
                    (kek, version, &wrapped),
                    (target, &target_key),
                    &mut nonces,
                )?;
                put.push((pseudonym, body));
            }
            let rewrapped = put.len();
            self.store(state, region)?.commit(Change {
                put,
                rotating: complete.then_some(None),
            })?;
            // Cached keys remember the KEK they were loaded under; drop them so reports stay true.
            state.data_keys.clear();
            Ok(RotationReport {
                region: region.clone(),
                kek: KekVersion(target),
                rewrapped,
                resumed,
                complete,
            })
        })
    }

    /// Destroys KEK `version` of `region`, refused for the current version and for any version
    /// that still wraps a data key (it would make that key, and its subject's records, unreadable).
    pub(super) fn retire(&self, region: &Region, version: KekVersion) -> Result<(), StoreError> {
        self.with_region(region, |state| {
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
            let store = self.store(state, region)?;
            let mut still_wrapped = 0;
            for (pseudonym, bytes) in store.entries()? {
                let entry = format::parse_key_file(&store.entry_path(&pseudonym), &bytes)?;
                if entry.versions().1 == Some(version.0) {
                    still_wrapped += 1;
                }
            }
            if still_wrapped > 0 {
                return Err(refuse(format!(
                    "{still_wrapped} data keys are still wrapped under it; finish rotate_kek first"
                )));
            }
            // Durably: a retired KEK that reappears after a power cut would be a key believed destroyed.
            domicile_durable::remove_synced(&path)?;
            state.keks.remove(&version.0);
            Ok(())
        })
    }

    /// A live data key's entry, wrapped under KEK `kek` (`version`, `wrapped`, read from
    /// `path`), rewrapped under KEK `target`: the same secret, subject and version.
    fn rewrap(
        &self,
        state: &mut RegionState,
        region: &Region,
        path: &Path,
        (kek, version, wrapped): (u32, u32, &[u8]),
        (target, target_key): (u32, &LessSafeKey),
        nonces: &mut Nonces<'_>,
    ) -> Result<Vec<u8>, StoreError> {
        let old_key = self.kek(state, region, kek)?;
        let (secret, subject) = format::unwrap_key(path, &old_key, region, kek, version, wrapped)?;
        format::encode_live(
            target_key, nonces, region, &subject, target, version, &secret,
        )
    }

    /// Makes every shred of `region` so far final (see
    /// [`KeyCustodian::finalize_shreds`](crate::KeyCustodian::finalize_shreds)): a new KEK; every
    /// live key rewrapped under it into a fresh key store file that replaces the old one (whose
    /// free pages may hold destroyed keys); then every older KEK destroyed.
    ///
    /// Crash-safe at every step: before the swap, the old store and its KEKs are intact; after
    /// it, every key opens under the new KEK, and running this again finishes the destruction.
    pub(super) fn finalize(&self, region: &Region) -> Result<KekVersion, StoreError> {
        self.with_region(region, |state| {
            self.prepare_region(region)?;
            let current = self.current_kek(state, region)?;
            let target = current + 1;
            let target_key = Arc::new(self.new_kek_file(region, target)?);
            state.keks.insert(target, target_key.clone());
            let entries = self.store(state, region)?.entries()?;
            let mut fresh = Vec::with_capacity(entries.len());
            let mut nonces = Nonces::new(&self.inner.rng, entries.len());
            for (pseudonym, bytes) in entries {
                let path = self.store(state, region)?.entry_path(&pseudonym);
                match format::parse_key_file(&path, &bytes)? {
                    KeyFile::Shredded { version } => {
                        fresh.push((pseudonym, format::encode_tombstone(version)));
                    }
                    KeyFile::Live {
                        version,
                        kek,
                        wrapped,
                    } => {
                        let body = self.rewrap(
                            state,
                            region,
                            &path,
                            (kek, version, &wrapped),
                            (target, &target_key),
                            &mut nonces,
                        )?;
                        fresh.push((pseudonym, body));
                    }
                }
            }
            self.store(state, region)?.rewrite(&fresh)?;
            state.data_keys.clear();
            for version in self.list_keks(region)? {
                if version < target {
                    domicile_durable::remove_synced(&self.kek_path(region, version))?;
                    state.keks.remove(&version);
                }
            }
            Ok(KekVersion(target))
        })
    }
}
