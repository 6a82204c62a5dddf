//! The split report: what moved where, what was shredded, and every region's signed audit
//! checkpoint before and after, signed by the migration key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use domicile_residency::{PolicyId, Region};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use crate::{CopyReport, Counts, PlanSummary, SplitError};

/// What verification checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationSummary {
    /// Records read back and compared.
    pub records_checked: u64,
    /// Records per region and class found in the target.
    pub per_region: Counts,
}

/// One subject crypto-shredded in one region, without the subject's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShredSummary {
    /// The region.
    pub region: Region,
    /// The subject's pseudonym in that region's audit log.
    pub subject_pseudonym: String,
    /// Records deleted.
    pub records: u64,
    /// The version of the destroyed data key.
    pub data_key_version: u32,
    /// Whether this run destroyed the key (false: an earlier, interrupted run had).
    pub key_destroyed_now: bool,
}

/// Everything a split did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitReport {
    /// The report format (1).
    pub format: u32,
    /// The policy the data was under.
    pub source_policy: PolicyId,
    /// The policy it is under now.
    pub target_policy: PolicyId,
    /// When the split started, ms since the Unix epoch.
    pub started_ms: u64,
    /// When it finished.
    pub finished_ms: u64,
    /// The plan's counts.
    pub plan: PlanSummary,
    /// The copy, in the run that finished it.
    pub copy: CopyReport,
    /// What verification checked.
    pub verification: VerificationSummary,
    /// Subjects shredded per source region.
    pub shredded_subjects: BTreeMap<Region, u64>,
    /// Records shredded per source region.
    pub shredded_records: BTreeMap<Region, u64>,
    /// Every shred receipt.
    pub shred_receipts: Vec<ShredSummary>,
    /// Region → signed checkpoint note before the split.
    pub checkpoints_before: BTreeMap<String, String>,
    /// Region → signed checkpoint note after the split.
    pub checkpoints_after: BTreeMap<String, String>,
}

/// A report with the migration key's Ed25519 signature over its JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReport {
    /// The report.
    pub report: SplitReport,
    /// The migration key's public key, base64.
    pub public_key: String,
    /// Ed25519 over `domicile split report v1\n` and the report's JSON, base64.
    pub signature: String,
}

/// The migration key: signs split reports.
pub struct MigrationKey(Ed25519KeyPair);

impl fmt::Debug for MigrationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MigrationKey({})", self.public_key())
    }
}

impl MigrationKey {
    /// Loads the key at `path` (PKCS#8), creating it (0600) if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, SplitError> {
        let bad = |detail: String| SplitError::Key {
            path: path.to_owned(),
            detail,
        };
        let pkcs8 = match domicile_durable::read_optional(path)? {
            Some(bytes) => bytes,
            None => {
                let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(|_| bad("the system random source failed".into()))?;
                // Exclusive: two splits starting at once must not each keep a different key.
                domicile_durable::create_private(path, doc.as_ref())?;
                doc.as_ref().to_vec()
            }
        };
        Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map(MigrationKey)
            .map_err(|e| bad(format!("not an Ed25519 PKCS#8 key: {e}")))
    }

    /// The public key, base64.
    pub fn public_key(&self) -> String {
        B64.encode(self.0.public_key().as_ref())
    }

    /// Signs a report.
    pub fn sign(&self, report: SplitReport) -> SignedReport {
        let signature = B64.encode(self.0.sign(&signed_bytes(&report)).as_ref());
        SignedReport {
            report,
            public_key: self.public_key(),
            signature,
        }
    }
}

fn signed_bytes(report: &SplitReport) -> Vec<u8> {
    let mut msg = b"domicile split report v1\n".to_vec();
    msg.extend(serde_json::to_vec(report).expect("reports serialise"));
    msg
}

impl SignedReport {
    /// Checks the signature against `public_key` (base64), the key the operator trusts.
    pub fn verify(&self, public_key: &str) -> Result<(), SplitError> {
        if public_key != self.public_key {
            return Err(SplitError::BadReport(
                "it is signed by another migration key".into(),
            ));
        }
        let key = B64
            .decode(public_key)
            .map_err(|e| SplitError::BadReport(format!("the public key is not base64: {e}")))?;
        let sig = B64
            .decode(&self.signature)
            .map_err(|e| SplitError::BadReport(format!("the signature is not base64: {e}")))?;
        UnparsedPublicKey::new(&ED25519, &key)
            .verify(&signed_bytes(&self.report), &sig)
            .map_err(|_| SplitError::BadReport("the signature does not match the report".into()))
    }
}

impl fmt::Display for SplitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.plan)?;
        writeln!(
            f,
            "  copied: {} records read in {} batches ({} resumed from the journal)",
            self.copy.records_read, self.copy.batches, self.copy.resumed_batches
        )?;
        writeln!(
            f,
            "  verified: {} records read back, every digest matches",
            self.verification.records_checked
        )?;
        for (region, n) in &self.shredded_subjects {
            writeln!(
                f,
                "  shredded in {region}: {n} subjects, {} records (data keys destroyed)",
                self.shredded_records.get(region).copied().unwrap_or(0)
            )?;
        }
        writeln!(f, "  audit checkpoints after the split:")?;
        for (region, note) in &self.checkpoints_after {
            let mut lines = note.lines();
            let origin = lines.next().unwrap_or("");
            let size = lines.next().unwrap_or("");
            writeln!(f, "    {region:<8} {origin} size {size}")?;
        }
        write!(
            f,
            "  took {:.1} s",
            self.finished_ms.saturating_sub(self.started_ms) as f64 / 1000.0
        )
    }
}
