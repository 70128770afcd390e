//! Benchmarks live in this package's `[[bench]]` entries.
