#!/usr/bin/env bash
# Runs every cargo fuzz target in fuzz/ for SECONDS (default 60) each, one
# at a time, one process each. The committed corpus (fuzz/corpus/TARGET) is
# only read; what a run adds goes to fuzz/target/corpus-new/TARGET. A crash,
# a failed invariant, a leak or a hang (-timeout) writes the input to
# fuzz/artifacts/TARGET/ and makes the script exit non-zero, after the
# other targets have run.
#
# cargo-fuzz needs unstable flags: with a nightly toolchain installed
# (rustup) it is used; otherwise (or with FUZZ_STABLE=1) the default
# toolchain is told to accept them (RUSTC_BOOTSTRAP=1). Either way
# AddressSanitizer is on unless FUZZ_SANITIZER=none.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH="$HOME/.cargo/bin:$PATH"

seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(spdy_frames spdy_header_block websocket_frames tar_unpack
    registries_conf auth_file cri_to_oci_spec)
fi

if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz.sh: cargo-fuzz is not installed (scripts/setup.sh installs it)" >&2
  exit 1
fi
if [ "${FUZZ_STABLE:-0}" != 1 ] && rustup run nightly rustc --version >/dev/null 2>&1; then
  cargo=(cargo +nightly fuzz)
  echo "fuzz.sh: $(rustup run nightly rustc --version)"
else
  cargo=(cargo fuzz)
  export RUSTC_BOOTSTRAP=1
  echo "fuzz.sh: $(rustc --version) with RUSTC_BOOTSTRAP=1"
fi
build=(--fuzz-dir "$root/fuzz" --sanitizer "${FUZZ_SANITIZER:-address}")

"${cargo[@]}" build "${build[@]}"

# libFuzzer's -jobs mode writes fuzz-0.log into the current directory.
work="$root/fuzz/target/run"
mkdir -p "$work"
failed=()
for t in "${targets[@]}"; do
  new="$root/fuzz/target/corpus-new/$t"
  mkdir -p "$new" "$root/fuzz/corpus/$t"
  echo "fuzz.sh: $t for ${seconds}s"
  start=$(date +%s)
  # libFuzzer prints a line per new input: the log keeps them, the
  # console gets the totals, or the end of the log on a failure.
  log="$work/$t.log"
  if (cd "$work" && "${cargo[@]}" run "${build[@]}" "$t" "$new" "$root/fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=30 -jobs=1 -print_final_stats=1) >"$log" 2>&1; then
    grep -E '^(Done|stat::(number_of_executed_units|new_units_added|peak_rss_mb))' "$log" || true
    echo "fuzz.sh: $t: no crash in $(($(date +%s) - start))s"
  else
    grep -E -A6 'panicked at|ERROR: ' "$log" | head -n 40 >&2 || true
    tail -n 25 "$log" >&2
    echo "fuzz.sh: $t: FAILED (input in fuzz/artifacts/$t/, log in ${log#"$root"/})" >&2
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, no crash"
