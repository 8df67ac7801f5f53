"""Deploys that meet trouble: injected 429/503/dropped connections, SIGKILL at random
points, SIGTERM, and two deploys racing for one target."""

from __future__ import annotations

import json
import random
import signal
import time

import pytest

from conftest import (USER, cli_subprocess, jobs_by_name, read_state, remote_text, sha,  # type: ignore
                      tree)

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


# the bundle edits between kills, so that kills land in creates, updates, renames and deletes
def _edit(root, step: int) -> None:
    jobs = root / "resources/jobs.yml"
    text = jobs.read_text()
    kind = step % 5
    if kind == 1:
        (root / "src/util.py").write_text(f"X = {step}\n")
    elif kind == 2:
        text = text.replace("name: small-b", "name: small-b-renamed") if "small-b-renamed" not in text else \
            text.replace("name: small-b-renamed", "name: small-b")
        jobs.write_text(text)
    elif kind == 3:
        if "\n            b:\n" in text:
            start = text.index("\n            b:\n")
            end = text.index("\n            c:\n")
            (root / "b.yml.saved").write_text(text[start:end])
            jobs.write_text(text[:start] + text[end:])
            (root / "src/tool.py").unlink(missing_ok=True)
    elif kind == 4:
        saved = root / "b.yml.saved"
        if saved.exists():
            start = text.index("\n            c:\n")
            jobs.write_text(text[:start] + saved.read_text() + text[start:])
            saved.unlink()
            (root / "src/tool.py").write_text("print('tool')\n")
        (root / "src/nb_b.py").write_text(f"# Databricks notebook source\nprint({step})\n")


def _expected(root) -> tuple[set, dict]:
    from stackci.bundle import load_bundle

    bundle = load_bundle(root, "staging", current_user=USER, env={})
    jobs = {r.name for r in bundle.resources["jobs"].values()}
    files = {sf.remote_path(bundle.file_path): sf.path.read_text() for sf in bundle.sync_files.values()}
    return jobs, files


def test_sigkill_at_random_points_then_rerun_converges(ws, w, env, small, run_cli):
    """20 deploys killed with SIGKILL after a random number of workspace requests; after each,
    one more deploy (with --force-lock: the dead one still holds the lock) must leave exactly
    the bundle's jobs (no duplicate, no orphan) and files."""
    rng = random.Random(20240611)
    args = ["deploy", "-t", "staging", "--project", str(small), "--force-lock"]
    root_path = f"{ROOT}/small/staging"
    # learn how many requests a first deploy sends, to spread the kill points over it
    ws.set_faults({"rate": 1e-12, "kinds": ["latency"], "latency_ms": 0, "seed": 1})
    plan = run_cli(["plan", "-t", "staging", "--project", str(small)], env=env, platform="local")
    assert plan.code == 0
    base = ws.faults.status()["matched"]
    kills = adopted = 0
    started = time.monotonic()
    for step in range(20):
        _edit(small, step)
        # every request waits 15 ms so that the watcher below can stop the deploy between two of them
        ws.set_faults({"rate": 1.0, "kinds": ["latency"], "latency_ms": 15})
        kill_at = rng.randint(1, max(base * 3, 30))
        proc = cli_subprocess(args, env)
        deadline = time.monotonic() + 30
        while proc.poll() is None and ws.faults.status()["matched"] < kill_at and time.monotonic() < deadline:
            time.sleep(0.002)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=30)
        ws.set_faults(None)
        result = run_cli(args, env=env, platform="local")
        assert result.code == 0, f"step {step} (killed after {kill_at} requests): {result.stderr}"
        adopted += result.stderr.count("adopted ")
        jobs, files = _expected(small)
        assert_workspace_matches(w, root_path, jobs, files)
        state = read_state(w, root_path)
        c = jobs_by_name(w)["small-c"][0]
        assert c.settings.tasks[0].run_job_task.job_id == state["resources"]["jobs"]["a"]["id"]
        assert state["files"]["src/util.py"]["sha256"] == sha((small / "src/util.py").read_text())
    assert kills >= 15, f"only {kills} of 20 deploys were killed before they finished"
    assert time.monotonic() - started < 90


def test_sigterm_releases_the_lock_and_exits_130(ws, w, env, small):
    ws.set_faults({"rate": 1.0, "kinds": ["latency"], "latency_ms": 40})
    proc = cli_subprocess(["deploy", "-t", "staging", "--project", str(small)], env)
    deadline = time.monotonic() + 30
    lock = f"{ROOT}/small/staging/state/deploy.lock"
    while time.monotonic() < deadline and ws.faults.status()["matched"] < 12:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    ws.set_faults(None)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert lock not in tree(w, f"{ROOT}/small/staging/state")


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
