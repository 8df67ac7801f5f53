"""MLflow experiments (``/api/2.0/mlflow/experiments/*``) and Unity Catalog registered
models with versions and aliases (``/api/2.1/unity-catalog/models``): metadata only.

No artifacts are stored. Model versions are created through
``POST /api/2.1/unity-catalog/models/{full_name}/versions`` (``{source, run_id,
comment}``), a local convenience the real service does not have (there,
MLflow's registry client creates versions); everything else follows the real
request and response shapes.
"""

from __future__ import annotations

import json
import re

from stackci.workspace.api import ApiError, Request, already_exists, invalid, not_found, typed
from stackci.workspace.jobs import decode_token, encode_token
from stackci.workspace.store import Store, now_ms

EXPERIMENT_ID_START = 1_000_000_000_000_001
_NAME_PART = re.compile(r"^[A-Za-z0-9_\-]+$")
METASTORE_ID = "00000000-0000-4000-8000-00000000c1a5"


class Experiments:
    def __init__(self, store: Store, user_name: str) -> None:
        self.store = store
        self.user_name = user_name

    def _load(self, experiment_id) -> dict:
        try:
            key = int(experiment_id)
        except (TypeError, ValueError):
            raise invalid(f"Invalid experiment_id: {experiment_id!r}") from None
        rows = self.store.query("SELECT doc FROM experiments WHERE experiment_id = ?", (key,))
        if not rows:
            raise not_found(f"No Experiment with id={experiment_id} exists")
        return json.loads(rows[0][0])

    def _save(self, doc: dict) -> None:
        self.store.execute("INSERT OR REPLACE INTO experiments (experiment_id, name, doc) VALUES (?, ?, ?)",
                           (int(doc["experiment_id"]), doc["name"], Store.dumps(doc)))

    def create(self, req: Request) -> dict:
        name = req.field("name", str, required=True)
        if not name.strip():
            raise invalid("Experiment name must not be empty")
        tags = req.field("tags", list) or []
        location = req.field("artifact_location", str)
        with self.store.transaction():
            if self.store.query("SELECT 1 FROM experiments WHERE name = ?", (name,)):
                raise already_exists(f"Experiment '{name}' already exists.")
            experiment_id = str(self.store.next_id("experiment", EXPERIMENT_ID_START))
            ts = now_ms()
            doc = {"experiment_id": experiment_id, "name": name,
                   "artifact_location": location or f"dbfs:/databricks/mlflow-tracking/{experiment_id}",
                   "lifecycle_stage": "active", "creation_time": ts, "last_update_time": ts,
                   "tags": [t for t in tags if isinstance(t, dict)]}
            self._save(doc)
        return {"experiment_id": experiment_id}

    def get(self, req: Request) -> dict:
        return {"experiment": self._load(req.arg("experiment_id", required=True))}

    def get_by_name(self, req: Request) -> dict:
        name = req.arg("experiment_name", required=True)
        rows = self.store.query("SELECT doc FROM experiments WHERE name = ?", (name,))
        if not rows:
            raise not_found(f"Could not find experiment with name {name}")
        return {"experiment": json.loads(rows[0][0])}

    def update(self, req: Request) -> dict:
        experiment_id = req.field("experiment_id", str, required=True)
        new_name = req.field("new_name", str)
        with self.store.transaction():
            doc = self._load(experiment_id)
            if new_name:
                if new_name != doc["name"] and self.store.query("SELECT 1 FROM experiments WHERE name = ?",
                                                                (new_name,)):
                    raise already_exists(f"Experiment '{new_name}' already exists.")
                doc["name"] = new_name
            doc["last_update_time"] = now_ms()
            self._save(doc)
        return {}

    def delete(self, req: Request) -> dict:
        experiment_id = req.field("experiment_id", str, required=True)
        with self.store.transaction():
            doc = self._load(experiment_id)
            doc["lifecycle_stage"] = "deleted"
            doc["last_update_time"] = now_ms()
            self._save(doc)
        return {}

    def restore(self, req: Request) -> dict:
        experiment_id = req.field("experiment_id", str, required=True)
        with self.store.transaction():
            doc = self._load(experiment_id)
            doc["lifecycle_stage"] = "active"
            self._save(doc)
        return {}

    def search(self, req: Request) -> dict:
        body = req.json() if req.method == "POST" else dict(req.query)
        max_results = typed(body, "max_results", int, default=1000)
        if max_results <= 0 or max_results > 50000:
            raise invalid("max_results must be between 1 and 50000")
        view = str(body.get("view_type") or "ACTIVE_ONLY")
        flt = body.get("filter") or ""
        token = body.get("page_token")
        offset = decode_token(token).get("offset", 0) if token else 0
        docs = [json.loads(r[0]) for r in self.store.query("SELECT doc FROM experiments ORDER BY experiment_id")]
        if view == "ACTIVE_ONLY":
            docs = [d for d in docs if d["lifecycle_stage"] == "active"]
        elif view == "DELETED_ONLY":
            docs = [d for d in docs if d["lifecycle_stage"] == "deleted"]
        if flt:
            docs = [d for d in docs if _match_filter(d, str(flt))]
        page = docs[offset: offset + max_results]
        out: dict = {}
        if page:
            out["experiments"] = page
        if offset + max_results < len(docs):
            out["next_page_token"] = encode_token({"offset": offset + max_results})
        return out


_FILTER = re.compile(r"^\s*(?:attribute\.)?name\s*(=|!=|LIKE|ILIKE)\s*'((?:[^']|'')*)'\s*$", re.IGNORECASE)


def _match_filter(doc: dict, flt: str) -> bool:
    """The ``name = '...'`` / ``name LIKE '...'`` subset of MLflow's search filter."""
    m = _FILTER.match(flt)
    if not m:
        raise invalid(f"Unsupported filter {flt!r}: the local workspace supports name =, !=, LIKE and ILIKE")
    op, value = m.group(1).upper(), m.group(2).replace("''", "'")
    name = doc["name"]
    if op == "=":
        return name == value
    if op == "!=":
        return name != value
    pattern = "^" + re.escape(value).replace("%", ".*").replace("_", ".") + "$"
    return re.match(pattern, name, re.IGNORECASE if op == "ILIKE" else 0) is not None


class RegisteredModels:
    def __init__(self, store: Store, user_name: str) -> None:
        self.store = store
        self.user_name = user_name

    def _load(self, full_name: str) -> dict:
        rows = self.store.query("SELECT doc FROM models WHERE full_name = ?", (full_name.lower(),))
        if not rows:
            raise not_found(f"Registered model '{full_name}' does not exist.")
        return json.loads(rows[0][0])

    def _save(self, doc: dict) -> None:
        self.store.execute("INSERT OR REPLACE INTO models (full_name, doc) VALUES (?, ?)",
                           (doc["full_name"].lower(), Store.dumps(doc)))

    def _view(self, doc: dict, include_aliases: bool = True) -> dict:
        out = dict(doc)
        if not include_aliases:
            out.pop("aliases", None)
        return out

    def create(self, req: Request) -> dict:
        catalog = req.field("catalog_name", str, required=True)
        schema = req.field("schema_name", str, required=True)
        name = req.field("name", str, required=True)
        for label, part in (("catalog_name", catalog), ("schema_name", schema), ("name", name)):
            if not _NAME_PART.match(part):
                raise invalid(f"Invalid {label} {part!r}: use letters, digits, '_' or '-'")
        full_name = f"{catalog}.{schema}.{name}"
        with self.store.transaction():
            if self.store.query("SELECT 1 FROM models WHERE full_name = ?", (full_name.lower(),)):
                raise already_exists(f"Registered model '{full_name}' already exists.", status=409)
            ts = now_ms()
            doc = {"full_name": full_name, "catalog_name": catalog, "schema_name": schema, "name": name,
                   "comment": req.field("comment", str) or "", "owner": req.principal or self.user_name,
                   "created_at": ts, "created_by": req.principal or self.user_name, "updated_at": ts,
                   "updated_by": req.principal or self.user_name, "metastore_id": METASTORE_ID,
                   "storage_location": req.field("storage_location", str)
                   or f"s3://local-metastore/models/{full_name}", "aliases": []}
            if not doc["comment"]:
                del doc["comment"]
            self._save(doc)
        return doc

    def get(self, req: Request) -> dict:
        doc = self._load(req.match["full_name"])
        return self._view(doc, req.bool_arg("include_aliases", True))

    def list(self, req: Request) -> dict:
        catalog = req.arg("catalog_name")
        schema = req.arg("schema_name")
        if schema and not catalog:
            raise invalid("catalog_name is required when schema_name is given")
        max_results = req.int_arg("max_results", default=100)
        if max_results < 0 or max_results > 1000:
            raise invalid("max_results must be between 0 and 1000")
        max_results = max_results or 100
        token = req.arg("page_token")
        offset = decode_token(token).get("offset", 0) if token else 0
        docs = [json.loads(r[0]) for r in self.store.query("SELECT doc FROM models ORDER BY full_name")]
        if catalog:
            docs = [d for d in docs if d["catalog_name"].lower() == catalog.lower()]
        if schema:
            docs = [d for d in docs if d["schema_name"].lower() == schema.lower()]
        page = docs[offset: offset + max_results]
        out: dict = {}
        if page:
            out["registered_models"] = page
        if offset + max_results < len(docs):
            out["next_page_token"] = encode_token({"offset": offset + max_results})
        return out

    def update(self, req: Request) -> dict:
        full_name = req.match["full_name"]
        with self.store.transaction():
            doc = self._load(full_name)
            comment = req.field("comment", str)
            owner = req.field("owner", str)
            new_name = req.field("new_name", str)
            if comment is not None:
                doc["comment"] = comment
            if owner is not None:
                doc["owner"] = owner
            if new_name and new_name != doc["name"]:
                if not _NAME_PART.match(new_name):
                    raise invalid(f"Invalid new_name {new_name!r}")
                new_full = f"{doc['catalog_name']}.{doc['schema_name']}.{new_name}"
                if self.store.query("SELECT 1 FROM models WHERE full_name = ?", (new_full.lower(),)):
                    raise already_exists(f"Registered model '{new_full}' already exists.", status=409)
                self.store.execute("DELETE FROM models WHERE full_name = ?", (doc["full_name"].lower(),))
                self.store.execute("UPDATE model_versions SET full_name = ? WHERE full_name = ?",
                                   (new_full.lower(), doc["full_name"].lower()))
                doc["name"] = new_name
                doc["full_name"] = new_full
            doc["updated_at"] = now_ms()
            doc["updated_by"] = req.principal or self.user_name
            self._save(doc)
        return doc

    def delete(self, req: Request) -> dict:
        full_name = req.match["full_name"]
        with self.store.transaction():
            self._load(full_name)
            self.store.execute("DELETE FROM model_versions WHERE full_name = ?", (full_name.lower(),))
            self.store.execute("DELETE FROM models WHERE full_name = ?", (full_name.lower(),))
        return {}

    # ---- versions ----------------------------------------------------------

    def _version(self, full_name: str, version) -> dict:
        try:
            number = int(version)
        except (TypeError, ValueError):
            raise invalid(f"Invalid version {version!r}: must be an integer") from None
        self._load(full_name)
        rows = self.store.query("SELECT doc FROM model_versions WHERE full_name = ? AND version = ?",
                                (full_name.lower(), number))
        if not rows:
            raise not_found(f"Model version {full_name}/{number} does not exist.")
        return json.loads(rows[0][0])

    def _with_aliases(self, model: dict, version: dict) -> dict:
        out = dict(version)
        out["aliases"] = [a for a in model.get("aliases", []) if a["version_num"] == version["version"]]
        return out

    def create_version(self, req: Request) -> dict:
        full_name = req.match["full_name"]
        source = req.field("source", str, required=True)
        with self.store.transaction():
            model = self._load(full_name)
            rows = self.store.query("SELECT MAX(version) FROM model_versions WHERE full_name = ?",
                                    (full_name.lower(),))
            number = (rows[0][0] or 0) + 1
            ts = now_ms()
            doc = {"model_name": model["name"], "catalog_name": model["catalog_name"],
                   "schema_name": model["schema_name"], "version": number, "source": source,
                   "status": "READY", "created_at": ts, "created_by": req.principal or self.user_name,
                   "updated_at": ts, "updated_by": req.principal or self.user_name,
                   "metastore_id": METASTORE_ID, "id": f"{model['full_name']}/{number}",
                   "storage_location": f"{model['storage_location']}/versions/{number}"}
            run_id = req.field("run_id", str)
            if run_id:
                doc["run_id"] = run_id
            comment = req.field("comment", str)
            if comment:
                doc["comment"] = comment
            self.store.execute("INSERT INTO model_versions (full_name, version, doc) VALUES (?, ?, ?)",
                               (full_name.lower(), number, Store.dumps(doc)))
        return self._with_aliases(model, doc)

    def get_version(self, req: Request) -> dict:
        full_name = req.match["full_name"]
        doc = self._version(full_name, req.match["version"])
        return self._with_aliases(self._load(full_name), doc)

    def list_versions(self, req: Request) -> dict:
        full_name = req.match["full_name"]
        model = self._load(full_name)
        max_results = req.int_arg("max_results", default=100)
        if max_results < 0 or max_results > 1000:
            raise invalid("max_results must be between 0 and 1000")
        max_results = max_results or 100
        token = req.arg("page_token")
        offset = decode_token(token).get("offset", 0) if token else 0
        docs = [json.loads(r[0]) for r in self.store.query(
            "SELECT doc FROM model_versions WHERE full_name = ? ORDER BY version DESC", (full_name.lower(),))]
        page = [self._with_aliases(model, d) for d in docs[offset: offset + max_results]]
        out: dict = {}
        if page:
            out["model_versions"] = page
        if offset + max_results < len(docs):
            out["next_page_token"] = encode_token({"offset": offset + max_results})
        return out

    def update_version(self, req: Request) -> dict:
        full_name = req.match["full_name"]
        with self.store.transaction():
            doc = self._version(full_name, req.match["version"])
            comment = req.field("comment", str)
            if comment is not None:
                doc["comment"] = comment
            doc["updated_at"] = now_ms()
            self.store.execute("UPDATE model_versions SET doc = ? WHERE full_name = ? AND version = ?",
                               (Store.dumps(doc), full_name.lower(), doc["version"]))
        return self._with_aliases(self._load(full_name), doc)

    def delete_version(self, req: Request) -> dict:
        full_name = req.match["full_name"]
        with self.store.transaction():
            doc = self._version(full_name, req.match["version"])
            model = self._load(full_name)
            model["aliases"] = [a for a in model.get("aliases", []) if a["version_num"] != doc["version"]]
            self._save(model)
            self.store.execute("DELETE FROM model_versions WHERE full_name = ? AND version = ?",
                               (full_name.lower(), doc["version"]))
        return {}

    # ---- aliases -----------------------------------------------------------

    def set_alias(self, req: Request) -> dict:
        full_name, alias = req.match["full_name"], req.match["alias"]
        if not _NAME_PART.match(alias) or alias.isdigit() or alias.lower() == "latest":
            raise invalid(f"Invalid alias {alias!r}")
        version = req.field("version_num", int, required=True)
        with self.store.transaction():
            self._version(full_name, version)
            model = self._load(full_name)
            model["aliases"] = [a for a in model.get("aliases", []) if a["alias_name"] != alias]
            entry = {"alias_name": alias, "version_num": version}
            model["aliases"].append(entry)
            model["aliases"].sort(key=lambda a: a["alias_name"])
            self._save(model)
        return {**entry, "catalog_name": model["catalog_name"], "schema_name": model["schema_name"],
                "model_name": model["name"]}

    def delete_alias(self, req: Request) -> dict:
        full_name, alias = req.match["full_name"], req.match["alias"]
        with self.store.transaction():
            model = self._load(full_name)
            kept = [a for a in model.get("aliases", []) if a["alias_name"] != alias]
            if len(kept) == len(model.get("aliases", [])):
                raise not_found(f"Alias '{alias}' does not exist on registered model '{full_name}'.")
            model["aliases"] = kept
            self._save(model)
        return {}

    def get_by_alias(self, req: Request) -> dict:
        full_name, alias = req.match["full_name"], req.match["alias"]
        model = self._load(full_name)
        match = [a for a in model.get("aliases", []) if a["alias_name"] == alias]
        if not match:
            raise not_found(f"Alias '{alias}' does not exist on registered model '{full_name}'.")
        return self._with_aliases(model, self._version(full_name, match[0]["version_num"]))


__all__ = ["Experiments", "RegisteredModels", "ApiError"]
