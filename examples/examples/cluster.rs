//! The split world as processes: a `us` node, a `row` node and a gateway, each a child process
//! of the `domicile` binary on a loopback port, talking HTTPS with mutual TLS and SPIFFE
//! X.509-SVIDs. The access scenarios are replayed over the network: the Singapore engineer is
//! refused, a USDS engineer asks for time-boxed access, the US approver grants it over the API,
//! the read that follows succeeds, and after the grant expires the same read is refused. Every
//! decision is in the `us` node's audit log, which is verified at the end with its public key.
//!
//! Run with `cargo run --release --example cluster [-- --dir PATH]` (it builds the `domicile`
//! binary of the same profile first). `docs/node.md` walks through the same steps with curl.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use domicile_examples::{directory, Error, TRUST_DOMAIN};
use domicile_node::{Identity, NodeClient};
use serde_json::json;

/// The split world as processes on loopback ports.
#[derive(Debug, Parser)]
struct Args {
    /// Where the deployment, CA and SVIDs go (a temporary directory if not given).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// The `domicile` binary of this build's profile, built if needed.
fn domicile_binary() -> Result<PathBuf, Error> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("the example is not in target/<profile>/examples")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "-p", "domicile"]);
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    if !build.status()?.success() {
        return Err("could not build the domicile binary".into());
    }
    Ok(profile_dir.join("domicile"))
}

struct Cluster {
    bin: PathBuf,
    root: PathBuf,
    children: Vec<(String, Child)>,
}

impl Cluster {
    fn path(&self, p: &str) -> String {
        self.root.join(p).display().to_string()
    }

    fn run(&self, args: &[&str]) -> Result<String, Error> {
        let out = Command::new(&self.bin).args(args).output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(format!(
                "domicile {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(text)
    }

    /// Starts a server and waits for the address it bound.
    fn spawn(&mut self, name: &str, args: &[&str]) -> Result<SocketAddr, Error> {
        let addr_file = self.root.join(format!("{name}.addr"));
        let _ = std::fs::remove_file(&addr_file);
        let log = std::fs::File::create(self.root.join(format!("{name}.log")))?;
        let child = Command::new(&self.bin)
            .args(args)
            .args(["--listen", "127.0.0.1:0", "--addr-file"])
            .arg(&addr_file)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.children.push((name.to_owned(), child));
        let start = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file) {
                if let Ok(addr) = text.trim().parse() {
                    return Ok(addr);
                }
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!("{name} did not start; see {name}.log").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM to every server, and a clean exit from each.
    fn stop(&mut self) -> Result<(), Error> {
        for (name, child) in self.children.iter_mut().rev() {
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()?;
            let status = child.wait()?;
            if !status.success() {
                return Err(format!("{name} exited with {status}").into());
            }
        }
        self.children.clear();
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn identity(root: &Path, name: &str) -> Result<Identity, Error> {
    let dir = root.join("svids").join(name);
    Ok(Identity::load(
        &dir.join("bundle.pem"),
        &dir.join("svid.pem"),
        &dir.join("svid.key"),
        TRUST_DOMAIN,
    )?)
}

/// One scenario line: what was tried, and what the node answered.
fn show(what: &str, answer: &domicile_node::Answer) -> serde_json::Value {
    let body = answer.json();
    let verdict = if answer.status.is_success() {
        "ALLOW".to_owned()
    } else {
        format!(
            "DENY  {} {}",
            answer.status.as_u16(),
            body["code"].as_str().unwrap_or("")
        )
    };
    let detail = body["detail"].as_str().unwrap_or("");
    println!("   {verdict:<40} {what}");
    if !detail.is_empty() {
        println!("         {detail}");
    }
    body
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    let temp = tempfile::tempdir()?;
    let root = args.dir.unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&root)?;
    let mut cluster = Cluster {
        bin: domicile_binary()?,
        root: root.clone(),
        children: Vec::new(),
    };

    println!(
        "== a US-split deployment, a development CA and SVIDs in {}",
        root.display()
    );
    cluster.run(&[
        "init",
        "--policy",
        "us-split",
        "--data",
        &cluster.path("data"),
        "--keys",
        &cluster.path("keys"),
        "--trust-domain",
        TRUST_DOMAIN,
    ])?;
    cluster.run(&[
        "pki",
        "init",
        "--trust-domain",
        TRUST_DOMAIN,
        "--out",
        &cluster.path("ca"),
    ])?;
    let gateway_principal = domicile_examples::service("us", ("usds", "US"), "gateway", "gateway");
    let mut cast: Vec<domicile_access::Principal> = directory().principals().cloned().collect();
    cast.push(gateway_principal.clone());
    let mut svids = vec![
        ("us/domicile/node".to_owned(), "us-node".to_owned()),
        ("row/domicile/node".to_owned(), "row-node".to_owned()),
    ];
    for who in [
        "us/usds/profile-service",
        "row/bytedance-sg/profile-service",
        "us/usds/alice",
        "row/bytedance-sg/bo",
        "us/usds/frank",
        "us/usds/carol",
        "us/usds/sofia",
        "us/usds/gateway",
    ] {
        svids.push((
            who.to_owned(),
            who.rsplit('/').next().unwrap_or(who).to_owned()
                + if who.starts_with("row/bytedance-sg/profile") {
                    "-row"
                } else {
                    ""
                },
        ));
    }
    for (id, name) in &svids {
        cluster.run(&[
            "pki",
            "issue",
            "--ca",
            &cluster.path("ca"),
            "--id",
            &format!("spiffe://{TRUST_DOMAIN}/{id}"),
            "--out",
            &cluster.path(&format!("svids/{name}")),
            "--dns",
            "localhost",
            "--ip",
            "127.0.0.1",
        ])?;
    }
    let operator = cluster
        .run(&[
            "pki",
            "operator-key",
            "--out",
            &cluster.path("keys/operator.key"),
        ])?
        .trim()
        .to_owned();
    std::fs::write(
        root.join("directory-entries.json"),
        serde_json::to_vec_pretty(&cast)?,
    )?;
    cluster.run(&[
        "pki",
        "sign-directory",
        "--entries",
        &cluster.path("directory-entries.json"),
        "--operator-key",
        &cluster.path("keys/operator.key"),
        "--out",
        &cluster.path("directory.json"),
    ])?;
    println!(
        "   {} principals in the operator's signed directory",
        cast.len()
    );

    println!(
        "\n== two witnesses (C2SP tlog-witness over HTTP), the nodes and the gateway, as processes"
    );
    let mut witness_flags = Vec::new();
    for w in ["witness-1", "witness-2"] {
        cluster.run(&[
            "audit",
            "keygen",
            "--origin",
            &format!("{w}.example"),
            "--out",
            &cluster.path(&format!("witnesses/{w}")),
            "--witness",
        ])?;
        let addr = cluster.spawn(
            w,
            &[
                "witness",
                "serve",
                "--key",
                &cluster.path(&format!("witnesses/{w}/witness.key")),
                "--log-vkey",
                &cluster.path("data/us/log.vkey"),
                "--log-vkey",
                &cluster.path("data/row/log.vkey"),
                "--state",
                &cluster.path(&format!("witnesses/{w}/state")),
            ],
        )?;
        println!("   {w:<11} http://{addr}  (domicile witness serve)");
        witness_flags.push(format!(
            "http://{addr}={}",
            cluster.path(&format!("witnesses/{w}/witness.vkey"))
        ));
    }
    let gateway_id = gateway_principal.id.to_string();
    let mut nodes = Vec::new();
    for region in ["us", "row"] {
        let addr = cluster.spawn(
            &format!("{region}-node"),
            &[
                "serve",
                "--data",
                &cluster.path("data"),
                "--keys",
                &cluster.path("keys"),
                "--region",
                region,
                "--directory",
                &cluster.path("directory.json"),
                "--operator-key",
                &operator,
                "--ca",
                &cluster.path("ca/ca.pem"),
                "--cert",
                &cluster.path(&format!("svids/{region}-node/svid.pem")),
                "--key",
                &cluster.path(&format!("svids/{region}-node/svid.key")),
                "--gateway",
                &gateway_id,
                "--witness",
                &witness_flags[0],
                "--witness",
                &witness_flags[1],
                "--witness-quorum",
                "2",
            ],
        )?;
        println!(
            "   {:<11} https://{addr}  (domicile serve --region {region})",
            format!("{region} node")
        );
        nodes.push(addr);
    }
    let gateway = cluster.spawn(
        "gateway",
        &[
            "gateway",
            "--policy",
            "us-split",
            "--trust-domain",
            TRUST_DOMAIN,
            "--node",
            &format!("us={}", nodes[0]),
            "--node",
            &format!("row={}", nodes[1]),
            "--ca",
            &cluster.path("ca/ca.pem"),
            "--cert",
            &cluster.path("svids/gateway/svid.pem"),
            "--key",
            &cluster.path("svids/gateway/svid.key"),
        ],
    )?;
    println!(
        "   {:<11} https://{gateway}  (domicile gateway --policy us-split)",
        "gateway"
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let unexpected = runtime.block_on(scenarios(&root, gateway, nodes[0]))?;

    println!("\n== USDS security checks the serving us store (domicile store check --node)");
    // Every record and registry entry is opened inside the node; what comes back is counts and
    // blind names, and the check is in the us log as a `store_check` entry.
    let checked = cluster.run(&[
        "store",
        "check",
        "--node",
        &format!("us={}", nodes[0]),
        "--ca",
        &cluster.path("ca/ca.pem"),
        "--cert",
        &cluster.path("svids/sofia/svid.pem"),
        "--key",
        &cluster.path("svids/sofia/svid.key"),
        "--trust-domain",
        TRUST_DOMAIN,
        "--ticket",
        "AUD-2026-12",
    ])?;
    for line in checked.lines() {
        println!("   {line}");
    }

    println!("\n== the auditor follows each log over HTTPS as tlog-tiles");
    // The auditor follows each region's log over HTTPS as C2SP tlog-tiles, with no client
    // certificate, the log's public key and the witnesses' keys only: every entry bundle
    // fetched, every tile at every level checked against the tree rebuilt from the entries, the
    // root against the signed checkpoint, and cosignatures from both witnesses required
    // (`domicile audit verify --url https://<node> --vkey data/<region>/log.vkey --ca ca/ca.pem
    // --witness-vkey witnesses/witness-1/witness.vkey --witness-vkey … --quorum 2` does the same).
    // The nodes submit each new checkpoint to the witnesses a second or so after it is signed,
    // so the auditor waits for the checkpoint covering the scenarios to be cosigned.
    let follower = domicile_tlog_http::HttpClient::new(&[root.join("ca/ca.pem").as_path()])?;
    let mut witness_keys = Vec::new();
    for w in ["witness-1", "witness-2"] {
        witness_keys.push(domicile_audit::VerifierKey::parse(
            std::fs::read_to_string(root.join("witnesses").join(w).join("witness.vkey"))?.trim(),
        )?);
    }
    let quorum = domicile_audit::WitnessPolicy::new(witness_keys, 2)?;
    runtime.block_on(async {
        for (region, addr) in [("us", nodes[0]), ("row", nodes[1])] {
            let vkey = domicile_audit::VerifierKey::parse(
                std::fs::read_to_string(root.join("data").join(region).join("log.vkey"))?.trim(),
            )?;
            let url = format!("https://127.0.0.1:{}", addr.port());
            let start = Instant::now();
            let report = loop {
                match domicile_tlog_http::follow(&follower, &url, &vkey, Some(&quorum), &[]).await {
                    Ok(report) => break report,
                    Err(e) if start.elapsed() < Duration::from_secs(30) => {
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            println!(
                "   {region}: followed {url} as tlog-tiles: {} entries, every tile and entry checked, root {} signed by {} and cosigned by both witnesses ✓",
                report.entries,
                domicile_audit::merkle::hex(&report.root),
                vkey.name()
            );
        }
        Ok::<(), Error>(())
    })?;

    println!("\n== SIGTERM: each process finishes its requests and signs its last checkpoint");
    cluster.stop()?;
    for region in ["us", "row"] {
        let vkey = domicile_audit::VerifierKey::parse(
            std::fs::read_to_string(root.join("data").join(region).join("log.vkey"))?.trim(),
        )?;
        let log = root.join("data").join(region).join("audit");
        let report = domicile_audit::verify(&log, &vkey, None, &mut |_, _| {})?;
        println!(
            "   domicile audit verify --log data/{region}/audit --vkey data/{region}/log.vkey: {} entries, {} checkpoints, all consistent",
            report.entries, report.checkpoints
        );
    }
    if unexpected > 0 {
        return Err(format!("{unexpected} scenario(s) did not go as the policy says").into());
    }
    Ok(())
}

async fn scenarios(root: &Path, gateway: SocketAddr, us_node: SocketAddr) -> Result<usize, Error> {
    let via_gateway = |name: &str| -> Result<NodeClient, Error> {
        Ok(NodeClient::new(
            gateway,
            identity(root, name)?.client_config(None)?,
        ))
    };
    let us_home = json!({"residence": "US"});
    let sign_up = json!({"code": "user_requested_support", "detail": "sign-up"});
    let mut unexpected = 0;
    let mut expect = |allowed: bool, answer: &domicile_node::Answer| {
        if answer.status.is_success() != allowed {
            unexpected += 1;
        }
    };

    println!("\n== sign-ups through the gateway, each to its home region");
    let us_app = via_gateway("profile-service")?;
    let row_app = via_gateway("profile-service-row")?;
    for (app, id, country) in [
        (&us_app, "ana", "US"),
        (&us_app, "pedro", "PR"),
        (&row_app, "lena", "DE"),
        (&row_app, "wei", "SG"),
    ] {
        let home = json!({"residence": country});
        let registered = app
            .post(
                "/v1/subjects/register",
                &json!({"purpose": sign_up, "home": home,
                "subject": {"id": id, "residence": country}}),
            )
            .await?;
        expect(true, &registered);
        let written = app
            .post(
                "/v1/records/write",
                &json!({"purpose": sign_up, "home": home,
                "record": {"subject": id, "class": "protected", "collection": "profile", "key": id},
                "value": json!({"name": id, "country": country}).to_string()}),
            )
            .await?;
        expect(true, &written);
        println!(
            "   {id:<6} lives in {country}: registered and written in {}",
            written
                .headers
                .get("domicile-region")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
        );
    }

    println!("\n== the access scenarios, over HTTPS through the gateway");
    let profile =
        json!({"subject": "ana", "class": "protected", "collection": "profile", "key": "ana"});
    let support = json!({"code": "user_requested_support", "ticket": "SUP-4242"});
    let legal = json!({"code": "legal_request", "ticket": "LEG-4242"});
    let read = |purpose: &serde_json::Value, approval: Option<&str>| {
        let mut body = json!({"purpose": purpose, "record": profile, "home": us_home});
        if let Some(id) = approval {
            body["approval"] = json!(id);
        }
        body
    };
    let alice = via_gateway("alice")?;
    let answer = alice
        .post("/v1/records/read", &read(&support, None))
        .await?;
    show(
        "USDS engineer in the US reads a US user's profile (ticket)",
        &answer,
    );
    expect(true, &answer);
    let bo = via_gateway("bo")?;
    let answer = bo.post("/v1/records/read", &read(&support, None)).await?;
    show(
        "Engineer of the parent's Singapore entity reads it",
        &answer,
    );
    expect(false, &answer);
    let frank = via_gateway("frank")?;
    let answer = frank.post("/v1/records/read", &read(&legal, None)).await?;
    show(
        "USDS engineer reads it for a legal request, no approval",
        &answer,
    );
    expect(false, &answer);
    let answer = frank
        .post("/v1/approvals", &json!({"home": us_home, "duration_secs": 3,
            "scope": {"class": "protected", "region": "us", "subjects": ["ana"], "purpose": legal}}))
        .await?;
    let request = show(
        "... asks for 3 seconds of access to this one subject",
        &answer,
    );
    expect(true, &answer);
    let id = request["id"].as_str().ok_or("no approval id")?.to_owned();
    let carol = via_gateway("carol")?;
    let answer = carol
        .post(
            &format!("/v1/approvals/{id}/grant"),
            &json!({"home": us_home}),
        )
        .await?;
    show("USDS approver in the US grants it over the API", &answer);
    expect(true, &answer);
    let answer = frank
        .post("/v1/records/read", &read(&legal, Some(&id)))
        .await?;
    show("USDS engineer reads it with the approval", &answer);
    expect(true, &answer);
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let answer = frank
        .post("/v1/records/read", &read(&legal, Some(&id)))
        .await?;
    show("... reads again after the approval expired", &answer);
    expect(false, &answer);
    let answer = alice
        .post(
            "/v1/records/read",
            &json!({"purpose": support, "record": profile}),
        )
        .await?;
    show(
        "A request without `home`: the gateway cannot route it",
        &answer,
    );
    expect(false, &answer);
    // Straight to the us node, the same rules: the gateway adds nothing but routing.
    let direct = NodeClient::new(
        us_node,
        identity(root, "bo")?.client_config(Some(domicile_residency::Region::parse("us")?))?,
    );
    let answer = direct
        .post(
            "/v1/records/read",
            &json!({"purpose": support, "record": profile}),
        )
        .await?;
    show("The Singapore engineer calls the us node directly", &answer);
    expect(false, &answer);
    let alice_direct = NodeClient::new(
        us_node,
        identity(root, "alice")?.client_config(Some(domicile_residency::Region::parse("us")?))?,
    );
    let answer = alice_direct
        .post(
            "/v1/store/check",
            &json!({"purpose": {"code": "audit", "ticket": "AUD-2026-12"}}),
        )
        .await?;
    show(
        "A USDS engineer asks the us node to check its store",
        &answer,
    );
    expect(false, &answer);
    Ok(unexpected)
}
