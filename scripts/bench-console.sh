#!/usr/bin/env bash
# Console API benchmark (not a test): a journal of EVENTS emulator records over a
# year (`tines-audit mock --history` + `collect`, which also builds the search
# index), served by `tines-audit run`; then, over HTTP with the console token,
# p50/p95 of the events page (first page of 50, with its total) and of facets
# for indexed filters, and export throughput in rows/s (CSV and NDJSON).
#
#   scripts/bench-console.sh                      # 5,000,000 events (the issue's size)
#   EVENTS=200000 REPEAT=20 scripts/bench-console.sh   # quicker
#   BIN=target/release/tines-audit KEEP=1 scripts/bench-console.sh  # no build; keep the data dir
#   DATA=/tmp/kept/data EVENTS=5000000 scripts/bench-console.sh     # reuse a kept journal
#
# JOURNAL_URL=postgresql://… puts the journal in PostgreSQL instead (an empty
# schema, e.g. `?options=-c%20search_path%3Dbench`); the default is SQLite in a
# temporary data directory. Each query runs REPEAT times (default 30) after one
# warm-up; times are the client's (request sent to body read) on loopback.
# "Now" is the end of the emulated history, so `30d` filters cover a month.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-5000000}
REPEAT=${REPEAT:-30}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=${CARGO_TARGET_DIR:-target}/release/tines-audit
fi
WORK=$(mktemp -d)
MOCK_PID=""
RUN_PID=""
cleanup() {
  [ -n "$RUN_PID" ] && kill "$RUN_PID" 2>/dev/null
  [ -n "$MOCK_PID" ] && kill "$MOCK_PID" 2>/dev/null
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url, what
  for _ in $(seq 1 1200); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$2 did not start" >&2
  exit 1
}

MOCK_PORT=$(free_port)
WEB_PORT=$(free_port)
export BENCH_KEY=bench-key-0123456789 BENCH_WEB_TOKEN=bench-console-token-0123456789
[ -n "${JOURNAL_URL:-}" ] && export TINES_AUDIT_JOURNAL_URL=$JOURNAL_URL
DATA_DIR=${DATA:-$WORK/data}
config() { # extra sections
  cat >"$WORK/c.toml" <<TOML
data_dir = "$DATA_DIR"
[collect]
requests_per_minute = 0
interval = "24h"
[[tenants]]
name = "bench"
domain = "http://127.0.0.1:$MOCK_PORT"
api_key_env = "BENCH_KEY"
since = "400d"
$1
TOML
}

config ""
if [ -z "${DATA:-}" ]; then
  echo "building a journal of $EVENTS events (emulator history over 365 days)..."
  TINES_API_KEY=$BENCH_KEY "$BIN" mock --bind "127.0.0.1:$MOCK_PORT" --history "$EVENTS" --span 365d \
    --rate-limit 0 >"$WORK/mock.log" 2>&1 &
  MOCK_PID=$!
  wait_http "http://127.0.0.1:$MOCK_PORT/_mock/stats" "the emulator"
  sleep 2 # past the settle delay of the newest record
  start=$(date +%s.%N)
  "$BIN" collect --config "$WORK/c.toml" --no-progress
  echo "collected and indexed in $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"
  kill "$MOCK_PID"; wait "$MOCK_PID" 2>/dev/null || true; MOCK_PID=""
fi

# The daemon serves the console; its one sync fails (the emulator is gone) and waits a day.
config "[web]
bind = \"127.0.0.1:$WEB_PORT\"
token_env = \"BENCH_WEB_TOKEN\""
"$BIN" run --config "$WORK/c.toml" >"$WORK/run.log" 2>&1 &
RUN_PID=$!
wait_http "http://127.0.0.1:$WEB_PORT/healthz" "the daemon"

python3 - "http://127.0.0.1:$WEB_PORT" "$BENCH_WEB_TOKEN" "$REPEAT" <<'PY'
import json, statistics, sys, time, urllib.parse, urllib.request

base, token, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])

def get(path, sink=False):
    req = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + token})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=3600) as r:
        if sink:
            n, rows = 0, 0
            while chunk := r.read(1 << 20):
                n += len(chunk)
                rows += chunk.count(b"\n")
            return time.perf_counter() - t, (n, rows)
        body = r.read()
    return time.perf_counter() - t, json.loads(body)

_, page = get("/api/v1/events?limit=1")
print(f"journal: {page['total']} events; search index at {page['search_index']['position']} of {page['search_index']['max_seq']}")
top = lambda field, q="": get(f"/api/v1/events/facets?field={field}&limit=3&{q}")[1]["values"]
user = top("user", "from=30d")[0]["value"]
op = top("operation", f"user={urllib.parse.quote(user)}")[0]["value"]  # so user + operation matches
ip = top("ip", "from=30d")[0]["value"]
net = ".".join(ip.split(".")[:2]) + ".0.0/16" if ip.count(".") == 3 else ip
enc = urllib.parse.quote
filters = [
    ("everything", ""),
    ("last 30 days", "from=30d"),
    ("one user, 30 days", f"user={enc(user)}&from=30d"),
    ("one operation, 365 days", f"operation={enc(op)}"),
    ("one user + one operation, 365 days", f"user={enc(user)}&operation={enc(op)}"),
    ("category credential, 90 days", "category=credential&from=90d"),
    ("one address, 30 days", f"ip={enc(ip)}&from=30d"),
    ("one network /16, 30 days", f"ip={enc(net)}&from=30d"),
    ("one user, excluding an operation, 30 days", f"user={enc(user)}&from=30d&q={enc('-operation:' + op)}"),
    ("free text, 30 days", f"from=30d&q={enc('credential')}"),
]

def timed(path):
    get(path)  # warm-up
    times = sorted(get(path)[0] * 1000 for _ in range(repeat))
    p95 = times[min(len(times) - 1, max(0, round(0.95 * len(times)) - 1))]
    return statistics.median(times), p95

print(f"\n{'query':44} {'matches':>9}  {'page p50/p95 ms':>17}  {'facet user p50/p95':>19}  {'facet operation':>17}  {'facet country':>17}")
for name, q in filters:
    total = get(f"/api/v1/events?limit=1&{q}")[1]["total"]
    page = timed(f"/api/v1/events?limit=50&{q}")
    cells = [timed(f"/api/v1/events/facets?field={f}&{q}") for f in ("user", "operation", "country")]
    fmt = lambda t: f"{t[0]:.1f} / {t[1]:.1f}"
    print(f"{name:44} {total:>9}  {fmt(page):>17}  {fmt(cells[0]):>19}  {fmt(cells[1]):>17}  {fmt(cells[2]):>17}")

print("\nexport (whole transfer, one run each)")
for name, q in [("everything", ""), ("last 30 days", "from=30d")]:
    for fmt in ("csv", "ndjson"):
        secs, (size, lines) = get(f"/api/v1/events/export?format={fmt}&{q}", sink=True)
        rows = lines - (1 if fmt == "csv" else 0)
        print(f"  {name:14} {fmt:6} {rows:>9} rows {size / 1e6:9.1f} MB {secs:8.1f} s  {rows / secs:>10,.0f} rows/s")
PY
if [ -r "/proc/$RUN_PID/status" ]; then
  echo "daemon peak RSS: $(awk '/VmHWM/ {print $2, $3}' "/proc/$RUN_PID/status")"
fi
