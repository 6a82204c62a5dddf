//! Crypto-shredding, KEK rotation, and moving records between stores.

mod common;

use common::*;
use domicile_residency::DataClass;
use domicile_residency::SubjectId;
use domicile_store::{
    BackendKind, Collection, ExportBundle, FileCustodian, KekVersion, KeyCustodian, NewRecord,
    RecordKey, SealedStore, StoreError, TransferKey,
};

fn fill(store: &SealedStore, subjects: &[&str], per_subject: usize) {
    for id in subjects {
        let s = subject(id, "US");
        store.register_subject(&s).unwrap();
        for i in 0..per_subject {
            let c = collection(if i % 2 == 0 { "likes" } else { "messages" });
            store
                .put(
                    &s.id,
                    DataClass::Protected,
                    &c,
                    &key(&format!("{id}-{i}")),
                    &format!("{id} value {i}"),
                )
                .unwrap();
        }
    }
}

#[test]
fn a_shredded_subject_cannot_be_read_even_from_an_earlier_copy() {
    for kind in backends() {
        let dirs = Dirs::new();
        let custodian = dirs.custodian();
        let store = open(&dirs.data(), kind, "us", custodian.clone());
        fill(&store, &["ada", "ben", "cy"], 6);
        drop(store);
        let copy = dirs.tmp.path().join("copy");
        copy_dir(&dirs.data(), &copy);

        let store = open(&dirs.data(), kind, "us", custodian.clone());
        let ids = |store: &SealedStore| -> Vec<String> {
            let subjects = store.subjects().unwrap();
            let mut ids: Vec<String> = subjects.iter().map(|s| s.subject.id.to_string()).collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(&store), ["ada", "ben", "cy"]);
        let receipt = store.shred_subject(&subject("ben", "US").id).unwrap();
        assert_eq!(ids(&store), ["ada", "cy"]);
        assert_eq!(receipt.records.len(), 6);
        assert!(receipt.key_destroyed_now && receipt.registry_entry_deleted);
        assert_eq!(receipt.data_key_version, 1);
        assert!(store
            .scan_subject(&subject("ben", "US").id)
            .unwrap()
            .is_empty());
        assert!(store.subject(&subject("ben", "US").id).unwrap().is_none());
        assert_eq!(
            store.scan_subject(&subject("ada", "US").id).unwrap().len(),
            6
        );
        drop(store);

        // The copy still holds ben's ciphertexts, but his key is gone; the same custodian and a
        // fresh one (no cache) both refuse them, and open everyone else's.
        for custodian in [custodian.clone(), dirs.custodian()] {
            let old = open(&copy, kind, "us", custodian);
            assert_eq!(
                ids(&old),
                ["ada", "cy"],
                "the copy's registry entry of ben is dead"
            );
            for c in ["likes", "messages"] {
                for record in old.scan_collection(&collection(c)) {
                    match record {
                        Ok(r) => assert_ne!(r.meta.subject.as_str(), "ben"),
                        Err(e) => {
                            assert!(matches!(e, StoreError::SubjectShredded { .. }), "{e}");
                            // Named by blind index: the key of a shredded record is gone.
                            assert!(e.to_string().contains(&format!("{c}/#")), "{e}");
                            assert!(!e.to_string().contains("ben"), "{e}");
                        }
                    }
                }
            }
            let err = old
                .get_raw(&collection("likes"), &key("ben-0"))
                .unwrap_err();
            assert!(matches!(err, StoreError::SubjectShredded { .. }), "{err}");
            assert!(old.subject(&subject("ben", "US").id).unwrap().is_none());
            for id in ["ada", "cy"] {
                let records = old.scan_subject(&subject(id, "US").id).unwrap();
                assert_eq!(records.len(), 6, "{kind:?} {id}");
                assert!(records
                    .iter()
                    .all(|r| r.decode::<String>().unwrap().starts_with(id)));
            }
        }
        // ben can come back with a new key version; his old records stay dead.
        let store = open(&dirs.data(), kind, "us", custodian.clone());
        store.register_subject(&subject("ben", "US")).unwrap();
        let meta = store
            .put(
                &subject("ben", "US").id,
                DataClass::Protected,
                &collection("likes"),
                &key("ben-new"),
                "hi",
            )
            .unwrap();
        assert_eq!(meta.data_key_version, 2);
        drop(store);
        let old = open(&copy, kind, "us", custodian);
        let err = old
            .get_raw(&collection("likes"), &key("ben-0"))
            .unwrap_err();
        assert!(matches!(err, StoreError::Authentication { .. }), "{err}");
    }
}

#[test]
fn shredding_an_unknown_subject_is_an_error_and_shredding_twice_finishes() {
    let dirs = Dirs::new();
    let store = open(&dirs.data(), BackendKind::Sled, "us", dirs.custodian());
    let err = store
        .shred_subject(&subject("nobody", "US").id)
        .unwrap_err();
    assert!(matches!(err, StoreError::NoDataKey { .. }), "{err}");
    fill(&store, &["dee"], 2);
    store.shred_subject(&subject("dee", "US").id).unwrap();
    let again = store.shred_subject(&subject("dee", "US").id).unwrap();
    assert!(!again.key_destroyed_now);
    assert!(again.records.is_empty());
    let err = store
        .put(
            &subject("dee", "US").id,
            DataClass::Protected,
            &collection("likes"),
            &key("x"),
            "x",
        )
        .unwrap_err();
    assert!(
        matches!(err, StoreError::SubjectNotRegistered { .. }),
        "{err}"
    );
}

#[test]
fn after_rotation_every_record_opens_and_the_old_kek_can_be_retired() {
    for kind in backends() {
        let dirs = Dirs::new();
        let custodian = dirs.custodian();
        let store = open(&dirs.data(), kind, "us", custodian.clone());
        fill(&store, &["eve", "fay", "gus", "hal"], 4);
        let before: Vec<_> = store
            .backend()
            .scan_prefix(b"d")
            .map(|r| r.unwrap())
            .collect();
        let us = region("us");
        assert_eq!(custodian.kek_versions(&us).unwrap(), [KekVersion(1)]);
        let err = custodian.retire_kek(&us, KekVersion(1)).unwrap_err();
        assert!(err.to_string().contains("current"), "{err}");

        let report = store.rotate_kek().unwrap();
        assert_eq!(report.kek, KekVersion(2));
        assert_eq!(report.rewrapped, 4);
        assert!(report.complete && !report.resumed);
        // No record was re-encrypted.
        let after: Vec<_> = store
            .backend()
            .scan_prefix(b"d")
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(before, after);

        custodian.retire_kek(&us, KekVersion(1)).unwrap();
        assert_eq!(custodian.kek_versions(&us).unwrap(), [KekVersion(2)]);
        assert!(!dirs.keys().join("us/kek/00000001.kek").exists());
        drop(store);
        // A fresh custodian (nothing cached) opens every record without KEK v1.
        let store = open(&dirs.data(), kind, "us", dirs.custodian());
        let mut n = 0;
        for c in ["likes", "messages"] {
            for r in store.scan_collection(&collection(c)) {
                let r = r.unwrap();
                assert!(r
                    .decode::<String>()
                    .unwrap()
                    .starts_with(r.meta.subject.as_str()));
                n += 1;
            }
        }
        assert_eq!(n, 16);
    }
}

#[test]
fn an_interrupted_rotation_resumes_and_the_old_kek_stays_until_it_is_done() {
    let dirs = Dirs::new();
    let custodian = dirs.custodian();
    let store = open(&dirs.data(), BackendKind::Sled, "us", custodian.clone());
    fill(&store, &["ia", "ib", "ic", "id", "ie"], 1);
    let us = region("us");
    let step = custodian.rotate_kek_step(&us, 2).unwrap();
    assert_eq!(
        (step.kek, step.rewrapped, step.complete),
        (KekVersion(2), 2, false)
    );
    // Mid-rotation, v1 still wraps keys, so it cannot be retired; every record still opens.
    let err = custodian.retire_kek(&us, KekVersion(1)).unwrap_err();
    assert!(err.to_string().contains("3 data keys"), "{err}");
    drop(store);
    let fresh = dirs.custodian();
    let store = open(&dirs.data(), BackendKind::Sled, "us", fresh.clone());
    assert_eq!(store.scan_collection(&collection("likes")).count(), 5);
    assert!(store
        .scan_collection(&collection("likes"))
        .all(|r| r.is_ok()));
    // Resuming finishes the same rotation rather than starting a third KEK.
    let report = store.rotate_kek().unwrap();
    assert_eq!(
        (
            report.kek,
            report.rewrapped,
            report.resumed,
            report.complete
        ),
        (KekVersion(2), 3, true, true)
    );
    fresh.retire_kek(&us, KekVersion(1)).unwrap();
    let next = store.rotate_kek().unwrap();
    assert_eq!(
        (next.kek, next.rewrapped, next.resumed),
        (KekVersion(3), 5, false)
    );
}

#[test]
fn export_moves_a_subject_between_regions_without_plaintext_in_the_bundle() {
    let dirs = Dirs::new();
    let custodian = dirs.custodian();
    // A US resident whose records sit in `row` (before a split, say, under a permissive setup
    // we mimic by registering them as a row resident first).
    let row = open(&dirs.data(), BackendKind::Sled, "row", custodian.clone());
    let us_store = open(&dirs.data(), BackendKind::Redb, "us", custodian.clone());
    let mover = subject("mia", "US");
    us_store.register_subject(&mover).unwrap();
    for i in 0..5 {
        us_store
            .put(
                &mover.id,
                DataClass::Protected,
                &collection("likes"),
                &key(&format!("mia-{i}")),
                &format!("secret-like-{i}"),
            )
            .unwrap();
    }
    let (bundle, transfer) = us_store.export_subject(&mover.id).unwrap();
    let bytes = bundle.to_bytes();
    assert!(!contains(&bytes, b"secret-like"));
    assert!(!contains(&bytes, b"mia\""), "the subject id is sealed");
    // Bundle format 2: record keys (which embed the user id) and collections are sealed too.
    assert!(!contains(&bytes, b"mia"), "a record key is in the bundle");
    assert!(!contains(&bytes, b"likes"), "a collection is in the bundle");

    // Protected data of a US subject may not rest in row: refused, nothing written.
    let bundle = ExportBundle::from_bytes(&bytes).unwrap();
    let err = row
        .import(
            &bundle,
            &TransferKey::from_bytes(transfer.to_bytes()).unwrap(),
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("us-split/protected-rests-in-home-region"),
        "{err}"
    );
    assert!(row.subject(&mover.id).unwrap().is_none());
    assert_eq!(
        row.backend().scan_prefix(b"").count(),
        1,
        "only the store's metadata"
    );

    // Into another US store (a new deployment's us region): lands, re-sealed under its keys.
    let other_keys = FileCustodian::open(dirs.tmp.path().join("keys2")).unwrap();
    let target = SealedStore::open(
        dirs.tmp.path().join("data2"),
        region("us"),
        policy(),
        std::sync::Arc::new(other_keys),
    )
    .unwrap();
    let report = target.import(&bundle, &transfer).unwrap();
    assert_eq!(report.records.len(), 5);
    assert_eq!(report.home.as_str(), "us");
    let source: Vec<_> = us_store
        .scan_subject(&mover.id)
        .unwrap()
        .iter()
        .map(|r| (r.meta.key.clone(), r.digest()))
        .collect();
    let landed: Vec<_> = target
        .scan_subject(&mover.id)
        .unwrap()
        .iter()
        .map(|r| (r.meta.key.clone(), r.digest()))
        .collect();
    assert_eq!(source, landed);

    // A wrong transfer key, a dropped record, a changed record: refused.
    let wrong = TransferKey::from_bytes([7u8; 32]).unwrap();
    assert!(matches!(
        target.import(&bundle, &wrong),
        Err(StoreError::Bundle { .. })
    ));
    let mut short = bundle.clone();
    short.records.pop();
    let err = target.import(&short, &transfer).unwrap_err();
    assert!(err.to_string().contains("should hold 5 records"), "{err}");
    let mut changed = bundle.clone();
    changed.records[1].sealed[20] ^= 1;
    let err = target.import(&changed, &transfer).unwrap_err();
    // Named by position only: the record key, which embeds a user id, is not printed.
    assert!(err.to_string().contains("record 2 of the bundle"), "{err}");
    assert!(!err.to_string().contains("mia"), "{err}");
    // Records swapped within the bundle: each is bound to its position.
    let mut swapped = bundle.clone();
    swapped.records.swap(0, 1);
    let err = target.import(&swapped, &transfer).unwrap_err();
    assert!(err.to_string().contains("record 1 of the bundle"), "{err}");
    // A bundle of the old format, which carried keys in clear, is refused with what to do.
    let mut old = serde_json::to_value(&bundle).unwrap();
    old["format"] = 1.into();
    let err = ExportBundle::from_bytes(&serde_json::to_vec(&old).unwrap()).unwrap_err();
    assert!(err.to_string().contains("format 1"), "{err}");
    // A malformed bundle is described by position, never by quoting its content.
    let err = ExportBundle::from_bytes(br#"{"format": "mia-secret"}"#).unwrap_err();
    assert!(!err.to_string().contains("mia"), "{err}");
}

#[test]
fn a_key_belongs_to_one_subject() {
    let dirs = Dirs::new();
    let store = open(&dirs.data(), BackendKind::Sled, "us", dirs.custodian());
    fill(&store, &["jo", "kim"], 1);
    let err = store
        .put(
            &subject("kim", "US").id,
            DataClass::Protected,
            &collection("likes"),
            &key("jo-0"),
            "mine",
        )
        .unwrap_err();
    assert!(
        matches!(err, StoreError::KeyHeldByOtherSubject { .. }),
        "{err}"
    );
    let named = format!(
        "likes/{}",
        store.blind_index(&collection("likes"), &key("jo-0"))
    );
    assert!(err.to_string().contains(&named), "{err}");
    assert!(!err.to_string().contains("jo-0"), "{err}");
    assert!(store.delete(&collection("likes"), &key("jo-0")).unwrap());
    assert!(!store.delete(&collection("likes"), &key("jo-0")).unwrap());
    store
        .put(
            &subject("kim", "US").id,
            DataClass::Protected,
            &collection("likes"),
            &key("jo-0"),
            "mine",
        )
        .unwrap();
    assert!(store
        .scan_subject(&subject("jo", "US").id)
        .unwrap()
        .is_empty());
    assert_eq!(
        store.scan_subject(&subject("kim", "US").id).unwrap().len(),
        2
    );
}

/// A key named twice in one batch: as two subjects' records, the batch is refused whole; as
/// one subject's, the later value is the record, and their index holds it once.
#[test]
fn a_key_twice_in_one_batch_is_one_subjects_one_record() {
    for kind in backends() {
        let dirs = Dirs::new();
        let (store, jo, kim) = with_two_subjects(&dirs, kind, ("jo", "kim"));
        let likes = collection("likes");
        let (twice, once) = (key("twice"), key("once"));
        let put = |records: &[(&str, &RecordKey, &[u8])]| {
            let ids: Vec<SubjectId> = records
                .iter()
                .map(|(s, _, _)| subject(s, "US").id)
                .collect();
            let batch: Vec<NewRecord<'_>> = records
                .iter()
                .zip(&ids)
                .map(|((_, key, value), id)| new_record(id, &likes, key, value))
                .collect();
            store.put_batch(&batch)
        };
        let err = put(&[
            ("jo", &once, b"o"),
            ("jo", &twice, b"1"),
            ("kim", &twice, b"2"),
        ])
        .unwrap_err();
        match &err {
            StoreError::KeyHeldByOtherSubject { collection, key } => {
                assert_eq!(collection, &likes, "{kind:?}");
                assert_eq!(*key, store.blind_index(&likes, &twice), "{kind:?}");
            }
            other => panic!("{kind:?}: {other}"),
        }
        assert!(store.get_raw(&likes, &twice).unwrap().is_none(), "{kind:?}");
        assert!(store.get_raw(&likes, &once).unwrap().is_none(), "{kind:?}");
        put(&[
            ("jo", &twice, b"1"),
            ("jo", &once, b"o"),
            ("jo", &twice, b"2"),
        ])
        .unwrap();
        assert_eq!(
            store.get_raw(&likes, &twice).unwrap().unwrap().value,
            b"2",
            "{kind:?}"
        );
        let mut held: Vec<String> = store
            .scan_subject(&jo.id)
            .unwrap()
            .into_iter()
            .map(|r| r.meta.key.as_str().to_owned())
            .collect();
        held.sort();
        assert_eq!(held, ["once", "twice"], "{kind:?}");
        assert!(store.scan_subject(&kim.id).unwrap().is_empty(), "{kind:?}");
        // Rebuilt from the records themselves, the index says the same.
        let rebuilt = store.rebuild_index().unwrap();
        assert_eq!((rebuilt.subjects, rebuilt.records), (1, 2), "{kind:?}");
        assert_eq!(store.scan_subject(&jo.id).unwrap().len(), 2, "{kind:?}");
    }
}

fn new_record<'a>(
    subject: &'a SubjectId,
    collection: &'a Collection,
    key: &'a RecordKey,
    value: &'a [u8],
) -> NewRecord<'a> {
    NewRecord {
        subject,
        class: DataClass::Protected,
        collection,
        key,
        value,
    }
}

/// What a state says, comparable: (live, version).
fn state_of(s: &domicile_store::DataKeyState) -> Option<(bool, u32)> {
    match s {
        domicile_store::DataKeyState::Live(k) => Some((true, k.version())),
        domicile_store::DataKeyState::Shredded { version } => Some((false, *version)),
        _ => None,
    }
}

#[test]
fn reading_many_data_keys_at_once_equals_reading_each() {
    let dirs = Dirs::new();
    let us = region("us");
    let ids = ["ada", "ben", "cy", "dee"].map(|i| subject(i, "US").id);
    {
        let custodian = dirs.custodian();
        custodian.create_data_keys(&us, &ids[..3]).unwrap();
        custodian.destroy_data_key(&us, &ids[1]).unwrap();
        // ben again: version 2.
        custodian.create_data_keys(&us, &ids[1..2]).unwrap();
        custodian.destroy_data_key(&us, &ids[2]).unwrap();
    }
    let pseudonyms = |c: &FileCustodian| {
        let key = c.pseudonym_key(&us).unwrap();
        // ada live, ben live (v2), cy shredded, dee absent, ada again.
        [0, 1, 2, 3, 0].map(|i| key.pseudonym(&ids[i]))
    };
    // A fresh process's custodian (nothing cached), and the same one once every key is cached.
    let custodian = dirs.custodian();
    let wanted = pseudonyms(&custodian);
    for _ in 0..2 {
        let many: Vec<_> = custodian
            .data_keys(&us, &wanted)
            .unwrap()
            .iter()
            .map(state_of)
            .collect();
        let each: Vec<_> = wanted
            .iter()
            .map(|p| state_of(&custodian.data_key(&us, p).unwrap()))
            .collect();
        assert_eq!(many, each);
        assert_eq!(
            many,
            [
                Some((true, 1)),
                Some((true, 2)),
                Some((false, 1)),
                None,
                Some((true, 1))
            ]
        );
    }
}
