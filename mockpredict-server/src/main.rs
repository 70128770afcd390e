//! The `mockpredict-server` binary (being built).
fn main() {}
