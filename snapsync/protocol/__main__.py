"""`python -m snapsync.protocol`: print the agent's transition table (snapsync.protocol.table)."""

from snapsync.protocol.table import render

print(render())
