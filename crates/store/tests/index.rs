//! The per-subject index of store format 3: a journal entry per batch, folded into subject
//! lists. A subject's reads and shreds find every record of theirs wherever its id is (journal,
//! list, after a reopen), and nothing else: an index entry that names another subject's record,
//! written by an attacker or left by an interrupted delete, neither reads nor shreds it. A
//! format 2 store is rewritten when opened, also when an earlier rewrite was interrupted. A
//! journal entry or list cut short on disk is a typed error for a subject's reads, loses
//! nothing, and does not stop a shred.

mod common;

use std::path::Path;
use std::sync::Arc;

use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{DataClass, Region, Subject, SubjectId};
use domicile_store::{
    Backend, Batch, Collection, FileCustodian, NewRecord, RecordKey, SealedStore, SledBackend,
    StoreError,
};

fn open(dir: &Path, custodian: &Arc<FileCustodian>) -> SealedStore {
    SealedStore::open(
        dir.join("data"),
        Region::parse("us").unwrap(),
        Arc::new(UsSplitPolicy::new()),
        custodian.clone(),
    )
    .unwrap()
}

fn subject(i: usize) -> Subject {
    Subject::parse(&format!("index-subject-{i:03}"), Some("US"), None).unwrap()
}

fn notes() -> Collection {
    Collection::parse("notes").unwrap()
}

fn key(subject: usize, n: usize) -> RecordKey {
    RecordKey::parse(&format!("note-{subject:03}-{n:03}")).unwrap()
}

/// Registers subjects `0..n` and writes `per` records of each in one batch.
fn fill(store: &SealedStore, n: usize, per: usize) -> Vec<SubjectId> {
    let subjects: Vec<Subject> = (0..n).map(subject).collect();
    store.register_subjects(&subjects).unwrap();
    let keys: Vec<(usize, RecordKey)> = (0..n)
        .flat_map(|s| (0..per).map(move |r| (s, key(s, r))))
        .collect();
    let collection = notes();
    let batch: Vec<NewRecord<'_>> = keys
        .iter()
        .map(|(s, k)| NewRecord {
            subject: &subjects[*s].id,
            class: DataClass::Protected,
            collection: &collection,
            key: k,
            value: b"a value",
        })
        .collect();
    store.put_batch(&batch).unwrap();
    subjects.into_iter().map(|s| s.id).collect()
}

fn keys_of(store: &SealedStore, id: &SubjectId) -> Vec<String> {
    let mut keys: Vec<String> = store
        .scan_subject(id)
        .unwrap()
        .into_iter()
        .map(|r| r.meta.key.as_str().to_owned())
        .collect();
    keys.sort();
    keys
}

fn count_prefix(backend: &dyn Backend, prefix: u8) -> usize {
    backend.scan_prefix(&[prefix]).count()
}

#[test]
fn every_record_is_found_from_the_journal_from_lists_and_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
    let ids = {
        let store = open(dir.path(), &custodian);
        let ids = fill(&store, 4, 3);
        // Single puts, each its own journal entry: enough of them to fold the journal once.
        for n in 0..600 {
            store
                .put_raw(
                    &ids[n % 4],
                    DataClass::Protected,
                    &notes(),
                    &key(n % 4, 100 + n / 4),
                    b"v",
                )
                .unwrap();
        }
        assert!(
            count_prefix(store.backend(), b'i') >= 4,
            "the journal was never folded"
        );
        assert!(count_prefix(store.backend(), b'j') < 512);
        ids
    };
    // Reopened with part of the index still in the journal.
    let store = open(dir.path(), &custodian);
    for (s, id) in ids.iter().enumerate() {
        let mut expected: Vec<String> = (0..3).map(|r| key(s, r).as_str().to_owned()).collect();
        expected.extend((0..150).map(|r| key(s, 100 + r).as_str().to_owned()));
        expected.sort();
        assert_eq!(keys_of(&store, id), expected, "subject {s}");
    }
    // A shred folds the journal first and leaves no index entry naming the subject.
    let receipt = store.shred_subject(&ids[0]).unwrap();
    assert_eq!(receipt.records.len(), 153);
    assert_eq!(count_prefix(store.backend(), b'j'), 0);
    let pseudonym = store.pseudonym(&ids[0]);
    for item in store.backend().scan_prefix(&[]) {
        let (k, v) = item.unwrap();
        let named = |b: &[u8]| b.windows(16).any(|w| w == pseudonym.0);
        assert!(
            !named(&k) && !named(&v),
            "an entry still names the shredded subject"
        );
    }
    assert_eq!(keys_of(&store, &ids[1]).len(), 153);
}

#[test]
fn an_index_entry_naming_another_subjects_record_neither_reads_nor_shreds_it() {
    let dir = tempfile::tempdir().unwrap();
    let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
    let store = open(dir.path(), &custodian);
    let ids = fill(&store, 2, 2);
    // An attacker with the store's files adds the second subject's record to the first's index.
    let theirs = key(1, 0);
    let blind = store.blind_index(&notes(), &theirs);
    let mut list = Vec::new();
    list.extend_from_slice(&(notes().as_str().len() as u16).to_be_bytes());
    list.extend_from_slice(notes().as_str().as_bytes());
    list.extend_from_slice(&blind.0);
    let mut list_key = vec![b'i'];
    list_key.extend_from_slice(&store.pseudonym(&ids[0]).0);
    list_key.extend_from_slice(b"attacker");
    store.backend().put(&list_key, &list).unwrap();

    assert_eq!(keys_of(&store, &ids[0]), ["note-000-000", "note-000-001"]);
    let receipt = store.shred_subject(&ids[0]).unwrap();
    assert_eq!(receipt.records.len(), 2, "{receipt:?}");
    let kept = store
        .get_raw(&notes(), &theirs)
        .unwrap()
        .expect("their record was deleted");
    assert_eq!(kept.meta.subject, ids[1]);
    assert_eq!(keys_of(&store, &ids[1]), ["note-001-000", "note-001-001"]);
}

#[test]
fn a_deleted_record_leaves_its_subjects_index_and_its_key_can_pass_to_another() {
    let dir = tempfile::tempdir().unwrap();
    let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
    let store = open(dir.path(), &custodian);
    let ids = fill(&store, 3, 2);
    // Fold the journal (a shred does), so the deletion has a list to rewrite.
    store.shred_subject(&ids[2]).unwrap();
    let gone = key(0, 1);
    assert!(store.delete(&notes(), &gone).unwrap());
    let blind = store.blind_index(&notes(), &gone);
    for item in store.backend().scan_prefix(b"i") {
        let (_, list) = item.unwrap();
        assert!(
            !list.windows(32).any(|w| w == blind.0),
            "a list still names the deleted record"
        );
    }
    assert_eq!(keys_of(&store, &ids[0]), ["note-000-000"]);
    // The key is free again: the second subject takes it, and the first one's shred leaves it.
    store
        .put_raw(
            &ids[1],
            DataClass::Protected,
            &notes(),
            &gone,
            b"theirs now",
        )
        .unwrap();
    store.shred_subject(&ids[0]).unwrap();
    let now = store
        .get_raw(&notes(), &gone)
        .unwrap()
        .expect("the new owner's record");
    assert_eq!(
        (now.meta.subject, now.value),
        (ids[1].clone(), b"theirs now".to_vec())
    );
    assert_eq!(keys_of(&store, &ids[1]).len(), 3);
}

/// Rewrites a format 3 store (its journal folded) as store format 2 wrote it: one empty entry
/// `s ‖ pseudonym ‖ u16 len ‖ collection ‖ blind index` per record. The subject lists of the
/// first `keep_lists` subjects stay as they are, as an interrupted migration leaves them.
fn rewrite_as_format_2(store_dir: &Path, keep_lists: usize) {
    let backend = SledBackend::open(store_dir).unwrap();
    let mut batch = Batch::new();
    let lists: Vec<(Vec<u8>, Vec<u8>)> = backend.scan_prefix(b"i").map(Result::unwrap).collect();
    assert!(lists.len() > keep_lists);
    for (list_key, list) in lists.into_iter().skip(keep_lists) {
        let mut rest = &list[..];
        while !rest.is_empty() {
            let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            let id = &rest[..2 + len + 32];
            let mut entry = vec![b's'];
            entry.extend_from_slice(&list_key[1..17]);
            entry.extend_from_slice(id);
            batch.put(entry, Vec::new());
            rest = &rest[id.len()..];
        }
        batch.delete(list_key);
    }
    batch.put(b"m".to_vec(), b"domicile-store 2\nus".to_vec());
    backend.apply(&batch).unwrap();
    backend.flush().unwrap();
}

#[test]
fn a_format_2_store_is_rewritten_when_opened_even_after_an_interrupted_rewrite() {
    for keep_lists in [0, 2] {
        let dir = tempfile::tempdir().unwrap();
        let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
        let ids = {
            let store = open(dir.path(), &custodian);
            let ids = fill(&store, 6, 4);
            store.shred_subject(&ids[5]).unwrap();
            ids
        };
        let store_dir =
            SealedStore::store_dir(dir.path().join("data"), &Region::parse("us").unwrap());
        rewrite_as_format_2(&store_dir, keep_lists);

        let store = open(dir.path(), &custodian);
        let meta = store.backend().get(b"m").unwrap().unwrap();
        assert!(
            meta.starts_with(b"domicile-store 3\n"),
            "{}",
            String::from_utf8_lossy(&meta)
        );
        assert_eq!(count_prefix(store.backend(), b's'), 0);
        for (s, id) in ids.iter().enumerate().take(5) {
            let expected: Vec<String> = (0..4).map(|r| key(s, r).as_str().to_owned()).collect();
            assert_eq!(
                keys_of(&store, id),
                expected,
                "subject {s}, {keep_lists} lists kept"
            );
        }
        let receipt = store.shred_subject(&ids[0]).unwrap();
        assert_eq!(receipt.records.len(), 4);
        assert!(store.get_raw(&notes(), &key(0, 0)).unwrap().is_none());
        assert_eq!(keys_of(&store, &ids[1]).len(), 4);
    }
}

#[test]
fn a_corrupt_journal_entry_or_subject_list_is_a_typed_error_loses_nothing_and_does_not_stop_a_shred(
) {
    for (prefix, expected) in [(b'j', "journal entry"), (b'i', "index list")] {
        let dir = tempfile::tempdir().unwrap();
        let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
        let ids = {
            let store = open(dir.path(), &custodian);
            let ids = fill(&store, 3, 2);
            if prefix == b'i' {
                // A shred folds the journal into lists.
                store.shred_subject(&ids[2]).unwrap();
            }
            ids
        };
        let store_dir =
            SealedStore::store_dir(dir.path().join("data"), &Region::parse("us").unwrap());
        // Someone with the store's files cuts an index entry short, with the store closed.
        let corrupted = {
            let backend = SledBackend::open(&store_dir).unwrap();
            let (k, v) = backend
                .scan_prefix(&[prefix])
                .next()
                .expect("an entry to corrupt")
                .unwrap();
            backend.put(&k, &v[..v.len() - 5]).unwrap();
            backend.flush().unwrap();
            k
        };
        let store = open(dir.path(), &custodian);
        // A journal entry is every subject's index; a list is its subject's only.
        let victim = ids
            .iter()
            .position(|id| prefix == b'j' || corrupted[1..17] == store.pseudonym(id).0)
            .unwrap();
        let scan = store.scan_subject(&ids[victim]).unwrap_err();
        let message = scan.to_string();
        assert!(
            matches!(scan, StoreError::CorruptIndex { what, .. } if what == expected),
            "{message}"
        );
        for id in &ids {
            assert!(!message.contains(id.as_str()), "{message}");
        }
        // Nothing was lost: every record still opens.
        for (s, id) in ids.iter().enumerate().take(2) {
            for r in 0..2 {
                let record = store.get_raw(&notes(), &key(s, r)).unwrap().unwrap();
                assert_eq!(&record.meta.subject, id);
            }
        }
        if prefix == b'i' {
            let other = (victim + 1) % 2;
            assert_eq!(keys_of(&store, &ids[other]).len(), 2);
        }
        // A shred does not need the index: it finds the subject's records by their owner.
        let receipt = store.shred_subject(&ids[victim]).unwrap();
        assert_eq!(receipt.records.len(), 2, "{receipt:?}");
        let pseudonym = store.pseudonym(&ids[victim]);
        for item in store.backend().scan_prefix(b"d") {
            let (_, sealed) = item.unwrap();
            assert_ne!(
                &sealed[2..18],
                &pseudonym.0[..],
                "a record of theirs is left"
            );
        }
        for item in store.backend().scan_prefix(b"i") {
            let (k, _) = item.unwrap();
            assert_ne!(&k[1..17], &pseudonym.0[..], "a list of theirs is left");
        }
        let other = (victim + 1) % 2;
        for r in 0..2 {
            assert!(store.get_raw(&notes(), &key(other, r)).unwrap().is_some());
        }
    }
}

/// A rebuild of more ids than one of its steps holds (50,000) writes every list, one per
/// subject, and every record reads as before; a rebuild interrupted between steps leaves a
/// subject's old lists beside new ones, which read as one and check sound, and running it again
/// leaves one list per subject.
#[test]
fn a_rebuild_in_steps_lists_every_record_and_one_cut_short_reads_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
    let store = open(dir.path(), &custodian);
    let (subjects, per) = (120, 500);
    let ids = fill(&store, subjects, per);
    let rebuilt = store.rebuild_index().unwrap();
    assert_eq!(
        (rebuilt.subjects, rebuilt.records, rebuilt.steps),
        (subjects, subjects * per, 2)
    );
    assert_eq!(count_prefix(store.backend(), b'j'), 0);
    assert_eq!(count_prefix(store.backend(), b'i'), subjects);
    for (s, id) in ids.iter().enumerate() {
        let expected: Vec<String> = (0..per).map(|r| key(s, r).as_str().to_owned()).collect();
        assert_eq!(keys_of(&store, id), expected);
    }

    // What an interrupted rebuild leaves: besides each subject's list, a new one under another
    // tag naming the same records (for half of them, as if the steps stopped midway).
    let lists: Vec<(Vec<u8>, Vec<u8>)> = store
        .backend()
        .scan_prefix(b"i")
        .map(Result::unwrap)
        .collect();
    let mut batch = Batch::new();
    for (k, v) in lists.iter().take(subjects / 2) {
        let mut other = k.clone();
        let tag = other.len() - 1;
        other[tag] ^= 0xff;
        batch.put(other, v.clone());
    }
    store.backend().apply(&batch).unwrap();
    assert_eq!(count_prefix(store.backend(), b'i'), subjects + subjects / 2);
    for (s, id) in ids.iter().enumerate().step_by(7) {
        assert_eq!(
            keys_of(&store, id).len(),
            per,
            "subject {s}: each record once"
        );
    }
    let report = store.check().unwrap();
    assert!(report.is_sound(), "{report:?}");
    assert_eq!(report.records, subjects * per);
    let rebuilt = store.rebuild_index().unwrap();
    assert_eq!(rebuilt.lists_replaced, subjects + subjects / 2);
    assert_eq!(count_prefix(store.backend(), b'i'), subjects);
    assert!(store.check().unwrap().is_sound());
}

/// The repair for a corrupt index: rebuilt from the owner each record's header names, the
/// index finds every subject's records again, whichever entry was cut short; a record whose
/// header no longer parses is left out and counted; and the store takes writes and folds after.
#[test]
fn a_corrupt_index_is_rebuilt_from_the_records_and_every_subject_reads_again() {
    for prefix in [b'j', b'i'] {
        let dir = tempfile::tempdir().unwrap();
        let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
        let ids = {
            let store = open(dir.path(), &custodian);
            let ids = fill(&store, 4, 3);
            if prefix == b'i' {
                // A shred folds the journal into lists.
                store.shred_subject(&ids[3]).unwrap();
            }
            ids
        };
        let store_dir =
            SealedStore::store_dir(dir.path().join("data"), &Region::parse("us").unwrap());
        {
            let backend = SledBackend::open(&store_dir).unwrap();
            let (k, v) = backend.scan_prefix(&[prefix]).next().unwrap().unwrap();
            backend.put(&k, &v[..v.len() - 5]).unwrap();
            // And one record's header cut short: it opens for no one, and no list names it.
            let (k, _) = backend.scan_prefix(b"d").next().unwrap().unwrap();
            backend.put(&k, b"\x03\x00").unwrap();
            backend.flush().unwrap();
        }
        let store = open(dir.path(), &custodian);
        // In the list case, subject 3 was shredded (their records deleted).
        let live = if prefix == b'i' { 3 } else { 4 };
        let refused = ids[..live]
            .iter()
            .filter(|id| matches!(store.scan_subject(id), Err(StoreError::CorruptIndex { .. })))
            .count();
        assert!(refused >= 1, "the corruption shows before the repair");
        let rebuilt = store.rebuild_index().unwrap();
        assert_eq!(rebuilt.unowned, 1, "{rebuilt:?}");
        assert_eq!(rebuilt.records, live * 3 - 1, "{rebuilt:?}");
        assert_eq!(count_prefix(store.backend(), b'j'), 0);
        assert_eq!(count_prefix(store.backend(), b'i'), rebuilt.subjects);
        let mut found = 0;
        for (s, id) in ids[..live].iter().enumerate() {
            let keys = keys_of(&store, id);
            assert!(keys.len() >= 2, "{keys:?}");
            for k in &keys {
                assert!(k.starts_with(&format!("note-{s:03}-")), "{k}");
            }
            found += keys.len();
        }
        assert_eq!(found, live * 3 - 1);
        if prefix == b'i' {
            assert!(store.scan_subject(&ids[3]).unwrap().is_empty(), "shredded");
        }
        // Writes after the repair land in the journal and are found, then folded by a shred.
        let late = subject(10);
        store.register_subject(&late).unwrap();
        store
            .put_raw(
                &late.id,
                DataClass::Protected,
                &notes(),
                &key(10, 0),
                b"late",
            )
            .unwrap();
        assert_eq!(keys_of(&store, &late.id), vec!["note-010-000"]);
        store.shred_subject(&ids[0]).unwrap();
        assert_eq!(count_prefix(store.backend(), b'j'), 0);
        assert_eq!(keys_of(&store, &late.id), vec!["note-010-000"]);
    }
}

/// The keys of the subject's lists.
fn lists_of(store: &SealedStore, id: &SubjectId) -> usize {
    let mut prefix = vec![b'i'];
    prefix.extend_from_slice(&store.pseudonym(id).0);
    store.backend().scan_prefix(&prefix).count()
}

/// Writes a record of subject 0 (keys from `100 + from` on) between each of `folds` folds (a
/// read of subject 1 folds the journal), so that subject 0 has a list from each.
fn many_lists(store: &SealedStore, ids: &[SubjectId], from: usize, folds: usize) {
    for n in from..from + folds {
        store
            .put_raw(
                &ids[0],
                DataClass::Protected,
                &notes(),
                &key(0, 100 + n),
                b"v",
            )
            .unwrap();
        store.scan_subject(&ids[1]).unwrap();
    }
}

/// A subject written to between many folds has a list from each; a read that finds sixteen or
/// more merges them into one of the records it read (an id whose record was deleted is
/// dropped), and every record reads as before, after a reopen too.
#[test]
fn a_read_merges_a_subjects_many_lists_into_one() {
    let dir = tempfile::tempdir().unwrap();
    let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
    let ids = {
        let store = open(dir.path(), &custodian);
        let ids = fill(&store, 2, 2);
        many_lists(&store, &ids, 0, 15);
        // Fifteen folds, and the first fold's list holds the fill's records too: fifteen
        // lists, one short of a merge.
        assert_eq!(lists_of(&store, &ids[0]), 15);
        assert_eq!(keys_of(&store, &ids[0]).len(), 17);
        assert_eq!(lists_of(&store, &ids[0]), 15, "no merge under sixteen");
        many_lists(&store, &ids, 15, 5);
        assert_eq!(lists_of(&store, &ids[0]), 20);
        // A record deleted leaves its id in no list (a delete rewrites the lists naming it);
        // one whose record is gone while a list still names it is what an interrupted delete
        // leaves: the merge drops it.
        assert!(store.delete(&notes(), &key(0, 100)).unwrap());
        let mut record = vec![b'd', 0, 5];
        record.extend_from_slice(b"notes");
        record.extend_from_slice(&store.blind_index(&notes(), &key(0, 101)).0);
        store.backend().delete(&record).unwrap();
        assert_eq!(store.check().unwrap().stale_index_ids, 1);
        let keys = keys_of(&store, &ids[0]);
        assert_eq!(keys.len(), 2 + 20 - 2);
        for gone in [100, 101] {
            assert!(!keys.contains(&key(0, gone).as_str().to_owned()));
        }
        assert_eq!(lists_of(&store, &ids[0]), 1, "merged");
        assert_eq!(keys_of(&store, &ids[0]), keys);
        assert_eq!(keys_of(&store, &ids[1]).len(), 2);
        let report = store.check().unwrap();
        assert!(report.is_sound(), "{report:?}");
        assert_eq!(report.stale_index_ids, 0, "{report:?}");
        ids
    };
    let store = open(dir.path(), &custodian);
    assert_eq!(lists_of(&store, &ids[0]), 1);
    assert_eq!(keys_of(&store, &ids[0]).len(), 2 + 20 - 2);
    // What the merge wrote names no one: the raw bytes of every file of the store and keys.
    drop(store);
    for path in common::files_under(dir.path()) {
        let bytes = std::fs::read(&path).unwrap();
        for id in &ids {
            assert!(
                !common::contains(&bytes, id.as_str().as_bytes()),
                "{} names {id}",
                path.display()
            );
        }
    }
}

/// Reads that would merge a subject's lists racing that subject's shred: the shred deletes
/// every list of theirs, and no merge writes one back (a merge runs only holding the store as
/// a shred does, and only for a subject whose key is live).
#[test]
fn a_merge_never_writes_a_list_back_for_a_shredded_subject() {
    for round in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
        let store = open(dir.path(), &custodian);
        let ids = fill(&store, 2, 2);
        many_lists(&store, &ids, 0, 15 + round);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                for _ in 0..50 {
                    match store.scan_subject(&ids[0]) {
                        Ok(_) => {}
                        Err(e) => panic!("round {round}: {e}"),
                    }
                }
            });
            std::thread::sleep(std::time::Duration::from_millis(round as u64));
            store.shred_subject(&ids[0]).unwrap();
            reader.join().unwrap();
        });
        assert_eq!(lists_of(&store, &ids[0]), 0, "round {round}");
        assert!(store.scan_subject(&ids[0]).unwrap().is_empty());
        assert_eq!(lists_of(&store, &ids[0]), 0, "round {round}");
        assert_eq!(keys_of(&store, &ids[1]).len(), 2);
    }
}
