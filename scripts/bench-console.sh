#!/usr/bin/env bash
# Console API benchmark (not a test): a journal of EVENTS emulator records over a
# year from three tenants (acme 60 %, globex 30 %, initech 10 %; each its own
# `tines-audit mock --history`, collected by one `collect`, which also builds the
# search index), served by a release `tines-audit run`. Then, over HTTP with the
# console token (one keep-alive connection, as a browser holds), for each filter:
# p50/p95 of the events page (`GET /api/v1/events`, first page of 50 with its
# total), of each facet (`GET /api/v1/events/facets`, user, operation, ip,
# country, tenant, category) and of the console page (`GET /events`); then the
# export's throughput (CSV and NDJSON, the whole transfer) and the daemon's peak
# RSS during the export of everything. Prints Markdown tables.
#
#   scripts/bench-console.sh                           # 5,000,000 events (the issue's size)
#   EVENTS=200000 REPEAT=20 scripts/bench-console.sh   # quicker
#   KEEP=1 scripts/bench-console.sh                    # keep the data dir (printed at the end)
#   DATA=/tmp/kept/data scripts/bench-console.sh       # reuse a kept journal (no collection)
#   QUIET=/work/quiet scripts/bench-console.sh         # hold that file during each timed phase
#   EXPORTS=0 scripts/bench-console.sh                 # the queries only
#
# BIN=path skips the release build. JOURNAL_URL=postgresql://… puts the journal in
# PostgreSQL instead (an empty schema, e.g. `?options=-c%20search_path%3Dbench`);
# the default is SQLite in a temporary data directory. Each query runs REPEAT
# times (default 30) after one warm-up; times are the client's (request sent to
# body read) on loopback. "Now" is the end of the emulated history. With QUIET
# set, the file exists only while collection, the queries or the exports run
# (other sessions pause their builds meanwhile); a watchdog removes it after 14
# minutes whatever happens, and so does the exit trap.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-5000000}
REPEAT=${REPEAT:-30}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=${CARGO_TARGET_DIR:-target}/release/tines-audit
fi
WORK=$(mktemp -d)
PIDS=()
RUN_PID=""
WATCHDOG=""
quiet_on() {
  [ -n "${QUIET:-}" ] || return 0
  touch "$QUIET"
  (sleep 840; rm -f "$QUIET") &
  WATCHDOG=$!
}
quiet_off() {
  [ -n "${QUIET:-}" ] || return 0
  rm -f "$QUIET"
  if [ -n "$WATCHDOG" ]; then kill "$WATCHDOG" 2>/dev/null || true; fi
  WATCHDOG=""
}
cleanup() {
  quiet_off
  if [ -n "$RUN_PID" ]; then kill "$RUN_PID" 2>/dev/null || true; fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url, what
  for _ in $(seq 1 3000); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$2 did not start" >&2
  exit 1
}
secs_since() { python3 -c "print(round($(date +%s.%N) - $1, 1))"; }

# name, seed, tenant id, share of EVENTS in per cent
TENANTS=("acme 11 4101 60" "globex 12 4102 30" "initech 13 4103 10")
declare -A PORT
for t in "${TENANTS[@]}"; do
  read -r name _ <<<"$t"
  PORT[$name]=$(free_port)
done
WEB_PORT=$(free_port)
export BENCH_KEY=bench-key-0123456789 BENCH_WEB_TOKEN=bench-console-token-0123456789
[ -n "${JOURNAL_URL:-}" ] && export TINES_AUDIT_JOURNAL_URL=$JOURNAL_URL
DATA_DIR=${DATA:-$WORK/data}
config() { # extra sections
  {
    echo "data_dir = \"$DATA_DIR\""
    printf '[collect]\nrequests_per_minute = 0\ninterval = "24h"\n'
    for t in "${TENANTS[@]}"; do
      read -r name _ <<<"$t"
      printf '[[tenants]]\nname = "%s"\ndomain = "http://127.0.0.1:%s"\napi_key_env = "BENCH_KEY"\nsince = "400d"\n' \
        "$name" "${PORT[$name]}"
    done
    echo "$1"
  } >"$WORK/c.toml"
}

config ""
ANCHOR=$(date -u +%Y-%m-%dT%H:%M:%SZ)
if [ -z "${DATA:-}" ]; then
  echo "building a journal of $EVENTS events from ${#TENANTS[@]} tenants (emulator histories over 365 days)..."
  for t in "${TENANTS[@]}"; do
    read -r name seed tid share <<<"$t"
    TINES_API_KEY=$BENCH_KEY "$BIN" mock --bind "127.0.0.1:${PORT[$name]}" --seed "$seed" --tenant-id "$tid" \
      --history $((EVENTS * share / 100)) --span 365d --anchor "$ANCHOR" --rate-limit 0 >"$WORK/mock-$name.log" 2>&1 &
    PIDS+=($!)
  done
  for t in "${TENANTS[@]}"; do
    read -r name _ <<<"$t"
    wait_http "http://127.0.0.1:${PORT[$name]}/_mock/stats" "the emulator for $name"
  done
  sleep 2 # past the settle delay of the newest record
  quiet_on
  start=$(date +%s.%N)
  "$BIN" collect --config "$WORK/c.toml" --no-progress
  echo "collected and indexed in $(secs_since "$start") s"
  quiet_off
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
  PIDS=()
fi
if [ -n "${JOURNAL_URL:-}" ]; then
  echo "journal on disk: $(psql -qtA "$JOURNAL_URL" -c "SELECT pg_size_pretty(SUM(pg_total_relation_size(c.oid))) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm')") (tables with their indexes and TOAST)"
else
  echo "journal on disk: $(du -sh "$DATA_DIR" | cut -f1) ($DATA_DIR: $(cd "$DATA_DIR" && ls -1 | tr '\n' ' '))"
fi

# The daemon serves the console; its one sync fails (the emulators are gone) and waits a day.
config "[web]
bind = \"127.0.0.1:$WEB_PORT\"
token_env = \"BENCH_WEB_TOKEN\""
"$BIN" run --config "$WORK/c.toml" >"$WORK/run.log" 2>&1 &
RUN_PID=$!
wait_http "http://127.0.0.1:$WEB_PORT/healthz" "the daemon"

quiet_on
python3 - "$WEB_PORT" "$BENCH_WEB_TOKEN" "$REPEAT" "$RUN_PID" "$WORK" <<'PY'
import calendar, http.client, json, statistics, sys, time, urllib.parse

port, token, repeat, pid, work = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
enc = urllib.parse.quote

def get(path):
    t = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": "Bearer " + token})
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        raise SystemExit(f"{path}: {r.status} {body[:300]!r}")
    return time.perf_counter() - t, (json.loads(body) if path.startswith("/api/") else body)

def timed(path):
    get(path)  # warm-up
    times = sorted(get(path)[0] * 1000 for _ in range(repeat))
    p95 = times[min(len(times) - 1, max(0, round(0.95 * len(times)) - 1))]
    return statistics.median(times), p95

_, page = get("/api/v1/events?limit=1")
print(f"journal: {page['total']:,} events; search index at {page['search_index']['position']} of {page['search_index']['max_seq']}")
# The last whole UTC day before the newest event, so reruns on a kept journal ask for the same day.
newest = page["events"][0]["created_at"][:10]
day = lambda d: time.strftime("%Y-%m-%d", time.gmtime(calendar.timegm(time.strptime(newest, "%Y-%m-%d")) + d * 86400))
top = lambda field, q="": get(f"/api/v1/events/facets?field={field}&limit=3&{q}")[1]["values"]
user = top("user", "tenant=acme&from=30d")[0]["value"]
op = top("operation", f"user={enc(user)}")[0]["value"]  # so user + operation matches
ip = top("ip", "tenant=acme&from=30d")[0]["value"]
filters = [
    ("one user (the busiest)", f"user={enc(user)}"),
    ("one operation (the user's commonest)", f"operation={enc(op)}"),
    ("one tenant, one day", f"tenant=acme&from={day(-1)}&to={newest}"),
    ("one IP (the busiest)", f"ip={enc(ip)}"),
    ("user + operation", f"user={enc(user)}&operation={enc(op)}"),
    ("everything", ""),
]
print(f"values: user {user}, operation {op}, ip {ip}")
FIELDS = ("user", "operation", "ip", "country", "tenant", "category")
fmt = lambda t: f"{t[0]:.1f} / {t[1]:.1f}"
print(f"\np50 / p95 ms, {repeat} runs each after a warm-up\n")
print("| filter | matches | events page (50, total) | console page | " + " | ".join(f"facet {f}" for f in FIELDS) + " |")
print("|---|--:|--:|--:|" + "--:|" * len(FIELDS))
sampled = set()
for name, q in filters:
    total = get(f"/api/v1/events?limit=1&{q}")[1]["total"]
    page = timed(f"/api/v1/events?limit=50&{q}")
    console = timed(f"/events?{q}")
    cells = []
    for f in FIELDS:
        path = f"/api/v1/events/facets?field={f}&{q}"
        body = get(path)[1]
        if body.get("exact") is False:
            sampled.add(body["total"])
        cells.append(fmt(timed(path)) + ("" if body.get("exact", True) else " ‡"))
    print(f"| {name} | {total:,} | {fmt(page)} | {fmt(console)} | " + " | ".join(cells) + " |", flush=True)
if sampled:
    print(f"\n‡ counted over the newest {', '.join(f'{c:,}' for c in sorted(sampled))} matches, and said so (`exact: false`)")

with open(f"{work}/filters.json", "w") as out:
    json.dump(filters, out)
PY
quiet_off

# The exports are timed apart, so each phase holds the quiet file for under 14 minutes.
[ "${EXPORTS:-1}" = 1 ] || exit 0
quiet_on
python3 - "$WEB_PORT" "$BENCH_WEB_TOKEN" "$RUN_PID" "$WORK" <<'PY'
import http.client, json, sys, time

port, token, pid, work = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
with open(f"{work}/filters.json") as f:
    filters = json.load(f)

def get(path):
    t = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": "Bearer " + token})
    r = conn.getresponse()
    n, rows = 0, 0
    while chunk := r.read(1 << 20):
        n += len(chunk)
        rows += chunk.count(b"\n")
    return time.perf_counter() - t, (r.status, n, rows)

def hwm():
    with open(f"/proc/{pid}/status") as s:
        return next(l.split()[1] + " " + l.split()[2] for l in s if l.startswith("VmHWM"))

print("\nexport (the whole transfer, one run each)\n")
print("| filter | format | rows | MB | s | rows/s | MB/s |")
print("|---|---|--:|--:|--:|--:|--:|")
for name, q in filters:
    for f in ("csv", "ndjson"):
        if name == "everything" and f == "csv":
            # VmHWM from here on is the peak of the export of everything (`5` resets it).
            before = hwm()
            with open(f"/proc/{pid}/clear_refs", "w") as c:
                c.write("5")
        secs, (status, size, lines) = get(f"/api/v1/events/export?format={f}&{q}")
        if status != 200:
            raise SystemExit(f"export {f} {q}: {status}")
        rows = lines - (1 if f == "csv" else 0)
        print(f"| {name} | {f} | {rows:,} | {size / 1e6:,.1f} | {secs:.1f} | {rows / secs:,.0f} | {size / 1e6 / secs:.1f} |", flush=True)
print(f"\ndaemon peak RSS: {before} before exporting everything (queries above, as VmHWM), {hwm()} during the two exports of everything")
PY
quiet_off
