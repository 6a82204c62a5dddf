//! The recommender of domicile: implicit-feedback ALS and item-item models, top-k serving, evaluation, and model artifacts with provenance.
