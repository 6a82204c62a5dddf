//! `domicile split` end to end: the real binary on a real deployment.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use domicile_access::RecordRef;
use domicile_residency::{DataClass, JustificationCode, Purpose, Subject};
use domicile_split::Deployment;
use domicile_store::{Collection, RecordKey};

/// The policies these tests link, as a binary's composition root would list them.
fn policies() -> domicile_residency::PolicyResolver {
    domicile_residency::PolicyResolver::new()
        .with(Arc::new(domicile_policy_global::GlobalPolicy::new()))
        .with(Arc::new(domicile_policy_us_split::UsSplitPolicy::new()))
}

fn domicile(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_domicile"))
        .args(args)
        .output()
        .expect("the domicile binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn global_world(data: &Path, keys: &Path) {
    let global = Deployment::create(
        data,
        keys,
        policies().resolve("global").unwrap(),
        "domicile.example",
    )
    .unwrap();
    let node = global.regions().next().unwrap();
    let app = global.migration_principal(&node.region);
    let why = Purpose::new(JustificationCode::Migration);
    for (i, country) in ["US", "DE", "PR", "BR", "US"].iter().enumerate() {
        let id = format!("user-{i}");
        node.gate
            .register_subject(
                &app,
                &why,
                &Subject::parse(&id, Some(country), None).unwrap(),
            )
            .unwrap();
        for (class, collection) in [
            (DataClass::Protected, "profile"),
            (DataClass::Public, "videos"),
        ] {
            let record = RecordRef {
                subject: id.parse().unwrap(),
                class,
                collection: Collection::parse(collection).unwrap(),
                key: RecordKey::parse(&format!("{id}-{collection}")).unwrap(),
            };
            node.gate
                .write(&app, &why, &record, b"{\"v\":1}", None)
                .unwrap();
        }
    }
    global.close().unwrap();
}

#[test]
fn plan_run_verify_report() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    global_world(&data, &keys);
    let (d, k) = (data.to_str().unwrap(), keys.to_str().unwrap());

    let plan = domicile(&[
        "split", "plan", "--data", d, "--keys", k, "--to", "us-split",
    ]);
    assert!(plan.status.success(), "{}", text(&plan));
    let out = text(&plan);
    assert!(
        out.contains("homed in us: 3") && out.contains("homed in row: 2"),
        "{out}"
    );
    assert!(
        out.contains("replicate 5") && out.contains("move 5"),
        "{out}"
    );

    let json = domicile(&[
        "split", "plan", "--data", d, "--keys", k, "--to", "us-split", "--json",
    ]);
    let summary: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(summary["subjects"], 5);

    let run = domicile(&[
        "split", "run", "--data", d, "--keys", k, "--to", "us-split", "--quiet",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    assert!(
        text(&run).contains("shredded in global: 5 subjects, 10 records"),
        "{}",
        text(&run)
    );

    let verify = domicile(&["split", "verify", "--data", d, "--keys", k]);
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(
        text(&verify).contains("every log is consistent with it"),
        "{}",
        text(&verify)
    );
    // Each new region's store checks sound. Every subject is registered in both: their public
    // records are replicated to both regions.
    let check = domicile(&["store", "check", "--data", d, "--keys", k, "--json"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    let reports: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    for (region, records) in [("us", 8), ("row", 7)] {
        let report = &reports[region];
        assert_eq!(report["records"], records, "{region}: {report}");
        assert_eq!(report["subjects"], 5, "{region}: {report}");
        assert_eq!(report["shredded"], 0, "{region}: {report}");
    }

    let report = domicile(&["split", "report", "--data", d, "--json"]);
    assert!(report.status.success(), "{}", text(&report));
    let signed: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let key = signed["public_key"].as_str().unwrap().to_owned();
    let good = domicile(&["split", "report", "--data", d, "--public-key", &key]);
    assert!(good.status.success(), "{}", text(&good));
    // The log keys an auditor holds: the report's must be these.
    let us_vkey = dir.path().join("data/us/log.vkey");
    let row_vkey = dir.path().join("data/row/log.vkey");
    let (us_vkey, row_vkey) = (us_vkey.to_str().unwrap(), row_vkey.to_str().unwrap());
    let pinned_logs = domicile(&[
        "split",
        "report",
        "--data",
        d,
        "--log-vkey",
        us_vkey,
        "--log-vkey",
        row_vkey,
    ]);
    assert!(pinned_logs.status.success(), "{}", text(&pinned_logs));
    assert!(
        text(&pinned_logs).contains("the report names the 2 you gave"),
        "{}",
        text(&pinned_logs)
    );
    // Another key under the us log's name (what someone who forged that log would hold):
    // refused, naming the log.
    let us_text = std::fs::read_to_string(us_vkey).unwrap();
    let us_name = us_text.trim().split('+').next().unwrap().to_owned();
    let held_path = dir.path().join("held.vkey");
    let refused_with = |name: &str, says: &str| {
        let key = domicile_audit::SigningKey::generate(name, domicile_audit::KeyKind::Ed25519)
            .unwrap()
            .verifier();
        std::fs::write(&held_path, format!("{key}\n")).unwrap();
        let held = held_path.to_str().unwrap();
        let report = vec!["split", "report", "--data", d, "--log-vkey", held];
        let verify = vec![
            "split",
            "verify",
            "--data",
            d,
            "--keys",
            k,
            "--log-vkey",
            held,
        ];
        for args in [report, verify] {
            let out = domicile(&args);
            assert!(!out.status.success(), "{name} {}: {}", args[1], text(&out));
            assert!(text(&out).contains(says), "{}", text(&out));
        }
    };
    let args = vec![
        "split",
        "verify",
        "--data",
        d,
        "--keys",
        k,
        "--log-vkey",
        us_vkey,
    ];
    let verified = domicile(&args);
    assert!(verified.status.success(), "{}", text(&verified));
    refused_with(
        &us_name,
        &format!("the report's key for the log {us_name} is not the one you hold"),
    );
    // A key for a log the report does not cover: refused.
    refused_with(
        "elsewhere.example/audit/x",
        "covers no log named elsewhere.example/audit/x",
    );
    let other = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let bad = domicile(&["split", "report", "--data", d, "--public-key", other]);
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("another migration key"),
        "{}",
        text(&bad)
    );

    // The attacks on `split verify`: each must fail with a non-zero exit code.
    let report_path = data.join("split/report.json");
    let original = std::fs::read(&report_path).unwrap();
    let fails = |what: &str| {
        let out = domicile(&["split", "verify", "--data", d, "--keys", k]);
        assert!(!out.status.success(), "{what}: {}", text(&out));
        assert!(!text(&out).contains("ok:"), "{what}: {}", text(&out));
    };
    // Re-signed with another key, which the report names itself.
    let other =
        domicile_split::MigrationKey::load_or_create(&dir.path().join("other.key")).unwrap();
    let mut forged: domicile_split::SignedReport = serde_json::from_slice(&original).unwrap();
    forged.report.shredded_records.clear();
    let forged = other.sign(forged.report);
    std::fs::write(&report_path, serde_json::to_vec(&forged).unwrap()).unwrap();
    fails("a report re-signed with another key");
    std::fs::write(&report_path, b"garbage").unwrap();
    fails("a garbage report");
    std::fs::remove_file(&report_path).unwrap();
    fails("a missing report");
    std::fs::write(&report_path, &original).unwrap();
    let again = domicile(&["split", "verify", "--data", d, "--keys", k]);
    assert!(again.status.success(), "{}", text(&again));
    std::fs::remove_dir_all(data.join("global/audit")).unwrap();
    fails("a deleted log");
}

/// A split of a split: `domicile split run --to eu-split` on a us-split deployment moves the
/// European (user-1, in Germany) out of `row` into `eu`, and nothing else.
#[test]
fn a_us_split_deployment_splits_again_to_eu_split() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    global_world(&data, &keys);
    let (d, k) = (data.to_str().unwrap(), keys.to_str().unwrap());
    let first = domicile(&[
        "split", "run", "--data", d, "--keys", k, "--to", "us-split", "--quiet",
    ]);
    assert!(first.status.success(), "{}", text(&first));

    let plan = domicile(&[
        "split", "plan", "--data", d, "--keys", k, "--to", "eu-split",
    ]);
    assert!(plan.status.success(), "{}", text(&plan));
    let out = text(&plan);
    // Only the European's two records in row move: the profile to eu, the video to eu and us.
    assert!(out.contains("subjects: 1 (0 unresolved)"), "{out}");
    assert!(out.contains("homed in eu: 1"), "{out}");
    assert!(
        out.contains("move 1") && out.contains("replicate 1"),
        "{out}"
    );

    let run = domicile(&[
        "split", "run", "--data", d, "--keys", k, "--to", "eu-split", "--quiet",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    assert!(
        text(&run).contains("shredded in row: 1 subjects, 2 records"),
        "{}",
        text(&run)
    );
    let verify = domicile(&["split", "verify", "--data", d, "--keys", k]);
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(
        data.join("split/previous/1/report.json").is_file(),
        "the first split's report is kept"
    );
    let manifest = Deployment::manifest(&data).unwrap().unwrap();
    assert_eq!(manifest.policy, "eu-split");
    assert!(manifest.keys.contains_key("eu"));
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("nothing");
    let k = dir.path().join("keys");
    let out = domicile(&[
        "split",
        "plan",
        "--data",
        d.to_str().unwrap(),
        "--keys",
        k.to_str().unwrap(),
        "--to",
        "us-split",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no deployment here"), "{}", text(&out));

    let data = dir.path().join("data");
    global_world(&data, &k);
    let out = domicile(&[
        "split",
        "plan",
        "--data",
        data.to_str().unwrap(),
        "--keys",
        k.to_str().unwrap(),
        "--to",
        "apac-split",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("unknown policy \"apac-split\""),
        "{}",
        text(&out)
    );
}

#[test]
fn an_unknown_target_policy_names_the_policies_this_build_links() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    global_world(&data, &keys);
    let (d, k) = (data.to_str().unwrap(), keys.to_str().unwrap());
    let out = domicile(&[
        "split",
        "plan",
        "--data",
        d,
        "--keys",
        k,
        "--to",
        "mars-split",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(
            r#"unknown policy "mars-split": this build knows eu-split, global, us-split"#
        ),
        "{}",
        text(&out)
    );
}
