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
