//! `domicile audit`.

use std::process::ExitCode;

/// Arguments of `domicile audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {}

/// Runs `domicile audit`.
pub fn run(_args: AuditArgs) -> ExitCode {
    eprintln!("domicile audit: not built yet");
    ExitCode::from(2)
}
