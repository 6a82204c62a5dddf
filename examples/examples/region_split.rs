//! The region split, start to finish: a global deployment of a short-video product becomes a
//! US split, with proof.
//!
//! 1. Generate a world (users with countries, creators, videos, watch/like/share/skip events).
//! 2. Run it as one `global` deployment: every user's profile, watch history and app metrics and
//!    every creator's public videos written through the Gate, sealed, logged.
//! 3. Train the global recommender through the Gate and serve it.
//! 4. Split to the US-split policy (`domicile-split`): copy through the Gates, verify, shred the
//!    source, sign the report.
//! 5. Models: the global model is refused in `us`, taking it out of `row` needs an export
//!    licence, and a US model is trained through the `us` Gate on US subjects only; then `us`
//!    swaps in the buyer's own algorithm (EASE, from `domicile-recommender-ease`, through the
//!    `Algorithm` trait alone), trains it on US data only and deploys it through the `us` Gate.
//!    The split's cost is measured on held-out US users (each folded in from their own
//!    history) for all three. The platform screens every artifact for every subject id and
//!    pseudonym of the world before writing it, and the demo searches the files again: a model
//!    is the algorithm only, so exporting it exports no one's data.
//! 6. Replay the access scenarios against the split deployment.
//! 7. Verify every region's audit log as an outside auditor would, with public keys only.
//! 8. Write a report folder: `report.json` and a self-contained `index.html` with charts.
//!
//! Run with `cargo run --release --example region_split` (about 50k users and 2M events by
//! default; `--users`, `--events`, `--seed`, `--out`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use domicile_access::{Gate, GateError, ScanRequest, ScanResult, SubjectRef, Training};
use domicile_audit::VerifierKey;
use domicile_examples::{print_tail, scenarios, service, Error, Scenario, TRUST_DOMAIN};
use domicile_policy_us_split::UsSplitPolicy;
use domicile_recommender::{
    evaluate, read_artifact, restrict_users, split as holdout_split, write_artifact, Algorithm,
    BuiltIn, ConfidenceWeights, EventKind, Holdout, Interactions, InteractionsBuilder, Metrics,
    Model, ModelKind, Provenance, RecommendOptions, Screen, SigningKey, Strategy, TrainConfig,
    Trust, World, WorldConfig, WorldEvent,
};
use domicile_recommender_ease::{Ease, EaseConfig};
use domicile_residency::{
    CountryCode, DataClass, JustificationCode, Purpose, Region, ResidencyPolicy, Subject, SubjectId,
};
use domicile_split::{run, Deployment, Progress, RunOptions, SignedReport};
use domicile_store::{Collection, RawRecord, RecordKey, RecordMeta, RedbBackend, SealedStore};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

/// sled allocates and frees a node copy on nearly every operation; mimalloc serves that
/// pattern markedly faster than the system allocator (see the README's performance table).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A global deployment becomes a US split, with proof.
#[derive(Debug, Parser)]
struct Args {
    /// Users in the generated world.
    #[arg(long, default_value_t = 50_000)]
    users: usize,
    /// Feedback events in the generated world.
    #[arg(long, default_value_t = 2_000_000)]
    events: usize,
    /// Videos in the generated world (default: users / 5).
    #[arg(long)]
    videos: Option<usize>,
    /// The world's seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where the deployment, its keys and the report go (emptied first).
    #[arg(long, default_value = "out/region-split")]
    out: PathBuf,
    /// ALS iterations for both models.
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// ALS factors for both models.
    #[arg(long, default_value_t = 64)]
    factors: usize,
    /// EASE's penalty λ for the buyer's model.
    #[arg(long, default_value_t = 200.0)]
    ease_lambda: f64,
    /// EASE models the most-watched items of the US data, at most this many (its training is a
    /// dense inverse, n³ operations); the others it never recommends.
    #[arg(long, default_value_t = 3_000)]
    ease_items: usize,
    /// Where the regions keep their sealed records: `sled` (embedded, the default); `redb` (the
    /// other embedded store, for every region); or `postgres` for the split's new regions `us`
    /// and `row` (needs `--features postgres` and `--database-url`), with `global` on sled, so
    /// the split crosses backends.
    #[arg(long, value_enum, default_value_t = Backend::Sled)]
    backend: Backend,
    /// The PostgreSQL database for `--backend postgres` (each region in its own schema). After
    /// the demo it is dumped with `pg_dump` and searched for every subject id and record key.
    #[arg(long, required_if_eq("backend", "postgres"))]
    database_url: Option<String>,
}

/// Where the split's regions keep their records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    /// The embedded store (sled).
    Sled,
    /// The other embedded store (redb), for every region.
    Redb,
    /// A PostgreSQL database.
    Postgres,
}

const BATCH: usize = 1_000;

/// One event as the product stores it in a user's watch history.
#[derive(Debug, Serialize)]
struct StoredEvent<'a> {
    v: &'a str,
    t: i64,
    #[serde(flatten)]
    kind: EventKind,
}

/// A user's watch history record (Protected, collection `behaviour`).
#[derive(Debug, Serialize)]
struct History<'a> {
    country: String,
    events: Vec<StoredEvent<'a>>,
}

/// A watch history as the training service reads it: the same JSON as [`History`], decoded
/// without copying its strings and without serde's buffering of a flattened, internally
/// tagged enum (which took most of the decoding time).
#[derive(Deserialize)]
struct HistoryRead<'a> {
    #[serde(borrow)]
    country: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    events: Vec<EventRead<'a>>,
}

/// One event of a [`HistoryRead`]: [`StoredEvent`]'s fields, the kind's tag and fields inline.
#[derive(Deserialize)]
struct EventRead<'a> {
    #[serde(borrow)]
    v: std::borrow::Cow<'a, str>,
    t: i64,
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    watch_ms: Option<u64>,
    duration_ms: Option<u64>,
}

impl EventRead<'_> {
    /// The event's kind, as [`EventKind`]'s own serde form names it.
    fn kind(&self) -> Result<EventKind, Error> {
        Ok(match (&*self.kind, self.watch_ms, self.duration_ms) {
            ("view", Some(watch_ms), Some(duration_ms)) => EventKind::View {
                watch_ms,
                duration_ms,
            },
            ("like", None, None) => EventKind::Like,
            ("share", None, None) => EventKind::Share,
            ("comment", None, None) => EventKind::Comment,
            ("follow_creator", None, None) => EventKind::FollowCreator,
            ("skip", None, None) => EventKind::Skip,
            (other, _, _) => return Err(format!("a stored event of unknown kind {other:?}").into()),
        })
    }
}

#[derive(Debug, Serialize)]
struct ModelReport {
    name: String,
    trained_on: BTreeSet<Region>,
    subjects: u64,
    interactions: u64,
    fit_seconds: f64,
    us_holdout: MetricsReport,
    deploy_in_us: String,
    artifact: String,
}

#[derive(Debug, Serialize)]
struct MetricsReport {
    users: usize,
    precision_at_10: f64,
    recall_at_10: f64,
    ndcg_at_10: f64,
    map_at_10: f64,
    coverage: f64,
}

impl From<&Metrics> for MetricsReport {
    fn from(m: &Metrics) -> Self {
        MetricsReport {
            users: m.users,
            precision_at_10: m.precision,
            recall_at_10: m.recall,
            ndcg_at_10: m.ndcg,
            map_at_10: m.map,
            coverage: m.coverage,
        }
    }
}

#[derive(Debug, Serialize)]
struct LogCheck {
    region: String,
    entries: u64,
    checkpoints: usize,
    root: String,
    verifier_key: String,
}

/// What a search of one artifact's bytes for the people of the world found.
#[derive(Debug, Serialize)]
struct ArtifactSearch {
    artifact: String,
    bytes: u64,
    subject_ids_searched: usize,
    pseudonyms_searched: usize,
    found: usize,
}

#[derive(Debug, Serialize)]
struct DemoReport {
    world: BTreeMap<String, u64>,
    timings_seconds: BTreeMap<String, f64>,
    split: SignedReport,
    models: Vec<ModelReport>,
    personal_data_in_artifacts: Vec<ArtifactSearch>,
    /// With `--backend postgres`: what a `pg_dump` of the regions' database showed.
    #[serde(skip_serializing_if = "Option::is_none")]
    database_dump: Option<DumpSearch>,
    export_of_global_model_from_row: String,
    scenarios: Vec<Scenario>,
    logs: Vec<LogCheck>,
}

/// What the database operator sees: a `pg_dump` of the database, searched.
#[derive(Debug, Serialize)]
struct DumpSearch {
    bytes: u64,
    subject_ids_searched: usize,
    pseudonyms_searched: usize,
    found: usize,
}

fn raw(
    subject: &SubjectId,
    class: DataClass,
    collection: &str,
    key: &str,
    value: Vec<u8>,
) -> Result<RawRecord, Error> {
    Ok(RawRecord {
        meta: RecordMeta {
            collection: Collection::parse(collection)?,
            key: RecordKey::parse(key)?,
            subject: subject.clone(),
            class,
            data_key_version: 0,
        },
        value,
    })
}

fn phase(timings: &mut BTreeMap<String, f64>, name: &str, start: Instant) {
    let secs = start.elapsed().as_secs_f64();
    println!("   ({name}: {secs:.1} s)");
    timings.insert(name.to_owned(), secs);
}

/// Each user's events as the world generates them (compact, by index), grouped by user; the
/// ingest's encoder thread turns them into the stored form.
fn histories(world: &World) -> Vec<Vec<WorldEvent>> {
    let mut histories: Vec<Vec<WorldEvent>> = (0..world.users.len()).map(|_| Vec::new()).collect();
    world.for_each_event(|e| histories[e.user as usize].push(e));
    histories
}

/// Writes the world into the global deployment through its Gate, as the product's ingest
/// service: users with profile, watch history (`histories`, by user) and app metrics; creators
/// with public videos.
fn ingest(
    world: &World,
    histories: Vec<Vec<WorldEvent>>,
    global: &Deployment,
) -> Result<u64, Error> {
    let node = global
        .regions()
        .next()
        .ok_or("the global deployment has no region")?;
    let app = service("global", ("tiktok-global", "SG"), "ingest", "app-service");
    let why = Purpose::new(JustificationCode::UserRequestedSupport).with_detail("product ingest");
    let bar = bar(
        world.users.len() as u64 + world.creators.len() as u64,
        "ingesting subjects",
    );
    // The batches are encoded on one thread and written through the Gate by two, as an ingest
    // service's workers would: one writer's key commit or fsync overlaps the other's store
    // writes, and the encoding overlaps both. Each batch is its own atomic, durable write.
    let (tx, rx) = std::sync::mpsc::sync_channel::<IngestBatch>(2);
    // A writer that fails drops the receiver, so the encoder stops and the other writer too.
    let rx = std::sync::Mutex::new(Some(rx));
    let written = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| -> Result<(), Error> {
        let encoder = scope.spawn(move || {
            encode_world(world, histories, |batch| tx.send(batch).is_ok())
                .map_err(|e| e.to_string())
        });
        let write = || -> Result<(), String> {
            loop {
                let next = match rx.lock().map_err(|_| "a writer panicked")?.as_ref() {
                    Some(rx) => rx.recv(),
                    None => return Ok(()),
                };
                let Ok(batch) = next else {
                    return Ok(());
                };
                match node.gate.write_batch(&app, &why, &batch) {
                    Ok(stored) => {
                        written
                            .fetch_add(stored.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        bar.inc(batch.len() as u64);
                    }
                    Err(e) => {
                        rx.lock().map_err(|_| "a writer panicked")?.take();
                        return Err(e.to_string());
                    }
                }
            }
        };
        let second = scope.spawn(write);
        let first = write();
        let second = second.join().expect("a writer thread panicked");
        first.and(second)?;
        encoder.join().expect("the encoder thread panicked")?;
        Ok(())
    })?;
    let written = written.into_inner();
    bar.finish_and_clear();
    Ok(written)
}

/// One batch of subjects with their records, as the ingest service writes it.
type IngestBatch = Vec<(Subject, Vec<RawRecord>)>;

/// Encodes the world's subjects and records as the product stores them, handing `send` one
/// batch at a time; stops early if `send` returns false.
fn encode_world(
    world: &World,
    mut histories: Vec<Vec<WorldEvent>>,
    mut send: impl FnMut(IngestBatch) -> bool,
) -> Result<(), Error> {
    let mut batch: IngestBatch = Vec::with_capacity(BATCH);
    let mut flush = |batch: &mut IngestBatch| -> Result<(), Error> {
        if !send(std::mem::replace(batch, Vec::with_capacity(BATCH))) {
            return Err("the writer stopped".into());
        }
        Ok(())
    };
    for (i, user) in world.users.iter().enumerate() {
        let subject = Subject::new(SubjectId::parse(&user.id)?, user.country);
        let events: Vec<StoredEvent<'_>> = std::mem::take(&mut histories[i])
            .into_iter()
            .map(|e| StoredEvent {
                v: &world.videos[e.video as usize].id,
                t: e.timestamp,
                kind: e.kind,
            })
            .collect();
        let sessions = events.len();
        let history = History {
            country: user.country.to_string(),
            events,
        };
        let records = vec![
            raw(
                &subject.id,
                DataClass::Protected,
                "profile",
                &user.id,
                serde_json::to_vec(&serde_json::json!({
                    "id": user.id, "country": user.country, "topics": [user.primary_topic, user.secondary_topic],
                }))?,
            )?,
            raw(
                &subject.id,
                DataClass::Protected,
                "behaviour",
                &user.id,
                serde_json::to_vec(&history)?,
            )?,
            raw(
                &subject.id,
                DataClass::Excepted,
                "app-metrics",
                &user.id,
                serde_json::to_vec(&serde_json::json!({
                    "events": sessions, "os": if i % 3 == 0 { "ios" } else { "android" },
                }))?,
            )?,
        ];
        batch.push((subject, records));
        if batch.len() == BATCH {
            flush(&mut batch)?;
        }
    }
    let mut videos_by_creator: Vec<Vec<usize>> = vec![Vec::new(); world.creators.len()];
    for (v, video) in world.videos.iter().enumerate() {
        videos_by_creator[video.creator as usize].push(v);
    }
    for (c, creator) in world.creators.iter().enumerate() {
        let subject = Subject::new(SubjectId::parse(&creator.id)?, creator.country);
        let mut records = Vec::new();
        for &v in &videos_by_creator[c] {
            let video = &world.videos[v];
            records.push(raw(&subject.id, DataClass::Public, "videos", &video.id, serde_json::to_vec(&serde_json::json!({
                "id": video.id, "creator": creator.id, "duration_ms": video.duration_ms, "topic": video.topic,
            }))?)?);
        }
        batch.push((subject, records));
        if batch.len() == BATCH {
            flush(&mut batch)?;
        }
    }
    if !batch.is_empty() {
        flush(&mut batch)?;
    }
    Ok(())
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "   {{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}}, {{per_sec}}, ETA {{eta}}"
        ))
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}

/// The training service's view: watch histories scanned through a region's Gate, weighted into
/// an interaction matrix.
fn scan_behaviour(
    gate: &Gate,
    region: &str,
    org: (&str, &str),
) -> Result<(Interactions, ScanResult), Error> {
    let trainer = service(region, org, "trainer", "training-service");
    let why = Purpose::new(JustificationCode::RecommendationTraining).with_ticket("RECSYS-TRAIN");
    let request = ScanRequest {
        class: DataClass::Protected,
        collection: Collection::parse("behaviour")?,
        destination: None,
    };
    let scanned = gate.scan(&trainer, &why, &request)?;
    let weights = ConfidenceWeights::default();
    let mut builder = InteractionsBuilder::new();
    for record in &scanned.records {
        let SubjectRef::Id(user) = &record.subject else {
            return Err("a training scan inside the region returned pseudonyms".into());
        };
        let history: HistoryRead<'_> = serde_json::from_slice(&record.value)?;
        // What `add_event` does for each event, with the user and country looked up once (a
        // user without events is not added, as `add_event` would not add them).
        if history.events.is_empty() {
            continue;
        }
        let u = builder.user(user.as_str());
        builder.set_country(u, CountryCode::parse(&history.country)?);
        for e in &history.events {
            let i = builder.item(&e.v);
            builder.add_indexed(u, i, weights.weight(&e.kind()?), e.t);
        }
    }
    Ok((builder.build()?, scanned))
}

/// The training service records the model it wrote at `path`, trained on what `scan` released:
/// one `train` entry in the region's log, committing to every subject the model learned from.
fn record_training(
    gate: &Gate,
    region: &str,
    org: (&str, &str),
    scan: &ScanResult,
    trained_on: &BTreeSet<Region>,
    path: &Path,
) -> Result<u64, Error> {
    let trainer = service(region, org, "trainer", "training-service");
    let why = Purpose::new(JustificationCode::RecommendationTraining).with_ticket("RECSYS-TRAIN");
    let artifact = std::fs::read(path)?;
    let receipt = gate.record_training(
        &trainer,
        &why,
        &Training {
            inputs: &[scan],
            trained_on,
            artifact: &artifact,
        },
    )?;
    Ok(receipt.seq)
}

/// Asks region `region`'s Gate to deploy the artifact at `path`, trained on `trained_on`: the
/// decision, allowed or refused, is an entry in that region's log.
fn deploy(
    gate: &Gate,
    region: &str,
    org: (&str, &str),
    trained_on: &BTreeSet<Region>,
    path: &Path,
) -> Result<String, Error> {
    let trainer = service(region, org, "trainer", "training-service");
    let why = Purpose::new(JustificationCode::RecommendationTraining).with_ticket("RECSYS-DEPLOY");
    let artifact = std::fs::read(path)?;
    Ok(
        match gate.deploy_model(&trainer, &why, trained_on, &artifact) {
            Ok(receipt) => format!("allowed (deploy entry {})", receipt.seq),
            Err(GateError::Denied { rules, seq, .. }) => {
                let rules: Vec<&str> = rules.iter().map(|r| r.as_str()).collect();
                format!("refused by {} (deploy entry {seq})", rules.join(", "))
            }
            Err(e) => return Err(e.into()),
        },
    )
}

/// Trains `algorithm` on `data`: the platform hands it dense indices only, never an id.
fn train(
    algorithm: &dyn Algorithm,
    data: &Interactions,
    settings: &serde_json::Value,
) -> Result<(Model, f64), Error> {
    let start = Instant::now();
    let model = Model::train(algorithm, data, settings)?;
    Ok((model, start.elapsed().as_secs_f64()))
}

/// The built-in ALS model's settings.
fn als_settings(args: &Args) -> serde_json::Value {
    let mut config = TrainConfig::for_kind(ModelKind::Als);
    config.als.factors = args.factors;
    config.als.iterations = args.iterations;
    config.als.threads = 2;
    BuiltIn::settings(&config)
}

fn provenance_under(
    data: &Interactions,
    policy: &dyn ResidencyPolicy,
) -> Result<Provenance, Error> {
    Ok(data.provenance(Some(policy.id().clone()), |id, country| {
        let subject = Subject {
            id: SubjectId::parse(id)?,
            attributes: domicile_residency::SubjectAttributes {
                residence: country,
                account_country: None,
            },
        };
        policy.home_region(&subject)
    })?)
}

fn main() -> Result<(), Error> {
    domicile_examples::keep_freed_memory();
    let args = Args::parse();
    let total = Instant::now();
    let mut timings = BTreeMap::new();
    if args.out.exists() {
        std::fs::remove_dir_all(&args.out)?;
    }
    let data = args.out.join("data");
    let keys = args.out.join("keys");
    let models_dir = args.out.join("models");
    let report_dir = args.out.join("report");
    std::fs::create_dir_all(&models_dir)?;
    std::fs::create_dir_all(&report_dir)?;

    println!("== 1. generate a world");
    let start = Instant::now();
    let world = World::generate(WorldConfig {
        users: args.users,
        videos: args.videos.unwrap_or((args.users / 5).max(100)),
        events: args.events,
        seed: args.seed,
        ..WorldConfig::default()
    })?;
    let us_split = UsSplitPolicy::new();
    let us_users: HashSet<String> = world
        .users
        .iter()
        .filter(|u| UsSplitPolicy::is_us_country(u.country))
        .map(|u| u.id.clone())
        .collect();
    // The events, generated here and grouped by user: the ingest phase is the writing.
    let histories = histories(&world);
    println!(
        "   {} users ({} in the US or its territories), {} creators, {} videos, {} events",
        world.users.len(),
        us_users.len(),
        world.creators.len(),
        world.videos.len(),
        args.events
    );
    phase(&mut timings, "generate", start);

    println!("== 2. run it as one global deployment ({})", data.display());
    let start = Instant::now();
    if args.backend == Backend::Redb {
        // A store directory holding a redb database is opened as one.
        for region in ["global", "us", "row"] {
            drop(RedbBackend::open(SealedStore::store_dir(
                &data,
                &Region::parse(region)?,
            ))?);
        }
        println!("   every region keeps its records in redb");
    }
    let global = Deployment::create(
        &data,
        &keys,
        domicile_examples::policies().resolve("global")?,
        TRUST_DOMAIN,
    )?;
    global.set_directory(domicile_examples::directory())?;
    let written = ingest(&world, histories, &global)?;
    println!(
        "   {written} records sealed and written through the global Gate in {} audit entries (one per batch of {BATCH} subjects)",
        global.regions().next().map_or(0, |n| n.gate.log().size())
    );
    phase(&mut timings, "ingest", start);

    println!("== 3. train and serve the global recommender (through the global Gate)");
    let start = Instant::now();
    let global_gate = global
        .regions()
        .next()
        .ok_or("no global region")?
        .gate
        .clone();
    let (all, global_scan) = scan_behaviour(&global_gate, "global", ("tiktok-global", "SG"))?;
    let scanned = global_scan.records.len();
    let (train_all, test_all) = holdout_split(
        &all,
        Holdout::Random {
            fraction: 0.2,
            seed: args.seed,
        },
    )?;
    let als = BuiltIn::new(ModelKind::Als);
    let (global_model, global_fit) = train(&als, &train_all, &als_settings(&args))?;
    let global_policy = global.policy().clone();
    let global_provenance = provenance_under(&train_all, global_policy.as_ref())?;
    let model_key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8()?)?;
    // Every deployment pins this key: an artifact signed by any other is refused.
    let trusted = Trust::pinned(model_key.public_key());
    let algorithms = domicile_examples::algorithms();
    let global_path = models_dir.join("global.domrec");
    let mut pseudonyms: Vec<String> = world_subjects(&world)
        .map(|id| Ok(global_gate.pseudonym(&SubjectId::parse(id)?)))
        .collect::<Result<_, Error>>()?;
    // Before writing, the platform screens the parameters for every subject it handed over.
    let screen = |pseudonyms: &[String]| {
        Screen::default()
            .with_subject_ids(world_subjects(&world))
            .with_pseudonyms(pseudonyms)
    };
    write_artifact(
        &global_path,
        &global_model,
        &global_provenance,
        Some(&model_key),
        &screen(&pseudonyms),
    )?;
    let train_seq = record_training(
        &global_gate,
        "global",
        ("tiktok-global", "SG"),
        &global_scan,
        &global_provenance.trained_on,
        &global_path,
    )?;
    println!(
        "   scanned {scanned} watch histories; ALS ({} factors, {} iterations) fit in {global_fit:.1} s; trained_on {{{}}}; logged as train entry {train_seq}",
        args.factors,
        args.iterations,
        regions(&global_provenance.trained_on)
    );
    // The model holds no user: each request folds the user in from their own history.
    let global_histories = global_model.histories(&train_all);
    for user in world.users.iter().take(2) {
        let recs =
            global_model.recommend(&global_histories, &user.id, &RecommendOptions::top(5))?;
        let items: Vec<&str> = recs.iter().map(|r| r.item.as_str()).collect();
        println!(
            "   top 5 for {} ({}): {}",
            user.id,
            user.country,
            items.join(" ")
        );
    }
    global.close()?;
    // The split opens the stores itself: let go of every handle on them first.
    drop(global_gate);
    drop(global);
    phase(&mut timings, "train global", start);

    println!("== 4. split to the US-split policy (through the Gates, journaled, verified, shredded, signed)");
    let start = Instant::now();
    let progress_bar = bar(0, "copying records");
    let progress = |p: &Progress| {
        progress_bar.set_length(p.records_total);
        progress_bar.set_position(p.records_done);
    };
    if let (Backend::Postgres, Some(url)) = (args.backend, &args.database_url) {
        for region in ["us", "row"] {
            domicile_split::configure_database(
                &data,
                &keys,
                &Region::parse(region)?,
                &domicile_split::DatabaseConfig {
                    url: url.clone(),
                    ca: None,
                },
            )?;
        }
        println!("   the split's regions us and row keep their records in PostgreSQL");
    }
    let signed = run(
        &data,
        &keys,
        &domicile_examples::policies(),
        "us-split",
        &RunOptions {
            batch_subjects: BATCH,
            progress: Some(&progress),
            ..RunOptions::default()
        },
    )?;
    progress_bar.finish_and_clear();
    // Checked as an auditor would: against the key pinned when the deployment was created, and
    // every region's log proved consistent with the report's checkpoints.
    let pinned = domicile_split::pinned_migration_key(&data)?.ok_or("no pinned migration key")?;
    let (_, logs) = domicile_split::check_report(&data, &pinned)?;
    for line in signed.report.to_string().lines() {
        println!("   {line}");
    }
    for log in logs.iter().filter(|l| l.shreds_logged > 0) {
        println!(
            "     checked: the {} log's split shred entries name {} subjects, each with one of the report's receipts",
            log.region, log.shreds_logged
        );
    }
    phase(&mut timings, "split", start);

    println!("== 5. models after the split");
    let start = Instant::now();
    let split = Deployment::open(&data, &keys, &domicile_examples::policies())?;
    split.set_directory(domicile_examples::directory())?;
    let us = Region::parse("us")?;
    let row = Region::parse("row")?;
    let global_rehomed = provenance_under(&train_all, &us_split)?;
    let deploy_global = us_split.may_deploy_model(&global_rehomed.trained_on, &us)?;
    println!(
        "   the global model learned from subjects now homed in {{{}}}",
        regions(&global_rehomed.trained_on)
    );
    println!("   deploy the global model in us: {deploy_global}");
    let export = us_split.may_transfer(
        DataClass::ModelArtifact,
        &row,
        &row,
        &us,
        &Purpose::new(JustificationCode::Migration),
    )?;
    println!("   take the global model out of row: {export}");
    let us_gate = split.region(&us).ok_or("no us region")?.gate.clone();
    // Every pseudonym any region's log gives the world's subjects: what artifacts are screened
    // and searched for from here on.
    for region in [&us, &row] {
        let gate = &split
            .region(region)
            .ok_or("a region of the split is missing")?
            .gate;
        for id in world_subjects(&world) {
            pseudonyms.push(gate.pseudonym(&SubjectId::parse(id)?));
        }
    }
    let (us_data, us_scan) = scan_behaviour(&us_gate, "us", ("usds", "US"))?;
    let us_scanned = us_scan.records.len();
    // Train on US data minus the pairs held out for evaluation, so both models face the same test.
    let held_out: HashSet<(&str, &str)> = test_all
        .pairs()
        .iter()
        .map(|p| (test_all.users.id(p.user), test_all.items.id(p.item)))
        .collect();
    let us_train = us_data.with_pairs(
        us_data
            .pairs()
            .iter()
            .filter(|p| !held_out.contains(&(us_data.users.id(p.user), us_data.items.id(p.item))))
            .copied()
            .collect(),
    );
    let (us_model, us_fit) = train(&als, &us_train, &als_settings(&args))?;
    let us_provenance = provenance_under(&us_train, &us_split)?;
    let us_path = models_dir.join("us.domrec");
    write_artifact(
        &us_path,
        &us_model,
        &us_provenance,
        Some(&model_key),
        &screen(&pseudonyms),
    )?;
    // Deploy from the file, as a region would: only under the pinned key, and the policy
    // decides on the provenance the signed manifest carries.
    let us_deployed = read_artifact(&us_path, &trusted, &algorithms)?;
    let deploy_us = us_split.may_deploy_model(&us_deployed.manifest.trained_on, &us)?;
    let us_train_seq = record_training(
        &us_gate,
        "us",
        ("usds", "US"),
        &us_scan,
        &us_provenance.trained_on,
        &us_path,
    )?;
    // Both deployments asked of the us Gate, so both decisions are in the us log.
    let deployed_us = deploy(
        &us_gate,
        "us",
        ("usds", "US"),
        &us_deployed.manifest.trained_on,
        &us_path,
    )?;
    let deployed_global = deploy(
        &us_gate,
        "us",
        ("usds", "US"),
        &global_rehomed.trained_on,
        &global_path,
    )?;
    println!("   the us training service scanned {us_scanned} watch histories (US subjects only); fit in {us_fit:.1} s; trained_on {{{}}}", regions(&us_provenance.trained_on));
    println!("   deploy the US model in us: {deploy_us}");
    println!("   the us Gate logged the US model's training (train entry {us_train_seq}); deploying it: {deployed_us}; deploying the global model: {deployed_global}");

    // The swap: `us` plugs in its own algorithm. EASE lives in its own crate and reaches the
    // platform through the Algorithm trait alone; the same US training data, the same screen,
    // signature, training record and deploy decision as the built-in model.
    let ease_settings = EaseConfig {
        lambda: args.ease_lambda,
        top_items: Some(args.ease_items),
        threads: 2,
        ..EaseConfig::default()
    }
    .to_settings();
    let (ease_model, ease_fit) = train(&Ease, &us_train, &ease_settings)?;
    let ease_path = models_dir.join("us-ease.domrec");
    write_artifact(
        &ease_path,
        &ease_model,
        &us_provenance,
        Some(&model_key),
        &screen(&pseudonyms),
    )?;
    let ease_deployed = read_artifact(&ease_path, &trusted, &algorithms)?;
    let ease_train_seq = record_training(
        &us_gate,
        "us",
        ("usds", "US"),
        &us_scan,
        &ease_deployed.manifest.trained_on,
        &ease_path,
    )?;
    let deployed_ease = deploy(
        &us_gate,
        "us",
        ("usds", "US"),
        &ease_deployed.manifest.trained_on,
        &ease_path,
    )?;
    println!(
        "   the buyer's algorithm ({} {}, λ {}, {} items modelled) fit on the same US data in {ease_fit:.1} s; trained_on {{{}}}; train entry {ease_train_seq}; deploying it in us: {deployed_ease}",
        ease_deployed.manifest.algorithm,
        ease_deployed.manifest.algorithm_version,
        args.ease_lambda,
        ease_model
            .downcast::<domicile_recommender_ease::EaseModel>()
            .map_or(0, |m| m.modelled_items().len()),
        regions(&ease_deployed.manifest.trained_on)
    );
    let test_us = restrict_users(&test_all, |u| us_users.contains(test_all.users.id(u)));
    // Both models serve the held-out US users from the same place: each user's own training
    // history, read in `us` and folded in at serving time.
    let global_metrics = evaluate(&global_model, &us_train, &test_us, 10, Strategy::Default)?;
    let us_metrics = evaluate(&us_model, &us_train, &test_us, 10, Strategy::Default)?;
    let ease_metrics = evaluate(
        &ease_deployed.model,
        &us_train,
        &test_us,
        10,
        Strategy::Default,
    )?;
    println!(
        "   the split's cost, on {} held-out US users:",
        us_metrics.users
    );
    println!(
        "     {:<26} {:>10} {:>10} {:>10}",
        "model", "prec@10", "recall@10", "ndcg@10"
    );
    for (name, m) in [
        ("global (all regions)", &global_metrics),
        ("US-only (after split)", &us_metrics),
        ("US-only, buyer's EASE", &ease_metrics),
    ] {
        println!(
            "     {name:<26} {:>10.4} {:>10.4} {:>10.4}",
            m.precision, m.recall, m.ndcg
        );
    }
    // Invariant 10: search the whole of the artifact that would be exported (global) and of the
    // ones deployed (us) for every subject id of the world and every pseudonym any region's log
    // gives them, as an auditor would: the platform screened the parameters before writing, and
    // this checks the files.
    let ids: Vec<&str> = world_subjects(&world).collect();
    // One screen for the three files: its search structure is built once.
    let screen = people(&ids, &pseudonyms);
    let mut searches = Vec::new();
    for path in [&global_path, &us_path, &ease_path] {
        let bytes = std::fs::read(path)?;
        let found = screen.occurrences(&bytes);
        println!(
            "   searched {} ({} bytes) for {} subject ids and {} pseudonyms: {}",
            path.display(),
            bytes.len(),
            ids.len(),
            pseudonyms.len(),
            if found == 0 {
                "none found".to_owned()
            } else {
                format!("{found} FOUND")
            }
        );
        searches.push(ArtifactSearch {
            artifact: path.display().to_string(),
            bytes: bytes.len() as u64,
            subject_ids_searched: ids.len(),
            pseudonyms_searched: pseudonyms.len(),
            found,
        });
    }
    if searches.iter().any(|s| s.found > 0) {
        return Err("a model artifact carries personal data (invariant 10)".into());
    }
    phase(&mut timings, "models", start);

    println!("== 6. the access scenarios, against the split deployment");
    let start = Instant::now();
    let us_subject = world
        .users
        .iter()
        .find(|u| us_users.contains(&u.id))
        .map(|u| SubjectId::parse(&u.id))
        .ok_or("the world has no US user")??;
    let scenarios = scenarios(&us_gate, &us_subject)?;
    let surprises: Vec<&Scenario> = scenarios
        .iter()
        .filter(|s| s.allowed != s.expected_allowed)
        .collect();
    if !surprises.is_empty() {
        return Err(format!(
            "{} scenario(s) did not go as the policy says: {surprises:?}",
            surprises.len()
        )
        .into());
    }
    split.close()?;
    drop(us_gate);
    drop(split);
    phase(&mut timings, "scenarios", start);

    println!("== 7. verify every region's log as an outside auditor, with public keys only");
    let start = Instant::now();
    let mut logs = Vec::new();
    for region in ["global", "us", "row"] {
        let dir = data.join(region).join("audit");
        let vkey_text = std::fs::read_to_string(data.join(region).join("log.vkey"))?;
        let vkey = VerifierKey::parse(vkey_text.trim())?;
        let report = domicile_audit::verify(&dir, &vkey, None, &mut |_, _| {})?;
        println!(
            "   {region:<7} {:>7} entries, {:>4} signed checkpoints, all consistent; root {}",
            report.entries,
            report.checkpoints,
            domicile_audit::merkle::hex(&report.root)
        );
        logs.push(LogCheck {
            region: region.to_owned(),
            entries: report.entries,
            checkpoints: report.checkpoints,
            root: domicile_audit::merkle::hex(&report.root),
            verifier_key: vkey_text.trim().to_owned(),
        });
    }
    println!(
        "   the last entries of the us log, as `domicile audit query --log {}` shows them:",
        data.join("us/audit").display()
    );
    print_tail(&data.join("us").join("audit"), 6)?;
    phase(&mut timings, "audit", start);

    let database_dump = match (args.backend, &args.database_url) {
        (Backend::Postgres, Some(url)) => {
            println!("== 7b. what the database operator sees: pg_dump of the regions' database");
            let dump = pg_dump(url)?;
            let found = people_in_dump(&dump, &ids, &pseudonyms);
            println!(
                "   searched the dump ({} bytes) for {} subject ids (as text, hex and JSON) and {} pseudonyms, and for plaintext field names: {}",
                dump.len(),
                ids.len(),
                pseudonyms.len(),
                if found == 0 { "none found".to_owned() } else { format!("{found} FOUND") }
            );
            if found > 0 {
                return Err(
                    "the database holds a subject id, record key or plaintext value".into(),
                );
            }
            Some(DumpSearch {
                bytes: dump.len() as u64,
                subject_ids_searched: ids.len(),
                pseudonyms_searched: pseudonyms.len(),
                found,
            })
        }
        _ => None,
    };

    let mut world_counts = BTreeMap::new();
    world_counts.insert("users".to_owned(), world.users.len() as u64);
    world_counts.insert("us_users".to_owned(), us_users.len() as u64);
    world_counts.insert("creators".to_owned(), world.creators.len() as u64);
    world_counts.insert("videos".to_owned(), world.videos.len() as u64);
    world_counts.insert("events".to_owned(), args.events as u64);
    timings.insert("total".into(), total.elapsed().as_secs_f64());
    let report = DemoReport {
        world: world_counts,
        timings_seconds: timings.clone(),
        split: signed,
        models: vec![
            ModelReport {
                name: "global".into(),
                trained_on: global_rehomed.trained_on.clone(),
                subjects: global_provenance.subjects,
                interactions: global_provenance.events,
                fit_seconds: global_fit,
                us_holdout: (&global_metrics).into(),
                deploy_in_us: deploy_global.to_string(),
                artifact: global_path.display().to_string(),
            },
            ModelReport {
                name: "us-only".into(),
                trained_on: us_provenance.trained_on.clone(),
                subjects: us_provenance.subjects,
                interactions: us_provenance.events,
                fit_seconds: us_fit,
                us_holdout: (&us_metrics).into(),
                deploy_in_us: deploy_us.to_string(),
                artifact: us_path.display().to_string(),
            },
            ModelReport {
                name: "us-only-ease".into(),
                trained_on: ease_deployed.manifest.trained_on.clone(),
                subjects: ease_deployed.manifest.subjects,
                interactions: ease_deployed.manifest.events,
                fit_seconds: ease_fit,
                us_holdout: (&ease_metrics).into(),
                deploy_in_us: deployed_ease.clone(),
                artifact: ease_path.display().to_string(),
            },
        ],
        personal_data_in_artifacts: searches,
        database_dump,
        export_of_global_model_from_row: export.to_string(),
        scenarios,
        logs,
    };
    std::fs::write(
        report_dir.join("report.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    std::fs::write(report_dir.join("index.html"), html(&report))?;
    println!("== done in {:.1} s", total.elapsed().as_secs_f64());
    println!("   report: {}", report_dir.join("index.html").display());
    println!(
        "   check it yourself: cargo run -p domicile -- split verify --data {} --keys {}",
        data.display(),
        keys.display()
    );
    Ok(())
}

/// Horizontal bars as inline SVG.
fn bars(title: &str, rows: &[(String, f64, &str)], unit: &str) -> String {
    let max = rows.iter().map(|r| r.1).fold(0.0_f64, f64::max).max(1e-9);
    let height = 28 * rows.len() + 40;
    let mut svg = format!(
        "<figure><figcaption>{title}</figcaption><svg width=\"640\" height=\"{height}\" role=\"img\" aria-label=\"{title}\">"
    );
    for (i, (label, value, color)) in rows.iter().enumerate() {
        let y = 10 + i * 28;
        let w = (value / max * 380.0).max(1.0);
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{}\" font-size=\"13\">{label}</text><rect x=\"200\" y=\"{y}\" width=\"{w:.1}\" height=\"20\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{}\" font-size=\"12\">{}{unit}</text>",
            y + 15,
            205.0 + w,
            y + 15,
            if value.fract() == 0.0 { format!("{value:.0}") } else { format!("{value:.4}") }
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

fn html(report: &DemoReport) -> String {
    let split = &report.split.report;
    let mut record_rows = Vec::new();
    for (when, counts, color) in [
        ("before", &split.plan.before, "#888"),
        ("after", &split.verification.per_region, "#2a6"),
    ] {
        for (region, classes) in counts {
            let n: u64 = classes.values().sum();
            record_rows.push((format!("{region} ({when})"), n as f64, color));
        }
    }
    let allowed = report.scenarios.iter().filter(|s| s.allowed).count() as f64;
    let denied = report.scenarios.len() as f64 - allowed;
    let access_rows = vec![
        ("allowed".to_owned(), allowed, "#2a6"),
        ("denied".to_owned(), denied, "#c33"),
    ];
    let mut quality_rows = Vec::new();
    for m in &report.models {
        quality_rows.push((
            format!("{} precision@10", m.name),
            m.us_holdout.precision_at_10,
            if m.name == "global" { "#888" } else { "#36c" },
        ));
        quality_rows.push((
            format!("{} ndcg@10", m.name),
            m.us_holdout.ndcg_at_10,
            if m.name == "global" { "#888" } else { "#36c" },
        ));
    }
    let mut scenario_rows = String::new();
    for s in &report.scenarios {
        let _ = write!(
            scenario_rows,
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            escape(&s.what),
            escape(&s.who),
            if s.allowed { "ok" } else { "no" },
            if s.allowed { "allowed" } else { "denied" },
            escape(&s.detail)
        );
    }
    let mut search_rows = String::new();
    for a in &report.personal_data_in_artifacts {
        let _ = write!(
            search_rows,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            escape(&a.artifact),
            a.bytes,
            a.subject_ids_searched,
            a.pseudonyms_searched,
            if a.found == 0 { "ok" } else { "no" },
            a.found
        );
    }
    let mut log_rows = String::new();
    for l in &report.logs {
        let _ = write!(
            log_rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            l.region, l.entries, l.checkpoints, l.root
        );
    }
    let mut model_rows = String::new();
    for m in &report.models {
        let _ = write!(
            model_rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1} s</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{}</td></tr>",
            m.name, regions(&m.trained_on), m.subjects, m.fit_seconds, m.us_holdout.precision_at_10, m.us_holdout.recall_at_10, m.us_holdout.ndcg_at_10, escape(&m.deploy_in_us)
        );
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>domicile region split</title><style>\
body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}}\
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;font-size:14px;text-align:left}}\
.ok{{color:#2a6;font-weight:bold}}.no{{color:#c33;font-weight:bold}}figure{{margin:1em 0}}figcaption{{font-weight:bold;margin-bottom:.5em}}\
code{{font-size:12px;word-break:break-all}}</style></head><body>\
<h1>Region split: {} → {}</h1><p>Rules in force: <code>{}</code> → <code>{}</code></p>\
<p>{} users ({} in the US or its territories), {} videos, {} events. Split in {:.1} s; demo in {:.1} s. \
Report signed by migration key <code>{}</code>.</p>\
<h2>Records per region</h2>{}\
<h2>Access decisions after the split</h2>{}<table><tr><th>scenario</th><th>principal</th><th>decision</th><th>why</th></tr>{}</table>\
<h2>The split's cost in recommendation quality (held-out US users)</h2>{}\
<table><tr><th>model</th><th>trained on</th><th>subjects</th><th>fit</th><th>precision@10</th><th>recall@10</th><th>ndcg@10</th><th>deploy in us</th></tr>{}</table>\
<p>Taking the global model out of <code>row</code>: {}</p>\
<h2>Personal data in model artifacts</h2><table><tr><th>artifact</th><th>bytes</th><th>subject ids searched</th><th>pseudonyms searched</th><th>found</th></tr>{}</table>\
<h2>Audit logs, verified with public keys only</h2><table><tr><th>region</th><th>entries</th><th>checkpoints</th><th>root</th></tr>{}</table>\
</body></html>",
        split.source_policy.name,
        split.target_policy.name,
        split.source_policy,
        split.target_policy,
        report.world.get("users").copied().unwrap_or(0),
        report.world.get("us_users").copied().unwrap_or(0),
        report.world.get("videos").copied().unwrap_or(0),
        report.world.get("events").copied().unwrap_or(0),
        report.timings_seconds.get("split").copied().unwrap_or(0.0),
        report.timings_seconds.get("total").copied().unwrap_or(0.0),
        report.split.public_key,
        bars("Records per region, before and after", &record_rows, ""),
        bars("Access scenarios", &access_rows, ""),
        scenario_rows,
        bars("Quality on held-out US users", &quality_rows, ""),
        model_rows,
        escape(&report.export_of_global_model_from_row),
        search_rows,
        log_rows,
    )
}

/// Every subject of the world: users and creators.
fn world_subjects(world: &World) -> impl Iterator<Item = &str> {
    world
        .users
        .iter()
        .map(|u| u.id.as_str())
        .chain(world.creators.iter().map(|c| c.id.as_str()))
}

/// The platform's own screen ([`Screen::occurrences`]) for the subject ids and pseudonyms, to
/// run over whole files.
fn people(ids: &[&str], pseudonyms: &[String]) -> Screen {
    Screen::default()
        .with_subject_ids(ids.iter().copied())
        .with_pseudonyms(pseudonyms)
}

/// `pg_dump` of the database at `url`: the first `pg_dump` on `PATH`, else the newest under
/// `/usr/lib/postgresql/*/bin`.
fn pg_dump(url: &str) -> Result<Vec<u8>, Error> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("pg_dump"))
        .find(|p| p.exists());
    let installed = || {
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = e.path().join("bin").join("pg_dump");
                bin.exists().then_some((version, bin))
            })
            .collect();
        found.sort();
        found.pop().map(|(_, bin)| bin)
    };
    let program = on_path
        .or_else(installed)
        .ok_or("pg_dump was not found (on PATH or under /usr/lib/postgresql): install PostgreSQL's client tools")?;
    let out = std::process::Command::new(&program)
        .arg(format!("--dbname={url}"))
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(out.stdout)
}

/// How many subject ids, pseudonyms and plaintext field names occur in a `pg_dump`, which shows
/// `bytea` as hex: each id is searched as text and as hex when six bytes or longer, and in every
/// length as the JSON the records' values hold (`"id":"u7"`), raw and hex; the values' field
/// names likewise.
fn people_in_dump(dump: &[u8], ids: &[&str], pseudonyms: &[String]) -> usize {
    let hex = |b: &[u8]| -> Vec<u8> {
        b.iter()
            .flat_map(|x| format!("{x:02x}").into_bytes())
            .collect()
    };
    let mut needles: Vec<Vec<u8>> = pseudonyms.iter().map(|p| p.as_bytes().to_vec()).collect();
    let mut texts: Vec<Vec<u8>> = ["\"topics\":", "\"duration_ms\":", "\"country\":"]
        .iter()
        .map(|f| f.as_bytes().to_vec())
        .collect();
    for id in ids {
        if id.len() >= 6 {
            texts.push(id.as_bytes().to_vec());
        }
        texts.push(format!("\"id\":\"{id}\"").into_bytes());
    }
    for text in texts {
        needles.push(hex(&text));
        needles.push(text);
    }
    count_needles(dump, &needles)
}

/// How many windows of `bytes` are one of `needles` (each at least two bytes).
fn count_needles(bytes: &[u8], needles: &[Vec<u8>]) -> usize {
    let mut by_len: BTreeMap<usize, HashSet<&[u8]>> = BTreeMap::new();
    for n in needles {
        by_len.entry(n.len()).or_default().insert(n);
    }
    let mut found = 0;
    for (len, set) in by_len {
        // A bitmap of the needles' first two bytes rejects almost every window before hashing.
        let mut first = vec![false; 1 << 16];
        for n in &set {
            first[(n[0] as usize) << 8 | n[1] as usize] = true;
        }
        found += bytes
            .windows(len)
            .filter(|w| first[(w[0] as usize) << 8 | w[1] as usize] && set.contains(w))
            .count();
    }
    found
}

/// Region names, comma separated.
fn regions(set: &BTreeSet<Region>) -> String {
    set.iter()
        .map(Region::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
