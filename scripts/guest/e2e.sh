#!/usr/bin/env bash
# Runs e2e tests inside the cgroup v2 guest (`just test-cgroup2`):
#   e2e.sh PLAN [TIMEOUT_SECONDS]
# PLAN lists "DRIVER EXECUTABLE TEST" lines (EXECUTABLE: a tests/e2e/tests
# file's name, TEST: a test function in it). Builds the daemon, the shim and
# the e2e test executables on the host (debug), fetches QEMU and builds the
# guest image if needed, shares the binaries read-only with the guest, boots
# it, runs the plan (jobs/e2e.sh), prints a pass/fail line per test and
# returns 0 only if all passed. Results stay in $GUEST_DIR/out-NAME/ (NAME:
# the plan's file name): results.tsv, logs/, console.log, journal.txt.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
# One compound command: bash reads it whole before running it, so an edit
# of this file during a run cannot change what the run does.
{
guest_require_root
PLAN="$1" LIMIT="${2:-2400}"
[ -f "$PLAN" ] || guest_die "no plan file $PLAN"
name="$(basename "$PLAN" .txt)"
cd "$GUEST_REPO"
t0=$(guest_now)
"$(dirname "$0")/fetch-qemu.sh"
"$(dirname "$0")/build-image.sh"
guest_log "guest ready in $(guest_since "$t0") s"

t1=$(guest_now)
cargo build -q -p vordr -p vordr-shim
mapfile -t exes < <(awk '!/^#/ && NF == 3 { print $2 }' "$PLAN" | sort -u)
IN="$(mktemp -d "$GUEST_DIR/in-$name.XXXXXX")"
OUT="$GUEST_DIR/out-$name"
trap 'rm -rf "$IN"' EXIT
mkdir -p "$IN/bin" "$IN/tests"
# The test executables' paths, from cargo's JSON messages.
cargo test -q -p vordr-e2e --no-run --message-format=json 2>/dev/null |
  jq -r 'select(.reason == "compiler-artifact" and .executable != null and
    .target.kind == ["test"]) | "\(.target.name) \(.executable)"' >"$IN/artifacts"
for exe in "${exes[@]}"; do
  path="$(awk -v n="$exe" '$1 == n { print $2 }' "$IN/artifacts" | tail -n1)"
  [ -n "$path" ] || guest_die "no e2e test executable named $exe"
  # Hard links where the target dir allows (no copy of ~100 MB each).
  ln "$path" "$IN/tests/$exe" 2>/dev/null || cp "$path" "$IN/tests/$exe"
done
for b in vordr containerd-shim-vordr-v1; do
  ln "target/debug/$b" "$IN/bin/$b" 2>/dev/null || cp "target/debug/$b" "$IN/bin/$b"
done
grep -v '^#' "$PLAN" >"$IN/plan.txt"
echo "${VORDR_E2E_TIME_SCALE:-10}" >"$IN/time-scale"
echo "${VORDR_GUEST_TEST_TIMEOUT:-600}" >"$IN/per-test-timeout"
guest_log "host build and staging took $(guest_since "$t1") s"

rm -rf "$OUT"
rc=0
"$(dirname "$0")/run.sh" "$(dirname "$0")/jobs/e2e.sh" "$IN" "$OUT" "$LIMIT" || rc=$?
echo "--- $name: $(cat "$OUT/facts.txt" 2>/dev/null | sed -n 2p)"
if [ -f "$OUT/results.tsv" ]; then
  column -t -s $'\t' "$OUT/results.tsv"
  # The first lines of each failure's panic, so the log need not be opened.
  awk -F'\t' 'NR > 1 && $4 != "pass" { print $1 "-" $2 "-" $3 }' "$OUT/results.tsv" |
    while read -r f; do
      echo "--- $f:"
      grep -m1 -A6 -E "panicked at|^error|timed out" "$OUT/logs/$f.log" | cut -c1-400 || tail -n 5 "$OUT/logs/$f.log"
    done
fi
guest_log "$name: exit $rc in $(guest_since "$t0") s (results: $OUT)"
exit "$rc"
}
