"""Deploys that meet trouble: injected 429/503/dropped connections, SIGKILL at random
points, SIGTERM, and two deploys racing for one target."""

from __future__ import annotations

import json
import os
import random
import signal
import textwrap
import time

import pytest

from deploy_support import (SMALL_BUNDLE, USER, cli_subprocess, jobs_by_name, read_state,  # type: ignore
                            remote_text, sha, tree)
from killproxy import KillPoint, KillProxy  # type: ignore

ROOT = f"/Workspace/Users/{USER}/.bundle"


def expected_view(plan: dict, project) -> tuple[set, dict]:
    """(job names, {remote file path: local text}) that the plan says the target must hold."""
    jobs = {r["name"] for r in plan["resources"] if r["kind"] == "jobs" and r["action"] != "delete"}
    files = {f["remote"]: (project / f["path"]).read_text() for f in plan["files"]["upload"]}
    return jobs, files


def assert_workspace_matches(w, root_path: str, jobs: set, files: dict) -> None:
    held = jobs_by_name(w)
    assert {name: len(v) for name, v in held.items()} == {name: 1 for name in jobs}, "duplicate or orphaned job"
    state = read_state(w, root_path)
    recorded = {e["id"] for e in state["resources"].get("jobs", {}).values()}
    assert recorded == {v[0].job_id for v in held.values()}
    remote = {p for p, kind in tree(w, f"{root_path}/files").items() if kind != "DIRECTORY"}
    assert remote == set(files)
    for path, text in files.items():
        assert remote_text(w, path).rstrip("\n") == text.rstrip("\n"), path
    assert state["pending"] == {} and state["deployment"]["status"] == "complete"
    assert f"{root_path}/state/deploy.lock" not in tree(w, f"{root_path}/state")


def test_deploy_under_injected_faults_ends_in_the_planned_state(deploy, w, ws, project):
    plan = deploy("-o", "json", command="plan", platform="local")
    assert plan.code == 0
    jobs, files = expected_view(json.loads(plan.stdout), project)
    ws.set_faults({"rate": 0.2, "kinds": ["429", "503", "drop"], "seed": 11, "retry_after": 0})
    result = deploy()
    status = ws.faults.status()
    ws.set_faults(None)
    assert result.code == 0, result.stderr
    assert all(status["injected"][k] >= 2 for k in ("429", "503", "drop")), status   # faults really happened
    assert "4 created, 0 changed, 0 deleted, 0 unchanged" in result.stderr
    assert_workspace_matches(w, f"{ROOT}/churn_model/staging", jobs, files)
    assert w.experiments.get_by_name("/Shared/staging-churn_model-experiment").experiment.lifecycle_stage == "active"
    # and the state says so: the next deploy has nothing to do
    again = deploy()
    assert "0 created, 0 changed, 0 deleted, 4 unchanged" in again.stderr
    assert again.outputs["files-uploaded"] == "0"


# ------------------------------------------------------------------ SIGKILL at chosen requests
#: the small bundle's databricks.yml with its greeting's default as a placeholder
KILL_BUNDLE = textwrap.dedent(SMALL_BUNDLE["databricks.yml"]).replace("default: hello", "default: {greeting}")
assert "{greeting}" in KILL_BUNDLE
JOB_A = """
    {a}:
      name: small-{a}
      tasks:
        - task_key: main
          notebook_task:
            notebook_path: ../src/nb_a.py
            base_parameters:
              greeting: ${{var.greeting}}
"""
JOB_B = """
    b:
      name: {b_name}
      tasks:
        - task_key: main
          spark_python_task:
            python_file: ../src/tool.py
"""
JOB_C = """
    c:
      name: small-c
      tasks:
        - task_key: call_a
          run_job_task:
            job_id: ${{resources.jobs.{a}.id}}
"""


class KillBundle:
    """The small bundle, rewritten by each edit so that the next deploy creates, updates, renames or
    deletes something: ``update`` (a job's parameters and a file), ``rename`` (job b), ``delete``
    (job b and its script), ``create`` (job b again), ``rekey`` (job a under a new key: a create,
    an update of the job that refers to it, and a delete in one deploy)."""

    EDITS = ("update", "rename", "delete", "create", "rekey")

    def __init__(self, root) -> None:
        self.root = root
        self.greeting, self.a, self.b, self.b_name, self.util = "hello", "a", True, "small-b", 0
        self.write(0)

    def write(self, step: int) -> None:
        (self.root / "databricks.yml").write_text(KILL_BUNDLE.format(greeting=self.greeting).lstrip())
        jobs = "resources:\n  experiments:\n    exp:\n      name: /Shared/small-${bundle.target}-exp\n  jobs:"
        jobs += JOB_A.format(a=self.a) + (JOB_B.format(b_name=self.b_name) if self.b else "") + JOB_C.format(a=self.a)
        (self.root / "resources").mkdir(exist_ok=True)
        (self.root / "resources/jobs.yml").write_text(jobs)
        src = self.root / "src"
        src.mkdir(exist_ok=True)
        (src / "nb_a.py").write_text(NOTEBOOK_HEADER + "print('a')\n")
        (src / "util.py").write_text(f"X = {self.util}\n")
        if self.b:
            (src / "tool.py").write_text(f"print('tool {self.b_name}')\n")
        else:
            (src / "tool.py").unlink(missing_ok=True)

    def edit(self, kind: str, step: int) -> None:
        if kind == "update":
            self.greeting, self.util = f"hello-{step}", step
        elif kind == "rename":
            self.b_name = "small-b-renamed" if self.b_name == "small-b" else "small-b"
        elif kind == "delete":
            self.b = False
        elif kind == "create":
            self.b = True
        elif kind == "rekey":
            self.a = "a2" if self.a == "a" else "a"
        self.write(step)


NOTEBOOK_HEADER = "# Databricks notebook source\n"


def _points(rng: random.Random) -> list[tuple[str, KillPoint]]:
    """(edit, kill point) for every killed deploy: the first deploy, then five rounds of the five edits.
    Each edit is killed in its own change (create, update, rename, delete) before and after the
    workspace applied it, at a random one of its file uploads or state writes, and at the lock."""
    P = KillPoint
    rounds = {
        "update": [P("update job", 1, "before"), P("update job", 1, "after"),
                   P("upload file", rng.randint(1, 2), "after"), P("write state", rng.randint(1, 4), "before"),
                   P("take lock", 1, "after")],
        "rename": [P("update job", 1, "after"), P("update job", 1, "before"),
                   P("write state", rng.randint(1, 4), "after"), P("upload file", 1, "before"),
                   P("take lock", 1, "before")],
        "delete": [P("delete job", 1, "before"), P("delete job", 1, "after"),
                   P("delete file", 1, "after"), P("write state", rng.randint(1, 4), "after"),
                   P("release lock", 1, "before")],
        "create": [P("create job", 1, "after"), P("create job", 1, "before"),
                   P("upload file", rng.randint(1, 2), "before"), P("write state", rng.randint(1, 4), "after"),
                   P("release lock", 1, "after")],
        "rekey": [P("create job", 1, "after"), P("update job", 1, "after"),
                  P("delete job", 1, "before"), P("delete job", 1, "after"), P("write state", rng.randint(5, 6), "after")],
    }
    first = P("create job", rng.randint(1, 3), "after")
    return [("first deploy", first)] + [(edit, rounds[edit][r]) for r in range(5) for edit in KillBundle.EDITS]


def _expected(root) -> tuple[set, dict]:
    from stackci.bundle import load_bundle

    bundle = load_bundle(root, "staging", current_user=USER, env={})
    jobs = {r.name for r in bundle.resources["jobs"].values()}
    files = {sf.remote_path(bundle.file_path): sf.path.read_text() for sf in bundle.sync_files.values()}
    return jobs, files


@pytest.fixture
def kill_proxy(ws):
    proxy = KillProxy(ws.url)
    yield proxy
    proxy.close()


class Zygote:
    """Runs ``stackci`` commands as forks of one warm process (see zygote.py): real processes to
    SIGKILL, without the interpreter start-up and imports for each."""

    def __init__(self, tmp_path) -> None:
        import os
        import subprocess
        import sys
        from pathlib import Path

        self.tmp = tmp_path
        env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("zygote.py"))], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(self.proc.stdout.readline()) == {"ready": True}
        self.base = env

    def run(self, argv: list[str], env: dict, started) -> tuple[int, str]:
        """(wait status, stderr) of ``stackci argv``; ``started(pid)`` is called as soon as it runs."""
        out, err = self.tmp / "zygote.out", self.tmp / "zygote.err"
        request = {"argv": argv, "env": {**self.base, "PYTHONIOENCODING": "utf-8", **env},
                   "stdout": str(out), "stderr": str(err)}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        pid = json.loads(self.proc.stdout.readline())["pid"]
        started(pid)
        done = json.loads(self.proc.stdout.readline())
        assert done["pid"] == pid
        return done["status"], err.read_text()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture
def zygote(tmp_path):
    z = Zygote(tmp_path)
    yield z
    z.close()


def test_sigkill_at_chosen_points_then_rerun_converges(ws, w, env, tmp_path, run_cli, kill_proxy, zygote):
    """26 deploys, each killed with SIGKILL at a different request: inside job creates, updates,
    renames and deletes (before the workspace applied the change, and after it applied it but
    before the deploy saw the answer), file uploads and deletes, state writes and the lock. After each,
    one more deploy (with --force-lock: the dead one still holds the lock) must leave exactly the
    bundle's jobs (no duplicate, no orphan) and files. Kill points are counted in requests by a
    proxy in front of the workspace, so they land where intended however loaded the machine is."""
    root = tmp_path / "killed"
    root.mkdir()
    bundle = KillBundle(root)
    points = _points(random.Random(20240611))
    assert len(set(points)) == len(points) == 26
    args = ["deploy", "-t", "staging", "--project", str(root), "--force-lock"]
    via_proxy = {**env, "DATABRICKS_HOST": kill_proxy.url, "STACKCI_HOST": kill_proxy.url}
    root_path = f"{ROOT}/small/staging"
    killed_at, adopted_after_create = [], 0
    for step, (edit, point) in enumerate(points):
        if step:
            bundle.edit(edit, step)
        kill_proxy.arm(point)
        status, err = zygote.run(args, via_proxy, kill_proxy.watch)
        assert kill_proxy.killed, f"step {step} ({edit}): the deploy never sent {point}, so it was not " \
                                  f"killed; it sent {kill_proxy.log}; {err}"
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, err
        killed_at.append((edit, str(point)))

        kill_proxy.arm(None)
        result = run_cli(args, env=via_proxy, platform="local")
        assert result.code == 0, f"step {step} ({edit}, killed {kill_proxy.killed}): {result.stderr}"
        if point.label == "create job" and point.phase == "after":
            assert "adopted jobs." in result.stderr, result.stderr   # the job the dead deploy created
            adopted_after_create += 1
        jobs, files = _expected(root)
        assert_workspace_matches(w, root_path, jobs, files)
        state = read_state(w, root_path)
        c = jobs_by_name(w)["small-c"][0]
        assert c.settings.tasks[0].run_job_task.job_id == state["resources"]["jobs"][bundle.a]["id"]
        assert state["files"]["src/util.py"]["sha256"] == sha((root / "src/util.py").read_text())
    kinds = {(edit, p.split(" #")[0]) for edit, p in killed_at}
    for wanted in [("rename", "before update job"), ("rename", "after update job"),
                   ("update", "before update job"), ("update", "after update job"),
                   ("create", "before create job"), ("create", "after create job"),
                   ("delete", "before delete job"), ("delete", "after delete job"),
                   ("rekey", "after create job"), ("delete", "after delete file")]:
        assert wanted in kinds, wanted
    assert adopted_after_create == sum(p.label == "create job" and p.phase == "after" for _, p in points)


def test_sigterm_releases_the_lock_and_exits_130(ws, w, env, small, kill_proxy, run_cli):
    """SIGTERM (a cancelled CI job) arrives while the deploy creates its second job: exit 130,
    the lock released, the state recording what was applied, and a re-run converges."""
    via_proxy = {**env, "DATABRICKS_HOST": kill_proxy.url, "STACKCI_HOST": kill_proxy.url}
    args = ["deploy", "-t", "staging", "--project", str(small)]
    kill_proxy.arm(KillPoint("create job", 2, "sigterm"))
    proc = cli_subprocess(args, via_proxy)
    kill_proxy.watch(proc.pid)
    out, err = proc.communicate(timeout=60)
    assert kill_proxy.killed, f"the deploy never created a second job: {kill_proxy.log}"
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert "4 created" not in err                       # it stopped part-way
    state_dir = f"{ROOT}/small/staging/state"
    assert f"{state_dir}/deploy.lock" not in tree(w, state_dir)
    recorded = read_state(w, f"{ROOT}/small/staging")["resources"].get("jobs", {})
    held = jobs_by_name(w)
    assert {e["id"] for e in recorded.values()} <= {j.job_id for v in held.values() for j in v}
    kill_proxy.arm(None)
    again = run_cli(args, env=via_proxy, platform="local")       # no --force-lock: the lock was released
    assert again.code == 0, again.stderr
    assert {name: len(v) for name, v in jobs_by_name(w).items()} == {"small-a": 1, "small-b": 1, "small-c": 1}


@pytest.mark.parametrize("at", ["take lock", "read lock"])
def test_sigterm_while_the_lock_is_taken_leaves_no_lock(ws, w, env, small, kill_proxy, run_cli, at):
    """The narrowest window: the lock file is written (or being read back) when SIGTERM arrives."""
    via_proxy = {**env, "DATABRICKS_HOST": kill_proxy.url, "STACKCI_HOST": kill_proxy.url}
    args = ["deploy", "-t", "staging", "--project", str(small)]
    kill_proxy.arm(KillPoint(at, 1, "sigterm"))
    proc = cli_subprocess(args, via_proxy)
    kill_proxy.watch(proc.pid)
    out, err = proc.communicate(timeout=60)
    assert kill_proxy.killed, f"the deploy never sent {at}: {kill_proxy.log}"
    assert proc.returncode == 130, err
    state_dir = f"{ROOT}/small/staging/state"
    assert f"{state_dir}/deploy.lock" not in tree(w, state_dir), err
    kill_proxy.arm(None)
    again = run_cli(args, env=via_proxy, platform="local")       # without --force-lock
    assert again.code == 0, again.stderr


def test_a_held_lock_names_its_holder_and_force_lock_takes_it(deploy, w, small):
    from databricks.sdk.service.workspace import ImportFormat
    import base64

    state = f"{ROOT}/small/staging/state"
    w.workspace.mkdirs(state)
    holder = {"id": "other", "user": "alice@example.com", "command": "deploy", "machine": "runner-7",
              "acquired_epoch": time.time() - 600, "run_url": "https://github.com/o/r/actions/runs/42"}
    w.workspace.import_(f"{state}/deploy.lock", content=base64.b64encode(json.dumps(holder).encode()).decode(),
                        format=ImportFormat.AUTO)
    held = deploy(root=small)
    assert held.code == 2
    [error] = held.errors()
    assert "held by alice@example.com (deploy on runner-7, since 10 min ago, " \
           "https://github.com/o/r/actions/runs/42)" in error.data
    assert "--force-lock" in error.data
    assert jobs_by_name(w) == {}
    forced = deploy("--force-lock", root=small)
    assert forced.code == 0, forced.stderr
    assert "took the deployment lock from alice@example.com" in forced.stderr
    assert f"{state}/deploy.lock" not in tree(w, state)


def test_two_concurrent_deploys_one_wins_the_other_fails_fast(ws, w, env, small, run_cli):
    ws.set_faults({"rate": 1.0, "kinds": ["latency"], "latency_ms": 30, "path_regex": r"^/api/2\.[02]/(workspace|jobs)/"})
    first = cli_subprocess(["deploy", "-t", "staging", "--project", str(small)],
                           {**env, "GITHUB_ACTOR": "first-deployer"})
    lock = f"{ROOT}/small/staging/state/deploy.lock"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and lock not in tree(w, f"{ROOT}/small/staging/state"):
        time.sleep(0.02)
    assert first.poll() is None, first.communicate()
    began = time.monotonic()
    second = run_cli(["deploy", "-t", "staging", "--project", str(small)], env=env, platform="local")
    took = time.monotonic() - began
    out, err = first.communicate(timeout=60)
    ws.set_faults(None)
    assert first.returncode == 0, err
    assert second.code == 2
    assert "held by first-deployer (deploy on " in second.stderr
    assert took < 5
    assert sorted(jobs_by_name(w)) == ["small-a", "small-b", "small-c"]


@pytest.mark.parametrize("count", [1])
def test_an_adopted_job_is_not_created_twice(ws, w, env, small, run_cli, count):
    """The narrowest window: the job exists (created) but the state was never written."""
    args = ["deploy", "-t", "staging", "--project", str(small)]
    assert run_cli(args, env=env, platform="local").code == 0
    root_path = f"{ROOT}/small/staging"
    from databricks.sdk.service.workspace import ImportFormat
    import base64
    state = read_state(w, root_path)
    a = state["resources"]["jobs"].pop("a")
    state["pending"]["jobs.a"] = {"name": "small-a", "dkey": "unused", "since": "now"}
    w.workspace.import_(f"{root_path}/state/deployment.json", overwrite=True, format=ImportFormat.AUTO,
                        content=base64.b64encode(json.dumps(state).encode()).decode())
    result = run_cli(args, env=env, platform="local")
    assert result.code == 0, result.stderr
    assert "adopted jobs.a" in result.stderr
    assert [j.job_id for j in jobs_by_name(w)["small-a"]] == [a["id"]]


ACL_BUNDLE = """
bundle:
  name: acl
targets:
  staging:
    default: true
    workspace:
      host: https://adb-2222222222222222.12.azuredatabricks.net
resources:
  jobs:
    train:
      name: acl-train
      permissions:
        - level: {level}
          group_name: users
      tasks:
        - task_key: main
          spark_python_task:
            python_file: ./tool.py
  registered_models:
    model:
      name: m
      catalog_name: main
      schema_name: acl
      grants:
        - principal: {principal}
          privileges: [EXECUTE]
"""


def test_sigkill_around_permission_and_grant_requests_then_rerun_converges(ws, w, env, tmp_path, run_cli,
                                                                           kill_proxy, zygote):
    """Killed before and after the workspace applied an ACL or a grant (also on the first deploy,
    between creating the job and recording it): the next deploy leaves exactly the bundle's ACL
    and grants on exactly one job and one model, and records them."""
    root = tmp_path / "acl"
    root.mkdir()
    (root / "tool.py").write_text("print('tool')\n")
    args = ["deploy", "-t", "staging", "--project", str(root), "--force-lock"]
    via_proxy = {**env, "DATABRICKS_HOST": kill_proxy.url, "STACKCI_HOST": kill_proxy.url}
    steps = [("CAN_VIEW", "readers", KillPoint("set permissions", 1, "after")),
             ("CAN_MANAGE_RUN", "readers", KillPoint("set permissions", 1, "before")),
             ("CAN_MANAGE_RUN", "account users", KillPoint("set grants", 1, "after")),
             ("CAN_VIEW", "data-scientists", KillPoint("set grants", 1, "before"))]
    for level, principal, point in steps:
        (root / "databricks.yml").write_text(ACL_BUNDLE.format(level=level, principal=principal).lstrip())
        kill_proxy.arm(point)
        status, err = zygote.run(args, via_proxy, kill_proxy.watch)
        assert kill_proxy.killed, f"{point} never came: {kill_proxy.log}; {err}"
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, err
        kill_proxy.arm(None)
        result = run_cli(args, env=via_proxy, platform="local")
        assert result.code == 0, f"after {point}: {result.stderr}"
        [job] = jobs_by_name(w)["acl-train"]
        held = {(e.user_name or e.group_name): e.all_permissions[0].permission_level.value
                for e in w.jobs.get_permissions(str(job.job_id)).access_control_list
                if not e.all_permissions[0].inherited}
        assert held == {USER: "IS_OWNER", "users": level}, point
        assignments = w.grants.get("function", "main.acl.m").privilege_assignments or []
        assert {a.principal: [p.value for p in a.privileges] for a in assignments} == {principal: ["EXECUTE"]}
        state = read_state(w, f"{ROOT}/acl/staging")
        assert state["pending"] == {} and state["resources"]["jobs"]["train"]["id"] == job.job_id
        assert all(e.get("acl") for kind in state["resources"].values() for e in kind.values())
        assert "0 created, 0 changed" in run_cli(args, env=env, platform="local").stderr


def test_a_state_read_while_the_lock_is_taken_fails_inside_the_lock(deploy, w, small):
    """The state is read while the lock file is read back: a state that cannot be used is still
    reported (exit 1 for a damaged file, 2 for another bundle's) and the lock is released."""
    import base64

    from databricks.sdk.service.workspace import ImportFormat

    root_path = f"/Workspace/Users/{USER}/.bundle/small/staging"
    w.workspace.mkdirs(f"{root_path}/state")
    for content, code, words in ((b"{not json", 1, "is not valid JSON"),
                                 (json.dumps({"version": 1, "bundle": {"name": "other"}}).encode(), 2,
                                  "belongs to bundle 'other', not 'small'")):
        w.workspace.import_(f"{root_path}/state/deployment.json", content=base64.b64encode(content).decode(),
                            format=ImportFormat.AUTO, overwrite=True)
        result = deploy(root=small)
        assert result.code == code, result.stderr
        [error] = result.errors()
        assert words in error.data
        assert f"{root_path}/state/deploy.lock" not in tree(w, f"{root_path}/state")
    assert jobs_by_name(w) == {}


def test_the_last_state_write_refused_fails_the_deploy_and_releases_the_lock(env, small, run_cli, kill_proxy, w):
    """The deploy's last state write goes out while the lock is read back for its release: when the
    workspace refuses it, the deploy still fails (exit 1, saying so) and the lock is still released."""
    args = ["deploy", "-t", "staging", "--project", str(small)]
    assert run_cli(args, env=env, platform="local").code == 0
    via_proxy = {**env, "DATABRICKS_HOST": kill_proxy.url, "STACKCI_HOST": kill_proxy.url}
    kill_proxy.arm(KillPoint("write state", 1, "refuse"))   # a no-op deploy writes the state once, at the end
    result = run_cli(args, env=via_proxy)
    assert result.code == 1, result.stderr
    [error] = result.errors()
    assert "writing the deployment state" in error.data and "refused by the test proxy" in error.data
    assert kill_proxy.log[-1] == "release lock"                  # deleted after the write was answered
    state = f"{ROOT}/small/staging/state"
    assert f"{state}/deploy.lock" not in tree(w, state)
    kill_proxy.arm(None)
    assert "0 created, 0 changed, 0 deleted, 4 unchanged" in run_cli(args, env=via_proxy, platform="local").stderr
