//! The tamper-evident access log of domicile: RFC 6962 Merkle tree, C2SP signed checkpoints,
//! proofs, witnesses and offline verification.
//!
//! Every access a region's gate decides is appended to that region's [`AuditLog`] before any
//! data moves. Each [`Entry`] has one canonical byte encoding, and the log is an RFC 6962 Merkle
//! tree over those bytes. The log periodically signs a C2SP checkpoint (origin, size, root) with
//! Ed25519 as a signed note, and never signs one that does not extend the last. An auditor
//! holding only the log's public [`VerifierKey`] runs [`verify`] over a copy of the directory:
//! any changed, dropped, reordered or appended byte is found. Witnesses cosign checkpoints after
//! checking consistency proofs, so everyone can be sure they were shown the same log. Subjects
//! appear only as keyed HMAC [`Pseudonym`]s. A bulk entry ([`Target::Batch`]) commits to the
//! [`SubjectSet`] it touched, whose list is kept beside the log, so that the accesses that
//! touched one person are found with a proof, bulk ones included ([`query::touched`]).
//!
//! ```
//! use domicile_audit::{verify, AuditLog, KeyKind, LogConfig, SigningKey};
//! # let entry = domicile_audit::doc_example_entry()?;
//!
//! let dir = tempfile::tempdir()?;
//! let key = SigningKey::generate("audit.example/us", KeyKind::Ed25519)?;
//! let vkey = key.verifier();
//! let log = AuditLog::open(dir.path(), LogConfig::new(key))?;
//! let receipt = log.append(entry)?; // returns once the entry is durable
//! assert_eq!(receipt.seq, 0);
//! log.close()?; // signs a final checkpoint
//!
//! let report = verify(dir.path(), &vkey, None, &mut |_, _| {})?;
//! assert_eq!(report.entries, 1);
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod checkpoint;
mod entry;
mod error;
mod files;
mod log;
pub mod merkle;
mod note;
mod proof;
mod pseudonym;
pub mod query;
mod reader;
mod subjects;
mod verify;
mod witness;

pub use checkpoint::Checkpoint;
pub use entry::{
    Action, Entry, EntryDecision, Outcome, Principal, Resource, Tally, Target, ENTRY_VERSION,
    MAX_ENTRY_BYTES,
};
pub use error::AuditError;
pub use log::{store_cosigned, Append, AuditLog, LogConfig, LogStats, OpenReport, Receipt, Ticket};
pub use note::{KeyKind, Note, NoteSignature, SigningKey, VerifierKey};
pub use proof::InclusionProof;
pub use pseudonym::{AuditKey, BulkDigest, Pseudonym, RecordKeyPseudonym, ResultDigest};
pub use reader::LogReader;
pub use subjects::{
    read_subject_set, subject_set_path, verify_subject_sets, write_subject_set, SetRoot,
    SubjectSet, SubjectSetCommitment, SubjectSetProof, MAX_SET_SUBJECTS,
};
pub use verify::{
    entry_bytes, for_each_entry, load_tree, prove, stored_checkpoints, stored_cosigned, verify,
    verify_against, VerifyReport,
};
pub use witness::{verify_cosignature, Witness, WitnessPolicy};

/// An example entry for documentation: a US support engineer reading one protected record.
#[doc(hidden)]
pub fn doc_example_entry() -> Result<Entry, Box<dyn std::error::Error>> {
    use domicile_residency::{
        CountryCode, DataClass, JustificationCode, PolicyId, Purpose, Region, RuleId, SubjectId,
    };
    let audit_key = AuditKey::from_bytes([7; 32]);
    Ok(Entry {
        seq: 0,
        time_ms: 1_750_000_000_000,
        region: Region::parse("us")?,
        principal: Principal {
            id: "spiffe://domicile.example/us/ttusds/alice".into(),
            organisation: "ttusds".into(),
            office_country: CountryCode::parse("US")?,
            location_country: CountryCode::parse("US")?,
        },
        action: Action::Read,
        resource: Resource {
            class: DataClass::Protected,
            collection: "profiles".into(),
            subject: Some(audit_key.pseudonym(&SubjectId::parse("user-17")?)),
            target: Target::Record {
                key: "user-17/profile".into(),
            },
        },
        purpose: Purpose::new(JustificationCode::UserRequestedSupport).with_ticket("SUP-1234"),
        approval: None,
        decision: EntryDecision {
            allowed: true,
            rules: vec![RuleId::parse("us-split/protected-rests-in-home-region")?],
            obligations: Vec::new(),
        },
        policy: PolicyId {
            name: "us-split".into(),
            version: "1.0.0".into(),
            digest: domicile_residency::Sha256Digest([0; 32]),
        },
        request_id: "req-1".into(),
        outcome: Outcome::Ok {
            result_digest: None,
        },
    })
}
