#!/usr/bin/env bash
# The test command: sets up what the tests need (a Python with NumPy for the
# interop tests), runs every test of the workspace, builds the docs with
# warnings as errors, and checks that nothing was left in /dev/shm.
set -euo pipefail
cd "$(dirname "$0")/.."

SHMPAR_PYTHON="$(scripts/setup-python.sh)"
export SHMPAR_PYTHON

leftovers() { ls /dev/shm | grep '^shmpar' | sort || true; }
before="$(leftovers)"

cargo test --workspace

# Every example checks its own result and exits non-zero if it is wrong.
for example in examples/examples/*.rs; do
    echo "example: $(basename "$example" .rs)"
    cargo run --release -q -p shmpar-examples --example "$(basename "$example" .rs)"
done

# The barrier and lock protocols, model-checked (own target dir: the cfg
# changes every crate's build).
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p shmpar-core --test loom_sync --release

RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

new="$(comm -13 <(echo "$before") <(leftovers))"
if [ -n "$new" ]; then
    echo "segments left in /dev/shm by the tests:"; echo "$new"
    exit 1
fi
echo "test.sh: all tests passed and /dev/shm holds nothing new"
