#!/usr/bin/env bash
# Collection benchmark (not a test): backfill throughput, CPU and peak RSS of
# the collector against the emulator (a separate process), and the share of
# the API's rate-limit ceiling achieved at 1000 req/min with 100 ms latency.
# The rate-limited run paces at the default 1000 requests per key in any 60 s
# (plus the pacer's 0.5 s margin) against the emulator's strictest counting (a
# sliding window closed at both ends), from a cursor at the start of the
# emulated history (`since` = the history's fixed anchor minus its 30 d span),
# so every request reads history; 1,000,000 events are about two minutes of
# requests at the ceiling.
#
#   scripts/bench.sh            # full: 100k and 1M events, then the rate-limited run
#   EVENTS="100000" RATE_EVENTS=100000 scripts/bench.sh   # quicker
#   JOURNAL=postgres RATE_EVENTS=0 scripts/bench.sh        # the journal in PostgreSQL
#   JOURNAL="sqlite postgres" RATE_EVENTS=0 scripts/bench.sh   # both, side by side
#   EVENTS="100000 1000000 3000000" SINK=file RATE_EVENTS=0 scripts/bench.sh  # with the file sink
#
# JOURNAL lists the journals to run each size against: `sqlite` (the data
# directory, the default) and/or `postgres`. For `postgres` the script starts
# its own throwaway server (scripts/start-postgres.sh: PostgreSQL from the
# distribution's packages, fsync on, shared_buffers 128MB), stops it at exit,
# and gives every run a fresh schema (`options=-c search_path=…` in the URL,
# passed as TINES_AUDIT_JOURNAL_URL). The collector's CPU and peak RSS come from
# /usr/bin/time; with PostgreSQL the server's CPU during the run (its backends
# and background processes, read from /proc) is shown beside it, since the
# work is split between the two.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS-"100000 1000000"}
RATE_EVENTS=${RATE_EVENTS:-1000000}
JOURNAL=${JOURNAL:-sqlite}
# SINK: `none` (collection only) or `file` (the collect also delivers everything to a file sink).
SINK=${SINK:-none}
case $SINK in none | file) ;; *) echo "SINK: unknown sink '$SINK' (none, file)" >&2; exit 2 ;; esac
for j in $JOURNAL; do
  case $j in sqlite | postgres) ;; *) echo "JOURNAL: unknown journal '$j' (sqlite, postgres)" >&2; exit 2 ;; esac
done
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release/tines-audit
WORK=$(mktemp -d)
MOCK_PID=""
PG_STARTED=0
cleanup() {
  [ -n "$MOCK_PID" ] && kill "$MOCK_PID" 2>/dev/null
  if [ "$PG_STARTED" = 1 ]; then eval "$TINES_AUDIT_TEST_PG_STOP" || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_mock() { # port, extra args...
  local port=$1; shift
  TINES_API_KEY=bench-key "$BIN" mock --bind "127.0.0.1:$port" "$@" >"$WORK/mock.log" 2>&1 &
  MOCK_PID=$!
  for _ in $(seq 1 600); do
    curl -fsS "http://127.0.0.1:$port/_mock/stats" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "emulator did not start"; cat "$WORK/mock.log"; exit 1
}

stop_mock() { kill "$MOCK_PID" 2>/dev/null || true; wait "$MOCK_PID" 2>/dev/null || true; MOCK_PID=""; }

config() { # port, rpm, since
  cat >"$WORK/c.toml" <<TOML
data_dir = "$WORK/data"
[collect]
requests_per_minute = $2
[[tenants]]
name = "bench"
domain = "http://127.0.0.1:$1"
api_key_env = "BENCH_KEY"
since = "${3:-400d}"
TOML
}

if [[ " $JOURNAL " == *" postgres "* ]]; then
  eval "$(scripts/start-postgres.sh)"
  PG_STARTED=1
  # The postmaster: the parent of the server's checkpointer.
  ckpt=$(psql -X -At "$TINES_AUDIT_TEST_PG_URL" -c "select pid from pg_stat_activity where backend_type = 'checkpointer'")
  PG_PID=$(awk '{print $4}' "/proc/$ckpt/stat" 2>/dev/null || true)
  [ -n "$PG_PID" ] || { echo "could not find the PostgreSQL server's process" >&2; exit 1; }
  echo "PostgreSQL: $(psql -X -At "$TINES_AUDIT_TEST_PG_URL" -c 'show server_version'), pid $PG_PID," \
    "shared_buffers $(psql -X -At "$TINES_AUDIT_TEST_PG_URL" -c 'show shared_buffers')," \
    "fsync $(psql -X -At "$TINES_AUDIT_TEST_PG_URL" -c 'show fsync')," \
    "synchronous_commit $(psql -X -At "$TINES_AUDIT_TEST_PG_URL" -c 'show synchronous_commit')"
fi

# CPU seconds the PostgreSQL server has used so far: the postmaster, its live children
# (background processes, backends), and the children it has reaped (finished backends).
pg_cpu() {
  python3 - "$PG_PID" <<'PY'
import os, sys
tick = os.sysconf("SC_CLK_TCK")
root = sys.argv[1]
def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    return s[s.rindex(")") + 2:].split()  # fields from 3 (state) on
total = 0
f = stat(root)
total += sum(int(x) for x in f[11:15])  # utime stime cutime cstime
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        f = stat(pid)
    except OSError:
        continue
    if f[1] == root:  # ppid
        total += int(f[11]) + int(f[12])
print(total / tick)
PY
}

schema_no=0
# Points TINES_AUDIT_JOURNAL_URL at a new, empty schema of the server.
fresh_schema() {
  schema_no=$((schema_no + 1))
  local name="bench_$$_$schema_no"
  psql -X -q -v ON_ERROR_STOP=1 "$TINES_AUDIT_TEST_PG_URL" -c "CREATE SCHEMA $name"
  export TINES_AUDIT_JOURNAL_URL="$TINES_AUDIT_TEST_PG_URL?options=-c%20search_path%3D$name"
}

# Runs the collect (into a fresh journal of kind $1, sqlite or postgres) under /usr/bin/time.
collect() {
  local kind=$1
  rm -rf "$WORK/data"
  local sink_args=()
  if [ "$SINK" = file ]; then
    rm -rf "$WORK/sink" && mkdir -p "$WORK/sink"
    sink_args=(--sink "file:$WORK/sink/events.ndjson")
  fi
  if [ "$kind" = postgres ]; then
    fresh_schema
    cpu0=$(pg_cpu)
  else
    unset TINES_AUDIT_JOURNAL_URL
  fi
  # `collect` fetches and commits every window, prints "<tenant>: N new events …", then
  # brings the search index up to date: the time of that line splits the two phases.
  local t0
  t0=$(date +%s.%N)
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" env BENCH_KEY=bench-key "$BIN" collect --config "$WORK/c.toml" --no-progress --log-level warn "${sink_args[@]}" |
    while IFS= read -r line; do if [[ $line == *" new events "* ]]; then date +%s.%N >"$WORK/collected"; fi; done
  read -r wall user sys rss <"$WORK/time"
  fetch=$(python3 -c "print(f'{$(cat "$WORK/collected") - $t0:.2f}')")
  rm -f "$WORK/collected"
  # Verification of the hash chain over the whole journal (`tines-audit verify`).
  local v0
  v0=$(date +%s.%N)
  "$BIN" verify --data-dir "$WORK/data" --no-progress --log-level warn >"$WORK/verify.out" ||
    { echo "verify failed:"; cat "$WORK/verify.out"; exit 1; }
  verify=$(python3 -c "print(f'{$(date +%s.%N) - $v0:.2f}')")
  if [ "$kind" = postgres ]; then
    sleep 1 # the server reaps the collector's backends
    pg=$(python3 -c "print(f'{$(pg_cpu) - $cpu0:.2f}')")
    got=$(psql -X -At "$TINES_AUDIT_JOURNAL_URL" -c 'select count(*) from events' 2>/dev/null || echo "?")
    size=$(psql -X -At "$TINES_AUDIT_JOURNAL_URL" -c \
      "select round(sum(pg_total_relation_size(c.oid)) / 1048576.0) from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = current_schema() and c.relkind in ('r', 'm')")
    unset TINES_AUDIT_JOURNAL_URL
  else
    pg="-"
    got=$(sqlite3 "$WORK/data/journal.db" 'select count(*) from events' 2>/dev/null || echo "?")
    size=$(du -sm "$WORK/data" | cut -f1)
  fi
}

report() { # label, n
  python3 - "$1" "$2" "$wall" "$fetch" "$user" "$sys" "$rss" "$pg" "$got" "$size" "$verify" <<'PY'
import sys
label, n, wall, fetch, user, sys_, rss, pg, got, size, verify = sys.argv[1:]
n, wall, fetch, cpu, verify = int(n), float(wall), float(fetch), float(user) + float(sys_), float(verify)
print(f"{label:44} {n:>9} {fetch:>7.2f} {n/fetch:>9,.0f} {wall:>7.2f} {n/wall:>9,.0f} {cpu:>7.2f} {cpu/n*1e6:>7.1f} {pg:>7} {int(rss)/1024:>7.1f} {size:>7} {verify:>8.2f} {n/verify:>9,.0f}")
if got != "?" and int(got) != n:
    print(f"  WARNING: journal holds {got} events, expected {n}")
PY
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
# collect s / ev/s: fetch + commit of every window (the collection); total s / ev/s: the whole
# command, which then indexes for search. CPU s and RSS: the collector process; db CPU s:
# the PostgreSQL server during the command; µs/ev: the collector's CPU per event; db MiB: the journal on disk (tables and indexes);
# verify s / ev/s: `tines-audit verify` over the whole journal afterwards.
printf '%-44s %9s %7s %9s %7s %9s %7s %7s %7s %7s %7s %8s %9s\n' "run" "events" "collect" "ev/s" "total s" "ev/s" "CPU s" "µs/ev" "db CPU" "RSS MiB" "db MiB" "verify s" "ev/s"
for n in $EVENTS; do
  port=$(free_port)
  start_mock "$port" --history "$n" --span 365d --rate-limit 0
  config "$port" 0
  for j in $JOURNAL; do
    collect "$j"
    report "backfill, unthrottled, $j, sink $SINK" "$n"
  done
  stop_mock
done

[ "$RATE_EVENTS" -gt 0 ] || exit 0
for j in $JOURNAL; do
  port=$(free_port)
  # The cursor starts where the history does: every request reads history.
  anchor=$(date -u -d '-1 min' +%Y-%m-%dT%H:%M:%SZ) # a minute ago: all of it past the settle delay
  start_mock "$port" --history "$RATE_EVENTS" --span 30d --anchor "$anchor" --rate-limit 1000 --latency 100ms
  config "$port" 1000 "$(python3 -c "import datetime as d; print((d.datetime.strptime('$anchor', '%Y-%m-%dT%H:%M:%SZ') - d.timedelta(days=30)).strftime('%Y-%m-%dT%H:%M:%SZ'))")"
  collect "$j"
  report "1000 req/min limit, 100 ms latency, $j" "$RATE_EVENTS"
  stats=$(curl -fsS "http://127.0.0.1:$port/_mock/stats")
  python3 - "$RATE_EVENTS" "$fetch" "$stats" <<'PY'
import json, sys
n, wall, stats = sys.argv[1:]
n, wall, s = int(n), float(wall), json.loads(stats)
per_min = n / wall * 60
print(f"  {per_min:,.0f} events/min = {per_min/500000*100:.1f}% of the 1000 x 500 = 500,000 events/min ceiling"
      f" over {wall:.1f} s; requests {s['requests']} ({s['requests'] / wall * 60:,.0f}/min,"
      f" {n / s['requests']:.1f} events each), 429 from the limit {s['rate_limited']}, injected 429 {s['injected_429']}")
PY
  stop_mock
done
