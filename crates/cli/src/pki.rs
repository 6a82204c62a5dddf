//! `domicile pki`: a development CA, the SVIDs it issues, and the operator's signed principal
//! directory that nodes map SPIFFE ids through.
//!
//! Production brings its own CA (SPIRE, a corporate PKI); a node needs only the CA bundle, its
//! certificate and its key.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use domicile_access::{ApproverKey, Principal, PrincipalDirectory, SpiffeId};
use domicile_node::pki::DevCa;

/// Arguments of `domicile pki`.
#[derive(Debug, Args)]
pub(crate) struct PkiArgs {
    #[command(subcommand)]
    command: PkiCommand,
}

#[derive(Debug, Subcommand)]
enum PkiCommand {
    /// Create a development CA for a trust domain (`ca.pem`, `ca.key` 0600, `trust-domain`).
    Init {
        /// The SPIFFE trust domain.
        #[arg(long)]
        trust_domain: String,
        /// The directory to create it in.
        #[arg(long)]
        out: PathBuf,
    },
    /// Issue an X.509-SVID (`svid.pem`, `svid.key` 0600, `bundle.pem`) for a SPIFFE id.
    Issue {
        /// The CA directory (`domicile pki init --out`).
        #[arg(long)]
        ca: PathBuf,
        /// `spiffe://<trust-domain>/<region>/<org>/<name>`.
        #[arg(long)]
        id: String,
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
        /// DNS names to add (for tools that check host names, such as curl).
        #[arg(long)]
        dns: Vec<String>,
        /// IP addresses to add.
        #[arg(long)]
        ip: Vec<IpAddr>,
    },
    /// Create the operator's Ed25519 key that signs principal directories (PKCS#8, 0600), and
    /// print its public key (what nodes are given as `--operator-key`).
    OperatorKey {
        /// The key file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a principal directory: a JSON array of principals (`id`, `kind`, `organisation`,
    /// `office_country`, `location_country`, `roles`, optional `person`).
    SignDirectory {
        /// The JSON array of principals.
        #[arg(long)]
        entries: PathBuf,
        /// The operator's key (`domicile pki operator-key`).
        #[arg(long)]
        operator_key: PathBuf,
        /// The signed directory to write.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs `domicile pki`.
pub(crate) fn run(args: PkiArgs) -> ExitCode {
    match pki(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("domicile pki: {e}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error>;

fn pki(command: PkiCommand) -> Result<(), Error> {
    match command {
        PkiCommand::Init { trust_domain, out } => {
            let ca = DevCa::generate(&trust_domain)?;
            ca.save(&out)?;
            println!(
                "development CA for {trust_domain} in {} (bundle: {})",
                out.display(),
                out.join("ca.pem").display()
            );
        }
        PkiCommand::Issue {
            ca,
            id,
            out,
            dns,
            ip,
        } => {
            let ca = DevCa::load(&ca)?;
            let id = SpiffeId::parse(&id)?;
            ca.issue(&id, &dns, &ip)?.save(&out, ca.cert_pem())?;
            println!("SVID for {id} in {}", out.display());
        }
        PkiCommand::OperatorKey { out } => {
            let key = ApproverKey::generate()?;
            domicile_durable::create_private(&out, key.pkcs8())?;
            println!("{}", key.public_key_base64());
        }
        PkiCommand::SignDirectory {
            entries,
            operator_key,
            out,
        } => {
            let text = domicile_durable::read_bounded(&entries, 16 << 20)?;
            let principals: Vec<Principal> = serde_json::from_slice(&text).map_err(|e| {
                format!(
                    "{} is not a JSON array of principals: {e}",
                    entries.display()
                )
            })?;
            let key = domicile_durable::read_secret(&operator_key)?
                .ok_or_else(|| format!("{} does not exist", operator_key.display()))?;
            let key = ApproverKey::from_pkcs8(&key)?;
            let directory = PrincipalDirectory::from_entries(principals)?;
            domicile_durable::write_public(&out, directory.sign(&key).as_bytes())?;
            println!(
                "{} principals signed into {} (operator key {})",
                directory.len(),
                out.display(),
                key.public_key_base64()
            );
        }
    }
    Ok(())
}
