//! `domicile recsys`: train, serve, evaluate and generate data for the recommender.

use std::collections::BTreeSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Subcommand, ValueEnum};
use domicile_recommender::{
    evaluate, hex, in_pool, read_artifact, split, write_artifact, Algorithm, BuiltIn,
    ConfidenceWeights, Holdout, Interactions, Metrics, Model, ModelKind, RecommendOptions,
    RecsysError, Screen, SignatureStatus, SigningKey, Similarity, Strategy, TrainConfig, Trust,
    World, WorldConfig,
};
use domicile_residency::{
    CountryCode, PolicyId, Region, ResidencyError, ResidencyPolicy, Subject, SubjectId,
};

/// Arguments of `domicile recsys`.
#[derive(Debug, clap::Args)]
pub(crate) struct RecsysArgs {
    #[command(subcommand)]
    command: RecsysCommand,
}

#[derive(Debug, Subcommand)]
enum RecsysCommand {
    /// Train a model on an interactions CSV (or events JSONL) and write a model artifact.
    Train(TrainArgs),
    /// Write top-k recommendations for users as CSV `user,item,rank,score`, each user's factors
    /// folded in from their history in --interactions.
    Recommend(RecommendArgs),
    /// Hold out part of the interactions, train every model on the rest, print their metrics.
    Eval(EvalArgs),
    /// Generate a seeded synthetic world: interactions CSV, or events JSONL if FILE ends in .jsonl.
    Generate(GenerateArgs),
    /// Generate an Ed25519 model-signing key (PKCS#8); prints the public key in hex.
    Keygen(KeygenArgs),
    /// Deploy a signed model artifact into one region of a deployment: its signature checked
    /// against the trusted key, the residency policy asked whether a model trained on its
    /// `trained_on` may run there, the decision logged in the region's audit log, and only then
    /// the artifact copied to `<data>/<region>/models/`.
    Deploy(DeployArgs),
}

#[derive(Debug, Args)]
struct DeployArgs {
    /// The deployment's data directory.
    #[arg(long)]
    data: PathBuf,
    /// The deployment's keys directory.
    #[arg(long)]
    keys: PathBuf,
    /// The region to deploy into.
    #[arg(long)]
    region: String,
    /// The model artifact.
    #[arg(long)]
    model: PathBuf,
    /// The Ed25519 public key (hex, or a file holding it) the model must be signed by. Required
    /// unless --allow-unsigned is given.
    #[arg(long)]
    trusted_key: Option<String>,
    /// Deploy an unsigned model, or one signed by a key other than --trusted-key, with a
    /// warning: nothing then vouches for its provenance.
    #[arg(long)]
    allow_unsigned: bool,
    /// The organisation running the deploying service (`usds` in a US split's `us` region).
    #[arg(long, default_value = "domicile")]
    org: String,
    /// The ticket the deployment is made under, recorded in the log entry.
    #[arg(long)]
    ticket: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SimilarityArg {
    Bm25,
    Cosine,
}

/// Hyper-parameters shared by `train` and `eval`.
#[derive(Debug, Args)]
struct HyperArgs {
    /// Latent factors.
    #[arg(long, default_value_t = 64)]
    factors: usize,
    /// ALS sweeps.
    #[arg(long, default_value_t = 15)]
    iterations: usize,
    /// L2 regularisation (default: the library's).
    #[arg(long)]
    regularization: Option<f32>,
    /// Confidence scale, c = 1 + alpha * weight (default: the library's).
    #[arg(long)]
    alpha: Option<f32>,
    /// Conjugate gradient steps per solve.
    #[arg(long, default_value_t = 3)]
    cg_steps: usize,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Item-item weighting.
    #[arg(long, value_enum, default_value_t = SimilarityArg::Bm25)]
    similarity: SimilarityArg,
    /// Neighbours kept per item.
    #[arg(long, default_value_t = 100)]
    neighbours: usize,
    /// Seed of the initial factors.
    #[arg(long, default_value_t = 42)]
    init_seed: u64,
    /// Blend only: the share of the training pairs held out to choose the ALS and item-item
    /// weights on this data (0: the fixed default weights).
    #[arg(long, default_value_t = 0.1)]
    blend_validation: f32,
    /// A hyper-parameter of the algorithm, KEY=VALUE (repeatable): a top-level key of its
    /// settings JSON, VALUE read as JSON when it parses (`--set lambda=200`, `--set
    /// top_items=3000`), else as a string. This is how algorithms other than the built-ins
    /// take their hyper-parameters.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
}

impl HyperArgs {
    /// The settings JSON for `algorithm`: for a built-in, the configuration the flags above
    /// describe; for any other, an empty object; then every `--set`.
    fn settings_for(&self, algorithm: &dyn Algorithm) -> Result<serde_json::Value, CliError> {
        let mut settings = match algorithm.name().parse::<ModelKind>() {
            Ok(kind) => BuiltIn::settings(&self.config(kind)),
            Err(_) => serde_json::json!({}),
        };
        for pair in &self.settings {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| CliError::Message(format!("--set {pair:?}: expected KEY=VALUE")))?;
            let value = serde_json::from_str(value)
                .unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
            settings
                .as_object_mut()
                .expect("settings are a JSON object")
                .insert(key.to_owned(), value);
        }
        Ok(settings)
    }

    fn config(&self, kind: ModelKind) -> TrainConfig {
        let mut c = TrainConfig::for_kind(kind);
        c.als.factors = self.factors;
        c.als.iterations = self.iterations;
        if let Some(r) = self.regularization {
            c.als.regularization = r;
        }
        if let Some(a) = self.alpha {
            c.als.alpha = a;
        }
        c.als.cg_steps = self.cg_steps;
        c.als.threads = self.threads;
        c.als.seed = self.init_seed;
        c.item_knn.threads = self.threads;
        c.item_knn.neighbours = self.neighbours;
        c.blend.validation = self.blend_validation;
        c.item_knn.similarity = match self.similarity {
            SimilarityArg::Bm25 => Similarity::bm25(),
            SimilarityArg::Cosine => Similarity::Cosine,
        };
        c
    }
}

#[derive(Debug, Args)]
struct TrainArgs {
    /// Interactions CSV (`user,item[,weight][,timestamp][,country][,creator]`) or events JSONL.
    #[arg(long)]
    interactions: PathBuf,
    /// Where to write the model artifact.
    #[arg(long)]
    model_out: PathBuf,
    /// The algorithm to train: a built-in (als, item-knn, blend, popularity) or any other this
    /// binary links (ease); an unknown name lists them.
    #[arg(long, default_value = "als")]
    model: String,
    #[command(flatten)]
    hyper: HyperArgs,
    /// Ed25519 signing key (PKCS#8 DER, or a raw 32-byte seed); without it the model is unsigned.
    #[arg(long)]
    signing_key: Option<PathBuf>,
    /// The residency policy whose home-region rules name the regions in `trained_on`
    /// (from each user's `country`), by name (`global`, `us-split`, … as this binary links);
    /// without it every subject is counted in --region.
    #[arg(long)]
    policy: Option<String>,
    /// The region every subject is homed in when no --policy is given.
    #[arg(long, default_value = "global")]
    region: String,
}

#[derive(Debug, Args)]
struct RecommendArgs {
    /// The model artifact (the algorithm only: it holds no user).
    #[arg(long)]
    model: PathBuf,
    /// The users' histories: interactions CSV or events JSONL. Each user's ALS factors are
    /// folded in from their own history; it is also what --exclude-seen leaves out.
    #[arg(long)]
    interactions: PathBuf,
    /// `all` (every user with a history in --interactions), or a file with one user id per line.
    #[arg(long)]
    users: String,
    /// Items per user.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Leave out items the user interacted with in training.
    #[arg(long)]
    exclude_seen: bool,
    /// At most this many items per creator.
    #[arg(long)]
    per_creator_cap: Option<usize>,
    /// The Ed25519 public key (hex, or a file holding it) the model must be signed by. Required
    /// unless --allow-unsigned is given.
    #[arg(long)]
    trusted_key: Option<String>,
    /// Serve an unsigned model, or one signed by a key other than --trusted-key, with a warning:
    /// nothing then vouches for its provenance.
    #[arg(long)]
    allow_unsigned: bool,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// The output CSV.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// Interactions CSV or events JSONL.
    #[arg(long)]
    interactions: PathBuf,
    /// Share of each user's interactions held out.
    #[arg(long, default_value_t = 0.2)]
    holdout: f64,
    /// Hold out each user's latest interactions instead of a random sample.
    #[arg(long)]
    temporal: bool,
    /// Seed of the random hold-out.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Cut-off of the ranking metrics.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Models to evaluate, comma-separated, from popularity, als, item-knn-cosine,
    /// item-knn-bm25, blend, and any other algorithm this binary links (ease).
    #[arg(
        long,
        default_value = "popularity,als,item-knn-cosine,item-knn-bm25,blend"
    )]
    models: String,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    hyper: HyperArgs,
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// Users.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Videos.
    #[arg(long, default_value_t = 5_000)]
    videos: usize,
    /// Events.
    #[arg(long, default_value_t = 400_000)]
    events: usize,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output: interactions CSV, or events JSONL when the name ends in .jsonl.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct KeygenArgs {
    /// Where to write the PKCS#8 key; the hex public key goes to the same path plus `.pub`.
    #[arg(long)]
    out: PathBuf,
}

/// Why a command failed; printed as one line on stderr.
#[derive(Debug)]
enum CliError {
    Recsys(RecsysError),
    Residency(ResidencyError),
    Message(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Recsys(e) => e.fmt(f),
            CliError::Residency(e) => e.fmt(f),
            CliError::Message(m) => f.write_str(m),
        }
    }
}

impl From<RecsysError> for CliError {
    fn from(e: RecsysError) -> Self {
        CliError::Recsys(e)
    }
}

impl From<ResidencyError> for CliError {
    fn from(e: ResidencyError) -> Self {
        CliError::Residency(e)
    }
}

fn io_error(action: &str, path: &Path, e: std::io::Error) -> CliError {
    CliError::Message(format!("cannot {action} {}: {e}", path.display()))
}

/// Runs `domicile recsys`.
pub(crate) fn run(args: RecsysArgs) -> ExitCode {
    let result = match args.command {
        RecsysCommand::Train(a) => train(a),
        RecsysCommand::Recommend(a) => recommend(a),
        RecsysCommand::Eval(a) => eval(a),
        RecsysCommand::Generate(a) => generate(a),
        RecsysCommand::Keygen(a) => keygen(a),
        RecsysCommand::Deploy(a) => deploy(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("domicile recsys: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &Path) -> Result<Interactions, CliError> {
    let start = Instant::now();
    let data = Interactions::read(path, &ConfidenceWeights::default())?;
    eprintln!(
        "read {} users, {} items, {} pairs from {} in {:.3} s",
        data.active_users(),
        data.n_items(),
        data.pairs().len(),
        path.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(data)
}

fn train(a: TrainArgs) -> Result<(), CliError> {
    let data = load(&a.interactions)?;
    let key = match &a.signing_key {
        None => None,
        Some(path) => {
            // A 32-byte seed or a PKCS#8 document: a few hundred bytes.
            let bytes = domicile_durable::read_bounded(path, crate::text::KEY_FILE_LIMIT)
                .map_err(|e| CliError::Message(e.to_string()))?;
            Some(if bytes.len() == 32 {
                SigningKey::from_seed(&bytes)?
            } else {
                SigningKey::from_pkcs8(&bytes)?
            })
        }
    };
    let provenance = match &a.policy {
        None => {
            let region = Region::parse(&a.region)?;
            data.provenance(None, |_, _| Ok(region.clone()))?
        }
        Some(name) => {
            let policy = crate::policies::resolver()
                .resolve(name)
                .map_err(|e| CliError::Message(e.to_string()))?;
            with_policy(&data, policy.as_ref())?
        }
    };
    let algorithms = crate::algorithms::registry();
    let algorithm = algorithms.resolve(&a.model)?;
    let settings = a.hyper.settings_for(algorithm.as_ref())?;
    let start = Instant::now();
    let model = Model::train(algorithm.as_ref(), &data, &settings)?;
    let fit = start.elapsed().as_secs_f64();
    println!("fitted {} in {fit:.3} s", model.algorithm());
    if let Some(blend) = model
        .as_recommender()
        .filter(|r| r.kind() == ModelKind::Blend)
        .map(|r| r.config().blend)
        .filter(|b| b.validation > 0.0)
    {
        println!(
            "blend weights chosen on {:.0} % of the training pairs held out: ALS {}, item-item {}, popularity {}",
            blend.validation * 100.0,
            blend.als,
            blend.item_knn,
            blend.popularity
        );
    }
    // The platform screens the algorithm's parameters for every subject it was handed (users and
    // creators of the data) before the artifact is written.
    let screen = Screen::of(&data);
    let manifest = write_artifact(&a.model_out, &model, &provenance, key.as_ref(), &screen)?;
    let regions: Vec<&str> = manifest.trained_on.iter().map(Region::as_str).collect();
    println!(
        "wrote {} ({}; trained_on {}; {} subjects, {} interactions; data {})",
        a.model_out.display(),
        match &key {
            Some(k) => format!("signed by {}", hex(&k.public_key())),
            None => "unsigned".to_owned(),
        },
        regions.join(","),
        manifest.subjects,
        manifest.events,
        manifest.training_data_digest
    );
    Ok(())
}

fn with_policy(
    data: &Interactions,
    policy: &dyn ResidencyPolicy,
) -> Result<domicile_recommender::Provenance, CliError> {
    // A policy homes a subject by country: a user without one cannot be placed, and a model
    // whose provenance is unknown must not be written.
    let homeless = (0..data.n_users())
        .filter(|&u| data.user_country[u].is_none())
        .count();
    if homeless > 0 {
        // Counted, not named: an error can reach a terminal or log far from the users' region.
        return Err(CliError::Message(format!(
            "{homeless} users have no country, so --policy cannot find their home region; \
             add a `country` column, or name the one region of every subject with --region"
        )));
    }
    let id: PolicyId = policy.id().clone();
    Ok(
        data.provenance(Some(id), |user, country: Option<CountryCode>| {
            let country = country.ok_or_else(|| ResidencyError::InvalidCountryCode {
                value: String::new(),
            })?;
            policy.home_region(&Subject::new(SubjectId::parse(user)?, country))
        })?,
    )
}

fn read_trusted_key(text: &str) -> Result<[u8; 32], CliError> {
    let hex_text = if Path::new(text).is_file() {
        crate::text::read_text(Path::new(text), crate::text::KEY_FILE_LIMIT)
            .map_err(CliError::Message)?
    } else {
        text.to_owned()
    };
    let t = hex_text.trim();
    let bad = || {
        CliError::Message(format!(
            "trusted key {t:?} is not 64 hex digits (an Ed25519 public key)"
        ))
    };
    if t.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, chunk) in t.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).map_err(|_| bad())?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// How `--trusted-key` and `--allow-unsigned` decide which artifacts load.
fn trust_of(trusted_key: Option<&str>, allow_unsigned: bool) -> Result<Trust, CliError> {
    Ok(match (trusted_key, allow_unsigned) {
        (Some(text), false) => Trust::pinned(read_trusted_key(text)?),
        (Some(text), true) => Trust::pinned(read_trusted_key(text)?).or_untrusted(),
        (None, true) => Trust::allow_untrusted(),
        // Refused by the library with a typed error that says what to pass.
        (None, false) => Trust::default(),
    })
}

/// Says on stderr who vouches for a loaded model, loudly when nobody trusted does.
fn report_signature(path: &Path, signature: &SignatureStatus, doing: &str) {
    match signature {
        SignatureStatus::Trusted { public_key } => eprintln!(
            "model {} signed by the trusted key {}",
            path.display(),
            hex(public_key)
        ),
        SignatureStatus::Untrusted { public_key } => eprintln!(
            "WARNING: model {} is signed by {}, which is not a trusted key; {doing} it only \
             because --allow-unsigned was given: nothing vouches for its provenance (trained_on)",
            path.display(),
            hex(public_key)
        ),
        _ => eprintln!(
            "WARNING: model {} is UNSIGNED; {doing} it only because --allow-unsigned was given: \
             nothing vouches for its provenance (trained_on)",
            path.display()
        ),
    }
}

fn deploy(a: DeployArgs) -> Result<(), CliError> {
    use domicile_residency::{JustificationCode, Purpose};
    let trust = trust_of(a.trusted_key.as_deref(), a.allow_unsigned)?;
    let bytes = domicile_durable::read_bounded(&a.model, domicile_recommender::MAX_ARTIFACT_BYTES)
        .map_err(|e| CliError::Message(e.to_string()))?;
    let loaded = domicile_recommender::decode_artifact(
        &bytes,
        &a.model.display().to_string(),
        &trust,
        &crate::algorithms::registry(),
    )?;
    report_signature(&a.model, &loaded.signature, "deploying");
    let region = Region::parse(&a.region)?;
    let split_error = |e: domicile_split::SplitError| CliError::Message(e.to_string());
    let deployment =
        domicile_split::Deployment::open(&a.data, &a.keys, &crate::policies::resolver())
            .map_err(split_error)?;
    let node = deployment.region(&region).ok_or_else(|| {
        CliError::Message(format!(
            "region {region} is not a region of this deployment (policy {})",
            deployment.policy().id()
        ))
    })?;
    let who =
        domicile_split::ingest::ingest_principal(&deployment, &region, "model-deployer", &a.org)
            .map_err(split_error)?;
    node.gate
        .enrol(who.clone())
        .map_err(|e| CliError::Message(e.to_string()))?;
    let mut purpose = Purpose::new(JustificationCode::RecommendationTraining);
    if let Some(ticket) = &a.ticket {
        purpose = purpose.with_ticket(ticket);
    }
    let decided = node
        .gate
        .deploy_model(&who, &purpose, &loaded.manifest.trained_on, &bytes);
    let closed = deployment.close().map_err(split_error);
    let receipt = decided.map_err(|e| {
        CliError::Message(format!(
            "deploying {} in {region} refused (logged): {e}",
            a.model.display()
        ))
    })?;
    closed?;
    let dir = a.data.join(region.as_str()).join("models");
    domicile_durable::create_private_dir(&dir).map_err(|e| CliError::Message(e.to_string()))?;
    let name = a
        .model
        .file_name()
        .ok_or_else(|| CliError::Message(format!("{} names no file", a.model.display())))?;
    let target = dir.join(name);
    domicile_durable::write_private(&target, &bytes)
        .map_err(|e| CliError::Message(e.to_string()))?;
    let trained_on: Vec<&str> = loaded
        .manifest
        .trained_on
        .iter()
        .map(Region::as_str)
        .collect();
    let rule = deployment_rule(&deployment, &loaded.manifest.trained_on, &region)?;
    println!(
        "deployed {} (trained_on {}) in {region}, allowed by {rule}; logged as entry {} of the \
         {region} log",
        target.display(),
        trained_on.join(","),
        receipt.seq
    );
    Ok(())
}

/// The residency rule that allows a model trained on `trained_on` in `region`.
fn deployment_rule(
    deployment: &domicile_split::Deployment,
    trained_on: &BTreeSet<Region>,
    region: &Region,
) -> Result<String, CliError> {
    Ok(deployment
        .policy()
        .may_deploy_model(trained_on, region)?
        .rule
        .to_string())
}

fn recommend(a: RecommendArgs) -> Result<(), CliError> {
    let trust = trust_of(a.trusted_key.as_deref(), a.allow_unsigned)?;
    let loaded = read_artifact(&a.model, &trust, &crate::algorithms::registry())?;
    report_signature(&a.model, &loaded.signature, "serving");
    let model = loaded.model;
    let data = load(&a.interactions)?;
    let histories = model.histories(&data);
    let users: Vec<String> = if a.users == "all" {
        let mut active = vec![false; data.n_users()];
        for p in data.pairs() {
            active[p.user as usize] = true;
        }
        data.users
            .ids()
            .iter()
            .zip(active)
            .filter(|(_, a)| *a)
            .map(|(id, _)| id.clone())
            .collect()
    } else {
        let path = Path::new(&a.users);
        let file = std::fs::File::open(path).map_err(|e| io_error("open", path, e))?;
        let mut reader = std::io::BufReader::new(file);
        let mut buf = Vec::new();
        let mut ids = Vec::new();
        for n in 0.. {
            // A line is one user id: a few hundred bytes at most.
            let line = domicile_durable::read_line_bounded(&mut reader, &mut buf, 64 << 10)
                .map_err(|e| CliError::Message(format!("{}:{}: {e}", path.display(), n + 1)))?;
            let Some((_, line)) = line else {
                break;
            };
            let id = line.trim();
            if id.is_empty() || (n == 0 && id == "user") {
                continue;
            }
            if id.contains(',') {
                return Err(CliError::Message(format!(
                    "{}:{}: a user id contains a comma",
                    path.display(),
                    n + 1
                )));
            }
            ids.push(id.to_owned());
        }
        ids
    };
    let options = RecommendOptions {
        k: a.k,
        exclude_seen: a.exclude_seen,
        per_creator_cap: a.per_creator_cap,
        strategy: Strategy::Default,
    };
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let start = Instant::now();
    // Timed from the histories on: fold-in and serving, as a server would on each request.
    let recs = in_pool(a.threads, || {
        model.recommend_many(&histories, &refs, &options)
    })??;
    let took = start.elapsed().as_secs_f64();
    let file = std::fs::File::create(&a.out).map_err(|e| io_error("create", &a.out, e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let write = |out: &mut BufWriter<std::fs::File>| -> std::io::Result<()> {
        writeln!(out, "user,item,rank,score")?;
        for (user, list) in users.iter().zip(&recs) {
            for (rank, r) in list.iter().enumerate() {
                writeln!(out, "{user},{},{},{}", r.item, rank + 1, r.score)?;
            }
        }
        out.flush()
    };
    write(&mut out).map_err(|e| io_error("write", &a.out, e))?;
    println!("recommended for {} users in {took:.3} s", users.len());
    Ok(())
}

fn eval(a: EvalArgs) -> Result<(), CliError> {
    let data = load(&a.interactions)?;
    let holdout = if a.temporal {
        Holdout::Temporal {
            fraction: a.holdout,
        }
    } else {
        Holdout::Random {
            fraction: a.holdout,
            seed: a.seed,
        }
    };
    let (train, test) = split(&data, holdout)?;
    let names: BTreeSet<&str> = a.models.split(',').map(str::trim).collect();
    let builtin = [
        "popularity",
        "als",
        "item-knn-cosine",
        "item-knn-bm25",
        "blend",
    ];
    let algorithms = crate::algorithms::registry();
    // Every other algorithm the binary links, by its own name.
    let others: Vec<&str> = algorithms
        .names()
        .filter(|n| n.parse::<ModelKind>().is_err())
        .collect();
    let known: Vec<&str> = builtin.iter().copied().chain(others).collect();
    if let Some(bad) = names.iter().find(|n| !known.contains(n)) {
        return Err(CliError::Message(format!(
            "unknown model {bad:?} in --models; expected some of {}",
            known.join(",")
        )));
    }
    if !a.json {
        println!(
            "{:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
            "model",
            format!("prec@{}", a.k),
            format!("recall@{}", a.k),
            format!("ndcg@{}", a.k),
            format!("map@{}", a.k),
            "coverage",
            "fit_s",
            "users"
        );
    }
    for name in known.iter().filter(|n| names.contains(*n)) {
        let (algorithm, settings) = if builtin.contains(name) {
            let mut config = match *name {
                "popularity" => a.hyper.config(ModelKind::Popularity),
                "als" => a.hyper.config(ModelKind::Als),
                "blend" => a.hyper.config(ModelKind::Blend),
                _ => a.hyper.config(ModelKind::ItemKnn),
            };
            if *name == "item-knn-cosine" {
                config.item_knn.similarity = Similarity::Cosine;
            } else if *name == "item-knn-bm25" {
                config.item_knn.similarity = Similarity::bm25();
            }
            let algorithm = algorithms.resolve(config.kind.as_str())?;
            (algorithm, BuiltIn::settings(&config))
        } else {
            let algorithm = algorithms.resolve(name)?;
            let settings = a.hyper.settings_for(algorithm.as_ref())?;
            (algorithm, settings)
        };
        let start = Instant::now();
        let model = Model::train(algorithm.as_ref(), &train, &settings)?;
        let fit = start.elapsed().as_secs_f64();
        let m = in_pool(a.hyper.threads, || {
            evaluate(&model, &train, &test, a.k, Strategy::Default)
        })??;
        print_metrics(name, &m, fit, a.json);
    }
    Ok(())
}

fn print_metrics(name: &str, m: &Metrics, fit: f64, json: bool) {
    if json {
        println!(
            "{{\"model\":\"{name}\",\"k\":{},\"users\":{},\"precision\":{},\"recall\":{},\"ndcg\":{},\"map\":{},\"coverage\":{},\"fit_seconds\":{fit}}}",
            m.k, m.users, m.precision, m.recall, m.ndcg, m.map, m.coverage
        );
    } else {
        println!(
            "{name:<16} {:>9.4} {:>9.4} {:>9.4} {:>9.4} {:>9.4} {:>9.2} {:>7}",
            m.precision, m.recall, m.ndcg, m.map, m.coverage, fit, m.users
        );
    }
}

fn generate(a: GenerateArgs) -> Result<(), CliError> {
    let start = Instant::now();
    let world = World::generate(WorldConfig {
        users: a.users,
        videos: a.videos,
        events: a.events,
        seed: a.seed,
        ..WorldConfig::default()
    })?;
    if a.out.extension().is_some_and(|e| e == "jsonl") {
        world.write_events_jsonl(&a.out)?;
    } else {
        world.write_interactions_csv(&a.out, &ConfidenceWeights::default())?;
    }
    println!(
        "generated {} users, {} videos, {} events into {} in {:.2} s",
        a.users,
        a.videos,
        a.events,
        a.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn keygen(a: KeygenArgs) -> Result<(), CliError> {
    let der = SigningKey::generate_pkcs8()?;
    let key = SigningKey::from_pkcs8(&der)?;
    // A private key: mode 0600, written atomically and durably, and never over an existing key
    // (a model-signing key replaced without a word would orphan every model it signed).
    domicile_durable::create_private(&a.out, &der).map_err(RecsysError::from)?;
    let public = hex(&key.public_key());
    let mut pub_path = a.out.clone().into_os_string();
    pub_path.push(".pub");
    let pub_path = PathBuf::from(pub_path);
    // The public half is meant to be handed out: world-readable.
    domicile_durable::write_public(&pub_path, format!("{public}\n").as_bytes())
        .map_err(RecsysError::from)?;
    println!("{public}");
    Ok(())
}
