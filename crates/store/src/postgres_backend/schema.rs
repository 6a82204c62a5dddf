//! The tables, as embedded, versioned migrations applied on connect.
//!
//! The version lives in `<schema>.domicile_schema` (one row, `id = 1`). Opening a store runs,
//! in one transaction holding that row `FOR UPDATE`, every migration above the recorded version,
//! so two processes opening a new database at once serialise on the row instead of on an
//! advisory lock (CockroachDB has none). A version above [`LATEST`] — a newer build's schema —
//! or below 0 is refused, and nothing is changed.

use postgres::error::SqlState;

use crate::StoreError;

/// One step of the schema.
#[derive(Debug)]
pub(crate) struct Migration {
    /// The version the schema is at after it.
    pub(crate) version: i64,
    /// The statements, with `{schema}` standing for the quoted schema name.
    pub(crate) sql: &'static str,
}

/// Every migration, in order. Append only: a released step is never edited.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    // Keys and values are the sealed store's bytes. BYTEA compares as unsigned bytes, which
    // is the order prefix scans need; BIGINT wherever an integer is 64 bits wide.
    sql: "CREATE TABLE {schema}.records (key BYTEA PRIMARY KEY, value BYTEA NOT NULL)",
}];

/// The version this build migrates to.
pub const LATEST: i64 = 1;

/// Errors of creating the schema concurrently with another process: the loser of the race
/// sees the catalog row the winner inserted, and simply runs the step again.
fn lost_creation_race(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::UNIQUE_VIOLATION
            || *c == SqlState::DUPLICATE_SCHEMA
            || *c == SqlState::DUPLICATE_TABLE
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

/// Brings `schema` to [`LATEST`], or refuses a version this build does not know.
pub(crate) fn migrate(client: &mut postgres::Client, schema: &str) -> Result<i64, StoreError> {
    let quoted = format!("\"{schema}\"");
    let create = format!(
        "CREATE SCHEMA IF NOT EXISTS {quoted};
         CREATE TABLE IF NOT EXISTS {quoted}.domicile_schema (
             id BIGINT PRIMARY KEY CHECK (id = 1),
             version BIGINT NOT NULL
         );
         INSERT INTO {quoted}.domicile_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING"
    );
    let mut attempt = 0;
    loop {
        match client.batch_execute(&create) {
            Ok(()) => break,
            Err(e) if lost_creation_race(&e) && attempt < 10 => {
                attempt += 1;
                std::thread::sleep(super::backoff(attempt));
            }
            Err(e) => return Err(super::failed("create the schema")(e)),
        }
    }
    let mut attempt = 0;
    loop {
        match migrate_once(client, schema, &quoted) {
            Err(Attempt::Retry(_)) if attempt < 10 => {
                attempt += 1;
                std::thread::sleep(super::backoff(attempt));
            }
            Err(Attempt::Retry(e)) => return Err(super::failed("migrate the schema")(e)),
            Err(Attempt::Fail(e)) => return Err(e),
            Ok(version) => return Ok(version),
        }
    }
}

enum Attempt {
    Retry(postgres::Error),
    Fail(StoreError),
}

fn migrate_once(client: &mut postgres::Client, schema: &str, quoted: &str) -> Result<i64, Attempt> {
    let db = |operation: &'static str| {
        move |e: postgres::Error| {
            if lost_creation_race(&e) {
                Attempt::Retry(e)
            } else {
                Attempt::Fail(super::failed(operation)(e))
            }
        }
    };
    let mut tx = client
        .transaction()
        .map_err(db("begin the schema migration"))?;
    let row = tx
        .query_one(
            &format!("SELECT version FROM {quoted}.domicile_schema WHERE id = 1 FOR UPDATE"),
            &[],
        )
        .map_err(db("read the schema version"))?;
    let found: i64 = row.get(0);
    if found > LATEST {
        return Err(Attempt::Fail(StoreError::DatabaseSchema {
            schema: schema.to_owned(),
            found,
            latest: LATEST,
            advice: "a newer domicile build wrote it; open it with that build (this one would \
                     not understand its tables)",
        }));
    }
    if found < 0 {
        return Err(Attempt::Fail(StoreError::DatabaseSchema {
            schema: schema.to_owned(),
            found,
            latest: LATEST,
            advice: "no domicile build writes such a version; the version row was edited or \
                     the schema belongs to something else",
        }));
    }
    for step in MIGRATIONS.iter().filter(|m| m.version > found) {
        tx.batch_execute(&step.sql.replace("{schema}", quoted))
            .map_err(db("apply a schema migration"))?;
        tx.execute(
            &format!("UPDATE {quoted}.domicile_schema SET version = $1 WHERE id = 1"),
            &[&step.version],
        )
        .map_err(db("record the schema version"))?;
    }
    tx.commit().map_err(db("commit the schema migration"))?;
    Ok(LATEST)
}
