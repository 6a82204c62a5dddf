//! The PostgreSQL backend against a real, throwaway PostgreSQL server: the backend conformance
//! suite, schema versions, concurrent first connections, serialization-conflict retries, TLS,
//! and what the database operator sees in a `pg_dump` of a sealed store.
#![cfg(feature = "postgres")]

mod common;
mod pg;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use domicile_residency::DataClass;
use domicile_store::{
    conformance, Backend, Batch, PostgresBackend, PostgresConfig, SealedStore, StoreError,
    POSTGRES_SCHEMA_VERSION,
};
use pg::PgServer;

fn config(server: &PgServer, schema: &str) -> PostgresConfig {
    PostgresConfig::new(&server.url())
        .unwrap()
        .schema(schema)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
}

#[test]
fn postgres_conforms() {
    let Some(server) = PgServer::start("postgres_conforms") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Each case's "path" becomes a schema of its own; reopening the same path reopens it.
    conformance::run(dir.path(), &|path: &Path| {
        let mut h = DefaultHasher::new();
        path.hash(&mut h);
        let schema = format!("t_{:016x}", h.finish());
        Ok(Box::new(PostgresBackend::connect(&config(&server, &schema))?) as Box<dyn Backend>)
    });
}

#[test]
fn schema_versions_newer_or_unknown_are_refused() {
    let Some(server) = PgServer::start("schema_versions_newer_or_unknown_are_refused") else {
        return;
    };
    let backend = PostgresBackend::connect(&config(&server, "region_us")).unwrap();
    backend.put(b"k", b"v").unwrap();
    drop(backend);
    assert_eq!(
        server
            .psql("SELECT version FROM region_us.domicile_schema")
            .trim(),
        POSTGRES_SCHEMA_VERSION.to_string()
    );
    // Reconnecting migrates nothing and keeps the data.
    let backend = PostgresBackend::connect(&config(&server, "region_us")).unwrap();
    assert_eq!(backend.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    drop(backend);

    let newer = POSTGRES_SCHEMA_VERSION + 1;
    server.psql(&format!(
        "UPDATE region_us.domicile_schema SET version = {newer}"
    ));
    let err = PostgresBackend::connect(&config(&server, "region_us")).unwrap_err();
    assert!(
        matches!(err, StoreError::DatabaseSchema { found, .. } if found == newer),
        "{err}"
    );
    assert!(err.to_string().contains("newer domicile build"), "{err}");
    assert!(err.to_string().contains("region_us"), "{err}");

    server.psql("UPDATE region_us.domicile_schema SET version = -3");
    let err = PostgresBackend::connect(&config(&server, "region_us")).unwrap_err();
    assert!(
        matches!(err, StoreError::DatabaseSchema { found: -3, .. }),
        "{err}"
    );
    // Refusing changed nothing: the version is still the one found.
    assert_eq!(
        server
            .psql("SELECT version FROM region_us.domicile_schema")
            .trim(),
        "-3"
    );
    // The version column is 64 bits wide, as are all integers the backend declares.
    assert_eq!(
        server
            .psql(
                "SELECT data_type FROM information_schema.columns \
                 WHERE table_schema = 'region_us' AND column_name = 'version'"
            )
            .trim(),
        "bigint"
    );
}

/// How PostgreSQL stores the `value` column: `e` (EXTERNAL: out of line, never compressed) or
/// `x` (EXTENDED, the default: compressed first).
fn value_storage(server: &PgServer, schema: &str) -> String {
    server
        .psql(&format!(
            "SELECT attstorage FROM pg_attribute \
             WHERE attrelid = '{schema}.records'::regclass AND attname = 'value'"
        ))
        .trim()
        .to_owned()
}

#[test]
fn values_are_stored_without_compression_and_a_version_1_database_is_migrated() {
    let Some(server) = PgServer::start("values_are_stored_without_compression") else {
        return;
    };
    // A database as a build of schema version 1 left it, with a row.
    server.psql(
        "CREATE SCHEMA old; \
         CREATE TABLE old.domicile_schema (id BIGINT PRIMARY KEY CHECK (id = 1), \
                                           version BIGINT NOT NULL); \
         INSERT INTO old.domicile_schema VALUES (1, 1); \
         CREATE TABLE old.records (key BYTEA PRIMARY KEY, value BYTEA NOT NULL); \
         INSERT INTO old.records VALUES ('\\x6b', '\\x76')",
    );
    assert_eq!(value_storage(&server, "old"), "x");
    for schema in ["old", "new"] {
        let backend = PostgresBackend::connect(&config(&server, schema)).unwrap();
        assert_eq!(
            server
                .psql(&format!("SELECT version FROM {schema}.domicile_schema"))
                .trim(),
            POSTGRES_SCHEMA_VERSION.to_string()
        );
        assert_eq!(value_storage(&server, schema), "e", "{schema}");
        if schema == "old" {
            assert_eq!(backend.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        }
        // A large value that would compress well is written as it is: sealed values never
        // compress, so trying would only cost the server time.
        backend.put(b"large", &[0u8; 64 * 1024]).unwrap();
        assert_eq!(
            server
                .psql(&format!(
                    "SELECT coalesce(pg_column_compression(value), 'none') \
                     FROM {schema}.records WHERE key = '\\x6c61726765'"
                ))
                .trim(),
            "none"
        );
        assert_eq!(
            backend.get(b"large").unwrap().as_deref(),
            Some(&[0u8; 64 * 1024][..])
        );
    }
}

#[test]
fn processes_connecting_to_a_new_database_at_once_all_succeed() {
    let Some(server) = PgServer::start("processes_connecting_to_a_new_database_at_once") else {
        return;
    };
    let url = server.url();
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let config = PostgresConfig::new(&url).unwrap().schema("racing").unwrap();
                let backend = PostgresBackend::connect(&config)?;
                backend.put(format!("k{i}").as_bytes(), b"v")?;
                Ok::<_, StoreError>(())
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let backend = PostgresBackend::connect(&config(&server, "racing")).unwrap();
    assert_eq!(backend.scan_prefix(b"k").count(), 6);
    assert_eq!(
        server
            .psql("SELECT count(*) FROM racing.domicile_schema")
            .trim(),
        "1"
    );
    // No advisory lock was ever taken (CockroachDB has none).
    assert_eq!(
        server
            .psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
            .trim(),
        "0"
    );
}

#[test]
fn conflicting_batches_are_retried_and_stay_atomic() {
    // Serializable by default, as CockroachDB always is: concurrent writers of the same rows
    // then meet SQLSTATE 40001.
    let Some(server) = PgServer::start_with(
        "conflicting_batches_are_retried_and_stay_atomic",
        &[("default_transaction_isolation", "serializable")],
        &[],
    ) else {
        return;
    };
    let backend =
        Arc::new(PostgresBackend::connect(&config(&server, "conflicts").pool_size(4)).unwrap());
    const KEYS: usize = 16;
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let backend = backend.clone();
            std::thread::spawn(move || {
                for n in 0..40u8 {
                    let mut batch = Batch::new();
                    for k in 0..KEYS {
                        batch.put(format!("hot/{k:02}").into_bytes(), vec![t, n]);
                    }
                    backend.apply(&batch).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(
        backend.retries() > 0,
        "four writers on the same rows never met a serialization failure (SQLSTATE 40001)"
    );
    // Every batch was whole: all keys hold the value of the same (last) batch.
    let values: Vec<Vec<u8>> = backend.scan_prefix(b"hot/").map(|r| r.unwrap().1).collect();
    assert_eq!(values.len(), KEYS);
    assert!(
        values.iter().all(|v| v == &values[0]),
        "batches interleaved: {values:?}"
    );
    eprintln!("{} retries after SQLSTATE 40001", backend.retries());
}

/// A CA and a server certificate for 127.0.0.1, made with the openssl command.
fn make_certificates(dir: &Path, name: &str) -> bool {
    let run = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    let ca_key = format!("{name}-ca.key");
    let ca = format!("{name}-ca.pem");
    let subj = format!("/CN=domicile test {name} CA");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &ca_key,
        "-out",
        &ca,
        "-days",
        "2",
        "-subj",
        &subj,
    ]) && run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]) && {
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ])
    }
}

#[test]
fn tls_with_rustls_is_required_and_checks_the_server() {
    let test = "tls_with_rustls_is_required_and_checks_the_server";
    let certs = tempfile::tempdir().unwrap();
    if !make_certificates(certs.path(), "right") || !make_certificates(certs.path(), "wrong") {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: the openssl command is needed to make test certificates");
        }
        eprintln!("SKIPPED {test}: the openssl command could not make test certificates");
        return;
    }
    // Made last, "wrong"'s run re-issued server.pem under the wrong CA: issue it again.
    assert!(make_certificates(certs.path(), "right"));
    let read = |name: &str| std::fs::read(certs.path().join(name)).unwrap();
    let (cert, key) = (read("server.pem"), read("server.key"));
    // Only TLS connections are accepted over TCP.
    let hba = b"local all all trust\n\
                hostssl all all 127.0.0.1/32 trust\n\
                hostnossl all all 127.0.0.1/32 reject\n";
    let Some(server) = PgServer::start_with(
        test,
        &[
            ("ssl", "on"),
            ("ssl_cert_file", "server.pem"),
            ("ssl_key_file", "server.key"),
        ],
        &[
            ("pg_hba.conf", hba, 0o600),
            ("server.pem", &cert, 0o644),
            ("server.key", &key, 0o600),
        ],
    ) else {
        return;
    };

    // With the right CA: connected (and, by pg_hba.conf, necessarily over TLS).
    let tls = config(&server, "tls")
        .tls_root_certificates(certs.path().join("right-ca.pem"))
        .unwrap();
    let backend = PostgresBackend::connect(&tls).unwrap();
    backend.put(b"k", b"v").unwrap();
    assert_eq!(backend.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(
        server
            .psql("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.client_addr IS NOT NULL")
            .trim()
            .parse::<u32>()
            .unwrap()
            .min(1),
        1,
        "the backend's connection is TLS"
    );
    drop(backend);

    // A server whose certificate another CA signed is refused.
    let wrong = config(&server, "tls")
        .tls_root_certificates(certs.path().join("wrong-ca.pem"))
        .unwrap();
    let err = PostgresBackend::connect(&wrong).unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    // Without TLS the server turns us away; asking for TLS without roots is refused up front.
    let err = PostgresBackend::connect(&config(&server, "tls")).unwrap_err();
    assert!(err.to_string().contains("pg_hba.conf"), "{err}");
    let url = format!("{}&sslmode=require", server.url());
    let err = PostgresBackend::connect(&PostgresConfig::new(&url).unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidDatabaseConfig {
                setting: "sslmode",
                ..
            }
        ),
        "{err}"
    );
    // A roots file that holds no certificate is a typed error naming it.
    std::fs::write(certs.path().join("empty.pem"), "not a certificate\n").unwrap();
    let err = config(&server, "tls")
        .tls_root_certificates(certs.path().join("empty.pem"))
        .unwrap_err();
    assert!(err.to_string().contains("empty.pem"), "{err}");
}

#[test]
fn a_pg_dump_of_a_sealed_store_names_no_one() {
    let Some(server) = PgServer::start("a_pg_dump_of_a_sealed_store_names_no_one") else {
        return;
    };
    let dirs = Dirs::new();
    let backend = PostgresBackend::connect(&config(&server, "region_us")).unwrap();
    let store =
        SealedStore::with_backend(Box::new(backend), region("us"), policy(), dirs.custodian())
            .unwrap();
    let subjects = ["zelda-ortega-7731", "quentin-abara-2208"];
    let secrets = [
        "watched:cooking-with-grandma-ep-4",
        "searched:knee surgery recovery",
    ];
    let likes = collection("likes");
    let mut keys = Vec::new();
    for (i, id) in subjects.iter().enumerate() {
        let s = subject(id, "US");
        store.register_subject(&s).unwrap();
        for j in 0..5 {
            let k = key(&format!("{id}/history-{j}"));
            store
                .put_raw(
                    &s.id,
                    DataClass::Protected,
                    &likes,
                    &k,
                    secrets[i].as_bytes(),
                )
                .unwrap();
            keys.push(k);
        }
    }
    for k in &keys {
        assert!(store.get_raw(&likes, k).unwrap().is_some());
    }
    drop(store);

    let dump = server.pg_dump();
    assert!(
        dump.len() > 1000 && dump.windows(7).any(|w| w == b"records"),
        "the dump holds the records table"
    );
    let hex = |s: &str| -> Vec<u8> {
        s.bytes()
            .flat_map(|b| format!("{b:02x}").into_bytes())
            .collect()
    };
    let mut needles: Vec<String> = subjects.iter().map(|s| s.to_string()).collect();
    needles.extend(secrets.iter().map(|s| s.to_string()));
    needles.extend(keys.iter().map(|k| k.to_string()));
    for needle in &needles {
        // pg_dump writes BYTEA as hex, so look for both spellings.
        for form in [needle.as_bytes().to_vec(), hex(needle)] {
            assert!(
                !dump.windows(form.len()).any(|w| w == form.as_slice()),
                "the pg_dump shows {needle:?}"
            );
        }
    }
}

/// Two stores on one database (as two processes would be), each writing batches for its own
/// subject into the same keys at once: the owner check runs inside each batch's transaction, so
/// exactly one batch of each round is written, whole, and the other is refused with nothing of
/// it written — no record of one subject indexed under the other, none lost from an index.
#[test]
fn a_key_held_by_another_subject_is_refused_inside_the_batch_even_racing() {
    let Some(server) =
        PgServer::start("a_key_held_by_another_subject_is_refused_inside_the_batch_even_racing")
    else {
        return;
    };
    let dirs = Dirs::new();
    let custodian = dirs.custodian();
    let open = || {
        let backend = PostgresBackend::connect(&config(&server, "region_us")).unwrap();
        SealedStore::with_backend(Box::new(backend), region("us"), policy(), custodian.clone())
            .unwrap()
    };
    let (first, second) = (open(), open());
    let (alice, bob) = (subject("alice", "US"), subject("bob", "US"));
    first.register_subject(&alice).unwrap();
    first.register_subject(&bob).unwrap();
    let likes = collection("likes");

    // In turn: Bob's batch takes one of Alice's keys among new ones.
    let alices: Vec<_> = (0..10).map(|i| key(&format!("a-{i}"))).collect();
    first
        .put_batch(&owned_batch(&alice, &likes, &alices))
        .unwrap();
    let mut bobs: Vec<_> = (0..10).map(|i| key(&format!("b-{i}"))).collect();
    bobs.insert(6, alices[3].clone());
    match second.put_batch(&owned_batch(&bob, &likes, &bobs)) {
        Err(StoreError::KeyHeldByOtherSubject { collection, key }) => {
            assert_eq!(collection, likes);
            assert_eq!(key, second.blind_index(&likes, &alices[3]));
        }
        other => panic!("Bob took Alice's key: {other:?}"),
    }
    for k in &bobs {
        let found = first.get_raw(&likes, k).unwrap();
        if k == &alices[3] {
            assert_eq!(found.unwrap().meta.subject, alice.id);
        } else {
            assert!(found.is_none(), "a record of the refused batch was written");
        }
    }
    assert!(second.scan_subject(&bob.id).unwrap().is_empty());

    // At once: each round, both write the same fresh keys (in opposite orders).
    for round in 0..12 {
        let keys: Vec<_> = (0..200).map(|i| key(&format!("r{round}-{i}"))).collect();
        let (a, b) = race_batches((&first, &alice), (&second, &bob), &likes, &keys);
        let winner = match (&a, &b) {
            (Ok(_), Err(StoreError::KeyHeldByOtherSubject { .. })) => &alice,
            (Err(StoreError::KeyHeldByOtherSubject { .. }), Ok(_)) => &bob,
            other => panic!("round {round}: expected one batch written, one refused: {other:?}"),
        };
        for k in &keys {
            let record = first
                .get_raw(&likes, k)
                .unwrap()
                .expect("the winner's record");
            assert_eq!(record.meta.subject, winner.id, "round {round}");
            assert_eq!(record.value, winner.id.as_str().as_bytes());
        }
    }
    // Every record is in its owner's index, and in no one else's.
    let indexed = |who: &domicile_residency::Subject| {
        first
            .scan_subject(&who.id)
            .unwrap()
            .into_iter()
            .map(|r| {
                assert_eq!(r.meta.subject, who.id);
                r.meta.key
            })
            .collect::<std::collections::BTreeSet<_>>()
    };
    let (of_alice, of_bob) = (indexed(&alice), indexed(&bob));
    assert_eq!(of_alice.len() + of_bob.len(), 10 + 12 * 200);
    assert!(of_alice.is_disjoint(&of_bob));

    // One record at a time, each handle putting the same key as its own subject at once:
    // exactly one is acknowledged, and the record is the acknowledged one's.
    for i in 0..60 {
        let k = key(&format!("one-{i}"));
        let (a, b) = std::thread::scope(|s| {
            let a =
                s.spawn(|| first.put_raw(&alice.id, DataClass::Protected, &likes, &k, b"alice"));
            let b = s.spawn(|| second.put_raw(&bob.id, DataClass::Protected, &likes, &k, b"bob"));
            (a.join().unwrap(), b.join().unwrap())
        });
        let winner = match (&a, &b) {
            (Ok(_), Err(StoreError::KeyHeldByOtherSubject { .. })) => &alice,
            (Err(StoreError::KeyHeldByOtherSubject { .. }), Ok(_)) => &bob,
            other => panic!("record {i}: expected one put written, one refused: {other:?}"),
        };
        let record = second
            .get_raw(&likes, &k)
            .unwrap()
            .expect("the winner's record");
        assert_eq!(record.meta.subject, winner.id, "record {i}");
    }
}

/// Rebuilding the subject index while another handle (another process, on PostgreSQL) writes:
/// the rebuild drops only the journal entries it read before reading the records, so every
/// record either handle wrote is found by its subject afterwards, from either handle. A check
/// during those writes finds the store sound: a record written after it read the index is not
/// called unindexed.
#[test]
fn an_index_rebuilt_while_another_handle_writes_loses_no_record() {
    let Some(server) =
        PgServer::start("an_index_rebuilt_while_another_handle_writes_loses_no_record")
    else {
        return;
    };
    let dirs = Dirs::new();
    let custodian = dirs.custodian();
    let open = || {
        let backend = PostgresBackend::connect(&config(&server, "region_us")).unwrap();
        SealedStore::with_backend(Box::new(backend), region("us"), policy(), custodian.clone())
            .unwrap()
    };
    let (first, second) = (open(), open());
    let (alice, bob) = (subject("alice", "US"), subject("bob", "US"));
    first.register_subject(&alice).unwrap();
    first.register_subject(&bob).unwrap();
    let notes = collection("notes");
    let write = |store: &SealedStore, who: &domicile_residency::Subject, keys: &[String]| {
        let keys: Vec<_> = keys.iter().map(|k| key(k)).collect();
        let batch: Vec<_> = keys
            .iter()
            .map(|k| domicile_store::NewRecord {
                subject: &who.id,
                class: DataClass::Protected,
                collection: &notes,
                key: k,
                value: b"v",
            })
            .collect();
        store.put_batch(&batch).unwrap();
    };
    for b in 0..5 {
        let keys: Vec<String> = (0..10).map(|i| format!("a-{b}-{i}")).collect();
        write(&first, &alice, &keys);
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            for b in 0..40 {
                let keys: Vec<String> = (0..5).map(|i| format!("b-{b}-{i}")).collect();
                write(&second, &bob, &keys);
            }
        });
        for _ in 0..6 {
            first.rebuild_index().unwrap();
            let report = first.check().unwrap();
            assert!(report.is_sound(), "{report:?}");
        }
    });
    let report = second.check().unwrap();
    assert!(report.is_sound(), "{report:?}");
    assert_eq!((report.records, report.subjects), (250, 2), "{report:?}");
    for store in [&first, &second] {
        assert_eq!(store.scan_subject(&alice.id).unwrap().len(), 50);
        assert_eq!(store.scan_subject(&bob.id).unwrap().len(), 200);
    }
    let rebuilt = first.rebuild_index().unwrap();
    assert_eq!((rebuilt.subjects, rebuilt.records), (2, 250), "{rebuilt:?}");
    assert_eq!(first.backend().scan_prefix(b"j").count(), 0);
    assert_eq!(second.scan_subject(&bob.id).unwrap().len(), 200);
}
