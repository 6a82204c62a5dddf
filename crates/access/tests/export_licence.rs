//! Exporting a model artifact out of `row` under the US split: the export-control obligation is
//! met only by a structured licence of the policy's regime and item, and the licence relied on
//! is recorded in the audit entry.

use std::sync::Arc;

use domicile_access::{
    ApprovalBook, Gate, GateError, ManualClock, Principal, PrincipalKind, RecordRef, LICENCE_PREFIX,
};
use domicile_audit::{Action, AuditKey, AuditLog, Entry, KeyKind, LogConfig, SigningKey};
use domicile_policy_us_split::{UsSplitPolicy, EXPORT_REGIME};
use domicile_residency::{
    DataClass, ExportLicence, JustificationCode, Obligation, Purpose, Region, Subject, SubjectId,
};
use domicile_store::{Collection, FileCustodian, RecordKey, SealedStore};

mod common;
use common::principal;

struct Row {
    _dir: tempfile::TempDir,
    gate: Gate,
    log_dir: std::path::PathBuf,
    migration: Principal,
}

/// A `row` Gate holding one model artifact, written by row's training service, of a subject
/// (the model's owner account) homed in `row`.
fn row() -> Row {
    let dir = tempfile::tempdir().unwrap();
    let region = Region::parse("row").unwrap();
    let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
    let store = SealedStore::open(
        dir.path().join("data"),
        region.clone(),
        Arc::new(UsSplitPolicy::new()),
        custodian,
    )
    .unwrap();
    let log_dir = dir.path().join("data/row/audit");
    let key = SigningKey::generate("audit.domicile.example/row", KeyKind::Ed25519).unwrap();
    let log = AuditLog::open(&log_dir, LogConfig::new(key)).unwrap();
    let gate = Gate::new(
        Arc::new(store),
        Arc::new(log),
        AuditKey::generate().unwrap(),
        ApprovalBook::in_memory(),
        Arc::new(ManualClock::at_unix_secs(1_790_000_000)),
    )
    .unwrap();
    let app = principal("spiffe://domicile.example/row/bytedance-sg/profile-service")
        .kind(PrincipalKind::Service)
        .org("bytedance-sg", "SG")
        .roles(&["app-service"])
        .enrol(&gate);
    let trainer = principal("spiffe://domicile.example/row/bytedance-sg/trainer")
        .kind(PrincipalKind::Service)
        .org("bytedance-sg", "SG")
        .roles(&["training-service"])
        .enrol(&gate);
    let migration = principal("spiffe://domicile.example/row/domicile/migration")
        .kind(PrincipalKind::Service)
        .org("domicile", "SG")
        .roles(&["migration-service"])
        .enrol(&gate);
    let support = Purpose::new(JustificationCode::UserRequestedSupport).with_ticket("SUP-1");
    gate.register_subject(
        &app,
        &support,
        &Subject::parse("models", Some("SG"), None).unwrap(),
    )
    .unwrap();
    let model = RecordRef {
        subject: SubjectId::parse("models").unwrap(),
        class: DataClass::ModelArtifact,
        collection: Collection::parse("models").unwrap(),
        key: RecordKey::parse("row-als-v1").unwrap(),
    };
    let training = Purpose::new(JustificationCode::RecommendationTraining);
    gate.write(&trainer, &training, &model, b"model bytes", None)
        .unwrap();
    Row {
        _dir: dir,
        gate,
        log_dir,
        migration,
    }
}

fn last_entry(r: &Row) -> Entry {
    let mut out = Vec::new();
    domicile_audit::for_each_entry(&r.log_dir, &mut |_, _| {}, |_, bytes, _| {
        out.push(Entry::from_canonical(bytes)?);
        Ok(())
    })
    .unwrap();
    out.pop().unwrap()
}

fn export(r: &Row, licence: Option<&ExportLicence>) -> Result<(), GateError> {
    r.gate
        .export(
            &r.migration,
            &Purpose::new(JustificationCode::Migration),
            &SubjectId::parse("models").unwrap(),
            &Region::parse("us").unwrap(),
            licence,
        )
        .map(|_| ())
}

fn refused_for(err: GateError) -> String {
    match err {
        GateError::Denied { rules, reason, .. } => {
            assert!(
                rules.iter().any(|r| r.as_str() == "gate/obligation-unmet"),
                "{rules:?}"
            );
            reason
        }
        other => panic!("expected a denial, got {other}"),
    }
}

#[test]
fn a_model_leaves_row_only_under_a_licence_of_the_policy_s_regime_and_item() {
    let r = row();
    // No licence at all.
    let why = refused_for(export(&r, None).unwrap_err());
    assert!(why.contains("no export licence"), "{why}");
    assert!(last_entry(&r).approval.is_none());

    // A licence of another regime, and one for another item of the right regime.
    for other in [
        "US-EAR/5D002/BIS-2026-1",
        &format!("{EXPORT_REGIME}/22/MOFCOM-2026-0042"),
    ] {
        let held: ExportLicence = other.parse().unwrap();
        let why = refused_for(export(&r, Some(&held)).unwrap_err());
        assert!(why.contains(other) && why.contains("requires"), "{why}");
        let entry = last_entry(&r);
        assert!(!entry.decision.allowed);
    }

    // The policy's regime and item: allowed, and the entry names the licence it relied on.
    let held = ExportLicence::new(EXPORT_REGIME, "21", "MOFCOM-2026-0042").unwrap();
    export(&r, Some(&held)).unwrap();
    let entry = last_entry(&r);
    assert_eq!(entry.action, Action::Export);
    assert!(entry.decision.allowed);
    assert_eq!(
        entry.approval.as_deref(),
        Some(format!("{LICENCE_PREFIX}{EXPORT_REGIME}/21/MOFCOM-2026-0042").as_str())
    );
    assert!(entry
        .decision
        .obligations
        .iter()
        .any(|o| matches!(o, Obligation::ExportLicence { regime, .. } if regime == EXPORT_REGIME)));
    // What the log records parses back to the licence.
    let recorded: ExportLicence = entry.approval.unwrap()[LICENCE_PREFIX.len()..]
        .parse()
        .unwrap();
    assert_eq!(recorded, held);
}
