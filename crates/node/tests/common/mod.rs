//! A US-split deployment with a development CA, SVIDs and a signed principal directory, and
//! real nodes on 127.0.0.1 ephemeral ports, for the node's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use domicile_access::{ApproverKey, Principal, PrincipalDirectory, PrincipalKind, SpiffeId};
use domicile_node::pki::DevCa;
use domicile_node::{Identity, Limits, NodeClient, NodeState};
use domicile_residency::Region;
use domicile_split::Deployment;

pub const TD: &str = "domicile.example";

pub fn principal(id: &str, org: (&str, &str), location: &str, roles: &[&str]) -> Principal {
    let kind = if roles.contains(&"app-service") {
        PrincipalKind::Service
    } else {
        PrincipalKind::Person
    };
    Principal::parse(
        &format!("spiffe://{TD}/{id}"),
        kind,
        org,
        org.1,
        location,
        roles,
    )
    .expect("a valid principal")
}

pub fn service(id: &str, org: (&str, &str), role: &str) -> Principal {
    Principal::parse(
        &format!("spiffe://{TD}/{id}"),
        PrincipalKind::Service,
        org,
        org.1,
        org.1,
        &[role],
    )
    .expect("a valid principal")
}

/// The cast: services and people of both regions.
pub fn cast() -> Vec<Principal> {
    vec![
        principal(
            "us/usds/profile-service",
            ("usds", "US"),
            "US",
            &["app-service"],
        ),
        principal(
            "row/bytedance-sg/profile-service",
            ("bytedance-sg", "SG"),
            "SG",
            &["app-service"],
        ),
        principal("us/usds/alice", ("usds", "US"), "US", &["engineer"]),
        principal(
            "row/bytedance-sg/bo",
            ("bytedance-sg", "SG"),
            "SG",
            &["engineer"],
        ),
        principal("us/usds/carol", ("usds", "US"), "US", &["approver"]),
        principal("us/usds/gateway", ("usds", "US"), "US", &["gateway"]),
        principal("us/usds/frank", ("usds", "US"), "US", &["engineer"]),
        principal(
            "row/bytedance-sg/dan",
            ("bytedance-sg", "SG"),
            "SG",
            &["approver"],
        ),
        service("us/usds/trainer", ("usds", "US"), "training-service"),
        principal("us/usds/sam", ("usds", "US"), "US", &["security"]),
        principal(
            "us/techpartner/tess",
            ("techpartner", "US"),
            "US",
            &["security"],
        ),
        principal(
            "row/bytedance-sg/sid",
            ("bytedance-sg", "SG"),
            "SG",
            &["security"],
        ),
    ]
}

pub struct World {
    pub dir: tempfile::TempDir,
    pub deployment: Deployment,
    pub ca: DevCa,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let deployment = Deployment::create(
            dir.path().join("data"),
            dir.path().join("keys"),
            Arc::new(domicile_policy_us_split::UsSplitPolicy::new()),
            TD,
        )
        .unwrap();
        deployment
            .set_directory(PrincipalDirectory::from_entries(cast()).unwrap())
            .unwrap();
        let ca = DevCa::generate(TD).unwrap();
        ca.save(&dir.path().join("ca")).unwrap();
        World {
            dir,
            deployment,
            ca,
        }
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// An SVID for `id` (`us/usds/alice`), loaded as an identity.
    pub fn identity(&self, id: &str) -> Identity {
        let spiffe = SpiffeId::parse(&format!("spiffe://{TD}/{id}")).unwrap();
        let out = self.dir.path().join("svids").join(id.replace('/', "_"));
        if !out.join("svid.pem").exists() {
            self.ca
                .issue(&spiffe, &["localhost".into()], &[])
                .unwrap()
                .save(&out, self.ca.cert_pem())
                .unwrap();
        }
        load(&out)
    }

    pub fn region(&self, r: &str) -> &domicile_split::RegionNode {
        self.deployment.region(&Region::parse(r).unwrap()).unwrap()
    }
}

pub fn load(dir: &Path) -> Identity {
    Identity::load(
        &dir.join("bundle.pem"),
        &dir.join("svid.pem"),
        &dir.join("svid.key"),
        TD,
    )
    .unwrap()
}

/// A node of `region` serving on an ephemeral port until dropped.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap().unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn serve_app(identity: &Identity, app: axum::Router, limits: Limits) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let tls = identity.server_config().unwrap();
    let handle = tokio::spawn(domicile_node::serve(
        listener,
        tls,
        app,
        limits,
        TD.to_owned(),
        async move {
            let _ = stopped.await;
        },
    ));
    Running {
        addr,
        stop: Some(stop),
        handle: Some(handle),
    }
}

pub async fn start_node(world: &World, region: &str, limits: Limits, gateways: &[&str]) -> Running {
    let node = world.region(region);
    let grant_key = ApproverKey::generate().unwrap();
    let gateways: BTreeSet<SpiffeId> = gateways
        .iter()
        .map(|g| SpiffeId::parse(&format!("spiffe://{TD}/{g}")).unwrap())
        .collect();
    let state = Arc::new(NodeState::new(
        node.gate.clone(),
        node.log_dir.clone(),
        grant_key,
        cast().into_iter().map(|p| p.id),
        gateways,
        limits.max_body,
        Arc::new(AtomicBool::new(false)),
    ));
    let identity = world.identity(&format!("{region}/domicile/node"));
    serve_app(&identity, domicile_node::node_router(state), limits).await
}

pub fn client(world: &World, id: &str, addr: SocketAddr, region: Option<&str>) -> NodeClient {
    let identity = world.identity(id);
    let config = identity
        .client_config(region.map(|r| Region::parse(r).unwrap()))
        .unwrap();
    NodeClient::new(addr, config)
}

/// Registers each `(subject, residence)` through `app` (an app service of their region) and
/// writes them a `profile` and a `behaviour` record (`AAEC/w==` in base64).
pub async fn sign_up(app: &NodeClient, subjects: &[(&str, &str)]) {
    let purpose = serde_json::json!({"code": "user_requested_support", "detail": "sign-up"});
    for (id, country) in subjects {
        let a = app
            .post(
                "/v1/subjects/register",
                &serde_json::json!({"purpose": purpose,
                                    "subject": {"id": id, "residence": country}}),
            )
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{:?}", a.json());
        for collection in ["profile", "behaviour"] {
            let a = app
                .post(
                    "/v1/records/write",
                    &serde_json::json!({"purpose": purpose, "record": record(id, collection),
                                        "value_base64": "AAEC/w=="}),
                )
                .await
                .unwrap();
            assert_eq!(a.status, 200, "{:?}", a.json());
        }
    }
}

/// Every file under `dir`, at any depth.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

pub fn support() -> serde_json::Value {
    serde_json::json!({"code": "user_requested_support", "ticket": "SUP-1234"})
}

pub fn record(subject: &str, collection: &str) -> serde_json::Value {
    serde_json::json!({"subject": subject, "class": "protected", "collection": collection, "key": subject})
}

/// A certificate signed by `ca_dir`'s CA (or a fresh, unknown CA when `ca_dir` is `None`) with
/// exactly these URI SANs: the SVIDs an attacker might bring.
pub fn forged_cert(ca_dir: Option<&Path>, uris: &[&str]) -> (String, String) {
    use rcgen::{CertificateParams, KeyPair, SanType};
    let (issuer_params, issuer_key) = match ca_dir {
        Some(dir) => (
            CertificateParams::from_ca_cert_pem(
                &std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
            )
            .unwrap(),
            KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).unwrap()).unwrap(),
        ),
        None => {
            let other = DevCa::generate(TD).unwrap();
            let tmp = tempfile::tempdir().unwrap();
            other.save(tmp.path()).unwrap();
            (
                CertificateParams::from_ca_cert_pem(other.cert_pem()).unwrap(),
                KeyPair::from_pem(&std::fs::read_to_string(tmp.path().join("ca.key")).unwrap())
                    .unwrap(),
            )
        }
    };
    let issuer = issuer_params.self_signed(&issuer_key).unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = uris
        .iter()
        .map(|u| SanType::URI((*u).try_into().unwrap()))
        .collect();
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer, &issuer_key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A client presenting `cert` (or none), trusting the world's CA and checking the node's DNS
/// name (`localhost`) the ordinary way, as curl does.
pub fn raw_client(world: &World, addr: SocketAddr, cert: Option<(String, String)>) -> NodeClient {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(world.ca.cert_pem().as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(domicile_node::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    NodeClient::new(addr, Arc::new(config))
        .with_server_name(ServerName::try_from("localhost").unwrap())
}
