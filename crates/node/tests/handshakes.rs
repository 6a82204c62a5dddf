//! Mutual TLS as an attacker meets it: every certificate that does not name a principal of this
//! trust domain is refused in the handshake, and a caller without one reaches no data.

mod common;

use common::*;
use domicile_node::Limits;

const ALICE: &str = "spiffe://domicile.example/us/usds/alice";

async fn read_as(
    client: &domicile_node::NodeClient,
) -> Result<domicile_node::Answer, domicile_node::ClientError> {
    client
        .post(
            "/v1/records/read",
            &serde_json::json!({"purpose": support(), "record": record("ana", "profile")}),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_handshakes_reach_nothing() {
    let world = World::new();
    let node = start_node(&world, "us", Limits::default(), &[]).await;

    // The control: alice's own SVID, from the deployment's CA, is accepted (and the read is
    // decided and logged: there is no such record).
    let alice = raw_client(
        &world,
        node.addr,
        Some(forged_cert(Some(&world.ca_dir()), &[ALICE])),
    );
    let answer = read_as(&alice)
        .await
        .expect("a valid SVID completes the handshake");
    assert_eq!(answer.status, 404, "{:?}", answer.json());
    let size_before = world.region("us").gate.log().size();

    let cases: Vec<(&str, (String, String))> = vec![
        ("a CA the node does not trust", forged_cert(None, &[ALICE])),
        (
            "two URI SANs",
            forged_cert(
                Some(&world.ca_dir()),
                &[ALICE, "spiffe://domicile.example/us/usds/carol"],
            ),
        ),
        ("no URI SAN", forged_cert(Some(&world.ca_dir()), &[])),
        (
            "another trust domain",
            forged_cert(
                Some(&world.ca_dir()),
                &["spiffe://other.example/us/usds/alice"],
            ),
        ),
        (
            "a URI SAN that is not a SPIFFE id",
            forged_cert(Some(&world.ca_dir()), &["https://domicile.example/alice"]),
        ),
    ];
    for (what, cert) in cases {
        let client = raw_client(&world, node.addr, Some(cert));
        let result = read_as(&client).await;
        assert!(
            result.is_err(),
            "a certificate with {what} must be refused in the handshake, got {:?}",
            result.map(|a| (a.status, a.json()))
        );
    }
    // None of them reached the Gate.
    assert_eq!(world.region("us").gate.log().size(), size_before);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_client_certificate_only_public_endpoints_answer() {
    let world = World::new();
    let node = start_node(&world, "us", Limits::default(), &[]).await;
    let anonymous = raw_client(&world, node.addr, None);
    let health = anonymous.get("/healthz").await.unwrap();
    assert_eq!(health.status, 200);
    let ready = anonymous.get("/readyz").await.unwrap();
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["region"], "us");
    let size_before = world.region("us").gate.log().size();
    let answer = read_as(&anonymous).await.unwrap();
    assert_eq!(answer.status, 401);
    assert_eq!(answer.headers["content-type"], "application/problem+json");
    let problem = answer.json();
    assert_eq!(problem["code"], "client_certificate_required");
    assert_eq!(
        problem["type"],
        "urn:domicile:problem:client_certificate_required"
    );
    assert_eq!(problem["status"], 401);
    assert_eq!(world.region("us").gate.log().size(), size_before);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_refuses_a_node_of_another_region() {
    let world = World::new();
    let node = start_node(&world, "us", Limits::default(), &[]).await;
    // The gateway expects the row node at this address: the us node's SVID is refused.
    let wrong = client(&world, "us/usds/gateway", node.addr, Some("row"));
    assert!(wrong.get("/healthz").await.is_err());
    let right = client(&world, "us/usds/gateway", node.addr, Some("us"));
    assert_eq!(right.get("/healthz").await.unwrap().status, 200);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_is_its_certificate_and_the_directory_not_its_claims() {
    let world = World::new();
    let node = start_node(&world, "us", Limits::default(), &[]).await;
    // A certificate of the deployment's CA whose id the directory does not know.
    let stranger = client(&world, "us/usds/mallory", node.addr, Some("us"));
    let answer = read_as(&stranger).await.unwrap();
    assert_eq!(answer.status, 403);
    assert_eq!(answer.json()["code"], "unknown_principal");
    // Naming someone else in the gateway header, without being a gateway, is refused.
    let bo = client(&world, "row/bytedance-sg/bo", node.addr, Some("us"));
    let body = serde_json::to_vec(
        &serde_json::json!({"purpose": support(), "record": record("ana", "profile")}),
    )
    .unwrap();
    let answer = bo
        .send(
            axum::http::Method::POST,
            "/v1/records/read",
            &[(
                axum::http::HeaderName::from_static(domicile_node::ON_BEHALF_OF),
                axum::http::HeaderValue::from_static(ALICE),
            )],
            body,
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 403);
    assert_eq!(answer.json()["code"], "delegation_refused");
    node.stop().await;
}
