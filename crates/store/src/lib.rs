//! Sealed records for domicile: envelope encryption, per-subject data keys, crypto-shredding,
//! key rotation and residency-checked placement, on sled.
//!
//! Every personal record of a region rests in a [`SealedStore`]. Whoever runs the disks sees
//! only ciphertext: each record is sealed with AES-256-GCM under its subject's **data key**,
//! with an AAD that binds it to its region, class, collection, key and subject, so it opens
//! nowhere else. Data keys live with a [`KeyCustodian`] (the [`FileCustodian`] by default), in a
//! directory apart from the data, wrapped under the region's versioned key-encryption key
//! (the file custodian keeps them in one redb key store per region, committed a batch at a time,
//! held by one process at a time). Destroying a subject's data key — [`SealedStore::shred_subject`] — makes every copy of their
//! records unreadable, including backups of the data directory taken before;
//! [`KeyCustodian::finalize_shreds`] then retires the key-encryption key that wrapped it, so
//! backups of the key directory taken from then on cannot bring it back. Rotating the
//! key-encryption key rewraps data keys and touches no record. And every put asks the
//! [`ResidencyPolicy`](domicile_residency::ResidencyPolicy) whether that class of that subject's
//! data may rest in this region; a refusal names the rule and writes nothing.
//!
//! Records rest in a [`Backend`]: sled 0.34.7 by default, redb behind the `redb` feature (on by
//! default), and PostgreSQL — or CockroachDB, YugabyteDB — behind the `postgres` feature
//! (`PostgresBackend`, for a region that outgrows one machine), all held to one [`conformance`]
//! suite. The on-disk formats are in `docs/storage.md`.
//!
//! ```
//! use std::sync::Arc;
//! use domicile_policy_us_split::UsSplitPolicy;
//! use domicile_residency::{DataClass, Region, Subject};
//! use domicile_store::{Collection, FileCustodian, RecordKey, SealedStore, StoreError};
//!
//! let dir = tempfile::tempdir()?;
//! let custodian = Arc::new(FileCustodian::open(dir.path().join("keys"))?);
//! let store = SealedStore::open(
//!     dir.path().join("data"),
//!     Region::parse("us")?,
//!     Arc::new(UsSplitPolicy::new()),
//!     custodian,
//! )?;
//!
//! let ana = Subject::parse("ana", Some("US"), None)?;
//! assert_eq!(store.register_subject(&ana)?.as_str(), "us");
//!
//! let likes = Collection::parse("likes")?;
//! let key = RecordKey::parse("ana/1")?;
//! store.put(&ana.id, DataClass::Protected, &likes, &key, &vec!["video-7", "video-9"])?;
//! let record = store.get::<Vec<String>>(&likes, &key)?.expect("just written");
//! assert_eq!(record.value, ["video-7", "video-9"]);
//! assert_eq!(record.meta.subject, ana.id);
//!
//! // A rest-of-world resident's Protected data may not rest in `us`.
//! let bo = Subject::parse("bo", Some("DE"), None)?;
//! store.register_subject(&bo)?;
//! let err = store
//!     .put(&bo.id, DataClass::Protected, &likes, &RecordKey::parse("bo/1")?, "x")
//!     .unwrap_err();
//! assert!(matches!(err, StoreError::PlacementRefused { .. }));
//! assert!(err.to_string().contains("us-split/protected-rests-in-home-region"));
//!
//! // Shredding destroys the data key: the record is gone and could not be opened anyway.
//! let receipt = store.shred_subject(&ana.id)?;
//! assert_eq!(receipt.records.len(), 1);
//! assert!(store.get_raw(&likes, &key)?.is_none());
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod aead;
mod backend;
pub mod conformance;
mod custodian;
mod error;
mod export;
mod file_custodian;
mod names;
#[cfg(feature = "postgres")]
mod postgres_backend;
mod record;
#[cfg(feature = "redb")]
mod redb_backend;
mod sled_backend;
mod store;

pub use backend::{Backend, Batch, BatchOp, ScanIter, CLEAR_BATCH};
pub use custodian::{
    BlindIndex, DataKey, DataKeyState, DestroyedKey, KekVersion, KeyCustodian, Pseudonym,
    PseudonymKey, RotationReport,
};
pub use error::{PlacementRefusal, StoreError};
pub use export::{ExportBundle, ExportedRecord, ImportReport, TransferKey};
pub use file_custodian::{FileCustodian, DEFAULT_LOCK_WAIT};
pub use names::{Collection, RecordKey};
#[cfg(feature = "postgres")]
pub use postgres_backend::{
    PostgresBackend, PostgresConfig, DEFAULT_SCHEMA as POSTGRES_DEFAULT_SCHEMA,
    POSTGRES_SCHEMA_VERSION,
};
pub use record::{RawRecord, Record, RecordDigest, RecordMeta, RECORD_FORMAT, STORE_FORMAT};
#[cfg(feature = "redb")]
pub use redb_backend::RedbBackend;
pub use sled_backend::SledBackend;
pub use store::{
    BackendKind, Finding, IndexRebuild, NewRecord, RecordDeletion, RegisteredSubject, SealedStore,
    ShredReceipt, StoreCheck, REBUILD_STEP,
};
