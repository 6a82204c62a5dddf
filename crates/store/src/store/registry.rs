//! Registering subjects: their home region by the policy, their data key, their sealed
//! registry entry.

use domicile_residency::{DataClass, Region, Subject, SubjectId};

use crate::aead::Nonces;
use crate::backend::Batch;
use crate::custodian::{DataKeyState, Pseudonym};
use crate::record::{layout, RecordMeta};
use crate::{Collection, StoreError};

use super::open::Opened;
use super::{
    read_lock, write_lock, NewRecord, RegisteredSubject, SealedStore, REGISTRY_COLLECTION,
};

/// The subject registry: who the store holds, and where the policy says they live.
impl SealedStore {
    /// Registers (or updates) a subject: asks the policy for their home region (an unknown or
    /// contradictory residence is an error), makes sure they have a data key, and stores their
    /// attributes sealed under it. Returns the home region.
    ///
    /// The home region is recomputed by the store's policy on every use rather than stored, so a
    /// store opened under a new policy (a split) places records by the new policy's rules.
    pub fn register_subject(&self, subject: &Subject) -> Result<Region, StoreError> {
        let mut homes = self.register_subjects(std::slice::from_ref(subject))?;
        Ok(homes.remove(0))
    }

    /// Registers many subjects at once: [`register_subject`](Self::register_subject) for each,
    /// with their data keys created together and one atomic, durable write of their registry
    /// entries. Returns each one's home region, in order.
    pub fn register_subjects(&self, subjects: &[Subject]) -> Result<Vec<Region>, StoreError> {
        self.register(subjects, true)
    }

    /// Registers `subjects` and writes `records` (of these subjects or of any registered one)
    /// with one flush for both, as an ingest writes new people with their data: what
    /// [`register_subjects`](Self::register_subjects) then [`put_batch`](Self::put_batch)
    /// do, one durable flush fewer. When it returns, the registrations and the records are
    /// durable. The registrations are written first: a crash leaves the subjects registered
    /// with their records, or registered without them (as a crash between those two calls
    /// would), or neither, never records without their subject. If a record is refused, the
    /// subjects stay registered (durable) and no record is written, as with the two calls.
    pub fn register_and_put(
        &self,
        subjects: &[Subject],
        records: &[NewRecord<'_>],
    ) -> Result<(Vec<Region>, Vec<RecordMeta>), StoreError> {
        let homes = self.register(subjects, false)?;
        match self.put_batch(records) {
            Ok(metas) => Ok((homes, metas)),
            Err(refused) => {
                // The registrations are kept, and made durable, as register_subjects would
                // have; the refusal is what the caller needs to hear.
                self.backend.flush()?;
                Err(refused)
            }
        }
    }

    /// Registers `subjects`; flushes the backend after if `flush` (else the caller's next
    /// flush makes them durable, before or with what it writes after them).
    fn register(&self, subjects: &[Subject], flush: bool) -> Result<Vec<Region>, StoreError> {
        let homes = subjects
            .iter()
            .map(|s| self.policy.home_region(s))
            .collect::<Result<Vec<_>, _>>()?;
        let _gate = self.gate.shared();
        let ids: Vec<SubjectId> = subjects.iter().map(|s| s.id.clone()).collect();
        let keys = self.custodian.create_data_keys(&self.region, &ids)?;
        let mut batch = Batch::new();
        let mut entries = Vec::with_capacity(subjects.len());
        let mut nonces = Nonces::new(&self.rng, subjects.len());
        for ((subject, key), home) in subjects.iter().zip(&keys).zip(&homes) {
            let pseudonym = self.pseudonyms.pseudonym(&subject.id);
            let plaintext = serde_json::to_vec(subject)
                .expect("a Subject (strings and country codes) always encodes as JSON");
            let blind = self
                .pseudonyms
                .blind_index(REGISTRY_COLLECTION, subject.id.as_str());
            let sealed = self.seal(
                key,
                &pseudonym,
                DataClass::Protected,
                REGISTRY_COLLECTION,
                &blind,
                subject.id.as_str(),
                &plaintext,
                &mut nonces,
            )?;
            batch.put(layout::registry(&pseudonym), sealed);
            entries.push((
                RegisteredSubject {
                    subject: subject.clone(),
                    home: home.clone(),
                },
                pseudonym,
            ));
        }
        match batch.ops() {
            [] => {}
            // One subject (`register_subject`): a plain write costs sled half what an atomic
            // batch of one does, and one write is atomic anyway.
            [crate::BatchOp::Put { key, value }] => self.backend.put(key, value)?,
            _ => self.backend.apply(&batch)?,
        }
        if flush {
            self.backend.flush()?;
        }
        let mut registry = write_lock(&self.registry);
        for (entry, pseudonym) in entries {
            registry.insert(entry.subject.id.clone(), (entry, pseudonym));
        }
        Ok(homes)
    }

    /// The registered subject, with their home region under the store's policy; `None` if the
    /// subject is not registered (or was shredded).
    pub fn subject(&self, id: &SubjectId) -> Result<Option<RegisteredSubject>, StoreError> {
        Ok(self.registered(id)?.map(|(entry, _)| entry))
    }

    /// The registered subject's home region and pseudonym, without a copy of their entry.
    pub(super) fn registered_home(
        &self,
        id: &SubjectId,
    ) -> Result<Option<(Region, Pseudonym)>, StoreError> {
        if let Some((entry, pseudonym)) = read_lock(&self.registry).get(id) {
            return Ok(Some((self.policy.home_region(&entry.subject)?, *pseudonym)));
        }
        Ok(self
            .registered(id)?
            .map(|(entry, pseudonym)| (entry.home, pseudonym)))
    }

    pub(crate) fn registered(
        &self,
        id: &SubjectId,
    ) -> Result<Option<(RegisteredSubject, Pseudonym)>, StoreError> {
        if let Some(found) = read_lock(&self.registry).get(id) {
            let mut found = found.clone();
            found.0.home = self.policy.home_region(&found.0.subject)?;
            return Ok(Some(found));
        }
        let pseudonym = self.pseudonyms.pseudonym(id);
        let Some(sealed) = self.backend.get(&layout::registry(&pseudonym))? else {
            return Ok(None);
        };
        self.open_registry_entry(id, pseudonym, sealed)
    }

    /// Opens the registry entry `sealed` of subject `id` and caches it.
    pub(super) fn open_registry_entry(
        &self,
        id: &SubjectId,
        pseudonym: Pseudonym,
        sealed: Vec<u8>,
    ) -> Result<Option<(RegisteredSubject, Pseudonym)>, StoreError> {
        let collection = Collection::reserved(REGISTRY_COLLECTION);
        let blind = self
            .pseudonyms
            .blind_index(REGISTRY_COLLECTION, id.as_str());
        let opened = self
            .opener
            .open_sealed(&collection, &blind, sealed, Some(id.as_str()))?;
        let plaintext = match opened {
            Opened::Plain { plaintext, .. } => plaintext,
            // An interrupted shred leaves the entry behind its destroyed key: not registered.
            Opened::Shredded => return Ok(None),
        };
        let subject: Subject =
            serde_json::from_slice(&plaintext).map_err(|e| StoreError::Authentication {
                collection: collection.clone(),
                key: blind.to_string(),
                reason: format!("the registry entry does not decode: {e}"),
            })?;
        if &subject.id != id {
            return Err(StoreError::Authentication {
                collection,
                key: blind.to_string(),
                reason: "the registry entry names another subject".into(),
            });
        }
        let home = self.policy.home_region(&subject)?;
        let entry = RegisteredSubject { subject, home };
        write_lock(&self.registry).insert(id.clone(), (entry.clone(), pseudonym));
        Ok(Some((entry, pseudonym)))
    }

    /// Every subject registered in this store, with their home region under the store's policy,
    /// in pseudonym order (which reveals nothing about who they are). A registry entry whose
    /// data key was destroyed (an interrupted shred) is left out.
    pub fn subjects(&self) -> Result<Vec<RegisteredSubject>, StoreError> {
        /// Registry entries whose data keys are asked for at once.
        const CHUNK: usize = 4096;
        let mut out = Vec::new();
        let mut chunk: Vec<(Pseudonym, Vec<u8>)> = Vec::with_capacity(CHUNK);
        let mut entries = self.backend.scan_prefix(&[layout::REGISTRY]).peekable();
        while entries.peek().is_some() {
            chunk.clear();
            for item in entries.by_ref() {
                let (k, sealed) = item?;
                if let Ok(bytes) = <[u8; 16]>::try_from(&k[1..]) {
                    chunk.push((Pseudonym(bytes), sealed));
                    if chunk.len() == CHUNK {
                        break;
                    }
                }
            }
            // The custodian knows whose key answers to each pseudonym; a registry entry itself
            // opens only with that subject id in its AAD.
            let pseudonyms: Vec<Pseudonym> = chunk.iter().map(|(p, _)| *p).collect();
            let states = self.custodian.data_keys(&self.region, &pseudonyms)?;
            for ((pseudonym, sealed), state) in chunk.drain(..).zip(states) {
                let id = match state {
                    DataKeyState::Live(key) => key.subject().clone(),
                    _ => continue,
                };
                let cached = read_lock(&self.registry)
                    .get(&id)
                    .map(|(entry, _)| entry.clone());
                let entry = match cached {
                    Some(mut entry) => {
                        entry.home = self.policy.home_region(&entry.subject)?;
                        Some(entry)
                    }
                    // The entry is in hand: open it rather than read it again.
                    None => self
                        .open_registry_entry(&id, pseudonym, sealed)?
                        .map(|(entry, _)| entry),
                };
                out.extend(entry);
            }
        }
        Ok(out)
    }
}
