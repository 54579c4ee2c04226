#!/usr/bin/env bash
# The test command: sets up what the tests need (a Python with NumPy for the
# interop tests), runs every test of the workspace, builds the docs with
# warnings as errors, and checks that nothing was left in /dev/shm.
set -euo pipefail
cd "$(dirname "$0")/.."

SHMPAR_PYTHON="$(scripts/setup-python.sh)"
export SHMPAR_PYTHON

# Run in a private mount namespace with a /dev/shm of our own (as large as
# the real one), so the leftover check below blames the tests only for what
# they left, never for other programs' segments. Where namespaces are not
# allowed, fall back to comparing the real /dev/shm before and after.
if [ -z "${SHMPAR_TEST_PRIVATE_SHM:-}" ] && unshare -m true 2>/dev/null; then
    size="$(df -B1 --output=size /dev/shm | tail -1 | tr -d ' ')"
    exec env SHMPAR_TEST_PRIVATE_SHM=1 unshare -m sh -c \
        "mount -t tmpfs -o size=$size,mode=1777 tmpfs /dev/shm && exec \"\$0\" \"\$@\"" "$0" "$@"
fi
if [ -n "${SHMPAR_TEST_PRIVATE_SHM:-}" ]; then
    echo "test.sh: running with a private /dev/shm"
fi

leftovers() { ls /dev/shm | grep '^shmpar' | sort || true; }
before="$(leftovers)"

# Every Rust test; none of them needs Python.
cargo test --workspace

# The NumPy interop tests (ignored in a plain `cargo test`: they need the
# Python set up above).
cargo test -p shmpar-tests-integration --test numpy_interop -- --ignored

# The Python package (PyO3): built into .venv as `pip install ./python`
# does, then its pytest suite.
scripts/test-python.sh

# The aliasing guarantee, checked where the optimizer would exploit it.
cargo test --release -p shmpar-core --test aliasing

# Every example checks its own result and exits non-zero if it is wrong.
# (The MPI examples need the `mpi` feature and mpirun: test-mpi.sh below.)
for example in examples/examples/*.rs; do
    case "$(basename "$example" .rs)" in mpi_*) continue ;; esac
    echo "example: $(basename "$example" .rs)"
    cargo run --release -q -p shmpar-examples --example "$(basename "$example" .rs)"
done

# The MPI backend: installs Open MPI and libclang when missing, runs its
# tests and both MPI examples on 1, 2 and 4 ranks, and the killed-rank check.
scripts/test-mpi.sh

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
