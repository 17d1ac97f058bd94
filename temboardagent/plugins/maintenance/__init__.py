"""The maintenance plugin: sizes and bloat, VACUUM / ANALYZE / REINDEX operations."""

from __future__ import annotations

from .. import Plugin
from . import operation_routes, operations, routes
from .openapi import fragment
from .settings import MaintenanceSettings


class MaintenancePlugin(Plugin):
    """Registers the maintenance routes and the operation workers."""

    name = "maintenance"

    def load(self) -> None:
        settings = MaintenanceSettings.from_section(self.context.config)
        runner = operations.register_workers(self.context, settings)
        routes.register(self.context, settings)
        operation_routes.register(self.context, settings, runner.relations)

    def openapi(self) -> dict:
        """The routes registered by :meth:`load` and their schemas."""
        return fragment()
