use proptest::prelude::*;

use super::*;

#[test]
fn the_spec_examples() {
    let p = TilePath::parse("0/x001/x234/067").unwrap();
    assert_eq!(p, TilePath::full(TileKind::Hashes(0), 1_234_067));
    assert_eq!(p.to_string(), "tile/0/x001/x234/067");
    let p = TilePath::parse("entries/x001/x234/067.p/8").unwrap();
    assert_eq!(
        p,
        TilePath {
            kind: TileKind::Entries,
            index: 1_234_067,
            width: 8
        }
    );
    assert_eq!(p.to_string(), "tile/entries/x001/x234/067.p/8");
    assert_eq!(
        TilePath::full(TileKind::Hashes(1), 0).to_string(),
        "tile/1/000"
    );
    assert_eq!(
        TilePath::full(TileKind::Hashes(63), 1000).to_string(),
        "tile/63/x001/000"
    );
}

#[test]
fn non_canonical_paths_are_refused() {
    for bad in [
        "",
        "0",
        "00/000",
        "64/000",
        "0/0",
        "0/0000",
        "0/001/002",
        "0/x000/001",
        "0/x01/001",
        "0/000.p/0",
        "0/000.p/256",
        "0/000.p/07",
        "0/000.p/",
        "entries/000.p/1/2",
        "-1/000",
        "0/x/000",
        "0/x999/x999/x999/x999/x999/x999/x999/999",
    ] {
        assert!(TilePath::parse(bad).is_err(), "{bad:?} was accepted");
    }
}

proptest! {
    #[test]
    fn every_tile_path_round_trips(level in 0u8..=63, entries: bool, index: u64, width in 1u16..=256) {
        let kind = if entries { TileKind::Entries } else { TileKind::Hashes(level) };
        let p = TilePath { kind, index, width };
        let text = p.to_string();
        let back = TilePath::parse(text.strip_prefix("tile/").unwrap()).unwrap();
        prop_assert_eq!(back, p);
    }
}
