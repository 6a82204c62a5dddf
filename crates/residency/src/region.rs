//! Regions: where data rests and is processed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ResidencyError;

/// A region of a deployment, such as `global`, `us` or `row`.
///
/// A region name is 1 to 32 characters: lowercase ASCII letters, digits and dashes, starting with
/// a letter. It is used in paths (`<data>/<region>/store`), in SPIFFE ids and in rule ids, so the
/// alphabet is kept small on purpose.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(String);

impl Region {
    /// Parses and validates a region name.
    ///
    /// ```
    /// use domicile_residency::Region;
    /// assert_eq!(Region::parse("us")?.as_str(), "us");
    /// assert!(Region::parse("US").is_err());
    /// # Ok::<(), domicile_residency::ResidencyError>(())
    /// ```
    pub fn parse(value: &str) -> Result<Self, ResidencyError> {
        let refuse = |reason| {
            Err(ResidencyError::InvalidRegion {
                value: value.to_owned(),
                reason,
            })
        };
        if value.is_empty() {
            return refuse("it is empty");
        }
        if value.len() > 32 {
            return refuse("it is longer than 32 characters");
        }
        if !value.starts_with(|c: char| c.is_ascii_lowercase()) {
            return refuse("it must start with a lowercase letter");
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return refuse("only lowercase letters, digits and '-' are allowed");
        }
        Ok(Region(value.to_owned()))
    }

    /// The region's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl FromStr for Region {
    type Err = ResidencyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Region::parse(s)
    }
}

impl TryFrom<String> for Region {
    type Error = ResidencyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Region::parse(&value)
    }
}

impl From<Region> for String {
    fn from(region: Region) -> String {
        region.0
    }
}

impl AsRef<str> for Region {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_deployment_names() {
        for name in ["global", "us", "row", "eu-west-1", "a"] {
            assert_eq!(Region::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn refuses_bad_names_quoting_them() {
        for bad in ["", "US", "1us", "us west", "us/row", "-us", &"x".repeat(33)] {
            let err = Region::parse(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn display_honours_width() {
        assert_eq!(format!("[{:<6}]", Region::parse("us").unwrap()), "[us    ]");
    }

    #[test]
    fn serde_validates() {
        let r: Region = serde_json::from_str("\"row\"").unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"row\"");
        assert!(serde_json::from_str::<Region>("\"Row\"").is_err());
    }
}
