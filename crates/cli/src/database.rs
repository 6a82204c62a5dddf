//! `--database-url REGION=URL` and `--database-ca REGION=PEM`: which regions of a new
//! deployment (or of a split's new regions) keep their sealed records in PostgreSQL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use domicile_residency::{Region, ResidencyPolicy};
use domicile_split::{configure_database, DatabaseConfig, SplitError};

/// The database flags shared by `init` and `split run`.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct DatabaseArgs {
    /// Keep REGION's sealed records in this PostgreSQL database instead of on sled
    /// (repeatable: `--database-url us=postgresql://… --database-url row=…`). Needs a build with
    /// the `postgres` feature. Kept in `KEYS/<region>/database.json` (0600), since it may hold a
    /// password; later commands find it there.
    #[arg(long = "database-url", value_name = "REGION=URL")]
    urls: Vec<String>,
    /// PEM roots REGION's database certificate must chain to; with them the connection is TLS.
    #[arg(long = "database-ca", value_name = "REGION=PEM")]
    cas: Vec<String>,
}

fn split_pair<'a>(flag: &str, value: &'a str) -> Result<(&'a str, &'a str), SplitError> {
    value
        .split_once('=')
        .filter(|(region, rest)| !region.is_empty() && !rest.is_empty())
        .ok_or_else(|| {
            SplitError::BadArgument(format!(
                "{flag} takes REGION=VALUE (for example `{flag} us=…`)"
            ))
        })
}

fn region_of(policy: &dyn ResidencyPolicy, flag: &str, name: &str) -> Result<Region, SplitError> {
    let known = || {
        policy
            .regions()
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let region = Region::parse(name)
        .map_err(|_| SplitError::BadArgument(format!("{flag}: {name:?} is not a region name")))?;
    if !policy.has_region(&region) {
        return Err(SplitError::BadArgument(format!(
            "{flag}: policy {} has no region {name} (it has {})",
            policy.id().name,
            known()
        )));
    }
    Ok(region)
}

impl DatabaseArgs {
    /// Whether any region is named.
    pub(crate) fn names_any(&self) -> bool {
        !self.urls.is_empty() || !self.cas.is_empty()
    }

    /// Checks every flag against `policy`'s regions, then records each region's database in
    /// the keys directory. Nothing is written if any flag is wrong.
    pub(crate) fn apply(
        &self,
        data: &Path,
        keys: &Path,
        policy: &dyn ResidencyPolicy,
    ) -> Result<(), SplitError> {
        if self.names_any() && !cfg!(feature = "postgres") {
            return Err(SplitError::BadArgument(
                "--database-url needs a build with PostgreSQL (cargo build -p domicile --features \
                 postgres)"
                    .into(),
            ));
        }
        let mut configs: BTreeMap<Region, DatabaseConfig> = BTreeMap::new();
        for value in &self.urls {
            let (name, url) = split_pair("--database-url", value)?;
            let region = region_of(policy, "--database-url", name)?;
            let config = DatabaseConfig {
                url: url.to_owned(),
                ca: None,
            };
            if configs.insert(region, config).is_some() {
                return Err(SplitError::BadArgument(format!(
                    "--database-url names region {name} twice"
                )));
            }
        }
        for value in &self.cas {
            let (name, ca) = split_pair("--database-ca", value)?;
            let region = region_of(policy, "--database-ca", name)?;
            let config = configs.get_mut(&region).ok_or_else(|| {
                SplitError::BadArgument(format!(
                    "--database-ca names region {name}, which has no --database-url"
                ))
            })?;
            config.ca = Some(PathBuf::from(ca));
        }
        for (region, config) in &configs {
            configure_database(data, keys, region, config)?;
        }
        Ok(())
    }
}
