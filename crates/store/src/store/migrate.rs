//! Rewriting a format 2 store's index into subject lists.

use domicile_residency::Region;
use ring::rand::SystemRandom;

use crate::aead::PublicRandom;
use crate::backend::{Backend, Batch};
use crate::custodian::Pseudonym;
use crate::record::layout;
use crate::StoreError;

use super::store_meta;

/// How many format 2 index entries one atomic step of the migration rewrites (whole subjects
/// at a time, so it may take a few more).
const MIGRATE_STEP: usize = 50_000;

/// Rewrites a format 2 store's per-record index entries into subject lists, whole subjects
/// at a time in atomic steps, then marks the store format 3. Records and registry entries are
/// the same in both formats. Interrupted, it carries on where it stopped at the next open
/// (the store says format 2 until the last step).
pub(super) fn migrate_from_v2(backend: &dyn Backend, region: &Region) -> Result<(), StoreError> {
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
