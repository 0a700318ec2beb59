#!/usr/bin/env bash
# Installs the real servers the integration tests run against, if missing.
# Debian packages: rsyslog (+ its OpenSSL TLS driver), openssl, and chromium with
# chromium-driver (the console's browser tests drive it headless over WebDriver),
# and the PostgreSQL server (scripts/start-postgres.sh runs a throwaway cluster;
# Debian keeps initdb off PATH, under /usr/lib/postgresql/VERSION/bin).
set -euo pipefail

apt_pkgs=()
[ -x /usr/sbin/rsyslogd ] || apt_pkgs+=(rsyslog)
ls /usr/lib/*/rsyslog/lmnsd_ossl.so >/dev/null 2>&1 || apt_pkgs+=(rsyslog-openssl)
command -v openssl >/dev/null || apt_pkgs+=(openssl)
[ -x /usr/bin/chromium ] || apt_pkgs+=(chromium)
[ -x /usr/bin/chromedriver ] || apt_pkgs+=(chromium-driver)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_pkgs+=(postgresql)

if [ ${#apt_pkgs[@]} -gt 0 ]; then
  echo "== installing ${apt_pkgs[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
fi

# GeoIP test databases (MaxMind test data, DB-IP lite) into target/geoip-test-data.
"$(dirname "$0")/fetch-geoip-test-data.sh" >/dev/null
