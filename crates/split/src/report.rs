//! The split report: what moved where, what was shredded, and every region's signed audit
//! checkpoint before and after, signed by the migration key.

use std::collections::{BTreeMap, BTreeSet};
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
    /// Region → the verifier key of its audit log, so that the checkpoints (and the logs)
    /// are checked against keys this signed report vouches for.
    #[serde(default)]
    pub log_keys: BTreeMap<String, String>,
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

/// The migration key: signs split reports, and (through a key derived from it) authenticates
/// the split journal's lines.
pub struct MigrationKey {
    pair: Ed25519KeyPair,
    journal: ring::hmac::Key,
}

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
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|e| bad(format!("not an Ed25519 PKCS#8 key: {e}")))?;
        // A separate key for the journal's MACs, so that no MAC is ever a signature input.
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"domicile split journal key v1\n");
        ctx.update(&pkcs8);
        let journal = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, ctx.finish().as_ref());
        Ok(MigrationKey { pair, journal })
    }

    /// The public key, base64.
    pub fn public_key(&self) -> String {
        B64.encode(self.pair.public_key().as_ref())
    }

    /// A warrant for the plan with fingerprint `plan` to move exactly `subjects`: what the
    /// Gates' migration reads and writes require (see [`domicile_access::MigrationWarrant`]).
    pub fn sign_warrant(
        &self,
        plan: &str,
        subjects: impl IntoIterator<Item = domicile_residency::SubjectId>,
    ) -> domicile_access::MigrationWarrant {
        let subjects: Vec<_> = subjects.into_iter().collect();
        let message = domicile_access::MigrationWarrant::message(plan, &subjects);
        let signature = self.pair.sign(&message).as_ref().to_vec();
        domicile_access::MigrationWarrant::new(plan, subjects, signature)
    }

    /// The key that authenticates journal lines.
    pub(crate) fn journal_key(&self) -> ring::hmac::Key {
        self.journal.clone()
    }

    /// Signs a report.
    pub fn sign(&self, report: SplitReport) -> SignedReport {
        let signature = B64.encode(self.pair.sign(&signed_bytes(&report)).as_ref());
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

/// The file in the data root that pins the deployment's migration public key (base64, one
/// line), written when the deployment is created.
pub const MIGRATION_VKEY: &str = "migration.vkey";

/// The largest report read.
pub(crate) const MAX_REPORT_BYTES: u64 = 256 << 20;

/// Checks that `text` is a migration public key (base64 of 32 bytes) and returns it trimmed.
/// A secret key given where the public one belongs is refused without echoing it.
pub fn parse_migration_vkey(text: &str, path: &Path) -> Result<String, SplitError> {
    let text = text.trim();
    let bad = |detail: &str| SplitError::Key {
        path: path.to_owned(),
        detail: detail.to_owned(),
    };
    if text.len() > 64 || text.contains('\n') {
        return Err(bad("it is not a migration public key (base64 of 32 bytes); if it is the migration key itself, give its public key instead"));
    }
    match B64.decode(text) {
        Ok(bytes) if bytes.len() == 32 => Ok(text.to_owned()),
        _ => Err(bad("it is not a migration public key (base64 of 32 bytes)")),
    }
}

/// The migration public key pinned in `<data>/migration.vkey`, if there is one.
pub fn pinned_migration_key(data_root: &Path) -> Result<Option<String>, SplitError> {
    let path = data_root.join(MIGRATION_VKEY);
    match domicile_durable::read_optional(&path)? {
        Some(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| SplitError::Key {
                path: path.clone(),
                detail: "it is not text".into(),
            })?;
            parse_migration_vkey(&text, &path).map(Some)
        }
        None => Ok(None),
    }
}

/// Pins `key`'s public key in `<data>/migration.vkey` (created exclusively: an existing pin is
/// never replaced).
pub fn pin_migration_key(data_root: &Path, key: &MigrationKey) -> Result<(), SplitError> {
    domicile_durable::create_private(
        &data_root.join(MIGRATION_VKEY),
        format!("{}\n", key.public_key()).as_bytes(),
    )?;
    Ok(())
}

/// What [`check_report`] proved of one region's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCheck {
    /// The region.
    pub region: String,
    /// Entries in its log now.
    pub entries: u64,
    /// The report's checkpoints (before and after) the log was proved consistent with.
    pub checkpoints: usize,
    /// Distinct subjects the migration's `shred` entries name between those checkpoints: each
    /// has exactly one of the report's receipts for this region, and each receipt is one of
    /// them.
    pub shreds_logged: u64,
}

/// Reads the split report of the deployment at `data_root` and checks it against what the
/// checker already trusts: its signature against `pinned` (the migration public key, base64,
/// pinned at create time or given by the operator — never the key inside the report), and
/// every region's current audit log, verified with the log key the signed report names, is
/// proved consistent with the report's signed checkpoints before and after the split.
///
/// The report's shred receipts are then checked against the logs, so that the two signed records of
/// a split (the report, under the migration key; each log, under its log key) say the same: in each
/// region, the subjects that the split's `shred` entries name (by the region's migration principal,
/// allowed, with the migration purpose, logged between the report's checkpoints before and after,
/// each entry's subject list read from beside the log and checked against the commitment the entry
/// holds) are exactly the subjects the report has receipts for, one receipt each. A report that
/// claims a shred the log does not show, or leaves out one it does, is refused; so is one whose
/// per-region counts disagree with its own receipts.
///
/// A missing or unreadable report, a signature by another key, a missing log, or a log that
/// does not extend the reported checkpoints is an error.
pub fn check_report(
    data_root: &Path,
    pinned: &str,
) -> Result<(SignedReport, Vec<LogCheck>), SplitError> {
    check_report_pinning_logs(data_root, pinned, &[])
}

/// [`check_report`], also trusting the log keys the checker holds itself (`log_keys`: published
/// by each region, or obtained from its witnesses) over the ones the report names. The report
/// vouches for each region's log key under the migration key, so whoever holds the migration key
/// could name a key of their own and a log they wrote with it. Each pinned key must be the
/// report's key for the log of the same name (origin), and each must name a log the report
/// covers; either mismatch is an error naming the origin.
pub fn check_report_pinning_logs(
    data_root: &Path,
    pinned: &str,
    log_keys: &[domicile_audit::VerifierKey],
) -> Result<(SignedReport, Vec<LogCheck>), SplitError> {
    let mut unmatched: BTreeSet<&str> = log_keys.iter().map(|k| k.name()).collect();
    let path = crate::split_dir(data_root).join("report.json");
    if !path.exists() {
        return Err(SplitError::BadReport(format!(
            "there is no report at {}",
            path.display()
        )));
    }
    let bytes = domicile_durable::read_bounded(&path, MAX_REPORT_BYTES)?;
    let signed: SignedReport = serde_json::from_slice(&bytes)
        .map_err(|e| SplitError::BadReport(format!("{} does not parse: {e}", path.display())))?;
    signed.verify(pinned)?;
    let mut checks = Vec::new();
    let regions: std::collections::BTreeSet<&String> = signed
        .report
        .checkpoints_before
        .keys()
        .chain(signed.report.checkpoints_after.keys())
        .collect();
    for &region in &regions {
        let vkey_path = data_root.join(region).join("log.vkey");
        let vkey_text = match signed.report.log_keys.get(region) {
            Some(k) => k.clone(),
            None => domicile_durable::read_optional_string(&vkey_path)?.ok_or_else(|| {
                SplitError::BadReport(format!(
                    "{region}: the report names no log key and {} is missing",
                    vkey_path.display()
                ))
            })?,
        };
        let vkey = domicile_audit::VerifierKey::parse(&vkey_text)?;
        for held in log_keys.iter().filter(|k| k.name() == vkey.name()) {
            if *held != vkey {
                return Err(SplitError::BadReport(format!(
                    "{region}: the report's key for the log {} is not the one you hold for it \
                     ({} against {held})",
                    vkey.name(),
                    vkey
                )));
            }
            unmatched.remove(held.name());
        }
        let log_dir = data_root.join(region).join("audit");
        if !log_dir.is_dir() {
            return Err(SplitError::BadReport(format!(
                "{region}: the audit log {} is missing",
                log_dir.display()
            )));
        }
        let parse = |note: Option<&String>| {
            note.map(|n| domicile_audit::Note::parse(n.as_bytes()))
                .transpose()
        };
        let before = parse(signed.report.checkpoints_before.get(region))?;
        let after = parse(signed.report.checkpoints_after.get(region))?;
        let held: Vec<domicile_audit::Note> = before.iter().chain(after.iter()).cloned().collect();
        let found = domicile_audit::verify_against(&log_dir, &vkey, None, &held, &mut |_, _| {})
            .map_err(|e| {
                SplitError::BadReport(format!(
                    "{region}: the audit log is not consistent with the report: {e}"
                ))
            })?;
        let logged = match &after {
            Some(after) => logged_shreds(region, &log_dir, before.as_ref(), after)?,
            None => BTreeSet::new(),
        };
        let receipted = receipts_in(&signed.report, region)?;
        match_shreds(region, &logged, &receipted)?;
        checks.push(LogCheck {
            region: region.clone(),
            entries: found.entries,
            checkpoints: held.len(),
            shreds_logged: logged.len() as u64,
        });
    }
    if let Some(name) = unmatched.first() {
        return Err(SplitError::BadReport(format!(
            "the report covers no log named {name}, whose key you gave"
        )));
    }
    // Every receipt belongs to a region whose log was checked.
    for receipt in &signed.report.shred_receipts {
        if !regions.contains(&receipt.region.to_string()) {
            return Err(SplitError::BadReport(format!(
                "{}: the report has shred receipts for this region but no checkpoint of its log",
                receipt.region
            )));
        }
    }
    Ok((signed, checks))
}

/// The size a checkpoint note signs.
fn signed_size(region: &str, note: &domicile_audit::Note) -> Result<u64, SplitError> {
    domicile_audit::Checkpoint::parse(&note.text)
        .map(|c| c.size)
        .map_err(|e| SplitError::BadReport(format!("{region}: a reported checkpoint: {e}")))
}

/// The pseudonyms of every subject that the split's `shred` entries in `region`'s log name:
/// entries `before.size .. after.size` by the region's migration principal, allowed, completed
/// as far as the log says, with the migration purpose; each subject list read from beside the
/// log and checked against the entry's commitment (a list edited on disk no longer matches it).
fn logged_shreds(
    region: &str,
    log_dir: &Path,
    before: Option<&domicile_audit::Note>,
    after: &domicile_audit::Note,
) -> Result<BTreeSet<String>, SplitError> {
    use domicile_audit::{Action, Entry, Outcome, Target};
    let bad = |what: String| SplitError::BadReport(format!("{region}: {what}"));
    let from = before
        .map(|n| signed_size(region, n))
        .transpose()?
        .unwrap_or(0);
    let to = signed_size(region, after)?;
    if from > to {
        return Err(bad(format!(
            "the checkpoint before the split ({from} entries) is larger than the one after ({to})"
        )));
    }
    let reader = domicile_audit::LogReader::open(log_dir)
        .map_err(|e| bad(format!("the audit log does not open: {e}")))?;
    let migration = crate::deployment::migration_principal_path(region);
    let mut subjects = BTreeSet::new();
    for (i, bytes) in reader
        .entries(from, to)
        .map_err(|e| bad(format!("reading the audit log: {e}")))?
        .iter()
        .enumerate()
    {
        let seq = from + i as u64;
        let entry = Entry::from_canonical(bytes)
            .map_err(|e| bad(format!("audit entry {seq} does not parse: {e}")))?;
        let is_split_shred = entry.action == Action::Shred
            && entry.principal.id.starts_with("spiffe://")
            && entry.principal.id.ends_with(&migration)
            && entry.decision.allowed
            && entry.purpose.code == domicile_residency::JustificationCode::Migration
            && matches!(entry.outcome, Outcome::Ok { .. });
        let commitment = match &entry.resource.target {
            Target::Batch { subjects, .. } if is_split_shred && subjects.count > 0 => subjects,
            _ => continue,
        };
        let set = domicile_audit::read_subject_set(log_dir, commitment).map_err(|e| {
            bad(format!(
                "the subject list of shred entry {seq} cannot be checked: {e}"
            ))
        })?;
        subjects.extend(set.pseudonyms().iter().map(|p| p.to_string()));
    }
    Ok(subjects)
}

/// The report's receipts for `region`, by pseudonym; a subject receipted twice, or counts that
/// disagree with the receipts, are errors.
fn receipts_in<'a>(report: &'a SplitReport, region: &str) -> Result<BTreeSet<&'a str>, SplitError> {
    let bad = |what: String| SplitError::BadReport(format!("{region}: {what}"));
    let mut receipted = BTreeSet::new();
    let mut records = 0u64;
    for r in report
        .shred_receipts
        .iter()
        .filter(|r| r.region.as_str() == region)
    {
        if !receipted.insert(r.subject_pseudonym.as_str()) {
            return Err(bad(format!(
                "the report has two shred receipts for subject {}",
                r.subject_pseudonym
            )));
        }
        records += r.records;
    }
    let counted = |map: &BTreeMap<Region, u64>| {
        map.iter()
            .find(|(r, _)| r.as_str() == region)
            .map_or(0, |(_, n)| *n)
    };
    if counted(&report.shredded_subjects) != receipted.len() as u64
        || counted(&report.shredded_records) != records
    {
        return Err(bad(format!(
            "the report counts {} subjects and {} records shredded, its receipts {} and {records}",
            counted(&report.shredded_subjects),
            counted(&report.shredded_records),
            receipted.len()
        )));
    }
    Ok(receipted)
}

/// The logged shreds and the receipts name the same subjects.
fn match_shreds(
    region: &str,
    logged: &BTreeSet<String>,
    receipted: &BTreeSet<&str>,
) -> Result<(), SplitError> {
    let unlogged: Vec<&&str> = receipted.iter().filter(|p| !logged.contains(**p)).collect();
    if let Some(first) = unlogged.first() {
        return Err(SplitError::BadReport(format!(
            "{region}: {} of the report's shred receipts name subjects that no shred entry of \
             the split in the audit log names (the first: {first})",
            unlogged.len()
        )));
    }
    let unreceipted: Vec<&String> = logged
        .iter()
        .filter(|p| !receipted.contains(p.as_str()))
        .collect();
    if let Some(first) = unreceipted.first() {
        return Err(SplitError::BadReport(format!(
            "{region}: the audit log shows the split shredding {} subjects the report has no \
             receipt for (the first: {first})",
            unreceipted.len()
        )));
    }
    Ok(())
}
