//! Runnable walkthroughs of domicile. Run one from the workspace root with
//! `cargo run --release --example NAME`; see the `examples/` folder for the list.
