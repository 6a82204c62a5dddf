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

/// The tiles the clients ask for, in turn: every full level-0 tile and entry bundle.
fn paths() -> Vec<TilePath> {
    let mut out = Vec::new();
    for n in 0..ENTRIES / 256 {
        out.push(TilePath::full(TileKind::Hashes(0), n));
        out.push(TilePath::full(TileKind::Entries, n));
    }
    out
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
    let paths = Arc::new(paths());

    // Baseline: the same tiles cut in process, one thread, no HTTP.
    let source = TileSource::new(tmp.path());
    source.refresh().unwrap();
    let start = Instant::now();
    let mut baseline = 0u64;
    let mut bytes = 0usize;
    while start.elapsed() < RUN {
        for p in paths.iter() {
            bytes += source.tile(p).unwrap().unwrap().len();
            baseline += 1;
        }
    }
    let baseline_rate = baseline as f64 / start.elapsed().as_secs_f64();
    std::hint::black_box(bytes);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let served = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = public_routes_for(Arc::clone(&source));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = HttpClient::new(&[]).unwrap();
        let count = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + RUN;
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (client, url, paths, count) = (
                client.clone(),
                url.clone(),
                Arc::clone(&paths),
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
    });

    println!(
        "tiles: {ENTRIES} entries; full level-0 tiles and entry bundles in turn, {CLIENTS} keep-alive clients"
    );
    println!("  served over HTTP      {served:>10.0} tiles/s");
    println!("  cut in process        {baseline_rate:>10.0} tiles/s (baseline, one thread)");
    println!("  ratio                 {:>10.2}x", served / baseline_rate);
}
