//! The one error type of the store.

use std::path::PathBuf;

use domicile_residency::{DataClass, Region, ResidencyError, RuleId};

use crate::{BlindIndex, Collection, KekVersion, Pseudonym};

/// What went wrong in the sealed store, its backend or its key custodian.
///
/// Every variant names what it is about — the record (collection and key), the subject, the
/// region, the rule or the file — so the message is one an operator can act on. Messages never
/// quote record contents.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file or directory could not be read, written or created.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What was being done (`create`, `read`, `rename`, …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The embedded database reported an error.
    #[error("{backend} backend failed to {operation}: {detail}")]
    Backend {
        /// Which backend (`sled`, `redb`).
        backend: &'static str,
        /// What it was asked to do.
        operation: &'static str,
        /// The database's own message.
        detail: String,
    },
    /// Another process has the store open: an embedded database is locked to one process (a
    /// running `domicile serve` holds its region's store).
    #[error("the store at {path} is open in another process ({backend} holds it locked; waited {waited_secs} s): run this again when that process has finished")]
    InUse {
        /// Which backend (`sled`, `redb`).
        backend: &'static str,
        /// The store's directory or database file.
        path: PathBuf,
        /// How long this process waited for the lock.
        waited_secs: u64,
    },
    /// The store directory holds a different backend's files, or another region's store.
    #[error("the store at {path} cannot be opened: {reason}")]
    StoreMismatch {
        /// The store directory.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// The store was written in a format this build does not read.
    #[error("this store is in store format {found}, but this build reads format {supported} only (v2 blinds record keys and seals them inside each record): keep the old data directory, create a new deployment with `domicile init`, and re-ingest the data (or export it with the build that wrote it)")]
    UnsupportedStoreFormat {
        /// The format version found in the store's metadata.
        found: String,
        /// The only format this build reads.
        supported: u32,
    },
    /// The store's own metadata names a different region than the one it was opened for.
    #[error("this store holds region {found}'s records, but was opened as region {expected}")]
    RegionMismatch {
        /// The region given to `open`.
        expected: Region,
        /// The region written in the store.
        found: String,
    },
    /// A collection name that is not 1 to 64 lowercase letters, digits, `-`, `_` or `.`.
    #[error("invalid collection name {value:?}: {reason}")]
    InvalidCollection {
        /// The text that was given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A record key that is empty, too long or holds control characters. The key itself is not
    /// kept: record keys often embed subject ids.
    #[error("invalid record key ({length} bytes): {reason}")]
    InvalidRecordKey {
        /// The length of the text that was given, in bytes.
        length: usize,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The residency policy refused a question or a value (an unknown region, a subject without
    /// a residence, …).
    #[error(transparent)]
    Policy(#[from] ResidencyError),
    /// The subject has no entry in this store's registry: register it first.
    #[error("subject {subject} (pseudonym) is not registered in region {region}: call register_subject first")]
    SubjectNotRegistered {
        /// The subject, by its pseudonym in this region.
        subject: Pseudonym,
        /// This store's region.
        region: Region,
    },
    /// The policy forbids this class of this subject's data to rest in this store's region.
    /// Nothing was written. (Boxed: it names seven things, and keeping it small keeps every
    /// `Result` of the store small.)
    #[error("{0}")]
    PlacementRefused(Box<PlacementRefusal>),
    /// A put named a (collection, key) that already holds another subject's record.
    #[error("record {collection}/{key} already belongs to another subject; delete it first")]
    KeyHeldByOtherSubject {
        /// The record's collection.
        collection: Collection,
        /// The record, by its blind index (the key itself is never printed).
        key: BlindIndex,
    },
    /// An entry of the subject index — the index journal or one of a subject's lists — is
    /// malformed: changed or cut short on disk. Reads of a subject's records and exports refuse
    /// rather than return part of them; a shred does not need the index and finds the subject's
    /// records by the owner each record names instead.
    /// [`SealedStore::rebuild_index`](crate::SealedStore::rebuild_index) repairs it.
    #[error(
        "the store's subject index is corrupt: the {what} at backend key {key} is malformed; \
         rebuild the index from the records (`domicile store reindex`; \
         SealedStore::rebuild_index), which needs no key (shredding a subject works meanwhile)"
    )]
    CorruptIndex {
        /// `journal entry` or `index list`.
        what: &'static str,
        /// The entry's backend key in hex (a journal sequence or a pseudonym; never a subject
        /// id).
        key: String,
    },
    /// A stored record did not authenticate: it was changed, moved from another key, collection,
    /// subject or region, or written under a key this custodian does not hold.
    #[error("record {collection}/{key} failed to authenticate: {reason}")]
    Authentication {
        /// The record's collection.
        collection: Collection,
        /// The record, as `#` and the first bytes of its blind index in hex: the key itself is
        /// never printed.
        key: String,
        /// What did not match.
        reason: String,
    },
    /// The record belongs to a subject whose data key was destroyed.
    #[error("record {collection}/{key} cannot be opened: its subject was shredded")]
    SubjectShredded {
        /// The record's collection.
        collection: Collection,
        /// The record, as `#` and the first bytes of its blind index in hex.
        key: String,
    },
    /// A value could not be encoded or decoded with serde.
    #[error("a record of {collection}: {detail}")]
    Serialization {
        /// The record's collection.
        collection: Collection,
        /// What failed, by serde's category and position (never quoting the value).
        detail: String,
    },
    /// A key file is corrupt, of an unknown format, or does not open under its KEK.
    #[error("key file {path} is unusable: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A data key is wrapped under a key-encryption key the custodian no longer has.
    #[error("key-encryption key {version} of region {region} is missing (expected at {path})")]
    MissingKek {
        /// The region.
        region: Region,
        /// The version that is needed.
        version: KekVersion,
        /// Where it should be.
        path: PathBuf,
    },
    /// A key-encryption key cannot be retired yet.
    #[error("key-encryption key {version} of region {region} cannot be retired: {reason}")]
    KekInUse {
        /// The region.
        region: Region,
        /// The version asked about.
        version: KekVersion,
        /// Why not.
        reason: String,
    },
    /// Another process holds the region's key store (rotating, shredding or splitting), and
    /// did not let go within the time this one waited.
    #[error("the keys of region {region} are in use by {holder} (lock {path}); waited {waited:?}: run this again when that process has finished")]
    KeysInUse {
        /// The region.
        region: Region,
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as the holder wrote it: pid, command and since when.
        holder: String,
        /// How long this process waited.
        waited: std::time::Duration,
    },
    /// The embedded key store (`datakeys.redb`) failed.
    #[error("key store {path} failed to {operation}: {detail}")]
    KeyStore {
        /// The database file.
        path: PathBuf,
        /// What it was asked to do.
        operation: &'static str,
        /// redb's message.
        detail: String,
    },
    /// The keys directory keeps data keys in key layout 2 (one file per subject), which this
    /// build no longer reads in place.
    #[error("the data keys of region {region} under {keys} are in key layout 2 (one file per subject under {region}/subjects/); this build keeps them in {region}/datakeys.redb (key layout 3): run `domicile keys migrate --keys {keys}` once, with no other process using these keys")]
    OldKeyLayout {
        /// The region.
        region: Region,
        /// The keys root.
        keys: PathBuf,
    },
    /// The keys directory does not exist: only an explicit initialisation creates one.
    #[error("{path} is not a keys directory (it does not exist): is --keys right? `domicile init` creates a deployment's keys")]
    NoKeysDirectory {
        /// The path given.
        path: PathBuf,
    },
    /// A wholesale purge was refused: subjects registered in the store still have live data
    /// keys, and a purge deletes every record in it. Shred them first.
    #[error("cannot purge region {region}'s store: {live} subject(s) in it still have live data keys (shred them first; nothing was deleted)")]
    PurgeRefused {
        /// The region.
        region: Region,
        /// How many registered subjects still have a live data key.
        live: usize,
    },
    /// A shred was called off before any key was destroyed: the caller's announcement of its
    /// receipts ([`SealedStore::shred_subjects_announced`](crate::SealedStore::shred_subjects_announced))
    /// failed. Nothing was destroyed or deleted.
    #[error("the shred in region {region} was called off before any key was destroyed: {detail}")]
    ShredNotStarted {
        /// The region.
        region: Region,
        /// Why the announcement failed.
        detail: String,
    },
    /// The subject has no data key in this region (it was never registered or was shredded).
    #[error("subject {subject} (pseudonym) has no data key in region {region}")]
    NoDataKey {
        /// The subject, by its pseudonym in this region.
        subject: Pseudonym,
        /// The region.
        region: Region,
    },
    /// A crash-safe file operation failed (see `domicile_durable`): the operation, the file and
    /// the operating system's error.
    #[error(transparent)]
    File(#[from] domicile_durable::FileError),
    /// A worker thread panicked; what it was doing was not finished (a file it was writing is
    /// either the old one or the new one, never a mix).
    #[error(
        "a worker thread panicked while {what}; nothing it was doing can be trusted to be durable"
    )]
    WorkerPanicked {
        /// What the thread was doing.
        what: &'static str,
    },
    /// The system random number generator or a cipher failed; nothing was written.
    #[error("cryptographic operation failed: {what}")]
    Crypto {
        /// What was being done.
        what: &'static str,
    },
    /// An export bundle is malformed, or does not open under the given transfer key.
    #[error("export bundle refused: {reason}")]
    Bundle {
        /// What is wrong with it.
        reason: String,
    },
    /// A database's schema is at a version this build does not know: written by a newer build,
    /// or not written by domicile at all. Nothing was changed in it.
    #[error("the database schema {schema:?} is at version {found}, but this build knows versions 1 to {latest} only: {advice}")]
    DatabaseSchema {
        /// The database schema (namespace) the store lives in.
        schema: String,
        /// The version recorded in it.
        found: i64,
        /// The newest version this build can migrate to.
        latest: i64,
        /// What to do about it.
        advice: &'static str,
    },
    /// A database connection setting that cannot be used (a malformed URL, a schema name that is
    /// not a plain identifier, a TLS root certificate file that does not parse).
    #[error("invalid database setting {setting}: {reason}")]
    InvalidDatabaseConfig {
        /// Which setting.
        setting: &'static str,
        /// Why it was refused.
        reason: String,
    },
}

/// Why a record was refused a place: what, whose, where, and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {collection}/{key} of subject {subject} (pseudonym) refused: {class} data of a subject homed in {home} may not rest in {region} (rule {rule})")]
pub struct PlacementRefusal {
    /// The record's collection.
    pub collection: Collection,
    /// The record, by its blind index in this region.
    pub key: BlindIndex,
    /// Whose record it is, by pseudonym in this region.
    pub subject: Pseudonym,
    /// Its class.
    pub class: DataClass,
    /// The subject's home region.
    pub home: Region,
    /// This store's region.
    pub region: Region,
    /// The rule that refused it.
    pub rule: RuleId,
}

impl StoreError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        StoreError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn key_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        StoreError::KeyFile {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
