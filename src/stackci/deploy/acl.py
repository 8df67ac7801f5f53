"""Permissions of jobs, experiments and workspace-registry models, grants of Unity Catalog
registered models, and the bundle's folder ACL, computed the way the Databricks CLI computes them.

``permissions`` on a resource is its access control list. The top-level ``permissions``
(levels CAN_MANAGE, CAN_VIEW, CAN_RUN only) apply to every job (CAN_RUN is CAN_MANAGE_RUN),
experiment and workspace-registry model (CAN_VIEW is CAN_READ; CAN_RUN has no level there and is
skipped) unless the
resource already names that principal, and to the bundle's workspace folders (CAN_VIEW is
CAN_READ there), except folders under /Workspace/Shared. A resource that ends up with an ACL
also keeps the deploying identity in control: IS_OWNER on a job (its CAN_MANAGE is upgraded,
or CAN_MANAGE when the ACL names another owner), CAN_MANAGE on an experiment or a model; a principal named
twice gets its highest level. The ACL is set with ``PUT /api/2.0/permissions/<type>/<id>``
(it replaces the direct permissions).

``grants`` on a registered model are Unity Catalog privileges, applied as ``PATCH
/api/2.1/unity-catalog/permissions/function/<full name>`` changes from what the model has
now: privileges added and removed per principal, principals that the bundle no longer names
lose theirs (as the CLI does). The top-level permissions do not apply to Unity Catalog models.

Removing ``permissions`` or ``grants`` from a resource leaves the workspace as it is (the CLI
does not restore defaults either); a warning says so.
"""

from __future__ import annotations

import re

from ..dbx import first_line
from ..errors import ConfigError, RunFailed
from .state import canonical_hash

#: the levels each resource kind accepts in its own ``permissions``
LEVELS = {
    "jobs": ("CAN_VIEW", "CAN_MANAGE_RUN", "CAN_MANAGE", "IS_OWNER"),
    "experiments": ("CAN_READ", "CAN_EDIT", "CAN_MANAGE"),
    "models": ("CAN_READ", "CAN_EDIT", "CAN_MANAGE_STAGING_VERSIONS", "CAN_MANAGE_PRODUCTION_VERSIONS", "CAN_MANAGE"),
}
#: top-level level -> the resource kind's level (absent: not applicable, skipped)
TOP_LEVELS = ("CAN_MANAGE", "CAN_VIEW", "CAN_RUN")
TOP_MAP = {
    "jobs": {"CAN_MANAGE": "CAN_MANAGE", "CAN_VIEW": "CAN_VIEW", "CAN_RUN": "CAN_MANAGE_RUN"},
    "experiments": {"CAN_MANAGE": "CAN_MANAGE", "CAN_VIEW": "CAN_READ"},
    "models": {"CAN_MANAGE": "CAN_MANAGE", "CAN_VIEW": "CAN_READ"},
}
FOLDER_MAP = {"CAN_MANAGE": "CAN_MANAGE", "CAN_RUN": "CAN_RUN", "CAN_VIEW": "CAN_READ"}
OBJECT_TYPE = {"jobs": "jobs", "experiments": "experiments", "models": "registered-models"}
PRINCIPALS = ("user_name", "group_name", "service_principal_name")
#: ranking used to keep a principal's highest level (the CLI's order)
ORDER = {"CAN_VIEW": 2, "CAN_READ": 3, "CAN_RUN": 5, "CAN_EDIT": 8, "CAN_MANAGE_RUN": 14,
         "CAN_MANAGE_STAGING_VERSIONS": 15, "CAN_MANAGE_PRODUCTION_VERSIONS": 16, "CAN_MANAGE": 17, "IS_OWNER": 18}
ACL_VERSION = 1
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _privileges() -> set[str]:
    from databricks.sdk.service import catalog
    return {p.value for p in catalog.Privilege}


def identity_field(name: str) -> str:
    """``service_principal_name`` for an application id (a UUID), else ``user_name``."""
    return "service_principal_name" if _UUID.match(name or "") else "user_name"


def _entry_principal(entry: dict) -> tuple[str, str] | None:
    named = [(f, entry[f]) for f in PRINCIPALS if isinstance(entry.get(f), str) and entry[f]]
    return named[0] if len(named) == 1 else None


# --------------------------------------------------------------------------- checks (before any change)
def _fail(bundle, path: tuple, message: str, hint: str) -> ConfigError:
    loc = bundle.location(path, key=True)
    return ConfigError(message, hint=hint, file=loc.file if loc else None, line=loc.line if loc else None)


def _check_list(bundle, path: tuple, value, levels: tuple, where: str) -> None:
    if not isinstance(value, list):
        raise _fail(bundle, path, f"{where} must be a list of {{level, user_name | group_name | "
                                  "service_principal_name}", "write e.g. permissions:\\n  - level: CAN_VIEW\\n"
                                                             "    group_name: users")
    owners = []
    for i, entry in enumerate(value):
        item = f"{where}[{i}]"
        if not isinstance(entry, dict):
            raise _fail(bundle, path + (i,), f"{item} must be a mapping with a level and one principal",
                        "write - level: CAN_VIEW\\n  group_name: users")
        if _entry_principal(entry) is None:
            raise _fail(bundle, path + (i,), f"{item} must name exactly one of user_name, group_name or "
                                             "service_principal_name", "keep one principal per entry")
        level = entry.get("level")
        if level not in levels:
            raise _fail(bundle, path + (i,), f"{item} has level {level!r}, which is not one of {', '.join(levels)}",
                        f"use one of {', '.join(levels)}")
        if level == "IS_OWNER":
            if entry.get("group_name"):
                raise _fail(bundle, path + (i,), f"{item}: a group cannot own a job",
                            "give IS_OWNER to a user or a service principal")
            owners.append(item)
    if len(owners) > 1:
        raise _fail(bundle, path, f"{where} gives IS_OWNER to {len(owners)} principals ({', '.join(owners)}); a job "
                                  "has exactly one owner", "keep one IS_OWNER entry")


def check(bundle) -> None:
    """ConfigError (at file:line, with the fix) for permissions and grants the workspace would refuse."""
    settings = bundle.settings
    top = settings.get("permissions")
    if top not in (None, []):
        _check_list(bundle, ("permissions",), top, TOP_LEVELS, "permissions")
    for kind in ("jobs", "experiments", "models"):
        for key, res in sorted((bundle.resources.get(kind) or {}).items()):
            value = res.settings.get("permissions") if isinstance(res.settings, dict) else None
            if value not in (None, []):
                _check_list(bundle, ("resources", kind, key, "permissions"), value, LEVELS[kind],
                            f"resources.{kind}.{key}.permissions")
    known = None
    for key, res in sorted((bundle.resources.get("registered_models") or {}).items()):
        grants = res.settings.get("grants") if isinstance(res.settings, dict) else None
        if grants in (None, []):
            continue
        path = ("resources", "registered_models", key, "grants")
        where = f"resources.registered_models.{key}.grants"
        if not isinstance(grants, list):
            raise _fail(bundle, path, f"{where} must be a list of {{principal, privileges}}",
                        "write grants:\\n  - principal: account users\\n    privileges: [EXECUTE]")
        known = known or _privileges()
        for i, grant in enumerate(grants):
            item = f"{where}[{i}]"
            principal = grant.get("principal") if isinstance(grant, dict) else None
            if not isinstance(principal, str) or not principal.strip():
                raise _fail(bundle, path + (i,), f"{item} names no principal",
                            "set principal: to a user, group or service principal")
            privileges = grant.get("privileges")
            if not isinstance(privileges, list) or not privileges:
                raise _fail(bundle, path + (i,), f"{item} lists no privileges", "e.g. privileges: [EXECUTE]")
            for p in privileges:
                if _privilege(p) not in known:
                    raise _fail(bundle, path + (i,), f"{item}: {p!r} is not a Unity Catalog privilege",
                                "a registered model takes EXECUTE, APPLY_TAG, MANAGE or ALL_PRIVILEGES")


def _privilege(value) -> str:
    return str(value).strip().upper().replace(" ", "_")


# --------------------------------------------------------------------------- what to send
def _with(field: str, name: str, level: str) -> dict:
    return {field: name, "permission_level": level}


def permissions(kind: str, settings: dict, bundle) -> list[dict] | None:
    """The access control list to PUT for a job or an experiment, or None when the bundle sets none."""
    own = [e for e in settings.get("permissions") or [] if isinstance(e, dict)]
    entries: list[tuple[str, str, str]] = []
    for e in own:
        principal = _entry_principal(e)
        if principal is not None and e.get("level"):
            entries.append((principal[0], principal[1], str(e["level"])))
    named = {(f, n) for f, n, _ in entries}
    for e in bundle.settings.get("permissions") or []:
        principal = _entry_principal(e) if isinstance(e, dict) else None
        level = TOP_MAP[kind].get(e.get("level")) if principal else None
        if principal is None or level is None or principal in named:
            continue   # not applicable to this kind, or the resource sets this principal itself
        entries.append((principal[0], principal[1], level))
    if not entries:
        return None
    me = bundle.current_user.user_name
    if me:
        mine = identity_field(me)
        if kind == "jobs":
            has_owner = any(level == "IS_OWNER" for _, _, level in entries)
            if not has_owner:
                upgraded = False
                for i, (f, n, level) in enumerate(entries):
                    if n == me and f in ("user_name", "service_principal_name") and level == "CAN_MANAGE":
                        entries[i] = (f, n, "IS_OWNER")
                        upgraded = True
                        break
                if not upgraded:
                    entries.append((mine, me, "IS_OWNER"))
            elif not any(n == me and level in ("IS_OWNER", "CAN_MANAGE") for f, n, level in entries
                         if f in ("user_name", "service_principal_name")):
                entries.append((mine, me, "CAN_MANAGE"))
        elif not any(n == me and level == "CAN_MANAGE" for f, n, level in entries
                     if f in ("user_name", "service_principal_name")):
            entries.append((mine, me, "CAN_MANAGE"))
    best: dict[tuple[str, str], str] = {}
    for f, n, level in entries:   # one level per principal: the highest
        if (f, n) not in best or ORDER.get(level, 0) > ORDER.get(best[(f, n)], 0):
            best[(f, n)] = level
    return [_with(f, n, level) for (f, n), level in best.items()]


def grants(settings: dict) -> list[dict] | None:
    """The grants of a registered model as ``[{principal, privileges}]`` (merged, sorted), or None."""
    raw = settings.get("grants")
    if not raw:
        return None
    merged: dict[str, set[str]] = {}
    for g in raw:
        if isinstance(g, dict) and isinstance(g.get("principal"), str):
            merged.setdefault(g["principal"], set()).update(_privilege(p) for p in g.get("privileges") or [])
    return [{"principal": p, "privileges": sorted(v)} for p, v in sorted(merged.items())] or None


def digest(kind: str, acl: list[dict] | None) -> str | None:
    if acl is None:
        return None
    if kind == "registered_models":
        canonical = acl
    else:
        canonical = sorted(acl, key=lambda e: (next((f, e[f]) for f in PRINCIPALS if f in e), e["permission_level"]))
    return canonical_hash({"v": ACL_VERSION, "kind": kind, "acl": canonical})


def what(kind: str) -> str:
    return "grants" if kind == "registered_models" else "permissions"


# --------------------------------------------------------------------------- applying
def put_permissions(api, address: str, object_type: str, object_id, acl: list[dict]):
    """``PUT /api/2.0/permissions/<object_type>/<id>``; a missing object is reported to the caller."""
    from databricks.sdk import errors
    try:
        return api.do("PUT", f"/api/2.0/permissions/{object_type}/{object_id}", body={"access_control_list": acl})
    except (errors.NotFound, errors.ResourceDoesNotExist):
        raise
    except errors.DatabricksError as exc:
        code = getattr(exc, "error_code", None) or type(exc).__name__
        raise RunFailed(f"{address}: setting its permissions failed: {code}: {first_line(exc)}",
                        hint="fix the permissions in the bundle and deploy again") from None


def grant_changes(current: list[dict], desired: list[dict]) -> list[dict]:
    """The ``changes`` that turn the current privilege assignments into the desired ones."""
    have = {a["principal"]: {_privilege(p) for p in a.get("privileges") or []} for a in current
            if a.get("principal")}
    want = {g["principal"]: set(g["privileges"]) for g in desired}
    changes = []
    for principal in sorted(set(have) | set(want)):
        add = sorted(want.get(principal, set()) - have.get(principal, set()))
        remove = sorted(have.get(principal, set()) - want.get(principal, set()))
        if add or remove:
            change = {"principal": principal}
            if add:
                change["add"] = add
            if remove:
                change["remove"] = remove
            changes.append(change)
    return changes


def patch_grants(api, address: str, full_name: str, desired: list[dict]) -> int:
    """Read the model's grants and PATCH the difference; the number of principals changed."""
    import urllib.parse

    from databricks.sdk import errors
    path = f"/api/2.1/unity-catalog/permissions/function/{urllib.parse.quote(full_name, safe='.')}"
    try:
        current = api.do("GET", path).get("privilege_assignments") or []
        changes = grant_changes(current, desired)
        if changes:
            api.do("PATCH", path, body={"changes": changes})
        return len(changes)
    except (errors.NotFound, errors.ResourceDoesNotExist):
        raise
    except errors.DatabricksError as exc:
        code = getattr(exc, "error_code", None) or type(exc).__name__
        raise RunFailed(f"{address}: setting its grants failed: {code}: {first_line(exc)}",
                        hint="fix the grants in the bundle (principals must exist, privileges must apply to a "
                             "registered model) and deploy again") from None


# --------------------------------------------------------------------------- the bundle's folders
def _shared(path: str) -> bool:
    return path == "/Workspace/Shared" or path.startswith("/Workspace/Shared/")


def folder_paths(bundle) -> list[str]:
    """The bundle's workspace folders that get the top-level permissions: each distinct prefix of
    root, file, artifact, state and resource path (nested ones share their parent's ACL), minus
    /Workspace/Shared (writable by everyone anyway) and /Volumes."""
    paths = sorted({p.rstrip("/") for p in (bundle.root_path, bundle.file_path, bundle.artifact_path,
                                            bundle.state_path, bundle.resource_path) if p})
    unique: list[str] = []
    for p in paths:
        if not any(p == u or p.startswith(u + "/") for u in unique):
            unique.append(p)
    return [p for p in unique if not _shared(p) and not p.startswith("/Volumes/")]


def folder_acl(bundle) -> tuple[list[str], list[dict]] | None:
    top = bundle.settings.get("permissions") or []
    acl = []
    for e in top:
        principal = _entry_principal(e) if isinstance(e, dict) else None
        level = FOLDER_MAP.get(e.get("level")) if principal else None
        if principal is not None and level is not None:
            acl.append(_with(principal[0], principal[1], level))
    paths = folder_paths(bundle)
    if not acl or not paths:
        return None
    return paths, acl


def folder_digest(paths: list[str], acl: list[dict]) -> str:
    return canonical_hash({"v": ACL_VERSION, "paths": paths, "acl": sorted(acl, key=lambda e: sorted(e.items()))})
