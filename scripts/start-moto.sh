#!/usr/bin/env bash
# Starts moto, a real S3 implementation (from PyPI), for the object-store
# sink's tests and benchmark. Installs it if missing, starts it in the
# background on a free loopback port, waits until it answers, and prints:
#
#   export TINES_AUDIT_TEST_S3_ENDPOINT=http://127.0.0.1:PORT
#   export MOTO_PID=PID
#
# so `eval "$(scripts/start-moto.sh)"` sets both; stop it with `kill "$MOTO_PID"`.
# The tests also work without it: each then starts (and stops) its own moto.
# MOTO_LOG=FILE keeps moto's log (one line per request) in FILE, for counting
# requests (scripts/bench-lambda.sh); by default it is removed once moto answers.
# moto 5.2.1 is pinned: it answers PutObject with `If-None-Match: *` on an
# existing key with 412, which the sink's create-only writes rely on.
set -euo pipefail
MOTO_VERSION=5.2.1
PY=${PYTHON:-python3}

installed=$("$PY" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null || true)
if [ "$installed" != "$MOTO_VERSION" ] || ! "$PY" -c 'import moto.server, flask, flask_cors' 2>/dev/null; then
  "$PY" -m pip install --quiet "moto[server]==$MOTO_VERSION" >&2
fi

log=${MOTO_LOG:-$(mktemp "${TMPDIR:-/tmp}/moto.XXXXXX.log")}
"$PY" -m moto.server -H 127.0.0.1 -p 0 >"$log" 2>&1 &
pid=$!

# werkzeug announces the port it bound: " * Running on http://127.0.0.1:PORT".
port=""
for _ in $(seq 1 600); do
  port=$(sed -n 's#.*Running on http://127\.0\.0\.1:\([0-9][0-9]*\).*#\1#p' "$log" | head -n1)
  [ -n "$port" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "moto exited:" >&2; cat "$log" >&2; exit 1
  fi
  sleep 0.1
done
if [ -z "$port" ]; then
  echo "moto did not start within 60 s:" >&2; cat "$log" >&2; kill "$pid" 2>/dev/null || true; exit 1
fi
for _ in $(seq 1 300); do
  if "$PY" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/', timeout=1)" 2>/dev/null; then
    [ -n "${MOTO_LOG:-}" ] || rm -f "$log" # moto keeps logging to the unlinked file; it goes with the process
    echo "export TINES_AUDIT_TEST_S3_ENDPOINT=http://127.0.0.1:$port"
    echo "export MOTO_PID=$pid"
    exit 0
  fi
  sleep 0.1
done
echo "moto on port $port does not answer:" >&2; cat "$log" >&2; kill "$pid" 2>/dev/null || true; exit 1
