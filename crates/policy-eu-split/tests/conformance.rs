//! The residency conformance suite, the Cedar access rules' constants, and the EU split's own
//! rules.

use std::collections::BTreeSet;

use domicile_policy_eu_split::{
    EuSplitPolicy, ACCESS_RULES, EU_ENTITY, EU_MONITOR, EXPORT_ITEM, EXPORT_REGIME,
    MAX_APPROVAL_SECS, MIN_AGGREGATE_SUBJECTS, MONITORS, PARENT_ENTITIES, SECURITY_GATEWAY_ROLE,
    TECHNOLOGY_PARTNER, US_COUNTRIES, US_ENTITY,
};
use domicile_residency::{
    CountryCode, DataClass, JustificationCode, Obligation, Purpose, Region, ResidencyError,
    ResidencyPolicy, Subject,
};
use proptest::prelude::*;

fn regions() -> (Region, Region, Region) {
    (
        Region::parse("eu").unwrap(),
        Region::parse("us").unwrap(),
        Region::parse("row").unwrap(),
    )
}

#[test]
fn conforms() {
    domicile_residency::conformance::run(&EuSplitPolicy::new());
}

#[test]
fn the_eea_the_uk_and_switzerland_are_homed_in_eu() {
    let policy = EuSplitPolicy::new();
    let (eu, us, row) = regions();
    let home = |c: &str| {
        policy
            .home_region(&Subject::parse("s", Some(c), None).unwrap())
            .unwrap()
    };
    // The 27 EU members, the three other EEA states, the United Kingdom and Switzerland.
    for country in [
        "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE",
        "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK", "IS", "LI", "NO",
        "GB", "CH",
    ] {
        assert_eq!(home(country), eu, "{country}");
    }
    assert_eq!(EuSplitPolicy::europe_countries().len(), 32);
    for country in US_COUNTRIES {
        assert_eq!(home(country), us, "{country}");
    }
    // Europe, but neither EEA nor the UK nor Switzerland; and the rest of the world.
    for country in ["TR", "UA", "RS", "AL", "CN", "SG", "CA", "BR", "IN"] {
        assert_eq!(home(country), row, "{country}");
    }
}

/// The error carries the subject; its message, which reaches logs, does not name it (DESIGN.md
/// invariant 9).
#[test]
fn missing_residence_carries_the_subject_but_its_message_does_not() {
    let policy = EuSplitPolicy::new();
    let ghost = Subject::parse("ghost-9", None, Some("DE")).unwrap();
    let err = policy.home_region(&ghost).unwrap_err();
    assert!(
        matches!(&err, ResidencyError::MissingResidence { subject } if subject.as_str() == "ghost-9")
    );
    assert!(!err.to_string().contains("ghost-9"), "{err}");
}

#[test]
fn eu_excepted_leaves_only_pseudonymised_and_others_also_aggregated() {
    let policy = EuSplitPolicy::new();
    let (eu, us, row) = regions();
    let metrics = Purpose::new(JustificationCode::BusinessMetrics);
    let incident = Purpose::new(JustificationCode::ProductionIncident);
    let d = policy
        .may_transfer(DataClass::Excepted, &eu, &eu, &us, &incident)
        .unwrap();
    assert!(
        !d.allowed,
        "Excepted data leaves eu only for interoperability or metrics"
    );
    assert_eq!(
        d.rule.as_str(),
        "eu-split/eu-excepted-leaves-only-pseudonymised"
    );
    for to in [&us, &row] {
        let d = policy
            .may_transfer(DataClass::Excepted, &eu, &eu, to, &metrics)
            .unwrap();
        assert!(d.allowed);
        assert_eq!(
            d.rule.as_str(),
            "eu-split/eu-excepted-leaves-only-pseudonymised"
        );
        assert_eq!(d.obligations, vec![Obligation::Pseudonymize]);
    }
    let d = policy
        .may_transfer(DataClass::Excepted, &us, &us, &eu, &metrics)
        .unwrap();
    assert_eq!(
        d.obligations,
        vec![Obligation::AnyOf {
            options: vec![
                Obligation::Aggregate {
                    min_subjects: MIN_AGGREGATE_SUBJECTS
                },
                Obligation::Pseudonymize
            ]
        }]
    );
}

#[test]
fn models_follow_their_data_and_only_row_models_leave_under_a_licence() {
    let policy = EuSplitPolicy::new();
    let (eu, us, row) = regions();
    let all = [eu.clone(), us.clone(), row.clone()];
    for source in &all {
        for region in &all {
            let d = policy
                .may_deploy_model(&BTreeSet::from([source.clone()]), region)
                .unwrap();
            assert_eq!(d.allowed, source == region, "{source} in {region}");
        }
        let mixed = BTreeSet::from([source.clone(), row.clone()]);
        if source != &row {
            for region in &all {
                assert!(!policy.may_deploy_model(&mixed, region).unwrap().allowed);
            }
        }
    }
    assert!(
        !policy
            .may_deploy_model(&BTreeSet::new(), &eu)
            .unwrap()
            .allowed
    );

    let migration = Purpose::new(JustificationCode::Migration);
    let leaving_row = policy
        .may_transfer(DataClass::ModelArtifact, &row, &row, &eu, &migration)
        .unwrap();
    assert!(leaving_row.allowed);
    assert_eq!(
        leaving_row.obligations,
        vec![Obligation::ExportLicence {
            regime: EXPORT_REGIME.into(),
            item: EXPORT_ITEM.into()
        }]
    );
    for (home, rule) in [
        (&eu, "eu-split/eu-model-stays-in-eu"),
        (&us, "eu-split/us-model-stays-in-us"),
    ] {
        for to in all.iter().filter(|r| *r != home) {
            let d = policy
                .may_transfer(DataClass::ModelArtifact, home, home, to, &migration)
                .unwrap();
            assert!(!d.allowed);
            assert_eq!(d.rule.as_str(), rule, "{home} -> {to}");
        }
    }
    // A model going back to where it was trained is labelled as going home, not as leaving.
    let home_again = policy
        .may_transfer(DataClass::ModelArtifact, &us, &row, &us, &migration)
        .unwrap();
    assert!(home_again.allowed);
    assert_eq!(
        home_again.rule.as_str(),
        "eu-split/model-rests-where-trained"
    );
}

#[test]
fn audit_records_and_keys_never_leave() {
    let policy = EuSplitPolicy::new();
    let (eu, us, row) = regions();
    for class in [DataClass::AuditRecord, DataClass::KeyMaterial] {
        for code in JustificationCode::ALL {
            for (from, to) in [(&eu, &us), (&eu, &row), (&us, &eu), (&row, &eu)] {
                let d = policy
                    .may_transfer(class, from, from, to, &Purpose::new(code))
                    .unwrap();
                assert!(!d.allowed);
                assert_eq!(d.rule.as_str(), "eu-split/audit-and-keys-stay-in-region");
            }
        }
    }
}

fn country() -> impl Strategy<Value = CountryCode> {
    proptest::sample::select(CountryCode::all().collect::<Vec<_>>())
}

proptest! {
    /// Invariant 1 at the policy level: Protected data of any subject rests only at home and
    /// moves only toward home, whatever the purpose; Europeans are at home only in `eu`.
    #[test]
    fn protected_stays_home(
        residence in country(),
        target in 0usize..3,
        from in 0usize..3,
        code in proptest::sample::select(JustificationCode::ALL.to_vec()),
    ) {
        let policy = EuSplitPolicy::new();
        let (eu, us, row) = regions();
        let all = [eu.clone(), us, row];
        let subject = Subject::new("p".parse().unwrap(), residence);
        let home = policy.home_region(&subject).unwrap();
        prop_assert_eq!(home == eu, EuSplitPolicy::is_eu_country(residence));
        let (target, from) = (&all[target], &all[from]);
        let rest = policy.may_rest_in(DataClass::Protected, &home, target).unwrap();
        prop_assert_eq!(rest.allowed, target == &home);
        let moved = policy
            .may_transfer(DataClass::Protected, &home, from, target, &Purpose::new(code))
            .unwrap();
        if moved.allowed {
            prop_assert_eq!(target, &home);
        }
        if from != target && target == &home {
            prop_assert_eq!(moved.allowed, code == JustificationCode::Migration);
        }
    }
}

#[test]
fn the_cedar_text_spells_the_approval_limit_as_max_approval_secs() {
    let limit = format!("context.approval_secs <= {MAX_APPROVAL_SECS}");
    let limits: Vec<&str> = ACCESS_RULES
        .lines()
        .filter(|l| l.contains("context.approval_secs"))
        .collect();
    assert!(limits.len() >= 4);
    for line in limits {
        assert!(line.contains(&limit), "{line:?} is not {limit:?}");
    }
}

#[test]
fn every_list_of_european_countries_in_the_cedar_text_is_the_policy_s() {
    use domicile_residency::JurisdictionGroup;
    let quoted = |cs: Vec<CountryCode>| {
        let mut v: Vec<String> = cs.iter().map(|c| format!("\"{}\"", c.as_str())).collect();
        v.sort();
        v
    };
    let europe = quoted(EuSplitPolicy::europe_countries());
    let eea = quoted(
        CountryCode::all()
            .filter(|c| c.is_member_of(JurisdictionGroup::Eea))
            .collect(),
    );
    let lists: Vec<&str> = ACCESS_RULES
        .lines()
        .filter(|l| l.contains("\"IE\""))
        .collect();
    // Where staff and approvers must be (three permits and the remote-access forbid), and where
    // an approver's organisation must be incorporated (two permits).
    assert_eq!(lists.len(), 6, "{lists:#?}");
    for line in lists {
        let start = line.find('[').unwrap();
        let end = line.find(']').unwrap();
        let mut listed: Vec<String> = line[start + 1..end]
            .split(',')
            .map(|s| s.trim().to_owned())
            .collect();
        listed.sort();
        if line.contains("approver_org_country") {
            assert_eq!(listed, eea, "{line}");
        } else {
            assert_eq!(listed, europe, "{line}");
        }
    }
    // The approval obligation the Gate checks says the same.
    match domicile_policy_eu_split::eu_approval_obligation() {
        Obligation::RequireApproval {
            by,
            max_duration_secs,
        } => {
            assert_eq!(by.as_str(), "EEA");
            assert_eq!(max_duration_secs, MAX_APPROVAL_SECS);
        }
        other => panic!("{other}"),
    }
}

#[test]
fn the_organisations_and_roles_the_rules_name_are_the_crate_s_constants() {
    let named = |org: &str| ACCESS_RULES.contains(&format!("Domicile::Organisation::\"{org}\""));
    assert!(named(EU_ENTITY) && named(EU_MONITOR) && named(US_ENTITY) && named(TECHNOLOGY_PARTNER));
    assert!(PARENT_ENTITIES
        .iter()
        .chain(MONITORS.iter())
        .all(|o| named(o)));
    assert!(ACCESS_RULES.contains(&format!("Domicile::Role::\"{SECURITY_GATEWAY_ROLE}\"")));
}

#[test]
fn every_access_rule_of_the_us_split_is_kept_for_us() {
    // The EU arrangement sits beside the US one: every US access rule is here under this
    // policy's name, so moving a US-split deployment to this policy weakens nothing in `us`.
    for us_rule in [
        "us-staff-read-us-data",
        "usds-staff-read-us-data-with-approval",
        "us-approver-approves-us-access",
        "parent-and-partner-never-read-us-plaintext",
        "staff-read-row-data",
        "app-service-keeps-own-region",
        "app-service-shreds-on-request",
        "training-scans-own-region-behaviour",
        "training-writes-own-region-models",
        "migration-service-moves-data",
        "auditor-reads-log",
        "security-reads-own-region-log",
        "auditor-reads-nothing-else",
        "deny-by-default",
    ] {
        let id = format!("eu-split/access/{us_rule}");
        assert!(
            EuSplitPolicy::new()
                .rules()
                .iter()
                .any(|r| r.id.as_str() == id),
            "{id}"
        );
    }
}
