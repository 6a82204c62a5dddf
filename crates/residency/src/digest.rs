//! The one 32-byte SHA-256 digest type of the workspace.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ResidencyError;

/// A SHA-256 digest, written `sha256:` and 64 lowercase hex digits. Policy ids digest their rules
/// with it ([`PolicyDigest`](crate::PolicyDigest)); the store digests record values with it
/// (`domicile_store::RecordDigest`); both are this one type, with one parser.
///
/// ```
/// use domicile_residency::Sha256Digest;
/// let d = Sha256Digest::of(b"abc");
/// assert_eq!(d.to_string(),
///     "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
/// assert_eq!(Sha256Digest::parse(&d.to_string())?, d);
/// # Ok::<(), domicile_residency::ResidencyError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Sha256Digest(out)
    }

    /// Parses `sha256:` followed by 64 lowercase hex digits; errors quote the value.
    pub fn parse(value: &str) -> Result<Self, ResidencyError> {
        let bad = || ResidencyError::InvalidDigest {
            value: value.chars().take(80).collect(),
        };
        let hex = value.strip_prefix("sha256:").ok_or_else(bad)?;
        if hex.len() != 64 {
            return Err(bad());
        }
        let nibble = |b: u8| match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks(2)) {
            *byte = nibble(pair[0]).ok_or_else(bad)? << 4 | nibble(pair[1]).ok_or_else(bad)?;
        }
        Ok(Sha256Digest(out))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

impl std::str::FromStr for Sha256Digest {
    type Err = ResidencyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sha256Digest::parse(s)
    }
}

impl TryFrom<String> for Sha256Digest {
    type Error = ResidencyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Sha256Digest::parse(&value)
    }
}

impl From<Sha256Digest> for String {
    fn from(d: Sha256Digest) -> String {
        d.to_string()
    }
}
