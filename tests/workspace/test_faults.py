"""Fault injection: a seeded fraction of requests answers 429/503, drops the connection
or is slowed down; databricks-sdk's own retries ride through it."""

from __future__ import annotations

import base64
import io
import time

import pytest
import requests
from databricks.sdk.service import jobs
from databricks.sdk.service.workspace import ImportFormat

from workspace_support import client_for
from stackci.workspace import FaultPlan, LocalWorkspace
from stackci.workspace.faults import FaultInjector


def _admin(server, method="GET", json=None, token=None):
    return requests.request(method, f"{server.url}/stackci-admin/faults", json=json, timeout=5,
                            headers={"Authorization": f"Bearer {token or server.token}"})


def _task(key="main"):
    return jobs.Task(task_key=key, spark_python_task=jobs.SparkPythonTask(python_file="/Workspace/Shared/a.py"))


def test_sdk_calls_succeed_through_injected_429_and_503(tmp_path):
    plan = {"rate": 0.2, "kinds": ["429", "503"], "seed": 16, "retry_after": 0}  # seed 16: one of each
    with LocalWorkspace(tmp_path / "data", faults=plan) as server:
        w = client_for(server)
        ids = [w.jobs.create(name=f"flaky-{i}", tasks=[_task()]).job_id for i in range(4)]
        assert sorted(j.job_id for j in w.jobs.list()) == sorted(ids)
        for i, job_id in enumerate(ids):
            assert w.jobs.get(job_id).settings.name == f"flaky-{i}"
        w.workspace.mkdirs("/Shared/flaky")
        for i in range(3):
            # import_ (JSON), not upload (multipart): see test_sdk_does_not_retry_multipart_uploads
            w.workspace.import_(f"/Shared/flaky/f{i}.txt", content=base64.b64encode(f"content {i}".encode()).decode(),
                                format=ImportFormat.AUTO)
        assert sorted(o.path for o in w.workspace.list("/Shared/flaky")) == [
            f"/Shared/flaky/f{i}.txt" for i in range(3)]
        with w.workspace.download("/Shared/flaky/f1.txt") as f:
            assert f.read() == b"content 1"

        status = _admin(server).json()
        # faults were really injected, and retried requests had no side effects twice
        assert status["injected"]["429"] >= 1 and status["injected"]["503"] >= 1, status
        assert status["injected_total"] == status["injected"]["429"] + status["injected"]["503"]
        # 15 API calls answered, plus one retry per injected fault
        assert status["matched"] == 15 + status["injected_total"]
        assert len(list(w.jobs.list())) == 4


def test_sdk_does_not_retry_multipart_uploads(ws):
    """A databricks-sdk trap (0.16x): ``w.workspace.upload`` sends multipart form data, which
    its retry loop treats as a non-seekable stream, so one 429 fails the upload at once.
    ``w.workspace.import_`` (base64 JSON) is retried. Deploy code should prefer ``import_``."""
    from databricks.sdk import errors

    w = client_for(ws)
    w.workspace.mkdirs("/Shared/up")
    seeded = {"rate": 0.5, "kinds": ["429"], "seed": 4, "retry_after": 0,  # seed 4: a 429, then none
              "path_regex": r"^/api/2\.0/workspace/import$"}
    _admin(ws, "PUT", json=seeded)
    with pytest.raises(errors.TooManyRequests):
        w.workspace.upload("/Shared/up/a.txt", io.BytesIO(b"a"), format=ImportFormat.AUTO)
    assert _admin(ws).json()["matched"] == 1  # no second attempt

    _admin(ws, "PUT", json=seeded)  # the same sequence again: a 429, then none
    w.workspace.import_("/Shared/up/a.txt", content=base64.b64encode(b"a").decode(), format=ImportFormat.AUTO)
    status = _admin(ws).json()
    assert status["matched"] == 2 and status["injected"]["429"] == 1
    with w.workspace.download("/Shared/up/a.txt") as f:
        assert f.read() == b"a"


def test_the_same_seed_gives_the_same_fault_sequence(tmp_path):
    def sequence(server):
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {server.token}"
        return [session.get(f"{server.url}/api/2.2/jobs/list", timeout=5).status_code for _ in range(40)]

    plan = {"rate": 0.3, "kinds": ["429", "503"], "seed": 99}
    with LocalWorkspace(tmp_path / "a", faults=plan) as server:
        first = sequence(server)
        injected = _admin(server).json()["injected"]
        assert _admin(server, "PUT", json=plan).status_code == 200  # resetting the plan restarts the sequence
        again = sequence(server)
        _admin(server, "PUT", json={**plan, "seed": 100})
        other = sequence(server)
    with LocalWorkspace(tmp_path / "b", faults=FaultPlan(**plan)) as server:  # another server, same seed
        elsewhere = sequence(server)

    assert set(first) == {200, 429, 503}
    assert first == again == elsewhere
    assert other != first
    assert injected["429"] == first.count(429) and injected["503"] == first.count(503)


def test_faults_apply_only_to_matching_paths(ws):
    resp = _admin(ws, "PUT", json={"rate": 1.0, "kinds": ["503"], "path_regex": r"^/api/2\.0/workspace/"})
    assert resp.status_code == 200
    headers = {"Authorization": f"Bearer {ws.token}"}
    for _ in range(5):
        assert requests.get(f"{ws.url}/api/2.2/jobs/list", headers=headers, timeout=5).status_code == 200
        hit = requests.get(f"{ws.url}/api/2.0/workspace/list", params={"path": "/"}, headers=headers, timeout=5)
        assert hit.status_code == 503
        assert hit.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert hit.headers["Retry-After"] == "0"
    # discovery and the admin endpoint itself are never faulted by the default regex
    _admin(ws, "PUT", json={"rate": 1.0, "kinds": ["429"], "retry_after": 1})
    assert requests.get(f"{ws.url}/.well-known/databricks-config", timeout=5).status_code == 200
    throttled = requests.get(f"{ws.url}/api/2.2/jobs/list", headers=headers, timeout=5)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"
    assert throttled.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert _admin(ws).json()["injected"]["429"] == 1
    assert _admin(ws, "DELETE").json()["plan"]["rate"] == 0
    assert requests.get(f"{ws.url}/api/2.2/jobs/list", headers=headers, timeout=5).status_code == 200


def test_dropped_connections(ws):
    _admin(ws, "PUT", json={"rate": 1.0, "kinds": ["drop"], "path_regex": "^/api/2\\.2/jobs/get$"})
    headers = {"Authorization": f"Bearer {ws.token}"}
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{ws.url}/api/2.2/jobs/get", params={"job_id": 1}, headers=headers, timeout=5)
    assert requests.get(f"{ws.url}/api/2.2/jobs/list", headers=headers, timeout=5).status_code == 200
    # the SDK treats a dropped connection as retryable: one drop, then an answer
    w = client_for(ws)
    job = w.jobs.create(name="after-a-drop", tasks=[_task()])
    plan = FaultPlan(rate=0.5, kinds=["drop"], seed=13, path_regex="^/api/2\\.2/jobs/get$")
    expected = FaultInjector(plan)
    assert [expected.draw("/api/2.2/jobs/get") for _ in range(2)] == ["drop", None]  # what seed 13 does
    _admin(ws, "PUT", json=plan.as_dict())
    assert w.jobs.get(job.job_id).settings.name == "after-a-drop"
    assert _admin(ws).json()["injected"]["drop"] == 1


def test_added_latency_still_answers(ws):
    _admin(ws, "PUT", json={"rate": 1.0, "kinds": ["latency"], "latency_ms": 300})
    started = time.monotonic()
    resp = requests.get(f"{ws.url}/api/2.2/jobs/list", headers={"Authorization": f"Bearer {ws.token}"}, timeout=5)
    assert resp.status_code == 200
    assert time.monotonic() - started >= 0.25  # a lower bound: the delay really happened
    assert _admin(ws).json()["injected"]["latency"] == 1


def test_admin_endpoint_needs_the_server_token_and_valid_plans(tmp_path):
    with LocalWorkspace(tmp_path / "d", client_id="sp", client_secret="sec") as server:
        assert requests.get(f"{server.url}/stackci-admin/faults", timeout=5).status_code == 401
        issued = requests.post(server.token_endpoint, data={"grant_type": "client_credentials"},
                               auth=("sp", "sec"), timeout=5).json()["access_token"]
        denied = _admin(server, "PUT", json={"rate": 1.0}, token=issued)
        assert denied.status_code == 403 and denied.json()["error_code"] == "PERMISSION_DENIED"
        for bad in ({"rate": 2}, {"rate": "often"}, {"kinds": ["500"]}, {"kinds": []}, {"path_regex": "("},
                    {"retry_after": -1}, {"latency_ms": 1.5}, {"seed": "abc"}, {"colour": "red"}, [1, 2]):
            resp = _admin(server, "PUT", json=bad)
            assert resp.status_code == 400, bad
            body = resp.json()
            expected = "MALFORMED_REQUEST" if isinstance(bad, list) else "INVALID_PARAMETER_VALUE"
            assert body["error_code"] == expected and body["message"], bad
        assert _admin(server).json()["plan"]["rate"] == 0  # bad plans changed nothing
        ok = _admin(server, "PUT", json={"rate": 0.1, "kinds": "429,drop", "seed": 5})
        assert ok.status_code == 200 and ok.json()["plan"]["kinds"] == ["429", "drop"]


@pytest.mark.parametrize("plan", [{"rate": -0.1}, {"kinds": ["boom"]}, {"path_regex": "[" }])
def test_bad_plans_at_start_are_config_errors(tmp_path, plan):
    from stackci.errors import ConfigError

    with pytest.raises(ConfigError):
        LocalWorkspace(tmp_path / "d", faults=plan)
