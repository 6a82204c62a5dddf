//! The writer: [`AuditLog`], with group commit, persisted tree state and signed checkpoints.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::checkpoint::Checkpoint;
use crate::entry::{Entry, SEQ_OFFSET};
use crate::files::{self, SEGMENT_HEADER, SEGMENT_MAGIC};
use crate::merkle::{hex, leaf_hash, verify_consistency, verify_inclusion, Hash, MerkleTree};
use crate::note::{Note, SigningKey, VerifierKey};
use crate::AuditError;

/// How a log is run.
#[derive(Debug)]
pub struct LogConfig {
    /// The checkpoint signing key. Its name is the log's origin.
    pub signing_key: SigningKey,
    /// Sign a checkpoint once this many entries have been appended since the last one
    /// (0: never by count).
    pub checkpoint_every: u64,
    /// Sign a checkpoint when this much time has passed since the last one and there are new
    /// entries (`None`: never by time).
    pub checkpoint_interval: Option<Duration>,
    /// Start a new segment file once the current one reaches this many bytes.
    pub segment_bytes: u64,
}

impl LogConfig {
    /// Defaults: a checkpoint every 1000 entries or every second, 64 MiB segments.
    pub fn new(signing_key: SigningKey) -> Self {
        LogConfig {
            signing_key,
            checkpoint_every: 1000,
            checkpoint_interval: Some(Duration::from_secs(1)),
            segment_bytes: 64 << 20,
        }
    }
}

/// Proof that an entry is durable: its position and leaf hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The entry's sequence number (its leaf index).
    pub seq: u64,
    /// `SHA-256(0x00 ‖ canonical bytes)`.
    pub leaf_hash: Hash,
}

/// Counters since the log was opened, for operators and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Entries made durable.
    pub entries: u64,
    /// Group commits: one write and one `fdatasync` each.
    pub batches: u64,
    /// Bytes written to segments, framing included.
    pub bytes: u64,
    /// Time spent writing and syncing segments.
    pub write_time: Duration,
}

/// What [`AuditLog::open`] found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Entries in the log.
    pub entries: u64,
    /// The size of the latest signed checkpoint, if any.
    pub checkpoint_size: Option<u64>,
    /// A torn write found at the end of the last segment and truncated: (file, offset, bytes
    /// removed). Such an entry was never acknowledged.
    pub torn_tail: Option<(PathBuf, u64, u64)>,
    /// Whether the persisted tree disagreed with the entries and was discarded.
    pub tree_rebuilt: bool,
    /// Entries whose leaf hash was recomputed because the persisted tree did not cover them
    /// (it is written with each checkpoint, so after a clean close this is 0).
    pub rehashed: u64,
}

/// The latest signed checkpoint.
#[derive(Debug, Clone)]
struct Signed {
    size: u64,
    root: Hash,
    note: Note,
}

struct Pending {
    next_seq: u64,
    buf: Vec<u8>,
    hashes: Vec<Hash>,
    durable: u64,
    failed: Option<String>,
    closing: bool,
    /// Whether an appender is committing a batch (the leader of this group commit).
    flushing: bool,
    stats: LogStats,
}

struct Files {
    segment: Option<(File, u64)>,
    segment_first: u64,
    levels: Vec<File>,
    persisted: Vec<usize>,
}

struct Inner {
    dir: PathBuf,
    config: LogConfig,
    pending: Mutex<Pending>,
    to_checkpointer: Condvar,
    to_appenders: Condvar,
    tree: RwLock<MerkleTree>,
    files: Mutex<Files>,
    signed: Mutex<(Option<Signed>, Instant, [u8; 8])>,
}

/// A tamper-evident, append-only access log in one directory.
///
/// `append` may be called from many threads at once: entries queued while one appender is
/// committing are written and `fdatasync`ed together by the next (group commit, led by an
/// appender, with no hand-off to another thread), and each call returns only once
/// its entry is durable. If the log cannot make an entry durable, `append` returns
/// [`AuditError::NotDurable`] and the log refuses every later append until reopened: callers
/// must treat the error as a refusal (fail-closed). Cheap to share: wrap it in an `Arc`.
pub struct AuditLog {
    inner: Arc<Inner>,
    /// Released when the log is dropped, after the final checkpoint.
    claim: Option<DirClaim>,
    checkpointer: Mutex<Option<JoinHandle<()>>>,
    report: OpenReport,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.inner.dir)
            .field("origin", &self.inner.config.signing_key.name())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock is a bug elsewhere; the data (counters and buffers) stays
    // meaningful, and the failed flag makes the log refuse appends if a write was interrupted.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AuditLog {
    /// Opens (creating if needed) the log in `dir`.
    ///
    /// Truncates a torn tail left by a crash (reported in [`AuditLog::open_report`]), loads the
    /// persisted tree, and checks it against the latest checkpoint this log signed. A log whose
    /// entries no longer match its own signed checkpoint is refused with
    /// [`AuditError::Inconsistent`]: it must never sign a checkpoint that forks its history.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<AuditLog, AuditError> {
        let dir = dir.as_ref().to_owned();
        fs::create_dir_all(&dir).map_err(|e| AuditError::io("creating", &dir, e))?;
        let claim = DirClaim::take(&dir)?;
        let mut log = AuditLog::open_claimed(dir, config)?;
        log.claim = Some(claim);
        Ok(log)
    }

    fn open_claimed(dir: PathBuf, config: LogConfig) -> Result<AuditLog, AuditError> {
        for d in [
            dir.clone(),
            files::segments_dir(&dir),
            files::tree_dir(&dir),
        ] {
            fs::create_dir_all(&d).map_err(|e| AuditError::io("creating", &d, e))?;
        }
        let mut report = OpenReport::default();
        let verifier = config.signing_key.verifier();

        // The latest checkpoint this log signed.
        let cp_path = files::checkpoints_path(&dir);
        let notes_file = files::read_notes_file(&cp_path)?;
        let notes = &notes_file.payloads;
        if let Some(offset) = notes_file.torn {
            truncate(&cp_path, offset as u64)?;
        }
        let mut signed = None;
        for (i, bytes) in notes.iter().enumerate() {
            let note = Note::parse(bytes)?;
            let bad = |reason: String| AuditError::BadStoredCheckpoint {
                index: i,
                size: 0,
                reason,
            };
            note.verify(&verifier).map_err(|e| bad(e.to_string()))?;
            let cp = Checkpoint::parse(&note.text)?;
            signed = Some(Signed {
                size: cp.size,
                root: cp.root,
                note,
            });
        }
        report.checkpoint_size = signed.as_ref().map(|s| s.size);

        // The entries: only the last segment is read; earlier ones are counted by the next
        // segment's first sequence number.
        let segments = files::list_segments(&dir)?;
        let mut tail_hashes = Vec::new();
        let mut tail_first = 0;
        let mut segment = None;
        let mut segment_first = 0;
        if let Some((first, path)) = segments.last() {
            let buf = files::read_file(path)?;
            if buf.len() < SEGMENT_HEADER && segments.len() > 1 {
                // A crash while starting a new segment: nothing in it was acknowledged.
                report.torn_tail = Some((path.clone(), 0, buf.len() as u64));
                fs::remove_file(path).map_err(|e| AuditError::io("removing", path, e))?;
                return AuditLog::open_claimed(dir, config).map(|mut log| {
                    log.report.torn_tail = report.torn_tail;
                    log
                });
            }
            let start = if buf.len() < SEGMENT_HEADER {
                0
            } else {
                files::check_header(&buf, path, *first)?
            };
            let mut seq = *first;
            let brk = files::read_frames(&buf, start, false, |f| {
                if Entry::seq_of_canonical(f.payload) != Some(seq) {
                    return Err(AuditError::BadStoredEntry {
                        seq,
                        reason: format!(
                            "{} byte {}: wrong sequence number",
                            path.display(),
                            f.offset
                        ),
                    });
                }
                tail_hashes.push(f.hash);
                seq += 1;
                Ok(())
            })?;
            let mut valid = buf.len() as u64;
            if let Some(b) = brk {
                if !b.at_tail || seq < signed.as_ref().map_or(0, |s| s.size) {
                    return Err(AuditError::Corrupt {
                        path: path.clone(),
                        offset: b.offset as u64,
                        reason: b.reason.into(),
                    });
                }
                valid = b.offset as u64;
                report.torn_tail = Some((path.clone(), valid, buf.len() as u64 - valid));
                truncate(path, valid)?;
            }
            tail_first = *first;
            report.entries = seq;
            segment_first = *first;
            if start > 0 {
                segment = Some((files::open_append(path)?, valid));
            } else {
                fs::remove_file(path).map_err(|e| AuditError::io("removing", path, e))?;
            }
        }

        // The tree: persisted levels (a cache, trusted only where it agrees with the entries),
        // then the leaf hashes of whatever entries it does not cover yet.
        let (mut tree, mut on_disk) = files::load_tree(&dir, report.entries)?;
        let matches_tail = |tree: &MerkleTree| {
            (tail_first..tree.size())
                .all(|i| tree.leaf(i) == tail_hashes.get((i - tail_first) as usize).copied())
        };
        if !matches_tail(&tree) {
            tree = MerkleTree::new();
            report.tree_rebuilt = true;
        }
        report.rehashed = extend_tree(&mut tree, &segments, tail_first, &tail_hashes)?;
        if let Some(s) = &signed {
            if tree.size() < s.size {
                return Err(AuditError::Truncated {
                    entries: tree.size(),
                    index: notes.len() - 1,
                    size: s.size,
                });
            }
            if tree.root_at(s.size)? != s.root && !report.tree_rebuilt {
                tree = MerkleTree::new();
                report.tree_rebuilt = true;
                report.rehashed = extend_tree(&mut tree, &segments, tail_first, &tail_hashes)?;
            }
            let root = tree.root_at(s.size)?;
            if root != s.root {
                return Err(AuditError::Inconsistent {
                    reason: format!(
                        "the entries give root {} at size {}, but this log signed {}",
                        hex(&root),
                        s.size,
                        hex(&s.root)
                    ),
                });
            }
        }
        if report.tree_rebuilt {
            on_disk.clear();
        }
        let mut levels = Vec::new();
        let mut persisted = Vec::new();
        for k in 0..64 {
            let path = files::level_path(&dir, k);
            let n = on_disk.get(k).copied().unwrap_or(0);
            files::trim(&path, n as u64 * 32)?;
            levels.push(files::open_append(&path)?);
            persisted.push(n);
        }

        let size = tree.size();
        let inner = Arc::new(Inner {
            dir,
            config,
            pending: Mutex::new(Pending {
                next_seq: size,
                buf: Vec::new(),
                hashes: Vec::new(),
                durable: size,
                failed: None,
                closing: false,
                flushing: false,
                stats: LogStats::default(),
            }),
            to_checkpointer: Condvar::new(),
            to_appenders: Condvar::new(),
            tree: RwLock::new(tree),
            files: Mutex::new(Files {
                segment,
                segment_first,
                levels,
                persisted,
            }),
            signed: Mutex::new((signed, Instant::now(), notes_file.last_check)),
        });
        let worker = Arc::clone(&inner);
        let checkpointer = std::thread::Builder::new()
            .name("audit-checkpointer".into())
            .spawn(move || worker.run_checkpointer())
            .map_err(|e| AuditError::io("starting the checkpointer for", &inner.dir, e))?;
        Ok(AuditLog {
            inner,
            checkpointer: Mutex::new(Some(checkpointer)),
            report,
            claim: None,
        })
    }

    /// What opening found and repaired.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// The log's origin (its signing key's name).
    pub fn origin(&self) -> &str {
        self.inner.config.signing_key.name()
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Appends `entry`, setting its sequence number, and returns once it is durable.
    pub fn append(&self, mut entry: Entry) -> Result<Receipt, AuditError> {
        entry.seq = 0;
        let mut bytes = entry.to_canonical()?;
        let inner = &self.inner;
        let mut p = lock(&inner.pending);
        if let Some(reason) = &p.failed {
            return Err(AuditError::NotDurable {
                reason: reason.clone(),
            });
        }
        if p.closing {
            return Err(AuditError::Closed);
        }
        let seq = p.next_seq;
        p.next_seq += 1;
        bytes[SEQ_OFFSET..SEQ_OFFSET + 8].copy_from_slice(&seq.to_be_bytes());
        let hash = leaf_hash(&bytes);
        files::put_frame(&mut p.buf, &bytes, &hash);
        p.hashes.push(hash);
        loop {
            if p.durable > seq {
                return Ok(Receipt {
                    seq,
                    leaf_hash: hash,
                });
            }
            if let Some(reason) = &p.failed {
                return Err(AuditError::NotDurable {
                    reason: reason.clone(),
                });
            }
            if !p.flushing {
                // Nobody is committing: lead, and commit everything queued so far with ours.
                p = inner.commit(p);
                continue;
            }
            p = inner
                .to_appenders
                .wait(p)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Counters since the log was opened.
    pub fn stats(&self) -> LogStats {
        lock(&self.inner.pending).stats
    }

    /// The number of durable entries.
    pub fn size(&self) -> u64 {
        self.inner
            .tree
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .size()
    }

    /// The current root over all durable entries.
    pub fn root(&self) -> Hash {
        self.inner
            .tree
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .root()
    }

    /// Signs a checkpoint over every durable entry now (unless the latest one already covers
    /// them) and returns the latest signed checkpoint note.
    pub fn checkpoint(&self) -> Result<Option<Note>, AuditError> {
        self.inner.sign_checkpoint()
    }

    /// The latest signed checkpoint note, if any.
    pub fn latest_checkpoint(&self) -> Option<Note> {
        lock(&self.inner.signed).0.as_ref().map(|s| s.note.clone())
    }

    /// An RFC 6962 inclusion proof for entry `seq` in the tree of size `size`.
    pub fn prove_inclusion(&self, seq: u64, size: u64) -> Result<Vec<Hash>, AuditError> {
        let tree = self.inner.tree.read().unwrap_or_else(|p| p.into_inner());
        let proof = tree.inclusion_proof(seq, size)?;
        // The interior nodes come from the persisted cache; a proof that does not check out
        // against our own root is refused here rather than handed to an auditor.
        let leaf = tree.leaf(seq).unwrap_or_default();
        verify_inclusion(&leaf, seq, size, &proof, &tree.root_at(size)?)?;
        Ok(proof)
    }

    /// An RFC 6962 consistency proof between tree sizes `size1` and `size2`.
    pub fn prove_consistency(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, AuditError> {
        let tree = self.inner.tree.read().unwrap_or_else(|p| p.into_inner());
        let proof = tree.consistency_proof(size1, size2)?;
        if size1 > 0 {
            verify_consistency(
                size1,
                size2,
                &proof,
                &tree.root_at(size1)?,
                &tree.root_at(size2)?,
            )?;
        }
        Ok(proof)
    }

    /// Stores a checkpoint note that witnesses cosigned. Its text must be one this log signed.
    pub fn add_cosigned(&self, note: &Note) -> Result<(), AuditError> {
        let _files = lock(&self.inner.files);
        store_cosigned(
            &self.inner.dir,
            &self.inner.config.signing_key.verifier(),
            note,
        )
    }

    /// Waits for queued appends, signs a final checkpoint and stops the checkpointer. Dropping the log does the same,
    /// ignoring errors; call `close` to see them.
    pub fn close(&self) -> Result<(), AuditError> {
        {
            let mut p = lock(&self.inner.pending);
            p.closing = true;
            self.inner.to_checkpointer.notify_all();
            // Appends already queued finish first: their appenders are committing them.
            while p.flushing || (p.failed.is_none() && !p.hashes.is_empty()) {
                p = self
                    .inner
                    .to_appenders
                    .wait(p)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
        if let Some(handle) = lock(&self.checkpointer).take() {
            let _ = handle.join();
        }
        if let Some(reason) = &lock(&self.inner.pending).failed {
            return Err(AuditError::NotDurable {
                reason: reason.clone(),
            });
        }
        self.inner.sign_checkpoint().map(|_| ())
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        let _ = self.close();
        // `claim` drops after this, so the directory is free only once the log is closed.
    }
}

/// The directories open as logs in this process. Two writers on one directory would interleave
/// their sequence numbers: within a process this list refuses the second, and across processes
/// an exclusive lock on `<dir>/LOCK` does (released by the kernel if the process dies).
static OPEN_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

#[derive(Debug)]
struct DirClaim {
    path: PathBuf,
    /// Held open for its exclusive lock.
    _lock: File,
}

impl DirClaim {
    fn take(dir: &Path) -> Result<DirClaim, AuditError> {
        let path = dir
            .canonicalize()
            .map_err(|e| AuditError::io("resolving", dir, e))?;
        let mut open = lock(&OPEN_DIRS);
        if open.contains(&path) {
            return Err(AuditError::AlreadyOpen { path });
        }
        let lock_path = path.join("LOCK");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| AuditError::io("opening", &lock_path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(AuditError::LockedByAnotherProcess { path })
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(AuditError::io("locking", &lock_path, e))
            }
        }
        open.push(path.clone());
        Ok(DirClaim { path, _lock: file })
    }
}

impl Drop for DirClaim {
    fn drop(&mut self) {
        lock(&OPEN_DIRS).retain(|p| p != &self.path);
        // The lock on the file goes with the file handle.
    }
}

/// Stores a cosigned checkpoint note in the log directory `dir` (for a witness run offline, as
/// `domicile audit witness` does). The note must carry the log's own signature; whether its text
/// is one of the log's checkpoints is checked by [`crate::verify`].
pub fn store_cosigned(dir: &Path, log_key: &VerifierKey, note: &Note) -> Result<(), AuditError> {
    note.verify(log_key)?;
    let path = files::cosignatures_path(dir);
    let existing = files::read_notes_file(&path)?;
    if let Some(offset) = existing.torn {
        truncate(&path, offset as u64)?;
    }
    append_frame_durably(&path, &existing.last_check, note.to_text().as_bytes()).map(|_| ())
}

fn truncate(path: &Path, len: u64) -> Result<(), AuditError> {
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| AuditError::io("opening", path, e))?;
    f.set_len(len)
        .and_then(|_| f.sync_all())
        .map_err(|e| AuditError::io("truncating", path, e))
}

fn append_frame_durably(
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

/// Pushes the leaf hash of every entry the tree does not cover yet: from the segments before
/// the last (read only if they hold such entries), then from the last segment's hashes.
fn extend_tree(
    tree: &mut MerkleTree,
    segments: &[(u64, PathBuf)],
    tail_first: u64,
    tail_hashes: &[Hash],
) -> Result<u64, AuditError> {
    let start = tree.size();
    for (i, (first, path)) in segments
        .iter()
        .enumerate()
        .take(segments.len().saturating_sub(1))
    {
        if segments[i + 1].0 <= tree.size() {
            continue;
        }
        let buf = files::read_file(path)?;
        files::check_header(&buf, path, *first)?;
        if *first > tree.size() {
            return Err(AuditError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: format!("expected a segment starting at entry {}", tree.size()),
            });
        }
        let mut seq = *first;
        let brk = files::read_frames(&buf, SEGMENT_HEADER, false, |f| {
            if seq >= tree.size() {
                tree.push(f.hash);
            }
            seq += 1;
            Ok(())
        })?;
        if let Some(b) = brk {
            return Err(AuditError::Corrupt {
                path: path.clone(),
                offset: b.offset as u64,
                reason: b.reason.into(),
            });
        }
        if seq != segments[i + 1].0 {
            return Err(AuditError::Corrupt {
                path: path.clone(),
                offset: buf.len() as u64,
                reason: format!(
                    "the segment ends at entry {seq}, but the next one starts at {}",
                    segments[i + 1].0
                ),
            });
        }
    }
    if tree.size() < tail_first {
        return Err(AuditError::Corrupt {
            path: segments.last().map(|s| s.1.clone()).unwrap_or_default(),
            offset: 0,
            reason: format!(
                "expected the last segment to start at entry {}",
                tree.size()
            ),
        });
    }
    let skip = (tree.size() - tail_first) as usize;
    for h in tail_hashes.iter().skip(skip) {
        tree.push(*h);
    }
    Ok(tree.size() - start)
}

impl Inner {
    /// Commits everything queued: called by the appender that finds no commit in progress.
    /// Appenders that queue meanwhile wait for this one to finish, then one of them leads the
    /// next batch: a group commit with no hand-off to another thread on the way.
    fn commit<'a>(&'a self, mut p: MutexGuard<'a, Pending>) -> MutexGuard<'a, Pending> {
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
        let covered = lock(&self.signed).0.as_ref().map_or(0, |c| c.size);
        let first_since = before <= covered && p.durable > covered;
        if first_since || self.due_by_count(p.durable) {
            self.to_checkpointer.notify_one();
        }
        p
    }

    /// The background thread: signs checkpoints when enough entries or time have passed.
    fn run_checkpointer(&self) {
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

    fn time_to_checkpoint(&self, durable: u64) -> Option<Duration> {
        let interval = self.config.checkpoint_interval?;
        let s = lock(&self.signed);
        let covered = s.0.as_ref().map_or(0, |c| c.size);
        if durable <= covered {
            // Nothing to sign: sleep until an append or close wakes the checkpointer.
            return None;
        }
        Some(interval.saturating_sub(s.1.elapsed()))
    }

    fn due_by_count(&self, durable: u64) -> bool {
        let every = self.config.checkpoint_every;
        if every == 0 {
            return false;
        }
        let covered = lock(&self.signed).0.as_ref().map_or(0, |c| c.size);
        durable >= covered + every
    }

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

    fn sign_checkpoint(&self) -> Result<Option<Note>, AuditError> {
        let mut files = lock(&self.files);
        let mut signed = lock(&self.signed);
        let tree = self.tree.read().unwrap_or_else(|p| p.into_inner());
        let size = tree.size();
        self.persist_tree(&mut files, &tree)?;
        if let Some(last) = &signed.0 {
            if size == last.size {
                return Ok(Some(last.note.clone()));
            }
            // Never sign a history that does not extend the last one signed.
            let root_then = tree
                .root_at(last.size)
                .map_err(|e| AuditError::Inconsistent {
                    reason: format!(
                        "the tree of {size} entries is smaller than the last checkpoint: {e}"
                    ),
                })?;
            if root_then != last.root {
                return Err(AuditError::Inconsistent {
                    reason: format!(
                        "the tree at size {} has root {}, but the last checkpoint signed {}",
                        last.size,
                        hex(&root_then),
                        hex(&last.root)
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
        let check = append_frame_durably(
            &files::checkpoints_path(&self.dir),
            &signed.2,
            note.to_text().as_bytes(),
        )?;
        *signed = (
            Some(Signed {
                size,
                root: cp.root,
                note: note.clone(),
            }),
            Instant::now(),
            check,
        );
        Ok(Some(note))
    }
}
