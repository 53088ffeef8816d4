"""HTTP API and search page (FastAPI + uvicorn): `omnibind serve`."""

from omnibind.server.app import create_app
from omnibind.server.settings import ServerSettings, load_token, token_path

__all__ = ["ServerSettings", "create_app", "load_token", "token_path"]
