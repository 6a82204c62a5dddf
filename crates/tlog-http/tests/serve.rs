//! `serve` bounds its clients: a client that sends its headers too slowly is cut off, and a
//! connection cap makes further clients wait rather than pile up.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{grow, log_key, open_log, tempdir};
use domicile_tlog_http::{public_routes, serve, ServeLimits};

#[test]
fn slow_headers_are_cut_off_and_connections_are_capped() {
    let tmp = tempdir();
    let log = Arc::new(open_log(tmp.path(), log_key("audit.example/us")));
    grow(&log, 3);
    log.checkpoint().unwrap();
    let limits = ServeLimits {
        header_timeout: Duration::from_secs(1),
        max_connections: 1,
        shutdown_grace: Duration::from_secs(1),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = public_routes(tmp.path().to_owned());
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            serve(listener, app, limits, async {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
        });
    });
    let addr = rx.recv().unwrap();

    // A client dribbling its request line holds the only slot until the deadline cuts it off.
    let start = Instant::now();
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /checkpoint HT").unwrap();
    // Meanwhile a well-behaved client waits for the slot, then is served.
    let fast = std::thread::spawn(move || {
        let a = common::get(addr, "/checkpoint");
        (a.status, start.elapsed())
    });
    let mut rest = Vec::new();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = slow.read_to_end(&mut rest);
    let cut = start.elapsed();
    assert!(cut >= Duration::from_millis(900), "cut off after {cut:?}");
    assert!(cut < Duration::from_secs(9), "never cut off");
    assert!(!String::from_utf8_lossy(&rest).contains("200 OK"));
    let (status, served_at) = fast.join().unwrap();
    assert_eq!(status, 200);
    assert!(
        served_at >= Duration::from_millis(900),
        "served at {served_at:?}"
    );

    stop_tx.send(()).unwrap();
    server.join().unwrap();
}
