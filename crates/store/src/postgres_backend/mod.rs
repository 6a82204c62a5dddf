//! The PostgreSQL backend (cargo feature `postgres`): a region's sealed records in a table of
//! a PostgreSQL, CockroachDB or YugabyteDB database.
//!
//! - [`PostgresConfig`] (`config.rs`): where the database is, TLS, the schema, the pool size.
//! - `schema.rs`: the embedded, versioned migrations run on connect.
//! - `tls.rs`: rustls on ring as tokio-postgres's TLS connector.
//! - this file: the connection pool, the prepared statements and the [`Backend`] operations.
//!
//! Everything the database receives is what the sealed store hands any backend: blind-indexed
//! keys and sealed values. The database operator sees no plaintext, key or identifier.

mod config;
mod schema;
mod tls;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{NoTls, Statement};

use crate::backend::{prefix_end, Backend, Batch, ScanIter};
use crate::StoreError;

pub use config::{PostgresConfig, DEFAULT_SCHEMA};
pub use schema::LATEST as POSTGRES_SCHEMA_VERSION;

/// How many times a transaction that lost a serialization conflict (SQLSTATE 40001) is run
/// again before the error is returned.
const MAX_ATTEMPTS: u32 = 12;
/// Rows of a prefix scan's first page: a short scan (a subject's index entries) costs one
/// small query.
const SCAN_FIRST_PAGE: i64 = 256;
/// Rows of its largest page: each page is twice the one before up to this, so a long scan
/// (a whole collection) takes few round trips while holding at most this many rows.
const SCAN_MAX_PAGE: i64 = 8192;
/// Batches written by upsert, without first trying plain inserts, after a batch found one of
/// its keys already there.
const UPSERTS_AFTER_A_PRESENT_KEY: u32 = 32;
/// Rows and bytes per multi-row statement of a batch (all in the batch's one transaction).
const CHUNK_ROWS: usize = 4096;
const CHUNK_BYTES: usize = 32 << 20;

pub(crate) fn failed(operation: &'static str) -> impl Fn(postgres::Error) -> StoreError {
    move |e| {
        // The driver's message is often only the outermost layer ("error performing TLS
        // handshake"); the cause (an unknown issuer, a refused connection) is in its sources.
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !detail.contains(&cause_text) {
                detail = format!("{detail}: {cause_text}");
            }
            source = cause.source();
        }
        if let Some(code) = e.code() {
            detail = format!("{detail} (SQLSTATE {})", code.code());
        }
        StoreError::Backend {
            backend: "postgres",
            operation,
            detail,
        }
    }
}

/// The wait before attempt `attempt + 1`: exponential from 2 ms, capped at 0.5 s, with jitter
/// so that two transactions that collided do not collide again in step.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(2u64 << attempt.min(8)).min(Duration::from_millis(500));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let jitter = base.mul_f64(f64::from(nanos % 1000) / 1000.0);
    base / 2 + jitter / 2
}

/// Whether a statement failed because the transaction lost a conflict and may simply run again.
fn retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// Rows of a scan page: (key, value).
type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// One multi-row upsert of a batch: its keys and their values.
type Chunk<'a> = (Vec<&'a [u8]>, Vec<&'a [u8]>);

/// The statements every connection prepares once, when it is opened.
struct Statements {
    get: Statement,
    get_many: Statement,
    put: Statement,
    delete: Statement,
    insert_many: Statement,
    upsert_many: Statement,
    upsert_owned: Statement,
    owners_of: Statement,
    delete_many: Statement,
    scan_bounded: Statement,
    scan_unbounded: Statement,
}

/// One pooled connection with its prepared statements.
struct Connection {
    client: postgres::Client,
    statements: Statements,
}

/// Opens connections for the pool.
struct Connector {
    config: PostgresConfig,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("config", &self.config)
            .finish()
    }
}

impl Connector {
    fn connect_client(&self) -> Result<postgres::Client, postgres::Error> {
        let mut client = match &self.config.tls {
            Some(tls) => self
                .config
                .client
                .connect(tls::MakeRustls::new(tls.clone()))?,
            None => self.config.client.connect(NoTls)?,
        };
        // An acknowledged write is a committed one; a server whose default is
        // synchronous_commit=off would acknowledge before its WAL is flushed. Servers without
        // the setting (42704) have no such mode.
        match client.batch_execute("SET synchronous_commit TO on") {
            Ok(()) => {}
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_OBJECT) => {}
            Err(e) if e.code() == Some(&SqlState::INVALID_PARAMETER_VALUE) => {}
            Err(e) => return Err(e),
        }
        Ok(client)
    }

    fn prepare(&self, client: &mut postgres::Client) -> Result<Statements, postgres::Error> {
        let t = format!("\"{}\".records", self.config.schema);
        Ok(Statements {
            get: client.prepare(&format!("SELECT value FROM {t} WHERE key = $1"))?,
            get_many: client.prepare(&format!(
                "SELECT key, value FROM {t} WHERE key = ANY($1::BYTEA[])"
            ))?,
            put: client.prepare(&format!(
                "INSERT INTO {t} (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            ))?,
            delete: client.prepare(&format!("DELETE FROM {t} WHERE key = $1"))?,
            insert_many: client.prepare(&format!(
                "INSERT INTO {t} (key, value) SELECT * FROM unnest($1::BYTEA[], $2::BYTEA[])"
            ))?,
            upsert_many: client.prepare(&format!(
                "INSERT INTO {t} (key, value) \
                 SELECT * FROM unnest($1::BYTEA[], $2::BYTEA[]) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            ))?,
            // Overwrites a row only where the new value names the same owner in the $4 bytes
            // from $3 (1-based, as SQL counts) or the old value is too short to name one: the
            // owner check and the write in one statement, atomic under any isolation level (an
            // ON CONFLICT update locks the row and tests the latest committed value). The rows
            // it skips are missing from its row count. The positions are sent as BIGINT and
            // narrowed for `substring`, whose INT is 32 bits on PostgreSQL and 64 on
            // CockroachDB.
            upsert_owned: client.prepare(&format!(
                "INSERT INTO {t} AS old (key, value) \
                 SELECT * FROM unnest($1::BYTEA[], $2::BYTEA[]) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value \
                 WHERE octet_length(old.value) < $3::BIGINT + $4::BIGINT - 1 \
                    OR substring(old.value FROM $3::BIGINT::INT FOR $4::BIGINT::INT) \
                       = substring(excluded.value FROM $3::BIGINT::INT FOR $4::BIGINT::INT)"
            ))?,
            owners_of: client.prepare(&format!(
                "SELECT key, substring(value FROM $2::BIGINT::INT FOR $3::BIGINT::INT) FROM {t} \
                 WHERE key = ANY($1::BYTEA[])"
            ))?,
            delete_many: client
                .prepare(&format!("DELETE FROM {t} WHERE key = ANY($1::BYTEA[])"))?,
            scan_bounded: client.prepare(&format!(
                "SELECT key, value FROM {t} WHERE key >= $1 AND key < $2 ORDER BY key LIMIT $3"
            ))?,
            scan_unbounded: client.prepare(&format!(
                "SELECT key, value FROM {t} WHERE key >= $1 ORDER BY key LIMIT $2"
            ))?,
        })
    }
}

impl r2d2::ManageConnection for Connector {
    type Connection = Connection;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Connection, postgres::Error> {
        let mut client = self.connect_client()?;
        let statements = self.prepare(&mut client)?;
        Ok(Connection { client, statements })
    }

    fn is_valid(&self, conn: &mut Connection) -> Result<(), postgres::Error> {
        conn.client.batch_execute("")
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        conn.client.is_closed()
    }
}

/// A [`Backend`] on a PostgreSQL table (cargo feature `postgres`), also run by CockroachDB and
/// YugabyteDB.
///
/// - **Connections** come from an r2d2 pool; each prepares its statements once when opened.
/// - **Batches** are one transaction of multi-row statements (`INSERT … SELECT FROM
///   unnest($1::BYTEA[], $2::BYTEA[])`, `DELETE … = ANY($1)`), so a batch is all there or not
///   there after any crash. Puts go as plain inserts first; if a key is already there the
///   transaction runs again with `ON CONFLICT DO UPDATE`. Its writes are blind (the net effect of
///   the batch, whatever was there before), so it needs no isolation level above the database's
///   default: READ COMMITTED on PostgreSQL, SERIALIZABLE on CockroachDB.
/// - **Owners**: [`Backend::apply_owned`] checks that no key a batch takes is another owner's in
///   the upsert itself (`ON CONFLICT … DO UPDATE … WHERE` the owner bytes match), atomically
///   with the write, and names the key from the statement's row count and one more read.
/// - **Conflicts**: a transaction that fails with SQLSTATE 40001 (or 40P01) is run again after an
///   exponential, jittered backoff, up to 12 times; CockroachDB and YugabyteDB raise 40001 as
///   part of normal operation, PostgreSQL under `default_transaction_isolation = serializable`.
///   No advisory locks are taken anywhere.
/// - **Durability**: every write commits before it returns, with `synchronous_commit = on`, so
///   [`Backend::flush`] has nothing left to do.
/// - **Schema**: the table is created and upgraded by embedded, versioned migrations on
///   [`connect`](Self::connect); a database at a version this build does not know is
///   [`StoreError::DatabaseSchema`].
///
/// ```no_run
/// use std::sync::Arc;
/// use domicile_policy_us_split::UsSplitPolicy;
/// use domicile_residency::Region;
/// use domicile_store::{FileCustodian, PostgresBackend, PostgresConfig, SealedStore};
///
/// let config = PostgresConfig::new("postgresql://domicile@db.us.internal/us")?
///     .tls_root_certificates("/etc/domicile/us/db-ca.pem")?;
/// let store = SealedStore::with_backend(
///     Box::new(PostgresBackend::connect(&config)?),
///     Region::parse("us")?,
///     Arc::new(UsSplitPolicy::new()),
///     Arc::new(FileCustodian::open("/var/lib/domicile/keys")?),
/// )?;
/// # drop(store);
/// Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PostgresBackend {
    pool: r2d2::Pool<Connector>,
    schema: String,
    retries: AtomicU64,
    /// How many more batches go straight to upserts (see `insert_first`).
    upserts_first: AtomicU32,
}

impl fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("schema", &self.schema)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl PostgresBackend {
    /// Connects, creating or migrating the schema's tables as needed.
    pub fn connect(config: &PostgresConfig) -> Result<Self, StoreError> {
        config.check()?;
        let connector = Connector {
            config: config.clone(),
        };
        // Migrate on a connection of its own, before any connection prepares statements on
        // tables that might not exist yet.
        let mut client = connector
            .connect_client()
            .map_err(failed("connect to the database"))?;
        schema::migrate(&mut client, &config.schema)?;
        drop(client);
        let pool = r2d2::Pool::builder()
            .max_size(config.pool_size)
            .min_idle(Some(0))
            // A dead connection is found by the failed statement (and `has_broken`) instead of a
            // round trip before every checkout.
            .test_on_check_out(false)
            .connection_timeout(config.connect_timeout)
            .build(connector)
            .map_err(|e| StoreError::Backend {
                backend: "postgres",
                operation: "open a connection pool",
                detail: e.to_string(),
            })?;
        Ok(PostgresBackend {
            pool,
            schema: config.schema.clone(),
            retries: AtomicU64::new(0),
            upserts_first: AtomicU32::new(0),
        })
    }

    /// The schema the tables live in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// How many times a transaction has been run again after a serialization conflict.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    fn connection(
        &self,
        operation: &'static str,
    ) -> Result<r2d2::PooledConnection<Connector>, StoreError> {
        self.pool.get().map_err(|e| StoreError::Backend {
            backend: "postgres",
            operation,
            detail: format!("no database connection: {e}"),
        })
    }

    /// Runs `body` on a pooled connection; runs it again after a serialization conflict, and
    /// once more on a fresh connection if `idempotent` and the connection turned out closed
    /// (a server restart leaves the pool's connections dead).
    fn run<T>(
        &self,
        operation: &'static str,
        idempotent: bool,
        mut body: impl FnMut(&mut Connection) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut attempt = 0;
        let mut reconnected = false;
        loop {
            let mut conn = self.connection(operation)?;
            match body(&mut conn) {
                Ok(value) => return Ok(value),
                Err(e) if retryable(&e) && attempt + 1 < MAX_ATTEMPTS => {
                    attempt += 1;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    drop(conn);
                    std::thread::sleep(backoff(attempt));
                }
                Err(e) if idempotent && !reconnected && e.is_closed() => {
                    reconnected = true;
                    drop(conn);
                }
                Err(e) => return Err(failed(operation)(e)),
            }
        }
    }

    fn scan_page(&self, from: &[u8], until: Option<&[u8]>, rows: i64) -> Result<Rows, StoreError> {
        self.run("scan a prefix", true, |conn| {
            let rows = match until {
                Some(until) => conn
                    .client
                    .query(&conn.statements.scan_bounded, &[&from, &until, &rows])?,
                None => conn
                    .client
                    .query(&conn.statements.scan_unbounded, &[&from, &rows])?,
            };
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }
}

/// A prefix scan fetched page by page (keyset pagination: each page starts just after the last
/// key of the one before), each page twice as long as the one before, up to a bound.
struct Scan<'a> {
    backend: &'a PostgresBackend,
    from: Vec<u8>,
    until: Option<Vec<u8>>,
    page: VecDeque<(Vec<u8>, Vec<u8>)>,
    /// Rows asked for in the next page.
    page_rows: i64,
    done: bool,
}

impl<'a> Scan<'a> {
    /// The entries with `from <= key < until` (no upper bound if `until` is `None`).
    fn new(backend: &'a PostgresBackend, from: &[u8], until: Option<Vec<u8>>) -> Self {
        Scan {
            backend,
            from: from.to_vec(),
            until,
            page: VecDeque::new(),
            page_rows: SCAN_FIRST_PAGE,
            done: false,
        }
    }
}

impl Iterator for Scan<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() && !self.done {
            let asked = self.page_rows;
            self.page_rows = (asked * 2).min(SCAN_MAX_PAGE);
            match self
                .backend
                .scan_page(&self.from, self.until.as_deref(), asked)
            {
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Ok(rows) => {
                    self.done = (rows.len() as i64) < asked;
                    if let Some((last, _)) = rows.last() {
                        // The least key after `last` in byte order.
                        self.from = last.clone();
                        self.from.push(0);
                    }
                    self.page = rows.into();
                }
            }
        }
        self.page.pop_front().map(Ok)
    }
}

/// A batch reduced to its net effect (the last write to each key wins, so a multi-row upsert
/// never touches one row twice).
struct NetWrites<'a> {
    deletes: Vec<&'a [u8]>,
    /// Puts of keys no owner check applies to.
    plain: Vec<(&'a [u8], &'a [u8])>,
    /// Puts of keys that must not belong to another owner.
    owned: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> NetWrites<'a> {
    fn of(batch: &'a Batch, owned: &[&[u8]]) -> Self {
        // Both in key order, so one pass tells the owned puts from the others.
        let mut owned = owned.to_vec();
        owned.sort_unstable();
        let mut owned = owned.into_iter().peekable();
        let mut writes = NetWrites {
            deletes: Vec::new(),
            plain: Vec::new(),
            owned: Vec::with_capacity(owned.len()),
        };
        for (k, v) in batch.net_effect() {
            while owned.next_if(|o| *o < k).is_some() {}
            let is_owned = owned.next_if_eq(&k).is_some();
            match v {
                None => writes.deletes.push(k),
                Some(v) if is_owned => writes.owned.push((k, v)),
                Some(v) => writes.plain.push((k, v)),
            }
        }
        writes
    }

    /// The deletes, then every put as a plain insert, owned or not: an insert fails with
    /// SQLSTATE 23505 if a key is already there, so no owned key can be another owner's. (A
    /// batch of records and its journal entry is one statement: the entry in one of its own
    /// cost a tenth of the transaction, `docs/performance.md`.)
    fn insert_all(
        &self,
        tx: &mut postgres::Transaction<'_>,
        statements: &Statements,
    ) -> Result<(), postgres::Error> {
        let rows = self.owned.iter().chain(&self.plain).copied();
        self.delete_then_put(tx, statements, &statements.insert_many, rows)
    }

    /// The deletes, then the puts without an owner check, as upserts.
    fn upsert_plain(
        &self,
        tx: &mut postgres::Transaction<'_>,
        statements: &Statements,
    ) -> Result<(), postgres::Error> {
        let rows = self.plain.iter().copied();
        self.delete_then_put(tx, statements, &statements.upsert_many, rows)
    }

    /// The deletes in one statement, then `rows` through `put` in as few statements as the
    /// chunk limits allow.
    fn delete_then_put(
        &self,
        tx: &mut postgres::Transaction<'_>,
        statements: &Statements,
        put: &postgres::Statement,
        rows: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<(), postgres::Error> {
        if !self.deletes.is_empty() {
            tx.execute(&statements.delete_many, &[&self.deletes])?;
        }
        for (keys, values) in chunks(rows) {
            tx.execute(put, &[&keys, &values])?;
        }
        Ok(())
    }
}

/// `rows` as the key and value arrays of multi-row statements, each within the chunk limits.
fn chunks<'a>(rows: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Vec<Chunk<'a>> {
    let mut out: Vec<Chunk<'a>> = Vec::new();
    let mut bytes = 0;
    for (k, v) in rows {
        match out.last_mut() {
            Some((keys, values)) if keys.len() < CHUNK_ROWS && bytes < CHUNK_BYTES => {
                keys.push(k);
                values.push(v);
            }
            _ => {
                bytes = 0;
                out.push((vec![k], vec![v]));
            }
        }
        bytes += k.len() + v.len();
    }
    out
}

/// How a batch's puts are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// `INSERT`: for keys not there yet, what a batch of new records holds. An upsert's
    /// speculative insertion took 1.6× the server time and 11% more WAL per row
    /// (`benches/postgres_vs_bare.rs` with `DOMICILE_BENCH_PG_STATEMENTS=1`).
    Insert,
    /// `INSERT … ON CONFLICT (key) DO UPDATE`: for any key.
    Upsert,
}

impl PostgresBackend {
    /// Runs `attempt` with plain inserts, and again with upserts if a key turned out to be
    /// there already (the failed transaction wrote nothing); after that, the next batches go
    /// straight to upserts for a while, so a run of overwrites does not pay twice.
    fn insert_first<T>(
        &self,
        conn: &mut Connection,
        mut attempt: impl FnMut(&mut Connection, Write) -> Result<T, postgres::Error>,
    ) -> Result<T, postgres::Error> {
        let upserts_first = self
            .upserts_first
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if !upserts_first {
            match attempt(conn, Write::Insert) {
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    self.upserts_first
                        .store(UPSERTS_AFTER_A_PRESENT_KEY, Ordering::Relaxed);
                }
                done => return done,
            }
        }
        attempt(conn, Write::Upsert)
    }
}

/// The first of `keys` whose row still names another owner (in the bytes `owner`) than its
/// new value does, after an owner-checked upsert skipped it.
fn held_key(
    tx: &mut postgres::Transaction<'_>,
    statements: &Statements,
    (keys, values): &Chunk<'_>,
    owner: &Range<usize>,
    (start, len): (i64, i64),
) -> Result<Option<Vec<u8>>, postgres::Error> {
    let rows = tx.query(&statements.owners_of, &[keys, &start, &len])?;
    let stored: HashMap<Vec<u8>, Vec<u8>> =
        rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
    Ok(keys.iter().zip(values).find_map(|(k, v)| {
        let held = stored.get(*k)?;
        (held.len() == owner.len() && Some(held.as_slice()) != v.get(owner.clone()))
            .then(|| k.to_vec())
    }))
}

fn too_far(owner: &Range<usize>) -> StoreError {
    StoreError::Backend {
        backend: "postgres",
        operation: "apply a batch",
        detail: format!(
            "the owner bytes {}..{} lie beyond what a value may hold",
            owner.start, owner.end
        ),
    }
}

impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.run("read a key", true, |conn| {
            let row = conn.client.query_opt(&conn.statements.get, &[&key])?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut found: std::collections::HashMap<Vec<u8>, Vec<u8>> =
            std::collections::HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(CHUNK_ROWS) {
            let rows = self.run("read keys", true, |conn| {
                conn.client.query(&conn.statements.get_many, &[&chunk])
            })?;
            found.extend(rows.into_iter().map(|r| (r.get(0), r.get(1))));
        }
        Ok(keys.iter().map(|k| found.get(*k).cloned()).collect())
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.run("write a key", true, |conn| {
            conn.client.execute(&conn.statements.put, &[&key, &value])?;
            Ok(())
        })
    }

    fn delete(&self, key: &[u8]) -> Result<bool, StoreError> {
        self.run("delete a key", false, |conn| {
            Ok(conn.client.execute(&conn.statements.delete, &[&key])? > 0)
        })
    }

    fn scan_prefix(&self, prefix: &[u8]) -> ScanIter<'_> {
        Box::new(Scan::new(self, prefix, prefix_end(prefix)))
    }

    fn scan_range(&self, from: &[u8], until: &[u8]) -> ScanIter<'_> {
        if from >= until {
            return Box::new(std::iter::empty());
        }
        Box::new(Scan::new(self, from, Some(until.to_vec())))
    }

    fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let writes = NetWrites::of(batch, &[]);
        // Running the whole batch again is safe: its net effect does not depend on what was
        // there before.
        self.run("apply a batch", true, |conn| {
            self.insert_first(conn, |conn, how| {
                let mut tx = conn.client.transaction()?;
                match how {
                    Write::Insert => writes.insert_all(&mut tx, &conn.statements)?,
                    Write::Upsert => writes.upsert_plain(&mut tx, &conn.statements)?,
                }
                tx.commit()
            })
        })
    }

    fn apply_owned(
        &self,
        batch: &Batch,
        owned: &[&[u8]],
        owner: Range<usize>,
    ) -> Result<Option<usize>, StoreError> {
        if batch.is_empty() {
            return Ok(None);
        }
        let writes = NetWrites::of(batch, owned);
        // `substring` counts in 32-bit integers on PostgreSQL.
        let start = i32::try_from(owner.start + 1).map_err(|_| too_far(&owner))?;
        let len = i32::try_from(owner.len()).map_err(|_| too_far(&owner))?;
        let (start, len) = (i64::from(start), i64::from(len));
        // Running it again is safe too: a key this batch already took is ours on the second run.
        let held = self.run("apply a batch", true, |conn| {
            self.insert_first(conn, |conn, how| {
                let mut tx = conn.client.transaction()?;
                match how {
                    Write::Insert => writes.insert_all(&mut tx, &conn.statements)?,
                    Write::Upsert => {
                        writes.upsert_plain(&mut tx, &conn.statements)?;
                        for chunk in &chunks(writes.owned.iter().copied()) {
                            let (keys, values) = chunk;
                            let written = tx.execute(
                                &conn.statements.upsert_owned,
                                &[keys, values, &start, &len],
                            )?;
                            if written < keys.len() as u64 {
                                // Some key belongs to another owner: name it, and write nothing
                                // (dropping the transaction rolls it back).
                                return held_key(
                                    &mut tx,
                                    &conn.statements,
                                    chunk,
                                    &owner,
                                    (start, len),
                                )
                                .map(Some);
                            }
                        }
                    }
                }
                tx.commit()?;
                Ok(None)
            })
        })?;
        match held {
            None => Ok(None),
            Some(Some(key)) => Ok(owned.iter().position(|k| *k == key.as_slice())),
            // The upsert skipped a row, yet none names another owner: refuse rather than
            // report a write that was rolled back.
            Some(None) => Err(StoreError::Backend {
                backend: "postgres",
                operation: "apply a batch",
                detail: "an owner-checked write skipped a row that no other owner holds; \
                         nothing was written"
                    .to_owned(),
            }),
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Every write returned only after its transaction committed durably.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::NetWrites;
    use crate::Batch;

    proptest! {
        /// A batch's writes are split by their net effect: each deleted key once among the
        /// deletes, each put key once, among the owned puts if `owned` names it (any number of
        /// times) and among the plain ones if not.
        #[test]
        fn net_writes_split_the_net_effect_by_owner_check(
            ops in prop::collection::vec(
                (prop::collection::vec(0u8..4, 0..3), prop::option::of(any::<u8>())),
                0..40,
            ),
            owned in prop::collection::vec(prop::collection::vec(0u8..4, 0..3), 0..12),
        ) {
            let mut batch = Batch::new();
            let mut last: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
            for (key, value) in &ops {
                match value {
                    Some(v) => batch.put(key.clone(), vec![*v]),
                    None => batch.delete(key.clone()),
                }
                last.insert(key.clone(), value.map(|v| vec![v]));
            }
            let owned_refs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
            let owned: BTreeSet<&[u8]> = owned_refs.iter().copied().collect();
            let writes = NetWrites::of(&batch, &owned_refs);
            let pairs = |v: &[(&[u8], &[u8])]| -> Vec<(Vec<u8>, Vec<u8>)> {
                v.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
            };
            let expect = |is_owned: bool| -> Vec<(Vec<u8>, Vec<u8>)> {
                last.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
                    .filter(|(k, _)| owned.contains(k.as_slice()) == is_owned)
                    .collect()
            };
            let deletes: Vec<Vec<u8>> = writes.deletes.iter().map(|k| k.to_vec()).collect();
            let expected_deletes: Vec<Vec<u8>> = last
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| k.clone())
                .collect();
            prop_assert_eq!(deletes, expected_deletes);
            prop_assert_eq!(pairs(&writes.owned), expect(true));
            prop_assert_eq!(pairs(&writes.plain), expect(false));
        }
    }
}
