#!/usr/bin/env bash
# Take-over benchmark (not a test): how long after a SIGKILL another instance
# carries on with the dead one's work. Two `tines-audit run` instances share a
# PostgreSQL journal (a throwaway server from scripts/start-postgres.sh, a fresh
# schema) and collect one emulated tenant with live events (`tines-audit mock`,
# its own process). Each round waits a random part of a renewal period (TTL/3),
# finds which instance holds the lease of the job
# `tenant:t0` (the `leases` table; holder is host:pid:random), SIGKILLs it, and
# polls every 100 ms until
#   - the lease is held by the other instance (a new holder, a higher token), and
#   - a new event is in the journal (max(seq) above its value at the kill),
# then starts the killed instance again and waits until both are settled before
# the next round. Prints each round and min / median / max.
#
#   scripts/bench-takeover.sh                    # lease_ttl 30s (the default), 5 rounds
#   LEASE_TTL=6s ROUNDS=5 scripts/bench-takeover.sh
#
# The target is a take-over within 2 lease TTLs. The expected figure: a lease runs
# TTL from its last renewal, renewals happen every TTL/3, and the survivor takes an
# expired lease in its next round (every TTL/3), so about 2/3 TTL to 4/3 TTL.
set -euo pipefail
cd "$(dirname "$0")/.."
LEASE_TTL=${LEASE_TTL:-30s}
ROUNDS=${ROUNDS:-5}
POLL=0.1
case $LEASE_TTL in
  *s) ttl_s=${LEASE_TTL%s} ;;
  *) echo "LEASE_TTL: give seconds, such as 30s" >&2; exit 2 ;;
esac
TENANT=t0
JOB="tenant:$TENANT"
KEY=tines-audit-demo-key
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release/tines-audit
WORK=$(mktemp -d)
MOCK_PID=""
PIDS=("" "")
PG_STARTED=0
cleanup() {
  for p in "$MOCK_PID" "${PIDS[@]}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "$MOCK_PID" "${PIDS[@]}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  if [ "$PG_STARTED" = 1 ]; then eval "$TINES_AUDIT_TEST_PG_STOP" || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
since() { python3 -c "print(f'{$(now) - $1:.1f}')"; }
die() { echo "$*" >&2; for i in 0 1; do echo "--- instance $i log (tail)" >&2; tail -n 20 "$WORK/i$i.log" >&2 || true; done; exit 1; }

eval "$(scripts/start-postgres.sh)"
PG_STARTED=1
psql -X -q -v ON_ERROR_STOP=1 "$TINES_AUDIT_TEST_PG_URL" -c "CREATE SCHEMA takeover"
URL="$TINES_AUDIT_TEST_PG_URL?options=-c%20search_path%3Dtakeover"
q() { psql -X -At -v ON_ERROR_STOP=1 "$URL" -c "$1"; }

port=$(free_port)
"$BIN" mock --bind "127.0.0.1:$port" --history 1000 --live-rate 5 >"$WORK/mock.log" 2>&1 &
MOCK_PID=$!
for _ in $(seq 1 600); do curl -fsS "http://127.0.0.1:$port/_mock/stats" >/dev/null 2>&1 && break; sleep 0.1; done

cat >"$WORK/c.toml" <<TOML
[journal]
url = "$URL"
lease_ttl = "$LEASE_TTL"
[collect]
interval = "1s"
settle_delay = "1s"
requests_per_minute = 0
[[tenants]]
name = "$TENANT"
domain = "http://127.0.0.1:$port"
api_key_env = "K"
since = "1d"
TOML

start_instance() { # index
  K=$KEY TINES_AUDIT_LOG=info "$BIN" run --config "$WORK/c.toml" --data-dir "$WORK/data$1" >/dev/null 2>>"$WORK/i$1.log" &
  PIDS[$1]=$!
}

# "holder token" of the job's lease while it is unexpired, else nothing.
lease() {
  q "SELECT holder || ' ' || token FROM leases WHERE job = '$JOB'
     AND expires_at_ms > (extract(epoch FROM clock_timestamp()) * 1000)::bigint"
}
holder_pid() { local h=${1%:*}; echo "${h##*:}"; }
max_seq() { q "SELECT COALESCE(max(seq), 0) FROM events"; }

# Settled: both instances alive, each holding a lease (the tenant and the search indexer
# are the two jobs: one each once they have rebalanced), and an event committed since
# (collection runs).
settle() {
  local deadline=$((SECONDS + 10 * ttl_s + 60)) seq0 l
  seq0=$(max_seq 2>/dev/null || echo 0)
  while [ $SECONDS -lt $deadline ]; do
    for i in 0 1; do kill -0 "${PIDS[$i]}" 2>/dev/null || die "instance $i exited"; done
    l=$(lease 2>/dev/null || true)
    if [ -n "$l" ] && [ "$(q "SELECT count(DISTINCT holder) FROM leases
          WHERE expires_at_ms > (extract(epoch FROM clock_timestamp()) * 1000)::bigint
          AND (holder LIKE '%:${PIDS[0]}:%' OR holder LIKE '%:${PIDS[1]}:%')")" = 2 ] &&
      [ "$(max_seq)" -gt "$seq0" ]; then
      return 0
    fi
    sleep 0.5
  done
  die "the instances did not settle within $((10 * ttl_s + 60)) s"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "PostgreSQL $(q 'show server_version' | cut -d' ' -f1), lease_ttl $LEASE_TTL, 2 instances, 1 tenant (emulator, 5 live events/s), $ROUNDS rounds"
start_instance 0
start_instance 1
settle

printf '\n%-6s %-18s %12s %12s %14s %14s\n' round killed "left on lease" "lease taken" "first event" "new token"
: >"$WORK/results"
for r in $(seq 1 "$ROUNDS"); do
  # Settling ends just after a lease changed hands; kill at a random moment of the
  # renewal cycle (TTL/3) instead, as a crash would.
  sleep "$(python3 -c "import random; print(f'{random.uniform(0, $ttl_s / 3):.2f}')")"
  holder="" token=""
  until [ -n "$holder" ]; do read -r holder token <<<"$(lease)" || true; [ -n "$holder" ] || sleep "$POLL"; done
  pid=$(holder_pid "$holder")
  victim=""
  for i in 0 1; do [ "${PIDS[$i]}" = "$pid" ] && victim=$i; done
  [ -n "$victim" ] || die "the lease's holder $holder is neither instance (${PIDS[*]})"
  left=$(q "SELECT round((expires_at_ms - (extract(epoch FROM clock_timestamp()) * 1000)::bigint) / 1000.0, 1) FROM leases WHERE job = '$JOB'")
  t0=$(now)
  kill -KILL "$pid"
  wait "$pid" 2>/dev/null || true
  seq0=$(max_seq)
  took="" event="" newtoken=""
  deadline=$((SECONDS + 5 * ttl_s + 60))
  while [ $SECONDS -lt $deadline ] && { [ -z "$took" ] || [ -z "$event" ]; }; do
    if [ -z "$took" ]; then
      read -r h t <<<"$(lease)" || true
      if [ -n "${h:-}" ] && [ "$h" != "$holder" ] && [ "$t" -gt "$token" ]; then took=$(since "$t0"); newtoken=$t; fi
    fi
    if [ -z "$event" ] && [ "$(max_seq)" -gt "$seq0" ]; then event=$(since "$t0"); fi
    sleep "$POLL"
  done
  [ -n "$took" ] && [ -n "$event" ] || die "round $r: no take-over within $((5 * ttl_s + 60)) s (lease: ${took:-none}, event: ${event:-none})"
  printf '%-6s %-18s %11ss %11ss %13ss %14s\n' "$r" "instance $victim" "$left" "$took" "$event" "$token -> $newtoken"
  echo "$took $event" >>"$WORK/results"
  start_instance "$victim"
  settle
done

python3 - "$WORK/results" "$ttl_s" <<'PY'
import statistics, sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1])]
ttl = float(sys.argv[2])
print()
print(f"{'':24} {'min':>7} {'median':>7} {'max':>7}   (seconds after the SIGKILL; 2 TTLs = {2 * ttl:.0f} s)")
for name, col in (("lease taken over", 0), ("first new event", 1)):
    v = [r[col] for r in rows]
    print(f"{name:24} {min(v):>7.1f} {statistics.median(v):>7.1f} {max(v):>7.1f}")
PY
