"""The workspace model registry (``/api/2.0/mlflow/registered-models/*``): the legacy, non-Unity
Catalog registered models that MLOps Stacks projects declare as ``resources.models`` when Unity
Catalog is off. Metadata only (no versions).

As on Databricks: a name is a non-empty string without ``/``, ``.`` or ``:`` (else 400
INVALID_PARAMETER_VALUE), a duplicate is 400 RESOURCE_ALREADY_EXISTS "Registered Model
(name=<n>) already exists.", a missing model 404 RESOURCE_DOES_NOT_EXIST "Registered Model with
name=<n> not found.". ``GET /api/2.0/mlflow/databricks/registered-models/get`` answers
``registered_model_databricks`` with the model's ``id``, which its permissions
(``/api/2.0/permissions/registered-models/<id>``) are addressed by; the creator holds
CAN_MANAGE until an ACL replaces it.
"""

from __future__ import annotations

import json
import re
import uuid

from stackci.workspace.api import ApiError, Request, invalid, not_found, typed
from stackci.workspace.models import malformed_field, page_of, page_offset, parse_filter, parse_tags
from stackci.workspace.store import Store, now_ms

_BAD_NAME = re.compile(r"[/.:]")


def _missing(name: str) -> ApiError:
    return not_found(f"Registered Model with name={name} not found.")


def _name(value, field: str = "name") -> str:
    if value in (None, ""):
        raise invalid(f"Missing required field: {field}")
    if not isinstance(value, str):
        raise malformed_field(field, "a string")
    if _BAD_NAME.search(value) or not value.strip() or len(value) > 256:
        raise invalid(f"Invalid name '{value}'. A workspace registered model name must be a non-empty UTF-8 string "
                      "and cannot contain forward slashes(/), periods(.), or colons(:).")
    return value


def _tags(raw) -> list[dict]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise malformed_field("tags", "an array")
    return parse_tags(raw)


class WorkspaceModels:
    def __init__(self, store: Store, user_name: str) -> None:
        self.store = store
        self.user_name = user_name
        self.permissions = None   # the workspace's Permissions: a deleted model's ACL goes with it

    def _load(self, name: str) -> dict:
        rows = self.store.query("SELECT doc FROM workspace_models WHERE name = ?", (name,))
        if not rows:
            raise _missing(name)
        return json.loads(rows[0][0])

    def _save(self, doc: dict, old_name: str | None = None) -> None:
        if old_name is not None and old_name != doc["name"]:
            self.store.execute("DELETE FROM workspace_models WHERE name = ?", (old_name,))
        self.store.execute("INSERT OR REPLACE INTO workspace_models (name, model_id, doc) VALUES (?, ?, ?)",
                           (doc["name"], doc["id"], Store.dumps(doc)))

    @staticmethod
    def _view(doc: dict) -> dict:
        out = {k: v for k, v in doc.items() if k not in ("id",)}
        if not out.get("tags"):
            out.pop("tags", None)
        return out

    def creator(self, model_id: str) -> str | None:
        """The creator of the model with this id (None: no such model), for its permissions."""
        rows = self.store.query("SELECT doc FROM workspace_models WHERE model_id = ?", (model_id,))
        return json.loads(rows[0][0]).get("user_id") if rows else None

    # ---- handlers ------------------------------------------------------------

    def create(self, req: Request) -> dict:
        body = req.json()
        name = _name(body.get("name"))
        description = typed(body, "description", str)
        tags = _tags(body.get("tags"))
        with self.store.transaction():
            if self.store.query("SELECT 1 FROM workspace_models WHERE name = ?", (name,)):
                raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"Registered Model (name={name}) already exists.")
            ts = now_ms()
            doc = {"name": name, "creation_timestamp": ts, "last_updated_timestamp": ts,
                   "user_id": req.principal or self.user_name, "tags": tags, "id": uuid.uuid4().hex}
            if description:
                doc["description"] = description
            self._save(doc)
        return {"registered_model": self._view(doc)}

    def get(self, req: Request) -> dict:
        return {"registered_model": self._view(self._load(_name(req.arg("name"))))}

    def get_databricks(self, req: Request) -> dict:
        doc = self._load(_name(req.arg("name")))
        out = {**self._view(doc), "id": doc["id"], "permission_level": "CAN_MANAGE"}
        return {"registered_model_databricks": out}

    def update(self, req: Request) -> dict:
        body = req.json()
        name = _name(body.get("name"))
        description = typed(body, "description", str)
        with self.store.transaction():
            doc = self._load(name)
            if description is not None:
                doc["description"] = description
            doc["last_updated_timestamp"] = now_ms()
            self._save(doc)
        return {"registered_model": self._view(doc)}

    def rename(self, req: Request) -> dict:
        body = req.json()
        name = _name(body.get("name"))
        new_name = _name(body.get("new_name"), "new_name")
        with self.store.transaction():
            doc = self._load(name)
            if new_name != name:
                if self.store.query("SELECT 1 FROM workspace_models WHERE name = ?", (new_name,)):
                    raise ApiError(400, "RESOURCE_ALREADY_EXISTS",
                                   f"Registered Model (name={new_name}) already exists.")
                doc["name"] = new_name
                doc["last_updated_timestamp"] = now_ms()
                self._save(doc, old_name=name)
        return {"registered_model": self._view(doc)}

    def delete(self, req: Request) -> dict:
        name = _name(req.arg("name") or (req.json().get("name") if req.body.strip() else None))
        with self.store.transaction():
            doc = self._load(name)
            self.store.execute("DELETE FROM workspace_models WHERE name = ?", (name,))
            if self.permissions is not None:
                self.permissions.forget("registered-models", doc["id"])
        return {}

    def set_tag(self, req: Request) -> dict:
        body = req.json()
        name = _name(body.get("name"))
        key = typed(body, "key", str, required=True)
        value = typed(body, "value", str, default="")
        with self.store.transaction():
            doc = self._load(name)
            doc["tags"] = [t for t in doc.get("tags", []) if t["key"] != key] + [{"key": key, "value": value}]
            doc["last_updated_timestamp"] = now_ms()
            self._save(doc)
        return {}

    def delete_tag(self, req: Request) -> dict:
        body = req.json() if req.body.strip() else {}
        name = _name(req.arg("name") or body.get("name"))
        key = req.arg("key") or typed(body, "key", str, required=True)
        with self.store.transaction():
            doc = self._load(name)
            doc["tags"] = [t for t in doc.get("tags", []) if t["key"] != key]
            self._save(doc)
        return {}

    def search(self, req: Request) -> dict:
        """``search`` (MLflow filters on ``name`` and ``tags.<key>``) and ``list``."""
        limit = req.int_arg("max_results", default=100)
        if not 1 <= limit <= 1000:
            raise invalid(f"Invalid value {limit} for parameter 'max_results': it must be between 1 and 1000")
        flt = (req.arg("filter") or "").strip() if req.path.endswith("/search") else ""
        conditions = parse_filter(flt) if flt else []
        offset = page_offset(req.arg("page_token"))
        docs = [json.loads(r[0]) for r in self.store.query("SELECT doc FROM workspace_models ORDER BY name")]
        docs = [self._view(d) for d in docs if all(test(d) for test in conditions)]
        return page_of(docs, offset, limit, "registered_models")
