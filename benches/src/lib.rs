//! Criterion benchmarks for shmpar live in `benches/benches/`.
