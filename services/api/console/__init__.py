"""The analyst console under ``/console``: :data:`router` serves every page."""

from services.api.console import admin, overview, routes
from services.api.console.web import router

__all__ = ["admin", "overview", "router", "routes"]
