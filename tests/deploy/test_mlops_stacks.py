"""A project shaped like an MLOps Stacks one (tests/fixtures/mlops-stacks-project) deploys unchanged:
validate every target, plan, deploy, a no-op redeploy, permission and grant changes, a run, destroy,
against the local workspace, with the ACLs and grants read back through databricks-sdk."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from databricks.sdk import errors

from deploy_support import USER, jobs_by_name, read_state, tree  # type: ignore[import-not-found]

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "mlops-stacks-project"
JOBS = ("model_training_job", "batch_inference_job")
ACL_PATHS = r"^/api/2\.[01]/(permissions|unity-catalog/permissions)/"


def git(*args, cwd=None) -> str:
    env = {"GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.com", "GIT_COMMITTER_NAME": "Dev",
           "GIT_COMMITTER_EMAIL": "dev@example.com", "PATH": "/usr/bin:/bin:/usr/local/bin",
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd or "/tmp")}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def stack(tmp_path):
    """The fixture project as a git checkout on main, with a bare 'origin' it was pushed to."""
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURE, repo, ignore=shutil.ignore_patterns("__pycache__", ".databricks"))
    origin = tmp_path / "origin.git"
    git("init", "-q", "--bare", str(origin), cwd=tmp_path)
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "initial project", cwd=repo)
    git("remote", "add", "origin", str(origin), cwd=repo)
    git("push", "-q", "origin", "main", cwd=repo)
    return {"root": repo / "taxi_fare", "origin": str(origin), "commit": git("rev-parse", "HEAD", cwd=repo)}


def acl(w, object_type: str, object_id) -> dict:
    """The direct permissions of an object: {principal: level} (admins' inherited CAN_MANAGE left out)."""
    out = {}
    for entry in w.permissions.get(object_type, str(object_id)).access_control_list:
        for perm in entry.all_permissions:
            if not perm.inherited:
                out[entry.user_name or entry.group_name or entry.service_principal_name] = perm.permission_level.value
    return out


def grants(w, full_name: str) -> dict:
    return {a.principal: sorted(p.value for p in a.privileges)
            for a in w.grants.get("function", full_name).privilege_assignments or []}


def test_every_target_validates_with_the_template_s_yaml_habits(run_cli, stack):
    root = stack["root"]
    text = (root / "resources/ml-artifacts-resource.yml").read_text().splitlines()
    for target in ("dev", "staging", "prod", "test"):
        result = run_cli(["validate", "-t", target, "--project", str(root), "--user", USER])
        assert result.code == 0, result.stderr
        artifacts = "resources/ml-artifacts-resource.yml"
        warnings = [(artifacts if str(c.properties.get("file")).endswith(artifacts) else c.properties.get("file"),
                     c.properties.get("line"), c.data) for c in result.commands if c.name == "warning"]
        # the mapping parked under the top-level `permissions` (where a list belongs): a warning, not an error
        assert (artifacts, str(text.index("permissions: &permissions") + 1)) in {(f, n) for f, n, _ in warnings}
        assert any("permissions must be a list, not a mapping" in d for _, _, d in warnings)
        # fields the schema does not know: warned at their line, as the Databricks CLI does
        assert any(f == artifacts and n == str(text.index("      depends_on:") + 1) and "depends_on" in d
                   for f, n, d in warnings)
        assert any("experiments.experiment.description" in d for _, _, d in warnings)
        # keys that only hold anchors are silent
        assert not any(word in d for _, _, d in warnings
                       for word in ("new_cluster", "common_permissions", "'grants'", "unknown field 'permissions'"))
        assert len(warnings) == 3, warnings
    dev = run_cli(["validate", "-t", "dev", "--project", str(root), "--user", USER, "-o", "json"], platform="local")
    doc = json.loads(dev.stdout)
    job = doc["settings"]["resources"]["jobs"]["model_training_job"]
    assert job["job_clusters"][0]["new_cluster"]["spark_version"] == "15.3.x-cpu-ml-scala2.12"
    assert job["permissions"] == [{"level": "CAN_VIEW", "group_name": "users"}]
    assert "new_cluster" not in doc["settings"] and "grants" not in doc["settings"]
    assert "permissions" not in doc["settings"]
    model = doc["settings"]["resources"]["registered_models"]["model"]
    assert model["grants"] == [{"privileges": ["EXECUTE"], "principal": "account users"}]
    assert "depends_on" not in model


def test_deploy_redeploy_acl_changes_and_destroy(deploy, w, stack, requests_counter):
    root, origin, commit = stack["root"], stack["origin"], stack["commit"]
    plan = deploy("-o", "json", command="plan", root=root, platform="local")
    assert plan.code == 0, plan.stderr
    assert sorted((r["kind"], r["action"]) for r in json.loads(plan.stdout)["resources"]) == [
        ("experiments", "create"), ("jobs", "create"), ("jobs", "create"), ("registered_models", "create")]

    first = deploy(root=root)
    assert first.code == 0, first.stderr
    assert "4 created, 0 changed, 0 deleted, 0 unchanged" in first.stderr
    assert first.outputs["created"] == "4" and first.outputs["files-uploaded"] == "8"
    ids = {k: v["id"] for k, v in json.loads(first.outputs["jobs"]).items()}
    assert sorted(ids) == sorted(JOBS)

    # the ACLs and grants the resource files ask for, with the deploying identity kept in control
    for key in JOBS:
        assert acl(w, "jobs", ids[key]) == {USER: "IS_OWNER", "users": "CAN_VIEW"}
    exp = w.experiments.get_by_name(f"/Users/{USER}/staging-taxi_fare-experiment").experiment
    assert acl(w, "experiments", exp.experiment_id) == {USER: "CAN_MANAGE", "users": "CAN_READ"}
    model = "staging.taxi_fare.taxi_fare-model"
    assert w.registered_models.get(model).comment == "Unity Catalog model of the taxi_fare project, staging target."
    assert grants(w, model) == {"account users": ["EXECUTE"]}
    # the git facts reach the task parameters; the anchored cluster reaches the job
    training = w.jobs.get(ids["model_training_job"]).settings
    assert training.tasks[0].notebook_task.base_parameters["git_source_info"] == \
        f"url:{origin}; branch:main; commit:{commit}"
    assert training.job_clusters[0].new_cluster.num_workers == 2
    assert w.jobs.get(ids["batch_inference_job"]).settings.tasks[0].new_cluster.spark_version.startswith("15.3")
    state = read_state(w, f"/Workspace/Users/{USER}/.bundle/taxi_fare/staging")
    assert all(e.get("acl") for kind in state["resources"].values() for e in kind.values())

    # a redeploy of the same commit sends no permission or grant request at all
    requests_counter.start(ACL_PATHS)
    again = deploy(root=root)
    assert requests_counter.stop() == 0
    assert again.code == 0 and "0 created, 0 changed, 0 deleted, 4 unchanged" in again.stderr

    # a changed ACL is an update of that ACL only: no job is reset
    workflow = root / "resources/model-workflow-resource.yml"
    workflow.write_text(workflow.read_text().replace("""    - level: CAN_VIEW
      group_name: users
""", """    - level: CAN_MANAGE_RUN
      group_name: users
    - level: CAN_VIEW
      user_name: auditor@example.com
"""))
    artifacts = root / "resources/ml-artifacts-resource.yml"
    artifacts.write_text(artifacts.read_text().replace("""      principal: account users
""", """      principal: account users
    - privileges: [EXECUTE, APPLY_TAG]
      principal: ml-engineers
"""))
    plan = deploy("-o", "json", command="plan", root=root, platform="local")
    changes = {f"{r['kind']}.{r['key']}": (r["action"], r["reason"]) for r in json.loads(plan.stdout)["resources"]}
    assert changes == {"jobs.model_training_job": ("update", "permissions changed"),
                       "jobs.batch_inference_job": ("unchanged", ""),
                       "experiments.experiment": ("unchanged", ""),
                       "registered_models.model": ("update", "grants changed")}
    requests_counter.start(r"^/api/2\.[12]/jobs/reset$")
    changed = deploy(root=root)
    assert requests_counter.stop() == 0
    assert changed.code == 0, changed.stderr
    assert "0 created, 2 changed, 0 deleted, 2 unchanged" in changed.stderr
    assert acl(w, "jobs", ids["model_training_job"]) == {USER: "IS_OWNER", "users": "CAN_MANAGE_RUN",
                                                         "auditor@example.com": "CAN_VIEW"}
    assert acl(w, "jobs", ids["batch_inference_job"]) == {USER: "IS_OWNER", "users": "CAN_VIEW"}
    assert grants(w, model) == {"account users": ["EXECUTE"], "ml-engineers": ["APPLY_TAG", "EXECUTE"]}

    # a principal the bundle no longer names loses what it was granted
    artifacts.write_text(artifacts.read_text().replace("""    - privileges:
        - EXECUTE
      principal: account users
""", ""))
    assert deploy(root=root).code == 0
    assert grants(w, model) == {"ml-engineers": ["APPLY_TAG", "EXECUTE"]}

    gone = deploy(command="destroy", root=root)
    assert gone.code == 0, gone.stderr
    assert jobs_by_name(w) == {}
    with pytest.raises(errors.NotFound):
        w.grants.get("function", model)
    assert w.experiments.get_experiment(exp.experiment_id).experiment.lifecycle_stage == "deleted"
    assert tree(w, f"/Workspace/Users/{USER}/.bundle/taxi_fare") == {}


def test_the_training_job_runs_on_the_test_target(deploy, w, stack):
    from databricks.sdk.service.jobs import RunResultState

    result = deploy(target="test", root=stack["root"])
    assert result.code == 0, result.stderr
    job_id = json.loads(result.outputs["jobs"])["model_training_job"]["id"]
    run = w.jobs.run_now(job_id).result(timeout=__import__("datetime").timedelta(minutes=3))
    assert run.state.result_state == RunResultState.SUCCESS, run.state
    tasks = {t.task_key: t for t in run.tasks}
    trained = json.loads(w.jobs.get_run_output(tasks["Train"].run_id).notebook_output.result)
    assert 2.0 < trained["per_mile"] < 2.2 and trained["mae"] < 1.5
    deployed = json.loads(w.jobs.get_run_output(tasks["ModelDeployment"].run_id).notebook_output.result)
    assert deployed == {"deployed": "test.taxi_fare.taxi_fare-model", "env": "test"}


def test_a_grant_the_workspace_refuses_fails_the_deploy_and_the_fix_converges(deploy, w, stack):
    root = stack["root"]
    artifacts = root / "resources/ml-artifacts-resource.yml"
    good = artifacts.read_text()
    # SELECT is a Unity Catalog privilege, but not one a registered model has
    artifacts.write_text(good.replace("        - EXECUTE\n", "        - SELECT\n", 1))
    failed = deploy(root=root)
    assert failed.code == 1
    [error] = failed.errors()
    assert "registered_models.model: setting its grants failed: INVALID_PARAMETER_VALUE" in error.data
    assert "Privilege SELECT is not applicable" in error.data
    model = "staging.taxi_fare.taxi_fare-model"
    assert w.registered_models.get(model).full_name == model      # created and recorded, without grants
    state = read_state(w, f"/Workspace/Users/{USER}/.bundle/taxi_fare/staging")
    assert state["resources"]["registered_models"]["model"]["id"] == model
    assert "acl" not in state["resources"]["registered_models"]["model"]

    artifacts.write_text(good)
    fixed = deploy(root=root)
    assert fixed.code == 0, fixed.stderr
    assert grants(w, model) == {"account users": ["EXECUTE"]}
    assert sorted(jobs_by_name(w)) == ["staging-taxi_fare-batch-inference-job", "staging-taxi_fare-model-training-job"]
    assert all(len(v) == 1 for v in jobs_by_name(w).values())


def test_without_unity_catalog_the_model_is_a_workspace_registry_model(deploy, w, stack, requests_counter):
    root = stack["root"]
    shutil.copy(FIXTURE / "variants/ml-artifacts-resource.workspace-registry.yml",
                root / "resources/ml-artifacts-resource.yml")
    first = deploy(root=root)
    assert first.code == 0, first.stderr
    assert "4 created, 0 changed, 0 deleted, 0 unchanged" in first.stderr
    model = w.model_registry.get_model("staging-taxi_fare-model").registered_model_databricks
    assert model.description == "Registered model of the taxi_fare project, staging target."
    assert acl(w, "registered-models", model.id) == {USER: "CAN_MANAGE", "users": "CAN_READ"}
    requests_counter.start(ACL_PATHS)
    assert "0 created, 0 changed, 0 deleted, 4 unchanged" in deploy(root=root).stderr
    assert requests_counter.stop() == 0

    # a new name renames the model (same registry id, permissions kept), never a second model
    renamed = deploy("--var", "model_name=fare-model", root=root)
    assert renamed.code == 0, renamed.stderr
    # (the two jobs pass the model's name to their notebooks, so they change too)
    assert "0 created, 3 changed, 0 deleted, 1 unchanged" in renamed.stderr
    moved = w.model_registry.get_model("staging-fare-model").registered_model_databricks
    assert moved.id == model.id and acl(w, "registered-models", moved.id)["users"] == "CAN_READ"
    assert [m.name for m in w.model_registry.list_models()] == ["staging-fare-model"]

    # prod: the model's description refers to the jobs, so it is applied after them
    prod = deploy(target="prod", root=root)
    assert prod.code == 0, prod.stderr
    jobs = json.loads(prod.outputs["jobs"])
    text = w.model_registry.get_model("prod-taxi_fare-model").registered_model_databricks.description
    assert f"Trained by job {jobs['model_training_job']['id']}, scored by job\n" \
           f"{jobs['batch_inference_job']['id']}." in text

    assert deploy(command="destroy", root=root, extra_env={"STACKCI_VAR": "model_name=fare-model"}).code == 0
    assert sorted(m.name for m in w.model_registry.list_models()) == ["prod-taxi_fare-model"]
    with pytest.raises(errors.NotFound):
        w.model_registry.get_permissions(model.id)


def test_a_workspace_model_created_but_never_recorded_is_adopted(deploy, w, stack):
    """The narrowest window of an interrupted deploy: the model exists, the state never heard of it."""
    import base64

    from databricks.sdk.service.workspace import ImportFormat

    root = stack["root"]
    shutil.copy(FIXTURE / "variants/ml-artifacts-resource.workspace-registry.yml",
                root / "resources/ml-artifacts-resource.yml")
    assert deploy(root=root).code == 0
    root_path = f"/Workspace/Users/{USER}/.bundle/taxi_fare/staging"
    state = read_state(w, root_path)
    entry = state["resources"]["models"].pop("model")
    state["pending"]["models.model"] = {"name": entry["name"], "dkey": "unused", "since": "now"}
    w.workspace.import_(f"{root_path}/state/deployment.json", overwrite=True, format=ImportFormat.AUTO,
                        content=base64.b64encode(json.dumps(state).encode()).decode())
    result = deploy(root=root)
    assert result.code == 0, result.stderr
    assert "adopted models.model" in result.stderr
    assert [m.name for m in w.model_registry.list_models()] == ["staging-taxi_fare-model"]
    model_id = w.model_registry.get_model("staging-taxi_fare-model").registered_model_databricks.id
    assert acl(w, "registered-models", model_id) == {USER: "CAN_MANAGE", "users": "CAN_READ"}
    assert read_state(w, root_path)["resources"]["models"]["model"]["acl"]
