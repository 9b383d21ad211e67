# Guest job (run by guest-job.sh as `bash job.sh IN OUT`): runs e2e tests
# one by one from IN/plan.txt, lines of "DRIVER EXECUTABLE TEST", each
# test alone (libtest --exact) with the daemon's `[cgroup] driver` set to
# DRIVER (VORDR_E2E_CGROUP_DRIVER), the binaries from IN/bin and the test
# executables from IN/tests. Writes OUT/results.tsv (driver, executable,
# test, pass/fail/timeout/skipped/missing, seconds) and each test's output under
# OUT/logs/; exits 1 if any test did not pass.
set -u
IN="$1" OUT="$2"
export VORDR_BIN="$IN/bin/vordr"
export VORDR_E2E_TIME_SCALE="${VORDR_E2E_TIME_SCALE:-$(cat "$IN/time-scale" 2>/dev/null || echo 10)}"
PER_TEST="$(cat "$IN/per-test-timeout" 2>/dev/null || echo 600)"
# No warm pool unless a test asks for one: each pooled pod's netavark
# setup costs seconds under software emulation.
export VORDR_E2E_POOL_SIZE=0
export RUST_BACKTRACE=1 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p "$OUT/logs"
{
  echo "kernel: $(uname -r) $(cat /proc/cmdline)"
  echo "cgroup: $(stat -fc %T /sys/fs/cgroup), controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
  echo "systemd: $(systemctl --version | head -n1), state: $(systemctl is-system-running)"
  echo "runc: $(runc --version | head -n1)"
} >"$OUT/facts.txt" 2>&1
printf 'driver\texecutable\ttest\tresult\tseconds\n' >"$OUT/results.tsv"
failed=0
while read -r driver exe test; do
  [ -n "${test:-}" ] || continue
  case "$driver" in \#*) continue ;; esac
  log="$OUT/logs/$driver-$exe-$test.log"
  t0=$(date +%s.%N)
  VORDR_E2E_CGROUP_DRIVER="$driver" timeout --kill-after=10 "$PER_TEST" \
    "$IN/tests/$exe" --exact "$test" --test-threads 1 --nocapture >"$log" 2>&1
  rc=$?
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  if [ $rc -eq 0 ] && grep -q "^skipped" "$log"; then
    # The harness found no root or netavark: in this guest, a defect.
    result=skipped failed=1
  elif [ $rc -eq 0 ] && grep -q "test result: ok. 1 passed" "$log"; then
    result=pass
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    result=timeout failed=1
  elif [ $rc -eq 0 ]; then
    # Exit 0 without a pass: the filter matched nothing.
    result=missing failed=1
  else
    result=fail failed=1
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$driver" "$exe" "$test" "$result" "$secs" >>"$OUT/results.tsv"
  echo "$driver $exe::$test $result ${secs}s"
  # Leftovers a test left behind would spoil the next: list them (the
  # cgroups named *vordr* and everything below them).
  find /sys/fs/cgroup -name '*vordr*' -type d 2>/dev/null | grep -v vordr-guest-job |
    while read -r d; do find "$d" -type d; done | sort -u | head -n 20 | sed 's/^/  left: /'
done <"$IN/plan.txt"
exit $failed
