//! C2SP tlog-tiles resource paths: `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]`.
//!
//! `<N>` is written in zero-padded 3-digit groups, every group but the last prefixed with `x`
//! (1234067 is `x001/x234/067`); `<L>` and `<W>` are decimal without leading zeros, `<L>` at most
//! 63 and `<W>` from 1 to 255. Each tile has exactly one spelling: anything else is refused.

use std::fmt;

/// Hashes in a full tile, and entries in a full bundle.
pub const TILE_WIDTH: u64 = 256;

/// Which tree a tile path names: hashes at a level, or the entries themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TileKind {
    /// Merkle tree hashes at level `L` (0 to 63): each hash roots a subtree of `256^L` leaves.
    Hashes(u8),
    /// An entry bundle: the log's entries, each with a big-endian uint16 length prefix.
    Entries,
}

/// One tile or entry bundle: kind, index and width (256 for a full one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TilePath {
    /// What it holds.
    pub kind: TileKind,
    /// Its index `N` within its level.
    pub index: u64,
    /// How many hashes or entries it holds: 256, or 1 to 255 for a partial tile.
    pub width: u16,
}

/// Why a tile path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("{path:?} is not a tlog-tiles path: {reason}")]
pub struct BadTilePath {
    /// The path given (at most 100 characters of it).
    pub path: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl TilePath {
    /// A full tile.
    pub fn full(kind: TileKind, index: u64) -> Self {
        TilePath {
            kind,
            index,
            width: TILE_WIDTH as u16,
        }
    }

    /// Whether this is a partial tile (`.p/<W>`).
    pub fn is_partial(&self) -> bool {
        u64::from(self.width) < TILE_WIDTH
    }

    /// The level of the tree its hashes are at (0 for an entry bundle, whose entries hash to
    /// the level-0 tile of the same index).
    pub fn level(&self) -> u8 {
        match self.kind {
            TileKind::Hashes(l) => l,
            TileKind::Entries => 0,
        }
    }

    /// Parses the part of a URL path after `tile/`.
    pub fn parse(path: &str) -> Result<TilePath, BadTilePath> {
        let bad = |reason| BadTilePath {
            path: path.chars().take(100).collect(),
            reason,
        };
        let (head, rest) = path
            .split_once('/')
            .ok_or_else(|| bad("no index after the level"))?;
        let kind = if head == "entries" {
            TileKind::Entries
        } else {
            let level = decimal(head).ok_or_else(|| bad("the level is not a decimal number"))?;
            if level > 63 {
                return Err(bad("the level is above 63"));
            }
            TileKind::Hashes(level as u8)
        };
        let (digits, width) = match rest.split_once(".p/") {
            Some((n, w)) => {
                let w = decimal(w).ok_or_else(|| bad("the width is not a decimal number"))?;
                if w == 0 || w >= TILE_WIDTH {
                    return Err(bad("a partial tile's width is not between 1 and 255"));
                }
                (n, w as u16)
            }
            None => (rest, TILE_WIDTH as u16),
        };
        let groups: Vec<&str> = digits.split('/').collect();
        let mut index: u64 = 0;
        for (i, group) in groups.iter().enumerate() {
            let last = i + 1 == groups.len();
            let digits = if last {
                *group
            } else {
                group
                    .strip_prefix('x')
                    .ok_or_else(|| bad("an index group before the last lacks its x"))?
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("an index group is not three digits"));
            }
            let n: u64 = digits
                .parse()
                .map_err(|_| bad("an index group is not three digits"))?;
            if i == 0 && n == 0 && !last {
                return Err(bad("the index has a leading x000 group"));
            }
            index = index
                .checked_mul(1000)
                .and_then(|v| v.checked_add(n))
                .ok_or_else(|| bad("the index does not fit 64 bits"))?;
        }
        Ok(TilePath { kind, index, width })
    }
}

/// A decimal number without leading zeros (`0` itself is fine).
fn decimal(text: &str) -> Option<u64> {
    if text.is_empty()
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    text.parse().ok()
}

/// The `tile/…` path, without a leading slash.
impl fmt::Display for TilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            TileKind::Hashes(l) => write!(f, "tile/{l}/")?,
            TileKind::Entries => write!(f, "tile/entries/")?,
        }
        let mut groups = Vec::new();
        let mut n = self.index;
        loop {
            groups.push(n % 1000);
            n /= 1000;
            if n == 0 {
                break;
            }
        }
        for (i, g) in groups.iter().rev().enumerate() {
            if i + 1 < groups.len() {
                write!(f, "x{g:03}/")?;
            } else {
                write!(f, "{g:03}")?;
            }
        }
        if self.is_partial() {
            write!(f, ".p/{}", self.width)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
