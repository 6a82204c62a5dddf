//! Every checkpoint, tile and entry bundle the server publishes verifies with a tlog-tiles
//! client written here, from the spec, sharing nothing with the server's tile code: its own path
//! encoding, its own RFC 6962 hashing (ring's SHA-256), its own bundle parsing.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::{get, grow, log_key, open_log, serve, tempdir};
use domicile_audit::{Note, VerifierKey};
use domicile_tlog_http::public_routes;
use ring::digest::{digest, Context, SHA256};

type Hash = [u8; 32];

fn leaf(data: &[u8]) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[0]);
    c.update(data);
    c.finish().as_ref().try_into().unwrap()
}

fn node(l: &Hash, r: &Hash) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[1]);
    c.update(l);
    c.update(r);
    c.finish().as_ref().try_into().unwrap()
}

/// RFC 6962 §2.1 MTH, by its definition.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => digest(&SHA256, b"").as_ref().try_into().unwrap(),
        1 => leaves[0],
        n => {
            let k = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
            node(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// The spec's path encoding: `x`-prefixed zero-padded 3-digit groups.
fn encode_index(mut n: u64) -> String {
    let mut groups = vec![format!("{:03}", n % 1000)];
    n /= 1000;
    while n > 0 {
        groups.push(format!("x{:03}", n % 1000));
        n /= 1000;
    }
    groups.reverse();
    groups.join("/")
}

fn tile_path(level: Option<u32>, index: u64, width: u64) -> String {
    let l = level.map_or("entries".to_owned(), |l| l.to_string());
    let p = if width < 256 {
        format!(".p/{width}")
    } else {
        String::new()
    };
    format!("/tile/{l}/{}{p}", encode_index(index))
}

fn fetch_ok(addr: SocketAddr, path: &str) -> Vec<u8> {
    let a = get(addr, path);
    assert_eq!(
        a.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&a.body)
    );
    assert_eq!(
        a.header("content-type"),
        Some("application/octet-stream"),
        "{path}"
    );
    assert_eq!(
        a.header("cache-control"),
        Some("public, max-age=604800, immutable"),
        "{path}"
    );
    a.body
}

/// Follows the log at `addr` to the checkpoint it serves, which must have `size` entries and be
/// signed by `vkey`; checks every bundle, every tile at every level and the root. Returns the
/// leaf hashes.
fn follow_independently(addr: SocketAddr, vkey: &VerifierKey, size: u64) -> Vec<Hash> {
    let a = get(addr, "/checkpoint");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("cache-control"), Some("no-store"));
    assert_eq!(a.header("content-type"), Some("text/plain; charset=utf-8"));
    let note = Note::parse(&a.body).unwrap();
    note.verify(vkey).unwrap();
    let lines: Vec<&str> = note.text.lines().collect();
    assert_eq!(lines[0], vkey.name());
    assert_eq!(lines[1].parse::<u64>().unwrap(), size);
    let root: Hash = B64.decode(lines[2]).unwrap().try_into().unwrap();

    let mut leaves = Vec::new();
    for n in 0..size.div_ceil(256) {
        let width = (size - n * 256).min(256);
        let bundle = fetch_ok(addr, &tile_path(None, n, width));
        let mut rest = &bundle[..];
        for _ in 0..width {
            let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            leaves.push(leaf(&rest[2..2 + len]));
            rest = &rest[2 + len..];
        }
        assert!(rest.is_empty(), "bundle {n} has trailing bytes");
    }
    assert_eq!(
        mth(&leaves),
        root,
        "the entries do not have the signed root"
    );

    // Level l holds MTH of each aligned run of 256^l leaves the tree covers completely.
    let mut level_hashes = leaves.clone();
    let mut level = 0;
    while !level_hashes.is_empty() {
        let count = level_hashes.len() as u64;
        for n in 0..count.div_ceil(256) {
            let width = (count - n * 256).min(256);
            let tile = fetch_ok(addr, &tile_path(Some(level), n, width));
            let want: Vec<u8> = level_hashes[(n * 256) as usize..(n * 256 + width) as usize]
                .iter()
                .flatten()
                .copied()
                .collect();
            assert_eq!(tile, want, "tile {level}/{n} width {width}");
        }
        // The next level up: only full tiles are hashed into it.
        level_hashes = level_hashes.chunks_exact(256).map(mth).collect();
        level += 1;
    }
    // Nothing beyond the checkpoint.
    let next = size / 256;
    let width = size % 256 + 1;
    assert_eq!(get(addr, &tile_path(Some(0), next, width)).status, 404);
    assert_eq!(get(addr, &tile_path(None, next, width)).status, 404);
    assert_eq!(get(addr, &tile_path(Some(level), 0, 1)).status, 404);
    leaves
}

#[test]
fn every_checkpointed_size_verifies_with_an_independent_client() {
    let dir = tempdir();
    let key = log_key("audit.example/us");
    let vkey = key.verifier();
    let log = Arc::new(open_log(dir.path(), key));
    let addr = serve(public_routes(dir.path().to_owned()));

    // Size 0: nothing is signed yet, so nothing is served.
    assert_eq!(get(addr, "/checkpoint").status, 404);
    assert_eq!(get(addr, "/tile/0/000.p/1").status, 404);
    assert_eq!(get(addr, "/tile/entries/000.p/1").status, 404);

    let mut earlier: Vec<(u64, Vec<Hash>)> = Vec::new();
    for size in [1u64, 255, 256, 257, 511, 65_535, 65_536, 65_536 + 257] {
        grow(&log, size);
        // Entries beyond the last checkpoint are not published.
        if let Some((prev, _)) = earlier.last() {
            let a = get(addr, "/checkpoint");
            let note = Note::parse(&a.body).unwrap();
            assert!(note.text.contains(&format!("\n{prev}\n")));
        }
        log.checkpoint().unwrap();
        let leaves = follow_independently(addr, &vkey, size);
        earlier.push((size, leaves));
    }
    // The partial tiles of every earlier checkpoint are still served, and agree with the
    // final tree.
    let (_, all) = earlier.last().unwrap().clone();
    for (size, leaves) in &earlier {
        assert_eq!(&all[..*size as usize], &leaves[..]);
        if size % 256 != 0 {
            let tile = fetch_ok(addr, &tile_path(Some(0), size / 256, size % 256));
            let want: Vec<u8> = all[(size / 256 * 256) as usize..*size as usize]
                .iter()
                .flatten()
                .copied()
                .collect();
            assert_eq!(tile, want);
        }
    }
}

#[test]
fn malformed_paths_and_methods_are_refused() {
    let dir = tempdir();
    let log = Arc::new(open_log(dir.path(), log_key("audit.example/us")));
    grow(&log, 3);
    log.checkpoint().unwrap();
    let addr = serve(public_routes(dir.path().to_owned()));
    for bad in [
        "/tile/0/0",
        "/tile/0/x000/000.p/3",
        "/tile/64/000",
        "/tile/0/000.p/0",
        "/tile/0/000.p/256",
        "/tile/entries/000.p/03",
        "/tile/00/000.p/3",
    ] {
        assert_eq!(get(addr, bad).status, 400, "{bad}");
    }
    assert_eq!(get(addr, "/tile/0/000.p/3").status, 200);
    assert_eq!(
        common::request(addr, "POST", "/tile/0/000.p/3", b"").status,
        405
    );
    assert_eq!(
        common::request(addr, "PUT", "/checkpoint", b"x").status,
        405
    );
}

#[test]
fn entry_bundles_are_gzipped_for_clients_that_accept_it() {
    use std::io::Read;
    let dir = tempdir();
    let log = Arc::new(open_log(dir.path(), log_key("audit.example/us")));
    grow(&log, 300);
    log.checkpoint().unwrap();
    let addr = serve(public_routes(dir.path().to_owned()));
    let plain = get(addr, "/tile/entries/000");
    assert_eq!(plain.header("content-encoding"), None);
    let gz = common::request_with(
        addr,
        "GET",
        "/tile/entries/000",
        &[("Accept-Encoding", "gzip, identity")],
        b"",
    );
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("vary"), Some("accept-encoding"));
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, plain.body);
    assert!(gz.body.len() < plain.body.len() / 2);
    // Refused by weight, and never for hash tiles.
    let no = common::request_with(
        addr,
        "GET",
        "/tile/entries/000",
        &[("Accept-Encoding", "gzip;q=0")],
        b"",
    );
    assert_eq!(no.header("content-encoding"), None);
    let tile = common::request_with(
        addr,
        "GET",
        "/tile/0/000",
        &[("Accept-Encoding", "gzip")],
        b"",
    );
    assert_eq!(tile.header("content-encoding"), None);
}

#[test]
fn a_log_whose_entries_were_changed_is_not_served() {
    let dir = tempdir();
    let log = Arc::new(open_log(dir.path(), log_key("audit.example/us")));
    grow(&log, 10);
    log.checkpoint().unwrap();
    drop(log);
    // Flip a byte inside the last entry of the only segment.
    let seg = std::fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 1;
    std::fs::write(&seg, bytes).unwrap();
    let addr = serve(public_routes(dir.path().to_owned()));
    let a = get(addr, "/checkpoint");
    assert_eq!(a.status, 503, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(get(addr, "/tile/entries/000.p/10").status, 503);
}
