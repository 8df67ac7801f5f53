"""Permissions and grants through the engine on the small bundle: the top-level permissions as the
Databricks CLI applies them (every job and experiment, the bundle's folder), what a resource sets
itself, removing them, and bad input refused before anything is changed."""

from __future__ import annotations

import json

import pytest

from deploy_support import SMALL_BUNDLE, USER, jobs_by_name, read_state, tree, write_bundle  # type: ignore

ROOT = f"/Workspace/Users/{USER}/.bundle/small/staging"
TOP = """
        permissions:
          - level: CAN_VIEW
            group_name: viewers
          - level: CAN_RUN
            user_name: runner@example.com
          - level: CAN_MANAGE
            group_name: ml-admins
"""


def acl(w, object_type: str, object_id) -> dict:
    out = {}
    for entry in w.permissions.get(object_type, str(object_id)).access_control_list:
        for perm in entry.all_permissions:
            if not perm.inherited:
                out[entry.user_name or entry.group_name or entry.service_principal_name] = perm.permission_level.value
    return out


def bundle_with(tmp_path, top: str = "", job_a: str = "", name="perm"):
    files = dict(SMALL_BUNDLE)
    files["databricks.yml"] += top
    if job_a:
        files["resources/jobs.yml"] = files["resources/jobs.yml"].replace("""            a:
              name: small-a
""", """            a:
              name: small-a
""" + job_a)
    return write_bundle(tmp_path / name, files)


def test_top_level_permissions_reach_every_job_experiment_and_the_folder(deploy, w, tmp_path):
    root = bundle_with(tmp_path, TOP, job_a="""              permissions:
                - level: CAN_MANAGE
                  group_name: viewers
                - level: CAN_MANAGE
                  user_name: local-user@stackci.local
""")
    result = deploy(root=root)
    assert result.code == 0, result.stderr
    jobs = {name: v[0].job_id for name, v in jobs_by_name(w).items()}
    # CAN_RUN is CAN_MANAGE_RUN on a job; the deployer owns it
    assert acl(w, "jobs", jobs["small-b"]) == {USER: "IS_OWNER", "viewers": "CAN_VIEW",
                                               "runner@example.com": "CAN_MANAGE_RUN", "ml-admins": "CAN_MANAGE"}
    # what the job sets for a principal wins over the top level; the deployer's CAN_MANAGE becomes IS_OWNER
    assert acl(w, "jobs", jobs["small-a"]) == {USER: "IS_OWNER", "viewers": "CAN_MANAGE",
                                               "runner@example.com": "CAN_MANAGE_RUN", "ml-admins": "CAN_MANAGE"}
    # on an experiment CAN_VIEW is CAN_READ and CAN_RUN does not exist
    exp = w.experiments.get_by_name("/Shared/small-staging-exp").experiment
    assert acl(w, "experiments", exp.experiment_id) == {USER: "CAN_MANAGE", "viewers": "CAN_READ",
                                                        "ml-admins": "CAN_MANAGE"}
    # the bundle's folder: CAN_VIEW is CAN_READ there
    folder = w.workspace.get_status(ROOT)
    assert acl(w, "directories", folder.object_id) == {"viewers": "CAN_READ", "runner@example.com": "CAN_RUN",
                                                       "ml-admins": "CAN_MANAGE"}
    assert read_state(w, ROOT)["folders"]["paths"] == [ROOT]
    plan = deploy("-o", "json", command="plan", root=root, platform="local")
    doc = json.loads(plan.stdout)
    assert doc["has_changes"] is False and doc["folder_permissions"] is None

    # a changed top-level permission changes every ACL it reaches, and the folder's
    (root / "databricks.yml").write_text((root / "databricks.yml").read_text().replace("CAN_RUN", "CAN_VIEW"))
    plan = deploy("-o", "json", command="plan", root=root, platform="local")
    doc = json.loads(plan.stdout)
    # (the runner now reaches the experiment too: CAN_VIEW has an experiment level, CAN_RUN had none)
    assert {r["key"]: r["reason"] for r in doc["resources"] if r["action"] == "update"} == {
        "a": "permissions changed", "b": "permissions changed", "c": "permissions changed",
        "exp": "permissions changed"}
    assert doc["folder_permissions"]["paths"] == [ROOT]
    changed = deploy(root=root)
    assert "0 created, 4 changed, 0 deleted, 0 unchanged" in changed.stderr
    assert acl(w, "jobs", jobs["small-b"])["runner@example.com"] == "CAN_VIEW"
    assert acl(w, "experiments", exp.experiment_id)["runner@example.com"] == "CAN_READ"
    assert acl(w, "directories", folder.object_id)["runner@example.com"] == "CAN_READ"


def test_removed_permissions_leave_the_acl_and_say_so(deploy, w, tmp_path):
    job_a = """              permissions:
                - level: CAN_VIEW
                  group_name: users
"""
    root = bundle_with(tmp_path, job_a=job_a)
    assert deploy(root=root).code == 0
    job_id = jobs_by_name(w)["small-a"][0].job_id
    jobs = (root / "resources/jobs.yml")
    written = "".join(line[8:] + "\n" for line in job_a.splitlines())   # as write_bundle dedented it
    assert written in jobs.read_text()
    jobs.write_text(jobs.read_text().replace(written, ""))
    result = deploy(root=root)
    assert result.code == 0 and "0 created, 0 changed, 0 deleted, 4 unchanged" in result.stderr
    warnings = [c.data for c in result.commands if c.name == "warning"]
    assert any("jobs.a no longer sets permissions: the job keeps the ones the last deploy gave it" in d
               for d in warnings), warnings
    assert acl(w, "jobs", job_id) == {USER: "IS_OWNER", "users": "CAN_VIEW"}
    # and putting the same ones back is no change
    jobs.write_text(jobs.read_text().replace("    a:\n      name: small-a\n", "    a:\n      name: small-a\n" + written))
    assert "0 created, 0 changed, 0 deleted, 4 unchanged" in deploy(root=root).stderr


def test_a_shared_root_gets_no_folder_acl(deploy, w, tmp_path, requests_counter):
    root = bundle_with(tmp_path, TOP + """
        workspace:
          root_path: /Workspace/Shared/.bundle/small/${bundle.target}
""")
    requests_counter.start(r"^/api/2\.0/permissions/directories/")
    assert deploy(root=root).code == 0
    assert requests_counter.stop() == 0
    assert acl(w, "jobs", jobs_by_name(w)["small-c"][0].job_id)["viewers"] == "CAN_VIEW"


@pytest.mark.parametrize("where, text, message", [
    ("databricks.yml", TOP.replace("CAN_RUN", "CAN_READ"),
     "permissions[1] has level 'CAN_READ', which is not one of CAN_MANAGE, CAN_VIEW, CAN_RUN"),
    ("resources/jobs.yml", """              permissions:
                - level: CAN_READ
                  group_name: users
""", "resources.jobs.a.permissions[0] has level 'CAN_READ', which is not one of CAN_VIEW, CAN_MANAGE_RUN"),
    ("resources/jobs.yml", """              permissions:
                - level: CAN_VIEW
""", "resources.jobs.a.permissions[0] must name exactly one of user_name, group_name or service_principal_name"),
    ("resources/jobs.yml", """              permissions:
                - level: IS_OWNER
                  group_name: users
""", "a group cannot own a job"),
    ("resources/model.yml", "", "resources.registered_models.m.grants[0]: 'READ_EVERYTHING' is not a Unity Catalog "
                                "privilege"),
])
def test_bad_permissions_and_grants_exit_2_before_anything_changes(run_cli, env, w, tmp_path, where, text, message):
    if where == "databricks.yml":
        root = bundle_with(tmp_path, text)
    elif where == "resources/jobs.yml":
        root = bundle_with(tmp_path, job_a=text)
    else:
        root = bundle_with(tmp_path)
        write_bundle(root, {"resources/model.yml": """
            resources:
              registered_models:
                m:
                  name: m
                  catalog_name: main
                  schema_name: s
                  grants:
                    - principal: account users
                      privileges: [READ_EVERYTHING]
        """})
    for command in ("validate", "plan", "deploy"):
        result = run_cli([command, "-t", "staging", "--project", str(root)], env=env)
        assert result.code == 2, result.stderr
        [error] = result.errors()
        assert message in error.data, error.data
        assert error.properties["file"].endswith(where)
        assert "Traceback" not in result.stderr
    assert jobs_by_name(w) == {} and tree(w, f"/Workspace/Users/{USER}") == {}
