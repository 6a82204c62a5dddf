//! `domicile serve` as a real process: SIGTERM while writes are in flight loses nothing
//! acknowledged — every acknowledged write is in the log and readable after a restart; and a
//! serving node checks its own store for its security staff, while `domicile store check`,
//! which needs the store to itself, says where to ask instead; and `store check --node`
//! refuses an answer whose report is not the one its digest names.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domicile_audit::{Entry, Target};
use domicile_node::{Identity, NodeClient};
use domicile_residency::Region;

const TD: &str = "domicile.example";

fn domicile(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_domicile"))
        .args(args)
        .output()
        .expect("the domicile binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "domicile {args:?}: {text}");
    text
}

struct Setup {
    dir: tempfile::TempDir,
    operator: String,
}

impl Setup {
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn s(&self, p: &str) -> String {
        self.path(p).display().to_string()
    }
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        dir,
        operator: String::new(),
    };
    domicile(&[
        "init",
        "--policy",
        "us-split",
        "--data",
        &setup.s("data"),
        "--keys",
        &setup.s("keys"),
        "--trust-domain",
        TD,
    ]);
    domicile(&["pki", "init", "--trust-domain", TD, "--out", &setup.s("ca")]);
    for (id, out) in [
        ("us/domicile/node", "node"),
        ("us/usds/profile-service", "app"),
        ("us/usds/alice", "alice"),
        ("us/usds/sam", "sam"),
    ] {
        domicile(&[
            "pki",
            "issue",
            "--ca",
            &setup.s("ca"),
            "--id",
            &format!("spiffe://{TD}/{id}"),
            "--out",
            &setup.s(out),
        ]);
    }
    let operator = domicile(&["pki", "operator-key", "--out", &setup.s("operator.key")]);
    let entries = serde_json::json!([
        {"id": format!("spiffe://{TD}/us/usds/profile-service"), "kind": "service",
         "organisation": {"name": "usds", "country": "US"}, "office_country": "US",
         "location_country": "US", "roles": ["app-service"]},
        {"id": format!("spiffe://{TD}/us/usds/alice"), "kind": "person",
         "organisation": {"name": "usds", "country": "US"}, "office_country": "US",
         "location_country": "US", "roles": ["engineer"]},
        {"id": format!("spiffe://{TD}/us/usds/sam"), "kind": "person",
         "organisation": {"name": "usds", "country": "US"}, "office_country": "US",
         "location_country": "US", "roles": ["security"]},
    ]);
    std::fs::write(setup.path("entries.json"), entries.to_string()).unwrap();
    domicile(&[
        "pki",
        "sign-directory",
        "--entries",
        &setup.s("entries.json"),
        "--operator-key",
        &setup.s("operator.key"),
        "--out",
        &setup.s("directory.json"),
    ]);
    Setup {
        operator: operator.trim().to_owned(),
        ..setup
    }
}

// The child is returned to the caller, which waits for it (`terminate_and_wait`); on the one
// path that does not return it, it is killed and waited for here.
#[allow(clippy::zombie_processes)]
fn start(setup: &Setup) -> (Child, std::net::SocketAddr) {
    let addr_file = setup.path("addr");
    let _ = std::fs::remove_file(&addr_file);
    let child = Command::new(env!("CARGO_BIN_EXE_domicile"))
        .args([
            "serve",
            "--data",
            &setup.s("data"),
            "--keys",
            &setup.s("keys"),
            "--region",
            "us",
            "--directory",
            &setup.s("directory.json"),
            "--operator-key",
            &setup.operator,
            "--ca",
            &setup.s("ca/ca.pem"),
            "--cert",
            &setup.s("node/svid.pem"),
            "--key",
            &setup.s("node/svid.key"),
            "--listen",
            "127.0.0.1:0",
            "--addr-file",
            &addr_file.display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(setup.path("node.log"))
                .unwrap(),
        )
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&addr_file) {
            if let Ok(addr) = text.trim().parse() {
                return (child, addr);
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
            panic!("the node did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn client(setup: &Setup, who: &str, addr: std::net::SocketAddr) -> NodeClient {
    let dir = setup.path(who);
    let identity = Identity::load(
        &dir.join("bundle.pem"),
        &dir.join("svid.pem"),
        &dir.join("svid.key"),
        TD,
    )
    .unwrap();
    NodeClient::new(
        addr,
        identity
            .client_config(Some(Region::parse("us").unwrap()))
            .unwrap(),
    )
}

fn terminate_and_wait(child: &mut Child) {
    // The workspace forbids unsafe code, so the signal goes through the system's `kill`.
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "the node exited with {status}");
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the node did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write_body(key: &str) -> serde_json::Value {
    serde_json::json!({
        "purpose": {"code": "user_requested_support", "detail": "profile update"},
        "record": {"subject": "ana-q7x", "class": "protected", "collection": "profile", "key": key},
        "value": format!("value of {key}"),
    })
}

/// Registers the subject every write here is about.
async fn register_ana(app: &NodeClient) {
    let registered = app
        .post(
            "/v1/subjects/register",
            &serde_json::json!({
                "purpose": {"code": "user_requested_support", "detail": "sign-up"},
                "subject": {"id": "ana-q7x", "residence": "US"},
            }),
        )
        .await
        .unwrap();
    assert_eq!(registered.status, 200, "{:?}", registered.json());
}

fn logged_record_keys(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    domicile_audit::for_each_entry(dir, &mut |_, _| {}, |_, bytes, _| {
        let e = Entry::from_canonical(bytes)?;
        if let (domicile_audit::Action::Write, Target::Record { key }, true) =
            (e.action, &e.resource.target, e.decision.allowed)
        {
            out.push(key.clone());
        }
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn sigterm_with_writes_in_flight_loses_no_acknowledged_write() {
    let setup = setup();
    let (mut child, addr) = start(&setup);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    runtime.block_on(async {
        let app = Arc::new(client(&setup, "app", addr));
        register_ana(&app).await;
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..8 {
            let app = app.clone();
            let acked = acked.clone();
            let stop = stop.clone();
            writers.push(tokio::spawn(async move {
                for n in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let key = format!("w{w}-{n}");
                    match app.post("/v1/records/write", &write_body(&key)).await {
                        Ok(a) if a.status == 200 => acked.lock().unwrap().push(key),
                        // Refused while draining, or the listener is gone: stop writing.
                        _ => break,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        let in_flight_before = acked.lock().unwrap().len();
        assert!(
            in_flight_before > 0,
            "no write was acknowledged before SIGTERM"
        );
        tokio::task::spawn_blocking(move || terminate_and_wait(&mut child))
            .await
            .unwrap();
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            w.await.unwrap();
        }
    });
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty());

    // Every acknowledged write is in the log, which verifies under its public key.
    {
        let deployment = domicile_split::Deployment::open_region(
            setup.path("data"),
            setup.path("keys"),
            &domicile_residency::PolicyResolver::new()
                .with(Arc::new(domicile_policy_us_split::UsSplitPolicy::new())),
            &Region::parse("us").unwrap(),
        )
        .unwrap();
        let node = deployment.region(&Region::parse("us").unwrap()).unwrap();
        let logged = logged_record_keys(&node.log_dir);
        let collection = domicile_store::Collection::parse("profile").unwrap();
        for key in &acked {
            let p = node
                .gate
                .record_key_pseudonym(&collection, &domicile_store::RecordKey::parse(key).unwrap());
            assert!(
                logged.contains(&p),
                "acknowledged write {key} is not in the log"
            );
        }
        let report =
            domicile_audit::verify(&node.log_dir, &node.verifier, None, &mut |_, _| {}).unwrap();
        assert!(report.entries >= acked.len() as u64);
    }

    // After a restart, every acknowledged write reads back.
    let (mut child, addr) = start(&setup);
    runtime.block_on(async {
        let alice = client(&setup, "alice", addr);
        for key in &acked {
            let answer = alice
                .post(
                    "/v1/records/read",
                    &serde_json::json!({
                        "purpose": {"code": "user_requested_support", "ticket": "SUP-7"},
                        "record": {"subject": "ana-q7x", "class": "protected",
                                   "collection": "profile", "key": key},
                    }),
                )
                .await
                .unwrap();
            assert_eq!(answer.status, 200, "{key}: {:?}", answer.json());
            assert_eq!(answer.json()["value"], format!("value of {key}"));
        }
    });
    terminate_and_wait(&mut child);

    // The node's logs name callers and pseudonyms, never the subject.
    let logs = std::fs::read_to_string(setup.path("node.log")).unwrap();
    assert!(logs.contains("allowed"), "the node logged nothing: {logs}");
    assert!(
        !logs.contains("ana-q7x"),
        "the node's log names the subject"
    );
}

#[test]
fn a_serving_node_checks_its_own_store_and_the_offline_check_points_to_it() {
    let setup = setup();
    let (mut child, addr) = start(&setup);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let check = |setup: &Setup| {
        Command::new(env!("CARGO_BIN_EXE_domicile"))
            .args(["store", "check", "--data", &setup.s("data"), "--keys"])
            .arg(setup.path("keys"))
            .args(["--region", "us"])
            .output()
            .unwrap()
    };
    runtime.block_on(async {
        let app = client(&setup, "app", addr);
        register_ana(&app).await;
        for n in 0..5 {
            let a = app
                .post("/v1/records/write", &write_body(&format!("k{n}")))
                .await
                .unwrap();
            assert_eq!(a.status, 200, "{:?}", a.json());
        }
        let sam = client(&setup, "sam", addr);
        let a = sam
            .post(
                "/v1/store/check",
                &serde_json::json!({"purpose": {"code": "audit", "ticket": "AUD-7"}}),
            )
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{:?}", a.json());
        assert_eq!(a.json()["sound"], true, "{:?}", a.json());
        assert_eq!(a.json()["report"]["records"], 5, "{:?}", a.json());
        assert!(!String::from_utf8_lossy(&a.body).contains("ana-q7x"));
    });

    // `store check --node` asks the node as the SVID given, and prints what the offline check
    // prints, with the same exit codes; an engineer's SVID is refused (and exits 1).
    let on_node_with = |region: &str, who: &str, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_domicile"))
            .args(["store", "check", "--node", &format!("{region}={addr}")])
            .args(extra)
            .args([
                "--ca",
                &setup.s("ca/ca.pem"),
                "--cert",
                &setup.s(&format!("{who}/svid.pem")),
            ])
            .args([
                "--key",
                &setup.s(&format!("{who}/svid.key")),
                "--trust-domain",
                TD,
            ])
            .args(["--ticket", "AUD-7"])
            .output()
            .unwrap()
    };
    let on_node_as = |region: &str, who: &str| on_node_with(region, who, &[]);
    let on_node = |who: &str| on_node_as("us", who);
    // With --json, the node's answers keyed by region, as the offline check's reports are.
    let out = on_node_with("us", "sam", &["--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answers["us"]["sound"], true, "{answers}");
    assert_eq!(answers["us"]["report"]["records"], 5, "{answers}");
    assert!(answers["us"]["audit_entry"].is_u64(), "{answers}");
    let out = on_node("sam");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("us: 5 record(s) and 1 subject(s) open"),
        "{stdout}"
    );
    assert!(stdout.contains("us: sound"), "{stdout}");
    assert!(stdout.contains("logged as audit entry"), "{stdout}");
    assert!(stdout.contains("(report sha256:"), "{stdout}");
    assert!(!stdout.contains("ana-q7x"), "{stdout}");
    // A node is asked as the region named: the us node cannot answer for row (its SVID is
    // refused in the handshake), and nothing is checked.
    let out = on_node_as("row", "sam");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("TLS handshake"), "{stderr}");
    let out = on_node("alice");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the node refused the check: Denied"),
        "{stderr}"
    );
    assert!(stderr.contains("audit entry"), "{stderr}");

    // The offline check cannot open a store a node is serving, and says where to ask.
    let out = check(&setup);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("POST /v1/store/check"), "{stderr}");

    terminate_and_wait(&mut child);
    let out = check(&setup);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("sound"), "{stdout}");
}

/// `store check --node` takes a node's answer as input: one that holds the region's node SVID
/// but answers with a whole report that is not the one its digest (the audit entry's) names,
/// or that calls a report with findings sound, is refused (exit 1), and nothing is printed as
/// checked; an answer that matches is taken.
#[test]
fn store_check_on_a_node_refuses_an_answer_that_does_not_match_its_digest() {
    use domicile_store::StoreCheck;

    let setup = setup();
    let report = |records: usize, unreadable: bool| {
        let mut report = serde_json::json!({
            "records": records, "subjects": 1, "shredded": 0, "unreadable": [],
            "unindexed": [], "corrupt_index": [], "unregistered": [], "misplaced": [],
            "stale_index_ids": 0, "journal_entries": 0
        });
        if unreadable {
            report["unreadable"] = serde_json::json!([{"entry": "notes #00", "reason": "x"}]);
        }
        serde_json::from_value::<StoreCheck>(report).unwrap()
    };
    let answer = |report: &StoreCheck, sound: bool, digest_of: &StoreCheck| {
        serde_json::json!({"region": "us", "sound": sound, "report": report, "omitted": {},
                           "audit_entry": 3, "report_digest": digest_of.digest()})
        .to_string()
    };
    let (five, six, bad) = (report(5, false), report(6, false), report(5, true));
    let cases = [
        (
            "another report's digest",
            answer(&five, true, &six),
            Some(1),
        ),
        ("findings called sound", answer(&bad, true, &bad), Some(1)),
        ("a matching answer", answer(&five, true, &five), Some(0)),
        (
            "a matching answer with findings",
            answer(&bad, false, &bad),
            Some(3),
        ),
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let identity = Identity::load(
        &setup.path("ca/ca.pem"),
        &setup.path("node/svid.pem"),
        &setup.path("node/svid.key"),
        TD,
    )
    .unwrap();
    for (what, body, code) in cases {
        let app = axum::Router::new().route(
            "/v1/store/check",
            axum::routing::post(
                move || async move { ([("content-type", "application/json")], body) },
            ),
        );
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = runtime.spawn(domicile_node::serve(
            listener,
            identity.server_config().unwrap(),
            app,
            domicile_node::Limits::default(),
            TD.to_owned(),
            async move {
                let _ = stopped.await;
            },
        ));
        let out = Command::new(env!("CARGO_BIN_EXE_domicile"))
            .args(["store", "check", "--node", &format!("us={addr}")])
            .args([
                "--ca",
                &setup.s("ca/ca.pem"),
                "--cert",
                &setup.s("sam/svid.pem"),
            ])
            .args(["--key", &setup.s("sam/svid.key"), "--trust-domain", TD])
            .args(["--ticket", "AUD-7"])
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), code, "{what}: {stdout}{stderr}");
        if code == Some(1) {
            assert!(
                stderr.contains("does not match the digest or the verdict"),
                "{what}: {stderr}"
            );
            assert!(!stdout.contains("checked by the node"), "{what}: {stdout}");
        } else {
            assert!(
                stdout.contains("logged as audit entry 3"),
                "{what}: {stdout}"
            );
        }
        let _ = stop.send(());
        runtime.block_on(server).unwrap().unwrap();
    }
}
