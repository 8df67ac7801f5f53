"""``stackci rehearse`` end to end: the example project through every stage, and broken copies
that must stop at the right stage with the right message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rehearse_support import EXAMPLE, client, git, workspace_of

STAGES = ["setup", "unit-tests", "validate", "integration-test", "deploy-staging", "cut-release", "deploy-prod",
          "smoke-run"]


@pytest.fixture(scope="module")
def passed(rehearse):
    """One rehearsal of examples/project, kept, shared by the assertions below."""
    return rehearse()


def test_example_project_passes_every_stage(passed):
    assert passed.code == 0, passed.stderr[-3000:]
    assert passed.results() == {key: "passed" for key in STAGES}
    report = passed.report
    assert report["result"] == "passed" and report["failed_stage"] is None and report["bundle"] == "churn_model"
    # progress per stage, then the table of every stage
    for number, title in enumerate(["set up", "unit tests", "validate + plan", "integration test", "deploy staging",
                                    "cut release", "deploy prod", "smoke run"]):
        assert f"rehearse: stage {number}/7: {title} passed in" in passed.stderr
        assert re.search(rf"^\s+{number}\s+{re.escape(title)}\s+passed\s+\d+\.\d\d s\s+\S", passed.stderr, re.M)
    assert "29 tests: 29 passed" in " ".join(passed.stage("unit-tests")["details"])
    # validate, plan, deploy and the smoke run all see prod without run_as: the warning is shown once
    assert passed.stderr.count("uses 'mode: production' without run_as") == 1, passed.stderr
    assert "isolated copy 'rehearsal': removed" in passed.stage("integration-test")["details"]
    assert "version 0.1.0: tag v0.1.0 and branch release/v0.1.0" in passed.stage("cut-release")["details"][0]
    # every stage ran the block CI runs
    commands = {s["stage"]: s["commands"] for s in report["stages"]}
    assert commands["integration-test"][0].startswith("integration-test -t test ")
    assert commands["deploy-prod"][0].startswith("deploy -t prod ") and "--require-branch 'release/v*'" in \
        commands["deploy-prod"][0]
    assert commands["smoke-run"][0].startswith("run-job -t prod --job model_training_job")


def test_prod_jobs_exist_with_the_release_tag_and_the_smoke_run(passed):
    assert passed.code == 0
    with workspace_of(passed.work_dir) as ws:
        w = client(ws)
        jobs = {j.settings.name: w.jobs.get(j.job_id) for j in w.jobs.list()}
        assert set(jobs) == {f"{t}-churn_model-{j}" for t in ("staging", "prod")
                             for j in ("model-training-job", "batch-inference-job")}, "the isolated copy is gone"
        for target, tag in (("prod", "v0.1.0"), ("staging", None)):
            job = jobs[f"{target}-churn_model-model-training-job"]
            assert job.settings.tags.get("stackci-version-tag") == tag
            assert job.settings.tags.get("stackci-branch") == ("release/v0.1.0" if target == "prod" else "main")
        prod = jobs["prod-churn_model-model-training-job"]
        runs = list(w.jobs.list_runs(job_id=prod.job_id))
        assert len(runs) == 1 and runs[0].state.result_state.value == "SUCCESS"
        links = dict((link["label"], link["url"]) for link in passed.stage("smoke-run")["links"])
        assert links["model_training_job run"].endswith(f"#job/{prod.job_id}/run/{runs[0].run_id}")


def test_origin_has_the_release_branch_and_tag_at_the_merge(passed):
    assert passed.code == 0
    origin = passed.work_dir / "origin.git"
    main = git(origin, "rev-parse", "refs/heads/main")
    assert git(origin, "rev-parse", "refs/heads/release/v0.1.0") == main
    assert git(origin, "rev-parse", "refs/tags/v0.1.0^{commit}") == main
    assert git(origin, "cat-file", "-t", "refs/tags/v0.1.0") == "tag"            # annotated, with the notes
    assert "add churn_model" in git(origin, "tag", "-l", "--format=%(contents)", "v0.1.0")
    parents = git(origin, "rev-list", "--parents", "-n", "1", "refs/heads/main").split()
    assert len(parents) == 3, "main is the merge of the pull request"
    assert git(origin, "show", "-s", "--format=%s", "refs/heads/main") == "Merge pull request #1 from feature/rehearsal"


def test_keep_says_where_the_data_is_and_how_to_serve_it_again(passed):
    assert passed.code == 0
    data = passed.work_dir / "workspace"
    assert f"kept {passed.work_dir}: the workspace data in {data}" in passed.stderr
    port = passed.report["workspace_url"].rsplit(":", 1)[1]
    assert f"stackci workspace serve --data-dir {data} --port {port}" in passed.stderr
    assert (data / "workspace.sqlite3").is_file()


def test_the_links_of_a_kept_rehearsal_work_again_on_the_same_port(passed):
    import urllib.parse

    import requests
    from stackci.workspace import LocalWorkspace

    assert passed.code == 0
    links = [link["url"] for stage in passed.report["stages"] for link in stage["links"]]
    assert any("/jobs/" in u for u in links) and any("#job/" in u for u in links), links
    port = int(passed.report["workspace_url"].rsplit(":", 1)[1])
    with LocalWorkspace(passed.work_dir / "workspace", port=port) as ws:
        assert ws.url == passed.report["workspace_url"]
        for url in links:
            parts = urllib.parse.urlsplit(url)
            page = requests.get(url, timeout=10)
            assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html"), url
            job_run = re.fullmatch(r"job/(\d+)/run/(\d+)", parts.fragment)
            if job_run:                                   # what the page's script opens
                run_page = requests.get(f"{ws.url}/jobs/{job_run[1]}/runs/{job_run[2]}", timeout=10)
                assert run_page.status_code == 200 and "TERMINATED · SUCCESS" in run_page.text, url


def test_a_failing_unit_test_stops_at_unit_tests(rehearse, broken_copy):
    project = broken_copy({"tests/test_churn_pipeline.py": lambda text: text + (
        "\n\ndef test_rehearsal_breaks_here():\n    assert 1 + 1 == 3, 'the churn threshold moved'\n")})
    run = rehearse(project=project, keep=False)
    assert run.code == 1, run.stderr[-3000:]
    assert run.results() == {"setup": "passed", "unit-tests": "failed",
                             **{key: "not run" for key in STAGES[2:]}}
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: stackci: failed: rehearsal failed at stage 1/7 (unit tests): unit tests failed: "
                           "1 failed and 0 errored of 30 tests; in CI, the pull request's unit-tests check would fail")
    # the failing test, at the user's file (not the sandbox's copy), with its message
    details = run.stage("unit-tests")["details"]
    assert any(d.startswith(f"{project}/tests/test_churn_pipeline.py:") and "test_rehearsal_breaks_here failed: "
               "AssertionError: the churn threshold moved" in d for d in details), details
    assert "Traceback" not in run.stderr
    assert not run.work_dir.exists(), "without --keep the rehearsal leaves nothing behind"


def train_fails(text: str) -> str:
    """The Train notebook raises before it hands on the model (a bug the unit tests cannot see)."""
    last = text.rindex("dbutils.notebook.exit(")
    return text[:last] + "raise RuntimeError('feature table churn_features is unreachable')\n" + text[last:]


def test_a_failing_integration_task_stops_at_the_integration_test(rehearse, broken_copy):
    project = broken_copy({"training/notebooks/Train.py": train_fails})
    run = rehearse(project=project)
    assert run.code == 1, run.stderr[-3000:]
    results = run.results()
    assert [results[k] for k in STAGES] == ["passed", "passed", "passed", "failed", "not run", "not run", "not run",
                                            "not run"]
    assert "rehearsal failed at stage 3/7 (integration test): integration test" in run.stderr
    assert "and stop the flow before deploy staging, cut release, deploy prod, smoke run" in run.stderr
    stage = run.stage("integration-test")
    assert any("Train failed" in d and "feature table churn_features is unreachable" in d for d in stage["details"])
    assert "isolated copy 'rehearsal': removed" in stage["details"]
    assert any(label == "model_training_job run" for label, _ in ((x["label"], x["url"]) for x in stage["links"]))
    with workspace_of(run.work_dir) as ws:
        w = client(ws)
        assert list(w.jobs.list()) == [], "the isolated copy was removed and staging never deployed"
        from databricks.sdk.errors import NotFound
        bundles = "/Workspace/Users/local-user@stackci.local/.bundle/churn_model"
        with pytest.raises(NotFound):
            w.workspace.get_status(f"{bundles}/staging")
        assert [o.path for o in w.workspace.list(f"{bundles}/test-ci")] == []
        # the failed run itself is still there to look at
        runs = list(w.jobs.list_runs())
        assert len(runs) == 1 and runs[0].state.result_state.value == "FAILED"


def test_a_missing_target_is_refused_before_anything_runs(rehearse, broken_copy):
    def drop_test_target(text: str) -> str:
        start, end = text.index("  # Integration tests run here"), text.index("  staging:")
        return text[:start] + text[end:]

    run = rehearse(project=broken_copy({"databricks.yml": drop_test_target}), keep=False, timeout=60)
    assert run.code == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("error: stackci: bad input: --test-target 'test' (the default) is not a target of "
                               "the bundle (targets: dev, staging, prod); pass --test-target with the target your CI "
                               "uses for the integration test")
    assert "integration-test check of every pull request would fail on it the same way" in lines[0]
    assert "--target (STACKCI_TARGET)" not in lines[0]
    assert not run.work_dir.exists()


def test_a_bundle_the_engine_does_not_deploy_cannot_be_rehearsed(rehearse, broken_copy):
    pipeline = "resources:\n  pipelines:\n    etl:\n      name: ${bundle.target}-etl\n"
    run = rehearse(project=broken_copy({"resources/etl-pipeline.yml": lambda _: pipeline}), keep=False)
    assert run.code == 2, run.stderr[-3000:]
    assert run.results()["validate"] == "failed" and run.results()["integration-test"] == "not run"
    assert run.stage("validate")["engine_limit"] == "resources.pipelines (etl)"
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: stackci: bad input: cannot rehearse this bundle: stackci's deploy engine does not "
                           "deploy resources.pipelines (etl), and a rehearsal deploys with that engine only (it has "
                           "no --engine cli)"), last
    assert "engine: cli (STACKCI_ENGINE=cli)" in last
    assert not run.work_dir.exists()


@pytest.mark.parametrize("project, args, message", [
    (Path("nowhere"), [], "project 'nowhere' does not exist"),
    (EXAMPLE, ["--branch-pattern", "release/current"], "--branch-pattern 'release/current' has no {version}"),
    (EXAMPLE, ["--python", "/no/such/python"], "python interpreter '/no/such/python' does not exist"),
    (EXAMPLE, ["--timeout", "soon"], "--timeout: 'soon' is not a duration"),
    (EXAMPLE, ["--var", "novalue"], "--var 'novalue' is not of the form name=value"),
    (EXAMPLE, ["--bump", "huge"], "Invalid value for '--bump'"),
    (EXAMPLE, ["--test-target", "nope"], "--test-target 'nope' is not a target of the bundle (targets: dev, test, "
                                         "staging, prod); pass --test-target with the target your CI uses"),
    (EXAMPLE, ["--prod-target", "live"], "--prod-target 'live' is not a target of the bundle"),
    (EXAMPLE, ["--job", "nope"], "--job 'nope' is not a job of the bundle (jobs: batch_inference_job, "
                                 "model_training_job)"),
    (EXAMPLE, ["--smoke-job", "nope"], "--smoke-job 'nope' is not a job of the bundle"),
], ids=["no-project", "pattern", "python", "timeout", "var", "bump", "test-target", "prod-target", "job",
        "smoke-job"])
def test_bad_input_is_one_line_exit_2_and_creates_nothing(rehearse, tmp_path, project, args, message):
    run = rehearse(*args, project=project, cwd=tmp_path, timeout=60)
    assert run.code == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("error: "), run.stderr
    assert not run.work_dir.exists()


def test_a_folder_without_a_bundle_is_refused(rehearse, tmp_path):
    run = rehearse(project=tmp_path, timeout=60)
    assert run.code == 2 and f"{tmp_path} has no databricks.yml" in run.stderr
    assert not run.work_dir.exists()


def test_the_default_project_is_the_checkouts_example(tmp_path):
    from stackci.rehearse.sandbox import default_project, resolve_project

    assert default_project(tmp_path) == EXAMPLE.resolve()
    assert resolve_project(None, tmp_path) == EXAMPLE.resolve()


def test_the_dense_poll_schedule_of_a_rehearsal_is_scoped():
    from stackci.runs.wait import Schedule, Waiter, use_schedule

    dense = Schedule(ramp=(0.1,), max_interval=0.25)
    with use_schedule(dense):
        assert Waiter(client=None).schedule is dense
    assert Waiter(client=None).schedule == Schedule(), "CI keeps the default ramp"


def test_a_task_that_needs_spark_is_not_blamed_on_the_project(rehearse, broken_copy):
    """The local workspace has no Spark: the rehearsal says so instead of predicting a CI failure."""
    def reads_a_table(text: str) -> str:
        last = text.rindex("dbutils.notebook.exit(")
        return text[:last] + "features = spark.table('ml.churn_features')\n" + text[last:]

    run = rehearse(project=broken_copy({"training/notebooks/Train.py": reads_a_table}), keep=False)
    assert run.code == 1
    stage = run.stage("integration-test")
    assert stage["result"] == "failed" and "Spark" in stage["local_only"]
    last = run.stderr.strip().splitlines()[-1]
    assert "a task needs Spark, which the local workspace does not have" in last
    assert "so this says nothing about the pull request's integration-test check in CI" in last
    assert "would fail the same way" not in last


def test_an_unexpected_error_in_a_stage_fails_that_stage(rehearse, tmp_path):
    # a stage that breaks with something no block reports (here an OSError raised by cut-release,
    # as a full disk would): that stage fails, the rest do not run, the report never says passed
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(
        "from stackci.rehearse import flow\n"
        "def cut_release(self, stage):\n"
        "    raise OSError(28, 'No space left on device')\n"
        "flow.Rehearsal.cut_release = cut_release\n")
    run = rehearse(keep=False, env={"PYTHONPATH": str(inject)})
    assert run.code == 1, run.stderr[-3000:]
    assert run.report["result"] == "failed" and run.report["failed_stage"] == "cut-release"
    assert [run.results()[k] for k in STAGES[4:]] == ["passed", "failed", "not run", "not run"]
    assert run.stage("cut-release")["message"] == "unexpected OSError: [Errno 28] No space left on device"
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: stackci: failed: rehearsal failed at stage 5/7 (cut release): unexpected OSError")
    assert "Traceback" not in run.stderr and "passed" not in run.stderr.splitlines()[-1]


def test_the_older_environments_key_names_the_targets_too(rehearse, broken_copy):
    # 'environments:' is what bundles called their targets at first; validate and deploy take it
    run = rehearse(project=broken_copy({"databricks.yml": lambda text: text.replace("\ntargets:\n",
                                                                                    "\nenvironments:\n")}),
                   keep=False)
    assert run.code == 0, run.stderr[-3000:]
    assert run.report["result"] == "passed"
