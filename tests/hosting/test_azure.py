"""Azure Repos REST client and the PR thread upsert, against ``responses``."""

from __future__ import annotations

import json

import pytest
import requests
import responses
from responses import matchers

from stackci.errors import ConfigError
from stackci.hosting import (AlreadyExists, AuthenticationFailed, AzureRepos, PermissionDenied, Transport,
                             upsert_pr_comment)
from stackci.hosting.azure import ZERO_SHA

ORG = "https://dev.azure.com/acme/"
BASE = "https://dev.azure.com/acme/ML%20Ops/_apis/git/repositories/repo-id"
THREADS = f"{BASE}/pullRequests/42/threads"
MARK = "<!-- stackci:plan -->"


@pytest.fixture
def env():
    return {"TF_BUILD": "True", "SYSTEM_COLLECTIONURI": ORG, "SYSTEM_TEAMPROJECT": "ML Ops",
            "BUILD_REPOSITORY_ID": "repo-id", "BUILD_REPOSITORY_PROVIDER": "TfsGit",
            "SYSTEM_ACCESSTOKEN": "azure-secret", "SYSTEM_PULLREQUEST_PULLREQUESTID": "42"}


@pytest.fixture
def transport():
    slept = []
    t = Transport(session=requests.Session(), sleep=slept.append, now=lambda: 0.0)
    t.slept = slept
    return t


def api(version="7.1"):
    return [matchers.query_param_matcher({"api-version": version}, strict_match=False)]


@responses.activate
def test_first_call_creates_a_closed_thread_with_bearer_auth(env, transport):
    responses.get(THREADS, match=api(), json={"value": [{"id": 1, "comments": [{"id": 1, "content": "hi"}]}]})
    created = responses.post(THREADS, match=api(), json={"id": 77, "comments": [{"id": 1}]})
    result = upsert_pr_comment(env, "plan", "## Plan", transport=transport)
    assert (result.platform, result.id, result.created) == ("azure", 77, True)
    assert result.url == "https://dev.azure.com/acme/ML%20Ops/_git/repo-id/pullrequest/42?discussionId=77"
    sent = json.loads(created.calls[0].request.body)
    assert sent["status"] == "closed"
    assert sent["comments"][0]["content"].startswith(MARK) and "## Plan" in sent["comments"][0]["content"]
    assert created.calls[0].request.headers["Authorization"] == "Bearer azure-secret"


@responses.activate
def test_later_calls_update_the_marked_comment_skipping_deleted_threads(env, transport):
    responses.get(THREADS, json={"value": [
        {"id": 5, "isDeleted": True, "comments": [{"id": 1, "content": f"{MARK}\nstale"}]},
        {"id": 6, "comments": [{"id": 1, "content": "review"}, {"id": 2, "content": f"{MARK}\nold"}]}]},
        headers={"x-ms-continuationtoken": "tok"})
    responses.get(THREADS, match=[matchers.query_param_matcher({"api-version": "7.1", "continuationToken": "tok"})],
                  json={"value": []})
    patched = responses.patch(f"{THREADS}/6/comments/2", json={"id": 2})
    result = upsert_pr_comment(env, "plan", "new", transport=transport)
    assert (result.id, result.created) == (6, False)
    assert json.loads(patched.calls[0].request.body) == {"content": f"{MARK}\nnew\n"}


@responses.activate
def test_marker_found_only_on_a_continuation_page(env, transport):
    responses.get(THREADS, match=[matchers.query_param_matcher({"api-version": "7.1"})],
                  json={"value": [{"id": 1, "comments": []}]}, headers={"x-ms-continuationtoken": "p2"})
    responses.get(THREADS, match=[matchers.query_param_matcher({"api-version": "7.1", "continuationToken": "p2"})],
                  json={"value": [{"id": 9, "comments": [{"id": 3, "content": MARK}]}]})
    responses.patch(f"{THREADS}/9/comments/3", json={"id": 3})
    assert upsert_pr_comment(env, "plan", "x", transport=transport).id == 9


@responses.activate
def test_401_and_the_sign_in_page_say_to_map_system_accesstoken(env, transport):
    responses.get(THREADS, status=401, body="")
    with pytest.raises(AuthenticationFailed) as err:
        upsert_pr_comment(env, "plan", "x", transport=transport)
    assert "SYSTEM_ACCESSTOKEN: $(System.AccessToken)" in err.value.one_line()
    responses.replace(responses.GET, THREADS, status=203, body="<html>Sign in</html>", content_type="text/html")
    with pytest.raises(AuthenticationFailed) as err:
        upsert_pr_comment(env, "plan", "x", transport=transport)
    assert "sign-in page" in err.value.one_line()


def test_without_the_token_mapped_nothing_is_sent(env):
    with pytest.raises(AuthenticationFailed) as err:
        upsert_pr_comment({**env, "SYSTEM_ACCESSTOKEN": ""}, "plan", "x")
    assert err.value.exit_code == 2 and "$(System.AccessToken)" in err.value.one_line()


@responses.activate
def test_403_needs_permission_names_the_build_identity_and_the_permission(env, transport):
    responses.get(THREADS, json={"value": []})
    responses.post(THREADS, status=403, json={
        "message": "TF401027: You need the Git 'PullRequestContribute' permission to perform this action.",
        "typeKey": "GitNeedsPermissionException"})
    with pytest.raises(PermissionDenied) as err:
        upsert_pr_comment(env, "plan", "x", transport=transport)
    text = err.value.one_line()
    assert "Build Service" in text and "Contribute to pull requests" in text and "TF401027" in text


def test_missing_pipeline_variables_and_other_providers(env):
    with pytest.raises(ConfigError) as err:
        AzureRepos.from_environ({**env, "BUILD_REPOSITORY_ID": ""})
    assert "BUILD_REPOSITORY_ID" in err.value.one_line()
    with pytest.raises(ConfigError):
        upsert_pr_comment({**env, "BUILD_REPOSITORY_PROVIDER": "GitHub"}, "plan", "x")
    with pytest.raises(ConfigError):
        upsert_pr_comment({**env, "SYSTEM_PULLREQUEST_PULLREQUESTID": ""}, "plan", "x")


@responses.activate
def test_annotated_tag_uses_the_preview_api_and_409_is_already_exists(env, transport):
    az = AzureRepos.from_environ(env, transport=transport)
    call = responses.post(f"{BASE}/annotatedtags", match=api("7.1-preview.1"),
                          json={"name": "v1.0.0", "objectId": "t" * 40}, status=201)
    az.create_annotated_tag("v1.0.0", "c" * 40, "notes")
    assert json.loads(call.calls[0].request.body) == {"name": "v1.0.0", "taggedObject": {"objectId": "c" * 40},
                                                      "message": "notes"}
    responses.replace(responses.POST, f"{BASE}/annotatedtags", status=409,
                      json={"message": "TF401035: exists", "typeKey": "GitRefAlreadyExistsException"})
    with pytest.raises(AlreadyExists):
        az.create_annotated_tag("v1.0.0", "c" * 40, "notes")
    responses.replace(responses.POST, f"{BASE}/annotatedtags", status=403,
                      json={"message": "TF401027: You need the Git 'CreateTag' permission",
                            "typeKey": "GitNeedsPermissionException"})
    with pytest.raises(PermissionDenied) as err:
        az.create_annotated_tag("v1.0.0", "c" * 40, "notes")
    assert "Create tag" in err.value.one_line()


@responses.activate
def test_ref_updates_check_update_status(env, transport):
    az = AzureRepos.from_environ(env, transport=transport)
    responses.post(f"{BASE}/refs", json={"value": [{"name": "refs/heads/release/v1.0.0", "success": True,
                                                    "updateStatus": "succeeded"}]})
    az.update_refs([("refs/heads/release/v1.0.0", ZERO_SHA, "c" * 40)])
    responses.replace(responses.POST, f"{BASE}/refs", json={"value": [
        {"name": "refs/heads/release/v1.0.0", "success": False, "updateStatus": "createBranchPermissionRequired"}]})
    with pytest.raises(PermissionDenied) as err:
        az.update_refs([("refs/heads/release/v1.0.0", ZERO_SHA, "c" * 40)])
    assert "createBranchPermissionRequired" in err.value.one_line() and "'Create branch'" in err.value.one_line()
    responses.replace(responses.POST, f"{BASE}/refs", json={"value": [
        {"name": "refs/heads/release", "success": False, "updateStatus": "staleOldObjectId"}]})
    with pytest.raises(Exception) as err:
        az.update_refs([("refs/heads/release", "a" * 40, "c" * 40)])
    assert "re-run" in err.value.one_line()


@responses.activate
def test_get_refs_peels_annotated_tags(env, transport):
    az = AzureRepos.from_environ(env, transport=transport)
    responses.get(f"{BASE}/refs", match=[matchers.query_param_matcher(
        {"api-version": "7.1", "filter": "tags/v", "peelTags": "true"})],
        json={"value": [{"name": "refs/tags/v1.0.0", "objectId": "t" * 40, "peeledObjectId": "c" * 40},
                        {"name": "refs/tags/v1.0.1", "objectId": "d" * 40}]})
    refs = az.get_refs("tags/v")
    assert [r.commit for r in refs] == ["c" * 40, "d" * 40]


@responses.activate
def test_azure_429_retry_after_is_waited(env, transport):
    az = AzureRepos.from_environ(env, transport=transport)
    responses.get(f"{BASE}/refs", status=429, headers={"Retry-After": "3"}, json={})
    responses.get(f"{BASE}/refs", json={"value": []})
    assert az.get_refs("heads/x") == []
    assert transport.slept == [3.0]
