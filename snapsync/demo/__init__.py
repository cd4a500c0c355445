"""`snapsync demo`: the whole product on one machine — a simulated cluster, the real agent and
server protocol over a simulated flaky, data-capped link, a SQLite database to browse after."""

from snapsync.demo.main import database_path, run_demo
from snapsync.demo.run import DemoRun, Progress, Result
from snapsync.demo.scenario import LINKS, DemoOptions, LinkProfile, parse_duration

__all__ = [
    "LINKS",
    "DemoOptions",
    "DemoRun",
    "LinkProfile",
    "Progress",
    "Result",
    "database_path",
    "parse_duration",
    "run_demo",
]
