//! The on-disk layout of a log directory and the framing of its files.
//!
//! ```text
//! <dir>/segments/<first seq, 20 digits>.seg   header "DMCAUDS1" ‖ u64 first seq, then frames
//! <dir>/checkpoints.notes                     frames, one signed checkpoint note each
//! <dir>/cosignatures.notes                    frames, one cosigned checkpoint note each
//! <dir>/tree/level-NN                         32-byte hashes of complete subtrees (a cache)
//! ```
//!
//! A frame is `u32 length ‖ 8-byte check ‖ payload`, the check being the first eight bytes of
//! `SHA-256(0x00 ‖ payload)`: for an entry, that is its Merkle leaf hash, computed anyway. A
//! write torn by a crash leaves a last frame that is short or fails its check; anything that
//! fails earlier in a file cannot be a torn write and is corruption.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::merkle::{leaf_hash, Hash, MerkleTree};
use crate::AuditError;

pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"DMCAUDS1";
pub(crate) const SEGMENT_HEADER: usize = 16;
pub(crate) const FRAME_HEADER: usize = 12;

pub(crate) fn segments_dir(dir: &Path) -> PathBuf {
    dir.join("segments")
}
pub(crate) fn tree_dir(dir: &Path) -> PathBuf {
    dir.join("tree")
}
pub(crate) fn checkpoints_path(dir: &Path) -> PathBuf {
    dir.join("checkpoints.notes")
}
pub(crate) fn cosignatures_path(dir: &Path) -> PathBuf {
    dir.join("cosignatures.notes")
}
pub(crate) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    segments_dir(dir).join(format!("{first_seq:020}.seg"))
}
pub(crate) fn level_path(dir: &Path, level: usize) -> PathBuf {
    tree_dir(dir).join(format!("level-{level:02}"))
}

/// Appends the frame of `payload` (whose leaf hash is `hash`) to `out`.
pub(crate) fn put_frame(out: &mut Vec<u8>, payload: &[u8], hash: &Hash) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&hash[..8]);
    out.extend_from_slice(payload);
}

/// The check of a frame in a notes file: chained to the frame before it, so that a note
/// dropped from the middle of the file breaks the chain at the next one.
pub(crate) fn chained_check(prev: &[u8; 8], payload: &[u8]) -> Hash {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&[0x00]);
    ctx.update(prev);
    ctx.update(payload);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Frames one payload of a notes file after the frame whose check was `prev`; returns the
/// frame and its check.
pub(crate) fn chained_frame(prev: &[u8; 8], payload: &[u8]) -> (Vec<u8>, [u8; 8]) {
    let mut out = Vec::with_capacity(payload.len() + FRAME_HEADER);
    let check = chained_check(prev, payload);
    put_frame(&mut out, payload, &check);
    let mut c = [0u8; 8];
    c.copy_from_slice(&check[..8]);
    (out, c)
}

/// A frame found in a buffer: where it starts, its payload, and the check it carries.
pub(crate) struct Frame<'a> {
    /// The offset of its header in the file.
    pub offset: usize,
    /// Its payload (an entry's canonical bytes, or a note's text).
    pub payload: &'a [u8],
    /// The check stored in its header.
    stored: [u8; 8],
    /// Whether it ends exactly at the end of the buffer.
    last: bool,
}

impl Frame<'_> {
    /// Whether `hash` (the frame's leaf hash or chained check) matches the stored check: a
    /// mismatch is a [`Break`] at this frame.
    pub(crate) fn check(&self, hash: &Hash) -> Result<(), Break> {
        if hash[..8] == self.stored {
            return Ok(());
        }
        Err(Break {
            offset: self.offset,
            reason: "a frame's check does not match its bytes",
            at_tail: self.last,
        })
    }

    /// The payload's leaf hash, if it matches the stored check (a segment frame).
    pub(crate) fn leaf_hash(&self) -> Result<Hash, Break> {
        let hash = leaf_hash(self.payload);
        self.check(&hash).map(|()| hash)
    }
}

/// Where framing stopped holding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Break {
    /// The offset of the frame that does not hold.
    pub offset: usize,
    /// What is wrong with it.
    pub reason: &'static str,
    /// Whether a torn write explains it: it is the last thing in the file.
    at_tail: bool,
}

impl Break {
    /// The one place that tells a torn tail from corruption. A crash during an append can only
    /// leave the last frame short or failing its check, so a break there is a torn write when
    /// the reader `may_be_torn` (it was never acknowledged); anything else, or a break where a
    /// torn write is not acceptable (a verifier, or entries a checkpoint signed), is corruption.
    /// Returns the length to truncate the file to.
    pub(crate) fn torn_tail(self, path: &Path, may_be_torn: bool) -> Result<usize, AuditError> {
        if self.at_tail && may_be_torn {
            Ok(self.offset)
        } else {
            Err(self.corrupt(path, ""))
        }
    }

    /// The break as corruption of `path`, with `context` appended to the reason.
    pub(crate) fn corrupt(self, path: &Path, context: &str) -> AuditError {
        AuditError::Corrupt {
            path: path.to_owned(),
            offset: self.offset as u64,
            reason: format!("{}{context}", self.reason),
        }
    }
}

/// The frames of a buffer from an offset, boundaries only: each item is a [`Frame`] whose check
/// is not yet verified (the verifier checks them on many cores), or the [`Break`] where a frame
/// is cut short, after which the iterator ends. Use [`Frames::checked`] to verify each frame as
/// it is read.
pub(crate) struct Frames<'a> {
    buf: &'a [u8],
    pos: usize,
    stopped: bool,
}

/// The frames of `buf` from `start` (see [`Frames`]).
pub(crate) fn frames(buf: &[u8], start: usize) -> Frames<'_> {
    Frames {
        buf,
        pos: start,
        stopped: false,
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, Break>;

    fn next(&mut self) -> Option<Self::Item> {
        let (buf, pos) = (self.buf, self.pos);
        if self.stopped || pos >= buf.len() {
            return None;
        }
        let rest = buf.len() - pos;
        let cut = |reason| {
            Some(Err(Break {
                offset: pos,
                reason,
                at_tail: true,
            }))
        };
        if rest < FRAME_HEADER {
            self.stopped = true;
            return cut("a frame header is cut short");
        }
        let len = u32::from_be_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
        if rest - FRAME_HEADER < len {
            self.stopped = true;
            return cut("a frame is cut short");
        }
        let end = pos + FRAME_HEADER + len;
        let mut stored = [0u8; 8];
        stored.copy_from_slice(&buf[pos + 4..pos + FRAME_HEADER]);
        self.pos = end;
        Some(Ok(Frame {
            offset: pos,
            payload: &buf[pos + FRAME_HEADER..end],
            stored,
            last: end == buf.len(),
        }))
    }
}

impl<'a> Frames<'a> {
    /// The frames with their checks verified as they are read: each item is a frame and its
    /// hash (the leaf hash, or for a notes file the check chained to the frame before), or the
    /// first [`Break`], after which the iterator ends.
    pub(crate) fn checked(self, chained: bool) -> Checked<'a> {
        Checked {
            frames: self,
            chained,
            prev: [0; 8],
        }
    }
}

/// [`Frames`] with each frame's check verified (see [`Frames::checked`]).
pub(crate) struct Checked<'a> {
    frames: Frames<'a>,
    chained: bool,
    prev: [u8; 8],
}

impl<'a> Iterator for Checked<'a> {
    type Item = Result<(Frame<'a>, Hash), Break>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.frames.next()?.and_then(|f| {
            let hash = if self.chained {
                chained_check(&self.prev, f.payload)
            } else {
                leaf_hash(f.payload)
            };
            f.check(&hash)?;
            self.prev.copy_from_slice(&hash[..8]);
            Ok((f, hash))
        });
        if item.is_err() {
            self.frames.stopped = true;
        }
        Some(item)
    }
}

/// Opens a file for reading, refusing anything but a regular file (a FIFO would block).
pub(crate) fn open_regular(path: &Path) -> Result<File, AuditError> {
    let meta = fs::metadata(path).map_err(|e| AuditError::io("reading", path, e))?;
    if !meta.is_file() {
        return Err(AuditError::Corrupt {
            path: path.to_owned(),
            offset: 0,
            reason: "not a regular file".into(),
        });
    }
    File::open(path).map_err(|e| AuditError::io("opening", path, e))
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, AuditError> {
    // Checked before the open (a FIFO's open waits for a writer) and again on the handle.
    let mut f = open_regular(path)?;
    let meta = f
        .metadata()
        .map_err(|e| AuditError::io("reading", path, e))?;
    if !meta.is_file() {
        return Err(AuditError::Corrupt {
            path: path.to_owned(),
            offset: 0,
            reason: "not a regular file".into(),
        });
    }
    // The length is a hint: one no allocation holds (a sparse file claiming terabytes) is an
    // error, not an abort.
    let mut buf = Vec::new();
    usize::try_from(meta.len())
        .ok()
        .and_then(|len| buf.try_reserve_exact(len).ok())
        .ok_or_else(|| AuditError::Corrupt {
            path: path.to_owned(),
            offset: 0,
            reason: format!("{} bytes do not fit in memory", meta.len()),
        })?;
    f.read_to_end(&mut buf)
        .map_err(|e| AuditError::io("reading", path, e))?;
    Ok(buf)
}

/// The frames of a notes file.
pub(crate) struct NotesFile {
    pub payloads: Vec<Vec<u8>>,
    /// The offset of a torn frame at the end, if any.
    pub torn: Option<usize>,
    /// The check of the last good frame, to chain the next one to.
    pub last_check: [u8; 8],
}

/// Reads a notes file (chained frames); a missing file is empty. A break before the tail is
/// corruption.
pub(crate) fn read_notes_file(path: &Path) -> Result<NotesFile, AuditError> {
    let mut file = NotesFile {
        payloads: Vec::new(),
        torn: None,
        last_check: [0; 8],
    };
    if !path.exists() {
        return Ok(file);
    }
    let buf = read_file(path)?;
    for frame in frames(&buf, 0).checked(true) {
        match frame {
            Ok((f, hash)) => {
                file.payloads.push(f.payload.to_vec());
                file.last_check.copy_from_slice(&hash[..8]);
            }
            Err(b) => file.torn = Some(b.torn_tail(path, true)?),
        }
    }
    Ok(file)
}

/// The segment files of a log, in order: (first seq, path).
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, AuditError> {
    let sdir = segments_dir(dir);
    if !sdir.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for item in fs::read_dir(&sdir).map_err(|e| AuditError::io("listing", &sdir, e))? {
        let item = item.map_err(|e| AuditError::io("listing", &sdir, e))?;
        let path = item.path();
        let name = item.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".seg") else {
            return Err(AuditError::Corrupt {
                path,
                offset: 0,
                reason: "a file that is not a segment sits among the segments".into(),
            });
        };
        let first = stem
            .parse::<u64>()
            .ok()
            .filter(|_| stem.len() == 20)
            .ok_or_else(|| AuditError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: "a segment's name is not its 20-digit first sequence number".into(),
            })?;
        out.push((first, path));
    }
    out.sort();
    Ok(out)
}

/// Checks a segment's header and returns the offset of its first frame.
pub(crate) fn check_header(buf: &[u8], path: &Path, first_seq: u64) -> Result<usize, AuditError> {
    let bad = |reason: String| AuditError::Corrupt {
        path: path.to_owned(),
        offset: 0,
        reason,
    };
    if buf.len() < SEGMENT_HEADER {
        return Err(bad("the segment header is cut short".into()));
    }
    if &buf[..8] != SEGMENT_MAGIC {
        return Err(bad("the segment does not start with DMCAUDS1".into()));
    }
    let mut s = [0u8; 8];
    s.copy_from_slice(&buf[8..16]);
    let stored = u64::from_be_bytes(s);
    if stored != first_seq {
        return Err(bad(format!(
            "the header says the first entry is {stored}, the name and order say {first_seq}"
        )));
    }
    Ok(SEGMENT_HEADER)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AuditError::io("syncing directory", dir, e))
}

pub(crate) fn open_append(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| AuditError::io("opening for append", path, e))
}

/// Loads the persisted tree levels, keeping only what fits a tree of at most `max_size` leaves.
/// Missing tails of upper levels are recomputed from the level below; nothing is rehashed from
/// the entries. Returns the tree and, per level, how many of its hashes are on disk (the files
/// are trimmed to that).
pub(crate) fn load_tree(dir: &Path, max_size: u64) -> Result<(MerkleTree, Vec<usize>), AuditError> {
    read_tree(dir, max_size, true)
}

/// Loads the persisted tree as it is, changing no file (for offline readers).
pub(crate) fn load_tree_readonly(dir: &Path) -> Result<(MerkleTree, Vec<usize>), AuditError> {
    read_tree(dir, u64::MAX, false)
}

fn read_tree(
    dir: &Path,
    max_size: u64,
    trim_files: bool,
) -> Result<(MerkleTree, Vec<usize>), AuditError> {
    let mut levels: Vec<Vec<Hash>> = Vec::new();
    // Without a stored leaf level nothing above it can be trusted to line up.
    let mut size = if level_path(dir, 0).exists() {
        max_size
    } else {
        0
    };
    for k in 0..64 {
        let path = level_path(dir, k);
        if !path.exists() {
            break;
        }
        let buf = read_file(&path)?;
        let mut level: Vec<Hash> = buf
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        if k == 0 {
            size = size.min(level.len() as u64);
        }
        level.truncate((size >> k) as usize);
        levels.push(level);
    }
    let on_disk: Vec<usize> = levels.iter().map(Vec::len).collect();
    if trim_files {
        for (k, n) in on_disk.iter().enumerate() {
            trim(&level_path(dir, k), *n as u64 * 32)?;
        }
    }
    // Repair the upper levels' tails from the level below.
    let mut k = 1;
    while k < 64 && (size >> k) > 0 {
        if levels.len() == k {
            levels.push(Vec::new());
        }
        let want = (size >> k) as usize;
        while levels[k].len() < want {
            let i = levels[k].len();
            let h = crate::merkle::node_hash(&levels[k - 1][2 * i], &levels[k - 1][2 * i + 1]);
            levels[k].push(h);
        }
        k += 1;
    }
    levels.truncate(k.max(1));
    while levels.last().is_some_and(|l| l.is_empty()) {
        levels.pop();
    }
    let tree = MerkleTree::from_levels(levels).ok_or_else(|| AuditError::Corrupt {
        path: tree_dir(dir),
        offset: 0,
        reason: "the stored tree levels do not fit together".into(),
    })?;
    Ok((tree, on_disk))
}

/// Cuts a tree file down to `len` bytes if it is longer.
pub(crate) fn trim(path: &Path, len: u64) -> Result<(), AuditError> {
    if !path.exists() {
        return Ok(());
    }
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| AuditError::io("opening", path, e))?;
    let now = f
        .metadata()
        .map_err(|e| AuditError::io("reading", path, e))?
        .len();
    if now > len {
        f.set_len(len)
            .map_err(|e| AuditError::io("truncating", path, e))?;
    }
    Ok(())
}
