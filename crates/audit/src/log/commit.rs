//! Group commit: appenders queue frames; the first to find no commit in progress leads, writing
//! and fdatasyncing everything queued in one go, while the others wait for it.

use std::io::Write;
use std::sync::MutexGuard;
use std::time::Instant;

use super::{lock, Inner, Pending};
use crate::files::{self, SEGMENT_HEADER, SEGMENT_MAGIC};
use crate::merkle::Hash;
use crate::AuditError;

/// The durable append path.
impl Inner {
    /// Commits everything queued: called by the appender that finds no commit in progress.
    /// Appenders that queue meanwhile wait for this one to finish, then one of them leads the
    /// next batch: a group commit with no hand-off to another thread on the way.
    pub(super) fn commit<'a>(&'a self, mut p: MutexGuard<'a, Pending>) -> MutexGuard<'a, Pending> {
        p.flushing = true;
        let buf = std::mem::take(&mut p.buf);
        let hashes = std::mem::take(&mut p.hashes);
        drop(p);
        let started = Instant::now();
        let result = self.write_batch(&buf, &hashes);
        let took = started.elapsed();
        let mut p = lock(&self.pending);
        p.flushing = false;
        let before = p.durable;
        match result {
            Ok(()) => {
                p.durable += hashes.len() as u64;
                p.stats.entries += hashes.len() as u64;
                p.stats.batches += 1;
                p.stats.bytes += buf.len() as u64;
                p.stats.write_time += took;
            }
            Err(e) => p.failed = Some(e.to_string()),
        }
        self.to_appenders.notify_all();
        // Wake the checkpointer when a checkpoint is due by count, or when these are the first
        // entries since the last checkpoint (its timer starts now).
        let covered = lock(&self.last).covered();
        let first_since = before <= covered && p.durable > covered;
        if first_since || self.due_by_count(p.durable) {
            self.to_checkpointer.notify_one();
        }
        p
    }

    /// Writes one batch of frames to the segment (starting a new segment when this one is
    /// full), fdatasyncs it, and only then adds the leaves to the tree.
    fn write_batch(&self, buf: &[u8], hashes: &[Hash]) -> Result<(), AuditError> {
        let mut files = lock(&self.files);
        let first_seq = self.tree.read().unwrap_or_else(|p| p.into_inner()).size();
        let rotate = match &files.segment {
            None => true,
            Some((_, len)) => {
                *len > SEGMENT_HEADER as u64 && len + buf.len() as u64 > self.config.segment_bytes
            }
        };
        if rotate {
            let path = files::segment_path(&self.dir, first_seq);
            let mut f = files::open_append(&path)?;
            let mut header = SEGMENT_MAGIC.to_vec();
            header.extend_from_slice(&first_seq.to_be_bytes());
            f.write_all(&header)
                .map_err(|e| AuditError::io("writing", &path, e))?;
            files::sync_dir(&files::segments_dir(&self.dir))?;
            files.segment = Some((f, SEGMENT_HEADER as u64));
            files.segment_first = first_seq;
        }
        let first = files.segment_first;
        let Some((file, len)) = files.segment.as_mut() else {
            return Err(AuditError::NotDurable {
                reason: "no segment is open".into(),
            });
        };
        let path = || files::segment_path(&self.dir, first);
        file.write_all(buf)
            .map_err(|e| AuditError::io("writing", path(), e))?;
        // The durability point: nothing is acknowledged before this returns.
        file.sync_data()
            .map_err(|e| AuditError::io("syncing", path(), e))?;
        *len += buf.len() as u64;

        let mut tree = self.tree.write().unwrap_or_else(|p| p.into_inner());
        for h in hashes {
            tree.push(*h);
        }
        Ok(())
    }
}
