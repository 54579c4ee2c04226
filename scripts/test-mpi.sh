#!/usr/bin/env bash
# The MPI backend's tests (cargo feature `mpi`): installs Open MPI and
# libclang when they are missing (apt-get, as root), builds with
# `--features mpi`, runs the MPI tests, both MPI examples on 1, 2 and 4
# ranks, and the killed-rank check: a rank killed with SIGKILL ends
# `mpirun` with a non-zero status within seconds, and `shmpar gc` then
# leaves no segment of the job behind. scripts/test.sh calls it; it also
# runs alone.
set -euo pipefail
cd "$(dirname "$0")/.."

have_mpi() { command -v mpirun >/dev/null && command -v mpicc >/dev/null; }
have_libclang() { ldconfig -p 2>/dev/null | grep -Eq 'libclang(-[0-9.]+)?\.so(\.[0-9]+)* '; }
if ! have_mpi || ! have_libclang; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "test-mpi.sh: Open MPI or libclang is missing; as root: apt-get install -y libopenmpi-dev openmpi-bin libclang-dev clang" >&2
        exit 1
    fi
    echo "test-mpi.sh: installing Open MPI and libclang"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenmpi-dev openmpi-bin libclang-dev clang >/dev/null
fi

# A /dev/shm of our own, as scripts/test.sh has (which already gives us one
# when it calls this script): the leftover check and `shmpar gc` then see
# this script's segments only, never other programs'.
if [ -z "${SHMPAR_TEST_PRIVATE_SHM:-}" ] && unshare -m true 2>/dev/null; then
    size="$(df -B1 --output=size /dev/shm | tail -1 | tr -d ' ')"
    exec env SHMPAR_TEST_PRIVATE_SHM=1 unshare -m sh -c \
        "mount -t tmpfs -o size=$size,mode=1777 tmpfs /dev/shm && exec \"\$0\" \"\$@\"" "$0" "$@"
fi

# Open MPI refuses to start as root without these; they change nothing else.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
target="${CARGO_TARGET_DIR:-target}"
leftovers() { ls /dev/shm | grep '^shmpar' | sort || true; }
before="$(leftovers)"

cargo clippy -q -p shmpar --features mpi --all-targets -- -D warnings
# The MPI tests start mpirun themselves (1, 2, 4 ranks; 4 and 3 ranks as
# several nodes), on this test binary.
cargo test -q -p shmpar --features mpi --lib mpi::

cargo build -q --release -p shmpar-examples --features mpi --example mpi_seed --example mpi_heat
cargo build -q --release -p shmpar-cli --bin shmpar
for example in mpi_seed mpi_heat; do
    for ranks in 1 2 4; do
        echo "example: mpirun -n $ranks $example"
        out="$(mpirun --oversubscribe -n "$ranks" "$target/release/examples/$example")"
        echo "$out"
        grep -q '^ok' <<<"$out" || { echo "test-mpi.sh: $example on $ranks ranks printed no ok line"; exit 1; }
    done
done

# The killed-rank check: a long mpi_heat job, one rank killed with SIGKILL.
# Killing rank 0 (its node's leader) leaves its segments for `shmpar gc`;
# killing another rank leaves the launcher to stop the leader, whose
# SIGTERM handler removes them; with one rank per node, every rank leads.
killed_rank() {
    local victim="$1" node_size="$2" mpirun_pid pid rank started ended status names
    SHMPAR_MPI_NODE_SIZE="$node_size" mpirun -x SHMPAR_MPI_NODE_SIZE --oversubscribe -n 2 \
        "$target/release/examples/mpi_heat" --steps 1000000000 >/dev/null 2>&1 &
    mpirun_pid=$!
    # Wait for the job's segments (two grids and a barrier per node).
    for _ in $(seq 600); do
        [ "$(comm -13 <(echo "$before") <(leftovers) | wc -l)" -ge 3 ] && break
        sleep 0.1
    done
    sleep 0.5
    names="$(comm -13 <(echo "$before") <(leftovers))"
    [ -n "$names" ] || { echo "test-mpi.sh: the job made no segments"; kill "$mpirun_pid"; exit 1; }
    for pid in $(pgrep -P "$mpirun_pid"); do
        rank="$(tr '\0' '\n' <"/proc/$pid/environ" | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')"
        [ "$rank" = "$victim" ] && kill -KILL "$pid"
    done
    started="$(date +%s%N)"
    # A hang fails here: mpirun still running after 60 s is stopped.
    for _ in $(seq 600); do
        kill -0 "$mpirun_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$mpirun_pid" 2>/dev/null || true
    status=0
    wait "$mpirun_pid" || status=$?
    ended="$(date +%s%N)"
    echo "killed rank $victim (nodes of $node_size): mpirun exited with $status after $(( (ended - started) / 1000000 )) ms"
    if [ "$status" -eq 0 ] || [ $(( (ended - started) / 1000000000 )) -ge 30 ]; then
        echo "test-mpi.sh: a killed rank must end mpirun with a non-zero status within seconds"
        exit 1
    fi
    "$target/release/shmpar" gc
    for name in $names; do
        if [ -e "/dev/shm/$name" ]; then
            echo "test-mpi.sh: $name survived shmpar gc"; exit 1
        fi
    done
}
killed_rank 0 2
killed_rank 1 2
killed_rank 1 1

new="$(comm -13 <(echo "$before") <(leftovers))"
if [ -n "$new" ]; then
    echo "segments left in /dev/shm by the MPI tests:"; echo "$new"
    exit 1
fi
echo "test-mpi.sh: all MPI tests passed and /dev/shm holds nothing new"
