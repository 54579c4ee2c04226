#!/usr/bin/env bash
# Runs the comparison harness from a prebuilt release binary on a machine
# without cargo or network (the 16-core device), writing results.json,
# benchmarks.md and img/*.svg into OUT. Python parts are skipped unless a
# .venv with NumPy exists there.
#
# Here:   cargo build --release -p shmpar-benches --bin harness -p shmpar-cli
#         (carry target/release/harness and target/release/shmpar: the harness
#         runs `shmpar compare` beside its own headline when the tool sits
#         next to it)
# There:  benches/harness/device.sh "$OUT" [extra harness flags]
# Back here: target/release/harness --merge-device OUT/results.json --device-label "16-core device"
set -euo pipefail
out="${1:?usage: device.sh OUT_DIR [harness flags]}"
shift
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${HARNESS:-$root/target/release/harness}"
flags=()
if [ ! -x "$root/.venv/bin/python" ] || ! "$root/.venv/bin/python" -c 'import numpy' 2>/dev/null; then
    flags+=(--no-python)
fi
cd "$root"
exec "$bin" --workers 1,2,4,8,16 --headline-workers 16 --out "$out" --label "$(nproc)-CPU device" "${flags[@]}" "$@"
