//! Moving a key layout 2 directory (one file per data key under `<region>/subjects/`) into the
//! key store of layout 3.

use std::fs;

use domicile_residency::Region;

use super::format;
use super::keystore::{has_file_keys, Change, RegionKeyStore};
use super::FileCustodian;
use crate::custodian::Pseudonym;
use crate::StoreError;

/// The one-time migration from key layout 2.
impl FileCustodian {
    /// Moves `region`'s layout-2 key files into its key store in one durable transaction, then
    /// deletes the files (and a layout-2 `kek/rotating` marker, carried over as the store's
    /// rotation mark). Returns how many data keys (live or tombstones) were moved; 0 if the
    /// region was already in layout 3.
    ///
    /// Resumable: a crash after the commit leaves files whose bytes the store already holds, and
    /// every other use of the region keeps refusing it ([`StoreError::OldKeyLayout`]) until a
    /// second run has moved them again and deleted them.
    pub fn migrate_file_keys(&self, region: &Region) -> Result<usize, StoreError> {
        self.with_region(region, |state| {
            *state = super::RegionState::default();
            let dir = self.prepare_region(region)?;
            if !has_file_keys(&dir) {
                return Ok(0);
            }
            let mut store =
                RegionKeyStore::open(self.root(), &dir, region, self.lock_wait(), true)?;
            let subjects = dir.join("subjects");
            let mut files = Vec::new();
            for entry in
                fs::read_dir(&subjects).map_err(|e| StoreError::io("list", &subjects, e))?
            {
                let path = entry
                    .map_err(|e| StoreError::io("list", &subjects, e))?
                    .path();
                if path.extension().is_none_or(|x| x != "dk") {
                    continue;
                }
                let pseudonym = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(parse_hex16)
                    .ok_or_else(|| {
                        StoreError::key_file(&path, "its name is not a 32-digit hex pseudonym")
                    })?;
                let bytes = domicile_durable::read_secret(&path)?.unwrap_or_default();
                // Parsed before anything is moved: a corrupt file stops the migration, naming it.
                format::parse_key_file(&path, &bytes)?;
                files.push((path, Pseudonym(pseudonym), bytes));
            }
            let marker = dir.join("kek").join("rotating");
            let rotating = match domicile_durable::read_optional(&marker)? {
                Some(bytes) => Some(Some(format::parse_rotation_marker(&marker, &bytes)?)),
                None => None,
            };
            store.commit(Change {
                put: files.iter().map(|(_, p, b)| (*p, b.clone())).collect(),
                rotating,
            })?;
            for (path, _, _) in &files {
                fs::remove_file(path).map_err(|e| StoreError::io("remove", path, e))?;
            }
            domicile_durable::sync_dir(&subjects)?;
            if rotating.is_some() {
                domicile_durable::remove_synced(&marker)?;
            }
            // Empty now; a leftover temporary file keeps it, which is harmless.
            if fs::remove_dir(&subjects).is_ok() {
                domicile_durable::sync_dir(&dir)?;
            }
            state.store = Some(store);
            Ok(files.len())
        })
    }
}

fn parse_hex16(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
