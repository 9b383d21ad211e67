#!/usr/bin/env bash
# Builds the test guest's disk: a debootstrap'd Debian rootfs (systemd as
# PID 1, its kernel and initramfs, the packages the e2e tests call) in an
# ext4 image, $GUEST_DIR/rootfs.img, plus the kernel and initrd beside it
# for QEMU's direct boot. Reused while this script is unchanged; --force
# rebuilds. The guest is booted with -snapshot: the image is never written.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
guest_require_root

PACKAGES=(
  # PID 1, the bus the systemd cgroup driver talks to, devices
  systemd systemd-sysv dbus udev kmod
  # the kernel (its modules: 9p, overlay, bridge, veth, netfilter) and an
  # initramfs that loads virtio and ext4
  linux-image-amd64 initramfs-tools
  # what the daemon and the e2e harness run
  runc netavark iproute2 iptables nftables busybox-static docker-registry
  ca-certificates util-linux procps iputils-ping libseccomp2 catatonit
  # the systemd scenario: its test image into the local registry
  skopeo
  # CheckpointContainer (its e2e tests dump containers with criu here)
  criu
)
STAMP_INPUT="$(cat "$0" "$(dirname "$0")/lib.sh" "$(dirname "$0")/guest-job.sh" "$(dirname "$0")/vordr-guest-job.service")"
STAMP="$(printf '%s' "$STAMP_INPUT" | sha256sum | cut -c1-16)"

mkdir -p "$GUEST_DIR"
if [ "${1:-}" != "--force" ] && [ -f "$GUEST_DIR/rootfs.img" ] &&
  [ "$(cat "$GUEST_DIR/rootfs.stamp" 2>/dev/null)" = "$STAMP" ]; then
  guest_log "rootfs.img is up to date ($GUEST_DIR)"
  exit 0
fi
command -v debootstrap >/dev/null || guest_die "debootstrap is missing (scripts/setup.sh installs it)"
command -v mkfs.ext4 >/dev/null || guest_die "mkfs.ext4 is missing (e2fsprogs)"

ROOT="$GUEST_DIR/rootfs"
rm -rf "$ROOT" "$GUEST_DIR/rootfs.img" "$GUEST_DIR/rootfs.stamp"
MIRROR="$(guest_mirror)"
t0=$(guest_now)
guest_log "debootstrap $GUEST_SUITE from $MIRROR into $ROOT"
include=$(IFS=,; echo "${PACKAGES[*]}")
if ! timeout 1800 debootstrap --variant=minbase --include="$include" \
  "$GUEST_SUITE" "$ROOT" "$MIRROR" >"$GUEST_DIR/debootstrap.log" 2>&1; then
  tail -n 30 "$GUEST_DIR/debootstrap.log" >&2
  guest_die "debootstrap failed (log: $GUEST_DIR/debootstrap.log)"
fi
guest_log "debootstrap took $(guest_since "$t0") s"

# The guest's own settings: root without password on the serial console,
# hostname, the root disk, no units that wait for a network or a clock.
echo vordr-guest >"$ROOT/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 vordr-guest\n' >"$ROOT/etc/hosts"
printf '/dev/vda / ext4 rw,relatime 0 1\n' >"$ROOT/etc/fstab"
sed -i 's/^root:[^:]*:/root::/' "$ROOT/etc/shadow"
# 9p for the shares; loaded early so the job unit can mount them.
printf '9p\n9pnet_virtio\noverlay\nbr_netfilter\n' >"$ROOT/etc/modules-load.d/vordr-guest.conf"
install -m 0755 "$(dirname "$0")/guest-job.sh" "$ROOT/usr/local/sbin/vordr-guest-job"
install -m 0644 "$(dirname "$0")/vordr-guest-job.service" "$ROOT/etc/systemd/system/vordr-guest-job.service"
ln -sf /etc/systemd/system/vordr-guest-job.service \
  "$ROOT/etc/systemd/system/multi-user.target.wants/vordr-guest-job.service"
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
  systemd-timesyncd.service getty@tty1.service; do
  ln -sf /dev/null "$ROOT/etc/systemd/system/$unit"
done
# docker-registry's own service is not wanted: the tests start their own.
rm -f "$ROOT/etc/systemd/system/multi-user.target.wants/docker-registry.service"
chroot "$ROOT" apt-get clean
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin

# The kernel and initramfs for QEMU's -kernel/-initrd.
cp "$(ls "$ROOT"/boot/vmlinuz-* | sort -V | tail -n1)" "$GUEST_DIR/vmlinuz"
cp "$(ls "$ROOT"/boot/initrd.img-* | sort -V | tail -n1)" "$GUEST_DIR/initrd.img"

t1=$(guest_now)
# mkfs.ext4 -d fills the filesystem from the directory: no loop mount.
size_mb=$(($(du -sm "$ROOT" | cut -f1) + 3072))
truncate -s "${size_mb}M" "$GUEST_DIR/rootfs.img.tmp"
mkfs.ext4 -q -F -L vordr-guest -d "$ROOT" "$GUEST_DIR/rootfs.img.tmp"
mv "$GUEST_DIR/rootfs.img.tmp" "$GUEST_DIR/rootfs.img"
rm -rf "$ROOT"
echo "$STAMP" >"$GUEST_DIR/rootfs.stamp"
guest_log "rootfs.img (${size_mb} MB, sparse) built in $(guest_since "$t1") s"
