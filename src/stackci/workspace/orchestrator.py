"""Runs a job run's task DAG: dependencies, run_if, conditions, retries, timeouts, cancellation.

One driver thread per active run decides which tasks may start, starts each in a
worker thread (``stackci.workspace.tasks.run_task`` executes spark_python,
notebook and wheel tasks as local processes; condition and run_job tasks are
handled here), and writes every state change to the store so that
``runs/get`` always shows the current state.

Dependency decisions (as documented for Databricks Jobs). Each finished
upstream counts as *succeeded* (SUCCESS, SUCCESS_WITH_FAILURES, or a condition
task whose outcome matches the ``outcome`` the dependency asks for), *failed*
(FAILED, TIMEDOUT, UPSTREAM_FAILED), *canceled* (CANCELED, UPSTREAM_CANCELED)
or *excluded* (EXCLUDED, or a condition outcome that does not match). A task
whose upstreams are all excluded is EXCLUDED whatever its ``run_if``; otherwise
excluded upstreams are left out and ``run_if`` is judged on the rest:
ALL_SUCCESS needs every one succeeded; AT_LEAST_ONE_SUCCESS one success;
NONE_FAILED no failure and at least one success; ALL_DONE always runs; these
four skip with UPSTREAM_FAILED (UPSTREAM_CANCELED when the only problem is a
cancellation). ALL_FAILED needs every one failed, AT_LEAST_ONE_FAILED one
failure; these failure handlers skip with EXCLUDED. The run's result follows
its leaf tasks: SUCCESS when nothing failed, SUCCESS_WITH_FAILURES when some
task failed but every leaf succeeded or was excluded, and the failed-run shape
of the real service (INTERNAL_ERROR / FAILED, "Task <key> failed with message:
...") when a leaf failed or was skipped because of a failure.

Retries: a FAILED attempt (TIMEDOUT too with ``retry_on_timeout``) is retried up
to ``max_retries`` times (-1 = unlimited, bounded here at 1000) after
``min_retry_interval_millis``; each attempt has its own task run id and
``attempt_number``, the task is WAITING_FOR_RETRY in between, and the output of
earlier attempts stays readable through runs/get-output.

Cancellation and timeouts: ``runs/cancel`` sets the cancel event of every
running task (the executor kills the whole process tree); running tasks end
CANCELED and tasks that had not started end SKIPPED/UPSTREAM_CANCELED; the run
ends TERMINATED/CANCELED. A job ``timeout_seconds`` does the same but the run
and its running tasks end TIMEDOUT. A task ``timeout_seconds`` is enforced by
the executor and ends that task TIMEDOUT.
"""

from __future__ import annotations

import logging
import queue
import re
import shutil
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from stackci.workspace.files import WorkspaceTree, parse_path
from stackci.workspace.jobs import (
    RUN_ID_START,
    TERMINAL_STATES,
    JobsService,
    end_as_internal_error,
    termination_type,
)
from stackci.workspace.settings import RUNNABLE_TYPES, TASK_TYPES
from stackci.workspace.store import now_ms

log = logging.getLogger(__name__)

KNOWN_CODES = {
    "BREAKING_CHANGE", "BUDGET_POLICY_LIMIT_EXCEEDED", "CANCELED", "CLOUD_FAILURE", "CLUSTER_ERROR",
    "CLUSTER_REQUEST_LIMIT_EXCEEDED", "DISABLED", "DRIVER_ERROR", "FEATURE_DISABLED", "INTERNAL_ERROR",
    "INVALID_CLUSTER_REQUEST", "INVALID_RUN_CONFIGURATION", "LIBRARY_INSTALLATION_ERROR",
    "MAX_CONCURRENT_RUNS_EXCEEDED", "MAX_JOB_QUEUE_SIZE_EXCEEDED", "MAX_SPARK_CONTEXTS_EXCEEDED",
    "REPOSITORY_CHECKOUT_FAILED", "RESOURCE_NOT_FOUND", "RUN_EXECUTION_ERROR", "SKIPPED",
    "STORAGE_ACCESS_ERROR", "SUCCESS", "SUCCESS_WITH_FAILURES", "UNAUTHORIZED_ERROR", "USER_CANCELED",
    "WORKSPACE_RUN_LIMIT_EXCEEDED",
}
RESULT_STATES = {"SUCCESS", "FAILED", "TIMEDOUT", "CANCELED"}
SUCCEEDED = ("SUCCESS", "SUCCESS_WITH_FAILURES")
FAILED = ("FAILED", "TIMEDOUT", "UPSTREAM_FAILED", "MAXIMUM_CONCURRENT_RUNS_REACHED")
CANCELED = ("CANCELED", "UPSTREAM_CANCELED")
WORKLOAD_FAILED = "Workload failed, see run output for details"
MAX_RETRIES_CAP = 1000
_REF = re.compile(r"\{\{\s*([A-Za-z0-9_.\-]+)\s*\}\}")


def substitute(value, ctx: dict[str, str]):
    """Replace ``{{name}}`` dynamic value references; unknown references stay as they are."""
    if isinstance(value, str):
        return _REF.sub(lambda m: ctx.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [substitute(v, ctx) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, ctx) for k, v in value.items()}
    return value


def evaluate_condition(op: str, left: str, right: str) -> bool:
    if op == "EQUAL_TO":
        return left == right
    if op == "NOT_EQUAL":
        return left != right
    try:
        a, b = float(left), float(right)
    except ValueError:
        raise ValueError(f"cannot compare {left!r} and {right!r} with {op}: both must be numbers") from None
    return {"GREATER_THAN": a > b, "GREATER_THAN_OR_EQUAL": a >= b, "LESS_THAN": a < b,
            "LESS_THAN_OR_EQUAL": a <= b}[op]


def decide(run_if: str, upstream: list[str]) -> str | None:
    """None if the task may run, else the result state of its skip (see the module docstring).

    ``upstream`` holds one of ok / failed / canceled / excluded per dependency.
    """
    if not upstream:
        return None
    if all(u == "excluded" for u in upstream):
        return "EXCLUDED"
    done = [u for u in upstream if u != "excluded"]  # excluded upstreams neither help nor hurt
    ok = done.count("ok")
    bad = done.count("failed")
    canceled = done.count("canceled")
    run_if = run_if or "ALL_SUCCESS"
    if run_if in ("ALL_FAILED", "AT_LEAST_ONE_FAILED"):
        # failure handlers: a cancelled upstream counts as not succeeded; an unmet condition is EXCLUDED
        not_ok = bad + canceled
        met = not_ok == len(done) if run_if == "ALL_FAILED" else not_ok > 0
        return None if met else "EXCLUDED"
    met = {
        "ALL_SUCCESS": ok == len(done),
        "ALL_DONE": True,
        "NONE_FAILED": bad == 0 and canceled == 0 and ok > 0,
        "AT_LEAST_ONE_SUCCESS": ok > 0,
    }.get(run_if, ok == len(done))
    if met:
        return None
    if bad or not canceled:
        return "UPSTREAM_FAILED"
    return "UPSTREAM_CANCELED"


class Orchestrator:
    def __init__(self, service: JobsService, tree: WorkspaceTree, runs_dir: Path, *,
                 task_runner: Callable | None = None, python: str | None = None,
                 task_env: dict[str, str] | None = None) -> None:
        self.service = service
        self.tree = tree
        self.runs_dir = Path(runs_dir)
        self._task_runner = task_runner
        self.python = python or sys.executable
        self.task_env = task_env
        self._lock = threading.Lock()
        self._drivers: dict[int, RunDriver] = {}
        self._closing = False

    @property
    def task_runner(self) -> Callable:
        if self._task_runner is None:
            from stackci.workspace.tasks import run_task

            self._task_runner = run_task
        return self._task_runner

    def start(self, run: dict) -> None:
        with self._lock:
            if self._closing:
                end_as_internal_error(run, "The local workspace server is shutting down.")
                self.service.save_run(run, active=False)
                return
            driver = RunDriver(self, run)
            self._drivers[run["run_id"]] = driver
            driver.thread.start()        # started while listed: shutdown() never joins a thread not yet started

    def cancel(self, run_id: int, reason: str = "user") -> None:
        with self._lock:
            driver = self._drivers.get(run_id)
        if driver is not None:
            driver.request_cancel(reason)
            return
        with self.service._admit_lock:
            run = self.service.load_run(run_id)
            if run["state"]["life_cycle_state"] not in ("QUEUED", "PENDING", "BLOCKED"):
                return
            end = now_ms()
            message = "Run was cancelled before it started."
            run["state"] = {"life_cycle_state": "TERMINATED", "result_state": "CANCELED",
                            "state_message": message, "user_cancelled_or_timedout": True}
            run["status"] = {"state": "TERMINATED", "termination_details": {
                "code": "USER_CANCELED", "type": "SUCCESS", "message": message}}
            run["end_time"] = end
            run["run_duration"] = end - run["start_time"]
            for t in run["tasks"]:
                t["state"] = {"life_cycle_state": "SKIPPED", "result_state": "CANCELED",
                              "state_message": message, "user_cancelled_or_timedout": True}
                t["status"] = {"state": "TERMINATED", "termination_details": {
                    "code": "USER_CANCELED", "type": "SUCCESS", "message": message}}
            self.service.save_run(run, active=False)

    def _finished(self, driver: RunDriver) -> None:
        # the driver stays listed until the queued runs are started, so that shutdown() waits for
        # this thread too: unlisted first, it could still be reading the store as the store closed
        try:
            with self._lock:
                closing = self._closing
            if not closing and driver.run.get("run_type") == "JOB_RUN":
                self.service.start_queued(driver.run["job_id"])
        finally:
            with self._lock:
                self._drivers.pop(driver.run_id, None)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Kill every running task and end active runs as INTERNAL_ERROR (the platform went away)."""
        with self._lock:
            self._closing = True
            drivers = list(self._drivers.values())
        for driver in drivers:
            driver.request_cancel("shutdown")
        deadline = time.monotonic() + timeout
        for driver in drivers:
            driver.thread.join(max(0.0, deadline - time.monotonic()))
        self.service.recover()


class RunDriver:
    def __init__(self, orch: Orchestrator, run: dict) -> None:
        self.orch = orch
        self.service = orch.service
        self.run = run
        self.run_id = run["run_id"]
        self.lock = threading.RLock()
        self.cancel_event = threading.Event()
        self.cancel_reason: str | None = None
        self.task_cancels: dict[str, threading.Event] = {}
        self.events: queue.Queue = queue.Queue()
        self.values: dict[str, dict] = {}
        self.results: dict[str, str] = {}
        self.outcomes: dict[str, str] = {}
        self.thread = threading.Thread(target=self._main, name=f"run-{self.run_id}", daemon=True)
        self.run_dir = orch.runs_dir / str(self.run_id)
        self.index: dict[str, Path] = {}

    # ---- shared helpers ----------------------------------------------------

    def save(self) -> None:
        with self.lock:
            self.service.save_run(self.run)

    def entry(self, key: str) -> dict:
        return next(t for t in self.run["tasks"] if t["task_key"] == key)

    def request_cancel(self, reason: str) -> None:
        with self.lock:
            if self.cancel_reason is None:
                self.cancel_reason = reason
            self.cancel_event.set()
            for event in self.task_cancels.values():
                event.set()

    def resolve_path(self, workspace_path: str) -> Path:
        """Map a workspace path of a task to its file in this run's copy of the workspace."""
        raw = str(workspace_path)
        if raw.startswith("file:"):
            raw = raw[len("file:"):]
        try:
            canonical = parse_path(raw).canonical
        except Exception:
            return self.run_dir / "ws" / raw.lstrip("/")
        found = self.index.get(canonical)
        if found is not None:
            return found
        return self.run_dir / "ws" / canonical.lstrip("/")

    # ---- the driver --------------------------------------------------------

    def _main(self) -> None:
        try:
            self._drive()
        except Exception as exc:  # a bug here must not leave the run RUNNING forever
            log.exception("run %s: the local workspace failed to drive the run", self.run_id)
            with self.lock:
                for event in self.task_cancels.values():
                    event.set()
                end_as_internal_error(self.run, f"Internal error of the local workspace: {exc}")
                self.service.save_run(self.run, active=False)
        finally:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.orch._finished(self)

    def _drive(self) -> None:
        run = self.run
        started = now_ms()
        with self.lock:
            run["state"].update(life_cycle_state="RUNNING", state_message="")
            run["status"] = {"state": "RUNNING"}
            self.save()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.index = self.orch.tree.materialise(self.run_dir / "ws")
        order = [t["task_key"] for t in run["tasks"]]
        deps = {t["task_key"]: [d for d in t.get("depends_on") or [] if d["task_key"] in order]
                for t in run["tasks"]}
        pending = list(order)
        running: set[str] = set()
        timeout = run.get("_x", {}).get("timeout_seconds") or 0
        deadline = time.monotonic() + timeout if timeout else None
        while pending or running:
            if self.cancel_event.is_set():
                for key in pending:
                    self._skip(key, "UPSTREAM_CANCELED")
                pending = []
            else:
                for key in list(pending):
                    upstream = deps[key]
                    if not all(d["task_key"] in self.results for d in upstream):
                        continue
                    pending.remove(key)
                    verdict = decide(self.entry(key).get("run_if") or "ALL_SUCCESS",
                                     [self._classify(d) for d in upstream])
                    if verdict is None:
                        running.add(key)
                        self._start_task(key)
                    else:
                        self._skip(key, verdict)
                with self.lock:
                    changed = False
                    for key in pending:
                        entry = self.entry(key)
                        if entry["state"]["life_cycle_state"] == "PENDING":
                            entry["state"]["life_cycle_state"] = "BLOCKED"
                            entry["status"] = {"state": "BLOCKED"}
                            changed = True
                    if changed:
                        self.save()
            if not running:
                if pending and not self.cancel_event.is_set():
                    # unreachable with an acyclic graph; never spin
                    for key in pending:
                        self._skip(key, "UPSTREAM_FAILED")
                    pending = []
                continue
            wait = 0.5
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            try:
                key, result = self.events.get(timeout=wait)
                running.discard(key)
                self.results[key] = result
            except queue.Empty:
                pass
            if deadline is not None and time.monotonic() >= deadline and not self.cancel_event.is_set():
                self.request_cancel("timeout")
        self._roll_up(started, timeout)

    def _classify(self, dep: dict) -> str:
        result = self.results[dep["task_key"]]
        if result in SUCCEEDED:
            wanted = dep.get("outcome")
            if wanted is not None and self.outcomes.get(dep["task_key"]) != wanted:
                return "excluded"
            return "ok"
        if result in FAILED:
            return "failed"
        if result in CANCELED:
            return "canceled"
        return "excluded"

    def _skip(self, key: str, result: str) -> None:
        messages = {
            "UPSTREAM_FAILED": "Upstream task(s) failed.",
            "UPSTREAM_CANCELED": "Upstream task(s) were cancelled.",
            "EXCLUDED": "Excluded: the dependency condition (run_if or condition outcome) was not met.",
        }
        with self.lock:
            entry = self.entry(key)
            entry["state"] = {"life_cycle_state": "SKIPPED", "result_state": result,
                              "state_message": messages[result],
                              "user_cancelled_or_timedout": result == "UPSTREAM_CANCELED"}
            code_type = "SUCCESS" if result == "EXCLUDED" else "CLIENT_ERROR"
            entry["status"] = {"state": "TERMINATED", "termination_details": {
                "code": "SKIPPED", "type": code_type, "message": messages[result]}}
            self.results[key] = result
            self.save()

    def _start_task(self, key: str) -> None:
        thread = threading.Thread(target=self._task_thread, args=(key,), name=f"run-{self.run_id}-{key}",
                                  daemon=True)
        thread.start()

    # ---- one task, all its attempts ----------------------------------------

    def _task_thread(self, key: str) -> None:
        result = "FAILED"
        try:
            result = self._task_attempts(key)
        except Exception as exc:
            log.exception("run %s: task %s failed inside the local workspace", self.run_id, key)
            with self.lock:
                entry = self.entry(key)
                self._finish_entry(entry, "FAILED", "INTERNAL_ERROR", f"Internal error of the local workspace: {exc}",
                                   "Internal error of the local workspace")
                self.save()
        finally:
            self.events.put((key, result))

    def _task_attempts(self, key: str) -> str:
        with self.lock:
            # never mutated: every attempt works on substitute()'s fresh copy
            settings = {k: v for k, v in self.entry(key).items()
                        if k not in ("run_id", "attempt_number", "state", "status", "start_time", "setup_duration",
                                     "execution_duration", "cleanup_duration", "end_time", "run_page_url")
                        and not k.startswith("_")}
        max_retries = settings.get("max_retries") or 0
        if max_retries < 0:
            max_retries = MAX_RETRIES_CAP
        max_retries = min(max_retries, MAX_RETRIES_CAP)
        interval = (settings.get("min_retry_interval_millis") or 0) / 1000.0
        retry_on_timeout = bool(settings.get("retry_on_timeout"))
        attempt = 0
        while True:
            cancel = threading.Event()
            with self.lock:
                if self.cancel_event.is_set():
                    cancel.set()
                self.task_cancels[key] = cancel
                entry = self.entry(key)
                if attempt > 0:  # a retry is a new task run with its own id
                    new_id = self.service.store.next_id("run", RUN_ID_START)
                    entry["_original_run_id"] = entry.get("_original_run_id", entry["run_id"])
                    entry["run_id"] = new_id
                    entry["attempt_number"] = attempt
                    entry["run_page_url"] = self.service.run_page_url(self.run["job_id"], new_id)
                    self.service.save_task_output(new_id, self.run_id, key, {})
                entry["state"] = {"life_cycle_state": "RUNNING", "state_message": "",
                                  "user_cancelled_or_timedout": False}
                entry["status"] = {"state": "RUNNING"}
                entry["start_time"] = now_ms()
                entry["end_time"] = 0
                self.save()
                task_run_id = entry["run_id"]
            result, code, message, output, outcome = self._attempt(key, settings, task_run_id, attempt, cancel)
            with self.lock:
                self.task_cancels.pop(key, None)
                if self.cancel_event.is_set() and result not in ("SUCCESS",):
                    if self.cancel_reason == "timeout":
                        result, code, message = "TIMEDOUT", "CANCELED", "The job run timed out."
                    elif self.cancel_reason == "shutdown":
                        result, code = "FAILED", "INTERNAL_ERROR"
                        message = "The local workspace server stopped while this task was running."
                    else:
                        result, code, message = "CANCELED", "USER_CANCELED", "Run was cancelled by the user."
                entry = self.entry(key)
                if outcome is not None:
                    entry["condition_task"]["outcome"] = outcome
                    self.outcomes[key] = outcome
                state_message = {"SUCCESS": "", "CANCELED": message, "TIMEDOUT": message}.get(result, WORKLOAD_FAILED)
                if code in ("INVALID_RUN_CONFIGURATION", "LIBRARY_INSTALLATION_ERROR", "INTERNAL_ERROR"):
                    state_message = message
                self._finish_entry(entry, result, code, message, state_message)
                retry = (attempt < max_retries and not self.cancel_event.is_set()
                         and (result == "FAILED" or (result == "TIMEDOUT" and retry_on_timeout))
                         and code not in ("INTERNAL_ERROR",))
                # serialised at once by save_task_output: a shallow snapshot is enough
                output["_task"] = {k: v for k, v in entry.items() if not k.startswith("_")}
                self.service.save_task_output(task_run_id, self.run_id, key, output)
                if not retry:
                    self.save()
                    return result
                attempt += 1
                # until the next attempt starts, the failed attempt's run id shows WAITING_FOR_RETRY
                entry["state"] = {"life_cycle_state": "WAITING_FOR_RETRY",
                                  "state_message": f"Waiting for retry after: {message or result}",
                                  "user_cancelled_or_timedout": False}
                entry["status"] = {"state": "WAITING"}
                self.save()
            if self.cancel_event.wait(interval):
                with self.lock:
                    entry = self.entry(key)
                    reason = self.cancel_reason
                    final = "TIMEDOUT" if reason == "timeout" else "CANCELED"
                    self._finish_entry(entry, final, "CANCELED" if final == "TIMEDOUT" else "USER_CANCELED",
                                       "Cancelled while waiting for a retry.", "Cancelled while waiting for a retry.")
                    self.save()
                return final

    def _finish_entry(self, entry: dict, result: str, code: str, message: str, state_message: str) -> None:
        end = now_ms()
        entry["state"] = {"life_cycle_state": "TERMINATED", "result_state": result, "state_message": state_message,
                          "user_cancelled_or_timedout": result in ("CANCELED", "TIMEDOUT")}
        entry["status"] = {"state": "TERMINATED", "termination_details": {
            "code": code, "type": termination_type(code), "message": message or state_message or ""}}
        if not entry.get("start_time"):
            entry["start_time"] = end
        entry["end_time"] = end
        entry["execution_duration"] = end - entry["start_time"]
        entry["run_duration"] = end - entry["start_time"]

    def _context(self, key: str, task_run_id: int, attempt: int) -> dict[str, str]:
        run = self.run
        start = datetime.fromtimestamp(run["start_time"] / 1000, tz=timezone.utc)
        ctx = {
            "job.id": str(run["job_id"]), "job.name": run.get("_x", {}).get("job_name", run["run_name"]),
            "job.run_id": str(self.run_id), "run.id": str(self.run_id), "job.repair_count": "0",
            "job.trigger.type": {"ONE_TIME": "one_time", "RUN_JOB_TASK": "run_job_task"}.get(
                run.get("trigger", "ONE_TIME"), "one_time"),
            "job.start_time.iso_date": start.date().isoformat(),
            "job.start_time.iso_datetime": start.isoformat(timespec="seconds"),
            "job.start_time.timestamp_ms": str(run["start_time"]),
            "task.name": key, "task.run_id": str(task_run_id), "task.execution_count": str(attempt + 1),
            "workspace.id": self.service.workspace_id, "workspace.url": self.service.host,
            # deprecated forms still accepted by the service
            "job_id": str(run["job_id"]), "run_id": str(task_run_id), "parent_run_id": str(self.run_id),
            "task_key": key, "start_date": start.date().isoformat(), "start_time": str(run["start_time"]),
        }
        for p in run.get("job_parameters") or []:
            ctx[f"job.parameters.{p['name']}"] = str(p.get("value", p.get("default", "")))
        for upstream, values in self.values.items():
            for name, value in values.items():
                ctx[f"tasks.{upstream}.values.{name}"] = value if isinstance(value, str) else _json(value)
        for upstream, result in self.results.items():
            ctx[f"tasks.{upstream}.result_state"] = result.lower()
        return ctx

    def _attempt(self, key: str, settings: dict, task_run_id: int, attempt: int, cancel: threading.Event):
        """Run one attempt: (result_state, code, message, output, condition outcome)."""
        kind = next((t for t in TASK_TYPES if settings.get(t) is not None), None)
        ctx = self._context(key, task_run_id, attempt)
        if kind not in RUNNABLE_TYPES:
            message = (f"Task {key} is a {kind}, which the local workspace cannot run "
                       f"(it runs {', '.join(RUNNABLE_TYPES)}).")
            return "FAILED", "INVALID_RUN_CONFIGURATION", message, {"error": message}, None
        if kind == "condition_task":
            cond = substitute(settings["condition_task"], ctx)
            try:
                outcome = "true" if evaluate_condition(cond["op"], str(cond["left"]), str(cond["right"])) else "false"
            except ValueError as exc:
                return "FAILED", "RUN_EXECUTION_ERROR", str(exc), {"error": str(exc)}, None
            return "SUCCESS", "SUCCESS", "", {}, outcome
        if kind == "run_job_task":
            return self._run_job(key, substitute(settings["run_job_task"], ctx), cancel)
        task = substitute(settings, ctx)
        work_dir = self.run_dir / "tasks" / f"{key}-{attempt}"
        work_dir.mkdir(parents=True, exist_ok=True)
        job_parameters = {p["name"]: str(p.get("value", p.get("default", "")))
                          for p in self.run.get("job_parameters") or []}
        timeout = settings.get("timeout_seconds") or None
        with self.lock:
            upstream = {k: dict(v) for k, v in self.values.items()}
        try:
            runner = self.orch.task_runner
        except ImportError as exc:
            message = f"The local task executor is not available: {exc}"
            return "FAILED", "INTERNAL_ERROR", message, {"error": message}, None
        outcome = runner(task, resolve_path=self.resolve_path, work_dir=work_dir, job_parameters=job_parameters,
                         upstream_values=upstream, python=self.orch.python, timeout=timeout, cancel=cancel,
                         env=self.orch.task_env)
        result = outcome.result_state if outcome.result_state in RESULT_STATES else "FAILED"
        code = outcome.termination_code
        if code not in KNOWN_CODES:
            code = {"SUCCESS": "SUCCESS", "TIMEDOUT": "CANCELED", "CANCELED": "USER_CANCELED"}.get(
                result, "RUN_EXECUTION_ERROR")
        if result == "TIMEDOUT":
            message = outcome.error or f"Task {key} timed out after {timeout} seconds."
        else:
            message = outcome.error or ""
        output: dict = {"logs": outcome.logs or "", "logs_truncated": bool(outcome.logs_truncated)}
        if outcome.error:
            output["error"] = outcome.error
        if outcome.error_trace:
            output["error_trace"] = outcome.error_trace
        if kind == "notebook_task":
            nb: dict = {}
            if outcome.notebook_result is not None:
                nb["result"] = outcome.notebook_result
                nb["truncated"] = bool(outcome.notebook_truncated)
            output["notebook_output"] = nb
        if outcome.task_values:
            with self.lock:
                self.values.setdefault(key, {}).update(outcome.task_values)
        return result, code, message, output, None

    def _run_job(self, key: str, spec: dict, cancel: threading.Event):
        params = {k: str(v) for k, v in (spec.get("job_parameters") or {}).items()}
        try:
            child = self.service.trigger_child(int(spec["job_id"]), params, self.run_id)
        except Exception as exc:
            message = getattr(exc, "message", str(exc))
            return "FAILED", "RESOURCE_NOT_FOUND", message, {"error": message}, None
        child_id = child["run_id"]
        output = {"run_job_output": {"run_id": child_id}}
        canceled = False
        while True:
            doc = self.service.load_run(child_id)
            state = doc["state"]
            if state["life_cycle_state"] in TERMINAL_STATES:
                break
            if cancel.is_set() and not canceled:
                self.orch.cancel(child_id)
                canceled = True
            cancel.wait(0.05) if not cancel.is_set() else time.sleep(0.05)
        result = state.get("result_state")
        message = state.get("state_message") or ""
        if result in SUCCEEDED:
            return "SUCCESS", "SUCCESS", "", output, None
        if result in ("CANCELED", "UPSTREAM_CANCELED"):
            return "CANCELED", "USER_CANCELED", message, output, None
        if result == "TIMEDOUT":
            return "TIMEDOUT", "CANCELED", message, output, None
        output["error"] = f"The triggered run {child_id} ended {state['life_cycle_state']}/{result}: {message}"
        return "FAILED", "RUN_EXECUTION_ERROR", output["error"], output, None

    # ---- the parent's final state ------------------------------------------

    def _roll_up(self, started: int, timeout: int) -> None:
        run = self.run
        with self.lock:
            end = now_ms()
            run["execution_duration"] = end - started
            run["end_time"] = end
            run["run_duration"] = end - run["start_time"]
            reason = self.cancel_reason
            if reason == "shutdown":
                end_as_internal_error(run, "The local workspace server stopped while this run was active; "
                                           "its tasks were killed and it will not resume.")
                self.service.save_run(run, active=False)
                return
            if reason in ("user", "timeout"):
                if reason == "user":
                    result, code, message = "CANCELED", "USER_CANCELED", "Run was cancelled by the user."
                else:
                    result, code = "TIMEDOUT", "CANCELED"
                    message = f"Run timed out after {timeout} seconds."
                run["state"] = {"life_cycle_state": "TERMINATED", "result_state": result,
                                "state_message": message, "user_cancelled_or_timedout": True}
                run["status"] = {"state": "TERMINATED", "termination_details": {
                    "code": code, "type": termination_type(code), "message": message}}
                self.service.save_run(run, active=False)
                return
            order = [t["task_key"] for t in run["tasks"]]
            has_children = {d["task_key"] for t in run["tasks"] for d in t.get("depends_on") or []}
            leaves = [k for k in order if k not in has_children]
            failed = [k for k in order if self.results.get(k) in ("FAILED", "TIMEDOUT")]
            bad_leaf = [k for k in leaves if self.results.get(k) in FAILED + CANCELED]
            if bad_leaf:
                first = failed[0] if failed else bad_leaf[0]
                entry = self.entry(first)
                details = entry.get("status", {}).get("termination_details", {})
                code = details.get("code") or "RUN_EXECUTION_ERROR"
                task_message = entry["state"].get("state_message") or WORKLOAD_FAILED
                message = f"Task {first} failed with message: {task_message.rstrip('.')}."
                if any(self.results.get(k) == "UPSTREAM_FAILED" for k in order):
                    message += " This caused all downstream tasks to get skipped."
                run["state"] = {"life_cycle_state": "INTERNAL_ERROR", "result_state": "FAILED",
                                "state_message": message, "user_cancelled_or_timedout": False}
                run["status"] = {"state": "TERMINATED", "termination_details": {
                    "code": code, "type": termination_type(code), "message": message}}
            elif failed:
                message = f"Some tasks failed ({', '.join(failed)}) but every leaf task succeeded."
                run["state"] = {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS_WITH_FAILURES",
                                "state_message": message, "user_cancelled_or_timedout": False}
                run["status"] = {"state": "TERMINATED", "termination_details": {
                    "code": "SUCCESS_WITH_FAILURES", "type": "SUCCESS", "message": message}}
            else:
                run["state"] = {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS",
                                "state_message": "", "user_cancelled_or_timedout": False}
                run["status"] = {"state": "TERMINATED", "termination_details": {
                    "code": "SUCCESS", "type": "SUCCESS", "message": ""}}
            self.service.save_run(run, active=False)


def _json(value) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)
