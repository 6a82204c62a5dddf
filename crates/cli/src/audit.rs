//! `domicile audit`: the auditor's command line.
//!
//! Everything but `keygen`, `append` and `witness` reads a log directory without writing to it
//! and needs only public keys; `pseudonym` needs the region's audit key.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use domicile_audit::merkle::hex;
use domicile_audit::query;
use domicile_audit::{
    for_each_entry, load_tree, prove, stored_checkpoints, stored_cosigned, verify_against,
    AuditError, AuditKey, AuditLog, Checkpoint, Entry, InclusionProof, KeyKind, LogConfig, Note,
    Pseudonym, SigningKey, VerifierKey, Witness, WitnessPolicy, MAX_ENTRY_BYTES,
};
use domicile_residency::{JustificationCode, RuleId, SubjectId};

/// Arguments of `domicile audit`.
#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Generate a log's keys (or, with --witness, a witness's).
    ///
    /// Writes the log signing key (DIR/log.key, 0600), its verifier key (DIR/log.vkey) and the
    /// region's audit key for pseudonyms (DIR/audit.key, 0600); with --witness, a witness's
    /// cosigning key pair instead (DIR/witness.key, DIR/witness.vkey).
    Keygen {
        /// The log's origin (or the witness's name), e.g. audit.example.com/us.
        #[arg(long)]
        origin: String,
        /// Where to write the keys.
        #[arg(long)]
        out: PathBuf,
        /// Generate a witness cosignature key instead of a log key.
        #[arg(long)]
        witness: bool,
    },
    /// Append JSON-lines entries from stdin, then sign a checkpoint.
    ///
    /// A line may carry a top-level "subject_id", which is replaced by its pseudonym under
    /// --audit-key; the plaintext id is never written.
    Append {
        /// The log directory.
        #[arg(long)]
        log: PathBuf,
        /// The log's private key file.
        #[arg(long)]
        key: PathBuf,
        /// The region's audit key, to pseudonymise "subject_id".
        #[arg(long)]
        audit_key: Option<PathBuf>,
    },
    /// Verify a log offline: every entry, every checkpoint, their consistency, the cosignatures.
    Verify {
        /// The log directory.
        #[arg(long, required_unless_present = "url")]
        log: Option<PathBuf>,
        /// Follow the log over HTTP instead, as C2SP tlog-tiles at this URL prefix: every entry
        /// bundle and tile is fetched and checked against the signed checkpoint.
        #[arg(long, conflicts_with_all = ["log", "allow_empty"])]
        url: Option<String>,
        /// A PEM CA certificate to trust for an https:// --url, beside the system's (repeatable).
        #[arg(long, requires = "url")]
        ca: Vec<PathBuf>,
        /// The log's verifier key file.
        #[arg(long)]
        vkey: PathBuf,
        #[command(flatten)]
        witnesses: WitnessArgs,
        /// A signed checkpoint note you already hold (from an earlier verification, a report,
        /// a witness); the log must be consistent with it (repeatable). A log cut back below
        /// it, or with another history, fails.
        #[arg(long = "checkpoint")]
        checkpoints: Vec<PathBuf>,
        /// Accept a log with no entries (a missing or empty log is an error otherwise).
        #[arg(long)]
        allow_empty: bool,
    },
    /// Publish a log directory over HTTP as C2SP tlog-tiles (`/checkpoint`, `/tile/…`), read-only,
    /// until SIGTERM or Ctrl-C. Prints `listening on ADDR` once it accepts connections.
    Serve {
        /// The log directory.
        #[arg(long)]
        log: PathBuf,
        /// The address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:7381")]
        listen: std::net::SocketAddr,
    },
    /// Print the latest signed checkpoint note (with any cosignatures).
    Checkpoint {
        /// The log directory.
        #[arg(long)]
        log: PathBuf,
    },
    /// List entries matching every filter given.
    Query(QueryArgs),
    /// Write an inclusion proof (C2SP tlog-proof, with the entry's bytes) for one entry.
    Prove {
        /// The log directory.
        #[arg(long)]
        log: PathBuf,
        /// The entry's sequence number.
        #[arg(long)]
        seq: u64,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a tlog-proof offline and print the entry it proves, as JSON.
    CheckProof {
        /// The log's verifier key file.
        #[arg(long)]
        vkey: PathBuf,
        /// The proof file.
        proof: PathBuf,
        #[command(flatten)]
        witnesses: WitnessArgs,
    },
    /// Print a pseudonym as the region's log holds it, under the region's audit key.
    ///
    /// For a subject (`--subject ID`, or the id alone), the 64 hex digits an entry's
    /// `resource.subject` holds; for a record (`--collection C --key K`), the `hmac:…` value an
    /// entry's `resource.target.key` holds.
    Pseudonym {
        /// The region's audit key file.
        #[arg(long)]
        audit_key: PathBuf,
        /// The subject id.
        #[arg(conflicts_with_all = ["subject", "collection"])]
        subject_id: Option<String>,
        /// The subject id (the same as giving it alone).
        #[arg(long, conflicts_with = "collection")]
        subject: Option<String>,
        /// The record's collection, for a record-key pseudonym (with --key).
        #[arg(long, requires = "key")]
        collection: Option<String>,
        /// The record's key, for a record-key pseudonym (with --collection).
        #[arg(long, requires = "collection")]
        key: Option<String>,
    },
    /// Act as a witness: check and cosign the latest checkpoint.
    ///
    /// Checks the latest checkpoint against the last one this witness cosigned (kept in
    /// --state) with a consistency proof, cosigns it, and stores the cosignature in the log.
    Witness {
        /// The log directory.
        #[arg(long)]
        log: PathBuf,
        /// The log's verifier key file.
        #[arg(long)]
        vkey: PathBuf,
        /// The witness's private key file.
        #[arg(long)]
        key: PathBuf,
        /// The witness's state file (created on first use).
        #[arg(long)]
        state: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct WitnessArgs {
    /// A trusted witness's verifier key file (repeatable).
    #[arg(long = "witness-vkey")]
    witness_vkeys: Vec<PathBuf>,
    /// How many of those witnesses must have cosigned the latest checkpoint.
    #[arg(long, default_value_t = 0)]
    quorum: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Jsonl,
    Csv,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DecisionArg {
    Allow,
    Deny,
}

#[derive(Debug, clap::Args)]
struct QueryArgs {
    /// The log directory.
    #[arg(long)]
    log: PathBuf,
    /// Only this principal id.
    #[arg(long)]
    principal: Option<String>,
    /// Only entries that touched this subject: a subject id when --audit-key is given, else
    /// its pseudonym (64 hex digits; see `domicile audit pseudonym`). Bulk entries whose
    /// subject set holds them are listed too, each with its inclusion proof, verified against
    /// the entry.
    #[arg(long)]
    subject: Option<String>,
    /// The region's audit key file, to turn --subject ID into its pseudonym.
    #[arg(long, requires = "subject")]
    audit_key: Option<PathBuf>,
    /// Only entries at or after this time (RFC 3339 UTC, or milliseconds since the epoch).
    #[arg(long)]
    since: Option<String>,
    /// Only entries before this time (RFC 3339 UTC, or milliseconds since the epoch).
    #[arg(long)]
    until: Option<String>,
    /// Only allowed or only denied accesses.
    #[arg(long)]
    decision: Option<DecisionArg>,
    /// Only entries decided by this rule id.
    #[arg(long)]
    rule: Option<String>,
    /// Only this justification code (user_requested_support, legal_request, …).
    #[arg(long)]
    purpose: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// A failure of a subcommand: the message and the exit code.
struct Failure(String, u8);

impl From<AuditError> for Failure {
    fn from(e: AuditError) -> Self {
        Failure(e.to_string(), 1)
    }
}

fn usage(msg: String) -> Failure {
    Failure(msg, 2)
}

/// Runs `domicile audit`.
pub(crate) fn run(args: AuditArgs) -> ExitCode {
    match run_command(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg, code)) => {
            eprintln!("domicile audit: {msg}");
            ExitCode::from(code)
        }
    }
}

fn run_command(command: AuditCommand) -> Result<(), Failure> {
    match command {
        AuditCommand::Keygen {
            origin,
            out,
            witness,
        } => keygen(&origin, &out, witness),
        AuditCommand::Append {
            log,
            key,
            audit_key,
        } => append(&log, &key, audit_key.as_deref()),
        AuditCommand::Verify {
            log,
            url,
            ca,
            vkey,
            witnesses,
            checkpoints,
            allow_empty,
        } => match (log, url) {
            (_, Some(url)) => {
                let held = held_notes(&checkpoints)?;
                let report = crate::tlog::verify_url(
                    &url,
                    &read_vkey(&vkey)?,
                    policy(&witnesses)?.as_ref(),
                    &held,
                    &ca,
                )
                .map_err(|e| Failure(e, 1))?;
                print_out(&report)
            }
            (Some(log), None) => verify_cmd(&log, &vkey, &witnesses, &checkpoints, allow_empty),
            (None, None) => Err(usage("give --log DIR or --url URL".into())),
        },
        AuditCommand::Serve { log, listen } => {
            crate::tlog::audit_serve(&log, listen).map_err(|e| Failure(e, 1))
        }
        AuditCommand::Checkpoint { log } => checkpoint(&log),
        AuditCommand::Query(q) => query(&q),
        AuditCommand::Prove { log, seq, out } => {
            let text = prove(&log, seq)?.to_text();
            match out {
                Some(path) => write_file(&path, text.as_bytes(), false),
                None => print_out(&text),
            }
        }
        AuditCommand::CheckProof {
            vkey,
            proof,
            witnesses,
        } => {
            let key = read_vkey(&vkey)?;
            let policy = policy(&witnesses)?;
            let text = read_text(&proof)?;
            let doc = InclusionProof::parse(&text)?;
            let entry = doc.check(&key, policy.as_ref())?;
            let json = serde_json::to_string_pretty(&entry).map_err(|e| usage(e.to_string()))?;
            eprintln!(
                "proof OK: entry {} is in the log {} at size {}",
                entry.seq,
                key.name(),
                { Checkpoint::parse(&doc.checkpoint.text)?.size }
            );
            print_out(&(json + "\n"))
        }
        AuditCommand::Pseudonym {
            audit_key,
            subject_id,
            subject,
            collection,
            key: record_key,
        } => {
            let key = AuditKey::parse(&read_text(&audit_key)?)?;
            match (subject_id.or(subject), collection, record_key) {
                (Some(id), None, None) => {
                    let subject = SubjectId::parse(&id).map_err(|e| usage(e.to_string()))?;
                    print_out(&format!("{}\n", key.pseudonym(&subject)))
                }
                (None, Some(collection), Some(record_key)) => print_out(&format!(
                    "{}\n",
                    key.record_key_pseudonym(&collection, &record_key)
                )),
                _ => Err(usage(
                    "give a subject id (--subject ID), or a record's --collection and --key".into(),
                )),
            }
        }
        AuditCommand::Witness {
            log,
            vkey,
            key,
            state,
        } => witness(&log, &vkey, &key, &state),
    }
}

fn print_out(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| Failure(format!("writing to stdout: {e}"), 1))
}

/// The largest input file any `domicile audit` command reads (keys, notes, proofs).
const MAX_INPUT_BYTES: u64 = 16 << 20;

fn read_text(path: &Path) -> Result<String, Failure> {
    crate::text::read_text(path, MAX_INPUT_BYTES).map_err(usage)
}

fn read_vkey(path: &Path) -> Result<VerifierKey, Failure> {
    Ok(VerifierKey::parse(&read_text(path)?)?)
}

/// Writes an output file atomically and durably. A private key is created exclusively (never
/// overwritten); other outputs replace what was there.
fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), Failure> {
    let written = if private {
        domicile_durable::create_private(path, bytes)
    } else {
        domicile_durable::write_private(path, bytes)
    };
    written.map_err(|e| Failure(e.to_string(), 1))
}

fn policy(args: &WitnessArgs) -> Result<Option<WitnessPolicy>, Failure> {
    if args.witness_vkeys.is_empty() && args.quorum == 0 {
        return Ok(None);
    }
    let keys = args
        .witness_vkeys
        .iter()
        .map(|p| read_vkey(p))
        .collect::<Result<Vec<_>, _>>()?;
    let quorum = if args.quorum == 0 {
        keys.len()
    } else {
        args.quorum
    };
    Ok(Some(WitnessPolicy::new(keys, quorum)?))
}

fn keygen(origin: &str, out: &Path, witness: bool) -> Result<(), Failure> {
    fs::create_dir_all(out).map_err(|e| usage(format!("creating {}: {e}", out.display())))?;
    let (kind, stem) = if witness {
        (KeyKind::Cosignature, "witness")
    } else {
        (KeyKind::Ed25519, "log")
    };
    let key = SigningKey::generate(origin, kind)?;
    write_file(
        &out.join(format!("{stem}.key")),
        format!("{}\n", key.to_private_text()).as_bytes(),
        true,
    )?;
    write_file(
        &out.join(format!("{stem}.vkey")),
        format!("{}\n", key.verifier()).as_bytes(),
        false,
    )?;
    if !witness {
        let audit = AuditKey::generate()?;
        write_file(
            &out.join("audit.key"),
            format!("{}\n", audit.to_hex()).as_bytes(),
            true,
        )?;
    }
    print_out(&format!("{}\n", key.verifier()))
}

fn append(log: &Path, key_path: &Path, audit_key: Option<&Path>) -> Result<(), Failure> {
    let key = SigningKey::parse(&read_text(key_path)?)?;
    let audit_key = audit_key
        .map(|p| read_text(p).and_then(|t| Ok(AuditKey::parse(&t)?)))
        .transpose()?;
    let mut config = LogConfig::new(key);
    config.checkpoint_interval = None;
    // The signer remembers its latest checkpoint beside its key (`log.state` next to
    // `log.key`), so a log cut back since is refused instead of signed again as a fork.
    config.signed_state = Some(key_path.with_extension("state"));
    let log = AuditLog::open(log, config)?;
    if let Some((path, offset, bytes)) = &log.open_report().torn_tail {
        eprintln!(
            "repaired a torn write: removed {bytes} unacknowledged bytes at {}:{offset}",
            path.display()
        );
    }
    let mut count = 0u64;
    let mut stdin = std::io::stdin().lock();
    let mut buf = Vec::new();
    for n in 0.. {
        let bad = |what: String| usage(format!("stdin line {}: {what}", n + 1));
        // An entry is at most MAX_ENTRY_BYTES; its JSON line, with escapes and spacing, a few
        // times that.
        let limit = 4 * MAX_ENTRY_BYTES as u64;
        let Some((_, line)) = domicile_durable::read_line_bounded(&mut stdin, &mut buf, limit)
            .map_err(|e| bad(e.to_string()))?
        else {
            break;
        };
        if line.trim().is_empty() {
            continue;
        }
        // serde's messages quote the values they reject, and a line holds ids: the syntax
        // error's position, or the field and what was expected, never the value.
        let mut value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            bad(format!(
                "not JSON ({:?} error at column {})",
                e.classify(),
                e.column()
            ))
        })?;
        let subject_id = value
            .as_object_mut()
            .and_then(|o| o.remove("subject_id"))
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad("subject_id is not a string".into()))
            })
            .transpose()?;
        let mut entry: Entry = serde_path_to_error::deserialize(value).map_err(|e| {
            let field = match e.path().to_string() {
                top if top == "." => "the entry".to_owned(),
                field => field,
            };
            let why = crate::text::withhold_values(&e.inner().to_string());
            bad(format!("{field}: {why}"))
        })?;
        if let Some(id) = subject_id {
            let key = audit_key
                .as_ref()
                .ok_or_else(|| bad("subject_id given without --audit-key".into()))?;
            let subject = SubjectId::parse(&id).map_err(|e| bad(e.to_string()))?;
            entry.resource.subject = Some(key.pseudonym(&subject));
        }
        // Invariant 6: a record key often embeds a user id, so the log takes it only as its
        // keyed pseudonym (`hmac:…`, what `audit pseudonym --collection C --key K` prints) or as
        // an approval reference, never in clear.
        if let domicile_audit::Target::Record { key } = &entry.resource.target {
            let pseudonymous = key.parse::<domicile_audit::RecordKeyPseudonym>().is_ok()
                || key.starts_with("approval:");
            if !pseudonymous {
                return Err(bad(
                    "resource.target.key is not a record-key pseudonym (hmac: and 64 hex \
                     digits); compute it with `domicile audit pseudonym --collection C --key K`"
                        .into(),
                ));
            }
        }
        log.append(entry)?;
        count += 1;
    }
    let note = log.checkpoint()?;
    log.close()?;
    eprintln!("appended {count} entries; the log holds {}", log.size());
    if let Some(note) = note {
        print_out(&note.to_text())?;
    }
    Ok(())
}

fn verify_cmd(
    log: &Path,
    vkey: &Path,
    witnesses: &WitnessArgs,
    checkpoints: &[PathBuf],
    allow_empty: bool,
) -> Result<(), Failure> {
    let key = read_vkey(vkey)?;
    let policy = policy(witnesses)?;
    let held = held_notes(checkpoints)?;
    if !log.is_dir() && !allow_empty {
        return Err(Failure(
            format!(
                "FAILED: there is no log at {} (pass --allow-empty to accept a missing log)",
                log.display()
            ),
            1,
        ));
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("verifying {bar:40} {bytes}/{total_bytes} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let result = verify_against(log, &key, policy.as_ref(), &held, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    match result {
        Ok(r) if r.entries == 0 && !allow_empty => Err(Failure(
            format!(
                "FAILED: the log at {} holds no entries (pass --allow-empty to accept an empty log)",
                log.display()
            ),
            1,
        )),
        Ok(r) => {
            // The entries are proven; now the subject lists the bulk ones commit to.
            let bulk = domicile_audit::verify_subject_sets(log)
                .map_err(|e| Failure(format!("FAILED: {e}"), 1))?;
            print_out(&format!(
                "OK: {} entries, {} signed checkpoints, root {}, {} witness cosignatures, consistent with {} held checkpoint(s); the subject sets of {bulk} bulk entries match their lists\n",
                r.entries,
                r.checkpoints,
                hex(&r.root),
                r.witnesses,
                held.len()
            ))
        }
        Err(e) => Err(Failure(format!("FAILED: {e}"), 1)),
    }
}

/// The checkpoint notes an auditor already holds, from files.
fn held_notes(checkpoints: &[PathBuf]) -> Result<Vec<Note>, Failure> {
    checkpoints
        .iter()
        .map(|p| {
            Note::parse(read_text(p)?.as_bytes())
                .map_err(|e| usage(format!("{}: {e}", p.display())))
        })
        .collect()
}

fn checkpoint(log: &Path) -> Result<(), Failure> {
    let notes = stored_checkpoints(log)?;
    let Some(mut latest) = notes.last().cloned() else {
        return Err(Failure(
            format!("{} holds no signed checkpoint", log.display()),
            1,
        ));
    };
    for cosigned in stored_cosigned(log)? {
        if cosigned.text == latest.text {
            for s in cosigned.signatures {
                if !latest.signatures.contains(&s) {
                    latest.signatures.push(s);
                }
            }
        }
    }
    print_out(&latest.to_text())
}

fn witness(log: &Path, vkey: &Path, key: &Path, state: &Path) -> Result<(), Failure> {
    let log_key = read_vkey(vkey)?;
    let key = SigningKey::parse(&read_text(key)?)?;
    let last = if state.exists() {
        let text = read_text(state)?;
        let cp = Checkpoint::parse(&text)?;
        Some((cp.size, cp.root))
    } else {
        None
    };
    let w = Witness::new(key, log_key.clone(), last)?;
    let notes = stored_checkpoints(log)?;
    let note: Note = notes
        .last()
        .cloned()
        .ok_or_else(|| Failure(format!("{} holds no signed checkpoint", log.display()), 1))?;
    let cp = Checkpoint::parse(&note.text)?;
    let proof = match last {
        Some((size, _)) if size <= cp.size => load_tree(log)?
            .consistency_proof(size, cp.size)
            .map_err(AuditError::from)?,
        _ => Vec::new(),
    };
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let sig = w.cosign(&note, &proof, time)?;
    let mut cosigned = note.clone();
    cosigned.signatures.push(sig);
    domicile_audit::store_cosigned(log, &log_key, &cosigned)?;
    // The state is the checkpoint body this witness last cosigned.
    // Durable before the cosignature is printed: a witness that forgot what it cosigned after a
    // power cut could be led to cosign a fork.
    domicile_durable::write_private(state, note.text.as_bytes())
        .map_err(|e| Failure(e.to_string(), 1))?;
    print_out(&cosigned.to_text())
}

/// Milliseconds since the epoch, or `YYYY-MM-DDTHH:MM:SS[.mmm]Z`.
fn parse_time(text: &str) -> Result<u64, Failure> {
    query::parse_time(text).ok_or_else(|| {
        usage(format!(
            "time {text:?}: expected milliseconds or YYYY-MM-DDTHH:MM:SSZ"
        ))
    })
}

fn query(q: &QueryArgs) -> Result<(), Failure> {
    let subject: Option<Pseudonym> = match (&q.subject, &q.audit_key) {
        (None, _) => None,
        (Some(id), Some(key_path)) => {
            let key = AuditKey::parse(&read_text(key_path)?)?;
            // The id is never echoed: it names a person.
            let id = SubjectId::parse(id)
                .map_err(|_| usage("--subject is not a valid subject id".into()))?;
            Some(key.pseudonym(&id))
        }
        (Some(p), None) => Some(p.parse::<Pseudonym>().map_err(|_| {
            usage(
                "--subject without --audit-key must be a pseudonym (64 hex digits); \
                 give --audit-key KEY to look a subject id up"
                    .into(),
            )
        })?),
    };
    let filter = query::Filter {
        principal: q.principal.clone(),
        subject: None,
        since_ms: q.since.as_deref().map(parse_time).transpose()?,
        until_ms: q.until.as_deref().map(parse_time).transpose()?,
        allowed: q.decision.map(|d| matches!(d, DecisionArg::Allow)),
        rule: q
            .rule
            .as_deref()
            .map(|r| RuleId::parse(r).map_err(|e| usage(e.to_string())))
            .transpose()?,
        purpose: q
            .purpose
            .as_deref()
            .map(|p| {
                p.parse::<JustificationCode>()
                    .map_err(|e| usage(e.to_string()))
            })
            .transpose()?,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let io = |e: std::io::Error| AuditError::Io {
        action: "writing",
        path: PathBuf::from("stdout"),
        source: e,
    };
    match q.format {
        // The table is written once every row is known, so its columns line up.
        Format::Table => {}
        Format::Csv if subject.is_some() => {
            writeln!(out, "{},how", query::CSV_HEADER).map_err(io)?
        }
        Format::Csv => writeln!(out, "{}", query::CSV_HEADER).map_err(io)?,
        Format::Jsonl => {}
    }
    let mut matched = 0u64;
    let mut in_sets = 0u64;
    let mut rows = Vec::new();
    let mut touched_rows = Vec::new();
    let mut sets = query::SetCache::new();
    for_each_entry(&q.log, &mut |_, _| {}, |seq, bytes, _| {
        let e = Entry::from_canonical(bytes).map_err(|err| AuditError::BadStoredEntry {
            seq,
            reason: err.to_string(),
        })?;
        if !filter.matches_but_subject(&e) {
            return Ok(());
        }
        let touch = match &subject {
            None => None,
            Some(p) => match query::touched(&q.log, &e, p, &mut sets)? {
                None => return Ok(()),
                Some(t) => Some(t),
            },
        };
        matched += 1;
        if matches!(touch, Some(query::Touch::InSet(_))) {
            in_sets += 1;
        }
        let line = match q.format {
            Format::Jsonl => {
                let mut json = serde_json::to_value(&e).map_err(|err| AuditError::BadField {
                    field: "entry",
                    value: seq.to_string(),
                    reason: err.to_string(),
                })?;
                if let (Some(query::Touch::InSet(proof)), Some(obj)) =
                    (&touch, json.as_object_mut())
                {
                    obj.insert(
                        "subject_proof".into(),
                        serde_json::json!({
                            "index": proof.index,
                            "size": proof.size,
                            "path": proof.path.iter().map(|h| hex(h)).collect::<Vec<_>>(),
                        }),
                    );
                }
                json.to_string()
            }
            Format::Table => {
                match touch {
                    Some(t) => touched_rows.push((e, t)),
                    None => rows.push(e),
                }
                return Ok(());
            }
            Format::Csv => match &touch {
                Some(t) => format!("{},\"{}\"", query::csv_row(&e), t.describe()),
                None => query::csv_row(&e),
            },
        };
        writeln!(out, "{line}").map_err(io)
    })?;
    if matches!(q.format, Format::Table) {
        let table = match subject {
            Some(_) => query::table_with_touches(&touched_rows),
            None => query::table(&rows),
        };
        out.write_all(table.as_bytes()).map_err(io)?;
    }
    out.flush().map_err(io)?;
    match subject {
        Some(_) => eprintln!(
            "{matched} entries touched the subject ({in_sets} of them bulk, each proven by its subject set)"
        ),
        None => eprintln!("{matched} matching entries"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_times_are_usage_errors_quoting_them() {
        let Err(Failure(msg, code)) = parse_time("yesterday") else {
            panic!("accepted");
        };
        assert_eq!(code, 2);
        assert!(msg.contains("\"yesterday\""), "{msg}");
        assert_eq!(parse_time("1000").ok(), Some(1000));
    }
}
