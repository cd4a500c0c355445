"""The receiving server: the ASGI app and its storage."""

from snapsync.server.app import ServerSettings, create_app, uvicorn_config
from snapsync.server.gate import SharedSecret

__all__ = ["ServerSettings", "SharedSecret", "create_app", "uvicorn_config"]
