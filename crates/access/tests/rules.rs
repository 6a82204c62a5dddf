//! The access rules of both policies, decided by Cedar, on the scenarios of the split.

use domicile_access::{
    AccessAction, AccessRequest, AccessRules, ApprovalFacts, Principal, PrincipalKind, Resource,
};
use domicile_policy_global::GlobalPolicy;
use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{CountryCode, DataClass, JustificationCode, Purpose, Region};

mod common;
use common::principal;

fn region(r: &str) -> Region {
    Region::parse(r).unwrap()
}

fn protected(at: &str) -> Resource {
    Resource::Records {
        class: DataClass::Protected,
        region: region(at),
        subject_home: Some(region(at)),
        collection: "profile".into(),
    }
}

fn support() -> Purpose {
    Purpose::new(JustificationCode::UserRequestedSupport).with_ticket("SUP-1")
}

fn legal() -> Purpose {
    Purpose::new(JustificationCode::LegalRequest).with_ticket("LEG-1")
}

fn decide(
    rules: &AccessRules,
    who: &Principal,
    action: AccessAction,
    what: Resource,
    why: &Purpose,
    approval: Option<ApprovalFacts>,
) -> (bool, Vec<String>) {
    let d = rules
        .decide(&AccessRequest {
            principal: who,
            action,
            resource: what,
            purpose: why,
            approval,
        })
        .unwrap();
    assert!(d.errors.is_empty(), "{:?}", d.errors);
    (d.allowed, d.rules.iter().map(|r| r.to_string()).collect())
}

#[test]
fn us_engineer_reads_us_protected_data_with_a_ticket() {
    let rules = AccessRules::new(&UsSplitPolicy::new())
        .unwrap()
        .with_shape_checks(true);
    let alice = principal("spiffe://d/us/usds/alice")
        .org("usds", "US")
        .roles(&["engineer"])
        .build();
    let (ok, why) = decide(
        &rules,
        &alice,
        AccessAction::Read,
        protected("us"),
        &support(),
        None,
    );
    assert!(ok);
    assert_eq!(why, ["us-split/access/us-staff-read-us-data"]);
    // Without a ticket: nothing permits it.
    let bare = Purpose::new(JustificationCode::UserRequestedSupport);
    let (ok, why) = decide(
        &rules,
        &alice,
        AccessAction::Read,
        protected("us"),
        &bare,
        None,
    );
    assert!(!ok);
    assert_eq!(why, ["us-split/access/deny-by-default"]);
}

#[test]
fn usds_engineer_needs_a_us_approval_of_at_most_eight_hours_for_a_legal_request() {
    let rules = AccessRules::new(&UsSplitPolicy::new())
        .unwrap()
        .with_shape_checks(true);
    let bo = principal("spiffe://d/us/usds/bo")
        .org("usds", "US")
        .roles(&["engineer"])
        .build();
    let (ok, _) = decide(
        &rules,
        &bo,
        AccessAction::Read,
        protected("us"),
        &legal(),
        None,
    );
    assert!(!ok);
    let us_approval = ApprovalFacts {
        approver_org_country: CountryCode::parse("US").unwrap(),
        duration_secs: 3600,
    };
    let (ok, why) = decide(
        &rules,
        &bo,
        AccessAction::Read,
        protected("us"),
        &legal(),
        Some(us_approval),
    );
    assert!(ok);
    assert_eq!(
        why,
        ["us-split/access/usds-staff-read-us-data-with-approval"]
    );
    let sg_approval = ApprovalFacts {
        approver_org_country: CountryCode::parse("SG").unwrap(),
        ..us_approval
    };
    assert!(
        !decide(
            &rules,
            &bo,
            AccessAction::Read,
            protected("us"),
            &legal(),
            Some(sg_approval)
        )
        .0
    );
    let too_long = ApprovalFacts {
        duration_secs: 8 * 3600 + 1,
        ..us_approval
    };
    assert!(
        !decide(
            &rules,
            &bo,
            AccessAction::Read,
            protected("us"),
            &legal(),
            Some(too_long)
        )
        .0
    );
}

#[test]
fn only_us_approvers_approve_us_access() {
    let rules = AccessRules::new(&UsSplitPolicy::new())
        .unwrap()
        .with_shape_checks(true);
    let carol = principal("spiffe://d/us/usds/carol")
        .org("usds", "US")
        .roles(&["approver"])
        .build();
    let dan = principal("spiffe://d/row/acme-sg/dan")
        .org("acme-sg", "SG")
        .roles(&["approver"])
        .build();
    let facts = Some(ApprovalFacts {
        approver_org_country: CountryCode::parse("US").unwrap(),
        duration_secs: 3600,
    });
    assert!(
        decide(
            &rules,
            &carol,
            AccessAction::Approve,
            protected("us"),
            &support(),
            facts
        )
        .0
    );
    assert!(
        !decide(
            &rules,
            &dan,
            AccessAction::Approve,
            protected("us"),
            &support(),
            facts
        )
        .0
    );
}

#[test]
fn auditors_read_the_log_and_nothing_else() {
    for rules in [
        AccessRules::new(&UsSplitPolicy::new())
            .unwrap()
            .with_shape_checks(true),
        AccessRules::new(&GlobalPolicy::new())
            .unwrap()
            .with_shape_checks(true),
    ] {
        // Even an auditor who also holds the engineer role reads no record.
        let eve = principal("spiffe://d/us/audit-firm/eve")
            .kind(PrincipalKind::Auditor)
            .org("audit-firm", "US")
            .roles(&["auditor", "engineer"])
            .build();
        let (ok, _) = decide(
            &rules,
            &eve,
            AccessAction::ReadLog,
            Resource::AuditLog {
                region: region("us"),
            },
            &Purpose::new(JustificationCode::Audit).with_ticket("AUD-1"),
            None,
        );
        assert!(ok);
        let (ok, why) = decide(
            &rules,
            &eve,
            AccessAction::Read,
            protected("us"),
            &support(),
            None,
        );
        assert!(!ok);
        assert!(
            why[0].ends_with("/access/auditor-reads-nothing-else"),
            "{why:?}"
        );
    }
}

#[test]
fn security_staff_check_their_own_region_s_store_and_no_one_else_does() {
    let audit = Purpose::new(JustificationCode::Audit).with_ticket("AUD-1");
    let store = |r: &str| Resource::Store { region: region(r) };
    let rules = AccessRules::new(&UsSplitPolicy::new())
        .unwrap()
        .with_shape_checks(true);
    let security = |id: &str, org: (&str, &str), roles: &[&str]| {
        principal(id)
            .org(org.0, org.1)
            .located_in("US")
            .roles(roles)
            .build()
    };
    let sam = security("spiffe://d/us/usds/sam", ("usds", "US"), &["security"]);
    let tess = security(
        "spiffe://d/us/techpartner/tess",
        ("techpartner", "US"),
        &["security"],
    );
    let check = |who: &Principal, at: &str, why: &Purpose| {
        decide(&rules, who, AccessAction::CheckStore, store(at), why, None)
    };
    for who in [&sam, &tess] {
        assert_eq!(
            check(who, "us", &audit),
            (
                true,
                vec!["us-split/access/security-checks-own-region-store".to_owned()]
            ),
            "{}",
            who.id
        );
        // Not without a ticket, not for another purpose, not another region's store.
        for (at, why) in [
            ("us", Purpose::new(JustificationCode::Audit)),
            ("us", support()),
            ("row", audit.clone()),
        ] {
            assert_eq!(
                check(who, at, &why),
                (false, vec!["us-split/access/deny-by-default".to_owned()]),
                "{} {at} {why:?}",
                who.id
            );
        }
    }
    // The parent company's security staff, an engineer, and an auditor who also holds the
    // security role check nothing.
    let parent = security(
        "spiffe://d/us/bytedance-ltd/pat",
        ("bytedance-ltd", "CN"),
        &["security"],
    );
    let alice = security("spiffe://d/us/usds/alice", ("usds", "US"), &["engineer"]);
    for who in [&parent, &alice] {
        assert_eq!(
            check(who, "us", &audit),
            (false, vec!["us-split/access/deny-by-default".to_owned()]),
            "{}",
            who.id
        );
    }
    let eve = principal("spiffe://d/us/audit-firm/eve")
        .kind(PrincipalKind::Auditor)
        .org("audit-firm", "US")
        .roles(&["auditor", "security"])
        .build();
    assert_eq!(
        check(&eve, "us", &audit),
        (
            false,
            vec!["us-split/access/auditor-reads-nothing-else".to_owned()]
        )
    );

    // In the global deployment, its security staff.
    let rules = AccessRules::new(&GlobalPolicy::new())
        .unwrap()
        .with_shape_checks(true);
    let gil = principal("spiffe://d/global/acme/gil")
        .org("acme", "SG")
        .roles(&["security"])
        .build();
    let check = |who: &Principal, why: &Purpose| {
        decide(
            &rules,
            who,
            AccessAction::CheckStore,
            store("global"),
            why,
            None,
        )
    };
    assert_eq!(
        check(&gil, &audit),
        (true, vec!["global/access/security-checks-store".to_owned()])
    );
    assert!(!check(&gil, &Purpose::new(JustificationCode::Audit)).0);
    let bo = principal("spiffe://d/global/acme/bo")
        .org("acme", "SG")
        .roles(&["engineer"])
        .build();
    assert!(!check(&bo, &audit).0);
}

#[test]
fn training_services_scan_only_their_own_region() {
    let rules = AccessRules::new(&UsSplitPolicy::new())
        .unwrap()
        .with_shape_checks(true);
    let trainer = principal("spiffe://d/us/usds/trainer")
        .kind(PrincipalKind::Service)
        .org("usds", "US")
        .roles(&["training-service"])
        .build();
    let training = Purpose::new(JustificationCode::RecommendationTraining);
    let behaviour = |at: &str| Resource::Records {
        class: DataClass::Protected,
        region: region(at),
        subject_home: None,
        collection: "behaviour".into(),
    };
    assert!(
        decide(
            &rules,
            &trainer,
            AccessAction::Scan,
            behaviour("us"),
            &training,
            None
        )
        .0
    );
    assert!(
        !decide(
            &rules,
            &trainer,
            AccessAction::Scan,
            behaviour("row"),
            &training,
            None
        )
        .0
    );
    assert!(
        !decide(
            &rules,
            &trainer,
            AccessAction::Scan,
            behaviour("us"),
            &support(),
            None
        )
        .0
    );
}

#[test]
fn the_global_policy_needs_no_approval() {
    let rules = AccessRules::new(&GlobalPolicy::new())
        .unwrap()
        .with_shape_checks(true);
    let bo = principal("spiffe://d/global/acme-sg/bo")
        .org("acme-sg", "SG")
        .roles(&["engineer"])
        .build();
    let (ok, why) = decide(
        &rules,
        &bo,
        AccessAction::Read,
        protected("global"),
        &support(),
        None,
    );
    assert!(ok);
    assert_eq!(why, ["global/access/engineer-reads-for-purpose"]);
}

mod cache {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn rules() -> &'static (AccessRules, AccessRules) {
        static RULES: OnceLock<(AccessRules, AccessRules)> = OnceLock::new();
        RULES.get_or_init(|| {
            let policy = UsSplitPolicy::new();
            (
                AccessRules::new(&policy).unwrap().with_cache_capacity(8),
                AccessRules::new(&policy)
                    .unwrap()
                    .with_cache_capacity(0)
                    .with_shape_checks(true),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// The decision cache never changes an answer: cached decisions (with a cache small
        /// enough to be emptied often) equal Cedar's, over generated requests.
        #[test]
        fn cached_answers_equal_cedar(
            org_us in any::<bool>(),
            roles in proptest::sample::subsequence(vec!["engineer", "approver", "auditor", "app-service", "training-service", "migration-service"], 0..3),
            action in proptest::sample::select(vec![AccessAction::Read, AccessAction::Write, AccessAction::Delete, AccessAction::Scan, AccessAction::Export, AccessAction::Approve]),
            class in proptest::sample::select(DataClass::ALL.to_vec()),
            at_us in any::<bool>(),
            collection in proptest::sample::select(vec!["profile", "behaviour", "messages"]),
            code in proptest::sample::select(JustificationCode::ALL.to_vec()),
            ticket in any::<bool>(),
            approval in proptest::option::of((any::<bool>(), 0u64..40_000)),
        ) {
            let (cached, cedar) = rules();
            let country = if org_us { "US" } else { "SG" };
            let who = principal(&format!("spiffe://d/{}/org/p", if at_us { "us" } else { "row" })).org("org", country).roles(&roles).build();
            let here = if at_us { "us" } else { "row" };
            let purpose = if ticket { Purpose::new(code).with_ticket("T-1") } else { Purpose::new(code) };
            let approval = approval.map(|(us, secs)| ApprovalFacts {
                approver_org_country: CountryCode::parse(if us { "US" } else { "SG" }).unwrap(),
                duration_secs: secs,
            });
            let request = AccessRequest {
                principal: &who,
                action,
                resource: Resource::Records { class, region: region(here), subject_home: Some(region(here)), collection: collection.into() },
                purpose: &purpose,
                approval,
            };
            let truth = cedar.evaluate(&request).unwrap();
            prop_assert!(truth.errors.is_empty(), "{:?}", truth.errors);
            prop_assert_eq!(&cached.decide(&request).unwrap(), &truth);
            prop_assert_eq!(&cached.decide(&request).unwrap(), &truth);
        }
    }
}
