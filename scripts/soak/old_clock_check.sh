#!/usr/bin/env bash
set -u
# Runs an OLD collector build against the NEW emulator with its clock 5 min behind and ahead.
NEW=${NEW:-target/release/tines-audit}; OLD=${OLD:?set OLD to the collector build to check}
for off in -5m 5m; do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  d=$(mktemp -d)
  TINES_API_KEY=k $NEW mock --bind 127.0.0.1:$port --history 2000 --span 1h --live-rate 25 --clock-offset=$off --rate-limit 0 >/dev/null 2>&1 &
  mp=$!; sleep 2
  for i in 1 2 3; do TINES_API_KEY=k $OLD collect --tenant http://127.0.0.1:$port --since 2h --data-dir $d/data --no-progress > $d/c$i.out 2>&1; echo "offset $off collect $i exit $?: $(tail -c 300 $d/c$i.out | tr '\n' ' ')"; sleep 2; done
  curl -s -X POST http://127.0.0.1:$port/_mock/live/off >/dev/null; sleep 4
  TINES_API_KEY=k $OLD collect --tenant http://127.0.0.1:$port --since 2h --data-dir $d/data --no-progress > $d/c4.out 2>&1; echo "final exit $?"
  python3 - "$port" "$d" <<'PY'
import json,sqlite3,sys,urllib.request
port,d=sys.argv[1:3]
want=set(json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/_mock/ids")))
got=set(r[0] for r in sqlite3.connect(f"{d}/data/journal.db").execute("select id from events"))
print(f"emulator {len(want)} ids, old collector's journal {len(got)}, missing {len(want-got)}")
PY
  kill $mp; rm -rf $d
done
