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
