//! Tiles per second served by one node: concurrent keep-alive HTTP clients fetching hash tiles
//! and entry bundles of a 65,792-entry log, against cutting the same tiles in process (the
//! baseline: no HTTP) in the same run.
//!
//! `cargo bench -p domicile-tlog-http --bench tiles` (client and server share the machine).

#![allow(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use domicile_audit::{doc_example_entry, AuditLog, KeyKind, LogConfig, SigningKey};
use domicile_tlog_http::{public_routes_for, HttpClient, TileKind, TilePath, TileSource};

const ENTRIES: u64 = 65_536 + 256;
const CLIENTS: usize = 32;
const RUN: Duration = Duration::from_secs(3);

fn build_log(dir: &std::path::Path) {
    let key = SigningKey::from_seed("bench.example/us", KeyKind::Ed25519, [1; 32]).unwrap();
    let mut cfg = LogConfig::new(key);
    cfg.checkpoint_every = 0;
    cfg.checkpoint_interval = None;
    let log = Arc::new(AuditLog::open(dir, cfg).unwrap());
    std::thread::scope(|s| {
        for t in 0..16 {
            let log = Arc::clone(&log);
            s.spawn(move || {
                for i in 0..ENTRIES / 16 {
                    let mut e = doc_example_entry().unwrap();
                    e.request_id = format!("req-{t}-{i}");
                    log.append(e).unwrap();
                }
            });
        }
    });
    log.close().unwrap();
}

/// The tiles the clients ask for, in turn: every full tile of one kind.
fn paths(kind: TileKind) -> Vec<TilePath> {
    (0..ENTRIES / 256)
        .map(|n| TilePath::full(kind, n))
        .collect()
}

fn main() {
    let shm = std::path::Path::new("/dev/shm");
    let tmp = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    build_log(tmp.path());
    let source = TileSource::new(tmp.path());
    source.refresh().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = public_routes_for(Arc::clone(&source));
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    });
    println!(
        "tiles: {ENTRIES} entries, {CLIENTS} keep-alive clients, {} s each",
        RUN.as_secs()
    );
    for (name, kind) in [
        ("level-0 hash tiles", TileKind::Hashes(0)),
        ("entry bundles", TileKind::Entries),
    ] {
        let paths = Arc::new(paths(kind));
        let baseline = in_process(&source, &paths);
        let served = over_http(&rt, &url, &paths);
        println!("  {name:<20} served {served:>9.0}/s   cut in process {baseline:>9.0}/s (one thread)   ratio {:.2}x", served / baseline);
    }
}

/// Baseline: the same tiles cut in process, one thread, no HTTP.
fn in_process(source: &TileSource, paths: &[TilePath]) -> f64 {
    let start = Instant::now();
    let mut count = 0u64;
    let mut bytes = 0usize;
    while start.elapsed() < RUN {
        for p in paths {
            bytes += source.tile(p).unwrap().unwrap().len();
            count += 1;
        }
    }
    std::hint::black_box(bytes);
    count as f64 / start.elapsed().as_secs_f64()
}

fn over_http(rt: &tokio::runtime::Runtime, url: &str, paths: &Arc<Vec<TilePath>>) -> f64 {
    rt.block_on(async {
        let client = HttpClient::new(&[]).unwrap();
        let count = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + RUN;
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (client, url, paths, count) = (
                client.clone(),
                url.to_owned(),
                Arc::clone(paths),
                Arc::clone(&count),
            );
            tasks.push(tokio::spawn(async move {
                let mut i = c * 37;
                while Instant::now() < deadline {
                    let p = &paths[i % paths.len()];
                    let body = client.get(&format!("{url}/{p}")).await.unwrap().unwrap();
                    assert!(!body.is_empty());
                    count.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            }));
        }
        let start = Instant::now();
        for t in tasks {
            t.await.unwrap();
        }
        count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
    })
}
