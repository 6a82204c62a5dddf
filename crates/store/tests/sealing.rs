//! Sealing: no plaintext at rest, and a ciphertext opens only at its own place.

mod common;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;

use common::*;
use domicile_residency::DataClass;
use domicile_store::{
    Backend, KeyCustodian, NewRecord, RedbBackend, SealedStore, SledBackend, StoreError,
};
use redb::ReadableTable;

const MARKER: &str = "MARKER-7f3a9c1e-do-not-persist-in-clear";

#[test]
fn no_file_holds_the_marker_for_either_backend() {
    for kind in backends() {
        let dirs = Dirs::new();
        let custodian = dirs.custodian();
        {
            let store = open(&dirs.data(), kind, "us", custodian.clone());
            let profiles = collection("profiles");
            for i in 0..50 {
                let s = subject(&format!("user-{i}"), "US");
                store.register_subject(&s).unwrap();
                let value = serde_json::json!({ "bio": format!("{MARKER} #{i}"), "n": i });
                store
                    .put(
                        &s.id,
                        DataClass::Protected,
                        &profiles,
                        &key(&format!("p-{i}")),
                        &value,
                    )
                    .unwrap();
                // A raw value that is nothing but the marker, repeated.
                store
                    .put_raw(
                        &s.id,
                        DataClass::Protected,
                        &collection("raw"),
                        &key(&format!("r-{i}")),
                        MARKER.repeat(20).as_bytes(),
                    )
                    .unwrap();
            }
            store.flush().unwrap();
            let back = store
                .get::<serde_json::Value>(&profiles, &key("p-3"))
                .unwrap()
                .unwrap();
            assert!(back.value["bio"].as_str().unwrap().starts_with(MARKER));
        }
        drop(custodian);
        let mut checked = 0;
        for root in [dirs.data(), dirs.keys()] {
            for file in files_under(&root) {
                let bytes = std::fs::read(&file).unwrap();
                assert!(
                    !contains(&bytes, MARKER.as_bytes()),
                    "{kind:?}: {} holds the marker in the clear",
                    file.display()
                );
                assert!(!contains(&bytes, b"MARKER-7f3a"), "{}", file.display());
                checked += 1;
            }
        }
        // The store's files, and the keys: pseudonym key, KEK, data key store, lock.
        assert!(checked >= 5, "{kind:?}: only {checked} files were checked");
    }
}

#[test]
fn key_files_are_private() {
    let dirs = Dirs::new();
    let store = open(
        &dirs.data(),
        domicile_store::BackendKind::Sled,
        "us",
        dirs.custodian(),
    );
    store.register_subject(&subject("ann", "US")).unwrap();
    let files = files_under(&dirs.keys());
    assert!(files.iter().any(|f| f.ends_with("us/datakeys.redb")));
    assert!(files.iter().any(|f| f.ends_with("us/keys.lock")));
    assert!(files
        .iter()
        .any(|f| f.extension().is_some_and(|x| x == "kek")));
    for file in files {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
}

/// Opens the store's backend directly, after the store is closed.
fn raw_backend(
    dirs: &Dirs,
    kind: domicile_store::BackendKind,
    region_name: &str,
) -> Box<dyn Backend> {
    let dir = SealedStore::store_dir(dirs.data(), &region(region_name));
    match kind {
        domicile_store::BackendKind::Sled => Box::new(SledBackend::open(dir).unwrap()),
        _ => Box::new(RedbBackend::open(dir).unwrap()),
    }
}

fn record_entries(backend: &dyn Backend) -> Vec<(Vec<u8>, Vec<u8>)> {
    backend.scan_prefix(b"d").map(|r| r.unwrap()).collect()
}

#[test]
fn flipping_any_byte_fails_authentication_naming_the_key() {
    for kind in backends() {
        let dirs = Dirs::new();
        let custodian = dirs.custodian();
        let c = collection("messages");
        let k = key("msg-0042");
        {
            let store = open(&dirs.data(), kind, "us", custodian.clone());
            let s = subject("tam", "US");
            store.register_subject(&s).unwrap();
            store
                .put(&s.id, DataClass::Protected, &c, &k, "hello there")
                .unwrap();
        }
        let store = open(&dirs.data(), kind, "us", custodian);
        let original = {
            let entries = record_entries(store.backend());
            assert_eq!(entries.len(), 1);
            entries[0].clone()
        };
        for i in 0..original.1.len() {
            for flip in [0x01u8, 0x80] {
                let mut tampered = original.1.clone();
                tampered[i] ^= flip;
                store.backend().put(&original.0, &tampered).unwrap();
                let err = store.get_raw(&c, &k).unwrap_err();
                assert!(
                    matches!(err, StoreError::Authentication { .. }),
                    "{kind:?} byte {i}: {err}"
                );
                // Named by collection and blind index, never by its key.
                assert!(err.to_string().contains("messages/#"), "{err}");
                assert!(!err.to_string().contains("msg-0042"), "{err}");
            }
        }
        // Restoring the original bytes makes it open again: the failures were the flips.
        store.backend().put(&original.0, &original.1).unwrap();
        assert_eq!(
            store.get::<String>(&c, &k).unwrap().unwrap().value,
            "hello there"
        );
    }
}

#[test]
fn a_ciphertext_moved_elsewhere_fails_to_open() {
    let kind = domicile_store::BackendKind::Sled;
    let dirs = Dirs::new();
    let custodian = dirs.custodian();
    let (a, b) = (subject("alice", "US"), subject("bob", "US"));
    let likes = collection("likes");
    {
        let store = open(&dirs.data(), kind, "us", custodian.clone());
        store.register_subject(&a).unwrap();
        store.register_subject(&b).unwrap();
        store
            .put(
                &a.id,
                DataClass::Protected,
                &likes,
                &key("a1"),
                "alice's like",
            )
            .unwrap();
        store
            .put(
                &b.id,
                DataClass::Protected,
                &likes,
                &key("b1"),
                "bob's like",
            )
            .unwrap();
        // The row store exists too, with its own keys.
        let row = open(&dirs.data(), kind, "row", custodian.clone());
        row.register_subject(&subject("alice", "DE")).unwrap();
    }
    let us_index = custodian.pseudonym_key(&region("us")).unwrap();
    let row_index = custodian.pseudonym_key(&region("row")).unwrap();
    // The v2 layout: `d ‖ u16 len ‖ collection ‖ blind index of (collection, key)`.
    let blinded = |index: &domicile_store::PseudonymKey, c: &str, k: &str| {
        let mut out = vec![b'd'];
        out.extend_from_slice(&(c.len() as u16).to_be_bytes());
        out.extend_from_slice(c.as_bytes());
        out.extend_from_slice(&index.blind_index(c, k).0);
        out
    };
    let layout_key = |c: &str, k: &str| blinded(&us_index, c, k);
    let sealed_a = {
        let backend = raw_backend(&dirs, kind, "us");
        let entries = record_entries(backend.as_ref());
        assert!(entries
            .iter()
            .all(|(k, _)| !contains(k, b"a1") && !contains(k, b"b1")));
        backend.get(&layout_key("likes", "a1")).unwrap().unwrap()
    };
    // Bob's record header (his pseudonym and data key version), read before the cases below
    // overwrite his record.
    let bob_header = {
        let backend = raw_backend(&dirs, kind, "us");
        backend.get(&layout_key("likes", "b1")).unwrap().unwrap()[..22].to_vec()
    };
    let cases: [(&str, &str, &str, &str); 3] = [
        ("another key", "us", "likes", "a2"),
        ("another collection", "us", "notes", "a1"),
        ("another subject's key", "us", "likes", "b1"),
    ];
    for (what, region_name, c, k) in cases {
        {
            let backend = raw_backend(&dirs, kind, region_name);
            backend.put(&layout_key(c, k), &sealed_a).unwrap();
            backend.flush().unwrap();
        }
        let store = open(&dirs.data(), kind, region_name, custodian.clone());
        let err = store.get_raw(&collection(c), &key(k)).unwrap_err();
        assert!(
            matches!(err, StoreError::Authentication { .. }),
            "{what}: {err}"
        );
        assert!(err.to_string().contains(&format!("{c}/#")), "{what}: {err}");
    }
    // Another subject: alice's ciphertext under a header naming bob (his pseudonym and key).
    {
        let backend = raw_backend(&dirs, kind, "us");
        let mut forged = sealed_a.clone();
        forged[..22].copy_from_slice(&bob_header);
        backend.put(&layout_key("likes", "a1"), &forged).unwrap();
        backend.flush().unwrap();
    }
    let store = open(&dirs.data(), kind, "us", custodian.clone());
    let err = store.get_raw(&likes, &key("a1")).unwrap_err();
    assert!(
        matches!(err, StoreError::Authentication { .. }),
        "another subject: {err}"
    );
    drop(store);
    // Another region: the same bytes at the same key in the row store.
    {
        let backend = raw_backend(&dirs, kind, "row");
        backend
            .put(&blinded(&row_index, "likes", "a1"), &sealed_a)
            .unwrap();
        backend.flush().unwrap();
    }
    let row = open(&dirs.data(), kind, "row", custodian.clone());
    let err = row.get_raw(&likes, &key("a1")).unwrap_err();
    assert!(
        matches!(err, StoreError::Authentication { .. }),
        "another region: {err}"
    );
}

#[test]
fn wrong_missing_or_corrupt_keys_are_clear_errors() {
    let kind = domicile_store::BackendKind::Sled;
    let dirs = Dirs::new();
    let c = collection("profiles");
    let k = key("p1");
    {
        let store = open(&dirs.data(), kind, "us", dirs.custodian());
        let s = subject("kay", "US");
        store.register_subject(&s).unwrap();
        store.put(&s.id, DataClass::Protected, &c, &k, "v").unwrap();
    }
    let region_keys = dirs.keys().join("us");
    let kek = region_keys.join("kek").join("00000001.kek");
    let dk = region_keys.join("datakeys.redb");

    // A different KEK of the right shape: the wrapped data key no longer opens.
    let good_kek = std::fs::read(&kek).unwrap();
    let mut wrong = good_kek.clone();
    wrong[20] ^= 0xff;
    std::fs::write(&kek, &wrong).unwrap();
    let store = open(&dirs.data(), kind, "us", dirs.custodian());
    let err = store.get_raw(&c, &k).unwrap_err();
    assert!(matches!(err, StoreError::KeyFile { .. }), "{err}");
    assert!(err.to_string().contains(&dk.display().to_string()), "{err}");
    drop(store);

    // A missing KEK.
    std::fs::remove_file(&kek).unwrap();
    let store = open(&dirs.data(), kind, "us", dirs.custodian());
    let err = store.get_raw(&c, &k).unwrap_err();
    assert!(matches!(err, StoreError::MissingKek { .. }), "{err}");
    assert!(err.to_string().contains("00000001.kek"), "{err}");
    drop(store);
    std::fs::write(&kek, &good_kek).unwrap();
    // Restored as a private key must be: a 0644 key file is refused (see below).
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A truncated data key entry, written into the key store behind the custodian's back.
    let truncate = |cut: usize| -> Vec<u8> {
        const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("data_keys");
        let db = redb::Database::create(&dk).unwrap();
        let txn = db.begin_write().unwrap();
        let good = {
            let mut table = txn.open_table(TABLE).unwrap();
            let (k, v) = {
                let mut it = table.iter().unwrap();
                let (k, v) = it.next().unwrap().unwrap();
                (k.value().to_vec(), v.value().to_vec())
            };
            let new_len = if cut == 0 { v.len() } else { v.len() - cut };
            table.insert(k.as_slice(), &v[..new_len]).unwrap();
            v
        };
        txn.commit().unwrap();
        good
    };
    let good_dk = truncate(3);
    let store = open(&dirs.data(), kind, "us", dirs.custodian());
    let err = store.get_raw(&c, &k).unwrap_err();
    assert!(matches!(err, StoreError::KeyFile { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    assert!(err.to_string().contains("datakeys.redb#"), "{err}");
    drop(store);
    {
        const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("data_keys");
        let db = redb::Database::create(&dk).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(TABLE).unwrap();
            let k = table
                .iter()
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .0
                .value()
                .to_vec();
            table.insert(k.as_slice(), good_dk.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }

    // A key store that is not a database at all: a clear error naming it.
    let good_db = std::fs::read(&dk).unwrap();
    std::fs::write(&dk, b"not a database").unwrap();
    let err =
        match SealedStore::open_with(dirs.data(), kind, region("us"), policy(), dirs.custodian()) {
            Ok(store) => store.get_raw(&c, &k).unwrap_err(),
            Err(e) => e,
        };
    assert!(matches!(err, StoreError::KeyStore { .. }), "{err}");
    assert!(err.to_string().contains("datakeys.redb"), "{err}");
    std::fs::write(&dk, &good_db).unwrap();

    // Restored: it opens again.
    let store = open(&dirs.data(), kind, "us", dirs.custodian());
    assert_eq!(store.get::<String>(&c, &k).unwrap().unwrap().value, "v");
}

#[test]
fn a_store_opened_as_another_region_is_refused() {
    let dirs = Dirs::new();
    let custodian = dirs.custodian();
    drop(open(
        &dirs.data(),
        domicile_store::BackendKind::Sled,
        "us",
        custodian.clone(),
    ));
    std::fs::rename(dirs.data().join("us"), dirs.data().join("row")).unwrap();
    let err =
        SealedStore::open(dirs.data(), region("row"), policy(), custodian.clone()).unwrap_err();
    assert!(matches!(err, StoreError::RegionMismatch { .. }), "{err}");
    let err = SealedStore::open(dirs.data(), region("eu"), policy(), custodian).unwrap_err();
    assert!(err.to_string().contains("eu"), "{err}");
}

/// Invariant 9: no byte the store or the custodian writes names a subject or a record key, for
/// live subjects, shredded ones, and either backend.
#[test]
fn no_file_names_a_subject_or_a_record_key() {
    for kind in backends() {
        let dirs = Dirs::new();
        let custodian = dirs.custodian();
        let ids: Vec<String> = (0..40).map(|i| format!("SUBJ-e1c9-{i:03}")).collect();
        let keys: Vec<String> = (0..40).map(|i| format!("RKEY-77b2-{i:03}")).collect();
        {
            let store = open(&dirs.data(), kind, "us", custodian.clone());
            let likes = collection("likes");
            for (id, k) in ids.iter().zip(&keys) {
                let s = subject(id, "US");
                store.register_subject(&s).unwrap();
                store
                    .put(&s.id, DataClass::Protected, &likes, &key(k), "v")
                    .unwrap();
            }
            // Reads and scans give the real keys back after opening.
            let scanned: Vec<String> = store
                .scan_collection(&likes)
                .map(|r| r.unwrap().meta.key.to_string())
                .collect();
            let mut sorted = scanned.clone();
            sorted.sort();
            assert_eq!(sorted, keys);
            let one = store.scan_subject(&subject(&ids[3], "US").id).unwrap();
            assert_eq!(one[0].meta.key.as_str(), keys[3]);
            let shred: Vec<_> = ids[..20].iter().map(|i| subject(i, "US").id).collect();
            store.shred_subjects(&shred).unwrap();
            store.flush().unwrap();
        }
        drop(custodian);
        for root in [dirs.data(), dirs.keys()] {
            for file in files_under(&root) {
                let bytes = std::fs::read(&file).unwrap();
                for needle in ids.iter().chain(&keys) {
                    assert!(
                        !contains(&bytes, needle.as_bytes()),
                        "{kind:?}: {} names {needle}",
                        file.display()
                    );
                }
                // Nor any common prefix of them, in case a fragment leaked.
                assert!(!contains(&bytes, b"SUBJ-e1c9") && !contains(&bytes, b"RKEY-77b2"));
            }
        }
    }
}

/// A store written in format 1 is refused with an error naming the version and what to do.
#[test]
fn a_format_1_store_is_refused_with_what_to_do() {
    let dirs = Dirs::new();
    let kind = domicile_store::BackendKind::Sled;
    {
        let backend = raw_backend(&dirs, kind, "us");
        backend.put(b"m", b"domicile-store 1\nus").unwrap();
        backend.flush().unwrap();
    }
    let err = SealedStore::open_with(dirs.data(), kind, region("us"), policy(), dirs.custodian())
        .unwrap_err();
    assert!(
        matches!(err, StoreError::UnsupportedStoreFormat { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("format 1") && text.contains("domicile init"),
        "{text}"
    );
}

/// A key file group or others can read is refused, as ssh refuses one, with how to fix it.
#[test]
fn a_group_readable_key_is_refused_with_a_chmod_hint() {
    let dirs = Dirs::new();
    let kind = domicile_store::BackendKind::Sled;
    {
        let store = open(&dirs.data(), kind, "us", dirs.custodian());
        store.register_subject(&subject("gil", "US")).unwrap();
    }
    for file in ["us/pseudonym.key", "us/kek/00000001.kek"] {
        let path = dirs.keys().join(file);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err =
            SealedStore::open_with(dirs.data(), kind, region("us"), policy(), dirs.custodian())
                .and_then(|s| s.subjects())
                .unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{file}: {err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let store = open(&dirs.data(), kind, "us", dirs.custodian());
    assert_eq!(store.subjects().unwrap().len(), 1);
}

/// Nonces are drawn a batch at a time: a source reused across batches or handing a value out
/// twice would seal two values under one nonce and key, which breaks AES-GCM. Every stored
/// record's and registry entry's nonce (bytes 22..34 of its sealed value), and every wrapped
/// data key's (bytes 14..26 of its key store entry, as created and as rewrapped when shreds are
/// finalised), must differ from every other's.
#[test]
fn no_two_stored_values_share_a_nonce() {
    for kind in backends() {
        let dirs = Dirs::new();
        // More subjects than one draw (256 nonces), registered in one batch.
        let subjects: Vec<_> = (0..600)
            .map(|i| subject(&format!("user-{i}"), "US"))
            .collect();
        let events = collection("events");
        let keys: Vec<_> = (0..1_300).map(|i| key(&format!("e-{i}"))).collect();
        let wrapped_nonces = || {
            const TABLE: redb::TableDefinition<&[u8], &[u8]> =
                redb::TableDefinition::new("data_keys");
            let db = redb::Database::create(dirs.keys().join("us").join("datakeys.redb")).unwrap();
            let txn = db.begin_read().unwrap();
            let table = txn.open_table(TABLE).unwrap();
            let entries: Vec<Vec<u8>> = table
                .iter()
                .unwrap()
                .map(|e| e.unwrap().1.value().to_vec())
                .collect();
            assert_eq!(entries.len(), subjects.len(), "{kind:?}");
            let nonces: HashSet<Vec<u8>> = entries.iter().map(|e| e[14..26].to_vec()).collect();
            assert_eq!(
                nonces.len(),
                entries.len(),
                "{kind:?}: a key wrap reused a nonce"
            );
        };
        {
            let custodian = dirs.custodian();
            let store = open(&dirs.data(), kind, "us", custodian.clone());
            store.register_subjects(&subjects).unwrap();
            // Two batches larger than one draw, then single puts; one value for all, so that
            // only the nonce tells the ciphertexts apart.
            for part in keys[..1_200].chunks(600) {
                let batch: Vec<NewRecord<'_>> = part
                    .iter()
                    .enumerate()
                    .map(|(i, k)| NewRecord {
                        subject: &subjects[i % subjects.len()].id,
                        class: DataClass::Protected,
                        collection: &events,
                        key: k,
                        value: b"the same value",
                    })
                    .collect();
                store.put_batch(&batch).unwrap();
            }
            for (i, k) in keys[1_200..].iter().enumerate() {
                let s = &subjects[i % subjects.len()];
                store
                    .put_raw(&s.id, DataClass::Protected, &events, k, b"the same value")
                    .unwrap();
            }
        }
        // The custodian is closed: its pending rows are folded into the table read here.
        wrapped_nonces();
        // Finalising rewraps every live key under a new KEK, with nonces of its own.
        dirs.custodian().finalize_shreds(&region("us")).unwrap();
        wrapped_nonces();

        let backend = raw_backend(&dirs, kind, "us");
        for (prefix, expected) in [(b"d", keys.len()), (b"r", subjects.len())] {
            let entries: Vec<_> = backend.scan_prefix(prefix).map(|r| r.unwrap()).collect();
            assert_eq!(entries.len(), expected, "{kind:?}");
            let nonces: HashSet<&[u8]> =
                entries.iter().map(|(_, sealed)| &sealed[22..34]).collect();
            assert_eq!(
                nonces.len(),
                entries.len(),
                "{kind:?}: a nonce was used twice"
            );
        }
    }
}
