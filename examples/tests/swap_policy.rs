//! Two tiny deployment builds that differ only in the policy crate they name (the `use … as
//! policy` line below) give different answers to the same request.

mod global_build {
    use domicile_policy_global as policy;
    include!("deployment/answer.rs");
}

mod us_split_build {
    use domicile_policy_us_split as policy;
    include!("deployment/answer.rs");
}

#[test]
fn swapping_the_policy_crate_changes_the_decisions() {
    assert_eq!(
        global_build::answer(),
        vec![
            "rest global: allow by global/everything-rests-in-global",
            "deploy global: allow by global/models-deploy-in-global",
        ]
    );
    assert_eq!(
        us_split_build::answer(),
        vec![
            "rest us: deny by us-split/protected-rests-in-home-region",
            "rest row: allow by us-split/protected-rests-in-home-region",
            "deploy row: deny by us-split/model-deploys-only-where-all-its-data-is-homed",
        ]
    );
}
