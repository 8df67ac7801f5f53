"""The Permissions API and Unity Catalog grants of the local workspace, through databricks-sdk
(``w.permissions``, ``w.jobs.set_permissions``, ``w.experiments``, ``w.workspace``, ``w.grants``)."""

from __future__ import annotations

import pytest
from databricks.sdk import errors
from databricks.sdk.service import catalog, iam, jobs, ml, workspace

from workspace_support import client_for  # type: ignore[import-not-found]

ME = "local-user@stackci.local"


def acl_of(perms) -> dict:
    """{(kind, name): (level, inherited)} of an ObjectPermissions-like answer."""
    out = {}
    for entry in perms.access_control_list:
        kind, name = next((k, getattr(entry, k)) for k in ("user_name", "group_name", "service_principal_name")
                          if getattr(entry, k))
        (perm,) = entry.all_permissions
        out[(kind, name)] = (perm.permission_level.value, bool(perm.inherited))
    return out


def test_job_acl_set_get_update_and_the_owner(w):
    job_id = str(w.jobs.create(name="acl").job_id)
    first = w.jobs.get_permissions(job_id)
    assert first.object_id == f"/jobs/{job_id}" and first.object_type == "job"
    assert acl_of(first) == {("user_name", ME): ("IS_OWNER", False), ("group_name", "admins"): ("CAN_MANAGE", True)}

    w.jobs.set_permissions(job_id, access_control_list=[
        jobs.JobAccessControlRequest(group_name="users", permission_level=jobs.JobPermissionLevel.CAN_VIEW),
        jobs.JobAccessControlRequest(user_name="ops@example.com",
                                     permission_level=jobs.JobPermissionLevel.CAN_MANAGE_RUN)])
    assert acl_of(w.permissions.get("jobs", job_id)) == {
        ("user_name", ME): ("IS_OWNER", False), ("group_name", "users"): ("CAN_VIEW", False),
        ("user_name", "ops@example.com"): ("CAN_MANAGE_RUN", False), ("group_name", "admins"): ("CAN_MANAGE", True)}

    # PATCH changes the principals it names and keeps the others
    w.permissions.update("jobs", job_id, access_control_list=[
        iam.AccessControlRequest(group_name="users", permission_level=iam.PermissionLevel.CAN_MANAGE_RUN)])
    got = acl_of(w.permissions.get("jobs", job_id))
    assert got[("group_name", "users")] == ("CAN_MANAGE_RUN", False) and ("user_name", "ops@example.com") in got

    # PUT replaces every direct permission; without an IS_OWNER the owner stays
    answer = w.permissions.set("jobs", job_id, access_control_list=[])
    assert acl_of(answer) == {("user_name", ME): ("IS_OWNER", False), ("group_name", "admins"): ("CAN_MANAGE", True)}

    # ownership moves to a service principal; the old owner keeps what the list gives it
    sp = "6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b"
    w.permissions.set("jobs", job_id, access_control_list=[
        iam.AccessControlRequest(service_principal_name=sp, permission_level=iam.PermissionLevel.IS_OWNER),
        iam.AccessControlRequest(user_name=ME, permission_level=iam.PermissionLevel.CAN_MANAGE)])
    assert acl_of(w.permissions.get("jobs", job_id)) == {
        ("service_principal_name", sp): ("IS_OWNER", False), ("user_name", ME): ("CAN_MANAGE", False),
        ("group_name", "admins"): ("CAN_MANAGE", True)}

    levels = [d.permission_level.value for d in w.jobs.get_permission_levels(job_id).permission_levels]
    assert levels == ["CAN_VIEW", "CAN_MANAGE_RUN", "IS_OWNER", "CAN_MANAGE"]


def test_experiment_and_directory_acls(w):
    w.workspace.mkdirs(f"/Users/{ME}/acl")
    exp_id = w.experiments.create_experiment(f"/Users/{ME}/acl/exp").experiment_id
    assert acl_of(w.experiments.get_permissions(exp_id))[("user_name", ME)] == ("CAN_MANAGE", False)
    answer = w.experiments.set_permissions(exp_id, access_control_list=[
        ml.ExperimentAccessControlRequest(group_name="users", permission_level=ml.ExperimentPermissionLevel.CAN_READ)])
    assert answer.object_type == "mlflowExperiment"
    assert acl_of(answer) == {("group_name", "users"): ("CAN_READ", False),
                              ("group_name", "admins"): ("CAN_MANAGE", True)}

    folder = w.workspace.get_status(f"/Users/{ME}/acl")
    got = w.workspace.set_permissions("directories", str(folder.object_id), access_control_list=[
        workspace.WorkspaceObjectAccessControlRequest(
            group_name="users", permission_level=workspace.WorkspaceObjectPermissionLevel.CAN_RUN)])
    assert got.object_id == f"/directories/{folder.object_id}" and got.object_type == "directory"
    assert acl_of(w.workspace.get_permissions("directories", str(folder.object_id)))[("group_name", "users")] == \
        ("CAN_RUN", False)
    # a folder is not a notebook
    with pytest.raises(errors.NotFound):
        w.permissions.get("notebooks", str(folder.object_id))


@pytest.mark.parametrize("entry, message", [
    ({"group_name": "users", "permission_level": "CAN_READ"}, "Permission level CAN_READ is not supported for jobs"),
    ({"permission_level": "CAN_VIEW"}, "exactly one of user_name, group_name or service_principal_name"),
    ({"user_name": "a@example.com", "group_name": "users", "permission_level": "CAN_VIEW"}, "exactly one of"),
    ({"group_name": "admins", "permission_level": "CAN_VIEW"}, "admins group"),
    ({"group_name": "users", "permission_level": "IS_OWNER"}, "A group cannot own a job"),
    ({"user_name": " a@example.com", "permission_level": "CAN_VIEW"}, "must be a principal name"),
])
def test_bad_acl_entries_are_rejected_and_change_nothing(w, api, entry, message):
    job_id = w.jobs.create(name="acl").job_id
    before = api("GET", f"/api/2.0/permissions/jobs/{job_id}").json()
    answer = api("PUT", f"/api/2.0/permissions/jobs/{job_id}",
                 json={"access_control_list": [{"user_name": "ok@example.com", "permission_level": "CAN_VIEW"}, entry]})
    assert answer.status_code == 400 and answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert message in answer.json()["message"]
    assert api("GET", f"/api/2.0/permissions/jobs/{job_id}").json() == before


def test_ambiguous_principal_and_second_owner(w):
    job_id = str(w.jobs.create(name="acl").job_id)
    with pytest.raises(errors.InvalidParameterValue, match=r"UserName\(a@example.com\) are ambiguous"):
        w.permissions.set("jobs", job_id, access_control_list=[
            iam.AccessControlRequest(user_name="a@example.com", permission_level=iam.PermissionLevel.CAN_VIEW),
            iam.AccessControlRequest(user_name="a@example.com", permission_level=iam.PermissionLevel.CAN_MANAGE)])
    with pytest.raises(errors.InvalidParameterValue, match="exactly one owner"):
        w.permissions.set("jobs", job_id, access_control_list=[
            iam.AccessControlRequest(user_name="a@example.com", permission_level=iam.PermissionLevel.IS_OWNER),
            iam.AccessControlRequest(user_name="b@example.com", permission_level=iam.PermissionLevel.IS_OWNER)])


def test_unknown_objects_and_object_types(w, api):
    with pytest.raises(errors.NotFound, match="Job 42 does not exist"):
        w.jobs.get_permissions("42")
    with pytest.raises(errors.NotFound):
        w.experiments.get_permissions("123")
    with pytest.raises(errors.NotFound):
        w.permissions.get("directories", "not-a-number")
    answer = api("GET", "/api/2.0/permissions/clusters/abc")
    assert answer.status_code == 400 and "not supported by the local workspace" in answer.json()["message"]
    # a deleted job takes its ACL with it
    job_id = str(w.jobs.create(name="gone").job_id)
    w.permissions.update("jobs", job_id, access_control_list=[
        iam.AccessControlRequest(group_name="users", permission_level=iam.PermissionLevel.CAN_VIEW)])
    w.jobs.delete(int(job_id))
    with pytest.raises(errors.NotFound):
        w.jobs.get_permissions(job_id)


def grants_of(answer) -> dict:
    return {a.principal: [p.value for p in a.privileges] for a in answer.privilege_assignments or []}


def test_uc_grants_on_a_registered_model(w):
    w.registered_models.create(catalog_name="Main", schema_name="ml", name="churn")
    assert grants_of(w.grants.get("function", "main.ml.churn")) == {}
    answer = w.grants.update("function", "main.ml.churn", changes=[
        catalog.PermissionsChange(principal="account users", add=[catalog.Privilege.EXECUTE]),
        catalog.PermissionsChange(principal="ml-team", add=[catalog.Privilege.MANAGE, catalog.Privilege.APPLY_TAG])])
    assert grants_of(answer) == {"account users": ["EXECUTE"], "ml-team": ["APPLY_TAG", "MANAGE"]}
    w.grants.update("function", "MAIN.ml.churn", changes=[
        catalog.PermissionsChange(principal="ml-team", remove=[catalog.Privilege.APPLY_TAG]),
        catalog.PermissionsChange(principal="account users", remove=[catalog.Privilege.EXECUTE])])
    assert grants_of(w.grants.get("function", "main.ml.churn")) == {"ml-team": ["MANAGE"]}
    assert grants_of(w.grants.get("function", "main.ml.churn", principal="nobody")) == {}

    # the grants follow a rename and go with a delete
    w.registered_models.update("main.ml.churn", new_name="churn2")
    assert grants_of(w.grants.get("function", "main.ml.churn2")) == {"ml-team": ["MANAGE"]}
    w.registered_models.delete("main.ml.churn2")
    with pytest.raises(errors.NotFound, match="Routine or Model 'main.ml.churn2' does not exist"):
        w.grants.get("function", "main.ml.churn2")
    w.registered_models.create(catalog_name="main", schema_name="ml", name="churn2")
    assert grants_of(w.grants.get("function", "main.ml.churn2")) == {}


def test_uc_grant_errors_change_nothing(w, api):
    w.registered_models.create(catalog_name="main", schema_name="ml", name="m")
    w.grants.update("function", "main.ml.m",
                    changes=[catalog.PermissionsChange(principal="g", add=[catalog.Privilege.EXECUTE])])
    with pytest.raises(errors.InvalidParameterValue, match="Privilege SELECT is not applicable to this entity"):
        w.grants.update("function", "main.ml.m", changes=[
            catalog.PermissionsChange(principal="g", remove=[catalog.Privilege.EXECUTE]),
            catalog.PermissionsChange(principal="h", add=[catalog.Privilege.SELECT])])
    assert grants_of(w.grants.get("function", "main.ml.m")) == {"g": ["EXECUTE"]}
    answer = api("PATCH", "/api/2.1/unity-catalog/permissions/table/main.ml.t", json={"changes": []})
    assert answer.status_code == 400 and "not supported by the local workspace" in answer.json()["message"]
    answer = api("PATCH", "/api/2.1/unity-catalog/permissions/function/main.ml.m",
                 json={"changes": [{"principal": "", "add": ["EXECUTE"]}]})
    assert answer.status_code == 400
    # catalogs and schemas are not modelled: any valid name takes grants
    w.grants.update("schema", "main.ml", changes=[catalog.PermissionsChange(
        principal="g", add=[catalog.Privilege.USE_SCHEMA, catalog.Privilege.SELECT])])
    assert grants_of(w.grants.get("schema", "main.ml")) == {"g": ["SELECT", "USE_SCHEMA"]}
    with pytest.raises(errors.InvalidParameterValue, match="a schema is named catalog.schema"):
        w.grants.get("schema", "main")


def test_acls_and_grants_survive_a_restart(tmp_path):
    from stackci.workspace import LocalWorkspace

    data = tmp_path / "restart"
    with LocalWorkspace(data) as ws:
        w = client_for(ws)
        job_id = str(w.jobs.create(name="kept").job_id)
        w.jobs.set_permissions(job_id, access_control_list=[
            jobs.JobAccessControlRequest(group_name="users", permission_level=jobs.JobPermissionLevel.CAN_VIEW)])
        w.registered_models.create(catalog_name="main", schema_name="ml", name="kept")
        w.grants.update("function", "main.ml.kept",
                        changes=[catalog.PermissionsChange(principal="g", add=[catalog.Privilege.EXECUTE])])
    with LocalWorkspace(data) as ws:
        w = client_for(ws)
        assert acl_of(w.jobs.get_permissions(job_id))[("group_name", "users")] == ("CAN_VIEW", False)
        assert grants_of(w.grants.get("function", "main.ml.kept")) == {"g": ["EXECUTE"]}
