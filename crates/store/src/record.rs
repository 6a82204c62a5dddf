//! Records: what a read returns, and the versioned on-disk format of a sealed record.
//!
//! Version 2 of a sealed record (the value the backend holds at the record's blind index):
//!
//! ```text
//! offset  size  field
//! 0       1     format version (2)
//! 1       1     data class code (1 protected … 6 key_material)
//! 2       16    subject pseudonym
//! 18      4     data key version, big-endian
//! 22      12    AES-256-GCM nonce (fresh, random)
//! 34      n     ciphertext of u16 key length ‖ record key ‖ value
//! 34+n    16    GCM tag
//! ```
//!
//! The record key travels only inside the ciphertext. The AAD binds the format version, the
//! region, the class, the collection, the record's keyed blind index, the subject and the data
//! key version (see `docs/storage.md`); after opening, the key in the payload must have the blind
//! index the record was found under. So a ciphertext opens only at its own (region, collection,
//! key, subject), and no byte outside it names the key or the subject.

use std::fmt;

use domicile_residency::{DataClass, Region, SubjectId};
use ring::aead::NONCE_LEN;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::aead::{put_field, TAG_LEN};
use crate::custodian::{BlindIndex, Pseudonym};
use crate::{Collection, RecordKey, StoreError};

/// The current sealed record format version (2: record keys sealed, backend keys blinded).
pub const RECORD_FORMAT: u8 = 2;
/// The current store format version, written in the store's metadata entry (`m`) (3: a
/// subject's index kept as lists, see `layout`; a format 2 store is migrated when opened).
pub const STORE_FORMAT: u32 = 3;
pub(crate) const HEADER_LEN: usize = 22;
const AAD_LABEL: &[u8] = b"domicile.record";

/// The SHA-256 digest of a record's plaintext, as the access gate logs what was read: the
/// workspace's one digest type (`sha256:` and 64 hex digits).
pub type RecordDigest = domicile_residency::Sha256Digest;

/// What the store knows about a record besides its value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecordMeta {
    /// The collection it is in.
    pub collection: Collection,
    /// Its key in the collection.
    pub key: RecordKey,
    /// Whose record it is.
    pub subject: SubjectId,
    /// How sensitive it is.
    pub class: DataClass,
    /// The version of the subject's data key it is sealed under.
    pub data_key_version: u32,
}

impl RecordMeta {
    /// The order [`SealedStore::scan_subject`](crate::SealedStore::scan_subject) returns a
    /// subject's records in: by collection (shorter names first), then by key.
    pub fn cmp_in_subject_order(&self, other: &RecordMeta) -> std::cmp::Ordering {
        (
            self.collection.as_str().len(),
            self.collection.as_str(),
            &self.key,
        )
            .cmp(&(
                other.collection.as_str().len(),
                other.collection.as_str(),
                &other.key,
            ))
    }
}

/// A record as read, with its value as bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Where it is and whose it is.
    pub meta: RecordMeta,
    /// The plaintext value.
    pub value: Vec<u8>,
}

impl RawRecord {
    /// The SHA-256 digest of the plaintext value.
    pub fn digest(&self) -> RecordDigest {
        RecordDigest::of(&self.value)
    }

    /// Decodes the value as JSON into `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, StoreError> {
        serde_json::from_slice(&self.value).map_err(|e| StoreError::Serialization {
            collection: self.meta.collection.clone(),
            detail: format!(
                "cannot decode the value ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
        })
    }
}

impl fmt::Debug for RawRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values are personal data: debug output shows their size and digest, not their bytes.
        f.debug_struct("RawRecord")
            .field("meta", &self.meta)
            .field("len", &self.value.len())
            .field("digest", &self.digest())
            .finish()
    }
}

/// A record as read, with its value decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<T> {
    /// Where it is and whose it is.
    pub meta: RecordMeta,
    /// The value.
    pub value: T,
}

/// The numeric code of a data class in the record header.
pub(crate) fn class_code(class: DataClass) -> u8 {
    match class {
        DataClass::Protected => 1,
        DataClass::Excepted => 2,
        DataClass::Public => 3,
        DataClass::ModelArtifact => 4,
        DataClass::AuditRecord => 5,
        DataClass::KeyMaterial => 6,
    }
}

pub(crate) fn class_from_code(code: u8) -> Option<DataClass> {
    DataClass::ALL.into_iter().find(|c| class_code(*c) == code)
}

/// The parsed header of a sealed record.
pub(crate) struct Header {
    pub class: DataClass,
    pub pseudonym: Pseudonym,
    pub data_key_version: u32,
}

/// Splits a sealed record into its header and `nonce ‖ ciphertext ‖ tag`. The error is the
/// reason the record does not authenticate.
pub(crate) fn parse_header(sealed: &[u8]) -> Result<(Header, &[u8]), String> {
    if sealed.len() < HEADER_LEN + NONCE_LEN + TAG_LEN {
        return Err(format!(
            "it is {} bytes, shorter than any sealed record",
            sealed.len()
        ));
    }
    if sealed[0] != RECORD_FORMAT {
        return Err(format!("unknown record format version {}", sealed[0]));
    }
    let class = class_from_code(sealed[1])
        .ok_or_else(|| format!("unknown data class code {}", sealed[1]))?;
    let mut pseudonym = [0u8; 16];
    pseudonym.copy_from_slice(&sealed[2..18]);
    let data_key_version = u32::from_be_bytes([sealed[18], sealed[19], sealed[20], sealed[21]]);
    Ok((
        Header {
            class,
            pseudonym: Pseudonym(pseudonym),
            data_key_version,
        },
        &sealed[HEADER_LEN..],
    ))
}

pub(crate) fn write_header(
    out: &mut Vec<u8>,
    class: DataClass,
    pseudonym: &Pseudonym,
    dk_version: u32,
) {
    out.push(RECORD_FORMAT);
    out.push(class_code(class));
    out.extend_from_slice(&pseudonym.0);
    out.extend_from_slice(&dk_version.to_be_bytes());
}

/// The most bytes [`with_record_aad`] assembles on the stack.
const AAD_STACK: usize = 512;

/// Calls `f` with the AAD of a version 2 record, assembled on the stack when it fits, as it
/// does for every name but the longest: every record sealed or opened needs one, and an
/// allocation for each showed in a scan's profile.
pub(crate) fn with_record_aad<R>(
    region: &Region,
    class: DataClass,
    collection: &str,
    blind: &BlindIndex,
    subject: &SubjectId,
    dk_version: u32,
    f: impl FnOnce(&[u8]) -> R,
) -> R {
    let write = |put: &mut dyn FnMut(&[u8], bool)| {
        write_record_aad(region, class, collection, blind, subject, dk_version, put)
    };
    let mut buf = [0u8; AAD_STACK];
    let mut at = 0;
    let mut fits = true;
    write(&mut |bytes, with_len| {
        let len = bytes.len() + if with_len { 4 } else { 0 };
        if !fits || at + len > AAD_STACK {
            fits = false;
            return;
        }
        if with_len {
            buf[at..at + 4].copy_from_slice(&(bytes.len() as u32).to_be_bytes());
            at += 4;
        }
        buf[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    });
    if fits {
        return f(&buf[..at]);
    }
    // Not reached with today's name limits (the longest AAD is about 420 bytes); kept so that
    // longer names would cost an allocation, not a wrong AAD.
    let mut aad = Vec::with_capacity(2 * AAD_STACK);
    write(&mut |bytes, with_len| {
        if with_len {
            put_field(&mut aad, bytes);
        } else {
            aad.extend_from_slice(bytes);
        }
    });
    f(&aad)
}

/// The AAD of a version 2 record, field by field: `put(bytes, true)` for a field with its u32
/// length first, `put(bytes, false)` for one of fixed size.
fn write_record_aad(
    region: &Region,
    class: DataClass,
    collection: &str,
    blind: &BlindIndex,
    subject: &SubjectId,
    dk_version: u32,
    put: &mut dyn FnMut(&[u8], bool),
) {
    put(AAD_LABEL, true);
    put(&[RECORD_FORMAT], false);
    put(region.as_str().as_bytes(), true);
    put(&[class_code(class)], false);
    put(collection.as_bytes(), true);
    put(&blind.0, false);
    put(subject.as_str().as_bytes(), true);
    put(&dk_version.to_be_bytes(), false);
}

/// The plaintext of a version 2 record, in the parts it is sealed from: u16 key length ‖ key ‖
/// value. `len` holds the first part.
pub(crate) fn payload_parts<'a>(
    len: &'a mut [u8; 2],
    key: &'a str,
    value: &'a [u8],
) -> [&'a [u8]; 3] {
    *len = (key.len() as u16).to_be_bytes();
    [&len[..], key.as_bytes(), value]
}

/// Splits the opened payload at `plain` in `buf` into its record key and value: the value is
/// moved to the front of `buf`, once, not copied out.
pub(crate) fn decode_payload_in(
    mut buf: Vec<u8>,
    plain: std::ops::Range<usize>,
) -> Option<(String, Vec<u8>)> {
    let payload = buf.get(plain.clone())?;
    if payload.len() < 2 {
        return None;
    }
    let len = u16::from_be_bytes([payload[0], payload[1]]) as usize;
    if payload.len() < 2 + len {
        return None;
    }
    let key = std::str::from_utf8(&payload[2..2 + len]).ok()?.to_owned();
    buf.truncate(plain.end);
    buf.drain(..plain.start + 2 + len);
    Some((key, buf))
}

/// The backend key layout (store format 3). Every key starts with a one-byte namespace;
/// collection names are schema and stay in the clear, record keys appear only as blind indexes.
///
/// A record's place in its subject's index is not an entry of its own: each durable batch
/// writes one **journal** entry listing the (subject, record) pairs it wrote, and the store
/// folds the journal now and then into **subject lists**, one entry per subject per fold. A
/// record costs the backend one write, not two. (Format 2 kept an empty entry per record,
/// `s ‖ pseudonym ‖ record id`; opening such a store rewrites those into subject lists.)
pub(crate) mod layout {
    use crate::custodian::{BlindIndex, Pseudonym};

    /// `d ‖ u16 len ‖ collection ‖ blind index (32)`: a sealed record.
    pub(crate) const RECORD: u8 = b'd';
    /// `i ‖ pseudonym ‖ 8 random bytes`: some of a subject's record ids, each `u16 len ‖
    /// collection ‖ blind index`, one after another.
    pub(crate) const SUBJECT_LIST: u8 = b'i';
    /// `j ‖ writer (8 random bytes) ‖ u64 sequence`: one batch's (pseudonym ‖ record id)s, one
    /// after another, not yet folded into subject lists.
    pub(crate) const JOURNAL: u8 = b'j';
    /// `s ‖ pseudonym ‖ record id`: empty; store format 2's per-record index entry, read only
    /// to migrate.
    pub(crate) const V2_SUBJECT_INDEX: u8 = b's';
    /// `r ‖ pseudonym`: the subject's registry entry, sealed under their data key.
    pub(crate) const REGISTRY: u8 = b'r';
    /// `m`: the store's metadata (format and region).
    pub(crate) const META: &[u8] = b"m";

    pub(crate) fn collection_prefix(collection: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + collection.len() + 32);
        out.push(RECORD);
        out.extend_from_slice(&(collection.len() as u16).to_be_bytes());
        out.extend_from_slice(collection.as_bytes());
        out
    }

    pub(crate) fn record(collection: &str, blind: &BlindIndex) -> Vec<u8> {
        let mut out = collection_prefix(collection);
        out.extend_from_slice(&blind.0);
        out
    }

    /// Appends a record id, `u16 len ‖ collection ‖ blind index`, to a list.
    pub(crate) fn push_id(out: &mut Vec<u8>, collection: &str, blind: &BlindIndex) {
        out.extend_from_slice(&(collection.len() as u16).to_be_bytes());
        out.extend_from_slice(collection.as_bytes());
        out.extend_from_slice(&blind.0);
    }

    /// Splits the first record id off a list: (collection, blind index, the rest); `None` if
    /// the list is malformed.
    pub(crate) fn next_id(list: &[u8]) -> Option<(&[u8], BlindIndex, &[u8])> {
        let len = u16::from_be_bytes([*list.first()?, *list.get(1)?]) as usize;
        let collection = list.get(2..2 + len)?;
        let blind = list.get(2 + len..2 + len + 32)?;
        Some((
            collection,
            BlindIndex(blind.try_into().ok()?),
            &list[2 + len + 32..],
        ))
    }

    pub(crate) fn subject_prefix(pseudonym: &Pseudonym) -> Vec<u8> {
        let mut out = Vec::with_capacity(25);
        out.push(SUBJECT_LIST);
        out.extend_from_slice(&pseudonym.0);
        out
    }

    pub(crate) fn subject_list(pseudonym: &Pseudonym, tag: [u8; 8]) -> Vec<u8> {
        let mut out = subject_prefix(pseudonym);
        out.extend_from_slice(&tag);
        out
    }

    /// The subject a subject list's key names, if it is long enough to name one.
    pub(crate) fn list_owner(key: &[u8]) -> Option<Pseudonym> {
        key.get(1..17)
            .and_then(|o| <[u8; 16]>::try_from(o).ok())
            .map(Pseudonym)
    }

    pub(crate) fn journal(writer: [u8; 8], seq: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(17);
        out.push(JOURNAL);
        out.extend_from_slice(&writer);
        out.extend_from_slice(&seq.to_be_bytes());
        out
    }

    pub(crate) fn registry(pseudonym: &Pseudonym) -> Vec<u8> {
        let mut out = Vec::with_capacity(17);
        out.push(REGISTRY);
        out.extend_from_slice(&pseudonym.0);
        out
    }

    /// Splits `u16 len ‖ collection ‖ blind index` (the tail of a record or index key).
    pub(crate) fn split_collection_blind(tail: &[u8]) -> Option<(&[u8], BlindIndex)> {
        if tail.len() < 2 {
            return None;
        }
        let len = u16::from_be_bytes([tail[0], tail[1]]) as usize;
        let rest = &tail[2..];
        if rest.len() != len + 32 {
            return None;
        }
        let (collection, blind) = rest.split_at(len);
        Some((collection, BlindIndex(blind.try_into().ok()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AAD's layout, written out by hand: records sealed by earlier builds must still open.
    #[test]
    fn the_record_aad_is_the_format_2_layout_for_the_longest_names_too() {
        let field = |out: &mut Vec<u8>, bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(bytes);
        };
        let blind = BlindIndex([7; 32]);
        let longest_subject = "s".repeat(SubjectId::MAX_LEN);
        let longest_collection = "c".repeat(Collection::MAX_LEN);
        for (region, collection, subject) in [
            ("us", "profile", "ana"),
            (
                "r234567890123456789012345678901x",
                longest_collection.as_str(),
                longest_subject.as_str(),
            ),
        ] {
            let region = Region::parse(region).unwrap();
            let subject: SubjectId = subject.parse().unwrap();
            let mut expected = Vec::new();
            field(&mut expected, b"domicile.record");
            expected.push(RECORD_FORMAT);
            field(&mut expected, region.as_str().as_bytes());
            expected.push(class_code(DataClass::Protected));
            field(&mut expected, collection.as_bytes());
            expected.extend_from_slice(&[7; 32]);
            field(&mut expected, subject.as_str().as_bytes());
            expected.extend_from_slice(&3u32.to_be_bytes());
            let got = with_record_aad(
                &region,
                DataClass::Protected,
                collection,
                &blind,
                &subject,
                3,
                <[u8]>::to_vec,
            );
            assert_eq!(got, expected);
        }
    }
}
