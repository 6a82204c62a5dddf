//! Whole subjects move only under a split plan's warrant: signed by the migration key the Gate
//! trusts, naming every subject moved. The migration-service role alone reads nothing; a warrant
//! of another key, an edited one, or one that does not name a subject asked for is refused under
//! `gate/migration-under-signed-plan`, and the refusal is in the log, naming no subject.

use std::sync::Arc;

use domicile_access::{
    ApprovalBook, Gate, GateError, ManualClock, MigrationWarrant, Principal, PrincipalKind,
    MIGRATION_WARRANT,
};
use domicile_audit::{AuditKey, AuditLog, Entry, KeyKind, LogConfig, SigningKey};
use domicile_policy_global::GlobalPolicy;
use domicile_residency::{DataClass, JustificationCode, Purpose, Region, Subject, SubjectId};
use domicile_store::{Collection, FileCustodian, RawRecord, RecordKey, RecordMeta, SealedStore};
use ring::signature::{Ed25519KeyPair, KeyPair};

mod common;
use common::principal;

const ANA: &str = "subject-ana-7101";
const BO: &str = "subject-bo-7102";
const DEE: &str = "subject-dee-7103";

struct World {
    _dir: tempfile::TempDir,
    gate: Gate,
    log_dir: std::path::PathBuf,
    migration: Principal,
    key: Ed25519KeyPair,
}

fn pair() -> Ed25519KeyPair {
    let rng = ring::rand::SystemRandom::new();
    Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn id(s: &str) -> SubjectId {
    SubjectId::parse(s).unwrap()
}

fn record(subject: &str) -> RawRecord {
    RawRecord {
        meta: RecordMeta {
            collection: Collection::parse("profile").unwrap(),
            key: RecordKey::parse(subject).unwrap(),
            subject: id(subject),
            class: DataClass::Protected,
            data_key_version: 0,
        },
        value: b"{\"v\":1}".to_vec(),
    }
}

fn purpose() -> Purpose {
    Purpose::new(JustificationCode::Migration).with_detail("region split")
}

/// A global Gate holding ANA and BO, trusting `key` as the migration key (unless `trust` is
/// false).
fn world(trust: bool) -> World {
    let dir = tempfile::tempdir().unwrap();
    let region = Region::parse("global").unwrap();
    let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
    let store = SealedStore::open(
        dir.path().join("data"),
        region,
        Arc::new(GlobalPolicy::new()),
        custodian,
    )
    .unwrap();
    let log_dir = dir.path().join("data/global/audit");
    let signing = SigningKey::generate("audit.domicile.example/global", KeyKind::Ed25519).unwrap();
    let log = AuditLog::open(&log_dir, LogConfig::new(signing)).unwrap();
    let gate = Gate::new(
        Arc::new(store),
        Arc::new(log),
        AuditKey::generate().unwrap(),
        ApprovalBook::in_memory(),
        Arc::new(ManualClock::at_unix_secs(1_790_000_000)),
    )
    .unwrap();
    let migration = principal("spiffe://domicile.example/global/domicile/migration")
        .kind(PrincipalKind::Service)
        .org("domicile", "US")
        .roles(&["migration-service"])
        .enrol(&gate);
    let key = pair();
    if trust {
        gate.trust_migration_key(&b64(key.public_key().as_ref()))
            .unwrap();
    }
    let batch: Vec<(Subject, Vec<RawRecord>)> = [ANA, BO]
        .iter()
        .map(|s| {
            (
                Subject::parse(s, Some("US"), None).unwrap(),
                vec![record(s)],
            )
        })
        .collect();
    gate.write_batch(&migration, &purpose(), &batch).unwrap();
    World {
        _dir: dir,
        gate,
        log_dir,
        migration,
        key,
    }
}

fn warrant(key: &Ed25519KeyPair, plan: &str, subjects: &[&str]) -> MigrationWarrant {
    let ids: Vec<SubjectId> = subjects.iter().map(|s| id(s)).collect();
    let signature = key.sign(&MigrationWarrant::message(plan, &ids));
    MigrationWarrant::new(plan, ids, signature.as_ref().to_vec())
}

fn last_entry(w: &World) -> Entry {
    let mut out = Vec::new();
    domicile_audit::for_each_entry(&w.log_dir, &mut |_, _| {}, |_, bytes, _| {
        out.push(Entry::from_canonical(bytes)?);
        Ok(())
    })
    .unwrap();
    out.pop().unwrap()
}

/// Asserts `err` is a refusal under the warrant rule, logged as such, naming no subject.
fn refused_by_warrant(w: &World, err: GateError, says: &str) {
    let text = err.to_string();
    match err {
        GateError::Denied { rules, reason, .. } => {
            assert!(
                rules.iter().any(|r| r.as_str() == MIGRATION_WARRANT),
                "{rules:?}"
            );
            assert!(reason.contains(says), "{reason}");
        }
        other => panic!("expected a refusal, got {other}"),
    }
    for subject in [ANA, BO, DEE] {
        assert!(
            !text.contains(subject),
            "the refusal names {subject}: {text}"
        );
    }
    let entry = last_entry(w);
    assert!(!entry.decision.allowed);
    assert!(entry
        .decision
        .rules
        .iter()
        .any(|r| r.as_str() == MIGRATION_WARRANT));
}

#[test]
fn a_warrant_of_the_trusted_key_naming_every_subject_moves_them_and_the_log_names_its_plan() {
    let w = world(true);
    let good = warrant(&w.key, "plan-a1b2", &[ANA, BO]);
    let read = w
        .gate
        .read_subjects(&w.migration, &purpose(), &[id(ANA), id(BO)], &good)
        .unwrap();
    assert_eq!(read.len(), 2);
    assert!(read.iter().all(|(_, records)| records.len() == 1));
    let entry = last_entry(&w);
    assert!(entry.decision.allowed);
    assert!(entry
        .decision
        .rules
        .iter()
        .any(|r| r.as_str() == MIGRATION_WARRANT));
    assert_eq!(
        entry.purpose.detail.as_deref(),
        Some("region split; plan plan-a1b2")
    );
}

#[test]
fn the_role_alone_is_not_enough_a_warrant_of_another_key_is_refused() {
    let w = world(true);
    let forged = warrant(&pair(), "plan-a1b2", &[ANA, BO]);
    let err = w
        .gate
        .read_subjects(&w.migration, &purpose(), &[id(ANA)], &forged)
        .unwrap_err();
    refused_by_warrant(&w, err, "not signed by the migration key");
}

#[test]
fn an_edited_warrant_is_refused() {
    let w = world(true);
    let narrow = warrant(&w.key, "plan-a1b2", &[ANA]);
    // The same signature over a wider subject set, or another plan.
    let sig = w
        .key
        .sign(&MigrationWarrant::message("plan-a1b2", &[id(ANA)]))
        .as_ref()
        .to_vec();
    for edited in [
        MigrationWarrant::new("plan-a1b2", [id(ANA), id(BO)], sig.clone()),
        MigrationWarrant::new("plan-zzzz", [id(ANA)], sig.clone()),
    ] {
        let err = w
            .gate
            .read_subjects(&w.migration, &purpose(), &[id(ANA)], &edited)
            .unwrap_err();
        refused_by_warrant(&w, err, "not signed by the migration key");
    }
    // The genuine narrow warrant still works for what it names.
    w.gate
        .read_subjects(&w.migration, &purpose(), &[id(ANA)], &narrow)
        .unwrap();
}

#[test]
fn a_subject_the_warrant_does_not_name_is_neither_read_nor_written() {
    let w = world(true);
    let narrow = warrant(&w.key, "plan-a1b2", &[ANA]);
    let err = w
        .gate
        .read_subjects(&w.migration, &purpose(), &[id(ANA), id(BO)], &narrow)
        .unwrap_err();
    refused_by_warrant(&w, err, "1 subject(s) asked for are not in the warrant");

    let batch = vec![(
        Subject::parse(DEE, Some("US"), None).unwrap(),
        vec![record(DEE)],
    )];
    let err = w
        .gate
        .write_subjects(&w.migration, &purpose(), &batch, &narrow)
        .unwrap_err();
    refused_by_warrant(&w, err, "1 subject(s) asked for are not in the warrant");
    // Nothing of DEE was written.
    let wide = warrant(&w.key, "plan-a1b2", &[DEE]);
    let read = w
        .gate
        .read_subjects(&w.migration, &purpose(), &[id(DEE)], &wide)
        .unwrap();
    assert!(
        read.iter().all(|(_, records)| records.is_empty()),
        "{read:?}"
    );
    // Every byte the log wrote, allowed and refused entries alike, names the subjects only by
    // pseudonym: the warrant's subject set is never written down.
    for (path, bytes) in files(&w.log_dir) {
        for subject in [ANA, BO, DEE] {
            assert!(
                !bytes
                    .windows(subject.len())
                    .any(|win| win == subject.as_bytes()),
                "{} names {subject}",
                path.display()
            );
        }
    }
}

/// Every file under `dir`, with its bytes.
fn files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

#[test]
fn a_gate_that_trusts_no_migration_key_honours_no_warrant() {
    let w = world(false);
    let any = warrant(&w.key, "plan-a1b2", &[ANA, BO]);
    let err = w
        .gate
        .read_subjects(&w.migration, &purpose(), &[id(ANA)], &any)
        .unwrap_err();
    refused_by_warrant(&w, err, "trusts no migration key");
    assert!(w.gate.trust_migration_key("not base64 !").is_err());
    assert!(w.gate.trust_migration_key(&b64(&[7u8; 16])).is_err());
}
