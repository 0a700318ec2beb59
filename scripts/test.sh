#!/usr/bin/env bash
# The project's test command (CI runs it through .ci/run): formatting,
# lints, then every unit and integration test. Needs the Rust toolchain and
# python3 with pip: the object-store sink's tests run against moto, a real S3
# implementation from PyPI, which scripts/start-moto.sh installs and starts.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (warnings are errors)"
cargo clippy --locked --all-targets -- -D warnings

echo "== moto (S3 server for the object-store sink's tests)"
eval "$(scripts/start-moto.sh)"
trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT

echo "== cargo test"
cargo test --locked --all-targets
