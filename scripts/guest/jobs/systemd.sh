# Guest job for `just test-systemd` (issue 16): `vordr install --host-root /`
# on a host whose PID 1 is systemd, with a stand-in kubelet (a
# kubelet.service running sleep, and its config file), then checks what the
# install promises and undoes it with `vordr uninstall`. IN holds bin/
# (vordr and the shim, the install's --source-dir), image/ (an OCI layout
# of busybox, pushed to a local docker-registry) and driver (the cgroup
# driver for /etc/vordr/config.toml). Writes OUT/results.tsv (check, result,
# detail) and exits 1 if any check failed.
set -u
IN="$1" OUT="$2"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
DRIVER="$(cat "$IN/driver" 2>/dev/null || echo systemd)"
SOCK=unix:///run/vordr/vordr.sock
# The build under test runs the install; afterwards the installed copy runs.
SRC_VORDR="$IN/bin/vordr"
VORDR=/usr/local/bin/vordr
IMAGE=127.0.0.1:5000/e2e/busybox:1
printf 'check\tresult\tdetail\n' >"$OUT/results.tsv"
failed=0
T0=$(date +%s.%N)
secs() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
# check NAME COMMAND...: runs it, records pass/fail with its output's tail.
check() {
  local name="$1" out rc
  shift
  out="$("$@" 2>&1)"
  rc=$?
  echo "== $name (exit $rc, at $(secs) s)"
  echo "$out"
  local detail
  detail="$(echo "$out" | tail -n 3 | tr '\t\n' '  ' | cut -c1-300)"
  if [ $rc -eq 0 ]; then
    printf '%s\tpass\t%s\n' "$name" "$detail" >>"$OUT/results.tsv"
  else
    printf '%s\tfail\t%s\n' "$name" "$detail" >>"$OUT/results.tsv"
    failed=1
  fi
  return $rc
}
# The main PID and start time of a unit (a restart changes both).
started() { systemctl show -P ExecMainStartTimestampMonotonic "$1"; }
vordr_cli() { timeout 120 "$VORDR" "$1" -r "$SOCK" "${@:2}"; }

# --- The stand-in kubelet and the host's files the installer reads.
mkdir -p /var/lib/kubelet /etc/containers
cat >/var/lib/kubelet/config.yaml <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# a comment the installer must keep
cgroupDriver: $DRIVER
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
YAML
cp -p /var/lib/kubelet/config.yaml /root/kubelet-config.orig
cat >/etc/systemd/system/kubelet.service <<'UNIT'
[Unit]
Description=Stand-in kubelet (the installer restarts it)
[Service]
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
UNIT
printf '[[registry]]\nlocation = "127.0.0.1:5000"\ninsecure = true\n' >/etc/containers/registries.conf
systemctl daemon-reload
check kubelet-stand-in-starts systemctl start kubelet.service
kubelet_before="$(started kubelet.service)"

# --- An image to run: busybox in a local registry.
# Its own config: Debian's demands htpasswd auth.
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/test-registry\nhttp:\n  addr: 127.0.0.1:5000\n' >/root/registry.yml
check registry-starts systemd-run --unit=test-registry --collect \
  docker-registry serve /root/registry.yml
for _ in $(seq 1 120); do
  (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null && break
  sleep 0.5
done
check image-pushed timeout 300 skopeo --insecure-policy copy --quiet --dest-tls-verify=false \
  "oci:$IN/image:1" "docker://$IMAGE"

# --- Install. A config.toml already there is kept (the new default goes
# beside it as config.toml.new): it carries the cgroup driver under test.
mkdir -p /etc/vordr
"$SRC_VORDR" config | sed "s/^driver = \"cgroupfs\"/driver = \"$DRIVER\"/" >/etc/vordr/config.toml
check config-written grep -q "^driver = \"$DRIVER\"" /etc/vordr/config.toml
check install timeout 300 "$SRC_VORDR" install --host-root / --source-dir "$IN/bin" --strict
check unit-active systemctl is-active vordr.service
check unit-is-type-notify sh -c '[ "$(systemctl show -P Type vordr.service)" = notify ]'
check unit-delegate-killmode sh -c 'systemctl show -p Delegate -p KillMode vordr.service |
  tee /dev/stderr | tr "\n" " " | grep -q "Delegate=yes KillMode=process"'
check unit-verify systemd-analyze verify /etc/systemd/system/vordr.service
check config-kept grep -q "^driver = \"$DRIVER\"" /etc/vordr/config.toml
# config.toml.new only beside a config that differs from the default.
check config-new-iff-changed sh -c '"$1" config | cmp -s - /etc/vordr/config.toml && ! test -e /etc/vordr/config.toml.new || { ! "$1" config | cmp -s - /etc/vordr/config.toml && test -f /etc/vordr/config.toml.new; }' sh "$SRC_VORDR"
check crictl-yaml grep -q "runtime-endpoint: $SOCK" /etc/crictl.yaml
check kubelet-switched grep -q "^containerRuntimeEndpoint: $SOCK" /var/lib/kubelet/config.yaml
check kubelet-comment-kept grep -q "a comment the installer must keep" /var/lib/kubelet/config.yaml
check kubelet-restarted sh -c "[ \"$(started kubelet.service)\" != \"$kubelet_before\" ] && systemctl is-active kubelet.service"
check socket-answers vordr_cli version
check status-config-driver sh -c "timeout 60 $VORDR info -r $SOCK | grep -A3 '\"cgroup\"' | grep '\"driver\": \"$DRIVER\"'"
check install-again-changes-nothing timeout 300 "$VORDR" install --host-root / --source-dir "$IN/bin" --check

# --- A detached container survives a restart of the daemon.
id="$(vordr_cli run -d --name survivor "$IMAGE" sleep 100000 2>"$OUT/run.err")"
check run-detached sh -c "[ -n '$id' ] || { cat '$OUT/run.err'; exit 1; }; echo $id"
check listed-running sh -c "timeout 60 $VORDR ps -r $SOCK | grep survivor"
ctr_pid="$(pgrep -f 'sleep 100000' | head -n1)"
check container-cgroup sh -c "[ -n '$ctr_pid' ] && cat /proc/$ctr_pid/cgroup && ! grep -q vordr.service /proc/$ctr_pid/cgroup"
vordr_before="$(started vordr.service)"
check daemon-restart timeout 300 systemctl restart vordr.service
check daemon-restarted sh -c "[ \"$(started vordr.service)\" != \"$vordr_before\" ] && systemctl is-active vordr.service"
check container-process-survived sh -c "[ -n '$ctr_pid' ] && kill -0 $ctr_pid"
check still-listed-running sh -c "timeout 60 $VORDR ps -r $SOCK | grep survivor"
check container-removed vordr_cli rm -f survivor

# --- Uninstall: kubelet's file back byte for byte, the unit gone.
kubelet_before="$(started kubelet.service)"
check uninstall timeout 300 "$VORDR" uninstall --host-root /
check kubelet-config-restored cmp /root/kubelet-config.orig /var/lib/kubelet/config.yaml
check kubelet-restarted-again sh -c "[ \"$(started kubelet.service)\" != \"$kubelet_before\" ] && systemctl is-active kubelet.service"
check unit-stopped sh -c '! systemctl is-active vordr.service'
check unit-file-removed sh -c '! test -e /etc/systemd/system/vordr.service && ! systemctl cat vordr.service'
check uninstall-again-changes-nothing timeout 300 "$SRC_VORDR" uninstall --host-root / --check
systemctl --no-pager status vordr.service >"$OUT/vordr-status.txt" 2>&1
journalctl -u vordr.service --no-pager >"$OUT/vordr-journal.txt" 2>&1
exit $failed
