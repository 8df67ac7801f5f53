"""What a workspace holds, read back through databricks-sdk: shared by the test folders
(a module of its own: every test folder has a ``conftest`` of its own)."""

from __future__ import annotations


def sdk_client(server, **kwargs):
    """A databricks-sdk client of a local workspace (PAT auth, a short retry budget)."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    kwargs.setdefault("token", server.token)
    kwargs.setdefault("auth_type", "pat")
    kwargs.setdefault("retry_timeout_seconds", 20)
    return WorkspaceClient(config=Config(host=server.url, **kwargs))


def tree(w, path: str) -> dict[str, str]:
    """Every object under ``path``: workspace path → object type (empty when the folder is missing)."""
    from databricks.sdk import errors

    out: dict[str, str] = {}
    try:
        objects = list(w.workspace.list(path))
    except (errors.NotFound, errors.ResourceDoesNotExist):
        return out
    for obj in objects:
        kind = obj.object_type.value
        out[obj.path] = kind
        if kind == "DIRECTORY":
            out.update(tree(w, obj.path))
    return out
