//! Approvals: a principal asks for time-boxed access, an approver whom the rules allow grants it
//! with an Ed25519 signature, and the grant can be revoked; a request nobody answers expires.
//!
//! After Azure Customer Lockbox and Google Access Approval: staff who may not reach data on their
//! own reach it only with a named approver's signed, expiring consent.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use domicile_residency::{CountryCode, DataClass, Purpose, Region, SubjectId};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use crate::rules::ApprovalFacts;
use crate::{AccessError, SpiffeId};

/// How long a request may wait for an answer before it expires on its own: one day.
pub const DEFAULT_PENDING_TTL_SECS: u64 = 24 * 60 * 60;

/// The id of an approval request: 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ApprovalId(String);

impl ApprovalId {
    /// A fresh random id.
    pub fn random() -> Result<Self, AccessError> {
        let mut bytes = [0u8; 16];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| AccessError::Random {
                making: "making an approval id",
            })?;
        Ok(ApprovalId(
            bytes.iter().map(|b| format!("{b:02x}")).collect(),
        ))
    }

    /// Parses an id.
    pub fn parse(value: &str) -> Result<Self, AccessError> {
        if value.len() == 32
            && value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(ApprovalId(value.to_owned()))
        } else {
            Err(AccessError::UnknownApproval {
                id: value.to_owned(),
            })
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ApprovalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ApprovalId {
    type Error = AccessError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        ApprovalId::parse(&value)
    }
}

impl From<ApprovalId> for String {
    fn from(id: ApprovalId) -> String {
        id.0
    }
}

/// What an approval covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalScope {
    /// The data class.
    pub class: DataClass,
    /// The region whose data is reached.
    pub region: Region,
    /// The subjects covered; `None` covers every subject of the region. A Gate files them by
    /// pseudonym ([`ApprovalScope::SUBJECT_PSEUDONYM_PREFIX`] and the subject's 64-hex-digit
    /// audit pseudonym), so that the approval book on disk names nobody in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects: Option<BTreeSet<SubjectId>>,
    /// Why; the access must state the same justification code and the same ticket.
    pub purpose: Purpose,
}

impl ApprovalScope {
    /// How a Gate writes a scope's subject: this prefix, then the subject's audit pseudonym.
    pub const SUBJECT_PSEUDONYM_PREFIX: &'static str = "pseudonym:";

    /// Whether an access of `class` in `region` to `subject` for `purpose` falls inside the scope:
    /// the same class, region and justification code, a subject the scope names, and the very
    /// ticket the approval was given for (an approval under `LEG-1` does not cover work under
    /// `SUP-9`).
    pub fn covers(
        &self,
        class: DataClass,
        region: &Region,
        subject: Option<&SubjectId>,
        purpose: &Purpose,
    ) -> bool {
        let subject_ok = match (&self.subjects, subject) {
            (None, _) => true,
            (Some(set), Some(s)) => set.contains(s),
            (Some(_), None) => false,
        };
        self.class == class
            && &self.region == region
            && subject_ok
            && self.purpose.code == purpose.code
            && self.purpose.ticket.is_some()
            && self.purpose.ticket == purpose.ticket
    }
}

/// A principal's request for access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// The request's id.
    pub id: ApprovalId,
    /// Who asks.
    pub requester: SpiffeId,
    /// For what.
    pub scope: ApprovalScope,
    /// For how long, once granted, in seconds.
    pub duration_secs: u64,
    /// When it was asked, in Unix seconds.
    pub requested_at: u64,
    /// When it expires if nobody answers, in Unix seconds.
    pub answer_by: u64,
}

/// An approver's signed consent to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Who approved.
    pub approver: SpiffeId,
    /// The country of the approver's employing organisation.
    pub approver_org_country: CountryCode,
    /// When, in Unix seconds.
    pub granted_at: u64,
    /// Until when, in Unix seconds (exclusive): `granted_at + duration_secs`.
    pub expires_at: u64,
    /// The approver's Ed25519 public key, base64.
    pub public_key: String,
    /// The signature over [`Grant::signed_message`], base64.
    pub signature: String,
}

impl Grant {
    /// The exact bytes an approver signs: a domain separator, then the JSON of the request and
    /// of the grant's fields other than the signature. Field order is fixed by the types.
    pub fn signed_message(request: &ApprovalRequest, grant_fields: &GrantFields) -> Vec<u8> {
        let mut msg = b"domicile approval v1\n".to_vec();
        msg.extend(serde_json::to_vec(request).expect("approval requests serialise"));
        msg.push(b'\n');
        msg.extend(serde_json::to_vec(grant_fields).expect("grant fields serialise"));
        msg
    }

    fn fields(&self) -> GrantFields {
        GrantFields {
            approver: self.approver.clone(),
            approver_org_country: self.approver_org_country,
            granted_at: self.granted_at,
            expires_at: self.expires_at,
            public_key: self.public_key.clone(),
        }
    }
}

/// The signed fields of a [`Grant`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantFields {
    /// Who approved.
    pub approver: SpiffeId,
    /// The approver's organisation's country.
    pub approver_org_country: CountryCode,
    /// When.
    pub granted_at: u64,
    /// Until when.
    pub expires_at: u64,
    /// The approver's public key, base64.
    pub public_key: String,
}

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ApprovalState {
    /// Waiting for an approver.
    Pending,
    /// Approved.
    Granted {
        /// The signed grant.
        grant: Grant,
    },
    /// Refused by an approver.
    Denied {
        /// Who refused.
        by: SpiffeId,
        /// When.
        at: u64,
    },
    /// Granted, then withdrawn.
    Revoked {
        /// The grant that was withdrawn.
        grant: Grant,
        /// Who withdrew it.
        by: SpiffeId,
        /// When.
        at: u64,
    },
}

/// An answer to a request as the audit log records it: the steps that decide whether an
/// approval may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoggedStep {
    /// Granted.
    Granted,
    /// Refused.
    Denied,
    /// Withdrawn after it was granted.
    Revoked,
}

/// A request and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// The request.
    pub request: ApprovalRequest,
    /// Its state.
    #[serde(flatten)]
    pub state: ApprovalState,
}

/// An Ed25519 signing key: an approver's, or the operator's that signs the principal directory.
pub struct ApproverKey {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl fmt::Debug for ApproverKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApproverKey({})", self.public_key_base64())
    }
}

impl ApproverKey {
    /// A fresh key from the system's random source.
    pub fn generate() -> Result<Self, AccessError> {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| AccessError::Random {
            making: "generating an approver key",
        })?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    /// A key from its PKCS#8 document.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, AccessError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|e| AccessError::InvalidKey(format!("not an Ed25519 PKCS#8 key: {e}")))?;
        Ok(ApproverKey {
            pair,
            pkcs8: pkcs8.to_vec(),
        })
    }

    /// The PKCS#8 document, to store (0600) and load again.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key, base64: what the directory registers for the approver.
    pub fn public_key_base64(&self) -> String {
        B64.encode(self.pair.public_key().as_ref())
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> String {
        B64.encode(self.pair.sign(msg).as_ref())
    }
}

/// The approval requests of a region and where each stands, kept in a JSON file replaced
/// atomically and durably (mode 0600) on every change, or only in memory.
#[derive(Debug)]
pub struct ApprovalBook {
    path: Option<PathBuf>,
    records: Mutex<BTreeMap<ApprovalId, ApprovalRecord>>,
}

impl ApprovalBook {
    /// A book kept only in memory.
    pub fn in_memory() -> Self {
        ApprovalBook {
            path: None,
            records: Mutex::new(BTreeMap::new()),
        }
    }

    /// Opens (or creates) the book at `path`. A file that does not parse is an error naming it;
    /// nothing is overwritten.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, AccessError> {
        let path = path.as_ref().to_path_buf();
        let bytes = domicile_durable::read_optional(&path).map_err(|source| {
            AccessError::ApprovalBookIo {
                op: "read",
                path: path.clone(),
                source,
            }
        })?;
        let records = match bytes {
            None => BTreeMap::new(),
            Some(bytes) => serde_json::from_slice::<Vec<ApprovalRecord>>(&bytes)
                .map_err(|source| AccessError::ApprovalBookCorrupt {
                    path: path.clone(),
                    source,
                })?
                .into_iter()
                .map(|r| (r.request.id.clone(), r))
                .collect(),
        };
        Ok(ApprovalBook {
            path: Some(path),
            records: Mutex::new(records),
        })
    }

    /// Writes the whole book through [`domicile_durable::write_private`]: atomically, durably
    /// (file and directory synced) and with mode 0600, since a book names who may reach whose
    /// data.
    fn save(&self, records: &BTreeMap<ApprovalId, ApprovalRecord>) -> Result<(), AccessError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let list: Vec<&ApprovalRecord> = records.values().collect();
        let bytes = serde_json::to_vec_pretty(&list).expect("approval records serialise to JSON");
        domicile_durable::write_private(path, &bytes).map_err(|source| {
            AccessError::ApprovalBookIo {
                op: "write",
                path: path.clone(),
                source,
            }
        })
    }

    fn update<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<ApprovalId, ApprovalRecord>) -> Result<T, AccessError>,
    ) -> Result<T, AccessError> {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = records.clone();
        let out = f(&mut next)?;
        self.save(&next)?;
        *records = next;
        Ok(out)
    }

    /// Files a new request; it waits at most `pending_ttl_secs` for an answer.
    pub fn file(
        &self,
        requester: SpiffeId,
        scope: ApprovalScope,
        duration_secs: u64,
        now: u64,
        pending_ttl_secs: u64,
    ) -> Result<ApprovalRequest, AccessError> {
        let request = ApprovalRequest {
            id: ApprovalId::random()?,
            requester,
            scope,
            duration_secs,
            requested_at: now,
            answer_by: now.saturating_add(pending_ttl_secs),
        };
        self.update(|records| {
            records.insert(
                request.id.clone(),
                ApprovalRecord {
                    request: request.clone(),
                    state: ApprovalState::Pending,
                },
            );
            Ok(request.clone())
        })
    }

    /// The record of a request.
    pub fn get(&self, id: &ApprovalId) -> Result<ApprovalRecord, AccessError> {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        records
            .get(id)
            .cloned()
            .ok_or_else(|| AccessError::UnknownApproval { id: id.to_string() })
    }

    /// Every record, oldest id first.
    pub fn list(&self) -> Vec<ApprovalRecord> {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        records.values().cloned().collect()
    }

    fn pending(record: &ApprovalRecord, now: u64) -> Result<(), AccessError> {
        let id = record.request.id.to_string();
        match &record.state {
            ApprovalState::Pending if now >= record.request.answer_by => {
                Err(AccessError::InvalidApproval {
                    id,
                    reason: "the request expired before anyone answered it".into(),
                })
            }
            ApprovalState::Pending => Ok(()),
            other => Err(AccessError::InvalidApproval {
                id,
                reason: format!("the request was already answered ({})", state_name(other)),
            }),
        }
    }

    /// Grants a pending request, signing it with the approver's key. The caller has checked that
    /// the access rules allow this approver to approve this scope.
    pub fn grant(
        &self,
        id: &ApprovalId,
        approver: SpiffeId,
        approver_org_country: CountryCode,
        key: &ApproverKey,
        now: u64,
    ) -> Result<Grant, AccessError> {
        self.update(|records| {
            let record = records
                .get_mut(id)
                .ok_or_else(|| AccessError::UnknownApproval { id: id.to_string() })?;
            Self::pending(record, now)?;
            let fields = GrantFields {
                approver,
                approver_org_country,
                granted_at: now,
                expires_at: now.saturating_add(record.request.duration_secs),
                public_key: key.public_key_base64(),
            };
            let signature = key.sign(&Grant::signed_message(&record.request, &fields));
            let grant = Grant {
                approver: fields.approver,
                approver_org_country: fields.approver_org_country,
                granted_at: fields.granted_at,
                expires_at: fields.expires_at,
                public_key: fields.public_key,
                signature,
            };
            record.state = ApprovalState::Granted {
                grant: grant.clone(),
            };
            Ok(grant)
        })
    }

    /// Refuses a pending request.
    pub fn deny(&self, id: &ApprovalId, by: SpiffeId, now: u64) -> Result<(), AccessError> {
        self.update(|records| {
            let record = records
                .get_mut(id)
                .ok_or_else(|| AccessError::UnknownApproval { id: id.to_string() })?;
            Self::pending(record, now)?;
            record.state = ApprovalState::Denied { by, at: now };
            Ok(())
        })
    }

    /// Brings a record into line with its history in the region's audit log, the source of
    /// truth (see `Gate::new`): `logged` is the last approval step the log holds for it, with who
    /// took it and when. A revocation or denial in the log is final whatever the book says (a
    /// book restored from an old copy cannot undo it); a grant the book holds but the log does
    /// not was never given (`None`: the log holds no answer), so the record is pending again.
    /// Returns whether the record changed.
    pub fn settle(
        &self,
        id: &ApprovalId,
        logged: Option<(LoggedStep, SpiffeId, u64)>,
    ) -> Result<bool, AccessError> {
        // Settling changes few records, if any: the book is written only when one does.
        let Ok(record) = self.get(id) else {
            return Ok(false);
        };
        if settled(logged.clone(), &record.state).is_none() {
            return Ok(false);
        }
        self.update(|records| {
            let Some(record) = records.get_mut(id) else {
                return Ok(false);
            };
            Ok(match settled(logged, &record.state) {
                Some(state) => {
                    record.state = state;
                    true
                }
                None => false,
            })
        })
    }

    /// Withdraws a grant.
    pub fn revoke(&self, id: &ApprovalId, by: SpiffeId, now: u64) -> Result<(), AccessError> {
        self.update(|records| {
            let record = records
                .get_mut(id)
                .ok_or_else(|| AccessError::UnknownApproval { id: id.to_string() })?;
            let ApprovalState::Granted { grant } = &record.state else {
                return Err(AccessError::InvalidApproval {
                    id: id.to_string(),
                    reason: format!(
                        "only a granted approval can be revoked; it is {}",
                        state_name(&record.state)
                    ),
                });
            };
            record.state = ApprovalState::Revoked {
                grant: grant.clone(),
                by,
                at: now,
            };
            Ok(())
        })
    }

    /// Checks that approval `id` lets `requester` make this access at `now`: it exists, was
    /// granted and not revoked, has not expired, covers the access, was asked by `requester`,
    /// and carries a valid signature by the key `trusted_key` returns for the approver.
    #[allow(clippy::too_many_arguments)]
    pub fn check(
        &self,
        id: &ApprovalId,
        requester: &SpiffeId,
        class: DataClass,
        region: &Region,
        subject: Option<&SubjectId>,
        purpose: &Purpose,
        now: u64,
        trusted_key: &dyn Fn(&SpiffeId) -> Option<String>,
    ) -> Result<ApprovalFacts, AccessError> {
        let record = self.get(id)?;
        let invalid = |reason: String| AccessError::InvalidApproval {
            id: id.to_string(),
            reason,
        };
        let grant = match &record.state {
            ApprovalState::Granted { grant } => grant,
            ApprovalState::Pending if now >= record.request.answer_by => {
                return Err(invalid(
                    "the request expired before anyone answered it".into(),
                ))
            }
            other => return Err(invalid(format!("it is {}", state_name(other)))),
        };
        if &record.request.requester != requester {
            return Err(invalid(format!(
                "it was granted to {}, not {requester}",
                record.request.requester
            )));
        }
        if now >= grant.expires_at {
            // Auditor-facing text: times in RFC 3339 UTC, never raw Unix seconds.
            let at = |secs: u64| domicile_audit::query::rfc3339(secs.saturating_mul(1000));
            return Err(invalid(format!(
                "it expired at {} (now {})",
                at(grant.expires_at),
                at(now)
            )));
        }
        if !record.request.scope.covers(class, region, subject, purpose) {
            return Err(invalid("the access falls outside its scope".into()));
        }
        match trusted_key(&grant.approver) {
            Some(key) if key == grant.public_key => {}
            Some(_) => {
                return Err(invalid(format!(
                    "it is signed with a key not registered for {}",
                    grant.approver
                )))
            }
            None => {
                return Err(invalid(format!(
                    "{} is not a registered approver",
                    grant.approver
                )))
            }
        }
        let public = B64
            .decode(&grant.public_key)
            .map_err(|e| invalid(format!("the public key is not base64: {e}")))?;
        let signature = B64
            .decode(&grant.signature)
            .map_err(|e| invalid(format!("the signature is not base64: {e}")))?;
        UnparsedPublicKey::new(&ED25519, &public)
            .verify(
                &Grant::signed_message(&record.request, &grant.fields()),
                &signature,
            )
            .map_err(|_| invalid("the signature does not verify".into()))?;
        Ok(ApprovalFacts {
            approver_org_country: grant.approver_org_country,
            duration_secs: record.request.duration_secs,
        })
    }
}

/// Where a record whose book state is `state` stands once the log's last answer `logged` is
/// applied; `None` when the book already agrees.
fn settled(
    logged: Option<(LoggedStep, SpiffeId, u64)>,
    state: &ApprovalState,
) -> Option<ApprovalState> {
    match (logged, state) {
        (Some((LoggedStep::Revoked, by, at)), ApprovalState::Granted { grant }) => {
            Some(ApprovalState::Revoked {
                grant: grant.clone(),
                by,
                at,
            })
        }
        (Some((LoggedStep::Revoked, by, at)), ApprovalState::Pending)
        | (Some((LoggedStep::Denied, by, at)), ApprovalState::Pending)
        | (Some((LoggedStep::Denied, by, at)), ApprovalState::Granted { .. }) => {
            Some(ApprovalState::Denied { by, at })
        }
        (None, ApprovalState::Granted { .. }) => Some(ApprovalState::Pending),
        _ => None,
    }
}

fn state_name(state: &ApprovalState) -> &'static str {
    match state {
        ApprovalState::Pending => "pending",
        ApprovalState::Granted { .. } => "granted",
        ApprovalState::Denied { .. } => "denied",
        ApprovalState::Revoked { .. } => "revoked",
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use domicile_residency::JustificationCode;

    use super::*;

    fn scope() -> ApprovalScope {
        ApprovalScope {
            class: DataClass::Protected,
            region: Region::parse("us").unwrap(),
            subjects: None,
            purpose: Purpose::new(JustificationCode::ProductionIncident),
        }
    }

    fn requester() -> SpiffeId {
        "spiffe://d/us/usds/alice".parse().unwrap()
    }

    #[test]
    fn the_log_decides_where_a_record_stands() {
        let book = ApprovalBook::in_memory();
        let request = book.file(requester(), scope(), 60, 100, 3600).unwrap();
        let key = ApproverKey::generate().unwrap();
        let carol: SpiffeId = "spiffe://d/us/usds/carol".parse().unwrap();
        let country = CountryCode::parse("US").unwrap();
        let id = &request.id;
        // The book agrees with a log that holds no answer yet: nothing changes.
        assert!(!book.settle(id, None).unwrap());
        book.grant(id, carol.clone(), country, &key, 110).unwrap();
        // A grant the log does not hold was never given.
        assert!(book.settle(id, None).unwrap());
        assert_eq!(book.get(id).unwrap().state, ApprovalState::Pending);
        book.grant(id, carol.clone(), country, &key, 120).unwrap();
        assert!(!book
            .settle(id, Some((LoggedStep::Granted, carol.clone(), 120)))
            .unwrap());
        // A revocation in the log stands over a granted book.
        assert!(book
            .settle(id, Some((LoggedStep::Revoked, carol.clone(), 130)))
            .unwrap());
        assert!(matches!(
            book.get(id).unwrap().state,
            ApprovalState::Revoked { at: 130, .. }
        ));
        assert!(!book
            .settle(id, Some((LoggedStep::Revoked, carol, 130)))
            .unwrap());
    }

    #[test]
    fn a_scope_covers_only_work_under_its_own_ticket() {
        let code = JustificationCode::ProductionIncident;
        let ticketed = ApprovalScope {
            purpose: Purpose::new(code).with_ticket("INC-7"),
            ..scope()
        };
        let us = Region::parse("us").unwrap();
        let covers = |p: &Purpose| ticketed.covers(DataClass::Protected, &us, None, p);
        assert!(covers(&Purpose::new(code).with_ticket("INC-7")));
        assert!(!covers(&Purpose::new(code).with_ticket("INC-8")));
        assert!(!covers(&Purpose::new(code)));
        // A scope given without a ticket covers nothing.
        let bare = scope();
        assert!(!bare.covers(DataClass::Protected, &us, None, &Purpose::new(code)));
    }

    #[test]
    fn a_saved_book_is_private_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("approvals/us.json");
        let book = ApprovalBook::open(&path).unwrap();
        let request = book.file(requester(), scope(), 3600, 1_000, 60).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the approval book names who may reach whose data"
        );
        let again = ApprovalBook::open(&path).unwrap();
        assert_eq!(again.get(&request.id).unwrap().request, request);
    }

    #[test]
    fn an_unparsable_book_is_its_own_error_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("approvals.json");
        std::fs::write(&path, b"not json").unwrap();
        let err = ApprovalBook::open(&path).unwrap_err();
        assert!(
            matches!(err, AccessError::ApprovalBookCorrupt { .. }),
            "{err:?}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"not json");
    }

    #[test]
    fn a_book_that_cannot_be_written_is_an_io_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: the rename onto it fails.
        let path = dir.path().join("approvals.json");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("keep"), b"x").unwrap();
        let book = ApprovalBook {
            path: Some(path.clone()),
            records: Mutex::new(BTreeMap::new()),
        };
        let err = book
            .file(requester(), scope(), 3600, 1_000, 60)
            .unwrap_err();
        let AccessError::ApprovalBookIo {
            op, path: named, ..
        } = &err
        else {
            panic!("expected an I/O error, got {err:?}");
        };
        assert_eq!((*op, named), ("write", &path));
        assert!(err.to_string().contains("approval book"), "{err}");
    }
}
