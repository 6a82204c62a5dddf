//! `domicile init`: the one command that creates a deployment's keys.
//!
//! Every other command opens a data directory with the keys its manifest names and refuses any
//! other keys directory; `init` creates the manifest, each region's store, log and keys, and
//! records the keys' fingerprints in the manifest. On a data directory that already holds a
//! deployment it only checks that the keys match.

use std::path::PathBuf;
use std::process::ExitCode;

use domicile_split::Deployment;

/// Arguments of `domicile init`.
#[derive(Debug, clap::Args)]
pub(crate) struct InitArgs {
    /// The residency policy, by name (`global`, `us-split`, …).
    #[arg(long)]
    policy: String,
    /// The data directory to create.
    #[arg(long)]
    data: PathBuf,
    /// The keys directory to create (keep it apart from the data).
    #[arg(long)]
    keys: PathBuf,
    /// The SPIFFE trust domain of the deployment's principals.
    #[arg(long, default_value = "domicile.example")]
    trust_domain: String,
    #[command(flatten)]
    databases: crate::database::DatabaseArgs,
}

/// Runs `domicile init`.
pub(crate) fn run(args: InitArgs) -> ExitCode {
    let created = crate::policies::resolver()
        .resolve(&args.policy)
        .map_err(domicile_split::SplitError::from)
        .and_then(|policy| {
            if let Some(manifest) = Deployment::manifest(&args.data)? {
                // An existing deployment: its keys first, so a mistyped --keys gets nothing.
                // Keys bound to no manifest yet (an older deployment) are bound by `create`.
                Deployment::check_keys_to_bind(&args.keys, &manifest)?;
            }
            args.databases
                .apply(&args.data, &args.keys, policy.as_ref())?;
            Deployment::create(&args.data, &args.keys, policy, &args.trust_domain)
        });
    match created {
        Ok(deployment) => {
            let regions: Vec<String> = deployment.regions().map(|n| n.region.to_string()).collect();
            println!(
                "deployment under policy {} in {} (regions: {}); keys in {}",
                args.policy,
                args.data.display(),
                regions.join(", "),
                args.keys.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("domicile init: {e}");
            ExitCode::FAILURE
        }
    }
}
