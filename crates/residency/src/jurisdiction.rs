//! Jurisdictions: whose law governs a region or a principal.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ResidencyError;

/// Every officially assigned ISO 3166-1 alpha-2 code (249 of them), sorted for binary search.
const ASSIGNED: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

/// The 27 member states of the European Union.
const EU: [&str; 27] = [
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
];

/// The EEA states outside the EU.
const EEA_EXTRA: [&str; 3] = ["IS", "LI", "NO"];

/// An assigned ISO 3166-1 alpha-2 country code, always uppercase (`US`, `PR`, `DE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// Parses a country code. Lowercase input is accepted and normalised; unassigned codes
    /// (`XX`, `EU`, `UK`) are refused.
    ///
    /// ```
    /// use domicile_residency::CountryCode;
    /// assert_eq!(CountryCode::parse("pr")?.as_str(), "PR");
    /// assert!(CountryCode::parse("UK").is_err()); // the assigned code is GB
    /// # Ok::<(), domicile_residency::ResidencyError>(())
    /// ```
    pub fn parse(value: &str) -> Result<Self, ResidencyError> {
        let upper = value.to_ascii_uppercase();
        if upper.len() == 2 && ASSIGNED.binary_search(&upper.as_str()).is_ok() {
            let b = upper.as_bytes();
            Ok(CountryCode([b[0], b[1]]))
        } else {
            Err(ResidencyError::InvalidCountryCode {
                value: value.to_owned(),
            })
        }
    }

    /// The code as two uppercase letters.
    pub fn as_str(&self) -> &str {
        // Only ever built from an entry of ASSIGNED, which is ASCII.
        std::str::from_utf8(&self.0).expect("country codes are ASCII")
    }

    /// Every assigned code, in order.
    pub fn all() -> impl Iterator<Item = CountryCode> {
        ASSIGNED.iter().map(|c| {
            let b = c.as_bytes();
            CountryCode([b[0], b[1]])
        })
    }

    /// Whether this country belongs to the group.
    pub fn is_member_of(&self, group: JurisdictionGroup) -> bool {
        let code = self.as_str();
        match group {
            JurisdictionGroup::Eu => EU.contains(&code),
            JurisdictionGroup::Eea => EU.contains(&code) || EEA_EXTRA.contains(&code),
        }
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for CountryCode {
    type Err = ResidencyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CountryCode::parse(s)
    }
}

impl TryFrom<String> for CountryCode {
    type Error = ResidencyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        CountryCode::parse(&value)
    }
}

impl From<CountryCode> for String {
    fn from(code: CountryCode) -> String {
        code.as_str().to_owned()
    }
}

/// A named group of countries that acts as one jurisdiction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum JurisdictionGroup {
    /// The European Union (`EU`).
    Eu,
    /// The European Economic Area (`EEA`): the EU plus Iceland, Liechtenstein and Norway.
    Eea,
}

impl JurisdictionGroup {
    /// The group's wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            JurisdictionGroup::Eu => "EU",
            JurisdictionGroup::Eea => "EEA",
        }
    }
}

/// Whose law governs: one country, or a named group of countries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Jurisdiction {
    /// A single country.
    Country(CountryCode),
    /// A group such as the EU.
    Group(JurisdictionGroup),
}

impl Jurisdiction {
    /// Parses `US`, `de`, `EU` or `EEA`.
    ///
    /// ```
    /// use domicile_residency::{CountryCode, Jurisdiction};
    /// let eu = Jurisdiction::parse("EU")?;
    /// assert!(eu.covers(CountryCode::parse("FR")?));
    /// assert!(!eu.covers(CountryCode::parse("US")?));
    /// # Ok::<(), domicile_residency::ResidencyError>(())
    /// ```
    pub fn parse(value: &str) -> Result<Self, ResidencyError> {
        match value.to_ascii_uppercase().as_str() {
            "EU" => Ok(Jurisdiction::Group(JurisdictionGroup::Eu)),
            "EEA" => Ok(Jurisdiction::Group(JurisdictionGroup::Eea)),
            _ => CountryCode::parse(value)
                .map(Jurisdiction::Country)
                .map_err(|_| ResidencyError::InvalidJurisdiction {
                    value: value.to_owned(),
                }),
        }
    }

    /// Whether a country falls under this jurisdiction.
    pub fn covers(&self, country: CountryCode) -> bool {
        match self {
            Jurisdiction::Country(c) => *c == country,
            Jurisdiction::Group(g) => country.is_member_of(*g),
        }
    }

    /// The wire name: the country code or the group's name.
    pub fn as_str(&self) -> &str {
        match self {
            Jurisdiction::Country(c) => c.as_str(),
            Jurisdiction::Group(g) => g.as_str(),
        }
    }
}

impl fmt::Display for Jurisdiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Jurisdiction {
    type Err = ResidencyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Jurisdiction::parse(s)
    }
}

impl TryFrom<String> for Jurisdiction {
    type Error = ResidencyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Jurisdiction::parse(&value)
    }
}

impl From<Jurisdiction> for String {
    fn from(j: Jurisdiction) -> String {
        j.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_complete() {
        assert!(ASSIGNED.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(CountryCode::all().count(), 249);
        for code in EU.iter().chain(EEA_EXTRA.iter()) {
            assert!(CountryCode::parse(code).is_ok(), "{code}");
        }
    }

    #[test]
    fn refuses_unassigned_codes_quoting_them() {
        for bad in ["", "U", "USA", "XX", "UK", "EU", "1A", "ü"] {
            let err = CountryCode::parse(bad).unwrap_err();
            assert_eq!(
                err,
                ResidencyError::InvalidCountryCode {
                    value: bad.to_owned()
                }
            );
            assert!(err.to_string().contains(&format!("{bad:?}")));
        }
    }

    #[test]
    fn groups() {
        let de = CountryCode::parse("DE").unwrap();
        let no = CountryCode::parse("NO").unwrap();
        assert!(de.is_member_of(JurisdictionGroup::Eu));
        assert!(!no.is_member_of(JurisdictionGroup::Eu));
        assert!(no.is_member_of(JurisdictionGroup::Eea));
        assert_eq!(Jurisdiction::parse("eea").unwrap().to_string(), "EEA");
        let err = Jurisdiction::parse("Mars").unwrap_err();
        assert!(err.to_string().contains("\"Mars\""));
    }

    #[test]
    fn serde_round_trip() {
        let j: Jurisdiction = serde_json::from_str("\"US\"").unwrap();
        assert_eq!(j, Jurisdiction::Country(CountryCode::parse("US").unwrap()));
        assert_eq!(serde_json::to_string(&j).unwrap(), "\"US\"");
        assert!(serde_json::from_str::<CountryCode>("\"ZZ\"").is_err());
    }
}
