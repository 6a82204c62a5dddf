//! The Gate under the US-split policy (and, last, the global one): the scenarios of the split,
//! against a real sealed store on sled and a real audit log on disk.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use domicile_access::{
    ApprovalBook, ApprovalScope, ApproverKey, Gate, GateError, ManualClock, Principal,
    PrincipalKind, RecordRef, ScanRequest, SubjectRef,
};
use domicile_audit::{
    Action, AuditKey, AuditLog, Entry, KeyKind, LogConfig, SigningKey, VerifierKey,
};
use domicile_policy_global::GlobalPolicy;
use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{
    DataClass, JustificationCode, Purpose, Region, ResidencyPolicy, Subject, SubjectId,
};
use domicile_store::{Collection, FileCustodian, RecordKey, SealedStore};

mod common;
use common::principal;

struct Deployment {
    _dir: tempfile::TempDir,
    gate: Gate,
    clock: Arc<ManualClock>,
    log_dir: std::path::PathBuf,
    vkey: VerifierKey,
}

fn deployment(policy: Arc<dyn ResidencyPolicy>, region: &str, segment_bytes: u64) -> Deployment {
    let dir = tempfile::tempdir().unwrap();
    let region = Region::parse(region).unwrap();
    let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
    let store =
        SealedStore::open(dir.path().join("data"), region.clone(), policy, custodian).unwrap();
    let log_dir = dir.path().join("data").join(region.as_str()).join("audit");
    let key = SigningKey::generate(
        &format!("audit.domicile.example/{region}"),
        KeyKind::Ed25519,
    )
    .unwrap();
    let vkey = key.verifier();
    let mut config = LogConfig::new(key);
    config.segment_bytes = segment_bytes;
    let log = AuditLog::open(&log_dir, config).unwrap();
    let clock = Arc::new(ManualClock::at_unix_secs(1_790_000_000));
    let gate = Gate::new(
        Arc::new(store),
        Arc::new(log),
        AuditKey::generate().unwrap(),
        ApprovalBook::in_memory(),
        clock.clone(),
    )
    .unwrap();
    gate.enrol(app(region.as_str())).unwrap();
    Deployment {
        _dir: dir,
        gate,
        clock,
        log_dir,
        vkey,
    }
}

fn app(region: &str) -> Principal {
    principal(&format!(
        "spiffe://domicile.example/{region}/usds/profile-service"
    ))
    .kind(PrincipalKind::Service)
    .org("usds", "US")
    .roles(&["app-service"])
    .build()
}

fn legal() -> Purpose {
    Purpose::new(JustificationCode::LegalRequest).with_ticket("LEG-77")
}

fn support() -> Purpose {
    Purpose::new(JustificationCode::UserRequestedSupport).with_ticket("SUP-1234")
}

fn profile(subject: &str) -> RecordRef {
    RecordRef {
        subject: SubjectId::parse(subject).unwrap(),
        class: DataClass::Protected,
        collection: Collection::parse("profile").unwrap(),
        key: RecordKey::parse(subject).unwrap(),
    }
}

/// Registers a subject and writes their profile and some behaviour through the Gate.
fn seed(d: &Deployment, region: &str, subject: &str, country: &str) {
    let service = app(region);
    let why = Purpose::new(JustificationCode::UserRequestedSupport);
    d.gate
        .register_subject(
            &service,
            &why,
            &Subject::parse(subject, Some(country), None).unwrap(),
        )
        .unwrap();
    d.gate
        .write(
            &service,
            &why,
            &profile(subject),
            format!("{{\"name\":\"{subject}\"}}").as_bytes(),
            None,
        )
        .unwrap();
    let behaviour = RecordRef {
        subject: SubjectId::parse(subject).unwrap(),
        class: DataClass::Protected,
        collection: Collection::parse("behaviour").unwrap(),
        key: RecordKey::parse(&format!("{subject}-1")).unwrap(),
    };
    d.gate
        .write(
            &service,
            &why,
            &behaviour,
            b"{\"video\":\"v1\",\"watch_ms\":9000}",
            None,
        )
        .unwrap();
}

fn entries(d: &Deployment) -> Vec<Entry> {
    let mut out = Vec::new();
    domicile_audit::for_each_entry(&d.log_dir, &mut |_, _| {}, |_, bytes, _| {
        out.push(Entry::from_canonical(bytes)?);
        Ok(())
    })
    .unwrap();
    out
}

fn denied(err: GateError) -> (Vec<String>, u64) {
    match err {
        GateError::Denied { rules, seq, .. } => {
            (rules.iter().map(|r| r.to_string()).collect(), seq)
        }
        other => panic!("expected a denial, got {other}"),
    }
}

#[test]
fn us_engineer_reads_with_a_ticket_and_it_is_logged() {
    let d = deployment(Arc::new(UsSplitPolicy::new()), "us", 64 << 20);
    seed(&d, "us", "ana", "US");
    let alice = principal("spiffe://domicile.example/us/usds/alice")
        .org("usds", "US")
        .roles(&["engineer"])
        .enrol(&d.gate);
    let got = d
        .gate
        .read(&alice, &support(), &profile("ana"), None)
        .unwrap();
    assert_eq!(got.value, b"{\"name\":\"ana\"}");
    assert_eq!(
        got.subject,
        SubjectRef::Id(SubjectId::parse("ana").unwrap())
    );
    let last = entries(&d).pop().unwrap();
    assert_eq!(last.action, Action::Read);
    assert!(last.decision.allowed);
    let rules: Vec<String> = last.decision.rules.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        rules,
        [
            "us-split/protected-rests-in-home-region",
            "us-split/access/us-staff-read-us-data"
        ]
    );
    assert_eq!(last.purpose.ticket.as_deref(), Some("SUP-1234"));
    match last.outcome {
        domicile_audit::Outcome::Ok {
            result_digest: Some(digest),
        } => {
            assert_eq!(
                digest.0,
                domicile_store::RecordDigest::of(&got.value).0,
                "the entry holds the digest of what was returned"
            );
        }
        other => panic!("{other:?}"),
    }
    // Invariant 6: the log holds the subject's pseudonym, never the id.
    let json = serde_json::to_string(&entries(&d)).unwrap();
    assert!(
        !json.contains("\"ana\""),
        "a plaintext subject id in the log"
    );
}

#[test]
fn foreign_engineer_needs_a_us_approval_that_expires() {
    let d = deployment(Arc::new(UsSplitPolicy::new()), "us", 64 << 20);
    seed(&d, "us", "ana", "US");
    let bo = principal("spiffe://domicile.example/row/bytedance-sg/bo")
        .org("bytedance-sg", "SG")
        .roles(&["engineer"])
        .enrol(&d.gate);
    let (rules, seq) = denied(
        d.gate
            .read(&bo, &support(), &profile("ana"), None)
            .unwrap_err(),
    );
    assert_eq!(
        rules,
        [
            "us-split/access/parent-and-partner-never-read-us-plaintext",
            "us-split/protected-moves-only-toward-home-for-migration"
        ],
        "a denial cites only the rules that denied"
    );
    assert!(
        !entries(&d)[seq as usize].decision.allowed,
        "the denial is logged"
    );
    // For a legal request, even USDS staff need a USDS approver's approval.
    let bo = principal("spiffe://domicile.example/us/usds/frank")
        .org("usds", "US")
        .roles(&["engineer"])
        .enrol(&d.gate);
    let (rules, _) = denied(
        d.gate
            .read(&bo, &legal(), &profile("ana"), None)
            .unwrap_err(),
    );
    assert_eq!(rules, ["us-split/access/deny-by-default"]);

    let scope = ApprovalScope {
        class: DataClass::Protected,
        region: Region::parse("us").unwrap(),
        subjects: Some([SubjectId::parse("ana").unwrap()].into()),
        purpose: legal(),
    };
    // An approver of the parent company is refused.
    let request = d
        .gate
        .request_approval(&bo, scope.clone(), 3600, 86_400)
        .unwrap();
    let dan = principal("spiffe://domicile.example/row/bytedance-sg/dan")
        .org("bytedance-sg", "SG")
        .roles(&["approver"])
        .enrol(&d.gate);
    let dan_key = ApproverKey::generate().unwrap();
    d.gate
        .register_approver(dan.id.clone(), dan_key.public_key_base64());
    denied(d.gate.approve(&dan, &dan_key, &request.id).unwrap_err());
    assert!(d
        .gate
        .read(&bo, &legal(), &profile("ana"), Some(&request.id))
        .is_err());

    // A US-entity approver's grant works until it expires, and not one second after.
    let carol = principal("spiffe://domicile.example/us/usds/carol")
        .org("usds", "US")
        .roles(&["approver"])
        .enrol(&d.gate);
    let carol_key = ApproverKey::generate().unwrap();
    d.gate
        .register_approver(carol.id.clone(), carol_key.public_key_base64());
    let grant = d.gate.approve(&carol, &carol_key, &request.id).unwrap();
    assert_eq!(grant.expires_at, grant.granted_at + 3600);
    let got = d
        .gate
        .read(&bo, &legal(), &profile("ana"), Some(&request.id))
        .unwrap();
    assert_eq!(got.value, b"{\"name\":\"ana\"}");
    let last = entries(&d).pop().unwrap();
    assert_eq!(last.approval.as_deref(), Some(request.id.as_str()));
    assert!(last
        .decision
        .rules
        .iter()
        .any(|r| r.as_str() == "us-split/access/usds-staff-read-us-data-with-approval"));
    // The decision carries the obligation the approval met: a US approver, at most 8 hours.
    assert_eq!(
        last.decision.obligations,
        vec![domicile_policy_us_split::us_approval_obligation()]
    );
    // The approval is bound to the ticket it was given for: the same request under another
    // ticket is not covered.
    let unrelated = Purpose::new(JustificationCode::LegalRequest).with_ticket("LEG-78");
    let (rules, _) = denied(
        d.gate
            .read(&bo, &unrelated, &profile("ana"), Some(&request.id))
            .unwrap_err(),
    );
    assert_eq!(rules, ["us-split/access/deny-by-default"]);

    d.clock.advance(Duration::from_secs(3599));
    assert!(
        d.gate
            .read(&bo, &legal(), &profile("ana"), Some(&request.id))
            .is_ok(),
        "valid in its last second"
    );
    d.clock.advance(Duration::from_secs(1));
    let err = d
        .gate
        .read(&bo, &legal(), &profile("ana"), Some(&request.id))
        .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    // Auditor-facing times are RFC 3339 UTC, not raw Unix seconds.
    let text = err.to_string();
    let at = text.split("expired at ").nth(1).unwrap_or_default();
    assert!(
        at.len() > 20 && at.as_bytes()[4] == b'-' && at[..24].ends_with('Z'),
        "{err}"
    );

    // The approval covers only its scope: another subject is refused.
    seed(&d, "us", "ben", "US");
    let request = d.gate.request_approval(&bo, scope, 600, 86_400).unwrap();
    d.gate.approve(&carol, &carol_key, &request.id).unwrap();
    assert!(d
        .gate
        .read(&bo, &legal(), &profile("ben"), Some(&request.id))
        .is_err());
    // Revoked approvals stop working at once.
    assert!(d
        .gate
        .read(&bo, &legal(), &profile("ana"), Some(&request.id))
        .is_ok());
    d.gate.revoke_approval(&carol, &request.id).unwrap();
    assert!(d
        .gate
        .read(&bo, &legal(), &profile("ana"), Some(&request.id))
        .is_err());
    // Every step of every approval is in the log.
    let steps: Vec<Action> = entries(&d)
        .iter()
        .map(|e| e.action)
        .filter(|a| {
            matches!(
                a,
                Action::ApprovalRequest | Action::ApprovalGrant | Action::ApprovalRevoke
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            Action::ApprovalRequest,
            Action::ApprovalGrant,
            Action::ApprovalGrant,
            Action::ApprovalRequest,
            Action::ApprovalGrant,
            Action::ApprovalRevoke
        ]
    );
}

#[test]
fn a_request_nobody_answers_expires() {
    let d = deployment(Arc::new(UsSplitPolicy::new()), "us", 64 << 20);
    seed(&d, "us", "ana", "US");
    let bo = principal("spiffe://domicile.example/us/usds/bo")
        .org("usds", "US")
        .roles(&["engineer"])
        .enrol(&d.gate);
    let scope = ApprovalScope {
        class: DataClass::Protected,
        region: Region::parse("us").unwrap(),
        subjects: Some([SubjectId::parse("ana").unwrap()].into()),
        purpose: legal(),
    };
    let request = d.gate.request_approval(&bo, scope, 3600, 60).unwrap();
    d.clock.advance(Duration::from_secs(61));
    let carol = principal("spiffe://domicile.example/us/usds/carol")
        .org("usds", "US")
        .roles(&["approver"])
        .enrol(&d.gate);
    let key = ApproverKey::generate().unwrap();
    d.gate
        .register_approver(carol.id.clone(), key.public_key_base64());
    let err = d.gate.approve(&carol, &key, &request.id).unwrap_err();
    assert!(
        err.to_string().contains("expired before anyone answered"),
        "{err}"
    );
}

#[test]
fn a_grant_signed_by_an_unregistered_key_is_rejected() {
    let d = deployment(Arc::new(UsSplitPolicy::new()), "us", 64 << 20);
    seed(&d, "us", "ana", "US");
    let bo = principal("spiffe://domicile.example/us/usds/bo")
        .org("usds", "US")
        .roles(&["engineer"])
        .enrol(&d.gate);
    let scope = ApprovalScope {
        class: DataClass::Protected,
        region: Region::parse("us").unwrap(),
        subjects: Some([SubjectId::parse("ana").unwrap()].into()),
        purpose: legal(),
    };
    let request = d.gate.request_approval(&bo, scope, 3600, 60).unwrap();
    let carol = principal("spiffe://domicile.example/us/usds/carol")
        .org("usds", "US")
        .roles(&["approver"])
        .enrol(&d.gate);
    let registered = ApproverKey::generate().unwrap();
    d.gate
        .register_approver(carol.id.clone(), registered.public_key_base64());
    d.gate
        .approve(&carol, &ApproverKey::generate().unwrap(), &request.id)
        .unwrap();
    let err = d
        .gate
        .read(&bo, &legal(), &profile("ana"), Some(&request.id))
        .unwrap_err();
    assert!(err.to_string().contains("not registered"), "{err}");
}

#[test]
fn auditors_read_the_log_and_no_record() {
    let d = deployment(Arc::new(UsSplitPolicy::new()), "us", 64 << 20);
    seed(&d, "us", "ana", "US");
    let eve = principal("spiffe://domicile.example/us/audit-firm/eve")
        .kind(PrincipalKind::Auditor)
        .org("audit-firm", "US")
        .roles(&["auditor"])
        .enrol(&d.gate);
    let audit = Purpose::new(JustificationCode::Audit).with_ticket("AUD-7");
    assert_eq!(d.gate.open_log(&eve, &audit).unwrap(), d.log_dir);
    let (rules, _) = denied(
        d.gate
            .read(&eve, &audit, &profile("ana"), None)
            .unwrap_err(),
    );
    assert!(
        rules.contains(&"us-split/access/auditor-reads-nothing-else".to_owned()),
        "{rules:?}"
    );
    let request = ScanRequest {
        class: DataClass::Protected,
        collection: Collection::parse("behaviour").unwrap(),
        destination: None,
    };
    denied(d.gate.scan(&eve, &audit, &request).unwrap_err());
}

#[test]
fn the_us_training_service_receives_only_us_subjects() {
    let policy: Arc<dyn ResidencyPolicy> = Arc::new(UsSplitPolicy::new());
    let d = deployment(policy.clone(), "us", 64 << 20);
    for (s, c) in [("ana", "US"), ("pedro", "PR"), ("gus", "GU")] {
        seed(&d, "us", s, c);
    }
    // A row subject cannot even be written here: placement refuses it.
    let service = app("us");
    let why = Purpose::new(JustificationCode::UserRequestedSupport);
    d.gate
        .register_subject(
            &service,
            &why,
            &Subject::parse("lena", Some("DE"), None).unwrap(),
        )
        .unwrap_err();
    let trainer = principal("spiffe://domicile.example/us/usds/trainer")
        .kind(PrincipalKind::Service)
        .org("usds", "US")
        .roles(&["training-service"])
        .enrol(&d.gate);
    let training = Purpose::new(JustificationCode::RecommendationTraining);
    let request = ScanRequest {
        class: DataClass::Protected,
        collection: Collection::parse("behaviour").unwrap(),
        destination: None,
    };
    let result = d.gate.scan(&trainer, &training, &request).unwrap();
    assert_eq!(result.records.len(), 3);
    for r in &result.records {
        let SubjectRef::Id(id) = &r.subject else {
            panic!("not pseudonymised in region")
        };
        let country = ["ana", "pedro", "gus"]
            .iter()
            .position(|s| *s == id.as_str())
            .map(|i| ["US", "PR", "GU"][i])
            .unwrap();
        let home = policy
            .home_region(&Subject::parse(id.as_str(), Some(country), None).unwrap())
            .unwrap();
        assert_eq!(home.as_str(), "us");
    }
    let mut log = entries(&d);
    let last = log.pop().unwrap();
    let decision = log.pop().unwrap();
    assert_eq!(last.action, Action::Scan);
    // The decision was logged before anything was decrypted, under the same request id.
    assert_eq!(decision.request_id, last.request_id);
    assert_eq!(
        decision.resource.target,
        domicile_audit::Target::Bulk { count: 0 }
    );
    // What was released: the records per class and collection, and the subjects, whose list
    // beside the log proves who was in the scan (and who was not).
    let domicile_audit::Target::Batch {
        count,
        subjects,
        parts,
    } = &last.resource.target
    else {
        panic!("{:?}", last.resource.target)
    };
    assert_eq!((*count, subjects.count), (3, 3));
    assert_eq!(parts.len(), 1);
    assert_eq!(
        (
            parts[0].class,
            parts[0].collection.as_str(),
            parts[0].records
        ),
        (DataClass::Protected, "behaviour", 3)
    );
    let set = domicile_audit::read_subject_set(&d.log_dir, subjects).unwrap();
    let mut cache = domicile_audit::query::SetCache::new();
    for (id, inside) in [("ana", true), ("gus", true), ("lena", false)] {
        let p: domicile_audit::Pseudonym = d.gate.pseudonym(&id.parse().unwrap()).parse().unwrap();
        assert_eq!(set.prove(&p).is_some(), inside, "{id}");
        let touch = domicile_audit::query::touched(&d.log_dir, &last, &p, &mut cache).unwrap();
        assert_eq!(touch.is_some(), inside, "{id}");
    }
    // A row trainer may not scan US behaviour.
    let row_trainer = principal("spiffe://domicile.example/row/bytedance-sg/trainer")
        .kind(PrincipalKind::Service)
        .org("bytedance-sg", "SG")
        .roles(&["training-service"])
        .enrol(&d.gate);
    denied(d.gate.scan(&row_trainer, &training, &request).unwrap_err());
}

#[test]
fn excepted_data_leaves_pseudonymised_or_aggregated() {
    let d = deployment(Arc::new(UsSplitPolicy::new()), "us", 64 << 20);
    let service = app("us");
    let why = Purpose::new(JustificationCode::UserRequestedSupport).with_ticket("SUP-9");
    for i in 0..60 {
        let s = format!("user-{i}");
        d.gate
            .register_subject(
                &service,
                &why,
                &Subject::parse(&s, Some("US"), None).unwrap(),
            )
            .unwrap();
        let rec = RecordRef {
            subject: SubjectId::parse(&s).unwrap(),
            class: DataClass::Excepted,
            collection: Collection::parse("metrics").unwrap(),
            key: RecordKey::parse(&s).unwrap(),
        };
        let bucket = if i < 55 { "android" } else { "tizen" };
        d.gate
            .write(
                &service,
                &why,
                &rec,
                format!("{{\"os\":\"{bucket}\",\"user\":\"{s}\"}}").as_bytes(),
                None,
            )
            .unwrap();
    }
    // A subject whose Excepted value is not JSON: its identifying fields cannot be found.
    d.gate
        .register_subject(
            &service,
            &why,
            &Subject::parse("opaque", Some("US"), None).unwrap(),
        )
        .unwrap();
    let opaque = RecordRef {
        subject: SubjectId::parse("opaque").unwrap(),
        class: DataClass::Excepted,
        collection: Collection::parse("metrics").unwrap(),
        key: RecordKey::parse("opaque").unwrap(),
    };
    d.gate
        .write(&service, &why, &opaque, b"user=opaque;os=tizen", None)
        .unwrap();
    let migration = principal("spiffe://domicile.example/us/usds/metrics")
        .kind(PrincipalKind::Service)
        .org("usds", "US")
        .roles(&["metrics-service"])
        .enrol(&d.gate);
    let request = ScanRequest {
        class: DataClass::Excepted,
        collection: Collection::parse("metrics").unwrap(),
        destination: Some(Region::parse("row").unwrap()),
    };
    // Excepted data crosses only for interoperability or business metrics.
    for other in [
        JustificationCode::ProductionIncident,
        JustificationCode::Migration,
    ] {
        let (rules, _) = denied(
            d.gate
                .scan(
                    &migration,
                    &Purpose::new(other).with_ticket("INC-1"),
                    &request,
                )
                .unwrap_err(),
        );
        assert!(
            rules.contains(&"us-split/excepted-crosses-deidentified".to_owned()),
            "{rules:?}"
        );
    }
    let purpose = Purpose::new(JustificationCode::BusinessMetrics).with_ticket("MET-1");
    let result = d.gate.scan(&migration, &purpose, &request).unwrap();
    assert_eq!(result.records.len(), 60);
    assert_eq!(result.withheld_not_deidentifiable, 1);
    assert!(
        result
            .records
            .iter()
            .all(|r| matches!(r.subject, SubjectRef::Pseudonym(_))),
        "subject ids must not cross the border"
    );
    // De-identified in value too, and under the transfer key: neither the subject's pseudonym
    // nor a field's equals the subject's pseudonym in the audit log.
    let log_json = serde_json::to_string(&entries(&d)).unwrap();
    for r in &result.records {
        let value: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
        let user = value["user"].as_str().unwrap();
        assert!(user.starts_with("hmac:") && user.len() == 69, "{user}");
        assert!(!String::from_utf8_lossy(&r.value).contains("user-"));
        let SubjectRef::Pseudonym(p) = &r.subject else {
            unreachable!()
        };
        let hex = &p["hmac:".len()..];
        assert!(
            !log_json.contains(hex),
            "a released pseudonym is in the log"
        );
        assert!(!log_json.contains(&user["hmac:".len()..]));
    }
    for i in 0..60 {
        let s = SubjectId::parse(&format!("user-{i}")).unwrap();
        assert_ne!(d.gate.transfer_pseudonym(&s), d.gate.pseudonym(&s));
        assert_ne!(
            d.gate.transfer_pseudonym(&s)["hmac:".len()..],
            d.gate.pseudonym(&s)
        );
    }
    let counts = d
        .gate
        .aggregate(&migration, &purpose, &request, &|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.value).unwrap_or_default();
            v["os"].as_str().unwrap_or("unknown").to_owned()
        })
        .unwrap();
    assert_eq!(
        counts.len(),
        1,
        "the 5-subject group is suppressed under Aggregate {{ min_subjects: 50 }}"
    );
    assert_eq!(counts[0].subjects, 55);
}

#[test]
fn fail_closed_when_the_log_cannot_be_written() {
    if !Path::new("/dev/full").exists() {
        eprintln!("SKIPPED: /dev/full is not available");
        return;
    }
    // One segment per batch, so the next batch lands on the full device linked in below.
    let d = deployment(Arc::new(UsSplitPolicy::new()), "us", 1);
    seed(&d, "us", "ana", "US");
    let size = d.gate.log().size();
    let next = d.log_dir.join("segments").join(format!("{size:020}.seg"));
    std::os::unix::fs::symlink("/dev/full", &next).unwrap();
    let alice = principal("spiffe://domicile.example/us/usds/alice")
        .org("usds", "US")
        .roles(&["engineer"])
        .enrol(&d.gate);
    for _ in 0..3 {
        match d.gate.read(&alice, &support(), &profile("ana"), None) {
            Err(GateError::AuditUnavailable(_)) => {}
            Ok(r) => panic!(
                "a read returned {} bytes without an audit entry",
                r.value.len()
            ),
            Err(other) => panic!("expected a refusal for the log, got {other}"),
        }
    }
    // Writes are refused too, and nothing is written.
    let err = d
        .gate
        .write(
            &alice,
            &support(),
            &profile("ana"),
            b"{\"name\":\"changed\"}",
            None,
        )
        .unwrap_err();
    assert!(matches!(err, GateError::AuditUnavailable(_)), "{err}");
}

#[test]
fn every_decision_is_in_a_log_that_verifies() {
    let d = deployment(Arc::new(UsSplitPolicy::new()), "us", 64 << 20);
    seed(&d, "us", "ana", "US"); // 3 entries
    let alice = principal("spiffe://domicile.example/us/usds/alice")
        .org("usds", "US")
        .roles(&["engineer"])
        .enrol(&d.gate);
    let bo = principal("spiffe://domicile.example/row/bytedance-sg/bo")
        .org("bytedance-sg", "SG")
        .roles(&["engineer"])
        .enrol(&d.gate);
    let mut decisions = 3;
    for _ in 0..5 {
        d.gate
            .read(&alice, &support(), &profile("ana"), None)
            .unwrap();
        d.gate
            .read(&bo, &support(), &profile("ana"), None)
            .unwrap_err();
        decisions += 2;
    }
    d.gate.log().close().unwrap();
    let report = domicile_audit::verify(&d.log_dir, &d.vkey, None, &mut |_, _| {}).unwrap();
    assert_eq!(report.entries, decisions);
    let allowed = entries(&d).iter().filter(|e| e.decision.allowed).count();
    assert_eq!(allowed, 3 + 5);
}

#[test]
fn the_global_policy_shows_the_pre_split_behaviour() {
    let d = deployment(Arc::new(GlobalPolicy::new()), "global", 64 << 20);
    seed(&d, "global", "ana", "US");
    seed(&d, "global", "lena", "DE");
    let bo = principal("spiffe://domicile.example/global/bytedance-sg/bo")
        .org("bytedance-sg", "SG")
        .roles(&["engineer"])
        .enrol(&d.gate);
    // No approval needed, any subject.
    assert!(d.gate.read(&bo, &support(), &profile("ana"), None).is_ok());
    assert!(d.gate.read(&bo, &support(), &profile("lena"), None).is_ok());
    let trainer = principal("spiffe://domicile.example/global/bytedance-sg/trainer")
        .kind(PrincipalKind::Service)
        .org("bytedance-sg", "SG")
        .roles(&["training-service"])
        .enrol(&d.gate);
    let request = ScanRequest {
        class: DataClass::Protected,
        collection: Collection::parse("behaviour").unwrap(),
        destination: None,
    };
    let result = d
        .gate
        .scan(
            &trainer,
            &Purpose::new(JustificationCode::RecommendationTraining),
            &request,
        )
        .unwrap();
    assert_eq!(
        result.records.len(),
        2,
        "the global trainer learns from everyone"
    );
    let eve = principal("spiffe://domicile.example/global/kpmg/eve")
        .kind(PrincipalKind::Auditor)
        .org("kpmg", "US")
        .roles(&["auditor"])
        .enrol(&d.gate);
    assert!(d
        .gate
        .read(&eve, &support(), &profile("ana"), None)
        .is_err());
}

#[test]
fn a_batch_write_is_all_or_nothing_and_one_entry() {
    use domicile_store::{RawRecord, RecordMeta};
    let d = deployment(Arc::new(UsSplitPolicy::new()), "us", 64 << 20);
    let service = app("us");
    let why = Purpose::new(JustificationCode::UserRequestedSupport);
    let record = |id: &str| RawRecord {
        meta: RecordMeta {
            collection: Collection::parse("profile").unwrap(),
            key: RecordKey::parse(id).unwrap(),
            subject: SubjectId::parse(id).unwrap(),
            class: DataClass::Protected,
            data_key_version: 0,
        },
        value: b"{}".to_vec(),
    };
    let subject = |id: &str, c: &str| Subject::parse(id, Some(c), None).unwrap();
    let before = d.gate.log().size();
    // One row subject in the batch: everything is refused, nothing written, the refusal logged.
    let mixed = vec![
        (subject("ana", "US"), vec![record("ana")]),
        (subject("lena", "DE"), vec![record("lena")]),
    ];
    let (rules, _) = denied(d.gate.write_batch(&service, &why, &mixed).unwrap_err());
    assert!(
        rules.contains(&"us-split/protected-rests-in-home-region".to_owned()),
        "{rules:?}"
    );
    assert_eq!(d.gate.log().size(), before + 1);
    let alice = principal("spiffe://domicile.example/us/usds/alice")
        .org("usds", "US")
        .roles(&["engineer"])
        .enrol(&d.gate);
    assert!(
        d.gate
            .read(&alice, &support(), &profile("ana"), None)
            .is_err(),
        "nothing was written"
    );
    // A clean batch: one entry, every record readable.
    let clean = vec![
        (subject("ana", "US"), vec![record("ana")]),
        (subject("pedro", "PR"), vec![record("pedro")]),
    ];
    let metas = d.gate.write_batch(&service, &why, &clean).unwrap();
    assert_eq!(metas.len(), 2);
    let last = entries(&d).pop().unwrap();
    assert_eq!(last.action, Action::Write);
    let domicile_audit::Target::Batch {
        count, subjects, ..
    } = &last.resource.target
    else {
        panic!("{:?}", last.resource.target)
    };
    assert_eq!((*count, subjects.count), (2, 2));
    assert_eq!(
        d.gate
            .read(&alice, &support(), &profile("pedro"), None)
            .unwrap()
            .value,
        b"{}"
    );
}

#[test]
fn a_denial_reads_as_a_sentence() {
    let d = deployment(Arc::new(UsSplitPolicy::new()), "us", 64 << 20);
    seed(&d, "us", "ana", "US");
    let bo = principal("spiffe://domicile.example/row/bytedance-sg/bo")
        .org("bytedance-sg", "SG")
        .roles(&["engineer"])
        .enrol(&d.gate);
    let err = d
        .gate
        .read(&bo, &support(), &profile("ana"), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("read refused by us-split/access/parent-and-partner-never-read-us-plaintext, us-split/protected-moves-only-toward-home-for-migration: "),
        "{err}"
    );
    assert!(err.ends_with("(audit entry 3)"), "{err}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(6))]

    /// Invariant 6 on the Gate's failure paths: a write that the store refuses (the record key
    /// already belongs to another subject), a read of a missing record and a write for an
    /// unregistered subject are logged, and the raw log bytes name none of the ids or record
    /// keys involved. (The log once held `record profile/alice@example.com already belongs to
    /// another subject` in clear.)
    #[test]
    fn failure_entries_carry_codes_never_ids(
        owner in "[a-z]{4,8}@example\\.com",
        intruder in "[a-z]{4,8}\\.intruder",
        ghost in "[a-z]{4,8}\\.ghost",
    ) {
        let d = deployment(Arc::new(UsSplitPolicy::new()), "us", 64 << 20);
        seed(&d, "us", &owner, "US");
        let service = app("us");
        let why = Purpose::new(JustificationCode::UserRequestedSupport);
        d.gate
            .register_subject(&service, &why, &Subject::parse(&intruder, Some("US"), None).unwrap())
            .unwrap();
        // The intruder's write to the owner's record key: the store refuses it.
        let mut stolen = profile(&intruder);
        stolen.key = RecordKey::parse(&owner).unwrap();
        let _ = d.gate.write(&service, &why, &stolen, b"{}", None);
        // A read of a record that is not there, and a write for a subject never registered.
        let mut missing = profile(&owner);
        missing.key = RecordKey::parse(&format!("{owner}-nothing")).unwrap();
        let _ = d.gate.read(&app("us"), &support(), &missing, None);
        let _ = d.gate.write(&service, &why, &profile(&ghost), b"{}", None);
        let failures = entries(&d)
            .into_iter()
            .filter(|e| matches!(e.outcome, domicile_audit::Outcome::Error { .. }))
            .count();
        proptest::prop_assert!(failures >= 1, "the store's refusal is logged as a failure");
        let mut raw = Vec::new();
        for f in std::fs::read_dir(d.log_dir.join("segments")).unwrap() {
            raw.extend(std::fs::read(f.unwrap().path()).unwrap());
        }
        for needle in [&owner, &intruder, &ghost] {
            proptest::prop_assert!(
                !raw.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "the log names {}", needle
            );
        }
    }
}

/// Training and deployment are decisions in the log: the `train` entry commits to every subject
/// the model learned from, and a deployment the policy forbids is refused and logged.
#[test]
fn training_and_deployment_are_logged_decisions() {
    let d = deployment(Arc::new(UsSplitPolicy::new()), "us", 64 << 20);
    for (s, c) in [("ana", "US"), ("pedro", "PR")] {
        seed(&d, "us", s, c);
    }
    let trainer = principal("spiffe://domicile.example/us/usds/trainer")
        .kind(PrincipalKind::Service)
        .org("usds", "US")
        .roles(&["training-service"])
        .enrol(&d.gate);
    let training = Purpose::new(JustificationCode::RecommendationTraining);
    let request = ScanRequest {
        class: DataClass::Protected,
        collection: Collection::parse("behaviour").unwrap(),
        destination: None,
    };
    let scan = d.gate.scan(&trainer, &training, &request).unwrap();
    let us: std::collections::BTreeSet<Region> = [Region::parse("us").unwrap()].into();
    let artifact = b"model bytes";
    let receipt = d
        .gate
        .record_training(
            &trainer,
            &training,
            &domicile_access::Training {
                inputs: &[&scan],
                trained_on: &us,
                artifact,
            },
        )
        .unwrap();
    let log = entries(&d);
    let train = &log[receipt.seq as usize];
    assert_eq!(train.action, Action::Train);
    assert_eq!(train.resource.class, DataClass::ModelArtifact);
    let domicile_audit::Target::Batch {
        count,
        subjects,
        parts,
    } = &train.resource.target
    else {
        panic!("{:?}", train.resource.target)
    };
    assert_eq!((*count, subjects.count), (2, 2));
    assert_eq!(parts[0].collection, "behaviour");
    let mut cache = domicile_audit::query::SetCache::new();
    let ana: domicile_audit::Pseudonym = d.gate.pseudonym(&"ana".parse().unwrap()).parse().unwrap();
    assert!(
        domicile_audit::query::touched(&d.log_dir, train, &ana, &mut cache)
            .unwrap()
            .is_some()
    );

    // A US model deploys in us; a model that learned from row subjects does not.
    let ok = d
        .gate
        .deploy_model(&trainer, &training, &us, artifact)
        .unwrap();
    assert_eq!(entries(&d)[ok.seq as usize].action, Action::Deploy);
    let both: std::collections::BTreeSet<Region> =
        [Region::parse("us").unwrap(), Region::parse("row").unwrap()].into();
    let (rules, seq) = denied(
        d.gate
            .deploy_model(&trainer, &training, &both, artifact)
            .unwrap_err(),
    );
    assert!(!rules.is_empty());
    let refused = &entries(&d)[seq as usize];
    assert_eq!(refused.action, Action::Deploy);
    assert!(!refused.decision.allowed);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap()
}

#[test]
fn async_reads_log_what_blocking_reads_log_before_releasing_anything() {
    let d = Arc::new(deployment(Arc::new(UsSplitPolicy::new()), "us", 64 << 20));
    seed(&d, "us", "ana", "US");
    let alice = principal("spiffe://domicile.example/us/usds/alice")
        .org("usds", "US")
        .roles(&["engineer"])
        .enrol(&d.gate);
    let bo = principal("spiffe://domicile.example/row/bytedance-sg/bo")
        .org("bytedance-sg", "SG")
        .roles(&["engineer"])
        .enrol(&d.gate);
    let before = entries(&d).len();
    let rt = runtime();
    const READS: usize = 64;
    // Tasks on a two-thread runtime: the futures are Send, and none blocks a thread.
    let got: Vec<_> = rt.block_on(async {
        let tasks: Vec<_> = (0..READS)
            .map(|_| {
                let (d, alice) = (Arc::clone(&d), alice.clone());
                tokio::spawn(async move {
                    d.gate
                        .read_async(&alice, &support(), &profile("ana"), None)
                        .await
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap().unwrap());
        }
        out
    });
    let logged = entries(&d);
    assert_eq!(logged.len(), before + READS, "one entry per read");
    let mut ids = std::collections::BTreeSet::new();
    for (r, e) in got.iter().zip(&logged[before..]) {
        assert_eq!(r.value, b"{\"name\":\"ana\"}");
        assert_eq!(e.action, Action::Read);
        assert!(e.decision.allowed);
        assert_eq!(
            e.outcome,
            domicile_audit::Outcome::Ok {
                result_digest: Some(domicile_audit::ResultDigest(
                    domicile_store::RecordDigest::of(&r.value).0
                ))
            },
            "the entry holds the digest of what was returned"
        );
        ids.insert(e.request_id.clone());
    }
    assert_eq!(ids.len(), READS, "each read under its own request id");

    // A refusal is logged, and names its entry, as a blocking read's does.
    let (rules, seq) = denied(
        rt.block_on(d.gate.read_async(&bo, &support(), &profile("ana"), None))
            .unwrap_err(),
    );
    assert!(rules.contains(&"us-split/access/parent-and-partner-never-read-us-plaintext".into()));
    assert!(!entries(&d)[seq as usize].decision.allowed);
    // A record that is not there: logged as not found, under the entry the error names.
    let missing = RecordRef {
        key: RecordKey::parse("ana-2").unwrap(),
        ..profile("ana")
    };
    let err = rt
        .block_on(d.gate.read_async(&alice, &support(), &missing, None))
        .unwrap_err();
    // The message travels into logs: it names neither the key nor the subject.
    let message = err.to_string();
    assert!(!message.contains("ana"), "{message}");
    let GateError::NotFound { seq, .. } = err else {
        panic!("expected not found, got {err:?}");
    };
    assert!(matches!(
        entries(&d)[seq as usize].outcome,
        domicile_audit::Outcome::Error { .. }
    ));
    let json = serde_json::to_string(&entries(&d)).unwrap();
    assert!(
        !json.contains("\"ana\""),
        "a plaintext subject id in the log"
    );
}

#[test]
fn async_reads_fail_closed_when_the_log_cannot_be_written() {
    if !Path::new("/dev/full").exists() {
        eprintln!("SKIPPED: /dev/full is not available");
        return;
    }
    let d = deployment(Arc::new(UsSplitPolicy::new()), "us", 1);
    seed(&d, "us", "ana", "US");
    let size = d.gate.log().size();
    let next = d.log_dir.join("segments").join(format!("{size:020}.seg"));
    std::os::unix::fs::symlink("/dev/full", &next).unwrap();
    let alice = principal("spiffe://domicile.example/us/usds/alice")
        .org("usds", "US")
        .roles(&["engineer"])
        .enrol(&d.gate);
    let rt = runtime();
    for _ in 0..3 {
        match rt.block_on(d.gate.read_async(&alice, &support(), &profile("ana"), None)) {
            Err(GateError::AuditUnavailable(_)) => {}
            Ok(r) => panic!(
                "a read returned {} bytes without an audit entry",
                r.value.len()
            ),
            Err(other) => panic!("expected a refusal for the log, got {other}"),
        }
    }
    assert_eq!(d.gate.log().size(), size, "nothing was acknowledged");
}
