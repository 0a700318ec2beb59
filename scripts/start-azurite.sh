#!/usr/bin/env bash
# Starts Azurite (Microsoft's Azure Storage emulator, from npm; installed into
# target/test-deps/azurite by scripts/install-test-deps.sh) for the object-store
# sink's Azure Blob tests: the blob service only, in memory, on a free loopback
# port. Waits until it listens, and prints
#
#   export TINES_AUDIT_TEST_AZURITE_ENDPOINT=http://127.0.0.1:PORT/devstoreaccount1
#   export TINES_AUDIT_TEST_AZURITE_STOP='kill PID'
#
# so `eval "$(scripts/start-azurite.sh)"` sets both and
# `eval "$TINES_AUDIT_TEST_AZURITE_STOP"` stops it. The account is Azurite's
# documented development account `devstoreaccount1` and its published key.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/test-deps/azurite/node_modules/.bin/azurite-blob
if [ ! -x "$bin" ]; then
  echo "start-azurite: $bin is missing: run scripts/install-test-deps.sh" >&2
  exit 1
fi

log=$(mktemp "${TMPDIR:-/tmp}/azurite.XXXXXX.log")
"$bin" --blobHost 127.0.0.1 --blobPort 0 --inMemoryPersistence --silent --disableTelemetry >"$log" 2>&1 &
pid=$!

# Azurite announces the port it bound: "... successfully listens on http://127.0.0.1:PORT".
for _ in $(seq 1 300); do
  port=$(sed -n 's#.*successfully listens on http://127\.0\.0\.1:\([0-9][0-9]*\).*#\1#p' "$log" | head -n1)
  if [ -n "$port" ]; then
    rm -f "$log"
    echo "export TINES_AUDIT_TEST_AZURITE_ENDPOINT=http://127.0.0.1:$port/devstoreaccount1"
    echo "export TINES_AUDIT_TEST_AZURITE_STOP='kill $pid'"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "start-azurite: azurite-blob exited:" >&2; cat "$log" >&2; exit 1
  fi
  sleep 0.1
done
echo "start-azurite: azurite-blob did not listen within 30 s:" >&2; cat "$log" >&2
kill "$pid" 2>/dev/null || true
exit 1
