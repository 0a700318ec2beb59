#!/usr/bin/env bash
# Freshness benchmark (not a test): how long an event takes from being made in
# the emulator to a line in the file sink, and to an alert in the alert output,
# with `tines-audit run` at its default collection settings (interval 60 s,
# settle delay 10 s, quick look every 5 s), and what it costs in requests.
#
#   scripts/bench-freshness.sh                       # default settings, then the same with the quick look off
#   RUNS="default" MEASURE=120 scripts/bench-freshness.sh   # quicker
#
# The emulator (a separate process, 100 ms latency, the 1000/min limit) makes
# LIVE_RATE events a second. A poller reads the file sink and the alerts file
# (`<stem>.alerts.<ext>`, from `[[detect.outputs]] type = "sink"`) every 50 ms
# and notes when each event's line first appears. Latency is that moment minus
# the record's `created_at`, which is whole seconds (the second the emulator
# made it in), so each figure is up to 1 s pessimistic. Events made in the
# MEASURE seconds after a WARMUP (the first sync and the detector's start) are
# counted; the poller keeps reading for TAIL seconds after, longer than the
# slowest path (interval + settle), so no slow event is missed. Detection runs
# one rule matching most operations, with suppression off, so nearly every
# event raises one alert. Requests/min is the emulator's count over the
# measured span, all requests (settled syncs, quick looks, the clock probe).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-"default off"}
LIVE_RATE=${LIVE_RATE:-2}
WARMUP=${WARMUP:-20}
MEASURE=${MEASURE:-180}
TAIL=${TAIL:-80}
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
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mkdir -p "$WORK/rules"
cat >"$WORK/rules/bench.yml" <<'YML'
title: Bench rule matching most operations
id: bench_most_operations
status: experimental
description: Raises an alert for nearly every event, so the benchmark has one per event.
logsource:
  product: tines
  service: audit
detection:
  selection:
    operation_name|contains: e
  condition: selection
level: low
YML

echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "emulator: $LIVE_RATE live events/s, 100 ms latency, 1000 requests/min limit; measured: events made in $MEASURE s after a $WARMUP s warm-up"
echo
printf '%-28s %7s %8s %8s %8s %7s %8s %8s %8s %9s\n' "run" "events" "file p50" "file p99" "file max" "alerts" "alert p50" "alert p99" "alert max" "req/min"
for run in $RUNS; do
  case $run in
    default) quick="" ;;
    off) quick='quick_look_every = "off"' ;;
    *) quick="quick_look_every = \"$run\"" ;;
  esac
  port=$(free_port)
  TINES_API_KEY=bench-key "$BIN" mock --bind "127.0.0.1:$port" --history 2000 --span 1d --live-rate "$LIVE_RATE" --latency 100ms >"$WORK/mock.log" 2>&1 &
  MOCK_PID=$!
  for _ in $(seq 1 600); do curl -fsS "http://127.0.0.1:$port/_mock/stats" >/dev/null 2>&1 && break; sleep 0.1; done
  rm -rf "$WORK/data" "$WORK/out"
  cat >"$WORK/c.toml" <<TOML
data_dir = "$WORK/data"
[collect]
$quick
[[tenants]]
name = "bench"
domain = "http://127.0.0.1:$port"
api_key_env = "BENCH_KEY"
since = "2d"
[[sinks]]
type = "file"
name = "archive"
path = "$WORK/out/audit.ndjson"
[detect]
rules = ["$WORK/rules"]
suppress = "0s"
[[detect.outputs]]
type = "sink"
sink = "archive"
TOML
  BENCH_KEY=bench-key "$BIN" run --config "$WORK/c.toml" --log-level warn >"$WORK/run.log" 2>&1 &
  RUN_PID=$!
  python3 - "$run${quick:+ ($quick)}" "$WORK/out/audit.ndjson" "$WORK/out/audit.alerts.ndjson" "http://127.0.0.1:$port/_mock/stats" "$WARMUP" "$MEASURE" "$TAIL" <<'PY'
import json, os, sys, time, urllib.request
from datetime import datetime
label, events_path, alerts_path, stats_url, warmup, measure, tail = sys.argv[1:]
warmup, measure, tail = float(warmup), float(measure), float(tail)

def ts(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=__import__("datetime").timezone.utc).timestamp()

def requests():
    return json.load(urllib.request.urlopen(stats_url))["requests"]

class Follow:
    def __init__(self, path): self.path, self.pos, self.buf = path, 0, b""
    def lines(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos); data = f.read()
        except FileNotFoundError:
            return []
        self.pos += len(data); self.buf += data
        *done, self.buf = self.buf.split(b"\n")
        return [json.loads(l) for l in done if l.strip()]

start = time.time()
t0, t1 = start + warmup, start + warmup + measure
events, alerts = Follow(events_path), Follow(alerts_path)
seen, alerted = {}, {}
r0 = r1 = None
while time.time() < t1 + tail:
    now = time.time()
    for rec in events.lines():
        seen.setdefault(rec["id"], (ts(rec["created_at"]), now))
    for a in alerts.lines():
        for e in a.get("events", []):
            alerted.setdefault(e["id"], (ts(e["created_at"]), now))
    if r0 is None and now >= t0: r0, r0_at = requests(), now
    if r1 is None and now >= t1: r1, r1_at = requests(), now
    time.sleep(0.05)

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")

def window(d):
    return [arrived - made for made, arrived in d.values() if t0 <= made < t1]

f, a = window(seen), window(alerted)
rpm = (r1 - r0) / (r1_at - r0_at) * 60
print(f"{label:28} {len(f):>7} {pct(f,50):>8.1f} {pct(f,99):>8.1f} {max(f, default=float('nan')):>8.1f} {len(a):>7} {pct(a,50):>8.1f} {pct(a,99):>8.1f} {max(a, default=float('nan')):>8.1f} {rpm:>9.1f}")
PY
  # Every event made in the emulator is in the file (nothing lost or doubled on the way).
  kill "$RUN_PID"; wait "$RUN_PID" 2>/dev/null || true; RUN_PID=""
  python3 - "$WORK/out/audit.ndjson" "http://127.0.0.1:$port/_mock/ids" <<'PY'
import json, sys, urllib.request
ids = [json.loads(l)["id"] for l in open(sys.argv[1]) if l.strip()]
made = set(json.load(urllib.request.urlopen(sys.argv[2])))
doubled = len(ids) - len(set(ids))
extra = set(ids) - made
if doubled or extra:
    print(f"  WARNING: {doubled} ids twice in the file, {len(extra)} ids the emulator never made")
PY
  kill "$MOCK_PID"; wait "$MOCK_PID" 2>/dev/null || true; MOCK_PID=""
done
