//! The review's attacks as properties: whatever a principal claims, only a principal whose
//! directory entry is USDS (located in the US) reads US Protected plaintext under the US split,
//! and every refusal names a rule that exists.

use std::sync::Arc;

use domicile_access::{
    ApprovalBook, Gate, ManualClock, Principal, PrincipalKind, RecordRef, ScanRequest,
};
use domicile_audit::{AuditKey, AuditLog, KeyKind, LogConfig, SigningKey};
use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{DataClass, JustificationCode, Purpose, Region, Subject};
use domicile_store::{Collection, FileCustodian, RecordKey, SealedStore};
use proptest::prelude::*;

const ORGS: [(&str, &str); 7] = [
    ("usds", "US"),
    ("bytedance-us", "US"),
    ("bytedance-sg", "SG"),
    ("bytedance-cn", "CN"),
    ("techpartner", "US"),
    ("audit-firm", "US"),
    ("domicile", "US"),
];
const ROLES: [&str; 8] = [
    "engineer",
    "approver",
    "auditor",
    "security",
    "app-service",
    "training-service",
    "migration-service",
    "nothing",
];
const PLACES: [&str; 4] = ["US", "PR", "CN", "SG"];
const KINDS: [PrincipalKind; 3] = [
    PrincipalKind::Person,
    PrincipalKind::Service,
    PrincipalKind::Auditor,
];

/// A principal from indexes into the tables above.
fn someone(region: usize, org: usize, kind: usize, place: usize, roles: &[usize]) -> Principal {
    let (name, country) = ORGS[org];
    let region = ["us", "row"][region];
    let roles: Vec<&str> = roles.iter().map(|r| ROLES[*r]).collect();
    Principal::parse(
        &format!("spiffe://d/{region}/{name}/p"),
        KINDS[kind],
        (name, country),
        country,
        PLACES[place],
        &roles,
    )
    .unwrap()
}

fn us_gate() -> (tempfile::TempDir, Gate, RecordRef) {
    let dir = tempfile::tempdir().unwrap();
    let us = Region::parse("us").unwrap();
    let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
    let store = SealedStore::open(
        dir.path().join("data"),
        us,
        Arc::new(UsSplitPolicy::new()),
        custodian,
    )
    .unwrap();
    let record = RecordRef {
        subject: "ana-7f3a".parse().unwrap(),
        class: DataClass::Protected,
        collection: Collection::parse("profile").unwrap(),
        key: RecordKey::parse("ana-7f3a").unwrap(),
    };
    store
        .register_subject(&Subject::parse("ana-7f3a", Some("US"), None).unwrap())
        .unwrap();
    store
        .put_raw(
            &record.subject,
            record.class,
            &record.collection,
            &record.key,
            b"{}",
        )
        .unwrap();
    let signing = SigningKey::generate("audit.d/us", KeyKind::Ed25519).unwrap();
    let log = AuditLog::open(dir.path().join("audit"), LogConfig::new(signing)).unwrap();
    let gate = Gate::new(
        Arc::new(store),
        Arc::new(log),
        AuditKey::generate().unwrap(),
        ApprovalBook::in_memory(),
        Arc::new(ManualClock::at_unix_secs(1_800_000_000)),
    )
    .unwrap();
    (dir, gate, record)
}

type Shape = (usize, usize, usize, usize, Vec<usize>);

fn shape() -> impl Strategy<Value = Shape> {
    (
        0..2usize,
        0..ORGS.len(),
        0..KINDS.len(),
        0..PLACES.len(),
        proptest::collection::vec(0..ROLES.len(), 1..3),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn only_usds_in_the_us_reads_us_protected_plaintext(
        entry in shape(),
        claim in shape(),
        code in 0..JustificationCode::ALL.len(),
    ) {
        let (_dir, gate, record) = us_gate();
        let listed = someone(entry.0, entry.1, entry.2, entry.3, &entry.4);
        gate.enrol(listed.clone()).unwrap();
        // The caller claims anything, under the listed id.
        let mut claimed = someone(claim.0, claim.1, claim.2, claim.3, &claim.4);
        claimed.id = listed.id.clone();
        let why = Purpose::new(JustificationCode::ALL[code]).with_ticket("SUP-1");
        let behaviour = ScanRequest {
            class: DataClass::Protected,
            collection: Collection::parse("profile").unwrap(),
            destination: None,
        };
        for who in [&listed, &claimed] {
            let read = gate.read(who, &why, &record, None).is_ok();
            let scanned = gate
                .scan(who, &why, &behaviour)
                .map(|r| !r.records.is_empty())
                .unwrap_or(false);
            if read || scanned {
                prop_assert_eq!(who, &listed, "a claim other than the entry was honoured");
                let usds_in_us = listed.organisation.name == "usds"
                    && ["US", "PR"].contains(&listed.location_country.as_str());
                // The deployment's own migration service also reads, for migration only.
                let migration = listed.organisation.name == "domicile"
                    && JustificationCode::ALL[code] == JustificationCode::Migration;
                prop_assert!(usds_in_us || migration, "{listed:?} read US Protected data");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever principals do — read, write, delete, scan, export, shred, purge — every decision the
    /// log holds names at least one rule, and every rule it names exists: in the policy's rule
    /// table (residency and access rules) or among the Gate's own rules.
    #[test]
    fn every_logged_decision_names_a_rule_that_exists(
        callers in proptest::collection::vec((shape(), 0..JustificationCode::ALL.len(), 0..7usize), 1..8),
    ) {
        let (dir, gate, record) = us_gate();
        let policy = UsSplitPolicy::new();
        let mut known: std::collections::BTreeSet<String> = domicile_residency::ResidencyPolicy::rules(&policy)
            .iter()
            .map(|r| r.id.to_string())
            .collect();
        known.extend(domicile_access::gate_rules().iter().map(|r| r.id.to_string()));
        let row = Region::parse("row").unwrap();
        for (who, code, action) in &callers {
            let p = someone(who.0, who.1, who.2, who.3, &who.4);
            // A second principal under an id already listed is not enrolled: its calls are
            // then refused as unverified, which must name a rule too.
            let _ = gate.enrol(p.clone());
            let why = Purpose::new(JustificationCode::ALL[*code]).with_ticket("SUP-1");
            let scan = ScanRequest {
                class: DataClass::Protected,
                collection: Collection::parse("profile").unwrap(),
                destination: None,
            };
            // Allowed or refused, each call leaves its decision in the log.
            let _ = match action {
                0 => gate.read(&p, &why, &record, None).map(|_| ()),
                1 => gate.write(&p, &why, &record, b"{}", None).map(|_| ()),
                2 => gate.delete(&p, &why, &record).map(|_| ()),
                3 => gate.scan(&p, &why, &scan).map(|_| ()),
                4 => gate.export(&p, &why, &record.subject, &row, None).map(|_| ()),
                5 => gate.shred_subject(&p, &why, &record.subject).map(|_| ()),
                _ => gate.purge(&p, &why),
            };
        }
        drop(gate);
        let mut decisions = 0;
        domicile_audit::for_each_entry(&dir.path().join("audit"), &mut |_, _| {}, |_, bytes, _| {
            let entry = domicile_audit::Entry::from_canonical(bytes)?;
            decisions += 1;
            assert!(!entry.decision.rules.is_empty(), "a decision names no rule: {entry:?}");
            for rule in &entry.decision.rules {
                assert!(known.contains(rule.as_str()), "{rule} is not a rule of the policy or the Gate");
            }
            Ok(())
        })
        .unwrap();
        prop_assert!(decisions >= callers.len());
    }
}

/// Whoever asks, a purge deletes nothing while a subject in the region still has a live key:
/// principals of every shape and purpose are refused by the rules or by the store, and every
/// refusal is in the log; the record still opens after all of them.
#[test]
fn no_principal_purges_a_region_that_still_holds_a_live_subject() {
    let (dir, gate, record) = us_gate();
    let (mut calls, mut refused_by_store) = (0, 0);
    for (name, country) in ORGS {
        for (k, kind) in KINDS.into_iter().enumerate() {
            for (p, place) in PLACES.into_iter().enumerate() {
                // One id per principal, each enrolled as it is.
                let who = Principal::parse(
                    &format!("spiffe://d/us/{name}/p-{k}-{p}"),
                    kind,
                    (name, country),
                    country,
                    place,
                    &["engineer", "app-service", "migration-service"],
                )
                .unwrap();
                gate.enrol(who.clone()).unwrap();
                for code in JustificationCode::ALL {
                    let why = Purpose::new(code).with_ticket("SUP-1");
                    let err = gate
                        .purge(&who, &why)
                        .expect_err("a purge with a live subject in the region");
                    // The migration service passes the rules; the store refuses it.
                    refused_by_store += usize::from(err.to_string().contains("live data key"));
                    calls += 1;
                }
            }
        }
    }
    assert!(
        refused_by_store > 0,
        "no call got past the rules to the store"
    );
    drop(gate);
    let store = SealedStore::open(
        dir.path().join("data"),
        Region::parse("us").unwrap(),
        Arc::new(UsSplitPolicy::new()),
        Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap()),
    )
    .unwrap();
    assert!(store
        .get_raw(&record.collection, &record.key)
        .unwrap()
        .is_some());
    let mut shreds = 0;
    domicile_audit::for_each_entry(&dir.path().join("audit"), &mut |_, _| {}, |_, bytes, _| {
        let entry = domicile_audit::Entry::from_canonical(bytes)?;
        if entry.action == domicile_audit::Action::Shred {
            shreds += 1;
        }
        Ok(())
    })
    .unwrap();
    assert!(
        shreds >= calls,
        "{shreds} shred entries for {calls} purge calls"
    );
}
