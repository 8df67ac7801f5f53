"""The deployment state: ``${workspace.state_path}/deployment.json`` in the workspace.

One JSON document, rewritten (``workspace/import`` with ``overwrite``) after every
applied change, so a deploy that dies half-way leaves a state that says exactly
what exists, and the next deploy continues from there::

    {
      "version": 1,                      # format of this file
      "serial": 12,                      # +1 on every write
      "bundle": {"name": "churn_model", "target": "staging", "root_path": "/Workspace/..."},
      "files": {"churn/data.py": {"sha256": "...", "remote": ".../files/churn/data.py", "notebook": false}},
      "resources": {"jobs": {"train": {"id": 1001, "name": "...", "hash": "...", "acl": "...", "applied_at": "..."}}},
      "pending": {"jobs.train": {"name": "...", "since": "..."}},   # creates announced, not yet recorded
      "folders": {"hash": "...", "paths": ["/Workspace/..."]},      # the top-level permissions last set on them
      "deployment": {"commit": "...", "branch": "...", "tag": null, "actor": "...", "time": "...",
                     "stackci_version": "...", "status": "in progress" | "complete" | "destroying"},
      "last_complete": {... the deployment record of the last deploy that finished ...}
    }

``pending`` is the intent log that makes creates safe to repeat: it is written
before a resource is created, so a re-run after a crash knows to look for (and
adopt) an object that was created but never recorded.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field

from ..dbx import first_line
from ..errors import ConfigError, RunFailed

STATE_FILE = "deployment.json"
LOCK_FILE = "deploy.lock"
FORMAT_VERSION = 1


def canonical_hash(value) -> str:
    """A stable hash of JSON-able data (sorted keys, no whitespace)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class State:
    serial: int = 0
    bundle: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)
    pending: dict = field(default_factory=dict)
    folders: dict = field(default_factory=dict)
    deployment: dict = field(default_factory=dict)
    last_complete: dict | None = None
    exists: bool = False             # False: no state file in the workspace yet

    # -- resources ---------------------------------------------------------------
    def resource(self, kind: str, key: str) -> dict | None:
        return self.resources.get(kind, {}).get(key)

    def set_resource(self, kind: str, key: str, entry: dict) -> None:
        self.resources.setdefault(kind, {})[key] = entry
        self.pending.pop(f"{kind}.{key}", None)

    def drop_resource(self, kind: str, key: str) -> None:
        items = self.resources.get(kind, {})
        items.pop(key, None)
        if not items:
            self.resources.pop(kind, None)
        self.pending.pop(f"{kind}.{key}", None)

    def owned(self) -> list[tuple[str, str, dict]]:
        return [(kind, key, entry) for kind in sorted(self.resources)
                for key, entry in sorted(self.resources[kind].items())]

    # -- serialisation --------------------------------------------------------------
    def to_json(self) -> dict:
        return {"version": FORMAT_VERSION, "serial": self.serial, "bundle": self.bundle, "files": self.files,
                "resources": self.resources, "pending": self.pending, "folders": self.folders,
                "deployment": self.deployment,
                "last_complete": self.last_complete}

    @classmethod
    def from_json(cls, doc: dict, where: str) -> "State":
        """The state in ``doc``, a freshly parsed document that the state takes over (its sections
        are used as they are, not copied: copying the file entries of a 300-file bundle was a few
        milliseconds of every deploy)."""
        if not isinstance(doc, dict):
            raise RunFailed(f"the deployment state {where} is not a JSON object",
                            hint="move it away (it is only read by stackci) and deploy again")
        version = doc.get("version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise RunFailed(f"the deployment state {where} has format version {version!r}; this stackci reads "
                            f"version {FORMAT_VERSION}", hint="deploy with the stackci version that wrote it, or newer")

        def section(name, kind):
            value = doc.get(name)
            if value is None:
                return kind()
            if not isinstance(value, kind):
                raise RunFailed(f"the deployment state {where} is damaged ({name} is not a {kind.__name__})",
                                hint="move it away and deploy again; stackci then adopts the jobs it tagged")
            return value

        return cls(serial=int(doc.get("serial") or 0), bundle=section("bundle", dict), files=section("files", dict),
                   resources=section("resources", dict), pending=section("pending", dict),
                   folders=section("folders", dict),
                   deployment=section("deployment", dict),
                   last_complete=doc.get("last_complete") if isinstance(doc.get("last_complete"), dict) else None,
                   exists=True)


class StateStore:
    """Reads and writes the state file through databricks-sdk (``import_`` is retried by the SDK)."""

    def __init__(self, client, state_path: str) -> None:
        self.client = client
        self.state_path = state_path.rstrip("/")
        self.path = f"{self.state_path}/{STATE_FILE}"
        self.writes = 0

    def read(self) -> State:
        from databricks.sdk import errors
        from databricks.sdk.service.workspace import ExportFormat

        try:
            exported = self.client.workspace.export(self.path, format=ExportFormat.AUTO)
        except (errors.NotFound, errors.ResourceDoesNotExist):
            return State()
        try:
            doc = json.loads(base64.b64decode(exported.content or "").decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise RunFailed(f"the deployment state {self.path} is not valid JSON",
                            hint="move it away and deploy again; stackci then adopts the jobs it tagged") from None
        return State.from_json(doc, self.path)

    def write(self, state: State) -> None:
        from databricks.sdk.errors import DatabricksError

        state.serial += 1
        # compact: with an indent, json encodes in Python rather than in C (three times slower)
        content = json.dumps(state.to_json(), sort_keys=True, separators=(",", ":")).encode("utf-8")
        try:
            import_file(self.client, self.path, content, overwrite=True)
        except DatabricksError as exc:
            code = getattr(exc, "error_code", None) or type(exc).__name__
            raise RunFailed(f"writing the deployment state {self.path} failed: {code}: {first_line(exc)}",
                            hint="deploy again: what was applied is in the workspace and the next deploy finds "
                                 "it (jobs by their deployment tag, files by content)") from None
        state.exists = True
        self.writes += 1

    def delete(self) -> None:
        delete_path(self.client, self.path)


def import_file(client, path: str, content: bytes, *, overwrite: bool, fmt: str = "RAW",
                language: str | None = None) -> None:
    """``workspace/import`` as base64 JSON (retried by the SDK, unlike multipart ``upload``).

    A missing parent folder is created once and the import repeated.
    """
    from databricks.sdk import errors
    from databricks.sdk.service.workspace import ImportFormat, Language

    kwargs = {"content": base64.b64encode(content).decode("ascii"), "format": ImportFormat(fmt),
              "overwrite": overwrite}
    if language:
        kwargs["language"] = Language(language)
    try:
        client.workspace.import_(path, **kwargs)
    except (errors.NotFound, errors.ResourceDoesNotExist):
        client.workspace.mkdirs(path.rsplit("/", 1)[0])
        client.workspace.import_(path, **kwargs)


def delete_path(client, path: str, recursive: bool = False) -> bool:
    """Delete a workspace object; False when it was already gone."""
    from databricks.sdk import errors

    try:
        client.workspace.delete(path, recursive=recursive)
        return True
    except (errors.NotFound, errors.ResourceDoesNotExist):
        return False


def check_owner(state: State, name: str, target: str, where: str) -> None:
    """Refuse a state that another bundle wrote (two bundles pointed at one root_path)."""
    other = state.bundle.get("name")
    if state.exists and other and other != name:
        raise ConfigError(f"the deployment state {where} belongs to bundle {other!r}, not {name!r}",
                          hint="give this bundle its own workspace.root_path (two bundles must never share one)")
