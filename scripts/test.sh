#!/usr/bin/env bash
# The project's test command (CI runs it through .ci/run): installs and starts
# the real servers the tests need (rsyslog with TLS, openssl for certificates,
# moto for S3 from PyPI), then formatting, lints, and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (warnings are errors)"
cargo clippy --locked --all-targets -- -D warnings

echo "== moto (S3 server for the object-store sink's tests)"
eval "$(scripts/start-moto.sh)"
trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT

echo "== cargo test"
cargo test --locked --all-targets
