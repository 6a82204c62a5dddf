//! Where the database is and how to reach it: [`PostgresConfig`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use postgres::config::SslMode;

use crate::StoreError;

/// The schema (namespace) a region's tables live in unless told otherwise.
pub const DEFAULT_SCHEMA: &str = "domicile";

/// How to reach a region's PostgreSQL (or CockroachDB, or YugabyteDB) database.
///
/// Built from a libpq-style URL (`postgresql://user:password@host:port/database`) or key-value
/// string (`host=… port=… user=… dbname=…`). With [`tls_root_certificates`](Self::tls_root_certificates)
/// the connection is TLS by rustls (ring provider), the server's certificate checked against
/// those roots and its name against the host, and a server that does not speak TLS is refused.
/// Without it, `sslmode=require` in the URL is refused as a setting that cannot be honoured,
/// so TLS is never silently skipped.
///
/// ```
/// use domicile_store::PostgresConfig;
///
/// let config = PostgresConfig::new("postgresql://domicile@db.us.internal:5432/us")?
///     .schema("region_us")?
///     .pool_size(8);
/// assert_eq!(config.schema_name(), "region_us");
/// // The password never appears in a debug print.
/// let config = PostgresConfig::new("postgresql://domicile:hunter2@localhost/us")?;
/// assert!(!format!("{config:?}").contains("hunter2"));
/// assert!(PostgresConfig::new("postgresql://x@h/db")?.schema("Robert'); DROP").is_err());
/// Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct PostgresConfig {
    pub(crate) client: postgres::Config,
    pub(crate) schema: String,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) tls_roots: Option<PathBuf>,
    pub(crate) pool_size: u32,
    pub(crate) connect_timeout: Duration,
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // postgres::Config's Debug redacts the password.
        f.debug_struct("PostgresConfig")
            .field("client", &self.client)
            .field("schema", &self.schema)
            .field("tls_roots", &self.tls_roots)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl PostgresConfig {
    /// A configuration from a connection URL or key-value string.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let client = postgres::Config::from_str(url).map_err(|e| {
            StoreError::InvalidDatabaseConfig {
                setting: "database URL",
                // The URL may hold a password: the parser's message, not the URL, is quoted.
                reason: e.to_string(),
            }
        })?;
        let mut client = client;
        if client.get_connect_timeout().is_none() {
            client.connect_timeout(Duration::from_secs(10));
        }
        Ok(PostgresConfig {
            client,
            schema: DEFAULT_SCHEMA.to_owned(),
            tls: None,
            tls_roots: None,
            pool_size: 4,
            connect_timeout: Duration::from_secs(30),
        })
    }

    /// The schema (namespace) to keep this store's tables in: a lowercase SQL identifier of
    /// at most 63 characters (letters, digits, `_`, not starting with a digit). Several regions
    /// may share one database under different schemas, though one database per region keeps
    /// their operators apart.
    pub fn schema(mut self, name: &str) -> Result<Self, StoreError> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit()
            && !name.starts_with("pg_");
        if !valid {
            return Err(StoreError::InvalidDatabaseConfig {
                setting: "schema",
                reason: format!(
                    "{name:?} is not 1 to 63 lowercase letters, digits and `_` starting with a letter or `_` (and not `pg_`)"
                ),
            });
        }
        self.schema = name.to_owned();
        Ok(self)
    }

    /// Requires TLS, trusting the certificate authorities in the PEM file `path`.
    pub fn tls_root_certificates(mut self, path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        self.tls = Some(Arc::new(super::tls::client_config(path)?));
        self.tls_roots = Some(path.to_path_buf());
        self.client.ssl_mode(SslMode::Require);
        Ok(self)
    }

    /// How many connections the pool keeps at most (default 4).
    pub fn pool_size(mut self, size: u32) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// How long to wait for a pooled connection before failing (default 30 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self.client.connect_timeout(timeout);
        self
    }

    /// The schema the tables live in.
    pub fn schema_name(&self) -> &str {
        &self.schema
    }

    /// Refuses a setting that asks for TLS without a way to check the server.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        if self.tls.is_none() && self.client.get_ssl_mode() == SslMode::Require {
            return Err(StoreError::InvalidDatabaseConfig {
                setting: "sslmode",
                reason: "sslmode=require needs the certificate authorities to check the server \
                         against: call tls_root_certificates"
                    .into(),
            });
        }
        Ok(())
    }
}
