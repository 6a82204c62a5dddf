//! Time-boxed access through a Gate: requesting it, granting, denying and revoking it, and
//! registering the approvers whose signatures count. Each step is decided by the access rules
//! (who may approve what, for how long) and is an audit entry before it takes effect.
//!
//! The region's log is the source of truth for where each approval stands; the approval book
//! (a file) is a cache of it that also holds the signed grants. When a Gate opens, every record
//! of the book is settled against the log ([`ApprovalBook::settle`]): a revocation or a denial in
//! the log stands whatever the book says, so restoring an old copy of the book cannot bring a
//! revoked grant back, and a grant the log does not hold was never given.

use std::collections::BTreeMap;

use domicile_audit::{Action, Entry, Outcome, Resource as AuditResource, Target};

use domicile_residency::{DataClass, SubjectId};

use super::gate_rules::{
    gate_rule, APPROVAL_FILED, APPROVAL_SCOPE, REVOKE, SELF_APPROVAL, UNVERIFIED_PRINCIPAL,
};
use super::verdict::{join, Verdict};
use super::{Gate, GateError};
use crate::approval::{
    ApprovalId, ApprovalRequest, ApprovalScope, ApprovalState, ApproverKey, Grant, LoggedStep,
};
use crate::rules::is_ticket;
use crate::rules::{AccessAction, ApprovalFacts, Resource};
use crate::{Principal, SpiffeId};

/// The most subjects one approval may name.
pub const MAX_APPROVAL_SUBJECTS: usize = 20;

/// A refusal by `gate/approval-scope-is-specific` unless the scope names 1 to
/// [`MAX_APPROVAL_SUBJECTS`] subjects, one class of personal or public data (never key material,
/// audit records or models), and a purpose with a ticket of the checked shape.
fn unspecific(scope: &ApprovalScope) -> Option<Verdict> {
    let subjects = scope.subjects.as_ref().map_or(0, |s| s.len());
    let why = if !(1..=MAX_APPROVAL_SUBJECTS).contains(&subjects) {
        Some(format!(
            "an approval names 1 to {MAX_APPROVAL_SUBJECTS} subjects, not {}",
            if subjects == 0 {
                "all".to_owned()
            } else {
                subjects.to_string()
            }
        ))
    } else if !matches!(
        scope.class,
        DataClass::Protected | DataClass::Excepted | DataClass::Public
    ) {
        Some(format!("approvals never cover {} data", scope.class))
    } else if !scope.purpose.ticket.as_deref().is_some_and(is_ticket) {
        Some("an approval's purpose carries a ticket reference (`SUP-1234`)".into())
    } else {
        None
    };
    why.map(|w| Verdict::refused_by(gate_rule(APPROVAL_SCOPE), w))
}

/// Approvals and approvers.
impl Gate {
    /// Settles every record of the approval book against this region's log (see the module
    /// documentation). Returns how many records the log corrected.
    pub(super) fn settle_approvals_from_log(&self) -> Result<usize, GateError> {
        let records = self.approvals.list();
        if records.is_empty() {
            return Ok(0);
        }
        // Each approval's answers in log order, keyed by request id so that an answer whose
        // effect then failed (an error entry under the same request id) is dropped.
        let mut steps: BTreeMap<String, (u64, ApprovalId, LoggedStep, SpiffeId, u64)> =
            BTreeMap::new();
        domicile_audit::for_each_entry(self.log.dir(), &mut |_, _| {}, |seq, bytes, _| {
            let e = Entry::from_canonical(bytes)?;
            if matches!(e.outcome, Outcome::Error { .. }) {
                steps.remove(&e.request_id);
                return Ok(());
            }
            let step = match e.action {
                Action::ApprovalGrant => LoggedStep::Granted,
                Action::ApprovalDeny => LoggedStep::Denied,
                Action::ApprovalRevoke => LoggedStep::Revoked,
                _ => return Ok(()),
            };
            let id = e
                .approval
                .as_deref()
                .and_then(|a| ApprovalId::parse(a).ok());
            let by = SpiffeId::parse(&e.principal.id).ok();
            if let (true, Some(id), Some(by)) = (e.decision.allowed, id, by) {
                steps.insert(e.request_id, (seq, id, step, by, e.time_ms / 1000));
            }
            Ok(())
        })
        .map_err(GateError::AuditUnavailable)?;
        let mut ordered: Vec<_> = steps.into_values().collect();
        ordered.sort_by_key(|(seq, ..)| *seq);
        let mut last: BTreeMap<ApprovalId, (LoggedStep, SpiffeId, u64)> = BTreeMap::new();
        for (_, id, step, by, at) in ordered {
            last.insert(id, (step, by, at));
        }
        let mut corrected = 0;
        for record in records {
            let id = &record.request.id;
            if self.approvals.settle(id, last.remove(id))? {
                corrected += 1;
            }
        }
        Ok(corrected)
    }

    /// Registers an approver's public key (base64 Ed25519): grants signed by any other key for
    /// this approver are rejected.
    pub fn register_approver(&self, approver: SpiffeId, public_key_base64: String) {
        self.approvers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(approver, public_key_base64);
    }

    /// An approval step as the log names it: the request's class, the subject's pseudonym when it
    /// covers exactly one, and `approval:<id>`.
    fn approval_resource(&self, request: &ApprovalRequest) -> AuditResource {
        let single = request
            .scope
            .subjects
            .as_ref()
            .filter(|s| s.len() == 1)
            .and_then(|s| s.iter().next());
        let pseudonym = |s: &SubjectId| {
            s.as_str()
                .strip_prefix(ApprovalScope::SUBJECT_PSEUDONYM_PREFIX)
                .and_then(|hex| hex.parse().ok())
                .unwrap_or_else(|| self.audit_key.pseudonym(s))
        };
        AuditResource {
            class: request.scope.class,
            collection: "approvals".into(),
            subject: single.map(pseudonym),
            target: Target::Record {
                key: format!("approval:{}", request.id),
            },
        }
    }

    /// Files a request for time-boxed access. It waits at most `pending_ttl_secs` for an answer.
    pub fn request_approval(
        &self,
        who: &Principal,
        scope: ApprovalScope,
        duration_secs: u64,
        pending_ttl_secs: u64,
    ) -> Result<ApprovalRequest, GateError> {
        self.policy.check_region(&scope.region)?;
        let purpose = scope.purpose.clone();
        if let Some(refused) = self.unverified(who).or_else(|| unspecific(&scope)) {
            let call = self.call(who, &purpose, None, Action::ApprovalRequest);
            let resource = AuditResource {
                class: scope.class,
                collection: "approvals".into(),
                subject: None,
                target: Target::Record {
                    key: "approval:refused".into(),
                },
            };
            return call.proceed("file a request", resource, &refused, None, || {
                Ok::<_, GateError>(ApprovalRequest {
                    id: crate::ApprovalId::random()?,
                    requester: who.id.clone(),
                    scope,
                    duration_secs,
                    requested_at: 0,
                    answer_by: 0,
                })
            });
        }
        // The book on disk names subjects by pseudonym only (what an access is checked against
        // is pseudonymised the same way, in `approval_facts`).
        let scope = ApprovalScope {
            subjects: scope
                .subjects
                .map(|ids| ids.iter().map(|id| self.scope_subject(id)).collect()),
            ..scope
        };
        let request = self.approvals.file(
            who.id.clone(),
            scope,
            duration_secs,
            self.clock.unix_secs(),
            pending_ttl_secs,
        )?;
        let call = self.call(who, &purpose, Some(&request.id), Action::ApprovalRequest);
        let verdict = self
            .unverified(who)
            .unwrap_or_else(|| Verdict::allowed_by(gate_rule(APPROVAL_FILED)));
        call.proceed(
            "file a request",
            self.approval_resource(&request),
            &verdict,
            None,
            || Ok::<_, GateError>(()),
        )?;
        Ok(request)
    }

    /// Whether the access rules let `approver` answer `request`: approve its scope for its
    /// duration, and not as its own requester.
    fn decide_approval(
        &self,
        approver: &Principal,
        request: &ApprovalRequest,
    ) -> Result<Verdict, GateError> {
        let scope = &request.scope;
        let resource = self.records_for(scope);
        let facts = ApprovalFacts {
            approver_org_country: approver.organisation.country,
            duration_secs: request.duration_secs,
        };
        let mut verdict = self.decide_access(
            approver,
            AccessAction::Approve,
            resource,
            &scope.purpose,
            Some(facts),
        )?;
        let requester_person = self
            .directory
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .principal(&request.requester)
            .map(Principal::person_key);
        let approver_person = approver.person_key();
        if verdict.allowed
            && (approver.id == request.requester
                || requester_person.as_deref() == Some(approver_person.as_str()))
        {
            verdict = Verdict::refused_by(
                gate_rule(SELF_APPROVAL),
                "a person cannot answer their own request, under any of their ids",
            );
        } else if !verdict.allowed
            && verdict
                .rules
                .iter()
                .all(|r| r.as_str() != UNVERIFIED_PRINCIPAL)
        {
            verdict.reason = format!(
                "the access rules do not let {} approve it ({})",
                approver.id,
                join(&verdict.rules)
            );
        }
        Ok(verdict)
    }

    /// The records an approval's scope reaches, as the access rules see them: its class in its
    /// region, of subjects homed there.
    fn records_for(&self, scope: &ApprovalScope) -> Resource {
        Resource::Records {
            class: scope.class,
            region: scope.region.clone(),
            subject_home: Some(scope.region.clone()),
            collection: "*".into(),
        }
    }

    /// Grants a pending request, signed with `key`, if the access rules allow `approver` to
    /// approve its scope for its duration. A refusal is logged and returned as `Denied`.
    pub fn approve(
        &self,
        approver: &Principal,
        key: &ApproverKey,
        id: &ApprovalId,
    ) -> Result<Grant, GateError> {
        let record = self.approvals.get(id)?;
        let purpose = record.request.scope.purpose.clone();
        let call = self.call(approver, &purpose, Some(id), Action::ApprovalGrant);
        let verdict = self.decide_approval(approver, &record.request)?;
        let resource = self.approval_resource(&record.request);
        // Logged before it exists: a grant that is not in the log must not exist.
        call.proceed("approve", resource, &verdict, None, || {
            let (by, country) = (approver.id.clone(), approver.organisation.country);
            self.approvals
                .grant(id, by, country, key, self.clock.unix_secs())
        })
    }

    /// Refuses a pending request.
    pub fn deny_approval(&self, approver: &Principal, id: &ApprovalId) -> Result<(), GateError> {
        let record = self.approvals.get(id)?;
        let purpose = record.request.scope.purpose.clone();
        let call = self.call(approver, &purpose, Some(id), Action::ApprovalDeny);
        let verdict = self.decide_approval(approver, &record.request)?;
        let resource = self.approval_resource(&record.request);
        call.proceed("deny an approval", resource, &verdict, None, || {
            self.approvals
                .deny(id, approver.id.clone(), self.clock.unix_secs())
        })
    }

    /// Withdraws a grant: only the approver who gave it, or the security team of this region
    /// (a verified principal holding the `security` role in this region), may
    /// (`gate/revoke-by-approver-or-security`).
    pub fn revoke_approval(&self, who: &Principal, id: &ApprovalId) -> Result<(), GateError> {
        let record = self.approvals.get(id)?;
        let purpose = record.request.scope.purpose.clone();
        let call = self.call(who, &purpose, Some(id), Action::ApprovalRevoke);
        let granted_by = match &record.state {
            ApprovalState::Granted { grant } => Some(&grant.approver),
            _ => None,
        };
        let verdict = match self.unverified(who) {
            Some(refused) => refused,
            None if granted_by == Some(&who.id)
                || (who.has_role("security") && who.id.region() == &self.region) =>
            {
                Verdict::allowed_by(gate_rule(REVOKE))
            }
            None => Verdict::refused_by(
                gate_rule(REVOKE),
                "only the approver who gave the grant or the region's security team withdraws it",
            ),
        };
        let resource = self.approval_resource(&record.request);
        call.proceed("revoke an approval", resource, &verdict, None, || {
            self.approvals
                .revoke(id, who.id.clone(), self.clock.unix_secs())
        })
    }
}

/// Subjects in approval scopes.
impl Gate {
    /// A subject as an approval scope names it on disk: by its audit pseudonym.
    pub(super) fn scope_subject(&self, id: &SubjectId) -> SubjectId {
        if id
            .as_str()
            .starts_with(ApprovalScope::SUBJECT_PSEUDONYM_PREFIX)
        {
            return id.clone();
        }
        SubjectId::parse(&format!(
            "{}{}",
            ApprovalScope::SUBJECT_PSEUDONYM_PREFIX,
            self.pseudonym(id)
        ))
        .expect("a prefix and 64 hex digits make a valid subject id")
    }
}
