"""Authentication of the local workspace, end to end through databricks-sdk:
bearer tokens, discovery, OAuth M2M (client credentials) and GitHub OIDC token
federation (RFC 8693 token exchange) against a loopback stand-in for GitHub's
ID-token endpoint."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.core import Config

from stackci.workspace import LocalWorkspace

CLIENT_ID = "6a1f3c2e-0000-4000-8000-00000000c1d0"
CLIENT_SECRET = "dose" + "0123456789abcdef"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
REQUEST_TOKEN = "gh-request-token-for-tests"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    """No ambient Databricks or GitHub credentials: every test sets what it uses."""
    import os

    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "ACTIONS_ID_TOKEN_", "ARM_", "AZURE_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-databrickscfg"))


@pytest.fixture
def oauth_ws(tmp_path):
    with LocalWorkspace(tmp_path / "data", client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                        oidc_issuers=[GITHUB_ISSUER]) as server:
        yield server


def _b64url(doc) -> str:
    raw = json.dumps(doc).encode() if not isinstance(doc, bytes) else doc
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_jwt(**claims) -> str:
    """An unsigned-looking RS256-shaped JWT (the local workspace does not check signatures)."""
    header = {"alg": "RS256", "typ": "JWT", "kid": "test"}
    return f"{_b64url(header)}.{_b64url(claims)}.{_b64url(b'not-a-real-signature')}"


class FakeGitHubTokenEndpoint:
    """A loopback stand-in for ACTIONS_ID_TOKEN_REQUEST_URL: answers ``{"value": <jwt>}``
    for the requested audience, like GitHub Actions does, and records the requests."""

    def __init__(self, issuer=GITHUB_ISSUER, exp_in=600, audience=None, status=200):
        self.issuer = issuer
        self.exp_in = exp_in
        self.audience = audience
        self.status = status
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                outer.requests.append({"query": query, "authorization": self.headers.get("Authorization")})
                if self.headers.get("Authorization") != f"Bearer {REQUEST_TOKEN}" or outer.status != 200:
                    self.send_response(outer.status if outer.status != 200 else 401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                now = int(time.time())
                aud = outer.audience or query.get("audience", ["missing"])[-1]
                token = make_jwt(iss=outer.issuer, aud=aud, sub="repo:acme/churn:ref:refs/heads/main",
                                 iat=now - 5, nbf=now - 5, exp=now + outer.exp_in)
                body = json.dumps({"count": 1, "value": token}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token?api-version=2.0"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def github(monkeypatch):
    endpoints = []

    def start(**kwargs):
        gh = FakeGitHubTokenEndpoint(**kwargs)
        endpoints.append(gh)
        monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", gh.url)
        monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN)
        return gh

    yield start
    for gh in endpoints:
        gh.close()


def sdk(server, **kwargs) -> WorkspaceClient:
    return WorkspaceClient(config=Config(host=server.url, retry_timeout_seconds=5, **kwargs))


# ---- bearer tokens and discovery ----------------------------------------------


def test_discovery_documents_are_public_and_point_at_this_server(oauth_ws):
    meta = requests.get(f"{oauth_ws.url}/.well-known/databricks-config", timeout=5)
    assert meta.status_code == 200
    assert meta.json()["oidc_endpoint"] == f"{oauth_ws.url}/oidc"
    assert meta.json()["workspace_id"] == oauth_ws.workspace_id
    oidc = requests.get(f"{oauth_ws.url}/oidc/.well-known/oauth-authorization-server", timeout=5).json()
    assert oidc["token_endpoint"] == f"{oauth_ws.url}/oidc/v1/token"
    assert "client_credentials" in oidc["grant_types_supported"]
    assert "urn:ietf:params:oauth:grant-type:token-exchange" in oidc["grant_types_supported"]
    assert requests.get(f"{oauth_ws.url}/oidc/.well-known/openid-configuration", timeout=5).json() == oidc
    assert requests.get(oidc["jwks_uri"], timeout=5).json() == {"keys": []}
    # what the SDK derives from them
    cfg = Config(host=oauth_ws.url, token=oauth_ws.token, auth_type="pat", retry_timeout_seconds=5)
    assert cfg.databricks_oidc_endpoints.token_endpoint == oauth_ws.token_endpoint


@pytest.mark.parametrize("path", ["/api/2.2/jobs/list", "/api/2.0/preview/scim/v2/Me",
                                  "/api/2.0/workspace/list?path=/", "/api/2.1/unity-catalog/models",
                                  "/api/9.9/does/not/exist"])
def test_every_api_path_answers_401_without_a_valid_bearer_token(oauth_ws, path):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {oauth_ws.token}"},
                    {"Authorization": "Bearer "}, {"Authorization": oauth_ws.token}):
        resp = requests.get(oauth_ws.url + path, headers=headers, timeout=5)
        assert resp.status_code == 401, (path, headers)
        body = resp.json()
        assert set(body) == {"error_code", "message"}
        assert body["error_code"] == "UNAUTHENTICATED"
        assert body["message"]


def test_odd_authorization_headers_are_401_not_500(oauth_ws):
    for value in (b"Bearer \xe9t\xe9", b"Bearer " + b"x" * 8000, b"Bearer a b", b"bearer\t"):
        for path in ("/api/2.2/jobs/list", "/stackci-admin/faults"):
            resp = requests.get(oauth_ws.url + path, headers={"Authorization": value}, timeout=5)
            assert resp.status_code in (401, 403), (value[:20], path, resp.status_code)
            assert resp.json()["error_code"] in ("UNAUTHENTICATED", "PERMISSION_DENIED")
    # the scheme is case-insensitive (RFC 7235)
    resp = requests.get(f"{oauth_ws.url}/api/2.2/jobs/list", headers={"Authorization": f"bearer {oauth_ws.token}"},
                        timeout=5)
    assert resp.status_code == 200


def test_scim_me_reports_the_caller_and_the_org_id_header(oauth_ws):
    resp = requests.get(f"{oauth_ws.url}/api/2.0/preview/scim/v2/Me",
                        headers={"Authorization": f"Bearer {oauth_ws.token}"}, timeout=5)
    assert resp.status_code == 200
    assert resp.headers["X-Databricks-Org-Id"] == oauth_ws.workspace_id
    me = resp.json()
    assert me["userName"] == oauth_ws.user_name and me["active"] is True
    assert me["emails"][0]["value"] == oauth_ws.user_name
    assert {g["display"] for g in me["groups"]} >= {"users"}
    # the SDK reads the same document
    assert sdk(oauth_ws, token=oauth_ws.token, auth_type="pat").current_user.me().user_name == oauth_ws.user_name


# ---- OAuth M2M ------------------------------------------------------------------


def test_oauth_m2m_through_the_sdk_acts_as_the_service_principal(oauth_ws):
    w = sdk(oauth_ws, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, auth_type="oauth-m2m")
    me = w.current_user.me()
    assert me.user_name == CLIENT_ID
    assert not me.emails  # service principals have no e-mail
    created = w.jobs.create(name="m2m-job")
    assert w.jobs.get(created.job_id).creator_user_name == CLIENT_ID
    assert w.config.auth_type == "oauth-m2m"


def test_token_endpoint_issues_short_lived_bearer_tokens(oauth_ws):
    resp = requests.post(oauth_ws.token_endpoint, data={"grant_type": "client_credentials", "scope": "all-apis"},
                         auth=(CLIENT_ID, CLIENT_SECRET), timeout=5)
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "no-store"
    doc = resp.json()
    assert doc["token_type"] == "Bearer"
    assert 0 < doc["expires_in"] <= 3600
    me = requests.get(f"{oauth_ws.url}/api/2.0/preview/scim/v2/Me",
                      headers={"Authorization": f"Bearer {doc['access_token']}"}, timeout=5)
    assert me.status_code == 200 and me.json()["userName"] == CLIENT_ID
    # client_secret_post works too
    post = requests.post(oauth_ws.token_endpoint, data={"grant_type": "client_credentials",
                                                        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
                         timeout=5)
    assert post.status_code == 200 and post.json()["access_token"] != doc["access_token"]


def test_oauth_m2m_wrong_secret_is_a_clear_sdk_error(oauth_ws):
    w = sdk(oauth_ws, client_id=CLIENT_ID, client_secret="wrong-secret", auth_type="oauth-m2m")
    with pytest.raises(ValueError, match="invalid_client"):
        w.current_user.me()
    w = sdk(oauth_ws, client_id="someone-else", client_secret=CLIENT_SECRET, auth_type="oauth-m2m")
    with pytest.raises(ValueError, match="invalid_client"):
        w.jobs.create(name="never")
    # nothing was created by the failed attempts
    assert list(sdk(oauth_ws, token=oauth_ws.token, auth_type="pat").jobs.list()) == []


@pytest.mark.parametrize("auth, data, status, error", [
    ((CLIENT_ID, "wrong"), {"grant_type": "client_credentials"}, 401, "invalid_client"),
    (("nobody", CLIENT_SECRET), {"grant_type": "client_credentials"}, 401, "invalid_client"),
    (None, {"grant_type": "client_credentials"}, 401, "invalid_client"),
    ((CLIENT_ID, CLIENT_SECRET), {}, 400, "invalid_request"),
    ((CLIENT_ID, CLIENT_SECRET), {"grant_type": "password", "username": "u", "password": "p"}, 400,
     "unsupported_grant_type"),
])
def test_token_endpoint_errors_are_rfc6749_shaped(oauth_ws, auth, data, status, error):
    resp = requests.post(oauth_ws.token_endpoint, data=data, auth=auth, timeout=5)
    assert resp.status_code == status
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error and body["error_description"]
    if status == 401 and auth is not None:
        assert resp.headers["WWW-Authenticate"].startswith("Basic")


def test_token_endpoint_only_takes_post(oauth_ws):
    resp = requests.get(oauth_ws.token_endpoint, timeout=5)
    assert resp.status_code == 405
    assert resp.json()["error"] == "invalid_request"


def test_m2m_without_configured_service_principal_is_refused(tmp_path):
    with LocalWorkspace(tmp_path / "d") as server:
        w = sdk(server, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, auth_type="oauth-m2m")
        with pytest.raises(ValueError, match="invalid_client"):
            w.current_user.me()


def test_issued_tokens_expire(oauth_ws, monkeypatch):
    from stackci.workspace import auth

    monkeypatch.setattr(auth, "TOKEN_LIFETIME", 1)
    token = requests.post(oauth_ws.token_endpoint, data={"grant_type": "client_credentials"},
                          auth=(CLIENT_ID, CLIENT_SECRET), timeout=5).json()
    assert token["expires_in"] == 1
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert requests.get(f"{oauth_ws.url}/api/2.2/jobs/list", headers=headers, timeout=5).status_code == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        resp = requests.get(f"{oauth_ws.url}/api/2.2/jobs/list", headers=headers, timeout=5)
        if resp.status_code == 401:
            break
        time.sleep(0.1)
    assert resp.status_code == 401 and resp.json()["error_code"] == "UNAUTHENTICATED"


# ---- GitHub OIDC (token federation) ---------------------------------------------


def test_github_oidc_through_the_sdk(oauth_ws, github):
    gh = github()
    w = sdk(oauth_ws, client_id=CLIENT_ID, auth_type="github-oidc")
    assert w.current_user.me().user_name == CLIENT_ID
    job = w.jobs.create(name="federated")
    assert w.jobs.get(job.job_id).creator_user_name == CLIENT_ID
    # the SDK asked GitHub for a token whose audience is the workspace token endpoint
    assert gh.requests, "the SDK never called the GitHub ID-token endpoint"
    assert gh.requests[-1]["query"]["audience"] == [oauth_ws.token_endpoint]
    assert gh.requests[-1]["authorization"] == f"Bearer {REQUEST_TOKEN}"
    assert w.config.auth_type == "github-oidc"


def test_github_oidc_with_a_custom_audience(tmp_path, github):
    with LocalWorkspace(tmp_path / "d", client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                        oidc_issuers=[GITHUB_ISSUER], oidc_audiences=["databricks-acme"]) as server:
        github()
        w = sdk(server, client_id=CLIENT_ID, auth_type="github-oidc", token_audience="databricks-acme")
        assert w.current_user.me().user_name == CLIENT_ID
        # the default audience (the token endpoint) is no longer accepted
        w = sdk(server, client_id=CLIENT_ID, auth_type="github-oidc")
        with pytest.raises(ValueError, match="invalid_request: .*[Aa]udience"):
            w.current_user.me()


@pytest.mark.parametrize("kwargs, match", [
    ({"issuer": "https://evil.example.com"}, "invalid_request: .*[Ii]ssuer"),
    ({"exp_in": -120}, "invalid_request: .*expired"),
    ({"audience": "https://some-other-workspace.example.com/oidc/v1/token"}, "invalid_request: .*[Aa]udience"),
])
def test_github_oidc_rejections_are_clear_sdk_errors(oauth_ws, github, kwargs, match):
    github(**kwargs)
    w = sdk(oauth_ws, client_id=CLIENT_ID, auth_type="github-oidc")
    with pytest.raises(ValueError, match=match):
        w.current_user.me()


def test_github_oidc_unknown_client_id_is_refused(oauth_ws, github):
    github()
    w = sdk(oauth_ws, client_id="not-our-sp", auth_type="github-oidc")
    with pytest.raises(ValueError, match="invalid_client"):
        w.current_user.me()


def test_github_oidc_without_the_request_env_fails_in_config(oauth_ws):
    with pytest.raises(ValueError, match="github-oidc"):
        sdk(oauth_ws, client_id=CLIENT_ID, auth_type="github-oidc")


def _exchange(server, subject, **extra):
    data = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "subject_token": subject,
            "client_id": CLIENT_ID, "scope": "all-apis", **extra}
    return requests.post(server.token_endpoint, data=data, timeout=5)


def test_token_exchange_checks_issuer_audience_and_lifetime(oauth_ws):
    now = int(time.time())
    good = dict(iss=GITHUB_ISSUER, aud=oauth_ws.token_endpoint, sub="repo:acme/churn:ref:refs/heads/main",
                exp=now + 300)
    ok = _exchange(oauth_ws, make_jwt(**good))
    assert ok.status_code == 200
    assert 0 < ok.json()["expires_in"] <= 300  # never outlives the federated token
    assert requests.get(f"{oauth_ws.url}/api/2.0/preview/scim/v2/Me", timeout=5,
                        headers={"Authorization": f"Bearer {ok.json()['access_token']}"}).json()["userName"] \
        == CLIENT_ID
    # an audience list that contains ours is fine
    assert _exchange(oauth_ws, make_jwt(**{**good, "aud": ["x", oauth_ws.token_endpoint]})).status_code == 200

    for claims in ({**good, "iss": "https://evil.example.com"}, {**good, "aud": "other"},
                   {**good, "exp": now - 60}, {k: v for k, v in good.items() if k != "exp"},
                   {**good, "nbf": now + 3600}, {**good, "exp": "tomorrow"}):
        resp = _exchange(oauth_ws, make_jwt(**claims))
        assert resp.status_code == 400, claims
        assert resp.json()["error"] == "invalid_request"
    for subject in ("not-a-jwt", "a.b.c", make_jwt(**good).split(".", 1)[1]):
        resp = _exchange(oauth_ws, subject)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"
    resp = _exchange(oauth_ws, make_jwt(**good), subject_token_type="urn:ietf:params:oauth:token-type:saml2")
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"


def test_token_exchange_needs_a_configured_issuer(tmp_path):
    with LocalWorkspace(tmp_path / "d", client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as server:
        now = int(time.time())
        resp = _exchange(server, make_jwt(iss=GITHUB_ISSUER, aud=server.token_endpoint, exp=now + 60))
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"
        assert "federation" in resp.json()["error_description"].lower()


def test_file_oidc_account_wide_federation_acts_as_the_subject(oauth_ws, tmp_path):
    token_file = tmp_path / "id-token.jwt"
    now = int(time.time())
    token_file.write_text(make_jwt(iss=GITHUB_ISSUER, aud=oauth_ws.token_endpoint, sub="ana@acme.example",
                                   exp=now + 300))
    w = sdk(oauth_ws, auth_type="file-oidc", oidc_token_filepath=str(token_file))
    me = w.current_user.me()
    assert me.user_name == "ana@acme.example"
    assert me.emails[0].value == "ana@acme.example"
    # without a sub claim there is nobody to act as
    token_file.write_text(make_jwt(iss=GITHUB_ISSUER, aud=oauth_ws.token_endpoint, exp=now + 300))
    w = sdk(oauth_ws, auth_type="file-oidc", oidc_token_filepath=str(token_file))
    with pytest.raises(ValueError, match="invalid_request: .*sub"):
        w.current_user.me()
