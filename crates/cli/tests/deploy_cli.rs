//! `domicile recsys deploy` end to end: a model goes into a region of a real deployment only when
//! its signature is trusted and the residency policy allows a model trained on its `trained_on`
//! there; every decision, refusals included, is an entry in that region's log.

use std::path::Path;
use std::process::{Command, Output};

fn domicile(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_domicile"))
        .args(args)
        .output()
        .expect("the domicile binary runs")
}

fn ok(args: &[&str]) -> String {
    let out = domicile(args);
    assert!(
        out.status.success(),
        "domicile {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

const SMALL: [&str; 8] = [
    "--factors",
    "8",
    "--iterations",
    "3",
    "--threads",
    "2",
    "--neighbours",
    "20",
];

fn train(world: &Path, model: &Path, key: Option<&Path>) -> String {
    let mut args = vec![
        "recsys",
        "train",
        "--interactions",
        s(world),
        "--model-out",
        s(model),
        "--model",
        "als",
        "--policy",
        "us-split",
    ];
    if let Some(key) = key {
        args.extend(["--signing-key", s(key)]);
    }
    args.extend(SMALL);
    ok(&args)
}

#[test]
fn deploy_checks_the_signature_and_the_policy_and_logs_every_decision() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let (data, keys) = (p("data"), p("keys"));
    ok(&[
        "init",
        "--policy",
        "us-split",
        "--data",
        s(&data),
        "--keys",
        s(&keys),
    ]);
    let world = p("world.csv");
    ok(&[
        "recsys",
        "generate",
        "--users",
        "300",
        "--videos",
        "80",
        "--events",
        "6000",
        "--seed",
        "5",
        "--out",
        s(&world),
    ]);
    // The same world with only its US users: a model that learned from `us` subjects alone.
    let text = std::fs::read_to_string(&world).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let country = header.split(',').position(|c| c == "country").unwrap();
    let us_only: Vec<&str> = lines
        .filter(|l| l.split(',').nth(country) == Some("US"))
        .collect();
    assert!(!us_only.is_empty());
    let us_world = p("us.csv");
    std::fs::write(&us_world, format!("{header}\n{}\n", us_only.join("\n"))).unwrap();

    let key = p("model.key");
    ok(&["recsys", "keygen", "--out", s(&key)]);
    let public = p("model.key.pub");
    let (global_model, us_model, unsigned) = (p("global.domrec"), p("us.domrec"), p("un.domrec"));
    assert!(train(&world, &global_model, Some(&key)).contains("trained_on row,us;"));
    assert!(train(&us_world, &us_model, Some(&key)).contains("trained_on us;"));
    train(&us_world, &unsigned, None);

    let deploy = |model: &Path, region: &str, extra: &[&str]| {
        let mut args = vec![
            "recsys",
            "deploy",
            "--data",
            s(&data),
            "--keys",
            s(&keys),
            "--region",
            region,
            "--model",
            s(model),
            "--org",
            "usds",
        ];
        args.extend(extra);
        domicile(&args)
    };
    let trusted = ["--trusted-key", s(&public)];
    let models_dir = data.join("us/models");

    // Unsigned: refused before the deployment is even opened, unless the operator says so.
    let out = deploy(&unsigned, "us", &trusted);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unsigned"),
        "{out:?}"
    );
    assert!(!models_dir.exists());

    // A model that learned from `row` subjects may not run in `us`: refused, and logged.
    let out = deploy(&global_model, "us", &trusted);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused (logged)"), "{err}");
    assert!(!models_dir.join("global.domrec").exists());

    // A US-only model goes into `us`, byte for byte, with its decision logged.
    let out = deploy(&us_model, "us", &trusted);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("deployed") && said.contains("trained_on us"),
        "{said}"
    );
    assert_eq!(
        std::fs::read(models_dir.join("us.domrec")).unwrap(),
        std::fs::read(&us_model).unwrap()
    );
    // ... but not into `row`, nor into a region the deployment does not have.
    assert!(!deploy(&us_model, "row", &trusted).status.success());
    let out = deploy(&us_model, "mars", &trusted);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mars"));

    // The us log holds both decisions on `us`: the refusal and the deployment.
    let log = ok(&[
        "audit",
        "query",
        "--log",
        s(&data.join("us/audit")),
        "--format",
        "jsonl",
    ]);
    let entries: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"action\":\"deploy\""))
        .collect();
    assert_eq!(entries.len(), 2, "{log}");
    assert!(
        entries.iter().any(|e| e.contains("\"allowed\":false")),
        "{log}"
    );
    assert!(
        entries.iter().any(|e| e.contains("\"allowed\":true")),
        "{log}"
    );

    // The buyer's algorithm goes through the same door: EASE trained on US subjects alone
    // deploys into `us`; EASE trained on the whole world is refused there, and both are logged.
    let ease = |world: &Path, model: &Path| {
        ok(&[
            "recsys",
            "train",
            "--interactions",
            s(world),
            "--model-out",
            s(model),
            "--model",
            "ease",
            "--set",
            "lambda=20",
            "--set",
            "threads=2",
            "--signing-key",
            s(&key),
            "--policy",
            "us-split",
        ])
    };
    let (us_ease, global_ease) = (p("us-ease.domrec"), p("global-ease.domrec"));
    assert!(ease(&us_world, &us_ease).contains("trained_on us;"));
    assert!(ease(&world, &global_ease).contains("trained_on row,us;"));
    let out = deploy(&us_ease, "us", &trusted);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(models_dir.join("us-ease.domrec")).unwrap(),
        std::fs::read(&us_ease).unwrap()
    );
    let out = deploy(&global_ease, "us", &trusted);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused (logged)"));
    assert!(!models_dir.join("global-ease.domrec").exists());
    // The deployed artifact serves in `us` from each user's own history.
    let recs = p("us-recs.csv");
    ok(&[
        "recsys",
        "recommend",
        "--model",
        s(&models_dir.join("us-ease.domrec")),
        "--interactions",
        s(&us_world),
        "--users",
        "all",
        "--exclude-seen",
        "--trusted-key",
        s(&public),
        "--out",
        s(&recs),
    ]);
    assert!(std::fs::read_to_string(&recs).unwrap().lines().count() > 10);
    let log = ok(&[
        "audit",
        "query",
        "--log",
        s(&data.join("us/audit")),
        "--format",
        "jsonl",
    ]);
    let deploys = log
        .lines()
        .filter(|l| l.contains("\"action\":\"deploy\""))
        .count();
    assert_eq!(deploys, 4, "{log}");
}
