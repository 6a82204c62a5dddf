//! `domicile split`: move a deployment from one residency policy to another.
//!
//! `plan` shows what would move where and changes no data; `run` performs the split (resumable:
//! run it again after a crash or Ctrl-C); `verify` checks a split deployment against its policy,
//! its report and its logs; `report` prints the signed report and checks its signature.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Subcommand;
use domicile_split::{
    check_report_pinning_logs, parse_migration_vkey, pinned_migration_key, run, split_dir,
    Deployment, Plan, Progress, RunOptions, SplitError, MIGRATION_VKEY,
};
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `domicile split`.
#[derive(Debug, clap::Args)]
pub(crate) struct SplitArgs {
    #[command(subcommand)]
    command: SplitCommand,
}

#[derive(Debug, clap::Args)]
struct Dirs {
    /// The deployment's data root (holds deployment.json and one folder per region).
    #[arg(long)]
    data: PathBuf,
    /// The key custodian's root, kept apart from the data.
    #[arg(long)]
    keys: PathBuf,
}

#[derive(Debug, Subcommand)]
enum SplitCommand {
    /// Show what a split to POLICY would move, replicate and shred. Changes no data (the
    /// inventory reads are logged in each region's audit log).
    Plan {
        #[command(flatten)]
        dirs: Dirs,
        /// The target policy: global or us-split.
        #[arg(long)]
        to: String,
        /// Print the plan's counts as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Split the deployment to POLICY: copy through the Gates, verify, crypto-shred the source,
    /// write and sign the report. Resumes where an interrupted run stopped.
    Run {
        #[command(flatten)]
        dirs: Dirs,
        /// The target policy: global or us-split.
        #[arg(long)]
        to: String,
        /// Subjects per batch.
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// The migration key that signs the report (default: KEYS/migration.key, KEYS being --keys).
        #[arg(long)]
        migration_key: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Where the split's new regions keep their records (default: sled).
        #[command(flatten)]
        databases: crate::database::DatabaseArgs,
    },
    /// Check a split deployment: every record may rest where it is, the signed report verifies
    /// against the pinned migration key, its counts match, and every region's audit log is
    /// consistent with the report's signed checkpoints.
    Verify {
        #[command(flatten)]
        dirs: Dirs,
        /// A file holding the migration public key to trust (default: the key pinned in
        /// DATA/migration.vkey, DATA being --data, when the deployment was created).
        #[arg(long)]
        migration_vkey: Option<PathBuf>,
        /// A log's public key you hold yourself; repeatable (as for `split report`).
        #[arg(long = "log-vkey", value_name = "FILE")]
        log_vkeys: Vec<PathBuf>,
    },
    /// Print the split's signed report, check its signature against the pinned migration key,
    /// and prove every region's log consistent with its checkpoints.
    Report {
        /// The deployment's data root.
        #[arg(long)]
        data: PathBuf,
        /// The migration public key (base64) to trust instead of the pinned one.
        #[arg(long, conflicts_with = "migration_vkey")]
        public_key: Option<String>,
        /// A file holding the migration public key to trust instead of the pinned one.
        #[arg(long)]
        migration_vkey: Option<PathBuf>,
        /// A log's public key you hold yourself (published by the region, or from its
        /// witnesses); repeatable. The report's key for the log of that name must be this one.
        #[arg(long = "log-vkey", value_name = "FILE")]
        log_vkeys: Vec<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `domicile split`.
pub(crate) fn run_split(args: SplitArgs) -> ExitCode {
    match command(args.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("domicile split: {e}");
            ExitCode::from(1)
        }
    }
}

fn command(command: SplitCommand) -> Result<ExitCode, SplitError> {
    match command {
        SplitCommand::Plan { dirs, to, json } => {
            let policies = crate::policies::resolver();
            let source = Deployment::open(&dirs.data, &dirs.keys, &policies)?;
            let target = policies.resolve(&to)?;
            let plan = Plan::compute(&source, target.as_ref())?;
            let summary = plan.summary();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&summary).expect("plans serialise")
                );
            } else {
                println!("{summary}");
                // By pseudonym (under the first region's audit key), as the logs name them:
                // `domicile audit pseudonym --subject ID` finds who it is.
                if let Some(node) = source.regions().next() {
                    for id in plan.unresolved.iter().take(10) {
                        println!(
                            "  unresolved: subject {} (pseudonym under {}'s audit key) has no usable residence",
                            node.gate.pseudonym(id),
                            node.region
                        );
                    }
                }
            }
            source.close()?;
            Ok(if plan.unresolved.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        SplitCommand::Run {
            dirs,
            to,
            batch,
            migration_key,
            quiet,
            databases,
        } => {
            let policies = crate::policies::resolver();
            if databases.names_any() {
                // Only into the keys directory the deployment was created with: a mistyped
                // --keys must create nothing.
                let manifest =
                    Deployment::manifest(&dirs.data)?.ok_or_else(|| SplitError::Manifest {
                        path: dirs.data.join(domicile_split::MANIFEST),
                        detail: "there is no deployment here (no manifest)".into(),
                    })?;
                Deployment::check_keys(&dirs.keys, &manifest)?;
                databases.apply(&dirs.data, &dirs.keys, policies.resolve(&to)?.as_ref())?;
            }
            let stop = Arc::new(AtomicBool::new(false));
            {
                let stop = stop.clone();
                // A second Ctrl-C while the batch finishes falls through to the default action.
                let _ = ctrlc::set_handler(move || {
                    if stop.swap(true, Ordering::SeqCst) {
                        std::process::exit(130);
                    }
                    eprintln!("\nstopping after this batch; run the same command again to resume");
                });
            }
            let bar = if quiet {
                ProgressBar::hidden()
            } else {
                let bar = ProgressBar::new(0);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} copying [{bar:40}] {pos}/{len} records, {per_sec}, ETA {eta}",
                    )
                    .expect("a valid template")
                    .progress_chars("=> "),
                );
                bar
            };
            let progress = |p: &Progress| {
                bar.set_length(p.records_total);
                bar.set_position(p.records_done);
            };
            let options = RunOptions {
                batch_subjects: batch,
                stop: Some(&stop),
                progress: Some(&progress),
                migration_key,
            };
            let signed = run(
                &dirs.data,
                &dirs.keys,
                &crate::policies::resolver(),
                &to,
                &options,
            );
            bar.finish_and_clear();
            let signed = signed?;
            println!("{}", signed.report);
            println!(
                "report: {} (signed by migration key {})",
                split_dir(&dirs.data).join("report.json").display(),
                signed.public_key
            );
            Ok(ExitCode::SUCCESS)
        }
        SplitCommand::Verify {
            dirs,
            migration_vkey,
            log_vkeys,
        } => {
            let pinned = trusted_key(&dirs.data, None, migration_vkey.as_deref())?;
            let held = held_log_keys(&log_vkeys)?;
            verify_deployment(&dirs.data, &dirs.keys, &pinned, &held)
        }
        SplitCommand::Report {
            data,
            public_key,
            migration_vkey,
            log_vkeys,
            json,
        } => {
            let pinned = trusted_key(&data, public_key.as_deref(), migration_vkey.as_deref())?;
            let held = held_log_keys(&log_vkeys)?;
            let (signed, logs) = check_report_pinning_logs(&data, &pinned, &held)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&signed).expect("reports serialise")
                );
            } else {
                println!("{}", signed.report);
            }
            eprintln!("signature: valid, by the trusted migration key {pinned}");
            if !held.is_empty() {
                eprintln!(
                    "log keys: the report names the {} you gave for their logs",
                    held.len()
                );
            }
            for log in logs {
                eprintln!(
                    "{:<8} log consistent with the report's {} checkpoint(s): {} entries now; its split shred entries name {} subjects, each with the report's receipt",
                    log.region, log.checkpoints, log.entries, log.shreds_logged
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The log public keys given with `--log-vkey`, each file holding one verifier key.
fn held_log_keys(paths: &[PathBuf]) -> Result<Vec<domicile_audit::VerifierKey>, SplitError> {
    let mut held = Vec::with_capacity(paths.len());
    for path in paths {
        let text = read_key_text(path)?;
        held.push(
            domicile_audit::VerifierKey::parse(text.trim()).map_err(|e| SplitError::Key {
                path: path.clone(),
                detail: e.to_string(),
            })?,
        );
    }
    Ok(held)
}

/// The text of a public key file the operator named (bounded: a key is short).
fn read_key_text(path: &Path) -> Result<String, SplitError> {
    let bytes = domicile_durable::read_bounded(path, 4096)?;
    String::from_utf8(bytes).map_err(|_| SplitError::Key {
        path: path.to_owned(),
        detail: "it is not text".into(),
    })
}

/// The migration public key the checker trusts: given on the command line, else pinned in the
/// deployment when it was created. Never the key written inside the report.
fn trusted_key(
    data: &Path,
    given: Option<&str>,
    file: Option<&Path>,
) -> Result<String, SplitError> {
    if let Some(text) = given {
        return parse_migration_vkey(text, Path::new("--public-key"));
    }
    if let Some(path) = file {
        return parse_migration_vkey(&read_key_text(path)?, path);
    }
    pinned_migration_key(data)?.ok_or_else(|| SplitError::Key {
        path: data.join(MIGRATION_VKEY),
        detail: "the deployment pins no migration key; pass --migration-vkey FILE with the key you trust".into(),
    })
}

fn verify_deployment(
    data: &Path,
    keys: &Path,
    pinned: &str,
    held: &[domicile_audit::VerifierKey],
) -> Result<ExitCode, SplitError> {
    let deployment = Deployment::open(data, keys, &crate::policies::resolver())?;
    let domicile_split::Placement {
        counts,
        mut problems,
    } = domicile_split::check_placement(&deployment)?;
    deployment.close()?;
    // The report, against the pinned key, and every log it names against its checkpoints.
    let mut checked: Vec<String> = Vec::new();
    match check_report_pinning_logs(data, pinned, held) {
        Ok((signed, logs)) => {
            if signed.report.verification.per_region != counts {
                problems.push(format!(
                    "the records per region differ from the signed report: now {counts:?}, reported {:?}",
                    signed.report.verification.per_region
                ));
            }
            for log in logs {
                println!(
                    "{:<8} log verifies, consistent with the report's {} checkpoint(s): {} entries; {} subjects shredded by the split, each with the report's receipt",
                    log.region, log.checkpoints, log.entries, log.shreds_logged
                );
                checked.push(log.region);
            }
        }
        Err(e) => problems.push(e.to_string()),
    }
    // The deployment's own regions the report does not name.
    for node in deployment.regions() {
        if checked.iter().any(|r| r == node.region.as_str()) {
            continue;
        }
        match domicile_audit::verify(&node.log_dir, &node.verifier, None, &mut |_, _| {}) {
            Ok(report) => println!(
                "{:<8} log verifies: {} entries",
                node.region, report.entries
            ),
            Err(e) => problems.push(format!(
                "{}: the audit log does not verify: {e}",
                node.region
            )),
        }
    }
    for (region, classes) in &counts {
        let list: Vec<String> = classes.iter().map(|(c, n)| format!("{c} {n}")).collect();
        println!("{:<8} records: {}", region.as_str(), list.join(", "));
    }
    if problems.is_empty() {
        println!("ok: every record may rest where it is, the report is signed by the trusted migration key, and every log is consistent with it");
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            eprintln!("problem: {p}");
        }
        Ok(ExitCode::from(1))
    }
}
