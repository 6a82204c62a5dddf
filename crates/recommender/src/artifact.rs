//! Model artifacts: a versioned binary file with a provenance manifest, signed with the
//! region's Ed25519 key.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! magic           8 bytes   "DOMRECS\x01"
//! format version  u32       1
//! manifest length u32, manifest (JSON, UTF-8)
//! payload length  u64, payload (the model, see `encode_payload`)
//! signature kind  u8        0 = unsigned, 1 = Ed25519
//! [public key 32 bytes, signature 64 bytes]   when signed
//! ```
//!
//! The signature covers every byte before the signature kind: header, manifest and payload. The
//! manifest carries the payload's SHA-256, so even an unsigned artifact is checked for
//! corruption, and a signed one cannot have its manifest (its provenance) swapped.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use domicile_residency::{PolicyId, Region};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use crate::als::AlsModel;
use crate::interactions::{Csr, IdMap};
use crate::knn::ItemKnn;
use crate::model::{ModelKind, Recommender, TrainConfig};
use crate::popularity::Popularity;
use crate::RecsysError;

const MAGIC: &[u8; 8] = b"DOMRECS\x01";
/// The artifact format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Where a model's training data came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// The home regions of every subject whose events were used.
    pub trained_on: BTreeSet<Region>,
    /// How many subjects contributed at least one interaction.
    pub subjects: u64,
    /// How many (user, item) interactions were trained on.
    pub events: u64,
    /// SHA-256 of the training interactions ([`crate::Interactions::digest`]).
    pub data_digest: [u8; 32],
    /// The residency policy in force when the data was read, if it was read through one.
    pub policy: Option<PolicyId>,
}

/// The manifest of a model artifact: what it is, how it was trained and on whose data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The artifact format version.
    pub format_version: u32,
    /// The model kind.
    pub kind: ModelKind,
    /// Every hyper-parameter the model was trained with.
    pub hyper_parameters: TrainConfig,
    /// The home regions of every subject whose events were used.
    pub trained_on: BTreeSet<Region>,
    /// How many subjects contributed.
    pub subjects: u64,
    /// How many interactions were trained on.
    pub events: u64,
    /// `sha256:<hex>` of the training interactions.
    pub training_data_digest: String,
    /// `sha256:<hex>` of the payload.
    pub payload_digest: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// The version of domicile-recommender that wrote it.
    pub code_version: String,
    /// The residency policy in force, if the data was read through one.
    pub policy: Option<PolicyId>,
    /// Users known to the model.
    pub n_users: u64,
    /// Items the model can recommend.
    pub n_items: u64,
}

/// Whether, and by whom, a loaded artifact was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureStatus {
    /// Signed, and the signature verifies under this Ed25519 public key.
    Verified {
        /// The signer's public key.
        public_key: [u8; 32],
    },
    /// Not signed: nothing vouches for the manifest beyond its own payload digest.
    Unsigned,
}

/// A model read from an artifact, with its manifest and signature status.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The manifest.
    pub manifest: Manifest,
    /// The model.
    pub model: Recommender,
    /// Who signed it.
    pub signature: SignatureStatus,
}

/// An Ed25519 signing key (a region's model-signing key).
#[derive(Debug)]
pub struct SigningKey(Ed25519KeyPair);

impl SigningKey {
    /// Generates a key, returned as its PKCS#8 v2 document (the form to store).
    pub fn generate_pkcs8() -> Result<Vec<u8>, RecsysError> {
        let rng = ring::rand::SystemRandom::new();
        Ed25519KeyPair::generate_pkcs8(&rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| RecsysError::RandomUnavailable)
    }

    /// Reads a PKCS#8 document.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, RecsysError> {
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map(SigningKey)
            .map_err(|e| RecsysError::InvalidKey(format!("not an Ed25519 PKCS#8 document ({e})")))
    }

    /// Builds a key from a 32-byte seed.
    pub fn from_seed(seed: &[u8]) -> Result<Self, RecsysError> {
        Ed25519KeyPair::from_seed_unchecked(seed)
            .map(SigningKey)
            .map_err(|e| RecsysError::InvalidKey(format!("not a 32-byte Ed25519 seed ({e})")))
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.public_key().as_ref());
        out
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_text(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
    )
}

/// Builds the manifest for `model` trained with `provenance`, and writes the artifact to `path`,
/// signed with `key` when one is given. Returns the manifest written.
pub fn write_artifact(
    path: &Path,
    model: &Recommender,
    provenance: &Provenance,
    key: Option<&SigningKey>,
) -> Result<Manifest, RecsysError> {
    let (bytes, manifest) = encode_artifact(model, provenance, key)?;
    // Atomic and durable: a crash never leaves a half-written model under the final name, and a
    // model reported written survives a power cut.
    domicile_durable::write_private(path, &bytes)?;
    Ok(manifest)
}

/// The artifact's bytes and manifest (see [`write_artifact`]).
pub fn encode_artifact(
    model: &Recommender,
    provenance: &Provenance,
    key: Option<&SigningKey>,
) -> Result<(Vec<u8>, Manifest), RecsysError> {
    let payload = encode_payload(model);
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        kind: model.kind(),
        hyper_parameters: *model.config(),
        trained_on: provenance.trained_on.clone(),
        subjects: provenance.subjects,
        events: provenance.events,
        training_data_digest: format!("sha256:{}", hex(&provenance.data_digest)),
        payload_digest: sha256_text(&payload),
        created_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        code_version: env!("CARGO_PKG_VERSION").to_owned(),
        policy: provenance.policy.clone(),
        n_users: model.users().len() as u64,
        n_items: model.items().len() as u64,
    };
    let manifest_json = serde_json::to_vec(&manifest).expect("a manifest always serialises");
    let mut out = Vec::with_capacity(payload.len() + manifest_json.len() + 128);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(manifest_json.len() as u32).to_le_bytes());
    out.extend_from_slice(&manifest_json);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload);
    match key {
        None => out.push(0),
        Some(key) => {
            let sig = key.0.sign(&out);
            out.push(1);
            out.extend_from_slice(&key.public_key());
            out.extend_from_slice(sig.as_ref());
        }
    }
    Ok((out, manifest))
}

/// Reads and checks an artifact.
///
/// With `trusted` set, the artifact must be signed by that public key: an unsigned artifact is
/// [`RecsysError::Unsigned`], another signer [`RecsysError::ForeignSigner`]. Without it, a signed
/// artifact is still verified under its embedded key (catching any modification) and an unsigned
/// one loads with [`SignatureStatus::Unsigned`]. In every case the payload must match the
/// manifest's digest, kind and counts.
pub fn read_artifact(path: &Path, trusted: Option<&[u8; 32]>) -> Result<LoadedModel, RecsysError> {
    let bytes = std::fs::read(path).map_err(|e| RecsysError::io("read", path, e))?;
    decode_artifact(&bytes, &path.display().to_string(), trusted)
}

/// Decodes artifact bytes; `name` is used in error messages.
pub fn decode_artifact(
    bytes: &[u8],
    name: &str,
    trusted: Option<&[u8; 32]>,
) -> Result<LoadedModel, RecsysError> {
    let corrupt = |reason: String| RecsysError::Corrupt {
        path: name.to_owned(),
        reason,
    };
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        return Err(RecsysError::NotAnArtifact {
            path: name.to_owned(),
        });
    }
    let mut r = Reader { bytes, at: 8, name };
    let version = r.u32()?;
    if version != FORMAT_VERSION {
        return Err(RecsysError::UnsupportedVersion {
            path: name.to_owned(),
            version,
            supported: FORMAT_VERSION,
        });
    }
    let manifest_len = r.u32()? as usize;
    let manifest_bytes = r.take(manifest_len)?;
    let payload_len =
        usize::try_from(r.u64()?).map_err(|_| corrupt("payload length overflows".into()))?;
    let payload = r.take(payload_len)?;
    let signed_len = r.at;
    let signature = match r.u8()? {
        0 => None,
        1 => {
            let mut pk = [0u8; 32];
            pk.copy_from_slice(r.take(32)?);
            let sig = r.take(64)?;
            Some((pk, sig))
        }
        other => return Err(corrupt(format!("unknown signature kind {other}"))),
    };
    if r.at != bytes.len() {
        return Err(corrupt(format!(
            "{} trailing bytes after the signature",
            bytes.len() - r.at
        )));
    }
    let status = match (signature, trusted) {
        (None, Some(expected)) => {
            return Err(RecsysError::Unsigned {
                path: name.to_owned(),
                expected: hex(expected),
            })
        }
        (None, None) => SignatureStatus::Unsigned,
        (Some((pk, sig)), trusted) => {
            if let Some(expected) = trusted {
                if &pk != expected {
                    return Err(RecsysError::ForeignSigner {
                        path: name.to_owned(),
                        found: hex(&pk),
                        expected: hex(expected),
                    });
                }
            }
            UnparsedPublicKey::new(&ED25519, &pk)
                .verify(&bytes[..signed_len], sig)
                .map_err(|_| RecsysError::BadSignature {
                    path: name.to_owned(),
                })?;
            SignatureStatus::Verified { public_key: pk }
        }
    };
    let manifest: Manifest = serde_json::from_slice(manifest_bytes)
        .map_err(|e| corrupt(format!("the manifest is not valid: {e}")))?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "the manifest says format version {}, the header {FORMAT_VERSION}",
            manifest.format_version
        )));
    }
    let digest = sha256_text(payload);
    if digest != manifest.payload_digest {
        return Err(corrupt(format!(
            "the payload digest {digest} does not match the manifest's {}",
            manifest.payload_digest
        )));
    }
    let model = decode_payload(payload, name, manifest.hyper_parameters)?;
    if model.kind() != manifest.kind
        || model.users().len() as u64 != manifest.n_users
        || model.items().len() as u64 != manifest.n_items
    {
        return Err(corrupt(
            "the payload's kind or counts do not match the manifest".into(),
        ));
    }
    Ok(LoadedModel {
        manifest,
        model,
        signature: status,
    })
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn ids(&mut self, map: &IdMap) {
        self.u64(map.len() as u64);
        for id in map.ids() {
            self.u32(id.len() as u32);
            self.0.extend_from_slice(id.as_bytes());
        }
    }
    fn u32s(&mut self, v: &[u32]) {
        self.u64(v.len() as u64);
        for x in v {
            self.u32(*x);
        }
    }
    fn f32s(&mut self, v: &[f32]) {
        self.u64(v.len() as u64);
        for x in v {
            self.0.extend_from_slice(&x.to_le_bytes());
        }
    }
    fn csr(&mut self, m: &Csr) {
        self.u64(m.indptr.len() as u64);
        for &p in &m.indptr {
            self.u64(p as u64);
        }
        self.u32s(&m.indices);
        self.f32s(&m.values);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    name: &'a str,
}

impl<'a> Reader<'a> {
    fn corrupt(&self, reason: String) -> RecsysError {
        RecsysError::Corrupt {
            path: self.name.to_owned(),
            reason,
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecsysError> {
        match self.at.checked_add(n) {
            Some(end) if end <= self.bytes.len() => {
                let s = &self.bytes[self.at..end];
                self.at = end;
                Ok(s)
            }
            _ => Err(self.corrupt(format!("truncated: needed {n} bytes at offset {}", self.at))),
        }
    }
    fn u8(&mut self) -> Result<u8, RecsysError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, RecsysError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, RecsysError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    /// A length that must fit in what is left, at `unit` bytes per element.
    fn len(&mut self, unit: usize) -> Result<usize, RecsysError> {
        let n = self.u64()?;
        let left = (self.bytes.len() - self.at) as u64;
        if n.saturating_mul(unit as u64) > left {
            return Err(self.corrupt(format!("a length of {n} exceeds the {left} bytes left")));
        }
        Ok(n as usize)
    }
    fn ids(&mut self) -> Result<IdMap, RecsysError> {
        let n = self.len(4)?;
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let len = self.u32()? as usize;
            let s = std::str::from_utf8(self.take(len)?)
                .map_err(|_| self.corrupt("an id is not UTF-8".into()))?;
            ids.push(s.to_owned());
        }
        IdMap::from_ids(ids).ok_or_else(|| self.corrupt("an id map holds the same id twice".into()))
    }
    fn u32s(&mut self) -> Result<Vec<u32>, RecsysError> {
        let n = self.len(4)?;
        let b = self.take(n * 4)?;
        Ok(b.chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4")))
            .collect())
    }
    fn f32s(&mut self) -> Result<Vec<f32>, RecsysError> {
        let n = self.len(4)?;
        let b = self.take(n * 4)?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
            .collect())
    }
    fn csr(&mut self, rows: usize, columns: usize) -> Result<Csr, RecsysError> {
        let n = self.len(8)?;
        let mut indptr = Vec::with_capacity(n);
        for _ in 0..n {
            indptr.push(self.u64()? as usize);
        }
        let indices = self.u32s()?;
        let values = self.f32s()?;
        let ok = indptr.len() == rows + 1
            && indptr[0] == 0
            && indptr.windows(2).all(|w| w[0] <= w[1])
            && indptr[rows] == indices.len()
            && values.len() == indices.len()
            && indices.iter().all(|&c| (c as usize) < columns);
        if !ok {
            return Err(self.corrupt("an inconsistent sparse matrix".into()));
        }
        Ok(Csr {
            indptr,
            indices,
            values,
        })
    }
}

fn kind_tag(kind: ModelKind) -> u8 {
    match kind {
        ModelKind::Als => 1,
        ModelKind::ItemKnn => 2,
        ModelKind::Blend => 3,
        ModelKind::Popularity => 4,
    }
}

/// The model's payload: kind, id maps, creators, histories, popularity, then each optional
/// component behind a presence byte.
fn encode_payload(model: &Recommender) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    w.u8(kind_tag(model.kind()));
    w.ids(&model.users);
    w.ids(&model.items);
    w.ids(&model.creators);
    w.u32s(&model.item_creator);
    w.csr(&model.seen);
    w.f32s(&model.popularity.scores);
    match &model.als {
        None => w.u8(0),
        Some(als) => {
            w.u8(1);
            w.u32(als.factors as u32);
            w.f32s(&als.user_factors);
            w.f32s(&als.item_factors);
        }
    }
    match &model.knn {
        None => w.u8(0),
        Some(knn) => {
            w.u8(1);
            w.csr(&knn.neighbours);
        }
    }
    w.0
}

fn decode_payload(
    payload: &[u8],
    name: &str,
    config: TrainConfig,
) -> Result<Recommender, RecsysError> {
    let mut r = Reader {
        bytes: payload,
        at: 0,
        name,
    };
    let tag = r.u8()?;
    if tag != kind_tag(config.kind) {
        return Err(r.corrupt(format!(
            "payload kind tag {tag} does not match the manifest's {}",
            config.kind
        )));
    }
    let users = r.ids()?;
    let items = r.ids()?;
    let creators = r.ids()?;
    let (n_users, n_items) = (users.len(), items.len());
    let item_creator = r.u32s()?;
    if item_creator.len() != n_items
        || item_creator
            .iter()
            .any(|&c| c != crate::model::NO_CREATOR && c as usize >= creators.len())
    {
        return Err(r.corrupt("the item-creator table does not match the items".into()));
    }
    let seen = r.csr(n_users, n_items)?;
    let scores = r.f32s()?;
    if scores.len() != n_items {
        return Err(r.corrupt("the popularity table does not match the items".into()));
    }
    let als = match r.u8()? {
        0 => None,
        _ => {
            let factors = r.u32()? as usize;
            let user_factors = r.f32s()?;
            let item_factors = r.f32s()?;
            if factors == 0
                || user_factors.len() != n_users * factors
                || item_factors.len() != n_items * factors
            {
                return Err(r.corrupt("the ALS factor tables do not match the id maps".into()));
            }
            Some(AlsModel {
                factors,
                user_factors,
                item_factors,
            })
        }
    };
    let knn = match r.u8()? {
        0 => None,
        _ => Some(ItemKnn {
            neighbours: r.csr(n_items, n_items)?,
        }),
    };
    if r.at != payload.len() {
        return Err(r.corrupt("trailing bytes in the payload".into()));
    }
    Ok(Recommender {
        config,
        users,
        items,
        creators,
        item_creator,
        seen,
        als,
        knn,
        popularity: Popularity::from_scores(scores),
        index: std::sync::OnceLock::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InteractionsBuilder, RecommendOptions};

    fn trained(kind: ModelKind) -> (Recommender, Provenance) {
        let mut b = InteractionsBuilder::new();
        for u in 0..20u32 {
            for i in 0..15u32 {
                if (u + i) % 3 == 0 {
                    let (uu, ii) = b.add(&format!("u{u}"), &format!("v{i}"), 1.0, 0);
                    b.set_country(
                        uu,
                        domicile_residency::CountryCode::parse(if u % 2 == 0 {
                            "US"
                        } else {
                            "DE"
                        })
                        .unwrap(),
                    );
                    b.set_creator(ii, &format!("c{}", i % 4));
                }
            }
        }
        let data = b.build();
        let mut config = TrainConfig::for_kind(kind);
        config.als.factors = 4;
        config.als.iterations = 2;
        let model = Recommender::train(&data, &config).unwrap();
        let prov = data
            .provenance(None, |_, c| {
                Region::parse(if c.unwrap().as_str() == "US" {
                    "us"
                } else {
                    "row"
                })
            })
            .unwrap();
        (model, prov)
    }

    #[test]
    fn round_trip_every_kind_signed_and_unsigned() {
        let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        for kind in [
            ModelKind::Als,
            ModelKind::ItemKnn,
            ModelKind::Blend,
            ModelKind::Popularity,
        ] {
            let (model, prov) = trained(kind);
            let (bytes, manifest) = encode_artifact(&model, &prov, Some(&key)).unwrap();
            let loaded = decode_artifact(&bytes, "m", Some(&key.public_key())).unwrap();
            assert_eq!(loaded.manifest, manifest);
            assert_eq!(
                loaded.signature,
                SignatureStatus::Verified {
                    public_key: key.public_key()
                }
            );
            let names: Vec<&str> = manifest.trained_on.iter().map(Region::as_str).collect();
            assert_eq!(names, ["row", "us"]);
            let opts = RecommendOptions::top(5);
            assert_eq!(
                loaded.model.recommend("u3", &opts).unwrap(),
                model.recommend("u3", &opts).unwrap()
            );
            let (bytes, _) = encode_artifact(&model, &prov, None).unwrap();
            assert_eq!(
                decode_artifact(&bytes, "m", None).unwrap().signature,
                SignatureStatus::Unsigned
            );
        }
    }

    #[test]
    fn tampering_unsigned_and_foreign_keys_are_refused() {
        let (model, prov) = trained(ModelKind::Als);
        let key = SigningKey::from_seed(&[7u8; 32]).unwrap();
        let other = SigningKey::from_seed(&[8u8; 32]).unwrap();
        let (bytes, _) = encode_artifact(&model, &prov, Some(&key)).unwrap();
        // Flip one bit anywhere before the signature: always refused, with or without a trusted key.
        for at in [9, 20, 200, bytes.len() - 200] {
            let mut t = bytes.clone();
            t[at] ^= 0x10;
            for trusted in [None, Some(&key.public_key())] {
                let err = decode_artifact(&t, "m", trusted).unwrap_err();
                assert!(
                    matches!(
                        err,
                        RecsysError::BadSignature { .. } | RecsysError::UnsupportedVersion { .. }
                    ),
                    "byte {at}: {err}"
                );
            }
        }
        let err = decode_artifact(&bytes, "m", Some(&other.public_key())).unwrap_err();
        assert!(matches!(err, RecsysError::ForeignSigner { .. }), "{err}");
        let (unsigned, _) = encode_artifact(&model, &prov, None).unwrap();
        let err = decode_artifact(&unsigned, "m", Some(&key.public_key())).unwrap_err();
        assert!(matches!(err, RecsysError::Unsigned { .. }), "{err}");
        // An unsigned artifact is still checked against its manifest.
        let mut t = unsigned.clone();
        let n = t.len();
        t[n - 10] ^= 1;
        assert!(matches!(
            decode_artifact(&t, "m", None),
            Err(RecsysError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_artifact(b"hello", "m", None),
            Err(RecsysError::NotAnArtifact { .. })
        ));
        assert!(decode_artifact(&bytes[..bytes.len() - 1], "m", None).is_err());
    }
}
