"""Authentication of the local workspace: bearer tokens, OAuth M2M and token federation.

* The server accepts the token it was started with (a personal access token of
  the local user) and tokens it issued from ``POST /oidc/v1/token``.
* ``grant_type=client_credentials`` with HTTP Basic (or form) client id/secret
  issues a token for the configured service principal (OAuth M2M).
* ``grant_type=urn:ietf:params:oauth:grant-type:token-exchange`` (RFC 8693) trades
  an identity token from an accepted issuer (GitHub Actions, Azure DevOps, ...)
  for a workspace token: this is Databricks token federation. With a
  ``client_id`` the token acts as that service principal (workload identity
  federation; it must be the configured one when one is configured); without,
  as the user named by the ``sub`` claim (account-wide federation).

Errors follow RFC 6749 §5.2 and RFC 8693 §2.2.2: ``{"error", "error_description"}``;
``invalid_client`` (401, with ``WWW-Authenticate: Basic`` when Basic was tried)
for unknown clients or wrong secrets; ``invalid_request`` (400) for a subject
token that is malformed, from an untrusted issuer, for another audience, or
expired.

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
import urllib.parse
from dataclasses import dataclass, field

from stackci.workspace.store import Store

TOKEN_LIFETIME = 3600
#: tolerated clock difference for nbf of exchanged tokens, seconds
CLOCK_SKEW = 30
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
    """An RFC 6749 §5.2 error answer of the token endpoint: ``{"error", "error_description"}``."""

    def __init__(self, status: int, error: str, description: str, *, basic_challenge: bool = False) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        #: the client tried HTTP Basic: a 401 then carries ``WWW-Authenticate: Basic`` (RFC 6749 §5.2)
        self.basic_challenge = basic_challenge

    def body(self) -> dict:
        return {"error": self.error, "error_description": self.description}

    def headers(self) -> dict[str, str]:
        if self.status == 401 and self.basic_challenge:
            return {"WWW-Authenticate": 'Basic realm="stackci local workspace"'}
        return {}


def _bad_subject(description: str) -> OAuthError:
    # RFC 8693 §2.2.2: an invalid or unacceptable subject_token is ``invalid_request``.
    return OAuthError(400, "invalid_request", description)


def decode_jwt(token: str) -> dict:
    """The claims of a JWT, without verifying its signature (see the module docstring)."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise _bad_subject("subject_token is not a JWT (expected header.payload.signature)")
    try:
        json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        raise _bad_subject("subject_token is not a valid JWT: its header or payload is not base64url JSON") from None
    if not isinstance(claims, dict):
        raise _bad_subject("subject_token claims are not a JSON object")
    return claims


def parse_basic(value: str) -> tuple[str, str] | None:
    """``(client_id, client_secret)`` of an ``Authorization: Basic`` header, None if malformed."""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if ":" not in decoded:
        return None
    user, _, password = decoded.partition(":")
    return user, password


def _same(given: str | None, expected: str) -> bool:
    """Compare a credential as sent, or form-urlencoded as RFC 6749 §2.3.1 asks (requests does not encode)."""
    if given is None:
        return False
    if secrets.compare_digest(given.encode(), expected.encode()):
        return True
    decoded = urllib.parse.unquote_plus(given)
    return decoded != given and secrets.compare_digest(decoded.encode(), expected.encode())


class Authenticator:
    def __init__(self, store: Store, settings: AuthSettings) -> None:
        self.store = store
        self.settings = settings

    def principal_for(self, token: str) -> str | None:
        """The user or service principal a bearer token belongs to, or None."""
        if token and secrets.compare_digest(token.encode("utf-8", "surrogateescape"), self.settings.token.encode()):
            return self.settings.user_name
        rows = self.store.query("SELECT principal, expires_at FROM tokens WHERE token = ?", (token,))
        if not rows:
            return None
        principal, expires_at = rows[0]
        if expires_at is not None and expires_at <= time.time():
            return None
        return principal

    def issue(self, principal: str, lifetime: int | None = None, scope: str = "all-apis") -> dict:
        lifetime = TOKEN_LIFETIME if lifetime is None else max(1, int(lifetime))
        token = "dsl" + secrets.token_hex(24)
        now = time.time()
        with self.store.transaction():
            self.store.execute("DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
            self.store.execute("INSERT INTO tokens (token, principal, expires_at) VALUES (?, ?, ?)",
                               (token, principal, now + lifetime))
        return {"access_token": token, "token_type": "Bearer", "expires_in": lifetime, "scope": scope}

    def token_endpoint(self, form: dict[str, str], basic: tuple[str, str] | None, token_url: str) -> dict:
        grant = form.get("grant_type", "")
        client_id = form.get("client_id")
        client_secret = form.get("client_secret")
        if basic is not None:
            client_id, client_secret = basic
        scope = " ".join(form.get("scope", "").split()) or "all-apis"
        if grant == "client_credentials":
            s = self.settings
            challenge = basic is not None
            if client_id is None:
                raise OAuthError(401, "invalid_client", "Client authentication is required: send the client id "
                                 "and secret with HTTP Basic", basic_challenge=challenge)
            if not s.client_id or not s.client_secret:
                raise OAuthError(401, "invalid_client", f"OAuth application with client_id {client_id!r} is not "
                                 "available in this workspace (start it with --client-id and --client-secret)",
                                 basic_challenge=challenge)
            if not _same(client_id, s.client_id) or not _same(client_secret, s.client_secret):
                raise OAuthError(401, "invalid_client", "Client authentication failed: unknown client id or "
                                 "wrong secret", basic_challenge=challenge)
            return self.issue(s.client_id, scope=scope)
        if grant == TOKEN_EXCHANGE:
            return self._exchange(form, client_id, token_url, scope)
        if not grant:
            raise OAuthError(400, "invalid_request", "grant_type is required")
        raise OAuthError(400, "unsupported_grant_type",
                         f"grant_type {grant} is not supported; use client_credentials or {TOKEN_EXCHANGE}")

    def _exchange(self, form: dict[str, str], client_id: str | None, token_url: str, scope: str) -> dict:
        s = self.settings
        subject = form.get("subject_token")
        if not subject:
            raise OAuthError(400, "invalid_request", "subject_token is required")
        if form.get("subject_token_type") not in JWT_TYPES:
            raise OAuthError(400, "invalid_request",
                             f"subject_token_type {form.get('subject_token_type')} is not supported; "
                             f"use {JWT_TYPES[0]}")
        if not s.accepted_issuers:
            raise OAuthError(400, "invalid_request", "Token federation is not configured on this workspace "
                             "(start it with --oidc-issuer)")
        claims = decode_jwt(subject)
        issuer = claims.get("iss")
        if issuer not in s.accepted_issuers:
            raise _bad_subject(f"Issuer {issuer!r} of the subject_token is not trusted by any federation policy "
                               f"(trusted: {', '.join(s.accepted_issuers)})")
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else audiences
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise _bad_subject("The aud claim of the subject_token must be a string or a list of strings")
        accepted = s.accepted_audiences or [token_url]
        if not any(a in accepted for a in audiences):
            raise _bad_subject(f"Audience {audiences} of the subject_token is not accepted; "
                               f"expected one of {accepted}")
        now = time.time()
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, (int, float)):
            raise _bad_subject("The subject_token has no numeric exp claim")
        if exp <= now:
            raise _bad_subject(f"The subject_token has expired ({int(now - exp)} s ago)")
        nbf = claims.get("nbf")
        if isinstance(nbf, (int, float)) and not isinstance(nbf, bool) and nbf > now + CLOCK_SKEW:
            raise _bad_subject("The subject_token is not valid yet (nbf is in the future)")
        if client_id:
            # workload identity federation: a policy on the service principal
            if s.client_id and client_id != s.client_id:
                raise OAuthError(401, "invalid_client", f"No federation policy for client_id {client_id!r} "
                                 "(this workspace knows only its --client-id)")
            principal = client_id
        else:
            # account-wide federation: the subject claim names the user
            principal = claims.get("sub")
            if not isinstance(principal, str) or not principal.strip():
                raise _bad_subject("The subject_token has no sub claim to map to a user "
                                   "(or send client_id for service principal federation)")
        # the workspace token never outlives the federated token it was exchanged for
        return self.issue(principal, min(TOKEN_LIFETIME, exp - now), scope=scope)
