# Vordr tasks. `just run` starts the daemon; `just test` runs every test.

export PATH := env_var('HOME') + "/.cargo/bin:" + env_var('PATH')

# Build in release mode and run `vordr serve` with the embedded default config.
run *ARGS: build-release
    ./target/release/vordr serve {{ARGS}}

build-release:
    cargo build --release -p vordr -p vordr-shim

# Every test: unit tests and end-to-end tests against real pods (needs root).
test:
    cargo build -p vordr -p vordr-shim
    cargo test --workspace --no-fail-fast

# Every cargo fuzz target (fuzz/) for SECONDS each, one at a time; a crash or a
# broken invariant fails (the input lands in fuzz/artifacts/TARGET/).
fuzz SECONDS="60":
    ./scripts/fuzz.sh {{SECONDS}}

# Needs root; the first run fetches QEMU and debootstraps the guest into
# target/guest/ (docs/testing-cgroup2.md). The plan lists the tests run.
# The cgroup e2e tests in a pure cgroup v2 QEMU guest (systemd PID 1), both drivers.
test-cgroup2 PLAN="scripts/guest/cgroup2.txt":
    ./scripts/guest/e2e.sh {{PLAN}}

# The checks are in scripts/guest/jobs/systemd.sh; a stand-in kubelet.service
# and kubelet config give the installer's switch something real to act on.
# vordr install / uninstall --host-root / under a real systemd, in the same guest.
test-systemd DRIVER="systemd":
    ./scripts/guest/systemd.sh {{DRIVER}}

# By hand, not in CI: CRITEST=/path/to/critest (v1.32, built outside the
# repository); images from the test bench's registry store (docs/testing-cgroup2.md).
# critest's runtime specs against Vordr in the cgroup v2 guest, one driver.
critest-cgroup2 DRIVER="systemd":
    ./scripts/guest/critest.sh {{DRIVER}}

# Formatting and lints, as CI runs them; the deploy/k8s manifests against
# the Kubernetes 1.35 schemas.
check:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    python3 scripts/validate-manifests.py

# The installer image of deploy/k8s from the release binaries, pushed to
# REGISTRY as REGISTRY/vordr-installer:VERSION (FLAGS: --tag TAG, --insecure
# for a registry without TLS; credentials from `skopeo login`).
image REGISTRY *FLAGS: build-release
    ./scripts/image.sh {{REGISTRY}} {{FLAGS}}

# Fault injection and a longer chaos run: kill -9 of the daemon at every
# crash point and at random moments of ROUNDS lifecycles, then a leak count;
# then a stalled registry, 2,000 half-open streaming connections and a held
# database, each while CRI keeps answering (figures printed).
chaos ROUNDS="200":
    cargo build -p vordr -p vordr-shim
    VORDR_CHAOS_ROUNDS={{ROUNDS}} cargo test -p vordr-e2e --test faults -- --nocapture --test-threads 1
    cargo test -p vordr-e2e --test images a_stalled_registry -- --nocapture
    cargo test -p vordr-e2e --test streaming half_open -- --nocapture

# Pod start, image pull and image list benchmarks, side by side with containerd 1.6.
bench ITERATIONS="30": build-release
    ./bench/vs-containerd.sh {{ITERATIONS}}

# The same benchmarks with Vordr on the CNI driver, calling the same config
# list and plugins as containerd.
bench-cni ITERATIONS="30": build-release
    NETWORK=cni ./bench/vs-containerd.sh {{ITERATIONS}}

# Prove the SPARK policy with gnatprove, when it is installed (it is not in
# Debian bookworm, PyPI or npm); the exhaustive tests check it either way.
prove:
    @if command -v gnatprove >/dev/null; then \
        gnatprove -P crates/vordr-gatekeeper/ada/gatekeeper.gpr --level=2 --report=all; \
    else \
        echo "gnatprove is not installed here: nothing proved. cargo test -p vordr-gatekeeper checks every input combination instead."; \
    fi
