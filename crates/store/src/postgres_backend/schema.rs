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
    /// Whether the step only tunes how PostgreSQL stores the table. Where the database answers
    /// that the statement is not supported (SQLSTATE 0A000) or does not parse (42601), as
    /// CockroachDB and YugabyteDB do for PostgreSQL's TOAST settings (they have no TOAST), the
    /// step is rolled back to a savepoint and recorded as applied without it.
    pub(crate) tuning: bool,
}

/// Every migration, in order. Append only: a released step is never edited.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        // Keys and values are the sealed store's bytes. BYTEA compares as unsigned bytes, which
        // is the order prefix scans need; BIGINT wherever an integer is 64 bits wide.
        sql: "CREATE TABLE {schema}.records (key BYTEA PRIMARY KEY, value BYTEA NOT NULL)",
        tuning: false,
    },
    Migration {
        version: 2,
        // Every value is ciphertext or random bytes (sealed records and registry entries, the
        // index journal's entries and subject lists). By default PostgreSQL tries to compress
        // each value over about 2 KB with pglz and throws the result away when it saves less
        // than a quarter; EXTERNAL keeps such values out of line without trying. Only rows
        // written after the step are affected.
        sql: "ALTER TABLE {schema}.records ALTER COLUMN value SET STORAGE EXTERNAL",
        tuning: true,
    },
];

/// The version this build migrates to.
pub const LATEST: i64 = 2;

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
    migrate_through(client, schema, MIGRATIONS)
}

/// Brings `schema` to the last of `steps`.
fn migrate_through(
    client: &mut postgres::Client,
    schema: &str,
    steps: &[Migration],
) -> Result<i64, StoreError> {
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
        match migrate_once(client, schema, &quoted, steps) {
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

/// Errors that say a statement is beyond what the database implements.
fn unsupported(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::FEATURE_NOT_SUPPORTED || *c == SqlState::SYNTAX_ERROR
    )
}

fn migrate_once(
    client: &mut postgres::Client,
    schema: &str,
    quoted: &str,
    steps: &[Migration],
) -> Result<i64, Attempt> {
    let latest = steps.last().map_or(0, |s| s.version);
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
    if found > latest {
        return Err(Attempt::Fail(StoreError::DatabaseSchema {
            schema: schema.to_owned(),
            found,
            latest,
            advice: "a newer domicile build wrote it; open it with that build (this one would \
                     not understand its tables)",
        }));
    }
    if found < 0 {
        return Err(Attempt::Fail(StoreError::DatabaseSchema {
            schema: schema.to_owned(),
            found,
            latest,
            advice: "no domicile build writes such a version; the version row was edited or \
                     the schema belongs to something else",
        }));
    }
    for step in steps.iter().filter(|m| m.version > found) {
        let sql = step.sql.replace("{schema}", quoted);
        if step.tuning {
            let mut savepoint = tx
                .savepoint("domicile_tuning")
                .map_err(db("apply a schema migration"))?;
            match savepoint.batch_execute(&sql) {
                Ok(()) => savepoint.commit(),
                Err(e) if unsupported(&e) => savepoint.rollback(),
                Err(e) => Err(e),
            }
            .map_err(db("apply a schema migration"))?;
        } else {
            tx.batch_execute(&sql)
                .map_err(db("apply a schema migration"))?;
        }
        tx.execute(
            &format!("UPDATE {quoted}.domicile_schema SET version = $1 WHERE id = 1"),
            &[&step.version],
        )
        .map_err(db("record the schema version"))?;
    }
    tx.commit().map_err(db("commit the schema migration"))?;
    Ok(latest)
}

#[cfg(test)]
#[path = "../../tests/pg/mod.rs"]
mod test_server;

#[cfg(test)]
mod tests {
    use super::test_server::PgServer;
    use super::*;

    fn client(server: &PgServer) -> postgres::Client {
        postgres::Client::connect(&server.url(), postgres::NoTls).unwrap()
    }

    #[test]
    fn steps_are_numbered_one_by_one_up_to_latest() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(versions, (1..=LATEST).collect::<Vec<_>>());
    }

    /// Version 1 as released, then `later` as versions 2, 3, …
    fn steps(later: &[(&'static str, bool)]) -> Vec<Migration> {
        let first = Migration {
            version: 1,
            sql: MIGRATIONS[0].sql,
            tuning: false,
        };
        std::iter::once(first)
            .chain(
                later
                    .iter()
                    .zip(2..)
                    .map(|(&(sql, tuning), version)| Migration {
                        version,
                        sql,
                        tuning,
                    }),
            )
            .collect()
    }

    /// On PostgreSQL, `FOR UPDATE` with an aggregate is SQLSTATE 0A000, the answer CockroachDB
    /// and YugabyteDB give to a TOAST setting.
    const UNSUPPORTED: &str = "SELECT count(*) FROM {schema}.records FOR UPDATE";

    #[test]
    fn a_tuning_step_the_database_does_not_support_is_recorded_without_it() {
        let Some(server) = PgServer::start("a_tuning_step_the_database_does_not_support") else {
            return;
        };
        let mut client = client(&server);
        let steps = steps(&[
            (UNSUPPORTED, true),
            (
                "INSERT INTO {schema}.records VALUES ('\\x01', '\\x02')",
                false,
            ),
        ]);
        assert_eq!(migrate_through(&mut client, "tuned", &steps).unwrap(), 3);
        // The transaction went on past the unsupported step: the later one was applied too.
        assert_eq!(
            server
                .psql("SELECT version FROM tuned.domicile_schema")
                .trim(),
            "3"
        );
        assert_eq!(
            server.psql("SELECT count(*) FROM tuned.records").trim(),
            "1"
        );
    }

    #[test]
    fn a_failing_step_is_refused_and_changes_nothing() {
        let Some(server) = PgServer::start("a_failing_step_is_refused_and_changes_nothing") else {
            return;
        };
        let mut client = client(&server);
        migrate_through(&mut client, "strict", &MIGRATIONS[..1]).unwrap();
        // The same unsupported statement as a structural step, and a tuning step that fails
        // for another reason (a missing table), are errors, and the version stays.
        for (sql, tuning) in [
            (UNSUPPORTED, false),
            (
                "ALTER TABLE {schema}.missing ALTER COLUMN value SET STORAGE EXTERNAL",
                true,
            ),
        ] {
            let err = migrate_through(&mut client, "strict", &steps(&[(sql, tuning)])).unwrap_err();
            assert!(
                err.to_string().contains("apply a schema migration"),
                "{err}"
            );
            assert_eq!(
                server
                    .psql("SELECT version FROM strict.domicile_schema")
                    .trim(),
                "1"
            );
        }
    }
}
