"""After resolution: deployment modes, presets, workspace paths of local files, mode checks."""

from __future__ import annotations

import glob as globlib
import re
from pathlib import Path, PurePosixPath

from ..errors import ConfigError
from .model import CurrentUser, Diagnostic, TranslatedPath, is_notebook
from .nodes import Location, Node, path_text
from .refs import has_reference

DEV_MAX_CONCURRENT_RUNS = 4
NOTEBOOK_EXTENSIONS = (".py", ".ipynb", ".sql", ".scala", ".r", ".R")


def _err(loc: Location | None, message: str, hint: str) -> ConfigError:
    return ConfigError(message, hint=hint, file=loc.file if loc else None, line=loc.line if loc else None)


def _get(node: Node | None, *path) -> Node | None:
    for part in path:
        if node is None or not isinstance(node.value, dict):
            return None
        node = node.value.get(part)
    return node


def _ensure_map(parent: Node, key: str) -> Node:
    child = parent.value.get(key)
    if child is None or child.value is None:
        child = Node({}, parent.loc)
        parent.value[key] = child
    return child


def _set(parent: Node, key: str, value, loc=None) -> None:
    existing = parent.value.get(key)
    parent.value[key] = Node(value, loc or (existing.loc if existing else parent.loc),
                             existing.key_loc if existing else None)


def normalise_uc_prefix(prefix: str) -> str:
    """``[dev alice] `` → ``dev_alice_``: Unity Catalog names take no brackets or spaces."""
    text = prefix.strip().replace("[", "").replace("]", "")
    text = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")
    return f"{text}_" if text else ""


# --------------------------------------------------------------------------- modes and presets
def apply_mode_defaults(tree: Node, mode: str | None, user: CurrentUser) -> None:
    """``mode: development`` fills presets the user did not set."""
    if mode != "development":
        return
    presets = _ensure_map(tree, "presets")
    values = presets.value
    if values.get("name_prefix") is None or values["name_prefix"].value is None:
        _set(presets, "name_prefix", f"[dev {user.short_name}] ")
    tags = _ensure_map(presets, "tags")
    if "dev" not in tags.value:
        _set(tags, "dev", user.short_name)
    if values.get("trigger_pause_status") is None or values["trigger_pause_status"].value is None:
        _set(presets, "trigger_pause_status", "PAUSED")
    if values.get("jobs_max_concurrent_runs") is None or values["jobs_max_concurrent_runs"].value in (None, 0):
        _set(presets, "jobs_max_concurrent_runs", DEV_MAX_CONCURRENT_RUNS)


def apply_presets(tree: Node) -> None:
    presets = _get(tree, "presets")
    if presets is None or not presets.is_map:
        return
    prefix_node = presets.get("name_prefix")
    prefix = prefix_node.value if prefix_node is not None and isinstance(prefix_node.value, str) else ""
    tags_node = presets.get("tags")
    tags = {k: v.value for k, v in tags_node.value.items()} if tags_node is not None and tags_node.is_map else {}
    pause_node = presets.get("trigger_pause_status")
    pause = pause_node.value if pause_node is not None else None
    mcr_node = presets.get("jobs_max_concurrent_runs")
    mcr = mcr_node.value if mcr_node is not None else None
    resources = _get(tree, "resources")
    if resources is None or not resources.is_map:
        return

    for kind in ("jobs", "pipelines", "models", "model_serving_endpoints", "dashboards", "clusters",
                 "sql_warehouses"):
        for _, res in _items(resources, kind):
            name = res.get("name")
            if prefix and name is not None and isinstance(name.value, str):
                name.value = prefix + name.value
    tagged = [exp for _, exp in _items(resources, "experiments")]
    for exp in tagged:
        name = exp.get("name")
        if prefix and name is not None and isinstance(name.value, str):
            head, sep, base = name.value.rpartition("/")
            name.value = f"{head}{sep}{prefix}{base}"
    for exp in tagged + [m for _, m in _items(resources, "models")]:   # models: key/value tags, like experiments
        if tags:
            tag_list = exp.value.get("tags")
            if tag_list is None or not tag_list.is_list:
                tag_list = Node([], exp.loc)
                exp.value["tags"] = tag_list
            present = {t.get("key").value for t in tag_list.value if t.is_map and t.get("key") is not None}
            for k, v in tags.items():
                if k not in present:
                    tag_list.value.append(Node({"key": Node(k, exp.loc), "value": Node(v, exp.loc)}, exp.loc))
    uc_prefix = normalise_uc_prefix(prefix) if prefix else ""
    for kind in ("registered_models", "schemas", "volumes"):
        for _, res in _items(resources, kind):
            name = res.get("name")
            if uc_prefix and name is not None and isinstance(name.value, str):
                name.value = uc_prefix + name.value

    for _, job in _items(resources, "jobs"):
        if tags:
            job_tags = job.value.get("tags")
            if job_tags is None or not job_tags.is_map:
                job_tags = Node({}, job.loc)
                job.value["tags"] = job_tags
            for k, v in tags.items():
                if k not in job_tags.value:
                    job_tags.value[k] = Node(v, job.loc)
        if mcr:
            current = job.get("max_concurrent_runs")
            if current is None or current.value in (None, 0):
                _set(job, "max_concurrent_runs", mcr, job.loc)
        if pause in ("PAUSED", "UNPAUSED"):
            for section in ("schedule", "trigger", "continuous"):
                block = job.get(section)
                if block is None or not block.is_map:
                    continue
                status = block.get("pause_status")
                if pause == "PAUSED":
                    # an explicit UNPAUSED on a job wins (how a developer keeps one schedule running)
                    if status is None or status.value != "UNPAUSED":
                        _set(block, "pause_status", "PAUSED", block.loc)
                elif status is None or status.value is None:
                    _set(block, "pause_status", "UNPAUSED", block.loc)


def _items(resources: Node, kind: str):
    group = resources.get(kind)
    if group is None or not group.is_map:
        return []
    return [(k, v) for k, v in group.value.items() if v.is_map]


# --------------------------------------------------------------------------- mode checks
_HOME = re.compile(r"^(?:/Workspace)?/Users/([^/]+)(?:/|$)")


def check_development(tree: Node, user: CurrentUser, explicit: dict[str, Node]) -> None:
    for key, node in explicit.items():
        value = node.value if isinstance(node.value, str) else ""
        if value and user.user_name not in value and user.short_name not in value:
            raise _err(node.loc, f"workspace.{key} {value!r} does not contain the current user "
                       f"({user.user_name}), which 'mode: development' requires",
                       f"start workspace.{key} with '~/' (the user's home) or remove it to use the default")


def check_production(tree: Node, target: str, explicit: dict[str, Node], warnings: list[Diagnostic],
                     git_info: dict) -> None:
    ws = _get(tree, "workspace")
    if "root_path" not in explicit:
        loc = ws.loc if ws is not None else tree.loc
        raise _err(loc, f"target {target!r} uses 'mode: production' but workspace.root_path is not set, so every "
                   "deployer would get their own copy",
                   f"set targets.{target}.workspace.root_path, e.g. /Workspace/Shared/.bundle/${{bundle.name}}/"
                   "${bundle.target}")
    root = explicit["root_path"]
    m = _HOME.match(str(_get(tree, "workspace", "root_path").value))
    if m:
        owner = m.group(1)
        run_as = _get(tree, "run_as")
        principal = None
        if run_as is not None and run_as.is_map:
            for k in ("service_principal_name", "user_name"):
                if run_as.get(k) is not None and run_as.get(k).value:
                    principal = run_as.get(k).value
        if principal != owner:
            raise _err(root.loc, f"target {target!r} uses 'mode: production' but workspace.root_path is in the "
                       f"home folder of {owner}" + (f" while run_as is {principal}" if principal else ""),
                       f"use a shared path such as /Workspace/Shared/.bundle/${{bundle.name}}/${{bundle.target}}, or "
                       f"set run_as to {owner}")
    presets = _get(tree, "presets", "name_prefix")
    if presets is not None and isinstance(presets.value, str) and presets.value.lstrip().startswith("[dev"):
        raise _err(presets.loc, f"target {target!r} uses 'mode: production' but presets.name_prefix is "
                   f"{presets.value!r}", "remove the '[dev ...]' prefix from a production target")
    resources = _get(tree, "resources")
    for kind in ("jobs", "pipelines", "experiments", "models", "registered_models"):
        for key, res in (_items(resources, kind) if resources is not None else []):
            name = res.get("name")
            if name is not None and isinstance(name.value, str) and \
                    name.value.rpartition("/")[2].startswith("[dev"):
                raise _err(name.loc, f"{kind}.{key} is named {name.value!r}, a development name, in production "
                           f"target {target!r}", "remove the '[dev ...]' prefix from the name")
    wanted = _get(tree, "bundle", "git", "branch")
    actual = git_info.get("branch")
    if wanted is not None and isinstance(wanted.value, str) and wanted.value and actual and wanted.value != actual \
            and not wanted.value.startswith("${"):
        raise _err(wanted.loc, f"target {target!r} is pinned to git branch {wanted.value!r} but the checkout is on "
                   f"{actual!r}", f"deploy {target!r} from {wanted.value!r}, or change bundle.git.branch")
    run_as = _get(tree, "run_as")
    if run_as is None or not run_as.is_map or not (run_as.get("service_principal_name") or run_as.get("user_name")):
        warnings.append(Diagnostic(f"target {target!r} uses 'mode: production' without run_as; production jobs "
                                   "should run as a service principal", ws.loc.file if ws and ws.loc else None,
                                   ws.loc.line if ws and ws.loc else None))


# --------------------------------------------------------------------------- local paths
def _is_local(value: str) -> bool:
    if not value or value.startswith("/") or has_reference(value):
        return False
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", value):   # dbfs:/, s3://, file:, https://, /Volumes is absolute
        return False
    return True


class PathTranslator:
    def __init__(self, root: Path, file_path: str, warnings: list[Diagnostic]) -> None:
        self.root = root
        self.file_path = file_path.rstrip("/")
        self.warnings = warnings
        self.translated: list[TranslatedPath] = []
        self._kinds: dict[Path, bool | None] = {}

    def _notebook_or_file(self, local: Path) -> bool | None:
        """None when ``local`` is not a file, else whether it is a notebook (once per path: jobs
        often run the same few files in many tasks)."""
        if local not in self._kinds:
            self._kinds[local] = is_notebook(local) if local.is_file() else None
        return self._kinds[local]

    def _local(self, node: Node, where: str) -> Path:
        base = Path(node.loc.file).parent if node.loc else self.root
        local = (base / node.value)
        resolved = Path(_normpath(local))
        try:
            resolved.relative_to(self.root)
        except ValueError:
            raise _err(node.loc, f"{where} {node.value!r} points to {resolved}, outside the bundle root {self.root}",
                       "paths are relative to the YAML file that declares them; move the file into the bundle "
                       "folder or use an absolute workspace path") from None
        return resolved

    def _remote(self, local: Path, strip_extension: bool) -> str:
        rel = PurePosixPath(local.relative_to(self.root).as_posix())
        if strip_extension:
            rel = rel.with_suffix("")
        return f"{self.file_path}/{rel}"

    def notebook(self, node: Node | None, path: tuple) -> None:
        if node is None or not isinstance(node.value, str) or not _is_local(node.value):
            return
        where = path_text(path)
        local = self._local(node, where)
        if not local.exists() and not local.suffix:
            for ext in NOTEBOOK_EXTENSIONS:
                candidate = local.with_name(local.name + ext)
                if candidate.is_file():
                    local = candidate
                    break
        notebook = self._notebook_or_file(local)
        if notebook is None:
            raise _err(node.loc, f"{where}: notebook {node.value!r} not found (looked for {local})",
                       "fix the path; it is relative to the YAML file that declares the task")
        if not notebook:
            raise _err(node.loc, f"{where}: {node.value!r} is a file, not a notebook",
                       "add '# Databricks notebook source' as its first line, or run it as a "
                       "spark_python_task (python_file)")
        remote = self._remote(local, True)
        self.translated.append(TranslatedPath(path, local, remote, "notebook"))
        node.value = remote

    def file(self, node: Node | None, path: tuple, *, kind: str = "file") -> None:
        if node is None or not isinstance(node.value, str) or not _is_local(node.value):
            return
        where = path_text(path)
        local = self._local(node, where)
        if kind == "directory":
            if not local.is_dir():
                raise _err(node.loc, f"{where}: folder {node.value!r} not found (looked for {local})",
                           "fix the path; it is relative to the YAML file that declares it")
        elif (notebook := self._notebook_or_file(local)) is None:
            raise _err(node.loc, f"{where}: file {node.value!r} not found (looked for {local})",
                       "fix the path; it is relative to the YAML file that declares it")
        elif notebook:
            raise _err(node.loc, f"{where}: {node.value!r} is a notebook, not a file",
                       "use a notebook_task for notebooks, or remove the '# Databricks notebook source' header")
        remote = self._remote(local, False)
        self.translated.append(TranslatedPath(path, local, remote, kind))
        node.value = remote

    def library(self, node: Node | None, path: tuple) -> None:
        if node is None or not isinstance(node.value, str) or not _is_local(node.value):
            return
        where = path_text(path)
        local = self._local(node, where)
        if not (globlib.has_magic(str(local)) and globlib.glob(str(local))) and not local.exists():
            self.warnings.append(Diagnostic(f"{where}: library {node.value!r} does not exist yet ({local}); "
                                            "build it before deploying", node.loc.file if node.loc else None,
                                            node.loc.line if node.loc else None))
        remote = self._remote(local, False)
        self.translated.append(TranslatedPath(path, local, remote, "library"))
        node.value = remote

    def task(self, task: Node, path: tuple, git_job: bool) -> None:
        if not task.is_map:
            return
        source = lambda block: block.get("source").value if block is not None and block.get("source") is not None else None  # noqa: E731
        nb = task.get("notebook_task")
        if nb is not None and nb.is_map and not (git_job and source(nb) != "WORKSPACE") and source(nb) != "GIT":
            self.notebook(nb.get("notebook_path"), path + ("notebook_task", "notebook_path"))
        py = task.get("spark_python_task")
        if py is not None and py.is_map and not (git_job and source(py) != "WORKSPACE") and source(py) != "GIT":
            self.file(py.get("python_file"), path + ("spark_python_task", "python_file"))
        dbt = task.get("dbt_task")
        if dbt is not None and dbt.is_map and not git_job and source(dbt) != "GIT":
            self.file(dbt.get("project_directory"), path + ("dbt_task", "project_directory"), kind="directory")
        sql_file = _get(task, "sql_task", "file")
        if sql_file is not None and sql_file.is_map and not git_job and source(sql_file) != "GIT":
            self.file(sql_file.get("path"), path + ("sql_task", "file", "path"))
        libs = task.get("libraries")
        if libs is not None and libs.is_list:
            for i, lib in enumerate(libs.value):
                if lib.is_map:
                    for key in ("whl", "jar", "requirements"):
                        if lib.get(key) is not None:
                            self.library(lib.get(key), path + ("libraries", i, key))
        inner = _get(task, "for_each_task", "task")
        if inner is not None:
            self.task(inner, path + ("for_each_task", "task"), git_job)

    def jobs(self, tree: Node) -> None:
        resources = _get(tree, "resources")
        if resources is None:
            return
        for key, job in _items(resources, "jobs"):
            base = ("resources", "jobs", key)
            git_job = job.get("git_source") is not None and job.get("git_source").value is not None
            tasks = job.get("tasks")
            if tasks is not None and tasks.is_list:
                for i, task in enumerate(tasks.value):
                    self.task(task, base + ("tasks", i), git_job)
            envs = job.get("environments")
            if envs is not None and envs.is_list:
                for i, env in enumerate(envs.value):
                    deps = _get(env, "spec", "dependencies")
                    if deps is not None and deps.is_list:
                        for j, dep in enumerate(deps.value):
                            if isinstance(dep.value, str) and (dep.value.startswith(("./", "../"))
                                                               or dep.value.endswith((".whl", ".jar"))):
                                self.library(dep, base + ("environments", i, "spec", "dependencies", j))


def _normpath(path: Path) -> str:
    import os
    return os.path.normpath(str(path))
