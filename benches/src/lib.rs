//! Benchmarks live in `benches/*.rs`; see docs/PERFORMANCE.md.
