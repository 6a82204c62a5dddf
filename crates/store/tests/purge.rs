//! Shreds that leave their records for one wholesale purge, and the purge itself: refused while
//! anyone in the store still has a live key, and after it nothing of the shredded is left, on
//! disk or through the API.

mod common;

use std::sync::Arc;

use common::{backends, contains, copy_dir, files_under, Dirs};
use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{DataClass, Region, Subject, SubjectId};
use domicile_store::{
    Backend, Collection, FileCustodian, NewRecord, RecordDeletion, RecordKey, SealedStore,
    SledBackend, StoreError,
};

fn open(dir: &std::path::Path, custodian: &Arc<FileCustodian>) -> SealedStore {
    SealedStore::open(
        dir.join("data"),
        Region::parse("us").unwrap(),
        Arc::new(UsSplitPolicy::new()),
        custodian.clone(),
    )
    .unwrap()
}

/// The record key `fill` gives the `i`th record.
fn record_key(i: usize) -> String {
    format!("note-of-purge-subject-{i:05}")
}

/// Registers `n` subjects with three records each; returns their ids.
fn fill(store: &SealedStore, n: usize) -> Vec<SubjectId> {
    let subjects: Vec<Subject> = (0..n)
        .map(|i| Subject::parse(&format!("purge-subject-{i:04}"), Some("US"), None).unwrap())
        .collect();
    store.register_subjects(&subjects).unwrap();
    let collection = Collection::parse("notes").unwrap();
    let keys: Vec<RecordKey> = (0..n * 3)
        .map(|i| RecordKey::parse(&record_key(i)).unwrap())
        .collect();
    let value = b"a value that names nobody".to_vec();
    let records: Vec<NewRecord<'_>> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| NewRecord {
            subject: &subjects[i / 3].id,
            class: DataClass::Protected,
            collection: &collection,
            key,
            value: &value,
        })
        .collect();
    store.put_batch(&records).unwrap();
    subjects.into_iter().map(|s| s.id).collect()
}

#[test]
fn a_purge_is_refused_while_anyone_has_a_live_key_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
    let store = open(dir.path(), &custodian);
    let ids = fill(&store, 10);
    store
        .shred_subjects_with(&ids[..9], RecordDeletion::Deferred)
        .unwrap();
    let before = store.backend().scan_prefix(&[]).count();
    let err = store.purge().unwrap_err();
    assert!(
        matches!(err, StoreError::PurgeRefused { live: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("shred them first"), "{err}");
    assert_eq!(store.backend().scan_prefix(&[]).count(), before);
    // The one left is whole.
    assert_eq!(store.scan_subject(&ids[9]).unwrap().len(), 3);
}

#[test]
fn deferred_shreds_then_a_purge_leave_nothing_and_the_store_works_after() {
    let dir = tempfile::tempdir().unwrap();
    let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
    let store = open(dir.path(), &custodian);
    let ids = fill(&store, 40);
    let receipts = store
        .shred_subjects_with(&ids, RecordDeletion::Deferred)
        .unwrap();
    // The receipts count what the purge will delete; the keys are gone already.
    assert!(receipts.iter().all(|r| r.records.len() == 3));
    assert!(receipts.iter().all(|r| !r.registry_entry_deleted));
    assert!(store.subjects().unwrap().is_empty());
    assert_eq!(store.scan_records().count(), 0, "a deferred record opened");
    for id in &ids {
        assert!(store.scan_subject(id).unwrap().is_empty());
        assert!(store.subject(id).unwrap().is_none());
    }
    // Left behind, unreadable: every record and registry entry, and the subjects' index.
    assert!(store.backend().scan_prefix(&[]).count() > 40 * 4);

    store.purge().unwrap();
    let left: Vec<Vec<u8>> = store
        .backend()
        .scan_prefix(&[])
        .map(|item| item.unwrap().0)
        .collect();
    assert_eq!(left.len(), 1, "only the store's metadata entry stays");
    // Purging again is a no-op; the store takes new subjects and reopens.
    store.purge().unwrap();
    let again = fill(&store, 2);
    drop(store);
    let store = open(dir.path(), &custodian);
    assert_eq!(store.subjects().unwrap().len(), 2);
    assert_eq!(store.scan_subject(&again[1]).unwrap().len(), 3);
}

#[test]
fn a_store_in_sleds_default_tree_is_still_read_and_cleared() {
    // Stores written before entries moved to their own sled tree keep them in the default one.
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.insert(b"old-entry", b"still here").unwrap();
        db.flush().unwrap();
    }
    let backend = SledBackend::open(dir.path()).unwrap();
    assert_eq!(
        backend.get(b"old-entry").unwrap().as_deref(),
        Some(&b"still here"[..])
    );
    backend.put(b"new-entry", b"beside it").unwrap();
    assert_eq!(backend.scan_prefix(&[]).count(), 2);
    backend.clear().unwrap();
    backend.flush().unwrap();
    assert_eq!(backend.scan_prefix(&[]).count(), 0);
    drop(backend);
    let backend = SledBackend::open(dir.path()).unwrap();
    assert_eq!(backend.scan_prefix(&[]).count(), 0);
}

/// A process that dies between the deferred shreds and the purge: a fresh handle (no caches)
/// opens none of the records, a copy of the data taken then opens none either, the purge run
/// by the next process finishes the job, and no file left in the store names a subject or a
/// record key. On every backend.
#[test]
fn a_purge_after_a_crash_finishes_and_a_copy_taken_before_it_opens_nothing() {
    for kind in backends() {
        let dirs = Dirs::new();
        let ids = {
            let store = common::open(&dirs.data(), kind, "us", dirs.custodian());
            let ids = fill(&store, 20);
            store
                .shred_subjects_with(&ids, RecordDeletion::Deferred)
                .unwrap();
            ids
        };
        let copy = dirs.tmp.path().join("copy-before-purge");
        copy_dir(&dirs.data(), &copy);
        let store = common::open(&dirs.data(), kind, "us", dirs.custodian());
        assert!(store.subjects().unwrap().is_empty(), "{kind:?}");
        assert_eq!(store.scan_records().count(), 0, "{kind:?}");
        store.purge().unwrap();
        assert_eq!(store.backend().scan_prefix(&[]).count(), 1, "{kind:?}");
        drop(store);

        let old = common::open(&copy, kind, "us", dirs.custodian());
        let collection = Collection::parse("notes").unwrap();
        for i in 0..ids.len() * 3 {
            let key = RecordKey::parse(&record_key(i)).unwrap();
            assert!(
                matches!(
                    old.get_raw(&collection, &key),
                    Err(StoreError::SubjectShredded { .. })
                ),
                "{kind:?}: record {i} of the copy"
            );
        }
        drop(old);

        let mut needles: Vec<Vec<u8>> = ids.iter().map(|id| id.as_str().into()).collect();
        needles.extend((0..ids.len() * 3).map(|i| record_key(i).into_bytes()));
        for file in files_under(&dirs.data())
            .into_iter()
            .chain(files_under(&dirs.keys()))
        {
            let bytes = std::fs::read(&file).unwrap();
            for needle in &needles {
                assert!(
                    !contains(&bytes, needle),
                    "{kind:?}: {} holds {}",
                    file.display(),
                    String::from_utf8_lossy(needle)
                );
            }
        }
    }
}
