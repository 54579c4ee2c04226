//! Runnable examples for shmpar live in `examples/examples/`.
