"""The receiving server: the ASGI app and its storage."""

from snapsync.server.app import ServerSettings, SharedSecret, create_app, uvicorn_config

__all__ = ["ServerSettings", "SharedSecret", "create_app", "uvicorn_config"]
