"""Jobs CRUD, pagination and bad input, through databricks-sdk and raw HTTP."""

from __future__ import annotations

import pytest
from databricks.sdk import errors
from databricks.sdk.service import jobs

from workspace_support import py_task


def _task(key="main", **kw):
    return jobs.Task(task_key=key, spark_python_task=jobs.SparkPythonTask(python_file="/Workspace/Shared/a.py"), **kw)


def test_create_get_reset_update_delete(w):
    created = w.jobs.create(name="train", tasks=[_task("a"), _task("b", depends_on=[jobs.TaskDependency("a")])],
                            parameters=[jobs.JobParameterDefinition(name="alpha", default="0.5")],
                            tags={"team": "ml"}, max_concurrent_runs=2)
    job = w.jobs.get(created.job_id)
    assert job.job_id == created.job_id
    assert job.settings.name == "train"
    assert [t.task_key for t in job.settings.tasks] == ["a", "b"]
    assert job.settings.max_concurrent_runs == 2
    assert job.creator_user_name == w.current_user.me().user_name

    w.jobs.reset(created.job_id, new_settings=jobs.JobSettings(name="renamed", tasks=[_task("only")]))
    job = w.jobs.get(created.job_id)
    assert job.settings.name == "renamed"
    assert [t.task_key for t in job.settings.tasks] == ["only"]
    assert not job.settings.tags

    # update merges tasks by task_key and applies fields_to_remove
    w.jobs.update(created.job_id, new_settings=jobs.JobSettings(
        tags={"x": "1"}, tasks=[_task("extra"), _task("only", description="changed")]))
    job = w.jobs.get(created.job_id)
    assert [t.task_key for t in job.settings.tasks] == ["only", "extra"]
    assert job.settings.tasks[0].description == "changed"
    assert job.settings.tags == {"x": "1"}
    w.jobs.update(created.job_id, fields_to_remove=["tags", "tasks/extra"])
    job = w.jobs.get(created.job_id)
    assert [t.task_key for t in job.settings.tasks] == ["only"]
    assert not job.settings.tags

    w.jobs.delete(created.job_id)
    with pytest.raises(errors.ResourceDoesNotExist):
        w.jobs.get(created.job_id)


def test_list_pages_over_more_than_100_jobs(w, api):
    ids = {w.jobs.create(name=f"job-{i:03d}", tasks=[_task()]).job_id for i in range(105)}
    listed = list(w.jobs.list(limit=100))
    assert {j.job_id for j in listed} == ids
    assert len(listed) == 105

    first = api("GET", "/api/2.2/jobs/list", params={"limit": 100}).json()
    assert len(first["jobs"]) == 100 and first["has_more"] is True
    assert "tasks" not in first["jobs"][0]["settings"]
    last = api("GET", "/api/2.2/jobs/list", params={"limit": 100, "page_token": first["next_page_token"]}).json()
    assert len(last["jobs"]) == 5 and last["has_more"] is False
    assert "next_page_token" not in last  # omitted on the last page, never ""

    by_name = list(w.jobs.list(name="JOB-007"))  # exact, case-insensitive
    assert [j.settings.name for j in by_name] == ["job-007"]
    expanded = list(w.jobs.list(name="job-007", expand_tasks=True))
    assert expanded[0].settings.tasks[0].task_key == "main"

    too_many = api("GET", "/api/2.1/jobs/list", params={"limit": 101})
    assert too_many.status_code == 400
    assert too_many.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_api_21_and_22_are_the_same_service(api):
    created = api("POST", "/api/2.1/jobs/create", json={"name": "old-client", "tasks": [
        {"task_key": "t", "notebook_task": {"notebook_path": "/Workspace/Shared/nb"}}]}).json()
    got = api("GET", "/api/2.2/jobs/get", params={"job_id": created["job_id"]}).json()
    assert got["settings"]["name"] == "old-client"
    assert got["settings"]["tasks"][0]["run_if"] == "ALL_SUCCESS"


@pytest.mark.parametrize("path, body, status, code", [
    ("/api/2.2/jobs/create", b"{not json", 400, "MALFORMED_REQUEST"),
    ("/api/2.2/jobs/create", b"[1, 2]", 400, "MALFORMED_REQUEST"),
    ("/api/2.2/jobs/create", {"name": 5}, 400, "MALFORMED_REQUEST"),
    ("/api/2.2/jobs/create", {"tasks": {"task_key": "a"}}, 400, "MALFORMED_REQUEST"),
    ("/api/2.2/jobs/create", {"max_concurrent_runs": "many"}, 400, "MALFORMED_REQUEST"),
    ("/api/2.2/jobs/create", {"tasks": [{"spark_python_task": {"python_file": "/x.py"}}]}, 400,
     "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/create", {"tasks": [{"task_key": "a"}]}, 400, "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/create", {"tasks": [{"task_key": "a", "spark_python_task": {}}]}, 400,
     "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/create", {"tasks": [py_task("a", deps=["b"])]}, 400, "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/create", {"tasks": [py_task("a", deps=["b"]), py_task("b", deps=["a"])]}, 400,
     "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/create", {"tasks": [py_task("a"), py_task("a")]}, 400, "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/create", {"tasks": [py_task("a", run_if="SOMETIMES")]}, 400, "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/reset", {"job_id": 1}, 400, "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/reset", {"job_id": 1, "new_settings": {}}, 400, "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/delete", {}, 400, "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/delete", {"job_id": "abc"}, 400, "MALFORMED_REQUEST"),
    ("/api/2.2/jobs/delete", {"job_id": 42}, 400, "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/run-now", {"job_id": 42}, 400, "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/run-now", {}, 400, "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/runs/submit", {"run_name": "x"}, 400, "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/runs/submit", {"tasks": [py_task("a")], "idempotency_token": "x" * 65}, 400,
     "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/runs/cancel", {"run_id": 9}, 400, "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/runs/cancel-all", {}, 400, "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/runs/delete", {"run_id": 9}, 400, "INVALID_PARAMETER_VALUE"),
])
def test_bad_input_gets_databricks_errors(api, path, body, status, code):
    if isinstance(body, bytes):
        resp = api("POST", path, data=body, headers={"Content-Type": "application/json"})
    else:
        resp = api("POST", path, json=body)
    assert resp.status_code == status, resp.text
    doc = resp.json()
    assert doc["error_code"] == code
    assert isinstance(doc["message"], str) and doc["message"]
    assert "Traceback" not in resp.text


@pytest.mark.parametrize("path, params, code", [
    ("/api/2.2/jobs/get", {}, "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/get", {"job_id": "x"}, "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/get", {"job_id": "7"}, "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/runs/get", {"run_id": "7"}, "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/runs/get-output", {"run_id": "7"}, "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/list", {"page_token": "garbage!"}, "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/runs/list", {"limit": "26"}, "INVALID_PARAMETER_VALUE"),
    ("/api/2.2/jobs/runs/list", {"active_only": "true", "completed_only": "true"}, "INVALID_PARAMETER_VALUE"),
])
def test_bad_queries(api, path, params, code):
    resp = api("GET", path, params=params)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error_code"] == code


def test_unknown_ids_raise_not_found_in_the_sdk(w):
    # the SDK maps the service's 400 "Job <id> does not exist." to ResourceDoesNotExist
    with pytest.raises(errors.ResourceDoesNotExist):
        w.jobs.get(123)
    with pytest.raises(errors.ResourceDoesNotExist):
        w.jobs.get_run(456)
    with pytest.raises(errors.InvalidParameterValue):
        w.jobs.run_now(123)


def test_unknown_endpoint_and_method(api):
    resp = api("GET", "/api/2.0/nothing/here")
    assert resp.status_code == 404 and resp.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    resp = api("GET", "/api/2.2/jobs/create")
    assert resp.status_code == 405 and "error_code" in resp.json()


def test_every_api_call_needs_a_token(ws):
    import requests

    from workspace_support import client_for

    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        resp = requests.get(f"{ws.url}/api/2.2/jobs/list", headers=headers, timeout=5)
        assert resp.status_code == 401
        assert resp.json()["error_code"] == "UNAUTHENTICATED"
    bad = client_for(ws, token="not-the-token")
    with pytest.raises(errors.Unauthenticated):
        list(bad.jobs.list())
    # discovery is public, as on a real workspace
    meta = requests.get(f"{ws.url}/.well-known/databricks-config", timeout=5).json()
    assert meta == {"oidc_endpoint": f"{ws.url}/oidc", "workspace_id": ws.workspace_id}
    assert meta["workspace_id"].isdigit()


def test_scim_me_has_org_id_header(ws, api):
    resp = api("GET", "/api/2.0/preview/scim/v2/Me")
    assert resp.status_code == 200
    assert resp.headers["X-Databricks-Org-Id"] == ws.workspace_id
    assert resp.json()["userName"] == ws.user_name


def test_a_client_that_waits_for_100_continue_gets_it_before_it_sends_the_body(ws):
    import json
    import socket
    import urllib.parse

    body = json.dumps({"name": "expect-100"}).encode()
    url = urllib.parse.urlsplit(ws.url)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(f"POST /api/2.2/jobs/create HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {ws.token}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
                     .encode())
        first = sock.recv(4096)              # a server that buffered it would leave this waiting (timeout)
        assert first.startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(body)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    head, _, doc = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert "job_id" in json.loads(doc)


def test_a_client_that_goes_away_mid_answer_or_while_idle_leaves_no_traceback(ws, monkeypatch):
    import socket
    import sys
    import threading
    import urllib.parse

    from stackci.workspace import server as srv

    escaped = []      # what escaped a request handler: socketserver prints it to stderr with a traceback
    ended = threading.Semaphore(0)
    close = srv._Server.shutdown_request

    def shutdown_request(self, request):                # the last step of every connection's thread
        close(self, request)
        ended.release()

    monkeypatch.setattr(srv._Server, "handle_error", lambda self, request, address: escaped.append(sys.exc_info()[1]))
    monkeypatch.setattr(srv._Server, "shutdown_request", shutdown_request)
    url = urllib.parse.urlsplit(ws.url)
    request = f"GET /.well-known/databricks-config HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode()
    for _ in range(5):
        with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")   # close with a reset
            sock.sendall(request * 50)                  # 50 answers it will never read
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(request)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")   # and one idle, kept alive
    assert all(ended.acquire(timeout=10) for _ in range(6))
    assert escaped == []
