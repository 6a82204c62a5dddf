//! The background checkpoint signer: signs a checkpoint when enough entries or enough time have
//! passed, persisting the tree cache first, and never signs a history that forks the last one.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{lock, Files, Inner, LastCheckpoint, Signed};
use crate::checkpoint::Checkpoint;
use crate::files;
use crate::merkle::{hex, MerkleTree};
use crate::note::Note;
use crate::AuditError;

/// Checkpoint signing.
impl Inner {
    /// The background thread: signs checkpoints when enough entries or time have passed.
    pub(super) fn run_checkpointer(&self) {
        loop {
            let mut p = lock(&self.pending);
            loop {
                if p.closing {
                    // `close` signs the final checkpoint itself.
                    return;
                }
                let wait = self.time_to_checkpoint(p.durable);
                if self.due_by_count(p.durable) || wait == Some(Duration::ZERO) {
                    break;
                }
                p = match wait {
                    Some(w) => {
                        self.to_checkpointer
                            .wait_timeout(p, w)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                    None => self
                        .to_checkpointer
                        .wait(p)
                        .unwrap_or_else(|e| e.into_inner()),
                };
            }
            drop(p);
            // A checkpoint that cannot be signed leaves entries durable but unsigned; the next
            // attempt (by count, time, or close) retries, and `close` reports the error.
            let _ = self.sign_checkpoint();
        }
    }

    /// How long until a checkpoint is due by time; `None` when there is nothing to sign.
    fn time_to_checkpoint(&self, durable: u64) -> Option<Duration> {
        let interval = self.config.checkpoint_interval?;
        let last = lock(&self.last);
        let covered = last.covered();
        if durable <= covered {
            // Nothing to sign: sleep until an append or close wakes the checkpointer.
            return None;
        }
        Some(interval.saturating_sub(last.at.elapsed()))
    }

    pub(super) fn due_by_count(&self, durable: u64) -> bool {
        let every = self.config.checkpoint_every;
        if every == 0 {
            return false;
        }
        let covered = lock(&self.last).covered();
        durable >= covered + every
    }

    /// Appends the tree hashes computed since the last call to the level files and syncs them.
    /// Runs with each checkpoint, not with each batch: writing several files per batch would
    /// make every fdatasync of the segment flush them too.
    fn persist_tree(&self, files: &mut Files, tree: &MerkleTree) -> Result<(), AuditError> {
        let Files {
            levels, persisted, ..
        } = files;
        for (k, level) in tree.levels().iter().enumerate() {
            if persisted[k] < level.len() {
                let path = || files::level_path(&self.dir, k);
                levels[k]
                    .write_all(level[persisted[k]..].as_flattened())
                    .map_err(|e| AuditError::io("writing", path(), e))?;
                levels[k]
                    .sync_data()
                    .map_err(|e| AuditError::io("syncing", path(), e))?;
                persisted[k] = level.len();
            }
        }
        Ok(())
    }

    /// Signs a checkpoint over every durable entry, unless the latest already covers them,
    /// after persisting the tree; returns the latest checkpoint note.
    pub(super) fn sign_checkpoint(&self) -> Result<Option<Note>, AuditError> {
        let mut files = lock(&self.files);
        let mut last = lock(&self.last);
        let tree = self.tree.read().unwrap_or_else(|p| p.into_inner());
        let size = tree.size();
        self.persist_tree(&mut files, &tree)?;
        if let Some(latest) = &last.signed {
            if size == latest.size {
                return Ok(Some(latest.note.clone()));
            }
            // Never sign a history that does not extend the last one signed.
            let root_then = tree
                .root_at(latest.size)
                .map_err(|e| AuditError::Inconsistent {
                    reason: format!(
                        "the tree of {size} entries is smaller than the last checkpoint: {e}"
                    ),
                })?;
            if root_then != latest.root {
                return Err(AuditError::Inconsistent {
                    reason: format!(
                        "the tree at size {} has root {}, but the last checkpoint signed {}",
                        latest.size,
                        hex(&root_then),
                        hex(&latest.root)
                    ),
                });
            }
        } else if size == 0 {
            return Ok(None);
        }
        let cp = Checkpoint {
            origin: self.config.signing_key.name().to_owned(),
            size,
            root: tree.root(),
        };
        let note = self.config.signing_key.sign_note(&cp.to_body())?;
        let chain = append_frame_durably(
            &files::checkpoints_path(&self.dir),
            &last.chain,
            note.to_text().as_bytes(),
        )?;
        if let Some(state) = &self.config.signed_state {
            // Remembered apart from the log, so that cutting the log back is found on open.
            domicile_durable::write_private(state, note.to_text().as_bytes())?;
        }
        *last = LastCheckpoint {
            signed: Some(Signed {
                size,
                root: cp.root,
                note: note.clone(),
            }),
            at: Instant::now(),
            chain,
        };
        Ok(Some(note))
    }
}

/// Appends one chained frame to a notes file and fdatasyncs it; returns the frame's check,
/// which the next frame chains to.
pub(super) fn append_frame_durably(
    path: &Path,
    prev: &[u8; 8],
    payload: &[u8],
) -> Result<[u8; 8], AuditError> {
    let (frame, check) = files::chained_frame(prev, payload);
    let mut f = files::open_append(path)?;
    f.write_all(&frame)
        .and_then(|_| f.sync_data())
        .map_err(|e| AuditError::io("writing", path, e))?;
    Ok(check)
}
