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
    run, split_dir, Deployment, Plan, Progress, RunOptions, SignedReport, SplitError,
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
    },
    /// Check a split deployment: every record may rest where it is, the counts match the signed
    /// report, and every region's audit log verifies with its public key.
    Verify {
        #[command(flatten)]
        dirs: Dirs,
    },
    /// Print the split's signed report and check its signature.
    Report {
        /// The deployment's data root.
        #[arg(long)]
        data: PathBuf,
        /// The migration public key (base64) to check the signature against; without it, the key
        /// in the report is shown for you to compare.
        #[arg(long)]
        public_key: Option<String>,
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
                for id in plan.unresolved.iter().take(10) {
                    println!("  unresolved: {id} has no usable residence");
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
        } => {
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
        SplitCommand::Verify { dirs } => verify_deployment(&dirs.data, &dirs.keys),
        SplitCommand::Report {
            data,
            public_key,
            json,
        } => {
            let signed = read_report(&data)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&signed).expect("reports serialise")
                );
            } else {
                println!("{}", signed.report);
            }
            match public_key {
                Some(key) => {
                    signed.verify(&key)?;
                    eprintln!("signature: valid, by {key}");
                }
                None => {
                    signed.verify(&signed.public_key.clone())?;
                    eprintln!(
                        "signature: valid, by the key in the report ({}); pass --public-key to check it is the one you trust",
                        signed.public_key
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read_report(data: &Path) -> Result<SignedReport, SplitError> {
    let path = split_dir(data).join("report.json");
    let bytes = std::fs::read(&path).map_err(|e| SplitError::Io {
        action: "read",
        path: path.clone(),
        source: e,
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| SplitError::BadReport(format!("{}: {e}", path.display())))
}

fn verify_deployment(data: &Path, keys: &Path) -> Result<ExitCode, SplitError> {
    let deployment = Deployment::open(data, keys, &crate::policies::resolver())?;
    let domicile_split::Placement {
        counts,
        mut problems,
    } = domicile_split::check_placement(&deployment)?;
    deployment.close()?;
    if let Ok(signed) = read_report(data) {
        signed.verify(&signed.public_key.clone())?;
        if signed.report.verification.per_region != counts {
            problems.push(format!(
                "the records per region differ from the signed report: now {counts:?}, reported {:?}",
                signed.report.verification.per_region
            ));
        }
    }
    // Every region's log: the deployment's, and those of regions a split left behind (their
    // logs stay, and keep the record of the split's source side).
    let mut logs: Vec<(String, PathBuf, domicile_audit::VerifierKey)> = deployment
        .regions()
        .map(|n| (n.region.to_string(), n.log_dir.clone(), n.verifier.clone()))
        .collect();
    if let Ok(signed) = read_report(data) {
        for region in signed.report.checkpoints_after.keys() {
            if logs.iter().any(|(r, _, _)| r == region) {
                continue;
            }
            let vkey_path = data.join(region).join("log.vkey");
            match std::fs::read_to_string(&vkey_path)
                .map_err(|e| e.to_string())
                .and_then(|t| {
                    domicile_audit::VerifierKey::parse(t.trim()).map_err(|e| e.to_string())
                }) {
                Ok(vkey) => logs.push((region.clone(), data.join(region).join("audit"), vkey)),
                Err(e) => problems.push(format!("{region}: {}: {e}", vkey_path.display())),
            }
        }
    }
    for (region, dir, vkey) in logs {
        match domicile_audit::verify(&dir, &vkey, None, &mut |_, _| {}) {
            Ok(report) => println!("{region:<8} log verifies: {} entries", report.entries),
            Err(e) => problems.push(format!("{region}: the audit log does not verify: {e}")),
        }
    }
    for (region, classes) in &counts {
        let list: Vec<String> = classes.iter().map(|(c, n)| format!("{c} {n}")).collect();
        println!("{:<8} records: {}", region.as_str(), list.join(", "));
    }
    if problems.is_empty() {
        println!("ok: every record may rest where it is, and every log verifies");
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            eprintln!("problem: {p}");
        }
        Ok(ExitCode::from(1))
    }
}
