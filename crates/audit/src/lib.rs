//! The tamper-evident access log of domicile: RFC 6962 Merkle tree, C2SP signed checkpoints, proofs, witnesses and offline verification.
