#!/usr/bin/env bash
# Soak test (not part of CI): the emulator with live events and 10% faults
# (429, 5xx, truncated bodies, connection resets, latency spikes), a Splunk HEC
# receiver that goes down and comes back, S3 (moto) and file sinks, while the
# collector (`tines-audit run`) is killed with SIGKILL at random moments, over
# and over. At the end: the journal, the file sink and the object-store sink
# must hold every emulator id exactly once, and HEC each at least once.
# The emulator's clock is off from ours (CLOCK_OFFSET, default -3m) and 10% of
# live events reach it late, up to MAX_LATENESS (default 15m): far past the
# 60 s overlap, so only reconciliation (every 30 s in the daemon, and once more
# with `reconcile` before the verdict) can bring them in.
#
#   scripts/soak.sh                                    # 10 minutes
#   DURATION=1800 CLOCK_OFFSET=5m scripts/soak.sh      # longer, API ahead
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-600}
CLOCK_OFFSET=${CLOCK_OFFSET:--3m}
MAX_LATENESS=${MAX_LATENESS:-15m}
cargo build --release --quiet
BIN=$PWD/target/release/tines-audit
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; pkill -9 -f "$WORK/c.toml" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

eval "$(scripts/start-moto.sh)"; PIDS+=("$MOTO_PID")
curl -fsS -X PUT "$TINES_AUDIT_TEST_S3_ENDPOINT/soak-bucket" >/dev/null

MOCK_PORT=$(free_port)
TINES_API_KEY=soak-key "$BIN" mock --bind "127.0.0.1:$MOCK_PORT" --history 20000 --span 7d \
  --live-rate 20 --late-fraction 0.1 --max-lateness "$MAX_LATENESS" --clock-offset="$CLOCK_OFFSET" \
  --fault-rate 0.10 --fault-retry-after 1 --latency-spike-rate 0.02 --latency-spike 2s \
  >"$WORK/mock.log" 2>&1 &
PIDS+=($!)
HEC_PORT=$(free_port)
python3 scripts/soak/hec_receiver.py --port "$HEC_PORT" --token 00000000-1111-2222-3333-444444444444 \
  --ids "$WORK/hec.ids" --down-flag "$WORK/hec.down" &
PIDS+=($!)
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$MOCK_PORT/_mock/stats" >/dev/null 2>&1 && break; sleep 0.1; done

cat >"$WORK/c.toml" <<TOML
data_dir = "$WORK/data"
[collect]
interval = "2s"
settle_delay = "5s"
overlap = "60s"
reconcile_every = "30s"
reconcile_window = "1h"
reconcile_slice = "2m"
[[tenants]]
name = "soak"
domain = "http://127.0.0.1:$MOCK_PORT"
api_key_env = "SOAK_KEY"
since = "8d"
[[sinks]]
type = "file"
name = "archive"
path = "$WORK/out/audit.ndjson"
max_bytes = 5000000
[[sinks]]
type = "object_store"
name = "lake"
url = "s3://soak-bucket/tines"
endpoint = "$TINES_AUDIT_TEST_S3_ENDPOINT"
region = "us-east-1"
access_key_id = "soak"
secret_access_key = "soak"
roll_age = "5s"
[[sinks]]
type = "splunk_hec"
name = "splunk"
endpoint = "http://127.0.0.1:$HEC_PORT"
token = "00000000-1111-2222-3333-444444444444"
TOML

echo "soak: ${DURATION}s of SIGKILLs against the collector; work dir $WORK"
kills=0; outages=0; start=$(date +%s); next_outage=$((start + 45))
while [ $(( $(date +%s) - start )) -lt "$DURATION" ]; do
  SOAK_KEY=soak-key "$BIN" run --config "$WORK/c.toml" --log-level info >>"$WORK/run.log" 2>&1 &
  pid=$!
  sleep "$(python3 -c 'import random; print(round(random.uniform(0.5, 7), 2))')"
  kill -9 "$pid" 2>/dev/null && kills=$((kills + 1)) || true
  wait "$pid" 2>/dev/null || true
  now=$(date +%s)
  if [ "$now" -ge "$next_outage" ]; then
    if [ -e "$WORK/hec.down" ]; then rm -f "$WORK/hec.down"; next_outage=$((now + 45));
    else touch "$WORK/hec.down"; outages=$((outages + 1)); next_outage=$((now + 20)); fi
  fi
done
rm -f "$WORK/hec.down"
echo "soak: $kills SIGKILLs, $outages HEC outages in $(( $(date +%s) - start ))s; settling"
echo "daemon during the soak: $(grep -c 'sync complete' "$WORK/run.log" || true) syncs, $(grep -c 'reconciliation pass complete' "$WORK/run.log" || true) reconciliation passes completed, $(grep -c 'reconciliation found events' "$WORK/run.log" || true) slices with late events found"
"$BIN" state show --data-dir "$WORK/data" | grep -E '^tenant .* cursor' || true

# Stop live events, let the last ones settle, then one clean collect takes in and delivers the rest.
curl -fsS -X POST "http://127.0.0.1:$MOCK_PORT/_mock/live/off" >/dev/null
sleep 10
until SOAK_KEY=soak-key "$BIN" collect --config "$WORK/c.toml" --no-progress --log-level error >/dev/null; do sleep 2; done
SOAK_KEY=soak-key "$BIN" collect --config "$WORK/c.toml" --no-progress --log-level error >/dev/null
# Late events the daemon's passes did not get to (it was killed every few seconds).
until SOAK_KEY=soak-key "$BIN" reconcile --config "$WORK/c.toml" --since 2h --no-progress --log-level error >"$WORK/reconcile.out"; do sleep 2; done
echo "final reconcile: $(head -1 "$WORK/reconcile.out")"
stats=$(curl -fsS "http://127.0.0.1:$MOCK_PORT/_mock/stats")
echo "emulator: $(python3 -c "import json,sys; s=json.loads(sys.argv[1]); print(f\"{s['requests']} requests, injected 429 {s['injected_429']}, 5xx {s['injected_5xx']}, truncated {s['truncated']}, resets {s['resets']}, latency spikes {s['latency_spikes']}, real 429 {s['rate_limited']}\")" "$stats")"
python3 scripts/soak/verify.py "http://127.0.0.1:$MOCK_PORT" "$WORK/data" "$WORK/out" "$WORK/hec.ids" "$TINES_AUDIT_TEST_S3_ENDPOINT" soak-bucket
