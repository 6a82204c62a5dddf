//! Opening a sealed record: what a get, a scan and the scan thread share.

use std::sync::Arc;

use domicile_residency::{DataClass, Region, SubjectId};

use crate::aead::{self};
use crate::custodian::{BlindIndex, DataKeyState, KeyCustodian, PseudonymKey};
use crate::record::{self, RawRecord, RecordMeta};
use crate::{Collection, RecordKey, StoreError};

/// What opening a sealed record takes: the store's region, custodian and pseudonym key, in one
/// place a scan's read-ahead thread can share.
pub(crate) struct Opener {
    region: Region,
    custodian: Arc<dyn KeyCustodian>,
    pseudonyms: Arc<PseudonymKey>,
}

impl Opener {
    /// What opens records of `region`'s store.
    pub(super) fn new(
        region: Region,
        custodian: Arc<dyn KeyCustodian>,
        pseudonyms: Arc<PseudonymKey>,
    ) -> Self {
        Opener {
            region,
            custodian,
            pseudonyms,
        }
    }

    /// Opens the record sealed at `blind`; `requested` is the key it was looked up by, when the
    /// caller knows it (a get).
    pub(crate) fn open_record(
        &self,
        collection: &Collection,
        blind: &BlindIndex,
        sealed: Vec<u8>,
        requested: Option<&RecordKey>,
    ) -> Result<RawRecord, StoreError> {
        self.open_owned(collection.clone(), blind, sealed, requested)
    }

    /// [`open_record`](Self::open_record) for a caller that owns the collection name (a scan
    /// has one per record), which goes into the record's metadata as it is.
    pub(crate) fn open_owned(
        &self,
        collection: Collection,
        blind: &BlindIndex,
        sealed: Vec<u8>,
        requested: Option<&RecordKey>,
    ) -> Result<RawRecord, StoreError> {
        match self.open_sealed(&collection, blind, sealed, requested.map(RecordKey::as_str))? {
            Opened::Plain {
                key,
                plaintext,
                class,
                subject,
                data_key_version,
            } => {
                let key = match requested {
                    // open_sealed found the sealed key equal to it.
                    Some(requested) => requested.clone(),
                    None => {
                        RecordKey::from_string(key).map_err(|_| StoreError::Authentication {
                            collection: collection.clone(),
                            key: blind.to_string(),
                            reason: "the sealed record key is not a valid record key".into(),
                        })?
                    }
                };
                Ok(RawRecord {
                    meta: RecordMeta {
                        collection,
                        key,
                        subject,
                        class,
                        data_key_version,
                    },
                    value: plaintext,
                })
            }
            Opened::Shredded => Err(StoreError::SubjectShredded {
                collection: collection.clone(),
                key: blind.to_string(),
            }),
        }
    }

    /// Opens a sealed entry and, when the caller looked it up by a key (`requested`, from which
    /// `blind` was computed), checks that the key sealed inside is that key.
    pub(super) fn open_sealed(
        &self,
        collection: &Collection,
        blind: &BlindIndex,
        mut sealed: Vec<u8>,
        requested: Option<&str>,
    ) -> Result<Opened, StoreError> {
        let refuse = |reason: String| StoreError::Authentication {
            collection: collection.clone(),
            key: blind.to_string(),
            reason,
        };
        let (header, _) = record::parse_header(&sealed).map_err(refuse)?;
        let data_key = match self.custodian.data_key(&self.region, &header.pseudonym)? {
            DataKeyState::Live(k) => k,
            DataKeyState::Shredded { .. } => return Ok(Opened::Shredded),
            _ => {
                return Err(refuse(format!(
                    "no data key in region {} matches its subject pseudonym (moved from another region or store, or changed)",
                    self.region
                )))
            }
        };
        if data_key.version() != header.data_key_version {
            return Err(refuse(format!(
                "it names data key version {} but the subject's key is version {}",
                header.data_key_version,
                data_key.version()
            )));
        }
        let plain = record::with_record_aad(
            &self.region,
            header.class,
            collection.as_str(),
            blind,
            data_key.subject(),
            data_key.version(),
            |aad| aead::open_in_buf(data_key.aead(), aad, &mut sealed, record::HEADER_LEN),
        )
        .ok_or_else(|| {
            refuse("the AES-256-GCM tag does not match (the record was changed, or moved from another key, collection, subject or region)".into())
        })?;
        let (key, plaintext) = record::decode_payload_in(sealed, plain)
            .ok_or_else(|| refuse("its sealed payload is malformed".into()))?;
        // The AAD bound the blind index and the tag both it and the key inside, under the
        // subject's data key: only this store, which computes the blind index from the key it
        // seals, can make a record that opens, and a record moved to another blind index fails
        // the tag. So a scan (no key requested) does not recompute the blind index — an HMAC that
        // was 29% of a scan's time — and checks it in debug builds only; a get compares the key it
        // asked for, which costs nothing.
        let blinds_it = match requested {
            Some(requested) => key == requested,
            None => {
                debug_assert!(self.pseudonyms.blind_index(collection.as_str(), &key) == *blind);
                true
            }
        };
        if !blinds_it {
            return Err(refuse(
                "the sealed record key is not the one it was looked up by".into(),
            ));
        }
        Ok(Opened::Plain {
            key,
            plaintext,
            class: header.class,
            subject: data_key.subject().clone(),
            data_key_version: data_key.version(),
        })
    }
}

pub(super) enum Opened {
    Plain {
        key: String,
        plaintext: Vec<u8>,
        class: DataClass,
        subject: SubjectId,
        data_key_version: u32,
    },
    Shredded,
}
