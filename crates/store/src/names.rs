//! Collection names and record keys: how a record is addressed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// A collection of records, such as `profiles` or `watch-history`.
///
/// 1 to 64 characters: lowercase ASCII letters, digits, `-`, `_` and `.`, starting with a letter
/// or digit. Names starting with `_` are kept for the store's own use. Collection names are
/// stored in the clear (they are how the backend finds records), so they must never hold
/// personal data.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Collection(String);

impl Collection {
    /// The longest collection name, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Parses and validates a collection name.
    ///
    /// ```
    /// use domicile_store::Collection;
    /// assert_eq!(Collection::parse("watch-history")?.as_str(), "watch-history");
    /// assert!(Collection::parse("_registry").is_err());
    /// # Ok::<(), domicile_store::StoreError>(())
    /// ```
    pub fn parse(value: &str) -> Result<Self, StoreError> {
        let refuse = |reason| {
            Err(StoreError::InvalidCollection {
                value: value.to_owned(),
                reason,
            })
        };
        if value.is_empty() {
            return refuse("it is empty");
        }
        if value.len() > Self::MAX_LEN {
            return refuse("it is longer than 64 characters");
        }
        if !value.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            return refuse("it must start with a lowercase letter or a digit");
        }
        if !value.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        }) {
            return refuse("only lowercase letters, digits, '-', '_' and '.' are allowed");
        }
        Ok(Collection(value.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A name the store uses for itself; never produced by `parse`.
    pub(crate) fn reserved(name: &str) -> Self {
        debug_assert!(name.starts_with('_'));
        Collection(name.to_owned())
    }
}

impl fmt::Display for Collection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Collection {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Collection::parse(s)
    }
}

impl TryFrom<String> for Collection {
    type Error = StoreError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Collection::parse(&value)
    }
}

impl From<Collection> for String {
    fn from(c: Collection) -> String {
        c.0
    }
}

/// The key of a record within its collection: 1 to 512 bytes of UTF-8 with no control
/// characters.
///
/// Keys are stored in the clear, like collection names, so use opaque ids (`post-8812`), not
/// personal data (an e-mail address), as keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RecordKey(String);

impl RecordKey {
    /// The longest record key, in bytes.
    pub const MAX_LEN: usize = 512;

    /// Parses and validates a record key.
    ///
    /// ```
    /// use domicile_store::RecordKey;
    /// assert_eq!(RecordKey::parse("post-8812")?.as_str(), "post-8812");
    /// assert!(RecordKey::parse("").is_err());
    /// # Ok::<(), domicile_store::StoreError>(())
    /// ```
    pub fn parse(value: &str) -> Result<Self, StoreError> {
        Self::check(value)?;
        Ok(RecordKey(value.to_owned()))
    }

    /// [`parse`](Self::parse) of a string the caller owns, kept as it is.
    pub(crate) fn from_string(value: String) -> Result<Self, StoreError> {
        Self::check(&value)?;
        Ok(RecordKey(value))
    }

    fn check(value: &str) -> Result<(), StoreError> {
        let refuse = |reason| {
            Err(StoreError::InvalidRecordKey {
                length: value.len(),
                reason,
            })
        };
        if value.is_empty() {
            return refuse("it is empty");
        }
        if value.len() > Self::MAX_LEN {
            return refuse("it is longer than 512 bytes");
        }
        if value.chars().any(char::is_control) {
            return refuse("it contains control characters");
        }
        Ok(())
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RecordKey {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RecordKey::parse(s)
    }
}

impl TryFrom<String> for RecordKey {
    type Error = StoreError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        RecordKey::parse(&value)
    }
}

impl From<RecordKey> for String {
    fn from(k: RecordKey) -> String {
        k.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collections() {
        for ok in ["profiles", "watch-history", "a", "v1.likes", "0day"] {
            assert_eq!(Collection::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "_registry", "Profiles", "a b", "a/b", &"x".repeat(65)] {
            let err = Collection::parse(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn record_keys() {
        for ok in ["k", "post-1", "ünï/código", &"x".repeat(512)] {
            assert!(RecordKey::parse(ok).is_ok());
        }
        for bad in ["", "a\nb", "\u{0}", &"x".repeat(513)] {
            let err = RecordKey::parse(bad).unwrap_err();
            assert!(err.to_string().contains("invalid record key"), "{err}");
        }
    }
}
