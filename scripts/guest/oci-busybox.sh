#!/usr/bin/env bash
# Writes a one-layer OCI image layout of the host's busybox-static at DIR,
# tagged 1 (sh, sleep, cat... as busybox links; CMD sh), for the guest's
# registry (skopeo copy oci:DIR:1 ...). GNU tar writes the layer; the
# config, manifest and index are built here with their digests.
#   oci-busybox.sh DIR
set -euo pipefail
DIR="$1"
BB=/bin/busybox
[ -x "$BB" ] || { echo "oci-busybox: $BB is missing (busybox-static)" >&2; exit 1; }
rm -rf "$DIR"
mkdir -p "$DIR/blobs/sha256"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/rootfs/bin" "$stage/rootfs/tmp" "$stage/rootfs/proc" "$stage/rootfs/sys" \
  "$stage/rootfs/dev" "$stage/rootfs/etc"
install -m 0755 "$BB" "$stage/rootfs/bin/busybox"
for applet in sh sleep cat echo ls ps id env true false kill mkdir grep; do
  ln -s busybox "$stage/rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/:/bin/sh\n' >"$stage/rootfs/etc/passwd"
printf 'root:x:0:\n' >"$stage/rootfs/etc/group"
chmod 1777 "$stage/rootfs/tmp"
tar -C "$stage/rootfs" --sort=name --owner=0 --group=0 --numeric-owner \
  --mtime='2026-01-01 00:00:00' -cf "$stage/layer.tar" .
diff_id="sha256:$(sha256sum "$stage/layer.tar" | cut -d' ' -f1)"
gzip -n -9 -c "$stage/layer.tar" >"$stage/layer.tar.gz"
blob() { # FILE -> "digest size", the file stored under blobs/
  local d
  d="$(sha256sum "$1" | cut -d' ' -f1)"
  cp "$1" "$DIR/blobs/sha256/$d"
  echo "$d $(stat -c %s "$1")"
}
read -r layer_d layer_s < <(blob "$stage/layer.tar.gz")
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"],"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
  "$diff_id" >"$stage/config.json"
read -r config_d config_s < <(blob "$stage/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
  "$config_d" "$config_s" "$layer_d" "$layer_s" >"$stage/manifest.json"
read -r man_d man_s < <(blob "$stage/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"1"}}]}' \
  "$man_d" "$man_s" >"$DIR/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$DIR/oci-layout"
