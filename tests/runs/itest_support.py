"""Helpers for the integration-test and gc tests: a copy of the example project with one
extra job that can be made slow (or made to wait for another run), views of what the
local workspace holds, the CLI as a subprocess, and a loopback proxy in front of the
local workspace that can lose a response after the workspace acted on the request."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from workspace_views import tree  # noqa: F401 - re-exported to the tests of this folder

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "project"
USER = "local-user@stackci.local"
BUNDLE_ROOT = f"/Workspace/Users/{USER}/.bundle/churn_model"

#: a job next to the example's own: task "prepare", then "wait", which writes the file named by
#: job parameter ``marker``, then waits ``seconds`` or until the file ``wait_for`` exists
SLOW_JOB = """\
resources:
  jobs:
    slow_job:
      name: ${bundle.target}-churn_model-slow-job
      max_concurrent_runs: 1
      trigger:
        periodic:
          interval: 1
          unit: HOURS
        pause_status: UNPAUSED
      parameters:
        - name: marker
          default: ""
        - name: wait_for
          default: ""
        - name: seconds
          default: "120"
      tasks:
        - task_key: prepare
          spark_python_task:
            python_file: ../ci_checks/prepare.py
        - task_key: wait
          depends_on:
            - task_key: prepare
          spark_python_task:
            python_file: ../ci_checks/wait.py
            parameters:
              - "{{job.parameters.marker}}"
              - "{{job.parameters.wait_for}}"
              - "{{job.parameters.seconds}}"
"""

PREPARE = "print('prepared')\n"
WAIT = textwrap.dedent("""\
    import pathlib, sys, time
    marker, wait_for, seconds = sys.argv[1:4]
    if marker:
        pathlib.Path(marker).write_text("started")
    deadline = time.time() + float(seconds)
    while time.time() < deadline:
        if wait_for and pathlib.Path(wait_for).exists():
            print("met", wait_for)
            break
        time.sleep(0.05)
    else:
        if wait_for:
            raise SystemExit(f"{wait_for} never appeared: the other run did not run at the same time")
    """)


def make_project(root: Path) -> Path:
    """A copy of examples/project with the slow job, outside any git repository."""
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", ".databricks",
                                                                 ".stackci"))
    (root / "resources" / "slow-job-resource.yml").write_text(SLOW_JOB)
    (root / "ci_checks").mkdir()
    (root / "ci_checks" / "prepare.py").write_text(PREPARE)
    (root / "ci_checks" / "wait.py").write_text(WAIT)
    return root


def copy_root(target: str, ident: str) -> str:
    return f"{BUNDLE_ROOT}/{target}-ci/{ident}"


# --------------------------------------------------------------------------- workspace views
def jobs_by_name(w) -> dict[str, object]:
    """Every job in the workspace: name → full job, read through the SDK."""
    return {full.settings.name: full for full in (w.jobs.get(j.job_id) for j in w.jobs.list())}



def experiment_exists(w, name: str) -> bool:
    from databricks.sdk import errors

    try:
        exp = w.experiments.get_by_name(name).experiment
    except (errors.NotFound, errors.ResourceDoesNotExist):
        return False
    return exp is not None and exp.lifecycle_stage == "active"


def model_exists(w, full_name: str) -> bool:
    from databricks.sdk import errors

    try:
        w.registered_models.get(full_name)
        return True
    except (errors.NotFound, errors.ResourceDoesNotExist):
        return False


def all_runs(w, job_id: int) -> list:
    return list(w.jobs.list_runs(job_id=job_id))


# --------------------------------------------------------------------------- subprocess
def cli(args: list[str], env: dict, **kwargs) -> subprocess.Popen:
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
            "PYTHONIOENCODING": "utf-8"}
    return subprocess.Popen([sys.executable, "-m", "stackci", *args], env={**base, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for_file(path: Path, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------- proxy
class Proxy:
    """A loopback HTTP proxy in front of the local workspace.

    ``fail(method, path, nth, status, body, after=True)``: the ``nth`` matching request (1-based)
    gets ``status`` with ``body`` (``status=None``: the connection is closed with no answer);
    ``after=True`` forwards it first, so the workspace acts on it and only the answer is lost
    (what a retried request must survive); ``after=False`` answers without forwarding.
    ``rewrite(fn)``: ``fn(method, path, query, doc) -> doc`` may change any JSON answer.
    ``count(method, path)``: how many such requests arrived.
    """

    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.host, self.port = parsed.hostname, parsed.port
        self.rules: list[dict] = []
        self.rewriters: list = []
        self.seen: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                with proxy.lock:
                    n = proxy.seen.get((self.command, path), 0) + 1
                    proxy.seen[(self.command, path)] = n
                rule = next((r for r in proxy.rules if r["method"] == self.command and r["path"] == path
                             and r["nth"] == n), None)
                answer = None
                if rule is None or rule["after"]:
                    answer = proxy._forward(self.command, self.path, self.headers, body)
                if rule is not None:
                    if rule["status"] is None:
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    answer = (rule["status"], {"Content-Type": "application/json", "Retry-After": "0"},
                              json.dumps(rule["body"]).encode())
                status, headers, data = answer
                if proxy.rewriters and headers.get("Content-Type", "").startswith("application/json") and data:
                    doc = json.loads(data)
                    for fn in proxy.rewriters:
                        doc = fn(self.command, path, urllib.parse.parse_qs(query), doc)
                    data = json.dumps(doc).encode()
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _forward(self, method, path, headers, body):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection", "content-length")}
            sent["Content-Length"] = str(len(body))
            conn.request(method, path, body=body, headers=sent)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k: v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def fail(self, method: str, path: str, nth: int, status: int | None, body: dict | None = None,
             after: bool = True) -> None:
        self.rules.append({"method": method, "path": path, "nth": nth, "status": status, "body": body or {},
                           "after": after})

    def rewrite(self, fn) -> None:
        self.rewriters.append(fn)

    def count(self, method: str, path: str) -> int:
        return self.seen.get((method, path), 0)

    def __enter__(self) -> "Proxy":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
