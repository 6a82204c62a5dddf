//! Deciding: the questions a Gate puts to the residency policy, the access rules and the
//! approval book before a call, each answered as a [`Verdict`].

use domicile_residency::{DataClass, Obligation, Purpose, Region, SubjectId};

use super::gate_rules::{gate_rule, OBLIGATION_UNMET, UNVERIFIED_PRINCIPAL};
use super::verdict::Verdict;
use super::{Gate, GateError, RecordRef, ScanRequest};
use crate::approval::ApprovalId;
use crate::rules::{AccessAction, AccessRequest, ApprovalFacts, Resource};
use crate::{Principal, SpiffeId};

/// The questions a Gate asks before it acts.
impl Gate {
    /// A refusal by `gate/unverified-principal` unless the directory names `who` with exactly
    /// the attributes it claims. Every question to the access rules is asked after this one.
    pub(super) fn unverified(&self, who: &Principal) -> Option<Verdict> {
        let directory = self.directory.read().unwrap_or_else(|p| p.into_inner());
        directory.verify(who).err().map(|why| {
            Verdict::refused_by(
                gate_rule(UNVERIFIED_PRINCIPAL),
                format!("{why} (for {})", who.id),
            )
        })
    }

    /// The home region of a subject registered here, or [`GateError::UnknownSubject`].
    pub(super) fn home_of(&self, subject: &SubjectId) -> Result<Region, GateError> {
        self.store
            .subject(subject)?
            .map(|s| s.home)
            .ok_or_else(|| GateError::UnknownSubject {
                subject: subject.clone(),
                region: self.region.clone(),
            })
    }

    /// The access rules alone, as a verdict.
    pub(super) fn decide_access(
        &self,
        who: &Principal,
        action: AccessAction,
        resource: Resource,
        purpose: &Purpose,
        approval: Option<ApprovalFacts>,
    ) -> Result<Verdict, GateError> {
        if let Some(refused) = self.unverified(who) {
            return Ok(refused);
        }
        let access = self.rules.decide(&AccessRequest {
            principal: who,
            action,
            resource,
            purpose,
            approval,
        })?;
        Ok(Verdict::of_access(access))
    }

    /// The access rules for a bulk action on this region's records of `class` in `collection`.
    pub(super) fn decide_bulk(
        &self,
        who: &Principal,
        action: AccessAction,
        class: DataClass,
        collection: &str,
        purpose: &Purpose,
    ) -> Result<Verdict, GateError> {
        let resource = self.records_here(class, collection, None);
        let mut verdict = self.decide_access(who, action, resource, purpose, None)?;
        self.add_caller_transfer(&mut verdict, who, class, None, purpose)?;
        Ok(verdict)
    }

    /// Where what a call releases goes: the caller's region when it is not this one (the
    /// caller's verified id says where it is; a caller never declares it), else `declared`.
    pub(super) fn destination_for(
        &self,
        who: &Principal,
        declared: Option<&Region>,
    ) -> Option<Region> {
        if who.id.region() != &self.region {
            Some(who.id.region().clone())
        } else {
            declared.cloned()
        }
    }

    /// When the caller is of another region, the residency policy's answer to moving `class`
    /// there (of a subject homed in `home`, or of every possible home), merged into `verdict`:
    /// every call asks the residency policy, and a caller elsewhere is a transfer.
    pub(super) fn add_caller_transfer(
        &self,
        verdict: &mut Verdict,
        who: &Principal,
        class: DataClass,
        home: Option<&Region>,
        purpose: &Purpose,
    ) -> Result<(), GateError> {
        let Some(dest) = self.destination_for(who, None) else {
            return Ok(());
        };
        if self.policy.check_region(&dest).is_err() {
            verdict.merge(Verdict::refused_by(
                gate_rule(UNVERIFIED_PRINCIPAL),
                "the caller's region is not a region of this deployment",
            ));
            return Ok(());
        }
        let homes = match home {
            Some(h) => vec![h.clone()],
            None => self.policy.regions().to_vec(),
        };
        self.add_transfer(verdict, class, &homes, &dest, purpose)
    }

    /// A bulk release (scan or aggregate): the access rules for scanning, and, when the records
    /// leave the region, the residency policy's transfer decision for every possible home.
    pub(super) fn decide_release(
        &self,
        who: &Principal,
        purpose: &Purpose,
        request: &ScanRequest,
    ) -> Result<Verdict, GateError> {
        let collection = request.collection.as_str();
        if let Some(refused) = self.unverified(who) {
            return Ok(refused);
        }
        let resource = self.records_here(request.class, collection, None);
        let mut verdict = self.decide_access(who, AccessAction::Scan, resource, purpose, None)?;
        let destination = self.destination_for(who, request.destination.as_ref());
        if let Some(dest) = &destination {
            let homes = self.policy.regions().to_vec();
            self.add_transfer(&mut verdict, request.class, &homes, dest, purpose)?;
        }
        Ok(verdict)
    }

    /// Verifies an approval for this access; a failure is returned as the note a denial carries.
    fn approval_facts(
        &self,
        who: &Principal,
        approval: Option<&ApprovalId>,
        class: DataClass,
        subject: Option<&SubjectId>,
        purpose: &Purpose,
    ) -> (Option<ApprovalFacts>, Option<String>) {
        let Some(id) = approval else {
            return (None, None);
        };
        let approvers = self.approvers.read().unwrap_or_else(|p| p.into_inner());
        let trusted = |approver: &SpiffeId| approvers.get(approver).cloned();
        let subject = subject.map(|s| self.scope_subject(s));
        match self.approvals.check(
            id,
            &who.id,
            class,
            &self.region,
            subject.as_ref(),
            purpose,
            self.clock.unix_secs(),
            &trusted,
        ) {
            Ok(facts) => (Some(facts), None),
            Err(e) => (None, Some(e.to_string())),
        }
    }

    /// This region's records of `class` in `collection`, of a subject homed in `home` (or of
    /// many subjects, for `None`), as the access rules see them.
    pub(super) fn records_here(
        &self,
        class: DataClass,
        collection: &str,
        home: Option<Region>,
    ) -> Resource {
        Resource::Records {
            class,
            region: self.region.clone(),
            subject_home: home,
            collection: collection.to_owned(),
        }
    }

    /// Residency and access rules (no approval) for records of `class` in `collection` of a
    /// subject homed in `home`: may they rest here, and may `who` do `action` to them.
    pub(super) fn decide_placed(
        &self,
        who: &Principal,
        action: AccessAction,
        class: DataClass,
        collection: &str,
        home: Region,
        purpose: &Purpose,
    ) -> Result<Verdict, GateError> {
        if let Some(refused) = self.unverified(who) {
            return Ok(refused);
        }
        let residency = self.policy.may_rest_in(class, &home, &self.region)?;
        let access = self.rules.decide(&AccessRequest {
            principal: who,
            action,
            resource: self.records_here(class, collection, Some(home.clone())),
            purpose,
            approval: None,
        })?;
        let mut verdict = Verdict::of_record(&residency, &access, None);
        if matches!(action, AccessAction::Read | AccessAction::Scan) {
            self.add_caller_transfer(&mut verdict, who, class, Some(&home), purpose)?;
        }
        Ok(verdict)
    }

    /// Residency, access rules and approval for one record of a subject registered here.
    pub(super) fn decide_record(
        &self,
        who: &Principal,
        action: AccessAction,
        record: &RecordRef,
        purpose: &Purpose,
        approval: Option<&ApprovalId>,
    ) -> Result<Verdict, GateError> {
        if let Some(refused) = self.unverified(who) {
            return Ok(refused);
        }
        let home = self.home_of(&record.subject)?;
        let residency = self.policy.may_rest_in(record.class, &home, &self.region)?;
        let (facts, note) =
            self.approval_facts(who, approval, record.class, Some(&record.subject), purpose);
        let access = self.rules.decide(&AccessRequest {
            principal: who,
            action,
            resource: self.records_here(
                record.class,
                record.collection.as_str(),
                Some(home.clone()),
            ),
            purpose,
            approval: facts,
        })?;
        let mut verdict = Verdict::of_record(&residency, &access, note);
        if let (Some(facts), true) = (facts, verdict.allowed) {
            self.add_approval_obligation(&mut verdict, facts);
        }
        if action == AccessAction::Read {
            self.add_caller_transfer(&mut verdict, who, record.class, Some(&home), purpose)?;
        }
        Ok(verdict)
    }

    /// An access allowed on an approval carries the policy's `RequireApproval` obligation for
    /// this region into its decision (so the log says which obligation the approval met), after
    /// the Gate checks the approval against it itself: an approver of an organisation outside
    /// the obligation's jurisdiction, or an approval longer than its maximum, is refused by
    /// `gate/obligation-unmet` whatever the access rules said.
    fn add_approval_obligation(&self, verdict: &mut Verdict, facts: ApprovalFacts) {
        let Some(obligation) = self.policy.approval_obligation(&self.region) else {
            return;
        };
        if let Obligation::RequireApproval {
            by,
            max_duration_secs,
        } = &obligation
        {
            if !by.covers(facts.approver_org_country) || facts.duration_secs > *max_duration_secs {
                verdict.refuse(
                    gate_rule(OBLIGATION_UNMET),
                    format!("the approval does not meet the obligation: {obligation}"),
                );
                return;
            }
        }
        if !verdict.obligations.contains(&obligation) {
            verdict.obligations.push(obligation);
        }
    }

    /// The residency policy's answer to moving `class` from this region to `destination`, for
    /// every possible home, merged into `verdict`.
    pub(super) fn add_transfer(
        &self,
        verdict: &mut Verdict,
        class: DataClass,
        homes: &[Region],
        destination: &Region,
        purpose: &Purpose,
    ) -> Result<(), GateError> {
        self.policy.check_region(destination)?;
        for home in homes {
            let transfer =
                self.policy
                    .may_transfer(class, home, &self.region, destination, purpose)?;
            verdict.merge(Verdict::of_transfer(transfer));
        }
        Ok(())
    }
}
