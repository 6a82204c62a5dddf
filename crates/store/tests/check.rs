//! `SealedStore::check` reads a store end to end and reports what is wrong with it: a record
//! edited or moved on disk, an index that lost or garbled its entries, a registry entry that
//! no longer opens. Sound states (shred leftovers, stale ids a delete leaves) are counted, not
//! reported as faults. The report names records by collection and blind index and subjects by
//! pseudonym: no record key or subject id appears in it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use common::{backends, collection, key, policy, region, Dirs};
use domicile_residency::{DataClass, Subject, SubjectId};
use domicile_store::{
    BackendKind, Batch, NewRecord, RecordDeletion, RecordKey, SealedStore, StoreCheck,
};

const SUBJECTS: usize = 5;
const PER_SUBJECT: usize = 4;

fn open(dirs: &Dirs, kind: BackendKind) -> SealedStore {
    SealedStore::open_with(dirs.data(), kind, region("us"), policy(), dirs.custodian()).unwrap()
}

fn subject_id(i: usize) -> String {
    format!("check-subject-{i:02}")
}

fn record_key(s: usize, n: usize) -> RecordKey {
    key(&format!("check-note-{s:02}-{n:02}"))
}

/// Registers the subjects and writes their records, one batch per subject (so the index
/// journal holds several entries).
fn fill(store: &SealedStore) -> Vec<SubjectId> {
    let notes = collection("notes");
    (0..SUBJECTS)
        .map(|s| {
            let subject = Subject::parse(&subject_id(s), Some("US"), None).unwrap();
            store.register_subject(&subject).unwrap();
            let keys: Vec<RecordKey> = (0..PER_SUBJECT).map(|n| record_key(s, n)).collect();
            let records: Vec<NewRecord<'_>> = keys
                .iter()
                .map(|k| NewRecord {
                    subject: &subject.id,
                    class: DataClass::Protected,
                    collection: &notes,
                    key: k,
                    value: b"a note",
                })
                .collect();
            store.put_batch(&records).unwrap();
            subject.id
        })
        .collect()
}

/// The backend key of a record, as the store lays it out.
fn backend_key(store: &SealedStore, s: usize, n: usize) -> Vec<u8> {
    store
        .backend()
        .scan_prefix(b"d")
        .map(Result::unwrap)
        .map(|(k, _)| k)
        .find(|k| k.ends_with(&store.blind_index(&collection("notes"), &record_key(s, n)).0))
        .unwrap()
}

/// Every entry of the store's backend, to show a check changed none.
fn entries(store: &SealedStore) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .backend()
        .scan_prefix(b"")
        .map(Result::unwrap)
        .collect()
}

/// The report as JSON and Debug, with no record key or subject id in either.
fn assert_names_no_one(report: &StoreCheck) {
    let shown = format!("{}\n{report:?}", serde_json::to_string(report).unwrap());
    for s in 0..SUBJECTS {
        assert!(!shown.contains(&subject_id(s)), "{shown}");
        for n in 0..PER_SUBJECT {
            assert!(!shown.contains(record_key(s, n).as_str()), "{shown}");
        }
    }
    assert!(!shown.contains("check-"), "{shown}");
}

#[test]
fn a_sound_store_is_sound_and_counts_its_records_subjects_and_shred_leftovers() {
    for kind in backends() {
        let dirs = Dirs::new();
        let store = open(&dirs, kind);
        let ids = fill(&store);
        let report = store.check().unwrap();
        assert!(report.is_sound(), "{kind:?}: {report:?}");
        assert_eq!(report.records, SUBJECTS * PER_SUBJECT, "{kind:?}");
        assert_eq!(report.subjects, SUBJECTS, "{kind:?}");
        assert_eq!(
            (report.shredded, report.stale_index_ids),
            (0, 0),
            "{kind:?}"
        );
        assert!(report.journal_entries > 0, "{kind:?}: {report:?}");
        // A shred whose deletion is deferred leaves records and a registry entry that open for
        // no one: a state a sound store passes through until its purge.
        store
            .shred_subjects_with(&ids[..1], RecordDeletion::Deferred)
            .unwrap();
        let report = store.check().unwrap();
        assert!(report.is_sound(), "{kind:?}: {report:?}");
        assert_eq!(report.records, (SUBJECTS - 1) * PER_SUBJECT, "{kind:?}");
        assert_eq!(report.subjects, SUBJECTS - 1, "{kind:?}");
        assert_eq!(report.shredded, PER_SUBJECT + 1, "{kind:?}");
        // And the same after a reopen, from disk.
        drop(store);
        let report = open(&dirs, kind).check().unwrap();
        assert!(report.is_sound(), "{kind:?}: {report:?}");
        assert_eq!(report.records, (SUBJECTS - 1) * PER_SUBJECT, "{kind:?}");
        assert_names_no_one(&report);
    }
}

#[test]
fn a_record_edited_or_moved_on_disk_is_unreadable_and_named_by_its_blind_index() {
    let dirs = Dirs::new();
    let store = open(&dirs, BackendKind::Sled);
    fill(&store);
    let edited = backend_key(&store, 1, 2);
    let mut sealed = store.backend().get(&edited).unwrap().unwrap();
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    store.backend().put(&edited, &sealed).unwrap();
    // Another record's bytes copied over a third one's place.
    let source = store
        .backend()
        .get(&backend_key(&store, 3, 0))
        .unwrap()
        .unwrap();
    let moved = backend_key(&store, 3, 1);
    store.backend().put(&moved, &source).unwrap();
    store.backend().flush().unwrap();

    let before = entries(&store);
    let report = store.check().unwrap();
    assert_eq!(entries(&store), before, "a check writes nothing");
    assert!(!report.is_sound());
    assert_eq!(report.records, SUBJECTS * PER_SUBJECT - 2, "{report:?}");
    assert_eq!(report.unreadable.len(), 2, "{report:?}");
    for place in [&edited, &moved] {
        let blind = domicile_store::BlindIndex(place[place.len() - 32..].try_into().unwrap());
        let finding = report
            .unreadable
            .iter()
            .find(|f| f.entry == format!("notes {blind}"))
            .unwrap_or_else(|| panic!("{blind} not reported: {report:?}"));
        assert!(finding.reason.contains("authenticate"), "{finding:?}");
    }
    assert!(report.unindexed.is_empty(), "{report:?}");
    assert_names_no_one(&report);
}

#[test]
fn an_index_that_lost_its_entries_is_found_and_reindexing_repairs_it() {
    let dirs = Dirs::new();
    let store = open(&dirs, BackendKind::Sled);
    fill(&store);
    let mut batch = Batch::new();
    for prefix in [b"j", b"i"] {
        for item in store.backend().scan_prefix(prefix) {
            batch.delete(item.unwrap().0);
        }
    }
    assert!(!batch.is_empty());
    store.backend().apply(&batch).unwrap();
    store.backend().flush().unwrap();

    let before = entries(&store);
    let report = store.check().unwrap();
    assert_eq!(entries(&store), before, "a check repairs nothing by itself");
    assert!(!report.is_sound());
    assert_eq!(report.unindexed.len(), SUBJECTS * PER_SUBJECT, "{report:?}");
    assert!(report.unindexed[0].reason.contains("no index entry"));
    assert_eq!(report.records, SUBJECTS * PER_SUBJECT, "they still open");
    assert_names_no_one(&report);

    store.rebuild_index().unwrap();
    let report = store.check().unwrap();
    assert!(report.is_sound(), "{report:?}");
    assert_eq!(report.journal_entries, 0);
}

#[test]
fn a_garbled_list_is_corrupt_and_a_record_deleted_under_the_index_leaves_a_stale_id() {
    let dirs = Dirs::new();
    let store = open(&dirs, BackendKind::Sled);
    let ids = fill(&store);
    // Lists only, no journal: the rebuild writes one list per subject.
    store.rebuild_index().unwrap();
    let gone = backend_key(&store, 0, 0);
    store.backend().delete(&gone).unwrap();
    store.backend().flush().unwrap();
    let report = store.check().unwrap();
    assert!(report.is_sound(), "{report:?}");
    assert_eq!(report.stale_index_ids, 1, "{report:?}");
    assert_eq!(report.records, SUBJECTS * PER_SUBJECT - 1);

    // Subject 2's list (subject 0 lost a record above).
    let owner = store.pseudonym(&ids[2]);
    let (list, value) = store
        .backend()
        .scan_prefix(b"i")
        .map(Result::unwrap)
        .find(|(k, _)| k[1..17] == owner.0)
        .unwrap();
    store
        .backend()
        .put(&list, &value[..value.len() - 5])
        .unwrap();
    store.backend().flush().unwrap();
    let report = store.check().unwrap();
    assert!(!report.is_sound());
    assert_eq!(report.corrupt_index.len(), 1, "{report:?}");
    assert!(report.corrupt_index[0].entry.starts_with("subject list "));
    // The garbled list's records are no longer indexed: found too.
    assert_eq!(report.unindexed.len(), PER_SUBJECT, "{report:?}");
    assert_names_no_one(&report);
}

#[test]
fn a_registry_entry_edited_on_disk_is_unreadable_and_named_by_pseudonym() {
    let dirs = Dirs::new();
    let store = open(&dirs, BackendKind::Sled);
    let ids = fill(&store);
    let pseudonym = store.pseudonym(&ids[4]);
    let mut entry_key = b"r".to_vec();
    entry_key.extend_from_slice(&pseudonym.0);
    let mut sealed = store.backend().get(&entry_key).unwrap().unwrap();
    let last = sealed.len() - 1;
    sealed[last] ^= 0x80;
    store.backend().put(&entry_key, &sealed).unwrap();
    store.backend().flush().unwrap();
    // A fresh handle: the registry is cached in the one that registered.
    drop(store);
    let report = open(&dirs, BackendKind::Sled).check().unwrap();
    assert!(!report.is_sound());
    assert_eq!(report.subjects, SUBJECTS - 1);
    assert_eq!(report.unreadable.len(), 1, "{report:?}");
    assert_eq!(
        report.unreadable[0].entry,
        format!("registry entry of {pseudonym}")
    );
    assert_names_no_one(&report);
}

#[test]
fn a_check_while_the_same_handle_writes_finds_the_store_sound() {
    let dirs = Dirs::new();
    let store = open(&dirs, BackendKind::Sled);
    fill(&store);
    let writer = Subject::parse("check-writer", Some("US"), None).unwrap();
    store.register_subject(&writer).unwrap();
    let notes = collection("notes");
    let done = AtomicBool::new(false);
    /// Stops the writer however the checks end, so that a failed one fails the test rather
    /// than leave the scope waiting for the writer.
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            for b in 0.. {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                let keys: Vec<RecordKey> = (0..50).map(|i| key(&format!("w-{b}-{i}"))).collect();
                let batch: Vec<NewRecord<'_>> = keys
                    .iter()
                    .map(|k| NewRecord {
                        subject: &writer.id,
                        class: DataClass::Protected,
                        collection: &notes,
                        key: k,
                        value: b"written during a check",
                    })
                    .collect();
                store.put_batch(&batch).unwrap();
            }
        });
        let _stop = Stop(&done);
        for _ in 0..5 {
            let report = store.check().unwrap();
            assert!(report.is_sound(), "{report:?}");
        }
    });
    let report = store.check().unwrap();
    assert!(report.is_sound(), "{report:?}");
    assert_eq!(
        report.records,
        store.scan_records().count(),
        "every record counted once"
    );
}

#[test]
fn a_registry_entry_deleted_on_disk_leaves_its_subject_unregistered_and_named_by_pseudonym() {
    let dirs = Dirs::new();
    let store = open(&dirs, BackendKind::Sled);
    let ids = fill(&store);
    let pseudonym = store.pseudonym(&ids[3]);
    let mut entry_key = b"r".to_vec();
    entry_key.extend_from_slice(&pseudonym.0);
    assert!(store.backend().delete(&entry_key).unwrap());
    store.backend().flush().unwrap();
    drop(store);
    let store = open(&dirs, BackendKind::Sled);
    let report = store.check().unwrap();
    assert!(!report.is_sound());
    assert_eq!(report.subjects, SUBJECTS - 1);
    assert_eq!(
        report.records,
        SUBJECTS * PER_SUBJECT,
        "their records still open"
    );
    assert_eq!(report.unregistered.len(), 1, "{report:?}");
    assert_eq!(report.unregistered[0].entry, format!("subject {pseudonym}"));
    assert_names_no_one(&report);
    // Registering them again is the repair.
    store
        .register_subject(&Subject::parse(&subject_id(3), Some("US"), None).unwrap())
        .unwrap();
    assert!(store.check().unwrap().is_sound());
}

#[test]
fn records_of_a_subject_who_moved_home_are_misplaced_and_named_with_the_rule() {
    let dirs = Dirs::new();
    let store = open(&dirs, BackendKind::Sled);
    fill(&store);
    // Subject 2 moves to Germany: under the US split their home is now `row`, where their
    // protected records must rest; the four in `us` are left behind until they are moved.
    let moved = Subject::parse(&subject_id(2), Some("DE"), None).unwrap();
    assert_eq!(store.register_subject(&moved).unwrap().as_str(), "row");
    let report = store.check().unwrap();
    assert!(!report.is_sound());
    assert_eq!(report.misplaced.len(), PER_SUBJECT, "{report:?}");
    for n in 0..PER_SUBJECT {
        let blind = store.blind_index(&collection("notes"), &record_key(2, n));
        let finding = report
            .misplaced
            .iter()
            .find(|f| f.entry == format!("notes {blind}"))
            .unwrap_or_else(|| panic!("{blind} not reported: {report:?}"));
        assert!(
            finding
                .reason
                .contains("does not let protected data of a subject homed in row rest in us"),
            "{finding:?}"
        );
    }
    assert_eq!(report.records, SUBJECTS * PER_SUBJECT, "they still open");
    assert_names_no_one(&report);
    // Moving back home makes the store sound again.
    let back = Subject::parse(&subject_id(2), Some("US"), None).unwrap();
    store.register_subject(&back).unwrap();
    assert!(store.check().unwrap().is_sound());
}

/// A shred that waits for a check does not stop the store's writes: while a check runs and a
/// shred waits for it, another subject's write goes through and returns before the check
/// does (a shred queued as the gate's writer used to hold every write back until the check
/// ended: on a large store, up to the node's hour for a check).
#[test]
fn writes_go_on_while_a_shred_waits_for_a_check() {
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    let dirs = Dirs::new();
    let store = open(&dirs, BackendKind::Sled);
    let ids = fill(&store);
    let notes = collection("notes");
    // Enough records that a check takes a while here.
    let bulk = Subject::parse("check-bulk", Some("US"), None).unwrap();
    store.register_subject(&bulk).unwrap();
    for b in 0..20 {
        let keys: Vec<RecordKey> = (0..1000).map(|i| key(&format!("bulk-{b}-{i}"))).collect();
        let batch: Vec<NewRecord<'_>> = keys
            .iter()
            .map(|k| NewRecord {
                subject: &bulk.id,
                class: DataClass::Protected,
                collection: &notes,
                key: k,
                value: b"bulk",
            })
            .collect();
        store.put_batch(&batch).unwrap();
    }
    let started = Instant::now();
    assert!(store.check().unwrap().is_sound());
    let takes = started.elapsed();
    let order = AtomicUsize::new(0);
    let (check_done, write_done) = std::thread::scope(|s| {
        let check = s.spawn(|| {
            let report = store.check().unwrap();
            (report, order.fetch_add(1, Ordering::SeqCst))
        });
        std::thread::sleep(takes / 10);
        let shred = s.spawn(|| store.shred_subject(&ids[0]).unwrap());
        std::thread::sleep(takes / 10);
        let keys = [key("written-while-a-shred-waits")];
        store
            .put_batch(&[NewRecord {
                subject: &ids[1],
                class: DataClass::Protected,
                collection: &notes,
                key: &keys[0],
                value: b"late",
            }])
            .unwrap();
        let write_done = order.fetch_add(1, Ordering::SeqCst);
        let (report, check_done) = check.join().unwrap();
        assert!(report.is_sound(), "{report:?}");
        shred.join().unwrap();
        (check_done, write_done)
    });
    assert!(
        write_done < check_done,
        "the write waited for the check ({takes:?}) behind the shred"
    );
    assert!(store.get_raw(&notes, &record_key(0, 0)).unwrap().is_none());
    assert!(store.check().unwrap().is_sound());
}
