//! Witnesses: cosigners that check each new checkpoint is consistent with the last one they
//! cosigned, and the policy (witness keys and a quorum) a verifier applies to cosignatures.
//!
//! A cosignature is C2SP tlog-cosignature/v1: a note signature line whose bytes are
//! `key id ‖ u64 timestamp ‖ Ed25519(cosignature/v1\ntime <t>\n‖body)` under a key of type 0x04.

use std::sync::Mutex;

use crate::checkpoint::Checkpoint;
use crate::merkle::{empty_root, verify_consistency, Hash};
use crate::note::{KeyKind, Note, NoteSignature, SigningKey, VerifierKey};
use crate::AuditError;

fn cosigned_message(time: u64, body: &str) -> Vec<u8> {
    let mut msg = format!("cosignature/v1\ntime {time}\n").into_bytes();
    msg.extend_from_slice(body.as_bytes());
    msg
}

/// A witness for one log: it remembers the last checkpoint it cosigned and cosigns a new one only
/// when the log proves the new one extends it.
#[derive(Debug)]
pub struct Witness {
    key: SigningKey,
    log: VerifierKey,
    last: Mutex<Option<(u64, Hash)>>,
}

impl Witness {
    /// A witness cosigning with `key` (a [`KeyKind::Cosignature`] key) for the log whose
    /// checkpoints `log` signs. `last` is the checkpoint it cosigned before, if any (size, root).
    pub fn new(
        key: SigningKey,
        log: VerifierKey,
        last: Option<(u64, Hash)>,
    ) -> Result<Self, AuditError> {
        if key.kind() != KeyKind::Cosignature {
            return Err(AuditError::BadKey {
                key: key.name().to_owned(),
                reason: "a witness signs with a cosignature (type 0x04) key",
            });
        }
        Ok(Witness {
            key,
            log,
            last: Mutex::new(last),
        })
    }

    /// The last checkpoint this witness cosigned (size, root).
    pub fn last(&self) -> Option<(u64, Hash)> {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The witness's verifier key.
    pub fn verifier(&self) -> VerifierKey {
        self.key.verifier()
    }

    /// Checks `note` (a checkpoint signed by the log) and `proof` (consistency from the last
    /// checkpoint this witness cosigned) and returns the cosignature line at `time` (seconds since
    /// the Unix epoch). Refuses a rollback, a fork, or a note the log did not sign.
    pub fn cosign(
        &self,
        note: &Note,
        proof: &[Hash],
        time: u64,
    ) -> Result<NoteSignature, AuditError> {
        note.verify(&self.log)?;
        let cp = Checkpoint::parse(&note.text)?;
        if cp.origin != self.log.name() {
            return Err(AuditError::Inconsistent {
                reason: format!(
                    "the checkpoint's origin {:?} is not the log's name {:?}",
                    cp.origin,
                    self.log.name()
                ),
            });
        }
        if cp.size == 0 && cp.root != empty_root() {
            return Err(AuditError::Inconsistent {
                reason: "a checkpoint of size 0 must have the root of the empty tree".into(),
            });
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        // The empty tree is a prefix of every tree: after cosigning it, no proof is needed.
        if let Some((size, root)) = (*last).filter(|(size, _)| *size > 0) {
            if cp.size < size {
                return Err(AuditError::Inconsistent {
                    reason: format!("the log rolled back from size {size} to {}", cp.size),
                });
            }
            verify_consistency(size, cp.size, proof, &root, &cp.root).map_err(|e| {
                AuditError::Inconsistent {
                    reason: format!("size {size} to {}: {e}", cp.size),
                }
            })?;
        }
        let sig = self.key.sign_bytes(&cosigned_message(time, &note.text));
        let mut bytes = time.to_be_bytes().to_vec();
        bytes.extend_from_slice(&sig);
        *last = Some((cp.size, cp.root));
        Ok(NoteSignature {
            name: self.key.name().to_owned(),
            id: self.key.id(),
            bytes,
        })
    }
}

/// Checks one cosignature on `note` by `key`; returns its timestamp.
pub fn verify_cosignature(note: &Note, key: &VerifierKey) -> Result<u64, AuditError> {
    let sig = note
        .signatures
        .iter()
        .find(|s| s.name == key.name() && s.id == key.id())
        .ok_or_else(|| AuditError::MissingSignature {
            signer: key.to_string(),
        })?;
    if sig.bytes.len() != 72 {
        return Err(AuditError::BadSignature {
            signer: key.name().to_owned(),
        });
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&sig.bytes[..8]);
    let time = u64::from_be_bytes(t);
    if !key.verify_bytes(&cosigned_message(time, &note.text), &sig.bytes[8..]) {
        return Err(AuditError::BadSignature {
            signer: key.name().to_owned(),
        });
    }
    Ok(time)
}

/// The keys of `keys` with distinct public keys (two names for one key are one witness).
fn distinct_keys(keys: &[VerifierKey]) -> Vec<&VerifierKey> {
    let mut seen = std::collections::BTreeSet::new();
    keys.iter()
        .filter(|k| seen.insert(*k.public_bytes()))
        .collect()
}

/// Which witnesses a verifier trusts and how many of them must have cosigned.
#[derive(Debug, Clone, Default)]
pub struct WitnessPolicy {
    /// The witnesses' cosignature verifier keys.
    pub witnesses: Vec<VerifierKey>,
    /// How many distinct witnesses must have cosigned.
    pub quorum: usize,
}

impl WitnessPolicy {
    /// A policy requiring `quorum` of `witnesses`.
    pub fn new(witnesses: Vec<VerifierKey>, quorum: usize) -> Result<Self, AuditError> {
        if quorum > witnesses.len() {
            return Err(AuditError::BadPolicy {
                reason: format!(
                    "a quorum of {quorum} cannot be met by {} witnesses",
                    witnesses.len()
                ),
            });
        }
        if let Some(k) = witnesses.iter().find(|k| k.kind() != KeyKind::Cosignature) {
            return Err(AuditError::BadPolicy {
                reason: format!("{k} is not a cosignature (type 0x04) key"),
            });
        }
        let distinct = distinct_keys(&witnesses).len();
        if distinct < witnesses.len() {
            return Err(AuditError::BadPolicy {
                reason: format!(
                    "{} witness keys are given but only {distinct} are distinct; one witness counts once",
                    witnesses.len()
                ),
            });
        }
        Ok(WitnessPolicy { witnesses, quorum })
    }

    /// Counts the distinct trusted witnesses whose cosignature on `note` verifies, and fails when
    /// that is fewer than the quorum. A cosignature that is present but invalid is an error.
    pub fn check(&self, note: &Note) -> Result<usize, AuditError> {
        let mut good = 0;
        // `witnesses` is a public field: count each signer once even if it was pushed twice.
        for key in distinct_keys(&self.witnesses) {
            match verify_cosignature(note, key) {
                Ok(_) => good += 1,
                Err(AuditError::MissingSignature { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if good < self.quorum {
            return Err(AuditError::QuorumNotMet {
                got: good,
                want: self.quorum,
            });
        }
        Ok(good)
    }
}
