"""MLflow experiments and Unity Catalog registered models of the local workspace,
through databricks-sdk (w.experiments, w.registered_models, w.model_versions) and raw HTTP."""

from __future__ import annotations

import pytest
from databricks.sdk import errors
from databricks.sdk.service import ml


@pytest.fixture
def home(w):
    return f"/Users/{w.current_user.me().user_name}"


def assert_error(resp, status, code):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error_code"] == code, body
    assert body["message"]
    return body


# ---- experiments ----------------------------------------------------------------


def test_experiment_life_cycle(w, home):
    name = f"{home}/dev-churn-experiment"
    created = w.experiments.create_experiment(name=name, tags=[ml.ExperimentTag(key="team", value="ml")])
    assert created.experiment_id.isdigit()
    exp = w.experiments.get_experiment(created.experiment_id).experiment
    assert exp.name == name and exp.lifecycle_stage == "active"
    assert exp.artifact_location.endswith(created.experiment_id)
    assert {t.key: t.value for t in exp.tags}["team"] == "ml"
    assert exp.creation_time <= exp.last_update_time
    by_name = w.experiments.get_by_name(name).experiment
    assert by_name.experiment_id == created.experiment_id
    assert w.experiments.get_by_name("/Workspace" + name).experiment.experiment_id == created.experiment_id

    with pytest.raises(errors.ResourceAlreadyExists):
        w.experiments.create_experiment(name=name)

    w.experiments.update_experiment(created.experiment_id, new_name=f"{home}/renamed")
    assert w.experiments.get_experiment(created.experiment_id).experiment.name == f"{home}/renamed"
    with pytest.raises(errors.ResourceDoesNotExist):
        w.experiments.get_by_name(name)

    w.experiments.delete_experiment(created.experiment_id)
    assert w.experiments.get_experiment(created.experiment_id).experiment.lifecycle_stage == "deleted"
    # a deleted experiment still holds its name
    with pytest.raises(errors.ResourceAlreadyExists):
        w.experiments.create_experiment(name=f"{home}/renamed")
    assert created.experiment_id not in {e.experiment_id for e in w.experiments.search_experiments()}
    deleted = w.experiments.search_experiments(view_type=ml.ViewType.DELETED_ONLY)
    assert [e.experiment_id for e in deleted] == [created.experiment_id]
    w.experiments.restore_experiment(created.experiment_id)
    assert w.experiments.get_experiment(created.experiment_id).experiment.lifecycle_stage == "active"


def test_experiment_names_are_workspace_paths(w, home, api):
    with pytest.raises(errors.InvalidParameterValue) as info:
        w.experiments.create_experiment(name="relative-name")
    assert "absolute path" in str(info.value)
    with pytest.raises(errors.ResourceDoesNotExist) as info:
        w.experiments.create_experiment(name=f"{home}/missing-folder/exp")
    assert "Parent directory" in str(info.value)
    with pytest.raises(errors.InvalidParameterValue):
        w.experiments.create_experiment(name=f"{home}/../escape")
    w.workspace.mkdirs(f"{home}/folder")
    with pytest.raises(errors.ResourceAlreadyExists):  # a folder already has that path
        w.experiments.create_experiment(name=f"{home}/folder")
    created = w.experiments.create_experiment(name=f"/Workspace{home}/folder/exp")
    assert w.experiments.get_experiment(created.experiment_id).experiment.name == f"{home}/folder/exp"
    assert_error(api("POST", "/api/2.0/mlflow/experiments/create", json={"name": "/etc/exp"}), 403,
                 "PERMISSION_DENIED")


def test_experiment_errors(w, api):
    with pytest.raises(errors.ResourceDoesNotExist) as info:
        w.experiments.get_experiment("123456")
    assert str(info.value) == "Node ID 123456 does not exist."
    with pytest.raises(errors.ResourceDoesNotExist):
        w.experiments.delete_experiment("123456")
    with pytest.raises(errors.ResourceDoesNotExist):
        w.experiments.get_by_name("/Shared/nothing-here")
    huge = api("POST", "/api/2.0/mlflow/experiments/update", json={"experiment_id": 10**30, "new_name": "/Shared/x"})
    assert_error(huge, 404, "RESOURCE_DOES_NOT_EXIST")
    for method, path, kwargs in [
        ("POST", "/api/2.0/mlflow/experiments/create", {"json": {}}),
        ("POST", "/api/2.0/mlflow/experiments/create", {"json": {"name": 7}}),
        ("POST", "/api/2.0/mlflow/experiments/create", {"json": {"name": "/Shared/t", "tags": "x"}}),
        ("POST", "/api/2.0/mlflow/experiments/create", {"json": {"name": "/Shared/t", "tags": [{"value": "v"}]}}),
        ("POST", "/api/2.0/mlflow/experiments/create", {"data": b"{oops"}),
        ("GET", "/api/2.0/mlflow/experiments/get", {"params": {"experiment_id": "abc"}}),
        ("GET", "/api/2.0/mlflow/experiments/get", {}),
        ("GET", "/api/2.0/mlflow/experiments/get-by-name", {}),
        ("POST", "/api/2.0/mlflow/experiments/delete", {"json": {}}),
        ("POST", "/api/2.0/mlflow/experiments/delete", {"json": {"experiment_id": ["1"]}}),
        ("POST", "/api/2.0/mlflow/experiments/update", {"json": {"experiment_id": "x1", "new_name": "/Shared/n"}}),
        ("POST", "/api/2.0/mlflow/experiments/search", {"json": {"max_results": 0}}),
        ("POST", "/api/2.0/mlflow/experiments/search", {"json": {"max_results": 3001}}),
        ("POST", "/api/2.0/mlflow/experiments/search", {"json": {"view_type": "SOME"}}),
        ("POST", "/api/2.0/mlflow/experiments/search", {"json": {"filter": "name ~ 'x'"}}),
        ("POST", "/api/2.0/mlflow/experiments/search", {"json": {"order_by": ["colour DESC"]}}),
        ("POST", "/api/2.0/mlflow/experiments/search", {"json": {"page_token": "%%%"}}),
        ("POST", "/api/2.0/mlflow/experiments/search", {"json": {"page_token": "eyJvZmZzZXQiOiAieCJ9"}}),
    ]:
        resp = api(method, path, **kwargs)
        assert resp.status_code == 400, (path, kwargs, resp.text)
        assert resp.json()["error_code"] in ("INVALID_PARAMETER_VALUE", "MALFORMED_REQUEST"), (path, kwargs)


def test_search_filters_orders_and_pages(w, api):
    w.workspace.mkdirs("/Shared/exps")
    ids = {}
    for name in ("alpha", "beta", "gamma", "Alpha-2"):
        ids[name] = w.experiments.create_experiment(
            name=f"/Shared/exps/{name}", tags=[ml.ExperimentTag(key="kind", value="a" if "lpha" in name else "b")]
        ).experiment_id
    like = [e.name for e in w.experiments.search_experiments(filter="name LIKE '/Shared/exps/a%'")]
    assert like == ["/Shared/exps/alpha"]
    ilike = sorted(e.name for e in w.experiments.search_experiments(filter="name ILIKE '%/a%'"))
    assert ilike == ["/Shared/exps/Alpha-2", "/Shared/exps/alpha"]
    tagged = sorted(e.name for e in w.experiments.search_experiments(
        filter="tags.kind = 'b' AND name != '/Shared/exps/gamma'"))
    assert tagged == ["/Shared/exps/beta"]
    ordered = [e.name for e in w.experiments.search_experiments(order_by=["name ASC"])]
    assert ordered == sorted(ordered)
    newest_first = [e.experiment_id for e in w.experiments.search_experiments()]
    assert newest_first[0] == ids["Alpha-2"]  # default: last_update_time DESC, then id DESC

    first = api("POST", "/api/2.0/mlflow/experiments/search", json={"max_results": 3}).json()
    assert len(first["experiments"]) == 3 and first["next_page_token"]
    rest = api("POST", "/api/2.0/mlflow/experiments/search",
               json={"max_results": 3, "page_token": first["next_page_token"]}).json()
    assert len(rest["experiments"]) == 1 and "next_page_token" not in rest
    assert {e["experiment_id"] for e in first["experiments"] + rest["experiments"]} == set(ids.values())
    # the SDK's list_experiments (GET .../list) sees the same experiments
    assert {e.experiment_id for e in w.experiments.list_experiments(max_results=2)} == set(ids.values())


def test_set_experiment_tag(w):
    exp_id = w.experiments.create_experiment(name="/Shared/tagged").experiment_id
    w.experiments.set_experiment_tag(exp_id, "stage", "dev")
    w.experiments.set_experiment_tag(exp_id, "stage", "prod")
    tags = {t.key: t.value for t in w.experiments.get_experiment(exp_id).experiment.tags}
    assert tags["stage"] == "prod"
    with pytest.raises(errors.ResourceDoesNotExist):
        w.experiments.set_experiment_tag("99999", "k", "v")


# ---- Unity Catalog registered models ----------------------------------------------


def _version(api, full_name, source="dbfs:/runs/1/model", **extra):
    resp = api("POST", f"/api/2.1/unity-catalog/models/{full_name}/versions", json={"source": source, **extra})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_registered_model_life_cycle(w, api):
    model = w.registered_models.create(catalog_name="main", schema_name="ml", name="Churn_Model",
                                       comment="predicts churn")
    assert model.full_name == "main.ml.churn_model"  # UC names are case-insensitive, stored lower case
    assert model.comment == "predicts churn" and model.owner == w.current_user.me().user_name
    got = w.registered_models.get("MAIN.ml.churn_model")
    assert got.full_name == "main.ml.churn_model" and got.created_at == model.created_at
    with pytest.raises(errors.ResourceAlreadyExists):
        w.registered_models.create(catalog_name="main", schema_name="ml", name="churn_model")

    v1 = _version(api, model.full_name, run_id="r1")
    v2 = _version(api, model.full_name, comment="second")
    assert (v1["version"], v2["version"]) == (1, 2)
    assert v1["status"] == "READY" and v1["run_id"] == "r1" and v1["model_name"] == "churn_model"

    w.registered_models.set_alias(model.full_name, "champion", 1)
    w.registered_models.set_alias(model.full_name, "challenger", 2)
    assert w.model_versions.get_by_alias(model.full_name, "champion").version == 1
    w.registered_models.set_alias(model.full_name, "champion", 2)  # moves the alias
    champion = w.model_versions.get_by_alias(model.full_name, "champion", include_aliases=True)
    assert champion.version == 2
    assert sorted(a.alias_name for a in champion.aliases) == ["challenger", "champion"]

    plain = w.registered_models.get(model.full_name)
    assert not plain.aliases  # aliases only on request
    with_aliases = w.registered_models.get(model.full_name, include_aliases=True)
    assert {(a.alias_name, a.version_num) for a in with_aliases.aliases} == {("challenger", 2), ("champion", 2)}

    version = w.model_versions.get(model.full_name, 2, include_aliases=True)
    assert version.comment == "second" and {a.alias_name for a in version.aliases} == {"challenger", "champion"}
    assert not w.model_versions.get(model.full_name, 1).aliases
    w.model_versions.update(model.full_name, 1, comment="first")
    assert w.model_versions.get(model.full_name, 1).comment == "first"
    listed = list(w.model_versions.list(model.full_name))
    assert sorted(v.version for v in listed) == [1, 2] and not any(v.aliases for v in listed)

    w.registered_models.delete_alias(model.full_name, "challenger")
    with pytest.raises(errors.ResourceDoesNotExist):
        w.model_versions.get_by_alias(model.full_name, "challenger")
    with pytest.raises(errors.ResourceDoesNotExist):
        w.registered_models.delete_alias(model.full_name, "challenger")

    w.model_versions.delete(model.full_name, 2)  # takes its aliases with it
    with pytest.raises(errors.ResourceDoesNotExist):
        w.model_versions.get_by_alias(model.full_name, "champion")
    with pytest.raises(errors.ResourceDoesNotExist):
        w.model_versions.get(model.full_name, 2)
    assert _version(api, model.full_name)["version"] == 3  # numbers are never reused

    w.registered_models.update(model.full_name, comment="updated", new_name="churn_v2")
    renamed = w.registered_models.get("main.ml.churn_v2")
    assert renamed.comment == "updated"
    assert sorted(v.version for v in w.model_versions.list("main.ml.churn_v2")) == [1, 3]
    assert w.model_versions.get("main.ml.churn_v2", 3).model_name == "churn_v2"
    with pytest.raises(errors.ResourceDoesNotExist):
        w.registered_models.get("main.ml.churn_model")

    w.registered_models.delete("main.ml.churn_v2")
    with pytest.raises(errors.ResourceDoesNotExist) as info:
        w.registered_models.get("main.ml.churn_v2")
    assert str(info.value) == "Routine or Model 'main.ml.churn_v2' does not exist."
    assert_error(api("GET", "/api/2.1/unity-catalog/models/main.ml.churn_v2/versions"), 404,
                 "RESOURCE_DOES_NOT_EXIST")


def test_list_models_by_catalog_and_schema_with_pages(w, api):
    for catalog, schema, name in [("a", "s1", "m1"), ("a", "s1", "m2"), ("a", "s2", "m3"), ("b", "s1", "m4")]:
        w.registered_models.create(catalog_name=catalog, schema_name=schema, name=name)
    assert {m.full_name for m in w.registered_models.list()} == {"a.s1.m1", "a.s1.m2", "a.s2.m3", "b.s1.m4"}
    assert {m.full_name for m in w.registered_models.list(catalog_name="a")} == {"a.s1.m1", "a.s1.m2", "a.s2.m3"}
    assert {m.full_name for m in w.registered_models.list(catalog_name="A", schema_name="s1")} == {
        "a.s1.m1", "a.s1.m2"}
    first = api("GET", "/api/2.1/unity-catalog/models", params={"max_results": 3}).json()
    assert len(first["registered_models"]) == 3 and "next_page_token" in first
    last = api("GET", "/api/2.1/unity-catalog/models",
               params={"max_results": 3, "page_token": first["next_page_token"]}).json()
    assert len(last["registered_models"]) == 1 and "next_page_token" not in last
    assert_error(api("GET", "/api/2.1/unity-catalog/models", params={"schema_name": "s1"}), 400,
                 "INVALID_PARAMETER_VALUE")


def test_registered_model_bad_input(w, api):
    base = "/api/2.1/unity-catalog/models"
    for body in ({}, {"catalog_name": "c", "schema_name": "s"}, {"catalog_name": "c", "schema_name": "s", "name": 3},
                 {"catalog_name": "c", "schema_name": "s", "name": "bad name"},
                 {"catalog_name": "c", "schema_name": "s.x", "name": "n"},
                 {"catalog_name": "c", "schema_name": "s", "name": "n", "comment": ["x"]}):
        resp = api("POST", base, json=body)
        assert resp.status_code == 400, (body, resp.text)
        assert resp.json()["error_code"] in ("INVALID_PARAMETER_VALUE", "MALFORMED_REQUEST")
    w.registered_models.create(catalog_name="c", schema_name="s", name="n")
    for method, path, kwargs in [
        ("POST", f"{base}/c.s.n/versions", {"json": {}}),
        ("GET", f"{base}/c.s.n/versions/abc", {}),
        ("GET", f"{base}/c.s.n/versions/0", {}),
        ("GET", f"{base}/c.s.n/versions/{10**30}", {}),
        ("PUT", f"{base}/c.s.n/aliases/champion", {"json": {"version_num": 10**30}}),
        ("GET", f"{base}/c.s.n/versions", {"params": {"max_results": -1}}),
        ("GET", f"{base}/c.s.n/versions", {"params": {"page_token": "garbage!"}}),
        ("PUT", f"{base}/c.s.n/aliases/champion", {"json": {}}),
        ("PUT", f"{base}/c.s.n/aliases/champion", {"json": {"version_num": "one"}}),
        ("PUT", f"{base}/c.s.n/aliases/latest", {"json": {"version_num": 1}}),
        ("PUT", f"{base}/c.s.n/aliases/v3", {"json": {"version_num": 1}}),
        ("PATCH", f"{base}/c.s.n", {"data": b"not json"}),
        ("PATCH", f"{base}/c.s.n", {"json": {"new_name": "has space"}}),
    ]:
        resp = api(method, path, **kwargs)
        assert resp.status_code == 400, (method, path, kwargs, resp.text)
        assert resp.json()["error_code"] in ("INVALID_PARAMETER_VALUE", "MALFORMED_REQUEST"), (path, kwargs)
    with pytest.raises(errors.ResourceDoesNotExist):
        w.registered_models.set_alias("c.s.n", "champion", 5)  # no such version
    with pytest.raises(errors.ResourceDoesNotExist):
        w.model_versions.get("c.s.n", 1)
    w.registered_models.create(catalog_name="c", schema_name="s", name="other")
    with pytest.raises(errors.ResourceAlreadyExists):
        w.registered_models.update("c.s.n", new_name="other")
