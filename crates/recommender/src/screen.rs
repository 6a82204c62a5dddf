//! Screening an algorithm's bytes for the people the platform handed over.
//!
//! Before an artifact is written, the platform searches the algorithm's serialised parameters
//! and the hyper-parameters it asked the manifest to record for every subject id and pseudonym
//! that was in the data (invariant 10: a model is the algorithm only). The algorithm was never
//! handed those ids ([`crate::TrainingSet`] has dense indices only), so finding one means it got
//! them some other way, and the artifact is refused
//! ([`crate::RecsysError::SubjectInParameters`], which names no one).
//!
//! A byte search finds ids stored as they are; it cannot find ids an algorithm encrypted or
//! hashed, nor a per-user vector stored by index. It is the check of last resort behind the
//! structural one (no ids, no store, no Gate are handed over), not a proof.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use crate::interactions::Interactions;

/// The shortest byte string searched for. Shorter ones turn up by chance in hundreds of
/// megabytes of float parameters (a 4-byte string about once per 4 GB of uniform bytes, and
/// parameters are not uniform), and a false find would refuse an honest model. So a short id
/// (`u7`) is searched only in the framings that make it this long (u32-length-prefixed), and
/// as it is only from this length on.
pub const MIN_NEEDLE_LEN: usize = 6;

/// The subject ids and pseudonyms an artifact is screened for.
#[derive(Clone, Default)]
pub struct Screen {
    ids: Vec<String>,
    pseudonyms: Vec<String>,
    /// Built on the first search and kept: an artifact is searched more than once (its
    /// parameters, its manifest), and building costs one hash per needle.
    matcher: OnceLock<Arc<Matcher>>,
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Counted, never listed: a debug print must not name anyone.
        f.debug_struct("Screen")
            .field("subject_ids", &self.ids.len())
            .field("pseudonyms", &self.pseudonyms.len())
            .finish()
    }
}

impl Screen {
    /// Every subject of `data`: its users and its items' creators (creators are subjects too).
    pub fn of(data: &Interactions) -> Screen {
        Screen::default().with_subject_ids(
            data.users
                .ids()
                .iter()
                .chain(data.creators.ids())
                .map(String::as_str),
        )
    }

    /// This screen, also searching for these subject ids.
    pub fn with_subject_ids<'a>(mut self, ids: impl IntoIterator<Item = &'a str>) -> Screen {
        self.ids
            .extend(ids.into_iter().filter(|s| !s.is_empty()).map(str::to_owned));
        self.matcher = OnceLock::new();
        self
    }

    /// This screen, also searching for these pseudonyms (the audit log's hex HMACs of the same
    /// subjects, say).
    pub fn with_pseudonyms<S: AsRef<str>>(
        mut self,
        pseudonyms: impl IntoIterator<Item = S>,
    ) -> Screen {
        self.pseudonyms.extend(
            pseudonyms
                .into_iter()
                .map(|p| p.as_ref().to_owned())
                .filter(|s| !s.is_empty()),
        );
        self.matcher = OnceLock::new();
        self
    }

    /// This screen and `other` as one (searched in one pass over the bytes).
    pub fn merged(&self, other: &Screen) -> Screen {
        let mut out = self.clone();
        out.ids.extend(other.ids.iter().cloned());
        out.pseudonyms.extend(other.pseudonyms.iter().cloned());
        out.matcher = OnceLock::new();
        out
    }

    /// How many subject ids are searched for.
    pub fn subject_ids(&self) -> usize {
        self.ids.len()
    }

    /// How many pseudonyms are searched for.
    pub fn pseudonyms(&self) -> usize {
        self.pseudonyms.len()
    }

    /// How many times any id or pseudonym occurs in `bytes` (overlapping finds counted).
    ///
    /// Every framing an encoder stores a string in (length-prefixed by a u8, u16 or u32, as a
    /// JSON string, NUL-terminated) contains the string itself, so an id or pseudonym at least
    /// [`MIN_NEEDLE_LEN`] bytes long is searched as it is, which finds it in every framing. A
    /// shorter one is searched in each framing that makes it that long. All of them are found
    /// in one pass over the bytes, whatever their number; the search structure is built once
    /// per screen and reused.
    pub fn occurrences(&self, bytes: &[u8]) -> usize {
        self.matcher
            .get_or_init(|| Arc::new(Matcher::new(self.needles())))
            .count(bytes)
    }

    /// Every byte string searched for: each id or pseudonym as it is, or in the framings that
    /// make a short one [`MIN_NEEDLE_LEN`] long.
    fn needles(&self) -> Vec<Vec<u8>> {
        let mut needles: HashSet<Vec<u8>> = HashSet::new();
        for id in self.ids.iter().chain(&self.pseudonyms) {
            let b = id.as_bytes();
            if b.len() >= MIN_NEEDLE_LEN {
                needles.insert(b.to_vec());
                continue;
            }
            let n = b.len();
            for framed in [
                [&[n as u8][..], b].concat(),
                [&(n as u16).to_le_bytes()[..], b].concat(),
                [&(n as u32).to_le_bytes()[..], b].concat(),
                format!("\"{id}\"").into_bytes(),
                [b, &[0u8][..]].concat(),
            ] {
                if framed.len() >= MIN_NEEDLE_LEN {
                    needles.insert(framed);
                }
            }
        }
        needles.into_iter().collect()
    }
}

/// How many times any of `needles` (each at least [`MIN_NEEDLE_LEN`] bytes) occurs in `bytes`,
/// overlapping finds counted.
#[cfg(test)]
fn count_occurrences(bytes: &[u8], needles: Vec<Vec<u8>>) -> usize {
    Matcher::new(needles).count(bytes)
}

/// Searches for many needles in one pass: each position's first [`MIN_NEEDLE_LEN`] bytes are
/// tested against a bitmap of the needles' prefixes, and only a hit is looked up and compared.
/// Building it costs one hash per needle.
struct Matcher {
    bitmap: Vec<u64>,
    by_prefix: HashMap<u64, Vec<usize>>,
    needles: Vec<Vec<u8>>,
}

impl Matcher {
    const BITS: u32 = 22;

    fn prefix(b: &[u8]) -> u64 {
        let mut word = [0u8; 8];
        word[..MIN_NEEDLE_LEN].copy_from_slice(&b[..MIN_NEEDLE_LEN]);
        u64::from_le_bytes(word)
    }

    fn slot(p: u64) -> usize {
        (p.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - Self::BITS)) as usize
    }

    fn new(needles: Vec<Vec<u8>>) -> Matcher {
        let mut bitmap = vec![0u64; 1 << (Self::BITS - 6)];
        let mut by_prefix: HashMap<u64, Vec<usize>> = HashMap::with_capacity(needles.len());
        for (i, n) in needles.iter().enumerate() {
            let p = Self::prefix(n);
            let s = Self::slot(p);
            bitmap[s >> 6] |= 1 << (s & 63);
            by_prefix.entry(p).or_default().push(i);
        }
        Matcher {
            bitmap,
            by_prefix,
            needles,
        }
    }

    /// How many times any needle occurs in `bytes`, overlapping finds counted.
    fn count(&self, bytes: &[u8]) -> usize {
        if bytes.len() < MIN_NEEDLE_LEN {
            return 0;
        }
        let mut found = 0;
        for at in 0..=bytes.len() - MIN_NEEDLE_LEN {
            let p = Self::prefix(&bytes[at..]);
            let s = Self::slot(p);
            if self.bitmap[s >> 6] & (1 << (s & 63)) == 0 {
                continue;
            }
            if let Some(candidates) = self.by_prefix.get(&p) {
                found += candidates
                    .iter()
                    .filter(|&&i| bytes[at..].starts_with(&self.needles[i]))
                    .count();
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The one-pass search counts exactly what comparing every window with every needle
        /// counts, overlapping and nested needles included (a small alphabet makes them common).
        #[test]
        fn one_pass_counts_what_every_window_counts(
            bytes in proptest::collection::vec(0u8..4, 0..400),
            needles in proptest::collection::hash_set(
                proptest::collection::vec(0u8..4, MIN_NEEDLE_LEN..10), 0..20),
        ) {
            let needles: Vec<Vec<u8>> = needles.into_iter().collect();
            let naive: usize = needles
                .iter()
                .map(|n| bytes.windows(n.len()).filter(|w| w == n).count())
                .sum();
            prop_assert_eq!(count_occurrences(&bytes, needles), naive);
        }
    }

    #[test]
    fn ids_are_found_in_the_forms_encoders_store_them() {
        let screen = Screen::default()
            .with_subject_ids(["u7", "u1234", "subject-000123"])
            .with_pseudonyms(["ab".repeat(32)]);
        let floats: Vec<u8> = (0..4096u32)
            .flat_map(|i| (i as f32 * 0.001).to_le_bytes())
            .collect();
        assert_eq!(screen.occurrences(&floats), 0);
        // A short id is not searched bare, nor in short framings (it would be found by
        // chance)...
        for short in [&b"xxu7xx"[..], b"\x02u7", b"[\"u7\"]", b"u7\x00"] {
            assert_eq!(screen.occurrences(short), 0, "{short:?}");
        }
        // ...but u32-framed it is, and a five-byte id in every framing.
        for framed in [
            &b"\x02\x00\x00\x00u7"[..],
            b"\x05u1234",
            b"\x05\x00u1234",
            b"\x05\x00\x00\x00u1234",
            b"[\"u1234\"]",
            b"u1234\x00",
        ] {
            assert_eq!(screen.occurrences(framed), 1, "{framed:?}");
        }
        assert_eq!(screen.occurrences(b"..subject-000123.."), 1);
        assert_eq!(screen.occurrences("ab".repeat(32).as_bytes()), 1);
        assert!(!format!("{screen:?}").contains("u7"));
    }
}
