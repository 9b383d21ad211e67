#!/usr/bin/env bash
# critest's runtime specs against Vordr inside the cgroup v2 guest (by
# hand, not in CI: `just critest-cgroup2`):
#   CRITEST=/path/to/critest critest.sh [DRIVER] [TIMEOUT_SECONDS]
# CRITEST is a static critest binary (v1.32, built outside this repository
# from cri-tools; nothing of cri-tools is kept here). DRIVER is Vordr's
# `[cgroup] driver` (systemd or cgroupfs, default systemd). The images come
# from a registry in the guest serving a copy of the test bench's registry
# storage (CRITEST_REGISTRY, default /var/lib/cri-testbed/registry: a
# distribution v2 filesystem store), named by CRITEST_IMAGES (critest's
# -test-images-file, default /work/shared/testbed/critest-images.yaml).
# CRITEST_FOCUS, if set, is passed as -ginkgo.focus (e.g. to re-run failed
# specs). Builds the daemon and the shim (debug), shares them, critest and
# the registry copy with the guest, boots it with jobs/critest.sh and prints
# critest's summary and failures. Results stay in $GUEST_DIR/out-critest-DRIVER/:
# critest.log (ginkgo -v), junit.xml, vordr.log, console.log, journal.txt.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/stage.sh"
# One compound command: bash reads it whole before running it, so an edit
# of this file during a run cannot change what the run does.
{
guest_require_root
DRIVER="${1:-systemd}" LIMIT="${2:-5400}"
case "$DRIVER" in systemd | cgroupfs) ;; *) guest_die "DRIVER must be systemd or cgroupfs, not $DRIVER" ;; esac
[ -n "${CRITEST:-}" ] || guest_die "set CRITEST to a critest binary (v1.32, static; built outside the repository)"
[ -x "$CRITEST" ] || guest_die "CRITEST=$CRITEST is not an executable file"
REGISTRY="${CRITEST_REGISTRY:-/var/lib/cri-testbed/registry}"
IMAGES="${CRITEST_IMAGES:-/work/shared/testbed/critest-images.yaml}"
[ -d "$REGISTRY/docker/registry/v2" ] || guest_die "no registry storage (docker/registry/v2) in $REGISTRY"
[ -f "$IMAGES" ] || guest_die "no critest images file $IMAGES"
cd "$GUEST_REPO"
t0=$(guest_now)
guest_stage critest "$DRIVER"
cp "$CRITEST" "$IN/bin/critest"
cp "$IMAGES" "$IN/critest-images.yaml"
cp -a "$REGISTRY" "$IN/registry"
echo "$DRIVER" >"$IN/driver"
printf '%s' "${CRITEST_FOCUS:-}" >"$IN/focus"
guest_log "host build and staging took $(guest_since "$t1") s"
rm -rf "$OUT"
rc=0
# AppArmor off in the guest, as on the development host: critest's AppArmor
# specs load profiles with `sudo apparmor_parser`, which the image lacks.
VORDR_GUEST_CMDLINE="apparmor=0 ${VORDR_GUEST_CMDLINE:-}" \
  "$(dirname "$0")/run.sh" "$(dirname "$0")/jobs/critest.sh" "$IN" "$OUT" "$LIMIT" || rc=$?
echo "--- critest ($DRIVER driver): $(sed -n 2p "$OUT/facts.txt" 2>/dev/null)"
if [ -f "$OUT/critest.log" ]; then
  grep -E "^Ran [0-9]+ of|Passed \|" "$OUT/critest.log" || tail -n 20 "$OUT/critest.log"
  # The failed specs, from ginkgo's summary.
  sed -n '/^Summarizing/,$p' "$OUT/critest.log" | grep -E '^\s*\[(FAIL|TIMEDOUT|PANICKED|INTERRUPTED)\]' || true
fi
guest_log "critest ($DRIVER driver): exit $rc in $(guest_since "$t0") s (results: $OUT)"
exit "$rc"
}
