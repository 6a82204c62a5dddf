//! What a deployment keeps in its keys directory beyond the custodian's keys: the transfer key
//! (so excepted data leaving a region is de-identified the same way after a restart), and the
//! Gates' trust in the pinned migration key (so a split's warrants, and only they, are honoured).

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use domicile_residency::SubjectId;
use domicile_split::Deployment;

fn policies() -> domicile_residency::PolicyResolver {
    domicile_residency::PolicyResolver::new()
        .with(Arc::new(domicile_policy_global::GlobalPolicy::new()))
        .with(Arc::new(domicile_policy_us_split::UsSplitPolicy::new()))
}

#[test]
fn the_transfer_key_is_kept_per_region_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    let subject = SubjectId::parse("subject-kept-1").unwrap();
    let first = {
        let d = Deployment::create(
            &data,
            &keys,
            policies().resolve("us-split").unwrap(),
            "domicile.example",
        )
        .unwrap();
        let per_region: Vec<String> = d
            .regions()
            .map(|n| n.gate.transfer_pseudonym(&subject))
            .collect();
        d.close().unwrap();
        per_region
    };
    assert_ne!(first[0], first[1], "two regions share a transfer key");
    for region in ["us", "row"] {
        let path = keys.join(region).join("transfer.key");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is mode {mode:o}", path.display());
    }
    let again = Deployment::open(&data, &keys, &policies()).unwrap();
    let second: Vec<String> = again
        .regions()
        .map(|n| n.gate.transfer_pseudonym(&subject))
        .collect();
    assert_eq!(
        first, second,
        "the transfer pseudonyms changed across a restart"
    );
    again.close().unwrap();
    drop(again);

    // A damaged transfer key is an error naming the file, not a silently new key.
    std::fs::write(keys.join("us/transfer.key"), "not hex\n").unwrap();
    let err = Deployment::open(&data, &keys, &policies()).unwrap_err();
    assert!(err.to_string().contains("transfer.key"), "{err}");
}
