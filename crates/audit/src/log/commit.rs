//! Group commit: appenders queue frames; the first to find no commit in progress leads, writing
//! and fdatasyncing everything queued in one go, while the others wait for it.
//!
//! The lock on the queue is held only to take a sequence number and to copy a frame in; the
//! encoding and the leaf hash are computed by each appender with no lock held. A leader takes
//! the whole queue, so a batch holds every entry that arrived while the previous batch was being
//! synced, and its size grows with the number of waiting appenders. When the batch is durable
//! the leader wakes the first appender of the next batch to lead it (so the disk is not idle
//! while the rest are woken), then wakes exactly the appenders its batch covered, each by its
//! own thread handle: a woken appender checks the durable count without taking the lock, so a
//! thousand of them do not queue for it one after another.
//!
//! Asynchronous appenders ([`super::ticket`]) queue their frames the same way but never lead:
//! they register a [`Waker`] and leave the commit to the log's writer thread, which the
//! first of them to find no commit in progress wakes. Every commit, whoever leads it, wakes the
//! wakers of the entries it made durable in one pass, after the lock is released.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;
use std::task::Waker;
use std::thread::Thread;
use std::time::Instant;

use super::{lock, Files, Inner, Pending};
use crate::files::{self, SEGMENT_HEADER, SEGMENT_MAGIC};
use crate::merkle::Hash;
use crate::AuditError;

/// The most entries in flight for which the writer gathers the next batch. With 64 appenders of
/// one entry each, gathering turns two cohorts of 32 per sync into one of 64 (1.05–1.30× in
/// paired runs of the audit bench's `--only gather`), and 128 appenders gain a little
/// (1.02–1.08×); with 256 it cost a quarter (0.76×), and with 1,024 7–13%: each sync carries
/// over a hundred entries anyway, and the wait idles the disk while they queue again.
const GATHER_AT_MOST: usize = 128;

/// Keeping the queue in sequence order.
impl Pending {
    /// Queues the frame of entry `seq` for appender `who` (`None`: an asynchronous appender,
    /// woken through its waker instead). A frame whose predecessors are all queued goes to the
    /// next batch, with any early frames it now lets follow; one that came before a lower
    /// number waits in `early`.
    fn insert(&mut self, seq: u64, bytes: &[u8], hash: Hash, who: Option<Thread>) {
        if seq != self.filled {
            let mut frame = self.early.pool.pop().unwrap_or_default();
            files::put_frame(&mut frame, bytes, &hash);
            self.early.frames.push((seq, frame, hash, who));
            return;
        }
        files::put_frame(&mut self.queue.frames, bytes, &hash);
        self.queue.hashes.push(hash);
        self.queue.waiters.extend(who);
        self.filled += 1;
        if self.early.frames.is_empty() {
            return;
        }
        // Highest first, so that the next in order is at the end.
        self.early
            .frames
            .sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
        while self.early.frames.last().is_some_and(|e| e.0 == self.filled) {
            let Some((_, mut frame, hash, who)) = self.early.frames.pop() else {
                break;
            };
            self.queue.frames.extend_from_slice(&frame);
            self.queue.hashes.push(hash);
            self.queue.waiters.extend(who);
            self.filled += 1;
            frame.clear();
            self.early.pool.push(frame);
        }
    }

    pub(super) fn refusal(&self) -> Option<AuditError> {
        self.failed.as_ref().map(|reason| AuditError::NotDurable {
            reason: reason.clone(),
        })
    }
}

/// The durable append path.
impl Inner {
    /// Takes the next sequence number, unless the log is failed or closing.
    pub(super) fn reserve(&self) -> Result<u64, AuditError> {
        let mut p = lock(&self.pending);
        if let Some(refused) = p.refusal() {
            return Err(refused);
        }
        if p.closing {
            return Err(AuditError::Closed);
        }
        let seq = p.next_seq;
        p.next_seq += 1;
        Ok(seq)
    }

    /// Queues the frame of entry `seq` (reserved with [`Inner::reserve`]) and returns once it
    /// is durable, leading a commit when none is in progress.
    pub(super) fn enqueue(&self, seq: u64, bytes: &[u8], hash: Hash) -> Result<(), AuditError> {
        let mut p = lock(&self.pending);
        if let Some(refused) = p.refusal() {
            return Err(refused);
        }
        p.insert(seq, bytes, hash, Some(std::thread::current()));
        loop {
            if p.durable > seq {
                return Ok(());
            }
            if let Some(refused) = p.refusal() {
                return Err(refused);
            }
            if !p.flushing && !p.queue.is_empty() {
                // Nobody is committing: lead, and commit everything queued so far.
                p = self.commit(p);
                continue;
            }
            drop(p);
            // Woken by the commit that covers this entry, to lead the next one, because the
            // log failed, or spuriously (park may return early: everything is checked again).
            // A wake-up sent between the unlock and here is not lost: park returns at once.
            std::thread::park();
            if self.durable.load(Ordering::Acquire) > seq {
                return Ok(());
            }
            p = lock(&self.pending);
        }
    }

    /// Queues the frame of entry `seq` (reserved with [`Inner::reserve`]) for an asynchronous
    /// appender, registering `waker` (if given) to be woken once it is durable or refused, and
    /// returns at once. The writer thread is woken when no commit is in progress; one in
    /// progress wakes it when it ends.
    pub(super) fn queue_async(
        &self,
        seq: u64,
        bytes: &[u8],
        hash: Hash,
        waker: Option<&Waker>,
    ) -> Result<(), AuditError> {
        let mut p = lock(&self.pending);
        if let Some(refused) = p.refusal() {
            return Err(refused);
        }
        p.insert(seq, bytes, hash, None);
        if let Some(w) = waker {
            p.wakers.push((seq, w.clone()));
        }
        // While the writer gathers a batch, it is woken only once the batch is complete.
        if !p.flushing && p.queue.len() >= p.gather_want {
            self.wake_writer(&mut p);
        }
        if p.closing {
            // The writer has stopped; `close` commits what is left, and waits for this frame
            // (its sequence number was taken before closing began).
            self.to_closer.notify_all();
        }
        Ok(())
    }

    /// Wakes the writer thread if it sleeps (a condvar notification costs a system call, so
    /// only one is sent per sleep).
    pub(super) fn wake_writer(&self, p: &mut Pending) {
        if p.writer_asleep {
            p.writer_asleep = false;
            self.to_writer.notify_one();
        }
    }

    /// The writer thread: commits whatever asynchronous appenders queued whenever no commit is
    /// in progress, until the log closes (`close` commits what is left) or fails.
    ///
    /// After each of its commits it gathers the next batch for a moment: the appenders it just
    /// woke will queue again, and committing the few that are already queued would split them
    /// into two cohorts that take turns, each carrying half the entries per `fdatasync`. So it
    /// waits until as many entries are queued as were in flight when its commit finished (those
    /// it acknowledged and those queued meanwhile), or for as long as that commit's write and
    /// sync took (at most [`LogConfig::max_gather`](super::LogConfig::max_gather)), whichever
    /// comes first. A lone appender is never kept waiting: with one entry in flight there is
    /// nothing to gather. Nor are more than [`GATHER_AT_MOST`]: each sync then carries over a
    /// hundred entries without waiting, and a wait would only idle the disk while the appenders
    /// queue again.
    pub(super) fn run_writer(&self) {
        let mut p = lock(&self.pending);
        // How many entries to wait for, and until when.
        let mut gather: Option<(usize, Instant)> = None;
        loop {
            if p.closing {
                return;
            }
            let now = Instant::now();
            if gather.is_some_and(|(_, until)| now >= until) {
                gather = None;
            }
            let ready = p.failed.is_none() && !p.flushing && !p.queue.is_empty();
            let enough = gather.is_none_or(|(want, _)| p.queue.len() >= want);
            if ready && enough {
                gather = None;
                p = self.commit(p);
                let (cohort, took) = p.last_commit;
                let worth_it = (2..=GATHER_AT_MOST).contains(&cohort);
                if let (true, Some(max)) = (worth_it, self.config.max_gather) {
                    gather = Some((cohort, Instant::now() + took.min(max)));
                }
                continue;
            }
            p.gather_want = gather.map_or(1, |(want, _)| want);
            p.writer_asleep = true;
            p = match gather {
                Some((_, until)) => {
                    self.to_writer
                        .wait_timeout(p, until.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.to_writer.wait(p).unwrap_or_else(|e| e.into_inner()),
            };
            p.writer_asleep = false;
            p.gather_want = 1;
        }
    }

    /// Commits the queue: called by the appender (or `close`) that finds no commit in
    /// progress. Appenders that queue meanwhile wait for this one to finish, then the first of
    /// them leads the next batch.
    pub(super) fn commit<'a>(&'a self, mut p: MutexGuard<'a, Pending>) -> MutexGuard<'a, Pending> {
        p.flushing = true;
        drop(p);
        let started = Instant::now();
        // The segment is made ready first (a new one started if this one is full, which costs
        // a directory sync), and the queue taken only then, with all that arrived meanwhile.
        let mut files = lock(&self.files);
        let ready = self.ready_segment(&mut files, 0);
        let mut p = lock(&self.pending);
        let spare = std::mem::take(&mut p.spare);
        let mut batch = std::mem::replace(&mut p.queue, spare);
        drop(p);
        let result = ready
            .and_then(|()| self.ready_segment(&mut files, batch.frames.len() as u64))
            .and_then(|()| self.write_batch(&mut files, &batch.frames, &batch.hashes));
        drop(files);
        let took = started.elapsed();
        let mut p = lock(&self.pending);
        p.flushing = false;
        let before = p.durable;
        let mut next_leader = None;
        let mut woken = std::mem::take(&mut p.woken);
        match result {
            Ok(()) => {
                p.durable += batch.len() as u64;
                self.durable.store(p.durable, Ordering::Release);
                p.stats.entries += batch.len() as u64;
                p.stats.batches += 1;
                p.stats.bytes += batch.frames.len() as u64;
                p.stats.write_time += took;
                // In flight as this commit ends: the entries it acknowledges, whose appenders
                // may come back, and those that queued during it.
                p.last_commit = (batch.len() + p.queue.len(), took);
                next_leader = p.queue.waiters.first().cloned();
                if next_leader.is_none() && !p.queue.is_empty() {
                    // Only asynchronous appenders wait in the next batch: the writer leads it.
                    self.wake_writer(&mut p);
                }
                // The covered wakers, taken in one pass (each entry's waker was pushed in
                // the order its task registered it, not necessarily in sequence order).
                let durable = p.durable;
                let mut i = 0;
                while i < p.wakers.len() {
                    if p.wakers[i].0 < durable {
                        woken.push(p.wakers.swap_remove(i).1);
                    } else {
                        i += 1;
                    }
                }
            }
            Err(e) => {
                // Nothing queued can become durable now: every waiting appender is refused.
                p.failed = Some(e.to_string());
                let Pending {
                    queue,
                    early,
                    wakers,
                    ..
                } = &mut *p;
                batch.waiters.append(&mut queue.waiters);
                batch
                    .waiters
                    .extend(early.frames.drain(..).filter_map(|e| e.3));
                queue.clear();
                woken.extend(wakers.drain(..).map(|(_, w)| w));
                self.wake_writer(&mut p);
            }
        }
        // Wake the checkpointer when a checkpoint is due by count, or when these are the first
        // entries since the last checkpoint (its timer starts now).
        let covered = self.covered.load(Ordering::Acquire);
        let first_since = before <= covered && p.durable > covered;
        if first_since || self.due_by_count(p.durable) {
            self.to_checkpointer.notify_one();
        }
        self.to_closer.notify_all();
        drop(p);

        let me = std::thread::current().id();
        if let Some(next) = next_leader.filter(|t| t.id() != me) {
            next.unpark();
        }
        for t in batch.waiters.iter().filter(|t| t.id() != me) {
            t.unpark();
        }
        for w in woken.drain(..) {
            w.wake();
        }
        batch.clear();
        let mut p = lock(&self.pending);
        if p.woken.capacity() < woken.capacity() {
            p.woken = woken;
        }
        if p.spare.frames.capacity() < batch.frames.capacity() {
            p.spare = batch;
        }
        p
    }

    /// Waits until every sequence number taken so far is durable (or the log failed), leading
    /// commits itself when nobody else does: what `close` does before the final checkpoint.
    /// Sets `closing` first, so no new append starts.
    pub(super) fn drain(&self) {
        let mut p = lock(&self.pending);
        p.closing = true;
        self.to_checkpointer.notify_all();
        self.to_writer.notify_all();
        loop {
            if p.failed.is_some() || (!p.flushing && p.filled == p.next_seq && p.queue.is_empty()) {
                return;
            }
            if !p.flushing && !p.queue.is_empty() {
                p = self.commit(p);
                continue;
            }
            // A commit in progress, or an appender between its sequence number and its frame:
            // either ends in a commit, which notifies.
            p = self.to_closer.wait(p).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Starts a new segment, at the next sequence number, when there is none or when `adding`
    /// more bytes would take the current one (if it holds any frame) past the configured size.
    fn ready_segment(&self, files: &mut Files, adding: u64) -> Result<(), AuditError> {
        let full = match &files.segment {
            None => true,
            Some((_, len)) => {
                *len > SEGMENT_HEADER as u64 && len + adding.max(1) > self.config.segment_bytes
            }
        };
        if !full {
            return Ok(());
        }
        // One commit at a time: the durable entries are exactly those before this batch.
        let first_seq = self.durable.load(Ordering::Acquire);
        let path = files::segment_path(&self.dir, first_seq);
        let mut f = files::open_append(&path)?;
        let mut header = SEGMENT_MAGIC.to_vec();
        header.extend_from_slice(&first_seq.to_be_bytes());
        f.write_all(&header)
            .map_err(|e| AuditError::io("writing", &path, e))?;
        files::sync_dir(&files::segments_dir(&self.dir))?;
        files.segment = Some((f, SEGMENT_HEADER as u64));
        files.segment_first = first_seq;
        Ok(())
    }

    /// Writes one batch of frames to the segment, fdatasyncs it, and only then adds the leaves
    /// to the tree.
    fn write_batch(
        &self,
        files: &mut Files,
        buf: &[u8],
        hashes: &[Hash],
    ) -> Result<(), AuditError> {
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
