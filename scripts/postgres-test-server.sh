#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1 for the multi-worker tests and print its URL:
#   export ABLATE_TEST_POSTGRES=$(bash scripts/postgres-test-server.sh)
# Installs Debian's postgresql when it is missing (needs root), keeps its data in $ABLATE_PG_DIR
# (default /tmp/ablate-postgres), listens on 127.0.0.1 only, port $ABLATE_PG_PORT (default 55432).
# Stop it with: pg_ctl -D /tmp/ablate-postgres stop  (as the user that started it)
set -euo pipefail
port=${ABLATE_PG_PORT:-55432}
data=${ABLATE_PG_DIR:-/tmp/ablate-postgres}
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_owner=()
if [ "$(id -u)" = 0 ]; then  # the server refuses to run as root
    as_owner=(runuser -u postgres --)
    mkdir -p "$data" && chown postgres "$data"
fi
if [ ! -f "$data/PG_VERSION" ]; then
    "${as_owner[@]}" "$bin/initdb" -D "$data" -A trust -U ablate >&2
fi
if ! "${as_owner[@]}" "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    "${as_owner[@]}" "$bin/pg_ctl" -D "$data" -o "-h 127.0.0.1 -p $port -k /tmp" \
        -l "$data/server.log" -w start >&2
fi
"$bin/createdb" -h 127.0.0.1 -p "$port" -U ablate ablate_test 2>/dev/null || true
echo "postgresql://ablate@127.0.0.1:$port/ablate_test"
