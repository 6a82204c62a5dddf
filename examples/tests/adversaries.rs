//! The review's attacks, table-driven: the walkthrough's scenarios played against a real
//! us-split deployment whose Gates hold the walkthroughs' principal directory. Every scenario
//! ends as the policy says it should, and every refusal names the rule that refused it, a rule
//! of the policy's table or one of the Gate's own.

use domicile_access::{PrincipalKind, RecordRef};
use domicile_residency::{DataClass, JustificationCode, Purpose, Region, Subject};
use domicile_split::Deployment;
use domicile_store::{Collection, RecordKey};

#[test]
fn every_adversarial_principal_is_refused_by_the_rule_that_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let deployment = Deployment::create(
        dir.path().join("data"),
        dir.path().join("keys"),
        domicile_examples::policies().resolve("us-split").unwrap(),
        domicile_examples::TRUST_DOMAIN,
    )
    .unwrap();
    deployment
        .set_directory(domicile_examples::directory())
        .unwrap();
    let us = deployment.region(&Region::parse("us").unwrap()).unwrap();
    let app = domicile_examples::service("us", ("usds", "US"), "profile-service", "app-service");
    assert_eq!(app.kind, PrincipalKind::Service);
    let why = Purpose::new(JustificationCode::UserRequestedSupport);
    us.gate
        .register_subject(
            &app,
            &why,
            &Subject::parse("ana", Some("US"), None).unwrap(),
        )
        .unwrap();
    let record = RecordRef {
        subject: "ana".parse().unwrap(),
        class: DataClass::Protected,
        collection: Collection::parse("profile").unwrap(),
        key: RecordKey::parse("ana").unwrap(),
    };
    us.gate.write(&app, &why, &record, b"{}", None).unwrap();

    let scenarios = domicile_examples::scenarios(&us.gate, &"ana".parse().unwrap()).unwrap();
    assert!(scenarios.len() >= 20);
    let policy = deployment.policy();
    let gate_rules = domicile_access::gate_rules();
    for s in &scenarios {
        assert_eq!(s.allowed, s.expected_allowed, "{}: {}", s.what, s.detail);
        if !s.allowed {
            let cited = s
                .detail
                .strip_prefix("denied by ")
                .and_then(|d| d.split(" (").next())
                .unwrap_or_else(|| panic!("{}: not a rule's refusal: {}", s.what, s.detail));
            for rule in cited.split(", ") {
                let id = domicile_residency::RuleId::parse(rule).unwrap();
                assert!(
                    policy.rule(&id).is_some() || gate_rules.iter().any(|r| r.id == id),
                    "{}: {rule} is in no rule table",
                    s.what
                );
            }
        }
    }
    // The cases of the review, by the rule that must refuse each.
    let refused_by = |what: &str, rule: &str| {
        let s = scenarios
            .iter()
            .find(|s| s.what.starts_with(what))
            .unwrap_or_else(|| panic!("no scenario {what:?}"));
        assert!(
            !s.allowed && s.detail.contains(rule),
            "{what}: {}",
            s.detail
        );
    };
    refused_by("row/bytedance-cn/wu claims", "gate/unverified-principal");
    refused_by(
        "USDS engineer located in China",
        "us-split/access/deny-by-default",
    );
    refused_by(
        "... with \"x\" as the ticket",
        "us-split/access/deny-by-default",
    );
    refused_by(
        "Engineer of the parent's US subsidiary",
        "parent-and-partner-never-read-us-plaintext",
    );
    refused_by(
        "The technology partner's operator",
        "parent-and-partner-never-read-us-plaintext",
    );
    refused_by(
        "A person holding the app-service role",
        "us-split/access/deny-by-default",
    );
    refused_by(
        "... asks for an approval covering every subject",
        "gate/approval-scope-is-specific",
    );
    refused_by("frank, under his approver id", "gate/self-approval");
    refused_by(
        "The requester revokes",
        "gate/revoke-by-approver-or-security",
    );
    refused_by(
        "An auditor of an organisation the policy does not name",
        "us-split/access/deny-by-default",
    );
    refused_by(
        "A migration-service of another organisation",
        "us-split/access/",
    );
}
