"""What a bundle configuration may contain, and the check that applies it.

The shape of job, experiment and registered-model settings comes from the
databricks-sdk dataclasses (the same API the deploy engine calls), so a new SDK
field is known without a change here. Bundle-only keys (``permissions``,
``grants``, targets, variables, presets, sync, ...) are declared below.

:func:`check` walks a resolved node tree against a schema: unknown keys become
warnings (with ``file:line``), wrong types become a :class:`ConfigError`, and
scalars are normalised the way the Databricks CLI does (``1000`` where a string
is expected becomes ``"1000"``; ``"4"`` where an integer is expected becomes 4).

YAML anchors are read as the Databricks CLI reads them: an unknown key whose value is an
anchor (``new_cluster: &new_cluster {...}`` at the top of a resource file, kept only to be
merged elsewhere with ``<<: *new_cluster``), or a list or mapping of anchors, is dropped
without a warning; an anchored value of the wrong shape for a known key (MLOps Stacks writes
``permissions: &permissions {permissions: [...]}`` at the top level, where a list belongs) is
a warning and dropped, never an error. Every other unknown key is a warning and dropped too
(the CLI drops what its schema does not know); other wrong types stay errors.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import typing
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ConfigError
from .nodes import Node, path_text
from .refs import has_reference


class Schema:
    kind = "any"


@dataclass(eq=False)
class Scalar(Schema):
    kind: str                 # "string" | "integer" | "number" | "boolean"
    choices: tuple[str, ...] = ()


@dataclass(eq=False)
class Struct(Schema):
    fields: dict[str, Any]    # name -> Schema, or a zero-argument callable returning one (lazy)
    name: str = "mapping"
    kind = "struct"

    def field(self, key: str) -> Schema | None:
        value = self.fields.get(key)
        if callable(value) and not isinstance(value, Schema):
            value = value()
            self.fields[key] = value
        return value


@dataclass(eq=False)
class MapOf(Schema):
    value: Any
    kind = "map"

    def item(self) -> Schema:
        if callable(self.value) and not isinstance(self.value, Schema):
            self.value = self.value()
        return self.value


@dataclass(eq=False)
class ListOf(Schema):
    item_schema: Any
    kind = "list"

    def item(self) -> Schema:
        if callable(self.item_schema) and not isinstance(self.item_schema, Schema):
            self.item_schema = self.item_schema()
        return self.item_schema


ANY = Schema()
STR, INT, NUM, BOOL = Scalar("string"), Scalar("integer"), Scalar("number"), Scalar("boolean")


# --------------------------------------------------------------------------- from the SDK
@functools.lru_cache(maxsize=None)
def from_dataclass(cls: type, extra: tuple = ()) -> Struct:
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        fields[f.name] = functools.partial(_from_type, hints[f.name])
    for name, schema in extra:
        fields[name] = schema
    return Struct(fields, name=cls.__name__)


def _from_type(tp: Any) -> Schema:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union:
        rest = [a for a in args if a is not type(None)]
        return _from_type(rest[0]) if len(rest) == 1 else ANY
    if origin in (list, typing.List):
        return ListOf(functools.partial(_from_type, args[0]) if args else ANY)
    if origin in (dict, typing.Dict):
        return MapOf(functools.partial(_from_type, args[1]) if len(args) == 2 else ANY)
    if tp is str:
        return STR
    if tp is bool:
        return BOOL
    if tp is int:
        return INT
    if tp is float:
        return NUM
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return Scalar("string", tuple(str(m.value) for m in tp))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_dataclass(tp)
    return ANY


# --------------------------------------------------------------------------- bundle-only shapes
PERMISSION = Struct({"level": STR, "user_name": STR, "group_name": STR, "service_principal_name": STR},
                    name="permission")
PERMISSIONS = ListOf(PERMISSION)
GRANT = Struct({"principal": STR, "privileges": ListOf(STR)}, name="grant")
RUN_AS = Struct({"user_name": STR, "service_principal_name": STR}, name="run_as")
LOOKUP_KINDS = ("alert", "cluster_policy", "cluster", "dashboard", "instance_pool", "job", "metastore",
                "notification_destination", "pipeline", "query", "service_principal", "warehouse")
VARIABLE = Struct({"description": STR, "default": ANY, "type": Scalar("string", ("complex",)),
                   "lookup": Struct({k: STR for k in LOOKUP_KINDS}, name="lookup"), "value": ANY},
                  name="variable")
GIT = Struct({"branch": STR, "commit": STR, "origin_url": STR, "actual_branch": STR,
              "inferred": BOOL, "bundle_root_path": STR}, name="git")
BUNDLE = Struct({
    "name": STR, "uuid": STR, "cluster_id": STR, "compute_id": STR, "databricks_cli_version": STR,
    "git": GIT, "target": STR, "environment": STR, "mode": STR,
    "deployment": Struct({"fail_on_active_runs": BOOL,
                          "lock": Struct({"enabled": BOOL, "force": BOOL}, name="lock")}, name="deployment"),
}, name="bundle")
WORKSPACE = Struct({k: STR for k in (
    "host", "profile", "auth_type", "root_path", "file_path", "state_path", "artifact_path", "resource_path",
    "client_id", "azure_client_id", "azure_tenant_id", "azure_environment", "azure_login_app_id",
    "azure_workspace_resource_id", "azure_use_msi", "google_service_account", "account_id", "metadata_service_url",
    "experimental_is_unified_host", "workspace_id")} | {"azure_use_msi": BOOL,
                                                        "experimental_is_unified_host": BOOL,
                                                        "current_user": ANY}, name="workspace")
SYNC = Struct({"include": ListOf(STR), "exclude": ListOf(STR), "paths": ListOf(STR)}, name="sync")
PRESETS = Struct({"name_prefix": STR, "tags": MapOf(STR), "trigger_pause_status": Scalar("string", ("PAUSED", "UNPAUSED")),
                  "jobs_max_concurrent_runs": INT, "pipelines_development": BOOL,
                  "source_linked_deployment": BOOL, "artifacts_dynamic_version": BOOL}, name="presets")
ARTIFACT = Struct({"type": STR, "path": STR, "build": STR, "executable": STR, "dynamic_version": BOOL,
                   "files": ListOf(Struct({"source": STR}, name="artifact file"))}, name="artifact")


def _job() -> Schema:
    from databricks.sdk.service import jobs
    return from_dataclass(jobs.JobSettings, (("permissions", PERMISSIONS),))


def _experiment() -> Schema:
    from databricks.sdk.service import ml
    return from_dataclass(ml.Experiment, (("permissions", PERMISSIONS),))


def _model() -> Schema:
    from databricks.sdk.service import ml
    return from_dataclass(ml.Model, (("permissions", PERMISSIONS),))


def _registered_model() -> Schema:
    from databricks.sdk.service import catalog
    return from_dataclass(catalog.RegisteredModelInfo, (("grants", ListOf(GRANT)),))


#: resource kinds: the SDK-backed ones are checked field by field, the others only for being mappings
RESOURCE_KINDS: dict[str, Callable[[], Schema]] = {
    "jobs": _job,
    "experiments": _experiment,
    "registered_models": _registered_model,
    "models": _model,
}
OTHER_RESOURCE_KINDS = ("pipelines", "model_serving_endpoints", "quality_monitors", "schemas",
                        "volumes", "clusters", "dashboards", "apps", "secret_scopes", "sql_warehouses",
                        "database_instances", "database_catalogs", "synced_database_tables", "alerts")

RESOURCES = Struct({**{k: MapOf(v) for k, v in RESOURCE_KINDS.items()},
                    **{k: MapOf(MapOf(ANY)) for k in OTHER_RESOURCE_KINDS}}, name="resources")

_COMMON = {
    "bundle": BUNDLE, "workspace": WORKSPACE, "artifacts": MapOf(ARTIFACT), "resources": RESOURCES,
    "sync": SYNC, "permissions": PERMISSIONS, "presets": PRESETS, "run_as": RUN_AS,
}
TARGET = Struct({**_COMMON, "default": BOOL, "mode": Scalar("string", ("development", "production")),
                 "variables": MapOf(ANY), "compute_id": STR, "cluster_id": STR, "git": GIT},
                name="target")
ROOT = Struct({**_COMMON, "include": ListOf(STR), "variables": MapOf(VARIABLE), "targets": MapOf(TARGET),
               "environments": MapOf(TARGET), "experimental": ANY, "scripts": ANY, "python": ANY},
              name="configuration")


# --------------------------------------------------------------------------- the check
@dataclass(eq=False)
class Warning_:
    message: str
    file: str | None
    line: int | None


def _type_name(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a string"


def _format_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def anchor_container(node: Node) -> bool:
    """An anchored value, or a non-empty list or mapping made only of such (the CLI's test)."""
    if node.anchored:
        return True
    items = node.value.values() if isinstance(node.value, dict) else node.value if isinstance(node.value, list) \
        else None
    return bool(items) and all(anchor_container(v) for v in items)


def _shape_mismatch(node: Node, schema: Schema) -> str | None:
    """What ``schema`` expects when ``node`` has the wrong shape for it (else None)."""
    value = node.value
    if schema is ANY or value is None or (isinstance(value, str) and has_reference(value)):
        return None
    if isinstance(schema, (Struct, MapOf)) and not isinstance(value, dict):
        return "a mapping"
    if isinstance(schema, ListOf) and not isinstance(value, list):
        return "a list"
    if isinstance(schema, Scalar) and isinstance(value, (dict, list)):
        return {"string": "a string", "integer": "an integer", "number": "a number",
                "boolean": "true or false"}.get(schema.kind, schema.kind)
    return None


def _keep_anchored(node: Node, schema: Schema, path: tuple, warnings: list[Warning_]) -> bool:
    """False (and a warning) for an anchored value of the wrong shape: a reusable block parked under
    a known key, which the Databricks CLI drops with a warning rather than failing."""
    if not node.anchored:
        return True
    expected = _shape_mismatch(node, schema)
    if expected is None:
        return True
    kl = node.key_loc or node.loc
    warnings.append(Warning_(f"{path_text(path)} must be {expected}, not {_type_name(node.value)}; the value is a "
                             "YAML anchor, read only where it is merged (<<: *...) and ignored here",
                             kl.file if kl else None, kl.line if kl else None))
    return False


def check(node: Node, schema: Schema, path: tuple, warnings: list[Warning_]) -> None:
    """Check ``node`` in place (normalising scalars); raise on wrong types, collect unknown keys."""
    value = node.value
    loc = node.loc

    def where() -> str:               # only for messages: most nodes need none
        return path_text(path) or "the configuration"

    def wrong(expected: str) -> ConfigError:
        return ConfigError(f"{where()} must be {expected}, not {_type_name(value)}"
                           + (f" ({_format_scalar(value)!r})" if not isinstance(value, (dict, list)) and value is not None else ""),
                           hint=f"fix the value of {where()}", file=loc.file if loc else None,
                           line=loc.line if loc else None)

    if schema is ANY or value is None:
        return
    if isinstance(value, str) and has_reference(value) and not isinstance(schema, Scalar):
        return  # a deferred reference (resolved at deploy time) may stand for anything
    if isinstance(schema, Struct):
        if not isinstance(value, dict):
            raise wrong("a mapping")
        for key, child in list(value.items()):
            sub = schema.field(key)
            if sub is None:
                if not anchor_container(child):
                    kl = child.key_loc or child.loc
                    warnings.append(Warning_(f"unknown field {path_text(path + (key,))!r} (not a field of "
                                             f"{schema.name}); it is ignored", kl.file if kl else None,
                                             kl.line if kl else None))
                del value[key]
                continue
            if not _keep_anchored(child, sub, path + (key,), warnings):
                del value[key]
                continue
            check(child, sub, path + (key,), warnings)
        return
    if isinstance(schema, MapOf):
        if not isinstance(value, dict):
            raise wrong("a mapping")
        item = schema.item()
        for key, child in list(value.items()):
            if not _keep_anchored(child, item, path + (key,), warnings):
                del value[key]
                continue
            check(child, item, path + (key,), warnings)
        return
    if isinstance(schema, ListOf):
        if not isinstance(value, list):
            raise wrong("a list")
        item = schema.item()
        kept = [child for i, child in enumerate(value) if _keep_anchored(child, item, path + (i,), warnings)]
        value[:] = kept
        for i, child in enumerate(value):
            check(child, item, path + (i,), warnings)
        return
    if isinstance(schema, Scalar):
        if isinstance(value, (dict, list)):
            raise wrong({"string": "a string", "integer": "an integer", "number": "a number",
                         "boolean": "true or false"}.get(schema.kind, schema.kind))
        if isinstance(value, str) and has_reference(value):
            return
        if schema.kind == "string":
            if not isinstance(value, str):
                node.value = value = _format_scalar(value)
            if schema.choices and value not in schema.choices:
                warnings.append(Warning_(f"{where()} is {value!r}, which is not one of "
                                         f"{', '.join(schema.choices)}", loc.file if loc else None,
                                         loc.line if loc else None))
        elif schema.kind == "integer":
            if isinstance(value, bool):
                raise wrong("an integer")
            if isinstance(value, float) and value.is_integer():
                node.value = int(value)
            elif isinstance(value, str):
                try:
                    node.value = int(value.strip(), 10)
                except ValueError:
                    raise wrong("an integer") from None
            elif not isinstance(value, int):
                raise wrong("an integer")
        elif schema.kind == "number":
            if isinstance(value, bool):
                raise wrong("a number")
            if isinstance(value, str):
                try:
                    node.value = float(value.strip())
                except ValueError:
                    raise wrong("a number") from None
        elif schema.kind == "boolean":
            if isinstance(value, str) and value in ("true", "false"):
                node.value = value == "true"
            elif not isinstance(value, bool):
                raise wrong("true or false")
