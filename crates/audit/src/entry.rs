//! Log entries: who touched what, why, under which decision, and with what outcome.
//!
//! The canonical encoding is the Merkle leaf. It is a flat, self-delimiting byte
//! string: a version byte, then the sequence number and time as big-endian u64s (at fixed
//! offsets, so the log stamps the sequence number without re-encoding), then every field in the
//! order of [`Entry`]: strings as a big-endian u32 length and UTF-8 bytes, optional values behind
//! a 0/1 byte, enums as a one-byte tag, lists as a u32 count. Decoding checks every value with
//! the same constructors the rest of domicile uses and then re-encodes, so one entry has exactly
//! one encoding. JSON (serde) is for export and for `domicile audit append`.
//!
//! Version 2 adds one kind of target, [`Target::Batch`]: a bulk access that names the subjects
//! it touched (by the commitment to their [`SubjectSet`](crate::SubjectSet)) and the records it
//! touched per class and collection. An entry is written as version 2 exactly when its target is
//! a batch, and as version 1 otherwise, so every log written before version 2 verifies and
//! re-encodes unchanged; a version-1 entry cannot hold a batch, nor a version-2 entry anything
//! else.

use serde::{Deserialize, Serialize};

use domicile_residency::{
    CountryCode, DataClass, Decision, Jurisdiction, JustificationCode, Obligation, PolicyId,
    Purpose, Region, RuleId,
};

use crate::pseudonym::{Pseudonym, ResultDigest};
use crate::subjects::{SetRoot, SubjectSetCommitment};
use crate::AuditError;

/// The newest version of the canonical encoding this crate writes (for entries whose target is
/// a [`Target::Batch`]; the others are written as version 1, see the module documentation).
pub const ENTRY_VERSION: u8 = 2;

/// The longest canonical encoding the log accepts: C2SP tlog-tiles entry bundles prefix each
/// entry with a big-endian uint16 length, so a longer entry could never be published.
pub const MAX_ENTRY_BYTES: usize = 65_535;

/// Byte offset of the sequence number in the canonical encoding.
pub(crate) const SEQ_OFFSET: usize = 1;

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    /// The principal's id (a SPIFFE-style URI for services and staff).
    pub id: String,
    /// The organisation that employs them.
    pub organisation: String,
    /// The country of the office they work from.
    pub office_country: CountryCode,
    /// The country they were physically in when they acted.
    pub location_country: CountryCode,
}

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Read one record.
    Read,
    /// Write one record.
    Write,
    /// Delete one record.
    Delete,
    /// Read many records (bulk).
    Scan,
    /// Send data out of the region.
    Export,
    /// Train a model.
    Train,
    /// Deploy a model artifact.
    Deploy,
    /// Crypto-shred a subject.
    Shred,
    /// Move data between regions during a split.
    Migrate,
    /// Read the audit log itself.
    AuditRead,
    /// Ask for time-boxed access.
    ApprovalRequest,
    /// Grant (or be refused the right to grant) an access request.
    ApprovalGrant,
    /// Refuse an access request.
    ApprovalDeny,
    /// Withdraw a granted approval.
    ApprovalRevoke,
    /// Check a region's store end to end (every record opened, nothing returned but counts and
    /// blind names).
    StoreCheck,
}

impl Action {
    /// All actions, in tag order.
    pub const ALL: [Action; 15] = [
        Action::Read,
        Action::Write,
        Action::Delete,
        Action::Scan,
        Action::Export,
        Action::Train,
        Action::Deploy,
        Action::Shred,
        Action::Migrate,
        Action::AuditRead,
        // New actions go at the end: the canonical encoding stores the index.
        Action::ApprovalRequest,
        Action::ApprovalGrant,
        Action::ApprovalDeny,
        Action::ApprovalRevoke,
        Action::StoreCheck,
    ];

    /// The wire name (`read`, `audit_read`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Delete => "delete",
            Action::Scan => "scan",
            Action::Export => "export",
            Action::Train => "train",
            Action::Deploy => "deploy",
            Action::Shred => "shred",
            Action::Migrate => "migrate",
            Action::AuditRead => "audit_read",
            Action::ApprovalRequest => "approval_request",
            Action::ApprovalGrant => "approval_grant",
            Action::ApprovalDeny => "approval_deny",
            Action::ApprovalRevoke => "approval_revoke",
            Action::StoreCheck => "store_check",
        }
    }
}

/// Which records were touched: one by key, or many by count.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// One record.
    Record {
        /// The record's key within its collection.
        key: String,
    },
    /// A bulk access, by count only (entry version 1, and a bulk call's decision before it
    /// has touched anything).
    Bulk {
        /// How many records.
        count: u64,
    },
    /// A bulk access that names what it touched (entry version 2): how many records, the
    /// subjects (a commitment to their pseudonyms, whose list is kept beside the log), and the
    /// records per class and collection.
    Batch {
        /// How many records in all.
        count: u64,
        /// The subjects whose records were touched.
        subjects: SubjectSetCommitment,
        /// The records per class and collection, in (class, collection) order.
        parts: Vec<Tally>,
    },
}

/// How many records of one class in one collection a bulk access touched.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Tally {
    /// The data class.
    pub class: DataClass,
    /// The collection.
    pub collection: String,
    /// How many records.
    pub records: u64,
}

/// What was touched.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resource {
    /// The data class.
    pub class: DataClass,
    /// The collection (`profiles`, `watch_history`).
    pub collection: String,
    /// The subject's keyed pseudonym, when the access concerns one subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Pseudonym>,
    /// The record key, or the count of a bulk access.
    pub target: Target,
}

/// The decision as logged: allowed or not, every rule that decided (residency and access rules),
/// and the obligations.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntryDecision {
    /// Whether the access was allowed.
    pub allowed: bool,
    /// The rules that produced the decision, most decisive first.
    pub rules: Vec<RuleId>,
    /// What the caller had to honour.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub obligations: Vec<Obligation>,
}

impl From<Decision> for EntryDecision {
    fn from(d: Decision) -> Self {
        EntryDecision {
            allowed: d.allowed,
            rules: vec![d.rule],
            obligations: d.obligations,
        }
    }
}

/// How the access ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// It went ahead (or, for a denial, was refused as decided).
    Ok {
        /// SHA-256 of the data returned or written, as 64 hex digits, when there was any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result_digest: Option<ResultDigest>,
    },
    /// It failed.
    Error {
        /// Why.
        reason: String,
    },
}

/// One line of the access log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// The position in the log, from 0. [`crate::AuditLog::append`] sets it.
    #[serde(default)]
    pub seq: u64,
    /// When the access happened, milliseconds since the Unix epoch (UTC).
    pub time_ms: u64,
    /// The region whose data was touched (and whose log this is).
    pub region: Region,
    /// Who acted.
    pub principal: Principal,
    /// What they did.
    pub action: Action,
    /// What they touched.
    pub resource: Resource,
    /// Why, with the justification code and a ticket or detail.
    pub purpose: Purpose,
    /// The approval this access relied on, if any, or the export licence it relied on, written
    /// `licence:REGIME/ITEM/LICENCE-ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// The decision.
    pub decision: EntryDecision,
    /// The policy in force.
    pub policy: PolicyId,
    /// The request id, to join with service logs.
    pub request_id: String,
    /// How it ended.
    pub outcome: Outcome,
}

/// Writes canonical bytes onto the end of a buffer the caller owns (and may reuse).
struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn str(&mut self, field: &'static str, s: &str) -> Result<(), AuditError> {
        let len = u32::try_from(s.len()).map_err(|_| AuditError::BadField {
            field,
            value: s.chars().take(40).collect(),
            reason: "longer than 4 GiB".into(),
        })?;
        self.u32(len);
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
    fn opt_str(&mut self, field: &'static str, s: Option<&str>) -> Result<(), AuditError> {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(field, s)?;
            }
        }
        Ok(())
    }
    fn obligation(&mut self, o: &Obligation) -> Result<(), AuditError> {
        match o {
            Obligation::Pseudonymize => self.u8(1),
            Obligation::Aggregate { min_subjects } => {
                self.u8(2);
                self.u32(*min_subjects);
            }
            Obligation::RequireApproval {
                by,
                max_duration_secs,
            } => {
                self.u8(3);
                self.str("obligation", by.as_str())?;
                self.u64(*max_duration_secs);
            }
            Obligation::ExportLicence { regime, item } => {
                self.u8(4);
                self.str("obligation", regime)?;
                self.str("obligation", item)?;
            }
            Obligation::AnyOf { options } => {
                self.u8(5);
                self.u32(options.len() as u32);
                for o in options {
                    self.obligation(o)?;
                }
            }
            other => {
                return Err(AuditError::BadField {
                    field: "obligation",
                    value: other.to_string(),
                    reason: "this obligation has no canonical encoding in entry version 1".into(),
                })
            }
        }
        Ok(())
    }
}

fn tag_of<T: PartialEq + Copy>(all: &[T], v: T) -> u8 {
    all.iter().position(|x| *x == v).unwrap_or(0) as u8
}

impl Entry {
    /// The version of the canonical encoding of this entry: 2 when its target is a
    /// [`Target::Batch`], 1 otherwise.
    pub fn version(&self) -> u8 {
        match self.resource.target {
            Target::Batch { .. } => 2,
            _ => 1,
        }
    }

    /// The canonical encoding: the bytes the Merkle leaf is the hash of.
    pub fn to_canonical(&self) -> Result<Vec<u8>, AuditError> {
        let mut out = Vec::with_capacity(384);
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Appends the canonical encoding to `out`, so that a caller encoding many entries reuses
    /// one buffer (the log's append path allocates nothing per entry). On error, `out` may hold
    /// part of the encoding after its old contents.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), AuditError> {
        let mut w = Writer(out);
        w.u8(self.version());
        w.u64(self.seq);
        w.u64(self.time_ms);
        w.str("region", self.region.as_str())?;
        w.str("principal.id", &self.principal.id)?;
        w.str("principal.organisation", &self.principal.organisation)?;
        w.str(
            "principal.office_country",
            self.principal.office_country.as_str(),
        )?;
        w.str(
            "principal.location_country",
            self.principal.location_country.as_str(),
        )?;
        w.u8(tag_of(&Action::ALL, self.action));
        w.u8(tag_of(&DataClass::ALL, self.resource.class));
        w.str("resource.collection", &self.resource.collection)?;
        match &self.resource.subject {
            None => w.u8(0),
            Some(p) => {
                w.u8(1);
                w.0.extend_from_slice(&p.0);
            }
        }
        match &self.resource.target {
            Target::Record { key } => {
                w.u8(0);
                w.str("resource.target.key", key)?;
            }
            Target::Bulk { count } => {
                w.u8(1);
                w.u64(*count);
            }
            Target::Batch {
                count,
                subjects,
                parts,
            } => {
                w.u8(2);
                w.u64(*count);
                w.u64(subjects.count);
                w.0.extend_from_slice(&subjects.root.0);
                w.u32(parts.len() as u32);
                for t in parts {
                    w.u8(tag_of(&DataClass::ALL, t.class));
                    w.str("resource.target.parts", &t.collection)?;
                    w.u64(t.records);
                }
            }
        }
        w.u8(tag_of(&JustificationCode::ALL, self.purpose.code));
        w.opt_str("purpose.ticket", self.purpose.ticket.as_deref())?;
        w.opt_str("purpose.detail", self.purpose.detail.as_deref())?;
        w.opt_str("approval", self.approval.as_deref())?;
        w.u8(u8::from(self.decision.allowed));
        w.u32(self.decision.rules.len() as u32);
        for r in &self.decision.rules {
            w.str("decision.rules", r.as_str())?;
        }
        w.u32(self.decision.obligations.len() as u32);
        for o in &self.decision.obligations {
            w.obligation(o)?;
        }
        w.str("policy.name", &self.policy.name)?;
        w.str("policy.version", &self.policy.version)?;
        w.0.extend_from_slice(&self.policy.digest.0);
        w.str("request_id", &self.request_id)?;
        match &self.outcome {
            Outcome::Ok { result_digest } => {
                w.u8(0);
                match result_digest {
                    None => w.u8(0),
                    Some(d) => {
                        w.u8(1);
                        w.0.extend_from_slice(&d.0);
                    }
                }
            }
            Outcome::Error { reason } => {
                w.u8(1);
                w.str("outcome.reason", reason)?;
            }
        }
        Ok(())
    }

    /// Decodes a canonical encoding, refusing anything that is not exactly the encoding of a
    /// valid entry.
    pub fn from_canonical(bytes: &[u8]) -> Result<Entry, AuditError> {
        let mut r = Reader { bytes, pos: 0 };
        let entry = r.entry()?;
        if r.pos != bytes.len() {
            return Err(r.bad("entry", format!("{} trailing bytes", bytes.len() - r.pos)));
        }
        // One entry, one encoding: every field has exactly one spelling (fixed-width numbers,
        // strict tag and presence bytes, exact strings, and the normalising parsers' output
        // checked against their input in `exact`), so what decodes re-encodes to these bytes.
        // A property test holds this to account.
        Ok(entry)
    }

    /// The sequence number stored in a canonical encoding, read without decoding the rest.
    pub fn seq_of_canonical(bytes: &[u8]) -> Option<u64> {
        let b = bytes.get(SEQ_OFFSET..SEQ_OFFSET + 8)?;
        Some(u64::from_be_bytes(b.try_into().ok()?))
    }
}

/// Texts already found to be in canonical form, per field (region names, country codes, rule
/// ids, jurisdictions): a verifier checking millions of entries parses each distinct one once.
/// Parsing is a pure function of the field and the text, so remembering a success is sound.
#[derive(Default)]
pub(crate) struct CanonicalTexts {
    known: Vec<(&'static str, Box<[u8]>)>,
}

/// How many distinct texts [`CanonicalTexts`] remembers; past that it parses every time.
const KNOWN_TEXTS: usize = 256;

impl CanonicalTexts {
    /// Whether `text` (raw bytes, not yet checked as UTF-8: a known text is) was seen in
    /// `field` before.
    fn knows(&self, field: &'static str, text: &[u8]) -> bool {
        self.known.iter().any(|(f, t)| **t == *text && *f == field)
    }

    fn learn(&mut self, field: &'static str, text: &str) {
        if self.known.len() < KNOWN_TEXTS {
            self.known.push((field, text.as_bytes().into()));
        }
    }
}

/// Checking an encoding without building the entry.
impl Entry {
    /// Whether `bytes` is exactly the canonical encoding of a valid entry: the same checks, in
    /// the same order and with the same errors, as [`Entry::from_canonical`], without building
    /// the entry (no allocation once `texts` knows the log's regions, countries and rules). What
    /// the verifier runs on every entry; a property test holds the two to the same answers.
    pub(crate) fn check_canonical(
        bytes: &[u8],
        texts: &mut CanonicalTexts,
    ) -> Result<(), AuditError> {
        let mut r = Reader { bytes, pos: 0 };
        r.check_entry(texts)?;
        if r.pos != bytes.len() {
            return Err(r.bad("entry", format!("{} trailing bytes", bytes.len() - r.pos)));
        }
        Ok(())
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bad(&self, field: &'static str, reason: String) -> AuditError {
        AuditError::BadEntry {
            offset: self.pos,
            field,
            reason,
        }
    }
    fn take(&mut self, field: &'static str, n: usize) -> Result<&[u8], AuditError> {
        if self.bytes.len() - self.pos < n {
            return Err(self.bad(field, "the entry ends early".into()));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, AuditError> {
        Ok(self.take(field, 1)?[0])
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, AuditError> {
        let b = self.take(field, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, AuditError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(field, 8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn h32(&mut self, field: &'static str) -> Result<[u8; 32], AuditError> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(field, 32)?);
        Ok(a)
    }
    fn str_ref(&mut self, field: &'static str) -> Result<&'a str, AuditError> {
        let n = self.u32(field)? as usize;
        if self.bytes.len() - self.pos < n {
            return Err(self.bad(field, "the entry ends early".into()));
        }
        let b: &'a [u8] = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        std::str::from_utf8(b).map_err(|_| self.bad(field, "not UTF-8".into()))
    }
    fn string(&mut self, field: &'static str) -> Result<String, AuditError> {
        self.str_ref(field).map(str::to_owned)
    }
    fn opt_string(&mut self, field: &'static str) -> Result<Option<String>, AuditError> {
        match self.u8(field)? {
            0 => Ok(None),
            1 => Ok(Some(self.string(field)?)),
            t => Err(self.bad(field, format!("presence byte {t}"))),
        }
    }
    /// Reads a string and parses it; for parsers that normalise (country codes accept
    /// lowercase) the text must already be the normal form.
    fn exact<T, E: std::fmt::Display>(
        &mut self,
        field: &'static str,
        f: impl Fn(&str) -> Result<T, E>,
        text: impl Fn(&T) -> &str,
    ) -> Result<T, AuditError> {
        let s = self.str_ref(field)?;
        let v = f(s).map_err(|e| self.bad(field, e.to_string()))?;
        if text(&v) != s {
            return Err(self.bad(field, format!("{s:?} is not in canonical form")));
        }
        Ok(v)
    }
    fn tag<T: Copy>(&mut self, field: &'static str, all: &[T]) -> Result<T, AuditError> {
        let t = self.u8(field)?;
        all.get(t as usize)
            .copied()
            .ok_or_else(|| self.bad(field, format!("unknown tag {t}")))
    }
    fn obligation(&mut self, depth: u32) -> Result<Obligation, AuditError> {
        const F: &str = "decision.obligations";
        if depth > 8 {
            return Err(self.bad(F, "obligations nested too deeply".into()));
        }
        Ok(match self.u8(F)? {
            1 => Obligation::Pseudonymize,
            2 => Obligation::Aggregate {
                min_subjects: self.u32(F)?,
            },
            3 => Obligation::RequireApproval {
                by: self.exact(F, Jurisdiction::parse, |j| j.as_str())?,
                max_duration_secs: self.u64(F)?,
            },
            4 => Obligation::ExportLicence {
                regime: self.string(F)?,
                item: self.string(F)?,
            },
            5 => {
                let n = self.u32(F)?;
                let mut options = Vec::new();
                for _ in 0..n {
                    options.push(self.obligation(depth + 1)?);
                }
                Obligation::AnyOf { options }
            }
            t => return Err(self.bad(F, format!("unknown obligation tag {t}"))),
        })
    }
    /// [`Reader::exact`] for a value that is only checked: a text `texts` already knows is not
    /// parsed again.
    fn check_exact<T, E: std::fmt::Display>(
        &mut self,
        field: &'static str,
        texts: &mut CanonicalTexts,
        f: impl Fn(&str) -> Result<T, E>,
        text: impl Fn(&T) -> &str,
    ) -> Result<(), AuditError> {
        let start = self.pos;
        let n = self.u32(field)? as usize;
        if self.bytes.len() - self.pos < n {
            return Err(self.bad(field, "the entry ends early".into()));
        }
        let b: &'a [u8] = &self.bytes[self.pos..self.pos + n];
        if texts.knows(field, b) {
            self.pos += n;
            return Ok(());
        }
        // Not seen yet: read, checked and parsed as the decoder does, then remembered.
        self.pos = start;
        self.exact(field, f, text)?;
        if let Ok(s) = std::str::from_utf8(b) {
            texts.learn(field, s);
        }
        Ok(())
    }

    fn skip_str(&mut self, field: &'static str) -> Result<(), AuditError> {
        let n = self.u32(field)? as usize;
        if self.bytes.len() - self.pos < n {
            return Err(self.bad(field, "the entry ends early".into()));
        }
        let b = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        // The texts an entry skips are nearly always ASCII, which is valid UTF-8: checked a
        // word at a time, with the full UTF-8 check only for the rest.
        if !b.is_ascii() && std::str::from_utf8(b).is_err() {
            return Err(self.bad(field, "not UTF-8".into()));
        }
        Ok(())
    }

    fn skip_opt_str(&mut self, field: &'static str) -> Result<(), AuditError> {
        match self.u8(field)? {
            0 => Ok(()),
            1 => self.skip_str(field),
            t => Err(self.bad(field, format!("presence byte {t}"))),
        }
    }

    /// [`Reader::obligation`], checking only.
    fn check_obligation(
        &mut self,
        depth: u32,
        texts: &mut CanonicalTexts,
    ) -> Result<(), AuditError> {
        const F: &str = "decision.obligations";
        if depth > 8 {
            return Err(self.bad(F, "obligations nested too deeply".into()));
        }
        match self.u8(F)? {
            1 => {}
            2 => {
                self.u32(F)?;
            }
            3 => {
                self.check_exact(F, texts, Jurisdiction::parse, |j| j.as_str())?;
                self.u64(F)?;
            }
            4 => {
                self.skip_str(F)?;
                self.skip_str(F)?;
            }
            5 => {
                let n = self.u32(F)?;
                for _ in 0..n {
                    self.check_obligation(depth + 1, texts)?;
                }
            }
            t => return Err(self.bad(F, format!("unknown obligation tag {t}"))),
        }
        Ok(())
    }

    /// [`Reader::entry`], checking only: keep the two in step (the property tests compare them).
    fn check_entry(&mut self, texts: &mut CanonicalTexts) -> Result<(), AuditError> {
        let version = self.u8("version")?;
        if !(1..=ENTRY_VERSION).contains(&version) {
            return Err(self.bad("version", format!("unknown entry version {version}")));
        }
        self.u64("seq")?;
        self.u64("time_ms")?;
        self.check_exact("region", texts, Region::parse, Region::as_str)?;
        self.skip_str("principal.id")?;
        self.skip_str("principal.organisation")?;
        self.check_exact("principal.office_country", texts, CountryCode::parse, |c| {
            c.as_str()
        })?;
        self.check_exact(
            "principal.location_country",
            texts,
            CountryCode::parse,
            |c| c.as_str(),
        )?;
        self.tag("action", &Action::ALL)?;
        self.tag("resource.class", &DataClass::ALL)?;
        self.skip_str("resource.collection")?;
        match self.u8("resource.subject")? {
            0 => {}
            1 => {
                self.h32("resource.subject")?;
            }
            t => return Err(self.bad("resource.subject", format!("presence byte {t}"))),
        }
        let batch = match self.u8("resource.target")? {
            0 => {
                self.skip_str("resource.target.key")?;
                false
            }
            1 => {
                self.u64("resource.target.count")?;
                false
            }
            2 => {
                self.u64("resource.target.count")?;
                self.u64("resource.target.subjects")?;
                self.h32("resource.target.subjects")?;
                let n = self.u32("resource.target.parts")?;
                for _ in 0..n {
                    self.tag("resource.target.parts", &DataClass::ALL)?;
                    self.skip_str("resource.target.parts")?;
                    self.u64("resource.target.parts")?;
                }
                true
            }
            t => return Err(self.bad("resource.target", format!("unknown tag {t}"))),
        };
        if (version == 2) != batch {
            return Err(self.bad(
                "resource.target",
                format!("a version-{version} entry cannot hold this kind of target"),
            ));
        }
        self.tag("purpose.code", &JustificationCode::ALL)?;
        self.skip_opt_str("purpose.ticket")?;
        self.skip_opt_str("purpose.detail")?;
        self.skip_opt_str("approval")?;
        match self.u8("decision.allowed")? {
            0 | 1 => {}
            t => return Err(self.bad("decision.allowed", format!("boolean byte {t}"))),
        }
        let n = self.u32("decision.rules")?;
        for _ in 0..n {
            self.check_exact("decision.rules", texts, RuleId::parse, RuleId::as_str)?;
        }
        let n = self.u32("decision.obligations")?;
        for _ in 0..n {
            self.check_obligation(0, texts)?;
        }
        self.skip_str("policy.name")?;
        self.skip_str("policy.version")?;
        self.h32("policy.digest")?;
        self.skip_str("request_id")?;
        match self.u8("outcome")? {
            0 => match self.u8("outcome.result_digest")? {
                0 => {}
                1 => {
                    self.h32("outcome.result_digest")?;
                }
                t => return Err(self.bad("outcome.result_digest", format!("presence byte {t}"))),
            },
            1 => self.skip_str("outcome.reason")?,
            t => return Err(self.bad("outcome", format!("unknown tag {t}"))),
        }
        Ok(())
    }

    fn entry(&mut self) -> Result<Entry, AuditError> {
        let version = self.u8("version")?;
        if !(1..=ENTRY_VERSION).contains(&version) {
            return Err(self.bad("version", format!("unknown entry version {version}")));
        }
        let seq = self.u64("seq")?;
        let time_ms = self.u64("time_ms")?;
        let region = self.exact("region", Region::parse, Region::as_str)?;
        let principal = Principal {
            id: self.string("principal.id")?,
            organisation: self.string("principal.organisation")?,
            office_country: self.exact("principal.office_country", CountryCode::parse, |c| {
                c.as_str()
            })?,
            location_country: self.exact(
                "principal.location_country",
                CountryCode::parse,
                |c| c.as_str(),
            )?,
        };
        let action = self.tag("action", &Action::ALL)?;
        let class = self.tag("resource.class", &DataClass::ALL)?;
        let collection = self.string("resource.collection")?;
        let subject = match self.u8("resource.subject")? {
            0 => None,
            1 => Some(Pseudonym(self.h32("resource.subject")?)),
            t => return Err(self.bad("resource.subject", format!("presence byte {t}"))),
        };
        let target = match self.u8("resource.target")? {
            0 => Target::Record {
                key: self.string("resource.target.key")?,
            },
            1 => Target::Bulk {
                count: self.u64("resource.target.count")?,
            },
            2 => {
                let count = self.u64("resource.target.count")?;
                let subjects = SubjectSetCommitment {
                    count: self.u64("resource.target.subjects")?,
                    root: SetRoot(self.h32("resource.target.subjects")?),
                };
                let n = self.u32("resource.target.parts")?;
                let mut parts = Vec::new();
                for _ in 0..n {
                    parts.push(Tally {
                        class: self.tag("resource.target.parts", &DataClass::ALL)?,
                        collection: self.string("resource.target.parts")?,
                        records: self.u64("resource.target.parts")?,
                    });
                }
                Target::Batch {
                    count,
                    subjects,
                    parts,
                }
            }
            t => return Err(self.bad("resource.target", format!("unknown tag {t}"))),
        };
        // A batch is version 2 and version 2 is a batch: one entry, one encoding.
        if (version == 2) != matches!(target, Target::Batch { .. }) {
            return Err(self.bad(
                "resource.target",
                format!("a version-{version} entry cannot hold this kind of target"),
            ));
        }
        let code = self.tag("purpose.code", &JustificationCode::ALL)?;
        let purpose = Purpose {
            code,
            ticket: self.opt_string("purpose.ticket")?,
            detail: self.opt_string("purpose.detail")?,
        };
        let approval = self.opt_string("approval")?;
        let allowed = match self.u8("decision.allowed")? {
            0 => false,
            1 => true,
            t => return Err(self.bad("decision.allowed", format!("boolean byte {t}"))),
        };
        let n = self.u32("decision.rules")?;
        let mut rules = Vec::new();
        for _ in 0..n {
            rules.push(self.exact("decision.rules", RuleId::parse, RuleId::as_str)?);
        }
        let n = self.u32("decision.obligations")?;
        let mut obligations = Vec::new();
        for _ in 0..n {
            obligations.push(self.obligation(0)?);
        }
        let policy = PolicyId {
            name: self.string("policy.name")?,
            version: self.string("policy.version")?,
            digest: domicile_residency::Sha256Digest(self.h32("policy.digest")?),
        };
        let request_id = self.string("request_id")?;
        let outcome = match self.u8("outcome")? {
            0 => Outcome::Ok {
                result_digest: match self.u8("outcome.result_digest")? {
                    0 => None,
                    1 => Some(ResultDigest(self.h32("outcome.result_digest")?)),
                    t => {
                        return Err(self.bad("outcome.result_digest", format!("presence byte {t}")))
                    }
                },
            },
            1 => Outcome::Error {
                reason: self.string("outcome.reason")?,
            },
            t => return Err(self.bad("outcome", format!("unknown tag {t}"))),
        };
        Ok(Entry {
            seq,
            time_ms,
            region,
            principal,
            action,
            resource: Resource {
                class,
                collection,
                subject,
                target,
            },
            purpose,
            approval,
            decision: EntryDecision {
                allowed,
                rules,
                obligations,
            },
            policy,
            request_id,
            outcome,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::AuditKey;
    use domicile_residency::SubjectId;

    /// A realistic entry for tests across the crate.
    pub(crate) fn sample(i: u64) -> Entry {
        let key = AuditKey::from_bytes([9; 32]);
        let subject = SubjectId::parse(&format!("user-{}", i % 97)).unwrap();
        Entry {
            seq: 0,
            time_ms: 1_700_000_000_000 + i,
            region: Region::parse("us").unwrap(),
            principal: Principal {
                id: "spiffe://domicile.example/us/ttusds/alice".into(),
                organisation: "ttusds".into(),
                office_country: CountryCode::parse("US").unwrap(),
                location_country: CountryCode::parse("US").unwrap(),
            },
            action: Action::Read,
            resource: Resource {
                class: DataClass::Protected,
                collection: "watch_history".into(),
                subject: Some(key.pseudonym(&subject)),
                target: Target::Record {
                    key: format!("rec-{i}"),
                },
            },
            purpose: Purpose::new(JustificationCode::UserRequestedSupport).with_ticket("SUP-1"),
            approval: None,
            decision: EntryDecision {
                allowed: true,
                rules: vec![RuleId::parse("us-split/protected-rests-in-home-region").unwrap()],
                obligations: vec![Obligation::AnyOf {
                    options: vec![
                        Obligation::Aggregate { min_subjects: 50 },
                        Obligation::Pseudonymize,
                    ],
                }],
            },
            policy: PolicyId {
                name: "us-split".into(),
                version: "1.0.0".into(),
                digest: domicile_residency::Sha256Digest([3; 32]),
            },
            request_id: format!("req-{i}"),
            outcome: Outcome::Ok {
                result_digest: Some(ResultDigest([5; 32])),
            },
        }
    }

    #[test]
    fn canonical_round_trip_and_json() {
        let e = sample(7);
        let bytes = e.to_canonical().unwrap();
        assert_eq!(bytes[0], 1);
        assert_eq!(Entry::from_canonical(&bytes).unwrap(), e);
        assert_eq!(Entry::seq_of_canonical(&bytes), Some(0));
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Entry>(&json).unwrap(), e);
        assert!(
            !json.contains("user-7"),
            "no plaintext subject id in {json}"
        );
    }

    proptest::proptest! {
        /// What decodes re-encodes to the same bytes: one entry, one encoding.
        #[test]
        fn decoding_accepts_only_the_canonical_encoding(
            i in 0u64..1000,
            at in proptest::prelude::any::<proptest::sample::Index>(),
            byte in proptest::prelude::any::<u8>(),
        ) {
            let mut e = sample(i);
            e.principal.office_country = CountryCode::parse("de").unwrap();
            e.decision.obligations.push(Obligation::RequireApproval {
                by: Jurisdiction::parse("eu").unwrap(),
                max_duration_secs: 3600,
            });
            let mut bytes = e.to_canonical().unwrap();
            let at = at.index(bytes.len());
            bytes[at] = byte;
            let decoded = Entry::from_canonical(&bytes);
            // The verifier's check gives the same answer, with the same error.
            let mut texts = CanonicalTexts::default();
            let checked = Entry::check_canonical(&bytes, &mut texts);
            proptest::prop_assert_eq!(
                checked.as_ref().err().map(ToString::to_string),
                decoded.as_ref().err().map(ToString::to_string)
            );
            // And again with every text of the unchanged entry already known.
            let mut warm = CanonicalTexts::default();
            Entry::check_canonical(&e.to_canonical().unwrap(), &mut warm).unwrap();
            proptest::prop_assert_eq!(
                Entry::check_canonical(&bytes, &mut warm).err().map(|e| e.to_string()),
                decoded.as_ref().err().map(ToString::to_string)
            );
            if let Ok(decoded) = decoded {
                proptest::prop_assert_eq!(decoded.to_canonical().unwrap(), bytes);
            }
        }
    }

    /// A bulk entry that names its subjects and what it touched per class and collection.
    pub(crate) fn sample_batch(i: u64) -> Entry {
        let key = AuditKey::from_bytes([9; 32]);
        let set: crate::SubjectSet = (0..5)
            .map(|n| key.pseudonym(&SubjectId::parse(&format!("user-{}", i + n)).unwrap()))
            .collect();
        let mut e = sample(i);
        e.action = Action::Scan;
        e.resource = Resource {
            class: DataClass::Protected,
            collection: "*".into(),
            subject: None,
            target: Target::Batch {
                count: 12,
                subjects: set.commitment(),
                parts: vec![
                    Tally {
                        class: DataClass::Protected,
                        collection: "watch_history".into(),
                        records: 9,
                    },
                    Tally {
                        class: DataClass::Public,
                        collection: "videos".into(),
                        records: 3,
                    },
                ],
            },
        };
        e
    }

    #[test]
    fn batches_are_version_2_and_round_trip() {
        let e = sample_batch(3);
        let bytes = e.to_canonical().unwrap();
        assert_eq!(bytes[0], 2);
        assert_eq!(Entry::from_canonical(&bytes).unwrap(), e);
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Entry>(&json).unwrap(), e);
        // The version byte and the kind of target must agree: a batch relabelled as version 1,
        // or a record relabelled as version 2, is refused.
        let mut relabelled = bytes.clone();
        relabelled[0] = 1;
        assert!(Entry::from_canonical(&relabelled).is_err());
        let mut v2_record = sample(3).to_canonical().unwrap();
        v2_record[0] = 2;
        let err = Entry::from_canonical(&v2_record).unwrap_err();
        assert!(err.to_string().contains("version-2"), "{err}");
        let mut v3 = bytes;
        v3[0] = 3;
        assert!(Entry::from_canonical(&v3).is_err());
    }

    proptest::proptest! {
        /// Batches too have one encoding.
        #[test]
        fn batch_decoding_accepts_only_the_canonical_encoding(
            i in 0u64..1000,
            at in proptest::prelude::any::<proptest::sample::Index>(),
            byte in proptest::prelude::any::<u8>(),
        ) {
            let mut bytes = sample_batch(i).to_canonical().unwrap();
            let at = at.index(bytes.len());
            bytes[at] = byte;
            let mut texts = CanonicalTexts::default();
            proptest::prop_assert_eq!(
                Entry::check_canonical(&bytes, &mut texts).err().map(|e| e.to_string()),
                Entry::from_canonical(&bytes).err().map(|e| e.to_string())
            );
            if let Ok(decoded) = Entry::from_canonical(&bytes) {
                proptest::prop_assert_eq!(decoded.to_canonical().unwrap(), bytes);
            }
        }
    }

    #[test]
    fn lowercase_country_codes_are_not_a_second_encoding() {
        let bytes = sample(1).to_canonical().unwrap();
        let at = bytes.windows(2).position(|w| w == b"US").unwrap();
        let mut lower = bytes.clone();
        lower[at..at + 2].copy_from_slice(b"us");
        assert!(CountryCode::parse("us").is_ok());
        let err = Entry::from_canonical(&lower).unwrap_err();
        assert!(err.to_string().contains("canonical"), "{err}");
    }

    #[test]
    fn every_truncation_and_trailing_byte_is_refused() {
        let bytes = sample(1).to_canonical().unwrap();
        let mut texts = CanonicalTexts::default();
        for n in 0..bytes.len() {
            assert!(Entry::from_canonical(&bytes[..n]).is_err(), "prefix {n}");
            assert!(
                Entry::check_canonical(&bytes[..n], &mut texts).is_err(),
                "prefix {n}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Entry::from_canonical(&longer).is_err());
        assert!(Entry::check_canonical(&longer, &mut texts).is_err());
        assert!(Entry::check_canonical(&bytes, &mut texts).is_ok());
    }
}
