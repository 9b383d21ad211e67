#!/usr/bin/env bash
# Puts Debian's QEMU (qemu-system-x86, its firmware and the shared
# libraries the host lacks) under $GUEST_DIR/qemu without installing it:
# `apt-get install qemu-system-x86` would replace the host's qemu-utils and
# pull a newer systemd. apt resolves the package set (-s, nothing changes),
# `apt-get download` fetches it, `dpkg-deb -x` unpacks it. Writes the
# wrapper $GUEST_DIR/qemu/qemu (LD_LIBRARY_PATH and the firmware path set).
# Reused when present.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

Q="$GUEST_DIR/qemu"
if [ "${1:-}" != "--force" ] && [ -x "$Q/qemu" ] && "$Q/qemu" -version >/dev/null 2>&1; then
  guest_log "QEMU is present ($Q)"
  exit 0
fi
rm -rf "$Q"
mkdir -p "$Q/debs" "$Q/root"
t0=$(guest_now)
# The packages apt would install here, without installing them.
resolve() {
  mapfile -t pkgs < <(apt-get -s install --no-install-recommends qemu-system-x86 2>/dev/null |
    awk '$1 == "Inst" { print $2 }')
}
download() {
  [ ${#pkgs[@]} -gt 0 ] &&
    (cd "$Q/debs" && timeout 600 apt-get download -q -o APT::Sandbox::User=root "${pkgs[@]}" >/dev/null)
}
resolve
if ! download; then
  # Stale or missing package lists (a fresh CI machine): refresh once.
  guest_log "refreshing apt's package lists"
  timeout 600 apt-get update -qq || guest_die "apt-get update failed"
  resolve
  download || guest_die "apt-get download of qemu-system-x86 (${pkgs[*]:-nothing resolved}) failed"
fi
for deb in "$Q"/debs/*.deb; do
  dpkg-deb -x "$deb" "$Q/root"
done
rm -rf "$Q/debs"
cat >"$Q/qemu" <<WRAP
#!/bin/sh
# qemu-system-x86_64 from Debian's packages unpacked here (fetch-qemu.sh).
R="$Q/root"
export LD_LIBRARY_PATH="\$R/usr/lib/x86_64-linux-gnu:\$R/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "\$R/usr/bin/qemu-system-x86_64" -L "\$R/usr/share/qemu" -L "\$R/usr/share/seabios" "\$@"
WRAP
chmod 0755 "$Q/qemu"
"$Q/qemu" -version >/dev/null || guest_die "the unpacked QEMU does not run: $("$Q/qemu" -version 2>&1 | tail -n1)"
guest_log "QEMU $("$Q/qemu" -version | head -n1 | awk '{print $4}') unpacked (${#pkgs[@]} packages) in $(guest_since "$t0") s"
