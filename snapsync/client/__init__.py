"""`snapsync get`, `snapsync envs` and `snapsync health -e`: kubectl habits against a server's
browse API (api.py talks HTTP, kinds.py resolves kubectl's kind names, tables.py prints
kubectl's columns; snapsync/cli/client.py is their click face)."""
