//! C2SP tlog-checkpoint bodies: origin, tree size, base64 root hash.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::merkle::Hash;
use crate::AuditError;

/// A checkpoint: the log's claim that the tree of `size` entries has root `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (its unique name).
    pub origin: String,
    /// The number of entries.
    pub size: u64,
    /// The RFC 6962 root hash of the tree of that size.
    pub root: Hash,
}

impl Checkpoint {
    /// The checkpoint body text: three lines, each ending in a newline.
    pub fn to_body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a checkpoint body. Extension lines after the root are allowed and ignored, as the
    /// spec says; the three first lines must be exact.
    pub fn parse(body: &str) -> Result<Self, AuditError> {
        let bad = |reason| AuditError::BadCheckpoint {
            body: body.chars().take(200).collect(),
            reason,
        };
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| bad("no origin line"))?;
        let size_text = lines.next().ok_or_else(|| bad("no size line"))?;
        if size_text.is_empty()
            || !size_text.bytes().all(|b| b.is_ascii_digit())
            || (size_text.len() > 1 && size_text.starts_with('0'))
        {
            return Err(bad(
                "the size is not a decimal number without leading zeros",
            ));
        }
        let size = size_text
            .parse()
            .map_err(|_| bad("the size is too large"))?;
        let root_text = lines.next().ok_or_else(|| bad("no root line"))?;
        let root = B64
            .decode(root_text)
            .ok()
            .and_then(|r| <Hash>::try_from(r.as_slice()).ok())
            .ok_or_else(|| bad("the root is not 32 bytes of base64"))?;
        if !body.ends_with('\n') {
            return Err(bad("the body does not end in a newline"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_round_trip() {
        let c = Checkpoint {
            origin: "audit.example/us".into(),
            size: 12,
            root: [7; 32],
        };
        assert_eq!(Checkpoint::parse(&c.to_body()).unwrap(), c);
        assert!(Checkpoint::parse("o\n012\nAAAA\n").is_err());
        assert!(Checkpoint::parse("o\n12\n").is_err());
    }
}
