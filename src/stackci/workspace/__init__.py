"""The local workspace: a Databricks-compatible REST server on loopback that runs job tasks
as local processes. Start it with :class:`LocalWorkspace` (in-process) or
``stackci workspace serve``. Nothing is imported or started at import time.
"""

from __future__ import annotations

__all__ = ["LocalWorkspace", "FaultPlan"]


def __getattr__(name: str):
    if name == "LocalWorkspace":
        from stackci.workspace.server import LocalWorkspace

        return LocalWorkspace
    if name == "FaultPlan":
        from stackci.workspace.faults import FaultPlan

        return FaultPlan
    raise AttributeError(name)
