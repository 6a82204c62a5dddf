//! The writer: [`AuditLog`], with group commit, persisted tree state and signed checkpoints.
//!
//! One mechanism per file: this one is the log's public face and the state its parts share;
//! [`recovery`] opens a log directory (replaying segments, truncating a torn tail, rebuilding
//! or validating the tree cache); [`commit`] is the group commit that makes appends durable;
//! [`checkpointer`] signs checkpoints in the background; [`lock`] keeps one writer per
//! directory.

mod checkpointer;
mod commit;
mod lock;
mod recovery;
mod ticket;

pub use ticket::{Append, Ticket};

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::task::Waker;
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crate::entry::{Entry, SEQ_OFFSET};
use crate::files;
use crate::merkle::{leaf_hash, verify_consistency, verify_inclusion, Hash, MerkleTree};
use crate::note::{Note, SigningKey, VerifierKey};
use crate::subjects::{subject_set_path, write_subject_set, SubjectSet};
use crate::AuditError;
use lock::DirClaim;

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
    /// Where the writer remembers the latest checkpoint it signed, apart from the log
    /// directory (beside the signing key: `log.state` next to `log.key`). With it, a log whose
    /// entries and checkpoints were both cut back is refused with [`AuditError::RolledBack`]
    /// instead of being signed again as a fork. `None`: the log directory alone is trusted.
    pub signed_state: Option<PathBuf>,
    /// The longest the writer thread waits, after a commit for asynchronous appenders, for the
    /// appenders it woke to queue again before it commits the next batch (at most as long as
    /// that commit's write and sync took). It gathers only while at most 128 entries are in
    /// flight: beyond that each sync carries over a hundred entries without waiting. `None`: it
    /// commits whatever is queued at once. See [`AuditLog::append_async`].
    pub max_gather: Option<Duration>,
}

impl LogConfig {
    /// Defaults: a checkpoint every 10,000 entries or every second, 64 MiB segments, no state
    /// file (see [`LogConfig::signed_state`]), batches gathered for at most 2 ms.
    pub fn new(signing_key: SigningKey) -> Self {
        LogConfig {
            signing_key,
            checkpoint_every: 10_000,
            checkpoint_interval: Some(Duration::from_secs(1)),
            segment_bytes: 64 << 20,
            signed_state: None,
            max_gather: Some(Duration::from_millis(2)),
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

/// How an appender waits for its entry to be durable.
enum Waiting<'a> {
    /// In its own thread, which may lead the commit.
    Thread,
    /// Not at all: it is woken through the waker (if one is given now; a [`Ticket`] registers
    /// one when first polled).
    Task(Option<&'a Waker>),
}

/// The latest signed checkpoint.
#[derive(Debug, Clone)]
struct Signed {
    size: u64,
    root: Hash,
    note: Note,
}

/// The appenders' queue: what is waiting to be committed, and how far the log is durable.
///
/// An append takes its sequence number here ([`Inner::reserve`]), hashes its leaf with the lock
/// released, and comes back to queue its frame ([`Inner::enqueue`]). Frames are queued in
/// sequence order: one that comes back before a lower number is held in `early` until the gap
/// is filled, so a batch is always a contiguous run of the log.
struct Pending {
    /// The sequence number the next append gets.
    next_seq: u64,
    /// Every `seq` below this is queued, being committed or durable; the ones from here to
    /// `next_seq` are being hashed by their appenders or wait in `early`.
    filled: u64,
    /// The next batch: frames from `filled - queue.len()` up to `filled`, in order.
    queue: Batch,
    /// Frames that came back before a lower sequence number did.
    early: Early,
    /// A committed batch's buffers, cleared, for the next commit to take (no allocation per
    /// entry once the buffers have grown to the batch sizes the load brings).
    spare: Batch,
    /// Entries durable on disk (and in the tree): every `seq` below this is acknowledged.
    /// Mirrored in [`Inner::durable`] for waiters that check without the lock.
    durable: u64,
    /// Why a commit failed; once set, every append is refused until the log is reopened.
    failed: Option<String>,
    /// Whether `close` has begun.
    closing: bool,
    /// Whether a commit is in progress (its leader is writing and syncing a batch).
    flushing: bool,
    /// Counters since the log was opened.
    stats: LogStats,
    /// The wakers of asynchronous appenders, each with the sequence number it waits for
    /// (a task may register again if it moves: a stale waker only costs a spurious wake).
    wakers: Vec<(u64, Waker)>,
    /// A commit's buffer of wakers to wake, emptied and kept for the next commit.
    woken: Vec<Waker>,
    /// Whether the writer thread waits on [`Inner::to_writer`].
    writer_asleep: bool,
    /// While the writer gathers a batch, the queue length that completes it (1 otherwise):
    /// asynchronous appenders wake it only then.
    gather_want: usize,
    /// The last commit's entries in flight as it ended (acknowledged, and queued meanwhile)
    /// and the time its write and sync took: what the writer gathers for next.
    last_commit: (usize, Duration),
}

/// A run of consecutive frames and the appenders waiting for them.
#[derive(Default)]
struct Batch {
    /// The frames, back to back, as they go to the segment.
    frames: Vec<u8>,
    /// Their leaf hashes, in order.
    hashes: Vec<Hash>,
    /// The blocking appenders waiting for these entries to be durable (asynchronous ones wait
    /// in [`Pending::wakers`]).
    waiters: Vec<Thread>,
}

impl Batch {
    fn len(&self) -> usize {
        self.hashes.len()
    }

    fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Empties the batch, keeping its buffers' capacity.
    fn clear(&mut self) {
        self.frames.clear();
        self.hashes.clear();
        self.waiters.clear();
    }
}

/// Frames queued out of order, each waiting for the frames before it.
#[derive(Default)]
struct Early {
    /// Per frame: its sequence number, the frame, its leaf hash and its blocking appender.
    frames: Vec<(u64, Vec<u8>, Hash, Option<Thread>)>,
    /// Emptied frame buffers, for the next frame that comes early.
    pool: Vec<Vec<u8>>,
}

/// The segment the commits append to (one commit at a time holds it).
struct Files {
    /// The segment being appended to, and its length.
    segment: Option<(File, u64)>,
    /// The first sequence number in that segment.
    segment_first: u64,
}

/// The persisted tree levels, written by the checkpointer alone: a commit never waits for them.
struct TreeFiles {
    /// One file per level (a cache), opened for appending.
    levels: Vec<File>,
    /// How many hashes of each level are on disk.
    persisted: Vec<usize>,
}

/// What is known of the latest checkpoint this log signed, under one lock (signing changes
/// both together). Its size and time are mirrored in [`Inner::covered`] and
/// [`Inner::signed_at`], which commits read without waiting for a signature in progress.
struct LastCheckpoint {
    /// The latest signed checkpoint, `None` until the log signs its first.
    signed: Option<Signed>,
    /// The chained check of the last frame of `checkpoints.notes`, which the next note's frame
    /// is chained to (so a note dropped from the middle of the file is found).
    chain: [u8; 8],
}

/// The state shared by the log's handle, its appenders and its checkpointer.
struct Inner {
    dir: PathBuf,
    config: LogConfig,
    pending: Mutex<Pending>,
    /// [`Pending::durable`], readable without the lock: a woken appender checks it and
    /// returns without queueing for the lock behind a thousand others.
    durable: AtomicU64,
    /// Wakes the checkpointer: a checkpoint may be due, or the log is closing.
    to_checkpointer: Condvar,
    /// Wakes the writer thread: asynchronous appenders queued entries and no commit is in
    /// progress, or the log is closing.
    to_writer: Condvar,
    /// Wakes `close` when a commit finishes. Appenders are woken one by one (each parks its own
    /// thread), so that a commit wakes exactly the appenders it covers.
    to_closer: Condvar,
    /// The Merkle tree over every durable entry.
    tree: RwLock<MerkleTree>,
    files: Mutex<Files>,
    tree_files: Mutex<TreeFiles>,
    /// The number of entries the latest checkpoint covers.
    covered: AtomicU64,
    /// When the latest checkpoint was signed (or the log opened), in nanoseconds since
    /// `opened`: the checkpoint interval counts from here.
    signed_at: AtomicU64,
    /// When the log was opened.
    opened: Instant,
    /// Held while signing a checkpoint and while storing cosignatures, so notes files are
    /// appended one at a time.
    last: Mutex<LastCheckpoint>,
}

/// A tamper-evident, append-only access log in one directory.
///
/// `append` may be called from many threads at once: entries queued while one appender is
/// committing are written and `fdatasync`ed together by the next (group commit, led by an
/// appender; a lone appender writes its own entry with no hand-off to another thread), so a
/// batch holds every entry that arrived during the previous sync, and each call returns only
/// once its entry is durable. If the log cannot make an entry durable, `append` returns
/// [`AuditError::NotDurable`] and the log refuses every later append until reopened: callers
/// must treat the error as a refusal (fail-closed). Cheap to share: wrap it in an `Arc`.
pub struct AuditLog {
    inner: Arc<Inner>,
    /// Released when the log is dropped, after the final checkpoint.
    claim: Option<DirClaim>,
    checkpointer: Mutex<Option<JoinHandle<()>>>,
    /// The thread that commits for asynchronous appenders.
    writer: Mutex<Option<JoinHandle<()>>>,
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

/// Opening, appending, proving and closing: the log's public face.
impl AuditLog {
    /// Opens (creating if needed) the log in `dir`.
    ///
    /// Truncates a torn tail left by a crash (reported in [`AuditLog::open_report`]), loads the
    /// persisted tree, and checks it against the latest checkpoint this log signed. A log whose
    /// entries no longer match its own signed checkpoint is refused with
    /// [`AuditError::Inconsistent`]: it must never sign a checkpoint that forks its history.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<AuditLog, AuditError> {
        let dir = dir.as_ref().to_owned();
        std::fs::create_dir_all(&dir).map_err(|e| AuditError::io("creating", &dir, e))?;
        let claim = DirClaim::take(&dir)?;
        let mut log = AuditLog::open_claimed(dir, config)?;
        log.claim = Some(claim);
        Ok(log)
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

    /// Appends a bulk entry together with the subjects it touched: the list is kept beside the
    /// log (durably, before the entry is appended), and the entry's target must be a
    /// [`Target::Batch`](crate::Target::Batch) committing to exactly this set.
    pub fn append_batch(&self, entry: Entry, subjects: &SubjectSet) -> Result<Receipt, AuditError> {
        self.keep_subject_set(&entry, subjects)?;
        self.append(entry)
    }

    /// Checks that `entry` commits to exactly `subjects` and keeps the list beside the log,
    /// durably.
    fn keep_subject_set(&self, entry: &Entry, subjects: &SubjectSet) -> Result<(), AuditError> {
        let want = subjects.commitment();
        match &entry.resource.target {
            crate::Target::Batch { subjects: got, .. } if *got == want => {}
            _ => {
                return Err(AuditError::BadSubjectSet {
                    root: want.root,
                    reason: "the entry does not commit to the set given with it".into(),
                })
            }
        }
        write_subject_set(&self.inner.dir, subjects).map(|_| ())
    }

    /// Appends `entry`, setting its sequence number, and returns once it is durable. An entry
    /// whose target is a [`Target::Batch`](crate::Target::Batch) is refused unless its subject
    /// list is already kept beside the log ([`AuditLog::append_batch`] keeps it): no entry may
    /// commit to a set no auditor can read.
    ///
    /// The calling thread waits (and may lead the commit itself); in async code use
    /// [`AuditLog::append_async`], which blocks no thread.
    pub fn append(&self, entry: Entry) -> Result<Receipt, AuditError> {
        self.stage(entry, Waiting::Thread)
    }

    /// Encodes `entry`, takes its sequence number, hashes it and queues it for the next
    /// commit: all but the queueing with no lock held. A [`Waiting::Thread`] appender returns
    /// once the entry is durable; an asynchronous one as soon as it is queued.
    fn stage(&self, mut entry: Entry, waiting: Waiting<'_>) -> Result<Receipt, AuditError> {
        entry.seq = 0;
        if let crate::Target::Batch { subjects, .. } = &entry.resource.target {
            if subjects.count > 0 && !subject_set_path(&self.inner.dir, &subjects.root).exists() {
                return Err(AuditError::BadSubjectSet {
                    root: subjects.root,
                    reason: "its list is not kept beside the log; append it with append_batch"
                        .into(),
                });
            }
        }
        thread_local! {
            /// Each appender thread's encoding buffer, reused from one append to the next.
            static ENCODED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        ENCODED.with(|cell| {
            // A buffer already borrowed means an append from inside an append on this thread,
            // which cannot happen (nothing here calls back out); fall back to a fresh buffer
            // all the same.
            let mut own = Vec::new();
            let mut borrowed = cell.try_borrow_mut();
            let bytes = match borrowed.as_deref_mut() {
                Ok(b) => b,
                Err(_) => &mut own,
            };
            bytes.clear();
            // Encoding, then hashing once the sequence number is known, happen in the
            // appender's own thread with no lock held: the lock guards only the queue.
            entry.encode_into(bytes)?;
            if bytes.len() > crate::MAX_ENTRY_BYTES {
                return Err(AuditError::EntryTooLong {
                    len: bytes.len(),
                    max: crate::MAX_ENTRY_BYTES,
                });
            }
            let seq = self.inner.reserve()?;
            bytes[SEQ_OFFSET..SEQ_OFFSET + 8].copy_from_slice(&seq.to_be_bytes());
            let hash = leaf_hash(bytes);
            match waiting {
                Waiting::Thread => self.inner.enqueue(seq, bytes, hash)?,
                Waiting::Task(waker) => self.inner.queue_async(seq, bytes, hash, waker)?,
            }
            Ok(Receipt {
                seq,
                leaf_hash: hash,
            })
        })
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
        lock(&self.inner.last)
            .signed
            .as_ref()
            .map(|s| s.note.clone())
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
        let _notes = lock(&self.inner.last);
        store_cosigned(
            &self.inner.dir,
            &self.inner.config.signing_key.verifier(),
            note,
        )
    }

    /// Waits for queued appends, signs a final checkpoint and stops the checkpointer. Dropping the log does the same,
    /// ignoring errors; call `close` to see them.
    pub fn close(&self) -> Result<(), AuditError> {
        self.inner.drain();
        if let Some(handle) = lock(&self.checkpointer).take() {
            let _ = handle.join();
        }
        if let Some(handle) = lock(&self.writer).take() {
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

/// Stores a cosigned checkpoint note in the log directory `dir` (for a witness run offline, as
/// `domicile audit witness` does). The note must carry the log's own signature; whether its text
/// is one of the log's checkpoints is checked by [`crate::verify`].
pub fn store_cosigned(dir: &Path, log_key: &VerifierKey, note: &Note) -> Result<(), AuditError> {
    note.verify(log_key)?;
    let path = files::cosignatures_path(dir);
    let existing = files::read_notes_file(&path)?;
    if let Some(offset) = existing.torn {
        recovery::truncate(&path, offset as u64)?;
    }
    checkpointer::append_frame_durably(&path, &existing.last_check, note.to_text().as_bytes())
        .map(|_| ())
}
