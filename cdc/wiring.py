"""Builds the capture side's adapters from settings (the only place that chooses them)."""

from __future__ import annotations

from cdc.ports import ChangeSource
from enrolstream.settings import SourceSettings


def build_source(settings: SourceSettings) -> ChangeSource:
    """The configured ``ChangeSource``: the PowerCampus sandbox or SQL Server."""
    if settings.kind == "sqlserver":
        from cdc.sqlserver import SqlServerChangeSource  # noqa: PLC0415 - loads pyodbc

        return SqlServerChangeSource(settings.sqlserver, name=settings.name)
    from sandbox.powercampus.source import SandboxChangeSource  # noqa: PLC0415

    return SandboxChangeSource(settings.sandbox.path, name=settings.name)
