# Guest job for `just critest-cgroup2` (run by guest-job.sh as
# `bash job.sh IN OUT`): critest's runtime specs against `vordr serve`
# with `[cgroup] driver = DRIVER`. IN holds bin/ (vordr, the shim,
# critest), registry/ (a distribution v2 filesystem store with the images
# critest pulls), critest-images.yaml, driver and focus (a -ginkgo.focus
# regex, or empty for every spec). The store is copied to a tmpfs and
# served by Debian's docker-registry on 127.0.0.1:5000; registries.conf
# mirrors the public registries critest names to it. Writes OUT/facts.txt,
# OUT/critest.log (ginkgo -v), OUT/junit.xml, OUT/vordr.log,
# OUT/leftovers.txt and exits with critest's exit code.
set -u
IN="$1" OUT="$2"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
DRIVER="$(cat "$IN/driver" 2>/dev/null || echo systemd)"
FOCUS="$(cat "$IN/focus" 2>/dev/null || true)"
W=/var/lib/critest
SOCK="$W/vordr.sock"
{
  echo "kernel: $(uname -r) $(cat /proc/cmdline)"
  echo "cgroup: $(stat -fc %T /sys/fs/cgroup), controllers: $(cat /sys/fs/cgroup/cgroup.controllers), driver: $DRIVER"
  echo "systemd: $(systemctl --version | head -n1), state: $(systemctl is-system-running)"
  echo "runc: $(runc --version | head -n1)"
  echo "critest: $("$IN/bin/critest" -version 2>&1 | grep -m1 -i version)"
  echo "focus: ${FOCUS:-(all)}"
} >"$OUT/facts.txt" 2>&1

# --- The registry: the store copied to a tmpfs (docker-registry wants to
# write beside it; the share is read-only). Debian's default config asks
# for htpasswd auth, hence a config of its own.
mkdir -p "$W/registry"
mount -t tmpfs -o size=256m critest-registry "$W/registry"
cp -a "$IN/registry/." "$W/registry/"
cat >"$W/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $W/registry
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:5000
EOF
systemd-run --unit=critest-registry --collect docker-registry serve "$W/registry.yml"
for _ in $(seq 1 240); do
  (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null && break
  sleep 0.5
done

# --- Vordr: the privileged profile (critest asks for privileged
# containers, host namespaces, host paths), log and seccomp roots where
# critest puts its logs and Localhost profiles (/tmp), no warm pool.
{
  printf 'unqualified-search-registries = ["docker.io"]\n\n'
  printf '[[registry]]\nlocation = "127.0.0.1:5000"\ninsecure = true\n'
  for r in docker.io registry.k8s.io k8s.gcr.io gcr.io quay.io; do
    printf '\n[[registry]]\nprefix = "%s"\nlocation = "%s"\n' "$r" "$r"
    printf '[[registry.mirror]]\nlocation = "127.0.0.1:5000"\ninsecure = true\n'
  done
} >"$W/registries.conf"
cat >"$W/vordr.toml" <<EOF
[server]
socket = "$SOCK"
root = "$W/root"
run_dir = "/run/vordr-critest"
registries_config = "$W/registries.conf"
[network]
pool_size = 0
use_pod_cidr = false
[gatekeeper]
profile = "privileged"
allow_privileged = true
log_root = "/tmp"
[runtime]
seccomp_profile_root = "/tmp"
[cgroup]
driver = "$DRIVER"
EOF
cp "$W/vordr.toml" "$W/registries.conf" "$OUT/"
"$IN/bin/vordr" serve --config "$W/vordr.toml" >"$OUT/vordr.log" 2>&1 &
vordr_pid=$!
for _ in $(seq 1 600); do
  [ -S "$SOCK" ] && break
  kill -0 "$vordr_pid" 2>/dev/null || break
  sleep 0.5
done
if [ ! -S "$SOCK" ]; then
  echo "vordr serve did not bind $SOCK" >"$OUT/critest.log"
  exit 1
fi

# --- critest: every runtime spec but the benchmarks and the
# digest-pinned upstream image (not in the offline store). Ginkgo's own
# suite timeout (1 h by default) is too short under emulation.
args=(-runtime-endpoint "unix://$SOCK" -image-endpoint "unix://$SOCK"
  -test-images-file "$IN/critest-images.yaml"
  -ginkgo.skip '[Bb]enchmark|public image with digest'
  -ginkgo.v -ginkgo.no-color -ginkgo.timeout 3h
  -ginkgo.junit-report "$OUT/junit.xml")
[ -n "$FOCUS" ] && args+=(-ginkgo.focus "$FOCUS")
cd /tmp
t0=$(date +%s.%N)
"$IN/bin/critest" "${args[@]}" >"$OUT/critest.log" 2>&1
rc=$?
echo "critest: exit $rc in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s" >>"$OUT/facts.txt"

kill -TERM "$vordr_pid" 2>/dev/null
for _ in $(seq 1 120); do kill -0 "$vordr_pid" 2>/dev/null || break; sleep 0.5; done
# What the specs and the daemon left behind (cgroups named *vordr*).
find /sys/fs/cgroup -name '*vordr*' -type d 2>/dev/null | grep -v vordr-guest-job >"$OUT/leftovers.txt"
exit $rc
