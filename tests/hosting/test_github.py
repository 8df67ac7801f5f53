"""GitHub REST client and the PR comment upsert, against ``responses``: what the API
answers in its corner cases, and what the user is told."""

from __future__ import annotations

import json

import pytest
import requests
import responses
from responses import matchers

from stackci.errors import ConfigError
from stackci.hosting import (AlreadyExists, AuthenticationFailed, GitHub, NotFound, PermissionDenied, RateLimited,
                             Transport, upsert_pr_comment)

API = "https://api.github.com"
REPO = f"{API}/repos/acme/churn"
MARK = "<!-- stackci:plan -->"


class Clock:
    def __init__(self, now=1_700_000_000.0):
        self.now = now
        self.slept = []

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def transport(clock):
    return Transport(session=requests.Session(), sleep=clock.sleep, now=lambda: clock.now, max_wait=120)


@pytest.fixture
def env(tmp_path):
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"number": 7, "pull_request": {"number": 7}}))
    return {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/churn", "GITHUB_TOKEN": "ghs_secret",
            "GITHUB_EVENT_PATH": str(event), "GITHUB_API_URL": API}


def gh(transport, **kw):
    return GitHub("acme/churn", "ghs_secret", transport=transport, **kw)


@responses.activate
def test_first_call_creates_the_comment_with_a_hidden_marker(env, transport):
    responses.get(f"{REPO}/issues/7/comments", json=[{"id": 1, "body": "LGTM"}])
    created = responses.post(f"{REPO}/issues/7/comments",
                             json={"id": 99, "html_url": "https://github.com/acme/churn/pull/7#issuecomment-99"},
                             status=201)
    result = upsert_pr_comment(env, "plan", "## Plan\n| a | b |")
    assert (result.created, result.id, result.platform) == (True, 99, "github")
    assert result.url.endswith("#issuecomment-99")
    body = json.loads(created.calls[0].request.body)["body"]
    assert body.startswith(MARK) and "## Plan" in body
    assert created.calls[0].request.headers["Authorization"] == "Bearer ghs_secret"


@responses.activate
def test_later_calls_update_our_comment_found_beyond_the_first_page(env, transport):
    page2 = f"{REPO}/issues/7/comments?per_page=100&page=2"
    responses.get(f"{REPO}/issues/7/comments", match=[matchers.query_param_matcher({"per_page": "100"})],
                  json=[{"id": n, "body": f"comment {n}"} for n in range(100)],
                  headers={"Link": f'<{page2}>; rel="next", <{page2}>; rel="last"'})
    responses.get(page2, json=[{"id": 500, "body": "someone else"}, {"id": 501, "body": f"{MARK}\nold plan"}])
    patched = responses.patch(f"{REPO}/issues/comments/501", json={"id": 501, "html_url": "u501"})
    result = upsert_pr_comment(env, "plan", "new plan", transport=transport)
    assert (result.created, result.id, result.url) == (False, 501, "u501")
    assert json.loads(patched.calls[0].request.body)["body"] == f"{MARK}\nnew plan\n"
    assert not [c for c in responses.calls if c.request.method == "POST"]


@responses.activate
def test_markers_keep_comments_apart(env, transport):
    responses.get(f"{REPO}/issues/7/comments", json=[{"id": 3, "body": "<!-- stackci:plan:prod -->\nprod"}])
    responses.post(f"{REPO}/issues/7/comments", json={"id": 4, "html_url": "u4"}, status=201)
    assert upsert_pr_comment(env, "plan:staging", "staging", transport=transport).created


@responses.activate
def test_no_permission_to_comment_is_a_clear_configuration_error(env, transport):
    responses.get(f"{REPO}/issues/7/comments", json=[])
    responses.post(f"{REPO}/issues/7/comments", status=403,
                   json={"message": "Resource not accessible by integration"},
                   headers={"x-accepted-github-permissions": "issues=write; pull_requests=write"})
    with pytest.raises(PermissionDenied) as err:
        upsert_pr_comment(env, "plan", "x", transport=transport)
    text = err.value.one_line()
    assert err.value.exit_code == 2
    assert "403" in text and "pull-requests: write" in text and "issues=write; pull_requests=write" in text
    assert "permissions:" in text


@responses.activate
def test_primary_rate_limit_waits_for_the_reset_then_retries(env, transport, clock):
    reset = int(clock.now) + 30
    responses.get(f"{REPO}/issues/7/comments", status=403, json={"message": "API rate limit exceeded"},
                  headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
    responses.get(f"{REPO}/issues/7/comments", json=[])
    responses.post(f"{REPO}/issues/7/comments", json={"id": 5, "html_url": "u5"}, status=201)
    assert upsert_pr_comment(env, "plan", "x", transport=transport).created
    assert clock.slept == [31.0]


@responses.activate
def test_secondary_rate_limit_honours_retry_after(transport, clock):
    responses.post(f"{REPO}/releases", status=429, headers={"retry-after": "7"}, json={})
    responses.post(f"{REPO}/releases", status=201, json={"id": 1, "html_url": "r"})
    assert gh(transport).create_release("v1.0.0", name="v1.0.0", body="")["html_url"] == "r"
    assert clock.slept == [7.0]


@responses.activate
def test_a_long_rate_limit_is_an_error_naming_the_reset(transport, clock):
    reset = int(clock.now) + 3600
    responses.post(f"{REPO}/releases", status=403, json={"message": "API rate limit exceeded"},
                   headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
    with pytest.raises(RateLimited) as err:
        gh(transport).create_release("v1.0.0", name="v1.0.0", body="")
    assert clock.slept == []
    assert err.value.exit_code == 1
    assert "rate limit exhausted until" in err.value.one_line() and "re-run" in err.value.one_line()


@responses.activate
def test_rate_limit_retries_are_bounded(transport, clock):
    for _ in range(6):
        responses.get(f"{REPO}/releases/tags/v1", status=429, headers={"retry-after": "1"}, json={})
    with pytest.raises(RateLimited):
        gh(transport).get_release_by_tag("v1")
    assert len(clock.slept) == 3


@responses.activate
def test_a_403_without_rate_limit_headers_is_a_permission_error_not_a_wait(transport, clock):
    responses.post(f"{REPO}/releases", status=403, json={"message": "Resource not accessible by integration"},
                   headers={"x-ratelimit-remaining": "4999"})
    with pytest.raises(PermissionDenied) as err:
        gh(transport).create_release("v1.0.0", name="v1.0.0", body="")
    assert clock.slept == [] and "contents: write" in err.value.one_line()


@responses.activate
def test_release_already_exists_422_is_reused(transport):
    responses.get(f"{REPO}/releases/tags/v1.2.0", status=404, json={"message": "Not Found"})
    responses.post(f"{REPO}/releases", status=422, json={
        "message": "Validation Failed",
        "errors": [{"resource": "Release", "code": "already_exists", "field": "tag_name"}]})
    responses.get(f"{REPO}/releases/tags/v1.2.0", json={"id": 8, "html_url": "https://github.com/r/8"})
    release, created = gh(transport).ensure_release("v1.2.0", name="v1.2.0", body="notes")
    assert (release["id"], created) == (8, False)


@responses.activate
def test_other_422_says_what_github_rejected(transport):
    responses.post(f"{REPO}/releases", status=422, json={
        "message": "Validation Failed", "errors": [{"resource": "Release", "code": "invalid",
                                                    "message": "tag_name is not a valid tag"}]})
    with pytest.raises(AlreadyExists.__mro__[1]) as err:  # HostingError
        gh(transport).create_release("bad tag", name="x", body="")
    assert not isinstance(err.value, AlreadyExists)
    assert "tag_name is not a valid tag" in err.value.one_line()


@responses.activate
def test_create_ref_422_reference_already_exists(transport):
    responses.post(f"{REPO}/git/refs", status=422, json={"message": "Reference already exists"})
    with pytest.raises(AlreadyExists):
        gh(transport).create_ref("refs/tags/v1.0.0", "a" * 40)


@responses.activate
def test_ghes_api_url_is_used_and_web_urls_follow_it(env, transport):
    ghes = "https://ghes.example.com/api/v3"
    responses.get(f"{ghes}/repos/acme/churn/issues/7/comments", json=[])
    responses.post(f"{ghes}/repos/acme/churn/issues/7/comments", json={"id": 1, "html_url": "x"}, status=201)
    upsert_pr_comment({**env, "GITHUB_API_URL": ghes}, "plan", "x", transport=transport)
    assert all(c.request.url.startswith(ghes) for c in responses.calls)
    client = GitHub.from_environ({**env, "GITHUB_API_URL": ghes + "/"}, transport=transport)
    assert client.web_url("releases") == "https://ghes.example.com/acme/churn/releases"
    assert GitHub.from_environ(env).web_url("x") == "https://github.com/acme/churn/x"


@responses.activate
def test_401_says_how_to_pass_a_token(transport):
    responses.get(f"{REPO}/releases/tags/v1", status=401, json={"message": "Bad credentials"})
    with pytest.raises(AuthenticationFailed) as err:
        gh(transport).get_release_by_tag("v1")
    assert err.value.exit_code == 2 and "GITHUB_TOKEN" in err.value.one_line()


def test_missing_token_and_repository_are_bad_input(env):
    with pytest.raises(AuthenticationFailed):
        GitHub.from_environ({**env, "GITHUB_TOKEN": ""})
    with pytest.raises(ConfigError):
        GitHub.from_environ({**env, "GITHUB_REPOSITORY": "not a repo"})


@responses.activate
def test_dispatch_posts_ref_and_inputs(transport):
    call = responses.post(f"{REPO}/actions/workflows/cd-prod.yml/dispatches", status=204)
    gh(transport).dispatch_workflow("cd-prod.yml", "release/v1.2.0", {"version": "1.2.0"})
    assert json.loads(call.calls[0].request.body) == {"ref": "release/v1.2.0", "inputs": {"version": "1.2.0"}}


@responses.activate
def test_dispatch_of_an_unknown_workflow_names_it(transport):
    responses.post(f"{REPO}/actions/workflows/nope.yml/dispatches", status=404, json={"message": "Not Found"})
    with pytest.raises(NotFound) as err:
        gh(transport).dispatch_workflow("nope.yml", "main")
    assert "nope.yml" in err.value.one_line() and "workflow_dispatch" in err.value.one_line()


@responses.activate
def test_dispatch_without_actions_write_is_refused_clearly(transport):
    responses.post(f"{REPO}/actions/workflows/cd-prod.yml/dispatches", status=403, json={"message": "no"})
    with pytest.raises(PermissionDenied) as err:
        gh(transport).dispatch_workflow("cd-prod.yml", "main")
    assert "actions: write" in err.value.one_line()


@responses.activate
@pytest.mark.parametrize("perms, expected", [({"admin": False, "push": True, "pull": True}, True),
                                             ({"admin": False, "push": False, "pull": True}, False),
                                             (None, None)])
def test_push_permission_check(transport, perms, expected):
    responses.get(REPO, json={"full_name": "acme/churn", **({"permissions": perms} if perms else {})})
    assert gh(transport).can_push() is expected


def test_outside_a_pull_request_there_is_nothing_to_comment_on(env):
    with pytest.raises(ConfigError) as err:
        upsert_pr_comment({**env, "GITHUB_EVENT_PATH": "/nonexistent", "GITHUB_REF": "refs/heads/main"}, "plan", "x")
    assert "pull request" in err.value.one_line()
    with pytest.raises(ConfigError):
        upsert_pr_comment(env, "bad marker -->", "x")
    with pytest.raises(ConfigError):
        upsert_pr_comment({}, "plan", "x")


@responses.activate
def test_pr_number_from_the_merge_ref_and_long_bodies_are_cut(env, transport):
    responses.get(f"{REPO}/issues/12/comments", json=[])
    call = responses.post(f"{REPO}/issues/12/comments", json={"id": 1, "html_url": "x"}, status=201)
    upsert_pr_comment({**env, "GITHUB_EVENT_PATH": "", "GITHUB_REF": "refs/pull/12/merge"}, "plan", "y" * 100_000,
                      transport=transport)
    body = json.loads(call.calls[0].request.body)["body"]
    assert len(body) <= 65536 and "more characters" in body and body.startswith(MARK)
