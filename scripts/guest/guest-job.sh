#!/bin/bash
# Runs inside the test guest at boot (vordr-guest-job.service): mounts the
# host's shares (9p: "in" read-only, "out" writable), runs in/job.sh with
# its output in out/job.log and its exit code in out/rc, saves the failed
# units and the journal, then powers the guest off. Does nothing unless
# the kernel command line says vordr.job=1 (a guest booted by hand stays up).
set -u
grep -qw 'vordr.job=1' /proc/cmdline || exit 0
mkdir -p /mnt/in /mnt/out
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 in /mnt/in &&
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out /mnt/out || {
  echo "vordr-guest-job: cannot mount the 9p shares" >/dev/console
  systemctl poweroff --no-block
  exit 1
}
{
  echo "boot: $(cut -d' ' -f1 /proc/uptime) s since the kernel started"
  systemd-analyze time 2>&1 | head -n1
} >/mnt/out/boot.txt
rc=0
if [ -f /mnt/in/job.sh ]; then
  bash /mnt/in/job.sh /mnt/in /mnt/out >/mnt/out/job.log 2>&1 || rc=$?
else
  echo "no job.sh in the share" >/mnt/out/job.log
  rc=2
fi
systemctl --failed --no-legend >/mnt/out/failed-units.txt 2>&1
journalctl -b --no-pager -o short-monotonic >/mnt/out/journal.txt 2>&1
echo "$rc" >/mnt/out/rc
sync
umount /mnt/out
systemctl poweroff --no-block
