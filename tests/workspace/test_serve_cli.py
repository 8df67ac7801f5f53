"""``stackci workspace serve`` as a real subprocess: ready file, databricks-sdk calls,
clean shutdown on SIGTERM/SIGINT, and one-line exit-2 errors for bad input."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.core import Config

STACKCI = str(Path(sys.executable).with_name("stackci"))


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STACKCI_", "DATABRICKS_", "GITHUB_", "TF_BUILD"))}
    env.update(extra)
    return env


class Served:
    def __init__(self, proc: subprocess.Popen, ready: Path):
        self.proc = proc
        self.ready = ready
        self.info: dict = {}

    def wait_ready(self, timeout=20.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready.exists():
                self.info = json.loads(self.ready.read_text())
                return self.info
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise AssertionError(f"server exited {self.proc.returncode} before ready: {err}")
            time.sleep(0.05)
        raise AssertionError("the ready file never appeared")

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def client(self, **kwargs) -> WorkspaceClient:
        return WorkspaceClient(config=Config(host=self.info["url"], token=self.info["token"], auth_type="pat",
                                             retry_timeout_seconds=10, **kwargs))


@pytest.fixture
def serve(tmp_path):
    started: list[Served] = []

    def start(*args, ready=None, env=None) -> Served:
        ready = ready or tmp_path / f"ready-{len(started)}.json"
        proc = subprocess.Popen([STACKCI, "workspace", "serve", "--ready-file", str(ready), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=_env(**(env or {})))
        served = Served(proc, ready)
        started.append(served)
        return served

    yield start
    for served in started:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.communicate()


def run(*args, env=None, timeout=30) -> subprocess.CompletedProcess:
    return subprocess.run([STACKCI, "workspace", "serve", *args], capture_output=True, text=True,
                          timeout=timeout, env=_env(**(env or {})))


def test_serve_until_sigterm_with_sdk_calls(serve, tmp_path):
    served = serve("--data-dir", str(tmp_path / "data"))
    info = served.wait_ready()
    assert info["pid"] == served.proc.pid
    assert info["url"].startswith("http://127.0.0.1:")
    assert info["workspace_id"].isdigit()
    assert oct(served.ready.stat().st_mode & 0o777) == oct(0o600)  # it holds a token

    w = served.client()
    assert w.current_user.me().user_name
    job = w.jobs.create(name="from-a-subprocess-server")
    assert w.jobs.get(job.job_id).settings.name == "from-a-subprocess-server"
    w.workspace.mkdirs("/Shared/demo")
    assert [o.path for o in w.workspace.list("/Shared")] == ["/Shared/demo"]

    code, out, err = served.stop(signal.SIGTERM)
    assert code == 0, err
    assert f"url={info['url']}" in out.splitlines()
    assert f"token={info['token']}" in out.splitlines()
    assert not served.ready.exists()
    assert "Traceback" not in err
    with pytest.raises(requests.ConnectionError):
        requests.get(info["url"] + "/.well-known/databricks-config", timeout=2)


def test_sigint_also_shuts_down_cleanly_and_removes_a_temporary_data_dir(serve):
    served = serve()
    info = served.wait_ready()
    resp = requests.get(info["url"] + "/api/2.0/preview/scim/v2/Me",
                        headers={"Authorization": f"Bearer {info['token']}"}, timeout=5)
    assert resp.status_code == 200
    data_dir = Path(info["data_dir"])
    assert (data_dir / "workspace.sqlite3").exists()
    code, out, err = served.stop(signal.SIGINT)
    assert code == 0, err
    assert not served.ready.exists()
    assert not data_dir.exists()  # no --data-dir: the temporary one is removed


def test_token_port_and_options_from_env_vars(serve, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    served = serve(env={"STACKCI_WORKSPACE_TOKEN": "dapi-env-token", "STACKCI_WORKSPACE_PORT": str(port),
                        "STACKCI_WORKSPACE_DATA_DIR": str(tmp_path / "envdata")})
    info = served.wait_ready()
    assert info["token"] == "dapi-env-token"
    assert info["url"] == f"http://127.0.0.1:{port}"
    assert (tmp_path / "envdata").is_dir()
    assert served.client().current_user.me().user_name
    bad = requests.get(info["url"] + "/api/2.2/jobs/list", headers={"Authorization": "Bearer other"}, timeout=5)
    assert bad.status_code == 401
    assert served.stop()[0] == 0


def test_a_stale_ready_file_is_replaced_not_trusted(serve, tmp_path):
    ready = tmp_path / "ready.json"
    ready.write_text(json.dumps({"url": "http://127.0.0.1:1", "token": "stale", "pid": 1}))
    served = serve(ready=ready)
    info = served.wait_ready()
    # wait_ready may have raced with the stale file: read again once the server is up
    deadline = time.monotonic() + 10
    while info.get("token") == "stale" and time.monotonic() < deadline:
        time.sleep(0.05)
        info = json.loads(ready.read_text()) if ready.exists() else info
    assert info["pid"] == served.proc.pid and info["token"] != "stale"
    assert served.stop()[0] == 0
    assert not ready.exists()


def test_second_server_on_the_same_port_fails_with_one_line(serve, tmp_path):
    served = serve()
    info = served.wait_ready()
    port = info["url"].rsplit(":", 1)[1]
    result = run("--port", port)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0] and "--port" in lines[0]
    assert result.stdout == ""
    assert served.stop()[0] == 0


@pytest.mark.parametrize("args, env, needle", [
    (["--host", "0.0.0.0"], {}, "refusing to bind 0.0.0.0"),
    (["--host", "192.0.2.10"], {}, "--allow-remote-bind"),
    (["--host", "example.com"], {}, "refusing to bind example.com"),
    (["--port", "70000"], {}, "--port"),
    (["--port", "http"], {}, "--port"),
    ([], {"STACKCI_WORKSPACE_PORT": "-1"}, "--port"),
    (["--token", "has space"], {}, "token"),
    (["--client-id", "sp"], {}, "--client-secret"),
    (["--fault-rate", "1.5"], {}, "fault rate"),
    (["--fault-rate", "lots"], {}, "--fault-rate"),
    (["--fault-kinds", "429,500"], {}, "unknown fault kinds"),
    (["--fault-path", "(unclosed"], {}, "fault path regex"),
    (["--fault-retry-after", "-1"], {}, "retry_after"),
    (["--fault-seed", "x"], {}, "--fault-seed"),
    (["--no-such-option"], {}, "no-such-option"),
])
def test_bad_input_is_one_line_exit_2(args, env, needle):
    result = run(*args, env=env)
    assert result.returncode == 2, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert needle in lines[0]
    assert result.stdout == ""  # nothing was started, no URL or token printed


def test_unwritable_ready_file_fails_before_starting(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    for ready in (not_a_dir / "ready.json", tmp_path / "missing" / "ready.json", tmp_path):
        result = run("--ready-file", str(ready), "--data-dir", str(tmp_path / "data"))
        assert result.returncode == 2, result
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "ready-file" in lines[0].replace(" ", "-"), result.stderr
        assert result.stdout == ""
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        result = run("--ready-file", str(locked / "ready.json"))
        assert result.returncode == 2 and "ready file" in result.stderr


def test_unusable_data_dir_is_one_line_exit_2(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = run("--data-dir", str(not_a_dir / "sub"))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "data directory" in lines[0], result.stderr


def test_a_data_dir_in_use_by_a_running_server_is_refused(serve, tmp_path):
    served = serve("--data-dir", str(tmp_path / "shared"))
    served.wait_ready()
    result = run("--data-dir", str(tmp_path / "shared"))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "in use" in lines[0], result.stderr
    assert served.stop()[0] == 0


def test_faults_from_the_command_line_reach_the_admin_endpoint(serve):
    served = serve("--fault-rate", "0.5", "--fault-kinds", "503", "--fault-seed", "7", "--fault-retry-after", "0")
    info = served.wait_ready()
    status = requests.get(info["url"] + "/stackci-admin/faults",
                          headers={"Authorization": f"Bearer {info['token']}"}, timeout=5).json()
    assert status["plan"]["rate"] == 0.5 and status["plan"]["kinds"] == ["503"] and status["plan"]["seed"] == 7
    codes = [requests.get(info["url"] + "/api/2.2/jobs/list", headers={"Authorization": f"Bearer {info['token']}"},
                          timeout=5).status_code for _ in range(20)]
    assert set(codes) == {200, 503}
    assert served.stop()[0] == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its reaper counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def test_sigterm_with_an_active_run_kills_its_task_and_the_run_ends_after_restart(serve, tmp_path):
    import io

    from databricks.sdk.service import jobs
    from databricks.sdk.service.workspace import ImportFormat

    data = tmp_path / "data"
    pid_file = tmp_path / "task.pid"
    served = serve("--data-dir", str(data))
    served.wait_ready()
    w = served.client()
    w.workspace.upload("/Shared/sleepy.py", io.BytesIO(
        b"import os, sys, time\nopen(sys.argv[1], 'w').write(str(os.getpid()))\ntime.sleep(120)\n"),
        format=ImportFormat.AUTO)
    job = w.jobs.create(name="sleepy", tasks=[jobs.Task(task_key="t", spark_python_task=jobs.SparkPythonTask(
        python_file="/Workspace/Shared/sleepy.py", parameters=[str(pid_file)]))])
    run_id = w.jobs.run_now(job.job_id).run_id
    deadline = time.monotonic() + 20
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    task_pid = int(pid_file.read_text())
    assert _alive(task_pid)

    code, _, err = served.stop(signal.SIGTERM)
    assert code == 0, err
    deadline = time.monotonic() + 5
    while _alive(task_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(task_pid), "the task process outlived the server"

    again = serve("--data-dir", str(data))
    again.wait_ready()
    run = again.client().jobs.get_run(run_id)
    assert run.state.life_cycle_state.value in ("TERMINATED", "INTERNAL_ERROR")
    assert run.state.result_state is not None and run.state.result_state.value != "SUCCESS"
    assert again.stop()[0] == 0


def test_oauth_m2m_against_the_serve_command_configured_by_env(serve):
    secret = "m2m-secret-from-env"
    served = serve(env={"STACKCI_WORKSPACE_CLIENT_ID": "ci-sp", "STACKCI_WORKSPACE_CLIENT_SECRET": secret,
                        "STACKCI_WORKSPACE_OIDC_ISSUERS": "https://a.example https://b.example"})
    info = served.wait_ready()
    w = WorkspaceClient(config=Config(host=info["url"], client_id="ci-sp", client_secret=secret,
                                      auth_type="oauth-m2m", retry_timeout_seconds=10))
    assert w.current_user.me().user_name == "ci-sp"
    # both issuers from the space-separated env var are trusted by the token exchange
    import base64

    def jwt(iss):
        part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
        claims = {"iss": iss, "aud": info["url"] + "/oidc/v1/token", "sub": "x", "exp": int(time.time()) + 60}
        return f"{part({'alg': 'RS256'})}.{part(claims)}.sig"

    for iss, status in (("https://a.example", 200), ("https://b.example", 200), ("https://c.example", 400)):
        resp = requests.post(info["url"] + "/oidc/v1/token", timeout=5, data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "client_id": "ci-sp",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "subject_token": jwt(iss)})
        assert resp.status_code == status, (iss, resp.text)
    code, out, err = served.stop()
    assert code == 0
    assert secret not in out and secret not in err
