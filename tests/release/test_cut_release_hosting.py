"""``stackci cut-release`` on GitHub and Azure Repos: real git for history and pushes,
``responses`` for the REST APIs (release creation, 422, 403, rate limit, dispatch)."""

from __future__ import annotations

import json

import pytest
import responses
from responses import matchers

from release_support import git

API = "https://api.github.test"
REPO = f"{API}/repos/acme/churn"


@pytest.fixture
def gh_env():
    return {"GITHUB_REPOSITORY": "acme/churn", "GITHUB_TOKEN": "ghs_token_value", "GITHUB_API_URL": API}


class FakeTime:
    def __init__(self):
        import time
        self.now = time.time()
        self.slept = []

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time(monkeypatch):
    fake = FakeTime()
    monkeypatch.setattr("stackci.hosting.http.time", fake)
    return fake


def gh_repo(push=True):
    responses.get(REPO, json={"full_name": "acme/churn", "permissions": {"admin": False, "push": push}})


@responses.activate
def test_github_release_is_created_with_the_notes_and_the_url_is_an_output(release, repo, gh_env):
    repo.commit("feat: train")
    repo.push()
    gh_repo()
    responses.get(f"{REPO}/releases/tags/v0.1.0-rc.1", status=404, json={"message": "Not Found"})
    created = responses.post(f"{REPO}/releases", status=201,
                             json={"id": 1, "html_url": "https://github.com/acme/churn/releases/tag/v0.1.0-rc.1"})
    result = release("--bump", "minor", "--prerelease", "rc", env=gh_env, hosting=None)
    assert result.code == 0, result.stdout + result.stderr
    sent = json.loads(created.calls[0].request.body)
    assert sent["tag_name"] == "v0.1.0-rc.1" and sent["prerelease"] is True and "train" in sent["body"]
    assert result.outputs["release-url"] == "https://github.com/acme/churn/releases/tag/v0.1.0-rc.1"
    assert result.outputs["branch"] == "release/v0.1.0-rc.1"
    assert repo.remote_refs()["refs/tags/v0.1.0-rc.1"] == repo.head()
    assert "ghs_token_value" not in result.stdout.replace("::add-mask::ghs_token_value", "") + result.stderr


@responses.activate
def test_compare_link_points_at_the_github_host(release, repo, gh_env):
    repo.tag("v1.0.0")
    repo.commit("fix: one")
    repo.push()
    gh_repo()
    responses.get(f"{REPO}/releases/tags/v1.0.1", status=404, json={})
    created = responses.post(f"{REPO}/releases", status=201, json={"html_url": "u"})
    ghes = {**gh_env, "GITHUB_API_URL": "https://ghes.test/api/v3"}
    responses.get("https://ghes.test/api/v3/repos/acme/churn", json={"permissions": {"push": True}})
    responses.get("https://ghes.test/api/v3/repos/acme/churn/releases/tags/v1.0.1", status=404, json={})
    ghes_created = responses.post("https://ghes.test/api/v3/repos/acme/churn/releases", status=201,
                                  json={"html_url": "u"})
    result = release("--bump", "patch", env=ghes, hosting=None)
    assert result.code == 0, result.stdout + result.stderr
    assert not created.calls
    assert "https://ghes.test/acme/churn/compare/v1.0.0...v1.0.1" in json.loads(ghes_created.calls[0].request.body)["body"]


@responses.activate
def test_release_422_already_exists_is_success(release, repo, gh_env):
    gh_repo()
    responses.get(f"{REPO}/releases/tags/v0.1.0", status=404, json={})
    responses.post(f"{REPO}/releases", status=422, json={"message": "Validation Failed",
                                                          "errors": [{"code": "already_exists"}]})
    responses.get(f"{REPO}/releases/tags/v0.1.0", json={"html_url": "https://github.com/acme/churn/r/1"})
    result = release("--bump", "minor", env=gh_env, hosting=None)
    assert result.code == 0, result.stdout + result.stderr
    assert result.outputs["release-url"] == "https://github.com/acme/churn/r/1"


@responses.activate
def test_existing_release_on_a_rerun_is_reused(release, repo, gh_env):
    repo.tag("v0.1.0")
    gh_repo()
    responses.get(f"{REPO}/releases/tags/v0.1.0", json={"html_url": "https://github.com/acme/churn/r/0"})
    result = release("--bump", "minor", env=gh_env, hosting=None)
    assert result.code == 0, result.stdout + result.stderr
    assert result.outputs["version"] == "0.1.0" and result.outputs["release-url"].endswith("/r/0")
    assert not [c for c in responses.calls if c.request.method == "POST"]


@responses.activate
def test_token_without_push_permission_is_refused_before_any_push(release, repo, gh_env):
    gh_repo(push=False)
    before = repo.remote_refs()
    result = release("--bump", "minor", env=gh_env, hosting=None)
    assert result.code == 2
    assert "may not push to acme/churn" in result.stdout and "contents: write" in result.stdout
    assert repo.remote_refs() == before


@responses.activate
def test_release_creation_403_says_contents_write(release, repo, gh_env):
    responses.get(REPO, json={"full_name": "acme/churn"})          # GITHUB_TOKEN: no permissions key
    responses.get(f"{REPO}/releases/tags/v0.1.0", status=404, json={})
    responses.post(f"{REPO}/releases", status=403, json={"message": "Resource not accessible by integration"},
                   headers={"x-accepted-github-permissions": "contents=write"})
    result = release("--bump", "minor", env=gh_env, hosting=None)
    assert result.code == 2
    assert "contents: write" in result.stdout and "contents=write" in result.stdout


@responses.activate
def test_rate_limit_with_a_near_reset_is_waited_out(release, repo, gh_env, fake_time):
    gh_repo()
    responses.get(f"{REPO}/releases/tags/v0.1.0", status=403, json={"message": "API rate limit exceeded"},
                  headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(fake_time.now) + 20)})
    responses.get(f"{REPO}/releases/tags/v0.1.0", status=404, json={})
    responses.post(f"{REPO}/releases", status=201, json={"html_url": "u"})
    result = release("--bump", "minor", env=gh_env, hosting=None)
    assert result.code == 0, result.stdout + result.stderr
    assert len(fake_time.slept) == 1 and 19 <= fake_time.slept[0] <= 22


@responses.activate
def test_rate_limit_with_a_far_reset_fails_naming_it(release, repo, gh_env, fake_time):
    responses.get(REPO, status=403, json={"message": "API rate limit exceeded"},
                  headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(fake_time.now) + 3000)})
    before = repo.remote_refs()
    result = release("--bump", "minor", env=gh_env, hosting=None)
    assert result.code == 1 and fake_time.slept == []
    assert "rate limit exhausted until" in result.stdout
    assert repo.remote_refs() == before


@responses.activate
def test_dispatch_triggers_the_deploy_workflow_on_the_release_branch(release, repo, gh_env):
    gh_repo()
    responses.get(f"{REPO}/releases/tags/v0.1.0", status=404, json={})
    responses.post(f"{REPO}/releases", status=201, json={"html_url": "u"})
    dispatch = responses.post(f"{REPO}/actions/workflows/cd-prod.yml/dispatches", status=204)
    result = release("--bump", "minor", "--dispatch", "cd-prod.yml", env=gh_env, hosting=None)
    assert result.code == 0, result.stdout + result.stderr
    assert json.loads(dispatch.calls[0].request.body) == {"ref": "release/v0.1.0"}
    assert "dispatched <code>cd-prod.yml</code>" in result.summary


def test_dispatch_outside_github_is_bad_input(release, repo):
    result = release("--bump", "minor", "--dispatch", "cd-prod.yml")
    assert result.code == 2 and "--dispatch needs GitHub" in result.stdout


def test_github_without_a_token_is_bad_input_before_any_push(release, repo, gh_env):
    before = repo.remote_refs()
    result = release("--bump", "minor", env={**gh_env, "GITHUB_TOKEN": ""}, hosting=None)
    assert result.code == 2 and "no GitHub token" in result.stdout
    assert repo.remote_refs() == before


# --------------------------------------------------------------------------- Azure Repos
AZ = "https://dev.azure.com/acme/MLOps/_apis/git/repositories/rid"


@pytest.fixture
def az_env():
    return {"SYSTEM_COLLECTIONURI": "https://dev.azure.com/acme/", "SYSTEM_TEAMPROJECT": "MLOps",
            "BUILD_REPOSITORY_ID": "rid", "BUILD_REPOSITORY_PROVIDER": "TfsGit", "SYSTEM_ACCESSTOKEN": "az_tok"}


def az_refs(heads=(), tags=()):
    responses.get(f"{AZ}/refs", match=[matchers.query_param_matcher({"filter": "heads/"}, strict_match=False)],
                  json={"value": [{"name": f"refs/heads/{n}", "objectId": s} for n, s in heads]})
    responses.get(f"{AZ}/refs", match=[matchers.query_param_matcher({"filter": "tags/"}, strict_match=False)],
                  json={"value": [{"name": f"refs/tags/{n}", "objectId": "f" * 40, "peeledObjectId": s}
                                  for n, s in tags]})


@responses.activate
def test_azure_repos_branch_through_refs_and_an_annotated_tag_with_the_notes(release, repo, az_env):
    repo.commit("feat: azure")
    repo.push()
    sha = repo.head()
    git(repo.root, "checkout", "-q", "--detach")          # Azure Pipelines checks out a detached HEAD
    az_refs(heads=[("main", sha)])
    refs = responses.post(f"{AZ}/refs", json={"value": [{"name": "refs/heads/release/v0.1.0", "success": True,
                                                          "updateStatus": "succeeded"}]})
    tag = responses.post(f"{AZ}/annotatedtags", status=201, json={"name": "v0.1.0"})
    result = release("--bump", "minor", platform="azure", env=az_env, hosting=None)
    assert result.code == 0, result.stdout + result.stderr
    assert json.loads(refs.calls[0].request.body) == [{"name": "refs/heads/release/v0.1.0",
                                                       "oldObjectId": "0" * 40, "newObjectId": sha}]
    sent = json.loads(tag.calls[0].request.body)
    assert sent["taggedObject"] == {"objectId": sha} and "### Features" in sent["message"]
    assert result.outputs["release_url"] == "https://dev.azure.com/acme/MLOps/_git/rid?version=GTv0.1.0"
    assert refs.calls[0].request.headers["Authorization"] == "Bearer az_tok"
    assert "refs/tags/v0.1.0" not in repo.remote_refs()    # nothing went through git


@responses.activate
def test_azure_update_status_permission_failure_is_a_clear_error(release, repo, az_env):
    az_refs()
    responses.post(f"{AZ}/refs", json={"value": [{"name": "refs/heads/release/v0.1.0", "success": False,
                                                  "updateStatus": "createBranchPermissionRequired"}]})
    tag = responses.post(f"{AZ}/annotatedtags", status=201, json={})
    result = release("--bump", "minor", platform="azure", env=az_env, hosting=None)
    assert result.code == 2
    assert "createBranchPermissionRequired" in result.stdout and "Create branch" in result.stdout
    assert not tag.calls


@responses.activate
def test_azure_fast_forwards_the_long_lived_branch_after_a_tag_only_the_remote_has(release, repo, az_env):
    old = repo.head()
    repo.commit("fix: x")
    repo.push()
    az_refs(heads=[("release", old)], tags=[("v0.1.0", old)])
    git(repo.root, "fetch", "-q", "origin")
    refs = responses.post(f"{AZ}/refs", json={"value": [{"name": "refs/heads/release", "success": True}]})
    responses.post(f"{AZ}/annotatedtags", status=201, json={})
    result = release("--bump", "patch", "--release-branch", "release", platform="azure", env=az_env, hosting=None)
    assert result.code == 0, result.stdout + result.stderr
    assert result.outputs["version"] == "0.1.1"
    assert json.loads(refs.calls[0].request.body)[0]["oldObjectId"] == old
    assert "Changes since v0.1.0" in result.summary and "- x (" in result.summary
    assert "initial commit" not in result.summary


def test_azure_without_the_token_mapped_is_bad_input(release, repo, az_env):
    result = release("--bump", "minor", platform="azure", env={**az_env, "SYSTEM_ACCESSTOKEN": ""}, hosting=None)
    assert result.code == 2 and "$(System.AccessToken)" in result.stdout
