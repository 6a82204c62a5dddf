//! Authenticated reads over mutual TLS with keep-alive, from 64 concurrent clients, against the
//! same reads through the in-process Gate in the same run: requests per second, p50 and p99
//! latency, and the ratio (target ≥ 0.5×).
//!
//! `cargo bench -p domicile-node --bench mtls_reads [-- --secs S --clients N]`

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use domicile_access::{
    ApproverKey, Gate, Principal, PrincipalDirectory, PrincipalKind, RecordRef, SpiffeId,
};
use domicile_node::pki::DevCa;
use domicile_node::{Identity, Limits, NodeClient, NodeState};
use domicile_residency::{DataClass, JustificationCode, Purpose, Region, Subject};
use domicile_split::Deployment;
use domicile_store::{Collection, RecordKey};

const TD: &str = "domicile.example";
const SUBJECTS: usize = 100;
const RECORDS_PER_SUBJECT: usize = 10;

fn principal(id: &str, roles: &[&str], kind: PrincipalKind) -> Principal {
    Principal::parse(
        &format!("spiffe://{TD}/{id}"),
        kind,
        ("usds", "US"),
        "US",
        "US",
        roles,
    )
    .unwrap()
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Run {
    requests: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort();
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(i).copied().unwrap_or_default()
    }
}

fn record(i: usize) -> RecordRef {
    let s = i % SUBJECTS;
    RecordRef {
        subject: format!("user-{s}").parse().unwrap(),
        class: DataClass::Protected,
        collection: Collection::parse("profile").unwrap(),
        key: RecordKey::parse(&format!("user-{s}/{}", i / SUBJECTS)).unwrap(),
    }
}

fn in_process(gate: &Arc<Gate>, reader: &Principal, clients: usize, secs: u64) -> Run {
    let why = Purpose::new(JustificationCode::UserRequestedSupport).with_ticket("SUP-1");
    let barrier = Arc::new(Barrier::new(clients));
    let deadline = Duration::from_secs(secs);
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (gate, reader, why, barrier) =
                (gate.clone(), reader.clone(), why.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                let mut latencies = Vec::new();
                let mut i = c * 7919;
                while start.elapsed() < deadline {
                    let t = Instant::now();
                    gate.read(
                        &reader,
                        &why,
                        &record(i % (SUBJECTS * RECORDS_PER_SUBJECT)),
                        None,
                    )
                    .expect("an allowed read");
                    latencies.push(t.elapsed());
                    i += 1;
                }
                (latencies, start.elapsed())
            })
        })
        .collect();
    let mut run = Run {
        requests: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for t in threads {
        let (lat, elapsed) = t.join().unwrap();
        run.requests += lat.len() as u64;
        run.latencies.extend(lat);
        run.elapsed = run.elapsed.max(elapsed);
    }
    run
}

fn over_mtls(addr: std::net::SocketAddr, identity: &Identity, clients: usize, secs: u64) -> Run {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let config = identity
        .client_config(Some(Region::parse("us").unwrap()))
        .unwrap();
    runtime.block_on(async {
        let deadline = Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for c in 0..clients {
            // One client, one keep-alive connection.
            let client = NodeClient::new(addr, config.clone());
            client.get("/healthz").await.expect("the node answers");
            tasks.push(tokio::spawn(async move {
                let start = Instant::now();
                let mut latencies = Vec::new();
                let mut i = c * 7919;
                while start.elapsed() < deadline {
                    let r = record(i % (SUBJECTS * RECORDS_PER_SUBJECT));
                    let body = serde_json::json!({
                        "purpose": {"code": "user_requested_support", "ticket": "SUP-1"},
                        "record": {"subject": r.subject, "class": "protected",
                                   "collection": "profile", "key": r.key},
                    });
                    let t = Instant::now();
                    let answer = client
                        .post("/v1/records/read", &body)
                        .await
                        .expect("an answer");
                    assert_eq!(answer.status, 200);
                    latencies.push(t.elapsed());
                    i += 1;
                }
                (latencies, start.elapsed())
            }));
        }
        let mut run = Run {
            requests: 0,
            elapsed: Duration::ZERO,
            latencies: Vec::new(),
        };
        for t in tasks {
            let (lat, elapsed) = t.await.unwrap();
            run.requests += lat.len() as u64;
            run.latencies.extend(lat);
            run.elapsed = run.elapsed.max(elapsed);
        }
        run
    })
}

fn main() {
    let secs = arg("--secs", 5);
    let clients = arg("--clients", 64) as usize;
    let dir = tempfile::tempdir().unwrap();
    let deployment = Deployment::create(
        dir.path().join("data"),
        dir.path().join("keys"),
        Arc::new(domicile_policy_us_split::UsSplitPolicy::new()),
        TD,
    )
    .unwrap();
    let app = principal(
        "us/usds/profile-service",
        &["app-service"],
        PrincipalKind::Service,
    );
    let reader = principal("us/usds/alice", &["engineer"], PrincipalKind::Person);
    deployment
        .set_directory(PrincipalDirectory::from_entries([app.clone(), reader.clone()]).unwrap())
        .unwrap();
    let us = deployment.region(&Region::parse("us").unwrap()).unwrap();
    let why = Purpose::new(JustificationCode::UserRequestedSupport).with_ticket("SUP-1");
    for s in 0..SUBJECTS {
        us.gate
            .register_subject(
                &app,
                &why,
                &Subject::parse(&format!("user-{s}"), Some("US"), None).unwrap(),
            )
            .unwrap();
    }
    for i in 0..SUBJECTS * RECORDS_PER_SUBJECT {
        us.gate
            .write(&app, &why, &record(i), &[b'x'; 256], None)
            .unwrap();
    }

    let ca = DevCa::generate(TD).unwrap();
    for (id, name) in [("us/domicile/node", "node"), ("us/usds/alice", "alice")] {
        ca.issue(
            &SpiffeId::parse(&format!("spiffe://{TD}/{id}")).unwrap(),
            &[],
            &[],
        )
        .unwrap()
        .save(&dir.path().join(name), ca.cert_pem())
        .unwrap();
    }
    let load = |name: &str| {
        let d = dir.path().join(name);
        Identity::load(
            &d.join("bundle.pem"),
            &d.join("svid.pem"),
            &d.join("svid.key"),
            TD,
        )
        .unwrap()
    };
    let (node_id, alice_id) = (load("node"), load("alice"));

    // The server on its own runtime (2 workers), as `domicile serve` runs it.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let state = Arc::new(NodeState::new(
        us.gate.clone(),
        us.log_dir.clone(),
        ApproverKey::generate().unwrap(),
        [reader.id.clone()],
        BTreeSet::new(),
        1 << 20,
        Arc::new(AtomicBool::new(false)),
    ));
    let listener = server
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = server.spawn(domicile_node::serve(
        listener,
        node_id.server_config().unwrap(),
        domicile_node::node_router(state),
        Limits::default(),
        TD.to_owned(),
        async move {
            let _ = stopped.await;
        },
    ));

    println!(
        "authenticated reads of 256-byte records, {clients} concurrent callers, {secs} s each"
    );
    let mut base = in_process(&us.gate, &reader, clients, secs);
    let mut net = over_mtls(addr, &alice_id, clients, secs);
    let (b50, b99) = (base.percentile(0.5), base.percentile(0.99));
    let (n50, n99) = (net.percentile(0.5), net.percentile(0.99));
    println!(
        "in-process Gate   {:>9.0} reads/s   p50 {:>8.2?}   p99 {:>8.2?}",
        base.rate(),
        b50,
        b99
    );
    println!(
        "over mTLS (HTTP)  {:>9.0} reads/s   p50 {:>8.2?}   p99 {:>8.2?}",
        net.rate(),
        n50,
        n99
    );
    println!(
        "ratio (mTLS / in-process): {:.2}x (target >= 0.5x)",
        net.rate() / base.rate()
    );
    let _ = stop.send(());
    server.block_on(served).unwrap().unwrap();
}
