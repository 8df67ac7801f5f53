"""Authentication of the local workspace: bearer tokens, OAuth M2M and token federation.

* The server accepts the token it was started with (a personal access token of
  the local user) and tokens it issued from ``POST /oidc/v1/token``.
* ``grant_type=client_credentials`` with HTTP Basic (or form) client id/secret
  issues a token for the configured service principal (OAuth M2M).
* ``grant_type=urn:ietf:params:oauth:grant-type:token-exchange`` (RFC 8693) trades
  an identity token from an accepted issuer (GitHub Actions, Azure DevOps, ...)
  for a workspace token: this is Databricks token federation.

The subject JWT is only *decoded*, never cryptographically verified: the local
workspace has no network access to the issuer's keys and only runs on
loopback. Checked are its shape, ``iss`` (must be an accepted issuer), ``aud``
(must be one of the accepted audiences, by default the token endpoint URL as
databricks-sdk requests it) and ``exp``/``nbf``. This is enough to test the
client side of the flow; it is not a security boundary.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from dataclasses import dataclass, field

from stackci.workspace.store import Store

TOKEN_LIFETIME = 3600
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPES = ("urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:id_token")


@dataclass
class AuthSettings:
    """Who may call the server."""

    token: str
    user_name: str = "local-user@stackci.local"
    client_id: str | None = None
    client_secret: str | None = None
    #: issuers whose identity tokens the token exchange accepts
    accepted_issuers: list[str] = field(default_factory=list)
    #: audiences accepted in exchanged tokens; empty = the token endpoint URL
    accepted_audiences: list[str] = field(default_factory=list)


class OAuthError(Exception):
    """An RFC 6749 error answer of the token endpoint."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict:
        return {"error": self.error, "error_description": self.description}


def decode_jwt(token: str) -> dict:
    """The claims of a JWT, without verifying its signature (see the module docstring)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise OAuthError(400, "invalid_request", "subject_token is not a JWT")
    try:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, binascii.Error):
        raise OAuthError(400, "invalid_request", "subject_token is not a valid JWT") from None
    if not isinstance(claims, dict):
        raise OAuthError(400, "invalid_request", "subject_token claims are not an object")
    return claims


class Authenticator:
    def __init__(self, store: Store, settings: AuthSettings) -> None:
        self.store = store
        self.settings = settings

    def principal_for(self, token: str) -> str | None:
        """The user or service principal a bearer token belongs to, or None."""
        if token and secrets.compare_digest(token, self.settings.token):
            return self.settings.user_name
        rows = self.store.query("SELECT principal, expires_at FROM tokens WHERE token = ?", (token,))
        if not rows:
            return None
        principal, expires_at = rows[0]
        if expires_at is not None and expires_at < time.time():
            return None
        return principal

    def issue(self, principal: str, lifetime: int = TOKEN_LIFETIME) -> dict:
        token = "dsl" + secrets.token_hex(24)
        self.store.execute("INSERT INTO tokens (token, principal, expires_at) VALUES (?, ?, ?)",
                           (token, principal, int(time.time()) + lifetime))
        return {"access_token": token, "token_type": "Bearer", "expires_in": lifetime, "scope": "all-apis"}

    def token_endpoint(self, form: dict[str, str], basic: tuple[str, str] | None, token_url: str) -> dict:
        grant = form.get("grant_type", "")
        client_id = form.get("client_id")
        client_secret = form.get("client_secret")
        if basic is not None:
            client_id, client_secret = basic
        if grant == "client_credentials":
            s = self.settings
            if not s.client_id or not s.client_secret:
                raise OAuthError(401, "invalid_client", "OAuth M2M is not configured on this workspace")
            if client_id != s.client_id or not secrets.compare_digest(client_secret or "", s.client_secret):
                raise OAuthError(401, "invalid_client", "Client authentication failed")
            return self.issue(s.client_id)
        if grant == TOKEN_EXCHANGE:
            return self._exchange(form, client_id, token_url)
        if not grant:
            raise OAuthError(400, "invalid_request", "grant_type is required")
        raise OAuthError(400, "unsupported_grant_type", f"grant_type {grant} is not supported")

    def _exchange(self, form: dict[str, str], client_id: str | None, token_url: str) -> dict:
        s = self.settings
        subject = form.get("subject_token")
        if not subject:
            raise OAuthError(400, "invalid_request", "subject_token is required")
        if form.get("subject_token_type") not in JWT_TYPES:
            raise OAuthError(400, "invalid_request",
                             f"subject_token_type {form.get('subject_token_type')} is not supported")
        if not s.accepted_issuers:
            raise OAuthError(400, "invalid_request", "Token federation is not configured on this workspace")
        claims = decode_jwt(subject)
        issuer = claims.get("iss")
        if issuer not in s.accepted_issuers:
            raise OAuthError(401, "invalid_grant", f"Issuer {issuer} is not trusted by any federation policy")
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else list(audiences or [])
        accepted = s.accepted_audiences or [token_url]
        if not any(a in accepted for a in audiences):
            raise OAuthError(401, "invalid_grant", f"Audience {audiences} is not accepted; expected one of {accepted}")
        now = time.time()
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp < now:
            raise OAuthError(401, "invalid_grant", "subject_token has expired or has no exp claim")
        nbf = claims.get("nbf")
        if isinstance(nbf, (int, float)) and nbf > now + 60:
            raise OAuthError(401, "invalid_grant", "subject_token is not valid yet")
        principal = client_id or s.client_id
        if not principal:
            raise OAuthError(400, "invalid_request", "client_id is required for token federation")
        if s.client_id and principal != s.client_id:
            raise OAuthError(401, "invalid_client", f"No federation policy for client {principal}")
        lifetime = int(max(60, min(TOKEN_LIFETIME, exp - now)))
        return self.issue(principal, lifetime)
