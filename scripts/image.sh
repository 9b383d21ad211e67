#!/usr/bin/env bash
# Builds the installer image (deploy/k8s) as an OCI layout with umoci and
# pushes it with skopeo: no docker, no base image. The image holds vordr and
# containerd-shim-vordr-v1 (debug info stripped), the shared libraries they
# link (from this machine, found by ldd) and busybox as a shell for
# `kubectl exec`. Its entrypoint is `vordr install --host-root /host --wait`.
#
#   scripts/image.sh REGISTRY [--bin-dir DIR] [--tag TAG] [--insecure]
#
# pushes REGISTRY/vordr-installer:TAG (TAG: the binaries' version) and
# prints that reference last. --bin-dir defaults to target/release;
# --insecure pushes over plain HTTP or unverified TLS (a local test
# registry). Registry credentials come from `skopeo login`.
set -euo pipefail

usage() { echo "usage: $0 REGISTRY [--bin-dir DIR] [--tag TAG] [--insecure]" >&2; exit 2; }
[ $# -ge 1 ] || usage
registry=${1%/}
shift
bin_dir="$(cd "$(dirname "$0")/.." && pwd)/target/release"
tag=""
tls_verify=true
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --insecure) tls_verify=false; shift ;;
    *) usage ;;
  esac
done
for tool in umoci skopeo ldd strip /bin/busybox; do
  command -v "$tool" >/dev/null || { echo "image.sh: $tool is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
bins=("$bin_dir/vordr" "$bin_dir/containerd-shim-vordr-v1")
for b in "${bins[@]}"; do
  [ -x "$b" ] || { echo "image.sh: $b is missing (just build-release builds it)" >&2; exit 1; }
done
[ -n "$tag" ] || tag=$("$bin_dir/vordr" --version | awk '{print $2}')
ref="$registry/vordr-installer:$tag"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
layout="$work/oci"
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
rootless=()
[ "$(id -u)" -eq 0 ] || rootless=(--rootless)
umoci unpack "${rootless[@]}" --image "$layout:$tag" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"

install -d -m 0755 "$rootfs/usr/local/bin" "$rootfs/bin" "$rootfs/etc" "$rootfs/host" \
  "$rootfs/proc" "$rootfs/sys" "$rootfs/dev" "$rootfs/run" "$rootfs/var"
install -d -m 1777 "$rootfs/tmp"
for b in "${bins[@]}"; do
  install -m 0755 "$b" "$rootfs/usr/local/bin/"
  strip --strip-debug "$rootfs/usr/local/bin/$(basename "$b")"
done
# The libraries the binaries link, at the paths the loader looks in.
ldd "${bins[@]}" | awk '/=> \// {print $3} /^\t\/[^ ]+ \(/ {print $1}' | sort -u |
  while read -r lib; do
    install -d -m 0755 "$rootfs$(dirname "$lib")"
    install -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
  done
install -m 0755 /bin/busybox "$rootfs/bin/busybox"
ln -s busybox "$rootfs/bin/sh"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\n' >"$rootfs/etc/group"
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"

umoci repack --image "$layout:$tag" "$work/bundle" >/dev/null
umoci config --image "$layout:$tag" \
  --author "vordr scripts/image.sh" \
  --config.entrypoint /usr/local/bin/vordr \
  --config.cmd install --config.cmd --host-root --config.cmd /host --config.cmd --wait \
  --config.env PATH=/usr/local/bin:/bin \
  --config.workingdir / \
  --config.label "org.opencontainers.image.title=vordr-installer" \
  --config.label "org.opencontainers.image.version=$tag"
umoci gc --layout "$layout"

skopeo copy --quiet --dest-tls-verify="$tls_verify" "oci:$layout:$tag" "docker://$ref"
echo "$ref"
