//! `domicile recsys`.

use std::process::ExitCode;

/// Arguments of `domicile recsys`.
#[derive(Debug, clap::Args)]
pub struct RecsysArgs {}

/// Runs `domicile recsys`.
pub fn run(_args: RecsysArgs) -> ExitCode {
    eprintln!("domicile recsys: not built yet");
    ExitCode::from(2)
}
