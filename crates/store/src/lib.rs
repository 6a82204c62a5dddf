//! Sealed records for domicile: envelope encryption, per-subject data keys, crypto-shredding, key rotation and residency-checked placement, on sled.
