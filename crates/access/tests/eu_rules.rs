//! The EU split's access rules, decided by Cedar: a table of principal × action × resource ×
//! purpose × approval, each case with the exact rules that decided it, and a property: nobody
//! located outside Europe, and no entity of the parent company, reads EU Protected data
//! directly, whatever roles, kind or approval they hold.

use domicile_access::{
    AccessAction, AccessRequest, AccessRules, ApprovalFacts, Principal, PrincipalKind, Resource,
};
use domicile_policy_eu_split::EuSplitPolicy;
use domicile_residency::{CountryCode, DataClass, JustificationCode, Purpose, Region};
use proptest::prelude::*;

mod common;
use common::principal;

fn records(class: DataClass, at: &str, collection: &str) -> Resource {
    Resource::Records {
        class,
        region: Region::parse(at).unwrap(),
        subject_home: Some(Region::parse(at).unwrap()),
        collection: collection.into(),
    }
}

fn protected(at: &str) -> Resource {
    records(DataClass::Protected, at, "profile")
}

fn log(of: &str) -> Resource {
    Resource::AuditLog {
        region: Region::parse(of).unwrap(),
    }
}

fn store(of: &str) -> Resource {
    Resource::Store {
        region: Region::parse(of).unwrap(),
    }
}

fn why(code: JustificationCode) -> Purpose {
    Purpose::new(code).with_ticket("TCK-1")
}

fn approval(country: &str, secs: u64) -> Option<ApprovalFacts> {
    Some(ApprovalFacts {
        approver_org_country: CountryCode::parse(country).unwrap(),
        duration_secs: secs,
    })
}

fn person(id: &str, org: (&str, &str), located: &str, roles: &[&str]) -> Principal {
    principal(id)
        .org(org.0, org.1)
        .located_in(located)
        .roles(roles)
        .build()
}

fn service(id: &str, org: (&str, &str), roles: &[&str]) -> Principal {
    principal(id)
        .kind(PrincipalKind::Service)
        .org(org.0, org.1)
        .roles(roles)
        .build()
}

fn auditor(id: &str, org: (&str, &str)) -> Principal {
    principal(id)
        .kind(PrincipalKind::Auditor)
        .org(org.0, org.1)
        .roles(&["auditor", "engineer"])
        .build()
}

const IE: (&str, &str) = ("tiktok-ie", "IE");

struct Case {
    name: &'static str,
    who: Principal,
    action: AccessAction,
    what: Resource,
    purpose: Purpose,
    approval: Option<ApprovalFacts>,
    allowed: bool,
    rules: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    use AccessAction::*;
    use JustificationCode::*;
    let anna = || person("spiffe://d/eu/tiktok-ie/anna", IE, "IE", &["engineer"]);
    let gateway = || service("spiffe://d/eu/tiktok-ie/gateway", IE, &["security-gateway"]);
    let case = |name, who, action, what, purpose, approval, allowed, rules| Case {
        name,
        who,
        action,
        what,
        purpose,
        approval,
        allowed,
        rules,
    };
    vec![
        case(
            "an EU-entity engineer in Ireland reads EU data for support",
            anna(),
            Read,
            protected("eu"),
            why(UserRequestedSupport),
            None,
            true,
            &["eu-split/access/eu-staff-read-eu-data"],
        ),
        case(
            "… in the United Kingdom",
            person("spiffe://d/eu/tiktok-ie/sam", IE, "GB", &["engineer"]),
            Read,
            protected("eu"),
            why(TrustAndSafety),
            None,
            true,
            &["eu-split/access/eu-staff-read-eu-data"],
        ),
        case(
            "… without a ticket",
            anna(),
            Read,
            protected("eu"),
            Purpose::new(UserRequestedSupport).with_ticket("x"),
            None,
            false,
            &["eu-split/access/deny-by-default"],
        ),
        case(
            "… travelling in China",
            person("spiffe://d/eu/tiktok-ie/anna", IE, "CN", &["engineer"]),
            Read,
            protected("eu"),
            why(UserRequestedSupport),
            None,
            false,
            &["eu-split/access/remote-staff-only-through-security-gateway"],
        ),
        case(
            "… in the US, even with an EU approval",
            person("spiffe://d/eu/tiktok-ie/anna", IE, "US", &["engineer"]),
            Read,
            protected("eu"),
            why(LegalRequest),
            approval("IE", 3600),
            false,
            &["eu-split/access/remote-staff-only-through-security-gateway"],
        ),
        case(
            "a legal request without an approval",
            anna(),
            Read,
            protected("eu"),
            why(LegalRequest),
            None,
            false,
            &["eu-split/access/deny-by-default"],
        ),
        case(
            "a legal request with an EU approval",
            anna(),
            Read,
            protected("eu"),
            why(LegalRequest),
            approval("IE", 3600),
            true,
            &["eu-split/access/eu-staff-read-eu-data-with-approval"],
        ),
        case(
            "… approved by a US organisation",
            anna(),
            Read,
            protected("eu"),
            why(LegalRequest),
            approval("US", 3600),
            false,
            &["eu-split/access/deny-by-default"],
        ),
        case(
            "… for longer than eight hours",
            anna(),
            Read,
            protected("eu"),
            why(LegalRequest),
            approval("IE", 28_801),
            false,
            &["eu-split/access/deny-by-default"],
        ),
        case(
            "the parent's engineer in China",
            person(
                "spiffe://d/row/bytedance-cn/wu",
                ("bytedance-cn", "CN"),
                "CN",
                &["engineer"],
            ),
            Read,
            protected("eu"),
            why(UserRequestedSupport),
            None,
            false,
            &[
                "eu-split/access/parent-never-reads-eu-plaintext",
                "eu-split/access/remote-staff-only-through-security-gateway",
            ],
        ),
        case(
            "the parent's entity in Ireland",
            person(
                "spiffe://d/eu/bytedance-ltd/liam",
                ("bytedance-ltd", "IE"),
                "IE",
                &["engineer"],
            ),
            Read,
            protected("eu"),
            why(UserRequestedSupport),
            None,
            false,
            &["eu-split/access/parent-never-reads-eu-plaintext"],
        ),
        case(
            "the parent's service with an app role in eu",
            service(
                "spiffe://d/eu/bytedance-sg/feed",
                ("bytedance-sg", "SG"),
                &["app-service"],
            ),
            Read,
            protected("eu"),
            why(UserRequestedSupport),
            None,
            false,
            &["eu-split/access/parent-never-reads-eu-plaintext"],
        ),
        case(
            "the security gateway with an EU approval",
            gateway(),
            Read,
            protected("eu"),
            why(ProductionIncident),
            approval("IE", 28_800),
            true,
            &["eu-split/access/security-gateway-serves-remote-staff-with-approval"],
        ),
        case(
            "… without one",
            gateway(),
            Read,
            protected("eu"),
            why(ProductionIncident),
            None,
            false,
            &["eu-split/access/deny-by-default"],
        ),
        case(
            "… writing",
            gateway(),
            Write,
            protected("eu"),
            why(UserRequestedSupport),
            approval("IE", 3600),
            false,
            &["eu-split/access/deny-by-default"],
        ),
        case(
            "… of another organisation",
            service(
                "spiffe://d/eu/bytedance-sg/gateway",
                ("bytedance-sg", "SG"),
                &["security-gateway"],
            ),
            Read,
            records(DataClass::Public, "eu", "videos"),
            why(ProductionIncident),
            approval("IE", 3600),
            false,
            &["eu-split/access/deny-by-default"],
        ),
        case(
            "the EU app service",
            service("spiffe://d/eu/tiktok-ie/profile", IE, &["app-service"]),
            Write,
            protected("eu"),
            why(UserRequestedSupport),
            None,
            true,
            &["eu-split/access/app-service-keeps-own-region"],
        ),
        case(
            "USDS's app service in eu",
            service(
                "spiffe://d/eu/usds/profile",
                ("usds", "US"),
                &["app-service"],
            ),
            Read,
            protected("eu"),
            why(UserRequestedSupport),
            None,
            false,
            &["eu-split/access/deny-by-default"],
        ),
        case(
            "a person holding the app role",
            person("spiffe://d/eu/tiktok-ie/eve", IE, "IE", &["app-service"]),
            Read,
            protected("eu"),
            why(UserRequestedSupport),
            None,
            false,
            &["eu-split/access/deny-by-default"],
        ),
        case(
            "row's app service reading eu",
            service("spiffe://d/row/tiktok-ie/profile", IE, &["app-service"]),
            Read,
            protected("eu"),
            why(UserRequestedSupport),
            None,
            false,
            &["eu-split/access/deny-by-default"],
        ),
        case(
            "the EU training service scans EU behaviour",
            service("spiffe://d/eu/tiktok-ie/trainer", IE, &["training-service"]),
            Scan,
            records(DataClass::Protected, "eu", "behaviour"),
            why(RecommendationTraining),
            None,
            true,
            &["eu-split/access/training-scans-own-region-behaviour"],
        ),
        case(
            "row's training service scans EU behaviour",
            service(
                "spiffe://d/row/tiktok-ie/trainer",
                IE,
                &["training-service"],
            ),
            Scan,
            records(DataClass::Protected, "eu", "behaviour"),
            why(RecommendationTraining),
            None,
            false,
            &["eu-split/access/deny-by-default"],
        ),
        case(
            "the eu migration service moves eu data",
            service(
                "spiffe://d/eu/domicile/migration",
                ("domicile", "IE"),
                &["migration-service"],
            ),
            Read,
            protected("eu"),
            Purpose::new(Migration),
            None,
            true,
            &["eu-split/access/migration-service-moves-data"],
        ),
        case(
            "an EU approver in France",
            person("spiffe://d/eu/tiktok-ie/marie", IE, "FR", &["approver"]),
            Approve,
            protected("eu"),
            why(LegalRequest),
            approval("IE", 3600),
            true,
            &["eu-split/access/eu-approver-approves-eu-access"],
        ),
        case(
            "an EU approver in the US",
            person("spiffe://d/eu/tiktok-ie/marie", IE, "US", &["approver"]),
            Approve,
            protected("eu"),
            why(LegalRequest),
            approval("IE", 3600),
            false,
            &["eu-split/access/remote-staff-only-through-security-gateway"],
        ),
        case(
            "an EU approver for key material",
            person("spiffe://d/eu/tiktok-ie/marie", IE, "FR", &["approver"]),
            Approve,
            records(DataClass::KeyMaterial, "eu", "keys"),
            why(LegalRequest),
            approval("IE", 3600),
            false,
            &["eu-split/access/deny-by-default"],
        ),
        case(
            "the EU security monitor reads the eu log",
            auditor("spiffe://d/eu/eu-monitor/nora", ("eu-monitor", "GB")),
            ReadLog,
            log("eu"),
            why(Audit),
            None,
            true,
            &["eu-split/access/auditor-reads-log"],
        ),
        case(
            "… without a ticket",
            auditor("spiffe://d/eu/eu-monitor/nora", ("eu-monitor", "GB")),
            ReadLog,
            log("eu"),
            Purpose::new(Audit),
            None,
            false,
            &["eu-split/access/deny-by-default"],
        ),
        case(
            "… reads an EU record",
            auditor("spiffe://d/eu/eu-monitor/nora", ("eu-monitor", "GB")),
            Read,
            protected("eu"),
            why(Audit),
            None,
            false,
            &["eu-split/access/auditor-reads-nothing-else"],
        ),
        case(
            "the US audit firm reads the eu log",
            auditor("spiffe://d/us/audit-firm/al", ("audit-firm", "US")),
            ReadLog,
            log("eu"),
            why(Audit),
            None,
            false,
            &["eu-split/access/deny-by-default"],
        ),
        case(
            "the US audit firm reads the us log",
            auditor("spiffe://d/us/audit-firm/al", ("audit-firm", "US")),
            ReadLog,
            log("us"),
            why(Audit),
            None,
            true,
            &["eu-split/access/auditor-reads-log"],
        ),
        case(
            "EU-entity security reads the eu log",
            person("spiffe://d/eu/tiktok-ie/sec", IE, "IE", &["security"]),
            ReadLog,
            log("eu"),
            why(Audit),
            None,
            true,
            &["eu-split/access/security-reads-own-region-log"],
        ),
        case(
            "EU-entity security checks the eu store",
            person("spiffe://d/eu/tiktok-ie/sec", IE, "IE", &["security"]),
            CheckStore,
            store("eu"),
            why(Audit),
            None,
            true,
            &["eu-split/access/security-checks-own-region-store"],
        ),
        case(
            "… without a ticket",
            person("spiffe://d/eu/tiktok-ie/sec", IE, "IE", &["security"]),
            CheckStore,
            store("eu"),
            Purpose::new(Audit),
            None,
            false,
            &["eu-split/access/deny-by-default"],
        ),
        case(
            "… the us store",
            person("spiffe://d/eu/tiktok-ie/sec", IE, "IE", &["security"]),
            CheckStore,
            store("us"),
            why(Audit),
            None,
            false,
            &["eu-split/access/deny-by-default"],
        ),
        case(
            "the partner's monitoring staff check the us store",
            person(
                "spiffe://d/us/techpartner/tess",
                ("techpartner", "US"),
                "US",
                &["security"],
            ),
            CheckStore,
            store("us"),
            why(Audit),
            None,
            true,
            &["eu-split/access/security-checks-own-region-store"],
        ),
        case(
            "the EU security monitor checks the eu store",
            auditor("spiffe://d/eu/eu-monitor/nora", ("eu-monitor", "GB")),
            CheckStore,
            store("eu"),
            why(Audit),
            None,
            false,
            &["eu-split/access/auditor-reads-nothing-else"],
        ),
        case(
            "EU-entity security reads the us log",
            person("spiffe://d/eu/tiktok-ie/sec", IE, "IE", &["security"]),
            ReadLog,
            log("us"),
            why(Audit),
            None,
            false,
            &["eu-split/access/deny-by-default"],
        ),
        case(
            "a USDS engineer reads US data",
            person(
                "spiffe://d/us/usds/alice",
                ("usds", "US"),
                "US",
                &["engineer"],
            ),
            Read,
            protected("us"),
            why(UserRequestedSupport),
            None,
            true,
            &["eu-split/access/us-staff-read-us-data"],
        ),
        case(
            "a USDS engineer reads EU data",
            person(
                "spiffe://d/us/usds/alice",
                ("usds", "US"),
                "US",
                &["engineer"],
            ),
            Read,
            protected("eu"),
            why(UserRequestedSupport),
            None,
            false,
            &["eu-split/access/remote-staff-only-through-security-gateway"],
        ),
        case(
            "the technology partner reads US data",
            person(
                "spiffe://d/us/techpartner/op",
                ("techpartner", "US"),
                "US",
                &["engineer"],
            ),
            Read,
            protected("us"),
            why(UserRequestedSupport),
            None,
            false,
            &["eu-split/access/parent-and-partner-never-read-us-plaintext"],
        ),
        case(
            "a row engineer reads row data",
            person(
                "spiffe://d/row/bytedance-sg/lim",
                ("bytedance-sg", "SG"),
                "SG",
                &["engineer"],
            ),
            Read,
            protected("row"),
            why(UserRequestedSupport),
            None,
            true,
            &["eu-split/access/staff-read-row-data"],
        ),
    ]
}

#[test]
fn every_case_is_decided_by_the_rules_it_names() {
    let policy = EuSplitPolicy::new();
    let rules = AccessRules::new(&policy).unwrap().with_shape_checks(true);
    let mut failures = Vec::new();
    for c in cases() {
        let d = rules
            .decide(&AccessRequest {
                principal: &c.who,
                action: c.action,
                resource: c.what.clone(),
                purpose: &c.purpose,
                approval: c.approval,
            })
            .unwrap();
        assert!(d.errors.is_empty(), "{}: {:?}", c.name, d.errors);
        let got: Vec<String> = d.rules.iter().map(|r| r.to_string()).collect();
        if d.allowed != c.allowed || got != c.rules {
            failures.push(format!(
                "{}: allowed {} by {got:?}, expected {} by {:?}",
                c.name, d.allowed, c.allowed, c.rules
            ));
        }
        // Every rule a decision names is in the policy's rule table.
        for r in &d.rules {
            assert!(
                domicile_residency::ResidencyPolicy::rule(&policy, r).is_some(),
                "{r}"
            );
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn country() -> impl Strategy<Value = CountryCode> {
    proptest::sample::select(CountryCode::all().collect::<Vec<_>>())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Nobody located outside Europe, and no entity of the parent company, reads, scans or
    /// exports EU Protected data directly: whatever organisation, roles, kind of person or
    /// approval they claim, only the security gateway (a service) reaches it from outside.
    #[test]
    fn outside_europe_or_the_parent_never_reads_eu_protected_directly(
        located in country(),
        org in proptest::sample::select(vec!["tiktok-ie", "usds", "techpartner", "bytedance-cn", "bytedance-ltd", "bytedance-us", "eu-monitor"]),
        org_country in country(),
        region in proptest::sample::select(vec!["eu", "us", "row"]),
        roles in proptest::sample::subsequence(vec!["engineer", "approver", "app-service", "training-service", "migration-service", "security", "auditor", "security-gateway"], 0..=8),
        action in proptest::sample::select(vec![AccessAction::Read, AccessAction::Scan, AccessAction::Export]),
        code in proptest::sample::select(JustificationCode::ALL.to_vec()),
        approved in any::<bool>(),
    ) {
        let parent = org.starts_with("bytedance");
        let in_europe = EuSplitPolicy::is_eu_country(located);
        prop_assume!(parent || !in_europe);
        let rules = AccessRules::new(&EuSplitPolicy::new()).unwrap();
        let who = principal(&format!("spiffe://d/{region}/{org}/p"))
            .org(org, org_country.as_str())
            .located_in(located.as_str())
            .roles(&roles)
            .build();
        let d = rules
            .decide(&AccessRequest {
                principal: &who,
                action,
                resource: protected("eu"),
                purpose: &why(code),
                approval: if approved { approval("IE", 3600) } else { None },
            })
            .unwrap();
        prop_assert!(!d.allowed, "{} located in {located} was allowed by {:?}", who.id, d.rules);
    }
}
