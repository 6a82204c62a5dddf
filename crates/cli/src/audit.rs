//! `domicile audit`: the auditor's command line.
//!
//! Everything but `keygen`, `append` and `witness` reads a log directory without writing to it
//! and needs only public keys; `pseudonym` needs the region's audit key.

use std::fs;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use domicile_audit::merkle::hex;
use domicile_audit::{
    for_each_entry, load_tree, prove, stored_checkpoints, stored_cosigned, verify, AuditError,
    AuditKey, AuditLog, Checkpoint, Entry, InclusionProof, KeyKind, LogConfig, Note, Pseudonym,
    SigningKey, Target, VerifierKey, Witness, WitnessPolicy,
};
use domicile_residency::{JustificationCode, RuleId, SubjectId};

/// Arguments of `domicile audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
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
        #[arg(long)]
        log: PathBuf,
        /// The log's verifier key file.
        #[arg(long)]
        vkey: PathBuf,
        #[command(flatten)]
        witnesses: WitnessArgs,
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
    /// Print the pseudonym of a subject under the region's audit key.
    Pseudonym {
        /// The region's audit key file.
        #[arg(long)]
        audit_key: PathBuf,
        /// The subject id.
        subject_id: String,
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
    /// Only this subject pseudonym (64 hex digits; see `domicile audit pseudonym`).
    #[arg(long)]
    subject: Option<String>,
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
pub fn run(args: AuditArgs) -> ExitCode {
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
            vkey,
            witnesses,
        } => verify_cmd(&log, &vkey, &witnesses),
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
        } => {
            let key = AuditKey::parse(&read_text(&audit_key)?)?;
            let subject = SubjectId::parse(&subject_id).map_err(|e| usage(e.to_string()))?;
            print_out(&format!("{}\n", key.pseudonym(&subject)))
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

fn read_text(path: &Path) -> Result<String, Failure> {
    fs::read_to_string(path).map_err(|e| usage(format!("reading {}: {e}", path.display())))
}

fn read_vkey(path: &Path) -> Result<VerifierKey, Failure> {
    Ok(VerifierKey::parse(&read_text(path)?)?)
}

fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure(format!("writing {}: {e}", path.display()), 1);
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).create_new(true);
    }
    let mut f = options.open(path).map_err(fail)?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(fail)
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

fn append(log: &Path, key: &Path, audit_key: Option<&Path>) -> Result<(), Failure> {
    let key = SigningKey::parse(&read_text(key)?)?;
    let audit_key = audit_key
        .map(|p| read_text(p).and_then(|t| Ok(AuditKey::parse(&t)?)))
        .transpose()?;
    let mut config = LogConfig::new(key);
    config.checkpoint_interval = None;
    let log = AuditLog::open(log, config)?;
    if let Some((path, offset, bytes)) = &log.open_report().torn_tail {
        eprintln!(
            "repaired a torn write: removed {bytes} unacknowledged bytes at {}:{offset}",
            path.display()
        );
    }
    let mut count = 0u64;
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.map_err(|e| Failure(format!("reading stdin: {e}"), 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: String| usage(format!("stdin line {}: {what}", n + 1));
        let mut value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
        let subject_id = value
            .as_object_mut()
            .and_then(|o| o.remove("subject_id"))
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad("subject_id is not a string".into()))
            })
            .transpose()?;
        let mut entry: Entry = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        if let Some(id) = subject_id {
            let key = audit_key
                .as_ref()
                .ok_or_else(|| bad("subject_id given without --audit-key".into()))?;
            let subject = SubjectId::parse(&id).map_err(|e| bad(e.to_string()))?;
            entry.resource.subject = Some(key.pseudonym(&subject));
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

fn verify_cmd(log: &Path, vkey: &Path, witnesses: &WitnessArgs) -> Result<(), Failure> {
    let key = read_vkey(vkey)?;
    let policy = policy(witnesses)?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("verifying {bar:40} {bytes}/{total_bytes} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let result = verify(log, &key, policy.as_ref(), &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    match result {
        Ok(r) => print_out(&format!(
            "OK: {} entries, {} signed checkpoints, root {}, {} witness cosignatures\n",
            r.entries,
            r.checkpoints,
            hex(&r.root),
            r.witnesses
        )),
        Err(e) => Err(Failure(format!("FAILED: {e}"), 1)),
    }
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
    let tmp = state.with_extension("tmp");
    fs::write(&tmp, &note.text)
        .and_then(|_| fs::rename(&tmp, state))
        .map_err(|e| Failure(format!("writing {}: {e}", state.display()), 1))?;
    print_out(&cosigned.to_text())
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn rfc3339(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        t / 3600,
        t / 60 % 60,
        t % 60,
        ms % 1000
    )
}

/// Milliseconds since the epoch, or `YYYY-MM-DDTHH:MM:SS[.mmm]Z`.
fn parse_time(text: &str) -> Result<u64, Failure> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let bad = || {
        usage(format!(
            "time {text:?}: expected milliseconds or YYYY-MM-DDTHH:MM:SSZ"
        ))
    };
    let t = text.strip_suffix('Z').ok_or_else(bad)?;
    let (date, clock) = t.split_once('T').ok_or_else(bad)?;
    let nums = |s: &str, sep| -> Result<Vec<u64>, Failure> {
        s.split(sep)
            .map(|p| p.parse::<u64>().map_err(|_| bad()))
            .collect()
    };
    let (clock, millis) = match clock.split_once('.') {
        Some((c, f)) => (c, f.parse::<u64>().map_err(|_| bad())?),
        None => (clock, 0),
    };
    let (d, c) = (nums(date, '-')?, nums(clock, ':')?);
    let (&[y, mo, da], &[h, mi, s]) = (&d[..], &c[..]) else {
        return Err(bad());
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || s > 60 {
        return Err(bad());
    }
    let days = days_from_civil(y as i64, mo as u32, da as u32);
    let secs = u64::try_from(days * 86_400).map_err(|_| bad())? + h * 3600 + mi * 60 + s;
    Ok(secs * 1000 + millis)
}

fn query(q: &QueryArgs) -> Result<(), Failure> {
    let subject = q
        .subject
        .as_deref()
        .map(|s| s.parse::<Pseudonym>())
        .transpose()?;
    let rule = q
        .rule
        .as_deref()
        .map(|r| RuleId::parse(r).map_err(|e| usage(e.to_string())))
        .transpose()?;
    let purpose = q
        .purpose
        .as_deref()
        .map(|p| {
            p.parse::<JustificationCode>()
                .map_err(|e| usage(e.to_string()))
        })
        .transpose()?;
    let since = q.since.as_deref().map(parse_time).transpose()?;
    let until = q.until.as_deref().map(parse_time).transpose()?;
    let keep = |e: &Entry| {
        q.principal.as_ref().is_none_or(|p| &e.principal.id == p)
            && subject.is_none_or(|s| e.resource.subject == Some(s))
            && since.is_none_or(|t| e.time_ms >= t)
            && until.is_none_or(|t| e.time_ms < t)
            && q.decision
                .is_none_or(|d| e.decision.allowed == matches!(d, DecisionArg::Allow))
            && rule.as_ref().is_none_or(|r| e.decision.rules.contains(r))
            && purpose.is_none_or(|p| e.purpose.code == p)
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let io = |e: std::io::Error| AuditError::Io {
        action: "writing",
        path: PathBuf::from("stdout"),
        source: e,
    };
    match q.format {
        Format::Table => writeln!(
            out,
            "{:>6}  {:<24}  {:<40}  {:<7}  {:<10}  {:<16}  {:<5}  {:<40}  {:<22}",
            "SEQ", "TIME", "PRINCIPAL", "ACTION", "CLASS", "SUBJECT", "ALLOW", "RULE", "PURPOSE"
        )
        .map_err(io)?,
        Format::Csv => writeln!(
            out,
            "seq,time,principal,organisation,action,class,collection,subject,target,allowed,rules,purpose,ticket,request_id"
        )
        .map_err(io)?,
        Format::Jsonl => {}
    }
    let mut matched = 0u64;
    for_each_entry(&q.log, &mut |_, _| {}, |seq, bytes, _| {
        let e = Entry::from_canonical(bytes).map_err(|err| AuditError::BadStoredEntry {
            seq,
            reason: err.to_string(),
        })?;
        if !keep(&e) {
            return Ok(());
        }
        matched += 1;
        let subject = e
            .resource
            .subject
            .map(|s| s.to_string())
            .unwrap_or_default();
        let rules: Vec<&str> = e.decision.rules.iter().map(RuleId::as_str).collect();
        match q.format {
            Format::Jsonl => {
                let json = serde_json::to_string(&e).map_err(|err| AuditError::BadField {
                    field: "entry",
                    value: seq.to_string(),
                    reason: err.to_string(),
                })?;
                writeln!(out, "{json}").map_err(io)
            }
            Format::Table => writeln!(
                out,
                "{:>6}  {:<24}  {:<40}  {:<7}  {:<10}  {:<16}  {:<5}  {:<40}  {:<22}",
                e.seq,
                rfc3339(e.time_ms),
                e.principal.id,
                e.action.as_str(),
                e.resource.class.as_str(),
                subject.get(..16).unwrap_or("-"),
                if e.decision.allowed { "yes" } else { "no" },
                rules.join(" "),
                e.purpose.to_string()
            )
            .map_err(io),
            Format::Csv => {
                let target = match &e.resource.target {
                    Target::Record { key } => key.clone(),
                    Target::Bulk { count } => format!("{count} records"),
                };
                let fields = [
                    e.seq.to_string(),
                    rfc3339(e.time_ms),
                    e.principal.id.clone(),
                    e.principal.organisation.clone(),
                    e.action.as_str().to_owned(),
                    e.resource.class.as_str().to_owned(),
                    e.resource.collection.clone(),
                    subject,
                    target,
                    e.decision.allowed.to_string(),
                    rules.join(" "),
                    e.purpose.code.as_str().to_owned(),
                    e.purpose.ticket.clone().unwrap_or_default(),
                    e.request_id.clone(),
                ];
                let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                writeln!(out, "{}", line.join(",")).map_err(io)
            }
        }
    })?;
    out.flush().map_err(io)?;
    eprintln!("{matched} matching entries");
    Ok(())
}

fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_750_000_000_123), "2025-06-15T15:06:40.123Z");
        for ms in [0u64, 951_782_400_000, 1_750_000_000_123, 4_102_444_800_000] {
            assert_eq!(parse_time(&rfc3339(ms)).ok(), Some(ms));
        }
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2025-13-01T00:00:00Z").is_err());
    }

    #[test]
    fn csv_quotes() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
