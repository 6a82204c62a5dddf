//! The RFC 6962 / RFC 9162 Merkle tree: hashing, proofs and their verification.
//!
//! Leaves hash as `SHA-256(0x00 ‖ data)`, interior nodes as `SHA-256(0x01 ‖ left ‖ right)`, and
//! the empty tree as `SHA-256("")`. The verifiers follow RFC 9162 §2.1.3.2 and §2.1.4.2 and take
//! the proof's parts as raw bytes, so that a malformed proof (a part of the wrong length, a
//! missing or extra part) is an error rather than something that cannot be expressed.

use std::fmt;

use ring::digest::{Context, SHA256};

/// A SHA-256 digest: a leaf hash, a node hash or a tree root.
pub type Hash = [u8; 32];

/// Why a proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange {
        /// The index given.
        index: u64,
        /// The tree size given.
        size: u64,
    },
    /// The first size is larger than the second.
    #[error("size1 {size1} is larger than size2 {size2}")]
    SizesReversed {
        /// The older size.
        size1: u64,
        /// The newer size.
        size2: u64,
    },
    /// Consistency with the empty tree proves nothing and is refused.
    #[error("a consistency proof from the empty tree proves nothing")]
    FromEmptyTree,
    /// A hash (leaf hash or proof part) is not 32 bytes long.
    #[error("{what} is {len} bytes long, expected 32")]
    BadHashLength {
        /// Which hash.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// The proof has the wrong number of parts for these sizes.
    #[error("the proof has {got} parts, expected {want}")]
    WrongLength {
        /// Parts given.
        got: usize,
        /// Parts expected.
        want: usize,
    },
    /// The recomputed root differs from the one given.
    #[error("the proof leads to root {computed}, not to the expected {expected}")]
    RootMismatch {
        /// Hex of the computed root.
        computed: String,
        /// Hex of the expected root.
        expected: String,
    },
}

/// Lowercase hex of a hash, for messages and for the pseudonyms an entry carries (the Gate
/// writes one per read, so this is one allocation, not one per byte).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// `SHA-256(0x00 ‖ data)`: the hash of a leaf holding `data`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0x00]);
    ctx.update(data);
    to_hash(ctx.finish().as_ref())
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node.
pub fn node_hash(left: &[u8], right: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0x01]);
    ctx.update(left);
    ctx.update(right);
    to_hash(ctx.finish().as_ref())
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    to_hash(ring::digest::digest(&SHA256, b"").as_ref())
}

fn to_hash(bytes: &[u8]) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(bytes);
    out
}

/// The largest power of two strictly smaller than `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The Merkle tree over a sequence of leaf hashes, kept as the hashes of every complete, aligned
/// subtree, level by level. Any subtree hash, root or proof for any size up to the current one
/// is then a handful of lookups: O(log² n) hashes at worst, no rehashing of leaves.
#[derive(Clone, Default)]
pub struct MerkleTree {
    /// `levels[k][i]` is the hash of leaves `[i·2^k, (i+1)·2^k)`.
    levels: Vec<Vec<Hash>>,
}

impl fmt::Debug for MerkleTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MerkleTree")
            .field("size", &self.size())
            .field("root", &hex(&self.root()))
            .finish()
    }
}

impl MerkleTree {
    /// An empty tree.
    pub fn new() -> Self {
        MerkleTree::default()
    }

    /// A tree over these leaf hashes.
    pub fn from_leaf_hashes(leaves: impl IntoIterator<Item = Hash>) -> Self {
        let mut tree = MerkleTree::new();
        for leaf in leaves {
            tree.push(leaf);
        }
        tree
    }

    /// Rebuilds a tree from stored levels, checking that every level has the length the leaf
    /// count implies. Returns `None` when they do not fit together.
    pub fn from_levels(levels: Vec<Vec<Hash>>) -> Option<Self> {
        let size = levels.first().map_or(0, |l| l.len() as u64);
        for (k, level) in levels.iter().enumerate() {
            if level.len() as u64 != size >> k {
                return None;
            }
        }
        if levels.last().is_some_and(|l| l.is_empty()) {
            return None;
        }
        Some(MerkleTree { levels })
    }

    /// The stored levels (`levels()[k]` holds the complete subtrees of 2^k leaves).
    pub fn levels(&self) -> &[Vec<Hash>] {
        &self.levels
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut k = 0;
        let mut carry = leaf;
        loop {
            if self.levels.len() == k {
                self.levels.push(Vec::new());
            }
            self.levels[k].push(carry);
            let len = self.levels[k].len();
            if len % 2 == 1 {
                break;
            }
            carry = node_hash(&self.levels[k][len - 2], &self.levels[k][len - 1]);
            k += 1;
        }
    }

    /// The hash of leaf `index`, if it exists.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.levels.first()?.get(index as usize).copied()
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Hash {
        self.root_at(self.size()).unwrap_or_else(|_| empty_root())
    }

    /// The root the tree had when it held `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        if size > self.size() {
            return Err(ProofError::IndexOutOfRange {
                index: size,
                size: self.size(),
            });
        }
        if size == 0 {
            return Ok(empty_root());
        }
        Ok(self.subtree(0, size))
    }

    /// MTH(D[start:end]) for `start < end <= size`.
    fn subtree(&self, start: u64, end: u64) -> Hash {
        let n = end - start;
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let k = n.trailing_zeros() as usize;
            return self.levels[k][(start >> k) as usize];
        }
        let k = split_point(n);
        node_hash(
            &self.subtree(start, start + k),
            &self.subtree(start + k, end),
        )
    }

    /// The RFC 6962 audit path for leaf `index` in the tree of size `size`, leaf to root.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        if size > self.size() || index >= size {
            return Err(ProofError::IndexOutOfRange {
                index,
                size: size.min(self.size()),
            });
        }
        let mut out = Vec::with_capacity(64);
        self.path(index, 0, size, &mut out);
        Ok(out)
    }

    fn path(&self, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) {
        let n = end - start;
        if n == 1 {
            return;
        }
        let k = split_point(n);
        if m < k {
            self.path(m, start, start + k, out);
            out.push(self.subtree(start + k, end));
        } else {
            self.path(m - k, start + k, end, out);
            out.push(self.subtree(start, start + k));
        }
    }

    /// The RFC 6962 consistency proof between sizes `size1` and `size2` of this tree.
    pub fn consistency_proof(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, ProofError> {
        if size1 > size2 {
            return Err(ProofError::SizesReversed { size1, size2 });
        }
        if size2 > self.size() {
            return Err(ProofError::IndexOutOfRange {
                index: size2,
                size: self.size(),
            });
        }
        let mut out = Vec::with_capacity(64);
        if size1 > 0 && size1 < size2 {
            self.subproof(size1, 0, size2, true, &mut out);
        }
        Ok(out)
    }

    fn subproof(&self, m: u64, start: u64, end: u64, whole: bool, out: &mut Vec<Hash>) {
        let n = end - start;
        if m == n {
            if !whole {
                out.push(self.subtree(start, end));
            }
            return;
        }
        let k = split_point(n);
        if m <= k {
            self.subproof(m, start, start + k, whole, out);
            out.push(self.subtree(start + k, end));
        } else {
            self.subproof(m - k, start + k, end, false, out);
            out.push(self.subtree(start, start + k));
        }
    }
}

fn part(bytes: &[u8], what: &'static str) -> Result<(), ProofError> {
    if bytes.len() != 32 {
        return Err(ProofError::BadHashLength {
            what,
            len: bytes.len(),
        });
    }
    Ok(())
}

fn matches(computed: &[u8], expected: &[u8]) -> Result<(), ProofError> {
    if computed == expected {
        Ok(())
    } else {
        Err(ProofError::RootMismatch {
            computed: hex(computed),
            expected: hex(expected),
        })
    }
}

/// Verifies that `leaf_hash` is leaf `index` of the tree of size `size` with root `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion<P: AsRef<[u8]>>(
    leaf_hash: &[u8],
    index: u64,
    size: u64,
    proof: &[P],
    root: &[u8],
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    part(leaf_hash, "the leaf hash")?;
    // The path length is fixed by index and size: the bits below the highest bit where the
    // index and the last index differ, plus the ones above it that the right border adds.
    let inner = 64 - (index ^ (size - 1)).leading_zeros() as usize;
    let border = (index >> inner).count_ones() as usize;
    if proof.len() != inner + border {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want: inner + border,
        });
    }
    let mut r: Hash = to_hash(leaf_hash);
    for (i, p) in proof.iter().enumerate() {
        let p = p.as_ref();
        part(p, "a proof part")?;
        r = if i < inner && (index >> i) & 1 == 0 {
            node_hash(&r, p)
        } else {
            node_hash(p, &r)
        };
    }
    matches(&r, root)
}

/// Verifies that the tree of size `size1` with root `root1` is a prefix of the tree of size
/// `size2` with root `root2` (RFC 9162 §2.1.4.2).
pub fn verify_consistency<P: AsRef<[u8]>>(
    size1: u64,
    size2: u64,
    proof: &[P],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizesReversed { size1, size2 });
    }
    if size1 == 0 {
        return Err(ProofError::FromEmptyTree);
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: 0,
            });
        }
        return matches(root2, root1);
    }
    for p in proof {
        part(p.as_ref(), "a proof part")?;
    }
    // Follows RFC 9162 §2.1.4.2 step by step.
    let mut parts: Vec<&[u8]> = Vec::with_capacity(proof.len() + 1);
    if size1.is_power_of_two() {
        parts.push(root1);
    }
    parts.extend(proof.iter().map(|p| p.as_ref()));
    let Some((first, rest)) = parts.split_first() else {
        return Err(ProofError::WrongLength { got: 0, want: 1 });
    };
    part(first, "the first proof part")?;
    let mut fn_ = size1 - 1;
    let mut sn = size2 - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut fr = to_hash(first);
    let mut sr = fr;
    for c in rest {
        if sn == 0 {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: proof.len() - 1,
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want: proof.len() + 1,
        });
    }
    matches(&fr, root1)?;
    matches(&sr, root2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff, 0x10]), "000fa5ff10");
        assert_eq!(hex(&[]), "");
        let all: Vec<u8> = (0..=255).collect();
        let want: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex(&all), want);
    }

    /// The reference tree of RFC 6962's test suite (and transparency-dev/merkle).
    fn reference_leaves() -> Vec<Vec<u8>> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|h| {
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect()
    }

    #[test]
    fn published_roots_of_the_reference_tree() {
        // Roots at sizes 1..=8, as published with the RFC 6962 reference tests.
        let want = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let tree = MerkleTree::from_leaf_hashes(reference_leaves().iter().map(|l| leaf_hash(l)));
        for (i, w) in want.iter().enumerate() {
            assert_eq!(
                hex(&tree.root_at(i as u64 + 1).unwrap()),
                *w,
                "size {}",
                i + 1
            );
        }
        assert_eq!(
            hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn every_proof_in_small_trees_verifies_and_mutations_fail() {
        let tree = MerkleTree::from_leaf_hashes((0u32..40).map(|i| leaf_hash(&i.to_be_bytes())));
        for size in 1..=40u64 {
            let root = tree.root_at(size).unwrap();
            for index in 0..size {
                let proof = tree.inclusion_proof(index, size).unwrap();
                let leaf = tree.leaf(index).unwrap();
                verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
                if size > 1 {
                    assert!(
                        verify_inclusion(&leaf, (index + 1) % size, size, &proof, &root).is_err()
                    );
                }
            }
            for size1 in 1..=size {
                let proof = tree.consistency_proof(size1, size).unwrap();
                let root1 = tree.root_at(size1).unwrap();
                verify_consistency(size1, size, &proof, &root1, &root).unwrap();
                if size1 < size {
                    let mut bad = proof.clone();
                    bad[0][0] ^= 1;
                    assert!(verify_consistency(size1, size, &bad, &root1, &root).is_err());
                }
            }
        }
    }

    #[test]
    fn stored_levels_round_trip() {
        let tree = MerkleTree::from_leaf_hashes((0u32..77).map(|i| leaf_hash(&i.to_be_bytes())));
        let again = MerkleTree::from_levels(tree.levels().to_vec()).unwrap();
        assert_eq!(again.root(), tree.root());
        let mut short = tree.levels().to_vec();
        short[2].pop();
        assert!(MerkleTree::from_levels(short).is_none());
    }
}
