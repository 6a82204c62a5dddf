//! `domicile pki`: a development CA and the SVIDs it issues — exactly one URI SAN, keys 0600,
//! never overwritten — and the operator's signed directory.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn domicile(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_domicile"))
        .args(args)
        .output()
        .expect("the domicile binary runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_ca_issues_svids_with_one_uri_san_and_private_keys() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s).display().to_string();
    let (ok, text) = domicile(&[
        "pki",
        "init",
        "--trust-domain",
        "d.example",
        "--out",
        &p("ca"),
    ]);
    assert!(ok, "{text}");
    assert_eq!(mode(&dir.path().join("ca/ca.key")), 0o600);
    let (ok, text) = domicile(&[
        "pki",
        "issue",
        "--ca",
        &p("ca"),
        "--id",
        "spiffe://d.example/us/usds/alice",
        "--out",
        &p("alice"),
        "--dns",
        "localhost",
    ]);
    assert!(ok, "{text}");
    assert_eq!(mode(&dir.path().join("alice/svid.key")), 0o600);
    let identity = domicile_node::Identity::load(
        &dir.path().join("alice/bundle.pem"),
        &dir.path().join("alice/svid.pem"),
        &dir.path().join("alice/svid.key"),
        "d.example",
    )
    .unwrap();
    assert_eq!(
        identity.id().to_string(),
        "spiffe://d.example/us/usds/alice"
    );

    // An existing key is never replaced.
    let (ok, _) = domicile(&[
        "pki",
        "issue",
        "--ca",
        &p("ca"),
        "--id",
        "spiffe://d.example/us/usds/alice",
        "--out",
        &p("alice"),
    ]);
    assert!(!ok, "an SVID key was overwritten");
    let (ok, _) = domicile(&[
        "pki",
        "init",
        "--trust-domain",
        "d.example",
        "--out",
        &p("ca"),
    ]);
    assert!(!ok, "a CA key was overwritten");

    // Ids of another trust domain, or that are not SPIFFE ids, are refused.
    let (ok, text) = domicile(&[
        "pki",
        "issue",
        "--ca",
        &p("ca"),
        "--id",
        "spiffe://other.example/us/usds/bo",
        "--out",
        &p("bo"),
    ]);
    assert!(!ok);
    assert!(text.contains("other.example"), "{text}");
    let (ok, _) = domicile(&[
        "pki",
        "issue",
        "--ca",
        &p("ca"),
        "--id",
        "https://d.example/bo",
        "--out",
        &p("bo"),
    ]);
    assert!(!ok);
    assert!(!dir.path().join("bo/svid.key").exists());
}

#[test]
fn a_signed_directory_opens_only_under_the_operator_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s).display().to_string();
    let (ok, public) = domicile(&["pki", "operator-key", "--out", &p("operator.key")]);
    assert!(ok, "{public}");
    assert_eq!(mode(&dir.path().join("operator.key")), 0o600);
    std::fs::write(
        dir.path().join("entries.json"),
        r#"[{"id": "spiffe://d.example/us/usds/alice", "kind": "person",
             "organisation": {"name": "usds", "country": "US"}, "office_country": "US",
             "location_country": "US", "roles": ["engineer"]}]"#,
    )
    .unwrap();
    let (ok, text) = domicile(&[
        "pki",
        "sign-directory",
        "--entries",
        &p("entries.json"),
        "--operator-key",
        &p("operator.key"),
        "--out",
        &p("directory.json"),
    ]);
    assert!(ok, "{text}");
    let signed = std::fs::read_to_string(dir.path().join("directory.json")).unwrap();
    let directory =
        domicile_access::PrincipalDirectory::open_signed(&signed, public.trim()).unwrap();
    assert_eq!(directory.len(), 1);
    let other = domicile_access::ApproverKey::generate().unwrap();
    assert!(
        domicile_access::PrincipalDirectory::open_signed(&signed, &other.public_key_base64())
            .is_err()
    );
}
