//! The residency conformance suite and the Cedar access rules, for the global policy.

use domicile_policy_global::GlobalPolicy;
use domicile_residency::{DataClass, Region, ResidencyError, ResidencyPolicy, Subject};

#[test]
fn conforms() {
    domicile_residency::conformance::run(&GlobalPolicy::new());
}

#[test]
fn everyone_is_homed_in_global_but_residence_is_still_required() {
    let policy = GlobalPolicy::new();
    let global = Region::parse("global").unwrap();
    for country in ["US", "PR", "DE", "CN", "BR"] {
        let s = Subject::parse("s", Some(country), None).unwrap();
        assert_eq!(policy.home_region(&s).unwrap(), global);
    }
    let nowhere = Subject::parse("nobody", None, None).unwrap();
    assert!(matches!(
        policy.home_region(&nowhere),
        Err(ResidencyError::MissingResidence { .. })
    ));
}

#[test]
fn unknown_region_is_named() {
    let policy = GlobalPolicy::new();
    let us = Region::parse("us").unwrap();
    let err = policy
        .may_rest_in(DataClass::Protected, &us, &us)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "region us is not a region of policy global (its regions: global)"
    );
}

#[test]
fn the_log_is_read_only_by_the_named_monitors() {
    use domicile_policy_global::{ACCESS_RULES, MONITORS};
    assert!(MONITORS
        .iter()
        .all(|m| ACCESS_RULES.contains(&format!("Domicile::Organisation::\"{m}\""))));
    let rule = &ACCESS_RULES[ACCESS_RULES
        .find("@id(\"global/access/auditor-reads-log\")")
        .unwrap()..];
    let rule = &rule[..rule.find("};").unwrap()];
    assert!(rule.contains("context.has_ticket") && rule.contains("context.purpose == \"audit\""));
}
