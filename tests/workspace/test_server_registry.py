"""The workspace model registry (legacy registered models) of the local workspace and its
permissions, through databricks-sdk (``w.model_registry``)."""

from __future__ import annotations

import pytest
from databricks.sdk import errors
from databricks.sdk.service import ml

ME = "local-user@stackci.local"


def direct(perms) -> dict:
    return {(e.user_name or e.group_name or e.service_principal_name): e.all_permissions[0].permission_level.value
            for e in perms.access_control_list if not e.all_permissions[0].inherited}


def test_create_get_update_rename_tag_search_delete(w):
    created = w.model_registry.create_model("churn", description="first", tags=[ml.ModelTag(key="team", value="ml")])
    assert created.registered_model.name == "churn" and created.registered_model.user_id == ME
    got = w.model_registry.get_model("churn").registered_model_databricks
    assert got.description == "first" and len(got.id) == 32 and [(t.key, t.value) for t in got.tags] == [("team", "ml")]

    w.model_registry.update_model("churn", description="second")
    w.model_registry.set_model_tag("churn", "stage", "dev")
    renamed = w.model_registry.rename_model("churn", new_name="churn-v2").registered_model
    assert renamed.name == "churn-v2" and renamed.description == "second"
    again = w.model_registry.get_model("churn-v2").registered_model_databricks
    assert again.id == got.id and {t.key for t in again.tags} == {"team", "stage"}
    with pytest.raises(errors.NotFound, match="Registered Model with name=churn not found"):
        w.model_registry.get_model("churn")

    w.model_registry.create_model("other")
    assert [m.name for m in w.model_registry.search_models(filter="name LIKE 'churn%'")] == ["churn-v2"]
    assert sorted(m.name for m in w.model_registry.list_models()) == ["churn-v2", "other"]
    w.model_registry.delete_model_tag("churn-v2", "stage")
    assert [t.key for t in w.model_registry.get_model("churn-v2").registered_model_databricks.tags] == ["team"]
    w.model_registry.delete_model("churn-v2")
    assert [m.name for m in w.model_registry.list_models()] == ["other"]


def test_registry_errors(w):
    w.model_registry.create_model("m")
    with pytest.raises(errors.ResourceAlreadyExists, match=r"Registered Model \(name=m\) already exists"):
        w.model_registry.create_model("m")
    for bad in ("a.b", "a/b", "a:b"):
        with pytest.raises(errors.InvalidParameterValue, match="cannot contain forward slashes"):
            w.model_registry.create_model(bad)
    with pytest.raises(errors.NotFound):
        w.model_registry.update_model("nope", description="x")
    w.model_registry.create_model("n")
    with pytest.raises(errors.ResourceAlreadyExists):
        w.model_registry.rename_model("m", new_name="n")


def test_legacy_model_permissions(w, api):
    w.model_registry.create_model("acl")
    model_id = w.model_registry.get_model("acl").registered_model_databricks.id
    first = w.model_registry.get_permissions(model_id)
    assert first.object_id == f"/registered-models/{model_id}" and first.object_type == "registered-model"
    assert direct(first) == {ME: "CAN_MANAGE"}
    w.model_registry.set_permissions(model_id, access_control_list=[
        ml.RegisteredModelAccessControlRequest(group_name="users",
                                               permission_level=ml.RegisteredModelPermissionLevel.CAN_READ),
        ml.RegisteredModelAccessControlRequest(user_name=ME,
                                               permission_level=ml.RegisteredModelPermissionLevel.CAN_MANAGE)])
    assert direct(w.model_registry.get_permissions(model_id)) == {"users": "CAN_READ", ME: "CAN_MANAGE"}
    refused = api("PUT", f"/api/2.0/permissions/registered-models/{model_id}",
                  json={"access_control_list": [{"group_name": "users", "permission_level": "CAN_VIEW"}]})
    assert refused.status_code == 400 and "not supported for registered-models" in refused.json()["message"]
    w.model_registry.delete_model("acl")
    with pytest.raises(errors.NotFound):
        w.model_registry.get_permissions(model_id)
