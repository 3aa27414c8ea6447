#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time.
#
#   fuzz/run.sh                    every target, 60 s each
#   fuzz/run.sh 300                every target, 300 s each
#   fuzz/run.sh 30 decode_packet   one target, 30 s
#
# cargo fuzz needs nightly-only compiler flags (-Z sanitizer=address, ...). This machine's toolchain is
# stable and no other can be fetched, so the stable compiler is told to accept them with RUSTC_BOOTSTRAP=1
# (set FUZZ_TOOLCHAIN=nightly to use a nightly toolchain instead, where one is installed).
# Corpora grow under fuzz/corpus/<target>, crashes land in fuzz/artifacts/<target>; both are git-ignored.
set -euo pipefail

cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz not found: installing it from crates.io" >&2
    cargo install cargo-fuzz --locked
fi

toolchain=()
if [[ "${FUZZ_TOOLCHAIN:-stable}" == nightly ]]; then
    toolchain=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
fi

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
fi

status=0
for target in "${targets[@]}"; do
    echo "== fuzzing $target for ${seconds}s" >&2
    mkdir -p "corpus/$target"
    if ! cargo "${toolchain[@]}" fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds"; then
        echo "== $target FAILED: see fuzz/artifacts/$target" >&2
        status=1
    fi
done
exit "$status"
