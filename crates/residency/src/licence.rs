//! A held export licence, as a caller presents it to meet an `ExportLicence` obligation.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Obligation, ResidencyError};

/// An export licence a caller holds: the export-control regime, the controlled item (its number
/// in the regime's catalogue, `21`) and the id the licensing authority gave it. Written
/// `REGIME/ITEM/LICENCE-ID`; every part is checked when it is built, so an empty or free-form
/// reference cannot exist.
///
/// A licence meets an [`Obligation::ExportLicence`] only if its regime is the obligation's and
/// its item is the obligation's item number ([`check`](Self::check)); the Gate records the
/// licence it relied on in the audit entry.
///
/// ```
/// use domicile_residency::{ExportLicence, Obligation};
///
/// let held: ExportLicence = "CN-TECH-EXPORT-CATALOGUE-2020/21/MOFCOM-2026-0042".parse()?;
/// let required = Obligation::ExportLicence {
///     regime: "CN-TECH-EXPORT-CATALOGUE-2020".into(),
///     item: "21: personalized information push service technology based on data analysis".into(),
/// };
/// held.check(&required)?;
/// assert_eq!(held.licence_id(), "MOFCOM-2026-0042");
///
/// let other: ExportLicence = "US-EAR/5D002/LIC-1".parse()?;
/// assert!(other.check(&required).is_err());
/// assert!("".parse::<ExportLicence>().is_err());
/// assert!("CN-TECH-EXPORT-CATALOGUE-2020/21/".parse::<ExportLicence>().is_err());
/// Ok::<(), domicile_residency::ResidencyError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ExportLicence {
    regime: String,
    item: String,
    licence_id: String,
}

fn invalid(value: &str, reason: &'static str) -> ResidencyError {
    ResidencyError::InvalidLicence {
        value: value.to_owned(),
        reason,
    }
}

/// `1..=max` characters, the first an uppercase letter or digit, the rest uppercase letters,
/// digits, `-` and `.`.
fn well_formed(part: &str, max: usize) -> bool {
    (1..=max).contains(&part.len())
        && part
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && part
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// The number of a controlled item as a policy names it (`21: personalized …` → `21`).
fn item_number(item: &str) -> &str {
    item.split_once(':').map_or(item, |(n, _)| n).trim()
}

impl ExportLicence {
    /// A licence under `regime` (uppercase letters, digits, `-`, `.`; at most 64), for the
    /// controlled item numbered `item` (at most 16), with the authority's `licence_id` (at most
    /// 64).
    pub fn new(regime: &str, item: &str, licence_id: &str) -> Result<Self, ResidencyError> {
        let text = format!("{regime}/{item}/{licence_id}");
        if !well_formed(regime, 64) {
            return Err(invalid(
                &text,
                "the regime is 1-64 uppercase letters, digits, '-' and '.'",
            ));
        }
        if !well_formed(item, 16) {
            return Err(invalid(&text, "the item is its number in the regime's catalogue: 1-16 uppercase letters, digits, '-' and '.'"));
        }
        if !well_formed(licence_id, 64) {
            return Err(invalid(
                &text,
                "the licence id is 1-64 uppercase letters, digits, '-' and '.'",
            ));
        }
        Ok(ExportLicence {
            regime: regime.to_owned(),
            item: item.to_owned(),
            licence_id: licence_id.to_owned(),
        })
    }

    /// The export-control regime.
    pub fn regime(&self) -> &str {
        &self.regime
    }

    /// The controlled item's number.
    pub fn item(&self) -> &str {
        &self.item
    }

    /// The id the licensing authority gave the licence.
    pub fn licence_id(&self) -> &str {
        &self.licence_id
    }

    /// `Ok` if this licence meets `required`, an [`Obligation::ExportLicence`]: the same regime
    /// and the same item number. Any other obligation is not met by a licence.
    pub fn check(&self, required: &Obligation) -> Result<(), ResidencyError> {
        let mismatch = |reason: String| ResidencyError::LicenceDoesNotCover {
            licence: self.to_string(),
            reason,
        };
        match required {
            Obligation::ExportLicence { regime, item } => {
                if *regime != self.regime {
                    return Err(mismatch(format!("the policy requires regime {regime}")));
                }
                if item_number(item) != self.item {
                    return Err(mismatch(format!(
                        "the policy requires item {} under {regime}",
                        item_number(item)
                    )));
                }
                Ok(())
            }
            other => Err(mismatch(format!("{other} is not met by a licence"))),
        }
    }
}

impl fmt::Display for ExportLicence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.regime, self.item, self.licence_id)
    }
}

impl FromStr for ExportLicence {
    type Err = ResidencyError;
    /// Parses `REGIME/ITEM/LICENCE-ID`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(regime), Some(item), Some(id)) => ExportLicence::new(regime, item, id),
            _ => Err(invalid(
                s,
                "an export licence is written REGIME/ITEM/LICENCE-ID",
            )),
        }
    }
}

impl TryFrom<String> for ExportLicence {
    type Error = ResidencyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<ExportLicence> for String {
    fn from(licence: ExportLicence) -> String {
        licence.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn required() -> Obligation {
        Obligation::ExportLicence {
            regime: "CN-TECH-EXPORT-CATALOGUE-2020".into(),
            item: "21: personalized information push service technology".into(),
        }
    }

    #[test]
    fn a_licence_meets_only_its_own_regime_and_item() {
        let ok: ExportLicence = "CN-TECH-EXPORT-CATALOGUE-2020/21/MOFCOM-1".parse().unwrap();
        ok.check(&required()).unwrap();
        for bad in [
            "CN-TECH-EXPORT-CATALOGUE-2008/21/MOFCOM-1",
            "CN-TECH-EXPORT-CATALOGUE-2020/22/MOFCOM-1",
            "US-EAR/21/MOFCOM-1",
        ] {
            let licence: ExportLicence = bad.parse().unwrap();
            let err = licence.check(&required()).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
        assert!(ok.check(&Obligation::Pseudonymize).is_err());
    }

    #[test]
    fn a_reference_that_is_not_a_licence_is_refused() {
        for bad in [
            "",
            "x",
            "CN/21",
            "CN//L-1",
            "/21/L-1",
            "CN/21/",
            "cn/21/L-1",
            "CN/21/L 1",
            "CN/21/L-1/extra",
            "CN/21/-L",
        ] {
            let err = bad.parse::<ExportLicence>().unwrap_err();
            assert!(
                matches!(err, ResidencyError::InvalidLicence { .. }),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn text_and_json_round_trip() {
        let l =
            ExportLicence::new("CN-TECH-EXPORT-CATALOGUE-2020", "21", "MOFCOM-2026-0042").unwrap();
        assert_eq!(l.to_string().parse::<ExportLicence>().unwrap(), l);
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(
            json,
            "\"CN-TECH-EXPORT-CATALOGUE-2020/21/MOFCOM-2026-0042\""
        );
        assert_eq!(serde_json::from_str::<ExportLicence>(&json).unwrap(), l);
        assert!(serde_json::from_str::<ExportLicence>("\"x\"").is_err());
    }
}
