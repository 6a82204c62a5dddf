//! Bad requests get clear problems and bounded resources: malformed JSON, unknown fields,
//! oversize bodies, and clients that send a byte a second.

mod common;

use std::time::{Duration, Instant};

use common::*;
use domicile_node::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn limits() -> Limits {
    Limits {
        max_body: 4096,
        header_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(4),
        ..Limits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversize_bodies_are_clear_problems() {
    let world = World::new();
    let node = start_node(&world, "us", limits(), &[]).await;
    let app = client(&world, "us/usds/profile-service", node.addr, Some("us"));
    let post_raw = |body: Vec<u8>| {
        let app = &app;
        async move {
            app.send(axum::http::Method::POST, "/v1/records/write", &[], body)
                .await
                .unwrap()
        }
    };
    let size_before = world.region("us").gate.log().size();

    let answer = post_raw(b"{\"purpose\": {".to_vec()).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.headers["content-type"], "application/problem+json");
    assert_eq!(answer.json()["code"], "malformed_json");

    // Well-formed, but with a field the endpoint does not take — and a subject id that must
    // not be echoed back.
    let answer = post_raw(
        serde_json::to_vec(&serde_json::json!({
            "purpose": support(), "record": record("ana-secret-id", "profile"),
            "value": "x", "approvl": "00"
        }))
        .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json()["code"], "malformed_json");
    assert!(!String::from_utf8_lossy(&answer.body).contains("ana-secret-id"));

    // An invalid subject id is refused without quoting it.
    let answer = post_raw(
        serde_json::to_vec(&serde_json::json!({
            "purpose": support(), "record": record("ana\u{7}secret", "profile"), "value": "x"
        }))
        .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 400);
    assert!(!String::from_utf8_lossy(&answer.body).contains("secret"));

    // Over the body limit: refused before it is parsed.
    let big = serde_json::to_vec(&serde_json::json!({
        "purpose": support(), "record": record("ana", "profile"), "value": "x".repeat(8192)
    }))
    .unwrap();
    let answer = post_raw(big).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.json()["code"], "body_too_large");

    // Nothing above reached the Gate.
    assert_eq!(world.region("us").gate.log().size(), size_before);

    // Refusals by the Gate name the audit entry, not the subject.
    let answer = app
        .post(
            "/v1/records/read",
            &serde_json::json!({"purpose": support(), "record": record("ana", "profile")}),
        )
        .await
        .unwrap();
    assert!(answer.status.is_client_error());
    assert!(!String::from_utf8_lossy(&answer.body).contains("\"ana\""));
    node.stop().await;
}

async fn tls_stream(
    world: &World,
    addr: std::net::SocketAddr,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let identity = world.identity("us/usds/alice");
    let config = identity
        .client_config(Some(domicile_residency::Region::parse("us").unwrap()))
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(
            rustls::pki_types::ServerName::try_from("domicile-node").unwrap(),
            tcp,
        )
        .await
        .unwrap()
}

/// Sends `bytes` one a second until the server closes the connection; returns how long that
/// took and what the server said.
async fn trickle(
    stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    bytes: &[u8],
) -> (Duration, String) {
    let start = Instant::now();
    let mut answer = Vec::new();
    for b in bytes {
        if stream.write_all(&[*b]).await.is_err() || stream.flush().await.is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                // Read to the end: the server closes after answering.
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer))
                        .await;
                break;
            }
        }
    }
    (
        start.elapsed(),
        String::from_utf8_lossy(&answer).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_a_byte_a_second_is_cut_off() {
    let world = World::new();
    let node = start_node(&world, "us", limits(), &[]).await;

    // Headers, one byte a second: cut off at the header timeout (2 s), long before the 60
    // bytes would have taken.
    let mut slow = tls_stream(&world, node.addr).await;
    let headers = b"POST /v1/records/read HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 10\r\n\r\n";
    let (took, _) = trickle(&mut slow, headers).await;
    assert!(
        took < Duration::from_secs(10),
        "the slow client held on for {took:?}"
    );

    // Complete headers, then a body a byte a second: answered 408 at the request timeout —
    // on the store check too, whose work may take an hour: its body is still read within the
    // ordinary limit.
    for path in ["/v1/records/read", "/v1/store/check"] {
        let mut slow = tls_stream(&world, node.addr).await;
        let headers = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 60\r\n\r\n"
        );
        slow.write_all(headers.as_bytes()).await.unwrap();
        let (took, answer) = trickle(&mut slow, &[b' '; 60]).await;
        assert!(
            took < Duration::from_secs(12),
            "{path}: the slow body held on for {took:?}"
        );
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(answer.contains("request_timeout"), "{path}: {answer}");
    }

    // A connection that sends nothing at all after its handshake is closed too.
    let mut idle = tls_stream(&world, node.addr).await;
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(15), idle.read(&mut buf)).await;
    assert!(closed.is_ok(), "an idle connection was held for 15 s");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "held for {:?}",
        start.elapsed()
    );

    // Meanwhile the node serves everyone else.
    let app = client(&world, "us/usds/profile-service", node.addr, Some("us"));
    assert_eq!(app.get("/readyz").await.unwrap().status, 200);
    node.stop().await;
}

/// A node that answers with more than the client accepts (broken, or hostile: a gateway serves
/// every region, so one region's node must not exhaust it for the others) gets an error naming
/// the bound, whether the body says its length or streams without end; the client goes on
/// working with a node that answers normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_refuses_an_answer_larger_than_it_accepts() {
    use axum::body::Body;
    use axum::routing::get;

    /// A body of 64 KiB chunks that never ends and gives no length.
    struct Endless(bytes::Bytes);
    impl axum::body::HttpBody for Endless {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>>
        {
            std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(self.0.clone()))))
        }
    }

    let world = World::new();
    let endless = || Body::new(Endless(bytes::Bytes::from(vec![b'x'; 64 << 10])));
    let app = axum::Router::new()
        .route("/small", get(|| async { "{}" }))
        .route("/sized", get(|| async { vec![b'x'; 3 << 20] }))
        .route("/endless", get(move || async move { endless() }));
    // The hostile server holds the us node's SVID, so the client's handshake accepts it.
    let identity = world.identity("us/domicile/node");
    let server = serve_app(&identity, app, Limits::default()).await;
    let gateway = client(&world, "us/usds/gateway", server.addr, Some("us"))
        .with_max_response(1 << 20)
        .with_timeout(Duration::from_secs(30));
    for path in ["/sized", "/endless"] {
        let started = Instant::now();
        match gateway.get(path).await {
            Err(domicile_node::ClientError::ResponseTooLarge { limit, .. }) => {
                assert_eq!(limit, 1 << 20)
            }
            other => panic!("{path}: {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{path}");
    }
    let answer = gateway.get("/small").await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(&answer.body[..], b"{}");
    assert_eq!(domicile_node::DEFAULT_MAX_RESPONSE, 64 << 20);
    server.stop().await;
}
