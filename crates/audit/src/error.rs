//! The one error type of this crate.

use std::path::PathBuf;

use crate::merkle::ProofError;

/// Everything that can go wrong with an audit log, its keys, notes and proofs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`writing`, `opening`, …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// An append could not be made durable. The access it recorded must be refused; the log
    /// refuses every further append until it is reopened.
    #[error(
        "the audit log could not make the entry durable, so the access must be refused: {reason}"
    )]
    NotDurable {
        /// What failed.
        reason: String,
    },
    /// Another `AuditLog` in this process has the directory open.
    #[error("{path} is already open as an audit log in this process; share that one (it is Send + Sync)")]
    AlreadyOpen {
        /// The log directory.
        path: PathBuf,
    },
    /// Another process has the directory open as an audit log.
    #[error("{path} is open as an audit log in another process (its LOCK file is held); run one writer per log")]
    LockedByAnotherProcess {
        /// The log directory.
        path: PathBuf,
    },
    /// An entry's canonical encoding is too long to be published in a C2SP tlog-tiles entry
    /// bundle; it was not appended (the access it records must be refused).
    #[error("the entry's canonical encoding is {len} bytes, more than the {max} a log entry may have; it was not appended")]
    EntryTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The log was closed.
    #[error("the audit log is closed")]
    Closed,
    /// A stored file does not verify at a place a crash cannot explain.
    #[error("{path} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A stored entry does not verify.
    #[error("entry {seq} does not verify: {reason}")]
    BadStoredEntry {
        /// The entry's position in the log.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// A signed checkpoint does not verify or does not match the entries.
    #[error("checkpoint {index} (tree size {size}) does not verify: {reason}")]
    BadStoredCheckpoint {
        /// Its position among the stored checkpoints, from 0.
        index: usize,
        /// The tree size it claims.
        size: u64,
        /// What is wrong.
        reason: String,
    },
    /// The log holds fewer entries than a checkpoint signed for.
    #[error("the log holds {entries} entries but checkpoint {index} was signed for {size}: entries were removed")]
    Truncated {
        /// Entries present.
        entries: u64,
        /// The checkpoint's position.
        index: usize,
        /// Its size.
        size: u64,
    },
    /// Entries beyond the latest signed checkpoint.
    #[error("{count} entries after the latest signed checkpoint (size {size}) are covered by no signature")]
    UnsignedTail {
        /// The latest checkpoint's size.
        size: u64,
        /// How many entries follow it.
        count: u64,
    },
    /// A new checkpoint would not extend the last one signed, or a witness refused one.
    #[error("inconsistent checkpoint: {reason}")]
    Inconsistent {
        /// Why.
        reason: String,
    },
    /// An entry's canonical bytes could not be decoded.
    #[error("entry bytes at offset {offset}, field {field}: {reason}")]
    BadEntry {
        /// Byte offset in the encoding.
        offset: usize,
        /// The field being read.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A field value cannot be encoded or parsed.
    #[error("{field} {value:?}: {reason}")]
    BadField {
        /// The field.
        field: &'static str,
        /// The offending value.
        value: String,
        /// Why.
        reason: String,
    },
    /// A key could not be parsed or used.
    #[error("key {key:?}: {reason}")]
    BadKey {
        /// The key text (never a private key's secret part).
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// A signed note is malformed.
    #[error("malformed signed note: {reason}")]
    BadNote {
        /// Why.
        reason: &'static str,
    },
    /// A signature did not verify.
    #[error("the signature by {signer} does not verify")]
    BadSignature {
        /// The signer's name.
        signer: String,
    },
    /// A note lacks a signature by a required key.
    #[error("no signature by {signer}")]
    MissingSignature {
        /// The verifier key that found none.
        signer: String,
    },
    /// A checkpoint body is malformed.
    #[error("checkpoint body {body:?}: {reason}")]
    BadCheckpoint {
        /// The body (at most 200 characters of it).
        body: String,
        /// Why.
        reason: &'static str,
    },
    /// A witness policy is impossible.
    #[error("witness policy: {reason}")]
    BadPolicy {
        /// Why.
        reason: String,
    },
    /// Too few witnesses cosigned.
    #[error("{got} trusted witnesses cosigned the latest checkpoint, the policy needs {want}")]
    QuorumNotMet {
        /// Valid cosignatures from trusted witnesses.
        got: usize,
        /// The quorum.
        want: usize,
    },
    /// The log holds fewer entries than a checkpoint already signed or held: it was rolled
    /// back. The writer refuses to append to it or sign for it, since any checkpoint it signed
    /// now would fork the history it signed before.
    #[error("the log holds {entries} entries but a checkpoint of size {signed} was already signed for it: it was rolled back; refusing to go on")]
    RolledBack {
        /// Entries the log holds.
        entries: u64,
        /// The size of the signed (or held) checkpoint.
        signed: u64,
    },
    /// A checkpoint the verifier already holds is not consistent with the log.
    #[error("the log is not consistent with the held checkpoint of size {size}: {reason}")]
    NotConsistentWithHeld {
        /// The held checkpoint's size.
        size: u64,
        /// Why.
        reason: String,
    },
    /// A bulk entry's subject set cannot be checked: its list beside the log is missing,
    /// malformed, or not the set the entry commits to.
    #[error("the subject set {root} does not verify: {reason}")]
    BadSubjectSet {
        /// The set's Merkle root, as the entry records it.
        root: crate::SetRoot,
        /// Why.
        reason: String,
    },
    /// A crash-safe file operation failed.
    #[error(transparent)]
    File(#[from] domicile_durable::FileError),
    /// A Merkle proof did not verify or could not be built.
    #[error("proof: {0}")]
    Proof(#[from] ProofError),
    /// A tlog-proof document is malformed.
    #[error("malformed tlog-proof, line {line}: {reason}")]
    BadProofText {
        /// The 1-based line.
        line: usize,
        /// Why.
        reason: &'static str,
    },
    /// A worker thread panicked (a bug); what it was doing is unfinished and reports nothing.
    #[error("a worker thread panicked while {what}")]
    WorkerPanicked {
        /// What the thread was doing.
        what: &'static str,
    },
    /// The system random source failed, so no key could be generated.
    #[error("the system random source failed; no key was generated")]
    RandomUnavailable,
    /// A cryptographic primitive failed.
    #[error("cryptography: {0}")]
    Crypto(&'static str),
}

impl AuditError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        AuditError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
