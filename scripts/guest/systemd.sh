#!/usr/bin/env bash
# `just test-systemd` (issue 16): boots the cgroup v2 guest, whose PID 1 is
# systemd, and runs jobs/systemd.sh there: `vordr install --host-root /`
# with a stand-in kubelet, the unit's checks, a container surviving
# `systemctl restart vordr`, and `vordr uninstall`. DRIVER is the cgroup
# driver written to /etc/vordr/config.toml (default systemd). Prints a
# line per check; returns 0 only if all passed. Results stay in
# $GUEST_DIR/out-systemd-DRIVER/.
#   systemd.sh [DRIVER] [TIMEOUT_SECONDS]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/stage.sh"
# One compound command: bash reads it whole before running it, so an edit
# of this file during a run cannot change what the run does.
{
guest_require_root
DRIVER="${1:-systemd}" LIMIT="${2:-1500}"
cd "$GUEST_REPO"
t0=$(guest_now)
guest_stage systemd "$DRIVER"
"$(dirname "$0")/oci-busybox.sh" "$IN/image"
echo "$DRIVER" >"$IN/driver"
guest_log "host build and staging took $(guest_since "$t1") s"
rm -rf "$OUT"
rc=0
"$(dirname "$0")/run.sh" "$(dirname "$0")/jobs/systemd.sh" "$IN" "$OUT" "$LIMIT" || rc=$?
[ -f "$OUT/results.tsv" ] && column -t -s $'\t' "$OUT/results.tsv" | cut -c1-200
guest_log "systemd ($DRIVER driver): exit $rc in $(guest_since "$t0") s (results: $OUT)"
exit "$rc"
}
