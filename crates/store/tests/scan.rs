//! Long scans, which open records on a second thread while the caller's reads the backend:
//! the same records, in the backend's order, with errors where they occurred, scans on several
//! threads sharing the store's one opening thread, and nothing of it left once the store is
//! dropped.

use std::collections::BTreeMap;

mod common;

use common::{backends, collection, key, open, subject, Dirs};
use domicile_residency::{DataClass, SubjectId};
use domicile_store::{BackendKind, NewRecord, RecordKey, SealedStore, StoreError};

/// Well past the records a scan opens before it starts its second thread.
const RECORDS: usize = 1_500;

struct World {
    dirs: Dirs,
    store: SealedStore,
    subjects: Vec<SubjectId>,
    /// (collection, key) → (subject index, value).
    written: BTreeMap<(String, String), (usize, Vec<u8>)>,
}

fn world(kind: BackendKind) -> World {
    let dirs = Dirs::new();
    let store = open(&dirs.data(), kind, "us", dirs.custodian());
    let subjects: Vec<SubjectId> = (0..7)
        .map(|i| {
            let s = subject(&format!("scan-subject-{i}"), "US");
            store.register_subject(&s).unwrap();
            s.id
        })
        .collect();
    let collections = [collection("events"), collection("profile")];
    let keys: Vec<RecordKey> = (0..RECORDS).map(|i| key(&format!("k{i:05}"))).collect();
    let values: Vec<Vec<u8>> = (0..RECORDS)
        .map(|i| {
            format!("value of record {i}")
                .repeat(1 + i % 5)
                .into_bytes()
        })
        .collect();
    let mut written = BTreeMap::new();
    for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(400) {
        let batch: Vec<NewRecord<'_>> = chunk
            .iter()
            .map(|&i| NewRecord {
                subject: &subjects[i % subjects.len()],
                class: DataClass::Protected,
                // Nearly all in one collection, so its scan is a long one.
                collection: &collections[usize::from(i % 10 == 0)],
                key: &keys[i],
                value: &values[i],
            })
            .collect();
        store.put_batch(&batch).unwrap();
        for r in &batch {
            written.insert(
                (r.collection.to_string(), r.key.to_string()),
                (i_of(&subjects, r.subject), r.value.to_vec()),
            );
        }
    }
    World {
        dirs,
        store,
        subjects,
        written,
    }
}

/// Whether a thread of this process is the store's scan thread (by its name, from
/// `/proc/self/task`): so a test can tell a scan that used it from one that did not.
fn a_scan_thread_runs() -> bool {
    std::fs::read_dir("/proc/self/task").unwrap().any(|task| {
        std::fs::read_to_string(task.unwrap().path().join("comm"))
            .is_ok_and(|name| name.trim() == "domicile-scan")
    })
}

fn i_of(subjects: &[SubjectId], s: &SubjectId) -> usize {
    subjects.iter().position(|x| x == s).unwrap()
}

/// The sealed values of `collection` in the backend's order, with their backend keys.
fn backend_order(store: &SealedStore, collection: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut prefix = vec![b'd'];
    prefix.extend_from_slice(&(collection.len() as u16).to_be_bytes());
    prefix.extend_from_slice(collection.as_bytes());
    store
        .backend()
        .scan_prefix(&prefix)
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_long_scan_returns_every_record_once_as_gets_do() {
    for kind in backends() {
        a_long_scan_returns_every_record_once_on(kind);
    }
}

fn a_long_scan_returns_every_record_once_on(kind: BackendKind) {
    let w = world(kind);
    for name in ["events", "profile"] {
        let collection = collection(name);
        let mut seen = BTreeMap::new();
        for record in w.store.scan_collection(&collection) {
            let record = record.unwrap();
            let key = (name.to_owned(), record.meta.key.to_string());
            let (subject, value) = &w.written[&key];
            assert_eq!(&record.value, value);
            assert_eq!(record.meta.subject, w.subjects[*subject]);
            let got = w
                .store
                .get_raw(&collection, &record.meta.key)
                .unwrap()
                .unwrap();
            assert_eq!(got.value, record.value);
            assert!(seen.insert(key, ()).is_none(), "a record came twice");
        }
        let expected = w.written.keys().filter(|(c, _)| c == name).count();
        assert_eq!(seen.len(), expected, "{kind:?} {name}");
    }
    assert_eq!(w.store.scan_records().count(), RECORDS);
}

#[test]
fn a_scan_keeps_the_backend_order_and_reports_a_bad_record_where_it_is() {
    let w = world(BackendKind::Sled);
    let events = collection("events");
    let order = backend_order(&w.store, "events");
    assert!(order.len() > 1_000);
    // One record well inside the part the second thread opens has its tag broken on disk.
    let bad = 1_000;
    let (bad_key, mut bad_value) = order[bad].clone();
    let last = bad_value.len() - 1;
    bad_value[last] ^= 1;
    w.store.backend().put(&bad_key, &bad_value).unwrap();

    let scanned: Vec<Result<_, _>> = w.store.scan_collection(&events).collect();
    assert_eq!(
        scanned.len(),
        order.len(),
        "every record, the bad one as an error"
    );
    for (i, item) in scanned.iter().enumerate() {
        match item {
            Err(StoreError::Authentication { .. }) if i == bad => {}
            Ok(record) if i != bad => {
                let get = w.store.get_raw(&events, &record.meta.key).unwrap().unwrap();
                assert_eq!(get.value, record.value);
            }
            other => panic!("record {i}: {other:?}"),
        }
    }
    // The backend's order is blind-index order: the records opened come out in it.
    let keys_in_scan: Vec<String> = scanned
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|r| r.meta.key.to_string())
        .collect();
    let mut sorted_by_blind: Vec<(Vec<u8>, String)> = keys_in_scan
        .iter()
        .map(|k| {
            let blind = w.store.blind_index(&events, &key(k));
            (blind.0.to_vec(), k.clone())
        })
        .collect();
    sorted_by_blind.sort();
    let expected: Vec<String> = sorted_by_blind.into_iter().map(|(_, k)| k).collect();
    assert_eq!(keys_in_scan, expected, "records in blind-index order");
}

#[test]
fn a_long_scan_skips_a_shredded_subject_in_scan_records() {
    let w = world(BackendKind::Sled);
    let gone = w.subjects[3].clone();
    w.store.shred_subject(&gone).unwrap();
    let left: usize = w
        .written
        .values()
        .filter(|(s, _)| w.subjects[*s] != gone)
        .count();
    let mut n = 0;
    for record in w.store.scan_records() {
        let record = record.unwrap();
        assert_ne!(record.meta.subject, gone);
        n += 1;
    }
    assert_eq!(n, left);
}

#[test]
fn a_scan_dropped_midway_then_the_store_leaves_nothing_running() {
    let w = world(BackendKind::Sled);
    let events = collection("events");
    let mut scan = w.store.scan_collection(&events);
    // Past the inline part: the second thread has chunks in hand.
    for _ in 0..300 {
        scan.next().unwrap().unwrap();
    }
    assert!(
        a_scan_thread_runs(),
        "a long scan on sled uses the scan thread"
    );
    drop(scan);
    let World { dirs, store, .. } = w;
    drop(store);
    // The key directory is free again at once: the store's scan thread, which shared the
    // custodian, ended with the store.
    let store = open(&dirs.data(), BackendKind::Sled, "us", dirs.custodian());
    assert!(store.scan_collection(&events).count() > 1_000);
}

#[test]
fn scans_on_several_threads_share_the_opening_thread_and_each_gets_its_own_records() {
    let w = world(BackendKind::Sled);
    let events = collection("events");
    let profile = collection("profile");
    let alone: Vec<String> = w
        .store
        .scan_collection(&events)
        .map(|r| r.unwrap().meta.key.to_string())
        .collect();
    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let keys: Vec<String> = w
                        .store
                        .scan_collection(&events)
                        .map(|r| r.unwrap().meta.key.to_string())
                        .collect();
                    let others = w.store.scan_collection(&profile).count();
                    (keys, others)
                })
            })
            .collect();
        for run in runs {
            let (keys, others) = run.join().unwrap();
            assert_eq!(keys, alone);
            assert_eq!(others, RECORDS / 10);
        }
    });
}

#[test]
fn a_store_drops_even_with_a_long_scan_leaked() {
    let w = world(BackendKind::Sled);
    let events = collection("events");
    let mut scan = w.store.scan_collection(&events);
    for _ in 0..300 {
        scan.next().unwrap().unwrap();
    }
    assert!(a_scan_thread_runs());
    // A scan never dropped (leaked, as a caller may do by accident) holds nothing that keeps the
    // store's scan thread alive: dropping the store ends the thread and returns. (The leaked
    // backend iterator keeps sled's own lock; the key custodian, which the thread shared, is
    // free.)
    std::mem::forget(scan);
    let World { dirs, store, .. } = w;
    drop(store);
    let elsewhere = dirs.tmp.path().join("elsewhere");
    let store = open(&elsewhere, BackendKind::Sled, "us", dirs.custodian());
    store
        .register_subject(&subject("after-the-leak", "US"))
        .unwrap();
}

#[test]
fn scans_of_every_length_around_the_split_return_the_backend_order() {
    for kind in backends() {
        let dirs = Dirs::new();
        let store = open(&dirs.data(), kind, "us", dirs.custodian());
        let s = subject("scan-lengths", "US");
        store.register_subject(&s).unwrap();
        // Around the records a scan opens before it splits (32), and a few parts past it.
        for n in [0, 1, 31, 32, 33, 34, 64, 129, 700] {
            let name = format!("len{n}");
            let c = collection(&name);
            let keys: Vec<RecordKey> = (0..n).map(|i| key(&format!("r{i}"))).collect();
            let batch: Vec<NewRecord<'_>> = keys
                .iter()
                .map(|k| NewRecord {
                    subject: &s.id,
                    class: DataClass::Protected,
                    collection: &c,
                    key: k,
                    value: k.as_str().as_bytes(),
                })
                .collect();
            store.put_batch(&batch).unwrap();
            let expected: Vec<Vec<u8>> = backend_order(&store, &name)
                .into_iter()
                .map(|(k, _)| k[k.len() - 32..].to_vec())
                .collect();
            let scanned: Vec<Vec<u8>> = store
                .scan_collection(&c)
                .map(|r| {
                    let r = r.unwrap();
                    assert_eq!(r.value, r.meta.key.as_str().as_bytes(), "{kind:?} {n}");
                    store.blind_index(&c, &r.meta.key).0.to_vec()
                })
                .collect();
            assert_eq!(scanned.len(), n, "{kind:?}: every record of {n}, once");
            assert_eq!(
                scanned, expected,
                "{kind:?}: {n} records in the backend's order"
            );
        }
        // The longest of them was split: its parts went through the scan thread (each test runs
        // in a process of its own under nextest, so no other test started it).
        assert!(
            a_scan_thread_runs(),
            "{kind:?}: a scan of 700 records splits"
        );
    }
}
