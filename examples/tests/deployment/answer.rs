// The whole of a tiny deployment: it answers one request with whatever policy crate `policy`
// names. Included twice by swap_policy.rs, once per policy crate.

/// Where may Lena's (a German resident's) watch history rest, and may a model trained on
/// everyone be served where she lives?
pub(crate) fn answer() -> Vec<String> {
    use std::collections::BTreeSet;

    use domicile_residency::{DataClass, ResidencyPolicy, Subject};

    let policy = policy::Policy::new();
    let lena = Subject::parse("lena", Some("DE"), None).expect("valid subject");
    let home = policy.home_region(&lena).expect("lena has a residence");
    let everyone: BTreeSet<_> = policy.regions().iter().cloned().collect();
    let mut out = Vec::new();
    for region in policy.regions() {
        let rest = policy
            .may_rest_in(DataClass::Protected, &home, region)
            .expect("known regions");
        out.push(format!("rest {region}: {rest}"));
    }
    let deploy = policy
        .may_deploy_model(&everyone, &home)
        .expect("known regions");
    out.push(format!("deploy {home}: {deploy}"));
    out
}
