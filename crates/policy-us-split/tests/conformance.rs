//! The residency conformance suite, the Cedar access rules, and the US split's own rules.

use domicile_policy_us_split::{
    UsSplitPolicy, EXPORT_ITEM, EXPORT_REGIME, MIN_AGGREGATE_SUBJECTS, US_COUNTRIES,
};
use domicile_residency::{
    CountryCode, DataClass, JustificationCode, Obligation, Purpose, Region, ResidencyError,
    ResidencyPolicy, Subject,
};
use proptest::prelude::*;
use std::collections::BTreeSet;

fn regions() -> (Region, Region) {
    (Region::parse("us").unwrap(), Region::parse("row").unwrap())
}

#[test]
fn conforms() {
    domicile_residency::conformance::run(&UsSplitPolicy::new());
}

#[test]
fn us_and_territories_are_homed_in_us() {
    let policy = UsSplitPolicy::new();
    let (us, row) = regions();
    for country in US_COUNTRIES {
        let s = Subject::parse("s", Some(country), None).unwrap();
        assert_eq!(policy.home_region(&s).unwrap(), us, "{country}");
    }
    for country in ["CA", "MX", "GB", "DE", "CN", "IN", "BR"] {
        let s = Subject::parse("s", Some(country), None).unwrap();
        assert_eq!(policy.home_region(&s).unwrap(), row, "{country}");
    }
}

/// The error carries the subject; its message, which reaches logs, names the reason and the
/// value given, never the subject id (DESIGN.md invariant 9).
#[test]
fn missing_or_invalid_residence_carries_the_subject_but_its_message_does_not() {
    let policy = UsSplitPolicy::new();
    let ghost = Subject::parse("ghost-7", None, Some("US")).unwrap();
    let err = policy.home_region(&ghost).unwrap_err();
    assert!(
        matches!(&err, ResidencyError::MissingResidence { subject } if subject.as_str() == "ghost-7")
    );
    assert!(!err.to_string().contains("ghost-7"), "{err}");
    let err = Subject::parse("ghost-8", Some("Neverland"), None).unwrap_err();
    assert!(
        matches!(&err, ResidencyError::InvalidResidence { subject, .. } if subject == "ghost-8")
    );
    assert!(!err.to_string().contains("ghost-8") && err.to_string().contains("Neverland"));
}

#[test]
fn excepted_crosses_only_deidentified() {
    let policy = UsSplitPolicy::new();
    let (us, row) = regions();
    let d = policy
        .may_transfer(
            DataClass::Excepted,
            &us,
            &us,
            &row,
            &Purpose::new(JustificationCode::BusinessMetrics),
        )
        .unwrap();
    assert!(d.allowed);
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
fn excepted_crosses_only_for_interoperability_or_business_metrics() {
    let policy = UsSplitPolicy::new();
    let (us, row) = regions();
    for code in JustificationCode::ALL {
        let d = policy
            .may_transfer(DataClass::Excepted, &us, &us, &row, &Purpose::new(code))
            .unwrap();
        assert_eq!(d.allowed, code.lets_excepted_cross(), "{code}");
        assert_eq!(d.rule.as_str(), "us-split/excepted-crosses-deidentified");
    }
    let policy: &dyn ResidencyPolicy = &policy;
    assert!(policy
        .identifying_fields(DataClass::Excepted)
        .contains(&"user"));
}

#[test]
fn models_follow_their_data_and_row_models_need_a_licence() {
    let policy = UsSplitPolicy::new();
    let (us, row) = regions();
    let only_us = BTreeSet::from([us.clone()]);
    let only_row = BTreeSet::from([row.clone()]);
    let both = BTreeSet::from([us.clone(), row.clone()]);
    assert!(policy.may_deploy_model(&only_us, &us).unwrap().allowed);
    assert!(!policy.may_deploy_model(&only_us, &row).unwrap().allowed);
    assert!(policy.may_deploy_model(&only_row, &row).unwrap().allowed);
    assert!(!policy.may_deploy_model(&only_row, &us).unwrap().allowed);
    assert!(!policy.may_deploy_model(&both, &us).unwrap().allowed);
    assert!(!policy.may_deploy_model(&both, &row).unwrap().allowed);

    let migration = Purpose::new(JustificationCode::Migration);
    let leaving_row = policy
        .may_transfer(DataClass::ModelArtifact, &row, &row, &us, &migration)
        .unwrap();
    assert!(leaving_row.allowed);
    assert_eq!(
        leaving_row.obligations,
        vec![Obligation::ExportLicence {
            regime: EXPORT_REGIME.into(),
            item: EXPORT_ITEM.into()
        }]
    );
    let leaving_us = policy
        .may_transfer(DataClass::ModelArtifact, &us, &us, &row, &migration)
        .unwrap();
    assert!(!leaving_us.allowed);
    assert_eq!(leaving_us.rule.as_str(), "us-split/us-model-stays-in-us");
    // A US model going back into us is going home: it is not labelled as leaving us.
    let into_us = policy
        .may_transfer(DataClass::ModelArtifact, &us, &row, &us, &migration)
        .unwrap();
    assert!(into_us.allowed);
    assert_eq!(into_us.rule.as_str(), "us-split/model-rests-where-trained");
}

#[test]
fn audit_records_and_keys_never_leave() {
    let policy = UsSplitPolicy::new();
    let (us, row) = regions();
    for class in [DataClass::AuditRecord, DataClass::KeyMaterial] {
        for code in JustificationCode::ALL {
            for (from, to) in [(&us, &row), (&row, &us)] {
                let d = policy
                    .may_transfer(class, from, from, to, &Purpose::new(code))
                    .unwrap();
                assert!(!d.allowed);
                assert_eq!(d.rule.as_str(), "us-split/audit-and-keys-stay-in-region");
            }
        }
    }
}

fn country() -> impl Strategy<Value = CountryCode> {
    proptest::sample::select(CountryCode::all().collect::<Vec<_>>())
}

proptest! {
    /// Invariant 1 at the policy level: Protected data of any subject rests only at home, and
    /// moves only toward home, whatever the purpose.
    #[test]
    fn protected_stays_home(
        residence in country(),
        target_us in any::<bool>(),
        from_us in any::<bool>(),
        code in proptest::sample::select(JustificationCode::ALL.to_vec()),
    ) {
        let policy = UsSplitPolicy::new();
        let (us, row) = regions();
        let subject = Subject::new("p".parse().unwrap(), residence);
        let home = policy.home_region(&subject).unwrap();
        prop_assert_eq!(home == us, US_COUNTRIES.contains(&residence.as_str()));
        let target = if target_us { &us } else { &row };
        let from = if from_us { &us } else { &row };
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

    /// Public data goes anywhere, for any purpose.
    #[test]
    fn public_goes_anywhere(
        home_us in any::<bool>(), from_us in any::<bool>(), to_us in any::<bool>(),
        code in proptest::sample::select(JustificationCode::ALL.to_vec()),
    ) {
        let policy = UsSplitPolicy::new();
        let (us, row) = regions();
        let pick = |b: bool| if b { us.clone() } else { row.clone() };
        let d = policy
            .may_transfer(DataClass::Public, &pick(home_us), &pick(from_us), &pick(to_us), &Purpose::new(code))
            .unwrap();
        prop_assert!(d.allowed);
        prop_assert!(d.obligations.is_empty());
    }
}

#[test]
fn the_cedar_text_spells_the_approval_limit_as_max_approval_secs() {
    use domicile_policy_us_split::{ACCESS_RULES, MAX_APPROVAL_SECS};
    let limit = format!("context.approval_secs <= {MAX_APPROVAL_SECS}");
    let limits: Vec<&str> = ACCESS_RULES
        .lines()
        .filter(|l| l.contains("context.approval_secs"))
        .collect();
    assert!(!limits.is_empty());
    for line in limits {
        assert!(line.contains(&limit), "{line:?} is not {limit:?}");
    }
}

#[test]
fn the_organisations_the_rules_name_are_the_crate_s_constants() {
    use domicile_policy_us_split::{
        ACCESS_RULES, MONITORS, PARENT_ENTITIES, TECHNOLOGY_PARTNER, US_ENTITY,
    };
    let named = |org: &str| ACCESS_RULES.contains(&format!("Domicile::Organisation::\"{org}\""));
    assert!(named(US_ENTITY) && named(TECHNOLOGY_PARTNER));
    assert!(PARENT_ENTITIES
        .iter()
        .chain(MONITORS.iter())
        .all(|o| named(o)));
}
