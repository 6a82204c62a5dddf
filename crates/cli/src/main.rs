//! `domicile`: the command line of domicile.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Data sovereignty for one product run as several regional deployments.
#[derive(Debug, Parser)]
#[command(name = "domicile", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the residency rules of a policy crate.
    Policy {
        /// `global` or `us-split`.
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Policy { name } => {
            eprintln!("unknown policy {name:?}");
            ExitCode::from(2)
        }
    }
}
