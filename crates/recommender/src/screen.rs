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

use std::collections::{BTreeMap, HashSet};

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
        self
    }

    /// This screen and `other` as one (searched in one pass over the bytes).
    pub fn merged(&self, other: &Screen) -> Screen {
        let mut out = self.clone();
        out.ids.extend(other.ids.iter().cloned());
        out.pseudonyms.extend(other.pseudonyms.iter().cloned());
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

    /// How many times any id or pseudonym occurs in `bytes`.
    ///
    /// Every pseudonym and id is searched as it is, length-prefixed (u8, u16 and u32
    /// little-endian, as binary encoders store strings), as a JSON string and NUL-terminated:
    /// each form that is at least [`MIN_NEEDLE_LEN`] bytes long.
    pub fn occurrences(&self, bytes: &[u8]) -> usize {
        let mut needles: Vec<Vec<u8>> = Vec::new();
        for id in self.ids.iter().chain(&self.pseudonyms) {
            let b = id.as_bytes();
            needles.push(b.to_vec());
            if let Ok(n) = u8::try_from(b.len()) {
                needles.push([&[n][..], b].concat());
            }
            if let Ok(n) = u16::try_from(b.len()) {
                needles.push([&n.to_le_bytes()[..], b].concat());
            }
            needles.push([&(b.len() as u32).to_le_bytes()[..], b].concat());
            needles.push(format!("\"{id}\"").into_bytes());
            needles.push([b, &[0u8][..]].concat());
        }
        let mut by_len: BTreeMap<usize, HashSet<&[u8]>> = BTreeMap::new();
        for n in &needles {
            if n.len() >= MIN_NEEDLE_LEN {
                by_len.entry(n.len()).or_default().insert(n);
            }
        }
        let mut found = 0;
        for (len, set) in by_len {
            // A bitmap of the needles' first two bytes rejects almost every window before
            // hashing.
            let mut first = vec![false; 1 << 16];
            for n in &set {
                first[(n[0] as usize) << 8 | n[1] as usize] = true;
            }
            found += bytes
                .windows(len)
                .filter(|w| first[(w[0] as usize) << 8 | w[1] as usize] && set.contains(w))
                .count();
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
