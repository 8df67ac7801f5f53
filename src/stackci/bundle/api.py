"""``load_bundle``: from a folder with databricks.yml to a resolved :class:`Bundle`."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Union

from ..errors import ConfigError
from . import git as gitinfo
from . import schema
from .interpolate import DEFERRED_PREFIXES, Resolver
from .loader import (apply_target, check_bundle_name, error, find_root, merge, normalise_keyed_lists,
                     parse_var_options, read_tree, resolve_variables, select_target)
from .model import Bundle, CurrentUser, Deferred, Diagnostic, Resource, SyncFile, UserUnknown
from .nodes import Location, Node, from_plain, to_plain, walk
from . import refs
from .sync import list_files
from .transform import (PathTranslator, apply_mode_defaults, apply_presets, check_development, check_production)

UserSource = Union[CurrentUser, str, Callable[[Union[str, None]], Union[CurrentUser, None]], None]
WORKSPACE_PATHS = ("root_path", "file_path", "state_path", "artifact_path", "resource_path")
_DEFAULT_PATHS = {
    "root_path": "~/.bundle/${bundle.name}/${bundle.target}",
    "file_path": "${workspace.root_path}/files",
    "state_path": "${workspace.root_path}/state",
    "artifact_path": "${workspace.root_path}/artifacts",
    "resource_path": "${workspace.root_path}/resources",
}


def normalise_host(host: str) -> str:
    host = host.strip().rstrip("/")
    if host and not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", host):
        host = "https://" + host
    return host


def load_bundle(root: str | os.PathLike = ".", target: str | None = None,
                variables: Mapping[str, str] | Iterable[str] | None = None,
                env: Mapping[str, str] | None = None, current_user: UserSource = None,
                lookup: Callable[[str, str], str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> Bundle:
    """Load, merge and resolve the bundle in ``root`` for ``target``.

    ``variables``: ``--var`` values (``{"name": "value"}`` or ``["name=value"]``).
    ``env``: where ``BUNDLE_VAR_<name>`` is read (default ``os.environ``).
    ``current_user``: a :class:`CurrentUser`, a userName, or a function of the workspace host
    returning one (called once the host is known; it may raise :class:`UserUnknown`, which only
    matters if the configuration needs the user; any other error ends the load). ``lookup``: resolves ``lookup`` variables,
    ``lookup(kind, name) -> id``; without it they need a value from ``--var`` and friends.
    ``overrides``: settings merged over the selected target, like one more target layer
    (``{"workspace": {"host": ..., "root_path": ...}, "presets": {...}}``); stackci uses it
    for isolated copies and for deploying to the local workspace.

    Raises :class:`ConfigError` (file and line set) for anything wrong; warnings are in
    :attr:`Bundle.warnings`.
    """
    env = os.environ if env is None else env
    root_dir, config_file = find_root(Path(root))
    root_dir = root_dir.resolve()
    config_file = config_file.resolve()
    raw_warnings: list[schema.Warning_] = []

    tree, files = read_tree(root_dir, config_file, lambda node: schema.check(node, schema.ROOT, (), raw_warnings))
    name = check_bundle_name(tree, config_file)
    target_name, target_node, targets = select_target(tree, target, Location(str(config_file), 1))
    merged = apply_target(tree, target_name, target_node)
    if overrides:
        layer = from_plain(dict(overrides), Location("(stackci overrides)", 1))
        for section, node in layer.value.items():
            merged.value[section] = merge(merged.value.get(section), node, (section,))
    normalise_keyed_lists(merged)
    mode_node = target_node.get("mode") if target_node is not None and target_node.is_map else None
    mode = mode_node.value if mode_node is not None else None
    warnings = [Diagnostic(w.message, w.file, w.line) for w in raw_warnings]

    # variables: the chosen value of each becomes variables.<name>.value
    values, sources = resolve_variables(tree, target_name, target_node, root_dir, parse_var_options(variables),
                                        env, lookup)
    declared = tree.get("variables")
    var_tree: dict[str, Node] = {}
    for vname, value in values.items():
        decl = declared.value[vname]
        entry = {k: v.copy() for k, v in decl.value.items() if k in ("description", "type", "default")}
        entry["value"] = value
        var_tree[vname] = Node(entry, decl.loc, decl.key_loc)
    merged.value["variables"] = Node(var_tree, declared.loc if declared is not None else merged.loc)

    # bundle.*: target and git facts (configured git values win, the checkout fills the rest)
    bundle_node = merged.value["bundle"]
    bundle_node.value["target"] = Node(target_name, target_node.loc if target_node is not None else bundle_node.loc)
    if mode:
        bundle_node.value["mode"] = Node(mode, mode_node.loc)
    detected = gitinfo.info(root_dir)
    git_node = bundle_node.value.get("git")
    if git_node is None or not git_node.is_map:
        git_node = Node({}, bundle_node.loc)
        bundle_node.value["git"] = git_node
    for key, value in detected.items():
        if key == "branch":
            git_node.value.setdefault("actual_branch", Node(value, bundle_node.loc))
        if key not in git_node.value or git_node.value[key].value in (None, ""):
            git_node.value[key] = Node(value, bundle_node.loc)
    # outside a git checkout (or without an origin) these are empty, as in the Databricks CLI
    # (a warning when used; a checkout on no branch, as CI checks out pull requests, is normal)
    blank = {}
    for key in ("branch", "commit", "origin_url"):
        if key not in git_node.value or git_node.value[key].value is None:
            git_node.value[key] = Node("", bundle_node.loc)
            if not detected:
                blank[("bundle", "git", key)] = "is not in a git checkout"
            elif key == "origin_url":
                blank[("bundle", "git", key)] = "is in a git checkout without an 'origin' remote"

    # workspace paths: remember which were written, then the defaults
    ws = merged.value.get("workspace")
    if ws is None or not ws.is_map:
        ws = Node({}, merged.loc)
        merged.value["workspace"] = ws
    explicit = {k: ws.value[k] for k in WORKSPACE_PATHS if ws.value.get(k) is not None
                and ws.value[k].value not in (None, "")}
    for key, default in _DEFAULT_PATHS.items():
        if key not in explicit:
            ws.value[key] = Node(default, ws.loc)

    resolver = Resolver(merged, warnings)
    resolver.blank = {path: f"${{{'.'.join(path)}}} is empty: {root_dir} {why}" for path, why in blank.items()}
    why_no_user = "the current user is not known: pass --user (STACKCI_CURRENT_USER) or configure workspace.host " \
                  "with credentials so that stackci can ask the workspace"
    resolver.unavailable[("workspace", "current_user")] = why_no_user
    host_node = resolver.resolve_path(("workspace", "host"))
    host = None
    if host_node is not None and host_node.value not in (None, ""):
        if not isinstance(host_node.value, str):
            raise error(host_node.loc, "workspace.host must be a URL string", "e.g. https://adb-123.azuredatabricks.net")
        host_node.value = host = normalise_host(host_node.value)

    user = None
    if isinstance(current_user, CurrentUser):
        user = current_user
    elif isinstance(current_user, str) and current_user.strip():
        user = CurrentUser(current_user.strip())
    elif callable(current_user):
        try:
            user = current_user(host)
        except UserUnknown as exc:
            why_no_user = exc.one_line()
            resolver.unavailable[("workspace", "current_user")] = why_no_user
    if user is not None:
        ws.value["current_user"] = from_plain(user.as_config(), ws.loc)

    def need_user(loc: Location | None, what: str) -> CurrentUser:
        if user is None:
            raise ConfigError(f"{what} needs the current user", hint=why_no_user,
                              file=loc.file if loc else None, line=loc.line if loc else None)
        return user

    def expand_home(node: Node, key: str) -> None:
        if isinstance(node.value, str) and (node.value == "~" or node.value.startswith("~/")):
            what = f"workspace.{key} {node.value!r} (its '~')" if key in explicit else \
                f"the default workspace.{key} {node.value!r} (its '~')"
            u = need_user(node.loc, what)
            node.value = f"/Workspace/Users/{u.user_name}" + node.value[1:]

    for key in WORKSPACE_PATHS:
        expand_home(ws.value[key], key)
    resolver.resolve_all()
    for key in WORKSPACE_PATHS:
        node = ws.value[key]
        if not isinstance(node.value, str):
            raise error(node.loc, f"workspace.{key} must be a string path", f"set workspace.{key} to a workspace path")
        expand_home(node, key)
        if node.value.startswith("/") and not node.value.startswith(("/Workspace/", "/Volumes/")) \
                and node.value != "/Workspace":
            node.value = "/Workspace" + node.value
        node.value = node.value.rstrip("/") or "/"

    # types, after resolution (references may have produced the values)
    schema.check(merged, schema.ROOT, (), [])

    lock_node = None
    deployment = bundle_node.get("deployment")
    if deployment is not None and deployment.is_map and deployment.get("lock") is not None:
        lock_node = deployment.get("lock").get("enabled")
    lock_enabled = bool(lock_node.value) if lock_node is not None and lock_node.value is not None \
        else mode != "development"

    if mode == "development":
        need_user(mode_node.loc, "'mode: development'")
        check_development(merged, user, explicit)  # type: ignore[arg-type]
        apply_mode_defaults(merged, mode, user)  # type: ignore[arg-type]
    apply_presets(merged)

    translator = PathTranslator(root_dir, ws.value["file_path"].value, warnings)
    translator.jobs(merged)
    if mode == "production":
        check_production(merged, target_name, explicit, warnings, detected)

    deferred = [Deferred(path, n.value, names, n.loc)
                for path, n in walk(merged) if isinstance(n.value, str) and "${" in n.value
                for names in [tuple(r.dotted for r in refs.find(n.value) if r.path[0] in DEFERRED_PREFIXES)]
                if names and path[:1] != ("variables",)]

    resources: dict[str, dict[str, Resource]] = {}
    res_node = merged.value.get("resources")
    if res_node is not None and res_node.is_map:
        for kind, items in res_node.value.items():
            if not items.is_map:
                continue
            resources[kind] = {key: Resource(kind, key, to_plain(node) or {}, node.key_loc or node.loc)
                               for key, node in items.value.items()}

    sync = merged.value.get("sync")
    include = [n.value for n in (sync.get("include").value if sync is not None and sync.get("include") is not None
                                 and sync.get("include").is_list else [])]
    exclude = [n.value for n in (sync.get("exclude").value if sync is not None and sync.get("exclude") is not None
                                 and sync.get("exclude").is_list else [])]

    def load_sync() -> dict[str, SyncFile]:
        return {rel: SyncFile(rel, root_dir / rel) for rel in list_files(root_dir, include, exclude)}

    return Bundle(
        root=root_dir, config_file=config_file, files=files, name=name, target=target_name, mode=mode,
        tree=merged,
        current_user=user if user is not None else CurrentUser("", source="unknown"),
        variables={k: to_plain(merged.value["variables"].value[k].value["value"]) for k in values},
        variable_sources=sources, resources=resources, deferred=deferred, warnings=_dedupe(warnings),
        translated_paths=translator.translated, lock_enabled=lock_enabled, targets=targets,
        _sync_loader=load_sync,
    )


def _dedupe(items: list[Diagnostic]) -> list[Diagnostic]:
    seen, out = set(), []
    for item in items:
        key = (item.message, item.file, item.line)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out
