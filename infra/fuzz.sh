#!/usr/bin/env bash
# make fuzz [FUZZ_SECS=60] [FUZZ_TARGETS="envelope token ..."]: runs every cargo fuzz
# target (fuzz/fuzz_targets) for FUZZ_SECS seconds each, on the nightly toolchain, starting
# from the seeds in fuzz/seeds and the corpus earlier runs left in fuzz/corpus. Prints one
# FUZZ line per target (executions, corpus size, findings) and fails if any target found a
# crash; the crashing input is kept in fuzz/artifacts/<target>/ (turn it into a regression
# test beside the code it broke, then delete it).
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECS="${FUZZ_SECS:-60}"
TARGETS="${FUZZ_TARGETS:-envelope token upstream_hmac standard_webhooks stream_image}"

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: installing the nightly toolchain (cargo fuzz needs -Z sanitizer flags)"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
fi

# One set of versions: the fuzz workspace resolves from the main lock file.
cp Cargo.lock fuzz/Cargo.lock

echo "== building the fuzz targets (nightly, address sanitizer)"
(cd fuzz && cargo +nightly fuzz build)

failed=0
summary=()
for target in $TARGETS; do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    cp -n fuzz/seeds/"$target"/* "$corpus"/ 2>/dev/null || true
    log="fuzz/artifacts/$target.log"
    echo "== fuzzing $target for ${FUZZ_SECS}s"
    set +e
    (cd fuzz && cargo +nightly fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$FUZZ_SECS" -print_final_stats=1 -max_len=8192) >"$log" 2>&1
    code=$?
    set -e
    runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -1 | grep -Eo '[0-9]+' || true)
    [ -n "$runs" ] || runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1 || echo "?")
    corpus_n=$(find "$corpus" -type f | wc -l)
    crashes=$(find "fuzz/artifacts/$target" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) | wc -l)
    if [ "$code" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        failed=1
        echo "   $target FAILED (exit $code); see $log and fuzz/artifacts/$target/"
        grep -E 'panicked|ERROR|SUMMARY' "$log" | head -5 || true
    fi
    summary+=("FUZZ $target: ${runs} executions in ${FUZZ_SECS}s, corpus ${corpus_n}, findings ${crashes}")
done

echo
printf '%s\n' "${summary[@]}"
exit "$failed"
