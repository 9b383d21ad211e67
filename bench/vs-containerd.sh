#!/usr/bin/env bash
# Vordr against containerd 1.6 (Debian's, with its CRI plugin, runc and the
# CNI bridge plugins) on this machine, in the same run: the pod sandbox
# lifecycle, PullImage of a 1 MB one-layer and a 50 MB five-layer image,
# and ListImages / ImageStatus with 100 images present, then the gatekeeper's
# validation time per spec. The images (and
# containerd's pause image, from Debian's catatonit) are built here and
# served by a private docker-registry on 127.0.0.1. Everything lives in a
# temporary directory and is removed on exit.
# NETWORK=cni puts Vordr on its CNI driver with containerd's config list.
# With HOLD pods held (default 20), kubelet's stats poll (ListContainerStats,
# ListPodSandboxStats) is timed too; STATS_ONLY=1 runs just that part (and
# the container lifecycles it needs): HOLD=100 STATS_ONLY=1 for the issue's
# 100-container figure.
#
# usage: [POOL_SIZE=n] bench/vs-containerd.sh [ITERATIONS]   (as root, after scripts/setup.sh)
# POOL_SIZE sets Vordr's warm pool (default 4; 0 measures netavark on every pod).
set -euo pipefail

ITERATIONS=${1:-30}
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
VORDR=${VORDR_BIN:-$ROOT_DIR/target/release/vordr}
WORK=$(mktemp -d /tmp/vordr-bench.XXXXXX)
RUN=/run/vordr-bench-$$          # short: containerd's shim sockets live here
REG_PORT=${REG_PORT:-$(( 20000 + $$ % 20000 ))}
REG=127.0.0.1:$REG_PORT
PAUSE=$REG/vordr-bench/pause:3.9
PIDS=()

log() { echo "pod-bench: $*" >&2; }

cleanup() {
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  # The bench removes its pods; shims of any a failed run left behind:
  pkill -f "containerd-shim-runc-v2 -namespace k8s.io -id .* -address $RUN/containerd.sock" 2>/dev/null
  grep " $RUN\| $WORK" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  # The held pods' cgroup parent (vordr bench names it after its pid).
  find /sys/fs/cgroup -maxdepth 3 -depth -type d -name 'vordr-bench-*' -exec rmdir {} \; 2>/dev/null
  ip link del vbench0 2>/dev/null
  ip link del cbench0 2>/dev/null
  rm -rf "$WORK" "$RUN"
}
trap cleanup EXIT

mkdir -p "$RUN" "$WORK"/{registry,cni,containerd}

# 1. A private registry with a pause image built from catatonit.
cat > "$WORK/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: $REG
YML
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do curl -sf "http://$REG/v2/" >/dev/null 2>&1 && break; sleep 0.1; done

log "building the pause image"
umoci init --layout "$WORK/oci" >/dev/null
umoci new --image "$WORK/oci:pause" >/dev/null
umoci unpack --image "$WORK/oci:pause" "$WORK/bundle" >/dev/null
install -m 0755 "$(command -v catatonit)" "$WORK/bundle/rootfs/catatonit"
umoci repack --image "$WORK/oci:pause" "$WORK/bundle" >/dev/null
umoci config --image "$WORK/oci:pause" --config.entrypoint /catatonit --config.cmd -P \
  --config.user 65535:65535 >/dev/null
skopeo copy -q --dest-tls-verify=false "oci:$WORK/oci:pause" "docker://$PAUSE"

# Images to pull: random (incompressible) content, so sizes are real.
image_with_layers() {  # NAME LAYERS MB_PER_LAYER
  local name=$1 layers=$2 mb=$3 i
  rm -rf "$WORK/bundle"
  umoci new --image "$WORK/oci:$name" >/dev/null
  umoci unpack --image "$WORK/oci:$name" "$WORK/bundle" >/dev/null
  for i in $(seq "$layers"); do
    head -c "$((mb * 1024 * 1024))" /dev/urandom > "$WORK/bundle/rootfs/data$i"
    umoci repack --image "$WORK/oci:$name" "$WORK/bundle" >/dev/null
  done
  skopeo copy -q --dest-tls-verify=false "oci:$WORK/oci:$name" "docker://$REG/vordr-bench/$name:1"
}
log "building the container image (busybox-static)"
rm -rf "$WORK/bundle"
umoci new --image "$WORK/oci:busybox" >/dev/null
umoci unpack --image "$WORK/oci:busybox" "$WORK/bundle" >/dev/null
mkdir -p "$WORK/bundle/rootfs/bin" "$WORK/bundle/rootfs/etc" "$WORK/bundle/rootfs/tmp"
install -m 0755 /bin/busybox "$WORK/bundle/rootfs/bin/busybox"
for a in sh sleep echo cat; do ln -s busybox "$WORK/bundle/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$WORK/bundle/rootfs/etc/passwd"
echo 'root:x:0:' > "$WORK/bundle/rootfs/etc/group"
umoci repack --image "$WORK/oci:busybox" "$WORK/bundle" >/dev/null
umoci config --image "$WORK/oci:busybox" --config.cmd /bin/sh >/dev/null
skopeo copy -q --dest-tls-verify=false "oci:$WORK/oci:busybox" "docker://$REG/vordr-bench/busybox:1"
if [ "${STATS_ONLY:-0}" != 1 ]; then
log "building the pull images"
image_with_layers pull-1mb 1 1
image_with_layers pull-50mb 5 10
log "building 100 images for the list benchmark"
rm -rf "$WORK/bundle"
umoci new --image "$WORK/oci:list" >/dev/null
umoci unpack --image "$WORK/oci:list" "$WORK/bundle" >/dev/null
echo list > "$WORK/bundle/rootfs/list"
umoci repack --image "$WORK/oci:list" "$WORK/bundle" >/dev/null
for i in $(seq 0 99); do
  umoci config --image "$WORK/oci:list" --config.label "index=$i" --tag "list$i" >/dev/null
  skopeo copy -q --dest-tls-verify=false "oci:$WORK/oci:list$i" "docker://$REG/vordr-bench/list:$i"
done
fi

# 2. containerd 1.6 with CNI bridge networking on its own subnet.
cat > "$WORK/cni/10-bench.conflist" <<JSON
{"cniVersion": "0.4.0", "name": "cbench", "plugins": [
  {"type": "bridge", "bridge": "cbench0", "isGateway": true, "ipMasq": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.79.0.0/16"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$WORK/cni-ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON
cat > "$WORK/containerd.toml" <<TOML
version = 2
root = "$WORK/containerd/root"
state = "$RUN/containerd-state"
[grpc]
  address = "$RUN/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$WORK/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$REG"]
    endpoint = ["http://$REG"]
TOML
containerd --config "$WORK/containerd.toml" >"$WORK/containerd.log" 2>&1 &
PIDS+=($!)

# 3. Vordr on its own socket, root and bridge.
cat > "$WORK/vordr.toml" <<TOML
[server]
socket = "$RUN/vordr.sock"
root = "$WORK/vordr-root"
run_dir = "$RUN/vordr"
log_level = "warn"
[network]
bridge = "vbench0"
network_name = "vbench"
subnet = "10.78.0.0/16"
pool_size = ${POOL_SIZE:-4}
TOML
# NETWORK=cni: Vordr calls the same CNI config list and plugins as containerd.
if [ "${NETWORK:-netavark}" = cni ]; then
  cat >> "$WORK/vordr.toml" <<TOML
driver = "cni"
[network.cni]
conf_dir = "$WORK/cni"
bin_dirs = ["/usr/lib/cni"]
TOML
fi
cat >> "$WORK/vordr.toml" <<TOML
[gatekeeper]
# The benchmark's pods log under /tmp/vordr-bench-logs.
log_root = "/tmp/vordr-bench-logs"
TOML
mkdir -p /tmp/vordr-bench-logs
cat > "$WORK/registries.conf" <<TOML
[[registry]]
location = "$REG"
insecure = true
TOML
"$VORDR" serve --config "$WORK/vordr.toml" --registries-config "$WORK/registries.conf" >"$WORK/vordr.log" 2>&1 &
PIDS+=($!)

for s in vordr.sock containerd.sock; do
  for _ in $(seq 100); do [ -S "$RUN/$s" ] && break; sleep 0.1; done
  [ -S "$RUN/$s" ] || { log "$s did not appear"; cat "$WORK"/*.log >&2; exit 1; }
done

log "running $ITERATIONS iterations of each benchmark on each runtime"
if [ "${STATS_ONLY:-0}" = 1 ]; then
  "$VORDR" bench -r "unix://$RUN/vordr.sock" --compare "unix://$RUN/containerd.sock" \
    -n "$ITERATIONS" --warmup 1 --no-pods \
    --container "$REG/vordr-bench/busybox:1" --hold "${HOLD:-20}" --stats \
    --daemon-pid "${PIDS[2]}" --compare-daemon-pid "${PIDS[1]}"
  exit 0
fi
"$VORDR" bench -r "unix://$RUN/vordr.sock" --compare "unix://$RUN/containerd.sock" \
  -n "$ITERATIONS" --warmup 3 \
  --pull "$REG/vordr-bench/pull-1mb:1" --pull "$REG/vordr-bench/pull-50mb:1" \
  --list-prefix "$REG/vordr-bench/list:" --list-count 100 \
  --container "$REG/vordr-bench/busybox:1" --hold "${HOLD:-20}" --stats --streaming \
  --daemon-pid "${PIDS[2]}" --compare-daemon-pid "${PIDS[1]}"

rss() { ps -o rss= -p "$1" | awk '{printf "%.1f MB", $1/1024}'; }
echo
echo "idle daemon RSS: vordr $(rss "${PIDS[2]}"), containerd $(rss "${PIDS[1]}")"

# The gatekeeper's judgement of one spec (containerd has no such check):
# part of every RunPodSandbox and CreateContainer timed above.
echo
"$VORDR" bench-gatekeeper
