//! Export and import: moving a subject's records between stores without plaintext on disk.
//!
//! [`SealedStore::export_subject`] opens a subject's records and re-seals each one under a fresh
//! **transfer key** (AES-256-GCM, 256 random bits) into an [`ExportBundle`], which may be written
//! anywhere; the [`TransferKey`] travels separately. [`SealedStore::import`] opens the bundle in
//! the target store, registers the subject there (home region by the target's policy), and puts
//! every record through the usual placement check, sealed under the target region's keys.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use domicile_residency::{DataClass, Region, Subject, SubjectId};
use ring::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
use ring::rand::SystemRandom;
use serde::{Deserialize, Serialize};

use crate::aead::{self, put_field, Nonces};
use crate::record::{class_code, class_from_code, RecordDigest, RecordMeta};
use crate::store::NewRecord;
use crate::{Collection, PlacementRefusal, RecordKey, SealedStore, StoreError};

/// The bundle format this build writes and reads. Format 1 carried each record's collection and
/// key in clear beside its sealed value; format 2 seals them inside.
const BUNDLE_FORMAT: u32 = 2;
const SUBJECT_LABEL: &[u8] = b"domicile.transfer.v2.subject";
const RECORD_LABEL: &[u8] = b"domicile.transfer.v2.record";

/// The key an [`ExportBundle`] is sealed under. Send it by a different channel than the bundle.
pub struct TransferKey {
    bytes: [u8; 32],
    key: LessSafeKey,
}

impl TransferKey {
    fn generate(rng: &SystemRandom) -> Result<Self, StoreError> {
        Self::from_bytes(aead::random_key(rng)?)
    }

    /// A transfer key from its 32 bytes (as received from the exporting side).
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, StoreError> {
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| StoreError::Crypto {
            what: "loading a transfer key",
        })?;
        Ok(TransferKey {
            bytes,
            key: LessSafeKey::new(unbound),
        })
    }

    /// The key's 32 bytes, to hand to the importing side.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.bytes
    }
}

impl fmt::Debug for TransferKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TransferKey(..)")
    }
}

/// One subject's records, sealed under a transfer key. Serializable; holds no plaintext value,
/// no subject id and no record key or collection in the clear (format 2): only the source region,
/// the number of records, and their sizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportBundle {
    /// The bundle format version (2).
    pub format: u32,
    /// The region the records were exported from.
    pub source_region: Region,
    /// The subject and the record count, sealed (`nonce ‖ ciphertext ‖ tag`, base64).
    #[serde(with = "b64")]
    pub subject: Vec<u8>,
    /// The records.
    pub records: Vec<ExportedRecord>,
}

/// One record of an [`ExportBundle`]: its class, collection, key and value, sealed together
/// under the transfer key (`nonce ‖ ciphertext ‖ tag`, base64), bound to the source region, the
/// subject and its position in the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedRecord {
    /// The sealed record.
    #[serde(with = "b64")]
    pub sealed: Vec<u8>,
}

/// What a record's sealed payload holds: class code, collection and key (length-prefixed), value.
fn encode_record(class: DataClass, c: &Collection, k: &RecordKey, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + c.as_str().len() + k.as_str().len() + 9);
    out.push(class_code(class));
    put_field(&mut out, c.as_str().as_bytes());
    put_field(&mut out, k.as_str().as_bytes());
    out.extend_from_slice(value);
    out
}

/// The inverse of [`encode_record`]; `None` if it does not decode.
fn decode_record(bytes: &[u8]) -> Option<(DataClass, Collection, RecordKey, Vec<u8>)> {
    let (&code, rest) = bytes.split_first()?;
    let class = class_from_code(code)?;
    let (collection, rest) = take_field(rest)?;
    let (key, value) = take_field(rest)?;
    let collection = Collection::parse(std::str::from_utf8(collection).ok()?).ok()?;
    let key = RecordKey::parse(std::str::from_utf8(key).ok()?).ok()?;
    Some((class, collection, key, value.to_vec()))
}

/// A length-prefixed field (as [`put_field`] writes it) and what follows it.
fn take_field(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// What [`SealedStore::import`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// The subject.
    pub subject: SubjectId,
    /// Their home region under the target store's policy.
    pub home: Region,
    /// Every record written, with the digest of its plaintext (to compare with the source's).
    pub records: Vec<(RecordMeta, RecordDigest)>,
}

#[derive(Serialize, Deserialize)]
struct SealedSubject {
    subject: Subject,
    records: usize,
}

impl ExportBundle {
    /// The bundle as JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an export bundle always encodes as JSON")
    }

    /// A bundle from JSON bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StoreError> {
        let bundle: ExportBundle =
            serde_json::from_slice(bytes).map_err(|e| StoreError::Bundle {
                reason: format!(
                    "not a domicile export bundle ({:?} error at line {}, column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
            })?;
        check_format(bundle.format)?;
        Ok(bundle)
    }
}

fn subject_aad(source: &Region) -> Vec<u8> {
    let mut aad = Vec::new();
    put_field(&mut aad, SUBJECT_LABEL);
    put_field(&mut aad, source.as_str().as_bytes());
    aad
}

fn check_format(format: u32) -> Result<(), StoreError> {
    match format {
        BUNDLE_FORMAT => Ok(()),
        1 => Err(StoreError::Bundle {
            reason: "it is bundle format 1, which carried record keys in clear; this build reads \
                     only format 2: export the subject again with this build"
                .into(),
        }),
        other => Err(StoreError::Bundle {
            reason: format!("unknown bundle format version {other}"),
        }),
    }
}

/// A record's associated data: the source region, the subject and its position in the bundle,
/// so a record cannot be moved to another bundle, subject or place without failing to open.
fn record_aad(source: &Region, subject: &SubjectId, position: usize) -> Vec<u8> {
    let mut aad = Vec::new();
    put_field(&mut aad, RECORD_LABEL);
    put_field(&mut aad, source.as_str().as_bytes());
    put_field(&mut aad, subject.as_str().as_bytes());
    aad.extend_from_slice(&(position as u64).to_be_bytes());
    aad
}

impl SealedStore {
    /// Exports every record of a registered subject, re-sealed under a fresh transfer key. The
    /// store is not changed: shred the subject here once the import has been verified.
    pub fn export_subject(
        &self,
        subject: &SubjectId,
    ) -> Result<(ExportBundle, TransferKey), StoreError> {
        let (entry, _) =
            self.registered(subject)?
                .ok_or_else(|| StoreError::SubjectNotRegistered {
                    subject: self.pseudonym(subject),
                    region: self.region().clone(),
                })?;
        let rng = SystemRandom::new();
        let key = TransferKey::generate(&rng)?;
        let records = self.scan_subject(subject)?;
        let mut exported = Vec::with_capacity(records.len());
        let mut nonces = Nonces::new(&rng, records.len() + 1);
        for (position, record) in records.iter().enumerate() {
            let m = &record.meta;
            let aad = record_aad(self.region(), subject, position);
            let plain = encode_record(m.class, &m.collection, &m.key, &record.value);
            let mut sealed = Vec::with_capacity(plain.len() + 28);
            aead::seal_into(&key.key, &mut nonces, &aad, &plain, &mut sealed)?;
            exported.push(ExportedRecord { sealed });
        }
        let header = SealedSubject {
            subject: entry.subject,
            records: exported.len(),
        };
        let header = serde_json::to_vec(&header).expect("a subject header always encodes as JSON");
        let mut sealed_subject = Vec::new();
        aead::seal_into(
            &key.key,
            &mut nonces,
            &subject_aad(self.region()),
            &header,
            &mut sealed_subject,
        )?;
        Ok((
            ExportBundle {
                format: BUNDLE_FORMAT,
                source_region: self.region().clone(),
                subject: sealed_subject,
                records: exported,
            },
            key,
        ))
    }

    /// Imports a bundle: registers its subject and puts every record, sealed under this store's
    /// keys, in one atomic, durable batch. Refused with nothing written if any record fails to
    /// open, the count does not match, or the policy forbids any record here.
    pub fn import(
        &self,
        bundle: &ExportBundle,
        key: &TransferKey,
    ) -> Result<ImportReport, StoreError> {
        check_format(bundle.format)?;
        let header = aead::open(&key.key, &subject_aad(&bundle.source_region), &bundle.subject)
            .ok_or_else(|| StoreError::Bundle {
                reason: format!(
                    "its subject entry does not open under this transfer key (wrong key, or not exported from region {})",
                    bundle.source_region
                ),
            })?;
        let header: SealedSubject =
            serde_json::from_slice(&header).map_err(|e| StoreError::Bundle {
                reason: format!(
                    "its subject entry does not decode ({:?} error at column {})",
                    e.classify(),
                    e.column()
                ),
            })?;
        if header.records != bundle.records.len() {
            return Err(StoreError::Bundle {
                reason: format!(
                    "it should hold {} records but holds {}",
                    header.records,
                    bundle.records.len()
                ),
            });
        }
        let subject = &header.subject.id;
        let mut opened = Vec::with_capacity(bundle.records.len());
        for (n, r) in bundle.records.iter().enumerate() {
            let aad = record_aad(&bundle.source_region, subject, n);
            // Named by position only: what would name it further is sealed.
            let plain =
                aead::open(&key.key, &aad, &r.sealed).ok_or_else(|| StoreError::Bundle {
                    reason: format!(
                        "record {} of the bundle does not open under this transfer key (edited, \
                     moved or from another bundle)",
                        n + 1
                    ),
                })?;
            let record = decode_record(&plain).ok_or_else(|| StoreError::Bundle {
                reason: format!("record {} of the bundle does not decode", n + 1),
            })?;
            opened.push(record);
        }
        // Check placement of every record before registering, so a refused import leaves no
        // trace in this store.
        let home = self.policy().home_region(&header.subject)?;
        for (class, collection, key, _) in &opened {
            let decision = self.policy().may_rest_in(*class, &home, self.region())?;
            if !decision.allowed {
                return Err(StoreError::PlacementRefused(Box::new(PlacementRefusal {
                    collection: collection.clone(),
                    key: self.blind_index(collection, key),
                    subject: self.pseudonym(subject),
                    class: *class,
                    home,
                    region: self.region().clone(),
                    rule: decision.rule,
                })));
            }
        }
        self.register_subject(&header.subject)?;
        let new: Vec<NewRecord<'_>> = opened
            .iter()
            .map(|(class, collection, key, value)| NewRecord {
                subject,
                class: *class,
                collection,
                key,
                value,
            })
            .collect();
        let metas = self.put_batch(&new)?;
        let records = metas
            .into_iter()
            .zip(&opened)
            .map(|(meta, (_, _, _, value))| (meta, RecordDigest::of(value)))
            .collect();
        Ok(ImportReport {
            subject: subject.clone(),
            home,
            records,
        })
    }
}

mod b64 {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}
