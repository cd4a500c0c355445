"""The receiving server: the ASGI app (app.py), its request gate (gate.py) and its storage
(store/: `open_store(url)` gives the SQL repositories that `ServerSettings(stores=...)` takes)."""

from snapsync.server.app import ServerSettings, create_app, uvicorn_config
from snapsync.server.gate import SharedSecret
from snapsync.server.store import Stores, open_store

__all__ = ["ServerSettings", "SharedSecret", "Stores", "create_app", "open_store", "uvicorn_config"]
