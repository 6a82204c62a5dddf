//! `domicile ingest`: subjects and records from JSON Lines into a deployment, through its Gates.
//!
//! Each line is one subject and its records (the format is in `domicile_split::ingest`); each
//! subject is written to the home region the deployment's policy gives it, by a named ingest
//! service, in batches, each logged and durable before the next. Interrupted, it resumes after
//! the last durable batch when run again on the same file. A subject whose home region is
//! unknown is reported by line number and skipped (`--on-unknown skip`, the default) or stops
//! the ingest (`--on-unknown refuse`).

use std::path::PathBuf;
use std::process::ExitCode;

use domicile_split::{ingest_file, Deployment, IngestOptions, OnUnknown, SplitError};
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `domicile ingest`.
#[derive(Debug, clap::Args)]
pub(crate) struct IngestArgs {
    /// The deployment's data directory.
    #[arg(long)]
    data: PathBuf,
    /// The deployment's keys directory.
    #[arg(long)]
    keys: PathBuf,
    /// The JSON Lines file: one `{"subject": {...}, "records": [...]}` per line.
    file: PathBuf,
    /// The ingest service's name (`spiffe://<trust-domain>/<region>/<org>/<name>` in each region).
    #[arg(long, default_value = "ingest")]
    principal: String,
    /// The organisation running the ingest service (`usds` for a US split's `us` region).
    #[arg(long, default_value = "domicile")]
    org: String,
    /// Subjects per batch.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Bytes of input per batch at most: a batch is written once its lines hold this many,
    /// even short of --batch subjects (long lines are held a batch at a time).
    #[arg(long, default_value_t = domicile_split::DEFAULT_BATCH_BYTES)]
    batch_bytes: u64,
    /// What to do with a subject whose home region is unknown: `skip` (report its line) or
    /// `refuse` (stop there; a rerun resumes after the last durable batch).
    #[arg(long, value_parser = ["skip", "refuse"], default_value = "skip")]
    on_unknown: String,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Runs `domicile ingest`.
pub(crate) fn run(args: IngestArgs) -> ExitCode {
    match ingest(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("domicile ingest: {e}");
            ExitCode::FAILURE
        }
    }
}

fn ingest(args: &IngestArgs) -> Result<(), SplitError> {
    let deployment = Deployment::open(&args.data, &args.keys, &crate::policies::resolver())?;
    let len = std::fs::metadata(&args.file)
        .map_err(|e| SplitError::Io {
            action: "read",
            path: args.file.clone(),
            source: e,
        })?
        .len();
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template(
                "ingesting {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
            )
            .expect("a valid progress template"),
        );
        bar
    };
    let progress = |bytes: u64| bar.set_position(bytes);
    let options = IngestOptions {
        principal: &args.principal,
        organisation: &args.org,
        batch_subjects: args.batch,
        batch_bytes: args.batch_bytes,
        on_unknown: if args.on_unknown == "refuse" {
            OnUnknown::Refuse
        } else {
            OnUnknown::Skip
        },
        progress: Some(&progress),
    };
    let result = ingest_file(&deployment, &args.file, &options);
    bar.finish_and_clear();
    // Sign a final checkpoint of every log, whatever happened to the ingest.
    let closed = deployment.close();
    let report = result?;
    closed?;
    let total = |m: &std::collections::BTreeMap<String, u64>| m.values().sum::<u64>();
    let per_region: Vec<String> = report
        .subjects
        .iter()
        .map(|(r, n)| format!("{r}: {n} subjects, {} records", report.records[r]))
        .collect();
    if report.resumed_after_line > 0 {
        println!(
            "resumed after line {} (ingested by an earlier run)",
            report.resumed_after_line
        );
    }
    println!(
        "ingested {} subjects, {} records from {} lines ({})",
        total(&report.subjects),
        total(&report.records),
        report.lines,
        per_region.join("; ")
    );
    for (line, why) in &report.skipped {
        println!("skipped line {line}: home region unknown: {why}");
    }
    Ok(())
}
