"""Storage of the local workspace: state survives restarts (clean and SIGKILL) with the
same data directory, and concurrent requests neither lose writes nor reuse ids."""

from __future__ import annotations

import base64
import io
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from databricks.sdk import errors
from databricks.sdk.service import jobs
from databricks.sdk.service.workspace import ImportFormat, Language

from workspace_support import ScriptedRunner, client_for, py_task, wait_run
from stackci.workspace import LocalWorkspace

STACKCI = str(Path(sys.executable).with_name("stackci"))
PAYLOAD = bytes(range(256)) * 4


def _python_task(key="main"):
    return jobs.Task(task_key=key, spark_python_task=jobs.SparkPythonTask(python_file="/Workspace/Shared/a.py"))


def test_state_survives_a_clean_restart(tmp_path):
    data = tmp_path / "data"
    with LocalWorkspace(data, task_runner=ScriptedRunner(), client_id="sp", client_secret="sec") as server:
        w = client_for(server)
        first_url, token, workspace_id = server.url, server.token, server.workspace_id
        job = w.jobs.create(name="keep-me", tasks=[_python_task()], tags={"team": "ml"})
        deleted = w.jobs.create(name="deleted", tasks=[_python_task()])
        w.jobs.delete(deleted.job_id)
        run_id = w.jobs.run_now(job.job_id).run_id
        finished = wait_run(w, run_id)
        assert finished.state.result_state.value == "SUCCESS"
        w.workspace.mkdirs("/Shared/keep")
        w.workspace.upload("/Shared/keep/blob.bin", io.BytesIO(PAYLOAD), format=ImportFormat.AUTO)
        w.workspace.import_("/Shared/keep/nb", content=base64.b64encode(b"# Databricks notebook source\nx = 1\n")
                            .decode(), format=ImportFormat.SOURCE, language=Language.PYTHON)
        experiment = w.experiments.create_experiment(name="/Shared/keep/exp").experiment_id
        issued = requests.post(server.token_endpoint, data={"grant_type": "client_credentials"},
                               auth=("sp", "sec"), timeout=5).json()["access_token"]
        status_before = w.workspace.get_status("/Shared/keep/nb")

    with LocalWorkspace(data, task_runner=ScriptedRunner(), client_id="sp", client_secret="sec") as server:
        # a generated token and the workspace id are part of the state
        assert server.token == token and server.workspace_id == workspace_id
        w = client_for(server)
        got = w.jobs.get(job.job_id)
        assert got.settings.name == "keep-me" and got.settings.tags == {"team": "ml"}
        assert [j.job_id for j in w.jobs.list()] == [job.job_id]
        runs = list(w.jobs.list_runs(job_id=job.job_id))
        assert [r.run_id for r in runs] == [run_id]
        assert runs[0].state.result_state.value == "SUCCESS"
        # run page URLs point at the server that made them; ids keep counting
        assert w.jobs.get_run(run_id).run_page_url.startswith(first_url)
        new_job = w.jobs.create(name="after-restart", tasks=[_python_task()])
        assert new_job.job_id not in (job.job_id, deleted.job_id)
        assert w.jobs.run_now(new_job.job_id).run_id > run_id
        with w.workspace.download("/Shared/keep/blob.bin") as f:
            assert f.read() == PAYLOAD
        status = w.workspace.get_status("/Shared/keep/nb")
        assert status.object_id == status_before.object_id and status.language == Language.PYTHON
        assert w.experiments.get_experiment(experiment).experiment.name == "/Shared/keep/exp"
        me = requests.get(f"{server.url}/api/2.0/preview/scim/v2/Me",
                          headers={"Authorization": f"Bearer {issued}"}, timeout=5)
        assert me.status_code == 200 and me.json()["userName"] == "sp"


def test_state_survives_sigkill_of_the_serve_command(tmp_path):
    data = tmp_path / "data"

    def start(ready):
        proc = subprocess.Popen([STACKCI, "workspace", "serve", "--data-dir", str(data), "--ready-file", str(ready)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "server never became ready"
            time.sleep(0.05)
        return proc, json.loads(ready.read_text())

    proc, info = start(tmp_path / "ready1.json")
    try:
        server = type("S", (), {"url": info["url"], "token": info["token"]})
        w = client_for(server)
        job = w.jobs.create(name="survives-kill-9", tasks=[_python_task()])
        w.workspace.upload("/Shared/crash.bin", io.BytesIO(PAYLOAD), format=ImportFormat.AUTO)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)

    proc, info2 = start(tmp_path / "ready2.json")
    try:
        assert info2["token"] == info["token"]  # the generated token is kept in the data dir
        server = type("S", (), {"url": info2["url"], "token": info2["token"]})
        w = client_for(server)
        assert w.jobs.get(job.job_id).settings.name == "survives-kill-9"
        with w.workspace.download("/Shared/crash.bin") as f:
            assert f.read() == PAYLOAD
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def _in_threads(n, fn):
    barrier = threading.Barrier(n)
    results: list = [None] * n
    failures: list = []

    def worker(i):
        try:
            barrier.wait(5)
            results[i] = fn(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append((i, exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures
    return results


def test_sixteen_threads_create_jobs_and_import_files_at_once(ws):
    w0 = client_for(ws)
    w0.workspace.mkdirs("/Shared/conc")

    def work(i):
        w = client_for(ws)  # one client (and HTTP session) per thread
        ids = []
        for k in range(4):
            ids.append(w.jobs.create(name=f"conc-{i:02d}-{k}", tasks=[_python_task()]).job_id)
            w.workspace.upload(f"/Shared/conc/f-{i:02d}-{k}.txt", io.BytesIO(f"{i}:{k}".encode()),
                               format=ImportFormat.AUTO)
        w.workspace.mkdirs(f"/Shared/conc/dir-{i:02d}/a/b")
        w.experiments.create_experiment(name=f"/Shared/conc/exp-{i:02d}")
        return ids

    job_ids = [j for ids in _in_threads(16, work) for j in ids]
    assert len(job_ids) == 64 and len(set(job_ids)) == 64
    listed = {j.job_id: j.settings.name for j in w0.jobs.list()}
    assert set(listed) == set(job_ids)
    assert sorted(listed.values()) == sorted(f"conc-{i:02d}-{k}" for i in range(16) for k in range(4))
    objects = list(w0.workspace.list("/Shared/conc"))
    files = [o for o in objects if o.path.rsplit("/", 1)[1].startswith("f-")]
    assert len(files) == 64
    dirs = [o for o in objects if o.path.rsplit("/", 1)[1].startswith("dir-")]
    assert len(dirs) == 16
    object_ids = [o.object_id for o in objects] + [w0.workspace.get_status(f"{d.path}/a/b").object_id for d in dirs]
    assert len(set(object_ids)) == len(object_ids)
    for i, k in ((0, 0), (7, 3), (15, 2)):
        with w0.workspace.download(f"/Shared/conc/f-{i:02d}-{k}.txt") as f:
            assert f.read() == f"{i}:{k}".encode()
    experiments = [e for e in w0.experiments.search_experiments() if e.name.startswith("/Shared/conc/exp-")]
    assert len({e.experiment_id for e in experiments}) == 16


def test_racing_writers_of_the_same_name_get_one_winner(ws):
    client_for(ws).workspace.mkdirs("/Shared/race")

    def import_same(i):
        w = client_for(ws)
        try:
            w.workspace.upload("/Shared/race/one.txt", io.BytesIO(f"writer {i}".encode()), format=ImportFormat.AUTO)
            return "ok"
        except errors.ResourceAlreadyExists:
            return "exists"

    outcomes = _in_threads(16, import_same)
    assert outcomes.count("ok") == 1 and outcomes.count("exists") == 15

    def create_same(i):
        w = client_for(ws)
        try:
            return w.experiments.create_experiment(name="/Shared/race/exp").experiment_id
        except errors.ResourceAlreadyExists:
            return "exists"

    outcomes = _in_threads(16, create_same)
    assert len([o for o in outcomes if o != "exists"]) == 1


def test_concurrent_run_now_with_one_idempotency_token_starts_one_run(tmp_path):
    runner = ScriptedRunner()
    with LocalWorkspace(tmp_path / "data", task_runner=runner) as server:
        w = client_for(server)
        job = w.jobs.create(name="idem", tasks=[jobs.Task.from_dict(py_task("t", "ok"))], max_concurrent_runs=20)

        run_ids = _in_threads(16, lambda i: client_for(server).jobs.run_now(
            job.job_id, idempotency_token="deploy-42").run_id)
        assert len(set(run_ids)) == 1
        wait_run(w, run_ids[0])
        assert [r.run_id for r in w.jobs.list_runs(job_id=job.job_id)] == [run_ids[0]]
        assert len(runner.calls) == 1


def test_only_one_server_per_data_dir(tmp_path):
    from stackci.errors import ConfigError

    with LocalWorkspace(tmp_path / "data"):
        with pytest.raises(ConfigError, match="in use"):
            LocalWorkspace(tmp_path / "data").start()
    with LocalWorkspace(tmp_path / "data") as again:  # released on stop
        assert again.url


def test_stop_ends_the_server_while_a_client_keeps_its_connection(tmp_path):
    server = LocalWorkspace(tmp_path / "data").start()
    kept = requests.Session()                          # a keep-alive connection stays open across stop()
    assert kept.get(f"{server.url}/.well-known/databricks-config", timeout=10).ok
    url, port, serving = server.url, server.port, server._thread
    server.stop()
    assert not serving.is_alive()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{url}/.well-known/databricks-config", timeout=5)
    with pytest.raises(requests.exceptions.ConnectionError):   # the kept connection was ended too
        kept.get(f"{url}/.well-known/databricks-config", timeout=5)
    kept.close()
    with LocalWorkspace(tmp_path / "data", port=port) as again:   # the port and the data are free again
        assert again.url == url
        assert client_for(again).current_user.me().user_name


def test_the_database_is_private_to_its_owner(tmp_path):
    import stat

    with LocalWorkspace(tmp_path / "data") as server:
        client_for(server).jobs.create(name="x")
        db = tmp_path / "data" / "workspace.sqlite3"
        assert stat.S_IMODE(db.stat().st_mode) == 0o600  # it holds the token and issued tokens
        assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700


def test_a_damaged_or_newer_database_is_a_config_error(tmp_path):
    import sqlite3

    from stackci.errors import ConfigError

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "workspace.sqlite3").write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(ConfigError, match="database is unusable") as info:
        LocalWorkspace(damaged).start()
    assert "workspace.sqlite3" in info.value.hint
    assert (damaged / "workspace.sqlite3").read_bytes().startswith(b"this is not")  # left untouched

    newer = tmp_path / "newer"
    with LocalWorkspace(newer):
        pass
    with sqlite3.connect(newer / "workspace.sqlite3") as db:
        db.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(ConfigError, match="schema version 999"):
        LocalWorkspace(newer).start()
    # the lock was released by the failed starts
    (damaged / "workspace.sqlite3").unlink()
    with LocalWorkspace(damaged) as server:
        assert server.url
