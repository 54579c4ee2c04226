#!/usr/bin/env bash
# The full fault, load and bad-input suite (issue 6): every scenario of
# shmpar-testdriver at full counts (release build), the header fuzz at a
# million cases per property, the loom model check of the barrier and lock,
# and Miri where it is installed. Prints one summary line per scenario and
# regenerates the results table in docs/reliability.md.
#
#   scripts/reliability.sh            # full counts (about 10 minutes on 2 cores)
#   QUICK=1 scripts/reliability.sh    # small counts, to try the script
set -uo pipefail
cd "$(dirname "$0")/.."

quick="${QUICK:-}"
n() { if [ -n "$quick" ]; then echo "$2"; else echo "$1"; fi; }
export RUST_BACKTRACE=0
export SHMPAR_PYTHON="${SHMPAR_PYTHON:-$(scripts/setup-python.sh 2>/dev/null || echo python3)}"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
summaries="$out/summaries"
: >"$summaries"
status=0

cargo build --release -p shmpar-tests-integration --bin shmpar-testdriver --quiet || exit 1
driver="${CARGO_TARGET_DIR:-target}/release/shmpar-testdriver"

# Names the suite creates (other programs may create and remove shmpar_*
# segments meanwhile; the pools' random-named control segments are checked
# by every trial, by creator pid).
leftovers() { ls /dev/shm | grep -E '^shmpar_(rt|t)_' | sort || true; }
before="$(leftovers)"

scenario() {
    local started=$SECONDS
    echo ">> shmpar-testdriver $*" >&2
    if ! timeout 1800 "$driver" "$@" >"$out/stdout" 2>"$out/stderr"; then
        status=1
        grep '^FAIL' "$out/stderr" | head -20 >&2
    fi
    cat "$out/stdout" >&2
    if grep -q '^scenario=' "$out/stdout"; then
        grep '^scenario=' "$out/stdout" | tail -1 | sed "s/\$/ wall_s=$((SECONDS - started))/" >>"$summaries"
    else
        status=1
        tail -5 "$out/stderr" >&2
        echo "scenario=$1 trials=? ok=CRASHED wall_s=$((SECONDS - started))" >>"$summaries"
    fi
}

scenario functional --start fork
scenario functional --start spawn
scenario worker-death --trials "$(n 500 20)"
scenario kernel-fault --trials "$(n 300 12)"
scenario barrier-release --trials "$(n 50 3)"
scenario unequal-barriers --trials "$(n 100 3)"
scenario spawn-without-init
scenario coordinator-death --trials "$(n 100 3)"
scenario signals --trials "$(n 100 4)"
scenario exhaustion
scenario permissions
scenario gc-race --seconds "$(n 60 3)"
scenario load --coordinators 4 --seconds "$(n 120 3)"
scenario hostile --trials "$(n 20000 300)"
scenario deadline --start fork --trials "$(n 50 2)"
scenario deadline --start spawn --trials "$(n 50 2)"

# Round 2 (issue 10): liveness across namespaces, signal-safe creation,
# hostile files in /dev/shm, the directory-swap race. Cargo tests with
# their race counts raised; each test's name becomes a scenario line.
round2() {
    local test="$1" trials="$2"; shift 2
    local started=$SECONDS
    echo ">> cargo test --test $test ($trials trials)" >&2
    if env "$@" cargo test --release -q -p shmpar-tests-integration --test "$test" -- --test-threads 1 \
        >"$out/$test" 2>&1; then
        local passed
        passed="$(grep -Eo '[0-9]+ passed' "$out/$test" | awk '{s+=$1} END {print s+0}')"
        echo "scenario=$test tests=$passed trials=$trials ok=$trials wall_s=$((SECONDS - started))" >>"$summaries"
    else
        status=1
        grep -E 'FAILED|panicked' "$out/$test" | head -20 >&2
        echo "scenario=$test trials=$trials ok=FAILED wall_s=$((SECONDS - started))" >>"$summaries"
    fi
}
round2 liveness 1
round2 signal_creation "$(n 600 50)" SHMPAR_SIGNAL_TRIALS="$(n 600 50)"
round2 hostile_fs "$(n 2000 100)" SHMPAR_SWAP_TRIALS="$(n 2000 100)" SHMPAR_DIRSWAP_TRIALS="$(n 2000 100)"

# Header fuzz: a million cases per property.
fuzz_cases="$(n 1000000 5000)"
started=$SECONDS
echo ">> header fuzz, $fuzz_cases cases per property" >&2
SHMPAR_FUZZ_CASES="$fuzz_cases" cargo test --release -q -p shmpar-core --test fuzz_header \
    -- --nocapture --test-threads 2 >"$out/fuzz" 2>&1
# The harness prints progress dots on the same lines: take each summary from anywhere.
grep -o 'scenario=fuzz[^.]*' "$out/fuzz" | sed "s/\$/ wall_s=$((SECONDS - started))/" >>"$summaries"
for property in fuzz-forged-headers fuzz-random-headers; do
    grep -q "scenario=$property" "$out/fuzz" || {
        status=1
        echo "scenario=$property trials=$fuzz_cases ok=FAILED" >>"$summaries"
    }
done
# Known bugs reproduced by fixed cases in the same file.
for t in $(grep -o '^[a-z_0-9]* --- FAILED' "$out/fuzz" | cut -d' ' -f1); do
    status=1
    echo "scenario=repro:$t trials=1 ok=0 detail=see_core/tests/fuzz_header.rs" >>"$summaries"
done
grep -q 'FAILED' "$out/fuzz" && tail -30 "$out/fuzz" >&2

# The barrier and lock protocols under loom.
started=$SECONDS
echo ">> loom model check" >&2
if RUSTFLAGS="--cfg loom" cargo test -q -p shmpar-core --test loom_sync --release >"$out/loom" 2>&1; then
    tests="$(grep -Eo '[0-9]+ passed' "$out/loom" | awk '{s+=$1} END {print s+0}')"
    echo "scenario=loom-barrier-lock trials=$tests ok=$tests wall_s=$((SECONDS - started))" >>"$summaries"
else
    status=1
    tail -30 "$out/loom" >&2
    echo "scenario=loom-barrier-lock trials=? ok=FAILED wall_s=$((SECONDS - started))" >>"$summaries"
fi

# Miri, where the component is installed (it cannot be downloaded here).
if rustup +nightly component list --installed 2>/dev/null | grep -q '^miri'; then
    started=$SECONDS
    if cargo +nightly miri test -q -p shmpar-core --lib header >"$out/miri" 2>&1; then
        echo "scenario=miri-header trials=1 ok=1 wall_s=$((SECONDS - started))" >>"$summaries"
    else
        status=1
        echo "scenario=miri-header trials=1 ok=0 wall_s=$((SECONDS - started))" >>"$summaries"
    fi
else
    echo "scenario=miri-header trials=0 ok=0 detail=miri_not_installed" >>"$summaries"
fi

new="$(comm -13 <(echo "$before") <(leftovers))"
if [ -n "$new" ]; then
    echo "segments left in /dev/shm by the suite:" >&2
    echo "$new" >&2
    status=1
fi

echo
cat "$summaries"

# Regenerate the table between the markers of docs/reliability.md.
if [ -z "$quick" ]; then
    table="$out/table"
    {
        echo "Run: \`scripts/reliability.sh\` on $(date -u +%Y-%m-%d), $(nproc) CPUs, $(uname -r), commit $(git rev-parse --short HEAD)."
        echo
        echo "| scenario | trials | ok | leaks | zombies | hangs | details |"
        echo "|---|---:|---:|---:|---:|---:|---|"
        while read -r line; do
            get() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
            rest="$(echo "$line" | tr ' ' '\n' | grep -Ev '^(scenario|trials|ok|leaks|zombies|hangs)=' | tr '\n' ' ' | sed 's/ $//; s/|/\\|/g')"
            echo "| $(get scenario) | $(get trials) | $(get ok) | $(get leaks) | $(get zombies) | $(get hangs) | $rest |"
        done <"$summaries"
    } >"$table"
    python3 - "$table" docs/reliability.md <<'PY'
import re, sys
table = open(sys.argv[1]).read().rstrip("\n")
doc = open(sys.argv[2]).read()
start, end = "<!-- results:begin -->", "<!-- results:end -->"
head, rest = doc.split(start, 1)
_, tail = rest.split(end, 1)
open(sys.argv[2], "w").write(f"{head}{start}\n{table}\n{end}{tail}")
PY
    echo "docs/reliability.md updated" >&2
fi
exit $status
