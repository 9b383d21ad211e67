# Staging shared by the guest's run scripts (sourced after lib.sh; kept out
# of lib.sh, whose text is part of the disk image's stamp).

# guest_stage KIND DRIVER: QEMU and the disk image (each cached), the daemon
# and the shim built (debug) and hard-linked into a fresh IN share, removed
# when the script exits. Sets IN, OUT ($GUEST_DIR/out-KIND-DRIVER) and t1
# (when the build began).
guest_stage() {
  local kind=$1 driver=$2 b
  "$GUEST_REPO/scripts/guest/fetch-qemu.sh"
  "$GUEST_REPO/scripts/guest/build-image.sh"
  t1=$(guest_now)
  (cd "$GUEST_REPO" && cargo build -q -p vordr -p vordr-shim)
  IN="$(mktemp -d "$GUEST_DIR/in-$kind.XXXXXX")"
  OUT="$GUEST_DIR/out-$kind-$driver"
  trap 'rm -rf "$IN"' EXIT
  mkdir -p "$IN/bin"
  for b in vordr containerd-shim-vordr-v1; do
    ln "$GUEST_REPO/target/debug/$b" "$IN/bin/$b" 2>/dev/null ||
      cp "$GUEST_REPO/target/debug/$b" "$IN/bin/$b"
  done
}
