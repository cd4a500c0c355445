"""A real PostgreSQL server for the tests, started by the suite itself (no service needed).

`sql_store` runs a test once on a new SQLite file and once on a new PostgreSQL database.

`postgres_server` (session scope) runs initdb and pg_ctl from Debian's `postgresql` package into
a temporary directory, listening on a free loopback port, and stops it at the end. As root it
runs them as the `postgres` user (initdb refuses root). `postgres_dsn` gives each test a fresh,
empty database. Without PostgreSQL installed the tests are skipped on a developer's machine and
fail under CI=true: CI must never pass by silently skipping them (.ci/postgres.sh installs it).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from snapsync.server.store import Stores, open_store
from tools.serving import free_port


def _bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


def _run(command: list[str], as_user: str | None) -> None:
    if as_user:
        command = ["runuser", "-u", as_user, "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command[-1]} failed: {done.stderr.strip() or done.stdout.strip()}")


MISSING = "PostgreSQL is not installed (bash .ci/postgres.sh, or apt-get install postgresql)"


@contextmanager
def running_postgres(durable: bool = False) -> Iterator[str]:
    """Start a throwaway server; yields the DSN of its `postgres` database. For tests and bench.

    Not `durable` (tests): no fsync, which is faster and loses nothing unless the machine dies.
    """
    bindir = _bindir()
    if bindir is None:
        raise FileNotFoundError(MISSING)
    as_user = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="snapsync-pg-"))
    data = root / "data"
    if as_user:
        entry = pwd.getpwnam(as_user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    port = free_port()
    initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "snapsync", "--auth=trust"]
    _run([*initdb, "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"], as_user)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=300"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log")]
    try:
        _run([*pg_ctl, "-o", options, "-w", "-t", "60", "start"], as_user)
        yield f"postgresql://snapsync@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            _run([*pg_ctl, "-m", "immediate", "-w", "stop"], as_user)
        shutil.rmtree(root, ignore_errors=True)


def create_database(server_dsn: str) -> str:
    """A new empty database on `server_dsn`'s server; returns its DSN."""
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return server_dsn.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """DSN of the `postgres` database of a server started for this test session."""
    if _bindir() is None:
        if os.environ.get("CI"):
            pytest.fail(MISSING + ": CI must run the PostgreSQL tests")
        pytest.skip(MISSING)
    with running_postgres() as dsn:
        yield dsn


@pytest.fixture
def postgres_dsn(postgres_server: str) -> Iterator[str]:
    """A new empty database on the session's server, dropped after the test."""
    dsn = create_database(postgres_server)
    yield dsn
    name = dsn.rsplit("/", 1)[1]
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(name="sql_store", params=["sqlite", "postgres"])
def sql_store_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """A new, empty store of each SQL kind, closed after the test."""
    if request.param == "sqlite":
        made: Stores = open_store(str(tmp_path / "store.db"))
    else:
        made = open_store(request.getfixturevalue("postgres_dsn"))
    yield made
    made.close()
