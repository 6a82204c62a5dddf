//! The `KeyCustodian` trait: who holds a region's keys.
//!
//! Envelope encryption in two levels. Each region has versioned **key-encryption keys** (KEKs)
//! that never leave the custodian. Each subject has a **data key** that seals their records; the
//! custodian keeps it only wrapped under the region's current KEK, in its own directory, never in
//! the data store. Destroying a data key makes every copy of the subject's records unreadable
//! (crypto-shredding); rotating the KEK rewraps data keys without touching a record.
//!
//! The file custodian ([`crate::FileCustodian`]) is the embedded default; this trait is where an
//! HSM or a cloud KMS plugs in.

use std::fmt;
use std::sync::Arc;

use domicile_residency::{Region, SubjectId};
use ring::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// The version of a region's key-encryption key, counting from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KekVersion(pub u32);

impl fmt::Display for KekVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// A subject's keyed pseudonym in one region: the first 16 bytes of
/// HMAC-SHA-256(region pseudonym key, subject id).
///
/// The data store indexes records by pseudonym, so a copy of the data directory does not list
/// who the store holds data about.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pseudonym(pub [u8; 16]);

impl Pseudonym {
    /// Lowercase hex, as used in file names.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

/// A map keyed by pseudonym, hashed by the pseudonym's own first 8 bytes.
///
/// A pseudonym is the output of an HMAC under a key no caller holds, so its bytes are already
/// uniform and no one can choose pseudonyms that collide: hashing them again (SipHash, the
/// standard map's default) only costs time on every record opened.
pub(crate) type PseudonymMap<V> =
    std::collections::HashMap<Pseudonym, V, std::hash::BuildHasherDefault<KeyedHasher>>;

/// A map keyed by blind index, hashed by its own first 8 bytes, for the reason
/// [`PseudonymMap`] is: a blind index is an HMAC under a key no caller holds.
pub(crate) type BlindMap<V> =
    std::collections::HashMap<BlindIndex, V, std::hash::BuildHasherDefault<KeyedHasher>>;

/// The hasher of maps keyed by HMAC outputs ([`PseudonymMap`], [`BlindMap`]): the first 8
/// bytes written, as they are.
#[derive(Default)]
pub(crate) struct KeyedHasher(u64);

impl std::hash::Hasher for KeyedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // A `[u8; 16]` hashes as its length (a usize, `write_usize`) then its bytes.
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (8 * i);
        }
    }

    fn write_usize(&mut self, _: usize) {}
}

impl fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pseudonym({})", self.to_hex())
    }
}

impl fmt::Display for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A region's key for subject pseudonyms and record blind indexes.
///
/// Two HMAC-SHA-256 keys: the pseudonym key itself, and the **index key** derived from it
/// (HMAC-SHA-256(pseudonym key, `"domicile.blind-index.v2"`)), so that one secret held by the
/// custodian yields both and neither output can stand in for the other.
pub struct PseudonymKey {
    pseudonyms: hmac::Key,
    index: hmac::Key,
}

/// The label the index key is derived under.
const INDEX_KEY_LABEL: &[u8] = b"domicile.blind-index.v2";

impl PseudonymKey {
    /// A pseudonym key from 32 secret bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        let pseudonyms = hmac::Key::new(hmac::HMAC_SHA256, bytes);
        let derived = hmac::sign(&pseudonyms, INDEX_KEY_LABEL);
        PseudonymKey {
            index: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            pseudonyms,
        }
    }

    /// The subject's pseudonym under this key.
    pub fn pseudonym(&self, subject: &SubjectId) -> Pseudonym {
        let tag = hmac::sign(&self.pseudonyms, subject.as_str().as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&tag.as_ref()[..16]);
        Pseudonym(out)
    }

    /// A public fingerprint of this key: the first 16 bytes of HMAC-SHA-256(key,
    /// `"domicile.key-fingerprint.v1"`), in hex. It names the key set a store was written under
    /// without revealing the key.
    pub fn fingerprint(&self) -> String {
        let tag = hmac::sign(&self.pseudonyms, b"domicile.key-fingerprint.v1");
        hex(&tag.as_ref()[..16])
    }

    /// The keyed blind index of the record at (`collection`, `key`): HMAC-SHA-256(index key,
    /// lp(collection) ‖ lp(key)). The backend stores records under it, never under the key.
    pub fn blind_index(&self, collection: &str, key: &str) -> BlindIndex {
        let mut ctx = hmac::Context::with_key(&self.index);
        ctx.update(&(collection.len() as u32).to_be_bytes());
        ctx.update(collection.as_bytes());
        ctx.update(&(key.len() as u32).to_be_bytes());
        ctx.update(key.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        BlindIndex(out)
    }
}

/// A record's keyed blind index: what the backend key holds instead of the record key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlindIndex(pub [u8; 32]);

impl BlindIndex {
    /// Lowercase hex of the first 8 bytes: how errors name a record without naming its key.
    pub fn short_hex(&self) -> String {
        hex(&self.0[..8])
    }
}

impl fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlindIndex({})", self.short_hex())
    }
}

impl fmt::Display for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.short_hex())
    }
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey(..)")
    }
}

/// A subject's unwrapped data key: an AES-256-GCM key with the subject and versions it belongs to.
///
/// Held in memory only; `Debug` does not print the key.
pub struct DataKey {
    subject: SubjectId,
    version: u32,
    kek: KekVersion,
    key: LessSafeKey,
}

impl DataKey {
    /// A data key from its 32 secret bytes. Custodians call this after unwrapping.
    pub fn from_bytes(
        subject: SubjectId,
        version: u32,
        kek: KekVersion,
        bytes: &[u8; 32],
    ) -> Result<Self, StoreError> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| StoreError::Crypto {
            what: "loading a data key",
        })?;
        Ok(DataKey {
            subject,
            version,
            kek,
            key: LessSafeKey::new(unbound),
        })
    }

    /// Whose key it is.
    pub fn subject(&self) -> &SubjectId {
        &self.subject
    }

    /// The data key's version: 1 for a subject's first key, one more each time a shredded
    /// subject is registered again.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The KEK version it was wrapped under when it was loaded.
    pub fn kek_version(&self) -> KekVersion {
        self.kek
    }

    pub(crate) fn aead(&self) -> &LessSafeKey {
        &self.key
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("subject", &self.subject)
            .field("version", &self.version)
            .field("kek", &self.kek)
            .finish_non_exhaustive()
    }
}

/// What a custodian holds for a pseudonym.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DataKeyState {
    /// A live data key.
    Live(Arc<DataKey>),
    /// The key was destroyed; `version` was its version.
    Shredded {
        /// The destroyed key's version.
        version: u32,
    },
    /// The custodian never held a key for this pseudonym.
    Absent,
}

/// What [`KeyCustodian::destroy_data_key`] destroyed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroyedKey {
    /// The region.
    pub region: Region,
    /// The destroyed data key's version.
    pub data_key_version: u32,
    /// The KEK version it had been wrapped under (`None` when it had already been destroyed
    /// earlier and this call only confirmed it).
    pub kek_version: Option<KekVersion>,
}

/// The outcome of a KEK rotation (or of one step of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationReport {
    /// The region.
    pub region: Region,
    /// The KEK every data key is (or is being) rewrapped under.
    pub kek: KekVersion,
    /// How many data keys were rewrapped by this call.
    pub rewrapped: usize,
    /// Whether this call resumed a rotation an earlier call had started.
    pub resumed: bool,
    /// Whether every data key is now wrapped under `kek`.
    pub complete: bool,
}

/// Holds a region's key-encryption keys and wrapped data keys.
///
/// Implementations must keep wrapped data keys apart from the data store, refuse with a clear
/// error a key that is wrong, missing or corrupt, and make every change durable before
/// returning.
pub trait KeyCustodian: Send + Sync {
    /// The region's pseudonym key, created on first use.
    fn pseudonym_key(&self, region: &Region) -> Result<Arc<PseudonymKey>, StoreError>;

    /// The data key held for `pseudonym` in `region`.
    fn data_key(&self, region: &Region, pseudonym: &Pseudonym) -> Result<DataKeyState, StoreError>;

    /// The data keys held for `pseudonyms` in `region`, in their order: what
    /// [`data_key`](KeyCustodian::data_key) returns for each, which the default calls once per
    /// pseudonym; a custodian that can read many keys at once for less overrides it.
    fn data_keys(
        &self,
        region: &Region,
        pseudonyms: &[Pseudonym],
    ) -> Result<Vec<DataKeyState>, StoreError> {
        pseudonyms
            .iter()
            .map(|p| self.data_key(region, p))
            .collect()
    }

    /// The subject's live data key, created (256 random bits, wrapped under the current KEK) if
    /// the subject has none. A subject that was shredded gets a new key with the next version.
    fn create_data_key(
        &self,
        region: &Region,
        subject: &SubjectId,
    ) -> Result<Arc<DataKey>, StoreError>;

    /// [`create_data_key`](Self::create_data_key) for many subjects at once, in order. A
    /// custodian may make them durable together (the file custodian writes the key files in
    /// parallel so the file system commits them as one group); the default asks one at a time.
    fn create_data_keys(
        &self,
        region: &Region,
        subjects: &[SubjectId],
    ) -> Result<Vec<Arc<DataKey>>, StoreError> {
        subjects
            .iter()
            .map(|s| self.create_data_key(region, s))
            .collect()
    }

    /// Destroys the subject's data key. Destroying a key that was already destroyed succeeds
    /// again (so an interrupted shred can be finished); a subject that never had one is
    /// [`StoreError::NoDataKey`].
    fn destroy_data_key(
        &self,
        region: &Region,
        subject: &SubjectId,
    ) -> Result<DestroyedKey, StoreError>;

    /// [`destroy_data_key`](Self::destroy_data_key) for many subjects at once, in order; the
    /// file custodian makes the tombstones durable together.
    fn destroy_data_keys(
        &self,
        region: &Region,
        subjects: &[SubjectId],
    ) -> Result<Vec<DestroyedKey>, StoreError> {
        subjects
            .iter()
            .map(|s| self.destroy_data_key(region, s))
            .collect()
    }

    /// The KEK versions the custodian holds for `region`, ascending; the last is current.
    fn kek_versions(&self, region: &Region) -> Result<Vec<KekVersion>, StoreError>;

    /// Rewraps every data key of `region` under a new KEK version, re-encrypting no record.
    /// If an earlier rotation was interrupted, finishes that one instead of starting another.
    fn rotate_kek(&self, region: &Region) -> Result<RotationReport, StoreError>;

    /// Destroys an old KEK version. Refused for the current version and for any version that
    /// still wraps a data key.
    fn retire_kek(&self, region: &Region, version: KekVersion) -> Result<(), StoreError>;

    /// Makes every shred of `region` so far final: rewraps every live data key under a new KEK
    /// and destroys every older KEK, so a destroyed key's wrapped bytes, wherever a copy of them
    /// survives (freed disk blocks, a backup of the keys taken from now on), open under no key
    /// that still exists. Returns the KEK version now current. Safe to repeat.
    ///
    /// The default rotates and retires through the methods above; the file custodian also
    /// writes its key store afresh, so no file left in the keys directory holds a destroyed
    /// key's bytes at all.
    fn finalize_shreds(&self, region: &Region) -> Result<KekVersion, StoreError> {
        let report = self.rotate_kek(region)?;
        for version in self.kek_versions(region)? {
            if version < report.kek {
                self.retire_kek(region, version)?;
            }
        }
        Ok(report.kek)
    }
}

/// Lowercase hex of `bytes`: what file names, errors and receipts show of keyed digests.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}
