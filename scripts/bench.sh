#!/usr/bin/env bash
# Collection benchmark (not a test): backfill throughput, CPU and peak RSS of
# the collector against the emulator (a separate process), and the share of
# the API's rate-limit ceiling achieved at 1000 req/min with 100 ms latency.
#
#   scripts/bench.sh            # full: 100k and 1M events, then the rate-limited run
#   EVENTS="100000" RATE_EVENTS=100000 scripts/bench.sh   # quicker
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS-"100000 1000000"}
RATE_EVENTS=${RATE_EVENTS:-1000000}
cargo build --release --quiet
BIN=target/release/tines-audit
WORK=$(mktemp -d)
MOCK_PID=""
cleanup() { [ -n "$MOCK_PID" ] && kill "$MOCK_PID" 2>/dev/null; rm -rf "$WORK"; }
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

config() { # port, rpm
  cat >"$WORK/c.toml" <<TOML
data_dir = "$WORK/data"
[collect]
requests_per_minute = $2
[[tenants]]
name = "bench"
domain = "http://127.0.0.1:$1"
api_key_env = "BENCH_KEY"
since = "400d"
TOML
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo
printf '%-34s %10s %10s %12s %10s %12s\n' "run" "events" "wall s" "events/s" "CPU s" "peak RSS MiB"
for n in $EVENTS; do
  port=$(free_port)
  start_mock "$port" --history "$n" --span 365d --rate-limit 0
  config "$port" 0
  rm -rf "$WORK/data"
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" env BENCH_KEY=bench-key "$BIN" collect --config "$WORK/c.toml" --no-progress --log-level warn >/dev/null
  read -r wall user sys rss <"$WORK/time"
  got=$(sqlite3 "$WORK/data/journal.db" 'select count(*) from events' 2>/dev/null || echo "?")
  python3 - "$n" "$wall" "$user" "$sys" "$rss" "$got" <<'PY'
import sys
n, wall, user, sys_, rss, got = sys.argv[1:]
n, wall, cpu = int(n), float(wall), float(user) + float(sys_)
print(f"{'backfill, unthrottled':34} {n:>10} {wall:>10.2f} {n/wall:>12,.0f} {cpu:>10.2f} {int(rss)/1024:>12.1f}")
if got != "?" and int(got) != n:
    print(f"  WARNING: journal holds {got} events, expected {n}")
PY
  stop_mock
done

[ "$RATE_EVENTS" -gt 0 ] || exit 0
port=$(free_port)
start_mock "$port" --history "$RATE_EVENTS" --span 30d --rate-limit 1000 --latency 100ms
config "$port" 980
rm -rf "$WORK/data"
/usr/bin/time -f "%e %U %S %M" -o "$WORK/time" env BENCH_KEY=bench-key "$BIN" collect --config "$WORK/c.toml" --no-progress --log-level warn >/dev/null
read -r wall user sys rss <"$WORK/time"
stats=$(curl -fsS "http://127.0.0.1:$port/_mock/stats")
python3 - "$RATE_EVENTS" "$wall" "$user" "$sys" "$rss" "$stats" <<'PY'
import json, sys
n, wall, user, sys_, rss, stats = sys.argv[1:]
n, wall, cpu, s = int(n), float(wall), float(user) + float(sys_), json.loads(stats)
print(f"{'1000 req/min limit, 100 ms latency':34} {n:>10} {wall:>10.2f} {n/wall:>12,.0f} {cpu:>10.2f} {int(rss)/1024:>12.1f}")
per_min = n / wall * 60
print()
print(f"rate-limited run: {per_min:,.0f} events/min = {per_min/500000*100:.1f}% of the 1000 x 500 = 500,000 events/min ceiling")
print(f"  requests {s['requests']}, 429 from the limit {s['rate_limited']}, injected 429 {s['injected_429']}")
PY
stop_mock
