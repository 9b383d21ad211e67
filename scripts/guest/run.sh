#!/usr/bin/env bash
# Boots the test guest once to run a job, and returns the job's exit code.
#   run.sh JOB IN_DIR OUT_DIR [TIMEOUT_SECONDS]
# JOB (a bash script) is copied into IN_DIR as job.sh; IN_DIR is shared
# read-only (9p tag "in", /mnt/in in the guest), OUT_DIR writable ("out",
# /mnt/out); the guest runs `bash /mnt/in/job.sh /mnt/in /mnt/out` once
# systemd is up, writes out/rc and powers off (guest-job.sh). QEMU runs
# TCG (the /dev/kvm here cannot run packaged kernels) with 2 vCPUs and
# 2 GiB, -snapshot (the disk image is never written), no network card; the
# kernel boots pure cgroup v2 (cgroup_no_v1=all). The whole run is bounded:
# QEMU is killed after TIMEOUT_SECONDS (default 1800), exit code 124.
# Exit codes: the job's, 124 on timeout, 125 if the guest left no rc.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
# One compound command: bash reads it whole before running it, so an edit
# of this file during a run cannot change what the run does.
{
[ $# -ge 3 ] || guest_die "usage: run.sh JOB IN_DIR OUT_DIR [TIMEOUT_SECONDS]"
JOB="$1" IN="$2" OUT="$3" LIMIT="${4:-1800}"
QEMU="$GUEST_DIR/qemu/qemu"
for f in "$QEMU" "$GUEST_DIR/rootfs.img" "$GUEST_DIR/vmlinuz" "$GUEST_DIR/initrd.img"; do
  [ -e "$f" ] || guest_die "$f is missing: run scripts/guest/fetch-qemu.sh and build-image.sh"
done
mkdir -p "$IN" "$OUT"
install -m 0644 "$JOB" "$IN/job.sh"
rm -f "$OUT/rc"
# -snapshot keeps the guest's writes in a temporary file QEMU deletes.
export TMPDIR="${TMPDIR:-/var/tmp}"
# mitigations=off: the guest is a throwaway test box, and the mitigations'
# extra work per syscall and switch is all emulated.
CMDLINE="root=/dev/vda rw console=ttyS0 panic=-1 mitigations=off vordr.job=1 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 ${VORDR_GUEST_CMDLINE:-}"
t0=$(guest_now)
guest_log "booting ($(basename "$JOB"), limit ${LIMIT}s; console: $OUT/console.log)"
set +e
# In the background so that a TERM or INT to this script (an outer
# timeout, ^C) reaches QEMU: timeout(1) passes it on to its command.
timeout --kill-after=15 "$LIMIT" "$QEMU" \
  -accel tcg,thread=multi -cpu max -smp 2 -m 2048 \
  -nodefaults -no-user-config -display none -no-reboot \
  -serial "file:$OUT/console.log" \
  -kernel "$GUEST_DIR/vmlinuz" -initrd "$GUEST_DIR/initrd.img" -append "$CMDLINE" \
  -drive "file=$GUEST_DIR/rootfs.img,format=raw,if=virtio,snapshot=on,cache=unsafe" \
  -virtfs "local,path=$IN,mount_tag=in,security_model=none,readonly=on,id=in" \
  -virtfs "local,path=$OUT,mount_tag=out,security_model=none,id=out" \
  -nic none </dev/null >"$OUT/qemu.log" 2>&1 &
qpid=$!
trap 'kill -TERM "$qpid" 2>/dev/null; wait "$qpid"; guest_log "stopped: QEMU terminated"; exit 143' TERM INT HUP
wait "$qpid"
qrc=$?
trap - TERM INT HUP
set -e
elapsed=$(guest_since "$t0")
if [ "$qrc" -eq 124 ] || [ "$qrc" -eq 137 ]; then
  guest_log "timed out after ${LIMIT}s: QEMU killed (console: $OUT/console.log)"
  exit 124
fi
if [ ! -f "$OUT/rc" ]; then
  guest_log "the guest left no result after ${elapsed}s (QEMU exit $qrc; $OUT/qemu.log, console.log)"
  tail -n 20 "$OUT/qemu.log" "$OUT/console.log" >&2 || true
  exit 125
fi
rc=$(cat "$OUT/rc")
guest_log "guest ran ${elapsed}s, job exit code $rc ($(head -n1 "$OUT/boot.txt" 2>/dev/null))"
exit "$rc"
}
