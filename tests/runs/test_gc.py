"""``stackci gc``: isolated copies left behind (``--keep``, a killed runner) are found by their
root path and tag and removed once older than ``--older-than``; nothing else is touched."""

from __future__ import annotations

import json
import time

from databricks.sdk.service import jobs as sdk_jobs

from itest_support import copy_root, jobs_by_name, tree
from stackci.deploy.state import import_file


def keep_copy(run_cli, env, project, ident):
    result = run_cli(["integration-test", "-t", "staging", "-p", str(project), "--isolation-id", ident,
                      "--job", "slow_job", "--job-param", "seconds=0", "--keep"], env=env)
    assert result.code == 0, result.stderr
    return result


def age_copy(w, ident, hours):
    """Make the copy's deployment record say it was deployed ``hours`` ago."""
    path = f"{copy_root('staging', ident)}/state/deployment.json"
    import base64
    state = json.loads(base64.b64decode(w.workspace.export(path).content))
    state["deployment"]["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - hours * 3600))
    import_file(w, path, json.dumps(state).encode(), overwrite=True)


def tagged_job(w, name, ident, hours_ago, target="staging"):
    task = sdk_jobs.Task(task_key="t", spark_python_task=sdk_jobs.SparkPythonTask(python_file="/nowhere.py"))
    return w.jobs.create(name=name, tasks=[task], tags={
        "stackci-ci-copy": ident, "stackci-ci-created": str(int(time.time() - hours_ago * 3600)),
        "stackci-bundle": "churn_model", "stackci-target": target}).job_id


def copy_jobs(w, ident):
    return sorted(n for n in jobs_by_name(w) if n.startswith(f"[ci {ident}] "))


def test_gc_removes_only_expired_copies_and_orphaned_jobs(run_cli, w, env, project):
    keep_copy(run_cli, env, project, "pr-old")
    keep_copy(run_cli, env, project, "pr-new")
    age_copy(w, "pr-old", 7)
    orphan = tagged_job(w, "[ci pr-gone] staging-churn_model-slow-job", "pr-gone", 8)
    tagged_job(w, "[ci pr-fresh] staging-churn_model-slow-job", "pr-fresh", 0.1)        # too young
    tagged_job(w, "[ci pr-test] test-churn_model-slow-job", "pr-test", 8, target="test")  # another target
    w.jobs.create(name="someone else's job", tasks=[sdk_jobs.Task(
        task_key="t", spark_python_task=sdk_jobs.SparkPythonTask(python_file="/nowhere.py"))])
    before = sorted(jobs_by_name(w))
    old_files = tree(w, copy_root("staging", "pr-old"))
    assert len(copy_jobs(w, "pr-old")) == 3 and old_files

    gc = ["gc", "-t", "staging", "-p", str(project), "--older-than", "6h"]
    dry = run_cli([*gc, "--dry-run"], env=env)
    assert dry.code == 0, dry.stderr
    assert dry.outputs["removed"] == "2"
    assert "would remove isolated copy pr-old" in dry.stderr and f"would delete orphaned job {orphan}" in dry.stderr
    assert "pr-new" not in dry.stderr.split("isolated copies under")[1]
    assert sorted(jobs_by_name(w)) == before and tree(w, copy_root("staging", "pr-old")) == old_files

    real = run_cli(gc, env=env)
    assert real.code == 0, real.stderr
    assert real.outputs["removed"] == "2"
    assert "<code>pr-old</code>" in real.summary and f"<code>job {orphan}</code>" in real.summary
    assert copy_jobs(w, "pr-old") == [] and tree(w, copy_root("staging", "pr-old")) == {}
    left = sorted(jobs_by_name(w))
    assert left == sorted(n for n in before if not n.startswith(("[ci pr-old] ", "[ci pr-gone] ")))
    assert len(copy_jobs(w, "pr-new")) == 3
    assert f"{copy_root('staging', 'pr-new')}/state/deployment.json" in tree(w, copy_root("staging", "pr-new"))

    # the command a --keep run prints removes that one copy, whatever its age
    one = run_cli(["gc", "-t", "staging", "-p", str(project), "--isolation-id", "pr-new"], env=env)
    assert one.code == 0, one.stderr
    assert one.outputs["removed"] == "1"
    assert copy_jobs(w, "pr-new") == [] and tree(w, copy_root("staging", "pr-new")) == {}
    assert "[ci pr-fresh] staging-churn_model-slow-job" in jobs_by_name(w)


def test_gc_bad_input(run_cli, env, project):
    for args, needle in ((["--dry-run"], "give --older-than (e.g. 6h) or --isolation-id"),
                         (["--older-than", "soon"], "--older-than: 'soon' is not a duration")):
        result = run_cli(["gc", "-t", "staging", "-p", str(project), *args], env=env)
        assert result.code == 2
        assert len(result.errors()) == 1 and needle in result.errors()[0].data
