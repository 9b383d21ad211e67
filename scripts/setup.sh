#!/usr/bin/env bash
# Installs everything Vordr needs on a Debian bookworm node that has only
# rustup: system packages, `just`, and the Rust toolchain components.
# Idempotent; run as root.
set -euo pipefail

PACKAGES=(
  # build
  gcc protobuf-compiler pkg-config libseccomp-dev gnat-12 gprbuild
  # runtime
  netavark runc iproute2 iptables nftables
  # tests and benchmarks: local registry, image building, reference runtime
  docker-registry skopeo umoci busybox-static catatonit jq iputils-ping curl
  containerd containernetworking-plugins
  # the installer: its image (just image: umoci, skopeo, strip) and the
  # check of its systemd unit (systemd-analyze)
  binutils systemd
  # a third-party WebSocket streaming client (run by Debian's /usr/bin/python3)
  python3-kubernetes
  # the cgroup v2 / systemd test guest (scripts/guest/: debootstrap builds
  # its disk, mkfs.ext4 -d fills it; QEMU itself is unpacked, not installed)
  debootstrap e2fsprogs bsdextrautils
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (it installs packages)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's containerd package starts a system containerd; Vordr does not
# need it (the benchmark starts its own on a private socket).
if command -v systemctl >/dev/null && systemctl is-active -q containerd 2>/dev/null; then
  systemctl disable --now containerd >/dev/null 2>&1 || true
fi

# A gRPC C-core client (grpcio >= 1.57 sends a percent-encoded socket path
# as :authority) for the e2e test of Vordr's authority repair.
if ! python3 -c 'import grpc, sys; v = tuple(map(int, grpc.__version__.split(".")[:2])); sys.exit(v < (1, 57))' 2>/dev/null; then
  echo "setup.sh: installing grpcio"
  python3 -m pip install --quiet --root-user-action=ignore 'grpcio>=1.57'
fi

# The deploy/k8s manifests are validated (just check) against the
# Kubernetes 1.35 schemas that kubernetes-validate carries offline.
if ! python3 -c 'import sys, kubernetes_validate.utils as u; sys.exit("1.35.0" not in u.all_versions())' 2>/dev/null; then
  echo "setup.sh: installing kubernetes-validate"
  python3 -m pip install --quiet --root-user-action=ignore 'kubernetes-validate>=1.35'
fi

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v just >/dev/null; then
  echo "setup.sh: installing just"
  cargo install --locked just >/dev/null 2>&1 || cargo install just
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
# `just fuzz` (scripts/fuzz.sh): cargo fuzz, built with nightly when rustup
# has it, else with the stable toolchain and RUSTC_BOOTSTRAP=1.
if ! command -v cargo-fuzz >/dev/null; then
  echo "setup.sh: installing cargo-fuzz"
  cargo install --locked cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
fi
echo "setup.sh: done"
