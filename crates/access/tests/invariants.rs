//! Invariants 2 and 6 as a property test: over generated sequences of calls by generated
//! principals, every decision adds an entry to the log before the call returns, every value a
//! read returns has its digest in the entry just appended, every refusal is logged as a denial,
//! and no subject id ever appears in the log.

use std::sync::Arc;

use domicile_access::{
    ApprovalBook, Gate, GateError, ManualClock, Principal, PrincipalKind, RecordRef,
};
use domicile_audit::{AuditKey, AuditLog, Entry, KeyKind, LogConfig, Outcome, SigningKey};
use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{DataClass, JustificationCode, Purpose, Region, Subject, SubjectId};
use domicile_store::{Collection, FileCustodian, RecordDigest, RecordKey, SealedStore};
use proptest::prelude::*;

mod common;
use common::principal;

const SUBJECTS: [(&str, &str); 3] = [("ana-7f3a", "US"), ("pedro-1c9b", "PR"), ("gus-55e0", "GU")];

fn principals() -> Vec<Principal> {
    vec![
        principal("spiffe://d/us/usds/alice")
            .org("usds", "US")
            .roles(&["engineer"])
            .build(),
        principal("spiffe://d/row/acme-sg/bo")
            .org("acme-sg", "SG")
            .roles(&["engineer"])
            .build(),
        principal("spiffe://d/us/audit-firm/eve")
            .kind(PrincipalKind::Auditor)
            .org("audit-firm", "US")
            .roles(&["auditor"])
            .build(),
        principal("spiffe://d/us/usds/app")
            .kind(PrincipalKind::Service)
            .org("usds", "US")
            .roles(&["app-service"])
            .build(),
        principal("spiffe://d/us/usds/nobody")
            .org("usds", "US")
            .build(),
    ]
}

fn entries(dir: &std::path::Path) -> Vec<Entry> {
    let mut out = Vec::new();
    domicile_audit::for_each_entry(dir, &mut |_, _| {}, |_, bytes, _| {
        out.push(Entry::from_canonical(bytes)?);
        Ok(())
    })
    .unwrap();
    out
}

/// What a call returned: the value a read released, or nothing for a write.
type CallResult = Result<Option<Vec<u8>>, GateError>;

#[derive(Debug, Clone)]
enum Op {
    Read {
        who: usize,
        subject: usize,
        ticket: bool,
        code: usize,
    },
    Write {
        who: usize,
        subject: usize,
        ticket: bool,
        code: usize,
        value: Vec<u8>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let codes = JustificationCode::ALL.len();
    prop_oneof![
        (0..5usize, 0..3usize, any::<bool>(), 0..codes).prop_map(|(who, subject, ticket, code)| {
            Op::Read {
                who,
                subject,
                ticket,
                code,
            }
        }),
        (
            0..5usize,
            0..3usize,
            any::<bool>(),
            0..codes,
            proptest::collection::vec(any::<u8>(), 1..64)
        )
            .prop_map(|(who, subject, ticket, code, value)| Op::Write {
                who,
                subject,
                ticket,
                code,
                value
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_decision_is_logged_before_the_call_returns(ops in proptest::collection::vec(op(), 1..24)) {
        let dir = tempfile::tempdir().unwrap();
        let us = Region::parse("us").unwrap();
        let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
        let store = SealedStore::open(dir.path().join("data"), us, Arc::new(UsSplitPolicy::new()), custodian).unwrap();
        for (id, country) in SUBJECTS {
            store.register_subject(&Subject::parse(id, Some(country), None).unwrap()).unwrap();
            let key = RecordKey::parse(id).unwrap();
            store.put_raw(&id.parse().unwrap(), DataClass::Protected, &Collection::parse("profile").unwrap(), &key, b"first").unwrap();
        }
        let log_dir = dir.path().join("audit");
        let signing = SigningKey::generate("audit.d/us", KeyKind::Ed25519).unwrap();
        let log = AuditLog::open(&log_dir, LogConfig::new(signing)).unwrap();
        let gate = Gate::new(Arc::new(store), Arc::new(log), AuditKey::generate().unwrap(),
            ApprovalBook::in_memory(), Arc::new(ManualClock::at_unix_secs(1_800_000_000))).unwrap();
        let people = principals();
        for p in &people {
            gate.enrol(p.clone()).unwrap();
        }
        let record = |s: usize| RecordRef {
            subject: SubjectId::parse(SUBJECTS[s].0).unwrap(),
            class: DataClass::Protected,
            collection: Collection::parse("profile").unwrap(),
            key: RecordKey::parse(SUBJECTS[s].0).unwrap(),
        };
        let purpose = |ticket: bool, code: usize| {
            let p = Purpose::new(JustificationCode::ALL[code]);
            if ticket { p.with_ticket("T-1") } else { p }
        };
        for op in ops {
            let before = gate.log().size();
            let (result, written): (CallResult, Option<Vec<u8>>) = match &op {
                Op::Read { who, subject, ticket, code } => (
                    gate.read(&people[*who], &purpose(*ticket, *code), &record(*subject), None).map(|r| Some(r.value)),
                    None,
                ),
                Op::Write { who, subject, ticket, code, value } => (
                    gate.write(&people[*who], &purpose(*ticket, *code), &record(*subject), value, None).map(|_| None),
                    Some(value.clone()),
                ),
            };
            // The entry is durable: it is in the files, not only in memory.
            let log = entries(&log_dir);
            prop_assert!(log.len() as u64 > before, "{op:?} left no entry");
            let last = log.last().unwrap();
            // Every decision names a rule, and every rule it names exists: in the policy's table
            // or among the Gate's own rules.
            prop_assert!(!last.decision.rules.is_empty(), "{op:?}: no rule named");
            for rule in &last.decision.rules {
                let known = gate.policy().rule(rule).is_some()
                    || domicile_access::gate_rules().iter().any(|r| &r.id == rule);
                prop_assert!(known, "{op:?}: {rule} is in no rule table");
            }
            match result {
                Ok(returned) => {
                    prop_assert!(last.decision.allowed);
                    let data = returned.or(written).unwrap();
                    match &last.outcome {
                        Outcome::Ok { result_digest: Some(d) } => prop_assert_eq!(d.0, RecordDigest::of(&data).0),
                        other => prop_assert!(false, "{op:?}: outcome {other:?}"),
                    }
                }
                Err(GateError::Denied { seq, .. }) => {
                    prop_assert_eq!(seq, last.seq);
                    prop_assert!(!last.decision.allowed);
                }
                Err(other) => prop_assert!(false, "{op:?}: {other}"),
            }
        }
        // Invariant 6: no subject id, in any form the log stores, anywhere in it.
        let json = serde_json::to_string(&entries(&log_dir)).unwrap();
        for (id, _) in SUBJECTS {
            prop_assert!(!json.contains(id), "subject id {id} in the log");
        }
    }
}
