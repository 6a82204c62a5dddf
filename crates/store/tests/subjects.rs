//! Listing the subject registry: every registered subject, never a shredded one.

mod common;

use std::sync::Arc;

use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{Region, Subject};
use domicile_store::{FileCustodian, SealedStore};

#[test]
fn lists_registered_subjects_and_not_shredded_ones() {
    let dir = tempfile::tempdir().unwrap();
    let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
    let store = SealedStore::open(
        dir.path().join("data"),
        Region::parse("us").unwrap(),
        Arc::new(UsSplitPolicy::new()),
        custodian.clone(),
    )
    .unwrap();
    for (id, country) in [("ana", "US"), ("pedro", "PR"), ("gus", "GU")] {
        store
            .register_subject(&Subject::parse(id, Some(country), None).unwrap())
            .unwrap();
    }
    store.shred_subject(&"gus".parse().unwrap()).unwrap();
    drop(store);
    // A fresh handle (no cache) finds them through the registry and the custodian.
    let store = SealedStore::open(
        dir.path().join("data"),
        Region::parse("us").unwrap(),
        Arc::new(UsSplitPolicy::new()),
        custodian,
    )
    .unwrap();
    let mut ids: Vec<String> = store
        .subjects()
        .unwrap()
        .into_iter()
        .map(|s| {
            assert_eq!(s.home.as_str(), "us");
            s.subject.id.to_string()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, ["ana", "pedro"]);
}

/// `subjects` asks the custodian for data keys a few thousand at a time: lists of more than one
/// such chunk, with shredded subjects on either side of a boundary, come out whole.
#[test]
fn lists_every_subject_of_a_registry_larger_than_one_key_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        // A fresh custodian and handle each time: nothing cached.
        let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
        SealedStore::open(
            dir.path().join("data"),
            Region::parse("us").unwrap(),
            Arc::new(UsSplitPolicy::new()),
            custodian,
        )
        .unwrap()
    };
    let store = open();
    let all: Vec<Subject> = (0..9000)
        .map(|i| Subject::parse(&format!("user-{i}"), Some("US"), None).unwrap())
        .collect();
    store.register_subjects(&all).unwrap();
    let shredded: Vec<_> = (0..9000).step_by(997).map(|i| all[i].id.clone()).collect();
    store.shred_subjects(&shredded).unwrap();
    drop(store);
    let store = open();
    let mut got: Vec<String> = store
        .subjects()
        .unwrap()
        .into_iter()
        .map(|s| s.subject.id.to_string())
        .collect();
    got.sort();
    let mut want: Vec<String> = all
        .iter()
        .map(|s| s.id.to_string())
        .filter(|id| !shredded.iter().any(|s| s.as_str() == id))
        .collect();
    want.sort();
    assert_eq!(got.len(), 9000 - shredded.len());
    assert_eq!(got, want);
}

#[test]
fn registering_in_a_batch_equals_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
    let policy = Arc::new(UsSplitPolicy::new());
    let us = Region::parse("us").unwrap();
    let store = SealedStore::open(
        dir.path().join("data"),
        us.clone(),
        policy.clone(),
        custodian.clone(),
    )
    .unwrap();
    let subjects: Vec<Subject> = (0..200)
        .map(|i| {
            Subject::parse(
                &format!("user-{i}"),
                Some(if i % 2 == 0 { "US" } else { "PR" }),
                None,
            )
            .unwrap()
        })
        .collect();
    store.register_subject(&subjects[0]).unwrap();
    // Duplicates and already-registered subjects are fine: each keeps one key.
    let mut batch = subjects.clone();
    batch.push(subjects[5].clone());
    let homes = store.register_subjects(&batch).unwrap();
    assert_eq!(homes.len(), 201);
    assert!(homes.iter().all(|h| h == &us));
    let id = subjects[7].id.clone();
    let collection = domicile_store::Collection::parse("profile").unwrap();
    let key = domicile_store::RecordKey::parse("k7").unwrap();
    store
        .put_raw(
            &id,
            domicile_residency::DataClass::Protected,
            &collection,
            &key,
            b"v",
        )
        .unwrap();
    drop(store);
    // Reopened with a fresh custodian: every key and registry entry is on disk.
    let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
    let store = SealedStore::open(dir.path().join("data"), us, policy, custodian).unwrap();
    assert_eq!(store.subjects().unwrap().len(), 200);
    assert_eq!(
        store.get_raw(&collection, &key).unwrap().unwrap().value,
        b"v"
    );
    // The key store is private.
    use std::os::unix::fs::PermissionsExt;
    let key_store = dir.path().join("keys").join("us").join("datakeys.redb");
    let mode = std::fs::metadata(key_store).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn shredding_in_a_batch_equals_one_at_a_time() {
    use domicile_residency::DataClass;
    use domicile_store::{Collection, RecordKey, StoreError};
    let dir = tempfile::tempdir().unwrap();
    let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
    let policy = Arc::new(UsSplitPolicy::new());
    let us = Region::parse("us").unwrap();
    let store = SealedStore::open(
        dir.path().join("data"),
        us.clone(),
        policy.clone(),
        custodian,
    )
    .unwrap();
    let subjects: Vec<Subject> = (0..50)
        .map(|i| Subject::parse(&format!("user-{i}"), Some("US"), None).unwrap())
        .collect();
    store.register_subjects(&subjects).unwrap();
    let collection = Collection::parse("profile").unwrap();
    for s in &subjects {
        for r in 0..3 {
            let key = RecordKey::parse(&format!("{}-{r}", s.id)).unwrap();
            store
                .put_raw(&s.id, DataClass::Protected, &collection, &key, b"secret")
                .unwrap();
        }
    }
    // A copy of the data taken before the shred.
    let copy = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(dir.path().join("data"))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    let doomed: Vec<_> = subjects[..20].iter().map(|s| s.id.clone()).collect();
    let receipts = store.shred_subjects(&doomed).unwrap();
    assert_eq!(receipts.len(), 20);
    assert!(receipts
        .iter()
        .all(|r| r.records.len() == 3 && r.key_destroyed_now && r.registry_entry_deleted));
    // Shredding again finishes nothing new but succeeds.
    let again = store.shred_subjects(&doomed[..2]).unwrap();
    assert!(again
        .iter()
        .all(|r| !r.key_destroyed_now && r.records.is_empty()));
    assert_eq!(store.subjects().unwrap().len(), 30);
    drop(store);
    // The old copy, opened with the same keys: the shredded subjects' records do not open.
    let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
    let old = SealedStore::open(copy.path().join("data"), us, policy, custodian).unwrap();
    for (i, s) in subjects.iter().enumerate() {
        let key = RecordKey::parse(&format!("{}-0", s.id)).unwrap();
        match old.get_raw(&collection, &key) {
            Ok(Some(r)) if i >= 20 => assert_eq!(r.value, b"secret"),
            Err(StoreError::SubjectShredded { .. }) if i < 20 => {}
            other => panic!("subject {i}: {other:?}"),
        }
    }
}

/// A shred tells its caller the receipts before the first key is destroyed: the announced
/// receipts are the ones it returns, and a failed announcement calls the shred off with
/// nothing destroyed or deleted.
#[test]
fn a_shred_announces_its_receipts_first_and_an_announcement_that_fails_destroys_nothing() {
    use domicile_residency::DataClass;
    use domicile_store::{BackendKind, RecordDeletion, StoreError};
    let dirs = common::Dirs::new();
    let store = common::open(&dirs.data(), BackendKind::Sled, "us", dirs.custodian());
    let subjects: Vec<Subject> = (0..6)
        .map(|i| Subject::parse(&format!("user-{i}"), Some("US"), None).unwrap())
        .collect();
    store.register_subjects(&subjects).unwrap();
    let collection = common::collection("profile");
    for (i, s) in subjects.iter().enumerate() {
        for r in 0..=i {
            let key = common::key(&format!("{}-{r}", s.id));
            store
                .put_raw(&s.id, DataClass::Protected, &collection, &key, b"secret")
                .unwrap();
        }
    }
    let ids: Vec<_> = subjects.iter().map(|s| s.id.clone()).collect();

    let refused = store
        .shred_subjects_announced(&ids[..3], RecordDeletion::Now, |_| {
            Err("the journal's disk is full".to_owned())
        })
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::ShredNotStarted { detail, .. } if detail.contains("disk is full")),
        "{refused}"
    );
    assert_eq!(store.subjects().unwrap().len(), 6);
    for (i, s) in subjects.iter().enumerate() {
        let records = store.scan_subject(&s.id).unwrap();
        assert_eq!(records.len(), i + 1, "nothing of {} was deleted", s.id);
    }

    let mut announced = Vec::new();
    let receipts = store
        .shred_subjects_announced(&ids[..3], RecordDeletion::Now, |receipts| {
            announced = receipts.to_vec();
            Ok(())
        })
        .unwrap();
    assert_eq!(announced, receipts);
    assert_eq!(
        receipts.iter().map(|r| r.records.len()).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(receipts.iter().all(|r| r.key_destroyed_now));
    assert_eq!(store.subjects().unwrap().len(), 3);
}

/// `scan_records` (what a Gate's inventory reads) returns every record of every subject once,
/// none of a shredded subject, and skips the records an interrupted shred left behind a
/// destroyed key instead of failing on them.
#[test]
fn scan_records_lists_every_record_once_and_none_of_a_shredded_subject() {
    use domicile_residency::DataClass;
    use domicile_store::{Collection, KeyCustodian, RecordKey};

    let dir = tempfile::tempdir().unwrap();
    let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
    let region = Region::parse("us").unwrap();
    let store = SealedStore::open(
        dir.path().join("data"),
        region.clone(),
        Arc::new(UsSplitPolicy::new()),
        custodian.clone(),
    )
    .unwrap();
    let people = ["ana", "pedro", "gus", "lia"];
    for id in people {
        let s = Subject::parse(id, Some("US"), None).unwrap();
        store.register_subject(&s).unwrap();
        for collection in ["profile", "behaviour"] {
            for n in 0..3 {
                store
                    .put_raw(
                        &s.id,
                        DataClass::Protected,
                        &Collection::parse(collection).unwrap(),
                        &RecordKey::parse(&format!("{collection}/{id}/{n}")).unwrap(),
                        format!("{id} {n}").as_bytes(),
                    )
                    .unwrap();
            }
        }
    }
    let listed = |store: &SealedStore| -> Vec<(String, String, String)> {
        let mut out: Vec<_> = store
            .scan_records()
            .map(|r| {
                let r = r.unwrap();
                assert_eq!(
                    r.value,
                    format!(
                        "{} {}",
                        r.meta.subject,
                        r.meta.key.as_str().rsplit('/').next().unwrap()
                    )
                    .into_bytes()
                );
                (
                    r.meta.subject.to_string(),
                    r.meta.collection.as_str().to_owned(),
                    r.meta.key.as_str().to_owned(),
                )
            })
            .collect();
        out.sort();
        out
    };
    let all = listed(&store);
    assert_eq!(all.len(), people.len() * 6);
    assert_eq!(
        all.iter().collect::<std::collections::BTreeSet<_>>().len(),
        all.len()
    );

    // A shred: gone from the scan.
    store.shred_subject(&"gus".parse().unwrap()).unwrap();
    // An interrupted shred: the key destroyed, the records still there.
    custodian
        .destroy_data_keys(&region, &["lia".parse().unwrap()])
        .unwrap();
    let left = listed(&store);
    assert_eq!(left.len(), 2 * 6);
    assert!(left.iter().all(|(s, _, _)| s == "ana" || s == "pedro"));
}

/// `register_and_put` leaves what `register_subjects` then `put_batch` leave: on success the
/// subjects and records, durable; when a record is refused, the subjects registered (durable)
/// and no record written.
#[test]
fn registering_with_records_equals_the_two_calls_and_a_refusal_writes_no_record() {
    use domicile_residency::DataClass;
    use domicile_store::{Collection, NewRecord, RecordKey, StoreError};
    let dir = tempfile::tempdir().unwrap();
    let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
    let open = || {
        SealedStore::open(
            dir.path().join("data"),
            Region::parse("us").unwrap(),
            Arc::new(UsSplitPolicy::new()),
            custodian.clone(),
        )
        .unwrap()
    };
    let store = open();
    let likes = Collection::parse("likes").unwrap();
    let (ana, ben) = (
        Subject::parse("ana", Some("US"), None).unwrap(),
        Subject::parse("ben", Some("PR"), None).unwrap(),
    );
    let keys = [
        RecordKey::parse("a1").unwrap(),
        RecordKey::parse("b1").unwrap(),
    ];
    let records: Vec<NewRecord<'_>> = [&ana, &ben]
        .iter()
        .zip(&keys)
        .map(|(s, k)| NewRecord {
            subject: &s.id,
            class: DataClass::Protected,
            collection: &likes,
            key: k,
            value: b"v",
        })
        .collect();
    let (homes, metas) = store
        .register_and_put(&[ana.clone(), ben.clone()], &records)
        .unwrap();
    assert_eq!(
        homes.iter().map(Region::as_str).collect::<Vec<_>>(),
        ["us", "us"]
    );
    assert_eq!(metas.len(), 2);
    // A German's protected record may not rest in `us`: refused, nothing of it written, the
    // subject registered all the same.
    let de = Subject::parse("dora", Some("DE"), None).unwrap();
    let d1 = RecordKey::parse("d1").unwrap();
    let refused = store.register_and_put(
        std::slice::from_ref(&de),
        &[NewRecord {
            subject: &de.id,
            class: DataClass::Protected,
            collection: &likes,
            key: &d1,
            value: b"v",
        }],
    );
    assert!(
        matches!(refused, Err(StoreError::PlacementRefused(_))),
        "{refused:?}"
    );
    drop(store);
    let store = open();
    for (s, k) in [(&ana, &keys[0]), (&ben, &keys[1])] {
        assert!(store.subject(&s.id).unwrap().is_some());
        let r = store.get_raw(&likes, k).unwrap().expect("written");
        assert_eq!(r.meta.subject, s.id);
        assert_eq!(store.scan_subject(&s.id).unwrap().len(), 1);
    }
    assert!(store.subject(&de.id).unwrap().is_some());
    assert!(store.get_raw(&likes, &d1).unwrap().is_none());
    assert!(store.scan_subject(&de.id).unwrap().is_empty());
}
