#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test (unit tests, the
# backend conformance suite, and the end-to-end tests that start real nodes and real clients).
# Debug builds keep a clean-clone run short; benchmarks are separate and use release builds.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "test.sh: cargo is required (install Rust with rustup)" >&2
  exit 1
fi

# Cluster tests start their own redis-server on a free port; install it if this machine lacks it.
if ! command -v redis-server >/dev/null 2>&1 && [ -z "${REDIS_SERVER:-}" ]; then
  echo "== installing redis-server (apt-get)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
  command -v redis-server >/dev/null 2>&1 || { echo "test.sh: redis-server is required" >&2; exit 1; }
fi

# The long-polling test puts a real nginx (round-robin, not sticky) in front of two nodes.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ] && [ -z "${NGINX:-}" ]; then
  echo "== installing nginx (apt-get)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx >/dev/null
  # Debian starts the packaged service on port 80; the tests run their own nginx.
  $SUDO service nginx stop >/dev/null 2>&1 || true
fi

if cargo fmt --version >/dev/null 2>&1; then
  echo "== cargo fmt --check"
  cargo fmt --all -- --check
else
  echo "test.sh: rustfmt not installed; skipping the format check" >&2
fi

if cargo clippy --version >/dev/null 2>&1; then
  echo "== cargo clippy"
  cargo clippy --workspace --all-targets --locked -- -D warnings
else
  echo "test.sh: clippy not installed; skipping lints" >&2
fi

echo "== cargo test"
cargo test --workspace --locked

echo "== benchmark smoke (seconds-long run of every scenario)"
bench/smoke.sh target/debug/switchboard
