//! Offline reading and verification of a log directory, with public keys only.

use std::io::Read;
use std::path::Path;

use crate::checkpoint::Checkpoint;
use rayon::prelude::*;

use crate::entry::{CanonicalTexts, Entry};
use crate::files::{self, SEGMENT_HEADER};
use crate::merkle::{empty_root, hex, node_hash, Hash, MerkleTree};
use crate::note::{Note, VerifierKey};
use crate::proof::InclusionProof;
use crate::witness::WitnessPolicy;
use crate::AuditError;

/// What [`verify`] established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries verified.
    pub entries: u64,
    /// Signed checkpoints verified (each against the entries, hence against each other).
    pub checkpoints: usize,
    /// The root of the whole log, which the latest checkpoint signs.
    pub root: Hash,
    /// Trusted witnesses whose cosignature on the latest checkpoint verified (0 without a
    /// policy).
    pub witnesses: usize,
}

/// The RFC 6962 root of a growing sequence of leaves, kept as its O(log n) complete subtrees.
#[derive(Default)]
struct Frontier {
    /// (height, hash), heights strictly decreasing.
    stack: Vec<(u32, Hash)>,
}

impl Frontier {
    fn push(&mut self, leaf: Hash) {
        self.push_at(0, leaf);
    }

    /// Pushes the root of a complete subtree of 2^height leaves, aligned at a multiple of its
    /// size (so every subtree already on the stack is at least as high).
    fn push_at(&mut self, height: u32, root: Hash) {
        let mut h = height;
        let mut node = root;
        while let Some(&(top_h, top)) = self.stack.last() {
            if top_h != h {
                break;
            }
            self.stack.pop();
            node = node_hash(&top, &node);
            h += 1;
        }
        self.stack.push((h, node));
    }

    /// The root of the tree made of these subtrees followed by a last, smaller part whose
    /// root is `tail`.
    fn root_with(&self, tail: Hash) -> Hash {
        self.stack
            .iter()
            .rev()
            .fold(tail, |r, (_, left)| node_hash(left, &r))
    }

    fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(&(_, mut r)) = it.next() else {
            return empty_root();
        };
        for (_, left) in it {
            r = node_hash(left, &r);
        }
        r
    }
}

/// Calls `each(seq, canonical bytes, leaf hash)` for every entry, in order, checking the
/// framing and sequence numbers strictly: a torn tail is an error here (open the log with
/// [`crate::AuditLog::open`] to repair one). `progress(bytes done, bytes total)`.
pub fn for_each_entry(
    dir: &Path,
    progress: &mut dyn FnMut(u64, u64),
    mut each: impl FnMut(u64, &[u8], &Hash) -> Result<(), AuditError>,
) -> Result<u64, AuditError> {
    let segments = files::list_segments(dir)?;
    let mut total = 0;
    for (_, path) in &segments {
        total += std::fs::metadata(path)
            .map_err(|e| AuditError::io("reading", path, e))?
            .len();
    }
    let mut done = 0;
    let mut seq = 0u64;
    for (first, path) in &segments {
        let buf = files::read_file(path)?;
        files::check_header(&buf, path, *first)?;
        if *first != seq {
            return Err(AuditError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: format!("the segment starts at entry {first}, expected {seq}"),
            });
        }
        for frame in files::frames(&buf, SEGMENT_HEADER).checked(false) {
            // Strict: a torn tail is corruption to a verifier, which repairs nothing.
            let (f, hash) = frame.map_err(|b| b.corrupt(path, &format!(" (entry {seq})")))?;
            if Entry::seq_of_canonical(f.payload) != Some(seq) {
                return Err(AuditError::BadStoredEntry {
                    seq,
                    reason: format!(
                        "{} byte {}: the entry's sequence number is not its position",
                        path.display(),
                        f.offset
                    ),
                });
            }
            each(seq, f.payload, &hash)?;
            seq += 1;
        }
        done += buf.len() as u64;
        progress(done, total);
    }
    Ok(seq)
}

/// Entries are handed to the tree in aligned blocks of this many where possible.
const BLOCK: usize = 1024;

/// What [`for_each_entry_checked`] hands over, in log order.
enum Leaves<'a> {
    /// One leaf hash.
    One(Hash),
    /// The tree over an aligned block of [`BLOCK`] leaves.
    Block(&'a MerkleTree),
}

/// Segments are read in pieces of about this many bytes into one reused buffer: reading a
/// 64 MiB segment into fresh memory costs more in page faults than checking its entries.
const READ_PIECE: usize = 8 << 20;

/// Like [`for_each_entry`], and also checks that every entry is canonical, but does the
/// per-entry work (leaf hash, frame check, canonical check) and the hashing of aligned blocks of
/// leaves into subtrees on all cores (rayon), piece by piece of each segment; the tree above
/// the blocks is built after, in order. `each(first seq, leaves)` still sees the entries in
/// order, and the first bad entry in log order is the one reported.
fn for_each_entry_checked(
    dir: &Path,
    piece: usize,
    progress: &mut dyn FnMut(u64, u64),
    mut each: impl FnMut(u64, Leaves<'_>) -> Result<(), AuditError>,
) -> Result<u64, AuditError> {
    let segments = files::list_segments(dir)?;
    let mut total = 0;
    for (_, path) in &segments {
        total += std::fs::metadata(path)
            .map_err(|e| AuditError::io("reading", path, e))?
            .len();
    }
    let mut done = 0;
    let mut seq = 0u64;
    // Two buffers: one being checked, the next being read.
    let mut buf: Vec<u8> = Vec::new();
    let mut next: Vec<u8> = Vec::new();
    for (first, path) in &segments {
        let mut file = files::open_regular(path)?;
        let mut read = |buf: &mut Vec<u8>, n: usize| -> Result<bool, AuditError> {
            let want = buf.len() + n;
            buf.reserve(n);
            while buf.len() < want {
                let got = (&mut file)
                    .take((want - buf.len()) as u64)
                    .read_to_end(buf)
                    .map_err(|e| AuditError::io("reading", path, e))?;
                if got == 0 {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        buf.clear();
        read(&mut buf, SEGMENT_HEADER)?;
        files::check_header(&buf, path, *first)?;
        if *first != seq {
            return Err(AuditError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: format!("the segment starts at entry {first}, expected {seq}"),
            });
        }
        // The file offset of buf[0].
        let mut base = SEGMENT_HEADER;
        buf.clear();
        let mut eof = read(&mut buf, piece)?;
        loop {
            // Frame boundaries first (cheap, sequential), then the checks in parallel. A frame
            // cut short by the end of the piece is read again with the next one.
            let mut frames = Vec::new();
            let mut cut = None;
            let mut consumed = 0;
            for frame in files::frames(&buf, 0) {
                match frame {
                    Ok(mut f) => {
                        consumed = f.offset + files::FRAME_HEADER + f.payload.len();
                        f.offset += base;
                        frames.push(f);
                    }
                    Err(mut b) if eof => {
                        b.offset += base;
                        cut = Some(b);
                    }
                    Err(_) => {}
                }
            }
            // The next piece is read while this one is checked: it starts with what this one
            // left unconsumed.
            next.clear();
            next.extend_from_slice(&buf[consumed..]);
            let check = || {
                let (hashes, first_bad) = check_frames(path, seq, &frames);
                let first_block = ((BLOCK as u64 - seq % BLOCK as u64) % BLOCK as u64) as usize;
                let starts: Vec<usize> = (first_block..)
                    .step_by(BLOCK)
                    .take_while(|i| i + BLOCK <= hashes.len())
                    .collect();
                let trees: Vec<MerkleTree> = starts
                    .par_iter()
                    .map(|&i| MerkleTree::from_leaf_hashes(hashes[i..i + BLOCK].iter().copied()))
                    .collect();
                (hashes, first_bad, starts, trees)
            };
            let (next_eof, (hashes, first_bad, starts, trees)) = if eof {
                (Ok(true), check())
            } else {
                rayon::join(|| read(&mut next, piece), check)
            };
            let mut i = 0;
            let mut block = 0;
            while i < hashes.len() {
                if block < starts.len() && starts[block] == i {
                    each(seq, Leaves::Block(&trees[block]))?;
                    block += 1;
                    i += BLOCK;
                    seq += BLOCK as u64;
                } else {
                    each(seq, Leaves::One(hashes[i]))?;
                    i += 1;
                    seq += 1;
                }
            }
            if let Some(e) = first_bad {
                return Err(e);
            }
            if let Some(b) = cut {
                return Err(b.corrupt(path, &format!(" (entry {seq})")));
            }
            // Reported after this piece's own errors: those come first in log order.
            let next_eof = next_eof?;
            drop(frames);
            base += consumed;
            done += consumed as u64;
            progress(done, total);
            if eof {
                break;
            }
            std::mem::swap(&mut buf, &mut next);
            eof = next_eof;
        }
    }
    Ok(seq)
}

/// Checks `frames` (entries `first`, `first + 1`, … of the segment at `path`) on all cores:
/// their leaf hashes up to the first bad entry, and that entry's error.
fn check_frames(
    path: &Path,
    first: u64,
    frames: &[files::Frame<'_>],
) -> (Vec<Hash>, Option<AuditError>) {
    let check = |texts: &mut CanonicalTexts, at: u64, f: &files::Frame<'_>| {
        let hash = f
            .leaf_hash()
            .map_err(|b| b.corrupt(path, &format!(" (entry {at})")))?;
        if Entry::seq_of_canonical(f.payload) != Some(at) {
            return Err(AuditError::BadStoredEntry {
                seq: at,
                reason: format!(
                    "{} byte {}: the entry's sequence number is not its position",
                    path.display(),
                    f.offset
                ),
            });
        }
        Entry::check_canonical(f.payload, texts).map_err(|e| AuditError::BadStoredEntry {
            seq: at,
            reason: e.to_string(),
        })?;
        Ok(hash)
    };
    // Chunks of frames to the cores, each writing its leaf hashes in place and stopping at its
    // first bad entry; the first bad entry is the lowest of those.
    const CHUNK: usize = 1024;
    let mut hashes = vec![[0u8; 32]; frames.len()];
    let first_bad = hashes
        .par_chunks_mut(CHUNK)
        .zip(frames.par_chunks(CHUNK))
        .enumerate()
        .map_init(CanonicalTexts::default, |texts, (c, (out, chunk))| {
            for (j, (slot, f)) in out.iter_mut().zip(chunk).enumerate() {
                let i = c * CHUNK + j;
                match check(texts, first + i as u64, f) {
                    Ok(h) => *slot = h,
                    Err(e) => return Some((i, e)),
                }
            }
            None
        })
        .flatten()
        .min_by_key(|(i, _)| *i);
    // Everything before the first bad entry goes to the tree; then that entry is reported.
    hashes.truncate(first_bad.as_ref().map_or(frames.len(), |(i, _)| *i));
    (hashes, first_bad.map(|(_, e)| e))
}

/// The signed checkpoint notes stored in a log directory, oldest first, unverified.
pub fn stored_checkpoints(dir: &Path) -> Result<Vec<Note>, AuditError> {
    read_notes(&files::checkpoints_path(dir))
}

/// The cosigned checkpoint notes stored in a log directory, oldest first, unverified.
pub fn stored_cosigned(dir: &Path) -> Result<Vec<Note>, AuditError> {
    read_notes(&files::cosignatures_path(dir))
}

fn read_notes(path: &Path) -> Result<Vec<Note>, AuditError> {
    let file = files::read_notes_file(path)?;
    if let Some(offset) = file.torn {
        return Err(AuditError::Corrupt {
            path: path.to_owned(),
            offset: offset as u64,
            reason: "the file ends in a torn or altered frame".into(),
        });
    }
    file.payloads.iter().map(|n| Note::parse(n)).collect()
}

/// Verifies a log directory with nothing but public keys.
///
/// Recomputes the Merkle tree from every entry; checks that every entry decodes and sits at its
/// own sequence number; that every stored checkpoint is signed by `log_key`, names the log's
/// origin, grows, and has the root of the entries up to its size (so all checkpoints are
/// consistent with each other); that no entry lies beyond the latest checkpoint; and, with a
/// witness policy, that the latest checkpoint carries a quorum of valid cosignatures.
///
/// This checks the log against itself: a log cut back together with its checkpoints still
/// verifies. Use [`verify_against`] with a checkpoint the auditor already holds to find that.
pub fn verify(
    dir: &Path,
    log_key: &VerifierKey,
    witnesses: Option<&WitnessPolicy>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<VerifyReport, AuditError> {
    verify_against(dir, log_key, witnesses, &[], progress)
}

/// Which checkpoint a root check belongs to.
#[derive(Clone, Copy)]
enum Pinned {
    /// The i-th stored checkpoint.
    Stored(usize),
    /// A checkpoint the verifier holds.
    Held,
}

/// [`verify`], and also proves the log consistent with every checkpoint in `held`: notes the
/// auditor obtained earlier (from a report, a witness, a previous verification). Each must be
/// signed by `log_key` for its origin, and the log must hold at least its size with its root
/// at that size: a log cut back below a held checkpoint is [`AuditError::RolledBack`], one
/// whose history differs is [`AuditError::NotConsistentWithHeld`].
pub fn verify_against(
    dir: &Path,
    log_key: &VerifierKey,
    witnesses: Option<&WitnessPolicy>,
    held: &[Note],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<VerifyReport, AuditError> {
    verify_in_pieces(dir, log_key, witnesses, held, READ_PIECE, progress)
}

/// [`verify_against`], reading each segment `piece` bytes at a time.
fn verify_in_pieces(
    dir: &Path,
    log_key: &VerifierKey,
    witnesses: Option<&WitnessPolicy>,
    held: &[Note],
    piece: usize,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<VerifyReport, AuditError> {
    let notes = stored_checkpoints(dir)?;
    let mut cps = Vec::with_capacity(notes.len());
    for (i, note) in notes.iter().enumerate() {
        let bad = |size, reason: String| AuditError::BadStoredCheckpoint {
            index: i,
            size,
            reason,
        };
        note.verify(log_key).map_err(|e| bad(0, e.to_string()))?;
        let cp = Checkpoint::parse(&note.text).map_err(|e| bad(0, e.to_string()))?;
        if cp.origin != log_key.name() {
            return Err(bad(
                cp.size,
                format!("its origin is {:?}, not {:?}", cp.origin, log_key.name()),
            ));
        }
        if let Some(prev) = cps.last().map(|c: &Checkpoint| c.size) {
            if cp.size <= prev {
                return Err(bad(
                    cp.size,
                    format!("it does not grow the log (the one before has size {prev})"),
                ));
            }
        }
        cps.push(cp);
    }
    // Every root to check, in size order: the stored checkpoints and the held ones.
    let mut checks: Vec<(Checkpoint, Pinned)> = cps
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clone(), Pinned::Stored(i)))
        .collect();
    for note in held {
        let bad = |size, reason: String| AuditError::NotConsistentWithHeld { size, reason };
        note.verify(log_key)
            .map_err(|e| bad(0, format!("it is not signed by the log's key: {e}")))?;
        let cp = Checkpoint::parse(&note.text).map_err(|e| bad(0, e.to_string()))?;
        if cp.origin != log_key.name() {
            return Err(bad(
                cp.size,
                format!("its origin is {:?}, not {:?}", cp.origin, log_key.name()),
            ));
        }
        if cp.size == 0 {
            if cp.root != empty_root() {
                return Err(bad(0, "it signs a non-empty root for size 0".into()));
            }
            continue;
        }
        checks.push((cp, Pinned::Held));
    }
    checks.sort_by_key(|(c, _)| c.size);

    let mut frontier = Frontier::default();
    let mut next = 0;
    let mismatch = |index: usize, root: Hash| {
        let (cp, pinned) = &checks[index];
        let reason = format!(
            "the entries give root {}, the checkpoint signs {}",
            hex(&root),
            hex(&cp.root)
        );
        match pinned {
            Pinned::Stored(i) => AuditError::BadStoredCheckpoint {
                index: *i,
                size: cp.size,
                reason,
            },
            Pinned::Held => AuditError::NotConsistentWithHeld {
                size: cp.size,
                reason,
            },
        }
    };
    let count = for_each_entry_checked(dir, piece, progress, |first, leaves| {
        match leaves {
            Leaves::One(hash) => frontier.push(hash),
            Leaves::Block(tree) => {
                // Checkpoints inside the block: the frontier, then the block's prefix.
                while next < checks.len() && checks[next].0.size < first + BLOCK as u64 {
                    let root = frontier.root_with(tree.root_at(checks[next].0.size - first)?);
                    if root != checks[next].0.root {
                        return Err(mismatch(next, root));
                    }
                    next += 1;
                }
                frontier.push_at(BLOCK.trailing_zeros(), tree.root());
            }
        }
        let end = first
            + if matches!(leaves, Leaves::One(_)) {
                1
            } else {
                BLOCK as u64
            };
        while next < checks.len() && checks[next].0.size == end {
            let root = frontier.root();
            if root != checks[next].0.root {
                return Err(mismatch(next, root));
            }
            next += 1;
        }
        Ok(())
    })?;
    if let Some((cp, pinned)) = checks.get(next) {
        return Err(match pinned {
            Pinned::Stored(index) => AuditError::Truncated {
                entries: count,
                index: *index,
                size: cp.size,
            },
            Pinned::Held => AuditError::RolledBack {
                entries: count,
                signed: cp.size,
            },
        });
    }
    let signed = cps.last().map_or(0, |c| c.size);
    if count > signed {
        return Err(AuditError::UnsignedTail {
            size: signed,
            count: count - signed,
        });
    }

    // Cosignatures: every stored one must be over a checkpoint of this log.
    let cosigned = read_notes(&files::cosignatures_path(dir))?;
    let mut latest = notes.last().cloned();
    for (i, note) in cosigned.iter().enumerate() {
        note.verify(log_key)
            .map_err(|e| AuditError::BadStoredCheckpoint {
                index: i,
                size: 0,
                reason: format!("cosigned note {i}: {e}"),
            })?;
        if !notes.iter().any(|n| n.text == note.text) {
            return Err(AuditError::BadStoredCheckpoint {
                index: i,
                size: 0,
                reason: format!("cosigned note {i} is over a checkpoint this log never signed"),
            });
        }
        if let Some(l) = latest.as_mut().filter(|l| l.text == note.text) {
            for s in &note.signatures {
                if !l.signatures.contains(s) {
                    l.signatures.push(s.clone());
                }
            }
        }
    }
    let mut witnessed = 0;
    if let Some(policy) = witnesses {
        let Some(latest) = &latest else {
            return Err(AuditError::QuorumNotMet {
                got: 0,
                want: policy.quorum,
            });
        };
        witnessed = policy.check(latest)?;
    }
    Ok(VerifyReport {
        entries: count,
        checkpoints: cps.len(),
        root: frontier.root(),
        witnesses: witnessed,
    })
}

/// The tree of a log directory, from the persisted levels when they match the latest stored
/// checkpoint, else rebuilt from the entries.
pub fn load_tree(dir: &Path) -> Result<MerkleTree, AuditError> {
    let notes = stored_checkpoints(dir)?;
    let latest = match notes.last() {
        Some(n) => Some(Checkpoint::parse(&n.text)?),
        None => None,
    };
    // The cache may be thrown away or damaged: any doubt about it means a rebuild, never an
    // error.
    if let (Ok((tree, _)), Some(cp)) = (files::load_tree_readonly(dir), &latest) {
        if tree.size() >= cp.size && tree.root_at(cp.size).is_ok_and(|r| r == cp.root) {
            return Ok(tree);
        }
    }
    rebuild_tree(dir)
}

/// The tree of a log directory, from its entries alone.
fn rebuild_tree(dir: &Path) -> Result<MerkleTree, AuditError> {
    let mut tree = MerkleTree::new();
    for_each_entry(dir, &mut |_, _| {}, |_, _, h| {
        tree.push(*h);
        Ok(())
    })?;
    Ok(tree)
}

/// The canonical bytes of entry `seq`.
pub fn entry_bytes(dir: &Path, seq: u64) -> Result<Vec<u8>, AuditError> {
    let segments = files::list_segments(dir)?;
    let idx = segments.partition_point(|(first, _)| *first <= seq);
    let missing = || AuditError::BadStoredEntry {
        seq,
        reason: "the log holds no such entry".into(),
    };
    let (first, path) = segments
        .get(idx.checked_sub(1).ok_or_else(missing)?)
        .ok_or_else(missing)?;
    let buf = files::read_file(path)?;
    files::check_header(&buf, path, *first)?;
    // The entries up to the first frame that does not hold, as the writer would see them.
    let found = files::frames(&buf, SEGMENT_HEADER)
        .checked(false)
        .map_while(Result::ok)
        .nth((seq - *first) as usize)
        .map(|(f, _)| f.payload.to_vec());
    found.ok_or_else(missing)
}

/// Builds the C2SP tlog-proof of entry `seq` against the latest stored checkpoint, with every
/// stored cosignature on it.
pub fn prove(dir: &Path, seq: u64) -> Result<InclusionProof, AuditError> {
    let notes = stored_checkpoints(dir)?;
    let mut note = notes.last().cloned().ok_or(AuditError::MissingSignature {
        signer: "the log (no checkpoint has been signed yet)".into(),
    })?;
    // Carry the witnesses' cosignatures on that checkpoint, so the proof checks under a policy.
    for cosigned in stored_cosigned(dir)? {
        if cosigned.text == note.text {
            for s in cosigned.signatures {
                if !note.signatures.contains(&s) {
                    note.signatures.push(s);
                }
            }
        }
    }
    let cp = Checkpoint::parse(&note.text)?;
    let entry = entry_bytes(dir, seq)?;
    let leaf = crate::merkle::leaf_hash(&entry);
    let check =
        |proof: &[Hash]| crate::merkle::verify_inclusion(&leaf, seq, cp.size, proof, &cp.root);
    let mut proof = load_tree(dir)?.inclusion_proof(seq, cp.size)?;
    if check(&proof).is_err() {
        // A damaged interior node of the cache: rebuild from the entries and try once more.
        proof = rebuild_tree(dir)?.inclusion_proof(seq, cp.size)?;
    }
    // Refuse to hand out a proof that does not check.
    check(&proof)?;
    Ok(InclusionProof {
        entry,
        index: seq,
        proof,
        checkpoint: note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{doc_example_entry, AuditLog, KeyKind, LogConfig, SigningKey};

    fn key() -> SigningKey {
        SigningKey::from_seed("audit.example/pieces", KeyKind::Ed25519, [7; 32]).unwrap()
    }

    /// 2,600 entries over two segments, checkpoints every 250 (inside aligned blocks, at their
    /// edges and after the last one).
    fn log() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = LogConfig::new(key());
        cfg.checkpoint_every = 250;
        cfg.checkpoint_interval = None;
        cfg.segment_bytes = 400_000;
        let log = AuditLog::open(dir.path(), cfg).unwrap();
        for i in 0..2600u64 {
            let mut e = doc_example_entry().unwrap();
            e.time_ms += i;
            e.request_id = format!("req-{i}");
            log.append(e).unwrap();
        }
        log.close().unwrap();
        dir
    }

    /// Pieces smaller than a frame, cutting frames anywhere, and larger than a segment.
    const PIECES: [usize; 6] = [100, 301, 4_096, 65_536, 1 << 20, READ_PIECE];

    fn verify_with(dir: &Path, piece: usize) -> Result<VerifyReport, AuditError> {
        verify_in_pieces(dir, &key().verifier(), None, &[], piece, &mut |_, _| {})
    }

    #[test]
    fn every_piece_size_gives_the_same_verdict() {
        let dir = log();
        let segments = files::list_segments(dir.path()).unwrap();
        assert!(segments.len() >= 2, "{segments:?}");
        let whole = verify_with(dir.path(), READ_PIECE).unwrap();
        assert_eq!(whole.entries, 2600);
        assert!(whole.checkpoints >= 10);
        for piece in PIECES {
            assert_eq!(
                verify_with(dir.path(), piece).unwrap(),
                whole,
                "piece {piece}"
            );
        }

        // One changed byte in an entry of the second segment, then a torn tail: every piece
        // size reports the same first bad entry.
        for damage in ["flip", "tear"] {
            let dir = log();
            let segments = files::list_segments(dir.path()).unwrap();
            let path = &segments[1].1;
            let mut bytes = std::fs::read(path).unwrap();
            if damage == "flip" {
                let at = bytes.len() / 2;
                bytes[at] ^= 0x20;
            } else {
                bytes.truncate(bytes.len() - 7);
            }
            std::fs::write(path, &bytes).unwrap();
            let errors: Vec<String> = PIECES
                .iter()
                .map(|&p| verify_with(dir.path(), p).unwrap_err().to_string())
                .collect();
            assert!(
                errors.iter().all(|e| e == &errors[0]),
                "{damage}: {errors:#?}"
            );
        }
    }
}
