//! EASE's errors.

/// Why EASE refused to train or to load its parameters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EaseError {
    /// More items than [`crate::EaseConfig::max_items`]: the dense inverse would not fit.
    #[error(
        "EASE would model {items} items, more than its cap of {max} (a dense {items} × {items} \
         inverse); raise max_items if the memory is there (about 12·n² bytes), or set top_items \
         to model only the most popular items"
    )]
    TooManyItems {
        /// The items it was asked to model.
        items: usize,
        /// The cap.
        max: usize,
    },
    /// The settings are not an EASE configuration (an unknown key, a wrong type).
    #[error("invalid EASE settings: {0}")]
    Settings(String),
    /// A setting out of its range.
    #[error("invalid EASE setting {name} = {value}: {reason}")]
    InvalidSetting {
        /// The setting.
        name: &'static str,
        /// The value given.
        value: String,
        /// The accepted range.
        reason: &'static str,
    },
    /// No item has an interaction.
    #[error("no item has an interaction to train EASE on")]
    NoItems,
    /// `G + λI` was not numerically positive definite (λ too small for f64 against the data's
    /// scale).
    #[error(
        "the regularised Gram matrix is not positive definite at column {column}; raise lambda"
    )]
    NotPositiveDefinite {
        /// The column where the factorisation failed.
        column: usize,
    },
    /// The worker pool could not be built.
    #[error("cannot start {threads} worker threads: {reason}")]
    Threads {
        /// The threads asked for.
        threads: usize,
        /// rayon's reason.
        reason: String,
    },
    /// Parameters bytes that are not EASE's, or inconsistent with the catalogue.
    #[error("corrupt EASE parameters: {0}")]
    Corrupt(String),
}
