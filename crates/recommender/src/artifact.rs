//! Model artifacts: a versioned binary file with a provenance manifest, signed with the
//! region's Ed25519 key.
//!
//! An artifact is the algorithm only (invariant 10 of the design): the catalogue (item ids,
//! item-creator groups, popularity), the algorithm's item-side parameters (for the built-ins:
//! ALS item factors, item-item neighbours), hyper-parameters, the code versions and the
//! provenance. It holds no subject id, pseudonym, user factor or history: those are computed at
//! serving time from each subject's own history ([`crate::Histories`],
//! [`crate::ItemFactors::fold_in`]). Creator ids are not written either (creators are subjects
//! too); the per-creator cap needs only to know which items share a creator. Any algorithm's
//! parameters are screened for the subject ids and pseudonyms the platform handed over before
//! they are written ([`crate::Screen`]).
//!
//! An artifact is trusted only when signed by a key the reader pinned (invariant 11): the key
//! embedded in the file proves integrity, not authority, since anyone can re-sign a forged
//! manifest with a key of their own.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! magic           8 bytes   "DOMRECS\x01"
//! format version  u32       3
//! manifest length u32, manifest (JSON, UTF-8)
//! payload length  u64, payload: item ids · creator groups · popularity · the algorithm's
//!                 parameters (u64 length, bytes)
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

use crate::algorithm::{AlgorithmRegistry, Catalogue};
use crate::als::ItemFactors;
use crate::hosted::Model;
use crate::interactions::{Csr, IdMap};
use crate::knn::ItemKnn;
use crate::model::{ModelKind, Recommender, TrainConfig};
use crate::popularity::Popularity;
use crate::screen::Screen;
use crate::RecsysError;

const MAGIC: &[u8; 8] = b"DOMRECS\x01";
/// The artifact format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 3;

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
    /// The algorithm that trained the model (`als`, `ease`, …): the reader must link it.
    pub algorithm: String,
    /// The algorithm's code version.
    pub algorithm_version: String,
    /// Every hyper-parameter the model was trained with, as the algorithm reports them.
    pub hyper_parameters: serde_json::Value,
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
    /// The version of domicile-recommender (the platform) that wrote it.
    pub code_version: String,
    /// The residency policy in force, if the data was read through one.
    pub policy: Option<PolicyId>,
    /// Items the model can recommend.
    pub n_items: u64,
}

/// Whether, and by whom, a loaded artifact was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureStatus {
    /// Signed by the pinned key, and the signature verifies.
    Trusted {
        /// The signer's public key (the pinned key).
        public_key: [u8; 32],
    },
    /// Signed by a key nobody pinned: the bytes are intact, but nothing vouches for the manifest
    /// (anyone can re-sign a forged `trained_on`). Loaded only under [`Trust::allow_untrusted`].
    Untrusted {
        /// The signer's public key.
        public_key: [u8; 32],
    },
    /// Not signed: nothing vouches for the manifest beyond its own payload digest. Loaded only
    /// under [`Trust::allow_untrusted`].
    Unsigned,
}

impl SignatureStatus {
    /// Whether the artifact was signed by the pinned key.
    pub fn is_trusted(&self) -> bool {
        matches!(self, SignatureStatus::Trusted { .. })
    }
}

/// Which artifacts a reader accepts.
///
/// The default accepts nothing: a reader must pin the key it trusts ([`Trust::pinned`]), or say
/// explicitly that it takes untrusted artifacts ([`Trust::allow_untrusted`]) and then tell its
/// user so.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trust {
    pinned: Option<[u8; 32]>,
    allow_untrusted: bool,
}

impl Trust {
    /// Only artifacts signed by this Ed25519 public key load.
    pub fn pinned(public_key: [u8; 32]) -> Self {
        Trust {
            pinned: Some(public_key),
            allow_untrusted: false,
        }
    }

    /// Unsigned and foreign-signed artifacts load too (still checked for corruption), with a
    /// [`SignatureStatus`] that says so. For tests and demonstrations; a caller serving such a
    /// model must warn.
    pub fn allow_untrusted() -> Self {
        Trust {
            pinned: None,
            allow_untrusted: true,
        }
    }

    /// This trust, also accepting untrusted artifacts (a pinned key still reports
    /// [`SignatureStatus::Trusted`] for its own artifacts).
    pub fn or_untrusted(self) -> Self {
        Trust {
            allow_untrusted: true,
            ..self
        }
    }

    /// The pinned key, if any.
    pub fn pinned_key(&self) -> Option<&[u8; 32]> {
        self.pinned.as_ref()
    }
}

/// A model read from an artifact, with its manifest and signature status.
#[derive(Debug)]
pub struct LoadedModel {
    /// The manifest.
    pub manifest: Manifest,
    /// The model (the algorithm only: no subject's data).
    pub model: Model,
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

/// Builds the manifest for `model` trained with `provenance`, screens the algorithm's
/// parameters and hyper-parameters for every subject of its training data
/// ([`Model::training_subjects`]) and every subject id and pseudonym of `screen`, and writes the
/// artifact to `path`, signed with `key` when one is given. Returns the manifest written.
///
/// A screen that finds anyone is [`RecsysError::SubjectInParameters`], and nothing is written.
pub fn write_artifact(
    path: &Path,
    model: &Model,
    provenance: &Provenance,
    key: Option<&SigningKey>,
    screen: &Screen,
) -> Result<Manifest, RecsysError> {
    let (bytes, manifest) = encode_artifact(model, provenance, key, screen)?;
    // Atomic, durable and private (0600): a crash never leaves a half-written model under the
    // final name, and model files are export-controlled technology.
    domicile_durable::write_private(path, &bytes)?;
    Ok(manifest)
}

/// The artifact's bytes and manifest (see [`write_artifact`]).
pub fn encode_artifact(
    model: &Model,
    provenance: &Provenance,
    key: Option<&SigningKey>,
    screen: &Screen,
) -> Result<(Vec<u8>, Manifest), RecsysError> {
    let parameters = model.item_model().parameters();
    let hyper_parameters = model.hyper_parameters();
    // Everything the algorithm chose to put into the file: its parameters, and the names and
    // hyper-parameters the manifest records for it.
    let mut described =
        serde_json::to_vec(&hyper_parameters).expect("a JSON value always serialises");
    described.push(b'\n');
    described.extend_from_slice(model.algorithm().as_bytes());
    described.push(b'\n');
    described.extend_from_slice(model.algorithm_version().as_bytes());
    // The training data's own subjects always, and whatever else the writer knows of
    // (pseudonyms, other regions' subjects).
    let screen = screen.merged(model.training_subjects());
    let occurrences = screen.occurrences(&parameters) + screen.occurrences(&described);
    if occurrences > 0 {
        return Err(RecsysError::SubjectInParameters {
            algorithm: model.algorithm().to_owned(),
            occurrences,
        });
    }
    let payload = encode_payload(model.catalogue(), &parameters);
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        algorithm: model.algorithm().to_owned(),
        algorithm_version: model.algorithm_version().to_owned(),
        hyper_parameters,
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

/// The largest artifact [`read_artifact`] reads: a bound on what a user-supplied file can make
/// this process allocate (a 200k-item, 64-factor model with neighbours is about 100 MB).
pub const MAX_ARTIFACT_BYTES: u64 = 4 << 30;

/// Reads and checks an artifact.
///
/// Under [`Trust::pinned`] the artifact must be signed by that key: an unsigned artifact is
/// [`RecsysError::Unsigned`], another signer [`RecsysError::ForeignSigner`]. Under
/// [`Trust::allow_untrusted`] those load, with [`SignatureStatus::Unsigned`] or
/// [`SignatureStatus::Untrusted`]. With neither, every artifact is refused
/// ([`RecsysError::NoTrustedKey`]). A signature is always verified under the key it names, so
/// any changed byte is [`RecsysError::BadSignature`], and the payload must match the manifest's
/// digest and counts. The algorithm the manifest names must be in `algorithms`
/// ([`RecsysError::UnknownAlgorithm`] otherwise), and loads its own parameters.
pub fn read_artifact(
    path: &Path,
    trust: &Trust,
    algorithms: &AlgorithmRegistry,
) -> Result<LoadedModel, RecsysError> {
    let bytes = domicile_durable::read_bounded(path, MAX_ARTIFACT_BYTES)?;
    decode_artifact(&bytes, &path.display().to_string(), trust, algorithms)
}

/// Decodes artifact bytes; `name` is used in error messages.
pub fn decode_artifact(
    bytes: &[u8],
    name: &str,
    trust: &Trust,
    algorithms: &AlgorithmRegistry,
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
    let status = match signature {
        None if trust.allow_untrusted => SignatureStatus::Unsigned,
        None => {
            return Err(match &trust.pinned {
                Some(expected) => RecsysError::Unsigned {
                    path: name.to_owned(),
                    expected: hex(expected),
                },
                None => RecsysError::NoTrustedKey {
                    path: name.to_owned(),
                },
            })
        }
        Some((pk, sig)) => {
            let pinned = trust.pinned == Some(pk);
            if !pinned && !trust.allow_untrusted {
                return Err(match &trust.pinned {
                    Some(expected) => RecsysError::ForeignSigner {
                        path: name.to_owned(),
                        found: hex(&pk),
                        expected: hex(expected),
                    },
                    None => RecsysError::NoTrustedKey {
                        path: name.to_owned(),
                    },
                });
            }
            UnparsedPublicKey::new(&ED25519, &pk)
                .verify(&bytes[..signed_len], sig)
                .map_err(|_| RecsysError::BadSignature {
                    path: name.to_owned(),
                })?;
            if pinned {
                SignatureStatus::Trusted { public_key: pk }
            } else {
                SignatureStatus::Untrusted { public_key: pk }
            }
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
    let (catalogue, parameters) = decode_payload(payload, name)?;
    if catalogue.n_items() as u64 != manifest.n_items {
        return Err(corrupt(
            "the payload's item count does not match the manifest".into(),
        ));
    }
    let algorithm = algorithms.resolve(&manifest.algorithm)?;
    let inner = algorithm
        .load(&manifest.hyper_parameters, parameters, &catalogue)
        .map_err(|cause| {
            corrupt(format!(
                "the {} algorithm refused its parameters: {cause}",
                manifest.algorithm
            ))
        })?;
    let model = Model::from_parts(algorithm.as_ref(), catalogue, inner);
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

/// The payload: the catalogue (item ids, item-creator groups, popularity), then the
/// algorithm's parameters. Nothing per subject (invariant 10): no user id, no user factor, no
/// history, no creator id.
fn encode_payload(catalogue: &Catalogue, parameters: &[u8]) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(parameters.len() + 64));
    w.ids(&catalogue.items);
    w.u32s(&catalogue.item_creator);
    w.f32s(&catalogue.popularity.scores);
    w.u64(parameters.len() as u64);
    w.0.extend_from_slice(parameters);
    w.0
}

fn decode_payload<'a>(
    payload: &'a [u8],
    name: &'a str,
) -> Result<(Catalogue, &'a [u8]), RecsysError> {
    let mut r = Reader {
        bytes: payload,
        at: 0,
        name,
    };
    let items = r.ids()?;
    let n_items = items.len();
    let item_creator = r.u32s()?;
    if item_creator.len() != n_items {
        return Err(r.corrupt("the item-creator table does not match the items".into()));
    }
    let scores = r.f32s()?;
    if scores.len() != n_items {
        return Err(r.corrupt("the popularity table does not match the items".into()));
    }
    let n = r.len(1)?;
    let parameters = r.take(n)?;
    if r.at != payload.len() {
        return Err(r.corrupt("trailing bytes in the payload".into()));
    }
    Ok((
        Catalogue {
            items,
            item_creator,
            popularity: Popularity::from_scores(scores),
        },
        parameters,
    ))
}

/// The built-in recommender's parameters: kind, its popularity (under its own half-life), then
/// each optional component behind a presence byte.
pub(crate) fn encode_components(model: &Recommender) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    w.u8(kind_tag(model.kind()));
    w.f32s(&model.popularity.scores);
    match &model.als {
        None => w.u8(0),
        Some(als) => {
            w.u8(1);
            w.u32(als.factors as u32);
            w.f32s(&als.items);
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

/// The built-in recommender from its parameters and the artifact's catalogue.
pub(crate) fn decode_components(
    parameters: &[u8],
    config: TrainConfig,
    catalogue: &Catalogue,
) -> Result<Recommender, RecsysError> {
    let mut r = Reader {
        bytes: parameters,
        at: 0,
        name: "the built-in parameters",
    };
    let tag = r.u8()?;
    if tag != kind_tag(config.kind) {
        return Err(r.corrupt(format!(
            "kind tag {tag} does not match the manifest's {}",
            config.kind
        )));
    }
    let n_items = catalogue.n_items();
    let scores = r.f32s()?;
    if scores.len() != n_items {
        return Err(r.corrupt("the popularity table does not match the items".into()));
    }
    let als = match r.u8()? {
        0 => None,
        _ => {
            let factors = r.u32()? as usize;
            let item_factors = r.f32s()?;
            if factors == 0 || item_factors.len() != n_items * factors {
                return Err(r.corrupt("the ALS item factors do not match the items".into()));
            }
            Some(ItemFactors::new(factors, item_factors, &config.als))
        }
    };
    let knn = match r.u8()? {
        0 => None,
        _ => Some(ItemKnn {
            neighbours: r.csr(n_items, n_items)?,
        }),
    };
    if r.at != parameters.len() {
        return Err(r.corrupt("trailing bytes".into()));
    }
    let needs = match config.kind {
        ModelKind::Als => als.is_some(),
        ModelKind::ItemKnn => knn.is_some(),
        ModelKind::Blend => als.is_some() || knn.is_some(),
        ModelKind::Popularity => true,
    };
    if !needs {
        return Err(r.corrupt(format!("a {} model without its component", config.kind)));
    }
    Ok(Recommender {
        config,
        items: catalogue.items.clone(),
        item_creator: catalogue.item_creator.clone(),
        als,
        knn,
        popularity: Popularity::from_scores(scores),
        index: std::sync::OnceLock::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BuiltIn, InteractionsBuilder, RecommendOptions};

    fn registry() -> AlgorithmRegistry {
        BuiltIn::all()
            .into_iter()
            .fold(AlgorithmRegistry::new(), |r, a| {
                r.with(std::sync::Arc::new(a))
            })
    }

    fn trained(kind: ModelKind) -> (Model, Provenance, crate::Interactions) {
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
        let data = b.build().unwrap();
        let mut config = TrainConfig::for_kind(kind);
        config.als.factors = 4;
        config.als.iterations = 2;
        let model = Model::train(&BuiltIn::new(kind), &data, &BuiltIn::settings(&config)).unwrap();
        let prov = data
            .provenance(None, |_, c| {
                Region::parse(if c.unwrap().as_str() == "US" {
                    "us"
                } else {
                    "row"
                })
            })
            .unwrap();
        (model, prov, data)
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
            let (model, prov, data) = trained(kind);
            let (bytes, manifest) =
                encode_artifact(&model, &prov, Some(&key), &Screen::of(&data)).unwrap();
            let trusted = Trust::pinned(key.public_key());
            let loaded = decode_artifact(&bytes, "m", &trusted, &registry()).unwrap();
            assert_eq!(loaded.manifest, manifest);
            assert_eq!(
                loaded.signature,
                SignatureStatus::Trusted {
                    public_key: key.public_key()
                }
            );
            let names: Vec<&str> = manifest.trained_on.iter().map(Region::as_str).collect();
            assert_eq!(names, ["row", "us"]);
            let opts = RecommendOptions::top(5);
            let histories = model.histories(&data);
            assert_eq!(
                loaded.model.recommend(&histories, "u3", &opts).unwrap(),
                model.recommend(&histories, "u3", &opts).unwrap()
            );
            let (bytes, _) = encode_artifact(&model, &prov, None, &Screen::default()).unwrap();
            assert_eq!(
                decode_artifact(&bytes, "m", &Trust::allow_untrusted(), &registry())
                    .unwrap()
                    .signature,
                SignatureStatus::Unsigned
            );
        }
    }

    #[test]
    fn tampering_unsigned_foreign_and_forged_artifacts_are_refused() {
        let (model, prov, data) = trained(ModelKind::Als);
        let key = SigningKey::from_seed(&[7u8; 32]).unwrap();
        let other = SigningKey::from_seed(&[8u8; 32]).unwrap();
        let pinned = Trust::pinned(key.public_key());
        let (bytes, _) = encode_artifact(&model, &prov, Some(&key), &Screen::of(&data)).unwrap();
        // Flip one bit anywhere before the signature: always refused, whatever the trust.
        for at in [9, 20, 200, bytes.len() - 200] {
            let mut t = bytes.clone();
            t[at] ^= 0x10;
            for trust in [pinned, Trust::allow_untrusted(), pinned.or_untrusted()] {
                let err = decode_artifact(&t, "m", &trust, &registry()).unwrap_err();
                assert!(
                    matches!(
                        err,
                        RecsysError::BadSignature { .. } | RecsysError::UnsupportedVersion { .. }
                    ),
                    "byte {at}: {err}"
                );
            }
        }
        let err = decode_artifact(&bytes, "m", &Trust::pinned(other.public_key()), &registry())
            .unwrap_err();
        assert!(matches!(err, RecsysError::ForeignSigner { .. }), "{err}");
        // Trust must be stated: no pinned key and no permission is a refusal, even when signed.
        let err = decode_artifact(&bytes, "m", &Trust::default(), &registry()).unwrap_err();
        assert!(matches!(err, RecsysError::NoTrustedKey { .. }), "{err}");
        let (unsigned, _) = encode_artifact(&model, &prov, None, &Screen::default()).unwrap();
        let err = decode_artifact(&unsigned, "m", &pinned, &registry()).unwrap_err();
        assert!(matches!(err, RecsysError::Unsigned { .. }), "{err}");
        let err = decode_artifact(&unsigned, "m", &Trust::default(), &registry()).unwrap_err();
        assert!(matches!(err, RecsysError::NoTrustedKey { .. }), "{err}");

        // A forged provenance (a `row,us` model relabelled `us`), re-signed with another key: the
        // signature is valid under its own key, and that is exactly why it is refused.
        let mut forged = prov.clone();
        forged.trained_on = [Region::parse("us").unwrap()].into_iter().collect();
        let (forgery, _) =
            encode_artifact(&model, &forged, Some(&other), &Screen::default()).unwrap();
        let err = decode_artifact(&forgery, "m", &pinned, &registry()).unwrap_err();
        assert!(matches!(err, RecsysError::ForeignSigner { .. }), "{err}");
        // Allowed explicitly, it loads, and says it is untrusted.
        let loaded = decode_artifact(&forgery, "m", &pinned.or_untrusted(), &registry()).unwrap();
        assert_eq!(
            loaded.signature,
            SignatureStatus::Untrusted {
                public_key: other.public_key()
            }
        );
        assert!(!loaded.signature.is_trusted());

        // An unsigned artifact is still checked against its manifest.
        let mut t = unsigned.clone();
        let n = t.len();
        t[n - 10] ^= 1;
        assert!(matches!(
            decode_artifact(&t, "m", &Trust::allow_untrusted(), &registry()),
            Err(RecsysError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_artifact(b"hello", "m", &pinned, &registry()),
            Err(RecsysError::NotAnArtifact { .. })
        ));
        assert!(decode_artifact(&bytes[..bytes.len() - 1], "m", &pinned, &registry()).is_err());
    }

    #[test]
    fn artifacts_are_written_private() {
        use std::os::unix::fs::PermissionsExt;
        let (model, prov, _) = trained(ModelKind::Blend);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.domrec");
        write_artifact(&path, &model, &prov, None, &Screen::default()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
