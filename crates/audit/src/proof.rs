//! Offline inclusion proofs in the C2SP tlog-proof format, carrying the entry's own bytes.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 of the entry's canonical bytes>
//! index <leaf index>
//! <base64 proof hash>…
//!
//! <the signed checkpoint note, with any cosignatures>
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::checkpoint::Checkpoint;
use crate::entry::Entry;
use crate::merkle::{leaf_hash, verify_inclusion, Hash};
use crate::note::{Note, VerifierKey};
use crate::witness::WitnessPolicy;
use crate::AuditError;

const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// An inclusion proof an auditor can check offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// The entry's canonical bytes (the tlog-proof `extra` field): the leaf is their hash.
    pub entry: Vec<u8>,
    /// The leaf index (the entry's sequence number).
    pub index: u64,
    /// The audit path, leaf to root.
    pub proof: Vec<Hash>,
    /// The signed checkpoint the path leads to.
    pub checkpoint: Note,
}

impl InclusionProof {
    /// The proof as tlog-proof text.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{HEADER}\nextra {}\nindex {}\n",
            B64.encode(&self.entry),
            self.index
        );
        for h in &self.proof {
            out.push_str(&B64.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint.to_text());
        out
    }

    /// Parses tlog-proof text.
    pub fn parse(text: &str) -> Result<Self, AuditError> {
        let bad = |line, reason| AuditError::BadProofText { line, reason };
        let (head, note) = text
            .split_once("\n\n")
            .ok_or_else(|| bad(1, "no blank line before the checkpoint"))?;
        let mut lines = head.split('\n').enumerate().map(|(i, l)| (i + 1, l));
        match lines.next() {
            Some((_, HEADER)) => {}
            _ => return Err(bad(1, "the first line is not c2sp.org/tlog-proof@v1")),
        }
        let mut entry = None;
        let mut index = None;
        let mut proof = Vec::new();
        for (n, line) in lines {
            if let Some(e) = line.strip_prefix("extra ") {
                if entry.is_some() || index.is_some() {
                    return Err(bad(n, "extra must come once, before index"));
                }
                entry = Some(B64.decode(e).map_err(|_| bad(n, "extra is not base64"))?);
            } else if let Some(i) = line.strip_prefix("index ") {
                if index.is_some() {
                    return Err(bad(n, "index appears twice"));
                }
                index = Some(
                    i.parse::<u64>()
                        .map_err(|_| bad(n, "index is not a number"))?,
                );
            } else {
                if index.is_none() {
                    return Err(bad(n, "a hash before the index line"));
                }
                let h = B64
                    .decode(line)
                    .ok()
                    .and_then(|h| <Hash>::try_from(h.as_slice()).ok())
                    .ok_or_else(|| bad(n, "a proof line is not 32 bytes of base64"))?;
                proof.push(h);
            }
        }
        Ok(InclusionProof {
            entry: entry.ok_or_else(|| bad(2, "no extra line with the entry's bytes"))?,
            index: index.ok_or_else(|| bad(2, "no index line"))?,
            proof,
            checkpoint: Note::parse(note.as_bytes())?,
        })
    }

    /// Checks the proof offline: the checkpoint is signed by `log_key` for its origin, the
    /// entry's leaf hash is at `index` in that tree, the entry decodes and carries that sequence
    /// number, and, with a policy, enough witnesses cosigned. Returns the entry.
    pub fn check(
        &self,
        log_key: &VerifierKey,
        witnesses: Option<&WitnessPolicy>,
    ) -> Result<Entry, AuditError> {
        self.checkpoint.verify(log_key)?;
        let cp = Checkpoint::parse(&self.checkpoint.text)?;
        if cp.origin != log_key.name() {
            return Err(AuditError::Inconsistent {
                reason: format!(
                    "the checkpoint's origin {:?} is not {:?}",
                    cp.origin,
                    log_key.name()
                ),
            });
        }
        if let Some(policy) = witnesses {
            policy.check(&self.checkpoint)?;
        }
        verify_inclusion(
            &leaf_hash(&self.entry),
            self.index,
            cp.size,
            &self.proof,
            &cp.root,
        )?;
        let entry = Entry::from_canonical(&self.entry)?;
        if entry.seq != self.index {
            return Err(AuditError::BadStoredEntry {
                seq: self.index,
                reason: format!("the entry carries sequence number {}", entry.seq),
            });
        }
        Ok(entry)
    }
}
