"""The REST API (FastAPI): agents, operators and the web view come in here."""

from meshctl.api.app import create_app

__all__ = ["create_app"]
