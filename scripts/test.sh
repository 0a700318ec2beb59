#!/usr/bin/env bash
# The project's test command (CI runs it through .ci/run): installs what the
# tests need (a real rsyslog daemon with TLS, openssl for test certificates),
# then formatting, lints, and every unit and integration test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (warnings are errors)"
cargo clippy --locked --all-targets -- -D warnings

echo "== cargo test"
cargo test --locked --all-targets
