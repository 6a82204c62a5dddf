//! Opening a log directory: replaying its segments, truncating a torn tail, and rebuilding or
//! validating the persisted tree against the entries and the latest signed checkpoint.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::{
    AuditLog, Batch, Early, Files, Inner, LastCheckpoint, LogConfig, LogStats, OpenReport, Pending,
    Signed, TreeFiles,
};
use crate::checkpoint::Checkpoint;
use crate::entry::Entry;
use crate::files::{self, SEGMENT_HEADER};
use crate::merkle::{hex, Hash, MerkleTree};
use crate::note::Note;
use crate::AuditError;

/// Recovery: what `open` does once the directory is claimed.
impl AuditLog {
    /// Opens the log in `dir`, which this process has claimed: replays the segments, cuts a
    /// torn tail, and loads (or rebuilds) the tree cache, checked against the latest checkpoint.
    pub(super) fn open_claimed(dir: PathBuf, config: LogConfig) -> Result<AuditLog, AuditError> {
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
        // The latest checkpoint the writer remembers signing, kept apart from the log.
        let remembered = match &config.signed_state {
            Some(path) => match domicile_durable::read_optional(path)? {
                Some(bytes) => {
                    let note = Note::parse(&bytes)?;
                    note.verify(&verifier)?;
                    let cp = Checkpoint::parse(&note.text)?;
                    Some(Signed {
                        size: cp.size,
                        root: cp.root,
                        note,
                    })
                }
                None => None,
            },
            None => None,
        };
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
            let mut valid = buf.len() as u64;
            for frame in files::frames(&buf, start).checked(false) {
                match frame {
                    Ok((f, hash)) => {
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
                        tail_hashes.push(hash);
                        seq += 1;
                    }
                    Err(b) => {
                        // Entries a checkpoint signed were acknowledged: losing one is never a
                        // torn write.
                        let signed_size = signed.as_ref().map_or(0, |s| s.size);
                        valid = b.torn_tail(path, seq >= signed_size)? as u64;
                        report.torn_tail = Some((path.clone(), valid, buf.len() as u64 - valid));
                        truncate(path, valid)?;
                    }
                }
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
        if let Some(r) = remembered {
            if tree.size() < r.size {
                return Err(AuditError::RolledBack {
                    entries: tree.size(),
                    signed: r.size,
                });
            }
            // The entries must still be the history signed then (a log whose checkpoints were
            // replaced along with its entries checks out against itself, not against this).
            if tree.root_at(r.size)? != r.root && !report.tree_rebuilt {
                tree = MerkleTree::new();
                report.tree_rebuilt = true;
                report.rehashed = extend_tree(&mut tree, &segments, tail_first, &tail_hashes)?;
            }
            if tree.root_at(r.size)? != r.root {
                return Err(AuditError::Inconsistent {
                    reason: format!(
                        "the entries do not give the root this log signed at size {}: its history was replaced",
                        r.size
                    ),
                });
            }
            if signed.as_ref().is_none_or(|s| s.size < r.size) {
                // The log lost checkpoints it signed: the next one must extend the remembered.
                signed = Some(r);
            }
        }
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
                filled: size,
                queue: Batch::default(),
                early: Early::default(),
                spare: Batch::default(),
                durable: size,
                failed: None,
                closing: false,
                flushing: false,
                stats: LogStats::default(),
                wakers: Vec::new(),
                woken: Vec::new(),
                writer_asleep: false,
                gather_want: 1,
                last_commit: (0, Duration::ZERO),
            }),
            durable: AtomicU64::new(size),
            to_checkpointer: Condvar::new(),
            to_writer: Condvar::new(),
            to_closer: Condvar::new(),
            tree: RwLock::new(tree),
            files: Mutex::new(Files {
                segment,
                segment_first,
            }),
            tree_files: Mutex::new(TreeFiles { levels, persisted }),
            covered: AtomicU64::new(signed.as_ref().map_or(0, |s| s.size)),
            signed_at: AtomicU64::new(0),
            opened: Instant::now(),
            last: Mutex::new(LastCheckpoint {
                signed,
                chain: notes_file.last_check,
            }),
        });
        let worker = Arc::clone(&inner);
        let checkpointer = std::thread::Builder::new()
            .name("audit-checkpointer".into())
            .spawn(move || worker.run_checkpointer())
            .map_err(|e| AuditError::io("starting the checkpointer for", &inner.dir, e))?;
        let worker = Arc::clone(&inner);
        let writer = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || worker.run_writer());
        let writer = match writer {
            Ok(w) => w,
            Err(e) => {
                // Stop the checkpointer before giving up.
                inner.drain();
                let _ = checkpointer.join();
                return Err(AuditError::io("starting the writer for", &inner.dir, e));
            }
        };
        Ok(AuditLog {
            inner,
            checkpointer: Mutex::new(Some(checkpointer)),
            writer: Mutex::new(Some(writer)),
            report,
            claim: None,
        })
    }
}

/// Cuts `path` to `len` bytes, durably (a torn tail must not come back after a power cut).
pub(super) fn truncate(path: &Path, len: u64) -> Result<(), AuditError> {
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| AuditError::io("opening", path, e))?;
    f.set_len(len)
        .and_then(|_| f.sync_all())
        .map_err(|e| AuditError::io("truncating", path, e))
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
        for frame in files::frames(&buf, SEGMENT_HEADER).checked(false) {
            let (_, hash) = frame.map_err(|b| b.corrupt(path, ""))?;
            if seq >= tree.size() {
                tree.push(hash);
            }
            seq += 1;
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
