//! The split journal: an append-only JSON-lines file, fsynced after every line, that makes a
//! split resumable after a crash or Ctrl-C and idempotent when rerun.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::report::{ShredSummary, VerificationSummary};
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
        checkpoints_before: std::collections::BTreeMap<String, String>,
    },
    /// A batch was copied to every target region, durably.
    Batch {
        /// Its index.
        index: u64,
        /// Records read from the source.
        records: u64,
    },
    /// Every record verified in its target regions.
    Verified {
        /// The plan's summary, kept so that finishing can resume after the source is shredded.
        plan: Box<PlanSummary>,
        /// What verification found.
        verification: VerificationSummary,
    },
    /// A subject was crypto-shredded in a source region.
    Shredded(ShredSummary),
    /// The split finished; the signed report is in `report.json` beside the journal.
    Finished {
        /// When, in milliseconds since the Unix epoch.
        finished_ms: u64,
    },
}

/// The journal of one split.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    lines: Vec<JournalLine>,
}

impl Journal {
    /// Opens (creating if needed) the journal at `path`. A torn last line — what a kill during a
    /// write leaves — is cut off; any other line that does not parse is an error naming it.
    pub fn open(path: impl AsRef<Path>) -> Result<Journal, SplitError> {
        let path = path.as_ref().to_owned();
        let text = domicile_durable::read_optional(&path)?.unwrap_or_default();
        let mut lines = Vec::new();
        let mut good_len = 0usize;
        let mut offset = 0usize;
        for raw in text.split_inclusive(|b| *b == b'\n') {
            let complete = raw.ends_with(b"\n");
            match serde_json::from_slice::<JournalLine>(raw) {
                Ok(line) if complete => {
                    lines.push(line);
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
        // Creates the journal (and its directory) durably, mode 0600.
        let file = domicile_durable::open_append(&path)?;
        if good_len < text.len() {
            // The torn line was never acknowledged; cutting it needs no sync of its own, as the
            // next append's fdatasync makes the new length durable with it.
            file.set_len(good_len as u64)
                .map_err(|e| SplitError::io("truncate", &path, e))?;
        }
        Ok(Journal { path, file, lines })
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every line so far.
    pub fn lines(&self) -> &[JournalLine] {
        &self.lines
    }

    /// Appends a line and waits until it is durable.
    pub fn append(&mut self, line: JournalLine) -> Result<(), SplitError> {
        let mut bytes = serde_json::to_vec(&line).expect("journal lines serialise");
        bytes.push(b'\n');
        domicile_durable::append_synced(&mut self.file, &self.path, &bytes)?;
        self.lines.push(line);
        Ok(())
    }

    /// The start line, if the split has started.
    pub fn start(&self) -> Option<&JournalLine> {
        self.lines
            .iter()
            .find(|l| matches!(l, JournalLine::Start { .. }))
    }

    /// Indexes of the batches already copied.
    pub fn batches_done(&self) -> std::collections::BTreeSet<u64> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                JournalLine::Batch { index, .. } => Some(*index),
                _ => None,
            })
            .collect()
    }

    /// The verification line, if verification passed.
    pub fn verified(&self) -> Option<(&PlanSummary, &VerificationSummary)> {
        self.lines.iter().find_map(|l| match l {
            JournalLine::Verified { plan, verification } => Some((plan.as_ref(), verification)),
            _ => None,
        })
    }

    /// Every subject shredded so far.
    pub fn shredded(&self) -> Vec<&ShredSummary> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                JournalLine::Shredded(s) => Some(s),
                _ => None,
            })
            .collect()
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

    #[test]
    fn a_torn_last_line_is_cut_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut journal = Journal::open(&path).unwrap();
        journal
            .append(JournalLine::Batch {
                index: 0,
                records: 3,
            })
            .unwrap();
        journal
            .append(JournalLine::Batch {
                index: 1,
                records: 4,
            })
            .unwrap();
        drop(journal);
        // A kill in the middle of the third line.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"kind\":\"batch\",\"ind");
        std::fs::write(&path, &bytes).unwrap();
        let mut journal = Journal::open(&path).unwrap();
        assert_eq!(journal.batches_done(), [0, 1].into());
        journal
            .append(JournalLine::Batch {
                index: 2,
                records: 5,
            })
            .unwrap();
        drop(journal);
        let journal = Journal::open(&path).unwrap();
        assert_eq!(journal.batches_done(), [0, 1, 2].into());
    }

    #[test]
    fn a_damaged_line_in_the_middle_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        std::fs::write(
            &path,
            b"{\"kind\":\"batch\",\"index\":0,\"records\":1}\nnot json\n{\"kind\":\"finished\",\"finished_ms\":1}\n",
        )
        .unwrap();
        let err = Journal::open(&path).unwrap_err();
        assert!(err.to_string().contains("line 2 does not parse"), "{err}");
        // Nothing was changed by the failed open.
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .ends_with("\"finished_ms\":1}\n"));
    }
}
