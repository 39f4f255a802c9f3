//! Criterion benchmarks live in `benches/`; see docs/benchmarks.md.
