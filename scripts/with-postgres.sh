#!/usr/bin/env bash
# Run a command beside a throwaway PostgreSQL cluster on 127.0.0.1, then stop and delete it.
#
#   scripts/with-postgres.sh .venv/bin/python -m pytest -q
#
# The command sees IMGPRIVACY_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:PORT/postgres
# (the service tests create one fresh database per server from it). When PostgreSQL is missing,
# Debian's package is installed if we are root with apt-get (as on CI); otherwise the command runs
# without it and the PostgreSQL tests skip (IMGPRIVACY_REQUIRE_POSTGRES=1 makes them fail instead).
set -euo pipefail

find_bin() {
    local dir best=""
    for dir in /usr/lib/postgresql/*/bin; do
        [ -x "$dir/pg_ctl" ] && [ -x "$dir/initdb" ] && best="$dir"
    done
    echo "$best"
}

PGBIN="$(find_bin)"
if [ -z "$PGBIN" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "with-postgres: installing Debian's postgresql package" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    PGBIN="$(find_bin)"
fi
if [ -z "$PGBIN" ]; then
    echo "with-postgres: PostgreSQL is not installed; its tests will be skipped" >&2
    "$@"
    exit $?
fi

DIR="$(mktemp -d /tmp/imgprivacy-pg.XXXXXX)"
RUNAS=()
if [ "$(id -u)" = 0 ]; then  # initdb refuses to run as root
    PGUSER_OS=postgres
    id "$PGUSER_OS" >/dev/null 2>&1 || PGUSER_OS=nobody
    chown "$PGUSER_OS" "$DIR"
    RUNAS=(runuser -u "$PGUSER_OS" --)
fi
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

cleanup() {
    "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap cleanup EXIT

"${RUNAS[@]}" "$PGBIN/initdb" -D "$DIR/data" -U postgres -A trust -E UTF8 --no-sync >"$DIR/initdb.log" 2>&1 \
    || { cat "$DIR/initdb.log" >&2; exit 1; }
# Durability is pointless for a throwaway cluster: fsync off keeps the tests fast.
"${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
    -o "-h 127.0.0.1 -p $PORT -k $DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null || { cat "$DIR/server.log" >&2; exit 1; }
echo "with-postgres: PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT" >&2

export IMGPRIVACY_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$PORT/postgres"
status=0
"$@" || status=$?
exit "$status"
