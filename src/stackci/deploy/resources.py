"""Jobs, MLflow experiments, Unity Catalog registered models and workspace-registry models
(``models``): what the bundle wants, in which order, and how each is created, updated, deleted
and found again.

Requests go through ``client.api_client.do`` with the settings exactly as configured
(the SDK's typed ``from_dict`` would silently drop fields it does not know). Every
object stackci creates carries a deployment key (a hash of bundle, target, root path,
kind and key): jobs, experiments and workspace-registry models as a tag, so that an object created by a deploy
that died before recording it is found and adopted instead of created twice.
"""

from __future__ import annotations

import copy
import hashlib
import urllib.parse
from dataclasses import dataclass, field

from ..bundle import refs
from ..errors import ConfigError, RunFailed
from .state import canonical_hash

#: kinds the engine deploys, in default apply order
SUPPORTED = ("experiments", "models", "registered_models", "jobs")
KIND_RANK = {kind: i for i, kind in enumerate(SUPPORTED)}
#: deletion order: dependents (jobs) first
DELETE_ORDER = ("jobs", "registered_models", "models", "experiments")
KEY_TAG = "stackci-deployment-key"
#: bumped when the request bodies built here change shape, so every resource is rewritten once
BODY_VERSION = 1


def bundle_tags(bundle) -> dict[str, str]:
    """The tags naming the bundle and target that deployed a job (tag values hold 255 characters)."""
    return {"stackci-bundle": bundle.name[:255], "stackci-target": bundle.target[:255]}


def singular(kind: str) -> str:
    return {"jobs": "job", "experiments": "experiment", "registered_models": "registered model",
            "models": "model"}.get(kind, kind)


def deployment_key(bundle_name: str, target: str, root_path: str, kind: str, key: str) -> str:
    text = "\n".join((bundle_name, target, root_path, kind, key))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class Unresolved(Exception):
    """A ``${resources...}`` reference whose value only exists after an earlier step of the apply."""

    def __init__(self, ref: str) -> None:
        super().__init__(ref)
        self.ref = ref


@dataclass
class Desired:
    kind: str
    key: str
    settings: dict                 # as resolved by the loader; may still hold ${resources...}
    dkey: str
    location: object = None
    deps: set = field(default_factory=set)   # {(kind, key)} referenced through ${resources...}

    @property
    def address(self) -> str:
        return f"{self.kind}.{self.key}"


def _references(value, out: list) -> None:
    if isinstance(value, dict):
        for v in value.values():
            _references(v, out)
    elif isinstance(value, list):
        for v in value:
            _references(v, out)
    elif isinstance(value, str) and "${" in value:
        out.extend(r for r in refs.find(value) if r.path[0] == "resources")


def desired_resources(bundle) -> dict[tuple[str, str], Desired]:
    """Every resource of the bundle, with its ``${resources...}`` dependencies. Unsupported kinds
    are a ConfigError naming them (better than a deploy that silently leaves them out)."""
    out: dict[tuple[str, str], Desired] = {}
    for kind in sorted(bundle.resources):
        items = bundle.resources[kind]
        if not items:
            continue
        if kind not in SUPPORTED:
            first = next(iter(items.values()))
            loc = first.location
            raise ConfigError(f"resources.{kind} ({', '.join(sorted(items))}): stackci's deploy engine does not "
                              f"deploy {kind}; it deploys {', '.join(SUPPORTED)}",
                              hint="remove them from this target, or deploy this bundle with the Databricks CLI",
                              file=getattr(loc, "file", None), line=getattr(loc, "line", None))
        for key, res in sorted(items.items()):
            desired = Desired(kind, key, copy.deepcopy(res.settings),
                              deployment_key(bundle.name, bundle.target, bundle.root_path, kind, key), res.location)
            found: list = []
            _references(desired.settings, found)
            for ref in found:
                if len(ref.path) >= 3:
                    desired.deps.add((ref.path[1], ref.path[2]))
            out[(kind, key)] = desired
    for desired in out.values():
        for dep in desired.deps:
            if dep not in out:   # the loader checks this too; keep the engine safe on its own
                loc = desired.location
                raise ConfigError(f"{desired.address} refers to resources.{dep[0]}.{dep[1]}, which the bundle does "
                                  "not define", hint="fix the reference or define the resource",
                                  file=getattr(loc, "file", None), line=getattr(loc, "line", None))
    return out


def apply_order(desired: dict[tuple[str, str], Desired]) -> list[tuple[str, str]]:
    """Referenced resources before the resources that refer to them; else experiments, models, jobs
    and keys in alphabetical order. A cycle is a ConfigError naming it."""
    def rank(node):
        return (KIND_RANK.get(node[0], 99), node[1])

    order: list = []
    state: dict = {}
    for start in sorted(desired, key=rank):
        if state.get(start):
            continue
        stack = [(start, iter(sorted(desired[start].deps, key=rank)))]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                order.append(node)
                stack.pop()
            elif state.get(nxt) == 1:
                cycle = [n for n, _ in stack][[n for n, _ in stack].index(nxt):] + [nxt]
                loc = desired[node].location
                raise ConfigError("the resources refer to each other in a cycle: "
                                  + " → ".join(f"{k}.{key}" for k, key in cycle),
                                  hint="a resource can only refer to the id of a resource created before it; "
                                       "remove one of the ${resources...} references",
                                  file=getattr(loc, "file", None), line=getattr(loc, "line", None))
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(sorted(desired[nxt].deps, key=rank))))
    return order


def resolve(value, lookup):
    """``value`` with every ``${resources...}`` replaced through ``lookup(path) -> value``;
    a value that is exactly one reference keeps the referenced type (a job id stays an int)."""
    if isinstance(value, dict):
        return {k: resolve(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, lookup) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    pure = refs.pure(value)
    if pure is not None and pure.path[0] == "resources":
        return lookup(pure)
    out, last = [], 0
    for ref in refs.find(value):
        if ref.path[0] != "resources":
            continue
        out.append(value[last:ref.start])
        found = lookup(ref)
        out.append(found if isinstance(found, str) else str(found).lower() if isinstance(found, bool) else str(found))
        last = ref.end
    out.append(value[last:])
    return "".join(out)


def _get_path(value, path: tuple):
    for part in path:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            value = value[part]
        else:
            return None
    return value


class Resolver:
    """Looks up ``${resources.<kind>.<key>.<field>}``: ``id`` from the ids known so far, anything
    else from the resource's own (resolved) settings."""

    def __init__(self, desired: dict, ids: dict, host: str) -> None:
        self.desired = desired
        self.ids = ids               # {(kind, key): id} of resources that exist now
        self.host = host.rstrip("/")

    def __call__(self, ref):
        kind, key, rest = ref.path[1], ref.path[2], tuple(ref.path[3:])
        if rest in (("id",), ()):
            if (kind, key) not in self.ids:
                raise Unresolved(ref.text)
            return self.ids[(kind, key)]
        if rest == ("url",) and kind == "jobs":
            if (kind, key) not in self.ids:
                raise Unresolved(ref.text)
            return f"{self.host}/jobs/{self.ids[(kind, key)]}"
        settings = resolve(self.desired[(kind, key)].settings, self)
        value = _get_path(settings, rest)
        if value is None:
            raise RunFailed(f"{ref.text} has no value: {kind}.{key} sets no {'.'.join(map(str, rest))}",
                            hint="refer to a field the resource sets, or to its id")
        return value


# ----------------------------------------------------------------------------- kinds
class Gone(Exception):
    """The object the state points at no longer exists."""


def _quote(text: str) -> str:
    return urllib.parse.quote(str(text), safe="")


def _api_error(address: str, verb: str, exc) -> RunFailed:
    from ..dbx import first_line

    code = getattr(exc, "error_code", None) or type(exc).__name__
    message = first_line(exc)         # without the SDK's configuration dump on 401/403
    return RunFailed(f"{address}: {verb} failed: {code}: {message}",
                     hint="fix the resource's settings in the bundle and deploy again; everything applied "
                          "before this step is recorded in the state")


class Kind:
    kind = ""

    def __init__(self, client, record: dict, bundle) -> None:
        self.client = client
        self.api = client.api_client
        self.record = record
        self.bundle = bundle

    def name_of(self, body: dict) -> str | None:
        value = body.get("name")
        return value if isinstance(value, str) else None

    # subclasses: body, exists, create, update, delete, find_owned

    def acl(self, desired: Desired, settings: dict) -> list | None:
        """The access control list (or grants) the bundle wants for this resource; None: not managed."""
        from . import acl
        return acl.permissions(self.kind, settings, self.bundle)

    def apply_acl(self, desired: Desired, object_id, wanted: list) -> None:
        """Set the ACL on the object; Gone when the object no longer exists."""
        from databricks.sdk import errors

        from . import acl
        try:
            acl.put_permissions(self.api, desired.address, acl.OBJECT_TYPE[self.kind], object_id, wanted)
        except (errors.NotFound, errors.ResourceDoesNotExist):
            raise Gone() from None


class Jobs(Kind):
    kind = "jobs"
    BASE = "/api/2.2/jobs"

    def body(self, desired: Desired, settings: dict) -> dict:
        body = {k: v for k, v in settings.items() if k not in ("permissions",)}
        run_as = self.bundle.run_as
        if not body.get("run_as") and isinstance(run_as, dict):   # the bundle's run_as applies to every job
            principal = {k: v for k, v in run_as.items() if k in ("user_name", "service_principal_name") and v}
            if principal:
                body["run_as"] = principal
        tags = dict(body.get("tags") or {})
        tags.update({KEY_TAG: desired.dkey, **bundle_tags(self.bundle)})
        body["tags"] = tags
        body["deployment"] = {"kind": "BUNDLE",
                              "metadata_file_path": f"{self.bundle.state_path}/deployment.json"}
        body["edit_mode"] = "UI_LOCKED"
        return body

    def _stamped(self, body: dict) -> dict:
        """The body sent: plus tags saying which commit last wrote the job (not part of the hash,
        so a new commit alone does not rewrite every job)."""
        body = copy.deepcopy(body)
        tags = body["tags"]
        for name, value in (("stackci-commit", self.record.get("commit")), ("stackci-branch", self.record.get("branch")),
                            ("stackci-version-tag", self.record.get("tag"))):
            if value and len(tags) < 25:
                tags[name] = str(value)[:255]
        return body

    def exists(self, entry: dict) -> bool:
        from databricks.sdk import errors
        try:
            self.api.do("GET", f"{self.BASE}/get", query={"job_id": entry["id"]})
            return True
        except (errors.NotFound, errors.ResourceDoesNotExist, errors.InvalidParameterValue):
            return False

    def create(self, desired: Desired, body: dict, adopt_ok: bool) -> int:
        from databricks.sdk.errors import DatabricksError
        try:
            job_id = int(self.api.do("POST", f"{self.BASE}/create", body=self._stamped(body))["job_id"])
        except DatabricksError as exc:
            raise _api_error(desired.address, "create", exc) from None
        # a POST retried after a lost answer may have created the job twice: keep only ours
        for other in self.find_owned(desired.dkey, [self.name_of(body)]):
            if other != job_id:
                self.delete(other)
        return job_id

    def update(self, desired: Desired, entry: dict, body: dict) -> int:
        from databricks.sdk import errors
        try:
            self.api.do("POST", f"{self.BASE}/reset", body={"job_id": entry["id"], "new_settings": self._stamped(body)})
        except (errors.NotFound, errors.ResourceDoesNotExist):
            raise Gone() from None
        except errors.InvalidParameterValue as exc:
            if not self.exists(entry):
                raise Gone() from None
            raise _api_error(desired.address, "update", exc) from None
        except errors.DatabricksError as exc:
            raise _api_error(desired.address, "update", exc) from None
        return entry["id"]

    def delete(self, object_id) -> bool:
        from databricks.sdk import errors
        try:
            self.api.do("POST", f"{self.BASE}/delete", body={"job_id": object_id})
            return True
        except (errors.NotFound, errors.ResourceDoesNotExist, errors.InvalidParameterValue):
            return False

    def find_owned(self, dkey: str, names: list) -> list[int]:
        """Jobs carrying this deployment key among the jobs with these names (oldest first)."""
        found: set[int] = set()
        for name in {n for n in names if n}:
            token = None
            while True:
                query = {"name": name, "limit": 100}
                if token:
                    query["page_token"] = token
                page = self.api.do("GET", f"{self.BASE}/list", query=query)
                for job in page.get("jobs") or []:
                    tags = (job.get("settings") or {}).get("tags") or {}
                    if tags.get(KEY_TAG) == dkey:
                        found.add(int(job["job_id"]))
                token = page.get("next_page_token")
                if not page.get("has_more") or not token:
                    break
        return sorted(found)

    def active_runs(self, object_id) -> int:
        page = self.api.do("GET", f"{self.BASE}/runs/list", query={"job_id": object_id, "active_only": "true",
                                                                   "limit": 1})
        return len(page.get("runs") or [])


class Experiments(Kind):
    kind = "experiments"
    BASE = "/api/2.0/mlflow/experiments"

    def body(self, desired: Desired, settings: dict) -> dict:
        body = {"name": settings.get("name")}
        if settings.get("artifact_location"):
            body["artifact_location"] = settings["artifact_location"]
        tags = [t for t in settings.get("tags") or [] if isinstance(t, dict) and t.get("key") != KEY_TAG]
        body["tags"] = sorted(tags, key=lambda t: str(t.get("key"))) + [{"key": KEY_TAG, "value": desired.dkey}]
        return body

    def _get(self, experiment_id) -> dict | None:
        from databricks.sdk import errors
        try:
            return self.api.do("GET", f"{self.BASE}/get", query={"experiment_id": str(experiment_id)})["experiment"]
        except (errors.NotFound, errors.ResourceDoesNotExist, errors.InvalidParameterValue):
            return None

    def exists(self, entry: dict) -> bool:
        doc = self._get(entry["id"])
        return doc is not None and doc.get("lifecycle_stage", "active") == "active"

    def _by_name(self, name: str) -> dict | None:
        from databricks.sdk import errors
        try:
            return self.api.do("GET", f"{self.BASE}/get-by-name", query={"experiment_name": name})["experiment"]
        except (errors.NotFound, errors.ResourceDoesNotExist):
            return None

    def _owned(self, doc: dict, dkey: str) -> bool:
        return any(t.get("key") == KEY_TAG and t.get("value") == dkey for t in doc.get("tags") or [])

    def create(self, desired: Desired, body: dict, adopt_ok: bool) -> str:
        from databricks.sdk import errors
        name = body["name"]
        try:
            try:
                return str(self.api.do("POST", f"{self.BASE}/create", body=body)["experiment_id"])
            except (errors.NotFound, errors.ResourceDoesNotExist):
                if isinstance(name, str) and name.startswith("/") and name.count("/") > 1:
                    self.client.workspace.mkdirs(name.rsplit("/", 1)[0])
                return str(self.api.do("POST", f"{self.BASE}/create", body=body)["experiment_id"])
        except (errors.ResourceAlreadyExists, errors.AlreadyExists, errors.ResourceConflict):
            doc = self._by_name(name)
            if doc is None or not self._owned(doc, desired.dkey):
                raise RunFailed(f"{desired.address}: an experiment named {name!r} already exists and this deployment "
                                "did not create it", hint="rename the experiment in the bundle, or delete or rename "
                                                          "the existing one") from None
            if doc.get("lifecycle_stage") == "deleted":
                self.api.do("POST", f"{self.BASE}/restore", body={"experiment_id": doc["experiment_id"]})
            self._set_tags(doc["experiment_id"], body)
            return str(doc["experiment_id"])
        except errors.DatabricksError as exc:
            raise _api_error(desired.address, "create", exc) from None

    def _set_tags(self, experiment_id, body: dict) -> None:
        for tag in body.get("tags") or []:
            self.api.do("POST", f"{self.BASE}/set-experiment-tag",
                        body={"experiment_id": str(experiment_id), "key": tag["key"], "value": str(tag.get("value", ""))})

    def update(self, desired: Desired, entry: dict, body: dict) -> str:
        from databricks.sdk import errors
        doc = self._get(entry["id"])
        if doc is None or doc.get("lifecycle_stage") == "deleted":
            raise Gone()
        try:
            if doc.get("name") != body["name"]:
                self.api.do("POST", f"{self.BASE}/update",
                            body={"experiment_id": str(entry["id"]), "new_name": body["name"]})
            self._set_tags(entry["id"], body)
        except errors.DatabricksError as exc:
            raise _api_error(desired.address, "update", exc) from None
        return str(entry["id"])

    def delete(self, object_id) -> bool:
        from databricks.sdk import errors
        try:
            self.api.do("POST", f"{self.BASE}/delete", body={"experiment_id": str(object_id)})
            return True
        except (errors.NotFound, errors.ResourceDoesNotExist, errors.InvalidParameterValue):
            return False

    def find_owned(self, dkey: str, names: list) -> list[str]:
        out = []
        for name in {n for n in names if n}:
            doc = self._by_name(name)
            if doc is not None and self._owned(doc, dkey):
                out.append(str(doc["experiment_id"]))
        return out


class RegisteredModels(Kind):
    kind = "registered_models"
    BASE = "/api/2.1/unity-catalog/models"
    FIELDS = ("catalog_name", "schema_name", "name", "comment", "storage_location")

    def body(self, desired: Desired, settings: dict) -> dict:
        return {k: settings[k] for k in self.FIELDS if settings.get(k) is not None}

    def name_of(self, body: dict) -> str | None:
        parts = [body.get("catalog_name"), body.get("schema_name"), body.get("name")]
        return ".".join(parts) if all(isinstance(p, str) and p for p in parts) else None

    def _get(self, full_name: str) -> dict | None:
        from databricks.sdk import errors
        try:
            return self.api.do("GET", f"{self.BASE}/{_quote(full_name)}")
        except (errors.NotFound, errors.ResourceDoesNotExist):
            return None

    def exists(self, entry: dict) -> bool:
        return self._get(entry["id"]) is not None

    def create(self, desired: Desired, body: dict, adopt_ok: bool) -> str:
        from databricks.sdk import errors
        full_name = self.name_of(body)
        try:
            doc = self.api.do("POST", self.BASE, body=body)
            return doc.get("full_name") or full_name
        except (errors.ResourceAlreadyExists, errors.AlreadyExists, errors.ResourceConflict):
            if not adopt_ok:
                raise RunFailed(f"{desired.address}: registered model {full_name} already exists and this deployment "
                                "did not create it", hint="rename the model in the bundle, or delete the existing "
                                                          "one") from None
            if body.get("comment") is not None:
                self.api.do("PATCH", f"{self.BASE}/{_quote(full_name)}", body={"comment": body["comment"]})
            return full_name
        except errors.DatabricksError as exc:
            raise _api_error(desired.address, "create", exc) from None

    def update(self, desired: Desired, entry: dict, body: dict) -> str:
        from databricks.sdk import errors
        current = self._get(entry["id"])
        if current is None:
            raise Gone()
        new_full = self.name_of(body)
        if (current.get("catalog_name"), current.get("schema_name")) != (body.get("catalog_name"),
                                                                          body.get("schema_name")):
            # the plan makes this a replace (see moves); never delete a model from inside an update
            raise RunFailed(f"{desired.address}: {entry['id']} cannot move to {new_full} by an update",
                            hint="plan again: a catalog or schema change is a replace (deploy --allow-replace)")
        try:
            patch = {"comment": body.get("comment", "")}
            if current.get("name") != body.get("name"):
                patch["new_name"] = body["name"]
            self.api.do("PATCH", f"{self.BASE}/{_quote(entry['id'])}", body=patch)
        except errors.DatabricksError as exc:
            raise _api_error(desired.address, "update", exc) from None
        return new_full

    @staticmethod
    def _parts(full_name) -> tuple:
        parts = str(full_name or "").split(".")
        return tuple(parts[:2]) if len(parts) == 3 else (None, None)

    def moves(self, entry: dict, body: dict) -> bool:
        """Whether the model the state records is in another catalog or schema than ``body`` wants:
        Unity Catalog cannot move a model, so that is a delete and a create (a replace)."""
        return self._parts(entry.get("id")) != (body.get("catalog_name"), body.get("schema_name"))

    def versions(self, full_name: str) -> int | None:
        """How many versions the model has (at most one page is read; None if the workspace does not say)."""
        from databricks.sdk import errors
        try:
            page = self.api.do("GET", f"{self.BASE}/{_quote(full_name)}/versions", query={"max_results": 100})
        except errors.DatabricksError:
            return None
        return len(page.get("model_versions") or []) if isinstance(page, dict) else None

    def replace_reason(self, entry: dict, body: dict) -> str:
        old, new = str(entry.get("id")), self.name_of(body) or "?"
        (old_catalog, old_schema), what = self._parts(old), []
        if old_catalog != body.get("catalog_name"):
            what.append(f"catalog_name {old_catalog!r} → {body.get('catalog_name')!r}")
        if old_schema != body.get("schema_name"):
            what.append(f"schema_name {old_schema!r} → {body.get('schema_name')!r}")
        count = self.versions(old)
        versions = "its versions" if count is None else f"its {count} version{'' if count == 1 else 's'}"
        return (f"{' and '.join(what)}: Unity Catalog cannot move a model, so {old} is DELETED with {versions}, "
                f"aliases and grants, and an empty {new} is created (deploy needs --allow-replace)")

    def delete(self, object_id) -> bool:
        from databricks.sdk import errors
        try:
            self.api.do("DELETE", f"{self.BASE}/{_quote(object_id)}")
            return True
        except (errors.NotFound, errors.ResourceDoesNotExist):
            return False

    def find_owned(self, dkey: str, names: list) -> list[str]:
        # Unity Catalog models carry no tags here: only the caller's pending intent proves ownership
        return [n for n in {n for n in names if n} if self._get(n) is not None]

    def acl(self, desired: Desired, settings: dict) -> list | None:
        from . import acl
        return acl.grants(settings)

    def apply_acl(self, desired: Desired, object_id, wanted: list) -> None:
        from databricks.sdk import errors

        from . import acl
        try:
            acl.patch_grants(self.api, desired.address, str(object_id), wanted)
        except (errors.NotFound, errors.ResourceDoesNotExist):
            raise Gone() from None


class WorkspaceModels(Kind):
    """``models``: registered models of the workspace model registry (MLOps Stacks without Unity
    Catalog). The state's id is the model's name; its permissions are addressed by the registry id."""

    kind = "models"
    BASE = "/api/2.0/mlflow/registered-models"

    def body(self, desired: Desired, settings: dict) -> dict:
        body = {"name": settings.get("name")}
        if settings.get("description") is not None:
            body["description"] = settings["description"]
        tags = [t for t in settings.get("tags") or [] if isinstance(t, dict) and t.get("key") != KEY_TAG]
        body["tags"] = sorted(tags, key=lambda t: str(t.get("key"))) + [{"key": KEY_TAG, "value": desired.dkey}]
        return body

    def _get(self, name: str) -> dict | None:
        from databricks.sdk import errors
        try:
            return self.api.do("GET", "/api/2.0/mlflow/databricks/registered-models/get",
                               query={"name": name})["registered_model_databricks"]
        except (errors.NotFound, errors.ResourceDoesNotExist):
            return None

    def exists(self, entry: dict) -> bool:
        return self._get(entry["id"]) is not None

    def _owned(self, doc: dict, dkey: str) -> bool:
        return any(t.get("key") == KEY_TAG and t.get("value") == dkey for t in doc.get("tags") or [])

    def _set_tags(self, name: str, body: dict) -> None:
        for tag in body.get("tags") or []:
            self.api.do("POST", f"{self.BASE}/set-tag",
                        body={"name": name, "key": tag["key"], "value": str(tag.get("value", ""))})

    def create(self, desired: Desired, body: dict, adopt_ok: bool) -> str:
        from databricks.sdk import errors
        name = body["name"]
        try:
            self.api.do("POST", f"{self.BASE}/create", body=body)
            return name
        except (errors.ResourceAlreadyExists, errors.AlreadyExists, errors.ResourceConflict):
            doc = self._get(name)
            if doc is None or not self._owned(doc, desired.dkey):
                raise RunFailed(f"{desired.address}: a registered model named {name!r} already exists in the "
                                "workspace registry and this deployment did not create it",
                                hint="rename the model in the bundle, or delete or rename the existing one") from None
            self._update_doc(desired, doc, body)
            return name
        except errors.DatabricksError as exc:
            raise _api_error(desired.address, "create", exc) from None

    def _update_doc(self, desired: Desired, doc: dict, body: dict) -> None:
        if body.get("description") is not None and doc.get("description") != body["description"]:
            self.api.do("PATCH", f"{self.BASE}/update", body={"name": doc["name"],
                                                              "description": body["description"]})
        self._set_tags(doc["name"], body)

    def update(self, desired: Desired, entry: dict, body: dict) -> str:
        from databricks.sdk import errors
        doc = self._get(entry["id"])
        if doc is None:
            raise Gone()
        try:
            if doc["name"] != body["name"]:
                self.api.do("POST", f"{self.BASE}/rename", body={"name": doc["name"], "new_name": body["name"]})
                doc["name"] = body["name"]
            self._update_doc(desired, doc, body)
        except errors.DatabricksError as exc:
            raise _api_error(desired.address, "update", exc) from None
        return body["name"]

    def delete(self, object_id) -> bool:
        from databricks.sdk import errors
        try:
            self.api.do("DELETE", f"{self.BASE}/delete", query={"name": str(object_id)})
            return True
        except (errors.NotFound, errors.ResourceDoesNotExist):
            return False

    def find_owned(self, dkey: str, names: list) -> list[str]:
        out = []
        for name in {n for n in names if n}:
            doc = self._get(name)
            if doc is not None and self._owned(doc, dkey):
                out.append(doc["name"])
        return out

    def apply_acl(self, desired: Desired, object_id, wanted: list) -> None:
        from databricks.sdk import errors

        from . import acl
        doc = self._get(str(object_id))
        if doc is None:
            raise Gone()
        try:
            acl.put_permissions(self.api, desired.address, "registered-models", doc["id"], wanted)
        except (errors.NotFound, errors.ResourceDoesNotExist):
            raise Gone() from None


KINDS = {"jobs": Jobs, "experiments": Experiments, "registered_models": RegisteredModels, "models": WorkspaceModels}


def handlers(client, record: dict, bundle) -> dict[str, Kind]:
    return {kind: cls(client, record, bundle) for kind, cls in KINDS.items()}


def body_hash(body: dict) -> str:
    return canonical_hash({"v": BODY_VERSION, "body": body})
