//! Listing the subject registry: every registered subject, never a shredded one.

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
