#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test (unit tests, the
# backend conformance suite, and the end-to-end tests that start real nodes and real clients).
# Debug builds keep a clean-clone run short; benchmarks are separate and use release builds.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each `== phase` prints how long it took when it ends, and a table of all of them at exit
# (also when one fails), so a slow phase shows in CI's log.
PHASE_NAMES=()
PHASE_SECONDS=()
phase_name=""
phase_start=0

# Ends the current phase, if any, printing its time.
end_phase() {
  if [ -n "$phase_name" ]; then
    local took=$((SECONDS - phase_start))
    echo "== $phase_name: ${took}s"
    PHASE_NAMES+=("$phase_name")
    PHASE_SECONDS+=("$took")
    phase_name=""
  fi
}

# Ends the current phase and starts the one named "$1".
phase() {
  end_phase
  phase_name="$1"
  phase_start=$SECONDS
  echo "== $1"
}

# The summary table: phase, seconds (the phase that failed, if one did, says so).
summary() {
  local status=$?
  if [ "$status" != 0 ] && [ -n "$phase_name" ]; then
    phase_name="$phase_name (failed)"
  fi
  end_phase
  [ "${#PHASE_NAMES[@]}" -gt 0 ] || return 0
  echo "== phase times"
  printf '%-56s %8s\n' phase seconds
  local i
  for i in "${!PHASE_NAMES[@]}"; do
    printf '%-56s %8s\n' "${PHASE_NAMES[$i]}" "${PHASE_SECONDS[$i]}"
  done
  printf '%-56s %8s\n' total "$SECONDS"
}
trap summary EXIT

if ! command -v cargo >/dev/null 2>&1; then
  echo "test.sh: cargo is required (install Rust with rustup)" >&2
  exit 1
fi

# Cluster tests start their own redis-server on a free port; install it if this machine lacks it.
if ! command -v redis-server >/dev/null 2>&1 && [ -z "${REDIS_SERVER:-}" ]; then
  phase "installing redis-server (apt-get)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
  command -v redis-server >/dev/null 2>&1 || { echo "test.sh: redis-server is required" >&2; exit 1; }
fi

# The long-polling test puts a real nginx (round-robin, not sticky) in front of two nodes.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ] && [ -z "${NGINX:-}" ]; then
  phase "installing nginx (apt-get)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx >/dev/null
  # Debian starts the packaged service on port 80; the tests run their own nginx.
  $SUDO service nginx stop >/dev/null 2>&1 || true
fi

# The browser tests drive Debian's Chromium with playwright-core (which downloads no browser).
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ] && [ -z "${CHROMIUM:-}" ]; then
  phase "installing chromium (apt-get)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  command -v chromium >/dev/null 2>&1 || { echo "test.sh: chromium is required" >&2; exit 1; }
fi
# The TypeScript SDK and the web pages need Node.js 20 or newer and npm.
if ! command -v npm >/dev/null 2>&1; then
  phase "installing nodejs and npm (apt-get)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "test.sh: Node.js 20 or newer is required (found $(node --version))" >&2
  exit 1
fi

if cargo fmt --version >/dev/null 2>&1; then
  phase "cargo fmt --check"
  cargo fmt --all -- --check
else
  echo "test.sh: rustfmt not installed; skipping the format check" >&2
fi

# Lints while building: clippy-driver compiles the workspace's own crates (dependencies are
# built by plain rustc, as always), so one build gives both the lints (denied, as `cargo clippy
# --workspace --all-targets -- -D warnings` would) and the test binaries. A separate `cargo
# clippy` would build every crate a second time in check mode: on two cores that was 130 s of
# a 345 s run. The two variables are how `cargo clippy` itself drives clippy-driver; every
# cargo command below (the smoke's and the quick start's builds too) keeps them, so nothing is
# built twice. Without the clippy component, the tests still run, unlinted.
CLIPPY_DRIVER="$(rustc --print sysroot)/bin/clippy-driver"
if [ -x "$CLIPPY_DRIVER" ]; then
  export RUSTC_WORKSPACE_WRAPPER="$CLIPPY_DRIVER"
  export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
  build_phase="build every target, with clippy's lints denied"
else
  echo "test.sh: clippy not installed; building without lints" >&2
  build_phase="build every target (no clippy)"
fi
phase "$build_phase"
cargo test --workspace --all-targets --locked --no-run

# Most tests wait on sockets, processes and timers, not the CPU: the end-to-end binary takes
# 57 s at the default two threads (one per core) and 23 s at six.
phase "cargo test"
RUST_TEST_THREADS="${RUST_TEST_THREADS:-6}" cargo test --workspace --all-targets --locked

# The TypeScript SDK (clients/js) against target/debug/switchboard, the check that the pages
# embedded in the binary (crates/api/web) are a fresh build of their sources, and the browser
# tests in headless Chromium (screenshots in clients/js/artifacts/).
phase "npm ci (clients/js)"
npm --prefix clients/js ci --no-audit --no-fund --loglevel=error
phase "JS SDK: build, tests against a real node, docs example"
npm --prefix clients/js run --silent build
npm --prefix clients/js test
phase "web assets match a fresh build (npm run check:web)"
npm --prefix clients/js run --silent check:web
phase "browser tests (headless Chromium)"
npm --prefix clients/js run test:browser

# Socket.IO clients: the official socket.io-client (locked in tests/socketio/package-lock.json)
# against real nodes this harness starts itself (and real Redis and nginx for cluster tests).
# Test files run in parallel; each starts and kills its own processes.
phase "Socket.IO clients (npm ci, node --test)"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "test.sh: Node.js (node and npm, 20 or later) is required for the Socket.IO tests" >&2
  exit 1
fi
(
  cd tests/socketio
  npm ci --no-audit --no-fund --loglevel=error
  SWITCHBOARD_BIN="$PWD/../../target/debug/switchboard" node --test --test-concurrency=4 \
    --test-timeout=120000 test/
)

phase "benchmark smoke (seconds-long run of every scenario)"
bench/smoke.sh target/debug/switchboard

# The chaos soak, one minute: every kind of chaos at least once (three SIGKILLs, a drain, a
# Redis restart) under 60 SDK clients; fails on any lost, duplicated or out-of-order message.
# (`cargo test` builds the switchboard binary for the e2e tests, but not switchboard-soak's.)
phase "chaos soak, 1 minute (scripts/soak.sh)"
cargo build --locked -p switchboard-soak
scripts/soak.sh --minutes 1 --clients 60 --kill-every 15 --drain-every 30 --redis-every 45 \
  --settle 60 --bin-dir target/debug

phase "quick start (the README's run and curl commands on a fresh node)"
scripts/quickstart.sh
