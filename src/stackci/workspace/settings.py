"""Validation of job settings and task definitions (Jobs API 2.1/2.2 request shapes)."""

from __future__ import annotations

import copy
import re

from stackci.workspace.api import invalid, malformed, typed

RUN_IF = ("ALL_SUCCESS", "ALL_DONE", "NONE_FAILED", "AT_LEAST_ONE_SUCCESS", "ALL_FAILED",
          "AT_LEAST_ONE_FAILED")
CONDITION_OPS = ("EQUAL_TO", "NOT_EQUAL", "GREATER_THAN", "GREATER_THAN_OR_EQUAL", "LESS_THAN",
                 "LESS_THAN_OR_EQUAL")
#: task types this workspace can run
RUNNABLE_TYPES = ("spark_python_task", "notebook_task", "python_wheel_task", "condition_task", "run_job_task")
#: task types the real service knows; accepted in settings, refused when a run reaches them
OTHER_TYPES = ("spark_jar_task", "spark_submit_task", "pipeline_task", "sql_task", "dbt_task",
               "for_each_task", "clean_rooms_notebook_task", "dashboard_task", "power_bi_task",
               "gen_ai_compute_task", "dbt_cloud_task", "alert_task")
TASK_TYPES = RUNNABLE_TYPES + OTHER_TYPES
TASK_KEY_RE = re.compile(r"^[\w\-]{1,100}$")

_SETTINGS_TYPES = {
    "name": str, "description": str, "tasks": list, "job_clusters": list, "environments": list,
    "parameters": list, "tags": dict, "email_notifications": dict, "webhook_notifications": dict,
    "notification_settings": dict, "timeout_seconds": int, "max_concurrent_runs": int,
    "schedule": dict, "trigger": dict, "continuous": dict, "queue": dict, "run_as": dict,
    "git_source": dict, "format": str, "deployment": dict, "edit_mode": str, "health": dict,
    "budget_policy_id": str, "performance_target": str, "usage_policy_id": str,
}

_TASK_TYPES = {
    "task_key": str, "description": str, "depends_on": list, "run_if": str, "timeout_seconds": int,
    "max_retries": int, "min_retry_interval_millis": int, "retry_on_timeout": bool,
    "existing_cluster_id": str, "new_cluster": dict, "job_cluster_key": str, "environment_key": str,
    "libraries": list, "email_notifications": dict, "webhook_notifications": dict,
    "notification_settings": dict, "health": dict, "disable_auto_optimization": bool,
    **{t: dict for t in TASK_TYPES},
}


def _check_types(doc: dict, types: dict, where: str) -> None:
    for name, kind in types.items():
        typed(doc, name, kind, where=where)


def validate_task(task, index: int, where: str = "tasks") -> dict:
    if not isinstance(task, dict):
        raise malformed(f"Invalid JSON given in the body of the request - expected an object for {where}[{index}]")
    key = typed(task, "task_key", str, required=True, where=f"{where}[{index}].")
    if not TASK_KEY_RE.match(key):
        raise invalid(f"Invalid task_key {key!r}: use 1-100 letters, digits, '_' or '-'")
    _check_types(task, _TASK_TYPES, f"{where}[{key}].")
    kinds = [t for t in TASK_TYPES if task.get(t) is not None]
    if len(kinds) != 1:
        raise invalid(f"Task {key} must specify exactly one task type, e.g. spark_python_task, "
                      f"notebook_task or python_wheel_task (found {len(kinds)})")
    kind = kinds[0]
    body = task[kind]
    here = f"{where}[{key}].{kind}."
    if kind == "spark_python_task":
        typed(body, "python_file", str, required=True, where=here)
        params = typed(body, "parameters", list, where=here) or []
        if not all(isinstance(p, str) for p in params):
            raise malformed(f"Invalid JSON given in the body of the request - expected strings in {here}parameters")
    elif kind == "notebook_task":
        typed(body, "notebook_path", str, required=True, where=here)
        base = typed(body, "base_parameters", dict, where=here) or {}
        if not all(isinstance(v, (str, int, float, bool)) for v in base.values()):
            raise malformed(f"Invalid JSON given in the body of the request - expected strings in "
                            f"{here}base_parameters")
    elif kind == "python_wheel_task":
        typed(body, "package_name", str, required=True, where=here)
        typed(body, "entry_point", str, required=True, where=here)
        typed(body, "parameters", list, where=here)
        typed(body, "named_parameters", dict, where=here)
    elif kind == "condition_task":
        op = typed(body, "op", str, required=True, where=here)
        if op not in CONDITION_OPS:
            raise invalid(f"Invalid op {op!r} in {here[:-1]}; use one of {', '.join(CONDITION_OPS)}")
        for side in ("left", "right"):
            value = typed(body, side, str, required=True, where=here) if not isinstance(
                body.get(side), (int, float)) else body[side]
            body[side] = str(value)
    elif kind == "run_job_task":
        typed(body, "job_id", int, required=True, where=here)
        typed(body, "job_parameters", dict, where=here)
    deps = task.get("depends_on") or []
    for i, dep in enumerate(deps):
        if not isinstance(dep, dict):
            raise malformed(f"Invalid JSON given in the body of the request - expected an object in "
                            f"{where}[{key}].depends_on[{i}]")
        typed(dep, "task_key", str, required=True, where=f"{where}[{key}].depends_on[{i}].")
        outcome = typed(dep, "outcome", str, where=f"{where}[{key}].depends_on[{i}].")
        if outcome is not None and outcome not in ("true", "false"):
            raise invalid(f"Invalid outcome {outcome!r} in {where}[{key}].depends_on: use 'true' or 'false'")
    run_if = task.get("run_if")
    if run_if is not None and run_if not in RUN_IF:
        raise invalid(f"Invalid run_if {run_if!r} in task {key}; use one of {', '.join(RUN_IF)}")
    for name in ("timeout_seconds", "min_retry_interval_millis"):
        value = typed(task, name, int, where=f"{where}[{key}].")
        if value is not None and value < 0:
            raise invalid(f"{where}[{key}].{name} must not be negative")
    retries = typed(task, "max_retries", int, where=f"{where}[{key}].")
    if retries is not None and retries < -1:
        raise invalid(f"{where}[{key}].max_retries must be -1 (retry forever) or more")
    return task


def validate_tasks(tasks: list, where: str = "tasks") -> list[dict]:
    keys: set[str] = set()
    for i, task in enumerate(tasks):
        validate_task(task, i, where)
        if task["task_key"] in keys:
            raise invalid(f"Task key {task['task_key']} is duplicated: task keys must be unique within a job")
        keys.add(task["task_key"])
    for task in tasks:
        for dep in task.get("depends_on") or []:
            if dep["task_key"] not in keys:
                raise invalid(f"Task {task['task_key']} depends on {dep['task_key']}, which does not exist")
            if dep["task_key"] == task["task_key"]:
                raise invalid(f"Task {task['task_key']} depends on itself")
            if dep.get("outcome") is not None:
                upstream = next(t for t in tasks if t["task_key"] == dep["task_key"])
                if "condition_task" not in upstream:
                    raise invalid(f"Task {task['task_key']} sets an outcome on {dep['task_key']}, "
                                  "which is not a condition task")
    _check_acyclic(tasks)
    return tasks


def _check_acyclic(tasks: list[dict]) -> None:
    deps = {t["task_key"]: [d["task_key"] for d in t.get("depends_on") or []] for t in tasks}
    state: dict[str, int] = {}
    for start in deps:
        if state.get(start):
            continue
        stack = [(start, iter(deps[start]))]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                raise invalid(f"The task dependencies contain a cycle through task {nxt}")
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(deps[nxt])))


def validate_settings(settings: dict) -> dict:
    """Check types and references of job settings; return a copy with defaults filled in."""
    if not isinstance(settings, dict):
        raise malformed("Invalid JSON given in the body of the request - expected an object for settings")
    settings = copy.deepcopy(settings)
    _check_types(settings, _SETTINGS_TYPES, "")
    validate_tasks(settings.get("tasks") or [])
    mcr = settings.get("max_concurrent_runs")
    if mcr is not None and not 0 <= mcr <= 1000:
        raise invalid("max_concurrent_runs must be between 0 and 1000")
    if settings.get("timeout_seconds") is not None and settings["timeout_seconds"] < 0:
        raise invalid("timeout_seconds must not be negative")
    names = set()
    for i, param in enumerate(settings.get("parameters") or []):
        if not isinstance(param, dict):
            raise malformed(f"Invalid JSON given in the body of the request - expected an object in parameters[{i}]")
        name = typed(param, "name", str, required=True, where=f"parameters[{i}].")
        if "default" not in param:
            raise invalid(f"Missing required field: parameters[{i}].default")
        if not isinstance(param["default"], (str, int, float, bool)):
            raise malformed(f"Invalid JSON given in the body of the request - expected a string for "
                            f"parameters[{i}].default")
        if name in names:
            raise invalid(f"Job parameter {name} is defined twice")
        names.add(name)
    queue = settings.get("queue")
    if queue is not None:
        typed(queue, "enabled", bool, required=True, where="queue.")
    tags = settings.get("tags") or {}
    if not all(isinstance(v, str) for v in tags.values()):
        raise malformed("Invalid JSON given in the body of the request - expected strings as tag values")
    return with_defaults(settings)


def with_defaults(settings: dict) -> dict:
    settings.setdefault("name", "Untitled")
    settings.setdefault("email_notifications", {})
    settings.setdefault("webhook_notifications", {})
    settings.setdefault("timeout_seconds", 0)
    settings.setdefault("max_concurrent_runs", 1)
    settings.setdefault("format", "MULTI_TASK")
    for task in settings.get("tasks") or []:
        task.setdefault("run_if", "ALL_SUCCESS")
        task.setdefault("timeout_seconds", 0)
        task.setdefault("email_notifications", {})
    return settings


_KEYED_ARRAYS = {"tasks": "task_key", "job_clusters": "job_cluster_key", "parameters": "name",
                 "environments": "environment_key"}


def merge_update(current: dict, new: dict, fields_to_remove: list[str]) -> dict:
    """jobs/update: top-level fields replace, keyed arrays merge by key, then removals apply."""
    merged = copy.deepcopy(current)
    for name, value in new.items():
        key = _KEYED_ARRAYS.get(name)
        if key and isinstance(value, list) and isinstance(merged.get(name), list):
            by_key = {item.get(key): item for item in merged[name] if isinstance(item, dict)}
            order = [item.get(key) for item in merged[name] if isinstance(item, dict)]
            for item in value:
                if isinstance(item, dict) and item.get(key) not in by_key:
                    order.append(item.get(key))
                by_key[item.get(key) if isinstance(item, dict) else None] = item
            merged[name] = [by_key[k] for k in order]
        else:
            merged[name] = copy.deepcopy(value)
    for spec in fields_to_remove:
        if not isinstance(spec, str):
            raise malformed("Invalid JSON given in the body of the request - expected strings in fields_to_remove")
        if "/" in spec:
            array, _, item_key = spec.partition("/")
            key = _KEYED_ARRAYS.get(array)
            if not key:
                raise invalid(f"Cannot remove {spec}: {array} is not an array with keys")
            items = merged.get(array) or []
            kept = [i for i in items if not (isinstance(i, dict) and i.get(key) == item_key)]
            if len(kept) == len(items):
                raise invalid(f"Cannot remove {spec}: no such element")
            merged[array] = kept
        else:
            merged.pop(spec, None)
    return merged
