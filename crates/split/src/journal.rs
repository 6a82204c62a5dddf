//! The split journal: an append-only JSON-lines file, fsynced after every line, that makes a
//! split resumable after a crash or Ctrl-C and idempotent when rerun.
//!
//! Every line is authenticated: it carries an HMAC-SHA256, under a key derived from the
//! migration key, over the deployment's trust domain, the MAC of the line
//! before it, and the line itself. The start line names the plan's fingerprint, so the chain
//! binds every later line to that plan in that deployment. A line copied from another journal,
//! edited, dropped from the middle or reordered fails its MAC, and opening the journal is then
//! a typed error ([`SplitError::JournalForged`]): a journal a user can edit is input, and only
//! lines the migration key vouches for are evidence (DESIGN.md invariant 11).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use domicile_residency::Region;
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::report::{MigrationKey, ShredSummary, VerificationSummary};
use crate::{PlanSummary, SplitError};

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JournalLine {
    /// The split began: which plan, in batches of how many subjects, and every region's signed
    /// checkpoint before anything was moved.
    Start {
        /// SHA-256 over the plan, hex.
        plan: String,
        /// Subjects per batch.
        batch_subjects: usize,
        /// Batches in all.
        batches: u64,
        /// When, in milliseconds since the Unix epoch.
        started_ms: u64,
        /// Region → checkpoint note text, before.
        checkpoints_before: BTreeMap<String, String>,
    },
    /// A batch was copied to every target region, durably.
    Batch {
        /// Its index.
        index: u64,
        /// Records read from the source.
        records: u64,
        /// Records written per target region.
        #[serde(default)]
        written: BTreeMap<Region, u64>,
    },
    /// Every record verified in its target regions.
    Verified {
        /// The plan's fingerprint (as in the start line) that was verified.
        plan_fingerprint: String,
        /// The plan's summary, kept so that finishing can resume after the source is shredded.
        plan: Box<PlanSummary>,
        /// What verification found.
        verification: VerificationSummary,
        /// Source region → the pseudonyms (in that region's log) of every subject whose
        /// records were read back from every target region the plan names. Only these may be
        /// shredded.
        subjects: VerifiedSubjects,
    },
    /// Shredding began: written, durably, before the first data key is destroyed. From here on
    /// a rerun finishes from the verification above instead of planning again, from a source
    /// that may already have lost keys whose receipts a crash kept out of the journal.
    Shredding {
        /// When, in milliseconds since the Unix epoch.
        started_ms: u64,
    },
    /// The receipts of a batch of shreds, written durably before any of its keys is destroyed:
    /// a crash between the keys destroyed and their [`Shredded`](Self::Shredded) lines leaves
    /// them here, and the rerun journals them as shredded (their subjects are no longer in the
    /// store to be shredded again).
    ShredsAnnounced {
        /// One summary per subject of the batch.
        shreds: Vec<ShredSummary>,
    },
    /// A subject was crypto-shredded in a source region.
    Shredded(ShredSummary),
    /// Every shred of the [`ShredsAnnounced`](Self::ShredsAnnounced) line at position
    /// `announced` (among the journal's lines, from 0) is done, with exactly the receipts it
    /// announced: one short line for the batch instead of a [`Shredded`](Self::Shredded) line
    /// per subject, which repeated the announcement and doubled the journal.
    ShredsDone {
        /// The announcement's position among the journal's lines, from 0.
        announced: u64,
    },
    /// The split finished; the signed report is in `report.json` beside the journal.
    Finished {
        /// When, in milliseconds since the Unix epoch.
        finished_ms: u64,
    },
}

/// Source region → the sorted pseudonyms of the subjects a verification read back from every
/// target region.
pub type VerifiedSubjects = BTreeMap<Region, Vec<String>>;

/// A journal line as it is stored: the line and its MAC.
#[derive(Serialize, Deserialize)]
struct StoredLine {
    line: JournalLine,
    /// HMAC-SHA256, hex.
    mac: String,
}

/// The journal of one split.
pub struct Journal {
    path: PathBuf,
    file: File,
    lines: Vec<JournalLine>,
    key: hmac::Key,
    binding: Vec<u8>,
    /// The MAC of the last line (zeros before the first).
    chain: [u8; 32],
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("lines", &self.lines.len())
            .finish_non_exhaustive()
    }
}

fn mac_message(binding: &[u8], prev: &[u8; 32], line: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(line.len() + binding.len() + 96);
    for part in [b"domicile split journal v1".as_slice(), binding, prev, line] {
        msg.extend_from_slice(&(part.len() as u64).to_be_bytes());
        msg.extend_from_slice(part);
    }
    msg
}

fn mac_of(key: &hmac::Key, binding: &[u8], prev: &[u8; 32], line: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(hmac::sign(key, &mac_message(binding, prev, line)).as_ref());
    out
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Journal {
    /// Opens (creating if needed) the journal at `path` of a split of the deployment in
    /// `trust_domain`, authenticated under `key`. A torn last line — what a
    /// kill during a write leaves — is cut off; any other line that does not parse is an error
    /// naming it, and a line whose MAC does not verify is [`SplitError::JournalForged`].
    pub fn open(
        path: impl AsRef<Path>,
        key: &MigrationKey,
        trust_domain: &str,
    ) -> Result<Journal, SplitError> {
        let path = path.as_ref().to_owned();
        let key = key.journal_key();
        let binding = trust_domain.as_bytes().to_vec();
        let text = domicile_durable::read_optional(&path)?.unwrap_or_default();
        let mut lines = Vec::new();
        let mut chain = [0u8; 32];
        let mut good_len = 0usize;
        let mut offset = 0usize;
        for raw in text.split_inclusive(|b| *b == b'\n') {
            let complete = raw.ends_with(b"\n");
            match serde_json::from_slice::<StoredLine>(raw) {
                Ok(stored) if complete => {
                    let bytes = serde_json::to_vec(&stored.line).expect("journal lines serialise");
                    // Checked in constant time by ring.
                    let tag = unhex(&stored.mac);
                    let ok = tag.is_some_and(|tag| {
                        hmac::verify(&key, &mac_message(&binding, &chain, &bytes), &tag).is_ok()
                    });
                    if !ok {
                        return Err(SplitError::JournalForged {
                            path: path.clone(),
                            line: lines.len() + 1,
                        });
                    }
                    let want = tag.expect("verified above");
                    chain = want;
                    lines.push(stored.line);
                    good_len = offset + raw.len();
                }
                _ if !complete => break, // a torn tail: never acknowledged
                Ok(_) => unreachable!("complete handled above"),
                Err(e) => {
                    return Err(SplitError::JournalMismatch {
                        path: path.clone(),
                        detail: format!("line {} does not parse: {e}", lines.len() + 1),
                    })
                }
            }
            offset += raw.len();
        }
        // A line that says an announcement's shreds are done must name one before it, and no
        // other done line may name the same one (its receipts would count twice).
        let mut done = std::collections::HashMap::new();
        for (i, line) in lines.iter().enumerate() {
            if let JournalLine::ShredsDone { announced } = line {
                if let Some(earlier) = done.insert(*announced, i) {
                    return Err(SplitError::JournalMismatch {
                        path: path.clone(),
                        detail: format!(
                            "lines {} and {} both say the shreds announced at line {} are done",
                            earlier + 1,
                            i + 1,
                            announced.saturating_add(1)
                        ),
                    });
                }
                let names_one = usize::try_from(*announced).ok().is_some_and(|a| {
                    a < i && matches!(lines[a], JournalLine::ShredsAnnounced { .. })
                });
                if !names_one {
                    return Err(SplitError::JournalMismatch {
                        path: path.clone(),
                        detail: format!(
                            "line {} says the shreds announced at line {} are done, and that line \
                             announces none",
                            i + 1,
                            announced.saturating_add(1)
                        ),
                    });
                }
            }
        }
        // Creates the journal (and its directory) durably, mode 0600.
        let file = domicile_durable::open_append(&path)?;
        if good_len < text.len() {
            // The torn line was never acknowledged; cutting it needs no sync of its own, as the
            // next append's fdatasync makes the new length durable with it.
            file.set_len(good_len as u64)
                .map_err(|e| SplitError::io("truncate", &path, e))?;
        }
        Ok(Journal {
            path,
            file,
            lines,
            key,
            binding,
            chain,
        })
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every line so far.
    pub fn lines(&self) -> &[JournalLine] {
        &self.lines
    }

    /// Appends a line, authenticated and chained to the one before, and waits until it is
    /// durable.
    pub fn append(&mut self, line: JournalLine) -> Result<(), SplitError> {
        self.append_all(std::iter::once(line))
    }

    /// Appends several lines, each authenticated and chained to the one before, in one write
    /// and one sync: a batch of shred receipts costs one fdatasync, not one per subject. A crash
    /// during the write leaves a prefix of them, which [`open`](Self::open) reads as it reads
    /// any torn tail.
    pub fn append_all(
        &mut self,
        lines: impl IntoIterator<Item = JournalLine>,
    ) -> Result<(), SplitError> {
        let mut bytes = Vec::new();
        let mut chain = self.chain;
        let mut stored_lines = Vec::new();
        for line in lines {
            let json = serde_json::to_vec(&line).expect("journal lines serialise");
            let mac = mac_of(&self.key, &self.binding, &chain, &json);
            let stored = StoredLine {
                line,
                mac: hex(&mac),
            };
            serde_json::to_writer(&mut bytes, &stored).expect("journal lines serialise");
            bytes.push(b'\n');
            chain = mac;
            stored_lines.push(stored.line);
        }
        if stored_lines.is_empty() {
            return Ok(());
        }
        domicile_durable::append_synced(&mut self.file, &self.path, &bytes)?;
        self.chain = chain;
        self.lines.extend(stored_lines);
        Ok(())
    }

    /// The start line, if the split has started.
    pub fn start(&self) -> Option<&JournalLine> {
        self.lines
            .iter()
            .find(|l| matches!(l, JournalLine::Start { .. }))
    }

    /// Indexes of the batches already copied.
    pub fn batches_done(&self) -> BTreeSet<u64> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                JournalLine::Batch { index, .. } => Some(*index),
                _ => None,
            })
            .collect()
    }

    /// Records read and written per target region, over every batch the journal records (all
    /// runs of this split, not only the latest).
    pub fn copied(&self) -> (u64, BTreeMap<Region, u64>) {
        let mut read = 0;
        let mut written: BTreeMap<Region, u64> = BTreeMap::new();
        for l in &self.lines {
            if let JournalLine::Batch {
                records,
                written: w,
                ..
            } = l
            {
                read += records;
                for (r, n) in w {
                    *written.entry(r.clone()).or_insert(0) += n;
                }
            }
        }
        (read, written)
    }

    /// The latest verification line whose plan is the one the start line names, if
    /// verification passed: (plan summary, what it found, the verified subjects' pseudonyms per
    /// source region).
    pub fn verified(&self) -> Option<(&PlanSummary, &VerificationSummary, &VerifiedSubjects)> {
        let started = match self.start()? {
            JournalLine::Start { plan, .. } => plan,
            _ => return None,
        };
        self.lines.iter().rev().find_map(|l| match l {
            JournalLine::Verified {
                plan_fingerprint,
                plan,
                verification,
                subjects,
            } if plan_fingerprint == started => Some((plan.as_ref(), verification, subjects)),
            _ => None,
        })
    }

    /// Whether shredding has begun (a [`JournalLine::Shredding`] line, or a receipt written by
    /// a build from before that line existed).
    pub fn shredding_started(&self) -> bool {
        self.lines.iter().any(|l| {
            matches!(
                l,
                JournalLine::Shredding { .. }
                    | JournalLine::Shredded(_)
                    | JournalLine::ShredsDone { .. }
            )
        })
    }

    /// Appends the announcement of a batch of shreds, durably, and returns its position, for
    /// the [`JournalLine::ShredsDone`] line that follows once its keys are destroyed.
    pub fn announce(&mut self, shreds: Vec<ShredSummary>) -> Result<u64, SplitError> {
        let at = self.lines.len() as u64;
        self.append(JournalLine::ShredsAnnounced { shreds })?;
        Ok(at)
    }

    /// The shreds announced in `region` that have no [`JournalLine::Shredded`] line yet.
    pub fn announced_unreceipted(&self, region: &Region) -> Vec<&ShredSummary> {
        let receipted: std::collections::BTreeSet<&str> = self
            .shredded()
            .into_iter()
            .filter(|s| &s.region == region)
            .map(|s| s.subject_pseudonym.as_str())
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        self.lines
            .iter()
            .filter_map(|l| match l {
                JournalLine::ShredsAnnounced { shreds } => Some(shreds),
                _ => None,
            })
            .flatten()
            .filter(|s| &s.region == region && !receipted.contains(s.subject_pseudonym.as_str()))
            .filter(|s| seen.insert(s.subject_pseudonym.as_str()))
            .collect()
    }

    /// Every subject shredded so far: each [`JournalLine::Shredded`] line, and the receipts of
    /// each announcement a [`JournalLine::ShredsDone`] line names.
    pub fn shredded(&self) -> Vec<&ShredSummary> {
        let mut out = Vec::new();
        for line in &self.lines {
            match line {
                JournalLine::Shredded(s) => out.push(s),
                JournalLine::ShredsDone { announced } => {
                    // `open` checked that it names an announcement.
                    if let Some(JournalLine::ShredsAnnounced { shreds }) =
                        usize::try_from(*announced)
                            .ok()
                            .and_then(|a| self.lines.get(a))
                    {
                        out.extend(shreds);
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Whether the split finished.
    pub fn finished(&self) -> bool {
        self.lines
            .iter()
            .any(|l| matches!(l, JournalLine::Finished { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dir: &Path) -> MigrationKey {
        MigrationKey::load_or_create(&dir.join("migration.key")).unwrap()
    }

    fn batch(index: u64) -> JournalLine {
        JournalLine::Batch {
            index,
            records: 3,
            written: BTreeMap::new(),
        }
    }

    fn open(path: &Path, key: &MigrationKey) -> Result<Journal, SplitError> {
        Journal::open(path, key, "domicile.example")
    }

    #[test]
    fn a_torn_last_line_is_cut_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let key = key(dir.path());
        let path = dir.path().join("journal.jsonl");
        let mut journal = open(&path, &key).unwrap();
        journal.append(batch(0)).unwrap();
        journal.append(batch(1)).unwrap();
        drop(journal);
        // A kill in the middle of the third line.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"line\":{\"kind\":\"batch\",\"ind");
        std::fs::write(&path, &bytes).unwrap();
        let mut journal = open(&path, &key).unwrap();
        assert_eq!(journal.batches_done(), [0, 1].into());
        journal.append(batch(2)).unwrap();
        drop(journal);
        let journal = open(&path, &key).unwrap();
        assert_eq!(journal.batches_done(), [0, 1, 2].into());
    }

    #[test]
    fn a_damaged_line_in_the_middle_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let key = key(dir.path());
        let path = dir.path().join("journal.jsonl");
        let mut journal = open(&path, &key).unwrap();
        journal.append(batch(0)).unwrap();
        drop(journal);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"not json\n");
        std::fs::write(&path, &bytes).unwrap();
        let err = open(&path, &key).unwrap_err();
        assert!(err.to_string().contains("line 2 does not parse"), "{err}");
    }

    #[test]
    fn a_line_from_another_journal_or_an_edited_line_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = key(dir.path());
        let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
        let mut ja = open(&a, &key).unwrap();
        ja.append(batch(0)).unwrap();
        ja.append(batch(7)).unwrap();
        let mut jb = open(&b, &key).unwrap();
        jb.append(batch(1)).unwrap();
        drop((ja, jb));
        // Line 2 of `a` appended to `b`: same key, but chained to another line.
        let a_text = std::fs::read_to_string(&a).unwrap();
        let copied = a_text.lines().nth(1).unwrap();
        let mut b_text = std::fs::read_to_string(&b).unwrap();
        b_text.push_str(copied);
        b_text.push('\n');
        std::fs::write(&b, &b_text).unwrap();
        let err = open(&b, &key).unwrap_err();
        assert!(
            matches!(err, SplitError::JournalForged { line: 2, .. }),
            "{err}"
        );
        // An edited value in a line of `a`.
        std::fs::write(&a, a_text.replace("\"index\":7", "\"index\":8")).unwrap();
        assert!(matches!(
            open(&a, &key).unwrap_err(),
            SplitError::JournalForged { line: 2, .. }
        ));
        // Another key, or another deployment, verifies nothing.
        std::fs::write(&a, &a_text).unwrap();
        let other = MigrationKey::load_or_create(&dir.path().join("other.key")).unwrap();
        assert!(matches!(
            open(&a, &other).unwrap_err(),
            SplitError::JournalForged { line: 1, .. }
        ));
        assert!(matches!(
            Journal::open(&a, &key, "other.example").unwrap_err(),
            SplitError::JournalForged { line: 1, .. }
        ));
        assert_eq!(open(&a, &key).unwrap().batches_done(), [0, 7].into());
    }

    #[test]
    fn a_done_line_stands_for_its_announcements_receipts_and_must_name_one() {
        let dir = tempfile::tempdir().unwrap();
        let key = key(dir.path());
        let path = dir.path().join("journal.jsonl");
        let summary = |n: u8| ShredSummary {
            region: domicile_residency::Region::parse("global").unwrap(),
            subject_pseudonym: format!("{n:02x}").repeat(32),
            records: 3,
            data_key_version: 1,
            key_destroyed_now: true,
        };
        let mut journal = open(&path, &key).unwrap();
        journal.append(batch(0)).unwrap();
        let first = journal.announce(vec![summary(1), summary(2)]).unwrap();
        assert_eq!(first, 1);
        let second = journal.announce(vec![summary(3)]).unwrap();
        journal
            .append(JournalLine::ShredsDone { announced: first })
            .unwrap();
        drop(journal);
        let journal = open(&path, &key).unwrap();
        let done: Vec<&str> = journal
            .shredded()
            .iter()
            .map(|s| s.subject_pseudonym.as_str())
            .collect();
        assert_eq!(done, [summary(1), summary(2)].map(|s| s.subject_pseudonym));
        let region = domicile_residency::Region::parse("global").unwrap();
        let pending: Vec<&str> = journal
            .announced_unreceipted(&region)
            .iter()
            .map(|s| s.subject_pseudonym.as_str())
            .collect();
        assert_eq!(pending, [summary(3).subject_pseudonym]);
        assert!(journal.shredding_started());
        drop(journal);
        // A done line naming a line that announces nothing (a batch line, or one after it) is
        // refused, although its MAC is good.
        for wrong in [0, second + 2] {
            let bad = dir.path().join(format!("bad-{wrong}.jsonl"));
            let mut journal = open(&bad, &key).unwrap();
            journal.append(batch(0)).unwrap();
            journal.announce(vec![summary(1)]).unwrap();
            journal
                .append(JournalLine::ShredsDone { announced: wrong })
                .unwrap();
            drop(journal);
            let err = open(&bad, &key).unwrap_err();
            assert!(
                matches!(&err, SplitError::JournalMismatch { detail, .. } if detail.contains("announces none")),
                "{err}"
            );
        }
        // Two done lines for one announcement would count its receipts twice: refused.
        let twice = dir.path().join("twice.jsonl");
        let mut journal = open(&twice, &key).unwrap();
        journal.append(batch(0)).unwrap();
        let announced = journal.announce(vec![summary(1)]).unwrap();
        for _ in 0..2 {
            journal
                .append(JournalLine::ShredsDone { announced })
                .unwrap();
        }
        drop(journal);
        let err = open(&twice, &key).unwrap_err();
        assert!(
            matches!(&err, SplitError::JournalMismatch { detail, .. } if detail.contains("lines 3 and 4 both say the shreds announced at line 2")),
            "{err}"
        );
    }
}
