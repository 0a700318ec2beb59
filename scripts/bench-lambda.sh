#!/usr/bin/env bash
# Benchmark (not a test): the seed's Lambda (scripts/bench/tines_audit_to_s3.py, the
# Google SecOps guide's tines_audit_to_s3.py) and `tines-audit collect` with an
# object-store sink, side by side, backfilling the same emulated history
# (`tines-audit mock --history N --span 30d`) into the same local S3 server (moto,
# scripts/start-moto.sh). Each run gets a bucket of its own; moto logs every request,
# so PUTs, LISTs and GETs are counted from its log by bucket.
#
#   scripts/bench-lambda.sh                         # 50k, 100k and 200k side by side, then 1M collect only
#   EVENTS=100000 BIG= scripts/bench-lambda.sh      # one size, no 1M run
#   BIG="1000000" EVENTS= scripts/bench-lambda.sh   # the 1M collect only
#   DAYS=7 ... ; CONCURRENCY=1 ...                  # history span; the sink's write_concurrency
#   LATENCY=100ms ...                               # each API response delayed so long (default: none)
#   REPEAT=3 ...                                    # side-by-side pairs per size; the ratio printed is their median
#   BIN=/path/to/tines-audit ...                    # a given binary (an older build) instead of building
#
# Both clients run unthrottled against an emulator without a rate limit (as the
# unthrottled rows of scripts/bench.sh): the Lambda never paces itself, and the
# collector's `requests_per_minute` is set to 0. The Lambda runs once with MAX_PAGES
# large enough to read the whole history in one invocation (a LOOKBACK_SECONDS of the
# span plus a day); `collect` backfills `--since` the same span. Wall, CPU (user +
# system) and peak RSS come from /usr/bin/time for each client process; "moto CPU"
# is the S3 server's CPU during the run. After each `collect`, `tines-audit verify
# --object-store` checks the lake (every event in exactly one object, every object
# in a signed digest); after each Lambda run, the events it reports are checked
# against the history. Neither check is timed.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS-"50000 100000 200000"}
BIG=${BIG-"1000000"}
DAYS=${DAYS:-30}
CONCURRENCY=${CONCURRENCY:-}
LATENCY=${LATENCY:-}
REPEAT=${REPEAT:-1}
PY=${PYTHON:-python3}
"$PY" -c 'import boto3' 2>/dev/null || "$PY" -m pip install --quiet boto3 >&2
if [ -z "${BIN:-}" ]; then # BIN=path runs another build (an older commit's) instead
  cargo build --release --quiet --bin tines-audit
  BIN=${CARGO_TARGET_DIR:-target}/release/tines-audit
fi
WORK=$(mktemp -d)
MOCK_PID=""
MOTO_PID=""
cleanup() {
  [ -n "$MOCK_PID" ] && kill "$MOCK_PID" 2>/dev/null
  [ -n "$MOTO_PID" ] && kill "$MOTO_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

MOTO_LOG="$WORK/moto.log"
eval "$(MOTO_LOG=$MOTO_LOG scripts/start-moto.sh)"
S3=$TINES_AUDIT_TEST_S3_ENDPOINT
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=us-east-1

start_mock() { # events
  local port
  port=$(free_port)
  TINES_API_KEY=bench-key "$BIN" mock --bind "127.0.0.1:$port" --history "$1" --span "${DAYS}d" --rate-limit 0 \
    ${LATENCY:+--latency "$LATENCY"} >"$WORK/mock.log" 2>&1 &
  MOCK_PID=$!
  MOCK="http://127.0.0.1:$port"
  for _ in $(seq 1 600); do
    curl -fsS "$MOCK/_mock/stats" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "emulator did not start"; cat "$WORK/mock.log"; exit 1
}
stop_mock() { kill "$MOCK_PID" 2>/dev/null || true; wait "$MOCK_PID" 2>/dev/null || true; MOCK_PID=""; }

run_no=0
new_bucket() { # label
  run_no=$((run_no + 1))
  BUCKET="bench-$1-$run_no"
  curl -fsS -X PUT "$S3/$BUCKET" >/dev/null
}

moto_cpu() { awk '{print ($14 + $15) / 100}' "/proc/$MOTO_PID/stat"; }

# Requests to $BUCKET in moto's log, and the objects left in it.
s3_counts() {
  "$PY" - "$MOTO_LOG" "$BUCKET" "$S3" <<'PY'
import re, sys, boto3
log, bucket, endpoint = sys.argv[1:]
puts = lists = gets = other = 0
pat = re.compile(r'"(\w+) /' + re.escape(bucket) + r'([/?][^ ]*)? HTTP')
for line in open(log, errors="replace"):
    m = pat.search(line)
    if not m:
        continue
    method, rest = m.group(1), m.group(2) or ""
    if method == "PUT" and rest.startswith("/") and len(rest) > 1:
        puts += 1
    elif method == "GET" and (rest.startswith("?") or rest.startswith("/?")):
        lists += 1
    elif method == "GET":
        gets += 1
    elif not (method == "PUT" and rest in ("", "/")):
        other += 1
s3 = boto3.client("s3", endpoint_url=endpoint)
objects = sum(p.get("KeyCount", 0) for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket))
print(objects, puts, lists, gets, other)
PY
}

# Runs "$@" under /usr/bin/time; sets wall, cpu, rss (MiB), mcpu (moto's CPU s).
timed() {
  local m0
  m0=$(moto_cpu)
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err" ||
    { echo "failed: $*"; cat "$WORK/out" "$WORK/err"; exit 1; }
  read -r wall user sys rss <"$WORK/time"
  cpu=$("$PY" -c "print(f'{$user + $sys:.2f}')")
  rss=$("$PY" -c "print(f'{$rss / 1024:.1f}')")
  mcpu=$("$PY" -c "print(f'{$(moto_cpu) - $m0:.2f}')")
}

row() { # label, events
  read -r objects puts lists gets other < <(s3_counts)
  printf '%-28s %9s %8s %10s %7s %8s %8s %6s %6s %6s %6s %8s\n' "$1" "$2" "$wall" \
    "$("$PY" -c "print(f'{$2 / $wall:,.0f}')")" "$cpu" "$rss" "$objects" "$puts" "$lists" "$gets" "$other" "$mcpu"
}

lambda_run() { # events
  new_bucket lambda
  timed env S3_BUCKET="$BUCKET" S3_PREFIX=tines/audit/ STATE_KEY=tines/audit/state.json \
    LOOKBACK_SECONDS=$(((DAYS + 1) * 86400)) PAGE_SIZE=500 MAX_PAGES=1000000 \
    TINES_BASE_URL="$MOCK" TINES_API_KEY=bench-key AWS_ENDPOINT_URL="$S3" \
    "$PY" scripts/bench/tines_audit_to_s3.py
  local items
  items=$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["items"])' <"$WORK/out")
  [ "$items" = "$1" ] || echo "  WARNING: the Lambda reports $items events, the history holds $1"
  row "seed Lambda (boto3)" "$1"
  lambda_wall=$wall
}

collect_run() { # events
  new_bucket collect
  rm -rf "$WORK/data"
  cat >"$WORK/c.toml" <<TOML
data_dir = "$WORK/data"
[collect]
requests_per_minute = 0
[[tenants]]
name = "bench"
domain = "$MOCK"
api_key_env = "BENCH_KEY"
since = "$((DAYS + 1))d"
[[sinks]]
type = "object_store"
name = "lake"
url = "s3://$BUCKET/tines/audit"
endpoint = "$S3"
region = "us-east-1"
access_key_id = "bench"
secret_access_key = "bench"
${CONCURRENCY:+write_concurrency = $CONCURRENCY}
TOML
  timed env BENCH_KEY=bench-key "$BIN" collect --config "$WORK/c.toml" --no-progress --log-level warn
  # Checked against what collect found: the emulator asked for 1,000,000 events holds 999,996.
  local got
  got=$(sed -n 's/^bench: \([0-9]*\) new events.*/\1/p' "$WORK/out")
  grep -q "sink lake: delivered $got events" "$WORK/out" || { echo "collect did not deliver $got events:"; cat "$WORK/out"; exit 1; }
  row "tines-audit collect" "$got"
  "$BIN" verify --config "$WORK/c.toml" --object-store lake --format json --no-progress --log-level warn \
    >"$WORK/verify.json" || { echo "verify --object-store failed:"; head -c 2000 "$WORK/verify.json"; exit 1; }
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)," \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "moto $("$PY" -c 'import moto; print(moto.__version__)'), boto3 $("$PY" -c 'import boto3; print(boto3.__version__)'), history over $DAYS days, API latency ${LATENCY:-none}"
echo
printf '%-28s %9s %8s %10s %7s %8s %8s %6s %6s %6s %6s %8s\n' run events "wall s" "events/s" "CPU s" "RSS MiB" \
  objects PUT LIST GET other "moto CPU"
for n in $EVENTS; do
  start_mock "$n"
  ratios=""
  for _ in $(seq 1 "$REPEAT"); do
    lambda_run "$n"
    collect_run "$n"
    ratios="$ratios $("$PY" -c "print(f'{$lambda_wall / $wall:.2f}')")"
  done
  echo "  Lambda / collect wall time:$ratios (median $("$PY" -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.2f}')" $ratios)x)"
  stop_mock
done
for n in $BIG; do
  start_mock "$n"
  collect_run "$n"
  stop_mock
done
