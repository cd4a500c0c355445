"""The `snapsync` command line: the top layer, a thin face over the library.

main.py holds the root group and registers one module per command group: snapshots.py (dump,
diff, apply), inspection.py (inspect), agent.py, health.py, serve.py, environments.py (env
add|list), client.py (get, envs), demo.py. command.py holds the click classes they share,
source.py the cluster-source options, snapfile.py and summary.py the snapshot-file helpers only
the command line uses. The agent's SNAPSYNC_* variables are read by the library
(snapsync.agent.settings), and a server's database opens through snapsync.server.store, not here.
"""

from snapsync.cli.main import cli, main

__all__ = ["cli", "main"]
