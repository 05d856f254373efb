"""The `meshctl` command: `serve`, `bootstrap`, `demo`, and operator verbs over the REST API."""

from meshctl.cli.main import app

__all__ = ["app"]
