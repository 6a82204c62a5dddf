//! Getting data into a deployment without writing Rust: subjects and their records from JSON
//! Lines, through each region's Gate, batched, resumable.
//!
//! One line per subject:
//!
//! ```text
//! {"subject": {"id": "u-1", "residence": "US", "account_country": "US"},
//!  "records": [{"class": "protected", "collection": "profile", "key": "u-1", "value": {"name": "…"}}]}
//! ```
//!
//! (on one line). Each subject's home region is decided by the deployment's policy, and its
//! records are written through that region's Gate, which decides each (class, collection) by the
//! residency policy and the access rules and logs one bulk entry per batch before the store is
//! touched. A subject whose home cannot be decided is reported by line number (never by id) and
//! skipped or refused, as [`OnUnknown`] says.
//!
//! **Bounded.** The input is a regular file (it is read twice: once for the digest its progress
//! is kept under, then line by line); a line is at most [`MAX_LINE_BYTES`] and UTF-8, or it is
//! refused by number before more of it is read.
//!
//! **Resumable.** After each batch is durable, `<data>/ingest/<file digest>.json` records how
//! many lines (and bytes) of that file are in; a rerun on the same file starts after them. A
//! crash between a batch and its progress line makes the rerun write that batch again, which
//! overwrites the same records with the same values. The progress file is input like any other:
//! a rerun checks that its byte count ends a line of the file after exactly its count of lines,
//! and refuses one that does not ([`SplitError::IngestProgress`]) rather than skip lines. What
//! that cannot catch is an edit that names a later line with its exact offset; each region's log
//! holds the bulk entry of every batch written, which is the record to check such a run against.

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use domicile_access::{Principal, PrincipalDirectory, PrincipalKind};
use domicile_residency::{
    DataClass, JustificationCode, Purpose, Region, ResidencyError, Subject, SubjectId,
};
use domicile_store::{Collection, RawRecord, RecordKey, RecordMeta};
use serde::{Deserialize, Serialize};

use crate::{Deployment, SplitError};

/// What to do with a subject whose home region the policy cannot decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnUnknown {
    /// Report its line and go on without it.
    #[default]
    Skip,
    /// Stop at its line ([`SplitError::IngestLine`]); batches before it stay written, and a
    /// rerun after the line is fixed resumes there.
    Refuse,
}

/// How to ingest.
#[derive(Clone, Copy)]
pub struct IngestOptions<'a> {
    /// The ingest service's name: in each region it is
    /// `spiffe://<trust-domain>/<region>/<organisation>/<name>`, a service holding the
    /// `app-service` role, located where the policy says the region is operated from.
    pub principal: &'a str,
    /// The organisation running the ingest service in every region (`usds` for a US split,
    /// whose access rules let only USDS's services write in `us`).
    pub organisation: &'a str,
    /// Subjects per batch (one audit entry and one durable store batch per region each).
    pub batch_subjects: usize,
    /// Bytes of input per batch: a batch is written once its lines hold this many bytes, even
    /// short of `batch_subjects`, so that a file of long lines (each up to
    /// [`MAX_LINE_BYTES`]) is held a batch at a time, not `batch_subjects` of them.
    pub batch_bytes: u64,
    /// What to do with a subject whose home region is unknown.
    pub on_unknown: OnUnknown,
    /// Called after each batch with the number of bytes of the file now ingested.
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl Default for IngestOptions<'_> {
    fn default() -> Self {
        IngestOptions {
            principal: "ingest",
            organisation: "domicile",
            batch_subjects: 1_000,
            batch_bytes: DEFAULT_BATCH_BYTES,
            on_unknown: OnUnknown::Skip,
            progress: None,
        }
    }
}

impl std::fmt::Debug for IngestOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestOptions")
            .field("principal", &self.principal)
            .field("organisation", &self.organisation)
            .field("batch_subjects", &self.batch_subjects)
            .field("batch_bytes", &self.batch_bytes)
            .field("on_unknown", &self.on_unknown)
            .finish_non_exhaustive()
    }
}

/// What an ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    /// Lines of the file already ingested by an earlier run, skipped now.
    pub resumed_after_line: u64,
    /// Lines read by this run.
    pub lines: u64,
    /// Subjects written, per region.
    pub subjects: BTreeMap<String, u64>,
    /// Records written, per region.
    pub records: BTreeMap<String, u64>,
    /// Subjects skipped because their home region is unknown: (line, why), no id.
    pub skipped: Vec<(u64, String)>,
}

/// One line of the input.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    subject: LineSubject,
    #[serde(default)]
    records: Vec<LineRecord>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineSubject {
    id: String,
    residence: Option<String>,
    account_country: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineRecord {
    class: String,
    collection: String,
    key: String,
    value: serde_json::Value,
}

/// The progress file: how much of which file is in.
#[derive(Debug, Serialize, Deserialize)]
struct Progress {
    format: u32,
    /// SHA-256 of the whole input file, hex.
    file: String,
    lines: u64,
    bytes: u64,
}

/// Why a residency error makes a home unknown, in words that name no one.
fn unknown_home(e: &ResidencyError) -> String {
    match e {
        ResidencyError::MissingResidence { .. } => "no country of residence".into(),
        ResidencyError::InvalidResidence { value, .. } => {
            format!("country of residence {value:?} is not an ISO 3166-1 code")
        }
        ResidencyError::ContradictoryResidence { detail, .. } => {
            format!("contradictory residence attributes ({detail})")
        }
        _ => "its home region cannot be decided".into(),
    }
}

fn line_error(line: u64, reason: impl Into<String>) -> SplitError {
    SplitError::IngestLine {
        line,
        reason: reason.into(),
    }
}

/// The ingest service principal of `region`.
pub fn ingest_principal(
    deployment: &Deployment,
    region: &Region,
    name: &str,
    organisation: &str,
) -> Result<Principal, SplitError> {
    let location = deployment.policy().region_location(region)?;
    Ok(Principal::parse(
        &format!(
            "spiffe://{}/{region}/{organisation}/{name}",
            deployment.trust_domain()
        ),
        PrincipalKind::Service,
        (organisation, location.as_str()),
        location.as_str(),
        location.as_str(),
        &["app-service"],
    )?)
}

/// The longest line an ingest file may hold, newline included: one subject with all their
/// records. A longer one is refused by number before it is held in memory whole.
pub const MAX_LINE_BYTES: u64 = 64 << 20;

/// The input a batch holds at most by default ([`IngestOptions::batch_bytes`]): 64 MiB.
pub const DEFAULT_BATCH_BYTES: u64 = 64 << 20;

/// Opens the ingest file and digests it, leaving the handle at its end, and returns the number of
/// bytes digested: the lines are then read from the same handle and no further than those
/// bytes, so the file digested is the file ingested even if another is renamed into its place
/// or more is appended to it meanwhile. The input must be a regular file (it is read twice, and resuming
/// seeks into it); that is checked before it is opened, since opening a FIFO waits for a
/// writer, and again on the handle.
fn open_and_digest(path: &Path) -> Result<(std::fs::File, String, u64), SplitError> {
    let failed = |action: &'static str| {
        move |e: std::io::Error| SplitError::Io {
            action,
            path: path.to_owned(),
            source: e,
        }
    };
    let not_regular = || SplitError::Io {
        action: "ingest",
        path: path.to_owned(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (ingest reads its input twice, for the digest its resumable \
             progress is kept under and then line by line; copy a stream to a file first)",
        ),
    };
    if !std::fs::metadata(path).map_err(failed("open"))?.is_file() {
        return Err(not_regular());
    }
    let mut file = std::fs::File::open(path).map_err(failed("open"))?;
    if !file.metadata().map_err(failed("inspect"))?.is_file() {
        return Err(not_regular());
    }
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(failed("read"))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        len += n as u64;
    }
    let digest = ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((file, digest, len))
}

/// Checks that `progress`, read from disk, describes `file` as digested (`len` bytes): it is a
/// format this code writes, and its byte count ends a line of the file (or the file) after
/// exactly its count of lines.
/// A progress file edited or damaged would otherwise skip lines that were never ingested, or
/// resume in the middle of one.
fn check_progress(file: &mut std::fs::File, len: u64, progress: &Progress) -> Result<(), String> {
    if progress.format != 1 {
        return Err(format!(
            "progress format {} is not one this version writes (1)",
            progress.format
        ));
    }
    let failed = |e: std::io::Error| format!("cannot read the input to check it: {e}");
    if progress.bytes > len {
        return Err(format!(
            "it claims {} bytes of a {len}-byte file",
            progress.bytes
        ));
    }
    file.seek(SeekFrom::Start(0)).map_err(failed)?;
    let mut prefix = Read::take(&mut *file, progress.bytes);
    let mut buf = vec![0u8; 1 << 16];
    let (mut newlines, mut last) = (0u64, b'\n');
    loop {
        let n = prefix.read(&mut buf).map_err(failed)?;
        if n == 0 {
            break;
        }
        newlines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    // Lines are counted as they are read: every one that ends in a newline, and a last one
    // without, which only the end of the file can end.
    let lines = match last {
        b'\n' => newlines,
        _ if progress.bytes == len => newlines + 1,
        _ => {
            return Err(format!(
                "its {} bytes end in the middle of line {}",
                progress.bytes,
                newlines + 1
            ))
        }
    };
    if lines != progress.lines {
        return Err(format!(
            "it claims {} lines in {} bytes, which hold {lines}",
            progress.lines, progress.bytes
        ));
    }
    Ok(())
}

/// Where the progress of ingesting the file with digest `digest` is kept.
pub fn progress_path(data_root: &Path, digest: &str) -> PathBuf {
    data_root
        .join("ingest")
        .join(format!("{}.json", &digest[..32]))
}

/// Ingests the JSON Lines file `path` into `deployment` (see the module docs).
pub fn ingest_file(
    deployment: &Deployment,
    path: &Path,
    options: &IngestOptions<'_>,
) -> Result<IngestReport, SplitError> {
    let (mut file, digest, len) = open_and_digest(path)?;
    let progress_file = progress_path(deployment.data_root(), &digest);
    let done = match domicile_durable::read_optional(&progress_file)? {
        None => None,
        Some(bytes) => Some(serde_json::from_slice::<Progress>(&bytes).map_err(|e| {
            SplitError::IngestProgress {
                path: progress_file.clone(),
                detail: format!(
                    "not an ingest progress file ({:?} error at line {} column {}); remove \
                         it to ingest the file from its first line",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
            }
        })?),
    };
    let (mut line_no, mut offset) = match &done {
        Some(p) if p.file == digest => {
            check_progress(&mut file, len, p).map_err(|detail| SplitError::IngestProgress {
                path: progress_file.clone(),
                detail: format!(
                    "{detail}; it does not describe {}: remove it to ingest the file from its \
                     first line (writing a record again stores the same value)",
                    path.display()
                ),
            })?;
            (p.lines, p.bytes)
        }
        _ => (0, 0),
    };
    let mut report = IngestReport {
        resumed_after_line: line_no,
        ..IngestReport::default()
    };
    let io = |action: &'static str| {
        let path = path.to_owned();
        move |e: std::io::Error| SplitError::Io {
            action,
            path: path.clone(),
            source: e,
        }
    };
    file.seek(SeekFrom::Start(offset)).map_err(io("seek in"))?;
    // No further than the bytes digested: a line appended since belongs to another file.
    let mut reader = BufReader::new(file.take(len - offset));

    // The ingest principals, trusted by this deployment's Gates for this run.
    let mut principals = BTreeMap::new();
    let mut directory = PrincipalDirectory::empty();
    for node in deployment.regions() {
        let who = ingest_principal(
            deployment,
            &node.region,
            options.principal,
            options.organisation,
        )?;
        directory.insert(who.clone())?;
        principals.insert(node.region.clone(), who);
    }
    deployment.set_directory(directory)?;
    let why = Purpose::new(JustificationCode::UserRequestedSupport).with_detail("domicile ingest");
    let policy = deployment.policy().clone();

    let mut batch: BTreeMap<Region, Vec<(Subject, Vec<RawRecord>)>> = BTreeMap::new();
    let (mut in_batch, mut batch_bytes) = (0usize, 0u64);
    let mut line_bytes: Vec<u8> = Vec::new();
    let flush = |batch: &mut BTreeMap<Region, Vec<(Subject, Vec<RawRecord>)>>,
                 report: &mut IngestReport,
                 lines: u64,
                 bytes: u64|
     -> Result<(), SplitError> {
        for (region, items) in std::mem::take(batch) {
            let node = deployment
                .region(&region)
                .expect("homes are regions of the policy");
            let written = node.gate.write_batch(&principals[&region], &why, &items)?;
            *report.subjects.entry(region.to_string()).or_default() += items.len() as u64;
            *report.records.entry(region.to_string()).or_default() += written.len() as u64;
        }
        let progress = Progress {
            format: 1,
            file: digest.clone(),
            lines,
            bytes,
        };
        domicile_durable::write_private(
            &progress_file,
            &serde_json::to_vec(&progress).expect("progress serialises"),
        )?;
        if let Some(f) = options.progress {
            f(bytes);
        }
        Ok(())
    };
    loop {
        let read =
            domicile_durable::read_line_bounded(&mut reader, &mut line_bytes, MAX_LINE_BYTES);
        let (n, text) = match read {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(domicile_durable::LineError::Io(e)) => return Err(io("read")(e)),
            Err(e @ domicile_durable::LineError::TooLong { .. }) => {
                return Err(line_error(
                    line_no + 1,
                    format!("{e}, the most one subject's line may hold"),
                ))
            }
            Err(e) => return Err(line_error(line_no + 1, e.to_string())),
        };
        line_no += 1;
        offset += n as u64;
        batch_bytes += n as u64;
        report.lines += 1;
        if text.trim().is_empty() {
            continue;
        }
        // serde's message may quote the input, which holds ids: only where and what kind.
        let line: Line = serde_json::from_str(text).map_err(|e| {
            line_error(
                line_no,
                format!(
                    "not a subject line ({:?} error at column {})",
                    e.classify(),
                    e.column()
                ),
            )
        })?;
        let subject = match Subject::parse(
            &line.subject.id,
            line.subject.residence.as_deref(),
            line.subject.account_country.as_deref(),
        ) {
            Ok(s) => s,
            Err(ResidencyError::InvalidSubjectId { reason, .. }) => {
                return Err(line_error(line_no, format!("invalid subject id: {reason}")))
            }
            Err(e) => {
                match options.on_unknown {
                    OnUnknown::Skip => report.skipped.push((line_no, unknown_home(&e))),
                    OnUnknown::Refuse => {
                        return Err(line_error(
                            line_no,
                            format!("the subject's home region is unknown: {}", unknown_home(&e)),
                        ))
                    }
                }
                continue;
            }
        };
        let home = match policy.home_region(&subject) {
            Ok(home) => home,
            Err(e) => {
                match options.on_unknown {
                    OnUnknown::Skip => report.skipped.push((line_no, unknown_home(&e))),
                    OnUnknown::Refuse => {
                        return Err(line_error(
                            line_no,
                            format!("the subject's home region is unknown: {}", unknown_home(&e)),
                        ))
                    }
                }
                continue;
            }
        };
        let records = line
            .records
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                record(&subject.id, r)
                    .map_err(|why| line_error(line_no, format!("record {}: {why}", i + 1)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        batch.entry(home).or_default().push((subject, records));
        in_batch += 1;
        if in_batch >= options.batch_subjects.max(1) || batch_bytes >= options.batch_bytes {
            flush(&mut batch, &mut report, line_no, offset)?;
            (in_batch, batch_bytes) = (0, 0);
        }
    }
    flush(&mut batch, &mut report, line_no, offset)?;
    Ok(report)
}

/// A record of the input, checked: class, collection and key valid (messages name none of the
/// values, which may be ids).
fn record(subject: &SubjectId, r: LineRecord) -> Result<RawRecord, String> {
    let class: DataClass = r
        .class
        .parse()
        .map_err(|_| format!("unknown data class {:?}", r.class))?;
    let collection = Collection::parse(&r.collection).map_err(|e| e.to_string())?;
    let key = RecordKey::parse(&r.key).map_err(|_| "invalid record key".to_owned())?;
    let value = serde_json::to_vec(&r.value).expect("a JSON value serialises");
    Ok(RawRecord {
        meta: RecordMeta {
            collection,
            key,
            subject: subject.clone(),
            class,
            data_key_version: 0,
        },
        value,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use super::*;

    fn line(id: &str) -> String {
        format!("{{\"subject\": {{\"id\": \"{id}\", \"residence\": \"US\"}}}}\n")
    }

    /// Lines appended while an ingest runs belong to another file (another digest): the run
    /// stops at the bytes it digested, and a rerun, under the new digest, reads them all.
    #[test]
    fn lines_appended_during_an_ingest_are_left_to_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let policies = domicile_residency::PolicyResolver::new()
            .with(Arc::new(domicile_policy_global::GlobalPolicy::new()));
        let deployment = Deployment::create(
            dir.path().join("data"),
            dir.path().join("keys"),
            policies.resolve("global").unwrap(),
            "domicile.example",
        )
        .unwrap();
        let input = dir.path().join("people.jsonl");
        std::fs::write(&input, [line("p-1"), line("p-2"), line("p-3")].concat()).unwrap();
        let appended = std::sync::atomic::AtomicBool::new(false);
        let append = |_: u64| {
            if !appended.swap(true, std::sync::atomic::Ordering::SeqCst) {
                let mut file = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&input)
                    .unwrap();
                file.write_all(line("p-4").as_bytes()).unwrap();
            }
        };
        let options = IngestOptions {
            batch_subjects: 1,
            progress: Some(&append),
            ..IngestOptions::default()
        };
        let report = ingest_file(&deployment, &input, &options).unwrap();
        assert!(appended.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!((report.resumed_after_line, report.lines), (0, 3));
        let again = ingest_file(&deployment, &input, &IngestOptions::default()).unwrap();
        assert_eq!((again.resumed_after_line, again.lines), (0, 4));
        deployment.close().unwrap();
    }
}
