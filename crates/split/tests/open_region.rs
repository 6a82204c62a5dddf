//! `Deployment::open_region`: one region of a deployment, alone, as a region's node holds it —
//! so that each region can be served by its own process.

use std::sync::Arc;

use domicile_residency::{PolicyResolver, Region};
use domicile_split::Deployment;

fn policies() -> PolicyResolver {
    PolicyResolver::new().with(Arc::new(domicile_policy_us_split::UsSplitPolicy::new()))
}

#[test]
fn a_region_opens_alone_and_only_with_the_deployments_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    let created = Deployment::create(
        &data,
        &keys,
        policies().resolve("us-split").unwrap(),
        "domicile.example",
    )
    .unwrap();
    created.close().unwrap();
    drop(created);

    let us = Region::parse("us").unwrap();
    let opened = Deployment::open_region(&data, &keys, &policies(), &us).unwrap();
    let regions: Vec<&Region> = opened.regions().map(|n| &n.region).collect();
    assert_eq!(regions, [&us]);
    assert!(opened.region(&Region::parse("row").unwrap()).is_none());
    opened.close().unwrap();
    drop(opened);

    // A region the policy does not have, and a keys directory of another deployment, are
    // refused before anything is opened.
    assert!(
        Deployment::open_region(&data, &keys, &policies(), &Region::parse("eu").unwrap()).is_err()
    );
    let other = tempfile::tempdir().unwrap();
    Deployment::create(
        other.path().join("data"),
        other.path().join("keys"),
        policies().resolve("us-split").unwrap(),
        "domicile.example",
    )
    .unwrap();
    assert!(Deployment::open_region(&data, other.path().join("keys"), &policies(), &us).is_err());
}

/// A region whose store directory holds a redb database is opened on redb (the demo's
/// `--backend redb`); the others stay on sled, and the deployment reopens as it was made.
#[test]
fn a_store_directory_holding_a_redb_database_opens_as_redb() {
    use domicile_store::{RedbBackend, SealedStore};

    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    let us = Region::parse("us").unwrap();
    drop(RedbBackend::open(SealedStore::store_dir(&data, &us)).unwrap());
    let created = Deployment::create(
        &data,
        &keys,
        policies().resolve("us-split").unwrap(),
        "domicile.example",
    )
    .unwrap();
    created.close().unwrap();
    drop(created);
    let us_store = SealedStore::store_dir(&data, &us);
    let row_store = SealedStore::store_dir(&data, &Region::parse("row").unwrap());
    assert!(us_store.join(RedbBackend::FILE_NAME).exists());
    assert!(
        !us_store.join("db").exists(),
        "us must not hold a sled database"
    );
    assert!(row_store.join("db").exists(), "row stays on sled");
    assert!(!row_store.join(RedbBackend::FILE_NAME).exists());
    let reopened = Deployment::open(&data, &keys, &policies()).unwrap();
    assert_eq!(reopened.regions().count(), 2);
    reopened.close().unwrap();
}
