#!/bin/sh
# Run a pgBackRest command (stanza-create, backup, info, verify, ...) against whichever warehouse member is the
# primary now: Patroni may have promoted either. Each member's data directory and socket are shared volumes
# (/srv/<member>/data, /srv/<member>/run); the administrator logs in by peer identity over the socket, as
# deploy/patroni/patroni.yml's pg_ident maps the image's postgres user.
set -eu
for member in dc1 dc2; do
    role=$(psql --no-psqlrc --tuples-only --no-align --host="/srv/$member/run" --port=5432 --username=kho_admin \
        --dbname=postgres --command='SELECT pg_is_in_recovery()' 2>/dev/null || true)
    if [ "$role" = f ]; then
        exec pgbackrest --stanza=kho --pg1-path="/srv/$member/data" --pg1-socket-path="/srv/$member/run" "$@"
    fi
done
echo "pgbackrest: no warehouse member is the primary; see \`docker compose ps pg-dc1 pg-dc2\` and their logs" >&2
exit 1
