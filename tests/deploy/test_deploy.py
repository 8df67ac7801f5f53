"""``stackci plan / deploy / destroy`` of the example project against the local workspace,
read back through databricks-sdk: what a user sees and what the workspace holds."""

from __future__ import annotations

import json

import pytest

from databricks.sdk.service.workspace import ImportFormat

from deploy_support import USER, jobs_by_name, read_state, remote_text, sha, tree, write_bundle  # type: ignore[import-not-found]

ROOT = f"/Workspace/Users/{USER}/.bundle/churn_model"
TRAIN = "staging-churn_model-model-training-job"
BATCH = "staging-churn_model-batch-inference-job"


def test_first_deploy_creates_files_experiment_model_and_jobs(deploy, w, project):
    result = deploy()
    assert result.code == 0, result.stderr
    assert "4 created, 0 changed, 0 deleted, 0 unchanged" in result.stderr
    assert "files: 23 uploaded, 0 deleted, 0 unchanged" in result.stderr
    assert result.outputs["created"] == "4" and result.outputs["files-uploaded"] == "23"

    jobs = jobs_by_name(w)
    assert sorted(jobs) == [BATCH, TRAIN] and all(len(v) == 1 for v in jobs.values())
    outputs = json.loads(result.outputs["jobs"])
    assert outputs["model_training_job"]["id"] == jobs[TRAIN][0].job_id
    assert outputs["model_training_job"]["url"].endswith(f"/jobs/{jobs[TRAIN][0].job_id}")

    train = jobs[TRAIN][0].settings
    assert train.deployment.kind.value == "BUNDLE"
    assert train.deployment.metadata_file_path == f"{ROOT}/staging/state/deployment.json"
    assert train.edit_mode.value == "UI_LOCKED"
    assert train.tags["stackci-bundle"] == "churn_model" and train.tags["stackci-target"] == "staging"
    assert len(train.tags["stackci-deployment-key"]) == 32

    files = tree(w, f"{ROOT}/staging/files")
    # notebooks lose their extension and are notebooks; everything else is a workspace file
    assert files[f"{ROOT}/staging/files/training/notebooks/Train"] == "NOTEBOOK"
    assert files[f"{ROOT}/staging/files/churn/data.py"] == "FILE"
    assert train.tasks[0].notebook_task.notebook_path == f"{ROOT}/staging/files/training/notebooks/Train"
    assert sum(1 for kind in files.values() if kind != "DIRECTORY") == 23
    assert remote_text(w, f"{ROOT}/staging/files/churn/data.py") == (project / "churn/data.py").read_text()

    exp = w.experiments.get_by_name("/Shared/staging-churn_model-experiment").experiment
    assert exp.lifecycle_stage == "active"
    assert w.registered_models.get("staging.churn_model.churn_model").comment.startswith("Logistic-regression")
    # the resource files' permissions and grants, MLOps Stacks style (anchors merged with <<:)
    direct = {(e.user_name or e.group_name): e.all_permissions[0].permission_level.value
              for e in w.jobs.get_permissions(str(jobs[TRAIN][0].job_id)).access_control_list
              if not e.all_permissions[0].inherited}
    assert direct == {USER: "IS_OWNER", "users": "CAN_VIEW"}
    assert {(e.user_name or e.group_name): e.all_permissions[0].permission_level.value
            for e in w.experiments.get_permissions(exp.experiment_id).access_control_list
            if not e.all_permissions[0].inherited} == {USER: "CAN_MANAGE", "users": "CAN_READ"}
    [grant] = w.grants.get("function", "staging.churn_model.churn_model").privilege_assignments
    assert grant.principal == "account users" and [p.value for p in grant.privileges] == ["EXECUTE"]

    state = read_state(w, f"{ROOT}/staging")
    assert state["resources"]["jobs"]["model_training_job"]["id"] == jobs[TRAIN][0].job_id
    assert state["files"]["churn/data.py"]["sha256"] == sha((project / "churn/data.py").read_text())
    assert state["deployment"]["status"] == "complete" and state["pending"] == {}
    assert state["deployment"]["actor"] == USER
    assert f"{ROOT}/staging/state/deploy.lock" not in tree(w, f"{ROOT}/staging/state")  # released
    assert "| <code>jobs.model_training_job</code> |" in result.summary
    assert result.errors() == []


def test_noop_redeploy_changes_nothing_with_few_requests(deploy, w, requests_counter):
    assert deploy().code == 0
    before = {name: jobs[0].job_id for name, jobs in jobs_by_name(w).items()}
    requests_counter.start()
    again = deploy()
    count = requests_counter.stop()
    assert again.code == 0, again.stderr
    assert "0 created, 0 changed, 0 deleted, 4 unchanged" in again.stderr
    assert "files: 0 uploaded, 0 deleted, 23 unchanged" in again.stderr
    assert again.outputs["files-uploaded"] == "0" and again.outputs["unchanged"] == "4"
    assert {name: jobs[0].job_id for name, jobs in jobs_by_name(w).items()} == before
    # Me, state, lock (create, read back, read, delete), file folder, 4 lookups, one state write
    assert count <= 12, count

    requests_counter.start(r"^/api/2\.0/workspace/import$")
    assert deploy().code == 0
    assert requests_counter.stop() == 2  # the lock and the state record: no file is sent


def test_a_changed_file_is_the_only_upload(deploy, w, project, requests_counter):
    assert deploy().code == 0
    base = f"{ROOT}/staging/files"
    stamps = {o.path: o.modified_at for o in w.workspace.list(f"{base}/churn")}
    (project / "churn/data.py").write_text((project / "churn/data.py").read_text() + "\nCHANGED = True\n")
    requests_counter.start(r"^/api/2\.0/workspace/import$")
    result = deploy()
    imports = requests_counter.stop()
    assert result.code == 0, result.stderr
    assert result.outputs["files-uploaded"] == "1"
    assert "files: 1 uploaded, 0 deleted, 22 unchanged" in result.stderr
    assert "0 created, 0 changed, 0 deleted, 4 unchanged" in result.stderr
    assert remote_text(w, f"{base}/churn/data.py").endswith("CHANGED = True\n")
    after = {o.path: o.modified_at for o in w.workspace.list(f"{base}/churn")}
    assert [p for p in after if after[p] != stamps[p]] == [f"{base}/churn/data.py"]
    assert imports == 1 + 4   # the file; lock, intent, files record, final record


def test_renamed_job_keeps_its_id(deploy, w, project):
    assert deploy().code == 0
    job_id = jobs_by_name(w)[BATCH][0].job_id
    path = project / "resources/batch-inference-workflow-resource.yml"
    path.write_text(path.read_text().replace("-batch-inference-job", "-scoring-job"))
    plan = deploy("-o", "json", command="plan", platform="local")
    assert plan.code == 0
    actions = {r["key"]: (r["action"], r["reason"]) for r in json.loads(plan.stdout)["resources"]}
    assert actions["batch_inference_job"] == ("update", f"renamed from {BATCH!r}")
    result = deploy()
    assert result.code == 0
    assert "0 created, 1 changed, 0 deleted, 3 unchanged" in result.stderr
    jobs = jobs_by_name(w)
    assert sorted(jobs) == [TRAIN, "staging-churn_model-scoring-job"]
    assert jobs["staging-churn_model-scoring-job"][0].job_id == job_id


def test_removed_job_is_deleted(deploy, w, project):
    assert deploy().code == 0
    train_id = jobs_by_name(w)[TRAIN][0].job_id
    (project / "resources/batch-inference-workflow-resource.yml").unlink()
    result = deploy()
    assert result.code == 0, result.stderr
    assert "0 created, 0 changed, 1 deleted, 3 unchanged" in result.stderr
    assert "files: 0 uploaded, 1 deleted, 22 unchanged" in result.stderr  # the YAML file itself
    jobs = jobs_by_name(w)
    assert sorted(jobs) == [TRAIN] and jobs[TRAIN][0].job_id == train_id
    assert "batch_inference_job" not in read_state(w, f"{ROOT}/staging")["resources"]["jobs"]


def test_a_variable_changes_only_its_target(deploy, w):
    assert deploy(target="staging").code == 0
    assert deploy(target="test").code == 0
    result = deploy("--var", "validation_min_auc=0.9", target="staging")
    assert result.code == 0
    assert "0 created, 1 changed, 0 deleted, 3 unchanged" in result.stderr
    jobs = jobs_by_name(w)

    def min_auc(name):
        task = next(t for t in jobs[name][0].settings.tasks if t.task_key == "ModelValidation")
        return task.notebook_task.base_parameters["min_auc"]

    assert min_auc(TRAIN) == "0.9"
    assert min_auc("test-churn_model-model-training-job") == "0.7"
    assert deploy(target="test").outputs["unchanged"] == "4"
    # the two targets have their own state, files and models
    assert read_state(w, f"{ROOT}/test")["bundle"]["target"] == "test"
    assert w.registered_models.get("test.churn_model.churn_model").name == "churn_model"


def test_job_deleted_outside_the_deploy_is_created_again(deploy, w):
    assert deploy().code == 0
    old = jobs_by_name(w)[TRAIN][0].job_id
    w.jobs.delete(old)
    plan = deploy("-o", "json", command="plan", platform="local")
    train = next(r for r in json.loads(plan.stdout)["resources"] if r["key"] == "model_training_job")
    assert train["action"] == "create" and "deleted outside the deploy" in train["reason"]
    result = deploy()
    assert "1 created, 0 changed, 0 deleted, 3 unchanged" in result.stderr
    jobs = jobs_by_name(w)
    assert len(jobs[TRAIN]) == 1 and jobs[TRAIN][0].job_id != old


def test_plan_before_the_first_deploy_in_every_format(deploy, w):
    text = deploy(command="plan")
    assert text.code == 0
    assert "+ jobs.model_training_job" in text.stderr
    assert "4 to create, 0 to update, 0 to delete, 0 unchanged; files: 23 to upload" in text.stderr
    assert text.outputs["to-create"] == "4" and text.outputs["files-to-upload"] == "23"
    assert text.outputs["has-changes"] == "true"
    data = json.loads(deploy("-o", "json", command="plan", platform="local").stdout)
    assert data["counts"]["create"] == 4 and data["counts"]["files_upload"] == 23
    assert {r["name"] for r in data["resources"]} >= {TRAIN, BATCH}
    md = deploy("-o", "markdown", command="plan", platform="local").stdout
    assert md.startswith("### Plan: `churn_model` → `staging`")
    assert "| `jobs.model_training_job` | `staging-churn_model-model-training-job` | ➕ create | `new` |" in md
    assert jobs_by_name(w) == {} and tree(w, ROOT) == {}    # plan is read-only


def test_dry_run_prints_the_plan_and_changes_nothing(deploy, w):
    result = deploy("--dry-run")
    assert result.code == 0
    assert "4 to create" in result.stderr and "dry run: nothing was changed" in result.stderr
    assert jobs_by_name(w) == {} and tree(w, ROOT) == {}


def test_destroy_removes_everything_and_a_new_deploy_starts_over(deploy, w):
    assert deploy().code == 0
    result = deploy(command="destroy")
    assert result.code == 0, result.stderr
    assert result.outputs["deleted"] == "4" and result.outputs["files-deleted"] == "23"
    assert jobs_by_name(w) == {}
    assert tree(w, f"{ROOT}") == {}                       # files, state and lock are gone
    assert w.experiments.get_by_name("/Shared/staging-churn_model-experiment").experiment.lifecycle_stage \
        == "deleted"
    assert [m.full_name for m in w.registered_models.list(catalog_name="staging", schema_name="churn_model")] == []
    again = deploy(command="destroy")
    assert again.code == 0 and "nothing to destroy" in again.stderr
    # a fresh deploy restores the experiment it had created (same id) and creates the rest
    redeploy = deploy()
    assert redeploy.code == 0, redeploy.stderr
    assert "4 created" in redeploy.stderr
    assert w.experiments.get_by_name("/Shared/staging-churn_model-experiment").experiment.lifecycle_stage \
        == "active"


def test_destroy_leaves_objects_it_does_not_own(deploy, w):
    assert deploy().code == 0
    w.workspace.import_(f"{ROOT}/staging/files/notes.txt", content="bm90ZXM=", format=ImportFormat.AUTO)
    from databricks.sdk.service import jobs
    other = w.jobs.create(name="someone-elses-job", tasks=[jobs.Task(task_key="t", spark_python_task=jobs.SparkPythonTask(
        python_file="/Workspace/Shared/x.py"))]).job_id
    assert deploy(command="destroy").code == 0
    assert list(jobs_by_name(w)) == ["someone-elses-job"] and jobs_by_name(w)["someone-elses-job"][0].job_id == other
    assert tree(w, f"{ROOT}/staging/files") == {f"{ROOT}/staging/files/notes.txt": "FILE"}


def test_an_empty_require_branch_is_bad_input_not_a_guard_turned_off(deploy, w):
    for args in (["--require-branch", ""], ["--require-branch", "  ", "--require-branch", ""]):
        result = deploy(*args, target="prod", extra_env={"GITHUB_REF": "refs/heads/feature/x"})
        assert result.code == 2, result.stderr
        [error] = result.errors()
        assert error.data.startswith("--require-branch is empty (target 'prod'): an empty pattern would turn the "
                                     "branch guard off")
    assert jobs_by_name(w) == {}
    wrong = deploy("--require-branch", "release/*", target="prod", extra_env={"GITHUB_REF": "refs/heads/feature/x"})
    assert wrong.code == 2 and "does not match --require-branch 'release/*'" in wrong.errors()[0].data
    # an empty value in the environment is the input left out (the action's default): no guard
    assert deploy(target="test", extra_env={"STACKCI_REQUIRE_BRANCH": ""}).code == 0


@pytest.mark.parametrize("platform", ["github", "azure"])
def test_names_from_the_yaml_in_json_and_markdown_output_cannot_act_as_commands(deploy, tmp_path, platform):
    evil = "##vso[task.setvariable variable=EVIL]1 ##[error]x"      # and a line of its own below
    root = write_bundle(tmp_path / "evil", {
        "databricks.yml": "bundle: {name: evil}\ntargets:\n  staging:\n    default: true\n"
                          "    workspace: {root_path: /Workspace/Shared/evil}\n"
                          f"resources:\n  jobs:\n    j:\n      name: '{evil}'\n      tasks:\n"
                          "        - task_key: t\n          spark_python_task: {python_file: ./t.py}\n",
        "t.py": "print(1)\n"})
    outs = [deploy("-o", "json", command="plan", root=root, platform=platform).stdout,
            deploy("-o", "markdown", command="plan", root=root, platform=platform).stdout,
            deploy("-o", "json", command="validate", root=root, platform=platform).stdout]
    # the step's own commands (its masks) come first on stdout; then the document
    docs = ["\n".join(line for line in out.splitlines() if not line.startswith(("::", "##vso["))) for out in outs]
    for doc in docs:
        assert "EVIL" in doc and "##[" not in doc, doc
        if platform == "azure":
            assert "##vso[" not in doc, doc
        else:
            assert not any(line.lstrip().startswith("::") for line in doc.splitlines()), doc
    zwsp = "\u200b"
    [job] = [r for r in json.loads(docs[0])["resources"] if r["key"] == "j"]
    assert job["name"].replace(zwsp, "") == evil
    assert json.loads(docs[2])["resources"]["jobs"]["j"]["name"].replace(zwsp, "") == evil
