//! What the integration tests share: logs of many entries, servers on ephemeral ports, and a
//! bare HTTP/1.1 client over a std socket that shares nothing with the crate.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;

use domicile_audit::{doc_example_entry, AuditLog, KeyKind, LogConfig, SigningKey};

/// A log directory on tmpfs where there is one: the tests grow logs by tens of thousands of
/// entries, and fsync there is cheap.
pub fn tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

pub fn log_key(origin: &str) -> SigningKey {
    SigningKey::from_seed(origin, KeyKind::Ed25519, [42; 32]).unwrap()
}

/// Opens a log that signs checkpoints only when asked.
pub fn open_log(dir: &Path, key: SigningKey) -> AuditLog {
    let mut cfg = LogConfig::new(key);
    cfg.checkpoint_every = 0;
    cfg.checkpoint_interval = None;
    cfg.segment_bytes = 1 << 20; // several segments, so bundles straddle them
    AuditLog::open(dir, cfg).unwrap()
}

/// Appends entries until the log holds `size`, from many threads (group commit keeps it fast).
pub fn grow(log: &Arc<AuditLog>, size: u64) {
    let have = log.size();
    if have >= size {
        return;
    }
    let todo = size - have;
    let threads = 16.min(todo);
    std::thread::scope(|s| {
        for t in 0..threads {
            let log = Arc::clone(log);
            s.spawn(move || {
                let n = todo / threads + u64::from(t < todo % threads);
                for i in 0..n {
                    let mut e = doc_example_entry().unwrap();
                    // Entries of varied lengths.
                    e.request_id = format!("req-{t}-{i}-{}", "x".repeat((i % 7) as usize));
                    log.append(e).unwrap();
                }
            });
        }
    });
    assert_eq!(log.size(), size);
}

/// Serves `app` on 127.0.0.1 at an ephemeral port, on its own runtime thread.
pub fn serve(app: axum::Router) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// An HTTP answer: status, headers (names lower-cased), body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request over a fresh connection, read to the end.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Answer {
    request_with(addr, method, path, &[], body)
}

/// [`request`] with extra headers.
pub fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    let extra: String = headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of headers");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let body = raw[split + 4..].to_vec();
    let answer = Answer {
        status,
        headers,
        body,
    };
    if let Some(len) = answer.header("content-length") {
        assert_eq!(answer.body.len(), len.parse::<usize>().unwrap());
    } else {
        assert!(
            answer.header("transfer-encoding").is_none(),
            "chunked answers are not expected"
        );
    }
    answer
}

pub fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, "GET", path, b"")
}
