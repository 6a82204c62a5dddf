//! EASE's hyper-parameters.

use serde::{Deserialize, Serialize};

use crate::EaseError;

/// EASE's hyper-parameters; as settings JSON, every key is optional (`{}` is the defaults) and
/// an unknown key is an error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EaseConfig {
    /// The L2 penalty λ on `B` (added to the diagonal of the Gram matrix). Steck used 200–1000
    /// on data sets of 10⁵–10⁷ users; smaller data wants less.
    pub lambda: f64,
    /// The most items EASE accepts: training inverts a dense `n × n` matrix, about `12·n²`
    /// bytes and `n³` floating-point operations (10,000 items: 1.2 GB). More is
    /// [`EaseError::TooManyItems`], checked before anything is allocated.
    pub max_items: usize,
    /// Model only the `n` items with the most users (ties: lower index), and never recommend the
    /// rest: a deliberate cut for a catalogue larger than [`EaseConfig::max_items`]. `None`:
    /// every item with at least one interaction.
    pub top_items: Option<usize>,
    /// Train on a binary matrix (`x_ui = 1` for every observed pair, as in the paper) rather than
    /// on the platform's confidence weights.
    pub binary: bool,
    /// Worker threads (0: one per core).
    pub threads: usize,
}

impl Default for EaseConfig {
    fn default() -> Self {
        EaseConfig {
            lambda: 200.0,
            max_items: 10_000,
            top_items: None,
            binary: true,
            threads: 0,
        }
    }
}

impl EaseConfig {
    /// Parses settings JSON (`null` or `{}`: the defaults) and checks every value.
    pub fn from_settings(settings: &serde_json::Value) -> Result<EaseConfig, EaseError> {
        let config: EaseConfig = if settings.is_null() {
            EaseConfig::default()
        } else {
            serde_json::from_value(settings.clone())
                .map_err(|e| EaseError::Settings(e.to_string()))?
        };
        config.check()?;
        Ok(config)
    }

    /// Checks every value is in its range.
    pub fn check(&self) -> Result<(), EaseError> {
        if !(self.lambda.is_finite() && self.lambda > 0.0) {
            return Err(EaseError::InvalidSetting {
                name: "lambda",
                value: self.lambda.to_string(),
                reason: "expected a finite number above 0 (the Gram matrix must be invertible)",
            });
        }
        if self.max_items == 0 {
            return Err(EaseError::InvalidSetting {
                name: "max_items",
                value: "0".into(),
                reason: "expected at least 1",
            });
        }
        if self.top_items == Some(0) {
            return Err(EaseError::InvalidSetting {
                name: "top_items",
                value: "0".into(),
                reason: "expected at least 1, or null for every item",
            });
        }
        Ok(())
    }

    /// The settings JSON of this configuration.
    pub fn to_settings(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("an EASE configuration always serialises")
    }
}
