#!/usr/bin/env bash
# The whole `aiic run` as a user runs it (start-up, init, first force pass, law measurements,
# steps, report) against the steps alone (`aiic bench`, wall clock), for each case and target.
# Prints a Markdown table for bench/RESULTS.md. The goal of a case: the whole run takes at most
# 1.5 times its steps plus one second of start-up, with the default law measurement (start and
# end) and with `--check-every 10`.
#
#   bench/run_scale.sh TARGETS [CASE ...]
#       TARGETS  comma-separated, e.g. cuda or cpu,interp
#       CASE     EXAMPLE:AGENT=N, e.g. nbody:Body=65536 (default: the cases of the H200 goal)
#   AIIC=path/to/aiic (default target/release/aiic), STEPS=100
set -euo pipefail
cd "$(dirname "$0")/.."
aiic="${AIIC:-target/release/aiic}"
steps="${STEPS:-100}"
targets="${1:?give the targets, e.g. cuda}"
shift
cases=("$@")
if ((${#cases[@]} == 0)); then
  cases=(nbody:Body=65536 nbody:Body=262144 lj_gas:Atom=1000000)
fi

now() { date +%s.%N; }
# Seconds a command takes as a whole process; its stderr goes to the log.
timed() {
  local t0 t1
  t0=$(now)
  "$@" >/dev/null 2>>"$log" || { echo "failed: $*" >&2; tail -5 "$log" >&2; return 1; }
  t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}

log=$(mktemp)
echo "| example | agents | target | $steps steps alone (s) | whole run (s) | with --check-every 10 (s) | whole / (1.5 × steps + 1 s) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for case in "${cases[@]}"; do
  example="${case%%:*}"
  count="${case#*:}"
  file="examples/$example.aii"
  for target in ${targets//,/ }; do
    # Steps per second on the wall clock (`aiic bench` prints the rate fourth from the end).
    rate=$("$aiic" bench "$file" --target "$target" --count "$count" --seconds 2 2>>"$log" | awk '/ wall$/ { r = $(NF-3) } END { print r }') || true
    if [ -z "$rate" ]; then
      echo "| $example | ${count#*=} | $target | failed: $(tail -1 "$log") | | | |"
      continue
    fi
    alone=$(awk -v r="$rate" -v s="$steps" 'BEGIN { printf "%.3f", s / r }')
    whole=$(timed "$aiic" run "$file" --target "$target" --count "$count" --steps "$steps") || continue
    checked=$(timed "$aiic" run "$file" --target "$target" --count "$count" --steps "$steps" --check-every 10) || continue
    worst=$(awk -v a="$alone" -v w="$whole" -v c="$checked" 'BEGIN { m = w > c ? w : c; printf "%.2f", m / (1.5 * a + 1) }')
    echo "| $example | ${count#*=} | $target | $alone | $whole | $checked | $worst |"
  done
done
rm -f "$log"
