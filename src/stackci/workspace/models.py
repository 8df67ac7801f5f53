"""MLflow experiments (``/api/2.0/mlflow/experiments/*``) and Unity Catalog registered
models with versions and aliases (``/api/2.1/unity-catalog/models``): metadata only.

Experiments behave as on Databricks, where they are objects of the workspace
tree: the name is an absolute workspace path (``/Users/<me>/x``, ``/Shared/x``,
with or without ``/Workspace``; stored without it) whose parent folder must exist
(404 RESOURCE_DOES_NOT_EXIST "Parent directory ... does not exist.") and that no
notebook, file or folder occupies; a relative name is 400 INVALID_PARAMETER_VALUE;
a duplicate name, also of a deleted experiment, is 400 RESOURCE_ALREADY_EXISTS;
an unknown id is 404 RESOURCE_DOES_NOT_EXIST "Node ID <id> does not exist.".
Deleting marks the experiment ``deleted`` (it can be restored); no runs or
artifacts are stored.

Registered models: Unity Catalog names are case-insensitive and stored in lower
case; a missing model is 404 RESOURCE_DOES_NOT_EXIST "Routine or Model '<full
name>' does not exist.", a duplicate 409 RESOURCE_ALREADY_EXISTS. Catalogs and
schemas are not modelled (any name is accepted). Aliases are returned by ``get``
only with ``include_aliases=true`` and never by the list calls, as the API
reference says. Model versions are created through ``POST
/api/2.1/unity-catalog/models/{full_name}/versions`` (``{source, run_id,
comment}``), a local convenience the real service does not have (there, MLflow's
registry client creates versions and uploads artifacts); everything else follows
the real request and response shapes.
"""

from __future__ import annotations

import json
import re
import uuid

from stackci.workspace.api import ApiError, Request, already_exists, invalid, not_found, typed
from stackci.workspace.files import WorkspaceTree, parse_path
from stackci.workspace.jobs import decode_token, encode_token
from stackci.workspace.store import Store, now_ms

EXPERIMENT_ID_START = 1_000_000_000_000_001
METASTORE_ID = "00000000-0000-4000-8000-00000000c1a5"
UC_NAME = re.compile(r"^[^\s./\x00-\x1f]{1,255}$")
_ALIAS = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")
SEARCH_MAX_RESULTS = 3000
MAX_ID = 2**63 - 1  # SQLite INTEGER
LIST_MAX_RESULTS = 1000


def page_offset(token: str | None) -> int:
    if not token:
        return 0
    value = decode_token(token).get("offset", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid(f"Invalid page_token: {token}")
    return value


def page_of(docs: list, offset: int, size: int, key: str) -> dict:
    out: dict = {}
    page = docs[offset: offset + size]
    if page:
        out[key] = page
    if offset + size < len(docs):
        out["next_page_token"] = encode_token({"offset": offset + size})
    return out


# ---- MLflow experiments ---------------------------------------------------------


class Experiments:
    def __init__(self, store: Store, user_name: str) -> None:
        self.store = store
        self.user_name = user_name
        self.tree = WorkspaceTree(store)

    def _load(self, experiment_id) -> dict:
        key = str(experiment_id).strip()
        if not key.isdigit():
            raise invalid(f"Invalid value {experiment_id!r} for parameter 'experiment_id': "
                          "an experiment id is a string of digits")
        rows = self.store.query("SELECT doc FROM experiments WHERE experiment_id = ?", (int(key),)) \
            if int(key) <= MAX_ID else []
        if not rows:
            raise not_found(f"Node ID {key} does not exist.")
        return json.loads(rows[0][0])

    def _save(self, doc: dict) -> None:
        self.store.execute("INSERT OR REPLACE INTO experiments (experiment_id, name, doc) VALUES (?, ?, ?)",
                           (int(doc["experiment_id"]), doc["name"], Store.dumps(doc)))

    def _check_name(self, raw, field: str, req: Request) -> str:
        """An experiment name as a canonical workspace path whose parent folder exists."""
        if raw is None or raw == "":
            raise invalid(f"Missing required field: {field}")
        if not isinstance(raw, str):
            raise ApiError(400, "MALFORMED_REQUEST",
                           f"Invalid JSON given in the body of the request - expected a string for field '{field}'")
        if not raw.startswith("/"):
            raise invalid(f"Got an invalid experiment name '{raw}'. An experiment name must be an absolute path "
                          "within the Databricks workspace, e.g. '/Users/<some-username>/my-experiment'.")
        wp = parse_path(raw, name=field)
        self.tree.ensure_home(req.principal)
        if wp.top not in ("Users", "Shared", "Repos") or wp.depth < 2:
            raise ApiError(403, "PERMISSION_DENIED",
                           f"Cannot create an experiment at {raw}: use a folder under /Users, /Shared or /Repos")
        if self.tree.object_type(wp.parent) != "DIRECTORY":
            raise not_found(f"Parent directory {wp.show(wp.parent)} does not exist.")
        if self.tree.object_type(wp.canonical) is not None:
            raise already_exists(f"Node named '{wp.name}' already exists in {wp.show(wp.parent)}")
        return wp.canonical

    def _by_name(self, name: str) -> dict | None:
        rows = self.store.query("SELECT doc FROM experiments WHERE name = ?", (name,))
        return json.loads(rows[0][0]) if rows else None

    def create(self, req: Request) -> dict:
        body = req.json()
        tags = parse_tags(typed(body, "tags", list, default=[]))
        location = typed(body, "artifact_location", str)
        principal = req.principal or self.user_name
        with self.store.transaction():
            name = self._check_name(body.get("name"), "name", req)
            existing = self._by_name(name)
            if existing is not None:
                state = " in deleted state" if existing["lifecycle_stage"] == "deleted" else ""
                raise already_exists(f"Experiment with name '{name}' already exists{state}.")
            experiment_id = str(self.store.next_id("experiment", EXPERIMENT_ID_START))
            ts = now_ms()
            system = [{"key": "mlflow.ownerEmail", "value": principal},
                      {"key": "mlflow.experiment.sourceName", "value": name},
                      {"key": "mlflow.experimentType", "value": "MLFLOW_EXPERIMENT"}]
            user_keys = {t["key"] for t in tags}
            doc = {"experiment_id": experiment_id, "name": name,
                   "artifact_location": location or f"dbfs:/databricks/mlflow-tracking/{experiment_id}",
                   "lifecycle_stage": "active", "creation_time": ts, "last_update_time": ts,
                   "tags": tags + [t for t in system if t["key"] not in user_keys]}
            self._save(doc)
        return {"experiment_id": experiment_id}

    def get(self, req: Request) -> dict:
        return {"experiment": self._load(req.arg("experiment_id", required=True))}

    def get_by_name(self, req: Request) -> dict:
        raw = req.arg("experiment_name", required=True)
        name = raw
        if raw.startswith("/"):
            try:
                name = parse_path(raw, name="experiment_name").canonical
            except ApiError:
                name = raw
        doc = self._by_name(name)
        if doc is None:
            raise not_found(f"Node {raw} does not exist.")
        return {"experiment": doc}

    def update(self, req: Request) -> dict:
        body = req.json()
        experiment_id = _id_field(body)
        new_name = typed(body, "new_name", str)
        with self.store.transaction():
            doc = self._load(experiment_id)
            if new_name:
                if doc["lifecycle_stage"] != "active":
                    raise invalid(f"Cannot rename a non-active experiment {experiment_id}.")
                canonical = parse_path(new_name, name="new_name").canonical if new_name.startswith("/") else None
                if canonical != doc["name"]:
                    canonical = self._check_name(new_name, "new_name", req)
                    if self._by_name(canonical) is not None:
                        raise already_exists(f"Experiment with name '{canonical}' already exists.")
                    doc["name"] = canonical
                    for tag in doc.get("tags", []):
                        if tag.get("key") == "mlflow.experiment.sourceName":
                            tag["value"] = canonical
            doc["last_update_time"] = now_ms()
            self._save(doc)
        return {}

    def delete(self, req: Request) -> dict:
        experiment_id = _id_field(req.json())
        with self.store.transaction():
            doc = self._load(experiment_id)
            doc["lifecycle_stage"] = "deleted"
            doc["last_update_time"] = now_ms()
            self._save(doc)
        return {}

    def restore(self, req: Request) -> dict:
        experiment_id = _id_field(req.json())
        with self.store.transaction():
            doc = self._load(experiment_id)
            doc["lifecycle_stage"] = "active"
            doc["last_update_time"] = now_ms()
            self._save(doc)
        return {}

    def set_tag(self, req: Request) -> dict:
        body = req.json()
        experiment_id = _id_field(body)
        key = typed(body, "key", str, required=True)
        value = typed(body, "value", str, default="")
        with self.store.transaction():
            doc = self._load(experiment_id)
            tags = [t for t in doc.get("tags", []) if t.get("key") != key]
            doc["tags"] = tags + [{"key": key, "value": value}]
            self._save(doc)
        return {}

    def search(self, req: Request) -> dict:
        """``POST search`` (JSON body), ``GET search`` and ``GET list`` (query string)."""
        listing = req.path.endswith("/list")
        body = req.json() if req.method == "POST" else dict(req.query)
        limit = LIST_MAX_RESULTS if listing else SEARCH_MAX_RESULTS
        max_results = typed(body, "max_results", int, default=limit)
        if max_results <= 0 or (max_results > limit and not listing):
            raise invalid(f"Invalid value {max_results} for parameter 'max_results' supplied: "
                          f"it must be between 1 and {limit}")
        max_results = min(max_results, limit)
        view = typed(body, "view_type", str, default="ACTIVE_ONLY")
        if view not in ("ACTIVE_ONLY", "DELETED_ONLY", "ALL"):
            raise invalid(f"Invalid view_type {view!r}: use ACTIVE_ONLY, DELETED_ONLY or ALL")
        flt = "" if listing else typed(body, "filter", str, default="")
        order_by = [] if listing else body.get("order_by") or []
        if isinstance(order_by, str):
            order_by = [order_by]
        if not isinstance(order_by, list) or not all(isinstance(o, str) for o in order_by):
            raise malformed_field("order_by", "an array of strings")
        offset = page_offset(typed(body, "page_token", str))
        docs = [json.loads(r[0]) for r in self.store.query("SELECT doc FROM experiments")]
        if view != "ALL":
            wanted = "active" if view == "ACTIVE_ONLY" else "deleted"
            docs = [d for d in docs if d["lifecycle_stage"] == wanted]
        if flt.strip():
            conditions = parse_filter(flt)
            docs = [d for d in docs if all(c(d) for c in conditions)]
        _sort(docs, order_by)
        return page_of(docs, offset, max_results, "experiments")


def malformed_field(name: str, what: str) -> ApiError:
    return ApiError(400, "MALFORMED_REQUEST",
                    f"Invalid JSON given in the body of the request - expected {what} for field '{name}'")


def _id_field(body: dict) -> str:
    value = body.get("experiment_id")
    if value is None or value == "":
        raise invalid("Missing required field: experiment_id")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise malformed_field("experiment_id", "a string")
    return str(value)


def parse_tags(raw: list) -> list[dict]:
    tags = []
    for i, tag in enumerate(raw):
        if not isinstance(tag, dict):
            raise malformed_field(f"tags[{i}]", "an object")
        key = typed(tag, "key", str, required=True, where=f"tags[{i}].")
        value = typed(tag, "value", str, default="", where=f"tags[{i}].")
        if not key.strip():
            raise invalid(f"tags[{i}].key must not be empty")
        tags = [t for t in tags if t["key"] != key] + [{"key": key, "value": value}]
    return tags


_ORDER = re.compile(r"^\s*(?:attribute\.)?(name|last_update_time|creation_time|experiment_id)"
                    r"(?:\s+(ASC|DESC))?\s*$", re.IGNORECASE)


def _sort(docs: list[dict], order_by: list[str]) -> None:
    """MLflow's ordering: the given keys, default ``last_update_time DESC``; ties by experiment id DESC."""
    keys = []
    for clause in order_by or ["last_update_time DESC"]:
        m = _ORDER.match(clause)
        if not m:
            raise invalid(f"Invalid order_by clause {clause!r}: use name, last_update_time, creation_time "
                          "or experiment_id, optionally followed by ASC or DESC")
        keys.append((m.group(1).lower(), (m.group(2) or "ASC").upper() == "DESC"))
    docs.sort(key=lambda d: int(d["experiment_id"]), reverse=True)
    for field, desc in reversed(keys):
        if field == "experiment_id":
            docs.sort(key=lambda d: int(d["experiment_id"]), reverse=desc)
        else:
            docs.sort(key=lambda d, f=field: d[f], reverse=desc)


_COND = re.compile(
    r"\s*(?:(?:attribute|attributes|attr)\.)?(?P<field>name|tags?\.(?:`[^`]+`|\"[^\"]+\"|[\w.\-]+))"
    r"\s*(?P<op>=|!=|(?:NOT\s+)?I?LIKE)\s*'(?P<value>(?:[^']|'')*)'\s*", re.IGNORECASE)


def parse_filter(flt: str) -> list:
    """The ``name``/``tags.<key>`` with ``=``, ``!=``, ``LIKE``, ``ILIKE`` subset of MLflow filters, joined by AND."""
    parts = re.split(r"\s+AND\s+", flt.strip(), flags=re.IGNORECASE)
    conditions = []
    for part in parts:
        m = _COND.fullmatch(part)
        if not m:
            raise invalid(f"Invalid filter {flt!r}: the local workspace supports name and tags.<key> "
                          "compared with =, !=, LIKE or ILIKE to a quoted string, joined by AND")
        conditions.append(_condition(m.group("field"), re.sub(r"\s+", " ", m.group("op").upper()),
                                     m.group("value").replace("''", "'")))
    return conditions


def _condition(field: str, op: str, value: str):
    if field.lower() == "name":
        def get(doc):
            return doc["name"]
    else:
        key = field.split(".", 1)[1].strip("`\"")

        def get(doc):
            for tag in doc.get("tags", []):
                if tag.get("key") == key:
                    return tag.get("value", "")
            return None

    if op in ("=", "!="):
        def test(doc):
            got = get(doc)
            return got is not None and (got == value) == (op == "=")
        return test
    pattern = re.compile("^" + "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch)
                                       for ch in value) + "$", re.IGNORECASE if "ILIKE" in op else 0)
    negate = op.startswith("NOT")

    def like(doc):
        got = get(doc)
        return got is not None and (pattern.match(got) is not None) != negate
    return like


# ---- Unity Catalog registered models ------------------------------------------------


def _uc_part(label: str, value) -> str:
    if not isinstance(value, str):
        raise malformed_field(label, "a string")
    if not UC_NAME.match(value):
        raise invalid(f"Invalid {label} '{value}': names must be 1-255 characters without spaces, '.', '/' "
                      "or control characters")
    return value.lower()


class RegisteredModels:
    def __init__(self, store: Store, user_name: str) -> None:
        self.store = store
        self.user_name = user_name
        self.grants = None   # the workspace's Grants: a model's grants go with it

    def exists(self, full_name: str) -> bool:
        return bool(self.store.query("SELECT 1 FROM models WHERE full_name = ?", (self._key(full_name),)))

    @staticmethod
    def _key(full_name: str) -> str:
        return full_name.lower()

    def _load(self, full_name: str) -> dict:
        rows = self.store.query("SELECT doc FROM models WHERE full_name = ?", (self._key(full_name),))
        if not rows:
            raise not_found(f"Routine or Model '{full_name}' does not exist.")
        return json.loads(rows[0][0])

    def _save(self, doc: dict) -> None:
        self.store.execute("INSERT OR REPLACE INTO models (full_name, doc) VALUES (?, ?)",
                           (self._key(doc["full_name"]), Store.dumps(doc)))

    @staticmethod
    def _view(doc: dict, include_aliases: bool) -> dict:
        out = {k: v for k, v in doc.items() if not k.startswith("_")}
        aliases = out.pop("aliases", [])
        if include_aliases and aliases:
            out["aliases"] = [{**a, "catalog_name": doc["catalog_name"], "schema_name": doc["schema_name"],
                               "model_name": doc["name"]} for a in aliases]
        return out

    def create(self, req: Request) -> dict:
        body = req.json()
        for field in ("catalog_name", "schema_name", "name"):
            if body.get(field) in (None, ""):
                raise invalid(f"Missing required field: {field}")
        catalog = _uc_part("catalog_name", body["catalog_name"])
        schema = _uc_part("schema_name", body["schema_name"])
        name = _uc_part("name", body["name"])
        comment = typed(body, "comment", str)
        location = typed(body, "storage_location", str)
        full_name = f"{catalog}.{schema}.{name}"
        principal = req.principal or self.user_name
        with self.store.transaction():
            if self.store.query("SELECT 1 FROM models WHERE full_name = ?", (full_name,)):
                raise already_exists(f"Routine or Model '{name}' already exists", status=409)
            ts = now_ms()
            doc = {"full_name": full_name, "catalog_name": catalog, "schema_name": schema, "name": name,
                   "owner": typed(body, "owner", str) or principal, "created_at": ts, "created_by": principal,
                   "updated_at": ts, "updated_by": principal, "metastore_id": METASTORE_ID,
                   "storage_location": location or f"s3://local-metastore/models/{uuid.uuid4()}", "aliases": []}
            if comment:
                doc["comment"] = comment
            self._save(doc)
        return self._view(doc, False)

    def get(self, req: Request) -> dict:
        doc = self._load(req.match["full_name"])
        return self._view(doc, req.bool_arg("include_aliases"))

    def list(self, req: Request) -> dict:
        catalog = req.arg("catalog_name")
        schema = req.arg("schema_name")
        if schema and not catalog:
            raise invalid("catalog_name is required when schema_name is given")
        max_results = req.int_arg("max_results", default=0)
        if max_results < 0:
            raise invalid("max_results must not be negative")
        max_results = min(max_results or 100, 1000)
        offset = page_offset(req.arg("page_token"))
        docs = [json.loads(r[0]) for r in self.store.query("SELECT doc FROM models ORDER BY full_name")]
        if catalog:
            docs = [d for d in docs if d["catalog_name"] == catalog.lower()]
        if schema:
            docs = [d for d in docs if d["schema_name"] == schema.lower()]
        return page_of([self._view(d, False) for d in docs], offset, max_results, "registered_models")

    def update(self, req: Request) -> dict:
        full_name = req.match["full_name"]
        body = req.json()
        comment = typed(body, "comment", str)
        owner = typed(body, "owner", str)
        new_name = typed(body, "new_name", str)
        with self.store.transaction():
            doc = self._load(full_name)
            old_key = self._key(doc["full_name"])
            if comment is not None:
                doc["comment"] = comment
            if owner is not None:
                doc["owner"] = owner
            if new_name:
                new_name = _uc_part("new_name", new_name)
            if new_name and new_name != doc["name"]:
                new_full = f"{doc['catalog_name']}.{doc['schema_name']}.{new_name}"
                if self.store.query("SELECT 1 FROM models WHERE full_name = ?", (new_full,)):
                    raise already_exists(f"Routine or Model '{new_name}' already exists", status=409)
                self.store.execute("DELETE FROM models WHERE full_name = ?", (old_key,))
                rows = self.store.query("SELECT version, doc FROM model_versions WHERE full_name = ?", (old_key,))
                for version, vdoc in rows:
                    v = json.loads(vdoc)
                    v["model_name"] = new_name
                    self.store.execute("UPDATE model_versions SET full_name = ?, doc = ? "
                                       "WHERE full_name = ? AND version = ?",
                                       (new_full, Store.dumps(v), old_key, version))
                if self.grants is not None:
                    self.grants.move("function", old_key, new_full)
                doc["name"] = new_name
                doc["full_name"] = new_full
            doc["updated_at"] = now_ms()
            doc["updated_by"] = req.principal or self.user_name
            self._save(doc)
        return self._view(doc, False)

    def delete(self, req: Request) -> dict:
        full_name = req.match["full_name"]
        with self.store.transaction():
            doc = self._load(full_name)
            key = self._key(doc["full_name"])
            self.store.execute("DELETE FROM model_versions WHERE full_name = ?", (key,))
            self.store.execute("DELETE FROM models WHERE full_name = ?", (key,))
            if self.grants is not None:
                self.grants.forget("function", key)
        return {}

    # ---- versions ----------------------------------------------------------

    @staticmethod
    def _number(version) -> int:
        text = str(version).strip()
        if not text.isdigit() or not 1 <= int(text) <= MAX_ID:
            raise invalid(f"Invalid version '{version}': a model version is a positive integer")
        return int(text)

    def _version(self, model: dict, version) -> dict:
        number = self._number(version)
        rows = self.store.query("SELECT doc FROM model_versions WHERE full_name = ? AND version = ?",
                                (self._key(model["full_name"]), number))
        if not rows:
            raise not_found(f"Model version {number} of '{model['full_name']}' does not exist.")
        return json.loads(rows[0][0])

    @staticmethod
    def _version_view(model: dict, version: dict, include_aliases: bool) -> dict:
        out = dict(version)
        if include_aliases:
            aliases = [{"alias_name": a["alias_name"], "version_num": a["version_num"],
                        "catalog_name": model["catalog_name"], "schema_name": model["schema_name"],
                        "model_name": model["name"]}
                       for a in model.get("aliases", []) if a["version_num"] == version["version"]]
            if aliases:
                out["aliases"] = aliases
        return out

    def create_version(self, req: Request) -> dict:
        full_name = req.match["full_name"]
        body = req.json()
        source = typed(body, "source", str, required=True)
        run_id = typed(body, "run_id", str)
        comment = typed(body, "comment", str)
        principal = req.principal or self.user_name
        with self.store.transaction():
            model = self._load(full_name)
            key = self._key(model["full_name"])
            rows = self.store.query("SELECT MAX(version) FROM model_versions WHERE full_name = ?", (key,))
            number = (rows[0][0] or 0) + 1
            last = model.get("_last_version", 0)
            number = max(number, last + 1)  # version numbers are never reused, even after a delete
            ts = now_ms()
            doc = {"model_name": model["name"], "catalog_name": model["catalog_name"],
                   "schema_name": model["schema_name"], "version": number, "source": source,
                   "status": "READY", "created_at": ts, "created_by": principal,
                   "updated_at": ts, "updated_by": principal, "metastore_id": METASTORE_ID,
                   "id": str(uuid.uuid4()), "storage_location": f"{model['storage_location']}/versions/{number}"}
            if run_id:
                doc["run_id"] = run_id
            if comment:
                doc["comment"] = comment
            self.store.execute("INSERT INTO model_versions (full_name, version, doc) VALUES (?, ?, ?)",
                               (key, number, Store.dumps(doc)))
            model["_last_version"] = number
            self._save(model)
        return doc

    def get_version(self, req: Request) -> dict:
        model = self._load(req.match["full_name"])
        doc = self._version(model, req.match["version"])
        return self._version_view(model, doc, req.bool_arg("include_aliases"))

    def list_versions(self, req: Request) -> dict:
        model = self._load(req.match["full_name"])
        max_results = req.int_arg("max_results", default=0)
        if max_results < 0:
            raise invalid("max_results must not be negative")
        max_results = min(max_results or 100, 1000)
        offset = page_offset(req.arg("page_token"))
        docs = [json.loads(r[0]) for r in self.store.query(
            "SELECT doc FROM model_versions WHERE full_name = ? ORDER BY version DESC",
            (self._key(model["full_name"]),))]
        return page_of(docs, offset, max_results, "model_versions")

    def update_version(self, req: Request) -> dict:
        body = req.json()
        comment = typed(body, "comment", str)
        with self.store.transaction():
            model = self._load(req.match["full_name"])
            doc = self._version(model, req.match["version"])
            if comment is not None:
                doc["comment"] = comment
            doc["updated_at"] = now_ms()
            doc["updated_by"] = req.principal or self.user_name
            self.store.execute("UPDATE model_versions SET doc = ? WHERE full_name = ? AND version = ?",
                               (Store.dumps(doc), self._key(model["full_name"]), doc["version"]))
        return self._version_view(model, doc, False)

    def delete_version(self, req: Request) -> dict:
        with self.store.transaction():
            model = self._load(req.match["full_name"])
            doc = self._version(model, req.match["version"])
            model["aliases"] = [a for a in model.get("aliases", []) if a["version_num"] != doc["version"]]
            self._save(model)
            self.store.execute("DELETE FROM model_versions WHERE full_name = ? AND version = ?",
                               (self._key(model["full_name"]), doc["version"]))
        return {}

    # ---- aliases -----------------------------------------------------------

    def set_alias(self, req: Request) -> dict:
        alias = req.match["alias"]
        if not _ALIAS.match(alias) or alias.lower() == "latest" or re.fullmatch(r"[vV]?\d+", alias):
            raise invalid(f"Invalid alias '{alias}': use letters, digits, '_' or '-'; "
                          "'latest' and version-like names (1, v1) are reserved")
        version = typed(req.json(), "version_num", int, required=True)
        with self.store.transaction():
            model = self._load(req.match["full_name"])
            self._version(model, version)
            alias = alias.lower()
            model["aliases"] = [a for a in model.get("aliases", []) if a["alias_name"] != alias]
            model["aliases"].append({"alias_name": alias, "version_num": version})
            model["aliases"].sort(key=lambda a: a["alias_name"])
            self._save(model)
        return {"alias_name": alias, "version_num": version, "catalog_name": model["catalog_name"],
                "schema_name": model["schema_name"], "model_name": model["name"]}

    def delete_alias(self, req: Request) -> dict:
        alias = req.match["alias"].lower()
        with self.store.transaction():
            model = self._load(req.match["full_name"])
            kept = [a for a in model.get("aliases", []) if a["alias_name"] != alias]
            if len(kept) == len(model.get("aliases", [])):
                raise not_found(f"Alias '{alias}' does not exist on registered model '{model['full_name']}'.")
            model["aliases"] = kept
            self._save(model)
        return {}

    def get_by_alias(self, req: Request) -> dict:
        alias = req.match["alias"].lower()
        model = self._load(req.match["full_name"])
        match = [a for a in model.get("aliases", []) if a["alias_name"] == alias]
        if not match:
            raise not_found(f"Alias '{alias}' does not exist on registered model '{model['full_name']}'.")
        doc = self._version(model, match[0]["version_num"])
        return self._version_view(model, doc, req.bool_arg("include_aliases"))


__all__ = ["Experiments", "RegisteredModels", "ApiError"]
