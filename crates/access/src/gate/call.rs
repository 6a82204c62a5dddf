//! The decide–log–act shapes every Gate call takes (DESIGN.md, "Data flow"; invariant 2).
//!
//! A [`Call`] is one Gate call as the log sees it. Its two shapes are the only places that order
//! the log against the store:
//!
//! - [`Call::proceed`], for calls that act (write, delete, register, export, shred, migrate, the
//!   approval steps): a refusal is logged and returned; otherwise the decision is durable in the
//!   log first, then the call acts, and a failure to act is logged under the same request id.
//! - [`Call::release`], for calls that read (read, scan, aggregate, inventory, subject lists,
//!   migration reads, opening the log): a refusal is logged and returned; otherwise the call
//!   gathers what it will return, the entry naming exactly that (its count and digest) is durable
//!   in the log, and only then is it returned. A failure to gather is logged too.

use std::sync::atomic::Ordering;

use domicile_audit::{
    Action, Entry, Outcome, Principal as AuditPrincipal, Receipt, Resource as AuditResource,
    ResultDigest,
};
use domicile_residency::{ExportLicence, Purpose};

use super::verdict::Verdict;
use super::{Gate, GateError};
use crate::approval::ApprovalId;
use crate::{Clock, Principal};

/// How an entry's `approval` field names an export licence the call relied on.
pub const LICENCE_PREFIX: &str = "licence:";

/// One Gate call as the log sees it: who, why, on which approval, under which request id, and
/// the action every entry of the call records.
pub(super) struct Call<'a> {
    gate: &'a Gate,
    who: &'a Principal,
    purpose: &'a Purpose,
    approval: Option<&'a ApprovalId>,
    licence: Option<&'a ExportLicence>,
    action: Action,
    request_id: String,
}

/// What a read-shaped call gathered: what it will return, the resource its entry names (with the
/// count of what it gathered), and how the entry ends (with the digest of what it returns).
pub(super) struct Gathered<T> {
    value: T,
    resource: AuditResource,
    outcome: Outcome,
}

/// The two ways a read-shaped call's gathering ends without failing.
impl<T> Gathered<T> {
    /// Found: `value` is released, and its entry carries `digest`.
    pub(super) fn released(
        value: T,
        resource: AuditResource,
        digest: Option<ResultDigest>,
    ) -> Self {
        Gathered {
            value,
            resource,
            outcome: Outcome::Ok {
                result_digest: digest,
            },
        }
    }

    /// Nothing matched: the entry records the call as an error for `reason`, and the caller turns
    /// `value` (which holds nothing) and the entry's receipt into its own error.
    pub(super) fn missing(value: T, resource: AuditResource, reason: &str) -> Self {
        Gathered {
            value,
            resource,
            outcome: Outcome::Error {
                reason: reason.to_owned(),
            },
        }
    }
}

/// How a Gate opens a call.
impl Gate {
    /// A call by `who` for `purpose`, on `approval`, logged as `action` under a fresh request id.
    pub(super) fn call<'a>(
        &'a self,
        who: &'a Principal,
        purpose: &'a Purpose,
        approval: Option<&'a ApprovalId>,
        action: Action,
    ) -> Call<'a> {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        Call {
            gate: self,
            who,
            purpose,
            approval,
            licence: None,
            action,
            request_id: format!("{}-{n:08}", self.request_prefix),
        }
    }
}

/// What a call relies on besides its decision.
impl<'a> Call<'a> {
    /// The export licence the call relies on: its entries record it.
    pub(super) fn relying_on_licence(mut self, licence: Option<&'a ExportLicence>) -> Self {
        self.licence = licence;
        self
    }

    /// The authorisation an entry records: the approval, or the export licence as
    /// `licence:REGIME/ITEM/LICENCE-ID`.
    fn relied_on(&self) -> Option<String> {
        self.approval
            .map(|a| a.to_string())
            .or_else(|| self.licence.map(|l| format!("{LICENCE_PREFIX}{l}")))
    }
}

/// Logging a call's entries, and the two shapes built on it.
impl Call<'_> {
    /// Appends an entry and waits until it is durable; a log that cannot make it durable is
    /// [`GateError::AuditUnavailable`], which every caller turns into a refusal.
    fn log(
        &self,
        resource: AuditResource,
        verdict: &Verdict,
        outcome: Outcome,
    ) -> Result<Receipt, GateError> {
        let who = self.who;
        let entry = Entry {
            seq: 0,
            time_ms: now_ms(self.gate.clock.as_ref()),
            region: self.gate.region.clone(),
            principal: AuditPrincipal {
                id: who.id.to_string(),
                organisation: who.organisation.name.clone(),
                office_country: who.office_country,
                location_country: who.location_country,
            },
            action: self.action,
            resource,
            purpose: self.purpose.clone(),
            approval: self.relied_on(),
            decision: verdict.entry_decision(),
            policy: self.gate.policy.id().clone(),
            request_id: self.request_id.clone(),
            outcome,
        };
        self.gate
            .log
            .append(entry)
            .map_err(GateError::AuditUnavailable)
    }

    /// Logs that the call went ahead, with the digest of what it released or wrote.
    pub(super) fn log_ok(
        &self,
        resource: AuditResource,
        verdict: &Verdict,
        digest: Option<ResultDigest>,
    ) -> Result<Receipt, GateError> {
        self.log(
            resource,
            verdict,
            Outcome::Ok {
                result_digest: digest,
            },
        )
    }

    /// Logs that the call failed after it was allowed, and returns the failure.
    fn fail(&self, resource: AuditResource, verdict: &Verdict, error: GateError) -> GateError {
        match self.log(
            resource,
            verdict,
            // A code, never the error's text: that names record keys and subject ids.
            Outcome::Error {
                reason: error.reason_code(),
            },
        ) {
            Ok(_) => error,
            Err(unlogged) => unlogged,
        }
    }

    /// Logs a refusal and returns it as the error the caller gets.
    fn refuse(&self, what: &'static str, resource: AuditResource, verdict: &Verdict) -> GateError {
        match self.log_ok(resource, verdict, None) {
            Ok(receipt) => GateError::Denied {
                action: what,
                rules: verdict.rules.clone(),
                reason: verdict.reason.clone(),
                seq: receipt.seq,
            },
            Err(unlogged) => unlogged,
        }
    }

    /// The shape of a call that acts after deciding: a refusal is logged and returned;
    /// otherwise the decision (with `digest`, of what will be written) is logged durably first,
    /// then `act` runs, and a failure of `act` is logged under the same request id.
    pub(super) fn proceed<T, E: Into<GateError>>(
        &self,
        what: &'static str,
        resource: AuditResource,
        verdict: &Verdict,
        digest: Option<ResultDigest>,
        act: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, GateError> {
        if !verdict.allowed {
            return Err(self.refuse(what, resource, verdict));
        }
        self.log_ok(resource.clone(), verdict, digest)?;
        act().map_err(|e| self.fail(resource, verdict, e.into()))
    }

    /// The shape of a call that reads after deciding: a refusal is logged (naming `resource`) and
    /// returned; otherwise `gather` collects what will be returned, and its entry — the resource
    /// and outcome `gather` names, with the count and digest of exactly what is returned — is
    /// durable before the value is handed back with the entry's receipt. A failure of `gather`
    /// is logged (naming `resource`) under the same request id.
    pub(super) fn release<T>(
        &self,
        what: &'static str,
        resource: AuditResource,
        verdict: &Verdict,
        gather: impl FnOnce() -> Result<Gathered<T>, GateError>,
    ) -> Result<(T, Receipt), GateError> {
        if !verdict.allowed {
            return Err(self.refuse(what, resource, verdict));
        }
        let gathered = gather().map_err(|e| self.fail(resource, verdict, e))?;
        let receipt = self.log(gathered.resource, verdict, gathered.outcome)?;
        Ok((gathered.value, receipt))
    }
}

/// The clock's time in milliseconds since the Unix epoch (0 for a clock set before it).
fn now_ms(clock: &dyn Clock) -> u64 {
    clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
