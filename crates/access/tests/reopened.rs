//! A Gate reopened over a region's files, as after a restart or a restore: approvals whose
//! history is the log (the approval book is a cache the Gate settles against the region's audit
//! log when it opens, so restoring an old copy of the book cannot undo a revocation; an
//! approval's scope includes the ticket it was granted for), and bulk reads that fail half-way
//! still leave their decision and their failure in the log.

use std::path::Path;
use std::sync::Arc;

use domicile_access::{
    ApprovalBook, ApprovalScope, ApproverKey, Gate, ManualClock, Principal, RecordRef,
};
use domicile_audit::{AuditKey, AuditLog, KeyKind, LogConfig, SigningKey};
use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{DataClass, JustificationCode, Purpose, Region, Subject, SubjectId};
use domicile_store::{Collection, FileCustodian, RecordKey, SealedStore};

mod common;
use common::principal;

struct Node {
    gate: Gate,
    log: Arc<AuditLog>,
}

/// Opens the us region in `dir` with its approval book at `dir/approvals.json`.
fn open(dir: &Path, log_key: &SigningKey, audit_key: &AuditKey) -> Node {
    let region = Region::parse("us").unwrap();
    let custodian = Arc::new(FileCustodian::open(dir.join("keys")).unwrap());
    let store = SealedStore::open(
        dir.join("data"),
        region.clone(),
        Arc::new(UsSplitPolicy::new()),
        custodian,
    )
    .unwrap();
    let key = SigningKey::parse(&log_key.to_private_text()).unwrap();
    let log = Arc::new(AuditLog::open(dir.join("audit"), LogConfig::new(key)).unwrap());
    let gate = Gate::new(
        Arc::new(store),
        log.clone(),
        audit_key.clone(),
        ApprovalBook::open(dir.join("approvals.json")).unwrap(),
        Arc::new(ManualClock::at_unix_secs(1_790_000_000)),
    )
    .unwrap();
    for p in [app(), frank(), carol(), trainer()] {
        gate.enrol(p).unwrap();
    }
    Node { gate, log }
}

fn close(node: Node) {
    let Node { gate, log } = node;
    drop(gate);
    log.close().unwrap();
}

fn app() -> Principal {
    principal("spiffe://domicile.example/us/usds/profile-service")
        .kind(domicile_access::PrincipalKind::Service)
        .org("usds", "US")
        .roles(&["app-service"])
        .build()
}

fn frank() -> Principal {
    principal("spiffe://domicile.example/us/usds/frank")
        .org("usds", "US")
        .roles(&["engineer"])
        .build()
}

fn carol() -> Principal {
    principal("spiffe://domicile.example/us/usds/carol")
        .org("usds", "US")
        .roles(&["approver"])
        .build()
}

fn trainer() -> Principal {
    principal("spiffe://domicile.example/us/usds/trainer")
        .kind(domicile_access::PrincipalKind::Service)
        .org("usds", "US")
        .roles(&["training-service"])
        .build()
}

fn legal(ticket: &str) -> Purpose {
    Purpose::new(JustificationCode::LegalRequest).with_ticket(ticket)
}

fn profile() -> RecordRef {
    RecordRef {
        subject: SubjectId::parse("ana").unwrap(),
        class: DataClass::Protected,
        collection: Collection::parse("profile").unwrap(),
        key: RecordKey::parse("ana").unwrap(),
    }
}

#[test]
fn restoring_an_old_approval_book_cannot_undo_a_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let log_key = SigningKey::generate("audit.domicile.example/us", KeyKind::Ed25519).unwrap();
    let audit_key = AuditKey::generate().unwrap();
    let carol_key = ApproverKey::generate().unwrap();
    let node = open(dir.path(), &log_key, &audit_key);
    let why = Purpose::new(JustificationCode::UserRequestedSupport);
    node.gate
        .register_subject(
            &app(),
            &why,
            &Subject::parse("ana", Some("US"), None).unwrap(),
        )
        .unwrap();
    node.gate
        .write(&app(), &why, &profile(), b"{\"name\":\"ana\"}", None)
        .unwrap();
    node.gate
        .register_approver(carol().id, carol_key.public_key_base64());
    let scope = ApprovalScope {
        class: DataClass::Protected,
        region: Region::parse("us").unwrap(),
        subjects: Some([SubjectId::parse("ana").unwrap()].into()),
        purpose: legal("LEG-77"),
    };
    let request = node
        .gate
        .request_approval(&frank(), scope, 3600, 86_400)
        .unwrap();
    node.gate
        .approve(&carol(), &carol_key, &request.id)
        .unwrap();
    node.gate
        .read(&frank(), &legal("LEG-77"), &profile(), Some(&request.id))
        .unwrap();

    // The scope includes the ticket: the same approval does not open another case.
    let err = node
        .gate
        .read(&frank(), &legal("LEG-78"), &profile(), Some(&request.id))
        .unwrap_err();
    assert!(err.to_string().contains("outside its scope"), "{err}");

    // The operator's backup of the book, taken while the grant stood.
    let book = dir.path().join("approvals.json");
    let backup = std::fs::read(&book).unwrap();
    // The book names its subject by pseudonym only: the raw bytes hold no subject id.
    let text = String::from_utf8_lossy(&backup);
    assert!(!text.contains("\"ana\""), "{text}");
    assert!(
        text.contains(&format!(
            "pseudonym:{}",
            node.gate.pseudonym(&SubjectId::parse("ana").unwrap())
        )),
        "{text}"
    );
    node.gate.revoke_approval(&carol(), &request.id).unwrap();
    assert!(node
        .gate
        .read(&frank(), &legal("LEG-77"), &profile(), Some(&request.id))
        .is_err());
    close(node);

    // Restore the old book, whose grant still carries a valid signature, and reopen.
    std::fs::write(&book, &backup).unwrap();
    let node = open(dir.path(), &log_key, &audit_key);
    node.gate
        .register_approver(carol().id, carol_key.public_key_base64());
    let err = node
        .gate
        .read(&frank(), &legal("LEG-77"), &profile(), Some(&request.id))
        .unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");
    // The cache was rebuilt from the log: the book on disk says revoked again.
    let text = String::from_utf8(std::fs::read(&book).unwrap()).unwrap();
    assert!(text.contains("revoked"), "{text}");
    close(node);
}

/// A bulk read logs its decision before it decrypts anything, and its failure after: a scan
/// that meets a subject whose data key is gone (a key file lost from a restored keys directory)
/// leaves both in the log, under one request id, the failure as a reason code.
#[test]
fn a_bulk_read_that_fails_half_way_leaves_its_decision_and_its_failure() {
    let dir = tempfile::tempdir().unwrap();
    let log_key = SigningKey::generate("audit.domicile.example/us", KeyKind::Ed25519).unwrap();
    let audit_key = AuditKey::generate().unwrap();
    let node = open(dir.path(), &log_key, &audit_key);
    let why = Purpose::new(JustificationCode::UserRequestedSupport);
    for id in ["ana", "gus"] {
        node.gate
            .register_subject(&app(), &why, &Subject::parse(id, Some("US"), None).unwrap())
            .unwrap();
        let record = RecordRef {
            subject: SubjectId::parse(id).unwrap(),
            class: DataClass::Protected,
            collection: Collection::parse("behaviour").unwrap(),
            key: RecordKey::parse(&format!("{id}-1")).unwrap(),
        };
        node.gate.write(&app(), &why, &record, b"{}", None).unwrap();
    }
    close(node);
    // One subject's wrapped data key is lost.
    // The key store (redb) maps each subject's pseudonym to its wrapped data key: drop one.
    use redb::ReadableTable;
    const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("data_keys");
    let db = redb::Database::create(dir.path().join("keys/us/datakeys.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(TABLE).unwrap();
        let lost = table
            .iter()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .0
            .value()
            .to_vec();
        table.remove(lost.as_slice()).unwrap();
    }
    txn.commit().unwrap();
    drop(db);

    let node = open(dir.path(), &log_key, &audit_key);
    let before = node.log.size();
    let request = domicile_access::ScanRequest {
        class: DataClass::Protected,
        collection: Collection::parse("behaviour").unwrap(),
        destination: None,
    };
    let training = Purpose::new(JustificationCode::RecommendationTraining);
    node.gate.scan(&trainer(), &training, &request).unwrap_err();
    let log_dir = node.log.dir().to_path_buf();
    close(node);
    let mut entries = Vec::new();
    domicile_audit::for_each_entry(&log_dir, &mut |_, _| {}, |seq, bytes, _| {
        if seq >= before {
            entries.push(domicile_audit::Entry::from_canonical(bytes)?);
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(entries.len(), 2, "{entries:#?}");
    let (decision, failure) = (&entries[0], &entries[1]);
    assert_eq!(decision.request_id, failure.request_id);
    assert!(decision.decision.allowed);
    assert!(matches!(
        decision.outcome,
        domicile_audit::Outcome::Ok {
            result_digest: None
        }
    ));
    let domicile_audit::Outcome::Error { reason } = &failure.outcome else {
        panic!("{:?}", failure.outcome)
    };
    assert!(reason.starts_with("store/"), "{reason}");
    for id in ["ana", "gus"] {
        assert!(!reason.contains(id), "{reason}");
    }
}
