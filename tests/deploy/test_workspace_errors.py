"""A workspace that cannot be reached, a host that is not a URL, credentials the workspace rejects and
permissions it refuses: one line saying what is wrong, exit 2 within seconds, no traceback, no raw SDK
log line, nothing changed. (Through the real databricks-sdk, against the local workspace, a closed
loopback port, and small loopback servers that answer 403 or refuse one request.)"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deploy_support import USER, jobs_by_name, read_state, tree  # type: ignore[import-not-found]


@pytest.fixture
def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return port          # nothing listens there any more: connections are refused


@pytest.fixture
def quick_reach(monkeypatch):
    monkeypatch.setattr("stackci.dbx.REACH_SECONDS", 1.5)


def no_raw_sdk_lines(result) -> None:
    assert "Failed to automatically resolve" not in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


@pytest.mark.parametrize("command", ["deploy", "plan", "destroy"])
def test_an_unreachable_host_is_a_one_line_error_within_seconds(run_cli, small, closed_port, quick_reach, command):
    host = f"http://127.0.0.1:{closed_port}"
    started = time.monotonic()
    result = run_cli([command, "-t", "staging", "--project", str(small), "--host", host],
                     env={"DATABRICKS_TOKEN": "dapi-x", "DATABRICKS_AUTH_TYPE": "pat", "DATABRICKS_HOST": ""})
    assert time.monotonic() - started < 60          # not the SDK's 5-minute retry budget (twice)
    assert result.code == 2, result.stderr
    [error] = result.errors()
    assert f"cannot reach the workspace {host}: connection refused" in error.data
    assert "needs the current user" not in error.data and "file" not in error.properties
    assert f"reaching {host}: no answer yet (connection refused); trying again" in result.stderr   # progress
    no_raw_sdk_lines(result)


@pytest.mark.parametrize("host, why", [
    ("not-a-url", "a bare word is not a workspace host"),
    ("ftp://x", "the scheme must be https:// (or http:// for a local workspace), not ftp://"),
    ("https://adb-1.azuredatabricks.net/some/path", "it must be the scheme and host only"),
    ("https://adb-1.azuredatabricks.net:99999", "is not a workspace URL"),
])
def test_a_host_that_is_not_a_url_is_refused_before_any_request(run_cli, small, env, requests_counter, host, why):
    requests_counter.start(r".")
    for command in ("deploy", "plan"):
        result = run_cli([command, "-t", "staging", "--project", str(small)],
                         env={**env, "STACKCI_HOST": host})
        assert result.code == 2, result.stderr
        [error] = result.errors()
        assert f"--host {host!r} is not a workspace URL" in error.data and why in error.data
        no_raw_sdk_lines(result)
    assert requests_counter.stop() == 0


def test_a_bundle_host_that_is_not_a_url_names_the_target(run_cli, small, env):
    (small / "databricks.yml").write_text((small / "databricks.yml").read_text().replace(
        "https://adb-2222222222222222.12.azuredatabricks.net", "ftp://adb-2.example"))
    result = run_cli(["deploy", "-t", "staging", "--project", str(small)],
                     env={**env, "STACKCI_HOST": "", "DATABRICKS_HOST": ""})
    assert result.code == 2, result.stderr
    [error] = result.errors()
    assert "workspace.host of target staging 'ftp://adb-2.example' is not a workspace URL" in error.data


def test_a_wrong_token_with_user_is_a_configuration_error_and_nothing_changes(run_cli, small, env, w):
    result = run_cli(["deploy", "-t", "staging", "--project", str(small), "--user", "me@example.com"],
                     env={**env, "DATABRICKS_TOKEN": "dapi-wrong"})
    assert result.code == 2, result.stderr
    [error] = result.errors()
    assert f"the workspace {env['STACKCI_HOST']} rejected the credentials (auth type pat, 401" in error.data
    assert "DATABRICKS_TOKEN" in error.data
    no_raw_sdk_lines(result)
    assert jobs_by_name(w) == {} and tree(w, f"/Workspace/Users/{USER}") == {}


def test_a_wrong_token_without_user_is_not_blamed_on_the_root_path(run_cli, small, env):
    result = run_cli(["plan", "-t", "staging", "--project", str(small)], env={**env, "DATABRICKS_TOKEN": "dapi-wrong"})
    assert result.code == 2, result.stderr
    [error] = result.errors()
    assert "rejected the credentials" in error.data
    assert "needs the current user" not in error.data and "file" not in error.properties


def test_a_databricks_host_of_another_workspace_is_not_blamed_on_the_root_path(run_cli, small, env):
    result = run_cli(["deploy", "-t", "staging", "--project", str(small)],
                     env={**env, "STACKCI_HOST": "", "DATABRICKS_HOST": "https://adb-9.azuredatabricks.net"})
    assert result.code == 2, result.stderr
    [error] = result.errors()
    assert error.data.startswith("DATABRICKS_HOST is https://adb-9.azuredatabricks.net but target staging deploys")
    assert "file" not in error.properties


def test_run_job_without_any_host_says_the_host_is_missing(run_cli):
    result = run_cli(["run-job", "--job-id", "5"], env={"DATABRICKS_HOST": "", "STACKCI_HOST": "",
                                                         "DATABRICKS_TOKEN": "dapi-x", "HOME": "/nonexistent"})
    assert result.code == 2, result.stderr
    [error] = result.errors()
    assert error.data.startswith("no workspace to talk to: no --host, no DATABRICKS_HOST")
    assert "default credentials" not in error.data


class _Denying(BaseHTTPRequestHandler):
    """A workspace whose every API answer is 403 PERMISSION_DENIED (as for an identity without access)."""

    def log_message(self, format, *args):  # noqa: A002
        pass

    well_known = 404        # the discovery document's answer

    def do_GET(self):
        if self.path.startswith("/.well-known/"):
            body = b"upstream connect error" if self.well_known >= 500 else b""
            self.send_response(self.well_known)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        body = json.dumps({"error_code": "PERMISSION_DENIED", "message": "User is not allowed to use this workspace"})
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_POST = do_GET


class _DenyingBehindABrokenGateway(_Denying):
    well_known = 502


@pytest.mark.parametrize("handler", [_Denying, _DenyingBehindABrokenGateway])
def test_a_refused_permission_before_any_change_is_a_configuration_error(run_cli, small, handler, caplog):
    # (a discovery document that fails with 502 is the SDK's warning, with the body it got: not shown)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = run_cli(["deploy", "-t", "staging", "--project", str(small), "--user", USER],
                         env={"STACKCI_HOST": url, "DATABRICKS_HOST": "", "DATABRICKS_TOKEN": "dapi-x",
                              "DATABRICKS_AUTH_TYPE": "pat"})
    finally:
        server.shutdown()
        server.server_close()
    assert result.code == 2, result.stderr
    [error] = result.errors()
    assert f"the workspace {url} refused POST /api/2.0/workspace/" in error.data      # taking the lock
    assert "403 PERMISSION_DENIED: User is not allowed to use this workspace" in error.data
    assert "nothing was changed" in error.data
    no_raw_sdk_lines(result)
    assert "upstream connect error" not in result.stderr + result.stdout
    assert not [r for r in caplog.records if "upstream connect error" in r.getMessage()]   # not even logged


def test_a_permission_refused_after_changes_stays_a_failed_deploy_with_its_context(run_cli, small, env, ws, w):
    from refusing_proxy import RefusingProxy  # type: ignore[import-not-found]

    proxy = RefusingProxy(ws.url, lambda method, path, doc: (403, "PERMISSION_DENIED", "not allowed to create jobs")
                          if method == "POST" and path.endswith("/jobs/create") else None)
    try:
        result = run_cli(["deploy", "-t", "staging", "--project", str(small)],
                         env={**env, "STACKCI_HOST": proxy.url, "DATABRICKS_HOST": ""})
    finally:
        proxy.close()
    assert result.code == 1, result.stderr      # files were uploaded: not "nothing changed"
    [error] = result.errors()
    assert error.data.startswith("jobs.a: create failed: PERMISSION_DENIED")
    state = read_state(w, f"/Workspace/Users/{USER}/.bundle/small/staging")
    assert state is not None and state["files"] and "experiments" in state["resources"]
    state_dir = f"/Workspace/Users/{USER}/.bundle/small/staging/state"
    assert tree(w, state_dir) == {f"{state_dir}/deployment.json": "FILE"}           # the lock was released
