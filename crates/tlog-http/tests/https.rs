//! The auditor's client over https: rustls on ring, trusting a CA given as a PEM file, against
//! the tile routes served over TLS; without that CA the handshake is refused.

mod common;

use std::sync::Arc;

use common::{grow, log_key, open_log, tempdir};
use domicile_tlog_http::{follow, public_routes, ClientError, HttpClient};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

#[test]
fn follow_over_https_trusts_the_given_ca_only() {
    let tmp = tempdir();
    let key = log_key("audit.example/us");
    let vkey = key.verifier();
    let log = Arc::new(open_log(&tmp.path().join("log"), key));
    grow(&log, 300);
    log.checkpoint().unwrap();

    // A development CA and a certificate for 127.0.0.1 signed by it.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let ca_file = tmp.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(server.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let app = public_routes(tmp.path().join("log"));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    rt.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // A client that refuses our certificate ends its handshake here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
            });
        }
    });

    let client = HttpClient::new(&[ca_file.as_path()]).unwrap();
    let report = rt
        .block_on(follow(&client, &url, &vkey, None, &[]))
        .unwrap();
    assert_eq!((report.entries, report.bundles, report.tiles), (300, 2, 3));

    // The system roots alone do not know the development CA.
    let stranger = HttpClient::new(&[]).unwrap();
    let err = rt
        .block_on(follow(&stranger, &url, &vkey, None, &[]))
        .unwrap_err();
    assert!(matches!(err, ClientError::Transport { .. }), "{err}");

    // A CA file that holds no certificate is refused up front.
    let empty = tmp.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    assert!(matches!(
        HttpClient::new(&[empty.as_path()]),
        Err(ClientError::Tls(_))
    ));
}
