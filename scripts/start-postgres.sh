#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server (Debian's packages; install-test-deps.sh
# installs them) for the tests that need a real database: a fresh cluster in a
# new temporary directory, listening only on 127.0.0.1 on a free port (its Unix
# socket inside that directory), with a superuser `tines` whose password is
# random (scram-sha-256 over TCP) and a database `tines_audit_test`. Prints
#
#   export TINES_AUDIT_TEST_PG_URL=postgresql://tines:PASSWORD@127.0.0.1:PORT/tines_audit_test
#   export TINES_AUDIT_TEST_PG_ADMIN_URL=postgresql://tines:PASSWORD@127.0.0.1:PORT/postgres
#   export TINES_AUDIT_TEST_PG_STOP='COMMAND'
#   export TINES_AUDIT_TEST_PG_CTL='COMMAND'   (append `stop -m fast` or `start`)
#
# so `eval "$(scripts/start-postgres.sh)"` sets them; `eval "$TINES_AUDIT_TEST_PG_STOP"`
# stops the server and removes its directory. Everything else goes to stderr.
# PostgreSQL refuses to run as root: as root, the server runs as the `postgres`
# user (the Debian package creates it), else as a system user `tines-audit-test`
# created here. Each run is independent: several can run at once.
set -euo pipefail
PY=${PYTHON:-python3}
DEADLINE=60 # seconds for the server to start and accept connections
DB=tines_audit_test
ROLE=tines

say() { echo "start-postgres: $*" >&2; }

# Quotes a word for the shell (only when it needs it).
q() {
  case $1 in
    '' | *[!A-Za-z0-9_./:=@%+,-]*) printf "'%s'" "${1//\'/\'\\\'\'}" ;;
    *) printf '%s' "$1" ;;
  esac
}

# The binaries: the highest version under /usr/lib/postgresql (Debian), else PATH.
initdb=$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n1)
if [ -x "$initdb" ]; then
  bindir=${initdb%/initdb}
elif initdb=$(command -v initdb); then
  bindir=$(dirname "$initdb")
else
  say "no initdb under /usr/lib/postgresql/*/bin nor on PATH (scripts/install-test-deps.sh installs it)"
  exit 1
fi
for tool in pg_ctl postgres; do
  [ -x "$bindir/$tool" ] || { say "$bindir/$tool is missing"; exit 1; }
done
pg_ctl=$bindir/pg_ctl
psql=$bindir/psql
[ -x "$psql" ] || psql=$(command -v psql) || { say "no psql next to $initdb nor on PATH"; exit 1; }
pg_isready=$bindir/pg_isready
[ -x "$pg_isready" ] || pg_isready=$(command -v pg_isready) || { say "no pg_isready next to $initdb nor on PATH"; exit 1; }

# Who runs the server: as root, an unprivileged user; otherwise the current one.
as_user=()
if [ "$(id -u)" -eq 0 ]; then
  user=postgres
  if ! id -u "$user" >/dev/null 2>&1; then
    user=tines-audit-test
    # Concurrent runs may race to create it (or find /etc/passwd locked): retry.
    for _ in $(seq 1 50); do
      id -u "$user" >/dev/null 2>&1 && break
      useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$user" >/dev/null 2>&1 || sleep 0.1
    done
    id -u "$user" >/dev/null 2>&1 || { say "could not create the system user $user"; exit 1; }
  fi
  as_user=(runuser -u "$user" --)
fi

# The directory: data, socket, log. The server's user must reach it, and the
# socket's path (DIR/.s.PGSQL.PORT) must fit in 107 bytes; else under /tmp.
new_dir() {
  local d
  d=$(mktemp -d "$1/tines-audit-pg.XXXXXX") || return 1
  d=$(cd "$d" && pwd -P) || return 1
  if [ ${#as_user[@]} -gt 0 ]; then chown "$user:" "$d" || { rm -rf "$d"; return 1; }; fi
  if [ $((${#d} + 16)) -gt 107 ] || ! "${as_user[@]}" touch "$d/.probe" 2>/dev/null; then
    rm -rf "$d"
    return 1
  fi
  rm -f "$d/.probe"
  printf '%s\n' "$d"
}
dir=$(new_dir "${TMPDIR:-/tmp}") || dir=$(new_dir /tmp) || { say "could not make a directory for the server"; exit 1; }
data=$dir/data
log=$dir/server.log
cd "$dir" # the server's user may not reach the caller's directory

ok=0
finish() {
  if [ "$ok" -eq 1 ]; then return; fi
  if [ -s "$log" ]; then say "server log:"; cat "$log" >&2; fi
  if [ -f "$data/postmaster.pid" ]; then
    "${as_user[@]}" "$pg_ctl" -D "$data" -s -m immediate stop >/dev/null 2>&1 || true
  fi
  cd /
  rm -rf "$dir"
}
trap finish EXIT
trap 'exit 1' INT TERM HUP

# The cluster, its superuser with a random password (hex: safe in a URL).
password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
(umask 077 && printf '%s\n' "$password" >"$dir/pwfile")
if [ ${#as_user[@]} -gt 0 ]; then chown "$user:" "$dir/pwfile"; fi
# --no-sync: only initdb's own writes skip fsync; the server keeps fsync on.
if ! "${as_user[@]}" "$initdb" -D "$data" -U "$ROLE" --pwfile="$dir/pwfile" \
  --auth-host=scram-sha-256 --auth-local=trust --encoding=UTF8 --locale=C --no-sync \
  >"$dir/initdb.log" 2>&1; then
  say "initdb failed:"
  cat "$dir/initdb.log" >&2
  exit 1
fi
rm -f "$dir/pwfile" "$dir/initdb.log"

# Local connections: only through the socket in $dir (mode 0700), so `trust` there is safe.
cat >>"$data/postgresql.conf" <<EOF

# scripts/start-postgres.sh: a throwaway server for the tests
listen_addresses = '127.0.0.1'
unix_socket_directories = '${dir//\'/\'\'}'
max_connections = 200
shared_buffers = 128MB
fsync = on
EOF

# With TINES_AUDIT_TEST_PG_TLS=1: TLS with a certificate for 127.0.0.1 from a CA of our own
# (printed as TINES_AUDIT_TEST_PG_CA), for the tests of sslmode.
ca=""
if [ "${TINES_AUDIT_TEST_PG_TLS:-0}" = 1 ]; then
  ca=$dir/ca.pem
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=tines-audit test CA" \
      -keyout ca.key -out ca.pem -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$data/server.key" -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext.cnf
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf \
      -out "$data/server.crt" 2>/dev/null
    rm -f ca.key server.csr ext.cnf ca.srl
  ) || { say "could not make the test certificates (openssl)"; exit 1; }
  chmod 600 "$data/server.key"
  if [ ${#as_user[@]} -gt 0 ]; then chown "$user:" "$data/server.key" "$data/server.crt"; fi
  chmod 644 "$ca"
  printf "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n" >>"$data/postgresql.conf"
fi

# Start on a free port; another process may take it before the server binds it: retry.
start=$SECONDS
port=""
for attempt in 1 2 3 4 5; do
  port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
  rm -f "$log"
  left=$((DEADLINE - (SECONDS - start)))
  [ "$left" -ge 1 ] || { say "the server did not start within $DEADLINE s"; exit 1; }
  if "${as_user[@]}" "$pg_ctl" -D "$data" -l "$log" -o "-p $port" -w -t "$left" -s start >"$dir/pg_ctl.out" 2>&1; then
    break
  fi
  if [ "$attempt" -lt 5 ] && [ ! -f "$data/postmaster.pid" ] && grep -q 'Address already in use' "$log" 2>/dev/null; then
    say "port $port was taken; trying another"
    continue
  fi
  cat "$dir/pg_ctl.out" >&2
  say "the server did not start"
  exit 1
done
rm -f "$dir/pg_ctl.out"

until "$pg_isready" -q -h 127.0.0.1 -p "$port" -t 1; do
  if [ $((SECONDS - start)) -ge "$DEADLINE" ]; then
    say "the server on port $port does not accept connections within $DEADLINE s"
    exit 1
  fi
  sleep 0.1
done

# Over TCP with the password, as the tests connect.
conn="host=127.0.0.1 port=$port user=$ROLE sslmode=disable connect_timeout=10"
if ! PGPASSWORD=$password "$psql" -X -q -v ON_ERROR_STOP=1 -d "$conn dbname=postgres" \
  -c "CREATE DATABASE $DB" >&2; then
  say "could not create the database $DB over TCP with the password"
  exit 1
fi

# (From /: the server's user may not reach the caller's directory.)
stop="(cd / &&"
for word in "${as_user[@]}" "$pg_ctl" -D "$data" -s -m fast stop; do
  stop+=" $(q "$word")"
done
stop+="); rm -rf $(q "$dir")"
# pg_ctl for this server, as its user, for tests that stop and start it again:
# `$TINES_AUDIT_TEST_PG_CTL stop` / `$TINES_AUDIT_TEST_PG_CTL start` (same port, same data).
ctl="cd / &&"
for word in "${as_user[@]}" "$pg_ctl" -D "$data" -l "$log" -o "-p $port" -w -s; do
  ctl+=" $(q "$word")"
done

ok=1
echo "export TINES_AUDIT_TEST_PG_URL=postgresql://$ROLE:$password@127.0.0.1:$port/$DB"
echo "export TINES_AUDIT_TEST_PG_ADMIN_URL=postgresql://$ROLE:$password@127.0.0.1:$port/postgres"
echo "export TINES_AUDIT_TEST_PG_STOP=$(q "$stop")"
echo "export TINES_AUDIT_TEST_PG_CTL=$(q "$ctl")"
if [ -n "$ca" ]; then echo "export TINES_AUDIT_TEST_PG_CA=$(q "$ca")"; fi
