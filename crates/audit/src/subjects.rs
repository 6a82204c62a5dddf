//! The subjects a bulk entry touched: a set of pseudonyms, committed to in the entry by the root
//! of a Merkle tree and kept beside the log, so that an auditor can ask "was this person in that
//! access?" and get an answer with a proof.
//!
//! The set is the sorted, de-duplicated pseudonyms of every subject whose records a bulk access
//! read, wrote or shredded. Its commitment, in the entry (and so under the log's Merkle tree and
//! signed checkpoints), is the count and the RFC 6962 Merkle root over the sorted pseudonyms, each
//! pseudonym's 32 bytes being one leaf. The list itself is kept in the log directory as
//!
//! ```text
//! <dir>/subjects/<root as 64 hex digits>.set    "DMCSUBJ1" ‖ u64 count ‖ count × 32 bytes
//! ```
//!
//! named by its root, so it is written once however many entries commit to it, and a list that
//! was edited, cut short or swapped for another no longer hashes to the root its name and the
//! entry give: [`read_subject_set`] refuses it. The list holds pseudonyms only (keyed HMACs,
//! invariant 6); without the audit key it says how many people an access touched, not who.
//!
//! ```
//! use domicile_audit::{AuditKey, SubjectSet};
//! use domicile_residency::SubjectId;
//!
//! let key = AuditKey::from_bytes([7; 32]);
//! let ids = ["user-1", "user-2", "user-3"].map(|i| SubjectId::parse(i).unwrap());
//! let set = SubjectSet::new(ids.iter().map(|id| key.pseudonym(id)));
//! let commitment = set.commitment();
//! let proof = set.prove(&key.pseudonym(&ids[1])).expect("user-2 is in the set");
//! proof.verify(&key.pseudonym(&ids[1]), &commitment)?;
//! assert!(set.prove(&key.pseudonym(&SubjectId::parse("user-4")?)).is_none());
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::merkle::{hex, leaf_hash, verify_inclusion, Hash, MerkleTree};
use crate::pseudonym::{parse_hex32, Pseudonym};
use crate::AuditError;

const SET_MAGIC: &[u8; 8] = b"DMCSUBJ1";
const SET_HEADER: usize = 16;

/// The largest subject list read back from disk (a bound on what a tampered file can make a
/// reader allocate): 2^24 subjects, 512 MiB.
pub const MAX_SET_SUBJECTS: u64 = 1 << 24;

/// The root of a subject set's Merkle tree, as 64 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SetRoot(pub Hash);

impl fmt::Display for SetRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl std::str::FromStr for SetRoot {
    type Err = AuditError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex32(s)
            .map(SetRoot)
            .ok_or_else(|| AuditError::BadField {
                field: "subject set root",
                value: s.chars().take(80).collect(),
                reason: "expected 64 lowercase hex digits".into(),
            })
    }
}

impl TryFrom<String> for SetRoot {
    type Error = AuditError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<SetRoot> for String {
    fn from(r: SetRoot) -> String {
        r.to_string()
    }
}

/// What an entry holds of a subject set: how many subjects, and the Merkle root over them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SubjectSetCommitment {
    /// How many distinct subjects.
    pub count: u64,
    /// The RFC 6962 Merkle root over their sorted pseudonyms.
    pub root: SetRoot,
}

/// A sorted set of subject pseudonyms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectSet {
    sorted: Vec<Pseudonym>,
}

impl FromIterator<Pseudonym> for SubjectSet {
    fn from_iter<I: IntoIterator<Item = Pseudonym>>(iter: I) -> Self {
        SubjectSet::new(iter)
    }
}

/// Building, committing to and proving membership of a set.
impl SubjectSet {
    /// The set of these pseudonyms (sorted, duplicates dropped).
    pub fn new(pseudonyms: impl IntoIterator<Item = Pseudonym>) -> Self {
        let mut sorted: Vec<Pseudonym> = pseudonyms.into_iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        SubjectSet { sorted }
    }

    /// How many subjects.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The pseudonyms, sorted.
    pub fn pseudonyms(&self) -> &[Pseudonym] {
        &self.sorted
    }

    fn tree(&self) -> MerkleTree {
        MerkleTree::from_leaf_hashes(self.sorted.iter().map(|p| leaf_hash(&p.0)))
    }

    /// The count and Merkle root an entry records.
    pub fn commitment(&self) -> SubjectSetCommitment {
        SubjectSetCommitment {
            count: self.sorted.len() as u64,
            root: SetRoot(self.tree().root()),
        }
    }

    /// The proof that `pseudonym` is in the set, or `None` when it is not.
    pub fn prove(&self, pseudonym: &Pseudonym) -> Option<SubjectSetProof> {
        let index = self.sorted.binary_search(pseudonym).ok()? as u64;
        let size = self.sorted.len() as u64;
        let path = self.tree().inclusion_proof(index, size).ok()?;
        Some(SubjectSetProof { index, size, path })
    }

    /// The file form: magic, count, the pseudonyms.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SET_HEADER + 32 * self.sorted.len());
        out.extend_from_slice(SET_MAGIC);
        out.extend_from_slice(&(self.sorted.len() as u64).to_be_bytes());
        for p in &self.sorted {
            out.extend_from_slice(&p.0);
        }
        out
    }

    /// Parses the file form, refusing anything that is not exactly the form of a sorted set.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let body = bytes
            .strip_prefix(SET_MAGIC.as_slice())
            .ok_or("not a subject set file (bad magic)")?;
        let (count, rest) = body.split_at_checked(8).ok_or("the header ends early")?;
        let count = u64::from_be_bytes(count.try_into().map_err(|_| "bad count")?);
        if count > MAX_SET_SUBJECTS || rest.len() as u64 != count * 32 {
            return Err(format!(
                "the header says {count} subjects but {} bytes follow",
                rest.len()
            ));
        }
        let sorted: Vec<Pseudonym> = rest
            .chunks_exact(32)
            .map(|c| {
                let mut p = [0u8; 32];
                p.copy_from_slice(c);
                Pseudonym(p)
            })
            .collect();
        if sorted.windows(2).any(|w| w[0] >= w[1]) {
            return Err("the pseudonyms are not strictly sorted".into());
        }
        Ok(SubjectSet { sorted })
    }
}

/// The proof that a pseudonym is leaf `index` of a subject set of `size` subjects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectSetProof {
    /// The pseudonym's position in the sorted set.
    pub index: u64,
    /// The set's size.
    pub size: u64,
    /// The RFC 6962 audit path, leaf to root.
    pub path: Vec<Hash>,
}

impl SubjectSetProof {
    /// Checks that `pseudonym` is in the set `commitment` names.
    pub fn verify(
        &self,
        pseudonym: &Pseudonym,
        commitment: &SubjectSetCommitment,
    ) -> Result<(), AuditError> {
        if self.size != commitment.count {
            return Err(AuditError::BadSubjectSet {
                root: commitment.root,
                reason: format!(
                    "the proof is for a set of {} subjects, the entry commits to {}",
                    self.size, commitment.count
                ),
            });
        }
        verify_inclusion(
            &leaf_hash(&pseudonym.0),
            self.index,
            self.size,
            &self.path,
            &commitment.root.0,
        )?;
        Ok(())
    }
}

pub(crate) fn subjects_dir(dir: &Path) -> PathBuf {
    dir.join("subjects")
}

/// Where the list of the set with root `root` is kept in the log directory `dir`.
pub fn subject_set_path(dir: &Path, root: &SetRoot) -> PathBuf {
    subjects_dir(dir).join(format!("{root}.set"))
}

/// Keeps `set`'s list beside the log in `dir`, durably (written once: a list already there
/// under its root is the same list). Call before appending the entry that commits to it, so no
/// entry names a list that is not on disk.
pub fn write_subject_set(dir: &Path, set: &SubjectSet) -> Result<SubjectSetCommitment, AuditError> {
    let commitment = set.commitment();
    let path = subject_set_path(dir, &commitment.root);
    if path.exists() {
        return Ok(commitment);
    }
    let folder = subjects_dir(dir);
    if !folder.exists() {
        domicile_durable::create_private_dir(&folder)?;
    }
    domicile_durable::write_private(&path, &set.to_bytes())?;
    Ok(commitment)
}

/// Reads back the list an entry's `commitment` names from the log directory `dir`, and checks
/// it: a missing, unreadable, edited or substituted list is [`AuditError::BadSubjectSet`].
pub fn read_subject_set(
    dir: &Path,
    commitment: &SubjectSetCommitment,
) -> Result<SubjectSet, AuditError> {
    let bad = |reason: String| AuditError::BadSubjectSet {
        root: commitment.root,
        reason,
    };
    let path = subject_set_path(dir, &commitment.root);
    let limit = SET_HEADER as u64 + 32 * MAX_SET_SUBJECTS;
    let bytes = domicile_durable::read_bounded(&path, limit).map_err(|e| {
        if e.is_not_found() {
            bad(format!("its list {} is missing", path.display()))
        } else {
            bad(e.to_string())
        }
    })?;
    let set = SubjectSet::from_bytes(&bytes).map_err(bad)?;
    let got = set.commitment();
    if got != *commitment {
        return Err(bad(format!(
            "its list {} holds {} subjects with root {}, not the set the entry commits to",
            path.display(),
            got.count,
            got.root
        )));
    }
    Ok(set)
}

/// Checks the subject list of every bulk entry of the log in `dir` (see [`read_subject_set`]):
/// that each is kept beside the log and is exactly the set its entry commits to. Returns how
/// many bulk entries commit to a set. Run after [`crate::verify`], which proves the entries.
pub fn verify_subject_sets(dir: &Path) -> Result<u64, AuditError> {
    let mut checked = std::collections::BTreeSet::new();
    let mut entries = 0u64;
    crate::for_each_entry(dir, &mut |_, _| {}, |seq, bytes, _| {
        let e = crate::Entry::from_canonical(bytes).map_err(|err| AuditError::BadStoredEntry {
            seq,
            reason: err.to_string(),
        })?;
        if let crate::Target::Batch { subjects, .. } = &e.resource.target {
            entries += 1;
            if subjects.count > 0 && checked.insert(subjects.root) {
                read_subject_set(dir, subjects).map_err(|err| AuditError::BadStoredEntry {
                    seq,
                    reason: err.to_string(),
                })?;
            }
        }
        Ok(())
    })?;
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: u8) -> SubjectSet {
        SubjectSet::new((0..n).map(|i| Pseudonym([i.wrapping_mul(37); 32])))
    }

    #[test]
    fn every_member_has_a_proof_and_no_one_else_does() {
        for n in 1..20u8 {
            let s = set(n);
            let c = s.commitment();
            assert_eq!(c.count, s.len() as u64);
            for p in s.pseudonyms() {
                s.prove(p).unwrap().verify(p, &c).unwrap();
            }
            let stranger = Pseudonym([0xfe; 32]);
            assert!(s.prove(&stranger).is_none());
            // A member's proof does not prove a stranger.
            let proof = s.prove(&s.pseudonyms()[0]).unwrap();
            assert!(proof.verify(&stranger, &c).is_err());
        }
    }

    #[test]
    fn the_root_is_rfc6962_over_the_sorted_pseudonyms() {
        let a = Pseudonym([1; 32]);
        let b = Pseudonym([2; 32]);
        let s = SubjectSet::new([b, a, b]);
        assert_eq!(s.len(), 2);
        let want = crate::merkle::node_hash(&leaf_hash(&a.0), &leaf_hash(&b.0));
        assert_eq!(s.commitment().root.0, want);
    }

    #[test]
    fn the_file_form_is_strict() {
        let s = set(5);
        let bytes = s.to_bytes();
        assert_eq!(SubjectSet::from_bytes(&bytes).unwrap(), s);
        assert!(SubjectSet::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut unsorted = bytes.clone();
        unsorted[SET_HEADER..SET_HEADER + 32].copy_from_slice(&[0xff; 32]);
        assert!(SubjectSet::from_bytes(&unsorted).is_err());
        assert!(SubjectSet::from_bytes(b"garbage").is_err());
    }

    #[test]
    fn the_log_keeps_the_list_before_the_entry_and_refuses_an_entry_without_one() {
        use crate::{AuditLog, KeyKind, LogConfig, SigningKey, Target};
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate("audit.example/us", KeyKind::Ed25519).unwrap();
        let log = AuditLog::open(dir.path(), LogConfig::new(key)).unwrap();
        let entry = crate::entry::tests::sample_batch(1);
        let Target::Batch { subjects, .. } = entry.resource.target.clone() else {
            unreachable!()
        };
        // Without its list: refused, nothing appended.
        let err = log.append(entry.clone()).unwrap_err();
        assert!(matches!(err, AuditError::BadSubjectSet { .. }), "{err}");
        assert_eq!(log.size(), 0);
        // With a list that is not the committed set: refused.
        let other = set(3);
        assert!(log.append_batch(entry.clone(), &other).is_err());
        // Rebuilt from the same pseudonyms: kept, then appended; the list reads back.
        let key = crate::AuditKey::from_bytes([9; 32]);
        let same: SubjectSet = (0..5)
            .map(|n| {
                key.pseudonym(
                    &domicile_residency::SubjectId::parse(&format!("user-{}", 1 + n)).unwrap(),
                )
            })
            .collect();
        log.append_batch(entry, &same).unwrap();
        assert_eq!(read_subject_set(dir.path(), &subjects).unwrap(), same);
        log.close().unwrap();
        assert_eq!(verify_subject_sets(dir.path()).unwrap(), 1);
    }

    #[test]
    fn a_list_edited_on_disk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = set(6);
        let c = write_subject_set(dir.path(), &s).unwrap();
        assert_eq!(read_subject_set(dir.path(), &c).unwrap(), s);
        // Drop one subject from the list (keeping it well-formed): the root no longer matches.
        let fewer = SubjectSet::new(s.pseudonyms()[1..].iter().copied());
        std::fs::write(subject_set_path(dir.path(), &c.root), fewer.to_bytes()).unwrap();
        let err = read_subject_set(dir.path(), &c).unwrap_err();
        assert!(err.to_string().contains("not the set"), "{err}");
        std::fs::remove_file(subject_set_path(dir.path(), &c.root)).unwrap();
        let err = read_subject_set(dir.path(), &c).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
