#!/usr/bin/env bash
# CI: install Debian's PostgreSQL server binaries for the server's PostgreSQL tests.
# The tests start and stop their own throwaway server (tests/support_postgres.py: initdb and
# pg_ctl into a temporary directory on a free loopback port); this only installs the binaries.
# Under CI=true those tests fail, never skip, when PostgreSQL is missing.
set -euo pipefail

if command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
# Debian's package starts a cluster of its own; the tests do not use it.
if command -v pg_ctlcluster >/dev/null 2>&1; then
    for cluster in /etc/postgresql/*/main; do
        [ -d "$cluster" ] || continue
        version="$(basename "$(dirname "$cluster")")"
        pg_ctlcluster "$version" main stop >/dev/null 2>&1 || true
    done
fi
