"""Fixtures for the local workspace server tests: a server per test, the real
databricks-sdk client, a fast run poller and a scripted task runner."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest
import requests


@pytest.fixture
def ws(tmp_path):
    """A local workspace with the real task executor."""
    from stackci.workspace import LocalWorkspace

    with LocalWorkspace(tmp_path / "data") as server:
        yield server


def client_for(server, **kwargs):
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    kwargs.setdefault("token", server.token)
    kwargs.setdefault("auth_type", "pat")
    return WorkspaceClient(config=Config(host=server.url, retry_timeout_seconds=10, **kwargs))


@pytest.fixture
def w(ws):
    return client_for(ws)


def raw_calls(server):
    """Raw HTTP calls to ``server`` with its token, for shapes the SDK hides: (call, close)."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {server.token}"

    def call(method, path, **kwargs):
        return session.request(method, server.url + path, timeout=10, **kwargs)

    return call, session.close


@pytest.fixture
def api(ws):
    call, close = raw_calls(ws)
    yield call
    close()


def wait_run(w, run_id, timeout=30.0, states=("TERMINATED", "SKIPPED", "INTERNAL_ERROR")):
    """Poll runs/get every 50 ms (the SDK waiter sleeps 1 s and more between polls)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = w.jobs.get_run(run_id)
        if run.state.life_cycle_state.value in states:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not reach {states} within {timeout}s: {run.state}")


def wait_task_state(w, run_id, task_key, state, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = w.jobs.get_run(run_id)
        for t in run.tasks:
            if t.task_key == task_key and t.state.life_cycle_state.value == state:
                return run
        time.sleep(0.05)
    raise AssertionError(f"task {task_key} of run {run_id} never became {state}")


@dataclass
class ScriptedRunner:
    """A stand-in for tasks.run_task driven by the task's spark_python_task parameters.

    ``["ok"]``, ``["fail", "msg"]``, ``["sleep", "secs"]``, ``["value", "k", "v"]``,
    ``["flaky", "n"]`` (fails the first n attempts), ``["echo"]`` (logs the parameters).
    Records every call so tests can check what the orchestrator passed.
    """

    calls: list = field(default_factory=list)
    attempts: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, task, *, resolve_path, work_dir, job_parameters, upstream_values, python, timeout,
                 cancel, env=None):
        from stackci.workspace.tasks import TaskOutcome

        params = list(task.get("spark_python_task", {}).get("parameters") or ["ok"])
        key = task["task_key"]
        with self.lock:
            self.calls.append({"task": task, "job_parameters": dict(job_parameters),
                               "upstream": {k: dict(v) for k, v in upstream_values.items()}, "timeout": timeout})
            self.attempts[key] = self.attempts.get(key, 0) + 1
            attempt = self.attempts[key]
        verb = params[0]
        if verb == "sleep":
            limit = float(params[1])
            if timeout:
                limit = min(limit, timeout)
            if cancel.wait(limit):
                return TaskOutcome("CANCELED", "CANCELED", error="canceled", logs="")
            if timeout and float(params[1]) > timeout:
                return TaskOutcome("TIMEDOUT", "CANCELED", error=f"timed out after {timeout}s", logs="")
            return TaskOutcome("SUCCESS", "SUCCESS", logs="slept")
        if verb == "fail":
            msg = params[1] if len(params) > 1 else "boom"
            return TaskOutcome("FAILED", "RUN_EXECUTION_ERROR", error=f"Exception: {msg}",
                               error_trace=f"Traceback\nException: {msg}", logs="failing\n")
        if verb == "flaky":
            if attempt <= int(params[1]):
                return TaskOutcome("FAILED", "RUN_EXECUTION_ERROR", error=f"Exception: attempt {attempt}", logs="")
            return TaskOutcome("SUCCESS", "SUCCESS", logs=f"attempt {attempt}")
        if verb == "value":
            return TaskOutcome("SUCCESS", "SUCCESS", logs="", task_values={params[1]: params[2]})
        if verb == "echo":
            return TaskOutcome("SUCCESS", "SUCCESS", logs=" ".join(params[1:]))
        return TaskOutcome("SUCCESS", "SUCCESS", logs="ok")


@pytest.fixture
def scripted(tmp_path):
    """(server, client, runner) with the scripted runner instead of real processes."""
    from stackci.workspace import LocalWorkspace

    runner = ScriptedRunner()
    with LocalWorkspace(tmp_path / "data", task_runner=runner) as server:
        yield server, client_for(server), runner


def py_task(key, *params, deps=(), **extra):
    """A spark_python_task dict for the scripted runner."""
    task = {"task_key": key, "spark_python_task": {"python_file": "/Workspace/Shared/x.py",
                                                   "parameters": list(params) or ["ok"]}}
    if deps:
        task["depends_on"] = [d if isinstance(d, dict) else {"task_key": d} for d in deps]
    task.update(extra)
    return task
