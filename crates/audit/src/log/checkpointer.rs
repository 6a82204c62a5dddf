//! The background checkpoint signer: signs a checkpoint when enough entries or enough time have
//! passed, persisting the tree cache first, and never signs a history that forks the last one.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{lock, Inner, LastCheckpoint, Signed, TreeFiles};
use crate::checkpoint::Checkpoint;
use crate::files;
use crate::merkle::{hex, Hash};
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
        if durable <= self.covered.load(Ordering::Acquire) {
            // Nothing to sign: sleep until an append or close wakes the checkpointer.
            return None;
        }
        let since = Duration::from_nanos(self.signed_at.load(Ordering::Acquire));
        Some(interval.saturating_sub(self.opened.elapsed().saturating_sub(since)))
    }

    pub(super) fn due_by_count(&self, durable: u64) -> bool {
        let every = self.config.checkpoint_every;
        if every == 0 {
            return false;
        }
        durable >= self.covered.load(Ordering::Acquire) + every
    }

    /// Appends the tree hashes computed since the last call to the level files and syncs them.
    /// Runs with each checkpoint, not with each batch: writing several files per batch would
    /// make every fdatasync of the segment flush them too. `fresh[k]` are the hashes of level
    /// `k` not yet on disk, copied out of the tree so that no lock a commit needs is held while
    /// they are written.
    fn persist_tree(&self, files: &mut TreeFiles, fresh: &[Vec<Hash>]) -> Result<(), AuditError> {
        let TreeFiles { levels, persisted } = files;
        for (k, new) in fresh.iter().enumerate() {
            if new.is_empty() {
                continue;
            }
            let path = || files::level_path(&self.dir, k);
            levels[k]
                .write_all(new.as_flattened())
                .map_err(|e| AuditError::io("writing", path(), e))?;
            levels[k]
                .sync_data()
                .map_err(|e| AuditError::io("syncing", path(), e))?;
            persisted[k] += new.len();
        }
        Ok(())
    }

    /// Signs a checkpoint over every durable entry, unless the latest already covers them,
    /// after persisting the tree; returns the latest checkpoint note.
    ///
    /// Off the commit path: the tree is read-locked only to copy out its size, roots and new
    /// hashes; the level files, the signature and the notes file are written with no lock a
    /// commit takes, so appends go on being acknowledged while a checkpoint is signed.
    pub(super) fn sign_checkpoint(&self) -> Result<Option<Note>, AuditError> {
        let mut last = lock(&self.last);
        let mut tree_files = lock(&self.tree_files);
        let (size, root, root_then, fresh) = {
            let tree = self.tree.read().unwrap_or_else(|p| p.into_inner());
            let size = tree.size();
            let root_then = match &last.signed {
                Some(latest) if size != latest.size => Some(tree.root_at(latest.size).map_err(
                    |e| AuditError::Inconsistent {
                        reason: format!(
                            "the tree of {size} entries is smaller than the last checkpoint: {e}"
                        ),
                    },
                )?),
                _ => None,
            };
            let fresh: Vec<Vec<Hash>> = tree
                .levels()
                .iter()
                .zip(&tree_files.persisted)
                .map(|(level, &done)| level.get(done..).unwrap_or_default().to_vec())
                .collect();
            (size, tree.root(), root_then, fresh)
        };
        self.persist_tree(&mut tree_files, &fresh)?;
        drop(tree_files);
        if let Some(latest) = &last.signed {
            if size == latest.size {
                return Ok(Some(latest.note.clone()));
            }
            // Never sign a history that does not extend the last one signed.
            if let Some(root_then) = root_then.filter(|r| *r != latest.root) {
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
            root,
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
            chain,
        };
        self.covered.store(size, Ordering::Release);
        let at = u64::try_from(self.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.signed_at.store(at, Ordering::Release);
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
