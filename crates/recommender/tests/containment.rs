//! An algorithm that misbehaves is stopped by the platform, not trusted to behave.
//!
//! A test algorithm that got subject ids or pseudonyms some other way (here: the test hands them
//! to it at construction, as a leak would) and writes them into its parameters or its
//! hyper-parameters is refused at write time with `RecsysError::SubjectInParameters`, which names
//! no one, and no file is written. And an algorithm that dumps everything it *was* handed into
//! its parameters writes an artifact that names no one: the `TrainingSet` holds no id.

use std::any::Any;

use domicile_audit::AuditKey;
use domicile_recommender::{
    write_artifact, Algorithm, AlgorithmError, Catalogue, History, InteractionsBuilder, ItemModel,
    Model, Provenance, RecsysError, Scored, Screen, SigningKey, TrainingSet,
};
use domicile_residency::{Region, SubjectId};

/// How the smuggler hides what it has.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Leak {
    /// Nothing: it dumps what it was handed (the training set's debug form, every pair, every
    /// catalogue item and creator group) into its parameters.
    HandedOnly,
    /// Subject ids as they are, among float weights.
    BareIds,
    /// One short id, length-prefixed as a binary encoder stores strings.
    FramedShortId,
    /// Audit pseudonyms, hex.
    Pseudonyms,
    /// Subject ids in the hyper-parameters the manifest would record.
    IdsInHyperParameters,
}

#[derive(Debug)]
struct Smuggler {
    leak: Leak,
    /// What it got out of band.
    loot: Vec<String>,
}

#[derive(Debug)]
struct Smuggled {
    hyper: serde_json::Value,
    bytes: Vec<u8>,
    n_items: usize,
}

impl Algorithm for Smuggler {
    fn name(&self) -> &str {
        "smuggler"
    }

    fn version(&self) -> &str {
        "0.0.1"
    }

    fn train(
        &self,
        data: &TrainingSet<'_>,
        _settings: &serde_json::Value,
    ) -> Result<Box<dyn ItemModel>, AlgorithmError> {
        // Plausible parameters: a float per item.
        let mut bytes: Vec<u8> = (0..data.n_items())
            .flat_map(|i| (i as f32 * 0.37).to_le_bytes())
            .collect();
        let mut hyper = serde_json::json!({ "lambda": 1.0 });
        match self.leak {
            Leak::HandedOnly => {
                bytes.extend_from_slice(format!("{data:?}").as_bytes());
                for p in data.pairs() {
                    bytes.extend_from_slice(&p.user.to_le_bytes());
                    bytes.extend_from_slice(&p.item.to_le_bytes());
                    bytes.extend_from_slice(format!("user {} ", p.user).as_bytes());
                }
                for id in data.catalogue().items().ids() {
                    bytes.extend_from_slice(&(id.len() as u32).to_le_bytes());
                    bytes.extend_from_slice(id.as_bytes());
                }
                for g in data.catalogue().creator_groups() {
                    bytes.extend_from_slice(&g.to_le_bytes());
                }
            }
            Leak::BareIds | Leak::Pseudonyms => {
                for s in &self.loot {
                    bytes.extend_from_slice(s.as_bytes());
                    bytes.extend_from_slice(&0.5f32.to_le_bytes());
                }
            }
            Leak::FramedShortId => {
                let id = &self.loot[0];
                bytes.extend_from_slice(&(id.len() as u32).to_le_bytes());
                bytes.extend_from_slice(id.as_bytes());
            }
            Leak::IdsInHyperParameters => {
                hyper["seen"] = serde_json::json!(self.loot);
            }
        }
        Ok(Box::new(Smuggled {
            hyper,
            bytes,
            n_items: data.n_items(),
        }))
    }

    fn load(
        &self,
        hyper_parameters: &serde_json::Value,
        parameters: &[u8],
        catalogue: &Catalogue,
    ) -> Result<Box<dyn ItemModel>, AlgorithmError> {
        Ok(Box::new(Smuggled {
            hyper: hyper_parameters.clone(),
            bytes: parameters.to_vec(),
            n_items: catalogue.n_items(),
        }))
    }
}

impl ItemModel for Smuggled {
    fn hyper_parameters(&self) -> serde_json::Value {
        self.hyper.clone()
    }

    fn parameters(&self) -> Vec<u8> {
        self.bytes.clone()
    }

    fn recommend(&self, _history: History<'_>, k: usize, _exclude_seen: bool) -> Vec<Scored> {
        (0..self.n_items.min(k) as u32)
            .map(|item| Scored { item, score: 1.0 })
            .collect()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Users `subject-00000`…, two of them short (`u7`, `u8`), creators `creator-0`…, items `v0`….
fn world() -> domicile_recommender::Interactions {
    let mut b = InteractionsBuilder::new();
    for u in 0..60u32 {
        let user = if u < 2 {
            format!("u{}", u + 7)
        } else {
            format!("subject-{u:05}")
        };
        for i in 0..25u32 {
            if (u * 3 + i) % 4 == 0 {
                let (_, item) = b.add(&user, &format!("v{i}"), 1.0, i as i64);
                b.set_creator(item, &format!("creator-{}", i % 5));
            }
        }
    }
    b.build().unwrap()
}

fn provenance(data: &domicile_recommender::Interactions) -> Provenance {
    data.provenance(None, |_, _| Region::parse("us")).unwrap()
}

fn pseudonyms(data: &domicile_recommender::Interactions) -> Vec<String> {
    let key = AuditKey::from_bytes([5u8; 32]);
    data.users
        .ids()
        .iter()
        .map(|id| key.pseudonym(&SubjectId::parse(id).unwrap()).to_string())
        .collect()
}

#[test]
fn an_algorithm_smuggling_subjects_into_its_parameters_is_refused_at_write_time() {
    let data = world();
    let prov = provenance(&data);
    let pseudonyms = pseudonyms(&data);
    assert!(pseudonyms[0].len() >= 32, "{}", pseudonyms[0]);
    let screen = Screen::of(&data).with_pseudonyms(&pseudonyms);
    let key = SigningKey::from_seed(&[1u8; 32]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let long_ids: Vec<String> = data.users.ids()[2..5].to_vec();
    let cases = [
        (Leak::BareIds, long_ids.clone()),
        (Leak::FramedShortId, vec!["u7".to_owned()]),
        (Leak::Pseudonyms, pseudonyms[10..12].to_vec()),
        (Leak::IdsInHyperParameters, long_ids.clone()),
        // Creators are subjects too.
        (Leak::BareIds, vec!["creator-3".to_owned()]),
    ];
    for (n, (leak, loot)) in cases.into_iter().enumerate() {
        let smuggler = Smuggler {
            leak,
            loot: loot.clone(),
        };
        let model = Model::train(&smuggler, &data, &serde_json::json!({})).unwrap();
        let path = dir.path().join(format!("smuggled-{n}.domrec"));
        let err = write_artifact(&path, &model, &prov, Some(&key), &screen).unwrap_err();
        match &err {
            RecsysError::SubjectInParameters {
                algorithm,
                occurrences,
            } => {
                assert_eq!(algorithm, "smuggler");
                assert!(*occurrences >= loot.len(), "{leak:?}: {occurrences}");
            }
            other => panic!("{leak:?}: expected SubjectInParameters, got {other}"),
        }
        // The training data's own subjects are screened even when the writer passes no screen.
        if leak != Leak::Pseudonyms {
            let err = write_artifact(&path, &model, &prov, None, &Screen::default()).unwrap_err();
            assert!(
                matches!(err, RecsysError::SubjectInParameters { .. }),
                "{leak:?}: {err}"
            );
        }
        // Refused before anything is written, and the refusal names no one.
        assert!(!path.exists(), "{leak:?}: a refused artifact was written");
        let message = err.to_string();
        for id in data.users.ids().iter().chain(&pseudonyms) {
            assert!(
                !message.contains(id.as_str()),
                "{leak:?}: the error names {id}"
            );
        }
    }
}

#[test]
fn an_algorithm_dumping_everything_it_was_handed_carries_no_one() {
    let data = world();
    let smuggler = Smuggler {
        leak: Leak::HandedOnly,
        loot: Vec::new(),
    };
    let model = Model::train(&smuggler, &data, &serde_json::json!({})).unwrap();
    let pseudonyms = pseudonyms(&data);
    let screen = Screen::of(&data).with_pseudonyms(&pseudonyms);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dump.domrec");
    // The screen finds nothing, so the platform writes it...
    write_artifact(&path, &model, &provenance(&data), None, &screen).unwrap();
    // ...and a search of our own over the whole file agrees: the training set carried indices,
    // item ids and opaque creator groups, never a subject id, creator id or pseudonym.
    let bytes = std::fs::read(&path).unwrap();
    let dump = model.item_model().parameters();
    assert!(dump.len() > 1_000, "the algorithm dumped what it had");
    for id in data
        .users
        .ids()
        .iter()
        .filter(|id| id.len() >= 6)
        .chain(data.creators.ids())
        .chain(&pseudonyms)
    {
        assert!(
            !bytes.windows(id.len()).any(|w| w == id.as_bytes()),
            "{id} is in the artifact"
        );
    }
    assert_eq!(screen.occurrences(&bytes), 0);
}
