# `snapsync demo` from options to report: picks the database, runs the scenario under the right
# view (live at a terminal, plain lines elsewhere), prints the report, and with --keep-serving
# hands the database to the real server. cli/demo.py only parses flags into DemoOptions.
"""Run a demo end to end: database, run, view, report, optional server."""

from __future__ import annotations

import secrets
import shlex
import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.live import Live

from snapsync.demo.run import DemoRun, Result, prepare_database
from snapsync.demo.scenario import DemoOptions
from snapsync.demo.serving import bind, serve
from snapsync.demo.view import LiveView, PlainView, report, titles
from snapsync.errors import InputError

DATABASE_NAME = "snapsync-demo.db"


def database_path(database: Path | None, directory: Path | None) -> Path:
    """--database as given; else a new file in --dir (created) or in a fresh temporary one."""
    if database is not None:
        return database.expanduser()
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="snapsync-demo-"))
    directory = directory.expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    return directory / DATABASE_NAME


def run_demo(
    options: DemoOptions,
    echo: Callable[[str], None],
    *,
    database: Path | None = None,
    directory: Path | None = None,
    live: Console | None = None,
    keep_serving: bool = False,
    port: int = 0,
    api_token: str | None = None,
    start: float = 0.0,
) -> Result:
    """The whole demo; `live` is the terminal's console for the live view (None: plain lines)."""
    if database is not None and directory is not None:
        raise InputError("--database and --dir go separately: pick one")
    sock = bind(port) if keep_serving else None  # a taken port fails now, not after the run
    database = database_path(database, directory)
    store = prepare_database(database)
    token = api_token or secrets.token_hex(8)  # hex: never mistaken for a flag
    title = "\n".join(titles(options))
    runner = DemoRun(options, store, database, start)
    if live is not None:
        with Live(console=live, refresh_per_second=10) as screen:
            result = runner.run(LiveView(screen, title))
    else:
        echo(title)
        result = runner.run(PlainView(echo))
    if sock is not None:
        browse = [f"http://127.0.0.1:{sock.getsockname()[1]}/ (sign in with the API token {token})"]
    else:
        command = shlex.join(
            ["snapsync", "serve", "--database", str(database), "--api-token", token]
        )
        browse = [
            command,
            "then open http://127.0.0.1:8480/ and sign in with the API token",
        ]
    echo("")
    for line in report(result, browse):
        echo(line)
    if sock is not None:
        try:
            serve(store, token, sock, echo)
        finally:
            store.close()
    else:
        store.close()
    return result
