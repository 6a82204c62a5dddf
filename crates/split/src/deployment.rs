//! A deployment on disk: one policy, and for each of its regions a sealed store, an audit log,
//! keys, and the Gate in front of them.
//!
//! ```text
//! <data>/deployment.json            which policy, which trust domain
//! <data>/migration.vkey             the pinned migration public key (base64), written at create
//! <data>/<region>/store/            sealed records (sled), or
//! <data>/<region>/store.postgres     where they are instead: a PostgreSQL region (see below)
//! <data>/<region>/audit/            the audit log
//! <data>/<region>/log.vkey          the log's verifier key (public: hand it to auditors)
//! <data>/<region>/approvals.json    approval requests and grants
//! <keys>/<region>/…                 the file custodian's keys
//! <keys>/<region>/audit/log.key     the log's checkpoint signing key (0600)
//! <keys>/<region>/audit/log.state   the latest checkpoint the log signed (refuses rollbacks)
//! <keys>/<region>/audit/pseudonym.key  the region's audit key for subject pseudonyms (0600)
//! <keys>/<region>/transfer.key      the key de-identifying excepted data that leaves (0600)
//! <keys>/<region>/database.json     where the region's records are, if not on sled (0600)
//! ```
//!
//! # A region on PostgreSQL
//!
//! With the cargo feature `postgres`, a region can keep its sealed records in a PostgreSQL
//! database (in the schema `domicile_<region>`) instead of `<data>/<region>/store/`. The
//! operator names the database once, when the region is created — `domicile init` or
//! `domicile split run` with `--database-url REGION=URL` (and `--database-ca REGION=PEM` for
//! TLS checked against those roots), or [`configure_database`] from a library — and it is kept
//! in `<keys>/<region>/database.json` (0600, beside the region's other secrets, since the URL
//! may hold a password), so every later command finds it. `DOMICILE_DATABASE_URL_<REGION>`
//! (`DOMICILE_DATABASE_URL_US` for `us`; `-` becomes `_`) and `DOMICILE_DATABASE_CA_<REGION>`
//! override the file for one process. Every other region stays on sled, so a split can move a
//! sled `global` into PostgreSQL `us` and `row`. The URL is never written under the data
//! directory; the region's data directory gets `store.postgres`, naming the schema, so that
//! opening the region later without its database (or in a build without the feature) is an
//! error instead of an empty sled store, and naming a database for a region that already has a
//! sled store is refused likewise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use domicile_access::{
    ApprovalBook, Gate, Principal, PrincipalDirectory, PrincipalKind, SystemClock,
};
use domicile_audit::{AuditKey, AuditLog, KeyKind, LogConfig, SigningKey, VerifierKey};
use domicile_residency::{PolicyResolver, Region, ResidencyPolicy};
use domicile_store::{FileCustodian, KeyCustodian, RedbBackend, SealedStore};
use serde::{Deserialize, Serialize};

use crate::SplitError;

/// The file naming a deployment's policy, in the data root.
pub const MANIFEST: &str = "deployment.json";

/// The file in the keys root holding the manifest(s) the keys are bound to.
pub const MANIFEST_BINDING: &str = "deployment.binding";

/// What `deployment.binding` holds: the manifest the keys directory is bound to, or during a
/// split's switch both the one before and the one after (so that a crash between the two writes
/// leaves a deployment that opens). The keys directory is the side an operator keeps apart and
/// guards; the data directory's manifest is checked against it like any other input.
#[derive(Debug, Serialize, Deserialize)]
struct Binding {
    format: u32,
    manifests: Vec<Manifest>,
}

/// The manifests the keys at `keys_root` are bound to, or `None` if they are bound to none.
fn read_binding(keys_root: &Path) -> Result<Option<Binding>, SplitError> {
    let path = keys_root.join(MANIFEST_BINDING);
    let not_bound = |detail: String| SplitError::ManifestNotBound {
        keys: keys_root.to_owned(),
        detail,
    };
    let Some(bytes) = domicile_durable::read_optional(&path)? else {
        return Ok(None);
    };
    let binding: Binding = serde_json::from_slice(&bytes).map_err(|e| {
        not_bound(format!(
            "{} does not parse ({:?} error at line {} column {})",
            path.display(),
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    if binding.format != 1 {
        return Err(not_bound(format!(
            "{} is in format {}, which this version does not read (it writes 1)",
            path.display(),
            binding.format
        )));
    }
    Ok(Some(binding))
}

/// Binds the keys at `keys_root` to `manifests` (written 0600, crash-safe).
pub(crate) fn bind_manifests(keys_root: &Path, manifests: &[&Manifest]) -> Result<(), SplitError> {
    let binding = Binding {
        format: 1,
        manifests: manifests.iter().map(|m| (*m).clone()).collect(),
    };
    let json = serde_json::to_vec_pretty(&binding).expect("a binding serialises");
    write_private(&keys_root.join(MANIFEST_BINDING), &json)
}

fn describe(m: &Manifest) -> String {
    let regions: Vec<&str> = m.keys.keys().map(String::as_str).collect();
    format!(
        "policy {:?} in trust domain {:?} (regions {})",
        m.policy,
        m.trust_domain,
        regions.join(", ")
    )
}

/// What `deployment.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The policy's name (`global`, `us-split`).
    pub policy: String,
    /// The SPIFFE trust domain of the deployment's principals.
    pub trust_domain: String,
    /// Per region, the fingerprints of the keys the deployment was created with: opening it
    /// with any other keys directory is [`SplitError::KeysMismatch`]. Empty in a manifest
    /// written before store format 2, which is refused.
    #[serde(default)]
    pub keys: BTreeMap<String, KeyPrints>,
}

/// The fingerprints binding a region's data to its keys (none reveals a key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPrints {
    /// The custodian's index and pseudonym key ([`domicile_store::PseudonymKey::fingerprint`]);
    /// every backend key of the region's store is derived from it.
    pub index: String,
    /// SHA-256 of the log signing key file, first 16 bytes in hex.
    pub log: String,
    /// SHA-256 of the audit pseudonym key file, first 16 bytes in hex.
    pub audit: String,
}

/// The path of `region`'s migration principal under the deployment's trust domain
/// (`spiffe://<trust domain><path>`): how its entries are told apart in a log.
pub(crate) fn migration_principal_path(region: &str) -> String {
    format!("/{region}/domicile/migration")
}

fn file_print(path: &Path) -> Result<Option<String>, SplitError> {
    let Some(bytes) = domicile_durable::read_secret(path)? else {
        return Ok(None);
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    Ok(Some(
        digest.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    ))
}

/// One region of a deployment.
#[derive(Debug)]
pub struct RegionNode {
    /// The region.
    pub region: Region,
    /// The only door to its store.
    pub gate: Arc<Gate>,
    /// The verifier key of its audit log.
    pub verifier: VerifierKey,
    /// Where its audit log lives.
    pub log_dir: PathBuf,
}

/// A deployment: a policy and every one of its regions, opened.
pub struct Deployment {
    data_root: PathBuf,
    keys_root: PathBuf,
    policy: Arc<dyn ResidencyPolicy>,
    trust_domain: String,
    custodian: Arc<FileCustodian>,
    regions: BTreeMap<Region, RegionNode>,
}

/// Writes `bytes` to `path` with mode 0600, atomically and durably (see `domicile_durable`).
pub(crate) fn write_private_bytes(path: &Path, bytes: &[u8]) -> Result<(), SplitError> {
    write_private(path, bytes)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SplitError> {
    Ok(domicile_durable::write_private(path, bytes)?)
}

fn read_text(path: &Path) -> Result<Option<String>, SplitError> {
    Ok(domicile_durable::read_optional_string(path)?)
}

fn signing_key(path: &Path, origin: &str) -> Result<SigningKey, SplitError> {
    let bad = |detail: String| SplitError::Key {
        path: path.to_owned(),
        detail,
    };
    match domicile_durable::read_secret(path)?.map(|b| String::from_utf8_lossy(&b).into_owned()) {
        Some(text) => {
            let key = SigningKey::parse(&text).map_err(|e| bad(e.to_string()))?;
            if key.name() != origin {
                return Err(bad(format!(
                    "it signs for {:?}, not this region's log {origin:?}",
                    key.name()
                )));
            }
            Ok(key)
        }
        None => {
            let key =
                SigningKey::generate(origin, KeyKind::Ed25519).map_err(|e| bad(e.to_string()))?;
            domicile_durable::create_private(path, key.to_private_text().as_bytes())?;
            Ok(key)
        }
    }
}

/// The region's transfer key (what de-identifies excepted data leaving it), kept per deployment
/// so that a transfer pseudonym is the same across restarts: read, or created (0600) on first use.
fn transfer_key(region_keys: &Path) -> Result<[u8; 32], SplitError> {
    let path = &region_keys.join("transfer.key");
    let bad = |detail: String| SplitError::Key {
        path: path.to_owned(),
        detail,
    };
    if let Some(bytes) = domicile_durable::read_secret(path)? {
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        let mut key = [0u8; 32];
        if text.len() != 64 || !text.is_ascii() {
            return Err(bad("it is not 64 hex digits".into()));
        }
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| bad("it is not 64 hex digits".into()))?;
        }
        return Ok(key);
    }
    let mut key = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
        .map_err(|_| bad("the system's random source failed".into()))?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    domicile_durable::create_private_dir(region_keys)?;
    domicile_durable::create_private(path, format!("{hex}\n").as_bytes())?;
    Ok(key)
}

fn audit_key(path: &Path) -> Result<AuditKey, SplitError> {
    let bad = |detail: String| SplitError::Key {
        path: path.to_owned(),
        detail,
    };
    match domicile_durable::read_secret(path)?.map(|b| String::from_utf8_lossy(&b).into_owned()) {
        Some(text) => AuditKey::parse(&text).map_err(|e| bad(e.to_string())),
        None => {
            let key = AuditKey::generate().map_err(|e| bad(e.to_string()))?;
            domicile_durable::create_private(path, format!("{}\n", key.to_hex()).as_bytes())?;
            Ok(key)
        }
    }
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("data_root", &self.data_root)
            .field("policy", &self.policy.id().to_string())
            .field("regions", &self.regions.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Deployment {
    /// Creates (or reopens) the deployment at `data_root` under `policy`, writing its manifest.
    /// A data root that already holds a deployment under another policy is refused.
    pub fn create(
        data_root: impl AsRef<Path>,
        keys_root: impl AsRef<Path>,
        policy: Arc<dyn ResidencyPolicy>,
        trust_domain: &str,
    ) -> Result<Self, SplitError> {
        let data_root = data_root.as_ref();
        let path = data_root.join(MANIFEST);
        let name = policy.id().name.as_str().to_owned();
        let name = name.as_str();
        let keys_root = keys_root.as_ref();
        let deployment = match Self::manifest(data_root)? {
            Some(found) if found.policy != name || found.trust_domain != trust_domain => {
                return Err(SplitError::Manifest {
                    path,
                    detail: format!(
                    "it names policy {:?} in trust domain {:?}, not {name:?} in {trust_domain:?}",
                    found.policy, found.trust_domain
                ),
                })
            }
            Some(found) => {
                let bound = Self::check_keys_to_bind(keys_root, &found)?;
                for region in policy.regions() {
                    Self::check_store_present(data_root, keys_root, region)?;
                }
                // A deployment created before manifests were bound is bound now: the operator
                // named its policy and trust domain, its keys match and its stores are there.
                if !bound {
                    bind_manifests(keys_root, &[&found])?;
                }
                Self::open_existing(data_root, keys_root, policy, trust_domain, None)?
            }
            None => {
                // Keys bound to another deployment are not taken over (that one would no longer
                // open); a rerun after a crash before the manifest was written finds its own.
                if let Some(binding) = read_binding(keys_root)? {
                    let regions = policy.regions().iter().map(|r| r.as_str());
                    let ours =
                        Self::read_key_prints(keys_root, regions)
                            .ok()
                            .map(|keys| Manifest {
                                policy: name.to_owned(),
                                trust_domain: trust_domain.to_owned(),
                                keys,
                            });
                    if !ours.is_some_and(|m| binding.manifests.contains(&m)) {
                        let bound: Vec<String> = binding.manifests.iter().map(describe).collect();
                        return Err(SplitError::ManifestNotBound {
                            keys: keys_root.to_owned(),
                            detail: format!(
                                "the keys are bound to another deployment ({}); a new \
                                 deployment needs a keys directory of its own",
                                bound.join(" or ")
                            ),
                        });
                    }
                }
                // The one place keys are created: an explicit initialisation.
                let deployment = Self::open_with(data_root, keys_root, policy, trust_domain)?;
                let manifest = Manifest {
                    policy: name.to_owned(),
                    trust_domain: trust_domain.to_owned(),
                    keys: deployment.key_prints()?,
                };
                let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
                // The keys are bound first: a crash before the manifest is written leaves a
                // binding that the rerun writes again.
                bind_manifests(keys_root, &[&manifest])?;
                write_private(&path, &json)?;
                deployment
            }
        };
        // Pin the migration key now, so that a split report is later checked against a key
        // fixed before any split ran, not against the key written inside the report.
        if crate::report::pinned_migration_key(data_root)?.is_none() {
            let key = crate::MigrationKey::load_or_create(&keys_root.join("migration.key"))?;
            crate::report::pin_migration_key(data_root, &key)?;
            deployment.trust_pinned_migration_key()?;
        }
        Ok(deployment)
    }

    /// The fingerprints of the keys of the regions of `keys_root` named, read without creating
    /// anything; a region without a key is [`SplitError::KeysMismatch`] (`missing`).
    pub fn read_key_prints<'a>(
        keys_root: &Path,
        regions: impl IntoIterator<Item = &'a str>,
    ) -> Result<BTreeMap<String, KeyPrints>, SplitError> {
        let mut out = BTreeMap::new();
        for region in regions {
            let missing = |which| SplitError::KeysMismatch {
                keys: keys_root.to_owned(),
                region: region.to_owned(),
                which,
                detail: "missing".into(),
            };
            let parsed = Region::parse(region)?;
            let index = FileCustodian::region_fingerprint(keys_root, &parsed)?
                .ok_or_else(|| missing("index key"))?;
            let audit_dir = keys_root.join(region).join("audit");
            let log = file_print(&audit_dir.join("log.key"))?
                .ok_or_else(|| missing("log signing key"))?;
            let audit = file_print(&audit_dir.join("pseudonym.key"))?
                .ok_or_else(|| missing("audit key"))?;
            out.insert(region.to_owned(), KeyPrints { index, log, audit });
        }
        Ok(out)
    }

    /// The fingerprints of this deployment's keys, per region, for its manifest.
    pub fn key_prints(&self) -> Result<BTreeMap<String, KeyPrints>, SplitError> {
        Self::read_key_prints(&self.keys_root, self.regions.keys().map(|r| r.as_str()))
    }

    /// Checks that `keys_root` holds the keys `manifest` was written with and is bound to
    /// `manifest` itself ([`SplitError::ManifestNotBound`] if the manifest was edited or
    /// restored from an older copy), creating nothing.
    pub fn check_keys(keys_root: &Path, manifest: &Manifest) -> Result<(), SplitError> {
        Self::check_key_prints(keys_root, manifest)?;
        Self::check_binding(keys_root, manifest, false).map(|_| ())
    }

    /// Like [`check_keys`](Self::check_keys), but a keys directory bound to no manifest yet
    /// (created before manifests were bound) passes: what `domicile init` checks before it
    /// binds an existing deployment. Returns whether the keys are bound already.
    pub fn check_keys_to_bind(keys_root: &Path, manifest: &Manifest) -> Result<bool, SplitError> {
        Self::check_key_prints(keys_root, manifest)?;
        Self::check_binding(keys_root, manifest, true)
    }

    /// Whether the keys at `keys_root` are bound to `manifest`: `Ok(true)` if so, `Ok(false)` if
    /// they are bound to none and `unbound_ok`, an error otherwise.
    fn check_binding(
        keys_root: &Path,
        manifest: &Manifest,
        unbound_ok: bool,
    ) -> Result<bool, SplitError> {
        let path = keys_root.join(MANIFEST_BINDING);
        let not_bound = |detail: String| SplitError::ManifestNotBound {
            keys: keys_root.to_owned(),
            detail,
        };
        let Some(binding) = read_binding(keys_root)? else {
            return match unbound_ok {
                true => Ok(false),
                false => Err(not_bound(format!(
                    "the keys are bound to no manifest ({} is missing; a deployment created \
                     before manifests were bound has none): run `domicile init --policy {} \
                     --trust-domain {} --data DIR --keys {}` to bind these keys to it",
                    path.display(),
                    manifest.policy,
                    manifest.trust_domain,
                    keys_root.display()
                ))),
            };
        };
        if binding.manifests.contains(manifest) {
            return Ok(true);
        }
        let bound: Vec<String> = binding.manifests.iter().map(describe).collect();
        Err(not_bound(format!(
            "the keys are bound to {}, and the manifest names {}: it was edited or restored \
             from an older copy; put back the manifest the keys are bound to",
            bound.join(" or "),
            describe(manifest)
        )))
    }

    /// Checks that `keys_root` holds the keys `manifest` names, by their fingerprints.
    fn check_key_prints(keys_root: &Path, manifest: &Manifest) -> Result<(), SplitError> {
        if manifest.keys.is_empty() {
            return Err(SplitError::Manifest {
                path: PathBuf::from(MANIFEST),
                detail: "it binds no keys: it was written by a domicile older than store format 2, whose stores hold record keys in the clear; this build does not open them (create a new deployment with `domicile init` and re-ingest)".into(),
            });
        }
        let found = Self::read_key_prints(keys_root, manifest.keys.keys().map(String::as_str))?;
        for (region, expected) in &manifest.keys {
            let got = &found[region];
            for (which, e, g) in [
                ("index key", &expected.index, &got.index),
                ("log signing key", &expected.log, &got.log),
                ("audit key", &expected.audit, &got.audit),
            ] {
                if e != g {
                    return Err(SplitError::KeysMismatch {
                        keys: keys_root.to_owned(),
                        region: region.clone(),
                        which,
                        detail: format!("fingerprint {g} where the manifest has {e}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Refuses to open `region` of an existing deployment whose sealed store is gone: every
    /// region a manifest names got its store when it was created (`init`, or the split that
    /// added it), so a store directory that is missing now was removed or moved, and opening
    /// would create an empty one in its place and answer "not found" for every record it held.
    /// A region on PostgreSQL (named in the keys directory or the environment) is checked by
    /// its database's own schema instead.
    pub(crate) fn check_store_present(
        data_root: &Path,
        keys_root: &Path,
        region: &Region,
    ) -> Result<(), SplitError> {
        let region_dir = data_root.join(region.as_str());
        let store = SealedStore::store_dir(data_root, region);
        if store.exists()
            || region_dir.join(POSTGRES_MARKER).exists()
            || region_database(keys_root, region)?.is_some()
        {
            return Ok(());
        }
        Err(SplitError::Store(Box::new(
            domicile_store::StoreError::StoreMismatch {
                path: region_dir,
                reason: format!(
                    "region {region}'s store {} is missing, though the deployment created it: it \
                     was removed or moved; restore it (opening would create an empty store in \
                     its place and hide every record it held)",
                    store.display()
                ),
            },
        )))
    }

    /// The manifest at `data_root`, or `None` if there is no deployment there.
    pub fn manifest(data_root: &Path) -> Result<Option<Manifest>, SplitError> {
        let path = data_root.join(MANIFEST);
        let Some(text) = read_text(&path)? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| SplitError::Manifest {
                path,
                detail: e.to_string(),
            })
    }

    /// Opens the deployment at `data_root` under the policy its manifest names, which `policies`
    /// (the binary's list) must know.
    pub fn open(
        data_root: impl AsRef<Path>,
        keys_root: impl AsRef<Path>,
        policies: &PolicyResolver,
    ) -> Result<Self, SplitError> {
        let data_root = data_root.as_ref();
        let manifest = Self::manifest(data_root)?.ok_or_else(|| SplitError::Manifest {
            path: data_root.join(MANIFEST),
            detail: "there is no deployment here (no manifest)".into(),
        })?;
        // Before anything is opened: a wrong keys directory creates no file.
        Self::check_keys(keys_root.as_ref(), &manifest)?;
        let policy = policies.resolve(&manifest.policy)?;
        for region in policy.regions() {
            Self::check_store_present(data_root, keys_root.as_ref(), region)?;
        }
        Self::open_existing(data_root, keys_root, policy, &manifest.trust_domain, None)
    }

    /// Opens one region of the deployment at `data_root`, and only that one: what a region's
    /// node (`domicile serve`) holds, so that each region of a deployment can be served by its
    /// own process (a region's store, log and data keys have one holder at a time). The other
    /// regions are not opened: [`regions`](Self::regions) yields this one alone.
    pub fn open_region(
        data_root: impl AsRef<Path>,
        keys_root: impl AsRef<Path>,
        policies: &PolicyResolver,
        region: &Region,
    ) -> Result<Self, SplitError> {
        let data_root = data_root.as_ref();
        let manifest = Self::manifest(data_root)?.ok_or_else(|| SplitError::Manifest {
            path: data_root.join(MANIFEST),
            detail: "there is no deployment here (no manifest)".into(),
        })?;
        Self::check_keys(keys_root.as_ref(), &manifest)?;
        let policy = policies.resolve(&manifest.policy)?;
        policy.check_region(region)?;
        Self::check_store_present(data_root, keys_root.as_ref(), region)?;
        Self::open_existing(
            data_root,
            keys_root,
            policy,
            &manifest.trust_domain,
            Some(region),
        )
    }

    /// Opens `region`'s sealed store alone, without its Gate or log, for maintenance
    /// (`domicile store check`, `domicile store reindex`): the deployment's manifest and keys are
    /// checked as [`open_region`](Self::open_region) checks them, and nothing is created.
    pub fn open_region_store(
        data_root: impl AsRef<Path>,
        keys_root: impl AsRef<Path>,
        policies: &PolicyResolver,
        region: &Region,
    ) -> Result<SealedStore, SplitError> {
        let (data_root, keys_root) = (data_root.as_ref(), keys_root.as_ref());
        let manifest = Self::manifest(data_root)?.ok_or_else(|| SplitError::Manifest {
            path: data_root.join(MANIFEST),
            detail: "there is no deployment here (no manifest)".into(),
        })?;
        Self::check_keys(keys_root, &manifest)?;
        let policy = policies.resolve(&manifest.policy)?;
        policy.check_region(region)?;
        let region_dir = data_root.join(region.as_str());
        if !SealedStore::store_dir(data_root, region).exists()
            && !region_dir.join(POSTGRES_MARKER).exists()
        {
            // Opening would create an empty store and report nothing to repair.
            return Err(SplitError::Store(Box::new(
                domicile_store::StoreError::StoreMismatch {
                    path: region_dir,
                    reason: format!("region {region} has no store here (none on sled, none named in PostgreSQL)"),
                },
            )));
        }
        let custodian = Arc::new(FileCustodian::open_existing(keys_root)?);
        open_store(
            data_root,
            keys_root,
            region,
            policy,
            custodian,
            Existing::Required,
        )
    }

    /// Opens the regions of an existing deployment (all, or `only` one): their stores must be
    /// there ([`Existing::Required`]).
    fn open_existing(
        data_root: impl AsRef<Path>,
        keys_root: impl AsRef<Path>,
        policy: Arc<dyn ResidencyPolicy>,
        trust_domain: &str,
        only: Option<&Region>,
    ) -> Result<Self, SplitError> {
        let existing = Existing::Required;
        Self::open_regions(data_root, keys_root, policy, trust_domain, only, existing)
    }

    /// Opens every region of `policy` under `data_root`, creating stores, logs and keys on
    /// first use.
    pub fn open_with(
        data_root: impl AsRef<Path>,
        keys_root: impl AsRef<Path>,
        policy: Arc<dyn ResidencyPolicy>,
        trust_domain: &str,
    ) -> Result<Self, SplitError> {
        Self::open_regions(
            data_root,
            keys_root,
            policy,
            trust_domain,
            None,
            Existing::Created,
        )
    }

    /// Opens the regions of `policy` (all of them, or `only` one) under `data_root`.
    fn open_regions(
        data_root: impl AsRef<Path>,
        keys_root: impl AsRef<Path>,
        policy: Arc<dyn ResidencyPolicy>,
        trust_domain: &str,
        only: Option<&Region>,
        existing: Existing,
    ) -> Result<Self, SplitError> {
        let data_root = data_root.as_ref().to_owned();
        let keys_root = keys_root.as_ref().to_owned();
        for region in policy.regions() {
            domicile_access::SpiffeId::parse(&format!(
                "spiffe://{trust_domain}/{region}/domicile/migration"
            ))?;
        }
        let custodian = Arc::new(FileCustodian::open(&keys_root)?);
        let mut regions = BTreeMap::new();
        for region in policy.regions() {
            if only.is_some_and(|only| only != region) {
                continue;
            }
            let store = open_store(
                &data_root,
                &keys_root,
                region,
                policy.clone(),
                custodian.clone() as Arc<dyn KeyCustodian>,
                existing,
            )?;
            let region_keys = keys_root.join(region.as_str()).join("audit");
            let origin = format!("{trust_domain}/audit/{region}");
            let signing = signing_key(&region_keys.join("log.key"), &origin)?;
            let verifier = signing.verifier();
            let region_data = data_root.join(region.as_str());
            let vkey_path = region_data.join("log.vkey");
            if read_text(&vkey_path)?.as_deref() != Some(format!("{}\n", verifier).as_str()) {
                // Public: auditors are handed this file (mode 0644).
                domicile_durable::write_public(&vkey_path, format!("{}\n", verifier).as_bytes())?;
            }
            let log_dir = region_data.join("audit");
            let mut config = LogConfig::new(signing);
            // The signer remembers its latest checkpoint beside its key, apart from the data,
            // so a log cut back in the data directory is refused rather than re-signed.
            config.signed_state = Some(region_keys.join("log.state"));
            let log = AuditLog::open(&log_dir, config)?;
            let gate = Gate::new(
                Arc::new(store),
                Arc::new(log),
                audit_key(&region_keys.join("pseudonym.key"))?,
                ApprovalBook::open(region_data.join("approvals.json"))?,
                Arc::new(SystemClock),
            )?
            .with_transfer_key(transfer_key(&keys_root.join(region.as_str()))?);
            regions.insert(
                region.clone(),
                RegionNode {
                    region: region.clone(),
                    gate: Arc::new(gate),
                    verifier,
                    log_dir,
                },
            );
        }
        let deployment = Deployment {
            data_root,
            keys_root,
            policy,
            trust_domain: trust_domain.to_owned(),
            custodian,
            regions,
        };
        deployment.trust_pinned_migration_key()?;
        // Trust nobody but the deployment's own migration principals until the operator's
        // directory is given.
        deployment.set_directory(PrincipalDirectory::empty())?;
        Ok(deployment)
    }

    /// Lets every region's Gate honour the warrants of the migration key pinned in
    /// `<data>/migration.vkey` (none pinned: the Gates honour none).
    fn trust_pinned_migration_key(&self) -> Result<(), SplitError> {
        if let Some(pinned) = crate::report::pinned_migration_key(&self.data_root)? {
            for node in self.regions.values() {
                node.gate.trust_migration_key(&pinned)?;
            }
        }
        Ok(())
    }

    /// Gives every region's Gate the operator's principal directory, to which the deployment's
    /// own migration principals are added.
    pub fn set_directory(&self, mut directory: PrincipalDirectory) -> Result<(), SplitError> {
        for region in self.regions.keys() {
            let own = self.migration_principal(region);
            if directory.principal(&own.id).is_none() {
                directory.insert(own)?;
            }
        }
        for node in self.regions.values() {
            node.gate.set_directory(directory.clone());
        }
        Ok(())
    }

    /// The data root.
    pub fn data_root(&self) -> &Path {
        &self.data_root
    }

    /// The keys root.
    pub fn keys_root(&self) -> &Path {
        &self.keys_root
    }

    /// The policy in force.
    pub fn policy(&self) -> &Arc<dyn ResidencyPolicy> {
        &self.policy
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The key custodian every region of this deployment uses.
    pub fn custodian(&self) -> &Arc<FileCustodian> {
        &self.custodian
    }

    /// Every region, in order.
    pub fn regions(&self) -> impl Iterator<Item = &RegionNode> {
        self.regions.values()
    }

    /// One region.
    pub fn region(&self, region: &Region) -> Option<&RegionNode> {
        self.regions.get(region)
    }

    /// The migration service principal of `region`: `spiffe://<trust-domain>/<region>/domicile/migration`,
    /// located where the policy says the region is operated from, so each region's log records
    /// an actor in that region.
    pub fn migration_principal(&self, region: &Region) -> Principal {
        let location = self
            .policy
            .region_location(region)
            .expect("a migration principal is asked for a region of the deployment's policy");
        Principal::parse(
            &format!(
                "spiffe://{}{}",
                self.trust_domain,
                migration_principal_path(region.as_str())
            ),
            PrincipalKind::Service,
            ("domicile", location.as_str()),
            location.as_str(),
            location.as_str(),
            &["migration-service"],
        )
        .expect("a migration principal built from a valid trust domain and region")
    }

    /// Signs a final checkpoint in every region's log and closes them.
    pub fn close(&self) -> Result<(), SplitError> {
        for node in self.regions.values() {
            node.gate.log().close()?;
        }
        Ok(())
    }
}

/// The environment variable naming `region`'s database, and the one naming its TLS roots.
fn database_vars(region: &Region) -> (String, String) {
    let name = region.as_str().to_ascii_uppercase().replace('-', "_");
    (
        format!("DOMICILE_DATABASE_URL_{name}"),
        format!("DOMICILE_DATABASE_CA_{name}"),
    )
}

/// The file that says a region's records are in PostgreSQL, not in `<data>/<region>/store/`.
const POSTGRES_MARKER: &str = "store.postgres";

/// The file, in `<keys>/<region>/`, naming the region's database.
pub const DATABASE_FILE: &str = "database.json";

/// Where a region's sealed records are kept when they are not on sled: a PostgreSQL database.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseConfig {
    /// The connection URL (`postgresql://user:password@host:port/db?sslmode=require`). It may
    /// hold a password, so it is kept in the keys directory and never printed.
    pub url: String,
    /// PEM roots the server's certificate must chain to; with them the connection is TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &"<redacted>")
            .field("ca", &self.ca)
            .finish()
    }
}

/// Names the PostgreSQL database that `region`'s sealed records go to, in
/// `<keys_root>/<region>/database.json` (0600). Called before the region is first opened
/// (`Deployment::create`, or `split::run` for a split's new regions). Refused, writing nothing,
/// for a region that already keeps its records on sled under `data_root`, and for a region
/// already configured with a different database.
pub fn configure_database(
    data_root: &Path,
    keys_root: &Path,
    region: &Region,
    config: &DatabaseConfig,
) -> Result<(), SplitError> {
    if config.url.trim().is_empty() {
        return Err(SplitError::Database {
            region: region.to_string(),
            detail: "the database URL is empty".into(),
        });
    }
    let region_dir = data_root.join(region.as_str());
    if region_dir.join("store").exists() && !region_dir.join(POSTGRES_MARKER).exists() {
        return Err(SplitError::Database {
            region: region.to_string(),
            detail: format!(
                "the region already keeps its records on sled in {}; they do not move to a \
                 database by naming one (split into a new deployment instead)",
                region_dir.join("store").display()
            ),
        });
    }
    let dir = keys_root.join(region.as_str());
    let path = dir.join(DATABASE_FILE);
    if let Some(found) = read_database_file(&path, region)? {
        if &found == config {
            return Ok(());
        }
        return Err(SplitError::Database {
            region: region.to_string(),
            detail: format!(
                "{} already names another database; a region's records do not move between \
                 databases by reconfiguring it",
                path.display()
            ),
        });
    }
    domicile_durable::create_private_dir(keys_root)?;
    domicile_durable::create_private_dir(&dir)?;
    let json = serde_json::to_vec_pretty(config).expect("a database config serialises");
    write_private(&path, &json)
}

fn read_database_file(path: &Path, region: &Region) -> Result<Option<DatabaseConfig>, SplitError> {
    let Some(bytes) = domicile_durable::read_secret(path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| SplitError::Database {
            region: region.to_string(),
            // A serde error may quote the file, and the file holds a password: say where only.
            detail: format!(
                "{} is not a database configuration (line {}, column {})",
                path.display(),
                e.line(),
                e.column()
            ),
        })
}

/// The database `region` is configured with: its environment variables if set, else
/// `<keys>/<region>/database.json`, else none (sled).
fn region_database(
    keys_root: &Path,
    region: &Region,
) -> Result<Option<(DatabaseConfig, String)>, SplitError> {
    let (url_var, ca_var) = database_vars(region);
    if let Some(url) = std::env::var(&url_var).ok().filter(|u| !u.is_empty()) {
        let ca = std::env::var_os(&ca_var)
            .filter(|c| !c.is_empty())
            .map(PathBuf::from);
        return Ok(Some((DatabaseConfig { url, ca }, url_var)));
    }
    let path = keys_root.join(region.as_str()).join(DATABASE_FILE);
    Ok(read_database_file(&path, region)?.map(|c| (c, path.display().to_string())))
}

/// Whether a store being opened must already hold a sealed store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    /// A region of an existing deployment: its store was made when the region was, so a backend
    /// without one (an empty directory in its place, a database URL naming another database, a
    /// dropped schema) is refused rather than made a new, empty store.
    Required,
    /// A deployment or region being created (`create`, a split's target regions): a new store is
    /// made where there is none.
    Created,
}

/// Refuses `backend` for `region` if `existing` requires a store and it holds none.
fn check_holds_store(
    backend: &dyn domicile_store::Backend,
    existing: Existing,
    region: &Region,
    place: &dyn std::fmt::Display,
    region_dir: &Path,
) -> Result<(), SplitError> {
    if existing == Existing::Created || SealedStore::holds_store(backend)? {
        return Ok(());
    }
    Err(SplitError::Store(Box::new(
        domicile_store::StoreError::StoreMismatch {
            path: region_dir.to_owned(),
            reason: format!(
                "{place} holds no sealed store, though region {region}'s was made there: it was \
                 replaced by an empty one, or the database named is another one, or its schema \
                 was dropped; restore it (or, if a split was interrupted while purging this \
                 region, run the split again)"
            ),
        },
    )))
}

/// Opens `region`'s sealed store: in PostgreSQL if a database is configured for it (feature
/// `postgres`), else on sled under `data_root`; refuses a region whose records are in the other,
/// and, where `existing` requires one, a backend that holds no store.
fn open_store(
    data_root: &Path,
    keys_root: &Path,
    region: &Region,
    policy: Arc<dyn ResidencyPolicy>,
    custodian: Arc<dyn KeyCustodian>,
    existing: Existing,
) -> Result<SealedStore, SplitError> {
    let (url_var, _) = database_vars(region);
    let region_dir = data_root.join(region.as_str());
    let marker = region_dir.join(POSTGRES_MARKER);
    let mismatch = |reason: String| {
        SplitError::Store(Box::new(domicile_store::StoreError::StoreMismatch {
            path: region_dir.clone(),
            reason,
        }))
    };
    let Some((database, source)) = region_database(keys_root, region)? else {
        if marker.exists() {
            return Err(mismatch(format!(
                "region {region}'s records are in PostgreSQL ({}), but no database is named \
                 for it: restore {} in the keys directory or set {url_var}, in a build with \
                 the `postgres` feature",
                marker.display(),
                Path::new(region.as_str()).join(DATABASE_FILE).display()
            )));
        }
        // A store directory that holds a redb database is opened as one; anything else (a
        // new directory included) is sled, the default.
        policy.check_region(region)?;
        let dir = SealedStore::store_dir(data_root, region);
        let backend: Box<dyn domicile_store::Backend> = if dir.join(RedbBackend::FILE_NAME).exists()
        {
            Box::new(RedbBackend::open(&dir)?)
        } else {
            Box::new(domicile_store::SledBackend::open(&dir)?)
        };
        check_holds_store(
            backend.as_ref(),
            existing,
            region,
            &dir.display(),
            &region_dir,
        )?;
        return Ok(SealedStore::with_backend(
            backend,
            region.clone(),
            policy,
            custodian,
        )?);
    };
    if region_dir.join("store").exists() && !marker.exists() {
        return Err(mismatch(format!(
            "{source} names a database, but region {region} already keeps its records on sled \
             in {}: remove that setting, or split into a new deployment",
            region_dir.join("store").display()
        )));
    }
    #[cfg(feature = "postgres")]
    {
        let schema = format!("domicile_{}", region.as_str().replace('-', "_"));
        let mut config = domicile_store::PostgresConfig::new(&database.url)?.schema(&schema)?;
        if let Some(ca) = &database.ca {
            config = config.tls_root_certificates(ca)?;
        }
        let backend = domicile_store::PostgresBackend::connect(&config)?;
        // The marker says the region's store was made in PostgreSQL: its schema must hold it.
        let existing = match marker.exists() {
            true => Existing::Required,
            false => existing,
        };
        check_holds_store(
            &backend,
            existing,
            region,
            &format_args!("schema {schema} of the database {source} names"),
            &region_dir,
        )?;
        // The store's metadata is written before the marker: a crash between them leaves a
        // store the marker is then written for, never a marker without a store.
        let store =
            SealedStore::with_backend(Box::new(backend), region.clone(), policy, custodian)?;
        if !marker.exists() {
            std::fs::create_dir_all(&region_dir)
                .map_err(|e| domicile_store::StoreError::Io {
                    action: "create",
                    path: region_dir.clone(),
                    source: e,
                })
                .map_err(Box::new)?;
            domicile_durable::write_public(
                &marker,
                format!("postgres\nschema {schema}\n").as_bytes(),
            )?;
        }
        Ok(store)
    }
    #[cfg(not(feature = "postgres"))]
    {
        let _ = database;
        Err(mismatch(format!(
            "{source} names a database for region {region}, but this build has no PostgreSQL \
             backend (cargo feature `postgres` of domicile-split)"
        )))
    }
}
