//! Regions on PostgreSQL chosen on the command line: `domicile split run --database-url
//! REGION=URL` puts a split's new regions in a real (throwaway) PostgreSQL server, later commands
//! find the database from the keys directory alone, the URL (and its password) is written nowhere
//! under the data directory, and a `pg_dump` shows no subject id or record key.
//!
//! Runs with `cargo test -p domicile --features postgres --test postgres_cli`; says SKIPPED where
//! PostgreSQL is absent, except under CI=true.
#![cfg(feature = "postgres")]

#[path = "../../store/tests/pg/mod.rs"]
mod pg;

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{domicile, global_world, text};

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_split_puts_its_new_regions_on_postgres_named_on_the_command_line() {
    let Some(server) =
        pg::PgServer::start("a_split_puts_its_new_regions_on_postgres_named_on_the_command_line")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (data, keys) = (tmp.path().join("data"), tmp.path().join("keys"));
    global_world(&data, &keys);
    let (d, k) = (data.to_str().unwrap(), keys.to_str().unwrap());
    // Trust authentication ignores the password, but it is in the URL as an operator's would be.
    let password = "pw-not-in-any-file-4711";
    let url = server
        .url()
        .replace("postgres@", &format!("postgres:{password}@"));
    let us = format!("us={url}");
    let row = format!("row={url}");

    // Wrong flags are refused before anything is written, without echoing the URL.
    for (flags, expected) in [
        (
            vec!["--database-url", "eu=postgresql://x"],
            "has no region eu",
        ),
        (vec!["--database-url", "us"], "takes REGION=VALUE"),
        (
            vec!["--database-url", us.as_str(), "--database-url", us.as_str()],
            "names region us twice",
        ),
        (
            vec!["--database-ca", "row=/nowhere.pem"],
            "which has no --database-url",
        ),
    ] {
        let mut args = vec!["split", "run", "--data", d, "--keys", k, "--to", "us-split"];
        args.extend(flags);
        let out = domicile(&args);
        let said = text(&out);
        assert!(!out.status.success(), "{said}");
        assert!(said.contains(expected), "{said}");
        assert!(!said.contains(password), "{said}");
        assert!(!keys.join("us/database.json").exists());
    }
    // A mistyped keys directory gets nothing either.
    let wrong = tmp.path().join("keyz");
    let out = domicile(&[
        "split",
        "run",
        "--data",
        d,
        "--keys",
        wrong.to_str().unwrap(),
        "--to",
        "us-split",
        "--database-url",
        &us,
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!wrong.exists(), "a mistyped --keys was created");

    let out = domicile(&[
        "split",
        "run",
        "--data",
        d,
        "--keys",
        k,
        "--to",
        "us-split",
        "--quiet",
        "--database-url",
        &us,
        "--database-url",
        &row,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(password));
    for region in ["us", "row"] {
        let config = keys.join(region).join("database.json");
        let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is mode {mode:o}", config.display());
        assert!(data.join(region).join("store.postgres").exists());
        assert!(
            !data.join(region).join("store").exists(),
            "{region} got a sled store too"
        );
    }
    // The password and the URL are nowhere under the data directory.
    for (path, bytes) in files(&data) {
        assert!(
            !contains(&bytes, password.as_bytes()),
            "{} holds the password",
            path.display()
        );
        assert!(
            !contains(&bytes, b"127.0.0.1"),
            "{} holds the URL",
            path.display()
        );
    }

    // Later commands find each region's database in the keys directory, no variable set.
    let out = domicile(&["split", "verify", "--data", d, "--keys", k]);
    assert!(out.status.success(), "{}", text(&out));

    // What the database operator sees: no subject id or record key.
    let dump = server.pg_dump();
    assert!(contains(&dump, b"domicile_us") && contains(&dump, b"domicile_row"));
    for i in 0..4 {
        for needle in [
            format!("user-{i}"),
            format!("user-{i}-profile"),
            format!("user-{i}-videos"),
        ] {
            assert!(
                !contains(&dump, needle.as_bytes()),
                "pg_dump shows {needle}"
            );
        }
    }

    // A region on PostgreSQL whose database is no longer named is refused, not opened empty.
    std::fs::remove_file(keys.join("us/database.json")).unwrap();
    let out = domicile(&["split", "verify", "--data", d, "--keys", k]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("database.json") && said.contains("region us"),
        "{said}"
    );
    assert!(!data.join("us/store").exists());
}

#[test]
fn init_puts_a_region_on_postgres_and_refuses_one_already_on_sled() {
    let Some(server) =
        pg::PgServer::start("init_puts_a_region_on_postgres_and_refuses_one_already_on_sled")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (data, keys) = (tmp.path().join("data"), tmp.path().join("keys"));
    let (d, k) = (data.to_str().unwrap(), keys.to_str().unwrap());
    let global = format!("global={}", server.url());
    let out = domicile(&[
        "init",
        "--policy",
        "global",
        "--data",
        d,
        "--keys",
        k,
        "--database-url",
        &global,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(data.join("global/store.postgres").exists());
    assert!(!data.join("global/store").exists());

    // A region whose store was made in PostgreSQL, opened on a database that does not hold it (a
    // URL naming another database, a dropped schema), is refused, not made a new, empty store.
    server.psql("CREATE DATABASE elsewhere");
    let elsewhere = server.url().replacen("/postgres?", "/elsewhere?", 1);
    assert_ne!(
        elsewhere,
        server.url(),
        "the test server's URL names its database"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_domicile"))
        .args([
            "split", "plan", "--data", d, "--keys", k, "--to", "us-split",
        ])
        .env("DOMICILE_DATABASE_URL_GLOBAL", &elsewhere)
        .output()
        .unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("schema domicile_global of the database DOMICILE_DATABASE_URL_GLOBAL names holds no sealed store"),
        "{said}"
    );
    let out = domicile(&[
        "split", "plan", "--data", d, "--keys", k, "--to", "us-split",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    server.psql("DROP SCHEMA domicile_global CASCADE");
    let out = domicile(&[
        "split", "plan", "--data", d, "--keys", k, "--to", "us-split",
    ]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("holds no sealed store"), "{said}");

    // A sled deployment cannot be pointed at a database after the fact: refused, nothing written.
    let (data2, keys2) = (tmp.path().join("data2"), tmp.path().join("keys2"));
    let (d2, k2) = (data2.to_str().unwrap(), keys2.to_str().unwrap());
    let out = domicile(&["init", "--policy", "global", "--data", d2, "--keys", k2]);
    assert!(out.status.success(), "{}", text(&out));
    let out = domicile(&[
        "init",
        "--policy",
        "global",
        "--data",
        d2,
        "--keys",
        k2,
        "--database-url",
        &global,
    ]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("already keeps its records on sled"), "{said}");
    assert!(!keys2.join("global/database.json").exists());
}
