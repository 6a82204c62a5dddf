//! The file custodian's key-file formats: parse and encode, no I/O.
//!
//! Every file starts with four magic bytes and a format version, so a file of one kind is never
//! read as another and a future version is refused rather than misread. The layouts are in
//! `docs/storage.md`:
//!
//! ```text
//! pseudonym.key   "DMPK" ‖ 1 ‖ secret[32]
//! NNNNNNNN.kek    "DMKK" ‖ 1 ‖ u32 version ‖ secret[32]
//! rotating        "DMRT" ‖ 1 ‖ u32 target version
//! data key entry "DMDK" ‖ 2 ‖ 1 (live) ‖ u32 version ‖ u32 kek ‖ nonce ‖ wrap(key[32] ‖ subject id) ‖ tag
//!                 "DMDK" ‖ 2 ‖ 2 (shredded) ‖ u32 version
//! ```
//!
//! Data key entries (the values of `datakeys.redb`, keyed by pseudonym; in key layout 2 they were
//! one file each, `subjects/<pseudonym>.dk`) are format 2: the subject id is sealed with the key,
//! so no byte of the key directory names a person.

use std::path::Path;

use domicile_residency::{Region, SubjectId};
use ring::aead::{LessSafeKey, UnboundKey, AES_256_GCM};

use crate::aead::{self, put_field, Nonces};
use crate::StoreError;

const PSEUDONYM_MAGIC: &[u8; 4] = b"DMPK";
const KEK_MAGIC: &[u8; 4] = b"DMKK";
const ROTATION_MAGIC: &[u8; 4] = b"DMRT";
const DATA_KEY_MAGIC: &[u8; 4] = b"DMDK";
const FORMAT_V1: u8 = 1;
/// The data key file format: 2 seals the subject id inside the wrap.
const DATA_KEY_FORMAT: u8 = 2;
const STATE_LIVE: u8 = 1;
const STATE_SHREDDED: u8 = 2;
/// Binds a wrapped data key to its purpose, so no other AES-GCM ciphertext under a KEK can be
/// passed off as one.
const WRAP_AAD_LABEL: &[u8] = b"domicile.data-key.v2";

/// A data key file, parsed.
pub(super) enum KeyFile {
    /// A live key, still wrapped.
    Live {
        version: u32,
        kek: u32,
        wrapped: Vec<u8>,
    },
    /// A tombstone: the key was destroyed; only its version is kept.
    Shredded { version: u32 },
}

impl KeyFile {
    /// The data key's version and, for a live key, the KEK version it is wrapped under.
    pub(super) fn versions(&self) -> (u32, Option<u32>) {
        match self {
            KeyFile::Live { version, kek, .. } => (*version, Some(*kek)),
            KeyFile::Shredded { version } => (*version, None),
        }
    }
}

/// Encodes a region's pseudonym key file.
pub(super) fn encode_pseudonym_key(secret: &[u8; 32]) -> Vec<u8> {
    let mut body = Vec::with_capacity(37);
    body.extend_from_slice(PSEUDONYM_MAGIC);
    body.push(FORMAT_V1);
    body.extend_from_slice(secret);
    body
}

/// Parses a region's pseudonym key file.
pub(super) fn parse_pseudonym_key(path: &Path, bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    if bytes.len() != 37 || &bytes[..4] != PSEUDONYM_MAGIC || bytes[4] != FORMAT_V1 {
        return Err(StoreError::key_file(
            path,
            "not a domicile pseudonym key file (version 1)",
        ));
    }
    let mut secret = [0u8; 32];
    secret.copy_from_slice(&bytes[5..]);
    Ok(secret)
}

/// Encodes the file of KEK `version`.
pub(super) fn encode_kek(version: u32, secret: &[u8; 32]) -> Vec<u8> {
    let mut body = Vec::with_capacity(41);
    body.extend_from_slice(KEK_MAGIC);
    body.push(FORMAT_V1);
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(secret);
    body
}

/// Parses the file of KEK `version`: refused if it holds another version (a renamed file).
pub(super) fn parse_kek(path: &Path, bytes: &[u8], version: u32) -> Result<[u8; 32], StoreError> {
    if bytes.len() != 41 || &bytes[..4] != KEK_MAGIC {
        return Err(StoreError::key_file(
            path,
            "not a domicile key-encryption key file",
        ));
    }
    if bytes[4] != FORMAT_V1 {
        return Err(StoreError::key_file(
            path,
            format!("unknown format version {}", bytes[4]),
        ));
    }
    let stored = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
    if stored != version {
        return Err(StoreError::key_file(
            path,
            format!("it holds KEK version {stored}, not {version}"),
        ));
    }
    let mut secret = [0u8; 32];
    secret.copy_from_slice(&bytes[9..]);
    Ok(secret)
}

/// Encodes the layout-2 marker of a rotation to KEK `target` (layout 3 keeps the mark in the
/// key store; [`super::migrate`] reads the old marker).
#[cfg(test)]
pub(super) fn encode_rotation_marker(target: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(9);
    body.extend_from_slice(ROTATION_MAGIC);
    body.push(FORMAT_V1);
    body.extend_from_slice(&target.to_be_bytes());
    body
}

/// Parses a rotation marker: the KEK version the rotation rewraps to.
pub(super) fn parse_rotation_marker(path: &Path, bytes: &[u8]) -> Result<u32, StoreError> {
    if bytes.len() != 9 || &bytes[..4] != ROTATION_MAGIC || bytes[4] != FORMAT_V1 {
        return Err(StoreError::key_file(
            path,
            "not a domicile rotation marker (version 1)",
        ));
    }
    Ok(u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]))
}

/// Encodes a live data key file: `secret` wrapped under `kek` (version `kek_version`), bound
/// to its region, subject and versions by the AAD so it opens nowhere else.
pub(super) fn encode_live(
    kek: &LessSafeKey,
    nonces: &mut Nonces<'_>,
    region: &Region,
    subject: &SubjectId,
    kek_version: u32,
    version: u32,
    secret: &[u8; 32],
) -> Result<Vec<u8>, StoreError> {
    let aad = wrap_aad(region, kek_version, version);
    let mut body = Vec::with_capacity(128);
    body.extend_from_slice(DATA_KEY_MAGIC);
    body.push(DATA_KEY_FORMAT);
    body.push(STATE_LIVE);
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&kek_version.to_be_bytes());
    let mut plaintext = Vec::with_capacity(32 + subject.as_str().len());
    plaintext.extend_from_slice(secret);
    plaintext.extend_from_slice(subject.as_str().as_bytes());
    aead::seal_into(kek, nonces, &aad, &plaintext, &mut body)?;
    Ok(body)
}

/// Encodes the tombstone of a destroyed data key. It keeps only the version, so a
/// re-registered subject gets a new one; neither the key nor the subject id survives in it.
pub(super) fn encode_tombstone(version: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(10);
    body.extend_from_slice(DATA_KEY_MAGIC);
    body.push(DATA_KEY_FORMAT);
    body.push(STATE_SHREDDED);
    body.extend_from_slice(&version.to_be_bytes());
    body
}

/// Parses a data key file (live or tombstone).
pub(super) fn parse_key_file(path: &Path, bytes: &[u8]) -> Result<KeyFile, StoreError> {
    let corrupt = |reason: &str| StoreError::key_file(path, reason.to_owned());
    if bytes.len() < 10 || &bytes[..4] != DATA_KEY_MAGIC {
        return Err(corrupt("not a domicile data key file"));
    }
    if bytes[4] == FORMAT_V1 {
        return Err(corrupt(
            "it is a format 1 data key file (subject id in the clear), which this build no longer reads: create a new key directory with `domicile init` and re-ingest",
        ));
    }
    if bytes[4] != DATA_KEY_FORMAT {
        return Err(corrupt(&format!("unknown format version {}", bytes[4])));
    }
    let version = u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
    match bytes[5] {
        STATE_SHREDDED if bytes.len() == 10 => Ok(KeyFile::Shredded { version }),
        STATE_LIVE => {
            let rest = &bytes[10..];
            if rest.len() < 4 + 12 + 32 + 1 + aead::TAG_LEN {
                return Err(corrupt("it is truncated"));
            }
            let kek = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
            Ok(KeyFile::Live {
                version,
                kek,
                wrapped: rest[4..].to_vec(),
            })
        }
        _ => Err(corrupt("its state byte is unknown")),
    }
}

/// Opens the wrapped key of a live data key file read from `path`: the key and its subject.
pub(super) fn unwrap_key(
    path: &Path,
    kek: &LessSafeKey,
    region: &Region,
    kek_version: u32,
    version: u32,
    wrapped: &[u8],
) -> Result<([u8; 32], SubjectId), StoreError> {
    let aad = wrap_aad(region, kek_version, version);
    let secret = aead::open(kek, &aad, wrapped).ok_or_else(|| {
        StoreError::key_file(
            path,
            format!("the wrapped data key does not open under KEK v{kek_version} of region {region} (wrong key, or the file was changed or moved)"),
        )
    })?;
    if secret.len() <= 32 {
        return Err(StoreError::key_file(
            path,
            "the wrapped data key is too short",
        ));
    }
    let (key, id) = secret.split_at(32);
    let subject = std::str::from_utf8(id)
        .ok()
        .and_then(|s| SubjectId::parse(s).ok())
        .ok_or_else(|| StoreError::key_file(path, "its sealed subject id is not valid"))?;
    Ok((
        key.try_into().expect("split_at(32) gives 32 bytes"),
        subject,
    ))
}

/// An AES-256-GCM key-encryption key from its secret bytes.
pub(super) fn aes_key(secret: &[u8; 32]) -> Result<LessSafeKey, StoreError> {
    UnboundKey::new(&AES_256_GCM, secret)
        .map(LessSafeKey::new)
        .map_err(|_| StoreError::Crypto {
            what: "loading a key-encryption key",
        })
}

/// The subject is bound by being sealed with the key, and the file's name (its pseudonym) is
/// checked against the subject after unwrapping.
fn wrap_aad(region: &Region, kek: u32, version: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64);
    put_field(&mut aad, WRAP_AAD_LABEL);
    put_field(&mut aad, region.as_str().as_bytes());
    aad.extend_from_slice(&kek.to_be_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    #[test]
    fn a_tombstone_parses_back_to_its_version_and_no_key() {
        let path = Path::new("x.dk");
        let parsed = parse_key_file(path, &encode_tombstone(7)).unwrap();
        assert_eq!(parsed.versions(), (7, None));
    }

    #[test]
    fn a_kek_file_of_another_version_is_refused() {
        let path = Path::new("00000002.kek");
        let body = encode_kek(1, &[9; 32]);
        assert_eq!(parse_kek(path, &body, 1).unwrap(), [9; 32]);
        let err = parse_kek(path, &body, 2).unwrap_err();
        assert!(err.to_string().contains("not 2"), "{err}");
    }

    #[test]
    fn a_live_key_unwraps_to_its_subject_and_names_no_one_in_the_clear() {
        let rng = SystemRandom::new();
        let kek = aes_key(&[1; 32]).unwrap();
        let region = Region::parse("us").unwrap();
        let alice = SubjectId::parse("alice-4711").unwrap();
        let body = encode_live(
            &kek,
            &mut Nonces::new(&rng, 1),
            &region,
            &alice,
            1,
            3,
            &[5; 32],
        )
        .unwrap();
        assert!(!body.windows(10).any(|w| w == b"alice-4711"));
        let path = Path::new("a.dk");
        let KeyFile::Live {
            version,
            kek: kv,
            wrapped,
        } = parse_key_file(path, &body).unwrap()
        else {
            panic!("a live key file parses as live");
        };
        assert_eq!((version, kv), (3, 1));
        assert_eq!(
            unwrap_key(path, &kek, &region, 1, 3, &wrapped).unwrap(),
            ([5; 32], alice)
        );
        let other = Region::parse("row").unwrap();
        assert!(unwrap_key(path, &kek, &other, 1, 3, &wrapped).is_err());
        assert!(unwrap_key(path, &kek, &region, 1, 4, &wrapped).is_err());
    }

    #[test]
    fn a_rotation_marker_round_trips_and_other_files_are_refused() {
        let path = Path::new("rotating");
        assert_eq!(
            parse_rotation_marker(path, &encode_rotation_marker(4)).unwrap(),
            4
        );
        assert!(parse_rotation_marker(path, &encode_kek(4, &[0; 32])).is_err());
    }
}
