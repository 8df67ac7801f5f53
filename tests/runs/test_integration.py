"""``stackci integration-test`` against the local workspace with the example project: real
HTTP through databricks-sdk, real task processes; what a user sees (outputs, summary,
annotations, JUnit, exit code) and what the workspace holds afterwards."""

from __future__ import annotations

import json
import signal
import time
import xml.etree.ElementTree as ET

import pytest

from grammar import parse_github_env_file
from itest_support import (BUNDLE_ROOT, USER, Proxy, all_runs, cli, copy_root, experiment_exists, jobs_by_name,
                           model_exists, tree, wait_for_file)

TRAIN = "model_training_job"
SLOW = "slow_job"


def it(run_cli, env, project, *args, ident="pr1", target="staging", extra_env=None):
    argv = ["integration-test", "-t", target, "--project", str(project)]
    if ident:
        argv += ["--isolation-id", ident]
    return run_cli([*argv, *args], env={**env, **(extra_env or {})})


def junit_cases(path) -> dict:
    suite = ET.parse(path).getroot().find("testsuite")
    return {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}


def assert_nothing_left(w, ident="pr1", target="staging"):
    assert jobs_by_name(w) == {}, "every job of the copy is deleted"
    assert tree(w, copy_root(target, ident)) == {} and tree(w, f"{BUNDLE_ROOT}/{target}-ci").get(
        copy_root(target, ident)) is None, "the copy's folder is gone"
    assert not experiment_exists(w, f"/Shared/[ci {ident}] {target}-churn_model-experiment")
    assert not model_exists(w, f"{target}.churn_model.ci_{ident.replace('-', '_')}_churn_model")


def test_a_passing_multi_task_training_job(run_cli, w, env, project):
    result = it(run_cli, env, project, "--job", TRAIN)
    assert result.code == 0, result.stderr
    assert result.outputs["result"] == "success"
    run_id = json.loads(result.outputs["run-ids"])[TRAIN]
    run = w.jobs.get_run(run_id)
    assert run.state.result_state.value == "SUCCESS"
    assert [t.task_key for t in run.tasks] == ["Train", "ModelValidation", "ModelDeployment"]
    assert json.loads(result.outputs["run-urls"])[TRAIN] == run.run_page_url
    # it ran the copy's job, not the target's own
    assert w.jobs.get_run(run_id).run_name == "[ci pr1] staging-churn_model-model-training-job"

    cases = junit_cases(result.outputs["junit-xml"])
    job_name = f"{TRAIN} ([ci pr1] staging-churn_model-model-training-job)"
    assert sorted(cases) == sorted((job_name, t) for t in ("Train", "ModelValidation", "ModelDeployment"))
    assert all(c.find("failure") is None and c.find("error") is None for c in cases.values())

    assert "Integration test of staging (pr1): success" in result.summary
    for task in ("Train", "ModelValidation", "ModelDeployment"):
        assert f"<code>{task}</code>" in result.summary
    assert "Isolated copy `pr1`: removed (5 resources, 26 files)" in result.summary
    # progress: one line per state change, with the elapsed time and the run's URL
    assert f"] {TRAIN} › ModelDeployment: TERMINATED SUCCESS" in result.stderr
    assert f"{TRAIN}: " in result.stderr and run.run_page_url in result.stderr
    assert "schedules and triggers paused" in result.stderr
    assert result.errors() == []
    assert_nothing_left(w)
    assert tree(w, f"{BUNDLE_ROOT}/staging") == {}, "the target's own deployment is never touched"


def test_a_failing_task_is_in_the_summary_the_annotation_and_junit(run_cli, w, env, project):
    # validation_min_auc above 1 makes ModelValidation fail; batch inference comes after it
    result = it(run_cli, env, project, "--job", TRAIN, "--job", "batch_inference_job",
                "--var", "validation_min_auc=1.5")
    assert result.code == 1
    assert result.outputs["result"] == "failed"
    needle = "is below the minimum 1.5000"
    per_task = [e for e in result.errors() if e.properties.get("title", "").endswith("› ModelValidation failed")]
    assert len(per_task) == 1 and needle in per_task[0].data
    overall = [e.data for e in result.errors() if "integration test of staging failed" in e.data]
    assert len(overall) == 1 and "a task failed" in overall[0]
    assert needle in result.summary and "Traceback" in result.summary and "ValidationFailed" in result.summary
    cases = junit_cases(result.outputs["junit-xml"])
    by_name = {name: case for (_, name), case in cases.items()}
    failure = by_name["ModelValidation"].find("failure")
    assert failure is not None and needle in failure.get("message") and "Traceback" in failure.text
    assert by_name["Train"].find("failure") is None
    assert by_name["ModelDeployment"].find("skipped") is not None          # UPSTREAM_FAILED
    # the job after the failed one was not started, and says why
    skipped = [c for (cls, name), c in cases.items() if cls.startswith("batch_inference_job")]
    assert len(skipped) == 1 and "not run: model_training_job" in skipped[0].find("skipped").get("message")
    assert "batch_inference_job" not in json.loads(result.outputs["run-ids"])
    assert_nothing_left(w)


def test_timeout_cancels_the_remote_run(run_cli, w, env, project):
    started = time.monotonic()
    result = it(run_cli, env, project, "--job", SLOW, "--timeout", "3s")
    assert time.monotonic() - started < 30
    assert result.code == 1
    assert result.outputs["result"] == "timedout"
    run = w.jobs.get_run(json.loads(result.outputs["run-ids"])[SLOW])
    assert run.state.life_cycle_state.value == "TERMINATED"
    assert run.state.result_state.value == "CANCELED"
    assert any("the run timed out" in e.data for e in result.errors())
    case = {name: c for (_, name), c in junit_cases(result.outputs["junit-xml"]).items()}["wait"]
    assert case.find("failure") is not None and "--timeout 3s" in case.find("failure").get("message")
    assert_nothing_left(w)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_run_cancels_tears_down_and_exits_130(ws, w, env, project, tmp_path, sig):
    marker = tmp_path / "started"
    out = tmp_path / "outputs"
    args = ["integration-test", "-t", "staging", "-p", str(project), "--isolation-id", "pr1", "--job", TRAIN,
            "--job", SLOW, "--job-param", f"marker={marker}"]
    if sig == signal.SIGTERM:
        args.append("--parallel")             # the waiters in threads: each cancels its own run
    proc = cli(args, {**env, "STACKCI_OUTPUT_FILE": str(out)})
    try:
        assert wait_for_file(marker), "the slow task never started"
        sent = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    print(f"exit {took:.2f} s after {sig.name}")
    assert took < 7.5, took
    outputs = parse_github_env_file(out.read_text())
    assert outputs["result"] == "canceled"
    run = w.jobs.get_run(json.loads(outputs["run-ids"])[SLOW])
    assert run.state.life_cycle_state.value == "TERMINATED" and run.state.result_state.value == "CANCELED"
    assert "interrupted, cancelling run" in err and "tore down the isolated copy" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: stackci: interrupted: integration test of staging was interrupted: its runs were "
                           "cancelled; isolated copy pr1: removed ("), err
    assert_nothing_left(w)


def test_two_pull_requests_at_the_same_time_do_not_touch_each_other(ws, w, env, project, tmp_path):
    # each run's task writes its marker and waits for the other's: they pass only if they overlap
    one, two = tmp_path / "pr1", tmp_path / "pr2"
    procs = {}
    for ident, mine, other, keep in (("pr1", one, two, ["--keep"]), ("pr2", two, one, [])):
        procs[ident] = cli(["integration-test", "-t", "staging", "-p", str(project), "--isolation-id", ident,
                            "--job", SLOW, "--job-param", f"marker={mine}", "--job-param", f"wait_for={other}",
                            "--job-param", "seconds=60", *keep],
                           {**env, "STACKCI_OUTPUT_FILE": str(tmp_path / f"out-{ident}")})
    errs = {ident: p.communicate(timeout=120)[1] for ident, p in procs.items()}
    for ident, p in procs.items():
        assert p.returncode == 0, errs[ident]
    outputs = {i: parse_github_env_file((tmp_path / f"out-{i}").read_text()) for i in procs}
    jobs = jobs_by_name(w)
    # pr2 is gone, pr1 (kept) is whole: pr2's teardown removed nothing of pr1's
    assert sorted(jobs) == ["[ci pr1] staging-churn_model-batch-inference-job",
                            "[ci pr1] staging-churn_model-model-training-job",
                            "[ci pr1] staging-churn_model-slow-job"]
    kept = tree(w, copy_root("staging", "pr1"))
    assert sum(kind == "FILE" or kind == "NOTEBOOK" for kind in kept.values()) >= 26
    assert f"{copy_root('staging', 'pr1')}/state/deployment.json" in kept
    assert tree(w, copy_root("staging", "pr2")) == {}
    # each ran its own copy's job
    slow1 = jobs["[ci pr1] staging-churn_model-slow-job"]
    assert w.jobs.get_run(json.loads(outputs["pr1"]["run-ids"])[SLOW]).job_id == slow1.job_id
    assert w.jobs.get_run(json.loads(outputs["pr2"]["run-ids"])[SLOW]).job_id != slow1.job_id
    # the kept copy is marked as a CI copy, with every schedule and trigger paused (the bundle says UNPAUSED)
    assert slow1.settings.tags["stackci-ci-copy"] == "pr1"
    assert abs(int(slow1.settings.tags["stackci-ci-created"]) - time.time()) < 600
    assert slow1.settings.trigger.pause_status.value == "PAUSED"
    assert jobs["[ci pr1] staging-churn_model-model-training-job"].settings.schedule.pause_status.value == "PAUSED"
    assert f"remove it with: stackci gc -t staging --isolation-id pr1 -p {project} --host {ws.url}" in errs["pr1"]


@pytest.mark.parametrize("lost", [503, None], ids=["503-after-the-run-started", "connection-dropped"])
def test_a_retried_trigger_request_does_not_start_a_second_run(run_cli, ws, w, env, project, lost):
    with Proxy(ws.url) as proxy:
        # the workspace starts the run, then the answer is lost; the SDK sends run-now again
        proxy.fail("POST", "/api/2.2/jobs/run-now", 1, lost,
                   {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "gateway timeout"})
        result = it(run_cli, {**env, "STACKCI_HOST": proxy.url}, project, "--job", TRAIN, "--keep")
        assert proxy.count("POST", "/api/2.2/jobs/run-now") == 2, "the SDK retried the trigger"
    assert result.code == 0, result.stderr
    job = jobs_by_name(w)["[ci pr1] staging-churn_model-model-training-job"]
    runs = all_runs(w, job.job_id)
    assert len(runs) == 1, "the idempotency token made the retry return the first run"
    assert runs[0].run_id == json.loads(result.outputs["run-ids"])[TRAIN]


def test_rerunning_the_step_with_the_same_ci_ids_reuses_the_run(run_cli, w, env, project):
    ci = {"GITHUB_RUN_ID": "4242", "GITHUB_RUN_ATTEMPT": "1", "GITHUB_JOB": "integration",
          "GITHUB_REF": "refs/pull/7/merge"}
    first = it(run_cli, env, project, "--job", TRAIN, "--keep", ident=None, extra_env=ci)
    assert first.code == 0, first.stderr
    notices = [c.data for c in first.commands if c.name == "notice"]
    assert len(notices) == 1 and "the isolated copy pr7-4242 stays at" in notices[0]
    assert "remove it with: stackci gc -t staging --isolation-id pr7-4242" in notices[0]
    again = it(run_cli, env, project, "--job", TRAIN, ident=None, extra_env=ci)
    assert again.code == 0, again.stderr
    assert again.outputs["run-ids"] == first.outputs["run-ids"]
    # a new attempt of the workflow is a new copy and a new run
    retry = it(run_cli, env, project, "--job", TRAIN, ident=None, extra_env={**ci, "GITHUB_RUN_ATTEMPT": "2"})
    assert retry.code == 0, retry.stderr
    assert retry.outputs["run-ids"] != first.outputs["run-ids"]
    assert jobs_by_name(w) == {}
    assert tree(w, copy_root("staging", "pr7-4242")) == {} and tree(w, copy_root("staging", "pr7-4242-2")) == {}
    # outside CI there are no ids to tie a run to: a second invocation on a kept copy runs again
    local = [it(run_cli, env, project, "--job", TRAIN, "--keep", ident="mine") for _ in range(2)]
    assert all(r.code == 0 for r in local), local[-1].stderr
    assert local[0].outputs["run-ids"] != local[1].outputs["run-ids"]


def test_teardown_after_a_failed_deploy(run_cli, ws, w, env, project):
    with Proxy(ws.url) as proxy:
        # the second job create is refused: files, experiment, model and one job exist by then
        proxy.fail("POST", "/api/2.2/jobs/create", 2, 400,
                   {"error_code": "INVALID_PARAMETER_VALUE", "message": "Cluster node type is not allowed"},
                   after=False)
        result = it(run_cli, {**env, "STACKCI_HOST": proxy.url}, project, "--job", TRAIN)
        assert proxy.count("POST", "/api/2.2/jobs/create") == 2
    assert result.code == 1
    assert result.outputs["result"] == "error"
    assert any("Cluster node type is not allowed" in e.data for e in result.errors())
    case = junit_cases(result.outputs["junit-xml"])[("integration-test staging", "deploy")]
    assert "Cluster node type is not allowed" in case.find("error").get("message")
    assert "tore down the isolated copy" in result.stderr
    assert_nothing_left(w)


def test_infrastructure_failures_are_distinct_and_retried(run_cli, ws, w, env, project):
    """The first run ends with CLOUD_FAILURE (rewritten on its way back): without --retry-infra that
    is an infrastructure failure with its own message; with it the job is started again."""
    first: dict = {}

    def cloud_failure(method, path, query, doc):
        if path.endswith("/jobs/run-now") and "run_id" in doc:
            first.setdefault("run_id", doc["run_id"])
        if path.endswith("/jobs/runs/get") and str(first.get("run_id")) in query.get("run_id", []) \
                and doc.get("state", {}).get("life_cycle_state") == "TERMINATED":
            failed = {"life_cycle_state": "INTERNAL_ERROR", "result_state": "FAILED",
                      "state_message": "Cloud provider failure: instances could not be acquired"}
            status = {"state": "TERMINATED", "termination_details": {
                "code": "CLOUD_FAILURE", "type": "CLOUD_FAILURE", "message": failed["state_message"]}}
            doc = {**doc, "state": failed, "status": status,
                   "tasks": [{**t, "state": failed, "status": status} for t in doc.get("tasks", [])]}
        return doc

    with Proxy(ws.url) as proxy:
        proxy.rewrite(cloud_failure)
        bad = it(run_cli, {**env, "STACKCI_HOST": proxy.url}, project, "--job", TRAIN)
        assert bad.code == 1
        assert bad.outputs["result"] == "infrastructure"
        assert any("the platform failed (infrastructure, not your code)" in e.data for e in bad.errors())
        assert any(c.find("error") is not None for c in junit_cases(bad.outputs["junit-xml"]).values())

        first.clear()
        good = it(run_cli, {**env, "STACKCI_HOST": proxy.url}, project, "--job", TRAIN, "--retry-infra", "1")
    assert good.code == 0, good.stderr
    assert good.outputs["result"] == "success"
    assert "failed because of the platform, not the code; re-running it (1 of 1)" in good.stderr
    assert json.loads(good.outputs["run-ids"])[TRAIN] != first["run_id"]
    assert "after 1 re-run (--retry-infra)" in good.summary


@pytest.mark.parametrize("args, needle, env_change", [
    (["--job", "no_such_job"], "unknown job key 'no_such_job' in target staging", {}),
    (["--job", TRAIN, "-t", "nohost"], "the target sets no workspace.host",
     {"DATABRICKS_HOST": "", "STACKCI_HOST": ""}),
    (["--job", TRAIN, "--timeout", "soon"], "--timeout: 'soon' is not a duration", {}),
    (["--job", TRAIN, "--job-param", "novalue"], "--job-param 'novalue' is not key=value", {}),
    (["--job", TRAIN, "--isolation-id", "///"], "has no letters or digits", {}),
], ids=["unknown-job", "no-host", "bad-duration", "param-without-equals", "bad-isolation-id"])
def test_bad_input_is_one_line_exit_2_and_nothing_is_deployed(run_cli, w, env, project, args, needle, env_change):
    text = (project / "databricks.yml").read_text()
    (project / "databricks.yml").write_text(text + "\n  nohost:\n    variables:\n      catalog_name: nohost\n")
    result = run_cli(["integration-test", "-t", "staging", "-p", str(project), "--isolation-id", "pr1", *args],
                     env={**env, **env_change})
    assert result.code == 2, result.stderr
    assert len(result.errors()) == 1 and needle in result.errors()[0].data, result.errors()
    assert "Traceback" not in result.stderr
    assert jobs_by_name(w) == {} and tree(w, f"/Workspace/Users/{USER}") == {}


def test_no_isolation_id_outside_ci_is_bad_input(run_cli, w, env, project):
    result = run_cli(["integration-test", "-t", "staging", "-p", str(project), "--job", TRAIN], env=env,
                     platform="local")
    assert result.code == 2
    assert "pass --isolation-id" in result.stderr
    assert jobs_by_name(w) == {}


def test_the_remove_hint_repeats_how_the_workspace_was_reached():
    from stackci.runs.integration import _remove_hint

    hint = _remove_hint({"project": "ml project", "host_option": "https://adb-1.azuredatabricks.net",
                         "profile": "staging", "user": "ci@example.com", "variables": ("catalog=dev",)},
                        "staging", "pr7-1")
    assert hint == ("stackci gc -t staging --isolation-id pr7-1 -p 'ml project' --host https://adb-1.azuredatabricks.net "
                    "--profile staging --user ci@example.com --var catalog=dev")
    assert _remove_hint({"project": ".", "host_option": None, "profile": None, "user": " "}, "test", "x") == \
        "stackci gc -t test --isolation-id x"


def test_a_signal_during_the_teardown_of_a_passed_run_says_so(run_cli, w, env, project, monkeypatch):
    import os

    from stackci.runs import integration

    finish = integration._finish

    def finish_with_a_sigterm(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)      # held: the teardown completes first
        return finish(*args, **kwargs)

    monkeypatch.setattr(integration, "_finish", finish_with_a_sigterm)
    result = it(run_cli, env, project, "--job", TRAIN)
    assert result.code == 130, result.stderr
    assert result.outputs["result"] == "success"
    said = " ".join(e.data for e in result.errors()) + result.stderr
    assert "was interrupted: during the teardown, after its runs had ended (success); isolated copy pr1: removed" \
        in said, said
    assert "runs were cancelled" not in said
    assert_nothing_left(w)
