//! Models: recording that a model was trained on what scans released, and deciding whether a
//! model artifact may be deployed here. Both are decisions the log holds (`train`, `deploy`), so
//! an auditor can ask which models learned from a person and where each model went.

use std::collections::BTreeSet;

use domicile_audit::{Action, Pseudonym, Receipt, ResultDigest};
use domicile_residency::{DataClass, Purpose, Region};
use domicile_store::RecordDigest;

use super::call::Touched;
use super::verdict::Verdict;
use super::{bulk, Gate, GateError, ScanResult, SubjectRef};
use crate::Principal;

/// A model trained on what scans released, as its `train` entry records it.
#[derive(Debug, Clone, Copy)]
pub struct Training<'a> {
    /// The scans whose records the model learned from.
    pub inputs: &'a [&'a ScanResult],
    /// The regions whose subjects contributed training data (the artifact's provenance).
    pub trained_on: &'a BTreeSet<Region>,
    /// The artifact's bytes, as written: the entry carries their SHA-256.
    pub artifact: &'a [u8],
}

/// Training and deploying models.
impl Gate {
    /// Records that `who` trained a model on the records `training.inputs` released, and decides
    /// whether that model may exist in this region: the residency policy's answer to deploying
    /// a model trained on `training.trained_on` here. One `train` entry, class `model_artifact`,
    /// committing to every subject the model learned from (so `domicile audit query --subject`
    /// finds the models a person is in) with the records per class and collection and the
    /// artifact's digest. A refusal is logged and returned as [`GateError::Denied`]: the caller
    /// must then discard the artifact.
    pub fn record_training(
        &self,
        who: &Principal,
        purpose: &Purpose,
        training: &Training<'_>,
    ) -> Result<Receipt, GateError> {
        let call = self.call(who, purpose, None, Action::Train);
        let verdict = self.decide_model(who, training.trained_on)?;
        let mut touched = Touched::default();
        for scan in training.inputs {
            for r in &scan.records {
                let subject = match &r.subject {
                    SubjectRef::Id(id) => self.pseudonym_of(id),
                    SubjectRef::Pseudonym(p) => {
                        p.parse::<Pseudonym>()
                            .map_err(|_| GateError::ForeignTrainingInput {
                                reason: "its subject pseudonym is not 64 hex digits",
                            })?
                    }
                };
                touched.record(subject, r.class, r.collection.as_str());
            }
        }
        touched.under(DataClass::ModelArtifact, "models");
        let digest = ResultDigest(RecordDigest::of(training.artifact).0);
        let ((), receipt) = call.proceed_batch(
            "record a trained model",
            touched,
            DataClass::ModelArtifact,
            "models",
            &verdict,
            Some(digest),
            || -> Result<(), GateError> { Ok(()) },
        )?;
        Ok(receipt)
    }

    /// Decides whether a model artifact trained on subjects homed in `trained_on` may be deployed
    /// in this region (the residency policy's `may_deploy_model`), and logs the decision as one
    /// `deploy` entry carrying the artifact's digest. A refusal is logged and returned as
    /// [`GateError::Denied`].
    pub fn deploy_model(
        &self,
        who: &Principal,
        purpose: &Purpose,
        trained_on: &BTreeSet<Region>,
        artifact: &[u8],
    ) -> Result<Receipt, GateError> {
        let call = self.call(who, purpose, None, Action::Deploy);
        let verdict = self.decide_model(who, trained_on)?;
        let digest = ResultDigest(RecordDigest::of(artifact).0);
        call.decided(
            "deploy a model",
            bulk(DataClass::ModelArtifact, "models", 1),
            &verdict,
            Some(digest),
        )
    }

    /// The decision on a model here: the principal must be verified, and the residency policy
    /// must allow a model trained on `trained_on` in this region.
    fn decide_model(
        &self,
        who: &Principal,
        trained_on: &BTreeSet<Region>,
    ) -> Result<Verdict, GateError> {
        if let Some(refused) = self.unverified(who) {
            return Ok(refused);
        }
        let decision = self.policy.may_deploy_model(trained_on, &self.region)?;
        let reason = if decision.allowed {
            "allowed".to_owned()
        } else {
            format!(
                "the residency policy forbids a model trained on {{{}}} in {} ({})",
                trained_on
                    .iter()
                    .map(Region::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                self.region,
                decision.rule
            )
        };
        let mut verdict = Verdict::of_transfer(decision);
        verdict.reason = reason;
        Ok(verdict)
    }
}
