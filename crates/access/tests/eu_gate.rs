//! The Gate of `eu` under the EU split, on a real sealed store and audit log: European staff in
//! Europe read; the same staff travelling, the parent's engineers and callers of other regions
//! are refused with the rules that refuse them; remote work goes through the security gateway on
//! an EU approval, and the log records the obligation that approval met.

use std::sync::Arc;

use domicile_access::{
    ApprovalBook, ApprovalScope, ApproverKey, Gate, GateError, ManualClock, PrincipalKind,
    RecordRef,
};
use domicile_audit::{AuditKey, AuditLog, Entry, KeyKind, LogConfig, SigningKey};
use domicile_policy_eu_split::{eu_approval_obligation, EuSplitPolicy};
use domicile_residency::{DataClass, JustificationCode, Purpose, Region, Subject, SubjectId};
use domicile_store::{Collection, FileCustodian, RecordKey, SealedStore};

mod common;
use common::principal;

fn eu_gate(dir: &std::path::Path) -> (Gate, std::path::PathBuf) {
    let eu = Region::parse("eu").unwrap();
    let custodian = Arc::new(FileCustodian::open(dir.join("keys")).unwrap());
    let store = SealedStore::open(
        dir.join("data"),
        eu.clone(),
        Arc::new(EuSplitPolicy::new()),
        custodian,
    )
    .unwrap();
    let log_dir = dir.join("data/eu/audit");
    let key = SigningKey::generate("audit.domicile.example/eu", KeyKind::Ed25519).unwrap();
    let log = AuditLog::open(&log_dir, LogConfig::new(key)).unwrap();
    let gate = Gate::new(
        Arc::new(store),
        Arc::new(log),
        AuditKey::generate().unwrap(),
        ApprovalBook::in_memory(),
        Arc::new(ManualClock::at_unix_secs(1_790_000_000)),
    )
    .unwrap();
    (gate, log_dir)
}

fn last_entry(log_dir: &std::path::Path) -> Entry {
    let mut out = Vec::new();
    domicile_audit::for_each_entry(log_dir, &mut |_, _| {}, |_, bytes, _| {
        out.push(Entry::from_canonical(bytes)?);
        Ok(())
    })
    .unwrap();
    out.pop().unwrap()
}

fn refused_by(err: GateError) -> Vec<String> {
    match err {
        GateError::Denied { rules, .. } => rules.iter().map(|r| r.to_string()).collect(),
        other => panic!("expected a denial, got {other}"),
    }
}

#[test]
fn eu_data_is_read_in_europe_or_through_the_gateway_on_an_eu_approval() {
    let dir = tempfile::tempdir().unwrap();
    let (gate, log_dir) = eu_gate(dir.path());
    let ie = ("tiktok-ie", "IE");
    let app = principal("spiffe://domicile.example/eu/tiktok-ie/profile-service")
        .kind(PrincipalKind::Service)
        .org(ie.0, ie.1)
        .roles(&["app-service"])
        .enrol(&gate);
    let support = Purpose::new(JustificationCode::UserRequestedSupport).with_ticket("SUP-31");
    gate.register_subject(
        &app,
        &support,
        &Subject::parse("lena", Some("DE"), None).unwrap(),
    )
    .unwrap();
    let profile = RecordRef {
        subject: SubjectId::parse("lena").unwrap(),
        class: DataClass::Protected,
        collection: Collection::parse("profile").unwrap(),
        key: RecordKey::parse("lena").unwrap(),
    };
    gate.write(&app, &support, &profile, b"{\"name\":\"Lena\"}", None)
        .unwrap();

    // An EU-entity engineer in Ireland reads it.
    let anna = principal("spiffe://domicile.example/eu/tiktok-ie/anna")
        .org(ie.0, ie.1)
        .roles(&["engineer"])
        .enrol(&gate);
    assert_eq!(
        gate.read(&anna, &support, &profile, None).unwrap().value,
        b"{\"name\":\"Lena\"}"
    );
    let entry = last_entry(&log_dir);
    assert_eq!(
        entry.decision.rules.last().unwrap().as_str(),
        "eu-split/access/eu-staff-read-eu-data"
    );

    // The same engineer's travel identity, located in China: refused by the forbid.
    let travelling = principal("spiffe://domicile.example/eu/tiktok-ie/anna-travel")
        .org(ie.0, ie.1)
        .located_in("CN")
        .roles(&["engineer"])
        .enrol(&gate);
    assert_eq!(
        refused_by(
            gate.read(&travelling, &support, &profile, None)
                .unwrap_err()
        ),
        ["eu-split/access/remote-staff-only-through-security-gateway"]
    );
    // The parent's engineer, of row: the forbid, and the transfer to row the read would be.
    let wu = principal("spiffe://domicile.example/row/bytedance-cn/wu")
        .org("bytedance-cn", "CN")
        .roles(&["engineer"])
        .enrol(&gate);
    let rules = refused_by(gate.read(&wu, &support, &profile, None).unwrap_err());
    assert!(
        rules.contains(&"eu-split/access/parent-never-reads-eu-plaintext".to_owned())
            && rules
                .contains(&"eu-split/protected-moves-only-toward-home-for-migration".to_owned()),
        "{rules:?}"
    );
    // A claimed attribute the directory does not give: refused before any rule is asked.
    let mut liar = anna.clone();
    liar.location_country = "IE".parse().unwrap();
    liar.organisation.name = "usds".into();
    assert_eq!(
        refused_by(gate.read(&liar, &support, &profile, None).unwrap_err()),
        ["gate/unverified-principal"]
    );

    // Remote work: the gateway, on an EU approver's approval naming lena, for this ticket.
    let gateway = principal("spiffe://domicile.example/eu/tiktok-ie/gateway")
        .kind(PrincipalKind::Service)
        .org(ie.0, ie.1)
        .roles(&["security-gateway"])
        .enrol(&gate);
    let incident = Purpose::new(JustificationCode::ProductionIncident).with_ticket("INC-204");
    assert_eq!(
        refused_by(gate.read(&gateway, &incident, &profile, None).unwrap_err()),
        ["eu-split/access/deny-by-default"]
    );
    let scope = ApprovalScope {
        class: DataClass::Protected,
        region: Region::parse("eu").unwrap(),
        subjects: Some([SubjectId::parse("lena").unwrap()].into()),
        purpose: incident.clone(),
    };
    let request = gate.request_approval(&gateway, scope, 3_600, 600).unwrap();
    let marie = principal("spiffe://domicile.example/eu/tiktok-ie/marie")
        .org(ie.0, ie.1)
        .located_in("FR")
        .roles(&["approver"])
        .enrol(&gate);
    let key = ApproverKey::generate().unwrap();
    gate.register_approver(marie.id.clone(), key.public_key_base64());
    gate.approve(&marie, &key, &request.id).unwrap();
    gate.read(&gateway, &incident, &profile, Some(&request.id))
        .unwrap();
    let entry = last_entry(&log_dir);
    assert!(entry.decision.rules.iter().any(
        |r| r.as_str() == "eu-split/access/security-gateway-serves-remote-staff-with-approval"
    ));
    assert_eq!(entry.decision.obligations, vec![eu_approval_obligation()]);
    assert_eq!(entry.approval.as_deref(), Some(request.id.as_str()));
}
