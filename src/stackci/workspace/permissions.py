"""Object permissions (``/api/2.0/permissions/{object_type}/{id}``) and Unity Catalog grants
(``/api/2.1/unity-catalog/permissions/{securable_type}/{full_name}``) of the local workspace.

Permissions follow the Permissions API: ``GET`` returns the object's access control list,
``PUT`` replaces every direct permission with the list sent (an empty or missing list removes
them all), ``PATCH`` sets the level of the principals it names and leaves the others, and
``GET .../permissionLevels`` lists the levels the object type accepts. Each entry names exactly
one of ``user_name``, ``group_name`` or ``service_principal_name``; a level the object type
does not have, a principal given twice with different levels ("ambiguous"), the ``admins``
group (it always has CAN_MANAGE, inherited from the root object) or a second owner is
400 INVALID_PARAMETER_VALUE, and nothing is changed. A job always has exactly one owner
(``IS_OWNER``, a user or a service principal, never a group): its creator until an ACL names
another; a list without an owner keeps the current one, as on Databricks. The creator of an
experiment or a legacy registered model holds CAN_MANAGE until an ACL replaces it.

Grants follow Unity Catalog: ``GET`` lists ``privilege_assignments`` (one per principal, the
privileges sorted; ``?principal=`` filters), ``PATCH`` applies ``changes: [{principal, add,
remove}]`` atomically and answers the resulting list. Securables here are ``catalog`` and
``schema`` (any valid name: they are not modelled) and ``function`` (registered models: the
model must exist, else 404 "Routine or Model '<name>' does not exist."). A privilege the
securable type does not have is 400 INVALID_PARAMETER_VALUE "Privilege X is not applicable to
this entity". Deleting or renaming a model deletes or moves its grants.

Permissions and grants are stored and reported; the local workspace has one user and does not
enforce them.
"""

from __future__ import annotations

import json
import re

from stackci.workspace.api import Request, invalid, malformed, not_found, typed
from stackci.workspace.models import UC_NAME
from stackci.workspace.store import Store

_PRINCIPAL_FIELDS = ("user_name", "group_name", "service_principal_name")
_PRINCIPAL_LABEL = {"user_name": "UserName", "group_name": "GroupName", "service_principal_name": "ServicePrincipal"}
_WORKSPACE_LEVELS = {
    "CAN_READ": "Can view and comment", "CAN_RUN": "Can run", "CAN_EDIT": "Can edit",
    "CAN_MANAGE": "Can manage: change permissions, rename, move, delete",
}


class ObjectType:
    """One ``request_object_type`` of the Permissions API."""

    def __init__(self, request_type: str, object_type: str, levels: dict[str, str], root: str,
                 owner_level: str | None = None) -> None:
        self.request_type = request_type    # jobs, experiments, ...
        self.object_type = object_type      # job, mlflowExperiment, ... (in the response)
        self.levels = levels                # level -> description, weakest first
        self.root = root                    # where the admins' CAN_MANAGE is inherited from
        self.owner_level = owner_level      # IS_OWNER for jobs


OBJECT_TYPES = {t.request_type: t for t in (
    ObjectType("jobs", "job", {"CAN_VIEW": "Can view the job and its runs", "CAN_MANAGE_RUN": "Can run and cancel runs",
                               "IS_OWNER": "Owns the job", "CAN_MANAGE": "Can manage the job and its permissions"},
               "/jobs/", owner_level="IS_OWNER"),
    ObjectType("experiments", "mlflowExperiment",
               {"CAN_READ": "Can read the experiment and its runs", "CAN_EDIT": "Can log runs and edit",
                "CAN_MANAGE": "Can manage the experiment and its permissions"}, "/directories/0"),
    ObjectType("directories", "directory", _WORKSPACE_LEVELS, "/directories/0"),
    ObjectType("notebooks", "notebook", _WORKSPACE_LEVELS, "/directories/0"),
    ObjectType("files", "file", _WORKSPACE_LEVELS, "/directories/0"),
    ObjectType("registered-models", "registered-model",
               {"CAN_READ": "Can read the model", "CAN_EDIT": "Can edit the model",
                "CAN_MANAGE_STAGING_VERSIONS": "Can move versions to and from Staging",
                "CAN_MANAGE_PRODUCTION_VERSIONS": "Can move versions to and from Production",
                "CAN_MANAGE": "Can manage the model and its permissions"}, "/registered-models/root"),
)}
_TREE_TYPES = {"directories": "DIRECTORY", "notebooks": "NOTEBOOK", "files": "FILE"}


def _principal(entry: dict, where: str) -> tuple[str, str]:
    named = [(f, entry.get(f)) for f in _PRINCIPAL_FIELDS if entry.get(f) not in (None, "")]
    if len(named) != 1:
        raise invalid(f"{where} must name exactly one of user_name, group_name or service_principal_name"
                      f" (it names {len(named) or 'none'})")
    field, value = named[0]
    if not isinstance(value, str) or value != value.strip() or any(c in value for c in "\x00\r\n"):
        raise invalid(f"{where}.{field} must be a principal name (a non-empty string without surrounding spaces)")
    return field, value


class Permissions:
    """The Permissions API over jobs, experiments, workspace objects and legacy registered models."""

    def __init__(self, store: Store, user_name: str, *, legacy_model_ids=None) -> None:
        self.store = store
        self.user_name = user_name
        self.legacy_model_ids = legacy_model_ids   # id -> creator, or None when the id is unknown

    # ---- the object ----------------------------------------------------------

    def _type(self, req: Request) -> ObjectType:
        name = req.match["object_type"]
        kind = OBJECT_TYPES.get(name)
        if kind is None:
            raise invalid(f"Object type '{name}' is not supported by the local workspace; supported: "
                          f"{', '.join(sorted(OBJECT_TYPES))}")
        return kind

    def _creator(self, kind: ObjectType, object_id: str) -> str | None:
        """The object's creator (None when it has none); 404 when there is no such object."""
        what = {"jobs": "Job", "experiments": "Experiment", "registered-models": "Registered model"}.get(
            kind.request_type, kind.object_type.capitalize())
        numeric = kind.request_type != "registered-models"
        if numeric and (not object_id.isdigit() or int(object_id) > 2**63 - 1):
            raise not_found(f"{what} {object_id} does not exist.")
        if kind.request_type == "jobs":
            rows = self.store.query("SELECT doc FROM jobs WHERE job_id = ?", (int(object_id),))
            if not rows:
                raise not_found(f"Job {object_id} does not exist.")
            return json.loads(rows[0][0]).get("creator_user_name")
        if kind.request_type == "experiments":
            rows = self.store.query("SELECT doc FROM experiments WHERE experiment_id = ?", (int(object_id),))
            doc = json.loads(rows[0][0]) if rows else None
            if doc is None or doc.get("lifecycle_stage") != "active":
                raise not_found(f"Node ID {object_id} does not exist.")
            return next((t.get("value") for t in doc.get("tags", []) if t.get("key") == "mlflow.ownerEmail"),
                        None)
        if kind.request_type in _TREE_TYPES:
            rows = self.store.query("SELECT object_type FROM objects WHERE object_id = ?", (int(object_id),))
            if not rows or rows[0][0] != _TREE_TYPES[kind.request_type]:
                raise not_found(f"{what} {object_id} does not exist.")
            return None
        creator = self.legacy_model_ids(object_id) if self.legacy_model_ids is not None else None
        if creator is None:
            raise not_found(f"Registered model {object_id} does not exist.")
        return creator

    def _load(self, kind: ObjectType, object_id: str, creator: str | None) -> dict:
        rows = self.store.query("SELECT doc FROM acls WHERE object_key = ?", (f"{kind.request_type}/{object_id}",))
        if rows:
            return json.loads(rows[0][0])
        # never set: the creator holds the owner's level (jobs) or CAN_MANAGE
        doc: dict = {"direct": [], "owner": None}
        if creator:
            field = _identity_field(creator)
            if kind.owner_level:
                doc["owner"] = [field, creator]
            elif kind.request_type in ("experiments", "registered-models"):
                doc["direct"] = [[field, creator, "CAN_MANAGE"]]
        return doc

    def _save(self, kind: ObjectType, object_id: str, doc: dict) -> None:
        self.store.execute("INSERT OR REPLACE INTO acls (object_key, doc) VALUES (?, ?)",
                           (f"{kind.request_type}/{object_id}", Store.dumps(doc)))

    def _view(self, kind: ObjectType, object_id: str, doc: dict) -> dict:
        acl = []
        if doc.get("owner"):
            field, name = doc["owner"]
            acl.append({field: name, "all_permissions": [{"permission_level": kind.owner_level, "inherited": False}]})
        for field, name, level in doc.get("direct", []):
            acl.append({field: name, "all_permissions": [{"permission_level": level, "inherited": False}]})
        acl.append({"group_name": "admins", "all_permissions": [
            {"permission_level": "CAN_MANAGE", "inherited": True, "inherited_from_object": [kind.root]}]})
        return {"object_id": f"/{kind.request_type}/{object_id}", "object_type": kind.object_type,
                "access_control_list": acl}

    # ---- parsing -------------------------------------------------------------

    def _entries(self, kind: ObjectType, req: Request) -> list[tuple[str, str, str]]:
        raw = req.field("access_control_list", list, default=[])
        out: list[tuple[str, str, str]] = []
        seen: dict[tuple[str, str], str] = {}
        owners = 0
        for i, entry in enumerate(raw):
            where = f"access_control_list[{i}]"
            if not isinstance(entry, dict):
                raise malformed(f"Invalid JSON given in the body of the request - expected an object for field "
                                f"'{where}'")
            field, name = _principal(entry, where)
            level = typed(entry, "permission_level", str, required=True, where=f"{where}.")
            if level not in kind.levels:
                raise invalid(f"Permission level {level} is not supported for {kind.request_type}; use one of "
                              f"{', '.join(kind.levels)}")
            if field == "group_name" and name == "admins":
                raise invalid("The admins group always has CAN_MANAGE (inherited from the workspace); its "
                              "permissions cannot be changed")
            if level == kind.owner_level:
                if field == "group_name":
                    raise invalid(f"A group cannot own a {kind.object_type}: give {kind.owner_level} to a user or "
                                  "a service principal")
                owners += 1
                if owners > 1:
                    raise invalid(f"A {kind.object_type} has exactly one owner: {where} names a second "
                                  f"{kind.owner_level}")
            key = (field, name)
            if key in seen and seen[key] != level:
                raise invalid(f"Permissions being set for {_PRINCIPAL_LABEL[field]}({name}) are ambiguous: "
                              f"{seen[key]} and {level}")
            if key not in seen:
                seen[key] = level
                out.append((field, name, level))
        return out

    # ---- handlers ------------------------------------------------------------

    def get(self, req: Request) -> dict:
        kind = self._type(req)
        object_id = req.match["object_id"]
        creator = self._creator(kind, object_id)
        return self._view(kind, object_id, self._load(kind, object_id, creator))

    def levels(self, req: Request) -> dict:
        kind = self._type(req)
        self._creator(kind, req.match["object_id"])
        return {"permission_levels": [{"permission_level": level, "description": text}
                                      for level, text in kind.levels.items()]}

    def set(self, req: Request) -> dict:
        return self._write(req, replace=True)

    def update(self, req: Request) -> dict:
        return self._write(req, replace=False)

    def _write(self, req: Request, *, replace: bool) -> dict:
        kind = self._type(req)
        object_id = req.match["object_id"]
        entries = self._entries(kind, req)   # everything is checked before anything changes
        with self.store.transaction():
            creator = self._creator(kind, object_id)
            doc = self._load(kind, object_id, creator)
            owner = doc.get("owner")
            direct = [] if replace else [e for e in doc.get("direct", [])]
            for field, name, level in entries:
                direct = [e for e in direct if (e[0], e[1]) != (field, name)]
                if level == kind.owner_level:
                    owner = [field, name]
                else:
                    direct.append([field, name, level])
            if owner is not None:
                # the owner holds IS_OWNER only; a lower level given to the new owner is dropped
                direct = [e for e in direct if (e[0], e[1]) != tuple(owner)]
            doc = {"direct": direct, "owner": owner}
            self._save(kind, object_id, doc)
        return self._view(kind, object_id, doc)

    def forget(self, request_type: str, object_id) -> None:
        """Drop the ACL of a deleted object."""
        self.store.execute("DELETE FROM acls WHERE object_key = ?", (f"{request_type}/{object_id}",))


def _identity_field(name: str) -> str:
    return "service_principal_name" if _UUID.match(name) else "user_name"


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


# ---- Unity Catalog grants -----------------------------------------------------------------

_ALL = "ALL_PRIVILEGES"
SECURABLE_PRIVILEGES = {
    "catalog": {_ALL, "APPLY_TAG", "BROWSE", "CREATE_FUNCTION", "CREATE_MATERIALIZED_VIEW", "CREATE_MODEL",
                "CREATE_SCHEMA", "CREATE_TABLE", "CREATE_VOLUME", "EXECUTE", "MANAGE", "MODIFY", "READ_VOLUME",
                "REFRESH", "SELECT", "USE_CATALOG", "USE_SCHEMA", "WRITE_VOLUME"},
    "schema": {_ALL, "APPLY_TAG", "CREATE_FUNCTION", "CREATE_MATERIALIZED_VIEW", "CREATE_MODEL", "CREATE_TABLE",
               "CREATE_VOLUME", "EXECUTE", "MANAGE", "MODIFY", "READ_VOLUME", "REFRESH", "SELECT", "USE_SCHEMA",
               "WRITE_VOLUME"},
    "function": {_ALL, "APPLY_TAG", "EXECUTE", "MANAGE"},
}
_NAME_PARTS = {"catalog": 1, "schema": 2, "function": 3}


class Grants:
    """``GET``/``PATCH /api/2.1/unity-catalog/permissions/{securable_type}/{full_name}``."""

    def __init__(self, store: Store, model_exists) -> None:
        self.store = store
        self.model_exists = model_exists   # full_name -> bool

    def _securable(self, req: Request) -> tuple[str, str]:
        kind = req.match["securable_type"].lower()
        full_name = req.match["full_name"]
        if kind not in SECURABLE_PRIVILEGES:
            raise invalid(f"Securable type '{req.match['securable_type']}' is not supported by the local workspace; "
                          "supported: catalog, schema, function (registered models)")
        parts = full_name.split(".")
        if len(parts) != _NAME_PARTS[kind] or not all(UC_NAME.match(p) for p in parts):
            raise invalid(f"Invalid {kind} name '{full_name}': a {kind} is named "
                          + ".".join(("catalog", "schema", "name")[:_NAME_PARTS[kind]]))
        full_name = full_name.lower()
        if kind == "function" and not self.model_exists(full_name):
            raise not_found(f"Routine or Model '{full_name}' does not exist.")
        return kind, full_name

    def _load(self, kind: str, full_name: str) -> dict[str, list[str]]:
        rows = self.store.query("SELECT doc FROM grants WHERE securable = ?", (f"{kind}/{full_name}",))
        return json.loads(rows[0][0]) if rows else {}

    @staticmethod
    def _view(doc: dict[str, list[str]], principal: str | None = None) -> dict:
        return {"privilege_assignments": [{"principal": p, "privileges": sorted(privs)} for p, privs in doc.items()
                                          if privs and (principal is None or p == principal)]}

    def get(self, req: Request) -> dict:
        kind, full_name = self._securable(req)
        max_results = req.int_arg("max_results")
        if max_results is not None and (max_results < 0 or 0 < max_results < 150):
            raise invalid(f"Invalid max_results {max_results}: use 0 (the server's page size) or 150 and more")
        return self._view(self._load(kind, full_name), req.arg("principal"))

    def update(self, req: Request) -> dict:
        kind, full_name = self._securable(req)
        changes = req.field("changes", list, default=[])
        parsed: list[tuple[str, set[str], set[str]]] = []
        allowed = SECURABLE_PRIVILEGES[kind]
        for i, change in enumerate(changes):
            where = f"changes[{i}]"
            if not isinstance(change, dict):
                raise malformed(f"Invalid JSON given in the body of the request - expected an object for field "
                                f"'{where}'")
            principal = typed(change, "principal", str, required=True, where=f"{where}.")
            if not principal.strip():
                raise invalid(f"{where}.principal must not be empty")
            sets = []
            for name in ("add", "remove"):
                values = typed(change, name, list, default=[], where=f"{where}.")
                if not all(isinstance(v, str) for v in values):
                    raise malformed(f"Invalid JSON given in the body of the request - expected an array of strings "
                                    f"for field '{where}.{name}'")
                for value in values:
                    if value.upper().replace(" ", "_") not in allowed:
                        raise invalid(f"Privilege {value} is not applicable to this entity [{kind}:{full_name}]; "
                                      f"applicable: {', '.join(sorted(allowed))}")
                sets.append({v.upper().replace(" ", "_") for v in values})
            parsed.append((principal, sets[0], sets[1]))
        with self.store.transaction():
            doc = self._load(kind, full_name)
            for principal, add, remove in parsed:
                current = set(doc.get(principal, []))
                current = (current - remove) | add
                if current:
                    doc[principal] = sorted(current)
                else:
                    doc.pop(principal, None)
            self.store.execute("INSERT OR REPLACE INTO grants (securable, doc) VALUES (?, ?)",
                               (f"{kind}/{full_name}", Store.dumps(doc)))
        return self._view(doc)

    # ---- life cycle of the securable ----------------------------------------------

    def forget(self, kind: str, full_name: str) -> None:
        self.store.execute("DELETE FROM grants WHERE securable = ?", (f"{kind}/{full_name.lower()}",))

    def move(self, kind: str, old: str, new: str) -> None:
        self.store.execute("UPDATE grants SET securable = ? WHERE securable = ?",
                           (f"{kind}/{new.lower()}", f"{kind}/{old.lower()}"))
