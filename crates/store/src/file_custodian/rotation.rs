//! Key-encryption key rotation and retirement for the file custodian.
//!
//! A rotation writes the new KEK, then a `kek/rotating` marker naming it, then rewraps data keys
//! one file at a time, then removes the marker. Each step is a crash-safe file replacement, so
//! an interrupted rotation is resumed (the marker says to which KEK) and no data key is ever
//! unreadable: until its file is rewritten it opens under its old KEK, which is kept.

use std::sync::Arc;

use domicile_residency::Region;

use super::format::{self, KeyFile};
use super::{read_key_file, FileCustodian};
use crate::custodian::{KekVersion, RotationReport};
use crate::StoreError;

/// Rotation and retirement: the KEK's life after its creation.
impl FileCustodian {
    /// One bounded step of a KEK rotation: starts a rotation if none is unfinished, then rewraps
    /// at most `max_rewraps` data keys. Call it until the report says `complete`; spreading a
    /// rotation over many small steps keeps the custodian responsive.
    /// [`KeyCustodian::rotate_kek`](crate::KeyCustodian::rotate_kek) is this with no bound.
    pub fn rotate_kek_step(
        &self,
        region: &Region,
        max_rewraps: usize,
    ) -> Result<RotationReport, StoreError> {
        let mut state = self.lock();
        let dir = self.prepare_region(region)?;
        let marker = dir.join("kek").join("rotating");
        let (target, resumed) = match domicile_durable::read_optional(&marker)? {
            Some(bytes) => (format::parse_rotation_marker(&marker, &bytes)?, true),
            None => {
                let current = self.current_kek(&mut state, region)?;
                let next = current + 1;
                let key = self.new_kek_file(region, next)?;
                // The marker is written after the new KEK, so a resumed rotation always finds its
                // target key on disk.
                domicile_durable::write_private(&marker, &format::encode_rotation_marker(next))?;
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
            let (secret, subject) =
                format::unwrap_key(&path, &old_key, region, kek, version, &wrapped)?;
            let body = format::encode_live(
                &target_key,
                &self.rng,
                region,
                &subject,
                target,
                version,
                &secret,
            )?;
            domicile_durable::write_private(&path, &body)?;
            rewrapped += 1;
        }
        domicile_durable::remove_synced(&marker)?;
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

    /// Destroys KEK `version` of `region`, refused for the current version and for any version
    /// that still wraps a data key (it would make that key, and its subject's records, unreadable).
    pub(super) fn retire(&self, region: &Region, version: KekVersion) -> Result<(), StoreError> {
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
            if read_key_file(&file)?.versions().1 == Some(version.0) {
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
        if let Some(r) = state.get_mut(region) {
            r.keks.remove(&version.0);
        }
        Ok(())
    }
}
