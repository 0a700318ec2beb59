#!/usr/bin/env bash
# The project's test command (CI runs it through .ci/run): formatting,
# lints, then every unit and integration test. Needs only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (warnings are errors)"
cargo clippy --locked --all-targets -- -D warnings

echo "== cargo test"
cargo test --locked --all-targets
