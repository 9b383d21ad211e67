# Shared settings of the cgroup v2 / systemd test guest (sourced by the
# other scripts in scripts/guest/). Everything is cached under $GUEST_DIR,
# by default target/guest/ of the workspace, so a clean clone rebuilds it.

GUEST_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
GUEST_DIR="${VORDR_GUEST_DIR:-$GUEST_REPO/target/guest}"
# The Debian suite of the guest: the host's (the test executables are
# linked against the host's glibc and libseccomp).
GUEST_SUITE="${VORDR_GUEST_SUITE:-bookworm}"

guest_log() { echo "guest: $*" >&2; }
guest_die() { echo "guest: error: $*" >&2; exit 1; }

# The first Debian mirror named in the host's apt sources (one-line or
# deb822 format), else deb.debian.org.
guest_mirror() {
  local m
  m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -Eo 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ')
  echo "${m:-http://deb.debian.org/debian}"
}

# Seconds since the epoch with a fraction, for the timings printed.
guest_now() { date +%s.%N; }
guest_since() { awk -v a="$1" -v b="$(guest_now)" 'BEGIN { printf "%.1f", b - a }'; }

guest_require_root() {
  [ "$(id -u)" -eq 0 ] || guest_die "run as root (debootstrap, mkfs and the tests need it)"
}
