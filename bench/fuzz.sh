#!/usr/bin/env bash
# A mutation-fuzzing campaign over the examples and test programs: each case goes through
# everything `aiic check --explain` does, code generation for every target and two steps on the
# interpreter and the CPU backend. Findings (panics, crashes, hangs) are written to
# fuzz/regressions/, which `cargo test` replays; the summary line is what bench/RESULTS.md records.
#
#   bench/fuzz.sh [CASES] [SEED] [extra aiic-fuzz options, e.g. --jobs 8 --timeout 60]
set -euo pipefail
cd "$(dirname "$0")/.."
cases="${1:-100000}"
seed="${2:-1}"
shift $(( $# > 2 ? 2 : $# ))
cargo build --release --locked -p aiic-fuzz
exec target/release/aiic-fuzz --cases "$cases" --seed "$seed" "$@"
