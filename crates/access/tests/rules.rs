//! The access rules of both policies, decided by Cedar, on the scenarios of the split.

use domicile_access::{
    AccessRequest, AccessRules, Action, ApprovalFacts, Principal, PrincipalKind, Resource,
};
use domicile_policy_global::GlobalPolicy;
use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{CountryCode, DataClass, JustificationCode, Purpose, Region};

fn region(r: &str) -> Region {
    Region::parse(r).unwrap()
}

fn person(id: &str, org: (&str, &str), roles: &[&str]) -> Principal {
    Principal::parse(id, PrincipalKind::Person, org, org.1, org.1, roles).unwrap()
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

fn decide(
    rules: &AccessRules,
    who: &Principal,
    action: Action,
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
    let rules = AccessRules::new(&UsSplitPolicy::new()).unwrap();
    let alice = person("spiffe://d/us/usds/alice", ("usds", "US"), &["engineer"]);
    let (ok, why) = decide(
        &rules,
        &alice,
        Action::Read,
        protected("us"),
        &support(),
        None,
    );
    assert!(ok);
    assert_eq!(why, ["us-split/access/us-staff-read-us-data"]);
    // Without a ticket: nothing permits it.
    let bare = Purpose::new(JustificationCode::UserRequestedSupport);
    let (ok, why) = decide(&rules, &alice, Action::Read, protected("us"), &bare, None);
    assert!(!ok);
    assert_eq!(why, ["us-split/access/deny-by-default"]);
}

#[test]
fn foreign_engineer_needs_a_us_approval_of_at_most_eight_hours() {
    let rules = AccessRules::new(&UsSplitPolicy::new()).unwrap();
    let bo = person(
        "spiffe://d/row/acme-sg/bo",
        ("acme-sg", "SG"),
        &["engineer"],
    );
    let (ok, _) = decide(&rules, &bo, Action::Read, protected("us"), &support(), None);
    assert!(!ok);
    let us_approval = ApprovalFacts {
        approver_org_country: CountryCode::parse("US").unwrap(),
        duration_secs: 3600,
    };
    let (ok, why) = decide(
        &rules,
        &bo,
        Action::Read,
        protected("us"),
        &support(),
        Some(us_approval),
    );
    assert!(ok);
    assert_eq!(why, ["us-split/access/approved-foreign-staff-read-us-data"]);
    let sg_approval = ApprovalFacts {
        approver_org_country: CountryCode::parse("SG").unwrap(),
        ..us_approval
    };
    assert!(
        !decide(
            &rules,
            &bo,
            Action::Read,
            protected("us"),
            &support(),
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
            Action::Read,
            protected("us"),
            &support(),
            Some(too_long)
        )
        .0
    );
}

#[test]
fn only_us_approvers_approve_us_access() {
    let rules = AccessRules::new(&UsSplitPolicy::new()).unwrap();
    let carol = person("spiffe://d/us/usds/carol", ("usds", "US"), &["approver"]);
    let dan = person(
        "spiffe://d/row/acme-sg/dan",
        ("acme-sg", "SG"),
        &["approver"],
    );
    let facts = Some(ApprovalFacts {
        approver_org_country: CountryCode::parse("US").unwrap(),
        duration_secs: 3600,
    });
    assert!(
        decide(
            &rules,
            &carol,
            Action::Approve,
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
            Action::Approve,
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
        AccessRules::new(&UsSplitPolicy::new()).unwrap(),
        AccessRules::new(&GlobalPolicy::new()).unwrap(),
    ] {
        // Even an auditor who also holds the engineer role reads no record.
        let eve = Principal::parse(
            "spiffe://d/us/audit-firm/eve",
            PrincipalKind::Auditor,
            ("audit-firm", "US"),
            "US",
            "US",
            &["auditor", "engineer"],
        )
        .unwrap();
        let (ok, _) = decide(
            &rules,
            &eve,
            Action::ReadLog,
            Resource::AuditLog {
                region: region("us"),
            },
            &Purpose::new(JustificationCode::Audit),
            None,
        );
        assert!(ok);
        let (ok, why) = decide(
            &rules,
            &eve,
            Action::Read,
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
fn training_services_scan_only_their_own_region() {
    let rules = AccessRules::new(&UsSplitPolicy::new()).unwrap();
    let trainer = Principal::parse(
        "spiffe://d/us/usds/trainer",
        PrincipalKind::Service,
        ("usds", "US"),
        "US",
        "US",
        &["training-service"],
    )
    .unwrap();
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
            Action::Scan,
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
            Action::Scan,
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
            Action::Scan,
            behaviour("us"),
            &support(),
            None
        )
        .0
    );
}

#[test]
fn the_global_policy_needs_no_approval() {
    let rules = AccessRules::new(&GlobalPolicy::new()).unwrap();
    let bo = person(
        "spiffe://d/global/acme-sg/bo",
        ("acme-sg", "SG"),
        &["engineer"],
    );
    let (ok, why) = decide(
        &rules,
        &bo,
        Action::Read,
        protected("global"),
        &support(),
        None,
    );
    assert!(ok);
    assert_eq!(why, ["global/access/engineer-reads-for-purpose"]);
}
