//! Following a log directory that another handle (or process) writes, to publish it: the latest
//! signed checkpoint with its cosignatures, the Merkle tree it signs, and the entries under it.
//!
//! A [`LogReader`] never writes to the directory and never looks past the latest signed
//! checkpoint: entries beyond it may still be in flight (a group commit half written), while
//! everything a checkpoint covers was durable before it was signed. Each [`LogReader::refresh`]
//! reads only what was appended since the last one, hashing each new entry once; the tree it
//! builds must have the root the checkpoint signs, or the reader refuses to go on. Entries are
//! read back by position (one positioned read per segment touched) and checked against their
//! leaf hashes, so a byte changed on disk after it was indexed is found, not published.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::checkpoint::Checkpoint;
use crate::entry::Entry;
use crate::files::{self, FRAME_HEADER, SEGMENT_HEADER};
use crate::merkle::{hex, leaf_hash, MerkleTree};
use crate::note::Note;
use crate::verify::{stored_checkpoints, stored_cosigned};
use crate::AuditError;

/// One segment file, opened for positioned reads.
#[derive(Debug)]
struct Segment {
    first: u64,
    path: PathBuf,
    file: File,
}

/// A read-only view of a log directory up to its latest signed checkpoint (see the module
/// documentation). Not internally synchronised: wrap it in a lock to share it, and call
/// [`LogReader::refresh`] to follow the writer.
#[derive(Debug)]
pub struct LogReader {
    dir: PathBuf,
    segments: Vec<Segment>,
    /// Where the frame of each indexed entry starts in its segment.
    offsets: Vec<u64>,
    /// The payload length of each indexed entry.
    lens: Vec<u32>,
    /// The tree over every indexed entry.
    tree: MerkleTree,
    /// Where the next frame starts in the last segment.
    scan_pos: u64,
    /// The latest signed checkpoint, with the cosignatures stored for it.
    latest: Option<(Note, Checkpoint)>,
    /// The lengths of the checkpoints and cosignatures files when they were last read.
    notes_seen: (u64, u64),
}

fn file_len(path: &Path) -> Result<u64, AuditError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(AuditError::io("reading", path, e)),
    }
}

/// Reading a log directory as it grows.
impl LogReader {
    /// Opens the log in `dir` for reading and reads it up to its latest signed checkpoint. A
    /// directory with no checkpoint yet is an empty log (it may not exist yet either).
    pub fn open(dir: impl AsRef<Path>) -> Result<LogReader, AuditError> {
        let mut reader = LogReader {
            dir: dir.as_ref().to_owned(),
            segments: Vec::new(),
            offsets: Vec::new(),
            lens: Vec::new(),
            tree: MerkleTree::new(),
            scan_pos: 0,
            latest: None,
            notes_seen: (u64::MAX, u64::MAX),
        };
        reader.refresh()?;
        Ok(reader)
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The latest signed checkpoint note, carrying every cosignature stored for it.
    pub fn checkpoint(&self) -> Option<&Note> {
        self.latest.as_ref().map(|(n, _)| n)
    }

    /// The tree size of the latest signed checkpoint (0 without one).
    pub fn size(&self) -> u64 {
        self.latest.as_ref().map_or(0, |(_, c)| c.size)
    }

    /// The Merkle tree over the entries the latest checkpoint covers.
    pub fn tree(&self) -> &MerkleTree {
        &self.tree
    }

    /// Whether the checkpoints or cosignatures stored in the directory changed since the last
    /// refresh (two `stat` calls): cheap enough to ask on every request.
    pub fn is_stale(&self) -> Result<bool, AuditError> {
        Ok(self.notes_lengths()? != self.notes_seen)
    }

    fn notes_lengths(&self) -> Result<(u64, u64), AuditError> {
        Ok((
            file_len(&files::checkpoints_path(&self.dir))?,
            file_len(&files::cosignatures_path(&self.dir))?,
        ))
    }

    /// Catches up with the writer: reads the latest signed checkpoint and its cosignatures,
    /// indexes and hashes the entries appended since the last refresh up to that checkpoint,
    /// and checks the tree's root against it. Returns whether anything changed.
    ///
    /// A log whose latest checkpoint is smaller than one this reader saw before is
    /// [`AuditError::RolledBack`]; one whose entries do not have the signed root is
    /// [`AuditError::Inconsistent`]. Either way the reader keeps what it had.
    pub fn refresh(&mut self) -> Result<bool, AuditError> {
        let seen = self.notes_lengths()?;
        if seen == self.notes_seen {
            return Ok(false);
        }
        let notes = stored_checkpoints(&self.dir)?;
        let Some(mut note) = notes.last().cloned() else {
            self.notes_seen = seen;
            return Ok(false);
        };
        let cp = Checkpoint::parse(&note.text)?;
        if cp.size < self.size() {
            return Err(AuditError::RolledBack {
                entries: cp.size,
                signed: self.size(),
            });
        }
        for cosigned in stored_cosigned(&self.dir)? {
            if cosigned.text == note.text {
                for s in cosigned.signatures {
                    if !note.signatures.contains(&s) {
                        note.signatures.push(s);
                    }
                }
            }
        }
        self.index_up_to(cp.size)?;
        let root = self.tree.root_at(cp.size)?;
        if root != cp.root {
            return Err(AuditError::Inconsistent {
                reason: format!(
                    "the entries of {} up to size {} have root {}, but its latest checkpoint signs {}",
                    self.dir.display(),
                    cp.size,
                    hex(&root),
                    hex(&cp.root)
                ),
            });
        }
        self.latest = Some((note, cp));
        self.notes_seen = seen;
        Ok(true)
    }

    /// Indexes entries until `size` are indexed.
    fn index_up_to(&mut self, size: u64) -> Result<(), AuditError> {
        while self.tree.size() < size {
            let have = self.tree.size();
            if self.segments.is_empty() || !self.scan_last(size)? {
                self.open_next_segment(have)?;
            }
        }
        Ok(())
    }

    /// Opens the segment that starts at entry `first`, the next one after those indexed.
    fn open_next_segment(&mut self, first: u64) -> Result<(), AuditError> {
        let list = files::list_segments(&self.dir)?;
        let Some((_, path)) = list.into_iter().find(|(f, _)| *f == first) else {
            return Err(AuditError::Corrupt {
                path: files::segments_dir(&self.dir),
                offset: 0,
                reason: format!(
                    "no segment starts at entry {first}, though the latest checkpoint covers it"
                ),
            });
        };
        let file = files::open_regular(&path)?;
        let mut header = [0u8; SEGMENT_HEADER];
        file.read_exact_at(&mut header, 0)
            .map_err(|e| AuditError::io("reading", &path, e))?;
        files::check_header(&header, &path, first)?;
        self.segments.push(Segment { first, path, file });
        self.scan_pos = SEGMENT_HEADER as u64;
        Ok(())
    }

    /// Indexes entries of the last segment from `scan_pos`, stopping at `size`; returns whether
    /// it indexed any (none: the segment is exhausted and the next one must be opened).
    fn scan_last(&mut self, size: u64) -> Result<bool, AuditError> {
        let Some(seg) = self.segments.last() else {
            return Ok(false);
        };
        let len = seg
            .file
            .metadata()
            .map_err(|e| AuditError::io("reading", &seg.path, e))?
            .len();
        let mut buf = vec![0u8; len.saturating_sub(self.scan_pos) as usize];
        seg.file
            .read_exact_at(&mut buf, self.scan_pos)
            .map_err(|e| AuditError::io("reading", &seg.path, e))?;
        let mut indexed = false;
        for frame in files::frames(&buf, 0).checked(false) {
            let seq = self.tree.size();
            if seq >= size {
                break;
            }
            // Entries under a signed checkpoint were durable before it was signed: a frame that
            // does not hold there is corruption, never a write in flight.
            let (f, hash) = frame.map_err(|b| {
                let mut e = b.corrupt(&seg.path, &format!(" (entry {seq})"));
                if let AuditError::Corrupt { offset, .. } = &mut e {
                    *offset += self.scan_pos;
                }
                e
            })?;
            if Entry::seq_of_canonical(f.payload) != Some(seq) {
                return Err(AuditError::BadStoredEntry {
                    seq,
                    reason: "the entry's sequence number is not its position".into(),
                });
            }
            self.offsets.push(self.scan_pos + f.offset as u64);
            self.lens.push(f.payload.len() as u32);
            self.tree.push(hash);
            indexed = true;
        }
        if let Some(&last) = self.offsets.last() {
            if indexed {
                self.scan_pos =
                    last + (FRAME_HEADER as u64) + u64::from(self.lens[self.lens.len() - 1]);
            }
        }
        Ok(indexed)
    }

    /// The canonical bytes of entries `start..end`, each checked against its leaf hash.
    /// `end` may not exceed [`LogReader::size`].
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        if start > end || end > self.size() {
            return Err(AuditError::BadStoredEntry {
                seq: end.saturating_sub(1),
                reason: format!(
                    "the latest signed checkpoint covers {} entries",
                    self.size()
                ),
            });
        }
        let mut out = Vec::with_capacity((end - start) as usize);
        let mut seq = start;
        while seq < end {
            let si = self.segments.partition_point(|s| s.first <= seq) - 1;
            let seg = &self.segments[si];
            let stop = self
                .segments
                .get(si + 1)
                .map_or(end, |next| next.first.min(end));
            let (a, b) = (seq as usize, stop as usize - 1);
            let from = self.offsets[a];
            let to = self.offsets[b] + FRAME_HEADER as u64 + u64::from(self.lens[b]);
            let mut buf = vec![0u8; (to - from) as usize];
            seg.file
                .read_exact_at(&mut buf, from)
                .map_err(|e| AuditError::io("reading", &seg.path, e))?;
            for i in a..=b {
                let at = (self.offsets[i] - from) as usize + FRAME_HEADER;
                let payload = &buf[at..at + self.lens[i] as usize];
                if Some(leaf_hash(payload)) != self.tree.leaf(i as u64) {
                    return Err(AuditError::BadStoredEntry {
                        seq: i as u64,
                        reason: format!(
                            "{} changed after it was read: its bytes no longer have their leaf hash",
                            seg.path.display()
                        ),
                    });
                }
                out.push(payload.to_vec());
            }
            seq = stop;
        }
        Ok(out)
    }
}
