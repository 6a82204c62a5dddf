//! `domicile keys` end to end: rotate a region's KEK, retire the old one, and the data still
//! opens; retiring the KEK in use is refused.

use std::process::{Command, Output};
use std::sync::Arc;

use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{DataClass, Region, Subject};
use domicile_store::{Collection, FileCustodian, RecordKey, SealedStore};

fn domicile(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_domicile"))
        .args(args)
        .output()
        .expect("the domicile binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn rotate_and_retire() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    let us = Region::parse("us").unwrap();
    let collection = Collection::parse("profile").unwrap();
    {
        let custodian = Arc::new(FileCustodian::open(&keys).unwrap());
        let store = SealedStore::open(&data, us.clone(), Arc::new(UsSplitPolicy::new()), custodian)
            .unwrap();
        for i in 0..5 {
            let s = Subject::parse(&format!("user-{i}"), Some("US"), None).unwrap();
            store.register_subject(&s).unwrap();
            let key = RecordKey::parse(&format!("k{i}")).unwrap();
            store
                .put_raw(&s.id, DataClass::Protected, &collection, &key, b"v")
                .unwrap();
        }
    }
    let k = keys.to_str().unwrap();
    let list = domicile(&["keys", "list", "--keys", k]);
    assert!(list.status.success(), "{}", text(&list));
    assert!(
        text(&list).contains("us       key-encryption keys: v1"),
        "{}",
        text(&list)
    );

    let rotate = domicile(&["keys", "rotate", "--keys", k, "--region", "us"]);
    assert!(rotate.status.success(), "{}", text(&rotate));
    assert!(
        text(&rotate).contains("5 data key(s) rewrapped under v2; complete"),
        "{}",
        text(&rotate)
    );

    let in_use = domicile(&[
        "keys",
        "retire",
        "--keys",
        k,
        "--region",
        "us",
        "--version",
        "v2",
    ]);
    assert!(
        !in_use.status.success(),
        "retiring the KEK in use must fail"
    );
    let retire = domicile(&[
        "keys",
        "retire",
        "--keys",
        k,
        "--region",
        "us",
        "--version",
        "v1",
    ]);
    assert!(retire.status.success(), "{}", text(&retire));
    let bad = domicile(&[
        "keys",
        "retire",
        "--keys",
        k,
        "--region",
        "us",
        "--version",
        "latest",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("\"latest\""), "{}", text(&bad));

    // Every record still opens, with a fresh custodian reading only v2.
    let custodian = Arc::new(FileCustodian::open(&keys).unwrap());
    let store = SealedStore::open(&data, us, Arc::new(UsSplitPolicy::new()), custodian).unwrap();
    for i in 0..5 {
        let key = RecordKey::parse(&format!("k{i}")).unwrap();
        assert_eq!(
            store.get_raw(&collection, &key).unwrap().unwrap().value,
            b"v"
        );
    }
}

#[test]
fn a_mistyped_keys_directory_is_refused_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("keyz");
    let w = wrong.to_str().unwrap();
    for args in [
        vec!["keys", "rotate", "--keys", w, "--region", "us"],
        vec![
            "keys",
            "retire",
            "--keys",
            w,
            "--region",
            "us",
            "--version",
            "v1",
        ],
    ] {
        let out = domicile(&args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("is --keys right?"), "{}", text(&out));
        assert!(!wrong.exists(), "{args:?} created {w}");
    }
}
